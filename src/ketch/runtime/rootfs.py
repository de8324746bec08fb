"""Build a container's filesystem view inside its new mount namespace.

Runs in the container's init process, after unshare(CLONE_NEWNS). The order follows the runtime spec:
propagation of ``/``, the rootfs bound on itself, the config's mounts in order, devices, pivot_root;
then masked and read-only paths and a read-only root. Mount destinations are resolved with
:func:`ketch.runtime.paths.open_in_root` and mounted through ``/proc/self/fd`` so no symlink in the
rootfs can point a mount outside it.
"""

from __future__ import annotations

import os
import stat

from ketch.common.errors import InvalidArgument, SystemFailure
from ketch.runtime.kernel_files import write_value
from ketch.runtime.paths import open_in_root, secure_join
from ketch.spec.oci_runtime import parse_mount_options
from ketch.sys import linux as L

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_DEVICES", "finalize", "mount_rest", "pivot", "prepare"]

# (path, type, major, minor): the devices the runtime spec says every container has.
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
)  # fmt: skip
_DEV_LINKS = (
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"), ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)  # fmt: skip
# Flags the kernel locks on a mount that was made in a more privileged user namespace; a remount inside a
# user namespace must repeat them or it fails with EPERM.
_LOCKED = L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC | L.MS_RDONLY
_ST_TO_MS = ((1, L.MS_RDONLY), (2, L.MS_NOSUID), (4, L.MS_NODEV), (8, L.MS_NOEXEC),
             (1024, L.MS_NOATIME), (2048, L.MS_NODIRATIME), (4096, L.MS_RELATIME))  # fmt: skip


def _fail(what: str, exc: OSError) -> SystemFailure:
    return SystemFailure.from_oserror(what, exc)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    try:
        L.mount(source, target, fstype, flags, data)
    except OSError as exc:
        raise _fail(f"mount {source or fstype or ''} to {target}", exc) from None


def _current_flags(path: str) -> int:
    st = os.statvfs(path)
    return sum(ms for bit, ms in _ST_TO_MS if st.f_flag & bit)


def _mkdir_in_root(root: str, dest: str, *, file: bool = False) -> None:
    """Create ``dest`` (and its parents) inside ``root``; an existing path is left as it is.

    Symlinks on the way are followed inside ``root`` (``/evil -> /host/dir`` creates ``root/host/dir``).
    """
    path = secure_join(root, dest)
    if os.path.lexists(path):
        return
    missing = os.path.relpath(path, root).split("/")
    current = os.path.realpath(root)
    for i, part in enumerate(missing):
        current = os.path.join(current, part)
        if os.path.lexists(current):
            continue
        if file and i == len(missing) - 1:
            os.close(os.open(current, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
        else:
            os.mkdir(current, 0o755)


class _Target:
    """An opened mount destination; mount on :attr:`proc` rather than on the resolved path."""

    def __init__(self, root: str, dest: str, *, file: bool = False) -> None:
        self.root = root
        self.dest = dest
        try:
            _mkdir_in_root(root, dest, file=file)
            self.path, self.fd = open_in_root(root, dest)
        except OSError as exc:
            raise _fail(f"prepare mount destination {dest}", exc) from None
        self.proc = f"/proc/self/fd/{self.fd}"

    def reopen(self) -> None:
        """Open the destination again: after a mount on it, the old fd still names the covered directory,
        and a remount or propagation change must address the new mount on top."""
        os.close(self.fd)
        self.path, self.fd = open_in_root(self.root, self.dest)
        self.proc = f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        os.close(self.fd)


def prepare(config: dict[str, Any], rootfs: str, *, in_userns: bool) -> int:
    """Propagation of ``/``, the rootfs bound on itself, and the config's mounts in order up to the first
    cgroup mount; returns that mount's index (the number of mounts if there is none).

    The rest waits for :func:`mount_rest`: a cgroup mount needs the process to have joined its cgroup and
    unshared its cgroup namespace, which the runtime does while this runs, and the spec wants mounts in
    order. ``rootfs`` is absolute; the current directory is the bundle."""
    linux = config.get("linux", {})
    propagation = (
        parse_mount_options([linux["rootfsPropagation"]])[1] if linux.get("rootfsPropagation") else []
    )
    _mount(None, "/", None, propagation[0] if propagation else L.MS_SLAVE | L.MS_REC)
    _mount(rootfs, rootfs, None, L.MS_BIND | L.MS_REC)
    mounts = config.get("mounts", [])
    for i, mount in enumerate(mounts):
        if mount.get("type") in ("cgroup", "cgroup2"):
            return i
        _mount_entry(i, mount, rootfs, in_userns=in_userns)
    return len(mounts)


def mount_rest(
    config: dict[str, Any],
    rootfs: str,
    start: int,
    *,
    in_userns: bool,
    cgroup_paths: dict[str, str],
    cgroup_path: str,
    new_cgroupns: bool,
) -> None:
    """The config's mounts from index ``start`` on, in order, then the devices."""
    mounts = config.get("mounts", [])
    for i in range(start, len(mounts)):
        mount = mounts[i]
        if mount.get("type") in ("cgroup", "cgroup2"):
            flags = parse_mount_options(mount.get("options", []))[0]
            _mount_cgroups(_destination(mount), rootfs, flags, cgroup_paths, cgroup_path, new_cgroupns)
        else:
            _mount_entry(i, mount, rootfs, in_userns=in_userns)
    if not any(_is_bind(m) and os.path.normpath(_destination(m)) == "/dev" for m in mounts):
        _create_devices(rootfs, config.get("linux", {}).get("devices", []), in_userns=in_userns)


def _is_bind(mount: dict[str, Any]) -> bool:
    return mount.get("type") == "bind" or bool({"bind", "rbind"} & set(mount.get("options", [])))


def _mount_entry(i: int, mount: dict[str, Any], rootfs: str, *, in_userns: bool) -> None:
    try:
        _mount_one(mount, _destination(mount), rootfs, in_userns=in_userns)
    except InvalidArgument as exc:
        raise InvalidArgument(f"config.json: mounts[{i}]: {exc}") from None


def _destination(mount: dict[str, Any]) -> str:
    dest: str = mount["destination"]
    return dest if dest.startswith("/") else "/" + dest  # runc treats relative destinations as absolute


def _mount_one(mount: dict[str, Any], dest: str, rootfs: str, *, in_userns: bool) -> None:
    """Mount one config entry (not a cgroup one)."""
    fstype = mount.get("type") or ""
    source = mount.get("source") or ""
    flags, propagation, data, extensions = parse_mount_options(mount.get("options", []))
    is_bind = bool(flags & L.MS_BIND) or fstype == "bind"
    if is_bind:
        src = os.path.join(os.getcwd(), source) if not source.startswith("/") else source
        try:
            st = os.stat(src)
        except OSError as exc:
            raise InvalidArgument(f"bind mount source {source!r}: {exc.strerror}") from None
        target = _Target(rootfs, dest, file=not stat.S_ISDIR(st.st_mode))
        try:
            _mount(src, target.proc, None, L.MS_BIND | (flags & L.MS_REC))
            target.reopen()
            extra = flags & ~(L.MS_BIND | L.MS_REC | L.MS_REMOUNT)
            if extra:
                if in_userns:
                    extra |= _current_flags(target.proc) & _LOCKED
                _mount(None, target.proc, None, extra | L.MS_BIND | L.MS_REMOUNT | (flags & L.MS_REC))
            for prop in propagation:
                _mount(None, target.proc, None, prop)
        finally:
            target.close()
        return
    target = _Target(rootfs, dest)
    try:
        options = ",".join(data) if data else None
        if fstype == "tmpfs" and "tmpcopyup" in extensions:
            _tmpfs_copyup(target, flags, options)
        else:
            _mount(source or fstype, target.proc, fstype or None, flags & ~L.MS_REMOUNT, options)
        target.reopen()
        for prop in propagation:
            _mount(None, target.proc, None, prop)
    finally:
        target.close()


def _tmpfs_copyup(target: _Target, flags: int, options: str | None) -> None:
    """Mount a tmpfs over a directory while keeping the directory's content (Docker's tmpfs semantics)."""
    import shutil
    import tempfile

    staging = tempfile.mkdtemp(prefix=".ketch-copyup-")
    try:
        _mount("tmpfs", staging, "tmpfs", flags & ~L.MS_RDONLY, options)
        shutil.copytree(target.path, staging, symlinks=True, dirs_exist_ok=True)
        _mount(staging, target.proc, None, L.MS_MOVE)
        if flags & L.MS_RDONLY:
            target.reopen()
            _mount(None, target.proc, None, flags | L.MS_REMOUNT)
    finally:
        os.rmdir(staging)


def _mount_cgroups(
    dest: str, rootfs: str, flags: int, paths: dict[str, str], cgroup_path: str, new_cgroupns: bool
) -> None:
    ro = flags & L.MS_RDONLY
    base = flags & (L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC | L.MS_RELATIME)
    unified_only = set(paths) == {""}
    if unified_only:
        target = _Target(rootfs, dest)
        try:
            if new_cgroupns:
                _mount("cgroup2", target.proc, "cgroup2", base | ro)
            else:
                _mount(paths[""], target.proc, None, L.MS_BIND | L.MS_REC)
                target.reopen()
                _mount(None, target.proc, None, L.MS_BIND | L.MS_REMOUNT | base | ro)
        finally:
            target.close()
        return
    # cgroup v1 or hybrid: a tmpfs with one directory per hierarchy, each the container's own cgroup.
    target = _Target(rootfs, dest)
    try:
        _mount("tmpfs", target.proc, "tmpfs", base, "mode=755")
        target.reopen()
        # Inside the tmpfs just mounted nothing can be a symlink: plain paths below it are safe, and
        # cheaper than resolving each one again.
        top = os.readlink(target.proc)
    finally:
        target.close()
    suffix = cgroup_path.rstrip("/")
    seen: set[str] = set()
    for host_dir in paths.values():
        mountpoint = (
            host_dir[: len(host_dir) - len(suffix)] if suffix and host_dir.endswith(suffix) else host_dir
        )
        name = os.path.basename(mountpoint.rstrip("/"))
        if name in seen or not os.path.isdir(host_dir):
            continue
        seen.add(name)
        sub = f"{top}/{name}"
        os.mkdir(sub, 0o755)
        _mount(host_dir, sub, None, L.MS_BIND | L.MS_REC)
        _mount(None, sub, None, L.MS_BIND | L.MS_REMOUNT | base | ro)
        for alias in name.split(",") if "," in name else ():
            if not os.path.lexists(f"{top}/{alias}"):
                os.symlink(name, f"{top}/{alias}")
    if ro:
        # The tmpfs itself becomes read-only last, after the hierarchy directories exist.
        _mount(None, top, None, L.MS_REMOUNT | base | ro)


def _create_devices(rootfs: str, devices: list[dict[str, Any]], *, in_userns: bool) -> None:
    wanted: dict[str, dict[str, Any]] = {
        path: {
            "path": path,
            "type": kind,
            "major": major,
            "minor": minor,
            "fileMode": 0o666,
            "uid": 0,
            "gid": 0,
        }
        for path, kind, major, minor in DEFAULT_DEVICES
    }
    for dev in devices:
        wanted[dev["path"]] = dev
    old_umask = os.umask(0)
    try:
        for dev in wanted.values():
            _create_device(rootfs, dev, in_userns=in_userns)
        for source, link in _DEV_LINKS:
            path = secure_join(rootfs, link)
            if not os.path.lexists(path):
                os.symlink(source, path)
        ptmx = secure_join(rootfs, "/dev/ptmx")
        if os.path.lexists(ptmx) and not os.path.islink(ptmx):
            os.unlink(ptmx)
        if not os.path.lexists(ptmx):
            os.symlink("pts/ptmx", ptmx)
    except OSError as exc:
        raise _fail("create /dev links", exc) from None
    finally:
        os.umask(old_umask)


def _create_device(rootfs: str, dev: dict[str, Any], *, in_userns: bool) -> None:
    path = dev["path"]
    kind = dev["type"]
    mode = dev.get("fileMode", 0o666) & 0o7777
    if kind == "p":
        mode |= stat.S_IFIFO
    elif kind == "b":
        mode |= stat.S_IFBLK
    else:
        mode |= stat.S_IFCHR
    try:
        _mkdir_in_root(rootfs, os.path.dirname(path))
        dest = secure_join(rootfs, path)
        if in_userns and kind != "p":
            # mknod is refused in a user namespace: bind the host's node instead.
            if not os.path.lexists(dest):
                os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
            target = _Target(rootfs, path, file=True)
            try:
                _mount(path, target.proc, None, L.MS_BIND)
            finally:
                target.close()
            return
        if os.path.lexists(dest):
            os.unlink(dest)
        os.mknod(dest, mode, os.makedev(dev.get("major", 0), dev.get("minor", 0)))
        os.chown(dest, dev.get("uid", 0), dev.get("gid", 0), follow_symlinks=False)
    except OSError as exc:
        raise _fail(f"create device {path}", exc) from None


def pivot(rootfs: str, *, no_pivot: bool) -> None:
    """Make ``rootfs`` the root; the old root is detached and gone from the container's view."""
    try:
        os.chdir(rootfs)
        if no_pivot:
            L.mount(rootfs, "/", None, L.MS_MOVE)
            os.chroot(".")
        else:
            old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
            try:
                L.pivot_root(".", ".")
                os.fchdir(old_root)
                # Stop unmount events of the old root from reaching the host before detaching it.
                L.mount(None, ".", None, L.MS_SLAVE | L.MS_REC)
                L.umount2(".", L.MNT_DETACH)
            finally:
                os.close(old_root)
        os.chdir("/")
    except OSError as exc:
        raise _fail(f"pivot_root to {rootfs}", exc) from None


def finalize(config: dict[str, Any], *, in_userns: bool) -> None:
    """After pivot_root: sysctls, masked and read-only paths, read-only root, root propagation."""
    linux = config.get("linux", {})
    for key, value in linux.get("sysctl", {}).items():
        write_value("/proc/sys/" + key.replace(".", "/"), value, f"set sysctl {key}={value}")
    for path in linux.get("readonlyPaths", []):
        if not os.path.lexists(path):
            continue
        _mount(path, path, None, L.MS_BIND | L.MS_REC)
        flags = L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY | L.MS_REC | (_current_flags(path) & _LOCKED)
        _mount(None, path, None, flags)
    for path in linux.get("maskedPaths", []):
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", L.MS_RDONLY)
        else:
            _mount("/dev/null", path, None, L.MS_BIND)
    if config.get("root", {}).get("readonly"):
        flags = L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY
        if in_userns:
            flags |= _current_flags("/") & _LOCKED
        _mount(None, "/", None, flags)
    if linux.get("rootfsPropagation"):
        _mount(None, "/", None, parse_mount_options([linux["rootfsPropagation"]])[1][0])

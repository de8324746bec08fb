"""Copy-based snapshots: the fallback where overlayfs is missing (moby's vfs driver, containerd's native).

Layout under ``<root>/snapshots/naive``: ``metadata.json``, ``metadata.lock`` and ``<n>/fs`` per snapshot.
``prepare`` copies the parent's whole tree into the new snapshot, preserving types, modes (setuid too),
owners, hard links, xattrs and times, so the active snapshot is a complete root filesystem that a plain
bind mount exposes. A view of a parent binds the parent's tree read-only instead of copying it; parents
cannot be removed while views of them exist, so that is safe. Costly in time and space, hence a fallback.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import ClassVar, Literal

from ketch.common.errors import SystemFailure
from ketch.image.snapshots.base import Kind, Mount, Snapshotter

__all__ = ["NaiveSnapshotter", "copy_tree", "supported"]


def supported(root: str) -> bool:
    """Copying works on every filesystem."""
    return True


def _copy_data(src_fd: int, dst_fd: int) -> None:
    try:
        while os.copy_file_range(src_fd, dst_fd, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    while chunk := os.read(src_fd, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view) :]


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return
        raise
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError as exc:
            # As moby's copier does: a filesystem without xattrs, or trusted.* without privilege.
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
                raise


def _copy_meta(src: str, dst: str, st: os.stat_result, privileged: bool) -> None:
    # Order matters: chown clears setuid bits and security.capability, so it comes first.
    if privileged:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: str, dst: str) -> None:
    """Copy the tree at ``src`` to the new path ``dst`` without following any symlink in it.

    Hard links within ``src`` stay hard links; ownership is kept when running as root; sockets are skipped.
    """
    privileged = os.geteuid() == 0
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = []
    stack = [(src, dst)]
    while stack:
        s, d = stack.pop()
        st = os.lstat(s)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            dirs.append((s, d, st))
            with os.scandir(s) as it:
                stack.extend((e.path, os.path.join(d, e.name)) for e in it)
            continue
        if st.st_nlink > 1:
            ident = (st.st_dev, st.st_ino)
            first = links.get(ident)
            if first is not None:
                os.link(first, d, follow_symlinks=False)
                continue
            links[ident] = d
        if stat.S_ISREG(mode):
            sfd = os.open(s, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                dfd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    _copy_data(sfd, dfd)
                finally:
                    os.close(dfd)
            finally:
                os.close(sfd)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(d, 0o600)
        else:
            links.pop((st.st_dev, st.st_ino), None)
            continue
        _copy_meta(s, d, st, privileged)
    # Directories last and deepest first, so creating their children does not move their mtimes.
    for s, d, st in reversed(dirs):
        _copy_meta(s, d, st, privileged)


class NaiveSnapshotter(Snapshotter):
    driver: ClassVar[str] = "naive"
    layer_mode: ClassVar[Literal["overlay", "naive"]] = "naive"
    supported = staticmethod(supported)

    def _fs(self, snapshot_id: str) -> str:
        return os.path.join(self.snapshot_dir(snapshot_id), "fs")

    def _create_dirs(self, snapshot_id: str, kind: Kind, parent_ids: list[str]) -> None:
        target = self._fs(snapshot_id)
        if kind is Kind.ACTIVE and parent_ids:
            try:
                copy_tree(self._fs(parent_ids[0]), target)
            except OSError as exc:
                raise SystemFailure.from_oserror(f"copy snapshot tree into {target}", exc) from exc
        else:
            os.mkdir(target, 0o755)

    def _mounts(self, snapshot_id: str, kind: Kind, parent_ids: list[str]) -> list[Mount]:
        if kind is Kind.VIEW:
            source = self._fs(parent_ids[0]) if parent_ids else self._fs(snapshot_id)
            return [Mount(type="bind", source=source, options=("ro", "rbind"))]
        return [Mount(type="bind", source=self._fs(snapshot_id), options=("rw", "rbind"))]

    def _usage_dir(self, snapshot_id: str) -> str:
        return self._fs(snapshot_id)

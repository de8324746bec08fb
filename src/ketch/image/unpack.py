"""Apply a layer tar (plain, gzip or zstd) to a snapshot directory; the only place content meets snapshots.

Whiteouts, as the OCI image spec (layer.md) defines them, become:

- overlay mode (the target is an overlay upper directory): ``.wh.<name>`` a 0/0 character device ``<name>``;
  ``.wh..wh..opq`` the xattr ``trusted.overlay.opaque=y`` on its directory;
- naive mode (the target holds a full copy of the lower layers): ``.wh.<name>`` deletes ``<name>``;
  ``.wh..wh..opq`` empties its directory.

Per the spec, a whiteout hides only what lower layers hold: entries of the same layer stay. Other
``.wh..wh.`` names (aufs metadata) are skipped, and ``trusted.overlay.*`` xattrs carried by entries are
dropped, so a layer cannot forge overlay state.

Path safety. Nothing is written outside the target directory:

- names are split on ``/``; empty and ``.`` parts are dropped, so an absolute name ``/etc/passwd`` lands
  at ``<target>/etc/passwd``, as moby's pkg/archive does (it cleans the name and joins it to the
  destination). A ``..`` part anywhere is refused, which is stricter than moby (it refuses only names that
  climb above the root once cleaned).
- each parent directory is opened from the root with O_NOFOLLOW, one component at a time, and every
  change is made relative to the parent's fd (openat-style), so no symlink is followed by accident. A
  parent that is a symlink is followed only if it is relative and stays inside the root; a parent symlink
  with an absolute target, or one that climbs out of the root, is refused (Docker's chroot would resolve
  an absolute target inside the root; legitimate layer diffs never have entries below a symlink).
- the final component is never followed: whatever is there (a symlink included) is replaced.
- a hard link must point at a non-directory that an earlier entry of the same layer created; anything
  else (outside the root, missing, from a lower layer) is refused.

A refused entry raises InvalidArgument naming the entry. Entries before it have been applied by then:
the target must be a fresh active snapshot that the caller removes when ``apply_layer`` raises, which is
what ``unpack_layer`` does.

Without root, ownership is not changed, device nodes are skipped and xattrs the kernel refuses (trusted.*,
security.*) are dropped, as moby does in a user namespace; overlay mode needs root for opaque directories.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import shutil
import stat
import tarfile
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

from ketch.common.errors import InvalidArgument, KetchError, SystemFailure, Unsupported
from ketch.image.compression import HashingReader, decompressed

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Self

    from ketch.image.content import ContentStore
    from ketch.image.snapshots.base import Snapshotter

__all__ = ["AppliedLayer", "apply_layer", "unpack_layer"]

Mode = Literal["overlay", "naive"]
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
_CHUNK = 1 << 20
_MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedLayer:
    diff_id: str  # sha256 of the uncompressed tar, trailing padding included
    size: int  # bytes of the uncompressed tar
    compression: str  # "none", "gzip" or "zstd"


# tarfile's header errors by name: typeshed does not declare them.
_CORRUPT_HEADER: tuple[type[Exception], ...] = tuple(
    getattr(tarfile, name) for name in ("TruncatedHeaderError", "InvalidHeaderError")
)


class _StrictTarInfo(tarfile.TarInfo):
    """Header parsing that fails on a truncated or corrupt header after the first one.

    tarfile ends the archive silently there, so a damaged layer would apply as a shorter one. Like Go's
    archive/tar (moby, containerd), a clean end of data at a block boundary still ends the archive.
    """

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        try:
            return super().frombuf(buf, encoding, errors)
        except _CORRUPT_HEADER as exc:
            raise tarfile.ReadError(f"truncated or corrupt tar header: {exc}") from None


class _Refused(Exception):
    """An entry that would write outside the root or is otherwise unsafe; carries the reason."""


def _split(name: str, what: str) -> list[str]:
    if "\0" in name:
        raise _Refused(f"{what} contains a NUL byte")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Refused(f"{what} has a '..' component")
    return parts


def _pax_ns(pax: Mapping[str, str], key: str) -> int | None:
    """A PAX time record ("1700000000.123456789") in nanoseconds, without float rounding."""
    value = pax.get(key)
    if not value:
        return None
    negative = value.startswith("-")
    whole, _, frac = value.lstrip("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        return None
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if negative else ns


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr.") :]] = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr.") :])
            with contextlib.suppress(ValueError):
                out[name] = base64.b64decode(value + "=" * (-len(value) % 4))
    return {k: v for k, v in out.items() if not k.startswith("trusted.overlay.")}


class _Applier:
    def __init__(self, root_fd: int, mode: Mode) -> None:
        self.root_fd = root_fd
        self.mode = mode
        self.privileged = os.geteuid() == 0
        self.created: dict[str, bool] = {}  # path -> is a directory, for everything this layer made
        self.dirs: list[tuple[list[str], int, int, int]] = []  # (path, mode, atime, mtime) set last

    # -- resolution

    def open_parent(self, parts: list[str], *, create: bool) -> tuple[int, list[str]] | None:
        """Open the directory that holds ``parts[-1]``; return (fd, resolved path), or None if missing.

        ``fds`` is the chain of open directories from the root, so a ``..`` from a symlink target steps
        back one level and can never step above the root.
        """
        fds = [os.dup(self.root_fd)]
        names: list[str] = []
        pending = list(reversed(parts[:-1]))
        links = 0
        try:
            while pending:
                comp = pending.pop()
                if comp in ("", "."):
                    continue
                if comp == "..":  # only from a symlink target
                    if len(fds) == 1:
                        raise _Refused("a parent symlink points outside the layer root")
                    os.close(fds.pop())
                    names.pop()
                    continue
                try:
                    child = os.open(comp, _DIR_FLAGS, dir_fd=fds[-1])
                except FileNotFoundError:
                    if not create:
                        return None
                    os.mkdir(comp, 0o700, dir_fd=fds[-1])
                    child = os.open(comp, _DIR_FLAGS, dir_fd=fds[-1])
                    os.chmod(child, 0o755)  # implied parents are 0755, whatever the umask
                    self.created["/".join([*names, comp])] = True
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    where = "/".join([*names, comp])
                    if not stat.S_ISLNK(os.stat(comp, dir_fd=fds[-1], follow_symlinks=False).st_mode):
                        raise _Refused(f"parent {where!r} is not a directory") from None
                    target = os.readlink(comp, dir_fd=fds[-1])
                    if target.startswith("/"):
                        raise _Refused(
                            f"parent {where!r} is a symlink to the absolute path {target!r}"
                        ) from None
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise _Refused(f"too many levels of symlinks at {where!r}") from None
                    pending.extend(reversed(target.split("/")))
                    continue
                fds.append(child)
                names.append(comp)
            return fds.pop(), names
        finally:
            for fd in fds:
                os.close(fd)

    def open_existing_dir(self, names: list[str]) -> int | None:
        """Open a directory this layer recorded, following nothing; None if it was replaced since."""
        fd = os.dup(self.root_fd)
        for comp in names:
            try:
                child = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = child
        return fd

    # -- entries

    def apply(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _split(member.name, "name")
        if not parts:
            if not member.isdir():
                raise _Refused("a non-directory entry cannot replace the layer root")
            self.set_dir_meta(self.root_fd, [], member)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, member)
            return
        opened = self.open_parent(parts, create=True)
        assert opened is not None
        pfd, names = opened
        try:
            self.entry(tf, member, pfd, names, base)
        finally:
            os.close(pfd)

    def entry(
        self, tf: tarfile.TarFile, member: tarfile.TarInfo, pfd: int, names: list[str], base: str
    ) -> None:
        key = "/".join([*names, base])
        try:
            existing: os.stat_result | None = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                self.clear(pfd, base, existing)
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
            try:
                self.set_dir_meta(fd, [*names, base], member)
            finally:
                os.close(fd)
            self.created[key] = True
            return
        if member.islnk():
            self.hardlink(member, pfd, base, existing, key)
            return
        self.clear(pfd, base, existing)
        if member.isreg():
            self.regular(tf, member, pfd, base)
        elif member.issym():
            if "\0" in member.linkname:
                raise _Refused("symlink target contains a NUL byte")
            os.symlink(member.linkname, base, dir_fd=pfd)
            if self.privileged:
                os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            self.set_xattrs(f"/proc/self/fd/{pfd}/{base}", member, follow=False)
            os.utime(base, ns=self.times(member), dir_fd=pfd, follow_symlinks=False)
        elif member.ischr() or member.isblk() or member.isfifo():
            if not member.isfifo() and not self.privileged:
                return  # as moby in a user namespace: device nodes need CAP_MKNOD
            self.special(member, pfd, base)
        else:
            raise _Refused(f"unsupported tar entry type {member.type!r}")
        self.created[key] = False

    def clear(self, pfd: int, base: str, existing: os.stat_result | None) -> None:
        if existing is None:
            return
        if stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)

    def times(self, member: tarfile.TarInfo) -> tuple[int, int]:
        mtime = _pax_ns(member.pax_headers, "mtime")
        if mtime is None:
            mtime = int(member.mtime) * 1_000_000_000
        atime = _pax_ns(member.pax_headers, "atime")
        # As moby: an access time before the modification time is taken as the modification time.
        return (mtime if atime is None or atime < mtime else atime), mtime

    def set_xattrs(self, target: int | str, member: tarfile.TarInfo, *, follow: bool = True) -> None:
        for name, value in _xattrs(member).items():
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as exc:
                # As moby: filesystems without xattrs, and namespaces we may not write, are skipped.
                if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise

    def set_dir_meta(self, fd: int, names: list[str], member: tarfile.TarInfo) -> None:
        if self.privileged:
            os.chown(fd, member.uid, member.gid)
        self.set_xattrs(fd, member)
        atime, mtime = self.times(member)
        self.dirs.append((names, stat.S_IMODE(member.mode), atime, mtime))

    def regular(self, tf: tarfile.TarFile, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(member)
            if src is not None:
                while chunk := src.read(_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            # chown clears setuid bits and file capabilities, so it goes before chmod and xattrs.
            if self.privileged:
                os.chown(fd, member.uid, member.gid)
            os.chmod(fd, stat.S_IMODE(member.mode))
            self.set_xattrs(fd, member)
            os.utime(fd, ns=self.times(member))
        finally:
            os.close(fd)

    def special(self, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        if member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=pfd)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
        # A device or fifo must not be opened for reading or writing; an O_PATH fd still names the inode.
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            path = f"/proc/self/fd/{fd}"
            if self.privileged:
                os.chown(path, member.uid, member.gid)
            os.chmod(path, stat.S_IMODE(member.mode))
            self.set_xattrs(path, member)
            os.utime(path, ns=self.times(member))
        finally:
            os.close(fd)

    def hardlink(
        self, member: tarfile.TarInfo, pfd: int, base: str, existing: os.stat_result | None, key: str
    ) -> None:
        tparts = _split(member.linkname, "hard link target")
        if not tparts:
            raise _Refused("hard link to the layer root")
        opened = self.open_parent(tparts, create=False)
        if opened is None:
            raise _Refused(f"hard link target {member.linkname!r} does not exist in this layer")
        tfd, tnames = opened
        try:
            tkey = "/".join([*tnames, tparts[-1]])
            try:
                os.stat(tparts[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise _Refused(f"hard link target {member.linkname!r} does not exist in this layer") from None
            if self.created.get(tkey) is not False:
                raise _Refused(f"hard link target {member.linkname!r} is not a file of this layer")
            if tkey == key:
                raise _Refused("hard link to itself")
            self.clear(pfd, base, existing)
            os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
        self.created[key] = False

    def whiteout(self, parts: list[str], member: tarfile.TarInfo) -> None:
        base = parts[-1]
        if base == WHITEOUT_OPAQUE:
            self.opaque(parts)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # aufs metadata (.wh..wh.plnk and the like)
        hidden = base[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise _Refused(f"whiteout of {hidden!r}")
        opened = self.open_parent(parts, create=self.mode == "overlay")
        if opened is None:
            return  # naive mode: nothing below to hide
        pfd, names = opened
        try:
            key = "/".join([*names, hidden])
            if key in self.created:
                return  # a whiteout hides lower layers only, never its own layer's entries
            try:
                existing: os.stat_result | None = os.stat(hidden, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            self.clear(pfd, hidden, existing)
            if self.mode == "overlay":
                # Owner and times from the whiteout entry (as moby chowns it), so diff(apply(x)) == x.
                os.mknod(hidden, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
                if self.privileged:
                    os.chown(hidden, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
                os.utime(hidden, ns=self.times(member), dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def opaque(self, parts: list[str]) -> None:
        opened = self.open_parent(parts, create=True)
        assert opened is not None
        pfd, names = opened
        try:
            if self.mode == "overlay":
                try:
                    os.setxattr(pfd, "trusted.overlay.opaque", b"y")
                except PermissionError as exc:
                    raise Unsupported(
                        f"cannot mark {'/'.join(names) or '/'!r} opaque: trusted.overlay.opaque needs CAP_SYS_ADMIN"
                    ) from exc
                return
            prefix = "/".join(names)
            for child in os.listdir(pfd):
                if f"{prefix}/{child}".lstrip("/") not in self.created:
                    st = os.stat(child, dir_fd=pfd, follow_symlinks=False)
                    self.clear(pfd, child, st)
        finally:
            os.close(pfd)

    def finish(self) -> None:
        """Directory modes and times last, deepest first, once nothing more is created inside them."""
        for names, mode, atime, mtime in sorted(self.dirs, key=lambda d: -len(d[0])):
            fd = self.open_existing_dir(names)
            if fd is None:
                continue
            try:
                os.chmod(fd, mode)
                os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)


def apply_layer(stream: BinaryIO, target_dir: str, *, mode: Mode = "overlay") -> AppliedLayer:
    """Apply the layer read from ``stream`` (tar, gzip or zstd, detected by magic) to ``target_dir``.

    ``target_dir`` must be the directory of a fresh active snapshot (its ``fs_dir``): empty in overlay mode,
    a copy of the parent's tree in naive mode. On any error it is left partly written and the caller must
    discard the snapshot. Returns the diff ID (sha256 of the uncompressed tar) and its size.
    """
    if mode not in ("overlay", "naive"):
        raise InvalidArgument(f"invalid layer apply mode {mode!r}: expected 'overlay' or 'naive'")
    try:
        root_fd = os.open(target_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"open layer target {target_dir}", exc) from exc
    name, compression = "<layer>", "none"
    try:
        reader, compression = decompressed(stream)
        hashing = HashingReader(reader)
        applier = _Applier(root_fd, mode)
        with tarfile.open(fileobj=hashing, mode="r|", tarinfo=_StrictTarInfo) as tf:  # type: ignore[call-overload]
            while (member := tf.next()) is not None:
                tf.members.clear()  # stream mode would otherwise keep every header
                name = member.name
                if member.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
                    continue
                applier.apply(tf, member)
        name = "<layer>"
        applier.finish()
        hashing.drain()
    except _Refused as exc:
        raise InvalidArgument(f"layer entry {name!r} refused: {exc}") from None
    except tarfile.TarError as exc:
        raise InvalidArgument(f"layer is not a valid tar archive (at entry {name!r}): {exc}") from exc
    except (EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidArgument(f"layer entry {name!r} refused: a path component is too long") from exc
            raise SystemFailure.from_oserror(f"apply layer entry {name!r} in {target_dir}", exc) from exc
        raise InvalidArgument(f"layer is corrupt or truncated (at entry {name!r}): {exc}") from exc
    except Exception as exc:
        if isinstance(exc, KetchError):
            raise
        if compression == "zstd":
            import zstandard

            if isinstance(exc, zstandard.ZstdError):
                raise InvalidArgument(f"layer is corrupt zstd data (at entry {name!r}): {exc}") from exc
        import zlib

        if isinstance(exc, zlib.error):
            raise InvalidArgument(f"layer is corrupt gzip data (at entry {name!r}): {exc}") from exc
        raise
    finally:
        os.close(root_fd)
    return AppliedLayer(diff_id=hashing.hasher.digest, size=hashing.hasher.size, compression=compression)


def unpack_layer(
    content: ContentStore,
    snapshotter: Snapshotter,
    layer_digest: str,
    *,
    name: str,
    parent: str = "",
    expected_diff_id: str | None = None,
) -> AppliedLayer:
    """Apply the blob ``layer_digest`` on top of ``parent`` and commit the result as snapshot ``name``.

    The layer goes into a fresh active snapshot that is removed if anything fails (a refused entry, a
    diff ID other than ``expected_diff_id``), so a failed unpack leaves no trace.
    """
    key = f"extract-{os.getpid()}-{time.monotonic_ns()} {name}"
    snapshotter.prepare(key, parent)
    try:
        with content.open(layer_digest) as blob:
            applied = apply_layer(blob, snapshotter.fs_dir(key), mode=snapshotter.layer_mode)
        if expected_diff_id is not None and applied.diff_id != expected_diff_id:
            raise InvalidArgument(
                f"layer {layer_digest}: diff ID mismatch: expected {expected_diff_id}, actual {applied.diff_id}"
            )
        snapshotter.commit(name, key)
    except BaseException:
        with contextlib.suppress(KetchError):
            snapshotter.remove(key)
        raise
    return applied

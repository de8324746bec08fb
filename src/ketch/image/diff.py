"""Make a layer tar from a snapshot: the inverse of unpack.

Two sources of changes:

- ``diff_overlay(upper)``: an overlay upper directory already holds exactly the changes. A 0/0 character
  device becomes the whiteout ``.wh.<name>`` and a directory with ``trusted.overlay.opaque=y`` gets a
  ``.wh..wh..opq`` entry right after its own, both as empty regular files the way moby writes them.
  Other ``trusted.overlay.*`` xattrs are overlay's bookkeeping and are left out; a redirect or metacopy
  xattr (overlay's redirect_dir and metacopy features) means the upper no longer holds whole files and
  raises Unsupported.
- ``diff_naive(lower, upper)``: compares two full trees (a naive snapshot and its parent). A path missing
  from ``upper`` becomes a whiteout; a new path, or one whose type, mode, owner, size, times, xattrs,
  link target or device differs, is written whole. Files whose metadata match but whose mtime has no
  sub-second part (possibly truncated) have their contents compared, as containerd's continuity does.

Output is deterministic: PAX format, entries sorted by name with each directory before its contents,
numeric owners without names, whole-second mtimes (as moby writes them), hard links within the tree kept
as link entries. The tar may be compressed on the way out (gzip or zstd); the result names both the diff
ID (sha256 of the uncompressed tar) and the digest of the bytes written.
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

from ketch.common.digest import Hasher
from ketch.common.errors import InvalidArgument, SystemFailure, Unsupported
from ketch.image.xattrs import pax_xattrs, read_xattrs

if TYPE_CHECKING:
    import gzip
    from typing import Protocol

    import zstandard

    class _Writable(Protocol):
        def write(self, data: bytes, /) -> int: ...


__all__ = ["LayerDiff", "diff_naive", "diff_overlay"]

Compression = Literal["none", "gzip", "zstd"]
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerDiff:
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # bytes of the uncompressed tar
    digest: str  # sha256 of the bytes written (the diff ID when uncompressed)
    compressed_size: int
    compression: str


class _Counter:
    def __init__(self, out: _Writable) -> None:
        self._out = out
        self.hasher = Hasher()

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Emitter:
    def __init__(self, tf: tarfile.TarFile) -> None:
        self.tf = tf
        self.links: dict[tuple[int, int], str] = {}

    def header(self, name: str, st: os.stat_result, xattrs: dict[str, bytes]) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = st.st_mtime_ns // 1_000_000_000
        ti.pax_headers = pax_xattrs({k: v for k, v in xattrs.items() if not k.startswith("trusted.overlay.")})
        return ti

    def empty_file(self, name: str, st: os.stat_result, mode: int) -> None:
        ti = self.header(name, st, {})
        ti.type, ti.size, ti.mode = tarfile.REGTYPE, 0, mode
        self.tf.addfile(ti)

    def entry(self, path: str, name: str, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
        """Write one entry (not a whiteout) for the file at ``path`` under the tar name ``name``."""
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return  # sockets have no tar form
        ti = self.header(name, st, xattrs)
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            first = self.links.setdefault((st.st_dev, st.st_ino), name)
            if first != name:
                ti.type, ti.linkname = tarfile.LNKTYPE, first
                self.tf.addfile(ti)
                return
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        else:
            ti.type, ti.size = tarfile.REGTYPE, st.st_size
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                self.tf.addfile(ti, f)
            return
        self.tf.addfile(ti)


def _write_tar(out: BinaryIO, compression: Compression, fill: _Fill) -> LayerDiff:
    if compression not in ("none", "gzip", "zstd"):
        raise InvalidArgument(f"invalid layer compression {compression!r}: expected none, gzip or zstd")
    written = _Counter(out)
    compressor: gzip.GzipFile | zstandard.ZstdCompressionWriter | None = None
    if compression == "gzip":
        import gzip

        compressor = gzip.GzipFile(fileobj=written, mode="wb", mtime=0, compresslevel=6)
    elif compression == "zstd":
        import zstandard

        compressor = zstandard.ZstdCompressor(level=3).stream_writer(written, closefd=False)  # type: ignore[arg-type]
    raw = _Counter(written if compressor is None else compressor)
    with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tf:  # type: ignore[call-overload]
        try:
            fill(_Emitter(tf))
        except OSError as exc:
            raise SystemFailure.from_oserror("write layer diff", exc) from exc
    if compressor is not None:
        compressor.close()
    return LayerDiff(
        diff_id=raw.hasher.digest,
        size=raw.hasher.size,
        digest=written.hasher.digest,
        compressed_size=written.hasher.size,
        compression=compression,
    )


if TYPE_CHECKING:
    from collections.abc import Callable

    _Fill = Callable[[_Emitter], None]


def _sorted_entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _overlay_xattrs(path: str, rel: str) -> dict[str, bytes]:
    xattrs = read_xattrs(path)
    for feature in ("trusted.overlay.redirect", "trusted.overlay.metacopy"):
        if feature in xattrs:
            raise Unsupported(
                f"{rel or '/'!r} in the upper directory carries {feature}: disable that overlay feature"
            )
    return xattrs


def diff_overlay(upper_dir: str, out: BinaryIO, *, compression: Compression = "none") -> LayerDiff:
    """Write the changes held by an overlay upper directory to ``out`` as an OCI layer."""

    def fill(em: _Emitter) -> None:
        root_xattrs = _overlay_xattrs(upper_dir, "")
        if root_xattrs.get("trusted.overlay.opaque") == b"y":
            st = os.lstat(upper_dir)
            em.empty_file(".wh..wh..opq", st, stat.S_IMODE(st.st_mode) & 0o777)
        stack = [(upper_dir, "")]
        while stack:
            directory, prefix = stack.pop()
            children = []
            for entry in _sorted_entries(directory):
                rel = prefix + entry.name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    em.empty_file(prefix + ".wh." + entry.name, st, 0o600)
                    continue
                xattrs = _overlay_xattrs(entry.path, rel)
                em.entry(entry.path, rel, st, xattrs)
                if stat.S_ISDIR(st.st_mode):
                    if xattrs.get("trusted.overlay.opaque") == b"y":
                        em.empty_file(rel + "/.wh..wh..opq", st, stat.S_IMODE(st.st_mode) & 0o777)
                    children.append((entry.path, rel + "/"))
            stack.extend(reversed(children))

    return _write_tar(out, compression, fill)


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def _changed(upath: str, ust: os.stat_result, lpath: str, lst: os.stat_result) -> bool:
    if stat.S_IFMT(ust.st_mode) != stat.S_IFMT(lst.st_mode):
        return True
    if (ust.st_mode, ust.st_uid, ust.st_gid, ust.st_mtime_ns) != (
        lst.st_mode,
        lst.st_uid,
        lst.st_gid,
        lst.st_mtime_ns,
    ):
        return True
    if read_xattrs(upath) != read_xattrs(lpath):
        return True
    if stat.S_ISDIR(ust.st_mode):
        return False
    if stat.S_ISLNK(ust.st_mode):
        return os.readlink(upath) != os.readlink(lpath)
    if stat.S_ISCHR(ust.st_mode) or stat.S_ISBLK(ust.st_mode):
        return ust.st_rdev != lst.st_rdev
    if stat.S_ISREG(ust.st_mode):
        if ust.st_size != lst.st_size:
            return True
        if ust.st_mtime_ns % 1_000_000_000 == 0:
            return not _same_content(upath, lpath)
    return False


def diff_naive(
    lower_dir: str | None, upper_dir: str, out: BinaryIO, *, compression: Compression = "none"
) -> LayerDiff:
    """Write what turns the tree ``lower_dir`` (None: empty) into ``upper_dir`` to ``out`` as an OCI layer."""

    def subtree(em: _Emitter, path: str, rel: str, st: os.stat_result) -> None:
        em.entry(path, rel, st, read_xattrs(path))
        if stat.S_ISDIR(st.st_mode):
            for entry in _sorted_entries(path):
                subtree(em, entry.path, f"{rel}/{entry.name}", entry.stat(follow_symlinks=False))

    def compare(em: _Emitter, upper: str, lower: str | None, prefix: str) -> None:
        uentries = {e.name: e for e in _sorted_entries(upper)}
        lentries: dict[str, os.DirEntry[str]] = {}
        if lower is not None:
            lentries = {e.name: e for e in _sorted_entries(lower)}
        for name in sorted(uentries.keys() | lentries.keys()):
            rel = prefix + name
            u, low = uentries.get(name), lentries.get(name)
            if u is None:
                assert low is not None
                em.empty_file(prefix + ".wh." + name, os.lstat(upper), 0o600)
                continue
            ust = u.stat(follow_symlinks=False)
            if low is None:
                subtree(em, u.path, rel, ust)
                continue
            lst = low.stat(follow_symlinks=False)
            both_dirs = stat.S_ISDIR(ust.st_mode) and stat.S_ISDIR(lst.st_mode)
            if _changed(u.path, ust, low.path, lst):
                if not both_dirs:
                    subtree(em, u.path, rel, ust)
                    continue
                em.entry(u.path, rel, ust, read_xattrs(u.path))
            if both_dirs:
                compare(em, u.path, low.path, rel + "/")

    def fill(em: _Emitter) -> None:
        compare(em, upper_dir, lower_dir, "")

    return _write_tar(out, compression, fill)

"""Build layer tars in tests, and describe directory trees so two of them can be compared.

Hostile layers are generated here rather than kept as fixtures, so each test shows what it feeds in.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import zstandard

ROOT = os.geteuid() == 0
MTIME = 1_700_000_000


@dataclass
class E:
    """One tar entry: kind is file, dir, symlink, hardlink, char, block or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int | float = MTIME
    linkname: str = ""
    dev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)
    pax: dict[str, str] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(entries: list[E], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8") as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = _TYPES[e.kind]
            ti.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            ti.uid, ti.gid, ti.mtime = e.uid, e.gid, e.mtime
            ti.linkname = e.linkname
            ti.devmajor, ti.devminor = e.dev
            pax = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in e.xattrs.items()}
            pax.update(e.pax)
            ti.pax_headers = pax
            if e.kind == "file":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def xattrs_of(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out = {}
    for n in names:
        if n.startswith("trusted.overlay.") or n == "security.selinux":
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
    return out


def describe(root: str, *, dir_mtimes: bool = False) -> dict[str, tuple[object, ...]]:
    """Path -> (type, mode, uid, gid, content or link target or device, mtime, xattrs), without following."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = st.st_mode
            if stat.S_ISREG(mode):
                with open(path, "rb") as f:
                    what: object = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(mode):
                what = os.readlink(path)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                what = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                what = None
            mtime = st.st_mtime_ns if (dir_mtimes or not stat.S_ISDIR(mode)) else None
            out[rel] = (
                stat.S_IFMT(mode),
                stat.S_IMODE(mode),
                st.st_uid,
                st.st_gid,
                what,
                mtime,
                xattrs_of(path),
            )
    return out


def hardlink_groups(root: str) -> list[list[str]]:
    groups: dict[tuple[int, int], list[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                groups.setdefault((st.st_dev, st.st_ino), []).append(os.path.relpath(path, root))
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        return [m.name for m in tf.getmembers()]


def tar_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        return {m.name: m for m in tf.getmembers()}


def mount_all(mounts: list[object], target: str) -> None:
    """Perform snapshot mounts (ketch.image.snapshots.Mount) on ``target``, as a runtime would. Root only."""
    from ketch.sys import linux

    for m in mounts:
        mtype, source, options = m.type, m.source, m.options  # type: ignore[attr-defined]
        flags, data = 0, []
        for opt in options:
            if opt == "ro":
                flags |= linux.MS_RDONLY
            elif opt == "rbind":
                flags |= linux.MS_BIND | linux.MS_REC
            elif opt == "bind":
                flags |= linux.MS_BIND
            elif opt != "rw":
                data.append(opt)
        if mtype == "bind":
            flags |= linux.MS_BIND
        linux.mount(source, target, None if mtype == "bind" else mtype, flags, ",".join(data) or None)
        if flags & linux.MS_BIND and flags & linux.MS_RDONLY:
            # A bind mount ignores MS_RDONLY until remounted.
            remount = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY
            linux.mount(None, target, None, remount, None)


def unmount(target: str) -> None:
    from ketch.sys import linux

    linux.umount2(target, linux.MNT_DETACH)


@contextlib.contextmanager
def mounted(mounts: list[object], target: str) -> Iterator[str]:
    os.makedirs(target, exist_ok=True)
    mount_all(mounts, target)
    try:
        yield target
    finally:
        unmount(target)

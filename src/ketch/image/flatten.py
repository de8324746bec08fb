"""Write the merged root filesystem of stacked layer directories as one tar, without mounting anything.

The directories are what a snapshot view's mounts name: one directory for a bind mount (a naive snapshot
holds the whole tree), or overlay's lower directories, topmost first. They merge as overlayfs merges them:

- the topmost layer holding a name decides what it is; a 0/0 character device there (a whiteout) hides it;
- a directory merges with the same directory of the layers below, down to and including the first layer
  where it is opaque (``trusted.overlay.opaque=y``), and never through a layer where the name is not a
  directory;
- metadata of a merged directory comes from its topmost layer.

Output follows ``docker export``: names relative to the root without ``./``, directories before their
contents, numeric owners without names, hard links within one layer kept as links, xattrs as PAX
``SCHILY.xattr.*`` except overlay's own ``trusted.overlay.*``.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Sequence
from typing import BinaryIO

from ketch.common.errors import SystemFailure, Unsupported
from ketch.image.snapshots.base import Mount
from ketch.image.xattrs import pax_xattrs, read_xattrs

__all__ = ["layer_dirs", "write_merged"]

_OPAQUE = "trusted.overlay.opaque"


def layer_dirs(mounts: Sequence[Mount]) -> list[str]:
    """The layer directories, topmost first, of a read-only view's mounts."""
    if len(mounts) != 1:
        raise Unsupported(f"cannot flatten a view made of {len(mounts)} mounts")
    mount = mounts[0]
    if mount.type == "bind":
        return [mount.source]
    if mount.type == "overlay":
        for option in mount.options:
            if option.startswith("lowerdir="):
                return option.removeprefix("lowerdir=").split(":")
    raise Unsupported(f"cannot flatten a {mount.type} mount")


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _xattrs(path: str) -> dict[str, str]:
    """The PAX headers for ``path``'s xattrs, less overlayfs' own and SELinux labels (host-specific)."""
    kept = {
        k: v
        for k, v in read_xattrs(path).items()
        if not k.startswith("trusted.overlay.") and k != "security.selinux"
    }
    return pax_xattrs(kept)


class _Writer:
    def __init__(self, tf: tarfile.TarFile) -> None:
        self.tf = tf

    def entry(self, path: str, name: str) -> None:
        info = self.tf.gettarinfo(path, arcname=name)
        if info is None:  # a socket: tar has no type for it
            return
        info.uname = info.gname = ""
        info.mtime = int(info.mtime)
        info.pax_headers = _xattrs(path)
        if info.isreg():
            with open(path, "rb") as f:
                self.tf.addfile(info, f)
        else:
            self.tf.addfile(info)

    def merge(self, rel: str, layers: list[str]) -> None:
        """Write the children of directory ``rel``, a directory in each of ``layers`` (topmost first)."""
        seen: set[str] = set()
        children: list[tuple[str, list[str], bool]] = []  # name, contributing layers, is a directory
        for index, layer in enumerate(layers):
            directory = os.path.join(layer, rel)
            with os.scandir(directory) as it:
                names = sorted(entry.name for entry in it)
            for name in names:
                if name in seen:
                    continue
                seen.add(name)
                path = os.path.join(directory, name)
                st = os.lstat(path)
                if _is_whiteout(st):
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    children.append((name, [layer], False))
                    continue
                contributing = [layer]
                if not _opaque(path):
                    for lower in layers[index + 1 :]:
                        lower_path = os.path.join(lower, rel, name)
                        try:
                            lst = os.lstat(lower_path)
                        except FileNotFoundError:
                            continue
                        if not stat.S_ISDIR(lst.st_mode):
                            break
                        contributing.append(lower)
                        if _opaque(lower_path):
                            break
                children.append((name, contributing, True))
        for name, contributing, is_dir in sorted(children):
            child = os.path.join(rel, name) if rel else name
            self.entry(os.path.join(contributing[0], child), child)
            if is_dir:
                self.merge(child, contributing)


def write_merged(layers: Sequence[str], out: BinaryIO) -> None:
    """Write the merged tree of ``layers`` (topmost first) to ``out`` as an uncompressed tar."""
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            if layers:
                _Writer(tf).merge("", [str(layer) for layer in layers])
    except OSError as exc:
        raise SystemFailure.from_oserror("export the image's files", exc) from exc

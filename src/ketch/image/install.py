"""Unpack an image's layers into snapshots named by chain ID, and measure them.

Shared by pull (service), load and import (archive). Layer ``i`` is applied on top of chain ID ``i-1`` and
committed as chain ID ``i``, unless a committed snapshot of that name exists already (another image shares
the layer, or a concurrent unpack got there first). A layer applied here is checked against its diff ID; a
layer found already unpacked was checked when it was applied, and ``verify_present`` re-checks its blob.

Sizes are Docker's DiffSize: the bytes of every non-directory entry of the layer, hard links counted once
(moby pkg/directory). For overlay snapshots that is measured on the snapshot's own directory; naive
snapshots hold whole trees, so there it is read from the layer's tar headers instead.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ketch.common.digest import Hasher
from ketch.common.errors import Conflict, InvalidArgument, NotFound
from ketch.image.compression import decompressed
from ketch.image.content import ContentStore
from ketch.image.snapshots.base import Kind, Snapshotter
from ketch.image.unpack import unpack_layer
from ketch.spec.oci_image import chain_ids

__all__ = ["Unpacked", "dir_size", "layer_diff_id", "unpack_layers"]

_CHUNK = 1 << 20


@dataclass(slots=True)
class Unpacked:
    chain_ids: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # snapshots this call made (the caller's to undo)


def dir_size(path: str) -> int:
    """Sum of st_size of every entry that is not a directory, each inode once (moby's directory.Size)."""
    seen: set[int] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISDIR(st.st_mode) or st.st_size == 0 or st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            total += st.st_size
    return total


def _tar_size(content: ContentStore, digest: str) -> int:
    """DiffSize from a layer's tar headers: regular files and symlink targets; hard links count once."""
    total = 0
    with content.open(digest) as blob:
        reader, _ = decompressed(blob)
        with tarfile.open(fileobj=reader, mode="r|") as tf:  # type: ignore[call-overload]
            for member in tf:
                tf.members.clear()
                base = os.path.basename(member.name.rstrip("/"))
                if base.startswith(".wh."):
                    continue
                if member.isreg():
                    total += member.size
                elif member.issym():
                    total += len(member.linkname.encode())
    return total


def layer_diff_id(content: ContentStore, digest: str) -> str:
    """The digest of a layer blob's uncompressed bytes."""
    hasher = Hasher()
    with content.open(digest) as blob:
        reader, _ = decompressed(blob)
        while chunk := reader.read(_CHUNK):
            hasher.update(chunk)
    return hasher.digest


def _committed(snapshotter: Snapshotter, name: str) -> bool:
    try:
        return snapshotter.stat(name).kind is Kind.COMMITTED
    except NotFound:
        return False


def _size(content: ContentStore, snapshotter: Snapshotter, name: str, layer: str) -> int:
    if snapshotter.layer_mode == "overlay":
        return dir_size(snapshotter.fs_dir(name))
    return _tar_size(content, layer)


def unpack_layers(
    content: ContentStore,
    snapshotter: Snapshotter,
    layers: Sequence[str],
    diff_ids: Sequence[str],
    *,
    verify_present: bool = False,
    out: Unpacked | None = None,
    on_extract: Callable[[str, bool], None] | None = None,
) -> Unpacked:
    """Make sure every layer is a committed snapshot; return chain IDs, sizes and the snapshots made.

    ``out`` collects as it goes, so a caller whose unpack fails half-way knows what to remove.
    ``on_extract(layer_digest, done)`` is called before and after each layer actually applied.
    """
    if len(layers) != len(diff_ids):
        raise InvalidArgument(
            f"image has {len(layers)} layers but its config lists {len(diff_ids)} diff IDs (rootfs.diff_ids)"
        )
    result = out if out is not None else Unpacked()
    parent = ""
    for layer, diff_id, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
        if _committed(snapshotter, chain):
            if verify_present and layer != diff_id:
                actual = layer_diff_id(content, layer)
                if actual != diff_id:
                    raise InvalidArgument(
                        f"layer {layer}: diff ID mismatch: expected {diff_id}, actual {actual}"
                    )
        else:
            if on_extract is not None:
                on_extract(layer, False)
            try:
                unpack_layer(content, snapshotter, layer, name=chain, parent=parent, expected_diff_id=diff_id)
                result.created.append(chain)
            except Conflict:
                if not _committed(snapshotter, chain):  # not a concurrent unpack of the same layer
                    raise
            if on_extract is not None:
                on_extract(layer, True)
        result.chain_ids.append(chain)
        result.sizes.append(_size(content, snapshotter, chain, layer))
        parent = chain
    return result

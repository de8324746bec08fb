"""Remove blobs and snapshots that no image references.

Roots come from the image store (``ImageStore.gc_roots``): every image's config, manifests, index and layer
blobs, and the chain IDs of its layers. Besides those, the content store keeps whatever a live lease holds
(``ContentStore.gc`` checks leases under its own lock), and a snapshot stays while anything is built on it
(an active container snapshot, a view, a child layer), because the snapshotter refuses to remove a parent.

Only committed snapshots named by a chain ID (``sha256:<hex>``) are image layers; active snapshots and views
belong to whoever prepared them and are left alone, except the scratch ones image code makes for itself
(``extract-<pid>-...`` while unpacking a layer, ``export-<pid>-...`` while exporting) once their process
has died: a full collection removes those, so a crash mid-unpack leaves nothing behind for good.

Image operations that add blobs or snapshots before recording an image (pull, load, import, preparing a
container's root filesystem) hold ``<root>/image/gc.lock`` shared through :func:`pinned`; a collection holds it
exclusively, so it never sees a blob that is written but not yet recorded. ``blocking=False`` gives up at once
when an operation is running (``rmi`` does that: the garbage waits for the next collection).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ketch.common.errors import Conflict, NotFound
from ketch.image.content import ContentStore
from ketch.image.snapshots.base import Kind, Snapshotter
from ketch.image.store import ImageStore

__all__ = ["GCReport", "collect", "pinned"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GCReport:
    snapshots: tuple[str, ...] = ()  # chain IDs removed, top layers first
    blobs: tuple[str, ...] = ()
    blob_bytes: int = 0
    skipped: bool = False  # the lock was busy and blocking=False


def _lock_path(store: ImageStore) -> str:
    return os.path.join(store.path, "gc.lock")


@contextlib.contextmanager
def pinned(store: ImageStore) -> Iterator[None]:
    """Keep collections out while the block adds blobs or snapshots that no record names yet."""
    fd = os.open(_lock_path(store), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _is_layer(name: str) -> bool:
    return name.startswith("sha256:") and len(name) == 71


_SCRATCH = ("extract-", "export-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_scratch(snapshotter: Snapshotter) -> None:
    """Remove extraction and export snapshots whose process is gone."""
    for info in snapshotter.walk():
        if info.kind is Kind.COMMITTED or not info.name.startswith(_SCRATCH):
            continue
        pid = info.name.split("-", 2)[1]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                snapshotter.remove(info.name)
            except (Conflict, NotFound):
                continue


def _sweep_snapshots(snapshotter: Snapshotter, keep: set[str], only: set[str] | None) -> list[str]:
    """Remove unreferenced committed layer snapshots, leaves first, until nothing more can go."""
    removed: list[str] = []
    while True:
        infos = snapshotter.walk()
        parents = {info.parent for info in infos if info.parent}
        leaves = [
            info.name
            for info in infos
            if info.kind is Kind.COMMITTED
            and _is_layer(info.name)
            and info.name not in keep
            and info.name not in parents
            and (only is None or info.name in only)
        ]
        progress = False
        for name in leaves:
            try:
                snapshotter.remove(name)
            except (Conflict, NotFound):  # someone built on it or removed it meanwhile
                continue
            removed.append(name)
            progress = True
        if not progress:
            return removed


def collect(
    store: ImageStore,
    content: ContentStore,
    snapshotter: Snapshotter,
    *,
    blobs: Iterable[str] | None = None,
    snapshots: Iterable[str] | None = None,
    blocking: bool = True,
) -> GCReport:
    """Remove what no image needs. With ``blobs``/``snapshots``, consider only those candidates (what one
    removed image or one failed load left behind); without, sweep everything."""
    fd = os.open(_lock_path(store), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return GCReport(skipped=True)
        keep_blobs, keep_chains = store.gc_roots()
        only_snapshots = set(snapshots) if snapshots is not None else None
        if only_snapshots is None:
            _sweep_scratch(snapshotter)
        removed_snapshots = _sweep_snapshots(snapshotter, keep_chains, only_snapshots)
        if blobs is not None:
            # Everything but the candidates is kept, so a targeted run never widens into a full sweep.
            candidates = set(blobs) - keep_blobs
            keep_blobs = set(content.list_digests()) - candidates
        result = content.gc(keep_blobs, ingest_max_age=None if blobs is not None else 24 * 3600.0)
    finally:
        os.close(fd)
    return GCReport(
        snapshots=tuple(removed_snapshots), blobs=result.removed, blob_bytes=result.freed_bytes, skipped=False
    )

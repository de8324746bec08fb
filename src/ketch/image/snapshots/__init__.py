"""Snapshotters: containerd's model (see ``base``) over overlayfs, with a copying fallback."""

from __future__ import annotations

from ketch.image.snapshots import naive, overlay
from ketch.image.snapshots.base import Info, Kind, Mount, Snapshotter, Usage
from ketch.image.snapshots.naive import NaiveSnapshotter
from ketch.image.snapshots.overlay import OverlaySnapshotter

__all__ = [
    "Info",
    "Kind",
    "Mount",
    "NaiveSnapshotter",
    "OverlaySnapshotter",
    "Snapshotter",
    "Usage",
    "default_snapshotter",
]


def default_snapshotter(root: str) -> Snapshotter:
    """The overlay snapshotter where overlay works on the filesystem of ``root``, else the naive one."""
    if overlay.supported(root):
        return OverlaySnapshotter(root)
    assert naive.supported(root)
    return NaiveSnapshotter(root)

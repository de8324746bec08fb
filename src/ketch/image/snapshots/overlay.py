"""Overlayfs snapshots: each snapshot is an upper directory; its parents are the lower directories.

Layout under ``<root>/snapshots/overlayfs``: ``metadata.json``, ``metadata.lock`` and, per snapshot,
``<n>/fs`` (the upper directory: the snapshot's own changes, whiteouts as 0/0 character devices, opaque
directories marked with the xattr ``trusted.overlay.opaque=y``) and ``<n>/work`` (overlay's work dir).

Mounts, as containerd's overlay snapshotter returns them:

- active, no parent: a read-write bind of ``<n>/fs``; a view with no parent: the same, read-only;
- view of a single parent: a read-only bind of that parent's ``fs`` (nothing to overlay);
- active with parents: ``overlay`` with ``upperdir``, ``workdir`` and ``lowerdir=<parent>:<grandparent>:...``
  (nearest first, as overlay stacks lowerdirs left over right);
- view of several parents: ``overlay`` with only ``lowerdir``, which overlay mounts read-only.

Limits of lowerdir: the kernel stacks at most 500 lower layers (OVL_MAX_STACK); more raise Unsupported here.
With mount(2), the whole option string must also fit in one page (4096 bytes), about 100 layers at typical
path lengths; a mounter that meets deeper chains must shorten the paths (containerd mounts from the
snapshotter directory with relative lowerdirs) or use fsconfig's ``lowerdir+``. Paths containing ``,`` or
``:`` cannot be expressed in overlay options and are refused when the snapshotter opens.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import ClassVar, Literal

from ketch.common.errors import InvalidArgument, Unsupported
from ketch.image.snapshots.base import Kind, Mount, Snapshotter

__all__ = ["MAX_LOWER_DIRS", "OverlaySnapshotter", "supported", "why_unsupported"]

MAX_LOWER_DIRS = 500


def _overlay_listed() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


def why_unsupported(root: str) -> str | None:
    """None if overlay snapshots can work under ``root``, else the reason.

    Checks that the kernel lists overlay and, when running as root, that an overlay mount with its upper
    and work directories on the backing filesystem of ``<root>/snapshots`` actually succeeds (overlay
    refuses some upper filesystems, such as overlay itself without xattr support).
    """
    if not _overlay_listed():
        return "overlay is not listed in /proc/filesystems"
    if os.geteuid() != 0:
        return None
    from ketch.sys import linux

    base = os.path.join(os.path.abspath(root), "snapshots")
    os.makedirs(base, mode=0o700, exist_ok=True)
    probe = tempfile.mkdtemp(prefix=".overlay-probe-", dir=base)
    try:
        dirs = {name: os.path.join(probe, name) for name in ("lower", "upper", "work", "merged")}
        for path in dirs.values():
            os.mkdir(path)
        data = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        try:
            linux.mount("overlay", dirs["merged"], "overlay", 0, data)
        except OSError as exc:
            return f"a test overlay mount on the filesystem of {base} failed: {exc.strerror}"
        linux.umount2(dirs["merged"], linux.MNT_DETACH)
        return None
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def supported(root: str) -> bool:
    return why_unsupported(root) is None


class OverlaySnapshotter(Snapshotter):
    driver: ClassVar[str] = "overlayfs"
    layer_mode: ClassVar[Literal["overlay", "naive"]] = "overlay"
    supported = staticmethod(supported)

    def __init__(self, root: str) -> None:
        super().__init__(root)
        if "," in self.path or ":" in self.path:
            raise InvalidArgument(f"overlay snapshot directory {self.path!r} must not contain ',' or ':'")
        # containerd turns the index feature off where the kernel has it: with index=on, overlay
        # remembers which lower an upper was first mounted with and refuses others.
        self._extra = ("index=off",) if os.path.exists("/sys/module/overlay/parameters/index") else ()

    def _fs(self, snapshot_id: str) -> str:
        return os.path.join(self.snapshot_dir(snapshot_id), "fs")

    def _create_dirs(self, snapshot_id: str, kind: Kind, parent_ids: list[str]) -> None:
        if len(parent_ids) > MAX_LOWER_DIRS:
            raise Unsupported(
                f"overlay stacks at most {MAX_LOWER_DIRS} lower layers; this chain has {len(parent_ids)}"
            )
        os.mkdir(self._fs(snapshot_id), 0o755)
        if kind is Kind.ACTIVE:
            os.mkdir(os.path.join(self.snapshot_dir(snapshot_id), "work"), 0o711)

    def _mounts(self, snapshot_id: str, kind: Kind, parent_ids: list[str]) -> list[Mount]:
        readonly = kind is Kind.VIEW
        if not parent_ids:
            return [
                Mount(
                    type="bind", source=self._fs(snapshot_id), options=("ro" if readonly else "rw", "rbind")
                )
            ]
        if readonly and len(parent_ids) == 1:
            return [Mount(type="bind", source=self._fs(parent_ids[0]), options=("ro", "rbind"))]
        lower = "lowerdir=" + ":".join(self._fs(i) for i in parent_ids)
        if readonly:
            return [Mount(type="overlay", source="overlay", options=(*self._extra, lower))]
        work = os.path.join(self.snapshot_dir(snapshot_id), "work")
        options = (*self._extra, f"workdir={work}", f"upperdir={self._fs(snapshot_id)}", lower)
        return [Mount(type="overlay", source="overlay", options=options)]

    def _usage_dir(self, snapshot_id: str) -> str:
        return self._fs(snapshot_id)

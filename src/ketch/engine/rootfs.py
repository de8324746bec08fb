"""Mount a container's snapshot (the mounts image/snapshots returns) at its rootfs directory, and unmount it.

The mount lives in ketchd's mount namespace (the host's), so it survives a restart of ketchd and the next
one finds it in /proc/self/mountinfo; both calls are idempotent for that reason.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ketch.common.errors import SystemFailure
from ketch.image.snapshots.base import Mount
from ketch.sys import linux

__all__ = ["is_mounted", "mount_rootfs", "unmount_rootfs"]

_FLAGS = {
    "ro": linux.MS_RDONLY,
    "nosuid": linux.MS_NOSUID,
    "nodev": linux.MS_NODEV,
    "noexec": linux.MS_NOEXEC,
}


def is_mounted(path: str) -> bool:
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == target for line in f)
    except OSError:
        return False


def mount_rootfs(mounts: Sequence[Mount], target: str) -> None:
    os.makedirs(target, mode=0o755, exist_ok=True)
    if is_mounted(target):
        return
    for m in mounts:
        flags, data = 0, []
        for opt in m.options:
            if opt in _FLAGS:
                flags |= _FLAGS[opt]
            elif opt in ("bind", "rbind"):
                flags |= linux.MS_BIND | (linux.MS_REC if opt == "rbind" else 0)
            elif opt != "rw":
                data.append(opt)
        try:
            linux.mount(m.source, target, None if m.type == "bind" else m.type, flags & ~linux.MS_RDONLY
                        if m.type == "bind" else flags, ",".join(data) or None)  # fmt: skip
            if m.type == "bind" and flags & linux.MS_RDONLY:
                linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
        except OSError as exc:
            raise SystemFailure.from_oserror(f"mount the container's rootfs at {target}", exc) from None


def unmount_rootfs(target: str) -> None:
    while is_mounted(target):
        try:
            linux.umount2(target, linux.MNT_DETACH)
        except OSError as exc:
            raise SystemFailure.from_oserror(f"unmount {target}", exc) from None

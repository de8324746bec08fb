"""Which cgroup hierarchies are mounted where: pure v1, pure v2 (unified) or hybrid.

Read from /proc/self/mountinfo; the mountinfo path and the cgroup root are parameters so tests can describe
a fake host in a temporary directory.
"""

from __future__ import annotations

import os

from ketch.common.errors import SystemFailure, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

V1 = "v1"
V2 = "v2"
HYBRID = "hybrid"

# Mount options of a v1 cgroup mount that are flags, not controllers.
_NOT_CONTROLLERS = frozenset(
    {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods", "all", "none"}
)


class Mount:
    """One mounted cgroup hierarchy."""

    __slots__ = ("controllers", "mountpoint", "root")

    def __init__(self, mountpoint: str, root: str, controllers: tuple[str, ...]) -> None:
        self.mountpoint = mountpoint
        self.root = root  # the hierarchy path mounted there ("/" unless bind-mounted or in a cgroupns)
        self.controllers = controllers

    def __repr__(self) -> str:
        return f"Mount({self.mountpoint!r}, root={self.root!r}, controllers={self.controllers!r})"


class Layout:
    """mode is V1, V2 or HYBRID; v1 maps a controller ("memory", "name=systemd") to its mount."""

    __slots__ = ("mode", "root", "unified", "v1")

    def __init__(self, mode: str, root: str, v1: dict[str, Mount], unified: Mount | None) -> None:
        self.mode = mode
        self.root = root
        self.v1 = v1
        self.unified = unified


def unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for a space and so on)."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_mountinfo(lines: Iterable[str]) -> list[tuple[str, str, str, str]]:
    """(mountpoint, root, fstype, super options) of every cgroup or cgroup2 mount."""
    found: list[tuple[str, str, str, str]] = []
    for line in lines:
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        found.append((unescape(fields[4]), unescape(fields[3]), fstype, fields[sep + 3]))
    return found


def _controllers(superopts: str) -> tuple[str, ...]:
    return tuple(
        opt
        for opt in superopts.split(",")
        if opt and opt not in _NOT_CONTROLLERS and ("=" not in opt or opt.startswith("name="))
    )


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def detect(root: str = "/sys/fs/cgroup", mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """Work out the layout. cgroup2 mounted at root is pure v2; v1 mounts plus a cgroup2 mount under root
    (normally root/unified) is hybrid; v1 mounts alone are pure v1."""
    root = os.path.normpath(root)
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            mounts = parse_mountinfo(f)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"cannot read {mountinfo}", exc) from None

    unified: Mount | None = None
    v1: dict[str, Mount] = {}
    for mountpoint, mroot, fstype, opts in mounts:
        mountpoint = os.path.normpath(mountpoint)
        if fstype == "cgroup2":
            if mountpoint == root:
                return Layout(V2, root, {}, Mount(mountpoint, mroot, ()))
            if unified is None and _under(mountpoint, root):
                unified = Mount(mountpoint, mroot, ())
            continue
        mount = Mount(mountpoint, mroot, _controllers(opts))
        for ctrl in mount.controllers:
            # A controller mounted twice: prefer the mount under root (the one runc would use).
            if ctrl not in v1 or (not _under(v1[ctrl].mountpoint, root) and _under(mountpoint, root)):
                v1[ctrl] = mount
    if not v1:
        raise Unsupported(f"no cgroup hierarchy is mounted at {root} (according to {mountinfo})")
    return Layout(HYBRID if unified is not None else V1, root, v1, unified)


def own_cgroups(proc_cgroup: str = "/proc/self/cgroup") -> dict[str, str]:
    """The calling process's cgroup per hierarchy: controller (or "" for the unified one) -> path."""
    try:
        with open(proc_cgroup, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise SystemFailure.from_oserror(f"cannot read {proc_cgroup}", exc) from None
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if not ctrls:
            own[""] = path
            continue
        for ctrl in ctrls.split(","):
            own[ctrl] = path
    return own

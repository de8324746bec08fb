"""Container cgroups for the OCI runtime (the cgroupfs driver, like runc's), on pure v1, pure v2 and the
hybrid layout.

    mgr = open_manager(spec_cgroups_path, container_id)
    mgr.create(); mgr.set(spec["linux"]["resources"]); mgr.apply(pid)
    ... mgr.freeze() / mgr.thaw() / mgr.kill_all(9) / mgr.stats() ...
    mgr.destroy()

Manager.paths() (controller, or "" for the unified hierarchy -> directory) is what state.json records.
The device rules passed to set() are applied as given: the runtime appends its default device rules
(and the rules for linux.devices) itself, as runc's spec conversion does.
"""

from __future__ import annotations

from ketch.common.errors import InvalidArgument, Unsupported
from ketch.runtime.cgroups.base import Manager
from ketch.runtime.cgroups.layout import V2, Layout, detect, own_cgroups
from ketch.runtime.cgroups.paths import hierarchy_dir, inner_path

__all__ = ["Manager", "open_manager"]


def open_manager(
    cgroups_path: str | None,
    container_id: str,
    *,
    systemd: bool = False,
    root: str = "/sys/fs/cgroup",
    mountinfo: str = "/proc/self/mountinfo",
    proc_cgroup: str = "/proc/self/cgroup",
    paths: dict[str, str] | None = None,
) -> Manager:
    """The manager for a container's cgroup. Nothing is created until create().

    paths: the directories a previous manager reported (state.json's paths()); later commands pass them so
    a relative cgroupsPath keeps naming the same cgroup even when they run in another cgroup.
    """
    if systemd:
        raise Unsupported(
            "systemd cgroup driver is not supported; use the cgroupfs driver (no --systemd-cgroup)"
        )
    inner = inner_path(cgroups_path, container_id)
    layout = detect(root, mountinfo)
    if paths:
        return _reopen(layout, inner, paths)
    own = own_cgroups(proc_cgroup) if not inner.startswith("/") else {}
    shown = inner  # what state.json and errors show as the cgroupsPath
    if layout.mode == V2:
        return _open_v2(layout, inner, shown, own)
    from ketch.runtime.cgroups.v1 import V1Manager

    dirs = {ctrl: hierarchy_dir(mount, inner, own.get(ctrl)) for ctrl, mount in layout.v1.items()}
    unified = hierarchy_dir(layout.unified, inner, own.get("")) if layout.unified is not None else None
    return V1Manager(shown, dirs, unified)


def _open_v2(layout: Layout, inner: str, shown: str, own: dict[str, str]) -> Manager:
    import posixpath

    from ketch.runtime.cgroups.v2 import V2Manager

    mount = layout.unified
    assert mount is not None
    own_path = own.get("", "/")
    if not inner.startswith("/"):
        # runc: the runtime's own cgroup normally has processes in it, which rules out enabling
        # controllers below it, so relative paths hang off its parent.
        own_path = posixpath.dirname(own_path.rstrip("/")) or "/"
    return V2Manager(shown, hierarchy_dir(mount, inner, own_path), mount.mountpoint)


def _reopen(layout: Layout, inner: str, paths: dict[str, str]) -> Manager:
    if layout.mode == V2:
        from ketch.runtime.cgroups.v2 import V2Manager

        assert layout.unified is not None
        if set(paths) != {""}:
            raise InvalidArgument(f"recorded cgroup paths {sorted(paths)} do not match this cgroup v2 host")
        return V2Manager(inner, paths[""], layout.unified.mountpoint)
    from ketch.runtime.cgroups.v1 import V1Manager

    dirs = {ctrl: d for ctrl, d in paths.items() if ctrl}
    if not dirs:
        raise InvalidArgument("recorded cgroup paths name no cgroup v1 hierarchy on this cgroup v1 host")
    return V1Manager(inner, dirs, paths.get("") if layout.unified is not None else None)

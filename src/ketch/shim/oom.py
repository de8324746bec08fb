"""Whether the kernel OOM-killed a process of the container's memory cgroup (Docker's State.OOMKilled).

The counters: cgroup v2 ``memory.events`` ``oom_kill`` (on a pure v2 host, or in the unified hierarchy of a
hybrid one when it has the memory controller), cgroup v1 ``memory.oom_control`` ``oom_kill``. The cgroup is
the one the container's init is in, read from ``/proc/<pid>/cgroup`` right after ``create``: a relative
``linux.cgroupsPath`` is relative to the runtime's own cgroup (and runc hangs v2 relative paths off its
parent), so the process's own view is the only one that is right for every runtime. The bundle's
``cgroupsPath``, when absolute, is the fallback if the process has already gone. The cgroup must still
exist when the counters are read: before ``<runtime> delete``.
"""

from __future__ import annotations

import os

__all__ = ["counter_files", "oom_kills"]


def _mounts(mountinfo: str) -> list[tuple[str, str, str]]:
    """(fstype, mount root, mount point) of the memory v1 and the cgroup2 mounts."""
    found = []
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2].split(",")
        if fstype == "cgroup2" or (fstype == "cgroup" and "memory" in options):
            found.append((fstype, fields[3], fields[4].replace("\\040", " ")))
    return found


def _process_cgroups(pid: int) -> dict[str, str]:
    """{"memory": v1 path, "": v2 path} from /proc/<pid>/cgroup (empty when the process is gone)."""
    paths = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            paths[""] = path
        elif "memory" in controllers.split(","):
            paths["memory"] = path
    return paths


def counter_files(
    pid: int, cgroups_path: str | None, *, mountinfo: str = "/proc/self/mountinfo"
) -> list[tuple[str, str]]:
    """(file, key) pairs whose ``key oom_kill`` line counts the container's OOM kills."""
    own = _process_cgroups(pid)
    if not own and cgroups_path and cgroups_path.startswith("/"):
        own = {"memory": cgroups_path, "": cgroups_path}
    files = []
    for fstype, root, mountpoint in _mounts(mountinfo):
        path = own.get("" if fstype == "cgroup2" else "memory")
        if path is None:
            continue
        root = root.rstrip("/")
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root) :]
        directory = os.path.join(mountpoint, path.lstrip("/"))
        name = "memory.events" if fstype == "cgroup2" else "memory.oom_control"
        files.append((os.path.join(directory, name), "oom_kill"))
    return files


def oom_kills(files: list[tuple[str, str]]) -> int:
    """The largest count among the files that exist (0 when none does)."""
    count = 0
    for path, key in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                count = max(count, int(value))
    return count

"""Start the kernel's slow path of cgroup migration early, in the background.

Moving a task between cgroups takes the global ``cgroup_threadgroup_rwsem`` for writing, and the first
writer after a quiet period waits for an RCU grace period: 10-20 ms here, about half of a whole
``ketch-runtime run``. Writers that follow within a few tens of milliseconds pass straight through. So
the runtime, as it starts, writes its own pid into its own cgroup from a thread (a move to where it
already is, which changes nothing), while the main thread imports and reads the bundle; when it later
moves the container's init, the lock is fast. Nothing depends on this: any failure is ignored.
"""

from __future__ import annotations

import os

__all__ = ["warm_up"]


def _own_procs_file(root: str = "/sys/fs/cgroup") -> str | None:
    try:
        with open("/proc/self/cgroup", "rb") as f:
            lines = f.read().decode().splitlines()
    except OSError:
        return None
    unified = None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0":
            unified = path
        elif controllers and not controllers.startswith("name="):
            return f"{root}/{controllers}{path.rstrip('/')}/cgroup.procs"
    if unified is None:
        return None
    base = root if os.path.exists(f"{root}/cgroup.controllers") else f"{root}/unified"
    return f"{base}{unified.rstrip('/')}/cgroup.procs"


def _write_own_pid(path: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def warm_up() -> None:
    path = _own_procs_file()
    if path is None:
        return
    import _thread

    _thread.start_new_thread(_write_own_pid, (path,))

"""Start the kernel's slow path of cgroup migration early, in the background.

Moving a task between cgroups takes the global ``cgroup_threadgroup_rwsem`` for writing, and the first
writer after a quiet period waits for an RCU grace period: 10-20 ms here, about half of a whole
``ketch-runtime run``. Writers that follow within a few tens of milliseconds pass straight through. So
the runtime, as it starts, writes its own pid into its own cgroup from a thread (a move to where it
already is, which changes nothing) and keeps doing so every few milliseconds while the main thread imports
and reads the bundle; when it moves the container's init, the lock is fast. Nothing depends on this: any
failure is ignored, and the thread stops by itself after a quarter of a second.
"""

from __future__ import annotations

import os

__all__ = ["done", "warm_up"]


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


_KEEP_WARM = 0.004  # seconds between writes: well inside the ~15 ms the fast path lasts after a writer
_LIMIT = 0.25  # stop on our own after this long, whatever happens to the caller
_done = False


def _keep_warm(path: str) -> None:
    """Write our pid into our cgroup again and again until :func:`done` (or the time limit): each write
    renews the window in which the next migration, the container's, takes the fast path."""
    import _signal  # type: ignore[import-not-found]  # the C module: `signal` imports enum
    import time

    # Signals sent to the runtime must reach the main thread, which forwards them to the container: a
    # process-directed signal delivered to this thread would wait, unseen, until the main thread wakes.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    deadline = time.monotonic() + _LIMIT
    while not _done and time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        except OSError:
            return
        time.sleep(_KEEP_WARM)


def warm_up() -> None:
    path = _own_procs_file()
    if path is None:
        return
    import _thread

    _thread.start_new_thread(_keep_warm, (path,))


def done() -> None:
    """The container's cgroup has been joined: the thread may stop."""
    global _done
    _done = True

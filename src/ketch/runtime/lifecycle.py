"""The verbs on an existing container: start, kill, delete, pause, resume, update."""

from __future__ import annotations

import os
import time

from ketch.common.errors import Conflict
from ketch.runtime.hooks import hook_list, run_hooks
from ketch.runtime.state import ContainerState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["delete", "kill", "pause", "resume", "start", "update"]

SIGKILL = 9


def manager_for(st: ContainerState) -> Any:
    """The container's cgroup manager, opened once per command (``run`` reuses the one create made)."""
    if st.cgroup is None:
        from ketch.runtime import cgroups

        st.cgroup = cgroups.open_manager(st.data.get("cgroup_path"), st.id, paths=st.data.get("cgroup_paths"))
    return st.cgroup


def start(st: ContainerState, *, log_warning: Any = None) -> None:
    status = st.status()
    if status != "created":
        if status == "stopped":
            raise Conflict("cannot start a container that has stopped")
        raise Conflict(f"cannot start an already {status} container")
    try:
        fd = os.open(st.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # ENXIO: no reader, the init is gone
        raise Conflict(f"cannot start container {st.id}: init is not waiting ({exc.strerror})") from None
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
    os.unlink(st.fifo)
    hooks = hook_list(st.config, "poststart")
    if hooks:
        try:
            run_hooks("poststart", hooks, st.oci_state("running"))
        except Exception as exc:  # the spec: a failing poststart hook is a warning, not an error
            if log_warning is not None:
                log_warning(str(exc))


def kill(st: ContainerState, sig: int, *, all_processes: bool = False) -> None:
    status = st.status()
    if status == "stopped" and not all_processes:
        raise Conflict("container not running")
    manager = manager_for(st)
    if all_processes:
        manager.kill_all(sig)
    else:
        os.kill(st.pid, sig)
    if sig == SIGKILL and status == "paused":
        manager.thaw()  # a frozen task only dies once thawed


def wait_stopped(st: ContainerState, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while st.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def delete(st: ContainerState, *, force: bool = False, log_warning: Any = None) -> None:
    status = st.status()
    manager = manager_for(st)
    if status in ("running", "paused"):
        if not force:
            raise Conflict(f"cannot delete container {st.id} that is not stopped: {status}")
        manager.kill_all(SIGKILL)
        if status == "paused":
            manager.thaw()
        wait_stopped(st)
    elif status in ("created", "creating"):
        # A container that was never started has no user process yet: deleting it kills the waiting init.
        try:
            os.kill(st.pid, SIGKILL)
        except ProcessLookupError:
            pass
        wait_stopped(st)
    if manager.exists() and manager.pids():
        manager.kill_all(SIGKILL)
        deadline = time.monotonic() + 5
        while manager.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
    manager.destroy()
    try:
        run_hooks("poststop", hook_list(st.config, "poststop"), st.oci_state("stopped"))
    except Exception as exc:  # the spec: a failing poststop hook is a warning
        if log_warning is not None:
            log_warning(str(exc))
    finally:
        st.remove()


def pause(st: ContainerState) -> None:
    status = st.status()
    if status != "running":
        raise Conflict("container not running" if status != "paused" else "container already paused")
    manager_for(st).freeze()


def resume(st: ContainerState) -> None:
    if st.status() != "paused":
        raise Conflict("container not paused")
    manager_for(st).thaw()


def update(st: ContainerState, resources: dict[str, Any]) -> None:
    """Merge ``resources`` into the container's linux.resources, apply them, and record them."""
    if st.status() == "stopped":
        raise Conflict("container not running")
    linux = st.config.setdefault("linux", {})
    current: dict[str, Any] = linux.setdefault("resources", {})
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            current[key].update(value)
        else:
            current[key] = value
    manager_for(st).set(resources)
    st.save()

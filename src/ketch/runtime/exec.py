"""``exec``: run another process inside a running container.

The same two-step fork as create: a setup child joins the container's cgroup and namespaces (taken from
/proc/<init>/ns), then forks the process itself so it lands inside the pid namespace. The new process
gets the container's seccomp filter, LSM labels and the capabilities of its own process spec.
"""

from __future__ import annotations

import os

from ketch.common.errors import Conflict, SystemFailure
from ketch.runtime import cgroup_warmup, cgroups, namespaces
from ketch.runtime.channel import Channel
from ketch.runtime.process import (
    close_inherited_fds,
    describe,
    exec_user_process,
    preload,
    prepare_credentials,
    reset_signal_mask,
)
from ketch.runtime.state import ContainerState
from ketch.spec.oci_runtime import NAMESPACES
from ketch.sys import linux as L

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["exec_process"]


def exec_process(
    st: ContainerState, process: dict[str, Any], *, console_fd: int = -1, preserve_fds: int = 0
) -> int:
    """Start ``process`` in the container; return its pid (a child of this process)."""
    status = st.status()
    if status == "paused":
        raise Conflict("cannot exec in a paused container")
    if status not in ("running", "created"):
        raise Conflict("cannot exec in a stopped container")
    if process.get("terminal") and console_fd < 0:
        raise SystemFailure("cannot allocate tty if ketch-runtime will detach without setting console socket")
    init = st.pid
    linux: dict[str, Any] = st.config.get("linux", {})
    paths = {
        kind: f"/proc/{init}/ns/{name}"
        for kind, name in NAMESPACES.items()
        if any(ns["type"] == kind for ns in linux.get("namespaces", []))
    }
    manager = cgroups.open_manager(st.data.get("cgroup_path"), st.id, paths=st.data.get("cgroup_paths"))
    compiled = preload(process, linux, seccomp_cache=os.path.join(st.root, ".seccomp"))
    channel = Channel()
    L.prctl(L.PR_SET_CHILD_SUBREAPER, 1)
    setup_pid = os.fork()
    if setup_pid == 0:
        _setup_child(channel, paths, process, compiled, console_fd, preserve_fds)
    channel.close_child_ends()
    child_pids = [setup_pid]
    pid = 0
    try:
        manager.apply(setup_pid)
        cgroup_warmup.done()
        channel.send("go")
        message = channel.recv()
        if message["type"] == "init":
            pid = int(message["pid"])
            child_pids.append(pid)
            os.waitpid(setup_pid, 0)
            child_pids.remove(setup_pid)
            channel.send("proceed")
            message = channel.recv()
        if message["type"] == "ready":
            return pid
        if message["type"] == "error":
            raise SystemFailure(f"unable to start container process: {message['message']}")
        raise SystemFailure("unable to start container process: the process exited before it started")
    except BaseException:
        for child in child_pids:
            try:
                os.kill(child, 9)
                os.waitpid(child, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        raise
    finally:
        channel.close()


def _setup_child(
    channel: Channel,
    paths: dict[str, str],
    process: dict[str, Any],
    compiled: tuple[bytes, int] | None,
    console_fd: int,
    preserve_fds: int,
) -> None:
    code = 1
    try:
        channel.become_child()
        reset_signal_mask()
        channel.expect("go")
        namespaces.join(paths)
        pid = os.fork()
        if pid == 0:
            _run_process(channel, process, compiled, console_fd, preserve_fds)
        channel.send("init", pid=pid)
        code = 0
    except BaseException as exc:
        channel.send("error", message=describe(exc))
    finally:
        os._exit(code)


def _run_process(
    channel: Channel,
    process: dict[str, Any],
    compiled: tuple[bytes, int] | None,
    console_fd: int,
    preserve_fds: int,
) -> None:
    try:
        channel.expect("proceed")
        close_inherited_fds(3 + preserve_fds, keep={console_fd, *channel.fds()})
        if process.get("terminal"):
            from ketch.runtime import terminal

            os.setsid()
            master, slave = terminal.open_container_pty(process.get("consoleSize"))
            terminal.send_fd(console_fd, master, "/dev/ptmx")
            os.close(master)
            os.close(console_fd)
            terminal.make_controlling(slave)
        exe, env = prepare_credentials(process, compiled)
        channel.send("ready")
        channel.close()
        exec_user_process(process, compiled, exe, env, None)
    except BaseException as exc:
        channel.send("error", message=describe(exc))
    os._exit(1)

"""Start a monitor that outlives its caller: fork from the calling (pre-imported) process, detach, run.

Double fork plus setsid: the monitor is in a session of its own and, once the intermediate child exits, is
re-parented to init (or the nearest subreaper), so killing the caller, even with SIGKILL, leaves it running.
``gc.freeze()`` before the fork keeps the collector from touching, and so copying, the parent's objects.
"""

from __future__ import annotations

import os
import signal
from typing import NamedTuple

# Imported here, in the parent, so each forked monitor shares these pages instead of importing its own copy.
import ketch.sys.linux  # noqa: F401
from ketch.shim.monitor import MonitorConfig, run_container

__all__ = ["Spawned", "spawn_monitor"]


class Spawned(NamedTuple):
    monitor_pid: int
    container_pid: int


def _detach_stdio(keep: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for n in range(3):
        os.dup2(null, n)
    os.close(null)
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") < 1 << 20 else 1 << 16)


def _child(config: MonitorConfig, ready_w: int) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        _detach_stdio(ready_w)
        code = run_container(config, ready_w)
    except BaseException as exc:  # a forked child must never unwind into its parent's code
        try:
            os.write(ready_w, f"error SystemFailure {exc}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def spawn_monitor(config: MonitorConfig) -> Spawned:
    """Fork a detached monitor for ``config`` and wait until the container has started (or failed to)."""
    import gc

    ready_r, ready_w = os.pipe()
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        _child(config, ready_w)
    os.close(ready_w)
    os.waitpid(pid, 0)  # the intermediate child exits at once
    gc.unfreeze()
    return read_ready(ready_r, config)


def read_ready(ready_r: int, config: MonitorConfig) -> Spawned:
    """Read the monitor's ``ok <pid>`` line from ``ready_r`` (and close it); the monitor's pid is the
    peer of shim.sock, which it bound before starting the container."""
    import socket
    import struct

    chunks = []
    while chunk := os.read(ready_r, 4096):
        chunks.append(chunk)
    os.close(ready_r)
    line = b"".join(chunks).decode(errors="replace").strip()
    if not line.startswith("ok "):
        from ketch.shim.client import error_of_kind

        kind, message = "SystemFailure", line or "no answer"
        if line.startswith("error "):
            kind, _, message = line.removeprefix("error ").partition(" ")
        raise error_of_kind(kind, f"monitor for {config.container_id} failed: {message}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(config.socket_path)
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    monitor_pid = struct.unpack("3i", creds)[0]
    return Spawned(monitor_pid, int(line.split()[1]))

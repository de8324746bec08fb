"""The OCI runtime calls a monitor makes (``create``, ``start``, ``exec -d``, ``delete``), blocking.

The runtime is a binary exec'd with ``posix_spawnp``; the shim never imports ketch.runtime. A process
without a terminal gets pipes as its stdio; one with a terminal gets a pty whose master the runtime sends over
the console socket (see console.py). What the runtime wrote on stderr when it fails becomes the error.
"""

from __future__ import annotations

import os
import signal
from typing import NamedTuple

from ketch.common.errors import SystemFailure
from ketch.shim.console import ConsoleSocket
from ketch.spec import stdcopy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.shim.monitor import MonitorConfig

__all__ = ["Stdio", "create", "delete", "exec_process", "run_runtime", "start"]

_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)  # Python ignores them; the runtime must not inherit that


class Stdio(NamedTuple):
    """The monitor's ends of a process's stdio."""

    outputs: dict[int, int]  # read fd -> stdcopy stream (a pty master is stdcopy.STDOUT)
    stdin_fd: int  # where the process's input is written; -1: none (a pty master when it has a terminal)
    tty_fd: int  # the pty master, or -1


def run_runtime(argv: list[str], stdio: tuple[int, int, int]) -> int:
    """Exec the runtime CLI with the given fds as its stdio and wait for it; returns its exit status."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(stdio)]
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions, setsigdef=_DEFAULT_SIGNALS)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"exec OCI runtime {argv[0]}", exc) from None
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _read_all(fd: int, *, rewind: bool) -> str:
    if rewind:
        os.lseek(fd, 0, os.SEEK_SET)
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return " ".join(b"".join(chunks).decode(errors="replace").split())


def _null() -> int:
    return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


def _checked(config: MonitorConfig, verb: str, argv: list[str]) -> None:
    """Run a runtime command whose own output only matters when it fails."""
    null, err = _null(), os.memfd_create("runtime-stderr", os.MFD_CLOEXEC)
    try:
        code = run_runtime(argv, (null, err, err))
        if code != 0:
            raise SystemFailure(
                f"{config.runtime} {verb} {config.container_id} exited {code}: {_read_all(err, rewind=True)}"
            )
    finally:
        os.close(null)
        os.close(err)


def start(config: MonitorConfig) -> None:
    if not _start_through_fifo(config):
        _checked(config, "start", config.runtime_argv("start", config.container_id))


def _start_through_fifo(config: MonitorConfig) -> bool:
    """ketch-runtime's ``start`` is a write to the container's exec.fifo (its init waits reading it) and the
    fifo's removal, plus poststart hooks. Without hooks the monitor does that itself and saves starting an
    interpreter (15 ms of every ``docker run``); anything unexpected falls back to the runtime's CLI."""
    if os.path.basename(config.runtime) != "ketch-runtime" or not config.runtime_root:
        return False
    try:
        with open(os.path.join(config.bundle, "config.json"), "rb") as f:
            if b'"hooks"' in f.read():
                return False
        fifo = os.path.join(config.runtime_root, config.container_id, "exec.fifo")
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO: the init is not waiting; let the runtime say why
        return False
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
    os.unlink(fifo)
    return True


def delete(config: MonitorConfig) -> None:
    _checked(config, "delete", config.runtime_argv("delete", "--force", config.container_id))


def _launch(
    config: MonitorConfig, verb: str, args: list[str], pid_path: str, *, tty: bool, stdin: bool
) -> tuple[int, Stdio]:
    """``<runtime> verb args... [--console-socket] ID`` with fresh stdio; returns (pid, the monitor's ends)."""
    mine: list[int] = []  # the monitor's ends, closed if this fails
    theirs: list[int] = []  # the runtime's ends, closed once it has run
    console = None
    try:
        if tty:
            console = ConsoleSocket(config.console_path)
            args = [*args, "--console-socket", config.console_path]
            err = os.memfd_create("runtime-stderr", os.MFD_CLOEXEC)
            theirs += [_null(), err]
            stdio = (theirs[0], err, err)
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            mine += [out_r, err_r]
            theirs += [out_w, err_w]
            if stdin:
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
                mine.append(in_w)
            else:
                in_r, in_w = _null(), -1
            theirs.append(in_r)
            stdio = (in_r, out_w, err_w)
        code = run_runtime(config.runtime_argv(verb, *args, config.container_id), stdio)
        if code != 0:
            detail = _read_all(theirs[1], rewind=True) if tty else _read_all(mine[1], rewind=False)
            raise SystemFailure(f"{config.runtime} {verb} {config.container_id} exited {code}: {detail}")
        if console is not None:
            master = console.receive()
            mine.append(master)
            result = Stdio({master: stdcopy.STDOUT}, master if stdin else -1, master)
        else:
            result = Stdio({out_r: stdcopy.STDOUT, err_r: stdcopy.STDERR}, in_w, -1)
        try:
            with open(pid_path) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as exc:
            raise SystemFailure(f"{config.runtime} {verb} left no pid in {pid_path}: {exc}") from None
        return pid, result
    except BaseException:
        for fd in mine:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
        if console is not None:
            console.close()


def create(config: MonitorConfig) -> tuple[int, Stdio]:
    args = ["--bundle", config.bundle, "--pid-file", config.pid_path]
    return _launch(config, "create", args, config.pid_path, tty=config.tty, stdin=config.open_stdin)


def exec_process(
    config: MonitorConfig, exec_id: str, process: str, *, tty: bool, stdin: bool
) -> tuple[int, Stdio]:
    """``<runtime> exec -d --process PATH``: the process ends up the monitor's child (it is the subreaper)."""
    pid_path = config.exec_path(exec_id, "pid")
    args = ["-d", "--process", process, "--pid-file", pid_path]
    return _launch(config, "exec", args, pid_path, tty=tty, stdin=stdin)

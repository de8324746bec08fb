"""The monitor of one container: starts it through the OCI runtime CLI, holds its stdio, logs, keeps its exit.

Single-threaded: one selector loop over the container's output pipes, its pidfd, shim.sock and the clients.
The monitor is the container's child subreaper, so once ``<runtime> create`` returns, the container's init is
its child and the monitor alone collects its exit status (what conmon does). Files in ``state_dir``:
``shim.sock`` (while running), ``exit.json`` (written once, atomically, when the container exits).
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from dataclasses import dataclass

from ketch.common import fastjson
from ketch.common.atomic import atomic_write
from ketch.common.errors import KetchError, SystemFailure, Unsupported
from ketch.shim import logfile, protocol
from ketch.spec import stdcopy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MonitorConfig", "run_container", "run_runtime"]

DRAIN_SECONDS = 2.0  # after init exits, how long to wait for the rest of the container to close its output


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorConfig:
    container_id: str
    bundle: str
    state_dir: str  # shim.sock, exit.json, container.pid
    runtime: str = "ketch-runtime"
    runtime_root: str = ""  # the runtime's --root; empty: its default
    log_path: str = ""  # empty: no json-file log (Docker's `none` driver)
    log_max_size: int = 0
    log_max_file: int = 1
    open_stdin: bool = False
    cleanup: bool = False  # run `<runtime> delete` once the container has exited

    @property
    def socket_path(self) -> str:
        return os.path.join(self.state_dir, "shim.sock")

    @property
    def exit_path(self) -> str:
        return os.path.join(self.state_dir, "exit.json")

    @property
    def pid_path(self) -> str:
        return os.path.join(self.state_dir, "container.pid")

    def runtime_argv(self, *args: str) -> list[str]:
        root = ["--root", self.runtime_root] if self.runtime_root else []
        return [self.runtime, *root, *args]


def run_runtime(argv: list[str], stdio: tuple[int, int, int]) -> int:
    """Exec the runtime CLI with the given fds as its stdio and wait for it; returns its exit status."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(stdio)]
    try:
        pid = os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"exec OCI runtime {argv[0]}", exc) from None
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


class _Client:
    __slots__ = ("attached", "out", "reader", "sock", "stdin", "streams", "waiting")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = protocol.LineReader()
        self.out = bytearray()
        self.attached = False
        self.waiting = False
        self.stdin = False
        self.streams: frozenset[int] = frozenset()


class Monitor:
    """State of the loop; :func:`run_container` drives it."""

    def __init__(self, config: MonitorConfig, pid: int, outputs: dict[int, int], stdin_fd: int) -> None:
        self.config = config
        self.pid = pid
        self.outputs = outputs  # read fd -> stdcopy stream number
        self.stdin_fd = stdin_fd
        self.selector = selectors.DefaultSelector()
        self.clients: dict[int, _Client] = {}
        self.splitters = {fd: logfile.LineSplitter() for fd in outputs}
        self.log = (
            logfile.LogWriter(config.log_path, max_size=config.log_max_size, max_file=config.log_max_file)
            if config.log_path
            else None
        )
        self.exit: dict[str, Any] | None = None

    # -- output -------------------------------------------------------------------------------------------
    def _on_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        stream = self.outputs[fd]
        pieces = self.splitters[fd].feed(data) if data else self.splitters[fd].flush()
        if self.log is not None:
            now = time.time_ns()
            name = logfile.STREAMS[stream - 1]
            for piece in pieces:
                self.log.write(logfile.LogEntry(name, piece, now))
        if data:
            frame = stdcopy.encode(stream, data)
            for client in self.clients.values():
                if client.attached and stream in client.streams:
                    self._send(client, frame)
        else:
            self.selector.unregister(fd)
            os.close(fd)
            del self.outputs[fd]

    # -- clients ------------------------------------------------------------------------------------------
    def _send(self, client: _Client, data: bytes) -> None:
        had = bool(client.out)
        client.out += data
        if not had:
            self._flush(client)

    def _flush(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(client)
            return
        del client.out[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        self.selector.modify(client.sock, events, client)

    def _drop(self, client: _Client) -> None:
        self.selector.unregister(client.sock)
        del self.clients[client.sock.fileno()]
        client.sock.close()

    def _accept(self, listener: socket.socket) -> None:
        sock, _ = listener.accept()
        sock.setblocking(False)
        client = _Client(sock)
        self.clients[sock.fileno()] = client
        self.selector.register(sock, selectors.EVENT_READ, client)

    def _on_client(self, client: _Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(client)
        if not mask & selectors.EVENT_READ or client.sock.fileno() < 0:
            return
        try:
            data = client.sock.recv(65536)
        except OSError:
            data = b""
        if client.attached:
            if client.stdin and self.stdin_fd >= 0:
                if data:
                    os.write(self.stdin_fd, data)
                else:  # the client half-closed: the container sees end of input
                    os.close(self.stdin_fd)
                    self.stdin_fd = -1
            if not data:
                client.stdin = False
            return
        if not data:
            self._drop(client)
            return
        try:
            line = client.reader.take_one(data)
            if line is not None:
                self._handle(client, protocol.validate_request(protocol.decode(line)))
        except KetchError as exc:
            self._send(client, protocol.error(str(exc)))

    def _handle(self, client: _Client, request: dict[str, Any]) -> None:
        import signal

        op = request["op"]
        if op == "state":
            status = "stopped" if self.exit else "running"
            self._send(client, protocol.ok(status=status, pid=self.pid, exit=self.exit))
        elif op == "wait":
            if self.exit:
                self._send(client, protocol.ok(**self.exit))
            else:
                client.waiting = True
        elif op == "signal":
            if self.exit:
                raise SystemFailure(f"container {self.config.container_id} has already exited")
            signal.pidfd_send_signal(self.pidfd, request["signal"])
            self._send(client, protocol.ok())
        elif op == "resize":
            raise Unsupported(f"container {self.config.container_id} has no terminal to resize")
        elif op == "attach":
            client.attached = True
            client.stdin = request["stdin"] and self.stdin_fd >= 0
            client.streams = frozenset(
                n
                for n, on in ((stdcopy.STDOUT, request["stdout"]), (stdcopy.STDERR, request["stderr"]))
                if on
            )
            self._send(client, protocol.ok(tty=False))
            if client.reader.rest and client.stdin:
                os.write(self.stdin_fd, client.reader.rest)

    # -- exit ---------------------------------------------------------------------------------------------
    def _on_exit(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # not our child (no subreaper): the status is lost
            status = 255 << 8
        self.selector.unregister(self.pidfd)
        os.close(self.pidfd)
        code = os.waitstatus_to_exitcode(status)
        sig = -code if code < 0 else 0
        self.exit = {
            "exit_code": 128 + sig if sig else code,
            "signal": sig,
            "finished_at": logfile.format_time(time.time_ns()),
            "oom_killed": False,
        }
        atomic_write(self.config.exit_path, fastjson.dumps(self.exit).encode())

    def loop(self, listener: socket.socket) -> None:
        self.pidfd = os.pidfd_open(self.pid)
        sel = self.selector
        sel.register(listener, selectors.EVENT_READ, "listen")
        sel.register(self.pidfd, selectors.EVENT_READ, "exit")
        for fd in self.outputs:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, "output")
        deadline = 0.0
        while True:
            if self.exit:
                deadline = deadline or time.monotonic() + DRAIN_SECONDS
                if not self.outputs or time.monotonic() > deadline:
                    break
            timeout = max(0.0, deadline - time.monotonic()) if deadline else None
            for key, mask in sel.select(timeout):
                if key.data == "listen":
                    self._accept(listener)
                elif key.data == "exit":
                    self._on_exit()
                elif key.data == "output":
                    self._on_output(key.fd)
                elif key.fd in self.clients:
                    self._on_client(key.data, mask)
        for fd in list(self.outputs):  # still open past the deadline: log what was written
            self._on_output(fd)
        for client in list(self.clients.values()):
            if client.waiting:
                self._send(client, protocol.ok(**(self.exit or {})))
        if self.log is not None:
            self.log.close()


def _create_and_start(config: MonitorConfig) -> tuple[int, dict[int, int], int]:
    """``create`` with pipes as the container's stdio, then ``start``; returns (pid, outputs, stdin fd)."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    if config.open_stdin:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
    else:
        in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
    argv = config.runtime_argv("create", "--bundle", config.bundle, "--pid-file", config.pid_path)
    code = run_runtime([*argv, config.container_id], (in_r, out_w, err_w))
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    if code != 0:
        os.set_blocking(err_r, False)
        try:
            detail = os.read(err_r, 4096).decode(errors="replace").strip()
        except BlockingIOError:
            detail = ""
        raise SystemFailure(f"{config.runtime} create {config.container_id} exited {code}: {detail}")
    with open(config.pid_path) as f:
        pid = int(f.read().strip())
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    code = run_runtime([*config.runtime_argv("start", config.container_id)], (null, null, null))
    os.close(null)
    if code != 0:
        raise SystemFailure(f"{config.runtime} start {config.container_id} exited {code}")
    return pid, {out_r: stdcopy.STDOUT, err_r: stdcopy.STDERR}, in_w


def run_container(config: MonitorConfig, ready: int = -1) -> int:
    """The whole life of the monitor, in the calling process. Writes ``ok <pid>\\n`` or ``error <msg>\\n`` to
    the ``ready`` fd once the container runs (or failed to). Returns the monitor's own exit status."""
    from ketch.sys import linux

    def report(line: str) -> None:
        if ready >= 0:
            os.write(ready, line.encode() + b"\n")
            os.close(ready)

    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.makedirs(config.state_dir, exist_ok=True)
        if os.path.lexists(config.socket_path):
            os.unlink(config.socket_path)
        listener.bind(config.socket_path)
        listener.listen(16)
        pid, outputs, stdin_fd = _create_and_start(config)
    except (KetchError, OSError) as exc:
        report("error " + " ".join(str(exc).split()))
        listener.close()
        return 1
    monitor = Monitor(config, pid, outputs, stdin_fd)
    report(f"ok {pid}")
    try:
        monitor.loop(listener)
    finally:
        listener.close()
        if os.path.lexists(config.socket_path):
            os.unlink(config.socket_path)
        for client in monitor.clients.values():
            client.sock.setblocking(True)
            try:
                client.sock.sendall(client.out)
            except OSError:
                pass
            client.sock.close()
    if config.cleanup:
        null = os.open(os.devnull, os.O_RDWR)
        run_runtime(config.runtime_argv("delete", "--force", config.container_id), (null, null, null))
        os.close(null)
    return 0

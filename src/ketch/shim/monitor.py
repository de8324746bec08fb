"""The monitor of one container: starts it through the OCI runtime CLI, holds its stdio, logs, keeps its exit.

Single-threaded: one selector loop over the stdio of the container and of the processes exec'd in it, their
pidfds, shim.sock and its clients. The monitor is the container's child subreaper, so once ``<runtime>
create`` (or ``exec -d``) returns, the process is its child and the monitor alone collects its exit status
(what conmon does); each status is collected with ``waitpid`` on that process's own pid. Files in
``state_dir``: ``shim.sock`` (while running), ``container.pid``, ``console.sock`` (briefly, for a terminal),
``exit.json`` (written once, atomically, when the container exits), ``exec-<id>.pid`` and ``exec-<id>.json``
(an exec'd process's pid and exit).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass

from ketch.common import fastjson
from ketch.common.atomic import atomic_write
from ketch.common.errors import Conflict, InvalidArgument, KetchError, NotFound, SystemFailure
from ketch.shim import launch, logfile, oom, protocol
from ketch.shim.console import set_winsize
from ketch.shim.launch import run_runtime
from ketch.spec import stdcopy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MonitorConfig", "run_container", "run_runtime"]

DRAIN_SECONDS = 2.0  # after a process exits, how long to wait for the rest to close its output
HIGH_WATER = 1 << 20  # a client with this much unsent output pauses reading the process's output
# Every read lands here first. Allocated once, at import: a monitor forked from the fork server shares these
# pages until it reads something.
_BUFFER = bytearray(65536)
READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE


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
    tty: bool = False  # the bundle's process.terminal: the container's stdio is a pty
    stdin_once: bool = False  # the first attached client's end of stdin closes the container's stdin
    deferred_start: bool = False  # `create` only; `start` waits for the "start" op

    @property
    def socket_path(self) -> str:
        return os.path.join(self.state_dir, "shim.sock")

    @property
    def exit_path(self) -> str:
        return os.path.join(self.state_dir, "exit.json")

    @property
    def pid_path(self) -> str:
        return os.path.join(self.state_dir, "container.pid")

    @property
    def console_path(self) -> str:
        return os.path.join(self.state_dir, "console.sock")

    def exec_path(self, exec_id: str, kind: str) -> str:
        """``exec-<id>.pid`` or ``exec-<id>.json``."""
        return os.path.join(self.state_dir, f"exec-{exec_id}.{kind}")

    def runtime_argv(self, *args: str) -> list[str]:
        root = ["--root", self.runtime_root] if self.runtime_root else []
        return [self.runtime, *root, *args]


class _Proc:
    """The container's process (name "") or an exec'd one: its pid, stdio, exit and who listens to it."""

    __slots__ = (
        "attached",
        "deadline",
        "exit",
        "finished",
        "log",
        "name",
        "outputs",
        "paused",
        "pending",
        "pid",
        "pidfd",
        "splitters",
        "stdin_closing",
        "stdin_fd",
        "tty_fd",
        "waiters",
    )

    def __init__(self, name: str, pid: int, stdio: launch.Stdio, log: logfile.LogWriter | None) -> None:
        self.name = name
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.outputs = dict(stdio.outputs)
        self.stdin_fd = stdio.stdin_fd
        self.tty_fd = stdio.tty_fd
        self.pending = bytearray()  # input not yet written to stdin_fd
        self.stdin_closing = False  # close stdin_fd once pending is written
        self.log = log
        self.splitters = {fd: logfile.LineSplitter() for fd in self.outputs} if log is not None else {}
        self.exit: dict[str, Any] | None = None
        self.deadline = 0.0  # set at exit: when to stop waiting for the output to close
        self.finished = False  # exited and its output drained (or given up on)
        self.paused = False  # output not read while a client is too far behind
        self.attached: list[_Client] = []
        self.waiters: list[_Client] = []

    def fds(self) -> set[int]:
        return {*self.outputs, *((self.stdin_fd,) if self.stdin_fd >= 0 else ())}


class _Client:
    __slots__ = ("closing", "out", "proc", "reader", "reading", "sock", "stdin", "streams")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = protocol.LineReader()
        self.out = bytearray()
        self.proc: _Proc | None = None  # set once attached (attach, or exec without detach)
        self.reading = True
        self.closing = False  # close once `out` is sent
        self.stdin = False  # what it sends goes to proc's stdin
        self.streams: frozenset[int] = frozenset()


class Monitor:
    """State of the loop; :func:`run_container` drives it."""

    def __init__(
        self, config: MonitorConfig, pid: int, stdio: launch.Stdio, oom_files: list[tuple[str, str]]
    ) -> None:
        self.config = config
        self.oom_files = oom_files
        self.started = not config.deferred_start
        self.selector = selectors.DefaultSelector()
        self.handlers: dict[int, tuple[str, Any]] = {}  # fd -> (kind, object); kind picks the handler
        self.events: dict[int, int] = {}  # fd -> events it is registered for
        self.buffer = _BUFFER
        log = (
            logfile.LogWriter(config.log_path, max_size=config.log_max_size, max_file=config.log_max_file)
            if config.log_path
            else None
        )
        self.main = _Proc("", pid, stdio, log)
        self.execs: dict[str, _Proc] = {}
        self.deleted = False  # the runtime has forgotten the container (cleanup done)
        self._track(self.main)

    # -- registration -------------------------------------------------------------------------------------
    def _sync(self, fd: int) -> None:
        """(Re)register ``fd`` for what its owner currently wants."""
        kind, obj = self.handlers[fd]
        if kind == "client":
            want = (READ if obj.reading and not (obj.stdin and obj.proc.pending) else 0) | (
                WRITE if obj.out else 0
            )
        elif kind == "io":
            want = (READ if fd in obj.outputs and not obj.paused else 0) | (
                WRITE if fd == obj.stdin_fd and obj.pending else 0
            )
        else:
            want = READ
        have = self.events.get(fd, 0)
        if want == have:
            return
        if not have:
            self.selector.register(fd, want, None)
        elif not want:
            self.selector.unregister(fd)
        else:
            self.selector.modify(fd, want, None)
        if want:
            self.events[fd] = want
        else:
            self.events.pop(fd, None)

    def _forget(self, fd: int) -> None:
        if self.events.pop(fd, 0):
            self.selector.unregister(fd)
        self.handlers.pop(fd, None)

    def _track(self, proc: _Proc) -> None:
        self.handlers[proc.pidfd] = ("exit", proc)
        self._sync(proc.pidfd)
        for fd in proc.fds():
            os.set_blocking(fd, False)
            self.handlers[fd] = ("io", proc)
            self._sync(fd)

    def _proc(self, request: dict[str, Any]) -> _Proc:
        name = request.get("exec")
        if name is None:
            return self.main
        proc = self.execs.get(name)
        if proc is None:
            raise NotFound(f"no exec {name!r} in container {self.config.container_id}")
        return proc

    # -- process output and input -------------------------------------------------------------------------
    def _read(self, fd: int) -> bytes | None:
        """What ``fd`` has: b"" at its end, None when nothing is there yet."""
        try:
            n = os.readv(fd, [self.buffer])
        except BlockingIOError:
            return None
        except OSError:  # EIO: every holder of the pty's other side has closed it
            return b""
        return bytes(memoryview(self.buffer)[:n])

    def _on_output(self, proc: _Proc, fd: int) -> None:
        data = self._read(fd)
        if data is None:
            return
        stream = proc.outputs[fd]
        if proc.log is not None:
            pieces = proc.splitters[fd].feed(data) if data else proc.splitters[fd].flush()
            now = time.time_ns()
            name = logfile.STREAMS[stream - 1]
            for piece in pieces:
                proc.log.write(logfile.LogEntry(name, piece, now))
        if not data:
            del proc.outputs[fd]
            if fd == proc.stdin_fd:  # the pty master: no one can read input any more either
                proc.stdin_fd = -1
                proc.pending.clear()
            self._forget(fd)
            os.close(fd)
            if proc.exit is not None and not proc.outputs:
                self._finish(proc)
            return
        payload = data if proc.tty_fd >= 0 else stdcopy.encode(stream, data)
        for client in proc.attached:
            if stream in client.streams:
                self._send(client, payload)
        if not proc.paused and any(len(c.out) > HIGH_WATER for c in proc.attached):
            proc.paused = True  # Docker's attach blocks the container the same way
            for out in proc.outputs:
                self._sync(out)

    def _feed(self, proc: _Proc, data: bytes) -> None:
        if proc.stdin_fd < 0 or proc.stdin_closing:
            return
        proc.pending += data
        self._write_stdin(proc)

    def _write_stdin(self, proc: _Proc) -> None:
        fd = proc.stdin_fd
        if fd < 0:
            return
        try:
            written = os.write(fd, proc.pending) if proc.pending else 0
        except BlockingIOError:
            written = 0
        except OSError:  # EPIPE: the process closed its stdin; what is left has nowhere to go
            written = len(proc.pending)
            proc.stdin_closing = proc.tty_fd < 0
        del proc.pending[:written]
        if not proc.pending and proc.stdin_closing and fd != proc.tty_fd:
            proc.stdin_fd = -1
            self._forget(fd)
            os.close(fd)
        else:
            self._sync(fd)
        if not proc.pending:  # clients held back by a full pipe may send again
            for client in proc.attached:
                if client.stdin:
                    self._sync(client.sock.fileno())

    def _close_stdin(self, proc: _Proc) -> None:
        if proc.tty_fd < 0 and proc.stdin_fd >= 0:
            proc.stdin_closing = True
            self._write_stdin(proc)

    # -- clients ------------------------------------------------------------------------------------------
    def _send(self, client: _Client, data: bytes) -> None:
        had = bool(client.out)
        client.out += data
        if not had:
            self._flush(client)

    def _flush(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.out) if client.out else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(client)
            return
        del client.out[:sent]
        if client.closing and not client.out:
            self._drop(client)
            return
        self._sync(client.sock.fileno())
        proc = client.proc
        if proc is not None and proc.paused and all(len(c.out) <= HIGH_WATER for c in proc.attached):
            proc.paused = False
            for fd in proc.outputs:
                self._sync(fd)

    def _drop(self, client: _Client) -> None:
        self._forget(client.sock.fileno())
        for proc in (self.main, *self.execs.values()):
            if client in proc.attached:
                proc.attached.remove(client)
            if client in proc.waiters:
                proc.waiters.remove(client)
        client.sock.close()

    def _end_session(self, client: _Client) -> None:
        """Close the client once what it is owed is sent."""
        client.reading = False
        client.closing = True
        if client.proc is not None and client in client.proc.attached:
            client.proc.attached.remove(client)
        self._flush(client)

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self.handlers[sock.fileno()] = ("client", _Client(sock))
        self._sync(sock.fileno())

    def _on_client(self, client: _Client, mask: int) -> None:
        fd = client.sock.fileno()
        if mask & WRITE:
            self._flush(client)
        if not mask & READ or fd not in self.handlers:
            return
        try:
            n = client.sock.recv_into(self.buffer)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        data = bytes(memoryview(self.buffer)[:n])
        if client.proc is not None:
            if data:
                if client.stdin:
                    self._feed(client.proc, data)
            else:
                client.reading = False
                if client.stdin:
                    self._stdin_ended(client)
                if fd in self.handlers:
                    self._sync(fd)
            return
        if not data:
            self._drop(client)
            return
        try:
            line = client.reader.take_one(data)
            if line is not None:
                self._handle(client, protocol.validate_request(protocol.decode(line)))
        except KetchError as exc:
            self._send(client, protocol.error(str(exc), type(exc).__name__))
        except OSError as exc:
            self._send(client, protocol.error(str(SystemFailure.from_oserror("shim request", exc))))

    def _stdin_ended(self, client: _Client) -> None:
        """A client that fed stdin half-closed or went away. As Docker: without a tty, StdinOnce (always,
        for an exec) closes the process's stdin and the client keeps its output; otherwise the attach ends
        and stdin stays open for the next one. A pty's input is never closed: that would hang it up."""
        proc = client.proc
        assert proc is not None
        client.stdin = False
        once = proc is not self.main or self.config.stdin_once
        if once and proc.tty_fd < 0:
            self._close_stdin(proc)
        else:
            self._end_session(client)

    def _attach(self, client: _Client, proc: _Proc, stdin: bool, stdout: bool, stderr: bool) -> None:
        client.proc = proc
        client.stdin = stdin and proc.stdin_fd >= 0 and not proc.stdin_closing
        client.streams = frozenset(n for n, on in ((stdcopy.STDOUT, stdout), (stdcopy.STDERR, stderr)) if on)
        proc.attached.append(client)
        if client.reader.rest and client.stdin:
            self._feed(proc, client.reader.rest)
        client.reader.rest = b""

    # -- requests -----------------------------------------------------------------------------------------
    def _handle(self, client: _Client, request: dict[str, Any]) -> None:
        op = request["op"]
        if op == "attach":
            proc = self.main
            self._send(client, protocol.ok(tty=proc.tty_fd >= 0))
            self._attach(client, proc, request["stdin"], request["stdout"], request["stderr"])
        elif op == "exec":
            self._exec(client, request)
        elif op == "start":
            self._start()
            self._send(client, protocol.ok())
        elif (
            op in ("state", "wait") and request.get("exec") is not None and request["exec"] not in self.execs
        ):
            record = self._exec_record(request["exec"])  # an exec pruned from memory
            if op == "wait":
                self._send(client, protocol.ok(**record))
            else:
                self._send(client, protocol.ok(status="exited", pid=0, exit=record))
        elif op == "state":
            proc = self._proc(request)
            if proc is self.main:
                status = "stopped" if proc.exit else "running" if self.started else "created"
            else:
                status = "exited" if proc.exit else "running"
            self._send(client, protocol.ok(status=status, pid=proc.pid, exit=proc.exit))
        elif op == "wait":
            proc = self._proc(request)
            if proc.finished:
                self._send(client, protocol.ok(**(proc.exit or {})))
            else:
                proc.waiters.append(client)
        elif op == "signal":
            proc = self._proc(request)
            if proc.exit:
                raise Conflict(f"{self._describe(proc)} has already exited")
            signal.pidfd_send_signal(proc.pidfd, request["signal"])
            self._send(client, protocol.ok())
        elif op == "resize":
            proc = self._proc(request)
            if proc.tty_fd < 0 or proc.tty_fd not in proc.outputs:
                raise Conflict(f"{self._describe(proc)} has no terminal to resize")
            set_winsize(proc.tty_fd, request["width"], request["height"])
            self._send(client, protocol.ok())

    def _describe(self, proc: _Proc) -> str:
        container = f"container {self.config.container_id}"
        return f"exec {proc.name} in {container}" if proc.name else container

    def _start(self) -> None:
        if self.started:
            raise Conflict(f"container {self.config.container_id} is already started")
        if self.main.exit:
            raise Conflict(f"container {self.config.container_id} has exited before it was started")
        launch.start(self.config)
        self.started = True

    def _exec(self, client: _Client, request: dict[str, Any]) -> None:
        name = request["id"]
        if name in self.execs:
            raise Conflict(f"exec id {name!r} is already used in container {self.config.container_id}")
        if self.main.exit or not self.started:
            raise Conflict(f"container {self.config.container_id} is not running")
        if not os.path.isabs(request["process"]):
            raise InvalidArgument(f"exec process spec {request['process']!r} must be an absolute path")
        detach = request["detach"]
        pid, stdio = launch.exec_process(
            self.config, name, request["process"], tty=request["tty"], stdin=request["stdin"] and not detach
        )
        proc = _Proc(name, pid, stdio, None)
        self.execs[name] = proc
        self._track(proc)
        self._send(client, protocol.ok(pid=pid, tty=request["tty"]))
        if not detach:
            self._attach(client, proc, request["stdin"], request["stdout"], request["stderr"])

    # -- exit ---------------------------------------------------------------------------------------------
    def _on_exit(self, proc: _Proc) -> None:
        try:
            _, status = os.waitpid(proc.pid, 0)
        except ChildProcessError:  # not our child (no subreaper): the status is lost
            status = 255 << 8
        self._forget(proc.pidfd)
        os.close(proc.pidfd)
        code = os.waitstatus_to_exitcode(status)
        sig = -code if code < 0 else 0
        proc.exit = {
            "exit_code": 128 + sig if sig else code,
            "signal": sig,
            "finished_at": logfile.format_time(time.time_ns()),
        }
        if proc is self.main:
            proc.exit["oom_killed"] = oom.oom_kills(self.oom_files) > 0
            atomic_write(self.config.exit_path, fastjson.dumps(proc.exit).encode())
        else:
            atomic_write(self.config.exec_path(proc.name, "json"), fastjson.dumps(proc.exit).encode())
        proc.deadline = time.monotonic() + DRAIN_SECONDS
        if not proc.outputs:
            self._finish(proc)

    def _finish(self, proc: _Proc) -> None:
        """The process has exited and its output is drained (or its time is up): tell its clients."""
        if proc.finished:
            return
        proc.finished = True
        for fd in list(proc.outputs):  # still open past the deadline: keep what was written
            self._on_output(proc, fd)
        for fd in proc.fds():
            self._forget(fd)
            os.close(fd)
        proc.outputs.clear()
        proc.stdin_fd = -1
        if proc.log is not None:
            proc.log.close()
        if proc is self.main and self.config.cleanup and not self.deleted:
            # Before the waiters hear of the exit: whoever starts the container again right after must not
            # find the runtime still holding the old one.
            self.deleted = True
            with contextlib.suppress(KetchError):
                launch.delete(self.config)
        elif proc is not self.main:
            self._prune_execs()
        for client in proc.waiters:
            self._send(client, protocol.ok(**(proc.exit or {})))
        proc.waiters.clear()
        for client in list(proc.attached):
            self._end_session(client)

    def _prune_execs(self) -> None:
        """Forget the oldest finished execs beyond the last 32 (health checks make one every few seconds);
        their exits stay in exec-<id>.json, which ``wait`` and ``state`` read for an exec no longer held."""
        finished = [name for name, p in self.execs.items() if p.finished and not p.waiters and not p.attached]
        for name in finished[: max(0, len(finished) - 32)]:
            del self.execs[name]

    def _exec_record(self, name: str) -> dict[str, Any]:
        try:
            with open(self.config.exec_path(name, "json"), "rb") as f:
                record: dict[str, Any] = fastjson.loads(f.read())
        except (OSError, ValueError):
            raise NotFound(f"no exec {name!r} in container {self.config.container_id}") from None
        return record

    def _done(self) -> bool:
        if not self.main.finished:
            return False
        return all(p.finished for p in self.execs.values()) or time.monotonic() > self.main.deadline

    def loop(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.handlers[listener.fileno()] = ("listen", listener)
        self._sync(listener.fileno())
        while not self._done():
            deadlines = [p.deadline for p in (self.main, *self.execs.values()) if p.exit and not p.finished]
            if self.main.finished:
                deadlines.append(self.main.deadline)
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, mask in self.selector.select(timeout):
                entry = self.handlers.get(key.fd)
                if entry is None:  # closed by an earlier event of this round
                    continue
                kind, obj = entry
                if kind == "client":
                    self._on_client(obj, mask)
                elif kind == "io":
                    if mask & WRITE:
                        self._write_stdin(obj)
                    if mask & READ and key.fd in obj.outputs:
                        self._on_output(obj, key.fd)
                elif kind == "exit":
                    self._on_exit(obj)
                else:
                    self._accept(obj)
            now = time.monotonic()
            for proc in (self.main, *self.execs.values()):
                if proc.exit and not proc.finished and now > proc.deadline:
                    self._finish(proc)

    def close_clients(self) -> None:
        """Send what is owed (a few seconds at most), then close every connection."""
        for kind, obj in list(self.handlers.values()):
            if kind != "client":
                continue
            obj.sock.settimeout(DRAIN_SECONDS)
            try:
                obj.sock.sendall(obj.out)
            except OSError:
                pass
            obj.sock.close()
        self.handlers.clear()


def _bundle_process(bundle: str) -> tuple[bool, str | None]:
    """(process.terminal, linux.cgroupsPath) of the bundle's config.json."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = fastjson.loads(f.read())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read the OCI config {path}: {exc}") from None
    terminal = bool((spec.get("process") or {}).get("terminal"))
    return terminal, (spec.get("linux") or {}).get("cgroupsPath")


def run_container(config: MonitorConfig, ready: int = -1) -> int:
    """The whole life of the monitor, in the calling process. Writes ``ok <pid>\\n`` or
    ``error <Kind> <msg>\\n`` (Kind: a ketch.common.errors class) to the ``ready`` fd once the container runs,
    or is created for a deferred start (or failed to). Returns the monitor's own exit status."""
    from ketch.sys import linux

    def report(line: str) -> None:
        if ready >= 0:
            os.write(ready, line.encode() + b"\n")
            os.close(ready)

    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    created = False
    try:
        os.makedirs(config.state_dir, exist_ok=True)
        terminal, cgroups_path = _bundle_process(config.bundle)
        if terminal != config.tty:
            raise InvalidArgument(
                f"{config.bundle}/config.json has process.terminal {str(terminal).lower()} "
                f"but the monitor was asked for tty={config.tty}"
            )
        if os.path.lexists(config.socket_path):
            os.unlink(config.socket_path)
        listener.bind(config.socket_path)
        listener.listen(16)
        pid, stdio = launch.create(config)
        created = True
        oom_files = oom.counter_files(pid, cgroups_path)
        if not config.deferred_start:
            launch.start(config)
        monitor = Monitor(config, pid, stdio, oom_files)
    except (KetchError, OSError) as exc:
        kind = type(exc).__name__ if isinstance(exc, KetchError) else "SystemFailure"
        report(f"error {kind} " + " ".join(str(exc).split()))
        listener.close()
        if created:  # never leave a created container behind a monitor that is not there
            try:
                launch.delete(config)
            except KetchError:
                pass
        return 1
    report(f"ok {pid}")
    try:
        monitor.loop(listener)
    finally:
        listener.close()
        if os.path.lexists(config.socket_path):
            os.unlink(config.socket_path)
        monitor.close_clients()
    if config.cleanup and not monitor.deleted:
        try:
            launch.delete(config)
        except KetchError:
            pass
    return 0

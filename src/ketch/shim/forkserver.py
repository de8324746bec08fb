"""The fork server: a small single-threaded process that forks monitors for ketchd.

ketchd is a threaded asyncio process: forking it would copy its large heap into every monitor and fork a
process whose other threads may hold locks. So ketchd starts this server once (:func:`start_forkserver`)::

    python -I -S -c "<put ketch on sys.path>; from ketch.shim.forkserver import main; main()" \
        --socket PATH --parent PID

It imports everything a monitor touches, freezes its objects for the collector, sets PR_SET_PDEATHSIG so it
dies with ketchd, and serves a unix socket. A request is one JSON line of :class:`MonitorConfig` fields;
the answer is ``{"ok": true, "monitor_pid": N, "container_pid": N}`` or ``{"ok": false, "error": "...",
"kind": "..."}``. Each connection is served by a child forked for it, which calls
:func:`~ketch.shim.spawn.spawn_monitor` (double fork and setsid: the monitor outlives the child, the server and
ketchd) and exits, so a slow ``create`` never holds up another start.

PR_SET_PDEATHSIG fires when the *thread* that started the server exits: ketchd must start it from its main
thread (or another thread that lives as long as ketchd).
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys

# What the monitors need, imported here once so that every monitor shares these pages.
import ketch.sys.linux as _linux
from ketch.common import fastjson
from ketch.common.errors import InvalidArgument, KetchError, SystemFailure
from ketch.shim import console, launch, logfile, monitor, oom, protocol, spawn  # noqa: F401
from ketch.shim.monitor import MonitorConfig
from ketch.shim.spawn import Spawned, spawn_monitor
from ketch.spec import stdcopy  # noqa: F401

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any

__all__ = ["ForkServer", "ForkServerClient", "config_from_dict", "config_to_dict", "main", "start_forkserver"]

REQUEST_TIMEOUT = 30.0  # how long a connection may take to send its request line
_TYPES = {"str": str, "int": int, "bool": bool}


def config_to_dict(config: MonitorConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in MonitorConfig.__dataclass_fields__}


def config_from_dict(fields: dict[str, Any]) -> MonitorConfig:
    """A MonitorConfig from a request, each field checked against its declared type."""
    declared = MonitorConfig.__dataclass_fields__
    unknown = sorted(set(fields) - set(declared))
    if unknown:
        raise InvalidArgument(f"fork server request: unknown MonitorConfig fields {unknown}")
    for name, value in fields.items():
        kind = _TYPES[str(declared[name].type)]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidArgument(
                f"fork server request: field {name!r} must be {kind.__name__}, not {value!r}"
            )
    try:
        return MonitorConfig(**fields)
    except TypeError as exc:  # a required field is missing
        raise InvalidArgument(f"fork server request: {exc}") from None


# -- server -----------------------------------------------------------------------------------------------
def _read_line(conn: socket.socket) -> bytes:
    reader = protocol.LineReader()
    while True:
        data = conn.recv(65536)
        if not data:
            raise InvalidArgument("fork server request: connection closed before a whole line")
        line = reader.take_one(data)
        if line is not None:
            return line


def _serve_one(conn: socket.socket) -> None:
    """In a child forked per connection; never returns."""
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        conn.settimeout(REQUEST_TIMEOUT)
        try:
            config = config_from_dict(protocol.decode(_read_line(conn)))
            spawned = spawn_monitor(config)
            answer = protocol.ok(monitor_pid=spawned.monitor_pid, container_pid=spawned.container_pid)
        except KetchError as exc:
            answer = protocol.error(str(exc), type(exc).__name__)
        except OSError as exc:
            answer = protocol.error(str(SystemFailure.from_oserror("fork server", exc)))
        conn.settimeout(REQUEST_TIMEOUT)
        conn.sendall(answer)
    except BaseException:  # a forked child must never unwind into the server's loop
        pass
    finally:
        os._exit(0)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(socket_path: str, parent: int = 0, ready_fd: int = -1) -> int:
    import gc

    _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent and os.getppid() != parent:  # the parent died before the line above took effect
        return 0
    signal.signal(signal.SIGTERM, _stop)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.lexists(socket_path):
        os.unlink(socket_path)
    listener.bind(socket_path)
    listener.listen(128)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, int] = {}  # pidfd -> pid of a child serving one connection
    # The bootstrap disabled the collector before any import, so the heap has no holes that the monitors'
    # first allocations would fill (writing to shared pages); frozen objects are never scanned again.
    gc.freeze()
    gc.enable()
    if ready_fd >= 0:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    pid = os.fork()
                    if pid == 0:
                        listener.close()
                        _serve_one(conn)
                    conn.close()
                    pidfd = os.pidfd_open(pid)
                    children[pidfd] = pid
                    selector.register(pidfd, selectors.EVENT_READ)
                else:
                    pidfd = key.fd
                    selector.unregister(pidfd)
                    os.waitpid(children.pop(pidfd), 0)
                    os.close(pidfd)
    finally:
        listener.close()
        try:
            os.unlink(socket_path)
        except FileNotFoundError:
            pass


def main(argv: list[str] | None = None) -> int:
    """``--socket PATH [--parent PID] [--ready-fd FD]`` (parsed by hand: argparse would cost every monitor
    the memory of its imports)."""
    args = sys.argv[1:] if argv is None else argv
    options: dict[str, str] = {}
    while args:
        if len(args) < 2 or args[0] not in ("--socket", "--parent", "--ready-fd"):
            print("usage: forkserver --socket PATH [--parent PID] [--ready-fd FD]", file=sys.stderr)
            return 2
        options[args[0][2:]] = args[1]
        args = args[2:]
    if "socket" not in options:
        print("forkserver: --socket is required", file=sys.stderr)
        return 2
    return serve(options["socket"], int(options.get("parent", 0)), int(options.get("ready-fd", -1)))


# -- client -----------------------------------------------------------------------------------------------
def _spawned(line: bytes) -> Spawned:
    from ketch.shim.client import refusal

    message = protocol.decode(line)
    if not message.get("ok"):
        raise refusal(message)
    return Spawned(int(message["monitor_pid"]), int(message["container_pid"]))


class ForkServerClient:
    """Asks a fork server for monitors. Each call is its own connection, so calls may run concurrently."""

    def __init__(self, socket_path: str, *, timeout: float | None = 120.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _request(self, config: MonitorConfig) -> bytes:
        return fastjson.dumps(config_to_dict(config)).encode() + b"\n"

    def spawn(self, config: MonitorConfig) -> Spawned:
        """Start a monitor for ``config``; returns once the container runs (or is created, for a deferred
        start). Raises the error the monitor reported (a failed ``create``: SystemFailure)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except OSError as exc:
                raise SystemFailure.from_oserror(f"connect to fork server {self.socket_path}", exc) from None
            sock.sendall(self._request(config))
            return _spawned(_read_line(sock))

    async def spawn_async(self, config: MonitorConfig) -> Spawned:
        """:meth:`spawn` for an asyncio loop."""
        import asyncio

        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=protocol.MAX_LINE)
        except OSError as exc:
            raise SystemFailure.from_oserror(f"connect to fork server {self.socket_path}", exc) from None
        try:
            writer.write(self._request(config))
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), self.timeout)
        finally:
            writer.close()
        if not line.endswith(b"\n"):
            raise SystemFailure(f"fork server {self.socket_path} closed the connection without answering")
        return _spawned(line[:-1])


class ForkServer:
    """A running fork server started by :func:`start_forkserver`."""

    def __init__(self, process: subprocess.Popen[bytes], socket_path: str) -> None:
        self.process = process
        self.socket_path = socket_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, *, timeout: float | None = 120.0) -> ForkServerClient:
        return ForkServerClient(self.socket_path, timeout=timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``. Monitors it started keep running."""
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


def start_forkserver(socket_path: str, *, python: str = sys.executable, timeout: float = 10.0) -> ForkServer:
    """Start the fork server as a child of this process (from the main thread: see the module docstring)
    and return once it listens on ``socket_path``."""
    import subprocess

    import ketch

    root = os.path.dirname(os.path.dirname(os.path.abspath(ketch.__file__)))
    # -S: no site (its imports would sit in every monitor); the package's own location is put on the path.
    # The collector is off until everything is imported and frozen (see serve()).
    bootstrap = (
        f"import gc; gc.disable(); import sys; sys.path.insert(0, {root!r}); "
        "from ketch.shim.forkserver import main; sys.exit(main())"
    )
    ready_r, ready_w = os.pipe()
    argv = [python, "-I", "-S", "-c", bootstrap, "--socket", socket_path]
    argv += ["--parent", str(os.getpid()), "--ready-fd", str(ready_w)]
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(ready_w,),
        )
    except BaseException:
        os.close(ready_r)
        raise
    finally:
        os.close(ready_w)
    server = ForkServer(process, socket_path)
    try:
        import select

        ready, _, _ = select.select([ready_r], [], [], timeout)
        line = os.read(ready_r, 64) if ready else b""
    finally:
        os.close(ready_r)
    if line != b"ready\n":
        server.stop(timeout=1.0)
        raise SystemFailure(
            f"fork server on {socket_path} did not start within {timeout}s (exit status {process.poll()})"
        )
    return server


if __name__ == "__main__":
    sys.exit(main())

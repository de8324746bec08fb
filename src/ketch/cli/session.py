"""The client side of an attached container or exec: docker's ``hijackedIOStreamer`` and its helpers.

- Output runs on the calling (main) thread: raw bytes for a tty, stdout/stderr frames otherwise. It ends
  when the daemon closes the stream (the process exited) or the user detaches.
- Stdin is copied by a helper thread; when stdin ends the socket is half-closed, so the process reads EOF.
  With no stdin attached the socket is half-closed at once, as docker does.
- With a tty and stdin, the local terminal is put in raw mode, and the detach sequence (default ctrl-p
  ctrl-q, or ``--detach-keys``) is recognised here, never sent: the session ends quietly, the container runs on.
- :class:`ResizeMonitor` sends the terminal size at start and on SIGWINCH; :class:`SignalProxy` forwards the
  signals the CLI receives to the container (``--sig-proxy``, only without a tty).

Signal handlers are installed only from the main thread (Python allows nothing else); elsewhere both are off.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, TextIO

    from ketch.client.hijack import Hijacked

__all__ = [
    "DetachMatcher",
    "Input",
    "ResizeMonitor",
    "Session",
    "SignalProxy",
    "binary_writer",
    "console_size",
    "is_terminal",
    "raw_terminal",
    "terminal_size",
]

READ_SIZE = 32 * 1024


def binary_writer(stream: Any) -> Callable[[bytes], None]:
    """A function writing bytes to a text stream's binary layer (flushed at once: output is interactive)."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:

        def write(data: bytes) -> None:
            buffer.write(data)
            buffer.flush()

        stream.flush()
        return write

    def write_text(data: bytes) -> None:
        stream.write(data.decode(errors="replace"))
        stream.flush()

    return write_text


def _fileno(stream: Any) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) else None


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def terminal_size(stream: Any) -> tuple[int, int]:
    """(height, width) of the terminal behind ``stream``; (0, 0) when it is not one."""
    fd = _fileno(stream)
    if fd is None or not is_terminal(stream):
        return 0, 0
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 0, 0
    return size.lines, size.columns


def console_size(stdout: Any, stdin: Any) -> tuple[int, int]:
    """The size to give a container's tty: the output terminal's (as docker), else the input's."""
    size = terminal_size(stdout)
    return size if size != (0, 0) else terminal_size(stdin)


class raw_terminal:
    """Put a terminal in raw mode (Go's term.MakeRaw) for the duration; restores it on exit, once."""

    def __init__(self, stream: Any) -> None:
        self._fd = _fileno(stream) if is_terminal(stream) else None
        self._saved: list[Any] | None = None

    def __enter__(self) -> raw_terminal:
        if self._fd is not None:
            import termios

            self._saved = termios.tcgetattr(self._fd)
            mode = termios.tcgetattr(self._fd)
            mode[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                         | termios.IGNCR | termios.ICRNL | termios.IXON)  # fmt: skip
            mode[1] &= ~termios.OPOST
            mode[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
            mode[2] &= ~(termios.CSIZE | termios.PARENB)
            mode[2] |= termios.CS8
            mode[6][termios.VMIN] = 1
            mode[6][termios.VTIME] = 0
            termios.tcsetattr(self._fd, termios.TCSANOW, mode)
        return self

    def restore(self) -> None:
        if self._fd is not None and self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self._fd, termios.TCSANOW, self._saved)
            except termios.error:
                pass  # the terminal went away
            self._saved = None

    def __exit__(self, *exc: object) -> None:
        self.restore()


class DetachMatcher:
    """Finds the detach sequence in typed input; bytes that may start it are held back until they cannot."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes to forward, and whether the sequence was completed (nothing after it is forwarded)."""
        out = bytearray()
        for byte in data:
            if byte == self.keys[self._matched]:
                self._matched += 1
                if self._matched == len(self.keys):
                    self._matched = 0
                    return bytes(out), True
                continue
            if self._matched:
                out += self.keys[: self._matched]
                self._matched = 0
                if byte == self.keys[0]:
                    self._matched = 1
                    continue
            out.append(byte)
        return bytes(out), False


class Input:
    """Stdin for a session: read from the file descriptor when there is one (so the read can be abandoned
    when the session ends), else from the stream object (tests pass in-memory streams)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.fd = _fileno(stream)
        self._wake_r, self._wake_w = os.pipe() if self.fd is not None else (-1, -1)

    def read(self) -> bytes:
        """The next bytes, ``b""`` at end of input or once :meth:`stop` was called."""
        if self.fd is None:
            data = self.stream.read(READ_SIZE)
            if isinstance(data, str):
                return data.encode()
            return bytes(data or b"")
        import select

        while True:
            ready, _, _ = select.select([self.fd, self._wake_r], [], [])
            if self._wake_r in ready:
                return b""
            try:
                return os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                return b""

    def stop(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1


class Session:
    """Copy a hijacked stream to the local streams and stdin to it, until the stream ends or the user detaches."""

    def __init__(
        self,
        conn: Hijacked,
        *,
        tty: bool,
        stdin: Input | None,
        stdout: Callable[[bytes], None] | None,
        stderr: Callable[[bytes], None] | None,
        detach_keys: bytes | None = None,
        on_output_end: Callable[[], None] | None = None,
    ) -> None:
        self.conn = conn
        self.tty = tty
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.matcher = DetachMatcher(detach_keys) if detach_keys and stdin is not None and tty else None
        self.on_output_end = on_output_end
        self.detached = False
        self._input_thread: threading.Thread | None = None

    def run(self) -> bool:
        """Run to the end; True when the user detached. Raises StreamError for a daemon error in the stream."""
        if self.stdin is not None:
            import threading

            self._input_thread = threading.Thread(target=self._pump_input, name="ketch-stdin", daemon=True)
            self._input_thread.start()
        else:
            self.conn.close_write()
        try:
            self._copy_output()
        finally:
            if self.on_output_end is not None:
                self.on_output_end()
            if self.stdin is not None:
                self.stdin.stop()
            if self._input_thread is not None and not self.detached:
                self._input_thread.join(timeout=1.0)
        return self.detached

    def _copy_output(self) -> None:
        if self.stdout is None and self.stderr is None:
            # Nothing to show: wait for the daemon to close (or the user to detach).
            while self.conn.recv():
                pass
            return
        out = self.stdout or (lambda data: None)
        err = (self.stderr or out) if not self.tty else out

        def chunks() -> Any:
            while chunk := self.conn.recv():
                yield chunk

        if self.tty:
            for chunk in chunks():
                out(chunk)
            return
        from ketch.client.hijack import demux

        demux(chunks(), out, err)

    def _pump_input(self) -> None:
        assert self.stdin is not None
        try:
            while True:
                data = self.stdin.read()
                if not data:
                    break
                detached = False
                if self.matcher is not None:
                    data, detached = self.matcher.feed(data)
                if data:
                    self.conn.sendall(data)
                if detached:
                    self.detached = True
                    self._interrupt_output()
                    return
        except OSError:
            pass  # the daemon closed the stream: the output side sees it too
        self.conn.close_write()

    def _interrupt_output(self) -> None:
        import _socket

        try:
            self.conn.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass


def _signals() -> Any:
    """:mod:`signal`'s C core: the same numbers and ``signal()``, without the enums :mod:`signal` builds."""
    return __import__("_signal")


def _install(number: int, handler: Callable[[int, FrameType | None], None]) -> tuple[bool, Any]:
    """Set a handler; ``(False, None)`` off the main thread, where Python installs none."""
    try:
        return True, _signals().signal(number, handler)
    except ValueError:
        return False, None


def _thread(target: Callable[..., None], *args: object) -> None:
    import threading

    threading.Thread(target=target, args=args, daemon=True).start()


class ResizeMonitor:
    """docker's MonitorTtySize: send the size now (retried a few times if the process is not up yet) and
    after every SIGWINCH."""

    def __init__(
        self, resize: Callable[[int, int], None], size: Callable[[], tuple[int, int]], stderr: TextIO
    ) -> None:
        self._resize = resize
        self._size = size
        self._stderr = stderr
        self._previous: Any = None
        self._installed = False

    def _send(self) -> None:
        height, width = self._size()
        if height == 0 and width == 0:
            return
        self._resize(height, width)

    def start(self) -> None:
        from ketch.common.errors import KetchError

        try:
            self._send()
        except KetchError:
            _thread(self._retry)
        self._installed, self._previous = _install(_signals().SIGWINCH, self._on_signal)

    def _retry(self) -> None:
        import time

        from ketch.common.errors import KetchError

        for _ in range(5):
            time.sleep(0.01)
            try:
                self._send()
                return
            except KetchError:
                continue
        self._stderr.write("failed to resize tty, using default size\n")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        _thread(self._quiet_send)

    def _quiet_send(self) -> None:
        from ketch.common.errors import KetchError

        try:
            self._send()
        except KetchError:
            pass

    def stop(self) -> None:
        if self._installed:
            signals = _signals()
            signals.signal(signals.SIGWINCH, self._previous)
            self._installed = False


class SignalProxy:
    """Forward the signals the CLI gets to the container (docker's ForwardAllSignals) through ``kill``."""

    NAMES = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGALRM")

    def __init__(self, kill: Callable[[str], None]) -> None:
        self._kill = kill
        self._previous: dict[int, Any] = {}

    def start(self) -> None:
        for name in self.NAMES:
            number = getattr(_signals(), name)
            installed, previous = _install(number, self._on_signal)
            if not installed:
                return
            self._previous[number] = previous

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        from ketch.spec.signals import signal_name

        _thread(self._forward, signal_name(signum).removeprefix("SIG"))

    def _forward(self, name: str) -> None:
        from ketch.common.errors import KetchError

        try:
            self._kill(name)
        except KetchError:
            pass  # docker only logs this at debug level

    def stop(self) -> None:
        for number, previous in self._previous.items():
            _signals().signal(number, previous)
        self._previous.clear()

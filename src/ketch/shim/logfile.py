"""Docker's json-file log driver: the line codec, a rotating writer and a filtering, following reader.

Vocabulary: an *entry* is one JSON object on one line, ``{"log": "...", "stream": "stdout", "time": "..."}``;
``log`` keeps the trailing newline of the line it carries (a partial line, flushed at 16 KiB or at the end of
the stream, has none). ``time`` is RFC3339Nano in UTC, with trailing zeros of the fraction trimmed as Go does.
Rotated files are named as Docker names them: ``<id>-json.log`` is current, ``.1`` the newest rotated, up to
``.<max_file - 1>``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from typing import NamedTuple

from ketch.common import fastjson
from ketch.common.errors import InvalidArgument, SystemFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "MAX_PARTIAL",
    "LineSplitter",
    "LogEntry",
    "LogWriter",
    "decode_entry",
    "encode_entry",
    "format_time",
    "parse_time",
    "read_logs",
    "rotated_paths",
]

MAX_PARTIAL = 16 * 1024  # Docker's buffer: a longer line is written as several entries
STREAMS = ("stdout", "stderr")


class LogEntry(NamedTuple):
    stream: str
    data: bytes
    time_ns: int  # nanoseconds since the epoch


def format_time(time_ns: int) -> str:
    """RFC3339Nano in UTC: ``2024-05-01T12:00:00.5Z`` (Go trims trailing zeros, and the dot with them)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC3339 time with optional fraction and a Z or ±hh:mm offset."""
    import calendar

    try:
        if text.endswith(("Z", "z")):
            body, offset = text[:-1], 0
        else:
            body, zone = text[:-6], text[-6:]
            if zone[0] not in "+-" or zone[3] != ":":
                raise ValueError(zone)
            offset = (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * (1 if zone[0] == "+" else -1)
        main, _, fraction = body.partition(".")
        if len(fraction) > 9 or (fraction and not fraction.isdigit()):
            raise ValueError(fraction)
        parsed = time.strptime(main, "%Y-%m-%dT%H:%M:%S")
    except (ValueError, IndexError):
        raise InvalidArgument(f"log time {text!r} is not an RFC3339 time") from None
    seconds = calendar.timegm(parsed) - offset
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0") or 0)


def encode_entry(entry: LogEntry) -> bytes:
    """One line of the file, newline included. Invalid UTF-8 becomes U+FFFD, as Docker does."""
    obj = {
        "log": entry.data.decode(errors="replace"),
        "stream": entry.stream,
        "time": format_time(entry.time_ns),
    }
    return fastjson.dumps(obj).encode() + b"\n"


def decode_entry(line: bytes) -> LogEntry:
    try:
        obj = fastjson.loads(line)
        return LogEntry(obj["stream"], obj["log"].encode(), parse_time(obj["time"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidArgument(f"malformed json-file log line {line[:80]!r}: {exc}") from None


class LineSplitter:
    """Cuts one stream's bytes into entries' payloads: whole lines, or MAX_PARTIAL pieces of a long one."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data
        out: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0 or end - start >= MAX_PARTIAL:
                if len(buffer) - start >= MAX_PARTIAL:
                    out.append(buffer[start : start + MAX_PARTIAL])
                    start += MAX_PARTIAL
                    continue
                break
            out.append(buffer[start : end + 1])
            start = end + 1
        self._buffer = buffer[start:]
        return out

    def flush(self) -> list[bytes]:
        rest, self._buffer = self._buffer, b""
        return [rest] if rest else []


def rotated_paths(path: str, max_file: int) -> list[str]:
    """Every file of the log, oldest first: ``path.<max_file-1>`` ... ``path.1``, ``path``."""
    return [f"{path}.{n}" for n in range(max_file - 1, 0, -1)] + [path]


class LogWriter:
    """Appends entries to ``path``; before a write that finds the file at ``max_size`` or more, rotates.

    ``max_size`` 0 means unlimited. With ``max_file`` 1 the file is truncated instead of rotated.
    """

    def __init__(self, path: str, *, max_size: int = 0, max_file: int = 1) -> None:
        if max_size < 0 or max_file < 1:
            raise InvalidArgument(f"log max-size {max_size} and max-file {max_file}: need >= 0 and >= 1")
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise SystemFailure.from_oserror(f"open log {self.path}", exc) from None

    def write(self, entry: LogEntry) -> None:
        if self.max_size and self._size >= self.max_size:
            self._rotate()
        line = encode_entry(entry)
        os.write(self._fd, line)
        self._size += len(line)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.max_file == 1:
            os.truncate(self.path, 0)
        else:
            paths = rotated_paths(self.path, self.max_file)  # oldest first
            for older, newer in itertools.pairwise(paths):
                if os.path.exists(newer):
                    os.replace(newer, older)
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        os.close(self._fd)


def _selected(entry: LogEntry, streams: frozenset[str], since: int, until: int) -> bool:
    return entry.stream in streams and entry.time_ns >= since and (not until or entry.time_ns <= until)


def _lines(f: object) -> Iterator[bytes]:
    import io

    assert isinstance(f, io.BufferedReader)
    while True:
        line = f.readline()
        if not line.endswith(b"\n"):
            if line:  # a writer mid-line: come back for it later
                f.seek(-len(line), os.SEEK_CUR)
            return
        yield line


_ALL_STREAMS = frozenset(STREAMS)


def read_logs(
    path: str,
    *,
    max_file: int = 1,
    stdout: bool = True,
    stderr: bool = True,
    since_ns: int = 0,
    until_ns: int = 0,
    tail: int = -1,
    follow: bool = False,
    stop: Callable[[], bool] | None = None,
    poll_interval: float = 0.05,
) -> Iterator[LogEntry]:
    """Entries of the log in order, selected by stream and time (``until_ns`` 0: no limit); ``tail`` >= 0
    keeps only the last ``tail`` entries of both streams, before the stream selection (moby's logs reader
    tails first, then drops the streams not asked for). ``follow`` keeps polling the current file, across
    rotations, until ``stop()`` returns true (checked once the reader is idle)."""
    streams = frozenset(s for s, on in zip(STREAMS, (stdout, stderr), strict=True) if on)
    picked: Iterator[LogEntry]
    current = None
    backlog: list[LogEntry] = []
    for name in rotated_paths(path, max_file):
        try:
            f = open(name, "rb")  # noqa: SIM115 - the last one stays open for follow
        except FileNotFoundError:
            continue
        for line in _lines(f):
            entry = decode_entry(line)
            if _selected(entry, _ALL_STREAMS, since_ns, until_ns):
                backlog.append(entry)
        if name == path:
            current = f
        else:
            f.close()
    picked = iter(deque(backlog, maxlen=tail) if tail >= 0 else backlog)
    yield from (entry for entry in picked if entry.stream in streams)
    if not follow:
        if current:
            current.close()
        return
    yield from _follow(path, current, streams, since_ns, until_ns, stop, poll_interval)


def _follow(
    path: str,
    current: object,
    streams: frozenset[str],
    since: int,
    until: int,
    stop: Callable[[], bool] | None,
    interval: float,
) -> Iterator[LogEntry]:
    import io

    f = current if isinstance(current, io.BufferedReader) else None
    try:
        while True:
            got = False
            if f is not None:
                for line in _lines(f):
                    got = True
                    entry = decode_entry(line)
                    if until and entry.time_ns > until:
                        return
                    if _selected(entry, streams, since, until):
                        yield entry
            if got:
                continue
            # Idle: has the file been rotated away from under us? Then the old inode is complete.
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and (f is None or os.fstat(f.fileno()).st_ino != st.st_ino):
                if f is not None:
                    yield from (
                        e for e in map(decode_entry, _lines(f)) if _selected(e, streams, since, until)
                    )
                    f.close()
                f = open(path, "rb")  # noqa: SIM115
                continue
            if stop is not None and stop():
                return
            time.sleep(interval)
    finally:
        if f is not None:
            f.close()

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ketch.common.errors import InvalidArgument
from ketch.shim import logfile
from ketch.shim.logfile import LogEntry, LogWriter

T0 = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z


def test_time_format_trims_zeros_like_go() -> None:
    assert logfile.format_time(T0) == "2023-11-14T22:13:20Z"
    assert logfile.format_time(T0 + 500_000_000) == "2023-11-14T22:13:20.5Z"
    assert logfile.format_time(T0 + 123_456_789) == "2023-11-14T22:13:20.123456789Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20.000000001Z", T0 + 1),
        ("2023-11-14T23:13:20.5+01:00", T0 + 500_000_000),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert logfile.parse_time(text) == expected


@pytest.mark.parametrize(
    "text", ["2023-11-14", "2023-11-14T22:13:20.1234567890Z", "2023-11-14T22:13:20+0100"]
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="RFC3339"):
        logfile.parse_time(text)


def test_entry_codec_is_dockers_line() -> None:
    line = logfile.encode_entry(LogEntry("stderr", b"caf\xc3\xa9 \xff\n", T0 + 10))
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    obj = json.loads(line)
    assert obj == {"log": "café \ufffd\n", "stream": "stderr", "time": "2023-11-14T22:13:20.00000001Z"}
    assert list(obj) == ["log", "stream", "time"]
    assert logfile.decode_entry(line) == LogEntry("stderr", "café \ufffd\n".encode(), T0 + 10)


def test_decode_rejects_garbage() -> None:
    with pytest.raises(InvalidArgument, match="malformed"):
        logfile.decode_entry(b'{"log": "x"}\n')


def test_line_splitter_keeps_newlines_and_cuts_long_lines() -> None:
    s = logfile.LineSplitter()
    assert s.feed(b"a\nb") == [b"a\n"]
    assert s.feed(b"c\n\n") == [b"bc\n", b"\n"]
    long = b"x" * (logfile.MAX_PARTIAL + 5)
    assert s.feed(long) == [long[: logfile.MAX_PARTIAL]]
    assert s.flush() == [b"xxxxx"] and s.flush() == []


def _write(writer: LogWriter, n: int, stream: str = "stdout", start: int = 0) -> None:
    for i in range(start, start + n):
        writer.write(LogEntry(stream, f"line {i}\n".encode(), T0 + i))


def test_rotation_names_and_order(tmp_path: Path) -> None:
    path = str(tmp_path / "abc-json.log")
    line_size = len(logfile.encode_entry(LogEntry("stdout", b"line 0\n", T0)))
    writer = LogWriter(path, max_size=2 * line_size, max_file=3)
    _write(writer, 7)
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc-json.log", "abc-json.log.1", "abc-json.log.2"]
    # Files hold 2 lines each: [0 1] [2 3] [4 5] [6]; with 3 files the oldest pair fell off the end.
    assert [e.data for e in logfile.read_logs(path, max_file=3)] == [
        f"line {i}\n".encode() for i in range(2, 7)
    ]
    assert logfile.decode_entry(Path(path + ".2").read_bytes().splitlines(True)[0]).data == b"line 2\n"
    assert len(Path(path).read_bytes().splitlines()) == 1


def test_max_file_one_truncates(tmp_path: Path) -> None:
    path = str(tmp_path / "x-json.log")
    writer = LogWriter(path, max_size=10, max_file=1)
    _write(writer, 3)
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["x-json.log"]
    assert [e.data for e in logfile.read_logs(path)] == [b"line 2\n"]


def test_reader_filters_and_tail(tmp_path: Path) -> None:
    path = str(tmp_path / "x-json.log")
    writer = LogWriter(path)
    for i in range(10):
        writer.write(LogEntry("stdout" if i % 2 else "stderr", f"{i}\n".encode(), T0 + i))
    writer.close()

    def data(**kwargs: object) -> list[bytes]:
        return [e.data for e in logfile.read_logs(path, **kwargs)]  # type: ignore[arg-type]

    assert data(stderr=False) == [b"1\n", b"3\n", b"5\n", b"7\n", b"9\n"]
    # the tail counts entries of both streams, then the stream selection applies (as moby does)
    assert data(stdout=False, tail=2) == [b"8\n"]
    assert data(stdout=False, tail=3) == [b"8\n"] and data(stderr=False, tail=3) == [b"7\n", b"9\n"]
    assert data(since_ns=T0 + 7) == [b"7\n", b"8\n", b"9\n"]
    assert data(since_ns=T0 + 2, until_ns=T0 + 4) == [b"2\n", b"3\n", b"4\n"]
    assert data(tail=0) == []
    assert data(tail=100) == data()


def test_reader_skips_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "x-json.log"
    whole = logfile.encode_entry(LogEntry("stdout", b"a\n", T0))
    path.write_bytes(whole + whole[:10])
    assert [e.data for e in logfile.read_logs(str(path))] == [b"a\n"]


def test_follow_across_rotation(tmp_path: Path) -> None:
    path = str(tmp_path / "x-json.log")
    line_size = len(logfile.encode_entry(LogEntry("stdout", b"line 0\n", T0)))
    writer = LogWriter(path, max_size=3 * line_size, max_file=2)
    _write(writer, 2)
    done = threading.Event()
    got: list[bytes] = []

    def follow() -> None:
        for entry in logfile.read_logs(path, max_file=2, follow=True, stop=done.is_set, poll_interval=0.005):
            got.append(entry.data)

    reader = threading.Thread(target=follow)
    reader.start()

    def caught_up(n: int) -> None:
        # A reader more than a whole file behind loses lines, as Docker's does; keep it within one.
        for _ in range(500):
            if len(got) >= n:
                return
            threading.Event().wait(0.01)

    caught_up(2)
    for i in range(2, 12):  # rotations after lines 3, 6 and 9 while the reader follows
        _write(writer, 1, start=i)
        caught_up(i + 1)
    writer.close()
    done.set()
    reader.join(5)
    assert not reader.is_alive()
    assert got == [f"line {i}\n".encode() for i in range(12)]


def test_writer_rejects_bad_limits(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="max-file"):
        LogWriter(str(tmp_path / "x"), max_file=0)

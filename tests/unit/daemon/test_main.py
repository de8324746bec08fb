"""ketchd's composition root without root: the pidfile rules, and a daemon served on a unix socket in a temp
directory answering /_ping and /images/json, then shutting down cleanly (socket and pidfile gone)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ketch.common.errors import Conflict
from ketch.daemon.config import load_config
from ketch.daemon.main import claim_pidfile, release_pidfile, serve


def test_pidfile_claim_and_release(tmp_path: Path) -> None:
    path = tmp_path / "run" / "ketchd.pid"
    claim_pidfile(str(path))
    assert path.read_text() == f"{os.getpid()}\n"
    claim_pidfile(str(path))  # our own pid: fine
    release_pidfile(str(path))
    assert not path.exists()


def test_pidfile_of_a_live_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ketchd.pid"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path.write_text(f"{child.pid}\n")
        with pytest.raises(Conflict, match=f"names process {child.pid}, which is running"):
            claim_pidfile(str(path))
        release_pidfile(str(path))  # not ours: left alone
        assert path.exists()
    finally:
        child.kill()
        child.wait()
    claim_pidfile(str(path))  # stale now
    assert path.read_text() == f"{os.getpid()}\n"


async def _request(sock: str, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


def test_serve_and_shut_down(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="kd-"))
    sock = short / "k.sock"
    pidfile = tmp_path / "exec" / "ketchd.pid"
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    config = load_config([
        "--config-file", str(empty), "--data-root", str(tmp_path / "data"), "--exec-root", str(tmp_path / "exec"),
        "--pidfile", str(pidfile), "-H", f"unix://{sock}",
    ])  # fmt: skip

    async def go() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve(config, stop=stop, ready=ready.set))
        await asyncio.wait_for(ready.wait(), 30)
        assert pidfile.read_text() == f"{os.getpid()}\n"
        assert (tmp_path / "data").is_dir()
        ping = await _request(str(sock), b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        assert ping.startswith(b"HTTP/1.1 200") and ping.endswith(b"OK")
        listing = await _request(
            str(sock), b"GET /v1.41/images/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"
        )
        assert listing.startswith(b"HTTP/1.1 200")
        assert json.loads(listing.partition(b"\r\n\r\n")[2]) == []
        missing = await _request(
            str(sock), b"GET /v1.41/images/nosuch/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"
        )
        assert missing.startswith(b"HTTP/1.1 404") and b"No such image: nosuch:latest" in missing
        stop.set()
        await asyncio.wait_for(task, 30)

    try:
        asyncio.run(go())
        assert not sock.exists() and not pidfile.exists()
    finally:
        for leftover in short.iterdir():
            leftover.unlink()
        short.rmdir()


def test_main_reports_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ketch.daemon.main import main

    assert main(["--config-file", str(tmp_path / "nope.json")]) == 2
    assert "ketchd: config file" in capsys.readouterr().err

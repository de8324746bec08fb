from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.cli.engine import FakeEngine, engine
from tests.unit.client.fakedaemon import FakeDaemon, serve


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    monkeypatch.setenv("KETCH_NO_AUTOSTART", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        with serve(tmp_path / "d.sock") as fake:
            yield fake
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.fixture
def eng(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEngine]:
    """A fake daemon on ketch.api's real server (hijacked streams, chunked answers)."""
    monkeypatch.setenv("KETCH_NO_AUTOSTART", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        with engine(tmp_path / "e.sock") as fake:
            yield fake
    finally:
        monkeypatch.undo()
        time.tzset()

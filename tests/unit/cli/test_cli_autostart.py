"""Autostart: a fake ketchd (a small script serving /_ping) stands in for the daemon; no root needed."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.client.fakedaemon import serve

from ketch.cli import autostart
from ketch.cli.main import main
from ketch.client.http import Connection, DaemonUnreachable
from ketch.common.errors import Unavailable

FAKE = [sys.executable, str(Path(__file__).with_name("fake_ketchd.py"))]


@pytest.fixture(autouse=True)
def reap() -> Iterator[None]:
    """Stop every daemon a test started (by its Popen object, i.e. by pid)."""
    before = len(autostart._STARTED)
    yield
    for process in autostart._STARTED[before:]:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
    del autostart._STARTED[before:]


def test_starts_daemon_for_a_user_socket(tmp_path: Path) -> None:
    conn = Connection(f"unix://{tmp_path}/k.sock")
    exec_root = tmp_path / "exec"
    started = autostart.ensure_daemon(
        conn, default=False, command=FAKE, data_root=str(tmp_path / "data"), exec_root=str(exec_root)
    )
    assert started is True
    assert conn.ping().status == 200
    log = (exec_root / "ketchd.log").read_text()
    assert f"--data-root {tmp_path}/data --exec-root {exec_root} --pidfile {exec_root}/ketchd.pid" in log
    assert f"-H unix://{tmp_path}/k.sock" in log
    assert int((exec_root / "ketchd.pid").read_text()) == autostart._STARTED[-1].pid
    # A second call finds it answering and starts nothing.
    assert autostart.ensure_daemon(conn, default=False, command=FAKE, exec_root=str(exec_root)) is False
    assert len([p for p in autostart._STARTED if p.poll() is None]) >= 1


def test_does_nothing_when_a_daemon_answers(tmp_path: Path) -> None:
    with serve(tmp_path / "d.sock") as fake:
        conn = Connection(f"unix://{fake.socket_path}")
        assert autostart.ensure_daemon(conn, default=True, command=["/nonexistent"]) is False


def test_failed_daemon_shows_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KETCHD_MODE", "fail")
    conn = Connection(f"unix://{tmp_path}/k.sock")
    with pytest.raises(Unavailable) as caught:
        autostart.ensure_daemon(conn, default=False, command=FAKE, exec_root=str(tmp_path / "exec"))
    message = str(caught.value)
    assert message.startswith(f"ketchd exited with status 3 before answering at unix://{tmp_path}/k.sock")
    assert message.endswith("boom: cannot open the database")


def test_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KETCHD_MODE", "hang")
    conn = Connection(f"unix://{tmp_path}/k.sock")
    with pytest.raises(
        Unavailable, match=r"did not answer at .* within 0\.3 s; the end of .*ketchd\.log:\nfake"
    ):
        autostart.ensure_daemon(conn, default=False, command=FAKE, exec_root=str(tmp_path / "exec"), wait=0.3)


def test_never_for_tcp_or_foreign_sockets(tmp_path: Path) -> None:
    for host in ("tcp://127.0.0.1:1", "unix:///nonexistent-dir/k.sock"):
        with pytest.raises(DaemonUnreachable):
            autostart.ensure_daemon(Connection(host), default=False, command=["/nonexistent"])
    assert autostart.may_autostart(Connection("tcp://127.0.0.1:1"), default=True) is False
    assert autostart.may_autostart(Connection("unix:///run/ketch/ketch.sock"), default=True) is True
    assert autostart.may_autostart(Connection(f"unix://{tmp_path}/x.sock"), default=False) is True


def test_unwritable_exec_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(Unavailable, match="cannot start ketchd"):
        autostart.ensure_daemon(
            Connection(f"unix://{tmp_path}/k.sock"),
            default=False,
            command=FAKE,
            exec_root=str(blocker / "sub"),
        )


def test_cli_starts_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KETCH_NO_AUTOSTART", raising=False)
    monkeypatch.setenv("KETCH_DAEMON", " ".join(FAKE))
    monkeypatch.setenv("KETCH_EXEC_ROOT", str(tmp_path / "exec"))
    monkeypatch.setenv("KETCH_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("KETCH_HOST", f"unix://{tmp_path}/k.sock")
    out, err = io.StringIO(), io.StringIO()
    status = main(["images"], stdin=io.StringIO(), stdout=out, stderr=err)
    assert (status, err.getvalue()) == (0, "")
    assert out.getvalue() == "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n"
    assert (tmp_path / "exec" / "ketchd.log").exists()

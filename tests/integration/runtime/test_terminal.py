"""process.terminal: the pty master arrives over --console-socket with SCM_RIGHTS, as runc sends it."""

from __future__ import annotations

import array
import os
import socket
import time
from pathlib import Path

import pytest
from tests.integration.runtime.conftest import Runtime

pytestmark = pytest.mark.root


def receive_master(server: socket.socket) -> int:
    conn, _ = server.accept()
    with conn:
        fds = array.array("i")
        _msg, ancdata, _flags, _addr = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: fds.itemsize])
    assert len(fds) == 1
    return fds[0]


def read_all(fd: int, until: bytes, timeout: float = 10) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while until not in out and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.fixture
def console(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    yield path, server
    server.close()


def test_terminal_over_console_socket(rt: Runtime, unique_id: str, console) -> None:  # type: ignore[no-untyped-def]
    path, server = console
    bundle = rt.bundle(
        ["sh", "-c", "tty; stty size; read line; echo got:$line; sleep 0.2"],
        process={"terminal": True, "consoleSize": {"height": 33, "width": 101}},
    )
    rt.create(bundle, unique_id, "--console-socket", path, check=True)
    master = receive_master(server)
    try:
        rt("start", unique_id, check=True)
        out = read_all(master, b"101")
        assert b"/dev/pts/0" in out and b"33 101" in out
        os.write(master, b"hello\n")
        assert b"got:hello" in read_all(master, b"got:hello")
    finally:
        os.close(master)


def test_exec_with_tty(rt: Runtime, unique_id: str, console) -> None:  # type: ignore[no-untyped-def]
    path, server = console
    bundle = rt.bundle(["sleep", "30"])
    rt.run(bundle, unique_id, "-d", check=True)
    rt(
        "exec",
        "-t",
        "-d",
        "--console-socket",
        path,
        unique_id,
        "sh",
        "-c",
        "tty; echo done; sleep 0.2",
        check=True,
    )
    master = receive_master(server)
    try:
        out = read_all(master, b"done")
        assert b"/dev/pts/" in out and b"done" in out
    finally:
        os.close(master)


def test_terminal_without_console_socket_is_refused(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(["true"], process={"terminal": True})
    proc = rt.create(bundle, unique_id)
    assert proc.returncode == 1 and "console socket" in proc.stderr
    assert not (rt.root / unique_id).exists()


def test_run_foreground_tty(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    """`ketch-runtime run` with terminal: true and no console socket proxies the pty itself (under script)."""
    import subprocess

    bundle = rt.bundle(["sh", "-c", "tty; echo exit-code-next; exit 5"], process={"terminal": True})
    rt.ids.append(unique_id)
    cmd = f"{rt.binary} --root {rt.root} run --bundle {bundle} {unique_id}"
    proc = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert "/dev/pts/0" in proc.stdout and "exit-code-next" in proc.stdout
    assert proc.returncode == 5

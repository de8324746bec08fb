"""Docker's container semantics in the monitor: tty, deferred start, StdinOnce, exec, OOM, the fork server."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from ketch.common.errors import Conflict, InvalidArgument, NotFound, SystemFailure
from ketch.shim import logfile
from ketch.shim.client import ShimClient
from ketch.shim.forkserver import start_forkserver
from ketch.shim.spawn import spawn_monitor
from ketch.spec import stdcopy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import Setup
    from ketch.shim.monitor import MonitorConfig

pytestmark = pytest.mark.root


def _spawn(setup: Setup, config: MonitorConfig) -> ShimClient:
    spawned = spawn_monitor(config)
    setup.track(spawned.monitor_pid, spawned.container_pid)
    return ShimClient(config.state_dir, timeout=20)


def test_tty_output_is_raw_and_resize_reaches_the_pty(setup: Setup) -> None:
    config = setup.config(["sh", "-c", "read a; stty size; read b; stty size"], tty=True, open_stdin=True)
    client = _spawn(setup, config)
    attached = client.attach_stream(stdin=True)
    assert attached.tty and attached.sock is not None
    with attached.sock as sock:
        client.resize(100, 30)
        sock.sendall(b"a\n")
        raw = setup.read_until(sock, lambda got: b"30 100" in got)
        client.resize(120, 40)
        sock.sendall(b"b\n")
        raw += setup.read_until(sock, lambda got: False)
    assert b"30 100\r\n" in raw and b"40 120\r\n" in raw
    assert raw[:1] not in (b"\x01", b"\x02")  # no stdcopy header: the bytes are the terminal's
    assert client.wait()["exit_code"] == 0
    logged = [(e.stream, e.data) for e in logfile.read_logs(config.log_path)]
    assert ("stdout", b"30 100\r\n") in logged and {s for s, _ in logged} == {"stdout"}


def test_tty_mismatch_with_the_bundle_is_refused(setup: Setup) -> None:
    config = dataclasses.replace(setup.config(["true"]), tty=True)
    with pytest.raises(InvalidArgument, match=r"process\.terminal false"):
        spawn_monitor(config)


def test_resize_without_tty_is_a_conflict(setup: Setup) -> None:
    client = _spawn(setup, setup.config(["sleep", "100"]))
    with pytest.raises(Conflict, match="no terminal"):
        client.resize(80, 24)
    client.signal(signal.SIGKILL)
    client.wait()


def test_deferred_start_loses_no_output(setup: Setup) -> None:
    config = setup.config(["sh", "-c", "echo first; echo second >&2"], deferred_start=True, cleanup=True)
    client = _spawn(setup, config)
    assert client.state()["status"] == "created"
    sock = client.attach(stdout=True, stderr=True)
    with sock:
        client.start()
        got = setup.demux(setup.read_until(sock, lambda got: False))
    assert got == {stdcopy.STDOUT: b"first\n", stdcopy.STDERR: b"second\n"}
    result = client.wait()
    assert result["exit_code"] == 0
    with pytest.raises((Conflict, FileNotFoundError, ConnectionRefusedError)):
        client.start()


def test_deferred_start_never_started_can_be_killed(setup: Setup) -> None:
    config = setup.config(["echo", "never"], deferred_start=True, cleanup=True)
    client = _spawn(setup, config)
    client.signal(signal.SIGKILL)
    assert client.wait()["signal"] == signal.SIGKILL
    assert list(logfile.read_logs(config.log_path)) == []


def test_failed_deferred_start_reports_the_runtime_error(setup: Setup) -> None:
    config = setup.config(["sleep", "100"], deferred_start=True)
    client = _spawn(setup, config)
    state = Path(config.runtime_root) / config.container_id
    hidden = state.with_name("hidden")
    state.rename(hidden)  # the runtime no longer knows the container
    try:
        with pytest.raises(SystemFailure, match=f"start {config.container_id} exited"):
            client.start()
    finally:
        hidden.rename(state)
    assert client.state()["status"] == "created"
    client.signal(signal.SIGKILL)
    assert client.wait()["signal"] == signal.SIGKILL


def test_stdin_once_closes_stdin_when_the_first_client_half_closes(setup: Setup) -> None:
    config = setup.config(["sh", "-c", "cat; echo eof"], open_stdin=True, stdin_once=True)
    client = _spawn(setup, config)
    with client.attach(stdin=True) as sock:
        sock.sendall(b"x\n")
        assert setup.read_until(sock, lambda got: b"x\n" in got)
        sock.shutdown(socket.SHUT_WR)
        rest = setup.read_until(sock, lambda got: False)  # output keeps coming after the half-close
    assert setup.demux(rest)[stdcopy.STDOUT] == b"eof\n"
    assert client.wait()["exit_code"] == 0


def test_without_stdin_once_stdin_stays_open_for_the_next_attach(setup: Setup) -> None:
    script = "while read l; do echo got $l; done; echo eof"
    config = setup.config(["sh", "-c", script], open_stdin=True)
    client = _spawn(setup, config)
    with client.attach(stdin=True) as first:
        first.sendall(b"one\n")
        assert b"got one" in setup.read_until(first, lambda got: b"got one" in got)
        first.shutdown(socket.SHUT_WR)
        assert b"eof" not in setup.read_until(first, lambda got: False)  # Docker: the attach ends
    time.sleep(0.2)
    assert client.state()["status"] == "running"
    with client.attach(stdin=True) as second:
        second.sendall(b"two\n")
        assert b"got two" in setup.read_until(second, lambda got: b"got two" in got)
    assert client.state()["status"] == "running"  # a client going away closes nothing either
    with client.attach(stdin=True) as third:
        third.sendall(b"three\n")
        assert b"got three" in setup.read_until(third, lambda got: b"got three" in got)
    client.signal(signal.SIGKILL)
    client.wait()


def test_stdin_once_with_a_tty_ends_the_attach_but_keeps_the_pty(setup: Setup) -> None:
    script = "while read l; do echo got $l; done"
    config = setup.config(["sh", "-c", script], tty=True, open_stdin=True, stdin_once=True)
    client = _spawn(setup, config)
    with client.attach(stdin=True) as first:
        first.sendall(b"one\n")
        assert b"got one" in setup.read_until(first, lambda got: b"got one" in got)
        first.shutdown(socket.SHUT_WR)
        setup.read_until(first, lambda got: False)  # closed by the monitor
    with client.attach(stdin=True) as second:
        second.sendall(b"two\n")
        assert b"got two" in setup.read_until(second, lambda got: b"got two" in got)
    assert client.state()["status"] == "running"
    client.signal(signal.SIGKILL)
    client.wait()


def test_exec_attached_output_and_exit(setup: Setup) -> None:
    config = setup.config(["sleep", "1000"])
    client = _spawn(setup, config)
    spec = setup.exec_spec("e1", ["sh", "-c", "echo out; echo err >&2; exit 7"])
    attached = client.exec("e1", spec, stdout=True, stderr=True)
    assert attached.pid > 0 and not attached.tty and attached.sock is not None
    with attached.sock as sock:
        got = setup.demux(setup.read_until(sock, lambda got: False))  # closed once drained
    assert got == {stdcopy.STDOUT: b"out\n", stdcopy.STDERR: b"err\n"}
    assert client.wait("e1")["exit_code"] == 7
    recorded = json.loads(Path(config.exec_path("e1", "json")).read_text())
    assert recorded["exit_code"] == 7 and recorded["signal"] == 0
    assert client.state("e1") == {"ok": True, "status": "exited", "pid": attached.pid, "exit": recorded}
    assert client.state()["status"] == "running"
    assert list(logfile.read_logs(config.log_path)) == []  # exec output is not the container's log
    with pytest.raises(Conflict, match="already used"):
        client.exec("e1", spec, detach=True)
    client.signal(signal.SIGKILL)
    client.wait()


def test_exec_stdin_half_close(setup: Setup) -> None:
    client = _spawn(setup, setup.config(["sleep", "1000"]))
    attached = client.exec("cat", setup.exec_spec("cat", ["cat"]), stdin=True)
    assert attached.sock is not None
    with attached.sock as sock:
        sock.sendall(b"hello")
        sock.shutdown(socket.SHUT_WR)
        got = setup.demux(setup.read_until(sock, lambda got: False))
    assert got[stdcopy.STDOUT] == b"hello"
    assert client.wait("cat")["exit_code"] == 0
    client.signal(signal.SIGKILL)
    client.wait()


def test_exec_detached_wait_state_signal(setup: Setup) -> None:
    config = setup.config(["sleep", "1000"])
    client = _spawn(setup, config)
    quick = client.exec("quick", setup.exec_spec("quick", ["sh", "-c", "sleep 0.3; exit 4"]), detach=True)
    slow = client.exec("slow", setup.exec_spec("slow", ["sleep", "1000"]), detach=True)
    assert quick.sock is None and quick.pid > 0
    assert client.state("slow")["status"] == "running"
    assert Path(config.exec_path("slow", "pid")).read_text().strip() == str(slow.pid)
    assert client.wait("quick")["exit_code"] == 4
    assert client.wait("quick")["exit_code"] == 4  # answered at once now
    client.signal(signal.SIGKILL, exec_id="slow")
    result = client.wait("slow")
    assert result["signal"] == signal.SIGKILL and result["exit_code"] == 137
    with pytest.raises(Conflict, match="already exited"):
        client.signal(signal.SIGTERM, exec_id="slow")
    with pytest.raises(NotFound):
        client.wait("nope")
    with pytest.raises(NotFound):
        client.state("nope")
    assert client.state()["status"] == "running"  # the container's exit is its own pid's alone
    client.signal(signal.SIGKILL)
    assert client.wait()["signal"] == signal.SIGKILL


def test_exec_with_tty_and_resize(setup: Setup) -> None:
    client = _spawn(setup, setup.config(["sleep", "1000"]))
    spec = setup.exec_spec("t", ["sh", "-c", "read x; tty; stty size"], tty=True)
    attached = client.exec("t", spec, tty=True, stdin=True)
    assert attached.tty and attached.sock is not None
    with attached.sock as sock:
        client.resize(90, 25, exec_id="t")
        sock.sendall(b"go\n")
        raw = setup.read_until(sock, lambda got: False)
    assert b"/dev/pts/" in raw and b"25 90\r\n" in raw
    assert client.wait("t")["exit_code"] == 0
    with pytest.raises(Conflict, match="no terminal"):
        client.resize(80, 24, exec_id="t")
    client.signal(signal.SIGKILL)
    client.wait()


def test_exec_failure_reports_the_runtime_error(setup: Setup) -> None:
    client = _spawn(setup, setup.config(["sleep", "1000"]))
    with pytest.raises(SystemFailure, match="exec"):
        client.exec("bad", setup.exec_spec("bad", ["/no/such/binary"]), detach=True)
    with pytest.raises(NotFound):
        client.state("bad")
    client.signal(signal.SIGKILL)
    client.wait()


def test_oom_killed(setup: Setup) -> None:
    limit = 32 * 1024 * 1024

    def memory_limit(spec: dict[str, object]) -> None:
        linux = spec["linux"]
        assert isinstance(linux, dict)
        linux.setdefault("resources", {})["memory"] = {"limit": limit, "swap": limit}

    # dd's buffer is one block: 64 MiB, touched by the read, in a 32 MiB cgroup without swap.
    config = setup.config(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], edit=memory_limit)
    client = _spawn(setup, config)
    result = client.wait()
    assert result["oom_killed"] is True, result
    assert json.loads(Path(config.exit_path).read_text())["oom_killed"] is True


def test_forkserver_spawns_monitors_that_outlive_it(setup: Setup) -> None:
    config = setup.config(["sleep", "1000"])
    server = start_forkserver(str(setup.dir / "fork.sock"))
    try:
        spawned = server.client().spawn(config)
        setup.track(spawned.monitor_pid, spawned.container_pid)
        bad = dataclasses.replace(
            config,
            container_id=setup.id + "x",
            bundle=str(setup.dir / "nope"),
            state_dir=str(setup.dir / "s2"),
        )
        with pytest.raises(InvalidArgument, match=r"nope/config\.json"):
            server.client().spawn(bad)
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait()
    client = ShimClient(config.state_dir, timeout=20)
    assert setup.alive(spawned.monitor_pid)
    assert client.state() == {"ok": True, "status": "running", "pid": spawned.container_pid, "exit": None}
    client.signal(signal.SIGKILL)
    assert client.wait()["signal"] == signal.SIGKILL
    setup.wait_gone(spawned.monitor_pid)
    server.stop()


def test_forkserver_async_client(setup: Setup) -> None:
    import asyncio

    config = setup.config(["sleep", "1000"])
    server = start_forkserver(str(setup.dir / "fork.sock"))
    try:
        spawned = asyncio.run(server.client().spawn_async(config))
        setup.track(spawned.monitor_pid, spawned.container_pid)
    finally:
        server.stop()
    assert not setup.alive(server.pid)
    client = ShimClient(config.state_dir, timeout=20)
    assert client.state()["pid"] == spawned.container_pid
    client.signal(signal.SIGKILL)
    client.wait()


def test_slow_reader_gets_all_output(setup: Setup) -> None:
    # Far more than the monitor buffers for a client (HIGH_WATER): it must pause the output, not drop it.
    size = 6_000_000
    config = setup.config(["sh", "-c", f"head -c {size} /dev/zero; echo done"], deferred_start=True)
    client = _spawn(setup, config)
    with client.attach() as sock:
        client.start()
        time.sleep(1.0)  # let the monitor's buffer for this client fill up
        got = setup.demux(setup.read_until(sock, lambda got: False, timeout=60))
    assert len(got[stdcopy.STDOUT]) == size + 5 and got[stdcopy.STDOUT].endswith(b"done\n")
    assert client.wait()["exit_code"] == 0
    logged = sum(len(e.data) for e in logfile.read_logs(config.log_path))
    assert logged == size + 5

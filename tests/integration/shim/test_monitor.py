"""A monitor driving ketch-runtime (and runc) on busybox bundles: log, exit status, surviving its spawner."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ketch.shim import logfile
from ketch.shim.client import ShimClient
from ketch.shim.spawn import spawn_monitor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import Setup

pytestmark = pytest.mark.root

SCRIPT = "echo out; echo err >&2; sleep 1; exit 3"


def test_log_wait_and_exit_json(setup: Setup) -> None:
    config = setup.config(["sh", "-c", SCRIPT], cleanup=True)
    spawned = spawn_monitor(config)
    setup.track(spawned.monitor_pid, spawned.container_pid)
    assert ShimClient(config.state_dir).call("state")["status"] == "running"
    result = ShimClient(config.state_dir, timeout=20).wait()
    assert result["exit_code"] == 3 and result["signal"] == 0
    setup.wait_gone(spawned.monitor_pid)
    exit_json = json.loads(Path(config.exit_path).read_text())
    assert exit_json["exit_code"] == 3 and exit_json["oom_killed"] is False
    assert logfile.parse_time(exit_json["finished_at"]) <= time.time_ns()
    entries = list(logfile.read_logs(config.log_path))
    assert [(e.stream, e.data) for e in entries] == [("stdout", b"out\n"), ("stderr", b"err\n")]
    raw = Path(config.log_path).read_bytes().splitlines()
    assert json.loads(raw[0])["log"] == "out\n" and json.loads(raw[0])["stream"] == "stdout"
    # cleanup=True: the runtime no longer knows the container.
    state = subprocess.run(
        [setup.runtime, "--root", config.runtime_root, "state", setup.id], capture_output=True, check=False
    )
    assert state.returncode != 0


def test_signal_reports_signal_exit(setup: Setup) -> None:
    config = setup.config(["sleep", "100"])
    spawned = spawn_monitor(config)
    setup.track(spawned.monitor_pid, spawned.container_pid)
    client = ShimClient(config.state_dir, timeout=20)
    assert client.call("signal", signal=signal.SIGKILL)["ok"]
    result = client.wait()
    assert result["signal"] == signal.SIGKILL and result["exit_code"] == 128 + signal.SIGKILL


def test_attach_streams_output_and_stdin(setup: Setup) -> None:
    from ketch.spec import stdcopy

    config = setup.config(["sh", "-c", "read line; echo got $line; echo bye >&2"], open_stdin=True)
    spawned = spawn_monitor(config)
    setup.track(spawned.monitor_pid, spawned.container_pid)
    sock = ShimClient(config.state_dir, timeout=20).attach(stdin=True)
    sock.sendall(b"hello\n")
    decoder = stdcopy.Decoder()
    frames: list[stdcopy.Frame] = []
    while chunk := sock.recv(4096):
        frames += decoder.feed(chunk)
    sock.close()
    got = {s: b"".join(f.payload for f in frames if f.stream == s) for s in (stdcopy.STDOUT, stdcopy.STDERR)}
    assert got == {stdcopy.STDOUT: b"got hello\n", stdcopy.STDERR: b"bye\n"}
    assert ShimClient(config.state_dir).wait()["exit_code"] == 0


def test_monitor_outlives_its_spawner(setup: Setup) -> None:
    config = setup.config(["sleep", "100"])
    # The spawner is a separate, pre-imported process that the test then SIGKILLs.
    code = (
        "import sys, time; sys.path.insert(0, 'src');"
        "from ketch.shim.monitor import MonitorConfig; from ketch.shim.spawn import spawn_monitor;"
        f"s = spawn_monitor({config!r});"
        "print(s.monitor_pid, s.container_pid, flush=True); time.sleep(100)"
    )
    spawner = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=Path(__file__).parents[3], text=True
    )
    try:
        assert spawner.stdout is not None
        monitor_pid, container_pid = map(int, spawner.stdout.readline().split())
        setup.track(monitor_pid, container_pid)
    finally:
        spawner.kill()
        spawner.wait()
        assert spawner.stdout is not None
        spawner.stdout.close()
    time.sleep(0.2)
    assert setup.alive(monitor_pid) and setup.alive(container_pid)
    client = ShimClient(config.state_dir, timeout=20)
    assert client.call("state") == {"ok": True, "status": "running", "pid": container_pid, "exit": None}
    # sleep is the namespace's init, which ignores SIGTERM without a handler: SIGKILL it.
    client.call("signal", signal=signal.SIGKILL)
    assert client.wait()["exit_code"] == 128 + signal.SIGKILL
    setup.wait_gone(monitor_pid)


def test_failed_create_is_reported(setup: Setup) -> None:
    from ketch.common.errors import SystemFailure

    config = setup.config(["/no/such/binary"])
    with pytest.raises(SystemFailure):
        spawned = spawn_monitor(config)
        setup.track(spawned.monitor_pid, spawned.container_pid)

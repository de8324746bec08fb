"""Health checks: the state machine, timing and output rules of moby daemon/health.go, the probing thread
against a real ContainerService and ketch.db with a scripted prober, and the exec prober against a fake
monitor on a unix socket."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from ketch.common.errors import SystemFailure
from ketch.common.ids import generate_id
from ketch.engine.containers import ContainerService
from ketch.engine.db import Database
from ketch.engine.events import EventBus
from ketch.engine.health import (
    MAX_OUTPUT,
    ExecProber,
    HealthMonitor,
    Policy,
    ProbeOutcome,
    go_duration,
    next_health,
    probe_command,
    read_output,
)
from ketch.engine.layout import EngineSettings
from ketch.engine.merge import merge_image_config
from ketch.engine.model import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    Health,
    HealthConfig,
    HealthResult,
    HostConfig,
    Status,
)
from ketch.image.service import ImageService
from ketch.shim.monitor import MonitorConfig
from ketch.shim.spawn import Spawned
from ketch.spec import oci_image, stdcopy

MS = 1_000_000
S = 1000 * MS
T0 = 1_700_000_000 * S


def result(exit_code: int, at: int = T0, output: str = "") -> HealthResult:
    return HealthResult(start=at, end=at + MS, exit_code=exit_code, output=output)


# ---- pure rules -------------------------------------------------------------------------------------------


def test_policy_fills_in_dockers_defaults() -> None:
    assert Policy.of(HealthConfig(test=("CMD", "true"))) == Policy(
        interval=30 * S, timeout=30 * S, start_period=0, start_interval=5 * S, retries=3
    )
    given = Policy.of(HealthConfig(interval=2 * S, timeout=S, start_period=9 * S, retries=7))
    assert (given.interval, given.timeout, given.start_period, given.retries) == (2 * S, S, 9 * S, 7)


def test_delay_follows_the_start_period() -> None:
    policy = Policy(interval=30 * S, start_period=60 * S, start_interval=5 * S)
    assert policy.delay(0, "starting") == 5 * S  # inside the start period: the start interval
    assert policy.delay(0, "healthy") == 30 * S
    assert policy.delay(50 * S, "starting") == 10 * S  # the start period ends before the interval would
    assert policy.delay(60 * S, "starting") == 30 * S
    assert Policy(interval=200 * MS).delay(0, "starting") == 200 * MS  # no start period


def test_probe_command() -> None:
    assert probe_command(HealthConfig(test=("CMD", "test", "-f", "/x"))) == ["test", "-f", "/x"]
    assert probe_command(HealthConfig(test=("CMD-SHELL", "test -f /x"))) == ["/bin/sh", "-c", "test -f /x"]
    for test in (("NONE",), None, ("CMD",), ("SHELL", "x")):
        assert probe_command(HealthConfig(test=test)) is None
    assert probe_command(None) is None


def test_success_makes_a_starting_container_healthy() -> None:
    health = next_health(Health(), result(0, output="fine\n"), Policy(), T0)
    assert health == Health(status="healthy", failing_streak=0, log=(result(0, output="fine\n"),))


def test_failures_make_it_unhealthy_after_retries() -> None:
    policy = Policy(retries=3)
    health = Health()
    statuses = []
    for _ in range(4):
        health = next_health(health, result(1), policy, T0)
        statuses.append((health.status, health.failing_streak))
    assert statuses == [("starting", 1), ("starting", 2), ("unhealthy", 3), ("unhealthy", 4)]
    healthy = next_health(Health(status="healthy"), result(1), Policy(retries=2), T0)
    assert (healthy.status, healthy.failing_streak) == ("healthy", 1)
    back = next_health(health, result(0), policy, T0)
    assert (back.status, back.failing_streak) == ("healthy", 0)


def test_any_non_zero_exit_is_a_failure() -> None:
    for code in (-1, 2, 137):
        assert next_health(Health(), result(code), Policy(retries=1), T0).status == "unhealthy"


def test_failures_in_the_start_period_do_not_count_until_a_probe_succeeded() -> None:
    policy = Policy(retries=1, start_period=10 * S)
    inside = next_health(Health(), result(1, at=T0 + 9 * S), policy, T0)
    assert (inside.status, inside.failing_streak, len(inside.log)) == ("starting", 0, 1)
    after = next_health(inside, result(1, at=T0 + 10 * S), policy, T0)
    assert (after.status, after.failing_streak) == ("unhealthy", 1)
    healthy = next_health(Health(), result(0, at=T0 + S), policy, T0)
    failed = next_health(healthy, result(1, at=T0 + 2 * S), policy, T0)  # once healthy, failures count
    assert (failed.status, failed.failing_streak) == ("unhealthy", 1)


def test_the_log_keeps_the_last_five() -> None:
    health = Health()
    for i in range(7):
        health = next_health(health, result(i % 2, at=T0 + i * S, output=str(i)), Policy(retries=100), T0)
    assert [r.output for r in health.log] == ["2", "3", "4", "5", "6"]


@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, "0s"), (200 * MS, "200ms"), (1500 * MS, "1.5s"), (30 * S, "30s"), (90 * S, "1m30s"),
     (3600 * S, "1h0m0s"), (1_500, "1.5µs"), (7, "7ns"), (61 * S + 5 * MS, "1m1.005s")],
)  # fmt: skip
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


# ---- output -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


def test_output_joins_stdout_and_stderr() -> None:
    with pair() as (ours, theirs):
        theirs.sendall(stdcopy.encode(stdcopy.STDOUT, b"out\n") + stdcopy.encode(stdcopy.STDERR, b"err\n"))
        theirs.shutdown(socket.SHUT_WR)
        assert read_output(ours, 5) == ("out\nerr\n", False)


def test_output_is_cut_at_4_kib() -> None:
    with pair() as (ours, theirs):

        def send() -> None:
            theirs.sendall(stdcopy.encode(stdcopy.STDOUT, b"a" * 4000) + stdcopy.encode(stdcopy.STDERR, b"b" * 500)
                           + stdcopy.encode(stdcopy.STDOUT, b"c" * 100_000))  # fmt: skip
            theirs.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        text, timed_out = read_output(ours, 5)
        sender.join()
    assert not timed_out
    assert text == "a" * 4000 + "b" * (MAX_OUTPUT - 4000) + "..."
    with pair() as (ours, theirs):
        theirs.sendall(stdcopy.encode(stdcopy.STDOUT, b"x" * MAX_OUTPUT))
        theirs.shutdown(socket.SHUT_WR)
        assert read_output(ours, 5) == ("x" * MAX_OUTPUT, False)  # exactly the limit: nothing was lost


def test_output_reading_stops_at_the_timeout() -> None:
    with pair() as (ours, theirs):
        theirs.sendall(stdcopy.encode(stdcopy.STDOUT, b"partial"))
        began = time.monotonic()
        assert read_output(ours, 0.2) == ("partial", True)
        assert 0.15 < time.monotonic() - began < 2


# ---- merge ------------------------------------------------------------------------------------------------


def test_the_images_healthcheck_is_merged_field_by_field() -> None:
    image = oci_image.ContainerConfig(cmd=("sh",), healthcheck=oci_image.Healthcheck(
        test=("CMD-SHELL", "true"), interval=5 * S, timeout=2 * S, retries=4))  # fmt: skip
    assert merge_image_config(ContainerConfig(), image).healthcheck == HealthConfig(
        test=("CMD-SHELL", "true"), interval=5 * S, timeout=2 * S, retries=4)  # fmt: skip
    user = HealthConfig(test=("CMD", "false"), interval=S)
    assert merge_image_config(ContainerConfig(healthcheck=user), image).healthcheck == HealthConfig(
        test=("CMD", "false"), interval=S, timeout=2 * S, retries=4)  # fmt: skip
    none = HealthConfig(test=("NONE",))
    assert merge_image_config(ContainerConfig(healthcheck=none), image).healthcheck == replace(
        none, interval=5 * S, timeout=2 * S, retries=4)  # fmt: skip
    plain = oci_image.ContainerConfig(cmd=("sh",))
    assert merge_image_config(ContainerConfig(healthcheck=user), plain).healthcheck == user
    assert merge_image_config(ContainerConfig(), plain).healthcheck is None


# ---- the probing thread -----------------------------------------------------------------------------------


class ScriptedProber:
    """Answers each probe with the next outcome (the last one repeats); an exception is raised instead."""

    def __init__(self, *outcomes: ProbeOutcome | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, list[str], int]] = []
        self.lock = threading.Lock()

    def set(self, *outcomes: ProbeOutcome | Exception) -> None:
        with self.lock:
            self.outcomes = list(outcomes)

    def __call__(self, record: ContainerRecord, command: list[str], timeout: int) -> ProbeOutcome:
        with self.lock:
            self.calls.append((record.id, command, timeout))
            outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def _no_spawn(config: MonitorConfig) -> Spawned:
    raise AssertionError("no monitor is spawned in these tests")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ContainerService]:
    settings = EngineSettings(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "exec"))
    with Database.open(tmp_path / "ketch.db") as db:
        yield ContainerService(settings, db, cast(ImageService, None), EventBus(), _no_spawn)


def add_running(service: ContainerService, health: dict[str, Any] | None, *, started_at: int = 0) -> str:
    body: dict[str, Any] = {"Image": "busybox", "Cmd": ["sleep", "1000"], "Healthcheck": health}
    record = ContainerRecord(
        id=generate_id(), name="", image_id="sha256:" + "1" * 64, created_at=time.time_ns(),
        config=ContainerConfig.from_api(body), host_config=HostConfig.from_api({}, host=None),
    )  # fmt: skip
    state = ContainerState(status=Status.RUNNING, pid=4242, started_at=started_at or time.time_ns())
    with service._lock:
        service.db.create(record, state)
    return record.id


def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def health_of(service: ContainerService, cid: str) -> Health:
    health = service.get(cid).state.health
    assert health is not None
    return health


def health_events(service: ContainerService, cid: str) -> list[str]:
    return [e.action for e in service.events.recent(0) if e.actor_id == cid and e.action.startswith("health")]


def set_status(service: ContainerService, cid: str, status: Status) -> None:
    with service._lock:
        service.db.save_state(cid, replace(service.db.state(cid), status=status))


FAST = {"Test": ["CMD-SHELL", "test -f /tmp/ok"], "Interval": 2 * MS, "Retries": 2}


def test_a_passing_probe_makes_the_container_healthy(service: ContainerService) -> None:
    prober = ScriptedProber(ProbeOutcome(0, "ok\n"))
    monitor = HealthMonitor(service, prober)
    cid = add_running(service, {**FAST, "Timeout": 3 * S})
    monitor.start(cid)
    try:
        assert health_of(service, cid).status in ("starting", "healthy")
        until(lambda: health_of(service, cid).status == "healthy")
        until(lambda: len(health_of(service, cid).log) == 5)
    finally:
        monitor.stop(cid)
    assert prober.calls[0] == (cid, ["/bin/sh", "-c", "test -f /tmp/ok"], 3 * S)
    health = health_of(service, cid)
    assert health.failing_streak == 0 and health.log[-1].exit_code == 0 and health.log[-1].output == "ok\n"
    assert health.log[-1].start <= health.log[-1].end
    assert health_events(service, cid) == ["health_status: healthy"]  # once, on the change


def test_failures_make_it_unhealthy_and_a_success_heals_it(service: ContainerService) -> None:
    prober = ScriptedProber(ProbeOutcome(1, ""))
    monitor = HealthMonitor(service, prober)
    cid = add_running(service, FAST)
    monitor.start(cid)
    try:
        until(lambda: health_of(service, cid).status == "unhealthy")
        assert health_of(service, cid).failing_streak >= 2
        assert len(prober.calls) >= 2
        prober.set(ProbeOutcome(0, ""))
        until(lambda: health_of(service, cid).status == "healthy")
    finally:
        monitor.stop(cid)
    assert health_events(service, cid) == ["health_status: unhealthy", "health_status: healthy"]


def test_failures_in_the_start_period_keep_it_starting(service: ContainerService) -> None:
    prober = ScriptedProber(ProbeOutcome(1, "no"))
    monitor = HealthMonitor(service, prober)
    started = time.time_ns()
    cid = add_running(service, {**FAST, "Retries": 1, "StartPeriod": 600 * S}, started_at=started)
    config = service.get(cid).record.config.healthcheck
    assert config is not None
    policy = Policy.of(config)
    monitor._record(cid, policy, threading.Event(), result(1, at=started + S))
    health = health_of(service, cid)
    assert (health.status, health.failing_streak, len(health.log)) == ("starting", 0, 1)
    monitor._record(cid, policy, threading.Event(), result(1, at=started + 600 * S))
    health = health_of(service, cid)
    assert (health.status, health.failing_streak, len(health.log)) == ("unhealthy", 1, 2)
    assert health_events(service, cid) == ["health_status: unhealthy"]
    monitor.start(cid)  # starting again, inside the start period: probed every start interval (5s)
    try:
        time.sleep(0.1)
        assert prober.calls == []
    finally:
        monitor.stop(cid)


def test_a_prober_error_is_a_failure_with_its_message(service: ContainerService) -> None:
    prober = ScriptedProber(SystemFailure("container is gone"))
    monitor = HealthMonitor(service, prober)
    cid = add_running(service, {**FAST, "Retries": 1})
    monitor.start(cid)
    try:
        until(lambda: health_of(service, cid).status == "unhealthy")
    finally:
        monitor.stop(cid)
    last = health_of(service, cid).log[-1]
    assert (last.exit_code, last.output) == (-1, "container is gone")


def test_stop_ends_the_probes_and_reads_unhealthy(service: ContainerService) -> None:
    prober = ScriptedProber(ProbeOutcome(0, ""))
    monitor = HealthMonitor(service, prober)
    cid = add_running(service, FAST)
    monitor.start(cid)
    until(lambda: health_of(service, cid).status == "healthy")
    monitor.stop(cid)
    assert not monitor.running(cid)
    assert health_of(service, cid).status == "unhealthy"  # moby CloseMonitorChannel
    time.sleep(0.05)
    calls = len(prober.calls)
    time.sleep(0.1)
    assert len(prober.calls) == calls
    assert health_events(service, cid) == ["health_status: healthy"]  # the stop itself publishes nothing
    monitor.stop(cid)  # a second stop is harmless


def test_the_thread_ends_when_the_container_no_longer_runs(service: ContainerService) -> None:
    prober = ScriptedProber(ProbeOutcome(0, ""))
    monitor = HealthMonitor(service, prober)
    cid = add_running(service, FAST)
    monitor.start(cid)
    until(lambda: len(prober.calls) > 0)
    set_status(service, cid, Status.EXITED)
    threads = [t for t in threading.enumerate() if t.name == f"health-{cid[:12]}"]
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
    monitor.stop(cid)


def test_a_paused_container_is_not_probed(service: ContainerService) -> None:
    prober = ScriptedProber(ProbeOutcome(0, ""))
    monitor = HealthMonitor(service, prober)
    cid = add_running(service, FAST)
    set_status(service, cid, Status.PAUSED)
    monitor.start(cid)
    try:
        time.sleep(0.1)
        assert prober.calls == []
        set_status(service, cid, Status.RUNNING)
        until(lambda: health_of(service, cid).status == "healthy")
    finally:
        monitor.stop(cid)


def test_a_restart_resets_the_status_and_keeps_the_log(service: ContainerService) -> None:
    prober = ScriptedProber(ProbeOutcome(1, ""))
    monitor = HealthMonitor(service, prober)
    cid = add_running(service, {**FAST, "Retries": 1})
    monitor.start(cid)
    until(lambda: health_of(service, cid).status == "unhealthy")
    monitor.stop(cid)
    logged = health_of(service, cid).log
    prober.set(ProbeOutcome(1, ""))
    with service._lock:  # the next start must not probe before the check below
        monitor.start(cid)
        health = health_of(service, cid)
        assert (health.status, health.failing_streak, health.log) == ("starting", 0, logged)
    monitor.stop(cid)


@pytest.mark.parametrize("health", [None, {"Test": ["NONE"]}])
def test_no_healthcheck_no_thread(service: ContainerService, health: dict[str, Any] | None) -> None:
    prober = ScriptedProber(ProbeOutcome(0, ""))
    monitor = HealthMonitor(service, prober)
    cid = add_running(service, health)
    monitor.start(cid)
    assert not monitor.running(cid)
    assert service.get(cid).state.health is None


def test_close_leaves_the_health_as_it_is(service: ContainerService) -> None:
    monitor = HealthMonitor(service, ScriptedProber(ProbeOutcome(0, "")))
    cid = add_running(service, FAST)
    monitor.start(cid)
    until(lambda: health_of(service, cid).status == "healthy")
    monitor.close()
    assert not monitor.running(cid)
    assert health_of(service, cid).status == "healthy"


# ---- the exec prober, against a fake monitor --------------------------------------------------------------


class FakeMonitor:
    """Speaks enough of shim.sock for a probe: exec (sending ``output``, then either exiting with ``code`` or
    hanging until SIGKILL), signal and wait; writes exec-<id>.pid and exec-<id>.json as the monitor does."""

    def __init__(self, state_dir: str, output: bytes, code: int, *, hang: bool = False) -> None:
        self.state_dir, self.output, self.code, self.hang = state_dir, output, code, hang
        self.processes: list[dict[str, Any]] = []
        self.signals: list[int] = []
        self.killed = threading.Event()
        self.exited = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(os.path.join(state_dir, "shim.sock"))
        self.listener.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _file(self, exec_id: str, kind: str) -> str:
        return os.path.join(self.state_dir, f"exec-{exec_id}.{kind}")

    def _handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            request = json.loads(lines.readline())
            op = request["op"]
            if op == "exec":
                with open(request["process"]) as f:
                    self.processes.append(json.load(f))
                Path(self._file(request["id"], "pid")).write_text("456")
                conn.sendall(b'{"ok": true, "pid": 456, "tty": false}\n')
                conn.sendall(stdcopy.encode(stdcopy.STDOUT, self.output))
                code = self.code
                if self.hang:
                    self.killed.wait(10)
                    code = 137
                Path(self._file(request["id"], "json")).write_text(json.dumps({"exit_code": code}))
                self.exited.set()
            elif op == "signal":
                self.signals.append(request["signal"])
                self.killed.set()
                conn.sendall(b'{"ok": true}\n')
            elif op == "wait":
                self.exited.wait(10)
                with open(self._file(request["exec"], "json")) as f:
                    conn.sendall(json.dumps({"ok": True, **json.load(f)}).encode() + b"\n")


@pytest.fixture
def short_dirs() -> Iterator[EngineSettings]:
    base = tempfile.mkdtemp(prefix="kh-")  # shim.sock's path must fit a sockaddr_un
    try:
        yield EngineSettings(data_root=os.path.join(base, "d"), exec_root=os.path.join(base, "e"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def exec_service(settings: EngineSettings, db: Database) -> tuple[ContainerService, str, str]:
    service = ContainerService(settings, db, cast(ImageService, None), EventBus(), _no_spawn)
    body = {"Image": "busybox", "Cmd": ["sleep", "1"], "Env": ["A=1"], "User": "7", "WorkingDir": "/w",
            "Hostname": "box"}  # fmt: skip
    record = ContainerRecord(id=generate_id(), name="/probe", image_id="sha256:" + "1" * 64, created_at=T0,
                             config=ContainerConfig.from_api(body),
                             host_config=HostConfig.from_api({}, host=None))  # fmt: skip
    with service._lock:
        db.create(record, ContainerState(status=Status.RUNNING, pid=1, started_at=T0))
    paths = service.paths(record.id)
    os.makedirs(paths.state_dir)
    os.makedirs(paths.rootfs)
    return service, record.id, paths.state_dir


def test_the_exec_prober_runs_the_probe_and_removes_its_files(
    short_dirs: EngineSettings, tmp_path: Path
) -> None:
    with Database.open(tmp_path / "ketch.db") as db:
        service, cid, state_dir = exec_service(short_dirs, db)
        fake = FakeMonitor(state_dir, b"not yet\n", 1)
        try:
            outcome = ExecProber(service)(
                service.get(cid).record, ["/bin/sh", "-c", "test -f /tmp/ok"], 5 * S
            )
        finally:
            fake.close()
        assert outcome == ProbeOutcome(1, "not yet\n")
        process = fake.processes[0]
        assert process["args"] == ["/bin/sh", "-c", "test -f /tmp/ok"]
        assert "A=1" in process["env"] and "HOSTNAME=box" in process["env"]
        assert (process["cwd"], process["user"]["uid"], process["terminal"]) == ("/w", 7, False)
        assert sorted(os.listdir(state_dir)) == ["shim.sock"]  # process.json, .pid and .json are gone
        actions = [e.action for e in service.events.recent(0)]
        assert actions == ["exec_create: /bin/sh -c test -f /tmp/ok", "exec_start: /bin/sh -c test -f /tmp/ok",
                           "exec_die"]  # fmt: skip


def test_the_exec_prober_kills_a_probe_past_its_timeout(short_dirs: EngineSettings, tmp_path: Path) -> None:
    with Database.open(tmp_path / "ketch.db") as db:
        service, cid, state_dir = exec_service(short_dirs, db)
        fake = FakeMonitor(state_dir, b"slow", 0, hang=True)
        try:
            began = time.monotonic()
            outcome = ExecProber(service)(service.get(cid).record, ["sleep", "100"], 300 * MS)
            assert time.monotonic() - began < 5
        finally:
            fake.close()
        assert outcome == ProbeOutcome(-1, "Health check exceeded timeout (300ms)")
        assert fake.signals == [9]
        assert sorted(os.listdir(state_dir)) == ["shim.sock"]
        die = [e for e in service.events.recent(0) if e.action == "exec_die"]
        assert die[0].attributes["exitCode"] == "137"

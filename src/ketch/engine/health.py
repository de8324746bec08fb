"""Docker health checks (moby daemon/health.go): one probing thread per running container with a Healthcheck.

Each probe is an exec through the container's monitor, with the container's env, user and working directory;
its stdout and stderr are kept up to 4 KiB ("..." marks a cut). A probe that outlives its timeout is killed
and recorded as exit -1. The result goes into ``ContainerState.health`` (the last five kept): a success
makes the container healthy; failures count towards ``Retries`` (not while still starting inside the
start period) and make it unhealthy once enough of them follow one another. A change of status is published
as a ``health_status: <status>`` event.

The state machine (:func:`next_health`) and the timing (:class:`Policy`) are pure; :class:`HealthMonitor`
runs them against a :data:`Prober`, which is :class:`ExecProber` in ketchd and a fake in the unit tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

from ketch.common import fastjson
from ketch.common.atomic import atomic_write
from ketch.common.errors import KetchError, NotFound, SystemFailure
from ketch.common.ids import generate_id
from ketch.engine import ocispec
from ketch.engine.model import ContainerRecord, Health, HealthConfig, HealthResult, Status
from ketch.shim.client import ShimClient
from ketch.spec import stdcopy

if TYPE_CHECKING:
    from ketch.engine.containers import ContainerService
    from ketch.engine.db import Container

__all__ = [
    "HEALTHY",
    "MAX_LOG_ENTRIES",
    "MAX_OUTPUT",
    "STARTING",
    "UNHEALTHY",
    "ExecProber",
    "HealthMonitor",
    "Policy",
    "ProbeOutcome",
    "Prober",
    "go_duration",
    "next_health",
    "probe_command",
    "read_output",
]

log = logging.getLogger("ketch.engine")

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
MAX_OUTPUT = 4096  # bytes of a probe's output kept
MAX_LOG_ENTRIES = 5
_SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * _SECOND
DEFAULT_TIMEOUT = 30 * _SECOND
DEFAULT_START_INTERVAL = 5 * _SECOND
DEFAULT_RETRIES = 3
_START_TIMEOUT = 30.0  # moby's bound on starting the exec, which does not count towards the probe's timeout
_KILL_DRAIN = 10.0  # after killing a probe that timed out, how long to wait for its stream to end


class ProbeOutcome(NamedTuple):
    exit_code: int
    output: str


# (container, argv, timeout in ns) -> outcome; raising KetchError or OSError records exit -1 with the message
Prober = Callable[[ContainerRecord, list[str], int], ProbeOutcome]


@dataclass(frozen=True, slots=True)
class Policy:
    """A Healthcheck's timing with Docker's defaults filled in; durations in nanoseconds."""

    interval: int = DEFAULT_INTERVAL
    timeout: int = DEFAULT_TIMEOUT
    start_period: int = 0
    start_interval: int = DEFAULT_START_INTERVAL
    retries: int = DEFAULT_RETRIES

    @classmethod
    def of(cls, config: HealthConfig) -> Policy:
        # HealthConfig has no StartInterval (API 1.44): the default applies
        return cls(
            interval=config.interval or DEFAULT_INTERVAL,
            timeout=config.timeout or DEFAULT_TIMEOUT,
            start_period=config.start_period,
            retries=config.retries if config.retries > 0 else DEFAULT_RETRIES,
        )

    def delay(self, since_start: int, status: str) -> int:
        """How long to wait before the next probe, ``since_start`` ns after the container started: the
        interval, but a start period that ends sooner is not waited past, and a container still starting
        inside it is probed every start interval."""
        if since_start >= self.start_period:
            return self.interval
        remaining = self.start_period - since_start
        if remaining < self.interval:
            return remaining
        return self.start_interval if status == STARTING else self.interval


def probe_command(config: HealthConfig | None) -> list[str] | None:
    """The argv a Healthcheck runs, or None when it runs nothing (absent, NONE, or a type moby ignores)."""
    if config is None or not config.test:
        return None
    kind, args = config.test[0], list(config.test[1:])
    if kind == "CMD" and args:
        return args
    if kind == "CMD-SHELL" and args:
        return ["/bin/sh", "-c", *args]
    if kind != "NONE":
        log.warning(
            "ignoring healthcheck %s: expected CMD or CMD-SHELL with a command, or NONE", list(config.test)
        )
    return None


def next_health(health: Health, result: HealthResult, policy: Policy, started_at: int) -> Health:
    """The health after one probe (moby handleProbeResult); ``started_at`` is the container's start in ns."""
    entries = (*health.log, result)[-MAX_LOG_ENTRIES:]
    if result.exit_code == 0:
        return Health(status=HEALTHY, failing_streak=0, log=entries)
    if health.status == STARTING and result.start - started_at < policy.start_period:
        return replace(health, log=entries)  # still allowed to fail while it starts
    streak = health.failing_streak + 1
    return Health(status=UNHEALTHY if streak >= policy.retries else health.status, failing_streak=streak,
                  log=entries)  # fmt: skip


def go_duration(ns: int) -> str:
    """Go's time.Duration.String, which moby's timeout message uses: 200ms, 30s, 1m30s, 1.5s."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    for unit, size in (("ns", 1), ("µs", 1_000), ("ms", 1_000_000)):
        if ns < size * 1000:
            return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * _SECOND)
    minutes, rest = divmod(rest, 60 * _SECOND)
    head = f"{hours}h{minutes}m" if hours else f"{minutes}m" if minutes else ""
    return sign + head + _decimal(rest, _SECOND) + "s"


def _decimal(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    if not part:
        return str(whole)
    return f"{whole}." + str(part).rjust(len(str(unit)) - 1, "0").rstrip("0")


def read_output(sock: socket.socket, timeout: float, limit: int = MAX_OUTPUT) -> tuple[str, bool]:
    """Read a probe's stdcopy stream until it ends: (its stdout and stderr as moby keeps them, the first
    ``limit`` bytes with "..." when more came; whether ``timeout`` seconds passed first)."""
    deadline = time.monotonic() + timeout
    decoder = stdcopy.Decoder()
    kept = bytearray()
    truncated = timed_out = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            timed_out = True
            break
        if not data:
            break
        for frame in decoder.feed(data):
            if frame.stream not in (stdcopy.STDOUT, stdcopy.STDERR):
                continue
            room = max(limit - len(kept), 0)
            kept += frame.payload[:room]
            truncated = truncated or len(frame.payload) > room
    text = kept.decode(errors="replace")  # Go's JSON encoder replaces invalid UTF-8 the same way
    return (text + "..." if truncated else text), timed_out


def _drain(sock: socket.socket, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with contextlib.suppress(OSError):
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if not sock.recv(65536):
                return


class ExecProber:
    """Runs a probe as an exec through the container's monitor (moby's cmdProbe), with the exec events
    Docker publishes for it; the exec's files in the monitor's state directory are removed afterwards."""

    def __init__(self, service: ContainerService) -> None:
        self.service = service

    def __call__(self, record: ContainerRecord, command: list[str], timeout: int) -> ProbeOutcome:
        paths = self.service.paths(record.id)
        exec_id = generate_id()
        files = [
            os.path.join(paths.state_dir, f"exec-{exec_id}.{kind}")
            for kind in ("process.json", "pid", "json")
        ]
        try:
            env = ocispec.container_env(record, record.config.hostname or record.id[:12])
            process = ocispec.build_process(record, paths.rootfs, args=command, env=env, user=record.config.user,
                                            cwd=record.config.working_dir, tty=False)  # fmt: skip
            atomic_write(files[0], fastjson.dumps(process).encode(), mode=0o600, durable=False)
            return self._run(record, ShimClient(paths.state_dir, timeout=_START_TIMEOUT), exec_id, files[0],
                             command, timeout)  # fmt: skip
        finally:
            for path in files:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _run(self, record: ContainerRecord, client: ShimClient, exec_id: str, process: str, command: list[str],
             timeout: int) -> ProbeOutcome:  # fmt: skip
        text = " ".join(command)
        self.service.publish(record, f"exec_create: {text}", execID=exec_id)
        attached = client.exec(exec_id, process)
        if attached.sock is None:
            raise SystemFailure(
                f"the monitor of container {record.id} gave no output stream for probe {exec_id}"
            )
        self.service.publish(record, f"exec_start: {text}", execID=exec_id)
        with attached.sock as sock:
            output, timed_out = read_output(sock, timeout / _SECOND)
            if timed_out:
                with contextlib.suppress(KetchError, OSError):
                    client.signal(9, exec_id)
                _drain(sock, _KILL_DRAIN)  # dying probes must not pile up
        code = int(client.wait(exec_id).get("exit_code", -1))
        self.service.publish(record, "exec_die", execID=exec_id, exitCode=str(code))
        if timed_out:
            return ProbeOutcome(-1, f"Health check exceeded timeout ({go_duration(timeout)})")
        return ProbeOutcome(code, output)


class HealthMonitor:
    """The probing threads of one ContainerService: ``start`` after a container started, ``stop`` once it
    exited (both are no-ops when there is nothing to do)."""

    def __init__(self, service: ContainerService, prober: Prober | None = None) -> None:
        self.service = service
        self.prober: Prober = prober or ExecProber(service)
        self._stops: dict[str, threading.Event] = {}  # guarded by service._lock

    def start(self, container_id: str) -> None:
        """Reset the health to starting (keeping the log, as moby does) and probe until stopped; a container
        without a Healthcheck, or with NONE, is left alone."""
        svc = self.service
        stop = threading.Event()
        with svc._lock:
            try:
                container = svc.db.get(container_id)
            except NotFound:
                return
            config = container.record.config.healthcheck
            command = probe_command(config)
            if config is None or command is None:
                return
            old = self._stops.pop(container_id, None)
            if old is not None:  # a restart: the previous run's thread must not record anything more
                old.set()
            state = container.state
            health = replace(state.health or Health(), status=STARTING, failing_streak=0)
            svc.db.save_state(container_id, replace(state, health=health))
            self._stops[container_id] = stop
        thread = threading.Thread(target=self._run, args=(container_id, command, Policy.of(config), stop),
                                  name=f"health-{container_id[:12]}", daemon=True)  # fmt: skip
        thread.start()

    def stop(self, container_id: str) -> None:
        """End the probes; a container whose probes were running then reads unhealthy (moby
        CloseMonitorChannel, kept for compatibility with what Docker shows for a stopped container)."""
        svc = self.service
        with svc._lock:
            stop = self._stops.pop(container_id, None)
            if stop is None:
                return
            stop.set()
            try:
                state = svc.db.state(container_id)
            except NotFound:
                return
            if state.health is not None and state.health.status != UNHEALTHY:
                svc.db.save_state(
                    container_id, replace(state, health=replace(state.health, status=UNHEALTHY))
                )

    def close(self) -> None:
        """ketchd is going away: end every thread and leave the stored health as it is."""
        with self.service._lock:
            stops = list(self._stops.values())
            self._stops.clear()
        for stop in stops:
            stop.set()

    def running(self, container_id: str) -> bool:
        with self.service._lock:
            return container_id in self._stops

    # ---- the probing thread -----------------------------------------------------------------------------

    def _run(self, container_id: str, command: list[str], policy: Policy, stop: threading.Event) -> None:
        try:
            self._loop(container_id, command, policy, stop)
        except Exception:  # a thread dying silently would freeze the status: say so
            log.exception("health checks of %s stopped", container_id[:12])

    def _loop(self, container_id: str, command: list[str], policy: Policy, stop: threading.Event) -> None:
        while True:
            container = self._current(container_id, stop)
            if container is None or container.state.status not in (Status.RUNNING, Status.PAUSED):
                return
            state = container.state
            status = state.health.status if state.health is not None else STARTING
            if stop.wait(policy.delay(time.time_ns() - state.started_at, status) / _SECOND):
                return
            container = self._current(container_id, stop)
            if container is not None and container.state.status is Status.PAUSED:
                continue  # moby does not probe a paused container
            if container is None or container.state.status is not Status.RUNNING:
                return
            start = time.time_ns()
            try:
                outcome = self.prober(container.record, command, policy.timeout)
            except (KetchError, OSError) as exc:
                log.warning("health check of %s failed to run: %s", container_id[:12], exc)
                outcome = ProbeOutcome(-1, str(exc))
            result = HealthResult(start=start, end=time.time_ns(), exit_code=outcome.exit_code,
                                  output=outcome.output)  # fmt: skip
            self._record(container_id, policy, stop, result)

    def _current(self, container_id: str, stop: threading.Event) -> Container | None:
        """The container, or None once stopped or removed. ``stop`` is checked under the service's lock, so
        that no thread touches the database after stop() or close() returned (ketchd closes it next)."""
        svc = self.service
        with svc._lock:
            if stop.is_set():
                return None
            try:
                return svc.db.get(container_id)
            except NotFound:
                return None

    def _record(self, container_id: str, policy: Policy, stop: threading.Event, result: HealthResult) -> None:
        svc = self.service
        with svc._lock:
            if stop.is_set():
                return  # stopped while probing: moby drops the result
            try:
                container = svc.db.get(container_id)
            except NotFound:
                return
            state = container.state
            if state.status is not Status.RUNNING:
                return  # it exited or was paused while probing
            old = state.health or Health()
            new = next_health(old, result, policy, state.started_at)
            svc.db.save_state(container_id, replace(state, health=new))
        if new.status != old.status:
            svc.publish(container.record, f"health_status: {new.status}")

"""The container verbs: create, start, stop, kill, restart, pause, unpause, remove, rename, update, wait.

Threads: API routes call these from worker threads; each container has an operation lock so that two verbs on
one container run one after the other, and one short lock (``_lock``) guards the database and the in-memory
tables. A watcher thread per running container blocks on its monitor's ``wait`` and records the exit, so the
monitor, not ketchd, is the one that must be alive to catch it (reconcile.py picks them up after a restart).

Every verb asks engine/lifecycle.py first, does the work, then stores the state lifecycle.apply returned; a
failure half-way leaves the old state, and the next start of ketchd reconciles what the monitors report.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from ketch.common import fastjson
from ketch.common.atomic import atomic_write
from ketch.common.errors import Conflict, InvalidArgument, KetchError, NotFound, SystemFailure
from ketch.common.ids import generate_id
from ketch.common.units import parse_size
from ketch.engine import lifecycle, ocispec
from ketch.engine.db import Container, ContainerFilters, Database
from ketch.engine.etc_files import write_etc_files
from ketch.engine.events import EventBus
from ketch.engine.health import HealthMonitor
from ketch.engine.layout import ContainerPaths, EngineSettings
from ketch.engine.lifecycle import Event
from ketch.engine.links import link_env
from ketch.engine.merge import merge_image_config
from ketch.engine.model import ContainerConfig, ContainerRecord, ContainerState, HostConfig, Resources, Status
from ketch.engine.network_hooks import Attachment, Networking, NoNetworking
from ketch.engine.rootfs import mount_rootfs, unmount_rootfs
from ketch.image.service import ImageService
from ketch.shim.client import ShimClient, read_exit
from ketch.shim.monitor import MonitorConfig
from ketch.shim.spawn import Spawned
from ketch.spec.signals import parse_signal

__all__ = ["ContainerService", "Spawner"]

log = logging.getLogger("ketch.engine")

Spawner = Callable[[MonitorConfig], Spawned]
StartHook = Callable[
    [str, bool], None
]  # (shim state dir, tty), called between the monitor's create and start
_KILL_WAIT = 30.0  # after SIGKILL, how long stop/rm wait for the exit before giving up


def _parse_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


class ContainerService:
    def __init__(
        self,
        settings: EngineSettings,
        db: Database,
        images: ImageService,
        events: EventBus,
        spawner: Spawner,
    ) -> None:
        self.settings = settings
        self.db = db
        self.images = images
        self.events = events
        self.spawner = spawner
        self._lock = threading.RLock()
        self._op_locks: dict[str, threading.Lock] = {}
        self._exit_cond = threading.Condition(self._lock)
        self._exit_gen: dict[str, int] = {}  # bumped on every recorded exit (and on removal)
        self._start_hooks: dict[str, list[StartHook]] = {}
        self._watchers: dict[str, threading.Thread] = {}
        self._restart_timers: dict[str, threading.Timer] = {}
        self._closing = False
        self.last_exit_codes: dict[str, int] = {}  # kept past removal, for wait?condition=removed
        self.health = HealthMonitor(self)
        self.networking: Networking = NoNetworking()  # the daemon installs engine/networks.py's

    # ---- helpers ----------------------------------------------------------------------------------------

    def paths(self, container_id: str) -> ContainerPaths:
        return ContainerPaths(self.settings, container_id)

    @contextlib.contextmanager
    def _op(self, container_id: str) -> Iterator[None]:
        with self._lock:
            lock = self._op_locks.setdefault(container_id, threading.Lock())
        with lock:
            yield

    def get(self, ref: str) -> Container:
        with self._lock:
            return self.db.get(ref)

    def _state(self, container_id: str) -> ContainerState:
        with self._lock:
            return self.db.state(container_id)

    def _apply(self, container_id: str, event: Event, **kwargs: Any) -> ContainerState:
        with self._lock:
            new = lifecycle.apply(self.db.state(container_id), event, container_id, **kwargs)
            self.db.save_state(container_id, new)
            return new

    def _check(self, container_id: str, event: Event) -> ContainerState:
        with self._lock:
            state = self.db.state(container_id)
            lifecycle.transition(state.status, event, container_id)
            return state

    def publish(self, record: ContainerRecord, action: str, **extra: str) -> None:
        attrs = {**record.labels, "image": record.config.image, "name": record.name.lstrip("/"), **extra}
        self.events.publish("container", action, record.id, attrs)

    def runtime_argv(self, host: HostConfig, *args: str) -> list[str]:
        name = host.runtime or self.settings.default_runtime
        if name not in self.settings.runtimes:
            raise InvalidArgument(f"Unknown runtime specified {name}")
        return [self.settings.runtimes[name], "--root", self.settings.runtime_root(name), *args]

    def _run_runtime(self, host: HostConfig, *args: str, stdin: bytes | None = None) -> str:
        argv = self.runtime_argv(host, *args)
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SystemFailure(f"{argv[0]} {args[0]}: {exc}") from None
        if done.returncode != 0:
            detail = (
                done.stderr.decode(errors="replace").strip() or done.stdout.decode(errors="replace").strip()
            )
            raise SystemFailure(f"{argv[0]} {args[0]} failed: {detail}")
        return done.stdout.decode(errors="replace")

    # ---- hooks for the image service ----------------------------------------------------------------------

    def containers_using(self, image_id: str) -> list[str]:
        with self._lock:
            return [
                c.record.id
                for c in self.db.list_containers(ContainerFilters(all=True, ancestor=frozenset({image_id})))
            ]

    def is_running(self, container_id: str) -> bool:
        try:
            return lifecycle.is_running(self._state(container_id).status)
        except NotFound:
            return False

    # ---- create -----------------------------------------------------------------------------------------

    def create(self, name: str, config: ContainerConfig, host_config: HostConfig) -> tuple[str, list[str]]:
        """Docker's ContainerCreate: returns (ID, warnings). Nothing is left behind when it fails."""
        if not config.image:
            raise InvalidArgument("Config cannot be empty in order to create a container")
        image = self.images.store.find(config.image)
        image_config = self.images.config(image.id)
        merged = merge_image_config(config, image_config.config)
        host = host_config.with_create_defaults(
            log_type=self.settings.log_driver, runtime=self.settings.default_runtime
        )
        if host.log_config.type == "json-file" and not host.log_config.config and self.settings.log_opts:
            host = replace(host, log_config=replace(host.log_config, config=dict(self.settings.log_opts)))
        if host.runtime not in self.settings.runtimes:
            raise InvalidArgument(f"Unknown runtime specified {host.runtime}")
        warnings = []
        res = host.resources
        if res.memory and not os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") and \
                res.memory_swap > 0 and not os.path.exists("/sys/fs/cgroup/unified/memory.swap.max"):  # fmt: skip
            warnings.append("Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
                            "Memory limited without swap.")  # fmt: skip
        record = ContainerRecord(
            id=generate_id(), name=name, image_id=image.id, created_at=time.time_ns(), config=merged,
            host_config=host,
        )  # fmt: skip
        with self._lock:
            record = self.db.create(record)
        paths = self.paths(record.id)
        try:
            os.makedirs(paths.data_dir, mode=0o710, exist_ok=True)
            self.images.rootfs_mounts(image.id, record.id, labels={"ketch.container": record.id})
        except BaseException:
            self._purge(record.id)
            raise
        self.publish(record, "create")
        return record.id, warnings

    # ---- start ------------------------------------------------------------------------------------------

    def add_start_hook(self, container_id: str, hook: StartHook) -> None:
        """Call ``hook`` at the next start, after the monitor created the container and before it runs."""
        with self._lock:
            self._start_hooks.setdefault(container_id, []).append(hook)

    def remove_start_hook(self, container_id: str, hook: StartHook) -> None:
        with self._lock:
            hooks = self._start_hooks.get(container_id, [])
            if hook in hooks:
                hooks.remove(hook)

    def start(self, ref: str, *, event: Event = Event.START) -> None:
        container = self.get(ref)
        cid = container.record.id
        with self._op(cid):
            self._check(cid, event)
            self._start(self.get(cid).record, event)

    def _start(self, record: ContainerRecord, event: Event) -> None:
        cid = record.id
        paths = self.paths(cid)
        try:
            spawned = self._launch(record, paths)
        except KetchError as exc:
            message, code = _start_error(str(exc))
            with contextlib.suppress(KetchError):
                self._apply(cid, Event.START_FAILED, error=message, exit_code=code)
            self._cleanup_after_exit(record)
            if record.host_config.auto_remove:
                threading.Thread(target=self._auto_remove, args=(cid,), daemon=True).start()
            if code in (126, 127):
                raise InvalidArgument(message) from None
            raise SystemFailure(message) from None
        self._apply(cid, event, pid=spawned.container_pid)
        self.health.start(cid)
        self._watch(cid)
        self.publish(record, "start")

    def _launch(self, record: ContainerRecord, paths: ContainerPaths) -> Spawned:
        """Mount, write the bundle, spawn the monitor (create), run the start hooks, start."""
        cid = record.id
        host = record.host_config
        marks = [time.perf_counter()]
        os.makedirs(paths.bundle, mode=0o700, exist_ok=True)
        shutil.rmtree(paths.state_dir, ignore_errors=True)
        os.makedirs(paths.state_dir, mode=0o700)
        mount_rootfs(self.images.snapshotter.mounts(cid), paths.rootfs)
        if record.host_config.network_mode.startswith("container:"):
            net = Attachment(netns_path=self._joined_ns(record.host_config.network_mode, "net"))
        else:
            net = self.networking.attach(record)
        netns, host_net = net.netns_path, net.host_network
        hostname = record.config.hostname or cid[:12]
        if record.host_config.network_mode.startswith("container:"):
            # as Docker: the network's owner's hostname, hosts and resolv.conf (its resolver, its names)
            owner = self.get(record.host_config.network_mode.partition(":")[2]).record.id
            for name in ("hostname", "hosts", "resolv.conf"):
                shutil.copyfile(
                    os.path.join(self.paths(owner).data_dir, name), os.path.join(paths.data_dir, name)
                )
            with open(os.path.join(paths.data_dir, "hostname")) as f:
                hostname = f.read().strip() or hostname
        else:
            write_etc_files(paths.data_dir, hostname, domainname=record.config.domainname, host_network=host_net,
                            address=net.address, extra_hosts=net.extra_hosts, dns=net.dns,
                            dns_search=net.dns_search, dns_options=net.dns_options)  # fmt: skip
        seccomp_text = _seccomp_file(host.security_opt or ())
        spec = ocispec.build_spec(record, ocispec.SpecInputs(
            rootfs=paths.rootfs, container_dir=paths.data_dir, cgroup_parent=self.settings.cgroup_parent,
            init_path=self.settings.init_path, netns_path=netns, host_network=host_net,
            pid_ns_path=self._joined_ns(host.pid_mode, "pid"), ipc_ns_path=self._joined_ns(host.ipc_mode, "ipc"),
            seccomp_text=seccomp_text, link_env=tuple(self._link_env(record)), hostname=hostname,
        ))  # fmt: skip
        atomic_write(os.path.join(paths.bundle, "config.json"), fastjson.dumps(spec).encode(), durable=False)
        log_opts = host.log_config.config or {}
        json_log = host.log_config.type == "json-file"
        name = host.runtime or self.settings.default_runtime
        runtime = self.runtime_argv(host)[0]
        with contextlib.suppress(OSError):
            os.makedirs(self.settings.runtime_root(name), mode=0o700, exist_ok=True)
        config = MonitorConfig(
            container_id=cid, bundle=paths.bundle, state_dir=paths.state_dir, runtime=runtime,
            runtime_root=self.settings.runtime_root(name),
            log_path=paths.log_path if json_log else "",
            log_max_size=_parse_size(log_opts["max-size"]) if log_opts.get("max-size") else 0,
            log_max_file=int(log_opts.get("max-file", "1") or 1),
            open_stdin=record.config.open_stdin, stdin_once=record.config.stdin_once, tty=record.config.tty,
            deferred_start=True, cleanup=True,
        )  # fmt: skip
        marks.append(time.perf_counter())
        spawned = self.spawner(config)
        marks.append(time.perf_counter())
        with self._lock:
            hooks = self._start_hooks.pop(cid, [])
        for hook in hooks:
            try:
                hook(paths.state_dir, record.config.tty)
            except Exception as exc:  # an attach that fails must not stop the start
                log.warning("attach to %s at start failed: %s", cid[:12], exc)
        try:
            ShimClient(paths.state_dir, timeout=60).call("start")
        except KetchError:
            with contextlib.suppress(OSError, KetchError):
                ShimClient(paths.state_dir, timeout=5).call("signal", signal=9)
            raise
        marks.append(time.perf_counter())
        log.debug("start of %s: prepare %.1f ms, monitor and create %.1f ms, attach %.1f ms, start %.1f ms",
                  cid[:12], *((b - a) * 1000 for a, b in itertools.pairwise(marks)),
                  (time.perf_counter() - marks[-1]) * 1000)  # fmt: skip
        return spawned

    def _link_env(self, record: ContainerRecord) -> list[str]:
        """The --link variables: each linked container's exposed ports at its address, and its environment."""
        env: list[str] = []
        for link in record.host_config.links or ():
            name, _, alias = link.partition(":")
            try:
                target = self.get(name)
            except NotFound:
                raise InvalidArgument(f"could not get container for {name.lstrip('/')}") from None
            show = getattr(self.networking, "container_network_settings", None)
            ip = ""
            if show is not None and target.state.status is Status.RUNNING:
                networks = show(target.record.id, target.record).get("Networks") or {}
                ip = next((n.get("IPAddress", "") for n in networks.values() if n.get("IPAddress")), "")
            env += link_env(record.name, alias or name.lstrip("/"), target.record, ip)
        return env

    def _joined_ns(self, mode: str, ns: str) -> str:
        kind, _, target = mode.partition(":")
        if kind != "container":
            return ""
        other = self.get(target)
        if other.state.status is not Status.RUNNING or not other.state.pid:
            raise Conflict(f"cannot join network of a non running container: {other.record.id}")
        return f"/proc/{other.state.pid}/ns/{ns}"

    # ---- supervision ------------------------------------------------------------------------------------

    def _watch(self, container_id: str) -> None:
        thread = threading.Thread(target=self._wait_exit, args=(container_id,), daemon=True,
                                  name=f"watch-{container_id[:12]}")  # fmt: skip
        with self._lock:
            self._watchers[container_id] = thread
        thread.start()

    def _wait_exit(self, container_id: str) -> None:
        state_dir = self.paths(container_id).state_dir
        while True:
            try:
                result = ShimClient(state_dir).wait()
                break
            except NotFound:
                result = {"exit_code": 255, "signal": 0, "oom_killed": False, "lost": True}
                break
            except (OSError, KetchError) as exc:
                if self._closing:
                    return
                log.warning("waiting for %s: %s; retrying", container_id[:12], exc)
                time.sleep(0.5)
        if self._closing:
            return  # ketchd is going away; the next one reads exit.json
        self.record_exit(container_id, result)

    def record_exit(self, container_id: str, result: dict[str, Any]) -> None:
        """Store an exit the monitor reported, then apply the restart policy or AutoRemove."""
        code = int(result.get("exit_code", 255))
        oom = bool(result.get("oom_killed", False))
        with self._lock:
            self._watchers.pop(container_id, None)
            try:
                container = self.db.get(container_id)
            except NotFound:
                return
            record, state = container.record, container.state
            if state.status not in (Status.RUNNING, Status.PAUSED, Status.REMOVING):
                return  # already recorded (reconcile and a watcher can race)
            restart, delay = self._restart_decision(record, state, code)
            event = Event.EXIT_RESTART if restart and state.status is not Status.REMOVING else Event.EXIT
        self.health.stop(container_id)
        if event is Event.EXIT and state.status is not Status.REMOVING:
            # Before the exit is visible: a start that follows a wait must find the rootfs unmounted.
            self._cleanup_after_exit(record, runtime_delete=bool(result.get("lost")))
        with self._lock:
            try:
                state = self.db.state(container_id)
            except NotFound:
                return
            if state.status not in (Status.RUNNING, Status.PAUSED, Status.REMOVING):
                return
            new = lifecycle.apply(state, event, container_id, exit_code=code, oom_killed=oom)
            self.db.save_state(container_id, new)
            self._exit_gen[container_id] = self._exit_gen.get(container_id, 0) + 1
            self.last_exit_codes[container_id] = code
            self._exit_cond.notify_all()
        self._notify()
        if oom:
            self.publish(record, "oom")
        self.publish(record, "die", exitCode=str(code))
        if event is Event.EXIT_RESTART:
            self._schedule_restart(container_id, delay)
            return
        if new.status is Status.EXITED and record.host_config.auto_remove:
            threading.Thread(target=self._auto_remove, args=(container_id,), daemon=True).start()

    def _restart_decision(
        self, record: ContainerRecord, state: ContainerState, code: int
    ) -> tuple[bool, float]:
        """moby restartmanager: whether the policy restarts it, and after which back-off (100 ms doubling,
        reset when the container ran for 10 s or more)."""
        policy = record.host_config.restart_policy
        if self._closing or state.manually_stopped or policy.is_none:
            return False, 0.0
        limit = policy.maximum_retry_count
        if policy.name == "on-failure" and (code == 0 or (limit and state.restart_count >= limit)):
            return False, 0.0
        ran = (time.time_ns() - state.started_at) / 1e9
        count = 0 if ran >= 10 else state.restart_count
        return True, min(0.1 * (2**count), 60.0)

    def _schedule_restart(self, container_id: str, delay: float) -> None:
        timer = threading.Timer(delay, self._auto_start, args=(container_id,))
        timer.daemon = True
        with self._lock:
            self._restart_timers[container_id] = timer
        timer.start()

    def _auto_start(self, container_id: str) -> None:
        with self._lock:
            self._restart_timers.pop(container_id, None)
        if self._closing:
            return
        try:
            with self._op(container_id):
                state = self._state(container_id)
                if state.status is not Status.RESTARTING:
                    return
                self._start(self.get(container_id).record, Event.AUTO_START)
        except KetchError as exc:
            log.warning("restart of %s failed: %s", container_id[:12], exc)

    def _auto_remove(self, container_id: str) -> None:
        try:
            self.remove(container_id, force=True)
        except NotFound:
            pass
        except KetchError as exc:
            log.warning("auto-remove of %s failed: %s", container_id[:12], exc)

    def _cleanup_after_exit(self, record: ContainerRecord, *, runtime_delete: bool = True) -> None:
        """Unmount the rootfs; ``runtime_delete`` makes sure the runtime forgot the container, which a monitor
        that saw the exit has already done (it runs ``delete`` itself)."""
        paths = self.paths(record.id)
        try:
            self.networking.detach(record.id)
        except KetchError as exc:
            log.warning("taking %s off its networks: %s", record.id[:12], exc)
        if runtime_delete:
            with contextlib.suppress(KetchError):
                self._run_runtime(record.host_config, "delete", "--force", record.id)
        with contextlib.suppress(KetchError, OSError):
            unmount_rootfs(paths.rootfs)

    # ---- wait -------------------------------------------------------------------------------------------

    def exit_generation(self, container_id: str) -> int:
        with self._lock:
            return self._exit_gen.get(container_id, 0)

    def wait_exit(self, container_id: str, generation: int, timeout: float | None = None) -> bool:
        """Block until an exit newer than ``generation`` is recorded (or the container is removed)."""
        with self._exit_cond:
            return self._exit_cond.wait_for(
                lambda: self._exit_gen.get(container_id, 0) != generation or self._removed(container_id),
                timeout,
            )

    def _removed(self, container_id: str) -> bool:
        try:
            self.db.state(container_id)
        except NotFound:
            return True
        return False

    def add_exit_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from some thread) after every recorded exit or removal; returns the remover.
        The async routes use this to wake their waiters without parking a thread each."""
        with self._lock:
            self._listeners = getattr(self, "_listeners", [])
            self._listeners.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return remove

    def _notify(self) -> None:
        for callback in list(getattr(self, "_listeners", [])):
            with contextlib.suppress(Exception):
                callback()

    # ---- stop, kill, restart ----------------------------------------------------------------------------

    def _signal(self, container_id: str, signum: int) -> None:
        try:
            ShimClient(self.paths(container_id).state_dir, timeout=10).call("signal", signal=signum)
        except (OSError, KetchError) as exc:
            raise SystemFailure(f"Cannot kill container: {container_id}: {exc}") from None

    def kill(self, ref: str, signal_text: str = "") -> None:
        cid = self.get(ref).record.id
        try:
            signum = parse_signal(signal_text) if signal_text else 9
        except ValueError:
            raise InvalidArgument(f"Invalid signal: {signal_text}") from None
        state = self._check(cid, Event.KILL)
        if state.status is Status.RESTARTING:
            self._cancel_restart(cid)
            self._apply(cid, Event.KILL)
            return
        if state.status is Status.PAUSED and signum == 9:
            self._signal(cid, signum)
            with contextlib.suppress(KetchError):
                self._run_runtime(self.get(cid).record.host_config, "resume", cid)
        else:
            self._signal(cid, signum)
        self.publish(self.get(cid).record, "kill", signal=str(signum))

    def _cancel_restart(self, container_id: str) -> None:
        with self._lock:
            timer = self._restart_timers.pop(container_id, None)
        if timer is not None:
            timer.cancel()

    def stop(self, ref: str, timeout: int | None = None, signal_text: str = "") -> None:
        cid = self.get(ref).record.id
        with self._op(cid):
            self._stop(cid, timeout, signal_text)

    def _stop(self, cid: str, timeout: int | None, signal_text: str) -> None:
        record = self.get(cid).record
        with self._lock:
            state = self.db.state(cid)
            lifecycle.transition(state.status, Event.STOP, cid)
            generation = self._exit_gen.get(cid, 0)
            new = lifecycle.apply(state, Event.STOP, cid)
            self.db.save_state(cid, new)
        if state.status is Status.RESTARTING:
            self._cancel_restart(cid)
            self.publish(record, "stop")
            return
        if timeout is None:
            timeout = record.config.stop_timeout if record.config.stop_timeout is not None \
                else self.settings.stop_timeout  # fmt: skip
        try:
            signum = parse_signal(signal_text) if signal_text else ocispec.stop_signal(record)
        except ValueError:
            raise InvalidArgument(f"Invalid signal: {signal_text}") from None
        if state.status is Status.PAUSED:
            signum = 9
        self.publish(record, "kill", signal=str(signum))
        with contextlib.suppress(SystemFailure):
            self._signal(cid, signum)
        if state.status is Status.PAUSED:
            with contextlib.suppress(KetchError):
                self._run_runtime(record.host_config, "resume", cid)
        # a negative timeout waits for as long as it takes, as docker's -t -1 does
        if not self.wait_exit(cid, generation, None if timeout < 0 else timeout):
            self.publish(record, "kill", signal="9")
            with contextlib.suppress(SystemFailure):
                self._signal(cid, 9)
            if not self.wait_exit(cid, generation, _KILL_WAIT):
                raise SystemFailure(f"container {cid} did not exit {_KILL_WAIT:.0f}s after SIGKILL")
        self.publish(record, "stop")

    def restart(self, ref: str, timeout: int | None = None, signal_text: str = "") -> None:
        cid = self.get(ref).record.id
        with self._op(cid):
            state = self._check(cid, Event.RESTART)
            if state.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING):
                self._stop(cid, timeout, signal_text)
            self._start(self.get(cid).record, Event.START)
        self.publish(self.get(cid).record, "restart")

    # ---- pause, update, rename --------------------------------------------------------------------------

    def pause(self, ref: str) -> None:
        container = self.get(ref)
        cid = container.record.id
        with self._op(cid):
            self._check(cid, Event.PAUSE)
            self._run_runtime(container.record.host_config, "pause", cid)
            self._apply(cid, Event.PAUSE)
        self.publish(container.record, "pause")

    def unpause(self, ref: str) -> None:
        container = self.get(ref)
        cid = container.record.id
        with self._op(cid):
            self._check(cid, Event.UNPAUSE)
            self._run_runtime(container.record.host_config, "resume", cid)
            self._apply(cid, Event.UNPAUSE)
        self.publish(container.record, "unpause")

    def rename(self, ref: str, new_name: str) -> None:
        with self._lock:
            cid = self.db.resolve(ref) if ref else ref
            old = self.db.rename(ref, new_name)
            record = self.db.get(cid).record
        self.publish(record, "rename", oldName=old)

    def update(self, ref: str, resources: Resources, restart_policy: Any | None) -> list[str]:
        container = self.get(ref)
        cid = container.record.id
        with self._op(cid):
            state = self._check(cid, Event.UPDATE)
            record = container.record
            host = record.host_config
            merged = _merge_resources(host.resources, resources)
            new_host = replace(host, resources=merged)
            if restart_policy is not None:
                if restart_policy.name and host.auto_remove and not restart_policy.is_none:
                    raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for "
                                          "the container")  # fmt: skip
                new_host = replace(new_host, restart_policy=restart_policy)
            new_host.validate(None, update=True)
            if state.status in (Status.RUNNING, Status.PAUSED):
                spec = ocispec.build_spec(replace(record, host_config=new_host), ocispec.SpecInputs(
                    rootfs=self.paths(cid).rootfs, container_dir=self.paths(cid).data_dir))  # fmt: skip
                resources_json = fastjson.dumps({k: v for k, v in spec["linux"]["resources"].items()
                                                 if k != "devices"})  # fmt: skip
                self._run_runtime(host, "update", "--resources", "-", cid, stdin=resources_json.encode())
            with self._lock:
                self.db.replace_config(cid, record.config, new_host)
        self.publish(record, "update")
        return []

    # ---- remove -----------------------------------------------------------------------------------------

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        cid = self.get(ref).record.id
        with self._op(cid):
            record = self.get(cid).record
            with self._lock:
                state = self.db.state(cid)
                lifecycle.transition(state.status, Event.FORCE_REMOVE if force else Event.REMOVE, cid)
                generation = self._exit_gen.get(cid, 0)
            if state.status is Status.RESTARTING:
                self._cancel_restart(cid)
            if state.status in (Status.RUNNING, Status.PAUSED):
                self.publish(record, "kill", signal="9")
                with contextlib.suppress(SystemFailure):
                    self._signal(cid, 9)
                if state.status is Status.PAUSED:
                    with contextlib.suppress(KetchError):
                        self._run_runtime(record.host_config, "resume", cid)
                if not self.wait_exit(cid, generation, _KILL_WAIT):
                    raise SystemFailure(f"Could not kill running container {cid}, cannot remove")
            self._apply(cid, Event.FORCE_REMOVE if force else Event.REMOVE)
            try:
                self._cleanup_after_exit(record, runtime_delete=state.status is Status.DEAD)
                self._purge(cid)
            except (KetchError, OSError) as exc:
                with contextlib.suppress(KetchError):
                    self._apply(cid, Event.REMOVE_FAILED, error=str(exc))
                raise SystemFailure(f"unable to remove container {cid}: {exc}") from None
        with self._lock:
            self._op_locks.pop(cid, None)
            self._exit_gen[cid] = self._exit_gen.get(cid, 0) + 1
            self._exit_cond.notify_all()
        self.publish(record, "destroy")
        self._notify()

    def _purge(self, cid: str) -> None:
        """Everything a container owns on disk, then its rows; each step tolerates what is already gone."""
        paths = self.paths(cid)
        unmount_rootfs(paths.rootfs)
        with contextlib.suppress(NotFound):
            self.images.snapshotter.remove(cid)
        shutil.rmtree(paths.bundle, ignore_errors=True)
        shutil.rmtree(paths.state_dir, ignore_errors=True)
        shutil.rmtree(paths.data_dir, ignore_errors=True)
        self.networking.forget(cid)
        with self._lock, contextlib.suppress(NotFound):
            self.db.delete(cid)

    def prune(self, until_ns: int = 0, labels: tuple[str, ...] = ()) -> tuple[list[str], int]:
        with self._lock:
            stopped = self.db.list_containers(ContainerFilters(all=True, status=frozenset(
                {Status.EXITED, Status.CREATED, Status.DEAD}), label=labels))  # fmt: skip
        removed, reclaimed = [], 0
        for container in stopped:
            if until_ns and container.record.created_at >= until_ns:
                continue
            size = self.size_rw(container.record.id)
            try:
                self.remove(container.record.id)
            except KetchError:
                continue
            removed.append(container.record.id)
            reclaimed += size
        return removed, reclaimed

    # ---- sizes, top, stats ------------------------------------------------------------------------------

    def size_rw(self, container_id: str) -> int:
        try:
            return int(self.images.snapshotter.usage(container_id).size)
        except (KetchError, OSError):
            return 0

    def size_root_fs(self, container: Container) -> int:
        try:
            total = sum(self.images.store.get(container.record.image_id).layer_sizes)
        except KetchError:
            total = 0
        return total + self.size_rw(container.record.id)

    def running_pids(self, ref: str) -> tuple[Container, list[int]]:
        container = self.get(ref)
        if container.state.status not in (Status.RUNNING, Status.PAUSED):
            raise Conflict(f"Container {container.record.id} is not running")
        out = self._run_runtime(container.record.host_config, "ps", "--format", "json", container.record.id)
        return container, [int(p) for p in fastjson.loads(out or "[]")]

    def stats(self, ref: str) -> dict[str, Any]:
        container = self.get(ref)
        if container.state.status not in (Status.RUNNING, Status.PAUSED):
            return {}
        out = self._run_runtime(container.record.host_config, "events", "--stats", container.record.id)
        data: dict[str, Any] = fastjson.loads(out.splitlines()[0]).get("data", {}) if out.strip() else {}
        return data

    # ---- start-up and shut-down -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching: monitors keep running and the next ketchd reattaches."""
        self._closing = True
        self.health.close()
        with self._lock:
            timers = list(self._restart_timers.values())
            self._restart_timers.clear()
        for timer in timers:
            timer.cancel()

    def reattach(self, container_id: str) -> None:
        """Watch a container a previous ketchd started (its health checks resume too, as moby's restore)."""
        self.health.start(container_id)
        self._watch(container_id)

    def read_exit(self, container_id: str) -> dict[str, Any]:
        return read_exit(self.paths(container_id).state_dir)


def _merge_resources(old: Resources, new: Resources) -> Resources:
    """docker update: fields the request sets (non-zero) replace the old ones."""
    changes = {}
    for name in Resources.__dataclass_fields__:
        value = getattr(new, name)
        if value not in (0, "", None):
            changes[name] = value
    if new.memory and not new.memory_swap and old.memory_swap > 0:
        changes["memory_swap"] = max(old.memory_swap, new.memory * 2) if old.memory_swap != -1 else -1
    return replace(old, **changes)


def _seccomp_file(opts: tuple[str, ...]) -> str:
    """The docker CLI sends the profile's content in ``seccomp=<json>``; an API client may send a path."""
    for opt in opts:
        key, sep, rest = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "seccomp" and sep and rest not in ("unconfined", "builtin"):
            if rest.lstrip().startswith("{"):
                return rest
            try:
                with open(rest) as f:
                    return f.read()
            except OSError as exc:
                raise InvalidArgument(f"opening seccomp profile ({rest}) failed: {exc.strerror}") from None
    return ""


def _start_error(text: str) -> tuple[str, int]:
    """moby translateContainerdStartErr: the message and the exit code a failed start reports."""
    lowered = text.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return text, 127
    if "permission denied" in lowered:
        return text, 126
    return text, 128

"""The container model: what a container was created with (immutable) and what it is doing now (mutable).

- :class:`ContainerConfig` and :class:`HostConfig` (with :class:`Resources`) are the subset of the Engine API's
  ``Config`` and ``HostConfig`` that ketch implements, as frozen dataclasses. ``from_api`` decodes the JSON a
  client sent the way Go's encoding/json decodes it into moby's structs (keys match case-insensitively, null
  leaves the zero value, a wrong type is ``json: cannot unmarshal string into Go struct field
  ContainerConfigWrapper.HostConfig.Memory of type int64``), then checks values with moby's messages
  (daemon/container.go verifyContainerSettings, daemon/daemon_unix.go verifyPlatformContainerResources, as of
  Docker 20.10). ``to_api`` writes the same keys back in Go's field order, so ``from_api(to_api(x)) == x``.
  Fields outside the subset are dropped, as Go drops unknown keys.
- Checks that depend on the host (how many CPUs, which cpuset) take a :class:`HostLimits`; pass ``None`` when
  re-reading a stored config, which passed them when it was created.
- :class:`ContainerState` is the one mutable record: a :class:`Status` (the single enum, podman-style; Docker's
  Running/Paused/Restarting/Dead flags are derived from it in engine/lifecycle.py), pid, exit code, times in
  unix nanoseconds (0 is Go's zero time), OOM flag, error, restart count and health.
"""

from __future__ import annotations

import calendar
import enum
import ipaddress
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ketch.common.errors import InvalidArgument
from ketch.spec.capabilities import CAPABILITIES
from ketch.spec.signals import parse_signal

__all__ = [
    "ZERO_TIME",
    "ContainerConfig",
    "ContainerRecord",
    "ContainerState",
    "Device",
    "Health",
    "HealthConfig",
    "HealthResult",
    "HostConfig",
    "HostLimits",
    "LogConfig",
    "Resources",
    "RestartPolicy",
    "Status",
    "Ulimit",
    "format_time",
    "parse_create_body",
    "parse_time",
]

MIN_MEMORY = 6 * 1024 * 1024  # moby's linuxMinMemory: room for start-up overhead
MIN_DURATION_NS = 1_000_000  # container.MinimumDuration (1ms) for health-check intervals
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, which Docker prints for "never"
_INT_RANGE = {"int64": (-(2**63), 2**63 - 1), "int": (-(2**63), 2**63 - 1), "uint16": (0, 2**16 - 1)}
_INT_RANGE |= {"uint": (0, 2**64 - 1), "time.Duration": _INT_RANGE["int64"]}
_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_TRUE, _GO_FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")
_LOG_DRIVERS = ("json-file", "none")
_JSON_FILE_OPTS = ("max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag")


# ---- Go's encoding/json, as far as moby's structs need it ---------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "array" if isinstance(value, list) else "object"


def _type_error(value: Any, where: str, gotype: str) -> InvalidArgument:
    into = f"Go struct field {where}" if "." in where else "Go value"
    return InvalidArgument(f"json: cannot unmarshal {_kind(value)} into {into} of type {gotype}")


def _go_int(value: Any, where: str, gotype: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(value, where, gotype)
    low, high = _INT_RANGE[gotype]
    if isinstance(value, float) or not low <= value <= high:
        raise InvalidArgument(
            f"json: cannot unmarshal number {value!r} into Go struct field {where} of type {gotype}"
        )
    return value


def _go_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _type_error(value, where, "string")
    return value


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return None if mapping is None else MappingProxyType(dict(mapping))


class _Fields:
    """A JSON object decoded into a Go struct: ``where`` is the struct path Go names in its errors."""

    def __init__(self, obj: Any, where: str, gotype: str) -> None:
        if not isinstance(obj, dict):
            raise _type_error(obj, where, gotype)
        self.obj: dict[str, Any] = obj
        self.where = where
        # Go prefers an exact key, then the first one that matches case-insensitively
        self.folded = {key.lower(): key for key in reversed(list(obj))}

    def get(self, key: str) -> Any:
        if key in self.obj:
            return self.obj[key]
        real = self.folded.get(key.lower())
        return None if real is None else self.obj[real]

    def at(self, key: str) -> str:
        return f"{self.where}.{key}"

    def text(self, key: str) -> str:
        value = self.get(key)
        return "" if value is None else _go_str(value, self.at(key))

    def flag(self, key: str) -> bool:
        value = self.get(key)
        if value is not None and not isinstance(value, bool):
            raise _type_error(value, self.at(key), "bool")
        return bool(value)

    def opt_flag(self, key: str) -> bool | None:
        return None if self.get(key) is None else self.flag(key)

    def number(self, key: str, gotype: str = "int64") -> int:
        value = self.get(key)
        return 0 if value is None else _go_int(value, self.at(key), gotype)

    def opt_number(self, key: str, gotype: str = "int64") -> int | None:
        value = self.get(key)
        return None if value is None else _go_int(value, self.at(key), gotype)

    def strs(self, key: str) -> tuple[str, ...] | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise _type_error(value, self.at(key), "[]string")
        return tuple("" if item is None else _go_str(item, self.at(key)) for item in value)

    def strslice(self, key: str) -> tuple[str, ...] | None:
        """strslice.StrSlice: a list of strings or one string; its own decoder reports errors without context."""
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(item, str | None) for item in value):
            return tuple(item or "" for item in value)
        raise _type_error(value, "", "string")

    def str_map(self, key: str) -> Mapping[str, str] | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _type_error(value, self.at(key), "map[string]string")
        return _frozen({k: "" if v is None else _go_str(v, self.at(key)) for k, v in value.items()})

    def key_set(self, key: str, gotype: str) -> tuple[str, ...] | None:
        """``map[string]struct{}`` (ExposedPorts, Volumes): the keys, sorted as Go writes map keys."""
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _type_error(value, self.at(key), gotype)
        for item in value.values():
            if item is not None and not isinstance(item, dict):
                raise _type_error(item, self.at(key), "struct {}")
        return tuple(sorted(value))

    def nested(self, key: str, gotype: str) -> _Fields | None:
        value = self.get(key)
        return None if value is None else _Fields(value, self.at(key), gotype)

    def objects(self, key: str, gotype: str) -> list[_Fields] | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise _type_error(value, self.at(key), "[]" + gotype)
        return [_Fields(item, self.at(key), gotype.lstrip("*")) for item in value if item is not None]


def _put(out: dict[str, Any], key: str, value: Any, omit_empty: bool = False) -> None:
    if omit_empty and not value:
        return
    if isinstance(value, tuple):
        value = list(value)
    elif isinstance(value, Mapping):
        value = dict(value)
    out[key] = value


# ---- Config -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    test: tuple[str, ...] | None = None  # ["NONE"], ["CMD", ...], ["CMD-SHELL", "..."]; None: the image's
    interval: int = 0  # nanoseconds; 0 means the default
    timeout: int = 0
    start_period: int = 0
    retries: int = 0

    @classmethod
    def from_fields(cls, f: _Fields) -> HealthConfig:
        return cls(
            test=f.strs("Test") or None,  # omitempty: an empty list reads back as absent
            interval=f.number("Interval", "time.Duration"),
            timeout=f.number("Timeout", "time.Duration"),
            start_period=f.number("StartPeriod", "time.Duration"),
            retries=f.number("Retries", "int"),
        )

    def validate(self) -> None:
        for name, value in (("Interval", self.interval), ("Timeout", self.timeout)):
            if value != 0 and value < MIN_DURATION_NS:
                raise InvalidArgument(f"{name} in Healthcheck cannot be less than 1ms")
        if self.retries < 0:
            raise InvalidArgument("Retries in Healthcheck cannot be negative")
        if self.start_period != 0 and self.start_period < MIN_DURATION_NS:
            raise InvalidArgument("StartPeriod in Healthcheck cannot be less than 1ms")

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _put(out, "Test", self.test, omit_empty=True)
        for key, value in (("Interval", self.interval), ("Timeout", self.timeout)):
            _put(out, key, value, omit_empty=True)
        _put(out, "StartPeriod", self.start_period, omit_empty=True)
        _put(out, "Retries", self.retries, omit_empty=True)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerConfig:
    """Engine API ``Config``: what runs and how its stdio and identity look (moby api/types/container.Config)."""

    hostname: str = ""
    domainname: str = ""
    user: str = ""
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: tuple[str, ...] | None = None  # "80/tcp"
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    env: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    healthcheck: HealthConfig | None = None
    image: str = ""  # the reference as the client gave it
    volumes: tuple[str, ...] | None = None
    working_dir: str = ""
    entrypoint: tuple[str, ...] | None = None
    network_disabled: bool = False
    on_build: tuple[str, ...] | None = None
    labels: Mapping[str, str] | None = None
    stop_signal: str = ""
    stop_timeout: int | None = None  # seconds; None means the daemon's default (10)

    @classmethod
    def from_api(cls, obj: Any, where: str = "ContainerConfigWrapper") -> ContainerConfig:
        config = cls._decode(_Fields(obj, where, "container.Config"))
        config.validate()
        return config

    @classmethod
    def _decode(cls, f: _Fields) -> ContainerConfig:
        health = f.nested("Healthcheck", "container.HealthConfig")
        return cls(
            hostname=f.text("Hostname"),
            domainname=f.text("Domainname"),
            user=f.text("User"),
            attach_stdin=f.flag("AttachStdin"),
            attach_stdout=f.flag("AttachStdout"),
            attach_stderr=f.flag("AttachStderr"),
            exposed_ports=f.key_set("ExposedPorts", "nat.PortSet") or None,  # omitempty
            tty=f.flag("Tty"),
            open_stdin=f.flag("OpenStdin"),
            stdin_once=f.flag("StdinOnce"),
            env=f.strs("Env"),
            cmd=f.strslice("Cmd"),
            healthcheck=None if health is None else HealthConfig.from_fields(health),
            image=f.text("Image"),
            volumes=f.key_set("Volumes", "map[string]struct {}"),
            working_dir=f.text("WorkingDir"),
            entrypoint=f.strslice("Entrypoint"),
            network_disabled=f.flag("NetworkDisabled"),
            on_build=f.strs("OnBuild"),
            labels=f.str_map("Labels"),
            stop_signal=f.text("StopSignal"),
            stop_timeout=f.opt_number("StopTimeout", "int"),
        )

    def validate(self) -> None:
        if self.working_dir and not self.working_dir.startswith("/"):
            raise InvalidArgument(
                f"the working directory '{self.working_dir}' is invalid, it needs to be an absolute path"
            )
        if self.stop_signal and not _valid_signal(self.stop_signal):
            raise InvalidArgument(f"Invalid signal: {self.stop_signal}")
        for entry in self.env or ():
            if not entry.partition("=")[0].strip():
                raise InvalidArgument(f"invalid environment variable: {entry}")
        if self.healthcheck is not None:
            self.healthcheck.validate()

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (("Hostname", self.hostname), ("Domainname", self.domainname), ("User", self.user)):
            _put(out, key, value)
        _put(out, "AttachStdin", self.attach_stdin)
        _put(out, "AttachStdout", self.attach_stdout)
        _put(out, "AttachStderr", self.attach_stderr)
        if self.exposed_ports:
            out["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        for flag, on in (("Tty", self.tty), ("OpenStdin", self.open_stdin), ("StdinOnce", self.stdin_once)):
            _put(out, flag, on)
        _put(out, "Env", self.env)
        _put(out, "Cmd", self.cmd)
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_api()
        _put(out, "Image", self.image)
        out["Volumes"] = None if self.volumes is None else {path: {} for path in self.volumes}
        _put(out, "WorkingDir", self.working_dir)
        _put(out, "Entrypoint", self.entrypoint)
        _put(out, "NetworkDisabled", self.network_disabled, omit_empty=True)
        _put(out, "OnBuild", self.on_build)
        _put(out, "Labels", self.labels)
        _put(out, "StopSignal", self.stop_signal, omit_empty=True)
        if self.stop_timeout is not None:
            out["StopTimeout"] = self.stop_timeout
        return out


def _valid_signal(text: str) -> bool:
    """moby's signal.ParseSignal: any non-zero number, or a known name with or without ``SIG``."""
    if _GO_INT.fullmatch(text):
        return int(text) != 0
    try:
        parse_signal(text)
    except ValueError:
        return False
    return True


# ---- HostConfig ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HostLimits:
    """What the host offers, for the checks that depend on it."""

    ncpu: int
    cpus: str  # the cpuset the daemon may use, "0-3"
    mems: str  # memory nodes, "0"

    @classmethod
    def current(cls) -> HostLimits:
        cpus = sorted(os.sched_getaffinity(0))
        try:
            with open("/sys/devices/system/node/online") as f:
                mems = f.read().strip()
        except OSError:
            mems = "0"
        return cls(ncpu=len(cpus), cpus=",".join(str(n) for n in cpus), mems=mems)


def _uint_list(text: str, maximum: int | None = None) -> set[int]:
    """moby parsers.ParseUintList(Maximum): "0-3,5" to {0, 1, 2, 3, 5}."""
    out: set[int] = set()
    if not text:
        return out
    for part in text.split(","):
        low_text, dash, high_text = part.partition("-")
        bounds = (low_text, high_text) if dash else (part, part)
        if not all(_GO_INT.fullmatch(b) for b in bounds) or int(bounds[1]) < int(bounds[0]):
            raise ValueError(f"invalid format: {text}")
        if maximum is not None and int(bounds[1]) > maximum:
            raise ValueError(f"value of out range, maximum is {maximum}")
        out.update(range(int(bounds[0]), int(bounds[1]) + 1))
    return out


def _cpuset_available(provided: str, available: str) -> bool:
    have = _uint_list(available)
    return _uint_list(provided, max([8192, *have])) <= have


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    path_on_host: str = ""
    path_in_container: str = ""
    cgroup_permissions: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ulimit:
    name: str = ""
    soft: int = 0
    hard: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """container.Resources, embedded in HostConfig (its keys sit at the HostConfig level) and sent alone by
    ``docker update``."""

    cpu_shares: int = 0
    memory: int = 0
    nano_cpus: int = 0
    cgroup_parent: str = ""
    blkio_weight: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    devices: tuple[Device, ...] | None = None
    memory_reservation: int = 0
    memory_swap: int = 0  # -1: unlimited swap
    memory_swappiness: int | None = None
    oom_kill_disable: bool | None = None
    pids_limit: int | None = None  # 0 or less: unlimited
    ulimits: tuple[Ulimit, ...] | None = None

    @classmethod
    def from_fields(cls, f: _Fields) -> Resources:
        devices = f.objects("Devices", "container.DeviceMapping")
        ulimits = f.objects("Ulimits", "*units.Ulimit")
        swappiness = f.opt_number("MemorySwappiness")
        return cls(
            cpu_shares=f.number("CpuShares"),
            memory=f.number("Memory"),
            nano_cpus=f.number("NanoCpus"),
            cgroup_parent=f.text("CgroupParent"),
            blkio_weight=f.number("BlkioWeight", "uint16"),
            cpu_period=f.number("CpuPeriod"),
            cpu_quota=f.number("CpuQuota"),
            cpuset_cpus=f.text("CpusetCpus"),
            cpuset_mems=f.text("CpusetMems"),
            devices=None
            if devices is None
            else tuple(
                Device(
                    path_on_host=d.text("PathOnHost"),
                    path_in_container=d.text("PathInContainer"),
                    cgroup_permissions=d.text("CgroupPermissions"),
                )
                for d in devices
            ),
            memory_reservation=f.number("MemoryReservation"),
            memory_swap=f.number("MemorySwap"),
            memory_swappiness=None if swappiness == -1 else swappiness,  # -1 is the CLI's "unset"
            oom_kill_disable=f.opt_flag("OomKillDisable"),
            pids_limit=f.opt_number("PidsLimit"),
            ulimits=None
            if ulimits is None
            else tuple(
                Ulimit(name=u.text("Name"), soft=u.number("Soft"), hard=u.number("Hard")) for u in ulimits
            ),
        )

    def verify(self, host: HostLimits | None, *, update: bool = False) -> None:
        """verifyPlatformContainerResources, in moby's order; ``host`` None skips the host-dependent checks."""
        memory, swap, reservation = self.memory, self.memory_swap, self.memory_reservation
        if memory != 0 and memory < MIN_MEMORY:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        if memory > 0 and 0 < swap < memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
        if memory == 0 and swap > 0 and not update:
            raise InvalidArgument(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
            )
        if self.memory_swappiness is not None and not 0 <= self.memory_swappiness <= 100:
            raise InvalidArgument(
                f"Invalid value: {self.memory_swappiness}, valid memory swappiness range is 0-100"
            )
        if 0 < reservation < MIN_MEMORY:
            raise InvalidArgument("Minimum memory reservation allowed is 6MB")
        if memory > 0 and reservation > 0 and memory < reservation:
            raise InvalidArgument(
                "Minimum memory limit can not be less than memory reservation limit, see usage"
            )
        if self.nano_cpus > 0 and self.cpu_period > 0:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        if self.nano_cpus > 0 and self.cpu_quota > 0:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        if host is not None and not 0 <= self.nano_cpus <= host.ncpu * 10**9:
            raise InvalidArgument(
                f"Range of CPUs is from 0.01 to {host.ncpu}.00, as there are only {host.ncpu} CPUs available"
            )
        if self.cpu_period != 0 and not 1000 <= self.cpu_period <= 1_000_000:
            raise InvalidArgument(
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
            )
        if 0 < self.cpu_quota < 1000:
            raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        if host is not None:
            for value, available, what, noun in (
                (self.cpuset_cpus, host.cpus, "cpus", "CPUs"),
                (self.cpuset_mems, host.mems, "mems", "memory nodes"),
            ):
                try:
                    ok = _cpuset_available(value, available)
                except ValueError as exc:
                    raise InvalidArgument(f"Invalid value {value} for cpuset {what}: {exc}") from None
                if not ok:
                    raise InvalidArgument(
                        f"Requested {noun} are not available - requested {value}, available: {available}"
                    )
        if self.blkio_weight > 0 and not 10 <= self.blkio_weight <= 1000:
            raise InvalidArgument("Range of blkio weight is from 10 to 1000")

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "CpuShares": self.cpu_shares,
            "Memory": self.memory,
            "NanoCpus": self.nano_cpus,
            "CgroupParent": self.cgroup_parent,
            "BlkioWeight": self.blkio_weight,
            "CpuPeriod": self.cpu_period,
            "CpuQuota": self.cpu_quota,
            "CpusetCpus": self.cpuset_cpus,
            "CpusetMems": self.cpuset_mems,
        }
        out["Devices"] = None if self.devices is None else [
            {"PathOnHost": d.path_on_host, "PathInContainer": d.path_in_container,
             "CgroupPermissions": d.cgroup_permissions}
            for d in self.devices
        ]  # fmt: skip
        out["MemoryReservation"] = self.memory_reservation
        out["MemorySwap"] = self.memory_swap
        out["MemorySwappiness"] = self.memory_swappiness
        out["OomKillDisable"] = self.oom_kill_disable
        out["PidsLimit"] = self.pids_limit
        out["Ulimits"] = None if self.ulimits is None else [
            {"Name": u.name, "Hard": u.hard, "Soft": u.soft} for u in self.ulimits
        ]  # fmt: skip
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    name: str = ""  # "", "no", "always", "unless-stopped", "on-failure"
    maximum_retry_count: int = 0

    @property
    def is_none(self) -> bool:
        return self.name in ("", "no")

    def validate(self) -> None:
        if self.name in ("always", "unless-stopped", "no"):
            if self.maximum_retry_count != 0:
                raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{self.name}'")
        elif self.name == "on-failure":
            if self.maximum_retry_count < 0:
                raise InvalidArgument("maximum retry count cannot be negative")
        elif self.name:
            raise InvalidArgument(f"invalid restart policy '{self.name}'")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    type: str = ""  # "" until the daemon's default is applied
    config: Mapping[str, str] | None = None

    def validate(self) -> None:
        """moby logger.ValidateLogOpts for the drivers ketch has."""
        opts = self.config or {}
        if self.type == "none":
            return
        if opts.get("mode", "") not in ("", "blocking", "non-blocking"):
            raise InvalidArgument(f"logger: logging mode not supported: {opts['mode']}")
        if self.type and self.type not in _LOG_DRIVERS:
            raise InvalidArgument(f"logger: no log driver named '{self.type}' is registered")
        for key in opts:
            if key not in (*_JSON_FILE_OPTS, "mode", "max-buffer-size"):
                raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")


def _valid_mode(value: str, *modes: str, container: bool = False) -> bool:
    if value in ("", *modes):
        return True
    kind, sep, target = value.partition(":")
    return container and kind == "container" and bool(sep) and bool(target)


def _check_security_opt(opt: str) -> None:
    """moby parseSecurityOpt: the shapes it accepts (the values are used when the container starts)."""
    if opt in ("no-new-privileges", "disable"):
        return
    key, sep, value = opt.partition("=") if "=" in opt else opt.partition(":")
    if not sep:
        raise InvalidArgument(f"invalid --security-opt 1: {_quote(opt)}")
    if key not in ("label", "apparmor", "seccomp", "no-new-privileges") or (
        key == "no-new-privileges" and value not in (*_GO_TRUE, *_GO_FALSE)
    ):
        raise InvalidArgument(f"invalid --security-opt 2: {_quote(opt)}")


def _quote(text: str) -> str:
    """Go's %q for the strings these messages quote."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_capabilities(field_name: str, caps: tuple[str, ...] | None) -> None:
    for cap in caps or ():
        name = cap.upper()
        if name == "ALL":
            continue
        name = name if name.startswith("CAP_") else "CAP_" + name
        if name not in CAPABILITIES:
            raise InvalidArgument(f"invalid {field_name}: unknown capability: {_quote(name)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPort:
    """One ``nat.PortBinding`` of ``HostConfig.PortBindings``: where on the host a container port is published
    (an empty ``host_ip`` is every address, an empty ``host_port`` any free port)."""

    host_ip: str = ""
    host_port: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointConfig:
    """What ``NetworkingConfig.EndpointsConfig`` (create) and ``EndpointConfig`` (network connect) ask of a
    container's endpoint on one network (moby network.EndpointSettings, the fields a client sets)."""

    ipv4_address: str = ""  # IPAMConfig.IPv4Address: --ip
    ipv6_address: str = ""  # IPAMConfig.IPv6Address: --ip6
    link_local_ips: tuple[str, ...] | None = None
    links: tuple[str, ...] | None = None  # "container:alias"
    aliases: tuple[str, ...] | None = None  # --network-alias
    mac_address: str = ""
    driver_opts: Mapping[str, str] | None = None

    @classmethod
    def from_fields(cls, f: _Fields) -> EndpointConfig:
        ipam = f.nested("IPAMConfig", "network.EndpointIPAMConfig")
        return cls(
            ipv4_address="" if ipam is None else ipam.text("IPv4Address"),
            ipv6_address="" if ipam is None else ipam.text("IPv6Address"),
            link_local_ips=None if ipam is None else ipam.strs("LinkLocalIPs"),
            links=f.strs("Links"),
            aliases=f.strs("Aliases"),
            mac_address=f.text("MacAddress"),
            driver_opts=f.str_map("DriverOpts"),
        )

    @classmethod
    def from_api(cls, obj: Any, where: str = "EndpointSettings") -> EndpointConfig:
        config = cls.from_fields(_Fields(obj, where, "network.EndpointSettings"))
        config.validate()
        return config

    @property
    def is_empty(self) -> bool:
        """Asks nothing: the docker CLI sends such entries for every network it names."""
        return not (self.ipv4_address or self.ipv6_address or self.link_local_ips or self.links
                    or self.aliases or self.mac_address or self.driver_opts)  # fmt: skip

    def validate(self) -> None:
        """moby verifyNetworkingConfig's address checks (20.10)."""
        if self.ipv4_address and not _is_ip(self.ipv4_address, 4):
            raise InvalidArgument(f"invalid IPv4 address: {self.ipv4_address}")
        if self.ipv6_address and not _is_ip(self.ipv6_address, 6):
            raise InvalidArgument(f"invalid IPv6 address: {self.ipv6_address}")
        for address in self.link_local_ips or ():
            if not (_is_ip(address, 4) or _is_ip(address, 6)):
                raise InvalidArgument(f"invalid link-local IP address: {address}")

    def ipam_to_api(self) -> dict[str, Any] | None:
        if not (self.ipv4_address or self.ipv6_address or self.link_local_ips):
            return None
        out: dict[str, Any] = {}
        _put(out, "IPv4Address", self.ipv4_address, omit_empty=True)
        _put(out, "IPv6Address", self.ipv6_address, omit_empty=True)
        _put(out, "LinkLocalIPs", self.link_local_ips, omit_empty=True)
        return out

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"IPAMConfig": self.ipam_to_api()}
        _put(out, "Links", self.links)
        _put(out, "Aliases", self.aliases)
        _put(out, "MacAddress", self.mac_address, omit_empty=True)
        _put(out, "DriverOpts", self.driver_opts)
        return out


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _port_bindings(f: _Fields) -> Mapping[str, tuple[HostPort, ...] | None] | None:
    """``nat.PortMap``: ``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``."""
    value = f.get("PortBindings")
    if value is None:
        return None
    where = f.at("PortBindings")
    if not isinstance(value, dict):
        raise _type_error(value, where, "nat.PortMap")
    out: dict[str, tuple[HostPort, ...] | None] = {}
    for key, entries in value.items():
        if entries is None:
            out[key] = None
            continue
        if not isinstance(entries, list):
            raise _type_error(entries, where, "[]nat.PortBinding")
        bindings = []
        for entry in entries:
            if entry is None:
                bindings.append(HostPort())
                continue
            b = _Fields(entry, "PortBinding." + where.partition(".")[2], "nat.PortBinding")
            bindings.append(HostPort(host_ip=b.text("HostIp"), host_port=b.text("HostPort")))
        out[key] = tuple(bindings)
    return MappingProxyType(out)


def _port_number(text: str, *, ranged: bool) -> bool:
    """go-connections ``nat.ParsePort`` (one port or empty) or, with ``ranged``, ``ParsePortRangeToInt``."""
    if not text:
        return True
    parts = text.split("-", 1) if ranged else [text]
    if not all(p.isascii() and p.isdigit() and int(p) <= 65535 for p in parts):
        return False
    return len(parts) == 1 or int(parts[0]) <= int(parts[1])


def _split_proto_port(raw: str) -> tuple[str, str]:
    """``nat.SplitProtoPort``: ``"80/udp"`` -> (udp, 80); no protocol is tcp."""
    port, sep, proto = raw.partition("/")
    if not port:
        return "", ""
    return (proto or "tcp") if sep else "tcp", port


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    """Engine API ``HostConfig``: how the container sits on the host (moby api/types/container.HostConfig)."""

    binds: tuple[str, ...] | None = None
    container_id_file: str = ""
    log_config: LogConfig = field(default_factory=LogConfig)
    network_mode: str = ""
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    auto_remove: bool = False
    cap_add: tuple[str, ...] | None = None
    cap_drop: tuple[str, ...] | None = None
    cgroupns_mode: str = ""
    group_add: tuple[str, ...] | None = None
    ipc_mode: str = ""
    oom_score_adj: int = 0
    pid_mode: str = ""
    privileged: bool = False
    readonly_rootfs: bool = False
    security_opt: tuple[str, ...] | None = None
    tmpfs: Mapping[str, str] | None = None  # mount point -> options
    uts_mode: str = ""
    userns_mode: str = ""
    shm_size: int = 0
    sysctls: Mapping[str, str] | None = None
    runtime: str = ""
    console_size: tuple[int, int] = (0, 0)
    isolation: str = ""
    resources: Resources = field(default_factory=Resources)
    init: bool | None = None
    port_bindings: Mapping[str, tuple[HostPort, ...] | None] | None = None  # "80/tcp" -> bindings (-p)
    publish_all_ports: bool = False  # -P
    dns: tuple[str, ...] | None = None
    dns_options: tuple[str, ...] | None = None
    dns_search: tuple[str, ...] | None = None
    extra_hosts: tuple[str, ...] | None = None  # "name:ip" (--add-host)
    links: tuple[str, ...] | None = None  # "container:alias" (--link)
    # The create body's NetworkingConfig.EndpointsConfig (network name as the client wrote it -> endpoint).
    # Not a HostConfig field in Docker: ketch keeps it here so that it is stored with the container, under
    # the key "NetworkingConfig", which inspect leaves out. Entries that ask nothing are dropped.
    endpoints_config: Mapping[str, EndpointConfig] | None = None

    @classmethod
    def from_api(
        cls, obj: Any, *, host: HostLimits | None, where: str = "ContainerConfigWrapper.HostConfig"
    ) -> HostConfig:
        config = cls._decode(_Fields(obj, where, "container.HostConfig"))
        config.validate(host)
        return config

    @classmethod
    def _decode(cls, f: _Fields) -> HostConfig:
        log = f.nested("LogConfig", "container.LogConfig")
        restart = f.nested("RestartPolicy", "container.RestartPolicy")
        console = f.get("ConsoleSize")
        if console is not None and not isinstance(console, list):
            raise _type_error(console, f.at("ConsoleSize"), "[2]uint")
        sizes = [_go_int(n, f.at("ConsoleSize"), "uint") for n in (console or [])[:2]] + [0, 0]
        return cls(
            binds=f.strs("Binds"),
            container_id_file=f.text("ContainerIDFile"),
            log_config=LogConfig()
            if log is None
            else LogConfig(type=log.text("Type"), config=log.str_map("Config")),
            network_mode=f.text("NetworkMode"),
            restart_policy=RestartPolicy()
            if restart is None
            else RestartPolicy(
                name=restart.text("Name"), maximum_retry_count=restart.number("MaximumRetryCount", "int")
            ),
            auto_remove=f.flag("AutoRemove"),
            cap_add=f.strslice("CapAdd"),
            cap_drop=f.strslice("CapDrop"),
            cgroupns_mode=f.text("CgroupnsMode"),
            group_add=f.strs("GroupAdd"),
            ipc_mode=f.text("IpcMode"),
            oom_score_adj=f.number("OomScoreAdj", "int"),
            pid_mode=f.text("PidMode"),
            privileged=f.flag("Privileged"),
            readonly_rootfs=f.flag("ReadonlyRootfs"),
            security_opt=f.strs("SecurityOpt"),
            tmpfs=f.str_map("Tmpfs") or None,  # omitempty
            uts_mode=f.text("UTSMode"),
            userns_mode=f.text("UsernsMode"),
            shm_size=f.number("ShmSize"),
            sysctls=f.str_map("Sysctls") or None,  # omitempty
            runtime=f.text("Runtime"),
            console_size=(sizes[0], sizes[1]),
            isolation=f.text("Isolation"),
            resources=Resources.from_fields(f),
            init=f.opt_flag("Init"),
            port_bindings=_port_bindings(f),
            publish_all_ports=f.flag("PublishAllPorts"),
            dns=f.strs("Dns"),
            dns_options=f.strs("DnsOptions"),
            dns_search=f.strs("DnsSearch"),
            extra_hosts=f.strs("ExtraHosts"),
            links=f.strs("Links"),
            endpoints_config=_endpoints_config(f.nested("NetworkingConfig", "network.NetworkingConfig")),
        )

    def validate(self, host: HostLimits | None, *, update: bool = False) -> None:
        """validateHostConfig, verifyPlatformContainerSettings, then the security and log options, in moby's
        order; ``update`` is ``docker update``, which may set a swap limit alone."""
        if self.auto_remove and not self.restart_policy.is_none:
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
        self.restart_policy.validate()
        _check_capabilities("CapAdd", self.cap_add)
        _check_capabilities("CapDrop", self.cap_drop)
        if self.isolation.lower() not in ("", "default"):
            raise InvalidArgument(
                f"Invalid isolation: {_quote(self.isolation)} - linux only supports 'default'"
            )
        self.resources.verify(host, update=update)
        if not _valid_mode(self.ipc_mode, "none", "private", "shareable", "host", container=True):
            raise InvalidArgument(f"invalid IPC mode: {self.ipc_mode}")
        if not _valid_mode(self.pid_mode, "host", container=True):
            raise InvalidArgument(f"invalid PID mode: {self.pid_mode}")
        if self.shm_size < 0:
            raise InvalidArgument("SHM size can not be less than 0")
        if not _valid_mode(self.uts_mode, "host"):
            raise InvalidArgument(f"invalid UTS mode: {self.uts_mode}")
        if not -1000 <= self.oom_score_adj <= 1000:
            raise InvalidArgument(
                f"Invalid value {self.oom_score_adj}, range for oom score adj is [-1000, 1000]"
            )
        for dest in self.tmpfs or {}:
            if os.path.normpath(dest.replace("\\", "/")) in ("/", "//"):
                raise InvalidArgument("invalid specification: destination can't be '/'")
            if not dest.replace("\\", "/").startswith("/"):
                raise InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
        if not _valid_mode(self.cgroupns_mode, "host", "private"):
            raise InvalidArgument(f"invalid cgroup namespace mode: {self.cgroupns_mode}")
        # moby checks these two later in create, when it builds the container
        for opt in self.security_opt or ():
            _check_security_opt(opt)
        self.log_config.validate()
        for key, bindings in (self.port_bindings or {}).items():  # verifyContainerSettings
            if not _port_number(_split_proto_port(key)[1], ranged=False):
                raise InvalidArgument(f"invalid port specification: {_quote(_split_proto_port(key)[1])}")
            for binding in bindings or ():
                if not _port_number(_split_proto_port(binding.host_port)[1], ranged=True):
                    raise InvalidArgument(f"invalid port specification: {_quote(binding.host_port)}")
        for endpoint in (self.endpoints_config or {}).values():
            endpoint.validate()

    def with_create_defaults(
        self,
        *,
        shm_size: int = 64 * 1024 * 1024,
        ipc_mode: str = "private",
        cgroupns_mode: str = "private",
        log_type: str = "json-file",
        runtime: str = "ketch-runtime",
    ) -> HostConfig:
        """What moby's adaptContainerSettings fills in at create: the daemon's defaults, swap at twice the
        memory limit, CPU shares clamped to the kernel's range, and no pids limit for 0 or less."""
        res = self.resources
        shares = res.cpu_shares if res.cpu_shares <= 0 else min(max(res.cpu_shares, 2), 262144)
        swap = res.memory * 2 if res.memory > 0 and res.memory_swap == 0 else res.memory_swap
        pids = res.pids_limit if res.pids_limit is None or res.pids_limit > 0 else None
        oom = False if res.oom_kill_disable is None else res.oom_kill_disable
        log = self.log_config if self.log_config.type else replace(self.log_config, type=log_type)
        return replace(
            self,
            shm_size=self.shm_size or shm_size,
            ipc_mode=self.ipc_mode or ipc_mode,
            cgroupns_mode=self.cgroupns_mode or cgroupns_mode,
            log_config=replace(log, config=log.config if log.config is not None else _frozen({})),
            runtime=self.runtime or runtime,
            resources=replace(
                res, cpu_shares=shares, memory_swap=swap, pids_limit=pids, oom_kill_disable=oom
            ),
        )

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _put(out, "Binds", self.binds)
        _put(out, "ContainerIDFile", self.container_id_file)
        log = self.log_config
        out["LogConfig"] = {"Type": log.type, "Config": None if log.config is None else dict(log.config)}
        _put(out, "NetworkMode", self.network_mode)
        if self.port_bindings is not None:
            out["PortBindings"] = {
                key: None
                if bindings is None
                else [{"HostIp": b.host_ip, "HostPort": b.host_port} for b in bindings]
                for key, bindings in self.port_bindings.items()
            }
        policy = self.restart_policy
        out["RestartPolicy"] = {"Name": policy.name, "MaximumRetryCount": policy.maximum_retry_count}
        _put(out, "AutoRemove", self.auto_remove)
        for key, value in (("CapAdd", self.cap_add), ("CapDrop", self.cap_drop)):
            _put(out, key, value)
        _put(out, "CgroupnsMode", self.cgroupns_mode)
        for key, value in (("Dns", self.dns), ("DnsOptions", self.dns_options), ("DnsSearch", self.dns_search),
                           ("ExtraHosts", self.extra_hosts)):  # fmt: skip
            if value is not None:
                _put(out, key, value)
        _put(out, "GroupAdd", self.group_add)
        _put(out, "IpcMode", self.ipc_mode)
        if self.links is not None:
            _put(out, "Links", self.links)
        _put(out, "OomScoreAdj", self.oom_score_adj)
        _put(out, "PidMode", self.pid_mode)
        _put(out, "Privileged", self.privileged)
        _put(out, "PublishAllPorts", self.publish_all_ports)
        _put(out, "ReadonlyRootfs", self.readonly_rootfs)
        _put(out, "SecurityOpt", self.security_opt)
        _put(out, "Tmpfs", self.tmpfs, omit_empty=True)
        _put(out, "UTSMode", self.uts_mode)
        _put(out, "UsernsMode", self.userns_mode)
        _put(out, "ShmSize", self.shm_size)
        _put(out, "Sysctls", self.sysctls, omit_empty=True)
        _put(out, "Runtime", self.runtime, omit_empty=True)
        _put(out, "ConsoleSize", self.console_size)
        _put(out, "Isolation", self.isolation)
        out.update(self.resources.to_api())
        if self.init is not None:
            out["Init"] = self.init
        if self.endpoints_config:
            out["NetworkingConfig"] = {
                "EndpointsConfig": {name: ep.to_api() for name, ep in self.endpoints_config.items()}
            }
        return out


def _endpoints_config(f: _Fields | None) -> Mapping[str, EndpointConfig] | None:
    """``NetworkingConfig.EndpointsConfig``, checked as moby's verifyNetworkingConfig (Docker 20.10: one network
    at create); entries that ask nothing are dropped, and None stands for no entry left."""
    if f is None:
        return None
    raw = f.get("EndpointsConfig")
    if raw is None:
        return None
    where = f.at("EndpointsConfig")
    if not isinstance(raw, dict):
        raise _type_error(raw, where, "map[string]*network.EndpointSettings")
    if len(raw) > 1:
        raise InvalidArgument(f"Container cannot be connected to network endpoints: {', '.join(raw)}")
    out: dict[str, EndpointConfig] = {}
    for name, value in raw.items():
        if value is None:
            raise InvalidArgument(f"no EndpointSettings for {name}")
        endpoint = EndpointConfig.from_fields(_Fields(value, where, "network.EndpointSettings"))
        endpoint.validate()
        if not endpoint.is_empty:
            out[name] = endpoint
    return MappingProxyType(out) if out else None


def parse_create_body(obj: Any, *, host: HostLimits | None) -> tuple[ContainerConfig, HostConfig]:
    """The body of ``POST /containers/create``: Config's keys at the top level, plus ``HostConfig``.

    Errors come in moby's order: JSON types first, then runconfig's cross-checks of the two halves, then
    Config's values, then HostConfig's."""
    top = _Fields(obj, "ContainerConfigWrapper", "runconfig.ContainerConfigWrapper")
    config = ContainerConfig._decode(top)
    raw_host = top.nested("HostConfig", "container.HostConfig")
    host_config = HostConfig() if raw_host is None else HostConfig._decode(raw_host)
    networking = top.nested("NetworkingConfig", "network.NetworkingConfig")
    if networking is not None:
        host_config = replace(host_config, endpoints_config=_endpoints_config(networking))
    _check_modes(config, host_config)
    config.validate()
    host_config.validate(host)
    return config, host_config


def _check_modes(config: ContainerConfig, host_config: HostConfig) -> None:
    """runconfig validateNetMode and validateIsolation, for the modes ketch has."""
    kind, _, target = host_config.network_mode.partition(":")
    if kind == "container":
        if not target:
            raise InvalidArgument("Invalid network mode: invalid container format container:<name|id>")
        if config.hostname:
            raise InvalidArgument("conflicting options: hostname and the network mode")
        if host_config.links:
            raise InvalidArgument("conflicting options: container type network can't be used with links. This "
                                  "would result in undefined behavior")  # fmt: skip
        if host_config.dns:
            raise InvalidArgument("conflicting options: dns and the network mode")
        if host_config.extra_hosts:
            raise InvalidArgument("conflicting options: custom host-to-IP mapping and the network mode")
        if host_config.port_bindings or host_config.publish_all_ports:
            raise InvalidArgument("conflicting options: port publishing and the container type network mode")
        if config.exposed_ports:
            raise InvalidArgument("conflicting options: port exposing and the container type network mode")
    if host_config.uts_mode == "host" and config.hostname:
        raise InvalidArgument("conflicting options: hostname and the UTS mode")
    if host_config.network_mode == "host" and host_config.links:
        raise InvalidArgument("conflicting options: host type networking can't be used with links. This would "
                              "result in undefined behavior")  # fmt: skip
    if host_config.isolation.lower() not in ("", "default"):
        raise InvalidArgument(
            f"Invalid isolation: {_quote(host_config.isolation)} - linux only supports 'default'"
        )


# ---- state --------------------------------------------------------------------------------------------------


class Status(enum.StrEnum):
    """The one lifecycle enum; engine/lifecycle.py holds the moves between its values."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"  # exited; the restart policy starts it again after a back-off
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"  # a removal failed half-way; only removing it again is left


def format_time(ns: int) -> str:
    """Go's RFC3339Nano in UTC, as Docker prints times: fraction without trailing zeros; 0 is Go's zero time."""
    if ns == 0:
        return ZERO_TIME
    seconds, nanos = divmod(ns, 10**9)
    fraction = f"{nanos:09d}".rstrip("0")
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (f".{fraction}" if fraction else "") + "Z"
    )


_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def parse_time(text: str) -> int:
    """The inverse of :func:`format_time` (any zone offset); InvalidArgument for anything else."""
    if text == ZERO_TIME:
        return 0
    m = _TIME.fullmatch(text)
    if m is None:
        raise InvalidArgument(f"invalid time {text!r}: want RFC 3339, like {ZERO_TIME}")
    fields = tuple(int(m.group(i)) for i in range(1, 7))
    seconds = calendar.timegm((*fields, 0, 0, 0))
    zone = m.group(8)
    if zone != "Z":
        seconds -= (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 10**9 + int((m.group(7) or "0").ljust(9, "0"))


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthResult:
    start: int  # unix ns
    end: int
    exit_code: int
    output: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    status: str = "starting"  # "starting", "healthy", "unhealthy"
    failing_streak: int = 0
    log: tuple[HealthResult, ...] = ()  # the last five probes, oldest first

    def to_api(self) -> dict[str, Any]:
        return {
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": [
                {"Start": format_time(r.start), "End": format_time(r.end), "ExitCode": r.exit_code,
                 "Output": r.output}
                for r in self.log
            ],
        }  # fmt: skip

    @classmethod
    def from_api(cls, obj: Any) -> Health:
        f = _Fields(obj, "Health", "container.Health")
        return cls(
            status=f.text("Status"),
            failing_streak=f.number("FailingStreak", "int"),
            log=tuple(
                HealthResult(start=parse_time(r.text("Start")), end=parse_time(r.text("End")),
                             exit_code=r.number("ExitCode", "int"), output=r.text("Output"))
                for r in f.objects("Log", "*container.HealthcheckResult") or []
            ),
        )  # fmt: skip


@dataclass(slots=True, kw_only=True)
class ContainerState:
    """What the container is doing: one row of ``container_state``. Mutable, but engine/lifecycle.py builds
    a new one per transition so that a failed database write leaves the old one intact."""

    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    started_at: int = 0  # unix ns of the last start; 0: never started
    finished_at: int = 0  # unix ns of the last exit
    oom_killed: bool = False
    error: str = ""
    restart_count: int = 0  # starts by the restart policy since the last start by a user
    health: Health | None = None
    manually_stopped: bool = False  # a user stopped it: "unless-stopped" and "always" must not restart it


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerRecord:
    """One row of ``containers``: everything fixed at create (``docker update`` replaces resources)."""

    id: str
    name: str  # with the leading slash
    image_id: str  # "sha256:<hex>" of the image config
    created_at: int  # unix ns
    config: ContainerConfig
    host_config: HostConfig

    @property
    def labels(self) -> Mapping[str, str]:
        return self.config.labels or {}

"""OCI linux.resources (a config.json fragment) checked and normalised once for the v1 and v2 writers.

Like runc, a zero memory/cpu/blkio value means "not set" (runc's internal config cannot tell 0 from
absent), while pids.limit follows the current runtime-spec guidance: absent leaves pids.max alone, 0 is a
real limit and a negative value means "max".
"""

from __future__ import annotations

from ketch.common.errors import InvalidArgument
from ketch.runtime.cgroups.devices import Rule, parse_rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHERE = "linux.resources"
THROTTLES = (
    ("throttleReadBpsDevice", "read_bps", "rbps"),
    ("throttleWriteBpsDevice", "write_bps", "wbps"),
    ("throttleReadIOPSDevice", "read_iops", "riops"),
    ("throttleWriteIOPSDevice", "write_iops", "wiops"),
)


class WeightDevice:
    __slots__ = ("leaf_weight", "major", "minor", "weight")

    def __init__(self, major: int, minor: int, weight: int, leaf_weight: int) -> None:
        self.major = major
        self.minor = minor
        self.weight = weight
        self.leaf_weight = leaf_weight


class Resources:
    """Every attribute is None (or empty) when the config does not ask for it."""

    def __init__(self) -> None:
        self.memory_limit: int | None = None
        self.memory_reservation: int | None = None
        self.memory_swap: int | None = None
        self.swappiness: int | None = None
        self.disable_oom_killer = False
        self.cpu_shares: int | None = None
        self.cpu_quota: int | None = None
        self.cpu_period: int | None = None
        self.cpu_burst: int | None = None
        self.rt_runtime: int | None = None
        self.rt_period: int | None = None
        self.cpu_idle: int | None = None
        self.cpus: str | None = None
        self.mems: str | None = None
        self.pids_limit: int | None = None
        self.blkio_weight: int | None = None
        self.blkio_leaf_weight: int | None = None
        self.weight_devices: list[WeightDevice] = []
        # OCI throttle key -> [(major, minor, rate)]
        self.throttle: dict[str, list[tuple[int, int, int]]] = {}
        self.hugepages: list[tuple[str, int]] = []
        self.rdma: dict[str, tuple[int | None, int | None]] = {}
        self.devices: list[Rule] | None = None  # None: leave the device rules alone
        self.unified: dict[str, str] = {}

    def needs(self) -> dict[str, str]:
        """v1 controller -> the config field that needs it."""
        need: dict[str, str] = {}
        if (
            self.memory_limit is not None
            or self.memory_reservation is not None
            or self.memory_swap is not None
            or self.swappiness is not None
            or self.disable_oom_killer
        ):
            need["memory"] = f"{_WHERE}.memory"
        if any(
            v is not None
            for v in (
                self.cpu_shares,
                self.cpu_quota,
                self.cpu_period,
                self.cpu_burst,
                self.rt_runtime,
                self.rt_period,
                self.cpu_idle,
            )
        ):
            need["cpu"] = f"{_WHERE}.cpu"
        if self.cpus is not None or self.mems is not None:
            need["cpuset"] = f"{_WHERE}.cpu.cpus/mems"
        if self.pids_limit is not None:
            need["pids"] = f"{_WHERE}.pids"
        if (
            self.blkio_weight is not None
            or self.blkio_leaf_weight is not None
            or self.weight_devices
            or any(self.throttle.values())
        ):
            need["blkio"] = f"{_WHERE}.blockIO"
        if self.hugepages:
            need["hugetlb"] = f"{_WHERE}.hugepageLimits"
        if self.rdma:
            need["rdma"] = f"{_WHERE}.rdma"
        if self.devices is not None:
            need["devices"] = f"{_WHERE}.devices"
        return need


def _section(res: dict[str, Any], key: str) -> dict[str, Any]:
    value = res.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{_WHERE}.{key} must be an object, not {type(value).__name__}")
    return value


def _int(section: dict[str, Any], key: str, where: str, *, minimum: int | None = None) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{where}.{key} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidArgument(f"{where}.{key} must be at least {minimum}, not {value}")
    return value


def _nonzero(value: int | None) -> int | None:
    return None if value == 0 else value


def _list(section: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = section.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidArgument(f"{where}.{key} must be a list of objects")
    return value


def parse(res: dict[str, Any] | None) -> Resources:
    r = Resources()
    if not res:
        return r
    if not isinstance(res, dict):
        raise InvalidArgument(f"{_WHERE} must be an object, not {type(res).__name__}")

    where = f"{_WHERE}.memory"
    mem = _section(res, "memory")
    r.memory_limit = _nonzero(_int(mem, "limit", where, minimum=-1))
    r.memory_reservation = _nonzero(_int(mem, "reservation", where, minimum=-1))
    r.memory_swap = _nonzero(_int(mem, "swap", where, minimum=-1))
    swappiness = _int(mem, "swappiness", where, minimum=-1)
    if swappiness is not None and swappiness > 100:
        raise InvalidArgument(f"invalid value:{swappiness}. valid memory swappiness range is 0-100 ({where})")
    r.swappiness = None if swappiness == -1 else swappiness
    disable = mem.get("disableOOMKiller")
    if disable is not None and not isinstance(disable, bool):
        raise InvalidArgument(f"{where}.disableOOMKiller must be a boolean, not {disable!r}")
    r.disable_oom_killer = bool(disable)
    # memory.kernel and memory.kernelTCP are deprecated and ignored, as runc does.

    where = f"{_WHERE}.cpu"
    cpu = _section(res, "cpu")
    r.cpu_shares = _nonzero(_int(cpu, "shares", where, minimum=0))
    r.cpu_quota = _nonzero(_int(cpu, "quota", where))
    r.cpu_period = _nonzero(_int(cpu, "period", where, minimum=0))
    r.cpu_burst = _int(cpu, "burst", where, minimum=0)
    r.rt_runtime = _nonzero(_int(cpu, "realtimeRuntime", where))
    r.rt_period = _nonzero(_int(cpu, "realtimePeriod", where, minimum=0))
    r.cpu_idle = _int(cpu, "idle", where)
    for key in ("cpus", "mems"):
        value = cpu.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidArgument(f"{where}.{key} must be a string, not {value!r}")
        setattr(r, key, value)

    r.pids_limit = _int(_section(res, "pids"), "limit", f"{_WHERE}.pids")

    where = f"{_WHERE}.blockIO"
    bio = _section(res, "blockIO")
    r.blkio_weight = _nonzero(_int(bio, "weight", where, minimum=0))
    r.blkio_leaf_weight = _nonzero(_int(bio, "leafWeight", where, minimum=0))
    for i, wd in enumerate(_list(bio, "weightDevice", where)):
        w = f"{where}.weightDevice[{i}]"
        r.weight_devices.append(
            WeightDevice(
                _req_int(wd, "major", w),
                _req_int(wd, "minor", w),
                _int(wd, "weight", w, minimum=0) or 0,
                _int(wd, "leafWeight", w, minimum=0) or 0,
            )
        )
    for key, _v1, _v2 in THROTTLES:
        entries = []
        for i, td in enumerate(_list(bio, key, where)):
            w = f"{where}.{key}[{i}]"
            entries.append((_req_int(td, "major", w), _req_int(td, "minor", w), _req_int(td, "rate", w)))
        if entries:
            r.throttle[key] = entries

    for i, hp in enumerate(_list(res, "hugepageLimits", _WHERE)):
        w = f"{_WHERE}.hugepageLimits[{i}]"
        size = hp.get("pageSize")
        if not isinstance(size, str) or not size or "/" in size:
            raise InvalidArgument(f'{w}.pageSize must be a page size like "2MB", not {size!r}')
        r.hugepages.append((size, _req_int(hp, "limit", w)))

    for name, entry in _section(res, "rdma").items():
        w = f"{_WHERE}.rdma.{name}"
        if not isinstance(entry, dict) or not name or "/" in name or " " in name:
            raise InvalidArgument(f"{w} must be an object keyed by an rdma device name")
        r.rdma[name] = (_int(entry, "hcaHandles", w, minimum=0), _int(entry, "hcaObjects", w, minimum=0))

    if res.get("devices") is not None:
        r.devices = parse_rules(res["devices"], f"{_WHERE}.devices")

    unified = res.get("unified")
    if unified:
        if not isinstance(unified, dict):
            raise InvalidArgument(f"{_WHERE}.unified must be an object of file name -> value")
        for key, value in unified.items():
            if not isinstance(value, str):
                raise InvalidArgument(f"{_WHERE}.unified[{key!r}] must be a string, not {value!r}")
            if not key or "/" in key or key in (".", ".."):
                raise InvalidArgument(f"unified resource {key!r} must be a file name (no slashes)")
        r.unified = dict(unified)
    # network (net_cls/net_prio) is ignored.
    return r


def _req_int(section: dict[str, Any], key: str, where: str) -> int:
    value = _int(section, key, where, minimum=0)
    if value is None:
        raise InvalidArgument(f"{where}.{key} is required")
    return value

"""Statistics shaped like the "data" object of runc's `events --stats` (runc types/events.go).

Zero values are left out where runc's JSON tags say omitempty, so clients written against runc's output
read ours the same way. Missing files (controller not mounted, older kernel) give zeros, not errors.
"""

from __future__ import annotations

import os

from ketch.runtime.cgroups import fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_UINT64 = (1 << 64) - 1
_NS_PER_TICK = 1_000_000_000 // 100  # cpuacct.stat counts USER_HZ (100 on Linux) ticks
_EVENTS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")


def _omit_zero(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if not d.get(key):
            d.pop(key, None)
    return d


def _memory_entry(usage: int, max_usage: int, failcnt: int, limit: int) -> dict[str, Any]:
    return _omit_zero({"limit": limit, "usage": usage, "max": max_usage, "failcnt": failcnt}, "usage", "max")


def _cpu(
    total: int,
    percpu: list[int],
    pkernel: list[int],
    puser: list[int],
    kernel: int,
    user: int,
    throttle: tuple[int, int, int],
) -> dict[str, Any]:
    usage = _omit_zero(
        {
            "total": total,
            "percpu": percpu,
            "percpu_kernel": pkernel,
            "percpu_user": puser,
            "kernel": kernel,
            "user": user,
        },
        "total",
        "percpu",
        "percpu_kernel",
        "percpu_user",
    )
    throttling = _omit_zero(
        {"periods": throttle[0], "throttledPeriods": throttle[1], "throttledTime": throttle[2]},
        "periods",
        "throttledPeriods",
        "throttledTime",
    )
    return {"usage": usage, "throttling": throttling}


def _pids(current: int, limit: int) -> dict[str, Any]:
    return _omit_zero({"current": current, "limit": limit}, "current", "limit")


def _blkio_entry(major: int, minor: int, op: str, value: int) -> dict[str, Any]:
    return _omit_zero(
        {"major": major, "minor": minor, "op": op, "value": value}, "major", "minor", "op", "value"
    )


def _cpu_list(text: str | None) -> list[int]:
    """ "0-3,8" -> [0, 1, 2, 3, 8]"""
    out: list[int] = []
    for part in (text or "").strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            out.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            continue
    return out


def _empty() -> dict[str, Any]:
    return {
        "cpu": _cpu(0, [], [], [], 0, 0, (0, 0, 0)),
        "cpuset": {},
        "memory": {
            "usage": _memory_entry(0, 0, 0, 0),
            "swap": _memory_entry(0, 0, 0, 0),
            "kernel": _memory_entry(0, 0, 0, 0),
            "kernelTCP": _memory_entry(0, 0, 0, 0),
            "event_count": {},
        },
        "pids": {},
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": None,
    }


def _cpuset(d: str) -> dict[str, Any]:
    return _omit_zero(
        {"cpus": _cpu_list(fs.read_opt(d, "cpuset.cpus")), "mems": _cpu_list(fs.read_opt(d, "cpuset.mems"))},
        "cpus",
        "mems",
    )


# -- cgroup v1 ----------------------------------------------------------------------------------------


def _v1_blkio_file(d: str, name: str) -> list[dict[str, Any]] | None:
    text = fs.read_opt(d, name)
    if text is None:
        return None
    entries: list[dict[str, Any]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and ":" in fields[0]:
            major, _, minor = fields[0].partition(":")
            try:
                entries.append(_blkio_entry(int(major), int(minor), fields[1], int(fields[2])))
            except ValueError:
                continue
        elif len(fields) == 2 and ":" in fields[0]:  # sectors / time files: "8:0 123"
            major, _, minor = fields[0].partition(":")
            try:
                entries.append(_blkio_entry(int(major), int(minor), "", int(fields[1])))
            except ValueError:
                continue
    return entries


# Like runc: the first group whose first file exists and has entries wins (BFQ, CFQ, then throttling).
_V1_BLKIO_GROUPS = (
    (
        ("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
        ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive"),
    ),
    (
        ("blkio.io_serviced_recursive", "ioServicedRecursive"),
        ("blkio.io_service_bytes_recursive", "ioServiceBytesRecursive"),
        ("blkio.io_queued_recursive", "ioQueueRecursive"),
        ("blkio.io_service_time_recursive", "ioServiceTimeRecursive"),
        ("blkio.io_wait_time_recursive", "ioWaitTimeRecursive"),
        ("blkio.io_merged_recursive", "ioMergedRecursive"),
        ("blkio.time_recursive", "ioTimeRecursive"),
        ("blkio.sectors_recursive", "sectorsRecursive"),
    ),
    (
        ("blkio.throttle.io_serviced_recursive", "ioServicedRecursive"),
        ("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive"),
    ),
    (
        ("blkio.throttle.io_serviced", "ioServicedRecursive"),
        ("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive"),
    ),
)


def _v1_blkio(d: str) -> dict[str, Any]:
    for group in _V1_BLKIO_GROUPS:
        first = _v1_blkio_file(d, group[0][0])
        if not first:
            continue
        out: dict[str, Any] = {group[0][1]: first}
        for name, key in group[1:]:
            entries = _v1_blkio_file(d, name)
            if entries:
                out[key] = entries
        return out
    return {}


def _v1_memory_entry(d: str, prefix: str) -> dict[str, Any]:
    return _memory_entry(
        fs.uint(fs.read_opt(d, f"{prefix}.usage_in_bytes")),
        fs.uint(fs.read_opt(d, f"{prefix}.max_usage_in_bytes")),
        fs.uint(fs.read_opt(d, f"{prefix}.failcnt")),
        fs.uint(fs.read_opt(d, f"{prefix}.limit_in_bytes")),
    )


def _hugetlb_sizes(d: str) -> list[str]:
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return sorted({n.split(".")[1] for n in names if n.startswith("hugetlb.") and n.count(".") >= 2})


def v1(dirs: dict[str, str]) -> dict[str, Any]:
    out = _empty()
    d = dirs.get("cpuacct")
    if d:
        percpu = [int(x) for x in (fs.read_opt(d, "cpuacct.usage_percpu") or "").split()]
        pkernel: list[int] = []
        puser: list[int] = []
        for line in (fs.read_opt(d, "cpuacct.usage_all") or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                puser.append(int(fields[1]))
                pkernel.append(int(fields[2]))
        ticks = fs.keyed(fs.read_opt(d, "cpuacct.stat"))
        cpu_stat = fs.keyed(fs.read_opt(dirs["cpu"], "cpu.stat")) if "cpu" in dirs else {}
        out["cpu"] = _cpu(
            fs.uint(fs.read_opt(d, "cpuacct.usage")),
            percpu,
            pkernel,
            puser,
            ticks.get("system", 0) * _NS_PER_TICK,
            ticks.get("user", 0) * _NS_PER_TICK,
            (
                cpu_stat.get("nr_periods", 0),
                cpu_stat.get("nr_throttled", 0),
                cpu_stat.get("throttled_time", 0),
            ),
        )
    d = dirs.get("cpuset")
    if d:
        out["cpuset"] = _cpuset(d)
    d = dirs.get("memory")
    if d:
        raw = fs.keyed(fs.read_opt(d, "memory.stat"))
        oom = fs.keyed(fs.read_opt(d, "memory.oom_control"))
        usage = _v1_memory_entry(d, "memory")
        out["memory"] = _omit_zero(
            {
                "cache": raw.get("cache", 0),
                "usage": usage,
                "swap": _v1_memory_entry(d, "memory.memsw"),
                "kernel": _v1_memory_entry(d, "memory.kmem"),
                "kernelTCP": _v1_memory_entry(d, "memory.kmem.tcp"),
                "raw": raw,
                "event_count": {"max": usage["failcnt"], "oom_kill": oom.get("oom_kill", 0)},
            },
            "cache",
            "raw",
        )
    d = dirs.get("pids")
    if d:
        out["pids"] = _pids(fs.uint(fs.read_opt(d, "pids.current")), fs.uint(fs.read_opt(d, "pids.max")))
    d = dirs.get("blkio")
    if d:
        out["blkio"] = _v1_blkio(d)
    d = dirs.get("hugetlb")
    if d:
        for size in _hugetlb_sizes(d):
            out["hugetlb"][size] = _omit_zero(
                {
                    "usage": fs.uint(fs.read_opt(d, f"hugetlb.{size}.usage_in_bytes")),
                    "max": fs.uint(fs.read_opt(d, f"hugetlb.{size}.max_usage_in_bytes")),
                    "failcnt": fs.uint(fs.read_opt(d, f"hugetlb.{size}.failcnt")),
                },
                "usage",
                "max",
            )
    return out


# -- cgroup v2 ----------------------------------------------------------------------------------------


def _v2_io(d: str) -> dict[str, Any]:
    tables: dict[str, list[dict[str, Any]]] = {}
    names = {
        "rbytes": ("ioServiceBytesRecursive", "Read"),
        "wbytes": ("ioServiceBytesRecursive", "Write"),
        "rios": ("ioServicedRecursive", "Read"),
        "wios": ("ioServicedRecursive", "Write"),
    }
    for line in (fs.read_opt(d, "io.stat") or "").splitlines():
        fields = line.split()
        if not fields or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        for item in fields[1:]:
            key, _, value = item.partition("=")
            if key not in names:
                continue
            table, op = names[key]
            try:
                tables.setdefault(table, []).append(_blkio_entry(int(major), int(minor), op, int(value)))
            except ValueError:
                continue
    return tables


def v2(d: str) -> dict[str, Any]:
    out = _empty()
    cpu_stat = fs.keyed(fs.read_opt(d, "cpu.stat"))
    out["cpu"] = _cpu(
        cpu_stat.get("usage_usec", 0) * 1000,
        [],
        [],
        [],
        cpu_stat.get("system_usec", 0) * 1000,
        cpu_stat.get("user_usec", 0) * 1000,
        (
            cpu_stat.get("nr_periods", 0),
            cpu_stat.get("nr_throttled", 0),
            cpu_stat.get("throttled_usec", 0) * 1000,
        ),
    )
    out["cpuset"] = _cpuset(d)
    if fs.exists(d, "memory.current"):
        raw = fs.keyed(fs.read_opt(d, "memory.stat"))
        events = fs.keyed(fs.read_opt(d, "memory.events"))
        usage = fs.uint(fs.read_opt(d, "memory.current"))
        limit = fs.uint(fs.read_opt(d, "memory.max"), max_value=MAX_UINT64)
        swap_limit = fs.uint(fs.read_opt(d, "memory.swap.max"), max_value=MAX_UINT64)
        # v1 reported swap as memory+swap; runc keeps that meaning on v2.
        if swap_limit != MAX_UINT64:
            swap_limit = min(swap_limit + limit, MAX_UINT64)
        out["memory"] = _omit_zero(
            {
                "cache": raw.get("file", 0),
                "usage": _memory_entry(
                    usage, fs.uint(fs.read_opt(d, "memory.peak")), events.get("max", 0), limit
                ),
                "swap": _memory_entry(
                    fs.uint(fs.read_opt(d, "memory.swap.current")) + usage,
                    0,
                    fs.keyed(fs.read_opt(d, "memory.swap.events")).get("max", 0),
                    swap_limit,
                ),
                "kernel": _memory_entry(0, 0, 0, 0),
                "kernelTCP": _memory_entry(0, 0, 0, 0),
                "raw": raw,
                "event_count": {k: events[k] for k in _EVENTS if k in events},
            },
            "cache",
            "raw",
        )
    if fs.exists(d, "pids.current"):
        out["pids"] = _pids(fs.uint(fs.read_opt(d, "pids.current")), fs.uint(fs.read_opt(d, "pids.max")))
    out["blkio"] = _v2_io(d)
    for size in _hugetlb_sizes(d):
        out["hugetlb"][size] = _omit_zero(
            {
                "usage": fs.uint(fs.read_opt(d, f"hugetlb.{size}.current")),
                "failcnt": fs.keyed(fs.read_opt(d, f"hugetlb.{size}.events")).get("max", 0),
            },
            "usage",
        )
    return out

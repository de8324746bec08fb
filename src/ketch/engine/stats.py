"""Docker's stats object (``GET /containers/{id}/stats``) from the runtime's runc-style ``events --stats`` data."""

from __future__ import annotations

import os
import time
from typing import Any

from ketch.engine.model import HostConfig, format_time

__all__ = ["docker_stats"]


def _system_cpu_ns() -> int:
    """Sum of the host's CPU times in nanoseconds, from /proc/stat (Docker's system_cpu_usage)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:8]
    except OSError:
        return 0
    ticks = os.sysconf("SC_CLK_TCK") or 100
    return sum(int(x) for x in fields) * (10**9 // ticks)


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def docker_stats(
    container_id: str, name: str, raw: dict[str, Any], previous: dict[str, Any] | None, host: HostConfig
) -> dict[str, Any]:
    cpu = raw.get("cpu", {})
    usage = cpu.get("usage", {})
    throttling = cpu.get("throttling", {})
    memory = raw.get("memory", {})
    mem_usage = memory.get("usage", {})
    raw_mem = memory.get("raw", {}) or memory.get("stats", {})
    pids = raw.get("pids", {})
    online = len(usage.get("percpu") or []) or os.cpu_count() or 1
    limit = mem_usage.get("limit", 0)
    machine = _machine_memory()
    if machine and (
        not limit or limit > machine
    ):  # moby: no limit (or a larger one) reads as the host's memory
        limit = machine
    cpu_stats = {
        "cpu_usage": {
            "total_usage": usage.get("total", 0),
            "percpu_usage": usage.get("percpu") or None,
            "usage_in_kernelmode": usage.get("kernel", 0),
            "usage_in_usermode": usage.get("user", 0),
        },
        "system_cpu_usage": _system_cpu_ns(),
        "online_cpus": online,
        "throttling_data": {
            "periods": throttling.get("periods", 0),
            "throttled_periods": throttling.get("throttledPeriods", 0),
            "throttled_time": throttling.get("throttledTime", 0),
        },
    }
    empty_cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                 "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}  # fmt: skip
    blkio = raw.get("blkio", {})

    def entries(key: str) -> list[dict[str, Any]] | None:
        items = blkio.get(key) or []
        return [{"major": e.get("major", 0), "minor": e.get("minor", 0), "op": e.get("op", ""),
                 "value": e.get("value", 0)} for e in items] or None  # fmt: skip

    memory_stats: dict[str, Any] = {"usage": mem_usage.get("usage", 0)}
    # max_usage and failcnt exist on cgroup v1 only, and Go's omitempty leaves out zeros
    for key, raw_key in (("max_usage", "max"), ("failcnt", "failcnt")):
        if mem_usage.get(raw_key):
            memory_stats[key] = mem_usage[raw_key]
    memory_stats["stats"] = {k: v for k, v in raw_mem.items() if isinstance(v, int)}
    memory_stats["limit"] = limit
    return {
        "read": format_time(time.time_ns()),
        "preread": previous["read"] if previous else "0001-01-01T00:00:00Z",
        "pids_stats": {
            "current": pids.get("current", 0),
            **({"limit": pids["limit"]} if pids.get("limit") else {}),
        },
        "blkio_stats": {
            "io_service_bytes_recursive": entries("ioServiceBytesRecursive"),
            "io_serviced_recursive": entries("ioServicedRecursive"),
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_stats,
        "precpu_stats": previous["cpu_stats"] if previous else empty_cpu,
        "memory_stats": memory_stats,
        "name": name,
        "id": container_id,
    }

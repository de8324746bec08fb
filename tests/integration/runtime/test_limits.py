"""Resource limits enforced by the kernel: memory (with the OOM kill visible), pids, cpu."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.integration.runtime.conftest import Runtime

pytestmark = pytest.mark.root

MEMORY_FILE = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"


def test_memory_limit_and_oom_kill(rt: Runtime, unique_id: str) -> None:
    limit = 32 * 1024 * 1024
    bundle = rt.bundle(
        ["sh", "-c", f"{MEMORY_FILE}; echo start; x=$(head -c 200m /dev/zero | tr '\\0' a); echo survived"],
        linux={"resources": {"memory": {"limit": limit, "swap": limit}}},
    )
    proc = rt.run(bundle, unique_id, "--keep")
    lines = proc.stdout.split()
    assert lines[0] == str(limit)
    assert "survived" not in proc.stdout
    # the shell's command substitution child was OOM-killed; the kernel's counter says so
    events = json.loads(rt("events", "--stats", unique_id, check=True).stdout)
    memory = events["data"]["memory"]
    oom_kills = memory.get("event_count", {}).get("oom_kill", memory.get("oom_kill", 0))
    assert oom_kills >= 1, events
    rt("delete", unique_id, check=True)


def test_pids_limit_stops_fork_loop(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(
        [
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
            "for i in $(seq 1 30); do sleep 2 & echo $i > /tmp/started; done",
        ],
        linux={"resources": {"pids": {"limit": 10}}},
    )
    proc = rt.run(bundle, unique_id)
    assert proc.stdout.split()[0] == "10"
    # busybox sh gives up at the first refused fork; the shell itself is one of the 10 tasks
    assert "can't fork" in proc.stderr
    assert int((bundle / "rootfs/tmp/started").read_text()) <= 9


def test_cpu_settings_written(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(
        [
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max",
        ],
        linux={"resources": {"cpu": {"shares": 512, "quota": 50000, "period": 100000}}},
    )
    out = rt.run(bundle, unique_id).stdout.split()
    assert out in (["512", "50000", "100000"], ["50000", "100000"])


def test_devices_cgroup_denies_unlisted(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    # /dev/loop-control (10:237) is created but not allowed: mknod works (runc allows `c *:* m`), open fails
    bundle = rt.bundle(
        ["sh", "-c", "mknod /tmp/lc c 10 237 && cat /tmp/lc; echo rc=$?; head -c 1 /dev/zero | wc -c"],
    )
    proc = rt.run(bundle, unique_id)
    assert "rc=1" in proc.stdout and "Operation not permitted" in proc.stderr
    assert proc.stdout.split()[-1] == "1"

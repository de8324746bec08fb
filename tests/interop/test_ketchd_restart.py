"""ketchd can die (SIGKILL) and come back without its containers noticing.

20 containers: some with ``--restart always``, some writing a numbered line every 50 ms, two that exit while
no daemon is running. After SIGKILL and a new start of ketchd: the running ones run on with the same pids,
their logs have no gap (the monitors kept writing), ``ps`` lists what runs, the container that exited shows
its real exit code, and the ``always`` one that exited was started again by its policy.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.interop.ketchd import Ketchd

pytestmark = pytest.mark.interop

IMAGE = "busybox:ketch"
COUNTER = "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"


@pytest.fixture
def daemon(busybox_tar: Path) -> Iterator[Ketchd]:
    d = Ketchd()
    try:
        d.start()
        d.ok("import", str(busybox_tar), IMAGE)
        yield d
    finally:
        d.cleanup()


def _inspect(d: Ketchd, name: str) -> dict[str, object]:
    state: dict[str, object] = json.loads(d.ok("inspect", name))[0]
    return state


def _numbers(text: str) -> list[int]:
    return [int(line) for line in text.split()]


def test_containers_survive_sigkill_of_ketchd(daemon: Ketchd) -> None:
    d = daemon
    names: dict[str, list[str]] = {"always": [], "counter": [], "plain": []}
    for n in range(5):
        d.ok("run", "-d", "--name", f"always{n}", "--restart", "always", IMAGE, "sleep", "1000")
        names["always"].append(f"always{n}")
    for n in range(10):
        d.ok("run", "-d", "--name", f"counter{n}", IMAGE, "sh", "-c", COUNTER)
        names["counter"].append(f"counter{n}")
    for n in range(3):
        d.ok("run", "-d", "--name", f"plain{n}", IMAGE, "sleep", "1000")
        names["plain"].append(f"plain{n}")
    # These two exit about 3 s from now, while no ketchd is running.
    d.ok("run", "-d", "--name", "exits", IMAGE, "sh", "-c", "sleep 3; exit 5")
    d.ok("run", "-d", "--name", "comeback", "--restart", "always", IMAGE, "sh", "-c", "sleep 3; exit 3")
    long_running = [n for group in names.values() for n in group]
    pids = {name: _inspect(d, name)["State"]["Pid"] for name in long_running}  # type: ignore[index]
    assert all(isinstance(p, int) and p > 0 for p in pids.values())
    first_restarts = _inspect(d, "comeback")["RestartCount"]

    d.kill()
    time.sleep(4.5)  # the two short ones exit meanwhile; the counters go on writing their logs
    for name, pid in pids.items():
        assert os.path.exists(f"/proc/{pid}"), f"{name} (pid {pid}) died with ketchd"
    d.start()

    running = set(d.ok("ps", "--format", "{{.Names}}").split())
    assert set(long_running) <= running
    for name, pid in pids.items():
        state = _inspect(d, name)["State"]
        assert state["Running"] is True and state["Pid"] == pid, (name, state)  # type: ignore[index]
    exited = _inspect(d, "exits")["State"]
    assert exited["Status"] == "exited" and exited["ExitCode"] == 5, exited  # type: ignore[index]
    assert "exits" not in running
    deadline = time.monotonic() + 10
    while True:
        comeback = _inspect(d, "comeback")
        if comeback["RestartCount"] > first_restarts and comeback["State"]["Running"]:  # type: ignore[index,operator]
            break
        assert time.monotonic() < deadline, f"the always policy did not restart it: {comeback['State']}"
        time.sleep(0.2)

    # The logs kept growing while no daemon ran, without a gap, and keep growing now.
    seen = {}
    for name in names["counter"]:
        seen[name] = _numbers(d.ok("logs", name))
        assert seen[name] == list(range(len(seen[name]))) and len(seen[name]) > 90, (name, seen[name][-5:])
    time.sleep(0.5)
    first = names["counter"][0]
    after = _numbers(d.ok("logs", first))
    assert len(after) > len(seen[first]) and after == list(range(len(after)))

    # The reattached daemon still controls them.
    d.ok("stop", "-t", "1", "counter0")
    assert _inspect(d, "counter0")["State"]["Status"] == "exited"  # type: ignore[index]

"""ketch.runtime.cgroups on the real host's cgroup hierarchies (v1, v2 or hybrid, whatever is mounted).

Every test works on a fresh "/ketch-test-<random>" cgroup; the fixture kills what is left in it and
removes it from every hierarchy, and checks that nothing stays behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ketch.common.errors import KetchError, SystemFailure
from ketch.runtime.cgroups import Manager, layout, open_manager


def _host_layout() -> layout.Layout | None:
    try:
        return layout.detect()
    except KetchError:
        return None


LAYOUT = _host_layout()

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates cgroups (needs root)"),
    pytest.mark.skipif(LAYOUT is None, reason="no cgroup hierarchy mounted at /sys/fs/cgroup"),
]

M = 1 << 20

# A child that waits until it has been moved into the cgroup (a line on stdin), then runs `code`.
_WAIT_THEN = "import os, sys\nsys.stdin.readline()\n"


def _state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise AssertionError("no State line")


def _wait_state(pid: int, want: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    state = _state(pid)
    while state != want and time.monotonic() < deadline:
        time.sleep(0.01)
        state = _state(pid)
    return state


def _cleanup(mgr: Manager) -> list[str]:
    try:
        if mgr.exists():
            mgr.kill_all(signal.SIGKILL)
    except KetchError:
        pass
    deadline = time.monotonic() + 5
    while mgr.exists() and time.monotonic() < deadline:
        try:
            mgr.destroy()
        except KetchError:
            time.sleep(0.05)
    return [d for d in mgr.paths().values() if os.path.exists(d)]


@pytest.fixture
def make() -> Iterator[Callable[..., Manager]]:
    made: list[Manager] = []
    children: list[subprocess.Popen[Any]] = []

    def factory(**kw: Any) -> Manager:
        mgr = open_manager(f"/ketch-test-{uuid.uuid4().hex[:10]}", "unused", **kw)
        made.append(mgr)
        return mgr

    factory.children = children  # type: ignore[attr-defined]
    yield factory
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    leftovers = [d for mgr in made for d in _cleanup(mgr)]
    assert leftovers == [], f"cgroups left behind: {leftovers}"


def _spawn(make: Any, code: str | None = None) -> subprocess.Popen[str]:
    argv = ["sleep", "60"] if code is None else [sys.executable, "-c", _WAIT_THEN + code]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    make.children.append(child)
    return child


def _own_cgroups(pid: int) -> dict[str, str]:
    return layout.own_cgroups(f"/proc/{pid}/cgroup")


def test_lifecycle_limits_freeze_kill_destroy(make: Any) -> None:
    mgr = make()
    mgr.create()
    paths = mgr.paths()
    assert paths and all(os.path.isdir(d) for d in paths.values())
    mgr.set({"memory": {"limit": 32 * M}, "pids": {"limit": 10}, "cpu": {"shares": 512}})
    child = _spawn(make)
    mgr.apply(child.pid)

    if "" in paths and "memory" not in paths:  # pure v2
        d = paths[""]
        assert Path(d, "memory.max").read_text().strip() == str(32 * M)
        assert Path(d, "pids.max").read_text().strip() == "10"
        assert Path(d, "cpu.weight").read_text().strip() == "59"
    else:
        assert Path(paths["memory"], "memory.limit_in_bytes").read_text().strip() == str(32 * M)
        assert Path(paths["pids"], "pids.max").read_text().strip() == "10"
        assert Path(paths["cpu"], "cpu.shares").read_text().strip() == "512"

    # The child is in the cgroup in every hierarchy.
    own = _own_cgroups(child.pid)
    for ctrl in paths:
        assert own[ctrl].endswith(mgr.path), (ctrl, own[ctrl])
    assert mgr.pids() == [child.pid]
    st = mgr.stats()
    assert st["pids"] == {"current": 1, "limit": 10}
    assert st["memory"]["usage"]["limit"] == 32 * M

    assert not mgr.is_frozen()
    mgr.freeze()
    assert mgr.is_frozen()
    if "freezer" in paths:  # v1 freezer: frozen tasks sit in uninterruptible sleep
        assert _wait_state(child.pid, "D") == "D"
    mgr.thaw()
    assert not mgr.is_frozen()
    assert _wait_state(child.pid, "S") == "S"

    mgr.kill_all(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    mgr.destroy()
    assert not mgr.exists()
    assert [d for d in paths.values() if os.path.exists(d)] == []


def test_kill_all_with_sigterm_while_paused_keeps_it_paused(make: Any) -> None:
    mgr = make()
    mgr.create()
    child = _spawn(make)
    mgr.apply(child.pid)
    mgr.freeze()
    mgr.kill_all(signal.SIGTERM)
    assert mgr.is_frozen()
    assert child.poll() is None  # frozen: the signal waits
    mgr.thaw()
    assert child.wait(timeout=10) == -signal.SIGTERM


def test_kernel_refusal_names_file_and_value(make: Any) -> None:
    mgr = make()
    mgr.create()
    paths = mgr.paths()
    if "cpuset" not in paths and not Path(paths.get("", "/nonexistent"), "cpuset.cpus").exists():
        pytest.skip("no cpuset controller")
    with pytest.raises(SystemFailure, match=r"cannot write '4095' to .*cpuset\.cpus: ") as info:
        mgr.set({"cpu": {"cpus": "4095"}})
    assert info.value.errno != 0


def test_device_rules_are_enforced(make: Any) -> None:
    mgr = make()
    mgr.create()
    # Only /dev/zero (c 1:5); /dev/null (c 1:3) is refused.
    mgr.set({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]})
    child = _spawn(
        make,
        "res = []\n"
        "for p in ('/dev/zero', '/dev/null'):\n"
        "    try:\n"
        "        os.close(os.open(p, os.O_RDONLY)); res.append('ok')\n"
        "    except OSError as e:\n"
        "        res.append(str(e.errno))\n"
        "print(' '.join(res))\n",
    )
    mgr.apply(child.pid)
    out, _ = child.communicate("go\n", timeout=30)
    assert out.split() == ["ok", "1"]  # EPERM


def test_oom_kill_is_counted(make: Any) -> None:
    mgr = make()
    mgr.create()
    mgr.set({"memory": {"limit": 32 * M, "swap": 32 * M}})
    child = _spawn(make, "data = b'x' * (256 << 20)\nprint('survived')\n")
    mgr.apply(child.pid)
    out, _ = child.communicate("go\n", timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert "survived" not in out
    assert mgr.oom_kill_count() >= 1
    assert mgr.stats()["memory"]["event_count"]["oom_kill"] >= 1


@pytest.fixture
def unified_root() -> Iterator[str]:
    """The hybrid layout's cgroup2 mount, used as a v2 root; controllers the v2 manager enables in its
    cgroup.subtree_control are switched off again afterwards."""
    if LAYOUT is None or LAYOUT.mode == layout.V1 or LAYOUT.unified is None:
        pytest.skip("no cgroup2 hierarchy")
    root = LAYOUT.unified.mountpoint
    before = set(Path(root, "cgroup.subtree_control").read_text().split())
    yield root
    after = set(Path(root, "cgroup.subtree_control").read_text().split())
    for ctrl in after - before:
        try:
            Path(root, "cgroup.subtree_control").write_text(f"-{ctrl}")
        except OSError:
            pass


def test_v2_manager_on_the_unified_hierarchy(make: Any, unified_root: str) -> None:
    mgr = make(root=unified_root)
    assert set(mgr.paths()) == {""}
    mgr.create()
    d = mgr.paths()[""]
    rules: list[dict[str, Any]] = [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    mgr.set({"devices": rules})
    # An update replaces the filter rather than stacking another one on top.
    rules = [{"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]
    mgr.set({"devices": rules})
    probe = (
        "res = []\n"
        "for p in ('/dev/zero', '/dev/null'):\n"
        "    try:\n"
        "        os.close(os.open(p, os.O_RDONLY)); res.append('ok')\n"
        "    except OSError as e:\n"
        "        res.append(str(e.errno))\n"
        "print(' '.join(res), flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = _spawn(make, probe)
    mgr.apply(child.pid)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().split() == ["ok", "1"]

    mgr.freeze()
    assert mgr.is_frozen()
    assert "frozen 1" in Path(d, "cgroup.events").read_text()
    mgr.thaw()
    assert not mgr.is_frozen()
    assert mgr.pids() == [child.pid]
    mgr.kill_all(signal.SIGKILL)  # cgroup.kill where the kernel has it
    assert child.wait(timeout=10) == -signal.SIGKILL
    mgr.destroy()
    assert not os.path.exists(d)

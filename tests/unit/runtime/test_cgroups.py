"""ketch.runtime.cgroups on fake v1, v2 and hybrid hosts built in a temporary directory: path rules, the
exact files and values set() writes, freezing, signalling, accounting, and errors. No root needed."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ketch.common.errors import InvalidArgument, SystemFailure, Unsupported
from ketch.runtime import cgroups
from ketch.runtime.cgroups import convert, fs, layout, v1, v2
from ketch.runtime.cgroups.v1 import V1Manager
from ketch.runtime.cgroups.v2 import V2Manager

# ---------------------------------------------------------------------------------------------------
# The fake host: mount points, a mountinfo file, a /proc/self/cgroup file, interface files with
# kernel-like defaults, and a log of every fs.write the managers make.
# ---------------------------------------------------------------------------------------------------

V1_CONTROLLERS = ("cpu,cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd")
UNLIMITED_V1 = "9223372036854771712"

# Files a fresh v1 cgroup has, per hierarchy (mount directory name), with their initial content.
V1_FILES: dict[str, dict[str, str]] = {
    "cpu,cpuacct": {
        "cpu.shares": "1024\n",
        "cpu.cfs_period_us": "100000\n",
        "cpu.cfs_quota_us": "-1\n",
        "cpu.cfs_burst_us": "0\n",
        "cpu.rt_period_us": "1000000\n",
        "cpu.rt_runtime_us": "0\n",
        "cpu.idle": "0\n",
        "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
        "cpuacct.usage": "0\n",
        "cpuacct.stat": "user 0\nsystem 0\n",
    },
    "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n"},
    "memory": {
        "memory.limit_in_bytes": UNLIMITED_V1 + "\n",
        "memory.memsw.limit_in_bytes": UNLIMITED_V1 + "\n",
        "memory.soft_limit_in_bytes": UNLIMITED_V1 + "\n",
        "memory.swappiness": "60\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.usage_in_bytes": "0\n",
        "memory.max_usage_in_bytes": "0\n",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED\n", "freezer.self_freezing": "0\n"},
    "blkio": {
        "blkio.weight": "500\n",
        "blkio.leaf_weight": "500\n",
        "blkio.weight_device": "",
        "blkio.leaf_weight_device": "",
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "",
        "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": UNLIMITED_V1 + "\n", "hugetlb.2MB.usage_in_bytes": "0\n"},
}

V2_FILES: dict[str, str] = {
    "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
    "cgroup.subtree_control": "\n",
    "cgroup.freeze": "0\n",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cpu.weight": "100\n",
    "cpu.max": "max 100000\n",
    "cpu.max.burst": "0\n",
    "cpu.idle": "0\n",
    "cpuset.cpus": "\n",
    "cpuset.mems": "\n",
    "memory.max": "max\n",
    "memory.low": "0\n",
    "memory.swap.max": "max\n",
    "memory.current": "0\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    "io.weight": "default 100\n",
    "io.max": "",
    "pids.max": "max\n",
    "pids.current": "0\n",
    "hugetlb.2MB.max": "max\n",
    "rdma.max": "",
}


class FakeHost:
    def __init__(
        self,
        tmp: Path,
        mode: str,
        *,
        v1_controllers: tuple[str, ...] = V1_CONTROLLERS,
        own: dict[str, str] | None = None,
        mount_roots: dict[str, str] | None = None,
    ) -> None:
        self.mode = mode
        base = tmp / f"{mode}-host"
        n = 0
        while base.exists():  # several fake hosts in one test
            n += 1
            base = tmp / f"{mode}-host{n}"
        self.root = base / "cgroup"
        self.root.mkdir(parents=True)
        self.mountinfo = base / "mountinfo"
        self.proc_cgroup = base / "proc-self-cgroup"
        self.writes: list[tuple[str, str]] = []
        lines = ["22 1 0:21 / /proc rw - proc proc rw"]
        own = own or {}
        roots = mount_roots or {}
        cg_lines = []
        if mode == "v2":
            lines.append(f"30 22 0:26 {roots.get('', '/')} {self.root} rw - cgroup2 cgroup2 rw")
            cg_lines.append(f"0::{own.get('', '/')}")
            self.put(self.root, V2_FILES)
        else:
            lines.append(f"30 22 0:26 / {self.root} rw - tmpfs tmpfs rw")
            for i, ctrls in enumerate(v1_controllers):
                mnt = self.root / ctrls
                mnt.mkdir()
                opts = "rw," + ctrls
                lines.append(
                    f"{31 + i} 30 0:{40 + i} {roots.get(ctrls, '/')} {mnt} rw - cgroup cgroup {opts}"
                )
                cg_lines.append(f"{i + 1}:{ctrls}:{own.get(ctrls, '/')}")
            if "cpuset" in v1_controllers:
                self.put(self.root / "cpuset", {"cpuset.cpus": "0-3\n", "cpuset.mems": "0\n"})
            if mode == "hybrid":
                (self.root / "unified").mkdir()
                lines.append(f"50 30 0:60 / {self.root / 'unified'} rw - cgroup2 cgroup2 rw")
                cg_lines.append(f"0::{own.get('', '/')}")
        self.mountinfo.write_text("\n".join(lines) + "\n")
        self.proc_cgroup.write_text("\n".join(cg_lines) + "\n")

    @staticmethod
    def put(directory: Path, files: dict[str, str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (directory / name).write_text(content)

    def manager(self, path: str | None = "/c1", cid: str = "c1", **kw: Any) -> cgroups.Manager:
        return cgroups.open_manager(
            path,
            cid,
            root=str(self.root),
            mountinfo=str(self.mountinfo),
            proc_cgroup=str(self.proc_cgroup),
            **kw,
        )

    def populate(self, mgr: cgroups.Manager, *, v1_extra: dict[str, dict[str, str]] | None = None) -> None:
        """Create the interface files the kernel would show in the manager's (already created) cgroups."""
        paths = mgr.paths()
        if self.mode == "v2":
            self.put(Path(paths[""]), {**V2_FILES, "cgroup.procs": ""})
            return
        for ctrl, d in paths.items():
            if ctrl == "":
                self.put(Path(d), {"cgroup.procs": "", "cgroup.freeze": "0\n", "cgroup.kill": ""})
                continue
            mount_name = Path(d).relative_to(self.root).parts[0]
            files = dict(V1_FILES.get(mount_name, {}))
            files.update((v1_extra or {}).get(mount_name, {}))
            self.put(Path(d), {**files, "cgroup.procs": ""})

    def record(self, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
        """Log every fs.write as (path relative to the cgroup root, value)."""
        real = fs.write

        def spy(dirpath: str, name: str, value: str) -> None:
            self.writes.append((os.path.relpath(os.path.join(dirpath, name), self.root), value))
            real(dirpath, name, value)

        monkeypatch.setattr(fs, "write", spy)
        return self.writes

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text().strip()


def strip_files(directory: Path) -> None:
    """Fake cgroup directories hold regular files, which real cgroupfs rmdir does not care about."""
    for top, _dirs, files in os.walk(directory):
        for f in files:
            os.unlink(os.path.join(top, f))


@pytest.fixture
def v1host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path, "v1")


@pytest.fixture
def v2host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path, "v2")


@pytest.fixture
def hybrid(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path, "hybrid")


def ready(host: FakeHost, monkeypatch: pytest.MonkeyPatch, path: str = "/c1", **kw: Any) -> cgroups.Manager:
    """A created, populated manager whose writes from now on are logged in host.writes."""
    mgr = host.manager(path)
    mgr.create()
    host.populate(mgr, **kw)
    host.record(monkeypatch)
    return mgr


# -- layout detection --------------------------------------------------------------------------------


def test_detect_v1_maps_every_controller_including_comounted_and_named(v1host: FakeHost) -> None:
    lay = layout.detect(str(v1host.root), str(v1host.mountinfo))
    assert lay.mode == layout.V1
    assert lay.unified is None
    assert lay.v1["cpu"] is lay.v1["cpuacct"]
    assert lay.v1["cpu"].mountpoint == str(v1host.root / "cpu,cpuacct")
    assert lay.v1["name=systemd"].mountpoint == str(v1host.root / "name=systemd")
    assert set(lay.v1) == {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "name=systemd",
    }


def test_detect_v2_and_hybrid(v2host: FakeHost, hybrid: FakeHost) -> None:
    lay = layout.detect(str(v2host.root), str(v2host.mountinfo))
    assert (lay.mode, lay.v1) == (layout.V2, {})
    assert lay.unified is not None and lay.unified.mountpoint == str(v2host.root)
    lay = layout.detect(str(hybrid.root), str(hybrid.mountinfo))
    assert lay.mode == layout.HYBRID
    assert lay.unified is not None and lay.unified.mountpoint == str(hybrid.root / "unified")
    assert "memory" in lay.v1


def test_detect_without_cgroups_is_unsupported(tmp_path: Path) -> None:
    mi = tmp_path / "mountinfo"
    mi.write_text("22 1 0:21 / /proc rw - proc proc rw\n")
    with pytest.raises(Unsupported, match="no cgroup hierarchy"):
        layout.detect(str(tmp_path), str(mi))


def test_mountinfo_parsing_handles_optional_fields_and_escapes() -> None:
    lines = [
        "35 24 0:30 / /sys/fs/cgroup/with\\040space rw,nosuid shared:9 master:2 - cgroup cgroup "
        "rw,xattr,memory",
        "36 24 0:31 /sub /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate",
        "37 24 0:32 / /mnt rw - ext4 /dev/sda1 rw",
    ]
    got = layout.parse_mountinfo(lines)
    assert got == [
        ("/sys/fs/cgroup/with space", "/", "cgroup", "rw,xattr,memory"),
        ("/sys/fs/cgroup/unified", "/sub", "cgroup2", "rw,nsdelegate"),
    ]
    assert layout._controllers("rw,xattr,release_agent=/x,cpu,cpuacct,name=systemd") == (
        "cpu",
        "cpuacct",
        "name=systemd",
    )


# -- path rules --------------------------------------------------------------------------------------


def test_default_path_is_container_id_under_every_hierarchy(hybrid: FakeHost) -> None:
    mgr = hybrid.manager(None, "abc")
    assert mgr.path == "/abc"
    paths = mgr.paths()
    assert paths["memory"] == str(hybrid.root / "memory" / "abc")
    assert paths["cpu"] == paths["cpuacct"] == str(hybrid.root / "cpu,cpuacct" / "abc")
    assert paths["name=systemd"] == str(hybrid.root / "name=systemd" / "abc")
    assert paths[""] == str(hybrid.root / "unified" / "abc")


def test_absolute_path_is_cleaned_and_cannot_escape(v1host: FakeHost) -> None:
    mgr = v1host.manager("/a/../../b/./c//")
    assert mgr.path == "/b/c"
    assert mgr.paths()["pids"] == str(v1host.root / "pids" / "b" / "c")


def test_relative_path_hangs_off_the_runtime_cgroup_per_hierarchy(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, "hybrid", own={"memory": "/process_api/x", "": "/user/x"})
    mgr = host.manager("../../kt/c1")
    assert mgr.path == "kt/c1"
    paths = mgr.paths()
    assert paths["memory"] == str(host.root / "memory" / "process_api" / "x" / "kt" / "c1")
    assert paths["pids"] == str(host.root / "pids" / "kt" / "c1")
    assert paths[""] == str(host.root / "unified" / "user" / "x" / "kt" / "c1")


def test_relative_path_respects_the_mount_root(tmp_path: Path) -> None:
    # memory hierarchy bind-mounted from /process_api: /proc/self/cgroup paths are hierarchy paths.
    host = FakeHost(tmp_path, "v1", own={"memory": "/process_api/x"}, mount_roots={"memory": "/process_api"})
    assert host.manager("c1").paths()["memory"] == str(host.root / "memory" / "x" / "c1")


def test_v2_relative_path_uses_the_parent_of_the_runtime_cgroup(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, "v2", own={"": "/user.slice/session-1.scope"})
    assert host.manager("kt/c1").paths() == {"": str(host.root / "user.slice" / "kt" / "c1")}
    assert host.manager("/kt/c1").paths() == {"": str(host.root / "kt" / "c1")}


@pytest.mark.parametrize("bad", ["system.slice:docker:abc", "/", "/..", "x\x00y"])
def test_bad_paths_are_invalid(v1host: FakeHost, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        v1host.manager(bad)


def test_bad_container_id_for_default_path(v1host: FakeHost) -> None:
    with pytest.raises(InvalidArgument, match="container id"):
        v1host.manager(None, "a/b")


def test_systemd_driver_is_unsupported(v1host: FakeHost) -> None:
    with pytest.raises(Unsupported, match=r"^systemd cgroup driver is not supported"):
        v1host.manager("system.slice:docker:abc", systemd=True)


def test_manager_kind_follows_layout(v1host: FakeHost, v2host: FakeHost, hybrid: FakeHost) -> None:
    assert isinstance(v1host.manager(), V1Manager)
    assert "" not in v1host.manager().paths()
    assert isinstance(v2host.manager(), V2Manager)
    assert isinstance(hybrid.manager(), V1Manager)


def test_reopen_from_recorded_paths(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, "hybrid", own={"memory": "/a"})
    first = host.manager("rel/c1")
    first.create()
    recorded = first.paths()
    # A later command running in another cgroup would resolve the relative path elsewhere ...
    host.proc_cgroup.write_text("4:memory:/elsewhere\n")
    assert host.manager("rel/c1").paths()["memory"] != recorded["memory"]
    # ... so it passes the recorded directories.
    again = host.manager("rel/c1", paths=recorded)
    assert again.paths() == recorded and again.path == "rel/c1"
    assert again.exists()
    v2 = FakeHost(tmp_path, "v2")
    assert v2.manager(paths={"": "/x/y"}).paths() == {"": "/x/y"}
    with pytest.raises(InvalidArgument, match="do not match"):
        v2.manager(paths=recorded)


# -- create / apply / destroy ------------------------------------------------------------------------


def test_v1_create_makes_every_hierarchy_with_parents_and_is_idempotent(v1host: FakeHost) -> None:
    mgr = v1host.manager("/kt/deep/c1")
    assert not mgr.exists()
    mgr.create()
    mgr.create()
    assert mgr.exists()
    for d in mgr.paths().values():
        assert os.path.isdir(d)


def test_v1_create_copies_cpuset_down_every_empty_level(v1host: FakeHost) -> None:
    # Existing levels with empty values, as the kernel shows new cpuset cgroups.
    for rel in ("kt", "kt/c1"):
        v1host.put(v1host.root / "cpuset" / rel, {"cpuset.cpus": "\n", "cpuset.mems": "\n"})
    v1host.put(v1host.root / "cpuset" / "kt", {"cpuset.mems": "0\n"})  # already set: kept
    v1host.put(v1host.root / "cpuset", {"cpuset.cpus": "0-3\n", "cpuset.mems": "0-1\n"})
    with pytest.MonkeyPatch.context() as mp:
        writes = v1host.record(mp)
        v1host.manager("/kt/c1").create()
    assert writes == [
        ("cpuset/kt/cpuset.cpus", "0-3"),
        ("cpuset/kt/c1/cpuset.cpus", "0-3"),
        ("cpuset/kt/c1/cpuset.mems", "0"),
    ]


def test_apply_writes_the_pid_everywhere_including_unified(
    hybrid: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = ready(hybrid, monkeypatch)
    mgr.apply(4242)
    dirs = sorted({os.path.relpath(d, hybrid.root) for d in mgr.paths().values()})
    assert sorted(w[0] for w in hybrid.writes) == [f"{d}/cgroup.procs" for d in dirs]
    assert {w[1] for w in hybrid.writes} == {"4242"}
    assert "unified/c1" in dirs


def test_apply_to_a_missing_cgroup_names_the_file(v2host: FakeHost) -> None:
    mgr = v2host.manager()
    with pytest.raises(SystemFailure, match=r"cannot write '7' to .*/c1/cgroup.procs"):
        mgr.apply(7)


def test_apply_retries_einval(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    calls = []

    def flaky(d: str, n: str, v: str) -> None:
        calls.append(v)
        if len(calls) < 3:
            raise SystemFailure("busy forking", errno=errno.EINVAL)

    monkeypatch.setattr(fs, "write", flaky)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    mgr.apply(9)
    assert calls == ["9", "9", "9"]


def test_hybrid_never_fails_because_of_the_unified_part(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, "hybrid")
    (host.root / "unified").rmdir()
    (host.root / "unified").write_text("not a directory")  # every unified operation fails
    mgr = host.manager()
    mgr.create()
    for ctrl, d in mgr.paths().items():
        if ctrl:
            host.put(Path(d), {"cgroup.procs": ""})
    mgr.apply(1234)
    assert host.read("memory/c1/cgroup.procs") == "1234"
    assert mgr.exists()
    mgr.kill_all(signal.SIGKILL)  # cgroup.kill on the unified side cannot be used: still fine
    for ctrl, d in mgr.paths().items():
        if ctrl:
            strip_files(Path(d))
    mgr.destroy()
    assert not mgr.exists()


def test_destroy_removes_children_first_and_tolerates_missing(hybrid: FakeHost) -> None:
    mgr = hybrid.manager("/kt/c1")
    mgr.create()
    os.makedirs(os.path.join(mgr.paths()["memory"], "sub", "subsub"))
    os.makedirs(os.path.join(mgr.paths()[""], "sub"))
    os.rmdir(mgr.paths()["pids"])  # already gone
    mgr.destroy()
    assert not mgr.exists()
    assert not any(os.path.exists(d) for d in mgr.paths().values())
    assert (hybrid.root / "memory" / "kt").is_dir()  # parents stay
    mgr.destroy()  # nothing left: fine


def test_destroy_retries_ebusy_then_reports(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = v2host.manager()
    mgr.create()
    real = os.rmdir
    busy = {"left": 3}

    def rmdir(path: str) -> None:
        if busy["left"]:
            busy["left"] -= 1
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        real(path)

    monkeypatch.setattr(fs, "RMDIR_DELAYS", (0.001,) * 4)
    monkeypatch.setattr(os, "rmdir", rmdir)
    mgr.destroy()
    assert not mgr.exists()

    mgr.create()
    busy["left"] = 100
    with pytest.raises(SystemFailure, match=r"cannot remove cgroup .*c1: Device or resource busy") as info:
        mgr.destroy()
    assert info.value.errno == errno.EBUSY
    assert busy["left"] == 100 - 5  # the first try plus one per delay


# -- set(): v1 -------------------------------------------------------------------------------------

M = 1 << 20

V1_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    (
        "memory limit and swap from unlimited: limit first",
        {"memory": {"limit": 32 * M, "swap": 64 * M}},
        [
            ("memory/c1/memory.limit_in_bytes", str(32 * M)),
            ("memory/c1/memory.memsw.limit_in_bytes", str(64 * M)),
        ],
    ),
    (
        "memory unlimited: memsw lifted first",
        {"memory": {"limit": -1}},
        [("memory/c1/memory.memsw.limit_in_bytes", "-1"), ("memory/c1/memory.limit_in_bytes", "-1")],
    ),
    (
        "memory reservation, oom killer, swappiness, kernel ignored",
        {
            "memory": {
                "reservation": 16 * M,
                "disableOOMKiller": True,
                "swappiness": 0,
                "kernel": 5 * M,
                "kernelTCP": M,
            }
        },
        [
            ("memory/c1/memory.soft_limit_in_bytes", str(16 * M)),
            ("memory/c1/memory.oom_control", "1"),
            ("memory/c1/memory.swappiness", "0"),
        ],
    ),
    ("swappiness -1 means untouched", {"memory": {"swappiness": -1}}, []),
    (
        "cpu",
        {
            "cpu": {
                "shares": 512,
                "quota": 50000,
                "period": 100000,
                "burst": 1000,
                "idle": 1,
                "realtimePeriod": 1000000,
                "realtimeRuntime": 950000,
            }
        },
        [
            ("cpu,cpuacct/c1/cpu.shares", "512"),
            ("cpu,cpuacct/c1/cpu.cfs_period_us", "100000"),
            ("cpu,cpuacct/c1/cpu.cfs_burst_us", "1000"),
            ("cpu,cpuacct/c1/cpu.cfs_quota_us", "50000"),
            ("cpu,cpuacct/c1/cpu.idle", "1"),
            ("cpu,cpuacct/c1/cpu.rt_period_us", "1000000"),
            ("cpu,cpuacct/c1/cpu.rt_runtime_us", "950000"),
        ],
    ),
    ("cpu quota -1", {"cpu": {"quota": -1}}, [("cpu,cpuacct/c1/cpu.cfs_quota_us", "-1")]),
    (
        "cpuset",
        {"cpu": {"cpus": "0-1", "mems": "0"}},
        [("cpuset/c1/cpuset.cpus", "0-1"), ("cpuset/c1/cpuset.mems", "0")],
    ),
    ("pids", {"pids": {"limit": 10}}, [("pids/c1/pids.max", "10")]),
    ("pids unlimited", {"pids": {"limit": -1}}, [("pids/c1/pids.max", "max")]),
    ("pids zero is a limit", {"pids": {"limit": 0}}, [("pids/c1/pids.max", "0")]),
    (
        "blkio (CFQ files present)",
        {
            "blockIO": {
                "weight": 300,
                "leafWeight": 200,
                "weightDevice": [
                    {"major": 8, "minor": 0, "weight": 100, "leafWeight": 50},
                    {"major": 8, "minor": 16, "weight": 0, "leafWeight": 0},
                ],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}],
            }
        },
        [
            ("blkio/c1/blkio.weight", "300"),
            ("blkio/c1/blkio.leaf_weight", "200"),
            ("blkio/c1/blkio.weight_device", "8:0 100"),
            ("blkio/c1/blkio.leaf_weight_device", "8:0 50"),
            ("blkio/c1/blkio.throttle.read_bps_device", "8:0 1048576"),
            ("blkio/c1/blkio.throttle.write_bps_device", "8:0 2097152"),
            ("blkio/c1/blkio.throttle.read_iops_device", "8:0 100"),
            ("blkio/c1/blkio.throttle.write_iops_device", "8:0 200"),
        ],
    ),
    (
        "devices: deny all, then each rule in order",
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "c", "major": 136, "access": "rw"},
                {"allow": True, "type": "b", "major": None, "minor": -1, "access": "m"},
                {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
            ]
        },
        [
            ("devices/c1/devices.deny", "a"),
            ("devices/c1/devices.deny", "a *:* rwm"),
            ("devices/c1/devices.allow", "c 1:3 rwm"),
            ("devices/c1/devices.allow", "c 136:* rw"),
            ("devices/c1/devices.allow", "b *:* m"),
            ("devices/c1/devices.deny", "c 1:3 w"),
        ],
    ),
    ("network ignored, empty sections fine", {"network": {"classID": 5}, "memory": {}, "cpu": None}, []),
    (
        "zero means unset",
        {
            "memory": {"limit": 0, "reservation": 0, "swap": 0},
            "cpu": {"shares": 0, "quota": 0},
            "blockIO": {"weight": 0},
        },
        [],
    ),
]


@pytest.mark.parametrize(("resources", "expected"), [c[1:] for c in V1_CASES], ids=[c[0] for c in V1_CASES])
def test_v1_set_writes(
    v1host: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
    resources: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    mgr = ready(v1host, monkeypatch)
    mgr.set(resources)
    assert v1host.writes == expected
    for rel, value in expected:  # the files hold the last value written
        if [w for w in expected if w[0] == rel][-1][1] == value:
            assert v1host.read(rel) == value


def test_v1_memory_raising_from_a_small_limit_writes_memsw_first(
    v1host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = ready(v1host, monkeypatch, v1_extra={"memory": {"memory.limit_in_bytes": str(16 * M)}})
    mgr.set({"memory": {"limit": 32 * M, "swap": 64 * M}})
    assert v1host.writes == [
        ("memory/c1/memory.memsw.limit_in_bytes", str(64 * M)),
        ("memory/c1/memory.limit_in_bytes", str(32 * M)),
    ]
    # and lowering again: limit first
    v1host.writes.clear()
    mgr.set({"memory": {"limit": 8 * M, "swap": 16 * M}})
    assert v1host.writes == [
        ("memory/c1/memory.limit_in_bytes", str(8 * M)),
        ("memory/c1/memory.memsw.limit_in_bytes", str(16 * M)),
    ]


def test_v1_memory_limit_busy_reports_usage(v1host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(
        v1host,
        monkeypatch,
        v1_extra={"memory": {"memory.usage_in_bytes": "5000\n", "memory.max_usage_in_bytes": "6000\n"}},
    )

    def busy(d: str, n: str, v: str) -> None:
        raise SystemFailure(f"cannot write {v!r} to {d}/{n}: Device or resource busy", errno=errno.EBUSY)

    monkeypatch.setattr(fs, "write", busy)
    with pytest.raises(
        SystemFailure, match=r"memory limit to 4096 \(current usage: 5000, peak usage: 6000\)"
    ):
        mgr.set({"memory": {"limit": 4096}})


def test_v1_no_swap_accounting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost(tmp_path, "v1")
    mgr = ready(host, monkeypatch)
    os.unlink(os.path.join(mgr.paths()["memory"], "memory.memsw.limit_in_bytes"))
    mgr.set({"memory": {"limit": -1}})  # nothing to lift without swap accounting
    assert host.writes == [("memory/c1/memory.limit_in_bytes", "-1")]
    with pytest.raises(SystemFailure, match=r"cannot write '67108864' to .*memory.memsw.limit_in_bytes"):
        mgr.set({"memory": {"limit": 32 * M, "swap": 64 * M}})


def test_v1_cpu_period_einval_is_retried_after_quota(
    v1host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = ready(v1host, monkeypatch)
    spy = fs.write
    refused: list[str] = []

    def period_refused_once(d: str, n: str, v: str) -> None:
        if n == "cpu.cfs_period_us" and not refused:
            refused.append(v)
            raise SystemFailure("EINVAL", errno=errno.EINVAL)
        spy(d, n, v)

    monkeypatch.setattr(fs, "write", period_refused_once)
    mgr.set({"cpu": {"quota": 1000, "period": 10000}})
    assert v1host.writes == [
        ("cpu,cpuacct/c1/cpu.cfs_quota_us", "1000"),
        ("cpu,cpuacct/c1/cpu.cfs_period_us", "10000"),
    ]
    refused.clear()
    with pytest.raises(SystemFailure):  # without a quota there is nothing to retry after
        mgr.set({"cpu": {"period": 10000}})


def test_v1_cpu_shares_clamped_by_kernel_is_an_error(
    v1host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = ready(v1host, monkeypatch)
    spy = fs.write
    monkeypatch.setattr(fs, "write", lambda d, n, v: spy(d, n, "262144" if n == "cpu.shares" else v))
    with pytest.raises(InvalidArgument, match="maximum allowed cpu-shares is 262144"):
        mgr.set({"cpu": {"shares": 500000}})


def test_v1_blkio_uses_bfq_files_without_cfq(v1host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v1host, monkeypatch)
    blkio = mgr.paths()["blkio"]
    os.unlink(os.path.join(blkio, "blkio.weight"))
    for name in ("blkio.bfq.weight", "blkio.bfq.weight_device"):
        Path(blkio, name).write_text("")
    mgr.set({"blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}]}})
    assert v1host.writes == [
        ("blkio/c1/blkio.bfq.weight", "300"),
        ("blkio/c1/blkio.bfq.weight_device", "8:0 100"),
    ]


def test_v1_hugetlb_when_mounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost(tmp_path, "v1", v1_controllers=("memory", "hugetlb"))
    mgr = ready(host, monkeypatch)
    Path(mgr.paths()["hugetlb"], "hugetlb.2MB.rsvd.limit_in_bytes").write_text("")
    mgr.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * M}]})
    assert host.writes == [
        ("hugetlb/c1/hugetlb.2MB.limit_in_bytes", str(4 * M)),
        ("hugetlb/c1/hugetlb.2MB.rsvd.limit_in_bytes", str(4 * M)),
    ]


@pytest.mark.parametrize(
    ("resources", "controller"),
    [
        ({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}, "hugetlb"),
        ({"rdma": {"mlx5_0": {"hcaHandles": 2}}}, "rdma"),
        ({"pids": {"limit": 5}}, "pids"),
    ],
)
def test_v1_missing_controller_is_named_before_any_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resources: dict[str, Any], controller: str
) -> None:
    host = FakeHost(tmp_path, "v1", v1_controllers=("memory", "cpu,cpuacct"))
    mgr = ready(host, monkeypatch)
    with pytest.raises(Unsupported, match=f"needs the {controller} cgroup controller, which is not mounted"):
        mgr.set({"memory": {"limit": M}, **resources})
    assert host.writes == []


def test_v1_unified_is_an_error_naming_the_key(v1host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v1host, monkeypatch)
    with pytest.raises(InvalidArgument, match=r"unified\['memory.high'\].*not supported on cgroup v1"):
        mgr.set({"memory": {"limit": M}, "unified": {"memory.high": "100"}})
    assert v1host.writes == []


def test_hybrid_set_uses_v1_controllers_only(hybrid: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(hybrid, monkeypatch)
    mgr.set(
        {
            "memory": {"limit": 32 * M, "swap": 32 * M},
            "pids": {"limit": 10},
            "cpu": {"shares": 512},
            "devices": [{"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}],
        }
    )
    assert [w[0] for w in hybrid.writes] == [
        "devices/c1/devices.deny",
        "devices/c1/devices.allow",
        "memory/c1/memory.limit_in_bytes",
        "memory/c1/memory.memsw.limit_in_bytes",
        "cpu,cpuacct/c1/cpu.shares",
        "pids/c1/pids.max",
    ]


def test_kernel_refusal_names_file_and_value(v1host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v1host, monkeypatch)
    os.unlink(os.path.join(mgr.paths()["cpu"], "cpu.idle"))  # an older kernel
    with pytest.raises(SystemFailure, match=r"cannot write '1' to .*/c1/cpu\.idle: No such file") as info:
        mgr.set({"cpu": {"idle": 1}})
    assert info.value.errno == errno.ENOENT
    assert info.value.path.endswith("/c1/cpu.idle")


def test_fs_write_reports_the_kernel_errno() -> None:
    # /dev/full refuses every write with ENOSPC: a real write(2) failure through fs.write.
    with pytest.raises(
        SystemFailure, match=r"cannot write 'x' to /dev/full: No space left on device"
    ) as info:
        fs.write("/dev", "full", "x")
    assert info.value.errno == errno.ENOSPC


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"memory": {"limit": "32m"}}, r"linux\.resources\.memory\.limit must be an integer"),
        ({"memory": {"limit": True}}, r"linux\.resources\.memory\.limit must be an integer"),
        ({"memory": {"swap": -2}}, r"linux\.resources\.memory\.swap must be at least -1"),
        ({"memory": {"swappiness": 101}}, r"valid memory swappiness range is 0-100"),
        ({"memory": {"disableOOMKiller": "yes"}}, r"disableOOMKiller must be a boolean"),
        ({"cpu": {"cpus": 3}}, r"linux\.resources\.cpu\.cpus must be a string"),
        ({"devices": [{"allow": True, "type": "x"}]}, r"devices\[0\]\.type"),
        ({"devices": [{"type": "c"}]}, r"devices\[0\]\.allow must be true or false"),
        ({"devices": [{"allow": True, "access": "rwx"}]}, r"devices\[0\]\.access"),
        (
            {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}},
            r"throttleReadBpsDevice\[0\]\.rate",
        ),
        ({"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}, r"hugepageLimits\[0\]\.pageSize"),
        ({"memory": []}, r"linux\.resources\.memory must be an object"),
    ],
)
def test_bad_config_values_are_invalid_argument(
    v1host: FakeHost, monkeypatch: pytest.MonkeyPatch, resources: dict[str, Any], message: str
) -> None:
    mgr = ready(v1host, monkeypatch)
    with pytest.raises(InvalidArgument, match=message):
        mgr.set(resources)
    assert v1host.writes == []


# -- set(): v2 -------------------------------------------------------------------------------------

V2_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    (
        "memory limit+swap -> swap.max is the difference, written first",
        {"memory": {"limit": 32 * M, "swap": 64 * M, "reservation": 16 * M}},
        [("memory.swap.max", str(32 * M)), ("memory.max", str(32 * M)), ("memory.low", str(16 * M))],
    ),
    ("memory unlimited", {"memory": {"limit": -1}}, [("memory.swap.max", "max"), ("memory.max", "max")]),
    (
        "swap equal to limit disables swap",
        {"memory": {"limit": 32 * M, "swap": 32 * M}},
        [("memory.swap.max", "0"), ("memory.max", str(32 * M))],
    ),
    (
        "unlimited swap",
        {"memory": {"limit": 32 * M, "swap": -1}},
        [("memory.swap.max", "max"), ("memory.max", str(32 * M))],
    ),
    (
        "v1-only memory knobs are ignored",
        {"memory": {"swappiness": 10, "disableOOMKiller": True, "kernel": M}},
        [],
    ),
    ("cpu shares default", {"cpu": {"shares": 1024}}, [("cpu.weight", "100")]),
    ("cpu shares min/max", {"cpu": {"shares": 2}}, [("cpu.weight", "1")]),
    ("cpu shares max", {"cpu": {"shares": 262144}}, [("cpu.weight", "10000")]),
    ("cpu shares 512", {"cpu": {"shares": 512}}, [("cpu.weight", "59")]),
    ("cpu quota and period", {"cpu": {"quota": 50000, "period": 100000}}, [("cpu.max", "50000 100000")]),
    ("cpu unlimited quota with period", {"cpu": {"quota": -1, "period": 50000}}, [("cpu.max", "max 50000")]),
    ("cpu quota alone keeps the period", {"cpu": {"quota": 20000}}, [("cpu.max", "20000")]),
    (
        "cpu burst, idle, cpuset",
        {"cpu": {"burst": 5000, "idle": 1, "cpus": "0-1", "mems": "0"}},
        [("cpu.max.burst", "5000"), ("cpu.idle", "1"), ("cpuset.cpus", "0-1"), ("cpuset.mems", "0")],
    ),
    ("pids", {"pids": {"limit": 10}}, [("pids.max", "10")]),
    ("pids -1", {"pids": {"limit": -1}}, [("pids.max", "max")]),
    (
        "io weight converted without BFQ, leaf weight and device weights ignored, throttles",
        {
            "blockIO": {
                "weight": 500,
                "leafWeight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 30}],
            }
        },
        [("io.weight", "4950"), ("io.max", "8:0 rbps=1048576"), ("io.max", "8:16 wiops=30")],
    ),
    (
        "hugetlb and rdma",
        {
            "hugepageLimits": [{"pageSize": "2MB", "limit": 2 * M}],
            "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 1000}, "mlx4_0": {"hcaObjects": 7}},
        },
        [
            ("hugetlb.2MB.max", str(2 * M)),
            ("rdma.max", "mlx5_0 hca_handle=3 hca_object=1000"),
            ("rdma.max", "mlx4_0 hca_object=7"),
        ],
    ),
    (
        "unified last, multi-line values one write per line",
        {"pids": {"limit": 3}, "unified": {"memory.high": "1000000", "io.max": "8:0 rbps=1\n8:16 wbps=2\n"}},
        [("pids.max", "3"), ("memory.high", "1000000"), ("io.max", "8:0 rbps=1"), ("io.max", "8:16 wbps=2")],
    ),
]


@pytest.mark.parametrize(("resources", "expected"), [c[1:] for c in V2_CASES], ids=[c[0] for c in V2_CASES])
def test_v2_set_writes(
    v2host: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
    resources: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    mgr = ready(v2host, monkeypatch)
    Path(mgr.paths()[""], "memory.high").write_text("max\n")
    mgr.set(resources)
    assert v2host.writes == [("c1/" + name, value) for name, value in expected]


def test_v2_io_uses_bfq_when_present(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    Path(mgr.paths()[""], "io.bfq.weight").write_text("default 100\n")
    mgr.set(
        {
            "blockIO": {
                "weight": 500,
                "weightDevice": [
                    {"major": 8, "minor": 0, "weight": 10},
                    {"major": 8, "minor": 16, "leafWeight": 5},
                ],
            }
        }
    )
    assert v2host.writes == [("c1/io.bfq.weight", "500"), ("c1/io.bfq.weight", "8:0 10")]


def test_v2_swap_without_accounting(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    os.unlink(os.path.join(mgr.paths()[""], "memory.swap.max"))
    mgr.set({"memory": {"limit": -1}})  # lifting swap that is not accounted: fine
    mgr.set({"memory": {"limit": M, "swap": M}})  # disabling it: fine too
    with pytest.raises(SystemFailure, match=r"cannot write '1048576' to .*memory\.swap\.max"):
        mgr.set({"memory": {"limit": M, "swap": 2 * M}})


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        ({"swap": 64 * M}, "swap cannot be set without a memory limit"),
        ({"limit": 64 * M, "swap": 32 * M}, r"must be >= memory\.limit"),
    ],
)
def test_v2_bad_swap(
    v2host: FakeHost, monkeypatch: pytest.MonkeyPatch, memory: dict[str, int], message: str
) -> None:
    mgr = ready(v2host, monkeypatch)
    with pytest.raises(InvalidArgument, match=message):
        mgr.set({"memory": memory})


def test_v2_realtime_is_unsupported(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    with pytest.raises(Unsupported, match="realtimeRuntime"):
        mgr.set({"cpu": {"realtimeRuntime": 1000}})
    assert v2host.writes == []


def test_v2_missing_controller_is_named(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    Path(mgr.paths()[""], "cgroup.controllers").write_text("cpu pids\n")
    with pytest.raises(
        Unsupported, match=r"memory needs the memory cgroup controller.*cgroup.controllers: cpu pids"
    ):
        mgr.set({"pids": {"limit": 4}, "memory": {"limit": M}})
    assert v2host.writes == []
    mgr.set({"memory": {"swappiness": 5}, "blockIO": {"leafWeight": 10}})  # ignored knobs need nothing


def test_v2_unified_errors(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    Path(mgr.paths()[""], "cgroup.controllers").write_text("cpu pids\n")
    with pytest.raises(
        Unsupported, match=r"unified resource 'memory.high' can't be set: controller 'memory'"
    ):
        mgr.set({"unified": {"memory.high": "5"}})
    with pytest.raises(InvalidArgument, match=r"must be in the form CONTROLLER\.PARAMETER"):
        mgr.set({"unified": {"nodot": "5"}})
    with pytest.raises(SystemFailure, match=r"unable to set unified resource 'cpu.nonexistent'"):
        mgr.set({"unified": {"cpu.nonexistent": "5"}})
    with pytest.raises(InvalidArgument, match="must be a file name"):
        mgr.set({"unified": {"../cgroup.procs": "5"}})


def test_v2_devices_attach_a_generated_program(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    from ketch.runtime.cgroups import devfilter
    from ketch.runtime.cgroups.devices import emulate, parse_rules

    mgr = ready(v2host, monkeypatch)
    attached: list[tuple[str, bytes]] = []
    monkeypatch.setattr(v2, "attach_program", lambda d, prog: attached.append((d, prog)))
    rules = [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    mgr.set({"devices": rules})
    assert attached == [(mgr.paths()[""], devfilter.generate(emulate(parse_rules(rules, "x"))))]
    mgr.set({"pids": {"limit": 1}})  # no devices key: the filter stays as it is
    assert len(attached) == 1


def test_v2_create_enables_controllers_in_ancestors_only(
    v2host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2host.put(
        v2host.root / "kt", {"cgroup.controllers": "cpu memory pids\n", "cgroup.subtree_control": "memory\n"}
    )
    v2host.record(monkeypatch)
    mgr = v2host.manager("/kt/c1")
    mgr.create()
    assert v2host.writes == [
        ("cgroup.subtree_control", "+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc"),
        ("kt/cgroup.subtree_control", "+cpu +pids"),
    ]


def test_v2_create_falls_back_to_one_controller_at_a_time(
    v2host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2host.put(v2host.root, {"cgroup.controllers": "cpu memory rdma\n"})
    spy_log = v2host.record(monkeypatch)
    spy = fs.write

    def picky(d: str, n: str, v: str) -> None:
        spy(d, n, v)
        if " " in v or v == "+rdma":
            raise SystemFailure("EINVAL", errno=errno.EINVAL)

    monkeypatch.setattr(fs, "write", picky)
    v2host.manager("/c1").create()
    assert [v for _, v in spy_log] == ["+cpu +memory +rdma", "+cpu", "+memory", "+rdma"]


# -- freezer --------------------------------------------------------------------------------------


def test_v1_freeze_thaw(v1host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v1host, monkeypatch)
    assert not mgr.is_frozen()
    mgr.freeze()
    assert v1host.read("freezer/c1/freezer.state") == "FROZEN"
    Path(mgr.paths()["freezer"], "freezer.self_freezing").write_text("1\n")
    assert mgr.is_frozen()
    mgr.thaw()
    assert v1host.writes == [("freezer/c1/freezer.state", "FROZEN"), ("freezer/c1/freezer.state", "THAWED")]
    assert not mgr.is_frozen()


def test_v1_frozen_only_by_an_ancestor_is_not_paused(
    v1host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = ready(v1host, monkeypatch)
    v1host.put(Path(mgr.paths()["freezer"]), {"freezer.state": "FROZEN\n", "freezer.self_freezing": "0\n"})
    assert not mgr.is_frozen()


def test_v1_freeze_stuck_in_freezing(v1host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v1host, monkeypatch)
    real_read = fs.read
    monkeypatch.setattr(fs, "read", lambda d, n: "FREEZING\n" if n == "freezer.state" else real_read(d, n))
    monkeypatch.setattr(v1, "FREEZE_ATTEMPTS", 60)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    with pytest.raises(SystemFailure, match="processes kept it in state FREEZING"):
        mgr.freeze()
    values = [v for _, v in v1host.writes]
    assert values.count("FROZEN") == 60
    assert values[49] == "THAWED"  # the occasional thaw that lets a forking workload settle
    assert values[-1] == "THAWED"  # not left half-frozen


def test_freeze_without_freezer_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost(tmp_path, "v1", v1_controllers=("memory",))
    mgr = ready(host, monkeypatch)
    with pytest.raises(Unsupported, match="freezer"):
        mgr.freeze()
    assert not mgr.is_frozen()


class FakeV2Freezer(threading.Thread):
    """Plays the kernel: reports cgroup.freeze in cgroup.events a little later."""

    def __init__(self, directory: str) -> None:
        super().__init__(daemon=True)
        self.dir = Path(directory)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            want = (self.dir / "cgroup.freeze").read_text().strip() or "0"
            time.sleep(0.01)
            (self.dir / "cgroup.events").write_text(f"populated 1\nfrozen {want}\n")


def test_v2_freeze_waits_for_cgroup_events(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    kernel = FakeV2Freezer(mgr.paths()[""])
    kernel.start()
    try:
        mgr.freeze()
        assert v2host.read("c1/cgroup.events").endswith("frozen 1")
        assert mgr.is_frozen()
        mgr.thaw()
        assert v2host.read("c1/cgroup.events").endswith("frozen 0")
        assert not mgr.is_frozen()
    finally:
        kernel.stop.set()
        kernel.join()
    assert v2host.writes == [("c1/cgroup.freeze", "1"), ("c1/cgroup.freeze", "0")]


def test_v2_freeze_timeout_thaws_back(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    monkeypatch.setattr(v2, "FREEZE_TIMEOUT", 0.05)
    with pytest.raises(SystemFailure, match='never showed "frozen 1"'):
        mgr.freeze()
    assert v2host.writes == [("c1/cgroup.freeze", "1"), ("c1/cgroup.freeze", "0")]


def test_v2_freeze_needs_cgroup_freeze(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    os.unlink(os.path.join(mgr.paths()[""], "cgroup.freeze"))
    with pytest.raises(Unsupported, match=r"Linux 5\.2"):
        mgr.freeze()
    assert not mgr.is_frozen()


# -- processes and signals ---------------------------------------------------------------------------


@pytest.fixture
def sleeper() -> Any:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_pids_are_collected_recursively(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    d = Path(mgr.paths()[""])
    (d / "cgroup.procs").write_text("30\n10\n")
    v2host.put(d / "sub" / "subsub", {"cgroup.procs": "20\n10\n"})
    assert mgr.pids() == [10, 20, 30]


def test_v1_pids_come_from_the_freezer_hierarchy(v1host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v1host, monkeypatch)
    assert mgr.pids() == []
    Path(mgr.paths()["freezer"], "cgroup.procs").write_text("5\n6\n")
    Path(mgr.paths()["memory"], "cgroup.procs").write_text("99\n")
    assert mgr.pids() == [5, 6]


def test_kill_all_v1_freezes_signals_and_thaws(
    v1host: FakeHost, monkeypatch: pytest.MonkeyPatch, sleeper: Any
) -> None:
    mgr = ready(v1host, monkeypatch)
    procs = [sleeper(), sleeper()]
    Path(mgr.paths()["freezer"], "cgroup.procs").write_text("".join(f"{p.pid}\n" for p in procs))
    mgr.kill_all(signal.SIGTERM)
    for p in procs:
        assert p.wait(timeout=10) == -signal.SIGTERM
    assert v1host.writes == [("freezer/c1/freezer.state", "FROZEN"), ("freezer/c1/freezer.state", "THAWED")]


def test_kill_all_keeps_a_paused_container_paused_except_for_sigkill(
    v1host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = ready(
        v1host,
        monkeypatch,
        v1_extra={"freezer": {"freezer.state": "FROZEN\n", "freezer.self_freezing": "1\n"}},
    )
    mgr.kill_all(signal.SIGUSR1)  # no processes listed: nothing to signal
    assert v1host.read("freezer/c1/freezer.state") == "FROZEN"
    mgr.kill_all(signal.SIGKILL)
    assert v1host.read("freezer/c1/freezer.state") == "THAWED"


def test_kill_all_v2_sigkill_uses_cgroup_kill(
    v2host: FakeHost, monkeypatch: pytest.MonkeyPatch, sleeper: Any
) -> None:
    mgr = ready(v2host, monkeypatch)
    p = sleeper()
    d = Path(mgr.paths()[""])
    (d / "cgroup.procs").write_text(f"{p.pid}\n")
    (d / "cgroup.kill").write_text("")
    mgr.kill_all(signal.SIGKILL)
    assert v2host.writes == [("c1/cgroup.kill", "1")]
    assert p.poll() is None  # the fake kernel does not act on cgroup.kill: no signal was sent by hand
    os.unlink(d / "cgroup.kill")  # before Linux 5.14: freeze, signal, thaw
    kernel = FakeV2Freezer(str(d))
    kernel.start()
    try:
        mgr.kill_all(signal.SIGKILL)
    finally:
        kernel.stop.set()
        kernel.join()
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert [v for _, v in v2host.writes[1:]] == ["1", "0"]


def test_kill_all_hybrid_tries_cgroup_kill_then_the_v1_way(
    hybrid: FakeHost, monkeypatch: pytest.MonkeyPatch, sleeper: Any
) -> None:
    mgr = ready(hybrid, monkeypatch)
    p = sleeper()
    Path(mgr.paths()["freezer"], "cgroup.procs").write_text(f"{p.pid}\n")
    mgr.kill_all(signal.SIGKILL)
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert [w[0] for w in hybrid.writes] == [
        "unified/c1/cgroup.kill",
        "freezer/c1/freezer.state",
        "freezer/c1/freezer.state",
    ]


def test_kill_all_ignores_vanished_processes(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    Path(mgr.paths()[""], "cgroup.procs").write_text(f"{gone.pid}\n")
    os.unlink(os.path.join(mgr.paths()[""], "cgroup.freeze"))
    mgr.kill_all(signal.SIGTERM)


# -- accounting ---------------------------------------------------------------------------------------


def test_oom_kill_count(v1host: FakeHost, v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    m1 = ready(v1host, monkeypatch)
    Path(m1.paths()["memory"], "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
    )
    assert m1.oom_kill_count() == 3
    m2 = ready(v2host, monkeypatch)
    Path(m2.paths()[""], "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n")
    assert m2.oom_kill_count() == 2
    os.unlink(os.path.join(m2.paths()[""], "memory.events"))
    assert m2.oom_kill_count() == 0


def test_v1_stats(v1host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v1host, monkeypatch)
    p = mgr.paths()
    v1host.put(
        Path(p["cpuacct"]),
        {
            "cpuacct.usage": "3000\n",
            "cpuacct.usage_percpu": "1000 2000 \n",
            "cpuacct.usage_all": "cpu user system\n0 600 400\n1 1500 500\n",
            "cpuacct.stat": "user 7\nsystem 3\n",
            "cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n",
        },
    )
    v1host.put(
        Path(p["memory"]),
        {
            "memory.usage_in_bytes": "4096\n",
            "memory.max_usage_in_bytes": "8192\n",
            "memory.failcnt": "1\n",
            "memory.limit_in_bytes": f"{32 * M}\n",
            "memory.memsw.usage_in_bytes": "4096\n",
            "memory.memsw.limit_in_bytes": f"{64 * M}\n",
            "memory.stat": "cache 100\nrss 200\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
        },
    )
    v1host.put(Path(p["pids"]), {"pids.current": "3\n", "pids.max": "10\n"})
    v1host.put(
        Path(p["blkio"]),
        {
            "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
            "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 0\nTotal 1\n",
        },
    )
    v1host.put(Path(p["cpuset"]), {"cpuset.cpus": "0-2,5\n", "cpuset.mems": "0\n"})
    s = mgr.stats()
    assert s["cpu"] == {
        "usage": {
            "total": 3000,
            "percpu": [1000, 2000],
            "percpu_kernel": [400, 500],
            "percpu_user": [600, 1500],
            "kernel": 30_000_000,
            "user": 70_000_000,
        },
        "throttling": {"periods": 10, "throttledPeriods": 2, "throttledTime": 5000},
    }
    assert s["cpuset"] == {"cpus": [0, 1, 2, 5], "mems": [0]}
    assert s["memory"]["cache"] == 100
    assert s["memory"]["usage"] == {"limit": 32 * M, "usage": 4096, "max": 8192, "failcnt": 1}
    assert s["memory"]["swap"] == {"limit": 64 * M, "usage": 4096, "failcnt": 0}
    assert s["memory"]["raw"] == {"cache": 100, "rss": 200}
    assert s["memory"]["event_count"] == {"max": 1, "oom_kill": 4}
    assert s["pids"] == {"current": 3, "limit": 10}
    assert s["blkio"] == {
        "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 1}, {"major": 8, "op": "Write"}],
        "ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 4096}, {"major": 8, "op": "Write"}],
    }
    assert s["hugetlb"] == {} and s["intel_rdt"] == {} and s["network_interfaces"] is None


def test_v2_stats(v2host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = ready(v2host, monkeypatch)
    v2host.put(
        Path(mgr.paths()[""]),
        {
            "cpu.stat": "usage_usec 30\nuser_usec 20\nsystem_usec 10\n"
            "nr_periods 4\nnr_throttled 1\nthrottled_usec 7\n",
            "memory.current": "4096\n",
            "memory.max": "max\n",
            "memory.peak": "9000\n",
            "memory.swap.current": "100\n",
            "memory.swap.max": f"{M}\n",
            "memory.events": "low 0\nhigh 1\nmax 2\noom 1\noom_kill 1\n",
            "memory.stat": "anon 10\nfile 20\n",
            "pids.current": "2\n",
            "pids.max": "max\n",
            "io.stat": "8:0 rbytes=4096 wbytes=0 rios=2 wios=0 dbytes=0 dios=0\n",
            "hugetlb.2MB.current": "0\n",
            "hugetlb.2MB.events": "max 3\n",
        },
    )
    s = mgr.stats()
    assert s["cpu"] == {
        "usage": {"total": 30000, "kernel": 10000, "user": 20000},
        "throttling": {"periods": 4, "throttledPeriods": 1, "throttledTime": 7000},
    }
    mem = s["memory"]
    assert mem["cache"] == 20
    assert mem["usage"] == {"limit": (1 << 64) - 1, "usage": 4096, "max": 9000, "failcnt": 2}
    assert mem["swap"] == {"limit": (1 << 64) - 1, "usage": 4196, "failcnt": 0}  # mem+swap, like v1
    assert mem["event_count"] == {"low": 0, "high": 1, "max": 2, "oom": 1, "oom_kill": 1}
    assert s["pids"] == {"current": 2}
    assert s["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 4096}, {"major": 8, "op": "Write"}],
        "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 2}, {"major": 8, "op": "Write"}],
    }
    assert s["hugetlb"] == {"2MB": {"failcnt": 3}}


def test_stats_of_a_bare_cgroup_has_the_full_shape(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, "v1", v1_controllers=("freezer",))
    mgr = host.manager()
    mgr.create()
    s = mgr.stats()
    assert set(s) == {
        "cpu",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "hugetlb",
        "intel_rdt",
        "network_interfaces",
    }
    assert s["memory"]["usage"] == {"limit": 0, "failcnt": 0}
    assert s["cpu"]["usage"] == {"kernel": 0, "user": 0}


# -- conversions ------------------------------------------------------------------------------------


def test_shares_to_weight_matches_runc_and_crun() -> None:
    assert [convert.shares_to_weight(s) for s in (0, 1, 2, 3, 512, 1024, 2048, 100000, 262144, 10**6)] == [
        0,
        1,
        1,
        2,
        59,
        100,
        174,
        4340,
        10000,
        10000,
    ]
    weights = [convert.shares_to_weight(s) for s in range(2, 262145, 97)]
    assert weights == sorted(weights)


def test_blkio_weight_conversion() -> None:
    assert [convert.blkio_weight_to_io_weight(w) for w in (0, 10, 500, 1000)] == [0, 1, 4950, 10000]

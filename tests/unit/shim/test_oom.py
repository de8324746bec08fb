from __future__ import annotations

import os
from pathlib import Path

from ketch.shim import oom

MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / {root}/memory rw,relatime - cgroup cgroup rw,memory
32 31 0:29 / {root}/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw
"""


def _own_cgroups() -> dict[str, str]:
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0":
            paths[""] = path
        elif "memory" in controllers.split(","):
            paths["memory"] = path
    return paths


def test_counter_files_follow_the_process_cgroup(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO.format(root=tmp_path))
    files = oom.counter_files(os.getpid(), None, mountinfo=str(info))
    own = _own_cgroups()
    expected = []
    if "memory" in own:
        expected.append(
            (os.path.join(tmp_path, "memory", own["memory"].lstrip("/"), "memory.oom_control"), "oom_kill")
        )
    if "" in own:
        expected.append((os.path.join(tmp_path, "unified", own[""].lstrip("/"), "memory.events"), "oom_kill"))
    assert files == expected


def test_absolute_cgroups_path_when_the_process_is_gone(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO.format(root=tmp_path))
    files = oom.counter_files(2**22 + 1, "/ketch/c1", mountinfo=str(info))  # above pid_max: no such process
    assert files == [
        (f"{tmp_path}/memory/ketch/c1/memory.oom_control", "oom_kill"),
        (f"{tmp_path}/unified/ketch/c1/memory.events", "oom_kill"),
    ]
    assert oom.counter_files(2**22 + 1, "relative/c1", mountinfo=str(info)) == []


def test_mount_root_is_stripped(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text("41 31 0:38 /outer /mnt rw - cgroup2 cgroup2 rw\n")
    assert oom.counter_files(2**22 + 1, "/outer/c1", mountinfo=str(info)) == [
        ("/mnt/c1/memory.events", "oom_kill")
    ]


def test_oom_kills_reads_the_largest_counter(tmp_path: Path) -> None:
    v1 = tmp_path / "oom_control"
    v1.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    v2 = tmp_path / "memory.events"
    v2.write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert (
        oom.oom_kills([(str(v1), "oom_kill"), (str(v2), "oom_kill"), (str(tmp_path / "gone"), "oom_kill")])
        == 2
    )
    v1.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    v2.write_text("oom 0\noom_kill 0\n")
    assert oom.oom_kills([(str(v1), "oom_kill"), (str(v2), "oom_kill")]) == 0
    assert oom.oom_kills([]) == 0

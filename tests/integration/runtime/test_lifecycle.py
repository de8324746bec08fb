"""create / start / state / kill / delete / run / list / ps / pause / resume / exec on real containers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.integration.runtime.conftest import Runtime, cgroup_dirs

pytestmark = pytest.mark.root


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_run_foreground_output_and_exit_code(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(["sh", "-c", "echo out; echo err >&2; exit 3"])
    proc = rt.run(bundle, unique_id)
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr
    assert proc.returncode == 3
    assert not (rt.root / unique_id).exists()
    assert cgroup_dirs(unique_id) == []


def test_run_is_pid_one_and_forwards_signals(rt: Runtime, unique_id: str) -> None:
    # The trap comes before the echo: pid 1 ignores signals it has no handler for, so a TERM that arrived
    # before the trap would be lost.
    bundle = rt.bundle(["sh", "-c", "trap 'exit 42' TERM; echo $$; while true; do sleep 0.05; done"])
    rt.ids.append(unique_id)
    with subprocess.Popen(
        [rt.binary, "--root", str(rt.root), "run", "--bundle", str(bundle), unique_id],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "1"
            proc.send_signal(signal.SIGTERM)  # to the runtime, which forwards it to the container's init
            assert proc.wait(timeout=10) == 42
        finally:
            if proc.poll() is None:
                proc.kill()


def test_run_exit_status_of_killed_container(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(["sleep", "30"])
    rt.ids.append(unique_id)
    with subprocess.Popen(
        [rt.binary, "--root", str(rt.root), "run", "--bundle", str(bundle), unique_id]
    ) as proc:
        try:
            assert wait_for(
                lambda: rt("state", unique_id).returncode == 0 and rt.state(unique_id)["status"] == "running"
            )
            rt("kill", unique_id, "9", check=True)
            assert proc.wait(timeout=10) == 137
        finally:
            if proc.poll() is None:
                proc.kill()


def test_lifecycle_states(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    bundle = rt.bundle(["sleep", "30"])
    pid_file = tmp_path / "pid"
    rt.create(bundle, unique_id, "--pid-file", str(pid_file), check=True)
    state = rt.state(unique_id)
    assert state["status"] == "created"
    assert state["id"] == unique_id
    assert state["bundle"] == str(bundle)
    assert int(pid_file.read_text()) == state["pid"] > 0
    # before start the init has not exec'd the user process yet
    assert Path(f"/proc/{state['pid']}/cmdline").read_bytes().split(b"\0")[0] != b"sleep"
    listing = json.loads(rt("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listing] == [unique_id]
    rt("start", unique_id, check=True)
    assert rt.state(unique_id)["status"] == "running"
    assert Path(f"/proc/{state['pid']}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"
    assert rt("start", unique_id).returncode == 1
    pids = json.loads(rt("ps", "--format", "json", unique_id, check=True).stdout)
    assert pids == [state["pid"]]
    table = rt("ps", unique_id, check=True).stdout
    assert "sleep 30" in table
    rt("kill", unique_id, "KILL", check=True)
    assert wait_for(lambda: rt.state(unique_id)["status"] == "stopped")
    assert rt("kill", unique_id, "KILL").returncode != 0
    rt("delete", unique_id, check=True)
    assert not (rt.root / unique_id).exists()
    assert cgroup_dirs(unique_id) == []
    err = rt("state", unique_id)
    assert err.returncode == 1 and "does not exist" in err.stderr


def test_kill_signal_forms(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    bundle = rt.bundle(
        [
            "sh",
            "-c",
            "trap 'echo got-usr1 > /tmp/sig' USR1; touch /tmp/ready; while true; do sleep 0.05; done",
        ]
    )
    rt.run(bundle, unique_id, "-d", check=True)
    rootfs = bundle / "rootfs"
    assert wait_for((rootfs / "tmp/ready").exists)  # the trap is in place
    for form in ("USR1", "SIGUSR1", "10"):
        (rootfs / "tmp/sig").unlink(missing_ok=True)
        rt("kill", unique_id, form, check=True)
        assert wait_for(lambda: (rootfs / "tmp/sig").exists()), form
    assert "unknown signal" in rt("kill", unique_id, "SIGNOPE").stderr
    rt("kill", "--all", unique_id, "KILL", check=True)
    assert wait_for(lambda: rt.state(unique_id)["status"] == "stopped")


def test_delete_running_needs_force(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(["sleep", "30"])
    rt.run(bundle, unique_id, "-d", check=True)
    proc = rt("delete", unique_id)
    assert proc.returncode == 1 and "not stopped" in proc.stderr
    pid = rt.state(unique_id)["pid"]
    rt("delete", "--force", unique_id, check=True)
    assert wait_for(
        lambda: (
            not Path(f"/proc/{pid}").exists()
            or Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
        )
    )
    assert cgroup_dirs(unique_id) == []


def test_delete_created_container(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(["true"])
    rt.create(bundle, unique_id, check=True)
    pid = rt.state(unique_id)["pid"]
    rt("delete", unique_id, check=True)
    assert wait_for(
        lambda: (
            not os.path.exists(f"/proc/{pid}")
            or Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
        )
    )


def test_pause_resume_freezes(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done"])
    rt.run(bundle, unique_id, "-d", check=True)
    count = bundle / "rootfs/tmp/count"
    assert wait_for(count.exists)
    rt("pause", unique_id, check=True)
    assert rt.state(unique_id)["status"] == "paused"
    frozen = count.read_text()
    time.sleep(0.3)
    assert count.read_text() == frozen
    assert rt("pause", unique_id).returncode == 1
    rt("resume", unique_id, check=True)
    assert rt.state(unique_id)["status"] == "running"
    assert wait_for(lambda: count.read_text() != frozen)
    assert rt("resume", unique_id).returncode == 1


def test_exec(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    bundle = rt.bundle(["sleep", "30"], hostname="exectest")
    rt.run(bundle, unique_id, "-d", check=True)
    proc = rt(
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        unique_id,
        "sh",
        "-c",
        "echo $FOO $(pwd) $(hostname) $$; exit 7",
    )
    assert proc.returncode == 7
    foo, cwd, host, pid = proc.stdout.split()
    assert (foo, cwd, host) == ("bar", "/tmp", "exectest")
    assert int(pid) > 1  # inside the container's pid namespace
    assert rt("exec", "--user", "65534:65534", unique_id, "id", "-u").stdout.strip() == "65534"
    process = dict(rt.config(bundle)["process"], args=["sh", "-c", "echo from-process-file"])
    (tmp_path / "process.json").write_text(json.dumps(process))
    assert rt("exec", "--process", str(tmp_path / "process.json"), unique_id).stdout == "from-process-file\n"
    pid_file = tmp_path / "exec.pid"
    rt("exec", "-d", "--pid-file", str(pid_file), unique_id, "sleep", "20", check=True)
    exec_pid = int(pid_file.read_text())
    assert exec_pid in json.loads(rt("ps", "--format", "json", unique_id).stdout)
    missing = rt("exec", unique_id, "nonexistent-binary")
    assert missing.returncode == 255
    # logrus-style text log: the message is quoted, its quotes escaped
    assert 'exec: \\"nonexistent-binary\\": executable file not found in $PATH' in missing.stderr
    assert "ketch-runtime exec failed: unable to start container process" in missing.stderr


def test_update_changes_cgroup(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    bundle = rt.bundle(["sleep", "30"], linux={"resources": {"memory": {"limit": 64 * 1024 * 1024}}})
    rt.run(bundle, unique_id, "-d", check=True)
    read = [
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    ]
    assert rt("exec", unique_id, *read).stdout.strip() == str(64 * 1024 * 1024)
    rt("update", "--memory", "32m", "--pids-limit", "50", unique_id, check=True)
    assert rt("exec", unique_id, *read).stdout.strip() == str(32 * 1024 * 1024)
    (tmp_path / "res.json").write_text(json.dumps({"memory": {"limit": 48 * 1024 * 1024}}))
    rt("update", "--resources", str(tmp_path / "res.json"), unique_id, check=True)
    assert rt("exec", unique_id, *read).stdout.strip() == str(48 * 1024 * 1024)


def test_list_table(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(["sleep", "30"])
    rt.run(bundle, unique_id, "-d", check=True)
    lines = rt("list", check=True).stdout.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert lines[1].split()[0] == unique_id and lines[1].split()[2] == "running"
    assert rt("list", "-q", check=True).stdout == unique_id + "\n"

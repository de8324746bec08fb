"""Bad bundles and commands: a clear message naming the problem, exit 1, and nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.integration.runtime.conftest import Runtime, cgroup_dirs

pytestmark = pytest.mark.root


def processes_in(bundle: Path) -> list[int]:
    """Processes whose root is inside the bundle (a stray container init would be one)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/root").startswith(str(bundle)):
                found.append(int(pid))
        except OSError:
            continue
    return found


def assert_nothing_left(rt: Runtime, cid: str, bundle: Path) -> None:
    assert not (rt.root / cid).exists()
    assert cgroup_dirs(cid) == []
    assert processes_in(bundle) == []


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing-config", "config.json not found in bundle"),
        ("invalid-json", "config.json: invalid JSON"),
        ("unknown-namespace", "linux.namespaces[0].type: unknown namespace type 'sideways'"),
        ("missing-rootfs", "does not exist"),
        ("missing-executable", "executable file not found in $PATH"),
        ("bad-cwd", "chdir to cwd"),
        ("bad-mount-source", "bind mount source"),
        ("bad-capability", "unknown capability 'CAP_MAGIC'"),
        ("bad-seccomp-action", "unknown action"),
    ],
)
def test_bad_bundle(rt: Runtime, unique_id: str, case: str, expected: str) -> None:
    bundle = rt.bundle(["sh", "-c", "true"])
    config = rt.config(bundle)
    if case == "missing-config":
        (bundle / "config.json").unlink()
    elif case == "invalid-json":
        (bundle / "config.json").write_text('{"ociVersion": "1.1.0", ')
    else:
        if case == "unknown-namespace":
            config["linux"]["namespaces"] = [{"type": "sideways"}]
        elif case == "missing-rootfs":
            config["root"]["path"] = "no-such-rootfs"
        elif case == "missing-executable":
            config["process"]["args"] = ["definitely-not-here"]
        elif case == "bad-cwd":
            config["process"]["cwd"] = "/no/such/dir"
        elif case == "bad-mount-source":
            config["mounts"].append(
                {"destination": "/x", "type": "bind", "source": "/no/such/source", "options": ["bind"]}
            )
        elif case == "bad-capability":
            config["process"]["capabilities"]["bounding"].append("CAP_MAGIC")
        elif case == "bad-seccomp-action":
            config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_EXPLODE"}
        rt.write_config(bundle, config)
    for command in ("create", "run"):
        proc = rt(command, "--bundle", str(bundle), unique_id)
        assert proc.returncode == 1, proc.stderr
        assert expected in proc.stderr.replace('\\"', '"'), proc.stderr
        assert_nothing_left(rt, unique_id, bundle)


def test_duplicate_id_leaves_first_container_alone(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(["sleep", "30"])
    rt.run(bundle, unique_id, "-d", check=True)
    pid = rt.state(unique_id)["pid"]
    proc = rt("create", "--bundle", str(bundle), unique_id)
    assert proc.returncode == 1 and f"container with id exists: {unique_id}" in proc.stderr
    assert rt.state(unique_id)["status"] == "running" and rt.state(unique_id)["pid"] == pid


@pytest.mark.parametrize(
    "args,expected",
    [
        (["state"], "requires a minimum of 1 argument"),
        (["kill", "nope", "KILL"], "does not exist"),
        (["start", "../etc"], "invalid container id format"),
        (["create", "--no-such-flag", "x"], "flag provided but not defined: -no-such-flag"),
        (["frobnicate"], "No help topic for 'frobnicate'"),
        (["--systemd-cgroup", "create", "x"], "systemd cgroup driver is not supported"),
    ],
)
def test_bad_commands(rt: Runtime, args: list[str], expected: str) -> None:
    proc = rt(*args)
    assert proc.returncode == 1
    assert expected in proc.stderr


def test_log_file_json(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    proc = rt("--log", str(log), "--log-format", "json", "state", unique_id)
    assert proc.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"] and entry["time"].endswith("Z")
    assert "does not exist" in proc.stderr  # a person still sees it

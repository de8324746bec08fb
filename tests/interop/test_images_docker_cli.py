"""Debian's docker CLI (20.10) against ketchd for the image commands: pull from a private docker-registry,
images, tag, inspect, history, save, rmi, load, push (skopeo sees the result) and image prune."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.integration.image import registry as reg

DOCKER = "/usr/bin/docker"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.root,
    pytest.mark.skipif(not os.path.exists(DOCKER), reason=f"{DOCKER} is not installed (Debian docker.io)"),
    pytest.mark.skipif(reg.missing_tools() is not None, reason=reg.missing_tools() or ""),
]


@dataclass
class Setup:
    registry: str
    image: reg.LayoutImage
    policy: Path
    env: dict[str, str]
    work: Path

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def ok(self, *args: str) -> str:
        proc = self.docker(*args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"ketchd did not start: {log.read_text()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("images-docker-cli")
    layout = work / "layout"
    image = reg.make_oci_layout(layout, busybox_rootfs, "t1")
    policy = reg.write_policy(work / "policy.json")
    try:
        registry = reg.Registry(work / "registry").start()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    short = Path(tempfile.mkdtemp(prefix="kd-"))  # unix socket paths are short
    sock = short / "k.sock"
    log = work / "ketchd.log"
    empty = work / "daemon.json"
    empty.write_text("{}")
    ketchd: subprocess.Popen[bytes] | None = None
    try:
        proc = reg.skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:t1",
                          f"docker://{registry.address}/ketch/bb:t1", policy=policy)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        with open(log, "wb") as out:
            ketchd = subprocess.Popen(
                [sys.executable, "-m", "ketch.daemon", "--config-file", str(empty),
                 "--data-root", str(work / "data"), "--exec-root", str(short / "exec"),
                 "--pidfile", str(short / "ketchd.pid"), "-H", f"unix://{sock}", "--log-level", "debug"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_for_socket(sock, ketchd, log)
        env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(work / "docker-config")}
        yield Setup(registry.address, image, policy, env, work)
    finally:
        if ketchd is not None:
            os.kill(ketchd.pid, signal.SIGTERM)
            try:
                assert ketchd.wait(timeout=30) == 0, log.read_text()
            except subprocess.TimeoutExpired:
                os.kill(ketchd.pid, signal.SIGKILL)
                ketchd.wait()
                raise
            assert not sock.exists() and not (short / "ketchd.pid").exists()
        registry.stop()
        shutil.rmtree(short, ignore_errors=True)


def test_image_commands(setup: Setup) -> None:
    ref = f"{setup.registry}/ketch/bb:t1"
    out = setup.ok("pull", ref)
    assert "t1: Pulling from ketch/bb" in out
    assert f"Digest: {setup.image.manifest_digest}" in out
    assert f"Status: Downloaded newer image for {ref}" in out and out.rstrip().endswith(ref)
    assert f"Status: Image is up to date for {ref}" in setup.ok("pull", ref)

    listed = setup.ok("images")
    short_id = setup.image.config_digest.partition(":")[2][:12]
    assert listed.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(
        line.split()[:3] == [f"{setup.registry}/ketch/bb", "t1", short_id] for line in listed.splitlines()
    )

    setup.ok("tag", ref, "bb:local")
    inspected = json.loads(setup.ok("inspect", "bb:local"))[0]
    assert inspected["Id"] == setup.image.config_digest
    assert sorted(inspected["RepoTags"]) == sorted([ref, "bb:local"])
    assert inspected["RepoDigests"] == [f"{setup.registry}/ketch/bb@{setup.image.manifest_digest}"]
    assert setup.ok("inspect", "-f", "{{.Os}}", "bb:local").strip() == "linux"
    history = setup.ok("history", "--no-trunc", "bb:local").splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"] and len(history) >= 2

    saved = setup.work / "save.tar"
    setup.ok("save", "-o", str(saved), "bb:local")
    names = subprocess.run(["tar", "-tf", str(saved)], capture_output=True, text=True, check=True).stdout
    assert "manifest.json" in names.split()

    removed = setup.ok("rmi", "bb:local", ref)
    assert "Untagged: bb:local" in removed and f"Deleted: {setup.image.config_digest}" in removed
    missing = setup.docker("rmi", "bb:local")
    assert missing.returncode != 0 and "No such image: bb:local" in missing.stderr
    assert setup.docker("inspect", "bb:local").returncode != 0

    assert "Loaded image: bb:local" in setup.ok("load", "-i", str(saved))
    pushed = f"{setup.registry}/ketch/pushed:p1"
    setup.ok("tag", "bb:local", pushed)
    out = setup.ok("push", pushed)
    assert f"The push refers to repository [{setup.registry}/ketch/pushed]" in out
    assert "p1: digest: sha256:" in out
    seen = reg.skopeo("inspect", "--tls-verify=false", f"docker://{pushed}", policy=setup.policy)
    assert seen.returncode == 0, seen.stderr
    assert json.loads(seen.stdout)["Digest"] in out

    # untag everything but leave the image: prune -f removes the dangling image
    setup.ok("rmi", pushed)
    setup.ok("tag", "bb:local", "bb:other")
    setup.ok("rmi", "bb:local")
    assert "bb" in setup.ok("images")
    prune = setup.docker("image", "prune", "-f")
    assert prune.returncode == 0 and "Total reclaimed space" in prune.stdout
    bad = setup.docker("pull", f"{setup.registry}/ketch/nosuch:t1")
    # the manifest is resolved before any progress, so the error is a status code, as dockerd answers it
    assert bad.returncode == 1 and "ketch/nosuch:t1 not found: manifest unknown" in bad.stderr
    assert bad.stderr.startswith("Error response from daemon: ")

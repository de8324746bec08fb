"""Health checks through the real docker CLIs on a private ketchd: a probe that fails turns the container
unhealthy after its retries, a probe that passes makes it healthy again, and docker inspect, docker ps (its
status and its health filter) and docker events show it as dockerd does. An image's HEALTHCHECK applies
unless the run disables it."""

from __future__ import annotations

import glob
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.interop.ketchd import Ketchd, available_clis

pytestmark = pytest.mark.interop

IMAGE = "busybox:ketch"
CLI_PARAMS: list[Any] = sorted(available_clis()) or [
    pytest.param("20.10", marks=pytest.mark.skip("no docker CLI"))
]


class Cli:
    def __init__(self, ketchd: Ketchd, release: str) -> None:
        self.ketchd, self.release, self.path = ketchd, release, available_clis()[release]
        self.names: list[str] = []
        self.images: list[str] = []

    def name(self, base: str) -> str:
        self.names.append(f"khealth{self.release.replace('.', '')}-{base}")
        return self.names[-1]

    def ok(self, *args: str) -> str:
        done = self.ketchd.docker(*args, cli=self.path)
        assert done.returncode == 0, (f"docker {self.release} {' '.join(args)} exited {done.returncode}: "
                                      f"{done.stderr}\nketchd log:\n{self.ketchd.log_tail()}")  # fmt: skip
        return done.stdout

    def health(self, name: str) -> str:
        return self.ok("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", name).strip()

    def cleanup(self) -> None:
        existing = set(self.ok("ps", "-a", "--format", "{{.Names}}").split())
        mine = [name for name in self.names if name in existing]
        if mine:
            self.ketchd.docker("rm", "-f", *mine, cli=self.path, timeout=120)
        if self.images:
            self.ketchd.docker("rmi", *self.images, cli=self.path)


@pytest.fixture(params=CLI_PARAMS)
def cli(request: pytest.FixtureRequest, ketchd: Ketchd) -> Iterator[Cli]:
    client = Cli(ketchd, request.param)
    yield client
    client.cleanup()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_unhealthy_then_healthy(cli: Cli) -> None:
    name = cli.name("probe")
    since = str(int(time.time()) - 1)
    cid = cli.ok("run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
                 "--health-retries", "2", IMAGE, "sh", "-c", "sleep 1000").strip()  # fmt: skip
    assert cli.health(name) in ("starting", "unhealthy")
    wait_until(lambda: cli.health(name) == "unhealthy", "unhealthy")
    state = json.loads(cli.ok("inspect", "-f", "{{json .State.Health}}", name))
    assert state["FailingStreak"] >= 2
    assert 2 <= len(state["Log"]) <= 5
    assert all(entry["ExitCode"] == 1 and entry["Output"] == "" for entry in state["Log"])
    assert cli.ok("ps", "--filter", f"name={name}", "--format", "{{.Status}}").strip().endswith("(unhealthy)")
    assert cli.ok("ps", "-q", "--no-trunc", "--filter", "health=unhealthy").split().count(cid) == 1
    assert cid not in cli.ok("ps", "-q", "--no-trunc", "--filter", "health=healthy").split()

    cli.ok("exec", name, "touch", "/tmp/ok")
    wait_until(lambda: cli.health(name) == "healthy", "healthy")
    state = json.loads(cli.ok("inspect", "-f", "{{json .State.Health}}", name))
    assert state["FailingStreak"] == 0 and state["Log"][-1]["ExitCode"] == 0
    assert cli.ok("ps", "--filter", f"name={name}", "--format", "{{.Status}}").strip().endswith("(healthy)")
    assert cid in cli.ok("ps", "-q", "--no-trunc", "--filter", "health=healthy").split()
    assert cid not in cli.ok("ps", "-q", "--no-trunc", "--filter", "health=unhealthy").split()

    # the probes' process files do not pile up in the monitor's directory (one probe may be in flight)
    pattern = str(cli.ketchd.exec_root / "m" / "*" / "exec-*")
    before = set(glob.glob(pattern))
    time.sleep(1.0)  # several probes
    added = set(glob.glob(pattern)) - before
    assert len(added) <= 3, added  # process.json, pid and json of the one in flight

    events = cli.ok("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                    f"container={name}", "--filter", "event=health_status", "--format", "{{.Status}}")  # fmt: skip
    assert events.split("\n")[:2] == ["health_status: unhealthy", "health_status: healthy"]

    cli.ok("stop", "-t", "1", name)
    assert cli.health(name) == "unhealthy"  # dockerd marks a stopped container's health so


def test_the_images_healthcheck_applies(cli: Cli, busybox_tar: Path) -> None:
    image = f"khealth{cli.release.replace('.', '')}:image"
    cli.ok("import", "--change", "HEALTHCHECK --interval=200ms --retries=1 CMD echo probed; exit 3",
           str(busybox_tar), image)  # fmt: skip
    cli.images.append(image)
    name = cli.name("image")
    cli.ok("run", "-d", "--name", name, image, "sleep", "1000")
    config = json.loads(cli.ok("inspect", "-f", "{{json .Config.Healthcheck}}", name))
    assert config == {"Test": ["CMD-SHELL", "echo probed; exit 3"], "Interval": 200_000_000, "Retries": 1}
    wait_until(lambda: cli.health(name) == "unhealthy", "unhealthy")
    last = json.loads(cli.ok("inspect", "-f", "{{json .State.Health}}", name))["Log"][-1]
    assert (last["ExitCode"], last["Output"]) == (3, "probed\n")

    off = cli.name("off")
    cli.ok("run", "-d", "--name", off, "--no-healthcheck", image, "sleep", "1000")
    time.sleep(0.5)
    assert cli.ok("inspect", "-f", "{{json .State.Health}}", off).strip() == "null"
    assert cli.ok("ps", "--filter", f"name={off}", "--format", "{{.Status}}").strip().startswith("Up")
    assert "(" not in cli.ok("ps", "--filter", f"name={off}", "--format", "{{.Status}}")

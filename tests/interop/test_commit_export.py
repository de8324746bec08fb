"""``docker commit`` and ``docker export`` with the real docker CLIs (20.10 and, where installed, 28.x) against
the session's ketchd: the committed image runs with the container's changes, its config and history carry
what the CLI asked for, and export streams the container's whole filesystem, stopped or running, to a pipe
that GNU tar reads or to a file (``-o``)."""

from __future__ import annotations

import contextlib
import subprocess
import tarfile
import time
from collections.abc import Iterator
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
    """One docker CLI against ketchd; removes the containers and images it names when the test ends."""

    def __init__(self, ketchd: Ketchd, release: str) -> None:
        self.ketchd = ketchd
        self.path = available_clis()[release]
        self.tag = release.replace(".", "")
        self.containers: list[str] = []
        self.images: list[str] = []

    def container(self, base: str) -> str:
        name = f"kcx{self.tag}-{base}"
        self.containers.append(name)
        return name

    def image(self, base: str) -> str:
        name = f"kcx{self.tag}-{base}"
        self.images.append(name)
        return name

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.ketchd.docker(*args, cli=self.path, timeout=timeout)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, (f"docker {' '.join(args)} exited {done.returncode}\nstderr: {done.stderr}\n"
                                      f"ketchd log:\n{self.ketchd.log_tail()}")  # fmt: skip
        return done.stdout

    def shell(self, pipeline: str) -> subprocess.CompletedProcess[str]:
        """A shell pipeline in which ``docker`` is this CLI."""
        env = {**self.ketchd.env, "DOCKER": self.path}
        return subprocess.run(["sh", "-c", pipeline], env=env, capture_output=True, text=True, timeout=60,
                              check=False)  # fmt: skip

    def cleanup(self) -> None:
        existing = set(self("ps", "-a", "--format", "{{.Names}}").stdout.split())
        mine = [name for name in self.containers if name in existing]
        if mine:
            self("rm", "-f", *mine, timeout=120)
        for image in self.images:
            self("rmi", "-f", image)


@pytest.fixture(params=CLI_PARAMS)
def cli(request: pytest.FixtureRequest, ketchd: Ketchd) -> Iterator[Cli]:
    client = Cli(ketchd, request.param)
    yield client
    client.cleanup()


def exported_names(cli: Cli, name: str) -> set[str]:
    done = cli.shell(f'"$DOCKER" export {name} | tar -t')
    assert done.returncode == 0, done.stderr
    return {line.rstrip("/") for line in done.stdout.splitlines()}


def test_commit_of_a_stopped_container(cli: Cli) -> None:
    name, image = cli.container("stopped"), cli.image("img") + ":1"
    cli.ok("run", "--name", name, IMAGE, "sh", "-c", "echo hi > /new; rm /bin/vi")
    image_id = cli.ok(
        "commit", "-c", "ENV X=1", "-m", "msg", "-a", "Ann <ann@example.com>", name, image
    ).strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert cli.ok("run", "--rm", image, "cat", "/new") == "hi\n"
    missing = cli("run", "--rm", image, "ls", "/bin/vi")
    assert missing.returncode != 0 and "No such file" in missing.stderr + missing.stdout
    assert "X=1" in cli.ok("inspect", "-f", "{{.Config.Env}}", image)
    assert cli.ok("inspect", "-f", "{{.Author}}", image).strip() == "Ann <ann@example.com>"
    base_id = cli.ok("inspect", "-f", "{{.Id}}", IMAGE).strip()
    assert cli.ok("inspect", "-f", "{{.Parent}}", image).strip() == base_id
    assert cli.ok("images", "-q", "--no-trunc", image).strip() == image_id
    base_history = cli.ok("history", "-q", IMAGE).splitlines()
    history = cli.ok(
        "history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Comment}}", image
    ).splitlines()
    assert len(history) == len(base_history) + 1
    assert history[0] == f"{image_id}|sh -c echo hi > /new; rm /bin/vi|msg"
    layers = cli.ok("inspect", "-f", "{{len .RootFS.Layers}}", image).strip()
    assert int(layers) == int(cli.ok("inspect", "-f", "{{len .RootFS.Layers}}", IMAGE).strip()) + 1
    events = cli.ok("events", "--since", "1m", "--until", str(int(time.time()) + 1), "--filter", f"container={name}",
                    "--filter", "event=commit", "--format", "{{.Actor.Attributes.imageRef}}")  # fmt: skip
    assert events.strip() == image


def test_export_of_a_stopped_container(cli: Cli, tmp_path: Path) -> None:
    name = cli.container("export")
    cli.ok("run", "--name", name, IMAGE, "sh", "-c", "echo hi > /new; rm -f /bin/vi")
    names = exported_names(cli, name)
    assert {"new", "bin", "bin/sh", "etc/passwd"} <= names
    assert "bin/vi" not in names
    out = tmp_path / "export.tar"
    cli.ok("export", "-o", str(out), name)
    with tarfile.open(out) as tf:
        assert {m.name.rstrip("/") for m in tf.getmembers()} == names
        member = tf.extractfile("new")
        assert member is not None and member.read() == b"hi\n"
    # The view mounted for the export is gone, and the container starts again as it was.
    scratch = cli.ketchd.exec_root / "export"
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(scratch) in line]
    assert not scratch.exists() or list(scratch.iterdir()) == []
    assert cli.ok("start", "-a", name) == ""
    assert exported_names(cli, name) == names


def test_running_container(cli: Cli) -> None:
    name = cli.container("running")
    cli.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", "echo run > /r; exec sleep 1000")
    deadline = time.monotonic() + 10
    while cli("exec", name, "cat", "/r").stdout != "run\n":
        assert time.monotonic() < deadline, "the container never wrote /r"
        time.sleep(0.05)
    extracted = cli.shell(f'"$DOCKER" export {name} | tar -x -O r')
    assert (extracted.returncode, extracted.stdout) == (0, "run\n"), extracted.stderr
    assert "proc/self" not in exported_names(cli, name)  # the container's own mounts are not in the tree
    image = cli.image("fromrunning")
    cli.ok("commit", name, image)
    assert cli.ok("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", name).strip() == "running false"
    assert cli.ok("run", "--rm", image, "cat", "/r") == "run\n"
    nopause = cli.image("nopause")
    cli.ok("commit", "--pause=false", name, nopause)
    assert cli.ok("run", "--rm", nopause, "cat", "/r") == "run\n"


def test_errors(cli: Cli) -> None:
    missing = cli("commit", "kcx-no-such-container", cli.image("never"))
    assert missing.returncode != 0 and "No such container: kcx-no-such-container" in missing.stderr
    name = cli.container("errors")
    cli.ok("create", "--name", name, IMAGE, "true")
    bad = cli("commit", "-c", "FROM busybox", name, cli.image("bad"))
    assert bad.returncode != 0 and "from is not a valid change command" in bad.stderr
    gone = cli("export", "kcx-no-such-container")
    assert gone.returncode != 0 and "No such container: kcx-no-such-container" in gone.stderr
    assert cli("images", "-q", cli.image("bad")).stdout == ""


def test_docker_py_bodies(ketchd: Ketchd) -> None:
    """docker-py always sends a body: ``{}`` means the container's Config (Go leaves the embedded Config nil), a
    Config with fields replaces it and is completed from the container's (moby's merge)."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=ketchd.host, timeout=60)
    container = client.containers.run(IMAGE, ["sh", "-c", "echo py > /py"], name="kcx-py", detach=True,
                                       environment=["A=1"])  # fmt: skip
    images: list[str] = []
    try:
        container.wait(timeout=30)
        plain = container.commit(repository="kcx-py-plain", tag="1", changes=["ENV B=2"])
        images.append(plain.id)
        config = plain.attrs["Config"]
        assert config["Cmd"] == ["sh", "-c", "echo py > /py"] and config["Image"] == IMAGE
        assert "A=1" in config["Env"] and "B=2" in config["Env"]
        replaced = container.commit(repository="kcx-py-conf", conf={"Cmd": ["cat", "/py"], "Env": ["C=3"]})
        images.append(replaced.id)
        config = replaced.attrs["Config"]
        assert config["Cmd"] == ["cat", "/py"] and config["Image"] == ""  # merge does not fill Image
        assert config["Env"][0] == "C=3" and "A=1" in config["Env"]
        assert client.containers.run(replaced.id, remove=True) == b"py\n"
    finally:
        container.remove(force=True)
        for image in images:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image, force=True)
        client.close()

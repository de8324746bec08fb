"""The real docker CLIs (Debian's 20.10 and, where present, a current 28.x) against ketch's API server.

Both start with ``HEAD /_ping``, take the API version from its ``Api-Version`` header (28.x negotiates down
from its own maximum) and call ``GET /v1.41/version``. ``/_ping``'s headers are compared with what dockerd
20.10 answered (docker-api-traces/cli-20.10/00-ping-only).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ketch

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
CLIS = {"20.10": "/usr/bin/docker", "28": "/usr/local/bin/docker"}
PING_TRACE = Path("/work/shared/docker-api-traces/cli-20.10/00-ping-only/docker.calls.jsonl")

# What dockerd 20.10.24 answered to `curl -sI --unix-socket ... http://localhost/_ping`, less Date and Server.
DOCKERD_HEAD_PING = {
    "Api-Version": "1.41",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Content-Length": "0",
    "Content-Type": "text/plain; charset=utf-8",
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Pragma": "no-cache",
}


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def api_socket() -> Iterator[str]:
    base = Path(tempfile.mkdtemp(prefix="kapi-", dir="/tmp"))  # short: unix socket paths are limited
    sock = str(base / "k.sock")
    log = open(base / "server.log", "wb")  # noqa: SIM115  # closed in the finally below
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ketch.api.server", "--host", f"unix://{sock}", "--log-level", "debug"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 15
        while not _answers(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the API server did not start:\n{(base / 'server.log').read_text()}")
            time.sleep(0.05)
        yield sock
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, (base / "server.log").read_text()
        assert not os.path.exists(sock)  # the server removes its socket when it stops
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def docker_env(api_socket: str, tmp_path: Path) -> dict[str, str]:
    # an empty DOCKER_CONFIG: no contexts or credentials of this machine's user get in the way
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
            "DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": f"unix://{api_socket}"}  # fmt: skip


def _docker(cli: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, (
        f"{cli} {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


@pytest.mark.parametrize("release", sorted(CLIS))
def test_docker_version(release: str, docker_env: dict[str, str]) -> None:
    cli = CLIS[release]
    if not os.path.exists(cli):
        pytest.skip(f"{cli} (docker CLI {release}) is not installed")
    out = _docker(cli, docker_env, "version")
    server = out[out.index("Server:") :]
    assert server.startswith("Server: ketch\n Engine:\n")
    assert re.search(rf"^  Version:\s+{re.escape(ketch.__version__)}$", server, re.M), out
    assert re.search(r"^  API version:\s+1\.41 \(minimum version 1\.24\)$", server, re.M), out
    assert re.search(rf"^  OS/Arch:\s+linux/{_go_arch()}$", server, re.M), out
    fields = json.loads(_docker(cli, docker_env, "version", "--format", "{{json .}}"))
    assert fields["Client"]["ApiVersion"] == "1.41"  # 28.x: downgraded to what ketch reports
    assert fields["Server"]["ApiVersion"] == "1.41"
    assert fields["Server"]["Version"] == ketch.__version__
    assert fields["Server"]["KernelVersion"] == os.uname().release
    assert _docker(cli, docker_env, "version", "--format", "{{.Server.APIVersion}}").strip() == "1.41"


def _go_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _curl(sock: str, *args: str) -> str:
    if not shutil.which("curl"):
        pytest.skip("needs curl")
    done = subprocess.run(
        ["curl", "-s", "--unix-socket", sock, *args], capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ping_matches_dockerd(api_socket: str) -> None:
    assert _curl(api_socket, "http://localhost/_ping") == "OK"
    head = _curl(api_socket, "-I", "http://localhost/_ping")
    status, *lines = [line for line in head.splitlines() if line]
    assert status == "HTTP/1.1 200 OK"
    headers = dict(line.split(": ", 1) for line in lines)
    assert headers.pop("Server") == f"Docker/{ketch.__version__} (linux)"
    assert headers.pop("Date").endswith(" GMT")
    assert headers == DOCKERD_HEAD_PING
    if PING_TRACE.exists():  # the recording itself, where the traces are at hand
        recorded = [json.loads(line) for line in PING_TRACE.read_text().splitlines()]
        head_call = next(call for call in recorded if call["method"] == "HEAD")
        expected = {k: v for k, v in head_call["resp_headers"] if k not in ("Date", "Server")}
        assert headers == expected

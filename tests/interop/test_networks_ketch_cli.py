"""The ketch CLI against a real ketchd's networking: ``ketch network create/ls/inspect/connect/disconnect/rm/
prune``, ``ketch run --network ... --network-alias/--ip`` with name lookups and pings between containers,
``ketch port`` and ``ps --filter network``. Where Debian's docker CLI (20.10) is installed, what ketch prints
for the same daemon answers is compared with what docker prints, byte for byte.

Safety: traffic goes only to 127.0.0.1 and to addresses of the namespaces these containers live in; names are
looked up only through ketchd's own resolver, and only names it knows (no query leaves the machine). The
last test removes everything the module made and checks that nothing of it is left.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.interop.ketchd import REPO, Ketchd

pytestmark = pytest.mark.interop

IMAGE = "busybox:ketch"
PREFIX = "kcli"
SUBNET, GATEWAY = "10.213.77.0/24", "10.213.77.1"
DOCKER = "/usr/bin/docker"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
HTTPD = "mkdir -p /www && echo ketch-ok > /www/index.html && exec httpd -f -p 80 -h /www"


def _ketch_bin() -> str:
    for candidate in (REPO / ".venv" / "bin" / "ketch", Path(shutil.which("ketch") or "/nonexistent")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.skip("the ketch CLI is not installed (.venv/bin/ketch)")


class Made:
    def __init__(self) -> None:
        self.containers: list[str] = []  # names
        self.networks: list[str] = []  # names


@pytest.fixture(scope="module")
def made(ketchd: Ketchd) -> Iterator[Made]:
    things = Made()
    yield things
    for name in things.containers:  # when a test failed before test_nothing_left_behind ran
        ketch(ketchd, "rm", "-f", name)
    for name in things.networks:
        ketch(ketchd, "network", "rm", name)


def ketch(ketchd: Ketchd, *args: str, timeout: float = 60, stdin: str | None = None
          ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = ketchd.env | {"KETCH_NO_AUTOSTART": "1"}  # DOCKER_HOST is ketchd's socket
    return subprocess.run([_ketch_bin(), *args], env=env, capture_output=True, text=True, input=stdin,
                          timeout=timeout, check=False)  # fmt: skip


def ok(ketchd: Ketchd, *args: str) -> str:
    done = ketch(ketchd, *args)
    assert done.returncode == 0, (
        f"ketch {' '.join(args)} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}\n"
        f"ketchd log:\n{ketchd.log_tail()}"
    )
    return done.stdout


def docker_cli(ketchd: Ketchd, *args: str) -> subprocess.CompletedProcess[str] | None:
    """The same command through docker's CLI (an oracle for the output), None when it is not installed."""
    if not os.access(DOCKER, os.X_OK):
        return None
    return ketchd.docker(*args, cli=DOCKER, timeout=60)


def inspect(ketchd: Ketchd, ref: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ok(ketchd, "inspect", ref))[0]
    return found


def free_port() -> int:
    for _ in range(200):
        port = random.randint(20000, 30999)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port found")


def resolved(ketchd: Ketchd, net: str, name: str) -> list[str]:
    """The IPv4 addresses ketchd's resolver gives ``name`` on ``net``, from a fresh container (busybox nslookup)."""
    done = ketch(ketchd, "run", "--rm", "--network", net, IMAGE, "nslookup", "-type=a", name)
    assert done.returncode == 0, done.stdout + done.stderr
    return re.findall(r"^Address:\s*(\d+\.\d+\.\d+\.\d+)$", done.stdout, re.MULTILINE)


# ---- tests ------------------------------------------------------------------------------------------------------


def test_create_ls_inspect(ketchd: Ketchd, made: Made) -> None:
    net = f"{PREFIX}-a"
    made.networks.append(net)
    nid = ok(ketchd, "network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "--label", "kcli=a",
             net).strip()  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{64}", nid), nid
    made.networks.append(f"{PREFIX}-spare")
    ok(ketchd, "network", "create", "--label", "kcli=spare", f"{PREFIX}-spare")

    table = ok(ketchd, "network", "ls")
    assert table.splitlines()[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [nid[:12], net, "bridge", "local"] in [line.split() for line in table.splitlines()]
    names = ok(ketchd, "network", "ls", "--format", "{{.Name}}").split()
    assert {"bridge", "host", "none", net} <= set(names)
    assert ok(ketchd, "network", "ls", "-q", "--filter", f"name={net}").split() == [nid[:12]]
    assert ok(ketchd, "network", "ls", "-q", "--no-trunc", "--filter", "label=kcli=a").split() == [nid]

    info = json.loads(ok(ketchd, "network", "inspect", net))
    assert len(info) == 1 and info[0]["Id"] == nid and info[0]["Driver"] == "bridge"
    assert info[0]["IPAM"]["Config"] == [{"Subnet": SUBNET, "Gateway": GATEWAY}]
    assert info[0]["Labels"] == {"kcli": "a"}
    assert (
        ok(ketchd, "network", "inspect", "-f", "{{.Name}} {{.Scope}} {{.Internal}}", net)
        == f"{net} local false\n"
    )

    # the same daemon answers printed by docker's CLI: the same bytes
    for args in (("network", "ls"), ("network", "inspect", net, "bridge"), ("network", "ls", "--no-trunc")):
        oracle = docker_cli(ketchd, *args)
        if oracle is not None:
            assert (oracle.returncode, ok(ketchd, *args)) == (0, oracle.stdout), args
    oracle = docker_cli(ketchd, "network", "ls", "--format", "{{json .}}")
    if oracle is not None:
        rows = [
            json.loads(line) for line in ok(ketchd, "network", "ls", "--format", "{{json .}}").splitlines()
        ]
        assert rows == [json.loads(line) for line in oracle.stdout.splitlines()]

    done = ketch(ketchd, "network", "create", net)
    assert done.returncode == 1
    assert done.stderr == f"Error response from daemon: network with name {net} already exists\n"
    done = ketch(ketchd, "network", "inspect", f"{PREFIX}-nosuch")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "[]\n",
        f"Error: No such network: {PREFIX}-nosuch\n",
    )
    done = ketch(ketchd, "network", "create", "--subnet", "10.213.78.0/24", "--gateway", "10.213.79.1", "x")
    assert (done.returncode, done.stderr) == (1, "no matching subnet for gateway 10.213.79.1\n")


def test_run_with_aliases_and_addresses_then_lookup_and_ping(ketchd: Ketchd, made: Made) -> None:
    net = f"{PREFIX}-a"
    made.containers += [f"{PREFIX}-a1", f"{PREFIX}-a2"]
    ok(ketchd, "run", "-d", "--name", f"{PREFIX}-a1", "--network", net, "--network-alias", f"{PREFIX}-web",
       IMAGE, "sleep", "600")  # fmt: skip
    ok(ketchd, "run", "-d", "--name", f"{PREFIX}-a2", "--network", net, "--ip", "10.213.77.50",
       "--network-alias", f"{PREFIX}-db", IMAGE, "sleep", "600")  # fmt: skip
    a1 = inspect(ketchd, f"{PREFIX}-a1")["NetworkSettings"]["Networks"][net]
    a2 = inspect(ketchd, f"{PREFIX}-a2")["NetworkSettings"]["Networks"][net]
    assert a2["IPAddress"] == "10.213.77.50"
    assert a2["IPAMConfig"] == {"IPv4Address": "10.213.77.50"}
    assert f"{PREFIX}-web" in a1["Aliases"] and f"{PREFIX}-db" in a2["Aliases"]

    assert resolved(ketchd, net, f"{PREFIX}-web") == [a1["IPAddress"]]
    assert resolved(ketchd, net, f"{PREFIX}-db") == ["10.213.77.50"]
    for source, target in ((f"{PREFIX}-a1", f"{PREFIX}-db"), (f"{PREFIX}-a2", f"{PREFIX}-web"),
                           (f"{PREFIX}-a2", f"{PREFIX}-a1")):  # fmt: skip
        done = ketch(ketchd, "exec", source, "ping", "-c1", "-W2", target)
        assert done.returncode == 0, done.stdout + done.stderr

    listed = ok(ketchd, "ps", "--filter", f"network={net}", "--format", "{{.Names}}").split()
    assert sorted(listed) == [f"{PREFIX}-a1", f"{PREFIX}-a2"]
    entries = json.loads(ok(ketchd, "network", "inspect", net))[0]["Containers"]
    assert sorted(e["Name"] for e in entries.values()) == [f"{PREFIX}-a1", f"{PREFIX}-a2"]

    # an alias on a predefined network is refused before anything is sent
    done = ketch(ketchd, "run", "--rm", "--network-alias", "x", "--network", "bridge", IMAGE, "true")
    assert (done.returncode, done.stderr) == (125, "ketch: network-scoped aliases are only supported for "
                                                   "user-defined networks.\nSee 'ketch run --help'.\n")  # fmt: skip


def test_connect_and_disconnect(ketchd: Ketchd, made: Made) -> None:
    net = f"{PREFIX}-a"
    made.containers.append(f"{PREFIX}-c")
    cid = ok(ketchd, "run", "-d", "--name", f"{PREFIX}-c", IMAGE, "sleep", "600").strip()
    assert set(inspect(ketchd, cid)["NetworkSettings"]["Networks"]) == {"bridge"}
    assert ok(ketchd, "network", "connect", "--alias", f"{PREFIX}-calias", net, f"{PREFIX}-c") == ""
    networks = inspect(ketchd, cid)["NetworkSettings"]["Networks"]
    assert set(networks) == {"bridge", net}
    assert f"{PREFIX}-calias" in networks[net]["Aliases"]
    assert networks[net]["IPAddress"].startswith("10.213.77.")
    done = ketch(ketchd, "exec", f"{PREFIX}-a1", "ping", "-c1", "-W2", f"{PREFIX}-calias")
    assert done.returncode == 0, done.stdout + done.stderr

    assert ok(ketchd, "network", "disconnect", net, f"{PREFIX}-c") == ""
    assert set(inspect(ketchd, cid)["NetworkSettings"]["Networks"]) == {"bridge"}
    done = ketch(ketchd, "network", "disconnect", net, f"{PREFIX}-c")
    assert done.returncode == 1
    assert done.stderr.startswith("Error response from daemon: ") and "is not connected" in done.stderr
    done = ketch(ketchd, "network", "connect", f"{PREFIX}-nosuch", f"{PREFIX}-c")
    assert done.returncode == 1 and done.stderr.startswith("Error response from daemon: ")


def test_port(ketchd: Ketchd, made: Made) -> None:
    port = free_port()
    made.containers.append(f"{PREFIX}-web")
    ok(ketchd, "run", "-d", "--name", f"{PREFIX}-web", "--network", f"{PREFIX}-a", "-p", f"127.0.0.1:{port}:80",
       "--expose", "81", IMAGE, "sh", "-c", HTTPD)  # fmt: skip
    assert ok(ketchd, "port", f"{PREFIX}-web") == f"80/tcp -> 127.0.0.1:{port}\n"
    assert ok(ketchd, "port", f"{PREFIX}-web", "80") == f"127.0.0.1:{port}\n"
    assert ok(ketchd, "port", f"{PREFIX}-web", "80/tcp") == f"127.0.0.1:{port}\n"
    done = ketch(ketchd, "port", f"{PREFIX}-web", "81")
    assert (done.returncode, done.stderr) == (
        1,
        f"Error: No public port '81/tcp' published for {PREFIX}-web\n",
    )
    oracle = docker_cli(ketchd, "port", f"{PREFIX}-web")
    if oracle is not None:
        assert oracle.stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    deadline = time.monotonic() + 10
    while True:  # the published port, from the host's loopback
        fetched = subprocess.run(["timeout", "5", BUSYBOX, "wget", "-qO-", f"http://127.0.0.1:{port}/"],
                                 capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
        if fetched.stdout == "ketch-ok\n" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert fetched.stdout == "ketch-ok\n", fetched.stderr


def test_rm_and_prune(ketchd: Ketchd, made: Made) -> None:
    made.networks.append(f"{PREFIX}-b")
    ok(ketchd, "network", "create", f"{PREFIX}-b")
    done = ketch(ketchd, "network", "rm", f"{PREFIX}-b", f"{PREFIX}-nosuch", f"{PREFIX}-a")
    assert (done.returncode, done.stdout) == (1, f"{PREFIX}-b\n")
    errors = done.stderr.splitlines()
    assert errors[0] == f"Error: No such network: {PREFIX}-nosuch"
    assert errors[1].startswith("Error response from daemon: ") and "active endpoints" in errors[1]
    made.networks.remove(f"{PREFIX}-b")
    assert ok(ketchd, "network", "rm", "-f", f"{PREFIX}-nosuch") == ""

    declined = ketch(ketchd, "network", "prune", "--filter", "label=kcli=spare", stdin="n\n")
    assert declined.stdout.endswith("Are you sure you want to continue? [y/N] ")
    assert f"{PREFIX}-spare" in ok(ketchd, "network", "ls", "--format", "{{.Name}}").split()
    pruned = ok(ketchd, "network", "prune", "-f", "--filter", "label=kcli=spare")
    assert pruned == f"Deleted Networks:\n{PREFIX}-spare\n\n"
    made.networks.remove(f"{PREFIX}-spare")
    assert f"{PREFIX}-a" in ok(ketchd, "network", "ls", "--format", "{{.Name}}").split()


def test_nothing_left_behind(ketchd: Ketchd, made: Made) -> None:
    for name in made.containers:
        ok(ketchd, "rm", "-f", name)
    made.containers.clear()
    for name in list(made.networks):
        assert ok(ketchd, "network", "rm", name) == f"{name}\n"
        made.networks.remove(name)
    assert not [
        n for n in ok(ketchd, "network", "ls", "--format", "{{.Name}}").split() if n.startswith(PREFIX)
    ]
    assert not [n for n in ok(ketchd, "ps", "-a", "--format", "{{.Names}}").split() if n.startswith(PREFIX)]

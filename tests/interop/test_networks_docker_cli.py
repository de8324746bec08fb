"""The docker CLI (Debian's 20.10) against ketchd's networking: user networks with names, aliases and
round-robin DNS, isolation between networks, published ports from the host and from other containers, -P,
the none, host and container network modes, connect and disconnect of a running container, the network
verbs' JSON and errors, and nothing left behind on the host afterwards.

Safety: traffic goes only to 127.0.0.1 and to addresses of the namespaces these containers live in; names
are looked up only when ketchd's own resolver knows them (no query leaves the machine); host ports are
chosen free by bind tests. The last test removes everything the module made and compares the host's links,
addresses and nftables rules with what they were before the module ran.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import random
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.interop.ketchd import Ketchd

from ketch.engine.networks import instance_names
from ketch.network import bridge

pytestmark = pytest.mark.interop

IMAGE = "busybox:ketch"
CLI = "/usr/bin/docker"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
PREFIX = "knet"
HTTPD = "mkdir -p /www && echo ketch-ok > /www/index.html && exec httpd -f -p {port} -h /www"


# ---- helpers ----------------------------------------------------------------------------------------------------


class Made:
    """What the module created, for the cleanup and the leak check."""

    def __init__(self) -> None:
        self.containers: list[str] = []  # IDs
        self.networks: list[str] = []  # IDs


@pytest.fixture(scope="module", autouse=True)
def user_networks_at_create(ketchd: Ketchd) -> None:
    """The docker CLI answers a 404 from container create by pulling the image from a registry, which no test
    may do: skip unless ketchd creates containers on user networks (checked through the API)."""
    body = {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"NetworkMode": f"{PREFIX}-probe"}}
    status, created = api(ketchd, "POST", "/containers/create", body)
    if status == 201:
        api(ketchd, "DELETE", f"/containers/{created['Id']}?force=1")
        return
    pytest.skip(f"ketchd refuses containers on user networks at create ({status}: {created})")


@pytest.fixture(scope="module")
def made(ketchd: Ketchd) -> Iterator[Made]:
    things = Made()
    yield things
    for cid in things.containers:  # when a test failed before test_nothing_left_behind ran
        ketchd.docker("rm", "-f", cid, cli=CLI)
    for nid in things.networks:
        ketchd.docker("network", "rm", nid, cli=CLI)


def docker(ketchd: Ketchd, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return ketchd.docker(*args, cli=CLI, timeout=timeout)


def ok(ketchd: Ketchd, *args: str) -> str:
    done = docker(ketchd, *args)
    assert done.returncode == 0, (
        f"docker {' '.join(args)} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}\n"
        f"ketchd log:\n{ketchd.log_tail()}"
    )
    return done.stdout


def network(ketchd: Ketchd, made: Made, name: str, *args: str) -> str:
    nid = ok(ketchd, "network", "create", *args, name).strip()
    made.networks.append(nid)
    return nid


def run(ketchd: Ketchd, made: Made, *args: str) -> str:
    """``docker run -d``; the container's ID."""
    cid = ok(ketchd, "run", "-d", *args).strip()
    made.containers.append(cid)
    return cid


def api(ketchd: Ketchd, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One Engine API request on ketchd's socket: (status, JSON body or None)."""
    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(ketchd.socket))
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, f"/v1.41{path}", body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def inspect(ketchd: Ketchd, ref: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ok(ketchd, "inspect", ref))[0]
    return found


def exec_in(ketchd: Ketchd, ref: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return docker(ketchd, "exec", ref, *argv, timeout=30)


def links_in(ketchd: Ketchd, ref: str) -> list[str]:
    out = ok(ketchd, "exec", ref, "ip", "-o", "link")
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def address_of(ketchd: Ketchd, ref: str, net: str) -> str:
    address: str = inspect(ketchd, ref)["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert address, f"{ref} has no address on {net}"
    return address


def gateway_of(ketchd: Ketchd, net: str) -> str:
    config = json.loads(ok(ketchd, "network", "inspect", net))[0]["IPAM"]["Config"][0]
    # dockerd leaves the gateway out of its default bridge's IPAM config: it is the subnet's first address
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


def _bindable(port: int) -> bool:
    for host in ("0.0.0.0", "127.0.0.1"):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A TCP port nothing on the host holds (never 5000, kept for a registry)."""
    for _ in range(200):
        port = random.randint(20000, 30999)
        if port != 5000 and _bindable(port):
            return port
    raise AssertionError("no free port found")


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def host_wget(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["timeout", "5", BUSYBOX, "wget", "-qO-", url], capture_output=True, text=True,
                          timeout=10, check=False)  # fmt: skip


def answers(ketchd: Ketchd, ref: str, name: str) -> list[str]:
    """The addresses ketchd's resolver gives ``name``, in the order of the answer (busybox nslookup)."""
    done = exec_in(ketchd, ref, "nslookup", "-type=a", name)
    assert done.returncode == 0, done.stdout + done.stderr
    return re.findall(r"^Address:\s*(\d+\.\d+\.\d+\.\d+)$", done.stdout, re.MULTILINE)


# ---- the host, before and after ----------------------------------------------------------------------------------


def _ip_json(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    data: list[dict[str, Any]] = json.loads(out or "[]")
    return data


def _nft() -> list[dict[str, Any]]:
    out = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    items: list[dict[str, Any]] = json.loads(out)["nftables"]
    return items


def _ketch_table(obj: dict[str, Any]) -> str | None:
    name = obj.get("table", obj.get("name"))
    if obj.get("family") in ("ip", "ip6") and isinstance(name, str) and name.startswith("ketch"):
        return name
    return None


def host_state(ketchd: Ketchd, made: Made) -> dict[str, Any]:
    """Links, addresses and nftables rules that ketch could have made or touched. Interfaces and tables of
    other ketchd instances (tests running beside this one) are left out; this daemon's are kept, and so is
    every interface and table that is not ketch's."""
    default_bridge, table = instance_names(str(ketchd.exec_root))
    ours = {default_bridge}
    ours.update(f"kbr-{nid[:11]}" for nid in made.networks)
    ours.update(
        bridge.host_ifname(cid, nid) for cid in made.containers for nid in [*made.networks, *_net_ids(ketchd)]
    )

    def relevant(name: str) -> bool:
        return not name.startswith(("veth", "kbr-", "ketch")) or name in ours

    links = sorted(
        (link["ifname"], link.get("link_type", ""), link.get("master", ""), link.get("address", ""))
        for link in _ip_json("link")
        if relevant(link["ifname"])
    )
    addresses = sorted(
        (entry["ifname"], a["family"], a["local"], a["prefixlen"])
        for entry in _ip_json("addr")
        if relevant(entry["ifname"])
        for a in entry.get("addr_info", [])
        if not a["local"].startswith("fe80:")  # the kernel's own, once a bridge first has a port up
    )
    foreign, mine = [], []
    for item in _nft():
        if "metainfo" in item:
            continue
        ((kind, obj),) = item.items()
        owner = _ketch_table(obj)
        if owner is None:
            foreign.append(item)
        elif owner == table and kind == "rule" and obj.get("comment") != "ketch:base":
            mine.append(
                (obj["family"], obj["chain"], obj.get("comment"), json.dumps(obj["expr"], sort_keys=True))
            )
    netns_dir = Path(ketchd.exec_root) / "netns"
    namespaces = sorted(p.name for p in netns_dir.iterdir()) if netns_dir.exists() else []
    return {"links": links, "addresses": addresses, "nft": foreign, "ketch_rules": sorted(mine),
            "namespaces": namespaces}  # fmt: skip


def _net_ids(ketchd: Ketchd) -> list[str]:
    return ok(ketchd, "network", "ls", "-q", "--no-trunc").split()


@pytest.fixture(scope="module")
def before(ketchd: Ketchd, made: Made) -> dict[str, Any]:
    return host_state(ketchd, made)


# ---- tests ------------------------------------------------------------------------------------------------------


def test_user_network_names_aliases_round_robin_and_isolation(ketchd: Ketchd, made: Made,
                                                               before: dict[str, Any]) -> None:  # fmt: skip
    network(ketchd, made, f"{PREFIX}-a")
    network(ketchd, made, f"{PREFIX}-b", "--subnet", "10.213.57.0/24")
    for name in ("a1", "a2"):
        run(ketchd, made, "--name", f"{PREFIX}-{name}", "--network", f"{PREFIX}-a", "--network-alias",
            f"{PREFIX}-web", IMAGE, "sleep", "600")  # fmt: skip
    a1, a2 = (address_of(ketchd, f"{PREFIX}-{n}", f"{PREFIX}-a") for n in ("a1", "a2"))
    assert a1 != a2

    # by name and by alias, with the embedded resolver in the container's resolv.conf
    resolv = ok(ketchd, "exec", f"{PREFIX}-a1", "cat", "/etc/resolv.conf")
    assert "nameserver 127.0.0.11" in resolv.splitlines()
    for source, target in (("a1", "a2"), ("a2", "a1")):
        done = exec_in(ketchd, f"{PREFIX}-{source}", "ping", "-c1", "-W2", f"{PREFIX}-{target}")
        assert done.returncode == 0, done.stdout + done.stderr
    assert answers(ketchd, f"{PREFIX}-a1", f"{PREFIX}-a2") == [a2]
    assert answers(ketchd, f"{PREFIX}-a1", inspect(ketchd, f"{PREFIX}-a2")["Id"][:12]) == [a2]
    done = docker(
        ketchd, "run", "--rm", "--network", f"{PREFIX}-a", IMAGE, "ping", "-c1", "-W2", f"{PREFIX}-web"
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # round robin: every answer has both, and the first one changes from query to query
    firsts = set()
    for _ in range(4):
        got = answers(ketchd, f"{PREFIX}-a1", f"{PREFIX}-web")
        assert sorted(got) == sorted([a1, a2])
        firsts.add(got[0])
    assert firsts == {a1, a2}

    # another network reaches neither container (by address: no name leaves the network)
    done = docker(ketchd, "run", "--rm", "--network", f"{PREFIX}-b", IMAGE, "sh", "-c",
                  f"ping -c1 -W1 {a1} || ping -c1 -W1 {a2} || exit 7; exit 0")  # fmt: skip
    assert done.returncode == 7, done.stdout + done.stderr
    info = json.loads(ok(ketchd, "network", "inspect", f"{PREFIX}-b"))[0]
    assert info["IPAM"]["Config"] == [{"Subnet": "10.213.57.0/24", "Gateway": "10.213.57.1"}]
    # ps --filter network= by name and by ID
    on_a = set(ok(ketchd, "ps", "--filter", f"network={PREFIX}-a", "--format", "{{.Names}}").split())
    assert {f"{PREFIX}-a1", f"{PREFIX}-a2"} <= on_a
    net_id = json.loads(ok(ketchd, "network", "inspect", f"{PREFIX}-a"))[0]["Id"]
    assert set(ok(ketchd, "ps", "--filter", f"network={net_id}", "--format", "{{.Names}}").split()) == on_a
    assert ok(ketchd, "ps", "-q", "--filter", f"network={PREFIX}-b") == ""


def test_published_ports_from_the_host_and_other_containers(ketchd: Ketchd, made: Made) -> None:
    local, anywhere = free_port(), free_port()
    run(ketchd, made, "--name", f"{PREFIX}-web", "--network", f"{PREFIX}-a", "-p", f"127.0.0.1:{local}:80",
        "-p", f"{anywhere}:80", IMAGE, "sh", "-c", HTTPD.format(port=80))  # fmt: skip
    wait_until(lambda: host_wget(f"http://127.0.0.1:{local}/").stdout == "ketch-ok\n", "httpd on 127.0.0.1")
    ports = sorted(ok(ketchd, "port", f"{PREFIX}-web").splitlines())
    assert ports == sorted([f"80/tcp -> 127.0.0.1:{local}", f"80/tcp -> 0.0.0.0:{anywhere}"])
    settings = inspect(ketchd, f"{PREFIX}-web")["NetworkSettings"]
    assert sorted(settings["Ports"]["80/tcp"], key=lambda b: b["HostIp"]) == [
        {"HostIp": "0.0.0.0", "HostPort": str(anywhere)}, {"HostIp": "127.0.0.1", "HostPort": str(local)}]  # fmt: skip
    listed = json.loads(ok(ketchd, "ps", "--filter", f"name={PREFIX}-web", "--format", "{{json .Ports}}"))
    assert f"127.0.0.1:{local}->80/tcp" in listed and f"0.0.0.0:{anywhere}->80/tcp" in listed

    # hairpin: from a container of the same network and from another network, through the gateways
    for net in (f"{PREFIX}-a", f"{PREFIX}-b", "bridge"):
        url = f"http://{gateway_of(ketchd, net)}:{anywhere}/"
        done = docker(ketchd, "run", "--rm", "--network", net, IMAGE, "timeout", "5", "wget", "-qO-", url)
        assert (done.returncode, done.stdout) == (0, "ketch-ok\n"), f"{net}: {done.stderr}"

    # a port that is taken, by a container or by a process on the host
    done = docker(
        ketchd, "run", "-d", "--name", f"{PREFIX}-dup", "-p", f"127.0.0.1:{local}:80", IMAGE, "true"
    )
    made.containers.append(inspect(ketchd, f"{PREFIX}-dup")["Id"])
    assert done.returncode != 0 and "port is already allocated" in done.stderr, done.stderr
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        held = holder.getsockname()[1]
        done = docker(ketchd, "run", "--rm", "-p", f"127.0.0.1:{held}:80", IMAGE, "true")
        assert (
            done.returncode != 0
            and f"Bind for 127.0.0.1:{held} failed: port is already allocated" in done.stderr
        )
    ok(ketchd, "rm", "-f", f"{PREFIX}-dup")


def test_publish_all_picks_free_ports(ketchd: Ketchd, made: Made) -> None:
    run(ketchd, made, "--name", f"{PREFIX}-all", "-P", "--expose", "8080", "--expose", "8081/udp", IMAGE, "sh",
        "-c", HTTPD.format(port=8080))  # fmt: skip
    mapped = dict(line.split(" -> ") for line in ok(ketchd, "port", f"{PREFIX}-all").splitlines())
    assert set(mapped) == {"8080/tcp", "8081/udp"}
    host, _, port = mapped["8080/tcp"].rpartition(":")
    assert host == "0.0.0.0"
    first, last = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert first <= int(port) <= last
    wait_until(lambda: host_wget(f"http://127.0.0.1:{port}/").stdout == "ketch-ok\n", "httpd via -P")


def test_none_host_and_container_modes(ketchd: Ketchd, made: Made) -> None:
    assert ok(ketchd, "run", "--rm", "--network", "none", IMAGE, "sh", "-c",
              "ip -o link | cut -d: -f2 | tr -d ' '").split() == ["lo"]  # fmt: skip

    def host_links() -> set[str]:
        return set(bridge.links())

    def same_as_host() -> bool:
        before = host_links()
        seen = set(ok(ketchd, "run", "--rm", "--network", "host", IMAGE, "sh", "-c",
                      "ip -o link | cut -d: -f2 | cut -d@ -f1 | tr -d ' '").split())  # fmt: skip
        return seen in (before, host_links())  # links of other tests may come and go meanwhile

    wait_until(same_as_host, "--network host to show the host's interfaces", timeout=20)

    a1 = address_of(ketchd, f"{PREFIX}-a1", f"{PREFIX}-a")
    shared = ok(ketchd, "run", "--rm", "--network", f"container:{PREFIX}-a1", IMAGE, "ip", "-o", "-4", "addr")
    assert f"{a1}/" in shared
    owner = ok(ketchd, "exec", f"{PREFIX}-a1", "sh", "-c", "hostname; cat /etc/resolv.conf")
    joined = ok(ketchd, "run", "--rm", "--network", f"container:{PREFIX}-a1", IMAGE, "sh", "-c",
                "hostname; cat /etc/resolv.conf")  # fmt: skip
    assert joined == owner  # the owner's hostname and resolver, as Docker gives


def test_connect_and_disconnect_a_running_container(ketchd: Ketchd, made: Made) -> None:
    cid = run(ketchd, made, "--name", f"{PREFIX}-c", IMAGE, "sleep", "600")
    assert links_in(ketchd, cid) == ["lo", "eth0"]
    ok(ketchd, "network", "connect", "--alias", f"{PREFIX}-calias", f"{PREFIX}-b", cid)
    assert links_in(ketchd, cid) == ["lo", "eth0", "eth1"]
    on_b = address_of(ketchd, cid, f"{PREFIX}-b")
    assert on_b.startswith("10.213.57.")
    assert f"{on_b}/24" in ok(ketchd, "exec", cid, "ip", "-o", "-4", "addr", "show", "eth1")
    networks = inspect(ketchd, cid)["NetworkSettings"]["Networks"]
    assert set(networks) == {"bridge", f"{PREFIX}-b"}
    assert networks[f"{PREFIX}-b"]["Aliases"] == [f"{PREFIX}-calias", cid[:12]]
    entry = json.loads(ok(ketchd, "network", "inspect", f"{PREFIX}-b"))[0]["Containers"][cid]
    assert entry["Name"] == f"{PREFIX}-c" and entry["IPv4Address"] == f"{on_b}/24"
    # reachable on the new network, from it
    done = docker(
        ketchd, "run", "--rm", "--network", f"{PREFIX}-b", IMAGE, "ping", "-c1", "-W2", f"{PREFIX}-calias"
    )
    assert done.returncode == 0, done.stdout + done.stderr

    ok(ketchd, "network", "disconnect", f"{PREFIX}-b", cid)
    assert links_in(ketchd, cid) == ["lo", "eth0"]
    assert set(inspect(ketchd, cid)["NetworkSettings"]["Networks"]) == {"bridge"}
    done = docker(ketchd, "network", "disconnect", f"{PREFIX}-b", cid)
    assert done.returncode != 0 and "is not connected to the network" in done.stderr

    # a stopped container is connected at its next start
    ok(ketchd, "stop", "-t", "0", cid)
    ok(ketchd, "network", "connect", f"{PREFIX}-a", cid)
    ok(ketchd, "start", cid)
    assert links_in(ketchd, cid) == ["lo", "eth0", "eth1"]
    assert set(inspect(ketchd, cid)["NetworkSettings"]["Networks"]) == {"bridge", f"{PREFIX}-a"}


def inspect_network(ketchd: Ketchd, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ok(ketchd, "network", "inspect", name))[0]
    return result


def test_network_verbs_json_and_errors(ketchd: Ketchd, made: Made) -> None:
    listed = {n["Name"]: n for n in json.loads(ok(ketchd, "network", "inspect", "bridge", "host", "none"))}
    assert listed["bridge"]["Driver"] == "bridge" and listed["host"]["Driver"] == "host"
    assert listed["none"]["Driver"] == "null"
    info = json.loads(ok(ketchd, "network", "inspect", f"{PREFIX}-a"))[0]
    assert list(info) == ["Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal",
                          "Attachable", "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options",
                          "Labels"]  # fmt: skip
    assert info["Scope"] == "local" and info["IPAM"]["Driver"] == "default"

    names = ok(ketchd, "network", "ls", "--format", "{{.Name}}").split()
    assert {"bridge", "host", "none", f"{PREFIX}-a", f"{PREFIX}-b"} <= set(names)
    custom = ok(ketchd, "network", "ls", "--filter", "type=custom", "--format", "{{.Name}}").split()
    assert "bridge" not in custom and f"{PREFIX}-a" in custom
    assert ok(ketchd, "network", "ls", "-q", "--filter", f"name={PREFIX}-a").split() == [info["Id"][:12]]

    done = docker(ketchd, "network", "create", f"{PREFIX}-a")
    assert done.returncode != 0 and f"network with name {PREFIX}-a already exists" in done.stderr
    done = docker(ketchd, "network", "create", "-d", "overlay", f"{PREFIX}-ov")
    assert done.returncode != 0 and "not supported" in done.stderr
    # macvlan without a parent is an internal network on a dummy parent (moby), when the kernel has dummy links
    done = docker(ketchd, "network", "create", "-d", "macvlan", f"{PREFIX}-mac")
    if done.returncode == 0:
        assert inspect_network(ketchd, f"{PREFIX}-mac")["Internal"] is True
        ok(ketchd, "network", "rm", f"{PREFIX}-mac")
    else:
        assert "CONFIG_DUMMY" in done.stderr, done.stderr
    done = docker(ketchd, "network", "rm", "bridge")
    assert done.returncode != 0 and "bridge is a pre-defined network and cannot be removed" in done.stderr
    done = docker(ketchd, "network", "rm", f"{PREFIX}-a")
    assert done.returncode != 0 and f"network {PREFIX}-a id {info['Id']} has active endpoints" in done.stderr
    # dockerd 20.10 creates a container on a network that does not exist and fails its start. (Through the
    # API: a CLI that gets a 404 from create pulls the image, and no test may reach a registry.)
    body = {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"NetworkMode": f"{PREFIX}-nosuch"}}
    status, created = api(ketchd, "POST", f"/containers/create?name={PREFIX}-lost", body)
    assert status == 201, created
    made.containers.append(created["Id"])
    status, failed = api(ketchd, "POST", f"/containers/{created['Id']}/start")
    assert status >= 400 and failed["message"] == f"network {PREFIX}-nosuch not found", (status, failed)

    spare = network(ketchd, made, f"{PREFIX}-spare", "--label", "knet=spare")
    pruned = ok(ketchd, "network", "prune", "-f", "--filter", "label=knet=spare")
    assert f"{PREFIX}-spare" in pruned
    assert f"{PREFIX}-a" in ok(ketchd, "network", "ls", "--format", "{{.Name}}").split()
    assert docker(ketchd, "network", "inspect", spare).returncode != 0
    made.networks.remove(spare)


def test_links_on_the_default_bridge(ketchd: Ketchd, made: Made) -> None:
    """Docker's legacy links: the alias in /etc/hosts and the linked container's variables."""
    run(
        ketchd,
        made,
        "--name",
        f"{PREFIX}-db",
        "--expose",
        "5432",
        "-e",
        "SECRET_MODE=demo",
        IMAGE,
        "sleep",
        "600",
    )
    db_ip = inspect(ketchd, f"{PREFIX}-db")["NetworkSettings"]["IPAddress"]
    assert db_ip
    out = ok(ketchd, "run", "--rm", "--link", f"{PREFIX}-db:dbalias", IMAGE, "sh", "-c",
             "env | sort; grep dbalias /etc/hosts; ping -c1 -W2 dbalias >/dev/null && echo reached")  # fmt: skip
    assert f"DBALIAS_PORT=tcp://{db_ip}:5432" in out
    assert f"DBALIAS_PORT_5432_TCP_ADDR={db_ip}" in out and "DBALIAS_ENV_SECRET_MODE=demo" in out
    assert "DBALIAS_NAME=/" in out and "reached" in out
    assert any(line.startswith(db_ip) and "dbalias" in line for line in out.splitlines())


def test_nothing_left_behind(ketchd: Ketchd, made: Made, before: dict[str, Any]) -> None:
    for cid in made.containers:
        docker(ketchd, "rm", "-f", cid)
    for nid in made.networks:
        done = docker(ketchd, "network", "rm", nid)
        assert done.returncode == 0, done.stderr
    after = host_state(ketchd, made)
    for key in ("links", "addresses", "ketch_rules", "namespaces", "nft"):
        assert after[key] == before[key], key
    ipam = json.loads((Path(ketchd.data_root) / "network" / "ipam.json").read_text())
    owners = {o for n in ipam["networks"].values() for p in n["pools"] for o in p["allocated"].values()}
    assert not owners & set(made.containers)

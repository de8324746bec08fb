"""ketch's nftables rules in the real kernel.

``test_host_ruleset_round_trip`` works on the host's own ruleset, as ketchd will: it adds ketch's tables (named
``ketch``, or a unique ``ketch_t…`` when a ketchd on this host already has one), checks the kernel lists
exactly the generated rules, removes them, and compares the whole host ruleset with the one before. Nothing
else is touched: rules match a bridge name that does not exist, a TEST-NET subnet, and a loopback port this
test keeps bound so no one else can be using it.

``test_rules_carry_traffic`` builds a small world inside network namespaces of its own: a "host" namespace with
two bridges and an uplink to an "outside" namespace, containers as namespaces on the bridges, and checks that
the rules do what they are for (published ports from 127.0.0.1, from outside and hairpin, isolation between
networks, masquerade, --internal). All traffic stays inside those namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from ketch.network import firewall as fw
from ketch.network import nft

pytestmark = pytest.mark.root


def _normalised(items):
    """Counters and timeouts change with traffic between two listings; compare the rules, not the counts."""
    if isinstance(items, list):
        return [_normalised(i) for i in items]
    if isinstance(items, dict):
        out = {}
        for k, v in items.items():
            if k == "counter" and isinstance(v, dict) and "packets" in v:
                out[k] = None
            elif k in ("expires", "packets", "bytes") and isinstance(v, int):
                out[k] = 0
            else:
                out[k] = _normalised(v)
        return out
    return items


def _family(command):
    ((_verb, body),) = command.items()
    ((_kind, obj),) = body.items()
    return obj["family"]


def _has_table(listing, table):
    return any(kind == "table" for kind, _ in fw.ketch_objects(listing, table))


@pytest.fixture
def table():
    """``ketch`` unless a ketch daemon already owns it; removed at teardown either way."""
    name = fw.TABLE
    if _has_table(nft.snapshot(), name):
        name = "ketch_t" + uuid.uuid4().hex[:8]
    yield name
    nft.delete_tables(table=name)


def test_host_ruleset_round_trip(table):
    with socket.socket() as hold:
        hold.bind(("127.0.0.1", 0))  # the published port: bound here, so no other program uses it meanwhile
        port = hold.getsockname()[1]
        before = nft.snapshot()

        net = fw.BridgeNetwork(
            id="kt-net-" + uuid.uuid4().hex[:8],
            bridge="kt-" + uuid.uuid4().hex[:8],
            subnets=("198.18.231.0/24", "fd00:6b74::/64"),
            icc=False,
        )
        mapping = fw.PortMapping(
            container_id="kt-ctr-" + uuid.uuid4().hex[:8],
            container_ip="198.18.231.2",
            container_port=80,
            host_port=port,
            host_ip="127.0.0.1",
        )
        rules = fw.network_rules(net, table) + fw.port_rules(mapping, table)
        assert nft.add(rules, table=table) > 0
        assert nft.add(rules, table=table) == 0  # idempotent

        # The kernel lists exactly what was generated: same chains, same expressions, same comments.
        out = subprocess.run(
            ["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True, check=True
        )
        listed = json.loads(out.stdout)
        ipv4 = [c for c in fw.base_ruleset(table) + rules if _family(c) == "ip"]
        assert fw.missing_commands(listed, ipv4, table) == []
        comments = {obj.get("comment") for kind, obj in fw.ketch_objects(listed, table) if kind == "rule"}
        assert comments == {"ketch:base", f"ketch:{net.id}", f"ketch:{mapping.container_id}"}
        assert fw.sync_commands(nft.list_ketch(table=table), fw.base_ruleset(table) + rules, table) == []

        # Removal by owner takes exactly that owner's rules.
        assert nft.remove(mapping.container_id, table=table) == 1
        assert fw.owners(nft.list_ketch(table=table), table=table) == {"base", net.id}
        assert nft.remove(net.id, table=table) == len(fw.network_rules(net, table))
        assert fw.owners(nft.list_ketch(table=table), table=table) == {"base"}
        assert nft.remove(net.id, table=table) == 0

        nft.delete_tables(table=table)
        after = nft.snapshot()
    assert not _has_table(after, table)
    assert _normalised(fw.without_tables(after, table)) == _normalised(fw.without_tables(before, table))
    if table == fw.TABLE:
        assert _normalised(after["nftables"][1:]) == _normalised(before["nftables"][1:])


def test_sync_restores_after_a_crash(table):
    """A restarted daemon syncs its desired rules: leftovers of gone containers go, missing rules come."""
    net = fw.BridgeNetwork(id="kt-n", bridge="kt-" + uuid.uuid4().hex[:8], subnets=("198.18.232.0/24",))
    gone = fw.PortMapping(
        container_id="kt-gone",
        container_ip="198.18.232.9",
        container_port=1,
        host_port=2,
        host_ip="198.18.232.1",
    )
    nft.add(fw.network_rules(net, table) + fw.port_rules(gone, table), table=table)
    assert nft.sync(fw.network_rules(net, table), table=table) == 1
    assert fw.owners(nft.list_ketch(table=table), table=table) == {"base", "kt-n"}
    assert nft.sync(fw.network_rules(net, table), table=table) == 0


def test_apply_refuses_foreign_commands():
    before = nft.snapshot()
    with pytest.raises(Exception, match="not one of ketch's tables"):
        nft.apply([{"add": {"table": {"family": "ip", "name": "filter"}}}])
    assert nft.snapshot() == before


# -- traffic ---------------------------------------------------------------------------------------------------

SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(("%s\n" % peer[0]).encode())
    c.close()
"""

CLIENT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as c:
        c.settimeout(float(sys.argv[3]))
        print(c.recv(100).decode().strip())
except OSError as e:
    print("ERR", type(e).__name__)
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


def _sysctl(netns: str, key: str) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-n", key], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


class World:
    """Namespaces named ``<prefix>-<role>``; everything made is listed so teardown can remove it."""

    def __init__(self) -> None:
        self.prefix = "kt" + uuid.uuid4().hex[:6]
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []

    def ns(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def path(self, name: str) -> str:
        return f"/run/netns/{name}"

    def link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        """A veth pair between namespaces a and b."""
        sh("ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b)
        sh("ip", "-n", a, "link", "set", a_if, "up")
        sh("ip", "-n", b, "link", "set", b_if, "up")

    def container(self, host: str, bridge: str, role: str, cidr: str, gateway: str) -> str:
        name = self.ns(role)
        self.link(host, f"v{role}", name, "eth0")
        sh("ip", "-n", host, "link", "set", f"v{role}", "master", bridge)
        sh("ip", "-n", name, "addr", "add", cidr, "dev", "eth0")
        sh("ip", "-n", name, "route", "add", "default", "via", gateway)
        return name

    def serve(self, name: str, port: int) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", SERVER, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def blocked(self, name: str, host: str, port: int) -> bool:
        """No answer (dropped, refused or unreachable) within half a second."""
        return self.connect(name, host, port, timeout=0.5).startswith("ERR")

    def connect(self, name: str, host: str, port: int, timeout: float = 2.0) -> str:
        out = subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, "-c", CLIENT, host, str(port), str(timeout)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout.strip()

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for name in reversed(self.namespaces):
            with contextlib.suppress(subprocess.CalledProcessError):
                sh("ip", "netns", "del", name)


@pytest.fixture
def world():
    if (
        not os.path.exists("/usr/sbin/ip")
        and not os.path.exists("/sbin/ip")
        and not os.path.exists("/bin/ip")
    ):
        pytest.skip("iproute2 (ip) is not installed")
    w = World()
    try:
        yield w
    finally:
        w.close()


def test_rules_carry_traffic(world):
    w = world
    host, outside = w.ns("host"), w.ns("out")
    hp = w.path(host)
    sh("ip", "netns", "exec", host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # The uplink: "outside" has no route to the container subnets, so replies reach them only through NAT.
    w.link(host, "uplink", outside, "eth0")
    sh("ip", "-n", host, "addr", "add", "10.231.99.1/24", "dev", "uplink")
    sh("ip", "-n", outside, "addr", "add", "10.231.99.2/24", "dev", "eth0")
    for br, cidr in (
        ("bra", "10.231.1.1/24"),
        ("brb", "10.231.2.1/24"),
        ("bri", "10.231.3.1/24"),
        ("brc", "10.231.4.1/24"),
    ):
        sh("ip", "-n", host, "link", "add", br, "type", "bridge")
        sh("ip", "-n", host, "addr", "add", cidr, "dev", br)
        sh("ip", "-n", host, "link", "set", br, "up")
    # What ketch's bridge plumbing does for ports published on 127.0.0.1.
    sh("ip", "netns", "exec", host, "sysctl", "-qw", "net.ipv4.conf.bra.route_localnet=1")
    c1 = w.container(host, "bra", "c1", "10.231.1.2/24", "10.231.1.1")
    c2 = w.container(host, "bra", "c2", "10.231.1.3/24", "10.231.1.1")
    d = w.container(host, "brb", "d", "10.231.2.2/24", "10.231.2.1")
    i = w.container(host, "bri", "i", "10.231.3.2/24", "10.231.3.1")
    e1 = w.container(host, "brc", "e1", "10.231.4.2/24", "10.231.4.1")
    e2 = w.container(host, "brc", "e2", "10.231.4.3/24", "10.231.4.1")
    w.serve(c1, 80)
    w.serve(outside, 9000)
    w.serve(d, 80)
    w.serve(e1, 80)

    net_a = fw.BridgeNetwork(id="neta", bridge="bra", subnets=("10.231.1.0/24",))
    net_b = fw.BridgeNetwork(id="netb", bridge="brb", subnets=("10.231.2.0/24",))
    net_i = fw.BridgeNetwork(id="neti", bridge="bri", subnets=("10.231.3.0/24",), internal=True)
    net_c = fw.BridgeNetwork(id="netc", bridge="brc", subnets=("10.231.4.0/24",), icc=False)
    ports = [
        fw.PortMapping(container_id="c1", container_ip="10.231.1.2", container_port=80, host_port=18080),
        fw.PortMapping(
            container_id="c1",
            container_ip="10.231.1.2",
            container_port=80,
            host_port=18081,
            host_ip="127.0.0.1",
        ),
    ]
    rules = [
        *fw.network_rules(net_a),
        *fw.network_rules(net_b),
        *fw.network_rules(net_i),
        *fw.network_rules(net_c),
        *(c for m in ports for c in fw.port_rules(m)),
    ]
    # Without rules: the container subnets are unreachable from outside, published ports do not exist, and
    # the host routes freely between its bridges.
    assert w.blocked(c1, "10.231.99.2", 9000)
    assert w.blocked(host, "127.0.0.1", 18081)
    assert w.connect(d, "10.231.1.2", 80) == "10.231.2.2"
    assert w.connect(e2, "10.231.4.2", 80) == "10.231.4.3"

    nft.add(rules, netns=hp)

    # Published on 127.0.0.1, reached from the host itself: DNAT in output, loopback source masqueraded.
    assert w.connect(host, "127.0.0.1", 18081) == "10.231.1.1"
    # Published on every address: from the host, from outside (client address kept), and hairpin from a
    # container on the same bridge through the gateway address.
    assert w.connect(host, "10.231.99.1", 18080) == "10.231.99.1"
    assert w.connect(outside, "10.231.99.1", 18080) == "10.231.99.2"
    assert w.connect(c2, "10.231.1.1", 18080) == "10.231.1.1"
    assert w.connect(host, "127.0.0.1", 18080) == "10.231.1.1"
    # Same-bridge traffic is bridged, not routed: direct container-to-container works.
    assert w.connect(c2, "10.231.1.2", 80) == "10.231.1.3"
    # Masquerade: outside sees the uplink's address, not the container's.
    assert w.connect(c1, "10.231.99.2", 9000) == "10.231.99.1"
    # Isolation: another network's container cannot reach c1 directly, nor c1 it ...
    assert w.blocked(d, "10.231.1.2", 80)
    assert w.blocked(c1, "10.231.2.2", 80)
    # ... but a published port is public: reachable from there through the host's address.
    assert w.connect(d, "10.231.99.1", 18080) == "10.231.1.1"
    # --internal: nothing in or out of its bridge.
    assert w.blocked(i, "10.231.99.2", 9000)
    assert w.blocked(i, "10.231.1.2", 80)
    assert w.blocked(i, "10.231.99.1", 18080)

    # enable_icc=false: containers of one bridge cannot talk, though they still get out. Bridged traffic
    # reaches ip hooks only through br_netfilter (which ketch's plumbing loads, as dockerd does).
    assert w.connect(e1, "10.231.99.2", 9000) == "10.231.99.1"
    if _sysctl(host, "net.bridge.bridge-nf-call-iptables") == "1":
        assert w.blocked(e2, "10.231.4.2", 80)

    # Removing the container's rules unpublishes its ports and nothing else.
    assert nft.remove("c1", netns=hp) == 2
    assert w.blocked(host, "127.0.0.1", 18081)
    assert w.blocked(outside, "10.231.99.1", 18080)
    assert w.connect(c1, "10.231.99.2", 9000) == "10.231.99.1"
    # Removing network A's rules: no more masquerade, and A's bridge is no longer a ketch network, so
    # isolation (as Docker's: from a ketch bridge to another ketch bridge) no longer applies to it.
    nft.remove("neta", netns=hp)
    assert w.blocked(c1, "10.231.99.2", 9000)
    assert w.connect(c1, "10.231.2.2", 80) == "10.231.1.2"
    assert w.connect(d, "10.231.1.2", 80) == "10.231.1.1"  # B's masquerade still applies

    nft.delete_tables(netns=hp)
    assert nft.snapshot(netns=hp)["nftables"][1:] == []

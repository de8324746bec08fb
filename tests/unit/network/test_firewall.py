"""nftables rules as data: golden files for the rule sets, and the diff/removal helpers on listings.

The golden files (golden/*.json) are what ``nft -j -f -`` receives; the integration test applies the same
rule sets to the kernel and checks that ``nft -j list`` gives back exactly these expressions. To regenerate
them after a deliberate change: ``KETCH_UPDATE_GOLDEN=1 pytest tests/unit/network/test_firewall.py`` and review
the diff.
"""

import copy
import json
import os
from pathlib import Path

import pytest

from ketch.common.errors import InvalidArgument
from ketch.network import firewall as fw
from ketch.network import nft

GOLDEN = Path(__file__).parent / "golden"
NET_ID = "3f1c0a5e9b7d2c4a6e8f0b1d3c5a7e9f1b3d5c7a9e1f3b5d7c9a1e3f5b7d9c1a"
CTR_ID = "9c1a7e5f3b1d9c7a5e3f1b9d7c5a3e1f9b7d5c3a1e9f7b5d3c1a9e7f5b3d1c9a"
BRIDGE = "br-3f1c0a5e9b7d"

BRIDGE_NET = fw.BridgeNetwork(id=NET_ID, bridge=BRIDGE, subnets=("172.18.0.0/16",))
DUAL_NET = fw.BridgeNetwork(id=NET_ID, bridge=BRIDGE, subnets=("172.18.0.0/16", "fd00:18::/64"))
INTERNAL_NET = fw.BridgeNetwork(id=NET_ID, bridge=BRIDGE, subnets=("172.18.0.0/16",), internal=True)
NO_ICC_NET = fw.BridgeNetwork(id=NET_ID, bridge=BRIDGE, subnets=("172.18.0.0/16",), icc=False)
PORTS = [
    fw.PortMapping(container_id=CTR_ID, container_ip="172.18.0.2", container_port=80, host_port=8080),
    fw.PortMapping(
        container_id=CTR_ID, container_ip="172.18.0.2", container_port=80, host_port=8081, host_ip="127.0.0.1"
    ),
    fw.PortMapping(
        container_id=CTR_ID, container_ip="172.18.0.2", container_port=53, host_port=5353, proto="udp"
    ),
    fw.PortMapping(
        container_id=CTR_ID,
        container_ip="172.18.0.2",
        container_port=53,
        host_port=5354,
        proto="udp",
        host_ip="192.0.2.10",
    ),
    fw.PortMapping(
        container_id=CTR_ID,
        container_ip="fd00:18::2",
        container_port=80,
        host_port=8080,
        host_ip="2001:db8::10",
    ),
]

CASES = {
    "base": lambda: fw.base_ruleset(),
    "bridge": lambda: fw.network_rules(BRIDGE_NET),
    "bridge_dual_stack": lambda: fw.network_rules(DUAL_NET),
    "internal": lambda: fw.network_rules(INTERNAL_NET),
    "icc_false": lambda: fw.network_rules(NO_ICC_NET),
    "published_ports": lambda: [c for m in PORTS for c in fw.port_rules(m)],
}


def as_listing(commands, start_handle=1):
    """What ``nft -j list ruleset`` would show after ``commands`` ran: the objects, rules with handles."""
    items, handle = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}], start_handle
    for command in commands:
        ((verb, body),) = command.items()
        assert verb in ("add", "insert")
        ((kind, obj),) = body.items()
        obj = copy.deepcopy(obj)
        obj["handle"] = handle
        handle += 1
        items.append({kind: obj})
    return {"nftables": items}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    generated = CASES[name]()
    path = GOLDEN / f"{name}.json"
    if os.environ.get("KETCH_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(generated, indent=2) + "\n")
    assert generated == json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_rule_is_ketchs_and_commented(name):
    commands = CASES[name]()
    nft.check(commands)
    owners = set()
    for command in commands:
        ((verb, body),) = command.items()
        assert verb == "add"
        ((kind, obj),) = body.items()
        assert obj["family"] in ("ip", "ip6")
        if kind == "rule":
            assert obj["table"] == "ketch"
            owners.add(fw.owner_of(obj))
    expected = {"base": {"base"}, "published_ports": {CTR_ID}}.get(name, {NET_ID})
    assert owners == expected


def rules(commands, chain=None, family="ip"):
    out = []
    for command in commands:
        obj = command["add"].get("rule")
        if obj and obj["family"] == family and (chain is None or obj["chain"] == chain):
            out.append(obj["expr"])
    return out


def test_bridge_rules_semantics():
    cmds = fw.network_rules(BRIDGE_NET)
    outbound, hairpin, loopback = rules(cmds, "postrouting")
    subnet = {"prefix": {"addr": "172.18.0.0", "len": 16}}
    # Outbound: from the subnet, leaving through any other interface.
    assert outbound[0]["match"]["right"] == subnet
    assert outbound[1]["match"] == {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": BRIDGE}
    assert outbound[-1] == {"masquerade": None}
    # Hairpin: from the subnet, DNATed back onto the bridge (a published port used from the same network).
    assert hairpin[0]["match"] == {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": BRIDGE}
    assert hairpin[1]["match"]["right"] == subnet
    assert hairpin[2] == {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}
    # From the host's loopback (ports published on 127.0.0.1).
    assert loopback[1]["match"]["right"] == {"prefix": {"addr": "127.0.0.0", "len": 8}}
    assert rules(cmds, "forward") == []  # icc on, not internal: nothing dropped
    assert rules(cmds, "isolation-2") == [
        [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": BRIDGE}}, {"drop": None}]
    ]
    assert rules(cmds, family="ip6") == []  # no IPv6 subnet, no IPv6 rules


def test_internal_has_no_masquerade_and_drops_in_and_out():
    cmds = fw.network_rules(INTERNAL_NET)
    assert rules(cmds, "postrouting") == []
    fwd = rules(cmds, "forward")
    assert len(fwd) == 2 and all(r[-1] == {"drop": None} for r in fwd)
    assert [r[0]["match"]["op"] for r in fwd] == ["==", "!="]


def test_icc_false_drops_within_bridge():
    fwd = rules(fw.network_rules(NO_ICC_NET), "forward")
    assert fwd == [
        [
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": BRIDGE}},
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": BRIDGE}},
            {"drop": None},
        ]
    ]


def test_masquerade_can_be_disabled():
    net = fw.BridgeNetwork(id="n", bridge="br-n", subnets=("10.0.0.0/24",), masquerade=False)
    post = rules(fw.network_rules(net), "postrouting")
    # Only hairpin and loopback remain: nothing leaving the bridge is masqueraded.
    assert len(post) == 2 and all(r[0]["match"]["op"] == "==" for r in post)


def test_port_rules_shape():
    tcp_any, tcp_local = (fw.port_rules(m) for m in PORTS[:2])
    dnat = tcp_any[0]["add"]["rule"]
    assert dnat["chain"] == "publish" and dnat["comment"] == f"ketch:{CTR_ID}"
    assert dnat["expr"] == [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
        {"dnat": {"addr": "172.18.0.2", "port": 80}},
    ]
    assert tcp_local[0]["add"]["rule"]["expr"][0] == {
        "match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "127.0.0.1"}
    }
    assert len(tcp_any) == 1  # hairpin is per network, not per port
    v6 = fw.port_rules(PORTS[4])
    assert {c["add"]["rule"]["family"] for c in v6} == {"ip6"}
    # An unspecified host address is "every address": no daddr match.
    unspecified = fw.PortMapping(
        container_id="c", container_ip="10.0.0.2", container_port=1, host_port=2, host_ip="0.0.0.0"
    )
    assert (
        fw.port_rules(unspecified)[0]["add"]["rule"]["expr"][0]["match"]["left"]["payload"]["field"]
        == "dport"
    )


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"proto": "icmp"}, "Invalid proto: icmp"),
        ({"host_port": 0}, "invalid host port 0"),
        ({"container_port": 70000}, "invalid container port 70000"),
        ({"host_ip": "::1"}, "are of different IP versions"),
        ({"container_ip": "nope"}, "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_port_rules_errors(mapping, message):
    fields = {"container_id": "c", "container_ip": "10.0.0.2", "container_port": 80, "host_port": 8080}
    fields.update(mapping)
    with pytest.raises(InvalidArgument, match=message):
        fw.port_rules(fw.PortMapping(**fields))


def test_network_rules_errors():
    with pytest.raises(InvalidArgument, match="invalid subnet 'x'"):
        fw.network_rules(fw.BridgeNetwork(id="n", bridge="br", subnets=("x",)))
    with pytest.raises(InvalidArgument, match="no bridge device name"):
        fw.network_rules(fw.BridgeNetwork(id="n", bridge="", subnets=()))


# -- listings: removal and diff ---------------------------------------------------------------------------------

FOREIGN = [
    # iptables-nft's tables, with a rule whose comment happens to look like ketch's: never ours.
    {"table": {"family": "ip", "name": "filter", "handle": 900}},
    {
        "chain": {
            "family": "ip",
            "table": "filter",
            "name": "FORWARD",
            "handle": 901,
            "type": "filter",
            "hook": "forward",
            "prio": 0,
            "policy": "drop",
        }
    },
    {
        "rule": {
            "family": "ip",
            "table": "filter",
            "chain": "FORWARD",
            "handle": 902,
            "comment": f"ketch:{NET_ID}",
            "expr": [{"accept": None}],
        }
    },
    {"table": {"family": "inet", "name": "ketch", "handle": 903}},
    {
        "rule": {
            "family": "inet",
            "table": "ketch",
            "chain": "x",
            "handle": 904,
            "comment": f"ketch:{NET_ID}",
            "expr": [{"accept": None}],
        }
    },
]


def full_listing():
    desired = fw.base_ruleset() + fw.network_rules(DUAL_NET) + [c for m in PORTS for c in fw.port_rules(m)]
    listing = as_listing(desired)
    listing["nftables"].extend(copy.deepcopy(FOREIGN))
    return desired, listing


def test_removal_finds_exactly_the_owners_rules():
    _, listing = full_listing()
    cmds = fw.removal_commands(listing, NET_ID)
    nft.check(cmds)
    handles = {c["delete"]["rule"]["handle"] for c in cmds}
    expected = {
        obj["handle"]
        for kind, obj in fw.ketch_objects(listing)
        if kind == "rule" and obj["comment"] == f"ketch:{NET_ID}"
    }
    assert handles == expected and len(handles) == len(fw.network_rules(DUAL_NET))
    assert not handles & {902, 904}
    assert {c["delete"]["rule"]["table"] for c in cmds} == {"ketch"}
    assert fw.removal_commands(listing, "nobody") == []
    with pytest.raises(InvalidArgument):
        fw.removal_commands(listing, "base")


def test_owners_and_table_removal():
    _, listing = full_listing()
    assert fw.owners(listing) == {"base", NET_ID, CTR_ID}
    assert fw.table_removal_commands(listing) == [
        {"delete": {"table": {"family": "ip", "name": "ketch"}}},
        {"delete": {"table": {"family": "ip6", "name": "ketch"}}},
    ]


def test_without_tables_keeps_everything_else():
    _, listing = full_listing()
    assert fw.without_tables(listing) == FOREIGN


def test_sync_of_identical_state_is_empty():
    desired, listing = full_listing()
    assert fw.sync_commands(listing, desired) == []
    assert fw.missing_commands(listing, desired) == []


def test_sync_adds_missing_and_deletes_extra():
    desired, listing = full_listing()
    stale = fw.port_rules(
        fw.PortMapping(container_id="gone", container_ip="172.18.0.9", container_port=1, host_port=2)
    )
    listing = as_listing(desired + stale)
    new_port = fw.port_rules(
        fw.PortMapping(container_id="new", container_ip="172.18.0.3", container_port=1, host_port=3)
    )
    cmds = fw.sync_commands(listing, desired + new_port)
    nft.check(cmds)
    deletes = [c["delete"]["rule"]["handle"] for c in cmds if "delete" in c]
    stale_handles = [
        obj["handle"]
        for kind, obj in fw.ketch_objects(listing)
        if kind == "rule" and obj["comment"] == "ketch:gone"
    ]
    assert deletes == stale_handles
    assert [c for c in cmds if "delete" not in c] == new_port
    # Deletions come first in the batch.
    assert all("delete" in c for c in cmds[: len(deletes)])
    # missing_commands never deletes.
    assert fw.missing_commands(listing, desired + new_port) == new_port


def test_sync_builds_from_nothing_and_inserts_base_rules_first():
    desired = fw.base_ruleset() + fw.network_rules(BRIDGE_NET)
    cmds = fw.sync_commands({"nftables": []}, desired)
    assert len(cmds) == len(desired)
    # Without the base rule of isolation-1 in place, it is inserted at the top of the chain, not appended.
    listing = as_listing(
        [
            c
            for c in desired
            if not (
                c["add"].get("rule", {}).get("chain") == "isolation-1"
                and fw.owner_of(c["add"]["rule"]) == "base"
            )
        ]
    )
    cmds = fw.sync_commands(listing, desired)
    assert [list(c) for c in cmds] == [["insert"], ["insert"]]
    assert {c["insert"]["rule"]["chain"] for c in cmds} == {"isolation-1"}


def test_sync_refuses_foreign_desired():
    with pytest.raises(InvalidArgument):
        fw.sync_commands({"nftables": []}, [{"add": {"table": {"family": "ip", "name": "filter"}}}])
    with pytest.raises(InvalidArgument):
        fw.sync_commands({"nftables": []}, [{"flush": {"ruleset": None}}])


def test_custom_table_name():
    cmds = fw.base_ruleset("ketch_test") + fw.network_rules(BRIDGE_NET, "ketch_test")
    nft.check(cmds, "ketch_test")
    with pytest.raises(InvalidArgument):
        nft.check(cmds)
    assert fw.sync_commands(as_listing(cmds), cmds, "ketch_test") == []


@pytest.mark.parametrize(
    "command",
    [
        {"flush": {"ruleset": None}},
        {"delete": {"table": {"family": "ip", "name": "filter"}}},
        {"delete": {"table": {"family": "inet", "name": "ketch"}}},
        {"add": {"rule": {"family": "ip", "table": "nat", "chain": "POSTROUTING", "expr": []}}},
        {"flush": {"table": {"family": "ip", "name": "ketch"}}},
        {"add": {"set": {"family": "ip", "table": "ketch", "name": "s"}}},
        {
            "add": {"table": {"family": "ip", "name": "ketch"}},
            "delete": {"table": {"family": "ip", "name": "x"}},
        },
        "add table ip ketch",
    ],
)
def test_nft_check_refuses_anything_outside_ketch(command):
    with pytest.raises(InvalidArgument):
        nft.check([command])


def test_document_shape():
    doc = fw.document([{"add": {"table": {"family": "ip", "name": "ketch"}}}])
    assert doc == {
        "nftables": [
            {"metainfo": {"json_schema_version": 1}},
            {"add": {"table": {"family": "ip", "name": "ketch"}}},
        ]
    }

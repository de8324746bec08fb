"""ketch's nftables rules as data: ``nft -j`` command objects for its own tables ``ip ketch`` and ``ip6 ketch``.

Nothing here touches the kernel (:mod:`ketch.network.nft` applies the commands). Every rule carries the comment
``ketch:<owner>`` (a network id, a container id, or ``base``), which is how removal finds exactly the rules of
one network or container, by handle, in ketch's tables and nowhere else.

Layout, per family (``ip`` and ``ip6``)::

    chain prerouting  { type nat hook prerouting priority dstnat; policy accept;
                        fib daddr type local jump publish }                        # base
    chain output      { type nat hook output priority dstnat; policy accept;       # locally generated
                        fib daddr type local jump publish }                        # (ip6: not for ::1)
    chain publish     { [ip daddr HOST] tcp dport HP dnat to C:CP }               # per published port
    chain postrouting { type nat hook postrouting priority srcnat; policy accept;      # per network:
                        ip saddr SUBNET oifname != BR masquerade                   # outbound
                        oifname BR ip saddr SUBNET ct status dnat masquerade       # hairpin
                        oifname BR ip saddr 127.0.0.0/8 masquerade }               # from 127.0.0.1
    chain forward     { type filter hook forward priority filter; policy accept;
                        jump isolation-1                                           # base
                        iifname BR oifname != BR drop; iifname != BR oifname BR drop   # --internal
                        iifname BR oifname BR drop }                               # enable_icc=false
    chain isolation-1 { ct status dnat return                                      # base: published ports
                        iifname BR oifname != BR jump isolation-2 }                # per network
    chain isolation-2 { oifname BR drop }                                          # per network

Differences from Docker's iptables rules, on purpose: no userland proxy, so published ports are DNATed for
traffic from the target's own bridge too, and such connections are masqueraded back onto it (hairpin: the
container answers the gateway, not a neighbour that expects the host's address). The hairpin rule matches the
source subnet, not the input interface, because with br_netfilter a connection DNATed back onto its own bridge
is bridged and has no input interface in postrouting. Connections to a published port are exempt from network
isolation (Docker's proxy made them reachable from other networks).
What the host must provide: ``net.ipv4.ip_forward=1``; ``net.ipv4.conf.<bridge>.route_localnet=1`` for ports
published on 127.0.0.1 to reach a container; ``br_netfilter`` with ``bridge-nf-call-iptables=1`` for
``enable_icc=false`` (bridged traffic between containers of one bridge does not reach ``ip`` hooks otherwise).
Another table may still drop what ketch's accepts (an iptables FORWARD policy of DROP, as dockerd sets): in
nftables every base chain of a hook must accept a packet.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from dataclasses import dataclass

from ketch.common.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

    Command = dict[str, Any]

__all__ = [
    "BASE_OWNER",
    "COMMENT_PREFIX",
    "FAMILIES",
    "TABLE",
    "BridgeNetwork",
    "PortMapping",
    "base_ruleset",
    "comment_for",
    "document",
    "ketch_objects",
    "missing_commands",
    "network_rules",
    "owner_of",
    "owners",
    "port_rules",
    "removal_commands",
    "sync_commands",
    "table_removal_commands",
    "without_tables",
]

TABLE = "ketch"
FAMILIES = ("ip", "ip6")
COMMENT_PREFIX = "ketch:"
BASE_OWNER = "base"

PREROUTING = "prerouting"
OUTPUT = "output"
POSTROUTING = "postrouting"
FORWARD = "forward"
PUBLISH = "publish"
ISOLATION_1 = "isolation-1"
ISOLATION_2 = "isolation-2"

# name, type, hook, priority (dstnat = -100, srcnat = 100, filter = 0)
_BASE_CHAINS = (
    (PREROUTING, "nat", "prerouting", -100),
    (OUTPUT, "nat", "output", -100),
    (POSTROUTING, "nat", "postrouting", 100),
    (FORWARD, "filter", "forward", 0),
)
_REGULAR_CHAINS = (PUBLISH, ISOLATION_1, ISOLATION_2)
_PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeNetwork:
    """What the rules of one bridge network depend on."""

    id: str
    bridge: str  # the bridge device, e.g. "br-0123456789ab"
    subnets: tuple[str, ...]  # IPv4 and IPv6 prefixes
    internal: bool = False
    icc: bool = True  # com.docker.network.bridge.enable_icc
    masquerade: bool = True  # com.docker.network.bridge.enable_ip_masquerade


@dataclass(frozen=True, slots=True, kw_only=True)
class PortMapping:
    """One published port: ``host_ip:host_port/proto -> container_ip:container_port``."""

    container_id: str
    container_ip: str
    container_port: int
    host_port: int
    proto: str = "tcp"
    host_ip: str = ""  # empty, 0.0.0.0 or ::: every local address of the container address's family


def comment_for(owner: str) -> str:
    return COMMENT_PREFIX + owner


def document(commands: Iterable[Command]) -> dict[str, Any]:
    """The input of ``nft -j -f -``."""
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *commands]}


# -- expression builders ----------------------------------------------------------------------------------------


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str, value: str, op: str = "==") -> dict[str, Any]:
    return _match({"meta": {"key": key}}, value, op)


def _payload(protocol: str, fld: str, value: Any, op: str = "==") -> dict[str, Any]:
    return _match({"payload": {"protocol": protocol, "field": fld}}, value, op)


def _prefix(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


_FIB_LOCAL = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
_CT_DNAT = _match({"ct": {"key": "status"}}, "dnat", "in")


def _rule(family: str, table: str, chain: str, owner: str, *expr: Any) -> Command:
    obj = {
        "family": family,
        "table": table,
        "chain": chain,
        "comment": comment_for(owner),
        "expr": copy.deepcopy(list(expr)),  # shared fragments must not alias between rules
    }
    return {"add": {"rule": obj}}


def _family_of(address: str) -> str:
    return "ip6" if ipaddress.ip_address(address).version == 6 else "ip"


_DROP: dict[str, Any] = {"drop": None}
_MASQUERADE: dict[str, Any] = {"masquerade": None}


# -- rule sets --------------------------------------------------------------------------------------------------


def base_ruleset(table: str = TABLE) -> list[Command]:
    """ketch's tables, chains and the rules that hook them together, in both families."""
    out: list[Command] = []
    for family in FAMILIES:
        out.append({"add": {"table": {"family": family, "name": table}}})
        for name, kind, hook, prio in _BASE_CHAINS:
            chain: dict[str, Any] = {"family": family, "table": table, "name": name}
            chain.update(type=kind, hook=hook, prio=prio, policy="accept")
            out.append({"add": {"chain": chain}})
        out.extend({"add": {"chain": {"family": family, "table": table, "name": n}}} for n in _REGULAR_CHAINS)

        def rule(chain: str, *expr: Any, family: str = family) -> None:
            out.append(_rule(family, table, chain, BASE_OWNER, *expr))

        jump_publish = {"jump": {"target": PUBLISH}}
        rule(PREROUTING, _FIB_LOCAL, jump_publish)
        if family == "ip6":
            # ::1 cannot be routed out of the host (IPv6 has no route_localnet): leave it to local listeners.
            rule(OUTPUT, _payload("ip6", "daddr", "::1", "!="), _FIB_LOCAL, jump_publish)
        else:
            rule(OUTPUT, _FIB_LOCAL, jump_publish)
        rule(FORWARD, {"jump": {"target": ISOLATION_1}})
        rule(ISOLATION_1, _CT_DNAT, {"return": None})
    return out


def network_rules(net: BridgeNetwork, table: str = TABLE) -> list[Command]:
    """Masquerade, hairpin, isolation, ``--internal`` and ``enable_icc`` rules of one bridge network."""
    if not net.bridge:
        raise InvalidArgument(f"network {net.id}: no bridge device name")
    subnets = []
    for text in net.subnets:
        try:
            subnets.append(ipaddress.ip_network(text))
        except ValueError:
            raise InvalidArgument(f"network {net.id}: invalid subnet {text!r}") from None
    br = net.bridge
    in_br, out_br = _meta("iifname", br), _meta("oifname", br)
    not_in_br, not_out_br = _meta("iifname", br, "!="), _meta("oifname", br, "!=")
    out: list[Command] = []
    for family in FAMILIES:
        mine = [s for s in subnets if _family_of(str(s.network_address)) == family]
        if not mine:
            continue

        def rule(chain: str, *expr: Any, family: str = family) -> None:
            out.append(_rule(family, table, chain, net.id, *expr))

        if net.internal:
            rule(FORWARD, in_br, not_out_br, _DROP)
            rule(FORWARD, not_in_br, out_br, _DROP)
        if not net.icc:
            rule(FORWARD, in_br, out_br, _DROP)
        rule(ISOLATION_1, in_br, not_out_br, {"jump": {"target": ISOLATION_2}})
        rule(ISOLATION_2, out_br, _DROP)
        if net.internal:
            continue
        for subnet in mine:
            from_subnet = _payload(family, "saddr", _prefix(subnet))
            if net.masquerade:
                rule(POSTROUTING, from_subnet, not_out_br, _MASQUERADE)
            rule(POSTROUTING, out_br, from_subnet, _CT_DNAT, _MASQUERADE)
        if family == "ip":
            # Ports published on 127.0.0.1: after DNAT the source is still loopback, which the container
            # could not answer; give it the bridge's address.
            loopback = _payload("ip", "saddr", {"prefix": {"addr": "127.0.0.0", "len": 8}})
            rule(POSTROUTING, out_br, loopback, _MASQUERADE)
    return out


def port_rules(mapping: PortMapping, table: str = TABLE) -> list[Command]:
    """DNAT for one published port, from outside and from the host itself (hairpin is per network)."""
    m = mapping
    if m.proto not in _PROTOCOLS:
        raise InvalidArgument(f"Invalid proto: {m.proto}")
    for what, port in (("container port", m.container_port), ("host port", m.host_port)):
        if not 0 < port < 65536:
            raise InvalidArgument(f"published port of {m.container_id}: invalid {what} {port}")
    try:
        container_ip = ipaddress.ip_address(m.container_ip)
        host_ip = ipaddress.ip_address(m.host_ip) if m.host_ip else None
    except ValueError as exc:
        raise InvalidArgument(f"published port of {m.container_id}: {exc}") from None
    family = _family_of(m.container_ip)
    if host_ip is not None and host_ip.version != container_ip.version:
        raise InvalidArgument(
            f"published port {m.host_ip}:{m.host_port}/{m.proto} of {m.container_id}: the host address and the "
            f"container address {m.container_ip} are of different IP versions"
        )
    match = []
    if host_ip is not None and not host_ip.is_unspecified:
        match.append(_payload(family, "daddr", str(host_ip)))
    match.append(_payload(m.proto, "dport", m.host_port))
    dnat = {"dnat": {"addr": str(container_ip), "port": m.container_port}}
    return [_rule(family, table, PUBLISH, m.container_id, *match, dnat)]


# -- reading a listing ------------------------------------------------------------------------------------------


def _items(listing: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = listing.get("nftables", [])
    if not isinstance(items, list):
        raise InvalidArgument("nft listing: 'nftables' is not a list")
    return items


def _is_ours(obj: Mapping[str, Any], table: str) -> bool:
    name = obj.get("table", obj.get("name"))
    return obj.get("family") in FAMILIES and name == table


def ketch_objects(listing: Mapping[str, Any], table: str = TABLE) -> list[tuple[str, dict[str, Any]]]:
    """(kind, object) of ketch's tables in a ``nft -j list ruleset`` listing: tables, chains, rules, sets."""
    out = []
    for item in _items(listing):
        for kind, obj in item.items():
            if kind != "metainfo" and isinstance(obj, dict) and _is_ours(obj, table):
                out.append((kind, obj))
    return out


def without_tables(listing: Mapping[str, Any], table: str = TABLE) -> list[dict[str, Any]]:
    """The listing's items minus ketch's tables and everything in them (and the metainfo)."""
    out = []
    for item in _items(listing):
        if "metainfo" in item:
            continue
        if any(isinstance(obj, dict) and _is_ours(obj, table) for obj in item.values()):
            continue
        out.append(item)
    return out


def owner_of(rule: Mapping[str, Any]) -> str | None:
    comment = rule.get("comment")
    if isinstance(comment, str) and comment.startswith(COMMENT_PREFIX):
        return comment[len(COMMENT_PREFIX) :]
    return None


def owners(listing: Mapping[str, Any], table: str = TABLE) -> set[str]:
    """Owners of rules present in ketch's tables (to find leftovers of networks or containers gone)."""
    return {o for kind, obj in ketch_objects(listing, table) if kind == "rule" and (o := owner_of(obj))}


def removal_commands(listing: Mapping[str, Any], owner: str, table: str = TABLE) -> list[Command]:
    """Delete, by handle, every rule in ketch's tables whose comment is ``ketch:<owner>``."""
    if owner == BASE_OWNER:
        raise InvalidArgument("the base rules go with ketch's tables (table_removal_commands)")
    return [
        {
            "delete": {
                "rule": {
                    "family": obj["family"],
                    "table": table,
                    "chain": obj["chain"],
                    "handle": obj["handle"],
                }
            }
        }
        for kind, obj in ketch_objects(listing, table)
        if kind == "rule" and owner_of(obj) == owner
    ]


def table_removal_commands(listing: Mapping[str, Any], table: str = TABLE) -> list[Command]:
    """Delete ketch's tables (those present in the listing) with everything in them."""
    return [
        {"delete": {"table": {"family": obj["family"], "name": table}}}
        for kind, obj in ketch_objects(listing, table)
        if kind == "table"
    ]


def _rule_key(rule: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(rule.get("family")),
        str(rule.get("chain")),
        str(rule.get("comment", "")),
        json.dumps(rule.get("expr", []), sort_keys=True),
    )


def sync_commands(
    listing: Mapping[str, Any], desired: Sequence[Command], table: str = TABLE, *, delete_extra: bool = True
) -> list[Command]:
    """Commands that turn ketch's tables as listed into ``desired`` (``base_ruleset()`` plus rule commands).

    Missing tables and chains are added; rules compare by family, chain, comment and expression, so a rule
    already present is left alone (its counters and position kept). With ``delete_extra``, rules of ketch's
    tables that are not desired are deleted by handle first. Missing base rules are inserted at the top of
    their chain, where they must be; other rules are order-independent and appended.
    """
    tables, chains = set(), set()
    present: dict[tuple[str, str, str, str], list[int]] = {}
    for kind, obj in ketch_objects(listing, table):
        if kind == "table":
            tables.add(obj["family"])
        elif kind == "chain":
            chains.add((obj["family"], obj["name"]))
        elif kind == "rule":
            present.setdefault(_rule_key(obj), []).append(int(obj["handle"]))

    adds: list[Command] = []
    for command in desired:
        ((verb, body),) = command.items()
        if verb not in ("add", "insert"):
            raise InvalidArgument(f"sync: only add/insert commands can be desired, not {verb!r}")
        ((kind, obj),) = body.items()
        if not _is_ours(obj, table):
            raise InvalidArgument(f"sync: {kind} outside ketch's tables: {obj}")
        if kind == "table":
            if obj["family"] not in tables:
                tables.add(obj["family"])
                adds.append(command)
        elif kind == "chain":
            if (obj["family"], obj["name"]) not in chains:
                chains.add((obj["family"], obj["name"]))
                adds.append(command)
        elif kind == "rule":
            handles = present.get(_rule_key(obj))
            if handles:
                handles.pop(0)
            elif owner_of(obj) == BASE_OWNER:
                adds.append({"insert": {"rule": obj}})
            else:
                adds.append({"add": {"rule": obj}})
        else:
            raise InvalidArgument(f"sync: unexpected object kind {kind!r}")

    deletes: list[Command] = []
    if delete_extra:
        for (family, chain, _comment, _expr), handles in present.items():
            for handle in handles:
                deletes.append(
                    {"delete": {"rule": {"family": family, "table": table, "chain": chain, "handle": handle}}}
                )
    return deletes + adds


def missing_commands(
    listing: Mapping[str, Any], desired: Sequence[Command], table: str = TABLE
) -> list[Command]:
    """Only what ``desired`` adds to the listing: installing the same rules twice is a no-op."""
    return sync_commands(listing, desired, table, delete_extra=False)

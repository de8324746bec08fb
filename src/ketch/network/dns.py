"""Docker's embedded DNS for user-defined networks, as a pure table: endpoints in, DNS replies out (no I/O).

Behaviour follows moby's libnetwork resolver (read for behaviour, not copied):

* Names on a network: each endpoint answers to its container name, its ``--network-alias`` aliases and its short
  container ID (the first 12 characters, after any ``sha256:``). Several endpoints may share a name (aliases):
  every address is answered, the order rotated by one on each query for that name (Docker shuffles; rotation
  spreads load the same way and is predictable). Lookups are case-insensitive.
* ``name.<network>`` selects the network explicitly; as in Docker, a name with dots is tried whole first, then
  split at each dot from the right into ``<name>.<network name>``, so dotted names and dotted network names work.
  Search-domain suffixes are not stripped: the client's resolver retries the bare name after the forwarded
  ``name.<search domain>`` comes back NXDOMAIN.
* Scope: only the networks the query is asked for (the querying container's networks) are searched.
* ``--link`` aliases are the querying container's: ``links={"alias": target}``, target being an IP address or
  the linked container's name (then resolved on the same networks, as Docker does). They take precedence.
* A and AAAA answers carry TTL 600. A known name without an address of the asked family, and any other record
  type of a known name (MX, TXT, ...), gets an empty NOERROR reply so the query never leaks upstream (Docker does
  this for AAAA and MX and forwards other types; forwarding a container name is never useful).
* PTR for an endpoint address answers ``<container name>.<network name>.``; unknown addresses are forwarded.
* ``answer`` returns ``None`` for what the table does not know (the server forwards it), for other classes
  than IN, and for datagrams that are not queries at all (shorter than a header or with QR set: the server drops
  those before asking). A query whose header is readable but whose body is not gets FORMERR; a query with a
  question count other than one gets FORMERR; an opcode other than QUERY gets NOTIMP.
* Over UDP a reply larger than the client's limit (512, or its EDNS payload size) is trimmed record by record
  and flagged TC, as Docker does: clients that retry over TCP get everything, and stub resolvers that do not
  (musl, busybox) still get usable addresses.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from ketch.common.errors import InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "TTL",
    "DnsTable",
    "Endpoint",
    "error_reply",
    "fit_udp",
    "is_query",
    "short_id",
    "udp_limit",
]

TTL = 600  # Docker's respTTL
UDP_MIN = 512  # RFC 1035 limit for clients that do not send EDNS
_MAX_MESSAGE = 65535
_OUR_PAYLOAD = 4096  # advertised in EDNS replies
_MAX_TURNS = 4096  # round-robin counters kept before starting over


def short_id(container_id: str) -> str:
    """Docker's TruncateID: drop an algorithm prefix, keep 12 characters."""
    return container_id.partition(":")[2][:12] if ":" in container_id else container_id[:12]


def _address(value: str | None, version: int, field: str, container_id: str) -> str | None:
    if not value:
        return None
    try:
        ip = ipaddress.ip_interface(value).ip  # IPAM hands out "10.0.0.2/24"; the prefix does not matter here
    except ValueError:
        raise InvalidArgument(f"endpoint of {container_id}: {field} {value!r} is not an IP address") from None
    if ip.version != version:
        raise InvalidArgument(f"endpoint of {container_id}: {field} {value!r} is not an IPv{version} address")
    return str(ip)


@dataclass(frozen=True)
class Endpoint:
    """A container's attachment to a network, as DNS sees it. Addresses may carry a prefix length."""

    network_id: str
    container_id: str
    name: str
    aliases: Sequence[str] = ()
    ipv4: str | None = None
    ipv6: str | None = None

    def __post_init__(self) -> None:
        if not self.network_id:
            raise InvalidArgument(f"endpoint of {self.container_id or '?'}: network_id is empty")
        if not self.container_id:
            raise InvalidArgument(f"endpoint {self.name!r}: container_id is empty")
        name = self.name.lstrip("/")
        if not name:
            raise InvalidArgument(f"endpoint of {self.container_id}: name is empty")
        set_ = object.__setattr__  # frozen: normalise once here
        set_(self, "name", name)
        set_(self, "aliases", tuple(a for a in self.aliases if a))
        set_(self, "ipv4", _address(self.ipv4, 4, "ipv4", self.container_id))
        set_(self, "ipv6", _address(self.ipv6, 6, "ipv6", self.container_id))

    def dns_names(self) -> list[str]:
        """Lower-cased names this endpoint answers to on its network, without duplicates."""
        names = [self.name, *self.aliases, short_id(self.container_id)]
        return list(dict.fromkeys(n.lower().rstrip(".") for n in names))


@dataclass
class _Network:
    name: str
    endpoints: dict[str, Endpoint]  # by container ID, in attach order
    by_name: dict[str, list[Endpoint]]
    by_address: dict[str, Endpoint]

    def reindex(self) -> None:
        self.by_name = {}
        self.by_address = {}
        for ep in self.endpoints.values():
            for name in ep.dns_names():
                self.by_name.setdefault(name, []).append(ep)
            for ip in (ep.ipv4, ep.ipv6):
                if ip is not None:
                    self.by_address.setdefault(ip, ep)  # first attached wins, as Docker's ipMap


# What a name resolves to: IPv4 and IPv6 addresses, duplicates removed, in attach order.
_Hit = tuple[list[str], list[str]]


def _hit(endpoints: Iterable[Endpoint]) -> _Hit:
    eps = list(endpoints)
    v4 = dict.fromkeys(ep.ipv4 for ep in eps if ep.ipv4 is not None)
    v6 = dict.fromkeys(ep.ipv6 for ep in eps if ep.ipv6 is not None)
    return list(v4), list(v6)


def _candidates(name: str) -> list[tuple[str, str | None]]:
    """Docker's reading of "a.b.c": a.b.c on any network, then a.b on network c, then a on network b.c."""
    out: list[tuple[str, str | None]] = [(name, None)]
    cut = len(name)
    while (cut := name.rfind(".", 0, cut)) > 0:
        out.append((name[:cut], name[cut + 1 :]))
    return out


def is_query(wire: bytes) -> bool:
    """Has a DNS header and the QR bit clear: anything else is dropped without a reply."""
    return len(wire) >= 12 and not wire[2] & 0x80


def _header_reply(query: bytes, rcode: int) -> bytes:
    # For queries dnspython cannot parse: echo ID, opcode and RD, no sections.
    flags2 = 0x80 | (query[2] & 0x79)
    return query[:2] + bytes((flags2, 0x80 | (rcode & 0x0F))) + bytes(8)


def _response(query: dns.message.Message) -> dns.message.Message:
    return dns.message.make_response(query, recursion_available=True, our_payload=_OUR_PAYLOAD)


def error_reply(query: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A reply with `rcode` (e.g. dns.rcode.SERVFAIL) to `query`, echoing its question when it parses."""
    try:
        msg = dns.message.from_wire(query)
    except (dns.exception.DNSException, ValueError, UnicodeError):
        return _header_reply(query, rcode)
    resp = _response(msg)
    resp.set_rcode(rcode)
    return resp.to_wire()


def udp_limit(query: dns.message.Message) -> int:
    """Largest UDP reply the client accepts: its EDNS payload size, at least 512."""
    return min(max(UDP_MIN, query.payload if query.edns >= 0 else 0), _MAX_MESSAGE)


def fit_udp(reply: bytes, limit: int) -> bytes:
    """`reply` if it fits in `limit` bytes, else the same reply trimmed and flagged TC."""
    if len(reply) <= limit:
        return reply
    try:
        msg = dns.message.from_wire(reply, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, UnicodeError):
        return reply[:2] + bytes((reply[2] | 0x02, reply[3])) + bytes(8)  # header only, TC set
    return _render(msg, limit, udp=True)


def _render(resp: dns.message.Message, limit: int, *, udp: bool) -> bytes:
    try:
        return resp.to_wire(max_size=limit, want_shuffle=False)
    except dns.exception.TooBig:
        pass
    # Keep as many answer records as fit (binary search on the count), drop the other sections.
    records = [(rrset, rdata) for rrset in resp.answer for rdata in rrset]
    resp.authority = []
    resp.additional = []
    if udp:
        resp.flags |= dns.flags.TC
    lo, hi, best = 0, len(records), b""
    while lo <= hi:
        mid = (lo + hi) // 2
        resp.answer = _regroup(records[:mid])
        try:
            best = resp.to_wire(max_size=limit, want_shuffle=False)
            lo = mid + 1
        except dns.exception.TooBig:
            hi = mid - 1
    if not best:  # not even the question fits (a limit below any real client's): header only
        wire = resp.to_wire(want_shuffle=False)
        best = wire[:2] + bytes((wire[2] | (0x02 if udp else 0), wire[3])) + bytes(8)
    return best


def _regroup(records: list[tuple[dns.rrset.RRset, dns.rdata.Rdata]]) -> list[dns.rrset.RRset]:
    out: dict[int, dns.rrset.RRset] = {}
    for rrset, rdata in records:
        key = id(rrset)
        if key not in out:
            out[key] = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
        out[key].add(rdata, rrset.ttl)
    return list(out.values())


class DnsTable:
    """Names and addresses of the endpoints on each network; answers queries from them.

    Thread-safe: the daemon may add and remove endpoints from any thread while servers answer."""

    def __init__(self) -> None:
        self._networks: dict[str, _Network] = {}
        self._turns: dict[tuple[object, ...], int] = {}
        self._lock = threading.Lock()

    # -- contents ----------------------------------------------------------------------------------

    def add_network(self, network_id: str, name: str) -> None:
        """Register a network (its name answers `x.<name>` and PTR). Re-adding renames and keeps endpoints."""
        if not network_id or not name:
            raise InvalidArgument(f"DNS network needs an ID and a name (got {network_id!r}, {name!r})")
        with self._lock:
            net = self._networks.get(network_id)
            if net is None:
                self._networks[network_id] = _Network(name, {}, {}, {})
            else:
                net.name = name

    def remove_network(self, network_id: str) -> None:
        """Forget a network and its endpoints; unknown IDs are ignored."""
        with self._lock:
            self._networks.pop(network_id, None)

    def add_endpoint(self, endpoint: Endpoint) -> None:
        """Add or replace (same network and container) an endpoint."""
        with self._lock:
            net = self._network(endpoint.network_id)
            net.endpoints[endpoint.container_id] = endpoint
            net.reindex()

    def remove_endpoint(self, network_id: str, container_id: str) -> Endpoint | None:
        """Remove a container's endpoint from a network; returns it, or None if it was not there."""
        with self._lock:
            net = self._networks.get(network_id)
            if net is None:
                return None
            ep = net.endpoints.pop(container_id, None)
            if ep is not None:
                net.reindex()
            return ep

    def endpoints(self, network_id: str) -> list[Endpoint]:
        with self._lock:
            net = self._networks.get(network_id)
            return [] if net is None else list(net.endpoints.values())

    def _network(self, network_id: str) -> _Network:
        net = self._networks.get(network_id)
        if net is None:
            raise NotFound(f"network {network_id} is not in the DNS table")
        return net

    # -- lookups -------------------------------------------------------------------------------------

    def lookup(
        self, name: str, network_id: str | Sequence[str], links: Mapping[str, str] | None = None
    ) -> _Hit | None:
        """(IPv4 addresses, IPv6 addresses) for `name` seen from `network_id` (one ID or the querying
        container's IDs, searched in order), or None when the name is not known there. No rotation."""
        with self._lock:
            return self._lookup(name.lower().rstrip("."), self._scope(network_id), links)

    def _scope(self, network_id: str | Sequence[str]) -> list[_Network]:
        ids = [network_id] if isinstance(network_id, str) else list(network_id)
        return [self._networks[i] for i in ids if i in self._networks]

    def _lookup(self, name: str, nets: list[_Network], links: Mapping[str, str] | None) -> _Hit | None:
        if not name:
            return None
        lowered_links = {k.lower().rstrip("."): v for k, v in (links or {}).items()}
        for req, network_name in _candidates(name):
            scoped = nets if network_name is None else [n for n in nets if n.name.lower() == network_name]
            if not scoped:
                continue
            target = lowered_links.get(req)
            if target is not None:
                hit = self._link(target, scoped)
                if hit is not None:
                    return hit
            for net in scoped:  # the first network that knows the name answers, as Docker's endpoint order
                eps = net.by_name.get(req)
                if eps:
                    return _hit(eps)
        return None

    @staticmethod
    def _link(target: str, nets: list[_Network]) -> _Hit | None:
        try:
            ip = ipaddress.ip_address(target)
        except ValueError:
            name = target.lower().lstrip("/").rstrip(".")
            for net in nets:
                eps = net.by_name.get(name)
                if eps:
                    return _hit(eps)
            return None
        return ([str(ip)], []) if ip.version == 4 else ([], [str(ip)])

    def _reverse(self, qname: dns.name.Name, nets: list[_Network]) -> str | None:
        try:
            ip = str(ipaddress.ip_address(dns.reversename.to_address(qname)))
        except (dns.exception.DNSException, ValueError):
            return None  # not a full in-addr.arpa / ip6.arpa name
        for net in nets:
            ep = net.by_address.get(ip)
            if ep is not None:
                return f"{ep.name}.{net.name}."
        return None

    def _rotate(self, key: tuple[object, ...], items: list[str]) -> list[str]:
        if len(items) < 2:
            return items
        if len(self._turns) >= _MAX_TURNS and key not in self._turns:
            self._turns.clear()
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        k = turn % len(items)
        return items[k:] + items[:k]

    # -- wire ------------------------------------------------------------------------------------------

    def answer(
        self,
        query: bytes,
        network_id: str | Sequence[str],
        *,
        links: Mapping[str, str] | None = None,
        udp: bool = False,
    ) -> bytes | None:
        """The reply to `query` (wire format) asked on `network_id` (see module doc), or None to forward it.

        `links` are the querying container's --link aliases; `udp` limits the reply to the client's UDP size."""
        if not is_query(query):
            return None
        try:
            msg = dns.message.from_wire(query)
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return _header_reply(query, dns.rcode.FORMERR)
        if msg.opcode() != dns.opcode.QUERY:
            return self._finish(msg, dns.rcode.NOTIMP, [], udp)
        if len(msg.question) != 1:
            return self._finish(msg, dns.rcode.FORMERR, [], udp)
        q = msg.question[0]
        if q.rdclass != dns.rdataclass.IN:
            return None
        qname: dns.name.Name = q.name
        qtype = q.rdtype
        with self._lock:
            nets = self._scope(network_id)
            if qtype == dns.rdatatype.PTR:
                target = self._reverse(qname, nets)
                if target is not None:
                    rrset = dns.rrset.from_text_list(qname, TTL, "IN", "PTR", [target])
                    return self._finish(msg, dns.rcode.NOERROR, [rrset], udp)
            name = qname.to_text(omit_final_dot=True).lower()
            hit = self._lookup(name, nets, links)
            if hit is None:
                return None
            v4, v6 = hit
            key = (tuple(id(n) for n in nets), name)
            rrsets: list[dns.rrset.RRset] = []
            if qtype in (dns.rdatatype.A, dns.rdatatype.ANY) and v4:
                rrsets.append(dns.rrset.from_text_list(qname, TTL, "IN", "A", self._rotate((*key, 4), v4)))
            if qtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY) and v6:
                rrsets.append(dns.rrset.from_text_list(qname, TTL, "IN", "AAAA", self._rotate((*key, 6), v6)))
        return self._finish(msg, dns.rcode.NOERROR, rrsets, udp)

    @staticmethod
    def _finish(
        msg: dns.message.Message, rcode: dns.rcode.Rcode, rrsets: list[dns.rrset.RRset], udp: bool
    ) -> bytes:
        resp = _response(msg)
        resp.set_rcode(rcode)
        resp.answer = rrsets
        return _render(resp, udp_limit(msg) if udp else _MAX_MESSAGE, udp=udp)

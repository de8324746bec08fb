"""The embedded resolver's answers from a table of endpoints (pure: wire bytes in, wire bytes out)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketch.common.errors import InvalidArgument, NotFound
from ketch.network.dns import TTL, DnsTable, Endpoint, error_reply, fit_udp, short_id, udp_limit
from ketch.network.dns_server import host_forwarders

WEB_ID = "a1b2c3d4e5f6" + "0" * 52
DB_ID = "sha256:" + "d" * 64
N1, N2 = "net1-id", "net2-id"


@pytest.fixture
def table() -> DnsTable:
    t = DnsTable()
    t.add_network(N1, "front")
    t.add_network(N2, "back")
    t.add_endpoint(Endpoint(N1, WEB_ID, "/web", ["www"], "10.1.0.2/16", "fd00:1::2/64"))
    t.add_endpoint(Endpoint(N1, "c" * 64, "cache", [], "10.1.0.3"))
    t.add_endpoint(Endpoint(N2, DB_ID, "db", ["database"], "10.2.0.2"))
    return t


def ask(
    table: DnsTable,
    name: str,
    rdtype: str = "A",
    network: str | list[str] = N1,
    **kw: object,
) -> dns.message.Message | None:
    query = dns.message.make_query(name, rdtype)
    wire = table.answer(query.to_wire(), network, **kw)  # type: ignore[arg-type]
    if wire is None:
        return None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA
    assert reply.question == query.question
    return reply


def addresses(reply: dns.message.Message | None) -> list[str]:
    assert reply is not None and reply.rcode() == dns.rcode.NOERROR
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


def test_container_name_answers_a_with_docker_ttl(table: DnsTable) -> None:
    reply = ask(table, "web")
    assert addresses(reply) == ["10.1.0.2"]
    assert reply is not None and reply.answer[0].ttl == TTL == 600
    assert reply.answer[0].rdtype == dns.rdatatype.A
    assert addresses(ask(table, "cache")) == ["10.1.0.3"]


def test_aaaa_answers_ipv6_and_known_name_without_ipv6_is_empty_noerror(table: DnsTable) -> None:
    assert addresses(ask(table, "web", "AAAA")) == ["fd00:1::2"]
    reply = ask(table, "cache", "AAAA")
    assert reply is not None and reply.rcode() == dns.rcode.NOERROR and reply.answer == []


def test_short_id_resolves_full_id_does_not(table: DnsTable) -> None:
    assert addresses(ask(table, "a1b2c3d4e5f6")) == ["10.1.0.2"]
    assert ask(table, WEB_ID[:20]) is None
    assert addresses(ask(table, "dddddddddddd", network=N2)) == ["10.2.0.2"]  # "sha256:" is not part of it
    assert short_id(DB_ID) == "d" * 12


def test_names_are_case_insensitive_and_the_reply_echoes_the_question(table: DnsTable) -> None:
    reply = ask(table, "WeB.FrOnT.")
    assert addresses(reply) == ["10.1.0.2"]
    assert reply is not None and reply.answer[0].name.to_text() == "WeB.FrOnT."
    assert addresses(ask(table, "WWW")) == ["10.1.0.2"]


def test_name_with_network_suffix_and_dotted_names() -> None:
    t = DnsTable()
    t.add_network(N1, "my.net")
    t.add_endpoint(Endpoint(N1, "e" * 64, "api.v1", [], "10.3.0.2"))
    assert addresses(ask(t, "api.v1")) == ["10.3.0.2"]
    assert addresses(ask(t, "api.v1.my.net")) == ["10.3.0.2"]
    assert ask(t, "api.v1.other") is None
    assert ask(t, "api.my") is None


def test_network_alias_shared_by_several_containers_round_robins(table: DnsTable) -> None:
    for i, ip in enumerate(["10.1.0.10", "10.1.0.11", "10.1.0.12"]):
        table.add_endpoint(Endpoint(N1, f"{i}" * 64, f"worker{i}", ["pool"], ip))
    seen = [addresses(ask(table, "pool")) for _ in range(4)]
    assert seen[0] == ["10.1.0.10", "10.1.0.11", "10.1.0.12"]
    assert seen[1] == ["10.1.0.11", "10.1.0.12", "10.1.0.10"]
    assert seen[2] == ["10.1.0.12", "10.1.0.10", "10.1.0.11"]
    assert seen[3] == seen[0]
    assert addresses(ask(table, "worker1")) == ["10.1.0.11"]  # a single address is never rotated


def test_duplicate_addresses_are_answered_once(table: DnsTable) -> None:
    table.add_endpoint(Endpoint(N1, "f" * 64, "twin", ["www"], "10.1.0.2"))  # stale reuse of web's address
    assert addresses(ask(table, "www")) == ["10.1.0.2"]


def test_scoped_to_the_querying_network(table: DnsTable) -> None:
    assert ask(table, "db", network=N1) is None
    assert ask(table, "web", network=N2) is None
    assert ask(table, "db.back", network=N1) is None  # naming another network does not escape the scope
    assert addresses(ask(table, "db", network=N2)) == ["10.2.0.2"]
    assert addresses(ask(table, "database.back", network=N2)) == ["10.2.0.2"]
    both = [N1, N2]  # a container on both networks sees both
    assert addresses(ask(table, "db", network=both)) == ["10.2.0.2"]
    assert addresses(ask(table, "web", network=both)) == ["10.1.0.2"]
    assert ask(table, "web.back", network=both) is None
    assert ask(table, "web", network="no-such-network") is None


def test_first_network_in_scope_wins_for_a_name_on_both(table: DnsTable) -> None:
    table.add_endpoint(Endpoint(N2, WEB_ID, "web", [], "10.2.0.9"))
    assert addresses(ask(table, "web", network=[N2, N1])) == ["10.2.0.9"]
    assert addresses(ask(table, "web", network=[N1, N2])) == ["10.1.0.2"]
    assert addresses(ask(table, "web.back", network=[N1, N2])) == ["10.2.0.9"]


def test_links_are_per_query_and_take_precedence(table: DnsTable) -> None:
    links = {"legacy": "10.9.0.1", "Store": "cache", "cache": "web", "v6": "fd00::99"}
    assert addresses(ask(table, "legacy", links=links)) == ["10.9.0.1"]
    assert addresses(ask(table, "store", links=links)) == ["10.1.0.3"]  # target name resolved on the network
    assert addresses(ask(table, "cache", links=links)) == ["10.1.0.2"]  # the alias shadows the container
    assert addresses(ask(table, "store.front", links=links)) == ["10.1.0.3"]
    assert addresses(ask(table, "v6", "AAAA", links=links)) == ["fd00::99"]
    assert ask(table, "legacy") is None  # another container without the link
    assert ask(table, "dangling", links={"dangling": "nosuch"}) is None


def test_ptr_answers_name_dot_network_for_v4_and_v6(table: DnsTable) -> None:
    for ip in ("10.1.0.2", "fd00:1::2"):
        reply = ask(table, dns.reversename.from_address(ip).to_text(), "PTR")
        assert addresses(reply) == ["web.front."]
        assert reply is not None and reply.answer[0].ttl == TTL
    assert ask(table, dns.reversename.from_address("10.2.0.2").to_text(), "PTR") is None  # other network
    assert ask(table, dns.reversename.from_address("192.0.2.1").to_text(), "PTR") is None
    assert ask(table, "1.10.in-addr.arpa", "PTR") is None  # partial reverse name: not ours


def test_unknown_names_and_foreign_classes_are_left_to_forwarding(table: DnsTable) -> None:
    assert ask(table, "example.org") is None
    assert ask(table, "web.example.org") is None  # search domains are not stripped
    query = dns.message.make_query("web", "A", rdclass=dns.rdataclass.CH)
    assert table.answer(query.to_wire(), N1) is None


@pytest.mark.parametrize("rdtype", ["MX", "TXT", "SRV", "PTR", "CNAME"])
def test_known_name_other_types_get_empty_noerror(table: DnsTable, rdtype: str) -> None:
    reply = ask(table, "web", rdtype)
    assert reply is not None and reply.rcode() == dns.rcode.NOERROR and reply.answer == []


def test_any_answers_both_families(table: DnsTable) -> None:
    assert sorted(addresses(ask(table, "web", "ANY"))) == ["10.1.0.2", "fd00:1::2"]


def test_remove_endpoint_and_network(table: DnsTable) -> None:
    removed = table.remove_endpoint(N1, WEB_ID)
    assert removed is not None and removed.name == "web"
    assert ask(table, "web") is None and ask(table, "www") is None
    assert ask(table, dns.reversename.from_address("10.1.0.2").to_text(), "PTR") is None
    assert table.remove_endpoint(N1, WEB_ID) is None
    assert [e.name for e in table.endpoints(N1)] == ["cache"]
    table.remove_network(N1)
    assert ask(table, "cache") is None and table.endpoints(N1) == []


def test_replacing_an_endpoint_updates_its_names(table: DnsTable) -> None:
    table.add_endpoint(Endpoint(N1, WEB_ID, "web", ["site"], "10.1.0.7"))
    assert addresses(ask(table, "site")) == ["10.1.0.7"]
    assert ask(table, "www") is None


def test_endpoint_validation() -> None:
    with pytest.raises(InvalidArgument, match="ipv4 'nope'"):
        Endpoint(N1, WEB_ID, "web", ipv4="nope")
    with pytest.raises(InvalidArgument, match="not an IPv4"):
        Endpoint(N1, WEB_ID, "web", ipv4="fd00::1")
    with pytest.raises(InvalidArgument, match="not an IPv6"):
        Endpoint(N1, WEB_ID, "web", ipv6="10.0.0.1")
    with pytest.raises(InvalidArgument, match="name is empty"):
        Endpoint(N1, WEB_ID, "/")
    with pytest.raises(InvalidArgument, match="container_id"):
        Endpoint(N1, "", "web")
    with pytest.raises(NotFound, match="nosuch"):
        DnsTable().add_endpoint(Endpoint("nosuch", WEB_ID, "web"))
    ep = Endpoint(N1, WEB_ID, "/web", ["x", ""], "10.0.0.5/24", "")
    assert (ep.name, ep.aliases, ep.ipv4, ep.ipv6) == ("web", ("x",), "10.0.0.5", None)


def test_malformed_queries(table: DnsTable) -> None:
    good = dns.message.make_query("web", "A").to_wire()
    assert table.answer(good[:5], N1) is None  # no header: nothing to reply to
    as_response = good[:2] + bytes((good[2] | 0x80,)) + good[3:]
    assert table.answer(as_response, N1) is None  # never answer a response
    broken = good[:12] + b"\x3f"  # question count 1, label runs off the end
    wire = table.answer(broken, N1)
    assert wire is not None and wire[:2] == good[:2]
    reply = dns.message.from_wire(wire)
    assert reply.rcode() == dns.rcode.FORMERR and reply.flags & dns.flags.QR

    two = dns.message.make_query("web", "A")
    two.question.append(dns.message.make_query("cache", "A").question[0])
    reply2 = dns.message.from_wire(table.answer(two.to_wire(), N1) or b"")
    assert reply2.rcode() == dns.rcode.FORMERR

    notify = dns.message.make_query("web", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    reply3 = dns.message.from_wire(table.answer(notify.to_wire(), N1) or b"")
    assert reply3.rcode() == dns.rcode.NOTIMP and reply3.opcode() == dns.opcode.NOTIFY


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    t = DnsTable()
    t.add_network(N1, "front")
    t.add_endpoint(Endpoint(N1, WEB_ID, "web", [], "10.1.0.2"))
    wire = t.answer(data, N1, udp=True)
    if wire is not None:
        assert len(data) >= 12 and wire[:2] == data[:2] and wire[2] & 0x80


def big_table(count: int) -> DnsTable:
    t = DnsTable()
    t.add_network(N1, "front")
    for i in range(count):
        t.add_endpoint(Endpoint(N1, f"{i:064x}", f"c{i}", ["many"], f"10.1.{i // 250}.{i % 250 + 2}"))
    return t


def test_udp_reply_is_trimmed_and_flagged_tc_tcp_is_not() -> None:
    t = big_table(60)
    plain = dns.message.make_query("many", "A", use_edns=False).to_wire()
    udp = t.answer(plain, N1, udp=True)
    assert udp is not None and len(udp) <= 512
    reply = dns.message.from_wire(udp)
    assert reply.flags & dns.flags.TC and 0 < len(addresses(reply)) < 60
    tcp = t.answer(plain, N1)
    assert tcp is not None
    full = dns.message.from_wire(tcp)
    assert not full.flags & dns.flags.TC and len(addresses(full)) == 60
    edns = dns.message.make_query("many", "A", use_edns=0, payload=4096).to_wire()
    big = dns.message.from_wire(t.answer(edns, N1, udp=True) or b"")
    assert not big.flags & dns.flags.TC and len(addresses(big)) == 60 and big.edns == 0


def test_wire_helpers() -> None:
    query = dns.message.make_query("example.test", "A")
    fail = dns.message.from_wire(error_reply(query.to_wire(), dns.rcode.SERVFAIL))
    assert fail.id == query.id and fail.rcode() == dns.rcode.SERVFAIL and fail.question == query.question
    junk = query.to_wire()[:12] + b"\xff"
    assert error_reply(junk, dns.rcode.SERVFAIL)[:2] == junk[:2]
    assert udp_limit(query) == 512
    assert udp_limit(dns.message.make_query("x", "A", use_edns=0, payload=1232)) == 1232
    assert udp_limit(dns.message.make_query("x", "A", use_edns=0, payload=100)) == 512

    resp = dns.message.make_response(query)
    resp.answer.append(
        dns.rrset.from_text_list("example.test.", 60, "IN", "A", [f"192.0.2.{i}" for i in range(1, 60)])
    )
    wire = resp.to_wire()
    assert fit_udp(wire, 4096) == wire
    cut = dns.message.from_wire(fit_udp(wire, 512))
    assert cut.flags & dns.flags.TC and cut.id == query.id and len(cut.answer[0]) < 59


def test_host_forwarders_parses_resolv_conf() -> None:
    text = """# generated
search example.internal
nameserver 127.0.0.53
nameserver 192.0.2.1 ; trailing comment
nameserver   2001:db8::1
nameserver 192.0.2.1
nameserver not-an-ip
nameserver fe80::1%eth0
options ndots:2
nameserver 192.0.2.2
nameserver 192.0.2.3
"""
    assert host_forwarders(text) == [("127.0.0.53", 53), ("192.0.2.1", 53), ("2001:db8::1", 53)]
    in_netns = [("192.0.2.1", 53), ("2001:db8::1", 53), ("fe80::1%eth0", 53)]  # link-local keeps its zone
    assert host_forwarders(text, in_netns=True) == in_netns
    assert host_forwarders("nameserver ::1\n", in_netns=True) == []
    assert host_forwarders("") == []

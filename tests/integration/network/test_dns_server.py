"""The embedded DNS server on loopback, forwarding only to a fake upstream resolver this test runs on 127.0.0.1.

No query ever leaves the machine: the only upstream is FakeUpstream below, and names are under .test. The
namespace test (root) binds the server inside a namespace it creates and deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest

from ketch.common.errors import InvalidArgument, SystemFailure
from ketch.network.dns import DnsTable, Endpoint
from ketch.network.dns_server import DnsServer, bind_in_netns, bind_sockets

T = TypeVar("T")
NET = "net-id"
LOOPBACK = "127.0.0.1"


class LoopThread:
    """An event loop in a thread, so tests can use dnspython's blocking clients against the server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class FakeUpstream:
    """A tiny authoritative server for *.test: known names answer, others get authoritative NXDOMAIN.
    `mode` "silent" never answers, "refused" answers REFUSED. Over UDP it truncates like a real server."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.mode = "answer"
        self.seen: list[tuple[str, int, str]] = []  # (transport, id, qname)
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.Server | None = None
        self.address = (LOOPBACK, 0)

    def reply(self, wire: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        qname = query.question[0].name.to_text()
        self.seen.append((transport, query.id, qname))
        if self.mode == "silent":
            return None
        resp = dns.message.make_response(query)
        if self.mode == "refused":
            resp.set_rcode(dns.rcode.REFUSED)
            return resp.to_wire()
        resp.flags |= dns.flags.AA
        ips = self.records.get(qname.lower())
        if ips is None:
            resp.set_rcode(dns.rcode.NXDOMAIN)
        else:
            resp.answer.append(dns.rrset.from_text_list(query.question[0].name, 30, "IN", "A", ips))
        if transport == "udp":
            limit = max(512, query.payload if query.edns >= 0 else 0)
            try:
                return resp.to_wire(max_size=limit)
            except dns.exception.TooBig:
                resp.answer = []
                resp.flags |= dns.flags.TC
        return resp.to_wire()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = bind_sockets(LOOPBACK, 0)
        self.address = udp_sock.getsockname()
        upstream = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                out = upstream.reply(data, "udp")
                if out is not None:
                    self.transport.sendto(out, addr)  # type: ignore[attr-defined]

        self.udp, _ = await loop.create_datagram_endpoint(Proto, sock=udp_sock)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                size = int.from_bytes(await reader.readexactly(2), "big")
                out = upstream.reply(await reader.readexactly(size), "tcp")
                if out is None:
                    await reader.read()  # hold the connection open, say nothing
                else:
                    writer.write(len(out).to_bytes(2, "big") + out)
                    await writer.drain()
            finally:
                writer.close()

        self.tcp = await asyncio.start_server(serve, sock=tcp_sock)

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            await self.tcp.wait_closed()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def table() -> DnsTable:
    t = DnsTable()
    t.add_network(NET, "appnet")
    t.add_endpoint(Endpoint(NET, "a" * 64, "web", ["www"], "10.5.0.2/24"))
    for i in range(60):
        t.add_endpoint(Endpoint(NET, f"{i:064x}", f"worker{i}", ["crowd"], f"10.5.1.{i + 2}"))
    return t


@pytest.fixture
def upstream(loop: LoopThread) -> Iterator[FakeUpstream]:
    many = [f"192.0.2.{i}" for i in range(1, 80)]
    fake = FakeUpstream({"outside.test.": ["192.0.2.80"], "big.test.": many})
    loop.run(fake.start())
    yield fake
    loop.run(fake.close())


def start(loop: LoopThread, server: DnsServer) -> tuple[str, int]:
    loop.run(server.start())
    return server.address


@pytest.fixture
def server(loop: LoopThread, table: DnsTable, upstream: FakeUpstream) -> Iterator[tuple[str, int]]:
    srv = DnsServer(
        table, NET, listen=(LOOPBACK, 0), forwarders=[upstream.address], timeout=0.5, links={"db": "10.5.9.9"}
    )
    yield start(loop, srv)
    loop.run(srv.close())


def udp(addr: tuple[str, int], name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)
    reply = dns.query.udp(query, addr[0], port=addr[1], timeout=3, ignore_trailing=True)
    assert reply.id == query.id
    return reply


def tcp(addr: tuple[str, int], name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    reply = dns.query.tcp(query, addr[0], port=addr[1], timeout=3)
    assert reply.id == query.id
    return reply


def ips(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


def test_answers_known_names_without_asking_upstream(server: tuple[str, int], upstream: FakeUpstream) -> None:
    assert ips(udp(server, "web")) == ["10.5.0.2"]
    assert ips(udp(server, "WWW.appnet.")) == ["10.5.0.2"]
    assert ips(udp(server, "db")) == ["10.5.9.9"]  # --link alias given to the server
    assert ips(tcp(server, "web")) == ["10.5.0.2"]
    assert upstream.seen == []


def test_forwards_unknown_names_to_the_upstream(server: tuple[str, int], upstream: FakeUpstream) -> None:
    for _ in range(4):
        reply = udp(server, "outside.test")
        assert reply.rcode() == dns.rcode.NOERROR and ips(reply) == ["192.0.2.80"]
    assert [s[2] for s in upstream.seen] == ["outside.test."] * 4
    assert {s[0] for s in upstream.seen} == {"udp"}
    assert len({s[1] for s in upstream.seen}) > 1  # a fresh ID per upstream query, the client's ID back

    missing = udp(server, "missing.test")
    assert missing.rcode() == dns.rcode.NXDOMAIN  # the upstream's denial is relayed


def test_forwards_over_tcp_when_the_client_uses_tcp(server: tuple[str, int], upstream: FakeUpstream) -> None:
    assert ips(tcp(server, "outside.test")) == ["192.0.2.80"]
    assert upstream.seen[-1][0] == "tcp"


def test_servfail_when_the_upstream_does_not_answer(server: tuple[str, int], upstream: FakeUpstream) -> None:
    upstream.mode = "silent"
    began = time.monotonic()
    assert udp(server, "outside.test").rcode() == dns.rcode.SERVFAIL
    assert 0.4 < time.monotonic() - began < 2.5
    assert tcp(server, "outside.test").rcode() == dns.rcode.SERVFAIL
    assert ips(udp(server, "web")) == ["10.5.0.2"]  # local answers do not depend on the upstream


def test_next_upstream_after_failure(loop: LoopThread, table: DnsTable, upstream: FakeUpstream) -> None:
    dead = FakeUpstream({})
    dead.mode = "refused"
    loop.run(dead.start())
    silent = FakeUpstream({})
    silent.mode = "silent"
    loop.run(silent.start())
    srv = DnsServer(
        table,
        NET,
        listen=(LOOPBACK, 0),
        forwarders=[dead.address, silent.address, upstream.address],
        timeout=0.3,
    )
    try:
        addr = start(loop, srv)
        assert ips(udp(addr, "outside.test")) == ["192.0.2.80"]
        assert len(dead.seen) == len(silent.seen) == 1
        upstream.mode = "silent"
        assert udp(addr, "outside.test").rcode() == dns.rcode.REFUSED  # the only reply anyone gave
    finally:
        loop.run(srv.close())
        loop.run(dead.close())
        loop.run(silent.close())


def test_no_forwarders_means_servfail_for_unknown_names(loop: LoopThread, table: DnsTable) -> None:
    srv = DnsServer(table, NET, listen=(LOOPBACK, 0))  # an --internal network
    try:
        addr = start(loop, srv)
        assert udp(addr, "outside.test").rcode() == dns.rcode.SERVFAIL
        assert ips(udp(addr, "web")) == ["10.5.0.2"]
    finally:
        loop.run(srv.close())


def test_truncation_over_udp_then_tcp_retry(server: tuple[str, int], upstream: FakeUpstream) -> None:
    local = udp(server, "crowd")
    assert local.flags & dns.flags.TC and 0 < len(ips(local)) < 60
    assert len(ips(tcp(server, "crowd"))) == 60
    query = dns.message.make_query("crowd", "A")
    reply, used_tcp = dns.query.udp_with_fallback(query, server[0], port=server[1], timeout=3)
    assert used_tcp and len(ips(reply)) == 60

    forwarded = udp(server, "big.test")
    assert forwarded.flags & dns.flags.TC
    assert len(ips(tcp(server, "big.test"))) == 79
    assert len(ips(udp(server, "big.test", use_edns=0, payload=4096))) == 79


def test_round_robin_across_queries(server: tuple[str, int]) -> None:
    firsts = {ips(tcp(server, "crowd"))[0] for _ in range(5)}
    assert len(firsts) == 5


def test_links_by_client_address(loop: LoopThread, table: DnsTable) -> None:
    calls: list[str] = []

    def links(client_ip: str) -> dict[str, str]:
        calls.append(client_ip)
        return {"cache": "web"} if client_ip == LOOPBACK else {}

    srv = DnsServer(table, NET, listen=(LOOPBACK, 0), links=links)
    try:
        addr = start(loop, srv)
        assert ips(udp(addr, "cache")) == ["10.5.0.2"]
        assert calls == [LOOPBACK]
    finally:
        loop.run(srv.close())


def test_table_changes_are_seen_live(
    server: tuple[str, int], table: DnsTable, upstream: FakeUpstream
) -> None:
    table.add_endpoint(Endpoint(NET, "b" * 64, "late", [], "10.5.0.77"))
    assert ips(udp(server, "late")) == ["10.5.0.77"]
    table.remove_endpoint(NET, "a" * 64)
    assert udp(server, "web").rcode() == dns.rcode.NXDOMAIN  # no longer ours: forwarded and denied
    assert [s[2] for s in upstream.seen] == ["web."]


def test_malformed_datagrams(server: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f", server)
        reply = dns.message.from_wire(sock.recv(4096))
        assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
        sock.sendto(b"\x00\x01junk", server)  # shorter than a header: dropped
        with pytest.raises(TimeoutError):
            sock.recv(4096)
    assert ips(udp(server, "web")) == ["10.5.0.2"]


def test_close_releases_the_port(loop: LoopThread, table: DnsTable) -> None:
    srv = DnsServer(table, NET, listen=(LOOPBACK, 0))
    addr = start(loop, srv)
    with socket.create_connection(addr, timeout=2):  # an idle TCP client is cut off on close
        loop.run(srv.close())
    udp_sock, tcp_sock = bind_sockets(*addr)
    udp_sock.close()
    tcp_sock.close()


def test_bad_arguments() -> None:
    t = DnsTable()
    with pytest.raises(InvalidArgument, match="exactly one"):
        DnsServer(t, NET)
    with pytest.raises(InvalidArgument, match="not an IP"):
        bind_sockets("localhost", 0)
    with pytest.raises(SystemFailure, match="/nonexistent/netns"):
        bind_in_netns("/nonexistent/netns", LOOPBACK, 0)


@pytest.mark.root
def test_server_inside_a_network_namespace(loop: LoopThread, table: DnsTable, upstream: FakeUpstream) -> None:
    name = f"ketch-test-dns-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    srv: DnsServer | None = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        socks = bind_in_netns(f"/run/netns/{name}", "127.0.0.11", 53)
        srv = DnsServer(table, NET, sockets=socks, forwarders=[upstream.address], timeout=0.5)
        assert start(loop, srv) == ("127.0.0.11", 53)
        client = (
            "import sys, dns.message, dns.query\n"
            "for n in sys.argv[1:]:\n"
            "    q = dns.message.make_query(n, 'A')\n"
            "    r = dns.query.udp(q, '127.0.0.11', timeout=3)\n"
            "    t = dns.query.tcp(q, '127.0.0.11', timeout=3)\n"
            "    print(n, [rd.to_text() for rr in r.answer for rd in rr], len(t.answer))\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        out = subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, "-c", client, "web", "outside.test"],
            check=True, capture_output=True, text=True, timeout=30, env=env,
        ).stdout  # fmt: skip
        # Names from the table, and forwarding from the daemon's namespace to the upstream on its loopback.
        assert out.splitlines() == ["web ['10.5.0.2'] 1", "outside.test ['192.0.2.80'] 1"]
    finally:
        if srv is not None:
            loop.run(srv.close())
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["ip", "netns", "del", name], check=True)


def framed(name: str, qid: int) -> bytes:
    query = dns.message.make_query(name, "A")
    query.id = qid
    wire = query.to_wire()
    return len(wire).to_bytes(2, "big") + wire


def read_framed(sock: socket.socket) -> dns.message.Message:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "server closed the connection"
            data += chunk
        return data

    return dns.message.from_wire(exact(int.from_bytes(exact(2), "big")))


def test_tcp_pipelined_queries_on_one_connection(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=3) as sock:
        sock.sendall(framed("outside.test", 1) + framed("web", 2) + framed("www", 3))
        replies = {r.id: ips(r) for r in (read_framed(sock) for _ in range(3))}
    assert replies == {1: ["192.0.2.80"], 2: ["10.5.0.2"], 3: ["10.5.0.2"]}


def test_idle_tcp_clients_are_disconnected(loop: LoopThread, table: DnsTable) -> None:
    srv = DnsServer(table, NET, listen=(LOOPBACK, 0), tcp_idle=0.3)
    try:
        addr = start(loop, srv)
        with socket.create_connection(addr, timeout=3) as sock:
            sock.sendall(framed("web", 7))
            assert ips(read_framed(sock)) == ["10.5.0.2"]
            began = time.monotonic()
            assert sock.recv(1) == b""
            assert time.monotonic() - began < 2
    finally:
        loop.run(srv.close())

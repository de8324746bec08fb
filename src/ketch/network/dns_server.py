"""The embedded DNS server: answers from a DnsTable over UDP and TCP, forwards the rest upstream.

One server serves one scope (a network, or the networks of one container). Where it listens is the caller's
choice: ``listen=(ip, port)`` binds in the daemon's own namespace (e.g. a bridge's gateway address), while
``sockets=bind_in_netns(path, "127.0.0.11", 53)`` binds inside a container's network namespace as Docker does.

Namespaces: Linux ``setns`` moves only the calling thread, and a socket stays in the namespace it was created
in. ``bind_in_netns`` therefore creates the sockets in a throwaway thread that joins the namespace and exits;
the event loop never changes namespace (pyroute2's ``pushns``/``popns`` would move the loop thread itself).

Forwarding happens from the event loop's thread, i.e. the daemon's namespace, even for a server listening in a
container: the host's own resolvers (loopback ones such as systemd-resolved's 127.0.0.53 included) are
reachable, so pass ``host_forwarders(text)`` as is. Use ``in_netns=True`` only for a forwarder running inside a
namespace. For ``--internal`` networks pass no forwarders: unknown names then get SERVFAIL, as Docker answers
when it must not proxy.

Forwarding follows Docker: upstreams are tried in order, each for ``timeout`` seconds, over the transport the
client used (a TC reply over UDP is relayed so the client retries over TCP); SERVFAIL, REFUSED, a
non-authoritative NXDOMAIN and other errors move on to the next upstream; the last such reply is relayed when no
upstream does better, SERVFAIL when none answered. Each upstream query gets a fresh random ID and, over UDP, a
fresh socket (random source port); a reply is accepted only with that ID and the same question, and reaches
the client with the client's ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import secrets
import socket

import dns.exception
import dns.message
import dns.rcode

from ketch.common.errors import InvalidArgument, SystemFailure
from ketch.network.dns import DnsTable, error_reply, fit_udp, is_query, udp_limit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping, Sequence
    from typing import Any

    Links = Mapping[str, str] | Callable[[str], Mapping[str, str] | None] | None

__all__ = ["DnsServer", "bind_in_netns", "bind_sockets", "host_forwarders"]

log = logging.getLogger("ketch.network.dns")

MAXNS = 3  # glibc and Docker use at most three nameservers
_BIND_TRIES = 32
_CLOSE_WAIT = 2.0  # seconds close() waits for client connections to go
_MAX_BACKLOG = 1 << 20  # unread reply bytes a TCP client may leave before it is cut off


def host_forwarders(text: str, *, in_netns: bool = False) -> list[tuple[str, int]]:
    """The upstreams listed in resolv.conf `text`: up to three ``nameserver`` entries, port 53, deduplicated.

    `in_netns` drops loopback entries, which a forwarder inside a network namespace cannot reach. An empty
    result is the caller's to handle (Docker falls back to public resolvers; ketch leaves that to policy)."""
    out: list[tuple[str, int]] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            ip = ipaddress.ip_address(fields[1])  # link-local "fe80::1%eth0" keeps its zone
        except ValueError:
            continue
        if in_netns and ip.is_loopback:
            continue
        entry = (str(ip), 53)
        if entry not in out:
            out.append(entry)
    return out[:MAXNS]


def _family(ip: str) -> socket.AddressFamily:
    try:
        version = ipaddress.ip_address(ip).version
    except ValueError:
        raise InvalidArgument(f"DNS listen address {ip!r} is not an IP address") from None
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def bind_sockets(ip: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on `ip`:`port` in the calling thread's network namespace. Port 0
    picks a port free for both protocols. Both sockets are non-blocking, ready for DnsServer(sockets=...)."""
    family = _family(ip)
    for _ in range(_BIND_TRIES if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family == socket.AF_INET6:
                udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((ip, port))
            tcp.bind((ip, udp.getsockname()[1]))
            tcp.listen(128)
        except OSError as exc:
            udp.close()
            tcp.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue  # the UDP port was taken for TCP; try another
            raise SystemFailure.from_oserror(f"bind DNS server on {ip} port {port}", exc) from exc
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise SystemFailure(f"bind DNS server on {ip}: no port free for both UDP and TCP", errno=errno.EADDRINUSE)


def bind_in_netns(netns_path: str, ip: str, port: int) -> tuple[socket.socket, socket.socket]:
    """bind_sockets inside the network namespace at `netns_path` (e.g. /proc/PID/ns/net or
    /run/netns/NAME), from a short-lived thread so no thread of the caller changes namespace."""
    from ketch.network import netns

    return netns.run_in(netns_path, lambda: bind_sockets(ip, port), name="ketch-dns-bind")


def _rcode(reply: bytes) -> int:
    return reply[3] & 0x0F


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.server._datagram(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP socket error: %s", exc)  # e.g. ICMP unreachable for a client gone away


class _Tcp(asyncio.Protocol):
    """One client connection: length-prefixed queries (RFC 7766), several per connection, replies written as
    they are ready (clients match them by ID). Closed after `tcp_idle` seconds without a query in flight."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.buffer = bytearray()
        self.pending = 0
        self.idle: asyncio.TimerHandle | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream server's transport
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else ""
        self.server._conns.add(self)
        if self.server._closed:
            transport.close()  # accepted while the server was closing
            return
        self.touch()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.touch()
        while len(self.buffer) >= 2:
            end = 2 + int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < end:
                break
            wire = bytes(self.buffer[2:end])
            del self.buffer[:end]
            if not is_query(wire):
                self.close()
                return
            self.server._tcp_query(self, wire)

    def send(self, reply: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > _MAX_BACKLOG:
            self.transport.abort()  # a client that sends queries but does not read its replies
            return
        self.transport.write(len(reply).to_bytes(2, "big") + reply)

    def touch(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(self.server._tcp_idle, self.expire)

    def expire(self) -> None:
        if self.pending:
            self.touch()  # an upstream is still working on a query of this client
        else:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.server._conns.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)


class DnsServer:
    """An embedded resolver for one scope of `table`: `network_id` is a network ID or the querying
    container's network IDs (searched in order); assign ``server.network_id`` to change it live.

    Give either `listen` (ip, port; port 0 picks one, see ``address``) or already bound `sockets` (udp, tcp)
    from bind_sockets/bind_in_netns; the server owns and closes them. `links` are --link aliases: a mapping,
    or a function of the client's IP address returning the mapping for that container."""

    def __init__(
        self,
        table: DnsTable,
        network_id: str | Sequence[str],
        *,
        listen: tuple[str, int] | None = None,
        sockets: tuple[socket.socket, socket.socket] | None = None,
        forwarders: Sequence[tuple[str, int]] = (),
        timeout: float = 4.0,
        links: Links = None,
        max_inflight: int = 1024,
        tcp_idle: float = 10.0,
    ) -> None:
        if (listen is None) == (sockets is None):
            raise InvalidArgument("DnsServer needs exactly one of listen=(ip, port) and sockets=(udp, tcp)")
        if timeout <= 0:
            raise InvalidArgument(f"DnsServer timeout must be positive, got {timeout}")
        self.table = table
        self.network_id = network_id
        self.forwarders = [(str(ipaddress.ip_address(ip)), int(port)) for ip, port in forwarders]
        self.timeout = timeout
        self.links = links
        self._listen = listen
        self._sockets = sockets
        self._max_inflight = max_inflight
        self._tcp_idle = tcp_idle
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: socket.socket | None = None
        self._accepted: set[socket.socket] = set()  # accepted, not yet owned by a transport
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: set[_Tcp] = set()
        self._closed = False
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(ip, port) the server listens on; valid after start()."""
        if self._address is None:
            raise RuntimeError("DnsServer is not started")
        return self._address

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._sockets is None:
            assert self._listen is not None
            self._sockets = bind_sockets(*self._listen)
        udp_sock, tcp_sock = self._sockets
        try:
            self._address = udp_sock.getsockname()[:2]
            if self._listen is not None:  # never forward to ourselves
                self.forwarders = [f for f in self.forwarders if f != self._address]
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp_sock)
            self._udp = transport
            # Our own accept loop rather than loop.create_server: Python 3.11 loses (and leaks) connections
            # accepted while a Server closes; here each accepted socket is a transport's or closed by close().
            self._tcp = tcp_sock
            loop.add_reader(tcp_sock.fileno(), self._acceptable)
        except BaseException:
            await self.close()
            udp_sock.close()
            tcp_sock.close()
            raise

    async def close(self) -> None:
        """Stop listening, abort queries in flight and close every socket and connection. Idempotent."""
        self._closed = True
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            asyncio.get_running_loop().remove_reader(self._tcp.fileno())
            self._tcp.close()
            self._tcp = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in self._accepted:
            sock.close()
        self._accepted.clear()
        for conn in list(self._conns):
            conn.close()
        lost = [conn.lost for conn in self._conns]
        if lost:  # the sockets close in connection_lost; wait so none outlives the server
            await asyncio.wait(lost, timeout=_CLOSE_WAIT)

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- serving ---------------------------------------------------------------------------------------

    def _links_for(self, client_ip: str) -> Mapping[str, str] | None:
        links = self.links
        return links(client_ip) if callable(links) else links

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("DNS: forwarding a query failed", exc_info=exc)

    def _local(self, wire: bytes, client_ip: str, udp: bool) -> bytes | None:
        return self.table.answer(wire, self.network_id, links=self._links_for(client_ip), udp=udp)

    def _datagram(self, proto: _Udp, wire: bytes, addr: tuple[Any, int]) -> None:
        if not is_query(wire):
            return
        try:
            reply = self._local(wire, str(addr[0]), True)
        except Exception:
            log.exception("DNS: answering a query from %s failed", addr[0])
            reply = error_reply(wire, dns.rcode.SERVFAIL)
        if reply is None:
            if len(self._tasks) >= self._max_inflight:
                reply = error_reply(wire, dns.rcode.SERVFAIL)
            else:
                self._spawn(self._forward_udp(proto, wire, addr))
                return
        if proto.transport is not None and not proto.transport.is_closing():
            proto.transport.sendto(reply, addr)

    async def _forward_udp(self, proto: _Udp, wire: bytes, addr: tuple[Any, int]) -> None:
        reply = await self._forward(wire, udp=True)
        if proto.transport is not None and not proto.transport.is_closing():
            proto.transport.sendto(reply, addr)

    def _acceptable(self) -> None:
        for _ in range(64):  # a burst per wakeup, then let the loop breathe
            if self._tcp is None:
                return
            try:
                conn, _ = self._tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: pause accepting instead of spinning
                log.warning("DNS: accepting a TCP client failed: %s", exc)
                loop = asyncio.get_running_loop()
                loop.remove_reader(self._tcp.fileno())
                loop.call_later(0.1, self._resume_accepting)
                return
            conn.setblocking(False)
            self._accepted.add(conn)
            self._spawn(self._attach(conn))

    def _resume_accepting(self) -> None:
        if self._tcp is not None:
            asyncio.get_running_loop().add_reader(self._tcp.fileno(), self._acceptable)

    async def _attach(self, conn: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: _Tcp(self), sock=conn)
        except Exception:
            conn.close()
            raise
        finally:
            self._accepted.discard(conn)  # the transport owns it now, or it is closed

    def _tcp_query(self, conn: _Tcp, wire: bytes) -> None:
        try:
            reply = self._local(wire, conn.client_ip, False)
        except Exception:
            log.exception("DNS: answering a query from %s failed", conn.client_ip)
            reply = error_reply(wire, dns.rcode.SERVFAIL)
        if reply is None and len(self._tasks) >= self._max_inflight:
            reply = error_reply(wire, dns.rcode.SERVFAIL)
        if reply is not None:
            conn.send(reply)
        else:
            conn.pending += 1
            self._spawn(self._forward_tcp(conn, wire))

    async def _forward_tcp(self, conn: _Tcp, wire: bytes) -> None:
        try:
            conn.send(await self._forward(wire, udp=False))
        finally:
            conn.pending -= 1

    # -- forwarding ------------------------------------------------------------------------------------

    async def _forward(self, wire: bytes, *, udp: bool) -> bytes:
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return error_reply(wire, dns.rcode.FORMERR)  # table.answer already says FORMERR; kept for safety
        fallback: bytes | None = None
        for upstream in self.forwarders:
            reply = await self._ask(upstream, wire, query, udp)
            if reply is None:
                continue
            rcode = _rcode(reply)
            authoritative = bool(reply[2] & 0x04)
            if rcode == dns.rcode.NOERROR or (rcode == dns.rcode.NXDOMAIN and authoritative):
                fallback = reply
                break
            if fallback is None or rcode == dns.rcode.NXDOMAIN:
                fallback = reply  # a denial beats a failure if nobody does better
        if fallback is None:
            return error_reply(wire, dns.rcode.SERVFAIL)
        reply = wire[:2] + fallback[2:]  # the client's ID back
        return fit_udp(reply, udp_limit(query)) if udp else reply

    async def _ask(
        self, upstream: tuple[str, int], wire: bytes, query: dns.message.Message, udp: bool
    ) -> bytes | None:
        qid = secrets.randbits(16)
        out = qid.to_bytes(2, "big") + wire[2:]
        try:
            async with asyncio.timeout(self.timeout):
                if udp:
                    return await self._ask_udp(upstream, out, qid, query)
                return await self._ask_tcp(upstream, out, qid, query)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("DNS: upstream %s:%d did not answer: %r", upstream[0], upstream[1], exc)
            return None

    async def _ask_udp(
        self, upstream: tuple[str, int], out: bytes, qid: int, query: dns.message.Message
    ) -> bytes:
        loop = asyncio.get_running_loop()
        with socket.socket(_family(upstream[0]), socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(upstream)  # only the upstream's datagrams reach this socket
            await loop.sock_sendall(sock, out)
            while True:
                reply = await loop.sock_recv(sock, 65535)
                if _matches(reply, qid, query):
                    return reply

    async def _ask_tcp(
        self, upstream: tuple[str, int], out: bytes, qid: int, query: dns.message.Message
    ) -> bytes:
        reader, writer = await asyncio.open_connection(*upstream)
        try:
            writer.write(len(out).to_bytes(2, "big") + out)
            await writer.drain()
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = await reader.readexactly(size)
                if _matches(reply, qid, query):
                    return reply
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _matches(reply: bytes, qid: int, query: dns.message.Message) -> bool:
    """The upstream's reply to our query: same ID, a response, and the same question (or none, as some
    servers send with FORMERR/NOTIMP)."""
    if len(reply) < 12 or int.from_bytes(reply[:2], "big") != qid or not reply[2] & 0x80:
        return False
    try:
        parsed = dns.message.from_wire(reply, question_only=True)
    except (dns.exception.DNSException, ValueError, UnicodeError):
        return False
    return not parsed.question or parsed.question == query.question

"""Networks for ketchd, with Docker's behaviour: the engine's :class:`~ketch.engine.network_hooks.Networking`
(attach at start, detach at exit, forget at removal) and the ``/networks`` verbs.

What a network is on the host. The predefined ``bridge`` network is a bridge device (``ketch0``), user networks
get ``kbr-<11 hex>`` (or ``com.docker.network.bridge.name``); ``host`` and ``none`` are names only. Subnets come
from network/ipam.py (default pools avoid prefixes routed on the host); NAT, isolation and published ports are
rules in ketch's own nftables table (network/firewall.py); the host forwards IPv4 once a non-internal bridge
network exists, and ``route_localnet`` is on for ketch's bridges so that ports published on 127.0.0.1 reach
containers.

A running container has a *sandbox*: a network namespace held by a bind mount at ``<exec-root>/netns/<id>``
(the runtime joins it), one veth per network (``eth0``, ``eth1``, ... in the order of its networks; the first
non-internal one carries the default route), its published ports, and, when it is on a user network, an
embedded DNS server bound to 127.0.0.11:53 inside the namespace, as Docker's (its /etc/resolv.conf says
``nameserver 127.0.0.11``). The server answers the names, aliases and short IDs of the containers on the
networks of the querying container only, and forwards other names, from the host's namespace, to the host's
resolvers (or ``--dns``). The default bridge has no name resolution (Docker's legacy behaviour): its containers
get the host's resolvers, and ``--link`` as /etc/hosts entries.

Persistence: ``<data-root>/network/networks.json`` (networks, the networks of each container, the sandboxes of
running containers) and ``ipam.json`` (addresses, written by the allocator before it uses a change), both
replaced atomically. A restarted ketchd keeps the sandboxes of containers still running (veths and namespaces
outlive ketchd), re-installs the rules, restarts their DNS servers and releases whatever belonged to
containers that are gone. ``close`` stops the DNS servers and removes the bridges and rules of networks no
running container uses (containers that run keep working while ketchd is down).

Threads: the verbs run in worker threads; one lock serialises every change. DNS servers run on an event loop
in a thread of their own, so that neither the API's loop nor a worker ever waits for the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import ipaddress
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from ketch.common.atomic import atomic_write
from ketch.common.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    KetchError,
    NotFound,
    SystemFailure,
    Unavailable,
)
from ketch.common.ids import generate_id
from ketch.engine.db import Container
from ketch.engine.model import ContainerRecord, EndpointConfig
from ketch.engine.network_hooks import Attachment
from ketch.engine.network_model import (
    OPT_BRIDGE_NAME,
    OPT_DEFAULT_BRIDGE,
    OPT_HOST_BINDING,
    OPT_ICC,
    OPT_MASQUERADE,
    OPT_MTU,
    Endpoint,
    NetworkRecord,
    NetworkState,
    Published,
    Sandbox,
    container_network_settings,
    inspect_container_entry,
    list_filter,
    network_to_api,
    parse_create_request,
    parse_links,
    prune_filter,
    requested_networks,
)
from ketch.engine.network_model import ports_for_list as _ports_for_list
from ketch.image.listing import parse_until
from ketch.network import bridge, dns, firewall, netns, nft, portspec, subif
from ketch.network.ipam import Allocator, IPAMState, PoolRequest

__all__ = ["ContainerLookup", "NetworkService", "instance_names"]

log = logging.getLogger("ketch.engine.networks")
logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its debug lines would bury ketchd's own

DEFAULT_BRIDGE = "ketch0"
DEFAULT_TABLE = firewall.TABLE
DEFAULT_EXEC_ROOT = "/run/ketch"
DNS_ADDRESS = "127.0.0.11"  # Docker's embedded resolver, inside each container's namespace
USER_BRIDGE_PREFIX = "kbr-"
_VETH = re.compile(r"veth[0-9a-f]{7}")  # network/bridge.py host_ifname
_T = TypeVar("_T")


def instance_names(exec_root: str) -> tuple[str, str]:
    """(default bridge device, nftables table) of the ketchd using ``exec_root``: ``ketch0`` and ``ketch`` for
    the default exec root, names of its own for any other, so that several ketchds (tests) on one host never
    share a bridge or rewrite each other's rules."""
    real = os.path.realpath(exec_root)
    if real == DEFAULT_EXEC_ROOT:
        return DEFAULT_BRIDGE, DEFAULT_TABLE
    tag = hashlib.sha256(real.encode()).hexdigest()[:6]
    return f"ketch-{tag}", f"ketch_{tag}"


class _Steps:
    """Milliseconds per step of one verb, for a debug line that says where the time goes."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._parts: list[str] = []

    def __call__(self, what: str) -> None:
        now = time.perf_counter()
        self._parts.append(f"{what} {(now - self._last) * 1000:.1f} ms")
        self._last = now

    def __str__(self) -> str:
        return ", ".join(self._parts)


class ContainerLookup(Protocol):
    """What networks need of the container service (engine/containers.py ContainerService has both)."""

    def get(self, ref: str) -> Container: ...
    def is_running(self, container_id: str) -> bool: ...


class _LoopThread:
    """An event loop in a daemon thread, for the DNS servers; callers wait for what they submit."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ketch-dns", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 15.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


# ---- host probes --------------------------------------------------------------------------------------------


def _host_routes(resolv_conf: str) -> list[str]:
    """Prefixes routed on the host (every table) and the host's nameservers: default pools avoid them."""
    from pyroute2 import IPRoute

    out: list[str] = []
    ipr = IPRoute()
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in ipr.get_routes(family=family):
                dst, length = route.get_attr("RTA_DST"), route["dst_len"]
                if dst and length:
                    out.append(f"{dst}/{length}")
    finally:
        ipr.close()
    from ketch.network.dns_server import host_forwarders

    for ip, _port in host_forwarders(_read(resolv_conf)):
        out.append(str(ipaddress.ip_network(ip.split("%")[0])))
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _unspecified(host_ip: str) -> bool:
    return not host_ip or ipaddress.ip_address(host_ip).is_unspecified


def _bind_free(proto: str, host_ip: str, port: int) -> bool:
    """Whether nothing on the host holds ``host_ip:port/proto`` (a listening or bound socket)."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    address = host_ip or "0.0.0.0"
    kind, number = {"tcp": (socket.SOCK_STREAM, 0), "udp": (socket.SOCK_DGRAM, 0)}.get(
        proto, (socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132))
    )
    try:
        sock = socket.socket(family, kind, number)
    except OSError:
        return True  # no such protocol here (sctp): nothing can hold the port either
    with sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            suffix = "4" if family == socket.AF_INET else "6"
            where = f"[{address}]:{port}" if family == socket.AF_INET6 else f"{address}:{port}"
            raise SystemFailure(
                f"Error starting userland proxy: listen {proto}{suffix} {where}: bind: {exc.strerror}",
                errno=exc.errno or 0,
            ) from None
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        return portspec.parse_local_port_range(_read("/proc/sys/net/ipv4/ip_local_port_range"))
    except InvalidArgument:
        return portspec.DEFAULT_EPHEMERAL_RANGE


def _exposed_keys(record: ContainerRecord) -> list[str]:
    """Every exposed or published port as ``80/tcp``, ranges expanded, in order, without duplicates."""
    keys: list[str] = []
    for raw in [*(record.config.exposed_ports or ()), *(record.host_config.port_bindings or {})]:
        start, end, proto = portspec.parse_port_key(raw)
        keys.extend(f"{port}/{proto}" for port in range(start, end + 1))
    return list(dict.fromkeys(keys))


def _bindings(record: ContainerRecord) -> list[portspec.PortBinding]:
    host = record.host_config
    raw = {
        key: None if entries is None else [{"HostIp": b.host_ip, "HostPort": b.host_port} for b in entries]
        for key, entries in (host.port_bindings or {}).items()
    }
    bound = portspec.from_engine(raw)
    if host.publish_all_ports:
        have = {b.key for b in bound}
        bound.extend(portspec.publish_all([k for k in _exposed_keys(record) if k not in have]))
    return bound


# ---- the service ----------------------------------------------------------------------------------------------


class NetworkService:
    def __init__(
        self,
        data_root: str,
        exec_root: str,
        containers: ContainerLookup,
        *,
        events: Any = None,  # engine/events.py EventBus: network events
        default_bridge: str | None = None,
        table: str | None = None,
        resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        names = instance_names(exec_root)
        self.default_bridge = default_bridge or names[0]
        self.table = table or names[1]
        self.data_root = data_root
        self.state_dir = os.path.join(data_root, "network")
        self.netns_dir = os.path.join(exec_root, "netns")
        self.containers = containers
        self.events = events
        self.resolv_conf = resolv_conf
        self._lock = threading.RLock()
        self._state = NetworkState()
        self._allocator = Allocator(store=self._store_ipam)
        self._rules = nft.RuleIndex(self.table)  # the handles of ketch's rules: one nft run per change
        self._dns = dns.DnsTable()
        self._servers: dict[str, Any] = {}  # container ID -> its DnsServer
        self._loop_thread: _LoopThread | None = None
        self._last_port: dict[str, int] = {}
        self._failure: KetchError | None = KetchError("networking is not started")

    # ---- persistence --------------------------------------------------------------------------------------

    @property
    def _state_path(self) -> str:
        return os.path.join(self.state_dir, "networks.json")

    @property
    def _ipam_path(self) -> str:
        return os.path.join(self.state_dir, "ipam.json")

    def _store_ipam(self, text: str) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        atomic_write(self._ipam_path, text.encode(), mode=0o600)

    def _save(self) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        atomic_write(self._state_path, self._state.to_json().encode(), mode=0o600)

    def _load(self) -> None:
        text = _read(self._state_path)
        self._state = NetworkState.from_json(text) if text else NetworkState()
        ipam = _read(self._ipam_path)
        self._allocator = Allocator(IPAMState.from_json(ipam) if ipam else None, store=self._store_ipam)

    # ---- start-up and shut-down ---------------------------------------------------------------------------

    def start(self) -> None:
        """Load the state, make the predefined networks, plumb every bridge network and keep the sandboxes of
        containers that still run. A host that cannot do networking (no nft, no privileges) leaves ketchd
        running without bridge networks: starting a container on one then fails with the reason."""
        with self._lock:
            try:
                self._start()
            except KetchError as exc:
                log.error("networking is unavailable: %s", exc)
                self._failure = exc
            else:
                self._failure = None

    def _start(self) -> None:
        self._load()
        self._predefined()
        nets = self._state.networks
        for nid in set(self._allocator.state.networks) - set(nets):
            # A create that did not finish: its addresses are recorded before its bridge is made.
            with contextlib.suppress(KetchError):
                bridge.delete_bridge(USER_BRIDGE_PREFIX + nid[:11])
            self._allocator.remove_network(nid)
        for net in nets.values():
            if net.driver == "bridge" and net.id not in self._allocator.state.networks:
                self._allocator.add_network(net.id, net.name, host_routes=self._host_routes())
            if net.user_defined:
                self._dns.add_network(net.id, net.name)
        for net in nets.values():
            if net.driver == "bridge":
                self._plumb(net)
        kept: dict[str, Sandbox] = {}
        for cid, sb in list(self._state.sandboxes.items()):
            if self.containers.is_running(cid) and netns.exists(sb.netns):
                kept[cid] = sb
            else:
                self._teardown(sb, rules=False)
        self._state.sandboxes = kept
        self._sweep(kept)
        for cid in list(self._state.attached):
            if cid not in kept and self._container_id(cid) is None:  # removed while ketchd was down
                del self._state.attached[cid]
        for owner in self._allocator.owners() - set(kept):
            self._allocator.release_owner(owner)
        commands = [c for net in nets.values() if net.driver == "bridge" for c in self._network_rules(net)]
        commands += [c for sb in kept.values() for p in sb.ports for c in self._port_rules(sb, p)]
        self._rules.sync(commands)
        self._forwarding()
        for sb in kept.values():
            self._restore_dns(sb)
        self._save()

    def _sweep(self, kept: Mapping[str, Sandbox]) -> None:
        """What a crash in the middle of an attach or connect leaves that no saved sandbox names: veths on
        ketch's bridges and network namespaces under the exec root (the addresses go with their owners)."""
        veths = {ep.host_ifname for sb in kept.values() for ep in sb.endpoints}
        for net in self._state.networks.values():
            if net.driver != "bridge":
                continue
            for name in bridge.veth_ports(net.bridge):
                if name not in veths and _VETH.fullmatch(name):
                    log.info("removing %s, a leftover on %s", name, net.bridge)
                    bridge.disconnect(name)
        namespaces = {sb.netns for sb in kept.values()}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(self.netns_dir):
                path = os.path.join(self.netns_dir, entry)
                if path not in namespaces:
                    log.info("removing the network namespace %s, a leftover", path)
                    with contextlib.suppress(KetchError):
                        netns.remove(path)

    def _predefined(self) -> None:
        nets = self._state.networks
        now = time.time_ns()
        for name, driver in (("none", "null"), ("host", "host")):
            if not any(n.driver == driver for n in nets.values()):
                net = NetworkRecord(id=generate_id(), name=name, driver=driver, created=now)
                nets[net.id] = net
        if not any(n.is_default_bridge for n in nets.values()):
            nid = generate_id()
            options = {
                OPT_DEFAULT_BRIDGE: "true", OPT_ICC: "true", OPT_MASQUERADE: "true", OPT_HOST_BINDING: "0.0.0.0",
                OPT_BRIDGE_NAME: self.default_bridge, OPT_MTU: "1500",
            }  # fmt: skip
            self._allocator.add_network(nid, "bridge", host_routes=self._host_routes())
            nets[nid] = NetworkRecord(id=nid, name="bridge", driver="bridge", created=now,
                                      bridge=self.default_bridge, options=options)  # fmt: skip

    def close(self) -> None:
        """Stop the DNS servers; remove the bridges and rules of networks that no running container uses.

        The work runs in a thread of its own: ketchd calls this from its event loop's thread, where pyroute2's
        synchronous API cannot run (it drives an event loop of its own in the calling thread)."""
        thread = threading.Thread(target=self._close, name="ketch-networks-close")
        thread.start()
        thread.join()

    def _close(self) -> None:
        with self._lock:
            for cid in list(self._servers):
                self._stop_dns(cid)
            if self._loop_thread is not None:
                self._loop_thread.stop()
                self._loop_thread = None
            if self._failure is not None:
                return
            used = {ep.network_id for sb in self._state.sandboxes.values() for ep in sb.endpoints}
            try:
                if not self._state.sandboxes:
                    self._rules.delete_tables()
                for net in self._state.networks.values():
                    if net.driver == "bridge" and net.id not in used:
                        if self._state.sandboxes:
                            self._rules.remove(net.id)
                        bridge.delete_bridge(net.bridge)
            except KetchError as exc:
                log.warning("taking down unused networks: %s", exc)

    # ---- plumbing -----------------------------------------------------------------------------------------

    def _host_routes(self) -> list[str]:
        try:
            return _host_routes(self.resolv_conf)
        except (OSError, ImportError) as exc:
            log.warning("reading the host's routes: %s", exc)
            return []

    def _gateways(self, net: NetworkRecord) -> list[str]:
        pools = self._allocator.network(net.id).pools
        return [f"{p.gateway}/{p.network.prefixlen}" for p in pools if p.gateway]

    def _plumb(self, net: NetworkRecord) -> None:
        """The bridge up with its gateway addresses, and route_localnet for ports published on 127.0.0.1."""
        bridge.ensure_bridge(net.bridge, self._gateways(net), mtu=net.mtu)
        with contextlib.suppress(SystemFailure):  # no IPv4 on the bridge (sysctl missing): nothing to route
            bridge.set_sysctl(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet", "1")

    def _forwarding(self) -> None:
        nets = [n for n in self._state.networks.values() if n.driver == "bridge" and not n.internal]
        if nets and _read("/proc/sys/net/ipv4/ip_forward").strip() != "1":
            bridge.set_sysctl("net.ipv4.ip_forward", "1")
        if (
            any(n.enable_ipv6 for n in nets)
            and _read("/proc/sys/net/ipv6/conf/all/forwarding").strip() != "1"
        ):
            bridge.set_sysctl("net.ipv6.conf.all.forwarding", "1")

    def _network_rules(self, net: NetworkRecord) -> list[firewall.Command]:
        subnets = tuple(p.subnet for p in self._allocator.network(net.id).pools)
        spec = firewall.BridgeNetwork(id=net.id, bridge=net.bridge, subnets=subnets, internal=net.internal,
                                      icc=net.icc, masquerade=net.masquerade)  # fmt: skip
        return firewall.network_rules(spec, self.table)

    def _port_rules(self, sb: Sandbox, p: Published) -> list[firewall.Command]:
        mapping = firewall.PortMapping(
            container_id=sb.container_id, container_ip=p.container_ip, container_port=p.container_port,
            host_port=p.host_port, proto=p.proto, host_ip="" if _unspecified(p.host_ip) else p.host_ip,
        )  # fmt: skip
        return firewall.port_rules(mapping, self.table)

    def _check_ready(self) -> None:
        if self._failure is not None:
            raise Unavailable(f"networking is unavailable: {self._failure}")

    # ---- lookups ------------------------------------------------------------------------------------------

    def _find(self, ref: str) -> NetworkRecord:
        """moby FindNetwork: full ID, then exact name, then unique ID prefix."""
        nets = list(self._state.networks.values())
        for net in nets:
            if net.id == ref:
                return net
        by_name = [n for n in nets if n.name == ref]
        if len(by_name) == 1:
            return by_name[0]
        by_prefix = [n for n in nets if ref and n.id.startswith(ref)]
        if len(by_prefix) == 1:
            return by_prefix[0]
        if len(by_prefix) > 1:
            raise InvalidArgument(
                f"network {ref} is ambiguous ({len(by_prefix)} matches found based on ID prefix)"
            )
        raise NotFound(f"network {ref} not found")

    def _builtin(self, driver: str) -> NetworkRecord | None:
        return next((n for n in list(self._state.networks.values()) if n.driver == driver), None)

    def _network_for_mode(self, name: str) -> NetworkRecord:
        if name == "bridge":
            default = next((n for n in list(self._state.networks.values()) if n.is_default_bridge), None)
            if default is not None:
                return default
        return self._find(name)

    def _attached(self, record: ContainerRecord) -> list[tuple[str, EndpointConfig]]:
        """The networks a container is on: recorded, or those its create request names."""
        recorded = self._state.attached.get(record.id)
        if recorded is not None:
            return list(recorded)
        return [(self._network_for_mode(name).id, cfg) for name, cfg in requested_networks(record)]

    def _running_on(self, network_id: str) -> list[Sandbox]:
        return [sb for sb in self._state.sandboxes.values() if sb.endpoint(network_id) is not None]

    # ---- Networking: attach, detach, forget ------------------------------------------------------------------

    def _netns_path(self, container_id: str) -> str:
        return os.path.join(self.netns_dir, container_id)

    def attach(self, record: ContainerRecord) -> Attachment:
        host = record.host_config
        mode = host.network_mode
        if mode in ("host", "none"):
            with self._lock:
                if record.id not in self._state.attached:
                    self._state.attached[record.id] = []
                    self._save()
            return Attachment(host_network=mode == "host", extra_hosts=self._extra_hosts(record, None),
                              dns=tuple(host.dns or ()), dns_search=tuple(host.dns_search or ()),
                              dns_options=tuple(host.dns_options or ()))  # fmt: skip
        steps = _Steps()
        with self._lock:
            steps("lock")
            self._check_ready()
            cid = record.id
            old = self._state.sandboxes.pop(cid, None)
            if old is not None:  # restarted by its policy without a detach in between
                self._teardown(old)
            attached = self._attached(record)
            nets = []
            for nid, cfg in attached:
                net = self._state.networks.get(nid)
                if net is None:
                    raise NotFound(f"network {nid} not found")
                self._check_endpoint_config(net, cfg)
                nets.append((net, cfg))
            self._state.attached[cid] = attached
            sb = Sandbox(container_id=cid, name=record.name.lstrip("/"), sandbox_id=generate_id(),
                         netns=netns.create(self._netns_path(cid)))  # fmt: skip
            self._state.sandboxes[cid] = sb
            steps("namespace")
            try:
                routed = False
                for index, (net, cfg) in enumerate(nets):
                    ep = self._join(
                        sb, net, cfg, f"eth{index}", default_route=not routed and not net.internal
                    )
                    routed = routed or ep.default_route
                    sb = self._state.sandboxes[cid] = replace(sb, endpoints=(*sb.endpoints, ep))
                    steps(ep.ifname)
                sb = self._state.sandboxes[cid] = self._publish(record, sb)
                steps("ports")
                sb = self._state.sandboxes[cid] = self._start_dns(record, sb)
                steps("dns")
                extra_hosts = self._extra_hosts(record, sb)
                self._save()
                steps("saved")
            except BaseException:
                self._state.sandboxes.pop(cid, None)
                self._teardown(sb)
                self._save()
                raise
        log.debug("network attach of %s: %s", cid[:12], steps)
        for net, _cfg in nets:  # as dockerd: a network "connect" event per network at each start
            self._publish_event("connect", net, container=cid)
        first = sb.endpoints[0] if sb.endpoints else None
        options = tuple(host.dns_options or ())
        if sb.dns and not any(o.startswith("ndots:") for o in options):
            options = (*options, "ndots:0")
        return Attachment(
            netns_path=sb.netns, address=first.ipv4 if first else "", extra_hosts=extra_hosts,
            dns=(DNS_ADDRESS,) if sb.dns else tuple(host.dns or ()), dns_search=tuple(host.dns_search or ()),
            dns_options=options,
        )  # fmt: skip

    def _check_endpoint_config(self, net: NetworkRecord, cfg: EndpointConfig) -> None:
        """Docker 20.10's checks at start and connect (runconfig's errors)."""
        if not net.user_defined:
            if cfg.ipv4_address or cfg.ipv6_address:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            if cfg.aliases:
                raise InvalidArgument(
                    "network-scoped alias is supported only for containers in user defined networks"
                )
        if cfg.ipv6_address and not net.enable_ipv6:
            raise InvalidArgument(f"invalid IPv6 address {cfg.ipv6_address}: network {net.name} has no IPv6")

    def _join(self, sb: Sandbox, net: NetworkRecord, cfg: EndpointConfig, ifname: str, *,
              default_route: bool) -> Endpoint:  # fmt: skip
        cid = sb.container_id
        a4 = self._allocator.allocate(net.id, cid, version=4, address=cfg.ipv4_address)
        a6 = None
        try:
            if net.enable_ipv6:
                a6 = self._allocator.allocate(net.id, cid, version=6, address=cfg.ipv6_address)
            mac = cfg.mac_address or bridge.docker_mac(a4.address)
            host_name = bridge.host_ifname(cid, net.id)
            gateways = []
            if default_route:
                gateways = [g for g in (a4.gateway, a6.gateway if a6 else "") if g]
            addresses = [a.cidr for a in (a4, a6) if a is not None]
            if net.driver in subif.DRIVERS:  # a sub-interface of the parent, made inside the namespace
                sub_cfg = self._subif_config(net)
                host_name = ""
                if net.driver == "ipvlan":
                    mac = cfg.mac_address
                subif.attach(sb.netns, driver=sub_cfg.driver, parent=sub_cfg.parent, mode=sub_cfg.mode,
                             flag=sub_cfg.flag, ifname=ifname, addresses=addresses,
                             gateways=[] if sub_cfg.internal else gateways,
                             default_route=default_route and not sub_cfg.internal, mac=mac or None)  # fmt: skip
            else:  # replace: a host end of this name is a leftover of a crash
                bridge.connect(sb.netns, net.bridge, host_name=host_name, ifname=ifname, addresses=addresses,
                               gateways=gateways, mac=mac, mtu=net.mtu, replace=True)  # fmt: skip
        except BaseException:
            with contextlib.suppress(KetchError):
                self._allocator.release_owner(cid, net.id)
            raise
        ep = Endpoint(
            network_id=net.id, endpoint_id=generate_id(), ifname=ifname, host_ifname=host_name, ipv4=a4.address,
            ipv4_prefix=a4.prefix_len, gateway=a4.gateway, ipv6=a6.address if a6 else "",
            ipv6_prefix=a6.prefix_len if a6 else 0, ipv6_gateway=a6.gateway if a6 else "", mac=mac,
            default_route=bool(gateways),
        )  # fmt: skip
        if net.user_defined:
            self._dns.add_endpoint(self._dns_endpoint(sb, ep, cfg))
        return ep

    def _dns_endpoint(self, sb: Sandbox, ep: Endpoint, cfg: EndpointConfig) -> dns.Endpoint:
        return dns.Endpoint(network_id=ep.network_id, container_id=sb.container_id, name=sb.name,
                            aliases=tuple(cfg.aliases or ()), ipv4=ep.ipv4 or None, ipv6=ep.ipv6 or None)  # fmt: skip

    def _publish(self, record: ContainerRecord, sb: Sandbox) -> Sandbox:
        """Published ports on the endpoint that has the default route, as DNAT rules (no proxy process)."""
        exposed = tuple(_exposed_keys(record))
        bindings = _bindings(record)
        target = next((ep for ep in sb.endpoints if ep.default_route), None)
        if not bindings or target is None or self._state.networks[target.network_id].driver != "bridge":
            return replace(sb, exposed=exposed)  # Docker publishes nothing for macvlan/ipvlan either
        net = self._state.networks[target.network_id]
        published: list[Published] = []

        def is_free(proto: str, host_ip: str, port: int) -> bool:
            taken = [p for other in self._state.sandboxes.values() for p in other.ports] + published
            for p in taken:
                if (
                    p.proto == proto
                    and p.host_port == port
                    and (_unspecified(p.host_ip) or _unspecified(host_ip) or p.host_ip == host_ip)
                ):
                    return False
            return _bind_free(proto, host_ip, port)

        ephemeral = _ephemeral_range()
        for binding in bindings:
            host_ip = binding.host_ip or net.host_binding_ipv4
            v6 = bool(host_ip) and ipaddress.ip_address(host_ip).version == 6
            container_ip = target.ipv6 if v6 else target.ipv4
            if not container_ip:
                continue  # an IPv6 binding of a container without IPv6: nothing to forward to
            binding = replace(binding, host_ip="" if host_ip in ("0.0.0.0", "::") and not v6 else host_ip)
            try:
                port = portspec.resolve_host_port(binding, is_free, ephemeral=ephemeral,
                                                  after=self._last_port.get(binding.proto, 0))  # fmt: skip
            except SystemFailure as exc:
                raise SystemFailure(f"driver failed programming external connectivity on endpoint {sb.name} "
                                    f"({target.endpoint_id}): {exc}", errno=exc.errno) from None  # fmt: skip
            if binding.is_dynamic:
                self._last_port[binding.proto] = port
            published.append(Published(container_port=binding.container_port, proto=binding.proto,
                                       host_port=port, container_ip=container_ip, host_ip=host_ip))  # fmt: skip
        sb = replace(sb, ports=tuple(published), exposed=exposed)
        self._rules.add([c for p in published for c in self._port_rules(sb, p)])
        return sb

    def _extra_hosts(self, record: ContainerRecord, sb: Sandbox | None) -> tuple[str, ...]:
        """--add-host entries (``host-gateway`` is the default bridge's gateway) and, on the default bridge,
        --link entries (Docker's legacy links: /etc/hosts lines for the alias and the container's name)."""
        out = []
        gateway = ""
        default = next((n for n in self._state.networks.values() if n.is_default_bridge), None)
        if default is not None and default.id in self._allocator.state.networks:
            gateway = next((p.gateway for p in self._allocator.network(default.id).pools_of(4)), "")
        for entry in record.host_config.extra_hosts or ():
            name, _, ip = entry.partition(":")
            out.append(f"{name}:{gateway}" if ip == "host-gateway" else entry)
        if sb is not None and default is not None and sb.endpoint(default.id) is not None:
            for alias, target in parse_links(record.host_config.links).items():
                other = self._state.sandboxes.get(self._container_id(target) or "")
                ep = other.endpoint(default.id) if other is not None else None
                if ep is None:
                    raise InvalidArgument(f"could not get container for {target}: it is not running on the "
                                          "default bridge network")  # fmt: skip
                out.extend(f"{n}:{ep.ipv4}" for n in dict.fromkeys((alias, target)))
        return tuple(out)

    def _container_id(self, ref: str) -> str | None:
        try:
            return self.containers.get(ref).record.id
        except KetchError:
            return None

    # ---- DNS ----------------------------------------------------------------------------------------------

    def _loop(self) -> _LoopThread:
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        return self._loop_thread

    def _user_networks(self, sb: Sandbox) -> list[str]:
        return [ep.network_id for ep in sb.endpoints if self._state.networks[ep.network_id].user_defined]

    def _start_dns(self, record: ContainerRecord, sb: Sandbox) -> Sandbox:
        user = self._user_networks(sb)
        if not user:
            return sb
        from ketch.network.dns_server import host_forwarders

        host = record.host_config
        if all(self._state.networks[n].internal for n in user):
            forwarders: tuple[str, ...] = ()
        elif host.dns:
            forwarders = tuple(ip for ip in host.dns if _is_ip(ip))[:3]
        else:
            forwarders = tuple(ip for ip, _ in host_forwarders(_read(self.resolv_conf)))
        links = parse_links(host.links)
        for _nid, cfg in self._state.attached.get(sb.container_id, []):
            links.update(parse_links(cfg.links))
        sb = replace(sb, dns=True, dns_forwarders=forwarders, dns_links=links)
        self._serve_dns(sb)
        return sb

    def _serve_dns(self, sb: Sandbox) -> None:
        from ketch.network.dns_server import DnsServer, bind_in_netns

        sockets = bind_in_netns(sb.netns, DNS_ADDRESS, 53)
        server = DnsServer(self._dns, self._user_networks(sb), sockets=sockets,
                           forwarders=[(ip, 53) for ip in sb.dns_forwarders], links=dict(sb.dns_links))  # fmt: skip
        self._loop().run(server.start())
        self._servers[sb.container_id] = server

    def _stop_dns(self, container_id: str) -> None:
        server = self._servers.pop(container_id, None)
        if server is not None:
            try:
                self._loop().run(server.close())
            except Exception as exc:  # the loop may be gone at shut-down; the sockets close with it
                log.warning("stopping the DNS server of %s: %s", container_id[:12], exc)

    def _restore_dns(self, sb: Sandbox) -> None:
        configs = dict(self._state.attached.get(sb.container_id, []))
        for ep in sb.endpoints:
            if self._state.networks[ep.network_id].user_defined:
                self._dns.add_endpoint(
                    self._dns_endpoint(sb, ep, configs.get(ep.network_id, EndpointConfig()))
                )
        if sb.dns:
            try:
                self._serve_dns(sb)
            except KetchError as exc:
                log.warning("restarting the DNS server of %s: %s", sb.container_id[:12], exc)

    # ---- detach -------------------------------------------------------------------------------------------

    def _teardown(self, sb: Sandbox, *, rules: bool = True) -> None:
        """Everything a sandbox holds, each step independent of the others' failures."""
        cid = sb.container_id
        self._stop_dns(cid)
        steps: list[tuple[str, Callable[[], object]]] = []
        if sb.ports and rules:
            steps.append(("port rules", lambda: self._rules.remove(cid)))
        for ep in sb.endpoints:
            if ep.host_ifname:  # a macvlan/ipvlan sub-interface goes with the namespace
                steps.append((f"veth {ep.host_ifname}", functools.partial(bridge.disconnect, ep.host_ifname)))
            self._dns.remove_endpoint(ep.network_id, cid)
        steps.append(("addresses", lambda: self._allocator.release_owner(cid)))
        steps.append(("namespace", lambda: netns.remove(sb.netns)))
        for what, step in steps:
            try:
                step()
            except (KetchError, OSError) as exc:
                log.warning("taking %s off its networks: %s: %s", cid[:12], what, exc)

    def detach(self, container_id: str) -> None:
        with self._lock:
            sb = self._state.sandboxes.pop(container_id, None)
            if sb is not None:
                self._teardown(sb)
                self._save()
                for ep in sb.endpoints:
                    net = self._state.networks.get(ep.network_id)
                    if net is not None:
                        self._publish_event("disconnect", net, container=container_id)
                return
            if self._failure is not None:
                return
            path = self._netns_path(container_id)
            if os.path.exists(path):
                netns.remove(path)
            if container_id in self._allocator.owners():
                self._allocator.release_owner(container_id)

    def forget(self, container_id: str) -> None:
        self.detach(container_id)
        with self._lock:
            if self._state.attached.pop(container_id, None) is not None:
                self._save()

    # ---- the /networks verbs ------------------------------------------------------------------------------

    def _publish_event(self, action: str, net: NetworkRecord, **extra: str) -> None:
        if self.events is not None:
            self.events.publish("network", action, net.id, {**extra, "name": net.name, "type": net.driver})

    def _to_api(self, net: NetworkRecord) -> dict[str, Any]:
        config: list[dict[str, Any]] = []
        if net.id in self._allocator.state.networks:
            for pool in self._allocator.network(net.id).pools:
                entry = pool.to_engine()
                if net.is_default_bridge:
                    entry.pop("Gateway", None)  # as dockerd shows its default bridge (docker-api-traces 31)
                config.append(entry)
        containers = {}
        for sb in self._running_on(net.id):
            ep = sb.endpoint(net.id)
            assert ep is not None
            containers[sb.container_id] = inspect_container_entry(sb.name, ep)
        return network_to_api(net, config, containers)

    def _ordered(self) -> list[NetworkRecord]:
        return sorted(self._state.networks.values(), key=lambda n: (not n.builtin, n.created, n.name))

    def list_networks(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
        accept = list_filter(filters or {})
        with self._lock:
            return [self._to_api(n) for n in self._ordered() if accept(n, len(self._running_on(n.id)))]

    def inspect(self, ref: str, *, scope: str = "") -> dict[str, Any]:
        with self._lock:
            net = self._find(ref)
            if scope and scope != "local":
                raise NotFound(f"network {ref} not found")
            return self._to_api(net)

    def _subif_config(self, net: NetworkRecord) -> subif.SubifConfig:
        return subif.validate(net.driver, net.options, network_id=net.id, internal=net.internal)

    def _create_subif(self, req: Any) -> dict[str, str]:
        """macvlan/ipvlan: no bridge and no rules; the parent is checked (or made) now, containers get a
        sub-interface of it inside their namespace."""
        with self._lock:
            self._check_ready()
            if any(n.name == req.name for n in self._state.networks.values()):
                raise Conflict(f"network with name {req.name} already exists")
            nid = generate_id()
            cfg = subif.validate(req.driver, req.options, network_id=nid, internal=req.internal)
            others = [(n.id, self._subif_config(n)) for n in self._state.networks.values()
                      if n.driver in subif.DRIVERS]  # fmt: skip
            subif.check_shared_parent(cfg, others)
            requests = [PoolRequest.from_engine(c) for c in req.ipam_config]
            self._allocator.add_network(nid, req.name, requests, ipv6=req.enable_ipv6,
                                        host_routes=self._host_routes())  # fmt: skip
            try:
                owned = subif.prepare_parent(cfg)
            except BaseException:
                with contextlib.suppress(KetchError):
                    self._allocator.remove_network(nid)
                raise
            net = NetworkRecord(
                id=nid, name=req.name, driver=req.driver, created=time.time_ns(), enable_ipv6=req.enable_ipv6,
                internal=cfg.internal, attachable=req.attachable, ipam_options=req.ipam_options,
                options=req.options, labels=req.labels, parent_owned=owned,
            )  # fmt: skip
            self._state.networks[nid] = net
            self._save()
            self._dns.add_network(nid, net.name)
        self._publish_event("create", net)
        return {"Id": nid, "Warning": ""}

    def create(self, body: Any) -> dict[str, str]:
        req = parse_create_request(body)
        if req.driver in subif.DRIVERS:
            return self._create_subif(req)
        steps = _Steps()
        with self._lock:
            steps("lock")
            self._check_ready()
            if any(n.name == req.name for n in self._state.networks.values()):
                raise Conflict(f"network with name {req.name} already exists")
            nid = generate_id()
            name = req.bridge_name or USER_BRIDGE_PREFIX + nid[:11]  # IFNAMSIZ: 15 bytes
            owner = next((n for n in self._state.networks.values() if n.bridge == name), None)
            if owner is not None:
                raise Conflict(f"bridge name {name} is already in use by network {owner.name}")
            if bridge.link_exists(name):
                raise Conflict(f"an interface named {name} exists already: ketch makes the bridges of its "
                               "networks itself")  # fmt: skip
            requests = [PoolRequest.from_engine(c) for c in req.ipam_config]
            host_routes = self._host_routes()
            steps("checks and host routes")
            self._allocator.add_network(
                nid, req.name, requests, ipv6=req.enable_ipv6, host_routes=host_routes
            )
            steps("addresses")
            net = NetworkRecord(
                id=nid, name=req.name, driver="bridge", created=time.time_ns(), bridge=name,
                enable_ipv6=req.enable_ipv6, internal=req.internal, attachable=req.attachable,
                ipam_options=req.ipam_options, options=req.options, labels=req.labels,
            )  # fmt: skip
            try:
                self._plumb(net)
                steps("bridge")
                self._rules.add(self._network_rules(net))
                steps("rules")
                self._state.networks[nid] = net
                self._forwarding()
                self._save()
                steps("saved")
            except BaseException:
                self._state.networks.pop(nid, None)
                for undo in (lambda: self._rules.remove(nid), lambda: bridge.delete_bridge(name),
                             lambda: self._allocator.remove_network(nid)):  # fmt: skip
                    with contextlib.suppress(KetchError):
                        undo()
                raise
            self._dns.add_network(nid, net.name)
        log.debug("network create of %s: %s", net.name, steps)
        self._publish_event("create", net)
        return {"Id": nid, "Warning": ""}

    def remove(self, ref: str) -> None:
        with self._lock:
            net = self._find(ref)
            if net.builtin:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            if self._running_on(net.id):
                raise Forbidden(
                    f"error while removing network: network {net.name} id {net.id} has active endpoints"
                )
            self._check_ready()
            if net.driver in subif.DRIVERS:
                parent = self._subif_config(net).parent
                shared = any(n.id != net.id and n.driver in subif.DRIVERS and self._subif_config(n).parent == parent
                             for n in self._state.networks.values())  # fmt: skip
                if net.parent_owned and not shared:
                    subif.remove_parent(parent)
            else:
                self._rules.remove(net.id)
                bridge.delete_bridge(net.bridge)
            self._allocator.remove_network(net.id)
            self._dns.remove_network(net.id)
            del self._state.networks[net.id]
            self._save()
        self._publish_event("destroy", net)

    def prune(self, filters: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
        accept = prune_filter(filters or {}, lambda v: parse_until(v)[0] * 10**9 + parse_until(v)[1])
        removed = []
        with self._lock:
            for net in self._ordered():
                if net.builtin or self._running_on(net.id) or not accept(net):
                    continue
                try:
                    self.remove(net.id)
                except KetchError as exc:
                    log.warning("prune: network %s: %s", net.name, exc)
                    continue
                removed.append(net.name)
        return {"NetworksDeleted": removed or None}

    def _container(self, ref: str) -> ContainerRecord:
        return self.containers.get(ref).record

    def connect(self, ref: str, container_ref: str, config: EndpointConfig | None = None) -> None:
        """``docker network connect``: a running container gets the interface now, a stopped one at start."""
        cfg = config or EndpointConfig()
        cfg.validate()
        steps = _Steps()
        with self._lock:
            steps("lock")
            net = self._find(ref)
            record = self._container(container_ref)
            mode = record.host_config.network_mode
            if mode.startswith("container:"):
                raise Forbidden("container sharing network namespace with another container or host cannot be "
                                "connected to any other network")  # fmt: skip
            if mode == "host" or net.driver == "host":
                raise Forbidden(
                    "container cannot be disconnected from host network or connected to host network"
                )
            if mode == "none" or net.driver == "null":
                raise Forbidden("container cannot be connected to multiple networks with one of the networks in "
                                "private (none) mode")  # fmt: skip
            self._check_endpoint_config(net, cfg)
            attached = self._attached(record)
            if any(nid == net.id for nid, _ in attached):
                raise Forbidden(
                    f"endpoint with name {record.name.lstrip('/')} already exists in network {net.name}"
                )
            sb = self._state.sandboxes.get(record.id)
            if sb is not None:
                self._check_ready()
                used = {int(ep.ifname[3:]) for ep in sb.endpoints if ep.ifname[3:].isdigit()}
                index = next(i for i in range(len(used) + 1) if i not in used)
                routed = any(ep.default_route for ep in sb.endpoints)
                ep = self._join(sb, net, cfg, f"eth{index}", default_route=not routed and not net.internal)
                steps(ep.ifname)
                sb = self._state.sandboxes[record.id] = replace(sb, endpoints=(*sb.endpoints, ep))
                self._state.attached[record.id] = [*attached, (net.id, cfg)]  # for the resolver's links
                server = self._servers.get(record.id)
                if server is not None:
                    server.network_id = self._user_networks(sb)
                elif net.user_defined:
                    self._state.sandboxes[record.id] = self._enable_dns(record, sb)
            self._state.attached[record.id] = [*attached, (net.id, cfg)]
            self._save()
            steps("saved")
        log.debug("network connect of %s to %s: %s", record.id[:12], net.name, steps)
        self._publish_event("connect", net, container=record.id)

    def _enable_dns(self, record: ContainerRecord, sb: Sandbox) -> Sandbox:
        """A running container that joins its first user network gets the embedded resolver, as libnetwork
        does: its resolv.conf, rewritten in place (it is bind-mounted), names 127.0.0.11."""
        sb = self._start_dns(record, sb)
        path = os.path.join(self.data_root, "containers", record.id, "resolv.conf")
        kept = [line for line in _read(path).splitlines() if not line.startswith("nameserver")]
        if not any(line.startswith("options") and "ndots:" in line for line in kept):
            kept.append("options ndots:0")
        try:
            with open(path, "r+") as f:
                f.write("\n".join([f"nameserver {DNS_ADDRESS}", *kept]) + "\n")
                f.truncate()
        except OSError as exc:
            log.warning("pointing %s's resolv.conf at the embedded resolver: %s", record.id[:12], exc)
        return sb

    def disconnect(self, ref: str, container_ref: str, *, force: bool = False) -> None:
        with self._lock:
            net = self._find(ref)
            try:
                record = self._container(container_ref)
            except NotFound:
                if force:
                    return
                raise
            mode = record.host_config.network_mode
            if mode == "host" or net.driver == "host":
                raise Forbidden(
                    "container cannot be disconnected from host network or connected to host network"
                )
            attached = self._attached(record)
            if not any(nid == net.id for nid, _ in attached):
                raise Conflict(f"container {record.id} is not connected to the network {net.name}")
            sb = self._state.sandboxes.get(record.id)
            ep = sb.endpoint(net.id) if sb is not None else None
            if sb is not None and ep is not None:
                if any(p.container_ip in (ep.ipv4, ep.ipv6) for p in sb.ports):
                    with contextlib.suppress(KetchError):
                        self._rules.remove(record.id)
                    sb = replace(sb, ports=())
                bridge.disconnect(ep.host_ifname)
                self._dns.remove_endpoint(net.id, record.id)
                self._allocator.release_owner(record.id, net.id)
                sb = self._state.sandboxes[record.id] = replace(
                    sb, endpoints=tuple(e for e in sb.endpoints if e.network_id != net.id)
                )
                server = self._servers.get(record.id)
                if server is not None:
                    server.network_id = self._user_networks(sb)
            self._state.attached[record.id] = [(nid, c) for nid, c in attached if nid != net.id]
            self._save()
        self._publish_event("disconnect", net, container=record.id)

    # ---- what container inspect and list show -----------------------------------------------------------------

    # Readers take no lock: the container listing is answered on the API's event loop, which must not wait
    # for an attach in progress. Records are immutable and replaced whole, and dict reads are atomic.

    def container_network_settings(self, container_id: str, record: ContainerRecord) -> dict[str, Any]:
        """Docker's ``NetworkSettings`` for container inspect."""
        mode = record.host_config.network_mode
        sb = self._state.sandboxes.get(container_id)
        recorded = self._state.attached.get(container_id)
        entries: list[tuple[str, NetworkRecord | None, EndpointConfig]] = []
        if mode in ("host", "none"):
            entries = [(mode, self._builtin("host" if mode == "host" else "null"), EndpointConfig())]
        elif mode.startswith("container:"):
            entries = []
        elif recorded is not None:
            for nid, cfg in recorded:
                net = self._state.networks.get(nid)
                entries.append((net.name if net else nid, net, cfg))
        else:
            for name, cfg in requested_networks(record):
                try:
                    net = self._network_for_mode(name)
                except KetchError:
                    entries.append((name, None, cfg))
                else:
                    entries.append((net.name, net, cfg))
        return container_network_settings(record, entries, sb, attached_before=recorded is not None)

    def ports_for_list(self, container_id: str) -> list[dict[str, Any]]:
        """The ``Ports`` of a ``GET /containers/json`` item."""
        return _ports_for_list(self._state.sandboxes.get(container_id))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

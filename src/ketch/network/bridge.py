"""Bridges and veth pairs through netlink (pyroute2): what a bridge network is on the host.

- A network's bridge device (``ketch0`` for the default network, ``kbr-<11 hex>`` for user networks) holds the
  gateway addresses and is up.
- A container joins by a veth pair: the host end (``veth<7 hex>``) is a port of the bridge (hairpin on, so a
  container reaches itself through a published port), the other end is created inside the container's namespace
  as ``eth0`` (``eth1``, ... for further networks) with its address, Docker's MAC (02:42 and the IPv4 address)
  and, for the first network, the default route.

Nothing here shells out to ``ip``; every call names the device it changes, so nothing else on the host is touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ketch.common.errors import Conflict, SystemFailure
from ketch.network import netns

_T = TypeVar("_T")

__all__ = [
    "connect",
    "delete_bridge",
    "disconnect",
    "docker_mac",
    "ensure_bridge",
    "host_ifname",
    "in_netns",
    "link_exists",
    "links",
    "set_sysctl",
    "veth_ports",
]


def host_ifname(container_id: str, network_id: str) -> str:
    """The host end of a container's veth on a network: stable, so a restarted ketchd finds it (15 bytes max)."""
    return "veth" + hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()[:7]


def docker_mac(ipv4: str) -> str:
    """Docker's MAC for an IPv4 address: 02:42 followed by the address' four bytes."""
    octets = ipaddress.IPv4Address(ipv4).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in octets)


def _fail(what: str, exc: NetlinkError) -> SystemFailure:
    return SystemFailure(f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}", errno=exc.code)


@contextlib.contextmanager
def _ipr() -> Iterator[IPRoute]:
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def links() -> list[str]:
    with _ipr() as ipr:
        return [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]


def link_exists(name: str) -> bool:
    """Whether the host has a link named ``name`` (one lookup by name, not a dump of every link)."""
    with _ipr() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def veth_ports(bridge: str) -> list[str]:
    """The names of the veths that are ports of ``bridge`` (none when it does not exist)."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            return []
        out = []
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            if link.get_attr("IFLA_MASTER") == found[0] and kind == "veth":
                out.append(str(link.get_attr("IFLA_IFNAME")))
        return out


def set_sysctl(path: str, value: str) -> None:
    """Write ``/proc/sys/<path>`` (dots or slashes); SystemFailure names the key."""
    full = "/proc/sys/" + path.replace(".", "/") if "/" not in path else path
    try:
        with open(full, "w") as f:
            f.write(value)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"set {path}", exc) from None


def ensure_bridge(name: str, addresses: Sequence[str], *, mtu: int = 1500) -> int:
    """Create the bridge if it is missing, give it ``addresses`` (CIDR notation), bring it up; its index."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
        try:
            have: set[tuple[str, int]] = set()
            if found:
                # Never give addresses to, or enslave veths into, an interface that is not a bridge.
                info = ipr.get_links(found[0])[0].get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
                if kind != "bridge":
                    raise Conflict(f"interface {name} exists and is not a bridge ({kind or 'no kind'})")
                index = int(found[0])
                have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index)}
                ipr.link("set", index=index, state="up")
            else:
                # A MAC of its own: a bridge without one takes the lowest of its ports', which changes as
                # containers come and go and leaves their ARP caches pointing at a gone gateway address.
                # Up from the start: one request fewer.
                mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=mac, state="up")
                index = int(ipr.link_lookup(ifname=name)[0])
            for cidr in addresses:
                iface = ipaddress.ip_interface(cidr)
                if (str(iface.ip), iface.network.prefixlen) not in have:
                    ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as exc:
            raise _fail(f"set up bridge {name}", exc) from None
        return index


def delete_bridge(name: str) -> None:
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            try:
                ipr.link("del", index=found[0])
            except NetlinkError as exc:
                raise _fail(f"delete bridge {name}", exc) from None


def connect(
    netns_path: str,
    bridge: str,
    *,
    host_name: str,
    ifname: str,
    addresses: Sequence[str],
    gateways: Sequence[str] = (),
    mac: str | None = None,
    mtu: int = 1500,
    replace: bool = False,
) -> None:
    """Join the namespace at ``netns_path`` to ``bridge`` with a new veth pair; ``addresses`` in CIDR
    notation; ``gateways`` become default routes (give them for the container's first network only).

    The container's end is created inside the namespace, under its final name and MAC, by the request that
    creates the pair (``IFLA_NET_NS_FD`` of the peer): moving an existing link to another namespace makes the
    kernel wait for an RCU grace period (~25 ms), and nothing shows up on the host under a temporary name. A host
    end named ``host_name`` that exists already is a Conflict, or, with ``replace``, a leftover of a crash that
    goes first."""
    with _ipr() as ipr:
        bridge_index = ipr.link_lookup(ifname=bridge)
        if not bridge_index:
            raise SystemFailure(f"bridge {bridge} does not exist")
        stale = ipr.link_lookup(ifname=host_name)
        if stale and not replace:
            raise Conflict(f"interface {host_name} already exists: the container is already on this network")
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SystemFailure.from_oserror(f"open network namespace {netns_path}", exc) from None
        try:
            if stale:
                ipr.link("del", index=stale[0])
            peer: dict[str, object] = {"ifname": ifname, "net_ns_fd": fd, "mtu": mtu}
            if mac:
                peer["address"] = mac
            ipr.link("add", ifname=host_name, kind="veth", mtu=mtu, peer=peer)
        except NetlinkError as exc:
            raise _fail(f"create veth {host_name} on {bridge}", exc) from None
        finally:
            os.close(fd)
        try:
            host_index = ipr.link_lookup(ifname=host_name)[0]
            ipr.link("set", index=host_index, master=bridge_index[0], state="up")
            ipr.brport("set", index=host_index, hairpin_mode=1)
        except (NetlinkError, IndexError) as exc:
            with contextlib.suppress(NetlinkError, IndexError):
                ipr.link("del", index=ipr.link_lookup(ifname=host_name)[0])
            if isinstance(exc, IndexError):
                raise SystemFailure(f"veth {host_name} vanished right after it was created") from None
            raise _fail(f"put veth {host_name} on {bridge}", exc) from None

    def configure(ns: IPRoute) -> None:
        found = ns.link_lookup(ifname=ifname)
        if not found:
            raise SystemFailure(f"{ifname} is missing in {netns_path} right after it was created")
        index = found[0]
        for cidr in addresses:
            iface = ipaddress.ip_interface(cidr)
            ns.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        ns.link("set", index=index, state="up")
        lo = ns.link_lookup(ifname="lo")[0]
        ns.link("set", index=lo, state="up")
        for gateway in gateways:
            family = 10 if ipaddress.ip_address(gateway).version == 6 else 2
            ns.route("add", dst="default", gateway=gateway, family=family)

    try:
        in_netns(netns_path, configure)
    except NetlinkError as exc:
        disconnect(host_name)
        raise _fail(f"configure {ifname} in {netns_path}", exc) from None
    except BaseException:
        disconnect(host_name)
        raise


def disconnect(host_name: str) -> None:
    """Remove a veth pair by its host end (its peer, in the container, goes with it); tolerates a missing one."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=host_name)
        if found:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=found[0])


def container_interfaces(netns_path: str) -> list[str]:
    return in_netns(netns_path, lambda ns: [str(link.get_attr("IFLA_IFNAME")) for link in ns.get_links()])


def in_netns(netns_path: str, work: Callable[[IPRoute], _T]) -> _T:
    """Run ``work`` with an IPRoute of the network namespace at ``netns_path``, in a short-lived thread that
    joins the namespace (setns moves only the calling thread; pyroute2 opens its socket lazily, in the thread
    that first uses it). pyroute2's own NetNS forks a child and SIGTERMs it, and a forked child of a daemon
    shares the daemon's signal wake-up pipe: the daemon would take the child's SIGTERM for its own."""

    def with_ipr() -> _T:
        with _ipr() as ns:
            return work(ns)

    return netns.run_in(netns_path, with_ipr)

"""Docker's macvlan and ipvlan drivers as plumbing: a container's interface is a sub-interface of a host link
(the network's *parent*) instead of a veth on a bridge.

- Options as ``docker network create -d macvlan|ipvlan -o ...`` gives them (``parent``, ``macvlan_mode``,
  ``ipvlan_mode``, ``ipvlan_flag``), checked with moby's messages by :func:`validate`.
- The parent: an existing host link is used as it is; a dotted name that does not exist (``eth0.10``) is an
  802.1q sub-interface that ketch creates on ``eth0``; a network without ``-o parent`` gets a dummy link of its
  own (``dm-<id>``/``di-<id>``) and is internal. Only links ketch created are removed again.
- A container's interface is created straight inside its network namespace (``IFLA_NET_NS_FD`` in the same
  request), so it never shows up on the host under a temporary name and a failed join leaves nothing behind.

Namespace work runs in short-lived threads that setns() (:func:`ketch.network.bridge.in_netns`), never in a
forked child: ketchd's signal wake-up pipe would be shared with it.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ketch.common.errors import Conflict, InvalidArgument, NotFound, SystemFailure, Unsupported
from ketch.network.bridge import in_netns

__all__ = [
    "DRIVERS",
    "IPVLAN_FLAGS",
    "IPVLAN_MODES",
    "MACVLAN_MODES",
    "SubifConfig",
    "attach",
    "check_shared_parent",
    "detach",
    "dummy_name",
    "ensure_dummy",
    "ensure_parent",
    "link_request",
    "parse_vlan",
    "prepare_parent",
    "remove_parent",
    "validate",
]

DRIVERS = ("macvlan", "ipvlan")
# Kernel values (if_link.h): MACVLAN_MODE_*, IPVLAN_MODE_*, IPVLAN_F_* (bridge is "no flag").
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}
IPVLAN_FLAGS = {"bridge": 0, "private": 1, "vepa": 2}
_KERNEL_OPTION = {"macvlan": "CONFIG_MACVLAN", "ipvlan": "CONFIG_IPVLAN", "vlan": "CONFIG_VLAN_8021Q",
                  "dummy": "CONFIG_DUMMY"}  # fmt: skip
IFNAMSIZ = 16
RT_SCOPE_LINK = 253


@dataclass(frozen=True)
class SubifConfig:
    """A validated macvlan/ipvlan network: what the engine keeps and hands back to :func:`attach`."""

    driver: str  # "macvlan" | "ipvlan"
    parent: str  # the host link: "eth0", "eth0.10", or the network's own dummy
    mode: str  # macvlan: bridge|private|vepa|passthru; ipvlan: l2|l3|l3s
    flag: str  # ipvlan: bridge|private|vepa; "" for macvlan
    internal: bool  # asked for, or implied by a missing parent (Docker)
    dummy: bool  # the parent is the network's own dummy link


def dummy_name(driver: str, network_id: str) -> str:
    """Docker's name for the dummy parent of a network without ``-o parent``: ``dm-``/``di-`` and 12 hex."""
    return ("dm-" if driver == "macvlan" else "di-") + network_id[:12]


def validate(
    driver: str, options: Mapping[str, str], *, network_id: str, internal: bool = False
) -> SubifConfig:
    """Check ``-o`` options as moby's drivers do (other keys are ignored, as there) and fill in the defaults:
    macvlan ``bridge`` mode, ipvlan ``l2`` mode with the ``bridge`` flag. No parent makes the network internal
    on a dummy parent of its own. Pure: whether the parent exists is :func:`prepare_parent`'s business."""
    if driver not in DRIVERS:
        raise InvalidArgument(f"network driver {driver!r} is not macvlan or ipvlan")
    parent = options.get("parent", "")
    flag = ""
    if driver == "macvlan":
        mode = options.get("macvlan_mode", "") or "bridge"
        if mode not in MACVLAN_MODES:
            raise InvalidArgument(
                f"requested macvlan mode '{mode}' is not valid, 'bridge' mode is the macvlan driver default"
            )
    else:
        mode = options.get("ipvlan_mode", "") or "l2"
        if mode not in IPVLAN_MODES:
            raise InvalidArgument(
                f"requested ipvlan mode '{mode}' is not valid, 'l2' mode is the ipvlan driver default"
            )
        flag = options.get("ipvlan_flag", "") or "bridge"
        if flag not in IPVLAN_FLAGS:
            raise InvalidArgument(
                f"requested ipvlan flag '{flag}' is not valid, 'bridge' is the ipvlan driver default"
            )
    if parent == "lo":
        raise InvalidArgument(f"loopback interface is not a valid {driver} parent link")
    if len(parent) >= IFNAMSIZ or "/" in parent or any(c.isspace() for c in parent):
        raise InvalidArgument(f"invalid parent interface name {parent!r}")
    if not parent:
        return SubifConfig(driver, dummy_name(driver, network_id), mode, flag, internal=True, dummy=True)
    return SubifConfig(driver, parent, mode, flag, internal=internal, dummy=False)


def check_shared_parent(config: SubifConfig, others: Iterable[tuple[str, SubifConfig]]) -> None:
    """moby's rules for networks of one driver on one parent, ``others`` being (network id, config) of the
    existing networks: macvlan networks may share a parent unless one of them is in passthru mode; an ipvlan
    parent carries one network. (The kernel refuses macvlan and ipvlan ports on one parent anyway.)"""
    for network_id, other in others:
        if other.driver != config.driver or other.parent != config.parent:
            continue
        if config.driver == "ipvlan":
            raise Conflict(
                f"network {dummy_name('ipvlan', network_id)} is already using parent interface {config.parent}"
            )
        if config.mode == "passthru":
            raise Conflict(
                f"cannot use mode passthru, macvlan network {network_id} is already using parent interface "
                f"{config.parent}"
            )
        if other.mode == "passthru":
            raise Conflict(
                f"macvlan network {network_id} is already using parent interface {config.parent} in mode passthru"
            )


def parse_vlan(name: str) -> tuple[str, int]:
    """``eth0.10`` -> ("eth0", 10), with moby's checks and messages."""
    parts = name.split(".")
    if len(parts) != 2:
        raise InvalidArgument(
            f"required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead received {name}"
        )
    base, vid_text = parts
    digits = vid_text[1:] if vid_text[:1] in ("+", "-") else vid_text
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise InvalidArgument(f"unable to parse a valid vlan id from: {vid_text} (ex. eth0.10 for vlan 10)")
    vid = int(vid_text)
    if not 1 <= vid <= 4094:
        raise InvalidArgument(f"vlan id must be between 1-4094, received: {vid}")
    return base, vid


# ---- host side: parents ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _ipr() -> Iterator[IPRoute]:
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _fail(what: str, exc: NetlinkError, kind: str = "") -> SystemFailure | Unsupported:
    if kind and exc.code == errno.EOPNOTSUPP:
        return Unsupported(f"{what}: the kernel has no {kind} interfaces ({_KERNEL_OPTION.get(kind, kind)})")
    return SystemFailure(f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}", errno=exc.code)


def _kind(ipr: IPRoute, index: int) -> str:
    info = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return str(kind or "")


def _lookup(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def ensure_parent(name: str, vlan: int | None = None) -> bool:
    """The host link a network sits on. Without ``vlan``: ``name`` must exist; returns False. With ``vlan``:
    the 802.1q sub-interface ``<name>.<vlan>`` on ``name``, created and brought up when missing; returns True
    when ketch created it (then :func:`remove_parent` it with the network), False when it was there."""
    with _ipr() as ipr:
        if vlan is None:
            if _lookup(ipr, name) is None:
                raise NotFound(f"the requested parent interface {name} was not found on the Docker host")
            return False
        if not 1 <= vlan <= 4094:
            raise InvalidArgument(f"vlan id must be between 1-4094, received: {vlan}")
        sub = f"{name}.{vlan}"
        if len(sub) >= IFNAMSIZ:
            raise InvalidArgument(f"vlan interface name {sub} is longer than {IFNAMSIZ - 1} characters")
        if _lookup(ipr, sub) is not None:
            return False
        base = _lookup(ipr, name)
        if base is None:
            raise NotFound(f"-o parent interface was not found on the host: {name}")
        try:
            ipr.link("add", ifname=sub, kind="vlan", link=base, vlan_id=vlan)
        except NetlinkError as exc:
            raise _fail(f"failed to create {sub} vlan link", exc, "vlan") from None
        return _up_or_remove(ipr, sub)


def ensure_dummy(name: str) -> bool:
    """The dummy parent of a network without ``-o parent``, created and brought up when missing; True when
    ketch created it."""
    with _ipr() as ipr:
        index = _lookup(ipr, name)
        if index is not None:
            if _kind(ipr, index) != "dummy":
                raise Conflict(f"interface {name} exists and is not a dummy interface")
            return False
        try:
            ipr.link("add", ifname=name, kind="dummy")
        except NetlinkError as exc:
            raise _fail(f"failed to create the dummy parent link {name}", exc, "dummy") from None
        return _up_or_remove(ipr, name)


def _up_or_remove(ipr: IPRoute, name: str) -> bool:
    index = _lookup(ipr, name)
    try:
        if index is None:
            raise SystemFailure(f"link {name} vanished right after it was created")
        ipr.link("set", index=index, state="up")
    except NetlinkError as exc:
        with contextlib.suppress(NetlinkError):
            ipr.link("del", index=index)
        raise _fail(f"failed to enable {name}, the parent link", exc) from None
    return True


def prepare_parent(config: SubifConfig) -> bool:
    """moby's order at network creation: the network's own dummy (named after it: True even when a previous
    run left it); else an existing link, used as it is; else a dotted name is a VLAN sub-interface to create.
    True when the parent is ketch's: keep that with the network and :func:`remove_parent` it when the last
    network on it goes."""
    if config.dummy:
        ensure_dummy(config.parent)
        return True
    with _ipr() as ipr:
        if _lookup(ipr, config.parent) is not None:
            return False
    if "." not in config.parent:
        raise InvalidArgument(
            f"invalid subinterface vlan name {config.parent}, example formatting is eth0.10"
        )
    base, vid = parse_vlan(config.parent)
    return ensure_parent(base, vid)


def remove_parent(name: str) -> None:
    """Delete a parent ketch created; only a VLAN sub-interface or a dummy, never any other kind of link (a
    host's NIC). Tolerates a missing one."""
    with _ipr() as ipr:
        index = _lookup(ipr, name)
        if index is None:
            return
        kind = _kind(ipr, index)
        if kind not in ("vlan", "dummy"):
            raise Conflict(
                f"interface {name} is a {kind or 'physical'} link, not a parent ketch created: left alone"
            )
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise _fail(f"failed to delete {name} link", exc) from None


# ---- container side -------------------------------------------------------------------------------------


def _register_ipvlan_flags() -> None:
    """pyroute2 (0.9) knows IFLA_IPVLAN_MODE only; a superset with IFLA_IPVLAN_FLAGS (kernel 4.15) replaces
    its ipvlan kind (same attribute numbers). Done before each use: a later plugin reload would undo it."""
    from pyroute2.netlink import nla
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    class ipvlan(nla):  # type: ignore[misc]  # pyroute2 is untyped
        prefix = "IFLA_"
        nla_map = (
            ("IFLA_IPVLAN_UNSPEC", "none"),
            ("IFLA_IPVLAN_MODE", "uint16"),
            ("IFLA_IPVLAN_FLAGS", "uint16"),
        )

    ifinfmsg.ifinfo.register_link_kind(module={"ipvlan": ipvlan})


def link_request(
    *, driver: str, parent_index: int, mode: str, flag: str, ifname: str, mac: str | None, mtu: int | None
) -> dict[str, object]:
    """The keywords of pyroute2's ``link("add", ...)`` for a container's sub-interface (without the namespace)."""
    spec: dict[str, object] = {"ifname": ifname, "kind": driver, "link": parent_index}
    if driver == "macvlan":
        spec["macvlan_mode"] = MACVLAN_MODES[mode]
        if mac:
            spec["address"] = mac.lower()
    else:
        if mac:
            raise InvalidArgument("ipvlan interfaces do not support custom mac address assignment")
        spec["ipvlan_mode"] = IPVLAN_MODES[mode]
        spec["ipvlan_flags"] = IPVLAN_FLAGS[flag or "bridge"]
    if mtu:
        spec["mtu"] = mtu
    return spec


def attach(
    netns_path: str,
    *,
    driver: str,
    parent: str,
    mode: str,
    flag: str = "",
    ifname: str,
    addresses: Sequence[str],
    gateways: Sequence[str] = (),
    default_route: bool = False,
    mac: str | None = None,
    mtu: int | None = None,
) -> None:
    """Give the namespace at ``netns_path`` an interface ``ifname`` on the host link ``parent``: created in the
    namespace, ``mac`` (macvlan only: ipvlan ports share the parent's), ``addresses`` in CIDR notation, up,
    ``lo`` up. Routes: macvlan and ipvlan l2 take default routes via ``gateways`` (give them for the container's
    first non-internal network only, as for bridges); ipvlan l3/l3s have no next hop, so ``default_route``
    there routes each address family of ``addresses`` through the interface (Docker does so unless internal),
    and ``gateways`` are not used."""
    if driver not in DRIVERS:
        raise InvalidArgument(f"network driver {driver!r} is not macvlan or ipvlan")
    if (mode not in (MACVLAN_MODES if driver == "macvlan" else IPVLAN_MODES)) or (
        driver == "ipvlan" and (flag or "bridge") not in IPVLAN_FLAGS
    ):
        raise InvalidArgument(f"unsupported {driver} mode {mode!r} (flag {flag!r})")
    if driver == "ipvlan":
        _register_ipvlan_flags()
    with _ipr() as ipr:
        parent_index = _lookup(ipr, parent)
        if parent_index is None:
            raise SystemFailure(f"the requested parent interface {parent} was not found on the Docker host")
        spec = link_request(driver=driver, parent_index=parent_index, mode=mode, flag=flag, ifname=ifname,
                            mac=mac, mtu=mtu)  # fmt: skip
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SystemFailure.from_oserror(f"open network namespace {netns_path}", exc) from None
        try:
            ipr.link("add", net_ns_fd=fd, **spec)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise Conflict(f"failed to create the {driver} port: interface {ifname} already exists in "
                               f"{netns_path}") from None  # fmt: skip
            raise _fail(f"failed to create the {driver} port", exc, driver) from None
        finally:
            os.close(fd)
    device_routes = driver == "ipvlan" and mode != "l2"
    routes = _device_families(addresses) if device_routes and default_route else []
    via = [] if device_routes else list(gateways)

    def configure(ns: IPRoute) -> None:
        index = _lookup(ns, ifname)
        if index is None:
            raise SystemFailure(f"{ifname} is missing in {netns_path} right after it was created")
        try:
            for cidr in addresses:
                iface = ipaddress.ip_interface(cidr)
                ns.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            ns.link("set", index=index, state="up")
            lo = _lookup(ns, "lo")
            if lo is not None:
                ns.link("set", index=lo, state="up")
            for family in routes:
                extra = {"scope": RT_SCOPE_LINK} if family == 2 else {}
                ns.route("add", dst="default", oif=index, family=family, **extra)
            for gateway in via:
                family = 10 if ipaddress.ip_address(gateway).version == 6 else 2
                ns.route("add", dst="default", gateway=gateway, family=family)
        except BaseException:
            with contextlib.suppress(NetlinkError):
                ns.link("del", index=index)
            raise

    try:
        in_netns(netns_path, configure)
    except NetlinkError as exc:
        raise _fail(f"configure {ifname} in {netns_path}", exc) from None


def _device_families(addresses: Sequence[str]) -> list[int]:
    versions = {ipaddress.ip_interface(cidr).version for cidr in addresses}
    return [f for v, f in ((4, 2), (6, 10)) if v in versions]


def detach(netns_path: str, ifname: str) -> None:
    """Remove the container's ``ifname`` (its sub-interface); tolerates a gone namespace or interface."""
    if not os.path.exists(netns_path):
        return

    def remove(ns: IPRoute) -> None:
        index = _lookup(ns, ifname)
        if index is not None:
            try:
                ns.link("del", index=index)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise _fail(f"remove {ifname} from {netns_path}", exc) from None

    in_netns(netns_path, remove)

"""IP address management with Docker's behaviour, as data: subnets per network, gateways, container addresses.

Subnets. A network asks for explicit subnets (``--subnet``/``--ip-range``/``--gateway``/``--aux-address``, the
Engine API's ``IPAM.Config``) or, for IPv4 without one, gets the first subnet of the default address pools that
overlaps neither another network's subnet nor a prefix routed on the host (the caller passes the host's routes;
this module does no I/O). The default pools are moby's: 172.17.0.0/16 ... 172.31.0.0/16 (one /16 each), then
192.168.0.0/16 in /20s. There is no default IPv6 pool: ``--ipv6`` needs an IPv6 ``--subnet``.

Addresses. IPv4 subnets keep their network and broadcast addresses (except /31 and /32), IPv6 subnets their
first (subnet-router anycast) address. The gateway is the first free address (of the ip-range when there is
one) unless given. Containers get addresses serially, as libnetwork does for bridge networks: the search starts
after the last address handed out and wraps, so a released address is not reused at once. ``--ip`` takes a
given address anywhere in the subnet.

State. :class:`IPAMState` is plain dataclasses with ``to_json``/``from_json``. :class:`Allocator` changes a copy
and hands its JSON to the ``store`` callback before adopting it, so a failed write leaves the old state in place
and what was persisted is always what is in use.

Messages follow Docker: request validation as in Docker 28 (``invalid network config:\\n* invalid subnet ...``),
allocation as in Docker 20.10's libnetwork (``Pool overlaps with other one on this address space``,
``Address already in use``, ``no available IPv4 addresses on this network's address pools: NAME (ID)``).
"""

from __future__ import annotations

import copy
import ipaddress
import json
from dataclasses import dataclass, field

from ketch.common.errors import Conflict, Forbidden, InvalidArgument, NotFound, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from typing import Any

    Net = ipaddress.IPv4Network | ipaddress.IPv6Network
    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = [
    "DEFAULT_ADDRESS_POOLS",
    "Allocation",
    "Allocator",
    "IPAMState",
    "NetworkAllocation",
    "Pool",
    "PoolRequest",
    "default_subnets",
]

# daemon.json's "default-address-pools" form: (base, size of each subnet).
DEFAULT_ADDRESS_POOLS: tuple[tuple[str, int], ...] = (
    *((f"172.{n}.0.0/16", 16) for n in range(17, 32)),
    ("192.168.0.0/16", 20),
)

GATEWAY_OWNER = "gateway"
AUX_OWNER_PREFIX = "aux:"


def default_subnets(pools: Sequence[tuple[str, int]] = DEFAULT_ADDRESS_POOLS) -> Iterator[Net]:
    """The candidate subnets of ``pools`` in order: each base split into subnets of its size."""
    for base, size in pools:
        try:
            net = ipaddress.ip_network(base)
        except ValueError:
            raise InvalidArgument(f"invalid base pool {base!r}: not a network in CIDR notation") from None
        if not net.prefixlen <= size <= net.max_prefixlen:
            raise InvalidArgument(f"invalid pools size: {size} (base pool {base})")
        yield from net.subnets(new_prefix=size)


def _family_name(version: int) -> str:
    return "IPv6" if version == 6 else "IPv4"


def _parse_prefix(text: str) -> Net | None:
    """``netip.ParsePrefix``: an address and a prefix length, host bits allowed (checked separately)."""
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolRequest:
    """One entry of ``IPAM.Config``: what ``--subnet``, ``--ip-range``, ``--gateway``, ``--aux-address`` ask."""

    subnet: str = ""
    ip_range: str = ""
    gateway: str = ""
    aux_addresses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_engine(cls, config: Mapping[str, Any]) -> PoolRequest:
        aux = config.get("AuxiliaryAddresses") or config.get("AuxAddress") or {}
        if not isinstance(aux, dict):
            raise InvalidArgument("IPAM.Config: AuxiliaryAddresses must be an object of name: address")
        return cls(
            subnet=str(config.get("Subnet") or ""),
            ip_range=str(config.get("IPRange") or ""),
            gateway=str(config.get("Gateway") or ""),
            aux_addresses={str(k): str(v) for k, v in aux.items()},
        )


def _validate_address(address: str, subnet: Net) -> str:
    """Why ``address`` cannot belong to ``subnet``, or "" when it can."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return "invalid address"
    if addr.version != subnet.version:
        return f"parent subnet is an {_family_name(subnet.version)} block"
    if addr not in subnet:
        return f"parent subnet {subnet} doesn't contain this address"
    return ""


def _validate_request(req: PoolRequest, ipv6: bool) -> list[str]:
    """Docker 28's ``ValidateIPAM`` for one entry: every problem, not just the first."""
    subnet = _parse_prefix(req.subnet)
    if subnet is None:
        return [f"invalid subnet {req.subnet}: invalid CIDR block notation"]
    errs = []
    if subnet.version == 6 and not ipv6:
        return [f"invalid subnet {req.subnet}: IPv6 subnets need IPv6 enabled on the network (--ipv6)"]
    given = req.subnet.split("/")[0]
    if ipaddress.ip_address(given) != subnet.network_address:
        errs.append(f"invalid subnet {req.subnet}: it should be {subnet}")
    if req.ip_range:
        rng = _parse_prefix(req.ip_range)
        if rng is None:
            errs.append(f"invalid ip-range {req.ip_range}: invalid CIDR block notation")
        elif rng.version != subnet.version:
            errs.append(
                f"invalid ip-range {req.ip_range}: parent subnet is an {_family_name(subnet.version)} block"
            )
        else:
            if rng.prefixlen < subnet.prefixlen:
                errs.append(
                    f"invalid ip-range {req.ip_range}: CIDR block is bigger than its parent subnet {subnet}"
                )
            if ipaddress.ip_address(req.ip_range.split("/")[0]) != rng.network_address:
                errs.append(f"invalid ip-range {req.ip_range}: it should be {rng}")
            if not subnet.overlaps(rng):
                errs.append(
                    f"invalid ip-range {req.ip_range}: parent subnet {subnet} doesn't contain ip-range"
                )
    if req.gateway and (why := _validate_address(req.gateway, subnet)):
        errs.append(f"invalid gateway {req.gateway}: {why}")
    for name, aux in sorted(req.aux_addresses.items()):
        if why := _validate_address(aux, subnet):
            errs.append(f"invalid auxiliary address {name}: {why}")
    return errs


@dataclass(slots=True, kw_only=True)
class Pool:
    """One subnet of a network and the addresses taken in it (address -> owner)."""

    subnet: str
    gateway: str = ""
    ip_range: str = ""
    user_defined: bool = False  # the subnet was asked for, not picked from the default pools
    aux_addresses: dict[str, str] = field(default_factory=dict)
    allocated: dict[str, str] = field(default_factory=dict)
    last: str = ""  # the last address handed out by a dynamic request: serial allocation resumes after it

    @property
    def network(self) -> Net:
        return ipaddress.ip_network(self.subnet)

    @property
    def version(self) -> int:
        return self.network.version

    def reserved(self) -> set[int]:
        """Addresses no one may take: IPv4 network and broadcast (not on /31, /32), IPv6 subnet-router anycast."""
        net = self.network
        host_bits = net.max_prefixlen - net.prefixlen
        out = set()
        if net.version == 6 or host_bits > 1:
            out.add(int(net.network_address))
        if net.version == 4 and host_bits > 1:
            out.add(int(net.broadcast_address))
        return out

    def taken(self) -> set[int]:
        return self.reserved() | {int(ipaddress.ip_address(a)) for a in self.allocated}

    def take(self, owner: str, address: str = "") -> str:
        """Take ``address`` (which must be free) or the next free one; raises Forbidden or Unavailable."""
        net = self.network
        taken = self.taken()
        if address:
            addr = ipaddress.ip_address(address)
            if addr not in net:
                raise InvalidArgument("requested address is out of range")
            if int(addr) in taken:
                raise Forbidden("Address already in use")
            self.allocated[str(addr)] = owner
            return str(addr)
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if self.ip_range:
            rng = ipaddress.ip_network(self.ip_range)
            lo, hi = max(lo, int(rng.network_address)), min(hi, int(rng.broadcast_address))
        cursor = int(ipaddress.ip_address(self.last)) + 1 if self.last else lo
        first = cursor if lo < cursor <= hi else lo
        found = _first_free(first, hi, taken)
        if found is None and first > lo:
            found = _first_free(lo, first - 1, taken)
        if found is None:
            raise Unavailable("no available addresses on this pool")
        text = str(ipaddress.ip_address(found))
        self.allocated[text] = owner
        self.last = text
        return text

    def to_engine(self) -> dict[str, Any]:
        """The entry of ``IPAM.Config`` that network inspect shows."""
        out: dict[str, Any] = {"Subnet": self.subnet}
        if self.ip_range:
            out["IPRange"] = self.ip_range
        if self.gateway:
            out["Gateway"] = self.gateway
        if self.aux_addresses:
            out["AuxiliaryAddresses"] = dict(self.aux_addresses)
        return out


def _first_free(lo: int, hi: int, taken: set[int]) -> int | None:
    # At most len(taken) + 1 steps, so a /64 costs no more than a /24.
    n = lo
    while n <= hi:
        if n not in taken:
            return n
        n += 1
    return None


@dataclass(slots=True, kw_only=True)
class NetworkAllocation:
    network_id: str
    name: str
    pools: list[Pool] = field(default_factory=list)

    def pools_of(self, version: int) -> list[Pool]:
        return [p for p in self.pools if p.version == version]

    def owner_addresses(self, owner: str) -> list[str]:
        return [a for p in self.pools for a, o in p.allocated.items() if o == owner]


@dataclass(frozen=True, slots=True)
class Allocation:
    """An address handed to an endpoint, with what the interface needs to be configured."""

    address: str
    prefix_len: int
    gateway: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix_len}"


@dataclass(slots=True)
class IPAMState:
    """Everything allocated, by network id; JSON round-trips exactly."""

    networks: dict[str, NetworkAllocation] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "networks": {
                nid: {
                    "name": n.name,
                    "pools": [
                        {
                            "subnet": p.subnet,
                            "gateway": p.gateway,
                            "ip_range": p.ip_range,
                            "user_defined": p.user_defined,
                            "aux_addresses": dict(p.aux_addresses),
                            "allocated": dict(p.allocated),
                            "last": p.last,
                        }
                        for p in n.pools
                    ],
                }
                for nid, n in self.networks.items()
            }
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IPAMState:
        try:
            networks = {
                str(nid): NetworkAllocation(
                    network_id=str(nid),
                    name=str(n["name"]),
                    pools=[
                        Pool(
                            subnet=str(ipaddress.ip_network(p["subnet"])),
                            gateway=str(p.get("gateway", "")),
                            ip_range=str(p.get("ip_range", "")),
                            user_defined=bool(p.get("user_defined", False)),
                            aux_addresses={str(k): str(v) for k, v in p.get("aux_addresses", {}).items()},
                            allocated={str(k): str(v) for k, v in p.get("allocated", {}).items()},
                            last=str(p.get("last", "")),
                        )
                        for p in n["pools"]
                    ],
                )
                for nid, n in data.get("networks", {}).items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidArgument(f"IPAM state: malformed: {exc!r}") from None
        return cls(networks=networks)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IPAMState:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(f"IPAM state: not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidArgument("IPAM state: expected a JSON object")
        return cls.from_dict(data)


class Allocator:
    """Docker's default IPAM over an :class:`IPAMState`; every change goes through ``store`` first."""

    def __init__(
        self,
        state: IPAMState | None = None,
        *,
        default_pools: Sequence[tuple[str, int]] = DEFAULT_ADDRESS_POOLS,
        store: Callable[[str], None] | None = None,
    ) -> None:
        self._state = state if state is not None else IPAMState()
        self._default_pools = tuple(default_pools)
        list(default_subnets(self._default_pools))  # validate now, not at the first network
        self._store = store

    @property
    def state(self) -> IPAMState:
        return self._state

    def network(self, network_id: str) -> NetworkAllocation:
        try:
            return self._state.networks[network_id]
        except KeyError:
            raise NotFound(f"network {network_id} has no address allocations") from None

    def _commit(self, new: IPAMState) -> None:
        if self._store is not None:
            self._store(new.to_json())
        self._state = new

    def _used_subnets(self) -> list[Net]:
        return [p.network for n in self._state.networks.values() for p in n.pools]

    # -- networks --------------------------------------------------------------------------------------------

    def add_network(
        self,
        network_id: str,
        name: str,
        requests: Sequence[PoolRequest] = (),
        *,
        ipv6: bool = False,
        host_routes: Iterable[str] = (),
    ) -> NetworkAllocation:
        """Give a new network its subnets and gateways.

        ``requests`` are the ``IPAM.Config`` entries (empty: one IPv4 subnet from the default pools).
        ``host_routes`` are prefixes routed on the host (``ip route`` destinations, nameservers as /32);
        default pools skip subnets overlapping them, explicit subnets are the user's choice.
        """
        if network_id in self._state.networks:
            raise Conflict(f"network {network_id} already has address allocations")
        requests = [r for r in requests if r != PoolRequest()]
        errs = [e for r in requests for e in _validate_request(r, ipv6)]
        if errs:
            raise InvalidArgument(
                "invalid network config:\n* " + "\n* ".join(e.replace("\n", "\n\t") for e in errs)
            )

        new = copy.deepcopy(self._state)
        used = self._used_subnets()
        alloc = NetworkAllocation(network_id=network_id, name=name)
        for req in requests:
            subnet = ipaddress.ip_network(req.subnet, strict=False)
            if any(u.version == subnet.version and subnet.overlaps(u) for u in used):
                raise Forbidden("Pool overlaps with other one on this address space")
            ip_range = ""
            if req.ip_range:
                rng = ipaddress.ip_network(req.ip_range)
                ip_range = "" if rng == subnet else str(rng)
            pool = Pool(subnet=str(subnet), ip_range=ip_range, user_defined=True)
            alloc.pools.append(pool)
            used.append(subnet)
            self._reserve_gateway_and_aux(pool, req)

        versions = {p.version for p in alloc.pools}
        if 4 not in versions:
            pool = Pool(subnet=str(self._pick_default(4, used, host_routes)))
            alloc.pools.insert(0, pool)
            self._reserve_gateway_and_aux(pool, PoolRequest())
        if ipv6 and 6 not in versions:
            self._pick_default(6, used, host_routes)  # raises: there are no default IPv6 pools

        new.networks[network_id] = alloc
        self._commit(new)
        return alloc

    def _pick_default(self, version: int, used: Sequence[Net], host_routes: Iterable[str]) -> Net:
        avoid = list(used)
        for route in host_routes:
            try:
                net = ipaddress.ip_network(route, strict=False)
            except ValueError:
                raise InvalidArgument(f"host route {route!r}: not a prefix") from None
            if net.prefixlen > 0:  # a default route overlaps everything and says nothing
                avoid.append(net)
        for candidate in default_subnets(self._default_pools):
            if candidate.version != version:
                continue
            if not any(candidate.version == a.version and candidate.overlaps(a) for a in avoid):
                return candidate
        raise Unavailable(
            f"could not find an available, non-overlapping IPv{version} address pool among the defaults to "
            "assign to the network"
        )

    @staticmethod
    def _reserve_gateway_and_aux(pool: Pool, req: PoolRequest) -> None:
        # libnetwork's order: the gateway first (first free address unless given), then auxiliary addresses.
        try:
            pool.gateway = pool.take(GATEWAY_OWNER, req.gateway)
        except (Forbidden, Unavailable, InvalidArgument) as exc:
            raise Forbidden(f"failed to allocate gateway ({req.gateway or pool.subnet}): {exc}") from None
        for name, address in sorted(req.aux_addresses.items()):
            try:
                pool.take(AUX_OWNER_PREFIX + name, address)
            except (Forbidden, InvalidArgument) as exc:
                raise Forbidden(
                    f"failed to allocate secondary ip address ({name}:{address}): {exc}"
                ) from None
            pool.aux_addresses[name] = str(ipaddress.ip_address(address))

    def remove_network(self, network_id: str) -> None:
        """Release a network's subnets; its endpoints' addresses go with them. Unknown ids are ignored."""
        if network_id not in self._state.networks:
            return
        new = copy.deepcopy(self._state)
        del new.networks[network_id]
        self._commit(new)

    # -- endpoint addresses ----------------------------------------------------------------------------------

    def allocate(self, network_id: str, owner: str, *, version: int = 4, address: str = "") -> Allocation:
        """An address on the network for ``owner`` (an endpoint or container id).

        ``address`` requests a static one (``--ip``/``--ip6``): allowed only on networks whose subnets were
        configured by the user, anywhere in one of its subnets of that family.
        """
        net = self.network(network_id)
        if address:
            try:
                addr = ipaddress.ip_address(address)
            except ValueError:
                raise InvalidArgument(f"invalid IPv{version} address: {address}") from None
            version = addr.version
        if address:
            matching = [i for i, p in enumerate(net.pools) if p.version == version and addr in p.network]
            if not matching:
                raise InvalidArgument(
                    f"invalid address {address}: It does not belong to any of this network's subnets"
                )
            if not any(p.user_defined for p in net.pools_of(version)):
                raise Forbidden(
                    "user specified IP address is supported only when connecting to networks with "
                    "user configured subnets"
                )
            new = copy.deepcopy(self._state)
            pool = new.networks[network_id].pools[matching[0]]
            taken = pool.take(owner, str(addr))
            self._commit(new)
            return Allocation(taken, pool.network.prefixlen, pool.gateway)
        new = copy.deepcopy(self._state)
        for pool in new.networks[network_id].pools_of(version):
            try:
                taken = pool.take(owner)
            except Unavailable:
                continue
            self._commit(new)
            return Allocation(taken, pool.network.prefixlen, pool.gateway)
        raise Unavailable(
            f"no available {_family_name(version)} addresses on this network's address pools: "
            f"{net.name} ({network_id})"
        )

    def release(self, network_id: str, address: str) -> bool:
        """Give an endpoint address back; False when it was not allocated (already released)."""
        net = self._state.networks.get(network_id)
        if net is None:
            return False
        try:
            text = str(ipaddress.ip_address(address.split("/")[0]))
        except ValueError:
            raise InvalidArgument(f"invalid address: {address}") from None
        for i, pool in enumerate(net.pools):
            owner = pool.allocated.get(text)
            if owner is None:
                continue
            if owner == GATEWAY_OWNER or owner.startswith(AUX_OWNER_PREFIX):
                raise Forbidden(f"address {text} is the network's {owner}, not an endpoint's")
            new = copy.deepcopy(self._state)
            del new.networks[network_id].pools[i].allocated[text]
            self._commit(new)
            return True
        return False

    def release_owner(self, owner: str, network_id: str | None = None) -> list[str]:
        """Release every address ``owner`` holds (on one network, or all): cleanup after a crash."""
        if owner == GATEWAY_OWNER or owner.startswith(AUX_OWNER_PREFIX):
            raise InvalidArgument(f"owner {owner!r} names network addresses, not an endpoint")
        new = copy.deepcopy(self._state)
        released = []
        for nid, net in new.networks.items():
            if network_id is not None and nid != network_id:
                continue
            for pool in net.pools:
                for addr in [a for a, o in pool.allocated.items() if o == owner]:
                    del pool.allocated[addr]
                    released.append(addr)
        if released:
            self._commit(new)
        return released

    def owners(self) -> set[str]:
        """Every endpoint owner holding an address (to compare with the endpoints that exist)."""
        return {
            o
            for n in self._state.networks.values()
            for p in n.pools
            for o in p.allocated.values()
            if o != GATEWAY_OWNER and not o.startswith(AUX_OWNER_PREFIX)
        }

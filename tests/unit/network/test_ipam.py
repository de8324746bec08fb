"""Docker's default IPAM: pool choice, validation wording, gateways, serial allocation, release, persistence."""

import ipaddress
import json

import pytest

from ketch.common.errors import Conflict, Forbidden, InvalidArgument, NotFound, Unavailable
from ketch.network.ipam import (
    DEFAULT_ADDRESS_POOLS,
    Allocation,
    Allocator,
    IPAMState,
    PoolRequest,
    default_subnets,
)


def subnets_of(alloc, nid):
    return [p.subnet for p in alloc.network(nid).pools]


# -- default pools ------------------------------------------------------------------------------------------


def test_default_pools_are_mobys():
    nets = [str(n) for n in default_subnets()]
    assert nets[:15] == [f"172.{n}.0.0/16" for n in range(17, 32)]
    assert nets[15:] == [f"192.168.{16 * i}.0/20" for i in range(16)]
    assert len(nets) == 31
    assert DEFAULT_ADDRESS_POOLS[0] == ("172.17.0.0/16", 16)


def test_default_pools_validated():
    with pytest.raises(InvalidArgument, match="invalid pools size: 8"):
        Allocator(default_pools=[("10.0.0.0/16", 8)])
    with pytest.raises(InvalidArgument, match="invalid base pool"):
        Allocator(default_pools=[("10.0.0.0/33", 24)])


def test_networks_take_pools_in_order():
    a = Allocator()
    assert subnets_of(a, a.add_network("n0", "bridge").network_id) == ["172.17.0.0/16"]
    a.add_network("n1", "one")
    a.add_network("n2", "two")
    assert subnets_of(a, "n1") == ["172.18.0.0/16"]
    assert subnets_of(a, "n2") == ["172.19.0.0/16"]
    # A released subnet is the first free one again.
    a.remove_network("n1")
    a.add_network("n3", "three")
    assert subnets_of(a, "n3") == ["172.18.0.0/16"]


def test_pool_choice_avoids_host_routes_and_explicit_subnets():
    a = Allocator()
    # 172.17/16 is routed on the host (e.g. dockerd's docker0), 172.18.5.0/24 too (a VPN), and a user
    # network already took 172.19.0.0/24: the first subnet overlapping none of them is 172.20.0.0/16.
    a.add_network("u", "user", [PoolRequest(subnet="172.19.0.0/24")])
    alloc = a.add_network("n", "net", host_routes=["0.0.0.0/0", "172.17.0.0/16", "172.18.5.0/24", "fd00::/8"])
    assert [p.subnet for p in alloc.pools] == ["172.20.0.0/16"]
    # A host route covering a whole range of pools skips all of them.
    b = Allocator()
    alloc = b.add_network("n", "net", host_routes=["172.16.0.0/12"])
    assert [p.subnet for p in alloc.pools] == ["192.168.0.0/20"]
    c = Allocator()
    alloc = c.add_network("n", "net", host_routes=["172.16.0.0/12", "192.168.0.0/19"])
    assert [p.subnet for p in alloc.pools] == ["192.168.32.0/20"]


def test_pools_exhausted():
    a = Allocator(default_pools=[("10.9.0.0/23", 24)])
    a.add_network("a", "a")
    a.add_network("b", "b")
    with pytest.raises(Unavailable) as info:
        a.add_network("c", "c")
    assert str(info.value) == (
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
    )
    assert "c" not in a.state.networks


def test_ipv6_needs_a_subnet():
    a = Allocator()
    with pytest.raises(Unavailable, match="non-overlapping IPv6 address pool"):
        a.add_network("n", "v6", ipv6=True)
    assert a.state.networks == {}


# -- explicit subnets ---------------------------------------------------------------------------------------


def test_explicit_subnet_gateway_and_range():
    a = Allocator()
    alloc = a.add_network(
        "n", "net", [PoolRequest(subnet="10.10.0.0/16", ip_range="10.10.5.0/24", gateway="10.10.0.254")]
    )
    (pool,) = alloc.pools
    assert (pool.subnet, pool.gateway, pool.ip_range, pool.user_defined) == (
        "10.10.0.0/16",
        "10.10.0.254",
        "10.10.5.0/24",
        True,
    )
    assert pool.to_engine() == {"Subnet": "10.10.0.0/16", "IPRange": "10.10.5.0/24", "Gateway": "10.10.0.254"}
    # Dynamic addresses come from the range; its first address is a host address in a /16.
    assert a.allocate("n", "c1") == Allocation("10.10.5.0", 16, "10.10.0.254")
    assert a.allocate("n", "c2").address == "10.10.5.1"


def test_gateway_defaults_to_first_address_of_range():
    a = Allocator()
    alloc = a.add_network("n", "net", [PoolRequest(subnet="10.10.0.0/16", ip_range="10.10.5.128/25")])
    assert alloc.pools[0].gateway == "10.10.5.128"
    assert a.allocate("n", "c1").address == "10.10.5.129"


def test_ip_range_equal_to_subnet_is_no_range():
    a = Allocator()
    alloc = a.add_network("n", "net", [PoolRequest(subnet="10.1.0.0/24", ip_range="10.1.0.0/24")])
    assert alloc.pools[0].ip_range == ""
    assert alloc.pools[0].to_engine() == {"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.1"}


def test_overlap_with_other_network():
    a = Allocator()
    a.add_network("n1", "one", [PoolRequest(subnet="10.1.0.0/16")])
    for subnet in ("10.1.0.0/16", "10.1.2.0/24", "10.0.0.0/8"):
        with pytest.raises(Forbidden) as info:
            a.add_network("n2", "two", [PoolRequest(subnet=subnet)])
        assert str(info.value) == "Pool overlaps with other one on this address space"
    # Default pools are used subnets too.
    a.add_network("d", "default")
    with pytest.raises(Forbidden, match="Pool overlaps"):
        a.add_network("n3", "three", [PoolRequest(subnet="172.17.128.0/17")])
    # Two overlapping subnets in one request.
    with pytest.raises(Forbidden, match="Pool overlaps"):
        a.add_network("n4", "four", [PoolRequest(subnet="10.5.0.0/16"), PoolRequest(subnet="10.5.1.0/24")])
    assert set(a.state.networks) == {"n1", "d"}


def test_explicit_subnet_ignores_host_routes():
    a = Allocator()
    alloc = a.add_network("n", "net", [PoolRequest(subnet="10.0.0.0/24")], host_routes=["10.0.0.0/8"])
    assert alloc.pools[0].subnet == "10.0.0.0/24"


@pytest.mark.parametrize(
    ("request_", "errors"),
    [
        (PoolRequest(subnet="10.0.0.0"), ["invalid subnet 10.0.0.0: invalid CIDR block notation"]),
        (PoolRequest(subnet="bogus/8"), ["invalid subnet bogus/8: invalid CIDR block notation"]),
        (PoolRequest(subnet="10.0.0.0/33"), ["invalid subnet 10.0.0.0/33: invalid CIDR block notation"]),
        (PoolRequest(gateway="10.0.0.1"), ["invalid subnet : invalid CIDR block notation"]),
        (PoolRequest(subnet="10.0.0.1/24"), ["invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24"]),
        (
            PoolRequest(subnet="10.0.0.0/24", gateway="10.0.1.1"),
            ["invalid gateway 10.0.1.1: parent subnet 10.0.0.0/24 doesn't contain this address"],
        ),
        (
            PoolRequest(subnet="10.0.0.0/24", gateway="fd00::1"),
            ["invalid gateway fd00::1: parent subnet is an IPv4 block"],
        ),
        (PoolRequest(subnet="10.0.0.0/24", gateway="nope"), ["invalid gateway nope: invalid address"]),
        (
            PoolRequest(subnet="10.0.0.0/24", ip_range="10.0.0.0/16"),
            ["invalid ip-range 10.0.0.0/16: CIDR block is bigger than its parent subnet 10.0.0.0/24"],
        ),
        (
            PoolRequest(subnet="10.0.0.0/24", ip_range="10.0.1.0/25"),
            ["invalid ip-range 10.0.1.0/25: parent subnet 10.0.0.0/24 doesn't contain ip-range"],
        ),
        (
            PoolRequest(subnet="10.0.0.0/24", ip_range="10.0.0.1/25"),
            ["invalid ip-range 10.0.0.1/25: it should be 10.0.0.0/25"],
        ),
        (
            PoolRequest(subnet="10.0.0.0/24", ip_range="x"),
            ["invalid ip-range x: invalid CIDR block notation"],
        ),
        (
            PoolRequest(subnet="10.0.0.0/24", ip_range="fd00::/64"),
            ["invalid ip-range fd00::/64: parent subnet is an IPv4 block"],
        ),
        (
            PoolRequest(subnet="10.0.0.0/24", aux_addresses={"h": "10.0.9.9"}),
            ["invalid auxiliary address h: parent subnet 10.0.0.0/24 doesn't contain this address"],
        ),
        # Every problem is reported, not just the first.
        (
            PoolRequest(subnet="10.0.0.1/24", ip_range="10.1.0.0/24", gateway="10.2.0.1"),
            [
                "invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24",
                "invalid ip-range 10.1.0.0/24: parent subnet 10.0.0.0/24 doesn't contain ip-range",
                "invalid gateway 10.2.0.1: parent subnet 10.0.0.0/24 doesn't contain this address",
            ],
        ),
    ],
)
def test_validation_messages(request_, errors):
    a = Allocator()
    with pytest.raises(InvalidArgument) as info:
        a.add_network("n", "net", [request_])
    assert str(info.value) == "invalid network config:\n* " + "\n* ".join(errors)
    assert a.state.networks == {}


def test_ipv6_subnet_needs_ipv6():
    with pytest.raises(InvalidArgument, match=r"invalid subnet fd00::/64: IPv6 subnets need IPv6 enabled"):
        Allocator().add_network("n", "net", [PoolRequest(subnet="fd00::/64")])


def test_gateway_on_reserved_address():
    a = Allocator()
    with pytest.raises(Forbidden) as info:
        a.add_network("n", "net", [PoolRequest(subnet="10.0.0.0/24", gateway="10.0.0.255")])
    assert str(info.value) == "failed to allocate gateway (10.0.0.255): Address already in use"
    assert a.state.networks == {}


def test_aux_addresses():
    a = Allocator()
    alloc = a.add_network(
        "n", "net", [PoolRequest(subnet="10.0.0.0/29", aux_addresses={"router": "10.0.0.2"})]
    )
    assert alloc.pools[0].aux_addresses == {"router": "10.0.0.2"}
    assert alloc.pools[0].to_engine()["AuxiliaryAddresses"] == {"router": "10.0.0.2"}
    assert [a.allocate("n", f"c{i}").address for i in range(4)] == [
        "10.0.0.3",
        "10.0.0.4",
        "10.0.0.5",
        "10.0.0.6",
    ]
    # libnetwork takes the gateway before auxiliary addresses: an aux address on .1 collides with it.
    with pytest.raises(Forbidden) as info:
        a.add_network("m", "net2", [PoolRequest(subnet="10.1.0.0/24", aux_addresses={"h": "10.1.0.1"})])
    assert str(info.value) == "failed to allocate secondary ip address (h:10.1.0.1): Address already in use"
    with pytest.raises(Forbidden, match="the network's aux:router"):
        a.release("n", "10.0.0.2")


def test_engine_config_entries():
    req = PoolRequest.from_engine(
        {
            "Subnet": "10.0.0.0/24",
            "IPRange": "10.0.0.128/25",
            "Gateway": "10.0.0.1",
            "AuxiliaryAddresses": {"a": "10.0.0.2"},
        }
    )
    assert req == PoolRequest(
        subnet="10.0.0.0/24", ip_range="10.0.0.128/25", gateway="10.0.0.1", aux_addresses={"a": "10.0.0.2"}
    )
    assert PoolRequest.from_engine({}) == PoolRequest()
    # An empty entry (what some clients send) means "a default pool".
    alloc = Allocator().add_network("n", "net", [PoolRequest.from_engine({})])
    assert alloc.pools[0].subnet == "172.17.0.0/16"


# -- addresses ----------------------------------------------------------------------------------------------


def test_gateway_and_serial_allocation():
    a = Allocator()
    a.add_network("n", "net", [PoolRequest(subnet="10.0.0.0/29")])
    assert a.network("n").pools[0].gateway == "10.0.0.1"
    got = [a.allocate("n", f"c{i}") for i in range(5)]
    assert [g.cidr for g in got] == [
        "10.0.0.2/29",
        "10.0.0.3/29",
        "10.0.0.4/29",
        "10.0.0.5/29",
        "10.0.0.6/29",
    ]
    assert {g.gateway for g in got} == {"10.0.0.1"}
    # Network (.0) and broadcast (.7) are never handed out.
    with pytest.raises(Unavailable) as info:
        a.allocate("n", "c5")
    assert str(info.value) == "no available IPv4 addresses on this network's address pools: net (n)"
    # Released addresses come back only after the search wraps around.
    assert a.release("n", "10.0.0.3") is True
    assert a.release("n", "10.0.0.3") is False
    assert a.release("n", "10.0.0.5/29") is True
    assert a.allocate("n", "c6").address == "10.0.0.3"
    assert a.allocate("n", "c7").address == "10.0.0.5"


def test_serial_allocation_does_not_reuse_at_once():
    a = Allocator()
    a.add_network("n", "net", [PoolRequest(subnet="10.0.0.0/24")])
    first = a.allocate("n", "c1").address
    assert first == "10.0.0.2"
    a.release("n", first)
    assert a.allocate("n", "c2").address == "10.0.0.3"


def test_small_subnets():
    a = Allocator()
    a.add_network("p2p", "p2p", [PoolRequest(subnet="10.0.0.0/31")])
    assert a.network("p2p").pools[0].gateway == "10.0.0.0"  # no network/broadcast on a /31
    assert a.allocate("p2p", "c").address == "10.0.0.1"
    a.add_network("one", "one", [PoolRequest(subnet="10.0.1.0/32")])
    with pytest.raises(Unavailable):
        a.allocate("one", "c")


def test_static_addresses():
    a = Allocator()
    a.add_network("n", "net", [PoolRequest(subnet="10.0.0.0/24", ip_range="10.0.0.128/25")])
    # Anywhere in the subnet, even outside the ip-range.
    assert a.allocate("n", "c1", address="10.0.0.50").address == "10.0.0.50"
    with pytest.raises(Forbidden) as info:
        a.allocate("n", "c2", address="10.0.0.50")
    assert str(info.value) == "Address already in use"
    with pytest.raises(Forbidden, match="Address already in use"):
        a.allocate("n", "c2", address="10.0.0.128")  # the gateway
    with pytest.raises(Forbidden, match="Address already in use"):
        a.allocate("n", "c2", address="10.0.0.255")  # broadcast
    with pytest.raises(InvalidArgument) as info2:
        a.allocate("n", "c2", address="10.0.1.5")
    assert str(info2.value) == "invalid address 10.0.1.5: It does not belong to any of this network's subnets"
    with pytest.raises(InvalidArgument, match=r"invalid IPv4 address: 10\.0\.0$"):
        a.allocate("n", "c2", address="10.0.0")
    # Dynamic allocation skips the static one.
    a.add_network("m", "m", [PoolRequest(subnet="10.1.0.0/24")])
    a.allocate("m", "s", address="10.1.0.2")
    assert a.allocate("m", "d").address == "10.1.0.3"


def test_static_address_needs_user_subnet():
    a = Allocator()
    a.add_network("n", "net")
    with pytest.raises(Forbidden) as info:
        a.allocate("n", "c", address="172.17.0.9")
    assert str(info.value) == (
        "user specified IP address is supported only when connecting to networks with user configured subnets"
    )


def test_ipv6_dual_stack():
    a = Allocator()
    alloc = a.add_network("n", "v6", [PoolRequest(subnet="fd00:1::/64")], ipv6=True)
    # IPv4 comes from the default pools alongside the given IPv6 subnet.
    assert [(p.subnet, p.gateway) for p in alloc.pools] == [
        ("172.17.0.0/16", "172.17.0.1"),
        ("fd00:1::/64", "fd00:1::1"),
    ]
    assert a.allocate("n", "c1").cidr == "172.17.0.2/16"
    assert a.allocate("n", "c1", version=6) == Allocation("fd00:1::2", 64, "fd00:1::1")
    assert a.allocate("n", "c2", version=6).address == "fd00:1::3"
    assert a.allocate("n", "c3", address="fd00:1::ffff").address == "fd00:1::ffff"
    with pytest.raises(Forbidden):
        a.allocate("n", "c4", address="fd00:1::")  # subnet-router anycast
    assert sorted(a.network("n").owner_addresses("c1")) == ["172.17.0.2", "fd00:1::2"]


def test_ipv6_last_address_of_64_is_usable_and_search_wraps():
    a = Allocator()
    a.add_network("n", "v6", [PoolRequest(subnet="fd00::/64", ip_range="fd00::fffc/126")], ipv6=True)
    pool = a.network("n").pools[1]
    assert pool.gateway == "fd00::fffc"
    assert [a.allocate("n", str(i), version=6).address for i in range(3)] == [
        "fd00::fffd",
        "fd00::fffe",
        "fd00::ffff",
    ]
    with pytest.raises(
        Unavailable, match="no available IPv6 addresses on this network's address pools: v6 \\(n\\)"
    ):
        a.allocate("n", "x", version=6)


def test_large_ipv6_subnet_is_cheap():
    a = Allocator()
    a.add_network("n", "v6", [PoolRequest(subnet="2001:db8::/48")], ipv6=True)
    got = [a.allocate("n", f"c{i}", version=6).address for i in range(200)]
    assert got[-1] == str(ipaddress.ip_address("2001:db8::2") + 199)


def test_ipv4_only_network_has_no_ipv6():
    a = Allocator()
    a.add_network("n", "net")
    with pytest.raises(Unavailable, match="no available IPv6 addresses"):
        a.allocate("n", "c", version=6)


def test_release_owner_and_owners():
    a = Allocator()
    a.add_network("n1", "one")
    a.add_network("n2", "two")
    a.allocate("n1", "ep1")
    a.allocate("n2", "ep1")
    a.allocate("n2", "ep2")
    assert a.owners() == {"ep1", "ep2"}
    assert a.release_owner("ep1", "n2") == ["172.18.0.2"]
    assert a.release_owner("ep1") == ["172.17.0.2"]
    assert a.release_owner("ep1") == []
    assert a.owners() == {"ep2"}
    with pytest.raises(InvalidArgument):
        a.release_owner("gateway")


def test_unknown_network_and_duplicates():
    a = Allocator()
    with pytest.raises(NotFound):
        a.allocate("nope", "c")
    assert a.release("nope", "10.0.0.1") is False
    a.remove_network("nope")  # ignored
    a.add_network("n", "net")
    with pytest.raises(Conflict):
        a.add_network("n", "again")
    with pytest.raises(Forbidden, match="gateway"):
        a.release("n", "172.17.0.1")


# -- persistence --------------------------------------------------------------------------------------------


def test_state_round_trip_survives_restart():
    writes = []
    a = Allocator(store=writes.append)
    a.add_network(
        "n", "net", [PoolRequest(subnet="10.0.0.0/24", gateway="10.0.0.254", aux_addresses={"r": "10.0.0.9"})]
    )
    a.add_network("v6", "v6", [PoolRequest(subnet="fd00::/64")], ipv6=True)
    a.allocate("n", "c1")
    a.allocate("n", "c2")
    a.release("n", "10.0.0.1")
    assert len(writes) == 5
    assert json.loads(writes[-1]) == a.state.to_dict()

    # "Restart": a new allocator from the last persisted JSON carries on where the old one stopped.
    b = Allocator(IPAMState.from_json(writes[-1]))
    assert b.state == a.state
    assert b.allocate("n", "c3").address == "10.0.0.3"
    assert a.allocate("n", "c3").address == "10.0.0.3"
    assert IPAMState.from_json(b.state.to_json()) == b.state


def test_failed_store_keeps_old_state():
    def broken(_text):
        raise OSError("disk full")

    a = Allocator()
    a.add_network("n", "net")
    before = a.state.to_json()
    a._store = broken  # the next write fails
    with pytest.raises(OSError):
        a.allocate("n", "c1")
    assert a.state.to_json() == before
    with pytest.raises(OSError):
        a.add_network("m", "m")
    assert a.state.to_json() == before


def test_failed_request_writes_nothing():
    writes = []
    a = Allocator(store=writes.append)
    a.add_network("n", "net", [PoolRequest(subnet="10.0.0.0/30")])
    a.allocate("n", "c1")
    count = len(writes)
    with pytest.raises(Unavailable):
        a.allocate("n", "c2")
    with pytest.raises(Forbidden):
        a.add_network("m", "m", [PoolRequest(subnet="10.0.0.0/24")])
    assert len(writes) == count


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{",
        '{"networks": {"n": {"pools": []}}}',
        '{"networks": {"n": {"name": "x", "pools": [{"subnet": "bad"}]}}}',
    ],
)
def test_malformed_state(text):
    with pytest.raises(InvalidArgument, match="IPAM state"):
        IPAMState.from_json(text)

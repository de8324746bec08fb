"""macvlan/ipvlan options as moby checks them, and the netlink requests ketch builds (encoded and decoded
offline with pyroute2's own request path, so no socket and no root)."""

from __future__ import annotations

from typing import Any

import pytest
from pyroute2.iproute.linux import get_arguments_processor
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from ketch.common.errors import Conflict, InvalidArgument
from ketch.network import subif

NID = "3f4c2a1b9d8e" + "0" * 52


def test_macvlan_defaults_and_modes() -> None:
    config = subif.validate("macvlan", {"parent": "eth0"}, network_id=NID)
    assert config == subif.SubifConfig("macvlan", "eth0", "bridge", "", internal=False, dummy=False)
    for mode in ("bridge", "vepa", "passthru", "private"):
        assert (
            subif.validate("macvlan", {"parent": "eth0", "macvlan_mode": mode}, network_id=NID).mode == mode
        )
    # ipvlan's keys mean nothing to macvlan, as in moby
    assert subif.validate("macvlan", {"parent": "eth0", "ipvlan_mode": "x"}, network_id=NID).flag == ""


def test_ipvlan_defaults_modes_and_flags() -> None:
    config = subif.validate("ipvlan", {"parent": "eth0.20"}, network_id=NID, internal=True)
    assert config == subif.SubifConfig("ipvlan", "eth0.20", "l2", "bridge", internal=True, dummy=False)
    for mode in ("l2", "l3", "l3s"):
        for flag in ("bridge", "private", "vepa"):
            got = subif.validate(
                "ipvlan", {"parent": "e", "ipvlan_mode": mode, "ipvlan_flag": flag}, network_id=NID
            )
            assert (got.mode, got.flag) == (mode, flag)


@pytest.mark.parametrize(
    ("driver", "options", "message"),
    [
        ("macvlan", {"macvlan_mode": "l2"},
         "requested macvlan mode 'l2' is not valid, 'bridge' mode is the macvlan driver default"),
        ("ipvlan", {"ipvlan_mode": "bridge"},
         "requested ipvlan mode 'bridge' is not valid, 'l2' mode is the ipvlan driver default"),
        ("ipvlan", {"ipvlan_flag": "passthru"},
         "requested ipvlan flag 'passthru' is not valid, 'bridge' is the ipvlan driver default"),
        ("macvlan", {"parent": "lo"}, "loopback interface is not a valid macvlan parent link"),
        ("ipvlan", {"parent": "lo"}, "loopback interface is not a valid ipvlan parent link"),
        ("macvlan", {"parent": "a-very-long-name0"}, "invalid parent interface name 'a-very-long-name0'"),
        ("overlay", {}, "network driver 'overlay' is not macvlan or ipvlan"),
    ],
)  # fmt: skip
def test_moby_messages(driver: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        subif.validate(driver, options, network_id=NID)
    assert str(info.value) == message


def test_no_parent_is_an_internal_network_on_its_own_dummy() -> None:
    mac = subif.validate("macvlan", {"parent": ""}, network_id=NID)
    assert (mac.parent, mac.internal, mac.dummy) == ("dm-3f4c2a1b9d8e", True, True)
    ip = subif.validate("ipvlan", {}, network_id=NID, internal=False)
    assert (ip.parent, ip.internal, ip.dummy) == ("di-3f4c2a1b9d8e", True, True)
    assert len(ip.parent) == 15  # IFNAMSIZ - 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("eth0.10.3", "required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead received "
                      "eth0.10.3"),
        ("eth0.x1", "unable to parse a valid vlan id from: x1 (ex. eth0.10 for vlan 10)"),
        ("eth0.", "unable to parse a valid vlan id from:  (ex. eth0.10 for vlan 10)"),
        ("eth0.0", "vlan id must be between 1-4094, received: 0"),
        ("eth0.4095", "vlan id must be between 1-4094, received: 4095"),
        ("eth0.-5", "vlan id must be between 1-4094, received: -5"),
    ],
)  # fmt: skip
def test_parse_vlan_errors(name: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        subif.parse_vlan(name)
    assert str(info.value) == message


def test_parse_vlan() -> None:
    assert subif.parse_vlan("eth0.10") == ("eth0", 10)
    assert subif.parse_vlan("enp3s0.4094") == ("enp3s0", 4094)


def test_shared_parents() -> None:
    def mac(parent: str, mode: str = "bridge") -> subif.SubifConfig:
        return subif.validate("macvlan", {"parent": parent, "macvlan_mode": mode}, network_id=NID)

    ipv = subif.validate("ipvlan", {"parent": "eth0"}, network_id=NID)
    subif.check_shared_parent(mac("eth0"), [("aaa", mac("eth0")), ("bbb", mac("eth1", "passthru"))])
    subif.check_shared_parent(mac("eth0"), [("ccc", ipv)])  # other drivers are the kernel's business
    cases = [
        (mac("eth0", "passthru"), ("aaa", mac("eth0")),
         "cannot use mode passthru, macvlan network aaa is already using parent interface eth0"),
        (mac("eth0"), ("aaa", mac("eth0", "passthru")),
         "macvlan network aaa is already using parent interface eth0 in mode passthru"),
        (ipv, ("0123456789abcdef", ipv), "network di-0123456789ab is already using parent interface eth0"),
    ]  # fmt: skip
    for config, other, message in cases:
        with pytest.raises(Conflict) as info:
            subif.check_shared_parent(config, [other])
        assert str(info.value) == message


def _encoded(spec: dict[str, object]) -> Any:
    """The RTM_NEWLINK message pyroute2 would send for ``link("add", **spec)``, as the kernel would read it."""
    request = get_arguments_processor("link", "add", dict(spec))
    msg = ifinfmsg()
    for field in msg.fields:
        msg[field[0]] = request.get_value(field[0], default=0, mode="field")
    for key, value in request.items():
        nla = ifinfmsg.name2nla(key)
        if msg.valid_nla(nla) and value is not None:
            msg["attrs"].append([nla, value])
    msg.encode()
    back = ifinfmsg(msg.data)
    back.decode()
    return back


def _info_data(msg: Any) -> dict[str, object]:
    info = msg.get_attr("IFLA_LINKINFO")
    return {"kind": info.get_attr("IFLA_INFO_KIND"), **dict(info.get_attr("IFLA_INFO_DATA")["attrs"])}


def test_macvlan_request() -> None:
    spec = subif.link_request(driver="macvlan", parent_index=7, mode="vepa", flag="", ifname="eth1",
                              mac="02:42:0A:C5:01:02", mtu=1400)  # fmt: skip
    msg = _encoded(spec)
    assert _info_data(msg) == {"kind": "macvlan", "IFLA_MACVLAN_MODE": "vepa"}
    assert (msg.get_attr("IFLA_IFNAME"), msg.get_attr("IFLA_LINK"), msg.get_attr("IFLA_MTU")) == (
        "eth1",
        7,
        1400,
    )
    assert msg.get_attr("IFLA_ADDRESS") == "02:42:0a:c5:01:02"


@pytest.mark.parametrize(("mode", "flag", "values"), [("l2", "bridge", (0, 0)), ("l3", "private", (1, 1)),
                                                      ("l3s", "vepa", (2, 2)), ("l2", "", (0, 0))])  # fmt: skip
def test_ipvlan_request_carries_mode_and_flags(mode: str, flag: str, values: tuple[int, int]) -> None:
    subif._register_ipvlan_flags()  # pyroute2 alone drops IFLA_IPVLAN_FLAGS
    spec = subif.link_request(driver="ipvlan", parent_index=3, mode=mode, flag=flag, ifname="eth0", mac=None,
                              mtu=None)  # fmt: skip
    msg = _encoded(spec)
    assert _info_data(msg) == {
        "kind": "ipvlan",
        "IFLA_IPVLAN_MODE": values[0],
        "IFLA_IPVLAN_FLAGS": values[1],
    }
    assert msg.get_attr("IFLA_MTU") is None and msg.get_attr("IFLA_ADDRESS") is None


def test_ipvlan_takes_no_mac() -> None:
    with pytest.raises(InvalidArgument) as info:
        subif.link_request(driver="ipvlan", parent_index=3, mode="l2", flag="bridge", ifname="eth0",
                           mac="02:42:0a:00:00:02", mtu=None)  # fmt: skip
    assert str(info.value) == "ipvlan interfaces do not support custom mac address assignment"


def test_attach_checks_before_touching_the_kernel(tmp_path: Any) -> None:
    missing = str(tmp_path / "no-such-netns")
    with pytest.raises(InvalidArgument, match="bridge"):
        subif.attach(missing, driver="bridge", parent="eth0", mode="bridge", ifname="eth0", addresses=[])
    with pytest.raises(InvalidArgument, match="unsupported macvlan mode 'l2'"):
        subif.attach(missing, driver="macvlan", parent="eth0", mode="l2", ifname="eth0", addresses=[])
    with pytest.raises(InvalidArgument, match="unsupported ipvlan mode 'l2' \\(flag 'passthru'\\)"):
        subif.attach(missing, driver="ipvlan", parent="eth0", mode="l2", flag="passthru", ifname="eth0",
                     addresses=[])  # fmt: skip


def test_detach_from_a_gone_namespace(tmp_path: Any) -> None:
    subif.detach(str(tmp_path / "gone"), "eth0")  # nothing to do, no error

"""macvlan and ipvlan against the real kernel: two namespaces of the test's own on a parent link of the test's
own (a ``dummy``, or where the kernel has no dummy interfaces a veth pair) reach each other; a VLAN
sub-interface and a network's dummy parent come and go with ketch; the host's links end as they began.

Nothing here touches a link the test did not create. Kernel features a test needs and this kernel lacks
(ipvlan, 802.1q, dummy) turn into skips that name the missing option."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ketch.common.errors import Conflict, InvalidArgument, SystemFailure, Unsupported
from ketch.network import netns, subif

pytestmark = pytest.mark.root

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def _ip_links() -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True, timeout=10)
    return list(json.loads(out.stdout))


def _in(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command in the namespace: busybox's ping, iproute2's ``ip`` (busybox's has no link details)."""
    prog = [BUSYBOX, *argv] if argv[0] == "ping" else list(argv)
    return subprocess.run(["nsenter", f"--net={ns}", *prog], capture_output=True, text=True, timeout=15)


def _ping(ns: str, ip: str) -> None:
    ping = _in(ns, "ping", "-c1", "-W2", ip)
    assert ping.returncode == 0, f"{ns} -> {ip}: {ping.stdout}{ping.stderr}"


def _delete_link(name: str) -> None:
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            try:
                ipr.link("del", index=index)
            except NetlinkError:
                pass


def _make_parent(tag: str) -> tuple[str, list[str]]:
    """A parent link of the test's own, up: a dummy, or a veth pair where the kernel has no dummy. Returns its
    name and every link made (to delete)."""
    name = f"kd-dummy{tag}"
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="dummy")
            made = [name]
        except NetlinkError as exc:
            if exc.code != 95:  # EOPNOTSUPP: no CONFIG_DUMMY
                raise
            name, peer = f"kd-veth{tag}", f"kd-vpeer{tag}"
            ipr.link("add", ifname=name, kind="veth", peer=peer)
            made = [name, peer]
        for link in made:
            ipr.link("set", index=ipr.link_lookup(ifname=link)[0], state="up")
    return name, made


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[str, list[str], str]]:
    """(parent link, two namespace paths, tag); everything removed afterwards, and the host's links checked."""
    before = _ip_links()
    tag = os.urandom(2).hex()
    parent, made = _make_parent(tag)
    spaces = [netns.create(str(tmp_path / "netns" / name)) for name in ("a", "b")]
    try:
        yield parent, spaces, tag
    finally:
        for path in spaces:
            netns.remove(path)
        for link in made:
            _delete_link(link)
    assert _ip_links() == before
    assert not any(netns.exists(p) for p in spaces)


def _attach_pair(spaces: list[str], parent: str, subnet: int, **kw: object) -> list[str]:
    ips = [f"10.197.{subnet}.{n + 2}" for n in range(len(spaces))]
    for path, ip in zip(spaces, ips, strict=True):
        subif.attach(path, parent=parent, ifname="eth0", addresses=[f"{ip}/24"], **kw)  # type: ignore[arg-type]
    return ips


def _skip_if_missing(exc: Unsupported) -> None:
    pytest.skip(f"kernel lacks it: {exc}")


def test_macvlan_bridge_mode_between_namespaces(host: tuple[str, list[str], str]) -> None:
    parent, spaces, _ = host
    macs = ["02:42:0a:c5:01:02", "02:42:0a:c5:01:03"]
    for path, n, mac in zip(spaces, (2, 3), macs, strict=True):
        subif.attach(path, driver="macvlan", parent=parent, mode="bridge", ifname="eth0",
                     addresses=[f"10.197.1.{n}/24"], gateways=["10.197.1.1"], mac=mac)  # fmt: skip
    _ping(spaces[0], "10.197.1.3")
    _ping(spaces[1], "10.197.1.2")
    link = _in(spaces[1], "ip", "-d", "link", "show", "eth0")
    assert macs[1] in link.stdout and "macvlan" in link.stdout and "mode bridge" in link.stdout, link.stdout
    assert "default via 10.197.1.1 dev eth0" in _in(spaces[0], "ip", "route").stdout
    with pytest.raises(Conflict, match="eth0 already exists"):
        subif.attach(spaces[0], driver="macvlan", parent=parent, mode="bridge", ifname="eth0",
                     addresses=["10.197.1.9/24"])  # fmt: skip
    subif.detach(spaces[0], "eth0")
    assert "eth0" not in _in(spaces[0], "ip", "link").stdout
    subif.detach(spaces[0], "eth0")  # gone already: fine
    ping = _in(spaces[1], "ping", "-c1", "-W1", "10.197.1.2")
    assert ping.returncode != 0


def test_macvlan_private_mode_isolates(host: tuple[str, list[str], str]) -> None:
    parent, spaces, _ = host
    _attach_pair(spaces, parent, 2, driver="macvlan", mode="private")
    assert "mode private" in _in(spaces[0], "ip", "-d", "link", "show", "eth0").stdout
    assert _in(spaces[0], "ping", "-c1", "-W1", "10.197.2.3").returncode != 0


def test_attach_failures_leave_nothing(host: tuple[str, list[str], str]) -> None:
    parent, spaces, tag = host
    with pytest.raises(SystemFailure, match=f"kd-none{tag} was not found"):
        subif.attach(spaces[0], driver="macvlan", parent=f"kd-none{tag}", mode="bridge", ifname="eth0",
                     addresses=["10.197.3.2/24"])  # fmt: skip
    with pytest.raises(SystemFailure):  # a bad address: the interface is taken out again
        subif.attach(spaces[0], driver="macvlan", parent=parent, mode="bridge", ifname="eth0",
                     addresses=["10.197.3.2/24", "10.197.3.2/24"])  # fmt: skip
    assert "eth0" not in _in(spaces[0], "ip", "link").stdout
    with pytest.raises(InvalidArgument, match="do not support custom mac"):
        subif.attach(spaces[0], driver="ipvlan", parent=parent, mode="l2", ifname="eth0",
                     addresses=["10.197.3.2/24"], mac="02:42:0a:c5:03:02")  # fmt: skip


def test_remove_parent_leaves_other_kinds_alone(host: tuple[str, list[str], str]) -> None:
    parent, _, _ = host
    with IPRoute() as ipr:
        kind = (
            ipr.get_links(ipr.link_lookup(ifname=parent)[0])[0]
            .get_attr("IFLA_LINKINFO")
            .get_attr("IFLA_INFO_KIND")
        )
    if kind == "dummy":
        pytest.skip("the test's parent is a dummy, which remove_parent may delete")
    with pytest.raises(Conflict, match="left alone"):
        subif.remove_parent(parent)
    assert parent in {link["ifname"] for link in _ip_links()}
    assert subif.prepare_parent(subif.validate("macvlan", {"parent": parent}, network_id="0" * 64)) is False


def test_macvlan_on_a_vlan_sub_interface(host: tuple[str, list[str], str]) -> None:
    parent, spaces, _ = host
    config = subif.validate("macvlan", {"parent": f"{parent}.10"}, network_id="1" * 64)
    try:
        created = subif.prepare_parent(config)
    except Unsupported as exc:
        _skip_if_missing(exc)
    try:
        assert created is True
        assert subif.ensure_parent(parent, 10) is False  # there already: not ketch's to create again
        links = {str(link["ifname"]): link for link in _ip_links()}
        assert config.parent in links and "UP" in links[config.parent]["flags"]  # type: ignore[operator]
        _attach_pair(spaces, config.parent, 4, driver="macvlan", mode="bridge")
        _ping(spaces[0], "10.197.4.3")
        for path in spaces:
            subif.detach(path, "eth0")
    finally:
        subif.remove_parent(config.parent)
    assert config.parent not in {link["ifname"] for link in _ip_links()}


def test_internal_network_on_its_own_dummy(host: tuple[str, list[str], str]) -> None:
    _, spaces, tag = host
    config = subif.validate("macvlan", {}, network_id=f"beef{tag}" + "0" * 56)
    assert config.internal and config.dummy and config.parent == f"dm-beef{tag}0000"
    try:
        assert subif.prepare_parent(config) is True
    except Unsupported as exc:
        _skip_if_missing(exc)
    try:
        _attach_pair(spaces, config.parent, 5, driver="macvlan", mode="bridge")
        _ping(spaces[1], "10.197.5.2")
        assert "default" not in _in(spaces[0], "ip", "route").stdout
        for path in spaces:
            subif.detach(path, "eth0")
    finally:
        subif.remove_parent(config.parent)


def test_ipvlan_l2_between_namespaces(host: tuple[str, list[str], str]) -> None:
    parent, spaces, _ = host
    try:
        _attach_pair(spaces, parent, 6, driver="ipvlan", mode="l2", flag="bridge", gateways=["10.197.6.1"])
    except Unsupported as exc:
        assert "CONFIG_IPVLAN" in str(exc)
        _skip_if_missing(exc)
    _ping(spaces[0], "10.197.6.3")
    link = _in(spaces[0], "ip", "-d", "link", "show", "eth0").stdout
    assert "ipvlan" in link and "mode l2 bridge" in link, link
    assert "default via 10.197.6.1 dev eth0" in _in(spaces[0], "ip", "route").stdout
    for path in spaces:
        subif.detach(path, "eth0")


def test_ipvlan_l3_routes_through_the_device(host: tuple[str, list[str], str]) -> None:
    parent, spaces, _ = host
    try:
        subif.attach(spaces[0], driver="ipvlan", parent=parent, mode="l3", flag="private", ifname="eth0",
                     addresses=["10.197.7.2/24"], gateways=["10.197.7.1"], default_route=True)  # fmt: skip
    except Unsupported as exc:
        _skip_if_missing(exc)
    subif.attach(spaces[1], driver="ipvlan", parent=parent, mode="l3", flag="private", ifname="eth0",
                 addresses=["10.197.7.3/24"])  # fmt: skip
    routes = _in(spaces[0], "ip", "route").stdout
    assert "default dev eth0" in routes and "via" not in routes, routes
    assert "default" not in _in(spaces[1], "ip", "route").stdout
    link = _in(spaces[0], "ip", "-d", "link", "show", "eth0").stdout
    assert "mode l3 private" in link, link
    for path in spaces:
        subif.detach(path, "eth0")

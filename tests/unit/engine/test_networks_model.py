"""Networking as data: the HostConfig and NetworkingConfig fields of a create request, the network create body,
network inspect, container NetworkSettings and the listing's Ports, the network filters, and the state file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ketch.common.errors import Forbidden, InvalidArgument, NotFound, Unsupported
from ketch.engine.model import (
    ContainerConfig,
    ContainerRecord,
    EndpointConfig,
    HostConfig,
    parse_create_body,
    parse_time,
)
from ketch.engine.network_model import (
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
    ports_for_list,
    prune_filter,
    requested_networks,
)
from ketch.engine.networks import _bindings, _exposed_keys, instance_names

TRACES = Path("/work/shared/docker-api-traces")
CID = "f2b7dc6128e2b38ceb4fe45a1448fe2af00ca3ee7959d7d89565b1ee7d4fe519"
NID = "b2cd24427ca5a56087e12f0700e3ef3abe82e2b720458053220d07e0ba709b02"
BRIDGE_ID = "bd3a0eb62d47ec566e1ea2fc4ea1e987305ab28812d33ac15121f9570414ca03"
EPID = "07e32973f1a25d0a7934b15774e6a5dd27d68a8418572b76232e94343d76a29c"


def _traced(command: str, path_part: str) -> dict[str, Any]:
    """A request or response of docker-api-traces/cli-20.10 (skips when the traces are not there)."""
    calls = TRACES / "cli-20.10" / command / "docker.calls.jsonl"
    if not calls.exists():
        pytest.skip(f"no docker API trace {calls}")
    for line in calls.read_text().splitlines():
        call = json.loads(line)
        if path_part in call["path"]:
            found: dict[str, Any] = call
            return found
    raise AssertionError(f"{path_part} not in {calls}")


def _create(host: dict[str, Any], **top: Any) -> tuple[ContainerConfig, HostConfig]:
    return parse_create_body({"Image": "busybox", "HostConfig": host, **top}, host=None)


def _record(host: HostConfig, config: ContainerConfig | None = None, cid: str = CID) -> ContainerRecord:
    return ContainerRecord(id=cid, name="/kv20-d", image_id="sha256:x", created_at=1, config=config
                           or ContainerConfig(image="busybox"), host_config=host)  # fmt: skip


# ---- HostConfig and NetworkingConfig ------------------------------------------------------------------------


def test_network_fields_of_the_create_body() -> None:
    _, host = _create(
        {
            "NetworkMode": "n1", "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                                  "53/udp": [{"HostIp": "", "HostPort": ""}]},
            "PublishAllPorts": True, "Dns": ["10.0.0.53"], "DnsOptions": ["ndots:2"], "DnsSearch": ["example"],
            "ExtraHosts": ["db:10.0.0.9", "gw:host-gateway"], "Links": ["web:www"],
        },
        NetworkingConfig={"EndpointsConfig": {"n1": {"IPAMConfig": {"IPv4Address": "10.9.0.7"},
                                                     "Aliases": ["api"], "Links": None}}},
    )  # fmt: skip
    assert host.port_bindings is not None
    assert [(k, [(b.host_ip, b.host_port) for b in v or ()]) for k, v in host.port_bindings.items()] == [
        ("80/tcp", [("127.0.0.1", "8080")]), ("53/udp", [("", "")])]  # fmt: skip
    assert host.publish_all_ports and host.dns == ("10.0.0.53",) and host.dns_options == ("ndots:2",)
    assert host.dns_search == ("example",) and host.links == ("web:www",)
    assert host.extra_hosts == ("db:10.0.0.9", "gw:host-gateway")
    assert dict(host.endpoints_config or {}) == {
        "n1": EndpointConfig(ipv4_address="10.9.0.7", aliases=("api",))
    }
    api = host.to_api()
    keys = list(api)
    assert keys.index("NetworkMode") + 1 == keys.index("PortBindings") == keys.index("RestartPolicy") - 1
    assert keys.index("CgroupnsMode") < keys.index("Dns") < keys.index("DnsOptions") < keys.index("DnsSearch")
    assert keys.index("DnsSearch") < keys.index("ExtraHosts") < keys.index("GroupAdd")
    assert keys.index("IpcMode") < keys.index("Links") < keys.index("OomScoreAdj")
    assert keys.index("Privileged") + 1 == keys.index("PublishAllPorts") == keys.index("ReadonlyRootfs") - 1
    assert api["PortBindings"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8080"}]
    assert api["NetworkingConfig"] == {"EndpointsConfig": {"n1": {
        "IPAMConfig": {"IPv4Address": "10.9.0.7"}, "Links": None, "Aliases": ["api"], "DriverOpts": None}}}  # fmt: skip
    assert HostConfig.from_api(api, host=None) == host


def test_the_docker_cli_bodies_keep_their_shapes() -> None:
    for command in ("12-run-d", "36-run-vol-net"):
        body = _traced(command, "/containers/create")["req_body"]
        _, host = parse_create_body(body, host=None)
        api = host.to_api()
        assert (
            api["PortBindings"] == {}
            and api["Dns"] == []
            and api["DnsOptions"] == []
            and api["DnsSearch"] == []
        )
        assert api.get("ExtraHosts") is None and api.get("Links") is None and api["PublishAllPorts"] is False
        assert host.endpoints_config is None and "NetworkingConfig" not in api
        assert HostConfig.from_api(api, host=None) == host
    # The 28 CLI names the default network with an entry that asks nothing: dropped.
    _, host = _create({"NetworkMode": "default"}, NetworkingConfig={"EndpointsConfig": {"default": {
        "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None, "GwPriority": 0,
        "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "DNSNames": None}}})  # fmt: skip
    assert host.endpoints_config is None


@pytest.mark.parametrize(
    ("host", "top", "message"),
    [
        ({}, {"NetworkingConfig": {"EndpointsConfig": {"a": {}, "b": {}}}},
         "Container cannot be connected to network endpoints: a, b"),
        ({}, {"NetworkingConfig": {"EndpointsConfig": {"a": None}}}, "no EndpointSettings for a"),
        ({}, {"NetworkingConfig": {"EndpointsConfig": {"a": {"IPAMConfig": {"IPv4Address": "fe80::1"}}}}},
         "invalid IPv4 address: fe80::1"),
        ({}, {"NetworkingConfig": {"EndpointsConfig": {"a": {"IPAMConfig": {"IPv6Address": "10.0.0.1"}}}}},
         "invalid IPv6 address: 10.0.0.1"),
        ({"PortBindings": {"80-81/tcp": []}}, {}, 'invalid port specification: "80-81"'),
        ({"PortBindings": {"80/tcp": [{"HostPort": "x"}]}}, {}, 'invalid port specification: "x"'),
        ({"PortBindings": {"80/tcp": [{"HostPort": 8080}]}}, {},
         "json: cannot unmarshal number into Go struct field PortBinding.HostConfig.PortBindings.HostPort of type "
         "string"),
        ({"PortBindings": []}, {},
         "json: cannot unmarshal array into Go struct field ContainerConfigWrapper.HostConfig.PortBindings of type "
         "nat.PortMap"),
        ({"NetworkMode": "container:x", "PortBindings": {"80/tcp": None}}, {},
         "conflicting options: port publishing and the container type network mode"),
        ({"NetworkMode": "container:x", "Dns": ["1.1.1.1"]}, {}, "conflicting options: dns and the network mode"),
        ({"NetworkMode": "container:x", "ExtraHosts": ["a:1.2.3.4"]}, {},
         "conflicting options: custom host-to-IP mapping and the network mode"),
        ({"NetworkMode": "container:x", "Links": ["a:b"]}, {},
         "conflicting options: container type network can't be used with links. This would result in undefined "
         "behavior"),
        ({"NetworkMode": "host", "Links": ["a:b"]}, {},
         "conflicting options: host type networking can't be used with links. This would result in undefined "
         "behavior"),
    ],
)  # fmt: skip
def test_bad_network_settings_are_refused(host: dict[str, Any], top: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _create(host, **top)
    assert str(caught.value) == message


# ---- network create ---------------------------------------------------------------------------------------------


def test_the_cli_create_body() -> None:
    req = parse_create_request(_traced("30-network-create", "/networks/create")["req_body"])
    assert (req.name, req.driver, req.internal, req.enable_ipv6, req.ipam_config) == ("kv20-net", "bridge", False,
                                                                                      False, ())  # fmt: skip
    assert req.ipam_options == {} and req.options == {} and req.labels == {}
    ipam = {"Config": [{"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.9"}]}
    options = {"com.docker.network.bridge.enable_icc": "false"}
    req = parse_create_request({"Name": "n", "IPAM": ipam, "Options": options, "Internal": True})
    assert req.ipam_config == ({"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.9"},) and req.internal


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({"Name": "bridge"}, Forbidden, "operation is not permitted on predefined bridge network "),
        ({"Name": "default"}, Forbidden, "operation is not permitted on predefined default network "),
        ({"Name": " "}, InvalidArgument, "invalid name:  "),
        ({"Name": "m", "Driver": "overlay"}, Unsupported, "network driver overlay is not supported by ketch "
                                                           "(it needs swarm)"),
        ({"Name": "m", "Driver": "host"}, Forbidden, 'only one instance of "host" network is allowed'),
        ({"Name": "m", "Driver": "weave"}, NotFound, "plugin 'weave' not found"),
        ({"Name": "m", "Options": {"com.docker.network.bridge.enable_icc": "maybe"}}, InvalidArgument,
         "invalid value 'maybe' for option com.docker.network.bridge.enable_icc: want true or false"),
        ({"Name": "m", "Options": {"com.docker.network.bridge.name": "a-very-long-bridge"}}, InvalidArgument,
         "invalid bridge name 'a-very-long-bridge': 1 to 15 bytes, no '/' or spaces"),
        ({"Name": 3}, InvalidArgument,
         "json: cannot unmarshal number into Go struct field NetworkCreateRequest.Name of type string"),
    ],
)  # fmt: skip
def test_bad_create_requests(body: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        parse_create_request(body)
    assert str(caught.value) == message


# ---- inspect shapes -----------------------------------------------------------------------------------------------


def _user_net(**changes: Any) -> NetworkRecord:
    fields: dict[str, Any] = {"id": NID, "name": "kv20-net", "driver": "bridge", "created": 1795346513967562330,
                              "bridge": "kbr-b2cd24427ca", "ipam_options": {}}  # fmt: skip
    fields.update(changes)
    return NetworkRecord(**fields)


def _default_bridge() -> NetworkRecord:
    return NetworkRecord(id=BRIDGE_ID, name="bridge", driver="bridge", created=1, bridge="ketch0",
                         options={"com.docker.network.bridge.default_bridge": "true"})  # fmt: skip


def _endpoint(network_id: str = NID, ip: str = "172.19.0.2", **changes: Any) -> Endpoint:
    fields: dict[str, Any] = {"network_id": network_id, "endpoint_id": EPID, "ifname": "eth0",
                              "host_ifname": "veth1234567", "ipv4": ip, "ipv4_prefix": 16,
                              "gateway": ip.rsplit(".", 1)[0] + ".1", "mac": "02:42:ac:13:00:02",
                              "default_route": True}  # fmt: skip
    fields.update(changes)
    return Endpoint(**fields)


def test_network_inspect_is_dockers() -> None:
    expected = _traced("33-network-inspect", "/networks/kv20-net")["resp_body"]
    net = _user_net(created=parse_time(expected["Created"]))
    entry = inspect_container_entry("kv20-d", _endpoint())
    got = network_to_api(net, [{"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.1"}], {CID: entry})
    assert list(got) == list(expected)
    assert got == expected


def test_container_network_settings_of_a_running_container() -> None:
    traced = _traced("22-inspect-container", "/containers/kv20-d/json")["resp_body"]
    expected = traced["NetworkSettings"]
    epid = expected["EndpointID"]
    ep = _endpoint(BRIDGE_ID, "172.17.0.2", mac="02:42:ac:11:00:02", endpoint_id=epid)
    sb = Sandbox(container_id=CID, name="kv20-d", sandbox_id="5" * 64, netns="/run/ketch/netns/" + CID,
                 endpoints=(ep,))  # fmt: skip
    record = _record(HostConfig(network_mode="default"))
    got = container_network_settings(record, [("bridge", _default_bridge(), EndpointConfig())], sb,
                                     attached_before=True)  # fmt: skip
    assert list(got) == list(expected)
    for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress", "Ports", "Bridge"):
        assert got[key] == expected[key], key
    assert got["Networks"]["bridge"] == {**expected["Networks"]["bridge"], "NetworkID": BRIDGE_ID}
    assert got["SandboxKey"] == sb.netns and got["SandboxID"] == sb.sandbox_id


def test_container_network_settings_on_a_user_network() -> None:
    cfg = EndpointConfig(aliases=("web",), ipv4_address="172.19.0.9")
    record = _record(HostConfig(network_mode="kv20-net"))
    created = container_network_settings(
        record, [("kv20-net", _user_net(), cfg)], None, attached_before=False
    )
    net = created["Networks"]["kv20-net"]
    assert net["Aliases"] == ["web"] and net["NetworkID"] == "" and net["IPAddress"] == ""
    assert net["IPAMConfig"] == {"IPv4Address": "172.19.0.9"}
    assert created["IPAddress"] == "" and created["SandboxKey"] == "" and created["Ports"] == {}
    sb = Sandbox(
        container_id=CID, name="kv20-d", sandbox_id="s", netns="/n", endpoints=(_endpoint(ip="172.19.0.9"),)
    )
    running = container_network_settings(record, [("kv20-net", _user_net(), cfg)], sb, attached_before=True)
    net = running["Networks"]["kv20-net"]
    assert (
        net["Aliases"] == ["web", CID[:12]] and net["NetworkID"] == NID and net["IPAddress"] == "172.19.0.9"
    )
    assert running["IPAddress"] == ""  # the top-level fields are the default bridge's only


def test_ports_in_inspect_and_in_the_listing() -> None:
    web = Published(
        container_port=80, proto="tcp", host_port=8080, container_ip="172.17.0.2", host_ip="127.0.0.1"
    )
    dns = Published(container_port=53, proto="udp", host_port=5353, container_ip="172.17.0.2")
    sb = Sandbox(container_id=CID, name="w", sandbox_id="s", netns="/n", exposed=("80/tcp", "443/tcp", "53/udp"),
                 ports=(web, dns))  # fmt: skip
    settings = container_network_settings(_record(HostConfig()), [], sb, attached_before=True)
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "443/tcp": None,
                                 "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}]}  # fmt: skip
    assert ports_for_list(sb) == [
        {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"},
        {"PrivatePort": 443, "Type": "tcp"},
    ]
    assert ports_for_list(None) == []


def test_published_and_exposed_ports_of_a_record() -> None:
    _, host = _create({"PortBindings": {"80/tcp": [{"HostPort": "8080"}], "90": [{"HostIp": "::1"}]},
                       "PublishAllPorts": True})  # fmt: skip
    config = ContainerConfig(image="b", exposed_ports=("80/tcp", "7000-7001/udp"))
    record = _record(host, config)
    assert _exposed_keys(record) == ["80/tcp", "7000/udp", "7001/udp", "90/tcp"]
    got = [(b.key, b.host_ip, b.host_port) for b in _bindings(record)]
    assert got == [("80/tcp", "", "8080"), ("90/tcp", "::1", ""), ("7000/udp", "", ""), ("7001/udp", "", "")]
    assert [b.key for b in _bindings(_record(replace_host(host, publish_all_ports=False), config))] == [
        "80/tcp", "90/tcp"]  # fmt: skip


def replace_host(host: HostConfig, **changes: Any) -> HostConfig:
    from dataclasses import replace

    return replace(host, **changes)


# ---- what a container asks for, filters, state ------------------------------------------------------------------


def test_requested_networks() -> None:
    assert requested_networks(_record(HostConfig())) == [("bridge", EndpointConfig())]
    assert requested_networks(_record(HostConfig(network_mode="host"))) == []
    assert requested_networks(_record(HostConfig(network_mode="container:x"))) == []
    alias = EndpointConfig(aliases=("a",))
    host = HostConfig(network_mode="n1", endpoints_config={"n1": alias})
    assert requested_networks(_record(host)) == [("n1", alias)]
    host = HostConfig(network_mode="default", endpoints_config={"default": alias})
    assert requested_networks(_record(host)) == [("bridge", alias)]


def test_links() -> None:
    assert parse_links(["web:www", "/db:/me/database", "cache"]) == {
        "www": "web",
        "database": "db",
        "cache": "cache",
    }
    with pytest.raises(InvalidArgument):
        parse_links([":x"])


def test_list_filters() -> None:
    default, user = _default_bridge(), _user_net(labels={"tier": "front"})
    host = NetworkRecord(id="h" * 64, name="host", driver="host", created=1)

    def names(filters: dict[str, list[str]], in_use: int = 0) -> list[str]:
        accept = list_filter(filters)
        return [n.name for n in (default, host, user) if accept(n, in_use)]

    assert names({}) == ["bridge", "host", "kv20-net"]
    assert names({"type": ["custom"]}) == ["kv20-net"]
    assert names({"type": ["builtin"]}) == ["bridge", "host"]
    assert names({"driver": ["bridge"]}) == ["bridge", "kv20-net"]
    assert names({"name": ["^kv20"]}) == ["kv20-net"] and names({"name": ["ost"]}) == ["host"]
    assert names({"id": [NID[:6]]}) == ["kv20-net"]
    assert names({"label": ["tier=front"]}) == ["kv20-net"] and names({"label": ["tier=back"]}) == []
    assert names({"dangling": ["true"]}) == ["kv20-net"] and names({"dangling": ["true"]}, 1) == []
    assert names({"dangling": ["false"]}) == ["bridge", "host"]
    assert names({"scope": ["swarm"]}) == []
    with pytest.raises(InvalidArgument, match=r"^invalid filter: 'type'='x'$"):
        list_filter({"type": ["x"]})
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'nope'$"):
        list_filter({"nope": ["x"]})


def test_prune_filters() -> None:
    old, new = _user_net(created=10, labels={"keep": "1"}), _user_net(created=30, labels={})

    def until(value: str) -> int:
        return int(value)

    assert prune_filter({"until": ["20"]}, until)(old) and not prune_filter({"until": ["20"]}, until)(new)
    assert not prune_filter({"label!": ["keep"]}, until)(old) and prune_filter({"label!": ["keep"]}, until)(
        new
    )
    assert prune_filter({"label": ["keep=1"]}, until)(old) and not prune_filter({"label": ["keep"]}, until)(
        new
    )


def test_state_round_trips() -> None:
    state = NetworkState(
        networks={NID: _user_net(options={"com.docker.network.bridge.enable_icc": "false"}, labels={"a": "b"})},
        attached={CID: [(NID, EndpointConfig(aliases=("web",), ipv4_address="172.19.0.9"))]},
        sandboxes={CID: Sandbox(container_id=CID, name="kv20-d", sandbox_id="s", netns="/n",
                                endpoints=(_endpoint(),), exposed=("80/tcp",), dns=True, dns_forwarders=("10.0.0.53",),
                                dns_links={"db": "database"},
                                ports=(Published(container_port=80, proto="tcp", host_port=8080,
                                                 container_ip="172.19.0.2"),))},
    )  # fmt: skip
    again = NetworkState.from_json(state.to_json())
    assert again == state and not again.networks[NID].icc
    with pytest.raises(InvalidArgument, match="network state: malformed"):
        NetworkState.from_json('{"networks": [{"id": 1}]}')


def test_instance_names() -> None:
    assert instance_names("/run/ketch") == ("ketch0", "ketch")
    bridge_name, table = instance_names("/tmp/kd-1/exec")
    assert (
        bridge_name.startswith("ketch-") and len(bridge_name) <= 15 and table == bridge_name.replace("-", "_")
    )
    assert instance_names("/tmp/kd-2/exec") != (bridge_name, table)
    assert instance_names("/tmp/kd-1/exec") == (bridge_name, table)

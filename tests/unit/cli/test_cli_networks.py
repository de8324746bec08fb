"""``network`` commands, the networking flags of ``run``/``create`` and ``ps --filter network`` against a fake
daemon: requests and output compared byte for byte with docker 20.10's traces where there are traces."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.unit.cli.clirun import run
from tests.unit.cli.engine import (
    Call,
    FakeEngine,
    empty,
    error,
    json_reply,
    start_answer,
    trace_reply,
    wait_answer,
)
from tests.unit.client.fakedaemon import trace_calls, trace_stdout

from ketch.cli.commands import networks as net_cmd

CID = "f2b7dc6128e2b38ceb4fe45a1448fe2af00ca3ee7959d7d89565b1ee7d4fe519"
NID = "b2cd24427ca5a56087e12f0700e3ef3abe82e2b720458053220d07e0ba709b02"


def _trace_request(name: str, path_suffix: str) -> tuple[dict[str, Any], bytes]:
    """The JSON body docker sent in trace ``name`` to a path ending with the suffix, and its exact bytes (Go's
    encoder: compact, <>& escaped, a newline; the trace's Content-Length checks the reconstruction)."""
    for call in trace_calls(name):
        if call["path"].endswith(path_suffix) and call["req_body"] is not None:
            body: dict[str, Any] = call["req_body"]
            raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            raw = raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"
            length = dict(call["req_headers"])["Content-Length"]
            assert len(raw.encode()) == int(length)
            return body, raw.encode()
    raise KeyError(name)


def _endpoint(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "", "EndpointID": "", "Gateway": "",
        "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "MacAddress": "", "DriverOpts": None,
    }  # fmt: skip
    base.update(fields)
    return base


# ---- create -------------------------------------------------------------------------------------------------------


def test_create_sends_docker_request_and_prints_the_id(eng: FakeEngine) -> None:
    eng.route("POST", "/networks/create", trace_reply("30-network-create", "POST", "/networks/create"))
    result = run(eng.socket_path, "network", "create", "kv20-net")
    assert (result.status, result.out, result.err) == (0, trace_stdout("30-network-create"), "")
    assert eng.lines() == ["POST /networks/create"]
    expected, raw = _trace_request("30-network-create", "/networks/create")
    assert eng.calls[0].body == raw  # docker's keys, in docker's order, as Go writes them
    assert eng.calls[0].json() == expected
    assert eng.calls[0].headers["content-type"] == "application/json"


def test_create_flags_fill_the_request(eng: FakeEngine) -> None:
    eng.route("POST", "/networks/create", json_reply({"Id": NID, "Warning": ""}, 201))
    result = run(
        eng.socket_path, "network", "create", "-d", "bridge", "--subnet", "10.10.0.0/16,fd00:10::/64",
        "--gateway", "10.10.0.254", "--ip-range", "10.10.1.0/24", "--aux-address", "host=10.10.0.2",
        "--aux-address", "a=fd00:10::5", "--internal", "--ipv6", "--attachable", "--label", "team=x",
        "--label", "empty=", "-o", "com.docker.network.bridge.name=br-x", "--opt", "mtu=1400",
        "--ipam-opt", "k=v", "--scope", "local", "net1",
    )  # fmt: skip
    assert (result.status, result.out, result.err) == (0, NID + "\n", "")
    assert eng.calls[0].json() == {
        "CheckDuplicate": True, "Driver": "bridge", "Scope": "local", "EnableIPv6": True,
        "IPAM": {"Driver": "default", "Options": {"k": "v"}, "Config": [
            {"Subnet": "10.10.0.0/16", "IPRange": "10.10.1.0/24", "Gateway": "10.10.0.254",
             "AuxiliaryAddresses": {"host": "10.10.0.2"}},
            {"Subnet": "fd00:10::/64", "AuxiliaryAddresses": {"a": "fd00:10::5"}},
        ]},
        "Internal": True, "Attachable": True, "Ingress": False, "ConfigOnly": False, "ConfigFrom": None,
        "Options": {"com.docker.network.bridge.name": "br-x", "mtu": "1400"},
        "Labels": {"team": "x", "empty": ""}, "Name": "net1",
    }  # fmt: skip
    run(eng.socket_path, "network", "create", "--internal=false", "--config-from", "base", "net2")
    body = eng.calls[-1].json()
    assert (body["Internal"], body["ConfigFrom"], body["IPAM"]["Config"]) == (False, {"Network": "base"}, [])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gateway", "10.0.0.1"], "every ip-range or gateway must have a corresponding subnet"),
        (["--subnet", "10.0.0.0/8", "--subnet", "10.1.0.0/16"],
         "multiple overlapping subnet configuration is not supported"),
        (["--subnet", "10.0.0.0/24", "--gateway", "10.0.1.1"], "no matching subnet for gateway 10.0.1.1"),
        (["--subnet", "10.0.0.0/24", "--ip-range", "10.9.0.0/25"], "no matching subnet for range 10.9.0.0/25"),
        (["--subnet", "10.0.0.0/24", "--ip-range", "10.0.0.0/25", "--ip-range", "10.0.0.128/25",
          "--gateway", "10.0.0.1"],
         "every ip-range or gateway must have a corresponding subnet"),
        (["--subnet", "10.0.0.0/24", "--subnet", "10.0.1.0/24", "--ip-range", "10.0.0.0/25", "--ip-range",
          "10.0.0.128/25"],
         "cannot configure multiple ranges (10.0.0.128/25, 10.0.0.0/25) on the same subnet (10.0.0.0/24)"),
        (["--subnet", "10.0.0.0/24", "--subnet", "10.0.1.0/24", "--gateway", "10.0.0.1", "--gateway",
          "10.0.0.2"],
         "cannot configure multiple gateways (10.0.0.2, 10.0.0.1) for the same subnet (10.0.0.0/24)"),
        (["--subnet", "10.0.0.0/24", "--aux-address", "x=10.0.5.1"], "no matching subnet for aux-address 10.0.5.1"),
        (["--subnet", "10.0.0/24", "--gateway", "10.0.0.1"], "invalid subnet: invalid CIDR address: 10.0.0/24"),
        (["--subnet", "10.0.0.0/24", "--ip-range", "10.0.0.0/99"], "invalid CIDR address: 10.0.0.0/99"),
    ],
)  # fmt: skip
def test_create_refuses_ipam_flags_that_do_not_fit(eng: FakeEngine, flags: list[str], message: str) -> None:
    result = run(eng.socket_path, "network", "create", *flags, "n")
    assert (result.status, result.err) == (1, message + "\n")
    assert eng.calls == []


def test_create_flag_and_argument_errors(eng: FakeEngine) -> None:
    label = run(eng.socket_path, "network", "create", "--label", "nokey", "n")
    assert (label.status, label.err) == (
        125,
        'invalid argument "nokey" for "--label" flag: bad attribute format: nokey\n'
        "See 'ketch network create --help'.\n",
    )
    missing = run(eng.socket_path, "network", "create")
    assert (missing.status, missing.err) == (
        1,
        "\"ketch network create\" requires exactly 1 argument.\nSee 'ketch network create --help'.\n",
    )
    eng.route("POST", "/networks/create", error(409, "network with name n already exists"))
    taken = run(eng.socket_path, "network", "create", "n")
    assert (taken.status, taken.err) == (
        1,
        "Error response from daemon: network with name n already exists\n",
    )


def test_ipam_helpers() -> None:
    assert net_cmd.consolidate_ipam(["10.0.0.0/24"], [], [], {}) == [{"Subnet": "10.0.0.0/24"}]
    # an IPv4 gateway is never in an IPv6 subnet
    with pytest.raises(ValueError, match=r"no matching subnet for gateway 10\.0\.0\.1"):
        net_cmd.consolidate_ipam(["fd00::/64"], [], ["10.0.0.1"], {})
    with pytest.raises(ValueError, match="no matching subnet for gateway nonsense"):
        net_cmd.consolidate_ipam(["10.0.0.0/24"], [], ["nonsense"], {})


# ---- ls -----------------------------------------------------------------------------------------------------------


def test_ls_prints_what_docker_printed(eng: FakeEngine) -> None:
    eng.route("GET", "/networks", trace_reply("31-network-ls", "GET", "/networks"))
    result = run(eng.socket_path, "network", "ls")
    assert (result.status, result.out, result.err) == (0, trace_stdout("31-network-ls"), "")
    assert eng.lines() == ["GET /networks"]
    assert run(eng.socket_path, "network", "list", "-q").out == (
        "bd3a0eb62d47\n7c93e6c27e0d\nb2cd24427ca5\ncbd54a6a90f7\n"
    )
    full = run(eng.socket_path, "network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}} {{.IPv6}}").out
    assert full.splitlines()[2] == f"{NID} kv20-net false"
    raw = run(eng.socket_path, "network", "ls", "--format", "raw").out
    assert raw.startswith("network_id: bd3a0eb62d47\nname: bridge\ndriver: bridge\nscope: local\n\n")


def test_ls_filters_formats_and_natural_order(eng: FakeEngine) -> None:
    def network(name: str, **extra: Any) -> dict[str, Any]:
        return {"Name": name, "Id": (name.encode().hex() * 64)[:64], "Created": "2026-11-22T11:21:53.96756233Z",
                "Scope": "local", "Driver": "bridge", "EnableIPv6": False, "Internal": False,
                "Labels": {}} | extra  # fmt: skip

    listed = [network("net10"), network("net9"), network("net09"), network("Net1"), network("net1a", Internal=True,
              Labels={"b": "2", "a": "1"}, Created="2026-01-02T03:04:05Z")]  # fmt: skip
    eng.route("GET", "/networks", json_reply(listed))
    names = run(eng.socket_path, "network", "ls", "--filter", "driver=bridge", "-f", "Name=net",
                "--format", "{{.Name}}").out  # fmt: skip
    assert names.split() == ["Net1", "net1a", "net9", "net09", "net10"]
    assert eng.calls[-1].query == [("filters", '{"driver":{"bridge":true},"name":{"net":true}}')]
    eng.route("GET", "/networks", json_reply(listed[-1:]))
    table = run(eng.socket_path, "network", "ls", "-f", "name=net1a", "--format",
                "table {{.Name}}\t{{.Internal}}\t{{.Labels}}\t{{.Label \"b\"}}\t{{.CreatedAt}}").out  # fmt: skip
    assert table.splitlines()[0].split() == ["NAME", "INTERNAL", "LABELS", "CREATED", "AT"]
    assert table.splitlines()[1] == "net1a     true       a=1,b=2   2         2026-01-02 03:04:05 +0000 UTC"
    eng.route("GET", "/networks", json_reply(listed))
    row = json.loads(run(eng.socket_path, "network", "ls", "--format", "{{json .}}").out.splitlines()[0])
    assert row == {"CreatedAt": "2026-11-22 11:21:53.96756233 +0000 UTC", "Driver": "bridge",
                   "ID": listed[3]["Id"][:12], "IPv6": "false", "Internal": "false", "Labels": "", "Name": "Net1",
                   "Scope": "local"}  # fmt: skip
    bad = run(eng.socket_path, "network", "ls", "-f", "dangling")
    assert (bad.status, bad.err) == (125, 'invalid argument "dangling" for "-f, --filter" flag: bad format of '
                                          "filter (expected name=value)\nSee 'ketch network ls --help'.\n")  # fmt: skip


def test_natural_order_and_go_times() -> None:
    names = ["a10", "a2", "a02", "a1", "b", "a", "A", "a1b", "1", "a01"]
    ordered = sorted(names, key=net_cmd._natural_key)
    assert ordered == ["1", "A", "a", "a1", "a1b", "a01", "a2", "a02", "a10", "b"]
    assert net_cmd.natural_less("x9", "x10") and not net_cmd.natural_less("x10", "x9")
    assert net_cmd.go_time_string("2026-11-22T11:21:53.500000000Z") == "2026-11-22 11:21:53.5 +0000 UTC"
    assert net_cmd.go_time_string("2026-11-22T11:21:53+01:00") == "2026-11-22 11:21:53 +0100 +0100"


# ---- inspect ----------------------------------------------------------------------------------------------------


def test_inspect_prints_what_docker_printed(eng: FakeEngine) -> None:
    eng.route("GET", "/networks/{id}", trace_reply("33-network-inspect", "GET", "/networks/kv20-net"))
    result = run(eng.socket_path, "network", "inspect", "kv20-net")
    assert (result.status, result.out, result.err) == (0, trace_stdout("33-network-inspect"), "")
    assert eng.lines() == ["GET /networks/kv20-net"]
    templated = run(eng.socket_path, "network", "inspect", "-f", "{{.Name}} {{.IPAM.Config}} {{json .Labels}}",
                    "kv20-net")  # fmt: skip
    assert templated.out == "kv20-net [map[Gateway:172.19.0.1 Subnet:172.19.0.0/16]] {}\n"
    run(eng.socket_path, "network", "inspect", "--verbose", "kv20-net")
    assert eng.calls[-1].query == [("verbose", "true")]


def test_inspect_missing_networks_and_bad_templates(eng: FakeEngine) -> None:
    def answer(call: Call) -> Any:
        if call.params["id"] == "kv20-net":
            return trace_reply("33-network-inspect", "GET", "/networks/kv20-net")
        return error(404, f"network {call.params['id']} not found")

    eng.route("GET", "/networks/{id}", answer)
    result = run(eng.socket_path, "network", "inspect", "nope")
    assert (result.status, result.out, result.err) == (1, "[]\n", "Error: No such network: nope\n")
    both = run(eng.socket_path, "network", "inspect", "-f", "{{.Id}}", "nope", "kv20-net", "gone")
    assert (both.status, both.out) == (1, NID + "\n")
    assert both.err == "Error: No such network: nope\nError: No such network: gone\n"
    parse = run(eng.socket_path, "network", "inspect", "-f", "{{.Name", "kv20-net")
    assert parse.status == 64 and parse.err.startswith("Template parsing error: ")
    executing = run(eng.socket_path, "network", "inspect", "-f", "{{.Name.Deep.Field}}", "kv20-net")
    assert executing.status == 1 and executing.err.startswith("Template parsing error: ")


# ---- rm and prune -------------------------------------------------------------------------------------------------


def test_rm_looks_the_network_up_then_removes_it(eng: FakeEngine) -> None:
    eng.route("GET", "/networks/{id}", trace_reply("41-network-rm", "GET", "/networks/kv20-net"))
    eng.route("DELETE", "/networks/{id}", empty())
    result = run(eng.socket_path, "network", "rm", "kv20-net")
    assert (result.status, result.out, result.err) == (0, trace_stdout("41-network-rm"), "")
    assert eng.lines() == ["GET /networks/kv20-net", "DELETE /networks/kv20-net"]


def test_rm_reports_each_failure_and_exits_1(eng: FakeEngine) -> None:
    def lookup(call: Call) -> Any:
        name = call.params["id"]
        return json_reply({"Name": name, "Ingress": False}) if name != "nope" else error(404, "not found")

    def remove(call: Call) -> Any:
        name = call.params["id"]
        if name == "nope":
            return error(404, f"network {name} not found")
        if name == "busy":
            return error(403, f"error while removing network: network busy id {NID} has active endpoints")
        return empty()

    eng.route("GET", "/networks/{id}", lookup)
    eng.route("DELETE", "/networks/{id}", remove)
    result = run(eng.socket_path, "network", "remove", "a", "nope", "busy", "b")
    assert (result.status, result.out) == (1, "a\nb\n")
    assert result.err == (
        "Error: No such network: nope\n"
        f"Error response from daemon: error while removing network: network busy id {NID} has active endpoints\n"
    )
    forced = run(eng.socket_path, "network", "rm", "-f", "nope", "a")
    assert (forced.status, forced.out, forced.err) == (0, "a\n", "")


def test_rm_asks_before_removing_an_ingress_network(eng: FakeEngine) -> None:
    eng.route("GET", "/networks/{id}", json_reply({"Name": "ingress", "Ingress": True}))
    eng.route("DELETE", "/networks/{id}", empty())
    declined = run(eng.socket_path, "network", "rm", "ingress", stdin="n\n")
    assert declined.status == 0 and declined.out.endswith("Are you sure you want to continue? [y/N] ")
    assert eng.lines() == ["GET /networks/ingress"]
    accepted = run(eng.socket_path, "network", "rm", "ingress", stdin="y\n")
    assert accepted.out.endswith("[y/N] ingress\n")
    assert eng.lines()[-1] == "DELETE /networks/ingress"


def test_prune_asks_then_lists_what_it_removed(eng: FakeEngine) -> None:
    eng.route("POST", "/networks/prune", json_reply({"NetworksDeleted": ["n1", "n2"]}))
    declined = run(eng.socket_path, "network", "prune", stdin="n\n")
    assert (declined.status, declined.out) == (0, net_cmd.PRUNE_WARNING + " [y/N] ")
    assert eng.calls == []
    forced = run(eng.socket_path, "network", "prune", "-f", "--filter", "label=a=b", "--filter", "until=1h")
    assert (forced.status, forced.out) == (0, "Deleted Networks:\nn1\nn2\n\n")
    assert eng.calls[-1].query == [("filters", '{"label":{"a=b":true},"until":{"1h":true}}')]
    eng.route("POST", "/networks/prune", json_reply({"NetworksDeleted": None}))
    assert run(eng.socket_path, "network", "prune", stdin="y\n").out == net_cmd.PRUNE_WARNING + " [y/N] "


def test_prune_adds_the_config_files_prune_filters(eng: FakeEngine, tmp_path: Any) -> None:
    config = tmp_path / "home" / ".docker"
    config.mkdir(parents=True)
    (config / "config.json").write_text(
        json.dumps({"pruneFilters": ["label=keep", "label!=tmp", "until=24h"]})
    )
    eng.route("POST", "/networks/prune", json_reply({}))
    assert run(eng.socket_path, "network", "prune", "-f", "--filter", "label=tmp").out == ""
    assert eng.calls[-1].query == [("filters", '{"label":{"keep":true,"tmp":true},"until":{"24h":true}}')]


# ---- connect and disconnect -----------------------------------------------------------------------------------


def test_connect_sends_docker_request(eng: FakeEngine) -> None:
    eng.route("POST", "/networks/{id}/connect", empty(200))
    result = run(eng.socket_path, "network", "connect", "kv20-net", "kv20-d")
    assert (result.status, result.out, result.err) == (0, "", "")
    assert eng.lines() == ["POST /networks/kv20-net/connect"]
    expected, raw = _trace_request("32-network-connect", "/connect")
    assert eng.calls[0].body == raw
    assert eng.calls[0].json() == expected


def test_connect_flags_fill_the_endpoint(eng: FakeEngine) -> None:
    eng.route("POST", "/networks/{id}/connect", empty(200))
    result = run(eng.socket_path, "network", "connect", "--alias", "web", "--alias", "a2,a3", "--ip", "10.1.0.5",
                 "--ip6", "fd00::5", "--link", "db:database", "--link-local-ip", "169.254.1.1",
                 "--driver-opt", "k=v", "net1", "c1")  # fmt: skip
    assert result.status == 0, result.err
    assert eng.calls[0].json() == {"Container": "c1", "EndpointConfig": _endpoint(
        IPAMConfig={"IPv4Address": "10.1.0.5", "IPv6Address": "fd00::5", "LinkLocalIPs": ["169.254.1.1"]},
        Links=["db:database"], Aliases=["web", "a2", "a3"], DriverOpts={"k": "v"})}  # fmt: skip
    bad_link = run(eng.socket_path, "network", "connect", "--link", "a:b:c", "net1", "c1")
    assert (bad_link.status, bad_link.err) == (
        125,
        'invalid argument "a:b:c" for "--link" flag: bad format for links: a:b:c\n'
        "See 'ketch network connect --help'.\n",
    )
    bad_opt = run(eng.socket_path, "network", "connect", "--driver-opt", "novalue", "net1", "c1")
    assert (bad_opt.status, bad_opt.err) == (1, "invalid key/value pair format in driver options\n")
    eng.route("POST", "/networks/{id}/connect", error(404, "No such container: c9"))
    missing = run(eng.socket_path, "network", "connect", "net1", "c9")
    assert (missing.status, missing.err) == (1, "Error response from daemon: No such container: c9\n")
    few = run(eng.socket_path, "network", "connect", "net1")
    assert (few.status, few.err) == (
        1, "\"ketch network connect\" requires exactly 2 arguments.\nSee 'ketch network connect --help'.\n"
    )  # fmt: skip


def test_disconnect_sends_force(eng: FakeEngine) -> None:
    eng.route("POST", "/networks/{id}/disconnect", empty(200))
    assert run(eng.socket_path, "network", "disconnect", "net1", "c1").status == 0
    assert run(eng.socket_path, "network", "disconnect", "-f", "net1", "c1").status == 0
    assert [c.body for c in eng.calls] == [
        b'{"Container":"c1","Force":false}\n',
        b'{"Container":"c1","Force":true}\n',
    ]
    eng.route(
        "POST", "/networks/{id}/disconnect", error(403, "container c1 is not connected to network net1")
    )
    failed = run(eng.socket_path, "network", "disconnect", "net1", "c1")
    assert (failed.status, failed.err) == (
        1, "Error response from daemon: container c1 is not connected to network net1\n"
    )  # fmt: skip


# ---- run and create -----------------------------------------------------------------------------------------------


def _container(eng: FakeEngine) -> None:
    eng.route("POST", "/containers/create", json_reply({"Id": CID, "Warnings": []}, 201))
    eng.route("POST", "/containers/{id}/wait", wait_answer(eng, 0))
    eng.route("POST", "/containers/{id}/start", start_answer(eng))


def test_run_on_a_user_network_sends_docker_body(eng: FakeEngine) -> None:
    """Trace 36 (``run --rm -v ... --network kv20-net``): one network and nothing more, no endpoint config."""
    _container(eng)
    eng.route("POST", "/containers/{id}/attach", empty(404))  # not reached: -d
    result = run(eng.socket_path, "create", "--rm", "-v", "kv20-vol:/data", "--network", "kv20-net", "-e",
                 "FOO=bar", "-w", "/data", "busybox:local", "sh", "-c", "echo x > x; ls; echo $FOO")  # fmt: skip
    assert (result.status, result.out) == (0, CID + "\n"), result.err
    expected, raw = _trace_request("36-run-vol-net", "/containers/create")
    assert eng.calls[0].json() == expected
    assert eng.calls[0].body == raw


def test_run_network_flags_fill_the_endpoints_config(eng: FakeEngine) -> None:
    _container(eng)
    result = run(eng.socket_path, "create", "--network", "net1", "--network-alias", "web", "--net-alias", "w2",
                 "--ip", "10.1.0.5", "--ip6", "fd00::5", "--link", "db:database", "--link", "cache",
                 "--link-local-ip", "169.254.1.1", "--dns", " 8.8.8.8", "--dns", "::ffff:1.2.3.4",
                 "--dns-search", "example.com.", "--dns-search", ".", "--dns-option", "ndots:2",
                 "--dns-opt", "timeout:1", "--add-host", "db:10.1.0.9", "--add-host", "gw:host-gateway",
                 "--add-host", "v6:fd00::1", "-p", "127.0.0.1:8080:80", "-P", "--expose", "9000/udp",
                 "busybox")  # fmt: skip
    assert result.status == 0, result.err
    body = eng.calls[0].json()
    host = body["HostConfig"]
    assert host["NetworkMode"] == "net1"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"net1": _endpoint(
        IPAMConfig={"IPv4Address": "10.1.0.5", "IPv6Address": "fd00::5", "LinkLocalIPs": ["169.254.1.1"]},
        Links=["db:database", "cache"], Aliases=["web", "w2"])}}  # fmt: skip
    assert host["Links"] == ["db:database", "cache"]
    assert (host["Dns"], host["DnsSearch"], host["DnsOptions"]) == (
        ["8.8.8.8", "1.2.3.4"], ["example.com", "."], ["ndots:2", "timeout:1"]
    )  # fmt: skip
    assert host["ExtraHosts"] == ["db:10.1.0.9", "gw:host-gateway", "v6:fd00::1"]
    assert body["ExposedPorts"] == {"80/tcp": {}, "9000/udp": {}}
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert host["PublishAllPorts"] is True

    # the CSV form, and several networks (each gets an endpoint; the plain flags go to the first)
    run(eng.socket_path, "create", "--network", "name=Front,alias=Web,driver-opt=k=v", "--network", "back",
        "--ip", "10.2.0.2", "busybox")  # fmt: skip
    body = eng.calls[-1].json()
    assert body["HostConfig"]["NetworkMode"] == "front"
    assert body["NetworkingConfig"]["EndpointsConfig"] == {
        "back": _endpoint(),
        "front": _endpoint(IPAMConfig={"IPv4Address": "10.2.0.2"}, Aliases=["web"], DriverOpts={"k": "v"}),
    }
    # no --network: the aliases have no network to go to, and docker drops them
    run(eng.socket_path, "create", "--network-alias", "lost", "busybox")
    body = eng.calls[-1].json()
    assert (body["HostConfig"]["NetworkMode"], body["NetworkingConfig"]) == (
        "default",
        {"EndpointsConfig": {}},
    )
    run(eng.socket_path, "create", "--network", "host", "busybox")
    assert eng.calls[-1].json()["NetworkingConfig"] == {"EndpointsConfig": {}}
    assert eng.calls[-1].json()["HostConfig"]["Links"] is None


@pytest.mark.parametrize(
    ("flags", "status", "message"),
    [
        (["--dns", "8.8.8"], 125, 'invalid argument "8.8.8" for "--dns" flag: 8.8.8 is not an ip address'),
        (["--dns-search", "-bad-"], 125, 'invalid argument "-bad-" for "--dns-search" flag: -bad- is not a valid '
                                         "domain"),
        (["--dns-search", "1.2.3"], 125, 'invalid argument "1.2.3" for "--dns-search" flag: 1.2.3 is not a valid '
                                         "domain"),
        (["--add-host", "nocolon"], 125, 'invalid argument "nocolon" for "--add-host" flag: bad format for '
                                         'add-host: "nocolon"'),
        (["--add-host", "h:1.2.3"], 125, 'invalid argument "h:1.2.3" for "--add-host" flag: invalid IP address '
                                         'in add-host: "1.2.3"'),
        (["--link", ""], 125, 'invalid argument "" for "--link" flag: empty string specified for links'),
        (["--network", "alias=x"], 125, 'invalid argument "alias=x" for "--network" flag: network name/id is not '
                                        "specified"),
        (["--network", "name=n,color=red"], 125, 'invalid argument "name=n,color=red" for "--network" flag: '
                                                 "invalid field key color"),
        (["--network", "bridge", "--network-alias", "a"], 125,
         "ketch: network-scoped aliases are only supported for user-defined networks."),
        (["--network", "none", "--link", "db"], 125, "ketch: links are only supported for user-defined networks."),
        (["--network", "n1", "--network", "n1"], 125, 'ketch: network "n1" is specified multiple times.'),
        (["--network", "n1", "--network", "host"], 125,
         "ketch: conflicting options: cannot attach both user-defined and non-user-defined network-modes."),
        (["--network", "name=n1,alias=a", "--network-alias", "b"], 125,
         "ketch: conflicting options: cannot specify both --network-alias and per-network alias."),
    ],
)  # fmt: skip
def test_run_network_flag_errors(eng: FakeEngine, flags: list[str], status: int, message: str) -> None:
    result = run(eng.socket_path, "run", *flags, "busybox")
    assert (result.status, result.err) == (status, message + "\nSee 'ketch run --help'.\n")
    assert eng.calls == []


# ---- ps --filter network ------------------------------------------------------------------------------------------


def test_ps_passes_the_network_filter(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/json", json_reply([]))
    result = run(eng.socket_path, "ps", "-q", "--filter", "network=kv20-net", "--filter", "network=other")
    assert (result.status, result.out) == (0, "")
    assert eng.calls[0].query == [("filters", '{"network":{"kv20-net":true,"other":true}}')]

"""Docker's -p grammar, the Engine API port shapes, and host port choice (go-connections nat behaviour)."""

import pytest

from ketch.common.errors import InvalidArgument, SystemFailure
from ketch.network.portspec import (
    DEFAULT_EPHEMERAL_RANGE,
    PortBinding,
    choose_free_port,
    from_engine,
    parse_expose,
    parse_local_port_range,
    parse_port_key,
    parse_port_spec,
    parse_port_specs,
    publish_all,
    resolve_host_port,
    to_engine,
)


def B(port, proto="tcp", ip="", start=0, end=None):  # a terse constructor for the tables
    return PortBinding(
        container_port=port,
        proto=proto,
        host_ip=ip,
        host_port_start=start,
        host_port_end=start if end is None else end,
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [B(80)]),
        ("80/tcp", [B(80)]),
        ("80/", [B(80)]),
        ("53/udp", [B(53, "udp")]),
        ("53/UDP", [B(53, "udp")]),
        ("132/sctp", [B(132, "sctp")]),
        ("8080:80", [B(80, start=8080)]),
        ("8080:80/udp", [B(80, "udp", start=8080)]),
        ("127.0.0.1:8080:80", [B(80, ip="127.0.0.1", start=8080)]),
        ("127.0.0.1::80", [B(80, ip="127.0.0.1")]),
        ("0.0.0.0:8080:80", [B(80, ip="0.0.0.0", start=8080)]),
        ("[::1]:8080:80", [B(80, ip="::1", start=8080)]),
        ("[::]::80/udp", [B(80, "udp", ip="::")]),
        ("[2001:db8::1]:8080:80", [B(80, ip="2001:db8::1", start=8080)]),
        ("0:80", [B(80)]),  # host port 0: any free port, like no host port
        (":80", [B(80)]),
        ("8000-8002:80-82", [B(80, start=8000), B(81, start=8001), B(82, start=8002)]),
        ("80-82", [B(80), B(81), B(82)]),
        ("127.0.0.1::80-81/udp", [B(80, "udp", "127.0.0.1"), B(81, "udp", "127.0.0.1")]),
        # A single container port with a host range: any free port of the range.
        ("8000-8010:80", [B(80, start=8000, end=8010)]),
        ("80-80", [B(80)]),
    ],
)
def test_parse_port_spec(spec, expected):
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "No port specified: <empty>"),
        ("8080:", "No port specified: 8080:<empty>"),
        ("x", "Invalid containerPort: x"),
        ("0", "Invalid containerPort: 0"),
        ("65536", "Invalid containerPort: 65536"),
        ("-1", "Invalid containerPort: -1"),
        ("+80", "Invalid containerPort: +80"),
        ("90-80", "Invalid containerPort: 90-80"),
        ("80-90-100", "Invalid containerPort: 80-90-100"),
        ("x:80", "Invalid hostPort: x"),
        ("70000:80", "Invalid hostPort: 70000"),
        ("8000-8001:80-82", "Invalid ranges specified for container and host Ports: 80-82 and 8000-8001"),
        ("80/icmp", "Invalid proto: icmp"),
        ("80/TCPX", "Invalid proto: TCPX"),
        ("1.2.3:8080:80", "Invalid ip address: 1.2.3"),
        ("localhost:8080:80", "Invalid ip address: localhost"),
        ("::1:8080:80", "Invalid ip address ::1: address ::1:: too many colons in address"),
        ("[::1:8080:80", "Invalid ip address [::1: address [::1:: missing ']' in address"),
    ],
)
def test_parse_port_spec_errors(spec, message):
    with pytest.raises(InvalidArgument) as info:
        parse_port_spec(spec)
    assert str(info.value) == message


def test_binding_properties():
    assert B(80).key == "80/tcp" and B(80).host_port == "" and B(80).is_dynamic
    assert B(53, "udp", start=5353).host_port == "5353" and not B(53, start=5353).is_dynamic
    assert B(80, start=8000, end=8010).host_port == "8000-8010" and B(80, start=8000, end=8010).is_dynamic


def test_parse_port_specs_engine_shapes():
    exposed, bindings = parse_port_specs(["8080:80", "127.0.0.1:8081:80", "53/udp", "[::1]::443"])
    assert exposed == {"80/tcp": {}, "53/udp": {}, "443/tcp": {}}
    assert bindings == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "8081"}],
        "53/udp": [{"HostIp": "", "HostPort": ""}],
        "443/tcp": [{"HostIp": "::1", "HostPort": ""}],
    }


def test_engine_round_trip():
    bindings = [
        B(80, start=8080),
        B(80, ip="127.0.0.1", start=8081),
        B(53, "udp"),
        B(81, start=9000, end=9010),
    ]
    _, port_bindings = to_engine(bindings)
    assert from_engine(port_bindings) == bindings


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, [B(80, start=8080)]),
        ({"80": [{"HostPort": "8080"}]}, [B(80, start=8080)]),  # no protocol: tcp
        ({"80/tcp": [{}]}, [B(80)]),
        ({"80/tcp": [{"HostIp": None, "HostPort": None}]}, [B(80)]),
        ({"80/tcp": None}, []),
        ({"80/tcp": []}, []),
        ({"53/udp": [{"HostIp": "::1", "HostPort": "5353"}]}, [B(53, "udp", "::1", 5353)]),
        (None, []),
    ],
)
def test_from_engine(shape, expected):
    assert from_engine(shape) == expected


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"x/tcp": []}, "Invalid containerPort: x"),
        ({"80/icmp": []}, "Invalid proto: icmp"),
        ({"80/tcp": [{"HostPort": "http"}]}, "Invalid hostPort: http"),
        ({"80/tcp": [{"HostIp": "nope"}]}, "Invalid ip address: nope"),
        ({"80/tcp": "8080"}, "PortBindings['80/tcp']: expected a list of bindings"),
    ],
)
def test_from_engine_errors(shape, message):
    with pytest.raises(InvalidArgument) as info:
        from_engine(shape)
    assert str(info.value) == message


def test_port_keys_and_expose():
    assert parse_port_key("80/tcp") == (80, 80, "tcp")
    assert parse_port_key("8000-8002/UDP") == (8000, 8002, "udp")
    assert parse_port_key("443") == (443, 443, "tcp")
    assert parse_expose("8000-8002/udp") == ["8000/udp", "8001/udp", "8002/udp"]
    assert parse_expose("80") == ["80/tcp"]
    with pytest.raises(InvalidArgument, match="invalid port format for --expose: 1:80"):
        parse_expose("1:80")
    with pytest.raises(InvalidArgument, match="invalid range format for --expose: 9-8"):
        parse_expose("9-8")


def test_publish_all():
    assert publish_all(["80/tcp", "53/udp"]) == [B(80), B(53, "udp")]
    assert publish_all(["80/tcp"], host_ip="127.0.0.1") == [B(80, ip="127.0.0.1")]


def test_local_port_range():
    assert parse_local_port_range("32768\t60999\n") == (32768, 60999)
    assert parse_local_port_range("49153 60999") == (49153, 60999)
    with pytest.raises(InvalidArgument):
        parse_local_port_range("60999 1024")
    with pytest.raises(InvalidArgument):
        parse_local_port_range("junk")
    assert DEFAULT_EPHEMERAL_RANGE == (49153, 60999)


def test_choose_free_port_is_sequential_and_wraps():
    taken = {49153, 49154}
    assert choose_free_port(lambda p: p not in taken, 49153, 49160) == 49155
    # Resumes after the last port handed out, not at the first free one.
    assert choose_free_port(lambda p: True, 49153, 49160, after=49155) == 49156
    # Wraps to the start of the range.
    assert choose_free_port(lambda p: p not in taken, 49153, 49160, after=49160) == 49155
    assert choose_free_port(lambda p: p in {49154}, 49153, 49160, after=49157) == 49154
    assert choose_free_port(lambda p: False, 49153, 49160) is None
    # An `after` outside the range starts at the beginning.
    assert choose_free_port(lambda p: True, 8000, 8010, after=60000) == 8000


def test_resolve_host_port():
    seen = []

    def is_free(proto, ip, port):
        seen.append((proto, ip, port))
        return port not in (8080, 49153)

    assert resolve_host_port(B(80, start=8081), is_free) == 8081
    assert seen == [("tcp", "", 8081)]
    assert resolve_host_port(B(53, "udp", "127.0.0.1"), is_free) == 49154
    assert seen[-1] == ("udp", "127.0.0.1", 49154)
    assert resolve_host_port(B(80, start=8079, end=8081), is_free) == 8079
    assert resolve_host_port(B(80, start=8079, end=8081), is_free, after=8079) == 8081
    assert resolve_host_port(B(80), is_free, ephemeral=(30000, 30010), after=30003) == 30004


def test_resolve_host_port_errors():
    with pytest.raises(SystemFailure) as info:
        resolve_host_port(B(80, start=8080), lambda *a: False)
    assert str(info.value) == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    assert info.value.errno == 98
    with pytest.raises(SystemFailure, match=r"Bind for \[::1\]:8080 failed: port is already allocated"):
        resolve_host_port(B(80, ip="::1", start=8080), lambda *a: False)
    with pytest.raises(SystemFailure, match="all ports are allocated"):
        resolve_host_port(B(80, start=8000, end=8002), lambda *a: False)

"""docker's flag value parsers (go-units, nat, opts, term) and the session's detach matcher, as pure functions."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ketch.cli import opts
from ketch.cli.commands.ps import displayable_ports, go_quote
from ketch.cli.commands.stats import bytes_size
from ketch.cli.main import CommandError, _build
from ketch.cli.session import DetachMatcher


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        ("ctrl-x,y", b"\x18y"),
        ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x00\x1b\x1c\x1d\x1e\x1f"),
        ("a,DEL", b"a\x7f"),
    ],
)
def test_detach_keys(text: str, expected: bytes) -> None:
    assert opts.parse_detach_keys(text) == expected


@pytest.mark.parametrize(("text", "bad"), [("ctrl-P", "ctrl-P"), ("ctrl-p,,x", ""), ("ab", "ab")])
def test_detach_keys_errors(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"^Unknown character: '{bad}'$"):
        opts.parse_detach_keys(text)


def test_detach_matcher_holds_back_a_partial_sequence() -> None:
    matcher = DetachMatcher(b"\x10\x11")
    assert matcher.feed(b"ab\x10") == (b"ab", False)
    assert matcher.feed(b"c") == (b"\x10c", False)  # not the sequence after all: the held byte goes out
    assert matcher.feed(b"\x10\x10") == (b"\x10", False)
    assert matcher.feed(b"\x11rest") == (b"", True)
    assert DetachMatcher(b"\x18y").feed(b"x\x18y") == (b"x", True)


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_ENV", "set")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    path = tmp_path / "env"
    path.write_bytes(
        b'\xef\xbb\xbf# comment\n\n  A=1\nB= spaced value \nC=x=y\nFROM_ENV\nUNSET_VAR\nD="quoted"\r\n'
    )
    assert opts.read_env_file(str(path)) == [
        "A=1", "B= spaced value ", "C=x=y", "FROM_ENV=set", 'D="quoted"',
    ]  # fmt: skip
    bad = tmp_path / "bad"
    bad.write_text("MY VAR=1\n")
    with pytest.raises(
        ValueError, match=r"^poorly formatted environment: variable 'MY VAR' contains whitespaces$"
    ):
        opts.read_env_file(str(bad))
    bad.write_text("E\t=1\n")
    with pytest.raises(ValueError, match="variable 'E\t' contains whitespaces"):
        opts.read_env_file(str(bad))
    bad.write_text("=1\n")
    with pytest.raises(ValueError, match="no variable name on line '=1'"):
        opts.read_env_file(str(bad))
    bad.write_bytes(b"A=\xff\n")
    with pytest.raises(ValueError, match="contains invalid utf8 bytes at line 1: \\[65 61 255\\]"):
        opts.read_env_file(str(bad))
    assert opts.read_label_file(str(path))[:2] == ["A=1", "B= spaced value "]
    assert "FROM_ENV=set" not in opts.read_label_file(str(path))
    assert opts.read_kv_env([str(path)], ["X", "FROM_ENV", "Y=2"])[-3:] == ["X", "FROM_ENV=set", "Y=2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512m", 512 << 20), ("1.5g", 3 << 29), ("1024", 1024), ("2 GiB", 2 << 30), ("10KB", 10240), ("1b", 1)],
)
def test_ram_in_bytes(text: str, expected: int) -> None:
    assert opts.ram_in_bytes(text) == expected


@pytest.mark.parametrize("text", ["abc", "-1", "1x", "", "1.5.5m"])
def test_ram_in_bytes_errors(text: str) -> None:
    with pytest.raises(ValueError):
        opts.ram_in_bytes(text)


def test_cpus_ulimit_restart() -> None:
    assert (opts.parse_cpus("1.5"), opts.parse_cpus("3/2"), opts.parse_cpus("0.000000001")) == (
        1500000000,
    ) * 2 + (1,)
    with pytest.raises(ValueError, match=re.escape("value is too precise")):
        opts.parse_cpus("0.0000000001")
    assert opts.parse_ulimit("nofile=1024:2048") == {"Name": "nofile", "Hard": 2048, "Soft": 1024}
    assert opts.parse_ulimit("core=-1") == {"Name": "core", "Hard": -1, "Soft": -1}
    for text, message in (
        ("nofile", "invalid ulimit argument: nofile"),
        ("files=1", "invalid ulimit type: files"),
        ("nofile=1:2:3", "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"),
        ("nofile=x", 'strconv.ParseInt: parsing "x": invalid syntax'),
    ):
        with pytest.raises(ValueError) as caught:
            opts.parse_ulimit(text)
        assert str(caught.value) == message
    assert opts.parse_restart("on-failure:5") == {"Name": "on-failure", "MaximumRetryCount": 5}
    with pytest.raises(ValueError, match="maximum retry count must be an integer"):
        opts.parse_restart("on-failure:x")


def test_ports() -> None:
    exposed, bindings = opts.parse_ports(
        [
            "80",
            "8080:80",
            "127.0.0.1:9000-9001:90-91/udp",
            "[::1]:53:53/udp",
            "7000-7002:70",
            "published=81,target=82",
        ],
        ["100/udp", "200-201"],
    )
    assert list(exposed) == ["100/udp", "200/tcp", "201/tcp", "53/udp", "70/tcp", "80/tcp", "82/tcp", "90/udp",
                             "91/udp"]  # fmt: skip
    assert bindings["80/tcp"] == [{"HostIp": "", "HostPort": ""}, {"HostIp": "", "HostPort": "8080"}]
    assert bindings["91/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "9001"}]
    assert bindings["53/udp"] == [{"HostIp": "::1", "HostPort": "53"}]
    assert bindings["70/tcp"] == [{"HostIp": "", "HostPort": "7000-7002"}]
    assert bindings["82/tcp"] == [{"HostIp": "", "HostPort": "81"}]
    for spec, message in (
        ("abc", "Invalid containerPort: abc"),
        ("1.2.3:80:80", "Invalid ip address: 1.2.3"),
        ("80/icmp", "Invalid proto: icmp"),
        ("8000-8001:80-82", "Invalid ranges specified for container and host Ports: 80-82 and 8000-8001"),
        ("x:80", "Invalid hostPort: x"),
    ):
        with pytest.raises(ValueError) as caught:
            opts.parse_ports([spec], [])
        assert str(caught.value) == message
    with pytest.raises(ValueError, match="invalid port format for --expose: 1:2"):
        opts.parse_ports([], ["1:2"])


def test_mounts_devices_sysctls() -> None:
    assert opts.parse_mount("type=volume,source=data,target=/d,volume-nocopy,volume-label=a=b,volume-driver=local") == {
        "Type": "volume", "Source": "data", "Target": "/d",
        "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}, "DriverConfig": {"Name": "local"}},
    }  # fmt: skip
    assert opts.parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1770},
    }  # fmt: skip
    assert opts.parse_mount('"type=bind","src=/a,b",target=/c,bind-propagation=rshared,ro=false') == {
        "Type": "bind", "Source": "/a,b", "Target": "/c", "BindOptions": {"Propagation": "rshared"},
    }  # fmt: skip
    for text, message in (
        ("type=bind,src=/a", "target is required"),
        ("type=bind,target=/a,volume-nocopy", "cannot mix 'volume-*' options with mount type 'bind'"),
        ("target=/a,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
        ("target=/a,readonly=maybe", "invalid value for readonly: maybe"),
        ("target", "invalid field 'target' must be a key=value pair"),
    ):
        with pytest.raises(ValueError) as caught:
            opts.parse_mount(text)
        assert str(caught.value) == message
    assert opts.validate_device("/dev/sda:/dev/xvda:rw") == "/dev/sda:/dev/xvda:rw"
    assert opts.parse_device("/dev/sda:rw") == {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda",
                                                "CgroupPermissions": "rw"}  # fmt: skip
    with pytest.raises(ValueError, match=re.escape("dev/x is not an absolute path")):
        opts.validate_device("/dev/a:dev/x")
    with pytest.raises(ValueError, match=re.escape("bad mode specified: rwx")):
        opts.validate_device("/dev/a:/dev/b:rwx")
    assert opts.validate_sysctl("net.core.somaxconn=1024") == "net.core.somaxconn=1024"
    with pytest.raises(ValueError, match=r"^sysctl 'kernel\.pid_max=1' is not whitelisted$"):
        opts.validate_sysctl("kernel.pid_max=1")


def test_security_opt_inlines_a_seccomp_profile(tmp_path: Path) -> None:
    profile = tmp_path / "p.json"
    profile.write_text('{\n  "defaultAction": "SCMP_ACT_ERRNO",\n  "names": ["é"]\n}\n')
    assert opts.parse_security_opts(["no-new-privileges", f"seccomp={profile}", "label:disable"]) == [
        "no-new-privileges", 'seccomp={"defaultAction":"SCMP_ACT_ERRNO","names":["é"]}', "label:disable",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r'^Invalid --security-opt: "bogus"$'):
        opts.parse_security_opts(["bogus"])


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h30m", 5400.0), ("300ms", 0.3), ("-1.5h", -5400.0), ("0", 0.0), ("1m0.5s", 60.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert opts.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10", 'time: missing unit in duration "10"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("", 'time: invalid duration ""'),
    ],
)
def test_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        opts.parse_duration(text)
    assert str(caught.value) == message


def test_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        now = 1795346467.7
        assert opts.get_timestamp("10m", now) == "1795345867"
        assert opts.get_timestamp("1795346467", now) == "1795346467"
        assert opts.get_timestamp("1795346467.123", now) == "1795346467.123"
        assert opts.get_timestamp("2026-11-22T11:21:26.966003011Z", now) == "1795346486.966003011"
        assert opts.get_timestamp("2026-11-22T12:21:26+01:00", now) == "1795346486.000000000"
        assert opts.get_timestamp("2026-11-22T12:21:26", now) == "1795346486.000000000"  # local: Paris, UTC+1
        assert opts.get_timestamp("2026-11-22T12:21", now) == "1795346460.000000000"
        assert opts.get_timestamp("2026-11-22", now) == "1795302000.000000000"
        for bad, message in (
            ("yesterday", 'failed to parse value as time or duration: "yesterday"'),
            ("2026-13-01", 'parsing time "2026-13-01": cannot parse'),
        ):
            with pytest.raises(ValueError) as caught:
                opts.get_timestamp(bad, now)
            assert str(caught.value) == message
    finally:
        monkeypatch.undo()
        time.tzset()


def test_formatting_helpers() -> None:
    assert go_quote("sh -c 'x'\t\"y\"\\ \x01 é") == '"sh -c \'x\'\\t\\"y\\"\\\\ \\x01 é"'
    assert displayable_ports([]) == ""
    assert displayable_ports([{"PrivatePort": p, "Type": "tcp"} for p in (3, 1, 2, 5)]) == "1-3/tcp, 5/tcp"
    assert (bytes_size(831488), bytes_size(25276510208), bytes_size(0)) == ("812KiB", "23.54GiB", "0B")


def _parse(*argv: str) -> object:
    parser, _ = _build()
    args, extra = parser.parse_known_args(list(argv))
    assert extra == []
    return args


def test_go_style_flags() -> None:
    args = _parse(
        "run", "--rm=true", "-d=false", "--sig-proxy=false", "-it", "-p80:80", "-eA=1", "img", "-d", "--rm"
    )
    assert (args.rm, args.detach, args.sig_proxy, args.interactive, args.tty) == (
        True,
        False,
        False,
        True,
        True,
    )  # type: ignore[attr-defined]
    assert (args.publish, args.env, args.cmd) == (["80:80"], ["A=1"], ["-d", "--rm"])  # type: ignore[attr-defined]
    assert {"rm", "detach", "sig_proxy", "interactive", "tty", "publish", "env"} <= args.changed  # type: ignore[attr-defined]
    args = _parse("run", "--init=false", "img")
    assert (args.init, "init" in args.changed) == (False, True)  # type: ignore[attr-defined]
    args = _parse("exec", "-it", "c", "ls", "-la", "--", "x")
    assert (args.container, args.cmd) == ("c", ["ls", "-la", "--", "x"])  # type: ignore[attr-defined]
    args = _parse("ps", "-a", "--no-trunc=false", "-q")
    assert (args.all, args.no_trunc, args.quiet) == (True, False, True)  # type: ignore[attr-defined]
    with pytest.raises(CommandError) as caught:
        _parse("run", "-d=yes", "img")
    assert caught.value.status == 125
    assert str(caught.value).startswith('invalid argument "yes" for "-d, --detach" flag: strconv.ParseBool')
    parser, _ = _build()
    assert parser.parse_known_args(["run", "--priv", "img"])[1] == [
        "--priv"
    ]  # no abbreviations, as in docker


def test_env_lookup_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETCH_TEST_VALUE", "v")
    assert opts.validate_env("KETCH_TEST_VALUE") == "KETCH_TEST_VALUE=v"
    assert opts.validate_env("KETCH_TEST_MISSING_" + str(os.getpid())) == "KETCH_TEST_MISSING_" + str(
        os.getpid()
    )

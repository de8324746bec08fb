"""The container model: decoding the Engine API's JSON with Docker's messages, values checked as moby checks
them, Docker's defaults at create, and the state record's times."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ketch.common.errors import InvalidArgument
from ketch.engine.model import (
    ZERO_TIME,
    ContainerConfig,
    ContainerState,
    Health,
    HealthResult,
    HostConfig,
    HostLimits,
    Resources,
    Status,
    format_time,
    parse_create_body,
    parse_time,
)

HOST = HostLimits(ncpu=2, cpus="0-1", mems="0")
MB = 1024 * 1024

# What the 20.10 docker CLI sends for `docker run -d --name x busybox sh -c ...` (from a recorded trace).
CLI_20_10_BODY: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": ["sh", "-c", "echo hi"], "Image": "busybox:local", "Volumes": {}, "WorkingDir": "",
    "Entrypoint": None, "OnBuild": None, "Labels": {},
    "HostConfig": {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}}, "NetworkMode": "default",
        "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None, "CgroupnsMode": "", "Dns": [],
        "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "",
        "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 0,
        "ConsoleSize": [0, 0], "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None,
        "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0,
        "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0,
        "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": -1, "OomKillDisable": False,
        "PidsLimit": 0, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
    },
    "NetworkingConfig": {"EndpointsConfig": {}},
}  # fmt: skip


def parse(body: Any) -> tuple[ContainerConfig, HostConfig]:
    return parse_create_body(body, host=HOST)


def hc(**fields: Any) -> dict[str, Any]:
    return {"Image": "busybox", "HostConfig": fields}


W = "into Go struct field ContainerConfigWrapper"
H = W + ".HostConfig"
BAD: list[tuple[Any, str]] = [
    # JSON types, worded as Go's encoding/json words them
    ([], "json: cannot unmarshal array into Go value of type runconfig.ContainerConfigWrapper"),
    ({"Tty": "yes"}, f"json: cannot unmarshal string {W}.Tty of type bool"),
    ({"Hostname": 5}, f"json: cannot unmarshal number {W}.Hostname of type string"),
    ({"Env": "A=1"}, f"json: cannot unmarshal string {W}.Env of type []string"),
    ({"Env": ["A=1", 2]}, f"json: cannot unmarshal number {W}.Env of type string"),
    ({"Cmd": 5}, "json: cannot unmarshal number into Go value of type string"),
    ({"Entrypoint": ["sh", {}]}, "json: cannot unmarshal array into Go value of type string"),
    ({"Labels": []}, f"json: cannot unmarshal array {W}.Labels of type map[string]string"),
    ({"Labels": {"a": 1}}, f"json: cannot unmarshal number {W}.Labels of type string"),
    ({"ExposedPorts": {"80/tcp": 1}}, f"json: cannot unmarshal number {W}.ExposedPorts of type struct {{}}"),
    ({"ExposedPorts": ["80/tcp"]}, f"json: cannot unmarshal array {W}.ExposedPorts of type nat.PortSet"),
    ({"StopTimeout": True}, f"json: cannot unmarshal bool {W}.StopTimeout of type int"),
    ({"Healthcheck": "x"}, f"json: cannot unmarshal string {W}.Healthcheck of type container.HealthConfig"),
    ({"Healthcheck": {"Interval": "1s"}},
     f"json: cannot unmarshal string {W}.Healthcheck.Interval of type time.Duration"),
    ({"HostConfig": []}, f"json: cannot unmarshal array {W}.HostConfig of type container.HostConfig"),
    (hc(Memory="1g"), f"json: cannot unmarshal string {H}.Memory of type int64"),
    (hc(Memory=1.5), f"json: cannot unmarshal number 1.5 {H}.Memory of type int64"),
    (hc(Memory=True), f"json: cannot unmarshal bool {H}.Memory of type int64"),
    (hc(PidsLimit=2**63), f"json: cannot unmarshal number {2**63} {H}.PidsLimit of type int64"),
    (hc(BlkioWeight=-1), f"json: cannot unmarshal number -1 {H}.BlkioWeight of type uint16"),
    (hc(BlkioWeight=70000), f"json: cannot unmarshal number 70000 {H}.BlkioWeight of type uint16"),
    (hc(RestartPolicy={"MaximumRetryCount": "3"}),
     f"json: cannot unmarshal string {H}.RestartPolicy.MaximumRetryCount of type int"),
    (hc(RestartPolicy="always"),
     f"json: cannot unmarshal string {H}.RestartPolicy of type container.RestartPolicy"),
    (hc(LogConfig={"Config": {"max-size": 10}}), f"json: cannot unmarshal number {H}.LogConfig.Config of type string"),
    (hc(Devices={}), f"json: cannot unmarshal object {H}.Devices of type []container.DeviceMapping"),
    (hc(Devices=[{"PathOnHost": 1}]), f"json: cannot unmarshal number {H}.Devices.PathOnHost of type string"),
    (hc(Ulimits=[5]), f"json: cannot unmarshal number {H}.Ulimits of type units.Ulimit"),
    (hc(Ulimits=[{"Name": "nofile", "Soft": "1"}]), f"json: cannot unmarshal string {H}.Ulimits.Soft of type int64"),
    (hc(CapAdd=[1]), "json: cannot unmarshal array into Go value of type string"),
    (hc(ConsoleSize=[-1, 0]), f"json: cannot unmarshal number -1 {H}.ConsoleSize of type uint"),
    (hc(Init="yes"), f"json: cannot unmarshal string {H}.Init of type bool"),
    # runconfig's cross-checks of Config and HostConfig
    (hc(NetworkMode="container:"), "Invalid network mode: invalid container format container:<name|id>"),
    ({"Hostname": "h", "HostConfig": {"NetworkMode": "container:db"}},
     "conflicting options: hostname and the network mode"),
    ({"ExposedPorts": {"80/tcp": {}}, "HostConfig": {"NetworkMode": "container:db"}},
     "conflicting options: port exposing and the container type network mode"),
    ({"Hostname": "h", "HostConfig": {"UTSMode": "host"}}, "conflicting options: hostname and the UTS mode"),
    (hc(Isolation="hyperv"), "Invalid isolation: \"hyperv\" - linux only supports 'default'"),
    # Config values (daemon/container.go validateContainerConfig)
    ({"WorkingDir": "app"}, "the working directory 'app' is invalid, it needs to be an absolute path"),
    ({"StopSignal": "SIGFOO"}, "Invalid signal: SIGFOO"),
    ({"StopSignal": "0"}, "Invalid signal: 0"),
    ({"Env": ["A=1", "=x"]}, "invalid environment variable: =x"),
    ({"Env": [" =x"]}, "invalid environment variable:  =x"),
    ({"Healthcheck": {"Interval": 999_999}}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"Timeout": 1}}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"Retries": -1}}, "Retries in Healthcheck cannot be negative"),
    ({"Healthcheck": {"StartPeriod": -5}}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    # HostConfig values (validateHostConfig)
    (hc(AutoRemove=True, RestartPolicy={"Name": "always"}), "can't create 'AutoRemove' container with restart policy"),
    (hc(RestartPolicy={"Name": "always", "MaximumRetryCount": 2}),
     "maximum retry count cannot be used with restart policy 'always'"),
    (hc(RestartPolicy={"Name": "unless-stopped", "MaximumRetryCount": -1}),
     "maximum retry count cannot be used with restart policy 'unless-stopped'"),
    (hc(RestartPolicy={"Name": "on-failure", "MaximumRetryCount": -2}), "maximum retry count cannot be negative"),
    (hc(RestartPolicy={"Name": "something"}), "invalid restart policy 'something'"),
    (hc(CapAdd=["NET_ADMIN", "FOO"]), 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    (hc(CapDrop="cap_bar"), 'invalid CapDrop: unknown capability: "CAP_BAR"'),
    # resources (verifyPlatformContainerResources)
    (hc(Memory=1024), "Minimum memory limit allowed is 6MB"),
    (hc(Memory=-1), "Minimum memory limit allowed is 6MB"),
    (hc(Memory=8 * MB, MemorySwap=7 * MB), "Minimum memoryswap limit should be larger than memory limit, see usage"),
    (hc(MemorySwap=8 * MB), "You should always set the Memory limit when using Memoryswap limit, see usage"),
    (hc(MemorySwappiness=101), "Invalid value: 101, valid memory swappiness range is 0-100"),
    (hc(MemorySwappiness=-2), "Invalid value: -2, valid memory swappiness range is 0-100"),
    (hc(MemoryReservation=MB), "Minimum memory reservation allowed is 6MB"),
    (hc(Memory=7 * MB, MemoryReservation=8 * MB),
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    (hc(NanoCpus=10**9, CpuPeriod=100_000), "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
    (hc(NanoCpus=10**9, CpuQuota=50_000), "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
    (hc(NanoCpus=3 * 10**9), "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    (hc(NanoCpus=-1), "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    (hc(CpuPeriod=999), "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    (hc(CpuPeriod=1_000_001), "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    (hc(CpuQuota=999), "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    (hc(CpusetCpus="0-a"), "Invalid value 0-a for cpuset cpus: invalid format: 0-a"),
    (hc(CpusetCpus="1-0"), "Invalid value 1-0 for cpuset cpus: invalid format: 1-0"),
    (hc(CpusetCpus="0,,1"), "Invalid value 0,,1 for cpuset cpus: invalid format: 0,,1"),
    (hc(CpusetCpus="9000"), "Invalid value 9000 for cpuset cpus: value of out range, maximum is 8192"),
    (hc(CpusetCpus="0-3"), "Requested CPUs are not available - requested 0-3, available: 0-1"),
    (hc(CpusetMems="1"), "Requested memory nodes are not available - requested 1, available: 0"),
    (hc(BlkioWeight=5), "Range of blkio weight is from 10 to 1000"),
    (hc(BlkioWeight=1001), "Range of blkio weight is from 10 to 1000"),
    # platform settings (verifyPlatformContainerSettings)
    (hc(IpcMode="bogus"), "invalid IPC mode: bogus"),
    (hc(PidMode="private"), "invalid PID mode: private"),
    (hc(PidMode="container:"), "invalid PID mode: container:"),
    (hc(ShmSize=-1), "SHM size can not be less than 0"),
    (hc(UTSMode="private"), "invalid UTS mode: private"),
    (hc(OomScoreAdj=1001), "Invalid value 1001, range for oom score adj is [-1000, 1000]"),
    (hc(OomScoreAdj=-1001), "Invalid value -1001, range for oom score adj is [-1000, 1000]"),
    (hc(Tmpfs={"/": ""}), "invalid specification: destination can't be '/'"),
    (hc(Tmpfs={"/tmp/..": ""}), "invalid specification: destination can't be '/'"),
    (hc(Tmpfs={"tmp": "size=1m"}), "invalid mount path: 'tmp' mount path must be absolute"),
    (hc(CgroupnsMode="shared"), "invalid cgroup namespace mode: shared"),
    # security and log options
    (hc(SecurityOpt=["nonsense"]), 'invalid --security-opt 1: "nonsense"'),
    (hc(SecurityOpt=["bogus=1"]), 'invalid --security-opt 2: "bogus=1"'),
    (hc(SecurityOpt=["no-new-privileges=maybe"]), 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    (hc(LogConfig={"Type": "syslog"}), "logger: no log driver named 'syslog' is registered"),
    (hc(LogConfig={"Type": "json-file", "Config": {"max-sise": "1m"}}),
     "unknown log opt 'max-sise' for json-file log driver"),
    (hc(LogConfig={"Type": "json-file", "Config": {"mode": "fast"}}), "logger: logging mode not supported: fast"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m[:60] for _, m in BAD])
def test_bad_input_is_refused_with_dockers_message(body: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(body)
    assert str(info.value) == message
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # a type error anywhere comes before any value check
        ({"WorkingDir": "rel", "HostConfig": {"Memory": "x"}},
         f"json: cannot unmarshal string {H}.Memory of type int64"),
        # Config's values come before HostConfig's
        ({"WorkingDir": "rel", "HostConfig": {"Memory": 1}},
         "the working directory 'rel' is invalid, it needs to be an absolute path"),
        # the cross-checks come before Config's values
        ({"WorkingDir": "rel", "Hostname": "h", "HostConfig": {"UTSMode": "host"}},
         "conflicting options: hostname and the UTS mode"),
        # resources before the platform settings, those before the log options
        (hc(ShmSize=-1, Memory=1, LogConfig={"Type": "x"}), "Minimum memory limit allowed is 6MB"),
        (hc(ShmSize=-1, LogConfig={"Type": "x"}), "SHM size can not be less than 0"),
    ],
)  # fmt: skip
def test_errors_come_in_mobys_order(body: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(body)
    assert str(info.value) == message


def test_the_docker_cli_body_parses() -> None:
    config, host_config = parse(CLI_20_10_BODY)
    assert config.cmd == ("sh", "-c", "echo hi") and config.image == "busybox:local"
    assert config.env is None and config.labels == {} and config.volumes == ()
    assert host_config.network_mode == "default"
    assert host_config.restart_policy.name == "no" and host_config.restart_policy.is_none
    assert host_config.resources.memory_swappiness is None  # the CLI's -1 means "not set"
    assert host_config.resources.pids_limit == 0 and host_config.resources.devices == ()
    assert host_config.log_config.type == "" and host_config.log_config.config == {}


GOOD: list[tuple[dict[str, Any], Any]] = [
    ({"tty": True, "cmd": "top"}, lambda c, h: c.tty and c.cmd == ("top",)),  # keys match case-insensitively
    ({"Tty": None, "Env": None, "HostConfig": {"Memory": None}}, lambda c, h: not c.tty and h.resources.memory == 0),
    ({"Env": ["A=1", "B", "C="]}, lambda c, h: c.env == ("A=1", "B", "C=")),
    ({"Entrypoint": "sh"}, lambda c, h: c.entrypoint == ("sh",)),
    ({"StopSignal": "SIGTERM"}, None), ({"StopSignal": "term"}, None), ({"StopSignal": "15"}, None),
    ({"StopSignal": "RTMIN+3"}, None), ({"WorkingDir": "/srv"}, None),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 10**6, "Retries": 0}},
     lambda c, h: c.healthcheck.interval == 10**6 and c.healthcheck.test == ("CMD", "true")),
    (hc(Memory=6 * MB), None), (hc(Memory=8 * MB, MemorySwap=-1), None),
    (hc(Memory=8 * MB, MemorySwap=8 * MB, MemoryReservation=6 * MB), None),
    (hc(MemorySwappiness=0), lambda c, h: h.resources.memory_swappiness == 0),
    (hc(NanoCpus=2 * 10**9), None), (hc(NanoCpus=10**7), None), (hc(CpuPeriod=1000, CpuQuota=1000), None),
    (hc(CpuPeriod=100_000, CpuQuota=-1), None), (hc(CpusetCpus="0,1"), None), (hc(CpusetCpus="+1"), None),
    (hc(CpusetMems="0"), None), (hc(BlkioWeight=10), None),
    (hc(RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 5}), None),
    (hc(RestartPolicy={"Name": "", "MaximumRetryCount": 123}), None),  # moby allows this, for old clients
    (hc(AutoRemove=True, RestartPolicy={"Name": "no"}), None),
    (hc(CapAdd=["net_admin", "CAP_SYS_TIME", "ALL"], CapDrop=["all"]), None),
    (hc(IpcMode="shareable"), None), (hc(IpcMode="container:db"), None), (hc(PidMode="host"), None),
    (hc(PidMode="container:db"), None), (hc(UTSMode="host"), None), (hc(CgroupnsMode="private"), None),
    (hc(Isolation="Default"), None), (hc(OomScoreAdj=-1000), None),
    (hc(Tmpfs={"/run": "size=64m"}), lambda c, h: h.tmpfs == {"/run": "size=64m"}),
    (hc(SecurityOpt=["no-new-privileges", "no-new-privileges=true", "seccomp=unconfined", "label:disable",
                     "apparmor=unconfined", "disable"]), None),
    (hc(LogConfig={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3", "mode": "blocking"}}), None),
    (hc(LogConfig={"Type": "none"}), None),
    (hc(Ulimits=[{"Name": "nofile", "Soft": 1024, "Hard": 2048}]),
     lambda c, h: h.resources.ulimits[0].name == "nofile" and h.resources.ulimits[0].hard == 2048),
    (hc(Devices=[{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}]),
     lambda c, h: h.resources.devices[0].path_on_host == "/dev/fuse"),
    (hc(ConsoleSize=[24, 80, 9]), lambda c, h: h.console_size == (24, 80)),
    (hc(Sysctls={"net.ipv4.ip_forward": "1"}, Init=True), lambda c, h: h.init is True),
    ({"Hostname": "h", "HostConfig": {"NetworkMode": "host"}}, None),
]  # fmt: skip


@pytest.mark.parametrize(("body", "check"), GOOD)
def test_good_input_is_accepted(body: dict[str, Any], check: Any) -> None:
    config, host_config = parse(body)
    if check is not None:
        assert check(config, host_config)


def test_host_dependent_checks_are_skipped_without_a_host() -> None:
    body = hc(NanoCpus=64 * 10**9, CpusetCpus="60-63", CpusetMems="7")
    _, host_config = parse_create_body(body, host=None)
    assert host_config.resources.nano_cpus == 64 * 10**9
    with pytest.raises(InvalidArgument):
        parse(body)


def test_update_may_set_swap_alone() -> None:
    resources = Resources(memory_swap=8 * MB)
    resources.verify(HOST, update=True)
    with pytest.raises(InvalidArgument, match="You should always set the Memory limit"):
        resources.verify(HOST)


def test_round_trip() -> None:
    body: dict[str, Any] = {
        "Hostname": "web", "User": "1000:1000", "AttachStdout": True, "ExposedPorts": {"80/tcp": {}},
        "Tty": True, "OpenStdin": True, "Env": ["A=1"], "Cmd": ["nginx"], "Image": "nginx:1",
        "Healthcheck": {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 10**9, "Retries": 3},
        "Volumes": {"/data": {}}, "WorkingDir": "/srv", "Entrypoint": ["/init"], "Labels": {"b": "2", "a": "1"},
        "StopSignal": "SIGQUIT", "StopTimeout": 3,
        "HostConfig": {
            "Binds": ["/a:/b"], "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
            "NetworkMode": "bridge", "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
            "CapAdd": ["NET_ADMIN"], "CapDrop": ["MKNOD"], "GroupAdd": ["audio"], "OomScoreAdj": 10,
            "Privileged": True, "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"],
            "Tmpfs": {"/run": ""}, "ShmSize": 128 * MB, "Sysctls": {"net.core.somaxconn": "1024"},
            "Runtime": "runc", "ConsoleSize": [24, 80], "CpuShares": 512, "Memory": 64 * MB,
            "CpuPeriod": 100_000, "CpuQuota": 50_000, "CpusetCpus": "0", "BlkioWeight": 300,
            "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/n", "CgroupPermissions": "rw"}],
            "MemoryReservation": 32 * MB, "MemorySwap": 128 * MB, "MemorySwappiness": 10, "OomKillDisable": True,
            "PidsLimit": 100, "Ulimits": [{"Name": "nproc", "Soft": 10, "Hard": 20}], "Init": True,
        },
    }  # fmt: skip
    config, host_config = parse(body)
    again_config = ContainerConfig.from_api(config.to_api())
    again_host = HostConfig.from_api(host_config.to_api(), host=HOST)
    assert (again_config, again_host) == (config, host_config)
    out = config.to_api()
    assert out["Labels"] == {"a": "1", "b": "2"} and out["ExposedPorts"] == {"80/tcp": {}}
    assert list(out)[:3] == ["Hostname", "Domainname", "User"]  # Go's field order
    assert host_config.to_api()["Ulimits"] == [{"Name": "nproc", "Hard": 20, "Soft": 10}]
    # empty omitempty fields read back as absent, so the round trip holds for them too
    sparse, _ = parse({"ExposedPorts": {}, "Healthcheck": {"Test": []}})
    assert sparse.exposed_ports is None and ContainerConfig.from_api(sparse.to_api()) == sparse


def test_configs_are_immutable() -> None:
    config, _ = parse({"Labels": {"a": "1"}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tty = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.labels["a"] = "2"  # type: ignore[index]
    assert dataclasses.replace(config, tty=True).tty


def test_create_defaults() -> None:
    _, host_config = parse(hc(Memory=64 * MB, CpuShares=1, PidsLimit=0))
    filled = host_config.with_create_defaults()
    res = filled.resources
    assert res.memory_swap == 128 * MB and res.cpu_shares == 2 and res.pids_limit is None
    assert res.oom_kill_disable is False
    assert filled.shm_size == 64 * MB and filled.ipc_mode == "private" and filled.cgroupns_mode == "private"
    assert filled.log_config.type == "json-file" and filled.log_config.config == {}
    assert filled.runtime == "ketch-runtime"
    _, explicit = parse(hc(Memory=64 * MB, MemorySwap=-1, CpuShares=300_000, PidsLimit=5, ShmSize=MB,
                           IpcMode="host", LogConfig={"Type": "none"}))  # fmt: skip
    kept = explicit.with_create_defaults(cgroupns_mode="host")
    assert kept.resources.memory_swap == -1 and kept.resources.cpu_shares == 262144
    assert kept.resources.pids_limit == 5 and kept.shm_size == MB and kept.ipc_mode == "host"
    assert kept.log_config.type == "none" and kept.cgroupns_mode == "host"


def test_host_limits_of_this_machine() -> None:
    limits = HostLimits.current()
    assert limits.ncpu >= 1 and limits.cpus and limits.mems
    Resources(nano_cpus=limits.ncpu * 10**9, cpuset_cpus=limits.cpus).verify(limits)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, ZERO_TIME),
        (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
        (1_700_000_000_120_000_000, "2023-11-14T22:13:20.12Z"),
        (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
        (1_000_000_001, "1970-01-01T00:00:01.000000001Z"),
    ],
)
def test_times_print_as_docker_prints_them(ns: int, text: str) -> None:
    assert format_time(ns) == text
    assert parse_time(text) == ns


def test_parse_time_with_a_zone_and_bad_input() -> None:
    assert parse_time("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000
    assert parse_time("2023-11-14T21:13:20-01:00") == 1_700_000_000_000_000_000
    with pytest.raises(InvalidArgument):
        parse_time("yesterday")


def test_state_defaults_and_health_round_trip() -> None:
    state = ContainerState()
    assert (
        state.status is Status.CREATED and state.pid == 0 and state.started_at == 0 and state.health is None
    )
    health = Health(
        status="unhealthy",
        failing_streak=2,
        log=(HealthResult(start=1_000_000_000, end=1_500_000_000, exit_code=1, output="boom\n"),),
    )
    api = health.to_api()
    assert api["Log"][0] == {"Start": "1970-01-01T00:00:01Z", "End": "1970-01-01T00:00:01.5Z", "ExitCode": 1,
                             "Output": "boom\n"}  # fmt: skip
    assert Health.from_api(api) == health
    assert [str(s) for s in Status] == [
        "created",
        "running",
        "paused",
        "restarting",
        "removing",
        "exited",
        "dead",
    ]

"""``run`` and ``create`` flags, and the ``POST /containers/create`` body they make (docker's opts.go ``parse``).

The body has docker 20.10's keys in docker's order (Go struct order, ``omitempty`` fields only when set), so
the daemon sees what ``docker run`` would have sent. Networking flags are checked as docker checks them (``--dns``
addresses, ``--add-host``, ``--link``) and otherwise passed on: ``NetworkMode`` is the first ``--network``, and
``NetworkingConfig.EndpointsConfig`` carries ``--network-alias``, ``--ip``, ``--ip6`` and ``--link`` for it (left
empty, as docker leaves it, when one network has none of them).

Two kinds of error, worded as docker words them (exit status 125 for both):
- :class:`FlagError`: a flag value that does not parse (``invalid argument "x" for "-m, --memory" flag: ...``);
- :class:`ConfigError`: flags that parse but do not fit together (``Conflicting options: --restart and --rm``).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

__all__ = ["ConfigError", "CreateRequest", "FlagError", "add_create_flags", "build_create", "flag_name"]


class FlagError(Exception):
    def __init__(self, flag: str, value: str, message: str) -> None:
        super().__init__(f'invalid argument "{value}" for "{flag}" flag: {message}')


class ConfigError(Exception):
    pass


# (option strings, kind); dest is the long name with dashes as underscores.
# kinds: bool, str, list (repeatable), and the converted scalars int, uint16, bytes, swap, cpus, duration.
CREATE_FLAGS: list[tuple[tuple[str, ...], str]] = [
    (("--add-host",), "list"),
    (("-a", "--attach"), "list"),
    (("--blkio-weight",), "uint16"),
    (("--blkio-weight-device",), "list"),
    (("--cap-add",), "list"),
    (("--cap-drop",), "list"),
    (("--cgroup-parent",), "str"),
    (("--cgroupns",), "str"),
    (("--cidfile",), "str"),
    (("--cpu-period",), "int"),
    (("--cpu-quota",), "int"),
    (("--cpu-rt-period",), "int"),
    (("--cpu-rt-runtime",), "int"),
    (("-c", "--cpu-shares"), "int"),
    (("--cpus",), "cpus"),
    (("--cpuset-cpus",), "str"),
    (("--cpuset-mems",), "str"),
    (("--device",), "list"),
    (("--device-cgroup-rule",), "list"),
    (("--device-read-bps",), "list"),
    (("--device-read-iops",), "list"),
    (("--device-write-bps",), "list"),
    (("--device-write-iops",), "list"),
    (("--disable-content-trust",), "bool"),
    (("--dns",), "list"),
    (("--dns-option", "--dns-opt"), "list"),
    (("--dns-search",), "list"),
    (("--domainname",), "str"),
    (("--entrypoint",), "str"),
    (("-e", "--env"), "list"),
    (("--env-file",), "list"),
    (("--expose",), "list"),
    (("--group-add",), "list"),
    (("--health-cmd",), "str"),
    (("--health-interval",), "duration"),
    (("--health-retries",), "int"),
    (("--health-start-period",), "duration"),
    (("--health-timeout",), "duration"),
    (("-h", "--hostname"), "str"),
    (("--init",), "bool"),
    (("-i", "--interactive"), "bool"),
    (("--ip",), "str"),
    (("--ip6",), "str"),
    (("--ipc",), "str"),
    (("--isolation",), "str"),
    (("--kernel-memory",), "bytes"),
    (("-l", "--label"), "list"),
    (("--label-file",), "list"),
    (("--link",), "list"),
    (("--link-local-ip",), "list"),
    (("--log-driver",), "str"),
    (("--log-opt",), "list"),
    (("--mac-address",), "str"),
    (("-m", "--memory"), "bytes"),
    (("--memory-reservation",), "bytes"),
    (("--memory-swap",), "swap"),
    (("--memory-swappiness",), "int"),
    (("--mount",), "list"),
    (("--name",), "str"),
    (("--network", "--net"), "list"),
    (("--network-alias", "--net-alias"), "list"),
    (("--no-healthcheck",), "bool"),
    (("--oom-kill-disable",), "bool"),
    (("--oom-score-adj",), "int"),
    (("--pid",), "str"),
    (("--pids-limit",), "int"),
    (("--platform",), "str"),
    (("--privileged",), "bool"),
    (("-p", "--publish"), "list"),
    (("-P", "--publish-all"), "bool"),
    (("--pull",), "str"),
    (("--read-only",), "bool"),
    (("--restart",), "str"),
    (("--rm",), "bool"),
    (("--runtime",), "str"),
    (("--security-opt",), "list"),
    (("--shm-size",), "bytes"),
    (("--stop-signal",), "str"),
    (("--stop-timeout",), "int"),
    (("--storage-opt",), "list"),
    (("--sysctl",), "list"),
    (("--tmpfs",), "list"),
    (("-t", "--tty"), "bool"),
    (("--ulimit",), "list"),
    (("-u", "--user"), "str"),
    (("--userns",), "str"),
    (("--uts",), "str"),
    (("-v", "--volume"), "list"),
    (("--volume-driver",), "str"),
    (("--volumes-from",), "list"),
    (("-w", "--workdir"), "str"),
]
RUN_FLAGS: list[tuple[tuple[str, ...], str]] = [
    (("-d", "--detach"), "bool"),
    (("--detach-keys",), "str"),
    (("--sig-proxy",), "bool"),
]
_DEFAULTS = {"restart": "no", "pull": "missing", "sig_proxy": True, "memory_swappiness": "-1"}


def _dest(names: tuple[str, ...]) -> str:
    """The first long name (``--network-alias``, not its hidden twin ``--net-alias``) as an identifier."""
    return next(n for n in names if n.startswith("--")).lstrip("-").replace("-", "_")


def flag_name(names: tuple[str, ...]) -> str:
    """How docker names a flag in errors: ``-m, --memory`` or ``--memory-swap``."""
    shorts = [n for n in names if not n.startswith("--")]
    longs = [n for n in names if n.startswith("--")]
    return ", ".join([*shorts[:1], *longs[:1]])


_DISPLAY = {_dest(names): flag_name(names) for names, _ in CREATE_FLAGS + RUN_FLAGS}


def add_create_flags(parser: Any, *, run: bool) -> None:
    """Register ``create``'s flags (and ``run``'s own with ``run``), then IMAGE [COMMAND] [ARG...]."""
    import argparse

    for names, kind in CREATE_FLAGS + (RUN_FLAGS if run else []):
        dest = _dest(names)
        if kind == "bool":
            parser.add_argument(*names, dest=dest, action="store_true", default=_DEFAULTS.get(dest, False))
        elif kind == "list":
            parser.add_argument(*names, dest=dest, action="append", default=[])
        else:
            parser.add_argument(*names, dest=dest, default=_DEFAULTS.get(dest))
    parser.add_argument("--help", action="help", help="Print usage")
    parser.add_argument("image")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")


class CreateRequest:
    """What ``create``/``run`` send: the body, the ``name`` and ``platform`` query values, and the pull policy."""

    def __init__(self, body: dict[str, Any], name: str, platform: str, pull: str, cidfile: str) -> None:
        self.body = body
        self.name = name
        self.platform = platform
        self.pull = pull
        self.cidfile = cidfile

    @property
    def config(self) -> dict[str, Any]:
        return self.body

    @property
    def host_config(self) -> dict[str, Any]:
        result: dict[str, Any] = self.body["HostConfig"]
        return result


def _convert(dest: str, value: str, convert: Callable[[str], Any]) -> Any:
    try:
        return convert(value)
    except ValueError as exc:
        raise FlagError(_DISPLAY[dest], value, str(exc)) from None


def _scalar(args: argparse.Namespace, dest: str, kind: str, default: Any = 0) -> Any:
    from ketch.cli import opts

    value = getattr(args, dest)
    if value is None:
        return default
    converters: dict[str, Callable[[str], Any]] = {
        "int": opts.parse_int,
        "uint16": lambda text: opts.parse_uint(text, 16),
        "bytes": opts.ram_in_bytes,
        "swap": opts.parse_mem_swap,
        "cpus": opts.parse_cpus,
        "duration": lambda text: int(opts.parse_duration(text) * 1_000_000_000),
    }
    return _convert(dest, value, converters[kind])


def _each(args: argparse.Namespace, dest: str, convert: Callable[[str], Any]) -> list[Any]:
    return [_convert(dest, value, convert) for value in getattr(args, dest)]


def _attach_streams(values: list[str]) -> set[str]:
    streams: set[str] = set()
    for value in values:
        lowered = value.lower()
        if lowered not in ("stdin", "stdout", "stderr"):
            raise FlagError(_DISPLAY["attach"], value, "valid streams are STDIN, STDOUT and STDERR")
        streams.add(lowered)
    return streams


def _throttle(rate: Callable[[str], int]) -> Callable[[str], dict[str, Any]]:
    def parse(value: str) -> dict[str, Any]:
        path, sep, text = value.partition(":")
        if not sep or not path.startswith("/dev/"):
            raise ValueError(f"bad format: {value}")
        try:
            return {"Path": path, "Rate": rate(text)}
        except ValueError:
            raise ValueError(f"invalid rate for device: {value}. The correct format is <device-path>:<number>"
                             "[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, "
                             "or gb") from None  # fmt: skip

    return parse


def _weight_device(value: str) -> dict[str, Any]:
    from ketch.cli import opts

    path, sep, text = value.partition(":")
    if not sep or not path.startswith("/dev/"):
        raise ValueError(f"bad format: {value}")
    weight = opts.parse_uint(text, 16)
    if weight > 0 and not 10 <= weight <= 1000:
        raise ValueError(f"invalid weight for device: {value}")
    return {"Path": path, "Weight": weight}


def _volume_binds(volumes: list[str]) -> tuple[dict[str, dict[str, Any]], list[str] | None]:
    """``-v`` values: those naming a source (``src:dst[:mode]``) are binds, the rest anonymous volumes."""
    anonymous: dict[str, dict[str, Any]] = {}
    binds: list[str] = []
    for spec in volumes:
        parts = spec.split(":")
        if len(parts) >= 2 and parts[0]:
            host = parts[0]
            if host == "." or host.startswith("./"):
                host = os.path.abspath(host)
            binds.append(host + ":" + spec.split(":", 1)[1])
        else:
            anonymous[spec] = {}
    return anonymous, binds or None


def _healthcheck(args: argparse.Namespace) -> dict[str, Any] | None:
    interval = _scalar(args, "health_interval", "duration")
    timeout = _scalar(args, "health_timeout", "duration")
    start_period = _scalar(args, "health_start_period", "duration")
    retries = _scalar(args, "health_retries", "int")
    has_settings = bool(args.health_cmd or interval or timeout or start_period or retries)
    if args.no_healthcheck:
        if has_settings:
            raise ConfigError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not has_settings:
        return None
    for value, flag in ((interval, "interval"), (timeout, "timeout"), (retries, "retries"),
                        (start_period, "start-period")):  # fmt: skip
        if value < 0:
            raise ConfigError(f"--health-{flag} cannot be negative")
    health: dict[str, Any] = {}
    if args.health_cmd:
        health["Test"] = ["CMD-SHELL", args.health_cmd]
    for key, value in (("Interval", interval), ("Timeout", timeout), ("StartPeriod", start_period),
                       ("Retries", retries)):  # fmt: skip
        if value:
            health[key] = value
    return health


def _endpoint(attachment: dict[str, Any]) -> dict[str, Any]:
    """parseNetworkAttachmentOpt: one network's EndpointSettings, as Go marshals it (nil fields as null)."""
    from ketch.cli import opts

    target = attachment["Target"]
    if not target.strip():
        raise ConfigError("no name set for network")
    if not opts.is_user_defined_network(target):
        if attachment["Aliases"]:
            raise ConfigError("network-scoped aliases are only supported for user-defined networks")
        if attachment["Links"]:
            raise ConfigError("links are only supported for user-defined networks")
    ipam: dict[str, Any] | None = None
    if attachment["IPv4Address"] or attachment["IPv6Address"] or attachment["LinkLocalIPs"]:
        ipam = {}  # EndpointIPAMConfig's fields are omitempty
        for key in ("IPv4Address", "IPv6Address", "LinkLocalIPs"):
            if attachment[key]:
                ipam[key] = attachment[key]
    return {
        "IPAMConfig": ipam,
        "Links": list(attachment["Links"]) or None,
        "Aliases": list(attachment["Aliases"]) or None,
        "NetworkID": "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "",
        "DriverOpts": dict(attachment["DriverOpts"]) or None,
    }


def _apply_container_options(attachment: dict[str, Any], args: argparse.Namespace, links: list[str]) -> None:
    """applyContainerOptions: the plain flags belong to the first network; the CSV form may not repeat them."""
    if attachment["Aliases"] and args.network_alias:
        raise ConfigError("conflicting options: cannot specify both --network-alias and per-network alias")
    if args.network_alias:
        attachment["Aliases"] = list(args.network_alias)
    if links:
        attachment["Links"] = list(links)
    if args.ip:
        attachment["IPv4Address"] = args.ip
    if args.ip6:
        attachment["IPv6Address"] = args.ip6
    if args.link_local_ip:
        attachment["LinkLocalIPs"] = list(args.link_local_ip)


def _endpoints(
    args: argparse.Namespace, attachments: list[dict[str, Any]], links: list[str]
) -> dict[str, dict[str, Any]]:
    """parseNetworkOpts: EndpointsConfig by network (Go marshals the map with its keys sorted)."""
    from ketch.cli import opts
    from ketch.cli.commands.ps import go_quote

    endpoints: dict[str, dict[str, Any]] = {}
    user_defined = predefined = False
    for index, attachment in enumerate(attachments):
        target = attachment["Target"]
        if opts.is_user_defined_network(target):
            user_defined = True
        else:
            predefined = True
        if index == 0:
            _apply_container_options(attachment, args, links)
        endpoint = _endpoint(attachment)
        if target in endpoints:
            raise ConfigError(f"network {go_quote(target)} is specified multiple times")
        bare = not any(endpoint[key] for key in ("IPAMConfig", "Links", "Aliases", "DriverOpts"))
        if index == 0 and len(attachments) == 1 and bare:
            continue  # one network and nothing to say about it: docker sends no endpoint
        endpoints[target] = endpoint
    if user_defined and predefined:
        raise ConfigError(
            "conflicting options: cannot attach both user-defined and non-user-defined network-modes"
        )
    return dict(sorted(endpoints.items()))


def build_create(args: argparse.Namespace, *, console_size: tuple[int, int] = (0, 0)) -> CreateRequest:
    """The create request for parsed ``run``/``create`` flags (docker's ``parse`` in opts.go)."""
    from ketch.cli import opts

    # flag values docker checks as it reads the flags, before any other check
    attachments = _each(args, "network", opts.parse_network_opt)
    dns = _each(args, "dns", opts.validate_ip_address)
    dns_search = _each(args, "dns_search", opts.validate_dns_search)
    extra_hosts = _each(args, "add_host", opts.validate_extra_host)
    links = _each(args, "link", opts.validate_link)

    attach = _attach_streams(args.attach)
    attach_stdin = "stdin" in attach or args.interactive
    attach_stdout = "stdout" in attach or not attach
    attach_stderr = "stderr" in attach or not attach

    memory = _scalar(args, "memory", "bytes")
    memory_reservation = _scalar(args, "memory_reservation", "bytes")
    memory_swap = _scalar(args, "memory_swap", "swap")
    kernel_memory = _scalar(args, "kernel_memory", "bytes")
    shm_size = _scalar(args, "shm_size", "bytes")
    nano_cpus = _scalar(args, "cpus", "cpus")
    swappiness = _scalar(args, "memory_swappiness", "int", -1)
    if swappiness != -1 and not 0 <= swappiness <= 100:
        raise ConfigError(f"invalid value: {swappiness}. Valid memory swappiness range is 0-100")

    ulimits = {limit["Name"]: limit for limit in _each(args, "ulimit", opts.parse_ulimit)}
    devices = [opts.parse_device(path) for path in _each(args, "device", opts.validate_device)]
    sysctls = opts.kv_map(_each(args, "sysctl", opts.validate_sysctl))
    mounts = _each(args, "mount", opts.parse_mount)
    try:
        exposed, bindings = opts.parse_ports(args.publish, args.expose)
        env = opts.read_kv_env(args.env_file, args.env)
        labels: list[str] = []
        for path in args.label_file:
            labels += opts.read_label_file(path)
        security = opts.parse_security_opts(list(args.security_opt))
        restart = opts.parse_restart(args.restart or "")
    except FileNotFoundError as exc:
        raise ConfigError(f"open {exc.filename}: no such file or directory") from None
    except OSError as exc:
        raise ConfigError(f"open {exc.filename}: {(exc.strerror or str(exc)).lower()}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    labels += args.label
    if args.rm and restart["Name"] not in ("", "no"):
        raise ConfigError("Conflicting options: --restart and --rm")

    tmpfs: dict[str, str] = {}
    for spec in args.tmpfs:
        path, _, options = spec.partition(":")
        tmpfs[path] = options
    storage: dict[str, str] = {}
    for spec in args.storage_opt:
        key, sep, value = spec.partition("=")
        if not sep:
            raise ConfigError("invalid storage option")
        storage[key] = value
    log_opts = opts.kv_map(args.log_opt)
    if args.log_driver == "none" and args.log_opt:
        raise ConfigError("invalid logging opts for driver none")
    if args.pull not in ("always", "missing", "never"):
        raise ConfigError(
            f'invalid pull option: \'{args.pull}\': must be one of "always", "missing" or "never"'
        )

    entrypoint: list[str] | None = None
    if args.entrypoint:
        entrypoint = [args.entrypoint]
    elif args.entrypoint is not None:
        entrypoint = [""]  # --entrypoint "" clears the image's
    volumes, binds = _volume_binds(args.volume)
    stop_timeout = _scalar(args, "stop_timeout", "int", None)
    health = _healthcheck(args)

    config: dict[str, Any] = {
        "Hostname": args.hostname or "",
        "Domainname": args.domainname or "",
        "User": args.user or "",
        "AttachStdin": attach_stdin,
        "AttachStdout": attach_stdout,
        "AttachStderr": attach_stderr,
    }
    if exposed:
        config["ExposedPorts"] = exposed
    config |= {
        "Tty": args.tty,
        "OpenStdin": args.interactive,
        "StdinOnce": args.interactive and attach_stdin,
        "Env": env or None,
        "Cmd": list(args.cmd) or None,
    }
    if health is not None:
        config["Healthcheck"] = health
    config |= {
        "Image": args.image,
        "Volumes": volumes,
        "WorkingDir": args.workdir or "",
        "Entrypoint": entrypoint,
    }
    if args.mac_address:
        config["MacAddress"] = args.mac_address
    config |= {"OnBuild": None, "Labels": opts.kv_map(labels)}
    if args.stop_signal:
        config["StopSignal"] = args.stop_signal
    if stop_timeout is not None:
        config["StopTimeout"] = stop_timeout

    endpoints = _endpoints(args, attachments, links)
    host: dict[str, Any] = {
        "Binds": binds,
        "ContainerIDFile": args.cidfile or "",
        "LogConfig": {"Type": args.log_driver or "", "Config": log_opts},
        "NetworkMode": attachments[0]["Target"] if attachments else "default",
        "PortBindings": bindings,
        "RestartPolicy": restart,
        "AutoRemove": args.rm,
        "VolumeDriver": args.volume_driver or "",
        "VolumesFrom": list(args.volumes_from) or None,
        "CapAdd": list(args.cap_add) or None,
        "CapDrop": list(args.cap_drop) or None,
        "CgroupnsMode": args.cgroupns or "",
        "Dns": dns,
        "DnsOptions": list(args.dns_option),
        "DnsSearch": dns_search,
        "ExtraHosts": extra_hosts or None,
        "GroupAdd": list(args.group_add) or None,
        "IpcMode": args.ipc or "",
        "Cgroup": "",
        "Links": links or None,
        "OomScoreAdj": _scalar(args, "oom_score_adj", "int"),
        "PidMode": args.pid or "",
        "Privileged": args.privileged,
        "PublishAllPorts": args.publish_all,
        "ReadonlyRootfs": args.read_only,
        "SecurityOpt": security or None,
    }
    if storage:
        host["StorageOpt"] = storage
    if tmpfs:
        host["Tmpfs"] = tmpfs
    host |= {"UTSMode": args.uts or "", "UsernsMode": args.userns or "", "ShmSize": shm_size}
    if sysctls:
        host["Sysctls"] = sysctls
    if args.runtime:
        host["Runtime"] = args.runtime
    host |= {
        "ConsoleSize": list(console_size),
        "Isolation": args.isolation or "",
        "CpuShares": _scalar(args, "cpu_shares", "int"),
        "Memory": memory,
        "NanoCpus": nano_cpus,
        "CgroupParent": args.cgroup_parent or "",
        "BlkioWeight": _scalar(args, "blkio_weight", "uint16"),
        "BlkioWeightDevice": _each(args, "blkio_weight_device", _weight_device),
        "BlkioDeviceReadBps": _each(args, "device_read_bps", _throttle(opts.ram_in_bytes)) or None,
        "BlkioDeviceWriteBps": _each(args, "device_write_bps", _throttle(opts.ram_in_bytes)) or None,
        "BlkioDeviceReadIOps": _each(args, "device_read_iops", _throttle(opts.parse_uint)) or None,
        "BlkioDeviceWriteIOps": _each(args, "device_write_iops", _throttle(opts.parse_uint)) or None,
        "CpuPeriod": _scalar(args, "cpu_period", "int"),
        "CpuQuota": _scalar(args, "cpu_quota", "int"),
        "CpuRealtimePeriod": _scalar(args, "cpu_rt_period", "int"),
        "CpuRealtimeRuntime": _scalar(args, "cpu_rt_runtime", "int"),
        "CpusetCpus": args.cpuset_cpus or "",
        "CpusetMems": args.cpuset_mems or "",
        "Devices": devices,
        "DeviceCgroupRules": list(args.device_cgroup_rule) or None,
        "DeviceRequests": None,
        "KernelMemory": kernel_memory,
        "KernelMemoryTCP": 0,
        "MemoryReservation": memory_reservation,
        "MemorySwap": memory_swap,
        "MemorySwappiness": swappiness,
        "OomKillDisable": args.oom_kill_disable,
        "PidsLimit": _scalar(args, "pids_limit", "int"),
        "Ulimits": list(ulimits.values()) or None,
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
    }
    if mounts:
        host["Mounts"] = mounts
    host |= {"MaskedPaths": None, "ReadonlyPaths": None}
    if "init" in getattr(args, "changed", ()):
        host["Init"] = args.init
    body = config | {"HostConfig": host, "NetworkingConfig": {"EndpointsConfig": endpoints}}
    return CreateRequest(body, args.name or "", args.platform or "", args.pull, args.cidfile or "")

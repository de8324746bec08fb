"""Flag values as the docker CLI reads them: sizes, CPUs, ulimits, ports, mounts, devices, env files, times.

Pure functions. Each raises :class:`ValueError` with docker's own message for a bad value; the commands put
it in docker's frame (``invalid argument "x" for "-m, --memory" flag: ...`` or ``ketch: ...``).
"""

from __future__ import annotations

import os

from ketch.spec.natport import split_parts, split_proto_port

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = [
    "get_timestamp",
    "parse_bool",
    "parse_cpus",
    "parse_detach_keys",
    "parse_device",
    "parse_duration",
    "parse_mount",
    "parse_ports",
    "parse_restart",
    "parse_ulimit",
    "ram_in_bytes",
    "read_env_file",
    "read_kv_env",
]

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _parse_int(text: str, bits: int = 64, *, unsigned: bool = False) -> int:
    """strconv.ParseInt / ParseUint with base 10 and Go's messages."""
    name = "ParseUint" if unsigned else "ParseInt"
    digits = text[1:] if text[:1] in "+-" and not unsigned else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError(f'strconv.{name}: parsing "{text}": invalid syntax')
    value = int(text)
    low, high = (0, (1 << bits) - 1) if unsigned else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    if not low <= value <= high:
        raise ValueError(f'strconv.{name}: parsing "{text}": value out of range')
    return value


def parse_int(text: str, bits: int = 64) -> int:
    return _parse_int(text, bits)


def parse_uint(text: str, bits: int = 64) -> int:
    return _parse_int(text, bits, unsigned=True)


# ---- sizes and CPUs -----------------------------------------------------------------------------------------

_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes: ``512m``, ``1.5g``, ``1024``, ``2 GiB``; units are binary and case-insensitive."""
    import re

    match = re.fullmatch(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?", text)
    if match is None:
        raise ValueError(f"invalid size: '{text}'")
    number = match.group(1)
    if number.count(".") > 1:
        raise ValueError(f'strconv.ParseFloat: parsing "{number}": invalid syntax')
    size = float(number)
    if match.group(2):
        size *= _BINARY[match.group(2).lower()]
    return int(size)


def parse_mem_swap(text: str) -> int:
    """MemSwapBytes: a size, or ``-1`` for unlimited swap."""
    return -1 if text == "-1" else ram_in_bytes(text)


def parse_cpus(text: str) -> int:
    """opts.ParseCPUs: a rational number of CPUs (``1.5``, ``3/2``) as nano-CPUs."""
    from fractions import Fraction

    try:
        value = Fraction(text) * 1_000_000_000
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {text} as a rational number") from None
    if value.denominator != 1:
        raise ValueError("value is too precise")
    return int(value)


# ---- ulimits, restart policy, detach keys ----------------------------------------------------------------------

ULIMIT_NAMES = frozenset({
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
    "rtprio", "rttime", "sigpending", "stack",
})  # fmt: skip


def parse_ulimit(text: str) -> dict[str, Any]:
    """units.ParseUlimit: ``nofile=1024[:2048]`` -> ``{"Name": "nofile", "Hard": 2048, "Soft": 1024}``."""
    name, sep, limits = text.partition("=")
    if not sep:
        raise ValueError(f"invalid ulimit argument: {text}")
    if name not in ULIMIT_NAMES:
        raise ValueError(f"invalid ulimit type: {name}")
    values = limits.split(":")
    if len(values) > 2:
        raise ValueError(f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`")
    hard = parse_int(values[1]) if len(values) == 2 else None
    soft = parse_int(values[0])
    if hard is None:
        hard = soft
    if hard != -1 and soft > hard:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


def parse_restart(text: str) -> dict[str, Any]:
    """opts.ParseRestartPolicy: ``no``, ``always``, ``unless-stopped``, ``on-failure[:N]``."""
    if not text:
        return {"Name": "", "MaximumRetryCount": 0}
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError("invalid restart policy format")
    count = 0
    if len(parts) == 2:
        try:
            count = int(parts[1])
        except ValueError:
            raise ValueError("maximum retry count must be an integer") from None
    return {"Name": parts[0], "MaximumRetryCount": count}


_CTRL = ["ctrl-@", *(f"ctrl-{chr(c)}" for c in range(ord("a"), ord("z") + 1)), "ctrl-[", "ctrl-\\", "ctrl-]",
         "ctrl-^", "ctrl-_"]  # fmt: skip
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


def parse_detach_keys(text: str) -> bytes:
    """term.ToBytes: ``ctrl-p,ctrl-q`` or ``ctrl-x,y``: comma-separated single characters, ``ctrl-<c>``
    (``@``, ``a``-``z``, ``[``, ``\\``, ``]``, ``^``, ``_``) or ``DEL``."""
    codes = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            codes += key.encode()[:1]
        elif key in _CTRL:
            codes.append(_CTRL.index(key))
        elif key == "DEL":
            codes.append(127)
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(codes)


# ---- environment and label files --------------------------------------------------------------------------------


def validate_env(value: str, lookup: Callable[[str], str | None] = os.environ.get) -> str:
    """opts.ValidateEnv: ``KEY`` alone takes its value from the environment when it is set there."""
    if "=" in value:
        return value
    found = lookup(value)
    return value if found is None else f"{value}={found}"


def read_env_file(path: str, lookup: Callable[[str], str | None] | None = os.environ.get) -> list[str]:
    """opts.ParseEnvFile: ``KEY=value`` lines, ``#`` comments and blank lines skipped, ``KEY`` alone taken
    from the environment (and dropped when it is not set there); values are not trimmed or unquoted."""
    with open(path, "rb") as fh:
        raw_lines = fh.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    out: list[str] = []
    for number, raw in enumerate(raw_lines, 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]  # bufio.ScanLines drops a trailing \r
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            shown = "[" + " ".join(str(b) for b in raw) + "]"
            raise ValueError(
                f"env file {path} contains invalid utf8 bytes at line {number}: {shown}"
            ) from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        line = text.lstrip()
        if not line or line.startswith("#"):
            continue
        variable, sep, value = line.partition("=")
        variable = variable.lstrip(" \t")
        if " " in variable or "\t" in variable:
            raise ValueError(f"poorly formatted environment: variable '{variable}' contains whitespaces")
        if not variable:
            raise ValueError(f"poorly formatted environment: no variable name on line '{line}'")
        if sep:
            out.append(f"{variable}={value}")
        elif lookup is not None:
            found = lookup(line.strip())
            if found is not None:
                out.append(f"{line.strip()}={found}")
    return out


def read_kv_env(files: Iterable[str], values: Iterable[str]) -> list[str]:
    """opts.ReadKVEnvStrings: the env files' entries first, then the ``-e`` values."""
    out: list[str] = []
    for path in files:
        out += read_env_file(path)
    out += [validate_env(value) for value in values]
    return out


def read_label_file(path: str) -> list[str]:
    """Label files are env files whose bare keys are dropped (there is no environment to take them from)."""
    return read_env_file(path, None)


def kv_map(values: Iterable[str]) -> dict[str, str]:
    """opts.ConvertKVStringsToMap: ``k=v`` -> ``{k: v}``, ``k`` -> ``{k: ""}``; later values win."""
    out: dict[str, str] = {}
    for value in values:
        key, _, item = value.partition("=")
        out[key] = item
    return out


# ---- ports ----------------------------------------------------------------------------------------------------


def _port_range(text: str) -> tuple[int, int]:
    """nat.ParsePortRange."""
    if not text:
        raise ValueError("Empty string specified for ports.")
    if "-" not in text:
        value = parse_uint(text, 16)
        return value, value
    parts = text.split("-")
    start, end = parse_uint(parts[0], 16), parse_uint(parts[1], 16)
    if end < start:
        raise ValueError(f"Invalid range specified for the Port: {text}")
    return start, end


def _port_long_syntax(value: str) -> str:
    """``published=8080,target=80,protocol=udp`` -> ``8080:80/udp`` (convertToStandardNotation)."""
    fields = dict(field.partition("=")[::2] for field in value.split(","))
    target = fields.get("target", "")
    if not target:
        raise ValueError("no port specified: " + value)
    published = fields.get("published", "")
    text = f"{published}:{target}" if published else target
    return f"{text}/{fields['protocol']}" if fields.get("protocol") else text


def parse_port_spec(raw: str) -> list[tuple[str, dict[str, str]]]:
    """nat.ParsePortSpec: ``[ip:][hostPort:]containerPort[/proto]`` with ranges -> (port, binding) pairs."""
    import ipaddress

    raw_ip, host_port, container_port = split_parts(raw)
    proto, container_port = split_proto_port(container_port)
    ip = raw_ip[1:-1] if raw_ip.startswith("[") and raw_ip.endswith("]") else raw_ip
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"Invalid ip address: {ip}") from None
    if not container_port:
        raise ValueError(f"No port specified: {raw}<empty>")
    try:
        start, end = _port_range(container_port)
    except ValueError:
        raise ValueError(f"Invalid containerPort: {container_port}") from None
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = _port_range(host_port)
        except ValueError:
            raise ValueError(f"Invalid hostPort: {host_port}") from None
    if host_port and (end - start) != (host_end - host_start) and end != start:
        raise ValueError(
            f"Invalid ranges specified for container and host Ports: {container_port} and {host_port}"
        )
    if proto.lower() not in ("tcp", "udp", "sctp"):
        raise ValueError(f"Invalid proto: {proto}")
    out: list[tuple[str, dict[str, str]]] = []
    for offset in range(end - start + 1):
        host = str(host_start + offset) if host_port else ""
        if start == end and host_start != host_end:
            host = f"{host}-{host_end}"
        out.append((f"{start + offset}/{proto.lower()}", {"HostIp": ip, "HostPort": host}))
    return out


def parse_ports(
    published: Iterable[str], exposed: Iterable[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """``-p`` and ``--expose`` -> (ExposedPorts, PortBindings), keys sorted as Go's JSON maps are."""
    ports: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for value in published:
        spec = _port_long_syntax(value) if "=" in value else value
        for port, binding in parse_port_spec(spec):
            ports.setdefault(port, {})
            bindings.setdefault(port, []).append(binding)
    for value in exposed:
        if ":" in value:
            raise ValueError(f"invalid port format for --expose: {value}")
        proto, port_text = split_proto_port(value)
        try:
            start, end = _port_range(port_text)
        except ValueError as exc:
            raise ValueError(f"invalid range format for --expose: {value}, error: {exc}") from None
        for number in range(start, end + 1):
            ports.setdefault(f"{number}/{proto}", {})
    return dict(sorted(ports.items())), dict(sorted(bindings.items()))


# ---- networking ------------------------------------------------------------------------------------------------


def _go_quote(text: str) -> str:
    from ketch.cli.commands.ps import go_quote

    return go_quote(text)


def validate_ip_address(value: str) -> str:
    """opts.ValidateIPAddress: the address as Go prints it (``net.ParseIP(strings.TrimSpace(v)).String()``)."""
    import ipaddress

    text = value.strip()
    try:
        if "%" in text:  # Go's ParseIP takes no zone
            raise ValueError(text)
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{value} is not an ip address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # Go prints an IPv4-mapped address as IPv4
    return address.compressed


def validate_dns_search(value: str) -> str:
    """opts.ValidateDNSSearch: ``.`` or a domain name, returned without its trailing dot and spaces."""
    import re

    value = value.strip(" ")
    if value == ".":
        return value
    found = None
    if re.search("[a-zA-Z]", value):
        label = r"(?:[a-zA-Z0-9]|(?:[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]))"
        found = re.match(rf"(:?{label}(:?\.{label})*)\.?[\t\n\f\r ]*\Z", value)
    if found is None or len(found.group(1).encode()) >= 255:
        raise ValueError(f"{value} is not a valid domain")
    return found.group(1)


def validate_extra_host(value: str) -> str:
    """opts.ValidateExtraHost: ``name:ip`` (split at the first colon, so IPv6 fits) or ``name:host-gateway``."""
    name, sep, address = value.partition(":")
    if not sep or not name:
        raise ValueError(f"bad format for add-host: {_go_quote(value)}")
    if address != "host-gateway":
        try:
            validate_ip_address(address)
        except ValueError:
            raise ValueError(f"invalid IP address in add-host: {_go_quote(address)}") from None
    return value


def parse_link(value: str) -> tuple[str, str]:
    """opts.ParseLink: ``name[:alias]`` -> (name, alias); ``/name:/c/alias`` as stored by the daemon."""
    if not value:
        raise ValueError("empty string specified for links")
    parts = value.split(":")
    if len(parts) > 2:
        raise ValueError(f"bad format for links: {value}")
    if len(parts) == 1:
        return value, value
    if parts[0].startswith("/"):
        return parts[0][1:], parts[1].rpartition("/")[2]
    return parts[0], parts[1]


def validate_link(value: str) -> str:
    parse_link(value)
    return value


def parse_driver_opts(values: Iterable[str]) -> dict[str, str]:
    """``network connect --driver-opt k=v``: trimmed keys and values; a pair without ``=`` is an error."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key.strip():
            raise ValueError("invalid key/value pair format in driver options")
        out[key.strip()] = item.strip()
    return out


def parse_network_opt(value: str) -> dict[str, Any]:
    """opts.NetworkOpt.Set: a network name, or the CSV form ``name=n,alias=a,driver-opt=k=v`` (keys and values
    lower-cased, as docker does). The result has the NetworkAttachmentOpts fields docker's parse fills in."""
    import re

    attachment: dict[str, Any] = {"Target": value, "Aliases": [], "DriverOpts": {}, "Links": [],
                                  "IPv4Address": "", "IPv6Address": "", "LinkLocalIPs": []}  # fmt: skip
    if not re.search(r"\w+=\w+", value, re.ASCII):
        return attachment
    import csv

    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration) as exc:
        raise ValueError(str(exc)) from None
    attachment["Target"] = ""
    for field in fields:
        key, sep, item = field.partition("=")
        if not sep:
            raise ValueError(f"invalid field {field}")
        key, item = key.strip().lower(), item.strip().lower()
        if key == "name":
            attachment["Target"] = item
        elif key == "alias":
            attachment["Aliases"].append(item)
        elif key == "driver-opt":
            opt_key, opt_sep, opt_value = item.partition("=")
            if not opt_sep:
                raise ValueError("invalid key value pair format in driver options")
            attachment["DriverOpts"][opt_key.strip()] = opt_value.strip()
        else:
            raise ValueError(f"invalid field key {key}")
    if not attachment["Target"]:
        raise ValueError("network name/id is not specified")
    return attachment


def is_user_defined_network(mode: str) -> bool:
    """container.NetworkMode.IsUserDefined: not default, bridge, host, none or ``container:<id>``."""
    return mode not in ("default", "bridge", "host", "none") and not mode.startswith("container:")


# ---- mounts and devices -------------------------------------------------------------------------------------------


def parse_mount(value: str) -> dict[str, Any]:
    """opts.MountOpt.Set: the CSV ``type=bind,source=/a,target=/b,readonly`` as a mount.Mount."""
    import csv

    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration) as exc:
        raise ValueError(str(exc)) from None
    mount: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    driver: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    touched = {"bind": False, "volume": False, "tmpfs": False}

    def set_map(target: dict[str, str], item: str) -> None:
        key, sep, val = item.partition("=")
        target[key] = val if sep else ""

    for field in fields:
        key, sep, val = field.partition("=")
        key = key.lower()
        if not sep:
            if key in ("readonly", "ro"):
                mount["ReadOnly"] = True
                continue
            if key == "volume-nocopy":
                volume["NoCopy"], touched["volume"] = True, True
                continue
            if key == "bind-nonrecursive":
                bind["NonRecursive"], touched["bind"] = True, True
                continue
            raise ValueError(f"invalid field '{field}' must be a key=value pair")
        try:
            if key == "type":
                mount["Type"] = val.lower()
            elif key in ("source", "src"):
                mount["Source"] = val
            elif key in ("target", "dst", "destination"):
                mount["Target"] = val
            elif key in ("readonly", "ro"):
                mount["ReadOnly"] = parse_bool(val)
            elif key == "consistency":
                mount["Consistency"] = val.lower()
            elif key == "bind-propagation":
                bind["Propagation"], touched["bind"] = val.lower(), True
            elif key == "bind-nonrecursive":
                bind["NonRecursive"], touched["bind"] = parse_bool(val), True
            elif key == "volume-nocopy":
                volume["NoCopy"], touched["volume"] = parse_bool(val), True
            elif key == "volume-label":
                touched["volume"] = True
                set_map(volume.setdefault("Labels", {}), val)
            elif key == "volume-driver":
                touched["volume"] = True
                driver["Name"] = val
            elif key == "volume-opt":
                touched["volume"] = True
                set_map(driver.setdefault("Options", {}), val)
            elif key == "tmpfs-size":
                tmpfs["SizeBytes"], touched["tmpfs"] = ram_in_bytes(val), True
            elif key == "tmpfs-mode":
                tmpfs["Mode"], touched["tmpfs"] = int(val, 8), True
            else:
                raise ValueError(f"unexpected key '{key}' in '{field}'")
        except ValueError as exc:
            if str(exc).startswith("unexpected key"):
                raise
            if key == "volume-nocopy":
                raise ValueError(f"invalid value for volume-nocopy: {val}") from None
            raise ValueError(f"invalid value for {key}: {val}") from None
    if not mount["Type"]:
        raise ValueError("type is required")
    if not mount.get("Target"):
        raise ValueError("target is required")
    for kind in ("volume", "bind", "tmpfs"):
        if touched[kind] and mount["Type"] != kind:
            raise ValueError(f"cannot mix '{kind}-*' options with mount type '{mount['Type']}'")
    if touched["bind"]:
        mount["BindOptions"] = {k: bind[k] for k in ("Propagation", "NonRecursive") if k in bind}
    if touched["volume"]:
        options: dict[str, Any] = {}
        if volume.get("NoCopy"):
            options["NoCopy"] = True
        options["Labels"] = volume.get("Labels", {})
        options["DriverConfig"] = {k: driver[k] for k in ("Name", "Options") if k in driver}
        mount["VolumeOptions"] = options
    if touched["tmpfs"]:
        mount["TmpfsOptions"] = {k: tmpfs[k] for k in ("SizeBytes", "Mode") if k in tmpfs}
    order = ("Type", "Source", "Target", "ReadOnly", "Consistency", "BindOptions", "VolumeOptions",
             "TmpfsOptions")  # fmt: skip
    return {k: mount[k] for k in order if k in mount and mount[k] not in ("", False)}


def _device_mode(mode: str) -> bool:
    return bool(mode) and len(set(mode)) == len(mode) and set(mode) <= set("rwm")


def validate_device(value: str) -> str:
    """opts.ValidateDevice (validateLinuxPath): ``/dev/x[:/dev/y][:rwm]`` with an absolute container path."""
    import posixpath

    if value.count(":") > 2:
        raise ValueError(f"bad format for path: {value}")
    split = value.split(":", 2)
    if not split[0]:
        raise ValueError(f"bad format for path: {value}")
    if len(split) == 1:
        container = split[0]
        value = posixpath.normpath(container)
    elif len(split) == 2:
        if _device_mode(split[1]):
            container = split[0]
            value = f"{posixpath.normpath(container)}:{split[1]}"
        else:
            container = split[1]
            value = f"{split[0]}:{posixpath.normpath(container)}"
    else:
        container = split[1]
        if not _device_mode(split[2]):
            raise ValueError(f"bad mode specified: {split[2]}")
    if not container.startswith("/"):
        raise ValueError(f"{container} is not an absolute path")
    return value


def parse_device(value: str) -> dict[str, str]:
    """parseLinuxDevice: ``src[:dst][:perms]`` -> a DeviceMapping."""
    parts = value.split(":")
    if len(parts) > 3:
        raise ValueError(f"invalid device specification: {value}")
    src, dst, permissions = parts[0], "", "rwm"
    if len(parts) == 3:
        permissions = parts[2]
    if len(parts) >= 2:
        if _device_mode(parts[1]):
            permissions = parts[1]
        else:
            dst = parts[1]
    return {"PathOnHost": src, "PathInContainer": dst or src, "CgroupPermissions": permissions}


_SYSCTL_NAMES = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
    "kernel.shmmni", "kernel.shm_rmid_forced",
})  # fmt: skip


def validate_sysctl(value: str) -> str:
    """opts.ValidateSysctl: IPC and network sysctls only (those are namespaced)."""
    key, sep, _ = value.partition("=")
    if sep and (key in _SYSCTL_NAMES or key.startswith(("fs.mqueue.", "net."))):
        return value
    raise ValueError(f"sysctl '{value}' is not whitelisted")


def parse_security_opts(values: list[str]) -> list[str]:
    """parseSecurityOpts: ``seccomp=<file>`` is read here and sent inline, compacted."""
    out: list[str] = []
    for opt in values:
        key, sep, val = opt.partition("=")
        if not sep and key != "no-new-privileges":
            if ":" not in opt:
                raise ValueError(f'Invalid --security-opt: "{opt}"')
            key, _, val = opt.partition(":")
        if key == "seccomp" and val != "unconfined":
            import json

            try:
                with open(val, "rb") as fh:
                    profile = json.loads(fh.read())
            except OSError as exc:
                raise ValueError(
                    f"opening seccomp profile ({val}) failed: open {val}: {exc.strerror}"
                ) from None
            except ValueError as exc:
                raise ValueError(f"compacting json for seccomp profile ({val}) failed: {exc}") from None
            opt = "seccomp=" + json.dumps(profile, separators=(",", ":"), ensure_ascii=False)
        out.append(opt)
    return out


# ---- times --------------------------------------------------------------------------------------------------------

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """time.ParseDuration, in seconds: ``1h30m``, ``-1.5h``, ``300ms``; a bare number other than 0 is an error."""
    import re

    rest, sign = text, 1.0
    if rest[:1] in ("+", "-"):
        sign, rest = (-1.0 if rest[0] == "-" else 1.0), rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    while rest:
        number = re.match(r"\d*(?:\.\d*)?", rest)
        assert number is not None  # the pattern matches the empty string
        digits = number.group(0)
        if not digits.strip("."):
            raise ValueError(f'time: invalid duration "{text}"')
        rest = rest[number.end() :]
        unit = re.match(r"[^\d.]+", rest)
        if unit is None:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit.group(0) not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit.group(0)}" in duration "{text}"')
        total += float(digits) * _UNITS[unit.group(0)]
        rest = rest[unit.end() :]
    return sign * total


def _parse_time(value: str) -> tuple[int, int] | None:
    """The layouts GetTimestamp tries, as (Unix seconds, nanoseconds); None when none fits."""
    import re
    from datetime import datetime, timedelta, timezone

    in_location = not (any(c in value for c in "zZ+") or value.count("-") == 3)
    zone = ""
    body = value
    if not in_location:
        found = re.search(r"(?:[zZ]|[+-]\d\d:\d\d)\Z", value)
        if found is None:
            return None
        body, zone = value[: found.start()], value[found.start() :]
    date, sep, clock = body.partition("T")
    if ("." in value and not sep) or not re.fullmatch(r"\d{4}-\d\d-\d\d", date):
        return None
    fields = clock.split(":") if sep else []
    if sep and not (1 <= len(fields) <= 3):
        return None
    seconds, _, fraction = (fields[2] if len(fields) == 3 else "00").partition(".")
    if "." in value and (len(fields) != 3 or not fraction):
        return None
    numbers = [*fields[:2], seconds] if sep else []
    if any(not re.fullmatch(r"\d\d", n) for n in numbers) or (fraction and not fraction.isdigit()):
        return None
    hour, minute, second = ([int(n) for n in numbers] + [0, 0, 0])[:3] if numbers else (0, 0, 0)
    try:
        stamp = datetime(int(date[:4]), int(date[5:7]), int(date[8:10]), hour, minute, second)
    except ValueError:
        return None
    if zone:
        offset = (
            timedelta(0)
            if zone in ("z", "Z")
            else timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * (1 if zone[0] == "+" else -1)
        )
        aware = stamp.replace(tzinfo=timezone(offset))
    else:
        aware = stamp.astimezone()  # the local zone, as ParseInLocation with the reference's zone
    return int(aware.timestamp()), int((fraction + "000000000")[:9]) if fraction else 0


def get_timestamp(value: str, now: float) -> str:
    """timetypes.GetTimestamp: a duration before ``now``, an RFC 3339 date or date-time (local time when it
    names no zone), or a Unix timestamp passed through; the answer is what the API's since/until take."""
    import math

    if value != "0":
        try:
            return str(math.floor(now - parse_duration(value)))
        except ValueError:
            pass
    parsed = _parse_time(value)
    if parsed is not None:
        return f"{parsed[0]}.{parsed[1]:09d}"
    if "-" in value:
        raise ValueError(f'parsing time "{value}": cannot parse')
    seconds, _, nanos = value.partition(".")
    if not (seconds.isascii() and seconds.isdigit()) or (nanos and not (nanos.isascii() and nanos.isdigit())):
        raise ValueError(f'failed to parse value as time or duration: "{value}"')
    return value

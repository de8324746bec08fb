"""Turn ``exec`` and ``update`` command-line flags into OCI process and resources objects."""

from __future__ import annotations

from ketch.common import fastjson
from ketch.common.errors import InvalidArgument
from ketch.spec.capabilities import CAPABILITIES
from ketch.spec.oci_runtime import validate_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["build_exec_process", "parse_bytes", "parse_duration", "resources_from_flags"]

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3,
          "t": 1024**4, "tb": 1024**4, "p": 1024**5, "pb": 1024**5}  # fmt: skip


def parse_bytes(text: str) -> int:
    """``100m``, ``1.5g``, ``4096`` or ``-1`` to bytes, binary units as docker's RAMInBytes reads them."""
    raw = text.strip().lower()
    if raw == "-1":
        return -1
    if raw.endswith("ib"):
        raw = raw[:-2]  # 2GiB is 2g: these units are binary either way
    number = raw.rstrip("kmgtpb")
    unit = raw[len(number) :]
    try:
        value = float(number)
    except ValueError:
        raise InvalidArgument(f"invalid size: {text!r}") from None
    if unit not in _UNITS or value < 0:
        raise InvalidArgument(f"invalid size: {text!r}")
    return int(value * _UNITS[unit])


_DURATION_UNITS = (("ms", 0.001), ("us", 1e-6), ("ns", 1e-9), ("s", 1.0), ("m", 60.0), ("h", 3600.0))


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration (``5s``, ``500ms``, ``1m``; a bare number is seconds); must be > 0."""
    raw = text.strip()
    for suffix, scale in _DURATION_UNITS:
        if raw.endswith(suffix):
            number, factor = raw[: -len(suffix)], scale
            break
    else:
        number, factor = raw, 1.0
    try:
        value = float(number) * factor
    except ValueError:
        raise InvalidArgument(f"invalid duration {text!r}") from None
    if value <= 0:
        raise InvalidArgument(f"invalid duration {text!r}: must be positive")
    return value


def build_exec_process(base: dict[str, Any], opts: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """The process to exec: ``--process FILE`` as given, or the container's own process with the flags."""
    if opts.get("process"):
        path = opts["process"]
        try:
            with open(path, "rb") as f:
                process: dict[str, Any] = fastjson.loads(f.read())
        except OSError as exc:
            raise InvalidArgument(f"process file {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise InvalidArgument(f"process file {path}: invalid JSON: {exc}") from None
        validate_process(process, "process")
        return process
    if not args:
        raise InvalidArgument("exec: no command to run (give arguments or --process)")
    process = fastjson.loads(fastjson.dumps(base))  # a deep copy
    process["args"] = list(args)
    process["terminal"] = bool(opts.get("tty"))
    process.pop("consoleSize", None)
    if opts.get("cwd"):
        process["cwd"] = opts["cwd"]
    env = list(process.get("env", []))
    for item in opts.get("env", []):
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key]
        env.append(item)
    process["env"] = env
    if opts.get("user"):
        uid, _, gid = opts["user"].partition(":")
        try:
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise InvalidArgument(f"invalid --user {opts['user']!r}: expected UID[:GID]") from None
    if opts.get("additional-gids"):
        try:
            process.setdefault("user", {})["additionalGids"] = [int(g) for g in opts["additional-gids"]]
        except ValueError:
            raise InvalidArgument("invalid --additional-gids: expected numbers") from None
    for cap in opts.get("cap", []):
        name = cap.upper() if cap.upper().startswith("CAP_") else "CAP_" + cap.upper()
        if name not in CAPABILITIES:
            raise InvalidArgument(f"unknown capability {cap!r}")
        caps = process.setdefault("capabilities", {})
        for kind in ("bounding", "effective", "permitted", "ambient"):
            if name not in caps.setdefault(kind, []):
                caps[kind].append(name)
    if opts.get("no-new-privs"):
        process["noNewPrivileges"] = True
    if opts.get("apparmor"):
        process["apparmorProfile"] = opts["apparmor"]
    if opts.get("process-label"):
        process["selinuxLabel"] = opts["process-label"]
    validate_process(process, "process")
    return process


def resources_from_flags(opts: dict[str, Any]) -> dict[str, Any]:
    """linux.resources fragments for runc's ``update`` flags (memory sizes accept k/m/g suffixes)."""
    out: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        out.setdefault(section, {})[key] = value

    for flag, key in (
        ("memory", "limit"),
        ("memory-reservation", "reservation"),
        ("memory-swap", "swap"),
        ("kernel-memory", "kernel"),
        ("kernel-memory-tcp", "kernelTCP"),
    ):
        if flag in opts:
            put("memory", key, parse_bytes(opts[flag]))
    for flag, key in (
        ("cpu-period", "period"),
        ("cpu-quota", "quota"),
        ("cpu-share", "shares"),
        ("cpu-rt-period", "realtimePeriod"),
        ("cpu-rt-runtime", "realtimeRuntime"),
    ):
        if flag in opts:
            try:
                put("cpu", key, int(opts[flag]))
            except ValueError:
                raise InvalidArgument(f"invalid value for --{flag}: {opts[flag]!r}") from None
    for flag, key in (("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")):
        if flag in opts:
            put("cpu", key, opts[flag])
    if "pids-limit" in opts:
        put("pids", "limit", opts["pids-limit"])
    if "blkio-weight" in opts:
        put("blockIO", "weight", opts["blkio-weight"])
    return out

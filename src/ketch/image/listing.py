"""Docker's shapes for image listings, inspect and history, and the filters ``images`` and ``prune`` take.

Pure: callers pass the records, configs and references; nothing here reads a store. The JSON keys and
defaults are the Engine API's (moby api/types/image: Summary, InspectResponse, HistoryResponseItem), and the
filter rules and error wording are moby's (api/types/filters, daemon/images/image_list.go, image_prune.go).

Filters arrive as Docker sends them: ``{"label": ["a=b"]}`` or the older ``{"label": {"a=b": true}}``.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ketch.common.errors import InvalidArgument
from ketch.spec.oci_image import ImageConfig
from ketch.spec.reference import Reference

__all__ = [
    "Filters",
    "bool_filter",
    "container_config",
    "familiar_match",
    "full_container_config",
    "history_items",
    "inspect_shape",
    "match_kv",
    "parse_filters",
    "parse_rfc3339",
    "parse_until",
    "rfc3339_nano",
    "summary_shape",
]

Filters = dict[str, list[str]]
FilterInput = Mapping[str, Iterable[str] | Mapping[str, bool]] | None

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?\s*([Zz]|[+-]\d{2}:?\d{2})?"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

# container.Config in Go's field order: (key, default, omitted when empty)
_CONFIG_FIELDS: tuple[tuple[str, Any, bool], ...] = (
    ("Hostname", "", False), ("Domainname", "", False), ("User", "", False), ("AttachStdin", False, False),
    ("AttachStdout", False, False), ("AttachStderr", False, False), ("ExposedPorts", None, True),
    ("Tty", False, False), ("OpenStdin", False, False), ("StdinOnce", False, False), ("Env", None, False),
    ("Cmd", None, False), ("Healthcheck", None, True), ("ArgsEscaped", False, True), ("Image", "", False),
    ("Volumes", None, False), ("WorkingDir", "", False), ("Entrypoint", None, False),
    ("NetworkDisabled", False, True), ("MacAddress", "", True), ("OnBuild", None, False), ("Labels", None, False),
    ("StopSignal", "", True), ("StopTimeout", None, True), ("Shell", None, True),
)  # fmt: skip


# ---- filters -------------------------------------------------------------------------------------------


def parse_filters(filters: FilterInput, accepted: Iterable[str]) -> Filters:
    """Normalise to {key: [values]} and reject keys outside ``accepted`` ("invalid filter 'x'")."""
    out: Filters = {}
    allowed = set(accepted)
    for key, values in (filters or {}).items():
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(values, Mapping):
            out[key] = [v for v, on in values.items() if on]
        elif isinstance(values, str):
            out[key] = [values]
        else:
            out[key] = list(values)
    return out


def bool_filter(filters: Filters, key: str, default: bool) -> bool:
    """filters.Args.GetBoolOrDefault: "true"/"1" or "false"/"0", and not both."""
    if key not in filters:
        return default
    values = set(filters[key])
    is_true = bool(values & {"true", "1"})
    is_false = bool(values & {"false", "0"})
    if is_true == is_false:
        raise InvalidArgument(f"invalid filter '{key}={','.join(filters[key])}'")
    return is_true


def match_kv(values: list[str], labels: Mapping[str, str]) -> bool:
    """filters.Args.MatchKVList: every "key" must be present and every "key=value" must match."""
    if not values:
        return True
    if not labels:
        return False
    for value in values:
        key, sep, want = value.partition("=")
        if key not in labels or (sep and labels[key] != want):
            return False
    return True


def _go_glob(pattern: str) -> re.Pattern[str]:
    """Go's path.Match syntax as a regex: ``*`` and ``?`` never match ``/``; classes and ``\\`` escapes."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i == len(pattern):
                raise InvalidArgument(f"syntax error in pattern {pattern!r}")
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("^", "]") else i + 1)
            if end < 0:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}")
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))


def familiar_match(pattern: str, ref: Reference) -> bool:
    """reference.FamiliarMatch: the pattern against ``busybox:latest``, then against ``busybox``."""
    regex = _go_glob(pattern)
    return bool(regex.fullmatch(ref.familiar()) or regex.fullmatch(ref.familiar_name))


# ---- times -----------------------------------------------------------------------------------------------


def parse_rfc3339(text: str | None) -> tuple[int, int] | None:
    """(unix seconds, nanoseconds) of an RFC 3339 time; None for a missing or malformed one."""
    if not text:
        return None
    m = _RFC3339.fullmatch(text.strip())
    if m is None or m.group(4) is None or m.group(8) is None:
        return None
    year, month, day, hour, minute, second = (int(m.group(i) or 0) for i in range(1, 7))
    nanos = int((m.group(7) or "0")[:9].ljust(9, "0"))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - _offset(m.group(8))
    return seconds, nanos


def _offset(zone: str) -> int:
    if zone in ("Z", "z"):
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)


def rfc3339_nano(text: str | None) -> str:
    """Go's ``Format(time.RFC3339Nano)`` of a parsed config time: zone kept, fraction without trailing zeros."""
    if not text:
        return ""
    m = _RFC3339.fullmatch(text.strip())
    if m is None or m.group(4) is None or m.group(8) is None:
        return text
    date = f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}:{m.group(5) or '00'}:{m.group(6) or '00'}"
    fraction = (m.group(7) or "")[:9].rstrip("0")
    zone = m.group(8)
    zone = "Z" if _offset(zone) == 0 else f"{zone[:3]}:{zone[-2:]}"
    return date + (f".{fraction}" if fraction else "") + zone


def parse_until(value: str, now: float | None = None) -> tuple[int, int]:
    """Docker's timetypes.GetTimestamp: a Go duration before now, a unix time, or an RFC 3339-like time
    (local time when it has no zone)."""
    now = time.time() if now is None else now
    text = value.strip()
    if text != "0" and (duration := _go_duration(text)) is not None:
        moment = now - duration
        return int(moment), 0
    m = _RFC3339.fullmatch(text)
    if m is not None and "-" in text:
        year, month, day, hour, minute, second = (int(m.group(i) or 0) for i in range(1, 7))
        nanos = int((m.group(7) or "0")[:9].ljust(9, "0"))
        fields = (year, month, day, hour, minute, second, 0, 0, -1)
        seconds = calendar.timegm(fields) - _offset(m.group(8)) if m.group(8) else int(time.mktime(fields))
        return seconds, nanos
    seconds_text, _, fraction = text.partition(".")
    if seconds_text.lstrip("-").isdigit() and (not fraction or fraction.isdigit()):
        return int(seconds_text), int(fraction[:9].ljust(9, "0")) if fraction else 0
    raise InvalidArgument(f'failed to parse value as time or duration: "{value}"')


def _go_duration(text: str) -> float | None:
    body = text.lstrip("+-")
    if not body:
        return None
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return -total if text.startswith("-") else total


# ---- shapes ----------------------------------------------------------------------------------------------


def container_config(config: ImageConfig) -> dict[str, Any]:
    """The image's ``config`` as Docker's container.Config renders it: every field, in Go's order."""
    raw = config.raw.get("config")
    return full_container_config(raw if isinstance(raw, dict) else {})


def full_container_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A container.Config JSON object with every field Go writes (defaults where ``raw`` lacks one)."""
    out: dict[str, Any] = {}
    for key, default, omit_empty in _CONFIG_FIELDS:
        value = raw.get(key, default)
        if value is None or (default is not None and type(value) is not type(default)):
            value = default
        if omit_empty and not value:
            continue
        out[key] = value
    return out


def summary_shape(
    *,
    image_id: str,
    config: ImageConfig,
    repo_tags: list[str],
    repo_digests: list[str],
    size: int,
    parent: str = "",
    shared_size: int = -1,
    containers: int = -1,
) -> dict[str, Any]:
    """One entry of GET /images/json."""
    created = parse_rfc3339(config.created)
    return {
        "Containers": containers,
        "Created": created[0] if created else 0,
        "Id": image_id,
        "Labels": dict(config.config.labels) or None,
        "ParentId": parent,
        "RepoDigests": repo_digests,
        "RepoTags": repo_tags,
        "SharedSize": shared_size,
        "Size": size,
        "VirtualSize": size,
    }


def inspect_shape(
    *,
    image_id: str,
    config: ImageConfig,
    repo_tags: list[str],
    repo_digests: list[str],
    size: int,
    parent: str,
    graph_driver: dict[str, Any],
    last_tag_time: str,
) -> dict[str, Any]:
    """GET /images/{name}/json."""
    raw = config.raw
    out: dict[str, Any] = {
        "Id": image_id,
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": parent,
        "Comment": raw.get("comment") if isinstance(raw.get("comment"), str) else "",
        "Created": rfc3339_nano(config.created),
        "DockerVersion": raw.get("docker_version") if isinstance(raw.get("docker_version"), str) else "",
        "Author": config.author,
        "Config": container_config(config),
        "Architecture": config.architecture,
    }
    if config.variant:
        out["Variant"] = config.variant
    out["Os"] = config.os
    if config.os_version:
        out["OsVersion"] = config.os_version
    out["Size"] = size
    out["GraphDriver"] = graph_driver
    rootfs: dict[str, Any] = {"Type": "layers"}
    if config.diff_ids:
        rootfs["Layers"] = list(config.diff_ids)
    out["RootFS"] = rootfs
    out["Metadata"] = {"LastTagTime": last_tag_time}
    return out


def history_items(
    *, image_id: str, config: ImageConfig, layer_sizes: list[int], tags: list[str]
) -> list[dict[str, Any]]:
    """GET /images/{name}/history: newest first; only the top entry has the image's ID and tags."""
    items: list[dict[str, Any]] = []
    layer = 0
    for entry in config.history:
        size = 0
        if not entry.empty_layer:
            if layer >= len(layer_sizes):
                raise InvalidArgument("too many non-empty layers in History section")
            size = layer_sizes[layer]
            layer += 1
        created = parse_rfc3339(entry.created)
        items.append({
            "Comment": entry.comment,
            "Created": created[0] if created else 0,
            "CreatedBy": entry.created_by,
            "Id": "<missing>",
            "Size": size,
            "Tags": None,
        })  # fmt: skip
    items.reverse()
    if items:
        items[0]["Id"] = image_id
        items[0]["Tags"] = tags or None
    return items

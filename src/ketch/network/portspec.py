"""Published ports as data: Docker's ``-p`` grammar, the Engine API shapes, and choosing free host ports.

Grammar (go-connections ``nat.ParsePortSpec``)::

    spec          := [ [ ip ":" ] [ hostPort ] ":" ] containerPort [ "/" proto ]
    ip            := IPv4 | "[" IPv6 "]"
    hostPort      := port | port "-" port          empty or 0: any free port
    containerPort := port | port "-" port
    proto         := tcp | udp | sctp               (any case; tcp when left out)

A container range maps onto a host range of the same length, port by port (``8000-8010:80-90``). A single
container port with a host range (``8000-8010:80``) asks for any free port in that range. Error messages are
Docker 20.10's (``Invalid containerPort: x``, ``Invalid hostPort: x``, ``Invalid proto: x``, ...).

Engine API shapes: ``ExposedPorts`` is ``{"80/tcp": {}}``; ``HostConfig.PortBindings`` is
``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`` where an empty ``HostPort`` means "any free port".
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass

from ketch.common.errors import InvalidArgument, SystemFailure
from ketch.spec.natport import split_parts, split_proto_port

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__all__ = [
    "DEFAULT_EPHEMERAL_RANGE",
    "PROTOCOLS",
    "PortBinding",
    "choose_free_port",
    "format_host_ip",
    "from_engine",
    "parse_expose",
    "parse_local_port_range",
    "parse_port_key",
    "parse_port_spec",
    "parse_port_specs",
    "publish_all",
    "resolve_host_port",
    "to_engine",
]

PROTOCOLS = ("tcp", "udp", "sctp")
# Docker's portallocator range when /proc/sys/net/ipv4/ip_local_port_range cannot be read.
DEFAULT_EPHEMERAL_RANGE = (49153, 60999)
_EADDRINUSE = 98


@dataclass(frozen=True, slots=True, kw_only=True)
class PortBinding:
    """One container port published on the host: ``host_ip:host_port -> container_port/proto``.

    ``host_port_start == host_port_end == 0`` asks for any free port; ``start == end`` is one fixed port;
    ``start < end`` is any free port in that range. An empty ``host_ip`` means every address of the host.
    """

    container_port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port_start: int = 0
    host_port_end: int = 0

    @property
    def key(self) -> str:
        """The Engine API key, ``80/tcp``."""
        return f"{self.container_port}/{self.proto}"

    @property
    def host_port(self) -> str:
        """``HostPort`` as the Engine API spells it: ``""``, ``"8080"`` or ``"8000-8010"``."""
        if self.host_port_start == 0 and self.host_port_end == 0:
            return ""
        if self.host_port_start == self.host_port_end:
            return str(self.host_port_start)
        return f"{self.host_port_start}-{self.host_port_end}"

    @property
    def is_dynamic(self) -> bool:
        """Whether the host port is still to be chosen (any port, or any port in a range)."""
        return self.host_port_start != self.host_port_end or self.host_port_start == 0


def _parse_port(text: str) -> int:
    # strconv.ParseUint(s, 10, 16): ASCII digits only, no sign, at most 65535.
    if not text or not text.isascii() or not text.isdigit():
        raise ValueError(text)
    value = int(text)
    if value > 65535:
        raise ValueError(text)
    return value


def _parse_range(text: str) -> tuple[int, int]:
    """``nat.ParsePortRange``: ``80`` or ``8000-8010``; raises :class:`ValueError`."""
    if "-" not in text:
        port = _parse_port(text)
        return port, port
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(text)
    start, end = _parse_port(parts[0]), _parse_port(parts[1])
    if end < start:
        raise ValueError(text)
    return start, end


def _parse_host_ip(raw: str, *, spec: bool = True) -> str:
    """An address (in ``-p``, IPv6 in brackets; in the Engine API, bare) or empty; returned bare."""
    if not raw:
        return ""
    if spec and raw.startswith("["):
        if not raw.endswith("]") or "]" in raw[:-1]:
            raise InvalidArgument(f"Invalid ip address {raw}: address {raw}:: missing ']' in address")
        raw = raw[1:-1]
    elif spec and ":" in raw:
        raise InvalidArgument(f"Invalid ip address {raw}: address {raw}:: too many colons in address")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise InvalidArgument(f"Invalid ip address: {raw}") from None


def parse_port_spec(raw: str) -> list[PortBinding]:
    """One ``-p`` value; a container range gives one binding per port."""
    raw_ip, host_port, container_port = split_parts(raw)
    proto, container_port = split_proto_port(container_port)
    host_ip = _parse_host_ip(raw_ip)
    if not container_port:
        raise InvalidArgument(f"No port specified: {raw}<empty>")
    try:
        start, end = _parse_range(container_port)
    except ValueError:
        raise InvalidArgument(f"Invalid containerPort: {container_port}") from None
    if start == 0:
        raise InvalidArgument(f"Invalid containerPort: {container_port}")
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = _parse_range(host_port)
        except ValueError:
            raise InvalidArgument(f"Invalid hostPort: {host_port}") from None
        if host_end - host_start != end - start and end != start:
            raise InvalidArgument(
                f"Invalid ranges specified for container and host Ports: {container_port} and {host_port}"
            )
        if host_start == 0 and host_end != 0:
            raise InvalidArgument(f"Invalid hostPort: {host_port}")
    if proto.lower() not in PROTOCOLS:
        raise InvalidArgument(f"Invalid proto: {proto}")
    proto = proto.lower()
    if start == end:
        # One container port: a host range is the range to pick a free port from.
        return [
            PortBinding(
                container_port=start,
                proto=proto,
                host_ip=host_ip,
                host_port_start=host_start,
                host_port_end=host_end,
            )
        ]
    out = []
    for offset in range(end - start + 1):
        host = host_start + offset if host_port and host_start else 0
        out.append(
            PortBinding(
                container_port=start + offset,
                proto=proto,
                host_ip=host_ip,
                host_port_start=host,
                host_port_end=host,
            )
        )
    return out


def parse_port_specs(
    raws: Iterable[str],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """Several ``-p`` values to ``(ExposedPorts, PortBindings)``, as ``docker run`` sends them."""
    bindings: list[PortBinding] = []
    for raw in raws:
        bindings.extend(parse_port_spec(raw))
    return to_engine(bindings)


def parse_port_key(key: str) -> tuple[int, int, str]:
    """An ``ExposedPorts``/``PortBindings`` key (``80/tcp``, ``80``, ``8000-8010/udp``) to (start, end, proto)."""
    proto, port = split_proto_port(key)
    if not port:
        raise InvalidArgument(f"Invalid containerPort: {key}")
    try:
        start, end = _parse_range(port)
    except ValueError:
        raise InvalidArgument(f"Invalid containerPort: {port}") from None
    if start == 0:
        raise InvalidArgument(f"Invalid containerPort: {port}")
    if proto.lower() not in PROTOCOLS:
        raise InvalidArgument(f"Invalid proto: {proto}")
    return start, end, proto.lower()


def parse_expose(raw: str) -> list[str]:
    """``--expose 80``, ``--expose 8000-8010/udp`` to ExposedPorts keys, one per port."""
    if ":" in raw:
        raise InvalidArgument(f"invalid port format for --expose: {raw}")
    proto, port = split_proto_port(raw)
    try:
        start, end = _parse_range(port)
    except ValueError:
        raise InvalidArgument(f"invalid range format for --expose: {raw}") from None
    if proto.lower() not in PROTOCOLS:
        raise InvalidArgument(f"Invalid proto: {proto}")
    return [f"{p}/{proto.lower()}" for p in range(start, end + 1)]


def to_engine(
    bindings: Iterable[PortBinding],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """Bindings to ``(ExposedPorts, PortBindings)``; bindings of one port stay in their order."""
    exposed: dict[str, dict[str, Any]] = {}
    port_bindings: dict[str, list[dict[str, str]]] = {}
    for b in bindings:
        exposed.setdefault(b.key, {})
        port_bindings.setdefault(b.key, []).append({"HostIp": b.host_ip, "HostPort": b.host_port})
    return exposed, port_bindings


def from_engine(port_bindings: Mapping[str, Any] | None) -> list[PortBinding]:
    """``HostConfig.PortBindings`` to bindings; a key with a null or empty list publishes nothing."""
    out: list[PortBinding] = []
    for key, entries in (port_bindings or {}).items():
        start, end, proto = parse_port_key(key)
        if start != end:
            raise InvalidArgument(f"Invalid containerPort: {key}: a binding names one port, not a range")
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise InvalidArgument(f"PortBindings[{key!r}]: expected a list of bindings")
        for entry in entries:
            if not isinstance(entry, dict):
                raise InvalidArgument(f"PortBindings[{key!r}]: expected objects with HostIp and HostPort")
            host_ip = _parse_host_ip(str(entry.get("HostIp") or ""), spec=False)
            host_port = str(entry.get("HostPort") or "")
            host_start = host_end = 0
            if host_port:
                try:
                    host_start, host_end = _parse_range(host_port)
                except ValueError:
                    raise InvalidArgument(f"Invalid hostPort: {host_port}") from None
                if host_start == 0 and host_end != 0:
                    raise InvalidArgument(f"Invalid hostPort: {host_port}")
            out.append(
                PortBinding(
                    container_port=start,
                    proto=proto,
                    host_ip=host_ip,
                    host_port_start=host_start,
                    host_port_end=host_end,
                )
            )
    return out


def publish_all(exposed: Iterable[str], host_ip: str = "") -> list[PortBinding]:
    """``-P``: every exposed port (``80/tcp`` keys) on a free host port."""
    out: list[PortBinding] = []
    for key in exposed:
        start, end, proto = parse_port_key(key)
        out.extend(PortBinding(container_port=p, proto=proto, host_ip=host_ip) for p in range(start, end + 1))
    return out


def parse_local_port_range(text: str) -> tuple[int, int]:
    """The contents of /proc/sys/net/ipv4/ip_local_port_range (``"32768\\t60999\\n"``) to (first, last)."""
    fields = text.split()
    try:
        first, last = (_parse_port(f) for f in fields)
    except ValueError:
        raise InvalidArgument(f"ip_local_port_range: expected two port numbers, got {text!r}") from None
    if first == 0 or last < first:
        raise InvalidArgument(f"ip_local_port_range: invalid range {first}-{last}")
    return first, last


def format_host_ip(host_ip: str) -> str:
    """The address as Docker's bind errors print it: ``0.0.0.0`` for every address, IPv6 in brackets."""
    if not host_ip:
        return "0.0.0.0"
    return f"[{host_ip}]" if ":" in host_ip else host_ip


def choose_free_port(is_free: Callable[[int], bool], start: int, end: int, *, after: int = 0) -> int | None:
    """The first port in ``[start, end]`` that ``is_free`` accepts, searching from ``after + 1`` and wrapping.

    Docker's portallocator hands out ports sequentially so a just-released port is not reused at once;
    the caller keeps the last port it handed out and passes it as ``after``.
    """
    first = after + 1 if start <= after < end else start
    for port in itertools.chain(range(first, end + 1), range(start, first)):
        if is_free(port):
            return port
    return None


def resolve_host_port(
    binding: PortBinding,
    is_free: Callable[[str, str, int], bool],
    *,
    ephemeral: tuple[int, int] = DEFAULT_EPHEMERAL_RANGE,
    after: int = 0,
) -> int:
    """The concrete host port for ``binding``; ``is_free(proto, host_ip, port)`` says whether it can be bound.

    A fixed port that is taken fails like Docker: ``Bind for 0.0.0.0:8080 failed: port is already allocated``.
    """

    def free(port: int) -> bool:
        return is_free(binding.proto, binding.host_ip, port)

    if not binding.is_dynamic:
        port = binding.host_port_start
        if not free(port):
            raise SystemFailure(
                f"Bind for {format_host_ip(binding.host_ip)}:{port} failed: port is already allocated",
                errno=_EADDRINUSE,
            )
        return port
    start, end = (binding.host_port_start, binding.host_port_end) if binding.host_port_start else ephemeral
    chosen = choose_free_port(free, start, end, after=after)
    if chosen is None:
        where = f"{format_host_ip(binding.host_ip)}:{start}-{end}/{binding.proto}"
        raise SystemFailure(f"Bind for {where} failed: all ports are allocated", errno=_EADDRINUSE)
    return chosen

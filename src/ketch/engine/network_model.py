"""Networks and container endpoints as ketchd keeps them, as data (engine/networks.py does the I/O).

- :class:`NetworkRecord`: one network (the predefined ``bridge``, ``host``, ``none`` and user networks); its
  addresses live in the IPAM state (network/ipam.py), not here.
- :class:`Sandbox`: what a running container has on the host: its network namespace, one :class:`Endpoint`
  (a veth into a bridge, its addresses) per network, its :class:`Published` ports and whether an embedded DNS
  server answers in it. Kept while the container runs, so that a restarted ketchd finds its plumbing again.
- The networks a container is on while it does not run are ``(network id, EndpointConfig)`` pairs (Docker's
  ``NetworkSettings.Networks`` of a stopped container): derived from the container's create request until
  ``network connect``/``disconnect`` or a start records them.
- The Engine API shapes: network inspect, ``NetworkSettings`` of container inspect and the ``Ports`` of
  ``GET /containers/json``; the network list filters; the ``POST /networks/create`` body.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ketch.common.errors import Forbidden, InvalidArgument, NotFound, Unsupported
from ketch.common.ids import truncate_id
from ketch.engine.model import ContainerRecord, EndpointConfig, _Fields, format_time
from ketch.image.listing import bool_filter, match_kv, parse_filters

__all__ = [
    "BUILTIN_NAMES",
    "CreateRequest",
    "Endpoint",
    "NetworkRecord",
    "NetworkState",
    "Published",
    "Sandbox",
    "container_network_settings",
    "endpoint_to_api",
    "inspect_container_entry",
    "list_filter",
    "network_to_api",
    "parse_create_request",
    "parse_links",
    "ports_for_list",
    "prune_filter",
    "requested_networks",
]

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
OPT_MTU = "com.docker.network.driver.mtu"
BUILTIN_NAMES = ("bridge", "host", "none")
_PREDEFINED = ("bridge", "host", "none", "default", "ingress")  # runconfig.IsPreDefinedNetwork
_GO_TRUE, _GO_FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")
_IFNAMSIZ = 15


def _go_bool(key: str, value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise InvalidArgument(f"invalid value {value!r} for option {key}: want true or false")


# ---- records ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkRecord:
    id: str
    name: str
    driver: str  # "bridge", "host" or "null"
    created: int  # unix ns
    bridge: str = ""  # the bridge device (bridge driver)
    enable_ipv6: bool = False
    internal: bool = False
    attachable: bool = False
    ipam_options: Mapping[str, str] | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    parent_owned: bool = False  # macvlan/ipvlan: ketch made the parent (VLAN sub-interface or dummy)

    @property
    def builtin(self) -> bool:
        """One of the networks ketchd makes itself (``type=builtin``); they cannot be removed."""
        return self.name in BUILTIN_NAMES and (self.driver != "bridge" or self.is_default_bridge)

    @property
    def is_default_bridge(self) -> bool:
        return self.options.get(OPT_DEFAULT_BRIDGE) == "true"

    @property
    def user_defined(self) -> bool:
        """Docker's IsUserDefined: neither the default bridge nor host nor none (names resolve only here)."""
        return self.driver in ("bridge", "macvlan", "ipvlan") and not self.is_default_bridge

    @property
    def icc(self) -> bool:
        return _go_bool(OPT_ICC, self.options.get(OPT_ICC, "true"))

    @property
    def masquerade(self) -> bool:
        return _go_bool(OPT_MASQUERADE, self.options.get(OPT_MASQUERADE, "true"))

    @property
    def mtu(self) -> int:
        return int(self.options.get(OPT_MTU) or 1500)

    @property
    def host_binding_ipv4(self) -> str:
        """Where ports published without an address are bound (``0.0.0.0``: everywhere)."""
        return self.options.get(OPT_HOST_BINDING, "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "driver": self.driver, "created": self.created,
            "bridge": self.bridge, "enable_ipv6": self.enable_ipv6, "internal": self.internal,
            "attachable": self.attachable,
            "ipam_options": None if self.ipam_options is None else dict(self.ipam_options),
            "options": dict(self.options), "labels": dict(self.labels), "parent_owned": self.parent_owned,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkRecord:
        ipam = data.get("ipam_options")
        return cls(
            id=str(data["id"]), name=str(data["name"]), driver=str(data["driver"]), created=int(data["created"]),
            bridge=str(data.get("bridge", "")), enable_ipv6=bool(data.get("enable_ipv6", False)),
            internal=bool(data.get("internal", False)), attachable=bool(data.get("attachable", False)),
            ipam_options=None if ipam is None else {str(k): str(v) for k, v in ipam.items()},
            options={str(k): str(v) for k, v in data.get("options", {}).items()},
            labels={str(k): str(v) for k, v in data.get("labels", {}).items()},
            parent_owned=bool(data.get("parent_owned", False)),
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """A container's interface on one network: ``ifname`` inside, ``host_ifname`` (a bridge port) outside."""

    network_id: str
    endpoint_id: str
    ifname: str
    host_ifname: str
    ipv4: str = ""
    ipv4_prefix: int = 0
    gateway: str = ""
    ipv6: str = ""
    ipv6_prefix: int = 0
    ipv6_gateway: str = ""
    mac: str = ""
    default_route: bool = False  # this network's gateway is the container's default route

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """One published port: ``host_ip:host_port/proto`` DNATed to ``container_ip:container_port``."""

    container_port: int
    proto: str
    host_port: int
    container_ip: str
    host_ip: str = ""  # empty: every address of the host

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Published:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(frozen=True, slots=True, kw_only=True)
class Sandbox:
    container_id: str
    name: str  # the container's name without the slash, for DNS and network inspect
    sandbox_id: str
    netns: str  # the network namespace's bind mount
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[Published, ...] = ()
    exposed: tuple[str, ...] = ()  # "80/tcp": every exposed or published port, for NetworkSettings.Ports
    dns: bool = False  # an embedded DNS server answers on 127.0.0.11 in the namespace
    dns_forwarders: tuple[str, ...] = ()
    dns_links: Mapping[str, str] = field(default_factory=dict)  # --link alias -> container name

    def endpoint(self, network_id: str) -> Endpoint | None:
        return next((ep for ep in self.endpoints if ep.network_id == network_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id, "name": self.name, "sandbox_id": self.sandbox_id,
            "netns": self.netns, "endpoints": [ep.to_dict() for ep in self.endpoints],
            "ports": [p.to_dict() for p in self.ports], "exposed": list(self.exposed), "dns": self.dns,
            "dns_forwarders": list(self.dns_forwarders), "dns_links": dict(self.dns_links),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sandbox:
        return cls(
            container_id=str(data["container_id"]), name=str(data["name"]), sandbox_id=str(data["sandbox_id"]),
            netns=str(data["netns"]), endpoints=tuple(Endpoint.from_dict(e) for e in data.get("endpoints", [])),
            ports=tuple(Published.from_dict(p) for p in data.get("ports", [])),
            exposed=tuple(str(k) for k in data.get("exposed", [])), dns=bool(data.get("dns", False)),
            dns_forwarders=tuple(str(f) for f in data.get("dns_forwarders", [])),
            dns_links={str(k): str(v) for k, v in data.get("dns_links", {}).items()},
        )  # fmt: skip


Attached = list[tuple[str, EndpointConfig]]  # (network id, what the container asked of it), in order


@dataclass(slots=True)
class NetworkState:
    """networks.json: the networks, the networks each container is on, and the sandboxes of running ones."""

    networks: dict[str, NetworkRecord] = field(default_factory=dict)
    attached: dict[str, Attached] = field(default_factory=dict)
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "networks": [n.to_dict() for n in self.networks.values()],
                "attached": {
                    cid: [{"network": nid, "config": cfg.to_api()} for nid, cfg in entries]
                    for cid, entries in self.attached.items()
                },
                "sandboxes": [sb.to_dict() for sb in self.sandboxes.values()],
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> NetworkState:
        try:
            data = json.loads(text)
            networks = [NetworkRecord.from_dict(n) for n in data.get("networks", [])]
            attached = {
                str(cid): [(str(e["network"]), EndpointConfig.from_api(e["config"])) for e in entries]
                for cid, entries in data.get("attached", {}).items()
            }
            sandboxes = [Sandbox.from_dict(sb) for sb in data.get("sandboxes", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgument(f"network state: malformed: {exc!r}") from None
        return cls(
            networks={n.id: n for n in networks},
            attached=attached,
            sandboxes={sb.container_id: sb for sb in sandboxes},
        )


# ---- POST /networks/create ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest:
    """``POST /networks/create`` (moby types.NetworkCreateRequest), checked as far as no state is needed."""

    name: str
    driver: str = "bridge"
    enable_ipv6: bool = False
    internal: bool = False
    attachable: bool = False
    ipam_options: Mapping[str, str] | None = None
    ipam_config: tuple[Mapping[str, Any], ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def bridge_name(self) -> str:
        return self.options.get(OPT_BRIDGE_NAME, "")


def parse_create_request(body: Any) -> CreateRequest:
    if body is None:
        raise InvalidArgument("invalid JSON: the network create request has no body")
    f = _Fields(body, "NetworkCreateRequest", "types.NetworkCreateRequest")
    name = f.text("Name")
    if name.strip() == "":
        raise InvalidArgument(f"invalid name: {name}")
    if name in _PREDEFINED:
        raise Forbidden(f"operation is not permitted on predefined {name} network ")
    driver = f.text("Driver") or "bridge"
    if driver == "overlay":
        raise Unsupported("network driver overlay is not supported by ketch (it needs swarm)")
    if driver in ("host", "null"):
        raise Forbidden(f'only one instance of "{driver}" network is allowed')
    if driver not in ("bridge", "macvlan", "ipvlan"):
        raise NotFound(f"plugin {driver!r} not found")
    if f.flag("Ingress"):
        raise Unsupported("ingress networks need swarm, which ketch does not have")
    if f.flag("ConfigOnly") or f.get("ConfigFrom") not in (None, {}):
        raise Unsupported("config-only networks (--config-only, --config-from) are not supported by ketch")
    if f.text("Scope") not in ("", "local"):
        raise Unsupported(f"network scope {f.text('Scope')} is not supported by ketch (only local)")
    ipam = f.nested("IPAM", "network.IPAM")
    configs: list[Mapping[str, Any]] = []
    ipam_options: Mapping[str, str] | None = None
    if ipam is not None:
        if ipam.text("Driver") not in ("", "default"):
            raise NotFound(f"plugin {ipam.text('Driver')!r} not found")
        ipam_options = ipam.str_map("Options")
        for entry in ipam.objects("Config", "network.IPAMConfig") or []:
            for key in ("Subnet", "IPRange", "Gateway"):
                entry.text(key)  # type checks
            entry.str_map("AuxiliaryAddresses")
            configs.append(entry.obj)
    options = dict(f.str_map("Options") or {})
    if driver == "bridge":
        _check_options(options)
    return CreateRequest(
        name=name, driver=driver, enable_ipv6=f.flag("EnableIPv6"), internal=f.flag("Internal"),
        attachable=f.flag("Attachable"), ipam_options=ipam_options, ipam_config=tuple(configs),
        options=options, labels=dict(f.str_map("Labels") or {}),
    )  # fmt: skip


def _check_options(options: Mapping[str, str]) -> None:
    """The bridge driver options ketch honours, checked as the bridge driver parses them."""
    for key in (OPT_ICC, OPT_MASQUERADE):
        if key in options:
            _go_bool(key, options[key])
    if OPT_MTU in options:
        text = options[OPT_MTU]
        if not (text.isascii() and text.isdigit()) or not 68 <= int(text) <= 65535:
            raise InvalidArgument(
                f"invalid value {text!r} for option {OPT_MTU}: want an MTU from 68 to 65535"
            )
    name = options.get(OPT_BRIDGE_NAME)
    if name is not None and (
        not name or len(name.encode()) > _IFNAMSIZ or "/" in name or name.strip() != name
    ):
        raise InvalidArgument(f"invalid bridge name {name!r}: 1 to {_IFNAMSIZ} bytes, no '/' or spaces")
    if OPT_HOST_BINDING in options:
        try:
            ipaddress.IPv4Address(options[OPT_HOST_BINDING])
        except ValueError:
            raise InvalidArgument(
                f"invalid value {options[OPT_HOST_BINDING]!r} for option {OPT_HOST_BINDING}: not an IPv4 address"
            ) from None
    if options.get(OPT_DEFAULT_BRIDGE, "false") not in _GO_FALSE:
        raise Forbidden("the default bridge network is the daemon's own: a network cannot be created as one")


# ---- what a container asks for ------------------------------------------------------------------------------


def requested_networks(record: ContainerRecord) -> list[tuple[str, EndpointConfig]]:
    """The networks a container's create request puts it on, by the name or ID it used: its network mode
    (``default`` is ``bridge``), with the endpoint settings given for it. Host, none and container modes
    have no endpoint of their own here."""
    host = record.host_config
    mode = host.network_mode
    if mode in ("host", "none") or mode.startswith("container:"):
        return []
    name = "bridge" if mode in ("", "default") else mode
    configs = host.endpoints_config or {}
    keys = ("", "default", "bridge") if name == "bridge" else (name,)
    config = next((configs[k] for k in keys if k in configs), None)
    if config is None and len(configs) == 1:
        config = next(iter(configs.values()))  # keyed by an ID prefix or another spelling of the mode
    return [(name, config or EndpointConfig())]


def parse_links(links: Sequence[str] | None) -> dict[str, str]:
    """``--link`` entries (``name:alias``, ``/name:/me/alias`` or ``name``) to {alias: container name}."""
    out: dict[str, str] = {}
    for link in links or ():
        name, sep, alias = link.partition(":")
        name = name.lstrip("/")
        alias = alias.rpartition("/")[2] if sep else name
        if not name or not alias:
            raise InvalidArgument(f"invalid link: {link!r}")
        out[alias] = name
    return out


# ---- Engine API shapes ----------------------------------------------------------------------------------------


def network_to_api(
    net: NetworkRecord,
    ipam_config: Sequence[Mapping[str, Any]],
    containers: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """Network inspect (types.NetworkResource); ``containers`` maps container IDs to their entry
    (Name, EndpointID, MacAddress, IPv4Address, IPv6Address)."""
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": format_time(net.created),
        "Scope": "local",
        "Driver": net.driver,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {
            "Driver": "default",
            "Options": None if net.ipam_options is None else dict(net.ipam_options),
            "Config": [dict(c) for c in ipam_config],
        },
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {cid: dict(entry) for cid, entry in containers.items()},
        "Options": dict(net.options),
        "Labels": dict(net.labels),
    }


def inspect_container_entry(name: str, ep: Endpoint) -> dict[str, str]:
    """One entry of network inspect's ``Containers``."""
    return {
        "Name": name,
        "EndpointID": ep.endpoint_id,
        "MacAddress": ep.mac,
        "IPv4Address": f"{ep.ipv4}/{ep.ipv4_prefix}" if ep.ipv4 else "",
        "IPv6Address": f"{ep.ipv6}/{ep.ipv6_prefix}" if ep.ipv6 else "",
    }


def endpoint_to_api(
    config: EndpointConfig,
    *,
    network_id: str = "",
    endpoint: Endpoint | None = None,
    aliases: Sequence[str] = (),
) -> dict[str, Any]:
    """One network of ``NetworkSettings.Networks`` (network.EndpointSettings); ``endpoint`` when the
    container runs on it."""
    ep = endpoint
    return {
        "IPAMConfig": config.ipam_to_api(),
        "Links": None if config.links is None else list(config.links),
        "Aliases": list(aliases) if aliases else None,
        "NetworkID": network_id,
        "EndpointID": ep.endpoint_id if ep else "",
        "Gateway": ep.gateway if ep else "",
        "IPAddress": ep.ipv4 if ep else "",
        "IPPrefixLen": ep.ipv4_prefix if ep else 0,
        "IPv6Gateway": ep.ipv6_gateway if ep else "",
        "GlobalIPv6Address": ep.ipv6 if ep else "",
        "GlobalIPv6PrefixLen": ep.ipv6_prefix if ep else 0,
        "MacAddress": ep.mac if ep else "",
        "DriverOpts": None if config.driver_opts is None else dict(config.driver_opts),
    }


def _ports_map(sandbox: Sandbox | None) -> dict[str, Any]:
    if sandbox is None:
        return {}
    out: dict[str, Any] = {key: None for key in sandbox.exposed}
    for p in sandbox.ports:
        entries = out.get(p.key) or []
        entries.append({"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
        out[p.key] = entries
    return out


def container_network_settings(
    record: ContainerRecord,
    networks: Sequence[tuple[str, NetworkRecord | None, EndpointConfig]],
    sandbox: Sandbox | None,
    *,
    attached_before: bool,
) -> dict[str, Any]:
    """``NetworkSettings`` of container inspect. ``networks`` are (name, network or None when it is gone,
    config) in order; ``attached_before``: the container was started or connected once (Docker fills
    NetworkID and the short-ID alias from then on)."""
    short = truncate_id(record.id)
    out_networks: dict[str, Any] = {}
    top: Endpoint | None = None
    for name, net, config in networks:
        ep = sandbox.endpoint(net.id) if sandbox is not None and net is not None else None
        aliases = list(config.aliases or ())
        if net is not None and net.user_defined and attached_before and short not in aliases:
            aliases.append(short)
        network_id = net.id if net is not None and (attached_before or ep is not None) else ""
        out_networks[name] = endpoint_to_api(config, network_id=network_id, endpoint=ep, aliases=aliases)
        if net is not None and net.is_default_bridge and ep is not None:
            top = ep
    return {
        "Bridge": "",
        "SandboxID": sandbox.sandbox_id if sandbox else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": _ports_map(sandbox),
        "SandboxKey": sandbox.netns if sandbox else "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": top.endpoint_id if top else "",
        "Gateway": top.gateway if top else "",
        "GlobalIPv6Address": top.ipv6 if top else "",
        "GlobalIPv6PrefixLen": top.ipv6_prefix if top else 0,
        "IPAddress": top.ipv4 if top else "",
        "IPPrefixLen": top.ipv4_prefix if top else 0,
        "IPv6Gateway": top.ipv6_gateway if top else "",
        "MacAddress": top.mac if top else "",
        "Networks": out_networks,
    }


def ports_for_list(sandbox: Sandbox | None) -> list[dict[str, Any]]:
    """The ``Ports`` of ``GET /containers/json``: each binding, and each exposed port without one."""
    if sandbox is None:
        return []
    out: list[dict[str, Any]] = []
    bound = set()
    for p in sandbox.ports:
        out.append({"IP": p.host_ip or "0.0.0.0", "PrivatePort": p.container_port, "PublicPort": p.host_port,
                    "Type": p.proto})  # fmt: skip
        bound.add(p.key)
    for key in sandbox.exposed:
        if key not in bound:
            port, _, proto = key.partition("/")
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return out


# ---- filters --------------------------------------------------------------------------------------------------

Filters = Mapping[str, Sequence[str]]
_LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")


def _regex_match(patterns: Sequence[str], source: str) -> bool:
    """filters.Args.Match: a value matches when it is a regular expression found in the source."""
    for pattern in patterns:
        try:
            if re.search(pattern, source):
                return True
        except re.error:
            continue
    return False


def list_filter(filters: Filters) -> Callable[[NetworkRecord, int], bool]:
    """The ``filters`` of ``GET /networks`` as a predicate of (network, number of running containers on it)."""
    f = parse_filters(filters, _LIST_FILTERS)
    for value in f.get("type", []):
        if value not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{value}'")
    dangling = bool_filter(f, "dangling", False) if "dangling" in f else None

    def accept(net: NetworkRecord, in_use: int) -> bool:
        if "name" in f and not _regex_match(f["name"], net.name):
            return False
        if "id" in f and not _regex_match(f["id"], net.id):
            return False
        if "driver" in f and net.driver not in f["driver"]:
            return False
        if "scope" in f and "local" not in f["scope"]:
            return False
        if "label" in f and not match_kv(list(f["label"]), net.labels):
            return False
        if "type" in f and ("builtin" if net.builtin else "custom") not in f["type"]:
            return False
        if dangling is not None:
            unused = not net.builtin and in_use == 0
            if unused != dangling:
                return False
        return True

    return accept


def prune_filter(filters: Filters, parse_until: Callable[[str], int]) -> Callable[[NetworkRecord], bool]:
    """``POST /networks/prune``'s ``until``, ``label`` and ``label!``, as a predicate of a network."""
    f = parse_filters(filters, ("until", "label", "label!"))
    until = [parse_until(v) for v in f.get("until", [])]

    def accept(net: NetworkRecord) -> bool:
        if until and not all(net.created < u for u in until):
            return False
        if "label" in f and not match_kv(list(f["label"]), net.labels):
            return False
        return not ("label!" in f and f["label!"] and match_kv(list(f["label!"]), net.labels))

    return accept

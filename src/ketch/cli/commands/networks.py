"""``network``: create, ls, inspect, rm, prune, connect and disconnect, as docker 20.10 sends and prints them.

- ``create`` sends docker's NetworkCreateRequest (``CheckDuplicate`` set, the IPAM pools consolidated from
  ``--subnet``/``--ip-range``/``--gateway``/``--aux-address`` as docker does) and prints the new ID.
- ``ls`` sorts by name in natural order; the default table is NETWORK ID, NAME, DRIVER, SCOPE.
- ``inspect`` prints the daemon's JSON indented by four spaces, or a ``--format`` template per network.
- ``rm`` looks each network up first (as docker does, to warn before removing an ingress network), prints each
  name removed, each failure on stderr as it happens, and exits 1 if any failed.
- ``prune`` asks first (unless ``-f``) and lists the removed networks under "Deleted Networks:".
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli
    from ketch.spec.engine_api import Filters

__all__ = ["NetworkContext", "consolidate_ipam", "create_body", "natural_less", "register"]

NETWORK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORK_HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv6": "IPV6",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}
RAW_FORMAT = "network_id: {{.ID}}\nname: {{.Name}}\ndriver: {{.Driver}}\nscope: {{.Scope}}\n"
PRUNE_WARNING = (
    "WARNING! This will remove all custom networks not used by at least one container.\n"
    "Are you sure you want to continue?"
)
INGRESS_WARNING = (
    "WARNING! Before removing the routing-mesh network, make sure all the nodes in your swarm run the same "
    "docker engine version. Otherwise, removal may not be effective and functionality of newly create ingress "
    "networks will be impaired.\nAre you sure you want to continue?"
)


# ---- natural order and times ------------------------------------------------------------------------------------


def _natural_key(text: str) -> list[tuple[int, int, bytes, int]]:
    """A key that orders strings as fvbommel/sortorder's NaturalLess: bytewise, except that runs of digits
    compare as numbers (fewer leading zeros first on a tie) and come before any other byte."""
    data = text.encode()
    key: list[tuple[int, int, bytes, int]] = []
    index = 0
    while index < len(data):
        if 0x30 <= data[index] <= 0x39:
            start = index
            while index < len(data) and data[index] == 0x30:
                index += 1
            digits = index
            while index < len(data) and 0x30 <= data[index] <= 0x39:
                index += 1
            number = data[digits:index]
            key.append((0, len(number), number, digits - start))
        else:
            key.append((1, data[index], b"", 0))
            index += 1
    return key


def natural_less(a: str, b: str) -> bool:
    return _natural_key(a) < _natural_key(b)


def go_time_string(stamp: str) -> str:
    """Go's ``time.Time.String()`` for an RFC 3339 time from the API: ``2026-11-22 11:21:53.96756233 +0000 UTC``."""
    date, sep, rest = stamp.partition("T")
    if not sep:
        return stamp
    if rest.endswith(("Z", "z")):
        clock, zone = rest[:-1], "+0000 UTC"
    elif len(rest) > 6 and rest[-6] in "+-" and rest[-3] == ":":
        clock, offset = rest[:-6], rest[-6:].replace(":", "")
        zone = f"{offset} {offset}"  # a fixed zone without a name prints its offset twice
    else:
        return stamp
    whole, dot, fraction = clock.partition(".")
    fraction = fraction.rstrip("0")
    return f"{date} {whole}{'.' + fraction if dot and fraction else ''} {zone}"


# ---- ls -----------------------------------------------------------------------------------------------------------


class NetworkContext:
    """One row of ``ketch network ls`` (docker's networkContext); methods are the template fields."""

    go_type = "*network.networkContext"

    def __init__(self, network: dict[str, Any], trunc: bool) -> None:
        self._n = network
        self._trunc = trunc

    def ID(self) -> str:
        from ketch.cli.commands.images import truncate_id

        network_id = str(self._n.get("Id") or "")
        return truncate_id(network_id) if self._trunc else network_id

    def Name(self) -> str:
        return str(self._n.get("Name") or "")

    def Driver(self) -> str:
        return str(self._n.get("Driver") or "")

    def Scope(self) -> str:
        return str(self._n.get("Scope") or "")

    def IPv6(self) -> str:
        return "true" if self._n.get("EnableIPv6") else "false"

    def Internal(self) -> str:
        return "true" if self._n.get("Internal") else "false"

    def Labels(self) -> str:
        labels = self._n.get("Labels") or {}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))  # docker's order is a map's: any

    def Label(self, name: str) -> str:
        return str((self._n.get("Labels") or {}).get(name, ""))

    def CreatedAt(self) -> str:
        return go_time_string(str(self._n.get("Created") or "0001-01-01T00:00:00Z"))

    def to_json(self) -> dict[str, str]:
        return {name: getattr(self, name)() for name in sorted(NETWORK_HEADERS)}


def _filter_args(values: list[str], flag: str, command: str) -> Filters:
    """opts.FilterOpt: ``name=value`` pairs, names lower-cased, both trimmed; an empty value is skipped."""
    from ketch.cli.main import CommandError
    from ketch.spec.engine_api import Filters

    fields: dict[str, set[str]] = {}
    for value in values:
        if not value:
            continue
        key, sep, arg = value.partition("=")
        if not sep:
            raise CommandError(f'invalid argument "{value}" for "{flag}" flag: bad format of filter (expected '
                               f"name=value)\nSee 'ketch {command} --help'.", 125)  # fmt: skip
        fields.setdefault(key.strip().lower(), set()).add(arg.strip())
    return Filters(fields)


def ls(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.templates import render

    filters = _filter_args(args.filter, "-f, --filter", "network ls") if args.filter else None
    listed = cli.client().networks(filters)
    fmt = args.format
    if not fmt:
        configured = str(cli.config().get("networksFormat") or "")
        fmt = configured if configured and not args.quiet else "table"
    if fmt == "table":
        fmt = "{{.ID}}" if args.quiet else NETWORK_TABLE
    elif fmt == "raw":
        fmt = "network_id: {{.ID}}" if args.quiet else RAW_FORMAT
    import functools

    def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
        name_a, name_b = str(a.get("Name") or ""), str(b.get("Name") or "")
        return -1 if natural_less(name_a, name_b) else 1 if natural_less(name_b, name_a) else 0

    rows = [NetworkContext(n, not args.no_trunc) for n in sorted(listed, key=functools.cmp_to_key(compare))]
    cli.out(render(fmt, rows, NETWORK_HEADERS))
    return 0


# ---- create ---------------------------------------------------------------------------------------------------


def _ip_of(data: str) -> Any:
    """What subnetMatches reads from ``data``: the address of a CIDR, or a plain address (None if neither)."""
    import ipaddress

    if "/" in data:
        address, _, prefix = data.partition("/")
        try:
            if not prefix.isdigit() or "%" in address:
                raise ValueError(data)
            ipaddress.ip_network(data, strict=False)
            return ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"invalid CIDR address: {data}") from None
    try:
        return None if "%" in data else ipaddress.ip_address(data)
    except ValueError:
        return None


def _subnet_matches(subnet: str, data: str) -> bool:
    """subnetMatches: does the CIDR ``subnet`` hold the address in ``data``?"""
    import ipaddress

    address, _, prefix = subnet.partition("/")
    try:
        if not prefix.isdigit() or "%" in address:
            raise ValueError(subnet)
        network = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise ValueError(f"invalid subnet: invalid CIDR address: {subnet}") from None
    ip = _ip_of(data)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # Go keeps an IPv4-mapped address as IPv4
    return ip is not None and ip.version == network.version and ip in network


def consolidate_ipam(
    subnets: list[str], ranges: list[str], gateways: list[str], aux: dict[str, str]
) -> list[dict[str, Any]]:
    """consolidateIpam: one IPAM pool per subnet, each ``--ip-range``, ``--gateway`` and ``--aux-address`` in
    the subnet that holds it. Raises ValueError with docker's message."""
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise ValueError("every ip-range or gateway must have a corresponding subnet")
    pools: dict[str, dict[str, Any]] = {}
    for subnet in subnets:
        for known in pools:
            if _subnet_matches(subnet, known) or _subnet_matches(known, subnet):
                raise ValueError("multiple overlapping subnet configuration is not supported")
        pools[subnet] = {"Subnet": subnet, "IPRange": "", "Gateway": "", "AuxiliaryAddresses": {}}
    for field, values, what in (("IPRange", ranges, "range"), ("Gateway", gateways, "gateway")):
        for value in values:
            matched = False
            for subnet in subnets:
                if not _subnet_matches(subnet, value):
                    continue
                if pools[subnet][field]:
                    plural = "ranges" if what == "range" else "gateways"
                    on = "on the same" if what == "range" else "for the same"
                    raise ValueError(f"cannot configure multiple {plural} ({value}, {pools[subnet][field]}) {on} "
                                     f"subnet ({subnet})")  # fmt: skip
                pools[subnet][field] = value
                matched = True
            if not matched:
                raise ValueError(f"no matching subnet for {what} {value}")
    for key, address in aux.items():
        matched = False
        for subnet in subnets:
            if _subnet_matches(subnet, address):
                pools[subnet]["AuxiliaryAddresses"][key] = address
                matched = True
        if not matched:
            raise ValueError(f"no matching subnet for aux-address {address}")
    # network.IPAMConfig: every field omitempty; Go writes the map's keys sorted
    return [
        {k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in pool.items() if v}
        for pool in pools.values()
    ]


def _csv_values(values: list[str]) -> list[str]:
    """pflag's StringSlice: every occurrence is a CSV line, its fields appended."""
    import csv

    out: list[str] = []
    for value in values:
        if value:
            out += next(csv.reader([value]))
    return out


def _map_opt(values: list[str]) -> dict[str, str]:
    """opts.MapOpts: ``k=v`` or ``k`` (empty value); a later key wins."""
    out: dict[str, str] = {}
    for value in values:
        key, _, item = value.partition("=")
        out[key] = item
    return out


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    """docker's NetworkCreateRequest for ``network create``'s flags, in its key order."""
    from ketch.cli import opts
    from ketch.cli.main import CommandError

    for label in args.label:
        if "=" not in label:
            raise CommandError(f'invalid argument "{label}" for "--label" flag: bad attribute format: {label}\n'
                               "See 'ketch network create --help'.", 125)  # fmt: skip
    try:
        pools = consolidate_ipam(
            _csv_values(args.subnet), _csv_values(args.ip_range), _csv_values(args.gateway),
            _map_opt(args.aux_address),
        )  # fmt: skip
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return {
        "CheckDuplicate": True,
        "Driver": args.driver,
        "Scope": args.scope,
        "EnableIPv6": args.ipv6,
        "IPAM": {"Driver": args.ipam_driver, "Options": _map_opt(args.ipam_opt), "Config": pools},
        "Internal": args.internal,
        "Attachable": args.attachable,
        "Ingress": args.ingress,
        "ConfigOnly": args.config_only,
        "ConfigFrom": {"Network": args.config_from} if args.config_from else None,
        "Options": _map_opt(args.opt),
        "Labels": opts.kv_map(args.label),
        "Name": args.name,
    }


def create(cli: Cli, args: argparse.Namespace) -> int:
    body = create_body(args)
    created = cli.client().create_network(body)
    cli.out(f"{created.get('Id', '')}\n")
    return 0


# ---- inspect, rm, prune --------------------------------------------------------------------------------------


def inspect(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.images import indented_json
    from ketch.cli.commands.run import daemon_text
    from ketch.cli.main import CommandError
    from ketch.cli.templates import Template, TemplateError
    from ketch.common.errors import KetchError

    template = None
    if args.format:
        try:
            template = Template(args.format.replace("\\t", "\t").replace("\\n", "\n"))
        except TemplateError as exc:
            raise CommandError(f"Template parsing error: {exc}", 64) from None
    client = cli.client()
    found: list[Any] = []
    errors: list[str] = []
    text: list[str] = []
    for name in args.names:
        try:
            network = client.inspect_network(name, verbose=args.verbose)
        except KetchError as exc:
            errors.append(daemon_text(exc))
            continue
        if template is None:
            found.append(network)
            continue
        try:
            text.append(template.execute(network) + "\n")
        except TemplateError as exc:
            errors.append(f"Template parsing error: {exc}")
    cli.out("".join(text) if template is not None else indented_json(found))
    if errors:
        raise CommandError("\n".join(errors))
    return 0


def rm(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.containers import confirm
    from ketch.cli.commands.run import daemon_text
    from ketch.cli.main import CommandError
    from ketch.common.errors import KetchError, NotFound

    client = cli.client()
    failed = False
    for name in args.networks:
        try:
            ingress = bool(client.inspect_network(name).get("Ingress"))
        except KetchError:
            ingress = False
        if ingress and not confirm(cli, INGRESS_WARNING):
            continue
        try:
            client.remove_network(name)
        except KetchError as exc:
            if args.force and isinstance(exc, NotFound):
                continue
            cli.err(daemon_text(exc) + "\n")
            failed = True
            continue
        cli.out(f"{name}\n")
    if failed:
        raise CommandError("")  # each failure is already on stderr
    return 0


def prune_filters(cli: Cli, filters: Filters) -> Filters:
    """command.PruneFilters: config.json's ``pruneFilters`` added to the command line's (a ``label`` there
    gives way to the same ``label!`` given here, and the other way round)."""
    from ketch.spec.engine_api import Filters

    extra = cli.config().get("pruneFilters") or []
    if not isinstance(extra, list) or not extra:
        return filters
    fields = {key: set(filters.get(key)) for key in filters}
    for item in extra:
        key, sep, value = str(item).partition("=")
        if not sep:
            continue
        if key == "label" and value in fields.get("label!", set()):
            continue
        if key == "label!" and value in fields.get("label", set()):
            continue
        fields.setdefault(key, set()).add(value)
    return Filters(fields)


def prune(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.containers import confirm

    filters = prune_filters(cli, _filter_args(args.filter, "--filter", "network prune"))
    if not args.force and not confirm(cli, PRUNE_WARNING):
        return 0
    report = cli.client().prune_networks(filters)
    deleted = report.get("NetworksDeleted") or []
    if deleted:
        cli.out("Deleted Networks:\n" + "".join(f"{name}\n" for name in deleted) + "\n")
    return 0


# ---- connect, disconnect -------------------------------------------------------------------------------------


def connect(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli import opts
    from ketch.cli.main import CommandError

    for link in args.link:
        try:
            opts.validate_link(link)
        except ValueError as exc:
            raise CommandError(f'invalid argument "{link}" for "--link" flag: {exc}\n'
                               "See 'ketch network connect --help'.", 125) from None  # fmt: skip
    try:
        driver_opts = opts.parse_driver_opts(_csv_values(args.driver_opt))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    ipam: dict[str, Any] = {}  # EndpointIPAMConfig: set, with its omitempty fields, as docker sends it
    for key, value in (("IPv4Address", args.ip), ("IPv6Address", args.ip6),
                       ("LinkLocalIPs", _csv_values(args.link_local_ip))):  # fmt: skip
        if value:
            ipam[key] = value
    config = {
        "IPAMConfig": ipam,
        "Links": list(args.link) or None,
        "Aliases": _csv_values(args.alias),
        "NetworkID": "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "",
        "DriverOpts": driver_opts,
    }
    cli.client().connect_network(args.network, args.container, config)
    return 0


def disconnect(cli: Cli, args: argparse.Namespace) -> int:
    cli.client().disconnect_network(args.network, args.container, force=args.force)
    return 0


# ---- argument parsers ---------------------------------------------------------------------------------------------


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    group = sub.add_parser("network", help="Manage networks")
    group.interspersed = False
    group_sub = group.add_subparsers(dest="group_command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[Cli, argparse.Namespace], int], help_text: str, requires: str,
            aliases: tuple[str, ...] = ()) -> Any:  # fmt: skip
        parser = group_sub.add_parser(name, aliases=list(aliases), help=help_text)
        parser.requires = requires
        parser.set_defaults(handler=f"network {name}")
        handlers[f"network {name}"] = handler
        return parser

    parser = add("create", create, "Create a network", "exactly 1 argument")
    parser.add_argument("name", metavar="NETWORK")
    parser.add_argument("--attachable", action="store_true")
    parser.add_argument("--aux-address", action="append", default=[])
    parser.add_argument("--config-from", default="")
    parser.add_argument("--config-only", action="store_true")
    parser.add_argument("-d", "--driver", default="bridge")
    parser.add_argument("--gateway", action="append", default=[])
    parser.add_argument("--ingress", action="store_true")
    parser.add_argument("--internal", action="store_true")
    parser.add_argument("--ip-range", action="append", default=[])
    parser.add_argument("--ipam-driver", default="default")
    parser.add_argument("--ipam-opt", action="append", default=[])
    parser.add_argument("--ipv6", action="store_true")
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("-o", "--opt", action="append", default=[])
    parser.add_argument("--scope", default="")
    parser.add_argument("--subnet", action="append", default=[])

    parser = add("connect", connect, "Connect a container to a network", "exactly 2 arguments")
    parser.add_argument("network", metavar="NETWORK")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("--alias", action="append", default=[])
    parser.add_argument("--driver-opt", action="append", default=[])
    parser.add_argument("--ip", default="")
    parser.add_argument("--ip6", default="")
    parser.add_argument("--link", action="append", default=[])
    parser.add_argument("--link-local-ip", action="append", default=[])

    parser = add("disconnect", disconnect, "Disconnect a container from a network", "exactly 2 arguments")
    parser.add_argument("network", metavar="NETWORK")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("-f", "--force", action="store_true")

    parser = add("inspect", inspect, "Display detailed information on one or more networks",
                 "at least 1 argument")  # fmt: skip
    parser.add_argument("names", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--format", default="")
    parser.add_argument("-v", "--verbose", action="store_true")

    parser = add("ls", ls, "List networks", "", aliases=("list",))
    parser.add_argument("-f", "--filter", action="append", default=[])
    parser.add_argument("--format", default="")
    parser.add_argument("--no-trunc", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")

    parser = add("prune", prune, "Remove all unused networks", "")
    parser.add_argument("--filter", action="append", default=[])
    parser.add_argument("-f", "--force", action="store_true")

    parser = add("rm", rm, "Remove one or more networks", "at least 1 argument", aliases=("remove",))
    parser.add_argument("networks", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--force", action="store_true")

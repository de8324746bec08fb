"""``ps`` (``container ls``): docker's container list formatter (cli/command/formatter/container.go).

Default columns CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES; IDs cut to 12 characters,
commands to 20 (with an ellipsis) and quoted as Go quotes them, creation shown as "About a minute ago".
``--format`` takes ``table ...``, ``{{json .}}`` or any template over the row fields; a template that uses
``.Size`` asks the daemon for sizes, as docker does.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli

__all__ = ["ContainerContext", "displayable_ports", "go_quote", "register"]

_now: Callable[[], float] = time.time  # tests pin the clock

PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Names": "NAMES",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Networks": "NETWORKS",
}
RAW_FORMAT = (
    "container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\n"
    "state: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\nnames: {{.Names}}\n"
    "labels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n"
)


def go_quote(text: str) -> str:
    """strconv.Quote: double quotes, Go's escapes, printable characters kept as they are."""
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               "\\": "\\\\", '"': '\\"'}  # fmt: skip
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def displayable_ports(ports: list[dict[str, Any]]) -> str:
    """formatter.DisplayablePorts: ``0.0.0.0:8080->80/tcp, 9000-9001/udp``; consecutive ports grouped."""

    def key(port: dict[str, Any]) -> tuple[int, str, int, str]:
        return (int(port.get("PrivatePort") or 0), str(port.get("IP") or ""), int(port.get("PublicPort") or 0),
                str(port.get("Type") or ""))  # fmt: skip

    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []

    def form(group_key: str, first: int, last: int) -> str:
        ip, sep, kind = group_key.rpartition("/")
        text = str(first) if first == last else f"{first}-{last}"
        if sep and ip:
            text = f"{_join_host_port(ip, text)}->{text}"
        return f"{text}/{kind}"

    for port in sorted(ports, key=key):
        current = int(port.get("PrivatePort") or 0)
        kind = str(port.get("Type") or "")
        group_key = kind
        ip = str(port.get("IP") or "")
        if ip:
            public = int(port.get("PublicPort") or 0)
            if public != current:
                mappings.append(f"{_join_host_port(ip, str(public))}->{current}/{kind}")
                continue
            group_key = f"{ip}/{kind}"
        group = groups.get(group_key)
        if group is None:
            groups[group_key] = [current, current]
            order.append(group_key)
            continue
        if current == group[1] + 1:
            group[1] = current
            continue
        result.append(form(group_key, group[0], group[1]))
        groups[group_key] = [current, current]
    result += [form(k, groups[k][0], groups[k][1]) for k in order]
    return ", ".join(result + mappings)


def _familiar_image(image: str) -> str:
    """The image as docker shows it when truncating: familiar name, digest dropped, tag kept."""
    from ketch.cli.plainref import familiar, split_plain

    plain = split_plain(image)
    if plain is not None:
        return familiar(plain[0]) + (f":{plain[1]}" if plain[1] else "")
    from ketch.common.errors import InvalidArgument
    from ketch.spec import reference

    try:
        ref = reference.parse(image, default_tag=False)
    except InvalidArgument:
        return image
    return ref.familiar_name + (f":{ref.tag}" if ref.tag else "")


class ContainerContext:
    """One row of ``ketch ps`` (docker's ContainerContext); methods are the template fields."""

    go_type = "*formatter.ContainerContext"

    def __init__(self, container: dict[str, Any], trunc: bool) -> None:
        self._c = container
        self._trunc = trunc
        self.fields_used: set[str] = set()

    def ID(self) -> str:
        from ketch.cli.commands.images import truncate_id

        container_id = str(self._c.get("Id") or "")
        return truncate_id(container_id) if self._trunc else container_id

    def Names(self) -> str:
        names = [str(n).removeprefix("/") for n in self._c.get("Names") or []]
        if self._trunc:
            for name in names:
                if "/" not in name:
                    return name
            return ""
        return ",".join(names)

    def Image(self) -> str:
        from ketch.cli.commands.images import truncate_id

        image = str(self._c.get("Image") or "")
        if not image:
            return "<no image>"
        if not self._trunc:
            return image
        short = truncate_id(str(self._c.get("ImageID") or ""))
        if short == truncate_id(image):
            return short
        return _familiar_image(image)

    def Command(self) -> str:
        from ketch.cli.templates import ellipsis

        command = str(self._c.get("Command") or "")
        return go_quote(ellipsis(command, 20) if self._trunc else command)

    def CreatedAt(self) -> str:
        from ketch.cli.commands.images import _local_time

        return _local_time(int(self._c.get("Created") or 0), "string")

    def RunningFor(self) -> str:
        from ketch.cli.templates import human_duration

        return human_duration(_now() - int(self._c.get("Created") or 0)) + " ago"

    def Ports(self) -> str:
        return displayable_ports(list(self._c.get("Ports") or []))

    def State(self) -> str:
        return str(self._c.get("State") or "")

    def Status(self) -> str:
        return str(self._c.get("Status") or "")

    def Size(self) -> str:
        from ketch.cli.templates import human_size

        self.fields_used.add("Size")
        size_rw = float(self._c.get("SizeRw") or 0)
        size_root = float(self._c.get("SizeRootFs") or 0)
        text = human_size(size_rw)
        return f"{text} (virtual {human_size(size_root)})" if size_root > 0 else text

    def Labels(self) -> str:
        labels = self._c.get("Labels") or {}
        return ",".join(sorted(f"{k}={v}" for k, v in labels.items()))

    def Label(self, name: str) -> str:
        return str((self._c.get("Labels") or {}).get(name, ""))

    def Mounts(self) -> str:
        from ketch.cli.templates import ellipsis

        names = []
        for mount in self._c.get("Mounts") or []:
            name = str(mount.get("Name") or mount.get("Source") or "")
            names.append(ellipsis(name, 15) if self._trunc else name)
        return ",".join(names)

    def LocalVolumes(self) -> str:
        return str(sum(1 for m in self._c.get("Mounts") or [] if m.get("Driver") == "local"))

    def Networks(self) -> str:
        settings = self._c.get("NetworkSettings") or {}
        return ",".join(sorted((settings.get("Networks") or {}).keys()))

    def to_json(self) -> dict[str, str]:
        # docker marshals every no-argument field method (Size included), keys sorted.
        return {name: getattr(self, name)() for name in sorted(PS_HEADERS)}


def _uses_size(fmt: str) -> bool:
    """docker runs the template once on an empty row to see whether it reads .Size (``json`` does)."""
    from ketch.cli.templates import Template, TemplateError

    probe = ContainerContext({}, True)
    try:
        Template(fmt.removeprefix("table").strip(" ").replace("\\t", "\t").replace("\\n", "\n")).execute(
            probe
        )
    except TemplateError:
        return False
    return "Size" in probe.fields_used


def ps(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.images import _filters
    from ketch.cli.main import CommandError
    from ketch.cli.templates import render

    fmt = args.format
    if not fmt:
        fmt = str(cli.config().get("psFormat") or "")
    elif args.quiet:
        cli.err("WARNING: Ignoring custom format, because both --format and --quiet are set.\n")
    try:
        last = int(args.last)
    except ValueError:
        raise CommandError(f'invalid argument "{args.last}" for "-n, --last" flag: strconv.ParseInt: parsing '
                           f'"{args.last}": invalid syntax\nSee \'ketch ps --help\'.', 125) from None  # fmt: skip
    limit = 1 if args.latest and last == -1 else last
    size = args.size or (not args.quiet and bool(fmt) and _uses_size(fmt))
    filters = _filters(args.filter) if args.filter else None  # no filters: no need for the Filters class
    listed = cli.client().containers(all=args.all, limit=limit, size=size, filters=filters)
    if fmt in ("", "table"):
        fmt = "{{.ID}}" if args.quiet else PS_TABLE + ("\t{{.Size}}" if size else "")
    elif fmt == "raw":
        fmt = "container_id: {{.ID}}\n" if args.quiet else RAW_FORMAT + ("size: {{.Size}}\n" if size else "")
    elif args.quiet:
        fmt = "{{.ID}}"
    rows = [ContainerContext(container, not args.no_trunc) for container in listed]
    cli.out(render(fmt, rows, PS_HEADERS))
    return 0


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    add_commands(sub, handlers, prefix="")


def add_commands(
    sub: Any,
    handlers: dict[str, Callable[[Cli, argparse.Namespace], int]],
    prefix: str,
    aliases: tuple[str, ...] = (),
) -> None:
    """``ps`` under ``sub`` (``container ls`` with ``aliases`` ps and list)."""
    name = "ls" if aliases else "ps"
    parser = sub.add_parser(name, aliases=list(aliases), help="List containers")
    parser.add_argument("-a", "--all", action="store_true")
    parser.add_argument("-f", "--filter", action="append", default=[])
    parser.add_argument("--format", default="")
    parser.add_argument("-n", "--last", default="-1")
    parser.add_argument("-l", "--latest", action="store_true")
    parser.add_argument("--no-trunc", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("-s", "--size", action="store_true")
    parser.set_defaults(handler=prefix + "ps")
    handlers[prefix + "ps"] = ps

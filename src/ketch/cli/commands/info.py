"""``info``, ``system df``, ``system prune`` and the ``system`` command group (info, df, prune, events).

``info`` prints docker 20.10's layout (cli/command/system/info.go): the client section, then the server's
counts, drivers, plugins, runtimes, security options, kernel and registry settings; the daemon's warnings go
to stderr. ``--format`` templates see the ``/info`` answer with ``ClientInfo`` added.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli

__all__ = ["register", "server_info_text"]


def _go(value: Any) -> str:
    """fmt.Println of a value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _security_options(options: list[str]) -> list[str]:
    """DecodeSecurityOptions, printed: ``  name`` then ``   Profile: p`` for a profile option."""
    lines: list[str] = []
    for option in options:
        fields: dict[str, str] = {}
        for part in option.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                fields["name"] = key
            else:
                fields[key] = value
        lines.append("  " + fields.get("name", ""))
        if "profile" in fields:
            lines.append(f"   Profile: {fields['profile']}")
    return lines


def server_info_text(info: dict[str, Any], username: str = "") -> str:
    """The ``Server:`` section's body as docker 20.10 prints it."""
    from ketch.cli.commands.stats import bytes_size

    lines: list[str] = []

    def line(label: str, value: Any) -> None:
        lines.append(f"{label} {_go(value)}")

    def non_empty(label: str, value: Any) -> None:
        if value not in (None, ""):
            line(label, value)

    line(" Containers:", info.get("Containers", 0))
    line("  Running:", info.get("ContainersRunning", 0))
    line("  Paused:", info.get("ContainersPaused", 0))
    line("  Stopped:", info.get("ContainersStopped", 0))
    line(" Images:", info.get("Images", 0))
    non_empty(" Server Version:", info.get("ServerVersion"))
    non_empty(" Storage Driver:", info.get("Driver"))
    for pair in info.get("DriverStatus") or []:
        lines.append(f"  {pair[0]}: {pair[1]}")
    for pair in info.get("SystemStatus") or []:
        lines.append(f" {pair[0]}: {pair[1]}")
    non_empty(" Logging Driver:", info.get("LoggingDriver"))
    non_empty(" Cgroup Driver:", info.get("CgroupDriver"))
    non_empty(" Cgroup Version:", info.get("CgroupVersion"))
    plugins = info.get("Plugins") or {}
    lines.append(" Plugins:")
    line("  Volume:", " ".join(plugins.get("Volume") or []))
    line("  Network:", " ".join(plugins.get("Network") or []))
    if plugins.get("Authorization"):
        line("  Authorization:", " ".join(plugins["Authorization"]))
    line("  Log:", " ".join(plugins.get("Log") or []))
    swarm = info.get("Swarm") or {}
    line(" Swarm:", swarm.get("LocalNodeState", ""))
    if swarm.get("LocalNodeState") not in (None, "", "inactive", "locked"):
        line("  NodeID:", swarm.get("NodeID", ""))
        if swarm.get("Error"):
            line("  Error:", swarm["Error"])
        line("  Is Manager:", bool(swarm.get("ControlAvailable")))
        line("  Node Address:", swarm.get("NodeAddr", ""))
    runtimes = info.get("Runtimes") or {}
    if runtimes:
        line(" Runtimes:", " ".join(sorted(runtimes)))
        line(" Default Runtime:", info.get("DefaultRuntime", ""))
    if info.get("OSType") == "linux":
        line(" Init Binary:", info.get("InitBinary", ""))
        line(" containerd version:", (info.get("ContainerdCommit") or {}).get("ID", ""))
        line(" runc version:", (info.get("RuncCommit") or {}).get("ID", ""))
        line(" init version:", (info.get("InitCommit") or {}).get("ID", ""))
        if info.get("SecurityOptions"):
            lines.append(" Security Options:")
            lines += _security_options(list(info["SecurityOptions"]))
    if info.get("OSType") == "windows":
        line(" Default Isolation:", info.get("Isolation", ""))
    non_empty(" Kernel Version:", info.get("KernelVersion"))
    non_empty(" Operating System:", info.get("OperatingSystem"))
    non_empty(" OSType:", info.get("OSType"))
    non_empty(" Architecture:", info.get("Architecture"))
    line(" CPUs:", info.get("NCPU", 0))
    line(" Total Memory:", bytes_size(float(info.get("MemTotal") or 0)))
    non_empty(" Name:", info.get("Name"))
    non_empty(" ID:", info.get("ID"))
    line(" Docker Root Dir:", info.get("DockerRootDir", ""))
    line(" Debug Mode:", bool(info.get("Debug")))
    if info.get("Debug"):
        line("  File Descriptors:", info.get("NFd", 0))
        line("  Goroutines:", info.get("NGoroutines", 0))
        line("  System Time:", info.get("SystemTime", ""))
        line("  EventsListeners:", info.get("NEventsListener", 0))
    non_empty(" HTTP Proxy:", info.get("HttpProxy"))
    non_empty(" HTTPS Proxy:", info.get("HttpsProxy"))
    non_empty(" No Proxy:", info.get("NoProxy"))
    if info.get("IndexServerAddress"):
        if username:
            line(" Username:", username)
        line(" Registry:", info["IndexServerAddress"])
    if info.get("Labels") is not None:
        lines.append(" Labels:")
        lines += [f"  {label}" for label in info["Labels"]]
    line(" Experimental:", bool(info.get("ExperimentalBuild")))
    registry = info.get("RegistryConfig") or {}
    cidrs = registry.get("InsecureRegistryCIDRs") or []
    indexes = registry.get("IndexConfigs") or {}
    if cidrs or indexes:
        lines.append(" Insecure Registries:")
        lines += [
            f"  {config.get('Name', name)}" for name, config in indexes.items() if not config.get("Secure")
        ]
        lines += [f"  {cidr}" for cidr in cidrs]
    if registry.get("Mirrors"):
        lines.append(" Registry Mirrors:")
        lines += [f"  {mirror}" for mirror in registry["Mirrors"]]
    line(" Live Restore Enabled:", bool(info.get("LiveRestoreEnabled")))
    if info.get("ProductLicense"):
        line(" Product License:", info["ProductLicense"])
    pools = info.get("DefaultAddressPools") or []
    if pools:
        lines.append(" Default Address Pools:")
        lines += [f"   Base: {p.get('Base', '')}, Size: {p.get('Size', 0)}" for p in pools]
    return "\n".join(lines) + "\n\n"


def _client_info(cli: Cli, debug: bool) -> dict[str, Any]:
    import ketch

    return {
        "Debug": debug,
        "Version": ketch.__version__,
        "Context": "default",
        "Plugins": [],
        "Warnings": None,
    }


def info(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.cli.templates import render
    from ketch.client.config import DEFAULT_SERVER
    from ketch.common.errors import KetchError

    client_info = _client_info(cli, bool(getattr(args, "debug", False)))
    server: dict[str, Any] | None = None
    failure: KetchError | None = None
    try:
        server = cli.client().info()
    except KetchError as exc:
        failure = exc
    if args.format:
        if failure is not None:
            raise failure
        cli.out(render(args.format, [{**(server or {}), "ClientInfo": client_info}]))
        return 0
    out = [
        "Client:",
        f" Version:    {client_info['Version']}",
        f" Context:    {client_info['Context']}",
        f" Debug Mode: {_go(client_info['Debug'])}",
        "",
        "Server:",
    ]
    cli.out("\n".join(out) + "\n")
    if failure is not None:
        from ketch.cli.commands.run import daemon_text

        cli.err(f"ERROR: {daemon_text(failure)}\n")
        raise CommandError("errors pretty printing info")
    assert server is not None
    auths = cli.config().get("auths") or {}
    username = ""
    entry = auths.get(server.get("IndexServerAddress") or DEFAULT_SERVER) or {}
    if entry.get("auth"):
        import base64

        try:
            username = base64.b64decode(entry["auth"]).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            username = ""
    cli.out(server_info_text(server, username))
    for warning in server.get("Warnings") or []:
        cli.err(f"{warning}\n")
    return 0


# ---- system df ----------------------------------------------------------------------------------------------------

DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}  # fmt: skip


def _with_percent(reclaimable: int, total: int) -> str:
    from ketch.cli.templates import human_size

    text = human_size(float(reclaimable), 4)
    return f"{text} ({reclaimable * 100 // total}%)" if total > 0 else text


class DiskUsageRow:
    """One line of ``system df``: images, containers, local volumes or build cache."""

    go_type = "*formatter.diskUsageContext"

    def __init__(self, kind: str, total: int, active: int, size: int, reclaimable: str) -> None:
        self._values = {
            "Type": kind,
            "TotalCount": str(total),
            "Active": str(active),
            "Reclaimable": reclaimable,
        }
        self._size = size

    def Type(self) -> str:
        return self._values["Type"]

    def TotalCount(self) -> str:
        return self._values["TotalCount"]

    def Active(self) -> str:
        return self._values["Active"]

    def Size(self) -> str:
        from ketch.cli.templates import human_size

        return human_size(float(self._size), 4)

    def Reclaimable(self) -> str:
        return self._values["Reclaimable"]

    def to_json(self) -> dict[str, str]:
        return {name: getattr(self, name)() for name in sorted(DF_HEADERS)}


def disk_usage_rows(usage: dict[str, Any]) -> list[DiskUsageRow]:
    """docker's diskUsage*Context numbers from a ``/system/df`` answer."""
    images = usage.get("Images") or []
    layers = int(usage.get("LayersSize") or 0)
    used = sum(
        int(i.get("Size") or 0) - int(i.get("SharedSize") or 0)
        for i in images
        if int(i.get("Containers") or 0) != 0
        and int(i.get("Size", 0)) != -1
        and int(i.get("SharedSize", 0)) != -1
    )
    image_row = DiskUsageRow(
        "Images", len(images), sum(1 for i in images if int(i.get("Containers") or 0) > 0), layers,
        _with_percent(layers - used, layers),
    )  # fmt: skip
    containers = usage.get("Containers") or []

    def active(c: dict[str, Any]) -> bool:
        state = str(c.get("State") or "")
        return any(word in state for word in ("running", "paused", "restarting"))

    container_size = sum(int(c.get("SizeRw") or 0) for c in containers)
    container_row = DiskUsageRow(
        "Containers", len(containers), sum(1 for c in containers if active(c)), container_size,
        _with_percent(sum(int(c.get("SizeRw") or 0) for c in containers if not active(c)), container_size),
    )  # fmt: skip
    volumes = usage.get("Volumes") or []

    def usage_data(v: dict[str, Any]) -> tuple[int, int]:
        data = v.get("UsageData") or {}
        return int(data.get("Size", -1)), int(data.get("RefCount", 0))

    sized = [usage_data(v) for v in volumes if usage_data(v)[0] != -1]
    volume_size = sum(size for size, _ in sized)
    volume_row = DiskUsageRow(
        "Local Volumes", len(volumes), sum(1 for v in volumes if usage_data(v)[1] > 0), volume_size,
        _with_percent(sum(size for size, refs in sized if refs == 0), volume_size),
    )  # fmt: skip
    cache = usage.get("BuildCache") or []
    cache_size = sum(int(b.get("Size") or 0) for b in cache if not b.get("Shared"))
    in_use = sum(int(b.get("Size") or 0) for b in cache if b.get("InUse") and not b.get("Shared"))
    from ketch.cli.templates import human_size

    cache_row = DiskUsageRow(
        "Build Cache", len(cache), sum(1 for b in cache if b.get("InUse")), cache_size,
        human_size(float(cache_size - in_use), 4),
    )  # fmt: skip
    return [image_row, container_row, volume_row, cache_row]


class VolumeRow:
    go_type = "*formatter.volumeContext"

    def __init__(self, volume: dict[str, Any]) -> None:
        self._v = volume

    def Name(self) -> str:
        return str(self._v.get("Name") or "")

    def Links(self) -> str:
        data = self._v.get("UsageData") or {}
        return "N/A" if data.get("RefCount", -1) == -1 else str(data["RefCount"])

    def Size(self) -> str:
        from ketch.cli.templates import human_size

        data = self._v.get("UsageData") or {}
        return "N/A" if data.get("Size", -1) == -1 else human_size(float(data["Size"]), 4)


class BuildCacheRow:
    go_type = "*formatter.buildCacheContext"

    def __init__(self, record: dict[str, Any]) -> None:
        self._b = record

    def ID(self) -> str:
        return str(self._b.get("ID") or "")[:12]

    def CacheType(self) -> str:
        return str(self._b.get("Type") or "")

    def Size(self) -> str:
        from ketch.cli.templates import human_size

        return human_size(float(self._b.get("Size") or 0), 4)

    def CreatedSince(self) -> str:
        return _since_text(self._b.get("CreatedAt"))

    def LastUsedSince(self) -> str:
        return _since_text(self._b.get("LastUsedAt"))

    def UsageCount(self) -> str:
        return str(self._b.get("UsageCount") or 0)

    def Shared(self) -> str:
        return "true" if self._b.get("Shared") else "false"


def _since_text(stamp: Any) -> str:
    """ "3 hours ago" for an RFC 3339 time (fractional seconds ignored)."""
    from datetime import datetime

    from ketch.cli.commands.ps import _now
    from ketch.cli.templates import human_duration

    text = str(stamp or "").replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        zone = max(rest.find("+"), rest.find("-"))
        text = head + (rest[zone:] if zone >= 0 else "")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return ""
    return human_duration(_now() - when.timestamp()) + " ago"


def _verbose_df(cli: Cli, usage: dict[str, Any]) -> str:
    from ketch.cli.commands.images import IMAGES_HEADERS, ImageContext, _split_repo
    from ketch.cli.commands.ps import PS_HEADERS, ContainerContext
    from ketch.cli.templates import human_size, render

    images = []
    for image in usage.get("Images") or []:
        repo, tag = "<none>", "<none>"
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        if tags:
            repo, tag = _split_repo(tags[0], ":")
        images.append(ImageContext(image, repo, tag, "", True))
    containers = [ContainerContext(dict(c, SizeRootFs=0), True) for c in usage.get("Containers") or []]
    volumes = [VolumeRow(v) for v in usage.get("Volumes") or []]
    cache = [BuildCacheRow(b) for b in usage.get("BuildCache") or []]
    cache_size = sum(int(b.get("Size") or 0) for b in usage.get("BuildCache") or [] if not b.get("Shared"))
    image_table = ("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t"
                   "{{.UniqueSize}}\t{{.Containers}}")  # fmt: skip
    container_table = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t"
                       "{{.Status}}\t{{.Names}}")  # fmt: skip
    cache_table = ("table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t"
                   "{{.UsageCount}}\t{{.Shared}}")  # fmt: skip
    cache_headers = {"ID": "CACHE ID", "CacheType": "CACHE TYPE", "Size": "SIZE", "CreatedSince": "CREATED",
                     "LastUsedSince": "LAST USED", "UsageCount": "USAGE", "Shared": "SHARED"}  # fmt: skip
    volume_headers = {"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}
    parts = [
        "Images space usage:\n\n",
        render(image_table, images, IMAGES_HEADERS),
        "\nContainers space usage:\n\n",
        render(container_table, containers, PS_HEADERS),
        "\nLocal Volumes space usage:\n\n",
        render("table {{.Name}}\t{{.Links}}\t{{.Size}}", volumes, volume_headers),
        f"\nBuild cache usage: {human_size(float(cache_size), 4)}\n\n",
        render(cache_table, cache, cache_headers),
    ]
    return "".join(parts)


def df(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.templates import render

    usage = cli.client().disk_usage()
    if args.verbose and args.format in ("", "table"):
        cli.out(_verbose_df(cli, usage))
        return 0
    fmt = args.format or "table"
    if fmt == "table":
        fmt = DF_TABLE
    cli.out(render(fmt, disk_usage_rows(usage), DF_HEADERS))
    return 0


# ---- system prune --------------------------------------------------------------------------------------------------


def system_prune(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.containers import confirm, prune_containers
    from ketch.cli.commands.images import _filters
    from ketch.cli.main import CommandError
    from ketch.cli.templates import human_size
    from ketch.spec.engine_api import Filters

    filters = _filters(args.filter)
    if args.volumes and "until" in filters:
        raise CommandError('ERROR: The "until" filter is not supported with "--volumes"')
    warnings = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        warnings.append("all volumes not used by at least one container")
    warnings.append("all images without at least one container associated to them" if args.all
                    else "all dangling images")  # fmt: skip
    warnings.append("all build cache" if args.all else "all dangling build cache")
    message = "WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in warnings)
    if not args.force and not confirm(cli, message + "\nAre you sure you want to continue?"):
        return 0
    client = cli.client()
    outputs: list[str] = []

    space, text = prune_containers(cli, filters)
    outputs.append(text)
    report = _optional(lambda: client.prune_networks(filters))
    deleted = report.get("NetworksDeleted") or []
    outputs.append("Deleted Networks:\n" + "".join(f"{n}\n" for n in deleted) if deleted else "")
    if args.volumes:
        report = _optional(lambda: client.prune_volumes(filters))
        deleted = report.get("VolumesDeleted") or []
        if deleted:
            space += int(report.get("SpaceReclaimed") or 0)
            outputs.append("Deleted Volumes:\n" + "".join(f"{v}\n" for v in deleted))
    image_filters = filters
    if args.all:
        fields = {key: filters.get(key) for key in filters}
        fields["dangling"] = ["false"]
        image_filters = Filters(fields)
    report = client.prune_images(image_filters)
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        space += int(report.get("SpaceReclaimed") or 0)
        lines = [f"untagged: {e['Untagged']}" if e.get("Untagged") else f"deleted: {e.get('Deleted', '')}"
                 for e in deleted]  # fmt: skip
        outputs.append("Deleted Images:\n" + "".join(f"{line}\n" for line in lines))
    report = _optional(lambda: client.prune_build_cache(filters, all=args.all))
    deleted = report.get("CachesDeleted") or []
    if deleted:
        space += int(report.get("SpaceReclaimed") or 0)
        outputs.append("Deleted build cache objects:\n" + "".join(f"{c}\n" for c in deleted))
    for text in outputs:
        if text:
            cli.out(text + "\n")
    cli.out(f"Total reclaimed space: {human_size(float(space), 4)}\n")
    return 0


def _optional(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A prune endpoint the daemon may not have yet (networks, build cache): 404 means nothing to prune."""
    from ketch.client.http import DaemonNotFound

    try:
        return call()
    except DaemonNotFound:
        return {}


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    from ketch.cli.commands import events

    def info_flags(parser: Any) -> None:
        parser.add_argument("-f", "--format", default="")
        parser.set_defaults(handler="info")

    info_flags(sub.add_parser("info", help="Display system-wide information"))
    handlers["info"] = info
    group = sub.add_parser("system", help="Manage ketch")
    group.interspersed = False
    group_sub = group.add_subparsers(dest="group_command", metavar="COMMAND", required=True)
    info_flags(group_sub.add_parser("info", help="Display system-wide information"))
    events.add_commands(group_sub, handlers)
    parser = group_sub.add_parser("df", help="Show docker disk usage")
    parser.add_argument("--format", default="")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(handler="system df")
    handlers["system df"] = df
    parser = group_sub.add_parser("prune", help="Remove unused data")
    parser.add_argument("-a", "--all", action="store_true")
    parser.add_argument("--filter", action="append", default=[])
    parser.add_argument("-f", "--force", action="store_true")
    parser.add_argument("--volumes", action="store_true")
    parser.set_defaults(handler="system prune")
    handlers["system prune"] = system_prune

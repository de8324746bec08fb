"""``stats``: resource usage per container, computed as docker computes it (stats_helpers.go).

``--no-stream`` asks each container for one sample (``GET /containers/{id}/stats?stream=0``, in parallel)
and prints one table; without it the samples stream in and the table is redrawn every half second. CPU % is
the container's share of the system's CPU time since the previous sample times the online CPUs; memory
leaves out the page cache (``inactive_file``), as docker 20.10 does.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli
    from ketch.common.errors import KetchError

__all__ = ["StatsContext", "register", "stats_entry"]

STATS_TABLE = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
)
STATS_HEADERS = {
    "Container": "CONTAINER",
    "Name": "NAME",
    "ID": "CONTAINER ID",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits (``812KiB``, ``23.54GiB``)."""
    unit = 0
    while size >= 1024.0 and unit < len(_BINARY_UNITS) - 1:
        size /= 1024.0
        unit += 1
    return f"{size:.4g}{_BINARY_UNITS[unit]}"


def stats_entry(sample: dict[str, Any]) -> dict[str, Any]:
    """One sample of ``GET /containers/{id}/stats`` as docker's StatsEntry numbers."""
    cpu = sample.get("cpu_stats") or {}
    precpu = sample.get("precpu_stats") or {}
    cpu_delta = float((cpu.get("cpu_usage") or {}).get("total_usage") or 0) - float(
        (precpu.get("cpu_usage") or {}).get("total_usage") or 0
    )
    system_delta = float(cpu.get("system_cpu_usage") or 0) - float(precpu.get("system_cpu_usage") or 0)
    online = float(cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []))
    cpu_percent = cpu_delta / system_delta * online * 100.0 if system_delta > 0 and cpu_delta > 0 else 0.0
    memory = sample.get("memory_stats") or {}
    usage = int(memory.get("usage") or 0)
    details = memory.get("stats") or {}
    if "total_inactive_file" in details and details["total_inactive_file"] < usage:  # cgroup v1
        used = float(usage - details["total_inactive_file"])
    elif int(details.get("inactive_file") or 0) < usage:  # cgroup v2
        used = float(usage - int(details.get("inactive_file") or 0))
    else:
        used = float(usage)
    limit = float(memory.get("limit") or 0)
    read = write = 0
    for entry in (sample.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op") or "")[:1].lower()
        if op == "r":
            read += int(entry.get("value") or 0)
        elif op == "w":
            write += int(entry.get("value") or 0)
    networks = (sample.get("networks") or {}).values()
    return {
        "Name": str(sample.get("name") or ""),
        "ID": str(sample.get("id") or ""),
        "CPUPercentage": cpu_percent,
        "Memory": used,
        "MemoryLimit": limit,
        "MemoryPercentage": used / limit * 100.0 if limit else 0.0,
        "NetworkRx": float(sum(int(n.get("rx_bytes") or 0) for n in networks)),
        "NetworkTx": float(sum(int(n.get("tx_bytes") or 0) for n in networks)),
        "BlockRead": float(read),
        "BlockWrite": float(write),
        "PidsCurrent": int((sample.get("pids_stats") or {}).get("current") or 0),
    }


class StatsContext:
    """One row of ``ketch stats`` (docker's statsContext)."""

    go_type = "*formatter.statsContext"

    def __init__(self, container: str, entry: dict[str, Any] | None, trunc: bool) -> None:
        self._container = container
        self._s = entry or {}
        self._invalid = entry is None
        self._trunc = trunc

    def Container(self) -> str:
        return self._container

    def Name(self) -> str:
        name = str(self._s.get("Name") or "")
        return name[1:] if len(name) > 1 else "--"

    def ID(self) -> str:
        from ketch.cli.commands.images import truncate_id

        container_id = str(self._s.get("ID") or "")
        return truncate_id(container_id) if self._trunc else container_id

    def CPUPerc(self) -> str:
        return "--" if self._invalid else f"{self._s['CPUPercentage']:.2f}%"

    def MemUsage(self) -> str:
        if self._invalid:
            return "-- / --"
        return f"{bytes_size(self._s['Memory'])} / {bytes_size(self._s['MemoryLimit'])}"

    def MemPerc(self) -> str:
        return "--" if self._invalid else f"{self._s['MemoryPercentage']:.2f}%"

    def NetIO(self) -> str:
        from ketch.cli.templates import human_size

        if self._invalid:
            return "--"
        return f"{human_size(self._s['NetworkRx'])} / {human_size(self._s['NetworkTx'])}"

    def BlockIO(self) -> str:
        from ketch.cli.templates import human_size

        if self._invalid:
            return "--"
        return f"{human_size(self._s['BlockRead'])} / {human_size(self._s['BlockWrite'])}"

    def PIDs(self) -> str:
        return "--" if self._invalid else str(self._s["PidsCurrent"])

    def to_json(self) -> dict[str, str]:
        return {name: getattr(self, name)() for name in sorted(STATS_HEADERS)}


def _targets(cli: Cli, args: argparse.Namespace) -> list[str]:
    if args.containers:
        return list(args.containers)
    listed = cli.client().containers(all=args.all)
    return [str(c.get("Id") or "")[:12] for c in listed]


def _sample(cli: Cli, container: str) -> dict[str, Any] | KetchError:
    from ketch.common.errors import KetchError

    try:
        sample = cli.client().stats(container, stream=False).json()
    except KetchError as exc:
        return exc
    if not isinstance(sample, dict):
        return KetchError(f"bad stats answer for {container}")
    return stats_entry(sample)


def stats(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.run import daemon_text
    from ketch.cli.main import CommandError
    from ketch.cli.templates import render

    fmt = args.format or str(cli.config().get("statsFormat") or "")
    if not fmt or fmt == "table":
        fmt = STATS_TABLE
    targets = _targets(cli, args)
    if not args.no_stream:
        return _stream(cli, args, targets, fmt)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(50, len(targets)))) as pool:
        samples = list(pool.map(lambda c: _sample(cli, c), targets))
    failures = [daemon_text(s) for s in samples if not isinstance(s, dict)]
    if args.containers and failures:
        # docker checks the named containers first and reports every one it could not read
        raise CommandError("\n".join(failures))
    rows = [
        StatsContext(c, s if isinstance(s, dict) else None, not args.no_trunc)
        for c, s in zip(targets, samples, strict=True)
    ]
    cli.out(render(fmt, rows, STATS_HEADERS))
    return 0


def _stream(cli: Cli, args: argparse.Namespace, targets: list[str], fmt: str) -> int:
    """Follow every container's stats stream and redraw the table twice a second until interrupted."""
    import threading
    import time

    from ketch.cli.session import is_terminal
    from ketch.cli.templates import render
    from ketch.common.errors import KetchError

    latest: dict[str, dict[str, Any] | None] = dict.fromkeys(targets)
    lock = threading.Lock()

    def follow(container: str) -> None:
        try:
            for sample in cli.client().stats(container, stream=True).json_stream():
                with lock:
                    latest[container] = stats_entry(sample)
        except KetchError:
            with lock:
                latest[container] = None

    for container in targets:
        threading.Thread(target=follow, args=(container,), daemon=True).start()
    clear = is_terminal(cli.stdout)
    while True:
        time.sleep(0.5)
        with lock:
            rows = [StatsContext(c, e, not args.no_trunc) for c, e in latest.items()]
        if clear:
            cli.out("\033[2J\033[H")
        cli.out(render(fmt, rows, STATS_HEADERS))
        cli.stdout.flush()


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    add_commands(sub, handlers, prefix="")


def add_commands(
    sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]], prefix: str
) -> None:
    parser = sub.add_parser("stats", help="Display a live stream of container(s) resource usage statistics")
    parser.add_argument("containers", nargs="*")
    parser.add_argument("-a", "--all", action="store_true")
    parser.add_argument("--format", default="")
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--no-trunc", action="store_true")
    parser.set_defaults(handler=prefix + "stats")
    handlers[prefix + "stats"] = stats

"""``logs``: ``GET /containers/{name}/json`` (to learn whether it has a tty), then ``GET .../logs``.

Without a tty the log stream is multiplexed and split back into stdout and stderr; with one it is copied
as it is. ``--since``/``--until`` take docker's forms (durations, RFC 3339 times, Unix timestamps).
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli

__all__ = ["register", "timestamp_flag"]

_now: Callable[[], float] = time.time  # tests pin the clock


def timestamp_flag(name: str, value: str) -> str:
    """A ``--since``/``--until`` value as the API takes it; docker's error when it does not parse."""
    from ketch.cli.main import CommandError
    from ketch.cli.opts import get_timestamp

    if not value:
        return ""
    try:
        return get_timestamp(value, _now())
    except ValueError as exc:
        raise CommandError(f'invalid value for "{name}": {exc}') from None


def logs(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.cli.session import binary_writer
    from ketch.client.hijack import StreamError, demux

    client = cli.client()
    container = client.inspect_container(args.container)
    response = client.logs(
        str(container.get("Id") or args.container),
        since=timestamp_flag("since", args.since),
        until=timestamp_flag("until", args.until),
        timestamps=args.timestamps,
        follow=args.follow,
        tail=args.tail,
        details=args.details,
    )
    out = binary_writer(cli.stdout)
    if (container.get("Config") or {}).get("Tty"):
        for chunk in response.chunks():
            out(chunk)
        return 0
    try:
        demux(response.chunks(), out, binary_writer(cli.stderr))
    except StreamError as exc:
        raise CommandError(str(exc)) from None
    return 0


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    add_commands(sub, handlers, prefix="")


def add_commands(
    sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]], prefix: str
) -> None:
    parser = sub.add_parser("logs", help="Fetch the logs of a container")
    parser.requires = "exactly 1 argument"
    parser.add_argument("container")
    parser.add_argument("--details", action="store_true")
    parser.add_argument("-f", "--follow", action="store_true")
    parser.add_argument("--since", default="")
    parser.add_argument("-n", "--tail", default="all")
    parser.add_argument("-t", "--timestamps", action="store_true")
    parser.add_argument("--until", default="")
    parser.set_defaults(handler=prefix + "logs")
    handlers[prefix + "logs"] = logs

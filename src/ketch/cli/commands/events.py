"""``events`` (``system events``): the daemon's event stream, printed as docker prints it.

Without ``--format`` each event is one line: the time (local, nanoseconds), type, action, actor ID and its
attributes sorted by name. ``--format`` templates see docker's events.Message fields (``.Type``,
``.Action``, ``.Actor.ID``, ``.ID``, ``.Status``, ``.From``, ``.Time``, ``.TimeNano``, ``.Scope``), and
``{{json .}}`` prints the message as docker marshals it. A bad template exits 64, as in docker.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli

__all__ = ["EventMessage", "pretty_event", "register"]


class _Actor:
    go_type = "events.Actor"

    def __init__(self, actor: dict[str, Any]) -> None:
        self.ID = str(actor.get("ID") or "")
        self.Attributes: dict[str, str] = dict(actor.get("Attributes") or {})
        self._null_attributes = actor.get("Attributes") is None


class EventMessage:
    """An event with the Go field names docker's templates use."""

    go_type = "events.Message"

    def __init__(self, event: dict[str, Any]) -> None:
        self.Status = str(event.get("status") or "")
        self.ID = str(event.get("id") or "")
        self.From = str(event.get("from") or "")
        self.Type = str(event.get("Type") or "")
        self.Action = str(event.get("Action") or "")
        self.Actor = _Actor(event.get("Actor") or {})
        self.Scope = str(event.get("scope") or "")
        self.Time = int(event.get("time") or 0)
        self.TimeNano = int(event.get("timeNano") or 0)

    def to_json(self) -> dict[str, Any]:
        # events.Message's JSON: status, id and from are omitted when empty; attributes sorted (a Go map).
        out: dict[str, Any] = {}
        for key, value in (("status", self.Status), ("id", self.ID), ("from", self.From)):
            if value:
                out[key] = value
        attributes = None if self.Actor._null_attributes else dict(sorted(self.Actor.Attributes.items()))
        actor: dict[str, Any] = {"ID": self.Actor.ID, "Attributes": attributes}
        out |= {"Type": self.Type, "Action": self.Action, "Actor": actor}
        if self.Scope:
            out["scope"] = self.Scope
        if self.Time:
            out["time"] = self.Time
        if self.TimeNano:
            out["timeNano"] = self.TimeNano
        return out


def _rfc3339_nano_fixed(nanos: int) -> str:
    """Go's "2006-01-02T15:04:05.000000000Z07:00" in local time."""
    from datetime import datetime

    stamp = datetime.fromtimestamp(nanos // 1_000_000_000).astimezone()
    offset = stamp.strftime("%z")
    zone = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos % 1_000_000_000:09d}" + zone


def pretty_event(event: EventMessage) -> str:
    """prettyPrintEvent."""
    line = ""
    if event.TimeNano:
        line = _rfc3339_nano_fixed(event.TimeNano) + " "
    elif event.Time:
        line = _rfc3339_nano_fixed(event.Time * 1_000_000_000) + " "
    line += f"{event.Type} {event.Action} {event.Actor.ID}"
    if event.Actor.Attributes:
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(event.Actor.Attributes.items()))
        line += f" ({attrs})"
    return line + "\n"


def events(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.images import _filters
    from ketch.cli.commands.logs import timestamp_flag
    from ketch.cli.main import CommandError
    from ketch.cli.templates import Template, TemplateError

    template = None
    if args.format:
        try:
            template = Template(args.format.replace("\\t", "\t").replace("\\n", "\n"))
            template.execute(EventMessage({}))  # docker runs it once on an empty message to catch bad fields
        except TemplateError as exc:
            raise CommandError(f"Error parsing format: {exc}", 64) from None
    since = timestamp_flag("since", args.since)
    until = timestamp_flag("until", args.until)
    for event in cli.client().events(since=since, until=until, filters=_filters(args.filter)):
        message = EventMessage(event)
        if template is None:
            cli.out(pretty_event(message))
        else:
            try:
                cli.out(template.execute(message) + "\n")
            except TemplateError as exc:
                raise CommandError(str(exc)) from None
        cli.stdout.flush()
    return 0


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    add_commands(sub, handlers)


def add_commands(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    parser = sub.add_parser("events", help="Get real time events from the server")
    parser.add_argument("-f", "--filter", action="append", default=[])
    parser.add_argument("--format", default="")
    parser.add_argument("--since", default="")
    parser.add_argument("--until", default="")
    parser.set_defaults(handler="events")
    handlers["events"] = events

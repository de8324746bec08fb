"""``ketch``: the docker command line, spoken to ketchd (or dockerd) over the Engine API.

Global flags come before the command, as in docker. Exit statuses follow docker's: 0 on success, 1 when the
command fails (a daemon error prints ``Error response from daemon: <message>``), 125 for bad flags.
Command modules (and the HTTP client) are imported only when their command runs.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any, TextIO

    from ketch.client.api import APIClient

__all__ = ["Cli", "CommandError", "main"]

DEFAULT_HOST = "unix:///run/ketch/ketch.sock"


class CommandError(Exception):
    """A failure the command has already worded; printed as is, with ``status`` as the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Cli:
    """What every command gets: the streams, the resolved host, the config dir, a lazily made client."""

    def __init__(
        self,
        host: str | None,
        config_dir: str,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        *,
        autostart: bool = True,
    ) -> None:
        self.explicit_host = host
        self.host = host or DEFAULT_HOST
        self.config_dir = config_dir
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.autostart = autostart
        self._client: APIClient | None = None

    def client(self) -> APIClient:
        if self._client is None:
            from ketch.cli.autostart import ensure_daemon
            from ketch.client.api import APIClient

            client = APIClient(self.host)
            if self.autostart:
                ensure_daemon(client.conn, default=self.explicit_host is None)
            self._client = client
        return self._client

    def config(self) -> dict[str, Any]:
        """~/.docker/config.json (or --config's), {} when absent or unreadable."""
        from ketch.common import fastjson

        try:
            with open(os.path.join(self.config_dir, "config.json"), encoding="utf-8") as fh:
                value = fastjson.loads(fh.read())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def out(self, text: str) -> None:
        self.stdout.write(text)

    def err(self, text: str) -> None:
        self.stderr.write(text)


class _Parser:
    """argparse with docker's wording and status for flag errors (125), and Go's flag conventions.

    - Boolean flags also take a value: ``--rm=false``, ``-d=true``, ``--sig-proxy=false``.
    - A parser with ``interspersed = False`` (``run``, ``create``, ``exec``) stops reading flags at its first
      positional argument: the rest is the container's command, flags included.
    - The options given are recorded in ``args.changed`` (docker's ``flags.Changed``).
    - ``requires`` ("at least 1 argument") words a missing positional as docker does.
    """

    @staticmethod
    def make(prog: str, **kwargs: Any) -> argparse.ArgumentParser:
        import argparse

        class Formatter(argparse.HelpFormatter):
            # argparse makes a formatter for every add_argument (to check its metavar), and the stock one asks
            # shutil for the terminal's width: shutil's import (compression modules) costs more than the rest.
            def __init__(
                self,
                prog: str,
                indent_increment: int = 2,
                max_help_position: int = 24,
                width: int | None = None,
            ) -> None:
                super().__init__(
                    prog, indent_increment, max_help_position, _columns() - 2 if width is None else width
                )

        class Parser(argparse.ArgumentParser):
            interspersed = True
            requires = ""

            def __init__(self, *args: Any, **kw: Any) -> None:
                kw.setdefault("allow_abbrev", False)  # docker's flags are never abbreviated
                kw.setdefault("formatter_class", Formatter)
                super().__init__(*args, **kw)
                self.narrow: Any = None  # a _Narrow (or its next level) while building one command

            def add_subparsers(self, **kw: Any) -> Any:
                action = super().add_subparsers(**kw)
                return action if self.narrow is None else self.narrow.level(action)

            def error(self, message: str) -> Any:
                # docker: a bad flag exits 125; a wrong number of arguments is an ordinary failure (1).
                if message.startswith("the following arguments are required"):
                    if self.requires:
                        raise CommandError(
                            f"\"{self.prog}\" requires {self.requires}.\nSee '{self.prog} --help'."
                        )
                    raise CommandError(f'"{self.prog}" requires more arguments: {message.partition(": ")[2]}'
                                       f"\nSee '{self.prog} --help'.", 1)  # fmt: skip
                raise CommandError(f"{message}\nSee '{self.prog} --help'.", 125)

            def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
                tokens, overrides, changed = _go_flags(self, list(sys.argv[1:] if args is None else args))
                parsed, extra = super().parse_known_args(tokens, namespace)
                for dest, value in overrides.items():
                    setattr(parsed, dest, value)
                if not hasattr(parsed, "changed"):  # a subcommand's own set wins over its parents' flags
                    parsed.changed = frozenset(changed)
                return parsed, extra

        return Parser(prog=prog, **kwargs)


def _columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else the width of stdout's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _flag_name(action: Any) -> str:
    shorts = [name for name in action.option_strings if not name.startswith("--")]
    longs = [name for name in action.option_strings if name.startswith("--")]
    return ", ".join(shorts[:1] + longs[:1])


def _go_flags(parser: Any, args: list[str]) -> tuple[list[str], dict[str, bool], set[str]]:
    """Rewrite Go-style ``--flag=bool`` into what argparse takes, and note which flags were given."""
    actions = parser._option_string_actions
    out: list[str] = []
    overrides: dict[str, bool] = {}
    changed: set[str] = set()

    def boolean(action: Any, value: str) -> bool:
        if value in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if value in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        raise CommandError(f'invalid argument "{value}" for "{_flag_name(action)}" flag: strconv.ParseBool: '
                           f'parsing "{value}": invalid syntax\nSee \'{parser.prog} --help\'.', 125)  # fmt: skip

    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--":
            out += args[index - 1 :]
            break
        if not token.startswith("-") or token == "-" or token[1:2].isdigit():
            out.append(token)
            if not parser.interspersed:
                out += args[index:]
                break
            continue
        name, eq, value = token.partition("=")
        if not token.startswith("--") and len(name) != 2:
            name, eq = token[:2], ""  # a cluster (-it) or a value attached to a short flag (-p80:80)
        action = actions.get(name)
        if action is None:
            out.append(token)
            continue
        changed.add(action.dest)
        if action.nargs == 0 and eq and action.const is True:
            overrides[action.dest] = boolean(action, value)
            if overrides[action.dest]:
                out.append(name)
            continue
        out.append(token)
        if token.startswith("--") or len(token) == 2:
            if action.nargs != 0 and not eq and index < len(args):
                out += _with_value(out.pop(), args[index])
                index += 1
            continue
        # a short cluster: flags without values, until one that takes the rest or the next argument
        for position in range(1, len(token)):
            action = actions.get("-" + token[position])
            if action is None:
                break
            changed.add(action.dest)
            if action.nargs != 0:
                if position == len(token) - 1 and index < len(args):
                    out += _with_value(out.pop(), args[index])
                    index += 1
                break
    return out, overrides, changed


def _with_value(flag: str, value: str) -> list[str]:
    """pflag takes the argument after a flag as its value whatever it looks like (``--dns-search -x``); argparse
    would read a leading dash as another flag, unless the value is attached to the flag."""
    if not value.startswith("-"):
        return [flag, value]
    return [f"{flag}={value}" if flag.startswith("--") else flag + value]


class _Narrow:
    """Build only the parsers on the path to the command being run (``container run``): argparse spends
    ~0.3 ms per parser and per flag, and ketch has hundreds. If the path names no known command, the caller
    builds everything (so help and "invalid choice" list every command)."""

    def __init__(self, path: list[str]) -> None:
        self.path = path
        self.missed = False

    def level(self, action: Any) -> Any:
        return _NarrowAction(self, action, 0)


class _NarrowAction:
    def __init__(self, narrow: _Narrow, action: Any, depth: int) -> None:
        self._narrow = narrow
        self._action = action
        self._depth = depth
        self._found = False
        if depth < len(narrow.path):
            narrow.missed = True  # until the wanted name is added

    def add_parser(self, name: str, **kw: Any) -> Any:
        path = self._narrow.path
        if self._depth < len(path) and path[self._depth] not in (name, *kw.get("aliases", ())):
            return _Ignored()
        parser = self._action.add_parser(name, **kw)
        if self._depth < len(path):
            self._narrow.missed = False
            parser.narrow = _DeeperNarrow(self._narrow, self._depth + 1)
        return parser


class _DeeperNarrow:
    def __init__(self, narrow: _Narrow, depth: int) -> None:
        self._narrow = narrow
        self._depth = depth

    def level(self, action: Any) -> Any:
        return _NarrowAction(self._narrow, action, self._depth)


class _Ignored:
    """What a parser that is not built gives back: every call is accepted and does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: _Ignored()

    def __setattr__(self, name: str, value: Any) -> None:
        pass


def _command_path(argv: list[str]) -> list[str]:
    """The first two positional words after the global flags (``container``, ``run``)."""
    path: list[str] = []
    takes_value = {"-H", "--host", "--config", "-l", "--log-level"}
    index = 0
    while index < len(argv) and len(path) < 2:
        token = argv[index]
        index += 1
        if token == "--" or (path and token.startswith("-")):
            break
        if token.startswith("-"):
            if token in takes_value:
                index += 1
            continue
        path.append(token)
    return path


def _build(
    argv: list[str] | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, Callable[[Cli, argparse.Namespace], int]]]:
    """The parser and the command handlers; with ``argv``, only the parsers that command needs."""
    if argv is not None:
        narrow = _Narrow(_command_path(argv))
        if narrow.path:
            module = COMMAND_MODULES.get(narrow.path[0])
            parser, handlers = _build_with(narrow, _MODULES if module is None else (module,))
            if not narrow.missed:
                return parser, handlers
        elif ("-v" in argv or "--version" in argv) and "-h" not in argv and "--help" not in argv:
            return _build_with(None, ())  # ``ketch --version`` runs no command: none need building
    return _build_with(None, _MODULES)


# The command modules in the order their commands are listed, and the top-level commands each registers: a
# command being run imports and builds only its own module (``container`` needs the modules it groups).
_MODULES = (
    "system",
    "images",
    "registry",
    "run",
    "exec",
    "ps",
    "logs",
    "containers",
    "stats",
    "events",
    "info",
    "networks",
)
_LIFECYCLE = ("attach", "commit", "export", "import", "kill", "pause", "port", "rename", "restart", "rm", "start",
              "stop", "top", "unpause", "update", "wait")  # fmt: skip
_IMAGES = ("history", "image", "images", "inspect", "load", "pull", "push", "rmi", "save", "tag")
COMMAND_MODULES: dict[str, str] = {
    "version": "system",
    "login": "registry",
    "logout": "registry",
    "run": "run",
    "create": "run",
    "exec": "exec",
    "ps": "ps",
    "logs": "logs",
    "container": "containers",
    "stats": "stats",
    "events": "events",
    "info": "info",
    "system": "info",
    "network": "networks",
    **dict.fromkeys(_LIFECYCLE, "containers"),
    **dict.fromkeys(_IMAGES, "images"),
}


def _build_with(
    narrow: _Narrow | None, modules: tuple[str, ...]
) -> tuple[argparse.ArgumentParser, dict[str, Callable[[Cli, argparse.Namespace], int]]]:
    parser = _Parser.make("ketch", description="A self-sufficient runtime for containers", add_help=True)
    parser.interspersed = False  # type: ignore[attr-defined]
    parser.narrow = narrow  # type: ignore[attr-defined]
    parser.add_argument("-H", "--host", action="append", default=[], help="Daemon socket(s) to connect to")
    parser.add_argument("--config", default=None, help="Location of client config files")
    parser.add_argument("-D", "--debug", action="store_true", help="Enable debug mode")
    parser.add_argument(
        "-l", "--log-level", default="info", choices=["debug", "info", "warn", "error", "fatal"]
    )
    parser.add_argument("-v", "--version", action="store_true", help="Print version information and quit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=type(parser))
    handlers: dict[str, Callable[[Cli, argparse.Namespace], int]] = {}
    for name in modules:
        module = __import__(f"ketch.cli.commands.{name}", fromlist=["register"])
        module.register(sub, handlers)
    return parser, handlers


def main(argv: list[str] | None = None, *, stdin: Any = None, stdout: Any = None, stderr: Any = None) -> int:
    """Run one command; returns the exit status (the console script exits with it)."""
    args_list = sys.argv[1:] if argv is None else argv
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        return _run(args_list, stdin or sys.stdin, out, err)
    except CommandError as exc:
        if str(exc):  # an empty message: the command already said what went wrong
            err.write(f"{exc}\n")
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


def _run(argv: list[str], stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    parser, handlers = _build(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = " ".join(x for x in ("ketch", args.command, getattr(args, "group_command", None)) if x)
        if extra[0].startswith("-"):
            raise CommandError(f"unknown flag: {extra[0]}\nSee '{command} --help'.", 125)
        raise CommandError(f"\"{command}\" got an unexpected argument: {extra[0]}\nSee '{command} --help'.")
    if args.version:
        import ketch

        stdout.write(f"ketch version {ketch.__version__}\n")
        return 0
    if not args.command:
        parser.print_help(stdout)
        return 0
    if len(args.host) > 1:
        raise CommandError("Please specify only one -H")
    host = args.host[0] if args.host else os.environ.get("KETCH_HOST") or None
    # A DOCKER_HOST socket belongs to dockerd: talk to it, but never start ketchd there.
    autostart = not os.environ.get("KETCH_NO_AUTOSTART") and (
        host is not None or not os.environ.get("DOCKER_HOST")
    )
    host = host or os.environ.get("DOCKER_HOST") or None
    config_dir = (
        args.config or os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    )
    cli = Cli(host, config_dir, stdin, stdout, stderr, autostart=bool(autostart))
    handler = handlers[getattr(args, "handler", args.command)]
    return _call(handler, cli, args)


def _call(handler: Callable[[Cli, argparse.Namespace], int], cli: Cli, args: argparse.Namespace) -> int:
    from ketch.common.errors import KetchError

    try:
        return handler(cli, args)
    except KetchError as exc:
        from ketch.client.http import FromDaemon

        # The daemon's refusals carry docker's prefix; local failures (bad reference, no daemon) do not.
        prefix = "Error response from daemon: " if isinstance(exc, FromDaemon) else ""
        raise CommandError(f"{prefix}{exc}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

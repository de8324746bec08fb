"""``ketch-runtime``: a runc-compatible command line.

containerd, podman/conmon and dockerd drive runtimes through runc's exact CLI: global flags before the
command, command flags before the container id, errors as logrus lines on stderr or JSON lines in the
``--log`` file, exit status 1 on failure. The parser is hand-written because argparse alone costs ~7 ms
to import, a fifth of this command's time budget; it follows urfave/cli's rules (``-flag``, ``--flag``,
``--flag=value``; parsing stops at the first positional argument).
"""

from __future__ import annotations

import os
import sys

from ketch.common.errors import InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["main"]

# flag name -> (kind, aliases); kind: "bool", "str", "int" or "list" (repeatable)
_GLOBAL = {
    "root": ("str", ()), "log": ("str", ()), "log-format": ("str", ()), "debug": ("bool", ()),
    "systemd-cgroup": ("bool", ()), "criu": ("str", ()), "rootless": ("str", ()),
    "version": ("bool", ("v",)), "help": ("bool", ("h",)),
}  # fmt: skip
_CREATE = {
    "bundle": ("str", ("b",)), "console-socket": ("str", ()), "pid-file": ("str", ()), "no-pivot": ("bool", ()),
    "no-new-keyring": ("bool", ()), "preserve-fds": ("int", ()), "notify-socket": ("str", ()),
}  # fmt: skip
_UPDATE = {
    "resources": ("str", ("r",)), "blkio-weight": ("int", ()), "cpu-period": ("str", ()), "cpu-quota": ("str", ()),
    "cpu-share": ("str", ()), "cpu-rt-period": ("str", ()), "cpu-rt-runtime": ("str", ()),
    "cpuset-cpus": ("str", ()), "cpuset-mems": ("str", ()), "kernel-memory": ("str", ()),
    "kernel-memory-tcp": ("str", ()), "memory": ("str", ()), "memory-reservation": ("str", ()),
    "memory-swap": ("str", ()), "pids-limit": ("int", ()), "l3-cache-schema": ("str", ()),
    "mem-bw-schema": ("str", ()),
}  # fmt: skip
_COMMANDS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "create": _CREATE,
    "run": {**_CREATE, "detach": ("bool", ("d",)), "keep": ("bool", ())},
    "start": {},
    "state": {},
    "kill": {"all": ("bool", ("a",))},
    "delete": {"force": ("bool", ("f",))},
    "exec": {
        "process": ("str", ("p",)), "tty": ("bool", ("t",)), "detach": ("bool", ("d",)),
        "console-socket": ("str", ()), "pid-file": ("str", ()), "cwd": ("str", ()), "env": ("list", ("e",)),
        "user": ("str", ("u",)), "additional-gids": ("list", ("g",)), "cap": ("list", ("c",)),
        "no-new-privs": ("bool", ()), "apparmor": ("str", ()), "process-label": ("str", ()),
        "preserve-fds": ("int", ()), "ignore-paused": ("bool", ()), "cgroup": ("list", ()),
    },
    "ps": {"format": ("str", ("f",))},
    "list": {"format": ("str", ("f",)), "quiet": ("bool", ("q",))},
    "pause": {},
    "resume": {},
    "update": _UPDATE,
    "spec": {"bundle": ("str", ("b",)), "rootless": ("bool", ())},
    "features": {},
    "events": {"stats": ("bool", ()), "interval": ("str", ())},
}  # fmt: skip
for _table in _COMMANDS.values():
    _table.setdefault("help", ("bool", ("h",)))

USAGE = """usage: ketch-runtime [global options] command [command options] [arguments...]

An OCI runtime with runc's command line.

commands:
   create    create a container          start     start a created container
   run       create and start            state     print a container's state
   kill      send a signal               delete    delete a container
   exec      run a process in a container
   ps        processes of a container    list      list containers
   pause     freeze a container          resume    thaw a container
   update    change resource limits      events    print stats of a container
   spec      write a new config.json     features  print the features of this runtime

global options:
   --root value        state directory (default: "/run/ketch-runtime")
   --log value         log file (default: stderr)
   --log-format value  text or json (default: "text")
   --debug             log debug messages
   --systemd-cgroup    use the systemd cgroup driver (not supported)
   --version, -v       print the version
"""


class Usage(InvalidArgument):
    """A command line that does not parse; the message is printed as is."""


def _parse(
    args: list[str], table: dict[str, tuple[str, tuple[str, ...]]]
) -> tuple[dict[str, Any], list[str]]:
    names: dict[str, str] = {}
    for flag, (_kind, aliases) in table.items():
        names[flag] = flag
        for alias in aliases:
            names[alias] = flag
    opts: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        key, eq, value = arg.lstrip("-").partition("=")
        name = names.get(key)
        if name is None:
            raise Usage(f"flag provided but not defined: -{key}")
        kind = table[name][0]
        if kind == "bool":
            opts[name] = value.lower() not in ("false", "0") if eq else True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                raise Usage(f"flag needs an argument: -{key}")
            value = args[i + 1]
            i += 1
        i += 1
        if kind == "int":
            try:
                opts[name] = int(value)
            except ValueError:
                raise Usage(f'invalid value "{value}" for flag -{key}: parse error') from None
        elif kind == "list":
            opts.setdefault(name, []).append(value)
        else:
            opts[name] = value
    return opts, args[i:]


class Logger:
    """runc's logging: logrus text lines on stderr, or JSON lines in ``--log`` with ``--log-format json``."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        if fmt not in ("text", "json"):
            raise Usage(f"invalid log-format: {fmt}")
        self.json = fmt == "json"
        self.debug_enabled = debug
        self.to_file = bool(path)
        self.fd = 2
        if path:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def log(self, level: str, msg: str) -> None:
        from ketch.common import fastjson
        from ketch.runtime.state import now_rfc3339

        now = now_rfc3339()
        now = now[:19] + "Z" if not self.json else now
        if self.json:
            line = fastjson.dumps({"level": level, "msg": msg, "time": now})
        else:
            line = f'time="{now}" level={level} msg={fastjson.dumps(msg)}'
        try:
            os.write(self.fd, (line + "\n").encode())
        except OSError:
            pass

    def error(self, msg: str) -> None:
        self.log("error", msg)
        if self.to_file:
            # Like runc: the log file is for the caller's records; a human still sees the error.
            os.write(2, (msg + "\n").encode())

    def warning(self, msg: str) -> None:
        self.log("warning", msg)

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self.log("debug", msg)


def _one_id(command: str, rest: list[str], extra: bool = False) -> str:
    if not rest:
        raise Usage(f'"{command}" requires a minimum of 1 argument')
    if len(rest) > 1 and not extra:
        raise Usage(f'"{command}" requires exactly 1 argument')
    return rest[0]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "create" in args or "run" in args or "exec" in args:
        # First thing, before the imports below: see cgroup_warmup.py (an id named "run" costs nothing).
        from ketch.runtime.cgroup_warmup import warm_up

        warm_up()
    logger: Logger | None = None
    try:
        gopts, rest = _parse(args, _GLOBAL)
        if gopts.get("version"):
            from ketch import __version__
            from ketch.spec.oci_runtime import OCI_VERSION

            sys.stdout.write(
                f"ketch-runtime version {__version__}\nspec: {OCI_VERSION}\n"
                f"python: {sys.version.split()[0]}\n"
            )
            return 0
        if gopts.get("help") or not rest or rest[0] == "help":
            sys.stdout.write(USAGE)
            return 0
        logger = Logger(gopts.get("log"), gopts.get("log-format", "text"), bool(gopts.get("debug")))
        command = rest[0]
        table = _COMMANDS.get(command)
        if table is None:
            raise Usage(f"No help topic for '{command}'")
        opts, rest = _parse(rest[1:], table)
        if opts.get("help"):
            sys.stdout.write(USAGE)
            return 0
        from ketch.runtime import commands

        handler: Callable[..., int] = getattr(commands, "cmd_" + command)
        from ketch.runtime.state import DEFAULT_ROOT

        root = os.path.abspath(gopts.get("root") or DEFAULT_ROOT)
        return handler(root=root, opts=opts, args=rest, gopts=gopts, logger=logger)
    except KetchError as exc:
        if logger is None:
            sys.stderr.write(f"ketch-runtime: {exc}\n")
        else:
            logger.error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130

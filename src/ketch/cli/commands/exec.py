"""``exec``: run a command in a running container, as docker does.

``GET /containers/{name}/json`` first (so a missing container is "Error: No such container: x" and no exec
is left behind), ``POST /containers/{name}/exec``, then ``POST /exec/{id}/start``: hijacked unless ``-d``;
with a tty the size is sent (``POST /exec/{id}/resize``) and kept up to date. The exit status is the
command's, read from ``GET /exec/{id}/json`` once the stream ends.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli

__all__ = ["register"]


def exec_body(cli: Cli, args: argparse.Namespace) -> dict[str, Any]:
    """The ``POST /containers/{id}/exec`` body, keys in docker's order (types.ExecConfig)."""
    from ketch.cli import opts
    from ketch.cli.commands.run import detach_keys
    from ketch.cli.main import CommandError

    try:
        env = opts.read_kv_env(args.env_file, args.env)
    except OSError as exc:
        raise CommandError(f"open {exc.filename}: {(exc.strerror or str(exc)).lower()}") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    attached = not args.detach
    return {
        "User": args.user or "",
        "Privileged": args.privileged,
        "Tty": args.tty,
        "AttachStdin": attached and args.interactive,
        "AttachStderr": attached,
        "AttachStdout": attached,
        "Detach": args.detach,
        "DetachKeys": detach_keys(cli, args.detach_keys),
        "Env": env or None,
        "WorkingDir": args.workdir or "",
        "Cmd": list(args.cmd),
    }


def exec_command(cli: Cli, args: argparse.Namespace) -> int:
    import contextlib

    from ketch.cli.commands.run import interactive
    from ketch.cli.main import CommandError
    from ketch.cli.session import (
        is_terminal,
    )
    from ketch.client.http import DaemonUnreachable

    if not args.cmd:
        raise CommandError("\"ketch exec\" requires at least 2 arguments.\nSee 'ketch exec --help'.")
    body = exec_body(cli, args)
    client = cli.client()
    client.inspect_container(args.container)
    tty, stdin = body["Tty"], body["AttachStdin"]
    if not body["Detach"] and tty and stdin and not is_terminal(cli.stdin):
        raise CommandError("the input device is not a TTY")
    exec_id = str(client.exec_create(args.container, body).get("Id") or "")
    if not exec_id:
        raise CommandError("exec ID empty")
    if body["Detach"]:
        client.exec_start_detached(exec_id, tty=tty)
        return 0
    with contextlib.ExitStack() as stack:
        hijacked = stack.enter_context(client.exec_attach(exec_id, tty=tty))
        resizes = tty and is_terminal(cli.stdin)
        if interactive(
            cli,
            stack,
            hijacked,
            tty=tty,
            stdin=stdin,
            keys=body["DetachKeys"],
            resize=(lambda h, w: client.exec_resize(exec_id, h, w)) if resizes else None,
        ):
            return 0
    try:
        status = int(client.exec_inspect(exec_id).get("ExitCode") or 0)
    except DaemonUnreachable:
        return 255  # docker's StatusError{-1}: the daemon went away
    return status


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    add_commands(sub, handlers, prefix="")


def add_commands(
    sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]], prefix: str
) -> None:
    import argparse

    parser = sub.add_parser("exec", help="Run a command in a running container")
    parser.interspersed = False
    parser.requires = "at least 2 arguments"
    parser.add_argument("-d", "--detach", action="store_true")
    parser.add_argument("--detach-keys", default=None)
    parser.add_argument("-e", "--env", action="append", default=[])
    parser.add_argument("--env-file", action="append", default=[])
    parser.add_argument("-i", "--interactive", action="store_true")
    parser.add_argument("--privileged", action="store_true")
    parser.add_argument("-t", "--tty", action="store_true")
    parser.add_argument("-u", "--user", default="")
    parser.add_argument("-w", "--workdir", default="")
    parser.add_argument("container")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")
    parser.set_defaults(handler=prefix + "exec")
    handlers[prefix + "exec"] = exec_command

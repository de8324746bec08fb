"""``run`` and ``create``: docker's request sequence, output and exit statuses.

``run``: ``POST /containers/create`` (on 404, pull the image and retry, saying "Unable to find image ...
locally" on stderr), then for an attached run ``POST /containers/{id}/attach`` (hijacked), ``POST
/containers/{id}/wait?condition=next-exit`` (``removed`` with ``--rm``), ``POST /containers/{id}/start``;
output is copied until the stream ends and the exit status is the container's. With ``-d`` the ID is
printed and nothing is attached. Failures to create or start exit 125 (126 and 127 when the command cannot
be run, as docker tells them apart), and are printed as ``ketch: <message>.``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.containerconfig import CreateRequest
    from ketch.cli.main import Cli
    from ketch.common.errors import KetchError

__all__ = ["create_container", "daemon_text", "register", "report", "start_status"]


def report(command: str, text: str, *, with_help: bool) -> str:
    """docker's reportError: ``ketch: <text>.`` and, for flag-level problems, where to find help."""
    text = text.removesuffix(".") + "."
    if with_help:
        text += f"\nSee 'ketch {command} --help'."
    return f"ketch: {text}"


def daemon_text(exc: KetchError) -> str:
    from ketch.client.http import FromDaemon

    return f"Error response from daemon: {exc}" if isinstance(exc, FromDaemon) else str(exc)


def start_status(text: str) -> int:
    """runStartContainerErr: 127 when the command is not found, 126 when it may not run, else 125."""
    text = text.removeprefix("Error response from daemon: ")
    if any(s in text for s in ("executable file not found", "no such file or directory",
                                "system cannot find the file specified")):  # fmt: skip
        return 127
    if "permission denied" in text:
        return 126
    return 125


def detach_keys(cli: Cli, flag: str | None) -> str:
    """``--detach-keys``, else ``detachKeys`` from config.json, else "" (the daemon's default)."""
    return flag or str(cli.config().get("detachKeys") or "")


def build_request(cli: Cli, args: argparse.Namespace, command: str) -> CreateRequest:
    from ketch.cli.containerconfig import ConfigError, FlagError, build_create
    from ketch.cli.main import CommandError
    from ketch.cli.session import console_size

    size = console_size(cli.stdout, cli.stdin) if args.tty else (0, 0)
    try:
        return build_create(args, console_size=size)
    except FlagError as exc:
        raise CommandError(f"{exc}\nSee 'ketch {command} --help'.", 125) from None
    except ConfigError as exc:
        raise CommandError(report(command, str(exc), with_help=True), 125) from None


def _named(image: str) -> Any:
    """The image as a reference to pull, or None for an image ID (``sha256:...``, 64 hex digits)."""
    from ketch.cli.plainref import is_image_id

    if is_image_id(image):
        return None
    from ketch.spec import reference

    return reference.parse(image)


def _check_reference(image: str) -> None:
    """Refuse a malformed reference before asking the daemon, as docker does; the common plain forms are
    known good without loading the full grammar."""
    from ketch.cli.plainref import is_image_id, split_plain

    if not is_image_id(image) and split_plain(image) is None:
        _named(image)


def pull_image(cli: Cli, ref: Any, platform: str) -> None:
    """Pull as ``run`` does: progress on stderr, the reference's tag (``latest`` by default) or digest."""
    from ketch.cli.commands.images import display_stream
    from ketch.cli.commands.registry import auth_for

    tag = ref.digest or ref.tag or "latest"
    messages = cli.client().pull(ref.familiar_name, tag, platform=platform, auth=auth_for(cli, ref.domain))
    display_stream(cli, messages, write=cli.err)


def create_container(cli: Cli, request: CreateRequest) -> str:
    """Create (pulling a missing image when the pull policy allows) and return the new container's ID."""
    import os

    from ketch.common.errors import NotFound

    image = request.body["Image"]
    _check_reference(image)
    if request.cidfile and os.path.exists(request.cidfile):
        raise _CreateFailure(
            f"Container ID file found, make sure the other container isn't running or delete {request.cidfile}"
        )
    client = cli.client()
    if request.pull == "always" and (ref := _named(image)) is not None:
        pull_image(cli, ref, request.platform)
    try:
        created = client.create_container(request.body, name=request.name, platform=request.platform)
    except NotFound:
        ref = _named(image) if request.pull == "missing" else None
        if ref is None:
            raise
        cli.err(f"Unable to find image '{ref.familiar()}' locally\n")
        pull_image(cli, ref, request.platform)
        created = client.create_container(request.body, name=request.name, platform=request.platform)
    for warning in created.get("Warnings") or []:
        cli.err(f"WARNING: {warning}\n")
    container_id = str(created["Id"])
    if request.cidfile:
        try:
            with open(request.cidfile, "x", encoding="utf-8") as fh:
                fh.write(container_id)
        except OSError as exc:
            raise _CreateFailure(f"Failed to create the container ID file: {exc}") from None
    return container_id


class _CreateFailure(Exception):
    pass


def _create_or_report(cli: Cli, request: CreateRequest, command: str) -> str:
    from ketch.cli.main import CommandError
    from ketch.common.errors import KetchError

    try:
        return create_container(cli, request)
    except (_CreateFailure, CommandError) as exc:
        text = str(exc)
    except KetchError as exc:
        text = daemon_text(exc)
    raise CommandError(report(command, text, with_help=True), start_status(text) if command == "run" else 125)


def create(cli: Cli, args: argparse.Namespace) -> int:
    request = build_request(cli, args, "create")
    cli.out(_create_or_report(cli, request, "create") + "\n")
    return 0


def run(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.cli.session import is_terminal

    request = build_request(cli, args, "run")
    config = request.config
    if args.detach:
        if args.attach:
            raise CommandError("Conflicting options: -a and -d")
        config.update(AttachStdin=False, AttachStdout=False, AttachStderr=False, StdinOnce=False)
    elif config["Tty"] and config["AttachStdin"] and not is_terminal(cli.stdin):
        raise CommandError("the input device is not a TTY")
    container_id = _create_or_report(cli, request, "run")
    return _start_and_attach(cli, args, container_id, config, request.host_config["AutoRemove"])


def _start_and_attach(
    cli: Cli, args: argparse.Namespace, container_id: str, config: dict[str, Any], auto_remove: bool
) -> int:
    import contextlib

    from ketch.cli.main import CommandError
    from ketch.cli.session import (
        SignalProxy,
        is_terminal,
    )
    from ketch.common.errors import KetchError

    client = cli.client()
    tty = bool(config["Tty"])
    stdin, stdout, stderr = config["AttachStdin"], config["AttachStdout"], config["AttachStderr"]
    with contextlib.ExitStack() as stack:
        if args.sig_proxy and not tty:
            proxy = SignalProxy(lambda name: client.kill_container(container_id, name))
            proxy.start()
            stack.callback(proxy.stop)
        if not stdout and not stderr:
            cli.out(container_id + "\n")
            cli.stdout.flush()
        hijacked = None
        keys = detach_keys(cli, args.detach_keys)
        if stdin or stdout or stderr:
            hijacked = client.attach(
                container_id, stdin=stdin, stdout=stdout, stderr=stderr, detach_keys=keys
            )
            stack.callback(hijacked.close)
        # Like docker, wait before starting; unlike docker, take the answer's headers first, so the daemon
        # is watching before the container can exit (a next-exit wait registered after the exit never ends).
        wait = client.begin_wait(container_id, "removed" if auto_remove else "next-exit")
        stack.callback(wait.close)
        wait.ready()
        try:
            client.start_container(container_id)
        except KetchError as exc:
            if hijacked is not None:
                hijacked.close()
            text = daemon_text(exc)
            cli.err(report("run", text, with_help=False) + "\n")
            if auto_remove:
                with contextlib.suppress(KetchError):
                    wait.result().read()  # docker waits for the removal before giving up
            raise CommandError("", start_status(text)) from None
        if hijacked is not None:
            resizes = tty and (is_terminal(cli.stdout) or is_terminal(cli.stdin))
            if interactive(
                cli,
                stack,
                hijacked,
                tty=tty,
                stdin=stdin,
                keys=keys,
                stdout=stdout,
                stderr=stderr,
                resize=(lambda h, w: client.resize_container(container_id, h, w)) if resizes else None,
            ):
                return 0
        if not stdout and not stderr:
            return 0
        return wait_status(cli, wait)
    return 0  # pragma: no cover - the ExitStack does not swallow exceptions


def _run_session(cli: Cli, session: Any) -> bool:
    """Run a session; a daemon error inside the stream is printed as docker prints it."""
    from ketch.cli.main import CommandError
    from ketch.client.hijack import StreamError

    try:
        detached: bool = session.run()
    except StreamError as exc:
        raise CommandError(str(exc)) from None
    return detached


def interactive(
    cli: Cli,
    stack: Any,
    hijacked: Any,
    *,
    tty: bool,
    stdin: bool,
    keys: str,
    resize: Callable[[int, int], None] | None = None,
    stdout: bool = True,
    stderr: bool = True,
) -> bool:
    """The local side of a hijacked stream, shared by run, start -a, attach and exec: the terminal in raw mode
    for a tty, its size sent now and on SIGWINCH (``resize``), stdin copied, the detach keys watched; True
    when the user detached."""
    from ketch.cli.session import Input, ResizeMonitor, Session, binary_writer, console_size, raw_terminal

    if resize is not None:
        monitor = ResizeMonitor(resize, lambda: console_size(cli.stdout, cli.stdin), cli.stderr)
        monitor.start()
        stack.callback(monitor.stop)
    terminal = stack.enter_context(raw_terminal(cli.stdin if stdin and tty else None))
    reader = Input(cli.stdin) if stdin else None
    if reader is not None:
        stack.callback(reader.close)
    session = Session(
        hijacked,
        tty=tty,
        stdin=reader,
        stdout=binary_writer(cli.stdout) if stdout else None,
        stderr=binary_writer(cli.stdout if tty else cli.stderr) if stderr else None,
        detach_keys=_detach_bytes(cli, keys),
        on_output_end=terminal.restore,
    )
    return _run_session(cli, session)


def _detach_bytes(cli: Cli, keys: str) -> bytes:
    """The client-side detach sequence; docker falls back to ctrl-p,ctrl-q (with a warning) when it is bad."""
    from ketch.cli.opts import DEFAULT_DETACH_KEYS, parse_detach_keys

    if not keys:
        return DEFAULT_DETACH_KEYS
    try:
        return parse_detach_keys(keys)
    except ValueError as exc:
        cli.err(f"invalid detach escape keys, using default: {exc}\n")
        return DEFAULT_DETACH_KEYS


def wait_status(cli: Cli, wait: Any) -> int:
    """The exit status from a ``wait`` answer; 125 (and the error on stderr) when waiting failed."""
    from ketch.common.errors import KetchError

    try:
        result = wait.result().json() or {}
    except KetchError as exc:
        cli.err(f"error waiting for container: {exc}\n")
        return 125
    error = result.get("Error") or {}
    if error.get("Message"):
        cli.err(f"Error waiting for container: {error['Message']}\n")
        return 125
    return int(result.get("StatusCode", 0))


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    add_commands(sub, handlers, prefix="")


def add_commands(
    sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]], prefix: str
) -> None:
    """``run`` and ``create`` under ``sub`` (the top level, or ``container`` with ``prefix="container "``)."""
    from ketch.cli.containerconfig import add_create_flags

    for name, handler, help_text in (
        ("run", run, "Run a command in a new container"),
        ("create", create, "Create a new container"),
    ):
        parser = sub.add_parser(name, help=help_text, add_help=False)
        parser.interspersed = False
        parser.requires = "at least 1 argument"
        add_create_flags(parser, run=name == "run")
        parser.set_defaults(handler=prefix + name)
        handlers[prefix + name] = handler

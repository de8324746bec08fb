"""Container lifecycle and housekeeping: start, stop, restart, kill, pause, unpause, wait, rm, rename,
update, attach, port, top, prune, commit, export, import, and the ``container`` command group.

Commands over several containers run them in parallel (at most 50 at a time, as docker does), print each
name that succeeded in the order given, then the failures, one per line, and exit 1 if there were any.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli
    from ketch.common.errors import KetchError

__all__ = ["register"]

PARALLEL = 50


def _error_text(exc: KetchError) -> str:
    from ketch.cli.commands.run import daemon_text

    return daemon_text(exc)


def parallel(names: list[str], operation: Callable[[str], object]) -> list[KetchError | None]:
    """Run ``operation`` on every name (concurrently when there are several); the errors, in order."""
    from ketch.common.errors import KetchError

    def attempt(name: str) -> KetchError | None:
        try:
            operation(name)
        except KetchError as exc:
            return exc
        return None

    if len(names) == 1:
        return [attempt(names[0])]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(names))) as pool:
        return list(pool.map(attempt, names))


def _each(cli: Cli, names: list[str], operation: Callable[[str], object]) -> int:
    from ketch.cli.main import CommandError

    failures: list[str] = []
    for name, error in zip(names, parallel(names, operation), strict=True):
        if error is None:
            cli.out(f"{name}\n")
        else:
            failures.append(_error_text(error))
    if failures:
        raise CommandError("\n".join(failures))
    return 0


def _time_flag(args: argparse.Namespace) -> int | None:
    from ketch.cli.main import CommandError

    if "time" not in args.changed:
        return None
    try:
        return int(args.time)
    except ValueError:
        raise CommandError(f'invalid argument "{args.time}" for "-t, --time" flag: strconv.ParseInt: parsing '
                           f'"{args.time}": invalid syntax', 125) from None  # fmt: skip


def stop(cli: Cli, args: argparse.Namespace) -> int:
    client, timeout = cli.client(), _time_flag(args)
    return _each(
        cli, args.containers, lambda c: client.stop_container(c, timeout=timeout, signal=args.signal)
    )


def restart(cli: Cli, args: argparse.Namespace) -> int:
    client, timeout = cli.client(), _time_flag(args)
    return _each(
        cli, args.containers, lambda c: client.restart_container(c, timeout=timeout, signal=args.signal)
    )


def kill(cli: Cli, args: argparse.Namespace) -> int:
    client = cli.client()
    return _each(cli, args.containers, lambda c: client.kill_container(c, args.signal))


def pause(cli: Cli, args: argparse.Namespace) -> int:
    client = cli.client()
    return _each(cli, args.containers, client.pause_container)


def unpause(cli: Cli, args: argparse.Namespace) -> int:
    client = cli.client()
    return _each(cli, args.containers, client.unpause_container)


def rm(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.common.errors import InvalidArgument, NotFound

    client = cli.client()

    def remove(name: str) -> None:
        name = name.strip("/")
        if not name:
            raise InvalidArgument("Container name cannot be empty")
        client.remove_container(name, force=args.force, volumes=args.volumes, link=args.link)

    failures: list[str] = []
    for name, error in zip(args.containers, parallel(args.containers, remove), strict=True):
        if error is None:
            cli.out(f"{name}\n")
        elif args.force and isinstance(error, NotFound):
            cli.err(f"{_error_text(error)}\n")  # docker: with -f a missing container is not a failure
        else:
            failures.append(_error_text(error))
    if failures:
        raise CommandError("\n".join(failures))
    return 0


def wait(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.common.errors import KetchError

    client = cli.client()
    failures: list[str] = []
    for name in args.containers:
        try:
            result = client.wait_container(name)
        except KetchError as exc:
            failures.append(_error_text(exc))
            continue
        cli.out(f"{int(result.get('StatusCode', 0))}\n")
    if failures:
        raise CommandError("\n".join(failures))
    return 0


def rename(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.common.errors import KetchError

    old, new = args.old.strip(), args.new.strip()
    if not old or not new:
        raise CommandError("Error: Neither old nor new names may be empty")
    try:
        cli.client().rename_container(old, new)
    except KetchError as exc:
        cli.err(f"{_error_text(exc)}\n")
        raise CommandError(f"Error: failed to rename container named {old}") from None
    return 0


def start(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.common.errors import KetchError

    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise CommandError("you cannot start and attach multiple containers at once")
        return _start_attached(cli, args)
    client = cli.client()
    failed: list[str] = []
    for name in args.containers:
        try:
            client.start_container(name)
        except KetchError as exc:
            cli.err(f"{_error_text(exc)}\n")
            failed.append(name)
            continue
        cli.out(f"{name}\n")
    if failed:
        raise CommandError(f"Error: failed to start containers: {', '.join(failed)}")
    return 0


def _attach_session(
    cli: Cli,
    container_id: str,
    config: dict[str, Any],
    hijacked: Any,
    stdin: bool,
    keys: str,
    stack: Any,
) -> bool:
    """Copy the attached streams (raw terminal, resize, detach keys as for ``run``); True when detached."""
    from ketch.cli.commands.run import interactive
    from ketch.cli.session import is_terminal

    client = cli.client()
    tty = bool(config.get("Tty"))
    resizes = tty and (is_terminal(cli.stdout) or is_terminal(cli.stdin))
    return interactive(
        cli,
        stack,
        hijacked,
        tty=tty,
        stdin=stdin,
        keys=keys,
        resize=(lambda h, w: client.resize_container(container_id, h, w)) if resizes else None,
    )


def _start_attached(cli: Cli, args: argparse.Namespace) -> int:
    import contextlib

    from ketch.cli.commands.run import daemon_text, detach_keys, wait_status
    from ketch.cli.main import CommandError
    from ketch.cli.session import SignalProxy
    from ketch.common.errors import KetchError

    client = cli.client()
    container = client.inspect_container(args.containers[0])
    container_id = str(container.get("Id") or args.containers[0])
    config = container.get("Config") or {}
    auto_remove = bool((container.get("HostConfig") or {}).get("AutoRemove"))
    stdin = bool(args.interactive and config.get("OpenStdin"))
    keys = detach_keys(cli, args.detach_keys)
    with contextlib.ExitStack() as stack:
        if not config.get("Tty"):
            proxy = SignalProxy(lambda name: client.kill_container(container_id, name))
            proxy.start()
            stack.callback(proxy.stop)
        hijacked = stack.enter_context(client.attach(container_id, stdin=stdin, detach_keys=keys))
        pending = client.begin_wait(container_id, "removed" if auto_remove else "next-exit")
        stack.callback(pending.close)
        pending.ready()
        try:
            client.start_container(container_id)
        except KetchError as exc:
            hijacked.close()
            if auto_remove:
                with contextlib.suppress(KetchError):
                    pending.result().read()
            raise CommandError(daemon_text(exc)) from None
        if _attach_session(cli, container_id, config, hijacked, stdin, keys, stack):
            return 0
        return wait_status(cli, pending)
    return 0  # pragma: no cover


def _check_state(container: dict[str, Any]) -> None:
    from ketch.cli.main import CommandError

    state = container.get("State") or {}
    if not state.get("Running"):
        raise CommandError("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise CommandError("You cannot attach to a paused container, unpause it first")
    if state.get("Restarting"):
        raise CommandError("You cannot attach to a restarting container, wait until it is running")


def attach(cli: Cli, args: argparse.Namespace) -> int:
    import contextlib

    from ketch.cli.commands.run import detach_keys
    from ketch.cli.main import CommandError
    from ketch.cli.session import SignalProxy, is_terminal
    from ketch.common.errors import KetchError

    client = cli.client()
    pending = client.begin_wait(args.container)
    with contextlib.ExitStack() as stack:
        stack.callback(pending.close)
        container = client.inspect_container(args.container)
        _check_state(container)
        config = container.get("Config") or {}
        if config.get("Tty") and not args.no_stdin and not is_terminal(cli.stdin):
            raise CommandError("the input device is not a TTY")
        stdin = not args.no_stdin and bool(config.get("OpenStdin"))
        keys = detach_keys(cli, args.detach_keys)
        if args.sig_proxy and not config.get("Tty"):
            proxy = SignalProxy(lambda name: client.kill_container(args.container, name))
            proxy.start()
            stack.callback(proxy.stop)
        hijacked = stack.enter_context(client.attach(args.container, stdin=stdin, detach_keys=keys))
        _check_state(client.inspect_container(args.container))
        if _attach_session(cli, args.container, config, hijacked, stdin, keys, stack):
            return 0
        try:
            result = pending.result().json() or {}
        except KetchError as exc:
            raise CommandError(_error_text(exc)) from None
        error = result.get("Error") or {}
        if error.get("Message"):
            raise CommandError(str(error["Message"]))
        return int(result.get("StatusCode", 0))
    return 0  # pragma: no cover


_UPDATE_FLAGS = (
    ("blkio_weight", "--blkio-weight", "uint16"),
    ("cpu_period", "--cpu-period", "int"),
    ("cpu_quota", "--cpu-quota", "int"),
    ("cpu_rt_period", "--cpu-rt-period", "int"),
    ("cpu_rt_runtime", "--cpu-rt-runtime", "int"),
    ("cpu_shares", "-c, --cpu-shares", "int"),
    ("cpus", "--cpus", "cpus"),
    ("kernel_memory", "--kernel-memory", "bytes"),
    ("memory", "-m, --memory", "bytes"),
    ("memory_reservation", "--memory-reservation", "bytes"),
    ("memory_swap", "--memory-swap", "swap"),
    ("pids_limit", "--pids-limit", "int"),
)


def update_body(args: argparse.Namespace) -> dict[str, Any]:
    """container.UpdateConfig: the Resources fields (zero when not given) and the restart policy."""
    from ketch.cli import opts
    from ketch.cli.main import CommandError

    converters: dict[str, Callable[[str], int]] = {
        "int": opts.parse_int,
        "uint16": lambda text: opts.parse_uint(text, 16),
        "bytes": opts.ram_in_bytes,
        "swap": opts.parse_mem_swap,
        "cpus": opts.parse_cpus,
    }
    values: dict[str, int | None] = {}
    for dest, flag, kind in _UPDATE_FLAGS:
        text = getattr(args, dest)
        if text is None:
            values[dest] = None
            continue
        try:
            values[dest] = converters[kind](text)
        except ValueError as exc:
            raise CommandError(f'invalid argument "{text}" for "{flag}" flag: {exc}\n'
                               "See 'ketch update --help'.", 125) from None  # fmt: skip
    restart = {"Name": "", "MaximumRetryCount": 0}
    if args.restart is not None:
        try:
            restart = opts.parse_restart(args.restart)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    def number(dest: str) -> int:
        return values[dest] or 0

    return {
        "CpuShares": number("cpu_shares"),
        "Memory": number("memory"),
        "NanoCpus": number("cpus"),
        "CgroupParent": "",
        "BlkioWeight": number("blkio_weight"),
        "BlkioWeightDevice": None,
        "BlkioDeviceReadBps": None,
        "BlkioDeviceWriteBps": None,
        "BlkioDeviceReadIOps": None,
        "BlkioDeviceWriteIOps": None,
        "CpuPeriod": number("cpu_period"),
        "CpuQuota": number("cpu_quota"),
        "CpuRealtimePeriod": number("cpu_rt_period"),
        "CpuRealtimeRuntime": number("cpu_rt_runtime"),
        "CpusetCpus": args.cpuset_cpus or "",
        "CpusetMems": args.cpuset_mems or "",
        "Devices": None,
        "DeviceCgroupRules": None,
        "DeviceRequests": None,
        "KernelMemory": number("kernel_memory"),
        "KernelMemoryTCP": 0,
        "MemoryReservation": number("memory_reservation"),
        "MemorySwap": number("memory_swap"),
        "MemorySwappiness": None,
        "OomKillDisable": None,
        "PidsLimit": values["pids_limit"],
        "Ulimits": None,
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "RestartPolicy": restart,
    }


def update(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.common.errors import KetchError

    if not args.changed:
        raise CommandError("you must provide one or more flags when using this command")
    body = update_body(args)
    client = cli.client()
    warnings: list[str] = []
    failures: list[str] = []
    for name in args.containers:
        try:
            result = client.update_container(name, body)
        except KetchError as exc:
            failures.append(_error_text(exc))
            continue
        cli.out(f"{name}\n")
        warnings += [str(w) for w in result.get("Warnings") or []]
    if warnings:
        cli.out("\n".join(warnings) + "\n")
    if failures:
        raise CommandError("\n".join(failures))
    return 0


def _port_key(text: str) -> tuple[int, str]:
    number, _, proto = text.partition("/")
    return (int(number) if number.isdigit() else 0, proto)


def port(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.ps import _join_host_port
    from ketch.cli.main import CommandError

    container = cli.client().inspect_container(args.container)
    ports: dict[str, Any] = (container.get("NetworkSettings") or {}).get("Ports") or {}
    if args.port:
        number, sep, proto = args.port.partition("/")
        proto = proto if sep and proto else "tcp"
        if not number.isdigit() or not 0 <= int(number) <= 65535:
            raise CommandError(f"invalid port format: {args.port}" if number else f"invalid port: {number}")
        frontends = ports.get(f"{number}/{proto}")
        if frontends:
            for frontend in frontends:
                cli.out(_join_host_port(frontend.get("HostIp", ""), frontend.get("HostPort", "")) + "\n")
            return 0
        raise CommandError(f"Error: No public port '{number}/{proto}' published for {args.container}")
    for key in sorted(ports, key=_port_key):
        for frontend in ports[key] or []:
            address = _join_host_port(frontend.get("HostIp", ""), frontend.get("HostPort", ""))
            cli.out(f"{key} -> {address}\n")
    return 0


def top(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.templates import tabwrite

    result = cli.client().top(args.container, " ".join(args.ps_args))
    lines = ["\t".join(result.get("Titles") or [])]
    lines += ["\t".join(str(v) for v in process) for process in result.get("Processes") or []]
    cli.out(tabwrite("\n".join(lines) + "\n", minwidth=20, padding=3))
    return 0


def confirm(cli: Cli, message: str) -> bool:
    """command.PromptForConfirmation: ``<message> [y/N] ``, yes only for "y" or "Y"."""
    cli.out(f"{message} [y/N] ")
    cli.stdout.flush()
    answer = cli.stdin.readline().strip()
    return answer in ("y", "Y")


def prune_containers(cli: Cli, filters: Any) -> tuple[int, str]:
    """The container part of ``container prune`` and ``system prune``: (space reclaimed, report text)."""
    report = cli.client().prune_containers(filters)
    deleted = report.get("ContainersDeleted") or []
    if not deleted:
        return 0, ""
    return int(report.get("SpaceReclaimed") or 0), "Deleted Containers:\n" + "".join(
        f"{d}\n" for d in deleted
    )


def prune(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.images import _filters
    from ketch.cli.templates import human_size

    filters = _filters(args.filter)
    if not args.force and not confirm(
        cli, "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?"
    ):
        cli.out(f"Total reclaimed space: {human_size(0, 4)}\n")
        return 0
    space, output = prune_containers(cli, filters)
    if output:
        cli.out(output + "\n")
    cli.out(f"Total reclaimed space: {human_size(float(space), 4)}\n")
    return 0


def commit(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.common.errors import InvalidArgument
    from ketch.spec import reference

    repo = tag = ""
    if args.reference:
        try:
            ref = reference.parse(args.reference, default_tag=False)
        except InvalidArgument as exc:
            raise CommandError(str(exc)) from None
        if ref.digest:
            raise CommandError("refusing to create a tag with a digest reference")
        repo, tag = ref.familiar_name, ref.tag or "latest"
    result = cli.client().commit(
        args.container,
        repo=repo,
        tag=tag,
        comment=args.message,
        author=args.author,
        changes=args.change,
        pause=args.pause,
    )
    cli.out(f"{result.get('Id', '')}\n")
    return 0


def export(cli: Cli, args: argparse.Namespace) -> int:
    import os

    from ketch.cli.main import CommandError

    if not args.output and cli.stdout.isatty():
        raise CommandError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if args.output:
        directory = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(directory):
            raise CommandError(f'failed to export container: invalid output path: directory "{directory}" '
                               "does not exist")  # fmt: skip
    response = cli.client().export_container(args.container)
    if not args.output:
        cli.stdout.flush()
        sink = getattr(cli.stdout, "buffer", None)
        if sink is None:
            raise CommandError("cannot write a tar archive to this output; use -o")
        for chunk in response.chunks():
            sink.write(chunk)
        sink.flush()
        return 0
    temp = os.path.join(os.path.dirname(os.path.abspath(args.output)), f".ketch-export-{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as fh:
            for chunk in response.chunks():
                fh.write(chunk)
        os.replace(temp, args.output)
    except OSError as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise CommandError(f"failed to export container: {exc.strerror or exc}: {args.output}") from None
    return 0


def import_(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.images import display_stream
    from ketch.cli.main import CommandError
    from ketch.common.errors import InvalidArgument
    from ketch.spec import reference

    if args.reference:
        try:
            reference.parse(args.reference)
        except InvalidArgument as exc:
            raise CommandError(str(exc)) from None
    source: Any = None
    source_name = args.source
    if args.source == "-":
        source = getattr(cli.stdin, "buffer", cli.stdin)
    elif not args.source.startswith(("http://", "https://")):
        source_name = "-"
        try:
            source = open(args.source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CommandError(f"open {args.source}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        messages = cli.client().import_image(
            source,
            source_name=source_name,
            repo=args.reference or "",
            message=args.message,
            changes=args.change,
            platform=args.platform,
        )
        display_stream(cli, messages)
    finally:
        if source is not None and args.source != "-":
            source.close()
    return 0


def inspect_container(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.commands.images import inspect

    args.type, args.image_only = "container", False
    return inspect(cli, args)


# ---- argument parsers ---------------------------------------------------------------------------------------------


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    _add_lifecycle(sub, handlers, group=False)
    group = sub.add_parser("container", help="Manage containers")
    group.interspersed = False
    group_sub = group.add_subparsers(dest="group_command", metavar="COMMAND", required=True)
    from ketch.cli.commands import exec, logs, ps, run, stats

    _add_lifecycle(group_sub, handlers, group=True)
    run.add_commands(group_sub, handlers, prefix="")
    exec.add_commands(group_sub, handlers, prefix="")
    logs.add_commands(group_sub, handlers, prefix="")
    ps.add_commands(group_sub, handlers, prefix="", aliases=("ps", "list"))
    stats.add_commands(group_sub, handlers, prefix="")
    parser = group_sub.add_parser("inspect", help="Display detailed information on one or more containers")
    parser.add_argument("names", nargs="+")
    parser.add_argument("-f", "--format", default="")
    parser.add_argument("-s", "--size", action="store_true")
    parser.set_defaults(handler="container inspect")
    handlers["container inspect"] = inspect_container
    parser = group_sub.add_parser("prune", help="Remove all stopped containers")
    parser.add_argument("--filter", action="append", default=[])
    parser.add_argument("-f", "--force", action="store_true")
    parser.set_defaults(handler="container prune")
    handlers["container prune"] = prune


def _add_lifecycle(
    sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]], *, group: bool
) -> None:
    aliases = {"rm": ["remove"]} if group else {}

    def add(
        name: str, handler: Callable[[Cli, argparse.Namespace], int], help_text: str, requires: str
    ) -> Any:
        parser = sub.add_parser(name, aliases=aliases.get(name, []), help=help_text)
        parser.requires = requires
        parser.set_defaults(handler=name)
        handlers[name] = handler
        return parser

    parser = add("start", start, "Start one or more stopped containers", "at least 1 argument")
    parser.add_argument("containers", nargs="+")
    parser.add_argument("-a", "--attach", action="store_true")
    parser.add_argument("--detach-keys", default=None)
    parser.add_argument("-i", "--interactive", action="store_true")
    for name, handler, help_text in (
        ("stop", stop, "Stop one or more running containers"),
        ("restart", restart, "Restart one or more containers"),
    ):
        parser = add(name, handler, help_text, "at least 1 argument")
        parser.add_argument("containers", nargs="+")
        parser.add_argument("-t", "--time", default="10")
        parser.add_argument("-s", "--signal", default="")
    parser = add("kill", kill, "Kill one or more running containers", "at least 1 argument")
    parser.add_argument("containers", nargs="+")
    parser.add_argument("-s", "--signal", default="KILL")
    for name, handler, help_text in (
        ("pause", pause, "Pause all processes within one or more containers"),
        ("unpause", unpause, "Unpause all processes within one or more containers"),
        ("wait", wait, "Block until one or more containers stop, then print their exit codes"),
    ):
        add(name, handler, help_text, "at least 1 argument").add_argument("containers", nargs="+")
    parser = add("rm", rm, "Remove one or more containers", "at least 1 argument")
    parser.add_argument("containers", nargs="+")
    parser.add_argument("-f", "--force", action="store_true")
    parser.add_argument("-l", "--link", action="store_true")
    parser.add_argument("-v", "--volumes", action="store_true")
    parser = add("rename", rename, "Rename a container", "exactly 2 arguments")
    parser.add_argument("old")
    parser.add_argument("new")
    parser = add("update", update, "Update configuration of one or more containers", "at least 1 argument")
    parser.add_argument("containers", nargs="+")
    for dest, flag, _ in _UPDATE_FLAGS:
        parser.add_argument(*flag.split(", "), dest=dest, default=None)
    parser.add_argument("--cpuset-cpus", default=None)
    parser.add_argument("--cpuset-mems", default=None)
    parser.add_argument("--restart", default=None)
    parser = add("attach", attach, "Attach local standard input, output, and error streams to a running container",
                 "exactly 1 argument")  # fmt: skip
    parser.add_argument("container")
    parser.add_argument("--detach-keys", default=None)
    parser.add_argument("--no-stdin", action="store_true")
    parser.add_argument("--sig-proxy", action="store_true", default=True)
    parser = add(
        "port", port, "List port mappings or a specific mapping for the container", "at least 1 argument"
    )
    parser.add_argument("container")
    parser.add_argument("port", nargs="?", default="")
    import argparse

    parser = add("top", top, "Display the running processes of a container", "at least 1 argument")
    parser.interspersed = False
    parser.add_argument("container")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER)
    parser = add("commit", commit, "Create a new image from a container's changes", "at least 1 argument")
    parser.add_argument("container")
    parser.add_argument("reference", nargs="?", default="")
    parser.add_argument("-a", "--author", default="")
    parser.add_argument("-c", "--change", action="append", default=[])
    parser.add_argument("-m", "--message", default="")
    parser.add_argument("-p", "--pause", action="store_true", default=True)
    parser = add("export", export, "Export a container's filesystem as a tar archive", "exactly 1 argument")
    parser.add_argument("container")
    parser.add_argument("-o", "--output", default="")
    if group:
        return  # docker has no `container import`
    parser = add("import", import_, "Import the contents from a tarball to create a filesystem image",
                 "at least 1 argument")  # fmt: skip
    parser.add_argument("source")
    parser.add_argument("reference", nargs="?", default="")
    parser.add_argument("-c", "--change", action="append", default=[])
    parser.add_argument("-m", "--message", default="")
    parser.add_argument("--platform", default="")

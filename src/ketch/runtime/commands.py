"""One function per ``ketch-runtime`` command: argument checks, then a call into the runtime library."""

from __future__ import annotations

import os
import sys

from ketch.common import fastjson
from ketch.common.errors import InvalidArgument, KetchError, NotFound
from ketch.runtime.state import ContainerState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.runtime.cli import Logger


def _id(command: str, args: list[str], *, exact: bool = True) -> str:
    from ketch.runtime.cli import Usage

    if not args:
        raise Usage(f'"{command}" requires a minimum of 1 argument')
    if exact and len(args) > 1:
        raise Usage(f'"{command}" requires exactly 1 argument')
    return args[0]


def _failed(command: str, exc: KetchError) -> KetchError:
    """runc's wording: "runc create failed: unable to start container process: ..."."""
    error = type(exc).__new__(type(exc))
    KetchError.__init__(error, f"ketch-runtime {command} failed: {exc}")
    return error


def _create_options(opts: dict[str, Any], gopts: dict[str, Any], **extra: Any) -> Any:
    from ketch.runtime.create import Options

    if gopts.get("systemd-cgroup"):
        from ketch.common.errors import Unsupported

        raise Unsupported(
            "systemd cgroup driver is not supported by ketch-runtime: use cgroupfs "
            "(drop --systemd-cgroup / set native.cgroupdriver=cgroupfs)"
        )
    return Options(
        pid_file=opts.get("pid-file"),
        console_socket=opts.get("console-socket"),
        no_pivot=bool(opts.get("no-pivot")),
        preserve_fds=opts.get("preserve-fds", 0),
        no_new_keyring=bool(opts.get("no-new-keyring")),
        **extra,
    )


def cmd_create(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime.create import create

    container_id = _id("create", args)
    try:
        create(root, container_id, opts.get("bundle") or ".", _create_options(opts, gopts))
    except KetchError as exc:
        raise _failed("create", exc) from None
    return 0


def cmd_run(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime import lifecycle
    from ketch.runtime.create import create, load_bundle

    container_id = _id("run", args)
    detach = bool(opts.get("detach"))
    try:
        bundle = load_bundle(opts.get("bundle") or ".")
    except KetchError as exc:
        raise _failed("run", exc) from None
    terminal = bool(bundle[1]["process"].get("terminal"))
    console_pair: tuple[int, int] | None = None
    extra: dict[str, Any] = {}
    if terminal and not detach and not opts.get("console-socket"):
        import _socket

        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        console_pair = (a.detach(), b.detach())
        extra["console_fd"] = console_pair[1]
    forwarded = set() if detach else _block_signals()
    try:
        st = create(root, container_id, bundle, _create_options(opts, gopts, **extra))
    except KetchError as exc:
        raise _failed("run", exc) from None
    finally:
        if console_pair is not None:
            os.close(console_pair[1])
    if not detach:
        _forward_signals(st.pid, forwarded, tty=console_pair is not None)
    try:
        lifecycle.start(st, log_warning=logger.warning)
    except BaseException:
        lifecycle.delete(st, force=True, log_warning=logger.warning)
        raise
    if detach:
        return 0
    status = _wait_foreground(st.pid, console_pair[0] if console_pair else -1)
    if not opts.get("keep"):
        lifecycle.delete(st, force=True, log_warning=logger.warning)
    return status


def _block_signals() -> set[int]:
    """Block the signals a foreground run forwards, from before the container exists until a handler that
    knows its pid is installed: a signal in between stays pending instead of killing the runtime.
    Forked children clear the mask again (process.reset_signal_mask) before they exec."""
    import _signal as signal  # type: ignore[import-not-found]  # the C module: `signal` imports enum

    wanted = set(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    return wanted


def _forward_signals(pid: int, blocked: set[int], *, tty: bool) -> None:
    """Forward every signal we receive to ``pid``, as runc does (SIGWINCH too, unless we proxy a tty and
    resize it ourselves), then let the blocked ones through."""
    import _signal as signal

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in blocked:
        if tty and signum == signal.SIGWINCH:
            continue
        try:
            signal.signal(signum, forward)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


def _wait_foreground(pid: int, console_sock: int) -> int:
    """Wait for ``pid`` and return a shell-style status; with a console socket, proxy its pty meanwhile."""
    if console_sock >= 0:
        from ketch.runtime import terminal

        master = terminal.recv_fd(console_sock)
        os.close(console_sock)
        status = terminal.proxy(master, pid)
        os.close(master)
    else:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def cmd_start(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime import lifecycle

    lifecycle.start(ContainerState.load(root, _id("start", args)), log_warning=logger.warning)
    return 0


def cmd_state(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    st = ContainerState.load(root, _id("state", args))
    sys.stdout.write(fastjson.dumps(st.runc_state(), indent=2) + "\n")
    return 0


def cmd_kill(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime import lifecycle
    from ketch.runtime.cli import Usage
    from ketch.spec.signals import parse_signal

    if not args or len(args) > 2:
        raise Usage('"kill" requires a minimum of 1 and a maximum of 2 arguments')
    try:
        sig = parse_signal(args[1] if len(args) > 1 else "SIGTERM")
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    lifecycle.kill(ContainerState.load(root, args[0]), sig, all_processes=bool(opts.get("all")))
    return 0


def cmd_delete(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime import lifecycle

    _id("delete", args, exact=False)
    failed = False
    for container_id in args:
        try:
            st = ContainerState.load(root, container_id)
        except NotFound:
            if opts.get("force"):
                continue
            raise
        try:
            lifecycle.delete(st, force=bool(opts.get("force")), log_warning=logger.warning)
        except KetchError as exc:
            if len(args) == 1:
                raise
            logger.error(str(exc))
            failed = True
    return 1 if failed else 0


def cmd_pause(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime import lifecycle

    lifecycle.pause(ContainerState.load(root, _id("pause", args)))
    return 0


def cmd_resume(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime import lifecycle

    lifecycle.resume(ContainerState.load(root, _id("resume", args)))
    return 0


def cmd_exec(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime.exec import exec_process
    from ketch.runtime.process_spec import build_exec_process

    container_id = _id("exec", args, exact=False)
    st = ContainerState.load(root, container_id)
    process = build_exec_process(st.config.get("process", {}), opts, args[1:])
    console_fd = -1
    local_console = -1
    detach = bool(opts.get("detach"))
    if process.get("terminal"):
        from ketch.runtime import terminal

        if opts.get("console-socket"):
            console_fd = terminal.connect_console(opts["console-socket"])
        elif not detach:
            import _socket

            a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
            local_console, console_fd = a.detach(), b.detach()
    forwarded = set() if detach else _block_signals()
    try:
        pid = exec_process(st, process, console_fd=console_fd, preserve_fds=opts.get("preserve-fds", 0))
    except KetchError as exc:
        logger.error(str(_failed("exec", exc)))
        return 255
    finally:
        if console_fd >= 0:
            os.close(console_fd)
    if not detach:
        _forward_signals(pid, forwarded, tty=local_console >= 0)
    if opts.get("pid-file"):
        from ketch.common.atomic import atomic_write

        atomic_write(os.path.abspath(opts["pid-file"]), str(pid).encode(), durable=False)
    if detach:
        return 0
    return _wait_foreground(pid, local_console)


def cmd_ps(*, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger) -> int:
    from ketch.runtime import lifecycle

    st = ContainerState.load(root, _id("ps", args, exact=False))
    pids = sorted(lifecycle.manager_for(st).pids()) if st.status() != "stopped" else []
    fmt = opts.get("format", "table")
    if fmt == "json":
        sys.stdout.write(fastjson.dumps(pids) + "\n")
        return 0
    if fmt != "table":
        raise InvalidArgument(f"invalid format option: {fmt}")
    import subprocess

    ps_args = args[1:] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, check=False)
    if out.returncode != 0:
        raise InvalidArgument(f"ps: {out.stderr.decode(errors='replace').strip()}")
    lines = out.stdout.decode(errors="replace").splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise InvalidArgument("couldn't find PID field in ps output")
    column = header.index("PID")
    wanted = set(pids)
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in wanted:
            sys.stdout.write(line + "\n")
    return 0


def cmd_list(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime.state import list_ids

    states = []
    for container_id in list_ids(root):
        try:
            states.append(ContainerState.load(root, container_id).runc_state())
        except KetchError:
            continue
    if opts.get("quiet"):
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
        return 0
    fmt = opts.get("format", "table")
    if fmt == "json":
        sys.stdout.write(fastjson.dumps(states) + "\n")
        return 0
    if fmt != "table":
        raise InvalidArgument(f"invalid format option: {fmt}")
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    rows += [
        [s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"] or "root"] for s in states
    ]
    sys.stdout.write(_tabwrite(rows))
    return 0


def _tabwrite(rows: list[list[str]]) -> str:
    """Go's tabwriter as runc configures it: minimum cell width 12, padding 3."""
    widths = [max(12, *(len(row[i]) + 3 for row in rows)) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return "\n".join(out) + "\n"


def cmd_update(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime import lifecycle
    from ketch.runtime.process_spec import resources_from_flags

    st = ContainerState.load(root, _id("update", args))
    resources: dict[str, Any] = {}
    if opts.get("resources"):
        path = opts["resources"]
        try:
            if path == "-":
                raw = sys.stdin.buffer.read()
            else:
                with open(path, "rb") as f:
                    raw = f.read()
            resources = fastjson.loads(raw)
        except OSError as exc:
            raise InvalidArgument(f"read resources {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise InvalidArgument(f"resources {path}: invalid JSON: {exc}") from None
        if not isinstance(resources, dict):
            raise InvalidArgument(f"resources {path}: must be a JSON object")
    for key, value in resources_from_flags(opts).items():
        resources.setdefault(key, {}).update(value)
    lifecycle.update(st, resources)
    return 0


def cmd_spec(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.spec.oci_runtime import default_spec

    bundle = opts.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise InvalidArgument("File config.json exists. Remove it first")
    spec = default_spec(rootless=bool(opts.get("rootless")), uid=os.geteuid(), gid=os.getegid())
    with open(path, "w") as f:
        f.write(fastjson.dumps(spec, indent=2) + "\n")
    return 0


def cmd_features(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    from ketch.runtime.features import features

    sys.stdout.write(fastjson.dumps(features(), indent=4) + "\n")
    return 0


def cmd_events(
    *, root: str, opts: dict[str, Any], args: list[str], gopts: dict[str, Any], logger: Logger
) -> int:
    import time

    from ketch.runtime import lifecycle

    st = ContainerState.load(root, _id("events", args))
    manager = lifecycle.manager_for(st)
    from ketch.runtime.process_spec import parse_duration

    interval = parse_duration(opts.get("interval", "5s"))
    if opts.get("stats"):
        sys.stdout.write(fastjson.dumps({"type": "stats", "id": st.id, "data": manager.stats()}) + "\n")
        return 0
    last_oom = manager.oom_kill_count()
    while st.status() != "stopped":
        sys.stdout.write(fastjson.dumps({"type": "stats", "id": st.id, "data": manager.stats()}) + "\n")
        oom = manager.oom_kill_count()
        if oom > last_oom:
            sys.stdout.write(fastjson.dumps({"type": "oom", "id": st.id}) + "\n")
            last_oom = oom
        sys.stdout.flush()
        time.sleep(interval)
    return 0

"""Start ketchd when nothing answers at the socket, so ``ketch run ...`` works on a fresh machine.

Only for the default socket or a unix socket whose directory belongs to the user; never for a TCP host
(another machine's daemon is not ours to start). The daemon runs detached in its own session with its
output in ``<exec-root>/ketchd.log``; we wait up to 10 s for ``/_ping`` and otherwise show the log's tail.
"""

from __future__ import annotations

import os
import sys
import time

from ketch.client.http import Connection, DaemonUnreachable
from ketch.common.errors import Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Sequence

__all__ = ["DEFAULT_DATA_ROOT", "DEFAULT_EXEC_ROOT", "daemon_command", "ensure_daemon", "may_autostart"]

DEFAULT_DATA_ROOT = "/var/lib/ketch"
DEFAULT_EXEC_ROOT = "/run/ketch"
WAIT_SECONDS = 10.0
LOG_TAIL_LINES = 20
# Daemons started by this process: kept referenced so the Popen objects are never collected while they run.
_STARTED: list[subprocess.Popen[bytes]] = []


def may_autostart(conn: Connection, *, default: bool) -> bool:
    """The default host, or a unix socket in a directory the user owns; never TCP."""
    if conn.kind != "unix":
        return False
    if default:
        return True
    directory = os.path.dirname(conn.address)
    try:
        return os.stat(directory).st_uid == os.geteuid()
    except OSError:
        return False


def daemon_command() -> list[str]:
    """``$KETCH_DAEMON`` (split like a shell would), else ``ketchd`` beside this interpreter or on PATH."""
    override = os.environ.get("KETCH_DAEMON")
    if override:
        import shlex

        return shlex.split(override)
    beside = os.path.join(os.path.dirname(sys.executable), "ketchd")
    if os.access(beside, os.X_OK):
        return [beside]
    import shutil

    found = shutil.which("ketchd")
    return [found] if found else [sys.executable, "-m", "ketch.daemon"]


def _answers(conn: Connection) -> bool:
    try:
        response = conn.ping()
    except DaemonUnreachable:
        return False
    if response.status != 200:
        return False
    conn.adopt(response)
    return True


def ensure_daemon(
    conn: Connection,
    *,
    default: bool,
    command: Sequence[str] | None = None,
    data_root: str | None = None,
    exec_root: str | None = None,
    wait: float = WAIT_SECONDS,
) -> bool:
    """Make sure a daemon answers at ``conn``; returns True when this call started one.

    Raises :class:`DaemonUnreachable` when nothing answers and autostart does not apply, and
    :class:`Unavailable` with the log's tail when the started daemon does not answer within ``wait`` seconds.
    """
    try:
        conn.adopt(conn.ping())
        return False
    except DaemonUnreachable:
        if not may_autostart(conn, default=default):
            raise
    exec_root = exec_root or os.environ.get("KETCH_EXEC_ROOT") or DEFAULT_EXEC_ROOT
    data_root = data_root or os.environ.get("KETCH_DATA_ROOT") or DEFAULT_DATA_ROOT
    argv = [
        *(command or daemon_command()),
        "--data-root", data_root,
        "--exec-root", exec_root,
        "--pidfile", os.path.join(exec_root, "ketchd.pid"),
        "-H", conn.host,
    ]  # fmt: skip
    log_path = os.path.join(exec_root, "ketchd.log")
    process = _spawn(argv, exec_root, log_path)
    deadline = time.monotonic() + wait
    delay = 0.01
    while time.monotonic() < deadline:
        if _answers(conn):
            return True
        code = process.poll()
        if code is not None:
            if _answers(conn):  # it lost a race with another ketchd, which now serves the socket
                return True
            raise Unavailable(
                f"ketchd exited with status {code} before answering at {conn.host}{_tail(log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise Unavailable(f"ketchd did not answer at {conn.host} within {wait:g} s{_tail(log_path)}")


def _spawn(argv: list[str], exec_root: str, log_path: str) -> subprocess.Popen[bytes]:
    import subprocess

    try:
        os.makedirs(exec_root, mode=0o711, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed right after
    except OSError as exc:
        raise Unavailable(
            f"cannot start ketchd: {exc.strerror or exc}: {exc.filename or exec_root} "
            "(start ketchd as root, or point -H/KETCH_HOST at a socket you may create)"
        ) from None
    try:
        with log, open(os.devnull, "rb") as devnull:
            process = subprocess.Popen(
                argv, stdin=devnull, stdout=log, stderr=log, start_new_session=True, close_fds=True
            )
    except OSError as exc:
        raise Unavailable(f"cannot start ketchd ({argv[0]}): {exc.strerror or exc}") from None
    _STARTED.append(process)
    return process


def _tail(log_path: str) -> str:
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            lines = fh.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return ""
    if not lines:
        return f" (its log {log_path} is empty)"
    return f"; the end of {log_path}:\n" + "\n".join(lines)

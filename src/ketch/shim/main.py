"""``python -m ketch.shim``: a fresh interpreter that detaches a monitor and prints its pids.

This is design (a) of docs/shim.md, kept for comparison and for starting a monitor by hand; the engine forks
monitors from a pre-imported process with :func:`ketch.shim.spawn.spawn_monitor`.
"""

from __future__ import annotations

import sys

from ketch.common.errors import KetchError
from ketch.shim.monitor import MonitorConfig
from ketch.shim.spawn import spawn_monitor


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="ketch-shim", description=__doc__)
    parser.add_argument("--runtime", default="ketch-runtime")
    parser.add_argument("--root", default="", help="the runtime's --root")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--state-dir", required=True, help="where shim.sock and exit.json live")
    parser.add_argument("--log", default="", help="json-file log path (none when empty)")
    parser.add_argument("--log-max-size", type=int, default=0)
    parser.add_argument("--log-max-file", type=int, default=1)
    parser.add_argument("--stdin", action="store_true", help="keep the container's stdin open for attach")
    parser.add_argument("--cleanup", action="store_true", help="delete the container once it exits")
    parser.add_argument("--tty", action="store_true", help="the bundle's process.terminal is true")
    parser.add_argument("--stdin-once", action="store_true", help="the first attach's end of stdin closes it")
    parser.add_argument("--deferred-start", action="store_true", help="create only; start on the start op")
    parser.add_argument("id")
    args = parser.parse_args(argv)
    config = MonitorConfig(
        container_id=args.id,
        bundle=args.bundle,
        state_dir=args.state_dir,
        runtime=args.runtime,
        runtime_root=args.root,
        log_path=args.log,
        log_max_size=args.log_max_size,
        log_max_file=args.log_max_file,
        open_stdin=args.stdin,
        cleanup=args.cleanup,
        tty=args.tty,
        stdin_once=args.stdin_once,
        deferred_start=args.deferred_start,
    )
    try:
        spawned = spawn_monitor(config)
    except KetchError as exc:
        print(f"ketch-shim: {exc}", file=sys.stderr)
        return 1
    print(spawned.monitor_pid, spawned.container_pid)
    return 0

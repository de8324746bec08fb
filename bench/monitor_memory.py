"""Benchmark: memory of idle monitors and the time to spawn them through the fork server.

Starts the fork server, then N monitors (default 20), each supervising a busybox ``sleep 1000`` run by
ketch-runtime with a json-file log; one second after the last start reads PSS/RSS/Private_Dirty from
/proc/PID/smaps_rollup. Spawns are timed one at a time (spawn + create + start), then a second batch is
started all at once from threads to see that starts do not queue behind each other. Needs root.

    python bench/monitor_memory.py [--count N] [--runtime ketch-runtime]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.fakes import busybox  # noqa: E402

from ketch.shim.client import ShimClient  # noqa: E402
from ketch.shim.forkserver import start_forkserver  # noqa: E402
from ketch.shim.monitor import MonitorConfig  # noqa: E402

MIB = 1024 * 1024


def rollup(pid: int) -> dict[str, int]:
    """smaps_rollup's fields in bytes."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def runtime_binary(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name) or name


def make_configs(base: Path, rootfs: str, runtime: str, prefix: str, count: int) -> list[MonitorConfig]:
    configs = []
    for n in range(count):
        cid = f"{prefix}{n}-{os.getpid()}"
        bundle = base / cid / "b"
        busybox.make_bundle(str(bundle), ["sleep", "1000"], rootfs_from=rootfs)
        configs.append(
            MonitorConfig(
                container_id=cid,
                bundle=str(bundle),
                state_dir=str(base / cid / "s"),
                runtime=runtime,
                runtime_root=str(base / "root"),
                log_path=str(base / cid / f"{cid}-json.log"),
            )
        )
    return configs


def stop_all(configs: list[MonitorConfig], runtime: str, root: str) -> None:
    for config in configs:
        try:
            ShimClient(config.state_dir, timeout=10).signal(signal.SIGKILL)
        except Exception:
            pass
    for config in configs:
        try:
            ShimClient(config.state_dir, timeout=10).wait()
        except Exception:
            pass
        subprocess.run(
            [runtime, "--root", root, "delete", "--force", config.container_id], capture_output=True
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--runtime", default="ketch-runtime")
    args = parser.parse_args()
    runtime = runtime_binary(args.runtime)
    base = Path(tempfile.mkdtemp(prefix="kmm-"))
    rootfs = busybox.make_rootfs(str(base / "rootfs"))
    server = start_forkserver(str(base / "fork.sock"))
    client = server.client()
    serial = make_configs(base, rootfs, runtime, "s", args.count)
    parallel = make_configs(base, rootfs, runtime, "p", args.count)
    started: list[MonitorConfig] = []
    try:
        times, pids = [], []
        for config in serial:
            t0 = time.perf_counter()
            spawned = client.spawn(config)
            times.append((time.perf_counter() - t0) * 1000)
            started.append(config)
            pids.append(spawned.monitor_pid)
        time.sleep(1.0)
        stats = [rollup(pid) for pid in pids]
        server_stats = rollup(server.pid)

        def timed(config: MonitorConfig) -> float:
            t0 = time.perf_counter()
            client.spawn(config)
            return (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(parallel)) as pool:
            parallel_times = list(pool.map(timed, parallel))
        wall = (time.perf_counter() - t0) * 1000
        started += parallel
    finally:
        stop_all(started, runtime, str(base / "root"))
        server.stop()
        shutil.rmtree(base, ignore_errors=True)

    def col(key: str) -> str:
        values = [s[key] / MIB for s in stats]
        return f"{statistics.mean(values):.2f} MiB (min {min(values):.2f}, max {max(values):.2f})"

    rows = [
        ("monitors", str(len(stats))),
        ("PSS per monitor (mean)", col("Pss")),
        ("RSS per monitor (mean)", col("Rss")),
        ("Private_Dirty per monitor (mean)", col("Private_Dirty")),
        ("fork server PSS / RSS", f"{server_stats['Pss'] / MIB:.2f} / {server_stats['Rss'] / MIB:.2f} MiB"),
        (
            "spawn+create+start, one at a time",
            f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms",
        ),
        (
            f"{len(parallel)} spawns at once",
            f"wall {wall:.0f} ms; each median {statistics.median(parallel_times):.0f} ms, "
            f"max {max(parallel_times):.0f} ms",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

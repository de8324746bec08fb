"""Benchmark: ketchd's networking beside Debian's dockerd, both started here with the same busybox image.

dockerd runs as the interop tests run it (tests/interop/daemons.py: ``--bridge=none --iptables=false
--ip-forward=false``): no default bridge and no iptables rules, but ``docker network create`` still makes a
Linux bridge per user network, and containers on one bridge reach each other without NAT or forwarding.
ketchd runs with its own bridge and nftables table names (derived from its exec root). Measured through
Debian's docker CLI against each daemon, interleaved round by round so that both see the same machine:

(a) container-to-container TCP throughput on a user network: a server container
    ``sleep | nc -l -p 5001 | wc -c`` and a client container that sends ``--mib`` MiB from /dev/zero with
    busybox ``dd | nc``, timed inside the client with busybox ``time`` (container start-up is not counted);
    the server's byte count is checked. busybox nc copies 1 KiB per read and write, so this measures the
    per-packet cost of the path (veth, bridge, netfilter hooks) more than a link's bandwidth. A control runs
    beside each transfer: the same one over ``lo`` inside a single ``--network none`` container, which shows
    how busy the machine was (the rounds are short and the machine may be shared).
(b) ``network create``, then ``run -d --network NET IMAGE sleep`` (start with the attach), with
    ``run -d --network none`` beside it as the baseline without networking; ``network connect`` of a running
    container to a second network; ``rm -f`` of a container on a user network (detach).

Traffic goes only between containers on the daemons' own bridges. Prints medians and ratios
(ketch / docker; lower is better for times, higher for throughput), writes bench/results/network.json.
Needs root.

    python bench/network.py [--rounds 10] [--throughput-rounds 3] [--mib 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.fakes import busybox  # noqa: E402
from tests.interop import daemons  # noqa: E402
from tests.interop.ketchd import Ketchd  # noqa: E402

IMAGE = "busybox:bench"
DOCKER = "/usr/bin/docker"
PORT = 5001


class Daemon:
    """One daemon driven through the docker CLI."""

    def __init__(self, label: str, env: dict[str, str]) -> None:
        self.label = label
        self.env = env
        self.counter = 0

    def docker(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"{self.label}: docker {' '.join(args)} exited {done.returncode}: {done.stderr}"
            )
        return done.stdout

    def timed(self, *args: str) -> tuple[float, str]:
        start = time.perf_counter()
        out = self.docker(*args)
        return time.perf_counter() - start, out.strip()

    def name(self, kind: str) -> str:
        self.counter += 1
        return f"bn-{kind}{self.counter}"

    def ip_on(self, container: str, network: str) -> str:
        return self.docker(
            "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}', container
        ).strip()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ---- (a) throughput -------------------------------------------------------------------------------------------


def _seconds(stderr: str, what: str) -> float:
    found = re.search(r"real\s+(\d+)m\s*([\d.]+)s", stderr)
    if not found:
        raise RuntimeError(f"{what}: no time in {stderr!r}")
    return int(found.group(1)) * 60 + float(found.group(2))


def throughput(d: Daemon, network: str, mib: int) -> float:
    """MB/s (10^6 bytes) of one ``dd | nc`` transfer of ``mib`` MiB between two containers on ``network``."""
    server = d.name("srv")
    d.docker("run", "-d", "--name", server, "--network", network, IMAGE, "sh", "-c",
             f"sleep 100000 | nc -l -p {PORT} | wc -c")  # fmt: skip
    try:
        ip = d.ip_on(server, network)

        def listening() -> bool:
            try:
                return f":{PORT} " in d.docker("exec", server, "netstat", "-ltn")
            except RuntimeError:
                return False

        wait_for(listening, f"{d.label}: nc listening in {server}")
        script = f"time sh -c 'dd if=/dev/zero bs=1M count={mib} 2>/dev/null | nc {ip} {PORT}'"
        done = subprocess.run([DOCKER, "run", "--rm", "--network", network, IMAGE, "sh", "-c", script],
                              env=d.env, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{d.label}: client exited {done.returncode}: {done.stderr}")
        seconds = _seconds(done.stderr, f"{d.label}: client")
        received: list[str] = []

        def counted() -> bool:
            received[:] = d.docker("logs", server).split()
            return bool(received)

        wait_for(counted, f"{d.label}: the byte count of {server}")
        if int(received[0]) != mib * 2**20:
            raise RuntimeError(f"{d.label}: the server received {received[0]} bytes, not {mib * 2**20}")
        return mib * 2**20 / seconds / 1e6
    finally:
        d.docker("rm", "-f", server)


def loopback(d: Daemon, mib: int) -> float:
    """The control: the same transfer over ``lo`` inside one container (``--network none``): what busybox's
    dd, nc and wc cost on this machine at this moment, without veths, bridge or netfilter."""
    script = (f"sleep 100000 | nc -l -p {PORT} >/dev/null & sleep 0.3; "
              f"time sh -c 'dd if=/dev/zero bs=1M count={mib} 2>/dev/null | nc 127.0.0.1 {PORT}'")  # fmt: skip
    done = subprocess.run([DOCKER, "run", "--rm", "--network", "none", IMAGE, "sh", "-c", script], env=d.env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{d.label}: loopback transfer exited {done.returncode}: {done.stderr}")
    return mib * 2**20 / _seconds(done.stderr, f"{d.label}: loopback") / 1e6


# ---- (b) attach -------------------------------------------------------------------------------------------------


def attach_round(d: Daemon, out: dict[str, list[float]]) -> None:
    net, other = d.name("net"), d.name("other")
    made: list[str] = []
    try:
        t, _ = d.timed("network", "create", net)
        out["network create"].append(t)
        t, cid = d.timed("run", "-d", "--network", net, IMAGE, "sleep", "1000")
        made.append(cid)
        out["run -d --network NET"].append(t)
        t, cid = d.timed("run", "-d", "--network", "none", IMAGE, "sleep", "1000")
        made.append(cid)
        out["run -d --network none"].append(t)
        d.docker("network", "create", other)
        t, _ = d.timed("network", "connect", other, made[0])
        out["network connect (running)"].append(t)
        t, _ = d.timed("rm", "-f", made[0])
        made.pop(0)
        out["rm -f (on 2 networks)"].append(t)
    finally:
        if made:
            d.docker("rm", "-f", *made)
        d.docker("network", "rm", net, other)


# ---- main ---------------------------------------------------------------------------------------------------


def runtime_bin() -> str:
    candidate = Path(sys.executable).parent / "ketch-runtime"
    return str(candidate) if candidate.exists() else "/bin/false"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the attach timings")
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=1024, help="MiB per throughput transfer")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="kbn-"))
    rootfs = Path(busybox.make_rootfs(str(work / "rootfs")))
    tar = daemons.make_rootfs_tar(rootfs, work / "rootfs.tar")
    dockerd = daemons.Dockerd(work / "docker", runtime_bin())
    ketchd = Ketchd(work / "ketch", log_level="info")  # as dockerd runs: no line per request
    speeds: dict[str, list[float]] = {"dockerd": [], "ketchd": []}
    control: dict[str, list[float]] = {"dockerd": [], "ketchd": []}
    times: dict[str, dict[str, list[float]]] = {}
    try:
        dockerd.start()
        ketchd.start()
        both = [Daemon("dockerd", dict(dockerd.env)), Daemon("ketchd", dict(ketchd.env))]
        for d in both:
            d.docker("import", str(tar), IMAGE)
            d.docker("network", "create", "bn-tput")
            d.docker("run", "--rm", "--network", "bn-tput", IMAGE, "true")  # warm: cgroups, page cache
            times[d.label] = {k: [] for k in ("network create", "run -d --network NET", "run -d --network none",
                                              "network connect (running)", "rm -f (on 2 networks)")}  # fmt: skip
        for n in range(args.throughput_rounds):
            for d in both if n % 2 == 0 else both[::-1]:
                speeds[d.label].append(throughput(d, "bn-tput", args.mib))
                control[d.label].append(loopback(d, args.mib))
                print(f"throughput round {n + 1} {d.label}: {speeds[d.label][-1]:.0f} MB/s "
                      f"(loopback in one container: {control[d.label][-1]:.0f} MB/s)", flush=True)  # fmt: skip
        for n in range(args.rounds):
            for d in both if n % 2 == 0 else both[::-1]:
                attach_round(d, times[d.label])
        for d in both:
            d.docker("network", "rm", "bn-tput")
    finally:
        ketchd.cleanup()
        dockerd.stop()
        shutil.rmtree(work, ignore_errors=True)

    table: dict[str, dict[str, Any]] = {}
    for label, cases in times.items():
        for case, values in cases.items():
            table[f"{case} ({label})"] = {"median_ms": round(statistics.median(values) * 1000, 1),
                                          "runs": len(values)}  # fmt: skip
    for label, values in speeds.items():
        table[f"throughput MB/s ({label})"] = {"median": round(statistics.median(values)),
                                               "rounds": [round(v) for v in values]}  # fmt: skip
        table[f"control: loopback MB/s ({label})"] = {"median": round(statistics.median(control[label])),
                                                      "rounds": [round(v) for v in control[label]]}  # fmt: skip

    def ratio(case: str, key: str = "median_ms") -> float:
        return round(float(table[f"{case} (ketchd)"][key]) / float(table[f"{case} (dockerd)"][key]), 2)

    ratios = {case: ratio(case) for case in times["ketchd"]}
    ratios["network create + run -d --network NET"] = round(
        sum(table[f"{c} (ketchd)"]["median_ms"] for c in ("network create", "run -d --network NET"))
        / sum(table[f"{c} (dockerd)"]["median_ms"] for c in ("network create", "run -d --network NET")),
        2,
    )
    ratios["throughput (higher is better)"] = ratio("throughput MB/s", "median")
    attach = {
        label: round(table[f"run -d --network NET ({label})"]["median_ms"]
                     - table[f"run -d --network none ({label})"]["median_ms"], 1)
        for label in ("dockerd", "ketchd")
    }  # fmt: skip
    print(f"\n{'case':44} {'median':>10}")
    for name, row in table.items():
        print(f"{name:44} {row.get('median_ms', row.get('median')):>10}")
    print("\nrun -d on a user network minus run -d --network none (ms):", json.dumps(attach))
    print("\nratios ketch/docker:")
    for name, value in ratios.items():
        print(f"  {name:42} {value}")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "network.json").write_text(json.dumps(
        {"table": table, "ratios": ratios, "network_cost_of_run_ms": attach, "rounds": args.rounds,
         "throughput_rounds": args.throughput_rounds, "mib": args.mib}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: ketchd beside Debian's dockerd, both started here on their own sockets with the same busybox image.

Measured, interleaved round by round so that both daemons see the same machine:

- ``run --rm --network none IMAGE true`` through Debian's docker CLI against each daemon, and through
  ``ketch`` (the ketch CLI) against ketchd;
- ``run -d`` + ``exec true`` + ``stop -t 1`` (then ``rm``), through the docker CLI against each;
- ``/_ping`` and ``/containers/json`` round trips (one request per new connection, as the CLIs do, and on
  one kept-alive connection);
- memory of the per-container monitor with 20 idle containers: PSS and RSS from /proc/PID/smaps_rollup of
  ketch's monitors and of dockerd's containerd-shim-runc-v2 processes.

Prints medians and ratios (ketch / docker; lower is better), writes bench/results/engine.json. Needs root.

    python bench/engine.py [--rounds 20] [--idle 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.fakes import busybox  # noqa: E402
from tests.interop import daemons  # noqa: E402
from tests.interop.ketchd import Ketchd  # noqa: E402

IMAGE = "busybox:bench"
DOCKER = "/usr/bin/docker"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )


def http_roundtrip(sock_path: str, path: str, *, keep: socket.socket | None = None) -> float:
    request = f"GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n".encode()
    start = time.perf_counter()
    sock = keep or socket.socket(socket.AF_UNIX)
    if keep is None:
        sock.connect(sock_path)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)  # fmt: skip
    if length is not None:
        while len(body) < length:
            body += sock.recv(65536)
    else:  # chunked: read to the last chunk
        while not body.endswith(b"0\r\n\r\n"):
            body += sock.recv(65536)
    elapsed = time.perf_counter() - start
    if keep is None:
        sock.close()
    return elapsed


def smaps(pid: int) -> tuple[float, float]:
    pss = rss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    return pss / 1024, rss / 1024


def shim_pids(container_pids: list[int]) -> list[int]:
    """containerd-shim-runc-v2 processes that are parents of the given container inits."""
    out = set()
    for pid in container_pids:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{ppid}/comm") as f:
            if f.read().strip().startswith("containerd-shim"):
                out.add(ppid)
    return sorted(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--idle", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="kb-"))
    rootfs = Path(busybox.make_rootfs(str(work / "rootfs")))
    tar = daemons.make_rootfs_tar(rootfs, work / "rootfs.tar")
    dockerd = daemons.Dockerd(work / "docker", "/bin/false")
    ketchd = Ketchd(work / "ketch", log_level="info")  # as dockerd runs: no line per request
    ketch_cli = str(Path(sys.executable).parent / "ketch")
    results: dict[str, list[float]] = {}
    memory: dict[str, dict[str, float]] = {}
    try:
        dockerd.start()
        ketchd.start()
        denv = dict(dockerd.env)
        kenv = dict(ketchd.env)
        run([DOCKER, "import", str(tar), IMAGE], denv)
        run([DOCKER, "import", str(tar), IMAGE], kenv)
        for env in (denv, kenv):  # warm both (first container pays for cgroup creation and page cache)
            run([DOCKER, "run", "--rm", "--network", "none", IMAGE, "true"], env)
        cases: dict[str, Callable[[], object]] = {
            "run --rm (docker CLI -> dockerd)": lambda: run(
                [DOCKER, "run", "--rm", "--network", "none", IMAGE, "true"], denv),
            "run --rm (docker CLI -> ketchd)": lambda: run(
                [DOCKER, "run", "--rm", "--network", "none", IMAGE, "true"], kenv),
            "run --rm (ketch CLI -> ketchd)": lambda: run(
                [ketch_cli, "run", "--rm", "--network", "none", IMAGE, "true"], kenv),
        }  # fmt: skip

        def lifecycle(env: dict[str, str]) -> None:
            out = subprocess.run([DOCKER, "run", "-d", "--network", "none", IMAGE, "sleep", "100"], env=env,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            cid = out.stdout.strip()
            run([DOCKER, "exec", cid, "true"], env)
            run([DOCKER, "stop", "-t", "1", cid], env)
            run([DOCKER, "rm", cid], env)

        cases["run -d + exec + stop -t 1 (dockerd)"] = lambda: lifecycle(denv)
        cases["run -d + exec + stop -t 1 (ketchd)"] = lambda: lifecycle(kenv)
        errors: dict[str, str] = {}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                if name in errors:
                    continue
                try:
                    results.setdefault(name, []).append(timed(fn))
                except Exception as exc:
                    errors[name] = str(exc).splitlines()[0][:200]
        for label, sock in (("dockerd", str(dockerd.sock)), ("ketchd", str(ketchd.socket))):
            for path in ("/_ping", "/v1.41/containers/json?all=1"):
                results[f"GET {path.split('?')[0]} new connection ({label})"] = [
                    http_roundtrip(sock, path) for _ in range(200)]  # fmt: skip
                with socket.socket(socket.AF_UNIX) as keep:
                    keep.connect(sock)
                    results[f"GET {path.split('?')[0]} keep-alive ({label})"] = [
                        http_roundtrip(sock, path, keep=keep) for _ in range(200)]  # fmt: skip
        # monitors of idle containers
        for label, env in (("dockerd", denv), ("ketchd", kenv)):
            ids = []
            for _ in range(args.idle):
                out = subprocess.run([DOCKER, "run", "-d", "--network", "none", IMAGE, "sleep", "1000"], env=env,
                                     capture_output=True, text=True, check=True)  # fmt: skip
                ids.append(out.stdout.strip())
            time.sleep(1.0)
            if label == "ketchd":
                monitors = ketchd.monitor_pids()
            else:
                pids = [int(p) for p in subprocess.run(
                    [DOCKER, "inspect", "-f", "{{.State.Pid}}", *ids], env=env, capture_output=True, text=True,
                    check=True).stdout.split()]  # fmt: skip
                monitors = shim_pids(pids)
            sizes = [smaps(pid) for pid in monitors]
            memory[label] = {
                "monitors": len(monitors),
                "pss_mib_per_container": round(sum(s[0] for s in sizes) / len(ids), 2),
                "rss_mib_per_monitor": round(statistics.median(s[1] for s in sizes), 2) if sizes else 0,
            }
            run([DOCKER, "rm", "-f", *ids], env)
    finally:
        ketchd.cleanup()
        dockerd.stop()
        shutil.rmtree(work, ignore_errors=True)

    table = {
        name: {"median_ms": round(statistics.median(v) * 1000, 2), "runs": len(v)}
        for name, v in results.items()
    }

    def ratio(ketch_name: str, docker_name: str) -> float | None:
        if ketch_name in table and docker_name in table:
            return round(table[ketch_name]["median_ms"] / table[docker_name]["median_ms"], 2)
        return None

    ratios = {
        "run --rm, docker CLI": ratio("run --rm (docker CLI -> ketchd)", "run --rm (docker CLI -> dockerd)"),
        "run --rm, ketch CLI vs docker CLI->dockerd": ratio("run --rm (ketch CLI -> ketchd)",
                                                            "run --rm (docker CLI -> dockerd)"),
        "run -d + exec + stop": ratio("run -d + exec + stop -t 1 (ketchd)", "run -d + exec + stop -t 1 (dockerd)"),
    }  # fmt: skip
    for kind in ("new connection", "keep-alive"):
        for path in ("/_ping", "/v1.41/containers/json"):
            ratios[f"GET {path} {kind}"] = ratio(
                f"GET {path} {kind} (ketchd)", f"GET {path} {kind} (dockerd)"
            )
    if "ketchd" in memory and "dockerd" in memory and memory["dockerd"]["pss_mib_per_container"]:
        ratios["monitor PSS per container"] = round(
            memory["ketchd"]["pss_mib_per_container"] / memory["dockerd"]["pss_mib_per_container"], 2
        )
    print(f"{'case':48} {'median ms':>10}")
    for name, row in table.items():
        print(f"{name:48} {row['median_ms']:>10.2f}")
    print("\nmonitor memory with", args.idle, "idle containers:", json.dumps(memory))
    print("\nratios ketch/docker (lower is better):")
    for name, value in ratios.items():
        print(f"  {name:44} {value}")
    if errors:
        print("\nerrors:", json.dumps(errors, indent=1))
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "engine.json").write_text(
        json.dumps(
            {"table": table, "memory": memory, "ratios": ratios, "errors": errors, "rounds": args.rounds},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

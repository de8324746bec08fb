"""Benchmark: `RUNTIME run` of /bin/true on a busybox bundle, ketch-runtime beside runc and crun.

Runs are interleaved (ketch, runc, crun, ketch, ...) so that drift in the machine's load hits every
runtime alike. Prints the median, p10/p90 and the ratio to runc's median; writes JSON to
bench/results/runtime_start.json. Needs root.

    python bench/runtime_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fakes import busybox  # noqa: E402


def ketch_binary() -> str:
    candidate = Path(sys.executable).parent / "ketch-runtime"
    binary = str(candidate) if candidate.exists() else shutil.which("ketch-runtime") or "ketch-runtime"
    with open(binary, "rb") as f:
        if not f.readline().rstrip().endswith(b" -IS"):
            print(
                f"warning: {binary} is pip's launcher, not the lean one: run `make venv` first",
                file=sys.stderr,
            )
    return binary


def measure(cmd: list[str], cwd: str) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    return (time.perf_counter() - start) * 1000, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ketch-bench-"))
    try:
        bundle = work / "bundle"
        busybox.make_bundle(str(bundle), ["/bin/true"])
        rootfs = str(bundle / "rootfs")
        runtimes = {"ketch-runtime": [ketch_binary()], "runc": ["runc"], "crun": ["crun"]}
        samples: dict[str, list[float]] = {name: [] for name in runtimes}
        errors: dict[str, str] = {}
        for name, base in list(runtimes.items()):
            if not shutil.which(base[0]):
                errors[name] = "not installed"
                del runtimes[name]
                continue
            probe = subprocess.run(
                [*base, "--root", str(work / f"root-{name}"), "run", "probe"],
                cwd=bundle,
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode != 0:
                errors[name] = (probe.stderr.strip().splitlines() or ["failed"])[-1]
                del runtimes[name]
        # a bare unshare + chroot as the floor
        runtimes["unshare+chroot"] = []
        samples["unshare+chroot"] = []
        for i in range(args.runs):
            for name, base in runtimes.items():
                if name == "unshare+chroot":
                    cmd = [
                        "unshare",
                        "--mount",
                        "--pid",
                        "--fork",
                        "--uts",
                        "--ipc",
                        "--net",
                        "chroot",
                        rootfs,
                        "/bin/true",
                    ]
                else:
                    cmd = [*base, "--root", str(work / f"root-{name}"), "run", f"bench{i}"]
                elapsed, code = measure(cmd, str(bundle))
                if code != 0:
                    errors[name] = f"exit {code} on run {i}"
                samples[name].append(elapsed)
        results = {}
        runc_median = statistics.median(samples["runc"]) if samples.get("runc") else None
        print(f"{'runtime':16} {'median ms':>10} {'p10':>8} {'p90':>8} {'x runc':>8}")
        for name, values in samples.items():
            if not values:
                continue
            values.sort()
            median = statistics.median(values)
            p10 = values[len(values) // 10]
            p90 = values[(len(values) * 9) // 10]
            ratio = median / runc_median if runc_median else None
            results[name] = {
                "median_ms": round(median, 2),
                "p10_ms": round(p10, 2),
                "p90_ms": round(p90, 2),
                "runs": len(values),
                "ratio_to_runc": round(ratio, 3) if ratio else None,
            }
            print(f"{name:16} {median:10.1f} {p10:8.1f} {p90:8.1f} {ratio if ratio else float('nan'):8.2f}")
        for name, error in errors.items():
            print(f"{name}: {error}")
        out = REPO / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "runtime_start.json").write_text(json.dumps({"results": results, "errors": errors}, indent=2))
        return 0
    finally:
        for name in ("ketch-runtime", "runc", "crun"):
            root = work / f"root-{name}"
            if root.exists():
                for cid in os.listdir(root):
                    subprocess.run(
                        [
                            name if name != "ketch-runtime" else ketch_binary(),
                            "--root",
                            str(root),
                            "delete",
                            "--force",
                            cid,
                        ],
                        capture_output=True,
                        check=False,
                    )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

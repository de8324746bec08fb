"""Benchmark: pull of a ~200 MB, 5-layer image from a local registry, ketch beside `docker pull` and
`skopeo copy`, in the same run.

A private Debian `docker-registry` serves on 127.0.0.1 from a temporary directory; the image (five gzip
layers of incompressible data, 40 MB each by default) is pushed there with skopeo. Each round pulls into a
fresh store:

- ketch:           ImageService.pull (download, verify, unpack into snapshots, record the image)
- ketch download:  RegistryClient.pull into a content store only (no unpacking)
- docker pull:     Debian's dockerd (private data-root and socket), which downloads and extracts
- skopeo copy:     docker://... to an OCI layout directory (download only, no extraction)

Prints median seconds and MB/s (compressed bytes over wall time) and ratios to docker; writes
bench/results/image_pull.json. Needs root for ketch's overlay snapshots and dockerd.

    python bench/image_pull.py [--layers 5] [--layer-mb 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.integration.image.registry import Registry, skopeo, write_blob, write_policy  # noqa: E402
from tests.unit.image.layers import sha256  # noqa: E402


def make_big_layout(layout: Path, layers: int, layer_mb: int) -> int:
    """An OCI layout of ``layers`` gzip layers, each a few files of random bytes; returns the compressed size."""
    descriptors, diff_ids, total = [], [], 0
    for n in range(layers):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(f"layer{n}")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
            for f in range(4):
                data = os.urandom(layer_mb * 1024 * 1024 // 4)
                info = tarfile.TarInfo(f"layer{n}/blob{f}.bin")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        tar_bytes = raw.getvalue()
        blob = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
        total += len(blob)
        descriptors.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **write_blob(layout, blob)}
        )
        diff_ids.append(sha256(tar_bytes))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "created": "2024-01-01T00:00:00Z",
              "history": [{"created_by": f"layer {n}"} for n in range(layers)]}  # fmt: skip
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **write_blob(layout, json.dumps(config).encode())}  # fmt: skip
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": descriptors}  # fmt: skip
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
           **write_blob(layout, json.dumps(manifest).encode()),
           "annotations": {"org.opencontainers.image.ref.name": "latest"}}  # fmt: skip
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return total


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--layer-mb", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from ketch.image.content import ContentStore
    from ketch.image.remote import RegistryClient
    from ketch.image.service import ImageService
    from ketch.spec.reference import parse

    work = Path(tempfile.mkdtemp(prefix="ketch-bench-pull-"))
    registry = Registry(work / "registry")
    dockerd = None
    try:
        registry.start()
        policy = write_policy(work / "policy.json")
        layout = work / "layout"
        size = make_big_layout(layout, args.layers, args.layer_mb)
        ref = f"{registry.address}/bench/big:latest"
        pushed = skopeo(
            "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{ref}", policy=policy
        )
        if pushed.returncode != 0:
            raise RuntimeError(pushed.stderr)

        results: dict[str, list[float]] = {
            "ketch": [],
            "ketch download": [],
            "docker pull": [],
            "skopeo copy": [],
        }
        errors: dict[str, str] = {}
        try:
            from tests.interop import daemons

            dockerd = daemons.Dockerd(work / "docker", "/bin/false")
            dockerd.start()
            docker = dockerd.client(daemons.DOCKER_CLI)
        except Exception as exc:  # dockerd missing or failing: report it, measure the rest
            errors["docker pull"] = str(exc).splitlines()[0]
            dockerd = None
        for round_no in range(args.rounds):
            root = work / f"ketch-{round_no}"
            results["ketch"].append(timed(lambda root=root: ImageService(str(root)).pull(ref)))
            shutil.rmtree(root, ignore_errors=True)
            store = ContentStore(str(work / f"dl-{round_no}"))
            results["ketch download"].append(
                timed(lambda store=store: RegistryClient().pull(parse(ref), store))
            )
            shutil.rmtree(work / f"dl-{round_no}", ignore_errors=True)
            if dockerd is not None:

                def docker_pull() -> None:
                    out = docker(None, "pull", "-q", ref, timeout=600)
                    if out.returncode != 0:
                        raise RuntimeError(out.stderr)

                results["docker pull"].append(timed(docker_pull))
                docker(None, "rmi", "-f", ref, timeout=120)
            dest = work / f"oci-{round_no}"
            results["skopeo copy"].append(
                timed(
                    lambda dest=dest: skopeo(
                        "copy",
                        "--src-tls-verify=false",
                        f"docker://{ref}",
                        f"oci:{dest}:latest",
                        policy=policy,
                    )
                )
            )
            shutil.rmtree(dest, ignore_errors=True)
        mb = size / 1e6
        docker_median = statistics.median(results["docker pull"]) if results["docker pull"] else None
        table = {}
        print(f"image: {args.layers} layers, {mb:.0f} MB compressed; {args.rounds} rounds")
        print(f"{'client':16} {'median s':>9} {'MB/s':>8} {'speed vs docker':>16}")
        for name, values in results.items():
            if not values:
                continue
            median = statistics.median(values)
            ratio = docker_median / median if docker_median else None
            table[name] = {
                "median_s": round(median, 3),
                "mb_per_s": round(mb / median, 1),
                "speed_ratio_to_docker": round(ratio, 2) if ratio else None,
                "runs": values,
            }
            print(f"{name:16} {median:9.2f} {mb / median:8.1f} {ratio if ratio else float('nan'):16.2f}")
        for name, error in errors.items():
            print(f"{name}: {error}")
        out = REPO / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "image_pull.json").write_text(
            json.dumps({"size_bytes": size, "results": table, "errors": errors}, indent=2)
        )
        return 0
    finally:
        if dockerd is not None:
            dockerd.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

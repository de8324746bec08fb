"""Images pushed into Debian's registry by skopeo and pulled by ketch unpack to the same tree that umoci
(from the OCI layout) and docker (pull + export) produce; ketch pushes them back and others accept them.

The images: a busybox rootfs (gzip), the same with a zstd layer, a two-platform index, and a five-layer
image with whiteouts, an opaque directory, hard links, symlinks, a fifo, a device node, setuid bits and
odd owners.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes import busybox
from tests.integration.image.registry import (
    Registry,
    host_arch,
    make_oci_layout,
    missing_tools,
    skopeo,
    write_blob,
    write_policy,
)
from tests.unit.image.layers import E, describe, gz, mounted, sha256, tar_bytes

from ketch.image.service import ImageService

pytestmark = [pytest.mark.root, pytest.mark.skipif(bool(missing_tools()), reason=str(missing_tools()))]

UMOCI = shutil.which("umoci")


LAYERS = [
    [E("etc", "dir"), E("etc/keep", data=b"keep"), E("etc/gone", data=b"gone"), E("opq", "dir"),
     E("opq/old", data=b"old"), E("bin", "dir"), E("bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
     E("data", "dir", mode=0o750, uid=1000, gid=1000), E("data/f", data=b"owned", uid=1000, gid=1000)],
    [E("etc/.wh.gone"), E("etc/added", data=b"added"), E("etc/link", "symlink", linkname="keep")],
    [E("opq", "dir"), E("opq/.wh..wh..opq"), E("opq/new", data=b"new")],
    [E("hl", "dir"), E("hl/a", data=b"linked"), E("hl/b", "hardlink", linkname="hl/a"),
     E("dev", "dir"), E("dev/fifo", "fifo"), E("dev/null2", "char", mode=0o666, dev=(1, 3))],
    [E("etc/keep", data=b"changed", mode=0o600), E("bin/.wh.tool"), E("sticky", "dir", mode=0o1777)],
]  # fmt: skip


def make_layered_layout(layout: Path, tag: str) -> None:
    descriptors, diff_ids = [], []
    for entries in LAYERS:
        raw = tar_bytes(entries)
        descriptors.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **write_blob(layout, gz(raw))}
        )
        diff_ids.append(sha256(raw))
    config = {"architecture": host_arch(), "os": "linux", "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "created": "2024-01-01T00:00:00Z",
              "history": [{"created_by": f"layer {n}"} for n in range(len(LAYERS))]}  # fmt: skip
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **write_blob(layout, json.dumps(config).encode())}  # fmt: skip
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": descriptors}  # fmt: skip
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
           **write_blob(layout, json.dumps(manifest).encode()),
           "annotations": {"org.opencontainers.image.ref.name": tag}}  # fmt: skip
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index_path = layout / "index.json"
    existing = json.loads(index_path.read_text())["manifests"] if index_path.exists() else []
    index_path.write_text(json.dumps({"schemaVersion": 2, "manifests": [*existing, top]}))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path, dict[str, str]]]:
    """A registry holding the test images; yields (registry, policy file, name -> reference)."""
    base = tmp_path_factory.mktemp("pull-compare")
    registry = Registry(base / "registry").start()
    try:
        policy = write_policy(base / "policy.json")
        rootfs = Path(busybox.make_rootfs(str(base / "rootfs")))
        layout = base / "layout"
        make_oci_layout(layout, rootfs, "plain")
        make_oci_layout(layout, rootfs, "multi", multi_arch=True)
        make_layered_layout(layout, "layered")
        refs = {}
        for tag in ("plain", "multi", "layered"):
            refs[tag] = f"{registry.address}/test/{tag}:v1"
            extra = ["--all"] if tag == "multi" else []
            out = skopeo("copy", *extra, "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{refs[tag]}",
                         policy=policy)  # fmt: skip
            assert out.returncode == 0, out.stderr
        refs["zstd"] = f"{registry.address}/test/zstd:v1"
        out = skopeo("copy", "--dest-tls-verify=false", "--dest-compress-format", "zstd", "--dest-compress",
                     f"oci:{layout}:plain", f"docker://{refs['zstd']}", policy=policy)  # fmt: skip
        assert out.returncode == 0, out.stderr
        yield registry, policy, refs
    finally:
        registry.stop()


def ketch_tree(service: ImageService, ref: str, where: Path) -> dict[str, tuple[object, ...]]:
    outcome = service.pull(ref)
    key = f"compare-{outcome.id[7:19]}-{where.name}"
    mounts = service.rootfs_mounts(outcome.id, key)
    try:
        with mounted(mounts, str(where)) as root:
            return describe(root)
    finally:
        service.snapshotter.remove(key)


def umoci_tree(ref: str, policy: Path, work: Path) -> dict[str, tuple[object, ...]]:
    work.mkdir(parents=True, exist_ok=True)
    layout = work / "oci"
    out = skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:t", policy=policy)
    assert out.returncode == 0, out.stderr
    bundle = work / "bundle"
    subprocess.run([str(UMOCI), "unpack", "--image", f"{layout}:t", str(bundle)], check=True,
                   capture_output=True)  # fmt: skip
    return describe(str(bundle / "rootfs"))


def comparable(tree: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    """Drop what differs between unpackers for reasons outside the layer: directory mtimes are kept by
    neither consistently, and the root directory itself is not in the tree."""
    return {
        path: (kind, mode, uid, gid, what, xattrs)
        for path, (kind, mode, uid, gid, what, _m, xattrs) in tree.items()
    }


@pytest.mark.skipif(UMOCI is None, reason="umoci is not installed")
@pytest.mark.parametrize("name", ["plain", "zstd", "multi", "layered"])
def test_ketch_unpacks_like_umoci(
    images: tuple[Registry, Path, dict[str, str]], name: str, tmp_path: Path
) -> None:
    _registry, policy, refs = images
    (tmp_path / "mnt").mkdir()
    with ImageService(str(tmp_path / "ketch")) as service:
        ours = comparable(ketch_tree(service, refs[name], tmp_path / "mnt"))
    theirs = comparable(umoci_tree(refs[name], policy, tmp_path / "umoci"))
    assert ours == theirs
    if name == "layered":
        assert "etc/gone" not in ours and "opq/old" not in ours and "bin/tool" not in ours
        assert ours["opq/new"][4] is not None and ours["etc/link"][4] == "keep"
        assert ours["data/f"][2:4] == (1000, 1000) and ours["sticky"][1] == 0o1777
        assert ours["dev/null2"][4] == (1, 3)
        assert os.stat(tmp_path) is not None


def test_ketch_unpacks_like_docker(images: tuple[Registry, Path, dict[str, str]], tmp_path: Path,
                                   runtime_bin: str) -> None:  # fmt: skip
    from tests.interop import daemons

    if not os.path.exists(daemons.DOCKERD):
        pytest.skip("dockerd is not installed")
    _registry, _policy, refs = images
    service = ImageService(str(tmp_path / "ketch"))
    (tmp_path / "mnt").mkdir()
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="kd-"))  # containerd's socket paths must stay under 104 bytes
    dockerd = daemons.Dockerd(base, runtime_bin)
    dockerd.start()
    try:
        docker = dockerd.client(daemons.DOCKER_CLI)
        # an image docker itself pushes into the registry, from a busybox rootfs it imports
        rootfs = Path(busybox.make_rootfs(str(tmp_path / "rootfs")))
        tarball = daemons.make_rootfs_tar(rootfs, tmp_path / "rootfs.tar")
        refs = dict(refs, docker=f"{_registry.address}/docker-pushed/bb:v1")
        assert docker(None, "import", str(tarball), refs["docker"], timeout=120).returncode == 0
        pushed = docker(None, "push", refs["docker"], timeout=120)
        assert pushed.returncode == 0, pushed.stderr
        docker(None, "rmi", refs["docker"], timeout=60)
        for name in ("plain", "layered", "docker"):
            ours = comparable(ketch_tree(service, refs[name], tmp_path / "mnt"))
            assert docker(None, "pull", "-q", refs[name], timeout=120).returncode == 0
            cid = docker(None, "create", refs[name], "sh", timeout=60).stdout.strip()
            assert cid, f"docker create {refs[name]} failed"
            export = tmp_path / f"{name}.tar"
            assert docker(None, "export", "-o", str(export), cid, timeout=60).returncode == 0
            docker(None, "rm", cid)
            tree_dir = tmp_path / f"docker-{name}"
            tree_dir.mkdir()
            subprocess.run(["tar", "--numeric-owner", "--xattrs", "-xpf", str(export), "-C", str(tree_dir)],
                           check=True)  # fmt: skip
            theirs = comparable(describe(str(tree_dir)))
            # What docker's init layer puts into every container's filesystem (mount points, its marker file)
            # replaces the image's own files there: compare the rest.
            managed = (
                ".dockerenv",
                "etc/hostname",
                "etc/hosts",
                "etc/resolv.conf",
                "etc/mtab",
                "dev",
                "proc",
                "sys",
            )
            for tree in (ours, theirs):
                for path in [p for p in tree if p in managed or p.startswith("dev/")]:
                    tree.pop(path)
            assert ours == theirs, name
            # and docker accepts what ketch pushes back under a new name, with the same digest
            target = f"{_registry.address}/from-ketch/{name}:v2"
            service.tag(refs[name], target)
            digest = service.push(target)
            pulled = docker(None, "pull", target, timeout=120)
            assert pulled.returncode == 0, pulled.stderr
            assert f"Digest: {digest}" in pulled.stdout
    finally:
        service.close()
        dockerd.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_push_back_is_accepted(images: tuple[Registry, Path, dict[str, str]], tmp_path: Path) -> None:
    registry, policy, refs = images
    with ImageService(str(tmp_path / "ketch")) as service:
        push_all(service, registry, policy, refs)


def push_all(service: ImageService, registry: Registry, policy: Path, refs: dict[str, str]) -> None:
    for name in ("plain", "multi", "layered"):
        pulled = service.pull(refs[name])
        target = f"{registry.address}/pushed/{name}:again"
        service.tag(refs[name], target)
        digest = service.push(target)
        out = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{target}", policy=policy)
        assert out.returncode == 0, out.stderr
        assert sha256(out.stdout.encode()) == digest
        if name != "multi":
            assert digest == pulled.digest  # the same bytes, so the same digest

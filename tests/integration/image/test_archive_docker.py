"""Archives against the real thing (root): a private dockerd (tests/interop/daemons.py) loads and runs what ketch
saves, ketch loads what ``docker save`` writes with the IDs docker shows, and ketch loads the OCI layout
``skopeo copy`` makes from it. Images come from Debian's busybox-static (no registry, no network)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes import busybox
from tests.interop import daemons
from tests.unit.image.layers import E, gz
from tests.unit.image.test_service import FakeRegistry, build_image

from ketch.image.service import ImageService

pytestmark = pytest.mark.root

# What a container's writable layer adds to `docker export` beyond the image's own files.
CONTAINER_ONLY = {".dockerenv", "dev/console", "dev/pts", "dev/shm", "etc/hostname", "etc/hosts", "etc/mtab",
                  "etc/resolv.conf"}  # fmt: skip


@pytest.fixture(scope="module")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("busybox")
    rootfs = Path(busybox.make_rootfs(str(base / "rootfs")))
    return daemons.make_rootfs_tar(rootfs, base / "rootfs.tar")


@pytest.fixture(scope="module")
def docker(runtime_bin: str, rootfs_tar: Path) -> Iterator[daemons.Docker]:
    for need in (daemons.DOCKERD, daemons.DOCKER_CLI, "containerd", "containerd-shim-runc-v2", "runc"):
        if not (Path(need).exists() if need.startswith("/") else shutil.which(need)):
            pytest.skip(f"needs {need} (Debian packages docker.io, containerd, runc)")
    base = Path(tempfile.mkdtemp(prefix="ketch-dockerd-"))
    daemon = daemons.Dockerd(base, runtime_bin)
    try:
        daemon.start()
        client = daemon.client(daemons.DOCKER_CLI)
        client(None, "import", str(rootfs_tar), "busybox:ketch", check=True)
        yield client
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    return ImageService(str(tmp_path / "ketch"))


def names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.removeprefix("./").rstrip("/") for m in tf.getmembers()} - {"", "."}


def test_docker_loads_and_runs_what_ketch_saves(docker: daemons.Docker, svc: ImageService, rootfs_tar: Path,
                                                tmp_path: Path) -> None:  # fmt: skip
    with open(rootfs_tar, "rb") as f:
        imported = svc.import_tarball(f, "ketch-made:1", ['CMD ["echo", "hello from ketch"]'])
    # A two-layer image with gzip layers and a whiteout, as a registry would serve it.
    layered = build_image(
        [rootfs_tar.read_bytes(), [E("etc", "dir"), E("etc/.wh.group"), E("etc/greeting", data=b"layered\n")]],
        cmd=["cat", "/etc/greeting"], compress=gz,
    )  # fmt: skip
    registry = FakeRegistry()
    registry.add("docker.io/library/layered:1", layered)
    svc._registry = registry
    svc.pull("layered:1", platform="linux/amd64")
    archive = tmp_path / "ketch.tar"
    with open(archive, "wb") as out:
        svc.save(["ketch-made:1", "layered:1"], out)
    loaded = docker(None, "load", "-i", str(archive), check=True).stdout
    assert "Loaded image: ketch-made:1" in loaded and "Loaded image: layered:1" in loaded
    assert docker(None, "inspect", "-f", "{{.Id}}", "ketch-made:1", check=True).stdout.strip() == imported
    assert docker(None, "inspect", "-f", "{{.Id}}", "layered:1", check=True).stdout.strip() == layered.id
    assert docker(None, "run", "--rm", "ketch-made:1", check=True).stdout == "hello from ketch\n"
    assert docker(None, "run", "--rm", "layered:1", check=True).stdout == "layered\n"
    gone = docker(None, "run", "--rm", "layered:1", "ls", "/etc/group")
    assert gone.returncode != 0  # the whiteout hid it
    docker(None, "rmi", "ketch-made:1", "layered:1", check=True)


def test_ketch_loads_docker_save_with_docker_ids(
    docker: daemons.Docker, svc: ImageService, tmp_path: Path
) -> None:
    archive = tmp_path / "docker.tar"
    docker(None, "save", "-o", str(archive), "busybox:ketch", check=True)
    docker_id = docker(None, "inspect", "-f", "{{.Id}}", "busybox:ketch", check=True).stdout.strip()
    with open(archive, "rb") as f:
        loaded = svc.load(f)
    assert [(i.id, i.tags) for i in loaded.images] == [(docker_id, ("busybox:ketch",))]
    ours, theirs = (
        svc.inspect("busybox:ketch"),
        json.loads(docker(None, "inspect", docker_id, check=True).stdout)[0],
    )
    for key in ("Id", "RepoTags", "Comment", "Created", "Architecture", "Os", "RootFS"):
        assert ours[key] == theirs[key], key
    for key in ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels"):
        assert ours["Config"][key] == theirs["Config"][key], key
    # The flattened filesystem is what docker export gives for a container, minus the container's own files.
    exported = io.BytesIO()
    svc.export_image("busybox:ketch", exported)
    container = docker(None, "create", "busybox:ketch", "true", check=True).stdout.strip()
    try:
        docker_export = subprocess.run([docker.cli, "export", container], env=docker.env, capture_output=True,
                                       check=True, timeout=60).stdout  # fmt: skip
    finally:
        docker(None, "rm", container, check=True)
    extra = names(docker_export) - names(exported.getvalue())
    assert extra <= CONTAINER_ONLY, extra
    assert names(exported.getvalue()) <= names(docker_export)


def _tar_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for child in sorted(path.iterdir()):
            tf.add(child, arcname=child.name)
    return buf.getvalue()


def test_ketch_loads_skopeo_oci_layout(docker: daemons.Docker, svc: ImageService, tmp_path: Path) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo")
    archive = tmp_path / "docker.tar"
    docker(None, "save", "-o", str(archive), "busybox:ketch", check=True)
    docker_id = docker(None, "inspect", "-f", "{{.Id}}", "busybox:ketch", check=True).stdout.strip()
    for name, target in (("full", "busybox:ketch"), ("bare", "ketch")):
        subprocess.run(
            ["skopeo", "--insecure-policy", "copy", f"docker-archive:{archive}", f"oci:{tmp_path / name}:{target}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    # skopeo rewrites the config in OCI form, so the layout's image ID is its config digest, not docker's;
    # the layers and their diff IDs stay the same.
    layout = tmp_path / "full"
    [entry] = json.loads((layout / "index.json").read_text())["manifests"]
    manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"][7:]).read_text())
    config_digest = manifest["config"]["digest"]
    loaded = svc.load(io.BytesIO(_tar_dir(layout)))
    assert [(i.id, i.tags) for i in loaded.images] == [(config_digest, ("busybox:ketch",))]
    assert svc.store.get(config_digest).manifests == (entry["digest"],)
    docker_layers = json.loads(
        docker(None, "inspect", "-f", "{{json .RootFS.Layers}}", docker_id, check=True).stdout
    )
    assert svc.inspect("busybox:ketch")["RootFS"]["Layers"] == docker_layers
    named = svc.load(io.BytesIO(_tar_dir(tmp_path / "bare")), name="example.com/bb")
    assert [(i.id, i.tags) for i in named.images] == [(config_digest, ("example.com/bb:ketch",))]
    [mount] = svc.rootfs_mounts("example.com/bb:ketch", "ctr")
    assert mount.type in ("bind", "overlay")
    svc.snapshotter.remove("ctr")

"""ImageService with the real RegistryClient against Debian's docker-registry on 127.0.0.1 (root: layers go
into overlay snapshots and a container's root filesystem is mounted). skopeo puts the images there and checks
what ketch pushes back."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.integration.image import registry as reg
from tests.unit.image.layers import mounted

from ketch.image.remote import JSONProgress, RegistryClient
from ketch.image.service import ImageService

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(reg.missing_tools() is not None, reason=reg.missing_tools() or ""),
]


@dataclass
class Served:
    address: str
    image: reg.LayoutImage
    multi: reg.LayoutImage
    policy: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("service-registry")
    layout = root / "layout"
    image = reg.make_oci_layout(layout, busybox_rootfs, "t1")
    multi = reg.make_oci_layout(layout, busybox_rootfs, "multi", multi_arch=True)
    policy = reg.write_policy(root / "policy.json")
    try:
        registry = reg.Registry(root / "registry").start()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        for tag, extra in (("t1", []), ("multi", ["--all"])):
            source, dest = f"oci:{layout}:{tag}", f"docker://{registry.address}/busybox:{tag}"
            proc = reg.skopeo("copy", *extra, "--preserve-digests", "--dest-tls-verify=false", source, dest,
                              policy=policy)  # fmt: skip
            assert proc.returncode == 0, proc.stderr
        yield Served(registry.address, image, multi, policy)
    finally:
        registry.stop()


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ImageService]:
    with RegistryClient() as client:
        yield ImageService(str(tmp_path / "ketch"), registry=client)


def test_pull_unpacks_records_and_runs_from_the_registry(
    served: Served, svc: ImageService, tmp_path: Path
) -> None:
    lines: list[bytes] = []
    ref = f"{served.address}/busybox:t1"
    outcome = svc.pull(ref, progress=JSONProgress(lines.append))
    assert outcome.id == served.image.config_digest
    assert (outcome.digest, outcome.updated) == (served.image.manifest_digest, True)
    messages = [json.loads(line) for line in lines]
    layer = served.image.layer_digest[7:19]
    statuses = [(m.get("id"), m.get("status")) for m in messages]
    assert (layer, "Extracting") in statuses and (layer, "Pull complete") in statuses
    assert messages[-1] == {"status": f"Status: Downloaded newer image for {ref}"}
    info = svc.inspect(ref)
    assert info["RepoTags"] == [ref]
    assert info["RepoDigests"] == [f"{served.address}/busybox@{served.image.manifest_digest}"]
    mounts = svc.rootfs_mounts(ref, "ctr")
    with mounted(list(mounts), str(tmp_path / "rootfs")) as rootfs:
        assert (Path(rootfs) / "bin" / "busybox").is_file()
    svc.snapshotter.remove("ctr")
    assert svc.pull(ref).updated is False


def test_pull_an_index_and_push_back(served: Served, svc: ImageService) -> None:
    ref = f"{served.address}/busybox:multi"
    outcome = svc.pull(ref)
    assert outcome.digest == served.multi.index_digest
    assert svc.store.find(ref).index == served.multi.index_digest
    assert svc.inspect(ref)["RepoDigests"] == [f"{served.address}/busybox@{served.multi.index_digest}"]
    target = f"{served.address}/copies/bb:v1"
    svc.tag(ref, target)
    pushed = svc.push(target)
    assert pushed == served.multi.manifest_digest  # the platform's manifest, as pulled: nothing converted
    proc = reg.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{target}", policy=served.policy)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["config"]["digest"] == outcome.id
    assert f"{served.address}/copies/bb@{pushed}" in svc.inspect(ref)["RepoDigests"]


def test_save_of_a_pulled_image_loads_elsewhere(served: Served, svc: ImageService, tmp_path: Path) -> None:
    ref = f"{served.address}/busybox:t1"
    svc.pull(ref)
    out = io.BytesIO()
    svc.save([ref], out)
    other = ImageService(str(tmp_path / "other"))
    [loaded] = other.load(io.BytesIO(out.getvalue())).images
    assert (loaded.id, loaded.tags) == (served.image.config_digest, (ref,))
    assert other.store.get(loaded.id).manifests == (served.image.manifest_digest,)


def test_rmi_after_pull_leaves_nothing(served: Served, svc: ImageService) -> None:
    ref = f"{served.address}/busybox:t1"
    svc.pull(ref)
    records = svc.remove(ref)
    assert {"Deleted": served.image.config_digest} in records
    assert svc.content.list_digests() == []
    assert svc.snapshotter.walk() == []

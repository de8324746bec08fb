"""commit_snapshot on the overlay snapshotter (root): the container changes its mounted root filesystem, the
upper directory becomes the new layer (whiteouts, an opaque directory), and a container of the new image sees
the changed tree. The naive snapshotter's run of the same scenario is tests/unit/image/test_image_commit.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.unit.image.layers import mounted, tar_members
from tests.unit.image.test_image_commit import LAYERS, TREE_AFTER, change_tree, check_committed, commit, tree
from tests.unit.image.test_service import FakeRegistry, build_image

from ketch.image.service import ImageService
from ketch.image.snapshots import OverlaySnapshotter
from ketch.image.snapshots.overlay import why_unsupported

pytestmark = pytest.mark.root


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    reason = why_unsupported(str(tmp_path))
    if reason:
        pytest.skip(reason)
    registry = FakeRegistry()
    registry.add("docker.io/library/base:latest", build_image(LAYERS, cmd=["sh"]))
    root = str(tmp_path / "root")
    service = ImageService(root, snapshotter=OverlaySnapshotter(root), registry=registry)
    service.pull("base", platform="linux/amd64")
    return service


def test_the_upper_directory_becomes_the_layer(svc: ImageService, tmp_path: Path) -> None:
    mounts = svc.rootfs_mounts("base", "ctr")
    with mounted(list(mounts), str(tmp_path / "ctr")) as root:
        change_tree(root)
    image_id = commit(svc)
    check_committed(svc, image_id)
    members = tar_members(svc.content.read_bytes(svc.store.get(image_id).layers[-1]))
    assert members["var/.wh.cache"].isreg()  # overlay's 0/0 device, written as moby writes a whiteout
    with mounted(list(svc.rootfs_mounts("myimg:1", "ctr2")), str(tmp_path / "ctr2")) as root:
        assert tree(root) == TREE_AFTER
        assert Path(root, "new").read_text() == "hi\n"
        assert Path(root, "etc", "passwd").read_text() == "root\nuser\n"
    for key in ("ctr", "ctr2"):
        svc.snapshotter.remove(key)


def test_a_directory_made_again_is_opaque(svc: ImageService, tmp_path: Path) -> None:
    mounts = svc.rootfs_mounts("base", "ctr")
    with mounted(list(mounts), str(tmp_path / "ctr")) as root:
        shutil.rmtree(os.path.join(root, "var", "cache"))
        os.mkdir(os.path.join(root, "var", "cache"))
        Path(root, "var", "cache", "b").write_text("b")
    image_id = commit(svc, changes=[])
    members = tar_members(svc.content.read_bytes(svc.store.get(image_id).layers[-1]))
    assert {"var/cache/.wh..wh..opq", "var/cache/b"} <= set(members)
    with mounted(list(svc.rootfs_mounts(image_id, "ctr2")), str(tmp_path / "ctr2")) as root:
        assert os.listdir(os.path.join(root, "var", "cache")) == ["b"]
    for key in ("ctr", "ctr2"):
        svc.snapshotter.remove(key)


def test_an_untouched_container_adds_no_layer(svc: ImageService) -> None:
    svc.rootfs_mounts("base", "ctr")
    image_id = commit(svc, ref=None)
    assert svc.store.get(image_id).diff_ids == svc.store.find("base").diff_ids
    svc.snapshotter.remove("ctr")

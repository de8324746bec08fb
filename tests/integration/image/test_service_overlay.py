"""ImageService on the overlay snapshotter (root): a container's root filesystem mounted from an image's
layers, GraphDriver paths, export against the mounted view, and rmi/gc removing the layer directories."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from tests.unit.image.layers import E, describe, mounted
from tests.unit.image.test_service import FakeRegistry, build_image

from ketch.image.service import ImageService
from ketch.image.snapshots import OverlaySnapshotter
from ketch.image.snapshots.overlay import why_unsupported

pytestmark = pytest.mark.root

LAYERS = [
    [E("bin", "dir"), E("bin/sh", data=b"sh", mode=0o755), E("etc", "dir"), E("etc/passwd", data=b"root"),
     E("etc/motd", data=b"motd"), E("var", "dir"), E("var/cache", "dir"), E("var/cache/a", data=b"a"),
     E("link", "symlink", linkname="bin/sh"), E("bin/ash", "hardlink", linkname="bin/sh")],
    [E("etc", "dir"), E("etc/.wh.motd"), E("var/cache", "dir"), E("var/cache/.wh..wh..opq"),
     E("var/cache/b", data=b"b"), E("srv", "dir", mode=0o700, uid=1000)],
    [E("srv/data", data=b"d" * 5000, uid=1000)],
]  # fmt: skip


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    reason = why_unsupported(str(tmp_path))
    if reason:
        pytest.skip(reason)
    registry = FakeRegistry()
    registry.add("docker.io/library/layered:latest", build_image(LAYERS))
    service = ImageService(str(tmp_path / "root"), snapshotter=OverlaySnapshotter(str(tmp_path / "root")),
                           registry=registry)  # fmt: skip
    service.pull("layered", platform="linux/amd64")
    return service


def test_container_rootfs_is_the_merged_image(svc: ImageService, tmp_path: Path) -> None:
    mounts = svc.rootfs_mounts("layered", "ctr-1")
    assert [m.type for m in mounts] == ["overlay"]
    with mounted(list(mounts), str(tmp_path / "merged")) as root:
        tree = describe(root)
        assert sorted(tree) == ["bin", "bin/ash", "bin/sh", "etc", "etc/passwd", "link", "srv", "srv/data", "var",
                                "var/cache", "var/cache/b"]  # fmt: skip
        Path(root, "etc", "passwd").write_text("changed in the container")
    view = svc.rootfs_mounts("layered", "ctr-2")
    with mounted(list(view), str(tmp_path / "merged2")) as root:
        assert Path(root, "etc", "passwd").read_text() == "root"  # the image is untouched
    for key in ("ctr-1", "ctr-2"):
        svc.snapshotter.remove(key)


def test_graph_driver_points_at_the_layer_directories(svc: ImageService) -> None:
    rec = svc.store.find("layered")
    data = svc.inspect("layered")["GraphDriver"]
    dirs = [svc.snapshotter.fs_dir(c) for c in rec.chain_ids]
    assert data == {
        "Data": {"LowerDir": f"{dirs[1]}:{dirs[0]}", "UpperDir": dirs[2],
                 "WorkDir": os.path.join(os.path.dirname(dirs[2]), "work")},
        "Name": "overlayfs",
    }  # fmt: skip
    assert rec.layer_sizes == (len(b"sh") + len(b"root") + len(b"motd") + len(b"a") + len("bin/sh"), 1, 5000)


def test_export_matches_the_mounted_view(svc: ImageService, tmp_path: Path) -> None:
    out = io.BytesIO()
    svc.export_image("layered", out)
    extracted = tmp_path / "extracted"
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert tf.getmember("link").mtime == 1_700_000_000  # extractall does not set a symlink's own mtime
        assert tf.getmember("bin/sh").islnk() and tf.getmember("bin/sh").linkname == "bin/ash"  # sorted order
        tf.extractall(extracted, filter="fully_trusted")
    mounts = svc.rootfs_mounts("layered", "compare")
    with mounted(list(mounts), str(tmp_path / "merged")) as root:
        expected = describe(root)
    svc.snapshotter.remove("compare")
    got = describe(str(extracted))
    got["link"] = (*got["link"][:5], expected["link"][5], *got["link"][6:])
    assert got == expected


def test_rmi_removes_layer_directories(svc: ImageService) -> None:
    rec = svc.store.find("layered")
    dirs = [os.path.dirname(svc.snapshotter.fs_dir(c)) for c in rec.chain_ids]
    records = svc.remove("layered")
    assert [r["Deleted"] for r in records if "Deleted" in r] == [rec.id, *reversed(rec.chain_ids)]
    assert not any(os.path.exists(d) for d in dirs)
    assert svc.content.list_digests() == []

"""Snapshots mounted for real: the mount specs the drivers return work with the kernel's overlayfs."""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

import pytest
from tests.unit.image.layers import E, mounted, tar_bytes

from ketch.image.snapshots import NaiveSnapshotter, OverlaySnapshotter, Snapshotter, default_snapshotter
from ketch.image.snapshots import overlay as overlay_mod
from ketch.image.unpack import apply_layer

pytestmark = pytest.mark.root

DRIVERS = {"overlay": OverlaySnapshotter, "naive": NaiveSnapshotter}


def layer(snap: Snapshotter, name: str, parent: str, entries: list[E]) -> None:
    key = f"extract {name}"
    snap.prepare(key, parent)
    apply_layer(io.BytesIO(tar_bytes(entries)), snap.fs_dir(key), mode=snap.layer_mode)
    snap.commit(name, key)


BASE = [
    E("etc", "dir"),
    E("etc/passwd", data=b"root:x:0:0\n"),
    E("etc/motd", data=b"welcome\n"),
    E("opaque", "dir"),
    E("opaque/old", data=b"old"),
    E("opaque/olddir/deep", data=b"deep"),
    E("gone", "dir"),
    E("gone/inner", data=b"inner"),
]
TOP = [
    E("etc", "dir"),
    E("etc/.wh.motd"),
    E(".wh.gone"),
    E("opaque", "dir"),
    E("opaque/.wh..wh..opq"),
    E("opaque/new", data=b"new"),
    E("added", data=b"added"),
]


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_mounted_chain_hides_whiteouts_and_opaque_contents(tmp_path: Path, driver: str) -> None:
    snap = DRIVERS[driver](str(tmp_path / "root"))
    layer(snap, "base", "", BASE)
    layer(snap, "top", "base", TOP)
    mounts = snap.prepare("ctr", "top")
    with mounted(mounts, str(tmp_path / "mnt")) as mnt:
        root = Path(mnt)
        assert sorted(os.listdir(root)) == ["added", "etc", "opaque"]
        assert sorted(os.listdir(root / "etc")) == ["passwd"]
        assert sorted(os.listdir(root / "opaque")) == ["new"]
        assert (root / "etc" / "passwd").read_bytes() == b"root:x:0:0\n"
        (root / "written").write_bytes(b"by the container")
        (root / "etc" / "passwd").unlink()
    upper = Path(snap.fs_dir("ctr"))
    assert (upper / "written").read_bytes() == b"by the container"
    if driver == "overlay":
        st = os.lstat(upper / "etc" / "passwd")  # the kernel's own whiteout
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        assert sorted(os.listdir(upper)) == ["etc", "written"]
    snap.commit("ctr-image", "ctr")
    view = snap.view("look", "ctr-image")
    with mounted(view, str(tmp_path / "view")) as mnt:
        assert sorted(os.listdir(mnt)) == ["added", "etc", "opaque", "written"]
        assert os.listdir(Path(mnt) / "etc") == []
        with pytest.raises(OSError) as info:
            Path(mnt, "nope").write_bytes(b"x")
        assert info.value.errno == errno.EROFS


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_single_parent_view_and_empty_active(tmp_path: Path, driver: str) -> None:
    snap = DRIVERS[driver](str(tmp_path / "root"))
    layer(snap, "base", "", BASE)
    with mounted(snap.view("v", "base"), str(tmp_path / "v")) as mnt:
        assert (Path(mnt) / "etc" / "motd").read_bytes() == b"welcome\n"
        with pytest.raises(OSError) as info:
            os.mkdir(Path(mnt) / "x")
        assert info.value.errno == errno.EROFS
    with mounted(snap.prepare("empty"), str(tmp_path / "e")) as mnt:
        assert os.listdir(mnt) == []
        Path(mnt, "f").write_bytes(b"f")
    assert (Path(snap.fs_dir("empty")) / "f").read_bytes() == b"f"


def test_remounting_an_active_snapshot_keeps_its_changes(tmp_path: Path) -> None:
    snap = OverlaySnapshotter(str(tmp_path / "root"))
    layer(snap, "base", "", BASE)
    snap.prepare("ctr", "base")
    with mounted(snap.mounts("ctr"), str(tmp_path / "m1")) as mnt:
        Path(mnt, "etc", "motd").write_bytes(b"changed\n")
    with mounted(snap.mounts("ctr"), str(tmp_path / "m2")) as mnt:
        assert Path(mnt, "etc", "motd").read_bytes() == b"changed\n"
    assert (
        Path(snap.fs_dir("base"), "etc", "motd").read_bytes() == b"welcome\n"
    )  # copy-up left the lower alone


def test_overlay_is_supported_here(tmp_path: Path) -> None:
    assert overlay_mod.why_unsupported(str(tmp_path)) is None
    assert isinstance(default_snapshotter(str(tmp_path)), OverlaySnapshotter)
    assert [e for e in os.listdir(tmp_path / "snapshots") if e.startswith(".overlay-probe")] == []

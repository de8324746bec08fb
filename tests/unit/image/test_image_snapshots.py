"""Snapshotter conformance suite (containerd core/snapshots/testsuite), run against every driver.

Everything here works on metadata, directories and the mount specs the drivers return; nothing is
mounted (tests/integration/image/test_snapshots_overlay.py mounts them).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from tests.unit.image.layers import ROOT, describe, hardlink_groups

from ketch.common.errors import Conflict, InvalidArgument, NotFound, Unsupported
from ketch.image.snapshots import Kind, Mount, NaiveSnapshotter, OverlaySnapshotter, Snapshotter
from ketch.image.snapshots import overlay as overlay_mod
from ketch.image.snapshots.naive import copy_tree

DRIVERS = {"overlay": OverlaySnapshotter, "naive": NaiveSnapshotter}


@pytest.fixture(params=sorted(DRIVERS))
def snap(request: pytest.FixtureRequest, tmp_path: Path) -> Snapshotter:
    cls: type[Snapshotter] = DRIVERS[request.param]
    return cls(str(tmp_path / "root"))


def write(snap: Snapshotter, key: str, rel: str, data: bytes) -> None:
    path = Path(snap.fs_dir(key)) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def committed(snap: Snapshotter, name: str, parent: str = "", files: dict[str, bytes] | None = None) -> None:
    key = f"tmp-{name}"
    snap.prepare(key, parent)
    for rel, data in (files or {}).items():
        write(snap, key, rel, data)
    snap.commit(name, key)


def numbered_dirs(snap: Snapshotter) -> list[str]:
    return sorted(e for e in os.listdir(snap.path) if e.isdigit())


# -- lifecycle


def test_prepare_without_parent_is_a_writable_bind(snap: Snapshotter) -> None:
    mounts = snap.prepare("a")
    assert mounts == [Mount(type="bind", source=snap.fs_dir("a"), options=("rw", "rbind"))]
    assert os.path.isdir(snap.fs_dir("a"))
    assert snap.mounts("a") == mounts
    info = snap.stat("a")
    assert (info.kind, info.name, info.parent) == (Kind.ACTIVE, "a", "")
    assert info.created > 0


def test_commit_replaces_the_key_with_the_name(snap: Snapshotter) -> None:
    snap.prepare("a")
    write(snap, "a", "hello", b"hi")
    directory = snap.fs_dir("a")
    snap.commit("base", "a", labels={"x": "1"})
    with pytest.raises(NotFound, match="'a'"):
        snap.stat("a")
    info = snap.stat("base")
    assert (info.kind, info.parent, info.labels) == (Kind.COMMITTED, "", {"x": "1"})
    assert snap.fs_dir("base") == directory
    assert (Path(directory) / "hello").read_bytes() == b"hi"
    with pytest.raises(InvalidArgument, match="committed"):
        snap.mounts("base")


def test_child_of_committed_parent(snap: Snapshotter) -> None:
    committed(snap, "l1", files={"one": b"1"})
    committed(snap, "l2", "l1", files={"two": b"2"})
    mounts = snap.prepare("c", "l2")
    assert snap.stat("c").parent == "l2"
    assert len(mounts) == 1
    m = mounts[0]
    if isinstance(snap, OverlaySnapshotter):
        assert (m.type, m.source) == ("overlay", "overlay")
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        assert opts["upperdir"] == snap.fs_dir("c")
        assert opts["lowerdir"] == f"{snap.fs_dir('l2')}:{snap.fs_dir('l1')}"  # nearest first
        assert opts["workdir"] == os.path.join(os.path.dirname(snap.fs_dir("c")), "work")
        assert os.listdir(snap.fs_dir("c")) == []
    else:
        assert m == Mount(type="bind", source=snap.fs_dir("c"), options=("rw", "rbind"))
        assert sorted(os.listdir(snap.fs_dir("c"))) == ["one", "two"]  # a full copy


def test_view_is_read_only_and_cannot_be_committed(snap: Snapshotter) -> None:
    committed(snap, "l1", files={"f": b"x"})
    mounts = snap.view("v", "l1")
    assert mounts == [Mount(type="bind", source=snap.fs_dir("l1"), options=("ro", "rbind"))]
    assert snap.stat("v").kind is Kind.VIEW
    assert snap.mounts("v") == mounts
    with pytest.raises(InvalidArgument, match="view"):
        snap.commit("x", "v")
    with pytest.raises(InvalidArgument, match="view"):
        snap.fs_dir("v")
    empty = snap.view("v0")
    assert empty[0].options == ("ro", "rbind")


def test_view_of_a_chain(snap: Snapshotter) -> None:
    committed(snap, "l1")
    committed(snap, "l2", "l1")
    (m,) = snap.view("v", "l2")
    if isinstance(snap, OverlaySnapshotter):
        assert m.type == "overlay"
        assert [o for o in m.options if o.startswith(("upperdir", "workdir"))] == []
        assert f"lowerdir={snap.fs_dir('l2')}:{snap.fs_dir('l1')}" in m.options
    else:
        assert m == Mount(type="bind", source=snap.fs_dir("l2"), options=("ro", "rbind"))


def test_keys_and_names_share_one_namespace(snap: Snapshotter) -> None:
    snap.prepare("a")
    with pytest.raises(Conflict, match="already exists"):
        snap.prepare("a")
    with pytest.raises(Conflict):
        snap.view("a")
    snap.commit("b", "a")
    with pytest.raises(Conflict):
        snap.prepare("b")
    snap.prepare("c")
    with pytest.raises(Conflict, match="'b'"):
        snap.commit("b", "c")
    assert snap.stat("c").kind is Kind.ACTIVE  # the failed commit left it alone


def test_parent_must_exist_and_be_committed(snap: Snapshotter) -> None:
    with pytest.raises(NotFound, match="missing"):
        snap.prepare("a", "missing")
    snap.prepare("active")
    with pytest.raises(InvalidArgument, match="must be committed"):
        snap.prepare("b", "active")
    snap.view("view")
    with pytest.raises(InvalidArgument, match="must be committed"):
        snap.view("c", "view")
    assert [i.name for i in snap.walk()] == ["active", "view"]
    assert len(numbered_dirs(snap)) == 2


def test_invalid_keys(snap: Snapshotter) -> None:
    for bad in ("", "a\0b"):
        with pytest.raises(InvalidArgument):
            snap.prepare(bad)
    with pytest.raises(InvalidArgument):
        snap.prepare("k", labels={"a": 1})  # type: ignore[dict-item]


def test_remove(snap: Snapshotter) -> None:
    committed(snap, "base", files={"f": b"1"})
    snap.prepare("child", "base")
    with pytest.raises(Conflict, match="children"):
        snap.remove("base")
    child_dir = os.path.dirname(snap.fs_dir("child"))
    snap.remove("child")
    assert not os.path.exists(child_dir)
    snap.remove("base")
    assert snap.walk() == []
    assert numbered_dirs(snap) == []
    with pytest.raises(NotFound):
        snap.remove("base")
    snap.prepare("child")  # the key is free again


def test_walk_filters(snap: Snapshotter) -> None:
    committed(snap, "base")
    snap.prepare("a", "base")
    snap.view("v", "base")
    snap.prepare("b")
    assert [i.name for i in snap.walk()] == ["a", "b", "base", "v"]
    assert [i.name for i in snap.walk(kind=Kind.ACTIVE)] == ["a", "b"]
    assert [i.name for i in snap.walk(parent="base")] == ["a", "v"]
    assert [i.name for i in snap.walk(kind=Kind.COMMITTED)] == ["base"]


def test_labels_merge_on_commit(snap: Snapshotter) -> None:
    snap.prepare("a", labels={"keep": "1", "over": "old"})
    snap.commit("b", "a", labels={"over": "new"})
    assert snap.stat("b").labels == {"keep": "1", "over": "new"}


def test_metadata_persists_across_instances(snap: Snapshotter, tmp_path: Path) -> None:
    committed(snap, "base")
    snap.prepare("a", "base")
    again = type(snap)(str(tmp_path / "root"))
    assert [(i.name, i.kind, i.parent) for i in again.walk()] == [
        ("a", Kind.ACTIVE, "base"),
        ("base", Kind.COMMITTED, ""),
    ]
    assert again.mounts("a") == snap.mounts("a")
    raw = json.loads(Path(snap.path, "metadata.json").read_text())
    assert raw["version"] == 1 and set(raw["snapshots"]) == {"a", "base"}


def test_usage_counts_own_directory_once_per_inode(snap: Snapshotter) -> None:
    snap.prepare("a")
    write(snap, "a", "big", b"x" * 65536)
    os.link(os.path.join(snap.fs_dir("a"), "big"), os.path.join(snap.fs_dir("a"), "again"))
    usage = snap.usage("a")
    assert usage.inodes == 2  # the directory and one file
    assert 65536 <= usage.size < 3 * 65536
    with pytest.raises(NotFound):
        snap.usage("nope")


def test_failed_prepare_leaves_nothing(snap: Snapshotter, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snap, "_create_dirs", broken)
    with pytest.raises(OSError):
        snap.prepare("a")
    assert snap.walk() == []
    assert numbered_dirs(snap) == []


def test_cleanup_removes_orphans_only(snap: Snapshotter) -> None:
    snap.prepare("a")
    os.mkdir(os.path.join(snap.path, "999"))
    assert snap.cleanup() == ["999"]
    assert snap.stat("a").kind is Kind.ACTIVE
    assert os.path.isdir(snap.fs_dir("a"))


def test_concurrent_prepares_get_distinct_directories(snap: Snapshotter) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            snap.prepare(f"k{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    dirs = {snap.fs_dir(f"k{i}") for i in range(16)}
    assert len(dirs) == 16 and len(snap.walk()) == 16


# -- driver specifics


def test_overlay_lowerdir_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = OverlaySnapshotter(str(tmp_path))
    monkeypatch.setattr(overlay_mod, "MAX_LOWER_DIRS", 2)
    committed(snap, "l1")
    committed(snap, "l2", "l1")
    committed(snap, "l3", "l2")
    snap.prepare("ok", "l2")
    with pytest.raises(Unsupported, match="at most 2 lower layers"):
        snap.prepare("deep", "l3")
    assert [i.name for i in snap.walk(kind=Kind.ACTIVE)] == ["ok"]


def test_overlay_refuses_paths_overlay_options_cannot_carry(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="','"):
        OverlaySnapshotter(str(tmp_path / "a,b"))


def test_overlay_layout(tmp_path: Path) -> None:
    snap = OverlaySnapshotter(str(tmp_path))
    assert snap.path == str(tmp_path / "snapshots" / "overlayfs")
    snap.prepare("a")
    d = Path(snap.fs_dir("a")).parent
    assert sorted(os.listdir(d)) == ["fs", "work"]
    assert d.parent == Path(snap.path)


def test_naive_copy_preserves_the_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d" / "sub").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"data")
    os.link(src / "d" / "f", src / "d" / "hard")
    os.symlink("../escape/target", src / "d" / "link")
    os.mkfifo(src / "fifo", 0o640)
    (src / "suid").write_bytes(b"#!")
    os.chmod(src / "suid", 0o4755)
    os.chmod(src / "d" / "sub", 0o1777)
    os.setxattr(src / "d" / "f", "user.note", b"\x00\xffbin")
    os.utime(src / "d" / "f", ns=(1, 1_500_000_000_123_456_789))
    os.utime(src / "d", ns=(1, 1_600_000_000_000_000_001))
    dst = tmp_path / "dst"
    copy_tree(str(src), str(dst))
    assert describe(str(dst), dir_mtimes=True) == describe(str(src), dir_mtimes=True)
    assert hardlink_groups(str(dst)) == [["d/f", "d/hard"]]
    assert os.readlink(dst / "d" / "link") == "../escape/target"


@pytest.mark.skipif(not ROOT, reason="device nodes and other owners need root")
def test_naive_copy_preserves_devices_and_owners(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mknod(src / "null", 0o666 | 0o020000, os.makedev(1, 3))
    (src / "owned").write_bytes(b"x")
    os.chown(src / "owned", 1234, 5678)
    os.setxattr(src / "owned", "trusted.test", b"t")
    os.chown(src, 42, 43)
    dst = tmp_path / "dst"
    copy_tree(str(src), str(dst))
    assert describe(str(dst), dir_mtimes=True) == describe(str(src), dir_mtimes=True)
    assert os.stat(dst).st_uid == 42


def test_overlay_support_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay_mod, "_overlay_listed", lambda: False)
    assert overlay_mod.why_unsupported(str(tmp_path)) == "overlay is not listed in /proc/filesystems"
    assert not OverlaySnapshotter.supported(str(tmp_path))
    monkeypatch.setattr(overlay_mod, "_overlay_listed", lambda: True)
    monkeypatch.setattr(overlay_mod.os, "geteuid", lambda: 1000)
    assert OverlaySnapshotter.supported(str(tmp_path))  # without root, the listing is all it can check
    assert NaiveSnapshotter.supported(str(tmp_path))

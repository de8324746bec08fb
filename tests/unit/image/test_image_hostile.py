"""Hostile layers: nothing is ever written outside the target, and refusals name the entry.

Each case is generated here. ``outside/`` sits next to the target and holds a victim file; after every
case, everything outside the target must be exactly as before.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from tests.unit.image.layers import E, describe, tar_bytes

from ketch.common.errors import InvalidArgument
from ketch.image.content import ContentStore
from ketch.image.snapshots import NaiveSnapshotter, OverlaySnapshotter, Snapshotter
from ketch.image.unpack import apply_layer, unpack_layer

MODES = ["overlay", "naive"]


def refused_cases(outside: str) -> list[tuple[str, list[E], str, str]]:
    """(id, entries, entry named in the error, reason fragment)."""
    return [
        ("dotdot", [E("../escape", data=b"x")], "../escape", "'..'"),
        ("dotdot-nested", [E("a/../../escape", data=b"x")], "a/../../escape", "'..'"),
        ("dotdot-after-root", [E("/../escape", data=b"x")], "/../escape", "'..'"),
        ("dotdot-dir", [E("..", "dir")], "..", "'..'"),
        (
            "hardlink-etc-passwd",
            [E("passwd", "hardlink", linkname="/etc/passwd")],
            "passwd",
            "does not exist",
        ),
        ("hardlink-dotdot", [E("h", "hardlink", linkname="../outside/victim")], "h", "'..'"),
        ("hardlink-missing", [E("h", "hardlink", linkname="nothing")], "h", "does not exist"),
        ("hardlink-dir", [E("d", "dir"), E("h", "hardlink", linkname="d")], "h", "not a file of this layer"),
        ("hardlink-self", [E("f", data=b"x"), E("f", "hardlink", linkname="f")], "f", "itself"),
        (
            "hardlink-through-symlink",
            [E("l", "symlink", linkname="../outside"), E("h", "hardlink", linkname="l/victim")],
            "h",
            "outside the layer root",
        ),
        (
            "symlink-parent-relative-escape",
            [E("l", "symlink", linkname="../outside"), E("l/new", data=b"x")],
            "l/new",
            "outside the layer root",
        ),
        (
            "symlink-parent-absolute",
            [E("l", "symlink", linkname=outside), E("l/new", data=b"x")],
            "l/new",
            "absolute path",
        ),
        (
            "symlink-then-file-through-it",
            [E("etc", "symlink", linkname="/etc"), E("etc/passwd", data=b"root::0:0::/:/bin/sh\n")],
            "etc/passwd",
            "absolute path",
        ),
        (
            "symlink-chain-escape",
            [
                E("a", "symlink", linkname="b"),
                E("b", "symlink", linkname="../outside"),
                E("a/new", data=b"x"),
            ],
            "a/new",
            "outside the layer root",
        ),
        (
            "symlink-deep-escape",
            [
                E("d/e", "dir"),
                E("d/e/up", "symlink", linkname="../../../outside"),
                E("d/e/up/new", data=b"x"),
            ],
            "d/e/up/new",
            "outside the layer root",
        ),
        (
            "dir-swapped-for-symlink",
            [E("d", "dir"), E("d", "symlink", linkname="../outside"), E("d/victim", data=b"pwned")],
            "d/victim",
            "outside the layer root",
        ),
        (
            "symlink-loop",
            [E("loop", "symlink", linkname="loop"), E("loop/x", data=b"x")],
            "loop/x",
            "too many",
        ),
        ("file-as-parent", [E("f", data=b"x"), E("f/x", data=b"x")], "f/x", "not a directory"),
        (
            "whiteout-through-symlink",
            [E("l", "symlink", linkname="../outside"), E("l/.wh.victim")],
            "l/.wh.victim",
            "outside the layer root",
        ),
        (
            "opaque-through-symlink",
            [E("l", "symlink", linkname="../outside"), E("l/.wh..wh..opq")],
            "l/.wh..wh..opq",
            "outside the layer root",
        ),
        ("whiteout-of-dot", [E(".wh..")], ".wh..", "whiteout of '.'"),
        ("whiteout-empty", [E("a/.wh.")], "a/.wh.", "whiteout of ''"),
        ("nul-in-name", [E("safe", pax={"path": "a\0b"})], "a\0b", "NUL"),
        ("nul-in-symlink", [E("s", "symlink", pax={"linkpath": "x\0y"})], "s", "NUL"),
        ("root-replaced-by-file", [E("./", data=b"x")], "./", "layer root"),
        ("long-component", [E("x" * 300, data=b"x")], "x" * 300, "too long"),
    ]


CASE_IDS = [c[0] for c in refused_cases("/o")]


def outside_state(tmp_path: Path) -> dict[str, tuple[object, ...]]:
    state = {f"outside/{k}": v for k, v in describe(str(tmp_path / "outside"), dir_mtimes=True).items()}
    state.update({name: () for name in os.listdir(tmp_path) if name != "t"})
    st = os.stat("/etc/passwd")
    state["/etc/passwd"] = (st.st_nlink, st.st_size, st.st_mtime_ns, st.st_ino)
    return state


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    (d / "keep").mkdir(parents=True)
    (d / "victim").write_bytes(b"victim")
    (d / "keep" / "data").write_bytes(b"data")
    (tmp_path / "t").mkdir()
    return d


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASE_IDS)
def test_hostile_entry_is_refused_and_nothing_outside_changes(
    tmp_path: Path, outside: Path, case: str, mode: str
) -> None:
    _, entries, entry, reason = next(c for c in refused_cases(str(outside)) if c[0] == case)
    if mode == "naive":
        (tmp_path / "t" / "lower.txt").write_bytes(b"from a lower layer")
    before = outside_state(tmp_path)
    with pytest.raises(InvalidArgument) as info:
        apply_layer(io.BytesIO(tar_bytes(entries)), str(tmp_path / "t"), mode=mode)  # type: ignore[arg-type]
    message = str(info.value)
    assert repr(entry) in message, message
    assert reason in message, message
    assert outside_state(tmp_path) == before


def test_hard_link_to_a_lower_layer_file_is_refused(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "t" / "lower.txt").write_bytes(b"lower")
    data = tar_bytes([E("h", "hardlink", linkname="lower.txt")])
    with pytest.raises(InvalidArgument, match="not a file of this layer"):
        apply_layer(io.BytesIO(data), str(tmp_path / "t"), mode="naive")
    assert os.stat(tmp_path / "t" / "lower.txt").st_nlink == 1


@pytest.mark.parametrize("mode", MODES)
def test_absolute_names_are_made_relative(tmp_path: Path, outside: Path, mode: str) -> None:
    before = outside_state(tmp_path)
    data = tar_bytes([E("/abs/file", data=b"a"), E("//double//slash", data=b"d"), E("/./dot/./x", data=b"x")])
    apply_layer(io.BytesIO(data), str(tmp_path / "t"), mode=mode)  # type: ignore[arg-type]
    assert (tmp_path / "t" / "abs" / "file").read_bytes() == b"a"
    assert (tmp_path / "t" / "double" / "slash").read_bytes() == b"d"
    assert (tmp_path / "t" / "dot" / "x").read_bytes() == b"x"
    assert outside_state(tmp_path) == before


@pytest.mark.parametrize("mode", MODES)
def test_leaf_symlinks_are_replaced_never_followed(tmp_path: Path, outside: Path, mode: str) -> None:
    before = outside_state(tmp_path)
    victim = str(outside / "victim")
    data = tar_bytes(
        [
            E("link", "symlink", linkname=victim),
            E("link", data=b"overwrite"),
            E("rel", "symlink", linkname="../outside/victim"),
            E("rel", "hardlink", linkname="link"),
            E("dirlink", "symlink", linkname="../outside/keep"),
            E("dirlink", "dir", mode=0o700),
            E("escape", "symlink", linkname="../../../../../../etc/shadow"),  # created, harmless as a leaf
            E("fifo", "symlink", linkname=victim),
            E("fifo", "fifo"),
        ]
    )
    target = tmp_path / "t"
    apply_layer(io.BytesIO(data), str(target), mode=mode)  # type: ignore[arg-type]
    assert (target / "link").read_bytes() == b"overwrite" and not (target / "link").is_symlink()
    assert os.lstat(target / "rel").st_ino == os.lstat(target / "link").st_ino
    assert (target / "dirlink").is_dir() and not (target / "dirlink").is_symlink()
    assert os.readlink(target / "escape") == "../../../../../../etc/shadow"
    assert outside_state(tmp_path) == before


def test_paths_longer_than_path_max(tmp_path: Path, outside: Path) -> None:
    parts = [f"{i:03d}" + "d" * 200 for i in range(25)]  # over 5000 bytes
    name = "/".join(parts) + "/leaf"
    apply_layer(io.BytesIO(tar_bytes([E(name, data=b"deep")])), str(tmp_path / "t"))
    fd = os.open(tmp_path / "t", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open("leaf", os.O_RDONLY, dir_fd=fd)
        assert os.read(leaf, 10) == b"deep"
        os.close(leaf)
    finally:
        os.close(fd)


@pytest.mark.parametrize("driver", [OverlaySnapshotter, NaiveSnapshotter], ids=["overlay", "naive"])
def test_unpack_layer_discards_the_snapshot_of_a_refused_layer(
    tmp_path: Path, outside: Path, driver: type[Snapshotter]
) -> None:
    store = ContentStore(str(tmp_path / "root"))
    snap = driver(str(tmp_path / "root"))
    good = store.ingest_bytes(tar_bytes([E("bin", "dir"), E("bin/sh", data=b"sh")]))
    unpack_layer(store, snap, good, name="base")
    bad = store.ingest_bytes(
        tar_bytes(
            [E("ok", data=b"applied first"), E("l", "symlink", linkname="../../.."), E("l/x", data=b"x")]
        )
    )
    before = outside_state(tmp_path)
    dirs_before = sorted(os.listdir(snap.path))
    with pytest.raises(InvalidArgument, match="'l/x'"):
        unpack_layer(store, snap, bad, name="evil", parent="base")
    assert [i.name for i in snap.walk()] == ["base"]
    assert sorted(os.listdir(snap.path)) == dirs_before
    assert outside_state(tmp_path) == before


def test_unpack_layer_checks_the_diff_id(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path))
    snap = NaiveSnapshotter(str(tmp_path))
    blob = store.ingest_bytes(tar_bytes([E("f", data=b"x")]))
    wrong = "sha256:" + "0" * 64
    with pytest.raises(InvalidArgument, match=f"expected {wrong}"):
        unpack_layer(store, snap, blob, name="l", expected_diff_id=wrong)
    assert snap.walk() == []

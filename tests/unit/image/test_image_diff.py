"""diff: snapshot directories back to layer tars, checked by applying the result again."""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path

import pytest
import zstandard
from tests.unit.image.layers import MTIME, ROOT, E, describe, hardlink_groups, sha256, tar_bytes, tar_members

from ketch.common.errors import Unsupported
from ketch.image.diff import diff_naive, diff_overlay
from ketch.image.snapshots.naive import copy_tree
from ketch.image.unpack import apply_layer

LAYER = [
    E("etc", "dir", mode=0o755),
    E("etc/hostname", data=b"ketch\n"),
    E("etc/.wh.gone"),
    E(".wh.removed-dir"),
    E("bin", "dir"),
    E("bin/busybox", data=b"\x7fELF" * 100, mode=0o4755),
    E("bin/sh", "hardlink", linkname="bin/busybox"),
    E("bin/ls", "symlink", linkname="busybox"),
    E("run", "dir", mode=0o1777),
    E("run/fifo", "fifo", mode=0o600),
    E("x", data=b"attrs", xattrs={"user.k": b"\x00v"}),
]


def apply_bytes(data: bytes, dest: Path, mode: str = "overlay") -> None:
    dest.mkdir(exist_ok=True)
    apply_layer(io.BytesIO(data), str(dest), mode=mode)  # type: ignore[arg-type]


def diff_bytes_overlay(upper: Path, compression: str = "none") -> tuple[bytes, object]:
    out = io.BytesIO()
    result = diff_overlay(str(upper), out, compression=compression)  # type: ignore[arg-type]
    return out.getvalue(), result


def test_overlay_upper_round_trips(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    apply_bytes(tar_bytes(LAYER), upper)
    data, result = diff_bytes_overlay(upper)
    assert result.diff_id == sha256(data) == result.digest  # type: ignore[attr-defined]
    assert result.size == len(data)  # type: ignore[attr-defined]
    members = tar_members(data)
    assert members["etc/.wh.gone"].isreg() and members["etc/.wh.gone"].size == 0
    assert members[".wh.removed-dir"].isreg()
    assert members["bin/sh"].islnk() and members["bin/sh"].linkname == "bin/busybox"
    assert members["bin/ls"].issym()
    assert members["run/fifo"].isfifo()
    assert stat.S_IMODE(members["bin/busybox"].mode) == 0o4755
    assert members["x"].pax_headers["SCHILY.xattr.user.k"].encode("utf-8", "surrogateescape") == b"\x00v"
    names = list(members)
    assert names.index("bin") < names.index("bin/busybox")  # directories before their contents
    again = tmp_path / "again"
    apply_bytes(data, again)
    assert describe(str(again), dir_mtimes=True) == describe(str(upper), dir_mtimes=True)
    assert hardlink_groups(str(again)) == [["bin/busybox", "bin/sh"]]


def test_output_is_deterministic(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    apply_bytes(tar_bytes(LAYER), upper)
    first, _ = diff_bytes_overlay(upper)
    copy = tmp_path / "copy"
    copy_tree(str(upper), str(copy))
    second, _ = diff_bytes_overlay(copy)
    assert first == second


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_output(tmp_path: Path, compression: str) -> None:
    upper = tmp_path / "upper"
    apply_bytes(tar_bytes(LAYER), upper)
    plain, plain_result = diff_bytes_overlay(upper)
    data, result = diff_bytes_overlay(upper, compression)
    assert result.digest == sha256(data) and result.compressed_size == len(data)  # type: ignore[attr-defined]
    assert result.diff_id == plain_result.diff_id  # type: ignore[attr-defined]
    if compression == "zstd":
        assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read() == plain
    dest = tmp_path / "dest"
    dest.mkdir()
    applied = apply_layer(io.BytesIO(data), str(dest))
    assert applied.diff_id == result.diff_id and applied.compression == compression  # type: ignore[attr-defined]


@pytest.mark.skipif(not ROOT, reason="trusted.overlay.* xattrs need CAP_SYS_ADMIN")
def test_overlay_opaque_directory_and_bookkeeping_xattrs(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    apply_bytes(tar_bytes([E("d", "dir", mode=0o750), E("d/.wh..wh..opq"), E("d/new", data=b"n")]), upper)
    os.setxattr(upper / "d", "trusted.overlay.origin", b"\x00junk")
    os.setxattr(upper / "d" / "new", "trusted.overlay.impure", b"y")
    data, _ = diff_bytes_overlay(upper)
    members = tar_members(data)
    assert list(members) == ["d", "d/.wh..wh..opq", "d/new"]
    assert stat.S_IMODE(members["d/.wh..wh..opq"].mode) == 0o750
    assert not [k for m in members.values() for k in m.pax_headers if "trusted.overlay" in k]
    os.setxattr(upper / "d", "trusted.overlay.redirect", b"/elsewhere")
    with pytest.raises(Unsupported, match="redirect"):
        diff_bytes_overlay(upper)


def make_lower(root: Path) -> None:
    (root / "etc" / "ssl").mkdir(parents=True)
    (root / "etc" / "passwd").write_bytes(b"root:x:0:0\n")
    (root / "etc" / "motd").write_bytes(b"hi\n")
    (root / "etc" / "ssl" / "cert").write_bytes(b"cert")
    (root / "var" / "cache" / "apt").mkdir(parents=True)
    (root / "var" / "cache" / "apt" / "pkg").write_bytes(b"pkg")
    (root / "tmp").mkdir()
    (root / "bin").mkdir()
    (root / "bin" / "sh").write_bytes(b"sh")
    os.symlink("sh", root / "bin" / "bash")
    (root / "same-size").write_bytes(b"aaaa")
    whole_seconds(root)


def whole_seconds(root: Path) -> None:
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(dirpath, name), ns=(MTIME * 10**9, MTIME * 10**9), follow_symlinks=False)
    os.utime(root, ns=(MTIME * 10**9, MTIME * 10**9))


def test_naive_diff_against_parent_round_trips(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    make_lower(lower)
    upper = tmp_path / "upper"
    copy_tree(str(lower), str(upper))
    (upper / "etc" / "passwd").write_bytes(b"root:x:0:0\nuser:x:1000:1000\n")
    (upper / "etc" / "motd").unlink()
    shutil.rmtree(upper / "var" / "cache")
    (upper / "tmp" / "new").write_bytes(b"new")
    os.chmod(upper / "bin" / "sh", 0o4755)
    (upper / "bin" / "bash").unlink()
    os.symlink("/bin/sh", upper / "bin" / "bash")
    shutil.rmtree(upper / "etc" / "ssl")
    (upper / "etc" / "ssl").write_bytes(b"now a file")
    (upper / "same-size").write_bytes(b"bbbb")  # same size and mtime: only the contents tell
    whole_seconds(upper)
    out = io.BytesIO()
    result = diff_naive(str(lower), str(upper), out)
    data = out.getvalue()
    names = set(tar_members(data))
    assert names == {
        "bin",
        "bin/bash",
        "bin/sh",
        "etc",
        "etc/.wh.motd",
        "etc/passwd",
        "etc/ssl",
        "same-size",
        "tmp",
        "tmp/new",
        "var",
        "var/.wh.cache",
    } - {"bin", "etc", "tmp", "var"}  # whole-second mtimes reset: directories compare equal
    assert result.diff_id == sha256(data)
    replay = tmp_path / "replay"
    copy_tree(str(lower), str(replay))
    apply_layer(io.BytesIO(data), str(replay), mode="naive")
    assert describe(str(replay)) == describe(str(upper))


def test_naive_diff_from_nothing_is_the_whole_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    make_lower(tree)
    out = io.BytesIO()
    diff_naive(None, str(tree), out)
    replay = tmp_path / "replay"
    apply_bytes(out.getvalue(), replay, mode="naive")
    assert describe(str(replay), dir_mtimes=True) == describe(str(tree), dir_mtimes=True)


def test_unchanged_tree_gives_an_empty_layer(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    make_lower(lower)
    upper = tmp_path / "upper"
    copy_tree(str(lower), str(upper))
    out = io.BytesIO()
    diff_naive(str(lower), str(upper), out)
    assert tar_members(out.getvalue()) == {}

"""apply_layer on well-formed layers: compression, diff IDs, file types, metadata, whiteouts."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from tests.unit.image.layers import MTIME, ROOT, E, describe, gz, hardlink_groups, sha256, tar_bytes, zst

from ketch.common.errors import InvalidArgument, Unsupported
from ketch.image.compression import decompressed, detect_compression
from ketch.image.unpack import apply_layer

BASIC = [
    E("etc", "dir"),
    E("etc/hostname", data=b"ketch\n"),
    E("bin", "dir"),
    E("bin/sh", data=b"\x7fELF", mode=0o755),
    E("bin/ash", "hardlink", linkname="bin/sh"),
    E("bin/busybox", "symlink", linkname="sh"),
]


def apply(tmp_path: Path, data: bytes, mode: str = "overlay", target: str = "t") -> tuple[Path, object]:
    dest = tmp_path / target
    dest.mkdir(exist_ok=True)
    result = apply_layer(io.BytesIO(data), str(dest), mode=mode)  # type: ignore[arg-type]
    return dest, result


@pytest.mark.parametrize("compress", [None, gz, zst], ids=["tar", "gzip", "zstd"])
def test_compression_is_detected_and_diff_id_is_of_the_tar(tmp_path: Path, compress: object) -> None:
    raw = tar_bytes(BASIC)
    data = compress(raw) if callable(compress) else raw
    dest, result = apply(tmp_path, data)
    assert result.diff_id == sha256(raw)  # type: ignore[attr-defined]
    assert result.size == len(raw)  # type: ignore[attr-defined]
    assert result.compression == {None: "none", gz: "gzip", zst: "zstd"}[compress]  # type: ignore[attr-defined,index]
    assert (dest / "etc" / "hostname").read_bytes() == b"ketch\n"
    assert os.readlink(dest / "bin" / "busybox") == "sh"
    assert hardlink_groups(str(dest)) == [["bin/ash", "bin/sh"]]


def test_diff_id_covers_trailing_padding(tmp_path: Path) -> None:
    raw = tar_bytes([E("f", data=b"x")]) + b"\0" * 4096
    _, result = apply(tmp_path, raw)
    assert result.diff_id == sha256(raw)  # type: ignore[attr-defined]


def test_multi_frame_zstd_and_multi_member_gzip(tmp_path: Path) -> None:
    raw = tar_bytes(BASIC)
    half = len(raw) // 2
    for data in (zst(raw[:half]) + zst(raw[half:]), gz(raw[:half]) + gz(raw[half:])):
        dest, result = apply(tmp_path, data, target=f"t{data[:2].hex()}")
        assert result.diff_id == sha256(raw)  # type: ignore[attr-defined]
        assert (dest / "bin" / "sh").read_bytes() == b"\x7fELF"


def test_detect_compression() -> None:
    assert detect_compression(b"\x1f\x8b\x08") == "gzip"
    assert detect_compression(b"\x28\xb5\x2f\xfd") == "zstd"
    assert detect_compression(b"etc/") == "none"
    with pytest.raises(Unsupported, match="xz"):
        detect_compression(b"\xfd7zXZ\x00")
    with pytest.raises(Unsupported, match="bzip2"):
        detect_compression(b"BZh91AY")
    reader, kind = decompressed(io.BytesIO(gz(b"hello world")))
    assert (reader.read(), kind) == (b"hello world", "gzip")
    reader, kind = decompressed(io.BytesIO(b"ab"))
    assert (reader.read(), kind) == (b"ab", "none")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (gz(tar_bytes(BASIC))[:-30], "corrupt or truncated"),
        (b"\x1f\x8b" + b"\x00" * 100, "corrupt"),
        (zst(tar_bytes(BASIC))[:-10], "corrupt"),
        (tar_bytes(BASIC)[:700], "truncated"),
        (b"not a tar at all" * 64, "not a valid tar"),
    ],
    ids=["gzip-truncated", "gzip-garbage", "zstd-truncated", "tar-truncated", "garbage"],
)
def test_corrupt_layers_raise_invalid_argument(tmp_path: Path, data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        apply(tmp_path, data)


def test_metadata_is_preserved(tmp_path: Path) -> None:
    data = tar_bytes(
        [
            E("d", "dir", mode=0o750, mtime=MTIME + 5),
            E("d/suid", data=b"s", mode=0o4755, mtime=MTIME + 1),
            E("d/sgid", data=b"g", mode=0o2711),
            E("sticky", "dir", mode=0o1777),
            E("fifo", "fifo", mode=0o640),
            E("x", data=b"x", xattrs={"user.bin": b"\x00\xff\x01", "user.txt": b"hello"}),
            E("frac", data=b"f", pax={"mtime": "1700000000.123456789", "atime": "1700000100.5"}),
        ]
    )
    dest, _ = apply(tmp_path, data)
    st = os.stat(dest / "d")
    assert stat.S_IMODE(st.st_mode) == 0o750
    assert st.st_mtime_ns == (MTIME + 5) * 10**9  # set after its contents were written
    assert stat.S_IMODE(os.stat(dest / "d" / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(dest / "d" / "sgid").st_mode) == 0o2711
    assert os.stat(dest / "d" / "suid").st_mtime_ns == (MTIME + 1) * 10**9
    assert stat.S_IMODE(os.stat(dest / "sticky").st_mode) == 0o1777
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(dest / "fifo").st_mode) == 0o640
    assert os.getxattr(dest / "x", "user.bin") == b"\x00\xff\x01"
    assert os.getxattr(dest / "x", "user.txt") == b"hello"
    st = os.stat(dest / "frac")
    assert st.st_mtime_ns == 1_700_000_000_123_456_789
    assert st.st_atime_ns == 1_700_000_100_500_000_000


def test_symlink_times_are_its_own(tmp_path: Path) -> None:
    data = tar_bytes(
        [E("target", data=b"t", mtime=MTIME), E("link", "symlink", linkname="target", mtime=MTIME + 9)]
    )
    dest, _ = apply(tmp_path, data)
    assert os.lstat(dest / "link").st_mtime_ns == (MTIME + 9) * 10**9
    assert os.stat(dest / "target").st_mtime_ns == MTIME * 10**9


def test_gnu_and_ustar_formats(tmp_path: Path) -> None:
    long_name = "/".join(["component-" + "x" * 90] * 3) + "/file"
    for i, fmt in enumerate((tarfile.GNU_FORMAT, tarfile.PAX_FORMAT)):
        data = tar_bytes([E(long_name, data=b"long")], fmt=fmt)
        dest, _ = apply(tmp_path, data, target=f"t{i}")
        assert (dest / long_name).read_bytes() == b"long"
    data = tar_bytes([E("short", data=b"s")], fmt=tarfile.USTAR_FORMAT)
    dest, _ = apply(tmp_path, data, target="ustar")
    assert (dest / "short").read_bytes() == b"s"


def test_implied_parents_are_created_0755(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        dest, _ = apply(tmp_path, tar_bytes([E("a/b/c", data=b"c")]))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(dest / "a").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest / "a" / "b").st_mode) == 0o755


def test_root_entry_sets_root_metadata(tmp_path: Path) -> None:
    dest, _ = apply(tmp_path, tar_bytes([E("./", "dir", mode=0o711, mtime=MTIME), E("./f", data=b"")]))
    st = os.stat(dest)
    assert stat.S_IMODE(st.st_mode) == 0o711 and st.st_mtime_ns == MTIME * 10**9


def test_duplicates_last_one_wins(tmp_path: Path) -> None:
    data = tar_bytes(
        [
            E("f", data=b"first"),
            E("f", data=b"second"),
            E("d", "dir"),
            E("d/child", data=b"c"),
            E("d", data=b"now a file"),
            E("g", data=b"file"),
            E("g", "dir", mode=0o700),
            E("s", "symlink", linkname="/etc/passwd"),
            E("s", data=b"plain"),
            E("m", "dir", mode=0o700),
            E("m", "dir", mode=0o755),
        ]
    )
    dest, _ = apply(tmp_path, data)
    assert (dest / "f").read_bytes() == b"second"
    assert (dest / "d").read_bytes() == b"now a file"
    assert (dest / "g").is_dir()
    assert not (dest / "s").is_symlink() and (dest / "s").read_bytes() == b"plain"
    assert stat.S_IMODE(os.stat(dest / "m").st_mode) == 0o755


def test_relative_parent_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    data = tar_bytes(
        [
            E("usr/lib", "dir"),
            E("lib", "symlink", linkname="usr/lib"),
            E("lib/libc.so", data=b"libc"),
            E("a/b", "dir"),
            E("a/b/up", "symlink", linkname="../../usr"),
            E("a/b/up/share", data=b"share"),
        ]
    )
    dest, _ = apply(tmp_path, data)
    assert (dest / "usr" / "lib" / "libc.so").read_bytes() == b"libc"
    assert (dest / "usr" / "share").read_bytes() == b"share"
    assert os.readlink(dest / "lib") == "usr/lib"


def test_hard_link_to_symlink_and_chain(tmp_path: Path) -> None:
    data = tar_bytes(
        [
            E("f", data=b"content"),
            E("h1", "hardlink", linkname="f"),
            E("h2", "hardlink", linkname="/h1"),
            E("s", "symlink", linkname="/nowhere"),
            E("hs", "hardlink", linkname="s"),
        ]
    )
    dest, _ = apply(tmp_path, data)
    assert hardlink_groups(str(dest)) == [["f", "h1", "h2"], ["hs", "s"]]
    assert os.lstat(dest / "hs").st_ino == os.lstat(dest / "s").st_ino
    assert os.readlink(dest / "hs") == "/nowhere"


# -- whiteouts


def lower_tree(tmp_path: Path) -> Path:
    base = tmp_path / "t"
    (base / "etc" / "keep").mkdir(parents=True)
    (base / "etc" / "gone.conf").write_bytes(b"old")
    (base / "etc" / "keep" / "x").write_bytes(b"x")
    (base / "opq" / "deep").mkdir(parents=True)
    (base / "opq" / "old").write_bytes(b"old")
    (base / "opq" / "deep" / "older").write_bytes(b"older")
    (base / "dir-gone" / "sub").mkdir(parents=True)
    return base


WHITEOUT_LAYER = [
    E("etc", "dir"),
    E("etc/.wh.gone.conf"),
    E("etc/.wh.missing"),
    E(".wh.dir-gone"),
    E("opq", "dir"),
    E("opq/new", data=b"new"),
    E("opq/.wh..wh..opq"),
    E("opq/later", data=b"later"),
    E("same", data=b"same layer"),
    E(".wh.same"),  # a whiteout never hides its own layer's entries
    E("nowhere/.wh.x"),
    E(".wh..wh.plnk"),  # aufs metadata: ignored
]


def test_naive_whiteouts_delete_lower_entries(tmp_path: Path) -> None:
    base = lower_tree(tmp_path)
    dest, _ = apply(tmp_path, tar_bytes(WHITEOUT_LAYER), mode="naive")
    assert dest == base
    assert sorted(os.listdir(dest / "etc")) == ["keep"]
    assert not (dest / "dir-gone").exists()
    assert sorted(os.listdir(dest / "opq")) == ["later", "new"]
    assert (dest / "same").read_bytes() == b"same layer"
    assert not (dest / "nowhere").exists()  # nothing below to hide: no directory made for it
    assert not any(name.startswith(".wh.") for _, dirs, files in os.walk(dest) for name in dirs + files)


def test_overlay_whiteouts_become_devices(tmp_path: Path) -> None:
    dest, _ = apply(tmp_path, tar_bytes([e for e in WHITEOUT_LAYER if "opq" not in e.name]))
    for rel in ("etc/gone.conf", "etc/missing", "dir-gone", "nowhere/x"):
        st = os.lstat(dest / rel)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, rel
    assert (dest / "same").read_bytes() == b"same layer"
    assert not (dest / ".wh..wh.plnk").exists()


@pytest.mark.skipif(not ROOT, reason="trusted.overlay.opaque needs CAP_SYS_ADMIN")
def test_overlay_opaque_sets_the_xattr(tmp_path: Path) -> None:
    dest, _ = apply(tmp_path, tar_bytes(WHITEOUT_LAYER))
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(dest / "opq")) == ["later", "new"]
    with pytest.raises(OSError):
        os.getxattr(dest / "etc", "trusted.overlay.opaque")


@pytest.mark.skipif(ROOT, reason="checks the error an unprivileged caller gets")
def test_overlay_opaque_without_privilege_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(Unsupported, match="CAP_SYS_ADMIN"):
        apply(tmp_path, tar_bytes([E("d", "dir"), E("d/.wh..wh..opq")]))


def test_layer_xattrs_cannot_forge_overlay_state(tmp_path: Path) -> None:
    data = tar_bytes(
        [E("d", "dir", xattrs={"trusted.overlay.opaque": b"y", "trusted.overlay.redirect": b"/x"})]
    )
    dest, _ = apply(tmp_path, data)
    assert not [n for n in os.listxattr(dest / "d") if n.startswith("trusted.overlay.")]


# -- ownership and devices


@pytest.mark.skipif(not ROOT, reason="ownership and mknod need root")
def test_owners_devices_and_capabilities(tmp_path: Path) -> None:
    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # v2: cap_net_bind_service permitted
    data = tar_bytes(
        [
            E("dev", "dir", uid=0, gid=0),
            E("dev/null", "char", mode=0o666, dev=(1, 3)),
            E("dev/loop0", "block", mode=0o660, dev=(7, 0), gid=6),
            E("home", "dir", uid=1000, gid=1000, mode=0o700),
            E("home/file", data=b"mine", uid=1000, gid=1001, mode=0o4750),
            E("home/link", "symlink", linkname="file", uid=1000, gid=1000),
            E("ping", data=b"elf", mode=0o755, xattrs={"security.capability": cap}),
        ]
    )
    dest, _ = apply(tmp_path, data)
    null = os.lstat(dest / "dev" / "null")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(dest / "dev" / "loop0")
    assert stat.S_ISBLK(loop.st_mode) and loop.st_gid == 6
    home = os.stat(dest / "home")
    assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1000, 1000, 0o700)
    f = os.stat(dest / "home" / "file")
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1000, 1001, 0o4750)
    link = os.lstat(dest / "home" / "link")
    assert (link.st_uid, link.st_gid) == (1000, 1000)
    assert os.getxattr(dest / "ping", "security.capability") == cap


@pytest.mark.skipif(ROOT, reason="checks what an unprivileged caller skips")
def test_without_root_devices_and_owners_are_skipped(tmp_path: Path) -> None:
    data = tar_bytes([E("null", "char", dev=(1, 3)), E("f", data=b"x", uid=1234), E("fifo", "fifo")])
    dest, _ = apply(tmp_path, data)
    assert not (dest / "null").exists()
    assert os.stat(dest / "f").st_uid == os.geteuid()
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)


def test_naive_and_overlay_agree_without_lower_layers(tmp_path: Path) -> None:
    data = tar_bytes([*BASIC, E("fifo", "fifo"), E("x", data=b"1", xattrs={"user.a": b"b"})])
    a, _ = apply(tmp_path, data, mode="overlay", target="a")
    b, _ = apply(tmp_path, data, mode="naive", target="b")
    assert describe(str(a), dir_mtimes=True) == describe(str(b), dir_mtimes=True)


def test_bad_mode_and_missing_target(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="mode"):
        apply_layer(io.BytesIO(b""), str(tmp_path), mode="aufs")  # type: ignore[arg-type]
    from ketch.common.errors import SystemFailure

    with pytest.raises(SystemFailure, match="missing"):
        apply_layer(io.BytesIO(b""), str(tmp_path / "missing"))

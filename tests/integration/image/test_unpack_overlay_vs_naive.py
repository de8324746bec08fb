"""The same layers unpacked into overlay snapshots (then mounted) and into naive snapshots give one tree.

Types, modes (setuid included), owners, link targets, device numbers, contents, file mtimes, xattrs and
hard links are compared; directory mtimes are not (a whiteout in naive mode touches its directory).
"""

from __future__ import annotations

import io
import os
import stat
import time
from pathlib import Path

import pytest
from tests.unit.image.layers import E, describe, gz, hardlink_groups, mounted, tar_bytes, zst

from ketch.image.content import ContentStore
from ketch.image.diff import diff_naive, diff_overlay
from ketch.image.snapshots import NaiveSnapshotter, OverlaySnapshotter, Snapshotter
from ketch.image.unpack import unpack_layer

pytestmark = pytest.mark.root

CAP = bytes.fromhex("0100000200200000000000000000000000000000")

LAYERS: list[tuple[str, list[E]]] = [
    (
        "tar",
        [
            E("bin", "dir"),
            E("bin/busybox", data=b"\x7fELF busybox", mode=0o755),
            E("bin/sh", "hardlink", linkname="bin/busybox"),
            E("bin/ls", "symlink", linkname="busybox"),
            E("bin/su", data=b"su", mode=0o4755),
            E("bin/ping", data=b"ping", mode=0o755, xattrs={"security.capability": CAP}),
            E("dev", "dir"),
            E("dev/null", "char", mode=0o666, dev=(1, 3)),
            E("dev/sda", "block", mode=0o660, gid=6, dev=(8, 0)),
            E("dev/initctl", "fifo", mode=0o600),
            E("etc", "dir"),
            E("etc/passwd", data=b"root:x:0:0\n"),
            E("etc/shadow", data=b"root:*\n", mode=0o640, gid=42),
            E("etc/motd", data=b"motd\n"),
            E("etc/conf.d", "dir"),
            E("etc/conf.d/a", data=b"a"),
            E("etc/conf.d/b", data=b"b"),
            E("home/user", "dir", uid=1000, gid=1000, mode=0o700),
            E("home/user/.profile", data=b"export X=1\n", uid=1000, gid=1000, xattrs={"user.tag": b"v1"}),
            E("tmp", "dir", mode=0o1777),
            E("var/cache/apt", "dir"),
            E("var/cache/apt/pkgcache.bin", data=b"\0" * 4096),
            E("replace-me", "dir"),
            E("replace-me/child", data=b"c"),
            E("becomes-dir", data=b"file"),
        ],
    ),
    (
        "gzip",
        [
            E("etc", "dir"),
            E("etc/.wh.motd"),
            E("etc/conf.d", "dir", mode=0o750),
            E("etc/conf.d/.wh..wh..opq"),
            E("etc/conf.d/c", data=b"c"),
            E("var/.wh.cache"),
            E(".wh.replace-me"),
            E("replace-me", data=b"now a file", mode=0o600),
            E("becomes-dir", "dir", uid=7, gid=7),
            E("becomes-dir/x", data=b"x"),
            E("home/user", "dir", uid=1000, gid=1000, mode=0o700),
            E("home/user/.profile", data=b"export X=2\n", uid=1000, gid=1000, xattrs={"user.tag": b"v2"}),
            E("bin", "dir"),
            E("bin/su", data=b"su2", mode=0o4750, gid=10),
        ],
    ),
    (
        "zstd",
        [
            E("etc", "dir"),
            E("etc/motd", data=b"back again\n"),
            E("dev", "dir"),
            E("dev/.wh.sda"),
            E("dev/zero", "char", mode=0o666, dev=(1, 5)),
            E("usr/local/bin", "dir"),
            E("usr/local/bin/tool", data=b"tool", mode=0o2755, gid=50),
            E("usr/local/bin/tool-link", "hardlink", linkname="usr/local/bin/tool"),
        ],
    ),
]


def ingest_layers(store: ContentStore) -> list[str]:
    digests = []
    for compression, entries in LAYERS:
        raw = tar_bytes(entries)
        blob = {"tar": raw, "gzip": gz(raw), "zstd": zst(raw)}[compression]
        digests.append(store.ingest_bytes(blob))
    return digests


def unpack_all(store: ContentStore, snap: Snapshotter, digests: list[str]) -> str:
    parent = ""
    for i, digest in enumerate(digests):
        applied = unpack_layer(store, snap, digest, name=f"layer-{i}", parent=parent)
        assert applied.compression == LAYERS[i][0] if LAYERS[i][0] != "tar" else applied.compression == "none"
        parent = f"layer-{i}"
    return parent


def test_overlay_mounted_equals_naive(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path / "root"))
    digests = ingest_layers(store)
    overlay = OverlaySnapshotter(str(tmp_path / "root"))
    naive = NaiveSnapshotter(str(tmp_path / "root"))
    top_o = unpack_all(store, overlay, digests)
    top_n = unpack_all(store, naive, digests)
    naive_tree = naive.fs_dir(top_n)
    with mounted(overlay.view("view", top_o), str(tmp_path / "mnt")) as mnt:
        merged = describe(mnt)
        merged_links = hardlink_groups(mnt)
        root = Path(mnt)
        # what the layers promise, checked on the mounted overlay
        assert (root / "etc" / "motd").read_bytes() == b"back again\n"
        assert sorted(os.listdir(root / "etc" / "conf.d")) == ["c"]
        assert not (root / "var" / "cache").exists()
        assert (root / "replace-me").read_bytes() == b"now a file"
        assert sorted(os.listdir(root / "dev")) == ["initctl", "null", "zero"]
        null = os.lstat(root / "dev" / "null")
        assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
        home = os.stat(root / "home" / "user")
        assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1000, 1000, 0o700)
        su = os.stat(root / "bin" / "su")
        assert (su.st_gid, stat.S_IMODE(su.st_mode)) == (10, 0o4750)
        assert os.getxattr(root / "bin" / "ping", "security.capability") == CAP
        assert os.readlink(root / "bin" / "ls") == "busybox"
    assert merged == describe(naive_tree)
    assert merged_links == hardlink_groups(naive_tree)
    assert ["bin/busybox", "bin/sh"] in merged_links
    assert ["usr/local/bin/tool", "usr/local/bin/tool-link"] in merged_links


def test_diffs_of_both_drivers_replay_to_the_same_tree(tmp_path: Path) -> None:
    """Changes made in a container, turned into a layer by each driver's diff, replay identically."""
    store = ContentStore(str(tmp_path / "root"))
    digests = ingest_layers(store)
    overlay = OverlaySnapshotter(str(tmp_path / "root"))
    naive = NaiveSnapshotter(str(tmp_path / "root"))
    top_o = unpack_all(store, overlay, digests)
    top_n = unpack_all(store, naive, digests)

    started = time.time_ns() // 10**9 * 10**9
    stamp = started + 10**9

    def change(root: Path) -> None:
        (root / "etc" / "passwd").write_bytes(b"root:x:0:0\nuser:x:1000:1000\n")
        (root / "etc" / "shadow").unlink()
        os.chmod(root / "tmp", 0o1770)
        (root / "tmp" / "scratch").write_bytes(b"s")
        os.chown(root / "tmp" / "scratch", 1000, 1000)
        os.mknod(root / "dev" / "full", 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        for dirpath, dirs, files in os.walk(root):
            for name in dirs + files:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                # whole seconds: a tar entry keeps no more; what this change touched gets one fixed time, so
                # the two copies match even when a second boundary falls between them
                s = stamp if st.st_mtime_ns >= started else st.st_mtime_ns // 10**9 * 10**9
                os.utime(p, ns=(s, s), follow_symlinks=False)

    with mounted(overlay.prepare("ctr-o", top_o), str(tmp_path / "mo")) as mnt:
        change(Path(mnt))
    naive.prepare("ctr-n", top_n)
    change(Path(naive.fs_dir("ctr-n")))

    out_o, out_n = io.BytesIO(), io.BytesIO()
    diff_overlay(overlay.fs_dir("ctr-o"), out_o)
    diff_naive(naive.fs_dir(top_n), naive.fs_dir("ctr-n"), out_n)
    d_o = store.ingest_bytes(out_o.getvalue())
    d_n = store.ingest_bytes(out_n.getvalue())
    unpack_layer(store, naive, d_o, name="replay-o", parent=top_n)
    unpack_layer(store, naive, d_n, name="replay-n", parent=top_n)
    expected = describe(naive.fs_dir("ctr-n"))
    assert describe(naive.fs_dir("replay-o")) == expected
    assert describe(naive.fs_dir("replay-n")) == expected

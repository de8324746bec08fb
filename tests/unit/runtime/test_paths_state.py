"""secure_join keeps every path inside the root; ContainerState derives the status from the process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ketch.common.errors import Conflict, InvalidArgument, NotFound
from ketch.runtime.paths import open_in_root, secure_join
from ketch.runtime.state import ContainerState, check_id, list_ids


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "usr/lib").mkdir(parents=True)
    os.symlink("/", r / "abs-root")
    os.symlink("../../../../..", r / "usr/up")
    os.symlink("/usr/lib", r / "lib")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink(str(tmp_path), r / "host-abs")
    return r


@pytest.mark.parametrize(
    "unsafe,expected",
    [
        ("/etc/passwd", "etc/passwd"),
        ("etc/../../../../etc", "etc"),
        ("/abs-root/etc", "etc"),
        ("/usr/up/etc", "etc"),
        ("/lib/x", "usr/lib/x"),
        ("/host-abs/secret", None),  # an absolute link to a host path stays inside: root + that path
        ("/new/dir", "new/dir"),
    ],
)
def test_secure_join_stays_inside(root: Path, unsafe: str, expected: str | None, tmp_path: Path) -> None:
    resolved = secure_join(str(root), unsafe)
    assert resolved.startswith(str(root) + "/")
    if expected is None:
        assert resolved == str(root) + str(tmp_path) + "/secret"
    else:
        assert resolved == str(root / expected)


def test_secure_join_symlink_loop(root: Path) -> None:
    with pytest.raises(OSError, match="too many levels"):
        secure_join(str(root), "/loop1/x")


def test_open_in_root(root: Path) -> None:
    path, fd = open_in_root(str(root), "/abs-root/usr/lib")
    try:
        assert path == str(root / "usr/lib")
        assert os.readlink(f"/proc/self/fd/{fd}") == str(root / "usr/lib")
    finally:
        os.close(fd)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a b", "x" * 1025])
def test_container_ids(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        check_id(bad)
    assert check_id("my_container-1.2+x") == "my_container-1.2+x"


def test_state_lifecycle_on_disk(tmp_path: Path) -> None:
    st = ContainerState.reserve(str(tmp_path), "c1")
    with pytest.raises(Conflict, match="container with id exists: c1"):
        ContainerState.reserve(str(tmp_path), "c1")
    assert list_ids(str(tmp_path)) == []  # reserved but not yet saved
    from ketch.runtime.state import proc_start_time

    start = proc_start_time(os.getpid())
    assert start is not None
    st.data = {
        "pid": os.getpid(),
        "pid_start": start[0],
        "bundle": "/b",
        "config": {"annotations": {"a": "b"}},
    }
    st.save()
    loaded = ContainerState.load(str(tmp_path), "c1")
    assert loaded.status(frozen=False) == "running"
    os.mkfifo(loaded.fifo)
    assert loaded.status() == "created"
    os.unlink(loaded.fifo)
    assert loaded.status(frozen=True) == "paused"
    assert loaded.oci_state()["annotations"] == {"a": "b"}
    loaded.data["pid_start"] = start[0] + 1  # the pid was recycled by another process
    assert loaded.status() == "stopped" and loaded.oci_state()["pid"] == 0
    loaded.remove()
    with pytest.raises(NotFound, match="does not exist"):
        ContainerState.load(str(tmp_path), "c1")


def test_corrupt_state(tmp_path: Path) -> None:
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2/state.json").write_text("{broken")
    with pytest.raises(InvalidArgument, match="corrupt state for container c2"):
        ContainerState.load(str(tmp_path), "c2")

"""Test tiers and shared fixtures.

Root tests need euid 0 and the kernel features they exercise; each probe that fails turns into a skip
whose reason names it. Everything a test makes lives under a per-session temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.fakes import busybox  # noqa: E402


def _probe_root() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    try:
        subprocess.run(["unshare", "--mount", "--pid", "--fork", "true"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"unshare does not work here: {exc}"
    with open("/proc/filesystems") as f:
        if "cgroup" not in f.read():
            return "no cgroup filesystem"
    if not os.path.exists("/sys/fs/cgroup"):
        return "no /sys/fs/cgroup"
    if not busybox.BUSYBOX or not os.path.exists(busybox.BUSYBOX):
        return "busybox-static is not installed"
    return None


ROOT_SKIP = _probe_root()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ROOT_SKIP and (item.get_closest_marker("root") or item.get_closest_marker("interop")):
            item.add_marker(pytest.mark.skip(reason=ROOT_SKIP))


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ketch-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_rootfs(session_dir: Path) -> Path:
    """A pristine busybox rootfs; tests copy it (see ``bundle``) rather than write to it."""
    return Path(busybox.make_rootfs(str(session_dir / "busybox-rootfs")))


@pytest.fixture(scope="session")
def runtime_bin() -> str:
    """The ketch-runtime command of the environment the tests run in."""
    candidate = Path(sys.executable).parent / "ketch-runtime"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ketch-runtime")
    if not found:
        pytest.skip("ketch-runtime is not installed (run `make venv`)")
    return found


@pytest.fixture
def unique_id() -> str:
    return "kt-" + uuid.uuid4().hex[:12]

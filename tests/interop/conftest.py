"""Session fixtures for the interop tests: a private dockerd and a private podman set-up, each loaded with a
busybox image imported from a local tarball (no registry), each removed whole at the end of the session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes import busybox
from tests.interop import daemons
from tests.interop.ketchd import Ketchd


@pytest.fixture(scope="session")
def busybox_tar(session_dir: Path) -> Path:
    rootfs = Path(busybox.make_rootfs(str(session_dir / "interop-rootfs")))
    return daemons.make_rootfs_tar(rootfs, session_dir / "interop-rootfs.tar")


def _missing(*paths: str) -> str | None:
    for path in paths:
        if not (os.path.exists(path) if path.startswith("/") else shutil.which(path)):
            return path
    return None


@pytest.fixture(scope="session")
def dockerd(runtime_bin: str, busybox_tar: Path) -> Iterator[daemons.Dockerd]:
    missing = _missing(daemons.DOCKERD, daemons.DOCKER_CLI, "containerd", "containerd-shim-runc-v2", "runc")
    if missing:
        pytest.skip(f"docker interop needs {missing} (Debian packages docker.io, containerd, runc)")
    base = Path(tempfile.mkdtemp(prefix="ketch-dockerd-"))
    daemon = daemons.Dockerd(base, runtime_bin)
    try:
        daemon.start()
        daemon.client(daemons.DOCKER_CLI)(None, "import", str(busybox_tar), "busybox:ketch", check=True)
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_setup(runtime_bin: str, busybox_tar: Path) -> Iterator[tuple[daemons.PodmanSetup, daemons.Podman]]:
    missing = _missing("podman", "conmon", "runc")
    if missing:
        pytest.skip(f"podman interop needs {missing} (Debian packages podman, conmon, runc)")
    base = Path(tempfile.mkdtemp(prefix="ketch-podman-"))
    setup = daemons.PodmanSetup(base, runtime_bin, shutil.which("podman") or "podman")
    client = None
    try:
        client = setup.client()
        imported = client(None, "import", str(busybox_tar), client.image)
        if imported.returncode != 0:  # overlay may not work on the temporary directory's filesystem
            setup.stop(client)
            setup.driver = "vfs"
            client = setup.client()
            client(None, "import", str(busybox_tar), client.image, check=True)
        yield setup, client
    finally:
        setup.stop(client)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def ketchd(busybox_tar: Path) -> Iterator[Ketchd]:
    """One private ketchd for the session, with busybox imported as ``busybox:ketch``."""
    daemon = Ketchd()
    try:
        daemon.start()
        daemon.ok("import", str(busybox_tar), "busybox:ketch")
        yield daemon
    finally:
        daemon.cleanup()

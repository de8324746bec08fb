"""What ``/version`` reports, gathered from this host and this installation.

Docker's fields were made for a Go binary; ketch fills them with the nearest real thing:
``GoVersion`` is the Python that runs ketch (``python3.11.7``), ``GitCommit`` the commit of the source tree
when it is a git checkout (else ``""``), ``BuildTime`` when the installed distribution's metadata was
written (a Python package has no build step; ``""`` when ketch runs from a tree that is not installed),
``Arch`` the Go name of the machine (``amd64``, ``arm64``) and ``KernelVersion`` the ``uname`` release.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import ketch
from ketch.spec.engine_api import API_VERSION, MIN_API
from ketch.spec.platform import host_platform

__all__ = ["EngineVersion", "HostSystem", "collect_version"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineVersion:
    version: str
    api_version: str
    min_api_version: str
    git_commit: str
    runtime: str  # reported as GoVersion
    os: str
    arch: str
    kernel_version: str
    build_time: str
    platform_name: str = "ketch"


def _git_commit() -> str:
    source = Path(ketch.__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short=7", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _build_time() -> str:
    try:
        dist = importlib.metadata.distribution("ketch")
    except importlib.metadata.PackageNotFoundError:
        return ""
    if dist.version != ketch.__version__:
        return ""  # another ketch is installed than the one running
    metadata = next((f for f in dist.files or () if f.name == "METADATA"), None)
    if metadata is None:
        return ""
    try:
        mtime = os.stat(Path(str(dist.locate_file(metadata)))).st_mtime
    except OSError:
        return ""
    # Go's time format as dockerd prints it: nanoseconds and a numeric zone.
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000+00:00")


def collect_version() -> EngineVersion:
    uname = os.uname()
    return EngineVersion(
        version=ketch.__version__,
        api_version=API_VERSION,
        min_api_version=MIN_API,
        git_commit=_git_commit(),
        runtime=f"python{platform.python_version()}",
        os=uname.sysname.lower(),
        arch=host_platform().architecture,
        kernel_version=uname.release,
        build_time=_build_time(),
    )


class HostSystem:
    """The system backend for this host (satisfies ``routes.system.SystemBackend``); gathers once."""

    @functools.cache  # noqa: B019  # one instance per process; the cache is meant to live as long
    def version(self) -> EngineVersion:
        return collect_version()

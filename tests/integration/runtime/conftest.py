"""Fixtures for driving ``ketch-runtime`` on real bundles as root."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import busybox


class Runtime:
    """One ``--root`` per test; every container it made is force-deleted at teardown."""

    def __init__(self, binary: str, root: Path, work: Path, rootfs: Path) -> None:
        self.binary = binary
        self.root = root
        self.work = work
        self.rootfs = rootfs
        self.ids: list[str] = []

    def __call__(
        self,
        *args: str,
        check: bool = False,
        timeout: float = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ketch-runtime; output goes through files, not pipes, because a detached container keeps
        the runtime's stdout and stderr open after the runtime exits."""
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                [self.binary, "--root", str(self.root), *args],
                timeout=timeout,
                check=False,
                stdout=out,
                stderr=err,
                input=input.encode() if input else None,
                stdin=None if input else subprocess.DEVNULL,
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(
                proc.args,
                proc.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )
        if check and result.returncode != 0:
            raise AssertionError(
                f"ketch-runtime {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def bundle(self, args: list[str], name: str = "bundle", **overrides: Any) -> Path:
        path = self.work / name
        busybox.make_bundle(str(path), args, rootfs_from=str(self.rootfs))
        config = busybox.make_config(args)
        for key, value in overrides.items():
            if key == "process":
                config["process"].update(value)
            elif key == "linux":
                config["linux"].update(value)
            else:
                config[key] = value
        busybox.write_config(str(path), config)
        return path

    def config(self, bundle: Path) -> dict[str, Any]:
        import json

        return json.loads((bundle / "config.json").read_text())

    def write_config(self, bundle: Path, config: dict[str, Any]) -> None:
        busybox.write_config(str(bundle), config)

    def run(
        self, bundle: Path, container_id: str, *extra: str, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        self.ids.append(container_id)
        return self("run", "--bundle", str(bundle), *extra, container_id, **kwargs)

    def create(
        self,
        bundle: Path,
        container_id: str,
        *extra: str,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        self.ids.append(container_id)
        return self("create", "--bundle", str(bundle), *extra, container_id, **kwargs)

    def state(self, container_id: str) -> dict[str, Any]:
        import json

        proc = self("state", container_id, check=True)
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def cleanup(self) -> None:
        for container_id in self.ids:
            self("delete", "--force", container_id)


@pytest.fixture
def rt(runtime_bin: str, busybox_rootfs: Path, tmp_path: Path) -> Iterator[Runtime]:
    root = tmp_path / "state"
    runtime = Runtime(runtime_bin, root, tmp_path, busybox_rootfs)
    yield runtime
    runtime.cleanup()
    # the compiled seccomp programs are a cache the runtime keeps on purpose, not a container's state
    leftovers = [n for n in os.listdir(root) if n != ".seccomp"] if root.exists() else []
    assert leftovers == [], f"state left behind: {leftovers}"
    # A container's mounts live in its own mount namespace; none may appear in the host's.
    assert [m for m in _mounts() if m.startswith(str(tmp_path))] == [], "mounts left behind"
    shutil.rmtree(tmp_path, ignore_errors=True)


def _mounts() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def cgroup_dirs(container_id: str) -> list[str]:
    """Directories named after the container under any cgroup hierarchy (runc's default cgroupsPath)."""
    found = []
    base = Path("/sys/fs/cgroup")
    for hierarchy in [base, *[p for p in base.iterdir() if p.is_dir()]]:
        if (hierarchy / container_id).exists():
            found.append(str(hierarchy / container_id))
    return found

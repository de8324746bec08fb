"""Shared set-up of the shim's integration tests: a per-test state dir, bundle and runtime --root."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import busybox

from ketch.shim.monitor import MonitorConfig
from ketch.spec import stdcopy


@pytest.fixture(params=["ketch-runtime", "runc"])
def runtime(request: pytest.FixtureRequest, runtime_bin: str) -> str:
    if request.param == "runc":
        found = shutil.which("runc")
        if not found:
            pytest.skip("runc is not installed")
        return found
    return runtime_bin


class Setup:
    def __init__(self, runtime: str, rootfs: Path, container_id: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ks-"))  # short: shim.sock must fit sun_path
        self.runtime = runtime
        self.rootfs = rootfs
        self.id = container_id
        self.pids: list[int] = []
        self.process: dict[str, Any] = {}

    def config(
        self, args: list[str], *, edit: Callable[[dict[str, Any]], None] | None = None, **overrides: object
    ) -> MonitorConfig:
        """A MonitorConfig for a busybox bundle running ``args``; ``edit`` may change its config.json, and
        ``tty=True`` sets process.terminal."""
        bundle = self.dir / "b"
        busybox.make_bundle(str(bundle), args, rootfs_from=str(self.rootfs))
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["terminal"] = bool(overrides.get("tty"))
        if edit is not None:
            edit(spec)
        busybox.write_config(str(bundle), spec)
        self.process = spec["process"]
        fields: dict[str, object] = dict(
            container_id=self.id,
            bundle=str(bundle),
            state_dir=str(self.dir / "s"),
            runtime=self.runtime,
            runtime_root=str(self.dir / "r"),
            log_path=str(self.dir / f"{self.id}-json.log"),
        )
        fields.update(overrides)
        return MonitorConfig(**fields)  # type: ignore[arg-type]

    def exec_spec(self, name: str, args: list[str], *, tty: bool = False) -> str:
        """An OCI process.json for ``exec``, derived from the bundle's process as the engine does."""
        path = self.dir / f"{name}.json"
        path.write_text(json.dumps({**self.process, "args": args, "terminal": tty}))
        return str(path)

    def track(self, *pids: int) -> None:
        self.pids += pids

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    @classmethod
    def wait_gone(cls, pid: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while cls.alive(pid):
            assert time.monotonic() < deadline, f"process {pid} still running"
            time.sleep(0.02)

    @staticmethod
    def read_until(sock: socket.socket, done: Callable[[bytes], bool], timeout: float = 20) -> bytes:
        """Raw bytes from ``sock`` until ``done(received)`` or the end of the stream."""
        sock.settimeout(timeout)
        got = b""
        while not done(got):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got

    @staticmethod
    def demux(raw: bytes) -> dict[int, bytes]:
        """stdcopy frames -> {stream: payload}."""
        out: dict[int, bytes] = {stdcopy.STDOUT: b"", stdcopy.STDERR: b""}
        for frame in stdcopy.Decoder().feed(raw):
            out[frame.stream] += frame.payload
        return out

    def cleanup(self) -> None:
        for pid in self.pids:
            if self.alive(pid):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(
            [self.runtime, "--root", str(self.dir / "r"), "delete", "--force", self.id],
            capture_output=True,
            check=False,
        )
        for pid in self.pids:
            self.wait_gone(pid)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def setup(runtime: str, busybox_rootfs: Path, unique_id: str) -> Iterator[Setup]:
    s = Setup(runtime, busybox_rootfs, unique_id)
    yield s
    s.cleanup()

"""A private ketchd for interop tests: its own data root, exec root, socket and cgroup parent in one temporary
directory, stopped and cleaned whole (containers, monitors, mounts, cgroups) at the end.

``kill()`` SIGKILLs the daemon and leaves containers and monitors running, as the restart test needs;
``start()`` again reattaches. ``cleanup()`` removes every container through the API, then stops any monitor
or container process still around by pid (monitors are found through SO_PEERCRED on their shim.sock),
unmounts what is left under the directory and removes it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKER_CLIS = {"20.10": "/usr/bin/docker", "28": "/usr/local/bin/docker"}


def available_clis() -> dict[str, str]:
    return {name: path for name, path in DOCKER_CLIS.items() if os.access(path, os.X_OK)}


class Ketchd:
    def __init__(
        self, base: Path | None = None, *, extra_args: tuple[str, ...] = (), log_level: str = "debug"
    ) -> None:
        self.log_level = log_level
        self.base = base or Path(tempfile.mkdtemp(prefix="kd-"))
        self.data_root = self.base / "data"
        self.exec_root = self.base / "exec"
        self.socket = self.base / "ketch.sock"
        self.log_path = self.base / "ketchd.log"
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.base / "docker-config")
        env.pop("DOCKER_CONTEXT", None)
        return env

    def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "src")
        # A safety net: a registry that is not on loopback goes to a dead proxy on loopback, so no test can
        # reach (or even look up) a public registry, whatever a client asks the daemon to pull.
        env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
                   NO_PROXY="127.0.0.1,localhost,::1")  # fmt: skip
        argv = [
            sys.executable, "-m", "ketch.daemon", "--data-root", str(self.data_root), "--exec-root",
            str(self.exec_root), "-H", self.host, "--pidfile", str(self.base / "ketchd.pid"), "-l", self.log_level,
            *self.extra_args,
        ]  # fmt: skip
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ketchd exited {self.proc.returncode}:\n{self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"ketchd did not answer within {timeout}s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            try:
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
            except OSError:
                return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, the way a crash ends it: its monitors and containers go on."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def docker(self, *args: str, cli: str = "/usr/bin/docker", input: str | None = None,
               timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
        done = subprocess.run([cli, *args], env=self.env, capture_output=True, text=True, input=input,
                              timeout=timeout, check=False)  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr}\n"
                                 f"ketchd log:\n{self.log_tail()}")  # fmt: skip
        return done

    def ok(self, *args: str, cli: str = "/usr/bin/docker", input: str | None = None) -> str:
        return self.docker(*args, cli=cli, input=input, check=True).stdout

    def _remove_own_network_leftovers(self) -> None:
        left = _remove_own_network_leftovers_of(self.exec_root)
        if left:  # ketchd's close() should have: say so, but leave the host clean either way
            print(f"warning: ketchd at {self.base} left {', '.join(left)} behind; removed", file=sys.stderr)

    def monitor_pids(self) -> list[int]:
        pids = []
        for path in glob.glob(str(self.exec_root / "m" / "*" / "shim.sock")):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                try:
                    sock.connect(path)
                    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                except OSError:
                    continue
            pids.append(struct.unpack("3i", creds)[0])
        return pids

    def cleanup(self) -> None:
        if self.proc is None and self.data_root.exists():
            with contextlib.suppress(RuntimeError):
                self.start()
        if self.proc is not None:
            ids = self.docker("ps", "-aq", timeout=30).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, timeout=120)
        monitors = self.monitor_pids()
        self.stop()
        for pid in monitors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for state in glob.glob(str(self.exec_root / "runtime" / "*" / "*" / "state.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                pid = int(json.loads(Path(state).read_text())["pid"])
                os.kill(pid, signal.SIGKILL)
        self._remove_own_network_leftovers()
        _unmount_under(str(self.base))
        for cgroup in glob.glob("/sys/fs/cgroup/*/ketch") + glob.glob("/sys/fs/cgroup/unified/ketch"):
            for sub in sorted(glob.glob(cgroup + "/*/"), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(sub)
        shutil.rmtree(self.base, ignore_errors=True)


def _remove_own_network_leftovers_of(exec_root: Path) -> list[str]:
    """The default bridge and nft tables a stopped ketchd of ``exec_root`` should have removed; removes and
    names what is left (only this daemon's names, derived from its exec root as ketchd derives them)."""
    from ketch.engine.networks import instance_names

    bridge_name, table = instance_names(str(exec_root))
    left = []
    if subprocess.run(["ip", "link", "show", bridge_name], capture_output=True, check=False).returncode == 0:
        subprocess.run(["ip", "link", "del", bridge_name], capture_output=True, check=False)
        left.append(bridge_name)
    for family in ("ip", "ip6"):
        if (
            subprocess.run(
                ["nft", "list", "table", family, table], capture_output=True, check=False
            ).returncode
            == 0
        ):
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True, check=False)
            left.append(f"{family} {table}")
    return left


def _unmount_under(prefix: str) -> None:
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)

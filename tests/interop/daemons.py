"""Private dockerd and podman set-ups for the interop tests, and uniform clients for them.

Each engine gets one temporary directory for its data, state, sockets, logs and configuration, and one
cgroup parent of its own; teardown removes the containers, stops every process it started by pid
(SIGTERM, a wait, then SIGKILL), unmounts whatever is left under the directory and removes it. The few
host paths these daemons create outside their directories whatever they are told (see ``HostTraces``)
are removed again when they did not exist before. No daemon touches the host's network: dockerd runs
with ``--bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false`` and podman
containers get ``--network none``; images come from a local tarball (``--pull never`` everywhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

RUNTIMES = ("runc", "ketch")
DOCKERD = "/usr/sbin/dockerd"
DOCKER_CLI = "/usr/bin/docker"
DOCKER_CLI_NEW = "/usr/local/bin/docker"
SCRIPT = shutil.which("script")

# Host paths dockerd and podman create whatever they are told. Directories are removed only while empty;
# "trees" are caches these tools own outright and are removed whole.
DOCKER_HOST_DIRS = ("/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd")
DOCKER_HOST_FILES = ("/etc/docker/key.json",)
PODMAN_HOST_TREES = ("/var/lib/containers/cache", "/var/cache/containers", "/run/ketch-runtime")
PODMAN_HOST_DIRS = ("/var/lib/containers", "/run/containers/networks", "/run/containers", "/run/runc",
                    "/run/crun")  # fmt: skip
PODMAN_HOST_FILES = ("/dev/shm/libpod_lock",)


def clean_text(text: str) -> str:
    """Terminal output without carriage returns, and without the NUL (echoed as ^@) that ``script`` sends
    the pty when its own stdin ends."""
    return text.replace("\r", "").replace("\x00", "").replace("^@", "")


def make_rootfs_tar(rootfs: Path, tar_path: Path) -> Path:
    with tarfile.open(tar_path, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    return tar_path


class HostTraces:
    """Records which of some host paths exist; ``remove`` deletes those that appeared since."""

    def __init__(
        self, *, files: Sequence[str] = (), dirs: Sequence[str] = (), trees: Sequence[str] = ()
    ) -> None:
        self.files = [p for p in files if not os.path.lexists(p)]
        self.dirs = [p for p in dirs if not os.path.lexists(p)]
        self.trees = [p for p in trees if not os.path.lexists(p)]

    def remove(self) -> None:
        for path in self.files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for path in self.trees:
            shutil.rmtree(path, ignore_errors=True)
        for path in sorted(self.dirs, key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(path)


# ---------------------------------------------------------------------------------------------------------
# processes, mounts and cgroups


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def stop_pid(pid: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; reaps ``proc`` when it is our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=10)
    else:
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line names ``text``: the helpers (shims, conmon) a daemon left running."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry))
    return found


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount of our mount namespace."""
    result = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        result.append((_unescape(fields[4]), fields[sep + 1]))
    return result


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    return [point for point, _ in _mountinfo() if point == str(path) or point.startswith(prefix)]


def unmount_under(path: Path) -> None:
    for _ in range(3):  # stacked mounts need more than one pass
        points = mounts_under(path)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def cgroup_hierarchies() -> list[Path]:
    return sorted({Path(point) for point, fstype in _mountinfo() if fstype in ("cgroup", "cgroup2")})


class CgroupParent:
    """A cgroup parent of our own name for all containers of one engine; removed bottom-up at teardown."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.path = "/" + self.name

    def dirs(self) -> list[Path]:
        return [h / self.name for h in cgroup_hierarchies() if (h / self.name).is_dir()]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for top in self.dirs():
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    found.update(int(p) for p in procs.read_text().split())
        return found

    def remove(self) -> None:
        for pid in self.pids():  # container processes whose shim or conmon is gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for top in self.dirs():
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                _rmdir_retrying(directory)
            _rmdir_retrying(top)


def _rmdir_retrying(path: Path) -> None:
    for _ in range(50):  # a cgroup stays busy for a moment after its last process died
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def container_cgroup(pid: int, controller: str) -> Path:
    """The host directory of ``pid``'s cgroup for ``controller`` (v1), or its unified cgroup (v2)."""
    lines = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    for _, controllers, path in lines:
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup", controller, path.lstrip("/"))
    for hierarchy_id, _, path in lines:
        if hierarchy_id == "0":
            return Path("/sys/fs/cgroup", path.lstrip("/"))
    raise AssertionError(f"no {controller} cgroup in /proc/{pid}/cgroup: {lines}")


# ---------------------------------------------------------------------------------------------------------
# engines


class Engine:
    """A container engine's CLI, driven the same way whichever runtime a container uses.

    ``engine(runtime, "run", ...)`` adds what that engine needs to pick ``runtime`` ("runc" or "ketch")
    and to keep the container off the network and the registries.
    """

    name = "engine"
    image = "busybox:ketch"

    def __init__(self, cli: str, env: dict[str, str], runtimes: dict[str, str], log: Path) -> None:
        self.cli = cli
        self.env = env
        self.runtimes = runtimes
        self.log = log
        self.tracked: list[str] = []

    def argv(self, runtime: str | None, args: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def __call__(self, runtime: str | None, *args: str, timeout: float = 60,
                 check: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
        proc = subprocess.run(self.argv(runtime, args), env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(self.failure(proc))
        return proc

    def tty(self, runtime: str | None, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Runs the CLI on a pty (util-linux ``script``), as a person at a terminal would."""
        assert SCRIPT, "script (util-linux) is not installed"
        argv = [SCRIPT, "-qec", " ".join(_quote(a) for a in self.argv(runtime, args)), "/dev/null"]
        # script's stdin stays open and silent until the command ends, like a person who types nothing: at
        # end of input script would send the pty an end-of-file, which podman -i passes on to the container.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.PIPE, stdout=out, stderr=err)
            try:
                returncode = proc.wait(timeout=timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                assert proc.stdin is not None
                proc.stdin.close()
            out.seek(0)
            err.seek(0)
            stdout, stderr = (clean_text(f.read().decode(errors="replace")) for f in (out, err))
        return subprocess.CompletedProcess(argv, returncode, stdout, stderr)

    def name_for(self, runtime: str) -> str:
        """A fresh container name, removed by ``remove_tracked``."""
        name = f"kt-{runtime}-{uuid.uuid4().hex[:10]}"
        self.tracked.append(name)
        return name

    force_remove: tuple[str, ...] = ("rm", "-f")

    def remove_tracked(self) -> None:
        if self.tracked:
            self(None, *self.force_remove, *self.tracked, timeout=60)
            self.tracked.clear()

    def inspect(self, name: str, template: str) -> str:
        return self(None, "inspect", "-f", template, name, check=True).stdout.strip()

    def pid(self, name: str) -> int:
        return int(self.inspect(name, "{{.State.Pid}}"))

    def failure(self, proc: subprocess.CompletedProcess[str]) -> str:
        return (f"{' '.join(proc.args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}\n"
                f"{self.diagnostics()}")  # fmt: skip

    def diagnostics(self) -> str:
        """The daemon's recent warnings and errors, where the runtime's --log lines end up."""
        if not self.log.exists():
            return ""
        lines = self.log.read_text(errors="replace").splitlines()
        bad = [line for line in lines if re.search(r"level=(error|fatal)|ketch", line)]
        return f"--- {self.log} (errors and lines naming ketch, last 30) ---\n" + "\n".join(bad[-30:])


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


class Docker(Engine):
    name = "docker"

    def argv(self, runtime: str | None, args: Sequence[str]) -> list[str]:
        sub, rest = args[0], list(args[1:])
        extra = []
        if sub in ("run", "create"):
            extra = ["--pull", "never"]
            if runtime:
                extra += ["--runtime", runtime]
        return [self.cli, sub, *extra, *rest]


class Podman(Engine):
    name = "podman"
    image = "localhost/busybox:ketch"  # a full name: short names make podman consult /var/cache/containers
    force_remove = ("rm", "-f", "-t", "0")  # podman's -f would first wait out the stop timeout

    def __init__(self, cli: str, env: dict[str, str], runtimes: dict[str, str], log: Path,
                 global_args: list[str], cgroup_parent: str) -> None:  # fmt: skip
        super().__init__(cli, env, runtimes, log)
        self.global_args = global_args
        self.cgroup_parent = cgroup_parent

    def argv(self, runtime: str | None, args: Sequence[str]) -> list[str]:
        sub, rest = args[0], list(args[1:])
        head = [self.cli, *self.global_args]
        if runtime:
            head += ["--runtime", self.runtimes[runtime]]
        extra = []
        if sub in ("run", "create"):
            extra = ["--pull", "never", "--network", "none", "--cgroup-parent", self.cgroup_parent]
        return [*head, sub, *extra, *rest]

    def diagnostics(self) -> str:
        """Podman has no daemon; its events log says what happened to each container."""
        if not self.log.exists():
            return ""
        lines = self.log.read_text(errors="replace").splitlines()[-10:]
        return f"--- {self.log} (last 10) ---\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# dockerd


class Dockerd:
    """dockerd (with the containerd it starts itself) confined to ``base``."""

    def __init__(self, base: Path, runtime_bin: str) -> None:
        self.base = base
        self.runtime_bin = runtime_bin
        self.data = base / "data"
        self.exec_root = base / "exec"
        self.sock = base / "docker.sock"
        self.log = base / "dockerd.log"
        self.pidfile = base / "docker.pid"
        self.cgroup = CgroupParent("ketch-interop-docker")
        self.traces = HostTraces(files=DOCKER_HOST_FILES, dirs=DOCKER_HOST_DIRS)
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(DOCKER_HOST=f"unix://{self.sock}", DOCKER_CONFIG=str(base / "cli-config"),
                        DOCKER_CLI_HINTS="false")  # fmt: skip

    def start(self, timeout: float = 60) -> None:
        for d in (self.data, self.exec_root, self.base / "cli-config"):
            d.mkdir(parents=True, exist_ok=True)
        config = self.base / "daemon.json"
        # key.json would otherwise go to /etc/docker; daemon.json keeps /etc/docker/daemon.json out too.
        config.write_text(json.dumps({"deprecated-key-path": str(self.base / "key.json")}))
        argv = [
            DOCKERD, "--config-file", str(config), "--data-root", str(self.data), "--exec-root",
            str(self.exec_root), "--pidfile", str(self.pidfile), "-H", f"unix://{self.sock}",
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
            "--cgroup-parent", self.cgroup.path, "--add-runtime", f"ketch={self.runtime_bin}",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").splitlines()[-30:]
                self.stop()
                raise RuntimeError("dockerd did not come up:\n" + "\n".join(tail))
            time.sleep(0.1)

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.sock))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return b" 200 " in s.recv(4096).split(b"\r\n", 1)[0]
        except OSError:
            return False

    def client(self, cli: str) -> Docker:
        return Docker(cli, self.env, {"runc": "runc", "ketch": "ketch"}, self.log)

    def containerd_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.exec_root / "containerd" / "containerd.pid").read_text().strip())
        return None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                client = self.client(DOCKER_CLI)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    ids = client(None, "ps", "-aq", timeout=30).stdout.split()
                    if ids:
                        client(None, "rm", "-f", *ids, timeout=60)
            containerd = self.containerd_pid()
            stop_pid(self.proc.pid, timeout=20, proc=self.proc)
            if containerd and _alive(containerd):
                stop_pid(containerd)
            self.proc = None
        for pid in pids_mentioning(str(self.base)):  # shims that outlived containerd
            stop_pid(pid, timeout=5)
        self.cgroup.remove()
        unmount_under(self.base)
        self.traces.remove()


# ---------------------------------------------------------------------------------------------------------
# podman

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
init_path = "/usr/bin/tini-static"
log_driver = "k8s-file"
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
tmp_dir = "{base}/tmp"
volume_path = "{base}/volumes"
image_copy_tmp_dir = "{base}/tmp"

[network]
network_backend = "cni"
network_config_dir = "{base}/networks"
"""

STORAGE_CONF = """\
[storage]
driver = "{driver}"
graphroot = "{base}/root"
runroot = "{base}/runroot"
"""


class PodmanSetup:
    """podman with its own root, runroot, tmpdir, containers.conf and storage.conf under ``base``."""

    def __init__(self, base: Path, runtime_bin: str, cli: str) -> None:
        self.base = base
        self.cli = cli
        self.runtime_bin = runtime_bin
        self.cgroup = CgroupParent("ketch-interop-podman")
        self.traces = HostTraces(files=PODMAN_HOST_FILES, dirs=PODMAN_HOST_DIRS, trees=PODMAN_HOST_TREES)
        self.driver = "overlay"

    def client(self) -> Podman:
        base = self.base
        for d in ("root", "runroot", "tmp", "volumes", "networks"):
            (base / d).mkdir(parents=True, exist_ok=True)
        (base / "containers.conf").write_text(CONTAINERS_CONF.format(base=base))
        (base / "storage.conf").write_text(STORAGE_CONF.format(base=base, driver=self.driver))
        (base / "registries.conf").write_text("unqualified-search-registries = []\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERS_", "CONTAINER_"))}
        env.update(CONTAINERS_CONF=str(base / "containers.conf"), CONTAINERS_STORAGE_CONF=str(base / "storage.conf"),
                   CONTAINERS_REGISTRIES_CONF=str(base / "registries.conf"), TMPDIR=str(base / "tmp"))  # fmt: skip
        global_args = ["--root", str(base / "root"), "--runroot", str(base / "runroot"), "--tmpdir",
                       str(base / "tmp"), "--storage-driver", self.driver, "--cgroup-manager", "cgroupfs",
                       "--events-backend", "file"]  # fmt: skip
        runtimes = {"runc": "runc", "ketch": self.runtime_bin}
        return Podman(self.cli, env, runtimes, base / "tmp" / "events" / "events.log", global_args,
                      self.cgroup.path)  # fmt: skip

    def stop(self, client: Podman | None) -> None:
        if client is not None:
            for runtime in (None, *RUNTIMES):  # a container's runtime is named when podman is told its path
                with contextlib.suppress(subprocess.TimeoutExpired):
                    if not client(runtime, "ps", "-aq", timeout=30).stdout.split():
                        break
                    client(runtime, "rm", "-af", "-t", "0", timeout=60)
            with contextlib.suppress(subprocess.TimeoutExpired):
                client(None, "rmi", "-af", timeout=60)
        for pid in pids_mentioning(str(self.base)):  # conmon and podman cleanup processes
            stop_pid(pid, timeout=5)
        self.cgroup.remove()
        unmount_under(self.base)
        self.traces.remove()

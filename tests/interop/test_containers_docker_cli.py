"""The real docker CLIs (Debian's 20.10 and, where installed, 28.x) driving containers on a private ketchd.

Every test runs once per CLI. What a user sees is checked: output, exit codes, docker's own error messages, and
from inside the container the effect of each option (cgroup files, /proc/self/status, mounts). Checks are
grouped into few containers so that the module stays fast; each test removes the containers it made.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import queue
import re
import select
import shlex
import struct
import subprocess
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from tests.interop.daemons import clean_text
from tests.interop.ketchd import Ketchd, available_clis

pytestmark = pytest.mark.interop

IMAGE = "busybox:ketch"
SCRIPT = "/usr/bin/script"
# busybox's stty prints nothing (and still exits 0) while the pty is 0x0: wait for the CLI's first resize
SIZE_PROBE = ('i=0; while :; do s=$(stty size 2>/dev/null); [ -n "$s" ] && break; i=$((i+1)); [ $i -gt 100 ] && '
              'exit 9; sleep 0.05; done; echo "$s"')  # fmt: skip
COUNTER = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"
ID64 = re.compile(r"^[0-9a-f]{64}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}Z ")
UNREACHABLE_IMAGE = "127.0.0.1:1/ketch-missing:latest"  # nothing listens on port 1: the pull fails at once

# What dockerd 20.10 answers for `docker inspect` of a container (docker-api-traces/cli-20.10/22-inspect-container).
INSPECT_KEYS = {
    "AppArmorProfile", "Args", "Config", "Created", "Driver", "ExecIDs", "GraphDriver", "HostConfig",
    "HostnamePath", "HostsPath", "Id", "Image", "LogPath", "MountLabel", "Mounts", "Name", "NetworkSettings",
    "Path", "Platform", "ProcessLabel", "ResolvConfPath", "RestartCount", "State",
}  # fmt: skip
STATE_KEYS = {"Dead", "Error", "ExitCode", "FinishedAt", "OOMKilled", "Paused", "Pid", "Restarting", "Running",
              "StartedAt", "Status"}  # fmt: skip
CONFIG_KEYS = {
    "AttachStderr", "AttachStdin", "AttachStdout", "Cmd", "Domainname", "Entrypoint", "Env", "Hostname", "Image",
    "Labels", "OnBuild", "OpenStdin", "StdinOnce", "Tty", "User", "Volumes", "WorkingDir",
}  # fmt: skip
HOST_CONFIG_KEYS = {
    "AutoRemove", "Binds", "BlkioDeviceReadBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteBps",
    "BlkioDeviceWriteIOps", "BlkioWeight", "BlkioWeightDevice", "CapAdd", "CapDrop", "Cgroup", "CgroupParent",
    "CgroupnsMode", "ConsoleSize", "ContainerIDFile", "CpuCount", "CpuPercent", "CpuPeriod", "CpuQuota",
    "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpuShares", "CpusetCpus", "CpusetMems", "DeviceCgroupRules",
    "DeviceRequests", "Devices", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "IOMaximumBandwidth",
    "IOMaximumIOps", "IpcMode", "Isolation", "KernelMemory", "KernelMemoryTCP", "Links", "LogConfig",
    "MaskedPaths", "Memory", "MemoryReservation", "MemorySwap", "MemorySwappiness", "NanoCpus", "NetworkMode",
    "OomKillDisable", "OomScoreAdj", "PidMode", "PidsLimit", "PortBindings", "Privileged", "PublishAllPorts",
    "ReadonlyPaths", "ReadonlyRootfs", "RestartPolicy", "Runtime", "SecurityOpt", "ShmSize", "UTSMode",
    "Ulimits", "UsernsMode", "VolumeDriver", "VolumesFrom",
}  # fmt: skip
NETWORK_SETTINGS_KEYS = {
    "Bridge", "SandboxID", "HairpinMode", "LinkLocalIPv6Address", "LinkLocalIPv6PrefixLen", "Ports", "SandboxKey",
    "SecondaryIPAddresses", "SecondaryIPv6Addresses", "EndpointID", "Gateway", "GlobalIPv6Address",
    "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen", "IPv6Gateway", "MacAddress", "Networks",
}  # fmt: skip


class Cli:
    """One docker CLI against the session's ketchd; remembers the container names it hands out."""

    def __init__(self, ketchd: Ketchd, release: str, path: str) -> None:
        self.ketchd = ketchd
        self.release = release
        self.path = path
        self.names: list[str] = []

    def name(self, base: str) -> str:
        name = f"kcli{self.release.replace('.', '')}-{base}"
        self.names.append(name)
        return name

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.ketchd.docker(*args, cli=self.path, input=input, timeout=timeout)

    def ok(self, *args: str, input: str | None = None) -> str:
        done = self(*args, input=input)
        assert done.returncode == 0, (
            f"docker {self.release} {' '.join(args)} exited {done.returncode}\nstdout: {done.stdout}\n"
            f"stderr: {done.stderr}\nketchd log:\n{self.ketchd.log_tail()}"
        )
        return done.stdout

    def inspect(self, name: str, fmt: str) -> str:
        return self.ok("inspect", "-f", fmt, name).strip()

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([self.path, *args], env=self.ketchd.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    def tty(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """The CLI on a pty (util-linux ``script``), its stdin open and silent as a person who types nothing."""
        command = " ".join(shlex.quote(a) for a in (self.path, *args))
        argv = [SCRIPT, "-qec", command, "/dev/null"]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, env=self.ketchd.env, stdin=subprocess.PIPE, stdout=out, stderr=err)
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

    def sized_tty(self, *args: str, rows: int = 24, cols: int = 80, typing: tuple[tuple[bytes, bytes], ...] = (),
                  timeout: float = 30) -> tuple[int, str]:  # fmt: skip
        """The CLI on a pty of ``rows`` x ``cols`` (its stdin, stdout and stderr); returns (status, output).

        ``typing`` is what a person types: each (prompt, keys) waits for ``prompt`` in the output that follows
        the previous keys (so the CLI has put the terminal in raw mode), then sends ``keys``."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            proc = subprocess.Popen([self.path, *args], env=self.ketchd.env, stdin=slave, stdout=slave,
                                    stderr=slave, start_new_session=True)  # fmt: skip
        finally:
            os.close(slave)
        out = bytearray()
        pending, seen_from = list(typing), 0
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if not ready:
                    if proc.poll() is not None:
                        break
                    continue
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the slave side closed it
                    break
                if not data:
                    break
                out += data
                if pending and pending[0][0] in out[seen_from:]:
                    seen_from = len(out)
                    os.write(master, pending.pop(0)[1])
            returncode = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
        assert not pending, f"never saw {pending[0][0]!r} in {bytes(out)!r}"
        return returncode, clean_text(out.decode(errors="replace"))

    def cleanup(self) -> None:
        existing = set(self("ps", "-a", "--format", "{{.Names}}").stdout.split())
        mine = [name for name in self.names if name in existing]
        if mine:
            self("rm", "-f", *mine, timeout=120)


CLI_PARAMS: list[Any] = sorted(available_clis()) or [
    pytest.param("20.10", marks=pytest.mark.skip("no docker CLI"))
]


@pytest.fixture(params=CLI_PARAMS)
def cli(request: pytest.FixtureRequest, ketchd: Ketchd) -> Iterator[Cli]:
    release = request.param
    client = Cli(ketchd, release, available_clis()[release])
    yield client
    client.cleanup()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


class LineReader:
    """Lines of a running process's stdout, read on a thread, so a test can wait for them with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def next(self, timeout: float = 10) -> str | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from {self.proc.args!r} within {timeout}s") from None

    def until(self, predicate: Callable[[str], bool], timeout: float = 10) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.01, deadline - time.monotonic()))
            assert line is not None, f"{self.proc.args!r} ended after {seen}"
            seen.append(line)
            if predicate(line):
                return seen

    def close(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(5)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return err


@contextlib.contextmanager
def streaming(cli: Cli, *args: str) -> Iterator[LineReader]:
    reader = LineReader(cli.popen(*args))
    try:
        yield reader
    finally:
        reader.close()


# ---- run ---------------------------------------------------------------------------------------------------


def test_run_output_exit_code_env_workdir_user_entrypoint(cli: Cli, tmp_path: Path) -> None:
    done = cli("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert cli("run", "--rm", IMAGE, "sh", "-c", "exit 255").returncode == 255
    assert cli("run", "--rm", "--init", IMAGE, "sh", "-c", "kill -9 $$").returncode == 137  # 128 + SIGKILL
    assert cli("run", "--rm", IMAGE, "true").returncode == 0

    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nFROM_FILE=two words\nEMPTY=\n")
    out = cli.ok("run", "--rm", "-e", "X=y", "--env", "Z=1", "--env-file", str(env_file), "-w", "/tmp/wd",
                 "-u", "65534:65534", IMAGE, "sh", "-c",
                 'echo "$X|$Z|$FROM_FILE|${EMPTY-unset}|$HOME"; pwd; id -u; id -g')  # fmt: skip
    assert lines(out) == ["y|1|two words||/nonexistent", "/tmp/wd", "65534", "65534"]
    assert cli.ok("run", "--rm", "-u", "nobody", IMAGE, "id", "-un").strip() == "nobody"
    # the primary group is among the supplementary ones too, as dockerd sets it since CVE-2022-36109
    assert cli.ok("run", "--rm", IMAGE, "id") == "uid=0(root) gid=0(root) groups=0(root)\n"
    assert cli.ok("run", "--rm", "-u", "65534:65534", IMAGE, "id", "-G") == "65534\n"
    assert cli.ok("run", "--rm", "--entrypoint", "echo", IMAGE, "hello", "world") == "hello world\n"
    entry = cli.name("entry")
    cli.ok("create", "--name", entry, "--entrypoint", "/bin/echo", IMAGE, "a", "b")
    assert cli.inspect(entry, "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Path}} {{json .Args}}") == \
        '["/bin/echo"] ["a","b"] /bin/echo ["a","b"]'  # fmt: skip


def test_run_detached_and_auto_remove(cli: Cli) -> None:
    name = cli.name("detached")
    cid = cli.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", "echo started; sleep 30").strip()
    assert ID64.match(cid), cid
    assert cli.inspect(name, "{{.Id}} {{.State.Status}} {{.State.Running}}") == f"{cid} running true"
    assert int(cli.inspect(name, "{{.State.Pid}}")) > 0

    gone = cli.name("autoremove")
    cli.ok("run", "-d", "--rm", "--name", gone, IMAGE, "sh", "-c", "sleep 0.3")
    assert cli.inspect(gone, "{{.HostConfig.AutoRemove}}") == "true"
    wait_until(lambda: gone not in cli.ok("ps", "-a", "--format", "{{.Names}}").split(), "--rm to remove it")
    missing = cli("inspect", gone)
    assert missing.returncode == 1 and f"No such object: {gone}" in missing.stderr

    # attached --rm: the container is gone once the CLI returns
    attached = cli.name("attached-rm")
    assert cli("run", "--rm", "--name", attached, IMAGE, "sh", "-c", "exit 2").returncode == 2
    assert attached not in cli.ok("ps", "-a", "--format", "{{.Names}}").split()


def test_run_name_conflict(cli: Cli) -> None:
    name = cli.name("taken")
    cid = cli.ok("create", "--name", name, IMAGE, "true").strip()
    done = cli("run", "--name", name, IMAGE, "true")
    assert done.returncode == 125
    assert (f'Conflict. The container name "/{name}" is already in use by container "{cid}". You have to remove '
            "(or rename) that container to be able to reuse that name.") in done.stderr  # fmt: skip
    again = cli("create", "--name", name, IMAGE, "true")  # create reports errors with status 1, run with 125
    assert again.returncode == 1 and "is already in use by container" in again.stderr


def test_run_interactive(cli: Cli) -> None:
    piped = cli("run", "-i", "--rm", IMAGE, "sh", "-c", "cat; echo done; exit 5", input="a\nb\n")
    assert (piped.returncode, piped.stdout) == (5, "a\nb\ndone\n")
    # without -i, the container's stdin is closed: cat reads nothing
    assert cli("run", "--rm", IMAGE, "cat", input="ignored\n").stdout == ""

    tty = cli.tty("run", "-it", "--rm", IMAGE, "sh", "-c", 'tty; echo "TERM=$TERM"; exit 4')
    assert (tty.returncode, lines(tty.stdout)) == (4, ["/dev/pts/0", "TERM=xterm"]), tty
    # on a terminal of a known size, the CLI's resize reaches the container's pty
    code, out = cli.sized_tty("run", "-it", "--rm", IMAGE, "sh", "-c", SIZE_PROBE, rows=33, cols=111)
    assert (code, lines(out)) == (0, ["33 111"]), out
    # what is typed reaches the shell, its exit status is the CLI's
    code, out = cli.sized_tty(
        "run", "-it", "--rm", IMAGE, "sh", typing=((b"# ", b"echo typed-$((40+2)); exit 3\r"),)
    )
    assert code == 3 and "\ntyped-42\n" in out, out
    # ctrl-p ctrl-q detaches: the CLI ends, the container runs on
    detached = cli.name("detach")
    code, out = cli.sized_tty("run", "-it", "--name", detached, IMAGE, "sh", typing=((b"# ", b"\x10\x11"),))
    assert code == 0, out
    assert cli.inspect(detached, "{{.State.Status}}") == "running"
    code, out = cli.sized_tty("exec", "-it", detached, "sh", typing=((b"# ", b"echo in-exec; exit 6\r"),))
    assert code == 6 and "\nin-exec\n" in out, out


def test_create_start_attach_wait(cli: Cli) -> None:
    name = cli.name("created")
    cid = cli.ok("create", "--name", name, IMAGE, "sh", "-c", "echo from-start; echo e >&2; exit 6").strip()
    assert ID64.match(cid)
    assert cli.inspect(name, "{{.State.Status}} {{.State.Pid}} {{.State.StartedAt}}") == \
        "created 0 0001-01-01T00:00:00Z"  # fmt: skip
    attached = cli("start", "-a", name)
    assert (attached.returncode, attached.stdout, attached.stderr) == (6, "from-start\n", "e\n")
    assert cli.inspect(name, "{{.State.Status}} {{.State.ExitCode}}") == "exited 6"
    assert cli.ok("start", name).strip() == name
    assert cli.ok("wait", name) == "6\n"
    again = cli("start", "-a", name)  # an exited container: the CLI attaches, then starts it
    assert (again.returncode, again.stdout, again.stderr) == (6, "from-start\n", "e\n")
    assert cli.ok("logs", name) == "from-start\n" * 3

    interactive = cli.name("created-i")
    cli.ok("create", "-i", "--name", interactive, IMAGE, "sh", "-c", "cat; exit 2")
    for text in ("first\n", "second\n"):  # created, then exited: stdin reaches both runs
        fed = cli("start", "-ai", interactive, input=text)
        assert (fed.returncode, fed.stdout) == (2, text), fed


# ---- ps ----------------------------------------------------------------------------------------------------


def test_ps_filters_and_formats(cli: Cli) -> None:
    up, down, fresh = cli.name("ps-up"), cli.name("ps-down"), cli.name("ps-fresh")
    up_id = cli.ok("run", "-d", "--name", up, "--label", "kcli.role=server", IMAGE, "sleep", "60").strip()
    assert (
        cli("run", "--name", down, "--label", "kcli.role=batch", IMAGE, "sh", "-c", "exit 3").returncode == 3
    )
    cli.ok("create", "--name", fresh, IMAGE, "true")

    def names(*args: str) -> set[str]:
        return set(cli.ok("ps", *args, "--format", "{{.Names}}").split()) & {up, down, fresh}

    assert names() == {up}
    assert names("-a") == {up, down, fresh}
    assert names("-a", "--filter", f"name={cli.name('ps-')}") == {up, down, fresh}
    assert names("-a", "--filter", f"name={down}") == {down}
    assert names("-a", "--filter", "status=exited") == {down}
    assert names("-a", "--filter", "status=created") == {fresh}
    assert names("-a", "--filter", "status=running") == {up}
    assert names("-a", "--filter", "label=kcli.role") == {up, down}
    assert names("-a", "--filter", "label=kcli.role=batch") == {down}
    assert names("-a", "--filter", "exited=3") == {down}
    assert names("-a", "--filter", "exited=0") == set()
    assert names("-a", "--filter", f"ancestor={IMAGE}") >= {up, down, fresh}
    assert names("-a", "--filter", "ancestor=nosuch-image") == set()
    assert names("-a", "--filter", "status=exited", "--filter", "status=created") == {down, fresh}

    quiet = cli.ok("ps", "-q", "--filter", f"name={up}").split()
    assert quiet == [up_id[:12]]
    assert cli.ok("ps", "-aq", "--no-trunc", "--filter", f"name={up}").split() == [up_id]

    table = lines(cli.ok("ps", "-a", "--filter", f"name={down}"))
    assert re.split(r"\s{2,}", table[0]) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
                                             "NAMES"]  # fmt: skip
    assert len(table) == 2 and table[1].split()[0] == cli.inspect(down, "{{.Id}}")[:12]
    assert "\"sh -c 'exit 3'\"" in table[1] and re.search(r"Exited \(3\) .* ago", table[1]), table
    custom = lines(
        cli.ok("ps", "-a", "--filter", f"name={up}", "--format", "table {{.Names}}\t{{.Status}}\t{{.Labels}}")
    )
    assert re.split(r"\s{2,}", custom[0]) == ["NAMES", "STATUS", "LABELS"]
    assert re.match(rf"{up}\s+Up .*\s+kcli.role=server$", custom[1]), custom


# ---- logs --------------------------------------------------------------------------------------------------


def test_logs_tail_timestamps_since_follow(cli: Cli) -> None:
    name = cli.name("logs")
    cli.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", "echo one; echo two >&2; echo three; " + COUNTER)
    wait_until(lambda: "tick 5\n" in cli.ok("logs", name), "five ticks")
    done = cli("logs", name)
    assert done.stdout.startswith("one\nthree\ntick 1\n") and done.stderr == "two\n"
    tail = cli.ok("logs", "--tail", "2", name).split("\n")
    assert len(tail) == 3 and tail[0].startswith("tick ") and tail[2] == ""
    assert int(tail[1].split()[1]) == int(tail[0].split()[1]) + 1

    stamped = cli.ok("logs", "-t", name).split("\n")
    assert all(TIMESTAMP.match(line) for line in stamped if line), stamped[:3]
    third_tick = next(line for line in stamped if line.endswith(" tick 3"))
    since = cli.ok("logs", "--since", third_tick.split()[0], name)
    assert since.startswith("tick 3\ntick 4\n"), since[:40]
    until = cli.ok("logs", "--until", third_tick.split()[0], name)
    assert until.endswith("tick 2\ntick 3\n") and until.startswith("one\n"), until
    assert cli.ok("logs", "--tail", "bogus", name).startswith("one\n")  # dockerd reads a bad tail as "all"
    assert cli.ok("logs", "--details", "--tail", "1", name).startswith(" tick ")  # no attributes, one space
    nanos = [line.split()[0] for line in stamped if line]
    assert all(len(stamp) == 30 for stamp in nanos), nanos[:3]  # RFC3339NanoFixed: always nine digits

    with streaming(cli, "logs", "-f", "--tail", "1", name) as follow:
        first = follow.next()
        assert first is not None and first.startswith("tick ")
        start = int(first.split()[1])
        follow.until(lambda line: line == f"tick {start + 3}")  # written after logs -f started

    short = cli.name("logs-ends")
    cli.ok("run", "-d", "--name", short, IMAGE, "sh", "-c", "echo early; sleep 0.6; echo late")
    follow_to_end = cli("logs", "-f", short, timeout=20)  # returns when the container exits
    assert (follow_to_end.returncode, follow_to_end.stdout) == (0, "early\nlate\n")


# ---- exec --------------------------------------------------------------------------------------------------


def test_exec(cli: Cli) -> None:
    name = cli.name("exec")
    cli.ok("run", "-d", "--name", name, "-e", "FROM_RUN=r", IMAGE, "sleep", "60")
    done = cli("exec", name, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    out = cli.ok("exec", "-e", "E=v", "-u", "65534", "-w", "/tmp", name, "sh", "-c",
                 'echo "$E|$FROM_RUN"; id -u; pwd')  # fmt: skip
    assert lines(out) == ["v|r", "65534", "/tmp"]
    assert cli.ok("exec", "-i", name, "sh", "-c", "cat; echo end", input="piped\nin\n") == "piped\nin\nend\n"
    tty = cli.tty("exec", "-it", name, "sh", "-c", "tty; exit 7")
    assert tty.returncode == 7 and lines(tty.stdout)[-1].startswith("/dev/pts/"), tty
    missing = cli("exec", name, "/no/such/binary")
    assert missing.returncode == 126, missing  # dockerd 20.10's status for an exec the runtime cannot start
    assert "no such file or directory" in missing.stdout + missing.stderr
    cli.ok("stop", "-t", "0", name)
    stopped = cli("exec", name, "true")
    assert stopped.returncode == 1 and "is not running" in stopped.stderr, stopped.stderr


# ---- inspect -----------------------------------------------------------------------------------------------


def test_inspect(cli: Cli) -> None:
    name = cli.name("inspect")
    cid = cli.ok(
        "create", "--name", name, "-e", "A=1", "-e", "B=two", "--label", "k=v", IMAGE, "sh", "-c", "exit 4"
    )
    assert cli("start", "-a", name).returncode == 4
    assert cli.inspect(name, "{{.State.Status}}") == "exited"
    assert cli.inspect(name, "{{.State.ExitCode}}") == "4"
    # docker 28 may send -e values in another order (it goes through a map); the values are what count
    assert sorted(json.loads(cli.inspect(name, "{{json .Config.Env}}"))) == ["A=1", "B=two"]
    assert cli.inspect(name, "{{.Config.Hostname}} {{json .Config.Volumes}}") == f"{cid.strip()[:12]} null"
    assert cli.inspect(name, "{{.Name}} {{.Config.Image}} {{.Config.Labels.k}}") == f"/{name} {IMAGE} v"
    assert cli.inspect(name, "{{.Id}}") == cid.strip()
    data = json.loads(cli.ok("inspect", name))
    assert isinstance(data, list) and len(data) == 1
    item = data[0]
    assert set(item) >= INSPECT_KEYS, INSPECT_KEYS - set(item)
    assert set(item["State"]) >= STATE_KEYS, STATE_KEYS - set(item["State"])
    assert set(item["Config"]) >= CONFIG_KEYS, CONFIG_KEYS - set(item["Config"])
    assert set(item["HostConfig"]) >= HOST_CONFIG_KEYS, sorted(HOST_CONFIG_KEYS - set(item["HostConfig"]))
    assert set(item["NetworkSettings"]) >= NETWORK_SETTINGS_KEYS
    assert item["HostConfig"]["MaskedPaths"] and "/proc/kcore" in item["HostConfig"]["MaskedPaths"]
    assert "/proc/sys" in item["HostConfig"]["ReadonlyPaths"]
    assert item["State"]["FinishedAt"] >= item["State"]["StartedAt"] > item["Created"][:19]
    assert os.path.exists(item["LogPath"]) and os.path.exists(item["HostsPath"])
    # `docker inspect` of an image name falls back from containers to images
    assert cli.ok("inspect", "-f", "{{.Id}}", IMAGE).startswith("sha256:")
    assert cli.ok("container", "inspect", "-f", "{{.State.Status}}", name).strip() == "exited"


# ---- stop, restart, kill, pause, wait ----------------------------------------------------------------------


def _stop_timed(cli: Cli, *args: str) -> float:
    start = time.monotonic()
    cli.ok("stop", *args)
    return time.monotonic() - start


def test_stop(cli: Cli) -> None:
    stubborn, trapping, custom = cli.name("stop-kill"), cli.name("stop-trap"), cli.name("stop-custom")
    cli.ok("run", "-d", "--name", stubborn, IMAGE, "sleep", "300")  # pid 1 ignores TERM: SIGKILL after 1s
    cli.ok("run", "-d", "--name", trapping, IMAGE, "sh", "-c",
           'trap "exit 7" TERM; echo ready; while :; do sleep 0.1; done')  # fmt: skip
    cli.ok("run", "-d", "--name", custom, "--stop-signal", "USR1", "--stop-timeout", "1", IMAGE, "sh", "-c",
           'trap "exit 9" USR1; trap "" TERM; echo ready; while :; do sleep 0.1; done')  # fmt: skip
    elapsed = _stop_timed(cli, "-t", "1", stubborn)
    assert 0.9 <= elapsed < 6, elapsed
    assert cli.inspect(stubborn, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"

    wait_until(lambda: "ready" in cli.ok("logs", trapping), "the TERM trap")
    assert _stop_timed(cli, "-t", "30", trapping) < 5
    assert cli.inspect(trapping, "{{.State.Status}} {{.State.ExitCode}}") == "exited 7"

    assert cli.inspect(custom, "{{.Config.StopSignal}} {{.Config.StopTimeout}}") == "USR1 1"
    wait_until(lambda: "ready" in cli.ok("logs", custom), "the USR1 trap")
    assert _stop_timed(cli, custom) < 5
    assert cli.inspect(custom, "{{.State.ExitCode}}") == "9"
    # --stop-timeout applies when stop gives no -t: TERM is ignored, SIGKILL follows after one second
    stubborn_timeout = cli.name("stop-timeout")
    cli.ok("run", "-d", "--name", stubborn_timeout, "--stop-timeout", "1", IMAGE, "sleep", "300")
    elapsed = _stop_timed(cli, stubborn_timeout)
    assert 0.9 <= elapsed < 6, elapsed
    assert cli.inspect(stubborn_timeout, "{{.State.ExitCode}}") == "137"
    assert cli.ok("stop", stubborn_timeout).strip() == stubborn_timeout  # stopping a stopped one is fine


TRAPS = 'trap "exit 0" TERM; trap "echo got-usr1; exit 3" USR1; echo ready; while :; do sleep 0.1; done'


def _starts_seen(cli: Cli, name: str, count: int) -> bool:
    return cli.ok("logs", name).count("ready") == count


def test_restart(cli: Cli) -> None:
    name = cli.name("restart")
    cli.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", TRAPS)
    for attempt in range(1, 4):
        wait_until(partial(_starts_seen, cli, name, attempt), f"start number {attempt}")
        started, pid = cli.inspect(name, "{{.State.StartedAt}}"), cli.inspect(name, "{{.State.Pid}}")
        assert cli.ok("restart", "-t", "5", name).strip() == name
        assert cli.inspect(name, "{{.State.Status}}") == "running"
        assert cli.inspect(name, "{{.State.StartedAt}}") > started
        assert cli.inspect(name, "{{.State.Pid}}") != pid


def test_kill_wait(cli: Cli) -> None:
    name = cli.name("kill")
    cli.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", TRAPS)
    wait_until(lambda: "ready" in cli.ok("logs", name), "ready")
    assert cli.ok("kill", "-s", "USR1", name).strip() == name
    assert cli.ok("wait", name) == "3\n"
    assert "got-usr1" in cli.ok("logs", name)

    cli.ok("start", name)
    assert cli.ok("kill", name).strip() == name
    assert cli.ok("wait", name) == "137\n"
    cid = cli.inspect(name, "{{.Id}}")
    not_running = cli("kill", name)
    assert not_running.returncode == 1
    assert f"Cannot kill container: {name}: Container {cid} is not running" in not_running.stderr
    out_of_range = cli("kill", "-s", "99", name)
    assert (
        "Cannot kill container: " + name + ": The linux daemon does not support signal 99"
        in out_of_range.stderr
    )
    cli.ok("start", name)
    bad_signal = cli("kill", "-s", "NOSUCH", name)
    assert bad_signal.returncode == 1 and "Invalid signal: NOSUCH" in bad_signal.stderr, bad_signal.stderr
    # wait on several containers prints each one's status in order
    other = cli.name("kill-other")
    cli.ok("run", "-d", "--name", other, IMAGE, "sh", "-c", "sleep 0.3; exit 4")
    cli.ok("kill", "-s", "TERM", name)
    assert cli.ok("wait", name, other) == "0\n4\n"


def test_pause_unpause(cli: Cli) -> None:
    name = cli.name("pause")
    cli.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", COUNTER)
    wait_until(lambda: "tick 3\n" in cli.ok("logs", name), "three ticks")
    cli.ok("pause", name)
    assert cli.inspect(name, "{{.State.Status}} {{.State.Paused}} {{.State.Running}}") == "paused true true"
    assert re.match(
        r"Up .* \(Paused\)$", cli.ok("ps", "--filter", f"name={name}", "--format", "{{.Status}}").strip()
    )
    assert cli.ok("ps", "--filter", "status=paused", "--format", "{{.Names}}").split() == [name]
    time.sleep(0.2)
    frozen = cli.ok("logs", name)
    time.sleep(0.5)
    assert cli.ok("logs", name) == frozen  # the counter stood still
    refused = cli("pause", name)
    assert refused.returncode == 1 and "is already paused" in refused.stderr, refused.stderr
    cli.ok("unpause", name)
    assert cli.inspect(name, "{{.State.Status}} {{.State.Paused}}") == "running false"
    last = int(lines(frozen)[-1].split()[1])
    wait_until(lambda: f"tick {last + 3}\n" in cli.ok("logs", name), "the counter to go on")


# ---- rm, rename, update, top, stats, prune -----------------------------------------------------------------


def test_rm(cli: Cli) -> None:
    name = cli.name("rm")
    cid = cli.ok("run", "-d", "--name", name, IMAGE, "sleep", "60").strip()
    refused = cli("rm", name)
    assert refused.returncode == 1
    assert (f"You cannot remove a running container {cid}. Stop the container before attempting removal or "
            "force remove") in refused.stderr  # fmt: skip
    assert cli.ok("rm", "-f", name).strip() == name
    assert name not in cli.ok("ps", "-a", "--format", "{{.Names}}").split()
    missing = cli("rm", name)
    assert missing.returncode == 1 and f"No such container: {name}" in missing.stderr
    stopped = cli.name("rm-stopped")
    cli.ok("run", "--name", stopped, IMAGE, "true")
    assert cli.ok("rm", stopped).strip() == stopped


def test_rename(cli: Cli) -> None:
    old, new, other = cli.name("rename-old"), cli.name("rename-new"), cli.name("rename-other")
    cid = cli.ok("create", "--name", old, IMAGE, "true").strip()
    cli.ok("create", "--name", other, IMAGE, "true")
    cli.ok("rename", old, new)
    assert cli.inspect(new, "{{.Id}} {{.Name}}") == f"{cid} /{new}"
    assert cli("inspect", old).returncode == 1
    taken = cli("rename", new, other)
    assert taken.returncode == 1 and f'The container name "/{other}" is already in use' in taken.stderr
    bad = cli("rename", new, "bad name!")
    assert bad.returncode == 1, bad
    assert ("Error when allocating new name: Invalid container name (/bad name!), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
            "are allowed") in bad.stderr  # fmt: skip


def test_update(cli: Cli) -> None:
    name = cli.name("update")
    cli.ok("run", "-d", "--name", name, IMAGE, "sleep", "60")
    cli.ok("update", "--memory", "64m", "--cpus", "0.5", "--restart", "on-failure:3", name)
    assert cli.inspect(name, "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}"
                             ":{{.HostConfig.RestartPolicy.MaximumRetryCount}}") == \
        "67108864 500000000 on-failure:3"  # fmt: skip
    inside = cli.ok("exec", name, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                    "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")  # fmt: skip
    assert lines(inside) == ["67108864", "50000", "100000"]
    too_small = cli("update", "--memory", "1k", name)
    assert too_small.returncode == 1 and "Minimum memory limit allowed is 6MB" in too_small.stderr
    warned = cli("update", "--kernel-memory", "10m", name)
    assert warned.returncode == 0, warned
    assert "Specifying a kernel memory limit is deprecated" in warned.stdout + warned.stderr
    auto = cli.name("update-rm")
    auto_id = cli.ok("run", "-d", "--rm", "--name", auto, IMAGE, "sleep", "60").strip()
    refused = cli("update", "--restart", "always", auto)
    assert refused.returncode == 1
    assert (f"Cannot update container {auto_id}: Restart policy cannot be updated because AutoRemove is enabled "
            "for the container") in refused.stderr  # fmt: skip


def test_top_and_stats(cli: Cli) -> None:
    name = cli.name("top")
    cli.ok("run", "-d", "--name", name, "--memory", "64m", IMAGE, "sh", "-c", "sleep 61 & sleep 62; true")
    wait_until(lambda: "sleep 62" in cli.ok("top", name), "both sleeps")
    top = lines(cli.ok("top", name))
    assert re.split(r"\s+", top[0]) == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert {line.split(None, 7)[7] for line in top[1:]} == {
        "sh -c sleep 61 & sleep 62; true",
        "sleep 61",
        "sleep 62",
    }
    bad_args = cli("top", name, "-o", "bogus")
    assert bad_args.returncode == 1 and "Error response from daemon: ps: " in bad_args.stderr, bad_args
    assert "bogus" in bad_args.stderr and "Usage" not in bad_args.stderr  # the first line of ps's complaint
    custom = lines(cli.ok("top", name, "-o", "pid,args"))
    assert custom[0].split() == ["PID", "COMMAND"] and len(custom) == 4
    stats = lines(cli.ok("stats", "--no-stream", "--format",
                         "table {{.Name}}|{{.MemUsage}}|{{.PIDs}}|{{.CPUPerc}}|{{.NetIO}}", name))  # fmt: skip
    assert len(stats) == 2 and stats[0].split("|") == [
        "NAME",
        "MEM USAGE / LIMIT",
        "PIDS",
        "CPU %",
        "NET I/O",
    ]
    got_name, memory, pids, cpu, net = stats[1].split("|")
    assert got_name == name and memory.endswith(" / 64MiB") and pids == "3" and cpu.endswith("%"), stats
    assert re.fullmatch(r"\S+ / \S+", net), stats


def test_container_prune(cli: Cli) -> None:
    label = f"kcli.prune={cli.release}"
    done_a, done_b, running = cli.name("prune-a"), cli.name("prune-b"), cli.name("prune-running")
    ids = {cli.ok("create", "--name", done_a, "--label", label, IMAGE, "true").strip()}
    cli.ok("run", "--name", done_b, "--label", label, IMAGE, "true")
    ids.add(cli.inspect(done_b, "{{.Id}}"))
    cli.ok("run", "-d", "--name", running, "--label", label, IMAGE, "sleep", "60")
    out = cli.ok("container", "prune", "-f", "--filter", f"label={label}")
    assert out.startswith("Deleted Containers:\n"), out
    assert set(lines(out)[1:-1]) == ids
    assert lines(out)[-1].startswith("Total reclaimed space: ")
    left = cli.ok("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}").split()
    assert left == [running]
    bad_until = cli("container", "prune", "-f", "--filter", "until=soon")
    assert 'failed to parse value as time or duration: "soon"' in bad_until.stderr, bad_until
    bad_key = cli("container", "prune", "-f", "--filter", "color=red")
    assert "Invalid filter 'color'" in bad_key.stderr, bad_key
    # a duration keeps what is younger: the running one is not a candidate anyway, nothing else is left
    assert cli.ok("container", "prune", "-f", "--filter", "until=1h30m", "--filter", f"label={label}") == \
        "Total reclaimed space: 0B\n"  # fmt: skip


# ---- events, info, df --------------------------------------------------------------------------------------


def test_events_bounded_and_live(cli: Cli) -> None:
    name = cli.name("events")
    since = int(time.time())
    assert cli("run", "--rm", "--name", name, IMAGE, "sh", "-c", "exit 2").returncode == 2
    until = int(time.time()) + 1
    bounded = cli.ok("events", "--since", str(since), "--until", str(until), "--filter", f"container={name}",
                     "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")  # fmt: skip
    assert lines(bounded) == [f"container {action} {name}" for action in
                              ("create", "attach", "start", "die", "destroy")], bounded  # fmt: skip
    as_json = [json.loads(line) for line in lines(cli.ok(
        "events", "--since", str(since), "--until", str(until), "--filter", f"container={name}",
        "--filter", "event=die", "--format", "{{json .}}"))]  # fmt: skip
    assert len(as_json) == 1 and as_json[0]["Actor"]["Attributes"]["exitCode"] == "2"
    assert as_json[0]["status"] == "die" and as_json[0]["from"] == IMAGE and as_json[0]["scope"] == "local"
    backwards = cli("events", "--since", str(until), "--until", str(since))
    assert f"`since` time ({until}) cannot be after `until` time ({since})" in backwards.stderr, backwards

    live_name = cli.name("events-live")
    with streaming(
        cli,
        "events",
        "--filter",
        f"container={live_name}",
        "--filter",
        "event=start",
        "--filter",
        "event=die",
        "--format",
        "{{.Action}} {{.Actor.Attributes.exitCode}}",
    ) as live:
        time.sleep(0.3)  # the CLI subscribes before the container is made
        cli.ok("run", "-d", "--name", cli.name("events-other"), IMAGE, "true")  # not the filtered container
        cli.ok("run", "-d", "--name", live_name, IMAGE, "sh", "-c", "sleep 0.2; exit 5")
        seen = live.until(lambda line: line.startswith("die"))
    assert seen == ["start <no value>", "die 5"], seen


def test_info_and_system_df(cli: Cli) -> None:
    def counts() -> tuple[int, ...]:
        info = json.loads(cli.ok("info", "--format", "{{json .}}"))
        return (info["Containers"], info["ContainersRunning"], info["ContainersPaused"], info["ContainersStopped"],
                info["Images"])  # fmt: skip

    before = counts()
    run, paused, stopped = cli.name("info-run"), cli.name("info-paused"), cli.name("info-stopped")
    cli.ok("run", "-d", "--name", run, IMAGE, "sleep", "60")
    cli.ok("run", "-d", "--name", paused, IMAGE, "sleep", "60")
    cli.ok("pause", paused)
    cli.ok("create", "--name", stopped, IMAGE, "true")
    after = counts()
    assert tuple(b - a for a, b in zip(before, after, strict=True)) == (3, 1, 1, 1, 0), (before, after)
    every = cli.ok("ps", "-aq").split()
    assert after[0] == len(every) and after[1] + after[2] == len(cli.ok("ps", "-q").split())
    assert after[4] == len(cli.ok("images", "-q").split()) >= 1

    rows = {
        row["Type"]: row for row in map(json.loads, lines(cli.ok("system", "df", "--format", "{{json .}}")))
    }
    assert set(rows) == {"Images", "Containers", "Local Volumes", "Build Cache"}
    assert int(rows["Containers"]["TotalCount"]) == len(every)
    assert int(rows["Containers"]["Active"]) == after[1] + after[2]
    assert int(rows["Images"]["TotalCount"]) == after[4]
    verbose = cli.ok("system", "df", "-v")
    assert "Containers space usage:" in verbose and stopped in verbose
    image_row = next(line for line in lines(verbose) if line.startswith("busybox ") and " ketch " in line)
    assert "N/A" not in image_row, image_row  # /system/df reports shared and unique sizes
    text = cli.ok("info")
    assert re.search(rf"^ Containers: {after[0]}\n  Running: {after[1]}\n  Paused: {after[2]}\n  Stopped: {after[3]}$",
                     text, re.M), text  # fmt: skip
    cli.ok("unpause", paused)


# ---- options and their effect inside the container ---------------------------------------------------------


def _status_field(status: str, field: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith(field + ":"))


def test_resource_and_security_options(cli: Cli) -> None:
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max;"
        " cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax;"
        " ulimit -n; ulimit -Hn;"
        " touch /probe 2>/dev/null && echo rootfs-rw || echo rootfs-ro;"
        " touch /scratch/x && echo tmpfs-rw;"
        " df -k /dev/shm /scratch | awk 'NR>1 {print $6, $2}';"
        " ps -o pid,args | awk '$1 == 1 {print $2}';"
        " cat /proc/self/status"
    )
    out = cli.ok(
        "run", "--rm", "--memory", "32m", "--pids-limit", "20", "--cap-drop", "ALL", "--cap-add", "NET_RAW",
        "--cap-add", "kill", "--read-only", "--security-opt", "no-new-privileges", "--sysctl",
        "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmax=123456789", "--ulimit", "nofile=1024:1024",
        "--tmpfs", "/scratch:size=1m", "--shm-size", "16m", "--init", IMAGE, "sh", "-c", script,
    )  # fmt: skip
    got = out.split("\n")
    assert got[:8] == ["33554432", "20", "1", "123456789", "1024", "1024", "rootfs-ro", "tmpfs-rw"], got[:8]
    assert got[8:10] == ["/dev/shm 16384", "/scratch 1024"], got[8:10]
    assert got[10] == "/sbin/docker-init", got[10]
    status = "\n".join(got[11:])
    cap_net_raw_kill = f"{(1 << 13) | (1 << 5):016x}"
    assert _status_field(status, "CapEff") == cap_net_raw_kill
    assert _status_field(status, "CapBnd") == cap_net_raw_kill
    assert _status_field(status, "NoNewPrivs") == "1"
    assert _status_field(status, "Seccomp") == "2"

    default = cli.ok("run", "--rm", IMAGE, "cat", "/proc/self/status")
    assert _status_field(default, "Seccomp") == "2" and _status_field(default, "NoNewPrivs") == "0"
    assert _status_field(default, "CapEff") == "00000000a80425fb"  # docker's 14 default capabilities
    unconfined = cli.ok(
        "run", "--rm", "--security-opt", "seccomp=unconfined", IMAGE, "cat", "/proc/self/status"
    )
    assert _status_field(unconfined, "Seccomp") == "0"
    assert _status_field(unconfined, "CapEff") == "00000000a80425fb"

    privileged = cli.ok("run", "--rm", "--privileged", IMAGE, "sh", "-c",
                        "cat /proc/self/status; grep ' /sys ' /proc/mounts; ls /dev | wc -l")  # fmt: skip
    assert _status_field(privileged, "Seccomp") == "0"
    with open("/proc/self/status") as f:
        host_bounding = int(_status_field(f.read(), "CapBnd"), 16)
    assert int(_status_field(privileged, "CapEff"), 16) == host_bounding  # every capability ketchd may give
    sys_mount = next(line for line in lines(privileged) if line.startswith("sysfs /sys "))
    assert sys_mount.split()[3].startswith("rw,"), sys_mount  # /sys is writable only when privileged
    assert int(lines(privileged)[-1]) > 20  # the host's device nodes


def test_restart_policy_and_log_options(cli: Cli) -> None:
    failing = cli.name("on-failure")
    cli.ok(
        "run", "-d", "--name", failing, "--restart", "on-failure:2", IMAGE, "sh", "-c", "echo attempt; exit 1"
    )
    wait_until(lambda: cli.inspect(failing, "{{.State.Status}} {{.RestartCount}}") == "exited 2",
               "two restarts then the end", timeout=20)  # fmt: skip
    assert cli.ok("logs", failing) == "attempt\n" * 3
    assert cli.inspect(failing, "{{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}}") == "1 on-failure"

    logged = cli.name("log-opts")
    cli.ok("run", "--name", logged, "--log-opt", "max-size=1k", "--log-opt", "max-file=2", IMAGE, "sh", "-c",
           "i=0; while [ $i -lt 200 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done")  # fmt: skip
    assert cli.inspect(logged, "{{json .HostConfig.LogConfig}}") == \
        '{"Type":"json-file","Config":{"max-file":"2","max-size":"1k"}}'  # fmt: skip
    log_path = Path(cli.inspect(logged, "{{.LogPath}}"))
    files = sorted(log_path.parent.glob(log_path.name + "*"))
    assert [f.name for f in files] == [log_path.name, log_path.name + ".1"], files
    assert all(f.stat().st_size < 1024 + 200 for f in files), [f.stat().st_size for f in files]
    kept = cli.ok("logs", logged).split("\n")
    assert kept[-2] == "line-199-padding-padding-padding" and 5 < len(kept) < 40, len(kept)


# ---- bad input ---------------------------------------------------------------------------------------------


def test_bad_input(cli: Cli) -> None:
    bad_name = cli("run", "--rm", "--name", "bad name!", IMAGE, "true")
    assert bad_name.returncode == 125
    assert "Invalid container name (bad name!), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed" in bad_name.stderr

    missing = cli("run", "--rm", UNREACHABLE_IMAGE, "true", timeout=60)
    assert missing.returncode == 125
    assert f"Unable to find image '{UNREACHABLE_IMAGE}' locally" in missing.stderr
    assert 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused' in missing.stderr
    for name in ("a", "-x", "x/y"):  # one character, a leading dash, a slash inside
        refused = cli("create", "--name", name, IMAGE, "true")
        assert refused.returncode == 1 and f"Invalid container name ({name})" in refused.stderr, refused
    no_pull = cli("create", "--pull", "never", UNREACHABLE_IMAGE, "true")
    assert no_pull.returncode == 1, no_pull
    assert f"No such image: {UNREACHABLE_IMAGE}" in no_pull.stderr

    tiny = cli("run", "--rm", "--memory", "1k", IMAGE, "true")
    assert tiny.returncode == 125 and "Minimum memory limit allowed is 6MB" in tiny.stderr
    runtime = cli("run", "--rm", "--runtime", "nosuch", IMAGE, "true")
    assert runtime.returncode == 125 and "Unknown runtime specified nosuch" in runtime.stderr
    not_found = cli("run", "--rm", IMAGE, "/no/such/command")
    assert not_found.returncode == 127 and "no such file or directory" in not_found.stderr
    bad_cap = cli("run", "--rm", "--cap-add", "NOT_A_CAP", IMAGE, "true")
    assert bad_cap.returncode == 125 and 'unknown capability: "CAP_NOT_A_CAP"' in bad_cap.stderr
    for verb in ("start", "stop", "restart", "kill", "pause", "unpause", "wait", "logs", "top"):
        done = cli(verb, "kcli-no-such-container")
        assert done.returncode == 1, (verb, done)
        assert "No such container: kcli-no-such-container" in done.stderr, (verb, done.stderr)

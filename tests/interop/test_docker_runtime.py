"""ketch-runtime under Debian's dockerd 20.10, compared with runc.

Every check runs the same engine command once with runc and once with ketch-runtime and asserts that a
user sees the same thing: runc's observation must match what the test expects (so the check itself
is sound on this host), and ketch's must equal runc's. ``RuntimeContract`` holds the checks; podman's
module runs the same contract (test_podman_runtime.py). Docker 28's CLI, when installed, drives a subset.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.interop import daemons
from tests.interop.daemons import RUNTIMES, Engine, container_cgroup

pytestmark = pytest.mark.interop

T = TypeVar("T")
BYTES_32M = "33554432"
COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done"


def observe_each(engine: Engine, observe: Callable[[str], T], expected: Any = None) -> T:
    """Runs ``observe`` for runc then ketch; checks runc against ``expected`` and ketch against runc."""
    seen = {runtime: observe(runtime) for runtime in RUNTIMES}
    if expected is not None:
        assert seen["runc"] == expected, f"runc (the reference) saw {seen['runc']!r}, expected {expected!r}"
    assert seen["ketch"] == seen["runc"], (
        f"{engine.name} with ketch-runtime differs from runc\n  runc:  {seen['runc']!r}\n  ketch: {seen['ketch']!r}\n"
        f"{engine.diagnostics()}"
    )
    return seen["runc"]


def cgroup_value(directory: Path, v1_name: str, v2_name: str) -> str:
    path = directory / v1_name
    if not path.exists():
        path = directory / v2_name
    return path.read_text().strip()


def inside_cgroup_file(v1_path: str, v2_path: str) -> str:
    return f"cat /sys/fs/cgroup/{v1_path} 2>/dev/null || cat /sys/fs/cgroup/{v2_path}"


def wait_for_log(engine: Engine, runtime: str, name: str, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in engine(runtime, "logs", name).stdout:
        assert time.monotonic() < deadline, f"{name} never printed {text!r}\n{engine.diagnostics()}"
        time.sleep(0.05)


def tty_lines(text: str) -> list[str]:
    """What a command printed on its terminal, without the engine's own warnings."""
    return [line for line in text.split("\n") if line.strip() and not line.startswith("WARNING")]


class RuntimeContract:
    """Checks any engine must pass with ketch-runtime exactly as with runc; subclasses give ``engine``."""

    def test_output_and_exit_code(self, engine: Engine) -> None:
        def observe(runtime: str) -> tuple[int, str]:
            proc = engine(runtime, "run", "--rm", engine.image, "sh", "-c", "echo hi; exit 3")
            return proc.returncode, proc.stdout

        observe_each(engine, observe, (3, "hi\n"))

    def test_interactive_tty(self, engine: Engine) -> None:
        def observe(runtime: str) -> tuple[int, list[str]]:
            proc = engine.tty(runtime, "run", "-it", "--rm", engine.image, "sh", "-c", "tty; echo ok")
            return proc.returncode, tty_lines(proc.stdout)

        observe_each(engine, observe, (0, ["/dev/pts/0", "ok"]))

    def test_memory_limit(self, engine: Engine) -> None:
        def observe(runtime: str) -> tuple[str, str, str]:
            name = engine.name_for(runtime)
            engine(
                runtime,
                "run",
                "-d",
                "--name",
                name,
                "--memory",
                "32m",
                engine.image,
                "sleep",
                "60",
                check=True,
            )
            inside = engine(runtime, "exec", name, "sh", "-c",
                            inside_cgroup_file("memory/memory.limit_in_bytes", "memory.max"), check=True)  # fmt: skip
            host = cgroup_value(
                container_cgroup(engine.pid(name), "memory"), "memory.limit_in_bytes", "memory.max"
            )
            return inside.stdout.strip(), host, engine.inspect(name, "{{.HostConfig.Memory}}")

        observe_each(engine, observe, (BYTES_32M, BYTES_32M, BYTES_32M))

    def test_pids_limit(self, engine: Engine) -> None:
        def observe(runtime: str) -> tuple[str, str, str, int, bool]:
            name = engine.name_for(runtime)
            engine(runtime, "run", "-d", "--name", name, "--pids-limit", "10", engine.image, "sleep", "60",
                   check=True)  # fmt: skip
            inside = engine(runtime, "exec", name, "sh", "-c", inside_cgroup_file("pids/pids.max", "pids.max"),
                            check=True)  # fmt: skip
            host = cgroup_value(container_cgroup(engine.pid(name), "pids"), "pids.max", "pids.max")
            # The limit bites: the eleventh process cannot be forked, and busybox sh gives up with status 2.
            forks = engine(runtime, "run", "--rm", "--pids-limit", "10", engine.image, "sh", "-c",
                           "i=0; while [ $i -lt 20 ]; do sleep 5 & i=$((i+1)); done; echo spawned")  # fmt: skip
            return (inside.stdout.strip(), host, engine.inspect(name, "{{.HostConfig.PidsLimit}}"),
                    forks.returncode, "can't fork" in forks.stderr)  # fmt: skip

        observe_each(engine, observe, ("10", "10", "10", 2, True))

    def test_capabilities(self, engine: Engine) -> None:
        def observe(runtime: str) -> tuple[str, str]:
            default = engine(
                runtime, "run", "--rm", engine.image, "grep", "^Cap", "/proc/self/status", check=True
            )
            dropped = engine(runtime, "run", "--rm", "--cap-drop", "ALL", engine.image, "grep", "^Cap",
                             "/proc/self/status", check=True)  # fmt: skip
            return default.stdout, dropped.stdout

        default, dropped = observe_each(engine, observe)
        assert "CapEff:\t0000000000000000" in dropped.splitlines()
        assert "CapBnd:\t0000000000000000" in dropped.splitlines()
        assert "CapEff:\t0000000000000000" not in default.splitlines()

    def test_read_only_rootfs(self, engine: Engine) -> None:
        def observe(runtime: str) -> tuple[int, str, bool]:
            proc = engine(runtime, "run", "--rm", "--read-only", engine.image, "sh", "-c",
                          "touch /probe; echo rc=$?; touch /tmp/probe 2>/dev/null; echo tmp=$?")  # fmt: skip
            return proc.returncode, proc.stdout.split("\n")[0], "Read-only file system" in proc.stderr

        observe_each(engine, observe, (0, "rc=1", True))

    def test_exec(self, engine: Engine) -> None:
        def observe(runtime: str) -> tuple[int, str, str, int, list[str]]:
            name = engine.name_for(runtime)
            engine(runtime, "run", "-d", "--name", name, engine.image, "sleep", "60", check=True)
            plain = engine(runtime, "exec", name, "sh", "-c", "echo exec-out; exit 4")
            as_user = engine(runtime, "exec", "-u", "65534", "-w", "/tmp", name, "sh", "-c", "id -u; pwd",
                             check=True)  # fmt: skip
            tty = engine.tty(runtime, "exec", "-it", name, "sh", "-c", "tty; echo ok")
            return plain.returncode, plain.stdout, as_user.stdout, tty.returncode, tty_lines(tty.stdout)

        result = observe_each(engine, observe)
        assert result[:4] == (4, "exec-out\n", "65534\n/tmp\n", 0)
        assert result[4][-1] == "ok" and result[4][0].startswith("/dev/pts/"), result[4]

    def test_pause_unpause(self, engine: Engine) -> None:
        def observe(runtime: str) -> tuple[str, str, bool, str]:
            name = engine.name_for(runtime)
            engine(runtime, "run", "-d", "--name", name, engine.image, "sh", "-c", COUNTER, check=True)
            wait_for_log(engine, runtime, name, "3\n")
            engine(runtime, "pause", name, check=True)
            paused = engine.inspect(name, "{{.State.Status}} {{.State.Paused}}")
            freezer = container_cgroup(engine.pid(name), "freezer")
            frozen = cgroup_value(freezer, "freezer.state", "cgroup.freeze")  # FROZEN (v1) or 1 (v2)
            time.sleep(0.3)
            before = len(engine(runtime, "logs", name).stdout.split())
            time.sleep(0.6)
            stalled = len(engine(runtime, "logs", name).stdout.split()) == before
            engine(runtime, "unpause", name, check=True)
            running = engine.inspect(name, "{{.State.Status}} {{.State.Paused}}")
            wait_for_log(engine, runtime, name, f"{before + 3}\n")
            return paused, "FROZEN" if frozen in ("FROZEN", "1") else frozen, stalled, running

        observe_each(engine, observe, ("paused true", "FROZEN", True, "running false"))

    def test_stop_ignoring_sigterm(self, engine: Engine) -> None:
        """``sleep`` as pid 1 ignores SIGTERM: stop waits out its timeout, then SIGKILL (status 137)."""

        def observe(runtime: str) -> tuple[int, str, bool]:
            name = engine.name_for(runtime)
            engine(runtime, "run", "-d", "--name", name, engine.image, "sleep", "300", check=True)
            start = time.monotonic()
            stop = engine(runtime, "stop", "-t", "2", name, timeout=30)
            elapsed = time.monotonic() - start
            state = engine.inspect(name, "{{.State.Status}} {{.State.ExitCode}}")
            return stop.returncode, state, 1.5 <= elapsed < 12

        observe_each(engine, observe, (0, "exited 137", True))

    def test_stop_handled_sigterm(self, engine: Engine) -> None:
        """A container that traps SIGTERM exits with its own status, well before the stop timeout."""

        def observe(runtime: str) -> tuple[int, str, bool]:
            name = engine.name_for(runtime)
            script = 'trap "exit 7" TERM; echo ready; while :; do sleep 0.1; done'
            engine(runtime, "run", "-d", "--name", name, engine.image, "sh", "-c", script, check=True)
            wait_for_log(engine, runtime, name, "ready")
            start = time.monotonic()
            stop = engine(runtime, "stop", "-t", "30", name, timeout=60)
            elapsed = time.monotonic() - start
            return (
                stop.returncode,
                engine.inspect(name, "{{.State.Status}} {{.State.ExitCode}}"),
                elapsed < 10,
            )

        observe_each(engine, observe, (0, "exited 7", True))

    def test_detached_logs(self, engine: Engine) -> None:
        def observe(runtime: str) -> tuple[str, str, str]:
            name = engine.name_for(runtime)
            engine(runtime, "run", "-d", "--name", name, engine.image, "sh", "-c",
                   "echo out-line; echo err-line >&2", check=True)  # fmt: skip
            status = engine(runtime, "wait", name, check=True).stdout.strip()
            logs = engine(runtime, "logs", name, check=True)
            return status, logs.stdout, logs.stderr

        observe_each(engine, observe, ("0", "out-line\n", "err-line\n"))

    def test_environment(self, engine: Engine) -> None:
        """The process environment, HOME included: runc sets HOME from /etc/passwd when the spec has none."""

        def observe(runtime: str) -> tuple[list[str], list[str], list[str]]:
            def env(*args: str) -> list[str]:
                proc = engine(runtime, *args, "env", check=True)
                return sorted(line for line in proc.stdout.splitlines() if not line.startswith("HOSTNAME="))

            name = engine.name_for(runtime)
            engine(runtime, "run", "-d", "--name", name, engine.image, "sleep", "60", check=True)
            return (env("run", "--rm", engine.image), env("run", "--rm", "-u", "65534", engine.image),
                    env("exec", name))  # fmt: skip

        as_root, as_nobody, in_exec = observe_each(engine, observe)
        assert "HOME=/root" in as_root and "HOME=/root" in in_exec, (as_root, in_exec)
        assert "HOME=/nonexistent" in as_nobody, as_nobody

    def test_loopback_is_up(self, engine: Engine) -> None:
        """A network namespace the runtime creates has ``lo`` up, as runc and crun make it."""

        def observe(runtime: str) -> str:
            proc = engine(runtime, "run", "--rm", engine.image, "ip", "-o", "link", "show", "lo", check=True)
            return proc.stdout.split("<", 1)[1].split(">", 1)[0]

        observe_each(engine, observe, "LOOPBACK,UP,LOWER_UP")


@pytest.fixture(scope="module")
def docker20(dockerd: daemons.Dockerd) -> Engine:
    return dockerd.client(daemons.DOCKER_CLI)


@pytest.fixture(scope="module")
def docker28(dockerd: daemons.Dockerd) -> Engine:
    if not os.path.exists(daemons.DOCKER_CLI_NEW):
        pytest.skip(f"{daemons.DOCKER_CLI_NEW} (Docker 28's CLI) is not installed")
    engine = dockerd.client(daemons.DOCKER_CLI_NEW)
    engine.name = "docker 28 CLI"
    return engine


class TestDocker(RuntimeContract):
    """Debian's docker 20.10 CLI against the private dockerd."""

    @pytest.fixture
    def engine(self, docker20: Engine) -> Iterator[Engine]:
        yield docker20
        docker20.remove_tracked()


class TestDocker28Cli:
    """Docker 28's CLI (API 1.41 negotiated down) against the same daemon: the commands a user types most."""

    @pytest.fixture
    def engine(self, docker28: Engine) -> Iterator[Engine]:
        yield docker28
        docker28.remove_tracked()

    test_output_and_exit_code = RuntimeContract.test_output_and_exit_code
    test_interactive_tty = RuntimeContract.test_interactive_tty
    test_exec = RuntimeContract.test_exec
    test_pause_unpause = RuntimeContract.test_pause_unpause
    test_detached_logs = RuntimeContract.test_detached_logs

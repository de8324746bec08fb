"""``run`` and ``create`` against a fake daemon: request sequences and bodies compared with docker's traces."""

from __future__ import annotations

import os
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.unit.cli.clirun import run
from tests.unit.cli.engine import (
    Call,
    FakeEngine,
    after_start,
    empty,
    error,
    frames,
    json_reply,
    start_answer,
    stream,
    wait_answer,
)
from tests.unit.client.fakedaemon import trace_calls

CID = "f2b7dc6128e2b38ceb4fe45a1448fe2af00ca3ee7959d7d89565b1ee7d4fe519"


def _trace_create_body(name: str) -> dict[str, Any]:
    for call in trace_calls(name):
        if call["path"].endswith("/containers/create") and call["status"] == 201:
            body: dict[str, Any] = call["req_body"]
            return body
    raise KeyError(name)


def _container(eng: FakeEngine, *, status: int = 0, output: bytes = b"", echo: bool = False) -> None:
    eng.route("POST", "/containers/create", json_reply({"Id": CID, "Warnings": []}, 201))
    eng.route("POST", "/containers/{id}/attach", after_start(eng, output, echo=echo))
    eng.route("POST", "/containers/{id}/wait", wait_answer(eng, status))
    eng.route("POST", "/containers/{id}/start", start_answer(eng))


def test_run_detached_sends_docker_body_and_prints_id(eng: FakeEngine) -> None:
    _container(eng)
    command = "i=0; while true; do echo line $i; i=$((i+1)); sleep 1; done"
    result = run(eng.socket_path, "run", "-d", "--name", "kv20-d", "busybox:local", "sh", "-c", command)
    assert (result.status, result.out, result.err) == (0, CID + "\n", "")
    assert eng.lines() == [
        "POST /containers/create?name=kv20-d",
        f"POST /containers/{CID}/wait?condition=next-exit",
        f"POST /containers/{CID}/start",
    ]
    create = eng.calls[0]
    assert create.version == "1.41"
    assert create.headers["content-type"] == "application/json"
    assert create.json() == _trace_create_body("12-run-d")
    assert list(create.json()) == list(_trace_create_body("12-run-d"))  # docker's key order
    assert list(create.json()["HostConfig"]) == list(_trace_create_body("12-run-d")["HostConfig"])


def test_run_attached_demuxes_and_exits_with_the_container_status(eng: FakeEngine) -> None:
    _container(eng, status=7, output=frames((2, b"err\n"), (1, b"out\n")))
    result = run(eng.socket_path, "run", "--name", "kv20-att", "busybox:local", "sh", "-c",
                 "echo out; echo err >&2; exit 7")  # fmt: skip
    assert (result.status, result.out, result.err) == (7, "out\n", "err\n")
    assert eng.lines() == [
        "POST /containers/create?name=kv20-att",
        f"POST /containers/{CID}/attach?stderr=1&stdout=1&stream=1",
        f"POST /containers/{CID}/wait?condition=next-exit",
        f"POST /containers/{CID}/start",
    ]
    assert eng.calls[0].json() == _trace_create_body("19-run-attached")
    attach = eng.calls[1]
    assert (attach.headers["connection"], attach.headers["upgrade"]) == ("Upgrade", "tcp")


def test_run_interactive_copies_stdin_and_half_closes(eng: FakeEngine) -> None:
    _container(eng, echo=True)
    result = run(eng.socket_path, "run", "-i", "--rm", "busybox:local", "cat", stdin="a\nb\n")
    assert (result.status, result.out, result.err) == (0, "a\nb\n", "")
    assert eng.stdin == [b"a\nb\n"]  # the whole input, then end of file (the fake read to EOF)
    assert eng.lines()[1:3] == [
        f"POST /containers/{CID}/attach?stderr=1&stdin=1&stdout=1&stream=1",
        f"POST /containers/{CID}/wait?condition=removed",
    ]
    assert eng.calls[0].json() == _trace_create_body("20-run-i-stdin")


def test_run_rm_waits_for_removal(eng: FakeEngine) -> None:
    _container(eng, output=frames((1, b"pulled-and-ran\n")))
    result = run(eng.socket_path, "run", "--rm", "127.0.0.1:5000/ketch/v20-bb:t1", "echo", "pulled-and-ran")
    assert (result.status, result.out) == (0, "pulled-and-ran\n")
    assert f"POST /containers/{CID}/wait?condition=removed" in eng.lines()
    assert eng.calls[0].json() == _trace_create_body("08-run-implicit-pull")


def test_run_pulls_a_missing_image_then_creates_again(eng: FakeEngine) -> None:
    attempts: list[int] = []

    def create(call: Call) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            return error(404, "No such image: busybox:latest")
        return json_reply({"Id": CID, "Warnings": ["swap limit not supported"]}, 201)

    progress = [
        b'{"status":"Pulling from library/busybox","id":"latest"}\r\n',
        b'{"status":"Digest: sha256:8867476083fb7029e097ce007cd9e568027abe5c37202e50256da67cec9ef760"}\r\n',
        b'{"status":"Status: Downloaded newer image for busybox:latest"}\r\n',
    ]
    eng.route("POST", "/containers/create", create)
    eng.route("POST", "/images/create", stream(*progress))
    eng.route("POST", "/containers/{id}/wait", wait_answer(eng, 0))
    eng.route("POST", "/containers/{id}/start", start_answer(eng))
    result = run(eng.socket_path, "run", "-d", "busybox")
    assert (result.status, result.out) == (0, CID + "\n")
    assert result.err == (
        "Unable to find image 'busybox:latest' locally\n"
        "latest: Pulling from library/busybox\n"
        "Digest: sha256:8867476083fb7029e097ce007cd9e568027abe5c37202e50256da67cec9ef760\n"
        "Status: Downloaded newer image for busybox:latest\n"
        "WARNING: swap limit not supported\n"
    )
    assert eng.lines()[:3] == [
        "POST /containers/create",
        "POST /images/create?fromImage=busybox&tag=latest",
        "POST /containers/create",
    ]
    assert eng.calls[1].headers["x-registry-auth"] == "e30="


def test_run_pull_never_and_create_errors_exit_125(eng: FakeEngine) -> None:
    eng.route("POST", "/containers/create", error(404, "No such image: nope:latest"))
    result = run(eng.socket_path, "run", "--pull", "never", "nope")
    assert result.status == 125
    assert (
        result.err
        == "ketch: Error response from daemon: No such image: nope:latest.\nSee 'ketch run --help'.\n"
    )
    assert eng.lines() == ["POST /containers/create"]
    bad = run(eng.socket_path, "run", "--pull", "sometimes", "nope")
    assert bad.status == 125
    assert bad.err.startswith("ketch: invalid pull option: 'sometimes': must be one of")


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ('OCI runtime create failed: exec: "nope": executable file not found in $PATH: unknown', 127),
        ("OCI runtime create failed: exec: /etc/passwd: permission denied: unknown", 126),
        ("cannot start: cgroup trouble", 125),
    ],
)
def test_run_start_failures_exit_as_docker_does(eng: FakeEngine, message: str, status: int) -> None:
    eng.route("POST", "/containers/create", json_reply({"Id": CID, "Warnings": None}, 201))
    eng.route("POST", "/containers/{id}/attach", after_start(eng, b""))
    eng.route("POST", "/containers/{id}/wait", wait_answer(eng, 0))
    eng.route("POST", "/containers/{id}/start", error(400, message))
    result = run(eng.socket_path, "run", "busybox", "nope")
    assert result.status == status
    assert result.err == f"ketch: Error response from daemon: {message}.\n"


def test_run_tty_needs_a_terminal_on_stdin(eng: FakeEngine) -> None:
    result = run(eng.socket_path, "run", "-it", "busybox", "sh")
    assert (result.status, result.err) == (1, "the input device is not a TTY\n")
    assert eng.calls == []


def test_run_flag_errors_exit_125_with_docker_wording(eng: FakeEngine) -> None:
    cases = {
        ("-m", "abc"): 'invalid argument "abc" for "-m, --memory" flag: invalid size: \'abc\'',
        ("--cpus", "x"): 'invalid argument "x" for "--cpus" flag: failed to parse x as a rational number',
        (
            "--ulimit",
            "nofile=2048:1024",
        ): 'invalid argument "nofile=2048:1024" for "--ulimit" flag: ulimit soft '
        "limit must be less than or equal to hard limit: 2048 > 1024",
        (
            "--rm=maybe",
        ): 'invalid argument "maybe" for "--rm" flag: strconv.ParseBool: parsing "maybe": invalid syntax',
        (
            "-a",
            "stdfoo",
        ): 'invalid argument "stdfoo" for "-a, --attach" flag: valid streams are STDIN, STDOUT and STDERR',
    }
    for flags, message in cases.items():
        result = run(eng.socket_path, "run", *flags, "busybox")
        assert (result.status, result.err) == (125, message + "\nSee 'ketch run --help'.\n"), flags
    conflict = run(eng.socket_path, "run", "--rm", "--restart", "always", "busybox")
    assert conflict.status == 125
    assert conflict.err == "ketch: Conflicting options: --restart and --rm.\nSee 'ketch run --help'.\n"
    assert (
        run(eng.socket_path, "run", "-d", "-a", "stdout", "busybox").err == "Conflicting options: -a and -d\n"
    )
    missing = run(eng.socket_path, "run")
    assert (missing.status, missing.err) == (
        1,
        "\"ketch run\" requires at least 1 argument.\nSee 'ketch run --help'.\n",
    )
    assert eng.calls == []


def test_run_flags_fill_the_create_body(eng: FakeEngine, tmp_path: Path) -> None:
    _container(eng)
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\n  SPACED=a b \n")
    result = run(
        eng.socket_path, "run", "-d", "--rm=false", "-m", "512m", "--memory-reservation", "256m",
        "--memory-swap", "-1", "--cpus", "1.5", "--cpu-shares", "512", "--cpu-quota", "50000",
        "--cpu-period", "100000", "--cpuset-cpus", "0-1", "--pids-limit", "100",
        "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=64", "--tmpfs", "/run:rw,size=64m", "--tmpfs", "/tmp",
        "-p", "8080:80", "-p", "127.0.0.1:5353:53/udp", "--expose", "9000-9001", "-P",
        "-v", "/data", "-v", "vol:/srv:ro", "--mount", "type=bind,src=/etc,dst=/host-etc,readonly",
        "-e", "A=1", "--env-file", str(env_file), "-l", "team=x", "-w", "/srv", "-u", "1000:1000",
        "--entrypoint", "/bin/sh", "--hostname", "web1", "--restart", "on-failure:3",
        "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--privileged", "--read-only",
        "--security-opt", "no-new-privileges", "--sysctl", "net.ipv4.ip_forward=1",
        "--device", "/dev/fuse", "--oom-score-adj", "-500", "--init", "--shm-size", "128m",
        "--log-driver", "json-file", "--log-opt", "max-size=10m", "--stop-signal", "SIGINT",
        "--stop-timeout", "20", "--network", "none", "--name", "flags",
        "busybox", "-c", "echo hi",
    )  # fmt: skip
    assert result.status == 0, result.err
    body = eng.calls[0].json()
    host = body["HostConfig"]
    assert body["Env"] == ["FROM_FILE=1", "SPACED=a b ", "A=1"]
    assert body["Cmd"] == ["-c", "echo hi"]
    assert body["Entrypoint"] == ["/bin/sh"]
    assert (body["User"], body["WorkingDir"], body["Hostname"]) == ("1000:1000", "/srv", "web1")
    assert body["Labels"] == {"team": "x"}
    assert body["ExposedPorts"] == {"53/udp": {}, "80/tcp": {}, "9000/tcp": {}, "9001/tcp": {}}
    assert body["Volumes"] == {"/data": {}}
    assert (body["StopSignal"], body["StopTimeout"]) == ("SIGINT", 20)
    assert host["PortBindings"] == {
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
    }
    assert host["PublishAllPorts"] is True
    assert host["Binds"] == ["vol:/srv:ro"]
    assert host["Mounts"] == [{"Type": "bind", "Source": "/etc", "Target": "/host-etc", "ReadOnly": True}]
    assert host["Tmpfs"] == {"/run": "rw,size=64m", "/tmp": ""}
    assert (host["Memory"], host["MemoryReservation"], host["MemorySwap"]) == (512 << 20, 256 << 20, -1)
    assert (host["NanoCpus"], host["CpuShares"], host["CpuQuota"], host["CpuPeriod"]) == (
        1_500_000_000, 512, 50000, 100000,
    )  # fmt: skip
    assert (host["CpusetCpus"], host["PidsLimit"], host["OomScoreAdj"], host["ShmSize"]) == (
        "0-1",
        100,
        -500,
        128 << 20,
    )
    assert host["Ulimits"] == [
        {"Name": "nofile", "Hard": 2048, "Soft": 1024},
        {"Name": "nproc", "Hard": 64, "Soft": 64},
    ]
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert (host["CapAdd"], host["CapDrop"]) == (["NET_ADMIN"], ["ALL"])
    assert (host["Privileged"], host["ReadonlyRootfs"], host["Init"], host["AutoRemove"]) == (
        True,
        True,
        True,
        False,
    )
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert host["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}
    ]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert host["NetworkMode"] == "none"
    keys = list(host)
    assert keys.index("Tmpfs") < keys.index("UTSMode") < keys.index("Sysctls") < keys.index("ConsoleSize")
    assert keys[-4:] == ["Mounts", "MaskedPaths", "ReadonlyPaths", "Init"]


def test_create_prints_the_id_and_attaches_nothing(eng: FakeEngine, tmp_path: Path) -> None:
    eng.route("POST", "/containers/create", json_reply({"Id": CID, "Warnings": []}, 201))
    cidfile = tmp_path / "cid"
    result = run(eng.socket_path, "create", "--cidfile", str(cidfile), "-i", "busybox")
    assert (result.status, result.out) == (0, CID + "\n")
    assert cidfile.read_text() == CID
    assert eng.lines() == ["POST /containers/create"]
    body = eng.calls[0].json()
    assert (body["AttachStdin"], body["AttachStdout"], body["OpenStdin"], body["StdinOnce"]) == (
        True,
        True,
        True,
        True,
    )
    again = run(eng.socket_path, "create", "--cidfile", str(cidfile), "busybox")
    assert again.status == 125
    assert again.err.startswith("ketch: Container ID file found, make sure the other container isn't running")


def test_run_it_detaches_on_the_detach_keys(eng: FakeEngine) -> None:
    eng.route("POST", "/containers/create", json_reply({"Id": CID, "Warnings": []}, 201))
    eng.route("POST", "/containers/{id}/attach", after_start(eng, b"", read_stdin=True))
    eng.route("POST", "/containers/{id}/wait", wait_answer(eng, 0, after=asyncio_never()))
    eng.route("POST", "/containers/{id}/start", start_answer(eng))
    master, slave = os.openpty()
    stdin = os.fdopen(slave, "r")

    def typist() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until the CLI has put the terminal in raw mode
            if not termios.tcgetattr(slave)[3] & termios.ICANON:
                break
            time.sleep(0.01)
        os.write(master, b"ls\n")
        time.sleep(0.1)
        os.write(master, b"\x18y")  # ctrl-x, y

    thread = threading.Thread(target=typist)
    thread.start()
    try:
        result = run(
            eng.socket_path, "run", "-it", "--detach-keys", "ctrl-x,y", "busybox", "sh", stdin_stream=stdin
        )
        thread.join()
        mode = termios.tcgetattr(slave)
    finally:
        stdin.close()
        os.close(master)
    assert (result.status, result.out, result.err) == (0, "", "")
    assert mode[3] & termios.ICANON  # the terminal was restored
    attach = eng.find("POST", f"/containers/{CID}/attach")
    assert ("detachKeys", "ctrl-x,y") in attach.query
    deadline = time.monotonic() + 5
    while not eng.stdin and time.monotonic() < deadline:
        time.sleep(0.01)
    assert eng.stdin == [b"ls\n"]  # the detach keys themselves never reach the container
    body = eng.calls[0].json()
    assert (body["Tty"], body["OpenStdin"], body["StdinOnce"]) == (True, True, True)


def asyncio_never() -> Any:
    import asyncio

    return asyncio.Event()


def test_run_forwards_signals_to_the_container(eng: FakeEngine) -> None:
    import asyncio
    import signal

    killed = asyncio.Event()

    def kill(call: Call) -> Any:
        killed.set()
        return empty()

    _container(eng, status=130)
    eng.route("POST", "/containers/{id}/kill", kill)
    eng.route("POST", "/containers/{id}/attach", lambda call: _after_kill(eng, killed))

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while not eng.started.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    result = run(eng.socket_path, "run", "busybox", "sleep", "60")
    thread.join()
    assert (result.status, result.out) == (130, "bye\n")
    assert f"POST /containers/{CID}/kill?signal=INT" in eng.lines()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def _after_kill(eng: FakeEngine, killed: Any) -> Any:
    from ketch.api.http import Hijack, RawStream

    async def run_stream(raw: RawStream) -> None:
        await killed.wait()
        await raw.write(frames((1, b"bye\n")))

    return Hijack(run_stream)


def test_run_without_a_terminal_neither_inspects_nor_resizes(eng: FakeEngine) -> None:
    _container(eng)
    assert run(eng.socket_path, "run", "-t", "busybox", "true").status == 0
    assert not any("/resize" in line or line.endswith("/json") for line in eng.lines())
    assert eng.calls[0].json()["HostConfig"]["ConsoleSize"] == [0, 0]

"""exec, attach and ``start -a`` against a fake daemon: hijacked streams, exit statuses, docker's errors."""

from __future__ import annotations

import asyncio
from typing import Any

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
    trace_reply,
    wait_answer,
)
from tests.unit.client.fakedaemon import trace_calls

CID = "f2b7dc6128e2b38ceb4fe45a1448fe2af00ca3ee7959d7d89565b1ee7d4fe519"
EXEC_ID = "48525df90c964f8be348800d2dba4287ef54f7e6f57a199e615a7cc6f7cb408a"


def _trace_request(name: str, path_suffix: str) -> Any:
    return next(c["req_body"] for c in trace_calls(name) if c["path"].endswith(path_suffix))


def _exec_routes(eng: FakeEngine, output: bytes, exit_code: int, *, echo: bool = False) -> None:
    eng.route("GET", "/containers/{id}/json", trace_reply("16-exec", "GET", "/json"))
    eng.route("POST", "/containers/{id}/exec", json_reply({"Id": EXEC_ID}, 201))
    eng.started.set()  # an exec runs as soon as it is started
    eng.route("POST", "/exec/{id}/start", after_start(eng, output, echo=echo))
    eng.route("GET", "/exec/{id}/json", json_reply({"ID": EXEC_ID, "Running": False, "ExitCode": exit_code}))


def test_exec_sends_docker_s_requests_and_exits_with_the_command_status(eng: FakeEngine) -> None:
    _exec_routes(eng, frames((1, b"out\n"), (2, b"err\n")), 3)
    result = run(eng.socket_path, "exec", "kv20-d", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.status, result.out, result.err) == (3, "out\n", "err\n")
    assert eng.lines() == [
        "GET /containers/kv20-d/json",
        "POST /containers/kv20-d/exec",
        f"POST /exec/{EXEC_ID}/start",
        f"GET /exec/{EXEC_ID}/json",
    ]
    create = eng.calls[1].json()
    assert create == _trace_request("16-exec", "/exec")
    assert list(create) == list(_trace_request("16-exec", "/exec"))
    start = eng.calls[2]
    assert start.json() == {"Detach": False, "Tty": False}
    assert (start.headers["connection"], start.headers["upgrade"]) == ("Upgrade", "tcp")


def test_exec_interactive_forwards_stdin(eng: FakeEngine) -> None:
    _exec_routes(eng, b"", 0, echo=True)
    result = run(eng.socket_path, "exec", "-i", "kv20-d", "cat", stdin="piped\n")
    assert (result.status, result.out) == (0, "piped\n")
    assert eng.stdin == [b"piped\n"]
    assert eng.calls[1].json() == _trace_request("18-exec-i-stdin", "/exec")


def test_exec_detached_env_user_workdir(eng: FakeEngine, tmp_path: Any) -> None:
    _exec_routes(eng, b"", 0)
    eng.route("POST", "/exec/{id}/start", empty(200))
    env_file = tmp_path / "env"
    env_file.write_text("B=2\n")
    result = run(eng.socket_path, "exec", "-d", "-e", "A=1", "--env-file", str(env_file), "-u", "nobody", "-w",
                 "/tmp", "--privileged", "kv20-d", "sleep", "5")  # fmt: skip
    assert (result.status, result.out) == (0, "")
    body = eng.calls[1].json()
    assert body == {"User": "nobody", "Privileged": True, "Tty": False, "AttachStdin": False,
                    "AttachStderr": False, "AttachStdout": False, "Detach": True, "DetachKeys": "",
                    "Env": ["B=2", "A=1"], "WorkingDir": "/tmp", "Cmd": ["sleep", "5"]}  # fmt: skip
    assert eng.calls[2].json() == {"Detach": True, "Tty": False}
    assert eng.lines()[-1] == f"POST /exec/{EXEC_ID}/start"  # no exit status is read for -d


def test_exec_errors(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/{id}/json", error(404, "No such container: nope"))
    missing = run(eng.socket_path, "exec", "nope", "true")
    assert (missing.status, missing.err) == (1, "Error: No such container: nope\n")
    assert eng.lines() == ["GET /containers/nope/json"]
    tty = run(eng.socket_path, "exec", "-it", "nope", "sh")
    assert tty.err == "Error: No such container: nope\n"  # the inspect comes first, as in docker
    eng.route("GET", "/containers/{id}/json", trace_reply("16-exec", "GET", "/json"))
    assert run(eng.socket_path, "exec", "-it", "kv20-d", "sh").err == "the input device is not a TTY\n"
    eng.route("POST", "/containers/{id}/exec", error(409, f"Container {CID} is not running"))
    stopped = run(eng.socket_path, "exec", "kv20-d", "true")
    assert (stopped.status, stopped.err) == (
        1,
        f"Error response from daemon: Container {CID} is not running\n",
    )
    short = run(eng.socket_path, "exec", "kv20-d")
    assert short.err == "\"ketch exec\" requires at least 2 arguments.\nSee 'ketch exec --help'.\n"


def test_exec_stream_error_from_the_daemon(eng: FakeEngine) -> None:
    _exec_routes(eng, frames((1, b"partial"), (3, b"exec failed")), 0)
    result = run(eng.socket_path, "exec", "kv20-d", "true")
    assert (result.status, result.out, result.err) == (
        1,
        "partial",
        "error from daemon in stream: exec failed\n",
    )


def _running(tty: bool = False, open_stdin: bool = False, **state: Any) -> dict[str, Any]:
    return {
        "Id": CID,
        "State": {"Running": True, "Paused": False, "Restarting": False, **state},
        "Config": {"Tty": tty, "OpenStdin": open_stdin},
        "HostConfig": {"AutoRemove": False},
    }


def test_attach_streams_until_exit_and_returns_the_status(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/{id}/json", json_reply(_running(open_stdin=True)))
    eng.started.set()
    eng.route("POST", "/containers/{id}/attach", after_start(eng, frames((1, b"hello\n")), echo=True))
    eng.route("POST", "/containers/{id}/wait", wait_answer(eng, 4))
    result = run(eng.socket_path, "attach", "--detach-keys", "ctrl-a,b", "kv20-d", stdin="typed\n")
    assert (result.status, result.out) == (4, "hello\ntyped\n")
    assert eng.lines() == [
        "POST /containers/kv20-d/wait",
        "GET /containers/kv20-d/json",
        "POST /containers/kv20-d/attach?detachKeys=ctrl-a%2Cb&stderr=1&stdin=1&stdout=1&stream=1",
        "GET /containers/kv20-d/json",
    ]
    no_stdin = run(eng.socket_path, "attach", "--no-stdin", "kv20-d")
    assert no_stdin.status == 4
    assert eng.lines()[-2] == "POST /containers/kv20-d/attach?stderr=1&stdout=1&stream=1"


def test_attach_refuses_stopped_and_paused_containers(eng: FakeEngine) -> None:
    eng.route("POST", "/containers/{id}/wait", wait_answer(eng, 0))
    eng.route("GET", "/containers/{id}/json", json_reply(_running(Running=False)))
    stopped = run(eng.socket_path, "attach", "c")
    assert (stopped.status, stopped.err) == (1, "You cannot attach to a stopped container, start it first\n")
    eng.route("GET", "/containers/{id}/json", json_reply(_running(Paused=True)))
    assert (
        run(eng.socket_path, "attach", "c").err
        == "You cannot attach to a paused container, unpause it first\n"
    )
    eng.route("GET", "/containers/{id}/json", json_reply(_running(tty=True)))
    assert run(eng.socket_path, "attach", "c").err == "the input device is not a TTY\n"


def test_start_attach(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/{id}/json", json_reply(_running(open_stdin=True) | {"State": {}}))
    eng.route("POST", "/containers/{id}/attach", after_start(eng, frames((2, b"boom\n"))))
    eng.route("POST", "/containers/{id}/wait", wait_answer(eng, 2))
    eng.route("POST", "/containers/{id}/start", start_answer(eng))
    result = run(eng.socket_path, "start", "-a", "c")
    assert (result.status, result.out, result.err) == (2, "", "boom\n")
    assert eng.lines() == [
        "GET /containers/c/json",
        f"POST /containers/{CID}/attach?stderr=1&stdout=1&stream=1",
        f"POST /containers/{CID}/wait?condition=next-exit",
        f"POST /containers/{CID}/start",
    ]
    assert run(eng.socket_path, "start", "-a", "a", "b").err == (
        "you cannot start and attach multiple containers at once\n"
    )


def test_exec_tty_over_a_pty_resizes(eng: FakeEngine) -> None:
    import os

    resized: list[Call] = []
    done = asyncio.Event()

    def resize(call: Call) -> Any:
        resized.append(call)
        done.set()
        return empty(200)

    _exec_routes(eng, b"", 5)
    eng.route("POST", "/exec/{id}/resize", resize)

    def tty_output(call: Call) -> Any:
        from ketch.api.http import Hijack, RawStream

        async def run_stream(raw: RawStream) -> None:
            await done.wait()
            await raw.write(b"hi\r\n")  # a tty stream is raw bytes, no frames

        return Hijack(run_stream)

    eng.route("POST", "/exec/{id}/start", tty_output)
    master, slave = os.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    stdin = os.fdopen(slave, "r")
    try:
        result = run(eng.socket_path, "exec", "-it", "kv20-d", "sh", stdin_stream=stdin)
    finally:
        stdin.close()
        os.close(master)
    assert (result.status, result.raw_out) == (5, b"hi\r\n")
    assert resized[0].query == [("h", "33"), ("w", "101")]
    assert eng.calls[1].json()["Tty"] is True
    assert eng.find("POST", f"/exec/{EXEC_ID}/start").json() == {"Detach": False, "Tty": True}

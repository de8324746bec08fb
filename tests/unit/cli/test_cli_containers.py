"""ps, logs, inspect and the lifecycle commands against a fake daemon (answers taken from docker traces)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.unit.cli.clirun import run
from tests.unit.cli.engine import (
    Call,
    FakeEngine,
    empty,
    error,
    frames,
    json_reply,
    stream,
    trace_reply,
)
from tests.unit.client.fakedaemon import trace_stdout

from ketch.cli.commands import ps as ps_cmd

CID = "f2b7dc6128e2b38ceb4fe45a1448fe2af00ca3ee7959d7d89565b1ee7d4fe519"


@pytest.fixture
def ps_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ps_cmd, "_now", lambda: 1795346483.5)  # when docker ran `ps -a` in the trace


def _summary(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Id": "ab" * 32, "Names": ["/web"], "Image": "nginx:latest", "ImageID": "sha256:" + "cd" * 32,
        "Command": "nginx -g 'daemon off;'", "Created": 1795346483 - 70, "Ports": [], "Labels": {},
        "State": "running", "Status": "Up About a minute", "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Networks": {"bridge": {}}}, "Mounts": [],
    }  # fmt: skip
    base.update(fields)
    return base


# ---- ps -----------------------------------------------------------------------------------------------------------


def test_ps_prints_what_docker_printed(eng: FakeEngine, ps_clock: None) -> None:
    eng.route("GET", "/containers/json", trace_reply("13-ps-a", "GET", "/containers/json"))
    result = run(eng.socket_path, "ps", "-a")
    assert (result.status, result.err) == (0, "")
    assert result.out == trace_stdout("13-ps-a")
    assert eng.lines() == ["GET /containers/json?all=1"]


def test_ps_columns_ports_and_truncation(eng: FakeEngine, ps_clock: None) -> None:
    ports = [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 9000, "Type": "udp"},
        {"PrivatePort": 9001, "Type": "udp"},
        {"IP": "127.0.0.1", "PrivatePort": 53, "PublicPort": 53, "Type": "udp"},
    ]
    eng.route("GET", "/containers/json", json_reply([_summary(Ports=ports, Labels={"b": "2", "a": "1"})]))
    assert run(eng.socket_path, "ps").out == (
        "CONTAINER ID   IMAGE          COMMAND                  CREATED              STATUS              PORTS"
        "                                                                          NAMES\n"
        'abababababab   nginx:latest   "nginx -g \'daemon of…"   About a minute ago   Up About a minute   '
        "127.0.0.1:53->53/udp, 9000-9001/udp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp   web\n"
    )
    assert run(eng.socket_path, "ps", "-q").out == "abababababab\n"
    full = run(eng.socket_path, "ps", "--no-trunc", "--format", "{{.ID}} {{.Command}} {{.Labels}}").out
    assert full == "ab" * 32 + " \"nginx -g 'daemon off;'\" a=1,b=2\n"
    assert (
        run(eng.socket_path, "ps", "--format", '{{.Label "b"}}|{{.Names}}|{{.Networks}}').out
        == "2|web|bridge\n"
    )


def test_ps_query_flags_and_size(eng: FakeEngine, ps_clock: None) -> None:
    eng.route("GET", "/containers/json", json_reply([_summary(SizeRw=1200, SizeRootFs=4_260_000)]))
    table = run(eng.socket_path, "ps", "-s", "-n", "3", "-f", "status=running", "-f", "label=a=b").out
    assert table.splitlines()[0].endswith("NAMES     SIZE")
    assert table.splitlines()[1].endswith("web       1.2kB (virtual 4.26MB)")
    call = eng.calls[-1]
    assert [k for k, _ in call.query] == ["filters", "limit", "size"]
    assert json.loads(dict(call.query)["filters"]) == {"label": {"a=b": True}, "status": {"running": True}}
    assert (dict(call.query)["limit"], dict(call.query)["size"]) == ("3", "1")
    as_json = json.loads(run(eng.socket_path, "ps", "--format", "{{json .}}").out)
    assert dict(eng.calls[-1].query) == {"size": "1"}  # {{json .}} reads Size, so docker asks for it
    assert sorted(as_json) == sorted(ps_cmd.PS_HEADERS)
    assert as_json["RunningFor"] == "About a minute ago" and as_json["Size"] == "1.2kB (virtual 4.26MB)"
    run(eng.socket_path, "ps", "-l")
    assert dict(eng.calls[-1].query) == {"limit": "1"}
    custom = run(eng.socket_path, "ps", "--format", "table {{.Names}}\\t{{.State}}")
    assert custom.out == "NAMES     STATE\nweb       running\n"
    quiet = run(eng.socket_path, "ps", "-q", "--format", "{{.Names}}")
    assert (quiet.out, quiet.err) == (
        "abababababab\n",
        "WARNING: Ignoring custom format, because both --format and --quiet are set.\n",
    )
    assert run(eng.socket_path, "ps", "-f", "status").status == 125


# ---- logs ---------------------------------------------------------------------------------------------------------


def test_logs_tail_timestamps_match_docker(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/{id}/json", trace_reply("15-logs-tail-t", "GET", "/json"))
    eng.route("GET", "/containers/{id}/logs", trace_reply("15-logs-tail-t", "GET", "/logs"))
    result = run(eng.socket_path, "logs", "--tail", "2", "-t", "kv20-d")
    assert (result.status, result.out, result.err) == (0, trace_stdout("15-logs-tail-t"), "")
    assert eng.lines() == [
        "GET /containers/kv20-d/json",
        f"GET /containers/{CID}/logs?stderr=1&stdout=1&tail=2&timestamps=1",
    ]


def test_logs_follow_splits_stdout_and_stderr(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/{id}/json", trace_reply("14-logs-f", "GET", "/json"))
    body = frames((2, b"err$i\n"), (1, b"out$i\n"), (1, b"out"), (1, b" more\n"))
    eng.route("GET", "/containers/{id}/logs", stream(body[:5], body[5:20], body[20:]))
    result = run(eng.socket_path, "logs", "-f", "--since", "1795346467", "--until", "2026-11-22T11:21:26Z",
                 "--details", "kv20-logs")  # fmt: skip
    assert (result.status, result.out, result.err) == (0, "out$i\nout more\n", "err$i\n")
    query = dict(eng.calls[-1].query)
    assert query == {"details": "1", "follow": "1", "since": "1795346467", "stderr": "1", "stdout": "1",
                     "tail": "all", "until": "1795346486.000000000"}  # fmt: skip


def test_logs_of_a_tty_container_are_raw_and_errors_are_docker_s(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/{id}/json", json_reply({"Id": CID, "Config": {"Tty": True}}))
    eng.route("GET", "/containers/{id}/logs", stream(b"\x01raw\r\n"))
    assert run(eng.socket_path, "logs", "t").raw_out == b"\x01raw\r\n"
    bad = run(eng.socket_path, "logs", "--since", "yesterday", "t")
    assert bad.err == 'invalid value for "since": failed to parse value as time or duration: "yesterday"\n'
    eng.route("GET", "/containers/{id}/json", error(404, "No such container: nope"))
    missing = run(eng.socket_path, "logs", "nope")
    assert (missing.status, missing.err) == (1, "Error: No such container: nope\n")


def test_logs_stream_error_frame(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/{id}/json", json_reply({"Id": CID, "Config": {"Tty": False}}))
    eng.route("GET", "/containers/{id}/logs", stream(frames((1, b"a\n"), (3, b"log file is gone"))))
    result = run(eng.socket_path, "logs", "c")
    assert (result.status, result.out, result.err) == (
        1,
        "a\n",
        "error from daemon in stream: log file is gone\n",
    )


# ---- inspect ------------------------------------------------------------------------------------------------------


def test_inspect_container_then_image(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/{id}/json", trace_reply("22-inspect-container", "GET", "/json"))
    result = run(eng.socket_path, "inspect", "kv20-d")
    assert result.status == 0
    assert result.out.startswith(trace_stdout("22-inspect-container"))  # the trace keeps the first 4000 bytes
    formatted = run(
        eng.socket_path, "inspect", "-f", "{{.State.Running}} {{.Name}} {{json .Config.Cmd}}", "kv20-d"
    )
    assert (
        formatted.out
        == 'true /kv20-d ["sh","-c","i=0; while true; do echo line $i; i=$((i+1)); sleep 1; done"]\n'
    )
    run(eng.socket_path, "container", "inspect", "-s", "kv20-d")
    assert eng.calls[-1].query == [("size", "1")]
    eng.route("GET", "/containers/{id}/json", error(404, "No such container: busybox:local"))
    eng.route("GET", "/images/{name:.*}/json", error(404, "No such image: busybox:local"))
    missing = run(eng.socket_path, "inspect", "busybox:local")
    assert (missing.status, missing.out, missing.err) == (1, "[]\n", "Error: No such object: busybox:local\n")
    assert eng.lines()[-2:] == ["GET /containers/busybox:local/json", "GET /images/busybox:local/json"]
    only = run(eng.socket_path, "container", "inspect", "busybox:local")
    assert only.err == "Error: No such container: busybox:local\n"


# ---- lifecycle ----------------------------------------------------------------------------------------------------


def _missing_or(answer: Any) -> Any:
    def reply(call: Call) -> Any:
        if call.params["id"] == "nope":
            return error(404, "No such container: nope")
        return answer

    return reply


def test_stop_kill_pause_report_each_container_in_order(eng: FakeEngine) -> None:
    for action in ("stop", "kill", "pause", "unpause", "restart"):
        eng.route("POST", f"/containers/{{id}}/{action}", _missing_or(empty()))
    result = run(eng.socket_path, "stop", "-t", "1", "a", "nope", "b")
    assert (result.status, result.out) == (1, "a\nb\n")
    assert result.err == "Error response from daemon: No such container: nope\n"
    assert sorted(eng.lines()) == ["POST /containers/a/stop?t=1", "POST /containers/b/stop?t=1",
                                   "POST /containers/nope/stop?t=1"]  # fmt: skip
    assert run(eng.socket_path, "stop", "a").status == 0
    assert eng.lines()[-1] == "POST /containers/a/stop"  # no -t: the daemon's timeout
    assert run(eng.socket_path, "kill", "kv20-k").out == "kv20-k\n"
    assert eng.lines()[-1] == "POST /containers/kv20-k/kill?signal=KILL"
    run(eng.socket_path, "kill", "-s", "HUP", "kv20-k")
    assert eng.lines()[-1] == "POST /containers/kv20-k/kill?signal=HUP"
    assert run(eng.socket_path, "pause", "a").out == "a\n"
    assert run(eng.socket_path, "container", "unpause", "a").out == "a\n"
    run(eng.socket_path, "restart", "-t", "3", "a")
    assert eng.lines()[-1] == "POST /containers/a/restart?t=3"


def test_rm_errors_and_force(eng: FakeEngine) -> None:
    eng.route("DELETE", "/containers/{id}", _missing_or(empty()))
    result = run(eng.socket_path, "rm", "kv20-d", "nope")
    assert (result.status, result.out, result.err) == (1, "kv20-d\n", "Error: No such container: nope\n")
    forced = run(eng.socket_path, "rm", "-f", "-v", "nope", "kv20-rm")
    assert (forced.status, forced.out, forced.err) == (0, "kv20-rm\n", "Error: No such container: nope\n")
    assert "DELETE /containers/kv20-rm?force=1&v=1" in eng.lines()
    eng.route("DELETE", "/containers/{id}", error(409, "You cannot remove a running container x. Stop the container "
                                                        "before attempting removal or force remove"))  # fmt: skip
    running = run(eng.socket_path, "container", "remove", "x")
    assert running.status == 1
    assert running.err.startswith("Error response from daemon: You cannot remove a running container x.")


def test_start_wait_rename(eng: FakeEngine) -> None:
    eng.route("POST", "/containers/{id}/start", _missing_or(empty()))
    started = run(eng.socket_path, "start", "a", "nope")
    assert (started.status, started.out) == (1, "a\n")
    assert (
        started.err
        == "Error response from daemon: No such container: nope\nError: failed to start containers: nope\n"
    )
    eng.route("POST", "/containers/{id}/wait", json_reply({"Error": None, "StatusCode": 3}))
    waited = run(eng.socket_path, "wait", "a", "b")
    assert (waited.status, waited.out) == (0, "3\n3\n")
    assert eng.lines()[-1] == "POST /containers/b/wait"
    eng.route("POST", "/containers/{id}/rename", _missing_or(empty()))
    assert run(eng.socket_path, "rename", "a", "b").status == 0
    assert eng.lines()[-1] == "POST /containers/a/rename?name=b"
    failed = run(eng.socket_path, "rename", "nope", "b")
    assert failed.err == (
        "Error response from daemon: No such container: nope\nError: failed to rename container named nope\n"
    )


def test_update_sends_resources_and_restart_policy(eng: FakeEngine) -> None:
    eng.route("POST", "/containers/{id}/update", json_reply({"Warnings": []}))
    result = run(eng.socket_path, "update", "-m", "256m", "--cpus", "0.5", "--pids-limit", "50",
                 "--restart", "always", "a")  # fmt: skip
    assert (result.status, result.out) == (0, "a\n")
    body = eng.calls[-1].json()
    assert (body["Memory"], body["NanoCpus"], body["PidsLimit"]) == (256 << 20, 500_000_000, 50)
    assert body["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert (body["MemorySwappiness"], body["Ulimits"], body["CpuShares"]) == (None, None, 0)
    nothing = run(eng.socket_path, "update", "a")
    assert nothing.err == "you must provide one or more flags when using this command\n"


def test_port_and_top(eng: FakeEngine) -> None:
    ports = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
             "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}], "9000/tcp": None}  # fmt: skip
    eng.route("GET", "/containers/{id}/json", json_reply({"Id": CID, "NetworkSettings": {"Ports": ports}}))
    assert run(eng.socket_path, "port", "web").out == (
        "53/udp -> 127.0.0.1:5353\n80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
    )
    assert run(eng.socket_path, "port", "web", "80").out == "0.0.0.0:8080\n[::]:8080\n"
    missing = run(eng.socket_path, "port", "web", "9000/tcp")
    assert (missing.status, missing.err) == (1, "Error: No public port '9000/tcp' published for web\n")
    top = {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
           "Processes": [["root", "17640", "17617", "0", "11:21", "?", "00:00:00", "sh -c sleep 1"]]}  # fmt: skip
    eng.route("GET", "/containers/{id}/top", json_reply(top))
    result = run(eng.socket_path, "top", "web", "-ef")
    assert eng.calls[-1].query == [("ps_args", "-ef")]
    assert result.out.splitlines() == [
        "UID                 PID                 PPID                C                   STIME               "
        "TTY                 TIME                CMD",
        "root                17640               17617               0                   11:21               "
        "?                   00:00:00            sh -c sleep 1",
    ]


def test_container_prune_commit_export_import(eng: FakeEngine, tmp_path: Path) -> None:
    eng.route(
        "POST", "/containers/prune", json_reply({"ContainersDeleted": ["a" * 64], "SpaceReclaimed": 1234})
    )
    declined = run(eng.socket_path, "container", "prune", stdin="n\n")
    assert declined.out == (
        "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
        "Total reclaimed space: 0B\n"
    )
    assert eng.calls == []
    pruned = run(eng.socket_path, "container", "prune", "-f", "--filter", "until=1h")
    assert pruned.out == f"Deleted Containers:\n{'a' * 64}\n\nTotal reclaimed space: 1.234kB\n"
    assert json.loads(dict(eng.calls[-1].query)["filters"]) == {"until": {"1h": True}}

    eng.route("POST", "/commit", json_reply({"Id": "sha256:" + "e" * 64}, 201))
    result = run(eng.socket_path, "commit", "-c", "ENV A=1", "-c", "CMD sh", "-m", "msg", "--pause=false", "c1",
                 "myimg")  # fmt: skip
    assert result.out == "sha256:" + "e" * 64 + "\n"
    assert eng.calls[-1].query == [
        ("author", ""), ("changes", "ENV A=1"), ("changes", "CMD sh"), ("comment", "msg"), ("container", "c1"),
        ("pause", "0"), ("repo", "myimg"), ("tag", "latest"),
    ]  # fmt: skip

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"))
    eng.route("GET", "/containers/{id}/export", stream(archive.getvalue(), content_type="application/x-tar"))
    out = tmp_path / "c.tar"
    assert run(eng.socket_path, "export", "-o", str(out), "c1").status == 0
    assert out.read_bytes() == archive.getvalue()
    assert run(eng.socket_path, "export", "c1").raw_out == archive.getvalue()

    eng.route("POST", "/images/create", stream(b'{"status":"sha256:' + b"f" * 64 + b'"}\r\n'))
    result = run(eng.socket_path, "import", "-m", "imported", "-c", "CMD sh", str(out), "new:1")
    assert (result.status, result.out) == (0, "sha256:" + "f" * 64 + "\n")
    call = eng.calls[-1]
    assert call.query == [("changes", "CMD sh"), ("fromSrc", "-"), ("message", "imported"), ("repo", "new:1"),
                          ("tag", "")]  # fmt: skip
    assert call.body == archive.getvalue()

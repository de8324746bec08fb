"""Image commands against a fake daemon answering with what dockerd answered in the 20.10 traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.unit.cli.clirun import run
from tests.unit.client.fakedaemon import Canned, FakeDaemon, trace_answer, trace_stdout

from ketch.cli.commands import images as images_cmd

# The Date header of dockerd's answer in 03-images: "Sun, 22 Nov 2026 11:21:11 GMT".
TRACE_NOW = 1795346471.0


@pytest.fixture
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_cmd, "_now", lambda: TRACE_NOW)


def test_images_prints_what_docker_printed(daemon: FakeDaemon, pinned_clock: None) -> None:
    daemon.route("GET", "/images/json", trace_answer("03-images", "GET", "/images/json"))
    result = run(daemon.socket_path, "images")
    assert (result.status, result.err) == (0, "")
    assert result.out == trace_stdout("03-images")
    [call] = daemon.calls()
    assert (call.version, call.query) == ("1.41", [])


def test_images_flags_reach_the_daemon(daemon: FakeDaemon, pinned_clock: None) -> None:
    daemon.route("GET", "/images/json", Canned.json([]))
    result = run(daemon.socket_path, "images", "-a", "--filter", "dangling=true", "busybox")
    assert result.status == 0
    assert result.out == "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n"
    query = dict(daemon.calls()[0].query)
    assert query["all"] == "1"
    assert json.loads(query["filters"]) == {"dangling": {"true": True}, "reference": {"busybox": True}}


def _image(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "Containers": -1, "Created": int(TRACE_NOW) - 7200, "Id": "sha256:" + "ab" * 32, "Labels": None,
        "ParentId": "", "RepoDigests": None, "RepoTags": None, "SharedSize": -1, "Size": 4260000,
        "VirtualSize": 4260000,
    }  # fmt: skip
    base.update(fields)
    return base


def test_images_quiet_no_trunc_and_digests(daemon: FakeDaemon, pinned_clock: None) -> None:
    digest = "sha256:" + "cd" * 32
    daemon.route(
        "GET",
        "/images/json",
        Canned.json([_image(RepoTags=["a:1", "a:2", "localhost:5000/b:x"], RepoDigests=[f"a@{digest}"])]),
    )
    assert run(daemon.socket_path, "images", "-q").out == "abababababab\n" * 3
    assert run(daemon.socket_path, "images", "-q", "--no-trunc").out == ("sha256:" + "ab" * 32 + "\n") * 3
    out = run(daemon.socket_path, "images", "--digests").out.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split() == ["a", "1", digest, "abababababab", "2", "hours", "ago", "4.26MB"]
    assert out[3].split()[:3] == ["localhost:5000/b", "x", "<none>"]


def test_images_format_and_template_errors(daemon: FakeDaemon, pinned_clock: None) -> None:
    daemon.route("GET", "/images/json", Canned.json([_image(RepoTags=["a:1"])]))
    assert (
        run(daemon.socket_path, "images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").out
        == "a:1 4.26MB\n"
    )
    table = run(daemon.socket_path, "images", "--format", "table {{.ID}}\\t{{.Repository}}").out
    assert table == "IMAGE ID       REPOSITORY\nabababababab   a\n"
    as_json = json.loads(run(daemon.socket_path, "images", "--format", "{{json .}}").out)
    assert as_json["Repository"] == "a" and as_json["CreatedSince"] == "2 hours ago"
    bad = run(daemon.socket_path, "images", "--format", "{{.Nope}}")
    assert bad.status == 1
    assert bad.err.startswith(
        'Template parsing error: template: :1:2: executing "" at <.Nope>: can\'t evaluate field Nope'
    )


def test_images_daemon_error(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/images/json", Canned.error(400, "invalid filter 'nope'"))
    result = run(daemon.socket_path, "images", "--filter", "nope=1")
    assert (result.status, result.out) == (1, "")
    assert result.err == "Error response from daemon: invalid filter 'nope'\n"


def test_bad_flag_exits_125(daemon: FakeDaemon) -> None:
    result = run(daemon.socket_path, "images", "--bogus")
    assert result.status == 125
    assert "See 'ketch images --help'." in result.err


def test_pull_prints_the_stream_like_docker(daemon: FakeDaemon) -> None:
    daemon.route("POST", "/images/create", trace_answer("07-pull", "POST", "/images/create"))
    result = run(daemon.socket_path, "pull", "127.0.0.1:5000/ketch/v20-bb:t1")
    assert (result.status, result.err) == (0, "")
    assert result.out == trace_stdout("07-pull")
    call = daemon.calls()[0]
    assert call.query == [("fromImage", "127.0.0.1:5000/ketch/v20-bb"), ("tag", "t1")]
    assert call.headers["X-Registry-Auth"] == "e30="


def test_pull_default_tag_quiet_and_stream_error(daemon: FakeDaemon) -> None:
    daemon.route(
        "POST", "/images/create", Canned.stream(['{"status":"Pulling from library/busybox","id":"latest"}'])
    )
    quiet = run(daemon.socket_path, "pull", "-q", "busybox")
    assert quiet.out == "docker.io/library/busybox:latest\n"
    assert daemon.calls()[0].query == [("fromImage", "busybox"), ("tag", "latest")]
    loud = run(daemon.socket_path, "pull", "busybox")
    assert loud.out.startswith("Using default tag: latest\nlatest: Pulling from library/busybox\n")
    daemon.route(
        "POST",
        "/images/create",
        Canned.stream(['{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}']),
    )
    failed = run(daemon.socket_path, "pull", "busybox:nope")
    assert (failed.status, failed.err) == (1, "manifest unknown\n")


def test_pull_error_before_stream(daemon: FakeDaemon) -> None:
    daemon.route("POST", "/images/create", Canned.error(404, "pull access denied for nope"))
    result = run(daemon.socket_path, "pull", "nope")
    assert result.status == 1
    assert result.err == "Error response from daemon: pull access denied for nope\n"


def test_push_skips_aux(daemon: FakeDaemon) -> None:
    daemon.route("POST", "/images/127.0.0.1:5000/ketch/v20-bb/push", trace_answer("05-push", "POST", "/push"))
    result = run(daemon.socket_path, "push", "127.0.0.1:5000/ketch/v20-bb:t1")
    assert (result.status, result.out) == (0, trace_stdout("05-push"))
    assert daemon.calls()[0].query == [("tag", "t1")]


def test_tag(daemon: FakeDaemon) -> None:
    daemon.route("POST", "/images/busybox:local/tag", Canned(201))
    result = run(daemon.socket_path, "tag", "busybox:local", "127.0.0.1:5000/ketch/v20-bb:t1")
    assert (result.status, result.out, result.err) == (0, "", "")
    assert daemon.calls()[0].query == [("repo", "127.0.0.1:5000/ketch/v20-bb"), ("tag", "t1")]
    run(daemon.socket_path, "image", "tag", "busybox:local", "other")
    assert daemon.calls()[1].query == [("repo", "other"), ("tag", "latest")]


def test_tag_wrong_arguments(daemon: FakeDaemon) -> None:
    missing = run(daemon.socket_path, "tag", "only-one")
    assert (missing.status, missing.err) == (
        1,
        "\"ketch tag\" requires more arguments: target\nSee 'ketch tag --help'.\n",
    )
    assert run(daemon.socket_path, "tag", "a", "b", "c").status == 1
    assert daemon.calls() == []


def test_rmi_prints_untagged_and_deleted(daemon: FakeDaemon) -> None:
    daemon.route("DELETE", "/images/kv20-build:classic", trace_answer("51-rmi-built", "DELETE", "classic"))
    result = run(daemon.socket_path, "rmi", "kv20-build:classic")
    assert (result.status, result.out) == (0, trace_stdout("51-rmi-built"))


def test_rmi_continues_after_errors(daemon: FakeDaemon) -> None:
    daemon.route("DELETE", "/images/a", Canned.json([{"Untagged": "a:latest"}]))
    daemon.route("DELETE", "/images/b", Canned.error(409, "conflict: unable to remove repository reference"))
    result = run(daemon.socket_path, "rmi", "-f", "--no-prune", "nope", "a", "b")
    assert result.status == 1
    assert result.out == "Untagged: a:latest\n"
    assert result.err.splitlines() == [
        "Error response from daemon: page not found: DELETE /images/nope",
        "Error response from daemon: conflict: unable to remove repository reference",
    ]
    assert dict(daemon.calls()[1].query) == {"force": "1", "noprune": "1"}


def test_inspect_indents_like_docker(daemon: FakeDaemon) -> None:
    answer = trace_answer("23-inspect-image", "GET", "/images/busybox:local/json")
    daemon.route("GET", "/images/busybox:local/json", answer)
    result = run(daemon.socket_path, "inspect", "busybox:local")
    assert (result.status, result.out) == (0, trace_stdout("23-inspect-image"))
    assert [c.path for c in daemon.calls()] == [
        "/containers/busybox:local/json",
        "/images/busybox:local/json",
    ]


def test_inspect_format_and_missing(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/images/a/json", Canned.json({"Id": "sha256:1", "RepoTags": ["a:1", "a:2"]}))
    daemon.route("GET", "/images/nope/json", Canned.error(404, "No such image: nope"))
    result = run(daemon.socket_path, "image", "inspect", "-f", '{{.Id}} {{join .RepoTags ","}}', "a", "nope")
    assert result.status == 1
    assert result.out == "sha256:1 a:1,a:2\n"
    assert result.err == "Error: No such image: nope\n"
    generic = run(daemon.socket_path, "inspect", "nope")
    assert (generic.out, generic.err) == ("[]\n", "Error: No such object: nope\n")
    missing_field = run(daemon.socket_path, "inspect", "--format", "{{.Nope}}", "a")
    assert missing_field.out == "<no value>\n"


HISTORY = [
    {"Comment": "", "Created": int(TRACE_NOW) - 3 * 86400, "CreatedBy": '/bin/sh -c #(nop)  CMD ["sh"]',
     "Id": "sha256:" + "12" * 32, "Size": 0, "Tags": ["busybox:latest"]},
    {"Comment": "imported", "Created": int(TRACE_NOW) - 3 * 86400,
     "CreatedBy": "/bin/sh -c #(nop) ADD file:4ab1234567890abcdef1234567890abcdef in / ",
     "Id": "<missing>", "Size": 4261550, "Tags": None},
]  # fmt: skip


def test_history(daemon: FakeDaemon, pinned_clock: None) -> None:
    daemon.route("GET", "/images/busybox/history", Canned.json(HISTORY))
    result = run(daemon.socket_path, "history", "busybox")
    assert result.out.splitlines() == [
        "IMAGE          CREATED      CREATED BY                                      SIZE      COMMENT",
        '121212121212   3 days ago   /bin/sh -c #(nop)  CMD ["sh"]                   0B        ',
        "<missing>      3 days ago   /bin/sh -c #(nop) ADD file:4ab1234567890abcd…   4.26MB    imported",
    ]
    raw = run(daemon.socket_path, "history", "-H=false", "--format", "{{.CreatedSince}} {{.Size}}", "busybox")
    stamp = "2026-11-19T11:21:11Z"
    assert raw.out == f"{stamp} 0\n{stamp} 4261550\n"
    assert run(daemon.socket_path, "history", "-q", "busybox").out == "121212121212\n<missing>\n"
    full = run(daemon.socket_path, "image", "history", "--no-trunc", "--format", "{{.CreatedBy}}", "busybox")
    assert full.out.splitlines()[1] == HISTORY[1]["CreatedBy"]


def test_save_to_file_and_refuses_terminal(daemon: FakeDaemon, tmp_path: Path) -> None:
    daemon.route(
        "GET", "/images/get", Canned(200, b"tar-bytes" * 1000, {"Content-Type": "application/x-tar"})
    )
    target = tmp_path / "out.tar"
    result = run(daemon.socket_path, "save", "-o", str(target), "busybox:local", "a")
    assert (result.status, result.err) == (0, "")
    assert target.read_bytes() == b"tar-bytes" * 1000
    assert daemon.calls()[0].query == [("names", "busybox:local"), ("names", "a")]
    to_stdout = run(daemon.socket_path, "image", "save", "busybox:local")
    assert to_stdout.raw_out == b"tar-bytes" * 1000


def test_load_from_file(daemon: FakeDaemon, tmp_path: Path) -> None:
    daemon.route("POST", "/images/load", Canned.json({"stream": "Loaded image: busybox:local\n"}))
    archive = tmp_path / "in.tar"
    archive.write_bytes(b"x" * 5000)
    result = run(daemon.socket_path, "load", "-i", str(archive))
    assert (result.status, result.out) == (0, trace_stdout("50-load"))
    call = daemon.calls()[0]
    assert (call.query, call.body, call.headers["Content-Type"]) == (
        [("quiet", "1")],
        b"x" * 5000,
        "application/x-tar",
    )
    missing = run(daemon.socket_path, "load", "-i", str(tmp_path / "none.tar"))
    assert missing.status == 1 and "No such file or directory" in missing.err


def test_image_prune(daemon: FakeDaemon) -> None:
    report = {"ImagesDeleted": [{"Untagged": "a:1"}, {"Deleted": "sha256:ff"}], "SpaceReclaimed": 1234567}
    daemon.route("POST", "/images/prune", Canned.json(report))
    result = run(daemon.socket_path, "image", "prune", "-f", "-a")
    assert (
        result.out == "Deleted Images:\nuntagged: a:1\ndeleted: sha256:ff\n\nTotal reclaimed space: 1.235MB\n"
    )
    assert json.loads(dict(daemon.calls()[0].query)["filters"]) == {"dangling": {"false": True}}
    declined = run(daemon.socket_path, "image", "prune", stdin="n\n")
    assert declined.out == (
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
        "Total reclaimed space: 0B\n"
    )
    assert len(daemon.calls()) == 1
    accepted = run(daemon.socket_path, "image", "prune", stdin="y\n")
    assert accepted.status == 0 and len(daemon.calls()) == 2


def test_local_errors_have_no_daemon_prefix(daemon: FakeDaemon) -> None:
    result = run(daemon.socket_path, "pull", "busy:box:x")
    assert result.status == 1
    assert result.err == "invalid reference format\n"
    assert daemon.calls() == []

"""info, events, stats, system df and system prune against a fake daemon answering as dockerd did."""

from __future__ import annotations

import json

import pytest
from tests.unit.cli.clirun import run
from tests.unit.cli.engine import Call, FakeEngine, error, json_reply, stream, trace_reply
from tests.unit.client.fakedaemon import trace_calls, trace_stdout

import ketch
from ketch.cli.commands import ps as ps_cmd


def test_info_server_section_matches_docker(eng: FakeEngine) -> None:
    eng.route("GET", "/info", trace_reply("02-info", "GET", "/info"))
    result = run(eng.socket_path, "info")
    assert (result.status, result.err) == (0, "")
    client, _, server = result.out.partition("\n\n")
    assert client == f"Client:\n Version:    {ketch.__version__}\n Context:    default\n Debug Mode: false"
    assert server == trace_stdout("02-info").partition("\n\n")[2]
    formatted = run(
        eng.socket_path, "system", "info", "--format", "{{.ServerVersion}} {{.NCPU}} {{.ClientInfo.Context}}"
    )
    assert formatted.out == "20.10.24+dfsg1 2 default\n"


def test_info_warnings_debug_and_errors(eng: FakeEngine) -> None:
    info = {"Containers": 1, "Debug": True, "NFd": 9, "NGoroutines": 3, "SystemTime": "t", "NEventsListener": 0,
            "OSType": "linux", "Labels": ["a=b"], "Warnings": ["WARNING: No swap limit support"],
            "RegistryConfig": {"IndexConfigs": {"r:5000": {"Name": "r:5000", "Secure": False}},
                               "InsecureRegistryCIDRs": [], "Mirrors": ["https://m"]}}  # fmt: skip
    eng.route("GET", "/info", json_reply(info))
    result = run(eng.socket_path, "info")
    assert result.err == "WARNING: No swap limit support\n"
    assert "  File Descriptors: 9\n  Goroutines: 3\n" in result.out
    assert " Labels:\n  a=b\n" in result.out
    assert " Insecure Registries:\n  r:5000\n Registry Mirrors:\n  https://m\n" in result.out
    eng.route("GET", "/info", error(500, "boom"))
    failed = run(eng.socket_path, "info")
    assert failed.status == 1
    assert failed.out.endswith("Server:\n")
    assert failed.err == "ERROR: Error response from daemon: boom\nerrors pretty printing info\n"


def test_events_json_format_matches_docker(eng: FakeEngine) -> None:
    eng.route("GET", "/events", trace_reply("48-events-live", "GET", "/events"))
    result = run(eng.socket_path, "events", "--format", "{{json .}}")
    assert (result.status, result.out) == (0, trace_stdout("48-events-live"))
    assert eng.lines() == ["GET /events"]


def test_events_default_format_filters_and_times(eng: FakeEngine) -> None:
    eng.route("GET", "/events", trace_reply("48-events-live", "GET", "/events"))
    result = run(eng.socket_path, "system", "events", "--since", "1795346467", "--until", "1795346536",
                 "--filter", "type=container")  # fmt: skip
    lines = result.out.splitlines()
    assert lines[0] == (
        "2026-11-22T11:22:18.526205074Z container create "
        "38426a874baaa4c65085f07374c502116e1725c2518ba396246f370195debaea "
        "(image=busybox:local, name=boring_mirzakhani)"
    )
    assert lines[2].startswith("2026-11-22T11:22:18.538096952Z network connect bd3a0eb62d47")
    expected = next(c for c in trace_calls("47-events-bounded") if c["path"].endswith("/events"))["query"]
    assert sorted(eng.calls[-1].query) == sorted((k, v) for k, v in expected)
    template = run(eng.socket_path, "events", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
    assert template.out.splitlines()[0] == "container create boring_mirzakhani"
    bad = run(eng.socket_path, "events", "--format", "{{.Nope}}")
    assert bad.status == 64
    assert bad.err.startswith(
        'Error parsing format: template: :1:2: executing "" at <.Nope>: can\'t evaluate'
    )


def test_stats_no_stream_matches_docker(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/json", trace_reply("24-stats-no-stream", "GET", "/containers/json"))
    eng.route("GET", "/containers/{id}/stats", trace_reply("24-stats-no-stream", "GET", "/stats"))
    result = run(eng.socket_path, "stats", "--no-stream")
    assert (result.status, result.out) == (0, trace_stdout("24-stats-no-stream"))
    assert eng.lines() == ["GET /containers/json", "GET /containers/f2b7dc6128e2/stats?stream=0"]
    named = run(
        eng.socket_path, "container", "stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}}", "kv20-d"
    )
    assert named.out == "kv20-d 0.10%\n"
    as_json = json.loads(run(eng.socket_path, "stats", "--no-stream", "--format", "{{json .}}", "kv20-d").out)
    assert as_json == {"BlockIO": "0B / 0B", "CPUPerc": "0.10%", "Container": "kv20-d", "ID": "f2b7dc6128e2",
                       "MemPerc": "0.00%", "MemUsage": "812KiB / 23.54GiB", "Name": "kv20-d", "NetIO": "876B / 0B",
                       "PIDs": "2"}  # fmt: skip
    eng.route("GET", "/containers/{id}/stats", error(404, "No such container: nope"))
    missing = run(eng.socket_path, "stats", "--no-stream", "nope")
    assert (missing.status, missing.err) == (1, "Error response from daemon: No such container: nope\n")


@pytest.fixture
def df_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ps_cmd, "_now", lambda: 1795346600.0)


DF = {
    "LayersSize": 12_300_000,
    "Images": [
        {"Id": "sha256:" + "a" * 64, "RepoTags": ["busybox:local"], "Created": 1795340000, "Size": 4_260_000,
         "SharedSize": 0, "Containers": 1},
        {"Id": "sha256:" + "b" * 64, "RepoTags": ["<none>:<none>"], "Created": 1795340000, "Size": 8_040_000,
         "SharedSize": 0, "Containers": 0},
    ],
    "Containers": [
        {"Id": "c" * 64, "Names": ["/web"], "Image": "busybox:local", "ImageID": "sha256:" + "a" * 64,
         "Command": "sleep 1d", "Created": 1795346500, "State": "running", "Status": "Up 2 minutes",
         "SizeRw": 100, "Mounts": []},
        {"Id": "d" * 64, "Names": ["/old"], "Image": "busybox:local", "ImageID": "sha256:" + "a" * 64,
         "Command": "true", "Created": 1795346500, "State": "exited", "Status": "Exited (0) 1 minute ago",
         "SizeRw": 300, "Mounts": []},
    ],
    "Volumes": [{"Name": "v1", "UsageData": {"Size": 2000, "RefCount": 0}}],
    "BuildCache": [],
}  # fmt: skip


def test_system_df(eng: FakeEngine, df_clock: None) -> None:
    eng.route("GET", "/system/df", json_reply(DF))
    result = run(eng.socket_path, "system", "df")
    assert result.out == (
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"
        "Images          2         1         12.3MB    8.04MB (65%)\n"
        "Containers      2         1         400B      300B (75%)\n"
        "Local Volumes   1         0         2kB       2kB (100%)\n"
        "Build Cache     0         0         0B        0B\n"
    )
    verbose = run(eng.socket_path, "system", "df", "-v").out
    assert verbose.startswith("Images space usage:\n\nREPOSITORY   TAG       IMAGE ID       CREATED")
    assert (
        "\nContainers space usage:\n\nCONTAINER ID   IMAGE           COMMAND      LOCAL VOLUMES   SIZE"
        in verbose
    )
    assert (
        'cccccccccccc   busybox:local   "sleep 1d"   0               100B      About a minute ago' in verbose
    )
    assert (
        "\nLocal Volumes space usage:\n\nVOLUME NAME   LINKS     SIZE\nv1            0         2kB\n"
        in verbose
    )
    assert verbose.endswith("\nBuild cache usage: 0B\n\nCACHE ID   CACHE TYPE   SIZE      CREATED   LAST USED   "
                            "USAGE     SHARED\n")  # fmt: skip
    assert run(eng.socket_path, "system", "df", "--format", "{{.Type}}={{.Size}}").out.splitlines()[0] == (
        "Images=12.3MB"
    )


def test_system_prune(eng: FakeEngine) -> None:
    eng.route("POST", "/containers/prune", json_reply({"ContainersDeleted": ["c1"], "SpaceReclaimed": 100}))
    eng.route("POST", "/images/prune", json_reply({"ImagesDeleted": [{"Untagged": "a:1"}, {"Deleted": "sha256:x"}],
                                                   "SpaceReclaimed": 2000}))  # fmt: skip
    eng.route("POST", "/volumes/prune", json_reply({"VolumesDeleted": ["v1"], "SpaceReclaimed": 50}))
    eng.route("POST", "/networks/prune", json_reply({"NetworksDeleted": ["n1"]}))
    eng.route("POST", "/build/prune", error(404, "page not found"))  # a daemon without a builder yet
    declined = run(eng.socket_path, "system", "prune", stdin="no\n")
    assert declined.out == (
        "WARNING! This will remove:\n  - all stopped containers\n"
        "  - all networks not used by at least one container\n  - all dangling images\n"
        "  - all dangling build cache\n\nAre you sure you want to continue? [y/N] "
    )
    assert eng.calls == []
    result = run(eng.socket_path, "system", "prune", "-a", "--volumes", stdin="y\n")
    assert result.status == 0
    assert result.out.endswith(
        "[y/N] Deleted Containers:\nc1\n\nDeleted Networks:\nn1\n\nDeleted Volumes:\nv1\n\n"
        "Deleted Images:\nuntagged: a:1\ndeleted: sha256:x\n\nTotal reclaimed space: 2.15kB\n"
    )
    assert "  - all volumes not used by at least one container\n" in result.out
    images = eng.find("POST", "/images/prune")
    assert json.loads(dict(images.query)["filters"]) == {"dangling": {"false": True}}
    assert [c.path for c in eng.calls] == ["/containers/prune", "/networks/prune", "/volumes/prune",
                                            "/images/prune", "/build/prune"]  # fmt: skip


def test_events_stream_ends_cleanly(eng: FakeEngine) -> None:
    def events(call: Call) -> object:
        return stream(
            b'{"Type":"volume","Action":"create","Actor":{"ID":"v1","Attributes":null},"time":1}\n'
        )(call)

    eng.route("GET", "/events", events)
    out = run(eng.socket_path, "events", "--format", "{{json .}}").out
    assert out == '{"Type":"volume","Action":"create","Actor":{"ID":"v1","Attributes":null},"time":1}\n'

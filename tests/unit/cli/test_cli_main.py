"""Global flags, host selection and `ketch version`."""

from __future__ import annotations

import io
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from tests.unit.cli.clirun import run
from tests.unit.client.fakedaemon import Canned, FakeDaemon, serve, trace_answer, trace_stdout

import ketch
from ketch.cli.main import main


def test_version_server_section_matches_docker(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/version", trace_answer("01-version", "GET", "/version"))
    result = run(daemon.socket_path, "version")
    assert (result.status, result.err) == (0, "")
    client, _, server = result.out.partition("\n\n")
    expected_server = trace_stdout("01-version").partition("\n\n")[2]
    assert server == expected_server
    assert client.splitlines()[:3] == [
        "Client:",
        f" Version:           {ketch.__version__}",
        " API version:       1.41",
    ]
    assert f" Python version:    {platform.python_version()}" in client


def test_version_format_and_downgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETCH_NO_AUTOSTART", "1")
    with serve(tmp_path / "old.sock", api_version="1.40") as fake:
        fake.route("GET", "/version", trace_answer("01-version", "GET", "/version"))
        result = run(fake.socket_path, "version", "--format", "{{.Server.Version}} {{.Client.ApiVersion}}")
        assert result.out == "20.10.24+dfsg1 1.40\n"
        text = run(fake.socket_path, "version").out
        assert " API version:       1.40 (downgraded from 1.41)\n" in text
        assert fake.calls()[0].version == "1.40"


def test_version_without_daemon_prints_client_then_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KETCH_NO_AUTOSTART", "1")
    result = run(tmp_path / "none.sock", "version")
    assert result.status == 1
    assert result.out.startswith("Client:\n")
    assert (
        result.err
        == f"Cannot connect to the ketch daemon at unix://{tmp_path}/none.sock. Is the ketch daemon running?\n"
    )


def _main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdin=io.StringIO(), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_global_version_and_help() -> None:
    assert _main("--version") == (0, f"ketch version {ketch.__version__}\n", "")
    status, out, _ = _main()
    assert status == 0 and "COMMAND" in out


def test_unknown_command_and_flags() -> None:
    status, _, err = _main("frobnicate")
    assert status == 125 and "invalid choice: 'frobnicate'" in err
    status, _, err = _main("--bogus", "images")
    assert status == 125


def test_host_from_environment(daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon.route("GET", "/images/json", trace_answer("03-images", "GET", "/images/json"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("KETCH_HOST", f"unix://{daemon.socket_path}")
    status, out, err = _main("images", "-q")
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == "866b8e2c340c"
    monkeypatch.delenv("KETCH_HOST")
    status, _, err = _main("images")
    assert status == 1 and "unix:///nonexistent/docker.sock" in err
    assert _main("-H", "unix:///a", "-H", "unix:///b", "images")[0] == 1


def test_images_format_from_config_file(daemon: FakeDaemon, tmp_path: Path) -> None:
    daemon.route("GET", "/images/json", trace_answer("03-images", "GET", "/images/json"))
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "config.json").write_text('{"imagesFormat": "{{.Repository}}"}')
    status, out, _ = _main("-H", f"unix://{daemon.socket_path}", "--config", str(config), "images")
    assert status == 0
    assert out.splitlines()[:2] == ["anchors/bktest", "hello"]


def test_docker_host_is_never_autostarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KETCH_NO_AUTOSTART", raising=False)
    monkeypatch.delenv("KETCH_HOST", raising=False)
    monkeypatch.setenv("KETCH_DAEMON", "/nonexistent/ketchd")  # would fail loudly if it were started
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    status, _, err = _main("images")
    assert status == 1
    assert (
        err
        == f"Cannot connect to the ketch daemon at unix://{tmp_path}/docker.sock. Is the ketch daemon running?\n"
    )


def test_cli_import_is_light() -> None:
    heavy = ("http.client", "json", "ketch.client")
    code = f"import sys, ketch.cli.main; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_inspect_escapes_like_go(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/images/a/json", Canned.json({"Comment": "<a & b>", "Empty": [], "Obj": {}}))
    out = run(daemon.socket_path, "image", "inspect", "a").out
    assert out == (
        '[\n    {\n        "Comment": "\\u003ca \\u0026 b\\u003e",\n        "Empty": [],\n        "Obj": {}\n    }\n]\n'
    )

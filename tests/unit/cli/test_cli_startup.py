"""Start-up budget of the ``ketch`` CLI: what its common commands import, and how the lean launcher runs it.

Each command runs in a fresh ``python -I -S`` (as the launcher that scripts/install_launchers.py installs
runs it: no site-packages) against a fake daemon on a unix socket, then reports which of the costly modules
it loaded. On a unix socket the CLI must not load http.client (with email and ssl), nor asyncio, rich or httpx,
nor the standard modules it has cheap alternatives for.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.unit.cli.engine import (
    FakeEngine,
    after_start,
    empty,
    frames,
    json_reply,
    start_answer,
    stream,
    trace_reply,
    wait_answer,
)

from ketch.cli import main as cli_main

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "scripts"
CID = "f2b7dc6128e2b38ceb4fe45a1448fe2af00ca3ee7959d7d89565b1ee7d4fe519"
EXEC_ID = "48525df90c964f8be348800d2dba4287ef54f7e6f57a199e615a7cc6f7cb408a"

# Never on these paths (a package counts with its submodules).
BANNED = ("http.client", "email", "ssl", "asyncio", "rich", "httpx", "typing", "dataclasses", "inspect", "json",
          "socket", "threading", "subprocess", "shutil", "platform", "urllib", "base64", "ketch.spec.reference",
          "ketch.spec.engine_api", "ketch.spec.stdcopy")  # fmt: skip

PROBE = """
import sys
sys.path.insert(0, {src!r})
from ketch.cli.main import main
try:
    status = main({argv!r})
except SystemExit as exc:
    status = exc.code
loaded = sorted(name for name in {banned!r} if any(m == name or m.startswith(name + ".") for m in sys.modules))
print("LOADED", loaded, "STATUS", status, file=sys.stderr)
"""


def _probe(socket_path: Path, *argv: str) -> tuple[list[str], str, str]:
    code = PROBE.format(src=str(REPO / "src"), argv=["-H", f"unix://{socket_path}", *argv], banned=BANNED)
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "KETCH_HOST")}
    env["KETCH_NO_AUTOSTART"] = "1"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    report = [line for line in done.stderr.splitlines() if line.startswith("LOADED ")]
    assert report, done.stderr
    loaded_text, _, status = report[-1].removeprefix("LOADED ").partition(" STATUS ")
    return ast.literal_eval(loaded_text), status, done.stdout


def _container_routes(eng: FakeEngine) -> None:
    eng.route("POST", "/containers/create", json_reply({"Id": CID, "Warnings": []}, 201))
    eng.route("POST", "/containers/{id}/attach", after_start(eng, frames((1, b"out\n"), (2, b"err\n"))))
    eng.route("POST", "/containers/{id}/wait", wait_answer(eng, 3))
    eng.route("POST", "/containers/{id}/start", start_answer(eng))
    eng.route("POST", "/containers/{id}/stop", empty())
    eng.route("DELETE", "/containers/{id}", empty())
    eng.route("GET", "/containers/{id}/logs", stream(frames((1, b"logged\n"))))
    listing = [{"Id": CID, "Names": ["/web"], "Image": "user/app:1.0", "ImageID": "sha256:" + "a" * 64,
                "Command": "sleep 100", "Created": 1700000000, "Ports": [], "Labels": {}, "State": "running",
                "Status": "Up 2 minutes", "Mounts": []}]  # fmt: skip
    eng.route("GET", "/containers/json", json_reply(listing))
    eng.route("GET", "/version", trace_reply("01-version", "GET", "/version"))
    eng.route("GET", "/containers/{id}/json", trace_reply("16-exec", "GET", "/json"))
    eng.route("POST", "/containers/{id}/exec", json_reply({"Id": EXEC_ID}, 201))
    eng.route("GET", "/exec/{id}/json", json_reply({"ID": EXEC_ID, "Running": False, "ExitCode": 0}))
    eng.route("GET", "/networks", trace_reply("31-network-ls", "GET", "/networks"))


@pytest.mark.parametrize(
    ("argv", "status", "out"),
    [
        (["version"], "0", "Server:"),
        (["--version"], "0", "ketch version"),
        (["run", "--help"], "0", "usage: ketch run"),
        (["ps"], "0", "user/app:1.0"),
        (["run", "--rm", "--network", "none", "busybox:local", "sh", "-c", "exit 3"], "3", "out\n"),
        (["stop", "web"], "0", "web\n"),
        (["rm", "web"], "0", "web\n"),
        (["logs", "web"], "0", "logged\n"),
        (["exec", "web", "true"], "0", ""),
        (["network", "ls"], "0", "kv20-net"),
        (["run", "-d", "--network", "kv20-net", "--network-alias", "a", "busybox:local"], "0", CID),
    ],
)
def test_common_commands_stay_lean(eng: FakeEngine, argv: list[str], status: str, out: str) -> None:
    _container_routes(eng)
    if argv[0] == "exec":
        eng.started.set()
        eng.route("POST", "/exec/{id}/start", after_start(eng, b""))
    loaded, got_status, stdout = _probe(eng.socket_path, *argv)
    assert (got_status, out in stdout) == (status, True), stdout
    assert loaded == []


def test_command_modules_table_matches_their_registrations() -> None:
    """COMMAND_MODULES lets a command import only its module: it must name every top-level command exactly."""
    registered: dict[str, str] = {}
    for name in cli_main._MODULES:
        module = __import__(f"ketch.cli.commands.{name}", fromlist=["register"])
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        module.register(sub, {})
        for command, _ in sub.choices.items():
            assert command not in registered, f"{command} registered by {registered.get(command)} and {name}"
            registered[command] = name
    assert registered == cli_main.COMMAND_MODULES


def test_lean_launcher_runs_the_cli(tmp_path: Path) -> None:
    """The launcher install_launchers.py writes for ``ketch`` runs it with -I -S and exits with its status."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import install_launchers
    finally:
        sys.path.remove(str(SCRIPTS))
    assert install_launchers.COMMANDS["ketch"] == "ketch.cli.main"
    launcher = tmp_path / "ketch"
    launcher.write_text(install_launchers.render("ketch", sys.executable, str(REPO / "src")))
    launcher.chmod(0o755)
    assert launcher.read_text().startswith(f"#!{sys.executable} -IS\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, env=env, check=False)
    assert (done.returncode, done.stdout.startswith("ketch version "), done.stderr) == (0, True, "")
    done = subprocess.run([str(launcher), "--bogus"], capture_output=True, text=True, env=env, check=False)
    assert (done.returncode, done.stderr) == (125, "unknown flag: --bogus\nSee 'ketch --help'.\n")
    # Output and error written to one pipe: in the order written under PYTHONUNBUFFERED (as pip's launcher
    # ran it), else standard output comes at exit.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\ndef main():\n    sys.stdout.write('out\\n')\n    sys.stderr.write('err\\n')\n    return 3\n"
    )
    install_launchers.COMMANDS["probe"] = "probe"
    install_launchers.PRELUDES["probe"] = install_launchers.UNBUFFERED
    try:
        launcher.write_text(install_launchers.render("probe", sys.executable, str(tmp_path)))
    finally:
        del install_launchers.COMMANDS["probe"], install_launchers.PRELUDES["probe"]
    for unbuffered, expected in (("1", "out\nerr\n"), ("", "err\nout\n")):
        done = subprocess.run([str(launcher)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env | {"PYTHONUNBUFFERED": unbuffered}, check=False)  # fmt: skip
        assert (done.returncode, done.stdout) == (3, expected)

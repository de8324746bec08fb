"""The runc-compatible command line, without containers: parsing, logging, spec, features, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ketch.runtime import cli
from ketch.runtime.process_spec import build_exec_process, parse_bytes, resources_from_flags
from ketch.spec.oci_runtime import validate

REPO = Path(__file__).resolve().parents[3]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from ketch.runtime.cli import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize(
    "argv,opts,rest",
    [
        (["--bundle", "b", "id"], {"bundle": "b"}, ["id"]),
        (["-b=b", "--pid-file=/p", "id"], {"bundle": "b", "pid-file": "/p"}, ["id"]),
        (
            ["-bundle", "b", "--no-pivot", "id", "--not-a-flag"],
            {"bundle": "b", "no-pivot": True},
            ["id", "--not-a-flag"],
        ),
        (["--no-pivot=false", "id"], {"no-pivot": False}, ["id"]),
        (["--preserve-fds", "2", "--", "-id"], {"preserve-fds": 2}, ["-id"]),
    ],
)
def test_parse_follows_urfave_rules(argv: list[str], opts: dict[str, object], rest: list[str]) -> None:
    parsed, remaining = cli._parse(argv, cli._COMMANDS["create"])
    assert parsed == opts and remaining == rest


def test_parse_errors() -> None:
    with pytest.raises(cli.Usage, match="flag provided but not defined: -nope"):
        cli._parse(["--nope", "x"], cli._COMMANDS["create"])
    with pytest.raises(cli.Usage, match="flag needs an argument: -bundle"):
        cli._parse(["--bundle"], cli._COMMANDS["create"])
    with pytest.raises(cli.Usage, match="parse error"):
        cli._parse(["--preserve-fds", "two", "x"], cli._COMMANDS["create"])


def test_repeatable_flags() -> None:
    opts, rest = cli._parse(
        ["-e", "A=1", "--env", "B=2", "--cap", "CAP_KILL", "id", "sh"], cli._COMMANDS["exec"]
    )
    assert opts == {"env": ["A=1", "B=2"], "cap": ["CAP_KILL"]} and rest == ["id", "sh"]


def test_version_and_help() -> None:
    out = run_cli("--version")
    assert (
        out.returncode == 0
        and out.stdout.startswith("ketch-runtime version ")
        and "spec: 1.1.0" in out.stdout
    )
    assert "commands:" in run_cli("--help").stdout


def test_error_lines_in_text_and_json(tmp_path: Path) -> None:
    out = run_cli("--root", str(tmp_path), "state", "nope")
    assert out.returncode == 1
    assert (
        out.stderr.startswith('time="')
        and "level=error msg=\"container 'nope' does not exist\"" in out.stderr
    )
    log = tmp_path / "log.json"
    out = run_cli("--root", str(tmp_path), "--log", str(log), "--log-format", "json", "delete", "nope")
    entry = json.loads(log.read_text())
    assert entry["level"] == "error" and entry["msg"] == "container 'nope' does not exist"
    assert out.stderr.strip() == "container 'nope' does not exist"
    assert run_cli("--root", str(tmp_path), "delete", "--force", "nope").returncode == 0


def test_spec_writes_valid_config_once(tmp_path: Path) -> None:
    assert run_cli("spec", cwd=tmp_path).returncode == 0
    config = json.loads((tmp_path / "config.json").read_text())
    validate(config)
    assert config["process"]["args"] == ["sh"] and config["root"]["path"] == "rootfs"
    again = run_cli("spec", cwd=tmp_path)
    assert again.returncode == 1 and "File config.json exists. Remove it first" in again.stderr
    rootless = tmp_path / "rootless"
    rootless.mkdir()
    assert run_cli("spec", "--rootless", "--bundle", str(rootless)).returncode == 0
    config = json.loads((rootless / "config.json").read_text())
    validate(config)
    assert {"type": "user"} in config["linux"]["namespaces"]
    assert {"type": "network"} not in config["linux"]["namespaces"]


def test_features_document() -> None:
    out = run_cli("features")
    doc = json.loads(out.stdout)
    assert doc["ociVersionMax"] == "1.1.0"
    assert set(doc["hooks"]) == {
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    }
    assert "user" in doc["linux"]["namespaces"] and "CAP_SYS_ADMIN" in doc["linux"]["capabilities"]
    assert doc["linux"]["seccomp"]["enabled"] and "SCMP_ACT_ERRNO" in doc["linux"]["seccomp"]["actions"]
    assert "SCMP_ACT_NOTIFY" not in doc["linux"]["seccomp"]["actions"]
    assert "rbind" in doc["mountOptions"]


def test_list_of_empty_root(tmp_path: Path) -> None:
    out = run_cli("--root", str(tmp_path / "none"), "list")
    assert out.stdout.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert run_cli("--root", str(tmp_path), "list", "--format", "json").stdout.strip() == "[]"


def test_tabwriter_matches_runc_layout() -> None:
    from ketch.runtime.commands import _tabwrite

    text = _tabwrite([["ID", "PID"], ["a-long-container-id", "1"]])
    # cells are as wide as the widest text plus 3, and at least 12
    assert text == "ID" + " " * 20 + "PID\na-long-container-id   1\n"


@pytest.mark.parametrize(
    "text,value",
    [
        ("100", 100),
        ("1k", 1024),
        ("32m", 32 << 20),
        ("1.5g", 3 << 29),
        ("2GiB", 2 << 30),
        ("-1", -1),
        ("64MB", 64 << 20),
    ],
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("bad", ["", "m", "12x", "-5", "1..2m"])
def test_parse_bytes_rejects(bad: str) -> None:
    with pytest.raises(Exception, match="invalid size"):
        parse_bytes(bad)


def test_resources_from_flags() -> None:
    assert resources_from_flags(
        {
            "memory": "32m",
            "memory-swap": "-1",
            "cpu-quota": "5000",
            "cpuset-cpus": "0",
            "pids-limit": 20,
            "blkio-weight": 300,
        }
    ) == {
        "memory": {"limit": 32 << 20, "swap": -1},
        "cpu": {"quota": 5000, "cpus": "0"},
        "pids": {"limit": 20},
        "blockIO": {"weight": 300},
    }


def test_exec_process_from_flags() -> None:
    base = {
        "args": ["sleep"],
        "env": ["PATH=/bin", "A=1"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
        "terminal": True,
        "consoleSize": {"height": 1, "width": 1},
    }
    proc = build_exec_process(
        base,
        {
            "env": ["A=2", "B=3"],
            "cwd": "/tmp",
            "user": "1000:100",
            "additional-gids": ["5"],
            "cap": ["net_raw"],
            "tty": False,
            "no-new-privs": True,
        },
        ["ls", "-l"],
    )
    assert proc["args"] == ["ls", "-l"] and proc["env"] == ["PATH=/bin", "A=2", "B=3"]
    assert proc["cwd"] == "/tmp" and proc["user"] == {"uid": 1000, "gid": 100, "additionalGids": [5]}
    assert "CAP_NET_RAW" in proc["capabilities"]["effective"] and proc["noNewPrivileges"] is True
    assert proc["terminal"] is False and "consoleSize" not in proc
    assert base["env"] == ["PATH=/bin", "A=1"]  # the container's own process is untouched
    with pytest.raises(Exception, match="unknown capability"):
        build_exec_process(base, {"cap": ["CAP_FLY"]}, ["ls"])
    with pytest.raises(Exception, match="no command"):
        build_exec_process(base, {}, [])


def test_runtime_path_imports_stay_lean() -> None:
    """The modules a `run` loads must not pull in the costly standard modules (see docs/runtime.md)."""
    src = str(REPO / "src")
    code = "\n".join(
        [
            f"import sys; sys.path.insert(0, {src!r})",
            "import ketch.runtime.cli, ketch.runtime.commands, ketch.runtime.create, ketch.runtime.lifecycle",
            "import ketch.runtime.exec, ketch.runtime.cgroup_warmup, ketch.runtime.cgroups",
            "banned = {'typing', 're', 'enum', 'json', 'dataclasses', 'subprocess', 'signal', 'socket',",
            "          'argparse', 'logging', 'inspect', 'threading'}",
            "print(sorted(banned & set(sys.modules)))",
        ]
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "text,seconds", [("5s", 5.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5), ("1h", 3600.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    from ketch.runtime.process_spec import parse_duration

    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "s", "fast", "-1s", "0"])
def test_parse_duration_rejects(bad: str) -> None:
    from ketch.runtime.process_spec import parse_duration

    with pytest.raises(Exception, match="invalid duration"):
        parse_duration(bad)


def test_warm_up_thread_blocks_signals() -> None:
    """Signals for a foreground `run` must reach the main thread (which forwards them), never the warm-up thread."""
    src = str(REPO / "src")
    code = "\n".join([
        f"import os, sys, time; sys.path.insert(0, {src!r})",
        "from ketch.runtime import cgroup_warmup",
        "if cgroup_warmup._own_procs_file() is None: print('none'); sys.exit(0)",
        "cgroup_warmup.warm_up(); time.sleep(0.05)",
        "me = os.getpid()",
        "for tid in os.listdir('/proc/self/task'):",
        "    if int(tid) != me:",
        "        status = open(f'/proc/self/task/{tid}/status').read()",
        "        print([l.split()[1] for l in status.splitlines() if l.startswith('SigBlk')][0])",
        "cgroup_warmup.done()",
    ])  # fmt: skip
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.split()
    if lines == ["none"]:
        pytest.skip("no cgroup to warm up here")
    assert lines, "the warm-up thread was not running"
    blocked = int(lines[0], 16)
    for sig in (1, 2, 15, 10, 28):  # HUP, INT, TERM, USR1, WINCH
        assert blocked & (1 << (sig - 1)), f"signal {sig} reaches the warm-up thread"

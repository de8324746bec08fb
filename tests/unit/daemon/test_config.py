"""ketchd configuration: defaults, daemon.json, flags over the file, and errors that name the setting."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ketch.api.server import TLSFiles
from ketch.common.errors import InvalidArgument
from ketch.daemon import config as cfg
from ketch.daemon.config import DaemonConfig, load_config


@pytest.fixture(autouse=True)
def no_system_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cfg, "DEFAULT_CONFIG_FILE", str(tmp_path / "absent.json"))


def write(tmp_path: Path, obj: object) -> str:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(obj))
    return str(path)


def test_defaults() -> None:
    config = load_config([])
    assert replace(config, runtimes=(), init_path="") == DaemonConfig(
        data_root="/var/lib/ketch", exec_root="/run/ketch", hosts=("unix:///run/ketch/ketch.sock",),
        pidfile="/run/ketch/ketchd.pid", log_level="info", runtimes=(),
    )  # fmt: skip
    assert config.logging_level == "INFO"
    assert config.default_runtime == "ketch-runtime"
    assert {name for name, _ in config.runtimes} == {"ketch-runtime", "runc", "crun"}


def test_runtimes(tmp_path: Path) -> None:
    path = write(tmp_path, {"runtimes": {"mine": {"path": "/opt/mine"}}, "default-runtime": "mine"})
    config = load_config(["--config-file", path, "--add-runtime", "other=/opt/other"])
    assert dict(config.runtimes)["mine"] == "/opt/mine"
    assert dict(config.runtimes)["other"] == "/opt/other"
    assert config.default_runtime == "mine"
    with pytest.raises(InvalidArgument, match="NAME=PATH"):
        load_config(["--add-runtime", "broken"])
    with pytest.raises(InvalidArgument, match="not a configured runtime"):
        load_config(["--default-runtime", "nosuch"])


def test_file_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "data-root": "/srv/k", "exec-root": "/run/k2", "hosts": ["unix:///run/k2/a.sock"], "log-level": "warn",
        "insecure-registries": ["reg:5000"], "tls": True,
    })  # fmt: skip
    config = load_config(["--config-file", path])
    assert (config.data_root, config.exec_root, config.pidfile) == ("/srv/k", "/run/k2", "/run/k2/ketchd.pid")
    assert config.hosts == ("unix:///run/k2/a.sock",) and config.logging_level == "WARNING"
    assert config.insecure_registries == ("reg:5000",) and config.config_file == path
    config = load_config(["--config-file", path, "--data-root", "/d", "-H", "unix:///x.sock", "-H",
                          "unix:///y.sock", "--log-level", "debug", "--pidfile", "/p.pid"])  # fmt: skip
    assert (config.data_root, config.exec_root, config.pidfile) == ("/d", "/run/k2", "/p.pid")
    assert config.hosts == ("unix:///x.sock", "unix:///y.sock") and config.log_level == "debug"


def test_tls(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="tcp:// host needs TLS"):
        load_config(["-H", "tcp://127.0.0.1:2376"])
    with pytest.raises(InvalidArgument, match="all of tlscacert, tlscert and tlskey"):
        load_config(["--tlscert", "/c"])
    config = load_config(
        ["-H", "tcp://127.0.0.1:2376", "--tlscacert", "/a", "--tlscert", "/c", "--tlskey", "/k"]
    )
    assert config.tls == TLSFiles(ca="/a", cert="/c", key="/k")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"data-root": 5}, "'data-root' must be a string"),
        ({"hosts": "unix:///a.sock"}, "'hosts' must be a list of strings"),
        ({"tls": "yes"}, "'tls' must be true or false"),
        ({"storage-driver": "x"}, "unknown key 'storage-driver'"),
        ({"data-root": "relative/dir"}, "data-root must be an absolute path"),
        ({"log-level": "loud"}, "log-level 'loud' is not one of"),
        ({"hosts": ["ftp://x"]}, "invalid host 'ftp://x'"),
        ([1], "expected a JSON object"),
    ],
)
def test_bad_file(tmp_path: Path, obj: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        load_config(["--config-file", write(tmp_path, obj)])
    if "' must be" in message or "unknown" in message:
        assert str(tmp_path / "daemon.json") in str(info.value)


def test_missing_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_config(["--config-file", str(tmp_path / "nope.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InvalidArgument, match="malformed JSON"):
        load_config(["--config-file", str(bad)])
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert load_config(["--config-file", str(empty)]).data_root == "/var/lib/ketch"


def test_default_file_is_read_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cfg, "DEFAULT_CONFIG_FILE", write(tmp_path, {"data-root": "/from/file"}))
    assert load_config([]).data_root == "/from/file"

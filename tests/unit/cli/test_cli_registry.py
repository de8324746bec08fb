"""login / logout write the docker CLI's config.json; pull and push send the saved credentials."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

from tests.unit.cli.clirun import run
from tests.unit.client.fakedaemon import Canned, FakeDaemon, trace_answer, trace_stdout

from ketch.client.config import get_credentials


def _config(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".docker" / "config.json"


def test_login_then_push_with_credentials_then_logout(daemon: FakeDaemon, tmp_path: Path) -> None:
    daemon.route("POST", "/auth", Canned.json({"IdentityToken": "", "Status": "Login Succeeded"}))
    result = run(daemon.socket_path, "login", "-u", "testuser", "--password-stdin", "127.0.0.1:5001",
                 stdin="testpass\n")  # fmt: skip
    assert (result.status, result.out) == (0, trace_stdout("09-login"))
    path = _config(tmp_path)
    assert result.err.startswith(f"WARNING! Your password will be stored unencrypted in {path}.\n")
    assert json.loads(daemon.calls()[0].body) == {
        "username": "testuser", "password": "testpass", "serveraddress": "127.0.0.1:5001"
    }  # fmt: skip
    assert json.loads(path.read_text()) == {"auths": {"127.0.0.1:5001": {"auth": "dGVzdHVzZXI6dGVzdHBhc3M="}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    daemon.route(
        "POST", "/images/127.0.0.1:5001/ketch/v20-bb/push", trace_answer("10-push-auth", "POST", "/push")
    )
    pushed = run(daemon.socket_path, "push", "127.0.0.1:5001/ketch/v20-bb:t1")
    assert (pushed.status, pushed.out) == (0, trace_stdout("10-push-auth"))
    expected_header = (  # what docker 20.10 sent in the 10-push-auth trace
        "eyJ1c2VybmFtZSI6InRlc3R1c2VyIiwicGFzc3dvcmQiOiJ0ZXN0cGFzcyIsInNlcnZlcmFkZHJlc3MiOiIxMjcuMC4wLjE6NTAwMSJ9"
    )
    assert daemon.calls()[1].headers["X-Registry-Auth"] == expected_header

    out = run(daemon.socket_path, "logout", "127.0.0.1:5001")
    assert (out.status, out.out) == (0, trace_stdout("52-logout"))
    assert json.loads(path.read_text()) == {"auths": {}}
    again = run(daemon.socket_path, "logout", "127.0.0.1:5001")
    assert again.out == "Not logged in to 127.0.0.1:5001\n"


def test_login_rejected_keeps_config_untouched(daemon: FakeDaemon, tmp_path: Path) -> None:
    daemon.route("POST", "/auth", Canned.error(401, "login attempt to http://x/v2/ failed with status: 401"))
    result = run(daemon.socket_path, "login", "-u", "u", "-p", "bad", "x")
    assert result.status == 1
    assert result.err.endswith(
        "Error response from daemon: login attempt to http://x/v2/ failed with status: 401\n"
    )
    assert not _config(tmp_path).exists()


def test_login_keeps_other_keys_and_defaults_to_docker_hub(daemon: FakeDaemon, tmp_path: Path) -> None:
    path = _config(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"psFormat": "{{.ID}}", "auths": {"other": {"auth": "eDp5"}}}))
    daemon.route("POST", "/auth", Canned.json({"Status": "Login Succeeded"}))
    result = run(daemon.socket_path, "login", "-u", "me", stdin="secret\n")
    assert result.status == 0
    saved = json.loads(path.read_text())
    assert saved["psFormat"] == "{{.ID}}" and saved["auths"]["other"] == {"auth": "eDp5"}
    assert get_credentials(str(path.parent), "https://index.docker.io/v1/") == {
        "username": "me", "password": "secret", "serveraddress": "https://index.docker.io/v1/"
    }  # fmt: skip
    daemon.route("POST", "/images/create", Canned.stream(['{"status":"ok"}']))
    run(daemon.socket_path, "pull", "-q", "busybox")
    header = daemon.calls()[-1].headers["X-Registry-Auth"]
    assert json.loads(base64.urlsafe_b64decode(header))["username"] == "me"

"""Credentials from Docker's config.json, credential helpers, and ketch login/logout writing the file."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from tests.unit.image.remote.fakeregistry import FakeRegistry, image_blobs

from ketch.common.errors import InvalidArgument
from ketch.image.content import ContentStore
from ketch.image.remote import AuthConfig, Credentials, RegistryClient, remove_login, save_login
from ketch.image.remote.credentials import normalize_registry, server_address
from ketch.spec.reference import parse


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """docker-credential-test on PATH: a JSON file of ServerURL -> [Username, Secret]; logs every call."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    store = tmp_path / "helper-store.json"
    store.write_text(
        json.dumps({"registry.test": ["helper-user", "helper-pass"], "token.test": ["<token>", "idt"]})
    )
    script = bindir / "docker-credential-test"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, sys
            store_path, log_path = {str(store)!r}, {str(tmp_path / "helper.log")!r}
            action, data = sys.argv[1], sys.stdin.read()
            with open(log_path, "a") as log:
                log.write(action + " " + data + "\\n")
            store = json.load(open(store_path))
            if action == "get":
                if data not in store:
                    print("credentials not found in native keychain")
                    sys.exit(1)
                user, secret = store[data]
                print(json.dumps({{"ServerURL": data, "Username": user, "Secret": secret}}))
            elif action == "store":
                entry = json.loads(data)
                store[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
                json.dump(store, open(store_path, "w"))
            elif action == "erase":
                store.pop(data, None)
                json.dump(store, open(store_path, "w"))
            """
        )
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return store


def write_config(path: Path, obj: dict[str, object]) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def test_normalized_names() -> None:
    assert normalize_registry("https://index.docker.io/v1/") == "docker.io"
    assert normalize_registry("registry-1.docker.io") == "docker.io"
    assert normalize_registry("http://registry.test:5000/v2") == "registry.test:5000"
    assert server_address("docker.io") == "https://index.docker.io/v1/"
    assert server_address("registry.test:5000") == "registry.test:5000"


def test_auths_with_base64_auth_and_identity_token(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.json",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
                "registry.test:5000": {"auth": b64("bob:pa:ss")},
                "https://legacy.test/v1/": {"identitytoken": "refresh-me"},
                "empty.test": {},
            },
            "HttpHeaders": {"X-Kept": "yes"},
        },
    )
    config = AuthConfig.from_docker_config(path)
    assert config.get("docker.io") == Credentials("hubuser", "hubpass")
    assert config.get("index.docker.io") == Credentials("hubuser", "hubpass")
    assert config.get("registry.test:5000") == Credentials("bob", "pa:ss")
    assert config.get("legacy.test") == Credentials(identity_token="refresh-me")
    assert config.get("empty.test") is None
    assert config.get("elsewhere.test") is None


def test_missing_or_bad_config(tmp_path: Path) -> None:
    assert AuthConfig.from_docker_config(str(tmp_path / "none.json")).get("docker.io") is None
    bad = write_config(tmp_path / "bad.json", {"auths": {"x.test": {"auth": "bm9jb2xvbg=="}}})  # "nocolon"
    with pytest.raises(
        InvalidArgument, match=r"auths\['x.test'\].auth: expected base64 of username:password"
    ):
        AuthConfig.from_docker_config(bad)


def test_default_path_follows_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_config(tmp_path / "config.json", {"auths": {"registry.test": {"auth": b64("a:b")}}})
    assert AuthConfig.from_docker_config().get("registry.test") == Credentials("a", "b")


def test_cred_helpers_and_creds_store(tmp_path: Path, helper: Path) -> None:
    path = write_config(
        tmp_path / "config.json",
        {
            "auths": {"file.test": {"auth": b64("file-user:file-pass")}},
            "credHelpers": {"registry.test": "test", "token.test": "test"},
        },
    )
    config = AuthConfig.from_docker_config(path)
    assert config.get("registry.test") == Credentials("helper-user", "helper-pass")
    assert config.get("token.test") == Credentials(identity_token="idt")
    assert config.get("file.test") == Credentials("file-user", "file-pass")  # no helper for it
    config.get("registry.test")  # asked once per registry
    calls = (tmp_path / "helper.log").read_text().splitlines()
    assert calls == ["get registry.test", "get token.test"]
    store_path = write_config(tmp_path / "store.json", {"credsStore": "test"})
    everywhere = AuthConfig.from_docker_config(store_path)
    assert everywhere.get("registry.test") == Credentials("helper-user", "helper-pass")
    assert everywhere.get("unknown.test") is None  # "credentials not found" is no error


def test_helper_credentials_reach_the_registry(tmp_path: Path, helper: Path) -> None:
    fake = FakeRegistry(auth="basic", users={"helper-user": "helper-pass"})
    fake.add_image("app", "1", image_blobs([b"x"]))
    config = AuthConfig.from_docker_config(
        write_config(tmp_path / "c.json", {"credHelpers": {"registry.test": "test"}})
    )
    RegistryClient(transport=fake.transport(), auth=config).pull(
        parse("registry.test/app:1"), ContentStore(str(tmp_path))
    )
    assert fake.log[-1].headers["authorization"] == "Basic " + b64("helper-user:helper-pass")


def test_missing_helper_is_a_clear_error(tmp_path: Path) -> None:
    config = AuthConfig.from_docker_config(
        write_config(tmp_path / "c.json", {"credsStore": "nonexistent-xyz"})
    )
    with pytest.raises(
        InvalidArgument, match="docker-credential-nonexistent-xyz is configured but not found"
    ):
        config.get("registry.test")


def test_save_and_remove_login_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dot-docker" / "config.json"
    save_login("registry.test:5000", "alice", "s3cret", config_path=str(path))
    save_login("docker.io", "hubuser", "hubpass", config_path=str(path))
    obj = json.loads(path.read_text())
    assert obj["auths"] == {
        "registry.test:5000": {"auth": b64("alice:s3cret")},
        "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert AuthConfig.from_docker_config(str(path)).get("registry.test:5000") == Credentials(
        "alice", "s3cret"
    )
    obj["HttpHeaders"] = {"X-Kept": "yes"}
    path.write_text(json.dumps(obj))
    remove_login("registry.test:5000", config_path=str(path))
    remove_login("never.test", config_path=str(path))  # not logged in: nothing to do
    obj = json.loads(path.read_text())
    assert list(obj["auths"]) == ["https://index.docker.io/v1/"]
    assert obj["HttpHeaders"] == {"X-Kept": "yes"}


def test_save_and_remove_login_through_the_helper(tmp_path: Path, helper: Path) -> None:
    path = write_config(tmp_path / "config.json", {"credsStore": "test"})
    save_login("new.test", "carol", "pw", config_path=path)
    assert json.loads(Path(path).read_text())["auths"] == {"new.test": {}}
    assert json.loads(helper.read_text())["new.test"] == ["carol", "pw"]
    assert AuthConfig.from_docker_config(path).get("new.test") == Credentials("carol", "pw")
    remove_login("new.test", config_path=path)
    assert "new.test" not in json.loads(helper.read_text())
    assert json.loads(Path(path).read_text())["auths"] == {}

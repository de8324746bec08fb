"""Registry credentials: Docker's ``config.json`` (auths, credsStore, credHelpers) and explicit ones.

Vocabulary, as in docker/cli's configfile: the *server address* is the key a login is stored under:
``https://index.docker.io/v1/`` for Docker Hub, ``host[:port]`` for any other registry. Keys written by old
clients (``https://host/v1/``, ``http://host``) are matched by their host name. A *credential helper* is a
program ``docker-credential-<name>`` that speaks ``get``/``store``/``erase`` on stdin and stdout.

Lookup order for a registry: credentials given explicitly, then the helper configured for it (``credHelpers``,
else ``credsStore``), then ``auths``. A helper that answers "credentials not found" means "no credentials".
The file is read once, by :meth:`AuthConfig.from_docker_config`; helpers run when a registry is first asked.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ketch.common.atomic import atomic_write
from ketch.common.errors import InvalidArgument, SystemFailure

__all__ = [
    "HUB_SERVER",
    "AuthConfig",
    "Credentials",
    "default_config_path",
    "normalize_registry",
    "remove_login",
    "save_login",
    "server_address",
]

HUB_SERVER = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_TOKEN_USER = "<token>"  # a helper's Username for an identity token


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token, from a login that returned one


def normalize_registry(name: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``http://host:5000/v2`` -> ``host:5000``."""
    host = name.strip()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    host = host.split("/", 1)[0]
    return "docker.io" if host in _HUB_NAMES else host


def server_address(registry: str) -> str:
    """The key Docker stores a registry's login under."""
    host = normalize_registry(registry)
    return HUB_SERVER if host == "docker.io" else host


def default_config_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SystemFailure.from_oserror(f"read {path}", exc) from exc
    if not data.strip():
        return {}
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{path}: expected a JSON object")
    return obj


def _decode_auth(value: str, where: str) -> tuple[str, str]:
    try:
        text = base64.b64decode(value, validate=False).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(f"{where}.auth: not valid base64") from None
    username, sep, password = text.partition(":")
    if not sep:
        raise InvalidArgument(f"{where}.auth: expected base64 of username:password")
    return username, password.strip("\x00")


def _auth_entry(entry: object, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{where}: expected an object")
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        username, password = _decode_auth(entry["auth"], where)
    token = str(entry.get("identitytoken") or "")
    if not (username or password or token):
        return None
    return Credentials(username, password, token)


def _helper_binary(name: str) -> str:
    program = f"docker-credential-{name}"
    found = shutil.which(program)
    if found is None:
        raise InvalidArgument(f"credential helper {program} is configured but not found in PATH")
    return found


def _run_helper(name: str, action: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    binary = _helper_binary(name)
    try:
        return subprocess.run([binary, action], input=stdin, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemFailure(f"credential helper {binary} {action}: {exc}") from exc


def _helper_failed(proc: subprocess.CompletedProcess[bytes]) -> str:
    return (proc.stdout or proc.stderr).decode(errors="replace").strip()


def helper_get(name: str, server: str) -> Credentials | None:
    proc = _run_helper(name, "get", server.encode())
    if proc.returncode != 0:
        message = _helper_failed(proc)
        if "credentials not found" in message.lower():
            return None
        raise InvalidArgument(f"credential helper docker-credential-{name} get {server}: {message}")
    try:
        obj = json.loads(proc.stdout)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"credential helper docker-credential-{name} returned malformed JSON") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"credential helper docker-credential-{name} returned no JSON object")
    username, secret = str(obj.get("Username") or ""), str(obj.get("Secret") or "")
    if username == _TOKEN_USER:
        return Credentials(identity_token=secret)
    return Credentials(username, secret) if username or secret else None


def _helper_store(name: str, server: str, username: str, password: str) -> None:
    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": password}).encode()
    proc = _run_helper(name, "store", payload)
    if proc.returncode != 0:
        raise InvalidArgument(f"credential helper docker-credential-{name} store: {_helper_failed(proc)}")


def _helper_erase(name: str, server: str) -> None:
    proc = _run_helper(name, "erase", server.encode())
    if proc.returncode != 0 and "credentials not found" not in _helper_failed(proc).lower():
        raise InvalidArgument(f"credential helper docker-credential-{name} erase: {_helper_failed(proc)}")


class AuthConfig:
    """Credentials per registry (keys are normalised registry names: ``docker.io``, ``host:port``)."""

    def __init__(
        self,
        credentials: Mapping[str, Credentials] | None = None,
        *,
        creds_store: str = "",
        cred_helpers: Mapping[str, str] | None = None,
    ) -> None:
        self._explicit = {normalize_registry(k): v for k, v in (credentials or {}).items()}
        self._file: dict[str, Credentials] = {}
        self.creds_store = creds_store
        self.cred_helpers = {normalize_registry(k): v for k, v in (cred_helpers or {}).items()}
        self._from_helpers: dict[str, Credentials | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_docker_config(cls, path: str | None = None) -> AuthConfig:
        """Read ``path`` (default ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``); missing is empty."""
        path = path or default_config_path()
        obj = _load(path)
        config = _helpers_of(obj, path)
        auths = obj.get("auths") or {}
        if not isinstance(auths, dict):
            raise InvalidArgument(f"{path}: auths: expected an object")
        for key, entry in auths.items():
            creds = _auth_entry(entry, f"{path}: auths[{key!r}]")
            if creds is not None:
                config._file[normalize_registry(key)] = creds
        return config

    def helper_for(self, registry: str) -> str:
        return self.cred_helpers.get(normalize_registry(registry)) or self.creds_store

    def set(self, registry: str, credentials: Credentials) -> None:
        with self._lock:
            self._explicit[normalize_registry(registry)] = credentials

    def get(self, registry: str) -> Credentials | None:
        """The credentials for ``registry``, or None for anonymous access."""
        host = normalize_registry(registry)
        with self._lock:
            if host in self._explicit:
                return self._explicit[host]
            helper = self.helper_for(host)
            if helper:
                if host not in self._from_helpers:
                    self._from_helpers[host] = helper_get(helper, server_address(host))
                if self._from_helpers[host] is not None:
                    return self._from_helpers[host]
            return self._file.get(host)


def _helpers_of(obj: dict[str, Any], path: str) -> AuthConfig:
    """An AuthConfig with the file's credsStore and credHelpers (and no credentials yet)."""
    helpers = obj.get("credHelpers") or {}
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise InvalidArgument(f"{path}: credHelpers: expected an object of strings")
    store = obj.get("credsStore") or ""
    if not isinstance(store, str):
        raise InvalidArgument(f"{path}: credsStore: expected a string")
    return AuthConfig(creds_store=store, cred_helpers=helpers)


def _write(path: str, obj: dict[str, Any]) -> None:
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        atomic_write(path, json.dumps(obj, indent="\t").encode() + b"\n", mode=0o600)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"write {path}", exc) from exc


def _auths(obj: dict[str, Any], path: str) -> dict[str, Any]:
    auths = obj.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise InvalidArgument(f"{path}: auths: expected an object")
    return auths


def save_login(registry: str, username: str, password: str, *, config_path: str | None = None) -> None:
    """Store a login as ``docker login`` does: in the configured helper, else base64 in ``auths``."""
    path = config_path or default_config_path()
    obj = _load(path)
    server = server_address(registry)
    config = _helpers_of(obj, path)
    auths = _auths(obj, path)
    for key in [k for k in auths if normalize_registry(k) == normalize_registry(server) and k != server]:
        del auths[key]
    helper = config.helper_for(server)
    if helper:
        _helper_store(helper, server, username, password)
        auths[server] = {}  # docker leaves an empty entry so `docker info` lists the registry
    else:
        auths[server] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    _write(path, obj)


def remove_login(registry: str, *, config_path: str | None = None) -> None:
    """Forget a login as ``docker logout`` does (helper erase, then the ``auths`` entry); absent is fine."""
    path = config_path or default_config_path()
    obj = _load(path)
    server = server_address(registry)
    config = _helpers_of(obj, path)
    helper = config.helper_for(server)
    if helper:
        _helper_erase(helper, server)
    auths = obj.get("auths")
    if isinstance(auths, dict):
        stale = [key for key in auths if normalize_registry(key) == normalize_registry(server)]
        for key in stale:
            del auths[key]
        if stale:
            _write(path, obj)

"""Registry credentials in the docker CLI's ``config.json`` (``~/.docker`` or ``--config``), and its helpers.

The file is shared with the docker CLI, so it is read and written in docker's shape: ``auths`` maps a
server key to ``{"auth": base64("user:password")}`` (or ``identitytoken``), other keys are kept as they are,
and the file is rewritten atomically with mode 0600, tab-indented as docker writes it. A configured
credential helper (``credsStore``, ``credHelpers``) is run as ``docker-credential-<name>`` instead.
"""

from __future__ import annotations

import base64
import os

from ketch.common import errors, fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_SERVER",
    "erase_credentials",
    "get_credentials",
    "load_config",
    "server_key",
    "store_credentials",
]

DEFAULT_SERVER = "https://index.docker.io/v1/"  # the key docker uses for Docker Hub


def server_key(domain: str) -> str:
    """The ``auths`` key for a registry domain (Docker Hub's is its v1 URL, as docker keeps it)."""
    return DEFAULT_SERVER if domain in ("docker.io", "index.docker.io", "registry-1.docker.io") else domain


def hostname(server: str) -> str:
    """registry.ConvertToHostname: ``https://host:5000/v2/`` -> ``host:5000``."""
    stripped = server.removeprefix("http://").removeprefix("https://")
    return stripped.split("/", 1)[0]


def config_file(config_dir: str) -> str:
    return os.path.join(config_dir, "config.json")


def load_config(config_dir: str) -> dict[str, Any]:
    """The parsed file; {} when it does not exist. A file that is not a JSON object is an error."""
    path = config_file(config_dir)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise errors.SystemFailure.from_oserror(f"read {path}", exc) from None
    try:
        value = fastjson.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise errors.InvalidArgument(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise errors.InvalidArgument(f"{path}: expected a JSON object")
    return value


def _save_config(config_dir: str, config: dict[str, Any]) -> str:
    import json

    from ketch.common.atomic import atomic_write

    path = config_file(config_dir)
    try:
        os.makedirs(config_dir, mode=0o700, exist_ok=True)
        atomic_write(path, json.dumps(config, indent="\t").encode(), mode=0o600)
    except OSError as exc:
        raise errors.SystemFailure.from_oserror(f"write {path}", exc) from None
    return path


def _helper(config: dict[str, Any], server: str) -> str:
    helpers = config.get("credHelpers") or {}
    return str(helpers.get(hostname(server)) or helpers.get(server) or config.get("credsStore") or "")


def _run_helper(name: str, action: str, data: str) -> str:
    import subprocess

    program = f"docker-credential-{name}"
    try:
        done = subprocess.run([program, action], input=data.encode(), capture_output=True, check=False)
    except OSError as exc:
        raise errors.SystemFailure.from_oserror(f"run {program}", exc) from None
    output = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0:
        raise errors.KetchError(
            f"{program} {action}: {output or done.stderr.decode(errors='replace').strip()}"
        )
    return output


def get_credentials(config_dir: str, server: str) -> dict[str, str] | None:
    """The auth config the daemon expects (``username``, ``password``, ``serveraddress``), or None."""
    config = load_config(config_dir)
    helper = _helper(config, server)
    if helper:
        try:
            found = fastjson.loads(_run_helper(helper, "get", server))
        except (errors.KetchError, ValueError):
            return None
        if found.get("Username") == "<token>":
            return {"identitytoken": found.get("Secret", ""), "serveraddress": server}
        return {
            "username": found.get("Username", ""),
            "password": found.get("Secret", ""),
            "serveraddress": server,
        }
    auths = config.get("auths") or {}
    host = hostname(server)
    for key in (server, host, f"https://{host}", f"http://{host}"):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        # docker's AuthConfig field order, so X-Registry-Auth comes out byte for byte as docker's.
        result: dict[str, str] = {}
        if entry.get("auth"):
            decoded = base64.b64decode(entry["auth"]).decode()
            username, _, password = decoded.partition(":")
            result |= {"username": username, "password": password}
        result["serveraddress"] = server
        if entry.get("identitytoken"):
            result["identitytoken"] = entry["identitytoken"]
        return result
    return None


def store_credentials(
    config_dir: str, server: str, username: str, password: str, identity_token: str = ""
) -> str | None:
    """Save a login; returns the file written with the password in it (None when a helper kept it)."""
    config = load_config(config_dir)
    helper = _helper(config, server)
    if helper:
        secret_user = "<token>" if identity_token else username
        payload = {"ServerURL": server, "Username": secret_user, "Secret": identity_token or password}
        _run_helper(helper, "store", fastjson.dumps(payload))
        config.setdefault("auths", {})[server] = {}
        _save_config(config_dir, config)
        return None
    entry: dict[str, str] = {
        "auth": base64.b64encode(f"{username}:{'' if identity_token else password}".encode()).decode()
    }
    if identity_token:
        entry["identitytoken"] = identity_token
    config.setdefault("auths", {})[server] = entry
    return _save_config(config_dir, config)


def logged_in(config_dir: str, keys: list[str]) -> bool:
    auths = load_config(config_dir).get("auths") or {}
    return any(key in auths for key in keys)


def erase_credentials(config_dir: str, keys: list[str]) -> bool:
    """Forget the logins stored under any of ``keys``; True when one was removed."""
    config = load_config(config_dir)
    auths = config.get("auths") or {}
    removed = False
    for key in keys:
        if key in auths:
            helper = _helper(config, key)
            if helper:
                try:
                    _run_helper(helper, "erase", key)
                except errors.KetchError:
                    continue
            del auths[key]
            removed = True
    if removed:
        _save_config(config_dir, config)
    return removed

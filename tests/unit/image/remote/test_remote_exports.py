"""The public names of the registry client, pinned so that a change to them is deliberate."""

from __future__ import annotations

import importlib
import inspect

import pytest

EXPORTS = {
    "ketch.image.remote": [
        "AuthConfig", "Credentials", "JSONProgress", "NullProgress", "Progress", "PullResult", "RegistryClient",
        "RichProgress", "finish_pull", "remove_login", "save_login",
    ],
    "ketch.image.remote.client": ["RegistryClient"],
    "ketch.image.remote.auth": [
        "Authenticator", "Challenge", "Token", "basic_header", "parse_challenges", "parse_token_response",
        "repository_scope",
    ],
    "ketch.image.remote.credentials": [
        "HUB_SERVER", "AuthConfig", "Credentials", "default_config_path", "normalize_registry", "remove_login",
        "save_login", "server_address",
    ],
    "ketch.image.remote.errors": [
        "RETRYABLE_STATUSES", "Operation", "RegistryError", "RequestContext", "parse_error_body", "tls_failure",
        "translate_response", "translate_transport",
    ],
    "ketch.image.remote.transport": ["RetryPolicy", "Session"],
    "ketch.image.remote.connections": ["DEFAULT_CA_DIRS", "ClientPool", "allows_plain_http", "registry_host"],
    "ketch.image.remote.resolve": ["FetchedManifest", "fetch_manifest", "head_manifest", "manifest_path", "resolve"],
    "ketch.image.remote.pull": ["PullResult", "download_blob", "pull"],
    "ketch.image.remote.push": ["DEFAULT_CHUNK_SIZE", "push", "upload_blob"],
    "ketch.image.remote.progress": [
        "ALREADY_EXISTS", "DOWNLOADING", "DOWNLOAD_COMPLETE", "EXTRACTING", "LAYER_ALREADY_EXISTS", "PREPARING",
        "PULLING_FS_LAYER", "PULL_COMPLETE", "PUSHED", "PUSHING", "VERIFYING_CHECKSUM", "WAITING", "JSONProgress",
        "Meter", "NullProgress", "Progress", "RichProgress", "finish_pull", "human_size", "json_message",
        "progress_bar", "short_id",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exports(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPORTS[module])
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_registry_client_signature() -> None:
    """The parameters other packages call with."""
    from ketch.image.remote import RegistryClient

    init = inspect.signature(RegistryClient.__init__).parameters
    for name in ("auth", "insecure_registries", "ca_dirs", "max_concurrency", "transport"):
        assert init[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(RegistryClient.pull).parameters)[:3] == ["self", "ref", "content"]
    push = inspect.signature(RegistryClient.push).parameters
    assert list(push)[:4] == ["self", "ref", "content", "manifest_digest"]
    assert {"index_digest", "progress", "mount_from"} <= set(push)

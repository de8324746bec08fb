"""Registry client (Distribution API v2 / OCI distribution spec).

Modules, each with one job: ``connections`` (hosts, plain-HTTP policy, TLS and connection pools),
``transport`` (one registry's session: endpoint choice, retries, auth on every request),
``auth`` (challenges, scopes, token cache), ``credentials`` (docker config.json and credential helpers),
``errors`` (the one translation of HTTP statuses and transport exceptions into ketch errors),
``resolve`` (manifests: HEAD before GET, digest checks), ``pull``, ``push``, ``progress`` (the callback
interface, Docker's JSON stream, rich bars) and ``client`` (:class:`RegistryClient`, which ties them together).
"""

from __future__ import annotations

from ketch.image.remote.client import RegistryClient
from ketch.image.remote.credentials import AuthConfig, Credentials, remove_login, save_login
from ketch.image.remote.progress import JSONProgress, NullProgress, Progress, RichProgress, finish_pull
from ketch.image.remote.pull import PullResult

__all__ = [
    "AuthConfig",
    "Credentials",
    "JSONProgress",
    "NullProgress",
    "Progress",
    "PullResult",
    "RegistryClient",
    "RichProgress",
    "finish_pull",
    "remove_login",
    "save_login",
]

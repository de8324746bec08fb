"""RegistryClient: the registry operations ketch's engine and CLI call (resolve, pull, push, login).

It owns one :class:`~ketch.image.remote.transport.Session` per registry (endpoint, challenge, token cache) and
one HTTP connection pool per host, shared by the threads of parallel downloads. Close it (or use it as a
context manager) to drop the connections.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

import httpx

from ketch.common.errors import Unauthorized
from ketch.image.content import ContentStore, Lease
from ketch.image.remote import pull as _pull
from ketch.image.remote import push as _push
from ketch.image.remote import resolve as _resolve
from ketch.image.remote.auth import basic_header, repository_scope
from ketch.image.remote.connections import DEFAULT_CA_DIRS, ClientPool, allows_plain_http
from ketch.image.remote.credentials import AuthConfig, Credentials, normalize_registry
from ketch.image.remote.progress import Progress
from ketch.image.remote.pull import PullResult
from ketch.image.remote.transport import RetryPolicy, Session
from ketch.spec.oci_image import Descriptor
from ketch.spec.platform import Platform
from ketch.spec.reference import Reference

__all__ = ["RegistryClient"]


class RegistryClient:
    """Distribution API v2 / OCI distribution client.

    ``auth`` holds the credentials (anonymous when None; pass :meth:`AuthConfig.from_docker_config` to use
    ``~/.docker/config.json``). ``transport`` replaces the network (``httpx.MockTransport`` in unit tests).
    ``retries``/``backoff`` shape the retries of connection errors and 5xx answers, ``chunk_size`` is the
    largest blob pushed in one request and the size of each chunk of bigger ones.
    """

    def __init__(
        self,
        *,
        auth: AuthConfig | None = None,
        insecure_registries: Iterable[str] = (),
        ca_dirs: Iterable[str] = DEFAULT_CA_DIRS,
        max_concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        chunk_size: int = _push.DEFAULT_CHUNK_SIZE,
        timeout: float = 60.0,
    ) -> None:
        self.auth = auth if auth is not None else AuthConfig()
        self.insecure_registries = tuple(insecure_registries)
        self.max_concurrency = max(1, max_concurrency)
        self.chunk_size = chunk_size
        self._retry = RetryPolicy(retries=retries, backoff=backoff)
        self._clients = ClientPool(ca_dirs=ca_dirs, transport=transport, timeout=timeout)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._clients.close()

    def _new_session(self, registry: str, auth: AuthConfig) -> Session:
        return Session(
            registry,
            clients=self._clients,
            auth_config=auth,
            plain_http=allows_plain_http(registry, self.insecure_registries),
            retry=self._retry,
        )

    def session(self, registry: str) -> Session:
        """The session for a registry name as a reference's domain spells it."""
        with self._lock:
            found = self._sessions.get(registry)
            if found is None:
                found = self._sessions[registry] = self._new_session(registry, self.auth)
            return found

    def resolve(self, ref: Reference) -> Descriptor:
        """What ``ref`` names in its registry now: HEAD the manifest (GET when HEAD gives no digest)."""
        return _resolve.resolve(self.session(ref.domain), ref, (repository_scope(ref.path, ["pull"]),))

    def pull(
        self,
        ref: Reference,
        content: ContentStore,
        *,
        platform: Platform | None = None,
        progress: Progress | None = None,
        lease: Lease | None = None,
    ) -> PullResult:
        """Fetch ``ref`` (the manifest for ``platform``, default this host's) into ``content``, verified."""
        return _pull.pull(
            self.session(ref.domain),
            ref,
            content,
            platform=platform,
            progress=progress,
            max_concurrency=self.max_concurrency,
            lease=lease,
        )

    def push(
        self,
        ref: Reference,
        content: ContentStore,
        manifest_digest: str,
        *,
        index_digest: str | None = None,
        progress: Progress | None = None,
        mount_from: Reference | None = None,
    ) -> str:
        """Upload the image's blobs and manifests to ``ref``; returns the digest pushed (the index's, if any)."""
        return _push.push(
            self.session(ref.domain),
            ref,
            content,
            manifest_digest,
            index_digest=index_digest,
            progress=progress,
            mount_from=mount_from,
            max_concurrency=self.max_concurrency,
            chunk_size=self.chunk_size,
        )

    def login(self, registry: str, username: str, password: str) -> None:
        """Check credentials against ``/v2/`` (and the token server it names); keep them for this client."""
        name = normalize_registry(registry)
        creds = Credentials(username, password)
        trial = self._new_session(name, AuthConfig({name: creds}))
        response = trial.ping(authorization=basic_header(username, password))
        if response.status_code == 401:
            challenge = trial.auth.challenge
            if challenge is None or challenge.scheme != "bearer":
                raise Unauthorized(
                    f"login attempt to {trial.base_url()}/v2/ failed with status: 401 Unauthorized"
                )
            trial.auth.header(())  # a token for no scope: the token server checks the password
        self.auth.set(name, creds)
        with self._lock:
            self._sessions.pop(name, None)

"""Connections to registries: where requests go, whether plain HTTP is allowed, and TLS per host.

Vocabulary: the *registry* is a reference's domain (``docker.io``, ``127.0.0.1:5000``); its *host* is where
requests go (``registry-1.docker.io`` for Docker Hub).

Plain HTTP is allowed, as dockerd allows it, only for registries in ``insecure_registries`` (a host, host:port
or CIDR) and for loopback ones (``localhost``, 127.0.0.0/8, ``::1``). Those are tried over HTTPS first, with
certificate checks off, and fall back to HTTP when TLS cannot even start (the session decides that). Every
other registry gets HTTPS checked against the system CAs plus ``<ca_dir>/<host[:port]>/*.crt``, presenting
the ``*.cert``/``*.key`` pair found there as the client certificate (dockerd's certs.d layout).
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import os
import ssl
import threading
from collections.abc import Iterable
from typing import Any

import httpx

from ketch.common.errors import Unavailable

__all__ = ["DEFAULT_CA_DIRS", "ClientPool", "allows_plain_http", "registry_host"]

DEFAULT_CA_DIRS = ("/etc/ketch/certs.d", "/etc/docker/certs.d")
_USER_AGENT = "ketch/0.1"


def registry_host(registry: str) -> str:
    return "registry-1.docker.io" if registry == "docker.io" else registry


def _split_host(registry: str) -> str:
    """The host part of ``host[:port]`` / ``[v6]:port``, without brackets."""
    if registry.startswith("["):
        return registry[1:].partition("]")[0]
    return registry.rpartition(":")[0] if registry.count(":") == 1 else registry


def allows_plain_http(registry: str, insecure_registries: Iterable[str]) -> bool:
    """Whether dockerd would let ``registry`` fall back to plain HTTP."""
    host = _split_host(registry)
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_loopback:
        return True
    for entry in insecure_registries:
        entry = entry.strip()
        if entry in (registry, host):
            return True
        if address is not None and "/" in entry:
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
    return False


def _ssl_context(host: str, ca_dirs: Iterable[str], *, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()  # the system's CA bundle
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    for base in ca_dirs:
        directory = os.path.join(base, host)
        if not os.path.isdir(directory):
            continue
        for ca in sorted(glob.glob(os.path.join(glob.escape(directory), "*.crt"))):
            try:
                context.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                raise Unavailable(f"registry {host}: cannot load CA certificate {ca}: {exc}") from exc
        for cert in sorted(glob.glob(os.path.join(glob.escape(directory), "*.cert"))):
            key = cert[: -len(".cert")] + ".key"
            if not os.path.exists(key):
                raise Unavailable(f"registry {host}: client certificate {cert} has no key {key}")
            try:
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise Unavailable(f"registry {host}: cannot load client certificate {cert}: {exc}") from exc
    return context


class ClientPool:
    """One httpx.Client per (host, scheme, verify): connection pools shared by the threads of a pull."""

    def __init__(
        self,
        *,
        ca_dirs: Iterable[str] = DEFAULT_CA_DIRS,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        max_connections: int = 16,
    ) -> None:
        self._ca_dirs = tuple(ca_dirs)
        self._transport = transport
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._clients: dict[tuple[str, bool], httpx.Client] = {}
        self._lock = threading.Lock()

    def client(self, host: str, *, verify: bool = True) -> httpx.Client:
        with self._lock:
            client = self._clients.get((host, verify))
            if client is None:
                kwargs: dict[str, Any] = {}
                if self._transport is not None:
                    kwargs["transport"] = self._transport
                else:
                    kwargs["verify"] = _ssl_context(host, self._ca_dirs, verify=verify)
                client = httpx.Client(
                    timeout=self._timeout, limits=self._limits, headers={"User-Agent": _USER_AGENT}, **kwargs
                )
                self._clients[(host, verify)] = client
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

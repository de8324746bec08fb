"""The Engine API server: listeners, the connections they accept, and a small entry point.

Hosts are written as docker's ``-H`` takes them:

- ``unix:///run/ketch/ketch.sock``: the normal case. A stale socket file left by a dead server is replaced;
  one that still answers is refused (another daemon owns it). The socket is made mode 0660.
- ``tcp://host:port``: only with TLS and client certificates (``CERT_REQUIRED`` against the given CA), since
  whoever can reach the API can run anything as root. Plain TCP is refused with an error that says so.

The server owns its connection tasks: :meth:`ApiServer.close` stops the listeners, cancels every connection
(streams and hijacked sessions included) and waits for them, then removes the unix sockets it created.

``python -m ketch.api.server --host unix:///path.sock`` serves the system routes with this host's data; it
stands in for ketchd until the engine exists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ketch import __version__
from ketch.api.connection import serve_connection
from ketch.api.router import Router
from ketch.common.errors import Conflict, InvalidArgument, KetchError, SystemFailure

__all__ = ["DEFAULT_HOST", "ApiServer", "Host", "TLSFiles", "main", "parse_host", "tls_context"]

log = logging.getLogger("ketch.api")

DEFAULT_HOST = "unix:///run/ketch/ketch.sock"
DEFAULT_TLS_PORT = 2376  # docker's port for TLS
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the terminating NUL


@dataclass(frozen=True, slots=True)
class Host:
    scheme: str  # "unix" or "tcp"
    address: str  # a socket path, or a host name or IP address
    port: int = 0

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.address}"
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"tcp://{address}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSFiles:
    ca: str
    cert: str
    key: str


def parse_host(text: str) -> Host:
    scheme, sep, rest = text.partition("://")
    if sep and scheme == "unix":
        if not rest:
            raise InvalidArgument(f"invalid host {text!r}: a unix socket needs a path (unix:///path/to.sock)")
        return Host("unix", rest)
    if sep and scheme == "tcp":
        address, port = rest.rstrip("/"), DEFAULT_TLS_PORT
        if address.startswith("["):
            address, _, tail = address[1:].partition("]")
            if tail.startswith(":"):
                port = _port(text, tail[1:])
        elif ":" in address:
            address, _, digits = address.rpartition(":")
            port = _port(text, digits)
        return Host("tcp", address or "0.0.0.0", port)
    raise InvalidArgument(f"invalid host {text!r}: use unix:///path/to.sock or tcp://host:port")


def _port(text: str, digits: str) -> int:
    if not digits.isdigit() or int(digits) > 65535:
        # 0 is allowed: the system picks a free port (listen returns it)
        raise InvalidArgument(f"invalid host {text!r}: port {digits!r} is not a number from 0 to 65535")
    return int(digits)


def tls_context(files: TLSFiles) -> ssl.SSLContext:
    """A server context that accepts only clients whose certificate the CA in ``files.ca`` signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(files.cert, files.key)
        context.load_verify_locations(cafile=files.ca)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(
            f"cannot load TLS files (CA {files.ca}, cert {files.cert}, key {files.key}): {exc}"
        ) from exc
    return context


async def _claim_socket_path(path: str) -> None:
    """Make ``path`` free for a new socket: refuse a live one or a non-socket, remove a stale one."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise InvalidArgument(f"cannot listen on {path}: it exists and is not a socket")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 2)
    except (ConnectionRefusedError, FileNotFoundError, TimeoutError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    raise Conflict(f"cannot listen on {path}: another daemon is listening there")


class ApiServer:
    def __init__(self, router: Router, *, server_version: str = __version__) -> None:
        self.router = router
        self.server_version = server_version
        self._servers: list[asyncio.Server] = []
        self._sockets: list[tuple[str, int]] = []  # unix socket paths we created, with their inodes
        self._connections: set[asyncio.Task[None]] = set()

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection (accepted by a listener, or one end of a socketpair in tests)."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await serve_connection(self.router, reader, writer, server_version=self.server_version)
        except Exception:
            log.exception("connection failed")
        finally:
            if task is not None:
                self._connections.discard(task)

    async def listen(self, host: str | Host, *, tls: TLSFiles | None = None) -> Host:
        """Start accepting on ``host``; returns it with the actual port when port 0 was asked for."""
        target = parse_host(host) if isinstance(host, str) else host
        if target.scheme == "unix":
            return await self._listen_unix(target.address)
        if tls is None:
            raise InvalidArgument(
                f"refusing to serve the API on {target} without TLS: anyone who reaches it could run anything "
                "as root; give --tlscacert, --tlscert and --tlskey so that only clients with certificates connect"
            )
        context = tls_context(tls)
        try:
            server = await asyncio.start_server(
                self.serve_connection, target.address, target.port, ssl=context
            )
        except OSError as exc:
            raise SystemFailure.from_oserror(f"listen on {target}", exc) from exc
        self._servers.append(server)
        port = server.sockets[0].getsockname()[1] if server.sockets else target.port
        return Host("tcp", target.address, port)

    async def _listen_unix(self, path: str) -> Host:
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise InvalidArgument(
                f"cannot listen on {path}: unix socket paths are limited to {_SUN_PATH_MAX} bytes"
            )
        await _claim_socket_path(path)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            server = await asyncio.start_unix_server(self.serve_connection, path=path)
            os.chmod(path, 0o660)
            self._sockets.append((path, os.stat(path).st_ino))
        except OSError as exc:
            raise SystemFailure.from_oserror(f"listen on unix://{path}", exc) from exc
        self._servers.append(server)
        return Host("unix", path)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for path, inode in self._sockets:
            # Only our own socket: another server may have replaced it since.
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
        self._sockets.clear()


async def _serve(hosts: Sequence[str], tls: TLSFiles | None) -> None:
    from ketch.api.routes import build_router
    from ketch.api.version import HostSystem

    system = HostSystem()
    system.version()  # collect once before serving: it runs git
    server = ApiServer(build_router(system=system))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        for host in hosts:
            log.info("API listening on %s", await server.listen(host, tls=tls))
        await stop.wait()
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ketch.api.server", description="Serve the Docker Engine API's system routes."
    )
    parser.add_argument(
        "-H", "--host", action="append", default=[], help=f"where to listen (default {DEFAULT_HOST})"
    )
    parser.add_argument("--tlscacert", help="CA that signs the client certificates to accept")
    parser.add_argument("--tlscert", help="the server's certificate")
    parser.add_argument("--tlskey", help="the server's private key")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tls_args = (args.tlscacert, args.tlscert, args.tlskey)
    if any(tls_args) and not all(tls_args):
        parser.error("TLS needs all of --tlscacert, --tlscert and --tlskey")
    tls = TLSFiles(ca=args.tlscacert, cert=args.tlscert, key=args.tlskey) if all(tls_args) else None
    try:
        asyncio.run(_serve(args.host or [DEFAULT_HOST], tls))
    except KetchError as exc:
        print(f"ketch api: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

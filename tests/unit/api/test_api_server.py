"""Listeners: unix sockets (stale, live, not a socket), TCP refused without TLS, TCP with client certificates."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.api.fakes import FakeSystem
from tests.unit.api.wire import Wire, run

from ketch.api.router import Router
from ketch.api.routes.system import register
from ketch.api.server import ApiServer, Host, TLSFiles, main, parse_host
from ketch.common.errors import Conflict, InvalidArgument


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer
    path = Path(tempfile.mkdtemp(prefix="kapi-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def system_router() -> Router:
    router = Router()
    register(router, FakeSystem())
    return router


async def ping_unix(path: str) -> bytes:
    wire = Wire(*await asyncio.open_unix_connection(path))
    try:
        return (await wire.call("GET", "/_ping")).body
    finally:
        await wire.close()


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("unix:///run/ketch/ketch.sock", Host("unix", "/run/ketch/ketch.sock")),
        ("tcp://127.0.0.1:2376", Host("tcp", "127.0.0.1", 2376)),
        ("tcp://0.0.0.0", Host("tcp", "0.0.0.0", 2376)),
        ("tcp://:9999", Host("tcp", "0.0.0.0", 9999)),
        ("tcp://[::1]:2377", Host("tcp", "::1", 2377)),
    ],
)
def test_parse_host(text: str, host: Host) -> None:
    assert parse_host(text) == host


@pytest.mark.parametrize(
    "text", ["unix://", "/run/ketch.sock", "fd://", "tcp://host:port", "tcp://h:70000", "ssh://x"]
)
def test_parse_host_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid host"):
        parse_host(text)


def test_unix_listener_mode_conflict_and_cleanup(short_dir: Path) -> None:
    path = str(short_dir / "sub" / "k.sock")

    async def main_() -> None:
        server = ApiServer(system_router())
        try:
            assert await server.listen(f"unix://{path}") == Host("unix", path)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
            assert await ping_unix(path) == b"OK"
            with pytest.raises(Conflict, match="another daemon is listening"):
                await ApiServer(system_router()).listen(f"unix://{path}")
            assert await ping_unix(path) == b"OK"  # the refused server did not take the socket away
        finally:
            await server.close()
        assert not os.path.exists(path)

    run(main_())


def test_stale_socket_is_replaced_and_other_files_are_not(short_dir: Path) -> None:
    stale = str(short_dir / "stale.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(stale)  # bound, never listening, then closed: what a crashed daemon leaves
    regular = short_dir / "file.sock"
    regular.write_text("not a socket")

    async def main_() -> None:
        server = ApiServer(system_router())
        try:
            await server.listen(f"unix://{stale}")
            assert await ping_unix(stale) == b"OK"
            with pytest.raises(InvalidArgument, match="exists and is not a socket"):
                await server.listen(f"unix://{regular}")
            with pytest.raises(InvalidArgument, match="limited to 107 bytes"):
                await server.listen("unix://" + str(short_dir / ("x" * 120)))
        finally:
            await server.close()

    run(main_())
    assert regular.read_text() == "not a socket"


def test_plain_tcp_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    async def main_() -> None:
        with pytest.raises(InvalidArgument, match="without TLS"):
            await ApiServer(system_router()).listen("tcp://127.0.0.1:0")

    run(main_())
    assert main(["--host", "tcp://127.0.0.1:0"]) == 1
    assert "refusing to serve the API on tcp://127.0.0.1:0 without TLS" in capsys.readouterr().err


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, str]:
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command (Debian package openssl)")
    key_args = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    files = {name: str(tmp_path / name) for name in ("ca.pem", "ca.key", "ca.srl")}
    _openssl("req", "-x509", *key_args, "-keyout", files["ca.key"], "-out", files["ca.pem"], "-days", "1",
             "-subj", "/CN=ketch test CA")  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        key, csr, pem, extfile = (
            str(tmp_path / f"{name}.{suffix}") for suffix in ("key", "csr", "pem", "ext")
        )
        Path(extfile).write_text(ext + "\n")
        _openssl("req", *key_args, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        signing = [
            "-CA",
            files["ca.pem"],
            "-CAkey",
            files["ca.key"],
            "-CAserial",
            files["ca.srl"],
            "-CAcreateserial",
        ]
        _openssl("x509", "-req", "-in", csr, *signing, "-out", pem, "-days", "1", "-extfile", extfile)
        files[f"{name}.key"], files[f"{name}.pem"] = key, pem
    return files


def test_tcp_with_tls_requires_a_client_certificate(certs: dict[str, str]) -> None:
    tls = TLSFiles(ca=certs["ca.pem"], cert=certs["server.pem"], key=certs["server.key"])

    def client_context(with_cert: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=certs["ca.pem"])
        if with_cert:
            context.load_cert_chain(certs["client.pem"], certs["client.key"])
        return context

    async def main_() -> None:
        server = ApiServer(system_router())
        try:
            host = await server.listen("tcp://127.0.0.1:0", tls=tls)
            assert host.port > 0
            wire = Wire(*await asyncio.open_connection("127.0.0.1", host.port, ssl=client_context(True)))
            assert (await wire.call("GET", "/_ping")).body == b"OK"
            assert (await wire.call("GET", "/v1.41/version")).status == 200  # keep-alive over TLS
            await wire.close()

            # Without a certificate the handshake fails (TLS 1.3 reports it at the first read).
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                anonymous = Wire(
                    *await asyncio.open_connection("127.0.0.1", host.port, ssl=client_context(False))
                )
                try:
                    await anonymous.call("GET", "/_ping")
                finally:
                    with contextlib.suppress(ssl.SSLError, ConnectionError):
                        await anonymous.close()
        finally:
            await server.close()

    run(main_())


def test_tls_files_that_do_not_load_are_invalid(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")

    async def main_() -> None:
        with pytest.raises(InvalidArgument, match="cannot load TLS files"):
            await ApiServer(system_router()).listen(
                "tcp://127.0.0.1:0", tls=TLSFiles(ca=missing, cert=missing, key=missing)
            )

    run(main_())

"""The one translation of registry answers and transport failures into ketch errors; endpoint choice."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from tests.unit.image.remote.fakeregistry import FakeRegistry, errors_body, image_blobs

from ketch.common.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    NotFound,
    Unauthorized,
    Unavailable,
    Unsupported,
)
from ketch.image.content import ContentStore
from ketch.image.remote import RegistryClient
from ketch.image.remote.connections import ClientPool, allows_plain_http
from ketch.image.remote.errors import (
    Operation,
    RegistryError,
    RequestContext,
    parse_error_body,
    translate_response,
    translate_transport,
)
from ketch.spec.reference import parse

REF = parse("127.0.0.1:5000/busybox:nope")
URL = "http://127.0.0.1:5000/v2/busybox/manifests/nope"


def ctx(
    operation: Operation = "manifest", pushing: bool = False, method: str = "GET", url: str = URL
) -> RequestContext:
    return RequestContext(
        registry="127.0.0.1:5000",
        method=method,
        url=url,
        operation=operation,
        reference=REF,
        pushing=pushing,
    )


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers, request=httpx.Request("GET", URL))


def test_parse_error_body() -> None:
    assert parse_error_body(errors_body("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": "x"})) == [
        RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": "x"})
    ]
    assert parse_error_body(b'{"details": "incorrect username or password"}') == [
        RegistryError("UNAUTHORIZED", "incorrect username or password")
    ]
    assert parse_error_body(b"<html>oops</html>") == []
    assert parse_error_body(b'{"errors": "nope"}') == []
    assert str(RegistryError("NAME_UNKNOWN", "repository name not known to registry")) == (
        "name unknown: repository name not known to registry"
    )


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (404, errors_body("MANIFEST_UNKNOWN", "manifest unknown"), NotFound,
         "manifest for 127.0.0.1:5000/busybox:nope not found: manifest unknown: manifest unknown"),
        (404, b"", NotFound, "manifest for 127.0.0.1:5000/busybox:nope not found: manifest unknown: manifest unknown"),
        (404, errors_body("NAME_UNKNOWN", "repository name not known to registry"), NotFound,
         "repository 127.0.0.1:5000/busybox not found: name unknown: repository name not known to registry"),
        (401, errors_body("UNAUTHORIZED", "authentication required"), Unauthorized,
         f'Get "{URL}": unauthorized: authentication required'),
        (401, b"", Unauthorized, f'Get "{URL}": unauthorized: authentication required'),
        (403, errors_body("DENIED", "requested access to the resource is denied"), Forbidden,
         "pull access denied for 127.0.0.1:5000/busybox, repository does not exist or may require 'docker login': "
         "denied: requested access to the resource is denied"),
        (500, b"", Unavailable, f'Get "{URL}": received unexpected HTTP status: 500 Internal Server Error'),
        (503, errors_body("UNAVAILABLE", "x"), Unavailable,
         f'Get "{URL}": received unexpected HTTP status: 503 Service Unavailable'),
        (429, errors_body("TOOMANYREQUESTS", "slow down"), Unavailable, f'Get "{URL}": toomanyrequests: slow down'),
        (400, errors_body("MANIFEST_INVALID", "manifest invalid"), InvalidArgument,
         "manifest invalid: manifest invalid"),
        (405, errors_body("UNSUPPORTED", "The operation is unsupported."), Unsupported,
         "unsupported: The operation is unsupported."),
        (409, b"", Conflict, f'Get "{URL}": received unexpected HTTP status: 409 Conflict'),
    ],
)  # fmt: skip
def test_translate_response(status: int, body: bytes, kind: type[Exception], message: str) -> None:
    error = translate_response(answer(status, body), ctx(), body)
    assert type(error) is kind
    assert str(error) == message


def test_several_errors_and_blob_context() -> None:
    body = (
        b'{"errors": [{"code": "BLOB_UNKNOWN", "message": "a"}, {"code": "DIGEST_INVALID", "message": "b"}]}'
    )
    error = translate_response(answer(404, body), ctx("blob"), body)
    assert isinstance(error, NotFound)
    assert str(error) == f'Get "{URL}": errors:\nblob unknown: a\ndigest invalid: b\n'


def test_bearer_error_in_challenge() -> None:
    headers = {"WWW-Authenticate": 'Bearer realm="https://t",error="insufficient_scope"'}
    error = translate_response(answer(403, b"", headers), ctx(pushing=True), b"")
    assert isinstance(error, Forbidden)
    assert str(error) == "denied: requested access to the resource is denied"


def _failure(cause: BaseException) -> httpx.ConnectError:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise httpx.ConnectError(str(inner)) from inner
    except httpx.ConnectError as exc:
        return exc


def test_translate_transport() -> None:
    refused = translate_transport(
        _failure(ConnectionRefusedError(111, "Connection refused")), ctx(url="http://127.0.0.1:5000/v2/")
    )
    assert (
        str(refused)
        == 'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused'
    )
    bad_cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    bad_cert.verify_message = "self-signed certificate"
    tls = translate_transport(_failure(bad_cert), ctx(url="https://127.0.0.1:5000/v2/"))
    assert isinstance(tls, Unavailable)
    assert "tls: self-signed certificate" in str(tls) and "127.0.0.1:5000" in str(tls)
    timeout = translate_transport(httpx.ReadTimeout("timed out"), ctx())
    assert "timeout talking to registry 127.0.0.1:5000" in str(timeout)


def test_plain_http_only_where_docker_allows_it() -> None:
    assert allows_plain_http("localhost:5000", [])
    assert allows_plain_http("127.0.0.1:5000", [])
    assert allows_plain_http("127.8.9.10", [])
    assert allows_plain_http("[::1]:5000", [])
    assert not allows_plain_http("registry.test", [])
    assert not allows_plain_http("10.1.2.3:5000", [])
    assert allows_plain_http("registry.test", ["registry.test"])
    assert allows_plain_http("registry.test:5000", ["registry.test:5000"])
    assert allows_plain_http("10.1.2.3:5000", ["10.0.0.0/8"])
    assert not allows_plain_http("registry.test:5000", ["10.0.0.0/8"])


def _tls_refusing(fake: FakeRegistry) -> httpx.MockTransport:
    """A plain-HTTP server as an HTTPS client sees it: the handshake fails."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
            error.reason = "WRONG_VERSION_NUMBER"
            raise httpx.ConnectError(str(error)) from error
        return fake.handle(request)

    return httpx.MockTransport(handle)


def test_https_first_then_plain_http_for_local_and_insecure(tmp_path: Path) -> None:
    for host, insecure in (("127.0.0.1:5000", ()), ("registry.test", ("registry.test",))):
        fake = FakeRegistry(host=host)
        fake.add_image("app", "1", image_blobs([b"x"]))
        reg = RegistryClient(transport=_tls_refusing(fake), backoff=0, insecure_registries=insecure)
        reg.pull(parse(f"{host}/app:1"), ContentStore(str(tmp_path / host)))
        assert {r.url.scheme for r in fake.log} == {"http"}
    fake = FakeRegistry()
    reg = RegistryClient(transport=_tls_refusing(fake), backoff=0)
    with pytest.raises(Unavailable) as info:
        reg.resolve(parse("registry.test/app:1"))
    assert str(info.value) == (
        'Get "https://registry.test/v2/": tls: server gave HTTP response to HTTPS client (registry registry.test)'
    )
    assert fake.log == []


def test_connection_refused_names_the_registry() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused") from ConnectionRefusedError(111, "refused")

    reg = RegistryClient(transport=httpx.MockTransport(refuse), backoff=0)
    with pytest.raises(Unavailable) as info:
        reg.resolve(parse("localhost:5999/app:1"))
    assert (
        str(info.value)
        == 'Get "http://localhost:5999/v2/": dial tcp localhost:5999: connect: connection refused'
    )


def test_certs_dir_problems_are_named(tmp_path: Path) -> None:
    host_dir = tmp_path / "registry.test:5000"
    host_dir.mkdir()
    (host_dir / "client.cert").write_text("not really")
    with pytest.raises(Unavailable, match=r"client certificate .*client.cert has no key .*client.key"):
        ClientPool(ca_dirs=[str(tmp_path)]).client("registry.test:5000")
    (host_dir / "client.cert").unlink()
    (host_dir / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(
        Unavailable, match=r"registry registry.test:5000: cannot load CA certificate .*ca.crt"
    ):
        ClientPool(ca_dirs=[str(tmp_path)]).client("registry.test:5000")
    # Other hosts, and directories that do not exist, are no concern.
    ClientPool(ca_dirs=[str(tmp_path), str(tmp_path / "missing")]).client("other.test").close()

"""The registry client against Debian's docker-registry on 127.0.0.1, with skopeo as the independent party.

A busybox image built here (one gzip layer, OCI layout) is pushed by skopeo, pulled by ketch, pushed back by
ketch under new names, and checked by skopeo. Needs no root; needs docker-registry and skopeo.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.integration.image import registry as reg

from ketch.common.errors import InvalidArgument, NotFound, Unauthorized, Unavailable
from ketch.image.content import ContentStore
from ketch.image.remote import AuthConfig, Credentials, JSONProgress, RegistryClient
from ketch.image.remote.connections import ClientPool
from ketch.spec.oci_image import parse_config, parse_index, parse_manifest
from ketch.spec.platform import Platform
from ketch.spec.reference import parse

pytestmark = pytest.mark.skipif(reg.missing_tools() is not None, reason=reg.missing_tools() or "")


@dataclass
class Served:
    registry: reg.Registry
    layout: Path
    image: reg.LayoutImage
    multi: reg.LayoutImage
    policy: Path
    creds: str | None = None

    def ref(self, name: str) -> str:
        return f"{self.registry.address}/{name}"

    def skopeo_inspect(self, name: str, *, raw: bool = False) -> bytes:
        args = ["inspect", "--tls-verify=false"] + (["--raw"] if raw else [])
        if self.creds:
            args += ["--creds", self.creds]
        proc = reg.skopeo(*args, f"docker://{self.ref(name)}", policy=self.policy)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.encode()


def _serve(root: Path, rootfs: Path, users: dict[str, str] | None) -> Iterator[Served]:
    layout = root / "layout"
    image = reg.make_oci_layout(layout, rootfs, "t1")
    multi = reg.make_oci_layout(layout, rootfs, "multi", multi_arch=True)
    policy = reg.write_policy(root / "policy.json")
    try:
        registry = reg.Registry(root / "registry", users=users).start()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    creds = None if users is None else ":".join(next(iter(users.items())))
    try:
        for tag, extra in (("t1", []), ("multi", ["--all"])):
            args = ["copy", *extra, "--preserve-digests", "--dest-tls-verify=false"]
            if creds:
                args += ["--dest-creds", creds]
            proc = reg.skopeo(
                *args, f"oci:{layout}:{tag}", f"docker://{registry.address}/busybox:{tag}", policy=policy
            )
            assert proc.returncode == 0, proc.stderr
        yield Served(registry, layout, image, multi, policy, creds)
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("open-registry"), busybox_rootfs, None)


@pytest.fixture(scope="module")
def served_auth(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("auth-registry"), busybox_rootfs, {"testuser": "testpass"})


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(str(tmp_path / "root"))


def layout_blob(served: Served, digest: str) -> bytes:
    return (served.layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def test_pull_verifies_every_blob(served: Served, store: ContentStore) -> None:
    lines: list[bytes] = []
    with RegistryClient() as client:
        result = client.pull(parse(served.ref("busybox:t1")), store, progress=JSONProgress(lines.append))
    assert result.manifest.digest == served.image.manifest_digest
    assert result.config.digest == served.image.config_digest
    assert [layer.digest for layer in result.layers] == [served.image.layer_digest]
    for digest in (result.manifest.digest, result.config.digest, served.image.layer_digest):
        store.verify(digest)
        assert store.read_bytes(digest) == layout_blob(served, digest)
    config = parse_config(store.read_bytes(result.config.digest))
    assert config.config.cmd == ("sh",)
    events = [json.loads(line) for line in lines]
    assert events[0] == {"status": "Pulling from busybox", "id": "t1"}
    assert events[-1] == {
        "status": "Download complete",
        "progressDetail": {},
        "id": served.image.layer_digest[7:19],
    }


def test_pull_multi_arch_selects_the_platform(served: Served, store: ContentStore) -> None:
    with RegistryClient() as client:
        here = client.pull(parse(served.ref("busybox:multi")), store)
        arm = client.pull(parse(served.ref("busybox:multi")), store, platform=Platform("linux", "arm64"))
    assert here.index_digest == served.multi.index_digest
    assert here.manifest.digest == served.multi.manifest_digest
    assert served.multi.index_digest is not None
    index = parse_index(store.read_bytes(served.multi.index_digest))
    by_arch = {entry.platform.architecture: entry.digest for entry in index.manifests if entry.platform}
    assert arm.manifest.digest == by_arch["arm64"]
    assert parse_config(store.read_bytes(arm.config.digest)).architecture == "arm64"


def test_push_under_a_new_name_matches_skopeo(served: Served, store: ContentStore) -> None:
    with RegistryClient() as client:
        pulled = client.pull(parse(served.ref("busybox:t1")), store)
        lines: list[bytes] = []
        digest = client.push(
            parse(served.ref("newname:v1")),
            store,
            pulled.manifest.digest,
            progress=JSONProgress(lines.append),
        )
    assert digest == served.image.manifest_digest
    inspected = json.loads(served.skopeo_inspect("newname:v1"))
    assert inspected["Digest"] == digest
    assert served.skopeo_inspect("newname:v1", raw=True) == pulled.manifest_bytes
    events = [json.loads(line) for line in lines]
    assert events[0] == {"status": f"The push refers to repository [{served.ref('newname')}]"}
    assert events[-2] == {"status": f"v1: digest: {digest} size: {len(pulled.manifest_bytes)}"}


def test_chunked_push_and_pull_back(served: Served, store: ContentStore, tmp_path: Path) -> None:
    with RegistryClient(chunk_size=256 * 1024) as client:
        pulled = client.pull(parse(served.ref("busybox:t1")), store)
        client.push(parse(served.ref("chunked:v1")), store, pulled.manifest.digest)
        fresh = ContentStore(str(tmp_path / "fresh"))
        again = client.pull(parse(served.ref("chunked:v1")), fresh)
    assert again.manifest.digest == pulled.manifest.digest
    fresh.verify(served.image.layer_digest)
    assert json.loads(served.skopeo_inspect("chunked:v1"))["Digest"] == pulled.manifest.digest


def test_push_an_index_with_a_cross_repository_mount(served: Served, store: ContentStore) -> None:
    lines: list[bytes] = []
    with RegistryClient() as client:
        pulled = client.pull(parse(served.ref("busybox:multi")), store)
        assert pulled.index_digest is not None
        digest = client.push(
            parse(served.ref("mounted:v2")), store, pulled.manifest.digest, index_digest=pulled.index_digest,
            mount_from=parse(served.ref("busybox:multi")), progress=JSONProgress(lines.append),
        )  # fmt: skip
    assert digest == pulled.index_digest
    raw = served.skopeo_inspect("mounted:v2", raw=True)
    assert raw == store.read_bytes(pulled.index_digest)
    assert b"Mounted from busybox" in b"".join(lines)
    # The platform that was never pulled was copied inside the registry, and is complete there.
    with RegistryClient() as client:
        other = client.pull(parse(served.ref("mounted:v2")), store, platform=Platform("linux", "arm64"))
    assert parse_manifest(other.manifest_bytes).layers[0].digest == served.image.layer_digest


def test_missing_tag_and_repository(served: Served, store: ContentStore) -> None:
    with RegistryClient() as client, pytest.raises(NotFound) as info:
        client.pull(parse(served.ref("busybox:nope")), store)
    assert str(info.value) == (
        f"manifest for {served.ref('busybox:nope')} not found: manifest unknown: manifest unknown"
    )
    with RegistryClient() as client, pytest.raises(NotFound, match="not found"):
        client.pull(parse(served.ref("nothere:v1")), store)
    assert store.list_digests() == []


def test_connection_refused(store: ContentStore) -> None:
    address = f"127.0.0.1:{reg.free_port()}"
    with RegistryClient(retries=1, backoff=0) as client, pytest.raises(Unavailable) as info:
        client.pull(parse(f"{address}/busybox:t1"), store)
    assert f"dial tcp {address}: connect: connection refused" in str(info.value)


class _Faulty(httpx.BaseTransport):
    """The real network, except that GETs of one blob first meet the faults queued for them."""

    def __init__(self, digest: str, faults: list[object]) -> None:
        self.inner = httpx.HTTPTransport()
        self.digest, self.faults = digest, faults
        self.ranges: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET" or not request.url.path.endswith(self.digest):
            return self.inner.handle_request(request)
        self.ranges.append(request.headers.get("range", ""))
        fault = self.faults.pop(0) if self.faults else None
        if fault == 500:
            return httpx.Response(500, request=request)
        response = self.inner.handle_request(request)
        if isinstance(fault, int):  # cut the body after this many bytes
            response.read()
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=_Cut(response.content, fault),
                request=request,
            )
        return response

    def close(self) -> None:
        self.inner.close()


class _Cut(httpx.SyncByteStream):
    def __init__(self, data: bytes, n: int) -> None:
        self.data, self.n = data, n

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: self.n]
        raise httpx.ReadError("connection reset by peer")


def test_500s_are_retried_and_then_reported(served: Served, store: ContentStore, tmp_path: Path) -> None:
    layer = served.image.layer_digest
    faulty = _Faulty(layer, [500, 500])
    with RegistryClient(transport=faulty, backoff=0) as client:
        client.pull(parse(served.ref("busybox:t1")), store)
    assert faulty.ranges == ["", "", ""]
    store.verify(layer)
    other = ContentStore(str(tmp_path / "other"))
    failing = RegistryClient(transport=_Faulty(layer, [500] * 10), retries=2, backoff=0)
    with failing, pytest.raises(Unavailable, match="500 Internal Server Error"):
        failing.pull(parse(served.ref("busybox:t1")), other)
    assert not other.exists(layer)
    assert other.ingests() == []


def test_truncated_download_resumes_with_range(served: Served, store: ContentStore) -> None:
    layer = served.image.layer_digest
    faulty = _Faulty(layer, [300_000])
    with RegistryClient(transport=faulty, backoff=0) as client:
        client.pull(parse(served.ref("busybox:t1")), store)
    assert faulty.ranges == ["", "bytes=300000-"]  # the real registry honoured the range
    store.verify(layer)


def test_auth_registry(served_auth: Served, store: ContentStore) -> None:
    ref = parse(served_auth.ref("busybox:t1"))
    with (
        RegistryClient() as client,
        pytest.raises(Unauthorized, match="unauthorized: authentication required"),
    ):
        client.pull(ref, store)
    wrong = AuthConfig({served_auth.registry.address: Credentials("testuser", "wrong")})
    with RegistryClient(auth=wrong) as client, pytest.raises(Unauthorized):
        client.pull(ref, store)
    assert store.list_digests() == []
    with RegistryClient() as client:
        with pytest.raises(Unauthorized, match="failed with status: 401 Unauthorized"):
            client.login(served_auth.registry.address, "testuser", "wrong")
        client.login(served_auth.registry.address, "testuser", "testpass")
        result = client.pull(ref, store)
        client.push(parse(served_auth.ref("pushed:v1")), store, result.manifest.digest)
    assert json.loads(served_auth.skopeo_inspect("pushed:v1"))["Digest"] == result.manifest.digest


def test_wrong_digest_in_reference(served: Served, store: ContentStore) -> None:
    bogus = "sha256:" + "0" * 64
    with RegistryClient() as client, pytest.raises(NotFound):
        client.pull(parse(served.ref(f"busybox@{bogus}")), store)
    with RegistryClient() as client, pytest.raises(InvalidArgument, match="names digest"):
        client.push(parse(served.ref(f"x@{bogus}")), store, served.image.manifest_digest)


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[reg.Registry, reg.TLSFiles]]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    root = tmp_path_factory.mktemp("tls-registry")
    tls = reg.make_tls(root / "certs")
    registry = reg.Registry(root / "registry", tls=tls).start()
    try:
        yield registry, tls
    finally:
        registry.stop()


def certs_d(base: Path, address: str, tls: reg.TLSFiles, *, client: bool) -> Path:
    """dockerd's layout: <dir>/<host:port>/ca.crt, client.cert, client.key."""
    directory = base / address
    directory.mkdir(parents=True)
    shutil.copy(tls.ca, directory / "ca.crt")
    if client:
        shutil.copy(tls.client_cert, directory / "client.cert")
        shutil.copy(tls.client_key, directory / "client.key")
    return base


def test_tls_with_ca_dir_and_client_certificate(
    tls_registry: tuple[reg.Registry, reg.TLSFiles], tmp_path: Path, served: Served
) -> None:
    registry, tls = tls_registry
    url = f"https://{registry.address}/v2/"
    with_client = certs_d(tmp_path / "full", registry.address, tls, client=True)
    pool = ClientPool(ca_dirs=[str(with_client)])
    assert (
        pool.client(registry.address, verify=True).get(url).status_code == 200
    )  # CA from the dir, cert sent
    pool.close()
    ca_only = ClientPool(ca_dirs=[str(certs_d(tmp_path / "ca", registry.address, tls, client=False))])
    with pytest.raises(httpx.HTTPError):  # the registry wants a client certificate
        ca_only.client(registry.address, verify=True).get(url)
    ca_only.close()
    system_only = ClientPool(ca_dirs=[str(tmp_path / "none")])
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        system_only.client(registry.address, verify=True).get(url)
    system_only.close()
    # A whole push and pull over HTTPS with the client certificate.
    store = ContentStore(str(tmp_path / "store"))
    with RegistryClient(ca_dirs=[str(with_client)]) as client:
        pulled = client.pull(parse(served.ref("busybox:t1")), store)
        ref = parse(f"{registry.address}/secure:v1")
        assert client.push(ref, store, pulled.manifest.digest) == pulled.manifest.digest
        assert client.session(registry.address).base_url() == f"https://{registry.address}"
        again = client.pull(ref, ContentStore(str(tmp_path / "again")))
    assert again.manifest.digest == pulled.manifest.digest

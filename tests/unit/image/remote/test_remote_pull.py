"""Pull against the in-memory registry: HEAD before GET, platform choice, resume, retries, verification."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.unit.image.remote.fakeregistry import OCI_MANIFEST, FakeRegistry, Image, image_blobs, sha256

from ketch.common.errors import InvalidArgument, NotFound, Unavailable, Unsupported
from ketch.image.content import ContentStore
from ketch.image.remote import AuthConfig, Credentials, JSONProgress, RegistryClient
from ketch.spec.platform import Platform
from ketch.spec.reference import parse

LAYERS = [os.urandom(300_000), os.urandom(70_000), b"small layer"]


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(str(tmp_path / "root"))


def client(fake: FakeRegistry, **kwargs: object) -> RegistryClient:
    return RegistryClient(transport=fake.transport(), backoff=0, **kwargs)  # type: ignore[arg-type]


def blob_gets(fake: FakeRegistry, digest: str) -> list[str]:
    return [r.headers.get("range", "") for r in fake.log if r.method == "GET" and r.url.path.endswith(digest)]


def test_pull_stores_every_blob_verified(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    result = client(fake).pull(parse("registry.test/lib/app:1.0"), store)
    assert result.index_digest is None
    assert result.manifest.digest == image.manifest_digest
    assert result.manifest_bytes == image.manifest
    assert result.config.digest == image.config_digest
    assert [layer.digest for layer in result.layers] == image.layer_digests
    assert result.reference == parse(f"registry.test/lib/app:1.0@{image.manifest_digest}")
    for digest in [image.manifest_digest, image.config_digest, *image.layer_digests]:
        store.verify(digest)
    assert store.ingests() == []
    assert store.leased() == set()  # the pull's own lease ends with the call


def test_head_before_get_and_manifest_by_digest(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    reg = client(fake)
    reg.pull(parse("registry.test/lib/app:1.0"), store)
    manifest_requests = [r for r in fake.requests() if "/manifests/" in r]
    assert manifest_requests == [
        "HEAD /v2/lib/app/manifests/1.0",
        f"GET /v2/lib/app/manifests/{image.manifest_digest}",
    ]
    fake.log.clear()
    lines: list[bytes] = []
    reg.pull(parse("registry.test/lib/app:1.0"), store, progress=JSONProgress(lines.append))
    # Everything is local now: one HEAD and nothing else.
    assert fake.requests() == ["HEAD /v2/lib/app/manifests/1.0"]
    statuses = [json.loads(line) for line in lines]
    assert statuses[0] == {"status": "Pulling from lib/app", "id": "1.0"}
    assert [s["status"] for s in statuses[1:]] == ["Already exists"] * 3


def test_get_when_head_gives_no_digest(fake: FakeRegistry, store: ContentStore) -> None:
    fake.serve_head_digest = False
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    reg = client(fake)
    assert reg.resolve(parse("registry.test/lib/app:1.0")).digest == image.manifest_digest
    assert fake.requests()[-2:] == ["HEAD /v2/lib/app/manifests/1.0", "GET /v2/lib/app/manifests/1.0"]
    assert reg.pull(parse("registry.test/lib/app:1.0"), store).manifest.digest == image.manifest_digest


def test_resolve_uses_head(fake: FakeRegistry) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    desc = client(fake).resolve(parse("registry.test/lib/app:1.0"))
    assert (desc.digest, desc.size, desc.media_type) == (
        image.manifest_digest,
        len(image.manifest),
        OCI_MANIFEST,
    )
    assert fake.requests() == ["GET /v2/", "HEAD /v2/lib/app/manifests/1.0"]


def test_pull_by_digest_checks_the_bytes(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    result = client(fake).pull(parse(f"registry.test/lib/app@{image.manifest_digest}"), store)
    assert result.manifest.digest == image.manifest_digest
    # A registry that answers a digest request with other bytes is caught.
    other = image_blobs([b"other"])
    fake.manifests[("lib/app", other.manifest_digest)] = (image.manifest, OCI_MANIFEST)
    with pytest.raises(InvalidArgument, match="does not match"):  # caught at the HEAD
        client(fake).pull(parse(f"registry.test/lib/app@{other.manifest_digest}"), store)
    fake.serve_head_digest = False
    with pytest.raises(InvalidArgument, match="the requested digest does not match the content received"):
        client(fake).pull(parse(f"registry.test/lib/app@{other.manifest_digest}"), store)
    assert not store.exists(other.manifest_digest)


def index_registry(fake: FakeRegistry) -> dict[str, Image]:
    images = {
        "amd64": image_blobs([b"amd64 layer"], arch="amd64"),
        "arm64": image_blobs([b"arm64 layer"], arch="arm64"),
    }
    fake.add_index("lib/multi", "latest", images)
    return images


def test_platform_selection_from_an_index(fake: FakeRegistry, store: ContentStore) -> None:
    images = index_registry(fake)
    index_digest = sha256(fake.manifests[("lib/multi", "latest")][0])
    result = client(fake).pull(
        parse("registry.test/lib/multi"), store, platform=Platform("linux", "arm64", "v8")
    )
    assert result.index_digest == index_digest
    assert result.manifest.digest == images["arm64"].manifest_digest
    assert result.manifest.platform == Platform("linux", "arm64")
    assert result.layers[0].digest == images["arm64"].layer_digests[0]
    assert result.reference.digest == index_digest
    store.verify(index_digest)
    store.verify(images["arm64"].manifest_digest)
    assert not store.exists(images["amd64"].layer_digests[0])


def test_no_matching_platform(fake: FakeRegistry, store: ContentStore) -> None:
    index_registry(fake)
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x in the manifest list entries"):
        client(fake).pull(parse("registry.test/lib/multi"), store, platform=Platform("linux", "s390x"))


def test_schema1_and_unknown_media_types_are_refused(fake: FakeRegistry, store: ContentStore) -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": "lib/old", "tag": "1", "fsLayers": []}).encode()
    fake.put_manifest("lib/old", "1", schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    with pytest.raises(Unsupported, match="schema 1"):
        client(fake).pull(parse("registry.test/lib/old:1"), store)
    weird = json.dumps({"schemaVersion": 2, "mediaType": "application/x-weird", "layers": []}).encode()
    fake.put_manifest("lib/weird", "1", weird, "application/x-weird")
    with pytest.raises(Unsupported, match="unsupported manifest media type application/x-weird"):
        client(fake).pull(parse("registry.test/lib/weird:1"), store)


def test_truncated_blob_resumes_with_range(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    big = image.layer_digests[0]
    fake.faults[big] = [("truncate", 100_000), ("truncate", 50_000)]
    client(fake).pull(parse("registry.test/lib/app:1.0"), store)
    assert blob_gets(fake, big) == ["", "bytes=100000-", "bytes=150000-"]
    store.verify(big)


def test_partial_ingest_from_an_earlier_pull_is_resumed(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    big = image.layer_digests[0]
    writer = store.writer(f"remote-{big}", expected_digest=big, expected_size=len(LAYERS[0]))
    writer.write(LAYERS[0][:123_456])
    writer.close()  # as a killed pull leaves it
    client(fake).pull(parse("registry.test/lib/app:1.0"), store)
    assert blob_gets(fake, big) == ["bytes=123456-"]
    store.verify(big)


def test_registry_ignoring_range_restarts_the_ingest(fake: FakeRegistry, store: ContentStore) -> None:
    fake.ignore_range = True
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    big = image.layer_digests[0]
    fake.faults[big] = [("truncate", 100_000)]
    client(fake).pull(parse("registry.test/lib/app:1.0"), store)
    assert blob_gets(fake, big) == ["", "bytes=100000-"]
    store.verify(big)


def test_5xx_and_connection_errors_are_retried(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    fake.faults[image.layer_digests[1]] = ["500", "connect", "500"]
    client(fake).pull(parse("registry.test/lib/app:1.0"), store)
    assert len(blob_gets(fake, image.layer_digests[1])) == 4
    store.verify(image.layer_digests[1])


def test_5xx_after_retries_is_unavailable(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    bad = image.layer_digests[2]
    fake.faults[bad] = ["500"] * 10
    with pytest.raises(Unavailable, match="received unexpected HTTP status: 500 Internal Server Error"):
        client(fake, retries=2).pull(parse("registry.test/lib/app:1.0"), store)
    assert len(blob_gets(fake, bad)) == 3
    assert not store.exists(bad)


def test_blob_with_wrong_bytes_leaves_the_store_unchanged(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    bad = image.layer_digests[1]
    fake.faults[bad] = [("replace", os.urandom(len(LAYERS[1])))]
    with pytest.raises(InvalidArgument, match=f"filesystem layer verification failed for digest {bad}"):
        client(fake, max_concurrency=1).pull(parse("registry.test/lib/app:1.0"), store)
    assert not store.exists(bad)
    assert store.ingests() == []  # the ingest was dropped, not kept for a resume
    for digest in store.list_digests():
        store.verify(digest)  # what is there is complete and verified


def test_blob_longer_than_its_descriptor_is_refused(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    bad = image.layer_digests[2]
    fake.faults[bad] = [("replace", LAYERS[2] + b"extra")]
    with pytest.raises(InvalidArgument, match="size mismatch"):
        client(fake).pull(parse("registry.test/lib/app:1.0"), store)
    assert not store.exists(bad)
    assert store.ingests() == []


def test_missing_manifest_and_blob_are_not_found(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    with pytest.raises(NotFound) as info:
        client(fake).pull(parse("registry.test/lib/app:nope"), store)
    assert (
        str(info.value)
        == "manifest for registry.test/lib/app:nope not found: manifest unknown: manifest unknown"
    )
    del fake.blobs[image.layer_digests[0]]
    with pytest.raises(NotFound, match="blob unknown: blob unknown to registry"):
        client(fake).pull(parse("registry.test/lib/app:1.0"), store)


def test_pull_progress_messages(fake: FakeRegistry, store: ContentStore) -> None:
    image = fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    store.ingest_bytes(LAYERS[2])  # one layer is already here
    lines: list[bytes] = []
    client(fake, max_concurrency=1).pull(
        parse("registry.test/lib/app:1.0"), store, progress=JSONProgress(lines.append)
    )
    events = [json.loads(line) for line in lines]
    ids = [d.split(":")[1][:12] for d in image.layer_digests]
    assert events[:5] == [
        {"status": "Pulling from lib/app", "id": "1.0"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": ids[0]},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": ids[1]},
        {"status": "Already exists", "progressDetail": {}, "id": ids[2]},
        {"status": "Waiting", "progressDetail": {}, "id": ids[1]},
    ]
    for blob_id, size in ((ids[0], len(LAYERS[0])), (ids[1], len(LAYERS[1]))):
        mine = [e for e in events if e.get("id") == blob_id]
        downloading = [e for e in mine if e["status"] == "Downloading"]
        assert downloading[-1]["progressDetail"] == {"current": size, "total": size}
        assert [e["status"] for e in mine if e["status"] != "Downloading"][-2:] == [
            "Verifying Checksum",
            "Download complete",
        ]
    assert all(line.endswith(b"\r\n") for line in lines)


def test_foreign_layer_comes_from_its_urls(fake: FakeRegistry, store: ContentStore) -> None:
    foreign = b"windows base layer"
    digest = sha256(foreign)
    image = image_blobs([b"ordinary"])
    manifest = json.loads(image.manifest)
    manifest["layers"].append(
        {
            "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "digest": digest,
            "size": len(foreign),
            "urls": ["https://dead.test/layer", "https://cdn.test/layer"],
        }
    )
    data = json.dumps(manifest).encode()
    fake.put_blob("lib/app", image.config)
    fake.put_blob("lib/app", image.layers[0])
    fake.put_manifest("lib/app", "1", data, OCI_MANIFEST)
    fake.external["https://cdn.test/layer"] = foreign
    client(fake, auth=AuthConfig({"registry.test": Credentials("alice", "secret")})).pull(
        parse("registry.test/lib/app:1"), store
    )
    store.verify(digest)
    outside = [r for r in fake.log if r.url.host in ("dead.test", "cdn.test")]
    assert [r.url.host for r in outside] == ["dead.test", "cdn.test"]
    assert all("authorization" not in r.headers for r in outside)  # credentials stay with the registry

"""Push against the in-memory registry: request order, existing blobs, chunks, mounts, indexes, scopes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.unit.image.remote.fakeregistry import OCI_INDEX, FakeRegistry, Image, image_blobs, sha256

from ketch.common.errors import NotFound, Unavailable
from ketch.image.content import ContentStore
from ketch.image.remote import JSONProgress, RegistryClient
from ketch.spec.reference import parse

BIG = os.urandom(10_000)


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(str(tmp_path / "root"))


def local_image(store: ContentStore, layers: list[bytes], arch: str = "amd64") -> Image:
    image = image_blobs(layers, arch=arch)
    for blob in [image.manifest, image.config, *image.layers]:
        store.ingest_bytes(blob)
    return image


def client(fake: FakeRegistry, **kwargs: object) -> RegistryClient:
    return RegistryClient(transport=fake.transport(), backoff=0, **kwargs)  # type: ignore[arg-type]


def test_push_order_monolithic_and_chunked(store: ContentStore) -> None:
    image = local_image(store, [BIG])
    fake = FakeRegistry()
    digest = client(fake, chunk_size=4096).push(
        parse("registry.test/team/app:v1"), store, image.manifest_digest
    )
    assert digest == image.manifest_digest
    layer, config = image.layer_digests[0], image.config_digest
    assert fake.requests() == [
        "GET /v2/",
        f"HEAD /v2/team/app/blobs/{layer}",
        "POST /v2/team/app/blobs/uploads/",
        *[f"PATCH /v2/team/app/blobs/uploads/{_session(fake, i)}" for i in range(3)],  # 4096 + 4096 + 1808
        f"PUT /v2/team/app/blobs/uploads/{_session(fake, 0)}",
        f"HEAD /v2/team/app/blobs/{config}",
        "POST /v2/team/app/blobs/uploads/",
        f"PUT /v2/team/app/blobs/uploads/{_session(fake, 1, put=True)}",
        "PUT /v2/team/app/manifests/v1",
    ]
    patches = [r for r in fake.log if r.method == "PATCH"]
    assert [r.headers["content-range"] for r in patches] == ["0-4095", "4096-8191", "8192-9999"]
    puts = [r for r in fake.log if r.method == "PUT" and "/uploads/" in r.url.path]
    assert [r.url.params["digest"] for r in puts] == [layer, config]
    assert puts[0].content == b"" and puts[1].content == image.config
    assert fake.blobs[layer] == BIG
    manifest_put = fake.log[-1]
    assert manifest_put.content == image.manifest
    assert manifest_put.headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"


def _session(fake: FakeRegistry, index: int, put: bool = False) -> str:
    """The upload session id in the path of the index-th PATCH (or PUT)."""
    method = "PUT" if put else "PATCH"
    paths = [r.url.path for r in fake.log if r.method == method and "/uploads/" in r.url.path]
    return paths[index].rsplit("/", 1)[1]


def test_existing_blobs_are_skipped(store: ContentStore) -> None:
    image = local_image(store, [BIG, b"second"])
    fake = FakeRegistry()
    fake.put_blob("team/app", BIG)
    lines: list[bytes] = []
    client(fake, max_concurrency=1).push(
        parse("registry.test/team/app:v1"), store, image.manifest_digest, progress=JSONProgress(lines.append)
    )
    assert [r for r in fake.requests("POST")] == [
        "POST /v2/team/app/blobs/uploads/"
    ] * 2  # second layer, config
    events = [json.loads(line) for line in lines]
    diff_ids = [sha256(b"diff-" + layer).split(":")[1][:12] for layer in (BIG, b"second")]
    assert events[0] == {"status": "The push refers to repository [registry.test/team/app]"}
    assert events[1:4] == [
        {"status": "Preparing", "progressDetail": {}, "id": diff_ids[0]},
        {"status": "Preparing", "progressDetail": {}, "id": diff_ids[1]},
        {"status": "Waiting", "progressDetail": {}, "id": diff_ids[1]},
    ]
    assert {"status": "Layer already exists", "progressDetail": {}, "id": diff_ids[0]} in events
    assert {"status": "Pushed", "progressDetail": {}, "id": diff_ids[1]} in events
    size = len(image.manifest)
    assert events[-2:] == [
        {"status": f"v1: digest: {image.manifest_digest} size: {size}"},
        {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": image.manifest_digest, "Size": size}},
    ]


def test_cross_repository_mount(store: ContentStore) -> None:
    image = local_image(store, [BIG])
    fake = FakeRegistry(auth="bearer")
    fake.put_blob("lib/base", BIG)
    lines: list[bytes] = []
    client(fake).push(
        parse("registry.test/team/app:v1"), store, image.manifest_digest, progress=JSONProgress(lines.append),
        mount_from=parse("registry.test/lib/base:latest"),
    )  # fmt: skip
    posts = [r for r in fake.log if r.method == "POST"]
    assert dict(posts[0].url.params) == {"mount": image.layer_digests[0], "from": "lib/base"}
    assert b"Mounted from lib/base" in b"".join(lines)
    assert not any(r.method == "PATCH" for r in fake.log)
    # The config is not in lib/base: the mount answers 202 with an ordinary upload session.
    assert dict(posts[1].url.params) == {"mount": image.config_digest, "from": "lib/base"}
    assert image.config_digest in fake.repo_blobs["team/app"]
    # push needs pull and push on the target, and pull on the mount source, in one token.
    scopes = fake.token_requests[0].url.params.get_list("scope")
    assert sorted(scopes) == ["repository:lib/base:pull", "repository:team/app:pull,push"]


def test_mount_only_within_the_registry(store: ContentStore) -> None:
    image = local_image(store, [BIG])
    fake = FakeRegistry()
    client(fake).push(
        parse("registry.test/team/app:v1"),
        store,
        image.manifest_digest,
        mount_from=parse("other.test/lib/base"),
    )
    assert all("mount" not in r.url.params for r in fake.log)


def test_push_index_children_by_digest_then_index_by_tag(store: ContentStore) -> None:
    amd = local_image(store, [b"amd layer"], "amd64")
    arm = local_image(store, [b"arm layer"], "arm64")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest_digest,
                 "size": len(img.manifest), "platform": {"os": "linux", "architecture": arch}}
                for arch, img in (("amd64", amd), ("arm64", arm))
            ],
        }
    ).encode()  # fmt: skip
    index_digest = store.ingest_bytes(index)
    fake = FakeRegistry()
    pushed = client(fake).push(
        parse("registry.test/team/multi:v2"), store, amd.manifest_digest, index_digest=index_digest
    )
    assert pushed == index_digest
    assert [r for r in fake.requests("PUT") if "/manifests/" in r] == [
        f"PUT /v2/team/multi/manifests/{amd.manifest_digest}",
        f"PUT /v2/team/multi/manifests/{arm.manifest_digest}",
        "PUT /v2/team/multi/manifests/v2",
    ]
    assert fake.manifests[("team/multi", "v2")] == (index, OCI_INDEX)
    # Each child's blobs are in place before the child itself is put.
    order = [f"{r.method} {r.url.path}?{r.url.params.get('digest', '')}" for r in fake.log]
    for img in (amd, arm):
        manifest_put = order.index(f"PUT /v2/team/multi/manifests/{img.manifest_digest}?")
        for blob in [img.config_digest, *img.layer_digests]:
            assert max(i for i, line in enumerate(order) if line.endswith(f"?{blob}")) < manifest_put


def test_missing_local_blob_is_not_found(store: ContentStore) -> None:
    image = local_image(store, [BIG])
    store.delete(image.layer_digests[0])
    with pytest.raises(NotFound, match=f"blob {image.layer_digests[0]} is not in the content store"):
        client(FakeRegistry()).push(parse("registry.test/team/app:v1"), store, image.manifest_digest)
    unknown = sha256(b"no such manifest")
    with pytest.raises(NotFound, match=f"manifest {unknown} is not in the content store: nothing to push"):
        client(FakeRegistry()).push(parse("registry.test/team/app:v1"), store, unknown)


def test_failed_upload_is_retried_from_the_head(store: ContentStore) -> None:
    image = local_image(store, [BIG])
    fake = FakeRegistry()
    fake.status_faults["/v2/team/app/blobs/uploads/"] = [503, 503, 503]
    client(fake, retries=4).push(parse("registry.test/team/app:v1"), store, image.manifest_digest)
    assert fake.blobs[image.layer_digests[0]] == BIG
    fake = FakeRegistry()
    fake.status_faults["/v2/team/app/blobs/uploads/"] = [503] * 20
    with pytest.raises(Unavailable, match="503"):
        client(fake, retries=1).push(parse("registry.test/team/app:v1"), store, image.manifest_digest)

"""A pull that fails for any reason leaves the image store as it was, plus only complete, verified blobs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.unit.image.layers import E, gz, tar_bytes
from tests.unit.image.remote.fakeregistry import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    FakeRegistry,
    Image,
    sha256,
)

from ketch.common.errors import InvalidArgument, KetchError, NotFound, Unauthorized, Unavailable, Unsupported
from ketch.image.remote import RegistryClient
from ketch.image.service import ImageService

REF = "registry.test/lib/app:1.0"


def image_of(tars: list[bytes]) -> Image:
    """An image whose config names the layers' real diff IDs, so that it unpacks."""
    blobs = [gz(t) for t in tars]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
        }
    ).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(b), "size": len(b)}
                                      for b in blobs]}).encode()  # fmt: skip
    return Image(manifest, sha256(manifest), config, sha256(config), blobs, [sha256(b) for b in blobs])


def layers() -> list[bytes]:
    return [tar_bytes([E("a", data=os.urandom(50_000))]), tar_bytes([E("b", data=b"second")])]


def state(service: ImageService) -> tuple[list[str], list[str], list[str]]:
    images = sorted(img["Id"] for img in service.images(all=True))
    blobs = sorted(service.content.list_digests())
    snapshots = sorted(info.name for info in service.snapshotter.walk())
    return images, blobs, snapshots


def wrong_digest(fake: FakeRegistry, image: object) -> None:
    size = len(image.layers[0])  # type: ignore[attr-defined]
    fake.faults[image.layer_digests[0]] = [("replace", b"x" * size)] * 10  # type: ignore[attr-defined]


def truncated(fake: FakeRegistry, image: object) -> None:
    fake.ignore_range = True  # no resume possible: every attempt is cut short
    fake.faults[image.layer_digests[0]] = [("truncate", 100)] * 20  # type: ignore[attr-defined]


def missing_blob(fake: FakeRegistry, image: object) -> None:
    fake.repo_blobs["lib/app"].discard(image.layer_digests[1])  # type: ignore[attr-defined]


def unknown_media_type(fake: FakeRegistry, image: object) -> None:
    manifest = json.loads(image.manifest)  # type: ignore[attr-defined]
    manifest["mediaType"] = "application/vnd.example.not-a-manifest+json"
    data = json.dumps(manifest).encode()
    fake.put_manifest("lib/app", "1.0", data, manifest["mediaType"])


def unauthorized(fake: FakeRegistry, image: object) -> None:
    fake.auth = "basic"


def not_found(fake: FakeRegistry, image: object) -> None:
    del fake.manifests[("lib/app", "1.0")]


def server_error(fake: FakeRegistry, image: object) -> None:
    fake.status_faults["/v2/lib/app/manifests/1.0"] = [500] * 20


CASES: list[tuple[str, Callable[[FakeRegistry, object], None], type[KetchError], str]] = [
    ("wrong digest", wrong_digest, InvalidArgument, "digest"),
    ("truncated download", truncated, Unavailable, ""),
    ("manifest references a missing blob", missing_blob, NotFound, "blob unknown"),
    ("unknown media type", unknown_media_type, Unsupported, "application/vnd.example.not-a-manifest+json"),
    ("401", unauthorized, Unauthorized, "authentication required"),
    ("404", not_found, NotFound, "manifest unknown"),
    ("500", server_error, Unavailable, ""),
]


@pytest.mark.parametrize(("name", "break_it", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_failed_pull_changes_nothing(
    tmp_path: Path, name: str, break_it: Callable[[FakeRegistry, object], None], error: type[KetchError],
    words: str,
) -> None:  # fmt: skip
    fake = FakeRegistry()
    fake.add_image("lib/other", "1", image_of([tar_bytes([E("o", data=b"other")])]))
    image = fake.add_image("lib/app", "1.0", image_of(layers()))
    registry = RegistryClient(transport=fake.transport(), backoff=0, retries=2)
    with ImageService(str(tmp_path / "root"), registry=registry) as service:
        service.pull("registry.test/lib/other:1")
        before = state(service)
        break_it(fake, image)
        with pytest.raises(error) as info:
            service.pull(REF)
        assert words.lower() in str(info.value).lower()
        images, blobs, snapshots = state(service)
        assert images == before[0] and snapshots == before[2]
        assert set(before[1]) <= set(blobs)
        for digest in blobs:
            service.content.verify(digest)  # whatever was added is complete and verified
        assert sha256(b"x" * len(image.layers[0])) not in blobs

"""ImageService: pull, push, tag, rmi (Docker's untag/delete table), images filters, inspect, history, prune,
rootfs and gc, against an in-process fake registry and the naive snapshotter (no root needed)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.unit.image.layers import E, gz, tar_bytes

from ketch.common.errors import Conflict, InvalidArgument, NotFound
from ketch.image.content import ContentStore, Lease
from ketch.image.service import ImageService
from ketch.image.snapshots import Kind, NaiveSnapshotter
from ketch.spec.oci_image import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    Descriptor,
    chain_ids,
)
from ketch.spec.platform import Platform
from ketch.spec.reference import Reference

BASE = [
    E("bin", "dir"),
    E("bin/sh", data=b"#!shell" * 10, mode=0o755),
    E("etc", "dir"),
    E("etc/passwd", data=b"root"),
]
APP = [E("app", "dir"), E("app/run", data=b"run" * 100, mode=0o755), E("etc/.wh.passwd")]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Built:
    """An image as a registry holds it: blobs by digest, a manifest and its config."""

    config: bytes
    manifest: bytes
    layers: list[bytes]
    diff_ids: list[str]
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return sha256(self.config)

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest)

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)


def build_image(
    layers: list[list[E] | bytes],
    *,
    created: str = "2024-01-02T03:04:05.123456789Z",
    labels: dict[str, str] | None = None,
    history: list[dict[str, Any]] | None = None,
    arch: str = "amd64",
    compress: Any = gz,
    cmd: list[str] | None = None,
) -> Built:
    tars = [entries if isinstance(entries, bytes) else tar_bytes(entries) for entries in layers]
    blobs_layers = [compress(t) if compress else t for t in tars]
    diff_ids = [sha256(t) for t in tars]
    config_obj: dict[str, Any] = {
        "architecture": arch,
        "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/bin"], **({"Labels": labels} if labels else {})},
        "created": created,
        "history": history
        if history is not None
        else [{"created": created, "created_by": f"layer {i}"} for i in range(len(layers))],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config = json.dumps(config_obj).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": DOCKER_LAYER_GZIP if compress else "application/vnd.docker.image.rootfs.diff.tar",
                    "digest": sha256(b), "size": len(b)} for b in blobs_layers],
    }).encode()  # fmt: skip
    built = Built(config=config, manifest=manifest, layers=blobs_layers, diff_ids=diff_ids)
    for blob in (config, manifest, *blobs_layers):
        built.blobs[sha256(blob)] = blob
    return built


@dataclass(frozen=True)
class FakePullResult:
    index_digest: str | None
    manifest: Descriptor
    manifest_bytes: bytes
    config: Descriptor
    layers: list[Descriptor]
    reference: Reference


class FakeRegistry:
    """Serves images by reference; a multi-platform entry is an index over several built images."""

    def __init__(self) -> None:
        self.repos: dict[str, tuple[list[Built], bytes | None]] = {}
        self.pushed: list[tuple[str, str, Reference | None]] = []
        self.pulls = 0
        self.leases: list[Lease | None] = []

    def add(self, ref: str, *images: Built) -> str:
        index = None
        if len(images) > 1:
            index = json.dumps({
                "schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST,
                "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": b.manifest_digest, "size": len(b.manifest),
                               "platform": {"os": "linux", "architecture": json.loads(b.config)["architecture"]}}
                              for b in images],
            }).encode()  # fmt: skip
        self.repos[ref] = (list(images), index)
        return sha256(index) if index else images[0].manifest_digest

    def pull(
        self,
        ref: Reference,
        content: ContentStore,
        *,
        platform: Platform | None = None,
        progress: Any = None,
        lease: Lease | None = None,
    ) -> FakePullResult:
        self.pulls += 1
        self.leases.append(lease)
        key = str(Reference(ref.domain, ref.path, ref.tag))
        if key not in self.repos:
            raise NotFound(f"manifest unknown: {ref}")
        images, index = self.repos[key]
        arch = platform.architecture if platform else "amd64"
        built = next(b for b in images if json.loads(b.config)["architecture"] == arch)
        for d, blob in built.blobs.items():
            if lease is not None:
                lease.add(d)
            if not content.exists(d):
                content.ingest_bytes(blob, d)
        if index is not None:
            content.ingest_bytes(index, sha256(index))
        manifest = json.loads(built.manifest)
        return FakePullResult(
            index_digest=sha256(index) if index else None,
            manifest=Descriptor(
                media_type=DOCKER_MANIFEST, digest=built.manifest_digest, size=len(built.manifest)
            ),
            manifest_bytes=built.manifest,
            config=Descriptor.from_json(manifest["config"], "config"),
            layers=[Descriptor.from_json(layer, "layer") for layer in manifest["layers"]],
            reference=ref,
        )

    def push(
        self, ref: Reference, content: ContentStore, manifest_digest: str, *, mount_from: Reference | None = None,
        **_: Any,
    ) -> str:  # fmt: skip
        manifest = json.loads(content.read_bytes(manifest_digest))
        for desc in (manifest["config"], *manifest["layers"]):
            assert content.exists(desc["digest"])
        self.pushed.append((str(ref), manifest_digest, mount_from))
        return manifest_digest


class Users:
    """The engine's hooks: which containers use an image, and which of them run."""

    def __init__(self) -> None:
        self.by_image: dict[str, list[str]] = {}
        self.running: set[str] = set()

    def in_use(self, image_id: str) -> list[str]:
        return self.by_image.get(image_id, [])

    def is_running(self, container_id: str) -> bool:
        return container_id in self.running


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def users() -> Users:
    return Users()


def make_service(
    root: Path, registry: FakeRegistry | None = None, users: Users | None = None
) -> ImageService:
    users = users or Users()
    return ImageService(
        str(root), snapshotter=NaiveSnapshotter(str(root)), registry=registry or FakeRegistry(),
        in_use=users.in_use, running=users.is_running, platform=Platform("linux", "amd64"),
    )  # fmt: skip


@pytest.fixture
def svc(tmp_path: Path, registry: FakeRegistry, users: Users) -> ImageService:
    return make_service(tmp_path / "root", registry, users)


@pytest.fixture
def busybox(svc: ImageService, registry: FakeRegistry) -> Iterator[Built]:
    built = build_image([BASE, APP])
    registry.add("docker.io/library/busybox:latest", built)
    svc.pull("busybox")
    yield built


def layer_snapshots(svc: ImageService) -> set[str]:
    return {i.name for i in svc.snapshotter.walk(kind=Kind.COMMITTED)}


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("ketch.image.service", ["ImageService", "PullOutcome", "PullResultLike", "Registry"]),
        ("ketch.image.delete", ["Deleter"]),
        ("ketch.image.install", ["Unpacked", "dir_size", "layer_diff_id", "unpack_layers"]),
        ("ketch.image.flatten", ["layer_dirs", "write_merged"]),
        ("ketch.image.listing", [
            "Filters", "bool_filter", "container_config", "familiar_match", "full_container_config", "history_items",
            "inspect_shape", "match_kv", "parse_filters", "parse_rfc3339", "parse_until", "rfc3339_nano",
            "summary_shape",
        ]),
    ],
)  # fmt: skip
def test_exports(module: str, names: list[str]) -> None:
    import importlib

    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(names)
    assert all(hasattr(mod, name) for name in names)


# ---- pull ----------------------------------------------------------------------------------------------


def test_pull_records_image_as_docker_names_it(svc: ImageService, registry: FakeRegistry) -> None:
    built = build_image([BASE, APP])
    registry.add("docker.io/library/busybox:latest", built)
    outcome = svc.pull("busybox")
    assert outcome.id == built.id == "sha256:" + hashlib.sha256(built.config).hexdigest()
    assert (outcome.reference, outcome.digest, outcome.updated) == (
        "busybox:latest",
        built.manifest_digest,
        True,
    )
    [summary] = svc.images()
    assert summary["Id"] == built.id
    assert summary["RepoTags"] == ["busybox:latest"]
    assert summary["RepoDigests"] == [f"busybox@{built.manifest_digest}"]
    assert summary["Size"] == len(b"#!shell" * 10) + len(b"root") + len(b"run" * 100)
    assert layer_snapshots(svc) == set(built.chain_ids)
    fs = Path(svc.snapshotter.fs_dir(built.chain_ids[-1]))
    assert (fs / "app" / "run").read_bytes() == b"run" * 100
    assert not (fs / "etc" / "passwd").exists()  # the whiteout applied
    assert svc.pull("busybox").updated is False


def test_pull_of_an_index_records_the_index_digest(svc: ImageService, registry: FakeRegistry) -> None:
    amd, arm = build_image([BASE]), build_image([BASE], arch="arm64")
    index_digest = registry.add("docker.io/library/multi:1", amd, arm)
    assert svc.pull("multi:1").digest == index_digest
    assert svc.pull("multi:1", platform="linux/arm64").id == arm.id
    assert svc.inspect(amd.id)["RepoDigests"] == []  # the digest moved with the tag's last pull
    assert svc.inspect("multi:1")["RepoDigests"] == [f"multi@{index_digest}"]
    assert svc.inspect("multi:1")["Architecture"] == "arm64"
    assert svc.store.get(arm.id).index == index_digest


def test_pull_by_digest_adds_no_tag(svc: ImageService, registry: FakeRegistry) -> None:
    built = build_image([BASE])
    registry.add("docker.io/library/busybox:latest", built)
    registry.repos["docker.io/library/busybox"] = registry.repos["docker.io/library/busybox:latest"]
    svc.pull(f"busybox@{built.manifest_digest}")
    assert svc.inspect(built.id)["RepoTags"] == []
    assert svc.inspect(built.id)["RepoDigests"] == [f"busybox@{built.manifest_digest}"]


def test_shared_layers_are_unpacked_once(svc: ImageService, registry: FakeRegistry) -> None:
    one, two = build_image([BASE, APP]), build_image([BASE, [E("other", data=b"o")]])
    registry.add("docker.io/library/one:latest", one)
    registry.add("docker.io/library/two:latest", two)
    svc.pull("one")
    base_fs = svc.snapshotter.fs_dir(one.chain_ids[0])
    marker = Path(base_fs) / "marker"
    marker.write_text("unpacked once")
    svc.pull("two")
    assert marker.exists()  # the base snapshot was reused, not unpacked again
    assert layer_snapshots(svc) == {*one.chain_ids, *two.chain_ids}


def test_pull_reports_extraction_and_status(svc: ImageService, registry: FakeRegistry) -> None:
    built = build_image([BASE])
    registry.add("docker.io/library/busybox:latest", built)

    class Recorder:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def message(self, text: str, *, id: str = "") -> None:
            self.lines.append(text)

        def update(self, id: str, action: str, **_: Any) -> None:
            self.lines.append(f"{id}: {action}")

        def aux(self, data: Any) -> None:
            pass

    rec = Recorder()
    svc.pull("busybox", progress=rec)
    layer = sha256(built.layers[0])[7:19]
    assert rec.lines == [
        f"{layer}: Extracting", f"{layer}: Pull complete", f"Digest: {built.manifest_digest}",
        "Status: Downloaded newer image for busybox:latest",
    ]  # fmt: skip


def test_bad_layer_leaves_no_record(svc: ImageService, registry: FakeRegistry) -> None:
    built = build_image([BASE])
    config = json.loads(built.config)
    config["rootfs"]["diff_ids"] = [sha256(b"something else")]
    built.blobs.pop(built.id)
    built.config = json.dumps(config).encode()
    built.blobs[built.id] = built.config
    manifest = json.loads(built.manifest)
    manifest["config"].update(digest=built.id, size=len(built.config))
    built.blobs.pop(built.manifest_digest)
    built.manifest = json.dumps(manifest).encode()
    built.blobs[built.manifest_digest] = built.manifest
    registry.add("docker.io/library/bad:latest", built)
    with pytest.raises(InvalidArgument, match="diff ID mismatch"):
        svc.pull("bad")
    assert svc.images() == []
    assert layer_snapshots(svc) == set()


# ---- push and tag --------------------------------------------------------------------------------------


def test_push_sends_the_stored_manifest_and_records_the_digest(
    svc: ImageService, registry: FakeRegistry, busybox: Built
) -> None:
    svc.tag("busybox", "localhost:5000/bb:v1")
    assert svc.push("localhost:5000/bb:v1") == busybox.manifest_digest
    assert registry.pushed == [("localhost:5000/bb:v1", busybox.manifest_digest, None)]
    svc.tag("busybox", "localhost:5000/copy:v1")
    svc.push("localhost:5000/copy:v1")
    assert registry.pushed[-1][2] == Reference(
        "localhost:5000", "bb"
    )  # blobs mount from the other repository
    assert registry.leases and all(lease is not None for lease in registry.leases)
    assert f"localhost:5000/bb@{busybox.manifest_digest}" in svc.inspect("busybox")["RepoDigests"]
    with pytest.raises(NotFound, match="An image does not exist locally with the tag: localhost:5000/bb"):
        svc.push("localhost:5000/bb:v2")


def test_tag_sets_last_tag_time_and_refuses_digests(svc: ImageService, busybox: Built) -> None:
    assert svc.inspect("busybox")["Metadata"] == {"LastTagTime": "0001-01-01T00:00:00Z"}
    svc.tag(busybox.id[7:19], "mine:1")
    assert svc.inspect("mine:1")["Id"] == busybox.id
    assert svc.inspect("mine:1")["Metadata"]["LastTagTime"].endswith("Z")
    with pytest.raises(InvalidArgument, match="refusing to create a tag with a digest reference"):
        svc.tag("busybox", f"mine@{busybox.manifest_digest}")
    with pytest.raises(NotFound, match="No such image: nosuch:latest"):
        svc.tag("nosuch", "x")


# ---- rmi -----------------------------------------------------------------------------------------------


def test_rmi_untags_while_other_tags_remain(svc: ImageService, busybox: Built) -> None:
    svc.tag("busybox", "mine:1")
    assert svc.remove("mine:1") == [{"Untagged": "mine:1"}]
    assert svc.inspect(busybox.id)["RepoTags"] == ["busybox:latest"]
    assert layer_snapshots(svc) == set(busybox.chain_ids)


def test_rmi_of_the_last_tag_deletes_image_layers_and_blobs(svc: ImageService, busybox: Built) -> None:
    records = svc.remove("busybox")
    assert records == [
        {"Untagged": "busybox:latest"},
        {"Untagged": f"busybox@{busybox.manifest_digest}"},
        {"Deleted": busybox.id},
        {"Deleted": busybox.chain_ids[1]},
        {"Deleted": busybox.chain_ids[0]},
    ]
    assert svc.images() == []
    assert layer_snapshots(svc) == set()
    assert svc.content.list_digests() == []


def test_rmi_keeps_what_another_image_shares(
    svc: ImageService, registry: FakeRegistry, busybox: Built
) -> None:
    other = build_image([BASE, [E("x", data=b"x")]])
    registry.add("docker.io/library/other:latest", other)
    svc.pull("other")
    records = svc.remove("busybox")
    assert {"Deleted": busybox.chain_ids[0]} not in records
    assert layer_snapshots(svc) == set(other.chain_ids)
    assert set(svc.content.list_digests()) == set(other.blobs)


def test_rmi_by_id_with_one_tag_untags_and_deletes(svc: ImageService, busybox: Built) -> None:
    records = svc.remove(busybox.id[7:19])
    assert records[:3] == [
        {"Untagged": "busybox:latest"}, {"Untagged": f"busybox@{busybox.manifest_digest}"},
        {"Deleted": busybox.id},
    ]  # fmt: skip


def test_rmi_by_id_with_two_tags_of_one_repository_must_be_forced(svc: ImageService, busybox: Built) -> None:
    # moby's isSingleReference allows one tag only, so Docker says "multiple repositories" here too.
    svc.tag("busybox", "busybox:other")
    with pytest.raises(Conflict, match="must be forced"):
        svc.remove(busybox.id[7:19])


def test_rmi_by_id_with_several_repositories_must_be_forced(svc: ImageService, busybox: Built) -> None:
    svc.tag("busybox", "mine:1")
    with pytest.raises(Conflict) as info:
        svc.remove(busybox.id)
    assert str(info.value) == (
        f"conflict: unable to delete {busybox.id[7:19]} (must be forced) - image is referenced in multiple "
        "repositories"
    )
    records = svc.remove(busybox.id, force=True)
    assert {"Untagged": "mine:1"} in records and {"Deleted": busybox.id} in records


def test_rmi_of_a_reference_a_container_uses(svc: ImageService, users: Users, busybox: Built) -> None:
    users.by_image[busybox.id] = ["c" * 64]
    with pytest.raises(Conflict) as info:
        svc.remove("busybox")
    assert str(info.value) == (
        f'conflict: unable to remove repository reference "busybox" (must force) - container {"c" * 12} is '
        f"using its referenced image {busybox.id[7:19]}"
    )
    svc.tag("busybox", "keep:1")
    # With the repository's last tag gone, its digest references go too.
    assert svc.remove("busybox") == [
        {"Untagged": "busybox:latest"}, {"Untagged": f"busybox@{busybox.manifest_digest}"},
    ]  # fmt: skip
    assert svc.inspect(busybox.id)["RepoTags"] == ["keep:1"]


def test_rmi_forced_untag_keeps_an_image_a_running_container_uses(
    svc: ImageService, users: Users, busybox: Built
) -> None:
    users.by_image[busybox.id] = ["c" * 64]
    users.running.add("c" * 64)
    records = svc.remove("busybox", force=True)
    assert records == [{"Untagged": "busybox:latest"}, {"Untagged": f"busybox@{busybox.manifest_digest}"}]
    assert svc.inspect(busybox.id)["RepoTags"] == []  # dangling, still there for its container


def test_rmi_forced_deletes_an_image_only_stopped_containers_use(
    svc: ImageService, users: Users, busybox: Built
) -> None:
    users.by_image[busybox.id] = ["c" * 64]
    assert {"Deleted": busybox.id} in svc.remove("busybox", force=True)


def test_rmi_by_id_of_an_image_stopped_or_running_containers_use(
    svc: ImageService, users: Users, busybox: Built
) -> None:
    users.by_image[busybox.id] = ["a" * 64]
    users.running.add("a" * 64)
    with pytest.raises(
        Conflict, match=r"\(cannot be forced\) - image is being used by running container a{12}$"
    ):
        svc.remove(busybox.id, force=True)
    users.running.clear()
    with pytest.raises(
        Conflict, match=r"\(must be forced\) - image is being used by stopped container a{12}$"
    ):
        svc.remove(busybox.id)
    assert {"Deleted": busybox.id} in svc.remove(busybox.id, force=True)


def test_rmi_without_running_hook_counts_users_as_running(tmp_path: Path, registry: FakeRegistry) -> None:
    built = build_image([BASE])
    registry.add("docker.io/library/busybox:latest", built)
    svc = ImageService(
        str(tmp_path), snapshotter=NaiveSnapshotter(str(tmp_path)), registry=registry,
        in_use=lambda image_id: ["b" * 64], platform=Platform("linux", "amd64"),
    )  # fmt: skip
    svc.pull("busybox")
    with pytest.raises(Conflict, match="cannot be forced"):
        svc.remove(built.id, force=True)


def test_rmi_missing(svc: ImageService) -> None:
    with pytest.raises(NotFound, match=r"^No such image: nosuch:latest$"):
        svc.remove("nosuch")


def test_rmi_keeps_a_layer_a_container_is_built_on(svc: ImageService, busybox: Built) -> None:
    svc.rootfs_mounts("busybox", "container-1")
    svc.remove("busybox", force=True)
    assert layer_snapshots(svc) == set(busybox.chain_ids)  # the container's snapshot holds them
    svc.snapshotter.remove("container-1")
    assert set(svc.gc().snapshots) == set(busybox.chain_ids)


# ---- listing, inspect, history -------------------------------------------------------------------------


@pytest.fixture
def three(svc: ImageService, registry: FakeRegistry) -> dict[str, Built]:
    images = {
        "old": build_image([BASE], created="2020-01-01T00:00:00Z", labels={"tier": "db", "team": "a"}),
        "mid": build_image([APP], created="2022-06-01T12:00:00+02:00", labels={"tier": "web"}),
        "new": build_image([BASE, APP], created="2024-03-04T05:06:07.5Z"),
    }
    for name, built in images.items():
        registry.add(f"docker.io/library/{name}:latest", built)
        svc.pull(name)
    svc.tag("old", "localhost:5000/team/old:1")
    return images


def ids(summaries: list[dict[str, Any]]) -> list[str]:
    return [s["Id"] for s in summaries]


def test_images_newest_first_with_docker_shape(svc: ImageService, three: dict[str, Built]) -> None:
    listing = svc.images()
    assert ids(listing) == [three["new"].id, three["mid"].id, three["old"].id]
    old = listing[2]
    assert old == {
        "Containers": -1, "Created": 1577836800, "Id": three["old"].id, "Labels": {"team": "a", "tier": "db"},
        "ParentId": "", "RepoDigests": [f"old@{three['old'].manifest_digest}"],
        "RepoTags": ["localhost:5000/team/old:1", "old:latest"], "SharedSize": -1, "Size": old["Size"],
        "VirtualSize": old["Size"],
    }  # fmt: skip
    assert listing[1]["Created"] == 1654077600  # 12:00+02:00 is 10:00Z
    assert listing[0]["Labels"] is None


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"label": ["tier"]}, ["mid", "old"]),
        ({"label": ["tier=db"]}, ["old"]),
        ({"label": {"tier=db": True, "team=a": True}}, ["old"]),
        ({"label": ["tier=db", "team=b"]}, []),
        ({"reference": ["old"]}, ["old"]),
        ({"reference": ["*/team/*"]}, ["old"]),
        ({"reference": ["n*:latest"]}, ["new"]),
        ({"reference": ["*"]}, ["new", "mid", "old"]),  # "*" matches no "/" and so not localhost:5000/...
        ({"before": ["new"]}, ["mid", "old"]),
        ({"since": ["old"]}, ["new", "mid"]),
        ({"since": ["old"], "before": ["new"]}, ["mid"]),
        ({"until": ["2023-01-01T00:00:00Z"]}, ["mid", "old"]),
        ({"until": ["1600000000"]}, ["old"]),
        ({"dangling": ["true"]}, []),
        ({"dangling": ["false"]}, ["new", "mid", "old"]),
    ],
)
def test_images_filters(
    svc: ImageService, three: dict[str, Built], filters: dict[str, Any], expected: list[str]
) -> None:
    assert ids(svc.images(filters)) == [three[name].id for name in expected]


def test_reference_filter_keeps_only_matching_references(svc: ImageService, three: dict[str, Built]) -> None:
    [old] = svc.images({"reference": ["localhost:5000/*/*"]})
    assert old["RepoTags"] == ["localhost:5000/team/old:1"]
    assert old["RepoDigests"] == []


def test_dangling_images(svc: ImageService, three: dict[str, Built]) -> None:
    svc.remove("mid", force=True)  # untag + delete: gone
    svc.tag("new", "new:2")
    svc.remove("new:latest")
    assert ids(svc.images({"dangling": ["true"]})) == []
    # An image whose only references are digests is dangling, as in Docker.
    with svc.store.update() as state:
        state.remove_ref(Reference("docker.io", "library/new", "2"))
    [entry] = svc.images({"dangling": ["1"]})
    assert entry["Id"] == three["new"].id and entry["RepoTags"] == []


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"colour": ["red"]}, "invalid filter 'colour'"),
        ({"dangling": ["maybe"]}, "invalid filter 'dangling=maybe'"),
        ({"dangling": ["true", "false"]}, "invalid filter 'dangling=true,false'"),
        ({"until": ["yesterday"]}, 'failed to parse value as time or duration: "yesterday"'),
    ],
)
def test_bad_filters(
    svc: ImageService, three: dict[str, Built], filters: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        svc.images(filters)
    assert str(info.value) == message


def test_before_an_unknown_image(svc: ImageService, three: dict[str, Built]) -> None:
    with pytest.raises(NotFound, match="No such image: ghost:latest"):
        svc.images({"before": ["ghost"]})


def test_shared_size_and_container_count(svc: ImageService, users: Users, three: dict[str, Built]) -> None:
    users.by_image[three["old"].id] = ["x" * 64, "y" * 64]
    by_id = {s["Id"]: s for s in svc.images(shared_size=True, container_count=True)}
    old, new = by_id[three["old"].id], by_id[three["new"].id]
    assert old["SharedSize"] == old["Size"]  # its one layer is new's base layer too
    assert new["SharedSize"] == old["Size"]
    assert by_id[three["mid"].id]["SharedSize"] == 0
    assert old["Containers"] == 2 and new["Containers"] == 0


def test_inspect_shape(svc: ImageService, busybox: Built) -> None:
    info = svc.inspect("busybox")
    assert list(info) == [
        "Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author", "Config",
        "Architecture", "Os", "Size", "GraphDriver", "RootFS", "Metadata",
    ]  # fmt: skip
    assert info["Created"] == "2024-01-02T03:04:05.123456789Z"
    assert info["RootFS"] == {"Type": "layers", "Layers": busybox.diff_ids}
    assert info["Config"]["Cmd"] == ["sh"] and info["Config"]["Env"] == ["PATH=/bin"]
    assert info["Config"]["Entrypoint"] is None and info["Config"]["Hostname"] == ""
    assert "ExposedPorts" not in info["Config"]
    assert info["GraphDriver"] == {
        "Data": {"Dir": svc.snapshotter.fs_dir(busybox.chain_ids[-1])},
        "Name": "naive",
    }
    assert info["Size"] == svc.images()[0]["Size"]


def test_history(svc: ImageService, registry: FakeRegistry) -> None:
    history = [
        {"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs"},
        {"created": "2024-01-02T00:00:00Z", "created_by": "ENV A=1", "empty_layer": True},
        {"created": "2024-01-03T00:00:00Z", "created_by": "COPY app", "comment": "buildkit"},
    ]
    built = build_image([BASE, APP], history=history)
    registry.add("docker.io/library/hist:latest", built)
    svc.pull("hist")
    items = svc.history("hist")
    sizes = svc.store.get(built.id).layer_sizes
    assert items == [
        {"Comment": "buildkit", "Created": 1704240000, "CreatedBy": "COPY app", "Id": built.id,
         "Size": sizes[1], "Tags": ["hist:latest"]},
        {"Comment": "", "Created": 1704153600, "CreatedBy": "ENV A=1", "Id": "<missing>", "Size": 0, "Tags": None},
        {"Comment": "", "Created": 1704067200, "CreatedBy": "ADD rootfs", "Id": "<missing>", "Size": sizes[0],
         "Tags": None},
    ]  # fmt: skip


# ---- prune and gc --------------------------------------------------------------------------------------


def test_prune_dangling_only(svc: ImageService, three: dict[str, Built]) -> None:
    svc.tag("mid", "keep:1")
    svc.remove("mid:latest")
    with svc.store.update() as state:  # leave "new" with only its digest reference: dangling
        state.remove_ref(Reference("docker.io", "library/new", "latest"))
    report = svc.prune()
    deleted = [r["Deleted"] for r in report["ImagesDeleted"] if "Deleted" in r]
    assert deleted[0] == three["new"].id
    assert {"Untagged": f"new@{three['new'].manifest_digest}"} in report["ImagesDeleted"]
    assert report["SpaceReclaimed"] > 0
    assert sorted(ids(svc.images())) == sorted([three["old"].id, three["mid"].id])
    assert svc.prune() == {"ImagesDeleted": None, "SpaceReclaimed": 0}


def test_prune_all_spares_images_in_use_and_honours_labels(
    svc: ImageService, users: Users, three: dict[str, Built]
) -> None:
    users.by_image[three["new"].id] = ["c" * 64]
    report = svc.prune(dangling_only=False, filters={"label!": ["tier=web"]})
    deleted = {r["Deleted"] for r in report["ImagesDeleted"] if "Deleted" in r}
    assert three["old"].id in deleted and three["mid"].id not in deleted and three["new"].id not in deleted
    assert sorted(ids(svc.images())) == sorted([three["new"].id, three["mid"].id])
    with pytest.raises(InvalidArgument, match="invalid filter 'reference'"):
        svc.prune(filters={"reference": ["x"]})


def test_gc_removes_unreferenced_blobs_but_not_leased_ones(svc: ImageService, busybox: Built) -> None:
    stray = svc.content.ingest_bytes(b"stray")
    with svc.content.lease("in flight") as lease:
        held = svc.content.ingest_bytes(b"held")
        lease.add(held)
        report = svc.gc()
    assert report.blobs == (stray,)
    assert svc.content.exists(held)
    assert set(busybox.blobs) <= set(svc.content.list_digests())


# ---- containers ----------------------------------------------------------------------------------------


def test_rootfs_mounts_prepare_on_the_top_layer(svc: ImageService, busybox: Built) -> None:
    [mount] = svc.rootfs_mounts("busybox", "ctr")
    assert mount.type == "bind" and "rw" in mount.options
    assert (Path(mount.source) / "app" / "run").exists()
    assert svc.snapshotter.stat("ctr").parent == busybox.chain_ids[-1]
    with pytest.raises(Conflict):
        svc.rootfs_mounts("busybox", "ctr")


def test_rootfs_mounts_reunpack_lost_layers(svc: ImageService, busybox: Built) -> None:
    for chain in reversed(busybox.chain_ids):
        svc.snapshotter.remove(chain)
    [mount] = svc.rootfs_mounts("busybox", "ctr")
    assert (Path(mount.source) / "bin" / "sh").exists()


def test_image_service_creates_its_directories(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "fresh")
    assert svc.images() == []
    assert sorted(os.listdir(tmp_path / "fresh")) == ["content", "image", "snapshots"]


def test_gc_removes_scratch_snapshots_of_dead_processes(svc: ImageService, busybox: Built) -> None:
    dead = _dead_pid()
    svc.snapshotter.prepare(f"extract-{dead}-1 {busybox.chain_ids[0]}", busybox.chain_ids[0])
    svc.snapshotter.view(f"export-{dead}-abc", busybox.chain_ids[-1])
    mine = f"extract-{os.getpid()}-2 x"
    svc.snapshotter.prepare(mine, busybox.chain_ids[0])
    svc.gc()
    left = {i.name for i in svc.snapshotter.walk()}
    assert left == {*busybox.chain_ids, mine}


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_images_skips_an_image_whose_config_is_gone(svc: ImageService, busybox: Built) -> None:
    os.chmod(svc.content.blob_path(busybox.id), 0o644)
    os.unlink(svc.content.blob_path(busybox.id))
    assert svc.images() == []
    with pytest.raises(NotFound, match="config blob is missing"):
        svc.inspect("busybox")


def test_a_registry_client_the_service_made_is_closed(tmp_path: Path) -> None:
    from ketch.image.remote import RegistryClient

    with ImageService(str(tmp_path), snapshotter=NaiveSnapshotter(str(tmp_path))) as svc:
        client = svc.registry
        assert isinstance(client, RegistryClient) and svc.registry is client
    svc.close()  # twice is fine

"""Archives: save/load round trips, hand-made docker-save archives (Docker 20.10 and 25 forms), OCI layouts,
broken and hostile archives that must change nothing, import with --change, and export."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.unit.image.layers import ROOT, E, gz, tar_bytes
from tests.unit.image.test_service import APP, BASE, Built, FakeRegistry, build_image, make_service

from ketch.common.errors import InvalidArgument, NotFound
from ketch.image.archive import LoadedImage
from ketch.image.changes import apply_changes
from ketch.image.listing import full_container_config
from ketch.image.service import ImageService
from ketch.spec.oci_image import DOCKER_LAYER, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tar(entries: list[tuple[str, Any]]) -> bytes:
    """(name, bytes) for files, (name, ("symlink", target)) and (name, ("hardlink", target)) for links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, value in entries:
            info = tarfile.TarInfo(name)
            if isinstance(value, tuple):
                info.type = tarfile.SYMTYPE if value[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = value[1]
                tf.addfile(info)
            else:
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value))
    return buf.getvalue()


def saved(svc: ImageService, *names: str) -> bytes:
    buf = io.BytesIO()
    svc.save(list(names), buf)
    return buf.getvalue()


def members(data: bytes) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name] = f.read() if f else None
    return out


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    registry = FakeRegistry()
    service = make_service(tmp_path / "root", registry)
    built = build_image([BASE, APP], labels={"k": "v"})
    registry.add("docker.io/library/busybox:latest", built)
    service.pull("busybox")
    return service


@pytest.fixture
def busybox(svc: ImageService) -> str:
    return svc.inspect("busybox")["Id"]  # type: ignore[no-any-return]


def everything(svc: ImageService) -> tuple[Any, ...]:
    """All a failed load must leave unchanged: records, blobs, snapshots, ingests."""
    path = Path(svc.store.path) / "index.json"
    return (
        path.read_bytes() if path.exists() else b"",
        svc.content.list_digests(),
        [(i.name, i.kind, i.parent) for i in svc.snapshotter.walk()],
        os.listdir(os.path.join(svc.content.path, "ingest")),
        os.listdir(os.path.join(svc.content.path, "leases")),
    )


# ---- save ----------------------------------------------------------------------------------------------


def test_save_writes_docker_and_oci_views(svc: ImageService, busybox: str) -> None:
    data = saved(svc, "busybox")
    files = members(data)
    rec = svc.store.get(busybox)
    blob_names = sorted(f"blobs/sha256/{d[7:]}" for d in (busybox, rec.manifests[0], *rec.layers))
    assert list(files) == ["blobs", "blobs/sha256", *blob_names, "index.json", "manifest.json", "oci-layout",
                           "repositories"]  # fmt: skip
    for name in blob_names:
        assert sha256(files[name] or b"") == "sha256:" + name.rsplit("/", 1)[1]
    assert json.loads(files["manifest.json"] or b"") == [{
        "Config": f"blobs/sha256/{busybox[7:]}", "RepoTags": ["busybox:latest"],
        "Layers": [f"blobs/sha256/{d[7:]}" for d in rec.layers],
    }]  # fmt: skip
    index = json.loads(files["index.json"] or b"")
    assert index["mediaType"] == OCI_INDEX
    assert index["manifests"] == [{
        "mediaType": DOCKER_MANIFEST, "digest": rec.manifests[0], "size": len(svc.content.read_bytes(rec.manifests[0])),
        "annotations": {"io.containerd.image.name": "docker.io/library/busybox:latest",
                        "org.opencontainers.image.ref.name": "latest"},
        "platform": {"architecture": "amd64", "os": "linux"},
    }]  # fmt: skip
    assert json.loads(files["oci-layout"] or b"") == {"imageLayoutVersion": "1.0.0"}
    assert json.loads(files["repositories"] or b"") == {"busybox": {"latest": rec.layers[-1][7:]}}
    assert saved(svc, "busybox") == data  # deterministic
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert {(m.mtime, m.uid, m.gid) for m in tf.getmembers()} == {(0, 0, 0)}


def test_save_selects_as_docker_does(svc: ImageService, busybox: str) -> None:
    svc.tag("busybox", "busybox:two")
    svc.tag("busybox", "other:1")
    tags = json.loads(members(saved(svc, "busybox"))["manifest.json"] or b"")[0]["RepoTags"]
    assert tags == ["busybox:latest", "busybox:two"]  # a bare name means all its tags
    by_id = json.loads(members(saved(svc, busybox[7:19]))["manifest.json"] or b"")
    assert by_id[0]["RepoTags"] is None
    assert "repositories" not in members(saved(svc, busybox))
    with pytest.raises(NotFound, match="No such image: busybox:nope"):
        saved(svc, "busybox:nope")
    with pytest.raises(InvalidArgument):
        saved(svc)


def test_save_load_round_trip_keeps_ids_and_digests(tmp_path: Path, svc: ImageService, busybox: str) -> None:
    svc.tag("busybox", "localhost:5000/bb:1")
    data = saved(svc, "busybox", "localhost:5000/bb:1")
    other = make_service(tmp_path / "other")
    loaded = other.load(io.BytesIO(data))
    assert loaded.images == (LoadedImage(id=busybox, tags=("busybox:latest", "localhost:5000/bb:1")),)
    assert loaded.messages == ("Loaded image: busybox:latest", "Loaded image: localhost:5000/bb:1")
    before, after = svc.store.get(busybox), other.store.get(busybox)
    assert (after.manifests, after.layers, after.diff_ids, after.layer_sizes, after.platform) == (
        before.manifests, before.layers, before.diff_ids, before.layer_sizes, before.platform,
    )  # fmt: skip
    assert set(other.content.list_digests()) == set(svc.content.list_digests())
    a, b = svc.inspect("busybox"), other.inspect("busybox")
    for key in (
        "GraphDriver",
        "RepoDigests",
        "Metadata",
    ):  # RepoDigests come from registries only, as in Docker
        a.pop(key), b.pop(key)
    assert a == b
    assert saved(other, "busybox", "localhost:5000/bb:1") == data


def test_loading_again_moves_tags_and_says_so(tmp_path: Path, svc: ImageService, busybox: str) -> None:
    other = make_service(tmp_path / "other")
    registry = FakeRegistry()
    mine = build_image([BASE])
    registry.add("docker.io/library/busybox:latest", mine)
    other._registry = registry
    other.pull("busybox")
    loaded = other.load(io.BytesIO(saved(svc, "busybox")))
    assert loaded.messages == (
        f"The image busybox:latest already exists, renaming the old one with ID {mine.id} to empty string",
        "Loaded image: busybox:latest",
    )
    assert other.inspect(mine.id)["RepoTags"] == []


# ---- load: docker save forms ---------------------------------------------------------------------------


def docker_20_archive(*, shared_symlink: bool = True) -> tuple[bytes, str, list[str]]:
    """What Docker 20.10's `docker save` writes: <v1 id>/{VERSION,json,layer.tar}, <config hex>.json."""
    tars = [tar_bytes(BASE), tar_bytes(APP)]
    diff_ids = [sha256(t) for t in tars] + [sha256(tars[0])]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2023-01-01T00:00:00Z", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "a"}, {"created_by": "b"}, {"created_by": "c"}],
    }).encode()  # fmt: skip
    v1 = [hashlib.sha256(f"v1-{n}".encode()).hexdigest() for n in range(3)]
    entries: list[tuple[str, Any]] = []
    for n, layer in enumerate([tars[0], tars[1], tars[0]]):
        entries += [(f"{v1[n]}/VERSION", b"1.0"), (f"{v1[n]}/json", json.dumps({"id": v1[n]}).encode())]
        if n == 2 and shared_symlink:  # Docker links a layer it already wrote
            entries.append((f"{v1[n]}/layer.tar", ("symlink", f"../{v1[0]}/layer.tar")))
        else:
            entries.append((f"{v1[n]}/layer.tar", layer))
    manifest = [{"Config": f"{sha256(config)[7:]}.json", "RepoTags": ["old:form"],
                 "Layers": [f"{v}/layer.tar" for v in v1]}]  # fmt: skip
    entries += [
        (f"{sha256(config)[7:]}.json", config),
        ("manifest.json", json.dumps(manifest).encode()),
        ("repositories", json.dumps({"old": {"form": v1[2]}}).encode()),
    ]
    return make_tar(entries), sha256(config), diff_ids


def test_load_docker_20_form(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "root")
    data, image_id, diff_ids = docker_20_archive()
    loaded = svc.load(io.BytesIO(data))
    assert loaded.images == (LoadedImage(id=image_id, tags=("old:form",)),)
    rec = svc.store.get(image_id)
    assert rec.layers == tuple(diff_ids)  # uncompressed layers: blob digest is the diff ID
    manifest = json.loads(svc.content.read_bytes(rec.manifests[0]))
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_LAYER] * 3
    assert set(svc.content.list_digests()) == {image_id, rec.manifests[0], *diff_ids}  # no junk left
    export = io.BytesIO()
    svc.export_image("old:form", export)
    names = set(members(export.getvalue()))
    assert {"bin/sh", "app/run"} <= names and "etc/passwd" in names  # layer 3 re-adds what layer 2 deleted


def test_load_gzip_compressed_archive(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "root")
    data, image_id, _ = docker_20_archive(shared_symlink=False)
    assert svc.load(io.BytesIO(gzip.compress(data))).images[0].id == image_id


def docker_25_archive() -> tuple[bytes, str, str]:
    """What Docker 25's graphdriver `docker save` writes: blobs/sha256, manifest.json, index.json, oci-layout."""
    tars = [tar_bytes(BASE), tar_bytes(APP)]
    diff_ids = [sha256(t) for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": len(t)} for d, t in zip(diff_ids, tars, strict=True)],
    }).encode()  # fmt: skip
    legacy = json.dumps({"id": "x", "created": "1970-01-01T00:00:00Z"}).encode()
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
        "annotations": {"io.containerd.image.name": "docker.io/library/new:form",
                        "org.opencontainers.image.ref.name": "form"}}]}  # fmt: skip
    entries: list[tuple[str, Any]] = [
        (f"blobs/sha256/{sha256(b)[7:]}", b) for b in (*tars, config, manifest, legacy)
    ]
    entries += [
        ("index.json", json.dumps(index).encode()),
        ("manifest.json", json.dumps([{"Config": f"blobs/sha256/{sha256(config)[7:]}", "RepoTags": ["new:form"],
                                       "Layers": [f"blobs/sha256/{d[7:]}" for d in diff_ids]}]).encode()),
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("repositories", json.dumps({"new": {"form": diff_ids[-1][7:]}}).encode()),
    ]  # fmt: skip
    return make_tar(entries), sha256(config), sha256(manifest)


def test_load_docker_25_form_keeps_its_oci_manifest(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "root")
    data, image_id, manifest_digest = docker_25_archive()
    assert svc.load(io.BytesIO(data)).images == (LoadedImage(id=image_id, tags=("new:form",)),)
    assert svc.store.get(image_id).manifests == (manifest_digest,)
    assert len(svc.content.list_digests()) == 4  # the legacy v1 json blob did not stay


# ---- load: OCI layouts ---------------------------------------------------------------------------------


def oci_layout(built: dict[str, Built], index_entries: list[dict[str, Any]]) -> bytes:
    """An OCI layout holding the blobs of ``built`` and the given index.json entries."""
    entries: list[tuple[str, Any]] = [("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')]
    blobs: dict[str, bytes] = {}
    for b in built.values():
        blobs.update(b.blobs)
    for entry in index_entries:
        if "_blob" in entry:
            data = entry.pop("_blob")
            blobs[sha256(data)] = data
    entries += [(f"blobs/sha256/{d[7:]}", data) for d, data in sorted(blobs.items())]
    entries.append(("index.json", json.dumps({"schemaVersion": 2, "manifests": index_entries}).encode()))
    return make_tar(entries)


def manifest_entry(b: Built, **annotations: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "mediaType": DOCKER_MANIFEST,
        "digest": b.manifest_digest,
        "size": len(b.manifest),
    }
    if annotations:
        entry["annotations"] = {k.replace("_", "."): v for k, v in annotations.items()}
    return entry


def test_load_oci_layout_with_nested_index_and_names(tmp_path: Path) -> None:
    amd, arm = build_image([BASE]), build_image([BASE], arch="arm64")
    solo = build_image([APP])
    nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**manifest_entry(arm), "platform": {"os": "linux", "architecture": "arm64"}},
        {**manifest_entry(amd), "platform": {"os": "linux", "architecture": "amd64"}},
    ]}).encode()  # fmt: skip
    index_entries = [
        {"mediaType": OCI_INDEX, "digest": sha256(nested), "size": len(nested), "_blob": nested,
         "annotations": {"io.containerd.image.name": "docker.io/library/multi:1",
                         "org.opencontainers.image.ref.name": "1"}},
        manifest_entry(solo, org_opencontainers_image_ref_name="localhost:5000/solo:v2"),
        manifest_entry(solo, org_opencontainers_image_ref_name="bare"),
        {"mediaType": "application/vnd.in-toto+json", "digest": sha256(b"x"), "size": 1},  # not an image
    ]  # fmt: skip
    data = oci_layout({"amd": amd, "arm": arm, "solo": solo}, index_entries)
    svc = make_service(tmp_path / "root")
    loaded = svc.load(io.BytesIO(data))
    assert set(loaded.images) == {
        LoadedImage(id=amd.id, tags=("multi:1",)), LoadedImage(id=solo.id, tags=("localhost:5000/solo:v2",)),
    }  # fmt: skip
    assert svc.store.get(amd.id).index == sha256(nested)
    assert svc.store.get(amd.id).manifests == (amd.manifest_digest,)
    assert arm.id not in {i["Id"] for i in svc.images()}  # only the host's platform
    other = make_service(tmp_path / "other")
    named = other.load(io.BytesIO(data), name="example.com/base")
    assert {t for image in named.images for t in image.tags} == {"multi:1", "localhost:5000/solo:v2",
                                                                 "example.com/base:bare"}  # fmt: skip


def test_load_oci_layout_without_names(tmp_path: Path) -> None:
    solo = build_image([APP])
    svc = make_service(tmp_path / "root")
    loaded = svc.load(io.BytesIO(oci_layout({"solo": solo}, [manifest_entry(solo)])))
    assert loaded.messages == (f"Loaded image ID: {solo.id}",)
    assert svc.images()[0]["RepoTags"] == []


# ---- broken and hostile archives -----------------------------------------------------------------------


def _docker25(mutate: Any) -> bytes:
    data, _, _ = docker_25_archive()
    files = members(data)
    entries = [(k, v) for k, v in files.items() if v is not None]
    return mutate(entries)


def _replace(name_part: str, new: Any) -> Any:
    def mutate(entries: list[tuple[str, Any]]) -> bytes:
        return make_tar([(k, new(k, v) if name_part in k else v) for k, v in entries])

    return mutate


def _manifest_json(change: Any) -> Any:
    def mutate(entries: list[tuple[str, Any]]) -> bytes:
        out = []
        for k, v in entries:
            if k == "manifest.json":
                items = json.loads(v)
                change(items[0])
                v = json.dumps(items).encode()
            out.append((k, v))
        return make_tar(out)

    return mutate


def _drop_layer(entries: list[tuple[str, Any]]) -> bytes:
    manifest = json.loads(dict(entries)["manifest.json"])
    victim = manifest[0]["Layers"][1]
    return make_tar([(k, v) for k, v in entries if k != victim])


def _hostile_layer(entries: list[tuple[str, Any]]) -> bytes:
    evil = tar_bytes([E("../evil", data=b"x")])
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(evil)]}}).encode()  # fmt: skip
    manifest = [{"Config": "c.json", "RepoTags": ["evil:1"], "Layers": ["l.tar"]}]
    return make_tar([("c.json", config), ("l.tar", evil), ("manifest.json", json.dumps(manifest).encode())])


def _bad_diff_id(entries: list[tuple[str, Any]]) -> bytes:
    layer = tar_bytes(BASE)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(b"not it")]}}).encode()  # fmt: skip
    manifest = [{"Config": "c.json", "RepoTags": ["bad:1"], "Layers": ["l.tar"]}]
    return make_tar([("c.json", config), ("l.tar", layer), ("manifest.json", json.dumps(manifest).encode())])


BROKEN = [
    ("blob-digest", _docker25(_replace("blobs/sha256/", lambda k, v: v[:-1] + b"!")), "digest mismatch"),
    ("truncated", _docker25(lambda e: make_tar(e)[:3000]), "archive is not a valid tar file"),
    ("missing-layer", _docker25(_drop_layer), "is not a file in the archive"),
    (
        "path-escape",
        _docker25(_manifest_json(lambda m: m.update(Config="../../etc/passwd"))),
        "leaves the archive",
    ),
    (
        "length",
        _docker25(_manifest_json(lambda m: m["Layers"].pop())),
        "layers length mismatch: expected 1, got 2",
    ),
    ("bad-tag", _docker25(_manifest_json(lambda m: m.update(RepoTags=["UPPER:1"]))), "must be lowercase"),
    (
        "not-json",
        _docker25(_replace("manifest.json", lambda k, v: b"{nope")),
        "manifest.json: malformed JSON",
    ),
    ("null", _docker25(_replace("manifest.json", lambda k, v: b"null")), "manifest cannot be null"),
    ("hostile-layer", _docker25(_hostile_layer), "layer entry '../evil' refused"),
    ("diff-id", _docker25(_bad_diff_id), "diff ID mismatch"),
    ("empty", make_tar([("hello.txt", b"hi")]), "neither manifest.json"),
    ("not-a-tar", b"this is not a tar archive at all" * 40, "not a valid tar file"),
    ("escape-entry", make_tar([("../../x", b"x")]), "archive entry '../../x' refused"),
]


@pytest.mark.parametrize(("case", "data", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_archive_changes_nothing(svc: ImageService, case: str, data: bytes, message: str) -> None:
    before = everything(svc)
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        svc.load(io.BytesIO(data))
    assert everything(svc) == before


def test_broken_oci_layouts_change_nothing(svc: ImageService) -> None:
    solo = build_image([APP])
    cases = [
        (oci_layout({"solo": solo}, [{**manifest_entry(solo), "size": 3}]), "the descriptor says 3"),
        (oci_layout({}, [manifest_entry(solo)]), f"blob {solo.manifest_digest} is missing from the archive"),
        (make_tar([("index.json", b"{}")]), "no oci-layout file"),
        (make_tar([("index.json", b"[]"), ("oci-layout", b"{}")]), "imageLayoutVersion is missing"),
    ]
    for data, message in cases:
        before = everything(svc)
        with pytest.raises(InvalidArgument, match=message):
            svc.load(io.BytesIO(data))
        assert everything(svc) == before


# ---- import and export ---------------------------------------------------------------------------------


def test_import_makes_a_one_layer_image_like_docker(svc: ImageService) -> None:
    rootfs = tar_bytes(BASE)
    changes = ['CMD ["/bin/sh"]', "ENV A=1 B=$A", "EXPOSE 80 53/udp", "LABEL x=y", "WORKDIR /srv",
               "USER nobody", "VOLUME /data", "STOPSIGNAL SIGINT"]  # fmt: skip
    image_id = svc.import_tarball(io.BytesIO(gz(rootfs)), "imported:1", changes)
    config = json.loads(svc.content.read_bytes(image_id))
    assert list(config) == ["comment", "created", "config", "architecture", "os", "rootfs", "history"]
    assert config["comment"] == "Imported from -"
    assert config["history"] == [{"created": config["created"], "comment": "Imported from -"}]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(rootfs)]}
    assert config["config"]["Cmd"] == ["/bin/sh"] and config["config"]["Env"] == ["A=1", "B="]
    assert config["config"]["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert (config["config"]["WorkingDir"], config["config"]["User"]) == ("/srv", "nobody")
    assert config["config"]["Volumes"] == {"/data": {}} and config["config"]["StopSignal"] == "SIGINT"
    assert list(config["config"])[:3] == ["Hostname", "Domainname", "User"]
    info = svc.inspect("imported:1")
    assert info["Id"] == image_id and info["Comment"] == "Imported from -"
    assert svc.history("imported:1")[0]["Comment"] == "Imported from -"
    assert svc.import_tarball(io.BytesIO(rootfs), message="mine") != image_id


@pytest.mark.parametrize(
    ("data", "changes", "message"),
    [
        (tar_bytes(BASE), ["FROM busybox"], "from is not a valid change command"),
        (tar_bytes(BASE), ["EXPOSE eighty"], "invalid containerPort: eighty"),
        (gz(tar_bytes(BASE))[:-20], [], "corrupt or truncated"),
        (b"not a tar" * 100, [], "not a valid tar archive"),
        (tar_bytes([E("../x", data=b"x")]), [], "refused"),
    ],
)
def test_bad_import_changes_nothing(svc: ImageService, data: bytes, changes: list[str], message: str) -> None:
    before = everything(svc)
    with pytest.raises(InvalidArgument, match=message):
        svc.import_tarball(io.BytesIO(data), "x:1", changes)
    assert everything(svc) == before


def test_import_refuses_a_digest_reference(svc: ImageService) -> None:
    with pytest.raises(InvalidArgument, match="cannot import digest reference"):
        svc.import_tarball(io.BytesIO(tar_bytes(BASE)), "x@sha256:" + "a" * 64)


def test_export_flattens_the_layers(svc: ImageService) -> None:
    out = io.BytesIO()
    svc.export_image("busybox", out)
    files = members(out.getvalue())
    assert files["app/run"] == b"run" * 100 and files["bin/sh"] == b"#!shell" * 10
    assert "etc/passwd" not in files and "etc" in files
    assert not any(name.startswith("./") or ".wh." in name for name in files)
    assert svc.snapshotter.walk(kind=None) and all(
        not i.name.startswith("export-") for i in svc.snapshotter.walk()
    )


@pytest.mark.skipif(not ROOT, reason="overlay whiteouts and opaque directories need root to unpack")
def test_export_merges_overlay_lowers(tmp_path: Path) -> None:
    from ketch.image.snapshots import OverlaySnapshotter

    registry = FakeRegistry()
    built = build_image([
        [E("d", "dir"), E("d/old", data=b"o"), E("keep", data=b"k"), E("gone", data=b"g"), E("x", "dir"),
         E("x/lower", data=b"l")],
        [E("d", "dir"), E("d/.wh..wh..opq"), E("d/new", data=b"n"), E(".wh.gone"), E("x", "dir"),
         E("x/upper", data=b"u")],
    ])  # fmt: skip
    registry.add("docker.io/library/layered:latest", built)
    svc = ImageService(str(tmp_path), snapshotter=OverlaySnapshotter(str(tmp_path)), registry=registry)
    svc.pull("layered", platform="linux/amd64")
    out = io.BytesIO()
    svc.export_image("layered", out)
    files = members(out.getvalue())
    assert sorted(files) == ["d", "d/new", "keep", "x", "x/lower", "x/upper"]


# ---- change lines --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (["CMD echo hi"], {"Cmd": ["/bin/sh", "-c", "echo hi"]}),
        (['ENTRYPOINT ["top", "-b"]'], {"Entrypoint": ["top", "-b"], "Cmd": None}),
        (["CMD x", "ENTRYPOINT y"], {"Cmd": ["/bin/sh", "-c", "x"], "Entrypoint": ["/bin/sh", "-c", "y"]}),
        (['ENV A="a b" C=c\\ d'], {"Env": ["A=a b", "C=c d"]}),
        (["ENV A 1 2"], {"Env": ["A=1 2"]}),
        (["ENV A=1", "ENV B=${A}x C=${NOPE:-dflt} D='$A'"], {"Env": ["A=1", "B=1x", "C=dflt", "D=$A"]}),
        (["ENV A=1", "ENV A=2"], {"Env": ["A=2"]}),
        (['LABEL a=b "c d"=e'], {"Labels": {"a": "b", "c d": "e"}}),
        (["EXPOSE 8000-8002/udp"], {"ExposedPorts": {"8000/udp": {}, "8001/udp": {}, "8002/udp": {}}}),
        (["WORKDIR /a", "WORKDIR b", "WORKDIR ../c"], {"WorkingDir": "/a/c"}),
        (['VOLUME ["/a", "/b"]', "VOLUME /c /d"], {"Volumes": {"/a": {}, "/b": {}, "/c": {}, "/d": {}}}),
        (["onbuild run make"], {"OnBuild": ["RUN make"]}),
        (
            ["HEALTHCHECK --interval=5s --retries=3 CMD curl -f x"],
            {"Healthcheck": {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 5_000_000_000, "Retries": 3}},
        ),
        (["HEALTHCHECK NONE"], {"Healthcheck": {"Test": ["NONE"]}}),
        (["STOPSIGNAL 9"], {"StopSignal": "9"}),
    ],
)
def test_change_lines(changes: list[str], expected: dict[str, Any]) -> None:
    config = apply_changes(full_container_config({}), changes)
    for key, value in expected.items():
        assert config[key] == value, key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("RUN make", "run is not a valid change command"),
        ("STOPSIGNAL SIGNOPE", "Invalid signal: SIGNOPE"),
        ("VOLUME ['']", None),
        ('VOLUME [""]', "VOLUME specified can not be an empty string"),
        ("ENV A=1 B", 'can\'t find = in "B"'),
        ('ENV A="open', 'matching "'),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD"),
        ("USER a b", "USER requires exactly one argument"),
        ("EXPOSE 9-1", "invalid range"),
    ],
)
def test_bad_change_lines(change: str, message: str | None) -> None:
    config = full_container_config({})
    if message is None:
        apply_changes(config, [change])  # a literal "['']" is a path, not a JSON list
        return
    with pytest.raises(InvalidArgument, match=message):
        apply_changes(config, ["ENV KEEP=1", change])
    assert config == full_container_config({})


def test_exports() -> None:
    import ketch.image.archive as archive
    import ketch.image.archive_read as archive_read
    import ketch.image.changes as changes
    import ketch.image.gc as gc

    assert sorted(archive.__all__) == [
        "Loaded",
        "LoadedImage",
        "export_image",
        "import_tarball",
        "load",
        "save",
    ]
    assert sorted(archive_read.__all__) == [
        "FoundImage", "IMAGE_NAME", "REF_NAME", "Staged", "blob_path", "docker_images", "ingest",
        "matching_manifests", "oci_images", "stage", "write_manifest",
    ]  # fmt: skip
    assert changes.__all__ == ["apply_changes"]
    assert sorted(gc.__all__) == ["GCReport", "collect", "pinned"]
    assert DOCKER_LAYER.endswith("diff.tar")


def test_metadata_past_the_memory_budget_goes_through_the_content_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ketch.image.archive_read as archive_read

    monkeypatch.setattr(archive_read, "_MEMORY", 0)
    svc = make_service(tmp_path / "root")
    data, image_id, diff_ids = docker_20_archive()
    assert svc.load(io.BytesIO(data)).images[0].id == image_id
    rec = svc.store.get(image_id)
    assert set(svc.content.list_digests()) == {image_id, rec.manifests[0], *diff_ids}


def test_load_docker_save_from_the_containerd_store_finds_nested_manifests(tmp_path: Path) -> None:
    """Docker 25+ on the containerd store: index.json names an image index holding the manifest and an
    attestation; manifest.json points at the compressed layer blobs."""
    built = build_image([BASE, APP])
    attestation = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                              "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                         "digest": sha256(b"{}"), "size": 2}}).encode()  # fmt: skip
    nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": built.manifest_digest, "size": len(built.manifest),
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": sha256(attestation), "size": len(attestation),
         "platform": {"os": "unknown", "architecture": "unknown"}},
    ]}).encode()  # fmt: skip
    layers = [sha256(b) for b in built.layers]
    entries: list[tuple[str, Any]] = [(f"blobs/sha256/{d[7:]}", b) for d, b in built.blobs.items()]
    entries += [(f"blobs/sha256/{sha256(b)[7:]}", b) for b in (attestation, b"{}", nested)]
    entries += [
        ("index.json", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_INDEX, "digest": sha256(nested), "size": len(nested),
             "annotations": {"io.containerd.image.name": "docker.io/library/c8d:1"}}]}).encode()),
        ("manifest.json", json.dumps([{"Config": f"blobs/sha256/{built.id[7:]}", "RepoTags": ["c8d:1"],
                                       "Layers": [f"blobs/sha256/{d[7:]}" for d in layers]}]).encode()),
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
    ]  # fmt: skip
    svc = make_service(tmp_path / "root")
    assert svc.load(io.BytesIO(make_tar(entries))).images == (LoadedImage(id=built.id, tags=("c8d:1",)),)
    rec = svc.store.get(built.id)
    assert (rec.manifests, rec.index) == ((built.manifest_digest,), sha256(nested))
    assert set(svc.content.list_digests()) == set(built.blobs) | {sha256(nested)}

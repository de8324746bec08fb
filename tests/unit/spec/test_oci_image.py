"""Manifests, indexes, configs and platforms: parsing the fixtures, rejecting bad input, writing canonical bytes."""

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ketch.common.errors import InvalidArgument, NotFound, Unsupported
from ketch.spec import oci_image as oci
from ketch.spec.oci_image import (
    ContainerConfig,
    Descriptor,
    Healthcheck,
    History,
    ImageConfig,
    Index,
    Manifest,
    canonical_json,
    chain_id,
    chain_ids,
    detect,
    image_id,
    parse_any,
    parse_config,
    parse_index,
    parse_manifest,
    select_manifest,
)
from ketch.spec.platform import (
    Platform,
    PlatformMatcher,
    compatible_platforms,
    host_platform,
    normalize_arch,
    parse_platform,
)

DATA = Path(__file__).resolve().parents[2] / "testdata" / "manifests"
A64, B64, C64 = "sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def doc(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


# ---- fixtures ------------------------------------------------------------------------------------------


def test_docker_manifest_list() -> None:
    index = parse_index(fixture("docker_manifest_list.json"))
    assert index.media_type == oci.DOCKER_MANIFEST_LIST and index.flavour == "docker"
    assert [str(m.platform) for m in index.manifests] == [
        "linux/amd64", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm64/v8", "linux/386",
        "linux/ppc64le", "linux/riscv64", "linux/s390x",
    ]  # fmt: skip
    assert all(m.media_type == oci.DOCKER_MANIFEST and m.size == 527 for m in index.manifests)
    assert index.manifests[0].digest == sha("busybox-amd64-None")
    # Docker's deprecated platform "features" is not modelled, but a rewrite keeps it, in its place.
    written = index.to_json()
    assert written == json.loads(fixture("docker_manifest_list.json"))
    assert list(written["manifests"][0]["platform"]) == ["architecture", "os", "features"]


def test_oci_index_with_attestations_and_unknown_fields() -> None:
    raw = fixture("oci_index.json")
    index = parse_index(raw, "application/vnd.oci.image.index.v1+json; charset=utf-8")
    assert index.media_type == oci.OCI_INDEX and len(index.manifests) == 8
    attestation = index.manifests[5]
    assert attestation.platform == Platform("unknown", "unknown")
    assert attestation.annotations["vnd.docker.reference.type"] == "attestation-manifest"
    assert index.manifests[7].platform is None
    assert index.annotations == {"org.opencontainers.image.ref.name": "1.0"}
    # Writing it back keeps what ketch does not model, and changes nothing else.
    assert index.to_json() == json.loads(raw)
    assert parse_index(index.to_bytes()) == index


def test_docker_manifest() -> None:
    manifest = parse_manifest(fixture("docker_manifest.json"), oci.DOCKER_MANIFEST)
    assert manifest.flavour == "docker"
    assert manifest.config == Descriptor(media_type=oci.DOCKER_CONFIG, digest=sha("docker-config"), size=1472)
    assert [oci.LAYER_COMPRESSION[layer.media_type] for layer in manifest.layers] == ["gzip", "gzip", "gzip"]
    foreign = manifest.layers[2]
    assert foreign.media_type in oci.NONDISTRIBUTABLE_TYPES
    assert foreign.urls == ("https://example.com/layer.tar.gz",)
    assert manifest.to_json() == json.loads(fixture("docker_manifest.json"))


def test_oci_manifest_without_media_type_keeps_unknown_fields() -> None:
    raw = fixture("oci_manifest.json")
    assert detect(raw) == oci.OCI_MANIFEST
    manifest = parse_manifest(raw)
    assert manifest.media_type == oci.OCI_MANIFEST
    assert [oci.LAYER_COMPRESSION[layer.media_type] for layer in manifest.layers] == ["gzip", "zstd", "gzip"]
    assert manifest.layers[0].annotations == {"org.opencontainers.image.title": "base.tar.gz"}
    written = manifest.to_json()
    original = json.loads(raw)
    # The one field writing adds: image-spec 1.1 wants mediaType set.
    assert written.pop("mediaType") == oci.OCI_MANIFEST
    assert written == original
    assert written["layers"][1]["x-vendor-extension"] is True and written["x-unknown-top"] == "kept"


def test_oci_artifact_with_embedded_data_and_subject() -> None:
    manifest = parse_manifest(fixture("oci_artifact.json"))
    assert manifest.artifact_type == "application/vnd.example.sbom.v1+json"
    assert manifest.config.media_type == oci.OCI_EMPTY and manifest.config.data == b"{}"
    assert manifest.subject is not None and manifest.subject.digest == sha("app-amd64-None")
    assert parse_manifest(manifest.to_bytes()) == manifest
    with pytest.raises(InvalidArgument, match="cannot be written as Docker schema2"):
        manifest.converted("docker")


@pytest.mark.parametrize("parse", [parse_manifest, parse_index, parse_any, detect])
def test_schema1_is_refused(parse: Any) -> None:
    with pytest.raises(Unsupported, match="schema 1") as info:
        parse(fixture("schema1.json"))
    assert "schema 2" in str(info.value)
    # The Content-Type alone is enough, whatever the body says.
    with pytest.raises(Unsupported, match="schema 1"):
        parse(fixture("docker_manifest.json"), oci.DOCKER_SCHEMA1_SIGNED)


@pytest.mark.parametrize(
    "name,error,message",
    [
        ("malformed.json", InvalidArgument, "invalid manifest: malformed JSON: "),
        ("wrong_types.json", InvalidArgument, "manifest.config.size: expected an integer, got a string"),
        ("missing_config.json", InvalidArgument, "manifest.config is missing"),
        ("bad_digest.json", InvalidArgument, "manifest.layers[0].digest: invalid checksum digest format ('sha256:AAA"),
        ("unknown_media_type.json", Unsupported,
         "unsupported manifest media type application/vnd.example.custom.manifest.v1+json"),
        ("oci_index.json", InvalidArgument, "expected an image manifest, got an index (application/vnd.oci.image"),
    ],
)  # fmt: skip
def test_bad_manifest_fixtures(name: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        parse_manifest(fixture(name))
    assert str(info.value).startswith(message)


def test_parse_index_refuses_a_manifest() -> None:
    with pytest.raises(
        InvalidArgument, match=r"expected an index, got an image manifest \(application/vnd.docker"
    ):
        parse_index(fixture("docker_manifest.json"))
    assert isinstance(parse_any(fixture("docker_manifest.json")), Manifest)
    assert isinstance(parse_any(fixture("docker_manifest_list.json")), Index)


CONFIG = {"mediaType": oci.OCI_CONFIG, "digest": A64, "size": 2}
LAYER = {"mediaType": oci.OCI_LAYER_GZIP, "digest": B64, "size": 3}


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"config": CONFIG, "layers": []}, "manifest.schemaVersion is missing"),
        ({"schemaVersion": 3, "config": CONFIG, "layers": []}, "manifest.schemaVersion: expected 2, got 3"),
        ({"schemaVersion": True, "config": CONFIG, "layers": []}, "manifest.schemaVersion: expected 2, got true"),
        ({"schemaVersion": 2, "config": CONFIG}, "manifest.layers is missing"),
        ({"schemaVersion": 2, "config": CONFIG, "layers": {}}, "manifest.layers: expected a list, got an object"),
        ({"schemaVersion": 2, "config": CONFIG, "layers": ["x"]},
         "manifest.layers[0]: expected an object, got a string"),
        ({"schemaVersion": 2, "config": {**CONFIG, "size": -1}, "layers": []},
         "manifest.config.size is missing or out of range"),
        ({"schemaVersion": 2, "config": {**CONFIG, "size": 1 << 63}, "layers": []},
         "manifest.config.size is missing or out of range"),
        ({"schemaVersion": 2, "config": {**CONFIG, "size": True}, "layers": []},
         "manifest.config.size: expected an integer, got a boolean"),
        ({"schemaVersion": 2, "config": {**CONFIG, "size": 1.5}, "layers": []},
         "manifest.config.size: expected an integer, got a number"),
        ({"schemaVersion": 2, "config": {"digest": A64, "size": 1}, "layers": []},
         "manifest.config.mediaType is missing"),
        ({"schemaVersion": 2, "config": {"mediaType": oci.OCI_CONFIG, "size": 1}, "layers": []},
         "manifest.config.digest is missing"),
        ({"schemaVersion": 2, "config": {**CONFIG, "digest": 5}, "layers": []},
         "manifest.config.digest: expected a digest string, got a number"),
        ({"schemaVersion": 2, "config": CONFIG, "layers": [{**LAYER, "digest": "md5:" + "a" * 32}]},
         "manifest.layers[0].digest: unsupported digest algorithm ('md5:"),
        ({"schemaVersion": 2, "config": CONFIG, "layers": [{**LAYER, "annotations": {"a": 1}}]},
         "manifest.layers[0].annotations['a']: expected a string, got a number"),
        ({"schemaVersion": 2, "config": CONFIG, "layers": [{**LAYER, "urls": [None]}]},
         "manifest.layers[0].urls[0]: expected a string, got null"),
        ({"schemaVersion": 2, "config": {**CONFIG, "platform": {"os": "linux"}}, "layers": []},
         "manifest.config.platform.architecture is missing"),
        ({"schemaVersion": 2, "config": {**CONFIG, "data": "e30="}, "layers": []},
         "manifest.config.data does not match the descriptor's digest and size"),
        ({"schemaVersion": 2, "config": {**CONFIG, "data": "%%%"}, "layers": []},
         "manifest.config.data: not valid base64"),
        ({"schemaVersion": 2, "mediaType": 7, "config": CONFIG, "layers": []},
         "manifest.mediaType: expected a string, got a number"),
        ({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "manifests": [], "config": CONFIG, "layers": []},
         "invalid manifest: media type application/vnd.oci.image.manifest.v1+json is a manifest, but the document"),
    ],
)  # fmt: skip
def test_manifest_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_manifest(doc(**fields))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"[]", "invalid manifest: expected a JSON object, got a list"),
        (b"", "invalid manifest: malformed JSON"),
        (b"\xff\xfe", "invalid manifest: malformed JSON"),
        (b"{}", "invalid manifest: no mediaType, and neither 'manifests' nor 'config'/'layers'"),
        (
            b" " * (oci.MAX_MANIFEST_SIZE + 1),
            f"invalid manifest: {oci.MAX_MANIFEST_SIZE + 1} bytes is more than",
        ),
    ],
)
def test_detect_rejects_non_manifests(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        detect(data)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "fields,content_type,expected",
    [
        ({"mediaType": oci.DOCKER_MANIFEST, "layers": []}, None, oci.DOCKER_MANIFEST),
        ({"mediaType": oci.DOCKER_MANIFEST, "layers": []}, "application/json", oci.DOCKER_MANIFEST),
        ({"mediaType": oci.OCI_INDEX, "manifests": []}, oci.OCI_INDEX, oci.OCI_INDEX),
        ({"layers": []}, oci.DOCKER_MANIFEST, oci.DOCKER_MANIFEST),
        ({"manifests": []}, "application/vnd.docker.distribution.manifest.list.v2+json", oci.DOCKER_MANIFEST_LIST),
        ({"manifests": []}, None, oci.OCI_INDEX),
        ({"manifests": []}, "text/plain; charset=utf-8", oci.OCI_INDEX),
        ({"config": {}}, "application/octet-stream", oci.OCI_MANIFEST),
        ({"layers": []}, "", oci.OCI_MANIFEST),
    ],
)  # fmt: skip
def test_detect(fields: dict[str, Any], content_type: str | None, expected: str) -> None:
    assert detect(doc(schemaVersion=2, **fields), content_type) == expected


def test_detect_errors_name_the_types() -> None:
    with pytest.raises(InvalidArgument, match=re.escape(f"Content-Type is {oci.OCI_MANIFEST}, mediaType is")):
        detect(doc(schemaVersion=2, mediaType=oci.DOCKER_MANIFEST, layers=[]), oci.OCI_MANIFEST)
    with pytest.raises(
        Unsupported, match=r"unsupported manifest media type application/vnd\.example\.thing$"
    ):
        detect(doc(schemaVersion=2, layers=[]), "application/vnd.example.thing")
    with pytest.raises(Unsupported, match=re.escape(f"unsupported manifest media type {oci.OCI_CONFIG}")):
        detect(doc(schemaVersion=2, mediaType=oci.OCI_CONFIG))
    with pytest.raises(InvalidArgument, match="is an index, but the document has layers"):
        detect(doc(schemaVersion=2, mediaType=oci.OCI_INDEX, layers=[]))


# ---- writing -------------------------------------------------------------------------------------------


def test_canonical_bytes_are_stable() -> None:
    layer = Descriptor(media_type=oci.OCI_LAYER_GZIP, digest=B64, size=42, annotations={"z": "1", "a": "<&>"})
    manifest = Manifest(
        media_type=oci.OCI_MANIFEST,
        config=Descriptor(media_type=oci.OCI_CONFIG, digest=A64, size=7),
        layers=(layer,),
    )
    expected = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{A64}","size":7}},'
        f'"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{B64}","size":42,'
        '"annotations":{"a":"\\u003c\\u0026\\u003e","z":"1"}}]}'
    ).encode()
    assert manifest.to_bytes() == expected
    again = parse_manifest(expected)
    assert again == manifest and again.to_bytes() == expected
    assert oci.digest_of(expected) == "sha256:" + hashlib.sha256(expected).hexdigest()


def test_canonical_json_escapes_like_go() -> None:
    assert canonical_json({"k": "é\u2028<"}) == '{"k":"é\\u2028\\u003c"}'.encode()
    assert canonical_json(json.loads('{"k": "\\ud800"}')) == b'{"k":"\\ud800"}'
    with pytest.raises(ValueError):
        canonical_json({"k": float("nan")})


def test_flavour_conversion() -> None:
    manifest = parse_manifest(fixture("docker_manifest.json"))
    as_oci = manifest.converted("oci")
    assert as_oci.media_type == oci.OCI_MANIFEST and as_oci.config.media_type == oci.OCI_CONFIG
    assert [layer.media_type for layer in as_oci.layers] == [
        oci.OCI_LAYER_GZIP, oci.OCI_LAYER_GZIP, oci.OCI_LAYER_ND_GZIP,
    ]  # fmt: skip
    assert [layer.digest for layer in as_oci.layers] == [layer.digest for layer in manifest.layers]
    assert as_oci.converted("docker") == manifest
    assert parse_manifest(as_oci.to_bytes()).media_type == oci.OCI_MANIFEST

    zstd_nd = replace(as_oci, layers=(Descriptor(media_type=oci.OCI_LAYER_ND_ZSTD, digest=A64, size=1),))
    with pytest.raises(InvalidArgument, match="no Docker schema2 equivalent"):
        zstd_nd.converted("docker")
    assert oci.to_flavour("application/vnd.in-toto+json", "docker") == "application/vnd.in-toto+json"
    assert oci.to_flavour(oci.DOCKER_LAYER_ZSTD, "oci") == oci.OCI_LAYER_ZSTD

    index = parse_index(fixture("docker_manifest_list.json")).converted("oci")
    assert index.media_type == oci.OCI_INDEX
    assert index.manifests[0].media_type == oci.DOCKER_MANIFEST  # children keep their own descriptors


def test_descriptor_of_blob() -> None:
    blob = b'{"architecture":"amd64"}'
    desc = Descriptor.of(oci.OCI_CONFIG, blob, annotations={"k": "v"})
    assert (desc.digest, desc.size) == (oci.digest_of(blob), len(blob))
    assert desc.to_json() == {
        "mediaType": oci.OCI_CONFIG,
        "digest": desc.digest,
        "size": 24,
        "annotations": {"k": "v"},
    }


# ---- image config --------------------------------------------------------------------------------------


def test_docker_config() -> None:
    raw = fixture("docker_config.json")
    config = parse_config(raw)
    assert config.platform == Platform("linux", "arm64", "v8", "", ("x-test",))
    assert config.created == "2024-05-01T10:00:00.123456789Z" and config.author == "ketch tests"
    c = config.config
    assert c.user == "app:app" and c.working_dir == "/srv" and c.stop_signal == "SIGQUIT"
    assert c.exposed_ports == ("53/udp", "8080/tcp") and c.volumes == ("/data",)
    assert c.env[1] == "APP=1" and c.cmd == ("--serve",) and c.entrypoint == ("/usr/bin/app",)
    assert c.on_build == ("RUN echo child",) and c.shell == ("/bin/ash", "-c") and c.args_escaped
    assert c.labels == {"org.example.a": "1", "org.example.b": "2"}
    assert c.healthcheck == Healthcheck(
        test=("CMD-SHELL", "wget -qO- localhost:8080 || exit 1"),
        interval=30_000_000_000, timeout=5_000_000_000, start_period=10_000_000_000, retries=3,
    )  # fmt: skip
    assert config.diff_ids == (sha("diff1"), sha("diff2"))
    assert [h.empty_layer for h in config.history] == [False, True, False, True]
    assert config.history[2] == History(
        created="2024-05-01T10:00:00Z", created_by="RUN /bin/sh -c apk add app # buildkit",
        comment="buildkit.dockerfile.v0", author="someone",
    )  # fmt: skip
    # Docker's own fields (container, docker_version, Hostname, ...) and unknown ones survive a rewrite.
    written = config.to_json()
    assert written == json.loads(raw)
    assert list(written["config"]["Labels"]) == ["org.example.a", "org.example.b"]  # Go sorts map keys
    assert parse_config(config.to_bytes()) == config


def test_oci_config_tells_null_from_empty() -> None:
    config = parse_config(fixture("oci_config.json"))
    assert config.config.entrypoint == () and config.config.cmd is None and config.diff_ids == ()
    written = config.to_json()
    assert written["config"] == {"Env": ["PATH=/bin"], "Entrypoint": []}
    assert config.chain_ids() == []


def test_image_id_is_the_digest_of_the_stored_bytes() -> None:
    raw = fixture("docker_config.json")
    assert image_id(raw) == "sha256:" + hashlib.sha256(raw).hexdigest()
    # The same config written differently is a different image, as in Docker.
    assert image_id(raw) != image_id(parse_config(raw).to_bytes())


def test_build_config_from_scratch() -> None:
    config = ImageConfig(
        architecture="amd64", os="linux", created="2024-01-01T00:00:00Z", diff_ids=(A64,),
        config=ContainerConfig(env=("PATH=/bin",), cmd=("sh",), exposed_ports=("80/tcp",)),
        history=(History(created="2024-01-01T00:00:00Z", created_by="ketch import"),),
    )  # fmt: skip
    expected = (
        '{"architecture":"amd64","config":{"ExposedPorts":{"80/tcp":{}},"Env":["PATH=/bin"],"Cmd":["sh"]},'
        '"created":"2024-01-01T00:00:00Z",'
        '"history":[{"created":"2024-01-01T00:00:00Z","created_by":"ketch import"}],'
        f'"os":"linux","rootfs":{{"type":"layers","diff_ids":["{A64}"]}}}}'
    )
    assert config.to_bytes() == expected.encode()
    assert parse_config(config.to_bytes()) == config


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"architecture": "amd64", "os": "linux"}, "config.rootfs is missing"),
        ({"architecture": "amd64", "os": "linux", "rootfs": []}, "config.rootfs: expected an object"),
        ({"architecture": "amd64", "os": "linux", "rootfs": {"type": "tar"}},
         "config.rootfs.type: expected 'layers', got \"tar\""),
        ({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:1"]}},
         "config.rootfs.diff_ids[0]: invalid checksum digest length"),
        ({"os": "linux", "rootfs": {"type": "layers"}}, "config.architecture is missing"),
        ({"architecture": "amd64", "os": 1, "rootfs": {"type": "layers"}},
         "config.os: expected a string, got a number"),
        ({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "config": {"Env": "A=1"}},
         "config.config.Env: expected a list, got a string"),
        ({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "config": {"Cmd": ["a", 1]}},
         "config.config.Cmd[1]: expected a string, got a number"),
        ({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "config": {"ExposedPorts": {"80": 1}}},
         "config.config.ExposedPorts['80']: expected an object, got a number"),
        ({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"},
          "config": {"Healthcheck": {"Interval": "30s"}}}, "config.config.Healthcheck.Interval: expected an integer"),
        ({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "history": [{"empty_layer": "yes"}]},
         "config.history[0].empty_layer: expected a boolean, got a string"),
        ({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "config": []},
         "config.config: expected an object, got a list"),
    ],
)  # fmt: skip
def test_config_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_config(doc(**fields))
    assert str(info.value).startswith(message)


def test_chain_ids() -> None:
    diffs = [sha("one"), sha("two"), sha("three")]
    second = "sha256:" + hashlib.sha256(f"{diffs[0]} {diffs[1]}".encode()).hexdigest()
    third = "sha256:" + hashlib.sha256(f"{second} {diffs[2]}".encode()).hexdigest()
    assert chain_ids(diffs) == [diffs[0], second, third]
    assert chain_id(diffs) == third and chain_id(diffs[:1]) == diffs[0] and chain_id([]) == ""
    # A chain ID depends on order and on every layer below.
    assert chain_id([diffs[1], diffs[0], diffs[2]]) != third
    assert chain_ids(diffs[:2]) == chain_ids(diffs)[:2]


# ---- platforms -----------------------------------------------------------------------------------------


AMD64 = Platform("linux", "amd64")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("linux/amd64/v3", Platform("linux", "amd64", "v3")),
        ("linux/amd64/v1", Platform("linux", "amd64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm64/8", Platform("linux", "arm64", "v8")),
        ("linux/aarch64/v8.2", Platform("linux", "arm64", "v8.2")),
        ("linux/arm", Platform("linux", "arm")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("linux/arm/7", Platform("linux", "arm", "v7")),
        ("linux/armhf", Platform("linux", "arm")),
        ("linux/armel", Platform("linux", "arm", "v6")),
        ("linux/arm/6", Platform("linux", "arm", "v6")),
        ("linux/i386", Platform("linux", "386")),
        ("macos/arm64", Platform("darwin", "arm64")),
        ("windows(10.0.17763)/amd64", Platform("windows", "amd64", "", "10.0.17763")),
        ("windows(10.0.17763+win32k)/amd64", Platform("windows", "amd64", "", "10.0.17763", ("win32k",))),
        ("linux", Platform("linux", "amd64")),
        ("arm64", Platform("linux", "arm64")),
        ("armhf", Platform("linux", "arm")),
        ("s390x", Platform("linux", "s390x")),
    ],
)
def test_parse_platform(text: str, expected: Platform) -> None:
    assert parse_platform(text, host=AMD64) == expected


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "is not a valid OS component"),
        ("linux/*", "wildcards are not supported"),
        ("linux/amd64/v1/x", "too many components"),
        ("linux//amd64", "'' is not a valid component"),
        ("linux/am d64", "is not a valid component"),
        ("notanarch", "unknown operating system or architecture"),
    ],
)
def test_parse_platform_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_platform(text, host=AMD64)


def test_platform_format_and_json() -> None:
    assert str(Platform("linux", "arm64", "v8")) == "linux/arm64/v8" and str(Platform("", "")) == "unknown"
    platform = Platform("windows", "amd64", "", "10.0.17763", ("win32k",))
    assert platform.to_json() == {
        "architecture": "amd64", "os": "windows", "os.version": "10.0.17763", "os.features": ["win32k"],
    }  # fmt: skip
    assert Platform.from_json(platform.to_json()) == platform
    with pytest.raises(InvalidArgument, match=r"^platform.os.features: expected a list of strings$"):
        Platform.from_json({"os": "linux", "architecture": "amd64", "os.features": "x"})
    with pytest.raises(InvalidArgument, match=r"^p.variant: expected a string, got int$"):
        Platform.from_json({"os": "linux", "architecture": "arm", "variant": 7}, "p")


@pytest.mark.parametrize(
    "arch,variant,expected",
    [
        ("x86_64", "", ("amd64", "")), ("x86-64", "v2", ("amd64", "v2")), ("amd64", "v1", ("amd64", "")),
        ("aarch64", "", ("arm64", "")), ("arm64", "v8", ("arm64", "")), ("arm64", "8", ("arm64", "")),
        ("arm64", "v9", ("arm64", "v9")), ("armhf", "", ("arm", "v7")), ("armel", "", ("arm", "v6")),
        ("arm", "", ("arm", "v7")), ("arm", "5", ("arm", "v5")), ("ARM", "V6", ("arm", "v6")),
        ("i386", "x", ("386", "")), ("riscv64", "", ("riscv64", "")),
    ],
)  # fmt: skip
def test_normalize_arch(arch: str, variant: str, expected: tuple[str, str]) -> None:
    assert normalize_arch(arch, variant) == expected


def test_compatible_platforms_order() -> None:
    def names(text: str) -> list[str]:
        return [str(p) for p in compatible_platforms(parse_platform(text).normalized())]

    assert names("linux/arm64/v8") == [
        "linux/arm64",
        "linux/arm/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]
    assert names("linux/arm/v7") == ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
    assert names("linux/amd64/v3") == ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64/v1", "linux/386"]
    assert names("linux/arm64/v8.2")[:3] == ["linux/arm64/v8.2", "linux/arm64/v8.1", "linux/arm64/v8"]
    v9 = ["linux/arm64/v9.1", "linux/arm64/v9", "linux/arm64/v8.6", "linux/arm64/v8.5"]
    assert names("linux/arm64/v9.1")[:4] == v9
    assert names("linux/s390x") == ["linux/s390x"]


@pytest.mark.parametrize(
    "machine,expected",
    [
        ("x86_64", Platform("linux", "amd64")),
        ("aarch64", Platform("linux", "arm64", "v8")),
        ("armv7l", Platform("linux", "arm", "v7")),
        ("armv6l", Platform("linux", "arm", "v6")),
        ("i686", Platform("linux", "386")),
        ("loongarch64", Platform("linux", "loong64")),
        ("ppc64le", Platform("linux", "ppc64le")),
    ],
)
def test_host_platform(monkeypatch: pytest.MonkeyPatch, machine: str, expected: Platform) -> None:
    import os

    fake = os.uname_result(("Linux", "host", "6.1", "#1", machine))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert host_platform() == expected


def test_matcher_features_must_be_offered() -> None:
    wanted = PlatformMatcher(Platform("windows", "amd64", os_features=("win32k",)))
    assert wanted.match(Platform("windows", "amd64", os_features=("win32k",)))
    assert wanted.match(Platform("windows", "amd64"))
    assert not PlatformMatcher(Platform("windows", "amd64")).match(
        Platform("windows", "amd64", os_features=("x",))
    )


# ---- choosing from an index ----------------------------------------------------------------------------


def entry(platform: str | None, name: str) -> Descriptor:
    p = None if platform is None else parse_platform(platform)
    return Descriptor(media_type=oci.OCI_MANIFEST, digest=sha(name), size=1, platform=p)


@pytest.mark.parametrize(
    "fixture_name,wanted,chosen",
    [
        ("oci_index.json", "linux/amd64", "app-amd64-None"),
        ("oci_index.json", "linux/amd64/v3", "app-amd64-v3"),
        ("oci_index.json", "linux/amd64/v2", "app-amd64-None"),
        ("oci_index.json", "linux/arm64", "app-arm64-None"),
        ("oci_index.json", "linux/arm64/v8", "app-arm64-None"),
        ("oci_index.json", "linux/arm/v7", "app-arm-v7"),
        ("oci_index.json", "linux/arm", "app-arm-v7"),
        ("oci_index.json", "linux/arm/v6", "app-arm-v6"),
        ("oci_index.json", "linux/arm/v8", "app-arm-v7"),
        ("docker_manifest_list.json", "linux/amd64", "busybox-amd64-None"),
        ("docker_manifest_list.json", "linux/arm64/v8", "busybox-arm64-v8"),
        ("docker_manifest_list.json", "linux/arm64/v9", "busybox-arm64-v8"),
        ("docker_manifest_list.json", "linux/aarch64", "busybox-arm64-v8"),
        ("docker_manifest_list.json", "linux/arm/v7", "busybox-arm-v7"),
        ("docker_manifest_list.json", "linux/armel", "busybox-arm-v6"),
        ("docker_manifest_list.json", "linux/arm/v5", "busybox-arm-v5"),
        ("docker_manifest_list.json", "linux/386", "busybox-386-None"),
        ("docker_manifest_list.json", "linux/s390x", "busybox-s390x-None"),
    ],
)
def test_select_manifest(fixture_name: str, wanted: str, chosen: str) -> None:
    index = parse_index(fixture(fixture_name))
    assert select_manifest(index, parse_platform(wanted)).digest == sha(chosen)


@pytest.mark.parametrize(
    "entries,wanted,chosen",
    [
        # An arm64 host runs 32-bit arm images, best variant first.
        ([entry("linux/arm/v5", "v5"), entry("linux/arm/v7", "v7"), entry("linux/arm/v6", "v6")], "linux/arm64", "v7"),
        ([entry("linux/386", "x86"), entry("linux/arm64", "a")], "linux/amd64", "x86"),
        ([entry("linux/arm64/v8", "v8"), entry("linux/arm64/v8.1", "v8.1")], "linux/arm64/v8.2", "v8.1"),
        # Equal candidates: the first in the index wins.
        ([entry("linux/amd64", "first"), entry("linux/x86_64", "second")], "linux/amd64", "first"),
        # Entries without a platform are skipped, even when nothing else matches better.
        ([entry(None, "none"), entry("linux/arm/v6", "v6")], "linux/arm/v7", "v6"),
    ],
)  # fmt: skip
def test_select_manifest_order(entries: list[Descriptor], wanted: str, chosen: str) -> None:
    index = Index(media_type=oci.OCI_INDEX, manifests=tuple(entries))
    assert select_manifest(index, parse_platform(wanted)).digest == sha(chosen)


@pytest.mark.parametrize(
    "fixture_name,wanted,shown",
    [
        ("oci_index.json", "linux/arm/v5", "linux/arm/v5"),
        ("oci_index.json", "linux/386", "linux/386"),
        ("oci_index.json", "windows/amd64", "windows/amd64"),
        ("docker_manifest_list.json", "linux/mips64", "linux/mips64"),
        ("oci_index.json", "linux/riscv64", "linux/riscv64"),
    ],
)
def test_select_manifest_not_found(fixture_name: str, wanted: str, shown: str) -> None:
    index = parse_index(fixture(fixture_name))
    with pytest.raises(NotFound) as info:
        select_manifest(index, parse_platform(wanted))
    assert str(info.value) == f"no matching manifest for {shown} in the manifest list entries"


def test_host_default_message_names_the_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6", "#1", "aarch64")))
    index = Index(media_type=oci.OCI_INDEX, manifests=(entry("linux/amd64", "x"),))
    with pytest.raises(
        NotFound, match=r"^no matching manifest for linux/arm64/v8 in the manifest list entries$"
    ):
        select_manifest(index, host_platform())

"""OCI image and Docker schema2 documents: media types, descriptors, manifests, indexes and image configs.

Vocabulary: a *descriptor* points at a blob (media type, digest, size). A *manifest* lists one image's config and
layers; an *index* (Docker: manifest list) lists manifests, usually one per platform. The *flavour* of a document
is ``"oci"`` or ``"docker"``; their media types map one to one (:func:`to_flavour`), so converting a manifest
only relabels descriptors. The *image ID* is the digest of the config bytes, a layer's *diff ID* is the digest
of its uncompressed tar, and *chain IDs* name a stack of layers (:func:`chain_ids`).

Invariants: parsing validates every field it types and raises :class:`InvalidArgument` naming the field
(``manifest.layers[1].digest: invalid checksum digest length (...)``); schema 1 and unknown media types raise
:class:`Unsupported`. Each parsed object keeps its JSON object in ``raw``, and ``to_json`` starts from it, so
fields ketch does not know survive a round trip (``raw`` takes no part in equality). ``to_bytes`` writes compact
JSON with Go's escaping of ``<``, ``>`` and ``&``: the bytes to digest.
The digest of a received document is always taken over the bytes received, never over a re-serialisation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from ketch.common.errors import InvalidArgument, NotFound, Unsupported
from ketch.spec.platform import Platform, PlatformMatcher
from ketch.spec.reference import parse_digest

__all__ = [
    "DOCKER_CONFIG", "DOCKER_FOREIGN_LAYER", "DOCKER_FOREIGN_LAYER_GZIP", "DOCKER_LAYER", "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_ZSTD", "DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST", "DOCKER_SCHEMA1_MANIFEST",
    "DOCKER_SCHEMA1_SIGNED", "INDEX_TYPES", "LAYER_COMPRESSION", "MANIFEST_ACCEPT", "MANIFEST_TYPES",
    "MAX_MANIFEST_SIZE", "NONDISTRIBUTABLE_TYPES", "OCI_CONFIG", "OCI_EMPTY", "OCI_INDEX", "OCI_LAYER",
    "OCI_LAYER_GZIP", "OCI_LAYER_ND", "OCI_LAYER_ND_GZIP", "OCI_LAYER_ND_ZSTD", "OCI_LAYER_ZSTD", "OCI_MANIFEST",
    "SCHEMA1_TYPES", "ContainerConfig", "Descriptor", "Flavour", "Healthcheck", "History", "ImageConfig", "Index",
    "Manifest", "canonical_json", "chain_id", "chain_ids", "detect", "digest_of", "image_id", "parse_any",
    "parse_config", "parse_index", "parse_manifest", "select_manifest", "to_flavour",
]  # fmt: skip

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Not in Docker's spec, but containerd and BuildKit write it for zstd layers in Docker-flavoured manifests.
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED})
# Layer media type -> compression ("" for a plain tar).
LAYER_COMPRESSION: dict[str, str] = {
    OCI_LAYER: "", OCI_LAYER_GZIP: "gzip", OCI_LAYER_ZSTD: "zstd", OCI_LAYER_ND: "", OCI_LAYER_ND_GZIP: "gzip",
    OCI_LAYER_ND_ZSTD: "zstd", DOCKER_LAYER: "", DOCKER_LAYER_GZIP: "gzip", DOCKER_LAYER_ZSTD: "zstd",
    DOCKER_FOREIGN_LAYER: "", DOCKER_FOREIGN_LAYER_GZIP: "gzip",
}  # fmt: skip
NONDISTRIBUTABLE_TYPES = frozenset(
    {OCI_LAYER_ND, OCI_LAYER_ND_GZIP, OCI_LAYER_ND_ZSTD, DOCKER_FOREIGN_LAYER, DOCKER_FOREIGN_LAYER_GZIP}
)
# What a registry client sends as Accept when it fetches a manifest (most preferred first).
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
MAX_MANIFEST_SIZE = 4 * 1048 * 1048  # containerd's MaxManifestSize (sic: 1048, about 4 MiB)

_TO_DOCKER = {
    OCI_INDEX: DOCKER_MANIFEST_LIST, OCI_MANIFEST: DOCKER_MANIFEST, OCI_CONFIG: DOCKER_CONFIG,
    OCI_LAYER: DOCKER_LAYER, OCI_LAYER_GZIP: DOCKER_LAYER_GZIP, OCI_LAYER_ZSTD: DOCKER_LAYER_ZSTD,
    OCI_LAYER_ND: DOCKER_FOREIGN_LAYER, OCI_LAYER_ND_GZIP: DOCKER_FOREIGN_LAYER_GZIP,
}  # fmt: skip
_TO_OCI = {docker: oci for oci, docker in _TO_DOCKER.items()}
# Content-Types that say nothing about the document: the body decides.
_GENERIC_TYPES = frozenset(
    {"", "application/json", "text/plain", "application/octet-stream", "binary/octet-stream"}
)
_SCHEMA1_MESSAGE = (
    "unsupported manifest format: Docker image manifest v2, schema 1 (Docker no longer pulls it either); ask the "
    "image's publisher to push it again as OCI or Docker schema 2, or pull a tag or digest that has a schema 2 "
    "manifest"
)
_INT64_MAX = (1 << 63) - 1  # sizes are int64 in Go; larger ones would be refused by every other tool
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
# Go's encoding/json escapes these even inside strings; doing the same keeps digests equal to Go-written ones.
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}

Flavour = Literal["oci", "docker"]
_T = TypeVar("_T")
_D = TypeVar("_D")


def canonical_json(obj: Any) -> bytes:
    """Compact JSON, keys in the order given, escaped as Go's encoding/json escapes (so Go tools agree)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in _GO_ESCAPES.items():
        if char in text:  # these characters can only occur inside strings, where the escape is equivalent
            text = text.replace(char, escape)
    # A lone surrogate (from a "\ud800" escape) cannot be UTF-8; write it back as the escape it came from.
    return text.encode("utf-8", "backslashreplace")


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    hasher = _HASHES.get(algorithm)
    if hasher is None:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hasher(data).hexdigest()}"


def image_id(config_bytes: bytes) -> str:
    """Docker's image ID: the sha256 digest of the config blob, exactly as stored."""
    return digest_of(config_bytes)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n]) (image-spec identity.ChainIDs)."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(digest_of(f"{out[-1]} {diff_id}".encode()) if out else diff_id)
    return out


def chain_id(diff_ids: Sequence[str]) -> str:
    """The chain ID of the whole stack; "" for no layers, as in Go."""
    ids = chain_ids(diff_ids)
    return ids[-1] if ids else ""


def to_flavour(media_type: str, flavour: Flavour) -> str:
    """The same media type in the other flavour; types with no counterpart (artifacts, in-toto) stay as they are."""
    if flavour == "oci":
        return _TO_OCI.get(media_type, media_type)
    if media_type == OCI_LAYER_ND_ZSTD:
        raise InvalidArgument(f"media type {media_type} has no Docker schema2 equivalent")
    return _TO_DOCKER.get(media_type, media_type)


# ---- field readers: each names the field it rejects ------------------------------------------------------


def _get(obj: dict[str, Any], key: str, kind: type[_T], where: str, default: _D) -> _T | _D:
    value = obj.get(key)
    if value is None:
        return default
    # bool is an int in Python but not in JSON's eyes
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidArgument(f"{where}.{key}: expected {_KIND_NAMES[kind]}, got {_json_type(value)}")
    return value


_KIND_NAMES: dict[type, str] = {
    str: "a string", int: "an integer", bool: "a boolean", list: "a list", dict: "an object",
}  # fmt: skip
_TYPE_NAMES: dict[type, str] = {**_KIND_NAMES, int: "a number", float: "a number"}


def _json_type(value: object) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def _strings(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    """A list of strings; None when absent or null (Docker tells null from [] for Entrypoint and Cmd)."""
    value: list[Any] | None = _get(obj, key, list, where, None)
    if value is None:
        return None
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidArgument(f"{where}.{key}[{i}]: expected a string, got {_json_type(item)}")
    return tuple(value)


def _string_map(obj: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value: dict[str, Any] = _get(obj, key, dict, where, {})
    for name, item in value.items():
        if not isinstance(item, str):
            raise InvalidArgument(f"{where}.{key}[{name!r}]: expected a string, got {_json_type(item)}")
    return dict(value)


def _key_set(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    """Go's map[string]struct{} (ExposedPorts, Volumes): the keys, sorted."""
    value: dict[str, Any] = _get(obj, key, dict, where, {})
    for name, item in value.items():
        if item is not None and not isinstance(item, dict):
            raise InvalidArgument(f"{where}.{key}[{name!r}]: expected an object, got {_json_type(item)}")
    return tuple(sorted(value))


def _digest(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: expected a digest string, got {_json_type(value)}")
    try:
        return parse_digest(value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc} ({value!r})") from None


def _merged(raw: dict[str, Any], fields: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """``raw`` with known keys set from typed values (None drops the key); unknown keys keep their place."""
    out = dict(raw)
    for key, value in fields:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _load(data: bytes, what: str, limit: int | None = None) -> dict[str, Any]:
    if limit is not None and len(data) > limit:
        raise InvalidArgument(f"invalid {what}: {len(data)} bytes is more than the {limit}-byte limit")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid {what}: malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"invalid {what}: expected a JSON object, got {_json_type(obj)}")
    return obj


def _sorted_map(value: dict[str, Any]) -> dict[str, Any] | None:
    return dict(sorted(value.items())) if value else None


# ---- descriptors ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None
    data: bytes | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, media_type: str, blob: bytes, **extra: Any) -> Descriptor:
        """A descriptor for ``blob`` (sha256 digest and size computed here)."""
        return cls(media_type=media_type, digest=digest_of(blob), size=len(blob), **extra)

    @classmethod
    def from_json(cls, obj: object, where: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{where}: expected an object, got {_json_type(obj)}")
        media_type = _get(obj, "mediaType", str, where, "")
        if not media_type:
            raise InvalidArgument(f"{where}.mediaType is missing")
        if "digest" not in obj:
            raise InvalidArgument(f"{where}.digest is missing")
        digest = _digest(obj["digest"], f"{where}.digest")
        size = _get(obj, "size", int, where, -1)
        if not 0 <= size <= _INT64_MAX:
            raise InvalidArgument(f"{where}.size is missing or out of range")
        platform = None
        if obj.get("platform") is not None:
            platform = Platform.from_json(obj["platform"], f"{where}.platform")
        data = None
        if obj.get("data") is not None:
            data = _embedded(obj, digest, size, where)
        return cls(
            media_type=media_type, digest=digest, size=size, urls=_strings(obj, "urls", where) or (),
            annotations=_string_map(obj, "annotations", where), platform=platform,
            artifact_type=_get(obj, "artifactType", str, where, "") or None, data=data, raw=obj,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return _merged(
            self.raw,
            [
                ("mediaType", self.media_type),
                ("digest", self.digest),
                ("size", self.size),
                ("urls", list(self.urls) or None),
                ("annotations", _sorted_map(self.annotations)),
                ("data", base64.b64encode(self.data).decode() if self.data is not None else None),
                (
                    "platform",
                    _platform_json(self.platform, self.raw.get("platform")) if self.platform else None,
                ),
                ("artifactType", self.artifact_type),
            ],
        )

    def converted(self, flavour: Flavour) -> Descriptor:
        return replace(self, media_type=to_flavour(self.media_type, flavour))


def _platform_json(platform: Platform, raw: object) -> dict[str, Any]:
    """Platform fields over the received object, so extras such as Docker's old "features" survive."""
    fields = [
        ("architecture", platform.architecture),
        ("os", platform.os),
        ("os.version", platform.os_version or None),
        ("os.features", list(platform.os_features) or None),
        ("variant", platform.variant or None),
    ]
    return _merged(raw if isinstance(raw, dict) else {}, fields)


def _embedded(obj: dict[str, Any], digest: str, size: int, where: str) -> bytes:
    """The ``data`` field must be base64 of exactly the bytes the digest and size describe."""
    text = _get(obj, "data", str, where, "")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise InvalidArgument(f"{where}.data: not valid base64") from None
    algorithm = digest.partition(":")[0]
    if len(data) != size or digest_of(data, algorithm) != digest:
        raise InvalidArgument(f"{where}.data does not match the descriptor's digest and size")
    return data


def _descriptors(obj: dict[str, Any], key: str, where: str, required: bool) -> tuple[Descriptor, ...]:
    if key not in obj or obj[key] is None:
        if required:
            raise InvalidArgument(f"{where}.{key} is missing")
        return ()
    items = _get(obj, key, list, where, [])
    return tuple(Descriptor.from_json(item, f"{where}.{key}[{i}]") for i, item in enumerate(items))


# ---- manifests and indexes -----------------------------------------------------------------------------


def _is_schema1(obj: dict[str, Any]) -> bool:
    version = obj.get("schemaVersion")
    return version == 1 and not isinstance(version, bool)


def _schema_version(obj: dict[str, Any], what: str) -> None:
    version = obj.get("schemaVersion")
    if _is_schema1(obj):
        raise Unsupported(_SCHEMA1_MESSAGE)
    if "schemaVersion" not in obj:
        raise InvalidArgument(f"{what}.schemaVersion is missing")
    if version != 2 or isinstance(version, bool):
        raise InvalidArgument(f"{what}.schemaVersion: expected 2, got {json.dumps(version)}")


def _content_type(value: str | None) -> str:
    return (value or "").partition(";")[0].strip().lower()


def _detect(obj: dict[str, Any], content_type: str | None) -> str:
    header = _content_type(content_type)
    if header in SCHEMA1_TYPES or _is_schema1(obj):
        raise Unsupported(_SCHEMA1_MESSAGE)
    declared = _get(obj, "mediaType", str, "manifest", "")
    if declared:
        if header in INDEX_TYPES | MANIFEST_TYPES and header != declared:
            raise InvalidArgument(
                f"manifest media type mismatch: Content-Type is {header}, mediaType is {declared}"
            )
        kind = declared
    elif header not in _GENERIC_TYPES:
        kind = header
    elif "manifests" in obj:
        kind = OCI_INDEX
    elif "config" in obj or "layers" in obj:
        kind = OCI_MANIFEST
    else:
        raise InvalidArgument("invalid manifest: no mediaType, and neither 'manifests' nor 'config'/'layers'")
    if kind in SCHEMA1_TYPES:
        raise Unsupported(_SCHEMA1_MESSAGE)
    if kind not in INDEX_TYPES | MANIFEST_TYPES:
        raise Unsupported(f"unsupported manifest media type {kind}")
    if kind in INDEX_TYPES and "manifests" not in obj and ("config" in obj or "layers" in obj):
        raise InvalidArgument(f"invalid manifest: media type {kind} is an index, but the document has layers")
    if kind in MANIFEST_TYPES and "manifests" in obj:
        raise InvalidArgument(
            f"invalid manifest: media type {kind} is a manifest, but the document has manifests"
        )
    return kind


def detect(data: bytes, content_type: str | None = None) -> str:
    """The media type of a manifest or index, from its mediaType field, then Content-Type, then its shape."""
    return _detect(_load(data, "manifest", MAX_MANIFEST_SIZE), content_type)


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def flavour(self) -> Flavour:
        return "docker" if self.media_type == DOCKER_MANIFEST else "oci"

    def to_json(self) -> dict[str, Any]:
        return _merged(
            self.raw,
            [
                ("schemaVersion", 2),
                ("mediaType", self.media_type),
                ("artifactType", self.artifact_type),
                ("config", self.config.to_json()),
                ("layers", [layer.to_json() for layer in self.layers]),
                ("subject", self.subject.to_json() if self.subject else None),
                ("annotations", _sorted_map(self.annotations)),
            ],
        )

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    def converted(self, flavour: Flavour) -> Manifest:
        """The same image with the other flavour's media types (config and layer bytes are unchanged)."""
        if flavour == "docker" and (self.subject is not None or self.artifact_type):
            raise InvalidArgument(
                "a manifest with a subject or an artifactType cannot be written as Docker schema2"
            )
        return replace(
            self,
            media_type=to_flavour(self.media_type, flavour),
            config=self.config.converted(flavour),
            layers=tuple(layer.converted(flavour) for layer in self.layers),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def flavour(self) -> Flavour:
        return "docker" if self.media_type == DOCKER_MANIFEST_LIST else "oci"

    def to_json(self) -> dict[str, Any]:
        return _merged(
            self.raw,
            [
                ("schemaVersion", 2),
                ("mediaType", self.media_type),
                ("artifactType", self.artifact_type),
                ("manifests", [m.to_json() for m in self.manifests]),
                ("subject", self.subject.to_json() if self.subject else None),
                ("annotations", _sorted_map(self.annotations)),
            ],
        )

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    def converted(self, flavour: Flavour) -> Index:
        """Relabel the index itself. Its entries keep their descriptors: converting a child manifest changes its
        bytes and digest, so convert each child, then ``replace(index, manifests=...)`` with the new ones."""
        if flavour == "docker" and (self.subject is not None or self.artifact_type):
            raise InvalidArgument(
                "an index with a subject or an artifactType cannot be written as a Docker list"
            )
        return replace(self, media_type=to_flavour(self.media_type, flavour))


def _parse_manifest_obj(obj: dict[str, Any], kind: str) -> Manifest:
    _schema_version(obj, "manifest")
    if "config" not in obj or obj["config"] is None:
        raise InvalidArgument("manifest.config is missing")
    return Manifest(
        media_type=kind,
        config=Descriptor.from_json(obj["config"], "manifest.config"),
        layers=_descriptors(obj, "layers", "manifest", required=True),
        annotations=_string_map(obj, "annotations", "manifest"),
        subject=Descriptor.from_json(obj["subject"], "manifest.subject") if obj.get("subject") else None,
        artifact_type=_get(obj, "artifactType", str, "manifest", "") or None,
        raw=obj,
    )


def _parse_index_obj(obj: dict[str, Any], kind: str) -> Index:
    _schema_version(obj, "index")
    return Index(
        media_type=kind,
        manifests=_descriptors(obj, "manifests", "index", required=True),
        annotations=_string_map(obj, "annotations", "index"),
        subject=Descriptor.from_json(obj["subject"], "index.subject") if obj.get("subject") else None,
        artifact_type=_get(obj, "artifactType", str, "index", "") or None,
        raw=obj,
    )


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """An image manifest (OCI or Docker schema2); ``media_type`` is the Content-Type it came with, if any."""
    obj = _load(data, "manifest", MAX_MANIFEST_SIZE)
    kind = _detect(obj, media_type)
    if kind in INDEX_TYPES:
        raise InvalidArgument(f"expected an image manifest, got an index ({kind})")
    return _parse_manifest_obj(obj, kind)


def parse_index(data: bytes, media_type: str | None = None) -> Index:
    """An OCI image index or Docker manifest list."""
    obj = _load(data, "index", MAX_MANIFEST_SIZE)
    kind = _detect(obj, media_type)
    if kind in MANIFEST_TYPES:
        raise InvalidArgument(f"expected an index, got an image manifest ({kind})")
    return _parse_index_obj(obj, kind)


def parse_any(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """Whichever of the two a registry answered with (a tag may name either)."""
    obj = _load(data, "manifest", MAX_MANIFEST_SIZE)
    kind = _detect(obj, media_type)
    return _parse_index_obj(obj, kind) if kind in INDEX_TYPES else _parse_manifest_obj(obj, kind)


def select_manifest(index: Index, platform: Platform) -> Descriptor:
    """The entry that best runs on ``platform`` (containerd's ``platforms.Only`` order; first wins a tie).

    Entries without a platform are skipped, and so are attestations (``unknown/unknown``), which match nothing.
    """
    matcher = PlatformMatcher(platform)
    best: tuple[int, Descriptor] | None = None
    for entry in index.manifests:
        if entry.platform is None:
            continue
        rank = matcher.rank(entry.platform)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, entry)
    if best is None:
        raise NotFound(f"no matching manifest for {platform} in the manifest list entries")
    return best[1]


# ---- image config --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck:
    """Docker's HEALTHCHECK; durations in nanoseconds, 0 meaning "inherit/default"."""

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _KEYS = (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period"),
             ("StartInterval", "start_interval"), ("Retries", "retries"))  # fmt: skip

    @classmethod
    def from_json(cls, obj: object, where: str) -> Healthcheck:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{where}: expected an object, got {_json_type(obj)}")
        numbers = {attr: _get(obj, key, int, where, 0) for key, attr in cls._KEYS}
        return cls(test=_strings(obj, "Test", where) or (), raw=obj, **numbers)

    def to_json(self) -> dict[str, Any]:
        fields: list[tuple[str, Any]] = [("Test", list(self.test) or None)]
        fields += [(key, getattr(self, attr) or None) for key, attr in self._KEYS]
        return _merged(self.raw, fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerConfig:
    """The ``config`` object of an image config: defaults for containers made from the image.

    ``entrypoint`` and ``cmd`` are None when unset, which Docker tells apart from an empty list.
    """

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    healthcheck: Healthcheck | None = None
    args_escaped: bool = False
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    entrypoint: tuple[str, ...] | None = None
    on_build: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    shell: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: object, where: str) -> ContainerConfig:
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{where}: expected an object, got {_json_type(obj)}")
        health = obj.get("Healthcheck")
        return cls(
            user=_get(obj, "User", str, where, ""), exposed_ports=_key_set(obj, "ExposedPorts", where),
            env=_strings(obj, "Env", where) or (), cmd=_strings(obj, "Cmd", where),
            healthcheck=Healthcheck.from_json(health, f"{where}.Healthcheck") if health is not None else None,
            args_escaped=_get(obj, "ArgsEscaped", bool, where, False), volumes=_key_set(obj, "Volumes", where),
            working_dir=_get(obj, "WorkingDir", str, where, ""), entrypoint=_strings(obj, "Entrypoint", where),
            on_build=_strings(obj, "OnBuild", where) or (), labels=_string_map(obj, "Labels", where),
            stop_signal=_get(obj, "StopSignal", str, where, ""), shell=_strings(obj, "Shell", where) or (),
            raw=obj,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        def opt(values: tuple[str, ...] | None) -> list[str] | None:
            return list(values) if values is not None else None

        return _merged(
            self.raw,
            [
                ("User", self.user or None),
                ("ExposedPorts", {port: {} for port in self.exposed_ports} or None),
                ("Env", list(self.env) or None),
                ("Cmd", opt(self.cmd)),
                ("Healthcheck", self.healthcheck.to_json() if self.healthcheck else None),
                ("ArgsEscaped", self.args_escaped or None),
                ("Volumes", {path: {} for path in self.volumes} or None),
                ("WorkingDir", self.working_dir or None),
                ("Entrypoint", opt(self.entrypoint)),
                ("OnBuild", list(self.on_build) or None),
                ("Labels", _sorted_map(self.labels)),
                ("StopSignal", self.stop_signal or None),
                ("Shell", list(self.shell) or None),
            ],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    created: str | None = None  # RFC 3339, as written
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: object, where: str) -> History:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{where}: expected an object, got {_json_type(obj)}")
        return cls(
            created=_get(obj, "created", str, where, "") or None, created_by=_get(obj, "created_by", str, where, ""),
            author=_get(obj, "author", str, where, ""), comment=_get(obj, "comment", str, where, ""),
            empty_layer=_get(obj, "empty_layer", bool, where, False), raw=obj,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return _merged(
            self.raw,
            [
                ("created", self.created),
                ("author", self.author or None),
                ("created_by", self.created_by or None),
                ("comment", self.comment or None),
                ("empty_layer", self.empty_layer or None),
            ],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """An image config (OCI and Docker share the format). ``diff_ids`` are the uncompressed layer digests."""

    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    created: str | None = None
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[str, ...] = ()
    history: tuple[History, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant, self.os_version, self.os_features)

    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    def to_json(self) -> dict[str, Any]:
        # Keys sorted, as moby writes its configs, so an image ketch writes digests like one docker writes.
        rootfs = _merged(
            self.raw.get("rootfs") or {}, [("type", "layers"), ("diff_ids", list(self.diff_ids))]
        )
        return _merged(
            self.raw,
            [
                ("architecture", self.architecture),
                ("author", self.author or None),
                ("config", self.config.to_json()),
                ("created", self.created),
                ("history", [h.to_json() for h in self.history] or None),
                ("os", self.os),
                ("os.features", list(self.os_features) or None),
                ("os.version", self.os_version or None),
                ("rootfs", rootfs),
                ("variant", self.variant or None),
            ],
        )

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())


def _required_string(obj: dict[str, Any], key: str, where: str) -> str:
    value = _get(obj, key, str, where, "")
    if not value:
        raise InvalidArgument(f"{where}.{key} is missing")
    return value


def _each(items: list[Any], where: str, parse: Callable[[Any, str], _T]) -> tuple[_T, ...]:
    return tuple(parse(item, f"{where}[{i}]") for i, item in enumerate(items))


def parse_config(data: bytes) -> ImageConfig:
    """An image config blob (``application/vnd.oci.image.config.v1+json`` or Docker's)."""
    obj = _load(data, "image config")
    where = "config"
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict):
        raise InvalidArgument(
            f"{where}.rootfs is missing" if rootfs is None else f"{where}.rootfs: expected an object"
        )
    if rootfs.get("type") != "layers":
        raise InvalidArgument(f"{where}.rootfs.type: expected 'layers', got {json.dumps(rootfs.get('type'))}")
    diff_ids = _each(
        _get(rootfs, "diff_ids", list, f"{where}.rootfs", []), f"{where}.rootfs.diff_ids", _digest
    )
    return ImageConfig(
        architecture=_required_string(obj, "architecture", where), os=_required_string(obj, "os", where),
        variant=_get(obj, "variant", str, where, ""), os_version=_get(obj, "os.version", str, where, ""),
        os_features=_strings(obj, "os.features", where) or (), created=_get(obj, "created", str, where, "") or None,
        author=_get(obj, "author", str, where, ""),
        config=ContainerConfig.from_json(obj.get("config"), f"{where}.config"),
        diff_ids=diff_ids, history=_each(_get(obj, "history", list, where, []), f"{where}.history", History.from_json),
        raw=obj,
    )  # fmt: skip

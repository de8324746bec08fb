"""Reading image archives: staging a tar's files, then finding the images it holds.

Two shapes are understood (see image/archive.py for what ``load`` makes of them):

- ``docker save`` output: ``manifest.json`` lists each image's config and layer files by path, in Docker
  20.10's form (``<v1 id>/layer.tar``, ``<hex>.json``, with symlinks for layers written twice) or Docker 25's
  (``blobs/sha256/<hex>``, next to an OCI layout);
- OCI image layouts: ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``; index entries may be nested
  indexes (the host's platform is chosen), and names come from ``io.containerd.image.name`` or
  ``org.opencontainers.image.ref.name``.

Staging streams the tar once. Regular files go into the content store under the caller's lease, each named
``blobs/<alg>/<hex>`` checked against its name as it is written; small metadata files (``*.json``,
``repositories``, ``oci-layout``, ``VERSION``) stay in memory up to a budget. Nothing is ever written under
an archive path: paths are only keys, resolved within the archive the way moby's safePath resolves them
(``..`` may not climb out; symlinks resolve inside the archive, at most 255 of them per path).
"""

from __future__ import annotations

import json
import posixpath
import tarfile
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ketch.common.errors import InvalidArgument, NotFound, Unsupported
from ketch.image.compression import decompressed, detect_compression
from ketch.image.content import ContentStore, Lease
from ketch.spec import reference
from ketch.spec.oci_image import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_ZSTD,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    parse_config,
    parse_index,
    parse_manifest,
    select_manifest,
)
from ketch.spec.platform import Platform
from ketch.spec.reference import Reference

__all__ = [
    "IMAGE_NAME",
    "REF_NAME",
    "FoundImage",
    "Staged",
    "blob_path",
    "docker_images",
    "ingest",
    "matching_manifests",
    "oci_images",
    "stage",
    "write_manifest",
]

IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"
_SMALL = MAX_MANIFEST_SIZE  # metadata files kept in memory; anything larger goes to the content store
_MEMORY = 64 << 20  # all of them together; past that, small files go to the content store too
_METADATA = ("manifest.json", "index.json", "oci-layout", "repositories", "VERSION")
_MAX_HOPS = 255
_LAYER_TYPES = {"none": DOCKER_LAYER, "gzip": DOCKER_LAYER_GZIP, "zstd": DOCKER_LAYER_ZSTD}


def blob_path(digest: str) -> str:
    alg, _, hexpart = digest.partition(":")
    return f"blobs/{alg}/{hexpart}"


def _clean_path(name: str, what: str) -> str:
    """An archive path relative to the archive's root; InvalidArgument if it would leave it."""
    if "\0" in name:
        raise InvalidArgument(f"{what} {name!r} refused: the name contains NUL")
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if not parts:
                raise InvalidArgument(f"{what} {name!r} refused: the path leaves the archive")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def ingest(content: ContentStore, reader: Any, *, ref: str, expected: str | None, size: int | None) -> str:
    """Copy ``reader`` into the content store; a failure discards the partial ingest (nothing to resume)."""
    writer = content.writer(ref, expected_digest=expected, expected_size=size)
    try:
        while chunk := reader.read(1 << 20):
            writer.write(chunk)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


@dataclass(slots=True)
class Staged:
    """The archive's regular files (in memory or in the content store), symlinks and hard links."""

    data: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[str, str] = field(default_factory=dict)  # path -> digest
    symlinks: dict[str, str] = field(default_factory=dict)
    hardlinks: dict[str, str] = field(default_factory=dict)
    ingested: set[str] = field(default_factory=set)
    in_memory: int = 0

    def resolve(self, path: str, what: str) -> str:
        """Follow symlinks (within the archive, as moby's FollowSymlinkInScope) and hard links."""
        hops = 0
        pending = [p for p in _clean_path(path, what).split("/") if p]
        done: list[str] = []
        while pending:
            part = pending.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/".join([*done, part])
            target = self.symlinks.get(candidate)
            if target is None:
                done.append(part)
                continue
            hops += 1
            if hops > _MAX_HOPS:
                raise InvalidArgument(f"{what} {path!r}: too many levels of symbolic links in the archive")
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
        resolved = "/".join(done)
        while resolved in self.hardlinks:
            hops += 1
            if hops > _MAX_HOPS:
                raise InvalidArgument(f"{what} {path!r}: too many links in the archive")
            resolved = self.hardlinks[resolved]
        if resolved not in self.data and resolved not in self.blobs:
            raise InvalidArgument(f"{what} {path!r} is not a file in the archive")
        return resolved

    def has(self, path: str) -> bool:
        try:
            self.resolve(path, "file")
        except InvalidArgument:
            return False
        return True


def stage(content: ContentStore, stream: BinaryIO, lease: Lease) -> Staged:
    staged = Staged()
    count = 0
    name = "<archive>"
    try:
        reader, _ = decompressed(stream)
        with tarfile.open(fileobj=reader, mode="r|") as tf:  # type: ignore[call-overload]
            for member in tf:
                tf.members.clear()
                name = member.name
                path = _clean_path(member.name, "archive entry")
                if member.issym():
                    staged.symlinks[path] = member.linkname
                elif member.islnk():
                    staged.hardlinks[path] = _clean_path(
                        member.linkname, f"archive entry {path!r}: link target"
                    )
                elif member.isreg():
                    staged.data.pop(path, None)
                    staged.blobs.pop(path, None)
                    fileobj = tf.extractfile(member)
                    assert fileobj is not None
                    base = posixpath.basename(path)
                    parts = path.split("/")
                    named = len(parts) == 3 and parts[0] == "blobs"
                    metadata = base in _METADATA or base.endswith(".json")
                    if not named and metadata and member.size <= _SMALL and staged.in_memory < _MEMORY:
                        staged.data[path] = fileobj.read()
                        staged.in_memory += member.size
                        continue
                    count += 1
                    expected = f"{parts[1]}:{parts[2]}" if named else None
                    if expected is not None:
                        try:
                            reference.parse_digest(expected)
                        except InvalidArgument:
                            expected = None  # not a blob name after all: keep it as a plain file
                    try:
                        digest = ingest(
                            content,
                            fileobj,
                            ref=f"load-{uuid.uuid4().hex}-{count}",
                            expected=expected,
                            size=member.size,
                        )
                    except InvalidArgument as exc:
                        raise InvalidArgument(f"archive entry {path!r}: {exc}") from None
                    lease.add(digest)
                    staged.ingested.add(digest)
                    staged.blobs[path] = digest
    except tarfile.TarError as exc:
        raise InvalidArgument(f"archive is not a valid tar file (at entry {name!r}): {exc}") from None
    except (EOFError, zlib.error) as exc:
        raise InvalidArgument(f"archive is truncated or corrupt (at entry {name!r}): {exc}") from None
    return staged


def _read_file(content: ContentStore, staged: Staged, path: str, what: str) -> bytes:
    resolved = staged.resolve(path, what)
    if resolved in staged.data:
        return staged.data[resolved]
    digest = staged.blobs[resolved]
    if content.size(digest) > _SMALL:
        raise InvalidArgument(f"{what} {path!r} is larger than {_SMALL} bytes")
    return content.read_bytes(digest)


def _archive_blob(content: ContentStore, staged: Staged, lease: Lease, path: str, what: str) -> str:
    """The digest of an archive file, putting it into the content store if it was kept in memory."""
    resolved = staged.resolve(path, what)
    if resolved in staged.blobs:
        return staged.blobs[resolved]
    digest = content.ingest_bytes(staged.data[resolved])
    lease.add(digest)
    staged.ingested.add(digest)
    staged.blobs[resolved] = digest
    return digest


# ---- what the archive holds --------------------------------------------------------------------------


@dataclass(slots=True)
class FoundImage:
    config: str
    layers: list[str]
    diff_ids: tuple[str, ...]
    platform: str
    manifest: str | None = None  # a manifest blob the archive has for the image
    index: str | None = None
    tags: list[Reference] = field(default_factory=list)


def _parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{what}: malformed JSON: {exc}") from None


def _string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{what}: expected a list of strings")
    return value


def _read_config(content: ContentStore, digest: str, what: str) -> tuple[ImageConfig, str]:
    try:
        config = parse_config(content.read_bytes(digest))
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if config.os != "linux":
        raise InvalidArgument(f"cannot load {config.os} image on linux")
    return config, str(config.platform)


def docker_images(content: ContentStore, staged: Staged, lease: Lease) -> list[FoundImage]:
    items = _parse_json(_read_file(content, staged, "manifest.json", "file"), "manifest.json")
    if items is None:
        raise InvalidArgument("invalid manifest, manifest cannot be null (but can be [])")
    if not isinstance(items, list):
        raise InvalidArgument("manifest.json: expected a list of images")
    images = []
    for i, item in enumerate(items):
        where = f"manifest.json[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise InvalidArgument(f"{where}.Config: expected the path of the image config")
        config_digest = _archive_blob(content, staged, lease, item["Config"], f"{where}.Config")
        config, platform = _read_config(content, config_digest, f"{where} config {item['Config']!r}")
        paths = _string_list(item.get("Layers"), f"{where}.Layers")
        if len(paths) != len(config.diff_ids):
            raise InvalidArgument(
                f"invalid manifest, layers length mismatch: expected {len(paths)}, got {len(config.diff_ids)}"
            )
        layers = [
            _archive_blob(content, staged, lease, p, f"{where}.Layers[{n}]") for n, p in enumerate(paths)
        ]
        tags = []
        for text in _string_list(item.get("RepoTags"), f"{where}.RepoTags"):
            ref = reference.parse(text, default_tag=False)
            if ref.tag is None or ref.digest is not None:
                raise InvalidArgument(f'invalid tag "{text}"')
            tags.append(ref)
        images.append(FoundImage(config_digest, layers, config.diff_ids, platform, tags=tags))
    return images


def _image_names(annotations: dict[str, str], base: str | None, where: str) -> list[Reference]:
    """The tags an index entry gives its image: the full name containerd and Docker write, else the OCI
    ref name (a full reference, or a bare tag put in the repository ``base``)."""
    try:
        full = annotations.get(IMAGE_NAME)
        if full:
            ref = reference.parse(full, default_tag=False)
            return [ref] if ref.tag and not ref.digest else []
        ref_name = annotations.get(REF_NAME)
        if not ref_name:
            return []
        if any(c in ref_name for c in "/:@"):
            ref = reference.parse(ref_name, default_tag=False)
            return [ref] if ref.tag and not ref.digest else []
        if base:
            return [reference.parse(base, default_tag=False).name_only().with_tag(ref_name)]
        return []
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}.annotations: {exc}") from None


def _layout_blob(content: ContentStore, staged: Staged, desc: Descriptor, what: str) -> str:
    path = blob_path(desc.digest)
    if not staged.has(path):
        raise InvalidArgument(f"{what}: blob {desc.digest} is missing from the archive")
    digest = staged.blobs.get(staged.resolve(path, what))
    if digest != desc.digest:  # a symlink to another file, or a name that was not a digest
        raise InvalidArgument(f"{what}: the archive's {path} does not hold blob {desc.digest}")
    if content.size(digest) != desc.size:
        raise InvalidArgument(
            f"{what}: blob {desc.digest} has {content.size(digest)} bytes, the descriptor says {desc.size}"
        )
    return digest


def oci_images(
    content: ContentStore, staged: Staged, platform: Platform, base: str | None
) -> list[FoundImage]:
    if not staged.has("oci-layout"):
        raise InvalidArgument("archive has index.json but no oci-layout file")
    layout = _parse_json(_read_file(content, staged, "oci-layout", "file"), "oci-layout")
    if not isinstance(layout, dict) or not isinstance(layout.get("imageLayoutVersion"), str):
        raise InvalidArgument("oci-layout: imageLayoutVersion is missing")
    try:
        index = parse_index(_read_file(content, staged, "index.json", "file"))
    except (InvalidArgument, Unsupported) as exc:
        raise InvalidArgument(f"index.json: {exc}") from None
    images: dict[str, FoundImage] = {}

    def descend(desc: Descriptor, tags: list[Reference], where: str, parent: str | None, depth: int) -> None:
        if depth > 8:
            raise InvalidArgument(f"{where}: indexes nested too deep")
        if desc.media_type not in INDEX_TYPES | MANIFEST_TYPES:
            return  # artifacts, attestations: not images
        digest = _layout_blob(content, staged, desc, where)
        data = content.read_bytes(digest)
        try:
            document = parse_index(data) if desc.media_type in INDEX_TYPES else parse_manifest(data)
        except (InvalidArgument, Unsupported) as exc:
            raise InvalidArgument(f"{where} ({digest}): {exc}") from None
        if isinstance(document, Index):
            child, n = _choose_manifest(document, platform, where)
            descend(child, tags, f"{where} -> manifests[{n}]", digest, depth + 1)
            return
        _manifest_image(document, digest, tags, where, parent)

    def _manifest_image(
        manifest: Manifest, digest: str, tags: list[Reference], where: str, parent: str | None
    ) -> None:
        config_digest = _layout_blob(content, staged, manifest.config, f"{where} config")
        config, plat = _read_config(content, config_digest, f"{where} config {config_digest}")
        if len(manifest.layers) != len(config.diff_ids):
            raise InvalidArgument(
                f"{where}: the manifest has {len(manifest.layers)} layers, the config {len(config.diff_ids)} diff IDs"
            )
        layers = [
            _layout_blob(content, staged, layer, f"{where} layer {n}")
            for n, layer in enumerate(manifest.layers)
        ]
        image = images.setdefault(
            config_digest,
            FoundImage(config_digest, layers, config.diff_ids, plat, manifest=digest, index=parent),
        )
        image.tags += [t for t in tags if t not in image.tags]

    for n, desc in enumerate(index.manifests):
        where = f"index.json manifests[{n}]"
        descend(desc, _image_names(desc.annotations, base, where), where, None, 0)
    return list(images.values())


def _choose_manifest(index: Index, platform: Platform, where: str) -> tuple[Descriptor, int]:
    entries = [(n, d) for n, d in enumerate(index.manifests) if d.media_type in INDEX_TYPES | MANIFEST_TYPES]
    if any(d.platform is not None for _, d in entries):
        try:
            chosen = select_manifest(index, platform)
        except NotFound as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
        return chosen, next(n for n, d in entries if d is chosen)
    if len(entries) == 1:
        return entries[0][1], entries[0][0]
    raise InvalidArgument(f"{where}: the index lists {len(entries)} manifests and none names its platform")


def matching_manifests(
    content: ContentStore, staged: Staged
) -> dict[tuple[str, tuple[str, ...]], tuple[str, str | None]]:
    """(config, layers) -> (manifest digest, index digest), for the manifests a docker-save archive also
    carries in its OCI layout, nested indexes included (Docker with the containerd store writes those)."""
    found: dict[tuple[str, tuple[str, ...]], tuple[str, str | None]] = {}
    if not staged.has("index.json"):
        return {}
    try:
        top = parse_index(_read_file(content, staged, "index.json", "file"))
    except (InvalidArgument, Unsupported):
        return {}
    pending: list[tuple[Descriptor, str | None, int]] = [(d, None, 0) for d in top.manifests]
    while pending:
        desc, parent, depth = pending.pop(0)
        digest = staged.blobs.get(blob_path(desc.digest))
        if digest != desc.digest or content.size(digest) != desc.size or depth > 8:
            continue
        try:
            if desc.media_type in INDEX_TYPES:
                nested = parse_index(content.read_bytes(digest))
                pending += [(d, digest, depth + 1) for d in nested.manifests]
            elif desc.media_type in MANIFEST_TYPES:
                manifest = parse_manifest(content.read_bytes(digest))
                key = (manifest.config.digest, tuple(layer.digest for layer in manifest.layers))
                found.setdefault(key, (digest, parent))
        except (InvalidArgument, Unsupported):
            continue
    return found


def write_manifest(content: ContentStore, lease: Lease, staged: Staged, image: FoundImage) -> str:
    """A Docker schema2 manifest for an image that came without one."""
    layers = []
    for digest in image.layers:
        with content.open(digest) as f:
            compression = detect_compression(f.read(6))
        layers.append(
            Descriptor(media_type=_LAYER_TYPES[compression], digest=digest, size=content.size(digest))
        )
    config = Descriptor(media_type=DOCKER_CONFIG, digest=image.config, size=content.size(image.config))
    data = Manifest(media_type=DOCKER_MANIFEST, config=config, layers=tuple(layers)).to_bytes()
    digest = content.ingest_bytes(data)
    lease.add(digest)
    staged.ingested.add(digest)
    return digest

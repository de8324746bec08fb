"""Image archives: ``save``, ``load``, ``import`` and ``export``.

``save`` writes one tar that is both what ``docker load`` reads and an OCI image layout, the way Docker 25+
writes it (moby image/tarexport/save.go)::

    blobs/sha256/<hex>   every manifest, config and layer blob, exactly as stored (digests unchanged)
    index.json           OCI index: one entry per tag, annotated with io.containerd.image.name (the full
                         reference) and org.opencontainers.image.ref.name (the tag); untagged images get an
                         entry without annotations
    manifest.json        [{"Config": "blobs/sha256/<hex>", "RepoTags": [...], "Layers": ["blobs/sha256/<hex>"]}]
    oci-layout           {"imageLayoutVersion": "1.0.0"}
    repositories         {"busybox": {"latest": "<hex of the top layer blob>"}}, for tools older than manifest.json

Layers are written as stored, so a pulled image keeps its compressed layers; ``docker load`` decompresses
them (it checks diff IDs after decompressing) and digests survive a save/load round trip. Every entry has
mtime 0, owner 0:0 and a fixed mode, so saving the same images twice gives the same bytes.

``load`` reads ``docker save`` output in both forms (Docker 20.10's ``<id>/layer.tar`` + ``<hex>.json``, and
Docker 25's ``blobs/sha256``), and OCI layouts (``index.json`` with nested indexes, tags from
``io.containerd.image.name`` or ``org.opencontainers.image.ref.name``). ``manifest.json`` wins when both are
present, as in ``docker load``; its images keep the OCI manifest the layout has for them, if any, otherwise
ketch writes a Docker schema2 manifest for them. Every blob is verified: files named ``blobs/<alg>/<hex>``
against their names, layers against the config's diff IDs (also when already unpacked), descriptors against
their sizes. Paths in ``manifest.json`` and symlinks inside the archive resolve within it (moby's safePath).

Failure leaves the store as it was: the archive is staged into the content store under a lease, the images
are recorded in one write only once everything verified, and the blobs and snapshots the attempt added are
collected again (see image/gc.py). Problems raise InvalidArgument naming the file, field or blob.
"""

from __future__ import annotations

import os
import tarfile
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ketch.common.errors import InvalidArgument, KetchError, NotFound
from ketch.image import gc, listing
from ketch.image.archive_read import (
    IMAGE_NAME,
    REF_NAME,
    FoundImage,
    Staged,
    blob_path,
    docker_images,
    ingest,
    matching_manifests,
    oci_images,
    stage,
    write_manifest,
)
from ketch.image.changes import apply_changes
from ketch.image.compression import decompressed
from ketch.image.flatten import layer_dirs, write_merged
from ketch.image.install import Unpacked, unpack_layers
from ketch.image.store import ImageRecord, StoreState, is_full_id
from ketch.spec import reference
from ketch.spec.oci_image import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    NONDISTRIBUTABLE_TYPES,
    OCI_INDEX,
    Descriptor,
    Manifest,
    canonical_json,
    parse_manifest,
)
from ketch.spec.platform import Platform
from ketch.spec.reference import Reference

if TYPE_CHECKING:
    from ketch.image.service import ImageService

__all__ = ["Loaded", "LoadedImage", "export_image", "import_tarball", "load", "save"]

_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedImage:
    id: str
    tags: tuple[str, ...]  # familiar form


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    images: tuple[LoadedImage, ...]
    messages: tuple[str, ...]  # what docker load prints, one line each


# ---- save ------------------------------------------------------------------------------------------------


def _select(state: StoreState, names: Sequence[str]) -> dict[str, list[Reference]]:
    """moby's parseNames: image ID -> the tags to write for it, in the order the names came."""
    chosen: dict[str, list[Reference]] = {}

    def add(image_id: str, ref: Reference | None) -> None:
        tags = chosen.setdefault(image_id, [])
        if ref is not None and not ref.digest and ref not in tags:
            tags.append(ref)

    for text in names:
        if is_full_id(text):
            add(state.find(text).id, None)
            continue
        ref = reference.parse(text, default_tag=False)
        if ref.familiar_name == "sha256":  # "sha256:<prefix>"
            add(state.find(text).id, None)
        elif ref.tag is None and ref.digest is None:
            found = state.by_name(ref)
            for r, image_id in found:
                add(image_id, r)
            if not found:
                add(state.find(text).id, None)
        else:
            found_id = state.lookup(ref)
            if found_id is None:
                raise NotFound(f"No such image: {ref.familiar()}")
            add(found_id, ref)
    return chosen


def _tar_info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.mode = 0o644
        info.size = size
    return info


def save(svc: ImageService, names: Sequence[str], out: BinaryIO) -> None:
    """Write the images ``names`` select (references, repositories, IDs) to ``out`` (see module docstring)."""
    if not names:
        raise InvalidArgument("save needs at least one image")
    state = svc.store.read()
    chosen = _select(state, names)
    blobs: dict[str, None] = {}
    items: list[dict[str, Any]] = []
    descriptors: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for image_id, tags in chosen.items():
        rec = state.get(image_id)
        if not rec.manifests:
            raise InvalidArgument(f"image {image_id} has no manifest to save")
        data = svc.content.read_bytes(rec.manifests[0])
        manifest = parse_manifest(data)
        layers = [layer.digest for layer in manifest.layers]
        for digest in (rec.manifests[0], manifest.config.digest, *layers):
            blobs[digest] = None
        item: dict[str, Any] = {
            "Config": blob_path(manifest.config.digest),
            "RepoTags": [t.familiar() for t in tags] or None,
            "Layers": [blob_path(d) for d in layers],
        }
        foreign = {
            diff_id: layer.to_json()
            for diff_id, layer in zip(rec.diff_ids, manifest.layers, strict=False)
            if layer.media_type in NONDISTRIBUTABLE_TYPES
        }
        if foreign:
            item["LayerSources"] = foreign
        items.append(item)
        entry = {"mediaType": manifest.media_type, "digest": rec.manifests[0], "size": len(data)}
        platform = {"platform": svc.config(image_id).platform.to_json()}
        for tag in tags:
            annotations = {IMAGE_NAME: str(tag), REF_NAME: tag.tag or reference.DEFAULT_TAG}
            descriptors.append({**entry, "annotations": annotations, **platform})
            if layers:
                repositories.setdefault(tag.familiar_name, {})[tag.tag or "latest"] = layers[-1].partition(
                    ":"
                )[2]
        if not tags:
            descriptors.append({**entry, **platform})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    files: list[tuple[str, bytes]] = [
        ("index.json", canonical_json(index)),
        ("manifest.json", canonical_json(items) + b"\n"),
        ("oci-layout", _LAYOUT),
    ]
    if repositories:
        files.append(("repositories", canonical_json(repositories) + b"\n"))
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(_tar_info("blobs", directory=True))
        tf.addfile(_tar_info("blobs/sha256", directory=True))
        for digest in sorted(blobs):
            with svc.content.open(digest) as f:
                tf.addfile(_tar_info(blob_path(digest), os.fstat(f.fileno()).st_size), f)
        for name, data in files:
            tf.addfile(_tar_info(name, len(data)), _BytesReader(data))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)

    def read(self, n: int = -1) -> bytes:
        n = len(self._view) if n < 0 else n
        chunk, self._view = self._view[:n], self._view[n:]
        return bytes(chunk)


# ---- load --------------------------------------------------------------------------------------------------


def load(
    svc: ImageService, stream: BinaryIO, *, name: str | None = None, platform: Platform | None = None
) -> Loaded:
    """``docker load``: read an archive (plain, gzip or zstd), record its images and tags.

    ``name`` is the repository for OCI entries whose ref name is a bare tag (containerd's --base-name).
    """
    staged = Staged()
    created: list[str] = []
    records: list[tuple[FoundImage, ImageRecord]] = []
    messages: list[str] = []
    before = set(svc.content.list_digests())
    try:
        with gc.pinned(svc.store), svc.content.lease(f"load-{os.getpid()}-{uuid.uuid4().hex}") as lease:
            staged = stage(svc.content, stream, lease)
            if staged.has("manifest.json"):
                images = docker_images(svc.content, staged, lease)
                matching = matching_manifests(svc.content, staged)
                for image in images:
                    image.manifest, image.index = matching.get(
                        (image.config, tuple(image.layers)), (None, None)
                    )
            elif staged.has("index.json"):
                images = oci_images(svc.content, staged, platform or svc.platform, name)
            else:
                raise InvalidArgument(
                    "archive has neither manifest.json (docker save) nor index.json (OCI layout)"
                )
            for image in images:
                unpacked = Unpacked()
                try:
                    unpack_layers(
                        svc.content,
                        svc.snapshotter,
                        image.layers,
                        image.diff_ids,
                        verify_present=True,
                        out=unpacked,
                    )
                finally:
                    created += unpacked.created
                manifest = image.manifest or write_manifest(svc.content, lease, staged, image)
                records.append((image, ImageRecord(
                    id=image.config, manifests=(manifest,), index=image.index, platform=image.platform,
                    layers=tuple(image.layers), diff_ids=image.diff_ids, layer_sizes=tuple(unpacked.sizes),
                    added=time.time(),
                )))  # fmt: skip
            with svc.store.update() as state:
                for image, rec in records:
                    state.put(rec)
                    for tag in image.tags:
                        previous = state.set_tag(tag, rec.id)
                        if previous:
                            messages.append(
                                f"The image {tag.familiar()} already exists, renaming the old one with ID "
                                f"{previous} to empty string"
                            )
                        messages.append(f"Loaded image: {tag.familiar()}")
                    if not image.tags:
                        messages.append(f"Loaded image ID: {rec.id}")
    finally:
        # Whatever this load added and no image needs: junk files on success, everything on failure.
        gc.collect(
            svc.store,
            svc.content,
            svc.snapshotter,
            blobs=staged.ingested - before,
            snapshots=created,
            blocking=False,
        )
    loaded = tuple(
        LoadedImage(id=rec.id, tags=tuple(t.familiar() for t in image.tags)) for image, rec in records
    )
    return Loaded(images=loaded, messages=tuple(messages))


# ---- import and export -------------------------------------------------------------------------------------


def _go_now() -> str:
    ns = time.time_ns()
    fraction = f"{ns % 10**9:09d}".rstrip("0")
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9))
        + (f".{fraction}" if fraction else "")
        + "Z"
    )


def import_tarball(
    svc: ImageService,
    stream: BinaryIO,
    ref: str | None = None,
    changes: Sequence[str] = (),
    message: str = "",
    *,
    platform: Platform | None = None,
    source: str = "-",
) -> str:
    """``docker import``: a one-layer image from a root filesystem tarball (plain, gzip or zstd); its ID.

    The config is what moby's image_import.go writes: the ``--change`` lines applied to an empty container
    config, the comment ``Imported from -`` (or ``message``) at the top and in the single history entry.
    """
    target = reference.parse(ref) if ref else None
    if target is not None and target.digest:
        raise InvalidArgument("cannot import digest reference")
    container = listing.full_container_config(apply_changes(listing.full_container_config({}), changes))
    plat = platform or svc.platform
    added: set[str] = set()
    created: list[str] = []
    done = False
    before = set(svc.content.list_digests())
    try:
        with gc.pinned(svc.store), svc.content.lease(f"import-{os.getpid()}-{uuid.uuid4().hex}") as lease:
            try:
                reader, _ = decompressed(stream)
                digest = ingest(
                    svc.content, reader, ref=f"import-{uuid.uuid4().hex}", expected=None, size=None
                )
            except (EOFError, zlib.error, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise
                raise InvalidArgument(f"import: the tarball is corrupt or truncated: {exc}") from None
            lease.add(digest)
            added.add(digest)
            unpacked = Unpacked()
            try:
                unpack_layers(svc.content, svc.snapshotter, [digest], [digest], out=unpacked)
            finally:
                created = unpacked.created
            now = _go_now()
            comment = message or f"Imported from {source}"
            config: dict[str, Any] = {"comment": comment, "created": now, "config": container,
                                      "architecture": plat.architecture}  # fmt: skip
            if plat.variant:
                config["variant"] = plat.variant
            config["os"] = plat.os
            config["rootfs"] = {"type": "layers", "diff_ids": [digest]}
            config["history"] = [{"created": now, "comment": comment}]
            layer = Descriptor(media_type=DOCKER_LAYER, digest=digest, size=svc.content.size(digest))
            config_digest = store_image(
                svc, lease, added, config=config, layers=(layer,), diff_ids=(digest,),
                layer_sizes=tuple(unpacked.sizes), platform=str(plat), target=target,
            )  # fmt: skip
            done = True
    finally:
        if not done and (added or created):
            gc.collect(
                svc.store,
                svc.content,
                svc.snapshotter,
                blobs=added - before,
                snapshots=created,
                blocking=False,
            )
    return config_digest


def store_image(
    svc: ImageService,
    lease: Any,
    added: set[str],
    *,
    config: dict[str, Any],
    layers: Sequence[Descriptor],
    diff_ids: Sequence[str],
    layer_sizes: Sequence[int],
    platform: str,
    target: Reference | None,
    parent: str = "",
    stamp_tag: bool = False,
) -> str:
    """The last step of import and commit: the config and a Docker schema2 manifest into the content store
    (leased, and noted in ``added`` so the caller's clean-up can take them back), the image record, its tag."""
    config_bytes = canonical_json(config)
    config_digest = svc.content.ingest_bytes(config_bytes)
    lease.add(config_digest)
    added.add(config_digest)
    manifest = Manifest(
        media_type=DOCKER_MANIFEST,
        config=Descriptor(media_type=DOCKER_CONFIG, digest=config_digest, size=len(config_bytes)),
        layers=tuple(layers),
    )
    manifest_digest = svc.content.ingest_bytes(manifest.to_bytes())
    lease.add(manifest_digest)
    added.add(manifest_digest)
    now = time.time()
    rec = ImageRecord(
        id=config_digest, manifests=(manifest_digest,), platform=platform, layers=tuple(d.digest for d in layers),
        diff_ids=tuple(diff_ids), layer_sizes=tuple(layer_sizes), added=now, parent=parent,
        last_tag_time=now if stamp_tag and target else None,
    )  # fmt: skip
    svc.store.add(rec, tags=[target] if target else [])
    return config_digest


def export_image(svc: ImageService, ref: str, out: BinaryIO) -> None:
    """The image's flattened root filesystem as a tar (what ``docker export`` gives for a fresh container)."""
    rec = svc.store.find(ref)
    if not rec.diff_ids:
        write_merged([], out)
        return
    key = f"export-{os.getpid()}-{uuid.uuid4().hex}"
    with gc.pinned(svc.store):
        unpack_layers(svc.content, svc.snapshotter, rec.layers, rec.diff_ids)
        mounts = svc.snapshotter.view(key, rec.chain_id)
        try:
            write_merged(layer_dirs(mounts), out)
        finally:
            try:
                svc.snapshotter.remove(key)
            except KetchError:
                pass

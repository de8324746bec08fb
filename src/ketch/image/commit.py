"""``docker commit`` on the image side: a container's writable snapshot becomes a new image on top of its image.

What is written follows moby (image.NewChildImage, daemon/images/image_commit.go):

- the layer is the snapshot's changes against its parent: the overlay upper directory as it stands, or, for
  the naive snapshotter, the tree compared with the parent's (image/diff.py); stored uncompressed, as
  ``import`` stores its layer;
- a diff with no entries adds no layer: the history entry says ``empty_layer`` and ``rootfs`` is the
  parent's, as moby does when the diff ID is that of an empty tar;
- the config keeps the parent's architecture, variant, OS, OS version and features, ``rootfs.diff_ids`` and
  history, and adds one history entry (``created``, ``author``, ``created_by`` = the container's Cmd joined
  with spaces, ``comment``). ``config`` is the given container config with the ``--change`` lines applied,
  ``container_config`` that config as given, ``container`` the container's ID, ``author`` the author; the
  top-level keys are sorted as moby's MarshalJSON sorts them. ``comment`` goes only into the history entry;
- the manifest is Docker schema2: the parent's layer descriptors (in Docker media types) and the new layer;
- the record names the parent image; ``ref`` is tagged (with the tag time set, as moby's TagImage does).

Failure leaves the store as it was: the layer is ingested under a lease, the image recorded in one write at the
end, and the blobs and snapshots the attempt added are collected again (image/gc.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import uuid
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from ketch.common.errors import InvalidArgument
from ketch.image import gc, listing
from ketch.image.archive import _go_now, store_image
from ketch.image.changes import apply_changes
from ketch.image.diff import diff_naive, diff_overlay
from ketch.image.install import Unpacked, unpack_layers
from ketch.image.store import ImageRecord
from ketch.spec import reference
from ketch.spec.oci_image import (
    DOCKER_LAYER,
    Descriptor,
    canonical_json,
    parse_config,
    parse_manifest,
)

if TYPE_CHECKING:
    from ketch.image.content import ContentStore, Lease
    from ketch.image.service import ImageService

__all__ = ["commit_snapshot"]

# The parent's fields a child image keeps (everything else comes from the commit).
_INHERITED = ("architecture", "variant", "os", "os.version", "os.features")
# Go's archive/tar ends an empty archive with two zero blocks; moby's layer.EmptyLayer is their digest.
_GO_EMPTY_TAR = b"\0" * 1024


@cache
def _empty_diff_ids() -> frozenset[str]:
    """Diff IDs of a tar without entries: Go's, and the one image/diff.py writes (Python pads the record)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT):
        pass
    return frozenset("sha256:" + hashlib.sha256(data).hexdigest() for data in (_GO_EMPTY_TAR, buf.getvalue()))


def _target(ref: str | None) -> reference.Reference | None:
    if not ref:
        return None
    target = reference.parse(ref)
    if target.digest:
        raise InvalidArgument(f"cannot commit to a digest reference ({ref})")
    return target


def _write_diff(svc: ImageService, snapshot_key: str, parent_chain: str, out: BinaryIO) -> str:
    """Write the snapshot's changes to ``out`` as an uncompressed layer; return its diff ID."""
    snapshotter = svc.snapshotter
    info = snapshotter.stat(snapshot_key)
    if info.parent != parent_chain:
        raise InvalidArgument(
            f"snapshot {snapshot_key!r} is built on {info.parent or 'nothing'}, not on the image's top layer "
            f"{parent_chain or '(none)'}"
        )
    upper = snapshotter.fs_dir(snapshot_key)
    if snapshotter.layer_mode == "overlay":
        return diff_overlay(upper, out).diff_id
    lower = snapshotter.fs_dir(parent_chain) if parent_chain else None
    return diff_naive(lower, upper, out).diff_id


def _ingest_diff(
    svc: ImageService, lease: Lease, snapshot_key: str, parent_chain: str, container_id: str
) -> str | None:
    """The digest of the stored layer, or None (and nothing stored) when the diff is empty."""
    content: ContentStore = svc.content
    writer = content.writer(f"commit-{container_id or snapshot_key}-{uuid.uuid4().hex}")
    try:
        diff_id = _write_diff(svc, snapshot_key, parent_chain, cast("BinaryIO", writer))
        if diff_id in _empty_diff_ids():
            writer.abort()
            return None
        digest = writer.commit()
    except BaseException:
        writer.abort()
        raise
    lease.add(digest)
    return digest


def _parent_layers(svc: ImageService, rec: ImageRecord | None) -> list[Descriptor]:
    """The parent's layer descriptors from its manifest, in Docker media types."""
    if rec is None or not rec.layers:
        return []
    if not rec.manifests:
        raise InvalidArgument(f"image {rec.id} has no manifest: cannot commit on top of it")
    manifest = parse_manifest(svc.content.read_bytes(rec.manifests[0]))
    return [layer.converted("docker") for layer in manifest.layers]


def _image_config(
    parent: dict[str, Any],
    *,
    container_config: dict[str, Any],
    changes: Sequence[str],
    diff_ids: list[str],
    history: dict[str, Any],
    author: str,
    container_id: str,
    created: str,
    default_platform: dict[str, str],
) -> dict[str, Any]:
    config = listing.full_container_config(
        apply_changes(listing.full_container_config(container_config), changes)
    )
    out: dict[str, Any] = {key: parent[key] for key in _INHERITED if parent.get(key)}
    for key, value in default_platform.items():
        out.setdefault(key, value)
    parent_history = parent.get("history")
    out.update(
        {
            "config": config,
            "container_config": listing.full_container_config(container_config),
            "created": created,
            "history": [*(parent_history if isinstance(parent_history, list) else []), history],
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    )
    if author:
        out["author"] = author
    if container_id:
        out["container"] = container_id
    return dict(sorted(out.items()))


def commit_snapshot(
    svc: ImageService,
    *,
    parent_image_id: str,
    snapshot_key: str,
    container_config: dict[str, Any],
    ref: str | None,
    comment: str,
    author: str,
    changes: Sequence[str],
    container_id: str,
) -> str:
    """Make an image of ``parent_image_id`` plus the changes held by ``snapshot_key``; return its ID.

    ``container_config`` is a Docker container.Config object (the image config's ``config``); ``changes`` are
    ``--change`` lines applied to it; ``ref`` is tagged when given. See the module docstring.
    """
    target = _target(ref)
    # Check the changes before any work, so a bad line costs no diff.
    apply_changes(listing.full_container_config(container_config), changes)
    parent_rec = svc.store.get(parent_image_id) if parent_image_id else None
    parent: dict[str, Any] = json.loads(svc.content.read_bytes(parent_image_id)) if parent_rec else {}
    parent_diff_ids = list(parent_rec.diff_ids) if parent_rec else []
    layers = _parent_layers(svc, parent_rec)
    created: list[str] = []
    added: set[str] = set()
    done = False
    before = set(svc.content.list_digests())
    try:
        with gc.pinned(svc.store), svc.content.lease(f"commit-{os.getpid()}-{uuid.uuid4().hex}") as lease:
            layer = _ingest_diff(
                svc, lease, snapshot_key, parent_rec.chain_id if parent_rec else "", container_id
            )
            diff_ids = parent_diff_ids
            if layer is not None:
                added.add(layer)
                diff_ids = [*parent_diff_ids, layer]
                layers.append(Descriptor(media_type=DOCKER_LAYER, digest=layer, size=svc.content.size(layer)))
            unpacked = Unpacked()
            try:
                # The new layer becomes a committed snapshot now, so containers of the image start at once.
                unpack_layers(
                    svc.content, svc.snapshotter, [d.digest for d in layers], diff_ids, out=unpacked
                )
            finally:
                created = unpacked.created
            now = _go_now()
            entry: dict[str, Any] = {"created": now}
            if author:
                entry["author"] = author
            created_by = " ".join(container_config.get("Cmd") or ())
            if created_by:
                entry["created_by"] = created_by
            if comment:
                entry["comment"] = comment
            if layer is None:
                entry["empty_layer"] = True
            platform = {"architecture": svc.platform.architecture, "os": svc.platform.os}
            config = _image_config(
                parent, container_config=container_config, changes=changes, diff_ids=diff_ids, history=entry,
                author=author, container_id=container_id, created=now, default_platform=platform,
            )  # fmt: skip
            config_digest = store_image(
                svc, lease, added, config=config, layers=layers, diff_ids=diff_ids,
                layer_sizes=tuple(unpacked.sizes), platform=str(parse_config(canonical_json(config)).platform),
                target=target, parent=parent_image_id, stamp_tag=True,
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

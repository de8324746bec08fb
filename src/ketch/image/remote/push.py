"""Push: blobs first (skipping what the registry has), then manifests, children before the index.

For each blob: ``HEAD`` it (present: "Layer already exists"); else, when the source repository is on the
same registry, try a cross-repository mount (``POST .../blobs/uploads/?mount=<digest>&from=<path>``: 201
means mounted, 202 hands back an ordinary upload); else ``POST`` for an upload session. A blob up to
``chunk_size`` goes in one ``PUT <location>?digest=``; a bigger one in ``PATCH`` chunks with
``Content-Range``, then a closing ``PUT``. A failed upload starts again from the ``HEAD`` (the registry may
have it by then), up to the session's retry count. Manifests are ``PUT`` by digest for the children of an
index and by tag (or digest) for the top, and the digest the registry announces must be the one sent.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Any

import httpx

from ketch.common.errors import InvalidArgument, NotFound, Unavailable
from ketch.image.content import ContentStore
from ketch.image.remote import progress as events
from ketch.image.remote.auth import repository_scope
from ketch.image.remote.progress import Meter, Progress, short_id
from ketch.image.remote.resolve import fetch_manifest, head_manifest, manifest_path
from ketch.image.remote.transport import Session
from ketch.spec.oci_image import (
    INDEX_TYPES,
    NONDISTRIBUTABLE_TYPES,
    Descriptor,
    Manifest,
    detect,
    parse_config,
    parse_index,
    parse_manifest,
)
from ketch.spec.reference import Reference

__all__ = ["DEFAULT_CHUNK_SIZE", "push", "upload_blob"]

DEFAULT_CHUNK_SIZE = 8 << 20
_OCTETS = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class _Target:
    session: Session
    ref: Reference
    scopes: tuple[str, ...]
    mount_from: str | None  # repository path on the same registry
    chunk_size: int


def _location(response: httpx.Response) -> str:
    location = response.headers.get("location")
    if not location:
        raise Unavailable(
            f"registry answered {response.request.method} {response.request.url} without a Location"
        )
    return str(response.url.join(location))


def _with_digest(location: str, digest: str) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _upload_once(t: _Target, store: ContentStore, desc: Descriptor, meter: Meter | None) -> str:
    """One try at getting ``desc`` into the repository; returns the final action for the progress line."""
    session, ref = t.session, t.ref
    blob = f"/v2/{ref.path}/blobs/{desc.digest}"
    existing = session.request(
        "HEAD", blob, scopes=t.scopes, operation="blob", reference=ref, pushing=True, ok=(200, 404)
    )
    if existing.status_code == 200:
        return events.LAYER_ALREADY_EXISTS
    uploads = f"/v2/{ref.path}/blobs/uploads/"
    if t.mount_from:
        started = session.request(
            "POST",
            uploads,
            scopes=t.scopes,
            operation="upload",
            reference=ref,
            pushing=True,
            ok=(201, 202),
            params={"mount": desc.digest, "from": t.mount_from},
        )
        if started.status_code == 201:
            return f"Mounted from {t.mount_from}"
    if not store.exists(desc.digest):
        raise NotFound(f"blob {desc.digest} is not in the content store: cannot push it to {ref.name}")
    if not t.mount_from:
        started = session.request(
            "POST", uploads, scopes=t.scopes, operation="upload", reference=ref, pushing=True, ok=(202,)
        )
    location = _location(started)

    def upload(method: str, url: str, ok: int, **kwargs: Any) -> httpx.Response:
        return session.request(
            method, url, scopes=t.scopes, operation="upload", reference=ref, pushing=True, ok=(ok,),
            replayable=False, **kwargs,
        )  # fmt: skip

    if desc.size <= t.chunk_size:
        data = store.read_bytes(desc.digest)
        upload(
            "PUT", _with_digest(location, desc.digest), 201, content=data, headers={"Content-Type": _OCTETS}
        )
        if meter is not None:
            meter.reset(0)
            meter.advance(len(data))
        return events.PUSHED
    offset = 0
    if meter is not None:
        meter.reset(0)
    with store.open(desc.digest) as f:
        while chunk := f.read(t.chunk_size):
            content_range = f"{offset}-{offset + len(chunk) - 1}"
            answer = upload(
                "PATCH", location, 202, content=chunk,
                headers={"Content-Type": _OCTETS, "Content-Range": content_range},
            )  # fmt: skip
            location = _location(answer)
            offset += len(chunk)
            if meter is not None:
                meter.advance(len(chunk))
    upload("PUT", _with_digest(location, desc.digest), 201)
    return events.PUSHED


def upload_blob(
    t: _Target, store: ContentStore, desc: Descriptor, *, blob_id: str = "", progress: Progress | None = None
) -> None:
    meter = Meter(progress, blob_id, events.PUSHING, desc.size) if progress and blob_id else None
    attempt = 0
    while True:
        try:
            action = _upload_once(t, store, desc, meter)
            break
        except Unavailable:
            attempt += 1
            if attempt > t.session.retry.retries:
                raise
            t.session.sleep(attempt)
    if progress is not None and blob_id:
        progress.update(blob_id, action)


def _layer_ids(store: ContentStore, manifest: Manifest) -> list[str]:
    """dockerd names pushed layers by their diff IDs; the compressed digest stands in when counts differ."""
    try:
        diff_ids = parse_config(store.read_bytes(manifest.config.digest)).diff_ids
    except (InvalidArgument, NotFound):
        diff_ids = ()
    if len(diff_ids) != len(manifest.layers):
        return [short_id(layer.digest) for layer in manifest.layers]
    return [short_id(diff_id) for diff_id in diff_ids]


def _push_blobs(
    t: _Target, store: ContentStore, manifest: Manifest, progress: Progress | None, workers: int
) -> None:
    ids = _layer_ids(store, manifest)
    # Foreign layers stay where their URLs point; dockerd does not push them either.
    jobs = [
        (blob_id, layer)
        for blob_id, layer in zip(ids, manifest.layers, strict=True)
        if not (layer.media_type in NONDISTRIBUTABLE_TYPES and layer.urls)
    ]
    jobs = list({layer.digest: (blob_id, layer) for blob_id, layer in jobs}.values())
    if progress is not None:
        for blob_id, _ in jobs:
            progress.update(blob_id, events.PREPARING)
        for blob_id, _ in jobs[max(1, workers) :]:
            progress.update(blob_id, events.WAITING)
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, workers), thread_name_prefix="ketch-push"
    ) as pool:
        futures = [
            pool.submit(upload_blob, t, store, layer, blob_id=i, progress=progress) for i, layer in jobs
        ]
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        for future in futures:
            if future in done and future.exception() is not None:
                for other in futures:
                    other.cancel()
                raise future.exception()  # type: ignore[misc]
    upload_blob(t, store, manifest.config)


def _put_manifest(t: _Target, digest: str, data: bytes, media_type: str, target: str) -> None:
    response = t.session.request(
        "PUT",
        manifest_path(t.ref, target),
        scopes=t.scopes,
        operation="manifest",
        reference=t.ref,
        pushing=True,
        ok=(201,),
        content=data,
        headers={"Content-Type": media_type},
    )
    announced = (response.headers.get("docker-content-digest") or "").strip()
    if announced and announced != digest:
        raise InvalidArgument(f"registry {t.session.registry} stored manifest {digest} as {announced}")


def _push_image(
    t: _Target,
    store: ContentStore,
    digest: str,
    data: bytes,
    target: str,
    progress: Progress | None,
    workers: int,
) -> tuple[str, int]:
    media_type = detect(data)
    manifest = parse_manifest(data, media_type)
    _push_blobs(t, store, manifest, progress, workers)
    _put_manifest(t, digest, data, media_type, target)
    return media_type, len(data)


def _local(store: ContentStore, digest: str, what: str) -> bytes:
    try:
        return store.read_bytes(digest)
    except NotFound:
        raise NotFound(f"{what} {digest} is not in the content store: nothing to push") from None


def push(
    session: Session,
    ref: Reference,
    store: ContentStore,
    manifest_digest: str,
    *,
    index_digest: str | None = None,
    progress: Progress | None = None,
    mount_from: Reference | None = None,
    max_concurrency: int = 4,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> str:
    """Push the image, or the index with its children; returns the top digest.

    Children of an index come from ``store``, or, when missing there, from ``mount_from``'s repository on the
    same registry; a child found in neither must already be in the target repository.
    """
    scopes = [repository_scope(ref.path, ["pull", "push"])]
    source = None
    if mount_from is not None and mount_from.domain == ref.domain and mount_from.path != ref.path:
        source = mount_from.path
        scopes.append(repository_scope(source, ["pull"]))
    t = _Target(session, ref, tuple(scopes), source, max(1, chunk_size))
    tag = ref.tag or ""
    top_target = ref.tag or ref.digest or manifest_digest
    if ref.digest and ref.digest != (index_digest or manifest_digest):
        raise InvalidArgument(
            f"reference {ref} names digest {ref.digest}, but the content to push is {index_digest or manifest_digest}"
        )
    if progress is not None:
        progress.message(f"The push refers to repository [{ref.name}]")
    if index_digest is None:
        top, (_, size) = (
            manifest_digest,
            _push_image(
                t,
                store,
                manifest_digest,
                _local(store, manifest_digest, "manifest"),
                top_target,
                progress,
                max_concurrency,
            ),
        )
    else:
        data = _local(store, index_digest, "index")
        index = parse_index(data)
        if manifest_digest not in {entry.digest for entry in index.manifests}:
            raise InvalidArgument(f"manifest {manifest_digest} is not an entry of index {index_digest}")
        for entry in index.manifests:
            if entry.media_type in INDEX_TYPES:
                raise InvalidArgument(
                    f"index {index_digest} nests index {entry.digest}: not supported by push"
                )
            if store.exists(entry.digest):
                child = store.read_bytes(entry.digest)
                _push_image(t, store, entry.digest, child, entry.digest, progress, max_concurrency)
            elif mount_from is not None and source is not None:
                # A platform that was never pulled: copy it inside the registry, its blobs by mount.
                child = fetch_manifest(session, mount_from, t.scopes, entry.digest).data
                _push_image(t, store, entry.digest, child, entry.digest, progress, max_concurrency)
            else:
                try:
                    head_manifest(session, ref, t.scopes, entry.digest)
                except NotFound:
                    raise NotFound(
                        f"manifest {entry.digest} of index {index_digest} is neither local nor in {ref.name}"
                    ) from None
        _put_manifest(t, index_digest, data, index.media_type, top_target)
        top, size = index_digest, len(data)
    if progress is not None and tag:
        progress.message(f"{tag}: digest: {top} size: {size}")
        progress.aux({"Tag": tag, "Digest": top, "Size": size})
    return top

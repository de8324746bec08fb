"""Pull: reference -> (index ->) manifest -> config -> layers, every blob verified into the content store.

Invariants:

- Every blob is written through a content-store ingest that knows its expected digest and size, so a body
  that does not match never becomes visible; the ingest is dropped and the error names the digest.
- Ingests are named ``remote-<digest>``: a download cut short (a dropped connection, a killed process) keeps
  its bytes and the next attempt asks for the rest with ``Range: bytes=<offset>-``. A registry that ignores
  the range (200 instead of 206) gets the ingest restarted from zero.
- Every digest is added to the pull's lease before its blob is written, so gc cannot take a blob between
  its commit and the moment the caller records the image.
- Blobs already in the store are not fetched again ("Already exists"); index and manifest blobs are
  stored too, byte for byte as received.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

from ketch.common.errors import Conflict, InvalidArgument, KetchError, NotFound, Unavailable, Unsupported
from ketch.image.content import ContentStore, Lease, Writer
from ketch.image.remote import progress as events
from ketch.image.remote.auth import repository_scope
from ketch.image.remote.progress import Meter, Progress, short_id
from ketch.image.remote.resolve import FetchedManifest, fetch_manifest, head_manifest
from ketch.image.remote.transport import Session
from ketch.spec.oci_image import (
    INDEX_TYPES,
    Descriptor,
    Index,
    Manifest,
    detect,
    parse_any,
    parse_config,
    parse_manifest,
    select_manifest,
)
from ketch.spec.platform import Platform, host_platform
from ketch.spec.reference import Reference

__all__ = ["PullResult", "download_blob", "pull"]

_CONFLICT_POLL = 0.1  # seconds between looks at an ingest another puller holds
_CONFLICT_WAIT = 1800.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PullResult:
    index_digest: str | None
    manifest: Descriptor
    manifest_bytes: bytes
    config: Descriptor
    layers: list[Descriptor]
    reference: Reference  # as asked, with the digest of what was pulled (the index's, if there was one)


class _Cancelled(Exception):
    """Another download of the same pull failed; stop this one and keep its bytes for a resume."""


class _Present(Exception):
    """The blob appeared in the store (another puller committed it) while this one restarted its ingest."""


def _open_writer(store: ContentStore, desc: Descriptor) -> Writer | None:
    """The ingest for ``desc``; None when the blob is (or becomes) present. Waits out a concurrent writer."""
    deadline = time.monotonic() + _CONFLICT_WAIT
    while True:
        if store.exists(desc.digest):
            return None
        try:
            return store.writer(f"remote-{desc.digest}", expected_digest=desc.digest, expected_size=desc.size)
        except Conflict:
            if time.monotonic() > deadline:
                raise
            time.sleep(_CONFLICT_POLL)


def _restart(store: ContentStore, desc: Descriptor, writer: Writer) -> Writer:
    writer.abort()
    fresh = _open_writer(store, desc)
    if fresh is None:
        raise _Present
    return fresh


def _content_range_start(value: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes <start>-<end>/<size>``."""
    if not value:
        return None
    unit, _, rest = value.strip().partition(" ")
    start = rest.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _check(exc: InvalidArgument, desc: Descriptor, what: str) -> InvalidArgument:
    return InvalidArgument(f"{what} verification failed for digest {desc.digest}: {exc}")


def download_blob(
    session: Session,
    store: ContentStore,
    ref: Reference,
    desc: Descriptor,
    *,
    scopes: tuple[str, ...],
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    what: str = "filesystem layer",
) -> bool:
    """Fetch ``desc`` into ``store``, resuming a partial ingest; False when it was already there."""
    writer = _open_writer(store, desc)
    if writer is None:
        return False
    blob_id = short_id(desc.digest)
    meter = Meter(progress, blob_id, events.DOWNLOADING, desc.size) if progress else None
    external = [url for url in desc.urls if url.startswith(("https://", "http://"))]
    interruptions = 0
    try:
        while writer.offset < desc.size:
            headers = {"Accept-Encoding": "identity"}
            if writer.offset:
                headers["Range"] = f"bytes={writer.offset}-"
            try:
                if external:
                    response = session.external_get(external[0], headers)
                else:
                    response = session.request(
                        "GET",
                        f"/v2/{ref.path}/blobs/{desc.digest}",
                        scopes=scopes,
                        operation="blob",
                        reference=ref,
                        ok=(200, 206),
                        headers=headers,
                        stream=True,
                    )
            except KetchError:
                if not external:
                    raise  # the session already retried what was worth retrying
                external.pop(0)  # a foreign layer's URL failed: the next one, then the registry
                writer = _restart(store, desc, writer)
                continue
            try:
                if writer.offset and (
                    response.status_code == 200
                    or _content_range_start(response.headers.get("content-range")) != writer.offset
                ):
                    # The range was not honoured: start again from the first byte.
                    writer = _restart(store, desc, writer)
                if meter is not None:
                    meter.reset(writer.offset)
                for chunk in session.iter_body(response, "blob"):
                    if cancel is not None and cancel.is_set():
                        raise _Cancelled
                    try:
                        writer.write(chunk)
                    except InvalidArgument as exc:
                        raise _check(exc, desc, what) from exc
                    if meter is not None:
                        meter.advance(len(chunk))
            except Unavailable:
                pass  # cut off mid-body: resume below
            finally:
                response.close()
            if writer.offset < desc.size:
                interruptions += 1
                if interruptions > session.retry.retries:
                    raise Unavailable(
                        f"download of {desc.digest} from {session.registry} kept failing: got {writer.offset} of "
                        f"{desc.size} bytes after {interruptions} attempts"
                    )
                session.sleep(interruptions)
        if progress is not None:
            progress.update(blob_id, events.VERIFYING_CHECKSUM)
        try:
            writer.commit()
        except InvalidArgument as exc:
            raise _check(exc, desc, what) from exc
    except _Present:
        return False
    finally:
        # After commit or abort these do nothing; otherwise keep the bytes received for a resume.
        if writer.offset:
            writer.close()
        else:
            writer.abort()
    if progress is not None:
        progress.update(blob_id, events.DOWNLOAD_COMPLETE)
    return True


class _Puller:
    def __init__(
        self, session: Session, store: ContentStore, ref: Reference, lease: Lease, progress: Progress | None
    ) -> None:
        self.session, self.store, self.ref, self.lease, self.progress = session, store, ref, lease, progress
        self.scopes = (repository_scope(ref.path, ["pull"]),)

    def manifest_bytes(self, desc: Descriptor | None, target: str) -> FetchedManifest:
        """A manifest from the store when ``desc`` names one there, else from the registry; stored either way."""
        if desc is not None and self.store.exists(desc.digest):
            self.lease.add(desc.digest)
            data = self.store.read_bytes(desc.digest)
            return FetchedManifest(
                Descriptor(media_type=detect(data, desc.media_type), digest=desc.digest, size=len(data)), data
            )
        fetched = fetch_manifest(
            self.session, self.ref, self.scopes, target, size=desc.size if desc else None
        )
        self.lease.add(fetched.descriptor.digest)
        if not self.store.exists(fetched.descriptor.digest):
            self.store.ingest_bytes(fetched.data, fetched.descriptor.digest)
        return fetched

    def run(self, platform: Platform | None, max_concurrency: int) -> PullResult:
        ref = self.ref
        target = ref.digest or ref.tag or "latest"
        try:
            head = head_manifest(self.session, ref, self.scopes, target)
        except (Unsupported, NotFound):
            # 405: the registry does not allow HEAD; 404: the GET's body says why, as dockerd reports it.
            head = None
        top = self.manifest_bytes(head, head.digest if head else target)
        # Only now, as dockerd does: a missing image fails before any progress, so the API can still answer
        # with a status code instead of an error inside the stream.
        if self.progress is not None:
            self.progress.message(f"Pulling from {ref.path}", id=target)
        doc = parse_any(top.data, top.descriptor.media_type)
        index_digest: str | None = None
        manifest_desc, manifest_data = top.descriptor, top.data
        if isinstance(doc, Index):
            index_digest = top.descriptor.digest
            entry = select_manifest(doc, platform or host_platform())
            if entry.media_type in INDEX_TYPES:
                raise InvalidArgument(
                    f"index {index_digest} points at another index ({entry.digest}) for {platform}"
                )
            child = self.manifest_bytes(entry, entry.digest)
            if child.descriptor.digest != entry.digest:
                raise InvalidArgument(
                    f"manifest {entry.digest} of index {index_digest} does not match its digest"
                )
            manifest_desc = Descriptor(
                media_type=child.descriptor.media_type,
                digest=entry.digest,
                size=entry.size,
                platform=entry.platform,
            )
            manifest_data = child.data
            manifest: Manifest = parse_manifest(manifest_data, manifest_desc.media_type)
        else:
            manifest = doc
        self.lease.add(manifest.config.digest)
        download_blob(self.session, self.store, ref, manifest.config, scopes=self.scopes, what="image config")
        parse_config(self.store.read_bytes(manifest.config.digest))  # refuse a config that is not one
        self.layers(list(manifest.layers), max_concurrency)
        return PullResult(
            index_digest=index_digest,
            manifest=manifest_desc,
            manifest_bytes=manifest_data,
            config=manifest.config,
            layers=list(manifest.layers),
            reference=ref.with_digest(top.descriptor.digest),
        )

    def layers(self, layers: list[Descriptor], max_concurrency: int) -> None:
        unique = list({layer.digest: layer for layer in layers}.values())
        missing = []
        for layer in unique:
            self.lease.add(layer.digest)
            present = self.store.exists(layer.digest)
            if not present:
                missing.append(layer)
            if self.progress is not None:
                action = events.ALREADY_EXISTS if present else events.PULLING_FS_LAYER
                self.progress.update(short_id(layer.digest), action)
        workers = max(1, max_concurrency)
        if self.progress is not None:
            for layer in missing[workers:]:
                self.progress.update(short_id(layer.digest), events.WAITING)
        if not missing:
            return
        cancel = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ketch-pull"
        ) as pool:
            futures = [
                pool.submit(
                    download_blob,
                    self.session,
                    self.store,
                    self.ref,
                    layer,
                    scopes=self.scopes,
                    progress=self.progress,
                    cancel=cancel,
                )
                for layer in missing
            ]
            done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and not f.cancelled() and f.exception() is not None]
            if failed:
                cancel.set()
                for future in futures:
                    future.cancel()
        if failed:
            error = failed[0].exception()
            assert error is not None
            raise error


@contextmanager
def _own_lease(store: ContentStore) -> Iterator[Lease]:
    with store.lease(f"pull-{os.getpid()}-{uuid.uuid4().hex}") as lease:
        yield lease


def pull(
    session: Session,
    ref: Reference,
    store: ContentStore,
    *,
    platform: Platform | None = None,
    progress: Progress | None = None,
    max_concurrency: int = 4,
    lease: Lease | None = None,
) -> PullResult:
    """Pull ``ref`` into ``store`` under ``lease`` (or a lease held for the duration of the call)."""
    held: AbstractContextManager[Lease] = nullcontext(lease) if lease is not None else _own_lease(store)
    with held as active:
        return _Puller(session, store, ref, active, progress).run(platform, max_concurrency)

"""The image commands as a library: pull, push, tag, rmi, images, inspect, history, prune, save, load, import,
export, and the root filesystem of a new container. The engine wires them into the CLI and the API.

One ``ImageService`` owns a root directory: the content store (``<root>/content``), a snapshotter
(``<root>/snapshots/<driver>``) and the image store (``<root>/image``). Results are the Engine API's JSON
shapes, and errors carry Docker's wording where clients read it (``No such image: busybox:latest``,
``conflict: unable to delete ... (must be forced) - ...``).

Hooks the engine provides, since images know nothing of containers:

- ``in_use(image_id) -> [container IDs]``: containers created from the image;
- ``running(container_id) -> bool``: whether one of those is running. Docker refuses to delete an image a
  running container uses even with force, and a stopped one's only without force. Without this hook every
  user counts as running, the safe side.

rmi and prune follow moby (see image/delete.py): a reference untags; removing the last reference, or naming
the image by ID, deletes the image, then its unused snapshots and blobs. The collection after rmi does not
wait for a pull or load in progress (see image/gc.py); what it leaves is collected by the next ``prune`` or
``gc``. Archives (save, load, import, export) live in image/archive.py.
"""

from __future__ import annotations

import os
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from ketch.common.errors import InvalidArgument, NotFound
from ketch.image import gc, listing
from ketch.image.content import ContentStore, Lease
from ketch.image.delete import Deleter
from ketch.image.install import unpack_layers
from ketch.image.snapshots import Mount, Snapshotter, default_snapshotter
from ketch.image.store import ImageRecord, ImageStore, StoreState, short_id
from ketch.spec import reference
from ketch.spec.oci_image import Descriptor, ImageConfig, parse_config
from ketch.spec.platform import Platform, host_platform, parse_platform
from ketch.spec.reference import Reference

if TYPE_CHECKING:
    from ketch.image.archive import Loaded

__all__ = ["ImageService", "PullOutcome", "PullResultLike", "Registry"]

_LIST_FILTERS = ("dangling", "label", "before", "since", "reference", "until")
_ZERO_TIME = "0001-01-01T00:00:00Z"


class PullResultLike(Protocol):
    """What ``RegistryClient.pull`` returns (ketch.image.remote): the blobs it stored in the content store."""

    @property
    def index_digest(self) -> str | None: ...
    @property
    def manifest(self) -> Descriptor: ...
    @property
    def manifest_bytes(self) -> bytes: ...
    @property
    def config(self) -> Descriptor: ...
    @property
    def layers(self) -> Sequence[Descriptor]: ...


class Registry(Protocol):
    """What ketch.image.remote.RegistryClient offers; tests pass fakes."""

    def pull(
        self,
        ref: Reference,
        content: ContentStore,
        *,
        platform: Platform | None = None,
        progress: Any = None,
        lease: Lease | None = None,
    ) -> PullResultLike: ...

    def push(
        self,
        ref: Reference,
        content: ContentStore,
        manifest_digest: str,
        *,
        index_digest: str | None = None,
        progress: Any = None,
        mount_from: Reference | None = None,
    ) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PullOutcome:
    id: str  # image ID
    reference: str  # familiar form, as the final "Status:" line shows it
    digest: str  # the digest the reference resolved to (index or manifest)
    updated: bool  # False when the reference already named this image ("Image is up to date")


def _go_time(ts: float | None) -> str:
    if not ts:
        return _ZERO_TIME
    seconds = int(ts)
    nanos = min(round((ts - seconds) * 1e9), 999_999_999)
    fraction = f"{nanos:09d}".rstrip("0")
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (f".{fraction}" if fraction else "") + "Z"
    )


class ImageService:
    def __init__(
        self,
        root: str,
        *,
        snapshotter: Snapshotter | None = None,
        registry: Registry | None = None,
        in_use: Callable[[str], list[str]] | None = None,
        running: Callable[[str], bool] | None = None,
        platform: Platform | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        self.content = ContentStore(self.root)
        self.snapshotter = snapshotter if snapshotter is not None else default_snapshotter(self.root)
        self.store = ImageStore(self.root)
        self._registry = registry
        self._closer: weakref.finalize[[], ImageService] | None = None
        self._in_use = in_use or (lambda _image_id: [])
        self.platform = platform or host_platform()
        self._deleter = Deleter(
            self.store,
            self.content,
            self.snapshotter,
            in_use=self._in_use,
            running=running,
            config=self.config,
        )

    def set_container_hooks(self, in_use: Callable[[str], list[str]], running: Callable[[str], bool]) -> None:
        """Install the engine's hooks once it exists (the daemon builds the image service first)."""
        self._in_use = in_use
        self._deleter._in_use = in_use
        self._deleter._running = running

    @property
    def registry(self) -> Registry:
        """The registry client given, or an anonymous RegistryClient made on first use (closed by
        :meth:`close`, or when the service is garbage-collected)."""
        if self._registry is None:
            from ketch.image.remote import RegistryClient

            client = RegistryClient()
            self._registry = client
            self._closer = weakref.finalize(self, client.close)
        assert self._registry is not None
        return self._registry

    def close(self) -> None:
        """Drop the connections of a registry client this service made itself."""
        if self._closer is not None:
            self._closer()

    def __enter__(self) -> ImageService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading helpers

    def config(self, image_id: str) -> ImageConfig:
        try:
            return parse_config(self.content.read_bytes(image_id))
        except NotFound:
            raise NotFound(f"image {image_id}: its config blob is missing from the content store") from None

    def _platform(self, platform: str | Platform | None) -> Platform | None:
        if platform is None or isinstance(platform, Platform):
            return platform
        return parse_platform(platform, host=self.platform)

    # -- pull and push

    def pull(self, ref: str, platform: str | Platform | None = None, progress: Any = None) -> PullOutcome:
        """Fetch ``ref`` into the content store, unpack every layer not yet unpacked, record and tag it."""
        wanted = reference.parse(ref)
        with gc.pinned(self.store), self.content.lease(f"pull-{os.getpid()}-{uuid.uuid4().hex}") as lease:
            # The client adds each digest to the lease before writing its blob, so nothing it wrote can go
            # before the image is recorded, whatever collects garbage meanwhile.
            result = self.registry.pull(
                wanted, self.content, platform=self._platform(platform), progress=progress, lease=lease
            )
            if not self.content.exists(result.manifest.digest):
                self.content.ingest_bytes(result.manifest_bytes, result.manifest.digest)
            config = self.config(result.config.digest)
            layers = [layer.digest for layer in result.layers]
            unpacked = unpack_layers(
                self.content,
                self.snapshotter,
                layers,
                config.diff_ids,
                on_extract=_extract_reporter(progress),
            )
            record = ImageRecord(
                id=result.config.digest, manifests=(result.manifest.digest,), index=result.index_digest,
                platform=str(config.platform), layers=tuple(layers), diff_ids=config.diff_ids,
                layer_sizes=tuple(unpacked.sizes), added=time.time(),
            )  # fmt: skip
            resolved = result.index_digest or result.manifest.digest
            by_digest = Reference(wanted.domain, wanted.path, None, resolved)
            with self.store.update() as state:
                named = wanted if wanted.digest else Reference(wanted.domain, wanted.path, wanted.tag)
                updated = state.lookup(named) != record.id
                state.put(record)
                if not wanted.digest:
                    state.set_tag(named, record.id)
                state.add_digest(by_digest, record.id)
        if progress is not None:
            from ketch.image.remote.progress import finish_pull

            finish_pull(progress, wanted, resolved, updated=updated)
        return PullOutcome(id=record.id, reference=wanted.familiar(), digest=resolved, updated=updated)

    def push(self, ref: str, progress: Any = None) -> str:
        """Push the image ``ref`` names, as it was pulled, loaded or built (its first manifest, converting
        nothing); return the digest pushed, which is also recorded as a RepoDigest."""
        wanted = reference.parse(ref)
        state = self.store.read()
        image_id = state.lookup(wanted)
        if image_id is None:
            raise NotFound(f"An image does not exist locally with the tag: {wanted.familiar_name}")
        rec = state.get(image_id)
        if not rec.manifests:
            raise InvalidArgument(f"image {short_id(image_id)} has no manifest to push")
        # Another repository of the same registry holding the image lets the registry mount its blobs.
        mount_from = next(
            (
                r.name_only()
                for r in state.references(image_id)
                if r.domain == wanted.domain and r.path != wanted.path
            ),
            None,
        )
        with gc.pinned(self.store):
            digest = self.registry.push(
                wanted, self.content, rec.manifests[0], progress=progress, mount_from=mount_from
            )
        with self.store.update() as state:
            if image_id in state.images:
                state.add_digest(Reference(wanted.domain, wanted.path, None, digest), image_id)
        return digest

    # -- references

    def tag(self, source: str, target: str) -> None:
        """``docker tag``: point ``target`` at the image ``source`` names (moving it if it named another)."""
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        with self.store.update() as state:
            rec = state.find(source)
            state.set_tag(ref, rec.id)
            state.touch_tag_time(rec.id)

    # -- listings

    def images(
        self,
        filters: listing.FilterInput = None,
        all: bool = False,
        *,
        shared_size: bool = False,
        container_count: bool = False,
    ) -> list[dict[str, Any]]:
        """GET /images/json: newest first; untagged images listed with empty RepoTags (API 1.43+)."""
        f = listing.parse_filters(filters, _LIST_FILTERS)
        dangling_only = listing.bool_filter(f, "dangling", False)
        state = self.store.read()
        before = self._bound(state, f.get("before", []), min)
        since = self._bound(state, f.get("since", []), max)
        for value in f.get("until", []):
            until = listing.parse_until(value)
            before = until if before is None else min(before, until)
        counts: dict[str, int] = {}
        if shared_size:
            for rec in state.images.values():
                for chain in rec.chain_ids:
                    counts[chain] = counts.get(chain, 0) + 1
        out = []
        for rec in state.images.values():
            children = state.children(rec.id)
            if dangling_only and children:
                continue
            try:
                config = self.config(rec.id)
            except NotFound:  # a damaged image must not hide the others; inspect names the problem
                continue
            created = listing.parse_rfc3339(config.created)
            if before is not None and (created is None or not created < before):
                continue
            if since is not None and (created is None or not created > since):
                continue
            if "label" in f and not listing.match_kv(f["label"], config.config.labels):
                continue
            refs = state.references(rec.id)
            if "reference" in f:
                refs = [r for r in refs if any(listing.familiar_match(p, r) for p in f["reference"])]
            tags = [r.familiar() for r in refs if not r.digest]
            digests = [r.familiar() for r in refs if r.digest]
            if not tags and not digests:
                if not (all or not children) or ("dangling" in f and not dangling_only) or "reference" in f:
                    continue
            elif dangling_only and tags:
                continue
            shared = -1
            if shared_size:
                pairs = zip(rec.chain_ids, rec.layer_sizes, strict=True)
                shared = sum(size for chain, size in pairs if counts.get(chain, 0) > 1)
            out.append(
                listing.summary_shape(
                    image_id=rec.id, config=config, repo_tags=tags, repo_digests=digests, size=rec.size,
                    parent=rec.parent, shared_size=shared,
                    containers=len(self._in_use(rec.id)) if container_count else -1,
                )
            )  # fmt: skip
        out.sort(key=lambda s: (-s["Created"], s["Id"]))
        return out

    def _bound(
        self,
        state: StoreState,
        names: list[str],
        pick: Callable[[Iterable[tuple[int, int]]], tuple[int, int]],
    ) -> tuple[int, int] | None:
        times = []
        for name in names:
            created = listing.parse_rfc3339(self.config(state.find(name).id).created)
            if created is not None:
                times.append(created)
        return pick(times) if times else None

    def inspect(self, ref: str) -> dict[str, Any]:
        """GET /images/{name}/json."""
        state = self.store.read()
        rec = state.find(ref)
        return listing.inspect_shape(
            image_id=rec.id, config=self.config(rec.id), repo_tags=state.repo_tags(rec.id),
            repo_digests=state.repo_digests(rec.id), size=rec.size, parent=rec.parent,
            graph_driver=self._graph_driver(rec), last_tag_time=_go_time(rec.last_tag_time),
        )  # fmt: skip

    def _graph_driver(self, rec: ImageRecord) -> dict[str, Any]:
        driver = self.snapshotter.driver
        chains = rec.chain_ids
        try:
            dirs = [self.snapshotter.fs_dir(c) for c in chains]
        except (NotFound, InvalidArgument):
            dirs = []
        if not dirs:
            return {"Data": None, "Name": driver}
        if self.snapshotter.layer_mode != "overlay":
            return {"Data": {"Dir": dirs[-1]}, "Name": driver}
        data = {"UpperDir": dirs[-1], "WorkDir": os.path.join(os.path.dirname(dirs[-1]), "work")}
        if len(dirs) > 1:
            data = {"LowerDir": ":".join(reversed(dirs[:-1])), **data}
        return {"Data": data, "Name": driver}

    def history(self, ref: str) -> list[dict[str, Any]]:
        """GET /images/{name}/history."""
        state = self.store.read()
        rec = state.find(ref)
        return listing.history_items(
            image_id=rec.id, config=self.config(rec.id), layer_sizes=list(rec.layer_sizes),
            tags=state.repo_tags(rec.id),
        )  # fmt: skip

    # -- rmi, prune and gc (image/delete.py)

    def remove(self, ref_or_id: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """``docker rmi``: the API's list of ``{"Untagged": ...}`` and ``{"Deleted": ...}`` records."""
        return self._deleter.remove(ref_or_id, force, prune)

    def prune(self, dangling_only: bool = True, filters: listing.FilterInput = None) -> dict[str, Any]:
        """``docker image prune``: {"ImagesDeleted": [...] or None, "SpaceReclaimed": bytes}."""
        return self._deleter.prune(dangling_only, filters)

    def gc(self) -> gc.GCReport:
        """Remove every blob and layer snapshot that no image needs (waits for running pulls and loads)."""
        return gc.collect(self.store, self.content, self.snapshotter)

    # -- containers

    def rootfs_mounts(self, image: str, key: str, *, labels: dict[str, str] | None = None) -> list[Mount]:
        """Prepare the writable snapshot ``key`` on top of the image's layers; return its mounts.

        Layers whose snapshots were lost are unpacked again from their blobs. The engine removes the
        snapshot with ``snapshotter.remove(key)`` when the container goes.
        """
        with gc.pinned(self.store):
            rec = self.store.find(image)
            unpack_layers(self.content, self.snapshotter, rec.layers, rec.diff_ids)
            return self.snapshotter.prepare(key, rec.chain_id, labels=labels)

    # -- archives (image/archive.py)

    def save(self, refs: Sequence[str], out: BinaryIO) -> None:
        from ketch.image import archive

        archive.save(self, refs, out)

    def load(self, stream: BinaryIO, *, name: str | None = None) -> Loaded:
        from ketch.image import archive

        return archive.load(self, stream, name=name)

    def import_tarball(
        self,
        stream: BinaryIO,
        ref: str | None = None,
        changes: Sequence[str] = (),
        message: str = "",
        *,
        platform: str | Platform | None = None,
    ) -> str:
        from ketch.image import archive

        return archive.import_tarball(self, stream, ref, changes, message, platform=self._platform(platform))

    def export_image(self, ref: str, out: BinaryIO) -> None:
        from ketch.image import archive

        archive.export_image(self, ref, out)

    def commit(
        self,
        *,
        parent_image_id: str,
        snapshot_key: str,
        container_config: dict[str, Any],
        ref: str | None = None,
        comment: str = "",
        author: str = "",
        changes: Sequence[str] = (),
        container_id: str = "",
    ) -> str:
        """``docker commit``: a new image of the parent plus the snapshot's changes (image/commit.py)."""
        from ketch.image.commit import commit_snapshot

        return commit_snapshot(
            self, parent_image_id=parent_image_id, snapshot_key=snapshot_key, container_config=container_config,
            ref=ref, comment=comment, author=author, changes=changes, container_id=container_id,
        )  # fmt: skip


def _extract_reporter(progress: Any) -> Callable[[str, bool], None] | None:
    """Docker's ``Extracting`` and ``Pull complete`` lines for each layer unpacked during a pull."""
    if progress is None:
        return None
    from ketch.image.remote.progress import EXTRACTING, PULL_COMPLETE

    def report(layer: str, done: bool) -> None:
        blob = layer.partition(":")[2][:12]
        progress.update(blob, PULL_COMPLETE if done else EXTRACTING)

    return report

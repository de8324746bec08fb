"""The image metadata store: which images exist, where they came from, and which references name them.

Until the engine's SQLite database exists (docs/architecture.md, engine/db.py), everything lives in one JSON
file, ``<root>/image/index.json``. Writers hold an flock on ``<root>/image/index.lock`` for the whole
read-change-write and replace the file atomically (temporary file, fsync, rename); readers take no lock and
see either the old file or the new one.

Vocabulary:

- *image ID*: the sha256 digest of the config blob, exactly as Docker computes it (``sha256:<64 hex>``); the
  *short ID* is the first 12 hex digits.
- *tag reference*: ``docker.io/library/busybox:latest`` -> image ID; Docker shows it in RepoTags as
  ``busybox:latest``.
- *digest reference*: ``docker.io/library/busybox@sha256:<manifest or index digest>`` -> image ID; RepoDigests.
- *record*: what ketch knows of an image besides its config: the manifest digests it came from (the first,
  from the latest pull, load or build, is the one push and save use), the index digest, its platform, its
  layer blobs, diff IDs and sizes, and the chain ID of its top snapshot (snapshots are named by chain ID).

Invariants:

- every reference points at an image in ``images``; deleting an image deletes its references;
- a tag names one image: tagging moves it, as Docker always does since 1.10;
- GC roots are every image's config, manifests, index and layer blobs, and the chain IDs of its layers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ketch.common.atomic import atomic_write
from ketch.common.errors import InvalidArgument, NotFound, SystemFailure
from ketch.spec import reference
from ketch.spec.oci_image import chain_ids
from ketch.spec.reference import Reference

__all__ = ["AmbiguousImage", "ImageRecord", "ImageStore", "StoreState", "is_full_id", "short_id"]

_VERSION = 1
_HEX = frozenset("0123456789abcdef")


def short_id(image_id: str) -> str:
    """Docker's ``stringid.TruncateID``: the hex after the algorithm, cut to 12 characters."""
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


class AmbiguousImage(InvalidArgument):
    """A short ID prefix that matches more than one image."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    id: str
    manifests: tuple[str, ...] = ()  # manifest digests it came from; the first is the one push and save use
    index: str | None = None  # the index (manifest list) it was selected from, if any
    platform: str = ""  # os/architecture[/variant], from the config
    layers: tuple[str, ...] = ()  # layer blob digests, bottom first
    diff_ids: tuple[str, ...] = ()
    layer_sizes: tuple[int, ...] = ()  # bytes of each layer's files, as Docker's DiffSize counts them
    added: float = 0.0  # when ketch recorded the image (unix time)
    last_tag_time: float | None = None  # set by tag(), shown as Metadata.LastTagTime
    parent: str = ""  # the image it was built on (builds and commits only)

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def chain_id(self) -> str:
        """The chain ID of the top layer: the name of the snapshot a container starts from ("" for none)."""
        ids = self.chain_ids
        return ids[-1] if ids else ""

    @property
    def size(self) -> int:
        return sum(self.layer_sizes)

    def blobs(self) -> set[str]:
        out = {self.id, *self.manifests, *self.layers}
        if self.index:
            out.add(self.index)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "manifests": list(self.manifests),
            "index": self.index,
            "platform": self.platform,
            "layers": list(self.layers),
            "diff_ids": list(self.diff_ids),
            "layer_sizes": list(self.layer_sizes),
            "chain_id": self.chain_id,  # derived; written for people reading the file
            "size": self.size,
            "added": self.added,
            "last_tag_time": self.last_tag_time,
            "parent": self.parent,
        }

    @classmethod
    def from_json(cls, image_id: str, obj: dict[str, Any]) -> ImageRecord:
        return cls(
            id=image_id,
            manifests=tuple(obj.get("manifests") or ()),
            index=obj.get("index") or None,
            platform=str(obj.get("platform") or ""),
            layers=tuple(obj.get("layers") or ()),
            diff_ids=tuple(obj.get("diff_ids") or ()),
            layer_sizes=tuple(int(n) for n in obj.get("layer_sizes") or ()),
            added=float(obj.get("added") or 0.0),
            last_tag_time=obj.get("last_tag_time"),
            parent=str(obj.get("parent") or ""),
        )


def is_full_id(text: str) -> bool:
    """A whole image ID, with or without ``sha256:`` (a 64-hex name is never a repository, in Docker)."""
    hexpart = text.removeprefix("sha256:")
    return len(hexpart) == 64 and _HEX.issuperset(hexpart)


def _key(ref: Reference) -> str:
    """The stored form: full name with tag, or full name with digest (a tag next to a digest is dropped)."""
    if ref.digest:
        return f"{ref.name}@{ref.digest}"
    return f"{ref.name}:{ref.tag or reference.DEFAULT_TAG}"


@dataclass(slots=True)
class StoreState:
    """The whole store in memory. Pure: the methods change this object only; ImageStore saves it."""

    images: dict[str, ImageRecord] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    # -- lookups

    def get(self, image_id: str) -> ImageRecord:
        rec = self.images.get(image_id)
        if rec is None:
            raise NotFound(f"No such image: {image_id}")
        return rec

    def lookup(self, ref: Reference) -> str | None:
        """The image a tag or digest reference names, or None."""
        key = _key(ref)
        return (self.digests if ref.digest else self.tags).get(key)

    def search(self, prefix: str) -> str | None:
        """The image whose ID starts with ``prefix`` (with or without ``sha256:``); AmbiguousImage if several."""
        hexpart = prefix.removeprefix("sha256:")
        if not hexpart or not _HEX.issuperset(hexpart):
            return None
        found = [i for i in self.images if i.removeprefix("sha256:").startswith(hexpart)]
        if len(found) > 1:
            raise AmbiguousImage(f"ambiguous image ID prefix {prefix!r}: it matches {len(found)} images")
        return found[0] if found else None

    def find(self, text: str) -> ImageRecord:
        """Docker's GetImage: a full ID, then a tag or digest reference, then a unique ID prefix.

        NotFound says "No such image: <ref>" with the tag Docker would add (``No such image: nosuch:latest``).
        """
        if is_full_id(text):
            image_id = text if text.startswith("sha256:") else f"sha256:{text}"
            if image_id in self.images:
                return self.images[image_id]
            raise NotFound(f"No such image: {text}")
        ref = reference.parse(text, default_tag=False)
        found = self.lookup(reference.with_default_tag(ref))
        # A name without tag may be an ID prefix; so may "sha256:<prefix>", which parses as name:tag.
        if found is None and ((ref.tag is None and ref.digest is None) or text.startswith("sha256:")):
            found = self.search(text)
        if found is None:
            raise NotFound(f"No such image: {reference.with_default_tag(ref).familiar()}")
        return self.images[found]

    def references(self, image_id: str) -> list[Reference]:
        """Tags and digests naming the image, in Docker's order (by their familiar form)."""
        keys = [k for k, v in self.tags.items() if v == image_id]
        keys += [k for k, v in self.digests.items() if v == image_id]
        refs = [reference.parse(k, default_tag=False) for k in keys]
        return sorted(refs, key=lambda r: r.familiar())

    def repo_tags(self, image_id: str) -> list[str]:
        return [r.familiar() for r in self.references(image_id) if not r.digest]

    def repo_digests(self, image_id: str) -> list[str]:
        return [r.familiar() for r in self.references(image_id) if r.digest]

    def by_name(self, name: Reference) -> list[tuple[Reference, str]]:
        """Every reference of the repository ``name`` (tags and digests) with the image it names."""
        out = []
        for table in (self.tags, self.digests):
            for key, image_id in table.items():
                ref = reference.parse(key, default_tag=False)
                if ref.name == name.name:
                    out.append((ref, image_id))
        return sorted(out, key=lambda item: item[0].familiar())

    def children(self, image_id: str) -> list[str]:
        return sorted(i for i, rec in self.images.items() if rec.parent == image_id)

    def gc_roots(self) -> tuple[set[str], set[str]]:
        """(blob digests, snapshot chain IDs) that images still need."""
        blobs: set[str] = set()
        chains: set[str] = set()
        for rec in self.images.values():
            blobs |= rec.blobs()
            chains.update(rec.chain_ids)
        return blobs, chains

    # -- changes

    def put(self, rec: ImageRecord) -> ImageRecord:
        """Add an image, or update the one with its ID: the newest source's manifest comes first (push and
        save use it). Manifests of the same layer blobs accumulate; when the blobs differ (a pulled image
        replacing one loaded with uncompressed layers) the old manifests go, and gc collects their blobs."""
        old = self.images.get(rec.id)
        if old is not None:
            kept = old.manifests if old.layers == rec.layers else ()
            rec = replace(
                rec,
                manifests=tuple(dict.fromkeys((*rec.manifests, *kept))),
                index=rec.index or (old.index if kept else None),
                added=old.added,
                last_tag_time=old.last_tag_time,
                parent=rec.parent or old.parent,
            )
        self.images[rec.id] = rec
        return rec

    def set_tag(self, ref: Reference, image_id: str) -> str | None:
        """Point the tag ``ref`` at ``image_id``; return the image it named before, if another one."""
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        self.get(image_id)
        key = _key(ref)
        previous = self.tags.get(key)
        self.tags[key] = image_id
        return previous if previous != image_id else None

    def add_digest(self, ref: Reference, image_id: str) -> None:
        if not ref.digest:
            raise InvalidArgument(f"reference {ref} has no digest")
        self.get(image_id)
        self.digests[_key(ref)] = image_id

    def remove_ref(self, ref: Reference) -> bool:
        """Remove a tag or digest reference (a missing one is fine, as in Docker); True if it existed."""
        table = self.digests if ref.digest else self.tags
        return table.pop(_key(reference.with_default_tag(ref)), None) is not None

    def touch_tag_time(self, image_id: str, when: float | None = None) -> None:
        self.images[image_id] = replace(self.get(image_id), last_tag_time=when or time.time())

    def remove_image(self, image_id: str) -> ImageRecord:
        """Delete an image and every reference to it."""
        rec = self.get(image_id)
        del self.images[image_id]
        for table in (self.tags, self.digests):
            for key in [k for k, v in table.items() if v == image_id]:
                del table[key]
        return rec

    def copy(self) -> StoreState:
        return StoreState(images=dict(self.images), tags=dict(self.tags), digests=dict(self.digests))

    def restore(self, saved: StoreState) -> None:
        """Undo changes made since ``saved = state.copy()``."""
        self.images, self.tags, self.digests = dict(saved.images), dict(saved.tags), dict(saved.digests)

    # -- serialisation

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "images": {i: rec.to_json() for i, rec in sorted(self.images.items())},
            "tags": dict(sorted(self.tags.items())),
            "digests": dict(sorted(self.digests.items())),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str) -> StoreState:
        if obj.get("version") != _VERSION:
            raise SystemFailure(f"image store {where}: unknown version {obj.get('version')!r}")
        images = {i: ImageRecord.from_json(i, rec) for i, rec in (obj.get("images") or {}).items()}
        state = cls(images=images, tags=dict(obj.get("tags") or {}), digests=dict(obj.get("digests") or {}))
        # A reference to a missing image would break the invariant; drop it rather than fail every command.
        for table in (state.tags, state.digests):
            for key in [k for k, v in table.items() if v not in images]:
                del table[key]
        return state


class ImageStore:
    """Images and references under ``<root>/image``. See the module docstring for the file and its lock."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(os.path.abspath(root), "image")
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        self._file = os.path.join(self.path, "index.json")
        self._lock = os.path.join(self.path, "index.lock")

    def read(self) -> StoreState:
        try:
            with open(self._file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return StoreState()
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise SystemFailure(f"image store {self._file} is corrupt: {exc}") from exc
        return StoreState.from_json(obj, self._file)

    @contextlib.contextmanager
    def update(self) -> Iterator[StoreState]:
        """Hold the writers' lock, yield the state to change, and save it if the block returns normally."""
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self.read()
            before = state.to_json()
            yield state
            after = state.to_json()
            if after != before:
                atomic_write(self._file, json.dumps(after, indent=1).encode(), mode=0o600)
        finally:
            os.close(fd)

    # -- reading shortcuts

    def get(self, image_id: str) -> ImageRecord:
        return self.read().get(image_id)

    def find(self, text: str) -> ImageRecord:
        return self.read().find(text)

    def list(self) -> list[ImageRecord]:
        return sorted(self.read().images.values(), key=lambda r: r.id)

    def gc_roots(self) -> tuple[set[str], set[str]]:
        return self.read().gc_roots()

    # -- writing shortcuts

    def add(
        self, rec: ImageRecord, *, tags: Iterable[Reference] = (), digests: Iterable[Reference] = ()
    ) -> dict[str, str]:
        """Record an image with its references in one write; return {tag: image it moved away from}."""
        moved: dict[str, str] = {}
        with self.update() as state:
            state.put(rec)
            for ref in tags:
                previous = state.set_tag(ref, rec.id)
                if previous:
                    moved[ref.familiar()] = previous
            for ref in digests:
                state.add_digest(ref, rec.id)
        return moved

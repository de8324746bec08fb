"""rmi and image prune: moby's rules for untagging and deleting (daemon/images/image_delete.go and
image_prune.go) over the image store, then the collection of what deleted images leave.

A reference untags; removing the last reference, or naming an image by ID, deletes it. Conflicts, in
moby's words: *hard* ones (child images, running containers) even ``force`` cannot override; *soft* ones
(other references, stopped containers) only ``force`` can. After the store has changed, the deleted images'
blobs and layer snapshots are collected if nothing else needs them; each removed layer is reported as
``{"Deleted": <chain ID>}`` after its image's record, as Docker lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ketch.common.errors import Conflict, KetchError
from ketch.image import gc, listing
from ketch.image.content import ContentStore
from ketch.image.snapshots import Snapshotter
from ketch.image.store import ImageRecord, ImageStore, StoreState, short_id
from ketch.spec import reference
from ketch.spec.oci_image import ImageConfig
from ketch.spec.reference import Reference

__all__ = ["Deleter"]

_PRUNE_FILTERS = ("dangling", "label", "label!", "until")


@dataclass(slots=True)
class _Removal:
    """What one rmi (or a prune's many) did; layer records are added once the collection has run."""

    records: list[dict[str, str]] = field(default_factory=list)
    deleted: list[ImageRecord] = field(default_factory=list)


def _quoted(text: str) -> str:
    """Go's %q for the ASCII a reference may contain."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_id_prefix(image_id: str, text: str) -> bool:
    return image_id.startswith(text) or image_id.partition(":")[2].startswith(text)


def _is_single_reference(refs: list[Reference]) -> bool:
    """moby's isSingleReference: all references in one repository, and at most one tag."""
    if len(refs) <= 1:
        return len(refs) == 1
    tagged = [r for r in refs if not r.digest]
    if len(tagged) > 1:
        return False
    repos = {r.name for r in refs if r.digest}
    single = tagged[0] if tagged else refs[0]
    return len(repos) == 1 and single.name in repos


class Deleter:
    """rmi and prune for one image store. ``in_use`` and ``running`` are the engine's hooks (see
    image/service.py); ``config`` reads an image's config."""

    def __init__(
        self,
        store: ImageStore,
        content: ContentStore,
        snapshotter: Snapshotter,
        *,
        in_use: Callable[[str], list[str]],
        running: Callable[[str], bool] | None,
        config: Callable[[str], ImageConfig],
    ) -> None:
        self.store = store
        self.content = content
        self.snapshotter = snapshotter
        self._in_use = in_use
        self._running = running
        self.config = config

    def remove(self, ref_or_id: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """``docker rmi``: the API's list of ``{"Untagged": ...}`` and ``{"Deleted": ...}`` records."""
        removal = _Removal()
        with self.store.update() as state:
            self._remove(state, ref_or_id, force, prune, removal)
        return self._collect(removal, blocking=False)[0]

    def _users(self, image_id: str) -> tuple[list[str], list[str]]:
        users = list(self._in_use(image_id))
        if self._running is None:
            return users, []
        running = [c for c in users if self._running(c)]
        return running, [c for c in users if c not in running]

    def _remove(self, state: StoreState, text: str, force: bool, prune: bool, removal: _Removal) -> None:
        rec = state.find(text)
        refs = state.references(rec.id)
        untagged_repo = False
        if not _is_id_prefix(rec.id, text):
            if not force and _is_single_reference(refs):
                users = self._in_use(rec.id)
                if users:
                    raise Conflict(
                        f"conflict: unable to remove repository reference {_quoted(text)} (must force) - "
                        f"container {users[0][:12]} is using its referenced image {short_id(rec.id)}"
                    )
            parsed = reference.parse(text)
            if parsed.digest and parsed.tag:
                parsed = Reference(parsed.domain, parsed.path, None, parsed.digest)
            state.remove_ref(parsed)
            removal.records.append({"Untagged": parsed.familiar()})
            refs = state.references(rec.id)
            # With the last tag of a repository gone, its digest references go too.
            if not parsed.digest and not any(not r.digest and r.name == parsed.name for r in refs):
                for r in [r for r in refs if r.digest and r.name == parsed.name]:
                    state.remove_ref(r)
                    removal.records.append({"Untagged": r.familiar()})
                refs = state.references(rec.id)
            if refs:
                return
            untagged_repo = True
        elif _is_single_reference(refs):
            conflict = self._conflict(state, rec.id, hard=True, soft=not force, references=False)
            if conflict is not None:
                raise Conflict(conflict[0])
            for r in refs:
                state.remove_ref(r)
                removal.records.append({"Untagged": r.familiar()})
        self._delete(state, rec.id, force, prune, untagged_repo, removal)

    def _conflict(
        self, state: StoreState, image_id: str, *, hard: bool, soft: bool, references: bool = True
    ) -> tuple[str, bool] | None:
        """moby's checkImageDeleteConflict: (message, whether containers use it) or None."""
        running, stopped = self._users(image_id)
        found: tuple[str, bool, bool] | None = None  # message, hard, used
        if hard and state.children(image_id):
            found = ("image has dependent child images", True, False)
        elif hard and running:
            found = (f"image is being used by running container {running[0][:12]}", True, True)
        elif soft and references and state.references(image_id):
            found = ("image is referenced in multiple repositories", False, False)
        elif soft and stopped:
            found = (f"image is being used by stopped container {stopped[0][:12]}", False, True)
        if found is None:
            return None
        forced = "cannot be forced" if found[1] else "must be forced"
        return f"conflict: unable to delete {short_id(image_id)} ({forced}) - {found[0]}", found[2]

    def _delete(
        self, state: StoreState, image_id: str, force: bool, prune: bool, quiet: bool, removal: _Removal
    ) -> None:
        conflict = self._conflict(state, image_id, hard=True, soft=not force)
        if conflict is not None:
            dangling = not state.references(image_id) and not state.children(image_id)
            if quiet and (not dangling or conflict[1]):
                return
            raise Conflict(conflict[0])
        for r in state.references(image_id):
            removal.records.append({"Untagged": r.familiar()})
        rec = state.remove_image(image_id)
        removal.records.append({"Deleted": image_id})
        removal.deleted.append(rec)
        if prune and rec.parent and rec.parent in state.images:
            self._delete(state, rec.parent, False, True, True, removal)

    def _collect(self, removal: _Removal, *, blocking: bool) -> tuple[list[dict[str, str]], int]:
        """Collect what the deleted images left; put each removed layer after its image's record."""
        if not removal.deleted:
            return removal.records, 0
        blobs = set().union(*(rec.blobs() for rec in removal.deleted))
        chains = {c for rec in removal.deleted for c in rec.chain_ids}
        report = gc.collect(
            self.store, self.content, self.snapshotter, blobs=blobs, snapshots=chains, blocking=blocking
        )
        sizes = {c: s for rec in removal.deleted for c, s in zip(rec.chain_ids, rec.layer_sizes, strict=True)}
        removed = list(report.snapshots)
        records: list[dict[str, str]] = []
        for entry in removal.records:
            records.append(entry)
            owner = next((r for r in removal.deleted if entry.get("Deleted") == r.id), None)
            if owner is not None:
                mine = [c for c in removed if c in set(owner.chain_ids)]
                records.extend({"Deleted": c} for c in mine)
                removed = [c for c in removed if c not in mine]
        reclaimed = sum(sizes.get(c, 0) for c in report.snapshots) + report.blob_bytes
        return records, reclaimed

    def prune(self, dangling_only: bool = True, filters: listing.FilterInput = None) -> dict[str, Any]:
        """``docker image prune`` (moby's ImagesPrune): {"ImagesDeleted": [...], "SpaceReclaimed": n}."""
        f = listing.parse_filters(filters, _PRUNE_FILTERS)
        dangling_only = listing.bool_filter(f, "dangling", dangling_only)
        untils = [listing.parse_until(v) for v in f.get("until", [])]
        until = min(untils) if untils else None
        state = self.store.read()
        candidates = []
        for rec in sorted(state.images.values(), key=lambda r: r.id):
            refs = state.references(rec.id)
            if not refs and state.children(rec.id):
                continue
            config = self.config(rec.id)
            created = listing.parse_rfc3339(config.created)
            if until is not None and created is not None and created > until:
                continue
            labels = config.config.labels
            if not listing.match_kv(f.get("label", []), labels):
                continue
            if "label!" in f and listing.match_kv(f["label!"], labels):
                continue
            candidates.append(rec.id)
        removal = _Removal()
        for image_id in candidates:
            with self.store.update() as state:
                if image_id not in state.images:
                    continue
                refs = state.references(image_id)
                if refs and dangling_only and any(not r.digest for r in refs):
                    continue
                names = [str(r) for r in refs] or [image_id.partition(":")[2]]
                for name in names:
                    attempt, saved = _Removal(), state.copy()
                    try:
                        self._remove(state, name, False, True, attempt)
                    except KetchError:  # moby's imageDeleteFailed: skip it, go on
                        state.restore(saved)
                        continue
                    removal.records += attempt.records
                    removal.deleted += attempt.deleted
        records, reclaimed = self._collect(removal, blocking=True)
        return {"ImagesDeleted": records or None, "SpaceReclaimed": reclaimed}

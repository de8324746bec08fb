"""The snapshotter model (containerd core/snapshots/snapshotter.go) and the metadata both drivers share.

Vocabulary:

- A *snapshot* is a filesystem state. Every snapshot has a *parent*, the name of a committed snapshot, or
  ``""`` for the empty directory.
- ``key`` names an *active* snapshot (made by ``prepare``, writable, may be committed) or a *view* (made by
  ``view``, read-only, never committed). ``name`` names a *committed* snapshot (made by ``commit``,
  immutable, may be a parent). Keys and names share one namespace.
- Active snapshots never become committed ones: ``commit(name, key)`` creates the committed snapshot
  ``name`` with the active snapshot's parent and contents, and ``key`` ceases to exist.
- Snapshots with children cannot be removed; remove the children first.
- A snapshotter returns mounts (type, source, options) and never mounts anything itself.

Metadata lives in ``metadata.json`` under the snapshotter's directory, written atomically (temporary file,
fsync, rename) by writers that hold an flock on ``metadata.lock``; readers need no lock. Each snapshot
owns a numbered directory ``<n>/``; a directory no record points to (after a crash between making the
directory and writing the record) is removed by ``cleanup``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, ClassVar, Literal

from ketch.common.atomic import atomic_write
from ketch.common.errors import Conflict, InvalidArgument, NotFound, SystemFailure

__all__ = ["Info", "Kind", "Mount", "Snapshotter", "Usage"]

_METADATA_VERSION = 1


class Kind(Enum):
    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One mount to perform, in the order given: ``mount -t <type> -o <options> <source> <target>``."""

    type: str
    source: str
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "source": self.source, "options": list(self.options)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mount:
        return cls(type=data["type"], source=data["source"], options=tuple(data.get("options") or ()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    kind: Kind
    name: str
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Disk use of the snapshot's own directory, parents excluded; hard-linked inodes count once."""

    size: int
    inodes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record:
    id: str
    kind: Kind
    parent: str
    labels: dict[str, str]
    created: float
    updated: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "parent": self.parent,
            "labels": dict(self.labels),
            "created": self.created,
            "updated": self.updated,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Record:
        return cls(
            id=str(data["id"]),
            kind=Kind(data["kind"]),
            parent=str(data.get("parent", "")),
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
            created=float(data.get("created", 0.0)),
            updated=float(data.get("updated", 0.0)),
        )


@dataclass(slots=True)
class _Meta:
    next_id: int
    records: dict[str, _Record]


def _check_key(what: str, key: str) -> None:
    if not isinstance(key, str) or not key or "\0" in key:
        raise InvalidArgument(f"invalid snapshot {what} {key!r}: must be a non-empty string without NUL")


def _check_labels(labels: dict[str, str] | None) -> dict[str, str]:
    out = dict(labels or {})
    for k, v in out.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgument(f"invalid snapshot label {k!r}={v!r}: keys and values must be strings")
    return out


class Snapshotter(ABC):
    """Metadata logic shared by the drivers; subclasses lay out directories and build mounts.

    ``layer_mode`` tells the unpacker how to apply layers into this driver's active snapshots: "overlay"
    (the directory is an overlay upper: whiteouts become 0/0 character devices) or "naive" (the directory
    holds a full copy of the parent: whiteouts delete).
    """

    driver: ClassVar[str]
    layer_mode: ClassVar[Literal["overlay", "naive"]]

    def __init__(self, root: str) -> None:
        self.path = os.path.join(os.path.abspath(root), "snapshots", self.driver)
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        self._meta_file = os.path.join(self.path, "metadata.json")
        self._lock_file = os.path.join(self.path, "metadata.lock")

    # -- metadata file

    def _load(self) -> _Meta:
        try:
            with open(self._meta_file, "rb") as f:
                raw = json.loads(f.read())
        except FileNotFoundError:
            return _Meta(next_id=1, records={})
        except ValueError as exc:
            raise SystemFailure(f"snapshot metadata {self._meta_file} is corrupt: {exc}") from exc
        if raw.get("version") != _METADATA_VERSION:
            raise SystemFailure(
                f"snapshot metadata {self._meta_file}: unknown version {raw.get('version')!r}"
            )
        records = {k: _Record.from_json(v) for k, v in raw.get("snapshots", {}).items()}
        return _Meta(next_id=int(raw.get("next_id", 1)), records=records)

    def _save(self, meta: _Meta) -> None:
        data = {
            "version": _METADATA_VERSION,
            "next_id": meta.next_id,
            "snapshots": {k: r.to_json() for k, r in sorted(meta.records.items())},
        }
        atomic_write(self._meta_file, json.dumps(data, indent=1, sort_keys=True).encode(), mode=0o600)

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[_Meta]:
        """Hold the writers' lock; yield the metadata to change, save it if the block succeeds."""
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            meta = self._load()
            yield meta
            self._save(meta)
        finally:
            os.close(fd)

    def _get(self, meta: _Meta, key: str) -> _Record:
        rec = meta.records.get(key)
        if rec is None:
            raise NotFound(f"snapshot {key!r}: not found")
        return rec

    def _chain(self, meta: _Meta, parent: str) -> list[str]:
        """Directory ids from ``parent`` up to the root snapshot, nearest first."""
        ids = []
        while parent:
            rec = self._get(meta, parent)
            ids.append(rec.id)
            parent = rec.parent
        return ids

    def snapshot_dir(self, snapshot_id: str) -> str:
        return os.path.join(self.path, snapshot_id)

    def fs_dir(self, key: str) -> str:
        """The directory of an active or committed snapshot's own tree (``<n>/fs``).

        For the overlay driver it holds the snapshot's changes in overlay form (the upper directory); for
        the naive driver, the whole tree including the parents' contents. A layer is applied into the
        ``fs_dir`` of a fresh active snapshot. Views have none of their own (InvalidArgument).
        """
        rec = self._get(self._load(), key)
        if rec.kind is Kind.VIEW:
            raise InvalidArgument(f"snapshot {key!r} is a view: it has no directory of its own")
        return os.path.join(self.snapshot_dir(rec.id), "fs")

    # -- driver hooks

    @abstractmethod
    def _create_dirs(self, snapshot_id: str, kind: Kind, parent_ids: list[str]) -> None:
        """Make the directories of a new active or view snapshot."""

    @abstractmethod
    def _mounts(self, snapshot_id: str, kind: Kind, parent_ids: list[str]) -> list[Mount]:
        """Mounts for an active snapshot or view whose parents are ``parent_ids`` (nearest first)."""

    @abstractmethod
    def _usage_dir(self, snapshot_id: str) -> str:
        """The directory whose contents count as this snapshot's own usage."""

    # -- the snapshotter API

    def prepare(self, key: str, parent: str = "", *, labels: dict[str, str] | None = None) -> list[Mount]:
        """Create the active snapshot ``key`` on top of committed ``parent``; return its mounts."""
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str = "", *, labels: dict[str, str] | None = None) -> list[Mount]:
        """Create a read-only view ``key`` of committed ``parent``; return its mounts."""
        return self._create(Kind.VIEW, key, parent, labels)

    def _validate_new(self, meta: _Meta, key: str, parent: str) -> list[str]:
        if key in meta.records:
            raise Conflict(f"snapshot {key!r}: already exists")
        if parent:
            rec = self._get(meta, parent)
            if rec.kind is not Kind.COMMITTED:
                raise InvalidArgument(
                    f"parent snapshot {parent!r} is {rec.kind.value}: a parent must be committed"
                )
        return self._chain(meta, parent)

    def _create(self, kind: Kind, key: str, parent: str, labels: dict[str, str] | None) -> list[Mount]:
        _check_key("key", key)
        labels = _check_labels(labels)
        # Reserve an id under the lock, build the directories (the naive driver copies a whole tree)
        # without it, then insert the record after checking again that nobody took the key meanwhile.
        # The new directory stays flocked until its record exists, so ``cleanup`` leaves it alone.
        with self._write_lock() as meta:
            parent_ids = self._validate_new(meta, key, parent)
            snapshot_id = str(meta.next_id)
            meta.next_id += 1
        path = self.snapshot_dir(snapshot_id)
        os.mkdir(path, 0o700)
        lock_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            self._create_dirs(snapshot_id, kind, parent_ids)
            now = time.time()
            with self._write_lock() as meta:
                if self._validate_new(meta, key, parent) != parent_ids:
                    raise Conflict(f"snapshot {key!r}: parent {parent!r} changed while preparing")
                rec = _Record(
                    id=snapshot_id, kind=kind, parent=parent, labels=labels, created=now, updated=now
                )
                meta.records[key] = rec
        except BaseException:
            self._remove_dir(snapshot_id)
            raise
        finally:
            os.close(lock_fd)
        return self._mounts(snapshot_id, kind, parent_ids)

    def mounts(self, key: str) -> list[Mount]:
        """Mounts of an active snapshot or view (again); InvalidArgument for a committed one."""
        meta = self._load()
        rec = self._get(meta, key)
        if rec.kind is Kind.COMMITTED:
            raise InvalidArgument(
                f"snapshot {key!r} is committed: only active snapshots and views have mounts"
            )
        return self._mounts(rec.id, rec.kind, self._chain(meta, rec.parent))

    def commit(self, name: str, key: str, *, labels: dict[str, str] | None = None) -> None:
        """Turn the active snapshot ``key`` into the committed snapshot ``name``; ``key`` is gone after."""
        _check_key("name", name)
        new_labels = _check_labels(labels)
        with self._write_lock() as meta:
            rec = self._get(meta, key)
            if rec.kind is not Kind.ACTIVE:
                raise InvalidArgument(
                    f"snapshot {key!r} is {rec.kind.value}: only active snapshots can be committed"
                )
            if name in meta.records:
                raise Conflict(f"snapshot {name!r}: already exists")
            del meta.records[key]
            merged = {**rec.labels, **new_labels}
            meta.records[name] = replace(rec, kind=Kind.COMMITTED, labels=merged, updated=time.time())

    def remove(self, key: str) -> None:
        """Remove a snapshot of any kind; Conflict while other snapshots have it as parent."""
        with self._write_lock() as meta:
            rec = self._get(meta, key)
            children = sorted(k for k, r in meta.records.items() if r.parent == key)
            if children:
                raise Conflict(f"snapshot {key!r} has children {children}: remove them first")
            del meta.records[key]
        self._remove_dir(rec.id)

    def stat(self, key: str) -> Info:
        return _info(key, self._get(self._load(), key))

    def walk(self, *, kind: Kind | None = None, parent: str | None = None) -> list[Info]:
        """Every snapshot (sorted by name), optionally only those of one kind or with one parent."""
        meta = self._load()
        return [
            _info(key, rec)
            for key, rec in sorted(meta.records.items())
            if (kind is None or rec.kind is kind) and (parent is None or rec.parent == parent)
        ]

    def usage(self, key: str) -> Usage:
        rec = self._get(self._load(), key)
        return _disk_usage(self._usage_dir(rec.id))

    def cleanup(self) -> list[str]:
        """Remove snapshot directories that no record points to; return their ids.

        A directory being built holds an flock until its record is written; those are skipped.
        """
        removed = []
        with self._write_lock() as meta:
            used = {r.id for r in meta.records.values()}
            for entry in sorted(os.listdir(self.path)):
                if not entry.isdigit() or entry in used:
                    continue
                try:
                    fd = os.open(self.snapshot_dir(entry), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                else:
                    self._remove_dir(entry)
                    removed.append(entry)
                finally:
                    os.close(fd)
        return removed

    def _remove_dir(self, snapshot_id: str) -> None:
        path = self.snapshot_dir(snapshot_id)
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SystemFailure.from_oserror(f"remove snapshot directory {path}", exc) from exc


def _info(key: str, rec: _Record) -> Info:
    return Info(
        kind=rec.kind,
        name=key,
        parent=rec.parent,
        labels=dict(rec.labels),
        created=rec.created,
        updated=rec.updated,
    )


def _disk_usage(path: str) -> Usage:
    seen: set[tuple[int, int]] = set()
    size = 0

    def visit(p: str) -> None:
        nonlocal size
        st = os.lstat(p)
        ident = (st.st_dev, st.st_ino)
        if ident not in seen:
            seen.add(ident)
            size += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(p) as it:
                for entry in it:
                    visit(entry.path)

    if os.path.lexists(path):
        visit(path)
    return Usage(size=size, inodes=len(seen))

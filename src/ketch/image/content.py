"""Content store: immutable blobs addressed by digest, written through resumable ingests.

It knows nothing of snapshots, images or registries: bytes in, verified bytes out (containerd
plugins/content/local). Layout under ``<root>/content``::

    blobs/sha256/<hex>          committed blobs, mode 0444, never changed in place
    ingest/<sha256(ref)>/       one write in progress; the directory is named by the hash of the caller's ref
        data                    the bytes received so far
        ref                     the caller's ref
        total, expected         the expected size and digest, when the caller gave them
        startedat               unix time the ingest began
        checkpoint              "<offset> <sha256 hex of data[:offset]>", written when a writer closes unfinished
    leases/<sha256(name)>/      one held lease: a file "name" and one empty file "<alg>-<hex>" per digest
    gc.lock

Invariants:

- A file in ``blobs/`` has exactly the content its name says. Bytes are fsynced, their size and digest
  checked, then renamed in and the directory fsynced; a bad download never becomes visible there.
- Writers of one ref exclude each other with an flock on the ingest directory; the second gets Conflict.
  gc never removes an ingest whose lock is held.
- A lease is held through an flock on its directory, so another process sees both the lease and whether
  its holder is alive; gc drops leases whose holder has died.
- gc holds ``gc.lock`` exclusively from mark to sweep; ``Lease.add`` and ``Writer.commit`` hold it shared,
  so a digest added to a lease is never swept by a gc already running.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ketch.common.atomic import atomic_write, fsync_dir
from ketch.common.digest import SHA256, Hasher, parse_digest
from ketch.common.errors import Conflict, InvalidArgument, NotFound, SystemFailure, Unsupported

__all__ = ["ContentStore", "GCResult", "IngestStatus", "Lease", "Writer"]

_CHUNK = 1 << 20
DEFAULT_INGEST_MAX_AGE = 24 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestStatus:
    ref: str
    offset: int
    total: int | None
    expected: str | None
    started_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GCResult:
    removed: tuple[str, ...]
    freed_bytes: int
    ingests_removed: tuple[str, ...]
    leases_removed: tuple[str, ...]


def _name_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _check_name(kind: str, value: str) -> None:
    if not isinstance(value, str) or not value or "\0" in value:
        raise InvalidArgument(f"invalid {kind} {value!r}: must be a non-empty string without NUL")


def _sha256_hex(digest: str) -> str:
    alg, hexpart = parse_digest(digest)
    if alg != SHA256:
        raise Unsupported(f"content store keeps sha256 blobs only, not {digest}")
    return hexpart


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _flocked(path: str, operation: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


def _lock_dir(path: str, what: str) -> int:
    """Create ``path`` if needed and hold an exclusive flock on it; return the directory fd.

    After locking, the path must still name the directory we opened: a gc that removed it between our
    open and our lock would otherwise leave us holding a lock on a deleted directory.
    """
    for _ in range(100):
        os.makedirs(path, mode=0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict(f"{what} is in use by another writer") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise SystemFailure(f"could not lock {path}: it keeps being removed", path=path)


def _try_lock_existing(path: str) -> int | None:
    """Lock an existing directory without waiting; None if it is gone or someone holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Writer:
    """One ingest: ``write`` chunks, then ``commit`` (or ``abort``, or ``close`` to resume later).

    ``offset`` is where writing resumes: the size of the data already there, whose bytes were re-hashed
    when the writer opened (and checked against the checkpoint left by the previous writer, if any).
    """

    def __init__(
        self, store: ContentStore, ref: str, *, expected_digest: str | None, expected_size: int | None
    ) -> None:
        self._store = store
        self.ref = ref
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self._dir = store.ingest_dir(ref)
        self._lock_fd = _lock_dir(self._dir, f"ingest ref {ref!r}")
        self._fd = -1
        self._hasher = Hasher()
        try:
            self._open()
        except BaseException:
            self._release()
            raise

    def _file(self, name: str) -> str:
        return os.path.join(self._dir, name)

    def _open(self) -> None:
        total = None if self.expected_size is None else str(self.expected_size)
        fresh = (
            _read_text(self._file("ref")) != self.ref
            or _read_text(self._file("total")) != total
            or _read_text(self._file("expected")) != self.expected_digest
        )
        if fresh:
            # Bytes left by an ingest that expected another blob cannot be resumed.
            for name in ("data", "checkpoint", "total", "expected"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file(name))
            atomic_write(self._file("ref"), self.ref.encode(), durable=False)
            atomic_write(self._file("startedat"), f"{time.time():.6f}".encode(), durable=False)
            if total is not None:
                atomic_write(self._file("total"), total.encode(), durable=False)
            if self.expected_digest is not None:
                atomic_write(self._file("expected"), self.expected_digest.encode(), durable=False)
        self._fd = os.open(self._file("data"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._rehash()

    def _rehash(self) -> None:
        size = os.fstat(self._fd).st_size
        checkpoint = _read_text(self._file("checkpoint"))
        check_at, check_hex = -1, ""
        if checkpoint:
            parts = checkpoint.split()
            if len(parts) == 2 and parts[0].isdigit():
                check_at, check_hex = int(parts[0]), parts[1]
        if (self.expected_size is not None and size > self.expected_size) or check_at > size:
            self._reset()
            return
        os.lseek(self._fd, 0, os.SEEK_SET)
        while self._hasher.size < size:
            if self._hasher.size == check_at and self._hasher.hexdigest != check_hex:
                self._reset()
                return
            want = min(_CHUNK, size - self._hasher.size)
            if check_at > self._hasher.size:
                want = min(want, check_at - self._hasher.size)
            chunk = os.read(self._fd, want)
            if not chunk:
                break
            self._hasher.update(chunk)
        if self._hasher.size == check_at and self._hasher.hexdigest != check_hex:
            self._reset()
            return
        os.lseek(self._fd, self._hasher.size, os.SEEK_SET)
        os.ftruncate(self._fd, self._hasher.size)

    def _reset(self) -> None:
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file("checkpoint"))
        self._hasher = Hasher()

    @property
    def offset(self) -> int:
        return self._hasher.size

    @property
    def digest(self) -> str:
        """Digest of the bytes written so far."""
        return self._hasher.digest

    def _check_open(self) -> None:
        if self._fd < 0:
            raise InvalidArgument(f"ingest {self.ref!r} is closed")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._check_open()
        if self.expected_size is not None and self.offset + len(data) > self.expected_size:
            got = self.offset + len(data)
            self.abort()
            raise InvalidArgument(
                f"ingest {self.ref!r}: size mismatch: expected {self.expected_size} bytes, got at least {got}"
            )
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._hasher.update(data)
        return len(data)

    def commit(self) -> str:
        """Check size and digest, then make the blob visible; return its digest.

        A mismatch raises InvalidArgument naming expected and actual values and discards the ingest,
        so nothing appears in ``blobs/``. Committing a blob that already exists succeeds.
        """
        self._check_open()
        actual, size = self._hasher.digest, self._hasher.size
        if self.expected_size is not None and size != self.expected_size:
            self.abort()
            raise InvalidArgument(
                f"ingest {self.ref!r}: size mismatch: expected {self.expected_size} bytes, got {size} bytes"
            )
        if self.expected_digest is not None and actual != self.expected_digest:
            self.abort()
            raise InvalidArgument(
                f"ingest {self.ref!r}: digest mismatch: expected {self.expected_digest}, actual {actual}"
            )
        target = self._store.blob_path(actual)
        try:
            os.fsync(self._fd)
            with self._store.gc_shared():
                if not os.path.exists(target):
                    os.fchmod(self._fd, 0o444)
                    os.rename(self._file("data"), target)
                    fsync_dir(os.path.dirname(target))
        except OSError as exc:
            self.close()
            raise SystemFailure.from_oserror(f"commit blob {actual}", exc) from exc
        self.abort()
        return actual

    def abort(self) -> None:
        """Drop the ingest and everything written to it."""
        if self._lock_fd < 0:
            return
        shutil.rmtree(self._dir, ignore_errors=True)
        self._release()

    def close(self) -> None:
        """Keep what was written for a later writer of the same ref to resume from."""
        if self._lock_fd < 0:
            return
        try:
            if self._fd >= 0:
                os.fsync(self._fd)
                atomic_write(self._file("checkpoint"), f"{self.offset} {self._hasher.hexdigest}".encode())
        finally:
            self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        os.close(self._lock_fd)
        self._lock_fd = -1

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lease:
    """Digests protected from gc while the lease is held (see ``ContentStore.lease``)."""

    def __init__(self, store: ContentStore, name: str, path: str) -> None:
        self._store = store
        self.name = name
        self._path = path

    @staticmethod
    def _entry(digest: str) -> str:
        alg, hexpart = parse_digest(digest)
        return f"{alg}-{hexpart}"

    def add(self, digest: str) -> None:
        entry = self._entry(digest)
        with self._store.gc_shared():
            fd = os.open(os.path.join(self._path, entry), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)

    def remove(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._path, self._entry(digest)))

    def digests(self) -> set[str]:
        return _lease_digests(self._path)


def _lease_digests(path: str) -> set[str]:
    found: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(path):
            alg, sep, hexpart = entry.partition("-")
            if sep:
                found.add(f"{alg}:{hexpart}")
    return found


class ContentStore:
    """Blobs by sha256 digest under ``<root>/content``."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(os.path.abspath(root), "content")
        self._blobs = os.path.join(self.path, "blobs", SHA256)
        self._ingest = os.path.join(self.path, "ingest")
        self._leases = os.path.join(self.path, "leases")
        for d in (self._blobs, self._ingest, self._leases):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self._gc_lock = os.path.join(self.path, "gc.lock")

    # -- paths and locks

    def blob_path(self, digest: str) -> str:
        return os.path.join(self._blobs, _sha256_hex(digest))

    def ingest_dir(self, ref: str) -> str:
        _check_name("ingest ref", ref)
        return os.path.join(self._ingest, _name_hash(ref))

    def gc_shared(self) -> contextlib.AbstractContextManager[None]:
        return _flocked(self._gc_lock, fcntl.LOCK_SH)

    # -- writing

    def writer(
        self, ref: str, *, expected_digest: str | None = None, expected_size: int | None = None
    ) -> Writer:
        """Open (or resume) the ingest named ``ref``; Conflict if another writer holds it."""
        if expected_digest is not None:
            _sha256_hex(expected_digest)
        if expected_size is not None and (not isinstance(expected_size, int) or expected_size < 0):
            raise InvalidArgument(f"invalid expected size {expected_size!r} for ingest {ref!r}")
        return Writer(self, ref, expected_digest=expected_digest, expected_size=expected_size)

    def ingest_bytes(self, data: bytes, expected_digest: str | None = None) -> str:
        ref = f"bytes-{os.getpid()}-{time.monotonic_ns()}-{os.urandom(4).hex()}"
        with self.writer(ref, expected_digest=expected_digest, expected_size=len(data)) as w:
            w.write(data)
            return w.commit()

    def ingest_stream(
        self,
        stream: BinaryIO,
        *,
        ref: str,
        expected_digest: str | None = None,
        expected_size: int | None = None,
    ) -> str:
        """Copy ``stream`` into the store, resuming at the ingest's offset (``stream`` must start there)."""
        with self.writer(ref, expected_digest=expected_digest, expected_size=expected_size) as w:
            while chunk := stream.read(_CHUNK):
                w.write(chunk)
            return w.commit()

    def ingests(self) -> list[IngestStatus]:
        out = []
        for name in sorted(os.listdir(self._ingest)):
            d = os.path.join(self._ingest, name)
            ref = _read_text(os.path.join(d, "ref"))
            if ref is None:
                continue
            try:
                st = os.stat(os.path.join(d, "data"))
                offset, updated = st.st_size, st.st_mtime
            except FileNotFoundError:
                offset, updated = 0, os.stat(d).st_mtime
            total = _read_text(os.path.join(d, "total"))
            started = _read_text(os.path.join(d, "startedat"))
            out.append(
                IngestStatus(
                    ref=ref,
                    offset=offset,
                    total=int(total) if total else None,
                    expected=_read_text(os.path.join(d, "expected")),
                    started_at=float(started) if started else updated,
                    updated_at=updated,
                )
            )
        return out

    # -- reading

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def list_digests(self) -> list[str]:
        return sorted(f"{SHA256}:{name}" for name in os.listdir(self._blobs) if len(name) == 64)

    def verify(self, digest: str) -> None:
        """Re-hash a blob; InvalidArgument naming both digests if its bytes no longer match its name."""
        hasher = Hasher()
        with self.open(digest) as f:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
        if hasher.digest != digest:
            raise InvalidArgument(f"content {digest}: corrupt: expected {digest}, actual {hasher.digest}")

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    # -- leases and gc

    @contextlib.contextmanager
    def lease(self, name: str) -> Iterator[Lease]:
        """Hold a lease while the block runs; Conflict if a live holder has the same name."""
        _check_name("lease name", name)
        path = os.path.join(self._leases, _name_hash(name))
        fd = _lock_dir(path, f"lease {name!r}")
        try:
            for entry in os.listdir(path):  # left by a holder that died
                os.unlink(os.path.join(path, entry))
            atomic_write(os.path.join(path, "name"), name.encode(), durable=False)
            yield Lease(self, name, path)
        finally:
            shutil.rmtree(path, ignore_errors=True)
            os.close(fd)

    def leased(self) -> set[str]:
        """Digests protected by leases whose holders are alive."""
        return self._live_leases(remove_stale=False)[0]

    def _live_leases(self, *, remove_stale: bool) -> tuple[set[str], list[str]]:
        live: set[str] = set()
        stale: list[str] = []
        for entry in sorted(os.listdir(self._leases)):
            path = os.path.join(self._leases, entry)
            fd = _try_lock_existing(path)
            if fd is None:
                live |= _lease_digests(path)
                continue
            try:
                if remove_stale:
                    stale.append(_read_text(os.path.join(path, "name")) or entry)
                    shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(fd)
        return live, stale

    def gc(self, keep: set[str], *, ingest_max_age: float | None = DEFAULT_INGEST_MAX_AGE) -> GCResult:
        """Delete every blob not in ``keep`` nor in a live lease, and ingests idle for ``ingest_max_age`` s."""
        removed: list[str] = []
        freed = 0
        with _flocked(self._gc_lock, fcntl.LOCK_EX):
            live, stale = self._live_leases(remove_stale=True)
            for digest in self.list_digests():
                if digest in keep or digest in live:
                    continue
                path = self.blob_path(digest)
                try:
                    size = os.stat(path).st_size
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed.append(digest)
                freed += size
        ingests_removed = self._gc_ingests(ingest_max_age) if ingest_max_age is not None else []
        return GCResult(
            removed=tuple(removed),
            freed_bytes=freed,
            ingests_removed=tuple(ingests_removed),
            leases_removed=tuple(stale),
        )

    def _gc_ingests(self, max_age: float) -> list[str]:
        removed = []
        now = time.time()
        for name in sorted(os.listdir(self._ingest)):
            path = os.path.join(self._ingest, name)
            fd = _try_lock_existing(path)
            if fd is None:
                continue
            try:
                mtimes = [os.stat(path).st_mtime]
                for child in ("data", "ref"):
                    with contextlib.suppress(FileNotFoundError):
                        mtimes.append(os.stat(os.path.join(path, child)).st_mtime)
                if now - max(mtimes) < max_age:
                    continue
                removed.append(_read_text(os.path.join(path, "ref")) or name)
                try:
                    shutil.rmtree(path)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise SystemFailure.from_oserror(f"remove stale ingest {path}", exc) from exc
            finally:
                os.close(fd)
        return removed

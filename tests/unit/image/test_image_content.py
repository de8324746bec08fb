"""Content store: ingest, resume, verification, leases and gc, writers in other processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.unit.image.layers import sha256

from ketch.common.errors import Conflict, InvalidArgument, NotFound, Unsupported
from ketch.image.content import ContentStore

DATA = os.urandom(3 * (1 << 20) + 17)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(str(tmp_path))


def visible(store: ContentStore) -> list[str]:
    return sorted(os.listdir(os.path.join(store.path, "blobs", "sha256")))


def test_layout_and_roundtrip(store: ContentStore, tmp_path: Path) -> None:
    digest = store.ingest_bytes(DATA, expected_digest=sha256(DATA))
    assert digest == sha256(DATA)
    path = tmp_path / "content" / "blobs" / "sha256" / digest[7:]
    assert path.read_bytes() == DATA
    assert path.stat().st_mode & 0o777 == 0o444
    assert store.exists(digest) and store.size(digest) == len(DATA)
    assert store.read_bytes(digest) == DATA
    with store.open(digest) as f:
        assert f.read(5) == DATA[:5]
    assert store.list_digests() == [digest]
    store.verify(digest)
    assert os.listdir(tmp_path / "content" / "ingest") == []


def test_missing_blob_is_not_found(store: ContentStore) -> None:
    missing = sha256(b"nope")
    assert not store.exists(missing)
    for call in (store.size, store.read_bytes, store.open, store.delete, store.verify):
        with pytest.raises(NotFound, match=missing):
            call(missing)


def test_bad_digest_names_both_and_leaves_nothing(store: ContentStore) -> None:
    wrong = sha256(b"something else")
    with pytest.raises(InvalidArgument) as info:
        store.ingest_bytes(DATA, expected_digest=wrong)
    assert wrong in str(info.value) and sha256(DATA) in str(info.value)
    assert visible(store) == []
    assert store.ingests() == []


def test_bad_size_names_both_and_leaves_nothing(store: ContentStore) -> None:
    w = store.writer("short", expected_size=10)
    w.write(b"12345")
    with pytest.raises(InvalidArgument, match="expected 10 bytes, got 5 bytes"):
        w.commit()
    with pytest.raises(InvalidArgument, match="expected 3 bytes"):
        store.writer("long", expected_size=3).write(b"12345")
    assert visible(store) == [] and store.ingests() == []


def test_non_sha256_and_malformed_digests(store: ContentStore) -> None:
    with pytest.raises(Unsupported):
        store.writer("x", expected_digest="sha512:" + "a" * 128)
    with pytest.raises(InvalidArgument):
        store.exists("sha256:xyz")
    with pytest.raises(InvalidArgument):
        store.writer("")


def test_resume_after_close_rehashes_existing_bytes(store: ContentStore) -> None:
    w = store.writer("layer-1", expected_digest=sha256(DATA), expected_size=len(DATA))
    w.write(DATA[:1000])
    w.close()
    (status,) = store.ingests()
    assert (status.ref, status.offset, status.total, status.expected) == (
        "layer-1",
        1000,
        len(DATA),
        sha256(DATA),
    )
    w = store.writer("layer-1", expected_digest=sha256(DATA), expected_size=len(DATA))
    assert w.offset == 1000
    assert w.digest == sha256(DATA[:1000])
    w.write(DATA[1000:])
    assert w.commit() == sha256(DATA)
    assert store.read_bytes(sha256(DATA)) == DATA


def test_resume_after_crash_without_checkpoint(store: ContentStore) -> None:
    # A writer that died mid-way left data but no checkpoint: everything there is re-hashed.
    w = store.writer("crashy", expected_digest=sha256(DATA))
    w.write(DATA[:4096])
    os.close(w._fd)  # simulate the process dying: no close(), no checkpoint
    os.close(w._lock_fd)
    w2 = store.writer("crashy", expected_digest=sha256(DATA))
    assert w2.offset == 4096
    w2.write(DATA[4096:])
    assert w2.commit() == sha256(DATA)


def test_resume_detects_bytes_changed_behind_its_back(store: ContentStore) -> None:
    w = store.writer("tampered")
    w.write(b"A" * 100)
    w.close()
    data = os.path.join(store.ingest_dir("tampered"), "data")
    with open(data, "r+b") as f:
        f.write(b"B")
    w = store.writer("tampered")
    assert w.offset == 0  # the checkpoint no longer matches: start again
    w.write(b"fresh")
    assert w.commit() == sha256(b"fresh")


def test_resume_with_other_expectations_restarts(store: ContentStore) -> None:
    w = store.writer("ref", expected_digest=sha256(b"one"))
    w.write(b"on")
    w.close()
    w = store.writer("ref", expected_digest=sha256(b"two"))
    assert w.offset == 0
    w.write(b"two")
    assert w.commit() == sha256(b"two")


def test_writer_context_keeps_partial_data(store: ContentStore) -> None:
    with pytest.raises(RuntimeError), store.writer("ctx") as w:
        w.write(b"partial")
        raise RuntimeError("connection dropped")
    assert [s.offset for s in store.ingests()] == [7]
    w = store.writer("ctx")
    w.abort()
    assert store.ingests() == []


def test_commit_of_existing_blob_succeeds(store: ContentStore) -> None:
    first = store.ingest_bytes(b"same")
    assert store.ingest_bytes(b"same", expected_digest=first) == first
    assert store.list_digests() == [first]
    assert store.ingests() == []


def test_conflicting_writers_in_one_process(store: ContentStore) -> None:
    w = store.writer("shared-ref")
    with pytest.raises(Conflict, match="shared-ref"):
        store.writer("shared-ref")
    w.write(b"x")
    w.commit()
    store.writer("shared-ref").abort()  # free again once the first is done


def _run(code: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_conflicting_writer_in_another_process(store: ContentStore, tmp_path: Path) -> None:
    proc = _run(
        f"""
        import sys
        from ketch.image.content import ContentStore
        w = ContentStore({str(tmp_path)!r}).writer("cross")
        print("held", flush=True)
        sys.stdin.readline()
        w.close()
        """
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(Conflict):
            store.writer("cross")
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    store.writer("cross").abort()


def test_gc_keeps_roots_and_leased_blobs(store: ContentStore) -> None:
    keep = store.ingest_bytes(b"keep")
    leased = store.ingest_bytes(b"leased")
    garbage = store.ingest_bytes(b"garbage")
    with store.lease("pull-1") as lease:
        lease.add(leased)
        assert store.leased() == {leased}
        result = store.gc({keep})
        assert result.removed == (garbage,)
        assert result.freed_bytes == len(b"garbage")
        assert set(store.list_digests()) == {keep, leased}
    assert store.leased() == set()
    assert store.gc({keep}).removed == (leased,)
    assert store.list_digests() == [keep]


def test_lease_protects_blob_written_after_it(store: ContentStore) -> None:
    data = b"in flight"
    with store.lease("pull-2") as lease:
        lease.add(sha256(data))  # before the blob exists, as a pull does
        store.ingest_bytes(data)
        store.gc(set())
        assert store.exists(sha256(data))
        lease.remove(sha256(data))
        store.gc(set())
        assert not store.exists(sha256(data))


def test_lease_names_are_exclusive(store: ContentStore) -> None:
    with store.lease("build"), pytest.raises(Conflict, match="build"), store.lease("build"):
        pass


def test_lease_held_by_another_process_then_stale(store: ContentStore, tmp_path: Path) -> None:
    blob = store.ingest_bytes(b"other process")
    proc = _run(
        f"""
        import os, sys
        from ketch.image.content import ContentStore
        store = ContentStore({str(tmp_path)!r})
        cm = store.lease("remote")
        lease = cm.__enter__()
        lease.add({blob!r})
        print("held", flush=True)
        sys.stdin.readline()
        os._exit(0)  # die holding the lease: its files stay behind
        """
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    try:
        assert store.leased() == {blob}
        assert store.gc(set()).removed == ()
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert os.listdir(os.path.join(store.path, "leases")) != []  # left behind by the dead holder
    result = store.gc(set())
    assert result.removed == (blob,)
    assert result.leases_removed == ("remote",)
    assert os.listdir(os.path.join(store.path, "leases")) == []


def test_gc_removes_only_stale_unlocked_ingests(store: ContentStore) -> None:
    old = store.writer("old")
    old.write(b"o")
    old.close()
    live = store.writer("live")
    live.write(b"l")
    fresh = store.writer("fresh")
    fresh.write(b"f")
    fresh.close()
    past = time.time() - 7200
    for ref in ("old", "live"):
        d = store.ingest_dir(ref)
        for name in os.listdir(d):
            os.utime(os.path.join(d, name), (past, past))
        os.utime(d, (past, past))
    result = store.gc(set(), ingest_max_age=3600)
    assert result.ingests_removed == ("old",)
    assert sorted(s.ref for s in store.ingests()) == ["fresh", "live"]
    live.write(b"ive")
    assert live.commit() == sha256(b"live")
    assert store.gc(set(), ingest_max_age=None).ingests_removed == ()


def test_verify_detects_corruption(store: ContentStore) -> None:
    digest = store.ingest_bytes(b"pristine")
    path = store.blob_path(digest)
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(b"tampered")
    with pytest.raises(InvalidArgument) as info:
        store.verify(digest)
    assert digest in str(info.value) and sha256(b"tampered") in str(info.value)


def test_delete(store: ContentStore) -> None:
    digest = store.ingest_bytes(b"bye")
    store.delete(digest)
    assert not store.exists(digest)
    assert store.list_digests() == []

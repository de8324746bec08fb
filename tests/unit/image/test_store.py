"""The image metadata store: lookups as Docker resolves them, references, persistence and its lock."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path

import pytest

from ketch.common.errors import InvalidArgument, NotFound, SystemFailure
from ketch.image.store import AmbiguousImage, ImageRecord, ImageStore, StoreState, is_full_id, short_id
from ketch.spec.oci_image import chain_ids
from ketch.spec.reference import parse


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def record(name: str, **kw: object) -> ImageRecord:
    layers = kw.pop("layers", (digest(name + "-layer"),))
    diff_ids = kw.pop("diff_ids", (digest(name + "-diff"),))
    return ImageRecord(
        id=digest(name),
        manifests=(digest(name + "-manifest"),),
        layers=layers,  # type: ignore[arg-type]
        diff_ids=diff_ids,  # type: ignore[arg-type]
        layer_sizes=(100,) * len(diff_ids),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def state() -> StoreState:
    s = StoreState()
    for name in ("busybox", "alpine", "other"):
        s.put(record(name))
    s.set_tag(parse("busybox"), digest("busybox"))
    s.set_tag(parse("localhost:5000/bb:1"), digest("busybox"))
    s.add_digest(parse("busybox@" + digest("busybox-manifest")), digest("busybox"))
    s.set_tag(parse("alpine:3"), digest("alpine"))
    return s


def test_exports() -> None:
    import ketch.image.store as mod

    assert sorted(mod.__all__) == [
        "AmbiguousImage", "ImageRecord", "ImageStore", "StoreState", "is_full_id", "short_id",
    ]  # fmt: skip


def test_short_id_and_full_id() -> None:
    image_id = digest("x")
    assert short_id(image_id) == image_id[7:19]
    assert is_full_id(image_id) and is_full_id(image_id[7:])
    assert not is_full_id(image_id[7:30]) and not is_full_id("busybox")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("busybox", "busybox"),
        ("busybox:latest", "busybox"),
        ("docker.io/library/busybox:latest", "busybox"),
        ("localhost:5000/bb:1", "busybox"),
        ("busybox@" + digest("busybox-manifest"), "busybox"),
        ("busybox:ignored@" + digest("busybox-manifest"), "busybox"),  # the digest decides, as in Docker
        (digest("alpine"), "alpine"),
        (digest("alpine")[7:], "alpine"),
        (digest("alpine")[7:19], "alpine"),
        ("sha256:" + digest("alpine")[7:17], "alpine"),
        ("alpine:3", "alpine"),
    ],
)
def test_find(state: StoreState, text: str, name: str) -> None:
    assert state.find(text).id == digest(name)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nosuch", "No such image: nosuch:latest"),
        ("alpine", "No such image: alpine:latest"),  # only alpine:3 exists
        ("localhost:5000/bb:2", "No such image: localhost:5000/bb:2"),
        (digest("missing"), "No such image: " + digest("missing")),
    ],
)
def test_find_not_found_says_what_docker_says(state: StoreState, text: str, message: str) -> None:
    with pytest.raises(NotFound) as info:
        state.find(text)
    assert str(info.value) == message


def test_ambiguous_prefix() -> None:
    s = StoreState()
    ids = []
    for n in range(40):  # 40 IDs make two share a first hex digit
        rec = record(f"img{n}")
        s.put(rec)
        ids.append(rec.id)
    first = ids[0][7]
    assert sum(1 for i in ids if i[7] == first) > 1
    with pytest.raises(AmbiguousImage, match="ambiguous image ID prefix") as info:
        s.find(first)
    assert isinstance(info.value, InvalidArgument)


def test_bad_reference_is_invalid_argument(state: StoreState) -> None:
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        state.find("BusyBox")


def test_references_in_docker_order(state: StoreState) -> None:
    image_id = digest("busybox")
    assert state.repo_tags(image_id) == ["busybox:latest", "localhost:5000/bb:1"]
    assert state.repo_digests(image_id) == ["busybox@" + digest("busybox-manifest")]
    assert [str(r) for r, _ in state.by_name(parse("busybox", default_tag=False))] == [
        "docker.io/library/busybox:latest",
        "docker.io/library/busybox@" + digest("busybox-manifest"),
    ]


def test_tag_moves_and_reports_the_previous_image(state: StoreState) -> None:
    assert state.set_tag(parse("alpine:3"), digest("busybox")) == digest("alpine")
    assert state.set_tag(parse("alpine:3"), digest("busybox")) is None
    assert state.repo_tags(digest("alpine")) == []
    with pytest.raises(InvalidArgument, match="digest reference"):
        state.set_tag(parse("x@" + digest("m")), digest("busybox"))
    with pytest.raises(NotFound):
        state.set_tag(parse("x"), digest("missing"))


def test_remove_image_removes_its_references(state: StoreState) -> None:
    state.remove_image(digest("busybox"))
    assert state.tags == {"docker.io/library/alpine:3": digest("alpine")}
    assert state.digests == {}
    assert not state.remove_ref(parse("busybox"))


def test_put_puts_the_newest_manifest_first(state: StoreState) -> None:
    old = state.get(digest("busybox"))
    again = replace(old, manifests=(digest("second"),), index=digest("index"), added=99.0)
    merged = state.put(again)
    assert merged.manifests == (digest("second"), digest("busybox-manifest"))
    assert (merged.index, merged.added) == (digest("index"), old.added)
    # Other layer blobs (compressed now, say): the old manifests describe blobs this record no longer roots.
    other = replace(old, manifests=(digest("third"),), layers=(digest("gzip-layer"),), index=None)
    assert state.put(other).manifests == (digest("third"),)
    assert state.gc_roots()[0] >= {digest("third"), digest("gzip-layer")}
    assert digest("second") not in state.gc_roots()[0]


def test_gc_roots_cover_blobs_and_every_chain_prefix() -> None:
    s = StoreState()
    diff_ids = (digest("d1"), digest("d2"), digest("d3"))
    rec = record(
        "multi", diff_ids=diff_ids, layers=(digest("l1"), digest("l2"), digest("l3")), index=digest("i")
    )
    s.put(rec)
    blobs, chains = s.gc_roots()
    assert blobs == {rec.id, digest("multi-manifest"), digest("i"), digest("l1"), digest("l2"), digest("l3")}
    assert chains == set(chain_ids(diff_ids))
    assert rec.chain_id == chain_ids(diff_ids)[-1]
    assert rec.size == 300


def test_store_persists_atomically(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path))
    rec = record("busybox")
    store.add(rec, tags=[parse("busybox")], digests=[parse("busybox@" + digest("m"))])
    again = ImageStore(str(tmp_path))
    assert again.find("busybox") == rec
    on_disk = json.loads((tmp_path / "image" / "index.json").read_text())
    assert on_disk["tags"] == {"docker.io/library/busybox:latest": rec.id}
    assert on_disk["images"][rec.id]["chain_id"] == rec.chain_id
    assert [p.name for p in (tmp_path / "image").iterdir() if p.name.endswith(".tmp")] == []


def test_failed_update_saves_nothing(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path))
    store.add(record("busybox"), tags=[parse("busybox")])
    before = (tmp_path / "image" / "index.json").read_bytes()
    with pytest.raises(RuntimeError), store.update() as state:
        state.remove_image(digest("busybox"))
        raise RuntimeError("boom")
    assert (tmp_path / "image" / "index.json").read_bytes() == before


def test_dangling_reference_on_disk_is_dropped(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path))
    store.add(record("busybox"), tags=[parse("busybox")])
    path = tmp_path / "image" / "index.json"
    data = json.loads(path.read_text())
    data["tags"]["docker.io/library/ghost:latest"] = digest("ghost")
    path.write_text(json.dumps(data))
    assert store.read().tags == {"docker.io/library/busybox:latest": digest("busybox")}


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 99}'])
def test_corrupt_or_unknown_file_is_a_system_failure(tmp_path: Path, content: bytes) -> None:
    store = ImageStore(str(tmp_path))
    (tmp_path / "image" / "index.json").write_bytes(content)
    with pytest.raises(SystemFailure, match=r"index\.json"):
        store.read()


def _add_tags(root: str, worker: int, count: int) -> None:
    store = ImageStore(root)
    for n in range(count):
        with store.update() as state:
            if digest("shared") not in state.images:
                state.put(record("shared"))
            state.set_tag(parse(f"w{worker}:t{n}"), digest("shared"))


def test_writers_exclude_each_other(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_tags, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(ImageStore(str(tmp_path)).read().tags) == 60
    assert os.path.exists(tmp_path / "image" / "index.lock")

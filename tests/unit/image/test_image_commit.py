"""commit_snapshot (image/commit.py) on the naive snapshotter, no root needed: the layer it writes, the config
and record moby would write, an empty diff, and a failure that leaves the store as it was.

The overlay snapshotter runs the same scenario in tests/integration/image/test_commit_overlay.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.unit.image.layers import E, tar_members
from tests.unit.image.test_service import FakeRegistry, build_image, make_service

from ketch.common.errors import InvalidArgument, NotFound
from ketch.image import commit as commit_module
from ketch.image.service import ImageService
from ketch.image.snapshots import Kind
from ketch.spec.oci_image import DOCKER_LAYER, DOCKER_MANIFEST, chain_ids, parse_manifest

LAYERS = [
    [E("bin", "dir"), E("bin/sh", data=b"sh", mode=0o755), E("etc", "dir"), E("etc/passwd", data=b"root"),
     E("etc/motd", data=b"motd"), E("var", "dir"), E("var/cache", "dir"), E("var/cache/a", data=b"a")],
    [E("app", "dir"), E("app/run", data=b"run", mode=0o755)],
]  # fmt: skip
CONTAINER_CONFIG = {"Hostname": "c0ffee", "Env": ["PATH=/bin"], "Cmd": ["sh", "-c", "echo hi > /new"],
                    "Image": "base", "Labels": {"a": "1"}}  # fmt: skip
# What the container did: one file added, one changed, a file, a directory and a file of the top layer removed.
LAYER_ENTRIES = {"new", "etc", "etc/passwd", "etc/.wh.motd", "var", "var/.wh.cache", "app", "app/.wh.run"}
TREE_AFTER = {"bin", "bin/sh", "etc", "etc/passwd", "var", "app", "new"}


def change_tree(root: str) -> None:
    """What the container does to its root filesystem."""
    Path(root, "new").write_text("hi\n")
    Path(root, "etc", "passwd").write_text("root\nuser\n")
    os.unlink(os.path.join(root, "etc", "motd"))
    shutil.rmtree(os.path.join(root, "var", "cache"))
    os.unlink(os.path.join(root, "app", "run"))


def tree(root: str) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def commit(svc: ImageService, key: str = "ctr", **kwargs: Any) -> str:
    args: dict[str, Any] = {
        "parent_image_id": svc.store.find("base").id, "snapshot_key": key, "container_config": CONTAINER_CONFIG,
        "ref": "myimg:1", "comment": "msg", "author": "me <me@example.com>", "changes": ["ENV X=1"],
        "container_id": "c0ffee" * 10 + "abcd",
    }  # fmt: skip
    args.update(kwargs)
    return svc.commit(**args)


def check_committed(svc: ImageService, image_id: str) -> dict[str, Any]:
    """The record, manifest and layer of a commit of ``change_tree``; returns the config."""
    parent = svc.store.find("base")
    rec = svc.store.find("myimg:1")
    assert rec.id == image_id
    assert rec.parent == parent.id
    assert rec.diff_ids[:-1] == parent.diff_ids and len(rec.diff_ids) == len(parent.diff_ids) + 1
    assert rec.layers[:-1] == parent.layers
    assert rec.layers[-1] == rec.diff_ids[-1]  # stored uncompressed
    assert rec.last_tag_time is not None
    assert rec.layer_sizes[-1] == len(b"hi\n") + len(b"root\nuser\n")
    manifest = parse_manifest(svc.content.read_bytes(rec.manifests[0]))
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.config.digest == image_id
    assert [d.digest for d in manifest.layers] == list(rec.layers)
    assert manifest.layers[-1].media_type == DOCKER_LAYER
    members = tar_members(svc.content.read_bytes(rec.layers[-1]))
    assert {name.rstrip("/") for name in members} == LAYER_ENTRIES
    assert members["etc/.wh.motd"].isreg() and members["etc/.wh.motd"].size == 0
    # The layer is a committed snapshot already, named by its chain ID.
    assert svc.snapshotter.stat(rec.chain_id).kind is Kind.COMMITTED
    config: dict[str, Any] = json.loads(svc.content.read_bytes(image_id))
    assert config["rootfs"] == {"type": "layers", "diff_ids": list(rec.diff_ids)}
    return config


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    registry = FakeRegistry()
    registry.add("docker.io/library/base:latest", build_image(LAYERS, cmd=["sh"]))
    service = make_service(tmp_path / "root", registry)
    service.pull("base")
    service.rootfs_mounts("base", "ctr")
    return service


def test_commit_records_a_child_image_with_one_layer(svc: ImageService) -> None:
    change_tree(svc.snapshotter.fs_dir("ctr"))
    image_id = commit(svc)
    check_committed(svc, image_id)
    # A container of the new image sees the changed tree, contents included.
    svc.rootfs_mounts("myimg:1", "ctr2")
    root = svc.snapshotter.fs_dir("ctr2")
    assert tree(root) == TREE_AFTER
    assert Path(root, "new").read_text() == "hi\n"
    assert Path(root, "etc", "passwd").read_text() == "root\nuser\n"


def test_config_and_history_follow_moby(svc: ImageService) -> None:
    parent = json.loads(svc.content.read_bytes(svc.store.find("base").id))
    change_tree(svc.snapshotter.fs_dir("ctr"))
    config = check_committed(svc, commit(svc))
    assert list(config) == sorted(config)  # moby's MarshalJSON sorts the top level
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["author"] == "me <me@example.com>"
    assert config["container"] == "c0ffee" * 10 + "abcd"
    assert "comment" not in config  # NewChildImage puts the message in the history only
    assert config["config"]["Env"] == ["PATH=/bin", "X=1"]
    assert config["config"]["Cmd"] == ["sh", "-c", "echo hi > /new"]
    assert config["config"]["Hostname"] == "c0ffee" and config["config"]["Labels"] == {"a": "1"}
    assert config["container_config"]["Env"] == ["PATH=/bin"]  # as given, before the changes
    assert config["history"][:-1] == parent["history"]
    assert config["history"][-1] == {
        "created": config["created"], "author": "me <me@example.com>", "created_by": "sh -c echo hi > /new",
        "comment": "msg",
    }  # fmt: skip
    inspect = svc.inspect("myimg:1")
    assert inspect["Parent"] == svc.store.find("base").id
    assert inspect["Config"]["Env"] == ["PATH=/bin", "X=1"]
    history = svc.history("myimg:1")
    assert history[0]["CreatedBy"] == "sh -c echo hi > /new" and history[0]["Comment"] == "msg"
    assert history[0]["Size"] == len(b"hi\n") + len(b"root\nuser\n")
    assert history[0]["Tags"] == ["myimg:1"]


def test_an_empty_diff_adds_no_layer(svc: ImageService) -> None:
    parent = svc.store.find("base")
    before = set(svc.content.list_digests())
    image_id = commit(svc, ref=None, comment="", author="")
    rec = svc.store.get(image_id)
    assert rec.diff_ids == parent.diff_ids and rec.layers == parent.layers
    config = json.loads(svc.content.read_bytes(image_id))
    assert config["history"][-1] == {"created": config["created"], "created_by": "sh -c echo hi > /new",
                                     "empty_layer": True}  # fmt: skip
    assert "author" not in config
    assert set(svc.content.list_digests()) - before == {image_id, rec.manifests[0]}  # no layer blob
    assert svc.store.read().repo_tags(image_id) == []
    assert svc.history(image_id)[0]["Size"] == 0


def test_refusals_cost_nothing(svc: ImageService) -> None:
    change_tree(svc.snapshotter.fs_dir("ctr"))
    before = set(svc.content.list_digests())
    images = set(svc.store.read().images)
    with pytest.raises(InvalidArgument, match="from is not a valid change command"):
        commit(svc, changes=["FROM busybox"])
    with pytest.raises(InvalidArgument, match="digest"):
        commit(svc, ref="myimg@sha256:" + "a" * 64)
    with pytest.raises(NotFound):
        commit(svc, snapshot_key="no-such-snapshot")
    assert set(svc.content.list_digests()) == before
    assert set(svc.store.read().images) == images
    with pytest.raises(InvalidArgument, match="not on the image's top layer"):
        _commit_on_wrong_parent(svc)


def _commit_on_wrong_parent(svc: ImageService) -> str:
    """A snapshot built on another image's layers than the parent named."""
    registry = FakeRegistry()
    registry.add("docker.io/library/other:latest", build_image([LAYERS[0]], cmd=["sh"]))
    svc._registry = registry
    svc.pull("other")
    return commit(svc, parent_image_id=svc.store.find("other").id)


def test_a_failure_after_the_layer_leaves_nothing(svc: ImageService, monkeypatch: pytest.MonkeyPatch) -> None:
    change_tree(svc.snapshotter.fs_dir("ctr"))
    before = set(svc.content.list_digests())
    snapshots = {i.name for i in svc.snapshotter.walk()}
    state = svc.store.read().to_json()

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(svc.store, "add", refuse)
    with pytest.raises(OSError, match="No space"):
        commit(svc)
    assert set(svc.content.list_digests()) == before
    assert {i.name for i in svc.snapshotter.walk()} == snapshots
    assert svc.store.read().to_json() == state
    assert os.listdir(os.path.join(svc.content.path, "ingest")) == []


def test_empty_tar_ids_cover_go_and_python_tars() -> None:
    ids = commit_module._empty_diff_ids()
    # moby's layer.EmptyLayer, the digest of Go's empty tar
    assert "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef" in ids
    assert len(ids) == 2


def test_a_parent_without_layers(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "root")
    svc.snapshotter.prepare("scratch-ctr")
    Path(svc.snapshotter.fs_dir("scratch-ctr"), "only").write_text("x")
    image_id = svc.commit(parent_image_id="", snapshot_key="scratch-ctr", container_config={"Cmd": ["/only"]},
                          ref="scratchy")  # fmt: skip
    rec = svc.store.find("scratchy:latest")
    assert rec.id == image_id and rec.parent == "" and len(rec.diff_ids) == 1
    assert rec.chain_id == chain_ids(rec.diff_ids)[-1]
    config = json.loads(svc.content.read_bytes(image_id))
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["history"] == [{"created": config["created"], "created_by": "/only"}]

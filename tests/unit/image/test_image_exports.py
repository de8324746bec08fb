"""The public names of the image modules, pinned so that a change to them is deliberate."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

EXPORTS = {
    "ketch.common.digest": [
        "SHA256",
        "Hasher",
        "digest_bytes",
        "digest_stream",
        "hex_of",
        "is_digest",
        "parse_digest",
        "validate_digest",
    ],
    "ketch.image.content": ["ContentStore", "GCResult", "IngestStatus", "Lease", "Writer"],
    "ketch.image.snapshots": [
        "Info",
        "Kind",
        "Mount",
        "NaiveSnapshotter",
        "OverlaySnapshotter",
        "Snapshotter",
        "Usage",
        "default_snapshotter",
    ],
    "ketch.image.snapshots.base": ["Info", "Kind", "Mount", "Snapshotter", "Usage"],
    "ketch.image.snapshots.overlay": ["MAX_LOWER_DIRS", "OverlaySnapshotter", "supported", "why_unsupported"],
    "ketch.image.snapshots.naive": ["NaiveSnapshotter", "copy_tree", "supported"],
    "ketch.image.unpack": ["AppliedLayer", "apply_layer", "unpack_layer"],
    "ketch.image.compression": ["HashingReader", "decompressed", "detect_compression"],
    "ketch.image.diff": ["LayerDiff", "diff_naive", "diff_overlay"],
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exports(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPORTS[module])
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_content_knows_nothing_of_snapshots() -> None:
    import ketch.image.content as content
    import ketch.image.snapshots.base as base

    for mod in (content, base):
        source = Path(mod.__file__ or "").read_text()
        other = "snapshots" if mod is content else "content"
        assert f"ketch.image.{other}" not in source

"""The public names of the engine's modules and common.ids, pinned so that a change to them is deliberate."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "ketch.common.ids": [
        "FULL_LEN", "SHORT_LEN", "AmbiguousPrefix", "generate_id", "is_full_id", "lookup_prefix", "truncate_id",
    ],
    "ketch.engine.names": [
        "ADJECTIVES", "NAME_ATTEMPTS", "SURNAMES", "VALID_NAME_CHARS", "candidates", "canonical_name",
        "is_valid_name", "random_name",
    ],
    "ketch.engine.model": [
        "ZERO_TIME", "ContainerConfig", "ContainerRecord", "ContainerState", "Device", "Health", "HealthConfig",
        "HealthResult", "HostConfig", "HostLimits", "LogConfig", "Resources", "RestartPolicy", "Status", "Ulimit",
        "format_time", "parse_create_body", "parse_time",
    ],
    "ketch.engine.lifecycle": [
        "TRANSITIONS", "Event", "Refusal", "apply", "human_duration", "is_running", "render_state", "status_text",
        "transition",
    ],
    "ketch.engine.db": ["MIGRATIONS", "SCHEMA_VERSION", "Container", "ContainerFilters", "Database", "Migration"],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exports(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPORTS[module])
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_only_db_opens_the_database() -> None:
    from pathlib import Path

    import ketch

    root = Path(ketch.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "import sqlite3" in p.read_text())
    assert users == ["engine/db.py"]

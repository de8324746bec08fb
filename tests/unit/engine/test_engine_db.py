"""ketch.db: schema and migrations, transactions and crashes, names, lookups, renames and list filters."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ketch.common.errors import Conflict, InvalidArgument, NotFound, SystemFailure, Unsupported
from ketch.common.ids import AmbiguousPrefix, generate_id
from ketch.engine import db as dbmod
from ketch.engine.db import SCHEMA_VERSION, ContainerFilters, Database
from ketch.engine.lifecycle import Event, apply
from ketch.engine.model import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    Health,
    HealthResult,
    HostConfig,
    Status,
)

REPO = Path(__file__).resolve().parents[3]
IMAGE = "sha256:" + "1" * 64
OTHER_IMAGE = "sha256:" + "2" * 64
T0 = 1_700_000_000_000_000_000


def record(
    name: str = "",
    *,
    cid: str = "",
    image: str = IMAGE,
    created: int = T0,
    labels: dict[str, str] | None = None,
) -> ContainerRecord:
    return ContainerRecord(
        id=cid or generate_id(),
        name=name,
        image_id=image,
        created_at=created,
        config=ContainerConfig.from_api({"Image": "busybox", "Cmd": ["true"], "Labels": labels or {}}),
        host_config=HostConfig.from_api({"Memory": 64 << 20, "RestartPolicy": {"Name": "always"}}, host=None),
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database.open(tmp_path / "ketch.db") as database:
        yield database


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


# ---- opening and migrating --------------------------------------------------------------------------------


def test_a_new_database_is_migrated_and_tuned(tmp_path: Path) -> None:
    path = tmp_path / "ketch.db"
    with Database.open(path) as db:
        assert db.schema_version == SCHEMA_VERSION == 1
        conn = db._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert path.stat().st_mode & 0o777 == 0o600
    tables = {r[0] for r in raw(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"containers", "container_state"}


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "ketch.db"
    with Database.open(path) as db:
        created = db.create(record("web"))
        db.save_state(created.id, apply(ContainerState(), Event.START, created.id, now=T0, pid=99))
    with Database.open(path) as db:
        assert db.schema_version == SCHEMA_VERSION
        found = db.get("web")
        assert found.record == created
        assert found.state.status is Status.RUNNING and found.state.pid == 99 and found.state.started_at == T0


def v2_add_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE images (id TEXT PRIMARY KEY) STRICT")
    conn.execute("ALTER TABLE containers ADD COLUMN platform TEXT NOT NULL DEFAULT 'linux/amd64'")


def test_a_later_migration_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ketch.db"
    with Database.open(path) as db:
        kept = db.create(record("keep"))
    with Database.open(path, migrations=(*dbmod.MIGRATIONS, v2_add_table)) as db:
        assert db.schema_version == 2
        assert db.get("keep").record == kept
    platform = raw(path).execute("SELECT platform FROM containers").fetchone()[0]
    assert platform == "linux/amd64"


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ketch.db"
    with Database.open(path) as db:
        db.create(record("keep"))

    def v2_breaks(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError, match="migration bug"):
        Database.open(path, migrations=(*dbmod.MIGRATIONS, v2_breaks))
    check = raw(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 1
    assert check.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    with Database.open(path) as db:
        assert db.get("keep").record.name == "/keep"


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ketch.db"
    Database.open(path).close()
    conn = raw(path)
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    with pytest.raises(Unsupported, match="has schema version 7; this ketch knows versions up to 1"):
        Database.open(path)


def test_an_unopenable_path_is_a_system_failure(tmp_path: Path) -> None:
    with pytest.raises(SystemFailure, match="No such file or directory"):
        Database.open(tmp_path / "missing" / "ketch.db")


# ---- transactions and crashes -----------------------------------------------------------------------------


def test_an_error_rolls_the_whole_transaction_back(db: Database) -> None:
    first = db.create(record("first"))
    with pytest.raises(RuntimeError), db.transaction():
        db.create(record("second"))
        db.save_state(first.id, ContainerState(status=Status.DEAD))
        raise RuntimeError("engine failed half-way")
    assert [c.record.name for c in db.list_containers(ContainerFilters(all=True))] == ["/first"]
    assert db.state(first.id).status is Status.CREATED


def test_nested_blocks_roll_back_alone(db: Database) -> None:
    with db.transaction():
        db.create(record("outer"))
        with pytest.raises(Conflict), db.transaction():
            db.create(record("inner"))
            db.create(record("outer"))  # the name is taken: the inner block is undone
    names = {c.record.name for c in db.list_containers(ContainerFilters(all=True))}
    assert names == {"/outer"}


def test_readers_do_not_take_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "ketch.db"
    with Database.open(path) as db:
        db.create(record("web"))
        other = sqlite3.connect(path, isolation_level=None, timeout=0.1)
        other.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        assert db.get("web").record.name == "/web"
        assert len(db.list_containers(ContainerFilters(all=True))) == 1
        other.execute("ROLLBACK")


def test_a_second_writer_waits_then_fails(tmp_path: Path) -> None:
    path = tmp_path / "ketch.db"
    with Database.open(path) as db:
        other = sqlite3.connect(path, isolation_level=None, timeout=0.1)
        other.execute("BEGIN IMMEDIATE")
        db._conn.execute("PRAGMA busy_timeout = 100")
        with pytest.raises(SystemFailure, match="database is locked"), db.transaction():
            pass
        other.execute("ROLLBACK")
        with db.transaction():  # usable again
            pass


CRASHER = """
import os, signal, sys
from ketch.engine.db import Database
from ketch.engine.model import ContainerState, Status
from tests.unit.engine.test_engine_db import record

db = Database.open(sys.argv[1])
victim = db.get("victim").record.id
with db.transaction():
    db.create(record("ghost"))
    db.save_state(victim, ContainerState(status=Status.DEAD, error="half-written"))
    db.delete(db.get("doomed").record.id)
    if sys.argv[2] == "before-commit":
        os.kill(os.getpid(), signal.SIGKILL)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("when", ["before-commit", "after-commit"])
def test_a_crash_leaves_the_state_before_or_after_the_transaction(tmp_path: Path, when: str) -> None:
    path = tmp_path / "ketch.db"
    with Database.open(path) as db:
        db.create(record("victim"))
        db.create(record("doomed"))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASHER), str(path), when],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert Path(str(path) + "-wal").exists()  # the crash left the log behind for recovery
    with Database.open(path) as db:
        assert db._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = {c.record.name for c in db.list_containers(ContainerFilters(all=True))}
        victim = db.get("victim").state
        if when == "before-commit":
            assert names == {"/victim", "/doomed"} and victim.status is Status.CREATED and victim.error == ""
        else:
            assert (
                names == {"/victim", "/ghost"}
                and victim.status is Status.DEAD
                and victim.error == "half-written"
            )


# ---- create, names, lookups -------------------------------------------------------------------------------


def test_create_stores_the_record_and_its_state(db: Database) -> None:
    created = db.create(record("web", labels={"tier": "front"}), ContainerState(status=Status.CREATED))
    assert created.name == "/web"
    found = db.get(created.id)
    assert found.record == created and found.record.labels == {"tier": "front"}
    assert found.record.host_config.restart_policy.name == "always"
    assert found.state == ContainerState()


def test_a_taken_name_is_a_conflict_with_dockers_message(db: Database) -> None:
    holder = db.create(record("web"))
    with pytest.raises(Conflict) as info:
        db.create(record("/web"))
    assert str(info.value) == (
        f'Conflict. The container name "/web" is already in use by container "{holder.id}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )
    assert len(db.list_containers(ContainerFilters(all=True))) == 1


def test_invalid_names_and_duplicate_ids_are_refused(db: Database) -> None:
    with pytest.raises(InvalidArgument, match=r"Invalid container name \(a b\)"):
        db.create(record("a b"))
    first = db.create(record("one"))
    with pytest.raises(Conflict, match="already exists"):
        db.create(record("two", cid=first.id))
    assert [c.record.name for c in db.list_containers(ContainerFilters(all=True))] == ["/one"]


class SameWords(random.Random):
    """Always proposes calm_curie, and 0 as the retry digit: every retry collides."""

    def choice(self, seq: Sequence[Any]) -> Any:
        return "calm" if "calm" in seq else "curie"

    def randrange(self, *args: Any, **kwargs: Any) -> int:
        return 0


def test_generated_names_retry_then_fall_back_to_the_short_id(db: Database) -> None:
    names = [db.create(record(), rng=SameWords()).name for _ in range(3)]
    third = db.list_containers(ContainerFilters(all=True))
    assert names[:2] == ["/calm_curie", "/calm_curie0"]
    assert names[2] == "/" + next(c.record.id for c in third if c.record.name == names[2])[:12]
    assert all(len(c.record.name) > 1 for c in third)


def test_generated_names_are_valid_and_distinct(db: Database) -> None:
    names = {db.create(record()).name for _ in range(30)}
    assert len(names) == 30 and all(n.startswith("/") and "_" in n for n in names)


def test_lookup_order_full_id_then_name_then_prefix(db: Database) -> None:
    a = db.create(record("alpha", cid="abc1" + "0" * 60))
    b = db.create(record("beta", cid="abc2" + "0" * 60))
    assert db.get(a.id).record == a
    assert db.get("alpha").record == a and db.get("/alpha").record == a
    assert db.get("abc1").record == a and db.get("abc2000").record == b
    with pytest.raises(AmbiguousPrefix, match=r"^Multiple IDs found with provided prefix: abc$"):
        db.get("abc")
    named_abc = db.create(record("abc", cid="f" * 64))
    assert db.get("abc").record == named_abc  # a name beats a prefix
    impostor = db.create(record(b.id, cid="e" * 64))
    assert db.get(b.id).record == b  # a full ID beats a name
    assert db.get("/" + b.id).record == impostor
    with pytest.raises(NotFound, match=r"^No such container: nope$"):
        db.get("nope")
    with pytest.raises(InvalidArgument, match=r'^invalid name or ID supplied: ""$'):
        db.get("")


def test_state_round_trip_and_missing_rows(db: Database) -> None:
    created = db.create(record("web"))
    state = ContainerState(
        status=Status.RESTARTING, pid=0, exit_code=3, started_at=T0, finished_at=T0 + 5, oom_killed=True,
        error="x", restart_count=2, manually_stopped=True,
        health=Health(status="unhealthy", failing_streak=3,
                      log=(HealthResult(start=T0, end=T0 + 1000, exit_code=1, output="no"),)),
    )  # fmt: skip
    db.save_state(created.id, state)
    assert db.state(created.id) == state
    with pytest.raises(NotFound):
        db.save_state("0" * 64, state)
    with pytest.raises(NotFound):
        db.state("0" * 64)


def test_replace_config(db: Database) -> None:
    created = db.create(record("web"))
    bigger = replace(created.host_config, resources=replace(created.host_config.resources, memory=128 << 20))
    db.replace_config(created.id, created.config, bigger)
    assert db.get("web").record.host_config.resources.memory == 128 << 20
    with pytest.raises(NotFound):
        db.replace_config("0" * 64, created.config, bigger)


# ---- rename and delete ------------------------------------------------------------------------------------


def test_rename(db: Database) -> None:
    web = db.create(record("web"))
    assert db.rename("web", "site") == "/web"
    assert db.get("site").record.id == web.id
    with pytest.raises(NotFound):
        db.get("web")
    db.create(record("web"))  # the old name is free again


@pytest.mark.parametrize(
    ("old", "new", "error", "message"),
    [
        ("", "x", InvalidArgument, "Neither old nor new names may be empty"),
        ("web", "", InvalidArgument, "Neither old nor new names may be empty"),
        ("web", "web", InvalidArgument, "Renaming a container with the same name as its current name"),
        ("web", "/web", InvalidArgument, "Renaming a container with the same name as its current name"),
        ("web", "a b", InvalidArgument,
         "Error when allocating new name: Invalid container name (/a b), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
        ("nope", "x", NotFound, "No such container: nope"),
    ],
)  # fmt: skip
def test_rename_refusals(db: Database, old: str, new: str, error: type[Exception], message: str) -> None:
    db.create(record("web"))
    with pytest.raises(error) as info:
        db.rename(old, new)
    assert str(info.value) == message


def test_rename_to_a_taken_name(db: Database) -> None:
    web = db.create(record("web"))
    db_ = db.create(record("db"))
    with pytest.raises(Conflict) as info:
        db.rename("web", "db")
    assert str(info.value) == (
        f'Error when allocating new name: Conflict. The container name "/db" is already in use by container '
        f'"{db_.id}". You have to remove (or rename) that container to be able to reuse that name.'
    )
    assert db.get("web").record.id == web.id


def test_delete_takes_the_state_along(db: Database) -> None:
    web = db.create(record("web"))
    db.delete(web.id)
    with pytest.raises(NotFound):
        db.get("web")
    assert db._conn.execute("SELECT count(*) FROM container_state").fetchone()[0] == 0
    with pytest.raises(NotFound):
        db.delete(web.id)
    db.create(record("web"))


def test_a_state_row_needs_its_container(db: Database) -> None:
    with pytest.raises(SystemFailure, match="FOREIGN KEY constraint failed"), db.transaction():
        db._conn.execute("INSERT INTO container_state (id, status) VALUES (?, 'created')", ("0" * 64,))


# ---- list and filters -------------------------------------------------------------------------------------


@pytest.fixture
def fleet(db: Database) -> dict[str, str]:
    """Seven containers created a second apart, oldest first, in every interesting state."""
    specs: list[tuple[str, Status, dict[str, Any], str, dict[str, str]]] = [
        ("web1", Status.RUNNING, {"pid": 1, "started_at": T0}, IMAGE, {"tier": "front", "env": "prod"}),
        ("web2", Status.EXITED, {"exit_code": 0, "started_at": T0, "finished_at": T0}, IMAGE, {"tier": "front"}),
        ("db", Status.EXITED, {"exit_code": 1, "started_at": T0, "finished_at": T0}, OTHER_IMAGE, {"tier": "back"}),
        ("fresh", Status.CREATED, {}, IMAGE, {}),
        ("frozen", Status.PAUSED, {"pid": 2, "started_at": T0}, OTHER_IMAGE, {"env": "prod"}),
        ("flaky", Status.RESTARTING, {"exit_code": 1, "started_at": T0, "health": Health(status="unhealthy")},
         IMAGE, {}),
        ("myweb", Status.RUNNING, {"pid": 3, "started_at": T0, "health": Health(status="healthy")}, IMAGE, {}),
    ]  # fmt: skip
    ids = {}
    for n, (name, status, fields, image, labels) in enumerate(specs):
        created = db.create(record(name, image=image, created=T0 + n * 10**9, labels=labels))
        db.save_state(created.id, ContainerState(status=status, **fields))
        ids[name] = created.id
    return ids


def names(db: Database, filters: ContainerFilters | None = None) -> list[str]:
    return [c.record.name[1:] for c in db.list_containers(filters)]


NEWEST_FIRST = ["myweb", "flaky", "frozen", "fresh", "db", "web2", "web1"]


def test_list_defaults_to_running_containers_newest_first(db: Database, fleet: dict[str, str]) -> None:
    assert names(db) == ["myweb", "flaky", "frozen", "web1"]
    assert names(db, ContainerFilters(all=True)) == NEWEST_FIRST
    assert names(db, ContainerFilters(limit=2)) == ["myweb", "flaky"]
    assert names(db, ContainerFilters(limit=5)) == NEWEST_FIRST[:5]  # a limit lists stopped ones too


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"name": ["web"]}, ["myweb", "web2", "web1"]),  # a regular expression, found anywhere
        ({"name": ["^/web"]}, ["web2", "web1"]),
        ({"name": ["^web"]}, ["web2", "web1"]),  # matched against the name without its slash too
        ({"name": ["db", "fresh"]}, ["fresh", "db"]),
        ({"name": ["[unclosed"]}, []),  # a broken expression matches nothing
        ({"label": ["tier"]}, ["db", "web2", "web1"]),
        ({"label": ["tier=front"]}, ["web2", "web1"]),
        ({"label": {"tier=front": True, "env=prod": True}}, ["web1"]),  # the CLI's map shape; all must match
        ({"status": ["exited"]}, ["db", "web2"]),
        ({"status": ["created", "paused"]}, ["frozen", "fresh"]),
        ({"status": ["dead"]}, []),
        ({"exited": ["0"]}, ["web2"]),
        ({"exited": ["1"]}, ["db"]),  # not the restarting one: it counts as running
        ({"exited": ["0", "1"], "label": ["tier=front"]}, ["web2"]),
        ({"health": ["healthy"]}, ["myweb"]),
        ({"health": ["none"]}, ["frozen", "fresh", "db", "web2", "web1"]),
        ({"health": ["unhealthy", "healthy"]}, ["myweb", "flaky"]),
        ({"ancestor": [OTHER_IMAGE]}, ["frozen", "db"]),
        ({"ancestor": ["1" * 64]}, ["myweb", "flaky", "fresh", "web2", "web1"]),  # a bare hex ID
        ({"ancestor": ["sha256:" + "9" * 64]}, []),
        ({"before": ["fresh"]}, ["db", "web2", "web1"]),
        ({"since": ["fresh"]}, ["myweb", "flaky", "frozen"]),
        ({"since": ["web2"], "before": ["flaky"]}, ["frozen", "fresh", "db"]),
        ({"since": ["web2"], "before": ["flaky"], "status": ["created"]}, ["fresh"]),
    ],
)  # fmt: skip
def test_filters(db: Database, fleet: dict[str, str], filters: dict[str, Any], expected: list[str]) -> None:
    assert names(db, ContainerFilters.from_api(filters, all=True)) == expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"name": ["web"]}, ["myweb", "web1"]),
        ({"exited": ["0"]}, []),  # as `docker ps -f exited=0` without -a
        ({"before": ["myweb"]}, ["flaky", "frozen", "web1"]),
        ({"label": ["env=prod"]}, ["frozen", "web1"]),
        ({"status": ["exited"]}, ["db", "web2"]),  # a status filter lists stopped ones by itself
    ],
)
def test_filters_without_all_see_running_containers(
    db: Database, fleet: dict[str, str], filters: dict[str, Any], expected: list[str]
) -> None:
    assert names(db, ContainerFilters.from_api(filters)) == expected


def test_id_filters_and_all(db: Database, fleet: dict[str, str]) -> None:
    web2 = fleet["web2"]
    assert names(db, ContainerFilters.from_api({"id": [web2[:6]]}, all=True)) == ["web2"]
    assert names(db, ContainerFilters.from_api({"id": [web2]})) == []  # stopped, and no --all
    assert names(db, ContainerFilters.from_api({"id": [web2], "status": ["exited"]})) == ["web2"]
    with_limit = ContainerFilters.from_api({"label": ["tier"]}, limit=1)
    assert names(db, with_limit) == ["db"]


def test_ancestor_references_are_resolved_by_the_caller(db: Database, fleet: dict[str, str]) -> None:
    seen: list[str] = []

    def image_ids(ref: str) -> list[str]:
        seen.append(ref)
        return [OTHER_IMAGE] if ref == "postgres" else []

    filters = ContainerFilters.from_api({"ancestor": ["postgres", "nothing"]}, all=True, image_ids=image_ids)
    assert seen == ["postgres", "nothing"] and names(db, filters) == ["frozen", "db"]
    # no image found: nothing matches, as in moby (not "no filter")
    unknown = ContainerFilters.from_api({"ancestor": ["nothing"]}, all=True, image_ids=image_ids)
    assert unknown.ancestor == frozenset() and names(db, unknown) == []


def test_unknown_before_container(db: Database, fleet: dict[str, str]) -> None:
    with pytest.raises(NotFound, match=r"^No such container: ghost$"):
        db.list_containers(ContainerFilters.from_api({"before": ["ghost"]}))


@pytest.mark.parametrize(
    ("filters", "error", "message"),
    [
        ({"color": ["red"]}, InvalidArgument, "invalid filter 'color'"),
        ({"status": ["sleeping"]}, InvalidArgument, "Unrecognised filter value for status: sleeping"),
        ({"health": ["ok"]}, InvalidArgument, "Unrecognised filter value for health: ok"),
        ({"exited": ["x"]}, InvalidArgument, 'strconv.Atoi: parsing "x": invalid syntax'),
        ({"network": ["bridge"]}, Unsupported, "the 'network' filter is not supported yet"),
    ],
)
def test_bad_filters(filters: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        ContainerFilters.from_api(filters)
    assert str(info.value) == message


def test_filter_values_from_the_api() -> None:
    parsed = ContainerFilters.from_api(
        {"status": {"running": True, "exited": False}, "exited": ["+3"], "before": ["a", "b"]}, limit=4
    )
    assert parsed.status == {Status.RUNNING} and parsed.all and parsed.limit == 4
    assert parsed.exited == {3} and parsed.before == "b" and parsed.ancestor is None
    assert ContainerFilters.from_api(None) == ContainerFilters(limit=-1)

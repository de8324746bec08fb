"""ketch.db: the engine's SQLite database, and the only module that opens it.

SQLite holds the small, mutable, related records that need transactions or indexes; files hold bytes and
whatever another process reads (docs/architecture.md, section 3). Write the files first and commit the row
last: a row may point to a file, never the other way round.

Concurrency. There is one writer, the daemon (ketchd), through one :class:`Database` used from one thread.
The journal is in WAL mode, so other connections (tests, a debugging ``sqlite3``) can read while it writes;
a second writer would wait up to five seconds for the lock and then fail with SystemFailure.

Crash safety. ``synchronous=FULL`` makes a commit durable once :meth:`Database.transaction` returns, and every
change that touches more than one row (a container and its state, a rename, a migration and its version
bump) happens inside one transaction, so a crash at any point leaves the database as it was before the
transaction or as it is after it. ``foreign_keys=ON`` makes SQLite refuse a state row without a container.

Schema, version 1 (``PRAGMA user_version`` is the number of migrations applied)::

    containers       id TEXT PRIMARY KEY (64 hex), name TEXT UNIQUE ("/web": the UNIQUE index is the name
                     reservation), image_id TEXT ("sha256:..."), created_at INTEGER (unix ns),
                     config_json TEXT ({"Config": ..., "HostConfig": ...} in the Engine API's shape)
    container_state  id TEXT PRIMARY KEY REFERENCES containers ON DELETE CASCADE, status TEXT (one of
                     model.Status), pid, exit_code, started_at, finished_at (unix ns; 0 is never),
                     restart_count, oom_killed (0/1), health_json TEXT or NULL, error TEXT,
                     manually_stopped (0/1)

Invariant: every ``containers`` row has exactly one ``container_state`` row; both are written together.

Migrations. :data:`MIGRATIONS` is an ordered tuple; ``MIGRATIONS[n]`` takes the schema from version ``n`` to
``n + 1``. Opening the database applies the missing ones in order, each in its own transaction together with
its ``user_version`` bump, so a crash leaves version ``n`` or ``n + 1``, never half of one. A database whose
version is newer than this code knows is refused (Unsupported) rather than misread. Images, tags, snapshots,
networks, volumes, exec sessions and leases arrive as later migrations; never edit a migration that shipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ketch.common.errors import Conflict, InvalidArgument, NotFound, SystemFailure, Unsupported
from ketch.common.ids import is_full_id, lookup_prefix
from ketch.engine.lifecycle import is_running
from ketch.engine.model import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    Health,
    HostConfig,
    Status,
)
from ketch.engine.names import candidates, canonical_name
from ketch.image.listing import match_kv, parse_filters

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Container",
    "ContainerFilters",
    "Database",
    "Migration",
]

Migration = Callable[[sqlite3.Connection], None]

_STATUSES = ", ".join(f"'{s}'" for s in Status)
_V1 = (
    """CREATE TABLE containers (
        id          TEXT PRIMARY KEY CHECK (length(id) = 64),
        name        TEXT NOT NULL UNIQUE CHECK (substr(name, 1, 1) = '/'),
        image_id    TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        config_json TEXT NOT NULL
    ) STRICT""",
    "CREATE INDEX containers_by_created ON containers (created_at)",
    "CREATE INDEX containers_by_image ON containers (image_id)",
    f"""CREATE TABLE container_state (
        id               TEXT PRIMARY KEY REFERENCES containers (id) ON DELETE CASCADE,
        status           TEXT NOT NULL CHECK (status IN ({_STATUSES})),
        pid              INTEGER NOT NULL DEFAULT 0,
        exit_code        INTEGER NOT NULL DEFAULT 0,
        started_at       INTEGER NOT NULL DEFAULT 0,
        finished_at      INTEGER NOT NULL DEFAULT 0,
        restart_count    INTEGER NOT NULL DEFAULT 0,
        oom_killed       INTEGER NOT NULL DEFAULT 0 CHECK (oom_killed IN (0, 1)),
        health_json      TEXT,
        error            TEXT NOT NULL DEFAULT '',
        manually_stopped INTEGER NOT NULL DEFAULT 0 CHECK (manually_stopped IN (0, 1))
    ) STRICT""",
)


def _v1_containers(conn: sqlite3.Connection) -> None:
    for statement in _V1:  # one by one: executescript() would commit the migration's transaction
        conn.execute(statement)


MIGRATIONS: tuple[Migration, ...] = (_v1_containers,)
SCHEMA_VERSION = len(MIGRATIONS)

_STATE_COLUMNS = (
    "status, pid, exit_code, started_at, finished_at, restart_count, oom_killed, health_json, error, "
    "manually_stopped"
)
_SELECT = f"SELECT c.id, c.name, c.image_id, c.created_at, c.config_json, {_STATE_COLUMNS} " + (
    "FROM containers c JOIN container_state s ON s.id = c.id"
)
_GO_INT = re.compile(r"[+-]?[0-9]+")
_HEALTH_VALUES = ("starting", "healthy", "unhealthy", "none")
# moby's acceptedPsFilterTags that ketch does not implement yet
_LATER_FILTERS = ("expose", "publish", "volume", "network", "isolation", "is-task")


@dataclass(frozen=True, slots=True)
class Container:
    record: ContainerRecord
    state: ContainerState


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerFilters:
    """What ``GET /containers/json`` asks for, as data (moby daemon/list.go semantics).

    ``id`` and ``name`` hold regular expressions searched anywhere in the full ID and in the name (with and
    without its slash), or exact values; ``label`` holds ``key`` or ``key=value`` and every one must match;
    ``ancestor`` holds image IDs (the caller resolves references, descendants included), None for no filter;
    ``before``/``since`` are container references. Without ``all``, ``limit`` or a status filter, only
    running containers (paused and restarting count) are listed.
    """

    all: bool = False
    limit: int = 0
    id: tuple[str, ...] = ()
    name: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    status: frozenset[Status] = frozenset()
    health: frozenset[str] = frozenset()
    ancestor: frozenset[str] | None = None
    exited: frozenset[int] = frozenset()
    before: str = ""
    since: str = ""

    @classmethod
    def from_api(
        cls,
        filters: Mapping[str, Any] | None,
        *,
        all: bool = False,
        limit: int = -1,
        image_ids: Callable[[str], Iterable[str]] | None = None,
    ) -> ContainerFilters:
        """From the ``filters`` query parameter, in either shape the clients send. ``image_ids`` maps an
        ``ancestor`` value to image IDs; without it the values are taken as image IDs."""
        accepted = ("id", "name", "label", "status", "health", "ancestor", "exited", "before", "since")
        raw = parse_filters(filters, (*accepted, *_LATER_FILTERS))
        for key in _LATER_FILTERS:
            if key in raw:
                raise Unsupported(f"the '{key}' filter is not supported yet")
        exited: set[int] = set()
        for value in raw.get("exited", []):
            if not _GO_INT.fullmatch(value):
                raise InvalidArgument(f'strconv.Atoi: parsing "{value}": invalid syntax')
            exited.add(int(value))
        for key, valid in (("status", [str(s) for s in Status]), ("health", _HEALTH_VALUES)):
            for value in raw.get(key, []):
                if value not in valid:
                    raise InvalidArgument(f"Unrecognised filter value for {key}: {value}")
        ancestor: frozenset[str] | None = None
        if "ancestor" in raw:
            resolve = image_ids or (lambda ref: [ref if ref.startswith("sha256:") else "sha256:" + ref])
            ancestor = frozenset(image for ref in raw["ancestor"] for image in resolve(ref))
        return cls(
            all=all or "status" in raw,
            limit=limit,
            id=tuple(raw.get("id", ())),
            name=tuple(raw.get("name", ())),
            label=tuple(raw.get("label", ())),
            status=frozenset(Status(s) for s in raw.get("status", ())),
            health=frozenset(raw.get("health", ())),
            ancestor=ancestor,
            exited=frozenset(exited),
            before=(raw.get("before") or [""])[-1],
            since=(raw.get("since") or [""])[-1],
        )


def _match(patterns: Sequence[str], *sources: str) -> bool:
    """moby filters.Args.Match: no pattern, an exact value, or a regular expression found in a source."""
    if not patterns:
        return True
    for pattern in patterns:
        for source in sources:
            if pattern == source:
                return True
            try:
                if re.search(pattern, source):
                    return True
            except re.error:
                continue
    return False


class Database:
    """One connection to ketch.db. Methods that change more than one row run in one transaction; wrap
    several calls in :meth:`transaction` to make them one."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._depth = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, migrations: Sequence[Migration] = MIGRATIONS) -> Database:
        """Open (creating it, mode 0600) and migrate the database at ``path``."""
        where = os.fspath(path)
        try:
            os.close(os.open(where, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            conn = sqlite3.connect(where, isolation_level=None, timeout=5.0, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise _failure(where, exc) from exc
        db = cls(conn, where)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise SystemFailure(f"{where}: SQLite refused WAL mode (journal_mode is {mode})", path=where)
            conn.execute("PRAGMA synchronous = FULL")
            db._migrate(migrations)
        except BaseException:
            conn.close()
            raise
        return db

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        version = self.schema_version
        if version > len(migrations):
            raise Unsupported(
                f"{self.path} has schema version {version}; this ketch knows versions up to {len(migrations)}"
            )
        for number in range(version, len(migrations)):
            with self.transaction():
                migrations[number](self._conn)
                self._conn.execute(f"PRAGMA user_version = {number + 1}")

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises; nested blocks are savepoints that
        roll back alone. ``write=False`` only reads: a consistent snapshot without taking the write lock.
        SQLite's errors that leave the outermost block (disk full, locked, corrupt) become SystemFailure."""
        depth = self._depth
        savepoint = f"sp{depth}"
        begin = "BEGIN IMMEDIATE" if write else "BEGIN DEFERRED"
        try:
            self._conn.execute(begin if depth == 0 else f"SAVEPOINT {savepoint}")
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        self._depth += 1
        try:
            yield
            self._conn.execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
        except BaseException as exc:
            if depth > 0:  # inner blocks re-raise as they are, so callers here can catch IntegrityError
                self._conn.execute(f"ROLLBACK TO {savepoint}")
                self._conn.execute(f"RELEASE {savepoint}")
                raise
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _failure(self.path, exc) from exc
            raise
        finally:
            self._depth = depth

    # ---- containers -------------------------------------------------------------------------------------

    def create(
        self,
        record: ContainerRecord,
        state: ContainerState | None = None,
        *,
        rng: random.Random | None = None,
    ) -> ContainerRecord:
        """Insert a container and its state. An empty ``record.name`` gets a generated one (six random
        names, then the short ID); a taken name raises Conflict with Docker's message. Returns the record
        with its final, canonical name."""
        state = ContainerState() if state is None else state
        names = candidates(record.id, rng) if not record.name else iter([canonical_name(record.name)])
        with self.transaction():
            for name in names:
                try:
                    with self.transaction():
                        self._conn.execute(
                            "INSERT INTO containers (id, name, image_id, created_at, config_json) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (record.id, name, record.image_id, record.created_at, _config_json(record)),
                        )
                except sqlite3.IntegrityError as exc:
                    if "containers.name" not in str(exc):
                        raise Conflict(f"a container with ID {record.id} already exists") from None
                    if record.name:
                        raise self._name_conflict(name) from None
                    continue
                self._conn.execute(
                    f"INSERT INTO container_state (id, {_STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.id, *_state_row(state)),
                )
                return replace(record, name=name)
        raise Conflict(f"no free name for container {record.id}")  # the short ID fallback was taken too

    def _name_conflict(self, name: str) -> Conflict:
        row = self._conn.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
        holder = row[0] if row else ""
        return Conflict(
            f'Conflict. The container name "{name}" is already in use by container "{holder}". '
            "You have to remove (or rename) that container to be able to reuse that name."
        )

    def resolve(self, ref: str) -> str:
        """The ID that ``ref`` names, looked up as moby's GetContainer does: full ID, then name (with or
        without the slash), then unique ID prefix."""
        if not ref:
            raise InvalidArgument('invalid name or ID supplied: ""')
        conn = self._conn
        if is_full_id(ref) and conn.execute("SELECT 1 FROM containers WHERE id = ?", (ref,)).fetchone():
            return ref
        name = ref if ref.startswith("/") else "/" + ref
        row = conn.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
        if row:
            return str(row[0])
        # IDs are hex, so every ID starting with the prefix sorts in [prefix, prefix + "g")
        rows = conn.execute(
            "SELECT id FROM containers WHERE id >= ? AND id < ? ORDER BY id LIMIT 2", (ref, ref + "g")
        )
        return lookup_prefix(ref, (r[0] for r in rows))

    def get(self, ref: str) -> Container:
        with self.transaction(write=False):
            container_id = self.resolve(ref)
            row = self._conn.execute(_SELECT + " WHERE c.id = ?", (container_id,)).fetchone()
        return _container(row)

    def state(self, container_id: str) -> ContainerState:
        row = self._conn.execute(
            f"SELECT {_STATE_COLUMNS} FROM container_state WHERE id = ?", (container_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"No such container: {container_id}")
        return _state(row)

    def save_state(self, container_id: str, state: ContainerState) -> None:
        assignments = ", ".join(f"{column} = ?" for column in _STATE_COLUMNS.split(", "))
        with self.transaction():
            cursor = self._conn.execute(
                f"UPDATE container_state SET {assignments} WHERE id = ?", (*_state_row(state), container_id)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"No such container: {container_id}")

    def replace_config(self, container_id: str, config: ContainerConfig, host_config: HostConfig) -> None:
        """Store a new configuration (``docker update`` changes resources and the restart policy)."""
        blob = json.dumps(
            {"Config": config.to_api(), "HostConfig": host_config.to_api()}, separators=(",", ":")
        )
        with self.transaction():
            cursor = self._conn.execute(
                "UPDATE containers SET config_json = ? WHERE id = ?", (blob, container_id)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"No such container: {container_id}")

    def rename(self, ref: str, new_name: str) -> str:
        """Give the container ``ref`` names the name ``new_name``; returns its old name. moby's checks and
        wording (daemon/rename.go), in its order."""
        if not ref or not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        wanted = new_name if new_name.startswith("/") else "/" + new_name
        with self.transaction():
            container_id = self.resolve(ref)
            (old,) = self._conn.execute(
                "SELECT name FROM containers WHERE id = ?", (container_id,)
            ).fetchone()
            if old == wanted:
                raise InvalidArgument("Renaming a container with the same name as its current name")
            try:
                canonical_name(wanted)
            except InvalidArgument as exc:
                raise InvalidArgument(f"Error when allocating new name: {exc}") from None
            try:
                with self.transaction():
                    self._conn.execute("UPDATE containers SET name = ? WHERE id = ?", (wanted, container_id))
            except sqlite3.IntegrityError:
                raise Conflict(f"Error when allocating new name: {self._name_conflict(wanted)}") from None
        return str(old)

    def delete(self, container_id: str) -> None:
        """Remove the container's rows (its state goes with it, by ON DELETE CASCADE)."""
        with self.transaction():
            if self._conn.execute("DELETE FROM containers WHERE id = ?", (container_id,)).rowcount == 0:
                raise NotFound(f"No such container: {container_id}")

    def list_containers(self, filters: ContainerFilters | None = None) -> list[Container]:
        """Containers newest first, as ``GET /containers/json`` lists them. Status, ancestor and exit code
        narrow the query; the order-dependent (before, since, limit) and pattern filters run here."""
        f = filters or ContainerFilters()
        where: list[str] = []
        params: list[Any] = []
        if f.status:
            where.append(f"s.status IN ({', '.join('?' * len(f.status))})")
            params += [str(s) for s in sorted(f.status)]
        if f.ancestor is not None:
            where.append(f"c.image_id IN ({', '.join('?' * len(f.ancestor))})")
            params += sorted(f.ancestor)
        if f.exited:  # only containers that ran and stopped have an exit code to match
            codes = ", ".join("?" * len(f.exited))
            where.append("s.status NOT IN ('running', 'paused', 'restarting') AND s.started_at != 0")
            where.append(f"s.exit_code IN ({codes})")
            params += sorted(f.exited)
        query = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        order = " ORDER BY c.created_at DESC, c.id DESC"
        if f.before or f.since:  # positions and rows from one snapshot
            with self.transaction(write=False):
                before = self._position(f.before)
                since = self._position(f.since)
                rows = self._conn.execute(query + order, params).fetchall()
        else:  # one statement is its own snapshot: no BEGIN/COMMIT round trips
            before = since = None
            rows = self._conn.execute(query + order, params).fetchall()
        out: list[Container] = []
        for row in rows:
            position = (row[3], row[0])
            if before is not None and position >= before:
                continue
            if since is not None and position <= since:
                break
            container = _container(row)
            record, state = container.record, container.state
            if not is_running(state.status) and not f.all and f.limit <= 0:
                continue
            if not _match(f.name, record.name, record.name[1:]) or not _match(f.id, record.id):
                continue
            if f.label and not match_kv(list(f.label), record.labels):
                continue
            if f.health and (state.health.status if state.health else "none") not in f.health:
                continue
            out.append(container)
            if 0 < f.limit <= len(out):
                break
        return out

    def _position(self, ref: str) -> tuple[int, str] | None:
        if not ref:
            return None
        container_id = self.resolve(ref)
        created = self._conn.execute("SELECT created_at FROM containers WHERE id = ?", (container_id,))
        return int(created.fetchone()[0]), container_id


def _failure(path: str, exc: BaseException) -> SystemFailure:
    if isinstance(exc, OSError):
        return SystemFailure.from_oserror(f"open {path}", exc)
    return SystemFailure(f"{path}: {exc}", path=path)


def _config_json(record: ContainerRecord) -> str:
    body = {"Config": record.config.to_api(), "HostConfig": record.host_config.to_api()}
    return json.dumps(body, separators=(",", ":"))


def _state_row(state: ContainerState) -> tuple[Any, ...]:
    health = None if state.health is None else json.dumps(state.health.to_api(), separators=(",", ":"))
    return (
        str(state.status), state.pid, state.exit_code, state.started_at, state.finished_at,
        state.restart_count, int(state.oom_killed), health, state.error, int(state.manually_stopped),
    )  # fmt: skip


def _state(row: Sequence[Any]) -> ContainerState:
    status, pid, exit_code, started, finished, restarts, oom, health, error, manual = row
    return ContainerState(
        status=Status(status),
        pid=pid,
        exit_code=exit_code,
        started_at=started,
        finished_at=finished,
        restart_count=restarts,
        oom_killed=bool(oom),
        health=None if health is None else Health.from_api(json.loads(health)),
        error=error,
        manually_stopped=bool(manual),
    )


_CONFIGS: dict[str, tuple[ContainerConfig, HostConfig]] = {}  # config_json -> decoded; records are frozen
_CONFIGS_MAX = 4096


def _configs(config_json: str) -> tuple[ContainerConfig, HostConfig]:
    """Decoding a stored config is most of what listing containers costs; the same JSON decodes the same."""
    found = _CONFIGS.get(config_json)
    if found is None:
        body = json.loads(config_json)
        found = (ContainerConfig.from_api(body["Config"]), HostConfig.from_api(body["HostConfig"], host=None))
        if len(_CONFIGS) >= _CONFIGS_MAX:
            _CONFIGS.clear()
        _CONFIGS[config_json] = found
    return found


def _container(row: Sequence[Any]) -> Container:
    container_id, name, image_id, created_at, config_json = row[:5]
    config, host_config = _configs(config_json)
    record = ContainerRecord(
        id=container_id, name=name, image_id=image_id, created_at=created_at, config=config,
        host_config=host_config,
    )  # fmt: skip
    return Container(record, _state(row[5:]))

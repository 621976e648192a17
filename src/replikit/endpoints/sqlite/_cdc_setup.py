"""Setting SQLite CDC up in a source database: change table, triggers, tasks, snapshots.

Bookkeeping tables, next to ``_replikit_changes``:

* ``_replikit_cdc_tables``: per captured table, the hash and list of the columns its triggers
  record, ``since`` (the change sequence at which those triggers were made: older change rows of
  the table were recorded by older triggers) and ``previous`` (the column list before, when the
  triggers were remade for a changed table);
* ``_replikit_cdc_tasks``: the replication tasks reading the changes, their tables and how far
  each acknowledged, so one task's purge never deletes changes another still needs;
* ``_replikit_cdc_state``: ``purged`` (changes up to it are gone).

Every change here runs in one ``BEGIN IMMEDIATE`` transaction: writers of the database wait,
so ``since`` is exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from replikit.endpoints.sqlite._cdc_codec import (
    CHANGES_TABLE,
    STATE_TABLE,
    TABLES_TABLE,
    TASKS_TABLE,
    ColumnInfo,
    renames,
    trigger_names,
    trigger_sql,
)
from replikit.endpoints.sqlite._connect import translate
from replikit.endpoints.sqlite._dialect import DIALECT
from replikit.endpoints.sqlite.reflect import reflect_table
from replikit.errors import CapabilityError, ConfigError, ConnectError, SchemaError
from replikit.positions import SqliteSeq
from replikit.schema.model import TableId, TableSchema

if TYPE_CHECKING:
    from replikit.endpoints.sqlite import SqliteEndpoint

__all__ = [
    "column_info",
    "connect",
    "database_path",
    "exists",
    "high_water",
    "install",
    "installed_tables",
    "needs_triggers",
    "problems",
    "recorded",
    "regenerate",
    "register",
    "schema_hash",
    "setup",
    "snapshot",
    "snapshot_position",
    "stale_error",
    "start",
    "table_name",
    "teardown",
    "uninstall",
    "write_transaction",
]

TableRef = str | TableId | TableSchema

_TASKS_COLUMNS = "(task TEXT PRIMARY KEY, tables TEXT NOT NULL, acked INTEGER NOT NULL)"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} ("
    "seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "tbl TEXT NOT NULL, "
    "op TEXT NOT NULL CHECK (op IN ('I', 'U', 'D')), "
    "pk TEXT NOT NULL, "
    "new_row TEXT, "
    "old_row TEXT, "
    "ts REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0))",
    f"CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (tbl TEXT PRIMARY KEY, schema_hash TEXT NOT NULL, "
    "columns TEXT NOT NULL, since INTEGER NOT NULL, previous TEXT)",
    f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (name TEXT PRIMARY KEY, value)",
    f"CREATE TABLE IF NOT EXISTS {TASKS_TABLE} {_TASKS_COLUMNS}",
)
_OPT_IN = "opt in with rk.endpoint(url, cdc_setup=True) or run `replikit cdc-setup URL`"


# -- connections ---------------------------------------------------------------------------


def database_path(endpoint: SqliteEndpoint) -> str:
    """The source file; an in-memory database cannot be a CDC source (ConfigError)."""
    if endpoint.path is None:
        raise ConfigError(
            "an in-memory SQLite database (sqlite:///:memory:) cannot be a CDC source: it "
            "lives inside this endpoint's one connection, so no application can write to it "
            "and the change reader cannot open it; use a database file"
        )
    return endpoint.path


def connect(endpoint: SqliteEndpoint) -> sqlite3.Connection:
    """A read-write connection to the source file (autocommit; transactions are explicit)."""
    path = database_path(endpoint)
    if not os.path.exists(path):
        raise ConnectError(f"no such database file {path!r}")
    timeout = float(endpoint.options.get("timeout", 30.0))
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise translate(exc, repr(path)) from exc
    return conn


@contextlib.contextmanager
def write_transaction(
    endpoint: SqliteEndpoint, what: str, *, wal: bool = False
) -> Iterator[sqlite3.Connection]:
    """A connection in ``BEGIN IMMEDIATE``: committed on success, rolled back on any error;
    sqlite3 errors become :class:`SchemaError` ("cannot <what> <url>")."""
    conn = connect(endpoint)
    try:
        if wal:
            _check_math(conn)
            _to_wal(conn, float(endpoint.options.get("timeout", 30.0)))
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise SchemaError(f"cannot {what} {endpoint.url}: {exc}") from exc
    finally:
        conn.close()


def _to_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL mode, waiting for other connections' transactions to end.

    Changing the journal mode needs a moment with no other transaction open, and SQLite
    reports "database is locked" at once instead of calling the busy handler: retry.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _check_math(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("SELECT log2(2.0), power(2, 3), floor(1.5)").fetchone()
    except sqlite3.OperationalError:
        raise CapabilityError(
            f"SQLite CDC needs SQLite's math functions (log2, power, floor), which this build "
            f"of SQLite {sqlite3.sqlite_version} lacks"
        ) from None


# -- catalog facts -------------------------------------------------------------------------


def exists(conn: sqlite3.Connection, table: str) -> bool:
    """True when ``table`` exists."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return row.fetchone() is not None


def high_water(conn: sqlite3.Connection) -> int:
    """The last change sequence ever handed out (purging does not lower it)."""
    (value,) = conn.execute(
        f"SELECT max(coalesce((SELECT max(seq) FROM {CHANGES_TABLE}), 0), "  # noqa: S608
        "coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0))",
        (CHANGES_TABLE,),
    ).fetchone()
    return int(value)


def column_info(conn: sqlite3.Connection, table: str) -> list[ColumnInfo]:
    """The table's columns: name, declared type, notnull, pk position, hidden."""
    rows = conn.execute(
        'SELECT name, type, "notnull", pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid',
        (table,),
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def _digest(info: Sequence[ColumnInfo]) -> str:
    return hashlib.sha256(json.dumps([list(c) for c in info]).encode()).hexdigest()[:32]


def schema_hash(conn: sqlite3.Connection, table: str) -> str | None:
    """A hash of the table's columns (name, type, notnull, key position); None: no table."""
    info = column_info(conn, table)
    return _digest(info) if info else None


def table_name(table: TableRef) -> str:
    if isinstance(table, TableSchema):
        return table.id.name
    if isinstance(table, TableId):
        return table.name
    return str(table)


def recorded(conn: sqlite3.Connection) -> dict[str, tuple[str, str, str, int, str | None]]:
    """Captured tables by lower-case name: (name, hash, columns JSON, since, previous)."""
    if not exists(conn, TABLES_TABLE):
        return {}
    rows = conn.execute(f"SELECT tbl, schema_hash, columns, since, previous FROM {TABLES_TABLE}")  # noqa: S608
    return {str(r[0]).lower(): (r[0], r[1], r[2], int(r[3]), r[4]) for r in rows}


def problems(conn: sqlite3.Connection, names: Sequence[str]) -> dict[str, str]:
    """Tables among ``names`` whose change triggers are missing or stale, and why."""
    known = recorded(conn)
    triggers = {
        str(r[0]).lower()
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    }
    found: dict[str, str] = {}
    for name in names:
        rec = known.get(name.lower())
        if rec is None:
            found[name] = "no change triggers"
        elif any(t.lower() not in triggers for t in trigger_names(rec[0])):
            found[name] = "change triggers missing (was the table dropped or rebuilt?)"
        elif (current := schema_hash(conn, rec[0])) != rec[1]:
            found[name] = "table gone" if current is None else "columns changed since set-up"
    return found


def needs_triggers(found: dict[str, str]) -> ConfigError:
    """The error for tables without usable change triggers."""
    listed = ", ".join(
        n if why == "no change triggers" else f"{n}: {why}" for n, why in found.items()
    )
    return ConfigError(
        f"SQLite CDC needs change triggers on the source tables ({listed}); {_OPT_IN}"
    )


def installed_tables(endpoint: SqliteEndpoint) -> list[str]:
    """The tables CDC is set up for (empty when it is not installed)."""
    conn = connect(endpoint)
    try:
        return sorted((rec[0] for rec in recorded(conn).values()), key=str.lower)
    finally:
        conn.close()


# -- install / uninstall -------------------------------------------------------------------


def install(endpoint: SqliteEndpoint, tables: Sequence[TableRef]) -> None:
    """Set up CDC for ``tables``: change table, triggers, column lists (idempotent).

    Re-running it remakes the triggers, e.g. after ``ALTER TABLE``; change readers then report
    the new columns (see :class:`~replikit.endpoints.sqlite.cdc.SqliteChangeReader`). Switches
    the database to WAL mode (persistent), which the handoff :func:`snapshot` relies on.
    """
    with write_transaction(endpoint, "set up SQLite CDC in", wal=True) as conn:
        _install(conn, endpoint, tables)


def _install(
    conn: sqlite3.Connection, endpoint: SqliteEndpoint, tables: Sequence[TableRef]
) -> None:
    for statement in _CREATE:
        conn.execute(statement)
    for item in tables:
        name = table_name(item)
        schema = reflect_table(conn, name)
        if schema is None or name.lower().startswith(("sqlite_", "_replikit_")):
            raise SchemaError(f"no table {name!r} to set up CDC for in {endpoint.url}")
        _install_table(conn, schema)


def _install_table(conn: sqlite3.Connection, schema: TableSchema) -> None:
    name = schema.id.name
    info = column_info(conn, name)
    digest = _digest(info)
    rec = recorded(conn).get(name.lower())
    _drop_triggers(conn, name)
    for statement in trigger_sql(schema):
        conn.execute(statement)
    if rec is None:
        since, previous = high_water(conn), None
    elif rec[1] != digest:
        since, previous = high_water(conn), rec[2]
    else:
        since, previous = rec[3], rec[4]
    conn.execute(
        f"INSERT OR REPLACE INTO {TABLES_TABLE} (tbl, schema_hash, columns, since, previous) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?)",
        (name, digest, json.dumps(info), since, previous),
    )


def _drop_triggers(conn: sqlite3.Connection, table: str) -> None:
    for trigger in trigger_names(table):
        conn.execute(f"DROP TRIGGER IF EXISTS {DIALECT.quote(trigger)}")


def uninstall(endpoint: SqliteEndpoint, tables: Sequence[TableRef] | None = None) -> None:
    """Remove CDC from ``tables`` (their triggers and pending changes); ``None``: everything.

    With ``None`` (or once no table is left) the change and bookkeeping tables are dropped too.
    Idempotent.
    """
    with write_transaction(endpoint, "remove SQLite CDC from") as conn:
        _remove(conn, None if tables is None else [table_name(t) for t in tables])


def _remove(conn: sqlite3.Connection, names: Sequence[str] | None) -> None:
    known = recorded(conn)
    targets = [rec[0] for rec in known.values()] if names is None else names
    for given in targets:
        name = known.get(given.lower(), (given,))[0]
        _drop_triggers(conn, name)
        if known:
            conn.execute(f"DELETE FROM {TABLES_TABLE} WHERE tbl = ?", (name,))  # noqa: S608
        if exists(conn, CHANGES_TABLE):
            conn.execute(f"DELETE FROM {CHANGES_TABLE} WHERE tbl = ?", (name,))  # noqa: S608
    if names is None or not recorded(conn):
        for table in (CHANGES_TABLE, TABLES_TABLE, STATE_TABLE, TASKS_TABLE):
            conn.execute(f"DROP TABLE IF EXISTS {table}")


# -- tasks ---------------------------------------------------------------------------------


def setup(
    endpoint: SqliteEndpoint, tables: Sequence[TableSchema], *, task: str, create: bool
) -> None:
    """Check the triggers of ``tables``; with ``create``, make missing or stale ones.

    Without ``create`` this only reads. Tables without a primary key (or a NOT NULL unique
    key) are refused: their rows are named only by the rowid, which ``VACUUM`` may renumber
    and which a target table does not have. ``task`` is registered later, when it fixes its
    start position (:func:`start`, :func:`snapshot`).
    """
    database_path(endpoint)
    keyless = [t.id.name for t in tables if not t.key]
    if keyless:
        raise ConfigError(
            f"SQLite CDC needs a primary key on tables ({', '.join(keyless)}): without one a "
            "row is named only by its rowid, which VACUUM may renumber and a target does not "
            "have; give them a PRIMARY KEY (or a UNIQUE NOT NULL column set) or leave them out"
        )
    names = [t.id.name for t in tables]
    conn = connect(endpoint)
    try:
        found = problems(conn, names)
    finally:
        conn.close()
    if found and not create:
        raise needs_triggers(found)
    if found:
        with write_transaction(endpoint, f"set up SQLite CDC for task {task!r} in", wal=True) as c:
            found = problems(c, names)  # again, under the write lock
            _install(c, endpoint, [t for t in tables if t.id.name in found])


def register(
    conn: sqlite3.Connection, task: str, names: Sequence[str], acked: int, *, restart: bool = False
) -> None:
    """Record (in a write transaction) that ``task`` reads ``names`` and acknowledged
    ``acked``; ``restart``: it starts over from ``acked`` (a new start position).

    A purge never deletes changes a registered task has not acknowledged.
    """
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TASKS_TABLE} {_TASKS_COLUMNS}")
    update = (
        "tables = excluded.tables, acked = excluded.acked"
        if restart
        else "acked = max(acked, excluded.acked)"
    )
    conn.execute(
        f"INSERT INTO {TASKS_TABLE} (task, tables, acked) VALUES (?, ?, ?) "  # noqa: S608
        f"ON CONFLICT (task) DO UPDATE SET {update}",
        (task, json.dumps(sorted(names, key=str.lower)), acked),
    )


def start(endpoint: SqliteEndpoint, tables: Sequence[TableRef], *, task: str) -> SqliteSeq:
    """The current high-water mark, with ``task`` registered as reading from it."""
    names = [table_name(t) for t in tables]
    with write_transaction(endpoint, f"start SQLite CDC for task {task!r} in") as conn:
        _require(conn, endpoint, names)
        mark = high_water(conn)
        register(conn, task, names, mark, restart=True)
    return SqliteSeq(mark)


def current(endpoint: SqliteEndpoint) -> SqliteSeq:
    """The high-water mark now (0 when CDC was never set up); reads only."""
    conn = connect(endpoint)
    try:
        return SqliteSeq(high_water(conn) if exists(conn, CHANGES_TABLE) else 0)
    except sqlite3.Error as exc:
        raise translate(exc, repr(database_path(endpoint))) from exc
    finally:
        conn.close()


def _require(conn: sqlite3.Connection, endpoint: SqliteEndpoint, names: Sequence[str]) -> None:
    if not exists(conn, CHANGES_TABLE):
        raise ConfigError(f"SQLite CDC is not set up in {endpoint.url}; {_OPT_IN}")
    found = problems(conn, names)
    if found:
        raise needs_triggers(found)


def teardown(endpoint: SqliteEndpoint, *, task: str) -> None:
    """Forget ``task``; remove the triggers no other task needs (everything when none is left).

    Idempotent; a missing database file is left alone.
    """
    if not os.path.exists(database_path(endpoint)):
        return
    with write_transaction(endpoint, f"remove SQLite CDC of task {task!r} from") as conn:
        if not exists(conn, TASKS_TABLE):
            _remove(conn, None)
            return
        rows = dict(conn.execute(f"SELECT task, tables FROM {TASKS_TABLE}").fetchall())  # noqa: S608
        mine = json.loads(rows.pop(task, "[]"))
        conn.execute(f"DELETE FROM {TASKS_TABLE} WHERE task = ?", (task,))  # noqa: S608
        if not rows:
            _remove(conn, None)
            return
        kept = {n.lower() for text in rows.values() for n in json.loads(text)}
        _remove(conn, [n for n in mine if n.lower() not in kept])


def regenerate(endpoint: SqliteEndpoint, names: Sequence[str], *, after: int) -> None:
    """Remake the stale triggers of ``names`` when that loses nothing (for a change reader).

    Exact when columns were only renamed (rows are recorded as positional arrays, which a
    rename leaves as they are), or added at the end with no change of the table recorded after
    ``after`` (the reader's last change read while the triggers were current): such a change
    may come from the stale triggers, without the new columns. Otherwise
    :class:`SchemaError` says what to do.
    """
    with write_transaction(endpoint, "update the SQLite CDC triggers in") as conn:
        known = recorded(conn)
        for name in names:
            rec = known.get(name.lower())
            info = column_info(conn, name)
            if rec is None or not info or _digest(info) == rec[1]:
                continue  # gone (reported by the reader) or already remade
            old = json.loads(rec[2])
            if renames(old, info) is None:
                raise stale_error(name, "has changed columns (not only added or renamed ones)")
            (pending,) = conn.execute(
                f"SELECT count(*) FROM {CHANGES_TABLE} WHERE tbl = ? AND seq > ?",  # noqa: S608
                (rec[0], after),
            ).fetchone()
            if pending and len(info) > len(old):  # renames alone leave the rows' shape as is
                raise stale_error(name, "has new columns", pending=pending)
            schema = reflect_table(conn, name)
            assert schema is not None
            _install_table(conn, schema)


def stale_error(name: str, what: str, *, pending: int = 0) -> SchemaError:
    """The error for a captured table whose columns changed under its triggers."""
    detail = (
        f"; {pending} change(s) of it were recorded since, possibly without the new columns"
        if pending
        else ""
    )
    return SchemaError(
        f"table {name!r} {what} since SQLite CDC was set up, so its change triggers are "
        f"stale{detail}; re-run the CDC setup for it (rk.endpoint(url, cdc_setup=True) or "
        "`replikit cdc-setup URL`) and reload the table if it was written to since the change"
    )


# -- handoff -------------------------------------------------------------------------------


@contextlib.contextmanager
def snapshot(
    endpoint: SqliteEndpoint, tables: Sequence[TableRef] | None = None, *, task: str | None = None
) -> Iterator[tuple[sqlite3.Connection, SqliteSeq]]:
    """One read transaction: ``(connection, high-water mark)`` for an exact handoff.

    Read the tables through the yielded connection inside the ``with`` block; they show exactly
    the changes up to the mark. Then start CDC with ``reader.transactions(mark)``. In WAL mode
    (set by :func:`install`) writers are not blocked meanwhile. With ``tables``, their
    triggers are checked in the same snapshot (ConfigError when missing or stale). With
    ``task``, the task is first registered (:func:`start`), so no purge takes its changes.
    """
    if task is not None:
        start(endpoint, tables or (), task=task)
    conn = connect(endpoint)
    try:
        conn.execute("BEGIN")  # deferred: the snapshot starts with the first read below
        try:
            _require(conn, endpoint, [table_name(t) for t in tables or ()])
            yield conn, SqliteSeq(high_water(conn))
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")
    finally:
        conn.close()


def snapshot_position(
    endpoint: SqliteEndpoint, tables: Sequence[TableRef] | None = None
) -> SqliteSeq:
    """The current high-water mark (not a snapshot: use :func:`snapshot` for a handoff)."""
    with snapshot(endpoint, tables) as (_, mark):
        return mark

"""Change data capture for SQLite: triggers into a change table (opt-in).

:func:`install` creates ``_replikit_changes`` and ``AFTER INSERT/UPDATE/DELETE`` triggers on the
chosen tables; every committed write, from any process or connection, adds one row per changed
row. A rolled-back write rolls its change rows back too. SQLite has one writer at a time, so
``seq`` order is commit order and a reader never sees a gap fill in later.

:class:`SqliteChangeReader` polls the change table and yields one
:class:`~replikit.changes.Transaction` **per changed row**. Triggers cannot see a transaction
id, and grouping by the change timestamp would be a guess (one transaction's statements get
different timestamps and two transactions can share one), so a source transaction that
changed several rows arrives as several consecutive one-change transactions. Delivery is still
exact and in commit order; a target may briefly show part of a multi-row source transaction.

Row images are JSON objects whose values are tagged so every stored value comes back with its
exact storage class and bits: integers are JSON numbers, NULL is ``null``, text is
``"t<text>"``, blobs ``"b<hex>"`` and reals ``"r<m>p<k>"`` meaning ``m * 2**-k`` (SQLite prints
doubles with too few correct digits, so reals are split into an exact integer mantissa and a
power of two in SQL; this needs SQLite's math functions, which :func:`install` checks). The
decoded values then go through the full-load reader's converters, so a change carries the same
canonical Python values as a full load of the same row.

:func:`snapshot` gives the exact full-load/CDC handoff: one read transaction that reads the
change table's high-water mark and the tables, in WAL mode, while writers carry on.

CDC needs a database file (not ``:memory:``) that replikit may write to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from replikit.changes import Change, Op, Transaction
from replikit.endpoints.sqlite._conn import translate
from replikit.endpoints.sqlite._dialect import DIALECT, affinity
from replikit.endpoints.sqlite._values import BadValue, Converter, converter_for, preview
from replikit.endpoints.sqlite._values import storage_classes as _classes
from replikit.endpoints.sqlite.reflect import reflect_table
from replikit.errors import CapabilityError, ConfigError, DataError, PositionLostError, SchemaError
from replikit.positions import Position, SqliteSeq
from replikit.schema.model import TableId, TableSchema

if TYPE_CHECKING:
    from replikit.endpoints.sqlite import SqliteEndpoint

__all__ = [
    "CHANGES_TABLE",
    "STATE_TABLE",
    "TABLES_TABLE",
    "SqliteChangeReader",
    "install",
    "installed_tables",
    "schema_hash",
    "snapshot",
    "snapshot_position",
    "uninstall",
]

CHANGES_TABLE = "_replikit_changes"
TABLES_TABLE = "_replikit_cdc_tables"
STATE_TABLE = "_replikit_cdc_state"
_OPS = {"I": Op.INSERT, "U": Op.UPDATE, "D": Op.DELETE}
_ROWID_NAMES = ("rowid", "_rowid_", "oid")
_MAX_ARGS = 126  # SQLite's default SQLITE_MAX_FUNCTION_ARG is 127
_STORAGE = {int: "integer", float: "real", str: "text", bytes: "blob"}

_CREATE = (
    "CREATE TABLE IF NOT EXISTS _replikit_changes ("
    "seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "tbl TEXT NOT NULL, "
    "op TEXT NOT NULL CHECK (op IN ('I', 'U', 'D')), "
    "pk TEXT NOT NULL, "
    "new_row TEXT, "
    "old_row TEXT, "
    "ts REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0))",
    "CREATE TABLE IF NOT EXISTS _replikit_cdc_tables ("
    "tbl TEXT PRIMARY KEY, schema_hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _replikit_cdc_state (name TEXT PRIMARY KEY, value)",
)


# -- setup ---------------------------------------------------------------------------------


def _path(endpoint: SqliteEndpoint) -> str:
    if endpoint.path is None:
        raise CapabilityError("SQLite CDC needs a database file; :memory: has no other writers")
    return endpoint.path


def _connect(endpoint: SqliteEndpoint) -> sqlite3.Connection:
    path = _path(endpoint)
    timeout = float(endpoint.options.get("timeout", 30.0))
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise translate(exc, repr(path)) from exc
    return conn


def _name(table: str | TableId | TableSchema) -> str:
    if isinstance(table, TableSchema):
        return table.id.name
    if isinstance(table, TableId):
        return table.name
    return str(table)


def schema_hash(conn: sqlite3.Connection, table: str) -> str | None:
    """A hash of the table's columns (name, declared type, key position); None: no table."""
    info = conn.execute(
        "SELECT name, type, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid", (table,)
    ).fetchall()
    if not info:
        return None
    return hashlib.sha256(json.dumps([list(r) for r in info]).encode()).hexdigest()[:32]


def _key_names(table: TableSchema) -> tuple[tuple[str, ...], bool]:
    """The key columns the change rows carry, and whether it is the rowid (keyless table)."""
    if table.key:
        return table.key, False
    lowered = {n.lower() for n in table.column_names}
    free = [r for r in _ROWID_NAMES if r not in lowered]
    if not free:
        raise SchemaError(
            f"table {table.id.name!r} has no key and its columns hide the rowid; "
            "CDC cannot name its rows"
        )
    return (free[0],), True


def _encode(ref: str) -> str:
    """SQL that turns the value ``ref`` into its tagged JSON form (see the module doc)."""
    k = f"(53 - CAST(floor(log2(abs({ref}))) AS INTEGER))"
    real = (
        f"CASE WHEN {ref} = 0 THEN 'r0' "
        f"WHEN {ref} * 2 = {ref} THEN CASE WHEN {ref} > 0 THEN 'rinf' ELSE 'r-inf' END "
        f"ELSE 'r' || CAST({ref} * power(2, {k} / 2) * power(2, {k} - {k} / 2) AS INTEGER)"
        f" || 'p' || {k} END"
    )
    return (
        f"CASE typeof({ref}) WHEN 'integer' THEN {ref} WHEN 'null' THEN NULL "
        f"WHEN 'text' THEN 't' || {ref} WHEN 'blob' THEN 'b' || hex({ref}) ELSE {real} END"
    )


def _image(row: str, names: Sequence[str]) -> str:
    """``json_object`` of every column; wide tables as a ``json_array`` of such objects."""
    per = _MAX_ARGS // 2
    parts = []
    for start in range(0, len(names), per):
        args = ", ".join(
            f"{DIALECT.literal(n)}, {_encode(f'{row}.{DIALECT.quote(n)}')}"
            for n in names[start : start + per]
        )
        parts.append(f"json_object({args})")
    if len(parts) == 1:
        return parts[0]
    if len(parts) > _MAX_ARGS:
        raise SchemaError(f"too many columns for CDC triggers ({len(names)})")
    return f"json_array({', '.join(parts)})"


def _key_sql(row: str, keys: Sequence[str], rowid: bool) -> str:
    refs = [f"{row}.{keys[0]}"] if rowid else [f"{row}.{DIALECT.quote(k)}" for k in keys]
    return f"json_array({', '.join(_encode(r) for r in refs)})"


def _trigger_name(table: str, suffix: str) -> str:
    return DIALECT.quote(f"_replikit_{table}_{suffix}")


def _triggers(table: TableSchema) -> list[str]:
    name = table.id.name
    quoted, lit = DIALECT.quote(name), DIALECT.literal(name)
    keys, rowid = _key_names(table)
    cols = table.column_names
    into = f"INSERT INTO _replikit_changes (tbl, op, pk, new_row, old_row) VALUES ({lit}, "  # noqa: S608 - literal
    return [
        f"CREATE TRIGGER {_trigger_name(name, 'ins')} AFTER INSERT ON {quoted} BEGIN "
        f"{into}'I', {_key_sql('NEW', keys, rowid)}, {_image('NEW', cols)}, NULL); END",
        f"CREATE TRIGGER {_trigger_name(name, 'upd')} AFTER UPDATE ON {quoted} BEGIN "
        f"{into}'U', {_key_sql('OLD', keys, rowid)}, {_image('NEW', cols)}, "
        f"{_image('OLD', cols)}); END",
        f"CREATE TRIGGER {_trigger_name(name, 'del')} AFTER DELETE ON {quoted} BEGIN "
        f"{into}'D', {_key_sql('OLD', keys, rowid)}, NULL, {_image('OLD', cols)}); END",
    ]


def _drop_triggers(conn: sqlite3.Connection, table: str) -> None:
    for suffix in ("ins", "upd", "del"):
        conn.execute(f"DROP TRIGGER IF EXISTS {_trigger_name(table, suffix)}")


def _check_math(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("SELECT log2(2.0), power(2, 3), floor(1.5)").fetchone()
    except sqlite3.OperationalError:
        raise CapabilityError(
            f"SQLite CDC needs SQLite's math functions (log2, power, floor), which this build "
            f"of SQLite {sqlite3.sqlite_version} lacks"
        ) from None


def install(endpoint: SqliteEndpoint, tables: Sequence[str | TableId | TableSchema]) -> None:
    """Set up CDC for ``tables``: change table, triggers, schema hashes (idempotent).

    Re-running it regenerates the triggers, e.g. after ``ALTER TABLE``. Switches the database
    to WAL mode (persistent), which the handoff :func:`snapshot` relies on.
    """
    with _write_transaction(endpoint, "set up SQLite CDC in", wal=True) as conn:
        for statement in _CREATE:
            conn.execute(statement)
        for item in tables:
            name = _name(item)
            schema = reflect_table(conn, name)
            if schema is None or name.startswith(("sqlite_", "_replikit_")):
                raise SchemaError(f"no table {name!r} to set up CDC for in {endpoint.url}")
            name = schema.id.name
            _drop_triggers(conn, name)
            for statement in _triggers(schema):
                conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO _replikit_cdc_tables (tbl, schema_hash) VALUES (?, ?)",
                (name, schema_hash(conn, name)),
            )


@contextlib.contextmanager
def _write_transaction(
    endpoint: SqliteEndpoint, what: str, *, wal: bool = False
) -> Iterator[sqlite3.Connection]:
    """A connection in ``BEGIN IMMEDIATE``: committed on success, rolled back on any error;
    sqlite3 errors become :class:`SchemaError` ("cannot <what> <url>")."""
    conn = _connect(endpoint)
    try:
        if wal:
            _check_math(conn)
            conn.execute("PRAGMA journal_mode=WAL")
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


def _exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return row.fetchone() is not None


def installed_tables(endpoint: SqliteEndpoint) -> list[str]:
    """The tables CDC is set up for (empty when it is not installed)."""
    conn = _connect(endpoint)
    try:
        if not _exists(conn, TABLES_TABLE):
            return []
        return [r[0] for r in conn.execute("SELECT tbl FROM _replikit_cdc_tables ORDER BY tbl")]
    finally:
        conn.close()


def uninstall(
    endpoint: SqliteEndpoint, tables: Sequence[str | TableId | TableSchema] | None = None
) -> None:
    """Remove CDC from ``tables`` (their triggers and pending changes); ``None``: everything.

    With ``None`` (or once no table is left) the change and bookkeeping tables are dropped too.
    Idempotent.
    """
    with _write_transaction(endpoint, "remove SQLite CDC from") as conn:
        known = (
            [r[0] for r in conn.execute("SELECT tbl FROM _replikit_cdc_tables")]
            if _exists(conn, TABLES_TABLE)
            else []
        )
        names = known if tables is None else [_name(t) for t in tables]
        for name in names:
            _drop_triggers(conn, name)
            if known:
                conn.execute("DELETE FROM _replikit_cdc_tables WHERE tbl = ?", (name,))
            if _exists(conn, CHANGES_TABLE):
                conn.execute("DELETE FROM _replikit_changes WHERE tbl = ?", (name,))
        left = (
            conn.execute("SELECT count(*) FROM _replikit_cdc_tables").fetchone()[0]
            if _exists(conn, TABLES_TABLE)
            else 0
        )
        if tables is None or not left:
            for table in (CHANGES_TABLE, TABLES_TABLE, STATE_TABLE):
                conn.execute(f"DROP TABLE IF EXISTS {table}")


# -- handoff -------------------------------------------------------------------------------


@contextlib.contextmanager
def snapshot(endpoint: SqliteEndpoint) -> Iterator[tuple[sqlite3.Connection, SqliteSeq]]:
    """One read transaction: ``(connection, high-water mark)`` for an exact handoff.

    Read the tables through the yielded connection inside the ``with`` block; they show exactly
    the changes up to the mark. Then start CDC with ``reader.transactions(mark)``. In WAL mode
    (set by :func:`install`) writers are not blocked meanwhile.
    """
    conn = _connect(endpoint)
    try:
        if not _exists(conn, CHANGES_TABLE):
            raise ConfigError(f"SQLite CDC is not set up in {endpoint.url}; run install first")
        conn.execute("BEGIN")  # deferred: the snapshot starts with the first read below
        try:
            (high,) = conn.execute("SELECT coalesce(max(seq), 0) FROM _replikit_changes").fetchone()
            yield conn, SqliteSeq(int(high))
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")
    finally:
        conn.close()


def snapshot_position(endpoint: SqliteEndpoint) -> SqliteSeq:
    """The current high-water mark (not a snapshot: use :func:`snapshot` for a handoff)."""
    with snapshot(endpoint) as (_, mark):
        return mark


# -- reading -------------------------------------------------------------------------------


def _raw(value: Any) -> Any:
    """A tagged JSON value back to the value SQLite stored."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, str) and value:
        tag, body = value[0], value[1:]
        if tag == "t":
            return body
        if tag == "b":
            return bytes.fromhex(body)
        if tag == "r":
            if body in ("0", "inf", "-inf"):
                return float(body)
            mantissa, _, power = body.partition("p")
            return math.ldexp(int(mantissa), -int(power))
    raise DataError(f"undecodable change value {preview(value)}")


@dataclass(frozen=True, slots=True)
class _Decoder:
    """How to turn one table's change rows into canonical values."""

    table: TableSchema
    hash: str
    keys: tuple[str, ...]
    columns: Mapping[str, tuple[Converter | None, tuple[str, ...] | None]]

    @classmethod
    def of(cls, table: TableSchema, digest: str) -> _Decoder:
        keys, _ = _key_names(table)
        columns = {
            c.name: (converter_for(c.type, affinity(c.type.native)), _classes(c.type))
            for c in table.columns
        }
        return cls(table, digest, keys, columns)

    def value(self, name: str, value: Any, key: Mapping[str, Any] | None) -> Any:
        raw = _raw(value)
        if raw is None or name not in self.columns:
            return raw
        conv, classes = self.columns[name]
        col = self.table.column(name)
        if conv is not None:
            try:
                return conv(raw)
            except (BadValue, ValueError, TypeError, ArithmeticError) as exc:
                raise DataError(
                    f"changed value {preview(raw)} is not a valid {col.type} "
                    f"({col.type.native or 'no declared type'}): {exc}",
                    table=self.table.id.name,
                    column=name,
                    key=key,
                ) from None
        if classes is not None and _STORAGE.get(type(raw)) not in classes:
            raise DataError(
                f"changed {_STORAGE.get(type(raw), '?')} value {preview(raw)} is not a valid "
                f"{col.type} ({col.type.native or 'no declared type'})",
                table=self.table.id.name,
                column=name,
                key=key,
            )
        return raw

    def key(self, text: str) -> dict[str, Any]:
        values = json.loads(text)
        raw = dict(zip(self.keys, values, strict=True))
        return {n: self.value(n, v, raw) for n, v in raw.items()}

    def image(self, text: str | None, key: Mapping[str, Any]) -> dict[str, Any] | None:
        if text is None:
            return None
        data = json.loads(text)
        if isinstance(data, list):  # a wide table's image comes in parts
            merged: dict[str, Any] = {}
            for part in data:
                merged.update(part)
            data = merged
        return {n: self.value(n, v, key) for n, v in data.items()}


class SqliteChangeReader:
    """Reads the changes the triggers of :func:`install` record (a ``ChangeReader``).

    ``start`` is where :meth:`transactions` begins when called without one (default: after the
    last acknowledged position, else the oldest change still in the table). Options:
    ``poll_interval`` (seconds between polls when idle), ``stop_when_idle`` (return after that
    many idle seconds; ``None``: poll forever, until :meth:`close`), ``batch_size`` (change
    rows per query).
    """

    def __init__(
        self,
        endpoint: SqliteEndpoint,
        *,
        start: SqliteSeq | None = None,
        poll_interval: float = 0.5,
        stop_when_idle: float | None = None,
        batch_size: int = 5_000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if batch_size < 1 or poll_interval < 0:
            raise ConfigError("batch_size must be >= 1 and poll_interval >= 0")
        self._endpoint = endpoint
        self._start = start
        self.poll_interval = poll_interval
        self.stop_when_idle = stop_when_idle
        self.batch_size = batch_size
        self._sleep = sleep
        self._conn: sqlite3.Connection | None = _connect(endpoint)
        self._acked: SqliteSeq | None = None
        self._decoders: dict[str, _Decoder] = {}
        self._schema_version: int | None = None
        if not _exists(self._conn, CHANGES_TABLE):
            self.close()
            raise ConfigError(f"SQLite CDC is not set up in {endpoint.url}; run install first")

    @property
    def acknowledged(self) -> SqliteSeq | None:
        """The last position passed to :meth:`ack`."""
        return self._acked

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigError("this SQLite change reader is closed")
        return self._conn

    def _state(self, name: str) -> int:
        row = (
            self._connection()
            .execute("SELECT value FROM _replikit_cdc_state WHERE name = ?", (name,))
            .fetchone()
        )
        return int(row[0]) if row else 0

    def _check_start(self, start: SqliteSeq) -> None:
        conn = self._connection()
        purged = self._state("purged")
        if start.value < purged:
            raise PositionLostError(
                f"SQLite change position {start} is gone: changes up to {purged} were purged; "
                "run a new full load"
            )
        row = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (CHANGES_TABLE,)
        ).fetchone()
        if start.value > (row[0] if row else 0):
            raise PositionLostError(
                f"SQLite change position {start} is ahead of the change table in "
                f"{self._endpoint.url} (was CDC uninstalled and set up again?); "
                "run a new full load"
            )

    def _refresh(self, conn: sqlite3.Connection) -> None:
        """Rebuild the decoders when the schema changed; SchemaError for stale triggers."""
        (version,) = conn.execute("PRAGMA schema_version").fetchone()
        if version == self._schema_version:
            return
        decoders: dict[str, _Decoder] = {}
        for name, recorded in conn.execute("SELECT tbl, schema_hash FROM _replikit_cdc_tables"):
            current = schema_hash(conn, name)
            if current != recorded:
                what = "was dropped or renamed" if current is None else "has changed columns"
                raise SchemaError(
                    f"table {name!r} {what} since SQLite CDC was set up, so its change "
                    "triggers are stale; re-run the CDC setup (install) for it"
                )
            old = self._decoders.get(name)
            if old is not None and old.hash == current:
                decoders[name] = old
                continue
            schema = reflect_table(conn, name)
            assert schema is not None
            assert current is not None
            decoders[name] = _Decoder.of(schema, current)
        self._decoders = decoders
        self._schema_version = version

    def _poll(self, after: int) -> list[Any]:
        conn = self._connection()
        conn.execute("BEGIN")  # schema check and rows from one snapshot
        try:
            self._refresh(conn)
            return conn.execute(
                "SELECT seq, tbl, op, pk, new_row, old_row, ts FROM _replikit_changes "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, self.batch_size),
            ).fetchall()
        finally:
            conn.execute("COMMIT")

    def _transaction(self, row: Sequence[Any]) -> Transaction:
        seq, tbl, op, pk, new_row, old_row, ts = row
        decoder = self._decoders.get(tbl)
        if decoder is None:
            raise SchemaError(
                f"change {seq} is for table {tbl!r}, which SQLite CDC is not set up for"
            )
        key = decoder.key(pk)
        position = SqliteSeq(seq)
        commit_ts = datetime.fromtimestamp(ts, UTC)
        change = Change(
            op=_OPS[op],
            table=TableId(None, tbl),
            key=key,
            before=decoder.image(old_row, key),
            after=decoder.image(new_row, key),
            position=position,
            commit_ts=commit_ts,
        )
        return Transaction(changes=(change,), position=position, commit_ts=commit_ts)

    def transactions(self, start: Position | None = None) -> Iterator[Transaction]:
        """One transaction per change row committed after ``start``, in commit order."""
        begin = start if start is not None else (self._start or self._acked or SqliteSeq(0))
        if not isinstance(begin, SqliteSeq):
            raise ConfigError(f"a SQLite change reader cannot start at {begin}")
        self._check_start(begin)
        last = begin.value
        idle_since: float | None = None
        while self._conn is not None:
            rows = self._poll(last)
            for row in rows:
                yield self._transaction(row)
                last = row[0]
            if len(rows) == self.batch_size:
                continue
            if rows:
                idle_since = None
            now = time.monotonic()
            if idle_since is None and not rows:
                idle_since = now
            if (
                self.stop_when_idle is not None
                and idle_since is not None
                and now - idle_since >= self.stop_when_idle
            ):
                return
            self._sleep(self.poll_interval)

    def ack(self, position: Position) -> None:
        """Record that everything up to ``position`` is durable downstream (see :meth:`purge`)."""
        if not isinstance(position, SqliteSeq):
            raise ConfigError(f"not a SQLite change position: {position}")
        if self._acked is None or position > self._acked:
            self._acked = position

    def purge(self, up_to: SqliteSeq | None = None) -> int:
        """Delete acknowledged change rows up to ``up_to`` (default: the last ack); the count.

        Rows above the last :meth:`ack` are never deleted. Other readers of the same database
        lose the purged rows too (one consumer per database).
        """
        if self._acked is None:
            return 0
        limit = self._acked if up_to is None else min(up_to, self._acked)
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = conn.execute(
                "DELETE FROM _replikit_changes WHERE seq <= ?", (limit.value,)
            ).rowcount
            conn.execute(
                "INSERT INTO _replikit_cdc_state (name, value) VALUES ('purged', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                (limit.value,),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(deleted)

    def close(self) -> None:
        """Release the connection; a running :meth:`transactions` stops at its next poll."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SqliteChangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Change data capture for SQLite: triggers into a change table (opt-in).

:func:`install` creates ``_replikit_changes`` and ``AFTER INSERT/UPDATE/DELETE`` triggers on the
chosen tables; every committed write, from any process or connection, adds one row per changed
row. A rolled-back write rolls its change rows back too. SQLite has one writer at a time, so
``seq`` order is commit order and a reader never sees a gap fill in later. The row format is in
:mod:`._cdc_codec`; set-up, tasks and the handoff snapshot in :mod:`._cdc_setup`.

:class:`SqliteChangeReader` polls the change table and yields one
:class:`~replikit.changes.Transaction` **per changed row**. Triggers cannot see a transaction
id, and grouping by the change timestamp would be a guess (one transaction's statements get
different timestamps and two transactions can share one), so a source transaction that
changed several rows arrives as several consecutive one-change transactions. Delivery is still
exact and in commit order; a target may briefly show part of a multi-row source transaction.

Schema changes. The triggers list the columns they record, so a table whose columns change
(``ALTER TABLE ... ADD COLUMN``) has stale triggers until they are remade, and the changes they
record meanwhile lack the new columns. The reader checks every table's columns whenever the
database schema changes and, in the same snapshot as the rows it reads:

* stale triggers stop it with :class:`~replikit.SchemaError` -- unless the endpoint opted in to
  DDL (``cdc_setup=True``) and columns were only added: then it remakes the triggers itself,
  provided no change of that table was recorded since its last read (else nothing can tell a
  change made before the ``ALTER`` from one made after it, and the error says to reload it);
* triggers remade since the reader last read (by itself, ``cdc_setup`` or ``install``) yield a
  :class:`~replikit.changes.SchemaChange` (an empty transaction carrying it) before the first
  change of the new shape; when changes of the table were recorded between the reader's
  position and the remake, it stops with :class:`~replikit.SchemaError` instead (reload).

A dropped column cannot happen (SQLite refuses to drop a column a trigger uses); a renamed
column or a rebuilt table is reported as a schema change or an error, never decoded wrongly.

Known gap: ``INSERT OR REPLACE`` (and ``REPLACE``) deletes conflicting rows without firing
delete triggers unless the writing connection set ``PRAGMA recursive_triggers = ON``. A row
replaced on its own key arrives as an insert of that key (the upsert on apply converges); a
row removed because it clashed on *another* UNIQUE constraint is not seen at all.

CDC needs a database file (not ``:memory:``) that replikit may write to.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from replikit.changes import Change, SchemaChange, Transaction
from replikit.endpoints.sqlite._cdc_codec import (
    CHANGES_TABLE,
    OPS,
    STATE_TABLE,
    TABLES_TABLE,
    TASKS_TABLE,
    ColumnInfo,
    Decoder,
    renames,
    schema_change,
)
from replikit.endpoints.sqlite._cdc_setup import (
    TableRef,
    connect,
    current,
    exists,
    install,
    installed_tables,
    problems,
    recorded,
    regenerate,
    register,
    schema_hash,
    setup,
    snapshot,
    snapshot_position,
    stale_error,
    start,
    table_name,
    teardown,
    uninstall,
)
from replikit.endpoints.sqlite.reflect import reflect_table
from replikit.errors import ConfigError, ConnectError, PositionLostError, SchemaError
from replikit.positions import Position, SqliteSeq
from replikit.schema.model import TableId

if TYPE_CHECKING:
    from replikit.endpoints.sqlite import SqliteEndpoint

__all__ = [
    "CHANGES_TABLE",
    "STATE_TABLE",
    "TABLES_TABLE",
    "TASKS_TABLE",
    "SqliteChangeReader",
    "current",
    "install",
    "installed_tables",
    "register",
    "schema_hash",
    "setup",
    "snapshot",
    "snapshot_position",
    "start",
    "teardown",
    "uninstall",
]

_CLOSE_WAIT = 1.0  # seconds close() waits for a running poll before leaving it the connection
_PURGE_BUSY_MS = 200  # purging is opportunistic: never wait long for the write lock
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _shape(text: str) -> list[ColumnInfo]:
    """A recorded column list (JSON) as :data:`ColumnInfo` tuples."""
    return [(str(c[0]), str(c[1]), int(c[2]), int(c[3]), int(c[4])) for c in json.loads(text)]


class SqliteChangeReader:
    """Reads the changes the triggers of :func:`install` record (a ``ChangeReader``).

    ``tables`` (names, ``TableId`` s or ``TableSchema`` s; ``None``: every captured table) are
    the tables whose changes it delivers; changes of other captured tables are skipped, and
    when only such changes were seen for ``heartbeat`` seconds an empty transaction carries the
    position past them (so a checkpoint, and the purge, can move on). ``task`` names the
    replication task: its acknowledged position is stored in the database so the purge of
    another task never deletes what it still needs.

    ``start`` is where :meth:`transactions` begins when called without one (default: after the
    last acknowledged position, else the oldest change still in the table). Options:
    ``poll_interval`` (seconds between polls when idle), ``stop_when_idle`` (return after that
    many idle seconds; ``None``: poll until :meth:`close`), ``batch_size`` (change rows per
    query), ``purge_interval`` (delete acknowledged change rows at most this often, from the
    polling thread), ``regenerate`` (remake stale triggers when that loses nothing; default:
    the endpoint's ``cdc_setup`` option). ``spill_bytes`` is accepted for the common reader
    options and has nothing to do: every change row is a transaction of its own, so no
    transaction is ever large.

    Threads: :meth:`transactions` runs in one thread; :meth:`ack`, :meth:`purge` and
    :meth:`close` may be called from any other. ``close`` makes a running ``transactions``
    return within about a second, even while it waits between polls.
    """

    def __init__(
        self,
        endpoint: SqliteEndpoint,
        tables: Sequence[TableRef] | None = None,
        *,
        task: str | None = None,
        start: SqliteSeq | None = None,
        poll_interval: float = 0.1,
        stop_when_idle: float | None = None,
        batch_size: int = 5_000,
        purge_interval: float = 5.0,
        heartbeat: float = 1.0,
        regenerate: bool | None = None,
        spill_bytes: int | None = None,
    ) -> None:
        if batch_size < 1 or poll_interval < 0 or purge_interval < 0 or heartbeat < 0:
            raise ConfigError(
                "batch_size must be >= 1; poll_interval, purge_interval and heartbeat >= 0"
            )
        if spill_bytes is not None and spill_bytes < 0:
            raise ConfigError(f"spill_bytes must be >= 0, not {spill_bytes}")
        self._endpoint = endpoint
        self._names = None if tables is None else {table_name(t).lower() for t in tables}
        self._task = task
        self._start = start
        self.poll_interval = poll_interval
        self.stop_when_idle = stop_when_idle
        self.batch_size = batch_size
        self.purge_interval = purge_interval
        self.heartbeat = heartbeat
        self.regenerate = (
            bool(endpoint.options.get("cdc_setup", False)) if regenerate is None else regenerate
        )
        self._io = threading.Lock()  # the connection is used by one thread at a time
        self._closed = threading.Event()
        self._ack_lock = threading.Lock()
        self._acked: SqliteSeq | None = None
        self._purged_to = 0
        self._last_purge = float("-inf")
        self._decoders: dict[str, Decoder] = {}
        self._shapes: dict[str, list[ColumnInfo]] = {}
        self._version: int | None = None
        self._stale: list[str] = []
        self._pending: list[SchemaChange] = []
        self._gone: set[str] = set()  # tables reported renamed or dropped (lower case)
        #: per table renamed under its triggers: the last change recorded by the old triggers
        #: and the decoder of such rows (their images carry the old names)
        self._recorded_as: dict[str, tuple[int, Decoder]] = {}
        self._conn: sqlite3.Connection | None = connect(endpoint)
        if not exists(self._conn, CHANGES_TABLE):
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

    # -- reading ---------------------------------------------------------------------------

    def transactions(self, start: Position | None = None) -> Iterator[Transaction]:
        """One transaction per change row committed after ``start``, in commit order."""
        begin = start if start is not None else (self._start or self._acked or SqliteSeq(0))
        if not isinstance(begin, SqliteSeq):
            raise ConfigError(f"a SQLite change reader cannot start at {begin}")
        with self._io, self._translated("read changes from"):
            self._check_start(self._connection(), begin)
        self._version = None  # check every table's triggers against this start
        self._decoders, self._shapes, self._gone = {}, {}, set()
        last = reported = begin.value
        idle_since: float | None = None
        quiet_since = time.monotonic()
        while (rows := self._next_rows(last)) is not None:
            if self._pending:
                yield Transaction((), SqliteSeq(last), schema_changes=tuple(self._pending))
                self._pending = []
            for row in rows:
                last = row[0]
                wanted = self._names is None or row[1].lower() in self._names
                if wanted and row[1].lower() not in self._gone:
                    yield self._transaction(row)
                    reported, quiet_since = last, time.monotonic()
                    if self._closed.is_set():
                        return
            now = time.monotonic()
            if last > reported and now - quiet_since >= self.heartbeat:
                yield Transaction((), SqliteSeq(last))  # only other tables' changes: move on
                reported, quiet_since = last, now
            if len(rows) == self.batch_size:
                continue
            idle_since = None if rows else (idle_since or now)
            idle = None if idle_since is None else now - idle_since
            if idle is not None and self.stop_when_idle is not None and idle >= self.stop_when_idle:
                return
            self._closed.wait(self.poll_interval)

    def _next_rows(self, last: int) -> list[Any] | None:
        """The next change rows after ``last`` (``None`` once closed); purges on the way."""
        while True:
            with self._io, self._translated("read changes from"):
                if self._closed.is_set() or self._conn is None:
                    self._close_connection()
                    return None
                rows = self._poll(self._conn, last)
                if not self._stale:
                    self._maybe_purge(self._conn)
                    return rows
                stale, self._stale = self._stale, []
            regenerate(self._endpoint, stale, after=last)
            self._version = None

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """sqlite3 errors as :class:`ConnectError` (the database is unreachable or broken)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise ConnectError(f"cannot {what} {self._endpoint.url}: {exc}") from exc

    def _poll(self, conn: sqlite3.Connection, after: int) -> list[Any]:
        conn.execute("BEGIN")  # schema check and rows from one snapshot
        try:
            (version,) = conn.execute("PRAGMA schema_version").fetchone()
            if version != self._version:
                self._refresh(conn, after)
                if self._stale:
                    return []
                self._version = version
            return conn.execute(
                f"SELECT seq, tbl, op, pk, new_row, old_row, ts FROM {CHANGES_TABLE} "  # noqa: S608
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, self.batch_size),
            ).fetchall()
        finally:
            conn.execute("COMMIT")

    def _refresh(self, conn: sqlite3.Connection, last: int) -> None:
        """Check the tables' triggers; rebuild decoders, noting schema changes since ``last``."""
        known = recorded(conn)
        wanted = known if self._names is None else {n: known.get(n, (n,)) for n in self._names}
        names = [rec[0] for rec in wanted.values()]
        names = [n for n in names if n.lower() not in self._gone]
        for name, why in problems(conn, names).items():
            if why.startswith("columns changed") and self.regenerate:
                self._stale.append(name)
            elif why.startswith("columns changed"):
                raise stale_error(name, "has changed columns")
            elif why == "table gone":  # its triggers moved with it: renamed
                self._table_gone(name, "was renamed", known.get(name.lower()))
            elif why.startswith("change triggers missing"):  # dropped with the table
                self._table_gone(name, "was dropped (or rebuilt)", known.get(name.lower()))
            else:
                raise SchemaError(
                    f"table {name!r}: {why}, so its changes are not recorded; re-run the CDC "
                    "setup for it (rk.endpoint(url, cdc_setup=True)) and reload the table"
                )
        if self._stale:
            return
        decoders: dict[str, Decoder] = {}
        for name in names:
            if name.lower() not in self._gone:
                decoders[name] = self._decoder(conn, known[name.lower()], last)
        self._decoders = decoders

    def _table_gone(self, name: str, what: str, rec: Sequence[Any] | None) -> None:
        """Report a captured table renamed or dropped under its triggers, once, as a schema
        change dropping every column (the task suspends that table; the others go on), and
        read none of its changes from here on: which of those came before the DDL is unknown.
        ``rec``: its record of the CDC set-up (the columns its triggers captured)."""
        self._gone.add(name.lower())
        old = self._decoders.get(name)
        columns = [c.name for c in old.table.columns] if old is not None else []
        if not columns and rec is not None and len(rec) > 2:
            columns = [c[0] for c in _shape(rec[2])]
        self._pending.append(
            SchemaChange(
                table=old.table.id if old is not None else TableId(None, name),
                dropped=tuple(columns),
                description=(
                    f"SQLite table {name} {what} since the last changes read: its changes "
                    "are no longer captured under its name"
                ),
            )
        )

    def _decoder(
        self, conn: sqlite3.Connection, rec: tuple[str, str, str, int, str | None], last: int
    ) -> Decoder:
        name, digest, columns, since, previous = rec
        old = self._decoders.get(name)
        if old is not None and old.hash == digest:
            return old
        shape = _shape(columns)
        only_renamed = previous is not None and len(_shape(previous)) == len(shape) and (
            renames(_shape(previous), shape) is not None
        )  # rows recorded by the old triggers decode alike under the new names
        if since > last and not only_renamed:  # remade after the position: older rows stale?
            (pending,) = conn.execute(
                f"SELECT count(*) FROM {CHANGES_TABLE} WHERE tbl = ? AND seq > ? AND seq <= ?",  # noqa: S608
                (name, last, since),
            ).fetchone()
            if pending:
                raise stale_error(name, "had its change triggers remade", pending=pending)
        schema = reflect_table(conn, name)
        assert schema is not None  # problems() checked it
        before = self._shapes.get(name) if old is not None else None
        if before is None and since >= last and previous is not None:  # not reported yet
            before = _shape(previous)
        if before is not None and before != shape:
            self._pending.append(schema_change(schema, before, shape))
        self._shapes[name] = shape
        decoder = Decoder.of(schema, digest)
        renamed = renames(_shape(previous), shape) if previous is not None else None
        if renamed:  # rows up to the remake carry the old names
            self._recorded_as[name] = (since, replace(decoder, aliases=dict(renamed)))
        return decoder

    def _check_start(self, conn: sqlite3.Connection, start: SqliteSeq) -> None:
        row = conn.execute(f"SELECT value FROM {STATE_TABLE} WHERE name = 'purged'").fetchone()  # noqa: S608
        purged = int(row[0]) if row else 0
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

    def _transaction(self, row: Sequence[Any]) -> Transaction:
        seq, tbl, op, pk, new_row, old_row, ts = row
        decoder = self._decoders.get(tbl)
        older = self._recorded_as.get(tbl)
        if older is not None and seq <= older[0]:
            decoder = older[1]
        if decoder is None:
            raise SchemaError(
                f"change {seq} is for table {tbl!r}, which SQLite CDC is not set up for"
            )
        key, before, after = decoder.row(pk, new_row, old_row)
        position = SqliteSeq(seq)
        commit_ts = datetime.fromtimestamp(ts, UTC)
        change = Change(
            op=OPS[op],
            table=decoder.table.id,
            key=key,
            before=before,
            after=after,
            position=position,
            commit_ts=commit_ts,
        )
        return Transaction(changes=(change,), position=position, commit_ts=commit_ts)

    # -- acknowledging and purging ---------------------------------------------------------

    def ack(self, position: Position) -> None:
        """Record that everything up to ``position`` is durable downstream (any thread).

        The polling thread then deletes the acknowledged change rows, at most every
        ``purge_interval`` seconds (see :meth:`purge`).
        """
        if not isinstance(position, SqliteSeq):
            raise ConfigError(f"not a SQLite change position: {position}")
        with self._ack_lock:
            if self._acked is None or position > self._acked:
                self._acked = position

    def _maybe_purge(self, conn: sqlite3.Connection) -> None:
        acked = self._acked
        now = time.monotonic()
        if acked is None or acked.value <= self._purged_to:
            return
        if now - self._last_purge < self.purge_interval:
            return
        self._last_purge = now
        timeout = int(float(self._endpoint.options.get("timeout", 30.0)) * 1000)
        conn.execute(f"PRAGMA busy_timeout = {_PURGE_BUSY_MS}")
        try:
            self._purge(conn, acked.value, acked.value)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) not in _BUSY:  # busy: next time
                raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {timeout}")

    def purge(self, up_to: SqliteSeq | None = None) -> int:
        """Delete acknowledged change rows up to ``up_to`` (default: the last ack); the count.

        Rows above the last :meth:`ack`, or above what another registered task acknowledged,
        are never deleted.
        """
        acked = self._acked
        if acked is None:
            return 0
        limit = acked if up_to is None else min(up_to, acked)
        with self._io, self._translated("delete acknowledged changes in"):
            return self._purge(self._connection(), acked.value, limit.value)

    def _purge(self, conn: sqlite3.Connection, acked: int, limit: int) -> int:
        conn.execute("BEGIN IMMEDIATE")  # a busy database raises here, with nothing begun
        try:
            if self._task is not None:
                names = self._names or [rec[0] for rec in recorded(conn).values()]
                register(conn, self._task, sorted(names), acked)
            if exists(conn, TASKS_TABLE):
                (floor,) = conn.execute(
                    f"SELECT min(acked) FROM {TASKS_TABLE} WHERE task IS NOT ?",  # noqa: S608
                    (self._task,),
                ).fetchone()
                limit = limit if floor is None else min(limit, int(floor))
            deleted = conn.execute(
                f"DELETE FROM {CHANGES_TABLE} WHERE seq <= ?",  # noqa: S608
                (limit,),
            ).rowcount
            conn.execute(
                f"INSERT INTO {STATE_TABLE} (name, value) VALUES ('purged', ?) "  # noqa: S608
                "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                (limit,),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._purged_to = max(self._purged_to, limit)
        return int(deleted)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop :meth:`transactions` (it returns within about a second) and release the
        connection; any thread may call it, any number of times."""
        self._closed.set()
        if self._io.acquire(timeout=_CLOSE_WAIT):
            try:
                self._close_connection()
            finally:
                self._io.release()
        # else a poll is running: the polling thread closes the connection when it sees _closed

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SqliteChangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

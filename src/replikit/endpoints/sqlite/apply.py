"""Applying CDC transactions to a SQLite target: :class:`SqliteChangeWriter`.

One :meth:`~SqliteChangeWriter.apply` call is one SQLite transaction (``BEGIN IMMEDIATE`` ...
``COMMIT``, rolled back on any error) holding the changes and the task's row in the
``replikit_checkpoints`` control table: both commit or neither does. Apply is idempotent, so
replays converge: inserts and full updates are upserts (``INSERT ... ON CONFLICT (key) DO
UPDATE``), deletes delete the row if it is there, partial updates set the columns present.

Changes name the plan's target table and the planned *source* column names; every value goes
through the plan's column adapter exactly as in the full-load writer, so a row lands with the
same stored values whether it came by full load or by CDC. A value that cannot be adapted, or
that SQLite refuses (NOT NULL, CHECK, UNIQUE, an integer too big), raises
:class:`~replikit.DataError` naming the table, the key and (where it can be told) the column.

``batch=True`` reduces the transactions to their net effect per key
(:func:`replikit.pipeline.netchange.net_changes`) and writes each group, table by table, as
truncate (``DELETE FROM``), deletes, upserts, partial updates, each with ``executemany``. A
transaction too large for memory (its changes in a spill file) is reduced and written in pieces
(:func:`~replikit.pipeline.apply_support.pieces`) inside the same SQLite transaction.

The writer uses the endpoint's one write connection under its lock, as the full-load writer
does, so one process never writes a database file through two connections at once.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from replikit._failpoints import failpoint
from replikit.changes import Change, Op, Transaction
from replikit.endpoints.sqlite import _ddl
from replikit.endpoints.sqlite._connect import Connections
from replikit.endpoints.sqlite._dialect import DIALECT
from replikit.endpoints.sqlite._values import BadValue
from replikit.errors import ConfigError, ConnectError, DataError, SchemaError
from replikit.pipeline import apply_support
from replikit.pipeline.apply_support import Plans, Txs, loaded_from_text, loaded_text
from replikit.pipeline.conflicts import probe_sql
from replikit.pipeline.contracts import Checkpoint
from replikit.pipeline.netchange import Key, TableNet, net_changes
from replikit.positions import Position
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.model import TableId

__all__ = ["CHECKPOINTS", "SqliteChangeWriter"]

CHECKPOINTS = "replikit_checkpoints"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (task TEXT PRIMARY KEY, start_position TEXT, "
    "position TEXT, phase TEXT NOT NULL, loaded TEXT NOT NULL, commit_ts TEXT, "
    "updated_at TEXT NOT NULL)"
)
_COLUMNS = "task, start_position, position, phase, loaded, commit_ts, updated_at"
_ROW_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    OverflowError,
)
_ADAPT_ERRORS = (BadValue, ValueError, TypeError, AttributeError, ArithmeticError)
_PARAMETER = re.compile(r"parameter (\d+)")
_INT64 = range(-(2**63), 2**63)


class _Table:
    """One target table: its statements, key and adapters, by planned source column name."""

    def __init__(self, plan: TablePlan) -> None:
        self.plan = plan
        self.label = str(plan.target_id)
        self.quoted = DIALECT.quote(plan.target_id.name)
        self.columns: dict[str, ColumnPlan] = {}
        self.computed = plan.computed  # generated in the target: never written
        for cp in plan.columns:
            if cp.source.name not in self.computed:
                self.columns.setdefault(cp.source.name, cp)
        self.order = tuple(self.columns)
        source_of = {cp.name: cp.source.name for cp in plan.columns}
        self.key = tuple(source_of.get(k, k) for k in plan.target_schema.key)
        self._sql: dict[tuple[str, tuple[str, ...]], str] = {}

    def require_key(self) -> None:
        if not self.key or any(k not in self.columns for k in self.key):
            raise SchemaError(
                f"target table {self.label} has no primary key among its planned columns; "
                "CDC apply finds rows by key"
            )

    def target(self, column: str) -> str:
        try:
            return self.columns[column].name
        except KeyError:
            raise SchemaError(
                f"change column {column!r} is not planned for table {self.label} "
                "(a source schema change not applied to the target?)"
            ) from None

    def names(self, image: Mapping[str, Any]) -> tuple[str, ...]:
        """The image's columns in table order (SchemaError for an unplanned one)."""
        names = tuple(n for n in self.order if n in image)
        if len(names) != len(image):
            unknown = [n for n in image if n not in self.columns and n not in self.computed]
            if unknown:
                self.target(unknown[0])
        return names

    def key_of(self, *images: Mapping[str, Any] | None) -> Key:
        def missing(column: str) -> DataError:
            return DataError(f"change has no value for key column {column!r}", table=self.label)

        return apply_support.key_of(self.key, images, missing)

    def named_key(self, key: Key) -> dict[str, Any]:
        """A key with target column names, for messages."""
        return {self.target(c): v for c, v in zip(self.key, key, strict=True)}

    def adapt(self, column: str, value: Any, key: Key) -> Any:
        adapt = self.columns[column].target.adapt
        if value is None or adapt is None:
            return value
        try:
            return adapt(value)
        except _ADAPT_ERRORS as exc:
            raise DataError.unwritable(
                value, exc, table=self.label, column=self.target(column), key=self.named_key(key)
            ) from None

    def values(self, names: Sequence[str], image: Mapping[str, Any], key: Key) -> list[Any]:
        return [self.adapt(n, image[n], key) for n in names]

    def key_values(self, key: Key) -> list[Any]:
        return [self.adapt(c, v, key) for c, v in zip(self.key, key, strict=True)]

    # -- statements (cached per column set) ------------------------------------------------

    def where(self) -> str:
        """``key1 IS ? AND ...`` (target names)."""
        return " AND ".join(f"{DIALECT.quote(self.target(k))} IS ?" for k in self.key)

    def upsert(self, names: tuple[str, ...]) -> str:
        sql = self._sql.get(("upsert", names))
        if sql is None:
            cols = [DIALECT.quote(self.target(n)) for n in names]
            keys = ", ".join(DIALECT.quote(self.target(k)) for k in self.key)
            rest = [c for n, c in zip(names, cols, strict=True) if n not in self.key]
            action = (
                "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest)
                if rest
                else "DO NOTHING"
            )
            sql = self._sql[("upsert", names)] = (
                f"INSERT INTO {self.quoted} ({', '.join(cols)}) "  # noqa: S608 - quoted
                f"VALUES ({', '.join('?' * len(cols))}) ON CONFLICT ({keys}) {action}"
            )
        return sql

    def update(self, names: tuple[str, ...]) -> str:
        sql = self._sql.get(("update", names))
        if sql is None:
            sets = ", ".join(f"{DIALECT.quote(self.target(n))} = ?" for n in names)
            sql = self._sql[("update", names)] = (
                f"UPDATE {self.quoted} SET {sets} WHERE {self.where()}"  # noqa: S608 - quoted
            )
        return sql

    def delete(self) -> str:
        return f"DELETE FROM {self.quoted} WHERE {self.where()}"  # noqa: S608 - quoted

    def truncate(self) -> str:
        return f"DELETE FROM {self.quoted}"  # noqa: S608 - quoted


class SqliteChangeWriter(apply_support.ChangeWriterBase):
    """Applies CDC transactions to a SQLite database, with the checkpoint in the same
    transaction (see the module docs). Used from one thread at a time."""

    dialect = DIALECT
    default_schema: str | None = None  # as the full-load writer's: the same target ids
    reports_conflicts = True

    def __init__(self, connections: Connections) -> None:
        self._conns = connections
        self._tables: dict[int, tuple[TablePlan, _Table]] = {}
        self._closed = False

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise ConfigError("this SQLite change writer is closed")
        return self._conns.shared()

    def _table(self, plans: Mapping[TableId, TablePlan], tid: TableId) -> _Table:
        plan = plans.get(tid)
        if plan is None:
            raise SchemaError(f"a change names table {tid}, which has no plan in this apply")
        cached = self._tables.get(id(plan))
        if cached is None or cached[0] is not plan:
            cached = self._tables[id(plan)] = (plan, _Table(plan))
        return cached[1]

    # -- checkpoints -----------------------------------------------------------------------

    def read_checkpoint(self, task: str) -> Checkpoint | None:
        """The stored checkpoint of ``task`` (``None``: none stored)."""
        conn = self._conn()
        with self._conns.lock:
            if not _exists(conn, CHECKPOINTS):
                return None
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM {CHECKPOINTS} WHERE task = ?",  # noqa: S608
                (task,),
            ).fetchone()
        return None if row is None else self._checkpoint(row)

    def _checkpoint(self, row: Sequence[Any]) -> Checkpoint:
        task, start, position, phase, loaded, commit_ts, _ = row
        try:
            if phase not in ("full-load", "cdc"):
                raise ValueError(f"unknown phase {phase!r}")
            names = loaded_from_text(loaded)
            if names is None:
                raise ValueError(f"loaded is {loaded!r}")
            return Checkpoint(
                task=task,
                start=Position.parse(start) if start else None,
                position=Position.parse(position) if position else None,
                phase=phase,
                loaded=names[0],
                commit_ts=datetime.fromisoformat(commit_ts) if commit_ts else None,
                snapshots=names[1],
            )
        except (ValueError, TypeError, ConfigError) as exc:
            raise ConfigError(
                f"the checkpoint of task {task!r} in {CHECKPOINTS} ({self._conns.where}) "
                f"is damaged: {exc}; drop it to start the task afresh"
            ) from None

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` on its own (creates the control table when missing)."""
        self._transaction(lambda conn: self._store(conn, checkpoint))

    def _store(self, conn: sqlite3.Connection, cp: Checkpoint) -> None:
        conn.execute(_CREATE)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])
        conn.execute(
            f"INSERT INTO {CHECKPOINTS} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
            f"ON CONFLICT (task) DO UPDATE SET {updates}",
            (
                cp.task,
                None if cp.start is None else str(cp.start),
                None if cp.position is None else str(cp.position),
                cp.phase,
                loaded_text(cp),
                None if cp.commit_ts is None else cp.commit_ts.isoformat(),
                datetime.now(UTC).isoformat(),
            ),
        )
        if cp.report is not None:  # the task's status, in the same transaction
            cp.report.write(conn, "sqlite")

    def drop_control(self, task: str) -> None:
        """Forget ``task``'s checkpoint; drop the table when no task is left."""

        def drop(conn: sqlite3.Connection) -> None:
            if not _exists(conn, CHECKPOINTS):
                return
            conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE task = ?", (task,))  # noqa: S608
            if conn.execute(f"SELECT 1 FROM {CHECKPOINTS} LIMIT 1").fetchone() is None:  # noqa: S608
                conn.execute(f"DROP TABLE {CHECKPOINTS}")

        self._transaction(drop)

    # -- schema ----------------------------------------------------------------------------

    def add_columns(self, plan: TablePlan, columns: Sequence[ColumnPlan]) -> None:
        """Add ``columns`` to ``plan``'s target table (those it has already are skipped)."""
        name = plan.target_id.name

        def add(conn: sqlite3.Connection) -> None:
            rows = conn.execute("SELECT name FROM pragma_table_xinfo(?)", (name,)).fetchall()
            if not rows:
                raise SchemaError(f"target table {plan.target_id} does not exist")
            existing = {str(r[0]).lower() for r in rows}
            for cp in columns:
                if cp.name.lower() in existing:
                    continue
                try:
                    conn.execute(_ddl.add_column(plan, cp))
                except sqlite3.OperationalError as exc:
                    raise SchemaError(
                        f"cannot add column {cp.name} to table {plan.target_id}: {exc}"
                    ) from exc

        self._transaction(add)
        self._tables.clear()

    def run_ddl(self, statements: Sequence[str]) -> None:
        """Run ``statements`` in one transaction (a schema change followed on the target)."""

        def work(conn: sqlite3.Connection) -> None:
            for statement in statements:
                try:
                    conn.execute(statement)
                except sqlite3.OperationalError as exc:
                    raise SchemaError(f"the target refused {statement}: {exc}") from exc

        self._transaction(work)
        self._tables.clear()

    # -- apply -----------------------------------------------------------------------------

    def _apply(
        self, plans: Plans, transactions: Txs, checkpoint: Checkpoint | None, batch: bool
    ) -> None:

        def work(conn: sqlite3.Connection) -> None:
            for piece in apply_support.pieces(transactions):  # one unless one spilled
                self._conflicts(conn, plans, piece)
                if batch:
                    self._apply_net(conn, plans, piece)
                    continue
                for tx in piece:
                    for change in tx.changes:
                        self._apply_one(conn, self._table(plans, change.table), change)
            if checkpoint is not None:
                self._store(conn, checkpoint)
            failpoint("apply.before-commit")  # recovery tests crash here, mid-transaction

        self._transaction(work)

    def _conflicts(self, conn: sqlite3.Connection, plans: Plans, piece: Txs) -> None:
        """Hand the piece's apply conflicts to ``on_conflicts`` (when asked for)."""
        if self._on_conflicts is None:
            return
        keyed = {c.table for tx in piece for c in tx.changes if c.op is not Op.TRUNCATE}
        tables = {tid: self._table(plans, tid) for tid in keyed}
        for t in tables.values():
            t.require_key()

        def probe(tid: TableId, keys: Sequence[Key]) -> set[int]:
            t = tables[tid]
            sql = probe_sql(t.quoted, t.where(), len(keys))
            params = [v for k in keys for v in t.key_values(k)]
            return {int(r[0]) for r in conn.execute(sql, params).fetchall()}

        self._check_conflicts(
            piece, {tid: t.key for tid, t in tables.items()}, probe,
            lambda tid, key: tables[tid].named_key(key),
        )  # fmt: skip

    def _transaction(self, work: Callable[[sqlite3.Connection], None]) -> None:
        conn = self._conn()
        with self._conns.lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise ConnectError(f"cannot write to SQLite {self._conns.where}: {exc}") from exc
            try:
                work(conn)
                self._fenced(lambda sql, params: conn.execute(sql, params).fetchall())
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _apply_one(self, conn: sqlite3.Connection, t: _Table, change: Change) -> None:
        if change.op is Op.TRUNCATE:
            _run(conn, t, t.truncate(), [()], [()], ())
            return
        t.require_key()
        if change.op is Op.INSERT:
            _upsert(conn, t, [change.after or {}])
        elif change.op is Op.DELETE:
            _delete(conn, t, [t.key_of(change.key, change.before)])
        else:
            after = change.after or {}
            old = t.key_of(change.key, change.before, after)
            if all(n in after for n in t.order):  # a full image: the row's final state
                if t.key_of(after) != old:
                    _delete(conn, t, [old])
                _upsert(conn, t, [after])
            elif after:
                _partial(conn, t, [(old, after)])

    def _apply_net(
        self,
        conn: sqlite3.Connection,
        plans: Mapping[TableId, TablePlan],
        transactions: Sequence[Transaction],
    ) -> None:
        keyed = {c.table for tx in transactions for c in tx.changes if c.op is not Op.TRUNCATE}
        used = {c.table for tx in transactions for c in tx.changes}
        tables = {tid: self._table(plans, tid) for tid in used}
        for tid in keyed:
            tables[tid].require_key()
        net = net_changes(
            transactions,
            keys={tid: t.key for tid, t in tables.items()},
            columns={tid: t.order for tid, t in tables.items()},
        )
        for group in net.groups:
            for tid, ops in group.items():
                t = tables[tid]
                _net(conn, t, ops)

    def close(self) -> None:
        """Stop using the endpoint's write connection (the endpoint's ``close`` closes it)."""
        self._closed = True
        self._tables.clear()


# -- statements ------------------------------------------------------------------------------


def _grouped(items: Iterable[tuple[tuple[str, ...], Any]]) -> dict[tuple[str, ...], list[Any]]:
    groups: dict[tuple[str, ...], list[Any]] = {}
    for names, item in items:
        groups.setdefault(names, []).append(item)
    return groups


def _upsert(conn: sqlite3.Connection, t: _Table, images: Sequence[Mapping[str, Any]]) -> None:
    for names, group in _grouped((t.names(i), i) for i in images).items():
        keys = [t.key_of(i) for i in group]
        params = [t.values(names, i, k) for i, k in zip(group, keys, strict=True)]
        _run(conn, t, t.upsert(names), params, keys, names)


def _delete(conn: sqlite3.Connection, t: _Table, keys: Sequence[Key]) -> None:
    _run(conn, t, t.delete(), [t.key_values(k) for k in keys], keys, t.key)


def _partial(
    conn: sqlite3.Connection, t: _Table, items: Sequence[tuple[Key, Mapping[str, Any]]]
) -> None:
    for names, group in _grouped((t.names(v), (k, v)) for k, v in items if v).items():
        keys = [k for k, _ in group]
        params = [t.values(names, v, k) + t.key_values(k) for k, v in group]
        _run(conn, t, t.update(names), params, keys, names + t.key)


def _run(
    conn: sqlite3.Connection,
    t: _Table,
    sql: str,
    params: Sequence[Sequence[Any]],
    keys: Sequence[Key],
    columns: tuple[str, ...],
) -> None:
    """Execute ``sql`` for every parameter row; errors name the table, key and column."""
    try:
        if len(params) == 1:
            conn.execute(sql, params[0])
        else:
            conn.executemany(sql, params)
    except _ROW_ERRORS as exc:
        rows = list(zip(params, keys, strict=True)) if len(params) > 1 else []
        for row, key in rows:  # the transaction is lost anyway: find the row to name it
            try:
                conn.execute(sql, row)
            except _ROW_ERRORS as one:
                raise _refused(t, one, row, key, columns) from None
        raise _refused(t, exc, params[0], keys[0], columns) from None
    except sqlite3.OperationalError as exc:
        message = str(exc)
        if "locked" in message or "busy" in message:
            raise ConnectError(f"SQLite target {t.label} is busy: {exc}") from exc
        raise SchemaError(
            f"cannot apply changes to table {t.label}: {exc} (does the target table still "
            "match the plan, with its key as primary key or unique constraint?)"
        ) from exc


def _refused(
    t: _Table, exc: BaseException, row: Sequence[Any], key: Key, columns: tuple[str, ...]
) -> DataError:
    return DataError(
        f"SQLite refused the change: {exc}",
        table=t.label,
        column=_bad_column(t, columns, row, exc),
        key=t.named_key(key) if key else None,
    )


def _bad_column(
    t: _Table, columns: tuple[str, ...], row: Sequence[Any], exc: BaseException
) -> str | None:
    message = str(exc)
    targets = [t.target(c) for c in columns]
    for name in targets:
        if message.endswith(f".{name}") or f'"{name}"' in message:
            return name
    if (match := _PARAMETER.search(message)) and 0 < int(match.group(1)) <= len(targets):
        return targets[int(match.group(1)) - 1]
    for name, value in zip(targets, row, strict=False):
        if isinstance(value, int) and value not in _INT64:
            return name
    return None


def _exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return row.fetchone() is not None


def _net(conn: sqlite3.Connection, t: _Table, ops: TableNet) -> None:
    """One table's net operations of a batch, in their order."""
    ops.run(
        lambda: _run(conn, t, t.truncate(), [()], [()], ()),
        lambda keys: _delete(conn, t, keys),
        lambda rows: _upsert(conn, t, rows),
        lambda updates: _partial(conn, t, updates),
    )

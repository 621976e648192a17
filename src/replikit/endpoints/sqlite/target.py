"""Full-load writing into SQLite.

SQLite has one writer at a time, so every :meth:`SqliteWriter.load` call, from whatever thread,
writes through the endpoint's single write connection under its lock, one transaction per
~50,000 rows. Rows are adapted (canonical value -> what sqlite3 binds, per the plan's
adapters) outside the lock. A row SQLite refuses (NOT NULL, CHECK, UNIQUE, an integer too big)
raises :class:`~replikit.DataError` naming table, column and key; its transaction is rolled
back, earlier transactions of the same load stay committed.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import pickle
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from typing_extensions import override

from replikit.endpoints.sqlite import _arrow_load, _column_load, _ddl
from replikit.endpoints.sqlite._connect import Connections
from replikit.endpoints.sqlite._dialect import DIALECT, affinity
from replikit.endpoints.sqlite._values import BadValue, Converter, map_columns
from replikit.endpoints.sqlite.reflect import reflect_table
from replikit.errors import ConfigError, ConnectError, DataError, SchemaError
from replikit.pipeline.contracts import (
    Batch,
    ColumnBatch,
    Fence,
    SupportsArrowWrite,
    SupportsColumnWrite,
    SupportsPrepare,
    Writer,
    table_errors,
)
from replikit.schema.convert import ColumnPlan, Fidelity, TablePlan
from replikit.schema.existing import (
    TargetRules,
    existing_findings,
    judge_existing,
    refuse_existing,
)
from replikit.schema.findings import Finding
from replikit.schema.identifiers import ObjectNames, object_names
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.report import ObjectPlan

__all__ = ["MODES", "SqliteWriter"]

MODES = ("drop-and-create", "create", "truncate", "do-nothing")
#: :meth:`SqliteWriter.load_arrow` also commits once its converted batches came from this many
#: Arrow bytes: their Python values take several times that (1M PostgreSQL orders rows: 10,000
#: rows held peaked 10 MB higher than ~2 MB of batches, for the same time; #18's 100 MB)
ARROW_COMMIT_BYTES = 2 * 2**20
_ROW_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    OverflowError,
)
_PARAMETER = re.compile(r"parameter (\d+)")
_INT64 = range(-(2**63), 2**63)


def _stored(col: ColumnPlan, found: Column) -> tuple[Fidelity, str | None]:
    """SQLite keeps what it is given within an affinity (declared lengths and widths are not
    enforced), so only a different affinity can change values."""
    if affinity(col.target.sql) == affinity(found.type.native):
        return Fidelity.EXACT, None
    return judge_existing(col.target.type, found.type)


RULES = TargetRules(fold=str.lower, judge=_stored)


@dataclass(frozen=True, slots=True)
class _Insert:
    """The INSERT for one table and batch column order, with adapters and key positions."""

    table: str
    sql: str
    names: tuple[str, ...]
    adapters: tuple[tuple[int, Converter], ...]
    key: tuple[int, ...]
    #: positions bound as :data:`._column_load.TEXT_PARAMETER` (the columnar paths' text)
    utf8: frozenset[int] = frozenset()

    def key_of(self, row: Sequence[Any]) -> dict[str, Any]:
        return {self.names[i]: self._shown(i, row[i]) for i in self.key}

    def _shown(self, i: int, value: Any) -> Any:
        if i in self.utf8 and isinstance(value, bytes | bytearray):
            return value.decode("utf-8", "replace")
        return value


def _insert(
    plan: TablePlan, columns: tuple[str, ...], utf8: frozenset[int] = frozenset()
) -> _Insert:
    cols = [plan.planned_column(c) for c in columns]
    names = tuple(cp.name for cp in cols)
    quote = DIALECT.quote
    marks = (_column_load.TEXT_PARAMETER if i in utf8 else "?" for i in range(len(names)))
    sql = (
        f"INSERT INTO {quote(plan.target_id.name)} ({', '.join(quote(n) for n in names)}) "  # noqa: S608
        f"VALUES ({', '.join(marks)})"
    )
    key_cols = plan.target_schema.key
    return _Insert(
        table=str(plan.target_id),
        sql=sql,
        names=names,
        adapters=tuple((i, cp.target.adapt) for i, cp in enumerate(cols) if cp.target.adapt),
        key=tuple(names.index(k) for k in key_cols if k in names),
        utf8=utf8,
    )


def _adapt(ins: _Insert, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """Adapt a batch column by column (comprehensions per column run far faster than a
    per-row loop); on a bad value, redo it row by row to name the row in the error."""
    if not ins.adapters or not rows:
        return list(rows)
    try:
        return list(map_columns(rows, ins.adapters))
    except (BadValue, ValueError, TypeError, AttributeError, ArithmeticError):
        return _adapt_rows(ins, rows)


def _adapt_rows(ins: _Insert, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    out: list[Sequence[Any]] = []
    row: Sequence[Any] = ()
    index = 0
    try:
        for row in rows:
            values = list(row)
            for index, adapt in ins.adapters:
                value = values[index]
                if value is not None:
                    values[index] = adapt(value)
            out.append(values)
    except (BadValue, ValueError, TypeError, AttributeError, ArithmeticError) as exc:
        raise DataError.unwritable(
            row[index], exc, table=ins.table, column=ins.names[index], key=ins.key_of(row)
        ) from None
    return out


def _arrow_columns(
    pa: Any, ins: _Insert, cols: Sequence[_arrow_load.ArrowColumn], batch: Any
) -> list[list[Any]]:
    """A record batch's columns as sqlite3 binds them; a value that does not convert (the
    reader's batch is not what it promised) names its column."""
    columns: list[list[Any]] = []
    for name, col in zip(ins.names, cols, strict=True):
        try:
            columns.append(col.values(pa, batch))
        except (BadValue, ValueError, TypeError, AttributeError, ArithmeticError) as exc:
            raise DataError(
                f"cannot convert the Arrow column {col.source} for SQLite: {exc}",
                table=ins.table,
                column=name,
            ) from None
    return columns


def _converted(
    ins: _Insert, loads: Sequence[_column_load.ColumnLoad], values: Sequence[Sequence[Any]]
) -> list[Sequence[Any]]:
    """A column batch's columns as sqlite3 binds them; a value that does not convert (the
    reader's batch is not what it promised) names its column."""
    columns: list[Sequence[Any]] = []
    for name, load, column in zip(ins.names, loads, values, strict=True):
        try:
            columns.append(load.convert(column))
        except (BadValue, ValueError, TypeError, AttributeError, ArithmeticError) as exc:
            raise DataError(
                f"cannot convert the column {load.source} for SQLite: {exc}",
                table=ins.table,
                column=name,
            ) from None
    return columns


class _Columns:
    """Converted batches, column-wise: their rows are made as ``executemany`` binds them, so
    each row's tuple is freed right after (measured: less time and memory than a list)."""

    def __init__(self) -> None:
        self.batches: list[list[list[Any]]] = []
        self.count = 0

    def add(self, columns: list[list[Any]]) -> None:
        self.batches.append(columns)
        self.count += len(columns[0]) if columns else 0

    def rows(self) -> Iterator[tuple[Any, ...]]:
        return itertools.chain.from_iterable(zip(*c, strict=True) for c in self.batches)


def _findings(
    plans: Sequence[TablePlan], existing: dict[TableId, TableSchema], *, replicate: bool = False
) -> list[Finding]:
    pairs = [(p, existing[p.target_id]) for p in plans if p.target_id in existing]
    return existing_findings(pairs, RULES, replicate=replicate)


def _bad_column(ins: _Insert, row: Sequence[Any], exc: BaseException) -> str | None:
    message = str(exc)
    for name in ins.names:
        if message.endswith(f".{name}"):
            return name
    if (match := _PARAMETER.search(message)) and 0 < int(match.group(1)) <= len(ins.names):
        return ins.names[int(match.group(1)) - 1]
    for name, value in zip(ins.names, row, strict=True):
        if isinstance(value, int) and value not in _INT64:
            return name
    return None


class SqliteWriter(Writer, SupportsPrepare, SupportsColumnWrite, SupportsArrowWrite):
    """Creates, truncates or checks tables, loads rows (or column batches, or Arrow record
    batches: see :mod:`._column_load`, :mod:`._arrow_load`), then builds indexes.

    ``problems`` collects what could not be done as planned (indexes left out, renamed).
    ``dialect`` is the SQLite type rules to plan with; ``default_schema`` is None because
    SQLite has no schemas (target tables are named without one).
    """

    dialect = DIALECT
    default_schema: str | None = None
    #: an engine inside this process (:class:`~replikit.pipeline.contracts.SupportsPlacement`)
    on_this_machine = True
    #: checked before each commit (a standby task's lease; docs/high-availability.md)
    fence: Fence | None = None
    #: foreign keys are part of ``CREATE TABLE`` (declared, not enforced: foreign_keys=OFF)
    foreign_keys_in_create = True

    def __init__(self, connections: Connections, *, commit_rows: int = 10_000) -> None:
        self._conns = connections
        self.commit_rows = commit_rows
        self.problems: list[str] = []
        self._inserts: dict[tuple[str, tuple[str, ...], frozenset[int]], _Insert] = {}
        self._kept: set[TableId] = set()  # existing tables kept by truncate / do-nothing
        self._names: ObjectNames | None = None  # chosen by prepare, used again by finish
        self._utf8: bool | None = None  # the database's text encoding is UTF-8

    def __reduce__(self) -> Any:
        raise pickle.PicklingError(
            "it writes one local SQLite file, which takes one writer at a time: "
            "load it from this process"
        )

    def _names_for(self, plans: Sequence[TablePlan]) -> ObjectNames:
        """The index names ``prepare`` chose, when it prepared these plans; else new ones."""
        names = self._names
        if names is None or any(p.target_id not in names.indexes for p in plans):
            names = object_names(plans, DIALECT)
        return names

    # -- DDL --------------------------------------------------------------------------------
    def ddl(self, plans: Sequence[TablePlan]) -> list[str]:
        """Every statement ``prepare("drop-and-create")`` and ``finish`` would run."""
        statements: list[str] = []
        for plan in plans:
            statements += [_ddl.drop_table(plan), _ddl.create_table(plan)]
        names = object_names(plans, DIALECT)
        for plan in plans:
            statements += [sql for _, sql in _ddl.index_statements(plan, names)[0]]
        return statements

    def object_ddl(self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]) -> list[str]:
        """The view statements :meth:`create_objects` would run (CHECKs are in CREATE TABLE)."""
        return [s for v in views if v.converted for s in _ddl.view_statements(v)]

    def create_objects(
        self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]
    ) -> list[tuple[ObjectPlan, str | None]]:
        """Create each converted view and query it (SQLite resolves functions only then); a
        view it refuses is dropped and reported. CHECKs were created with their tables."""
        out: list[tuple[ObjectPlan, str | None]] = [
            (obj, None)
            for p in plans
            if p.target_id not in self._kept
            for obj in p.objects
            if obj.kind == "check" and obj.sql is not None
        ]
        conn = self._conns.shared()
        with self._conns.lock:
            for v in views:
                if not v.converted or v.target is None:
                    continue
                name = DIALECT.quote(v.target.name)
                try:
                    for statement in _ddl.view_statements(v):
                        conn.execute(statement)
                    conn.execute(f"SELECT * FROM {name} LIMIT 0").fetchall()  # noqa: S608
                except sqlite3.Error as exc:
                    out.append((v, str(exc)))
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute(f"DROP VIEW IF EXISTS {name}")
                else:
                    out.append((v, None))
        return out

    def check_existing(
        self, plans: Sequence[TablePlan], mode: str, *, replicate: bool = False
    ) -> list[Finding]:
        """What the existing target tables of ``plans`` cannot hold as planned (for
        ``truncate`` and ``do-nothing``; a missing table is created by :meth:`prepare`)."""
        with self._conns.lock:
            existing = self._existing(self._conns.shared(), plans)
        return _findings(plans, existing, replicate=replicate)

    @staticmethod
    def _existing(
        conn: sqlite3.Connection, plans: Sequence[TablePlan]
    ) -> dict[TableId, TableSchema]:
        tables = {p.target_id: reflect_table(conn, p.target_id.name) for p in plans}
        return {tid: t for tid, t in tables.items() if t is not None}

    @override
    def prepare(self, plans: Sequence[TablePlan], mode: str) -> None:
        """Before the load: ``drop-and-create``, ``create``; or ``truncate`` / ``do-nothing``,
        which keep existing tables (refused with :class:`SchemaError` when they do not fit the
        plan, see :meth:`check_existing`) and create missing ones."""
        if mode not in MODES:
            raise ConfigError(f"unknown table preparation mode {mode!r}; use one of {MODES}")
        self._kept.difference_update(p.target_id for p in plans)
        self._names = object_names(plans, DIALECT)
        conn = self._conns.shared()
        errors: dict[str, BaseException] = {}
        with self._conns.lock:
            if mode in ("truncate", "do-nothing"):
                existing = self._existing(conn, plans)
                refuse_existing(_findings(plans, existing))
                self._kept.update(existing)
            for plan in plans:  # one transaction per table: a refused table spares the others
                try:
                    self._transaction(conn, self._prepare_sql(conn, plan, mode))
                except SchemaError as exc:
                    errors[str(plan.target_id)] = exc
        if errors:
            raise table_errors(errors, f"SQLite {mode}", len(plans))

    def _prepare_sql(self, conn: sqlite3.Connection, plan: TablePlan, mode: str) -> list[str]:
        if mode == "drop-and-create":
            return [_ddl.drop_table(plan), _ddl.create_table(plan)]
        if mode == "create":
            if self._existing_columns(conn, plan.target_id.name):
                raise SchemaError(f"table {plan.target_id} already exists")
            return [_ddl.create_table(plan)]
        if plan.target_id not in self._kept:
            return [_ddl.create_table(plan)]
        if mode == "truncate":
            return [f"DELETE FROM {DIALECT.quote(plan.target_id.name)}"]  # noqa: S608
        return []

    @staticmethod
    def _existing_columns(conn: sqlite3.Connection, table: str) -> set[str]:
        rows = conn.execute("SELECT name FROM pragma_table_xinfo(?)", (table,)).fetchall()
        return {str(r[0]).lower() for r in rows}

    @staticmethod
    def _transaction(conn: sqlite3.Connection, statements: list[str]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql in statements:
                conn.execute(sql)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise SchemaError(f"SQLite refused the DDL: {exc}") from exc

    # -- load -------------------------------------------------------------------------------
    @override
    def load(self, plan: TablePlan, batches: Iterable[Batch]) -> int:
        """Insert every batch; commits every ~``commit_rows`` rows and at the end."""
        conn = self._conns.shared()
        total = 0
        pending: list[Sequence[Any]] = []
        ins: _Insert | None = None
        for batch in batches:
            current = self._insert_for(plan, batch.columns)
            if ins is not None and current is not ins and pending:
                total += self._flush(conn, ins, pending)
                pending = []
            ins = current
            pending.extend(_adapt(ins, batch.rows))
            if len(pending) >= self.commit_rows:
                total += self._flush(conn, ins, pending)
                pending = []
        if ins is not None and pending:
            total += self._flush(conn, ins, pending)
        return total

    def _text_is_utf8(self) -> bool:
        """Whether the database's text encoding is UTF-8 (asked once): SQLite reads text bound
        as bytes (the columnar paths) in that encoding."""
        if self._utf8 is None:
            with self._conns.lock:
                row = self._conns.shared().execute("PRAGMA encoding").fetchone()
            self._utf8 = row is not None and str(row[0]).upper() == "UTF-8"
        return self._utf8

    def column_writable(self, plan: TablePlan) -> bool:
        """True when every column of ``plan`` converts from its column batch form to the
        values :meth:`load` would bind (:mod:`._column_load`), in a UTF-8 database."""
        return self._text_is_utf8() and _column_load.columns_for(plan) is not None

    def load_columns(self, plan: TablePlan, batches: Iterable[ColumnBatch]) -> int:
        """Insert every column batch (see :meth:`column_writable`), its columns converted
        column-wise, one transaction per batch (the reader sizes them in bytes)."""
        loads = _column_load.columns_for(plan)
        if loads is None:
            raise ConfigError(f"table {plan.target_id} has columns that cannot load as columns")
        names = tuple(c.source for c in loads)
        utf8 = frozenset(i for i, c in enumerate(loads) if c.is_text)
        ins = self._insert_for(plan, names, utf8)
        conn = self._conns.shared()
        total = 0
        for batch in batches:
            values = [batch.values[batch.columns.index(n)] for n in names]
            rows = functools.partial(zip, *_converted(ins, loads, values), strict=True)
            total += self._write(conn, ins, rows(), batch.rows, rows)
        return total

    def arrow_writable(self, plan: TablePlan) -> bool:
        """True when every column of ``plan`` converts from its canonical Arrow form to the
        values :meth:`load` would bind (:mod:`._arrow_load`), in a UTF-8 database."""
        return self._text_is_utf8() and _arrow_load.columns_for(plan) is not None

    def load_arrow(self, plan: TablePlan, batches: Iterable[Any]) -> int:
        """Insert every Arrow record batch (see :meth:`arrow_writable`), its columns
        converted column-wise, committing every ~``commit_rows`` rows as :meth:`load` does."""
        cols = _arrow_load.columns_for(plan)
        pa = _arrow_load.pyarrow()
        if cols is None or pa is None:
            raise ConfigError(f"table {plan.target_id} has columns that cannot load from Arrow")
        utf8 = frozenset(i for i, c in enumerate(cols) if c.is_text)
        ins = self._insert_for(plan, tuple(c.source for c in cols), utf8)
        conn = self._conns.shared()
        total = 0
        pending = _Columns()
        held = 0
        for batch in batches:
            pending.add(_arrow_columns(pa, ins, cols, batch))
            held += batch.nbytes
            if pending.count >= self.commit_rows or held >= ARROW_COMMIT_BYTES:
                held = 0
                total += self._write(conn, ins, pending.rows(), pending.count, pending.rows)
                pending = _Columns()
        if pending.count:
            total += self._write(conn, ins, pending.rows(), pending.count, pending.rows)
        return total

    def _insert_for(
        self, plan: TablePlan, columns: tuple[str, ...], utf8: frozenset[int] = frozenset()
    ) -> _Insert:
        cache_key = (str(plan.target_id), columns, utf8)
        ins = self._inserts.get(cache_key)
        if ins is None:
            ins = self._inserts[cache_key] = _insert(plan, columns, utf8)
        return ins

    def _flush(self, conn: sqlite3.Connection, ins: _Insert, rows: list[Sequence[Any]]) -> int:
        return self._write(conn, ins, rows, len(rows), lambda: rows)

    def _write(
        self,
        conn: sqlite3.Connection,
        ins: _Insert,
        rows: Iterable[Sequence[Any]],
        count: int,
        again: Callable[[], Iterable[Sequence[Any]]],
    ) -> int:
        """Insert ``count`` ``rows`` in one transaction; ``again``: the same rows once more,
        to find the one SQLite refused."""
        with self._conns.lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(ins.sql, rows)
                self._fenced(conn)
                conn.execute("COMMIT")
            except _ROW_ERRORS:
                self._rollback(conn)
                self._find_bad_row(conn, ins, again())
                raise  # not reached unless the rows pass one by one
            except sqlite3.OperationalError as exc:
                self._rollback(conn)
                raise ConnectError(f"SQLite write to {ins.table} failed: {exc}") from exc
            except BaseException:
                self._rollback(conn)
                raise
        return count

    def _fenced(self, conn: sqlite3.Connection) -> None:
        """Check :attr:`fence` (a standby task's lease) before a commit; roll back if lost."""
        if self.fence is None:
            return
        try:
            self.fence.fence(lambda sql, params: conn.execute(sql, params).fetchall())
        except BaseException:
            self._rollback(conn)
            raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _find_bad_row(
        self, conn: sqlite3.Connection, ins: _Insert, rows: Iterable[Sequence[Any]]
    ) -> None:
        """Replay ``rows`` one by one inside a transaction that is always rolled back."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                try:
                    conn.execute(ins.sql, row)
                except _ROW_ERRORS as exc:
                    raise DataError(
                        f"SQLite refused the row: {exc}",
                        table=ins.table,
                        column=_bad_column(ins, row, exc),
                        key=ins.key_of(row),
                    ) from None
        finally:
            self._rollback(conn)

    # -- after the load -----------------------------------------------------------------------
    @override
    def finish(self, plans: Sequence[TablePlan]) -> None:
        """Create indexes (recording those SQLite cannot take) and move AUTOINCREMENT counters
        (not on existing tables that ``truncate`` / ``do-nothing`` kept as they are); then
        checkpoint the WAL into the database file, synced: what the load wrote is on disk when
        the task says done (``synchronous=NORMAL`` syncs at checkpoints, not at commits).

        (A larger checkpoint interval during the load was measured slower: SQLite's own
        checkpoints every 1000 pages overlap the reading, one at the end does not.)"""
        conn = self._conns.shared()
        errors: dict[str, BaseException] = {}
        names = self._names_for(plans)
        with self._conns.lock:
            for plan in [p for p in plans if p.target_id not in self._kept]:
                try:
                    self._finish_table(conn, plan, names)
                except SchemaError as exc:
                    errors[str(plan.target_id)] = exc
                except sqlite3.Error as exc:
                    errors[str(plan.target_id)] = SchemaError(
                        f"SQLite refused an index or key of {plan.target_id}: {exc}"
                    )
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        if errors:
            raise table_errors(errors, "SQLite indexes", len(plans))

    def _finish_table(self, conn: sqlite3.Connection, plan: TablePlan, names: ObjectNames) -> None:
        statements, problems = _ddl.index_statements(plan, names)
        self.problems.extend(problems)
        for name, sql in statements:
            self._create_index(conn, plan, name, sql)
        self._set_sequence(conn, plan)

    def _create_index(self, conn: sqlite3.Connection, plan: TablePlan, name: str, sql: str) -> None:
        # names are database-wide in SQLite (tables, indexes, views, triggers): one held by an
        # object the plan does not know is looked up, not guessed from the error text
        taken = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = ? COLLATE NOCASE", (name,)
        ).fetchone()
        if taken is None:
            try:
                conn.execute(sql)
            except sqlite3.Error as exc:
                raise SchemaError(f"cannot create index {name} on {plan.target_id}: {exc}") from exc
        else:
            new = f"{plan.target_id.name}_{name}"
            old_ref, new_ref = (f"INDEX {DIALECT.quote(n)} ON" for n in (name, new))
            conn.execute(sql.replace(old_ref, new_ref, 1))
            self.problems.append(
                f"{plan.target_id}: index {name} exists on another table; created as {new}"
            )

    @staticmethod
    def _set_sequence(conn: sqlite3.Connection, plan: TablePlan) -> None:
        col = _ddl.autoincrement_column(plan)
        if col is None:
            return
        table = plan.target_id.name
        (top,) = conn.execute(
            f"SELECT max({DIALECT.quote(col.name)}) FROM {DIALECT.quote(table)}"  # noqa: S608
        ).fetchone()
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        planned = (col.identity.next_value if col.identity else None) or 1
        wanted = max(top or 0, planned - 1, (seq[0] if seq else 0) or 0)
        conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, wanted))

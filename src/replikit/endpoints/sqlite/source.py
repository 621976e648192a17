"""Full-load reading from SQLite.

SQLite is dynamically typed: a column declared ``INTEGER`` can hold ``'abc'``. Every value is
checked against the column's portable type and turned into its canonical Python value; a value
that does not fit raises :class:`~replikit.DataError` naming table, column and row key, never a
silent alteration. Columns whose stored values are canonical already (integers, text, blobs) are
checked with one ``typeof()`` query in SQL, so reading them costs no Python work per value.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from typing_extensions import override

from replikit.endpoints.sqlite._connect import Connections, Location
from replikit.endpoints.sqlite._dialect import DIALECT, affinity
from replikit.endpoints.sqlite._values import (
    BadValue,
    Converter,
    converter_for,
    map_columns,
    not_valid,
    text_form,
)
from replikit.endpoints.sqlite._values import storage_classes as _classes
from replikit.errors import ConfigError, DataError, SchemaError
from replikit.mapping.filters import pushdown
from replikit.pipeline.contracts import Batch, Reader, Unit
from replikit.schema.model import TableId, TableSchema
from replikit.schema.types import Kind

__all__ = ["Pinned", "SqliteReader"]

_ROWID_NAMES = ("rowid", "_rowid_", "oid")


@dataclass(frozen=True, slots=True)
class _Scan:
    """How to read one table: the query, per column converters, and how to name a row."""

    table: TableSchema
    select: str
    converters: tuple[tuple[int, Converter], ...]
    key_names: tuple[str, ...]
    key_index: tuple[int, ...]
    extra: bool  # a trailing rowid column was added to name rows of a keyless table
    check: str | None
    checked: tuple[tuple[str, tuple[str, ...]], ...]

    def key_of(self, row: Sequence[Any]) -> dict[str, Any]:
        return {n: row[i] for n, i in zip(self.key_names, self.key_index, strict=True)}


def _scan(table: TableSchema, as_text: frozenset[str] = frozenset()) -> _Scan:
    quote = DIALECT.quote
    names = list(table.column_names)
    key = table.key
    extra = False
    key_names: tuple[str, ...] = key
    if not key:
        lowered = {n.lower() for n in names}
        free = [r for r in _ROWID_NAMES if r not in lowered]
        if free:
            key_names, extra = (free[0],), True
    key_index = (len(names),) if extra else tuple(names.index(k) for k in key_names)
    selected = [quote(n) for n in names] + ([key_names[0]] if extra else [])
    converters = []
    checked = []
    for i, col in enumerate(table.columns):
        conv = (
            text_form if col.name in as_text else converter_for(col.type, affinity(col.type.native))
        )
        if conv is not None:
            converters.append((i, conv))
        elif (classes := _classes(col.type)) is not None:
            checked.append((col.name, classes))
    return _Scan(
        table=table,
        select=f"SELECT {', '.join(selected)} FROM {quote(table.id.name)}",  # noqa: S608
        converters=tuple(converters),
        key_names=key_names,
        key_index=key_index,
        extra=extra,
        check=_check_sql(table, checked, selected),
        checked=tuple(checked),
    )


def _check_sql(
    table: TableSchema, checked: list[tuple[str, tuple[str, ...]]], selected: list[str]
) -> str | None:
    """A query for the first row holding a value of the wrong storage class, if any."""
    if not checked:
        return None
    quote = DIALECT.quote
    conditions = " OR ".join(
        f"typeof({quote(name)}) NOT IN ({', '.join(repr(c) for c in (*classes, 'null'))})"
        for name, classes in checked
    )
    table_sql = quote(table.id.name)
    return f"SELECT {', '.join(selected)} FROM {table_sql} WHERE {conditions} LIMIT 1"  # noqa: S608


_STORAGE = {int: "integer", float: "real", str: "text", bytes: "blob"}


class Pinned:
    """One connection inside an open read transaction (a snapshot), shared by readers.

    Every use of the connection holds :attr:`lock`, so units may be read from any threads,
    one after another or at once (their cursors interleave inside the one transaction).
    After :meth:`release` (the snapshot ended) reading raises :class:`ConfigError`.
    """

    def __init__(self, conn: sqlite3.Connection, what: str) -> None:
        self.lock = threading.Lock()
        self._conn: sqlite3.Connection | None = conn
        self._what = what

    def connection(self) -> sqlite3.Connection:
        """The connection (hold :attr:`lock`); ConfigError once released."""
        if self._conn is None:
            raise ConfigError(
                f"the snapshot of {self._what} has ended: read the full load inside its "
                "`with endpoint.cdc_snapshot(...)` block"
            )
        return self._conn

    def release(self) -> None:
        """End every use of the connection (the snapshot's owner closes it)."""
        with self.lock:
            self._conn = None


class SqliteReader(Reader):
    """Reads whole tables of a SQLite database, one read transaction per table.

    With ``pinned``, every table is read inside that one snapshot instead (the CDC handoff).
    ``dialect`` tells planners which type rules the tables were reflected with.
    """

    dialect = DIALECT
    #: an engine inside this process (:class:`~replikit.pipeline.contracts.SupportsPlacement`)
    on_this_machine = True

    def __init__(
        self,
        connections: Connections,
        tables: Sequence[TableSchema],
        *,
        batch_size: int = 10_000,
        pinned: Pinned | None = None,
    ) -> None:
        self._conns = connections
        self._tables = tuple(tables)
        self._by_id = {t.id: t for t in self._tables}
        self.batch_size = batch_size
        self._pinned = pinned

    @property
    @override
    def tables(self) -> Sequence[TableSchema]:
        """The tables this reader was made for."""
        return self._tables

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for another process (a process pool, Dask workers), which opens the
        database file by its absolute path; an in-memory database or a pinned snapshot (a
        full load + CDC handoff) lives in this process only and does not pickle."""
        path = self._conns.location.path
        if path is None:
            raise pickle.PicklingError("an in-memory SQLite database lives in this process only")
        if self._pinned is not None:
            raise pickle.PicklingError(
                "it reads inside one connection's snapshot (a full load followed by CDC), "
                "which lives in this process only"
            )
        return {
            "path": os.path.abspath(path),
            "timeout": self._conns.timeout,
            "tables": self._tables,
            "batch_size": self.batch_size,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        conns = Connections(Location(state["path"]), timeout=state["timeout"])
        self.__init__(conns, state["tables"], batch_size=state["batch_size"])  # type: ignore[misc]

    @override
    def units(self, table: TableSchema, *, split_rows: int | None = None) -> list[Unit]:
        """One unit per table (SQLite reads fast enough that splitting buys nothing)."""
        return [Unit(table.id)]

    @override
    def read(self, unit: Unit) -> Iterator[Batch]:
        """Stream the rows of ``unit`` as batches of canonical values."""
        table = self._table(unit.table)
        scan = _scan(table, unit.as_text)
        select, params = _filtered(scan.select, unit)
        if self._pinned is not None:
            yield from self._read_pinned(self._pinned, scan, select, params)
            return
        with self._conns.reading() as (conn, shared), self._translated(table.id):
            lock = self._conns.lock if shared else contextlib.nullcontext()
            if not shared:
                conn.execute("BEGIN")
            with lock:
                self._validate(conn, scan)
                cursor = conn.execute(select, params)
            while True:
                with lock:
                    rows = cursor.fetchmany(self.batch_size)
                if not rows:
                    break
                yield Batch(table.id, table.column_names, _convert(scan, rows))

    @contextlib.contextmanager
    def _translated(self, tid: TableId) -> Iterator[None]:
        """sqlite3 errors while reading ``tid`` as replikit errors naming it (by class)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise SchemaError(
                f"cannot read {tid} from {self._conns.where}: {exc}; if it was dropped or "
                "changed after planning, plan and run the task again"
            ) from exc
        except sqlite3.Error as exc:
            raise DataError(
                f"cannot read {tid} from {self._conns.where}: {exc}", table=str(tid)
            ) from exc

    def _read_pinned(
        self, pinned: Pinned, scan: _Scan, select: str, params: list[Any]
    ) -> Iterator[Batch]:
        table = scan.table
        with pinned.lock:
            conn = pinned.connection()
            self._validate(conn, scan)
            cursor = conn.execute(select, params)
        while True:
            with pinned.lock:
                pinned.connection()
                rows = cursor.fetchmany(self.batch_size)
            if not rows:
                break
            yield Batch(table.id, table.column_names, _convert(scan, rows))

    def _table(self, tid: TableId) -> TableSchema:
        try:
            return self._by_id[tid]
        except KeyError:
            raise SchemaError(f"this reader was not made for table {tid}") from None

    def _validate(self, conn: sqlite3.Connection, scan: _Scan) -> None:
        if scan.check is None:
            return
        row = conn.execute(scan.check).fetchone()
        if row is None:
            return
        for name, classes in scan.checked:
            value = row[scan.table.column_names.index(name)]
            if value is not None and _STORAGE.get(type(value)) not in classes:
                raise not_valid(
                    f"stored {_STORAGE.get(type(value), '?')} value",
                    value,
                    scan.table.column(name),
                    str(scan.table.id),
                    scan.key_of(row),
                )


# what sqlite3 binds and SQLite compares as Python does: integers, and text for equality
_PUSHED = frozenset({Kind.INT, Kind.STRING, Kind.TEXT})


def _filtered(select: str, unit: Unit) -> tuple[str, list[Any]]:
    """``select`` narrowed by the part of the unit's row filter SQLite can test."""
    pushed = pushdown(unit.where, quote=DIALECT.quote, mark="?", kinds=_PUSHED)
    if pushed is None:
        return select, []
    return f"{select} WHERE {pushed[0]}", pushed[1]


def _convert(scan: _Scan, rows: list[Any]) -> Sequence[Sequence[Any]]:
    """Rows with converters applied (and the helper rowid column dropped)."""
    if not scan.converters:
        return [r[:-1] for r in rows] if scan.extra else rows
    if rows:
        try:
            converted = map_columns(rows, scan.converters)
            return [r[:-1] for r in converted] if scan.extra else converted
        except (BadValue, ValueError, TypeError, ArithmeticError):
            pass  # redo row by row below, to name the bad row
    out = []
    row: Any = ()
    index = 0
    try:
        for row in rows:
            values = list(row)
            for index, conv in scan.converters:
                value = values[index]
                if value is not None:
                    values[index] = conv(value)
            out.append(values[:-1] if scan.extra else values)
    except (BadValue, ValueError, TypeError, ArithmeticError) as exc:
        col = scan.table.columns[index]
        raise not_valid(
            "stored value", row[index], col, str(scan.table.id), scan.key_of(row), str(exc)
        ) from None
    return out

"""Rows into DuckDB through Arrow: the fast path for Python data.

Measured on this machine (benchmarks/README.md): 100,000 rows of four columns load in 0.18 s
as Arrow record batches (``INSERT ... SELECT`` from a registered Arrow table) and 10,000 rows
take 5 s through ``executemany``; the Python API has no appender. So every write (full load,
CDC upserts, deletes, partial updates) builds one Arrow table per batch, column by column,
and DuckDB casts each column to its declared type in the statement (``CAST(c AS type)``), so
a value Arrow carries as text (UUID, interval, enum, JSON, 128-bit integers) lands typed.

A column whose values Arrow refuses in its natural type (a ``NaN`` decimal, an ``infinity``
date given as text) is sent as text instead, and DuckDB's cast decides; a value DuckDB cannot
hold is then found by a ``TRY_CAST`` query over the batch and raised as
:class:`~replikit.DataError` naming the table, column and key.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from replikit.endpoints import _arrow as shared
from replikit.endpoints._arrow import preview
from replikit.endpoints.base import require
from replikit.endpoints.duckdb._casts import arrow_type, cast
from replikit.endpoints.duckdb._dialect import DIALECT
from replikit.endpoints.duckdb._values import text_of
from replikit.errors import DataError
from replikit.schema.convert import ColumnPlan
from replikit.schema.types import Type

__all__ = ["Columns", "arrow_canonical", "arrow_table", "preview"]

pa = require("pyarrow", package="pyarrow", extra="duckdb", purpose="The DuckDB endpoint")
import pyarrow.compute as pc  # noqa: E402

Adapter = Callable[[Any], Any]
_COUNTER = itertools.count()
_ARROW_ERRORS = shared.arrow_errors(pa)


def arrow_canonical(t: Type) -> Any:
    """The canonical Arrow type of a source column of type ``t`` (``None``: none)."""
    return shared.canonical_type(pa, t)


#: DuckDB spells a BC date ``0044-03-15 (BC)``, canonical text (PostgreSQL's) ``0044-03-15 BC``
_BC = (r"^(\S+)( .*)? BC$", r"\1 (BC)\2")


def arrow_table(batch: Any, sources: Sequence[str], temporal: Sequence[bool]) -> Any:
    """The columns ``sources`` of a canonical Arrow record batch as the table
    :meth:`Columns.select` casts (``c0``, ``c1``...); date and timestamp columns a batch holds
    as canonical text get DuckDB's spelling of BC (as :func:`._values.text_of`)."""
    arrays = []
    for name, dated in zip(sources, temporal, strict=True):
        array = batch.column(name)
        if dated and pa.types.is_string(array.type):
            array = pc.replace_substring_regex(array, _BC[0], _BC[1])
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])


@dataclass(frozen=True, slots=True)
class _Col:
    name: str  # target column name
    sql: str  # declared type
    arrow: Any
    adapt: Adapter | None
    nullable: bool


class Columns:
    """One table's columns in a batch's order: Arrow conversion and the casting SELECT."""

    def __init__(self, table: str, plans: Sequence[ColumnPlan], key: Sequence[str]) -> None:
        self.table = table
        self.cols = tuple(
            _Col(
                cp.name,
                cp.target.sql,
                arrow_type(pa, cp.target.type, cp.target.sql),
                cp.target.adapt,
                cp.nullable,
            )
            for cp in plans
        )
        self.names = tuple(c.name for c in self.cols)
        self.key = tuple(self.names.index(k) for k in key if k in self.names)

    def key_of(self, row: Sequence[Any]) -> dict[str, Any]:
        """The row's key (target names), for messages."""
        return {self.names[i]: row[i] for i in self.key}

    def select(self, relation: str, alias: str = "") -> str:
        """``CAST(relation.c AS type) AS c, ...`` for every column."""
        return ", ".join(
            f"{self.cast(i, alias or relation)} AS {DIALECT.quote(c.name)}"
            for i, c in enumerate(self.cols)
        )

    def cast(self, i: int, relation: str) -> str:
        """Column ``i`` of the registered batch, cast to its declared type (structured types
        from their JSON text)."""
        return cast(f"{relation}.{DIALECT.quote(f'c{i}')}", self.cols[i].sql)

    # -- rows -> Arrow ----------------------------------------------------------------------
    def arrow(self, rows: Sequence[Sequence[Any]]) -> Any:
        """An Arrow table of ``rows`` (columns ``c0``, ``c1``...), values adapted."""
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.cols]
        arrays = [self._array(i, list(values), rows) for i, values in enumerate(columns)]
        return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(self.cols))])

    def _array(self, i: int, values: list[Any], rows: Sequence[Sequence[Any]]) -> Any:
        col = self.cols[i]
        if col.adapt is not None:
            values = self._adapted(i, values, rows)
        try:
            return pa.array(values, type=col.arrow)
        except _ARROW_ERRORS:
            if pa.types.is_list(col.arrow):
                raise self._refused(i, values, rows, "cannot be sent to DuckDB") from None
            return pa.array([None if x is None else text_of(x) for x in values], pa.string())

    def _adapted(self, i: int, values: list[Any], rows: Sequence[Sequence[Any]]) -> list[Any]:
        adapt = self.cols[i].adapt
        assert adapt is not None
        return shared.adapted(
            values, adapt, rows, table=self.table, column=self.names[i], key_of=self.key_of
        )

    def _refused(
        self, i: int, values: list[Any], rows: Sequence[Sequence[Any]], why: str
    ) -> DataError:
        col = self.cols[i]
        return shared.refused(
            pa, values, col.arrow, rows, f"{why} as {col.sql}",
            table=self.table, column=col.name, key_of=self.key_of,
        )  # fmt: skip

    # -- naming the row DuckDB refused ------------------------------------------------------
    def bad_row(
        self, conn: Any, batch: Any, rows: Sequence[Sequence[Any]], exc: Exception
    ) -> DataError:
        """The :class:`DataError` for the first value of ``batch`` that DuckDB cannot cast,
        or a NULL in a NOT NULL column; else ``exc`` as a DataError naming the table."""
        name = f"rk_check_{next(_COUNTER)}"
        conn.register(name, batch)
        try:
            for i, col in enumerate(self.cols):
                quoted = f"{name}.{DIALECT.quote(f'c{i}')}"
                bad = f"{quoted} IS NOT NULL AND TRY_CAST({quoted} AS {col.sql}) IS NULL"
                if not col.nullable:
                    bad = f"({bad}) OR {quoted} IS NULL"
                found = conn.execute(
                    f"SELECT n FROM (SELECT row_number() OVER () - 1 AS n, * FROM {name}) "  # noqa: S608
                    f"AS {name} WHERE {bad} LIMIT 1"
                ).fetchall()
                if found:
                    row = rows[int(found[0][0])]
                    value = row[i]
                    what = "NULL in a NOT NULL column" if value is None else preview(value)
                    return DataError(
                        f"DuckDB cannot hold {what} as {col.sql}",
                        table=self.table,
                        column=col.name,
                        key=self.key_of(row),
                    )
        finally:
            conn.unregister(name)
        return DataError(f"DuckDB refused the rows: {_first_line(exc)}", table=self.table)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

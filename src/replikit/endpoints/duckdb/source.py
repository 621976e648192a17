"""Full-load reading from DuckDB.

Each unit is read in its own connection and transaction (DuckDB's MVCC gives it a snapshot),
``fetchmany`` batch by batch. Columns DuckDB's Python conversion would alter are selected in a
form that keeps them: intervals as text (Python's ``timedelta`` would fold months into days),
STRUCT/MAP/UNION as JSON text, and for dates and timestamps a companion text column that
holds ``infinity`` / ``-infinity`` (which Python would read as ``date.max``). Tables with a
single integer primary key split into key ranges (:func:`replikit.pipeline.splitting.split_table`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from typing_extensions import override

from replikit.endpoints.duckdb import _values as v
from replikit.endpoints.duckdb._connect import Database, driver
from replikit.endpoints.duckdb._dialect import DIALECT, NESTED
from replikit.errors import DataError, SchemaError
from replikit.mapping.filters import Condition, pushdown
from replikit.pipeline.contracts import Batch, KeyRange, Reader, Unit
from replikit.pipeline.splitting import split_table
from replikit.schema.model import TableId, TableSchema
from replikit.schema.types import Kind, Type

__all__ = ["DuckdbReader"]

Convert = Callable[[Any], Any]
_HUGE = ("HUGEINT", "UHUGEINT", "INT128", "UINT128")
_TEMPORAL = (Kind.DATE, Kind.TIMESTAMP)


def _list_of(convert: Convert) -> Convert:
    def mapped(value: Any) -> Any:
        if isinstance(value, list):
            return [mapped(x) for x in value]
        return None if value is None else convert(value)

    return mapped


def _expression(t: Type, expr: str) -> tuple[str, Convert | None]:
    """The SELECT expression for a value of ``t`` and its Python converter."""
    if t.kind is Kind.ARRAY and t.item is not None:
        inner, convert = _expression(t.item, "x")
        if inner != "x":
            expr = f"list_transform({expr}, x -> {inner})"
        return expr, _list_of(convert) if convert is not None else None
    native = t.native.upper()
    if t.kind is Kind.INTERVAL:
        return f"CAST({expr} AS VARCHAR)", v.iso_interval
    if t.kind is Kind.OTHER and native.startswith(NESTED):
        return f"CAST(to_json({expr}) AS VARCHAR)", None
    if native in _HUGE:
        return expr, Decimal
    if t.kind is Kind.OTHER:
        return f"CAST({expr} AS VARCHAR)", None
    if native == "TIMESTAMP_NS":
        return f"CAST({expr} AS VARCHAR)", v.nanoseconds_in
    if t.kind in _TEMPORAL:
        return expr, v.temporal_in
    return expr, None


@dataclass(frozen=True, slots=True)
class _Scan:
    """The SELECT of one table and how to turn its rows into canonical values."""

    table: TableSchema
    select: str
    converters: tuple[tuple[int, Convert], ...]
    #: (value index, companion index): where a date or timestamp is infinite, the text
    infinite: tuple[tuple[int, int], ...]

    def convert(self, rows: list[tuple[Any, ...]]) -> list[Sequence[Any]]:
        width = len(self.table.columns)
        if not self.converters and not self.infinite:
            return rows  # type: ignore[return-value]
        out: list[Sequence[Any]] = []
        for row in rows:
            values = list(row[:width])
            for i, convert in self.converters:
                if values[i] is not None:
                    values[i] = convert(values[i])
            for i, companion in self.infinite:
                if row[companion] is not None:
                    values[i] = row[companion]
            out.append(values)
        return out


def _scan(table: TableSchema, as_text: frozenset[str]) -> _Scan:
    selected: list[str] = []
    converters: list[tuple[int, Convert]] = []
    companions: list[str] = []
    infinite: list[tuple[int, int]] = []
    width = len(table.columns)
    for i, col in enumerate(table.columns):
        quoted = DIALECT.quote(col.name)
        if col.name in as_text:
            selected.append(f"CAST({quoted} AS VARCHAR)")
            continue
        expr, convert = _expression(col.type, quoted)
        selected.append(expr)
        if convert is not None:
            converters.append((i, convert))
        if col.type.kind in _TEMPORAL:
            infinite.append((i, width + len(companions)))
            companions.append(f"CASE WHEN isinf({quoted}) THEN CAST({quoted} AS VARCHAR) END")
    source = DIALECT.qualified(table.id.schema, table.id.name)
    return _Scan(
        table,
        f"SELECT {', '.join(selected + companions)} FROM {source}",  # noqa: S608 - quoted
        tuple(converters),
        tuple(infinite),
    )


def _range_sql(rng: KeyRange | None) -> tuple[str, list[Any]]:
    if rng is None:
        return "", []
    conditions, params = [], []
    column = DIALECT.quote(rng.columns[0])
    if rng.lower is not None:
        conditions.append(f"{column} >= ?")
        params.append(rng.lower[0])
    if rng.upper is not None:
        conditions.append(f"{column} < ?")
        params.append(rng.upper[0])
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


#: kinds whose row-filter conditions DuckDB tests exactly as Python does (dates and
#: timestamps are left to Python: DuckDB's infinite values arrive as text)
_PUSHED = frozenset({Kind.INT, Kind.DECIMAL, Kind.BOOL, Kind.STRING, Kind.TEXT})
_HUGE_INT = 2**127


def _exact(c: Condition) -> bool:
    """Whether DuckDB binds every value of ``c`` exactly: it binds a decimal of more than 38
    digits as a DOUBLE (a comparison could then drop a row Python keeps) and refuses an
    integer beyond 128 bits."""
    for value in c.values:
        if isinstance(value, Decimal) and len(value.as_tuple().digits) > 38:
            return False
        if isinstance(value, int) and not -_HUGE_INT <= value < _HUGE_INT:
            return False
    return True


def _filtered(table: TableSchema, unit: Unit) -> tuple[str, list[Any]]:
    """The unit's key range and the part of its row filter DuckDB can test, as a WHERE.
    Comparisons on 128-bit integer columns stay in Python (DuckDB compares them with a bound
    integer as DECIMAL(38, 0), which fails on their largest values)."""
    huge = {c.name for c in table.columns if c.type.native.upper() in _HUGE}

    def accept(c: Condition) -> bool:
        return (c.column not in huge or not c.values) and _exact(c)

    where, params = _range_sql(unit.range)
    pushed = pushdown(unit.where, quote=DIALECT.quote, mark="?", kinds=_PUSHED, accept=accept)
    if pushed is None:
        return where, params
    glue = " AND " if where else " WHERE "
    return where + glue + pushed[0], [*params, *pushed[1]]


class DuckdbReader(Reader):
    """Reads tables of a DuckDB database; ``dialect`` is the type rules they were read with."""

    dialect = DIALECT
    #: an engine inside this process (:class:`~replikit.pipeline.contracts.SupportsPlacement`)
    on_this_machine = True

    def __init__(
        self, database: Database, tables: Sequence[TableSchema], *, batch_size: int = 10_000
    ) -> None:
        self._db = database
        self._tables = tuple(tables)
        self._by_id = {t.id: t for t in self._tables}
        self.batch_size = batch_size

    @property
    @override
    def tables(self) -> Sequence[TableSchema]:
        """The tables this reader was made for."""
        return self._tables

    @override
    def units(self, table: TableSchema, *, split_rows: int | None = None) -> list[Unit]:
        """One unit, or key ranges of about ``split_rows`` rows (single integer key)."""
        return split_table(table, split_rows, self)

    def key_span(self, table: TableSchema, column: str) -> tuple[int, int] | None:
        """The minimum and maximum of ``column`` (``None``: empty table)."""
        col = DIALECT.quote(column)
        source = DIALECT.qualified(table.id.schema, table.id.name)
        with self._db.connected(create=False) as conn:
            [row] = conn.execute(f"SELECT min({col}), max({col}) FROM {source}").fetchall()  # noqa: S608
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def key_quantiles(self, table: TableSchema, column: str, pieces: int) -> list[int]:
        """``pieces - 1`` keys cutting the table into equal parts (DuckDB's exact quantiles)."""
        col = DIALECT.quote(column)
        source = DIALECT.qualified(table.id.schema, table.id.name)
        cuts = [i / pieces for i in range(1, pieces)]
        with self._db.connected(create=False) as conn:
            row = conn.execute(
                f"SELECT quantile_disc({col}, ?::DOUBLE[]) FROM {source}",  # noqa: S608
                [cuts],
            ).fetchall()[0]
        return [int(x) for x in (row[0] if row and row[0] else [])]

    @override
    def read(self, unit: Unit) -> Iterator[Batch]:
        """Stream the rows of ``unit`` as batches of canonical values (narrowed by the part
        of its row filter DuckDB tests exactly; the pipeline still tests every row)."""
        table = self._table(unit.table)
        scan = _scan(table, unit.as_text)
        where, params = _filtered(table, unit)
        duckdb = driver()
        with self._db.connected(create=False) as conn:
            try:
                conn.execute("BEGIN")
                conn.execute(scan.select + where, params)
            except duckdb.CatalogException as exc:
                raise SchemaError(
                    f"cannot read {table.id} from {self._db.where}: {exc}; if it was dropped "
                    "or changed after planning, plan and run the task again"
                ) from exc
            while True:
                try:
                    rows = conn.fetchmany(self.batch_size)
                except duckdb.Error as exc:
                    raise DataError(f"cannot read {table.id}: {exc}", table=str(table.id)) from exc
                if not rows:
                    break
                yield Batch(table.id, table.column_names, scan.convert(rows))
            conn.execute("COMMIT")

    def _table(self, tid: TableId) -> TableSchema:
        try:
            return self._by_id[tid]
        except KeyError:
            raise SchemaError(f"this reader was not made for table {tid}") from None

"""How a column's Arrow form becomes its DuckDB type, without importing pyarrow: the Arrow type
sent for each target type, the ``CAST`` of the inserting ``SELECT``, and the checks of an
Arrow stream (:class:`~replikit.pipeline.contracts.SupportsArrowStreamRead`) read by DuckDB
straight from the source's driver.

Every column is inserted as ``CAST(value AS declared type)``, so a value Arrow carries as text
(UUID, interval, enum, JSON, 128-bit integers, a decimal of a stream) lands typed, and one
DuckDB cannot hold is refused by the statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from replikit.endpoints._arrow import TYPE_NAMES, canonical_type
from replikit.endpoints.duckdb._dialect import DIALECT, NESTED
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.types import Kind, Type

__all__ = ["arrow_type", "cast", "csv_select", "csv_type", "stream_select", "writable"]

#: the first and last instant of the years 1-9999 a stream's dates and timestamps are exact in
_DATES = ("DATE '0001-01-01'", "DATE '9999-12-31'")
_TIMESTAMPS = ("TIMESTAMP '0001-01-01 00:00:00'", "TIMESTAMP '9999-12-31 23:59:59.999999'")
_TIMESTAMPTZ = (
    "TIMESTAMPTZ '0001-01-01 00:00:00+00'",
    "TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'",
)
#: how a stream's refused value announces itself (the loader reads the unit again as batches)
OUT_OF_RANGE = "a date or timestamp outside the years 1-9999"


def arrow_type(pa: Any, t: Type, sql: str) -> Any:
    """The Arrow type a column of target type ``t`` (declared ``sql``) is sent as
    (``pa``: the pyarrow module, or :data:`~replikit.endpoints._arrow.TYPE_NAMES`)."""
    kind = t.kind
    if kind is Kind.ARRAY and t.item is not None:
        inner = arrow_type(pa, t.item, t.item.native or sql.removesuffix("[]"))
        for _ in range(max(t.dims, 1)):
            inner = pa.list_(inner)
        return inner
    upper = sql.upper()
    if kind is Kind.BOOL:
        return pa.bool_()
    if kind is Kind.INT and "HUGEINT" not in upper:
        bits = t.bits or 64
        return getattr(pa, f"{'u' if t.unsigned else ''}int{bits}")()
    if kind is Kind.DECIMAL and upper.startswith(("DECIMAL", "NUMERIC")):
        return pa.decimal128(t.precision or 18, t.scale or 0)
    if kind is Kind.FLOAT:
        return pa.float32() if t.bits == 32 else pa.float64()
    if kind is Kind.BYTES:
        return pa.binary()
    if kind is Kind.DATE:
        return pa.date32()
    if kind is Kind.TIME and not t.tz:
        return pa.time64("us")
    if kind is Kind.TIMESTAMP:
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    return pa.string()


def writable(plan: TablePlan) -> bool:
    """True when every column's canonical Arrow type is the one the writer sends for its
    target type (so DuckDB's cast makes of it what it makes of the row path's values); UUIDs
    come as their text, which is what the row path's adapter sends."""
    for cp in plan.columns:
        canonical = canonical_type(TYPE_NAMES, cp.source.type)
        if cp.generated is not None or canonical is None:
            return False
        if canonical != arrow_type(TYPE_NAMES, cp.target.type, cp.target.sql):
            return False
        if cp.target.adapt is not None and cp.source.type.kind is not Kind.UUID:
            return False
    return True


def cast(value: str, sql: str) -> str:
    """``value`` cast to the declared type ``sql`` (structured types from their JSON text)."""
    if sql.upper().startswith(NESTED):
        value = f"CAST({value} AS JSON)"
    return f"CAST({value} AS {sql})"


def stream_select(columns: Sequence[ColumnPlan], relation: str) -> str:
    """The ``SELECT`` list inserting ``columns`` from a stream read as ``relation`` (columns
    named as the source's): each cast to its declared type, and a date or timestamp outside
    the years 1-9999 (not exact in a stream) raised as :data:`OUT_OF_RANGE`."""
    out = []
    for cp in columns:
        value = f"{relation}.{DIALECT.quote(cp.source.name)}"
        bounds = _bounds(cp.source.type)
        if bounds is not None:
            lo, hi = bounds
            # typed as the bounds (a no-op for an Arrow date or timestamp; a column the
            # stream holds as text is parsed here)
            value = f"CAST({value} AS {lo.split()[0]})"
            value = (
                f"CASE WHEN {value} IS NULL OR {value} BETWEEN {lo} AND {hi} THEN {value} "
                f"ELSE error('{OUT_OF_RANGE}') END"
            )
        out.append(f"{cast(value, cp.target.sql)} AS {DIALECT.quote(cp.name)}")
    return ", ".join(out)


def _bounds(t: Type) -> tuple[str, str] | None:
    if t.kind is Kind.DATE:
        return _DATES
    if t.kind is Kind.TIMESTAMP:
        return _TIMESTAMPTZ if t.tz else _TIMESTAMPS
    return None


#: the DuckDB type a column of each canonical Arrow type is parsed into by DuckDB's CSV reader
#: (:data:`~replikit.endpoints.mysql._csvlines.CSV_FORMAT`): that type's text reads back exact
_CSV_TYPES = {
    "bool": "BOOLEAN",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "date32": "DATE",
    "timestamp[us]": "TIMESTAMP",
    # the text is UTC; the session's time zone is UTC, so the CAST to TIMESTAMPTZ keeps it
    "timestamp[us, tz=UTC]": "TIMESTAMP",
}


def csv_type(t: Type) -> str | None:
    """The type DuckDB's CSV reader parses a column of source type ``t`` into (the text of
    its canonical Arrow type), or ``None`` when that text has no exact parse here."""
    canonical = canonical_type(TYPE_NAMES, t)
    if canonical is None:
        return None
    if canonical.startswith("decimal128("):
        precision, scale = canonical.removeprefix("decimal128(").rstrip(")").split(", ")
        return f"DECIMAL({precision}, {scale})"
    return _CSV_TYPES.get(canonical)


def csv_select(columns: Sequence[ColumnPlan], relation: str) -> str | None:
    """The ``SELECT`` list inserting ``columns`` from DuckDB's CSV reader read as
    ``relation`` (columns ``c0``, ``c1``... as :func:`csv_type` parsed them), each cast to its
    declared type as the Arrow batches are; ``None`` when a column has no :func:`csv_type`."""
    out = []
    for i, cp in enumerate(columns):
        if csv_type(cp.source.type) is None:
            return None
        value = f"{relation}.{DIALECT.quote(f'c{i}')}"
        out.append(f"{cast(value, cp.target.sql)} AS {DIALECT.quote(cp.name)}")
    return ", ".join(out)

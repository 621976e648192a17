"""Hypothesis strategies for replikit's portable types and tables.

Property-test your own code against the values a database can hold::

    from hypothesis import given
    from replikit import Type
    from replikit.testing import strategies as rks

    @given(rks.values(Type.decimal(12, 2)))
    def test_total_keeps_cents(amount): ...

    @given(rks.rows(table_schema))            # one row: {column: value}
    @given(rks.row_lists(table_schema, max_size=20))   # rows with distinct keys

Values are canonical Python values (the table in :mod:`replikit.schema.types`) that fit the
type's bounds: integers within their bits, decimals within precision and scale, strings within
their length (no NUL, no lone surrogates), times and timestamps at the type's precision, dates
in the range every supported database stores (1000-01-01 to 9999-12-31; aware timestamps
1970 to 2037, MySQL's ``TIMESTAMP``). Nullable columns draw ``None`` too.
``special=True`` adds NaN and infinities to floats and decimals.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from replikit.errors import MissingDependencyError

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - the hint for an install without hypothesis
    raise MissingDependencyError("hypothesis", "testing", "replikit.testing.strategies") from exc

from replikit.schema.model import Column, TableSchema
from replikit.schema.types import Kind, Type

__all__ = ["column_values", "row_lists", "rows", "values"]

_MIN_DATE, _MAX_DATE = date(1000, 1, 1), date(9999, 12, 31)
_MIN_TZ, _MAX_TZ = datetime(1970, 1, 2), datetime(2037, 12, 31)
_TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def _ints(t: Type) -> st.SearchStrategy[int]:
    bits = t.bits or 64
    if t.unsigned:
        return st.integers(0, 2**bits - 1)
    return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def _decimals(t: Type, special: bool) -> st.SearchStrategy[Decimal]:
    scale = t.scale if t.scale is not None else 6
    precision = t.precision if t.precision is not None else 18
    top = Decimal(10) ** (precision - scale) - Decimal(1).scaleb(-scale)
    finite = st.decimals(
        min_value=-top, max_value=top, places=scale, allow_nan=False, allow_infinity=False
    )
    if not special:
        return finite
    return finite | st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])


def _strings(t: Type) -> st.SearchStrategy[str]:
    text = st.text(_TEXT, max_size=t.length if t.length is not None else 50)
    if t.fixed:  # CHAR(n) pads: trailing spaces do not survive
        return text.map(lambda s: s.rstrip(" "))
    return text


def _at_precision(precision: int | None) -> Any:
    digits = 6 if precision is None else max(0, min(precision, 6))
    step = 10 ** (6 - digits)
    return lambda v: v.replace(microsecond=v.microsecond // step * step)


def _times(t: Type) -> st.SearchStrategy[time]:
    base = st.times().map(_at_precision(t.precision))
    return base.map(lambda v: v.replace(tzinfo=UTC)) if t.tz else base


def _timestamps(t: Type) -> st.SearchStrategy[datetime]:
    if t.tz:
        aware = st.datetimes(_MIN_TZ, _MAX_TZ, timezones=st.just(UTC))
        return aware.map(_at_precision(t.precision))
    low = datetime.combine(_MIN_DATE, time())
    high = datetime.combine(_MAX_DATE, time(23, 59, 59, 999999))
    return st.datetimes(low, high).map(_at_precision(t.precision))


def _intervals() -> st.SearchStrategy[str]:
    parts = st.tuples(*(st.integers(0, n) for n in (200, 11, 27, 23, 59, 59)))
    return parts.map(lambda p: "P{}Y{}M{}DT{}H{}M{}S".format(*p))


def _json() -> st.SearchStrategy[str]:
    scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(_TEXT, max_size=20)
    doc = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(_TEXT, max_size=8), inner, max_size=4)
        ),
        max_leaves=10,
    )
    return doc.map(lambda v: json.dumps(v, ensure_ascii=False))


def values(t: Type, *, special: bool = False) -> st.SearchStrategy[Any]:
    """Non-null canonical values of portable type ``t`` (see the module docstring)."""
    k = t.kind
    simple: dict[Kind, Any] = {
        Kind.BOOL: st.booleans,
        Kind.DATE: lambda: st.dates(_MIN_DATE, _MAX_DATE),
        Kind.INTERVAL: _intervals,
        Kind.JSON: _json,
        Kind.UUID: st.uuids,
        Kind.OTHER: lambda: st.text(_TEXT, max_size=30),
    }
    if k in simple:
        strategy: st.SearchStrategy[Any] = simple[k]()
        return strategy
    if k is Kind.INT:
        return _ints(t)
    if k is Kind.DECIMAL:
        return _decimals(t, special)
    if k is Kind.FLOAT:
        if t.bits == 32:
            return st.floats(width=32, allow_nan=special, allow_infinity=special)
        return st.floats(allow_nan=special, allow_infinity=special)
    if k in (Kind.STRING, Kind.TEXT):
        return _strings(t)
    if k is Kind.BYTES:
        return st.binary(max_size=t.length if t.length is not None else 64)
    if k is Kind.TIME:
        return _times(t)
    if k is Kind.TIMESTAMP:
        return _timestamps(t)
    if k is Kind.ENUM:
        return st.sampled_from(t.values) if t.values else st.nothing()
    if k is Kind.ARRAY and t.item is not None:
        item = values(t.item, special=special)
        for _ in range(max(t.dims, 1) - 1):
            item = st.lists(item, min_size=1, max_size=3)
        return st.lists(item, max_size=5)
    raise ValueError(f"no strategy for the portable type {t}")


def column_values(column: Column, *, special: bool = False) -> st.SearchStrategy[Any]:
    """Values of ``column``: its type's values, and ``None`` when it is nullable."""
    strategy = values(column.type, special=special)
    return st.none() | strategy if column.nullable else strategy


def rows(table: TableSchema, *, special: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """One row of ``table`` as ``{column name: value}`` (generated columns left out)."""
    return st.fixed_dictionaries(
        {c.name: column_values(c, special=special) for c in table.columns if c.generated is None}
    )


def row_lists(
    table: TableSchema, *, min_size: int = 0, max_size: int = 20, special: bool = False
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Lists of rows of ``table`` whose keys (primary key, or first all-NOT-NULL unique key)
    are distinct, as the table would accept them."""
    key = table.key

    def by_key(row: dict[str, Any]) -> Any:
        return tuple(_key_form(row[c]) for c in key) if key else id(row)

    return st.lists(
        rows(table, special=special), min_size=min_size, max_size=max_size, unique_by=by_key
    )


def _key_form(value: Any) -> Any:
    """Equal in every database: strings compare without trailing spaces and case
    (MySQL's PAD SPACE and case-insensitive collations), decimals by value."""
    if isinstance(value, str):
        return value.rstrip(" ").casefold()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value

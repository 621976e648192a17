"""Column batches into the values SQLite stores: the columnar full load without Arrow.

A reader's column batch (:mod:`replikit.endpoints._columns`) gives each column as plain values,
as ``str()`` of each value (decimals, uuids, dates, timestamps) or as the UTF-8 bytes of free
text. Each column becomes exactly the Python values the row path binds (its value adapter
applied to the canonical value), a column at a time:

=============================================  ============================================
column (adapter)                               conversion
=============================================  ============================================
int, bytes                                     the values as they are
bool                                           0 and 1 (what SQLite stores for a ``bool``)
string, text, json, enum                       the text's bytes, bound into
                                               :data:`TEXT_PARAMETER`
uuid (``uuid_out``), decimal                   the ``str`` as it is (what each of these
(``decimal_to_text``), date (``date_out``),    adapters prints), bound into
timestamp (``timestamp_out``)                  :data:`TEXT_PARAMETER`
float (``float_out``)                          as they are, unless the column holds NaN or
                                               -0.0 (then per value)
decimal, p <= 15 (``decimal_to_numeric``)      ``float`` of the text (correctly rounded, as
                                               ``float(Decimal)``); NaN and +-Infinity as
                                               their text
=============================================  ============================================

Free text is bound as a ``bytearray`` into ``CAST(NULLIF(?, 0) AS TEXT)``: sqlite3 binds
``int``, ``float``, ``str`` and ``bytearray`` directly but looks an adapter up for ``bytes``,
``bool`` and ``None`` (about 0.3 us a value, measured), and a BLOB cast to TEXT is its bytes
read in the database's encoding (UTF-8: :meth:`SqliteWriter.column_writable` checks), the same
TEXT value a ``str`` binds, with no string decoded into Python and encoded back. A text
column's NULL is the integer 0 (:data:`TEXT_NULL`), which ``NULLIF`` turns back into NULL (no
text equals an integer). The column's affinity applies to the value as to any other.

Any other column (or adapter) is not taken: :func:`columns_for` returns ``None`` and the table
loads another way. ``tests/endpoints/sqlite/test_sqlite_column_load.py`` holds both paths to
the same stored values (``typeof()`` and value) with Hypothesis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from replikit.endpoints._columns import form_of
from replikit.endpoints.sqlite import _values as v
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.types import Kind, Type

__all__ = ["TEXT_NULL", "TEXT_PARAMETER", "ColumnLoad", "columns_for"]

#: a column's values: its column batch form in, the values sqlite3 binds out
Convert = Callable[[Sequence[Any]], Sequence[Any]]
#: a text column's NULL, bound into ``CAST(NULLIF(?, 0) AS TEXT)``: no text or blob equals an
#: integer, and sqlite3 binds an ``int`` without the adapter lookup ``None`` costs
TEXT_NULL = 0
#: the placeholder of a text column (:attr:`ColumnLoad.is_text`)
TEXT_PARAMETER = f"CAST(NULLIF(?, {TEXT_NULL}) AS TEXT)"
#: the digits a double holds exactly (``decimal_to_numeric`` takes ``NUMERIC(p,s)``, p <= 15)
REAL_DIGITS = 15
_BOOL = {True: 1, False: 0}.get
_AS_IS_KINDS = frozenset({Kind.INT, Kind.BYTES})
_TEXT_KINDS = frozenset({Kind.STRING, Kind.TEXT, Kind.JSON, Kind.ENUM})
#: (kind, adapter) pairs whose adapter prints the canonical value as ``str()`` does
_PRINTED = frozenset(
    {
        (Kind.UUID, v.uuid_out),
        (Kind.DECIMAL, v.decimal_to_text),
        (Kind.DATE, v.date_out),
        (Kind.TIMESTAMP, v.timestamp_out),
    }
)


@dataclass(frozen=True, slots=True)
class ColumnLoad:
    """How one target column is made from a column batch's source column."""

    source: str
    convert: Convert
    #: bound into :data:`TEXT_PARAMETER`
    is_text: bool = False


def _as_is(column: Sequence[Any]) -> Sequence[Any]:
    return column


def _bools(column: Sequence[Any]) -> Sequence[Any]:
    return list(map(_BOOL, column))


def _utf8(column: Sequence[Any]) -> Sequence[Any]:
    if None in column:
        return [TEXT_NULL if x is None else bytearray(x) for x in column]
    return list(map(bytearray, column))


def _printed(column: Sequence[Any]) -> Sequence[Any]:
    return [TEXT_NULL if x is None else x for x in column] if None in column else column


def _floats(column: Sequence[Any]) -> Sequence[Any]:
    """``float_out`` of each value: only NaN and -0.0 change, and a column without a NaN
    (its sum is not NaN) or a zero (-0.0 == 0.0) has neither."""
    present = [x for x in column if x is not None] if None in column else column
    total = sum(present)  # NaN when a value is NaN (or +inf and -inf are both there)
    if total == total and 0.0 not in present:
        return column
    return [None if x is None else v.float_out(x) for x in column]


def _decimals_numeric(column: Sequence[Any]) -> Sequence[Any]:
    """``decimal_to_numeric``: a decimal of at most 15 digits (the column's precision) is held
    exactly by the double nearest to it, which parsing its exact text gives."""
    floats: list[Any]
    if None in column:
        floats = [None if x is None else float(x) for x in column]
        total = sum(x for x in floats if x is not None)
    else:
        floats = [*map(float, column)]
        total = sum(floats)
    if math.isfinite(total):  # no NaN or Infinity (the values are below 1E15: no overflow)
        return floats
    return [
        x if x is None or math.isfinite(x) else text
        for x, text in zip(floats, column, strict=True)
    ]


def _convert(t: Type, adapt: Callable[[Any], Any] | None) -> tuple[Convert, bool] | None:
    """The conversion of a column of source type ``t`` with the plan's adapter, and whether
    it is text; ``None`` when not covered."""
    kind = t.kind
    if form_of(t) is None:
        return None
    if kind in _AS_IS_KINDS and adapt is None:
        return _as_is, False
    if kind is Kind.BOOL and adapt is None:
        return _bools, False
    if kind is Kind.FLOAT and adapt is v.float_out:
        return _floats, False
    if kind is Kind.DECIMAL and adapt is v.decimal_to_numeric:
        if t.precision is None or t.precision > REAL_DIGITS:
            return None
        return _decimals_numeric, False
    if kind in _TEXT_KINDS and adapt is None:
        return _utf8, True
    if (kind, adapt) in _PRINTED:
        return _printed, True
    return None


def column_wise(cp: ColumnPlan) -> bool:
    """Whether ``cp`` can load a column at a time (here or from Arrow): stored, not written
    as text, and of the target's kind (an ENUM's text included)."""
    if cp.generated is not None or cp.target.as_text:
        return False
    kind = cp.source.type.kind
    return kind is cp.target.type.kind or kind is Kind.ENUM


def columns_for(plan: TablePlan) -> list[ColumnLoad] | None:
    """The conversion of every column of ``plan`` (in its order), or ``None`` when one is
    not covered: then the table loads another way."""
    out: list[ColumnLoad] = []
    for cp in plan.columns:
        if not column_wise(cp):
            return None
        found = _convert(cp.source.type, cp.target.adapt)
        if found is None:
            return None
        out.append(ColumnLoad(cp.source.name, *found))
    return out

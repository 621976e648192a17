"""Arrow record batches into the values SQLite stores: the columnar full load.

A reader that delivers canonical Arrow batches (:class:`~replikit.pipeline.contracts.
SupportsArrowRead`, e.g. PostgreSQL's ``COPY ... (FORMAT csv)`` parsed by pyarrow) gives each
column in the Arrow type :func:`replikit.endpoints._arrow.canonical_type` names, or as the
canonical text of its values in a batch where one value has no such form (``infinity``, a BC
date, a NaN decimal). Each column here becomes exactly the Python values the row path binds
(its value adapter applied to the row path's canonical values), converted column-wise by Arrow
compute (C++) wherever that gives the same text or number, and value by value otherwise:

==========================  =================================================================
column (adapter)            columnar conversion (a canonical-text batch: value by value)
==========================  =================================================================
int, bool, string, text,    the values as they are (``to_pylist``; booleans as 0/1); a UUID's
json, enum, bytes, uuid     canonical text is its 36-character form, what ``uuid_out`` gives
float (``float_out``)       as they are, unless the column holds NaN or -0.0 (then per value)
decimal, p <= 15            exact text, then parsed to the nearest double (both correctly
(``decimal_to_numeric``)    rounded, as ``float(Decimal)``: never Arrow's decimal->double cast,
                            which is not)
decimal, p > 15             ``str(Decimal)`` per value (its exponent notation is Python's)
(``decimal_to_text``)
date (``date_out``)         ``YYYY-MM-DD`` by Arrow's cast to text
timestamp (``timestamp_     Arrow's text ``YYYY-MM-DD HH:MM:SS.ffffff`` without ``.000000``
out``)                      (Python's ``str``), ``+00:00`` appended for ``timestamptz``
==========================  =================================================================

Text columns (``is_text``) are bound into ``CAST(NULLIF(?, 0) AS TEXT)``
(:data:`._column_load.TEXT_PARAMETER`): a batch's text that is not all ASCII leaves Arrow as
its UTF-8 bytes, which SQLite takes as text in the database's encoding (UTF-8), the same TEXT
value binding the ``str`` gives, without decoding every string into Python and encoding it back
(measured: 0.37 s against 0.64 s per 300,000 200-byte accented notes); ASCII text stays
``str``. sqlite3 binds ``int``, ``float`` and ``str`` directly but looks an adapter up for
``bytes``, ``bool`` and ``None`` (5x an int's cost, measured), so booleans go as 0/1 and a text
column's NULL as the integer 0, which ``NULLIF`` turns back into NULL (no text or blob equals
an integer). The column's affinity applies to the value as to any other.

Any other column (or adapter) is not taken: :func:`columns_for` returns ``None`` and the table
loads row by row. ``tests/endpoints/sqlite/test_sqlite_arrow_load.py`` holds both paths to the
same stored values (``typeof()`` and value) with Hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from replikit.endpoints._arrow import canonical_type, pool
from replikit.endpoints.sqlite import _values as v
from replikit.endpoints.sqlite._column_load import REAL_DIGITS, TEXT_NULL, column_wise
from replikit.schema.convert import TablePlan
from replikit.schema.types import Kind, Type

__all__ = ["ArrowColumn", "columns_for", "pyarrow"]

#: a column's values: an Arrow array in, the list sqlite3 binds out
Convert = Callable[[Any, Any], list[Any]]


def pyarrow() -> Any | None:
    """pyarrow with its compute module, or ``None`` when not installed."""
    try:
        import pyarrow
        import pyarrow.compute
    except ImportError:
        return None
    return pyarrow


# -- per kind ----------------------------------------------------------------------------------


def _as_is(pa: Any, arr: Any) -> list[Any]:
    return list(arr.to_pylist())


def _utf8(pa: Any, arr: Any) -> list[Any]:
    """Text as ``str`` when all ASCII (cheap to make and to bind), else as its UTF-8 bytes
    (see the module docs: bound into ``CAST(? AS TEXT)``)."""
    ascii_only = pa.compute.string_is_ascii(arr, memory_pool=pool(pa))
    if pa.compute.all(ascii_only, memory_pool=pool(pa)).as_py() is not False:
        return list(arr.to_pylist())
    return list(arr.cast(pa.binary(), memory_pool=pool(pa)).to_pylist())


def _bools(pa: Any, arr: Any) -> list[Any]:
    """0 and 1, what SQLite stores for ``True`` and ``False`` (sqlite3 binds an ``int``
    without the adapter lookup a ``bool`` costs)."""
    return list(arr.cast(pa.int8(), memory_pool=pool(pa)).to_pylist())


def _floats(pa: Any, arr: Any) -> list[Any]:
    """``float_out`` of each value: NaN and -0.0 are the values it changes, found by their
    bits (-0.0 is the sign bit alone; ``== 0`` cannot tell it from 0.0)."""
    pc = pa.compute
    bits = pa.int32() if arr.type == pa.float32() else pa.int64()
    mp = pool(pa)
    sign_only = pa.scalar(-(2 ** (bits.bit_width - 1)), bits, memory_pool=mp)
    special = pc.or_(
        pc.is_nan(arr, memory_pool=mp),
        pc.equal(arr.view(bits), sign_only, memory_pool=mp),
        memory_pool=mp,
    )
    values = arr.to_pylist()
    if not pc.any(special, memory_pool=mp).as_py():
        return list(values)
    return [None if x is None else v.float_out(x) for x in values]


def _decimals_numeric(pa: Any, arr: Any) -> list[Any]:
    """``decimal_to_numeric``: a decimal of at most 15 digits (the column's precision) is held
    exactly by the double nearest to it, which parsing its exact text gives."""
    pc, mp = pa.compute, pool(pa)
    text = pc.cast(arr, pa.string(), memory_pool=mp)
    return list(pc.cast(text, pa.float64(), memory_pool=mp).to_pylist())


def _decimals_text(pa: Any, arr: Any) -> list[Any]:
    """``decimal_to_text``: Python's own text (``1E-7``), per value."""
    to_text = Decimal.__str__
    return [None if x is None else to_text(x) for x in arr.to_pylist()]


def _dates(pa: Any, arr: Any) -> list[Any]:
    return list(pa.compute.cast(arr, pa.string(), memory_pool=pool(pa)).to_pylist())


_NO_FRACTION = r"\.000000$"


def _timestamps(tz: bool) -> Convert:
    """``str(datetime)``: Arrow writes six fraction digits always, Python none when they are
    all zero; an aware value (UTC) ends in ``+00:00``."""

    def convert(pa: Any, arr: Any) -> list[Any]:
        pc, mp = pa.compute, pool(pa)
        if tz:  # the same instants, as UTC wall time
            arr = arr.cast(pa.timestamp("us"), memory_pool=mp)
        text = pc.cast(arr, pa.string(), memory_pool=mp)
        text = pc.replace_substring_regex(text, _NO_FRACTION, "", memory_pool=mp)
        if tz:
            text = pc.binary_join_element_wise(text, "+00:00", "", memory_pool=mp)
        return list(text.to_pylist())

    return convert


# -- a batch that kept a column as canonical text ------------------------------------------------
# The text is the source's own (PostgreSQL's with DateStyle=ISO, TimeZone=UTC); the row path
# holds such a value as the Python object parsed from it when Python can hold it, else as the
# text (infinity, BC, a year past 9999): the adapter then does the rest.


def _parsed(parse: Callable[[str], Any], adapt: Callable[[Any], Any]) -> Convert:
    def convert(pa: Any, arr: Any) -> list[Any]:
        out: list[Any] = []
        for text in arr.to_pylist():
            if text is None:
                out.append(None)
                continue
            try:
                value = parse(text)
            except ValueError:
                value = text
            out.append(adapt(value))
        return out

    return convert


def _decimal_text(text: str) -> Decimal:
    return Decimal(text)


@dataclass(frozen=True, slots=True)
class ArrowColumn:
    """How one target column is made from a batch's source column."""

    source: str
    #: the canonical Arrow type, and its conversion
    arrow: Any
    typed: Convert
    #: the conversion of a batch that kept the column as canonical text (``None``: such a
    #: batch is a reader error)
    text: Convert | None = None
    #: every value is text (``str``, or UTF-8 ``bytes`` bound into ``CAST(? AS TEXT)``)
    is_text: bool = False

    def values(self, pa: Any, batch: Any) -> list[Any]:
        """The column's values as sqlite3 binds them (a text column's NULL as
        :data:`TEXT_NULL`)."""
        arr = batch.column(self.source)
        if arr.type == self.arrow:
            out = self.typed(pa, arr)
        elif self.text is not None and arr.type == pa.string():
            out = self.text(pa, arr)
        else:
            raise TypeError(
                f"column {self.source} arrived as Arrow {arr.type}, not {self.arrow} or its text"
            )
        if self.is_text and arr.null_count:
            return [TEXT_NULL if x is None else x for x in out]
        return out


_AS_IS_KINDS = frozenset({Kind.INT, Kind.BYTES})
_TEXT_KINDS = frozenset({Kind.STRING, Kind.TEXT, Kind.JSON, Kind.ENUM})


def _column(pa: Any, name: str, t: Type, adapt: Callable[[Any], Any] | None) -> ArrowColumn | None:
    arrow = canonical_type(pa, t)
    if arrow is None:
        return None
    kind = t.kind
    if kind in _AS_IS_KINDS and adapt is None:
        return ArrowColumn(name, arrow, _as_is)
    if kind is Kind.BOOL and adapt is None:
        return ArrowColumn(name, arrow, _bools)
    if (kind in _TEXT_KINDS and adapt is None) or (kind is Kind.UUID and adapt is v.uuid_out):
        return ArrowColumn(name, arrow, _utf8, is_text=True)
    if kind is Kind.FLOAT and adapt is v.float_out:
        return ArrowColumn(name, arrow, _floats)
    if kind is Kind.DECIMAL and adapt is v.decimal_to_numeric:
        if t.precision is None or t.precision > REAL_DIGITS:
            return None
        return ArrowColumn(name, arrow, _decimals_numeric, _parsed(_decimal_text, adapt))
    if kind is Kind.DECIMAL and adapt is v.decimal_to_text:
        return ArrowColumn(name, arrow, _decimals_text, _parsed(_decimal_text, adapt), is_text=True)
    if kind is Kind.DATE and adapt is v.date_out:
        return ArrowColumn(name, arrow, _dates, _parsed(date.fromisoformat, adapt), is_text=True)
    if kind is Kind.TIMESTAMP and adapt is v.timestamp_out:
        convert = _parsed(datetime.fromisoformat, adapt)
        return ArrowColumn(name, arrow, _timestamps(t.tz), convert, is_text=True)
    return None


def columns_for(plan: TablePlan) -> list[ArrowColumn] | None:
    """The columnar conversion of every column of ``plan`` (in its order), or ``None`` when
    one is not covered (or pyarrow is missing): then the table loads row by row."""
    pa = pyarrow()
    if pa is None:
        return None
    out: list[ArrowColumn] = []
    for cp in plan.columns:
        if not column_wise(cp):
            return None
        col = _column(pa, cp.source.name, cp.source.type, cp.target.adapt)
        if col is None:
            return None
        out.append(col)
    return out

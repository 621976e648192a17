"""Value conversion between canonical Python values and what SQLite stores (sans-IO).

Write side: *adapters* turn a canonical value (see :mod:`replikit.schema.types`) into something
``sqlite3`` binds without loss in the column's declared type (its affinity). Read side:
*converters* turn a stored value back into the canonical value of the column's portable type.
Both raise :class:`BadValue` for a value that does not fit; callers add table, column and key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Context, Decimal, InvalidOperation
from operator import methodcaller
from typing import TYPE_CHECKING, Any
from uuid import UUID

from replikit.errors import DataError
from replikit.schema.types import Kind, Type

if TYPE_CHECKING:
    from replikit.schema.model import Column

__all__ = ["BadValue", "Converter", "converter_for", "storage_classes", "text_form"]

Converter = Callable[[Any], Any]

_MAX_INT64 = 2**63 - 1
_SPECIAL_DATE = re.compile(r"-?infinity|.*\sBC|[+-]?\d{5,}-.*", re.IGNORECASE | re.DOTALL)
_WIDE = Context(prec=200)  # quantize never runs out of digits for declared scales
_FRACTION = re.compile(r"[.,](\d{7,})")
_DURATION = re.compile(r"-?\d{2,3}:\d{2}:\d{2}(?:\.\d{1,6})?")  # MySQL TIME beyond a day
_END_OF_DAY = re.compile(r"24:00(?::00(?:\.0*)?)?(?:[+-]\d{2}(?::?\d{2}){0,2})?")


class BadValue(ValueError):
    """A value does not fit the column's type; the message says why."""


def preview(value: Any) -> str:
    """A short repr of ``value`` for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def not_valid(
    what: str,
    value: Any,
    col: Column,
    table: str,
    key: Any = None,
    why: str = "",
) -> DataError:
    """The error for a stored value that its column's declared type cannot hold.

    SQLite keeps any value in any column, so a source can hold ``'twelve'`` in an ``INTEGER``
    column; the message names the value, where it is, and the two ways out.
    """
    declared = col.type.native or "no declared type"
    reason = f": {why}" if why else ""
    override = f"{table}.{col.name}"
    return DataError(
        f"{what} {preview(value)} is not a valid {col.type} ({declared}){reason}. Fix the "
        f"value in the source, or load the column as text: type_overrides={{{override!r}: "
        f"'text'}} (CLI: --type {override}=text)",
        table=table,
        column=col.name,
        key=key,
    )


# -- write side ---------------------------------------------------------------------------


NEGATIVE_ZERO = "-0.0 (negative zero)"  # plain "-0.0" text would be converted to REAL 0


def float_out(value: float) -> float | str:
    """NaN and -0.0 as text: sqlite3 binds NaN as NULL and REAL storage drops the zero sign."""
    if value != value:
        return "NaN"
    if value == 0.0 and math.copysign(1.0, value) < 0:
        return NEGATIVE_ZERO
    return value


def decimal_to_text(value: Decimal) -> str:
    """Any Decimal as its exact text (TEXT affinity keeps every digit)."""
    if not isinstance(value, Decimal):
        raise BadValue(f"expected a Decimal, got {type(value).__name__}")
    return str(value)


def decimal_to_numeric(value: Decimal) -> float | str:
    """A Decimal for a NUMERIC-affinity column (``NUMERIC(p,s)``, p <= 15).

    Bound as the float whose shortest repr is the same number, so REAL storage keeps it and
    reading back at the column's scale restores it; NaN/Infinity as text (NUMERIC affinity
    keeps them as text). A value REAL cannot hold exactly is refused, never rounded.
    """
    if not isinstance(value, Decimal):
        raise BadValue(f"expected a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        return str(value)
    number = float(value)
    if math.isfinite(number) and Decimal(repr(number)) == value:
        return number
    raise BadValue(f"{value} cannot be stored exactly in a NUMERIC column (REAL keeps 15 digits)")


def int_to_text(value: int) -> str:
    """An unsigned 64-bit integer as decimal text (it may not fit SQLite INTEGER)."""
    if not isinstance(value, int) or value < 0:
        raise BadValue(f"expected a non-negative int, got {preview(value)}")
    return str(value)


def date_out(value: date | str) -> str:
    """``YYYY-MM-DD``; text values (infinity, BC dates) as they are."""
    return value if isinstance(value, str) else value.isoformat()


def time_out(value: time | str) -> str:
    """``HH:MM:SS[.ffffff][+HH:MM]``; text (PostgreSQL's ``24:00:00``) as it is."""
    return value if isinstance(value, str) else value.isoformat()


def timestamp_out(value: datetime | str) -> str:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]`` (plus the offset when aware); text as it is."""
    return value if isinstance(value, str) else value.isoformat(sep=" ")


def uuid_out(value: UUID) -> str:
    """The 36-character form."""
    return str(value)


def _json_item(value: Any) -> Any:
    if isinstance(value, list):
        return [_json_item(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Infinity; keep them as strings
    return value


def _decimal_default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def array_out(value: list[Any]) -> str:
    """An array as JSON text: dates ISO strings, bytes hex, Decimals with their exact digits."""
    return _dumps(_json_item(value))


def _dumps(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    return json.dumps(value, ensure_ascii=False, default=_decimal_default)


# -- read side ----------------------------------------------------------------------------


def _as_int(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    raise BadValue(f"{preview(value)} is not an integer")


def _uint64_in(value: Any) -> int:
    result = _as_int(value)
    if not 0 <= result < 2**64:
        raise BadValue(f"{result} is out of range for uint64")
    return result


def _bool_in(value: Any) -> bool:
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "t", "f"):
        return value.lower() in ("true", "t")
    raise BadValue(f"{preview(value)} is not a boolean (0 or 1)")


_FLOAT_WORDS = {"nan", "-0.0", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"}


def _float_in(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    if value == NEGATIVE_ZERO:
        return -0.0
    if isinstance(value, str) and value.strip().lower() in _FLOAT_WORDS:
        return float(value)
    raise BadValue(f"{preview(value)} is not a floating point number")


def _decimal_in(value: Any) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else Decimal(str(value))
    if isinstance(value, int | str):
        try:
            return Decimal(value if isinstance(value, int) else value.strip())
        except InvalidOperation:
            pass
    raise BadValue(f"{preview(value)} is not a decimal number")


def _decimal_scaled(scale: int) -> Converter:
    exponent = Decimal(1).scaleb(-scale)

    def convert(value: Any) -> Decimal:
        number = _decimal_in(value)
        if not number.is_finite():
            return number
        try:
            scaled = number.quantize(exponent, context=_WIDE)
        except InvalidOperation:
            raise BadValue(f"{preview(value)} does not fit scale {scale}") from None
        if scaled != number:
            raise BadValue(f"{preview(value)} has more than {scale} decimal places")
        return scaled

    return convert


def _check_fraction(text: str) -> None:
    match = _FRACTION.search(text)
    if match and match.group(1)[6:].strip("0"):
        raise BadValue(f"{preview(text)} has sub-microsecond digits Python cannot hold")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadValue(f"{preview(value)} ({type(value).__name__}) is not {what} text")
    return value


def _date_in(value: Any) -> date | str:
    text = _text(value, "date")
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    if _SPECIAL_DATE.fullmatch(text):
        return text
    try:  # 'YYYY-MM-DD 00:00:00' (a DATETIME-style value at midnight) loses nothing as a date
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is not None and moment.tzinfo is None and moment.time() == time(0):
        return moment.date()
    raise BadValue(f"{preview(value)} is not a date (YYYY-MM-DD)")


def _timestamp_in(tz: bool) -> Converter:
    def convert(value: Any) -> datetime | str:
        text = _text(value, "timestamp")
        try:
            result = datetime.fromisoformat(text)
        except ValueError:
            if _SPECIAL_DATE.fullmatch(text):
                return text
            raise BadValue(f"{preview(value)} is not a timestamp") from None
        _check_fraction(text)
        if tz:
            if result.tzinfo is None:
                raise BadValue(f"{preview(value)} has no time zone offset")
            return result.astimezone(UTC)
        if result.tzinfo is not None:
            raise BadValue(f"{preview(value)} has an offset but the column has no time zone")
        return result

    return convert


def _time_in(value: Any) -> time | str:
    text = _text(value, "time")
    try:
        result = time.fromisoformat(text)
    except ValueError:
        if _END_OF_DAY.fullmatch(text) or _DURATION.fullmatch(text):
            return text  # PostgreSQL's 24:00:00, MySQL's 838:59:59: kept as their text
        raise BadValue(f"{preview(value)} is not a time (HH:MM:SS)") from None
    _check_fraction(text)
    return result


def _uuid_in(value: Any) -> UUID:
    try:
        if isinstance(value, bytes) and len(value) == 16:
            return UUID(bytes=value)
        return UUID(_text(value, "uuid"))
    except ValueError:
        raise BadValue(f"{preview(value)} is not a UUID") from None


def text_form(value: Any) -> str:
    """A stored value as text (a column read as text: its type overridden to text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise BadValue(f"{preview(value)} ({type(value).__name__}) has no text form")


_SIMPLE: dict[Kind, Converter] = {
    Kind.BOOL: _bool_in,
    Kind.FLOAT: _float_in,
    Kind.DATE: _date_in,
    Kind.TIME: _time_in,
    Kind.UUID: _uuid_in,
    Kind.OTHER: text_form,
}


def converter_for(ptype: Type, affinity: str) -> Converter | None:
    """The read converter for a column, or ``None`` when stored values are canonical already.

    Columns that get ``None`` are checked with ``typeof()`` in SQL instead (see
    :func:`storage_classes`), which keeps plain integer and text columns fast.
    """
    kind = ptype.kind
    if kind is Kind.INT:
        return _uint64_in if affinity == "TEXT" else None
    if kind is Kind.DECIMAL:
        return _decimal_in if ptype.scale is None else _decimal_scaled(ptype.scale)
    if kind is Kind.TIMESTAMP:
        return _timestamp_in(ptype.tz)
    if kind is Kind.JSON:
        return None if affinity == "TEXT" else text_form
    return _SIMPLE.get(kind)


def storage_classes(ptype: Type) -> tuple[str, ...] | None:
    """The ``typeof()`` results allowed for a column with no converter (None: not checked)."""
    kind = ptype.kind
    if kind is Kind.INT:
        return ("integer",)
    if kind is Kind.BYTES:
        return ("blob",)
    if kind in (Kind.STRING, Kind.TEXT, Kind.ENUM, Kind.INTERVAL, Kind.JSON):
        return ("text",)
    return None


# -- column-wise fast paths ---------------------------------------------------------------
# Each takes a whole column and returns exactly what its per-value adapter would, or raises
# for any value it does not handle (then the column is redone value by value). Unbound
# methods of the exact types refuse every other type, so nothing else slips through.

_datetime_str = datetime.__str__  # isoformat(sep=" "), without a Python call per value
_date_iso = methodcaller("isoformat")  # a date's (a str has none: its adapter keeps it)
_decimal_float = Decimal.__float__
_decimal_str = Decimal.__str__


class _Slow(Exception):
    """A column has a value its fast path does not handle (redo it value by value)."""


def _timestamps_out(values: Sequence[Any]) -> list[Any]:
    return [None if v is None else _datetime_str(v) for v in values]


def _dates_out(values: Sequence[Any]) -> list[Any]:
    return [None if v is None else _date_iso(v) for v in values]


def _decimals_to_numeric(values: Sequence[Any]) -> list[Any]:
    """A Decimal written in at most 15 characters without an exponent has at most 15 digits
    and a magnitude well inside a double's range, so its float holds it exactly (IEEE doubles
    round-trip 15 significant digits): the test :func:`decimal_to_numeric` makes per value,
    for a look at the text per value. NaN and infinities are not plain digits either."""
    texts = [_decimal_str(v) for v in values if v is not None]
    joined = "".join(texts)  # exponents, NaN, sNaN and Infinity are the only letters
    if max(map(len, texts), default=0) > 15 or "E" in joined or "N" in joined or "I" in joined:
        raise _Slow
    return [None if v is None else _decimal_float(v) for v in values]


_COLUMN_WISE: dict[Callable[[Any], Any], Callable[[Sequence[Any]], list[Any]]] = {
    timestamp_out: _timestamps_out,
    date_out: _dates_out,
    decimal_to_numeric: _decimals_to_numeric,
}


def _column(values: Sequence[Any], fn: Callable[[Any], Any]) -> list[Any]:
    fast = _COLUMN_WISE.get(fn)
    if fast is not None:
        try:
            return fast(values)
        except (_Slow, TypeError, ValueError, ArithmeticError, AttributeError):
            pass  # a value the fast path does not take: its adapter decides
    return [None if v is None else fn(v) for v in values]


def map_columns(
    rows: Sequence[Sequence[Any]], functions: Sequence[tuple[int, Callable[[Any], Any]]]
) -> list[tuple[Any, ...]]:
    """Apply ``functions`` (column index, fn) to the non-NULL values of a batch, column by
    column: one comprehension per column instead of a Python loop per value (and for the
    commonest adapters one C call per value: :data:`_COLUMN_WISE`). Raises what the
    functions raise; callers redo the batch row by row to name the bad row."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    for index, fn in functions:
        columns[index] = _column(columns[index], fn)
    return list(zip(*columns, strict=True))

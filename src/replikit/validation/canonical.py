"""Canonical values: what two sides' values are compared as.

Readers deliver canonical Python values (:mod:`replikit.schema.types`), but one value can
still arrive in several spellings across engines: ``True`` / ``1``, ``Decimal('1.50')`` /
``1.5`` (SQLite's REAL in a NUMERIC column), an aware timestamp / the same instant in UTC,
``'{"a": 1}'`` / ``'{"a":1}'``, a ``CHAR(n)`` padded or not. :func:`canonicalizer` returns,
per column, a function mapping either side's value to one comparable, hashable form:

* a lossy column through the target's conversion: decimals at the target's scale and
  fractional seconds at its precision, rounded as the servers round;
* numbers by value (a float column compares as float, at 32 bits when either side is 32-bit;
  a decimal column as :class:`~decimal.Decimal`, a float read there by its shortest repr);
  NaN as the text ``"NaN"``;
* booleans as ``0`` / ``1``;
* timestamps as instants (aware values in UTC, without the zone); ISO text parsed;
* ``CHAR(n)`` without trailing spaces (PostgreSQL pads, MySQL strips, SQLite keeps);
* UUIDs as lowercase text; bytes as :class:`bytes`; JSON as the parsed document;
* arrays as tuples of their items' forms.

Anything else compares as it is.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from replikit.schema.types import Kind, Type

__all__ = ["Canon", "canonicalizer", "comparable_kinds", "freeze"]

Canon = Callable[[Any], Any]


def _float32(x: float) -> float:
    try:
        return float(struct.unpack("f", struct.pack("f", x))[0])
    except OverflowError:
        return x


_CONTEXT = Context(prec=200, rounding=ROUND_HALF_UP)


def _scaled(value: Any, scale: int | None) -> Any:
    """A decimal at the target column's scale, rounded half away from zero as PostgreSQL and
    MySQL round a value with more digits (a lossy scale, compared through that rounding)."""
    if scale is None or not isinstance(value, Decimal) or not value.is_finite():
        return value
    try:
        return value.quantize(Decimal(1).scaleb(-scale), context=_CONTEXT)
    except InvalidOperation:
        return value


def _rounded(value: Any, precision: int | None) -> Any:
    """A time or timestamp at the target column's fractional-second precision (rounded)."""
    if precision is None or precision >= 6 or not isinstance(value, datetime | time):
        return value
    step = 10 ** (6 - precision)
    micro = value.microsecond
    up = (micro + step // 2) // step * step
    if up < 1_000_000:
        return value.replace(microsecond=up)
    if isinstance(value, datetime):
        return value.replace(microsecond=0) + timedelta(seconds=1)
    return value.replace(microsecond=micro // step * step)


def _number(value: Any, kind: Kind, bits32: bool) -> Any:
    if isinstance(value, bool):
        return int(value)
    if kind is Kind.FLOAT:
        if isinstance(value, Decimal | int):
            value = float(value)
        if isinstance(value, float):
            if math.isnan(value):
                return "NaN"
            return _float32(value) if bits32 else value
        return value
    if isinstance(value, float):  # a decimal column read as a float (SQLite NUMERIC)
        if math.isnan(value):
            return "NaN"
        return Decimal(repr(value)) if math.isfinite(value) else value
    if isinstance(value, Decimal):
        if value.is_nan():
            return "NaN"
        return value
    if isinstance(value, str) and kind is Kind.DECIMAL:
        try:
            return _number(Decimal(value), kind, bits32)
        except InvalidOperation:
            return value
    return value


def _instant(value: Any, kind: Kind) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (
                date.fromisoformat(text)
                if kind is Kind.DATE
                else datetime.fromisoformat(text.replace("T", " "))
            )
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        if kind is Kind.DATE and value.time() == time():
            return value.date()
        return value
    return value


def _time(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = time.fromisoformat(value.strip())
        except ValueError:
            return value
    if isinstance(value, time) and value.tzinfo is not None:
        offset = value.utcoffset()
        moment = datetime.combine(date(2000, 1, 1), value.replace(tzinfo=None))
        if offset is not None:
            moment -= offset
        return moment.time()
    if hasattr(value, "total_seconds") and not isinstance(value, datetime):
        seconds = value.total_seconds()  # a MySQL TIME read as a duration
        if 0 <= seconds < 86400:
            whole = int(seconds)
            micro = round((seconds - whole) * 1_000_000)
            return time(whole // 3600, whole // 60 % 60, whole % 60, micro)
    return value


def freeze(doc: Any) -> Any:
    """A parsed JSON document as a hashable value (objects as sorted item tuples)."""
    if isinstance(doc, dict):
        return ("{}", tuple(sorted((str(k), freeze(v)) for k, v in doc.items())))
    if isinstance(doc, list):
        return ("[]", tuple(freeze(v) for v in doc))
    if isinstance(doc, bool) or doc is None:
        return doc
    if isinstance(doc, int | float | Decimal):
        return Decimal(str(doc)) if not isinstance(doc, float) or math.isfinite(doc) else str(doc)
    return doc


def _json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return freeze(json.loads(value, parse_float=Decimal, parse_int=Decimal))
        except ValueError:
            return value
    return freeze(value)


def _uuid(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes) and len(value) == 16:
        return str(uuid.UUID(bytes=value))
    return value.lower() if isinstance(value, str) else value


def _plain(value: Any, fixed: bool) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if fixed and isinstance(value, str):
        return value.rstrip(" ")
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def canonicalizer(source: Type, target: Type, *, lossy: Type | None = None) -> Canon:
    """The function both sides' values of one column go through before they are compared
    (``source`` / ``target``: the column's portable types on each side; ``lossy``: the type
    the plan converts a lossy column to, whose scale or precision the values are rounded to,
    as the target rounds them)."""
    kind = target.kind if target.kind is not Kind.OTHER else source.kind
    if kind is Kind.ARRAY and target.item is not None:
        item = canonicalizer(source.item or target.item, target.item)

        def array(value: Any) -> Any:
            if isinstance(value, list | tuple):
                return tuple(item(v) for v in value)
            return value

        return _nullsafe(array)
    if kind in (Kind.INT, Kind.DECIMAL, Kind.FLOAT, Kind.BOOL):
        bits32 = Kind.FLOAT in (source.kind, target.kind) and 32 in (source.bits, target.bits)
        scale = lossy.scale if lossy is not None and kind is Kind.DECIMAL else None
        return _nullsafe(lambda v: _scaled(_number(v, kind, bits32), scale))
    if kind in (Kind.DATE, Kind.TIMESTAMP):
        p = lossy.precision if lossy is not None and kind is Kind.TIMESTAMP else None
        return _nullsafe(lambda v: _rounded(_instant(v, kind), p))
    if kind is Kind.TIME:
        tp = lossy.precision if lossy is not None else None
        return _nullsafe(lambda v: _rounded(_time(v), tp))
    if kind is Kind.JSON:
        return _nullsafe(_json)
    if kind is Kind.UUID or source.kind is Kind.UUID:
        return _nullsafe(_uuid)
    fixed = bool(source.fixed or target.fixed)
    return _nullsafe(lambda v: _plain(v, fixed))


def _nullsafe(fn: Canon) -> Canon:
    def canon(value: Any) -> Any:
        return None if value is None else fn(value)

    return canon


_GROUPS = (
    {Kind.INT, Kind.DECIMAL, Kind.BOOL},
    {Kind.STRING, Kind.TEXT, Kind.ENUM, Kind.UUID},
    {Kind.TIMESTAMP, Kind.DATE},
)


def comparable_kinds(a: Kind, b: Kind) -> bool:
    """Whether key columns of kinds ``a`` and ``b`` can hold the same keys (a key column
    whose type changed kind on the way is not comparable)."""
    return a == b or any(a in g and b in g for g in _GROUPS)

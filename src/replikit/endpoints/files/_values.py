"""Canonical values <-> what the files hold: Arrow arrays (Parquet) or text (CSV, JSONL).

Parquet columns carry their type (:func:`arrow_type`); CSV and JSONL hold text written by
:func:`to_text` and read back by :func:`from_text` with the type from ``_schema.json`` (JSONL
keeps booleans, integers, finite floats and strings as JSON values). Text forms: bytes in
base64, dates and times in ISO 8601 (``infinity`` and BC dates as the source's text), floats
as Python prints them (``nan``, ``inf``, ``-0.0``), arrays as JSON lists.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from replikit.endpoints.base import require
from replikit.schema.types import Kind, Type

__all__ = ["arrow_type", "from_arrow", "from_json", "from_text", "pa", "to_json", "to_text"]

pa = require("pyarrow", package="pyarrow", extra="files", purpose="The files endpoint")

Convert = Callable[[Any], Any]


def arrow_type(t: Type) -> Any:
    """The Arrow type a column of target type ``t`` is written as (``t.native`` is its
    spelling, see :mod:`._dialect`)."""
    native = t.native
    if t.kind is Kind.ARRAY and t.item is not None:
        inner = arrow_type(t.item)
        for _ in range(max(t.dims, 1)):
            inner = pa.list_(inner)
        return inner
    if native.startswith(("decimal128", "decimal256")):
        return (pa.decimal256 if native.startswith("decimal256") else pa.decimal128)(
            t.precision or 38, t.scale or 0
        )
    simple = {
        "bool": pa.bool_,
        "float": pa.float32,
        "double": pa.float64,
        "binary": pa.binary,
        "date32[day]": pa.date32,
        "time64[us]": lambda: pa.time64("us"),
        "timestamp[us]": lambda: pa.timestamp("us"),
        "timestamp[us, tz=UTC]": lambda: pa.timestamp("us", tz="UTC"),
        "extension<arrow.json>": pa.json_,
        "extension<arrow.uuid>": pa.uuid,
    }
    if native in simple:
        return simple[native]()
    if t.kind is Kind.INT and native.startswith(("int", "uint")):
        return getattr(pa, native)()
    return pa.string()


# -- Arrow -> canonical -----------------------------------------------------------------------
def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _iso_duration(value: timedelta) -> str:
    """A duration as ISO 8601 (days and seconds; Arrow durations have no months)."""
    micros = value // timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    seconds, frac = divmod(abs(micros), 1_000_000)
    text = f"{seconds}.{frac:06d}".rstrip("0").rstrip(".")
    return f"{sign}PT{text}S"


def _other_text(value: Any) -> str:
    """A value of a type with no portable meaning (struct, map...) as its JSON text."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def _time_tz(value: Any) -> Any:
    return time.fromisoformat(value) if isinstance(value, str) else value


def from_arrow(t: Type, arrow: Any) -> Convert | None:
    """How a value read from an Arrow column of type ``arrow`` becomes the canonical value of
    portable type ``t`` (``None``: as it is)."""
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        inner_type = t
        if t.kind is Kind.ARRAY and t.item is not None:
            inner_type = Type.array(t.item, t.dims - 1) if t.dims > 1 else t.item
        inner = from_arrow(inner_type, arrow.value_type)
        return _each(inner) if inner is not None else None
    if pa.types.is_timestamp(arrow) and arrow.tz is not None:
        return _utc
    if pa.types.is_duration(arrow):
        return _iso_duration
    if t.kind is Kind.OTHER and not pa.types.is_string(arrow):
        return _other_text
    if t.kind is Kind.TIME and t.tz:
        return _time_tz
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return _text_to(t)
    return None


def _each(convert: Convert) -> Convert:
    def mapped(value: list[Any]) -> list[Any]:
        return [None if x is None else convert(x) for x in value]

    return mapped


def _text_to(t: Type) -> Convert | None:
    """Text stored for a typed column (a type the files keep as text)."""
    if t.kind in (Kind.TEXT, Kind.STRING, Kind.ENUM, Kind.INTERVAL, Kind.JSON, Kind.OTHER):
        return None
    return lambda v: from_text(t, v)


# -- canonical <-> text (CSV, JSONL) -----------------------------------------------------------
def to_text(value: Any) -> str:
    """The text form of a canonical value (see the module docstring)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return json.dumps([to_json(x) for x in value], ensure_ascii=False)
    return str(value)


def to_json(value: Any) -> Any:
    """A canonical value as a JSON value (JSONL): JSON's own types where exact, else text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return value
    if isinstance(value, list):
        return [to_json(x) for x in value]
    return to_text(value)


def _date(text: str) -> Any:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return text  # infinity, BC: the source's own text


def _datetime(text: str) -> Any:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return text
    return value.astimezone(UTC) if value.tzinfo is not None else value


def _time(text: str) -> Any:
    try:
        return time.fromisoformat(text)
    except ValueError:
        return text  # 24:00:00


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "t", "1"):
        return True
    if low in ("false", "f", "0"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


_FROM_TEXT: dict[Kind, Convert] = {
    Kind.BOOL: _bool,
    Kind.INT: int,
    Kind.DECIMAL: Decimal,
    Kind.FLOAT: float,
    Kind.BYTES: lambda s: base64.b64decode(s, validate=True),
    Kind.DATE: _date,
    Kind.TIME: _time,
    Kind.TIMESTAMP: _datetime,
    Kind.UUID: uuid.UUID,
}


def from_text(t: Type, text: Any) -> Any:
    """The canonical value of portable type ``t`` written as ``text`` by :func:`to_text`
    (or a JSON value by :func:`to_json`)."""
    if text is None:
        return None
    if t.kind is Kind.ARRAY and t.item is not None:
        items = json.loads(text) if isinstance(text, str) else text
        inner = Type.array(t.item, t.dims - 1) if t.dims > 1 else t.item
        return [from_json(inner, x) for x in items]
    if not isinstance(text, str):
        return from_json(t, text)
    convert = _FROM_TEXT.get(t.kind)
    return text if convert is None else convert(text)


def from_json(t: Type, value: Any) -> Any:
    """The canonical value of ``t`` from a JSON value written by :func:`to_json`."""
    if value is None:
        return None
    if isinstance(value, str) or (t.kind is Kind.ARRAY and isinstance(value, list)):
        return from_text(t, value)
    if t.kind is Kind.DECIMAL:
        return Decimal(str(value))
    if t.kind is Kind.FLOAT:
        return float(value)
    return value

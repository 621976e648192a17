"""Read side: the SELECT expression and the Python converter of each column (sans-IO).

Every column is selected so that both drivers return the same thing whatever their converter
settings (a caller may hand the reader its own connection): temporal types as text
(``CAST(... AS CHAR)``, parsed here, because the drivers' own parsers turn zero dates into
``None`` or keep them as ``str`` silently), FLOAT as ``DOUBLE`` (the text protocol prints only
6 significant digits of a FLOAT; the double is the float32 exactly), UUID and unknown types as
text. Converters turn what the driver returns into the canonical value of the column's portable
type (:mod:`replikit.schema.types`) and raise :class:`BadValue` for a value that has none; the
reader adds table, column and key.

Zero and invalid dates (``0000-00-00``, ``2020-00-15``, year 0) follow the reader's
``zero_dates`` policy: ``"null"`` (default) reads them as NULL in nullable columns and refuses
them in NOT NULL ones; ``"error"`` refuses them everywhere. Either way they are counted.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from replikit.endpoints.mysql._dialect import DIALECT, GEOMETRY_TYPES, BadValue
from replikit.schema.model import Column
from replikit.schema.types import Kind

__all__ = [
    "ZERO_DATE_POLICIES",
    "BadValue",
    "ColumnReader",
    "ZeroDates",
    "column_reader",
    "convert_columns",
    "ewkb_to_internal",
    "internal_to_ewkb",
    "text_reader",
]

ZERO_DATE_POLICIES = ("null", "error")
Converter = Callable[[Any], Any]
_EWKB_SRID = 0x20000000
_F32 = struct.Struct("<f")


@dataclass
class ZeroDates:
    """Counts zero/invalid dates read as NULL, per ``(table, column)``."""

    policy: str = "null"
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def handle(self, table: str, column: Column, text: str) -> None:
        """Count a zero date read as NULL, or raise when the policy or NOT NULL forbids it."""
        if self.policy == "error" or not column.nullable:
            why = "the column is NOT NULL" if column.nullable is False else "zero_dates='error'"
            raise BadValue(
                f"zero or invalid date {text!r} has no value in any other database and {why}; "
                "fix the row at the source, or read with zero_dates='null' to load it as NULL "
                "(nullable columns only)"
            )
        self.counts[(table, column.name)] += 1

    def notes(
        self, counts: Mapping[tuple[str, str], int] | None = None, *, where: str = ""
    ) -> dict[tuple[str, str, str], int]:
        """``counts`` (default: this one's) as a reader's value notes, ``(table, column, what)
        -> count`` (:class:`~replikit.pipeline.contracts.SupportsValueNotes`); ``where``
        follows "read as NULL" (" from the binlog")."""
        what = f"zero or invalid date(s) read as NULL{where} (zero_dates='{self.policy}')"
        found = dict(self.counts if counts is None else counts)  # one copy: another thread counts
        return {(table, column, what): n for (table, column), n in found.items() if n > 0}


@dataclass(frozen=True, slots=True)
class ColumnReader:
    """How one column is selected (``expression``) and converted (``convert``, or None).

    ``ready`` is the type a driver value already has when it needs no conversion (drivers
    return one type per column, so a batch whose first value has it is passed through).
    ``fast`` converts a whole column at C speed for the common case and raises
    ``ValueError``/``TypeError`` for anything else; the column is then redone with
    ``convert``, which counts zero dates and explains refusals.
    """

    expression: str
    convert: Converter | None
    ready: type | tuple[type, ...] | None = None
    fast: Callable[[Sequence[Any]], list[Any]] | None = None


def _bool(value: Any) -> bool:
    if isinstance(value, bytes | bytearray):
        value = int.from_bytes(value, "big")
    if value == 0:
        return False
    if value == 1:
        return True
    raise BadValue(
        f"{value!r} is not a boolean (TINYINT(1) is read as bool); read this table with "
        "tinyint1_as_bool=False to keep it an integer"
    )


def _bits(value: Any) -> int:
    return int.from_bytes(value, "big") if isinstance(value, bytes | bytearray) else int(value)


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(_text(value))


def _float32(value: Any) -> float:
    number = float(value)
    return _F32.unpack(_F32.pack(number))[0] if number == number else number


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else bytes(value)


def _uuid(value: Any) -> UUID:
    return UUID(_text(value))


def _time(value: Any) -> time | str:
    text = _text(value)
    try:
        return time.fromisoformat(text)
    except ValueError:
        return text  # negative or >= 24 h: MySQL's own text form


def internal_to_ewkb(value: Any) -> str:
    """MySQL's geometry storage (SRID + WKB) as hex EWKB text (PostGIS reads it as is)."""
    raw = _bytes(value)
    if len(raw) < 9:
        raise BadValue(f"{raw.hex()} is not a MySQL geometry value")
    srid = int.from_bytes(raw[:4], "little")
    wkb = raw[4:]
    if not srid:
        return wkb.hex().upper()
    order = "<" if wkb[0] == 1 else ">"
    (kind,) = struct.unpack_from(order + "I", wkb, 1)
    head = wkb[:1] + struct.pack(order + "I", kind | _EWKB_SRID) + struct.pack(order + "I", srid)
    return (head + wkb[5:]).hex().upper()


def ewkb_to_internal(value: Any) -> bytes:
    """Hex EWKB (or WKB) text back into MySQL's geometry storage (SRID + WKB)."""
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else _bytes(value)
        order = "<" if raw[0] == 1 else ">"
        (kind,) = struct.unpack_from(order + "I", raw, 1)
    except (ValueError, IndexError, struct.error) as exc:
        raise BadValue(f"{str(value)[:40]!r} is not hex (E)WKB geometry: {exc}") from None
    srid = 0
    if kind & _EWKB_SRID:
        (srid,) = struct.unpack_from(order + "I", raw, 5)
        raw = raw[:1] + struct.pack(order + "I", kind & ~_EWKB_SRID) + raw[9:]
    return struct.pack("<I", srid) + raw


_SIMPLE: dict[Kind, Converter] = {
    Kind.DECIMAL: _decimal,
    Kind.STRING: _text,
    Kind.TEXT: _text,
    Kind.JSON: _text,
    Kind.ENUM: _text,
    Kind.BYTES: _bytes,
    Kind.UUID: _uuid,
    Kind.OTHER: _text,
    Kind.TIME: _time,
}


def _temporal(table: str, column: Column, zero: ZeroDates) -> Converter:
    if column.type.kind is Kind.DATE:
        parse: Callable[[Any], date | datetime] = date.fromisoformat
    elif column.type.tz:
        parse = _instant
    else:
        parse = datetime.fromisoformat

    def convert(value: Any) -> Any:
        try:
            return parse(value)
        except TypeError:
            return convert(_text(value))
        except ValueError:
            zero.handle(table, column, _text(value))
            return None

    return convert


def _mapping(parse: Callable[[Any], Any]) -> Callable[[Sequence[Any]], list[Any]]:
    def fast(col: Sequence[Any]) -> list[Any]:
        if None in col:
            return [None if v is None else parse(v) for v in col]
        return list(map(parse, col))

    return fast


def _bools(col: Sequence[Any]) -> list[Any]:
    values = set(col)
    values.discard(None)
    if not values <= {0, 1} or any(v.__class__ is not int for v in values):
        raise ValueError("not all 0/1")
    return [None if v is None else v == 1 for v in col]


def _temporal_fast(column: Column) -> Callable[[Sequence[Any]], list[Any]]:
    if column.type.kind is Kind.DATE:
        return _mapping(date.fromisoformat)
    return _mapping(_instant if column.type.tz else datetime.fromisoformat)


def _instant(text: Any) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _base(native: str) -> str:
    return native.lower().split("(")[0].split()[0] if native else ""


def column_reader(
    table: str, column: Column, *, zero: ZeroDates, tinyint1_as_bool: bool = True
) -> ColumnReader:
    """The SELECT expression and converter for ``column`` of ``table`` (a reflected column)."""
    q = DIALECT.quote(column.name)
    t = column.type
    base = _base(t.native)
    if t.kind in (Kind.DATE, Kind.TIMESTAMP, Kind.TIME):
        if t.kind is Kind.TIME:
            return ColumnReader(f"CAST({q} AS CHAR)", _time)
        return ColumnReader(
            f"CAST({q} AS CHAR)", _temporal(table, column, zero), fast=_temporal_fast(column)
        )
    if t.kind is Kind.BOOL:
        if base == "tinyint" and not tinyint1_as_bool:
            return ColumnReader(q, None)
        return ColumnReader(q, _bool, fast=_bools)
    if t.kind is Kind.INT:
        return ColumnReader(q, _bits if base == "bit" else None)
    if t.kind is Kind.FLOAT:
        if (t.bits or 64) <= 32:
            return ColumnReader(f"CAST({q} AS DOUBLE)", _float32)
        return ColumnReader(q, float, float)
    if t.kind is Kind.OTHER and base in GEOMETRY_TYPES:
        return ColumnReader(q, internal_to_ewkb)
    if t.kind in (Kind.UUID, Kind.OTHER):
        return ColumnReader(f"CAST({q} AS CHAR)", _SIMPLE[t.kind])
    return ColumnReader(q, _SIMPLE.get(t.kind), _READY.get(t.kind))


def text_reader(column: Column) -> ColumnReader:
    """``column`` read as MySQL's own text form (a type override to text).

    BIT prints as its number (its CAST is raw bytes) and geometry as hex EWKB, as read
    without an override (its CAST is binary storage).
    """
    q = DIALECT.quote(column.name)
    base = _base(column.type.native)
    if base == "bit":
        return ColumnReader(f"CAST({q} + 0 AS CHAR)", _text, str)
    if base in GEOMETRY_TYPES:
        return ColumnReader(q, internal_to_ewkb)
    return ColumnReader(f"CAST({q} AS CHAR)", _text, str)


_READY: dict[Kind, type] = {
    Kind.DECIMAL: Decimal,
    Kind.STRING: str,
    Kind.TEXT: str,
    Kind.JSON: str,
    Kind.ENUM: str,
    Kind.BYTES: bytes,
}


def convert_columns(
    rows: Sequence[Sequence[Any]], readers: Sequence[tuple[int, ColumnReader]]
) -> list[Sequence[Any]]:
    """Apply the readers' converters column by column (far faster than per row).

    None stays None; a column whose first non-None value already has the reader's ``ready``
    type is passed through untouched.
    """
    todo = [(i, r) for i, r in readers if r.convert is not None and _needs(rows, i, r)]
    if not todo or not rows:
        return rows if isinstance(rows, list) else list(rows)
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    for index, reader in todo:
        columns[index] = _convert_column(columns[index], reader)
    return list(zip(*columns, strict=True))


def _convert_column(col: Sequence[Any], reader: ColumnReader) -> list[Any]:
    if reader.fast is not None:
        try:
            return reader.fast(col)
        except (ValueError, TypeError):
            pass  # redo value by value: counts zero dates, raises BadValue with the reason
    convert = reader.convert
    assert convert is not None
    return [None if v is None else convert(v) for v in col]


def _needs(rows: Sequence[Sequence[Any]], index: int, reader: ColumnReader) -> bool:
    if reader.ready is None:
        return True
    for row in rows:
        value = row[index]
        if value is not None:
            return not isinstance(value, reader.ready)
    return False

"""Binlog row values -> the canonical values the full-load reader yields (sans-IO).

mysql-replication decodes row images into Python values that differ from what the full-load
reader (:mod:`._values`) makes of the same row: ``BINARY(n)`` loses its trailing zero bytes,
``BIT`` comes as a string of ``0``/``1``, ``SET`` as a Python set, ``TIMESTAMP`` as a naive
UTC datetime, ``YEAR 0000`` as 1900, ``TIME`` as a ``timedelta`` (a wrong one when negative
with a fraction), MariaDB ``UUID``/``INET6`` as raw bytes without their trailing zero bytes,
geometries as raw bytes, and zero dates (``0000-00-00``, ``2020-00-15``) as ``None`` with a
reason in ``none_sources``.
:func:`converter` builds, per column, the function that undoes this, so a change carries
exactly the values a full load of the same row does.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from replikit.endpoints.mysql._dialect import BadValue, labels
from replikit.endpoints.mysql._values import internal_to_ewkb
from replikit.schema.model import Column
from replikit.schema.types import Kind

__all__ = [
    "CONVERSIONS",
    "EMPTY_SET",
    "OUT_OF_RANGE",
    "ZERO_DATE",
    "Converter",
    "base_type",
    "conversion",
    "converter",
]

Converter = Callable[[Any], Any]

ZERO_DATE = object()
"""Stands for a zero or partial date (``0000-00-00``, ``2020-00-15``) the binlog cannot carry."""

# reasons mysql-replication gives for a None that is not SQL NULL
OUT_OF_RANGE = frozenset({"out of date range", "out of datetime range", "out of datetime2 range"})
EMPTY_SET = "empty set"
_GEOMETRY = frozenset(
    (
        *("geometry", "point", "linestring", "polygon", "multipoint", "multilinestring"),
        *("multipolygon", "geometrycollection", "geomcollection"),
    )
)
_EPOCH = datetime(1970, 1, 1)


def base_type(col: Column) -> str:
    """The column's MySQL type name in lower case (``"int"`` for ``INT(10) UNSIGNED``)."""
    native = col.type.native.lower()
    return native.split("(")[0].split()[0] if native else ""


def _bits(value: Any) -> int:
    return int(value, 2) if isinstance(value, str) else int(value)


def _bool(value: Any) -> bool:
    number = _bits(value)
    if number in (0, 1):
        return number == 1
    raise BadValue(
        f"{number!r} is not a boolean (TINYINT(1) is read as bool); read this table with "
        "tinyint1_as_bool=False to keep it an integer"
    )


def _padded(length: int) -> Converter:
    def convert(value: Any) -> Any:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return raw.ljust(length, b"\x00")  # the binlog strips BINARY(n)'s trailing zeros

    return convert


def _bytes(value: Any) -> bytes:
    # an empty binary value decodes to "" (Python decodes b"" even with the unknown codec
    # "binary"; any other value keeps its bytes)
    return value if isinstance(value, bytes) else bytes(value, "utf-8")


def _set(native: str) -> Converter:
    args = native[native.find("(") + 1 : native.rfind(")")]
    order = {v: i for i, v in enumerate(labels(args))}

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            return value
        return ",".join(sorted(value, key=lambda v: order.get(v, len(order))))

    return convert


def _timestamp(value: Any) -> Any:
    if value == _EPOCH:  # TIMESTAMP 0 is the zero date: the first instant is 1970-01-01 00:00:01
        return ZERO_DATE
    return value.replace(tzinfo=UTC)


def _time(precision: int) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, timedelta):
            return value
        if timedelta(0) <= value < timedelta(days=1):
            return (datetime.min + value).time()
        micros = value // timedelta(microseconds=1)  # negative or >= 24 h: MySQL's text form
        sign, micros = ("-" if micros < 0 else ""), abs(micros)
        if sign and micros % 1_000_000:
            # a negative TIME2 with a fraction f is stored as -(s + 1) and -f; mysql-replication
            # reads that as -(s + 1 - f) (-12:00:00.001 as -12:00:00.999): take f back
            micros = micros // 1_000_000 * 1_000_000 + 1_000_000 - micros % 1_000_000
        seconds, micro = divmod(micros, 1_000_000)
        minutes, second = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        fraction = f".{micro:06d}"[: precision + 1] if precision else ""
        return f"{sign}{hours:02d}:{minute:02d}:{second:02d}{fraction}"

    return convert


def _year(value: Any) -> Any:
    return 0 if value == 1900 else value  # YEAR 0000 is stored as 0, which the library adds to


def _uuid(value: Any) -> Any:
    # the binlog carries MariaDB UUIDs in text order (verified on 10.11), whatever the
    # storage engine's index-friendly record layout, without their trailing zero bytes
    if isinstance(value, bytes | bytearray):
        return uuid.UUID(bytes=bytes(value).ljust(16, b"\x00"))
    if value == "":  # all zero bytes, stripped, decode to "" (see _bytes)
        return uuid.UUID(int=0)
    return uuid.UUID(str(value))


def _inet(width: int) -> Converter:
    def convert(value: Any) -> Any:
        if value == "":  # all zero bytes, stripped
            value = b""
        if not isinstance(value, bytes | bytearray):
            return value
        address = ipaddress.ip_address(bytes(value).ljust(width, b"\x00"))
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return f"::ffff:{address.ipv4_mapped}"  # MariaDB prints the IPv4 part dotted
        return str(address)

    return convert


def _json(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    return json.dumps(value, ensure_ascii=False)  # MySQL binary JSON, already parsed


def conversion(col: Column, *, tinyint1_as_bool: bool = True) -> tuple[str, Any] | None:
    """How binlog values of ``col`` become canonical: ``(name, argument)`` (None: as they are).

    The name is one of :data:`CONVERSIONS`; :func:`converter` makes the function, the fast
    rows decoder inlines the common ones.
    """
    t = col.type
    base = base_type(col)
    kind = t.kind
    if kind is Kind.BOOL:
        return None if base == "tinyint" and not tinyint1_as_bool else ("bool", None)
    if base == "bit":
        return ("bits", None)
    if base == "year":
        return ("year", None)
    if kind is Kind.BYTES:
        return ("padded", t.length) if t.fixed and t.length else ("bytes", None)
    if base == "set":
        return ("set", t.native)
    if base in _GEOMETRY:
        return ("geometry", None)
    if kind is Kind.UUID:
        return ("uuid", None)
    if base in ("inet6", "inet4"):
        return ("inet", 16 if base == "inet6" else 4)
    if kind is Kind.JSON:
        return ("json", None)
    if kind is Kind.TIMESTAMP and t.tz:
        return ("timestamp", None)
    if kind is Kind.TIME:
        return ("time", t.precision or 0)
    return None  # DECIMAL comes as Decimal already


CONVERSIONS: dict[str, Callable[[Any], Converter]] = {
    "bool": lambda _: _bool,
    "bits": lambda _: _bits,
    "year": lambda _: _year,
    "padded": _padded,
    "bytes": lambda _: _bytes,
    "set": _set,
    "geometry": lambda _: internal_to_ewkb,
    "uuid": lambda _: _uuid,
    "inet": _inet,
    "json": lambda _: _json,
    "timestamp": lambda _: _timestamp,
    "time": _time,
}
"""Conversion name -> factory of the converter (its argument: the one :func:`conversion` gives)."""


def converter(col: Column, *, tinyint1_as_bool: bool = True) -> Converter | None:
    """The conversion for ``col`` (``None``: binlog values are canonical already)."""
    how = conversion(col, tinyint1_as_bool=tinyint1_as_bool)
    return None if how is None else CONVERSIONS[how[0]](how[1])

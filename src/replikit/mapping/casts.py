"""Target types of mapped columns: parsing a type name, which changes are possible, casting.

A type is given as a portable :class:`~replikit.schema.types.Type` or by name: the DMS names
(``int1``..``int8``, ``uint1``..``uint8``, ``numeric(p,s)``, ``real4``, ``real8``,
``string(n)``, ``wstring(n)``, ``date``, ``time``, ``datetime(p)``, ``boolean``, ``bytes(n)``,
``blob``, ``clob``, ``nclob``) and a few portable ones (``text``, ``decimal(p,s)``,
``timestamp(p)``, ``timestamptz(p)``, ``uuid``, ``json``, ``bool``, ``int``).

>>> parse_type("numeric(10,2)").describe(), parse_type("string(64)").describe()
('decimal(10,2)', 'string(64)')
>>> caster(parse_type("int4"), parse_type("string(3)"), "t.c")(42)
'42'
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from replikit.errors import ConfigError
from replikit.schema.types import Kind, Type

__all__ = ["can_change", "caster", "parse_type"]

_SPEC = re.compile(r"\s*([a-z0-9_ ]+?)\s*(?:\(\s*([0-9]+)\s*(?:,\s*([0-9]+)\s*)?\))?\s*", re.I)
_INTS = {"int1": 8, "int2": 16, "int4": 32, "int8": 64, "smallint": 16, "integer": 32,
         "bigint": 64, "int": 64}  # fmt: skip


def parse_type(spec: Type | str, where: str = "type") -> Type:
    """A portable type from ``spec`` (see the module docs); ``ConfigError`` for others."""
    if isinstance(spec, Type):
        return spec
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise ConfigError(f"{where}: cannot read type {spec!r} (e.g. int8, string(64))")
    name = m.group(1).lower()
    a = int(m.group(2)) if m.group(2) else None
    b = int(m.group(3)) if m.group(3) else None
    t = _named(name, a, b)
    if t is None:
        raise ConfigError(
            f"{where}: unknown type {spec!r}; use a DMS type (int1-int8, uint1-uint8, "
            "numeric(p,s), real4, real8, string(n), wstring(n), date, time, datetime(p), "
            "boolean, bytes(n), blob, clob) or text, decimal(p,s), timestamp(p), uuid, json"
        )
    return t


def _named(name: str, a: int | None, b: int | None) -> Type | None:
    if name in _INTS:
        return Type.int_(_INTS[name])
    if name in ("uint1", "uint2", "uint4", "uint8"):
        return Type.int_(8 * int(name[-1]), unsigned=True)
    if name in ("numeric", "decimal"):
        return Type.decimal(a, b if a is not None else None)
    if name in ("real4", "float4", "real"):
        return Type.float_(32)
    if name in ("real8", "float8", "double", "float"):
        return Type.float_(64)
    if name in ("string", "wstring", "varchar"):
        return Type.string(a) if a is not None else Type.text()
    if name in ("text", "clob", "nclob"):
        return Type.text()
    if name in ("bytes", "blob"):
        return Type.bytes_(a if name == "bytes" else None)
    if name == "date":
        return Type.date()
    if name == "time":
        return Type.time(a)
    if name in ("datetime", "timestamp"):
        return Type.timestamp(a)
    if name == "timestamptz":
        return Type.timestamp(a, tz=True)
    if name in ("boolean", "bool"):
        return Type.bool_()
    if name == "uuid":
        return Type.uuid()
    if name == "json":
        return Type.json()
    return None


_TEXTS = frozenset({Kind.STRING, Kind.TEXT, Kind.ENUM})
_NUMBERS = frozenset({Kind.INT, Kind.DECIMAL, Kind.FLOAT})
#: target kind -> source kinds whose values can become it (value by value, checked)
_FROM: dict[Kind, frozenset[Kind]] = {
    Kind.STRING: frozenset(Kind) - {Kind.ARRAY, Kind.OTHER},
    Kind.TEXT: frozenset(Kind) - {Kind.ARRAY, Kind.OTHER},
    Kind.INT: _NUMBERS | _TEXTS | {Kind.BOOL},
    Kind.DECIMAL: _NUMBERS | _TEXTS,
    Kind.FLOAT: _NUMBERS | _TEXTS,
    Kind.BOOL: _TEXTS | {Kind.BOOL, Kind.INT},
    Kind.DATE: _TEXTS | {Kind.DATE},
    Kind.TIMESTAMP: _TEXTS | {Kind.DATE, Kind.TIMESTAMP},
    Kind.TIME: _TEXTS | {Kind.TIME},
    Kind.UUID: _TEXTS | {Kind.UUID},
    Kind.JSON: _TEXTS | {Kind.JSON},
    Kind.BYTES: _TEXTS | {Kind.BYTES},
}


def can_change(source: Type, target: Type) -> bool:
    """Whether values of ``source`` can be cast to ``target`` at all (each value is still
    checked when it is cast: ``'abc'`` does not become an ``int8``)."""
    return source.kind in _FROM.get(target.kind, frozenset())


def caster(source: Type | None, target: Type, where: str) -> Callable[[Any], Any]:
    """A function casting a canonical value (of ``source``, or any when ``None``) to
    ``target``'s canonical value; a value that does not fit raises ``ValueError`` naming
    ``where`` and the value."""

    fast = _fast(target)

    def cast(value: Any) -> Any:
        if value is None:
            return None
        if fast is not None:
            out = fast(value)
            if out is not _FAIL:
                return out
        try:
            out = _cast(value, target)
        except (ValueError, TypeError, ArithmeticError, InvalidOperation):
            out = _FAIL
        if out is _FAIL:
            raise ValueError(f"{where}: value {_preview(value)} cannot become {target.describe()}")
        return out

    return cast


_FAIL = object()


def _fast(t: Type) -> Callable[[Any], Any] | None:
    """A cast for the common values of ``t``'s kind (``_FAIL``: take the general path)."""
    k = t.kind
    if k is Kind.DECIMAL and t.precision is not None:
        step = Decimal(1).scaleb(-(t.scale or 0))
        limit = Decimal(10) ** (t.precision - (t.scale or 0))

        def decimal(value: Any) -> Any:
            if type(value) is float:  # SQLite arithmetic: round to the scale
                out = Decimal(repr(value)).quantize(step)
            elif type(value) is int:
                out = Decimal(value)
            elif type(value) is Decimal:
                out = value.quantize(step)
                if out != value:
                    return _FAIL
            else:
                return _FAIL
            return out if -limit < out < limit else _FAIL

        return decimal
    if k in (Kind.STRING, Kind.TEXT):
        length = t.length

        def text(value: Any) -> Any:
            if type(value) is not str or (length is not None and len(value) > length):
                return _FAIL
            return value

        return text
    if k is Kind.INT:
        bits = t.bits or 64
        low, high = (0, 2**bits - 1) if t.unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return lambda v: v if type(v) is int and low <= v <= high else _FAIL
    return None


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cast(value: Any, t: Type) -> Any:
    k = t.kind
    if k in (Kind.STRING, Kind.TEXT):
        text = _text(value)
        if t.length is not None and len(text) > t.length:
            return _FAIL
        return text
    if k is Kind.INT:
        if isinstance(value, str):
            value = Decimal(value.strip())
        if isinstance(value, float | Decimal) and value != int(value):
            return _FAIL
        out = int(value)
        bits = t.bits or 64
        low, high = (0, 2**bits - 1) if t.unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return out if low <= out <= high else _FAIL
    if k is Kind.DECIMAL:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
        if t.precision is not None:
            exact = number.quantize(Decimal(1).scaleb(-(t.scale or 0)))
            # a binary float (SQLite arithmetic) rounds to the scale; an exact value must fit
            rounded = isinstance(value, float) or exact == number
            if not rounded or len(exact.as_tuple().digits) > t.precision:
                return _FAIL  # rounding would change the value, or it is too large
            return exact
        return number
    if k is Kind.FLOAT:
        return float(value)
    if k is Kind.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        text = str(value).strip().lower()
        if text in ("1", "true", "t", "yes", "y"):
            return True
        if text in ("0", "false", "f", "no", "n"):
            return False
        return _FAIL
    if k is Kind.DATE:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        return date.fromisoformat(str(value).strip().replace(":", "-", 2))
    if k is Kind.TIMESTAMP:
        if isinstance(value, datetime):
            stamp = value
        elif isinstance(value, date):
            stamp = datetime(value.year, value.month, value.day)
        else:
            text = str(value).strip()
            stamp = datetime.fromisoformat(text[:10].replace(":", "-") + text[10:])
        if t.tz and stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        if not t.tz and stamp.tzinfo is not None:
            return stamp.astimezone(UTC).replace(tzinfo=None)
        return stamp
    if k is Kind.TIME:
        return value if isinstance(value, time) else time.fromisoformat(str(value).strip())
    if k is Kind.UUID:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    if k is Kind.JSON:
        return json.loads(value) if isinstance(value, str) else value
    if k is Kind.BYTES:
        out_b = value.encode() if isinstance(value, str) else bytes(value)
        return out_b if t.length is None or len(out_b) <= t.length else _FAIL
    return _FAIL

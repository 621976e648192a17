"""The text form of a canonical value, for columns whose target type is overridden to text.

Readers deliver such columns as the source database's own text form (see
:attr:`replikit.pipeline.contracts.Unit.as_text`), so ``24:00:00``, ``infinity`` and
``2000-01-01 BC`` arrive exactly as the source prints them. :func:`text_form_for` is the
fallback for values that still come as canonical Python values (change data capture, readers
that ignore ``as_text``): ``str`` passes unchanged (values Python cannot hold already are the
source's text); for a PostgreSQL source everything else is printed as PostgreSQL prints it
(``DateStyle=ISO``, ``TimeZone=UTC``, shortest exact floats), so full load and CDC agree; for
other sources, a plain ISO / decimal spelling.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, localcontext
from typing import Any

from replikit.schema.types import Kind, Type

__all__ = ["text_form", "text_form_for"]

_F32 = struct.Struct("<f")
_EXACT = Context(prec=1200)  # every binary64 value (and midpoint) as an exact decimal


def text_form(value: Any) -> str:
    """``value`` (a canonical value, see :mod:`replikit.schema.types`) as plain text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    if isinstance(value, float):
        return _special(value) or repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list):
        return json.dumps(value, default=text_form, ensure_ascii=False)
    return str(value)


def text_form_for(source: Type, source_dialect: str) -> Callable[[Any], str]:
    """The text writer for a column of ``source`` type read from ``source_dialect``."""
    if source_dialect != "postgresql":
        return text_form
    if source.kind is Kind.FLOAT:
        bits = source.bits or 64
        return lambda v: v if isinstance(v, str) else _pg_float(v, bits)
    return _pg_text


def _special(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return None


def _pg_text(value: Any) -> str:
    if isinstance(value, datetime):
        text = f"{value.date().isoformat()} {_pg_clock(value.time())}"
        return text + (_pg_offset(value) if value.tzinfo is not None else "")
    if isinstance(value, time):
        return _pg_clock(value) + (_pg_offset(value) if value.tzinfo is not None else "")
    return text_form(value)


def _pg_clock(value: time) -> str:
    text = f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    return text + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")


def _pg_offset(value: datetime | time) -> str:
    delta = value.utcoffset()
    seconds = int(delta.total_seconds()) if delta is not None else 0
    sign = "+" if seconds >= 0 else "-"
    h, rest = divmod(abs(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h:02d}" + (f":{m:02d}" if m or s else "") + (f":{s:02d}" if s else "")


def _f32(text: str) -> float:
    try:
        return float(_F32.unpack(_F32.pack(float(text)))[0])
    except OverflowError:
        return math.inf


def _f32_next(value: float, up: bool) -> float:
    (bits,) = struct.unpack("<i", _F32.pack(value))
    step = 1 if (value >= 0) == up else -1
    return float(_F32.unpack(struct.pack("<i", bits + step))[0])


def _shortest(value: float, bits: int) -> str:
    """The shortest digits that read back as ``value``, strictly inside its rounding interval
    (PostgreSQL's Ryu never picks a string on the boundary; Python's repr may)."""
    back: Callable[[str], float] = _f32 if bits <= 32 else float
    if bits <= 32:
        lo, hi = _f32_next(value, False), _f32_next(value, True)
    else:
        lo, hi = math.nextafter(value, -math.inf), math.nextafter(value, math.inf)
    exact = Decimal(value)
    with localcontext(_EXACT):
        bounds = ((exact + Decimal(lo)) / 2, (exact + Decimal(hi)) / 2)
    for digits in range(1, 18):
        fits = [
            text
            for text in _candidates(exact, digits)
            if back(text) == value and Decimal(text) not in bounds
        ]
        if fits:  # the closest of the fitting ones
            return min(fits, key=lambda t: abs(Decimal(t) - exact))
    return repr(value)


def _candidates(exact: Decimal, digits: int) -> set[str]:
    """``exact`` rounded down and up to ``digits`` significant digits."""
    exponent = exact.adjusted() - digits + 1
    quantum = Decimal(1).scaleb(exponent)
    with localcontext(_EXACT):
        return {
            f"{exact.quantize(quantum, rounding=mode):e}" for mode in (ROUND_FLOOR, ROUND_CEILING)
        }


def _pg_float(value: float, bits: int) -> str:
    """PostgreSQL's float text (12+): the shortest exact digits, exponent form outside
    1e-4 .. 1e15 (1e6 for real)."""
    special = _special(value)
    if special is not None:
        return special
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, exponent = _digits(_shortest(value, bits))
    sign = "-" if value < 0 else ""
    if exponent < -4 or exponent >= (6 if bits <= 32 else 15):
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    whole = digits[: exponent + 1].ljust(exponent + 1, "0")
    fraction = digits[exponent + 1 :]
    return sign + whole + (f".{fraction}" if fraction else "")


def _digits(text: str) -> tuple[str, int]:
    """Significant digits and decimal exponent (``d.ddd x 10^e``) of a float's repr."""
    _, digits, exp = Decimal(text).as_tuple()
    assert isinstance(exp, int)
    number = "".join(map(str, digits)).rstrip("0") or "0"
    return number, len(digits) - 1 + exp

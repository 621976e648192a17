"""Binary loaders for values Python cannot hold, and the per-column read projection.

psycopg raises on ``infinity`` dates, BC dates, years after 9999 and ``24:00:00``. The loaders
here run psycopg's fast loader and, only when it refuses, rebuild PostgreSQL's own ISO text
form from the binary value (``DateStyle=ISO``, ``TimeZone=UTC``), so such values come out as
``str`` -- never clamped, never an exception.
"""

from __future__ import annotations

import struct
from typing import Any

from replikit.endpoints.base import require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402
from psycopg.abc import AdaptContext  # noqa: E402
from psycopg.adapt import Loader  # noqa: E402
from psycopg.pq import Format  # noqa: E402

from replikit.schema.types import Kind, Type  # noqa: E402

__all__ = ["load_type", "register_loaders"]

_PG_EPOCH_JDATE = 2451545  # 2000-01-01 as a Julian day
_DAY_US = 86_400_000_000
_INT32_MAX, _INT32_MIN = 2**31 - 1, -(2**31)
_INT64_MAX, _INT64_MIN = 2**63 - 1, -(2**63)


def _j2date(jd: int) -> tuple[int, int, int]:
    """PostgreSQL's ``j2date``: Julian day -> (year, month, day); year <= 0 is BC."""
    julian = jd + 32044
    quad = julian // 146097
    extra = (julian - quad * 146097) * 4 + 3
    julian += 60 + quad * 3 + extra // 146097
    quad = julian // 1461
    julian -= quad * 1461
    y = julian * 4 // 1461
    julian = ((julian + 305) % 365 if y != 0 else (julian + 306) % 366) + 123
    y += quad * 4
    quad = julian * 2141 // 65536
    return y - 4800, (quad + 10) % 12 + 1, julian - 7834 * quad // 256


def _date_parts(days: int) -> tuple[str, str]:
    """(``YYYY-MM-DD``, era suffix) for days since 2000-01-01."""
    y, m, d = _j2date(days + _PG_EPOCH_JDATE)
    if y <= 0:
        return f"{1 - y:04d}-{m:02d}-{d:02d}", " BC"
    return f"{y:04d}-{m:02d}-{d:02d}", ""


def _clock(us: int) -> str:
    """``HH:MM:SS[.ffffff]`` (trailing zeros trimmed) for microseconds since midnight."""
    secs, frac = divmod(us, 1_000_000)
    text = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    return text + (f".{frac:06d}".rstrip("0") if frac else "")


def _offset(east_seconds: int) -> str:
    sign = "+" if east_seconds >= 0 else "-"
    h, rem = divmod(abs(east_seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{sign}{h:02d}" + (f":{m:02d}" if m or s else "") + (f":{s:02d}" if s else "")


def date_text(data: bytes) -> str:
    """PostgreSQL's text form of a binary date."""
    (days,) = struct.unpack("!i", data)
    if days == _INT32_MAX:
        return "infinity"
    if days == _INT32_MIN:
        return "-infinity"
    ymd, era = _date_parts(days)
    return ymd + era


def timestamp_text(data: bytes, tz: bool) -> str:
    """PostgreSQL's text form of a binary timestamp (UTC for ``timestamptz``)."""
    (us,) = struct.unpack("!q", data)
    if us == _INT64_MAX:
        return "infinity"
    if us == _INT64_MIN:
        return "-infinity"
    days, rest = divmod(us, _DAY_US)
    ymd, era = _date_parts(days)
    return f"{ymd} {_clock(rest)}{'+00' if tz else ''}{era}"


def time_text(data: bytes, tz: bool) -> str:
    """PostgreSQL's text form of a binary time (``24:00:00`` is the case that needs it)."""
    (us,) = struct.unpack("!q", data[:8])
    if not tz:
        return _clock(us)
    (west,) = struct.unpack("!i", data[8:12])
    return _clock(us) + _offset(-west)


class _Fallback(Loader):
    """Run psycopg's own loader; on refusal return PostgreSQL's text form of the value."""

    format = Format.BINARY
    kind = ""

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        fast = psycopg.adapters.get_loader(oid, Format.BINARY)
        assert fast is not None
        self._fast = fast(oid, context)

    def load(self, data: Any) -> Any:
        try:
            return self._fast.load(data)
        except psycopg.DataError:
            raw = bytes(data)
            if self.kind == "date":
                return date_text(raw)
            if self.kind.startswith("timestamp"):
                return timestamp_text(raw, self.kind.endswith("tz"))
            return time_text(raw, self.kind.endswith("tz"))


def _fallback(kind: str) -> type[_Fallback]:
    return type(f"{kind.title()}FallbackLoader", (_Fallback,), {"kind": kind})


_LOADERS = {k: _fallback(k) for k in ("date", "timestamp", "timestamptz", "time", "timetz")}


def register_loaders(context: psycopg.Connection[Any]) -> None:
    """Install the fallback loaders on a connection (arrays use them too)."""
    for name, loader in _LOADERS.items():
        context.adapters.register_loader(name, loader)


def load_type(t: Type) -> str:
    """The PostgreSQL type a column is cast to for reading, so its values are canonical."""
    if t.kind is Kind.ARRAY:
        assert t.item is not None
        return load_type(t.item) + "[]"
    if t.kind is Kind.INT:
        if t.unsigned:
            return "oid" if t.native == "oid" else "int8"
        return {8: "int2", 16: "int2", 32: "int4"}.get(t.bits or 64, "int8")
    if t.kind is Kind.FLOAT:
        return "float4" if t.bits == 32 else "float8"
    if t.kind is Kind.STRING and t.fixed and t.native != '"char"':
        return "bpchar"
    if t.kind in (Kind.TIME, Kind.TIMESTAMP):
        return t.kind.value + ("tz" if t.tz else "")
    return _SIMPLE_LOAD.get(t.kind, "text")


_SIMPLE_LOAD = {
    Kind.BOOL: "bool",
    Kind.DECIMAL: "numeric",
    Kind.BYTES: "bytea",
    Kind.DATE: "date",
    Kind.UUID: "uuid",
}

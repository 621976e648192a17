"""Value forms DuckDB and the canonical Python values disagree on (no driver import).

* intervals: canonical ISO 8601 durations (``P1Y2M3DT4H5M6.5S``, signed parts as PostgreSQL's
  ``iso_8601`` style writes them) <-> DuckDB's text (``1 year 2 months 3 days 04:05:06.5``);
  both hold months, days and microseconds separately, so the conversion is exact;
* dates and timestamps Python cannot hold: DuckDB prints BC as ``0044-03-15 (BC)``, replikit's
  canonical text (PostgreSQL's) is ``0044-03-15 BC``; ``infinity`` is the same in both.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

__all__ = [
    "BadValue",
    "duckdb_interval",
    "iso_interval",
    "nanoseconds_in",
    "temporal_in",
    "temporal_out",
]

_ISO = re.compile(
    r"^P(?:(?P<y>[+-]?\d+)Y)?(?:(?P<mo>[+-]?\d+)M)?(?:(?P<w>[+-]?\d+)W)?(?:(?P<d>[+-]?\d+)D)?"
    r"(?:T(?:(?P<h>[+-]?\d+)H)?(?:(?P<mi>[+-]?\d+)M)?(?:(?P<s>[+-]?\d+(?:[.,]\d+)?)S)?)?$"
)
_DUCK = re.compile(
    r"(?P<n>-?\d+) (?P<unit>year|years|month|months|day|days)|"
    r"(?P<clock>-?\d+:\d{2}:\d{2}(?:\.\d+)?)"
)
_MICROS = Decimal(1_000_000)


class BadValue(ValueError):
    """A value that has no form in the target column."""


def _micros(seconds: str) -> int:
    value = Decimal(seconds.replace(",", "."))
    micros = value * _MICROS
    if micros != micros.to_integral_value():
        raise BadValue(f"interval seconds {seconds} have digits below 1 microsecond")
    return int(micros)


def duckdb_interval(value: Any) -> str:
    """A canonical ISO 8601 duration as DuckDB interval text (months, days, microseconds)."""
    text = str(value).strip()
    m = _ISO.match(text)
    if m is None or text in ("P", "PT") or text.endswith("T"):
        raise BadValue(f"{text!r} is not an ISO 8601 duration")
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    months = int(g.get("y", 0)) * 12 + int(g.get("mo", 0))
    days = int(g.get("w", 0)) * 7 + int(g.get("d", 0))
    micros = (int(g.get("h", 0)) * 3600 + int(g.get("mi", 0)) * 60) * 1_000_000
    micros += _micros(g.get("s", "0"))
    return f"{months} months {days} days {micros} microseconds"


def iso_interval(text: str) -> str:
    """DuckDB's interval text as an ISO 8601 duration (PostgreSQL ``iso_8601`` style)."""
    months = days = micros = 0
    for m in _DUCK.finditer(text):
        if m.group("clock"):
            clock = m.group("clock")
            sign = -1 if clock.startswith("-") else 1
            h, mi, s = clock.lstrip("-").split(":")
            micros = sign * ((int(h) * 3600 + int(mi) * 60) * 1_000_000 + _micros(s))
        elif m.group("unit").startswith("year"):
            months += int(m.group("n")) * 12
        elif m.group("unit").startswith("month"):
            months += int(m.group("n"))
        else:
            days = int(m.group("n"))
    return _iso(months, days, micros)


def _iso(months: int, days: int, micros: int) -> str:
    years, rest = int(months / 12), months - int(months / 12) * 12
    parts = "P"
    if years:
        parts += f"{years}Y"
    if rest:
        parts += f"{rest}M"
    if days:
        parts += f"{days}D"
    if micros:
        sign = "-" if micros < 0 else ""
        whole, frac = divmod(abs(micros), 1_000_000)
        h, remainder = divmod(whole, 3600)
        mi, s = divmod(remainder, 60)
        clock = "T"
        if h:
            clock += f"{sign}{h}H"
        if mi:
            clock += f"{sign}{mi}M"
        if s or frac:
            seconds = f"{s}.{frac:06d}".rstrip("0") if frac else str(s)
            clock += f"{sign}{seconds}S"
        parts += clock
    return parts if parts != "P" else "PT0S"


def temporal_out(value: Any) -> Any:
    """A canonical date/timestamp for DuckDB: objects as they are, text with DuckDB's BC."""
    if isinstance(value, str) and value.endswith(" BC"):
        head = value[: -len(" BC")]
        date_part, sep, rest = head.partition(" ")
        return f"{date_part} (BC)" + (f" {rest}" if sep else "")
    return value


def temporal_in(value: Any) -> Any:
    """A DuckDB date/timestamp as its canonical value (BC text in PostgreSQL's spelling)."""
    if isinstance(value, str) and "(BC)" in value:
        return " ".join(value.replace("(BC)", "").split()) + " BC"
    return value


def nanoseconds_in(text: str) -> Any:
    """A TIMESTAMP_NS read as text: a ``datetime`` when it has no digits below 1 us, else
    the text (Python cannot hold nanoseconds)."""
    head, dot, frac = text.partition(".")
    if dot and frac.rstrip("0")[6:]:
        return temporal_in(text)
    try:
        return datetime.fromisoformat(head + (f".{frac[:6]}" if dot else ""))
    except ValueError:
        return temporal_in(text)


def text_of(value: Any) -> str:
    """The text DuckDB casts back to ``value`` (the fallback when Arrow cannot carry it)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat(" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(temporal_out(value))

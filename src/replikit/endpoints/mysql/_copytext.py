"""MariaDB/MySQL builds PostgreSQL COPY text lines itself (sans-IO: plan in, SQL out).

For a table bound for PostgreSQL whose every column has a text form PostgreSQL parses to the
value the typed path would write, the server selects each row as one line of ``COPY ... FROM
STDIN`` text (``CONCAT_WS`` of tab-separated fields, ``\\N`` for NULL): the client only joins
the lines, with no Python value per field. :func:`field_for` decides per column how it passes:

``as-is``
    the server's text is already PostgreSQL's input form and holds nothing COPY escapes:
    integers (YEAR and BIT as numbers), decimals, doubles (the very text the typed path
    parses; FLOAT as its exact double), times, UUIDs.
``escaped``
    strings, ENUM, SET, JSON and text overrides: backslash, tab, newline and carriage return
    escaped for COPY (``REPLACE``, always case-sensitive), converted to utf8mb4 first unless
    the column already is (a MariaDB JSON column's character set is not in the reflected
    schema: the reader asks the server, :attr:`LineSelect.charset_unknown`).
``bool``
    ``TINYINT(1)`` / ``BIT(1)`` as ``t`` / ``f``; any other value is *marked*.
``date``
    DATE, DATETIME and TIMESTAMP (the latter with ``+00``: the session reads it in UTC);
    a zero or invalid date (``0000-00-00``, ``2020-02-31``, year 0: what date arithmetic
    refuses) is *marked*.
``hex``
    binary strings as bytea hex input (``\\x`` and ``HEX()``).

A *marked* value is written as the single byte ``0xFF``, which UTF-8 text, digits and hex
never hold, so the client finds one with a ``memchr`` over a whole chunk: zero dates in a
nullable column under ``zero_dates="null"`` are counted and loaded as NULL; anything else is
refused, and the unit is redone through the typed path, which explains the refusal with
table, column and key. Columns that fit none of these (geometry, a type override the text
would not parse to the same value, a plan adapter) keep the whole table on the typed path:
:func:`line_select` returns ``None``.

No silent change: a field whose expression is NULL for a non-NULL value (a result longer than
``max_allowed_packet``) is left out by ``CONCAT_WS``, so COPY refuses the line, and a line
that is NULL itself is refused by the reader; both redo the unit through the typed path.
Literals are written as hex with a charset introducer: they mean the same whatever the
session's ``NO_BACKSLASH_ESCAPES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from replikit.endpoints.mysql._dialect import DIALECT, GEOMETRY_TYPES
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.types import Kind

__all__ = ["MARK", "TEXT_FORMAT", "Field", "LineSelect", "field_for", "line_select"]

#: the format both ends agree on (a PostgreSQL writer's ``text_format``)
TEXT_FORMAT = "postgresql-text"
#: what a marked value is written as (no UTF-8 text holds this byte)
MARK = b"\xff"


def _lit(text: str) -> str:
    """A utf8mb4 string literal that no ``sql_mode`` reads differently."""
    return f"_utf8mb4 X'{text.encode().hex().upper()}'"


_NULL = _lit("\\N")
# a binary of its own derivation: a literal would be converted to a column's utf8mb4 ('?')
_MARK = "CAST(X'FF' AS BINARY)"
_ESCAPES = (("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
# what each source kind may become when its text is passed: the typed path writes the same
_TARGETS: dict[Kind, frozenset[Kind]] = {
    Kind.INT: frozenset({Kind.INT, Kind.DECIMAL}),
    Kind.DECIMAL: frozenset({Kind.DECIMAL}),
    Kind.FLOAT: frozenset({Kind.FLOAT}),
    Kind.BOOL: frozenset({Kind.BOOL}),
    Kind.STRING: frozenset({Kind.STRING, Kind.TEXT}),
    Kind.TEXT: frozenset({Kind.STRING, Kind.TEXT}),
    Kind.ENUM: frozenset({Kind.ENUM, Kind.STRING, Kind.TEXT}),
    Kind.JSON: frozenset({Kind.JSON, Kind.STRING, Kind.TEXT}),
    Kind.OTHER: frozenset({Kind.STRING, Kind.TEXT}),
    Kind.UUID: frozenset({Kind.UUID}),
    Kind.BYTES: frozenset({Kind.BYTES}),
    Kind.DATE: frozenset({Kind.DATE}),
    Kind.TIMESTAMP: frozenset({Kind.TIMESTAMP}),
    Kind.TIME: frozenset({Kind.TIME}),
}


@dataclass(frozen=True, slots=True)
class Field:
    """One column's field of the line: ``value`` is SQL yielding its COPY text (never NULL
    for a value that has one), or :data:`MARK` for a value the client must look at."""

    column: str
    source: str
    how: str
    value: str


@dataclass(frozen=True, slots=True)
class LineSelect:
    """The SELECT list of a table's lines: ``columns`` the target columns in line order;
    ``marks``: whether a field may be :data:`MARK`."""

    columns: tuple[str, ...]
    expressions: str
    fields: tuple[Field, ...]
    marks: bool
    #: source columns converted to utf8mb4 because their character set is unknown (MariaDB
    #: JSON): when the server says they are utf8mb4, ``line_select(..., utf8mb4=...)`` saves
    #: the conversion
    charset_unknown: tuple[str, ...] = ()


def _base(native: str) -> str:
    return native.lower().split("(")[0].split()[0] if native else ""


def _escaped(expr: str) -> str:
    for char, escape in _ESCAPES:
        expr = f"REPLACE({expr}, {_lit(char)}, {_lit(escape)})"
    return expr


def _utf8(q: str, collation: str | None) -> str:
    return q if (collation or "").startswith("utf8mb4") else f"CONVERT({q} USING utf8mb4)"


def field_for(
    cp: ColumnPlan, *, as_text: bool = False, tinyint1_as_bool: bool = True, utf8mb4: bool = False
) -> Field | None:
    """How ``cp``'s values pass as COPY text (see the module docstring); ``None``: they need
    the typed path."""
    source, target = cp.source, cp.target
    kind, base = source.type.kind, _base(source.type.native)
    if target.adapt is not None or base in GEOMETRY_TYPES:
        return None
    q = DIALECT.quote(source.name)
    if as_text:
        if target.type.kind not in (Kind.STRING, Kind.TEXT):
            return None
        text = f"CAST({q} + 0 AS CHAR)" if base == "bit" else _utf8(f"CAST({q} AS CHAR)", None)
        return _plain(cp, "escaped", _escaped(text))
    if target.type.kind not in _TARGETS.get(kind, frozenset()):
        return None
    if kind is Kind.TIMESTAMP and source.type.tz != target.type.tz:
        return None
    return _by_kind(cp, q, base, tinyint1_as_bool, utf8mb4)


def _by_kind(
    cp: ColumnPlan, q: str, base: str, tinyint1_as_bool: bool, utf8mb4: bool = False
) -> Field | None:
    kind = cp.source.type.kind
    if kind is Kind.BOOL:
        if base == "tinyint" and not tinyint1_as_bool:
            return None
        number = f"{q} + 0" if base == "bit" else q
        value = f"CASE {number} WHEN 0 THEN {_lit('f')} WHEN 1 THEN {_lit('t')} ELSE {_MARK} END"
        return Field(cp.name, cp.source.name, "bool", _wrap(cp, q, value))
    if kind in (Kind.DATE, Kind.TIMESTAMP):
        # date arithmetic is NULL exactly for the dates no other database has; its text is
        # the column's own (same type and fraction digits, the session's UTC for TIMESTAMP)
        valid = f"{q} + INTERVAL 0 DAY"
        text = f"CONCAT({valid}, {_lit('+00')})" if cp.source.type.tz else valid
        bad = f"IF({q} IS NULL, {_NULL}, {_MARK})" if cp.source.nullable else _MARK
        return Field(cp.name, cp.source.name, "date", f"IFNULL({text}, {bad})")
    if kind is Kind.BYTES:
        return _plain(cp, "hex", f"CONCAT({_lit(chr(92) * 2 + 'x')}, HEX({q}))")
    if kind is Kind.OTHER:
        return _plain(cp, "escaped", _escaped(_utf8(f"CAST({q} AS CHAR)", None)))
    if kind in (Kind.STRING, Kind.TEXT, Kind.ENUM, Kind.JSON):
        collation = "utf8mb4" if utf8mb4 else cp.source.collation
        return _plain(cp, "escaped", _escaped(_utf8(q, collation)))
    if kind is Kind.FLOAT and (cp.source.type.bits or 64) <= 32:
        return _plain(cp, "as-is", f"CAST({q} AS DOUBLE)")
    if kind is Kind.INT and base == "bit":
        return _plain(cp, "as-is", f"{q} + 0")
    if kind in (Kind.UUID, Kind.TIME):
        return _plain(cp, "as-is", f"CAST({q} AS CHAR)")
    return _plain(cp, "as-is", q)


def _wrap(cp: ColumnPlan, q: str, value: str) -> str:
    return f"IF({q} IS NULL, {_NULL}, {value})" if cp.source.nullable else value


def _plain(cp: ColumnPlan, how: str, value: str) -> Field:
    return Field(cp.name, cp.source.name, how, _wrap(cp, DIALECT.quote(cp.source.name), value))


def line_select(
    plan: TablePlan,
    *,
    as_text: Sequence[str] = (),
    tinyint1_as_bool: bool = True,
    utf8mb4: Sequence[str] = (),
) -> LineSelect | None:
    """The SELECT list of ``plan``'s COPY text lines, or ``None`` when a column needs the
    typed path. Columns the target computes are left out (never written). ``utf8mb4``:
    source columns the server says are utf8mb4 (see :attr:`LineSelect.charset_unknown`)."""
    fields = []
    unknown = []
    for cp in plan.columns:
        if cp.generated is not None:
            continue
        name = cp.source.name
        f = field_for(
            cp,
            as_text=name in as_text,
            tinyint1_as_bool=tinyint1_as_bool,
            utf8mb4=name in utf8mb4,
        )
        if f is None:
            return None
        if (
            f.how == "escaped"
            and name not in as_text
            and name not in utf8mb4
            and cp.source.type.kind is Kind.JSON
            and not cp.source.collation
        ):
            unknown.append(name)
        fields.append(f)
    if not fields:
        return None
    line = f"CONVERT(CONCAT_WS({_lit(chr(9))}, {', '.join(f.value for f in fields)}) USING binary)"
    marks = any(f.how in ("bool", "date") for f in fields)
    return LineSelect(tuple(f.column for f in fields), line, tuple(fields), marks, tuple(unknown))

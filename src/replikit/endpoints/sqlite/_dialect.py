"""The SQLite dialect: quoting, declared type <-> portable type rules, default translation.

SQLite stores values dynamically; a declared type only gives a column an *affinity*, chosen by
substring (https://sqlite.org/datatype3.html#determination_of_column_affinity): ``INT`` ->
INTEGER; ``CHAR``/``CLOB``/``TEXT`` -> TEXT; ``BLOB`` or nothing -> BLOB; ``REAL``/``FLOA``/
``DOUB`` -> REAL; anything else -> NUMERIC, which turns numeric-looking text into numbers.
The rules below choose declared spellings whose affinity cannot alter a value, and that
:meth:`SqliteDialect.parse_type` maps back to the same portable type:

=====================  ======================  ========  ======================================
portable               declared type           fidelity  stored as
=====================  ======================  ========  ======================================
bool                   BOOLEAN                 exact     0 / 1
int8/16/32/64          TINYINT/SMALLINT/INT4/  exact     INTEGER
                       INTEGER
uint8/16/32            ... UNSIGNED            exact     INTEGER
uint64                 UNSIGNED BIG TEXT       exact     decimal text (> 2^63-1 fits no INTEGER)
decimal(p<=15,s)       NUMERIC(p,s)            exact     REAL/INTEGER (read back at scale s);
                                                         NaN/Infinity as text
decimal, p>15          DECIMAL TEXT[(p,s)]     exact     the exact digits as text
float32 / float64      FLOAT4 / REAL           exact     REAL; NaN and -0.0 as text
string(n) / text       VARCHAR(n)/CHAR(n)/TEXT exact     TEXT
bytes                  BLOB                    exact     BLOB
date                   DATE                    exact     'YYYY-MM-DD' (or source text)
time                   TIME / TIMETZ           exact     'HH:MM:SS[.ffffff][+HH:MM]'
timestamp              DATETIME                exact     'YYYY-MM-DD HH:MM:SS[.ffffff]'
timestamp with tz      TIMESTAMPTZ             lossy     ISO text with offset (no zone name)
interval               INTERVAL                lossy     ISO 8601 duration text
json / jsonb           JSON TEXT / JSONB TEXT  exact     the JSON text untouched
uuid                   UUID TEXT               exact     36-character text
enum                   TEXT + CHECK (IN ...)   exact     TEXT
array                  JSON TEXT               lossy     JSON text
other                  TEXT                    lossy     the source's text form
=====================  ======================  ========  ======================================
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from replikit.endpoints.sqlite import _values as v
from replikit.errors import ConfigError
from replikit.schema.convert import Fidelity, TargetType
from replikit.schema.limits import Limits
from replikit.schema.model import Column
from replikit.schema.names import IdentifierRules, NamedByRules, ascii_fold
from replikit.schema.types import Kind, Type

__all__ = ["DIALECT", "IDENTIFIERS", "SqliteDialect", "affinity"]

Adapter = Callable[[Any], Any]

_ARGS = re.compile(r"\(\s*([+-]?\d+)\s*(?:,\s*([+-]?\d+)\s*)?\)\s*$")
_SAFE_TYPE = re.compile(r"[\w \t(),.+-]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_STRING = re.compile(r"'(?:[^']|'')*'")
_CAST = re.compile(r"^(.*?)\s*::\s*[\w\s\[\]\"().,]+$", re.DOTALL)
_NOW = {
    "CURRENT_TIMESTAMP",
    "NOW()",
    "LOCALTIMESTAMP",
    "TRANSACTION_TIMESTAMP()",
    "STATEMENT_TIMESTAMP()",
    "CLOCK_TIMESTAMP()",
    "SYSDATE()",
    "UTC_TIMESTAMP()",
}
_NOW_TZ = "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')"


def affinity(declared: str) -> str:
    """SQLite's affinity for a declared type: INTEGER, TEXT, BLOB, REAL or NUMERIC."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if "CHAR" in upper or "CLOB" in upper or "TEXT" in upper:
        return "TEXT"
    if "BLOB" in upper or not upper.strip():
        return "BLOB"
    if "REAL" in upper or "FLOA" in upper or "DOUB" in upper:
        return "REAL"
    return "NUMERIC"


def _split(declared: str) -> tuple[str, int | None, int | None]:
    """``"NUMERIC(10, 2)"`` -> ``("NUMERIC", 10, 2)`` (name upper-cased, spaces collapsed)."""
    text = declared.strip()
    match = _ARGS.search(text)
    first = second = None
    if match:
        first = int(match.group(1))
        second = int(match.group(2)) if match.group(2) is not None else None
        text = text[: match.start()]
    return " ".join(text.upper().split()), first, second


def _int_bits(base: str) -> int:
    words = set(base.replace("_", " ").split())
    if words & {"TINYINT", "INT1"}:
        return 8
    if words & {"SMALLINT", "INT2"}:
        return 16
    if words & {"MEDIUMINT", "INT4"}:
        return 32
    if "INT" in words and "UNSIGNED" in words and "BIG" not in words:
        return 32  # MySQL's INT UNSIGNED
    return 64  # INTEGER, INT, BIGINT...: SQLite integers hold 64 bits


def _parse_named(base: str, p: int | None, s: int | None) -> Type | None:
    """Types recognised by name, before the affinity fallback."""
    if base == "UNSIGNED BIG TEXT":
        return Type.int_(64, unsigned=True)
    if "JSON" in base:
        return Type.json(binary="JSONB" in base)
    if "UUID" in base or "GUID" in base:
        return Type.uuid()
    if base in ("BOOLEAN", "BOOL"):
        return Type.bool_()
    if base.startswith(("DECIMAL", "NUMERIC", "NUMBER")):
        return Type.decimal(p, s if s is not None or p is None else 0)
    if base.startswith(("DATETIME", "TIMESTAMP")):
        tz = "TZ" in base or "ZONE" in base or "OFFSET" in base
        return Type.timestamp(p, tz=tz)
    if base == "DATE":
        return Type.date()
    if base.startswith("TIME"):
        return Type.time(p, tz="TZ" in base or "ZONE" in base)
    if base.startswith("INTERVAL"):
        return Type.interval()
    return None


def _parse_by_affinity(base: str, aff: str, p: int | None) -> Type:
    if aff == "INTEGER":
        return Type.int_(_int_bits(base), unsigned="UNSIGNED" in base.split())
    if aff == "TEXT":
        if "CHAR" in base:
            fixed = "VAR" not in base and "VARYING" not in base
            return Type.string(p, fixed=fixed)
        return Type.text()
    if aff == "REAL":
        return Type.float_(32 if base in ("FLOAT4", "REAL4") else 64)
    if aff == "BLOB" and base:
        return Type.bytes_(p)
    return Type.other(base)


def _literal(text: str) -> str:
    if "\x00" in text:
        raise ConfigError(f"SQL literal {v.preview(text)} contains a NUL character")
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class _Rule:
    """One row of the rule table for foreign (non-SQLite) sources."""

    sql: str
    adapt: Adapter | None = None
    fidelity: Fidelity = Fidelity.EXACT
    reason: str | None = None


# SQLite binds NaN as NULL and stores -0.0 as 0 in a REAL column: text markers keep them
_NO_NAN = (
    Fidelity.LOSSY,
    f"NaN and -0.0 have no SQLite REAL form: stored as the text 'NaN' and {v.NEGATIVE_ZERO!r}, "
    "which replikit reads back as floats but other clients read as text",
)
_ISO_DATE = "stored as ISO 8601 text; values Python cannot hold (infinity, BC) as the source's text"
_TZ_REASON = "keeps the instant, not the zone name (stored as ISO 8601 text with offset)"
_INT_SQL = {8: "TINYINT", 16: "SMALLINT", 32: "INT4", 64: "INTEGER"}
_UINT_SQL = {8: "TINYINT UNSIGNED", 16: "SMALLINT UNSIGNED", 32: "INT UNSIGNED"}


def _int_rule(t: Type) -> _Rule:
    bits = t.bits or 64
    if not t.unsigned:
        return _Rule(_INT_SQL.get(bits, "INTEGER"))
    if bits < 64:
        return _Rule(_UINT_SQL.get(bits, "INT UNSIGNED"))
    return _Rule(
        "UNSIGNED BIG TEXT",
        v.int_to_text,
        reason="stored as decimal text: values above 2^63-1 do not fit SQLite INTEGER",
    )


def _decimal_rule(t: Type) -> _Rule:
    p, s = t.precision, t.scale or 0
    if p is not None and p <= 15:
        return _Rule(
            f"NUMERIC({p},{s})",
            v.decimal_to_numeric,
            reason="stored as REAL/INTEGER (<= 15 digits: exact), read back at scale "
            f"{s}; NaN/Infinity stored as text",
        )
    sql = "DECIMAL TEXT" if p is None else f"DECIMAL TEXT({p},{s})"
    return _Rule(
        sql,
        v.decimal_to_text,
        reason="stored as text to keep every digit (SQL comparisons on it are textual)",
    )


def _time_rule(t: Type) -> _Rule:
    size = f"({t.precision})" if t.precision is not None else ""
    if t.kind is Kind.TIME:
        return _Rule(
            ("TIMETZ" if t.tz else "TIME") + size, v.time_out, reason="stored as ISO 8601 text"
        )
    if t.tz:
        return _Rule("TIMESTAMPTZ" + size, v.timestamp_out, Fidelity.LOSSY, _TZ_REASON)
    return _Rule("DATETIME" + size, v.timestamp_out, reason=_ISO_DATE)


def _string_rule(t: Type) -> _Rule:
    if t.length is None:
        return _Rule("CHAR" if t.fixed else "VARCHAR")
    return _Rule(
        f"{'CHAR' if t.fixed else 'VARCHAR'}({t.length})",
        reason="SQLite does not enforce the length",
    )


_RULES: dict[Kind, Callable[[Type], _Rule]] = {
    Kind.BOOL: lambda t: _Rule("BOOLEAN", reason="stored as 0/1"),
    Kind.INT: _int_rule,
    Kind.DECIMAL: _decimal_rule,
    Kind.FLOAT: lambda t: _Rule("FLOAT4" if t.bits == 32 else "REAL", v.float_out, *_NO_NAN),
    Kind.STRING: _string_rule,
    Kind.TEXT: lambda t: _Rule("TEXT"),
    Kind.BYTES: lambda t: _Rule("BLOB"),
    Kind.DATE: lambda t: _Rule("DATE", v.date_out, reason=_ISO_DATE),
    Kind.TIME: _time_rule,
    Kind.TIMESTAMP: _time_rule,
    Kind.INTERVAL: lambda t: _Rule(
        "INTERVAL",
        None,
        Fidelity.LOSSY,
        "stored as ISO 8601 text; interval arithmetic not available",
    ),
    Kind.JSON: lambda t: _Rule(
        "JSONB TEXT" if t.binary else "JSON TEXT", reason="JSON text kept as is (TEXT affinity)"
    ),
    Kind.UUID: lambda t: _Rule("UUID TEXT", v.uuid_out, reason="stored as 36-character text"),
    Kind.ENUM: lambda t: _Rule("TEXT", reason="TEXT with a CHECK (... IN (...)) constraint"),
    Kind.ARRAY: lambda t: _Rule(
        "JSON TEXT", v.array_out, Fidelity.LOSSY, "stored as JSON text; element types not enforced"
    ),
    Kind.OTHER: lambda t: _Rule("TEXT", None, Fidelity.LOSSY, "stored as its text form"),
}


def _same_dialect_adapter(t: Type, aff: str) -> Adapter | None:
    """Adapters for SQLite -> SQLite: canonical values back into the declared type's storage."""
    kind = t.kind
    if kind is Kind.INT:
        return v.int_to_text if aff == "TEXT" else None
    if kind is Kind.DECIMAL:
        return v.decimal_to_text if aff == "TEXT" else v.decimal_to_numeric
    simple: dict[Kind, Adapter] = {
        Kind.FLOAT: v.float_out,
        Kind.DATE: v.date_out,
        Kind.TIME: v.time_out,
        Kind.TIMESTAMP: v.timestamp_out,
        Kind.UUID: v.uuid_out,
    }
    return simple.get(kind)


def _sqlite_problem(name: str, kind: str) -> str | None:
    if kind in ("table", "index") and ascii_fold(name).startswith("sqlite_"):
        return "SQLite reserves names that start with sqlite_ for itself"
    return None


#: No length limit; ASCII letters compare without case, other characters exactly; tables,
#: indexes (and views, triggers) share one namespace per database; ``sqlite_`` is reserved.
IDENTIFIERS = IdentifierRules(
    "SQLite",
    fold=ascii_fold,
    index_scope="schema",
    allows_empty=True,
    extra_problem=_sqlite_problem,
)


#: SQLite's compiled-in defaults (SQLITE_MAX_COLUMN, SQLITE_MAX_LENGTH): columns per table
#: and per index, and the bytes of one value
LIMITS = Limits(
    "SQLite",
    max_columns=2000,
    min_columns=1,
    max_index_columns=2000,
    max_value_bytes=1_000_000_000,
    value_limit="SQLITE_MAX_LENGTH",
)


class SqliteDialect(NamedByRules):
    """Quoting, identifier rules, type rules and default translation for SQLite."""

    name = "sqlite"
    identifiers = IDENTIFIERS
    limits = LIMITS

    def quote(self, identifier: str) -> str:
        """``"name"`` with inner double quotes doubled; NUL is refused."""
        if not isinstance(identifier, str) or "\x00" in identifier:
            raise ConfigError(f"invalid SQLite identifier {v.preview(identifier)} (NUL character)")
        return '"' + identifier.replace('"', '""') + '"'

    def literal(self, text: str) -> str:
        """A SQL string literal, for DDL where values cannot be bound (CHECK, DEFAULT)."""
        return _literal(text)

    def enum_check(self, column: str, values: tuple[str, ...]) -> str:
        """The CHECK clause that keeps an enum column to its labels."""
        labels = ", ".join(_literal(x) for x in values)
        return f"CHECK ({self.quote(column)} IN ({labels}))"

    def parse_type(self, native: str) -> Type:
        """The portable meaning of a declared SQLite type (``native`` keeps the spelling)."""
        base, p, s = _split(native)
        parsed = _parse_named(base, p, s)
        if parsed is None:
            parsed = _parse_by_affinity(base, affinity(native), p)
        return parsed.with_native(native)

    def target_type(self, source: Type, source_dialect: str) -> TargetType:
        """Declared type, fidelity, reason and value adapter for a column of ``source`` type."""
        # a type without a native spelling (a mapping's type change) converts by the rules
        if source_dialect == self.name and (source.native or source.kind is Kind.OTHER):
            declared = source.native
            if not _SAFE_TYPE.fullmatch(declared):
                raise ConfigError(f"declared type {declared!r} cannot be reused in DDL")
            return TargetType(
                declared,
                source,
                Fidelity.EXACT,
                None,
                _same_dialect_adapter(source, affinity(declared)),
            )
        rule = _RULES[source.kind](source)
        target = source if source.kind is Kind.ENUM else self.parse_type(rule.sql)
        return TargetType(
            rule.sql, target.with_native(rule.sql), rule.fidelity, rule.reason, rule.adapt
        )

    def convert_default(self, column: Column, source_dialect: str) -> str | None:
        """A SQLite default expression for ``column``'s default, or None when untranslatable."""
        if column.default is None:
            return None
        text = _unwrap(column.default.strip())
        upper = text.upper()
        if upper in _NOW or upper.startswith("CURRENT_TIMESTAMP("):
            return f"({_NOW_TZ})" if column.type.tz else "CURRENT_TIMESTAMP"
        if upper in ("CURRENT_DATE", "CURRENT_DATE()", "CURDATE()"):
            return "CURRENT_DATE"
        if upper in ("CURRENT_TIME", "LOCALTIME", "CURRENT_TIME()", "CURTIME()"):
            return "CURRENT_TIME"
        if upper in ("NULL", "TRUE", "FALSE"):
            return {"NULL": "NULL", "TRUE": "1", "FALSE": "0"}[upper]
        if _NUMBER.fullmatch(text):
            return text
        if _STRING.fullmatch(text) and not (source_dialect.startswith("mysql") and "\\" in text):
            return _bool_literal(text) if column.type.kind is Kind.BOOL else text
        return None


def _unwrap(text: str) -> str:
    """Drop a PostgreSQL cast (``'a'::text``) and redundant outer parentheses."""
    while True:
        match = _CAST.match(text)
        if match and (_STRING.fullmatch(match.group(1)) or _NUMBER.fullmatch(match.group(1))):
            text = match.group(1)
        elif text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
            text = text[1:-1].strip()
        else:
            return text


def _balanced(text: str) -> bool:
    depth, quoted = 0, False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth < 0:
                return False
    return depth == 0 and not quoted


def _bool_literal(text: str) -> str | None:
    inner = text[1:-1].lower()
    return {"t": "1", "true": "1", "1": "1", "f": "0", "false": "0", "0": "0"}.get(inner)


DIALECT = SqliteDialect()

"""The DuckDB dialect: quoting, DuckDB type <-> portable type rules, defaults (no driver import).

=====================  ===========================  ========  =================================
portable               DuckDB                       fidelity  note
=====================  ===========================  ========  =================================
bool                   BOOLEAN                      exact
int8/16/32/64          TINYINT/SMALLINT/INTEGER/    exact
                       BIGINT
uint8/16/32/64         UTINYINT/.../UBIGINT         exact
decimal(p<=38,s)       DECIMAL(p,s)                 exact     NaN/Infinity refused by row
decimal(p>38), numeric VARCHAR                      lossy     exact digits kept as text
float32 / float64      FLOAT / DOUBLE               exact     NaN, infinities and -0.0 kept
string(n) / text       VARCHAR                      exact     DuckDB keeps no length
bytes                  BLOB                         exact
date                   DATE                         exact     infinity and BC dates too
time / time tz         TIME / TIMETZ                exact     fractions below 1 us: lossy
timestamp (tz)         TIMESTAMP / TIMESTAMPTZ      exact     infinity and BC too
interval               INTERVAL                     exact     months, days, microseconds
json / jsonb           JSON                         exact     the text kept as is
uuid                   UUID                         exact
enum                   ENUM('a', ...)               exact
array                  item[] (LIST)                as item   nested lists for dimensions
other                  VARCHAR                      lossy     the source's text form
=====================  ===========================  ========  =================================

DuckDB -> portable: HUGEINT/UHUGEINT become decimal(39,0) (no portable 128-bit integer; read
as ``Decimal``); STRUCT, MAP and UNION are ``other``, read as JSON text (other targets store
that text, declared lossy; a DuckDB target keeps the type and casts the JSON back);
TIMESTAMP_NS keeps precision 9 (read through text: a value with nanoseconds stays text); BIT
and BIGNUM are ``other`` (text).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from replikit.endpoints.duckdb import _values as v
from replikit.errors import ConfigError
from replikit.schema.convert import Adapter, Fidelity, TargetType, map_list
from replikit.schema.limits import Limits
from replikit.schema.model import Column
from replikit.schema.names import IdentifierRules, NamedByRules, ascii_fold
from replikit.schema.types import Kind, Type

__all__ = ["DIALECT", "IDENTIFIERS", "LIMITS", "NESTED", "DuckdbDialect", "same_dialect_adapter"]

NAME: Final = "duckdb"
MAX_DECIMAL: Final = 38
#: DuckDB's structured types: read as JSON text, written from it
NESTED: Final = ("STRUCT", "MAP", "UNION")

#: DuckDB keeps a name's case but compares names ASCII-case-insensitively, quoted or not
#: (probed: ``"A"`` and ``a`` collide, ``"É"`` and ``"é"`` do not); no length limit. Index
#: names share the schema's namespace with the tables.
IDENTIFIERS: Final = IdentifierRules("DuckDB", fold=ascii_fold, index_scope="schema")

#: DuckDB documents no column or value limits that a plan could check, but refuses a table
#: without columns
LIMITS: Final = Limits("DuckDB", min_columns=1, foreign_keys=False)

_SIMPLE: dict[str, Callable[[str], Type]] = {
    "BOOLEAN": Type.bool_,
    "TINYINT": lambda n: Type.int_(8, native=n),
    "SMALLINT": lambda n: Type.int_(16, native=n),
    "INTEGER": lambda n: Type.int_(32, native=n),
    "BIGINT": lambda n: Type.int_(64, native=n),
    "UTINYINT": lambda n: Type.int_(8, unsigned=True, native=n),
    "USMALLINT": lambda n: Type.int_(16, unsigned=True, native=n),
    "UINTEGER": lambda n: Type.int_(32, unsigned=True, native=n),
    "UBIGINT": lambda n: Type.int_(64, unsigned=True, native=n),
    "HUGEINT": lambda n: Type.decimal(39, 0, native=n),
    "UHUGEINT": lambda n: Type.decimal(39, 0, native=n),
    "FLOAT": lambda n: Type.float_(32, n),
    "DOUBLE": lambda n: Type.float_(64, n),
    "VARCHAR": Type.text,
    "BLOB": lambda n: Type.bytes_(native=n),
    "DATE": Type.date,
    "TIME": lambda n: Type.time(6, native=n),
    "TIME WITH TIME ZONE": lambda n: Type.time(6, tz=True, native=n),
    "TIMESTAMP": lambda n: Type.timestamp(6, native=n),
    "TIMESTAMP_S": lambda n: Type.timestamp(0, native=n),
    "TIMESTAMP_MS": lambda n: Type.timestamp(3, native=n),
    "TIMESTAMP_NS": lambda n: Type.timestamp(9, native=n),
    "TIMESTAMP WITH TIME ZONE": lambda n: Type.timestamp(6, tz=True, native=n),
    "INTERVAL": Type.interval,
    "JSON": lambda n: Type.json(native=n),
    "UUID": Type.uuid,
}
_ALIASES = {
    "BOOL": "BOOLEAN",
    "INT1": "TINYINT",
    "INT2": "SMALLINT",
    "SHORT": "SMALLINT",
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "SIGNED": "INTEGER",
    "INT8": "BIGINT",
    "LONG": "BIGINT",
    "INT128": "HUGEINT",
    "UINT128": "UHUGEINT",
    "REAL": "FLOAT",
    "FLOAT4": "FLOAT",
    "FLOAT8": "DOUBLE",
    "TEXT": "VARCHAR",
    "STRING": "VARCHAR",
    "CHAR": "VARCHAR",
    "BPCHAR": "VARCHAR",
    "BYTEA": "BLOB",
    "BINARY": "BLOB",
    "VARBINARY": "BLOB",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE",
    "TIMETZ": "TIME WITH TIME ZONE",
}
_ARGS = re.compile(r"^(?P<base>[A-Z_0-9 ]+?)\s*\((?P<args>.*)\)$", re.DOTALL)
_FIXED_ARRAY = re.compile(r"\[\d*\]$")
_LABEL = re.compile(r"'((?:[^']|'')*)'")


def _literal(text: str) -> str:
    if "\x00" in text:
        raise ConfigError("a DuckDB literal cannot contain a NUL character")
    return "'" + text.replace("'", "''") + "'"


def _parse(native: str) -> Type:
    text = " ".join(native.strip().split())
    if _FIXED_ARRAY.search(text):
        item = _parse(_FIXED_ARRAY.sub("", text))
        dims = item.dims + 1 if item.kind is Kind.ARRAY else 1
        inner = item.item if item.kind is Kind.ARRAY and item.item is not None else item
        return Type.array(inner, dims, native=text)
    upper = text.upper()
    base = _ALIASES.get(upper, upper)
    if base in _SIMPLE:
        return _SIMPLE[base](base).with_native(text)
    m = _ARGS.match(upper)
    if m is None:
        return Type.other(text)
    name = _ALIASES.get(m.group("base").strip(), m.group("base").strip())
    args = m.group("args")
    if name in ("DECIMAL", "NUMERIC"):
        parts = [int(a) for a in args.split(",") if a.strip()]
        p, s = (parts[0], parts[1] if len(parts) > 1 else 0) if parts else (18, 3)
        return Type.decimal(p, s, native=text)
    if name == "VARCHAR":
        return Type.text(text)
    if name == "ENUM":
        labels = tuple(x.replace("''", "'") for x in _LABEL.findall(text[text.index("(") :]))
        return Type.enum(labels, native=text)
    if name in NESTED:
        return Type.other(text)
    if name.startswith("TIMESTAMP") and name in _SIMPLE:
        return _SIMPLE[name](text)
    return Type.other(text)


# -- the rule table: portable kind -> DuckDB ------------------------------------------------
def _exact(sql: str, adapt: Adapter | None = None) -> Callable[[Type], TargetType]:
    return lambda t: TargetType(sql, _parse(sql), adapt=adapt)


_INT_SQL = {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}


def _int(t: Type) -> TargetType:
    bits = t.bits or 64
    if bits > 64:
        return TargetType("HUGEINT", _parse("HUGEINT"), adapt=str)
    sql = ("U" if t.unsigned else "") + _INT_SQL.get(bits, "BIGINT")
    return TargetType(sql, _parse(sql))


def _decimal_text(value: Any) -> str:
    return str(value)


def _decimal(t: Type) -> TargetType:
    if t.precision is not None and t.precision <= MAX_DECIMAL:
        sql = f"DECIMAL({t.precision},{t.scale or 0})"
        return TargetType(
            sql,
            _parse(sql),
            reason="NaN and Infinity have no DuckDB DECIMAL form: rows holding them are refused",
        )
    what = "unbounded numeric" if t.precision is None else f"decimal({t.precision},{t.scale})"
    return TargetType(
        "VARCHAR",
        Type.text("VARCHAR"),
        Fidelity.LOSSY,
        f"{what} stored as exact decimal text: DuckDB DECIMAL holds at most 38 digits",
        _decimal_text,
    )


def _time(t: Type) -> TargetType:
    base = "TIME" if t.kind is Kind.TIME else "TIMESTAMP"
    sql = base + (" WITH TIME ZONE" if t.tz else "")
    adapt = _time_text if t.kind is Kind.TIME and t.tz else None
    target = _parse(sql)
    if t.precision is not None and t.precision > 6:
        return TargetType(sql, target, Fidelity.LOSSY, "fractions below 1 us are cut", adapt)
    return TargetType(sql, target, adapt=adapt)


def _time_text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _enum(t: Type) -> TargetType:
    if not t.values:
        return TargetType("VARCHAR", Type.text("VARCHAR"), reason="an enum without labels as text")
    sql = f"ENUM({', '.join(_literal(x) for x in t.values)})"
    return TargetType(sql, Type.enum(t.values, native=sql))


def _array(t: Type) -> TargetType:
    assert t.item is not None
    item = DIALECT.target_type(t.item, "")
    sql = item.sql + "[]" * max(t.dims, 1)
    adapt = map_list(item.adapt) if item.adapt is not None else None
    target = Type.array(item.type, t.dims, native=sql)
    return TargetType(sql, target, item.fidelity, item.reason, adapt)



def _other(t: Type) -> TargetType:
    return TargetType(
        "VARCHAR", Type.text("VARCHAR"), Fidelity.LOSSY, f"{t.native or t} stored as its text form"
    )


def _string(t: Type) -> TargetType:
    reason = None
    if t.length is not None:
        reason = "VARCHAR: DuckDB keeps and enforces no length"
    return TargetType("VARCHAR", Type.text("VARCHAR"), reason=reason)


_RULES: dict[Kind, Callable[[Type], TargetType]] = {
    Kind.BOOL: _exact("BOOLEAN"),
    Kind.INT: _int,
    Kind.DECIMAL: _decimal,
    Kind.FLOAT: lambda t: _exact("FLOAT" if (t.bits or 64) <= 32 else "DOUBLE")(t),
    Kind.STRING: _string,
    Kind.TEXT: _exact("VARCHAR"),
    Kind.BYTES: _exact("BLOB"),
    # dates and timestamps need no adapter: Arrow takes the objects, and a column holding
    # text (infinity, BC) goes as text (``_values.text_of`` spells BC as DuckDB does)
    Kind.DATE: _exact("DATE"),
    Kind.TIME: _time,
    Kind.TIMESTAMP: _time,
    Kind.INTERVAL: _exact("INTERVAL", v.duckdb_interval),
    Kind.JSON: _exact("JSON"),
    Kind.UUID: _exact("UUID", str),
    Kind.ENUM: _enum,
    Kind.ARRAY: _array,
    Kind.OTHER: _other,
}


def same_dialect_adapter(t: Type) -> Adapter | None:
    """DuckDB -> DuckDB: canonical values back into what the native column takes."""
    native = t.native.upper()
    if native in ("HUGEINT", "UHUGEINT", "INT128", "UINT128"):
        return str
    if t.kind is Kind.ARRAY and t.item is not None:
        inner = same_dialect_adapter(t.item)
        return map_list(inner) if inner is not None else None
    if t.kind is Kind.TIME and t.tz:
        return _time_text
    simple: dict[Kind, Adapter] = {
        Kind.INTERVAL: v.duckdb_interval,
        Kind.UUID: str,
    }
    return simple.get(t.kind)


class DuckdbDialect(NamedByRules):
    """Quoting, identifier rules, type rules and default translation for DuckDB."""

    name: str = NAME
    identifiers = IDENTIFIERS
    limits = LIMITS

    def quote(self, identifier: str) -> str:
        """``"name"`` with inner double quotes doubled; NUL is refused."""
        if not isinstance(identifier, str) or "\x00" in identifier:
            raise ConfigError(f"invalid DuckDB identifier {identifier!r} (NUL character)")
        return '"' + identifier.replace('"', '""') + '"'

    def literal(self, text: str) -> str:
        """A SQL string literal, for DDL where values cannot be bound."""
        return _literal(text)

    def parse_type(self, native: str) -> Type:
        """The portable meaning of a DuckDB type spelling (see the module docstring)."""
        return _parse(native)

    def target_type(self, source: Type, source_dialect: str) -> TargetType:
        """How ``source`` is declared and written in DuckDB (see the module docstring)."""
        if source_dialect == NAME and source.native:
            return TargetType(source.native, source, adapt=same_dialect_adapter(source))
        return _RULES[source.kind](source)

    def convert_default(self, column: Column, source_dialect: str) -> str | None:
        """A simple literal or current-time default; ``None`` for anything else."""
        if column.default is None:
            return None
        if source_dialect == NAME:
            return column.default
        return _convert_default(column.default.strip(), column.type)


DIALECT: Final = DuckdbDialect()

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_STRING = re.compile(r"^'(?:[^'\\]|'')*'$")
_CAST = re.compile(r"^(.*?)\s*::\s*[\w\s\[\]\"().,]+$", re.DOTALL)
_NOW = {
    "current_timestamp": "CURRENT_TIMESTAMP",
    "now()": "CURRENT_TIMESTAMP",
    "localtimestamp": "LOCALTIMESTAMP",
    "current_date": "CURRENT_DATE",
    "current_time": "CURRENT_TIME",
}


def _convert_default(expr: str, type_: Type) -> str | None:
    while True:
        m = _CAST.match(expr)
        if m and (_STRING.match(m.group(1)) or _NUMBER.match(m.group(1))):
            expr = m.group(1)
        elif expr.startswith("(") and expr.endswith(")"):
            expr = expr[1:-1].strip()
        else:
            break
    low = expr.lower()
    if low in ("null", "true", "false"):
        return low.upper()
    if low in _NOW:
        return _NOW[low]
    if type_.kind is Kind.BOOL and low in ("0", "1", "'0'", "'1'"):
        return "TRUE" if "1" in low else "FALSE"
    if _NUMBER.match(expr) or (_STRING.match(expr) and type_.kind is not Kind.BYTES):
        return expr
    return None

"""The PostgreSQL dialect: quoting, native type spellings and the portable -> PostgreSQL rules.

No driver import here: planning and ``replikit plan`` work without psycopg.

Enums from other dialects become ``text`` plus a ``CHECK (col IN (...))`` constraint (the writer
adds it); that keeps DDL free of type objects whose lifetime outlives a table. Enums from
PostgreSQL keep their type name, and the writer creates the enum type when the target lacks it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from replikit.endpoints.postgres._limits import LIMITS
from replikit.errors import ConfigError
from replikit.schema.convert import Fidelity, TargetType, map_list
from replikit.schema.model import Column
from replikit.schema.names import IdentifierRules, NamedByRules
from replikit.schema.types import Kind, Type

__all__ = ["DIALECT", "IDENTIFIERS", "PostgresDialect"]

NAME: Final = "postgresql"


#: Names are at most 63 bytes (NAMEDATALEN - 1); longer ones are cut at a character boundary
#: (quoted or not). replikit always quotes, so case is kept and names compare exactly.
#: Indexes, key constraints and sequences share one namespace per schema with the tables;
#: schema names starting with ``pg_`` are the system's.
def _pg_problem(name: str, kind: str) -> str | None:
    if kind == "schema" and name.startswith("pg_"):
        return "PostgreSQL reserves schema names that start with pg_ for itself"
    if kind in ("table", "type") and set(IDENTIFIERS.cut(name)) == {"_"} and len(name) >= 63:
        # a table's row type gets an array type named "_" + its name cut to 63 bytes; for 63
        # underscores every such name is the row type's own, and PostgreSQL 15 fails the
        # CREATE with a duplicate key in pg_type (measured)
        return (
            "PostgreSQL cannot name the array type of a table or type called 63 underscores "
            "(its CREATE fails)"
        )
    return None


IDENTIFIERS: Final = IdentifierRules(
    "PostgreSQL",
    max_length=63,
    length_unit="bytes",
    truncates=True,
    index_scope="schema",
    extra_problem=_pg_problem,
)
_MAX_NUMERIC_PRECISION = 1000
_MAX_VARCHAR = 10_485_760

# native name (lower case, after alias resolution) -> (canonical spelling, portable factory)
_SIMPLE: dict[str, tuple[str, Callable[[str], Type]]] = {
    "boolean": ("boolean", lambda n: Type.bool_(n)),
    "smallint": ("smallint", lambda n: Type.int_(16, native=n)),
    "integer": ("integer", lambda n: Type.int_(32, native=n)),
    "bigint": ("bigint", lambda n: Type.int_(64, native=n)),
    "oid": ("oid", lambda n: Type.int_(32, unsigned=True, native=n)),
    "real": ("real", lambda n: Type.float_(32, n)),
    "double precision": ("double precision", lambda n: Type.float_(64, n)),
    "money": ("money", lambda n: Type.decimal(native=n)),
    "text": ("text", lambda n: Type.text(n)),
    "name": ("name", lambda n: Type.string(63, native=n)),
    '"char"': ('"char"', lambda n: Type.string(1, fixed=True, native=n)),
    "bytea": ("bytea", lambda n: Type.bytes_(native=n)),
    "date": ("date", lambda n: Type.date(n)),
    "json": ("json", lambda n: Type.json(native=n)),
    "jsonb": ("jsonb", lambda n: Type.json(binary=True, native=n)),
    "uuid": ("uuid", lambda n: Type.uuid(n)),
}
_ALIASES = {
    "bool": "boolean",
    "int2": "smallint",
    "smallserial": "smallint",
    "serial2": "smallint",
    "int": "integer",
    "int4": "integer",
    "serial": "integer",
    "serial4": "integer",
    "int8": "bigint",
    "bigserial": "bigint",
    "serial8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "float": "double precision",
    "varchar": "character varying",
    "char": "character",
    "bpchar": "character",
    "decimal": "numeric",
    "timestamptz": "timestamp with time zone",
    "timetz": "time with time zone",
}
_TYPE_RE = re.compile(
    r"^(?P<base>[a-z_ 0-9]+?|\"char\")\s*(?:\((?P<args>[^)]*)\))?"
    r"\s*(?P<tail>with(?:out)? time zone)?$"
)


class PostgresDialect(NamedByRules):
    """Type rules, identifier rules and quoting, and default translation for PostgreSQL."""

    name: str = NAME
    identifiers = IDENTIFIERS
    limits = LIMITS

    def quote(self, identifier: str) -> str:
        """Double-quote ``identifier`` (embedded quotes doubled); NUL is rejected."""
        if "\x00" in identifier:
            raise ConfigError(f"identifier {identifier!r} contains a NUL character")
        return '"' + identifier.replace('"', '""') + '"'

    # -- native -> portable --------------------------------------------------------------
    def parse_type(self, native: str) -> Type:
        """The portable meaning of a PostgreSQL type spelling; ``.native`` is normalised."""
        text = " ".join(native.strip().split())
        low = text.lower()
        dims = 0
        while low.endswith("[]"):
            dims += 1
            low = low[:-2].rstrip()
        if low.startswith("_") and dims == 0:
            dims, low = 1, low[1:]
        if dims:
            item = self.parse_type(low)
            return Type.array(item, dims, native=item.native + "[]" * dims)
        return _parse_scalar(low, text)

    # -- portable -> native --------------------------------------------------------------
    def target_type(self, source: Type, source_dialect: str) -> TargetType:
        """How ``source`` is declared and written in PostgreSQL (see the module docstring)."""
        if source_dialect == NAME and source.native:
            return TargetType(source.native, source)
        if source_dialect == "mysql" and source.kind is Kind.TIME:
            return _mysql_time(source)
        return _RULES[source.kind](source)

    def convert_default(self, column: Column, source_dialect: str) -> str | None:
        """Translate a simple literal or current-time default; ``None`` for anything else."""
        if column.default is None:
            return None
        if source_dialect == NAME:
            return column.default
        return _convert_default(column.default.strip(), column.type)


DIALECT: Final = PostgresDialect()


def _parse_scalar(low: str, original: str) -> Type:
    m = _TYPE_RE.match(low)
    if m is None:
        return Type.other(original)
    base = m.group("base").strip()
    base = _ALIASES.get(base, base)
    args = [a.strip() for a in (m.group("args") or "").split(",") if a.strip()]
    tail = m.group("tail")
    if base in _SIMPLE and not args and not tail:
        spelling, make = _SIMPLE[base]
        return make(spelling)
    if base == "numeric":
        return _numeric(args)
    if base in ("character varying", "character"):
        return _string(base, args)
    if base in ("time", "timestamp", "time with time zone", "timestamp with time zone"):
        return _temporal(base, args, tail)
    if base.startswith("interval"):
        return Type.interval(native=original.lower())
    return Type.other(original)


def _numeric(args: list[str]) -> Type:
    if not args:
        return Type.decimal(native="numeric")
    p, s = int(args[0]), int(args[1]) if len(args) > 1 else 0
    return Type.decimal(p, s, native=f"numeric({p},{s})")


def _string(base: str, args: list[str]) -> Type:
    fixed = base == "character"
    length = int(args[0]) if args else (1 if fixed else None)
    native = base + (f"({length})" if length is not None else "")
    return Type.string(length, fixed=fixed, native=native)


def _temporal(base: str, args: list[str], tail: str | None) -> Type:
    tz = base.endswith("with time zone") or tail == "with time zone"
    word = base.split()[0]
    precision = int(args[0]) if args else None
    p = f"({precision})" if precision is not None else ""
    native = f"{word}{p} {'with' if tz else 'without'} time zone"
    if word == "time":
        return Type.time(precision, tz=tz, native=native)
    return Type.timestamp(precision, tz=tz, native=native)


# -- the rule table: portable kind -> PostgreSQL ------------------------------------------
def _exact(sql: str) -> Callable[[Type], TargetType]:
    return lambda t: TargetType(sql, replace(t, native=sql))


def _int(t: Type) -> TargetType:
    bits = t.bits or 64
    if t.unsigned:
        bits = bits * 2 if bits < 64 else 128
    if bits <= 16:
        sql = "smallint"
    elif bits <= 32:
        sql = "integer"
    elif bits <= 64:
        sql = "bigint"
    else:
        return TargetType("numeric(20,0)", Type.decimal(20, 0, native="numeric(20,0)"))
    return TargetType(sql, Type.int_(bits, native=sql))


def _decimal(t: Type) -> TargetType:
    if t.precision is None:
        return TargetType("numeric", Type.decimal(native="numeric"))
    if t.precision > _MAX_NUMERIC_PRECISION:
        return TargetType(
            "numeric", Type.decimal(native="numeric"), reason="precision above 1000: unbounded"
        )
    sql = f"numeric({t.precision},{t.scale or 0})"
    return TargetType(sql, Type.decimal(t.precision, t.scale or 0, native=sql))


def _float(t: Type) -> TargetType:
    sql = "real" if (t.bits or 64) <= 32 else "double precision"
    return TargetType(sql, replace(t, native=sql))


def _string_rule(t: Type) -> TargetType:
    if t.length is None or t.length > _MAX_VARCHAR:
        return TargetType("text", Type.text("text"))
    sql = f"character varying({t.length})"
    if not t.fixed:
        return TargetType(sql, replace(t, native=sql))
    # not character(n), which pads values on read: MySQL's CHAR(n) reads without trailing
    # spaces and SQLite keeps what it was given, so varchar(n) reads back what the source read
    return TargetType(
        sql,
        replace(t, fixed=False, native=sql),
        reason="fixed-length text stored as varchar: values read back as the source reads them",
    )


def _time_rule(t: Type) -> TargetType:
    word = t.kind.value
    fidelity, reason, precision = Fidelity.EXACT, None, t.precision
    if precision is not None and precision > 6:
        fidelity, reason, precision = Fidelity.LOSSY, "fractions below 1 microsecond rounded", 6
    p = f"({precision})" if precision is not None else ""
    sql = f"{word}{p} {'with' if t.tz else 'without'} time zone"
    return TargetType(sql, replace(t, precision=precision, native=sql), fidelity, reason)


def _mysql_time(t: Type) -> TargetType:
    """MySQL's TIME is a duration (-838:59:59..838:59:59); PostgreSQL's a time of day."""
    rule = _time_rule(t)
    return replace(
        rule,
        fidelity=Fidelity.LOSSY,
        reason="MySQL TIME values outside 00:00:00..24:00:00 (negative, or beyond a day) have "
        "no PostgreSQL time form: rows holding one are refused (override the column to "
        "interval or text to keep them)",
    )


def _json(t: Type) -> TargetType:
    sql = "jsonb" if t.binary else "json"
    return TargetType(sql, replace(t, native=sql))


def _enum(t: Type) -> TargetType:
    return TargetType("text", replace(t, native="text"), reason="text with a CHECK of the labels")


def _array(t: Type) -> TargetType:
    assert t.item is not None
    item = DIALECT.target_type(t.item, "")
    sql = item.sql + "[]" * max(t.dims, 1)
    adapt = map_list(item.adapt) if item.adapt is not None else None
    return TargetType(
        sql, Type.array(item.type, t.dims, native=sql), item.fidelity, item.reason, adapt
    )



def _other(t: Type) -> TargetType:
    return TargetType(
        "text", Type.text("text"), Fidelity.LOSSY, f"{t.native or t} stored as its text form"
    )


_RULES: dict[Kind, Callable[[Type], TargetType]] = {
    Kind.BOOL: _exact("boolean"),
    Kind.INT: _int,
    Kind.DECIMAL: _decimal,
    Kind.FLOAT: _float,
    Kind.STRING: _string_rule,
    Kind.TEXT: _exact("text"),
    Kind.BYTES: lambda t: TargetType("bytea", Type.bytes_(native="bytea")),
    Kind.DATE: _exact("date"),
    Kind.TIME: _time_rule,
    Kind.TIMESTAMP: _time_rule,
    Kind.INTERVAL: _exact("interval"),
    Kind.JSON: _json,
    Kind.UUID: _exact("uuid"),
    Kind.ENUM: _enum,
    Kind.ARRAY: _array,
    Kind.OTHER: _other,
}

# -- defaults -------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_STRING = re.compile(r"^'(?:[^'\\]|'')*'$")
_NOW = {
    "current_timestamp": "CURRENT_TIMESTAMP",
    "now()": "CURRENT_TIMESTAMP",
    "localtimestamp": "LOCALTIMESTAMP",
    "current_date": "CURRENT_DATE",
    "current_time": "CURRENT_TIME",
}


def _convert_default(expr: str, type_: Type) -> str | None:
    while expr.startswith("(") and expr.endswith(")"):
        expr = expr[1:-1].strip()
    low = expr.lower()
    if low == "null":
        return "NULL"
    if low in _NOW or re.fullmatch(r"current_timestamp\s*\(\s*\d\s*\)", low):
        return _NOW.get(low, "CURRENT_TIMESTAMP")
    if low in ("true", "false"):
        return low
    if type_.kind is Kind.BOOL and low in ("0", "1", "'0'", "'1'"):
        return "true" if "1" in low else "false"
    if _NUMBER.match(expr):
        return expr
    if _STRING.match(expr):
        return expr
    return None

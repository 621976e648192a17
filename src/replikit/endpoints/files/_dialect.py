"""The files dialect: portable types <-> Parquet/Arrow types, folder names (no pyarrow import).

A files target stores each column in Parquet's type system (CSV and JSONL files store text,
with the same types in the table's ``_schema.json``). The plan's target type ``sql`` is the
Arrow type's spelling; the portable type kept in ``_schema.json`` is the source's, so a table
read back from the files plans the same columns it was written from (a ``varchar(20)`` comes
back as ``string(20)``, an enum with its labels).

=====================  ===========================  ========  =================================
portable               Parquet / Arrow              fidelity  note
=====================  ===========================  ========  =================================
bool                   boolean                      exact
int8..int64, uint..    int8..int64, uint8..uint64   exact
decimal(p<=38,s)       decimal128(p, s)             exact     NaN/Infinity refused by row
decimal(p<=76,s)       decimal256(p, s)             exact     NaN/Infinity refused by row
decimal (unbounded)    string                       lossy     exact digits as text
float32 / float64      float / double               exact     NaN, infinities, -0.0 kept
string(n) / text       string                       exact     length kept in _schema.json
bytes                  binary                       exact
date                   date32                       exact     infinity and BC refused by row
time(p)                time64[us]                   exact     fractions below 1 us: lossy
time with time zone    string                       exact     ISO text with the offset
timestamp(p)           timestamp[us]                exact     infinity and BC refused by row
timestamp with tz      timestamp[us, tz=UTC]        exact     instants in UTC
interval               string                       exact     ISO 8601 duration text
json                   extension<arrow.json>        exact     the text as it was
uuid                   extension<arrow.uuid>        exact     Parquet UUID (16 bytes)
enum                   string                       exact     labels kept in _schema.json
array                  list<item>                   as item   nested lists for dimensions
other                  string                       lossy     the source's text form
=====================  ===========================  ========  =================================
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from replikit.errors import ConfigError
from replikit.schema.convert import Fidelity, TargetType, map_list
from replikit.schema.limits import Limits
from replikit.schema.model import Column
from replikit.schema.names import IdentifierRules, NamedByRules
from replikit.schema.types import Kind, Type

__all__ = ["DIALECT", "FORMATS", "IDENTIFIERS", "FilesDialect", "arrow_spelling"]

NAME: Final = "files"
FORMATS: Final = ("parquet", "csv", "jsonl")
MAX_DECIMAL128: Final = 38
MAX_DECIMAL256: Final = 76
_BAD_NAME = re.compile(r"[/\\\x00]")


def _name_problem(name: str, kind: str) -> str | None:
    if kind in ("schema", "table") and (_BAD_NAME.search(name) or name in (".", "..")):
        return f"a {kind} name cannot hold '/', '\\' or NUL, nor be '.' or '..': it is a folder"
    if kind in ("schema", "table") and name.startswith(("_", ".")):
        return f"a {kind} folder starting with '_' or '.' is hidden from readers of the files"
    return None


#: names are folder names and Parquet field names: kept as they are, compared exactly
IDENTIFIERS: Final = IdentifierRules("files", extra_problem=_name_problem)
#: files hold no keys, indexes or foreign keys themselves (``_schema.json`` describes them)
LIMITS: Final = Limits("files")


def arrow_spelling(t: Type) -> str:
    """How the Arrow/Parquet type of a column of target type ``t`` is spelt (the plan's
    ``sql``); ``t.native`` when set."""
    return t.native or _RULES[t.kind](t).sql


def _same(sql: str) -> Callable[[Type], TargetType]:
    return lambda t: TargetType(sql, t.with_native(sql))


def _int(t: Type) -> TargetType:
    bits = t.bits or 64
    if bits > 64:
        sql = "decimal128(39, 0)"
        return TargetType(sql, Type.decimal(39, 0, native=sql), adapt=_decimal_of_int)
    sql = f"{'u' if t.unsigned else ''}int{bits}"
    return TargetType(sql, t.with_native(sql))


def _decimal_of_int(value: Any) -> Any:
    from decimal import Decimal

    return Decimal(value)


def _decimal(t: Type) -> TargetType:
    refused = "NaN and Infinity have no Parquet decimal form: rows holding them are refused"
    if t.precision is not None and t.precision <= MAX_DECIMAL256:
        width = 128 if t.precision <= MAX_DECIMAL128 else 256
        sql = f"decimal{width}({t.precision}, {t.scale or 0})"
        return TargetType(sql, t.with_native(sql), reason=refused)
    what = "unbounded numeric" if t.precision is None else f"decimal({t.precision},{t.scale})"
    return TargetType(
        "string",
        Type.text("string"),
        Fidelity.LOSSY,
        f"{what} stored as exact decimal text: Parquet decimals hold at most 76 digits",
        str,
    )


def _float(t: Type) -> TargetType:
    sql = "float" if (t.bits or 64) <= 32 else "double"
    return TargetType(sql, t.with_native(sql))


def _temporal(t: Type) -> TargetType:
    if t.kind is Kind.TIME and t.tz:
        return TargetType(
            "string",
            t.with_native("string"),
            reason="Parquet has no time with time zone: ISO text with its offset",
            adapt=_iso,
        )
    if t.kind is Kind.DATE:
        sql = "date32[day]"
    elif t.kind is Kind.TIME:
        sql = "time64[us]"
    else:
        sql = "timestamp[us, tz=UTC]" if t.tz else "timestamp[us]"
    target = t.with_native(sql)
    if t.kind is not Kind.TIME:
        reason = "infinity and dates Python cannot hold (BC) are refused by row"
    else:
        reason = None
    if t.precision is not None and t.precision > 6:
        return TargetType(sql, target, Fidelity.LOSSY, "fractions below 1 us are cut")
    return TargetType(sql, target, reason=reason)


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _text(reason: str | None = None) -> Callable[[Type], TargetType]:
    return lambda t: TargetType("string", t.with_native("string"), reason=reason)


def _array(t: Type) -> TargetType:
    assert t.item is not None
    item = DIALECT.target_type(t.item, "")
    sql = item.sql
    for _ in range(max(t.dims, 1)):
        sql = f"list<item: {sql}>"
    adapt = map_list(item.adapt) if item.adapt is not None else None
    target = Type.array(item.type, t.dims, native=sql)
    return TargetType(sql, target, item.fidelity, item.reason, adapt)


def _other(t: Type) -> TargetType:
    return TargetType(
        "string", Type.text("string"), Fidelity.LOSSY, f"{t.native or t} stored as its text form"
    )


_RULES: dict[Kind, Callable[[Type], TargetType]] = {
    Kind.BOOL: _same("bool"),
    Kind.INT: _int,
    Kind.DECIMAL: _decimal,
    Kind.FLOAT: _float,
    Kind.STRING: _text(),
    Kind.TEXT: _text(),
    Kind.BYTES: _same("binary"),
    Kind.DATE: _temporal,
    Kind.TIME: _temporal,
    Kind.TIMESTAMP: _temporal,
    Kind.INTERVAL: _text(
        "ISO 8601 duration text (Parquet's INTERVAL cannot hold months, days "
        "and microseconds apart)"
    ),
    Kind.JSON: _same("extension<arrow.json>"),
    Kind.UUID: _same("extension<arrow.uuid>"),
    Kind.ENUM: _text(),
    Kind.ARRAY: _array,
    Kind.OTHER: _other,
}

_SIMPLE: dict[str, Callable[[], Type]] = {
    "bool": Type.bool_,
    "float": lambda: Type.float_(32),
    "halffloat": lambda: Type.float_(32),
    "double": lambda: Type.float_(64),
    "string": Type.text,
    "large_string": Type.text,
    "binary": Type.bytes_,
    "large_binary": Type.bytes_,
    "date32[day]": Type.date,
    "date64[ms]": Type.date,
    "time64[us]": lambda: Type.time(6),
    "time32[ms]": lambda: Type.time(3),
    "time32[s]": lambda: Type.time(0),
    "extension<arrow.json>": Type.json,
    "extension<arrow.uuid>": Type.uuid,
    "null": Type.text,
}
_INT = re.compile(r"^(u?)int(8|16|32|64)$")
_DECIMAL = re.compile(r"^decimal(?:32|64|128|256)\((\d+),\s*(-?\d+)\)$")
_TS = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]$")
_TIME_NS = "time64[ns]"
_LIST = re.compile(r"^(?:large_)?list<[^:]*:\s*(.*)>$")
_DICTIONARY = re.compile(r"^dictionary<values=(.*), indices=\w+, ordered=\d>$")
_DURATION = re.compile(r"^duration\[(s|ms|us|ns)\]$")
_PRECISION = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def parse_arrow(spelling: str) -> Type:
    """The portable meaning of an Arrow type spelling (``str(pyarrow type)``)."""
    text = spelling.strip()
    native = text
    if text in _SIMPLE:
        return _SIMPLE[text]().with_native(native)
    m = _INT.match(text)
    if m:
        return Type.int_(int(m.group(2)), unsigned=bool(m.group(1)), native=native)
    m = _DECIMAL.match(text)
    if m:
        return Type.decimal(int(m.group(1)), max(int(m.group(2)), 0), native=native)
    m = _TS.match(text)
    if m:
        return Type.timestamp(_PRECISION[m.group(1)], tz=bool(m.group(2)), native=native)
    if text == _TIME_NS:
        return Type.time(9, native=native)
    m = _DICTIONARY.match(text)
    if m:  # dictionary-encoded (pandas categoricals): the values' type
        return parse_arrow(m.group(1)).with_native(native)
    if _DURATION.match(text):
        return Type.interval(native)
    m = _LIST.match(text)
    if m:
        item = parse_arrow(m.group(1))
        if item.kind is Kind.ARRAY and item.item is not None:
            return Type.array(item.item, item.dims + 1, native=native)
        return Type.array(item, 1, native=native)
    return Type.other(native)


class FilesDialect(NamedByRules):
    """Folder names, field quoting (none needed) and the Parquet type rules."""

    name: str = NAME
    identifiers = IDENTIFIERS
    limits = LIMITS

    def quote(self, identifier: str) -> str:
        """Names are used as they are (folder and field names); NUL is refused."""
        if not isinstance(identifier, str) or "\x00" in identifier:
            raise ConfigError(f"invalid name {identifier!r} (NUL character)")
        return identifier

    def parse_type(self, native: str) -> Type:
        """The portable meaning of an Arrow type spelling (``decimal128(10, 2)``...)."""
        return parse_arrow(native)

    def target_type(self, source: Type, source_dialect: str) -> TargetType:
        """How ``source`` is stored in the files (see the module docstring)."""
        if source_dialect == NAME and source.native:
            rule = _RULES[source.kind](source)
            return TargetType(source.native, source, rule.fidelity, rule.reason, rule.adapt)
        return _RULES[source.kind](source)

    def convert_default(self, column: Column, source_dialect: str) -> str | None:
        """Files hold no defaults (``None``: the plan notes each one left out)."""
        return None


DIALECT: Final = FilesDialect()

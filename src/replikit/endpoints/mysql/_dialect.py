"""The MySQL/MariaDB dialect: quoting, native types <-> portable types, default translation.

No driver import here: planning and ``replikit plan`` work without one.

MySQL -> portable (reflection, :meth:`MysqlDialect.parse_type`):

=============================  ==========================  ====================================
MySQL                          portable                    canonical value / note
=============================  ==========================  ====================================
TINYINT(1), BOOLEAN, BIT(1)    bool                        TINYINT(1) values other than 0/1
                                                           stop the read (``tinyint1_as_bool``)
TINYINT..BIGINT [UNSIGNED]     int8..64 / uint8..64        BIGINT UNSIGNED max survives
MEDIUMINT [UNSIGNED]           int32
BIT(n), n > 1                  int16/32/64, uint64         the bits as a non-negative int
YEAR                           int16                       1901..2155, 0
DECIMAL(p,s)                   decimal(p,s)                up to DECIMAL(65,30)
FLOAT / DOUBLE                 float32 / float64           float32 values exactly as stored
CHAR/VARCHAR(n)                string(n)                   any character set, read as str
TINYTEXT..LONGTEXT             string(255) / text
BINARY/VARBINARY/BLOBs         bytes                       never truncated
DATE, DATETIME(p)              date, timestamp(p)          zero dates: the reader's policy
TIMESTAMP(p)                   timestamp(p) with tz        UTC instants, whatever time_zone
TIME(p)                        time(p)                     outside 00:00..24:00: ``str``
ENUM(...)                      enum                        str
SET(...)                       string(n)                   ``"a,b"`` (MySQL's text form)
JSON                           json (MySQL 8: binary)      the JSON text
UUID (MariaDB)                 uuid
GEOMETRY, POINT, ...           other                       hex EWKB text (SRID kept)
=============================  ==========================  ====================================

Portable -> MySQL (:meth:`MysqlDialect.target_type`) is the table ``_RULES`` below; the verdict
and reason of each rule are what ``replikit plan`` prints.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Context, Decimal
from typing import Any, Final
from uuid import UUID

from replikit.endpoints.mysql._limits import LIMITS
from replikit.endpoints.mysql._names import IDENTIFIERS, MAX_IDENTIFIER
from replikit.errors import ConfigError
from replikit.schema.convert import Adapter, Fidelity, TargetType
from replikit.schema.model import Column
from replikit.schema.names import NamedByRules
from replikit.schema.types import Kind, Type

__all__ = [
    "DIALECT",
    "GEOMETRY_TYPES",
    "IDENTIFIERS",
    "MAX_IDENTIFIER",
    "NAME",
    "BadValue",
    "MysqlDialect",
    "labels",
]

NAME: Final = "mysql"
_MAX_VARCHAR = 16_383  # utf8mb4 characters in 65,535 bytes
_TS_MIN = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
_TS_MAX = datetime(2038, 1, 19, 3, 14, 7, 999_999, tzinfo=UTC)
_TYPE = re.compile(
    r"^\s*(?P<base>[a-z][a-z0-9_]*(?:\s+[a-z][a-z0-9_]*)*?)\s*(?:\((?P<args>.*)\))?"
    r"(?P<rest>(?:\s+(?:unsigned|signed|zerofill|binary|ascii|unicode))*)\s*$",
    re.I | re.S,
)
_NOW = re.compile(r"^(current_timestamp|now|localtimestamp|localtime)\s*(\(\s*(\d?)\s*\))?$", re.I)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_STRING = re.compile(r"^'(?:[^'\\]|''|\\.)*'$", re.S)
_WIDE = Context(prec=200)
_CAST = re.compile(r"^(.*?)\s*::\s*[\w\s\[\]\"().,]+$", re.S)


class BadValue(ValueError):
    """A canonical value cannot be written to its MySQL column; the message says why."""


def labels(args: str) -> tuple[str, ...]:
    """The quoted labels of ``enum(...)``/``set(...)`` arguments (``''`` and ``\\'`` escapes)."""
    out: list[str] = []
    i, n = 0, len(args)
    while i < n:
        if args[i] != "'":
            i += 1
            continue
        i += 1
        buf: list[str] = []
        while i < n:
            ch = args[i]
            if ch == "\\" and i + 1 < n:
                buf.append(args[i + 1])
                i += 2
            elif ch == "'" and args[i + 1 : i + 2] == "'":
                buf.append("'")
                i += 2
            elif ch == "'":
                i += 1
                break
            else:
                buf.append(ch)
                i += 1
        out.append("".join(buf))
    return tuple(out)


def _ints(args: str | None) -> list[int]:
    return [int(a) for a in (args or "").split(",") if a.strip().lstrip("-").isdigit()]


_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 32, "int": 32, "integer": 32, "bigint": 64}
_TEXTS = {"tinytext": 255, "text": None, "mediumtext": None, "longtext": None}
_BLOBS = {"tinyblob": 255, "blob": None, "mediumblob": None, "longblob": None}
#: MySQL's spatial types (base names); values travel as EWKB / internal geometry bytes
GEOMETRY_TYPES: Final = frozenset(
    {
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
        "geomcollection",
    }
)


def _parse(base: str, args: str | None, rest: str, native: str) -> Type:
    unsigned = "unsigned" in rest.split()
    nums = _ints(args)
    if base in ("bool", "boolean") or (base == "tinyint" and nums == [1]):
        return Type.bool_(native)
    if base in _INT_BITS:
        bits = _INT_BITS[base]
        if base == "mediumint":
            return Type.int_(32, native=native)  # 24 bits: every value fits int32
        return Type.int_(bits, unsigned=unsigned, native=native)
    if base == "bit":
        n = nums[0] if nums else 1
        if n == 1:
            return Type.bool_(native)
        bits = 16 if n <= 15 else 32 if n <= 31 else 64
        return Type.int_(bits, unsigned=n == 64, native=native)
    if base == "year":
        return Type.int_(16, native=native)
    if base in ("decimal", "numeric", "dec", "fixed"):
        p = nums[0] if nums else 10
        s = nums[1] if len(nums) > 1 else 0
        return Type.decimal(p, s, native)
    if base == "float":
        return Type.float_(64 if nums and nums[0] > 24 and len(nums) == 1 else 32, native)
    if base in ("double", "double precision", "real"):
        return Type.float_(64, native)
    if base in ("char", "varchar", "nchar", "nvarchar", "national char", "national varchar"):
        fixed = "var" not in base
        return Type.string(nums[0] if nums else 1, fixed=fixed, native=native)
    if base in _TEXTS:
        size = _TEXTS[base]
        return Type.text(native) if size is None else Type.string(size, native=native)
    if base in ("binary", "varbinary"):
        return Type.bytes_(nums[0] if nums else 1, fixed=base == "binary", native=native)
    if base in _BLOBS:
        return Type.bytes_(_BLOBS[base], native=native)
    return _parse_temporal(base, nums, native) or _parse_other(base, args, native)


def _parse_temporal(base: str, nums: list[int], native: str) -> Type | None:
    precision = nums[0] if nums else 0
    if base == "date":
        return Type.date(native)
    if base == "datetime":
        return Type.timestamp(precision, native=native)
    if base == "timestamp":
        return Type.timestamp(precision, tz=True, native=native)
    if base == "time":
        return Type.time(precision, native=native)
    return None


def _parse_other(base: str, args: str | None, native: str) -> Type:
    if base == "enum":
        return Type.enum(labels(args or ""), native)
    if base == "set":
        values = labels(args or "")
        return Type.string(max(sum(len(v) for v in values) + len(values) - 1, 1), native=native)
    if base == "json":
        return Type.json(native=native)
    if base == "uuid":
        return Type.uuid(native)
    return Type.other(native)


# -- write side: canonical value -> what the writer sends ---------------------------------


@dataclass(frozen=True, slots=True)
class _DecimalCheck:
    """Refuses a decimal MySQL would round or that does not fit ``DECIMAL(precision, scale)``
    (a class, not a closure: table plans pickle to process and Dask workers)."""

    precision: int
    scale: int
    _limit: Decimal = field(init=False, repr=False)
    _quantum: Decimal = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # comparisons are exact; arithmetic rounds
        object.__setattr__(self, "_limit", Decimal(1).scaleb(self.precision - self.scale))
        object.__setattr__(self, "_quantum", Decimal(1).scaleb(-self.scale))

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, Decimal):
            value = Decimal(str(value))
        if not value.is_finite():
            raise BadValue(f"{value} has no MySQL DECIMAL form")
        exp = value.as_tuple().exponent
        if (
            isinstance(exp, int)
            and -exp > self.scale
            and value.quantize(self._quantum, context=_WIDE) != value
        ):
            raise BadValue(
                f"{value} has more than {self.scale} decimal places (MySQL would round it)"
            )
        if value.copy_abs() >= self._limit:
            raise BadValue(f"{value} does not fit DECIMAL({self.precision},{self.scale})")
        return value


def _decimal_check(precision: int, scale: int) -> Adapter:
    return _DecimalCheck(precision, scale)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise BadValue(f"{value} has no MySQL FLOAT/DOUBLE form")
    return value


def _not_text(value: Any) -> Any:
    if isinstance(value, str):
        raise BadValue(f"{value!r} has no MySQL form (PostgreSQL infinity or BC value)")
    return value


def _instant(value: Any) -> Any:
    if isinstance(value, str):
        raise BadValue(f"{value!r} has no MySQL TIMESTAMP form")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not _TS_MIN <= value <= _TS_MAX:
        raise BadValue(f"{value.isoformat()} is outside MySQL TIMESTAMP's range (1970..2038 UTC)")
    return value.astimezone(UTC).replace(tzinfo=None)


_CLOCK_TZ = re.compile(r"(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?([+-])(\d{2}):?(\d{2})?:?(\d{2})?")


def _utc_text(value: str) -> str:
    """A time-with-time-zone text Python cannot hold (``24:00:00+00``) as UTC MySQL TIME text."""
    m = _CLOCK_TZ.fullmatch(value)
    if m is None:
        raise BadValue(f"{value!r} is not a time with time zone")
    h, mi, sec, frac, sign, oh, om, os_ = m.groups()
    offset = int(oh) * 3600 + int(om or 0) * 60 + int(os_ or 0)
    utc = int(h) * 3600 + int(mi) * 60 + int(sec) - (offset if sign == "+" else -offset)
    if not 0 <= utc <= 86_400:
        utc %= 86_400  # the UTC time of day, as for values Python holds
    return f"{utc // 3600:02d}:{utc // 60 % 60:02d}:{utc % 60:02d}{frac or ''}"


def _utc_time(value: Any) -> Any:
    if isinstance(value, str):
        return _utc_text(value)
    if isinstance(value, time) and value.tzinfo is not None:
        offset = value.utcoffset()
        moment = datetime.combine(datetime(2000, 1, 1), value.replace(tzinfo=None))
        return (moment - offset).time() if offset else value.replace(tzinfo=None)
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _uuid_text(value: Any) -> str:
    return str(value) if isinstance(value, UUID) else str(UUID(str(value)))


# -- the rule table: portable kind -> MySQL -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    sql: str
    type: Type
    fidelity: Fidelity = Fidelity.EXACT
    reason: str | None = None
    adapt: Adapter | None = None

    def target(self) -> TargetType:
        return TargetType(
            self.sql, self.type.with_native(self.sql), self.fidelity, self.reason, self.adapt
        )


_INT_SQL = {8: "tinyint", 16: "smallint", 32: "int", 64: "bigint"}
_NO_NAN_DECIMAL = "NaN and Infinity have no MySQL DECIMAL form: rows holding them are refused"
_NO_INFINITY = (
    "infinity, BC and year > 9999 values (PostgreSQL) have no MySQL form: rows holding them "
    "are refused"
)


def _int_rule(t: Type) -> _Rule:
    bits = t.bits or 64
    if bits > 64:
        return _Rule("decimal(65,0)", Type.decimal(65, 0), reason="stored as DECIMAL(65,0)")
    sql = _INT_SQL.get(bits, "bigint") + (" unsigned" if t.unsigned else "")
    return _Rule(sql, Type.int_(bits, unsigned=t.unsigned))


def _decimal_rule(t: Type) -> _Rule:
    p, s = t.precision, t.scale or 0
    if p is not None and p <= 65 and 0 <= s <= 30 and s <= p:
        sql = f"decimal({p},{s})"
        return _Rule(sql, Type.decimal(p, s), Fidelity.LOSSY, _NO_NAN_DECIMAL, _decimal_check(p, s))
    why = "unbounded numeric" if p is None else f"decimal({p},{s})"
    return _Rule(
        "decimal(65,30)",
        Type.decimal(65, 30),
        Fidelity.LOSSY,
        f"{why} stored as DECIMAL(65,30): values with more than 35 integer or 30 fractional "
        "digits, NaN and Infinity are refused",
        _decimal_check(65, 30),
    )


def _float_rule(t: Type) -> _Rule:
    sql = "float" if (t.bits or 64) <= 32 else "double"
    return _Rule(
        sql,
        Type.float_(t.bits or 64),
        Fidelity.LOSSY,
        "NaN and Infinity have no MySQL FLOAT/DOUBLE form: rows holding them are refused; "
        "-0.0 is stored as 0",
        _finite,
    )


def _string_rule(t: Type) -> _Rule:
    n = t.length
    if n is not None and n <= _MAX_VARCHAR:
        # not char(n): MySQL strips a CHAR's trailing spaces on read, PostgreSQL pads
        # character(n) on read, SQLite keeps them; varchar(n) keeps what the source read
        why = "fixed-length text stored as varchar: values read back as the source reads them"
        return _Rule(f"varchar({n})", Type.string(n), reason=why if t.fixed else None)
    return _Rule("longtext", Type.text(), reason=f"length {n} not enforced (longtext)")


def _bytes_rule(t: Type) -> _Rule:
    n = t.length
    if n is not None and t.fixed and n <= 255:
        return _Rule(
            f"binary({n})",
            Type.bytes_(n, fixed=True),
            reason="shorter values are padded with zero bytes (BINARY)",
        )
    if n is not None and n <= 255:
        return _Rule(f"varbinary({n})", Type.bytes_(n))
    return _Rule("longblob", Type.bytes_())


def _time_rule(t: Type) -> _Rule:
    p = min(t.precision if t.precision is not None else 6, 6)
    fidelity, reason = Fidelity.EXACT, None
    if t.precision is not None and t.precision > 6:
        fidelity, reason = Fidelity.LOSSY, "fractions below 1 microsecond rounded"
    if t.kind is Kind.TIME:
        if t.tz:
            return _Rule(
                f"time({p})",
                Type.time(p),
                Fidelity.LOSSY,
                "time with time zone stored as UTC time of day (offset dropped)",
                _utc_time,
            )
        return _Rule(f"time({p})", Type.time(p), fidelity, reason)
    if t.tz:
        return _Rule(
            f"timestamp({p})",
            Type.timestamp(p, tz=True),
            Fidelity.LOSSY,
            "MySQL TIMESTAMP holds 1970-01-01 00:00:01 .. 2038-01-19 03:14:07 UTC; other "
            "instants, infinity and BC values are refused",
            _instant,
        )
    return _Rule(
        f"datetime({p})",
        Type.timestamp(p),
        Fidelity.LOSSY,
        "; ".join(r for r in (reason, _NO_INFINITY) if r),
        _not_text,
    )


def _enum_rule(t: Type) -> _Rule:
    sql = "enum(" + ", ".join(DIALECT.literal(v) for v in t.values) + ")"
    return _Rule(sql, Type.enum(t.values))


_RULES: dict[Kind, Callable[[Type], _Rule]] = {
    Kind.BOOL: lambda t: _Rule("tinyint(1)", Type.bool_(), reason="stored as 0/1"),
    Kind.INT: _int_rule,
    Kind.DECIMAL: _decimal_rule,
    Kind.FLOAT: _float_rule,
    Kind.STRING: _string_rule,
    Kind.TEXT: lambda t: _Rule("longtext", Type.text()),
    Kind.BYTES: _bytes_rule,
    Kind.DATE: lambda t: _Rule("date", Type.date(), Fidelity.LOSSY, _NO_INFINITY, _not_text),
    Kind.TIME: _time_rule,
    Kind.TIMESTAMP: _time_rule,
    Kind.INTERVAL: lambda t: _Rule(
        "varchar(64)", Type.string(64), Fidelity.LOSSY, "stored as ISO 8601 duration text"
    ),
    Kind.JSON: lambda t: _Rule(
        "json", Type.json(binary=t.binary), reason="MySQL 8 normalises JSON text; MariaDB keeps it"
    ),
    Kind.UUID: lambda t: _Rule(
        "char(36)",
        Type.string(36, fixed=True),
        reason="stored as 36-character text",
        adapt=_uuid_text,
    ),
    Kind.ENUM: _enum_rule,
    Kind.ARRAY: lambda t: _Rule(
        "json",
        Type.json(),
        Fidelity.LOSSY,
        "stored as a JSON array; element types not enforced",
        _to_json,
    ),
    Kind.OTHER: lambda t: _Rule(
        "longtext", Type.text(), Fidelity.LOSSY, f"{t.native or t} stored as its text form"
    ),
}


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _same_dialect_adapter(t: Type) -> Adapter | None:
    if t.kind is Kind.TIMESTAMP and t.tz:
        return _naive_utc  # the session's time zone is UTC
    if t.kind is Kind.OTHER and _base(t.native) in GEOMETRY_TYPES:
        from replikit.endpoints.mysql._values import ewkb_to_internal

        return ewkb_to_internal
    return None


def _base(native: str) -> str:
    m = _TYPE.match(native.lower())
    return m.group("base").strip() if m else native.lower()


class MysqlDialect(NamedByRules):
    """Quoting, identifier rules, type rules and default translation for MySQL and MariaDB."""

    name: str = NAME
    identifiers = IDENTIFIERS
    limits = LIMITS

    def quote(self, identifier: str) -> str:
        """Backquote ``identifier`` (embedded backquotes doubled); NUL is refused."""
        if not isinstance(identifier, str) or "\x00" in identifier:
            raise ConfigError(f"invalid MySQL identifier {identifier!r} (NUL character)")
        return "`" + identifier.replace("`", "``") + "`"

    def literal(self, text: str) -> str:
        """A SQL string literal for DDL, valid whatever ``NO_BACKSLASH_ESCAPES`` says."""
        if "\x00" in text:
            raise ConfigError(f"SQL literal {text!r} contains a NUL character")
        if "\\" in text:
            return "X'" + text.encode().hex() + "'"  # no escape-mode dependency
        return "'" + text.replace("'", "''") + "'"

    def parse_type(self, native: str) -> Type:
        """The portable meaning of a MySQL column type (``COLUMN_TYPE`` spelling)."""
        text = native.strip()
        core = re.sub(r"\s+(on update .*|zerofill)$", "", text, flags=re.I | re.S)
        m = _TYPE.match(core)
        if m is None:
            return Type.other(text)
        base = " ".join(m.group("base").lower().split())
        return _parse(base, m.group("args"), m.group("rest").lower(), text)

    def target_type(self, source: Type, source_dialect: str) -> TargetType:
        """Native type, verdict, reason and value adapter for a column of ``source`` type."""
        if source_dialect == NAME and source.native:
            return TargetType(source.native, source, adapt=_same_dialect_adapter(source))
        return _RULES[source.kind](source).target()

    def convert_default(self, column: Column, source_dialect: str) -> str | None:
        """A MySQL default for ``column``'s default, or ``None`` when it does not translate."""
        if column.default is None:
            return None
        if source_dialect == NAME:
            return column.default
        return _convert_default(column.default.strip(), column.type)


def _unwrap(text: str) -> str:
    while True:
        m = _CAST.match(text)
        if m and (_STRING.match(m.group(1)) or _NUMBER.match(m.group(1))):
            text = m.group(1).strip()
        elif text.startswith("(") and text.endswith(")"):
            text = text[1:-1].strip()
        else:
            return text


def _convert_default(expr: str, type_: Type) -> str | None:
    text = _unwrap(expr)
    low = text.lower()
    now = _NOW.match(low)
    if now and type_.kind is Kind.TIMESTAMP:
        return "CURRENT_TIMESTAMP" + (f"({now.group(3)})" if now.group(3) else "")
    if low in ("null", "true", "false"):
        if type_.kind is Kind.BOOL or low == "null":
            return {"null": "NULL", "true": "1", "false": "0"}[low]
        return None
    if _NUMBER.match(text) and type_.kind in (Kind.INT, Kind.DECIMAL, Kind.FLOAT, Kind.BOOL):
        return text
    if text.startswith("'") and text.endswith("'") and re.fullmatch(r"'(?:[^']|'')*'", text):
        inner = text[1:-1].replace("''", "'")
        if type_.kind is Kind.BOOL:
            flag = {"t": "1", "true": "1", "1": "1", "f": "0", "false": "0", "0": "0"}
            return flag.get(inner.lower())
        if type_.kind in (Kind.TEXT, Kind.BYTES, Kind.JSON, Kind.ARRAY, Kind.OTHER):
            return None  # MySQL accepts no literal default on TEXT/BLOB/JSON before 8.0.13
        return DIALECT.literal(inner)
    return None


DIALECT: Final = MysqlDialect()

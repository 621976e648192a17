"""The MongoDB "dialect": BSON types <-> portable types, field and collection names (no driver).

A MongoDB target has no DDL types; a column's "native type" is the BSON type its values are
stored as (the ``$type`` alias). What each portable type becomes:

=====================  ==================  ========  ==========================================
portable               BSON                fidelity  note
=====================  ==================  ========  ==========================================
bool                   bool                exact
int8/16/32             int                 exact
int64, uint8/16/32     long                exact
uint64                 decimal             exact     Decimal128 (a long cannot hold 2**63..)
decimal(p<=34,s)       decimal             exact     Decimal128, NaN and infinities included
decimal(p>34), numeric decimal             lossy     over 34 significant digits is refused
float32/64             double              exact
string(n), text, enum  string              exact     MongoDB keeps no length
bytes                  binData             exact     subtype 0
uuid                   binData (uuid)      exact     subtype 4
date                   date                exact     UTC midnight; infinity/BC refused by value
time                   string              exact     ISO text ``HH:MM:SS[.ffffff]``
timestamp(p<=3) (tz)   date                exact     UTC (a naive one is taken as UTC)
timestamp(p>3) (tz)    date                lossy     BSON dates hold milliseconds
interval               string              exact     ISO 8601 duration text
json                   object / array      exact     embedded document; the JSON text is
                                                     normalised (spacing, key order kept)
array                  array               as item
other                  string              lossy     the source's text form
=====================  ==================  ========  ==========================================

Field names: MongoDB reserves ``_id``; a column name containing ``.`` or starting with ``$``
cannot be addressed by updates (refused before anything is created).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from replikit.schema.convert import Fidelity, TargetType, map_list
from replikit.schema.limits import Limits
from replikit.schema.model import Column
from replikit.schema.names import IdentifierRules, NamedByRules
from replikit.schema.types import Kind, Type

__all__ = ["DIALECT", "LIMITS", "MAX_DIGITS", "NAME", "MongoDialect", "bson_type"]

NAME: Final = "mongodb"
#: significant digits of a Decimal128
MAX_DIGITS: Final = 34
#: MongoDB's largest document (BSON bytes)
MAX_DOCUMENT: Final = 16 * 1024 * 1024


def _name_problem(name: str, kind: str) -> str | None:
    if kind == "column":
        if "." in name:
            return "MongoDB field names used by replikit cannot contain '.' (a path separator)"
        if name.startswith("$"):
            return "MongoDB field names cannot start with '$' (an operator)"
    if kind in ("table", "schema") and "$" in name:
        return "MongoDB database and collection names cannot contain '$'"
    if kind == "schema" and any(c in name for c in '/\\. "'):
        return 'MongoDB database names cannot contain / \\ . space or "'
    if kind == "table" and name.startswith("system."):
        return "MongoDB reserves collection names starting with 'system.'"
    return None


#: names are kept as written and compared exactly; a namespace (db.collection) is at most
#: 255 bytes, a database name at most 63 (checked for tables and schemas alike: the limit on
#: a name on its own)
IDENTIFIERS: Final = IdentifierRules(
    "MongoDB", max_length=255, length_unit="bytes", extra_problem=_name_problem
)

LIMITS: Final = Limits(
    "MongoDB",
    max_value_bytes=MAX_DOCUMENT,
    value_limit="the BSON document size limit (16 MiB)",
    foreign_keys=False,
    no_foreign_keys="has no foreign keys",
)

_NATIVE: dict[str, Callable[[], Type]] = {
    "bool": Type.bool_,
    "int": lambda: Type.int_(32),
    "long": lambda: Type.int_(64),
    "double": lambda: Type.float_(64),
    "decimal": lambda: Type.decimal(),
    "string": Type.text,
    "binData": Type.bytes_,
    "uuid": Type.uuid,
    "date": lambda: Type.timestamp(3, tz=True),
    "objectId": lambda: Type.string(24),
    "object": Type.json,
    "array": Type.json,
}


def bson_type(native: str) -> Type:
    """The portable meaning of a BSON type alias (``other`` for ones without a portable
    form: regex, javascript, timestamp, minKey... read as their Extended JSON text)."""
    make = _NATIVE.get(native)
    return (make() if make else Type.other(native)).with_native(native)


# -- value adapters: canonical Python value -> what pymongo encodes ---------------------------
def _decimal128(value: Any) -> Any:
    from bson.decimal128 import Decimal128

    return Decimal128(value if isinstance(value, Decimal) else Decimal(value))


def _date(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(f"date {value!r} is outside what a BSON date holds")
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


def _timestamp(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(f"timestamp {value!r} is outside what a BSON date holds")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _text(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.time) else str(value)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _uuid(value: Any) -> Any:
    from bson.binary import Binary, UuidRepresentation

    return Binary.from_uuid(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)),
                            UuidRepresentation.STANDARD)  # fmt: skip


def _bytes(value: Any) -> Any:
    return bytes(value)


def _rule(source: Type) -> TargetType:
    k = source.kind
    if k is Kind.BOOL:
        return TargetType("bool", Type.bool_("bool"))
    if k is Kind.INT:
        if (source.bits or 64) <= 32 and not source.unsigned:
            return TargetType("int", Type.int_(32, native="int"))
        if source.unsigned and (source.bits or 64) == 64:
            return TargetType("decimal", Type.decimal(20, 0, "decimal"), adapt=_decimal128)
        return TargetType("long", Type.int_(64, native="long"))
    if k is Kind.DECIMAL:
        if source.precision is not None and source.precision <= MAX_DIGITS:
            return TargetType("decimal", source.with_native("decimal"), adapt=_decimal128)
        return TargetType(
            "decimal",
            Type.decimal(native="decimal"),
            Fidelity.LOSSY,
            f"Decimal128 holds {MAX_DIGITS} significant digits; a longer value is refused",
            adapt=_decimal128,
        )
    if k is Kind.FLOAT:
        return TargetType("double", Type.float_(64, "double"))
    if k in (Kind.STRING, Kind.TEXT, Kind.ENUM):
        return TargetType("string", source.with_native("string"))
    if k is Kind.BYTES:
        return TargetType("binData", source.with_native("binData"), adapt=_bytes)
    if k is Kind.UUID:
        return TargetType("uuid", Type.uuid("uuid"), adapt=_uuid)
    if k is Kind.DATE:
        return TargetType("date", Type.date("date"), reason="stored as a UTC midnight date",
                          adapt=_date)  # fmt: skip
    if k is Kind.TIME:
        return TargetType("string", source.with_native("string"), reason="stored as ISO text",
                          adapt=_text)  # fmt: skip
    if k is Kind.TIMESTAMP:
        return _timestamp_rule(source)
    if k is Kind.INTERVAL:
        return TargetType("string", source.with_native("string"), adapt=_text)
    if k is Kind.JSON:
        return TargetType(
            "object",
            Type.json(native="object"),
            reason="stored as an embedded document or array (JSON spacing is not kept)",
            adapt=_json,
        )
    if k is Kind.ARRAY and source.item is not None:
        item = _rule(source.item)
        adapt = map_list(item.adapt) if item.adapt is not None else None
        return TargetType("array", Type.array(item.type, source.dims, "array"), item.fidelity,
                          item.reason, adapt)  # fmt: skip
    return TargetType("string", Type.text("string"), Fidelity.LOSSY,
                      f"{source} has no BSON type; its text form is stored", _text)  # fmt: skip


def _timestamp_rule(source: Type) -> TargetType:
    target = Type.timestamp(3, tz=source.tz, native="date")
    zone = "" if source.tz else "; the wall-clock time is stored as UTC"
    if source.precision is not None and source.precision <= 3:
        return TargetType("date", target, reason=f"a BSON date{zone}", adapt=_timestamp)
    return TargetType(
        "date",
        target,
        Fidelity.LOSSY,
        f"BSON dates hold milliseconds: digits below a millisecond are cut{zone}",
        adapt=_timestamp,
    )


class MongoDialect(NamedByRules):
    """BSON type rules, field and collection names of MongoDB."""

    name = NAME
    identifiers = IDENTIFIERS

    def quote(self, identifier: str) -> str:
        """Names are not quoted in MongoDB commands; returned as they are."""
        return identifier

    def qualified(self, schema: str | None, name: str) -> str:
        """``database.collection``."""
        return f"{schema}.{name}" if schema else name

    def target_type(self, source: Type, source_dialect: str) -> TargetType:
        """How ``source`` is stored in MongoDB (see the module docstring)."""
        rule = _rule(source)
        if source_dialect == NAME and source.kind is Kind.JSON:
            # JSON read from MongoDB (arrays, deep documents, mixed fields) goes back embedded
            return TargetType("object", source, reason=rule.reason, adapt=_json)
        return rule

    def parse_type(self, native: str) -> Type:
        """The portable meaning of a BSON type alias (an override target)."""
        return bson_type(native)

    def convert_default(self, column: Column, source_dialect: str) -> str | None:
        """MongoDB has no column defaults: none."""
        return None

    @property
    def limits(self) -> Limits:
        """MongoDB's limits: 16 MiB documents, no foreign keys."""
        return LIMITS


DIALECT: Final = MongoDialect()

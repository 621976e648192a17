"""Documents <-> rows, sans-IO: BSON type names, flattening, sampling, Extended JSON.

Nothing here talks to a server: the functions take decoded documents (as pymongo returns
them with :data:`CODEC` options: aware UTC dates, standard UUIDs, out-of-range dates kept)
and give rows of canonical values, and back. The reader, the change-stream decoder and the
tests share them.

Two ways to read a collection as a table:

* **document mode**: ``_id`` and ``_doc``, both canonical Extended JSON text (exact: every
  BSON type, ``int32``/``int64``/``double`` and ``Decimal128`` apart, field order kept);
* **table mode**: one column per field path of a sample (nested documents flattened to
  ``a.b`` up to a depth), each typed from the BSON types it held. A field whose values had
  several types is a JSON column (declared lossy with the mix seen); a value of a type its
  column does not hold, a field the sample did not see, and a field whose name holds ``.`` or
  starts with ``$`` go to the ``_overflow`` column (canonical Extended JSON), never dropped.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from replikit.endpoints.mongodb._dialect import bson_type
from replikit.schema.model import Column
from replikit.schema.types import Kind, Type

__all__ = [
    "DOC",
    "ID",
    "OVERFLOW",
    "Sample",
    "TableShape",
    "canonical",
    "from_canonical",
    "relaxed",
    "type_name",
]

ID: Final = "_id"
DOC: Final = "_doc"
OVERFLOW: Final = "_overflow"
#: the native type names of the columns replikit makes (they show in the plan)
DOCUMENT_NATIVE: Final = "document (canonical Extended JSON)"
ID_NATIVE: Final = "_id (canonical Extended JSON)"
OVERFLOW_NATIVE: Final = "overflow (canonical Extended JSON)"
_INTS = frozenset({"int", "long"})


def _json_util() -> Any:
    from bson import json_util

    return json_util


@functools.cache
def _options(base: str) -> Any:
    ju = _json_util()
    return getattr(ju, base).with_options(tz_aware=True, tzinfo=dt.UTC, uuid_representation=4)


def canonical(value: Any) -> str:
    """``value`` as canonical Extended JSON text (exact for every BSON type)."""
    return str(_json_util().dumps(value, json_options=_options("CANONICAL_JSON_OPTIONS")))


def relaxed(value: Any) -> str:
    """``value`` as relaxed Extended JSON: numbers as JSON numbers (``int32`` and ``int64``
    alike), ObjectIds, dates, decimals and binaries as ``{"$oid": ...}`` etc."""
    return str(_json_util().dumps(value, json_options=_options("RELAXED_JSON_OPTIONS")))


def from_canonical(text: str) -> Any:
    """The BSON value of Extended JSON ``text`` (canonical or relaxed)."""
    return _json_util().loads(text, json_options=_options("CANONICAL_JSON_OPTIONS"))


@functools.cache
def _exact_types() -> dict[type, str]:
    from bson import Decimal128, Int64, ObjectId

    return {
        type(None): "null",
        bool: "bool",
        Int64: "long",
        float: "double",
        str: "string",
        dict: "object",
        list: "array",
        ObjectId: "objectId",
        Decimal128: "decimal",
        dt.datetime: "date",
        uuid.UUID: "uuid",
        bytes: "binData",
    }


def type_name(value: Any) -> str:
    """The BSON ``$type`` alias of a decoded value (``binData.<n>`` for binary subtypes
    other than 0 and 4)."""
    if type(value) is int:
        return "int" if -(2**31) <= value < 2**31 else "long"
    exact = _exact_types().get(type(value))
    if exact is not None:
        return exact
    if isinstance(value, bool):
        return "bool"
    from bson import Binary, Decimal128, Int64, ObjectId
    from bson.datetime_ms import DatetimeMS

    if isinstance(value, Int64):
        return "long"
    if isinstance(value, int):
        return "int" if -(2**31) <= value < 2**31 else "long"
    if value is None:
        return "null"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, ObjectId):
        return "objectId"
    if isinstance(value, Decimal128):
        return "decimal"
    if isinstance(value, dt.datetime | DatetimeMS):
        return "date"
    if isinstance(value, uuid.UUID):
        return "uuid"
    if isinstance(value, Binary):
        return "binData" if value.subtype == 0 else f"binData.{value.subtype}"
    if isinstance(value, bytes):
        return "binData"
    return type(value).__name__.lower()  # regex, code, timestamp, minKey, maxKey, dbPointer


def odd_name(name: str) -> bool:
    """A field name table mode does not make a column of (a path separator or an operator)."""
    return not name or "." in name or name.startswith("$")


Segments = tuple[str, ...]


def flatten(doc: Mapping[str, Any], depth: int) -> tuple[dict[str, Any], dict[Segments, Any]]:
    """``doc``'s field paths (``a.b``) and values, nested documents opened up to ``depth``
    levels, and the fields with odd names (:func:`odd_name`) set aside by their path as a
    tuple of names (a name may hold ``.``: ``("a", "x.y")`` is not ``("a", "x", "y")``)."""
    flat: dict[str, Any] = {}
    odd: dict[Segments, Any] = {}
    _flatten(doc, (), depth, flat, odd)
    return flat, odd


def _flatten(
    doc: Mapping[str, Any],
    prefix: Segments,
    depth: int,
    flat: dict[str, Any],
    odd: dict[Segments, Any],
) -> None:
    for name, value in doc.items():
        path = (*prefix, name)
        if odd_name(name):
            odd[path] = value
        elif isinstance(value, Mapping) and value and depth > 0 and path != (ID,):
            _flatten(value, path, depth - 1, flat, odd)
        else:
            flat[".".join(path)] = value


def nest(fields: Mapping[Segments, Any]) -> dict[str, Any]:
    """The partial document holding ``fields`` (path as a tuple of names -> value)."""
    doc: dict[str, Any] = {}
    for path, value in fields.items():
        at = doc
        for name in path[:-1]:
            at = at.setdefault(name, {})
        at[path[-1]] = value
    return doc


# -- column types from what a sample held -----------------------------------------------------
def _mix(types: Counter[str]) -> str:
    ordered = sorted(types.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} x{n}" for name, n in ordered)


def column_type(types: Counter[str]) -> tuple[Type, str | None]:
    """The portable type of a field that held ``types`` (null not counted), and the lossy
    reason when the types were mixed."""
    seen = {t for t in types if t != "null"}
    if not seen:
        return Type.text("null"), None
    if seen <= _INTS:
        return Type.int_(64, native="/".join(sorted(seen))), None
    if len(seen) == 1:
        [name] = seen
        kind = bson_type(name)
        if kind.kind is Kind.JSON:
            return Type.json(native=f"{name} (relaxed Extended JSON)"), None
        if kind.kind is Kind.OTHER:
            return Type.text(native=f"{name} (canonical Extended JSON)"), None
        return kind, None
    mix = _mix(Counter({t: n for t, n in types.items() if t != "null"}))
    return Type.json(native=f"mixed({mix})"), (
        f"values of several BSON types were sampled ({mix}); the column holds each value "
        "as relaxed Extended JSON"
    )


@dataclass
class Sample:
    """What a sample of documents held: BSON types per field path (table mode)."""

    depth: int
    documents: int = 0
    fields: dict[str, Counter[str]] = field(default_factory=dict)
    odd: set[str] = field(default_factory=set)
    #: the earliest place each path took in a document (its column's place)
    places: dict[str, int] = field(default_factory=dict)

    def add(self, doc: Mapping[str, Any]) -> None:
        """Count one document's field types."""
        self.documents += 1
        flat, odd = flatten(doc, self.depth)
        self.odd.update(".".join(p) for p in odd)
        for place, (path, value) in enumerate(flat.items()):
            self.fields.setdefault(path, Counter())[type_name(value)] += 1
            self.places[path] = min(place, self.places.get(path, place))

    def columns(self) -> tuple[list[Column], dict[str, str]]:
        """The columns (``_id`` first, then by the earliest place a field took in a
        document, then by name: the same order whatever order the sample came in) and the
        lossy reason of each mixed one."""
        columns: list[Column] = []
        mixed: dict[str, str] = {}
        for path in sorted(self.fields, key=lambda p: (p != ID, self.places[p], p)):
            kind, why = column_type(self.fields[path])
            if path == ID and kind.kind is Kind.STRING and kind.native == "objectId":
                kind = Type.string(24, native="objectId")
            columns.append(Column(path, kind, nullable=path != ID))
            if why is not None:
                mixed[path] = why
        if ID not in self.fields:
            columns.insert(0, Column(ID, Type.string(24, native="objectId"), nullable=False))
        return columns, mixed


# -- BSON value -> canonical value of a column ------------------------------------------------
_ALLOWED: dict[Kind, frozenset[str]] = {
    Kind.BOOL: frozenset({"bool"}),
    Kind.INT: _INTS,
    Kind.FLOAT: frozenset({"double"}),
    Kind.DECIMAL: frozenset({"decimal"}),
    Kind.STRING: frozenset({"string"}),
    Kind.TEXT: frozenset({"string"}),
    Kind.BYTES: frozenset({"binData"}),
    Kind.UUID: frozenset({"uuid"}),
    Kind.TIMESTAMP: frozenset({"date"}),
    Kind.DATE: frozenset({"date"}),
    Kind.TIME: frozenset({"string"}),
    Kind.INTERVAL: frozenset({"string"}),
    Kind.ENUM: frozenset({"string"}),
    Kind.ARRAY: frozenset({"array"}),
    Kind.OTHER: frozenset({"string"}),
}


def accepted(t: Type) -> frozenset[str] | None:
    """The BSON types a column of type ``t`` (as table mode or a replikit record made it)
    holds as they are (``None``: every type); other values go to the overflow column."""
    native = t.native
    if native.startswith("mixed(") or t.kind is Kind.JSON:
        return None
    if native == "null":
        return frozenset()
    if native.endswith("(canonical Extended JSON)"):
        return frozenset({native.partition(" ")[0]})
    if t.kind is Kind.STRING and native == "objectId":
        return frozenset({"objectId"})
    return _ALLOWED.get(t.kind, frozenset())


def accepts(t: Type, value: Any) -> bool:
    """Whether a column of type ``t`` holds ``value`` as it is (:func:`accepted`)."""
    if value is None:
        return True
    allowed = accepted(t)
    return allowed is None or type_name(value) in allowed


def to_canonical(t: Type, value: Any) -> Any:
    """The canonical Python value of BSON ``value`` in a column of type ``t``
    (:func:`accepts` holds)."""
    if value is None:
        return None
    k = t.kind
    if t.native.startswith("mixed(") or k is Kind.JSON:
        if t.native in ("object", "array"):  # a replikit JSON column: embedded JSON back
            return _plain_json(value)
        return relaxed(value)
    if t.native.endswith("(canonical Extended JSON)"):
        return canonical(value)
    if k is Kind.INT:
        return int(value)
    if k is Kind.DECIMAL:
        return value.to_decimal() if hasattr(value, "to_decimal") else Decimal(value)
    if k is Kind.STRING and t.native == "objectId":
        return str(value)
    if k is Kind.BYTES:
        return bytes(value)
    if k is Kind.TIMESTAMP:
        return _instant(value, t.tz)
    if k is Kind.DATE:
        return _instant(value, True).date() if isinstance(value, dt.datetime) else str(value)
    if k is Kind.TIME:
        return dt.time.fromisoformat(value)
    if k is Kind.ARRAY and t.item is not None:
        item = t.item
        return [to_canonical(item, x) if not isinstance(x, list) else
                to_canonical(Type.array(item, 1), x) for x in value]  # fmt: skip
    return value


def _instant(value: Any, tz: bool) -> Any:
    if not isinstance(value, dt.datetime):  # a date Python cannot hold (DatetimeMS)
        return canonical(value)
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return aware if tz else aware.astimezone(dt.UTC).replace(tzinfo=None)


def _plain_json(value: Any) -> str:
    import json

    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    from bson import Decimal128

    if isinstance(value, Decimal128):
        return float(value.to_decimal())
    return relaxed(value)


# -- rows of one collection -------------------------------------------------------------------
@dataclass(frozen=True)
class TableShape:
    """How the documents of one collection become rows, and rows documents.

    ``key`` names the columns ``_id`` holds: ``("_id",)`` for a sampled collection, the
    primary key of a table replikit wrote (one column: ``_id`` is its value; several: ``_id``
    is a subdocument of them). ``mode`` is ``"document"`` or ``"table"``; ``overflow``:
    the table has the ``_overflow`` column.
    """

    columns: tuple[Column, ...]
    key: tuple[str, ...] = (ID,)
    mode: str = "table"
    depth: int = 2
    overflow: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in order."""
        return tuple(c.name for c in self.columns)

    def row(self, doc: Mapping[str, Any]) -> list[Any]:
        """The row of ``doc`` (canonical values in column order).

        Raises:
            ValueError: a field or value fits no column and the table has no overflow column
                (the message names the field).
        """
        if self.mode == "document":
            return [canonical(doc.get(ID)), canonical(doc)]
        values = dict(self._keyed(doc))
        rest = {k: v for k, v in doc.items() if k != ID}
        flat, extra = flatten(rest, self.depth)
        readers = self._readers
        for path, value in flat.items():
            reader = readers.get(path)
            if reader is not None and path not in values:
                allowed, t = reader
                if value is None:
                    values[path] = None
                    continue
                if allowed is None or type_name(value) in allowed:
                    values[path] = to_canonical(t, value)
                    continue
            extra[tuple(path.split("."))] = value  # segments of a flat path hold no "."
        row = [values.get(c.name) for c in self.columns]
        if extra:
            if not self.overflow:
                first = min(extra)
                raise ValueError(
                    f"field {'.'.join(first)!r} (BSON {type_name(extra[first])}) fits no "
                    "column of the table and it has no overflow column; read the collection "
                    "with overflow=True (kept in _overflow) or mode='document'"
                )
            row[-1] = canonical(nest(extra))
        return row

    def _keyed(self, doc: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
        ident = doc.get(ID)
        if self.key == (ID,):
            col = self._by_name[ID]
            if not accepts(col.type, ident):
                raise ValueError(
                    f"_id {ident!r} (BSON {type_name(ident)}) does not fit the _id column "
                    f"({col.type.native or col.type}); read the collection in document mode"
                )
            yield ID, to_canonical(col.type, ident)
        elif len(self.key) == 1:
            yield self.key[0], to_canonical(self._by_name[self.key[0]].type, ident)
        else:
            parts = ident if isinstance(ident, Mapping) else {}
            for name in self.key:
                yield name, to_canonical(self._by_name[name].type, parts.get(name))

    @functools.cached_property
    def _by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    @functools.cached_property
    def _readers(self) -> dict[str, tuple[frozenset[str] | None, Type]]:
        """Per column (but the key's and the overflow's): the BSON types it holds, its type."""
        skip = {*self.key, ID, OVERFLOW}
        return {c.name: (accepted(c.type), c.type) for c in self.columns if c.name not in skip}

    def key_of(self, doc_id: Any) -> dict[str, Any]:
        """The key columns of a document whose ``_id`` is ``doc_id``."""
        if self.mode == "document":
            return {ID: canonical(doc_id)}
        return dict(self._keyed({ID: doc_id}))


def document_columns() -> tuple[Column, ...]:
    """The two columns of document mode."""
    return (
        Column(ID, Type.text(ID_NATIVE), nullable=False),
        Column(DOC, Type.json(native=DOCUMENT_NATIVE), nullable=False),
    )


def overflow_column() -> Column:
    """The column that keeps what no other column holds."""
    return Column(OVERFLOW, Type.json(native=OVERFLOW_NATIVE))


def document_of(row: Mapping[str, Any], key: Sequence[str]) -> dict[str, Any]:
    """The document of a row (already adapted values) keyed by ``key``: the key's one
    value or a subdocument of several is ``_id``; other columns are top-level fields."""
    if len(key) == 1:
        doc: dict[str, Any] = {ID: row[key[0]]}
    else:
        doc = {ID: {k: row[k] for k in key}}
    doc.update((k, v) for k, v in row.items() if k not in key)
    return doc

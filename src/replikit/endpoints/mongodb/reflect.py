"""MongoDB reflection: databases as schemas, collections as tables, indexes reported.

A collection replikit wrote has a record in its database's ``replikit_tables`` collection
(the columns, their portable types and the key the table came with): it reads back as that
table. Any other collection is read in the endpoint's mode: ``document`` (``_id``, ``_doc``)
or ``table`` (columns from a sample of ``sample_size`` documents, :mod:`._documents`).
Indexes other than ``_id_`` are reported (key fields, unique); ``estimated_rows`` is the
collection's metadata count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

from replikit.endpoints.mongodb import _documents as d
from replikit.endpoints.mongodb._connect import Client, translated
from replikit.mapping import Selection
from replikit.schema.model import Catalog, Column, Index, TableId, TableSchema
from replikit.schema.types import Kind, Type

__all__ = [
    "CONTROL",
    "RECORDS",
    "Reflected",
    "reflect_catalog",
    "type_from_dict",
    "type_to_dict",
]

log = logging.getLogger("replikit.mongodb")

#: where replikit records the tables it wrote (one per database)
RECORDS: Final = "replikit_tables"
#: collections of replikit itself, never reflected as user tables
CONTROL: Final = frozenset(
    {RECORDS, "replikit_checkpoints", "replikit_suspended_tables", "replikit_apply_exceptions"}
)
_SYSTEM_DATABASES: Final = frozenset({"admin", "local", "config"})


def type_to_dict(t: Type) -> dict[str, Any]:
    """A portable type as a plain document (stored in a table record)."""
    out: dict[str, Any] = {}
    for f in fields(t):
        value = getattr(t, f.name)
        if f.name == "item":
            value = None if value is None else type_to_dict(value)
        elif f.name == "values":
            value = list(value)
        elif f.name == "kind":
            value = value.value
        out[f.name] = value
    return out


def type_from_dict(doc: Mapping[str, Any]) -> Type:
    """The portable type of :func:`type_to_dict`."""
    values = dict(doc)
    values["kind"] = Kind(values["kind"])
    values["values"] = tuple(values.get("values") or ())
    if values.get("item") is not None:
        values["item"] = type_from_dict(values["item"])
    known = {f.name for f in fields(Type)}
    return Type(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class Reflected:
    """How the reader reads each reflected table (shape), and the plan's source findings."""

    shapes: dict[TableId, d.TableShape] = field(default_factory=dict)
    #: (table, column) -> why the column is lossy (mixed BSON types in the sample)
    mixed: dict[tuple[TableId, str], str] = field(default_factory=dict)


def _record_table(tid: TableId, record: Mapping[str, Any]) -> tuple[TableSchema, d.TableShape]:
    columns = tuple(
        Column(c["name"], type_from_dict(c["type"]), nullable=bool(c.get("nullable", True)))
        for c in record["columns"]
    )
    key = tuple(record["key"])
    table = TableSchema(tid, columns, primary_key=key)
    return table, d.TableShape(columns, key=key, depth=0, overflow=False)


def _sampled(
    coll: Any, tid: TableId, mode: str, size: int, depth: int, overflow: bool
) -> tuple[tuple[Column, ...], d.TableShape, dict[str, str]]:
    if mode == "document":
        whole = d.document_columns()
        return whole, d.TableShape(whole, mode="document"), {}
    sample = d.Sample(depth)
    for doc in coll.aggregate([{"$sample": {"size": size}}]):
        sample.add(doc)
    columns, mixed = sample.columns()
    if overflow:
        columns.append(d.overflow_column())
    if sample.odd:
        log.info("%s: fields %s go to the overflow column (names with '.' or '$')",
                 tid, sorted(sample.odd))  # fmt: skip
    shape = d.TableShape(tuple(columns), depth=depth, overflow=overflow)
    return tuple(columns), shape, mixed


def _indexes(coll: Any, names: set[str]) -> tuple[tuple[Index, ...], tuple[tuple[str, ...], ...]]:
    indexes, unique = [], []
    for spec in coll.list_indexes():
        keys = tuple(str(k) for k in spec["key"])
        if keys == (d.ID,) or spec.get("name") == "_id_":
            continue
        kinds = {v for v in spec["key"].values()}
        method = None if kinds <= {1, -1} else ",".join(str(v) for v in sorted(kinds, key=str))
        is_unique = bool(spec.get("unique"))
        partial = spec.get("partialFilterExpression")
        where = None if partial is None else d.relaxed(partial)
        indexes.append(Index(str(spec["name"]), keys, is_unique, where=where, method=method))
        if is_unique and where is None and method is None and set(keys) <= names:
            unique.append(keys)
    return tuple(indexes), tuple(unique)


def reflect_catalog(
    client: Client,
    databases: Sequence[str] | None,
    selection: Selection | None,
    *,
    mode: str,
    sample_size: int,
    depth: int,
    overflow: bool | None,
) -> tuple[Catalog, Reflected]:
    """The selected collections of ``databases`` (``None``: every user database) as tables."""
    tables: list[TableSchema] = []
    reflected = Reflected()
    with translated(client, "list the collections of"):
        names = list(databases) if databases else _user_databases(client)
        for db_name in names:
            db = client.database(db_name)
            records = {r["_id"]: r for r in db[RECORDS].find()} if RECORDS in _colls(db) else {}
            for coll_name in sorted(_colls(db)):
                tid = TableId(db_name, coll_name)
                if coll_name in CONTROL or coll_name.startswith("system."):
                    continue
                if selection is not None and not selection.matches(tid):
                    continue
                record = records.get(coll_name)
                table = _table(db[coll_name], tid, record, reflected, mode=mode,
                               size=sample_size, depth=depth, overflow=overflow)  # fmt: skip
                tables.append(table)
    return Catalog(tables=tuple(tables)), reflected


def _table(
    coll: Any,
    tid: TableId,
    record: Mapping[str, Any] | None,
    reflected: Reflected,
    *,
    mode: str,
    size: int,
    depth: int,
    overflow: bool | None,
) -> TableSchema:
    if record is not None and mode == "table":
        table, shape = _record_table(tid, record)
        if overflow:
            columns = (*table.columns, d.overflow_column())
            table = TableSchema(tid, columns, primary_key=table.primary_key)
            shape = d.TableShape(columns, key=shape.key, depth=0, overflow=True)
    else:
        columns, shape, mixed = _sampled(coll, tid, mode, size, depth, overflow is not False)
        reflected.mixed.update({(tid, c): why for c, why in mixed.items()})
        table = TableSchema(tid, columns, primary_key=(d.ID,))
    reflected.shapes[tid] = shape
    indexes, unique = _indexes(coll, set(table.column_names))
    return TableSchema(
        tid,
        table.columns,
        primary_key=table.primary_key,
        unique=unique,
        indexes=indexes,
        estimated_rows=int(coll.estimated_document_count()),
    )


def _colls(db: Any) -> list[str]:
    return [str(n) for n in db.list_collection_names()]


def _user_databases(client: Client) -> list[str]:
    return sorted(n for n in client.get().list_database_names() if n not in _SYSTEM_DATABASES)


def records_for(columns: Iterable[Column], key: Sequence[str]) -> dict[str, Any]:
    """The record of a table replikit writes (its columns, types and key)."""
    return {
        "columns": [
            {"name": c.name, "type": type_to_dict(c.type), "nullable": c.nullable} for c in columns
        ],
        "key": list(key),
        "version": 1,
    }

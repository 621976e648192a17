"""The layout of a files target (no pyarrow import): folders, file names and ``_schema.json``.

::

    <root>/_replikit_manifest.json           checkpoints and committed change files (CDC)
    <root>/<schema>/<table>/_schema.json       the table's columns, portable types and keys
    <root>/<schema>/<table>/LOAD00000001.parquet   full load, rolled at ``file_size``
    <root>/<schema>/<table>/CDC00000000000042.parquet   changes (DMS layout), in apply order
    <root>/<schema>/<table>/<col>_month=2024-01/LOAD00000001.parquet   with ``partition_by``

A table id without a schema is ``<root>/<table>/``. Names starting with ``_`` or ``.`` are
hidden from readers (Spark, DuckDB, Athena and pyarrow datasets skip them): the schema file,
the manifest and files being written (``.LOAD00000001.parquet.<random>.tmp``) are never read
as data.

``_schema.json`` is this module's "DDL": it holds the planned target table (portable types,
nullability, primary key, unique keys, indexes, foreign keys), so reading the folder back
plans the same table, and a later run that would write a different shape is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any, Final

from replikit.errors import SchemaError
from replikit.schema.convert import TablePlan
from replikit.schema.model import Column, ForeignKey, Index, TableId, TableSchema
from replikit.schema.types import Kind, Type

__all__ = [
    "CHANGE_FILE",
    "LOAD_FILE",
    "MANIFEST",
    "SCHEMA_FILE",
    "change_name",
    "describe",
    "is_data_name",
    "load_name",
    "schema_from_json",
    "schema_to_json",
    "table_folder",
]

MANIFEST: Final = "_replikit_manifest.json"
SCHEMA_FILE: Final = "_schema.json"
EXTENSIONS: Final = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}
LOAD_FILE: Final = re.compile(r"^LOAD(\d{8})\.(parquet|csv|jsonl)$")
CHANGE_FILE: Final = re.compile(r"^CDC(\d{14})(?:-\d+)?\.(parquet|csv|jsonl)$")
_DATA = re.compile(r"\.(parquet|parq|pq|csv|jsonl|ndjson|json)(\.gz|\.zst|\.bz2)?$", re.I)
_VERSION: Final = 1


def table_folder(root: str, tid: TableId) -> str:
    """``root/schema/table`` (``root/table`` without a schema)."""
    parts = [root.rstrip("/")] + ([tid.schema] if tid.schema else []) + [tid.name]
    return "/".join(parts)


def load_name(n: int, fmt: str) -> str:
    """The name of the ``n``-th full-load file of a table (``LOAD00000001.parquet``)."""
    return f"LOAD{n:08d}{EXTENSIONS[fmt]}"


def change_name(seq: int, fmt: str) -> str:
    """The name of the change file of apply ``seq`` (``CDC00000000000042.parquet``)."""
    return f"CDC{seq:014d}{EXTENSIONS[fmt]}"


def is_data_name(name: str) -> bool:
    """A file readers of the folder see as data (not hidden, a known extension)."""
    return not name.startswith(("_", ".")) and bool(_DATA.search(name))


def describe(plan: TablePlan, root: str, fmt: str, partition: str | None) -> list[str]:
    """What preparing ``plan``'s table does, one line per step (the plan's "DDL")."""
    folder = table_folder(root, plan.target_id)
    cols = ", ".join(f"{c.name} {c.target.sql}" for c in plan.columns)
    part = f", partitioned by {partition}" if partition else ""
    return [
        f"folder {folder}/ ({fmt} files{part})",
        f"write {folder}/{SCHEMA_FILE}: {cols}",
    ]


# -- _schema.json ---------------------------------------------------------------------------
def _type_to(t: Type) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": t.kind.value}
    for f in fields(Type):
        if f.name in ("kind", "item"):
            continue
        value = getattr(t, f.name)
        if value != f.default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    if t.item is not None:
        out["item"] = _type_to(t.item)
    return out


def _type_from(d: dict[str, Any]) -> Type:
    args = {k: v for k, v in d.items() if k not in ("kind", "item", "values")}
    item = _type_from(d["item"]) if "item" in d else None
    return Type(Kind(d["kind"]), values=tuple(d.get("values", ())), item=item, **args)


def schema_to_json(table: TableSchema, fmt: str, partition: str | None) -> str:
    """``table`` as the text of its ``_schema.json``."""
    doc = {
        "replikit": _VERSION,
        "format": fmt,
        "partition_by": partition,
        "table": {"schema": table.id.schema, "name": table.id.name},
        "columns": [
            {"name": c.name, "type": _type_to(c.type), "nullable": c.nullable}
            | ({"comment": c.comment} if c.comment else {})
            for c in table.columns
        ],
        "primary_key": list(table.primary_key),
        "unique": [list(u) for u in table.unique],
        "indexes": [
            {"name": i.name, "columns": list(i.columns), "unique": i.unique}
            for i in table.indexes
            if i.columns and not i.expressions and not i.where
        ],
        "foreign_keys": [
            {
                "name": fk.name,
                "columns": list(fk.columns),
                "ref_table": {"schema": fk.ref_table.schema, "name": fk.ref_table.name},
                "ref_columns": list(fk.ref_columns),
                "on_delete": fk.on_delete,
                "on_update": fk.on_update,
            }
            for fk in table.foreign_keys
        ],
    }
    return json.dumps(doc, indent=1, ensure_ascii=False)


def _tid(d: dict[str, Any]) -> TableId:
    return TableId(d.get("schema"), d["name"])


def schema_from_json(text: str, tid: TableId, where: str) -> tuple[TableSchema, str, str | None]:
    """The table, format and partitioning a ``_schema.json`` describes (``tid``: the id of the
    folder it was found in). A damaged file is a :class:`SchemaError` naming it."""
    try:
        doc = json.loads(text)
        columns = tuple(
            Column(c["name"], _type_from(c["type"]), bool(c["nullable"]), comment=c.get("comment"))
            for c in doc["columns"]
        )
        table = TableSchema(
            tid,
            columns,
            primary_key=tuple(doc.get("primary_key", ())),
            unique=tuple(tuple(u) for u in doc.get("unique", ())),
            indexes=tuple(
                Index(i["name"], tuple(i["columns"]), bool(i.get("unique")))
                for i in doc.get("indexes", ())
            ),
            foreign_keys=tuple(
                ForeignKey(
                    fk.get("name"),
                    tuple(fk["columns"]),
                    _tid(fk["ref_table"]),
                    tuple(fk["ref_columns"]),
                    fk.get("on_delete"),
                    fk.get("on_update"),
                )
                for fk in doc.get("foreign_keys", ())
            ),
        )
        return table, str(doc.get("format", "parquet")), doc.get("partition_by")
    except (ValueError, KeyError, TypeError) as exc:
        raise SchemaError(
            f"{where} is damaged ({type(exc).__name__}: {exc}); remove the table's folder "
            "and load it again"
        ) from None


def shape_of(table: TableSchema) -> list[tuple[str, str, bool]]:
    """What two runs must agree on to write into one folder: name, type and nullability."""
    return [(c.name, c.type.describe(), c.nullable) for c in table.columns]


def shape_change(old: TableSchema, new: TableSchema) -> str | None:
    """How ``new`` differs from the folder's ``old`` columns (``None``: the same shape)."""
    before, after = shape_of(old), shape_of(new)
    if before == after:
        return None
    removed = [n for n, _, _ in before if n not in {m for m, _, _ in after}]
    added = [n for n, _, _ in after if n not in {m for m, _, _ in before}]
    changed = [
        f"{n} {t} -> {dict((m, u) for m, u, _ in after)[n]}"
        for n, t, _ in before
        if n not in removed and dict((m, u) for m, u, _ in after)[n] != t
    ]
    parts = []
    if added:
        parts.append(f"columns added: {', '.join(added)}")
    if removed:
        parts.append(f"columns removed: {', '.join(removed)}")
    if changed:
        parts.append(f"types changed: {', '.join(changed)}")
    if not parts:
        parts.append("column order or nullability changed")
    return "; ".join(parts)


def table_ids(paths: Iterable[Sequence[str]]) -> list[TableId]:
    """Table ids of relative folder paths (``(schema, table)`` or ``(table,)``)."""
    return [TableId(p[0], p[1]) if len(p) == 2 else TableId(None, p[0]) for p in paths]

"""The "DDL" of a MongoDB target: collections, indexes and table records, as commands.

MongoDB has no CREATE TABLE. A planned table becomes a collection, its unique keys and
indexes become indexes, and its columns, types and key are recorded in the database's
``replikit_tables`` collection, so the table reads back as it was written
(:mod:`.reflect`). :func:`commands` lists what ``prepare`` and ``finish`` do, in the shell's
spelling, for ``plan()``; each :class:`Command` also runs itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from replikit.endpoints.mongodb import _documents as d
from replikit.endpoints.mongodb.reflect import RECORDS, records_for
from replikit.schema.convert import TablePlan
from replikit.schema.types import Kind

__all__ = ["Command", "create", "document_mode", "drop", "index_commands", "truncate"]


@dataclass(frozen=True)
class Command:
    """One command on a database: its shell spelling and what runs it."""

    text: str
    run: Callable[[Any], object]

    def __str__(self) -> str:
        return self.text


def document_mode(plan: TablePlan) -> bool:
    """Whether ``plan``'s rows are whole documents: a table of exactly the columns ``_id``
    and ``_doc`` (JSON), as document mode reads a collection (directly, or after a trip
    through another database). Its rows are written back as the documents ``_doc`` holds
    (canonical Extended JSON), not as a table."""
    cols = plan.columns
    return (
        len(cols) == 2
        and (cols[0].name, cols[1].name) == (d.ID, d.DOC)
        and cols[1].source.type.kind is Kind.JSON
    )


def _q(name: str) -> str:
    return json.dumps(name)


def drop(plan: TablePlan) -> list[Command]:
    """Drop the collection and its record."""
    name = plan.target_id.name

    def run(db: Any) -> None:
        db.drop_collection(name)
        db[RECORDS].delete_one({d.ID: name})

    return [Command(f"db.getCollection({_q(name)}).drop()", run)]


def create(plan: TablePlan) -> list[Command]:
    """Create the collection and record its table (none for document mode)."""
    name = plan.target_id.name
    out = [Command(f"db.createCollection({_q(name)})", lambda db: db.create_collection(name))]
    if document_mode(plan):
        return out
    record = {d.ID: name, **records_for(plan.target_schema.columns, plan.target_schema.key)}
    out.append(
        Command(
            f"db.{RECORDS}.replaceOne({{_id: {_q(name)}}}, <columns, types and key>, "
            "{upsert: true})",
            lambda db: db[RECORDS].replace_one({d.ID: name}, record, upsert=True),
        )
    )
    return out


def truncate(plan: TablePlan) -> list[Command]:
    """Delete every document."""
    name = plan.target_id.name
    return [
        Command(
            f"db.getCollection({_q(name)}).deleteMany({{}})", lambda db: db[name].delete_many({})
        )
    ]


def index_commands(plan: TablePlan) -> list[Command]:
    """The unique keys and indexes of the table, on its fields (the key is ``_id``)."""
    if document_mode(plan):
        return []
    schema = plan.target_schema
    name = plan.target_id.name
    key = set(schema.key)
    out: list[Command] = []
    seen: set[tuple[str, ...]] = set()
    specs = [(f"{name}_{'_'.join(u)}_key", u, True) for u in schema.unique]
    specs += [(i.name, i.columns, i.unique) for i in schema.indexes
              if not i.expressions and i.where is None]  # fmt: skip
    for index_name, columns, unique in specs:
        if not columns or (set(columns) <= key and unique) or columns in seen:
            continue
        seen.add(columns)
        keys = [(c, 1) for c in columns]
        text = ", ".join(f"{_q(c)}: 1" for c in columns)
        options: dict[str, Any] = {"name": index_name, "unique": unique}
        nullable = [c for c in schema.columns if c.name in columns and c.nullable]
        if unique and nullable:
            # SQL unique keys allow many NULLs; MongoDB's would refuse the second null
            options["partialFilterExpression"] = {
                c.name: {"$type": _BSON_TYPES.get(c.type.native, c.type.native)} for c in nullable
            }
        shown = f"db.getCollection({_q(name)}).createIndex({{{text}}}, {d.relaxed(options)})"
        out.append(Command(shown, _creator(name, keys, options)))
    return out


def _creator(
    name: str, keys: list[tuple[str, int]], options: dict[str, Any]
) -> Callable[[Any], object]:
    def run(db: Any) -> object:
        return db[name].create_index(keys, **options)

    return run


#: the ``$type`` a non-null value of a column of this BSON type has
_BSON_TYPES: dict[str, Any] = {"uuid": "binData", "object": ["object", "array"]}

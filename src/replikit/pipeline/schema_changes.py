"""Following a source table's schema change on the target (``schema_change_policy="apply"``).

What replikit follows, and how (every statement runs through the change writer's ``run_ddl``):

* a **new nullable column**: added to the target (the writer's ``add_columns``);
* a **renamed column**: ``ALTER TABLE ... RENAME COLUMN`` (its values stay);
* a **widened type** -- a longer ``varchar``, ``varchar`` to ``text``, a wider integer or float,
  more numeric digits on both sides of the point -- ``ALTER COLUMN ... TYPE`` (SQLite keeps
  any value in any column, so nothing is run there);
* a **dropped column**: the target column is *kept* (dropping it would delete its values) and
  made nullable, and new rows leave it empty.

Anything else -- a narrower or different type, a key column renamed, dropped or retyped, a new
``NOT NULL`` column -- is not followed: the table is suspended (and reloaded with its new shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from replikit.changes import SchemaChange
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.model import Column, TableSchema
from replikit.schema.types import Kind, Type

__all__ = ["SupportsDdl", "alter_statements", "unfollowable", "widens", "with_change"]


@runtime_checkable
class SupportsDdl(Protocol):
    """A change writer that runs DDL statements on its target (in order; MySQL commits each)."""

    def run_ddl(self, statements: Sequence[str]) -> None:
        """Run ``statements``."""
        ...


def widens(old: Type, new: Type) -> bool:
    """Whether every value of ``old`` is a value of ``new``, unchanged."""
    if old == new:
        return True
    k = old.kind
    if k is Kind.INT and new.kind is Kind.INT:
        if old.unsigned and not new.unsigned:
            return (new.bits or 64) > (old.bits or 64)
        return old.unsigned == new.unsigned and (new.bits or 64) >= (old.bits or 64)
    if k is Kind.FLOAT and new.kind is Kind.FLOAT:
        return (new.bits or 64) >= (old.bits or 64)
    if k is Kind.STRING and new.kind is Kind.TEXT:
        return not old.fixed
    if k is Kind.STRING and new.kind is Kind.STRING:
        longer = new.length is None or (old.length is not None and new.length >= old.length)
        return old.fixed == new.fixed and longer
    if k is Kind.DECIMAL and new.kind is Kind.DECIMAL:
        if new.precision is None:
            return True
        if old.precision is None:
            return False
        old_scale, new_scale = old.scale or 0, new.scale or 0
        return new_scale >= old_scale and new.precision - new_scale >= old.precision - old_scale
    return False


def unfollowable(change: SchemaChange, table: TableSchema) -> str | None:
    """Why ``change`` to ``table`` (its current source schema) cannot be followed; ``None``
    when it can."""
    key = set(table.primary_key)
    columns = {c.name: c for c in table.columns}
    retyped = {c.name: c for c in change.retyped}  # by new name
    renamed = dict(change.renamed)
    stale = "the task's plan already has the new shape (planned after the change)"
    for old, new in change.renamed:
        if old in key:
            return f"key column {old} renamed"
        if old not in columns or new in columns:
            return stale
    for name in change.dropped:
        if name in key:
            return f"key column {name} dropped"
        if name not in columns:
            return stale
    for name in change.changed:  # names before the change
        now, was = retyped.get(renamed.get(name, name)), columns.get(name)
        if now is None or was is None:
            return f"column {name} changed"
        if name in key:
            return f"key column {name} changed"
        if not widens(was.type, now.type):
            return f"column {name} changed to a type that does not hold every value it held"
    for col in change.added:
        if not col.nullable and col.default is None:
            return f"column {col.name} added NOT NULL without a default"
    return None


def with_change(table: TableSchema, change: SchemaChange) -> TableSchema:
    """``table`` after ``change``: columns renamed, retyped, dropped and added."""
    renamed = dict(change.renamed)
    retyped = {c.name: c for c in change.retyped}  # by new name
    changed = set(change.changed)
    dropped = set(change.dropped)
    columns: list[Column] = []
    for col in table.columns:
        if col.name in dropped:
            continue
        name = renamed.get(col.name, col.name)
        if col.name in changed and name in retyped:
            col = replace(col, type=retyped[name].type)
        columns.append(replace(col, name=name) if name != col.name else col)
    known = {c.name for c in columns}
    columns += [c for c in change.added if c.name not in known]
    return replace(table, columns=tuple(columns))


def alter_statements(
    dialect: str,
    quote: object,
    old: TablePlan,
    new: TablePlan,
    change: SchemaChange,
) -> tuple[list[str], list[ColumnPlan]]:
    """The statements that take the target from ``old`` to ``new`` (renames, wider types,
    dropped columns made nullable), and the column plans to add (``add_columns``)."""
    q = quote  # the dialect's quote function
    assert callable(q)
    tid = new.target_id
    table = q(tid.name) if dialect in ("mysql", "sqlite") or not tid.schema else (
        f"{q(tid.schema)}.{q(tid.name)}"
    )  # fmt: skip
    old_by_source = {c.source.name: c for c in old.columns}
    new_by_source = {c.source.name: c for c in new.columns}
    renamed = dict(change.renamed)
    out: list[str] = []
    for src_old, src_new in renamed.items():
        was, now = old_by_source.get(src_old), new_by_source.get(src_new)
        if was is not None and now is not None and was.name != now.name:
            out.append(f"ALTER TABLE {table} RENAME COLUMN {q(was.name)} TO {q(now.name)}")
    for name in change.changed:
        now = new_by_source.get(renamed.get(name, name))
        if now is None or dialect == "sqlite":
            continue
        col = q(now.name)
        if dialect == "postgresql":
            out.append(f"ALTER TABLE {table} ALTER COLUMN {col} TYPE {now.target.sql}")
        elif dialect == "mysql":
            null = "NULL" if now.nullable else "NOT NULL"
            out.append(f"ALTER TABLE {table} MODIFY COLUMN {col} {now.target.sql} {null}")
        else:
            out.append(f"ALTER TABLE {table} ALTER COLUMN {col} SET DATA TYPE {now.target.sql}")
    for name in change.dropped:
        was = old_by_source.get(name)
        if was is None or was.nullable or dialect == "sqlite":
            continue
        col = q(was.name)
        if dialect == "mysql":
            out.append(f"ALTER TABLE {table} MODIFY COLUMN {col} {was.target.sql} NULL")
        else:
            out.append(f"ALTER TABLE {table} ALTER COLUMN {col} DROP NOT NULL")
    targets = {c.name for c in old.columns} | {
        new_by_source[n].name for n in renamed.values() if n in new_by_source
    }
    added = [c for c in new.columns if c.name not in targets]
    return out, added

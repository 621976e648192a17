"""Built-in transforms.

A transform is any ``Callable[[Change], Change | None]``; returning ``None`` drops the row or
change. A transform that changes a table's shape (renames, adds or removes columns) also has
``transform_schema(table) -> table``, so that planning sees the shape the writer will get.
Plain callables are taken to keep the shape.

>>> from replikit.changes import Change, Op
>>> from replikit.schema.model import TableId
>>> t = rename_columns({"email": "mail"})
>>> t(Change(Op.INSERT, TableId(None, "users"), after={"id": 1, "email": "a@b"})).after
{'id': 1, 'mail': 'a@b'}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from replikit.changes import Change
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

__all__ = [
    "SchemaTransform",
    "SupportsExpand",
    "SupportsMapRows",
    "Transform",
    "add_column",
    "drop_columns",
    "filter_rows",
    "mask",
    "rename_columns",
]

Transform = Callable[[Change], Change | None]


@runtime_checkable
class SchemaTransform(Protocol):
    """A transform that also says how it changes a table's shape."""

    def __call__(self, change: Change) -> Change | None: ...

    def transform_schema(self, table: TableSchema) -> TableSchema:
        """The table as the transform leaves it."""
        ...


@runtime_checkable
class SupportsExpand(Protocol):
    """A transform that may turn one change into several (or none): CDC calls ``expand``
    instead of calling the transform (e.g. a row filter turning an update that moves a row
    into the filter into an upsert, with a delete of the old key)."""

    def __call__(self, change: Change) -> Change | None: ...

    def expand(self, change: Change) -> tuple[Change, ...]:
        """``change`` as the target must apply it."""
        ...


@runtime_checkable
class SupportsMapRows(Protocol):
    """A transform that maps a whole batch of full-load rows at once (faster than a change
    per row): the full load calls ``map_rows`` instead of calling it on each row."""

    def __call__(self, change: Change) -> Change | None: ...

    def map_rows(
        self, table: TableId, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> list[dict[str, Any]]:
        """The rows the transform keeps, mapped, by column name."""
        ...


def _map_images(change: Change, fn: Callable[[Mapping[str, Any]], dict[str, Any]]) -> Change:
    return replace(
        change,
        before=fn(change.before) if change.before is not None else None,
        after=fn(change.after) if change.after is not None else None,
        key=fn(change.key) if change.key else change.key,
    )


@dataclass(frozen=True, slots=True)
class rename_columns:
    """Rename columns: ``{"old": "new"}`` (for every table, or ``tables`` only)."""

    names: Mapping[str, str]
    tables: frozenset[str] | None = None

    def _applies(self, table: object) -> bool:
        return self.tables is None or str(table) in self.tables

    def __call__(self, change: Change) -> Change | None:
        if not self._applies(change.table):
            return change
        n = self.names
        return _map_images(change, lambda row: {n.get(k, k): v for k, v in row.items()})

    def transform_schema(self, table: TableSchema) -> TableSchema:
        if not self._applies(table.id):
            return table
        n = self.names

        def cols(names: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(n.get(c, c) for c in names)

        return replace(
            table,
            columns=tuple(replace(c, name=n.get(c.name, c.name)) for c in table.columns),
            primary_key=cols(table.primary_key),
            unique=tuple(cols(u) for u in table.unique),
            indexes=tuple(replace(i, columns=cols(i.columns)) for i in table.indexes),
            foreign_keys=tuple(replace(f, columns=cols(f.columns)) for f in table.foreign_keys),
        )


@dataclass(frozen=True, slots=True)
class drop_columns:
    """Leave columns out of the target (indexes and keys using them are dropped too)."""

    names: frozenset[str]
    tables: frozenset[str] | None = None

    def __call__(self, change: Change) -> Change | None:
        if self.tables is not None and str(change.table) not in self.tables:
            return change
        gone = self.names
        return _map_images(change, lambda row: {k: v for k, v in row.items() if k not in gone})

    def transform_schema(self, table: TableSchema) -> TableSchema:
        if self.tables is not None and str(table.id) not in self.tables:
            return table
        gone = self.names
        if gone & set(table.primary_key):
            from replikit.errors import ConfigError

            raise ConfigError(f"cannot drop primary key column(s) of {table.id}: {sorted(gone)}")
        return replace(
            table,
            columns=tuple(c for c in table.columns if c.name not in gone),
            unique=tuple(u for u in table.unique if not gone & set(u)),
            indexes=tuple(i for i in table.indexes if not gone & set(i.columns)),
            foreign_keys=tuple(f for f in table.foreign_keys if not gone & set(f.columns)),
        )


@dataclass(frozen=True, slots=True)
class add_column:
    """Add a column whose value ``compute(row)`` derives from the row's other values."""

    name: str
    type: Type
    compute: Callable[[Mapping[str, Any]], Any]
    tables: frozenset[str] | None = None

    def __call__(self, change: Change) -> Change | None:
        if self.tables is not None and str(change.table) not in self.tables:
            return change
        if change.after is None:
            return change
        after = dict(change.after)
        after[self.name] = self.compute(change.after)
        return replace(change, after=after)

    def transform_schema(self, table: TableSchema) -> TableSchema:
        if self.tables is not None and str(table.id) not in self.tables:
            return table
        return replace(table, columns=(*table.columns, Column(self.name, self.type)))


@dataclass(frozen=True, slots=True)
class mask:
    """Replace a column's non-NULL values by ``fn(value)`` (e.g. hashing, redaction)."""

    column: str
    fn: Callable[[Any], Any]

    def __call__(self, change: Change) -> Change | None:
        col, fn = self.column, self.fn

        def apply(row: Mapping[str, Any]) -> dict[str, Any]:
            out = dict(row)
            if out.get(col) is not None:
                out[col] = fn(out[col])
            return out

        return replace(
            change,
            before=apply(change.before) if change.before is not None else None,
            after=apply(change.after) if change.after is not None else None,
        )


@dataclass(frozen=True, slots=True)
class filter_rows:
    """Keep only rows for which ``predicate(row)`` is true (deletes pass through)."""

    predicate: Callable[[Mapping[str, Any]], bool]

    def __call__(self, change: Change) -> Change | None:
        row = change.after if change.after is not None else None
        if row is None:
            return change
        return change if self.predicate(row) else None

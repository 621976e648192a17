"""Table selection and transformation rules (DMS table-mapping vocabulary).

Patterns are ``schema.table`` with ``%`` matching any run of characters and ``_`` one
character, as in DMS selection rules (``public.%``, ``%.orders``). A pattern without a dot
names a table in any schema. Exclusions win over inclusions; with no inclusion rule every
table is included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from replikit.errors import ConfigError
from replikit.schema.model import TableId

__all__ = ["Mappings", "Selection"]


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _split(pattern: str) -> tuple[str, str]:
    if not pattern or pattern.count(".") > 1:
        raise ConfigError(
            f"table pattern {pattern!r} is not 'schema.table' or 'table' "
            "(use % as a wildcard, e.g. public.% or %.orders)"
        )
    schema, dot, table = pattern.partition(".")
    if not dot:
        return "%", schema
    return schema, table


@dataclass(frozen=True, slots=True)
class Selection:
    """Which tables to move: include and exclude patterns."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for p in (*self.include, *self.exclude):
            _split(p)

    @staticmethod
    def _match(pattern: str, table: TableId) -> bool:
        schema_p, table_p = _split(pattern)
        schema = table.schema or "main"  # a table without a schema (SQLite): SQLite's name
        return bool(
            (schema_p == "%" or _compile(schema_p).fullmatch(schema))
            and _compile(table_p).fullmatch(table.name)
        )

    def matches(self, table: TableId) -> bool:
        """True when ``table`` is selected."""
        if any(self._match(p, table) for p in self.exclude):
            return False
        return not self.include or any(self._match(p, table) for p in self.include)

    def filter(self, tables: Iterable[TableId]) -> list[TableId]:
        """The selected tables, in the given order."""
        return [t for t in tables if self.matches(t)]

    def unmatched_includes(self, tables: Sequence[TableId]) -> list[str]:
        """Include patterns that select no table (a likely typo)."""
        return [p for p in self.include if not any(self._match(p, t) for t in tables)]


@dataclass(frozen=True, slots=True)
class Mappings:
    """Selection plus renaming rules. Immutable: each method returns a new ``Mappings``.

    >>> m = Mappings().include("public", "%").exclude("public", "audit_%")
    >>> m.selection.matches(TableId("public", "orders"))
    True
    """

    selection: Selection = field(default_factory=Selection)
    schema_names: tuple[tuple[str, str], ...] = ()
    table_names: tuple[tuple[str, str], ...] = ()
    column_names: tuple[tuple[str, str, str], ...] = ()

    def include(self, schema: str, table: str = "%") -> Mappings:
        """Select tables matching ``schema.table``."""
        sel = replace(self.selection, include=(*self.selection.include, f"{schema}.{table}"))
        return replace(self, selection=sel)

    def exclude(self, schema: str, table: str = "%") -> Mappings:
        """Leave out tables matching ``schema.table``."""
        sel = replace(self.selection, exclude=(*self.selection.exclude, f"{schema}.{table}"))
        return replace(self, selection=sel)

    def rename_schema(self, source: str, target: str) -> Mappings:
        """Put tables of schema ``source`` into schema ``target``."""
        return replace(self, schema_names=(*self.schema_names, (source, target)))

    def rename_table(self, source: str, target: str) -> Mappings:
        """Rename table ``source`` (``schema.table`` or ``table``) to ``target``."""
        return replace(self, table_names=(*self.table_names, (source, target)))

    def rename_column(self, table: str, column: str, target: str) -> Mappings:
        """Rename ``column`` of source table ``table`` (``schema.table`` or ``table``) to
        ``target`` in the target table (the source keeps its name).

        >>> m = Mappings().rename_column("public.users", "ID", "legacy_id")
        >>> m.columns_of(TableId("public", "users"))
        {'ID': 'legacy_id'}
        """
        return replace(self, column_names=(*self.column_names, (table, column, target)))

    def columns_of(self, table: TableId) -> dict[str, str]:
        """The column renames for source table ``table`` (source name -> target name)."""
        return {
            column: target
            for src, column, target in self.column_names
            if src in (str(table), table.name)
        }

    def target_id(self, table: TableId, *, schemas: bool, default_schema: str | None) -> TableId:
        """Where ``table`` lands in a target (with or without schemas)."""
        name = table.name
        for src, dst in self.table_names:
            if src in (str(table), table.name):
                name = dst
        if not schemas:
            return TableId(None, name)
        schema = table.schema or default_schema or None  # "": keep none (files targets)
        for src, dst in self.schema_names:
            if schema == src:
                schema = dst
        return TableId(schema, name)

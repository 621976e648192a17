"""Schema changes seen in the log: pgoutput Relation messages against each table's known shape.

PostgreSQL does not decode DDL. Before the first change of a relation in every decoding
session, and again after the relation changed, pgoutput sends a Relation message with the
current column list (names, type oids and modifiers, replica-identity key flags). The
:class:`RelationTracker` starts from the reflected :class:`~replikit.schema.model.TableSchema`
of each table and reports only real differences as :class:`~replikit.changes.SchemaChange`
objects: added columns (with portable types, nullability and default from the catalog),
dropped column names, and changed names (type or modifier changed, or primary-key membership
under the default replica identity). A renamed column is told from a drop plus an add by its
column number (PostgreSQL keeps it). A renamed table is told by its oid: its Relation message
comes under the new name (:meth:`RelationTracker.renamed`).

Types are resolved exactly as reflection resolves them (enums keep their labels, domains
resolve to their base type), so an unchanged column never looks changed. The catalog is read
when a difference is found, so an added column's nullability and default are the current ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from replikit.changes import SchemaChange
from replikit.endpoints.postgres._connect import Connection
from replikit.endpoints.postgres._pgoutput import Relation
from replikit.endpoints.postgres.reflect import _Types
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Kind, Type

__all__ = ["CatalogLookup", "PgCatalogLookup", "RelationTracker"]

_ATTRIBUTE = """
SELECT a.attnotnull, a.attndims, pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
"""

_ATTNUMS = """
SELECT a.attname, a.attnum FROM pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
"""
_ATTNUMS_BY_NAME = """
SELECT a.attname, a.attnum FROM pg_attribute a
WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
  AND a.attnum > 0 AND NOT a.attisdropped
"""

_Shape = tuple[str, tuple[tuple[str, int, int, bool], ...]]


class CatalogLookup(Protocol):
    """What the tracker asks the source's catalog."""

    def type_of(self, oid: int, typmod: int, dims: int) -> Type:
        """The portable type of a column of type ``oid`` / ``typmod``."""
        ...

    def column(self, relation: int, name: str) -> tuple[bool, int, str | None] | None:
        """(nullable, array dimensions, default) of a column now, or ``None`` if it is gone."""
        ...

    def attnums(self, relation: int | TableId) -> dict[str, int]:
        """The columns' numbers now (a renamed column keeps its number), by name."""
        ...

    def oid(self, table: TableId) -> int | None:
        """The relation's oid now (``None``: no such table)."""
        ...


class PgCatalogLookup:
    """:class:`CatalogLookup` on a PostgreSQL connection (autocommit), resolving as reflection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._types = _Types(conn)

    def type_of(self, oid: int, typmod: int, dims: int) -> Type:
        return self._types.resolve(oid, typmod, dims)[0]

    def column(self, relation: int, name: str) -> tuple[bool, int, str | None] | None:
        row = self._conn.execute(_ATTRIBUTE, (relation, name)).fetchone()
        if row is None:
            return None
        notnull, dims, default = row
        return not notnull, int(dims or 0), default

    def attnums(self, relation: int | TableId) -> dict[str, int]:
        if isinstance(relation, TableId):
            rows = self._conn.execute(
                _ATTNUMS_BY_NAME, (relation.schema or "public", relation.name)
            ).fetchall()
        else:
            rows = self._conn.execute(_ATTNUMS, (relation,)).fetchall()
        return {str(name): int(num) for name, num in rows}

    def oid(self, table: TableId) -> int | None:
        row = self._conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::oid",
            (table.schema or "public", table.name),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])


class RelationTracker:
    """Diffs Relation messages against the known shape of the selected tables."""

    def __init__(self, tables: Sequence[TableSchema], lookup: CatalogLookup) -> None:
        self._tables = {t.id: t for t in tables}
        self._lookup = lookup
        self._known: dict[TableId, _Shape] = {}
        # the selected tables by oid: a Relation of a known oid under another name is a rename
        self._by_oid = {oid: t.id for t in tables if (oid := lookup.oid(t.id)) is not None}
        self._renamed: set[int] = set()
        # column numbers by name as of the known shape: they tell a rename from drop + add
        self._attnums = {t.id: lookup.attnums(t.id) for t in tables}

    def diff(self, rel: Relation) -> SchemaChange | None:
        """The schema change ``rel`` shows for its table (``None``: same shape, or unselected)."""
        tid = rel.table
        table = self._tables.get(tid)
        if table is None:
            return None
        shape: _Shape = (
            rel.replica_identity,
            tuple((c.name, c.type_oid, c.typmod, c.key) for c in rel.columns),
        )
        known = self._known.get(tid)
        if known == shape:
            return None
        self._known[tid] = shape
        if known is None:
            return self._against_table(table, rel)
        return self._against_shape(known, rel)

    def renamed(self, rel: Relation) -> SchemaChange | None:
        """The schema change of a selected table that ``rel`` shows under a new name (once):
        its changes now come under that name, so the table must stop where it is."""
        old = self._by_oid.get(rel.oid)
        if old is None or old == rel.table or rel.oid in self._renamed:
            return None
        self._renamed.add(rel.oid)
        return SchemaChange(
            table=old,
            dropped=tuple(c.name for c in self._tables[old].columns),
            description=(
                f"table {old} was renamed to {rel.table} (its changes now come under the new "
                "name, which the task does not replicate)"
            ),
        )

    def _against_table(self, table: TableSchema, rel: Relation) -> SchemaChange | None:
        # pgoutput leaves generated columns out (PostgreSQL 18 may publish stored ones): their
        # absence, or presence, is no schema change
        generated = {c.name for c in table.columns if c.generated}
        old = {c.name: c for c in table.columns if c.name not in generated}
        changed: list[str] = []
        notes: list[str] = []
        for col in rel.columns:
            before = old.get(col.name)
            if before is None:
                continue
            dims = before.type.dims if before.type.kind is Kind.ARRAY else 0
            now = self._lookup.type_of(col.type_oid, col.typmod, dims)
            if now != before.type:
                changed.append(col.name)
                notes.append(f"column {col.name} changed from {_show(before.type)} to {_show(now)}")
        if rel.replica_identity == "d" and table.primary_key:
            flagged = {c.name for c in rel.columns if c.key}
            moved = [
                c.name
                for c in rel.columns
                if (c.name in flagged) != (c.name in table.primary_key) and c.name not in changed
            ]
            changed += moved
            notes += [f"column {n} joined or left the primary key" for n in moved]
        new = {c.name for c in rel.columns}
        dropped = [name for name in old if name not in new]
        added = [c.name for c in rel.columns if c.name not in old and c.name not in generated]
        renamed = self._renames(rel, set(old))
        by_name = {c.name: c for c in rel.columns}
        for gone, came in renamed:
            kept = old[gone].type
            dims = kept.dims if kept.kind is Kind.ARRAY else 0
            col = by_name[came]
            if self._lookup.type_of(col.type_oid, col.typmod, dims) != kept:
                changed.append(gone)
                notes.append(f"column {came} changed type")
        return self._change(rel, added, dropped, changed, notes, renamed)

    def _against_shape(self, known: _Shape, rel: Relation) -> SchemaChange | None:
        ident, columns = known
        old = {name: (oid, typmod, key) for name, oid, typmod, key in columns}
        changed: list[str] = []
        notes: list[str] = []
        for col in rel.columns:
            prev = old.get(col.name)
            if prev is None:
                continue
            if prev[:2] != (col.type_oid, col.typmod):
                was = self._lookup.type_of(prev[0], prev[1], 0)
                now = self._lookup.type_of(col.type_oid, col.typmod, 0)
                changed.append(col.name)
                notes.append(f"column {col.name} changed from {_show(was)} to {_show(now)}")
            elif ident == rel.replica_identity == "d" and prev[2] != col.key:
                changed.append(col.name)
                notes.append(f"column {col.name} joined or left the primary key")
        new = {c.name for c in rel.columns}
        dropped = [name for name in old if name not in new]

        renamed = self._renames(rel, set(old))
        by_name = {c.name: c for c in rel.columns}
        for gone, came in renamed:
            if old[gone][:2] != (by_name[came].type_oid, by_name[came].typmod):
                changed.append(gone)
                notes.append(f"column {came} changed type")
        return self._change(rel, [c.name for c in rel.columns if c.name not in old], dropped,
                            changed, notes, renamed)  # fmt: skip

    def _renames(self, rel: Relation, old: set[str]) -> list[tuple[str, str]]:
        """Columns renamed since the known shape: a new name with the number of a name that
        is gone (PostgreSQL keeps a renamed column's number and never reuses one)."""
        before = self._attnums.get(rel.table, {})
        now = self._lookup.attnums(rel.oid)
        names = {c.name for c in rel.columns}
        by_number = {num: name for name, num in before.items()}
        out = []
        for col in rel.columns:
            was = by_number.get(now.get(col.name, -1))
            if col.name not in old and was is not None and was in old and was not in names:
                out.append((was, col.name))
        self._attnums[rel.table] = {n: now[n] for n in names if n in now}
        return out

    def _change(
        self,
        rel: Relation,
        added: list[str],
        dropped: list[str],
        changed: list[str],
        notes: list[str],
        renamed: Sequence[tuple[str, str]] = (),
    ) -> SchemaChange | None:
        if not (added or dropped or changed):
            return None
        gone = {old for old, _ in renamed}
        came = {new for _, new in renamed}
        added = [n for n in added if n not in came]
        dropped = [n for n in dropped if n not in gone]
        columns = tuple(self._added(rel, name) for name in added)
        parts = [f"renamed column {old} to {new}" for old, new in renamed]
        parts += [
            f"added column {c.name} ({_show(c.type)}, {'nullable' if c.nullable else 'NOT NULL'})"
            for c in columns
        ]
        parts += [f"dropped column {name}" for name in dropped] + notes
        present = {c.name for c in rel.columns}
        return SchemaChange(
            table=rel.table,
            added=columns,
            dropped=tuple(dropped),
            changed=tuple(changed),
            description=f"{rel.table}: " + "; ".join(parts),
            renamed=tuple(renamed),
            retyped=tuple(
                self._added(rel, new)
                for n in changed
                if (new := dict(renamed).get(n, n)) in present
            ),
        )

    def _added(self, rel: Relation, name: str) -> Column:
        col = next(c for c in rel.columns if c.name == name)
        info = self._lookup.column(rel.oid, name)
        nullable, dims, default = info if info is not None else (True, 0, None)
        return Column(
            name=name,
            type=self._lookup.type_of(col.type_oid, col.typmod, dims),
            nullable=nullable,
            default=default,
        )


def _show(t: Type) -> str:
    return t.native or t.describe()

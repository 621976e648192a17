"""Reflection of a DuckDB database through its catalog functions (``duckdb_tables()``...).

Tables of the main database's user schemas (not ``information_schema``, ``pg_catalog`` nor
replikit's own ``replikit`` control schema), with columns, primary key, unique constraints,
indexes, foreign keys and row estimates. Views are listed by name.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from replikit.endpoints._reserved import reserved
from replikit.endpoints.duckdb._dialect import DIALECT
from replikit.mapping import Selection
from replikit.schema.model import (
    Catalog,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    TableId,
    TableSchema,
    View,
)

__all__ = ["CONTROL_SCHEMA", "reflect_catalog", "reflect_table"]

CONTROL_SCHEMA = "replikit"
_HIDDEN = ("information_schema", "pg_catalog")
_MAIN = "database_name = current_database() AND NOT internal"


def _hidden(schema: str, name: str) -> bool:
    """The system's schemas, and replikit's own tables in its control schema (by name: a
    user's table there is the user's)."""
    return schema in _HIDDEN or (schema == CONTROL_SCHEMA and reserved(name, fold_case=True))


def _tables(conn: Any) -> list[tuple[str, str, int | None]]:
    rows = conn.execute(
        f"SELECT schema_name, table_name, estimated_size FROM duckdb_tables() WHERE {_MAIN} "  # noqa: S608
        "ORDER BY schema_name, table_name"
    ).fetchall()
    return [(s, t, n) for s, t, n in rows if not _hidden(s, t)]


def reflect_catalog(conn: Any, selection: Selection | None = None) -> Catalog:
    """The tables (and views) ``selection`` picks (``None``: every user table)."""
    tables = []
    for schema, name, rows in _tables(conn):
        tid = TableId(schema, name)
        if selection is None or selection.matches(tid):
            tables.append(_reflect(conn, tid, rows))
    views = [
        View(TableId(s, n), sql)
        for s, n, sql in conn.execute(
            f"SELECT schema_name, view_name, sql FROM duckdb_views() WHERE {_MAIN}"  # noqa: S608
        ).fetchall()
        if s not in _HIDDEN and (selection is None or selection.matches(TableId(s, n)))
    ]
    return Catalog(tuple(tables), tuple(views))


def reflect_table(conn: Any, tid: TableId) -> TableSchema | None:
    """One table, or ``None`` when it does not exist (names compare as DuckDB compares)."""
    for schema, name, rows in _tables(conn):
        if DIALECT.name_key(name, "table") != DIALECT.name_key(tid.name, "table"):
            continue
        if tid.schema is None or DIALECT.name_key(schema, "schema") == DIALECT.name_key(
            tid.schema, "schema"
        ):
            return _reflect(conn, TableId(schema, name), rows)
    return None


def _where(tid: TableId) -> tuple[str, list[Any]]:
    return "database_name = current_database() AND schema_name = ? AND table_name = ?", [
        tid.schema,
        tid.name,
    ]


def _reflect(conn: Any, tid: TableId, rows: int | None) -> TableSchema:
    where, params = _where(tid)
    columns = [
        Column(
            name,
            DIALECT.parse_type(data_type),
            nullable=bool(nullable),
            default=None if generated else default,
            generated=f"{expression} VIRTUAL" if generated else None,
        )
        for name, data_type, nullable, default, generated, expression in conn.execute(
            "SELECT column_name, data_type, is_nullable, column_default, is_generated, "  # noqa: S608
            f"generation_expression FROM duckdb_columns() WHERE {where} ORDER BY column_index",
            params,
        ).fetchall()
    ]
    constraints = conn.execute(
        "SELECT constraint_type, constraint_column_names, constraint_name, expression, "  # noqa: S608
        f"referenced_table, referenced_column_names FROM duckdb_constraints() WHERE {where} "
        "ORDER BY constraint_index",
        params,
    ).fetchall()
    primary: tuple[str, ...] = ()
    unique: list[tuple[str, ...]] = []
    fks: list[ForeignKey] = []
    checks: list[CheckConstraint] = []
    for kind, cols, name, expression, ref_table, ref_cols in constraints:
        if kind == "PRIMARY KEY":
            primary = tuple(cols)
        elif kind == "UNIQUE":
            unique.append(tuple(cols))
        elif kind == "FOREIGN KEY" and ref_table:
            fks.append(
                ForeignKey(name, tuple(cols), TableId(tid.schema, ref_table), tuple(ref_cols or ()))
            )
        elif kind == "CHECK" and expression:
            checks.append(CheckConstraint(name, expression))
    return TableSchema(
        tid,
        tuple(columns),
        primary_key=primary,
        unique=tuple(unique),
        indexes=_indexes(conn, tid),
        foreign_keys=tuple(fks),
        checks=tuple(checks),
        estimated_rows=rows,
    )


def _indexes(conn: Any, tid: TableId) -> tuple[Index, ...]:
    where, params = _where(tid)
    out = []
    for name, unique, expressions in conn.execute(
        f"SELECT index_name, is_unique, expressions FROM duckdb_indexes() WHERE {where} "  # noqa: S608
        "ORDER BY index_name",
        params,
    ).fetchall():
        columns, exprs = _index_keys(expressions)
        out.append(Index(name, columns, unique=bool(unique), expressions=exprs))
    return tuple(out)


def _index_keys(text: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``[a, "b c"]`` -> plain column names; anything else as expressions."""
    items = _split_list(text or "")
    names: list[str] = []
    for item in items:
        name = _column_name(item)
        if name is None:
            return (), tuple(items)
        names.append(name)
    return tuple(names), ()


def _split_list(text: str) -> Sequence[str]:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    parts, depth, quoted, current = [], 0, "", ""
    for ch in text:
        if quoted:
            quoted = "" if ch == quoted else quoted
        elif ch in "'\"":
            quoted = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def _column_name(item: str) -> str | None:
    if item.startswith('"') and item.endswith('"'):
        return item[1:-1].replace('""', '"')
    if item.startswith("'") and item.endswith("'"):
        value = ast.literal_eval(item)
        return value if isinstance(value, str) else None
    return item if item.replace("_", "").isalnum() else None

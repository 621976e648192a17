"""DDL generation for SQLite targets (pure: plans in, SQL text out).

Identifiers go through :meth:`SqliteDialect.quote`; the only literals are enum labels in CHECK
clauses (DDL cannot bind values), written by :meth:`SqliteDialect.literal`. Foreign keys can
only be declared in ``CREATE TABLE`` in SQLite, so they are part of it; loads run with
``PRAGMA foreign_keys=OFF``.
"""

from __future__ import annotations

from replikit.endpoints.sqlite._dialect import DIALECT
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.identifiers import ObjectNames
from replikit.schema.model import Column, ForeignKey, Index
from replikit.schema.report import ObjectPlan
from replikit.schema.types import Kind

__all__ = [
    "add_column",
    "autoincrement_column",
    "create_table",
    "drop_table",
    "index_statements",
    "rowid_key",
    "view_statements",
]

_ACTIONS = {
    "NO ACTION": "NO ACTION",
    "RESTRICT": "RESTRICT",
    "CASCADE": "CASCADE",
    "SET NULL": "SET NULL",
    "SET DEFAULT": "SET DEFAULT",
    "A": "NO ACTION",
    "R": "RESTRICT",
    "C": "CASCADE",
    "N": "SET NULL",
    "D": "SET DEFAULT",
}


def _q(name: str) -> str:
    return DIALECT.quote(name)


def _cols(names: tuple[str, ...]) -> str:
    return ", ".join(_q(n) for n in names)


def rowid_key(plan: TablePlan) -> Column | None:
    """The column that becomes ``INTEGER PRIMARY KEY`` (a single integer key with identity)."""
    schema = plan.target_schema
    if len(schema.primary_key) != 1:
        return None
    col = schema.column(schema.primary_key[0])
    if col.identity is None or col.type.kind is not Kind.INT or col.type.unsigned:
        return None
    if plan.source_dialect == DIALECT.name and col.type.native.upper() != "INTEGER":
        return None
    return col


def autoincrement_column(plan: TablePlan) -> Column | None:
    """The rowid key column when it is declared AUTOINCREMENT (generated keys never reused).

    From SQLite, only where the source said AUTOINCREMENT; from other databases, for every
    identity or serial key (their sequences never reuse values either).
    """
    col = rowid_key(plan)
    if col is None or col.identity is None:
        return None
    if plan.source_dialect == DIALECT.name and col.identity.kind != "autoincrement":
        return None
    return col


def _column_def(plan: TablePlan, cp: ColumnPlan, col: Column, key: Column | None) -> str:
    parts = [_q(col.name)]
    if key is not None and key.name == col.name:
        auto = autoincrement_column(plan) is not None
        parts.append("INTEGER PRIMARY KEY" + (" AUTOINCREMENT" if auto else ""))
    elif cp.target.sql:
        parts.append(cp.target.sql)
    if cp.generated is not None:
        kind = "STORED" if cp.generated.stored else "VIRTUAL"
        parts.append(f"GENERATED ALWAYS AS ({cp.generated.expression}) {kind}")
    if not col.nullable:
        parts.append("NOT NULL")
    if col.default is not None and cp.generated is None:
        parts.append(f"DEFAULT ({col.default})")
    if col.type.kind is Kind.ENUM and col.type.values:
        parts.append(DIALECT.enum_check(col.name, col.type.values))
    return " ".join(parts)


def _foreign_key(fk: ForeignKey) -> str:
    text = f"FOREIGN KEY ({_cols(fk.columns)}) REFERENCES {_q(fk.ref_table.name)}" + (
        f" ({_cols(fk.ref_columns)})" if fk.ref_columns else ""
    )
    for verb, action in (("DELETE", fk.on_delete), ("UPDATE", fk.on_update)):
        normal = _ACTIONS.get((action or "").upper())
        if normal and normal != "NO ACTION":
            text += f" ON {verb} {normal}"
    return text


def create_table(plan: TablePlan) -> str:
    """``CREATE TABLE`` with columns, NOT NULL, defaults, enum CHECKs, keys and foreign keys."""
    schema = plan.target_schema
    key = rowid_key(plan)
    lines = [
        _column_def(plan, cp, col, key)
        for cp, col in zip(plan.columns, schema.columns, strict=True)
    ]
    if schema.primary_key and key is None:
        lines.append(f"PRIMARY KEY ({_cols(schema.primary_key)})")
    lines.extend(f"UNIQUE ({_cols(u)})" for u in schema.unique if u)
    lines.extend(_foreign_key(fk) for fk in schema.foreign_keys if fk.columns)
    # CHECKs are in SQLite SQL (the plan translated them); SQLite adds none after CREATE
    lines.extend(f"CHECK ({c.expression})" for c in schema.checks)
    body = ",\n    ".join(lines)
    return f"CREATE TABLE {_q(schema.id.name)} (\n    {body}\n)"


def add_column(plan: TablePlan, cp: ColumnPlan) -> str:
    """``ALTER TABLE ... ADD COLUMN`` for a column new to the source (a schema change).

    SQLite refuses a NOT NULL column without a default, and a non-constant default on a table
    that has rows; callers report that as a schema error.
    """
    parts = [_q(cp.name)]
    if cp.target.sql:
        parts.append(cp.target.sql)
    if not cp.nullable:
        parts.append("NOT NULL")
    if cp.default is not None:
        parts.append(f"DEFAULT ({cp.default})")
    if cp.target.type.kind is Kind.ENUM and cp.target.type.values:
        parts.append(DIALECT.enum_check(cp.name, cp.target.type.values))
    return f"ALTER TABLE {_q(plan.target_id.name)} ADD COLUMN {' '.join(parts)}"


def drop_table(plan: TablePlan) -> str:
    """``DROP TABLE IF EXISTS``."""
    return f"DROP TABLE IF EXISTS {_q(plan.target_schema.id.name)}"


def _index_statement(plan: TablePlan, index: Index, name: str) -> str | None:
    same = plan.source_dialect == DIALECT.name
    if index.expressions:
        if not same:
            return None
        keys = ", ".join(index.expressions)
    elif index.columns:
        keys = _cols(index.columns)
    else:
        return None
    where = ""
    if index.where:
        if not same:
            return None
        where = f" WHERE {index.where}"
    unique = "UNIQUE " if index.unique else ""
    table = _q(plan.target_schema.id.name)
    return f"CREATE {unique}INDEX {_q(name)} ON {table} ({keys}){where}"


def index_statements(
    plan: TablePlan, names: ObjectNames
) -> tuple[list[tuple[str, str]], list[str]]:
    """``(name, CREATE INDEX)`` pairs, and problems for indexes SQLite cannot take as they are.

    Index names are ``names.indexes`` (one namespace per database, shared with the tables;
    ``sqlite_`` names are SQLite's own, so such an index gets its table's name in front).
    """
    statements: list[tuple[str, str]] = []
    problems: list[str] = []
    chosen = names.indexes[plan.target_id]
    for index, name in zip(plan.target_schema.indexes, chosen, strict=True):
        stmt = _index_statement(plan, index, name)
        if stmt is None:
            what = "partial index" if index.where else "expression index"
            problems.append(
                f"{plan.target_id}: {what} {index.name} ({plan.source_dialect} SQL) not created"
            )
        else:
            statements.append((name, stmt))
    return statements, problems


def view_statements(view: ObjectPlan) -> list[str]:
    """Drop and create one converted view (its query is SQLite SQL)."""
    assert view.target is not None
    assert view.sql is not None
    name = _q(view.target.name)
    return [f"DROP VIEW IF EXISTS {name}", f"CREATE VIEW {name} AS {view.sql}"]

"""DDL for DuckDB targets (no driver import): schemas, tables, indexes, added columns.

Foreign keys are not created: DuckDB enforces them on every write with no way to defer or
disable them, and it cannot add one to an existing table, so tables loaded in parallel and
changes applied as net effects (deletes before upserts) would be refused; the plan says so.
A table replikit creates gets its primary key after the load (``ALTER TABLE ... ADD PRIMARY
KEY``): building the index once is about twice as fast as maintaining it per batch and needs
less memory (measured: 1M rows in 2.2 s + 0.2 s instead of 4.2 s). Unique constraints become
unique indexes built after the load too.

Which of them are built is the writer's ``indexes`` option (:data:`INDEXES`): ``keys`` (the
default) builds the primary key, unique constraints and unique indexes, which carry meaning
(CDC's upserts need the key), and leaves out the non-unique secondary indexes: DuckDB's ART
indexes speed up point lookups, not the scans analytic queries make, and building them took
about a third of a 1M-row load and most of its peak memory (measured, docs/duckdb-and-files.md);
``all`` builds every index as well; ``none`` builds no index nor key (a full load only).
:func:`skipped_objects` declares what is left out, for the plan and the run's statistics.
"""

from __future__ import annotations

from replikit.endpoints.duckdb._dialect import DIALECT
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.identifiers import ObjectNames
from replikit.schema.model import Index, TableId
from replikit.schema.report import ObjectPlan, Verdict

__all__ = [
    "INDEXES",
    "add_column",
    "add_primary_key",
    "create_schema",
    "create_table",
    "drop_table",
    "index_statements",
    "skipped_objects",
    "table_name",
    "view_statements",
]


#: the writer's ``indexes`` option: which keys and indexes are built after the load
INDEXES = ("keys", "all", "none")


def table_name(tid: TableId) -> str:
    """The qualified, quoted table name."""
    return DIALECT.qualified(tid.schema, tid.name)


def _cols(names: tuple[str, ...]) -> str:
    return ", ".join(DIALECT.quote(n) for n in names)


def create_schema(schema: str | None) -> list[str]:
    """``CREATE SCHEMA IF NOT EXISTS`` (nothing for the default schema)."""
    return (
        [] if schema in (None, "main") else [f"CREATE SCHEMA IF NOT EXISTS {DIALECT.quote(schema)}"]
    )


def _column(cp: ColumnPlan) -> str:
    parts = [DIALECT.quote(cp.name), cp.target.sql]
    if cp.generated is not None:
        # DuckDB computes generated columns when read (VIRTUAL only), with no constraints
        return " ".join([*parts, f"GENERATED ALWAYS AS ({cp.generated.expression}) VIRTUAL"])
    if not cp.nullable:
        parts.append("NOT NULL")
    if cp.default is not None:
        parts.append(f"DEFAULT {cp.default}")
    return " ".join(parts)


def create_table(plan: TablePlan, *, key: bool = True) -> str:
    """``CREATE TABLE`` with columns, NOT NULL, defaults and (``key``) the primary key."""
    schema = plan.target_schema
    lines = [_column(cp) for cp in plan.columns]
    if schema.primary_key and key:
        lines.append(f"PRIMARY KEY ({_cols(schema.primary_key)})")
    # CHECKs are in DuckDB SQL: the plan translated them (schema/expressions.py)
    lines.extend(f"CHECK ({c.expression})" for c in schema.checks)
    body = ",\n    ".join(lines)
    return f"CREATE TABLE {table_name(plan.target_id)} (\n    {body}\n)"


def add_primary_key(plan: TablePlan, indexes: str = "all") -> list[str]:
    """``ALTER TABLE ... ADD PRIMARY KEY`` (none for a table without a key, or with
    ``indexes="none"``)."""
    key = plan.target_schema.primary_key
    if not key or indexes == "none":
        return []
    return [f"ALTER TABLE {table_name(plan.target_id)} ADD PRIMARY KEY ({_cols(key)})"]


def drop_table(plan: TablePlan) -> str:
    """``DROP TABLE IF EXISTS``."""
    return f"DROP TABLE IF EXISTS {table_name(plan.target_id)}"


def add_column(plan: TablePlan, cp: ColumnPlan) -> str:
    """``ALTER TABLE ... ADD COLUMN`` for a column new to the source."""
    return f"ALTER TABLE {table_name(plan.target_id)} ADD COLUMN {_column(cp)}"


def _index(plan: TablePlan, index: Index, name: str) -> str | None:
    if index.where:
        return None  # DuckDB has no partial indexes
    if index.expressions:
        if plan.source_dialect != DIALECT.name:
            return None
        keys = ", ".join(index.expressions)
    elif index.columns:
        keys = _cols(index.columns)
    else:
        return None
    unique = "UNIQUE " if index.unique else ""
    return (
        f"CREATE {unique}INDEX IF NOT EXISTS {DIALECT.quote(name)} ON "
        f"{table_name(plan.target_id)} ({keys})"
    )


def _kept(index: Index, indexes: str) -> bool:
    """True when the ``indexes`` option builds ``index``."""
    return indexes == "all" or (indexes == "keys" and index.unique)


def index_statements(
    plan: TablePlan, names: ObjectNames, indexes: str = "all"
) -> tuple[list[str], list[str]]:
    """``CREATE INDEX`` statements (unique constraints as unique indexes) and problems, for
    the indexes the ``indexes`` option (:data:`INDEXES`) builds."""
    schema = plan.target_schema
    statements: list[str] = []
    problems: list[str] = []
    for index, name in zip(schema.indexes, names.indexes[plan.target_id], strict=True):
        if not _kept(index, indexes):
            continue
        sql = _index(plan, index, name)
        if sql is None:
            what = "partial index" if index.where else "expression index"
            problems.append(f"{plan.target_id}: {what} {index.name} not created in DuckDB")
        else:
            statements.append(sql)
    for cols, name in zip(schema.unique, names.unique.get(plan.target_id, ()), strict=False):
        if cols and indexes != "none":
            statements.append(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {DIALECT.quote(name)} ON "
                f"{table_name(plan.target_id)} ({_cols(cols)})"
            )
    if schema.foreign_keys:
        problems.append(
            f"{plan.target_id}: {len(schema.foreign_keys)} foreign key(s) not created "
            "(DuckDB enforces them on every write and cannot defer them)"
        )
    return statements, problems


def skipped_objects(plan: TablePlan, indexes: str) -> list[ObjectPlan]:
    """The keys and indexes of ``plan`` that the ``indexes`` option leaves out, each ``not
    converted`` with the reason and the option that builds it."""
    schema = plan.target_schema
    tid, where = plan.target_id, str(plan.source.id)
    out: list[ObjectPlan] = []
    if indexes == "none":
        why = "not built with indexes=none; indexes=keys builds it"
        if schema.primary_key:
            name = f"{where}.primary key ({', '.join(schema.primary_key)})"
            out.append(ObjectPlan("key", name, Verdict.NOT_CONVERTED, reason=why, table=tid))
        for cols in schema.unique:
            name = f"{where}.unique ({', '.join(cols)})"
            out.append(ObjectPlan("key", name, Verdict.NOT_CONVERTED, reason=why, table=tid))
    for index in schema.indexes:
        if _kept(index, indexes):
            continue
        why = (
            "a non-unique index is not built with indexes=keys (DuckDB scans, its indexes "
            "serve point lookups); indexes=all builds it"
            if indexes == "keys"
            else "not built with indexes=none; indexes=all builds it"
        )
        name = f"{where}.{index.name}"
        out.append(ObjectPlan("index", name, Verdict.NOT_CONVERTED, reason=why, table=tid))
    return out


def view_statements(view: ObjectPlan) -> list[str]:
    """Schema, drop and create of one converted view (its query is DuckDB SQL)."""
    assert view.target is not None
    assert view.sql is not None
    name = table_name(view.target)
    return [
        *create_schema(view.target.schema),
        f"DROP VIEW IF EXISTS {name}",
        f"CREATE VIEW {name} AS {view.sql}",
    ]

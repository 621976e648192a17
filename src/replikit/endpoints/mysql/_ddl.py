"""DDL text for MySQL/MariaDB targets (pure: plans in, SQL out; ``replikit plan`` prints it).

Identifiers go through :meth:`MysqlDialect.quote`, literals (comments, enum labels) through
:meth:`MysqlDialect.literal`. ``CREATE TABLE`` carries columns, NOT NULL, defaults, generated
columns (same dialect), AUTO_INCREMENT and the primary key, so CDC upserts work as soon as the
table exists; unique keys, indexes and foreign keys come after the load in one ``ALTER TABLE``
per table, then ``AUTO_INCREMENT`` restarts; CHECKs (in MySQL SQL, translated by the plan) and
views after those, one by one.

MySQL cannot index a TEXT/BLOB column without a prefix length. Such columns in a primary or
unique key become ``varchar(768)`` / ``varbinary(3072)`` (longer values are refused, never
cut); plain indexes on them index a 255-character prefix. Both are listed in ``problems``.
Tables from other dialects are created with a binary, no-pad collation (``utf8mb4_nopad_bin``
on MariaDB, ``utf8mb4_0900_bin`` on MySQL), so keys compare as in PostgreSQL and SQLite:
``'a'``, ``'A'`` and ``'a '`` stay distinct.

Index and unique key names come from :func:`~replikit.schema.identifiers.object_names` (per
table, without case, at most 64 characters, never ``PRIMARY``), so a taken name is renamed
rather than refused; foreign key names are per database, and a later duplicate (or one MySQL
cannot take) is left to the server to name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from replikit.endpoints.mysql._dialect import DIALECT, NAME
from replikit.schema.convert import ColumnPlan, TablePlan, TargetType
from replikit.schema.identifiers import ObjectNames, object_names
from replikit.schema.model import ForeignKey, Index, TableId
from replikit.schema.report import ObjectPlan
from replikit.schema.types import Kind

__all__ = ["Ddl", "table_name"]

q = DIALECT.quote
_ACTIONS = frozenset({"CASCADE", "RESTRICT", "SET NULL", "SET DEFAULT", "NO ACTION"})
_UNBOUNDED = {"longtext": "varchar(768)", "longblob": "varbinary(3072)"}
_PREFIX = 255


def table_name(tid: TableId) -> str:
    """The quoted table name (no database: targets write into the URL's database)."""
    return q(tid.name)


def _collation(flavor: str) -> str:
    return "utf8mb4_nopad_bin" if flavor == "mariadb" else "utf8mb4_0900_bin"


@dataclass
class Ddl:
    """DDL for a set of plans on one server flavor (``"mariadb"`` or ``"mysql"``)."""

    flavor: str = "mariadb"
    problems: list[str] = field(default_factory=list)

    # -- create ---------------------------------------------------------------------------
    def create(self, plan: TablePlan) -> list[str]:
        """Drop and create one table (drop-and-create mode)."""
        return [f"DROP TABLE IF EXISTS {table_name(plan.target_id)}", self.create_table(plan)]

    def create_table(self, plan: TablePlan) -> str:
        """``CREATE TABLE`` with columns, defaults, AUTO_INCREMENT and the primary key."""
        same = plan.source_dialect == NAME
        auto = _auto_column(plan)
        keyed = _key_columns(plan)
        parts = [self._column(plan, c, same, c.name == auto, c.name in keyed) for c in plan.columns]
        pk = plan.target_schema.primary_key
        if pk:
            parts.append(f"PRIMARY KEY ({', '.join(q(c) for c in pk)})")
        if auto is not None and (not pk or pk[0] != auto):
            parts.append(f"KEY ({q(auto)})")  # an AUTO_INCREMENT column must lead an index
        body = ",\n  ".join(parts)
        options = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        if not same:
            options += f" COLLATE={_collation(self.flavor)}"
        if plan.target_schema.comment:
            options += f" COMMENT={DIALECT.literal(plan.target_schema.comment)}"
        return f"CREATE TABLE {table_name(plan.target_id)} (\n  {body}\n) {options}"

    def _column(self, plan: TablePlan, col: ColumnPlan, same: bool, auto: bool, keyed: bool) -> str:
        sql = col.target.sql
        if keyed and sql in _UNBOUNDED:
            self.problems.append(
                f"{plan.target_id}.{col.name}: {sql} in a key becomes {_UNBOUNDED[sql]} "
                "(longer values are refused)"
            )
            sql = _UNBOUNDED[sql]
        text = f"{q(col.name)} {sql}"
        if (
            same
            and col.source.collation
            and col.target.type.kind in (Kind.STRING, Kind.TEXT, Kind.ENUM)
        ):
            text += f" COLLATE {q(col.source.collation)}"
        if col.generated is not None:
            kind = "STORED" if col.generated.stored else "VIRTUAL"
            return f"{text} GENERATED ALWAYS AS ({col.generated.expression}) {kind}"
        text += " NULL" if col.nullable else " NOT NULL"
        if auto:
            text += " AUTO_INCREMENT"
        elif col.default is not None:
            text += f" DEFAULT {col.default}"
        if col.source.comment:
            text += f" COMMENT {DIALECT.literal(col.source.comment)}"
        return text

    # -- after the load -------------------------------------------------------------------
    def finish(self, plans: Sequence[TablePlan]) -> list[str]:
        """Per table one ALTER for keys and indexes; then foreign keys, then restarts."""
        alters = self.table_alters(plans) + self.foreign_key_alters(plans, plans)
        return [statement for _, statement in alters]

    def table_alters(self, plans: Sequence[TablePlan]) -> list[tuple[TableId, str]]:
        """Per table one ALTER for keys and indexes."""
        names = object_names(plans, DIALECT)  # per table: the other plans do not matter
        out: list[tuple[TableId, str]] = []
        for plan in plans:
            clauses = self._table_clauses(plan, names)
            if clauses:
                out.append(
                    (
                        plan.target_id,
                        f"ALTER TABLE {table_name(plan.target_id)} " + ", ".join(clauses),
                    )
                )
        return out

    def foreign_key_alters(
        self, plans: Sequence[TablePlan], refs: Sequence[TablePlan]
    ) -> list[tuple[TableId, str]]:
        """Per table of ``plans`` one ALTER adding its foreign keys to tables in ``refs``
        (keys to other tables are left out)."""
        targets = {p.target_id: p for p in refs}
        fk_names = _fk_names(plans)
        out: list[tuple[TableId, str]] = []
        for plan in plans:
            fk_clauses = [
                c
                for fk in plan.target_schema.foreign_keys
                if (c := _fk(fk, targets, fk_names.get((plan.target_id, fk.name)), plan))
            ]
            if fk_clauses:
                out.append(
                    (
                        plan.target_id,
                        f"ALTER TABLE {table_name(plan.target_id)} " + ", ".join(fk_clauses),
                    )
                )
        return out

    def _table_clauses(self, plan: TablePlan, names: ObjectNames) -> list[str]:
        same = plan.source_dialect == NAME
        unbounded = {c.name for c in plan.columns if c.target.sql in _UNBOUNDED}
        keyed = _key_columns(plan)
        tid = plan.target_id
        out = [
            f"ADD UNIQUE KEY {q(name)} ({', '.join(q(c) for c in u)})"
            for u, name in zip(plan.target_schema.unique, names.unique[tid], strict=True)
        ]
        for index, name in zip(plan.target_schema.indexes, names.indexes[tid], strict=True):
            clause = self._index(plan, replace(index, name=name), same, unbounded - keyed)
            if clause:
                out.append(clause)
        return out

    def checks(self, plan: TablePlan) -> list[tuple[ObjectPlan, str]]:
        """One ``ALTER TABLE ... ADD CHECK`` per converted CHECK of ``plan`` (MySQL SQL)."""
        converted = [o for o in plan.objects if o.kind == "check" and o.sql is not None]
        name = table_name(plan.target_id)
        return [
            (
                obj,
                f"ALTER TABLE {name} ADD {'CONSTRAINT ' + q(c.name) + ' ' if c.name else ''}"
                f"CHECK ({c.expression})",
            )
            for c, obj in zip(plan.target_schema.checks, converted, strict=True)
        ]

    def view(self, view: ObjectPlan) -> str:
        """``CREATE OR REPLACE VIEW`` for one converted view (its query is MySQL SQL)."""
        assert view.target is not None
        assert view.sql is not None
        return f"CREATE OR REPLACE VIEW {table_name(view.target)} AS {view.sql}"

    def _index(self, plan: TablePlan, index: Index, same: bool, prefix: set[str]) -> str | None:
        method = (index.method or "").upper()
        if same and index.expressions:
            keys = ", ".join(index.expressions)
        elif index.expressions or index.where:
            return None  # other dialects' SQL: plan.problems says so
        elif method and method not in ("BTREE", "HASH") and not same:
            self.problems.append(
                f"{plan.target_id}: index {index.name} uses method {index.method}; not created"
            )
            return None
        else:
            keys = ", ".join(f"{q(c)}({_PREFIX})" if c in prefix else q(c) for c in index.columns)
            if prefix & set(index.columns):
                self.problems.append(
                    f"{plan.target_id}: index {index.name} indexes the first {_PREFIX} "
                    "characters of its text/blob column(s)"
                )
        kind = "INDEX"
        if index.unique:
            kind = "UNIQUE INDEX"
        elif same and method in ("FULLTEXT", "SPATIAL"):
            kind = f"{method} INDEX"
        return f"ADD {kind} {q(index.name)} ({keys})"

    def restart(self, tid: TableId, value: int) -> str:
        """``ALTER TABLE ... AUTO_INCREMENT = value``."""
        return f"ALTER TABLE {table_name(tid)} AUTO_INCREMENT = {int(value)}"


def _auto_column(plan: TablePlan) -> str | None:
    for col in plan.columns:
        if col.source.identity is not None and col.target.type.kind is Kind.INT:
            return col.name
    return None


def auto_column(plan: TablePlan) -> str | None:
    """The column created AUTO_INCREMENT (the first identity column), if any."""
    return _auto_column(plan)


def _key_columns(plan: TablePlan) -> set[str]:
    schema = plan.target_schema
    keyed = set(schema.primary_key)
    for u in schema.unique:
        keyed.update(u)
    for i in schema.indexes:
        if i.unique and not i.expressions:
            keyed.update(i.columns)
    return keyed


def _fk_names(plans: Sequence[TablePlan]) -> dict[tuple[TableId, str | None], str | None]:
    """FK names are unique per database in MySQL: later duplicates, and names MySQL cannot
    take (too long), get a name the server generates."""
    seen: set[str] = set()
    out: dict[tuple[TableId, str | None], str | None] = {}
    for plan in plans:
        for fk in plan.target_schema.foreign_keys:
            name = fk.name
            if name is not None and (
                DIALECT.name_key(name, "constraint") in seen
                or DIALECT.name_problem(name, "constraint")
            ):
                name = None
            if name is not None:
                seen.add(DIALECT.name_key(name, "constraint"))
            out[(plan.target_id, fk.name)] = name
    return out


def _fk(
    fk: ForeignKey, targets: dict[TableId, TablePlan], name: str | None, plan: TablePlan
) -> str | None:
    ref = targets.get(fk.ref_table)
    if ref is None:
        return None
    text = (
        f"ADD {'CONSTRAINT ' + q(name) + ' ' if name else ''}FOREIGN KEY "
        f"({', '.join(q(c) for c in fk.columns)}) REFERENCES {table_name(ref.target_id)} "
        f"({', '.join(q(c) for c in fk.ref_columns)})"
    )
    # SET NULL on a NOT NULL column: PostgreSQL accepts the key and refuses the delete or
    # update when it happens; MySQL refuses the key. Without the action MySQL refuses the same
    # delete or update, so the outcome is kept.
    not_null = any(not c.nullable for c in plan.columns if c.name in fk.columns)
    for event, action in (("DELETE", fk.on_delete), ("UPDATE", fk.on_update)):
        act = (action or "").upper()
        if act in _ACTIONS and not (act == "SET NULL" and not_null):
            text += f" ON {event} {act}"
    return text


def as_created(plan: TablePlan) -> TablePlan:
    """``plan`` with the column types :meth:`Ddl.create_table` really declares (unbounded
    key columns narrowed), so an existing table made by it compares equal."""
    keyed = _key_columns(plan)
    columns = tuple(
        replace(c, target=_narrowed(c.target)) if c.name in keyed else c for c in plan.columns
    )
    return replace(plan, columns=columns)


def _narrowed(target: TargetType) -> TargetType:
    sql = _UNBOUNDED.get(target.sql)
    if sql is None:
        return target
    return replace(target, sql=sql, type=DIALECT.parse_type(sql))

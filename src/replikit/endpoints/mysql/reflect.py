"""Reflect MySQL/MariaDB databases into the portable :class:`~replikit.schema.model.Catalog`.

Everything comes from ``information_schema`` with bound parameters, over any DB-API
connection (mysqlclient or PyMySQL). A table's schema is its database. What MySQL keeps that
other databases need to hear about goes to ``Catalog.problems``: zero-date defaults (dropped),
SET columns (carried as comma-separated text), TIME columns (values beyond a day have no
time-of-day form in PostgreSQL). Names are the target's business: the plan judges them by
the target's rules (:mod:`replikit.schema.identifiers`). MariaDB's JSON is LONGTEXT with a
``json_valid`` CHECK: such columns reflect as ``json`` and the CHECK is not carried
separately.

Defaults are normalised to MySQL SQL (MariaDB already reports them so; MySQL 8 reports bare
literals): ``NULL`` defaults become ``None``, ``current_timestamp()`` becomes
``CURRENT_TIMESTAMP``. ``ON UPDATE CURRENT_TIMESTAMP`` is kept in the column type's native
spelling (``timestamp on update current_timestamp``) so a MySQL target can recreate it.
Generated columns carry ``"<expression> STORED"`` or ``"<expression> VIRTUAL"``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from replikit.endpoints._reserved import reserved
from replikit.endpoints.mysql._dialect import DIALECT
from replikit.mapping import Selection
from replikit.schema.model import (
    Catalog,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Routine,
    TableDraft,
    TableId,
    View,
)
from replikit.schema.types import Kind, Type

__all__ = ["SYSTEM_SCHEMAS", "Server", "reflect", "server_info"]

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
_NOW = re.compile(r"^(current_timestamp|now|localtimestamp|localtime)\s*(\(\s*(\d*)\s*\))?$", re.I)
_ZERO_DATE = re.compile(r"^'?0000-00-00")
_JSON_CHECK = re.compile(r"^\(?json_valid\(`((?:[^`]|``)+)`\)\)?$", re.I)


@dataclass(frozen=True, slots=True)
class Server:
    """What reflection and the writer need to know about the server."""

    version: str
    mariadb: bool

    @property
    def flavor(self) -> str:
        """``"mariadb"`` or ``"mysql"``."""
        return "mariadb" if self.mariadb else "mysql"


def _rows(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, tuple(params))
        return [tuple(_decode(v) for v in row) for row in cur.fetchall()]


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes | bytearray) else value


def server_info(conn: Any) -> Server:
    """Version and flavor of the server ``conn`` is connected to."""
    ((version,),) = _rows(conn, "SELECT VERSION()")
    return Server(str(version), "mariadb" in str(version).lower())


@dataclass(kw_only=True)
class _Table(TableDraft):
    """A table being assembled from several catalog queries."""

    auto_increment: int | None = None


def reflect(conn: Any, database: str | None, selection: Selection | None = None) -> Catalog:
    """Reflect ``database`` (``None``: every non-system database) selected by ``selection``."""
    server = server_info(conn)
    _fresh_statistics(conn)
    schemas = [database] if database else _databases(conn)
    if not schemas:
        return Catalog()
    problems: list[str] = []
    tables, views = _tables(conn, schemas, selection or Selection(), problems)
    if tables:
        json_columns = _checks(conn, schemas, tables, server)
        _columns(conn, schemas, tables, json_columns, server, problems)
        _indexes(conn, schemas, tables)
        _foreign_keys(conn, schemas, tables)
    built = tuple(t.build() for t in tables.values())
    routines = _routines(conn, schemas, tables)
    return Catalog(
        tables=built, views=tuple(views), routines=tuple(routines), problems=tuple(problems)
    )


def _routines(conn: Any, schemas: Sequence[str], tables: dict[TableId, _Table]) -> list[Routine]:
    """Stored functions and procedures of ``schemas``; triggers on the selected tables."""
    sql = (
        "SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_BODY, ROUTINE_DEFINITION "  # noqa: S608
        f"FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN ({_in(schemas)}) ORDER BY 1, 2"
    )
    out = [
        Routine(TableId(schema, name), str(kind).lower(), str(body).lower(), definition)
        for schema, name, kind, body, definition in _rows(conn, sql, schemas)
    ]
    sql = (
        "SELECT TRIGGER_SCHEMA, TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, "  # noqa: S608
        "EVENT_MANIPULATION, ACTION_STATEMENT FROM information_schema.TRIGGERS "
        f"WHERE TRIGGER_SCHEMA IN ({_in(schemas)}) ORDER BY 1, 2"
    )
    for schema, name, table, timing, event, statement in _rows(conn, sql, schemas):
        tid = TableId(schema, table)
        if tid in tables:
            text = f"{timing} {event} ON {table} FOR EACH ROW {statement}"
            out.append(Routine(TableId(schema, name), "trigger", "sql", text, tid))
    return out


def _fresh_statistics(conn: Any) -> None:
    # MySQL 8 caches TABLE_ROWS and AUTO_INCREMENT for a day unless told otherwise
    if "information_schema_stats_expiry" in {
        r[0] for r in _rows(conn, "SHOW SESSION VARIABLES LIKE 'information_schema_stats_expiry'")
    }:
        with conn.cursor() as cur:
            cur.execute("SET SESSION information_schema_stats_expiry = 0")


def _databases(conn: Any) -> list[str]:
    marks = ", ".join(["%s"] * len(SYSTEM_SCHEMAS))
    return [
        r[0]
        for r in _rows(
            conn,
            f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "  # noqa: S608
            f"WHERE SCHEMA_NAME NOT IN ({marks}) ORDER BY 1",
            SYSTEM_SCHEMAS,
        )
    ]


def _in(schemas: Sequence[str]) -> str:
    return ", ".join(["%s"] * len(schemas))


def _tables(
    conn: Any, schemas: Sequence[str], selection: Selection, problems: list[str]
) -> tuple[dict[TableId, _Table], list[View]]:
    sql = (
        "SELECT t.TABLE_SCHEMA, t.TABLE_NAME, t.TABLE_TYPE, t.TABLE_ROWS, t.DATA_LENGTH, "  # noqa: S608
        "t.AUTO_INCREMENT, t.TABLE_COMMENT, v.VIEW_DEFINITION "
        "FROM information_schema.TABLES t LEFT JOIN information_schema.VIEWS v "
        "ON v.TABLE_SCHEMA = t.TABLE_SCHEMA AND v.TABLE_NAME = t.TABLE_NAME "
        f"WHERE t.TABLE_SCHEMA IN ({_in(schemas)}) ORDER BY 1, 2"
    )
    tables: dict[TableId, _Table] = {}
    views: list[View] = []
    for schema, name, kind, rows, size, auto, comment, viewdef in _rows(conn, sql, schemas):
        tid = TableId(schema, name)
        if not selection.matches(tid) or reserved(name, fold_case=False):
            continue  # replikit's control tables (replikit_checkpoints) are not user data
        if kind == "VIEW":
            views.append(View(tid, viewdef))
        elif kind in ("BASE TABLE", "SYSTEM VERSIONED"):
            if kind == "SYSTEM VERSIONED":
                problems.append(f"{tid}: system-versioned history rows are not read")
            est = int(rows) if rows is not None else None
            tables[tid] = _Table(
                id=tid, rows=est, size=size, auto_increment=auto, comment=comment or None
            )
        elif kind == "SEQUENCE":
            problems.append(f"{tid}: sequence objects are not converted")
    return tables, views


def _checks(
    conn: Any, schemas: Sequence[str], tables: dict[TableId, _Table], server: Server
) -> set[tuple[TableId, str]]:
    """Table CHECKs into the tables; returns MariaDB JSON columns (json_valid column checks)."""
    if server.mariadb:
        sql = (
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE, LEVEL "  # noqa: S608
            "FROM information_schema.CHECK_CONSTRAINTS "
            f"WHERE CONSTRAINT_SCHEMA IN ({_in(schemas)}) ORDER BY 1, 2, 3"
        )
    else:
        sql = (
            "SELECT tc.TABLE_SCHEMA, tc.TABLE_NAME, cc.CONSTRAINT_NAME, cc.CHECK_CLAUSE, "  # noqa: S608
            "'Table' FROM information_schema.TABLE_CONSTRAINTS tc "
            "JOIN information_schema.CHECK_CONSTRAINTS cc "
            "ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA "
            "AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME "
            f"WHERE tc.CONSTRAINT_TYPE = 'CHECK' AND tc.TABLE_SCHEMA IN ({_in(schemas)}) "
            "ORDER BY 1, 2, 3"
        )
    json_columns: set[tuple[TableId, str]] = set()
    try:
        found = _rows(conn, sql, schemas)
    except Exception:
        return json_columns
    for schema, name, cname, clause, level in found:
        table = tables.get(TableId(schema, name))
        if table is None:
            continue
        m = _JSON_CHECK.match(str(clause).strip())
        if m and level == "Column" and m.group(1).replace("``", "`") == cname:
            json_columns.add((table.id, cname))
            continue
        table.checks.append(CheckConstraint(cname, str(clause)))
    return json_columns


def _columns(
    conn: Any,
    schemas: Sequence[str],
    tables: dict[TableId, _Table],
    json_columns: set[tuple[TableId, str]],
    server: Server,
    problems: list[str],
) -> None:
    sql = (
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_DEFAULT, IS_NULLABLE, "  # noqa: S608
        "COLUMN_TYPE, COLLATION_NAME, EXTRA, COLUMN_COMMENT, GENERATION_EXPRESSION "
        f"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({_in(schemas)}) "
        "ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
    )
    for schema, name, col, default, nullable, ctype, coll, extra, comment, gen in _rows(
        conn, sql, schemas
    ):
        table = tables.get(TableId(schema, name))
        if table is None:
            continue
        column = _column(
            table, col, default, nullable == "YES", ctype, coll, extra or "", gen, server, problems
        )
        if (table.id, col) in json_columns:
            column = replace(column, type=Type.json(native="json"), collation=None)
        table.columns.append(replace(column, comment=comment or None))


def _column(
    table: _Table,
    name: str,
    default: Any,
    nullable: bool,
    column_type: str,
    collation: str | None,
    extra: str,
    generation: str | None,
    server: Server,
    problems: list[str],
) -> Column:
    low_extra = extra.lower()
    native = str(column_type)
    on_update = re.search(r"on update (\S+)", low_extra)
    if on_update:
        native += f" on update {_now(on_update.group(1))}"
    type_ = DIALECT.parse_type(native)
    if type_.kind is Kind.JSON and not server.mariadb:
        type_ = Type.json(binary=True, native=type_.native)
    where = f"{table.id}.{name}"
    _type_notes(where, type_, problems)
    generated = None
    if "generated" in low_extra and generation:
        kind = "STORED" if ("stored" in low_extra or "persistent" in low_extra) else "VIRTUAL"
        generated = f"{generation} {kind}"
    identity = None
    if "auto_increment" in low_extra:
        identity = Identity("autoincrement", next_value=_int(table.auto_increment))
    return Column(
        name=name,
        type=type_,
        nullable=nullable,
        default=None if generated else _default(where, default, low_extra, type_, server, problems),
        identity=identity,
        generated=generated,
        collation=collation if type_.kind in (Kind.STRING, Kind.TEXT, Kind.ENUM) else None,
    )


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _type_notes(where: str, type_: Type, problems: list[str]) -> None:
    base = type_.native.lower().split("(")[0].split()[0] if type_.native else ""
    if base == "set":
        problems.append(
            f"{where}: SET is carried as comma-separated text ({type_.native}); targets other "
            "than MySQL do not check the members"
        )
    elif type_.kind is Kind.TIME:
        problems.append(
            f"{where}: TIME values outside 00:00:00..24:00:00 (negative or beyond a day) have "
            "no time-of-day form in PostgreSQL; rows holding one are refused there (override "
            "the column's type, e.g. to interval or text, to keep them); SQLite keeps their text"
        )


def _now(text: str) -> str:
    m = _NOW.match(text.strip())
    if m is None:
        return text
    return "CURRENT_TIMESTAMP" + (f"({m.group(3)})" if m.group(3) else "")


def _default(
    where: str, default: Any, extra: str, type_: Type, server: Server, problems: list[str]
) -> str | None:
    if default is None:
        return None
    text = str(default)
    if server.mariadb:
        if text.upper() == "NULL":
            return None
    elif "default_generated" in extra:
        text = text if _NOW.match(text) else f"({text})"
    elif type_.kind not in (Kind.INT, Kind.DECIMAL, Kind.FLOAT) and not text.startswith("b'"):
        text = DIALECT.literal(text)
    if _ZERO_DATE.match(text) and type_.kind in (Kind.DATE, Kind.TIMESTAMP):
        problems.append(f"{where}: default {text} is a zero date; it is not carried")
        return None
    if type_.kind is Kind.BOOL and text in ("'0'", "'1'"):
        text = text.strip("'")
    return _now(text)


def _indexes(conn: Any, schemas: Sequence[str], tables: dict[TableId, _Table]) -> None:
    sql = (
        "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, "  # noqa: S608
        "INDEX_TYPE FROM information_schema.STATISTICS "
        f"WHERE TABLE_SCHEMA IN ({_in(schemas)}) "
        "ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
    )
    parts: dict[tuple[TableId, str], list[tuple[Any, ...]]] = defaultdict(list)
    for schema, table, index, non_unique, column, sub_part, itype in _rows(conn, sql, schemas):
        tid = TableId(schema, table)
        if tid in tables:
            parts[(tid, index)].append((non_unique, column, sub_part, itype))
    for (tid, index), cols in sorted(parts.items(), key=lambda kv: kv[0][1] != "PRIMARY"):
        _add_index(tables[tid], index, cols)  # the primary key first: it decides `unique`


def _add_index(table: _Table, name: str, cols: list[tuple[Any, ...]]) -> None:
    unique = not int(cols[0][0])
    itype = str(cols[0][3] or "BTREE").upper()
    columns = tuple(str(c[1]) for c in cols if c[1] is not None)
    prefixed = any(c[2] is not None for c in cols) or len(columns) < len(cols)
    if name == "PRIMARY":
        table.primary_key = columns
        return
    expressions: tuple[str, ...] = ()
    if prefixed:  # prefix lengths are MySQL SQL: other dialects cannot use this index as is
        expressions = tuple(
            f"{DIALECT.quote(str(c[1]))}({int(c[2])})" if c[2] is not None else DIALECT.quote(c[1])
            for c in cols
            if c[1] is not None
        )
    method = None if itype == "BTREE" else itype
    nulls = {c.name for c in table.columns if c.nullable}
    if (
        unique
        and not prefixed
        and not table.primary_key
        and not table.unique
        and method is None
        and not nulls & set(columns)
    ):
        table.unique.append(columns)  # the table's key when it has no primary key
        return
    table.indexes.append(Index(name, columns, unique, None, expressions, method))


def _foreign_keys(conn: Any, schemas: Sequence[str], tables: dict[TableId, _Table]) -> None:
    sql = (
        "SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, "  # noqa: S608
        "k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, "
        "r.DELETE_RULE, r.UPDATE_RULE FROM information_schema.KEY_COLUMN_USAGE k "
        "JOIN information_schema.REFERENTIAL_CONSTRAINTS r "
        "ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME "
        "AND r.TABLE_NAME = k.TABLE_NAME "
        f"WHERE k.TABLE_SCHEMA IN ({_in(schemas)}) AND k.REFERENCED_TABLE_NAME IS NOT NULL "
        "ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
    )
    grouped: dict[tuple[TableId, str], list[tuple[Any, ...]]] = defaultdict(list)
    for schema, table, cname, col, rschema, rtable, rcol, on_del, on_upd in _rows(
        conn, sql, schemas
    ):
        tid = TableId(schema, table)
        if tid in tables:
            grouped[(tid, cname)].append((col, rschema, rtable, rcol, on_del, on_upd))
    for (tid, cname), rows in grouped.items():
        first = rows[0]
        tables[tid].foreign_keys.append(
            ForeignKey(
                cname,
                tuple(r[0] for r in rows),
                TableId(first[1], first[2]),
                tuple(r[3] for r in rows),
                _action(first[4]),
                _action(first[5]),
            )
        )


def _action(rule: Any) -> str | None:
    text = str(rule or "").upper()
    return None if text in ("", "NO ACTION") else text

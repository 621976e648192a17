"""Reflection of a SQLite database into the portable schema model.

Catalog facts come from the ``pragma_*`` table-valued functions (names always bound); what the
pragmas do not say (AUTOINCREMENT, index expressions, partial index conditions) is read from the
``CREATE`` statements in ``sqlite_master``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from replikit.endpoints._reserved import reserved
from replikit.endpoints.sqlite._cdc_codec import trigger_names
from replikit.endpoints.sqlite._dialect import DIALECT
from replikit.mapping import Selection
from replikit.schema.model import (
    Catalog,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Routine,
    TableId,
    TableSchema,
    View,
)

__all__ = [
    "reflect_catalog",
    "reflect_table",
    "table_names",
]

_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)
_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID\b[^)]*$", re.IGNORECASE)
_GENERATED = {2: "VIRTUAL", 3: "STORED"}  # pragma_table_xinfo.hidden
_QUOTES = {"'": "'", '"': '"', "`": "`", "[": "]"}


@dataclass(frozen=True, slots=True)
class _TableRow:
    name: str
    sql: str

    @property
    def without_rowid(self) -> bool:
        return bool(_WITHOUT_ROWID.search(self.sql))


def _user_table(name: str) -> bool:
    """Not SQLite's own (``sqlite_%``), nor one of replikit's tables (by exact name)."""
    return not name.lower().startswith("sqlite_") and not reserved(name, fold_case=True)


def _table_rows(conn: sqlite3.Connection) -> list[_TableRow]:
    sql_of = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
    )
    try:
        kinds = {r[1]: r[2] for r in conn.execute("PRAGMA table_list") if r[0] == "main"}
    except sqlite3.OperationalError:  # SQLite < 3.37: no shadow/virtual distinction
        kinds = {}
    return [
        _TableRow(name, sql or "")
        for name, sql in sql_of.items()
        if _user_table(name)
        and kinds.get(name, "table") == "table"
        and not (sql or "").upper().startswith("CREATE VIRTUAL")
    ]


def table_names(conn: sqlite3.Connection) -> list[str]:
    """Names of the user tables (no ``sqlite_%``, no replikit control tables)."""
    return [row.name for row in _table_rows(conn)]


def reflect_catalog(conn: sqlite3.Connection, selection: Selection | None = None) -> Catalog:
    """Every selected user table, and the views."""
    rows = _table_rows(conn)
    if selection is not None:
        rows = [r for r in rows if selection.matches(TableId(None, r.name))]
    tables = tuple(_reflect(conn, row) for row in rows)
    views = tuple(
        View(TableId(None, name), sql)
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY name"
        )
        if selection is None or selection.matches(TableId(None, name))
    )
    names = {t.id.name for t in tables}
    triggers = tuple(
        Routine(TableId(None, name), "trigger", "sql", sql, TableId(None, table))
        for name, table, sql in conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
        )
        if table in names and name not in trigger_names(table)  # not a CDC source's own
    )
    virtual = [
        _not_copied(name, sql)
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND "
            "upper(sql) LIKE 'CREATE VIRTUAL%' ORDER BY name"
        )
        if _user_table(name) and (selection is None or selection.matches(TableId(None, name)))
    ]
    return Catalog(tables=tables, views=views, routines=triggers, problems=tuple(virtual))


def _not_copied(name: str, sql: str) -> str:
    """The plan's problem for virtual table ``name`` (created by ``sql``)."""
    found = re.search(r"\bUSING\s+(\w+)", sql, re.IGNORECASE)
    module = f"USING {found[1]}" if found else sql
    make = f"CREATE TABLE {name}_rows AS SELECT * FROM {name}"  # noqa: S608  (advice, not run)
    return (
        f"{name}: a virtual table ({module}) is not copied: its module keeps the rows; to copy "
        f"them, make a table of them ({make}) and create the virtual table in the target yourself"
    )


def reflect_table(conn: sqlite3.Connection, name: str) -> TableSchema | None:
    """One table by name (SQLite names are case-insensitive), or None when there is none."""
    for row in _table_rows(conn):
        if row.name.lower() == name.lower():
            return _reflect(conn, row)
    return None


def _reflect(conn: sqlite3.Connection, row: _TableRow) -> TableSchema:
    info = conn.execute(
        'SELECT name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?) '
        "ORDER BY cid",
        (row.name,),
    ).fetchall()
    pk = tuple(r[0] for r in sorted((r for r in info if r[4]), key=lambda r: r[4]))
    identity = _identity(conn, row, info, pk)
    expressions: dict[str, str] = {}
    if any(r[5] > 1 for r in info):  # sqlglot, imported only when there is something to parse
        from replikit.schema.expressions import create_table_generated

        expressions = create_table_generated(row.sql, DIALECT.name)

    def generated(name: str, hidden: int) -> str | None:
        kind = _GENERATED.get(hidden)
        if kind is None:
            return None
        # an expression sqlglot cannot find does not parse again, and is reported so
        return f"{expressions.get(name.lower(), '<unknown>')} {kind}"

    columns = tuple(
        Column(
            name=name,
            type=DIALECT.parse_type(declared or ""),
            nullable=not notnull and name not in pk,
            default=default,
            identity=identity if (identity is not None and pk == (name,)) else None,
            generated=generated(name, hidden),
        )
        for name, declared, notnull, default, _, hidden in info
        if hidden != 1
    )
    unique, indexes = _indexes(conn, row.name)
    count_sql = f"SELECT count(*) FROM {DIALECT.quote(row.name)}"  # noqa: S608 - quoted
    (count,) = conn.execute(count_sql).fetchone()
    return TableSchema(
        id=TableId(None, row.name),
        columns=columns,
        primary_key=pk,
        unique=unique,
        indexes=indexes,
        foreign_keys=_foreign_keys(conn, row.name),
        checks=_checks(row.sql),
        estimated_rows=count,
    )


def _checks(create_sql: str) -> tuple[CheckConstraint, ...]:
    """The CHECK constraints of a CREATE TABLE statement (parsed by sqlglot, imported only
    when the statement has the word)."""
    if "check" not in create_sql.lower():
        return ()
    from replikit.schema.expressions import create_table_checks

    found = create_table_checks(create_sql, DIALECT.name)
    return tuple(CheckConstraint(name, sql) for name, sql in found)


def _identity(
    conn: sqlite3.Connection,
    row: _TableRow,
    info: Sequence[tuple[object, ...]],
    pk: tuple[str, ...],
) -> Identity | None:
    """A rowid alias (``INTEGER PRIMARY KEY``) generates keys; AUTOINCREMENT never reuses them."""
    if len(pk) != 1 or row.without_rowid:
        return None
    declared = next(r[1] for r in info if r[0] == pk[0])
    if not isinstance(declared, str) or declared.upper() != "INTEGER":
        return None
    table = DIALECT.quote(row.name)
    (top,) = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()  # noqa: S608
    if not _AUTOINCREMENT.search(row.sql):
        return Identity(kind="by-default", next_value=(top or 0) + 1)
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (row.name,)).fetchone()
    last = max(top or 0, (seq[0] if seq else 0) or 0)
    return Identity(kind="autoincrement", sequence="sqlite_sequence", next_value=last + 1)


def _indexes(
    conn: sqlite3.Connection, table: str
) -> tuple[tuple[tuple[str, ...], ...], tuple[Index, ...]]:
    unique: list[tuple[str, ...]] = []
    indexes: list[Index] = []
    listing = conn.execute(
        'SELECT name, "unique", origin FROM pragma_index_list(?) ORDER BY name', (table,)
    ).fetchall()
    for name, is_unique, origin in listing:
        if origin == "pk":
            continue
        parts = conn.execute(
            'SELECT cid, name, "desc", coll FROM pragma_index_xinfo(?) WHERE key = 1 '
            "ORDER BY seqno",
            (name,),
        ).fetchall()
        columns = tuple(p[1] for p in parts if p[0] >= 0)
        plain = all(p[0] >= 0 and not p[2] and p[3] == "BINARY" for p in parts)
        if origin == "u" and plain:
            unique.append(columns)
            continue
        indexes.append(_index(conn, name, bool(is_unique), columns, plain))
    return tuple(unique), tuple(indexes)


def _index(
    conn: sqlite3.Connection, name: str, unique: bool, columns: tuple[str, ...], plain: bool
) -> Index:
    found = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
    ).fetchone()
    keys, where = parse_index_sql(found[0]) if found and found[0] else ((), None)
    return Index(
        name=name,
        columns=columns if plain else (),
        unique=unique,
        where=where,
        expressions=() if plain else keys,
    )


def _scan(sql: str, start: int) -> int:
    """The index just past the quoted token starting at ``start``."""
    close = _QUOTES[sql[start]]
    pos = start + 1
    while pos < len(sql):
        if sql[pos] == close:
            if close != "]" and pos + 1 < len(sql) and sql[pos + 1] == close:
                pos += 2
                continue
            return pos + 1
        pos += 1
    return pos


def parse_index_sql(sql: str) -> tuple[tuple[str, ...], str | None]:
    """The key parts and the WHERE condition of a ``CREATE INDEX`` statement."""
    parts: list[str] = []
    depth, pos, begin, end = 0, 0, -1, len(sql)
    while pos < len(sql):
        ch = sql[pos]
        if ch in _QUOTES:
            pos = _scan(sql, pos)
            continue
        if ch == "(":
            depth += 1
            if depth == 1 and begin < 0:
                begin = pos + 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and begin >= 0:
                parts.append(sql[begin:pos].strip())
                end = pos + 1
                break
        elif ch == "," and depth == 1:
            parts.append(sql[begin:pos].strip())
            begin = pos + 1
        pos += 1
    rest = sql[end:].strip()
    where = rest[5:].strip() if rest[:5].upper() == "WHERE" else None
    return tuple(parts), where or None


def _foreign_keys(conn: sqlite3.Connection, table: str) -> tuple[ForeignKey, ...]:
    rows = conn.execute(
        'SELECT id, "table", "from", "to", on_update, on_delete '
        "FROM pragma_foreign_key_list(?) ORDER BY id DESC, seq",  # ids count down
        (table,),
    ).fetchall()
    groups: dict[int, list[tuple[object, ...]]] = {}
    for r in rows:
        groups.setdefault(r[0], []).append(r)
    result = []
    for group in groups.values():
        parent = str(group[0][1])
        refs = tuple(str(r[3]) for r in group if r[3] is not None)
        if len(refs) != len(group):
            refs = _primary_key(conn, parent)
        result.append(
            ForeignKey(
                name=None,
                columns=tuple(str(r[2]) for r in group),
                ref_table=TableId(None, parent),
                ref_columns=refs,
                on_delete=str(group[0][5]),
                on_update=str(group[0][4]),
            )
        )
    return tuple(result)


def _primary_key(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    rows = conn.execute("SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0", (table,))
    return tuple(name for name, _ in sorted(rows, key=lambda r: r[1]))

"""Plain SQL access to the databases of the identifier tests (no replikit involved).

A :class:`Db` runs SQL, lists the tables (what a person would see with psql, the mysql client
or sqlite3) and reads a table's rows by column name, so a test can say "the target holds
exactly the source's tables and rows" without trusting replikit's own reflection.
"""

from __future__ import annotations

import ast
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

import replikit as rk


@dataclass
class Db:
    """One database: ``family`` is ``postgresql``, ``mysql`` or ``sqlite``."""

    family: str
    url: str

    def quote(self, name: str) -> str:
        if self.family == "mysql":
            return "`" + name.replace("`", "``") + "`"
        return '"' + name.replace('"', '""') + '"'

    def qualified(self, schema: str | None, name: str) -> str:
        if schema is None or self.family != "postgresql":
            return self.quote(name)
        return f"{self.quote(schema)}.{self.quote(name)}"

    def rows(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.family == "postgresql":
            with psycopg.connect(self.url, autocommit=True) as conn:
                cur = conn.execute(sql.SQL(statement), params or None)  # type: ignore[arg-type]
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
        if self.family == "mysql":
            with closing(_mysql(self.url)) as conn, conn.cursor() as cur:
                cur.execute(statement, params or None)
                return [tuple(r) for r in cur.fetchall()]
        path = make_url(self.url).database or ""
        with closing(sqlite3.connect(path)) as conn, conn:
            return list(conn.execute(statement, params))

    def execute(self, *statements: str) -> None:
        for statement in statements:
            self.rows(statement)

    def tables(self) -> list[tuple[str | None, str]]:
        """Every user table: (schema, name); schema is None for MySQL and SQLite."""
        if self.family == "postgresql":
            found = self.rows(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            return sorted((str(s), str(n)) for s, n in found)
        if self.family == "mysql":
            found = self.rows(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
            )
        else:
            found = self.rows(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        return sorted((None, _text(n)) for (n,) in found)

    def columns(self, schema: str | None, table: str) -> list[str]:
        """Column names of one table, in order."""
        if self.family == "sqlite":
            return [_text(r[1]) for r in self.rows(f"PRAGMA table_info({self.quote(table)})")]
        where = "table_schema = DATABASE()" if self.family == "mysql" else "table_schema = %s"
        params: tuple[Any, ...] = (table,) if self.family == "mysql" else (table, schema)
        found = self.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND "
            f"{where} ORDER BY ordinal_position",
            params,
        )
        return [_text(r[0]) for r in found]

    def contents(self, schema: str | None, table: str) -> list[tuple[Any, ...]]:
        """Every row of a table, sorted (values as text, so dialects compare)."""
        rows = self.rows(f"SELECT * FROM {self.qualified(schema, table)}")
        return sorted(tuple(None if v is None else str(v) for v in r) for r in rows)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _mysql(url: str) -> Any:
    import pymysql

    u = make_url(url)
    return pymysql.connect(
        host=u.host, port=u.port, user=u.username, password=u.password or "",
        database=u.database, autocommit=True, charset="utf8mb4",
    )  # fmt: skip


def sqlite_db(path: Path) -> Db:
    """A SQLite file as a :class:`Db`."""
    return Db("sqlite", f"sqlite:///{path}")


def add_fix(mappings: rk.Mappings, fix: str | None) -> rk.Mappings:
    """``mappings`` plus the mapping a finding's fix suggests (its code, evaluated)."""
    assert fix is not None
    start = fix.index("Mappings()")
    for end in (i for i, ch in enumerate(fix) if ch == ")" and i > start + len("Mappings()")):
        code = fix[start : end + 1]
        try:
            ast.parse(code, mode="eval")
        except SyntaxError:
            continue
        result = eval(code.replace("Mappings()", "m", 1), {"m": mappings})
        assert isinstance(result, rk.Mappings)
        return result
    raise AssertionError(f"no runnable mapping in {fix!r}")


def cli_fix(fix: str | None) -> list[str]:
    """The command-line arguments a finding's fix suggests."""
    import shlex

    assert fix is not None
    _, _, tail = fix.partition("(command line: ")
    assert tail, f"no command line in {fix!r}"
    return shlex.split(tail.removesuffix(")"))

"""Fresh databases of the four SQL engines, driven with their own clients (tests of schema
objects: generated columns, checks, views, round trips)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

ENGINES = ["postgresql", "mysql", "sqlite", "duckdb"]


class Engine:
    """One empty database: its URL, the schema tables land in, and SQL in its own dialect."""

    def __init__(self, dialect: str, url: str, *, mysql_server: Any = None) -> None:
        self.dialect, self.url, self._mysql = dialect, url, mysql_server
        self.schema = {"postgresql": "public", "duckdb": "main"}.get(dialect)

    @property
    def path(self) -> str:
        return self.url.split(":///", 1)[1]

    def name(self, table: Any) -> str:
        """A table name (or a planned target id) quoted, with its schema where it has one
        (a plain name: the engine's default schema)."""
        quote = "`" if self.dialect == "mysql" else '"'
        schema, name = (
            (getattr(table, "schema", None), table.name)
            if not isinstance(table, str)
            else (self.schema, table)
        )
        if schema is None:
            return f"{quote}{name}{quote}"
        return f"{quote}{schema}{quote}.{quote}{name}{quote}"

    def execute(self, *statements: str) -> None:
        """Run ``statements`` in order (autocommit)."""
        self._run(list(statements), fetch=False)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of one query."""
        return self._run([sql], fetch=True)

    def _run(self, statements: list[str], *, fetch: bool) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        if self.dialect == "sqlite":
            conn = sqlite3.connect(self.path)
            try:
                for s in statements:
                    out = conn.execute(s).fetchall()
                conn.commit()
            finally:
                conn.close()
        elif self.dialect == "duckdb":
            with duckdb.connect(self.path) as conn:
                for s in statements:
                    conn.execute(s)
                    out = conn.fetchall() if fetch else []
        elif self.dialect == "postgresql":
            with psycopg.connect(self.url, autocommit=True) as conn:
                for s in statements:
                    cur = conn.execute(s)
                    out = cur.fetchall() if fetch else []
        else:
            conn = self._mysql.connect(self.url.rsplit("/", 1)[1])
            try:
                with conn.cursor() as cur:
                    for s in statements:
                        cur.execute(s)
                        out = list(cur.fetchall()) if fetch else []
                conn.commit()
            finally:
                conn.close()
        return [tuple(r) for r in out]


@pytest.fixture
def engine(request, tmp_path: Path) -> Iterator[Callable[[str], Engine]]:
    """``engine(dialect)``: a fresh, empty database of that engine (servers started lazily)."""
    dropped: list[Callable[[], None]] = []

    def make(dialect: str) -> Engine:
        name = f"rk_test_{uuid.uuid4().hex[:12]}"
        if dialect == "sqlite":
            return Engine(dialect, f"sqlite:///{tmp_path / (name + '.db')}")
        if dialect == "duckdb":
            return Engine(dialect, f"duckdb:///{tmp_path / (name + '.duckdb')}")
        server = request.getfixturevalue("pg_server" if dialect == "postgresql" else "mysql_server")
        url = server.create_database(name)
        dropped.append(lambda: server.drop_database(name))
        return Engine(dialect, url, mysql_server=server if dialect == "mysql" else None)

    yield make
    for drop in dropped:
        drop()

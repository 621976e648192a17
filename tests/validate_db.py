"""Helpers for the validation tests (a pytest plugin, loaded by conftest): one SQL session
per engine (sqlite3, psycopg, PyMySQL), the same small table created in each engine's own SQL,
and the ``make_db`` fixture (a new empty database of an engine)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

ENGINES = ("sqlite", "postgres", "mariadb")

#: a table with a column of most kinds, in each engine's own SQL
ITEMS = {
    "sqlite": """CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
        price NUMERIC(10,2), ratio REAL, flag BOOLEAN, day DATE, at TIMESTAMP, note VARCHAR(20),
        data BLOB)""",
    "postgres": """CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL,
        price numeric(10,2), ratio double precision, flag boolean, day date,
        at timestamp(6), note varchar(20), data bytea)""",
    "mariadb": """CREATE TABLE items (id int PRIMARY KEY, name varchar(100) NOT NULL,
        price decimal(10,2), ratio double, flag boolean, day date, at datetime(6),
        note varchar(20), data varbinary(100))""",
}
ITEM_COLUMNS = ("id", "name", "price", "ratio", "flag", "day", "at", "note", "data")


def item(i: int) -> tuple[Any, ...]:
    """Row ``i`` of the items table (NULLs and awkward values included)."""
    from datetime import date, datetime
    from decimal import Decimal

    return (
        i,
        f"item {i} é",
        Decimal(i * 7 % 1000) / 100,
        None if i % 7 == 0 else i / 3,
        i % 2 == 0,
        date(2020, 1, 1 + i % 28),
        datetime(2021, 2, 3, 4, 5, i % 60, i * 1000 % 1_000_000),
        None if i % 5 == 0 else f"n{i}  ",
        bytes([i % 256, 0, 255]),
    )


class Db:
    """A DB-API connection to one test database, with the engine's parameter marker."""

    def __init__(self, engine: str, url: str, conn: Any) -> None:
        self.engine = engine
        self.url = url
        self.conn = conn
        self.mark = "?" if engine == "sqlite" else "%s"

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(sql.replace("%s", self.mark), params)
        rows = cur.fetchall() if cur.description else []
        self.conn.commit()
        return [tuple(r) for r in rows]

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.engine == "sqlite":
            rows = [tuple(_sqlite_value(v) for v in r) for r in rows]
        cur = self.conn.cursor()
        cur.executemany(sql.replace("%s", self.mark), rows)
        self.conn.commit()

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join(["%s"] * len(columns))
        self.many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _sqlite_value(v: Any) -> Any:
    from datetime import date, datetime
    from decimal import Decimal

    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    return v


@contextmanager
def connect(engine: str, url: str) -> Iterator[Db]:
    if engine == "sqlite":
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
    elif engine == "postgres":
        conn = psycopg.connect(url.replace("postgresql://", "postgresql://", 1))
    else:
        import pymysql

        parts = urlsplit(url)
        conn = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username,
            password=parts.password or "",
            database=parts.path.lstrip("/"),
        )
    try:
        yield Db(engine, url, conn)
    finally:
        conn.close()


@pytest.fixture
def make_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``make_db(engine)``: the URL of a new empty database of ``engine`` (dropped after)."""
    drops: list[Callable[[], None]] = []

    def make(engine: str) -> str:
        name = f"rk_val_{uuid.uuid4().hex[:10]}"
        if engine == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}"
        server = request.getfixturevalue("pg_server" if engine == "postgres" else "mysql_server")
        url: str = server.create_database(name)
        drops.append(lambda: server.drop_database(name))
        return url

    yield make
    for drop in drops:
        drop()

"""Fresh copies of a template database, by the target's cheapest means.

* SQLite: the backup API (pages copied; no SQL replayed);
* PostgreSQL: ``CREATE DATABASE copy TEMPLATE template`` (a file-level copy in the server);
* MySQL/MariaDB: a schema copy: ``SHOW CREATE TABLE`` replayed in a new database, then
  ``INSERT ... SELECT`` per table inside the server, foreign key checks off while copying.

Each target creates empty databases (``create``), copies templates (``copy``) and drops what
it made (``drop``). Names carry a random part, so xdist workers never share a database.
"""

from __future__ import annotations

import abc
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from replikit.errors import ConfigError

if TYPE_CHECKING:
    from replikit.testing.servers import MysqlServer, PgServer

__all__ = ["CopyTarget", "MysqlTarget", "PgTarget", "SqliteTarget", "fresh_name"]


def fresh_name(prefix: str = "rkt") -> str:
    """A database name no other test (or xdist worker) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _database(url: str) -> str:
    name = make_url(url).database
    if not name:
        raise ConfigError(f"{url}: the URL names no database")
    return name


class CopyTarget(abc.ABC):
    """Where clones live: makes empty databases, copies of a template, drops them.
    ``prefetch``: make the next test's copy in the background (servers)."""

    name: str
    prefetch: bool = True

    @abc.abstractmethod
    def create(self, name: str) -> str:
        """An empty database called ``name``; its URL."""

    @abc.abstractmethod
    def copy(self, template_url: str) -> str:
        """A fresh copy of the database at ``template_url``; its URL."""

    @abc.abstractmethod
    def drop(self, url: str) -> None:
        """Remove the database at ``url`` (if it exists)."""


class SqliteTarget(CopyTarget):
    """SQLite files in ``directory``."""

    prefetch = False  # a backup of a small file: cheaper than a thread

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = f"sqlite:{directory}"

    def _path(self, name: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / f"{name}.sqlite"

    def create(self, name: str) -> str:
        path = self._path(name)
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"

    def copy(self, template_url: str) -> str:
        path = self._path(fresh_name())
        src = sqlite3.connect(_database(template_url))
        dst = sqlite3.connect(path)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        path = Path(_database(url))
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
            p.unlink(missing_ok=True)


class PgTarget(CopyTarget):
    """Databases on a PostgreSQL server; copies are ``CREATE DATABASE ... TEMPLATE``."""

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self.name = f"postgresql:{make_url(server.admin_url).set(password=None)}"

    def create(self, name: str) -> str:
        self.server.drop_database(name)
        return self.server.create_database(name)

    def copy(self, template_url: str) -> str:
        from psycopg import sql

        name = fresh_name()
        with self.server.connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(_database(template_url))
                )
            )
        return self.server.url(name)

    def drop(self, url: str) -> None:
        self.server.drop_database(_database(url))


class MysqlTarget(CopyTarget):
    """Databases on a MySQL/MariaDB server; copies replay the schema, then copy rows in SQL."""

    def __init__(self, server: MysqlServer) -> None:
        self.server = server
        self.name = f"mysql:{make_url(server.admin_url).set(password=None)}"

    def create(self, name: str) -> str:
        self.server.drop_database(name)
        return self.server.create_database(name)

    def copy(self, template_url: str) -> str:
        old = _database(template_url)
        name = fresh_name()
        url = self.server.create_database(name)
        try:
            with self.server.connect(name) as conn, conn.cursor() as cur:
                _copy_schema(cur, old, name)
        except BaseException:
            self.server.drop_database(name)
            raise
        return url

    def drop(self, url: str) -> None:
        self.server.drop_database(_database(url))


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _copy_schema(cur: Any, old: str, new: str) -> None:
    """Tables (DDL, then rows) and views of database ``old`` into ``new`` (the current one)."""
    cur.execute("SET SESSION foreign_key_checks = 0")
    cur.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = %s ORDER BY table_name",
        (old,),
    )
    objects = cur.fetchall()
    tables = [t for t, kind in objects if kind == "BASE TABLE"]
    for table in tables:
        cur.execute(f"SHOW CREATE TABLE {_q(old)}.{_q(table)}")
        cur.execute(cur.fetchone()[1])  # unqualified names: created in ``new``
    for table in tables:
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s AND extra NOT LIKE %s ORDER BY ordinal_position",
            (old, table, "%GENERATED%"),
        )
        cols = ", ".join(_q(c) for (c,) in cur.fetchall())
        cur.execute(
            f"INSERT INTO {_q(new)}.{_q(table)} ({cols}) "  # noqa: S608 - quoted identifiers
            f"SELECT {cols} FROM {_q(old)}.{_q(table)}"
        )
    _copy_views(cur, old, new, [t for t, kind in objects if kind == "VIEW"])
    cur.execute("SET SESSION foreign_key_checks = 1")


def _copy_views(cur: Any, old: str, new: str, views: list[str]) -> None:
    """Views, retried in rounds (a view may select from another)."""
    todo = []
    for view in views:
        cur.execute(f"SHOW CREATE VIEW {_q(old)}.{_q(view)}")
        todo.append(cur.fetchone()[1].replace(f"{_q(old)}.", f"{_q(new)}."))
    while todo:
        failed = []
        for ddl in todo:
            try:
                cur.execute(ddl)
            except Exception:  # a view over a view not created yet: next round
                failed.append(ddl)
        if len(failed) == len(todo):
            cur.execute(failed[0])  # no progress: raise the server's reason
        todo = failed

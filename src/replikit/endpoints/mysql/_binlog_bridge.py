"""The binlog reader's view of the MySQL endpoint: connection settings, reflection, reader."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from replikit.errors import ConfigError
from replikit.mapping import Selection
from replikit.pipeline.contracts import Reader
from replikit.schema.model import TableId, TableSchema

__all__ = ["connect", "masked", "pymysql_kwargs", "reflect_table", "snapshot_reader"]


def connect(params: Any) -> tuple[Any, type[Exception]]:
    """A connection of the endpoint's driver, with its session settings, and its error class.

    The full-load reader reads through it, so it must be of the driver the reader uses.
    """
    from replikit.endpoints.mysql._connect import connect as driver_connect
    from replikit.endpoints.mysql._connect import driver_of

    conn = driver_connect(params, autocommit=True)
    return conn, driver_of(conn).Error


def pymysql_kwargs(params: Any) -> dict[str, Any]:
    """PyMySQL ``connect`` keywords for ``params``."""
    kwargs: dict[str, Any] = dict(params.pymysql_kwargs())
    kwargs.setdefault("charset", "utf8mb4")
    return kwargs


def masked(params: Any) -> str:
    """The source for messages, password masked."""
    return f"mysql://{params.user or ''}@{params.where()}"


def reflect_table(conn: Any, params: Any, table: TableId) -> TableSchema | None:
    """The current definition of ``table`` read through ``conn`` (None: no such table)."""
    from replikit.endpoints.mysql.reflect import reflect

    try:
        selection: Selection | None = Selection(include=(f"{table.schema}.{table.name}",))
    except ConfigError:  # a name the pattern syntax cannot spell: reflect the database
        selection = None
    for found in reflect(conn, table.schema, selection).tables:
        if found.id == table:
            return found
    return None


def snapshot_reader(params: Any, tables: Sequence[TableSchema], conn: Any) -> Reader:
    """A full-load reader that reads through ``conn`` (inside its snapshot transaction)."""
    from replikit.endpoints.mysql.source import MysqlReader

    reader: Reader = MysqlReader(params, tables, connection=conn)
    return reader

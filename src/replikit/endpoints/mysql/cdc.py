"""MySQL/MariaDB change data capture from the row-based binary log.

The source needs ``log_bin``, ``binlog_format=ROW``, ``binlog_row_image=FULL`` and
``binlog_row_metadata=FULL`` (MariaDB 10.5+ / MySQL 8.0.14+), and the CDC user
``REPLICATION SLAVE``, ``BINLOG MONITOR`` (MySQL: ``REPLICATION CLIENT``) and ``SELECT`` on the
tables. Nothing is created on the source: the binlog is read like a replica does, and the
position lives with the target's checkpoint.

* :func:`setup` checks all that (and that every table has a primary key) and says what to fix.
* :func:`snapshot` gives the exact full-load/CDC handoff without a global lock:
  ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and the binlog position consistent with it
  (``binlog_snapshot_file/position``, MariaDB) on one connection, which the full-load reader
  then reads through. InnoDB tables only; MySQL, which lacks those status variables, takes a
  brief ``FLUSH TABLES WITH READ LOCK`` instead.
* :func:`reload_snapshot` is the same snapshot for a full load resumed after a stop.
* :func:`start` is "now", for a CDC-only task.
* :class:`MysqlChangeReader` streams transactions (see :mod:`._binlog_reader`).

Positions are :class:`BinlogPosition` (file, offset, the GTID state there and the server's
identity).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from replikit.endpoints.mysql._binlog_reader import MysqlChangeReader
from replikit.endpoints.mysql._binlog_server import Server
from replikit.endpoints.mysql._positions import BinlogPosition
from replikit.errors import ConfigError
from replikit.pipeline.contracts import Reader
from replikit.pipeline.waiting import Blocker, Waiting, watch
from replikit.schema.model import TableSchema

__all__ = [
    "BinlogPosition",
    "MysqlChangeReader",
    "reload_snapshot",
    "setup",
    "snapshot",
    "start",
    "teardown",
]

_TRANSACTIONAL = frozenset({"innodb", "xtradb", "rocksdb", "tokudb", "ndbcluster"})


def setup(params: Any, tables: Sequence[TableSchema], *, task: str) -> None:
    """Preflight: binlog settings, privileges and primary keys (creates nothing).

    Raises :class:`~replikit.errors.ConfigError` naming the setting, privilege or tables.
    """
    _no_key(tables)
    server = Server(params)
    with server.connect() as conn:
        server.check_settings(conn)
        server.check_privileges(conn, tables)


def _no_key(tables: Sequence[TableSchema]) -> None:
    keyless = [str(t.id) for t in tables if not t.primary_key]
    if keyless:
        raise ConfigError(
            f"tables without a primary key cannot be replicated with CDC: {', '.join(keyless)}. "
            "Add a primary key or exclude them from the CDC task"
        )


def start(params: Any, tables: Sequence[TableSchema], *, task: str) -> BinlogPosition:
    """The binlog position now (with its GTID state): where a CDC-only task begins."""
    server = Server(params)
    with server.connect() as conn:
        server.check_settings(conn)
        return server.current(conn)


def current(params: Any) -> BinlogPosition:
    """The end of the binary log now, with its GTID state (``SHOW MASTER STATUS``)."""
    server = Server(params)
    with server.connect() as conn:
        return server.current(conn)


def teardown(params: Any, *, task: str) -> None:
    """Nothing to remove: binlog CDC creates no object on the source."""


@contextlib.contextmanager
def snapshot(
    params: Any, tables: Sequence[TableSchema], *, task: str
) -> Iterator[tuple[Reader, BinlogPosition]]:
    """A full-load reader and the binlog position exactly consistent with what it reads.

    Every transaction committed after the position is in the binlog after it; none before.
    The reader reads through the snapshot's connection inside the ``with`` block only.
    """
    from replikit.endpoints.mysql import _binlog_bridge as bridge

    server = Server(params)
    conn, errors = bridge.connect(params)
    try:
        try:
            _check_engines(server, conn, tables)
            position = _consistent_snapshot(server, conn)
        except errors as exc:
            raise server.translate(exc, "take a consistent snapshot of") from exc
        yield bridge.snapshot_reader(params, tables, conn), position
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        conn.close()


def reload_snapshot(
    params: Any, tables: Sequence[TableSchema], *, task: str
) -> AbstractContextManager[tuple[Reader, BinlogPosition]]:
    """:func:`snapshot`, for a full load resumed after a stop: it creates nothing on the
    source and moves no stream, so the task's checkpoint stays valid; transactions ending
    at or before the position are in what the reader sees."""
    return snapshot(params, tables, task=task)


def _check_engines(server: Server, conn: Any, tables: Sequence[TableSchema]) -> None:
    """ConfigError for tables whose engine a consistent snapshot does not cover."""
    bad = []
    for table in tables:
        rows = server.rows(
            conn,
            "SELECT ENGINE FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (table.id.schema, table.id.name),
        )
        engine = str(rows[0][0] or "") if rows else ""
        if engine and engine.lower() not in _TRANSACTIONAL:
            bad.append(f"{table.id} ({engine})")
    if bad:
        raise ConfigError(
            "a consistent full load + CDC handoff needs transactional tables; these are not: "
            f"{', '.join(bad)}. Convert them (ALTER TABLE ... ENGINE=InnoDB), or load them "
            "while nothing writes to them"
        )


def _consistent_snapshot(server: Server, conn: Any) -> BinlogPosition:
    """Open a consistent-snapshot transaction on ``conn``; its binlog position."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if not server.is_mariadb(conn):
            return _mysql_snapshot(server, conn)
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
        status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
        file, pos = status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])
        if not file:
            raise ConfigError(f"log_bin is OFF on {server.where}: CDC reads the binary log")
        cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        row = cur.fetchone()
    gtid = str(row[0] or "") if row else ""
    return BinlogPosition(file, pos, gtid, server.identity(conn))


def _mysql_snapshot(server: Server, conn: Any) -> BinlogPosition:
    """MySQL has no binlog_snapshot_* status: hold a global read lock for an instant."""
    with conn.cursor() as cur:
        with _watched(server, conn):
            cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            position = server.current(conn)
        finally:
            cur.execute("UNLOCK TABLES")
    return position


# statements running on other connections: FLUSH TABLES WITH READ LOCK waits for them
_BLOCKERS = (
    "SELECT ID, TIME, COALESCE(INFO, '') FROM information_schema.PROCESSLIST "
    "WHERE ID NOT IN (%s, CONNECTION_ID()) AND INFO IS NOT NULL "
    "AND COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump', 'Binlog Dump GTID') "
    "ORDER BY TIME DESC LIMIT 5"
)


def _watched(server: Server, conn: Any) -> AbstractContextManager[Waiting]:
    """The read lock of ``conn`` under :func:`~replikit.pipeline.waiting.watch`."""
    thread = int(conn.thread_id())

    def probe() -> list[Blocker]:
        with server.connect() as other:
            rows = server.rows(other, _BLOCKERS, (thread,))
        return [Blocker(int(r[0]), float(r[1] or 0), str(r[2])) for r in rows]

    def cancel() -> None:
        with server.connect() as other:
            server.rows(other, "KILL QUERY %s", (thread,))

    return watch(
        f"taking the read lock for a consistent snapshot (FLUSH TABLES WITH READ LOCK) on "
        f"{server.where}",
        probe,
        cancel,
        fix="The lock waits for the statements running on the tables: let them end or stop "
        "them (KILL QUERY id), then run the task again.",
    )

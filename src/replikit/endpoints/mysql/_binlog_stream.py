"""mysql-replication's ``BinLogStreamReader``, made safe to resume (imports PyMySQL).

Two defects of mysql-replication 1.0.17 are fixed here, for the readers made by
:func:`open_stream` only (nothing is patched globally):

* the MariaDB ``COM_BINLOG_DUMP`` request announces 14 payload bytes but sends 15; the stray
  byte makes the server reset the connection when a non-blocking dump ends, losing events in
  flight. :class:`FixedBinLogStreamReader` sends the right length.
* on a lost connection (errors 2006/2013) the library silently reconnects from the position it
  was *created* with and replays from there, for ever. The stream's connections come from
  :class:`_StreamConnection`, which turns those errors into :class:`StreamLost` before the
  library sees them; replikit reconnects from its own last position instead.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Mapping
from typing import Any

import pymysql
from pymysql.connections import Connection, MysqlPacket
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import GtidEvent as MysqlGtidEvent
from pymysqlreplication.event import (
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

__all__ = ["EVENTS", "FixedBinLogStreamReader", "StreamLost", "open_stream"]

_LOST = frozenset({2006, 2013})  # server has gone away, lost connection
EVENTS = (
    MariadbGtidEvent,
    MysqlGtidEvent,
    QueryEvent,
    XidEvent,
    WriteRowsEvent,
    UpdateRowsEvent,
    DeleteRowsEvent,
    RotateEvent,
    HeartbeatLogEvent,
)


class StreamLost(Exception):
    """The binlog connection dropped (killed, server restart, network, timeout)."""


class _StreamConnection(Connection):  # type: ignore[misc]
    """A PyMySQL connection whose lost-connection errors bypass the library's reconnect."""

    def __init__(self, **kwargs: Any) -> None:
        if "db" in kwargs:  # the library names the control connection's database the old way
            kwargs["database"] = kwargs.pop("db")
        super().__init__(**kwargs)

    def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        try:
            return super()._read_packet(packet_type)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in _LOST:
                raise StreamLost(*exc.args) from exc
            raise


class FixedBinLogStreamReader(BinLogStreamReader):  # type: ignore[misc]
    """``BinLogStreamReader`` with a correct MariaDB dump request and an interrupt."""

    def _BinLogStreamReader__set_mariadb_settings(self) -> bytes:
        packet: bytes = super()._BinLogStreamReader__set_mariadb_settings()
        # the first 4 bytes are the packet header: 3-byte payload length and sequence id 0
        return struct.pack("<i", len(packet) - 4) + packet[4:]

    def interrupt(self) -> None:
        """Wake a read blocked on the socket (from any thread): it fails with StreamLost."""
        conn = getattr(self, "_stream_connection", None)
        sock = getattr(conn, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


def open_stream(
    settings: Mapping[str, Any],
    *,
    server_id: int,
    file: str | None,
    pos: int | None,
    gtid: str | None,
    mariadb: bool,
    blocking: bool,
    heartbeat: float,
    schemas: list[str],
    tables: list[str],
) -> FixedBinLogStreamReader:
    """A stream reader positioned after ``(file, pos)`` (or after ``gtid``, when given).

    Only the events replikit handles are parsed; row events of other tables are skipped
    before their rows are decoded (``only_tables``/``only_schemas`` filter by name).
    ``freeze_schema`` keeps a table map once parsed: table ids change with every ALTER and
    the map is dropped at each binlog rotation (server restarts reuse ids).
    """
    conn_settings = dict(settings)
    # a dead server or network is noticed after a few missed heartbeats
    conn_settings.setdefault("read_timeout", max(10, int(heartbeat * 4) + 1))
    conn_settings.setdefault("write_timeout", conn_settings["read_timeout"])
    conn_settings.setdefault("charset", "utf8mb4")
    position: dict[str, Any]
    if gtid is not None:
        position = {"auto_position": gtid, "is_mariadb": mariadb}
    else:
        position = {"log_file": file, "log_pos": pos, "resume_stream": True, "is_mariadb": False}
    return FixedBinLogStreamReader(
        conn_settings,
        server_id=server_id,
        blocking=blocking,
        only_events=list(EVENTS),
        only_schemas=schemas,
        only_tables=tables,
        freeze_schema=True,
        slave_heartbeat=heartbeat if blocking else None,
        enable_logging=False,
        pymysql_wrapper=_StreamConnection,
        **position,
    )

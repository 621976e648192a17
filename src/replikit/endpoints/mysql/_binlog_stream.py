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
import errno
import socket
import struct
from collections.abc import Mapping
from typing import Any

import pymysql
from pymysql.connections import MAX_PACKET_LEN, Connection, MysqlPacket
from pymysql.constants import CR
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import GtidEvent as MysqlGtidEvent
from pymysqlreplication.event import (
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from replikit.changes import Op

__all__ = [
    "EVENTS",
    "WAIT",
    "FastGtid",
    "FastRows",
    "FastXid",
    "FixedBinLogStreamReader",
    "StreamLost",
    "Unreadable",
    "open_stream",
]

_LOST = frozenset({2006, 2013})  # server has gone away, lost connection
_CHUNK = 256 * 1024  # bytes read from the socket at once (at most) by the fast path
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


#: :meth:`FixedBinLogStreamReader.fetch` would wait for the server
WAIT = object()


class StreamLost(Exception):
    """The binlog connection dropped (killed, server restart, network, timeout)."""


class _Stepped(Exception):
    """The one packet handed to the library was used up (see ``FixedBinLogStreamReader._step``)."""


class _StreamConnection(Connection):  # type: ignore[misc]
    """A PyMySQL connection whose lost-connection errors bypass the library's reconnect.

    While ``stepping``, it hands out the one packet in ``stashed`` instead of reading the
    socket, then raises :class:`_Stepped`: the library's ``fetchone`` processes exactly that
    packet.
    """

    stepping = False
    stashed: MysqlPacket | None = None
    _buf = b""  # read ahead by read_payload
    _at = 0
    _next_seq_id: int
    _current_timeout: float | None
    _read_timeout: float | None

    def __init__(self, **kwargs: Any) -> None:
        if "db" in kwargs:  # the library names the control connection's database the old way
            kwargs["database"] = kwargs.pop("db")
        super().__init__(**kwargs)

    def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        if self.stepping:
            packet, self.stashed = self.stashed, None
            if packet is None:
                raise _Stepped
            return packet
        try:
            return super()._read_packet(packet_type)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in _LOST:
                raise StreamLost(*exc.args) from exc
            raise

    def read_payload(self) -> bytes:
        """The next packet's payload: PyMySQL's ``_read_packet`` without its packet object.

        The same checks and errors (lost connections as :class:`StreamLost`, error packets
        raised), for the binlog stream's fast path, which reads the socket only through this
        from the dump request on: it reads ahead in chunks (:meth:`ready` says whether a whole
        packet is here already).
        """
        buf = self._buf
        at = self._at
        if len(buf) - at >= 4:
            size = buf[at] | buf[at + 1] << 8 | buf[at + 2] << 16
            end = at + 4 + size
            if end <= len(buf) and 0 < size < MAX_PACKET_LEN and buf[at + 3] == self._next_seq_id:
                data = buf[at + 4 : end]
                if data[0] != 0xFF:
                    self._at = end
                    self._next_seq_id = (self._next_seq_id + 1) % 256
                    return data
        return self._read_payload()

    def ready(self) -> bool:
        """Whether a whole packet is read ahead (:meth:`read_payload` will not wait)."""
        buf = self._buf
        at = self._at
        if len(buf) - at < 4:
            return False
        return at + 4 + (buf[at] | buf[at + 1] << 8 | buf[at + 2] << 16) <= len(buf)

    def _read_payload(self) -> bytes:
        parts = []
        while True:
            header = self._take(4)
            size = header[0] | header[1] << 8 | header[2] << 16
            if header[3] != self._next_seq_id:
                self._force_close()
                if header[3] == 0:  # MariaDB sends an error packet with seqno 0 on shutdown
                    raise StreamLost(
                        CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
                    )
                raise pymysql.err.InternalError(
                    f"Packet sequence number wrong - got {header[3]} expected {self._next_seq_id}"
                )
            self._next_seq_id = (self._next_seq_id + 1) % 256
            data = self._take(size)
            if size < MAX_PACKET_LEN:
                break
            parts.append(data)
        if parts:
            parts.append(data)
            data = b"".join(parts)
        if data[:1] == b"\xff":
            if self._result is not None and self._result.unbuffered_active is True:
                self._result.unbuffered_active = False
            try:
                MysqlPacket(data, self.encoding).raise_for_error()
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] in _LOST:
                    raise StreamLost(*exc.args) from exc
                raise
        return data

    def _take(self, size: int) -> bytes:
        """``size`` bytes (PyMySQL's ``_read_bytes``, a lost connection: :class:`StreamLost`)."""
        buf = self._buf
        at = self._at
        while len(buf) - at < size:
            if getattr(self, "_current_timeout", -1) != self._read_timeout:  # as PyMySQL does
                self._sock.settimeout(self._read_timeout)
                self._current_timeout = self._read_timeout
            try:
                chunk: bytes = self._rfile.read1(max(_CHUNK, size - len(buf) + at))
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                self._force_close()
                raise StreamLost(
                    CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query ({exc})"
                ) from exc
            except BaseException:
                self._force_close()  # as PyMySQL does
                raise
            if not chunk:
                self._force_close()
                raise StreamLost(CR.CR_SERVER_LOST, "Lost connection to MySQL server during query")
            buf = self._buf = buf[at:] + chunk
            at = self._at = 0
        self._at = at + size
        return buf[at : at + size]


# -- the events of the fast path -----------------------------------------------------------
# Binlog event types (mysql-replication's constants.BINLOG) and the header of a packet: the
# OK byte, then timestamp, type, server id, event size, next position, flags.
_XID, _TABLE_MAP, _MARIADB_GTID = 0x10, 0x13, 0xA2
_ROWS_TYPES = {
    0x17: (Op.INSERT, 8),  # WRITE_ROWS_EVENT_V1: the post-header is table id and flags
    0x18: (Op.UPDATE, 8),
    0x19: (Op.DELETE, 8),
    0x1E: (Op.INSERT, 10),  # V2: also the extra data's length
    0x1F: (Op.UPDATE, 10),
    0x20: (Op.DELETE, 10),
}
_HEADER = struct.Struct("<xIBIII")
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_BODY = 20  # the OK byte and the 19-byte event header
_LIBRARY_STATE = (  # what the fast path reads of the library's state (mangled private names)
    "_BinLogStreamReader__connected_stream",
    "_BinLogStreamReader__connected_ctl",
    "_BinLogStreamReader__connect_to_stream",
    "_BinLogStreamReader__connect_to_ctl",
    "_BinLogStreamReader__allowed_events",
    "_BinLogStreamReader__freeze_schema",
    "_BinLogStreamReader__use_checksum",
    "_BinLogStreamReader__post_header_lengths",
    "_BinLogStreamReader__only_tables",
    "_BinLogStreamReader__ignored_tables",
    "_BinLogStreamReader__only_schemas",
    "_BinLogStreamReader__ignored_schemas",
    "_BinLogStreamReader__verify_checksum",
    "_BinLogStreamReader__ignore_decode_errors",
    "_BinLogStreamReader__allowed_events_in_packet",
    "_BinLogStreamReader__optional_meta_data",
    "_BinLogStreamReader__enable_logging",
    "_BinLogStreamReader__use_column_name_cache",
    "dbms",
    "mysql_version",
)


# Events mysql-replication 1.0.17 does not read and skips without a word, although they carry
# changes: rows events, what their server setting is and how to turn it off.
_COMPRESSED_ROWS = "compressed rows (log_bin_compress = ON; SET GLOBAL log_bin_compress = OFF)"
_UNREADABLE = {
    0x27: "a partial JSON update (binlog_row_value_options = PARTIAL_JSON; set it to '')",
    0x28: "a compressed transaction (binlog_transaction_compression = ON; set it OFF)",
    0xA5: "a compressed statement (log_bin_compress = ON; SET GLOBAL log_bin_compress = OFF)",
    **dict.fromkeys(range(0xA6, 0xAC), _COMPRESSED_ROWS),  # MariaDB, v1 and v2
}
_TABLED = frozenset({0x27, *range(0xA6, 0xAC)})  # rows events: the table id comes first


class Unreadable:
    """An event of the binlog that replikit cannot read (:data:`_UNREADABLE`): rows of
    ``schema.table``, or (``table`` None) of tables unknown until read."""

    __slots__ = ("schema", "table", "why")

    def __init__(self, schema: str | None, table: str | None, why: str) -> None:
        self.schema = schema
        self.table = table
        self.why = why


class FastXid:
    """An ``XID`` event (commit) as the fast path reads it."""

    __slots__ = ("timestamp", "xid")

    def __init__(self, xid: int, timestamp: int) -> None:
        self.xid = xid
        self.timestamp = timestamp


class FastGtid:
    """A MariaDB ``GTID`` event (transaction start) as the fast path reads it."""

    __slots__ = ("gtid", "timestamp")

    def __init__(self, gtid: str, timestamp: int) -> None:
        self.gtid = gtid
        self.timestamp = timestamp


class FastRows:
    """A rows event of a mapped table, its rows not read: ``data[start:end]`` holds them.

    Carries what :class:`~._binlog_decode.TableDecoder` reads of a library rows event
    (``table_id``, ``table_map``, the ``columns_present`` bitmaps, ...); :meth:`library`
    makes the library's own event of the same packet, for decoding the rows its way.
    """

    __slots__ = (
        "_ignore_decode_errors",
        "_stream",
        "columns_present_bitmap",
        "columns_present_bitmap2",
        "data",
        "end",
        "number_of_columns",
        "op",
        "schema",
        "start",
        "table",
        "table_id",
        "table_map",
        "timestamp",
    )
    _ignore_decode_errors: bool
    _stream: FixedBinLogStreamReader
    columns_present_bitmap: bytes
    columns_present_bitmap2: bytes | None
    data: bytes
    end: int
    number_of_columns: int
    op: Op
    schema: str
    start: int
    table: str
    table_id: int
    table_map: dict[int, Any]
    timestamp: int

    def library(self) -> Any:
        """The library's event of this packet (its rows unread), made as ``fetchone`` makes it.

        Independent of where the stream is now: the table map is the one this event was read
        with, and the library's per-event server lookup is answered from the stream's cache.
        """
        stream = self._stream
        ctl: Any = stream._ctl_connection
        if stream.dbms:
            ctl = _Ctl(ctl, stream.dbms)
        wrapper = BinLogPacketWrapper(
            MysqlPacket(self.data, "utf8"),
            self.table_map,
            ctl,
            stream.mysql_version,
            stream._BinLogStreamReader__use_checksum,
            stream._BinLogStreamReader__allowed_events_in_packet,
            stream._BinLogStreamReader__only_tables,
            stream._BinLogStreamReader__ignored_tables,
            stream._BinLogStreamReader__only_schemas,
            stream._BinLogStreamReader__ignored_schemas,
            stream._BinLogStreamReader__freeze_schema,
            stream._BinLogStreamReader__ignore_decode_errors,
            stream._BinLogStreamReader__verify_checksum,
            stream._BinLogStreamReader__optional_meta_data,
            stream._BinLogStreamReader__enable_logging,
            stream._BinLogStreamReader__use_column_name_cache,
            stream._BinLogStreamReader__post_header_lengths,
        )
        if wrapper.event is None:  # cannot happen: the fast path let this event through
            raise RuntimeError("mysql-replication dropped a rows event the fast path kept")
        return wrapper.event


class _Ctl:
    """The stream's control connection, as a library event made later sees it: the server
    kind it asks for each event comes from the stream's cache (no reconnect)."""

    def __init__(self, conn: Any, dbms: str) -> None:
        self._conn = conn
        self._dbms = dbms
        self.charset = getattr(conn, "charset", "utf8mb4")

    def _get_dbms(self) -> str:
        return self._dbms

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class FixedBinLogStreamReader(BinLogStreamReader):  # type: ignore[misc]
    """``BinLogStreamReader`` with a correct MariaDB dump request, an interrupt and a fast
    path (:meth:`fetch`)."""

    _fast_kinds: frozenset[int] | None

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

    # -- the fast path ------------------------------------------------------------------------
    def fetch(self, block: bool = True) -> Any:
        """The next event, as :meth:`fetchone` gives it, or ``None`` at the end of the binlog.

        ``block=False``: :data:`WAIT` instead of waiting for the server (events that come
        fully read ahead are still returned).

        Hot events skip the library's per-event objects: rows events come as
        :class:`FastRows` (rows unread), ``XID`` and MariaDB ``GTID`` as :class:`FastXid` and
        :class:`FastGtid`, and table maps of tables already mapped (``freeze_schema``) are
        skipped, as the library skips them. Every other packet, and every packet whose shape
        the fast path does not know, goes through the library's own ``fetchone`` code, one
        packet at a time.
        """
        fast = self._fast_types()
        if fast is None:
            return self.fetchone()  # reads the socket through PyMySQL only (never WAIT)
        while True:
            if not self._BinLogStreamReader__connected_stream:
                self._BinLogStreamReader__connect_to_stream()
            if not self._BinLogStreamReader__connected_ctl:
                self._BinLogStreamReader__connect_to_ctl()
            conn = self._stream_connection
            if not block and not conn.ready():
                return WAIT
            data = conn.read_payload()
            if data[:1] == b"\xfe" and len(data) < 9:  # EOF: the end of a non-blocking dump
                self.close()
                return None
            if data[:1] != b"\x00" or len(data) < 7:  # not an OK packet: the library skips it
                continue
            kind = data[5] if len(data) >= _BODY else -1
            if kind in fast:
                timestamp, _, server_id, size, log_pos = _HEADER.unpack_from(data)
                body_end = 1 + size - (4 if self._BinLogStreamReader__use_checksum else 0)
                if body_end <= len(data):
                    event = self._fast(kind, data, timestamp, server_id, body_end)
                    if event is not False:
                        if log_pos:
                            self.log_pos = log_pos
                        if event is None:
                            continue  # skipped, as the library skips it
                        return event
            elif kind in _UNREADABLE:
                event = self._unreadable(kind, data)
                if event is not None:
                    return event  # else the library skips it (another table's rows)
            event = self._step(MysqlPacket(data, conn.encoding))
            if event is not None:
                return event

    def _unreadable(self, kind: int, data: bytes) -> Unreadable | None:
        """An event mysql-replication would skip although it may hold followed rows."""
        if kind not in _TABLED:
            return Unreadable(None, None, _UNREADABLE[kind])
        table = self.table_map.get(int.from_bytes(data[_BODY : _BODY + 6], "little"))
        if table is None or not self._wanted(table.schema, table.table):
            return None
        return Unreadable(table.schema, table.table, _UNREADABLE[kind])

    def _fast(self, kind: int, data: bytes, timestamp: int, server_id: int, end: int) -> Any:
        """The fast event of ``data``; None: skipped; False: the library's to read."""
        if kind == _XID:
            if end - _BODY != 8:
                return False
            return FastXid(_U64(data, _BODY)[0], timestamp)
        if kind == _MARIADB_GTID:
            if end - _BODY < 13:
                return False
            seq = _U64(data, _BODY)[0]
            domain = _U32(data, _BODY + 8)[0]
            return FastGtid(f"{domain}-{server_id}-{seq}", timestamp)
        table_id = int.from_bytes(data[_BODY : _BODY + 6], "little")
        if kind == _TABLE_MAP:
            # a table id mapped before keeps its first map (freeze_schema), else the library
            return None if table_id in self.table_map else False
        op, post_header = _ROWS_TYPES[kind]
        lengths = self._BinLogStreamReader__post_header_lengths
        if lengths and kind - 1 < len(lengths) and lengths[kind - 1] != post_header:
            return False
        table = self.table_map.get(table_id)
        if table is None:
            return None  # its table map was skipped (another table)
        if not self._wanted(table.schema, table.table):
            return None
        pos = _BODY + post_header
        if post_header == 10 and _U16(data, _BODY + 8)[0] != 2:
            return False  # v2 extra data (NDB, partitions): the library reads past it
        first = data[pos]
        if first < 251:
            ncols = first
            pos += 1
        elif first == 252:
            ncols = _U16(data, pos + 1)[0]
            pos += 3
        else:
            return False
        width = (ncols + 7) // 8
        event = FastRows()
        event.op = op
        event.schema = table.schema
        event.table = table.table
        event.table_id = table_id
        event.table_map = self.table_map
        event.timestamp = timestamp
        event.number_of_columns = ncols
        event.columns_present_bitmap = data[pos : pos + width]
        pos += width
        if op is Op.UPDATE:
            event.columns_present_bitmap2 = data[pos : pos + width]
            pos += width
        else:
            event.columns_present_bitmap2 = None
        if pos > end:
            return False
        event.data = data
        event.start = pos
        event.end = end
        event._stream = self
        event._ignore_decode_errors = self._BinLogStreamReader__ignore_decode_errors
        return event

    def _wanted(self, schema: str, table: str) -> bool:
        """The library's table and schema filters of rows events."""
        only = self._BinLogStreamReader__only_tables
        if only is not None and table not in only:
            return False
        ignored = self._BinLogStreamReader__ignored_tables
        if ignored is not None and table in ignored:
            return False
        only = self._BinLogStreamReader__only_schemas
        if only is not None and schema not in only:
            return False
        ignored = self._BinLogStreamReader__ignored_schemas
        return ignored is None or schema not in ignored

    def _step(self, packet: Any) -> Any:
        """The library's ``fetchone`` on ``packet`` alone: its event, or None (filtered)."""
        conn = self._stream_connection
        conn.stashed = packet
        conn.stepping = True
        try:
            return self.fetchone()
        except _Stepped:
            return None
        finally:
            conn.stepping = False
            conn.stashed = None

    @property
    def reads_ahead(self) -> bool:
        """Whether :meth:`fetch` reads the socket itself (and can say :data:`WAIT`)."""
        return self._fast_types() is not None

    def _fast_types(self) -> frozenset[int] | None:
        """The event types :meth:`fetch` reads itself; None: it uses ``fetchone`` throughout."""
        if "_fast_kinds" in self.__dict__:
            return self._fast_kinds
        fast: frozenset[int] | None = None
        conn_ok = self.pymysql_wrapper is _StreamConnection
        if conn_ok and all(hasattr(self, name) for name in _LIBRARY_STATE):
            allowed = self._BinLogStreamReader__allowed_events
            plain = not (
                self.end_log_pos
                or self.skip_to_timestamp
                or self._BinLogStreamReader__verify_checksum
            )
            if plain and self._BinLogStreamReader__freeze_schema:
                types = {_TABLE_MAP}
                if XidEvent in allowed:
                    types.add(_XID)
                if MariadbGtidEvent in allowed:
                    types.add(_MARIADB_GTID)
                for kind, (op, _) in _ROWS_TYPES.items():
                    cls = {Op.INSERT: WriteRowsEvent, Op.UPDATE: UpdateRowsEvent}.get(
                        op, DeleteRowsEvent
                    )
                    if cls in allowed:
                        types.add(kind)
                fast = frozenset(types)
        self._fast_kinds = fast
        return fast


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
    fast: bool = True,
) -> FixedBinLogStreamReader:
    """A stream reader positioned after ``(file, pos)`` (or after ``gtid``, when given).

    Only the events replikit handles are parsed; row events of other tables are skipped
    before their rows are decoded (``only_tables``/``only_schemas`` filter by name).
    ``freeze_schema`` keeps a table map once parsed: table ids change with every ALTER and
    the map is dropped at each binlog rotation (server restarts reuse ids).
    ``fast=False``: :meth:`~FixedBinLogStreamReader.fetch` is the library's ``fetchone``
    throughout (the reference its fast path is tested against).
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
    stream = FixedBinLogStreamReader(
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
    if not fast:
        stream._fast_kinds = None
    return stream

"""The binlog change reader: events -> :class:`~replikit.changes.Transaction` s.

A source transaction is ``GTID`` (or ``BEGIN``), table maps, row events, ``XID`` (or
``COMMIT``); a DDL statement is ``GTID`` + ``QUERY`` on its own. Each becomes one
:class:`~replikit.changes.Transaction` whose position is the binlog ``(file, offset)`` after
its commit event plus the GTID state there, so a checkpoint is only ever between transactions.
Transactions that touch no selected table are skipped, except that one (empty) is yielded at
most every ``progress_interval`` seconds so a checkpoint can advance past them.

The rows of the transaction being read stay in memory up to ``spill_bytes`` (estimated), then
go to a temporary file (:mod:`replikit.pipeline.spill`): a transaction of any size is read in
bounded memory.

The reader owns its reconnects: a dropped connection (``KILL``, server restart, network,
missed heartbeats) reopens the stream at the last transaction boundary seen, and a transaction
at or before the last one yielded is never yielded again. A position the server no longer has
(purged binlog, unknown GTID) or does not have yet raises
:class:`~replikit.errors.PositionLostError`; the reader never silently restarts from "now".

Positions name the server whose binlog they are in. Resuming at a position of another server
(a failover) goes by the position's GTID state when this server has every transaction of it,
else raises :class:`~replikit.errors.PositionLostError` (:meth:`Server.prepare`): a file and
offset of one server are never read on another.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pymysql
from pymysqlreplication.event import GtidEvent as MysqlGtidEvent
from pymysqlreplication.event import (
    MariadbGtidEvent,
    QueryEvent,
    XidEvent,
)
from pymysqlreplication.gtid import GtidSet as MysqlGtidSet
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from replikit.changes import Op, SchemaChange, Transaction
from replikit.endpoints.mysql import _binlog_sql as sql
from replikit.endpoints.mysql._binlog_decode import TableDecoder
from replikit.endpoints.mysql._binlog_server import Server
from replikit.endpoints.mysql._binlog_stream import (
    WAIT,
    FastGtid,
    FastRows,
    FastXid,
    FixedBinLogStreamReader,
    StreamLost,
    Unreadable,
    open_stream,
)
from replikit.endpoints.mysql._positions import (
    BinlogPosition,
    mariadb_gtid_domains,
    positions_in,
)
from replikit.endpoints.mysql._values import ZeroDates
from replikit.errors import ConfigError, ConnectError, DecodeError, PositionLostError
from replikit.pipeline.spill import DEFAULT_SPILL_BYTES, TransactionBuffer
from replikit.positions import Position
from replikit.schema.model import Column, TableId, TableSchema

__all__ = ["MysqlChangeReader"]

log = logging.getLogger(__name__)

_ROWS = {WriteRowsEvent: Op.INSERT, UpdateRowsEvent: Op.UPDATE, DeleteRowsEvent: Op.DELETE}
_POSITION_GONE = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: purged file, unknown GTID
_SAME_SERVER_ID = 4052  # ER_SLAVE_SAME_ID


class _Gtids:
    """The GTID state, advanced transaction by transaction (MariaDB domains or a MySQL set)."""

    def __init__(self, state: str) -> None:
        self.mariadb: dict[int, str] | None = None  # domain -> its last "domain-server-seq"
        self.mysql: Any = None
        self.text = state
        if state and ":" in state:
            self.mysql = MysqlGtidSet(state)
        else:
            domains = mariadb_gtid_domains(state)
            self.mariadb = {d: f"{d}-{s}-{n}" for d, (s, n) in domains.items()}

    def add(self, gtid: str) -> None:
        if ":" in gtid:
            if self.mysql is None:
                self.mysql = MysqlGtidSet(gtid)
            else:
                self.mysql = self.mysql + MysqlGtidSet(gtid)
            self.text = str(self.mysql)
            return
        domain = int(gtid.partition("-")[0])
        if self.mariadb is None:
            self.mariadb = {}
        self.mariadb[domain] = gtid
        self.text = gtid if len(self.mariadb) == 1 else ""  # else formatted on demand

    def __str__(self) -> str:
        if not self.text and self.mariadb:
            self.text = ",".join(self.mariadb[d] for d in sorted(self.mariadb))
        return self.text


class _Pending:
    """The transaction being read."""

    __slots__ = ("begun", "buffer", "gtid", "schema_changes", "xid")

    def __init__(self, buffer: TransactionBuffer, gtid: str = "") -> None:
        buffer.reset()
        self.buffer = buffer
        self.gtid = gtid
        self.begun = False
        self.xid: int | None = None
        self.schema_changes: list[SchemaChange] = []


class MysqlChangeReader:
    """Reads row changes of ``tables`` from a MySQL/MariaDB binlog (a ``ChangeReader``).

    Args:
        params: the endpoint's connection parameters.
        tables: reflected tables to follow (others are skipped before their rows are decoded).
        task: the task name (for messages).
        start: where :meth:`transactions` begins when called without a position.
        server_id: the replica id this reader registers with (default: random, unique per
            reader; two readers with one id make the server drop the first).
        blocking: ``True``: follow the binlog until :meth:`close`; ``False``: return once the
            end of the binlog is reached.
        heartbeat: seconds between server heartbeats while idle (also bounds how long a dead
            connection goes unnoticed: 4 missed heartbeats).
        use_gtid: resume from the position's GTID state instead of its file and offset
            (reading after a failover; needs ``gtid`` in the position).
        reconnect_attempts: consecutive failed reconnects before :class:`ConnectError`.
        reconnect_delay: seconds before a reconnect (doubled per failed attempt, max 30).
        progress_interval: at most this often, an empty transaction carries the position past
            transactions of unselected tables.
        zero_dates: ``"null"`` (default): a zero or partial date becomes ``NULL`` in a nullable
            column and raises :class:`~replikit.errors.DataError` in a ``NOT NULL`` one;
            ``"error"``: always raises. Every one is counted in :attr:`zero_dates`, per
            ``(table, column)`` -- the full-load reader's policy, so both yield the same.
        tinyint1_as_bool: read ``TINYINT(1)`` as bool (values other than 0/1 raise), as the
            full-load reader does by default.
        spill_bytes: a transaction whose rows pass this estimated size is moved to a
            temporary file while it is read (its ``Transaction`` reads them back lazily).
        fast: ``False`` reads events and decodes rows through mysql-replication only (the
            reference the default, faster paths give the same transactions as).
    """

    def __init__(
        self,
        params: Any,
        tables: Sequence[TableSchema],
        *,
        task: str,
        start: Position | None = None,
        server_id: int | None = None,
        blocking: bool = True,
        heartbeat: float = 0.5,
        use_gtid: bool = False,
        reconnect_attempts: int = 5,
        reconnect_delay: float = 1.0,
        progress_interval: float = 1.0,
        zero_dates: str = "null",
        tinyint1_as_bool: bool = True,
        spill_bytes: int = DEFAULT_SPILL_BYTES,
        fast: bool = True,
    ) -> None:
        if zero_dates not in ("null", "error"):
            raise ConfigError(f"zero_dates must be 'null' or 'error', not {zero_dates!r}")
        if heartbeat <= 0 or reconnect_attempts < 0 or reconnect_delay < 0:
            raise ConfigError("heartbeat must be > 0, reconnect settings >= 0")
        if server_id is not None and not 1 <= server_id < 2**32:
            raise ConfigError(f"server_id must be in 1..4294967295, not {server_id}")
        self.params = params
        self.task = task
        self.server_id = server_id or (0x40000000 + secrets.randbelow(0x3FFFFFFF))
        self.blocking = blocking
        self.heartbeat = heartbeat
        self.use_gtid = use_gtid
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay
        #: called with the error before each reconnect (a task counts retries)
        self.on_retry: Callable[[BaseException], None] | None = None
        self.progress_interval = progress_interval
        self._zero_dates = ZeroDates(zero_dates)
        self._tinyint1_as_bool = tinyint1_as_bool
        self._start = start
        self._acked: BinlogPosition | None = None
        self._stop = threading.Event()
        self._failures = 0
        self._lock = threading.Lock()
        self._stream: FixedBinLogStreamReader | None = None
        self._server = Server(params)
        #: read events and decode rows with replikit's own code where it can (``False``:
        #: mysql-replication's throughout, which the fast paths are tested against)
        self.fast = fast
        self._decoders: dict[tuple[str, str], TableDecoder] = {}
        for table in tables:
            if table.id.schema is None:
                raise ConfigError(f"table {table.id} has no database name")
            self._decoders[(table.id.schema, table.id.name)] = self._decoder(table)
        self._boundary: BinlogPosition | None = None
        self._last: BinlogPosition | None = None
        self._gtids = _Gtids("")
        self._buffer = TransactionBuffer(spill_bytes)
        self._file: str | None = None  # the binlog file of the last commit and its positions
        self._identity = ""  # the server's, which positions record (Server.identity)
        self._position_at: Callable[[int, str], BinlogPosition] = positions_in("binlog.000001")
        self._commit_second = -1  # the source commit time of the last commit, and as datetime
        self._commit_ts = datetime.fromtimestamp(0, UTC)

    # -- public API ----------------------------------------------------------------------
    @property
    def zero_dates(self) -> Counter[tuple[str, str]]:
        """Zero or partial dates read as NULL so far, per ``(table, column)``."""
        return self._zero_dates.counts

    def value_notes(self, unit: object = None) -> dict[tuple[str, str, str], int]:
        """:attr:`zero_dates` as the task's statistics note them
        (:class:`~replikit.pipeline.contracts.SupportsValueNotes`; a stream has no units),
        told apart from the full load's."""
        return self._zero_dates.notes(where=" from the binlog")

    @property
    def acknowledged(self) -> BinlogPosition | None:
        """The last position passed to :meth:`ack`."""
        return self._acked

    @property
    def last_position(self) -> BinlogPosition | None:
        """The position of the last transaction yielded (or the start)."""
        return self._last

    def ack(self, position: Position) -> None:
        """Record that ``position`` is durable downstream (the server keeps no reader state)."""
        if not isinstance(position, BinlogPosition):
            raise ConfigError(f"not a binlog position: {position}")
        if self._acked is None or position > self._acked:
            self._acked = position

    def close(self) -> None:
        """Stop reading; safe from another thread (a running iteration returns promptly)."""
        with self._lock:
            self._stop.set()
            stream = self._stream
        if stream is not None:
            stream.interrupt()

    def __enter__(self) -> MysqlChangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transactions(self, start: Position | None = None) -> Iterator[Transaction]:
        """Transactions committed after ``start`` (default: the reader's start, else the ack)."""
        for batch in self.transaction_batches(start):
            yield from batch

    def transaction_batches(
        self, start: Position | None = None, *, most: int = 256
    ) -> Iterator[list[Transaction]]:
        """:meth:`transactions` in lists: each holds the transactions read without waiting for
        the server (at most ``most``), handed out as soon as the next read would wait, so a
        backlog moves in lists and a quiet stream in lists of one, as early as one by one.
        """
        begin = start if start is not None else (self._start or self._acked)
        if begin is None:
            raise ConfigError(
                f"no CDC start position for task {self.task!r}: pass one from cdc_start() "
                "or cdc_snapshot()"
            )
        if not isinstance(begin, BinlogPosition):
            raise ConfigError(f"a MySQL change reader cannot start at {begin}")
        if self.use_gtid and not begin.gtid:
            raise ConfigError(f"use_gtid needs a position with a GTID state, not {begin}")
        self._last = self._boundary = begin
        self._failures = 0
        most = max(1, most)
        while not self._stop.is_set():
            try:
                yield from self._run(self._boundary, most)
                return
            except (StreamLost, ConnectError) as exc:  # dropped, or the server is restarting
                if self._stop.is_set():
                    return
                if isinstance(exc, ConnectError) and not exc.retryable:
                    raise  # refused for good (login, privilege): retrying does not help
                self._failures += 1
                if self._failures > self.reconnect_attempts:
                    raise ConnectError(
                        f"lost the binlog stream of {self._server.where} {self._failures} "
                        f"times in a row (last: {exc}); CDC can resume from {self._boundary}"
                    ) from exc
                delay = min(30.0, self.reconnect_delay * 2 ** (self._failures - 1))
                log.warning("binlog stream lost (%s); reconnecting in %.1f s", exc, delay)
                if self.on_retry is not None:
                    self.on_retry(exc)
                self._stop.wait(delay)
            except pymysql.err.MySQLError as exc:
                code = exc.args[0] if exc.args else None
                if code == _POSITION_GONE:
                    raise self._lost(self._boundary, str(exc.args[1])) from exc
                if code == _SAME_SERVER_ID:
                    raise ConfigError(
                        f"another replica or reader uses server_id {self.server_id} on "
                        f"{self._server.where}; give each reader its own server_id"
                    ) from exc
                raise self._server.translate(exc, "read the binlog of") from exc

    # -- reading -------------------------------------------------------------------------
    def _run(self, resume: BinlogPosition, most: int) -> Iterator[list[Transaction]]:
        for decoder in self._decoders.values():
            decoder.forget_maps()  # a restarted server reuses table ids
        how = self._server.prepare(resume, gtid_mode=self.use_gtid)
        self._gtids = _Gtids(how.gtid)
        if how.server != self._identity:
            self._identity = how.server
            self._file = None  # positions from here on name this server
        if how.moved:  # its positions do not compare with the other server's
            self._last = None
        stream = open_stream(
            self._server.stream_settings(),
            server_id=self.server_id,
            file=resume.file,
            pos=resume.pos,
            gtid=resume.gtid if how.by_gtid else None,
            mariadb=self._server.mariadb,
            blocking=self.blocking,
            heartbeat=self.heartbeat,
            schemas=sorted({s for s, _ in self._decoders}),
            tables=sorted({t for _, t in self._decoders}),
            fast=self.fast,
        )
        with self._lock:
            if self._stop.is_set():
                return
            self._stream = stream
        try:
            yield from self._read(stream, most if stream.reads_ahead else 1)
        finally:
            self._buffer.reset()  # a transaction read halfway: delete its spill file
            with self._lock:
                self._stream = None
            stream.close()

    def _read(self, stream: FixedBinLogStreamReader, most: int) -> Iterator[list[Transaction]]:
        """Lists of transactions: handed out when ``most`` long, or before a read that would
        wait for the server, or (what was read so far) when reading fails."""
        batch: list[Transaction] = []
        try:
            for tx in self._events(stream):
                if tx is WAIT:
                    if batch:
                        out, batch = batch, []
                        yield out
                    continue
                batch.append(tx)
                if len(batch) >= most:
                    out, batch = batch, []
                    yield out
        except GeneratorExit:
            raise
        except BaseException:
            if batch:  # complete transactions read before the failure go out first
                out, batch = batch, []
                yield out
            raise
        if batch:
            yield batch

    def _events(self, stream: FixedBinLogStreamReader) -> Iterator[Any]:
        """The transactions of the stream, and :data:`WAIT` before a read that would wait."""
        pending: _Pending | None = None
        last_yield = time.monotonic()
        decoders = self._decoders
        stop = self._stop
        fetch = stream.fetch
        held = False  # a transaction went out since the last WAIT
        while True:
            event = fetch(not held)
            if event is WAIT:
                held = False
                yield WAIT
                continue
            if event is None or stop.is_set():
                return
            cls = type(event)
            if cls is FastRows:
                decoder = decoders.get((event.schema, event.table))
                if decoder is not None and pending is not None:
                    decoder.collect(event, event.op, pending.buffer.rows)
                    pending.buffer.check()
                continue
            op = _ROWS.get(cls)
            if op is not None:
                decoder = decoders.get((event.schema, event.table))
                if decoder is not None and pending is not None:
                    decoder.collect(event, op, pending.buffer.rows)
                    pending.buffer.check()
                continue
            if cls is Unreadable:
                if event.table is None or (event.schema, event.table) in decoders:
                    where = f"table {event.schema}.{event.table}" if event.table else "a table"
                    raise DecodeError(
                        f"the binlog of {self._server.where} has {event.why} after "
                        f"{self._boundary}: replikit cannot read it, and it may hold changes of "
                        f"{where} this task follows. Turn the setting off, then run a new full "
                        "load of the tables changed since"
                    )
                continue
            if cls is FastXid or cls is XidEvent:
                if pending is None:
                    continue
                pending.xid = event.xid
            elif cls is FastGtid or cls is MariadbGtidEvent or cls is MysqlGtidEvent:
                pending = _Pending(self._buffer, event.gtid)
                continue
            elif cls is QueryEvent:
                query = event.query
                if pending is None:
                    pending = _Pending(self._buffer)
                if query == "BEGIN":
                    pending.begun = True
                    continue
                if pending.begun and not query.startswith(("COMMIT", "ROLLBACK")):
                    continue  # SAVEPOINT and the like inside a transaction
                if not pending.begun:
                    self._ddl(event, pending)  # a DDL statement is a transaction of its own
            else:  # heartbeat, rotate
                continue
            tx = self._commit(stream, pending, event.timestamp)
            pending = None
            self._failures = 0
            if tx is None:
                continue
            now = time.monotonic()
            if not (tx.changes or tx.schema_changes) and now - last_yield < self.progress_interval:
                continue
            last_yield = now
            self._last = tx.position  # type: ignore[assignment]
            held = True
            yield tx

    def _commit(
        self, stream: FixedBinLogStreamReader, pending: _Pending, timestamp: int
    ) -> Transaction | None:
        if pending.gtid:
            self._gtids.add(pending.gtid)
        file = stream.log_file
        if file != self._file:
            self._file = file
            self._position_at = positions_in(file, self._identity)
        position = self._position_at(stream.log_pos, str(self._gtids))
        self._boundary = position
        last = self._last
        if last is not None and not position._order > last._order:
            pending.buffer.reset()
            return None  # already delivered before a reconnect
        if timestamp != self._commit_second:  # transactions of one second share the time
            self._commit_second = timestamp
            self._commit_ts = datetime.fromtimestamp(timestamp, UTC)
        commit_ts = self._commit_ts
        txid = pending.gtid or pending.xid
        changes = pending.buffer.finish(position, commit_ts, txid)
        return Transaction(
            changes=changes,
            position=position,
            commit_ts=commit_ts,
            txid=txid,
            schema_changes=tuple(pending.schema_changes),
            size_hint=pending.buffer.finished_bytes,
        )

    # -- DDL -----------------------------------------------------------------------------
    def _ddl(self, event: QueryEvent, pending: _Pending) -> None:
        """TRUNCATE becomes a change; column DDL on a selected table a SchemaChange."""
        statement = sql.parse(event.query)
        if statement is None:
            return
        default = event.schema.decode() if isinstance(event.schema, bytes) else event.schema
        if isinstance(statement, sql.Truncate):
            decoder = self._selected(statement.table, default)
            if decoder is not None:
                pending.buffer.rows.append((Op.TRUNCATE, decoder.table.id, {}, None, None))
            return
        if isinstance(statement, sql.Alter):
            decoder = self._selected(statement.table, default)
            if decoder is not None and statement.touches_columns:
                pending.schema_changes.append(self._altered(decoder, statement, event.query))
            return
        gone: list[tuple[sql.Name, str]] = []
        if isinstance(statement, sql.Drop):
            what = "replaced (CREATE OR REPLACE)" if statement.replaced else "dropped"
            gone = [(name, what) for name in statement.tables]
        elif isinstance(statement, sql.Rename):
            gone = [(old, f"renamed to {_dotted(new, default)}") for old, new in statement.pairs]
        for name, what in gone:
            decoder = self._selected(name, default)
            if decoder is not None:
                pending.schema_changes.append(
                    SchemaChange(
                        table=decoder.table.id,
                        dropped=decoder.table.column_names,
                        description=f"table {decoder.table.id} was {what}: {_clip(event.query)}",
                    )
                )

    def _selected(self, name: sql.Name, default: str) -> TableDecoder | None:
        schema = name[0] or default
        found = self._decoders.get((schema, name[1]))
        if found is None:  # lower_case_table_names=1 servers fold names
            for (s, t), decoder in self._decoders.items():
                if s.lower() == schema.lower() and t.lower() == name[1].lower():
                    return decoder
        return found

    def _altered(self, decoder: TableDecoder, alter: sql.Alter, query: str) -> SchemaChange:
        old = decoder.table
        new = self._server.reflect(old.id)
        columns = {c.name.lower(): c for c in (new.columns if new else ())}
        added: list[Column] = []
        missing = []
        for name in alter.added:
            col = columns.get(name.lower())
            if col is None:
                missing.append(name)
            else:
                added.append(col)
        changed = list(alter.changed)
        renames = {o.lower(): n for o, n in alter.renamed}
        if alter.primary_key:
            changed += [c for c in (*old.primary_key, *(new.primary_key if new else ())) if c]
        if alter.all_changed:
            changed += list(old.column_names)
        dropped = list(alter.dropped)
        description = f"{_clip(query)} on {old.id}"
        if alter.renamed_to is not None:
            dropped = list(old.column_names)
            description = f"table {old.id} was renamed: {_clip(query)}"
        if missing:
            changed += missing
            description += (
                f" (columns {', '.join(missing)} are gone from the table by now, so their "
                "types are unknown: their values are passed through as decoded)"
            )
            decoder.lenient.update(missing)
        if new is not None:
            decoder.rebuild(new)
        names = {c.name.lower(): c.name for c in old.columns}
        renamed = tuple(
            (names.get(o.lower(), o), columns[n.lower()].name if n.lower() in columns else n)
            for o, n in alter.renamed
        )
        changed = list(dict.fromkeys(changed))
        retyped = tuple(
            columns[key]
            for name in changed
            if (key := renames.get(name.lower(), name).lower()) in columns
        )
        if alter.renamed_to is not None:
            renamed = retyped = ()
        return SchemaChange(
            table=old.id,
            added=tuple(added),
            dropped=tuple(dropped),
            changed=tuple(names.get(c.lower(), c) for c in changed),
            description=description,
            renamed=renamed,
            retyped=retyped,
        )

    # -- helpers -------------------------------------------------------------------------
    def _decoder(self, table: TableSchema) -> TableDecoder:
        if not table.primary_key:
            raise ConfigError(
                f"table {table.id} has no primary key; CDC cannot identify its rows. "
                "Add a primary key or exclude the table from CDC"
            )
        return TableDecoder(
            table,
            zero_dates=self._zero_dates,
            tinyint1_as_bool=self._tinyint1_as_bool,
            refresh=self._refresh,
            fast=self.fast,
        )

    def _refresh(self, table: TableId) -> TableSchema | None:
        """The table's current definition (for rows whose columns the reader does not know)."""
        return self._server.reflect(table)

    def _lost(self, position: BinlogPosition, detail: str) -> PositionLostError:
        return PositionLostError(
            f"binlog position {position} of task {self.task!r} is no longer available on "
            f"{self._server.where} ({detail}); the changes since then are gone: run a new "
            "full load (migration_type='full-load-and-cdc') and keep binlogs longer "
            "(binlog_expire_logs_seconds) than the longest CDC downtime"
        )


def _dotted(name: sql.Name, default: str) -> str:
    return f"{name[0] or default}.{name[1]}"


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""The PostgreSQL change reader: a task's logical replication slot as a stream of transactions.

:class:`PostgresChangeReader` reads slot ``replikit_<task>`` through publication
``replikit_<task>`` (both made by :func:`replikit.endpoints.postgres.cdc.setup` and friends)
with the pgoutput plugin, by streaming (``START_REPLICATION``) or by polling the SQL functions
(:mod:`._stream`), decodes it (:mod:`._decoder`) and yields one
:class:`~replikit.changes.Transaction` per source transaction, as soon as its Commit arrives.

Delivery and acknowledgement: the slot is only ever confirmed up to the position last passed
to :meth:`~PostgresChangeReader.ack` (or the start position, which the caller vouches for),
so a crash anywhere loses nothing; resuming from a stored position never repeats a
transaction at or before it (the server skips them, and so does the poller).

Status updates go out while the iteration runs (at least every ``status_interval``); a
consumer that keeps a yielded transaction longer than the server's ``wal_sender_timeout``
(60 s by default) gets the stream dropped by the server, and the reader then reconnects and
resumes after the last transaction it yielded (nothing lost, nothing repeated).

Threads: :meth:`~PostgresChangeReader.transactions` runs in one thread; :meth:`ack` and
:meth:`close` may be called from any other. Every use of a connection happens under one lock,
never across a ``yield``; :meth:`close` takes that lock (waiting at most for the current read,
a quarter of a second, or cancelling a running poll) and closes the connections, and the
iteration returns at its next step.

Memory: the rows of the source transaction being read are held in memory up to ``spill_bytes``
(estimated), then in a temporary file (:mod:`replikit.pipeline.spill`): a transaction of
any size is read in bounded memory. Nothing else is buffered ahead, apart from at most
``fetch_rows`` raw messages of the current poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import psycopg

from replikit.changes import Transaction
from replikit.endpoints.postgres._connect import Connection, connect
from replikit.endpoints.postgres._decoder import (
    ALIASES_SQL,
    MONEY_OIDS,
    SLOW,
    PgOutputDecoder,
    Relation,
    TransactionAssembler,
    psycopg_loader,
    type_aliases,
)
from replikit.endpoints.postgres._params import ConnParams
from replikit.endpoints.postgres._relations import PgCatalogLookup, RelationTracker
from replikit.endpoints.postgres._slots import (
    object_name,
    publication_exists,
    slot_state,
    wal_position,
)
from replikit.endpoints.postgres._stream import PollSession, SessionLost, StreamSession
from replikit.errors import ConfigError, ConnectError, PositionLostError
from replikit.pipeline.spill import DEFAULT_SPILL_BYTES
from replikit.positions import PgLsn, Position
from replikit.schema.model import TableSchema

__all__ = ["PostgresChangeReader"]

log = logging.getLogger("replikit.postgres.cdc")

Mode = Literal["auto", "stream", "poll"]
Session = StreamSession | PollSession
_FIRST_USER_OID = 16384
_READ_WAIT = 0.25  # longest a read holds the lock: bounds how long close() waits
_BATCH_BYTES = 4 * 1024 * 1024  # a list of transactions ends past this estimated size
_RETRYABLE = (SessionLost, ConnectError, psycopg.OperationalError)
_STEADY = 10.0  # a session that lasted this long before breaking counts as a fresh loss
_READ_MESSAGES = 1024  # most messages taken from a session at once


def _lost_hint(slot: str) -> str:
    return f"run `replikit drop` and start again with full-load-and-cdc (slot {slot})"


def _opaque(aliases: dict[int, int]) -> frozenset[int]:
    """Type oids whose text never passes on as is: money, and domains over it (and arrays)."""
    return MONEY_OIDS | {oid for oid, base in aliases.items() if base in MONEY_OIDS}


def _read(session: Session, wait: float, into: list[bytes]) -> bool:
    """Put the messages ``session`` has received (waiting up to ``wait`` for the first) in
    ``into``, the next one last; ``False``: the session had none left to give."""
    got: list[bytes] = []
    more = session.read_many(wait, got, _READ_MESSAGES)
    got.reverse()
    into += got
    return more


def _lsn(tx: Transaction) -> int:
    assert isinstance(tx.position, PgLsn)
    return tx.position.value


@dataclass(eq=False)
class _Run:
    """The state of one :meth:`PostgresChangeReader.transactions` iteration."""

    pos: int
    decoder: PgOutputDecoder
    asm: TransactionAssembler
    tracker: RelationTracker
    aliases: dict[int, int]
    session: Session | None = None
    checked: set[int] = field(default_factory=set)
    lost_since: float | None = None
    opened: float = 0.0
    delay: float = 0.0
    wait: float = 0.0
    error: str = ""
    beat: int = 0  # the position of the last transaction or heartbeat handed out
    beat_at: float = 0.0
    #: messages of the session read and not decoded yet, the next one last
    messages: list[bytes] = field(default_factory=list)


class PostgresChangeReader:
    """Reads the task's slot as :class:`~replikit.changes.Transaction` objects (a ChangeReader).

    ``mode``: ``"stream"`` (walsender protocol, psycopg >= 3.3, needs a replication
    connection), ``"poll"`` (SQL functions every ``poll_interval`` seconds when idle) or
    ``"auto"`` (stream when a replication connection can be opened, else poll). ``start`` is
    where :meth:`transactions` begins when called without one (default: the last
    acknowledged position, else the slot's confirmed position). ``status_interval``: the
    longest gap between standby status updates; ``receiver_timeout``: a silent stream is
    pinged after half of it and dropped after all of it. A broken connection is reopened with
    backoff for up to ``reconnect_timeout`` seconds (then :class:`~replikit.ConnectError`),
    resuming after the last transaction yielded. ``stop_when_idle``: return after that many
    seconds without a transaction (``None``: run until :meth:`close`). ``fetch_rows`` and
    ``max_changes`` size the polls. ``spill_bytes``: a transaction whose rows pass this
    estimated size is moved to a temporary file while it is read (its
    :class:`~replikit.changes.Transaction` then reads them back lazily).
    """

    def __init__(
        self,
        params: ConnParams,
        tables: Sequence[TableSchema],
        *,
        task: str,
        mode: Mode = "auto",
        start: PgLsn | None = None,
        status_interval: float = 10.0,
        poll_interval: float = 0.2,
        stop_when_idle: float | None = None,
        reconnect_timeout: float = 60.0,
        receiver_timeout: float = 60.0,
        fetch_rows: int = 5_000,
        max_changes: int = 50_000,
        spill_bytes: int = DEFAULT_SPILL_BYTES,
    ) -> None:
        if mode not in ("auto", "stream", "poll"):
            raise ConfigError(f"mode must be 'auto', 'stream' or 'poll', not {mode!r}")
        if min(status_interval, receiver_timeout, fetch_rows, max_changes) <= 0:
            raise ConfigError(
                "status_interval, receiver_timeout, fetch_rows and max_changes must be positive"
            )
        if poll_interval < 0 or reconnect_timeout < 0 or spill_bytes < 0:
            raise ConfigError(
                "poll_interval, reconnect_timeout and spill_bytes must not be negative"
            )
        if start is not None and not isinstance(start, PgLsn):
            raise ConfigError(f"a PostgreSQL change reader cannot start at {start}")
        self._params = params
        self._tables = {t.id: t for t in tables}
        self._name = object_name(task)
        self._mode: Mode = mode
        self._start = start
        self.status_interval = status_interval
        self.poll_interval = poll_interval
        self.stop_when_idle = stop_when_idle
        self.reconnect_timeout = reconnect_timeout
        self.receiver_timeout = receiver_timeout
        self.fetch_rows = fetch_rows
        self.max_changes = max_changes
        self.spill_bytes = spill_bytes
        self._closed = threading.Event()
        self._io = threading.Lock()
        self._ack_lock = threading.Lock()
        self._acked = 0
        self._meta: Connection | None = None
        self._run: _Run | None = None
        self._position: PgLsn | None = None
        #: called with the error each time the stream is reopened (a task counts retries)
        self.on_retry: Callable[[BaseException], None] | None = None

    # -- public ---------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        """``"stream"`` or ``"poll"`` once reading started (``"auto"`` before, if asked)."""
        return self._mode

    @property
    def acknowledged(self) -> PgLsn | None:
        """The position last passed to :meth:`ack` (or the start), ``None`` before any."""
        return PgLsn(self._acked) if self._acked else None

    @property
    def position(self) -> PgLsn | None:
        """After the last transaction yielded (``None`` before the first)."""
        return self._position

    def transactions(self, start: Position | None = None) -> Iterator[Transaction]:
        """Transactions committed after ``start``, in commit order, each as its Commit arrives.

        ``start`` defaults to the constructor's, else the last acknowledged position, else the
        slot's confirmed position. It must be at or after the slot's confirmed position and
        not ahead of the server's WAL, and the slot must exist and be valid, else
        :class:`~replikit.PositionLostError` (raised here, before iterating). The start counts
        as acknowledged. A new call ends the iteration of an earlier one.
        """
        run = self._start_run(start)
        return self._one_by_one(run)

    def transaction_batches(
        self, start: Position | None = None, *, most: int = 256
    ) -> Iterator[list[Transaction]]:
        """:meth:`transactions` in lists: each holds the transactions read without waiting for
        the server (at most ``most``), handed out as soon as the next read would wait, so a
        backlog moves in lists and a quiet stream in lists of one, as early as one by one.
        """
        run = self._start_run(start)
        return self._lists(run, max(1, most))

    def _one_by_one(self, run: _Run) -> Iterator[Transaction]:
        for batch in self._iterate(run, 256):
            for tx in batch:
                if self._stopped(run):
                    return  # closed (or restarted) while the caller held the last one
                self._position = tx.position  # type: ignore[assignment]
                yield tx

    def _lists(self, run: _Run, most: int) -> Iterator[list[Transaction]]:
        for batch in self._iterate(run, most):
            self._position = batch[-1].position  # type: ignore[assignment]
            yield batch

    def _start_run(self, start: Position | None) -> _Run:
        if self._closed.is_set():
            raise ConfigError(f"this change reader of slot {self._name} is closed")
        if start is not None and not isinstance(start, PgLsn):
            raise ConfigError(f"a PostgreSQL change reader cannot start at {start}")
        with self._io:
            self._end_run()
            try:
                begin = self._check_start(start)
                run = self._new_run(begin.value)
            except psycopg.OperationalError as exc:
                raise ConnectError(
                    f"lost the connection to {self._params.where()} while checking replication "
                    f"slot {self._name}: {str(exc).strip()}"
                ) from None
            self._note_ack(begin.value)
            self._run = run
        return run

    def ack(self, position: Position) -> None:
        """Everything up to ``position`` is durable downstream: the slot may move there."""
        if not isinstance(position, PgLsn):
            raise ConfigError(f"not a PostgreSQL position: {position}")
        self._note_ack(position.value)

    def close(self) -> None:
        """Stop reading (a running :meth:`transactions` returns within about a second)."""
        self._closed.set()
        got = self._io.acquire(timeout=0.5)
        if not got:
            self._cancel()
            got = self._io.acquire(timeout=2.0)
        if not got:
            return  # the iterating thread closes its connections when it sees the flag
        try:
            self._end_run()
            if self._meta is not None:
                self._meta.close()
                self._meta = None
        finally:
            self._io.release()

    def __enter__(self) -> PostgresChangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start ----------------------------------------------------------------------------
    def _meta_conn(self) -> Connection:
        conn = self._meta
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            conn = self._meta = connect(self._params, autocommit=True)
        return conn

    def _check_slot(self) -> PgLsn:
        conn = self._meta_conn()
        where = self._params.where()
        state = slot_state(conn, self._name)
        if state is None:
            raise PositionLostError(
                f"replication slot {self._name} does not exist at {where} (dropped?): "
                + _lost_hint(self._name)
            )
        state.check(where)
        if not publication_exists(conn, self._name):
            raise ConfigError(
                f"publication {self._name} does not exist at {where}: run the CDC setup "
                "(Endpoint.cdc_setup) for this task first"
            )
        assert state.confirmed_flush is not None
        return state.confirmed_flush

    def _check_start(self, start: Position | None) -> PgLsn:
        confirmed = self._check_slot()
        if start is None:
            start = self._start or (PgLsn(self._acked) if self._acked else confirmed)
        assert isinstance(start, PgLsn)
        where = self._params.where()
        current = wal_position(self._meta_conn())
        if start > current:
            raise PositionLostError(
                f"start position {start} is ahead of the server's WAL ({current}) at {where}: "
                "the target was restored from a newer backup, or this is a different (or "
                "restored) server; " + _lost_hint(self._name)
            )
        if start < confirmed:
            raise PositionLostError(
                f"start position {start} is behind the confirmed position {confirmed} of "
                f"replication slot {self._name} at {where}: the changes in between are gone; "
                + _lost_hint(self._name)
            )
        return start

    def _new_run(self, pos: int) -> _Run:
        meta = self._meta_conn()
        aliases = type_aliases(meta.execute(ALIASES_SQL).fetchall())
        keys = {t.id: t.key for t in self._tables.values() if t.key}
        asm = TransactionAssembler(
            primary_keys=keys,
            loader=psycopg_loader(aliases),
            tables=set(self._tables) or None,
            spill_bytes=self.spill_bytes,
            opaque_types=_opaque(aliases),
        )
        tracker = RelationTracker(list(self._tables.values()), PgCatalogLookup(meta))
        return _Run(pos, PgOutputDecoder(), asm, tracker, aliases)

    def _note_ack(self, lsn: int) -> None:
        with self._ack_lock:
            if lsn > self._acked:
                self._acked = lsn

    def _get_acked(self) -> int:
        return self._acked

    # -- the loop -------------------------------------------------------------------------
    def _iterate(self, run: _Run, most: int) -> Iterator[list[Transaction]]:
        idle_since = time.monotonic()
        try:
            while not self._stopped(run):
                if run.wait:
                    self._closed.wait(run.wait)
                    run.wait = 0.0
                    idle_since = time.monotonic()
                    continue
                batch = self._read_batch(run, most)
                now = time.monotonic()
                if not batch:
                    beat = self._heartbeat(run, now)
                    if beat is not None:
                        yield [beat]
                        continue
                    limit = self.stop_when_idle
                    reconnecting = run.session is None
                    if limit is not None and now - idle_since >= limit and not reconnecting:
                        return
                    if run.session is not None and run.session.mode == "poll":
                        self._closed.wait(self.poll_interval)
                    continue
                pos = batch[-1].position
                assert isinstance(pos, PgLsn)
                run.pos = max(run.pos, pos.value)
                run.beat = pos.value
                run.beat_at = now
                idle_since = now
                yield batch
        finally:
            with self._io:
                if self._run is run:
                    self._end_run()

    def _heartbeat(self, run: _Run, now: float) -> Transaction | None:
        """An empty transaction at the WAL position the stream reached with nothing for our
        tables since the last one handed out: applied, it moves the checkpoint and then the
        slot, so the server keeps no WAL for us and can shut down (it waits until its
        walsender's WAL is confirmed). Every ``status_interval`` seconds, or at once when the
        server asked for a reply."""
        session = run.session
        end = run.pos
        urgent = False
        if isinstance(session, StreamSession) and not run.asm.in_transaction:
            end = max(end, session.idle_end)
            urgent, session.reply_requested = session.reply_requested, False
        if end <= max(run.beat, self._acked) or (
            not urgent and now - run.beat_at < self.status_interval
        ):
            return None
        run.pos = run.beat = end
        run.beat_at = now
        return Transaction((), PgLsn(end), None, None)

    def _stopped(self, run: _Run) -> bool:
        return self._closed.is_set() or self._run is not run

    def _read_batch(self, run: _Run, most: int) -> list[Transaction]:
        """The transactions with changes for our tables that come without waiting (after
        the first, which may wait up to ``_READ_WAIT``); empty ones only move ``run.pos``."""
        batch: list[Transaction] = []
        wait = _READ_WAIT
        held = 0
        read: list[Transaction] = []
        while len(batch) < most and held < _BATCH_BYTES:
            read.clear()
            self._step(run, wait, read, most - len(batch))
            if not read:
                break
            wait = 0.0
            for tx in read:
                if tx.changes or tx.schema_changes:
                    batch.append(tx)
                    held += tx.size_hint or 0
                else:
                    run.pos = max(run.pos, _lsn(tx))  # nothing for our tables: a heartbeat?
            if run.session is None:
                break  # lost after these: hand them out (run.pos moves), then reconnect
        return batch

    def _step(self, run: _Run, wait: float, out: list[Transaction], most: int) -> None:
        """Append to ``out`` the next transactions (up to ``most``, under one lock round):
        the first may wait up to ``wait``, the others are those already there. What was
        read stays in ``out`` when the connection then breaks."""
        with self._io:
            if self._stopped(run):
                return
            try:
                if run.session is None:
                    self._open(run)
                self._next(run, wait, out, most)
            except _RETRYABLE as exc:
                if isinstance(exc, ConnectError) and not exc.retryable:
                    self._close_session(run)
                    raise  # refused for good (login, privilege): retrying does not help
                self._lost(run, exc)
                return
            except psycopg.Error as exc:
                self._close_session(run)
                self._check_slot()
                raise ConfigError(
                    f"the server refused to read replication slot {self._name} at "
                    f"{self._params.where()}: {str(exc).strip()}"
                ) from None
            finally:
                if out:  # progress: a later loss gets the whole reconnect time
                    run.lost_since = None
                    run.delay = 0.0

    def _next(self, run: _Run, wait: float, out: list[Transaction], most: int) -> None:
        session = run.session
        assert session is not None
        decoder = run.decoder
        decode, feed = decoder.decode, run.asm.feed
        fast = run.asm.feed_message
        closed = self._closed
        append = out.append
        messages = run.messages
        pop = messages.pop
        more = True
        while not closed.is_set():
            if not messages:
                if not more:
                    return  # as the session said: what it had is decoded
                more = _read(session, wait, messages)
                if not messages:
                    return
            # the messages left unread here stay in run.messages for the next call
            while messages:
                message = pop()
                tx = fast(message, decoder)  # the common messages, straight from their bytes
                if tx is SLOW:
                    event = decode(message)
                    if event.__class__ is Relation:
                        self._relation(run, event)
                    tx = feed(event)
                if tx is not None:
                    append(tx)
                    if len(out) >= most:
                        return
                    wait = 0.0

    def _relation(self, run: _Run, rel: Relation) -> None:
        tid = rel.table
        if tid not in self._tables:
            # a selected table under a new name (pgoutput sends Relations inside transactions)
            renamed = run.tracker.renamed(rel) if run.asm.in_transaction else None
            if renamed is not None:
                log.warning("schema change in the source log: %s", renamed.description)
                run.asm.add_schema_change(renamed)
            return
        self._refresh_types(run, rel)
        pk = run.asm.primary_keys.get(tid)
        if pk and not set(pk) <= {c.name for c in rel.columns}:
            run.asm.set_primary_key(tid, None)  # a key column was dropped: use the flags
        if run.asm.in_transaction:
            change = run.tracker.diff(rel)
            if change is not None:
                log.info("schema change in the source log: %s", change.description)
                run.asm.add_schema_change(change)

    def _refresh_types(self, run: _Run, rel: Relation) -> None:
        new = {
            c.type_oid
            for c in rel.columns
            if c.type_oid >= _FIRST_USER_OID
            and c.type_oid not in run.aliases
            and c.type_oid not in run.checked
        }
        if new:
            run.checked |= new
            run.aliases = type_aliases(self._meta_conn().execute(ALIASES_SQL).fetchall())
            run.asm.opaque_types = _opaque(run.aliases)
            run.asm.loader = psycopg_loader(run.aliases)

    # -- sessions -------------------------------------------------------------------------
    def _open(self, run: _Run) -> None:
        if run.lost_since is not None:
            self._check_slot()  # gone for good: PositionLostError, not a retry
        run.decoder = PgOutputDecoder()
        run.asm.reset()
        if self._mode == "auto":
            self._mode = self._choose_mode(run)
            if run.session is not None:
                run.opened = time.monotonic()
                return
        run.session = self._session(self._mode, run.pos)
        run.opened = time.monotonic()

    def _choose_mode(self, run: _Run) -> Mode:
        if tuple(int(p) for p in psycopg.__version__.split(".")[:2]) < (3, 3):
            log.warning("psycopg %s cannot stream (needs 3.3): polling", psycopg.__version__)
            return "poll"
        try:
            run.session = self._session("stream", run.pos)
        except ConnectError as exc:
            connect(self._params).close()  # the server is up, so replication is refused
            reason: BaseException = exc
        except psycopg.OperationalError:
            raise  # e.g. the slot is still held by a walsender being terminated: retry
        except psycopg.Error as exc:
            reason = exc
        else:
            return "stream"
        log.warning("cannot stream slot %s (%s): polling instead", self._name, reason)
        return "poll"

    def _session(self, mode: Mode, pos: int) -> Session:
        if mode == "stream":
            return StreamSession(
                self._params,
                self._name,
                self._name,
                pos,
                acked=self._get_acked,
                status_interval=self.status_interval,
                receiver_timeout=self.receiver_timeout,
            )
        return PollSession(
            self._params,
            self._name,
            self._name,
            pos,
            acked=self._get_acked,
            fetch_rows=self.fetch_rows,
            max_changes=self.max_changes,
        )

    def _lost(self, run: _Run, exc: BaseException) -> None:
        self._close_session(run)
        now = time.monotonic()
        if run.lost_since is None or now - run.opened > _STEADY:
            run.lost_since = now
            run.delay = 0.0
        run.error = str(exc).strip() or type(exc).__name__
        if now - run.lost_since >= self.reconnect_timeout:
            raise ConnectError(
                f"lost the connection reading replication slot {self._name} at "
                f"{self._params.where()} and could not resume within "
                f"{self.reconnect_timeout:.0f} s: {run.error}"
            ) from None
        log.warning("reading slot %s: %s; reconnecting", self._name, run.error)
        if self.on_retry is not None:
            self.on_retry(exc)
        run.wait = run.delay
        run.delay = min(max(run.delay * 2, 0.25), 5.0)

    def _close_session(self, run: _Run) -> None:
        session, run.session = run.session, None
        run.messages.clear()  # the next session sends them again
        if session is not None:
            try:
                session.close()
            except (OSError, psycopg.Error) as exc:
                log.debug("closing the %s session of slot %s: %s", session.mode, self._name, exc)

    def _end_run(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            self._close_session(run)
            run.asm.reset()  # a transaction read halfway: delete its spill file

    def _cancel(self) -> None:
        run = self._run
        session = run.session if run is not None else None
        if isinstance(session, PollSession):
            session.cancel()

"""Reading a logical replication slot: a walsender stream, or SQL polling (I/O, no decoding).

Both sessions hand out the slot's raw pgoutput messages in runs (:meth:`read_many`) and tell
the server how far the reader's consumer has acknowledged, never further:

* :class:`StreamSession` runs ``START_REPLICATION`` on a ``replication=database`` connection
  and drives the CopyBoth stream through psycopg's libpq object (``get_copy_data`` /
  ``put_copy_data``; psycopg >= 3.3). It sends a standby status update (write = flush = apply =
  the acknowledged LSN) at least every ``status_interval`` seconds, soon after the
  acknowledged position moves and whenever a keepalive asks for a reply; it pings the server
  when nothing arrived for half of ``receiver_timeout`` and gives up on the connection after
  all of it. The server skips transactions that commit before the start position.
* :class:`PollSession` reads ``pg_logical_slot_peek_binary_changes`` through a server-side
  cursor (``fetch_rows`` messages per round trip, about ``max_changes`` per peek, more when a
  peek holds only unacknowledged transactions already handed out) and moves the slot
  with ``pg_replication_slot_advance`` to the acknowledged position before each peek (never
  the consuming ``get`` functions). A peek returns every unacknowledged transaction again, so
  the session drops those it already handed out (and those before the start), keeping only
  their Relation and Type messages for the decoder's caches.

A broken connection raises :class:`SessionLost`; the reader reconnects and resumes. Sessions
are not thread-safe: the reader serialises every call.
"""

from __future__ import annotations

import contextlib
import select
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from replikit.endpoints.postgres._connect import _SESSION, Connection, connect
from replikit.endpoints.postgres._errors import connect_error
from replikit.endpoints.postgres._params import ConnParams

__all__ = [
    "PollSession",
    "SessionLost",
    "StreamSession",
    "lsn_text",
    "replication_connect",
]

_PG_EPOCH_US = 946_684_800_000_000
_STATUS = struct.Struct("!cQQQqB")
_U64 = struct.Struct("!Q")
_XLOGDATA, _KEEPALIVE = 0x77, 0x6B
_BEGIN, _COMMIT, _RELATION, _TYPE = 0x42, 0x43, 0x52, 0x59
_CHECK_EVERY = 512  # messages between clock checks while the stream is busy


class SessionLost(Exception):
    """The session's connection broke or went silent; reconnect and resume."""


def lsn_text(lsn: int) -> str:
    """PostgreSQL's ``X/Y`` spelling of an LSN."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def replication_connect(params: ConnParams) -> Connection:
    """A ``replication=database`` connection with replikit's session settings.

    pgoutput renders values with the walsender's settings (UTC, ISO styles, exact floats), so
    they are set before any decoding. Such connections speak only the simple query protocol:
    send statements without parameters.
    """
    kwargs = params.kwargs(application_name="replikit_cdc", replication="database")
    try:
        conn: Connection = psycopg.connect(autocommit=True, **kwargs)
    except psycopg.Error as exc:
        err = connect_error(exc, params)
        hidden = params.password is not None and params.password in str(exc)
        raise err from (None if hidden else exc)
    try:
        conn.execute(_SESSION)
    except BaseException:
        conn.close()
        raise
    return conn


class StreamSession:
    """Streams a slot over the walsender protocol (see the module docstring)."""

    mode = "stream"

    def __init__(
        self,
        params: ConnParams,
        slot: str,
        publication: str,
        start: int,
        *,
        acked: Callable[[], int],
        status_interval: float,
        receiver_timeout: float,
    ) -> None:
        self._acked = acked
        self._interval = status_interval
        self._timeout = receiver_timeout
        self._conn = replication_connect(params)
        command = (
            f"START_REPLICATION SLOT {slot} LOGICAL {lsn_text(start)} "
            f"(proto_version '1', publication_names '{publication}')"
        )
        try:
            self._conn.execute(command)
        except BaseException:
            self._conn.close()
            raise
        self._pg = self._conn.pgconn
        now = time.monotonic()
        self._last_recv = self._last_status = now
        self._sent = -1
        self._pinged = False
        self._count = 0
        #: the server's WAL end from its last keepalive sent between transactions: every
        #: change before it was handed out (a heartbeat may move the checkpoint there)
        self.idle_end = 0
        #: the server asked for a reply (it waits for it, e.g. to shut down): cleared by reader
        self.reply_requested = False
        self._tag = _COMMIT  # the type of the last message: Commit between transactions

    def read_many(self, timeout: float, out: list[bytes], most: int) -> bool:
        """Append to ``out`` the pgoutput messages received so far (at most ``most``); when
        there is none, wait up to ``timeout`` seconds for the first (one Python call for a
        run of messages: the reader's hot path). ``False``: none came (else there may be
        more: call again)."""
        pg = self._pg
        append = out.append
        count = self._count
        got = 0
        deadline = 0.0
        polled = False  # the socket was looked at once (a zero timeout reads what is there)
        try:
            while True:
                n, data = pg.get_copy_data(1)
                if n > 0:
                    count += 1
                    if count >= _CHECK_EVERY:
                        count = 0
                        self._last_recv = now = time.monotonic()
                        self._keep_alive(now)
                    if data[0] == _XLOGDATA:
                        self._tag = data[25]
                        append(bytes(data[25:]))
                        got += 1
                        if got >= most:
                            return True
                        continue
                    self._last_recv = time.monotonic()
                    self._pinged = False
                    if data[0] == _KEEPALIVE:
                        if self._tag == _COMMIT:  # between transactions
                            self.idle_end = max(self.idle_end, _U64.unpack_from(data, 1)[0])
                        if data[17]:
                            self.reply_requested = True
                            self._status(reply=False)
                    continue
                if n < 0:
                    raise SessionLost(self._ended())
                if got:
                    return True
                now = time.monotonic()
                self._keep_alive(now)
                if not deadline:
                    deadline = now + timeout
                wait = deadline - now
                if wait <= 0 and polled:
                    return False
                polled = True
                ready, _, _ = select.select([pg.socket], [], [], max(wait, 0.0))
                if ready:
                    pg.consume_input()
                    self._last_recv = time.monotonic()
                    self._pinged = False
        except (OSError, psycopg.OperationalError) as exc:
            raise SessionLost(str(exc).strip() or type(exc).__name__) from None
        finally:
            self._count = count

    def _ended(self) -> str:
        result = self._pg.get_result()
        if result is not None and result.error_message:
            return result.error_message.decode(errors="replace").strip()
        return "the server ended the replication stream"

    def _keep_alive(self, now: float) -> None:
        since_status = now - self._last_status
        if since_status >= self._interval or (
            self._acked() > self._sent and since_status >= min(1.0, self._interval)
        ):
            self._status(reply=False)
        silent = now - self._last_recv
        if silent >= self._timeout:
            raise SessionLost(f"no message from the server for {silent:.0f} s")
        if silent >= self._timeout / 2 and not self._pinged:
            self._status(reply=True)
            self._pinged = True

    def _status(self, *, reply: bool) -> None:
        flushed = self._acked()
        clock = int(time.time() * 1_000_000) - _PG_EPOCH_US
        self._send(_STATUS.pack(b"r", flushed, flushed, flushed, clock, reply))
        self._last_status = time.monotonic()
        self._sent = flushed

    def _send(self, message: bytes) -> None:
        pg = self._pg
        deadline = time.monotonic() + 5.0
        while pg.put_copy_data(message) == 0 or pg.flush() == 1:
            if time.monotonic() > deadline:
                raise SessionLost("could not send a status update to the server for 5 s")
            select.select([pg.socket], [pg.socket], [], 0.5)
            pg.consume_input()

    def close(self) -> None:
        """Send a last status update (best effort) and close the connection."""
        if self._conn.closed:
            return
        with contextlib.suppress(OSError, psycopg.Error):
            self._status(reply=False)
        self._conn.close()


class PollSession:
    """Polls a slot with ``pg_logical_slot_peek_binary_changes`` (see the module docstring)."""

    mode = "poll"
    _PEEK = (
        "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, "
        "'proto_version', '1', 'publication_names', %s)"
    )
    _ADVANCE = (
        "SELECT pg_replication_slot_advance(slot_name, %s::pg_lsn) FROM pg_replication_slots "
        "WHERE slot_name = %s AND confirmed_flush_lsn < %s::pg_lsn"
    )

    def __init__(
        self,
        params: ConnParams,
        slot: str,
        publication: str,
        start: int,
        *,
        acked: Callable[[], int],
        fetch_rows: int,
        max_changes: int,
    ) -> None:
        self._slot, self._publication = slot, publication
        self._acked = acked
        self._fetch, self._max = fetch_rows, max_changes
        self._conn = connect(params)
        self._after = start  # the end of the last transaction handed out
        self._advanced = 0
        self._cursor: Any = None
        self._rows: Sequence[Any] = ()
        self._i = 0
        self._skipping = False
        self._new = False
        self._limit = max_changes
        self._count = 0

    def read_many(self, timeout: float, out: list[bytes], most: int) -> bool:
        """Append to ``out`` the next messages (at most ``most``), up to the end of a peek that
        brought no new transaction (``timeout``: unused, a peek does not wait). ``False``:
        that end was reached (the next call peeks again), else there may be more."""
        try:
            for _ in range(most):
                message = self._read()
                if message is None:
                    return False
                out.append(message)
        except psycopg.OperationalError as exc:
            raise SessionLost(str(exc).strip() or type(exc).__name__) from None
        return True

    def _read(self) -> bytes | None:
        while True:
            while self._i < len(self._rows):
                data: bytes = self._rows[self._i][0]
                self._i += 1
                kind = data[0]
                if kind == _BEGIN:
                    self._skipping = _U64.unpack_from(data, 1)[0] < self._after
                    if self._skipping:
                        continue
                elif self._skipping:
                    if kind == _COMMIT:
                        self._skipping = False
                    elif kind in (_RELATION, _TYPE):
                        return data
                    continue
                elif kind == _COMMIT:
                    self._after = _U64.unpack_from(data, 10)[0]
                    self._new = True
                return data
            if self._cursor is not None:
                self._rows, self._i = self._cursor.fetchmany(self._fetch), 0
                if self._rows:
                    self._count += len(self._rows)
                    continue
                self._end_peek()
                if self._new:
                    pass
                elif self._count >= self._limit:
                    # only transactions handed out before, and maybe more behind them: the
                    # consumer has not acknowledged them yet, so look further
                    self._limit *= 2
                else:
                    return None
            self._start_peek()

    def _start_peek(self) -> None:
        self._advance()
        self._new = False
        self._count = 0
        self._cursor = self._conn.cursor(name="replikit_peek", binary=True)
        self._cursor.execute(self._PEEK, (self._slot, self._limit, self._publication))

    def _end_peek(self) -> None:
        self._cursor.close()
        self._cursor = None
        self._rows, self._i = (), 0
        self._conn.commit()

    def _advance(self) -> None:
        acked = self._acked()
        if acked > self._advanced:
            lsn = lsn_text(acked)
            self._conn.execute(self._ADVANCE, (lsn, self._slot, lsn))
            self._advanced = acked
            self._limit = self._max

    def cancel(self) -> None:
        """Cancel a running peek (safe from another thread)."""
        with contextlib.suppress(OSError, psycopg.Error):
            self._conn.cancel_safe(timeout=1.0)

    def close(self) -> None:
        """Move the slot to the acknowledged position (best effort) and close."""
        if self._conn.closed:
            return
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()  # the transaction was idle; this also ends the cursor
            with contextlib.suppress(psycopg.Error):
                cursor.close()
        try:
            self._advance()
            self._conn.commit()
        except psycopg.Error:
            pass
        self._conn.close()

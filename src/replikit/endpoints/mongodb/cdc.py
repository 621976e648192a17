"""Change data capture from MongoDB change streams.

Each selected collection is watched with its own change stream
(``watch(full_document="updateLookup", resume_after=token | start_at_operation_time=ts)``),
polled in turn with ``try_next``; events are decoded by :mod:`._events`. A transaction is one
write, or the consecutive events of one multi-document transaction (same ``lsid`` and
``txnNumber``). Its position (:class:`._positions.MongoPosition`) holds every collection's
resume token, so a restart resumes each stream after the last change the target committed.

* Change streams need a replica set or a sharded cluster (a one-node replica set is
  enough); :func:`check_streams` opens one per table and says so when the server refuses.
* A token older than the oplog keeps raises :class:`~replikit.PositionLostError`: reload.
* ``drop``, ``rename``, ``dropDatabase`` and ``invalidate`` stop the table (a schema change
  with the reason); its stream is closed, the others go on.
* Idle streams move on: their post-batch resume token is reported every ``heartbeat``
  seconds as an empty transaction, so the checkpoint follows the oplog.
* Handoff with the full load: the position is taken before the load reads
  (:func:`start`); changes during the load arrive again and apply idempotently.
* A table read again while the stream runs (a reload, a resumed full load) is read at one
  cluster time where the server has snapshot reads (:func:`snapshot_time`): the changes of
  that time or before are in the loaded rows, and the pipeline leaves them out
  (:meth:`._positions.Resume.after_time`). Where it has none (a standalone server, MongoDB
  before 5.0, the nx-27017 test stand-in) the read is a plain one, with a warning: every
  change held or replayed meanwhile is applied again (idempotent in a database, written
  twice in change files).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from replikit.changes import SchemaChange, Transaction
from replikit.endpoints.base import hide_secret
from replikit.endpoints.mongodb import _events
from replikit.endpoints.mongodb._connect import Client, driver, translated
from replikit.endpoints.mongodb._positions import MongoPosition, Resume
from replikit.endpoints.mongodb.reflect import Reflected
from replikit.errors import ConfigError
from replikit.pipeline.spill import DEFAULT_SPILL_BYTES, TransactionBuffer
from replikit.positions import Position
from replikit.schema.model import TableId, TableSchema

__all__ = ["MongoChangeReader", "check_streams", "namespace", "snapshot_time", "start"]

log = logging.getLogger("replikit.mongodb.cdc")


def namespace(table: TableId) -> str:
    """``database.collection``."""
    return f"{table.schema}.{table.name}"


def _watch(client: Client, table: TableId, point: Resume | None, await_ms: int) -> Any:
    coll = client.collection(table.schema, table.name)
    kwargs: dict[str, Any] = {"full_document": "updateLookup", "max_await_time_ms": await_ms}
    if point is not None and point.token is not None:
        kwargs["resume_after"] = point.token_doc
    elif point is not None and point.at is not None:
        from bson.timestamp import Timestamp

        kwargs["start_at_operation_time"] = Timestamp(*point.at)
    return coll.watch(**kwargs)


def _streams_checked(client: Client, table: TableId) -> contextlib.AbstractContextManager[None]:
    """pymongo errors of opening a stream on ``table``, translated (a server without change
    streams is a :class:`~replikit.ConfigError` that says what they need)."""
    return translated(client, "watch", table=str(table))


def check_streams(client: Client, tables: Sequence[TableSchema]) -> None:
    """Open (and close) a change stream on every table's collection."""
    for table in tables:
        with _streams_checked(client, table.id), _watch(client, table.id, None, 10):
            pass


def start(client: Client, tables: Sequence[TableSchema]) -> MongoPosition:
    """Every table's stream position now: the token a new stream starts at, or else the
    deployment's cluster time."""
    points: dict[str, Resume] = {}
    for table in tables:
        with _streams_checked(client, table.id), _watch(client, table.id, None, 10) as stream:
            token = stream.resume_token
            points[namespace(table.id)] = (
                Resume.after(token) if token is not None else _cluster_time(client)
            )
    return MongoPosition.of(points)


def snapshot_time(
    client: Client, tables: Sequence[TableSchema]
) -> tuple[tuple[int, int] | None, str]:
    """The cluster time of a snapshot read now (``(seconds, increment)``), at which
    ``tables`` can be read (every change of that time or before in, none after); or ``None``
    and why not, where the server has no snapshot reads. The server picks the time (its
    majority-committed point) for a first ``find`` with read concern ``snapshot`` and says it
    in the cursor's ``atClusterTime``."""
    if not tables:
        return None, "no table to read"
    pymongo = driver()
    table = tables[0].id
    coll = client.collection(table.schema, table.name)
    command = {"find": table.name, "filter": {}, "projection": {"_id": 1}, "limit": 1,
               "singleBatch": True, "readConcern": {"level": "snapshot"}}  # fmt: skip
    with translated(client, "start a snapshot read of", table=str(table)):
        try:
            reply = coll.database.command(command)
        except pymongo.errors.OperationFailure as exc:
            if exc.code in (13, 18):  # not authorised, authentication failed
                raise
            text = hide_secret(str((exc.details or {}).get("errmsg", exc)), client.url.password)
            return None, f"the server refused a snapshot read: {text}"
    at = (reply.get("cursor") or {}).get("atClusterTime")
    if at is None or not hasattr(at, "inc"):
        return None, "the server reported no snapshot time (atClusterTime) for a snapshot read"
    return (int(at.time), int(at.inc)), ""


def _cluster_time(client: Client) -> Resume:
    with translated(client, "read the cluster time of"), client.get().start_session() as s:
        client.get().admin.command("ping", session=s)
        ts = s.operation_time
    if ts is None:
        raise ConfigError(f"MongoDB at {client.where} reports no cluster time to start CDC at")
    return Resume(at=(int(ts.time), int(ts.inc)))


class MongoChangeReader:
    """Reads the change streams of a set of collections (see the module docs).

    Options: ``heartbeat`` (seconds between empty transactions that move an idle position,
    default 5), ``poll_interval`` (seconds a stream waits for an event, default 0.2),
    ``stop_when_idle`` (end the iteration after that many idle seconds; ``None``: never),
    ``spill_bytes`` (a multi-document transaction larger than this goes to a temporary
    file as it is read).
    """

    def __init__(
        self,
        client: Client,
        tables: Sequence[TableSchema],
        reflected: Reflected,
        *,
        heartbeat: float = 5.0,
        poll_interval: float = 0.2,
        stop_when_idle: float | None = None,
        spill_bytes: int | None = None,
    ) -> None:
        self._buffer = TransactionBuffer(
            DEFAULT_SPILL_BYTES if spill_bytes is None else spill_bytes
        )
        self._client = client
        self._tables = tuple(tables)
        self._decoders = {
            namespace(t.id): _events.EventDecoder(t.id, reflected.shapes[t.id]) for t in tables
        }
        self.heartbeat = heartbeat
        self.poll_interval = poll_interval
        self.stop_when_idle = stop_when_idle
        self._closed = threading.Event()
        self._start: MongoPosition | None = None

    def transactions(self, start: Position | None = None) -> Iterator[Transaction]:
        """Transactions committed after ``start`` on the watched collections, each with the
        position after it."""
        begin = start if start is not None else self._start
        if not isinstance(begin, MongoPosition):
            raise ConfigError(f"a MongoDB change reader cannot start at {begin}")
        missing = [ns for ns in self._decoders if ns not in begin.points]
        if missing:
            raise ConfigError(
                f"the start position has no resume point for {', '.join(missing)}; "
                "reload these tables (full-load-and-cdc) so their streams start consistently"
            )
        self._closed.clear()
        streams: dict[str, Any] = {}
        try:
            await_ms = max(1, int(self.poll_interval * 1000))
            for ns, point in begin.points.items():
                if ns in self._decoders:
                    table = self._decoders[ns].table
                    with _streams_checked(self._client, table):
                        streams[ns] = _watch(self._client, table, point, await_ms)
            yield from self._poll(streams, begin)
        finally:
            for stream in streams.values():
                with contextlib.suppress(Exception):
                    stream.close()

    def _poll(self, streams: dict[str, Any], position: MongoPosition) -> Iterator[Transaction]:
        buffer = self._buffer
        buffer.reset()
        txn: str | None = None
        commit = None
        quiet_since = idle_since = time.monotonic()
        reported = position  # after the last event whose changes were handed out

        def flush() -> Transaction:
            changes = buffer.finish(reported, commit, txn)
            return Transaction(changes, reported, commit, txn)

        while not self._closed.is_set() and streams:
            got = False
            for ns in list(streams):
                event = self._next(streams[ns], ns)
                if event is None:
                    continue
                got = True
                event_txn = _events.txn_of(event)
                if len(buffer) and (event_txn is None or event_txn != txn):
                    yield flush()
                decoded = self._decoders[ns].decode(event)
                txn, commit = event_txn, _events.commit_time(event)
                reported = position = position.moved(ns, event["_id"])
                quiet_since = idle_since = time.monotonic()
                if isinstance(decoded, SchemaChange):
                    log.error("%s: %s", ns, decoded.description)
                    streams.pop(ns).close()
                    yield Transaction((), position, commit, schema_changes=(decoded,))
                elif decoded is not None:
                    c = decoded
                    buffer.rows.append((c.op, c.table, c.key, c.before, c.after))
                    buffer.check()
                    if txn is None:
                        yield flush()
                if self._closed.is_set():
                    return
            if got:
                continue
            if len(buffer):  # every event of the transaction has arrived
                yield flush()
            now = time.monotonic()
            if now - quiet_since >= self.heartbeat:
                position = self._idle_position(streams, position)
                if position != reported:
                    reported = position
                    yield Transaction((), position)
                quiet_since = now
            if self.stop_when_idle is not None and now - idle_since >= self.stop_when_idle:
                return
            self._closed.wait(self.poll_interval / 4)

    def _next(self, stream: Any, ns: str) -> Mapping[str, Any] | None:
        table = self._decoders[ns].table
        with translated(self._client, "read the change stream of", table=str(table)):
            event = stream.try_next()
        return None if event is None else dict(event)

    @staticmethod
    def _idle_position(streams: Mapping[str, Any], position: MongoPosition) -> MongoPosition:
        for ns, stream in streams.items():
            token = stream.resume_token
            current = position.points.get(ns)
            if token is not None and (current is None or current.token_doc != dict(token)):
                position = position.moved(ns, token)
        return position

    def ack(self, position: Position) -> None:
        """Nothing to release: change streams keep no state on the source."""

    def close(self) -> None:
        """Stop reading (the streams close in the reading thread)."""
        self._closed.set()

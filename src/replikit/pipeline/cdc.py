"""The CDC stage of a pipeline: read source transactions, apply them, checkpoint, acknowledge.

:class:`Replicator` runs a :class:`~replikit.pipeline.contracts.ChangeReader` in a thread of its
own that fills a queue bounded by count and by estimated bytes (backpressure: a slow target
stops the reader, memory stays bounded); the calling thread takes transactions off the queue,
transforms and maps them to the target, and applies them with a
:class:`~replikit.pipeline.contracts.ChangeWriter`. Batching is adaptive: every transaction
already queued (up to ``batch_changes``) goes into one target transaction, so an idle stream
applies each transaction at once (low latency) and a backlog drains in large batches
(throughput). The checkpoint -- the position after the last source transaction of the batch --
commits in the same target transaction, and only then is the source acknowledged: a crash at any
point replays from the checkpoint, which idempotent apply turns into exactly-once effect on a
transactional target.

Large transactions: a reader hands over a transaction too large for memory with its changes in a
spill file (:mod:`replikit.pipeline.spill`); it ends a batch, the writer streams it in pieces
inside the batch's one target transaction, and its file is deleted once the batch is done
(applied or failed: a failed batch is read again from the source, since the checkpoint stays
before it).

During a full load the same queue feeds a :class:`~replikit.pipeline.cache.ChangeCache` instead
(:meth:`Replicator.cache_until`): changes of tables being loaded are held, then applied after
the load (DMS "cached changes") before the stream continues, each table's in one target
transaction with a checkpoint (:meth:`Replicator.apply_cache`).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from replikit._failpoints import failpoint
from replikit.changes import Change, Op, SchemaChange, Transaction
from replikit.errors import ConfigError, DataError, Error
from replikit.logs import in_context
from replikit.pipeline.cache import ADD_PIECE, ChangeCache
from replikit.pipeline.choices import check_stream_gc
from replikit.pipeline.conflict_policy import ConflictHandler, Unrecorded, refuse_unreported
from replikit.pipeline.conflicts import ConflictError
from replikit.pipeline.contracts import (
    ChangeReader,
    ChangeWriter,
    Checkpoint,
    SupportsValueNotes,
    dialect_of,
)
from replikit.pipeline.control import ApplyException, ControlStore, SuspendedTable
from replikit.pipeline.policy import ErrorPolicy
from replikit.pipeline.readahead import DEFAULT_QUEUE_BYTES, END, Stream, discard
from replikit.pipeline.reload import Loader, Reloads
from replikit.pipeline.schema_changes import SupportsDdl, alter_statements, unfollowable
from replikit.pipeline.setaside import (
    conflict_reason,
    cut,
    find_change,
    suspend_reason,
    without,
    without_table,
)
from replikit.pipeline.spill import ChangeBuffer, TransactionBuffer, spilled, transaction_bytes
from replikit.pipeline.stats import Statistics, TableState, note_values
from replikit.pipeline.status import StatusReporter
from replikit.positions import Position
from replikit.schema.convert import TablePlan
from replikit.schema.model import TableId
from replikit.transforms import SupportsExpand, Transform

__all__ = ["DEFAULT_QUEUE_BYTES", "CacheFeeder", "Replicator", "StopCondition", "thread_error"]

log = logging.getLogger(__name__)

_NO_LOCK = contextlib.nullcontext()
_NONE: frozenset[TableId] = frozenset()
_INSERT, _UPDATE, _DELETE = Op.INSERT, Op.UPDATE, Op.DELETE
_OPS = (Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE)  # the order of _count's per-table lists
#: a table's cached changes past this estimated size wait for their apply in a spill file
CACHED_SPILL_BYTES = 16 * 1024 * 1024
#: a stream with nothing to apply writes its status (in a transaction of its own) this often
IDLE_REPORT_SECONDS = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StopCondition:
    """When a replicator stops on its own (besides :meth:`Replicator.stop`).

    Attributes:
        idle_seconds: no source transaction for this long (``None``: never).
        position: a transaction at or after this position was applied.
        commit_time: a transaction committed at or after this time was applied.
    """

    idle_seconds: float | None = None
    position: Position | None = None
    commit_time: datetime | None = None

    def reached(self, tx: Transaction) -> bool:
        """Whether applying ``tx`` meets the position or time condition."""
        if self.position is not None and not tx.position < self.position:
            return True
        if self.commit_time is not None and tx.commit_ts is not None:
            return tx.commit_ts >= self.commit_time
        return False


_frozen_lock = threading.Lock()
_frozen_runs = 0  # runs inside _heap_frozen; -1: not ours to freeze (the program froze its own)
_collected_at = 0.0  # time.monotonic() of the last collection _collect_if_due made
#: while a stream runs, the collector runs this often (between batches) instead of by counts
COLLECT_SECONDS = 5.0


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """While a stream runs, the garbage collector runs on the stream's own schedule.

    The objects that exist when it starts (imports, plans, the program's own) sit in the
    collector's permanent generation (``gc.freeze``), and the collections that allocation
    counts trigger are off (``gc.disable``): the replicator collects every
    :data:`COLLECT_SECONDS` between batches instead (:func:`_collect_if_due`). Measured on a
    200,000-change PostgreSQL drain: the count-triggered collections took about 40% of the
    two threads' CPU (a backlog's queued transactions are tens of thousands of young
    objects that survive, so every young collection walks them and full collections kept
    coming back), and the stream itself made almost no cyclic garbage (226 objects).
    Nothing is freed differently: reference counting still frees everything at once;
    cyclic garbage waits at most about :data:`COLLECT_SECONDS`, and what was made before the
    run until it ends (``gc.unfreeze``, ``gc.enable``). Left alone when the program froze
    objects itself or disabled the collector; nested and concurrent runs share one schedule.
    """
    global _frozen_runs, _collected_at
    with _frozen_lock:
        if _frozen_runs == 0:
            _frozen_runs = 1 if gc.isenabled() and not gc.get_freeze_count() else -1
            if _frozen_runs == 1:
                gc.freeze()
                gc.disable()
                _collected_at = time.monotonic()
        elif _frozen_runs > 0:
            _frozen_runs += 1
    try:
        yield
    finally:
        with _frozen_lock:
            if _frozen_runs > 0:
                _frozen_runs -= 1
                if _frozen_runs == 0:
                    gc.enable()
                    gc.unfreeze()
            elif _frozen_runs < 0:
                _frozen_runs = 0


def _collect_if_due() -> None:
    """A full collection when the last one is :data:`COLLECT_SECONDS` old and the schedule
    is the stream's (see :func:`_heap_frozen`)."""
    global _collected_at
    if _frozen_runs <= 0 or time.monotonic() - _collected_at < COLLECT_SECONDS:
        return
    with _frozen_lock:
        if _frozen_runs <= 0 or time.monotonic() - _collected_at < COLLECT_SECONDS:
            return
        _collected_at = time.monotonic()
    gc.collect()


def thread_error(doing: str, exc: BaseException) -> BaseException:
    """``exc`` as the caller of a task sees it: a :class:`~replikit.Error` naming what failed.

    replikit's own errors pass unchanged (they name their cause); anything else (a bug, an
    unexpected driver exception) becomes an :class:`~replikit.Error` chained to it.
    """
    if isinstance(exc, Error) or not isinstance(exc, Exception):
        return exc
    err = Error(
        f"{doing} failed: {type(exc).__name__}: {exc}. Nothing after the last checkpoint was "
        "applied or acknowledged; run the task again to resume from it"
    )
    err.__cause__ = exc
    return err


class CacheFeeder:
    """The thread that moves queued transactions into a cache while a full load runs.

    :meth:`finish` stops it between transactions and raises what it failed with, if anything
    (as :func:`thread_error`): its caller must then not move the checkpoint past the full load,
    since a transaction the thread took off the queue may be in neither the cache nor the queue.
    """

    def __init__(self, replicator: Replicator, cache: ChangeCache) -> None:
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=in_context(self._run),
            args=(replicator, cache),
            name="replikit-cdc-cache",
            daemon=True,
        )
        self._thread.start()

    def _run(self, replicator: Replicator, cache: ChangeCache) -> None:
        try:
            replicator.cache_until(cache, self._done)
        except BaseException as exc:
            log.error("moving changes into the cache failed: %r", exc)
            self.error = exc

    @property
    def failed(self) -> bool:
        """Whether the thread ended with an error."""
        return self.error is not None

    def finish(self) -> None:
        """Stop the thread (after the transaction it is moving) and raise its error, if any."""
        self._done.set()
        self._thread.join()
        if self.error is not None:
            raise thread_error(
                "moving source changes into the cache during the full load", self.error
            )


Step = tuple[Callable[[Change], Any], bool]


def _steps(transforms: Sequence[Transform]) -> tuple[Step, ...]:
    """Each transform as (function, expands): a transform that can ``expand`` a change into
    several (the mappings' row filters: an update leaving the filter becomes a delete, one
    entering it an upsert) is called through ``expand``."""
    return tuple(
        (t.expand, True) if isinstance(t, SupportsExpand) else (t, False) for t in transforms
    )


def _transform(change: Change, steps: tuple[Step, ...]) -> tuple[Change, ...]:
    current: tuple[Change, ...] = (change,)
    for fn, expands in steps:
        if not current:
            return ()
        if expands:
            current = tuple(out for c in current for out in fn(c))
        else:
            current = tuple(out for c in current if (out := fn(c)) is not None)
    return current


def _planned_only(change: Change, plan: TablePlan) -> Change:
    """``change`` with only the columns ``plan`` writes (``schema_change_policy=ignore``)."""
    known = {c.source.name for c in plan.columns}

    def keep(image: Any) -> Any:
        if image is None or image.keys() <= known:
            return image
        return {k: v for k, v in image.items() if k in known}

    return replace(change, key=keep(change.key), before=keep(change.before),
                   after=keep(change.after))  # fmt: skip


def _chunks(changes: Iterable[Change], size: int) -> Iterator[tuple[Change, ...]]:
    """``changes`` in tuples of ``size`` (the last one shorter)."""
    it = iter(changes)
    while chunk := tuple(itertools.islice(it, size)):
        yield chunk


def _past_snapshots(checkpoint: Checkpoint) -> Checkpoint:
    """``checkpoint`` without its snapshots once its position is past every one (a replay
    from there cannot deliver a change they hold)."""
    at = checkpoint.position
    if not checkpoint.snapshots or at is None:
        return checkpoint
    if any(at < pos for pos in checkpoint.snapshots.values()):
        return checkpoint
    return replace(checkpoint, snapshots={})


class Replicator:
    """Applies a source's change stream to a target, with checkpoints (see module docs).

    Args:
        reader: the source's change reader.
        writer: the target's change writer.
        plans: one plan per replicated table (``plan.source.id`` is the source table).
        task: the task name the checkpoint is stored under.
        transforms: applied to every change, in order (``None`` drops the change).
        batch_apply: net change per key per batch with bulk statements (fast path), instead
            of applying every change in source order (transactional apply).
        batch_changes: most changes per target transaction.
        queue_transactions: source transactions buffered between reader and applier.
        queue_bytes: bound on the estimated size of those transactions (a transaction read
            into a spill file counts only its small in-memory part).
        statistics: where per-table and CDC counters go.
        replan: builds a plan for a source table whose columns changed (``add_columns``).
        policy: what a change the target refuses does (``data_errors``: suspend its table,
            set it aside in the exceptions table, or stop).
        control: where suspended tables and set-aside changes are recorded (the target's
            control store); ``None`` keeps them in the statistics and the log only.
        schema_policy: ``apply``, ``stop-table`` or ``ignore`` (see ``TaskSettings``).
        reloader: loads one source table into the target again and returns its new plan;
            with it, suspended tables can be reloaded while the stream runs
            (:attr:`reloads`, :mod:`replikit.pipeline.reload`).
        stream_gc: ``managed`` runs the garbage collector on the stream's schedule while
            :meth:`run` runs (:func:`_heap_frozen`); ``python`` leaves it as it is.
    """

    def __init__(
        self,
        reader: ChangeReader,
        writer: ChangeWriter,
        plans: Sequence[TablePlan],
        *,
        task: str,
        transforms: Sequence[Transform] = (),
        batch_apply: bool = False,
        batch_changes: int = 10_000,
        queue_transactions: int = 10_000,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        statistics: Statistics | None = None,
        replan: Callable[[TablePlan, SchemaChange], TablePlan] | None = None,
        policy: ErrorPolicy | None = None,
        control: ControlStore | None = None,
        schema_policy: str = "apply",
        reloader: Loader | None = None,
        stream_gc: str = "managed",
    ) -> None:
        if batch_changes < 1 or queue_transactions < 1 or queue_bytes < 1:
            raise ConfigError("batch_changes, queue_transactions and queue_bytes must be >= 1")
        check_stream_gc(stream_gc)
        self.stream_gc = stream_gc
        self.reader = reader
        self.writer = writer
        self.task = task
        self.transforms = tuple(transforms)
        self._steps = _steps(self.transforms)
        self.batch_apply = batch_apply
        self.batch_changes = batch_changes
        self.queue_transactions = queue_transactions
        self.queue_bytes = queue_bytes
        self.statistics = statistics if statistics is not None else Statistics()
        self._replan = replan
        self.policy = policy or ErrorPolicy()
        self.control = control
        self.schema_policy = schema_policy
        self._skipped: dict[TableId, int] = {}
        #: the value notes already logged once (:meth:`_note_values`)
        self._noted: set[tuple[str, str, str]] = set()
        self._conflicts = None if self.policy.apply_conflicts == "converge" else ConflictHandler(
            task, self.policy, control, self.statistics, lambda t: self._source_names[t]
        )
        refuse_unreported(self.policy, writer)
        self._replaced: list[Transaction] = []  # spill files made by the policies: discarded
        self._ignored: set[TableId] = set()  # target tables whose schema changes are ignored
        #: suspended tables reloaded while the stream runs
        self.reloads = Reloads(self, reloader)
        self._by_source: dict[TableId, TablePlan] = {p.source.id: p for p in plans}
        # target id -> source name for the counters (re-planning keeps target ids)
        self._source_names = {p.target_id: str(p.source.id) for p in plans}
        self._stopped: dict[TableId, str] = {}
        #: tables a resumed full load read from a snapshot of its own -> that snapshot's
        #: position: their changes at or before it are in the loaded rows (skipped)
        self._snapshots: dict[TableId, Position] = {}
        self._stop = threading.Event()
        self._stream: Stream | None = None
        self._cached_upto: Transaction | None = None
        self._pushback: Any = None
        self.checkpoint: Checkpoint | None = None
        #: reports the task's status and history (``None``: nothing reported)
        self.reporter: StatusReporter | None = None
        for p in plans:
            self.statistics.add(str(p.source.id), str(p.target_id), p.source.estimated_rows)
        if hasattr(reader, "on_retry"):  # the reader reconnects by itself: count those too
            reader.on_retry = self._stream_retried

    def _stream_retried(self, error: BaseException) -> None:
        self.statistics.retried(error, "stream")

    # -- control ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to finish its batch, commit its checkpoint and return (thread-safe)."""
        self._stop.set()

    @property
    def plans(self) -> dict[TableId, TablePlan]:
        """Current plans by target table id (schema changes replace them)."""
        return {p.target_id: p for p in self._by_source.values()}

    def open(self, checkpoint: Checkpoint) -> None:
        """Start the reader thread at ``checkpoint.resume``."""
        if self._stream is None:
            self.checkpoint = checkpoint
            names = {str(t): t for t in self._by_source}
            self._snapshots = {
                names[name]: pos for name, pos in checkpoint.snapshots.items() if name in names
            }
            for table, pos in self._snapshots.items():
                log.info("table %s was loaded at %s: its changes up to there are skipped",
                         table, pos)  # fmt: skip
            self._stream = Stream(
                self.reader, checkpoint.resume, self.queue_transactions, self.queue_bytes
            )

    def close(self) -> None:
        """Stop the reader thread and close the reader."""
        self.reloads.close()
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        else:
            self.reader.close()

    # -- full load phase: cache ---------------------------------------------------------------
    def cache_until(self, cache: ChangeCache, done: threading.Event) -> None:
        """Move queued transactions into ``cache`` until ``done`` is set (run in a thread).

        Stops between transactions, so what stays in the queue follows what was cached.
        """
        stream = self._require_stream()
        while not done.is_set():
            item = stream.get(0.1)
            if item is None:
                continue
            if item is END or isinstance(item, BaseException):
                self._pushback = item
                return
            failpoint("cdc.cache")
            try:
                self._cache(cache, item)
            finally:
                discard(item)  # the cache holds its own copy
            self.statistics.cdc.cached_changes += len(item)
            self.statistics.cdc.cache_changes += len(item)
            self._cached_upto = Transaction((), item.position, item.commit_ts, item.txid)

    def _cache(self, cache: ChangeCache, tx: Transaction) -> None:
        """Add ``tx`` to ``cache``, without the changes its tables' reload snapshots hold."""
        skipped = self._snapshotted(tx)
        if not skipped:
            cache.add(tx)
            return
        changes = spilled(tx)
        for piece in changes.batches(ADD_PIECE) if changes is not None else (tx.changes,):
            cache.add(c for c in piece if c.table not in skipped)

    def _snapshotted(self, tx: Transaction) -> frozenset[TableId]:
        """The source tables whose reload snapshot already holds ``tx`` (committed at or
        before its position; see :attr:`Checkpoint.snapshots`)."""
        snapshots = self._snapshots
        if not snapshots:
            return _NONE
        at = tx.position
        return frozenset(t for t, pos in snapshots.items() if at <= pos)

    def start_caching(self, cache: ChangeCache) -> CacheFeeder:
        """Run :meth:`cache_until` in a thread of its own; ``finish()`` it after the load."""
        self._require_stream()
        return CacheFeeder(self, cache)

    def apply_cache(
        self, cache: ChangeCache, tables: Iterable[TableId], checkpoint: Checkpoint
    ) -> tuple[Checkpoint, bool]:
        """Apply every held change of ``tables`` (source ids), table by table, each table's
        in one target transaction with a checkpoint.

        ``checkpoint`` is the task's during its load (phase ``full-load``). The changes of
        every table but the last commit with it, their table added to
        :attr:`~replikit.pipeline.contracts.Checkpoint.snapshots` at the position of the last
        cached transaction (so a crash before the last table replays the stream without
        applying that table's changes again); the last table's commit with the checkpoint
        leaving the full load: phase ``cdc``, every table loaded, ``position`` the last
        cached transaction's. Returns that checkpoint and whether it was committed (``False``:
        nothing was applied; the caller stores it). Errors other than replikit's are raised
        as :class:`~replikit.Error` (see :func:`thread_error`).
        """
        tables = list(tables)
        last = self._cached_upto
        done = replace(checkpoint, phase="cdc", loaded=frozenset(str(t) for t in tables))
        if last is not None:
            done = _past_snapshots(replace(done, position=last.position, commit_ts=last.commit_ts))
        try:
            committed = self._apply_cache(cache, tables, checkpoint, done)
            self.statistics.cdc.cache_changes = 0
        except Error:
            raise
        except Exception as exc:
            raise thread_error("applying the changes cached during the full load", exc) from exc
        return done, committed

    def _apply_cache(
        self, cache: ChangeCache, tables: list[TableId], during: Checkpoint, done: Checkpoint
    ) -> bool:
        last = self._cached_upto
        if last is None:
            for table in tables:
                if cache.is_held(table):
                    list(cache.release(table))
            return False
        # A table's changes are applied once its successor's are collected: the last
        # table's go with ``done`` (no checkpoint in between claims what is not applied).
        pending: tuple[TableId, Transaction] | None = None
        try:
            for table in tables:
                mapped = self._collect_cached(cache, table, last)
                if mapped is None:
                    continue
                previous, pending = pending, (table, mapped)
                if previous is not None:
                    during = self._commit_cached(previous, during, last)
            if pending is None:
                return False
            self._commit_cached(pending, done, last)
            return True
        finally:
            if pending is not None:
                discard(pending[1])

    def _collect_cached(
        self, cache: ChangeCache, table: TableId, last: Transaction
    ) -> Transaction | None:
        """``table``'s held changes, mapped to the target, as one transaction at ``last``
        (on disk past :data:`CACHED_SPILL_BYTES`); ``None``: none to apply."""
        buffer = ChangeBuffer(CACHED_SPILL_BYTES)
        try:
            for chunk in _chunks(cache.release(table), self.batch_changes):
                buffer.add(self._map(Transaction(chunk, last.position)).changes)
            if not len(buffer):
                return None
            changes = buffer.finish(last.position, last.commit_ts, last.txid)
        finally:
            buffer.reset()
        return Transaction(changes, last.position, last.commit_ts, last.txid)

    def _commit_cached(
        self, pending: tuple[TableId, Transaction], checkpoint: Checkpoint, last: Transaction
    ) -> Checkpoint:
        """Apply one table's cached changes with ``checkpoint`` (during the load: with the
        table's snapshot at ``last``); the checkpoint committed."""
        table, mapped = pending
        if checkpoint.phase == "full-load":
            name = str(table)
            held = checkpoint.snapshots.get(name)
            at = last.position if held is None or held < last.position else held
            checkpoint = replace(checkpoint, snapshots={**checkpoint.snapshots, name: at})
        failpoint("cdc.apply-cached")
        try:
            self._count(self._apply_with_policy([mapped], checkpoint, conflicts=False))
        finally:
            discard(mapped)
            for made in self._replaced:
                discard(made)
            self._replaced.clear()
        self.checkpoint = checkpoint
        return checkpoint

    def _apply_cached(self, changes: tuple[Change, ...], last: Transaction) -> None:
        tx = Transaction(changes, last.position, last.commit_ts, last.txid)
        mapped = self._map(tx)
        if mapped.changes:
            failpoint("cdc.apply-cached")
            try:
                self._count(self._apply_with_policy([mapped], None))
            finally:
                for made in self._replaced:
                    discard(made)
                self._replaced.clear()

    # -- CDC phase --------------------------------------------------------------------------
    def run(self, checkpoint: Checkpoint, stop: StopCondition | None = None) -> Checkpoint:
        """Apply transactions until stopped; return the last committed checkpoint.

        Raises the reader's or the writer's error after committing what was applied before it.
        """
        managed = self.stream_gc == "managed"
        with _heap_frozen() if managed else contextlib.nullcontext():
            return self._run(checkpoint, stop)

    def _run(self, checkpoint: Checkpoint, stop: StopCondition | None) -> Checkpoint:
        self.open(checkpoint)
        stream = self._require_stream()
        stop = stop or StopCondition()
        self.checkpoint = checkpoint
        for p in self._by_source.values():
            if p.source.id not in self._stopped:
                self.statistics.set_state(str(p.source.id), TableState.REPLICATING)
        pending, self._pushback = self._pushback, None
        last_activity = time.monotonic()
        while not self._stop.is_set():
            self.reloads.service()
            item = pending if pending is not None else stream.get(0.2)
            pending = None
            if item is None:
                idle = stop.idle_seconds
                if self.reloads.active:  # loading a table is not idle
                    last_activity = time.monotonic()
                elif idle is not None and time.monotonic() - last_activity >= idle:
                    log.info("no source transaction for %.1f s: stopping", idle)
                    break
                reporter = self.reporter
                if reporter is not None and reporter.idle_for() >= IDLE_REPORT_SECONDS:
                    reporter.publish()  # nothing to apply: the status says the task is alive
                _collect_if_due()
                continue
            if item is END:
                break
            if isinstance(item, BaseException):
                raise thread_error("reading the source's changes", item)
            if len(item) or item.schema_changes:  # an empty one is a reader's heartbeat
                last_activity = time.monotonic()
            try:
                batch, pending, reached = self._take_batch(stream, item, stop)
                self._flush(batch)
                _collect_if_due()
            except Error:
                raise
            except Exception as exc:
                where = self.checkpoint.resume if self.checkpoint is not None else None
                doing = f"applying source transactions after position {where}"
                raise thread_error(doing, exc) from exc
            if reached:
                break
        return self.checkpoint

    def _take_batch(
        self, stream: Stream, first: Transaction, stop: StopCondition
    ) -> tuple[list[Transaction], Any, bool]:
        """``first`` plus what is already queued; a schema change or a stop point ends it."""
        batch: list[Transaction] = []
        size = 0
        item: Any = first
        self._note_read(stream)
        most = self.batch_changes
        stops = stop.position is not None or stop.commit_time is not None
        get = stream.get
        while True:
            if item.schema_changes:
                if batch:
                    return batch, item, False  # apply what came before the new shape first
                self._schema_changes(item.schema_changes)
            batch.append(item)
            size += len(item.changes)
            if stops and stop.reached(item):
                return batch, None, True
            if size >= most:
                return batch, None, False
            item = get(0)
            if item.__class__ is not Transaction:  # the common case without isinstance
                if item is None:
                    return batch, None, False
                if not isinstance(item, Transaction):  # END or the reader's error
                    return batch, item, False

    def _note_read(self, stream: Stream) -> None:
        cdc = self.statistics.cdc
        cdc.queued(len(stream), stream.queue.bytes)
        last = stream.last_read
        if last is not None:
            tx, at = last
            ts = tx.commit_ts
            cdc.read(str(tx.position), None if ts is None else max(0.0, at - ts.timestamp()))

    def _flush(self, batch: list[Transaction]) -> None:
        if not batch:
            return
        mapped: list[Transaction] = []
        try:
            self.reloads.hold(batch)
            self._map_batch(batch, mapped)
            self._apply(batch, mapped)
        finally:  # applied, or failed (then read again from the source): spill files go
            for txs in (batch, mapped, self._replaced):
                for tx in txs:
                    if tx.changes.__class__ is not tuple:  # the common case: nothing on disk
                        discard(tx)
            self._replaced.clear()

    def _apply(self, batch: list[Transaction], mapped: list[Transaction]) -> None:
        assert self.checkpoint is not None
        last = batch[-1]
        failpoint("cdc.apply")
        checkpoint = _past_snapshots(
            replace(self.checkpoint, position=last.position, commit_ts=last.commit_ts, phase="cdc")
        )
        reporter = self.reporter
        report = None  # the status commits with the data it describes (at most once a second)
        if reporter is not None and reporter.inline and reporter.due():
            report = reporter.report(applied=str(last.position))
        with_report = replace(checkpoint, report=report)
        with reporter.writing if report is not None and reporter is not None else _NO_LOCK:
            mapped = self._apply_with_policy(mapped, with_report)
        committed = datetime.now(UTC)
        failpoint("apply.after-commit")
        self.checkpoint = checkpoint
        if self._snapshots and not checkpoint.snapshots:
            self._snapshots = {}  # committed past them: nothing left to skip
        self.reader.ack(last.position)
        self._count(mapped)
        self._note_values()
        # one pass over the batch: lag, size, and the transactions that were not heartbeats
        now = committed.timestamp()
        latencies: list[float] = []
        size = applied = 0
        for tx in batch:
            if tx.commit_ts is not None:
                latencies.append(now - tx.commit_ts.timestamp())
            hint = tx.size_hint
            size += hint if hint is not None else transaction_bytes(tx)
            if tx.changes or tx.schema_changes:
                applied += 1
        cdc = self.statistics.cdc
        cdc.bytes += size
        cdc.applied(applied, sum([len(tx.changes) for tx in mapped]), latencies, str(last.position))
        cdc.source_commit_ts = last.commit_ts
        if reporter is not None and not reporter.inline and reporter.due():
            reporter.publish()  # a separate control database: after the data's commit

    def _note_values(self) -> None:
        """Note in the tables' statistics what the reader read otherwise than the source
        stores it (:class:`SupportsValueNotes`: MySQL zero dates read as NULL), the counts so
        far; a column's first one is also logged."""
        reader = self.reader
        if not isinstance(reader, SupportsValueNotes):
            return
        notes = reader.value_notes()
        for table, column, what in notes.keys() - self._noted:
            log.warning("%s: column %s: %s; counted in the table's statistics", table, column, what)
        self._noted |= notes.keys()
        note_values(self.statistics, notes)

    # -- error policies ---------------------------------------------------------------------------
    def _apply_with_policy(
        self, mapped: list[Transaction], checkpoint: Checkpoint | None, *, conflicts: bool = True
    ) -> list[Transaction]:
        """Apply ``mapped``; a change the target refuses is handled by ``policy.data_errors``
        and the rest applied again (each round leaves a change or a table out, so it ends).
        Returns what was applied."""
        # conflicts mean something only past the snapshot: cached and held changes
        # (``conflicts=False``, or without a checkpoint) may overlap the rows a load copied,
        # and converge
        check = (
            self._conflicts.batch()
            if self._conflicts and conflicts and checkpoint is not None
            else None
        )
        while True:
            try:
                self.writer.apply(self.plans, mapped, checkpoint=checkpoint,
                                  batch=self.batch_apply, on_conflicts=check)  # fmt: skip
                return mapped
            except Unrecorded:
                assert self._conflicts is not None
                self._conflicts.record()
            except ConflictError as exc:
                before = mapped
                mapped = self._stop_conflicting(exc, mapped)
                self._replaced += [t for t in mapped if all(t is not b for b in before)]
            except DataError as exc:
                before = mapped
                mapped = self._set_aside(exc, mapped)
                self._replaced += [t for t in mapped if all(t is not b for b in before)]

    def _set_aside(self, exc: DataError, mapped: list[Transaction]) -> list[Transaction]:
        """``mapped`` without what ``exc`` names (policy permitting), else raise ``exc``."""
        target = next((t for t in self._source_names if str(t) == exc.table), None)
        source = None if target is None else self._source_id(target)
        if self.policy.data_errors == "stop-task" or target is None or source is None:
            raise exc
        position = self.checkpoint.position if self.checkpoint is not None else None
        found = find_change(self.plans[target], mapped, exc)
        if found is not None and self.policy.data_errors == "skip-row":
            self._skip(source, found.change, found.tx, exc)
            if not self._escalated(source):
                return without(mapped, found)
        self.suspend(
            source,
            suspend_reason(str(source), exc, self.policy, found=found is not None),
            position,
        )
        if found is not None:  # the table's changes before the refused one still apply
            return cut(mapped, target, found)
        return [without_table(tx, target) for tx in mapped]

    def _stop_conflicting(self, exc: ConflictError, mapped: list[Transaction]) -> list[Transaction]:
        """``apply_conflicts="stop"``: suspend the tables in conflict and leave their changes
        out of the batch (under ``data_errors="stop-task"``, stop the task)."""
        if self.policy.data_errors == "stop-task":
            raise exc
        position = self.checkpoint.position if self.checkpoint is not None else None
        for target in dict.fromkeys(c.table for c in exc.conflicts):
            source = self._source_id(target)
            if source is None:
                raise exc
            first = next(c for c in exc.conflicts if c.table == target)
            self.suspend(source, conflict_reason(str(source), first), position)
            mapped = [without_table(tx, target) for tx in mapped]
        return mapped

    def _source_id(self, target: TableId) -> TableId | None:
        name = self._source_names[target]
        return next((t for t in self._by_source if str(t) == name), None)

    def _skip(self, source: TableId, change: Change, tx: Transaction, exc: DataError) -> None:
        record = ApplyException(
            task=self.task, table=str(source), kind="data-error", op=change.op.value,
            key=exc.key, column=exc.column, error=str(exc), position=str(tx.position),
        )  # fmt: skip
        if self.control is not None:
            self.control.record([record])
        self._skipped[source] = self._skipped.get(source, 0) + 1
        self.statistics.exception(str(source))
        log.warning("table %s: change set aside (skip-row): %s", source, exc)

    def _escalated(self, source: TableId) -> bool:
        limit = self.policy.escalation_count
        return limit is not None and self._skipped.get(source, 0) >= limit

    def suspend(self, table: TableId, reason: str, position: Position | None = None) -> None:
        """Stop applying ``table``'s changes (the others go on) and record why; the table
        stays suspended across runs until it is reloaded."""
        name = str(table)
        self._stopped[table] = reason
        log.error("%s", reason)
        self.statistics.set_state(name, TableState.SUSPENDED, reason)
        if self.control is not None:
            self.control.suspend(
                SuspendedTable(
                    task=self.task,
                    table=name,
                    reason=reason,
                    position=None if position is None else str(position),
                )
            )

    def restore_suspended(self) -> list[str]:
        """Suspend again the tables the control store says are suspended; their names. A
        table whose reload did not finish (``reloading``: the task stopped or crashed during
        it), or was asked for (``reload-requested``), is reloaded again once the stream runs
        (when this replicator has a reloader)."""
        if self.control is None:
            return []
        names: list[str] = []
        by_name = {str(t): t for t in self._by_source}
        for row in self.control.suspended(self.task):
            table = by_name.get(row.table)
            if table is None:
                continue
            self._stopped[table] = row.reason
            self.statistics.set_state(row.table, TableState.SUSPENDED, row.reason)
            names.append(row.table)
            if row.state != "suspended" and self.reloads.loader is not None:
                log.warning("table %s: its reload did not finish; reloading it again", row.table)
                self.reloads.request(table)
        if names:
            log.warning("suspended tables (reload them to resume): %s", ", ".join(names))
        return names

    # -- reloads (pipeline/reload.py drives these) ----------------------------------------------
    @property
    def plans_by_source(self) -> dict[TableId, TablePlan]:
        """Current plans by source table id."""
        return dict(self._by_source)

    def hold_back(self, table: TableId, reason: str) -> None:
        """Stop applying ``table``'s changes (its reload holds them meanwhile)."""
        self._stopped[table] = reason

    def release(self, table: TableId) -> None:
        """Apply ``table``'s changes again."""
        self._stopped.pop(table, None)
        self._skipped.pop(table, None)

    def replace_plan(self, table: TableId, plan: TablePlan) -> None:
        """Use ``plan`` for ``table`` from now on (a reload planned it again)."""
        self._by_source[table] = plan
        self._source_names[plan.target_id] = str(table)

    def apply_held(self, changes: Iterable[Change]) -> None:
        """Apply changes held during a reload, in order, in chunks, without a checkpoint."""
        resume = self.checkpoint.resume if self.checkpoint is not None else None
        assert resume is not None, "a stream applies held changes only once it runs"
        last = Transaction((), resume, None, None)
        for chunk in _chunks(changes, self.batch_changes):
            self._apply_cached(chunk, last)

    def skip_until(self, table: TableId, position: Position) -> None:
        """Leave out ``table``'s changes at or before ``position`` (a reload read it from a
        snapshot there: they are in the loaded rows). When the stream is not past it yet, the
        position joins the checkpoint's snapshots, committed now, so a replay after a crash
        leaves them out too; the checkpoint drops it once the stream is past it."""
        checkpoint = self.checkpoint
        assert checkpoint is not None, "a stream skips a reloaded table's changes once it runs"
        resume = checkpoint.resume
        if resume is not None and position <= resume:
            return  # nothing the stream delivers from here on is that old
        snapshots = {**checkpoint.snapshots, str(table): position}
        checkpoint = replace(checkpoint, snapshots=snapshots)
        self._apply_with_policy([], checkpoint, conflicts=False)
        self.checkpoint = checkpoint
        self._snapshots[table] = position
        log.info("table %s was reloaded at %s: its changes up to there are skipped",
                 table, position)  # fmt: skip

    @property
    def suspended(self) -> dict[TableId, str]:
        """Suspended (or stopped) source tables and why."""
        return dict(self._stopped)

    # -- mapping --------------------------------------------------------------------------------
    def _map_batch(self, batch: list[Transaction], out: list[Transaction]) -> None:
        """Append :meth:`_map` of every transaction of ``batch`` to ``out``. With nothing to
        map (no transforms, no stopped, ignored or snapshotted tables) a transaction whose
        tables are each their own target passes as it is, checked in one pass over the batch
        (a run of changes of one table, across transactions, looks its table up once)."""
        if self._steps or self._ignored or self._stopped or self._snapshots:
            out += (self._map(tx) for tx in batch)
            return
        same = {t for t, p in self._by_source.items() if p.target_id == t}
        last: Any = None
        for tx in batch:
            changes = tx.changes
            if changes.__class__ is tuple and not tx.schema_changes:
                for change in changes:
                    if change.table is not last:
                        if change.table not in same:
                            break
                        last = change.table
                else:
                    out.append(tx)
                    continue
            out.append(self._map(tx))

    def _map(self, tx: Transaction) -> Transaction:
        """Transform and re-address ``tx``'s changes to the target (the hot path: no copies
        of changes that need none, positional constructors instead of ``replace``)."""
        if spilled(tx) is not None:
            return self._map_spilled(tx)
        by_source, stopped, steps = self._by_source, self._stopped, self._steps
        skipped = self._snapshotted(tx)
        if skipped:  # left out like a stopped table's
            stopped = {**stopped, **dict.fromkeys(skipped, "")}
        ignored = self._ignored
        changes: list[Change] = []
        last: Any = None  # the last change's table: runs of one table look it up once
        plan: TablePlan | None = None
        as_is = False  # the run's changes go to the target unchanged
        touched = False  # a change was left out or replaced
        for change in tx.changes:
            if change.table is not last:
                last = change.table
                plan = by_source.get(last)
                if plan is not None and stopped and last in stopped:
                    plan = None
                as_is = (
                    plan is not None and not steps and not ignored and last == plan.target_id
                )
            if as_is:
                changes.append(change)
                continue
            touched = True
            if plan is None:
                continue
            for current in _transform(change, steps) if steps else (change,):
                target = plan.target_id
                if ignored and target in ignored:
                    current = _planned_only(current, plan)
                if current.table != target:
                    current = Change(
                        current.op,
                        target,
                        current.key,
                        current.before,
                        current.after,
                        current.position,
                        current.commit_ts,
                        current.txid,
                    )
                changes.append(current)
        if not tx.schema_changes and (
            not touched
            or (
                len(changes) == len(tx.changes)
                and all(a is b for a, b in zip(changes, tx.changes, strict=True))
            )
        ):
            return tx
        return Transaction(tuple(changes), tx.position, tx.commit_ts, tx.txid)

    def _map_spilled(self, tx: Transaction) -> Transaction:
        """:meth:`_map` of a transaction on disk: as it is when nothing changes, else mapped
        into a new spill file (changes keep the transaction's position, time and id)."""
        source = spilled(tx)
        assert source is not None
        by_source, stopped = self._by_source, self._stopped
        skipped = self._snapshotted(tx)
        if (
            not self.transforms
            and not self._ignored
            and not tx.schema_changes
            and all(
                t in by_source
                and t not in stopped
                and t not in skipped
                and by_source[t].target_id == t
                for t in source.tables
            )
        ):
            return tx
        out = TransactionBuffer(0)
        try:
            for part in source.batches(1024):
                mapped = self._map(Transaction(part, tx.position, tx.commit_ts, tx.txid))
                out.rows += [(c.op, c.table, c.key, c.before, c.after) for c in mapped.changes]
                out.check()
            changes = out.finish(tx.position, tx.commit_ts, tx.txid)
        finally:
            out.reset()
        return Transaction(changes, tx.position, tx.commit_ts, tx.txid)

    def _count(self, transactions: Sequence[Transaction]) -> None:
        """Add the batch's changes to the per-table counters (one lock round per table/op)."""
        sources = self._source_names
        counts: dict[tuple[TableId, Op], int] = {}
        per_table: dict[TableId, list[int]] = {}  # table -> counts in _OPS order
        last: Any = None  # runs of one table: looked up once (TableId and Op hash in Python)
        current: list[int] = []
        for tx in transactions:
            on_disk = spilled(tx)
            if on_disk is not None:  # counted as it was written
                for key, n in on_disk.counts.items():
                    counts[key] = counts.get(key, 0) + n
                continue
            for change in tx.changes:
                if change.table is not last:
                    last = change.table
                    current = per_table.setdefault(last, [0, 0, 0, 0])
                op = change.op
                if op is _INSERT:
                    current[0] += 1
                elif op is _UPDATE:
                    current[1] += 1
                else:
                    current[2 if op is _DELETE else 3] += 1
        for table, ops in per_table.items():
            for op, n in zip(_OPS, ops, strict=True):
                if n:
                    counts[(table, op)] = counts.get((table, op), 0) + n
        for (table, op), n in counts.items():
            self.statistics.count_changes(sources[table], op.value, n)

    def _schema_changes(self, changes: Sequence[SchemaChange]) -> None:
        """Follow, ignore or stop at each schema change, as ``schema_policy`` says; every
        one counts as a ``ddl`` of its table."""
        for sc in changes:
            plan = self._by_source.get(sc.table)
            if plan is None or sc.table in self._stopped:
                continue
            name = str(sc.table)
            self.statistics.count_changes(name, "ddl")
            why = sc.description or (
                f"columns dropped {list(sc.dropped)}, changed {list(sc.changed)}, "
                f"added {[c.name for c in sc.added]}"
            )
            if self.schema_policy == "ignore":
                self._ignored.add(plan.target_id)
                log.warning("%s: schema change ignored (schema_change_policy=ignore): %s",
                            name, why)  # fmt: skip
                continue
            why_not = self._follow(plan, sc) if self.schema_policy == "apply" else None
            if why_not is None and self.schema_policy == "apply":
                continue
            follows = (
                "schema_change_policy=stop-table" if self.schema_policy == "stop-table"
                else f"not followed: {why_not}"
            )  # fmt: skip
            message = (
                f"table {name} suspended: its source schema changed ({why}; {follows}); its "
                f"changes are no longer applied. Reload it: replikit reload SRC DST --table "
                f"{name} (or Task.reload), or exclude it."
            )
            position = self.checkpoint.position if self.checkpoint is not None else None
            self.suspend(sc.table, message, position)

    def _follow(self, plan: TablePlan, sc: SchemaChange) -> str | None:
        """Follow ``sc`` on the target (see :mod:`replikit.pipeline.schema_changes`); why it
        cannot be, else ``None``."""
        if self._replan is None:
            return "no re-planning in this pipeline"
        why = unfollowable(sc, plan.source)
        needs_ddl = sc.renamed or sc.changed or sc.dropped
        if why is None and needs_ddl and not isinstance(self.writer, SupportsDdl):
            why = f"{type(self.writer).__name__} runs no DDL"
        if why is not None:
            return why
        new_plan = self._replan(plan, sc)
        statements, added = alter_statements(
            dialect_of(self.writer).name, dialect_of(self.writer).quote, plan, new_plan, sc
        )
        if statements:
            assert isinstance(self.writer, SupportsDdl)
            self.writer.run_ddl(statements)
        if added:
            self.writer.add_columns(new_plan, added)
        self._by_source[sc.table] = new_plan
        self._source_names[new_plan.target_id] = str(sc.table)
        log.info("%s: schema change followed on the target (%s)", sc.table,
                 sc.description or "; ".join(statements))  # fmt: skip
        return None

    def _require_stream(self) -> Stream:
        if self._stream is None:
            raise Error("the replicator is not open; call open(checkpoint) first")
        return self._stream

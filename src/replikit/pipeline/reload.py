"""Reloading one suspended table while CDC goes on for the others.

The handoff is the first load's (DMS "cached changes"): from the batch the reload starts at,
the table's changes are *held* in a :class:`~replikit.pipeline.cache.ChangeCache` instead of
applied; then a full load of the table reads it in a thread of its own while the stream keeps
applying the other tables; when the load is done the held changes are applied and the table
replicates again. Nothing is lost in between: every change committed after the read started is
held.

Nothing is applied twice either, when the source reads the table from a snapshot at an exact
position of its change log (``cdc_reload_snapshot``: the loader reports that position as soon as
it has it). Of the held changes only those of transactions after it are applied (the others are
in the loaded rows), and when the stream is still behind it, the table's changes it delivers up
to there are left out, that position kept in the checkpoint until the stream is past it (a
replay after a crash leaves them out too: :attr:`~replikit.pipeline.contracts.Checkpoint.
snapshots`, as for a resumed full load). That matters for change-file targets, which write
every change they are given; database targets converge anyway (apply is idempotent), and a
source without an exact snapshot (a MongoDB server without snapshot reads: standalone, before
5.0) gets every held change applied. MongoDB reads the table at a cluster time and keeps a
point per collection: the position compared is the table's (``Position.for_table``).

The table stays in ``replikit_suspended_tables`` (state ``reloading``; a files target's
manifest) until the handoff is complete, so a crash in between leaves it suspended, and the
task's next run reloads it again (:meth:`~replikit.pipeline.cdc.Replicator.restore_suspended`)
instead of applying its changes over a half-finished load. A reload can be asked
for in the process (``Task.reload``) or from outside (``replikit reload``): a running task looks
at its suspended tables' rows every few seconds, and a row set to ``reload-requested`` (or
deleted by an offline reload, which the running task cannot have seen) starts a reload here.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from replikit._failpoints import failpoint
from replikit.changes import Transaction
from replikit.logs import in_context
from replikit.pipeline.cache import ADD_PIECE, ChangeCache
from replikit.pipeline.control import SuspendedTable
from replikit.pipeline.spill import spilled
from replikit.pipeline.stats import TableState
from replikit.positions import Position
from replikit.schema.convert import TablePlan
from replikit.schema.model import TableId

if TYPE_CHECKING:
    from replikit.pipeline.cdc import Replicator

__all__ = ["CONTROL_POLL_SECONDS", "Loader", "Reloads", "SnapshotAt", "reloading"]

log = logging.getLogger(__name__)

#: how often a running task looks at its suspended tables' control rows
CONTROL_POLL_SECONDS = 5.0
#: what a loader calls once it knows what its read holds: the source position its snapshot is
#: exact at (every change committed at or before it is in the load, none after it), or
#: ``None`` when the source has no such snapshot
SnapshotAt = Callable[[Position | None], None]
#: loads one source table into the target (replacing what it holds), reporting its snapshot,
#: and returns its plan
Loader = Callable[[TableId, SnapshotAt], TablePlan]


def reloading(task: str, table: str) -> SuspendedTable:
    """The control record of ``table`` while a reload loads it. A run that finds it (the
    task stopped or crashed before the reload ended) loads the table again."""
    return SuspendedTable(
        task=task,
        table=table,
        state="reloading",
        reason=(
            f"table {table} is being reloaded; if the task stops before the reload ends, its "
            f"next run reloads it again (or: replikit reload SRC DST --table {table})"
        ),
    )


class _Covered:
    """How many of a reloading table's held changes its load holds: those of transactions at
    or before its snapshot. The applying thread counts each held transaction's changes
    (:meth:`held`); the loading thread reports the snapshot (:meth:`loaded_at`). Until it
    does, the counts are kept by position (the time it takes to open a snapshot); after,
    only their sum. No report, or no exact snapshot: none is covered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reported = False
        self.at: Position | None = None  # the snapshot's position
        self.count = 0  # held changes at or before it
        self._unsure: list[tuple[Position, int]] = []  # held before it was reported

    def loaded_at(self, at: Position | None) -> None:
        with self._lock:
            self._reported, self.at = True, at
            if at is not None:
                self.count += sum(n for pos, n in self._unsure if pos <= at)
            self._unsure = []

    def held(self, position: Position, n: int) -> None:
        with self._lock:
            if not self._reported:
                self._unsure.append((position, n))
            elif self.at is not None and position <= self.at:
                self.count += n


@dataclass(eq=False)
class _Running:
    table: TableId
    event: threading.Event  # set once the table replicates again (or the reload failed)
    done: threading.Event = field(default_factory=threading.Event)  # the load ended
    plan: TablePlan | None = None
    error: BaseException | None = None
    covered: _Covered = field(default_factory=_Covered)


class Reloads:
    """The reloads of one :class:`~replikit.pipeline.cdc.Replicator` (driven from its
    applying thread by :meth:`service`; :meth:`request` may be called from any thread)."""

    def __init__(self, replicator: Replicator, loader: Loader | None) -> None:
        self._rep = replicator
        self.loader = loader
        self._lock = threading.Lock()
        self._requests: dict[TableId, threading.Event] = {}
        self._running: dict[TableId, _Running] = {}
        self._cache: ChangeCache | None = None
        self._polled = time.monotonic()

    @property
    def active(self) -> bool:
        """Whether a table's changes are being held for a reload."""
        return bool(self._running)

    def request(self, table: TableId) -> threading.Event:
        """Ask for ``table`` to be reloaded; the event is set once it replicates again (or
        the reload failed: the table is then suspended with the error)."""
        with self._lock:
            return self._requests.setdefault(table, threading.Event())

    def hold(self, batch: list[Transaction]) -> None:
        """Hold the changes of the tables being reloaded (before the batch is applied)."""
        cache, running = self._cache, self._running
        if cache is None or not running:
            return
        for tx in batch:
            on_disk = spilled(tx)
            for piece in on_disk.batches(ADD_PIECE) if on_disk is not None else (tx.changes,):
                held = [c for c in piece if c.table in running]
                if not held:
                    continue
                cache.add(held)
                for table, n in Counter(c.table for c in held).items():
                    running[table].covered.held(tx.position, n)

    def service(self) -> None:
        """Start what was requested, finish what loaded (between two batches)."""
        self._poll_control()
        with self._lock:
            requests, self._requests = self._requests, {}
        for table, event in requests.items():
            self._start(table, event)
        for running in [r for r in self._running.values() if r.done.is_set()]:
            self._finish(running)

    def close(self) -> None:
        """Drop the held changes (an unfinished reload stays suspended: reload it again)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # -- steps --------------------------------------------------------------------------------
    def _poll_control(self) -> None:
        rep = self._rep
        now = time.monotonic()
        if rep.control is None or self.loader is None or now - self._polled < CONTROL_POLL_SECONDS:
            return
        self._polled = now
        rows = {r.table: r for r in rep.control.suspended(rep.task)}
        for table in rep.suspended:
            row = rows.get(str(table))
            if table in self._running:
                continue
            if row is None or row.state == "reload-requested":
                log.info("table %s: reload requested from outside the task", table)
                self.request(table)

    def _start(self, table: TableId, event: threading.Event) -> None:
        rep = self._rep
        loader = self.loader
        if table in self._running or loader is None or table not in rep.plans_by_source:
            event.set()
            return
        if self._cache is None:
            self._cache = ChangeCache()
        self._cache.hold(table)
        rep.hold_back(table, "reloading")
        name = str(table)
        if rep.control is not None:  # before the load replaces the table: a crash finds it
            rep.control.suspend(reloading(rep.task, name))
        rep.statistics.reset_table(name)
        running = _Running(table, event)
        self._running[table] = running

        def load() -> None:
            try:
                running.plan = loader(table, running.covered.loaded_at)
            except BaseException as exc:
                running.error = exc
            finally:
                running.done.set()

        log.info("table %s: reloading while CDC goes on (its changes are held)", name)
        # in the task's context: its log fields, and its wait_timeout for the snapshot's
        # wait on open source transactions (a bare thread would wait as long as they last)
        thread = threading.Thread(target=in_context(load), name=f"replikit-reload-{name}",
                                  daemon=True)  # fmt: skip
        thread.start()

    def _finish(self, running: _Running) -> None:
        rep = self._rep
        table, name = running.table, str(running.table)
        del self._running[table]
        event = running.event
        assert self._cache is not None
        if running.error is not None or running.plan is None:
            for _ in self._cache.release(table):  # held changes are useless now
                pass
            reason = (
                f"table {name} suspended: its reload failed: {running.error}. Fix the cause "
                f"and reload it again: replikit reload SRC DST --table {name}"
            )
            rep.suspend(table, reason)
            event.set()
            return
        covered = running.covered
        rep.replace_plan(table, running.plan)
        rep.release(table)
        # the held changes the load holds come first (the cache keeps their order)
        rep.apply_held(itertools.islice(self._cache.release(table), covered.count, None))
        failpoint("cdc.reload-applied")
        if covered.at is not None:
            rep.skip_until(table, covered.at)
        if rep.control is not None:
            rep.control.resume(rep.task, name)
        rep.statistics.set_state(name, TableState.REPLICATING)
        failpoint("cdc.reloaded")
        log.info("table %s: reloaded; replicating again", name)
        event.set()

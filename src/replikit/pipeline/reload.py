"""Reloading one suspended table while CDC goes on for the others.

The handoff is the first load's (DMS "cached changes"): from the batch the reload starts at,
the table's changes are *held* in a :class:`~replikit.pipeline.cache.ChangeCache` instead of
applied; then a full load of the table reads it (at or after that point) in a thread of its
own while the stream keeps applying the other tables; when the load is done the held changes
are applied (idempotently: what the load already saw converges) and the table replicates again.
Nothing is lost in between: every change committed after the read started is held.

The table stays in ``replikit_suspended_tables`` (state ``reloading``) until the handoff is
complete, so a crash in between leaves it suspended, to be reloaded again. A reload can be asked
for in the process (``Task.reload``) or from outside (``replikit reload``): a running task looks
at its suspended tables' rows every few seconds, and a row set to ``reload-requested`` (or
deleted by an offline reload, which the running task cannot have seen) starts a reload here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from replikit.changes import Transaction
from replikit.pipeline.cache import ChangeCache
from replikit.pipeline.control import SuspendedTable
from replikit.pipeline.stats import TableState
from replikit.schema.convert import TablePlan
from replikit.schema.model import TableId

if TYPE_CHECKING:
    from replikit.pipeline.cdc import Replicator

__all__ = ["CONTROL_POLL_SECONDS", "Loader", "Reloads"]

log = logging.getLogger(__name__)

#: how often a running task looks at its suspended tables' control rows
CONTROL_POLL_SECONDS = 5.0
#: loads one source table into the target (replacing what it holds) and returns its plan
Loader = Callable[[TableId], TablePlan]


@dataclass(eq=False)
class _Running:
    table: TableId
    event: threading.Event  # set once the table replicates again (or the reload failed)
    done: threading.Event = field(default_factory=threading.Event)  # the load ended
    plan: TablePlan | None = None
    error: BaseException | None = None


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
        if self._cache is not None and self._running:
            for tx in batch:
                self._cache.add(tx)

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
        if rep.control is not None:
            rep.control.suspend(
                SuspendedTable(task=rep.task, table=name, state="reloading", reason="reloading")
            )
        rep.statistics.reset_table(name)
        running = _Running(table, event)
        self._running[table] = running

        def load() -> None:
            try:
                running.plan = loader(table)
            except BaseException as exc:
                running.error = exc
            finally:
                running.done.set()

        log.info("table %s: reloading while CDC goes on (its changes are held)", name)
        threading.Thread(target=load, name=f"replikit-reload-{name}", daemon=True).start()

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
        rep.replace_plan(table, running.plan)
        rep.release(table)
        rep.apply_held(self._cache.release(table))
        if rep.control is not None:
            rep.control.resume(rep.task, name)
        rep.statistics.set_state(name, TableState.REPLICATING)
        log.info("table %s: reloaded; replicating again", name)
        event.set()

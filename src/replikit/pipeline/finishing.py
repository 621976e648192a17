"""A loaded table's indexes and keys, built while the other tables still load.

Without this, a full load builds every index after its last unit: a table loaded early waits,
and its indexes are built in the same burst as the last table's. :class:`EarlyFinish` takes each
table as its last unit is written and has the writer build that table's indexes and keys
(:meth:`~replikit.pipeline.contracts.SupportsEarlyFinish.finish_loaded`, each build
committed) in a thread of its own, on the CPU the loading units leave free. Foreign keys,
CHECKs and identity restarts still wait for the writer's ``finish`` after the whole load: a
foreign key is checked against both tables' rows, and its lock would stop the referenced
table's other builds. ``finish`` finds what was built here in the target's catalog and builds
nothing twice, as it does for a resumed load.
"""

from __future__ import annotations

import logging
import queue
import threading

from replikit._failpoints import failpoint
from replikit.errors import Error, TableDdlError
from replikit.pipeline.contracts import SupportsEarlyFinish
from replikit.schema.convert import TablePlan

__all__ = ["EarlyFinish"]

log = logging.getLogger("replikit.pipeline")


class EarlyFinish:
    """Builds each loaded table's indexes and keys in one thread, in the order tables end.

    ``stop`` set (the load's stop request): no further build starts. :meth:`close` waits for
    the thread and returns the tables whose indexes or keys failed.
    """

    def __init__(self, writer: SupportsEarlyFinish, stop: threading.Event) -> None:
        self._writer = writer
        self._stop = stop
        self._todo: queue.SimpleQueue[TablePlan | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._errors: dict[str, BaseException] = {}  # target table -> cause
        self._crash: BaseException | None = None

    def table_loaded(self, plan: TablePlan) -> None:
        """Queue ``plan``'s table, whose rows are all loaded (called by one thread)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="replikit-early-finish", daemon=True
            )
            self._thread.start()
        self._todo.put(plan)

    def close(self) -> TableDdlError | None:
        """Wait for the builds queued; the tables that failed, or ``None``. A bug in the
        thread is raised here."""
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()
            self._thread = None
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash
        if not self._errors:
            return None
        return TableDdlError("indexes and keys built during the load failed", self._errors)

    def _run(self) -> None:
        end = False
        while not end:
            plans = [p] if (p := self._todo.get()) is not None else []
            end = p is None
            while not end:  # the tables ended meanwhile build together (sessions shared)
                try:
                    more = self._todo.get_nowait()
                except queue.Empty:
                    break
                end = more is None
                plans += [more] if more is not None else []
            if plans and not self._stop.is_set() and self._crash is None:
                self._finish(plans)

    def _finish(self, plans: list[TablePlan]) -> None:
        names = ", ".join(str(p.target_id) for p in plans)
        try:
            self._writer.finish_loaded(plans, stop=self._stop)
        except TableDdlError as exc:
            self._errors.update(exc.table_errors)
        except Error as exc:  # e.g. a lost connection: the finish after the load retries
            log.warning(
                "%s: indexes and keys not built during the load (%s); they are built after it",
                names,
                exc,
            )
        except BaseException as exc:  # a bug: handed to the load's thread
            self._crash = exc
        else:
            log.info("%s: indexes and keys built while the load goes on", names)
        failpoint("full-load.table-indexed")  # built or refused

"""``data_errors="skip-row"`` during a full load: a row the target refuses is set aside in
``replikit_apply_exceptions`` and the load goes on.

Full-load writers write many rows per statement (``COPY``, multi-row ``INSERT``, Arrow), and a
refused row fails its whole statement, often its whole transaction. Under ``skip-row`` a unit is
therefore written one source batch per writer call (one target transaction each). A batch the
target refuses was rolled back whole, so it is split and each part written again, down to the
refused rows alone: around the row the error names (the rows before it, that row alone, the
rows after it: about three extra calls per bad row), or in halves when the error names no row
of the batch (about ``2 * log2(batch)`` calls per bad row), never row by row. A row is set
aside only when written alone it is refused. Each refused row is recorded (table, key, column,
error) before the rest of its batch commits; after ``escalation_count`` rows of one table the
unit fails with a :class:`~replikit.DataError`, which suspends the table (a
``full-load-and-cdc`` task) or puts it in error (a ``full-load`` task), as ``suspend-table``
does at once.

Only errors that name a row (:class:`~replikit.DataError`) are split; a lost connection or a
refused table is raised as it is. The other policies load as before: a unit in one call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from replikit.errors import DataError
from replikit.pipeline.contracts import Batch, Writer
from replikit.pipeline.control import ApplyException, ControlStore
from replikit.pipeline.policy import ErrorPolicy
from replikit.pipeline.stats import Statistics
from replikit.schema.convert import TablePlan

__all__ = ["RowSkipper"]

log = logging.getLogger("replikit.load")


class RowSkipper:
    """Loads units under ``skip-row``; shared by the load's threads (one per pipeline run).

    Args:
        writer: the full-load writer.
        policy: ``escalation_count``.
        control: where set-aside rows are recorded (``None``: statistics and log only).
        statistics: the per-table counters (``exceptions``, ``full_load_rows``).
        task: the task id of the records.
        stopped: raises when the load is being stopped (checked between writer calls).
    """

    def __init__(
        self,
        writer: Writer,
        policy: ErrorPolicy,
        control: ControlStore | None,
        statistics: Statistics,
        task: str,
        stopped: Callable[[], None],
    ) -> None:
        self.writer = writer
        self.policy = policy
        self.control = control
        self.statistics = statistics
        self.task = task
        self._stopped = stopped
        self._lock = threading.Lock()
        self._skipped: dict[str, int] = {}

    def load(self, plan: TablePlan, batches: Iterable[Batch]) -> int:
        """Write ``batches`` (one unit of ``plan``), setting refused rows aside; the rows
        written."""
        total = 0
        for batch in batches:
            self._stopped()
            written = self._write(plan, batch)
            self.statistics.rows(str(plan.source.id), written)
            total += written
        return total

    def _write(self, plan: TablePlan, batch: Batch) -> int:
        if not batch.rows:
            return 0
        try:
            return self.writer.load(plan, [batch])
        except DataError as exc:
            if len(batch.rows) == 1:
                self._skip(plan, batch, exc)
                return 0
            named = _index_of(plan, batch, exc.key)
        self._stopped()
        rows = batch.rows
        if named is not None:  # the row the target named, alone (written again: it decides)
            cuts = [rows[:named], rows[named : named + 1], rows[named + 1 :]]
        else:
            cuts = [rows[: len(rows) // 2], rows[len(rows) // 2 :]]
        return sum(self._write(plan, replace(batch, rows=part)) for part in cuts)

    def _skip(self, plan: TablePlan, batch: Batch, exc: DataError) -> None:
        name = str(plan.source.id)
        record = ApplyException(
            task=self.task, table=name, kind="data-error", op="load",
            key=exc.key or _key(plan, batch), column=exc.column, error=str(exc),
        )  # fmt: skip
        if self.control is not None:
            self.control.record([record])
        self.statistics.exception(name)
        log.warning("table %s: row set aside during the full load (skip-row): %s", name, exc)
        with self._lock:
            count = self._skipped[name] = self._skipped.get(name, 0) + 1
        limit = self.policy.escalation_count
        if limit is not None and count >= limit:
            raise DataError(
                f"{count} rows set aside during the full load (skip-row, escalation_count="
                f"{limit}); the last: {exc}",
                table=name,
            )


def _index_of(plan: TablePlan, batch: Batch, key: Mapping[str, Any] | None) -> int | None:
    """The index in ``batch`` of the row whose key is ``key`` (target names, as a writer's
    error names it; values compared as they are or as text), else ``None``."""
    if not key:
        return None
    source_of = {c.name: c.source.name for c in plan.columns}
    try:
        at = [(batch.columns.index(source_of.get(k, k)), v) for k, v in key.items()]
    except ValueError:
        return None
    for i, row in enumerate(batch.rows):
        if all(row[j] == v or str(row[j]) == str(v) for j, v in at):
            return i
    return None


def _key(plan: TablePlan, batch: Batch) -> dict[str, Any] | None:
    """The key of ``batch``'s one row, by target column name (``None``: not in the batch)."""
    source_of = {c.name: c.source.name for c in plan.columns}
    row = batch.rows[0]
    key = {}
    for column in plan.target_schema.key:
        source = source_of.get(column, column)
        if source not in batch.columns:
            return None
        key[column] = row[batch.columns.index(source)]
    return key or None

"""The ``apply_conflicts`` policy of a :class:`~replikit.pipeline.cdc.Replicator`: what a
change writer's conflicts (:mod:`replikit.pipeline.conflicts`) become.

``log``: each conflict is a row of ``replikit_apply_exceptions`` (kind ``conflict``), counted in
the table's ``conflicts`` and logged; the batch is applied as ``converge`` would. ``stop``: the
same record, then :class:`ConflictError`, so the writer rolls the batch back; the replicator
suspends the tables in conflict (or stops the task under ``data_errors="stop-task"``).

Records are committed before the data they describe, as the data-error policies do: a batch
with conflicts not recorded yet is rolled back (:class:`Unrecorded`), the records written in
their own transaction, and the batch applied again (it finds the same conflicts, recorded now).
A crash in between finds them again, and each record's fingerprint keeps it one row. The extra
round costs only batches that hold new conflicts, and it works where the control tables share
the writer's connection (SQLite).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from replikit.errors import ConfigError, Error
from replikit.pipeline.conflicts import Conflict, ConflictError, OnConflicts
from replikit.pipeline.control import ApplyException, ControlStore
from replikit.pipeline.policy import ErrorPolicy
from replikit.pipeline.stats import Statistics
from replikit.schema.model import TableId

__all__ = ["ConflictHandler", "Unrecorded", "refuse_unreported"]

log = logging.getLogger("replikit.apply")


class Unrecorded(Error):
    """A batch holds conflicts not recorded yet: the writer rolled it back; record them
    (:meth:`ConflictHandler.record`) and apply the batch again."""


def refuse_unreported(policy: ErrorPolicy, writer: object) -> None:
    """Refuse ``log`` and ``stop`` for a change writer that cannot tell conflicts (before any
    DDL or data)."""
    if policy.apply_conflicts != "converge" and not getattr(writer, "reports_conflicts", False):
        raise ConfigError(
            f"apply_conflicts={policy.apply_conflicts!r}: {type(writer).__name__} cannot tell "
            "conflicts (it applies idempotently without looking at the rows first); use "
            "apply_conflicts='converge' with this target",
            setting="error_policy",
        )


class ConflictHandler:
    """Records and counts conflicts once per batch, however often the batch is tried.

    Args:
        task: the task id.
        policy: ``apply_conflicts`` is ``log`` or ``stop``.
        control: where records go (``None``: the statistics and the log only).
        statistics: the per-table counters.
        source_name: the source table name of a target table.
    """

    def __init__(
        self,
        task: str,
        policy: ErrorPolicy,
        control: ControlStore | None,
        statistics: Statistics,
        source_name: Callable[[TableId], str],
    ) -> None:
        self.task = task
        self.policy = policy
        self.control = control
        self.statistics = statistics
        self.source_name = source_name
        self._seen: set[str] = set()
        self._pending: list[ApplyException] = []

    def batch(self) -> OnConflicts:
        """The callback for one batch's applies (a retry of the batch counts nothing twice)."""
        self._seen = set()
        self._pending = []
        return self

    def __call__(self, conflicts: Sequence[Conflict]) -> None:
        records = [self._record(c) for c in conflicts]
        new = [r for r in records if r.fingerprint not in self._seen]
        if new:
            self._pending = new
            raise Unrecorded(f"{len(new)} apply conflicts to record first")
        if self.policy.apply_conflicts == "stop":
            raise ConflictError(conflicts)

    def record(self) -> None:
        """Record, count and log the conflicts the last :class:`Unrecorded` held."""
        new, self._pending = self._pending, []
        if self.control is not None:
            self.control.record(new)
        self._seen.update(r.fingerprint for r in new)
        for r in new:
            self.statistics.conflict(r.table)
            log.warning("table %s: %s", r.table, r.error)

    def _record(self, c: Conflict) -> ApplyException:
        return ApplyException(
            task=self.task, table=self.source_name(c.table), kind="conflict", op=c.op.value,
            key=dict(c.key), error=str(c),
            position=None if c.position is None else str(c.position),
        )  # fmt: skip

"""Waiting for a live CDC task to catch up with what validation read (DMS's
``ValidationQueryCdcDelaySeconds``, by position instead of by time).

A row that differs while a task replicates may only be in flight: its change is committed at
the source but not applied to the target yet. :class:`AppliedWait` closes that gap exactly:
:meth:`~AppliedWait.mark` asks the source where its change log is now (the position after
every change committed so far: PostgreSQL's WAL insert location, MySQL/MariaDB's binary log
end, SQLite's change-table high-water mark), and :meth:`~AppliedWait.wait` polls the task's
checkpoint in the target until its applied position is at or past that mark. Rows read from
the source before the mark and from the target after the wait then differ only when they
really differ (or changed again at the source since: the caller re-reads the source to tell).

The applied position moves past changes of other tables too: every change reader hands out
empty "heartbeat" transactions at the position it reached when it had nothing for the task's
tables (PostgreSQL every ``status_interval``, 10 s by default), so a mark taken on a busy
server is still reached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from replikit.endpoints.base import SupportsApply, SupportsCurrentPosition
from replikit.errors import Error, PositionLostError
from replikit.pipeline.contracts import CheckpointStore, SupportsClose
from replikit.positions import Position

if TYPE_CHECKING:
    from replikit.task import Task

__all__ = ["AppliedWait", "CaughtUpTimeout"]

log = logging.getLogger("replikit.validate")

POLL_SECONDS = 0.2


class CaughtUpTimeout(Error):
    """The task did not apply the source's changes up to a mark within the timeout."""


@dataclass
class AppliedWait:
    """Waits until task ``task_id``'s applied position passes a source position."""

    source: SupportsCurrentPosition
    store: CheckpointStore
    task_id: str
    timeout: float
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def of(cls, task: Task, timeout: float) -> AppliedWait | None:
        """The wait for ``task`` (its source and target, its id); ``None`` when the source
        cannot say its position, the target keeps no checkpoints, or the task has no
        CDC checkpoint in the target (nothing replicates it: there is nothing to wait for)."""
        source, target = task.source, task.target
        if not isinstance(source, SupportsCurrentPosition) or not isinstance(
            target, SupportsApply
        ):
            return None
        store = target.checkpoint_store()
        wait = cls(source, store, task.task_id, timeout)
        try:
            checkpoint = store.read_checkpoint(task.task_id)
        except Error as exc:
            log.info("no checkpoint of task %s readable in the target: %s", task.task_id, exc)
            checkpoint = None
        if checkpoint is None or checkpoint.resume is None:
            log.info(
                "task %s has no CDC checkpoint in %s: differing rows are re-checked after a "
                "delay, not by position",
                task.task_id,
                task.target.url,
            )
            wait.close()
            return None
        return wait

    def mark(self) -> Position:
        """The source's position now."""
        return self.source.current_position()

    def applied(self) -> Position | None:
        """The task's applied position (its start before it applied anything)."""
        checkpoint = self.store.read_checkpoint(self.task_id)
        return None if checkpoint is None else checkpoint.resume

    def wait(self, mark: Position) -> Position:
        """Block until the applied position is at or past ``mark``; return it.

        Raises :class:`CaughtUpTimeout` after ``timeout`` seconds, naming both positions.
        """
        deadline = time.monotonic() + self.timeout
        applied = None
        while True:
            applied = self.applied()
            if applied is not None and _reached(applied, mark):
                return applied
            if time.monotonic() >= deadline:
                raise CaughtUpTimeout(
                    f"task {self.task_id} did not apply the source's changes up to {mark} "
                    f"within {self.timeout:g} s (applied: {applied or 'nothing yet'}); is it "
                    "running? Validate again once it has caught up, or allow more time "
                    "(recheck_timeout)"
                )
            time.sleep(POLL_SECONDS)

    def close(self) -> None:
        if not self._closed and isinstance(self.store, SupportsClose):
            self.store.close()
        self._closed = True


def _reached(applied: Position, mark: Position) -> bool:
    """``applied >= mark``; positions of different kinds never compare (a task whose
    checkpoint is of another source): that is a configuration error, said at once."""
    if type(applied) is not type(mark):
        raise CaughtUpTimeout(
            f"the task's applied position {applied} is not of the source's kind ({mark}): "
            "the checkpoint belongs to another source; pass the task_id of the task that "
            "replicates this source"
        )
    try:
        return not applied < mark
    except PositionLostError:  # of two servers (a failover): not until the task moved on
        return False

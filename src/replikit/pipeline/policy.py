"""Error policies: what a task does with a bad row, an apply conflict, a lost connection.

>>> from replikit import ErrorPolicy
>>> ErrorPolicy().data_errors
'suspend-table'
>>> ErrorPolicy(data_errors="skip-row", escalation_count=10).escalation_count
10

Errors are classified by cause, not by where they surfaced (:func:`recoverable`): each family
translates its driver's errors at one boundary, so a connection lost in the middle of a row's
``INSERT`` is a :class:`~replikit.ConnectError`, never a bad row. Recoverable errors are retried
with exponential backoff and jitter (:class:`Backoff`) up to ``retry_timeout``; permanent ones
(login refused, privilege missing, position lost, schema refused) fail at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from replikit.errors import ConfigError, Error, StoppedError, TaskError

__all__ = [
    "Backoff",
    "ConflictPolicy",
    "DataErrorPolicy",
    "ErrorPolicy",
    "SchemaChangePolicy",
    "recoverable",
]

DataErrorPolicy = Literal["stop-task", "suspend-table", "skip-row"]
ConflictPolicy = Literal["converge", "log", "stop"]
SchemaChangePolicy = Literal["apply", "stop-table", "ignore"]


def _one_of(name: str, value: object, kind: object) -> None:
    allowed = get_args(kind)
    if value not in allowed:
        raise ConfigError(
            f"{name} must be one of {', '.join(allowed)}; got {value!r}", setting="error_policy"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorPolicy:
    """How a task handles errors (DMS ``ErrorBehavior``). Defaults never hide a lost row.

    Attributes:
        data_errors: a value that cannot be converted or written (full load or CDC):
            ``suspend-table`` (default: the table stops, the others go on, the table is in
            ``replikit_suspended_tables`` until reloaded), ``stop-task`` (the task stops), or
            ``skip-row`` (the row goes to ``replikit_apply_exceptions``, counted, and the table
            goes on; after ``escalation_count`` such rows in a table it is suspended).
        escalation_count: skipped rows in one table before it is suspended (``None``: never).
        apply_conflicts: a CDC change that finds the row in a state it did not expect (an
            insert of an existing key, an update or delete of a missing row): ``converge``
            (default: the idempotent upsert/delete makes the target match the source, and
            nothing looks for conflicts), ``log`` (apply as ``converge``, and record each
            conflict in ``replikit_apply_exceptions`` with kind ``conflict``, counted in the
            table's ``conflicts``), or ``stop`` (record it, apply nothing of the batch to the
            table and suspend it; with ``data_errors="stop-task"`` the task stops). Changes
            cached during a full load are always converged (they may overlap its snapshot).
            Targets that cannot tell conflicts (files, MongoDB) refuse ``log`` and ``stop``.
        retry_timeout: seconds a task keeps retrying a recoverable error (a lost connection,
            a server restart, a deadlock) before it fails; ``0`` never retries.
        retry_delay: the first wait between retries, doubled after each (with jitter).
        retry_max_delay: the longest wait between two retries.
    """

    data_errors: DataErrorPolicy = "suspend-table"
    escalation_count: int | None = 100
    apply_conflicts: ConflictPolicy = "converge"
    retry_timeout: float = 300.0
    retry_delay: float = 0.5
    retry_max_delay: float = 30.0

    def __post_init__(self) -> None:
        _one_of("data_errors", self.data_errors, DataErrorPolicy)
        _one_of("apply_conflicts", self.apply_conflicts, ConflictPolicy)
        if self.escalation_count is not None and self.escalation_count < 1:
            raise ConfigError(
                f"escalation_count must be at least 1 (or None); got {self.escalation_count}",
                setting="error_policy",
            )
        for name in ("retry_timeout", "retry_delay", "retry_max_delay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative", setting="error_policy")


def recoverable(exc: BaseException) -> bool:
    """Whether running the task again from its checkpoint may succeed: a replikit error whose
    class is ``retryable`` (found through the causes of a wrapped one), or a task error all of
    whose tables failed that way. A stop, a bug or a permanent error is not."""
    if isinstance(exc, StoppedError) or not isinstance(exc, Exception):
        return False
    if isinstance(exc, TaskError):
        errors = list(exc.table_errors.values())
        return bool(errors) and all(recoverable(e) for e in errors)
    for err in _chain(exc):
        if isinstance(err, Error):
            return err.retryable
        if isinstance(err, ConnectionError | TimeoutError):
            return True
    return False


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class Backoff:
    """Waits between retries: exponential with full jitter, within ``policy.retry_timeout``
    counted from the first failure since the last :meth:`reset` (progress resets it).

    Args:
        policy: the delays and the time limit.
        wait: sleeps for a number of seconds and returns ``True`` when the wait was cut short
            (the task is stopping); ``time.sleep`` by default.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        policy: ErrorPolicy,
        *,
        wait: Callable[[float], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._wait = wait or _sleep
        self._clock = clock
        self._since: float | None = None
        self._attempt = 0
        self.retries = 0

    def reset(self) -> None:
        """The work made progress: the next failure starts a new retry window."""
        self._since = None
        self._attempt = 0

    def next_delay(self) -> float | None:
        """The wait before the next retry, or ``None`` when the retry window is spent."""
        now = self._clock()
        if self._since is None:
            self._since = now
        left = self.policy.retry_timeout - (now - self._since)
        if left <= 0:
            return None
        ceiling = min(self.policy.retry_max_delay, self.policy.retry_delay * 2**self._attempt)
        self._attempt += 1
        return min(left, random.uniform(ceiling / 2, ceiling))

    def wait(self, delay: float) -> bool:
        """Wait ``delay`` seconds; ``True`` when cut short (stop)."""
        self.retries += 1
        return self._wait(delay)

    @property
    def elapsed(self) -> float:
        """Seconds since the first failure of the current window."""
        return 0.0 if self._since is None else self._clock() - self._since

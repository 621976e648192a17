"""Per-table statistics and table states (DMS vocabulary)."""

from __future__ import annotations

import bisect
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from replikit import display
from replikit.schema.report import ObjectPlan, plural

__all__ = [
    "LAG_BUCKETS",
    "CdcStats",
    "LagHistogram",
    "Statistics",
    "TableState",
    "TableStats",
    "note_values",
]

# table events (start, end, state changes) and CDC batches; "-v" on the command line shows them
log = logging.getLogger("replikit.pipeline")


class TableState(enum.StrEnum):
    """Where a table is in a task (the names DMS shows)."""

    BEFORE_LOAD = "Before load"
    FULL_LOAD = "Full load"
    COMPLETED = "Table completed"
    REPLICATING = "Replicating"
    ERROR = "Table error"
    SUSPENDED = "Table suspended"
    CANCELLED = "Table cancelled"


@dataclass(slots=True)
class TableStats:
    """Counters and state of one table in a task."""

    table: str
    target: str
    state: TableState = TableState.BEFORE_LOAD
    full_load_rows: int = 0
    estimated_rows: int | None = None
    units_total: int = 0
    units_done: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    truncates: int = 0
    ddls: int = 0
    #: errors counted against the table (it went into error, or a row was refused)
    errors: int = 0
    #: rows or changes an error policy set aside (``replikit_apply_exceptions``)
    exceptions: int = 0
    #: CDC apply conflicts found (``apply_conflicts="log"`` records them)
    conflicts: int = 0
    start: datetime | None = None
    end: datetime | None = None
    error: str | None = None
    #: what was left out although the table loaded (e.g. a foreign key to a failed table)
    warnings: list[str] = field(default_factory=list)
    #: the last validation (DMS ValidationState and ValidationFailed/Pending/Suspended
    #: records): ``None`` until validated, else a :class:`~replikit.ValidationState` value
    validation_state: str | None = None
    validation_failed: int = 0
    validation_pending: int = 0
    validation_suspended: int = 0
    #: validations recorded (a continuous validation-only task counts its rounds)
    validation_runs: int = 0
    _t0: float = field(default=0.0, repr=False)
    _t1: float = field(default=0.0, repr=False)

    @property
    def seconds(self) -> float:
        """Wall time spent loading this table so far."""
        if not self._t0:
            return 0.0
        return (self._t1 or time.perf_counter()) - self._t0

    @property
    def rows_per_second(self) -> float:
        """Average load rate."""
        s = self.seconds
        return self.full_load_rows / s if s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (times in ISO 8601)."""
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["state"] = self.state.value
        d["start"] = self.start.isoformat() if self.start else None
        d["end"] = self.end.isoformat() if self.end else None
        d["seconds"] = round(self.seconds, 3)
        d["rows_per_second"] = round(self.rows_per_second, 1)
        return d

    def __repr__(self) -> str:
        return f"<TableStats {display.table_stats_summary(self)}>"

    def _repr_html_(self) -> str:
        return display.html_table_stats(self)


#: upper bounds (seconds) of the lag histogram's buckets (the last one, +Inf, is implied)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
               300.0, 900.0, 3600.0)  # fmt: skip
_LAG_HISTORY_SECONDS = 3600.0  # the status page charts the last hour
_LAG_STEP = 10.0  # ... one point (the highest lag) per 10 s


class LagHistogram:
    """Source-commit -> target-commit lag of every applied transaction since the run began:
    cumulative bucket counts (:data:`LAG_BUCKETS`), sum and count (Prometheus histogram), and
    the highest lag per 10 s over the last hour (the status page's chart)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LAG_BUCKETS) + 1)  # per bucket, not cumulative; last: +Inf
        self.sum = 0.0
        self.count = 0
        self.recent: deque[tuple[float, float]] = deque()  # (unix time of the step, max lag)

    def observe(self, values: Sequence[float], now: float) -> None:
        """Add the lags of one batch, applied at unix time ``now``."""
        if not values:
            return
        # per bucket, from the sorted values (a batch holds thousands: one bisect per bucket)
        ordered = sorted(values)
        below = 0
        for i, bound in enumerate(LAG_BUCKETS):
            upto = bisect.bisect_right(ordered, bound, below)
            self.counts[i] += upto - below
            below = upto
        self.counts[-1] += len(ordered) - below
        self.sum += sum(ordered)
        self.count += len(ordered)
        step = now - now % _LAG_STEP
        if self.recent and self.recent[-1][0] == step:
            self.recent[-1] = (step, max(self.recent[-1][1], *values))
        else:
            self.recent.append((step, max(values)))
        while self.recent and self.recent[0][0] < now - _LAG_HISTORY_SECONDS:
            self.recent.popleft()

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(upper bound as text, count of values <= it), ..., ("+Inf", count)]``."""
        out, total = [], 0
        for bound, n in zip((*map(str, LAG_BUCKETS), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class CdcStats:
    """Task-wide CDC counters and the latency of applied transactions.

    Latency is source commit -> target commit, over the most recent ``window`` transactions
    (percentiles); :attr:`lag` keeps all of them as a histogram and the last hour per 10 s.
    ``queued_transactions`` / ``queued_bytes`` are the transactions read ahead of the apply
    (as of the last batch taken), ``cache_changes`` the changes held in the cache during a
    full load, ``retries`` the retried operations by kind.
    """

    def __init__(self, window: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._latency: deque[float] = deque(maxlen=window)
        self.transactions = 0
        self.changes = 0
        self.batches = 0
        self.position: str | None = None
        self.source_commit_ts: datetime | None = None
        self.cached_changes = 0
        self.cache_changes = 0
        self.queued_transactions = 0
        self.queued_bytes = 0
        self.lag = LagHistogram()
        self.retries: dict[str, int] = {}
        self.bytes = 0  # estimated size of the applied transactions
        self.read_position: str | None = None  # the last transaction read from the source
        self.read_latency: float | None = None  # ... its source commit -> read, in seconds
        self.apply_latency: float | None = None  # the last batch's highest latency

    def read(self, position: str, latency: float | None) -> None:
        """The reader took the transaction at ``position`` (``latency`` after its commit)."""
        self.read_position, self.read_latency = position, latency

    def applied(self, transactions: int, changes: int, latencies: list[float], pos: str) -> None:
        """Record one committed target batch."""
        with self._lock:
            self.transactions += transactions
            self.changes += changes
            self.batches += 1
            self._latency.extend(latencies)
            self.lag.observe(latencies, time.time())
            if latencies:
                self.apply_latency = max(latencies)
            self.position = pos
        log.debug(
            "CDC batch applied: %d transaction(s), %d change(s), position %s, latency %s",
            transactions,
            changes,
            pos,
            f"{max(latencies):.3f} s" if latencies else "n/a",
        )

    def queued(self, transactions: int, size: int) -> None:
        """The read-ahead queue now holds ``transactions`` of about ``size`` bytes."""
        self.queued_transactions, self.queued_bytes = transactions, size

    def retried(self, kind: str) -> None:
        """Count one retry of ``kind`` (e.g. ``"connect"``, ``"apply"``)."""
        with self._lock:
            self.retries[kind] = self.retries.get(kind, 0) + 1

    def lag_points(self) -> list[tuple[float, float]]:
        """``(unix time, highest lag in seconds)`` per 10 s over the last hour."""
        with self._lock:
            return list(self.lag.recent)

    def percentile(self, q: float) -> float | None:
        """Latency percentile in seconds (``q`` in 0..100); None before any sample."""
        with self._lock:
            data = sorted(self._latency)
        if not data:
            return None
        index = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
        return data[index]

    @property
    def latency_p50(self) -> float | None:
        """Median source-commit -> target-commit latency in seconds."""
        return self.percentile(50)

    @property
    def latency_p99(self) -> float | None:
        """99th percentile source-commit -> target-commit latency in seconds."""
        return self.percentile(99)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        p50, p99 = self.latency_p50, self.latency_p99
        return {
            "transactions": self.transactions,
            "changes": self.changes,
            "batches": self.batches,
            "cached_changes": self.cached_changes,
            "position": self.position,
            "latency_p50_ms": None if p50 is None else round(p50 * 1000, 2),
            "latency_p99_ms": None if p99 is None else round(p99 * 1000, 2),
        }

    def __repr__(self) -> str:
        return f"<CdcStats {display.cdc_summary(self)}>"

    def _repr_html_(self) -> str:
        return display.html_cdc(self)

    def __str__(self) -> str:
        p50, p99 = self.latency_p50, self.latency_p99
        lat = (
            f", latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
            if p50 is not None and p99 is not None
            else ""
        )
        return (
            f"CDC: {self.transactions:,} transactions, {self.changes:,} changes applied "
            f"in {self.batches:,} target commits{lat}; position {self.position}"
        )


class Statistics:
    """Thread-safe statistics of a task: one :class:`TableStats` per table, plus :attr:`cdc`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, TableStats] = {}
        self.cdc = CdcStats()
        #: schema objects the writer tried to create (checks, views): (object, error or None)
        self.objects: list[tuple[ObjectPlan, str | None]] = []
        #: the last error a retry recovered from, or that stopped the task
        self.last_error: str | None = None
        #: what :meth:`note` last noted under each (table, key)
        self._noted: dict[tuple[str, str], str] = {}

    def object_created(self, obj: ObjectPlan, error: str | None) -> None:
        """Record a schema object the target created (``error`` None) or refused."""
        with self._lock:
            self.objects.append((obj, error))

    def add(self, table: str, target: str, estimated_rows: int | None) -> TableStats:
        """Register a table (idempotent)."""
        with self._lock:
            st = self._tables.get(table)
            if st is None:
                st = self._tables[table] = TableStats(table, target, estimated_rows=estimated_rows)
            return st

    def reset(self) -> None:
        """Forget every table and the CDC counters (a task starts each run from zero)."""
        with self._lock:
            self._tables.clear()
            self._noted.clear()
            self.cdc = CdcStats()
            self.objects = []
            self.last_error = None

    @property
    def retries(self) -> int:
        """Recoverable errors retried so far (lost connections, restarts, deadlocks): the
        sum of ``cdc.retries`` over their kinds."""
        return sum(self.cdc.retries.values())

    def retried(self, error: BaseException, kind: str | None = None) -> None:
        """Count one retry after ``error`` under ``kind`` (default: from the error's class:
        ``connect``, ``transient``, ``table``; a change reader's reconnects are ``stream``)."""
        self.cdc.retried(kind or _retry_kind(error))
        with self._lock:
            self.last_error = str(error)

    def reset_table(self, table: str) -> None:
        """Make a table that failed for a recoverable cause ready to be loaded again."""
        with self._lock:
            st = self._tables.get(table)
            if st is None:
                return
            st.state = TableState.BEFORE_LOAD
            st.error = None
            st.full_load_rows = st.units_done = 0
            st.end = None
            st._t0 = st._t1 = 0.0

    def exception(self, table: str, n: int = 1) -> None:
        """Count ``n`` rows or changes of ``table`` an error policy set aside."""
        with self._lock:
            st = self._tables.get(table)
            if st is not None:
                st.exceptions += n
                st.errors += n

    def conflict(self, table: str, n: int = 1) -> None:
        """Count ``n`` CDC apply conflicts found in ``table``."""
        with self._lock:
            st = self._tables.get(table)
            if st is not None:
                st.conflicts += n

    def warn(self, table: str, message: str) -> None:
        """Note something left out of ``table`` that does not stop it."""
        with self._lock:
            self._tables[table].warnings.append(message)

    def note(self, table: str, key: str, message: str) -> None:
        """Note ``message`` among ``table``'s warnings in place of what was noted under
        ``key`` before (a count that grew); nothing for a table not registered."""
        with self._lock:
            st = self._tables.get(table)
            if st is None:
                return
            old = self._noted.get((table, key))
            self._noted[(table, key)] = message
            if old is not None and old in st.warnings:
                st.warnings[st.warnings.index(old)] = message
            elif message not in st.warnings:
                st.warnings.append(message)

    def __getitem__(self, table: str) -> TableStats:
        return self._tables[table]

    def __iter__(self) -> Iterator[TableStats]:
        return iter(list(self._tables.values()))

    def __len__(self) -> int:
        return len(self._tables)

    def started(self, table: str, units: int) -> None:
        """A table's load began."""
        with self._lock:
            st = self._tables[table]
            first = st.state is TableState.BEFORE_LOAD
            if first:
                st.state = TableState.FULL_LOAD
                st.start = datetime.now(UTC)
                st._t0 = time.perf_counter()
            st.units_total = units
        if first:
            estimate = f"~{st.estimated_rows:,}" if st.estimated_rows is not None else "unknown"
            log.info(
                "table %s: full load started (%d part(s), %s rows)", table, units, estimate,
                extra={"table": table},
            )  # fmt: skip

    def rows(self, table: str, n: int) -> None:
        """Count ``n`` more loaded rows."""
        with self._lock:
            self._tables[table].full_load_rows += n

    def unit_done(self, table: str) -> bool:
        """Count a finished unit; True when it was the table's last."""
        with self._lock:
            st = self._tables[table]
            st.units_done += 1
            return st.units_done >= st.units_total

    def finish(self, table: str, state: TableState, error: str | None = None) -> None:
        """Set a table's final state."""
        with self._lock:
            st = self._tables[table]
            if st.state in (TableState.ERROR, TableState.COMPLETED, TableState.SUSPENDED):
                return
            st.state = state
            st.error = error
            st.errors += state is TableState.ERROR
            st.end = datetime.now(UTC)
            st._t1 = time.perf_counter()
        _log_state(st)

    def validated(self, table: str, target: str, state: str, failed: int, pending: int = 0) -> None:
        """Record the validation of ``table``: its state and the rows that still differ
        (``failed``) or wait for a re-check (``pending``)."""
        with self._lock:
            st = self._tables.get(table)
            if st is None:
                st = self._tables[table] = TableStats(table, target)
            st.validation_state = state
            st.validation_failed = failed
            st.validation_pending = pending
            st.validation_runs += 1

    def count_changes(self, table: str, op: str, n: int = 1) -> None:
        """Count ``n`` applied changes of ``op`` (insert/update/delete/truncate/ddl)."""
        with self._lock:
            st = self._tables.get(table)
            if st is not None:
                attr = "ddls" if op == "ddl" else op + "s"
                setattr(st, attr, getattr(st, attr) + n)

    def count_error(self, table: str, n: int = 1) -> None:
        """Count ``n`` errors of ``table`` that did not (yet) stop it (e.g. refused rows)."""
        with self._lock:
            st = self._tables.get(table)
            if st is not None:
                st.errors += n

    def set_state(self, table: str, state: TableState, error: str | None = None) -> None:
        """Move a table to ``state`` (CDC: replicating, or an error that stops the table)."""
        with self._lock:
            st = self._tables.get(table)
            if st is None or (st.state is state and error is None):
                return
            st.errors += state in (TableState.ERROR, TableState.SUSPENDED) and st.state is not state
            st.state = state
            if error is not None:
                st.error = error
        _log_state(st)

    @property
    def total_rows(self) -> int:
        """Rows loaded over all tables."""
        return sum(t.full_load_rows for t in self)

    def by_state(self, state: TableState) -> list[TableStats]:
        """Tables in ``state``."""
        return [t for t in self if t.state is state]

    def as_dicts(self) -> list[dict[str, Any]]:
        """Every table's statistics as dicts."""
        return [t.as_dict() for t in self]

    def __str__(self) -> str:
        cdc = self.cdc.batches > 0
        width = min(max([len(t.table) for t in self] + [24]), _NAME_WIDTH)
        head = f"{'table':<{width}} {'state':<16} {'rows':>12} {'seconds':>9} {'rows/s':>12}"
        if cdc:
            head += f" {'inserts':>9} {'updates':>9} {'deletes':>9} {'ddls':>5}"
        lines = [head, "-" * len(head)]
        for t in self:
            line = (
                f"{_fit(t.table, width):<{width}} {t.state.value:<16} {t.full_load_rows:>12,} "
                f"{t.seconds:>9.2f} {t.rows_per_second:>12,.0f}"
            )
            if cdc:
                line += f" {t.inserts:>9,} {t.updates:>9,} {t.deletes:>9,} {t.ddls:>5,}"
            lines.append(line)
            if t.error:
                lines.append(f"    error: {t.error}")
            lines += [f"    note: {w}" for w in t.warnings]
        if cdc:
            lines.append(str(self.cdc))
        lines += _object_lines(self.objects)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Statistics {display.statistics_summary(self)}>"

    def _repr_html_(self) -> str:
        return display.html_statistics(self)


def _retry_kind(error: BaseException) -> str:
    from replikit.errors import ConnectError, TaskError, TransientError

    if isinstance(error, ConnectError):
        return "connect"
    if isinstance(error, TransientError):
        return "transient"
    return "table" if isinstance(error, TaskError) else "other"


def _object_lines(objects: Sequence[tuple[ObjectPlan, str | None]]) -> list[str]:
    if not objects:
        return []
    made: dict[str, int] = {}
    for obj, error in objects:
        made[obj.kind] = made.get(obj.kind, 0) + (error is None)
    counts = ", ".join(f"{n} {plural(kind)}" for kind, n in made.items())
    lines = [f"schema objects created: {counts}"]
    lines += [f"    not created: {obj.kind} {obj.name}: {error}" for obj, error in objects if error]
    return lines


_NAME_WIDTH = 60  # table names longer than this are shortened in the middle


def _log_state(st: TableStats) -> None:
    """Log a table's new state at INFO (a failed table is in the task's error already)."""
    if st.state is TableState.COMPLETED:
        log.info(
            "table %s: completed, %d rows in %.1f s (%.0f rows/s)",
            st.table,
            st.full_load_rows,
            st.seconds,
            st.rows_per_second,
            extra={"table": st.table},
        )
    else:
        why = f" ({st.error})" if st.error else ""
        log.info("table %s: %s%s", st.table, st.state, why, extra={"table": st.table})


def _fit(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters, keeping both ends (long names that differ
    only at the end stay distinguishable)."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return f"{name[: width - 1 - tail]}…{name[-tail:]}"


def note_values(statistics: Statistics, notes: Mapping[tuple[str, str, str], int]) -> None:
    """Note in each table's statistics how many values of a column a reader read otherwise
    than the source stores them (:class:`~replikit.pipeline.contracts.SupportsValueNotes`'s
    ``(table, column, what) -> count``): one line per column and kind, updated as the count
    grows, e.g. ``column d: 3 zero or invalid date(s) read as NULL (zero_dates='null')``."""
    for (table, column, what), n in sorted(notes.items()):
        if n > 0:
            statistics.note(table, f"{column}\x00{what}", f"column {column}: {n:,} {what}")

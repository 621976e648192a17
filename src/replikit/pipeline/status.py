"""The task's control tables about progress: ``replikit_status`` and ``replikit_history``.

They live in the target next to ``replikit_checkpoints`` (schema ``replikit`` on PostgreSQL and
DuckDB, the target database on MySQL/MariaDB and SQLite), or in a separate control database
(``TaskSettings.control_url``):

``replikit_status``
    one row per task: ``state`` (``running``, ``stopped``, ``failed``), ``phase``
    (``full-load``, ``cdc``...), ``source_position`` (the last transaction read),
    ``applied_position`` (the last one committed to the target), ``source_latency_ms`` (source
    commit to read) and ``apply_latency_ms`` (source commit to target commit) of the last
    transaction, ``tables`` (JSON: each table's state and counts), ``last_error`` and
    ``updated_at``.
``replikit_history``
    one row per task and interval (``TaskSettings.history_interval``, default 60 s): changes
    applied per operation, full-load rows, source transactions, estimated bytes and the
    average and highest lag of the interval. Rows older than ``history_retention_days`` are
    deleted as new ones arrive.

During CDC a :class:`Report` travels with the checkpoint (``Checkpoint.report``) and each
change writer writes it inside the target transaction that commits the data and the
checkpoint (:meth:`Report.write`): the status row's applied position is the checkpoint's,
whatever crashes when. A report goes with at most one batch a second. The first and last
rows of a run, and every row when the control tables are in a separate database, are written
in transactions of their own (:class:`StatusStore`). ``replikit status`` reads them with the
task stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from replikit.errors import CapabilityError, Error
from replikit.logs import in_context
from replikit.pipeline.control import FLAVORS, Flavor, SupportsControl, table_exists
from replikit.pipeline.stats import Statistics

__all__ = [
    "HISTORY",
    "STATUS",
    "HistoryRow",
    "Report",
    "StatusReporter",
    "StatusStore",
    "TaskStatus",
    "status_store",
]

log = logging.getLogger("replikit.control")

STATUS = "replikit_status"
HISTORY = "replikit_history"
_DOUBLE = {"postgres": "double precision"}
_STATUS_COLUMNS = (
    "task", "state", "phase", "source_position", "applied_position", "source_latency_ms",
    "apply_latency_ms", "tables", "last_error", "updated_at",
)  # fmt: skip
_HISTORY_COLUMNS = (
    "task", "interval_start", "interval_end", "inserts", "updates", "deletes", "ddls",
    "full_load_rows", "transactions", "bytes", "latency_avg_ms", "latency_max_ms",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStatus:
    """A task's row in ``replikit_status`` (see the module docs)."""

    task: str
    state: str
    phase: str
    source_position: str | None = None
    applied_position: str | None = None
    source_latency: float | None = None
    apply_latency: float | None = None
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    last_error: str | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (latencies in milliseconds, time in ISO 8601)."""
        return {
            "task": self.task,
            "state": self.state,
            "phase": self.phase,
            "source_position": self.source_position,
            "applied_position": self.applied_position,
            "source_latency_ms": _ms(self.source_latency),
            "apply_latency_ms": _ms(self.apply_latency),
            "tables": {k: dict(v) for k, v in self.tables.items()},
            "last_error": self.last_error,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRow:
    """A task's counts over one interval, a row of ``replikit_history``."""

    task: str
    interval_start: datetime
    interval_end: datetime
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    ddls: int = 0
    full_load_rows: int = 0
    transactions: int = 0
    bytes: int = 0
    latency_avg: float | None = None
    latency_max: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (latencies in milliseconds, times in ISO 8601)."""
        d = {k: getattr(self, k) for k in _HISTORY_COLUMNS[3:10]}
        return {
            "interval_start": self.interval_start.isoformat(),
            "interval_end": self.interval_end.isoformat(),
            **d,
            "latency_avg_ms": _ms(self.latency_avg),
            "latency_max_ms": _ms(self.latency_max),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _s(ms: Any) -> float | None:
    return None if ms is None else float(ms) / 1000


def _creates(flavor: Flavor, family: str) -> list[str]:
    double = _DOUBLE.get(family, "DOUBLE")
    out = flavor.preamble()
    out.append(
        f"CREATE TABLE IF NOT EXISTS {flavor.table(STATUS)} (task {flavor.text} NOT NULL "
        f"PRIMARY KEY, state {flavor.text} NOT NULL, phase {flavor.text} NOT NULL, "
        f"source_position {flavor.long_text}, applied_position {flavor.long_text}, "
        f"source_latency_ms {double}, apply_latency_ms {double}, tables {flavor.long_text}, "
        f"last_error {flavor.long_text}, updated_at {flavor.time} NOT NULL)"
    )
    counts = ", ".join(f"{c} BIGINT NOT NULL" for c in _HISTORY_COLUMNS[3:10])
    out.append(
        f"CREATE TABLE IF NOT EXISTS {flavor.table(HISTORY)} (task {flavor.text} NOT NULL, "
        f"interval_start {flavor.time} NOT NULL, interval_end {flavor.time} NOT NULL, "
        f"{counts}, latency_avg_ms {double}, latency_max_ms {double}, "
        "PRIMARY KEY (task, interval_start))"
    )
    return out


@dataclass(frozen=True, slots=True)
class Report:
    """What a batch writes besides its data and checkpoint: the task's status row, the
    history rows of the intervals that ended, and the time before which history goes."""

    status: TaskStatus
    history: tuple[HistoryRow, ...] = ()
    prune_before: datetime | None = None

    def write(self, conn: Any, family: str) -> None:
        """Write the report with ``conn.execute(sql, params)`` in the caller's transaction
        (the control tables exist: :meth:`StatusStore.ensure`)."""
        flavor = FLAVORS[family]

        def run(sql: str, params: Sequence[Any]) -> None:
            conn.execute(sql.replace("%s", flavor.param), list(params))

        s = self.status
        status, history = flavor.table(STATUS), flavor.table(HISTORY)
        run(f"DELETE FROM {status} WHERE task = %s", (s.task,))  # noqa: S608
        marks = ", ".join(["%s"] * len(_STATUS_COLUMNS))
        run(
            f"INSERT INTO {status} ({', '.join(_STATUS_COLUMNS)}) VALUES ({marks})",  # noqa: S608
            (s.task, s.state, s.phase, s.source_position, s.applied_position,
             _ms(s.source_latency), _ms(s.apply_latency), json.dumps(s.tables, default=str),
             s.last_error, flavor.when(s.updated_at)),
        )  # fmt: skip
        marks = ", ".join(["%s"] * len(_HISTORY_COLUMNS))
        for h in self.history:
            start = flavor.when(h.interval_start)
            run(f"DELETE FROM {history} WHERE task = %s AND interval_start = %s", (h.task, start))  # noqa: S608
            run(
                f"INSERT INTO {history} ({', '.join(_HISTORY_COLUMNS)}) VALUES ({marks})",  # noqa: S608
                (h.task, start, flavor.when(h.interval_end), h.inserts, h.updates, h.deletes,
                 h.ddls, h.full_load_rows, h.transactions, h.bytes, _ms(h.latency_avg),
                 _ms(h.latency_max)),
            )  # fmt: skip
        if self.prune_before is not None:
            run(
                f"DELETE FROM {history} WHERE task = %s AND interval_end < %s",  # noqa: S608
                (s.task, flavor.when(self.prune_before)),
            )


class StatusStore:
    """Creates, writes and reads one endpoint's ``replikit_status`` and ``replikit_history``.

    Every method runs in one transaction of its own.
    """

    def __init__(self, endpoint: SupportsControl) -> None:
        self._endpoint = endpoint
        self.family = endpoint.family
        self.flavor = FLAVORS[endpoint.family]

    def __repr__(self) -> str:
        return f"StatusStore({self._endpoint!r})"

    @contextlib.contextmanager
    def _session(self, doing: str) -> Iterator[Any]:
        try:
            with self._endpoint.control_session() as conn:
                yield conn
        except Error:
            raise
        except Exception as exc:
            raise Error(
                f"{doing} in the control tables of {self._endpoint!r} failed: {exc}"
            ) from exc

    def _exists(self, cur: Any, name: str) -> bool:
        return table_exists(cur, self.flavor, name)

    def ensure(self) -> None:
        """Create both tables when missing (before an apply writes reports into them)."""
        with self._session("creating the status tables") as conn:
            cur = conn.cursor()
            if not (self._exists(cur, STATUS) and self._exists(cur, HISTORY)):
                for statement in _creates(self.flavor, self.family):
                    cur.execute(statement)

    def write(self, report: Report) -> None:
        """Write ``report`` in a transaction of its own (tables created when missing)."""
        self.ensure()
        with self._session(f"writing the status of task {report.status.task!r}") as conn:
            report.write(conn.cursor(), self.family)

    def status(self, task: str) -> TaskStatus | None:
        """``task``'s status row; ``None`` when there is none."""
        with self._session(f"reading the status of task {task!r}") as conn:
            cur = conn.cursor()
            if not self._exists(cur, STATUS):
                return None
            cur.execute(
                f"SELECT {', '.join(_STATUS_COLUMNS)} FROM {self.flavor.table(STATUS)} "  # noqa: S608
                f"WHERE task = {self.flavor.param}",
                (task,),
            )
            rows = cur.fetchall()
        if not rows:
            return None
        r = [_text(v) for v in rows[0]]
        return TaskStatus(
            task=r[0], state=r[1], phase=r[2], source_position=r[3], applied_position=r[4],
            source_latency=_s(r[5]), apply_latency=_s(r[6]), tables=json.loads(r[7] or "{}"),
            last_error=r[8], updated_at=_utc(r[9]),
        )  # fmt: skip

    def history(self, task: str, *, limit: int = 60) -> list[HistoryRow]:
        """``task``'s latest history rows, the newest first."""
        with self._session(f"reading the history of task {task!r}") as conn:
            cur = conn.cursor()
            if not self._exists(cur, HISTORY):
                return []
            cur.execute(
                f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM {self.flavor.table(HISTORY)} "  # noqa: S608
                f"WHERE task = {self.flavor.param} ORDER BY interval_start DESC "
                f"LIMIT {int(limit)}",
                (task,),
            )
            rows = cur.fetchall()
        return [_history(r) for r in rows]

    def drop(self, task: str) -> None:
        """Delete ``task``'s rows; drop each table when no task is left in it."""
        with self._session(f"dropping the status rows of task {task!r}") as conn:
            cur = conn.cursor()
            for name in (STATUS, HISTORY):
                if not self._exists(cur, name):
                    continue
                table = self.flavor.table(name)
                cur.execute(f"DELETE FROM {table} WHERE task = {self.flavor.param}", (task,))  # noqa: S608
                cur.execute(f"SELECT 1 FROM {table} LIMIT 1")  # noqa: S608
                if not cur.fetchall():
                    cur.execute(f"DROP TABLE {table}")


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes | bytearray) else value


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):  # pragma: no cover - a damaged row
        return datetime.now(UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _history(row: Sequence[Any]) -> HistoryRow:
    r = [_text(v) for v in row]
    counts = {name: int(v) for name, v in zip(_HISTORY_COLUMNS[3:10], r[3:10], strict=True)}
    return HistoryRow(
        task=r[0], interval_start=_utc(r[1]), interval_end=_utc(r[2]), **counts,
        latency_avg=_s(r[10]), latency_max=_s(r[11]),
    )  # fmt: skip


def status_store(endpoint: object) -> StatusStore | None:
    """The status store of ``endpoint``; ``None`` when it holds no control tables."""
    if isinstance(endpoint, SupportsControl) and endpoint.family in FLAVORS:
        return StatusStore(endpoint)
    return None


def require_status_store(endpoint: object) -> StatusStore:
    """:func:`status_store`, or :class:`~replikit.CapabilityError` naming the endpoint."""
    store = status_store(endpoint)
    if store is None:
        raise CapabilityError(f"{endpoint!r} holds no replikit control tables")
    return store


# -- what a running task reports --------------------------------------------------------------
_COUNTS = ("inserts", "updates", "deletes", "ddls", "full_load_rows")


class StatusReporter:
    """Builds a running task's :class:`Report` s from its statistics.

    Args:
        task: the task id.
        statistics: the task's live statistics.
        phase: returns the task's phase now.
        history_interval: seconds per history row.
        history_retention: history older than this is deleted.
        min_interval: seconds between two reports of :meth:`due`.
        store: where :meth:`publish` writes; ``inline`` (the default when the store is the
            target's) makes the CDC apply write reports with its checkpoints instead.
    """

    def __init__(
        self,
        task: str,
        statistics: Statistics,
        phase: Callable[[], str],
        *,
        history_interval: float = 60.0,
        history_retention: timedelta = timedelta(days=7),
        min_interval: float = 1.0,
        store: StatusStore | None = None,
        inline: bool = True,
    ) -> None:
        self.task = task
        self.store = store
        self.inline = inline
        self.statistics = statistics
        self.phase = phase
        self.history_interval = history_interval
        self.history_retention = history_retention
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._ticking = threading.Event()
        #: held while a status row is written (a publish, or an apply carrying a report), so
        #: two writes of the row never run at once (DuckDB would refuse one of them)
        self.writing = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._last = 0.0
        self._cut = datetime.now(UTC)
        self._base = self._totals()

    def _totals(self) -> dict[str, float]:
        stats, cdc = self.statistics, self.statistics.cdc
        totals: dict[str, float] = {k: 0 for k in _COUNTS}
        for t in stats:
            for k in _COUNTS:
                totals[k] += getattr(t, k)
        totals.update(transactions=cdc.transactions, bytes=cdc.bytes, lag_n=cdc.lag.count,
                      lag_sum=cdc.lag.sum)  # fmt: skip
        return totals

    def publish(self, *, state: str = "running", error: str | None = None,
                final: bool = False) -> None:  # fmt: skip
        """Write a report to :attr:`store` in a transaction of its own. A failure is logged,
        not raised: the task's data and checkpoints do not depend on the status rows."""
        if self.store is None:
            return
        try:
            with self.writing:
                self.store.write(self.report(state=state, error=error, final=final))
        except Error as exc:
            log.warning("task %s: could not write its status: %s", self.task, exc)

    def idle_for(self) -> float:
        """Seconds since the last report."""
        return time.monotonic() - self._last

    def tick_while(self, active: Callable[[], bool], every: float = 5.0) -> None:
        """Publish every ``every`` seconds from a thread of its own while ``active()`` (a full
        load: no apply commits to carry the status); :meth:`close` stops it."""
        self._ticking.clear()

        def run() -> None:
            while not self._ticking.wait(every):
                if not active():
                    return
                self.publish()

        self._ticker = threading.Thread(target=in_context(run), name="replikit-status",
                                        daemon=True)  # fmt: skip
        self._ticker.start()

    def close(self) -> None:
        """Stop the thread of :meth:`tick_while` (idempotent)."""
        self._ticking.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    def due(self) -> bool:
        """Whether :attr:`min_interval` passed since the last report."""
        return time.monotonic() - self._last >= self.min_interval

    def report(self, *, state: str = "running", error: str | None = None,
               final: bool = False, applied: str | None = None) -> Report:  # fmt: skip
        """The status now, with a history row when an interval ended (``final``: always);
        ``applied``: the position the report commits with (else the last applied one)."""
        with self._lock:
            self._last = time.monotonic()
            now = datetime.now(UTC)
            history: tuple[HistoryRow, ...] = ()
            elapsed = (now - self._cut).total_seconds()
            if elapsed >= self.history_interval or (final and elapsed > 0):
                history = (self._history_row(now),)
            status = self.status(state=state, error=error, now=now)
            if applied is not None:
                status = replace(status, applied_position=applied)
            return Report(
                status,
                history,
                now - self.history_retention if history else None,
            )

    def _history_row(self, now: datetime) -> HistoryRow:
        totals = self._totals()
        d = {k: int(totals[k] - self._base[k]) for k in (*_COUNTS, "transactions", "bytes")}
        n = totals["lag_n"] - self._base["lag_n"]
        avg = (totals["lag_sum"] - self._base["lag_sum"]) / n if n else None
        start = self._cut.timestamp()
        peaks = [v for t, v in self.statistics.cdc.lag_points() if t >= start - 10]
        row = HistoryRow(
            task=self.task, interval_start=self._cut, interval_end=now, **d,
            latency_avg=avg, latency_max=max(peaks) if peaks and n else None,
        )  # fmt: skip
        self._cut, self._base = now, totals
        return row

    def status(self, *, state: str, error: str | None, now: datetime) -> TaskStatus:
        """The task's status row now."""
        stats, cdc = self.statistics, self.statistics.cdc
        tables = {
            t.table: {
                "target": t.target, "state": t.state.value, "full_load_rows": t.full_load_rows,
                "inserts": t.inserts, "updates": t.updates, "deletes": t.deletes,
                "ddls": t.ddls, "errors": t.errors, "exceptions": t.exceptions,
                "error": t.error, **({"warnings": list(t.warnings)} if t.warnings else {}),
            }
            for t in stats
        }  # fmt: skip
        return TaskStatus(
            task=self.task, state=state, phase=self.phase(),
            source_position=cdc.read_position or cdc.position, applied_position=cdc.position,
            source_latency=cdc.read_latency, apply_latency=cdc.apply_latency,
            tables=tables, last_error=error or stats.last_error, updated_at=now,
        )  # fmt: skip

"""Prometheus metrics of a running task (the ``metrics`` extra: ``prometheus-client``).

:class:`TaskCollector` reads the task's :class:`~replikit.pipeline.stats.Statistics` at every
scrape, so the counters are the statistics themselves, never a second count that could drift.
Names follow Prometheus conventions: a ``replikit_`` prefix, base units (seconds, bytes),
``_total`` on counters, one metric per quantity with labels (``task``, ``table``, ``op``,
``state``) instead of one metric per value.

=================================================  =======  ===================================
metric                                             type     labels
=================================================  =======  ===================================
``replikit_task_info``                             gauge    task, migration_type
``replikit_task_phase``                            gauge    task, phase (1 for the current one)
``replikit_table_state``                           gauge    task, table, state (1 for current)
``replikit_table_full_load_rows_total``            counter  task, table
``replikit_table_changes_total``                   counter  task, table, op
``replikit_table_errors_total``                    counter  task, table
``replikit_table_exceptions_total``                counter  task, table
``replikit_table_conflicts_total``                 counter  task, table
``replikit_cdc_transactions_total``                counter  task
``replikit_cdc_changes_total``                     counter  task
``replikit_cdc_batches_total``                     counter  task
``replikit_cdc_lag_seconds``                       histo.   task
``replikit_cdc_source_commit_timestamp_seconds``   gauge    task
``replikit_cdc_queue_transactions``                gauge    task
``replikit_cdc_queue_bytes``                       gauge    task
``replikit_cdc_cache_changes``                     gauge    task
``replikit_retries_total``                         counter  task, kind
``replikit_table_suspended``                       gauge    task, table (suspended tables)
``replikit_table_apply_exceptions``                gauge    task, table
=================================================  =======  ===================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from replikit.endpoints.base import require
from replikit.monitor import PHASES, Watched
from replikit.monitor.page import Problems
from replikit.pipeline.stats import Statistics, TableState

require("prometheus_client", package="prometheus-client", extra="metrics", purpose="Metrics")

from prometheus_client.core import (  # noqa: E402
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry  # noqa: E402

__all__ = ["TaskCollector", "registry"]

_OPS = ("insert", "update", "delete", "truncate", "ddl")


class TaskCollector(Collector):
    """Collects the metrics of one task at each scrape (see the module docstring)."""

    def __init__(self, task: Watched, problems: Callable[[], Problems] | None = None) -> None:
        self.task = task
        self.problems = problems

    def collect(self) -> Iterator[Metric]:
        """Every metric family, built from the task's statistics now."""
        task = self.task
        tid = task.task_id
        stats = task.statistics()
        info = GaugeMetricFamily(
            "replikit_task_info", "A replication task.", labels=["task", "migration_type"]
        )
        info.add_metric([tid, task.migration_type], 1)
        yield info
        phase = GaugeMetricFamily(
            "replikit_task_phase", "1 for the task's current phase.", labels=["task", "phase"]
        )
        current = task.phase
        for name in PHASES:
            phase.add_metric([tid, name], float(name == current))
        yield phase
        yield from _tables(tid, stats)
        yield from _cdc(tid, stats)
        if self.problems is not None:
            yield from _problems(tid, self.problems())


def _problems(tid: str, problems: Problems) -> Iterator[Metric]:
    suspended = GaugeMetricFamily(
        "replikit_table_suspended", "1 for each suspended table.", labels=["task", "table"]
    )
    for table in sorted(problems.suspended):
        suspended.add_metric([tid, table], 1)
    exceptions = GaugeMetricFamily(
        "replikit_table_apply_exceptions",
        "Rows of the table in replikit_apply_exceptions.",
        labels=["task", "table"],
    )
    for table, n in sorted(problems.exceptions_by_table.items()):
        exceptions.add_metric([tid, table], n)
    yield from (suspended, exceptions)


def _tables(tid: str, stats: Statistics) -> Iterator[Metric]:
    labels = ["task", "table"]
    state = GaugeMetricFamily(
        "replikit_table_state", "1 for each table's current state.", labels=[*labels, "state"]
    )
    rows = CounterMetricFamily(
        "replikit_table_full_load_rows", "Rows loaded by the full load.", labels=labels
    )
    changes = CounterMetricFamily(
        "replikit_table_changes", "Changes applied by CDC, by operation.", labels=[*labels, "op"]
    )
    errors = CounterMetricFamily(
        "replikit_table_errors", "Errors of the table (refused rows, table errors).", labels=labels
    )
    exceptions = CounterMetricFamily(
        "replikit_table_exceptions",
        "Rows or changes an error policy set aside (replikit_apply_exceptions).",
        labels=labels,
    )
    conflicts = CounterMetricFamily(
        "replikit_table_conflicts", "CDC apply conflicts found.", labels=labels
    )
    for t in stats:
        for s in TableState:
            state.add_metric([tid, t.table, s.value], float(t.state is s))
        rows.add_metric([tid, t.table], t.full_load_rows)
        counts = (t.inserts, t.updates, t.deletes, t.truncates, t.ddls)
        for op, n in zip(_OPS, counts, strict=True):
            changes.add_metric([tid, t.table, op], n)
        errors.add_metric([tid, t.table], t.errors)
        exceptions.add_metric([tid, t.table], t.exceptions)
        conflicts.add_metric([tid, t.table], t.conflicts)
    yield from (state, rows, changes, errors, exceptions, conflicts)


def _cdc(tid: str, stats: Statistics) -> Iterator[Metric]:
    cdc = stats.cdc
    for name, text, value in (
        ("transactions", "Source transactions applied.", cdc.transactions),
        ("changes", "Changes applied.", cdc.changes),
        ("batches", "Target transactions committed by CDC.", cdc.batches),
    ):
        yield _one(CounterMetricFamily, f"replikit_cdc_{name}", text, tid, value)
    lag = HistogramMetricFamily(
        "replikit_cdc_lag_seconds",
        "Source commit to target commit, per applied source transaction.",
        labels=["task"],
    )
    lag.add_metric([tid], cdc.lag.cumulative(), sum_value=cdc.lag.sum)
    yield lag
    ts = cdc.source_commit_ts
    yield _one(
        GaugeMetricFamily,
        "replikit_cdc_source_commit_timestamp_seconds",
        "Source commit time of the last applied transaction (unix time).",
        tid,
        ts.timestamp() if ts is not None else float("nan"),
    )
    for name, text, value in (
        ("queue_transactions", "Source transactions read ahead of the apply.",
         cdc.queued_transactions),
        ("queue_bytes", "Estimated size of the transactions read ahead.", cdc.queued_bytes),
        ("cache_changes", "Changes held in the cache while tables load.", cdc.cache_changes),
    ):  # fmt: skip
        yield _one(GaugeMetricFamily, f"replikit_cdc_{name}", text, tid, value)
    retries = CounterMetricFamily(
        "replikit_retries", "Retried operations (lost connections, deadlocks...).",
        labels=["task", "kind"],
    )  # fmt: skip
    for kind, n in sorted(cdc.retries.items()):
        retries.add_metric([tid, kind], n)
    yield retries


def _one(cls: Any, name: str, text: str, tid: str, value: float) -> Metric:
    family = cls(name, text, labels=["task"])
    family.add_metric([tid], value)
    return family  # type: ignore[no-any-return]


def registry(task: Watched, problems: Callable[[], Problems] | None = None) -> CollectorRegistry:
    """A registry of its own holding ``task``'s collector (several tasks per process)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(TaskCollector(task, problems))
    return reg

"""What ``replikit status`` shows: a task's control rows in its target, read with the task
running or stopped.

:func:`task_status` gathers the status row and recent history (:mod:`replikit.pipeline.status`),
the checkpoint, the suspended tables and the apply exceptions
(:mod:`replikit.pipeline.control`) into one JSON-friendly dict; :func:`format_status` lays it
out for a terminal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from replikit.endpoints.base import Endpoint, SupportsApply
from replikit.errors import Error
from replikit.pipeline.contracts import SupportsClose
from replikit.pipeline.control import control_store
from replikit.pipeline.lease import lease_report
from replikit.pipeline.status import require_status_store, status_store

__all__ = ["format_status", "task_status"]


def _checkpoint(target: Endpoint, task: str) -> dict[str, Any] | None:
    if not isinstance(target, SupportsApply):
        return None
    store = target.checkpoint_store()
    try:
        cp = store.read_checkpoint(task)
    finally:
        if isinstance(store, SupportsClose):
            store.close()
    if cp is None:
        return None
    return {
        "phase": cp.phase,
        "position": None if cp.position is None else str(cp.position),
        "start": None if cp.start is None else str(cp.start),
        "loaded": sorted(cp.loaded),
        "commit_ts": None if cp.commit_ts is None else cp.commit_ts.isoformat(),
    }


def task_status(
    target: Endpoint, task: str, *, control: Endpoint | None = None, history: int = 10
) -> dict[str, Any]:
    """Everything the control tables of ``target`` (status and history in ``control`` when
    given) say about ``task``. A target that keeps no status tables (files, MongoDB) gives
    the checkpoint, the suspended tables and the apply exceptions without them.

    Raises:
        Error: the task left no control rows there (never run, or dropped).
    """
    status_db = require_status_store(control) if control is not None else status_store(target)
    status = None if status_db is None else status_db.status(task)
    checkpoint = _checkpoint(target, task)
    if status is None and checkpoint is None:
        raise Error(
            f"task {task!r} has no status or checkpoint in {target.url}: it never ran with "
            "this target (check --task-id and the URLs; 'replikit replicate' names its task "
            "id in its summary), or it was dropped"
        )
    failures = control_store(target)
    suspended = failures.suspended(task) if failures is not None else []
    counts = failures.count_exceptions(task) if failures is not None else {}
    latest = failures.exceptions(task, limit=5) if failures is not None else []
    recent = [] if status_db is None else status_db.history(task, limit=history)
    return {
        "task_id": task,
        "status": None if status is None else status.as_dict(),
        "checkpoint": checkpoint,
        "suspended_tables": [s.as_dict() for s in suspended],
        "exceptions": sum(counts.values()),
        "exceptions_by_table": counts,
        "latest_exceptions": [e.as_dict() for e in latest],
        "history": [h.as_dict() for h in recent],
        "lease": lease_report(target, task),
    }


def _age(iso: str, now: datetime) -> str:
    seconds = (now - datetime.fromisoformat(iso)).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def format_status(report: dict[str, Any], now: datetime | None = None) -> str:
    """``report`` (from :func:`task_status`) as lines for a terminal."""
    now = now or datetime.now(UTC)
    lines: list[str] = []
    status, cp = report["status"], report["checkpoint"]
    if status is not None:
        lines.append(
            f"task {report['task_id']}: {status['state']}, phase {status['phase']} "
            f"(updated {_age(status['updated_at'], now)})"
        )
        lines.append(
            f"positions: read {status['source_position'] or '-'}, applied "
            f"{status['applied_position'] or '-'}; latency: source "
            f"{_ms(status['source_latency_ms'])}, apply {_ms(status['apply_latency_ms'])}"
        )
    else:
        lines.append(
            f"task {report['task_id']}: no status row (a run before status tables, or a "
            "target that keeps none)"
        )
    if cp is not None:
        lines.append(
            f"checkpoint: phase {cp['phase']}, position {cp['position'] or cp['start'] or '-'}, "
            f"{len(cp['loaded'])} table(s) loaded"
        )
    if status is not None and status["tables"]:
        lines.append("")
        lines += _tables(status["tables"])
    lines.append("")
    suspended = report["suspended_tables"]
    lines.append(f"suspended tables: {len(suspended) or 'none'}")
    lines += [f"  {s['table']} ({s['state']}): {s['reason']}" for s in suspended]
    by_table = ", ".join(f"{t} {n}" for t, n in report["exceptions_by_table"].items())
    lines.append(
        f"apply exceptions: {report['exceptions']}" + (f" ({by_table})" if by_table else "")
    )
    lines += [
        f"  {e['created_at']} {e['table']}: {e['error']}" for e in report["latest_exceptions"]
    ]
    if status is not None and status["last_error"]:
        lines.append(f"last error: {status['last_error']}")
    lease = report.get("lease")
    if lease is not None:
        lines.append("")
        lines.append(
            f"lease: held by {lease['holder']}, epoch {lease['epoch']}, expires "
            f"{lease['expires_at'][11:19]}; {len(lease['takeovers']) - 1} takeover(s)"
        )
        lines += [
            f"  {r['role']:<8} {r['member']} (seen {_age(r['seen_at'], now)})"
            for r in lease["replicators"]
        ]
        lines += [
            f"  epoch {t['epoch']} {t['at'][:19]}: {t['holder']} ({t['reason']})"
            for t in lease["takeovers"][:5]
        ]
    if report["history"]:
        lines.append("")
        lines.append("history (newest first): interval end, inserts/updates/deletes, rows, "
                     "avg/max lag")  # fmt: skip
        for h in report["history"][:5]:
            lines.append(
                f"  {h['interval_end'][:19]}  {h['inserts']:,}/{h['updates']:,}/"
                f"{h['deletes']:,}  {h['full_load_rows']:,}  {_ms(h['latency_avg_ms'])}/"
                f"{_ms(h['latency_max_ms'])}"
            )
    return "\n".join(lines)


def _tables(tables: dict[str, dict[str, Any]]) -> list[str]:
    width = max(24, *(len(t) for t in tables))
    head = (
        f"{'table':<{width}} {'state':<16} {'rows':>10} {'inserts':>9} {'updates':>9} "
        f"{'deletes':>9} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for name, t in tables.items():
        lines.append(
            f"{name:<{width}} {t['state']:<16} {t['full_load_rows']:>10,} {t['inserts']:>9,} "
            f"{t['updates']:>9,} {t['deletes']:>9,} {t['errors']:>6,}"
        )
        if t.get("error"):
            lines.append(f"    error: {t['error']}")
        lines += [f"    note: {w}" for w in t.get("warnings", ())]
    return lines

"""The status page of a running task: one self-contained HTML page (no external assets).

What a person watching a task wants at a glance: the task's phase, each table's state and
counts (the statistics table of :mod:`replikit.display`), the source-to-target lag over the
last hour as an inline SVG chart, the suspended tables and the latest apply exceptions. The
page reloads itself every ``refresh`` seconds. Every value is escaped.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from replikit import display
from replikit.monitor import Watched
from replikit.pipeline.control import control_store
from replikit.pipeline.lease import lease_report
from replikit.pipeline.stats import TableState

__all__ = ["Problems", "lag_chart", "read_problems", "render"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:16px 24px;color:#222}"
    "h1{font-size:1.3em;margin:0 0 4px}h2{font-size:1.05em;margin:18px 0 6px}"
    ".phase{display:inline-block;padding:1px 8px;border-radius:8px;background:#e7f1ff}"
    ".bad{background:#f8d7da}.muted{color:#777}"
)
_W, _H, _PAD = 720, 180, 36  # the chart's size and left/bottom margin, in px


@dataclass(frozen=True, slots=True)
class Problems:
    """The suspended tables (name -> reason) and latest apply exceptions of a task, as the
    control tables hold them (``(time, table, error)``, newest first), and how many
    exceptions each table has."""

    suspended: dict[str, str] = field(default_factory=dict)
    exceptions: Sequence[tuple[str, str, str]] = ()
    exceptions_by_table: dict[str, int] = field(default_factory=dict)
    lease: dict[str, Any] | None = None  # lease_report() of a task run with standby

    @property
    def exceptions_total(self) -> int:
        """Apply exceptions over all tables."""
        return sum(self.exceptions_by_table.values())


def read_problems(target: object, task: str, *, latest: int = 10) -> Problems:
    """``task``'s suspended tables and apply exceptions from ``target``'s control tables
    (none when it holds no control tables)."""
    store = control_store(target)
    if store is None:
        return Problems()
    suspended = {s.table: s.reason for s in store.suspended(task)}
    rows = store.exceptions(task, limit=latest)
    return Problems(
        suspended,
        [(e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.table, e.error) for e in rows],
        store.count_exceptions(task),
        lease_report(target, task),
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def lag_chart(points: Sequence[tuple[float, float]], now: float | None = None) -> str:
    """An SVG line chart of ``(unix time, lag seconds)`` over the hour before ``now``."""
    now = time.time() if now is None else now
    start = now - 3600
    points = [(t, v) for t, v in points if t >= start]
    top = max([v for _, v in points] + [0.001]) * 1.1
    width, height = _W - _PAD - 8, _H - _PAD - 8

    def xy(t: float, v: float) -> str:
        return f"{_PAD + (t - start) / 3600 * width:.1f},{8 + height - v / top * height:.1f}"

    line = " ".join(xy(t, v) for t, v in points)
    dots = "".join(
        f"<circle cx='{xy(t, v).split(',')[0]}' cy='{xy(t, v).split(',')[1]}' r='2'/>"
        for t, v in points[-1:]
    )
    empty = (
        f"<text x='{_W / 2}' y='{_H / 2}' text-anchor='middle' fill='#777'>"
        "no transaction applied in the last hour</text>"
        if not points
        else ""
    )
    axes = (
        f"<line x1='{_PAD}' y1='8' x2='{_PAD}' y2='{8 + height}' stroke='#999'/>"
        f"<line x1='{_PAD}' y1='{8 + height}' x2='{_W - 8}' y2='{8 + height}' stroke='#999'/>"
        f"<text x='{_PAD - 4}' y='16' text-anchor='end' font-size='10'>{_seconds(top)}</text>"
        f"<text x='{_PAD - 4}' y='{8 + height}' text-anchor='end' font-size='10'>0</text>"
        f"<text x='{_PAD}' y='{_H - 8}' font-size='10'>-60 min</text>"
        f"<text x='{_W - 8}' y='{_H - 8}' text-anchor='end' font-size='10'>now</text>"
    )
    return (
        f"<svg id='lag-chart' xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' "
        f"viewBox='0 0 {_W} {_H}' role='img' aria-label='lag over the last hour'>"
        f"<rect width='{_W}' height='{_H}' fill='#fafafa'/>{axes}"
        f"<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='{line}'/>"
        f"<g fill='#1f77b4'>{dots}</g>{empty}</svg>"
    )


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _problems(problems: Problems, errors: Sequence[tuple[str, str]]) -> str:
    parts = ["<h2>Suspended tables</h2>"]
    if problems.suspended:
        items = "".join(
            f"<li><b>{_e(t)}</b>: {_e(why)}</li>" for t, why in sorted(problems.suspended.items())
        )
        parts.append(f"<ul id='suspended' class='bad'>{items}</ul>")
    else:
        parts.append("<p id='suspended' class='muted'>none</p>")
    if errors:
        items = "".join(f"<li><b>{_e(t)}</b>: {_e(err)}</li>" for t, err in errors)
        parts.append(f"<h2>Tables in error</h2><ul id='table-errors' class='bad'>{items}</ul>")
    parts.append(f"<h2>Latest apply exceptions ({problems.exceptions_total:,} in all)</h2>")
    if problems.exceptions:
        rows = "".join(
            f"<tr><td>{_e(at)}</td><td>{_e(t)}</td><td>{_e(err)}</td></tr>"
            for at, t, err in problems.exceptions
        )
        parts.append(
            "<table id='exceptions'><thead><tr><th>time</th><th>table</th><th>error</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        parts.append("<p id='exceptions' class='muted'>none</p>")
    if problems.lease is not None:
        parts.append(_replicators(problems.lease))
    return "".join(parts)


def _replicators(lease: dict[str, Any]) -> str:
    """The lease of a task run with standby: holder, epoch, replicators, takeovers."""
    members = "".join(
        f"<li>{_e(m['role'])}: <code>{_e(m['member'])}</code> (seen {_e(m['seen_at'][11:19])})"
        "</li>"
        for m in lease["replicators"]
    )
    takeovers = "".join(
        f"<tr><td>{t['epoch']}</td><td>{_e(t['at'][:19])}</td><td><code>{_e(t['holder'])}"
        f"</code></td><td>{_e(t['reason'])}</td></tr>"
        for t in lease["takeovers"][:10]
    )
    return (
        f"<h2>Replicators (lease epoch {lease['epoch']}, held by "
        f"<code>{_e(lease['holder'])}</code>)</h2><ul id='replicators'>{members}</ul>"
        "<table id='takeovers'><thead><tr><th>epoch</th><th>taken at</th><th>by</th>"
        f"<th>why</th></tr></thead><tbody>{takeovers}</tbody></table>"
    )


def render(task: Watched, problems: Problems | None = None, *, refresh: float = 5) -> str:
    """The status page of ``task`` (a whole HTML document)."""
    stats = task.statistics()
    cdc = stats.cdc
    p50, p99 = cdc.latency_p50, cdc.latency_p99
    latency = (
        f"lag p50 {_seconds(p50)}, p99 {_seconds(p99)}" if p50 is not None and p99 is not None
        else "no transaction applied yet"
    )  # fmt: skip
    errors = [(t.table, t.error or "error") for t in stats if t.state is TableState.ERROR]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{refresh:g}'>"
        f"<title>replikit {_e(task.task_id)}: {_e(task.phase)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>replikit task <code>{_e(task.task_id)}</code> "
        f"<span id='phase' class='phase'>{_e(task.phase)}</span></h1>"
        f"<p class='muted'>{_e(task.migration_type)}; {_e(display.statistics_summary(stats))}; "
        f"{_e(latency)}; position {_e(cdc.position or '-')}; updated {now}</p>"
        f"<h2>Tables</h2><div id='tables'>{display.html_statistics(stats)}</div>"
        f"<h2>Lag over the last hour</h2>{lag_chart(cdc.lag_points())}"
        f"{_problems(problems or Problems(), errors)}"
        "<p class='muted'>Metrics for Prometheus: <a href='/metrics'>/metrics</a></p>"
        "</body></html>"
    )

"""Summary lines and notebook HTML for replikit's result objects.

Every ``__repr__`` and ``_repr_html_`` of a public result object (:class:`~replikit.Plan`,
:class:`~replikit.Assessment`, :class:`~replikit.Statistics`, :class:`~replikit.TableStats`,
CDC statistics, :class:`~replikit.Task`, :class:`~replikit.Endpoint`, the result of
:func:`~replikit.compare`) is built here, so the markup lives in one place. Every value goes
through :func:`html.escape`; the only markup is what this module writes. Styles are inline
(notebook front ends drop ``<style>`` blocks of untrusted output).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no runtime imports: the result classes import this module
    from replikit.endpoints.base import Endpoint
    from replikit.pipeline.stats import CdcStats, Statistics, TableStats
    from replikit.schema.assessment import Assessment
    from replikit.schema.convert import TablePlan
    from replikit.schema.report import ConversionReport
    from replikit.task import Task
    from replikit.validate import Comparison
    from replikit.validation.report import TableValidation, ValidationReport

__all__ = [
    "assessment_summary",
    "cdc_summary",
    "comparison_summary",
    "html_assessment",
    "html_cdc",
    "html_comparison",
    "html_endpoint",
    "html_statistics",
    "html_table_stats",
    "html_task",
    "html_validation",
    "plural",
    "statistics_summary",
    "table_stats_summary",
    "table_validation_line",
    "table_validation_text",
    "validation_summary",
    "validation_text",
]

LOSSY_STYLE = "background:#fff3cd"
BAD_STYLE = "background:#f8d7da"
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;vertical-align:top"
_OPEN_COLUMNS = 60  # a plan with more columns shows its column table collapsed
_MAX_REPR_ERROR = 80


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cut(text: str, width: int = _MAX_REPR_ERROR) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- building blocks -------------------------------------------------------------------------
def _table(
    headers: Sequence[str],
    rows: Iterable[tuple[Sequence[object], str]],
    numeric: Iterable[int] = (),
) -> str:
    """A table of escaped cells; each row is ``(cells, style)``; ``numeric`` columns align
    right."""
    right = set(numeric)

    def cell(tag: str, i: int, value: object) -> str:
        align = "text-align:right" if i in right else "text-align:left"
        return f"<{tag} style='{_CELL};{align}'>{_e(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        f"<tr style='{style}'>" + "".join(cell("td", i, v) for i, v in enumerate(cells)) + "</tr>"
        for cells, style in rows
    )
    return (
        "<table style='border-collapse:collapse;font-size:90%'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _pairs(items: Iterable[tuple[str, object]]) -> str:
    """A two-column key/value table."""
    rows = "".join(
        f"<tr><th style='{_CELL};text-align:left'>{_e(k)}</th><td style='{_CELL}'>{_e(v)}</td></tr>"
        for k, v in items
    )
    return f"<table style='border-collapse:collapse;font-size:90%'><tbody>{rows}</tbody></table>"


def _details(summary: str, body: str, *, open_: bool = False) -> str:
    flag = " open" if open_ else ""
    return f"<details{flag}><summary>{_e(summary)}</summary>{body}</details>"


def _box(title: str, *parts: str) -> str:
    return (
        "<div class='replikit'><p style='margin:4px 0;font-weight:bold'>"
        f"{_e(title)}</p>{''.join(parts)}</div>"
    )


def _n(value: float) -> str:
    return f"{value:,.0f}"


def plural(n: int, word: str) -> str:
    """``"1 table"``, ``"3 tables"``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


# -- plan / assessment -----------------------------------------------------------------------
def _counts(a: Assessment) -> tuple[int, int, int, int]:
    columns = sum(len(t.columns) for t in a.tables)
    return len(a.tables), columns, len(a.lossy), len(a.unsupported)


def assessment_summary(a: Assessment) -> str:
    """``"3 tables, 20 columns: 2 lossy, 0 unsupported"``."""
    tables, columns, lossy, unsupported = _counts(a)
    return (
        f"{plural(tables, 'table')}, {plural(columns, 'column')}: "
        f"{lossy} lossy, {unsupported} unsupported"
    )


def _verdict(a: Assessment) -> str:
    if a.unsupported:
        return "unsupported findings stop the task until they are fixed"
    if a.lossy:
        return "lossy columns run, unless allow_lossy=False"
    return "every column converts exactly"


# keyed by the values of the StrEnums Fidelity and TableState
_MARK = {"exact": "exact", "lossy": "⚠ lossy", "unsupported": "✗ unsupported"}
_STYLE = {"exact": "", "lossy": LOSSY_STYLE, "unsupported": BAD_STYLE}
_ERROR, _CANCELLED, _FULL_LOAD = "Table error", "Table cancelled", "Full load"


def _columns_table(tables: Sequence[TablePlan]) -> str:
    rows = [
        (
            (
                t.source.id,
                c.source.name,
                c.name if c.name != c.source.name else "",
                c.source.type.native or c.source.type.describe(),
                c.target.sql,
                _MARK[c.fidelity],
                c.reason if c.fidelity != "exact" else "",
            ),
            _STYLE[c.fidelity],
        )
        for t in tables
        for c in t.columns
    ]
    headers = ("table", "column", "target name", "source type", "target type", "fidelity", "why")
    return _table(headers, rows)


def _findings_table(a: Assessment) -> str:
    findings = a.unsupported + a.lossy
    if not findings:
        return ""
    rows = [
        (
            (f.table, f.column, f.kind, _MARK[f.fidelity], f.reason or "", f.fix or ""),
            _STYLE[f.fidelity],
        )
        for f in findings
    ]
    return "<p>Findings</p>" + _table(("table", "column", "kind", "fidelity", "why", "fix"), rows)


_VERDICT_STYLE = {"exact": "", "review": LOSSY_STYLE, "not converted": BAD_STYLE}


def _schema_report(report: ConversionReport) -> str:
    """The conversion report: counts per object kind, then every object with its verdict."""
    if not report:
        return ""
    counts = report.counts()
    verdicts = ("exact", "review", "not converted")
    count_rows = [((kind, *(row[v] for v in verdicts)), "") for kind, row in counts.items()]
    summary = _table(("object", *verdicts), count_rows, numeric=(1, 2, 3))
    rows = [
        ((o.kind, o.name, o.verdict.value, o.reason or "", o.sql or ""), _VERDICT_STYLE[o.verdict])
        for o in report.objects
    ]
    detail = _table(("object", "name", "verdict", "why", "target SQL"), rows)
    flagged = sum(o.verdict.value != "exact" for o in report.objects)
    return (
        "<p>Schema objects</p>"
        + summary
        + _details(f"Objects ({len(report.objects)}, {flagged} to look at)", detail)
    )


def html_assessment(
    a: Assessment,
    ddl: Sequence[str] | None = None,
    mappings: Sequence[tuple[str, Sequence[str]]] = (),
) -> str:
    """The assessment (and the plan's DDL when given): summary line, findings, every column's
    fidelity, problems, what the mapping rules do per table, and the DDL collapsed."""
    n_columns = _counts(a)[1]
    parts = [f"<p>{_e(_verdict(a))}</p>", _findings_table(a)]
    if a.problems:
        parts.append("<p>Problems</p><ul>" + "".join(f"<li>{_e(p)}</li>" for p in a.problems))
        parts.append("</ul>")
    if mappings:
        items = "".join(
            f"<li>{_e(table)}<ul>{''.join(f'<li>{_e(n)}</li>' for n in notes)}</ul></li>"
            for table, notes in mappings
        )
        parts.append(_details("Mappings (filters, masks, columns)", f"<ul>{items}</ul>"))
    parts.append(
        _details(
            f"Columns ({n_columns} in {plural(len(a.tables), 'table')})",
            _columns_table(a.tables),
            open_=n_columns <= _OPEN_COLUMNS,
        )
    )
    parts.append(_schema_report(a.schema))
    if ddl is not None:
        body = "<pre>" + _e(";\n".join(ddl) + (";" if ddl else "")) + "</pre>"
        parts.append(_details(f"Target DDL ({len(ddl)} statements)", body))
    title = "Plan" if ddl is not None else "Assessment"
    return _box(f"{title}: {assessment_summary(a)}", *parts)


# -- statistics ------------------------------------------------------------------------------
def _state_label(t: TableStats) -> str:
    if t.state == _FULL_LOAD and t.units_total and t.units_done >= t.units_total:
        return "Loaded"
    return t.state.value


def statistics_summary(stats: Statistics) -> str:
    """``"5 tables: 4 Table completed, 1 Table error; 12,345 rows"`` (plus CDC changes)."""
    tables = list(stats)
    states: dict[str, int] = {}
    for t in tables:
        states[t.state.value] = states.get(t.state.value, 0) + 1
    by_state = ", ".join(f"{n} {state}" for state, n in states.items())
    text = plural(len(tables), "table") + (f": {by_state}" if by_state else "")
    text += f"; {plural(sum(t.full_load_rows for t in tables), 'row')}"
    if stats.cdc.batches:
        text += f"; CDC {plural(stats.cdc.changes, 'change')}"
    return text


def table_stats_summary(t: TableStats) -> str:
    """``"main.a -> main.a: Table completed, 1,000 rows in 0.12 s"`` (plus a cut error)."""
    text = (
        f"{t.table} -> {t.target}: {t.state.value}, "
        f"{plural(t.full_load_rows, 'row')} in {t.seconds:.2f} s"
    )
    changes = t.inserts + t.updates + t.deletes + t.truncates + t.ddls
    if changes:
        text += f", {plural(changes, 'change')}"
    return text + (f"; error: {_cut(t.error)}" if t.error else "")


def _stats_row(t: TableStats, cdc: bool) -> tuple[list[object], str]:
    est = t.estimated_rows
    pct = f"{min(t.full_load_rows / est, 1):.0%}" if est else ""
    cells: list[object] = [
        t.table,
        t.target,
        _state_label(t),
        f"{t.full_load_rows:,}",
        f"{est:,}" if est is not None else "",
        pct,
        f"{t.seconds:.2f}",
        _n(t.rows_per_second),
    ]
    if cdc:
        cells += [f"{t.inserts:,}", f"{t.updates:,}", f"{t.deletes:,}", f"{t.ddls:,}"]
    notes = [f"error: {t.error}"] if t.error else []
    cells.append("; ".join(notes + [f"note: {w}" for w in t.warnings]))
    style = BAD_STYLE if t.state == _ERROR else ""
    if t.state == _CANCELLED:
        style = LOSSY_STYLE
    return cells, style


def _stats_table(tables: Sequence[TableStats], cdc: bool) -> str:
    headers = ["table", "target", "state", "rows", "estimated", "%", "seconds", "rows/s"]
    if cdc:
        headers += ["inserts", "updates", "deletes", "ddls"]
    headers.append("error / notes")
    numeric = range(3, len(headers) - 1)
    return _table(headers, (_stats_row(t, cdc) for t in tables), numeric)


def html_statistics(stats: Statistics) -> str:
    """Per-table states, rows, rates and errors; the CDC counters when CDC ran."""
    tables = list(stats)
    cdc = stats.cdc.batches > 0 or any(t.inserts or t.updates or t.deletes for t in tables)
    parts = [_stats_table(tables, cdc)]
    failed = [t for t in tables if t.state == _ERROR]
    if failed:
        items = "".join(f"<li>{_e(t.table)}: {_e(t.error or 'error')}</li>" for t in failed)
        parts.append(f"<p>Failed tables</p><ul style='{BAD_STYLE}'>{items}</ul>")
    if cdc:
        parts.append(html_cdc(stats.cdc, titled=False))
    return _box(f"Statistics: {statistics_summary(stats)}", *parts)


def html_table_stats(t: TableStats) -> str:
    """One table's statistics as a one-row table."""
    cdc = bool(t.inserts or t.updates or t.deletes or t.ddls)
    return _box(table_stats_summary(t), _stats_table([t], cdc))


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f} ms"


def cdc_summary(cdc: CdcStats) -> str:
    """``"12 transactions, 40 changes in 3 target commits, latency p50 1.2 ms"``."""
    text = (
        f"{plural(cdc.transactions, 'transaction')}, {plural(cdc.changes, 'change')} "
        f"in {plural(cdc.batches, 'target commit')}"
    )
    p50 = cdc.latency_p50
    return text + (f", latency p50 {_ms(p50)}" if p50 is not None else "")


def html_cdc(cdc: CdcStats, *, titled: bool = True) -> str:
    """The task-wide CDC counters, latency and position."""
    commit = cdc.source_commit_ts.isoformat() if cdc.source_commit_ts else ""
    body = _pairs(
        [
            ("transactions", f"{cdc.transactions:,}"),
            ("changes", f"{cdc.changes:,}"),
            ("target commits", f"{cdc.batches:,}"),
            ("cached changes (during the full load)", f"{cdc.cached_changes:,}"),
            ("latency p50 / p99", f"{_ms(cdc.latency_p50)} / {_ms(cdc.latency_p99)}"),
            ("position", cdc.position or ""),
            ("last source commit", commit),
        ]
    )
    return _box(f"CDC: {cdc_summary(cdc)}", body) if titled else f"<p>CDC</p>{body}"


# -- task, endpoint, comparison --------------------------------------------------------------
def html_endpoint(ep: Endpoint) -> str:
    """The endpoint's type, masked URL and capabilities."""
    caps = ep.capabilities
    can = [name for name in ("source", "target", "cdc", "schemas", "transactions")
           if getattr(caps, name)]  # fmt: skip
    return _box(
        type(ep).__name__,
        _pairs([("url", ep.url), ("family", ep.family), ("can", ", ".join(can))]),
    )


def html_task(task: Task) -> str:
    """Source, target, type, phase and settings; the statistics once the task ran."""
    s = task.settings
    pairs = _pairs(
        [
            ("source", task.source.url),
            ("target", task.target.url),
            ("migration type", task.migration_type),
            ("phase", task.phase),
            ("task id", task.task_id),
            ("target table prep mode", s.target_table_prep_mode),
            ("parallel tables", s.parallel_tables),
        ]
    )
    stats = task.statistics()
    parts = [pairs] + ([html_statistics(stats)] if len(stats) else [])
    return _box(f"Task {task.task_id}: {task.migration_type}, {task.phase}", *parts)


def comparison_summary(result: Comparison) -> str:
    """``"3 tables compared: 2 identical, 1 different (main.x)"``."""
    different = [c.source for c in result if not c.equal]
    text = f"{plural(len(result), 'table')} compared: {len(result) - len(different)} identical"
    if different:
        text += f", {len(different)} different ({_cut(', '.join(different), 60)})"
    return text


def html_comparison(result: Comparison) -> str:
    """One row per table: row counts on both sides and the verdict."""
    rows = [
        (
            (
                c.source,
                c.target,
                f"{c.source_rows:,}",
                f"{c.target_rows:,}",
                "identical" if c.equal else "✗ different",
                ", ".join(c.skipped_columns),
            ),
            "" if c.equal else BAD_STYLE,
        )
        for c in result
    ]
    headers = ("source", "target", "source rows", "target rows", "verdict", "not compared (lossy)")
    return _box(f"Comparison: {comparison_summary(result)}", _table(headers, rows, (2, 3)))


# -- validation ---------------------------------------------------------------------------------
_SHOWN_ROWS = 20  # differing rows shown per table in text and HTML (the report keeps more)


def validation_summary(report: ValidationReport) -> str:
    """``"3 tables: 2 validated, 1 mismatched (main.x: 3 rows)"``."""
    counts: dict[str, int] = {}
    for t in report:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    text = f"{plural(len(report), 'table')}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    bad = [f"{t.source}: {plural(t.failures, 'row')}" for t in report if t.failures]
    if bad:
        text += f" ({_cut('; '.join(bad), 80)})"
    return text if report else "0 tables"


def table_validation_line(t: TableValidation) -> str:
    """One line: ``"main.x -> main.x: mismatched, 100 rows compared, 2 missing in target"``."""
    parts = [f"{t.source} -> {t.target}: {t.state.value}"]
    if t.state.value in ("validated", "mismatched", "pending"):
        parts.append(f"{t.rows_compared:,} rows compared")
    for label, n in (
        ("missing in target", t.missing_in_target_count),
        ("missing in source", t.missing_in_source_count),
        ("different", t.different_count),
    ):
        if n:
            parts.append(f"{n:,} {label}")
    if t.pending:
        parts.append(f"{t.pending:,} pending (still changing at the source)")
    if t.reason:
        parts.append(t.reason)
    return ", ".join(parts)


def _value(v: object) -> str:
    return "NULL" if v is None else _cut(repr(v), 40)


def _diff_lines(t: TableValidation) -> list[str]:
    lines = []
    for r in t.rows[:_SHOWN_ROWS]:
        key = ", ".join(f"{k}={v!r}" for k, v in r.key.items())
        if r.type.value == "RECORD_DIFF" and r.source is not None and r.target is not None:
            cols = "; ".join(
                f"{c}: {_value(r.source[c])} | {_value(r.target[c])}" for c in r.columns
            )
            lines.append(f"    different {key}: {cols}  (source | target)")
        else:
            side = "target" if r.type.value == "MISSING_TARGET" else "source"
            times = f" x{r.count}" if r.count != 1 else ""
            lines.append(f"    missing in {side}{times}: {_cut(key, 100)}")
    if t.failures > len(lines):
        lines.append(f"    ... {t.failures - len(lines):,} more")
    return lines


def table_validation_text(t: TableValidation) -> str:
    """The line of :func:`table_validation_line` and the differing rows under it."""
    return "\n".join([table_validation_line(t), *_diff_lines(t)])


def validation_text(report: ValidationReport) -> str:
    """Every table (with its differing rows), then the summary."""
    return "\n".join([*(table_validation_text(t) for t in report), validation_summary(report)])


def _diff_table(t: TableValidation) -> str:
    """The differing rows of one table, source and target side by side."""
    rows = []
    for r in t.rows[:_SHOWN_ROWS]:
        key = ", ".join(f"{k}={v!r}" for k, v in r.key.items())
        if r.type.value == "RECORD_DIFF" and r.source is not None and r.target is not None:
            for c in r.columns:
                rows.append(
                    ((r.type.value, key, c, _value(r.source[c]), _value(r.target[c])), BAD_STYLE)
                )
        else:
            src = "present" if r.source is not None else "—"
            tgt = "present" if r.target is not None else "—"
            if r.count != 1:
                src, tgt = (f"{r.count} more" if x == "present" else x for x in (src, tgt))
            rows.append(((r.type.value, _cut(key, 100), "", src, tgt), BAD_STYLE))
    more = t.failures - min(len(t.rows), _SHOWN_ROWS)
    table = _table(("failure", "key", "column", "source", "target"), rows)
    if more > 0:
        table += f"<p style='margin:2px 0'>{_e(f'… {more:,} more rows')}</p>"
    return table


def html_validation(report: ValidationReport) -> str:
    """One row per table, then the differing rows of each mismatched table side by side."""
    rows = [
        (
            (
                t.source,
                t.target,
                t.state.value,
                f"{t.rows_compared:,}",
                f"{t.missing_in_target_count:,}",
                f"{t.missing_in_source_count:,}",
                f"{t.different_count:,}",
                f"{t.seconds:.2f}",
                t.reason or "",
            ),
            "" if t.state.value == "validated" else BAD_STYLE,
        )
        for t in report
    ]
    headers = (
        "source",
        "target",
        "state",
        "rows compared",
        "missing in target",
        "missing in source",
        "different",
        "seconds",
        "reason",
    )
    parts = [_table(headers, rows, (3, 4, 5, 6, 7))]
    for t in report:
        if t.failures:
            parts.append(
                _details(
                    f"{t.source}: {plural(t.failures, 'row')} differ", _diff_table(t), open_=True
                )
            )
    return _box(f"Validation: {validation_summary(report)}", *parts)

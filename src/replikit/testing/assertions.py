"""Equality assertions between databases, through the validation engine.

``assert_databases_equal(a, b)`` validates ``b`` against ``a`` as :func:`replikit.validate`
does (rows by key in canonical form, across families: a PostgreSQL table equals its SQLite
copy when every value arrived) and raises :class:`AssertionError` listing, per table that
differs, a few differing rows side by side::

    AssertionError: 1 of 11 tables differ between sqlite:///a.db and sqlite:///b.db
    customer: 1 different, 1 missing in b (of 599 rows)
      customer_id=3    column   a                  b
                       email    'mary@example.com' 'MARY@example.com'
      customer_id=7    missing in b: {'customer_id': 7, 'first_name': 'JOHN', ...}

Under pytest the helpers' own frames are hidden, so the failure points at the test's line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from replikit.endpoints.base import Endpoint, endpoint
from replikit.mapping import Mappings, Selection
from replikit.pipeline.contracts import SupportsClose
from replikit.schema.model import TableId
from replikit.validation.report import (
    FailureType,
    RowDifference,
    TableValidation,
    ValidationReport,
    ValidationState,
)

__all__ = ["assert_databases_equal", "assert_tables_equal"]

_WIDTH = 40  # characters of one value in the side-by-side view
_ALL = 10**9


def _endpoint(value: Any) -> tuple[Endpoint, bool]:
    """An endpoint for ``value`` (endpoint, URL, or anything with ``.endpoint`` such as a
    clone) and whether it is ours to close."""
    if isinstance(value, Endpoint):
        return value, False
    inner = getattr(value, "endpoint", None)
    if isinstance(inner, Endpoint):
        return inner, False
    return endpoint(str(value) if not isinstance(value, str) else value), True


def _ignored(ignore: Iterable[str]) -> tuple[set[str], set[tuple[str, str]]]:
    """``"column"`` (in every table) and ``"table.column"`` / ``"schema.table.column"``."""
    anywhere, per_table = set(), set()
    for name in ignore:
        table, dot, column = name.rpartition(".")
        if dot:
            per_table.add((TableId.parse(table).name.casefold(), column.casefold()))
        else:
            anywhere.add(column.casefold())
    return anywhere, per_table


def _drop_ignored(t: TableValidation, ignore: Sequence[str]) -> None:
    """Forget the differences that lie only in ignored columns (the report keeps every
    difference: ``compare_databases`` asks for all of them)."""
    if not ignore:
        return
    anywhere, per_table = _ignored(ignore)
    name = TableId.parse(t.source).name.casefold()

    def ignored(column: str) -> bool:
        c = column.casefold()
        return c in anywhere or (name, c) in per_table

    kept = []
    for d in t.different:
        cols = tuple(c for c in d.columns if not ignored(c))
        if cols:
            kept.append(replace(d, columns=cols))
    t.different, t.different_count = kept, len(kept)
    _pair_keyless(t, ignored)
    if t.state is ValidationState.MISMATCHED and t.failures == 0:
        t.state = ValidationState.VALIDATED


def _pair_keyless(t: TableValidation, ignored: Any) -> None:
    """Rows missing on both sides that are equal but for ignored columns (a keyless table
    compares whole rows) cancel out."""
    if not (t.missing_in_target and t.missing_in_source):
        return

    def form(row: Any) -> tuple[Any, ...]:
        return tuple(sorted((k, repr(v)) for k, v in (row or {}).items() if not ignored(k)))

    left = Counter(form(d.source) for d in t.missing_in_target for _ in range(d.count))
    right = Counter(form(d.target) for d in t.missing_in_source for _ in range(d.count))
    common = left & right
    for attr, side in (("missing_in_target", "source"), ("missing_in_source", "target")):
        budget = Counter(common)
        kept = []
        for d in getattr(t, attr):
            f = form(getattr(d, side))
            take = min(budget[f], d.count)
            budget[f] -= take
            if d.count > take:
                kept.append(replace(d, count=d.count - take))
        setattr(t, attr, kept)
        setattr(t, f"{attr}_count", sum(d.count for d in kept))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def _row_lines(d: RowDifference) -> list[str]:
    key = ", ".join(f"{k}={v!r}" for k, v in d.key.items())
    if d.type is FailureType.MISSING_TARGET:
        return [f"  {key}    missing in b: {d.source!r}"]
    if d.type is FailureType.MISSING_SOURCE:
        return [f"  {key}    missing in a (only in b): {d.target!r}"]
    src, tgt = d.source or {}, d.target or {}
    cols = list(d.columns)
    width = max([len(c) for c in cols] + [6])
    left = max([len(_short(src.get(c))) for c in cols] + [1])
    pad = " " * (len(key) + 6)
    lines = [f"  {key}    {'column'.ljust(width)}  {'a'.ljust(left)}  b"]
    for c in cols:
        lines.append(
            f"{pad}{c.ljust(width)}  {_short(src.get(c)).ljust(left)}  {_short(tgt.get(c))}"
        )
    return lines


def _table_lines(t: TableValidation, max_rows: int) -> list[str]:
    if t.state in (ValidationState.NOT_COMPARABLE, ValidationState.ERROR):
        return [f"{t.source}: {t.state.value}: {t.reason}"]
    parts = [
        f"{n} {what}"
        for n, what in (
            (t.different_count, "different"),
            (t.missing_in_target_count, "missing in b"),
            (t.missing_in_source_count, "only in b"),
        )
        if n
    ]
    lines = [f"{t.source}: {', '.join(parts)} (of {t.rows_compared} rows compared)"]
    for d in t.rows[:max_rows]:
        lines += _row_lines(d)
    if t.failures > max_rows:
        lines.append(f"  ... and {t.failures - max_rows} more")
    return lines


def _extra_tables(a: Endpoint, b: Endpoint, selection: Selection) -> list[str]:
    names_a = {t.id.name.casefold() for t in a.reflect(selection).tables}
    return sorted(
        str(t.id) for t in b.reflect(selection).tables if t.id.name.casefold() not in names_a
    )


def compare_databases(
    a: Any,
    b: Any,
    *,
    tables: Sequence[str] = (),
    ignore_columns: Sequence[str] = (),
) -> tuple[ValidationReport, list[str]]:
    """The validation of ``b`` against ``a`` (ignored columns left out) and the tables only
    ``b`` has. ``tables``: include patterns (``%`` wildcards; default every table)."""
    from replikit.task import Task
    from replikit.validate import Validator

    ep_a, own_a = _endpoint(a)
    ep_b, own_b = _endpoint(b)
    selection = Selection(tuple(tables))
    try:
        task = Task(ep_a, ep_b, mappings=Mappings(selection=selection))
        # every difference kept (test databases are small), so that ignoring columns is exact
        keep = _ALL if ignore_columns else 50
        try:
            report = Validator(task, record=False, max_rows=keep).run()
        finally:  # the task's pipeline holds a reader and a writer of its own
            pipe = task.pipeline()
            for stage in (pipe.reader, pipe.writer):
                if isinstance(stage, SupportsClose):
                    stage.close()
        for t in report:
            _drop_ignored(t, ignore_columns)
        extra = _extra_tables(ep_a, ep_b, selection)
    finally:
        for ep, own in ((ep_a, own_a), (ep_b, own_b)):
            if own:
                ep.close()
    return report, extra


def assert_databases_equal(
    a: Any,
    b: Any,
    *,
    tables: Sequence[str] = (),
    ignore_columns: Sequence[str] = (),
    max_rows: int = 5,
) -> ValidationReport:
    """Assert that databases ``a`` and ``b`` hold the same tables and rows.

    ``a`` and ``b`` are endpoints, URLs or clones. ``tables``: include patterns (default:
    every table); ``ignore_columns``: ``"column"`` (in any table) or ``"table.column"``;
    ``max_rows``: differing rows shown per table. Returns the validation report when equal.

    Raises:
        AssertionError: some table differs, is missing, or could not be compared; the message
            shows up to ``max_rows`` differing rows per table, side by side.
    """
    __tracebackhide__ = True
    report, extra = compare_databases(a, b, tables=tables, ignore_columns=ignore_columns)
    bad = [t for t in report if t.state is not ValidationState.VALIDATED]
    if bad or extra:
        lines = [
            f"{len(bad) + len(extra)} of {len(report) + len(extra)} tables differ "
            f"between {_name(a)} and {_name(b)}"
        ]
        for t in bad:
            lines += _table_lines(t, max_rows)
        lines += [f"{name}: only in b" for name in extra]
        raise AssertionError("\n".join(lines))
    return report


def assert_tables_equal(
    a: Any,
    b: Any,
    table: str,
    *,
    ignore_columns: Sequence[str] = (),
    max_rows: int = 5,
) -> ValidationReport:
    """Assert that ``table`` holds the same rows in ``a`` and ``b`` (see
    :func:`assert_databases_equal`)."""
    __tracebackhide__ = True
    return assert_databases_equal(
        a, b, tables=(table,), ignore_columns=ignore_columns, max_rows=max_rows
    )


def _name(value: Any) -> str:
    ep = value if isinstance(value, Endpoint) else getattr(value, "endpoint", None)
    return ep.url if isinstance(ep, Endpoint) else str(value)

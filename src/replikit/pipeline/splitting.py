"""Key-range splitting, shared by every reader that can split a table into units.

A table with more estimated rows than ``split_rows`` and a single integer primary key is cut
into key ranges of about ``split_rows`` rows. Where the keys fill their range evenly, bounds
spaced evenly between the minimum and the maximum do that. Where they do not (a few huge ids
beside a dense run, ids from several generators), even bounds put almost every row in one
unit, so a reader that can *sample* its keys is asked for quantiles instead: each unit then
holds about the same number of rows whatever the distribution. Engines supply two small
queries (:class:`KeySampler`); the decisions live here, once.

How many units a table becomes is decided here too. ``split_rows="auto"`` (the default of
:class:`~replikit.TaskSettings`) cuts tables above :data:`AUTO_SPLIT_ROWS` rows into ranges
of about that size; for a writer that loads a whole table better (``prefers_whole_tables``:
a PostgreSQL target writes the rows of a table it created frozen with ``COPY ... FREEZE`` in
one transaction, which the index builds and the foreign key checks after the load then need
not rewrite; DuckDB spends about a third less CPU on a table inserted in one statement than
in 250,000-row ranges) it splits a table only as far as its ranges can load at once, since
ranges are for parallelism. :func:`load_slots` counts the units that can usefully run at once: the
workers, but where the source's or the target's database works on this machine, each
running unit keeps one of its processes busy per such database, so no more units than the
cores can run; :func:`auto_split_rows` cuts a big table into at most that many ranges (every
table spread over all the slots balances the load as finer ranges would). Other writers keep
the ranges: they gain nothing from a whole table, and a range read through the key's index
comes in key order, which a target that keeps rows by key (SQLite) appends. An integer
``split_rows`` is taken as it is: ranges of about that many rows, as many as it takes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol

from replikit.pipeline.contracts import KeyRange, SupportsPlacement, Unit
from replikit.schema.model import TableSchema
from replikit.schema.types import Kind

__all__ = [
    "AUTO_SPLIT_ROWS",
    "KeySampler",
    "SplitRows",
    "auto_split_rows",
    "even_bounds",
    "load_slots",
    "on_this_machine",
    "split_table",
    "units_between",
    "usable_cores",
]

#: keys are called sparse (and sampled) when their span exceeds the row count this many times
SPARSE = 2.0

#: ``split_rows="auto"``: tables with more (estimated) rows than this may be split
AUTO_SPLIT_ROWS = 250_000

#: rows per key range: ``"auto"``, about that many, or ``None`` (never split)
SplitRows = int | Literal["auto"] | None


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - macOS, Windows


def on_this_machine(stage: object) -> bool:
    """Whether a reader's or writer's database does its work on this machine
    (:class:`~replikit.pipeline.contracts.SupportsPlacement`); ``False`` when the stage does
    not say."""
    return isinstance(stage, SupportsPlacement) and stage.on_this_machine is True


def load_slots(workers: int, stages: Iterable[object], cores: int | None = None) -> int:
    """How many units can usefully load at once: ``workers``, but no more than ``cores``
    (this machine's, by default) can run when ``stages`` (the reader and the writer) have
    their databases here, each running unit keeping one process busy in each of them."""
    here = sum(1 for s in stages if on_this_machine(s))
    if here == 0:
        return max(1, workers)
    cores = usable_cores() if cores is None else cores
    return max(1, min(workers, cores // here))


def auto_split_rows(rows: int, slots: int) -> int | None:
    """The ``split_rows`` that cuts a table of about ``rows`` rows into as many key ranges
    as ``split_rows=AUTO_SPLIT_ROWS`` would, but at most ``slots`` (``None``: one unit)."""
    pieces = min(math.ceil(rows / AUTO_SPLIT_ROWS), slots)
    return math.ceil(rows / pieces) if pieces > 1 else None


class KeySampler(Protocol):
    """The queries a reader answers so :func:`split_table` can split one of its tables."""

    def key_span(self, table: TableSchema, column: str) -> tuple[int, int] | None:
        """The minimum and maximum of ``column`` (``None``: the table is empty)."""
        ...

    def key_quantiles(self, table: TableSchema, column: str, pieces: int) -> list[int]:
        """``pieces - 1`` ascending keys cutting the table into about equal parts (from a
        sample or an index walk; duplicates allowed, they are dropped)."""
        ...


def split_table(table: TableSchema, split_rows: int | None, sampler: KeySampler) -> list[Unit]:
    """``table`` as one unit, or as key ranges of about ``split_rows`` rows each."""
    key = _split_key(table, split_rows)
    if key is None or split_rows is None:
        return [Unit(table.id)]
    rows = table.estimated_rows or 0
    pieces = math.ceil(rows / split_rows)
    span = sampler.key_span(table, key)
    if span is None:
        return [Unit(table.id)]
    lo, hi = span
    if hi - lo + 1 > SPARSE * rows:
        bounds = sorted({b for b in sampler.key_quantiles(table, key, pieces) if lo < b <= hi})
    else:
        bounds = even_bounds(lo, hi, pieces)
    return units_between(table, (key,), bounds)


def _split_key(table: TableSchema, split_rows: int | None) -> str | None:
    """The single integer key column of a table worth splitting, else ``None``."""
    rows = table.estimated_rows or 0
    key = table.primary_key
    if not split_rows or rows <= split_rows or len(key) != 1:
        return None
    return key[0] if table.column(key[0]).type.kind is Kind.INT else None


def even_bounds(lo: int, hi: int, pieces: int) -> list[int]:
    """Bounds that cut ``[lo, hi]`` into ``pieces`` ranges of equal width."""
    step = max(1, math.ceil((hi - lo + 1) / pieces))
    return list(range(lo + step, hi + 1, step))


def units_between(table: TableSchema, key: tuple[str, ...], bounds: Sequence[Any]) -> list[Unit]:
    """Units for the ranges between ascending ``bounds`` (open at both ends)."""
    edges: list[Any] = [None, *bounds, None]
    count = len(edges) - 1
    return [
        Unit(table.id, KeyRange(key, _one(edges[i]), _one(edges[i + 1])), index=i, count=count)
        for i in range(count)
    ]


def _one(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else (value,)

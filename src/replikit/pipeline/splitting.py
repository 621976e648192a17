"""Key-range splitting, shared by every reader that can split a table into units.

A table with more estimated rows than ``split_rows`` and a single integer primary key is cut
into key ranges of about ``split_rows`` rows. Where the keys fill their range evenly, bounds
spaced evenly between the minimum and the maximum do that. Where they do not (a few huge ids
beside a dense run, ids from several generators), even bounds put almost every row in one
unit, so a reader that can *sample* its keys is asked for quantiles instead: each unit then
holds about the same number of rows whatever the distribution. Engines supply two small
queries (:class:`KeySampler`); the decisions live here, once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from replikit.pipeline.contracts import KeyRange, Unit
from replikit.schema.model import TableSchema
from replikit.schema.types import Kind

__all__ = ["KeySampler", "even_bounds", "split_table", "units_between"]

#: keys are called sparse (and sampled) when their span exceeds the row count this many times
SPARSE = 2.0


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

"""Reading rows to compare: key ranges as units (several in one query where the reader
pushes a row filter), the canonical entries of each row, sampling (used by
:mod:`replikit.validate`)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from replikit.endpoints.base import Endpoint
from replikit.mapping.filters import AllOf, AnyOf, Condition, Predicate
from replikit.pipeline.contracts import KeyRange, Unit
from replikit.schema.model import TableId
from replikit.schema.types import Kind
from replikit.validation.canonical import Canon
from replikit.validation.rows import Entry

__all__ = [
    "PREFETCH",
    "RANGED",
    "RANGES_PER_READ",
    "Counted",
    "canon_row",
    "prefetched",
    "range_units",
    "rows_of",
    "sampler",
    "within",
]

PREFETCH = 8  # key ranges read at once (each opens its own connection)
#: families whose readers read exactly a unit's key range (others may read the whole table)
RANGED = ("postgres", "mysql")


RANGES_PER_READ = 500  # key ranges read in one query (an OR of BETWEENs the reader pushes)


def range_units(
    table: TableId, bounds: list[KeyRange], column: str, endpoint: Endpoint
) -> list[tuple[Unit, list[KeyRange]]]:
    """Units reading the key ranges ``bounds`` (on the key's first, integer, column; named
    ``column`` on this side), with the ranges each must keep. On PostgreSQL and MySQL
    several ranges go in one unit, as a row filter its reader pushes into its query: one
    connection and one query for up to ``RANGES_PER_READ`` small dirty segments, not one
    each. Elsewhere one unit per range."""
    ranges = [replace(b, columns=(column,)) for b in bounds]
    if endpoint.family not in RANGED or len(ranges) == 1:
        return [(Unit(table, r), [r]) for r in ranges]
    out = []
    for i in range(0, len(ranges), RANGES_PER_READ):
        part = ranges[i : i + RANGES_PER_READ]
        where = AnyOf(tuple(_between(column, r) for r in part))
        out.append((Unit(table, where=where), part))
    return out


def _between(column: str, bounds: KeyRange) -> Predicate:
    lo = bounds.lower[0] if bounds.lower else None
    hi = bounds.upper[0] if bounds.upper else None
    parts = []
    if lo is not None:
        parts.append(Condition(column, ">=", (lo,), Kind.INT))
    if hi is not None:
        parts.append(Condition(column, "<", (hi,), Kind.INT))
    return AllOf(tuple(parts))


def within(rows: Iterable[Entry], ranges: list[KeyRange]) -> Iterator[Entry]:
    """The entries whose key's first (integer) column lies in one of ``ranges``."""
    edges = sorted(
        (
            b.lower[0] if b.lower else -math.inf,
            b.upper[0] if b.upper else math.inf,
        )
        for b in ranges
    )
    starts = [lo for lo, _ in edges]
    for entry in rows:
        k = entry[0][0]
        i = bisect.bisect_right(starts, k) - 1
        if i >= 0 and k < edges[i][1]:
            yield entry


def prefetched(
    units: list[Any], read: Callable[[Any], Iterable[Any]]
) -> Iterator[Iterable[Any]]:
    """The batches of each unit: one unit streamed; several (small dirty key ranges) read
    ``PREFETCH`` at a time in threads, so connection set-up overlaps."""
    if len(units) == 1:
        yield read(units[0])
        return
    with ThreadPoolExecutor(PREFETCH, thread_name_prefix="replikit-validate-read") as pool:
        for i in range(0, len(units), PREFETCH):
            yield from pool.map(lambda u: list(read(u)), units[i : i + PREFETCH])


class Counted:
    """An iterable that counts what went through it."""

    def __init__(self, it: Iterable[Entry]) -> None:
        self.it = it
        self.n = 0

    def __iter__(self) -> Iterator[Entry]:
        for e in self.it:
            self.n += 1
            yield e


def sampler(sample: float | None) -> Callable[[Any], bool] | None:
    """Keeps about ``sample`` of the keys (by a hash of the key); ``None``: every key."""
    if sample is None or sample >= 1:
        return None
    limit = int(sample * (1 << 32))
    return lambda key: (hash(key) & 0xFFFFFFFF) < limit


def rows_of(
    batches: Iterable[Any],
    names: Sequence[str],
    canons: Sequence[Canon],
    adapters: Sequence[Callable[[Any], Any] | None],
    key: tuple[int, ...],
    keep: Callable[[Any], bool] | None,
) -> Iterator[Entry]:
    """``(canonical key, canonical row, raw row)`` of each row of ``batches``: the columns
    ``names`` in order, through the writer's conversions ``adapters`` then ``canons``."""
    index: list[int] | None = None
    columns: tuple[str, ...] = ()
    work = list(zip(canons, adapters, strict=True))
    for batch in batches:
        if index is None or batch.columns != columns:
            columns = tuple(batch.columns)
            index = [columns.index(n) for n in names]
        for row in batch.rows:
            raw = tuple(row[i] for i in index)
            canon = tuple(
                c(v if a is None else _adapted(a, v)) for (c, a), v in zip(work, raw, strict=True)
            )
            k = tuple(canon[i] for i in key) if key else None
            if keep is not None and not keep(k if key else canon):
                continue
            yield k, canon, raw


def canon_row(entry: Entry | None) -> Any:
    """The canonical row of an entry (``None`` for a missing row)."""
    return None if entry is None else entry[1]


def _adapted(adapt: Callable[[Any], Any], value: Any) -> Any:
    if value is None:
        return None
    try:
        return adapt(value)
    except Exception:  # the writer refuses it: the target cannot hold it, it will differ
        return value

"""After a full load: generated columns, as the target computes them, against the source's values.

A generated column is created with its expression translated to the target's dialect, and
its values are not copied: the target computes them. Engines can evaluate one expression
differently (integer division, string comparison, rounding), so after the load each such
column is read on both sides and compared, per row key, by an order-independent digest of
(key, value) pairs in bounded memory. A difference is returned as a message naming the
columns and the way out; it is never silent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from replikit.mapping import Selection
from replikit.schema.convert import TablePlan
from replikit.schema.model import TableSchema

if TYPE_CHECKING:
    from replikit.endpoints.base import Endpoint

__all__ = ["verify_generated"]

_MASK = (1 << 64) - 1


def verify_generated(source: Endpoint, target: Endpoint, plan: TablePlan) -> str | None:
    """Why the target's generated columns of ``plan`` differ from the source's values
    (``None``: they are equal on every row, or the table has none)."""
    generated = [c for c in plan.columns if c.generated is not None]
    if not generated:
        return None
    key = [c for c in plan.columns if c.source.name in plan.source.key]
    found = target.reflect(Selection(include=(_pattern(plan),))).tables
    tid = plan.target_id
    # a target without schemas in its ids (MySQL: the URL's database) reflects them with one
    table = next(
        (t for t in found if t.id == tid or (not tid.schema and t.id.name == tid.name)), None
    )
    if table is None:
        return f"generated columns not verified: {plan.target_id} is not in the target"
    wanted = [c.source.name for c in key], [c.source.name for c in generated]
    there = [c.name for c in key], [c.name for c in generated]
    differ = []
    src = _digests(source, plan.source, *wanted)
    tgt = _digests(target, table, *there)
    for i, col in enumerate(generated):
        if src[i] != tgt[i]:
            differ.append(f"{col.name} (as {col.generated.expression if col.generated else ''})")
    if not differ:
        return None
    return (
        f"generated column(s) {', '.join(differ)} compute other values in "
        f"{plan.target_dialect} than the source holds (compared by key over every row); "
        "the target keeps what its expression computes. To copy the source's values "
        "instead, run with TaskSettings(generated_columns='values')"
    )


def _pattern(plan: TablePlan) -> str:
    tid = plan.target_id
    return f"{tid.schema}.{tid.name}" if tid.schema else tid.name


def _digests(
    endpoint: Endpoint, table: TableSchema, key: Sequence[str], columns: Sequence[str]
) -> list[tuple[int, int]]:
    """Per column in ``columns``: (rows, order-independent digest of (key, value))."""
    out = [(0, 0)] * len(columns)
    for row in _rows(endpoint, table, [*key, *columns]):
        k = row[: len(key)]
        out = [
            (n + 1, (total + hash((k, row[len(key) + i]))) & _MASK)
            for i, (n, total) in enumerate(out)
        ]
    return out


def _rows(
    endpoint: Endpoint, table: TableSchema, names: Sequence[str]
) -> Iterator[tuple[Any, ...]]:
    reader = endpoint.reader([table])
    try:
        for unit in reader.units(reader.tables[0]):
            for batch in reader.read(unit):
                index = [batch.columns.index(n) for n in names]
                for row in batch.rows:
                    yield tuple(_norm(row[i]) for i in index)
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()


def _norm(value: Any) -> Any:
    """Equal values of different engines' types hash alike (``Decimal('2.50')``, ``2.5``)."""
    if isinstance(value, Decimal):
        return value.normalize() if value.is_finite() else str(value)
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    return value

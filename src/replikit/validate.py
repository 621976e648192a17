"""Source vs target comparison.

:func:`compare` reads every selected table on both sides through the endpoints' readers and
compares row counts and an order-independent digest of the canonical row values, table by
table, in bounded memory. Columns the assessment declares lossy are left out of the digest
(their values are expected to differ), and the result says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from replikit import display
from replikit.endpoints.base import Endpoint
from replikit.mapping import Selection
from replikit.schema.convert import Fidelity, TablePlan

__all__ = ["Comparison", "TableComparison", "compare"]

_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class TableComparison:
    """Counts and digests of one table on both sides."""

    source: str
    target: str
    source_rows: int
    target_rows: int
    equal: bool
    skipped_columns: tuple[str, ...] = ()

    def __str__(self) -> str:
        verdict = "identical" if self.equal else "DIFFERENT"
        skipped = (
            f" (lossy, not compared: {', '.join(self.skipped_columns)})"
            if self.skipped_columns
            else ""
        )
        counts = f"{self.source_rows} / {self.target_rows} rows"
        return f"{self.source} -> {self.target}: {counts}, {verdict}{skipped}"


class Comparison(list[TableComparison]):
    """What :func:`compare` returns: a list of :class:`TableComparison`, one per table, that
    prints a summary line and shows a table in notebooks."""

    @property
    def equal(self) -> bool:
        """True when every table is identical on both sides."""
        return all(c.equal for c in self)

    def __repr__(self) -> str:
        return f"<Comparison {display.comparison_summary(self)}>"

    def __str__(self) -> str:
        return "\n".join([*(str(c) for c in self), display.comparison_summary(self)])

    def _repr_html_(self) -> str:
        return display.html_comparison(self)


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value.normalize() if value.is_finite() else str(value)
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    return value


def _digest(endpoint: Endpoint, table: Any, columns: Sequence[int]) -> tuple[int, int]:
    reader = endpoint.reader([table])
    count, total = 0, 0
    for unit in reader.units(reader.tables[0]):
        for batch in reader.read(unit):
            for row in batch.rows:
                count += 1
                total = (total + hash(tuple(_norm(row[i]) for i in columns))) & _MASK
    return count, total


def compare(source: Endpoint, target: Endpoint, plans: Iterable[TablePlan]) -> Comparison:
    """Compare each planned table between ``source`` and ``target``."""
    plans = list(plans)
    catalog = target.reflect(Selection(include=tuple(str(p.target_id) for p in plans)))
    by_id = {t.id: t for t in catalog.tables}
    out = Comparison()
    for plan in plans:
        keep = [i for i, c in enumerate(plan.columns) if c.fidelity is Fidelity.EXACT]
        skipped = tuple(c.source.name for c in plan.columns if c.fidelity is not Fidelity.EXACT)
        src = _digest(source, plan.source, keep)
        tgt_table = by_id.get(plan.target_id)
        tgt = _digest(target, tgt_table, keep) if tgt_table is not None else (0, -1)
        out.append(
            TableComparison(
                str(plan.source.id), str(plan.target_id), src[0], tgt[0], src == tgt, skipped
            )
        )
    return out

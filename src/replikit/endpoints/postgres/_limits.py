"""PostgreSQL table limits (held to the server by tests/test_limits.py).

* 1,600 columns per table, 32 columns per index (``INDEX_MAX_KEYS``);
* a btree index entry of at most 2,704 bytes (8 KiB pages). Whether an entry fits depends on
  the values (long ones are compressed first), so a key that can be longer is ``lossy``:
  rows whose key values do not fit are refused;
* a value of at most 1 GB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.limits import Limits, RowSize
from replikit.schema.types import Kind

__all__ = ["LIMITS", "PgSizes"]

_INDEX_TUPLE_HEADER = 8
_FIXED = {
    Kind.BOOL: 1,
    Kind.DATE: 4,
    Kind.TIMESTAMP: 8,
    Kind.UUID: 16,
    Kind.INTERVAL: 16,
    Kind.ENUM: 4,
}


def _key_bytes(col: ColumnPlan) -> int | None:
    t = col.target.type
    if t.kind in (Kind.INT, Kind.FLOAT):
        return (t.bits or 64) // 8
    if t.kind is Kind.TIME:
        return 12 if t.tz else 8
    if t.kind is Kind.DECIMAL and t.precision is not None:
        return 8 + 2 * ((t.precision + 3) // 4)
    if t.kind is Kind.STRING and t.length is not None:
        return 4 + 4 * t.length  # UTF-8: up to 4 bytes a character, 4-byte length header
    if t.kind is Kind.BYTES and t.length is not None:
        return 4 + t.length
    return _FIXED.get(t.kind)


class PgSizes:
    """PostgreSQL's btree entry model; rows are not checked (large values are TOASTed)."""

    def row(self, plan: TablePlan) -> RowSize | None:
        """Not checked."""
        return None

    def record(self, plan: TablePlan) -> RowSize | None:
        """Not checked."""
        return None

    def key(self, plan: TablePlan, columns: Sequence[str], *, unique: bool) -> int | None:
        """The largest btree entry of an index on ``columns`` (``None``: unbounded)."""
        by_name = {c.name: c for c in plan.columns}
        total = _INDEX_TUPLE_HEADER
        for name in columns:
            col = by_name.get(name)
            size = None if col is None else _key_bytes(col)
            if size is None:
                return None
            total += size
        return total


LIMITS: Final = Limits(
    "PostgreSQL",
    max_columns=1600,
    max_index_key_bytes=2704,
    max_index_columns=32,
    max_value_bytes=1 << 30,
    value_limit="its largest value (1 GB)",
    key_per_value=True,
    sizes=PgSizes(),
)

"""Editing a CDC batch the target refused part of: find the refused change by table and key,
leave it out, or leave a table's changes out from it on (the data-error policies of
:class:`~replikit.pipeline.cdc.Replicator`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from replikit.changes import Change, Op, Transaction
from replikit.errors import DataError
from replikit.pipeline.policy import ErrorPolicy
from replikit.pipeline.spill import RECORD_ROWS, ChangeBuffer, spilled
from replikit.schema.convert import TablePlan
from replikit.schema.model import TableId

__all__ = [
    "Found",
    "conflict_reason",
    "cut",
    "find_change",
    "suspend_reason",
    "without",
    "without_table",
]


def suspend_reason(table: str, exc: BaseException, policy: ErrorPolicy, *, found: bool) -> str:
    """Why ``table`` is suspended after ``exc`` (``found``: the refused change was found by
    its key), and what to do."""
    if policy.data_errors != "skip-row":
        why = "a change the target refused"
    elif found:
        why = f"more than {policy.escalation_count} rows set aside"
    else:
        why = "the target refused a change without naming its row: it cannot be set aside"
    return (
        f"table {table} suspended ({why}): {exc}. Its changes are no longer applied; fix the "
        f"cause and reload it: replikit reload SRC DST --table {table} (or Task.reload)"
    )


def conflict_reason(table: str, conflict: object) -> str:
    """Why ``table`` is suspended after an apply conflict (``apply_conflicts="stop"``)."""
    return (
        f"table {table} suspended (apply_conflicts=stop): {conflict}. The target has drifted "
        "from the source; nothing of the batch was applied to this table. Compare it "
        "(Task.validate), then reload it: replikit reload SRC DST --table "
        f"{table} (or Task.reload)"
    )


def _key_matches(plan: TablePlan, change: Change, key: dict[str, Any]) -> bool:
    source_of = {c.name: c.source.name for c in plan.columns}
    images = (
        (change.after, change.key) if change.op is Op.INSERT
        else (change.key, change.before, change.after)
    )  # fmt: skip
    for column, wanted in key.items():
        src = source_of.get(column, column)
        image = next((i for i in images if i is not None and src in i), None)
        if image is None:
            return False
        value = image[src]
        if value != wanted and str(value) != str(wanted):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Found:
    """The change a :class:`DataError` names: ``tx.changes``'s ``index``-th (in memory or on
    disk; a change read back from disk is a new object each time, so it is found again by
    transaction and index, not by identity)."""

    tx: Transaction
    change: Change
    index: int


def find_change(plan: TablePlan, mapped: Sequence[Transaction], exc: DataError) -> Found | None:
    """The change ``exc`` names (table and key), in memory or on disk; else ``None``."""
    if not exc.key:
        return None
    table = plan.target_id
    for tx in mapped:
        on_disk = spilled(tx)
        if on_disk is not None and table not in on_disk.tables:
            continue
        for index, change in enumerate(tx.changes):
            if change.table == table and _key_matches(plan, change, exc.key):
                return Found(tx, change, index)
    return None


def without(mapped: list[Transaction], found: Found) -> list[Transaction]:
    """``mapped`` without the change :func:`find_change` found (a spilled transaction into a
    new spill file: the caller discards it)."""
    index = found.index
    return [_kept(tx, lambda i, _: i != index) if tx is found.tx else tx for tx in mapped]


def cut(mapped: list[Transaction], table: TableId, found: Found) -> list[Transaction]:
    """``mapped`` with ``table``'s changes from the change :func:`find_change` found on left
    out (spilled transactions into new spill files: the caller discards them)."""
    at = next(n for n, tx in enumerate(mapped) if tx is found.tx)
    index = found.index
    return [
        *mapped[:at],
        _kept(found.tx, lambda i, c: i < index or c.table != table),
        *(without_table(tx, table) for tx in mapped[at + 1 :]),
    ]


def without_table(tx: Transaction, table: TableId) -> Transaction:
    """``tx`` without ``table``'s changes (a spilled one into a new spill file: the caller
    discards it)."""
    on_disk = spilled(tx)
    if on_disk is not None and table not in on_disk.tables:
        return tx
    if on_disk is None and not any(c.table == table for c in tx.changes):
        return tx
    return _kept(tx, lambda _, c: c.table != table)


def _kept(tx: Transaction, keep: Callable[[int, Change], bool]) -> Transaction:
    """``tx`` with only its changes ``keep(index, change)`` is true of. A spilled one goes
    into a new spill file (each change keeps its own position, commit time and id: the
    changes cached during a full load are several source transactions'), or into memory
    when nothing is left of it."""
    on_disk = spilled(tx)
    if on_disk is None:
        return replace(tx, changes=tuple(c for i, c in enumerate(tx.changes) if keep(i, c)))
    out = ChangeBuffer(0)
    try:
        index = 0
        for part in on_disk.batches(RECORD_ROWS):
            out.add([c for i, c in enumerate(part, index) if keep(i, c)])
            index += len(part)
        changes = out.finish(tx.position, tx.commit_ts, tx.txid)
    finally:
        out.reset()
    return Transaction(changes, tx.position, tx.commit_ts, tx.txid)

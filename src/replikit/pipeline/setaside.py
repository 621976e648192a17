"""Editing a CDC batch the target refused part of: find the refused change by table and key,
leave it out, or leave a table's changes out from it on (the data-error policies of
:class:`~replikit.pipeline.cdc.Replicator`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from replikit.changes import Change, Op, Transaction
from replikit.errors import DataError
from replikit.pipeline.policy import ErrorPolicy
from replikit.pipeline.spill import TransactionBuffer, spilled
from replikit.schema.convert import TablePlan
from replikit.schema.model import TableId

__all__ = ["conflict_reason", "cut", "find_change", "suspend_reason", "without", "without_table"]


def suspend_reason(table: str, exc: BaseException, policy: ErrorPolicy) -> str:
    """Why ``table`` is suspended after ``exc``, and what to do."""
    why = (
        f"more than {policy.escalation_count} rows set aside"
        if policy.data_errors == "skip-row"
        else "a change the target refused"
    )
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


def find_change(
    plan: TablePlan, mapped: Sequence[Transaction], exc: DataError
) -> tuple[Transaction, Change] | None:
    """The change ``exc`` names (table and key), in an in-memory transaction; else ``None``."""
    if not exc.key:
        return None
    for tx in mapped:
        if spilled(tx) is not None:
            if plan.target_id in spilled(tx).tables:  # type: ignore[union-attr]
                return None  # on disk: the table is suspended instead
            continue
        for change in tx.changes:
            if change.table == plan.target_id and _key_matches(plan, change, exc.key):
                return tx, change
    return None


def without(mapped: list[Transaction], change: Change) -> list[Transaction]:
    """``mapped`` without ``change`` (found in memory by :func:`find_change`)."""
    out = []
    for tx in mapped:
        if spilled(tx) is None and any(c is change for c in tx.changes):
            tx = replace(tx, changes=tuple(c for c in tx.changes if c is not change))
        out.append(tx)
    return out


def cut(mapped: list[Transaction], table: TableId, change: Change) -> list[Transaction]:
    """``mapped`` with ``table``'s changes from ``change`` on left out (in-memory ones only:
    :func:`find_change` found ``change`` in memory)."""
    out: list[Transaction] = []
    cutting = False
    for tx in mapped:
        if cutting:
            out.append(without_table(tx, table))
            continue
        if spilled(tx) is not None or not any(c is change for c in tx.changes):
            out.append(tx)
            continue
        kept: list[Change] = []
        for c in tx.changes:
            cutting = cutting or c is change
            if not (cutting and c.table == table):
                kept.append(c)
        out.append(replace(tx, changes=tuple(kept)))
    return out


def without_table(tx: Transaction, table: TableId) -> Transaction:
    """``tx`` without ``table``'s changes (a spilled one into a new spill file: the caller
    discards it)."""
    on_disk = spilled(tx)
    if on_disk is not None:
        if table not in on_disk.tables:
            return tx
        out = TransactionBuffer(0)
        try:
            for part in on_disk.batches(1024):
                out.rows += [(c.op, c.table, c.key, c.before, c.after)
                             for c in part if c.table != table]  # fmt: skip
                out.check()
            changes = out.finish(tx.position, tx.commit_ts, tx.txid)
        finally:
            out.reset()
        return Transaction(changes, tx.position, tx.commit_ts, tx.txid)
    if not any(c.table == table for c in tx.changes):
        return tx
    return replace(tx, changes=tuple(c for c in tx.changes if c.table != table))

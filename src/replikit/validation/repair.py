"""Repair: re-copy exactly the rows a validation found different.

Rows missing in the target and rows that differ are written again from the source (the
source rows as the validation read them, after the task's transforms), rows missing in the
source are deleted by key, through the target's change writer: upserts and deletes by key,
in target transactions of at most ``_CHUNK`` changes, converted by the same plan as the copy.
The repaired tables are then validated again, and the report is updated with the result.
Tables without a key cannot be repaired row by row (no key to address a row); they are
listed in ``skipped`` with the way out (copy the table again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from replikit.changes import Change, Op, Transaction
from replikit.endpoints.base import apply_target
from replikit.errors import Error
from replikit.validation.failures import NO_POSITION
from replikit.validation.report import FailureType, FixResult, TableValidation, ValidationReport

if TYPE_CHECKING:
    from replikit.validate import Validator, _Setup

__all__ = ["repair"]

log = logging.getLogger("replikit.validate")

_CHUNK = 5000
_PASSES = 50  # each pass repairs up to the report's kept rows per kind


def repair(validator: Validator, report: ValidationReport) -> FixResult:
    """Repair every mismatched table of ``report``; update ``report`` with the re-validation."""
    result = FixResult()
    todo = [t for t in report if t.failures and t.state.value == "mismatched"]
    for _ in range(_PASSES):
        if not todo:
            break
        for table in todo:
            _repair_table(validator, table, result)
        names = [t.target for t in todo if t.target not in result.skipped]
        if not names:
            break
        again = {t.target: t for t in validator.run(only=names)}
        for i, t in enumerate(report):
            if t.target in again:
                report[i] = again[t.target]
        for name, t in again.items():
            result.tables.setdefault(name, {})["remaining"] = t.failures
        # a table whose kept rows were capped needs another pass for the rest; one whose
        # repair changed nothing (rows the target refuses, a source still changing) does not
        before = {t.target: t.failures for t in todo}
        todo = [t for t in again.values() if t.failures and t.failures < before.get(t.target, 0)]
    return result


def _changes(setup: _Setup, table: TableValidation) -> Iterator[tuple[str, Change]]:
    plan = setup.plan
    key_names = setup.key_names
    for diff in table.rows:
        if diff.type is FailureType.MISSING_SOURCE:
            yield "deleted", Change(Op.DELETE, plan.target_id, key=dict(diff.key))
            continue
        assert diff.source is not None
        what = "inserted" if diff.type is FailureType.MISSING_TARGET else "updated"
        key = {k: diff.source[k] for k in key_names}
        yield what, Change(Op.INSERT, plan.target_id, key=key, after=dict(diff.source))


def _repair_table(validator: Validator, table: TableValidation, result: FixResult) -> None:
    setup = validator._setups.get(table.target)
    if setup is None:
        result.skipped[table.target] = "not compared"
        return
    if not setup.key:
        result.skipped[table.target] = (
            "the table has no key to address its rows; copy it again "
            "(replikit copy --prep truncate)"
        )
        return
    counts = result.tables.setdefault(table.target, {"inserted": 0, "updated": 0, "deleted": 0})
    try:
        writer = apply_target(validator.task.target).change_writer()
    except Error as exc:
        result.skipped[table.target] = str(exc)
        return
    try:
        batch: list[Change] = []
        done: dict[str, int] = {}
        for what, change in _changes(setup, table):
            batch.append(change)
            done[what] = done.get(what, 0) + 1
            if len(batch) >= _CHUNK:
                _apply(writer, setup, batch)
                batch = []
        if batch:
            _apply(writer, setup, batch)
        for what, n in done.items():
            counts[what] = counts.get(what, 0) + n
        log.info("repaired %s: %s", table.target, done)
    except Error as exc:
        result.skipped[table.target] = f"repair failed: {exc}"
    finally:
        writer.close()


def _apply(writer: object, setup: _Setup, changes: list[Change]) -> None:
    tx = Transaction(tuple(changes), position=NO_POSITION)
    plan = setup.plan
    writer.apply({plan.target_id: plan}, [tx], checkpoint=None, batch=True)  # type: ignore[attr-defined]

"""Rendering changes into statements and running them, in the two apply modes.

========================  =====================================================================
change                    statements (transactional apply, source order)
========================  =====================================================================
insert                    upsert of the image's columns (``INSERT ... ON DUPLICATE KEY UPDATE``)
update, full image        upsert of the new key; ``DELETE`` of the old key first if it moved
update, partial image     ``UPDATE ... SET <present columns> WHERE key``; when the key moves,
                          first delete a row already at the new key if the old key exists
delete                    ``DELETE ... WHERE key`` (nothing when the row is missing)
truncate                  ``DELETE FROM`` (``TRUNCATE`` is DDL and would commit); a run of
                          truncates clears referencing tables before referenced ones
========================  =====================================================================

:func:`run_changes` coalesces consecutive upserts of one table and column set, and consecutive
deletes of one table, into multi-row statements (MySQL applies the rows of one statement in
order, so the effect is that of the sequence). :func:`run_net` writes a
:class:`~replikit.pipeline.netchange.NetBatch`: per group, clears, then deletes (referencing
tables first), upserts (referenced tables first), partial updates, each as multi-row
statements of at most ``chunk_rows`` rows and about a quarter of ``max_allowed_packet``.

Every statement's warnings are checked: strict ``sql_mode`` turns most bad values into errors,
but MySQL still only *notes* some alterations (trailing spaces cut from a VARCHAR). Any error
or warning in these fast paths makes the writer roll back and run :func:`replay`: the changes
one statement at a time, in source order, where the first failure becomes a
:class:`~replikit.DataError` naming table, key and column -- or, when every change goes through
(a batch whose net rows swapped values of a secondary unique key), the replay's result commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from replikit.changes import Change, Op, Transaction
from replikit.endpoints.mysql._apply_table import (
    Key,
    Shape,
    TableApply,
    guard_message,
)
from replikit.endpoints.mysql._connect import (
    Driver,
    column_in_message,
    data_error,
    error_code,
    error_text,
)
from replikit.errors import DataError, Error
from replikit.pipeline import apply_support
from replikit.pipeline.apply_support import Unit, fk_order, units
from replikit.pipeline.netchange import NetBatch, TableNet
from replikit.schema.model import TableId

__all__ = [
    "BENIGN_WARNINGS",
    "LOST",
    "Runner",
    "Step",
    "Warned",
    "render",
    "replay",
    "run_changes",
    "run_net",
]

#: driver error numbers that mean the connection is gone (server gone away, lost during a
#: query, lost while reading, connection killed (MariaDB), disconnected for inactivity (MySQL))
LOST = frozenset({2006, 2013, 2055, 1927, 4031})
_NOT_NULL = 1048
#: warnings that say nothing about the values written: deprecated syntax, and "unsafe for
#: statement-based binary logging" (ON DUPLICATE KEY UPDATE on a table with two unique keys,
#: noted when the target server logs statements)
BENIGN_WARNINGS = frozenset({1287, 1592, 1681})
Tables = Mapping[TableId, TableApply]


class Warned(Exception):
    """A statement succeeded with warnings: MySQL altered or ignored something."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("; ".join(messages) or "a warning")
        self.messages = list(messages)


@dataclass(slots=True)
class Step:
    """One statement kind on one table, over one or more rows of parameters."""

    kind: str  # "upsert" | "delete" | "update" | "evict" | "clear"
    table: TableApply
    shape: Shape | None = None
    rows: list[list[Any]] = field(default_factory=list)

    def joins(self, other: Step) -> bool:
        """Whether ``other`` can run in the same multi-row statement, after this one."""
        return (
            other.kind == self.kind
            and self.kind in ("upsert", "delete")
            and other.table is self.table
            and other.shape is self.shape
        )


class Runner:
    """Executes steps on one cursor, checking warnings after every statement."""

    def __init__(
        self, conn: Any, cur: Any, driver: Driver, *, chunk_rows: int, chunk_bytes: int
    ) -> None:
        self.conn = conn
        self.cur = cur
        self.driver = driver
        self.chunk_rows = chunk_rows
        self.chunk_bytes = chunk_bytes

    def execute(self, step: Step) -> None:
        """Run ``step``: multi-row statements for upserts and deletes, else one per row."""
        table = step.table
        if step.kind == "clear":
            self._run(table.clear_sql(), ())
        elif step.kind in ("upsert", "delete"):
            for rows in self._chunks(step.rows):
                params = [v for row in rows for v in row]
                if step.kind == "delete":
                    self._run(table.delete_sql(len(rows)), params)
                else:
                    assert step.shape is not None
                    self._run(table.upsert_sql(step.shape, len(rows)), params)
        else:
            if step.kind == "evict":
                sql = table.evict_sql()
            else:
                assert step.shape is not None
                sql = table.update_sql(step.shape)
            for row in step.rows:
                self._run(sql, row)

    def _chunks(self, rows: list[list[Any]]) -> Iterator[list[list[Any]]]:
        if len(rows) <= 1:
            yield rows
            return
        start, size = 0, 0
        for i, row in enumerate(rows):
            n = sum(len(v) if isinstance(v, str | bytes) else 8 for v in row) + 8
            if i > start and (i - start >= self.chunk_rows or size + n > self.chunk_bytes):
                yield rows[start:i]
                start, size = i, 0
            size += n
        yield rows[start:]

    def _run(self, sql: str, params: Sequence[Any]) -> None:
        self.cur.execute(sql, params)
        if self.driver.warning_count(self.conn, self.cur):
            self.cur.execute("SHOW WARNINGS LIMIT 10")
            found = [r for r in self.cur.fetchall() if int(r[1]) not in BENIGN_WARNINGS]
            if found:
                raise Warned([f"{r[2]} ({r[0]} {r[1]})" for r in found])


# -- rendering --------------------------------------------------------------------------------
def _upsert(table: TableApply, key: Key, image: Mapping[str, Any]) -> Step:
    if not table.key_set <= image.keys():
        image = {**dict(zip(table.key, key, strict=True)), **image}
    shape = table.shape(table.columns(image))
    return Step("upsert", table, shape, [table.row(shape, image, key)])


def _delete(table: TableApply, keys: Sequence[Key]) -> Step:
    return Step("delete", table, table.key_shape, [table.key_values(k) for k in keys])


def _update(table: TableApply, old: Key, values: Mapping[str, Any]) -> list[Step]:
    """A partial update of the row at ``old`` (a key move when ``values`` moves the key)."""
    new = tuple(values.get(c, v) for c, v in zip(table.key, old, strict=True))
    columns = table.columns(values)
    old_params = table.key_values(old)
    steps = []
    if new == old:
        columns = tuple(c for c in columns if c not in table.key_set)
        if not columns:
            return []
    else:
        evict = table.key_values(new)
        steps.append(Step("evict", table, None, [old_params + evict]))
    shape = table.shape(columns)
    steps.append(Step("update", table, shape, [table.row(shape, values, old) + old_params]))
    return steps


def change_key(table: TableApply, change: Change) -> Key:
    """The key a change addresses (the old key for updates)."""

    def missing(column: str) -> DataError:
        return DataError(
            f"a change has no value for key column {column!r}", table=table.label, column=column
        )

    return apply_support.change_key(table.key, change, missing)


def render(change: Change, table: TableApply) -> list[Step]:
    """The steps of one insert, update or delete (see the module docs)."""
    key = change_key(table, change)
    if change.op is Op.DELETE:
        return [_delete(table, [key])]
    after = change.after or {}
    if change.op is Op.INSERT:
        return [_upsert(table, key, after)]
    new = tuple(after.get(c, v) for c, v in zip(table.key, key, strict=True))
    if table.is_full(after):
        upsert = _upsert(table, new, after)
        return [upsert] if new == key else [_delete(table, [key]), upsert]
    return _update(table, key, after)


def _steps(unit: Unit, tables: Tables) -> list[Step]:
    if isinstance(unit, list):
        tids = fk_order({c.table for c in unit}, lambda t: tables[t].plan)
        return [Step("clear", tables[t]) for t in reversed(tids)]
    return render(unit, tables[unit.table])


def run_changes(runner: Runner, transactions: Sequence[Transaction], tables: Tables) -> None:
    """Transactional apply: every change in source order, runs coalesced (see module docs)."""
    pending: Step | None = None
    for unit in units(transactions):
        for step in _steps(unit, tables):
            if pending is not None and pending.joins(step):
                pending.rows += step.rows
                continue
            if pending is not None:
                runner.execute(pending)
            pending = step
    if pending is not None:
        runner.execute(pending)


def run_net(runner: Runner, net: NetBatch, tables: Tables) -> None:
    """Batch apply: each group's clears, deletes, upserts and partial updates."""
    for group in net.groups:
        order = fk_order(group, lambda t: tables[t].plan)
        for tid in reversed(order):
            if group[tid].truncate:
                runner.execute(Step("clear", tables[tid]))
        for tid in reversed(order):
            if group[tid].deletes:
                runner.execute(_delete(tables[tid], list(group[tid].deletes)))
        for tid in order:
            _upserts(runner, tables[tid], group[tid])
        for tid in order:
            for key, values in group[tid].updates.items():
                for step in _update(tables[tid], key, values):
                    runner.execute(step)


def _upserts(runner: Runner, table: TableApply, net: TableNet) -> None:
    by_shape: dict[int, Step] = {}
    for key, image in net.upserts.items():
        step = _upsert(table, key, image)
        found = by_shape.get(id(step.shape))
        if found is None:
            by_shape[id(step.shape)] = step
        else:
            found.rows += step.rows
    for step in by_shape.values():
        runner.execute(step)


# -- the slow path: one statement at a time, naming the failing change ------------------------
def replay(
    runner: Runner,
    transactions: Sequence[Transaction],
    tables: Tables,
    lost: Callable[[BaseException], bool],
) -> None:
    """Apply change by change; the first failure raises an error naming its change."""
    for unit in units(transactions):
        steps = _steps(unit, tables)
        for step in steps:
            try:
                runner.execute(step)
            except Warned as exc:
                raise _warned(exc, unit, tables) from None
            except runner.driver.Error as exc:
                if lost(exc):
                    raise
                raise _failed(exc, step, unit, tables) from None


def _warned(exc: Warned, unit: Unit, tables: Tables) -> DataError:
    first = unit[0] if isinstance(unit, list) else unit
    table = tables[first.table]
    key = None if isinstance(unit, list) else table.key_dict(change_key(table, unit))
    return DataError(
        f"MySQL would alter the value: {exc}",
        table=table.label,
        column=column_in_message(exc.messages[0]) if exc.messages else None,
        key=key,
    )


def _failed(exc: BaseException, step: Step, unit: Unit, tables: Tables) -> Error:
    if isinstance(unit, list):
        return data_error(exc, step.table.label, key=None)
    table = tables[unit.table]
    key = change_key(table, unit)
    if step.kind == "upsert" and table.guard and error_code(exc) == _NOT_NULL:
        column = next((c for c in table.target_key if f"'{c}'" in error_text(exc)), None)
        if column is not None and None not in key:
            return DataError(guard_message(), table=table.label, key=table.key_dict(key))
    return data_error(exc, table.label, key=table.key_dict(key))

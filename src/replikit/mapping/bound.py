"""Rules bound to a source table: the target shape, and the row and change functions.

:class:`TableMapping` is the public "source row -> target row" API (validation uses it to
compare a source row with its target row): :meth:`TableMapping.keeps` (the row filter),
:meth:`TableMapping.row` (type changes, masks, added and removed columns; names stay the
source's, as the pipeline's writers expect) and :attr:`TableMapping.shape` (the table the
plan converts); :meth:`TableMapping.expand` maps a CDC change, evaluating the filter on the
before and after images, so an update that moves a row out of the filter becomes a delete and
one that moves it in an upsert. :func:`replikit.mapping.binding.bind_table` makes them.

Per row, in order: the filter (on source values), type changes, masks, added columns (their
expressions see the values after type changes and masks, so a masked value never leaks into
an added column), removed columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from replikit.changes import Change, Op
from replikit.errors import DataError
from replikit.mapping.expressions import Expression, Meta
from replikit.mapping.filters import Predicate
from replikit.mapping.masking import Mask
from replikit.mapping.rules import Rule
from replikit.schema.model import TableSchema
from replikit.schema.types import Type

__all__ = ["AddedColumn", "TableMapping"]


@dataclass(frozen=True, slots=True)
class AddedColumn:
    """A column the rules add: its name, type and expression (``None``: always NULL)."""

    name: str
    type: Type
    expression: Expression | None
    rule: Rule
    cast: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class TableMapping:
    """The rules of one source table, bound to its schema (see the module docs)."""

    source: TableSchema
    shape: TableSchema
    predicate: Predicate | None = None
    casts: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
    masks: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
    added: tuple[AddedColumn, ...] = ()
    removed: frozenset[str] = frozenset()
    key: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: the mask rule of each masked column (what :mod:`replikit.mapping.pushed` may push)
    mask_rules: tuple[tuple[str, Mask], ...] = ()
    #: the masking key (never in a repr)
    secret: bytes | None = field(default=None, repr=False, compare=False)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(sep=" "))
    _full_load: Meta = field(init=False, repr=False, compare=False)

    @property
    def changes_rows(self) -> bool:
        """Whether rows need work (else the mapping only renames)."""
        return bool(self.predicate or self.casts or self.masks or self.added or self.removed)

    @property
    def flags_deletes(self) -> bool:
        """An added column uses ``operation_indicator``: deleted rows stay, flagged."""
        return any(a.expression is not None and a.expression.flags_deletes for a in self.added)

    def keeps(self, row: Mapping[str, Any]) -> bool:
        """Whether the row filter keeps ``row`` (source names and values)."""
        return self.predicate is None or self.predicate.holds(row)

    def __post_init__(self) -> None:
        meta = Meta.full_load(self.source.id.schema, self.source.id.name, self.started)
        object.__setattr__(self, "_full_load", meta)

    def row(self, row: Mapping[str, Any], meta: Meta | None = None) -> dict[str, Any]:
        """``row`` (source names and values) as the target gets it (names still the source's;
        the plan renames). ``DataError`` names the column and key of a value that does not
        fit a type change or an expression's type."""
        out = self.key_values(row)
        if self.added:
            m = meta or self._full_load
            for a in self.added:
                value = None if a.expression is None else self._evaluate(a, out, m)
                out[a.name] = self._apply(a.cast, value, out, a.name)
        for column in self.removed:
            out.pop(column, None)
        return out

    def rows(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`row` of each full-load row the filter keeps, with each added column's
        expression evaluated for all of them at once (the same values as row by row)."""
        pred = self.predicate
        out = [self.key_values(r) for r in rows if pred is None or pred.holds(r)]
        for a in self.added:
            if a.expression is None:
                values: list[Any] = [None] * len(out)
            else:
                try:
                    values = a.expression.evaluate_many(out, self._full_load)
                except Exception:  # name the row: evaluate them one by one
                    values = [self._evaluate(a, r, self._full_load) for r in out]
            for r, value in zip(out, values, strict=True):
                r[a.name] = self._apply(a.cast, value, r, a.name)
        for column in self.removed:
            for r in out:
                r.pop(column, None)
        return out

    def key_values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """``row`` after type changes and masks only (how the target holds a key)."""
        out = dict(row)
        for column, fn in self.casts:
            if column in out:
                out[column] = self._apply(fn, out[column], out, column)
        for column, fn in self.masks:
            if column in out:
                out[column] = fn(out[column])
        return out

    def _evaluate(self, a: AddedColumn, row: Mapping[str, Any], meta: Meta) -> Any:
        assert a.expression is not None
        missing = [c for c in a.expression.columns if c not in row]
        if missing:
            raise DataError(
                f"{a.rule.label()}: column(s) {', '.join(missing)} are not in the change the "
                "source sent (an unchanged large value); give the table a full row image "
                "(PostgreSQL: ALTER TABLE ... REPLICA IDENTITY FULL)",
                table=str(self.source.id),
                column=a.name,
            )
        try:
            return a.expression.evaluate(row, meta)
        except Exception as exc:
            raise DataError(
                f"{a.rule.label()}: expression failed: {exc}",
                table=str(self.source.id),
                column=a.name,
                key=self._key_of(row),
            ) from None

    def _apply(
        self, fn: Callable[[Any], Any], value: Any, row: Mapping[str, Any], column: str
    ) -> Any:
        try:
            return fn(value)
        except ValueError as exc:
            raise DataError(str(exc), table=str(self.source.id), column=column,
                            key=self._key_of(row)) from None  # fmt: skip

    def _key_of(self, row: Mapping[str, Any]) -> dict[str, Any]:
        key = self.key or self.source.key or self.source.column_names[:1]
        return {k: row.get(k) for k in key}

    # -- changes ---------------------------------------------------------------------------------
    def _meta(self, change: Change, op: str) -> Meta:
        ts = change.commit_ts.isoformat(sep=" ") if change.commit_ts is not None else self.started
        pos = str(change.position) if change.position is not None else ""
        return Meta(op, ts, pos, self.source.id.schema or "", self.source.id.name)

    def _complete(self, row: Mapping[str, Any] | None) -> bool:
        return row is not None and all(c in row for c in self.source.column_names)

    def _mapped(self, change: Change, op: Op, key: Mapping[str, Any],
                before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                meta_op: str) -> Change:  # fmt: skip
        meta = self._meta(change, meta_op)
        if self.key:
            image = before if before is not None else after
            if image is not None and all(k in image for k in self.key):
                key = {k: image[k] for k in self.key}
        return Change(
            op,
            change.table,
            self.key_values(key) if key else key,
            None if before is None else self.key_values(before),
            None if after is None else self.row(after, meta),
            change.position,
            change.commit_ts,
            change.txid,
        )  # fmt: skip

    def expand(self, change: Change) -> tuple[Change, ...]:
        """``change`` as the target must apply it: none, one, or a delete and an upsert."""
        op = change.op
        if op is Op.TRUNCATE:
            return (change,)
        if op is Op.INSERT:
            if change.after is None or not self.keeps(change.after):
                return ()
            return (self._mapped(change, Op.INSERT, change.key, None, change.after, "INSERT"),)
        if op is Op.DELETE:
            return self._delete(change)
        return self._update(change)

    def _delete(self, change: Change) -> tuple[Change, ...]:
        before = change.before
        pred = self.predicate
        known = pred is not None and before is not None and pred.columns <= before.keys()
        if known and pred is not None and before is not None and not pred.holds(before):
            return ()
        if self.flags_deletes:
            if not self._complete(before):
                raise DataError(
                    "a delete must keep its row flagged (operation_indicator), but the source "
                    "sent only the key; give the table a full row image (PostgreSQL: ALTER "
                    "TABLE ... REPLICA IDENTITY FULL; MySQL: binlog_row_image=FULL)",
                    table=str(self.source.id), key=dict(change.key),
                )  # fmt: skip
            return (self._mapped(change, Op.INSERT, change.key, None, before, "DELETE"),)
        return (self._mapped(change, Op.DELETE, change.key, before, None, "DELETE"),)

    def _update(self, change: Change) -> tuple[Change, ...]:
        pred = self.predicate
        after = change.after or {}
        before = change.before
        if pred is None:
            return (self._mapped(change, Op.UPDATE, change.key, before, after, "UPDATE"),)
        merged = {**before, **after} if before is not None else dict(after)
        if not pred.columns <= merged.keys():
            missing = sorted(pred.columns - merged.keys())
            raise DataError(
                f"cannot evaluate the row filter on an update: the source did not send "
                f"column(s) {', '.join(missing)}; give the table a full row image "
                "(PostgreSQL: ALTER TABLE ... REPLICA IDENTITY FULL)",
                table=str(self.source.id), key=dict(change.key),
            )  # fmt: skip
        now_in = pred.holds(merged)
        was_in = (
            pred.holds(before) if before is not None and pred.columns <= before.keys() else None
        )
        if now_in and was_in:
            return (self._mapped(change, Op.UPDATE, change.key, before, after, "UPDATE"),)
        if not now_in:
            if was_in is False:
                return ()
            return (self._mapped(change, Op.DELETE, change.key, before, None, "UPDATE"),)
        # the row enters the filter (or may): upsert the whole row, after removing the old key
        if not self._complete(merged):
            missing = [c for c in self.source.column_names if c not in merged]
            raise DataError(
                f"a row entered the row filter, but the source did not send column(s) "
                f"{', '.join(missing)} to insert it with; give the table a full row image "
                "(PostgreSQL: ALTER TABLE ... REPLICA IDENTITY FULL)",
                table=str(self.source.id), key=dict(change.key),
            )  # fmt: skip
        new_key = {k: merged.get(k) for k in change.key}
        out: list[Change] = []
        if change.key and new_key != dict(change.key):
            out.append(self._mapped(change, Op.DELETE, change.key, before, None, "UPDATE"))
        out.append(self._mapped(change, Op.INSERT, new_key, None, merged, "UPDATE"))
        return tuple(out)

    def describe(self) -> list[str]:
        """The plan's lines for this table's rules."""
        return list(self.notes)

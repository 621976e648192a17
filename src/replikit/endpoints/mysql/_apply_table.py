# ruff: noqa: S608 -- every identifier goes through DIALECT.quote; values are always bound
"""Per-table apply statements and values for a MySQL/MariaDB target (sans-IO).

Changes name columns by their planned *source* names; :class:`TableApply` maps them to target
columns and adapts values with ``ColumnPlan.target.adapt``, exactly as the full-load writer's
``INSERT`` path does (the driver then binds the adapted values), so a row lands the same
whether it came by full load or by CDC. Generated columns of a MySQL source are left out, as
in full load: the target computes them.

Upserts are ``INSERT ... ON DUPLICATE KEY UPDATE``. MySQL fires that clause on a conflict with
*any* unique index, not only the apply key: a row colliding on a secondary unique key (an
e-mail column, say) with a row of another key would silently overwrite that other row. On
tables with such indexes the first assignment is a guard,
``k = IF(k <=> new.k, k, NULL)``: when the conflicting row has another key it sets its key to
NULL, which strict mode refuses (error 1048), so the statement fails as PostgreSQL's
``ON CONFLICT (key)`` does, and the writer names the change (see :func:`guard_message`).
Deleting by key then inserting would also refuse such a collision, but the delete fires the
target's ``ON DELETE CASCADE`` / ``SET NULL`` foreign keys and delete triggers on every
update, which is why it is not used.

Statements are executed with parameters, so ``%`` inside identifiers is doubled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from replikit.endpoints.mysql import _ddl
from replikit.endpoints.mysql._dialect import DIALECT, BadValue
from replikit.errors import DataError
from replikit.pipeline.apply_support import Image, Key, ShapeBase, TableColumns
from replikit.pipeline.apply_support import percent_safe as _p
from replikit.schema.convert import ColumnPlan, TablePlan

__all__ = ["Key", "Shape", "TableApply", "guard_message"]

q = DIALECT.quote
_ADAPT_ERRORS = (BadValue, ValueError, TypeError, ArithmeticError, AttributeError)
_ALIAS = "rk_new"


def guard_message() -> str:
    """What a tripped secondary-unique-key guard means (see the module docs)."""
    return (
        "the row collides on a unique key other than the apply key with a row of another key "
        "(MySQL's ON DUPLICATE KEY UPDATE would have overwritten that row)"
    )


class Shape(ShapeBase):
    """One column set of a table (source names, in table order): adapters and statements."""

    __slots__ = ("upsert",)

    def __init__(self, source: tuple[str, ...], plans: Sequence[ColumnPlan]) -> None:
        super().__init__(source, plans)
        self.upsert: tuple[str, str, str] | None = None  # head, one row's marks, tail


class TableApply(TableColumns[Shape]):
    """What applying changes to one planned table needs: key, shapes and statements.

    ``guard`` says whether the target has unique indexes besides the apply key, and
    ``mysql_alias`` whether the server wants ``VALUES (...) AS rk_new`` (MySQL 8.0.19+) rather
    than ``VALUES(column)``; the writer sets both with :meth:`configure` after checking the
    target table.
    """

    shape_class = Shape

    def __init__(self, plan: TablePlan) -> None:
        self.label = str(plan.target_id)
        self.name = _p(_ddl.table_name(plan.target_id))
        self.table_sql = self.name
        self.mysql_alias = False  # MySQL 8: ``VALUES (...) AS rk_new`` replaces VALUES()
        self._guard = False
        super().__init__(plan)  # generated columns: computed by the target, never written

    def quote(self, name: str) -> str:
        """A MySQL identifier."""
        return q(name)

    @property
    def guard(self) -> bool:
        """Whether upserts carry the secondary-unique-key guard."""
        return self._guard

    def configure(self, *, guard: bool, alias: bool) -> None:
        """Set what the target server and table need (resets cached upsert statements)."""
        if (guard, alias) != (self._guard, self.mysql_alias):
            self._guard, self.mysql_alias = guard, alias
            for shape in self._shapes.values():
                shape.upsert = None

    # -- values ---------------------------------------------------------------------------
    def row(self, shape: Shape, image: Image, key: Key) -> list[Any]:
        """The image's values in shape order, adapted for the target."""
        values = [image[c] for c in shape.source]
        return self._adapt(shape, values, key)

    def key_values(self, key: Key) -> list[Any]:
        """``key`` adapted for the target."""
        return self._adapt(self.key_shape, list(key), key)

    def _adapt(self, shape: Shape, values: list[Any], key: Key) -> list[Any]:
        for i, adapt in shape.adapters:
            value = values[i]
            if value is None:
                continue
            try:
                values[i] = adapt(value)
            except _ADAPT_ERRORS as exc:
                raise DataError.unwritable(
                    value, exc, table=self.label, column=shape.names[i], key=self.key_dict(key)
                ) from None
        return values

    # -- statements -----------------------------------------------------------------------
    def upsert_sql(self, shape: Shape, rows: int) -> str:
        """A ``rows``-row ``INSERT ... ON DUPLICATE KEY UPDATE`` of the shape's columns."""
        if shape.upsert is None:
            cols = ", ".join(_p(q(n)) for n in shape.names)
            marks = "(" + ", ".join(["%s"] * len(shape.names)) + ")"
            head = f"INSERT INTO {self.name} ({cols}) VALUES "
            shape.upsert = (head, marks, self._on_duplicate(shape))
        head, marks, tail = shape.upsert
        return head + ", ".join([marks] * rows) + tail

    def _on_duplicate(self, shape: Shape) -> str:
        def new(column: str) -> str:
            return f"{_ALIAS}.{column}" if self.mysql_alias else f"VALUES({column})"

        keys = [_p(q(k)) for k in self.target_key]
        sets = []
        if self.guard:
            same = " AND ".join(f"{k} <=> {new(k)}" for k in keys)
            sets.append(f"{keys[0]} = IF({same}, {keys[0]}, NULL)")
        sets += [f"{_p(q(n))} = {new(_p(q(n)))}" for n in shape.names if n not in self.target_key]
        if not sets:
            sets.append(f"{keys[0]} = {keys[0]}")  # the row is there: nothing to change
        alias = f" AS {_ALIAS}" if self.mysql_alias else ""
        return f"{alias} ON DUPLICATE KEY UPDATE {', '.join(sets)}"

    def delete_sql(self, rows: int) -> str:
        """Delete the rows of ``rows`` keys (key values as parameters, key after key)."""
        if len(self.target_key) == 1:
            marks = ", ".join(["%s"] * rows)
            return f"DELETE FROM {self.name} WHERE {_p(q(self.target_key[0]))} IN ({marks})"
        one = f"({self.key_match()})"
        return f"DELETE FROM {self.name} WHERE {' OR '.join([one] * rows)}"

    def evict_sql(self) -> str:
        """Delete the row at a new key while the old key still exists (key-moving update).

        Parameters: the old key, then the new key. A source key is unique, so a row already at
        the new key is one a replay re-created ahead of time; the move replaces it, as the
        source sequence did. (A self-join: MySQL refuses a subquery on the deleted table.)
        """
        on = self.key_match("rk_o.")
        where = self.key_match("rk_n.")
        return (
            f"DELETE rk_n FROM {self.name} AS rk_n JOIN {self.name} AS rk_o ON {on} WHERE {where}"
        )

    def clear_sql(self) -> str:
        """Delete every row (``TRUNCATE`` would commit the transaction: it is DDL in MySQL)."""
        return f"DELETE FROM {self.name}"

"""CDC apply conflicts: a change that finds the target row in a state it did not expect.

A source log is consistent with itself: an insert follows the absence of its key, an update or
a delete follows its presence. A target that disagrees before a batch has drifted from the
source (a row written or removed there by someone else, a table loaded from another snapshot).
Converging (the default) writes the source's final state anyway; ``apply_conflicts="log"`` also
records each conflict and ``"stop"`` refuses the batch (see :mod:`replikit.pipeline.policy`).

How a writer finds them, cheaply and the same way in every apply mode: before it writes a piece
of changes (inside its target transaction, so nothing can slip in between), it asks which of the
keys the piece touches *first* are present (:func:`find_conflicts`); only first touches matter,
because what the piece does to a key after that follows from the source's own order. The
expectation of a first touch is:

==================================  ==================================
first change of the key             the target must
==================================  ==================================
insert                              not hold the key
update (old key)                    hold the key
update moving a row to a new key    not hold the new key
delete                              hold the key
==================================  ==================================

After a TRUNCATE of a table in the piece, nothing about its keys is expected (the table was
emptied). The question is one indexed lookup per key, batched as ``UNION ALL`` of point
queries (:func:`probe_sql`), each of which binds the key's values exactly as the writer's own
``WHERE key = ...`` does, so types and collations compare as the apply statements compare them.
The default ``converge`` asks nothing: its apply path is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from replikit.changes import Change, Op, Transaction
from replikit.errors import DataError
from replikit.positions import Position
from replikit.schema.model import TableId

__all__ = [
    "PROBE_KEYS",
    "Conflict",
    "ConflictError",
    "OnConflicts",
    "Probe",
    "find_conflicts",
    "probe_sql",
]

Key = tuple[Any, ...]
#: keys asked about in one statement (SQLite allows 500 terms in a compound SELECT)
PROBE_KEYS = 200


@dataclass(frozen=True, slots=True)
class Conflict:
    """One change whose row the target held when it should not have, or the reverse.

    Attributes:
        table: the target table.
        op: the change's operation.
        key: the key the change expected (target column names); for an update that moves its
            row, the new key when that one was found taken.
        exists: whether the target held that key.
        position: the source position of the change's transaction.
    """

    table: TableId
    op: Op
    key: Mapping[str, Any]
    exists: bool
    position: Position | None = None

    def __str__(self) -> str:
        key = ", ".join(f"{k}={v!r}" for k, v in self.key.items())
        if self.op is Op.INSERT:
            what = f"insert of key {key} that table {self.table} already holds"
        elif self.op is Op.UPDATE and self.exists:
            what = f"update moving a row to key {key} that table {self.table} already holds"
        else:
            what = f"{self.op.value} of key {key} that table {self.table} does not hold"
        at = "" if self.position is None else f" (source position {self.position})"
        return f"apply conflict: {what}{at}"


class ConflictError(DataError):
    """A batch held apply conflicts and the policy is ``apply_conflicts="stop"``: nothing of
    the batch was committed. ``conflicts`` lists them (their tables first)."""

    def __init__(self, conflicts: Sequence[Conflict]) -> None:
        self.conflicts = tuple(conflicts)
        first = self.conflicts[0]
        more = len(self.conflicts) - 1
        tail = f" and {more} more" if more else ""
        super().__init__(
            f"{first}{tail}; the target has drifted from the source (apply_conflicts=stop). "
            "Compare the table (Task.validate), fix or reload it, or use "
            "apply_conflicts='converge' to make the target match the source",
            table=str(first.table),
        )


#: a writer's callback with the conflicts of a piece, before it writes the piece; it may
#: raise (``stop``), and the writer then rolls back
OnConflicts = Callable[[Sequence[Conflict]], None]
#: ``probe(table, keys)``: the indexes in ``keys`` of the keys the target table holds
Probe = Callable[[TableId, Sequence[Key]], set[int]]


def probe_sql(table: str, key_match: str, count: int) -> str:
    """``count`` point queries on ``table`` (``key_match``: the family's ``k = ?`` condition),
    the i-th selecting ``i`` when its key is there. Parameters: the keys, one after the other."""
    return " UNION ALL ".join(
        f"SELECT {i} FROM {table} WHERE {key_match}"  # noqa: S608 - quoted by the family
        for i in range(count)
    )


def _first_touches(
    transactions: Sequence[Transaction],
    keys: Mapping[TableId, tuple[str, ...]],
    key_of: Callable[[TableId, Change], Key],
) -> dict[TableId, dict[Key, tuple[bool, Change, Position | None]]]:
    """Per table, the keys touched first by a change, whether the target must hold them, the
    change and its transaction's position (see the module docs)."""
    out: dict[TableId, dict[Key, tuple[bool, Change, Position | None]]] = {}
    seen: dict[TableId, set[Key]] = {}
    truncated: set[TableId] = set()
    for tx in transactions:
        for change in tx.changes:
            table = change.table
            if change.op is Op.TRUNCATE:
                truncated.add(table)
                continue
            if table in truncated:
                continue
            touched = seen.setdefault(table, set())
            wanted = out.setdefault(table, {})
            key = key_of(table, change)
            if key not in touched:
                touched.add(key)
                wanted[key] = (change.op is not Op.INSERT, change, tx.position)
            if change.op is Op.UPDATE and change.after:
                new = tuple(
                    change.after.get(c, v) for c, v in zip(keys[table], key, strict=True)
                )
                if new != key and new not in touched:
                    touched.add(new)
                    wanted[new] = (False, change, tx.position)
    return out


def find_conflicts(
    transactions: Sequence[Transaction],
    keys: Mapping[TableId, tuple[str, ...]],
    key_of: Callable[[TableId, Change], Key],
    probe: Probe,
    named: Callable[[TableId, Key], Mapping[str, Any]],
) -> list[Conflict]:
    """The conflicts of ``transactions`` (one piece a writer is about to write) against the
    target as it is now.

    Args:
        transactions: the piece, in source order.
        keys: each table's apply key (source column names), as changes name them.
        key_of: the key a change addresses (the old key of an update).
        probe: which keys a table holds (see :data:`Probe`), in batches of
            :data:`PROBE_KEYS` at most.
        named: a key by target column name, for the record.
    """
    found: list[Conflict] = []
    for table, wanted in _first_touches(transactions, keys, key_of).items():
        asked = list(wanted)
        present: set[int] = set()
        for start in range(0, len(asked), PROBE_KEYS):
            chunk = asked[start : start + PROBE_KEYS]
            present.update(start + i for i in probe(table, chunk))
        for i, key in enumerate(asked):
            must_exist, change, position = wanted[key]
            exists = i in present
            if exists != must_exist:
                found.append(Conflict(table, change.op, named(table, key), exists, position))
    return found

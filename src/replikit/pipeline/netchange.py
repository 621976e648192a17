"""Net changes: the core of batch apply.

:func:`net_changes` reduces a run of source transactions to the net effect per
``(table, key)``, as groups a writer applies with bulk operations instead of one statement per
change. Keys are tuples of the key columns' values, in the order given by ``keys[table]``.

Rules (per key, in source order):

* insert, or update with a *full* after-image: the key holds that image (``upserts``);
* insert -> delete: the key is **deleted** (not dropped from the batch): with idempotent apply the
  target may already hold the row (crash replay, full-load overlap);
* update that moves the key (full image): delete the old key, upsert the new one;
* update with a *partial* after-image (absent columns are unchanged, e.g. PostgreSQL unchanged
  TOAST): never a full-row upsert. On a key whose full image the batch holds it merges into that
  image; otherwise it is kept as a partial update (``updates``: key -> {column: value}) merged
  with later partial updates of the same key;
* a partial update that moves a key whose full image the batch does not hold cannot be reduced
  (the new row is the old *target* row plus the new values). It ends the current group and forms a
  group of its own: ``updates[old_key]`` holds the new key's values, i.e.
  ``UPDATE t SET <cols> WHERE <key> = old_key``;
* TRUNCATE: everything earlier for that table (in the group) is discarded and the group records a
  truncate, applied before that table's other operations.

Whether an update's after-image is full is decided from ``columns`` (the table's column names):
an image containing every column is full. Tables missing from ``columns`` treat every update as
partial: always correct, it only reduces less.

Apply order (the writer must respect it): the groups of :attr:`NetBatch.groups` one after the
other; within a group, per table: **truncate, then deletes, then upserts, then partial updates**;
tables are independent. Inside each of the four steps rows may be written in any order (bulk).

Why this order is correct. Within a group each key has exactly one final state: absent
(``deletes``), a full row (``upserts``) or "existing row plus these values" (``updates``); the
three sets are disjoint, and every operation touches only its own key, so for the primary key
any order of the steps gives the same result. The state is *absolute* for deletes and upserts
(it does not depend on what the target held), which is what makes replays converge; a partial
update only exists for keys no insert/delete/full image touched in the group, so its effect
(``row | values`` if the row exists, nothing otherwise) is exactly that of the sequence.

* A key deleted and re-inserted within the batch ends as one upsert of the final image (not a
  delete plus an insert); a key inserted and then deleted ends as one delete.
* Two rows that swap keys (``1 -> 3, 2 -> 1, 3 -> 2`` with full images) end as upserts of
  keys 1 and 2 with their final images: no intermediate state with two rows on one key exists,
  because the batch never moves rows, it writes final images.
* Deletes go before upserts so that a row removed in the batch releases its *other* unique values
  (e.g. an e-mail column) before a new row takes them; truncate goes first because it would
  otherwise wipe the table's later upserts. Partial updates come last: their keys are disjoint
  from the others, so this costs nothing, and it keeps them after any re-created rows should a
  writer choose to fold key moves into them.
* A partial key move forms its own group, applied after everything before it and before
  everything after it, exactly like the sequence.

Idempotence: applying a batch to a target that already holds some of its effects (a replay)
gives the same result as applying its changes one by one with idempotent semantics (upsert for
inserts and full updates, delete-if-exists, ``UPDATE ... WHERE key`` for partial updates). With
partial updates on rows missing from the target, both lose the unchanged columns: the values are
not in the stream (use REPLICA IDENTITY FULL or re-fetch the row).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from replikit.changes import Change, Op, Transaction
from replikit.errors import ConfigError
from replikit.positions import Position
from replikit.schema.model import TableId

__all__ = ["Key", "NetBatch", "TableNet", "net_changes"]

Key = tuple[Any, ...]


@dataclass(slots=True)
class TableNet:
    """The net operations on one table in one group, applied in the field order."""

    truncate: bool = False
    deletes: set[Key] = field(default_factory=set)
    upserts: dict[Key, Mapping[str, Any]] = field(default_factory=dict)
    updates: dict[Key, Mapping[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.truncate) + len(self.deletes) + len(self.upserts) + len(self.updates)

    def run(
        self,
        truncate: Callable[[], object],
        delete: Callable[[list[Key]], object],
        upsert: Callable[[list[Mapping[str, Any]]], object],
        update: Callable[[list[tuple[Key, Mapping[str, Any]]]], object],
    ) -> None:
        """Carry the operations out in the order they must go: truncate, deletes, upserts
        (full rows), then partial updates; each callable gets its operations at once."""
        if self.truncate:
            truncate()
        if self.deletes:
            delete(list(self.deletes))
        if self.upserts:
            upsert(list(self.upserts.values()))
        if self.updates:
            update(list(self.updates.items()))


@dataclass(slots=True)
class NetBatch:
    """The net effect of a run of transactions.

    ``groups`` apply one after the other (almost always there is one); see the module docs for
    the order within a group. ``position`` is the position of the last transaction (``None`` for
    an empty run). The counters count source changes seen (``inserts`` ... ``truncates``).
    """

    groups: list[dict[TableId, TableNet]] = field(default_factory=list)
    position: Position | None = None
    transactions: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    truncates: int = 0

    @property
    def changes(self) -> int:
        """Source changes seen."""
        return self.inserts + self.updates + self.deletes + self.truncates

    @property
    def net_operations(self) -> int:
        """Operations the writer performs: truncates + deletes + upserts + partial updates."""
        return sum(len(t) for g in self.groups for t in g.values())

    def tables(self) -> set[TableId]:
        """Tables with at least one operation."""
        return {t for g in self.groups for t, n in g.items() if len(n)}


# Per-key states while reducing.
_ABSENT = "absent"
_FULL = "full"
_PARTIAL = "partial"
_NOTHING: Mapping[str, Any] = {}  # shared, never written to
_MISSING: Any = object()  # an image's get() default: the column is not there
# the members, read once (``Op.INSERT`` is an attribute lookup on the enum class each time)
_INSERT, _UPDATE, _DELETE, _TRUNCATE = Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE


class _TableState:
    __slots__ = ("entries", "truncated")

    def __init__(self) -> None:
        self.truncated = False
        self.entries: dict[Key, tuple[str, Mapping[str, Any]]] = {}

    def get(self, key: Key) -> tuple[str, Mapping[str, Any]] | None:
        entry = self.entries.get(key)
        if entry is None and self.truncated:
            return (_ABSENT, _NOTHING)
        return entry

    def freeze(self) -> TableNet:
        net = TableNet(truncate=self.truncated)
        for key, (state, row) in self.entries.items():
            if state == _ABSENT:
                if not self.truncated:  # after a truncate the key is gone anyway
                    net.deletes.add(key)
            elif state == _FULL:
                net.upserts[key] = row
            else:
                net.updates[key] = row
        return net


class _Reducer:
    def __init__(
        self,
        keys: Mapping[TableId, tuple[str, ...]],
        columns: Mapping[TableId, Collection[str]] | None,
    ) -> None:
        self.keys = keys
        self.columns = {t: frozenset(c) for t, c in (columns or {}).items()}
        self.batch = NetBatch()
        self.tables: dict[TableId, _TableState] = {}
        # the last table's lookups: runs of changes of one table skip hashing its id
        self._last: tuple[TableId, tuple[str, ...], _TableState, frozenset[str] | None] | None
        self._last = None

    def run(self) -> tuple[Any, dict[Key, tuple[str, Mapping[str, Any]]], str]:
        """For :func:`net_changes`' inline path: the table of the last change, its entries and
        its key column, when its key has one column (else no table)."""
        last = self._last
        if last is None or len(last[1]) != 1:
            return None, {}, ""
        return last[0], last[2].entries, last[1][0]

    def _key_columns(self, table: TableId) -> tuple[str, ...]:
        cols = self.keys.get(table)
        if not cols:
            raise ConfigError(
                f"batch apply needs the key columns of table {table}; "
                "give them in keys or apply this table transactionally"
            )
        return cols

    def _state(self, table: TableId) -> _TableState:
        state = self.tables.get(table)
        if state is None:
            state = self.tables[table] = _TableState()
        return state

    def _cut(self) -> None:
        """End the current group."""
        group = {t: s.freeze() for t, s in self.tables.items()}
        group = {t: n for t, n in group.items() if len(n)}
        if group:
            self.batch.groups.append(group)
        self.tables = {}
        self._last = None

    def add(self, change: Change) -> None:
        # Images are kept as they are, never copied (a Change is immutable, and so are they
        # to everyone downstream); merges build new dicts.
        table = change.table
        op = change.op
        if op is _TRUNCATE:
            self.batch.truncates += 1
            state = self._state(table)
            state.entries.clear()
            state.truncated = True
            return
        last = self._last
        if last is not None and last[0] is table:
            _, kcols, state, cols = last
        else:
            kcols = self._key_columns(table)
            state = self._state(table)
            cols = self.columns.get(table)
            self._last = (table, kcols, state, cols)
        if op is _INSERT:
            self.batch.inserts += 1
            after = change.after if change.after is not None else _NOTHING
            state.entries[_key_of(kcols, after, change.key)] = (_FULL, after)
        elif op is _DELETE:
            self.batch.deletes += 1
            state.entries[_key_of(kcols, change.key, change.before)] = (_ABSENT, _NOTHING)
        elif op is _UPDATE:
            self.batch.updates += 1
            self._update(table, kcols, change, state, cols)
        else:  # pragma: no cover - Op is closed
            raise ConfigError(f"unknown change op {change.op!r}")

    def _update(
        self,
        table: TableId,
        kcols: tuple[str, ...],
        change: Change,
        state: _TableState,
        cols: frozenset[str] | None,
    ) -> None:
        old = _key_of(kcols, change.key, change.before, change.after)
        after = change.after if change.after is not None else _NOTHING
        if len(kcols) == 1:
            value = after.get(kcols[0], _MISSING)
            new = old if value is _MISSING else (value,)
        else:
            new = tuple(after.get(c, v) for c, v in zip(kcols, old, strict=True))
        if cols is not None and after.keys() >= cols:  # a full image
            if new != old:
                state.entries[old] = (_ABSENT, _NOTHING)
            state.entries[new] = (_FULL, after)
            return
        entry = state.get(old)
        if entry is not None and entry[0] == _ABSENT:
            return  # updating a row that is not there: nothing, as in the sequence
        if entry is not None and entry[0] == _FULL:
            row = {**entry[1], **after}
            if new != old:
                state.entries[old] = (_ABSENT, _NOTHING)
            state.entries[new] = (_FULL, row)
            return
        if new == old:
            values = {**entry[1], **after} if entry is not None else after
            state.entries[old] = (_PARTIAL, values)
            return
        # A partial key move of a row the batch has no image of: its own group.
        self._cut()
        self.batch.groups.append({table: TableNet(updates={old: after})})


def _key_of(kcols: tuple[str, ...], *images: Mapping[str, Any] | None) -> Key:
    if len(kcols) == 1:  # the common case, without the loops
        col = kcols[0]
        for image in images:
            if image is not None:
                value = image.get(col, _MISSING)
                if value is not _MISSING:
                    return (value,)
        raise ConfigError(f"change has no value for key column {col!r}")
    values = []
    for col in kcols:
        for image in images:
            if image is not None and col in image:
                values.append(image[col])
                break
        else:
            raise ConfigError(f"change has no value for key column {col!r}")
    return tuple(values)


def net_changes(
    transactions: Iterable[Transaction],
    keys: Mapping[TableId, tuple[str, ...]],
    columns: Mapping[TableId, Collection[str]] | None = None,
) -> NetBatch:
    """Reduce ``transactions`` (in commit order) to their net effect; see the module docs.

    Args:
        transactions: source transactions, oldest first; the batch ends at the last one.
        keys: each table's key columns (primary key or unique key used for apply).
        columns: each table's column names, to tell full after-images from partial ones.

    Raises:
        ConfigError: a table has no key columns, or a change lacks a key value.
    """
    reducer = _Reducer(keys, columns)
    batch = reducer.batch
    add = reducer.add
    # Inserts and deletes of the table of the change before, whose key has one column, are
    # reduced here, as _Reducer.add would (the common case, without its calls); everything
    # else goes through add, after which the run's table is looked up again.
    entries: dict[Key, tuple[str, Mapping[str, Any]]] = {}
    table, col = None, ""
    inserts = deletes = 0
    absent = (_ABSENT, _NOTHING)
    for tx in transactions:
        for change in tx.changes:
            if change.table is table:
                op = change.op
                if op is _INSERT:
                    after = change.after
                    if after is not None:
                        value = after.get(col, _MISSING)
                        if value is not _MISSING:
                            entries[(value,)] = (_FULL, after)
                            inserts += 1
                            continue
                elif op is _DELETE:
                    value = change.key.get(col, _MISSING)
                    if value is not _MISSING:
                        entries[(value,)] = absent
                        deletes += 1
                        continue
            add(change)
            table, entries, col = reducer.run()
        batch.transactions += 1
        batch.position = tx.position
    reducer._cut()
    batch.inserts += inserts
    batch.deletes += deletes
    return batch

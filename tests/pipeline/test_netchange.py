"""Net-change reduction: unit rules and a model-based property test."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikit.changes import Change, Op, Transaction
from replikit.errors import ConfigError
from replikit.pipeline.netchange import NetBatch, net_changes
from replikit.positions import SqliteSeq
from replikit.schema.model import TableId

T = TableId(None, "t")
U = TableId("s", "u")
COLS = ("id", "v", "big")
KEYS = {T: ("id",), U: ("id",)}
COLUMNS = {T: COLS, U: COLS}

Row = dict[str, Any]
State = dict[TableId, dict[tuple[Any, ...], Row]]


def ins(row: Row, table: TableId = T) -> Change:
    return Change(Op.INSERT, table, key={"id": row["id"]}, after=row)


def upd(key: int, after: Row, table: TableId = T) -> Change:
    return Change(Op.UPDATE, table, key={"id": key}, after=after)


def dele(key: int, table: TableId = T) -> Change:
    return Change(Op.DELETE, table, key={"id": key})


def trunc(table: TableId = T) -> Change:
    return Change(Op.TRUNCATE, table)


def txs(*changes: Change) -> list[Transaction]:
    return [Transaction((c,), SqliteSeq(i + 1)) for i, c in enumerate(changes)]


# -- the reference: apply changes one by one, idempotently ----------------------------------


def apply_one(state: State, change: Change, full: bool) -> None:
    rows = state.setdefault(change.table, {})
    if change.op is Op.TRUNCATE:
        rows.clear()
    elif change.op is Op.INSERT:
        assert change.after is not None
        rows[(change.after["id"],)] = dict(change.after)
    elif change.op is Op.DELETE:
        rows.pop((change.key["id"],), None)
    else:
        assert change.after is not None
        old = (change.key["id"],)
        after = dict(change.after)
        if full and all(c in after for c in COLS):  # full image: upsert semantics
            rows.pop(old, None)
            rows[(after["id"],)] = after
        elif old in rows:  # UPDATE ... SET <present columns> WHERE key = old
            row = {**rows.pop(old), **after}
            rows[(row["id"],)] = row


def apply_net(state: State, batch: NetBatch) -> None:
    """Apply in the documented order: groups; per table truncate, deletes, upserts, updates."""
    for group in batch.groups:
        for table, net in group.items():
            rows = state.setdefault(table, {})
            if net.truncate:
                rows.clear()
            for key in net.deletes:
                rows.pop(key, None)
            for key, row in net.upserts.items():
                rows[key] = dict(row)
            for key, values in net.updates.items():
                if key in rows:
                    row = {**rows.pop(key), **values}
                    rows[(row["id"],)] = row


def norm(state: State) -> State:
    return {t: dict(r) for t, r in state.items() if r}


def copy(state: State) -> State:
    return {t: {k: dict(r) for k, r in rows.items()} for t, rows in state.items()}


# -- unit rules ---------------------------------------------------------------------------


def test_insert_then_update_is_one_upsert_of_the_final_image() -> None:
    b = net_changes(txs(ins({"id": 1, "v": 1, "big": "x"}), upd(1, {"id": 1, "v": 2})), KEYS)
    (g,) = b.groups
    assert g[T].upserts == {(1,): {"id": 1, "v": 2, "big": "x"}}
    assert not g[T].deletes and not g[T].updates
    assert (b.inserts, b.updates, b.deletes, b.net_operations) == (1, 1, 0, 1)


def test_insert_then_delete_still_deletes_the_key() -> None:
    b = net_changes(txs(ins({"id": 1, "v": 1, "big": "x"}), dele(1)), KEYS)
    (g,) = b.groups
    assert g[T].deletes == {(1,)} and not g[T].upserts


def test_delete_then_reinsert_is_one_upsert() -> None:
    b = net_changes(txs(dele(1), ins({"id": 1, "v": 9, "big": "y"})), KEYS)
    (g,) = b.groups
    assert g[T].upserts == {(1,): {"id": 1, "v": 9, "big": "y"}} and not g[T].deletes


def test_full_key_change_is_delete_old_upsert_new() -> None:
    b = net_changes(txs(upd(1, {"id": 2, "v": 1, "big": "x"})), KEYS, COLUMNS)
    (g,) = b.groups
    assert g[T].deletes == {(1,)}
    assert g[T].upserts == {(2,): {"id": 2, "v": 1, "big": "x"}}


def test_key_swap_with_full_images_writes_final_images() -> None:
    b = net_changes(
        txs(
            upd(1, {"id": 3, "v": "a", "big": "A"}),
            upd(2, {"id": 1, "v": "b", "big": "B"}),
            upd(3, {"id": 2, "v": "a", "big": "A"}),
        ),
        KEYS,
        COLUMNS,
    )
    (g,) = b.groups
    assert g[T].upserts == {
        (1,): {"id": 1, "v": "b", "big": "B"},
        (2,): {"id": 2, "v": "a", "big": "A"},
    }
    assert g[T].deletes == {(3,)}


def test_partial_update_stays_partial_and_merges() -> None:
    b = net_changes(txs(upd(1, {"id": 1, "v": 2}), upd(1, {"id": 1, "big": "z"})), KEYS, COLUMNS)
    (g,) = b.groups
    assert g[T].updates == {(1,): {"id": 1, "v": 2, "big": "z"}} and not g[T].upserts


def test_update_without_columns_is_treated_as_partial() -> None:
    b = net_changes(txs(upd(1, {"id": 1, "v": 2, "big": "x"})), KEYS)
    assert b.groups[0][T].updates == {(1,): {"id": 1, "v": 2, "big": "x"}}


def test_full_image_then_partial_update_merges_into_full_image() -> None:
    b = net_changes(
        txs(upd(1, {"id": 1, "v": 1, "big": "x"}), upd(1, {"id": 1, "v": 5})), KEYS, COLUMNS
    )
    assert b.groups[0][T].upserts == {(1,): {"id": 1, "v": 5, "big": "x"}}


def test_partial_key_move_of_unknown_row_is_its_own_group() -> None:
    b = net_changes(txs(upd(1, {"id": 1, "v": 7}), upd(1, {"id": 2, "v": 8}), dele(5)), KEYS)
    assert [g[T].updates for g in b.groups[:2]] == [
        {(1,): {"id": 1, "v": 7}},
        {(1,): {"id": 2, "v": 8}},
    ]
    assert b.groups[2][T].deletes == {(5,)}


def test_truncate_discards_earlier_changes_and_goes_first() -> None:
    b = net_changes(
        txs(
            ins({"id": 1, "v": 1, "big": "x"}),
            ins({"id": 1, "v": 1, "big": "x"}, U),
            trunc(),
            dele(7),
            ins({"id": 2, "v": 2, "big": "y"}),
            upd(3, {"id": 3, "v": 0}),
        ),
        KEYS,
    )
    (g,) = b.groups
    assert g[T].truncate
    assert g[T].upserts == {(2,): {"id": 2, "v": 2, "big": "y"}}
    assert not g[T].deletes and not g[T].updates  # implied by the truncate
    assert g[U].upserts and not g[U].truncate
    assert b.truncates == 1 and b.position == SqliteSeq(6) and b.transactions == 6


def test_empty_run() -> None:
    b = net_changes([], KEYS)
    assert b.groups == [] and b.position is None and b.net_operations == 0


def test_table_without_key_columns_is_refused() -> None:
    with pytest.raises(ConfigError, match="key columns of table t"):
        net_changes(txs(dele(1)), {})


# -- property: net apply == one-by-one apply, from any replay state -------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[State, list[Change]]:
    """A source start state and a valid history of changes on it (over a small key space)."""
    source: State = {T: {}, U: {}}
    for table in (T, U):
        for k in draw(st.sets(st.integers(0, 4), max_size=3)):
            source[table][(k,)] = {"id": k, "v": 0, "big": f"b{k}"}
    start = copy(source)
    changes: list[Change] = []
    for _ in range(draw(st.integers(0, 14))):
        table = draw(st.sampled_from((T, U)))
        rows = source[table]
        present = sorted(k[0] for k in rows)
        free = [k for k in range(5) if (k,) not in rows]
        choices = ["truncate"] + (["insert"] if free else [])
        choices += ["update", "partial", "delete"] if present else []
        kind = draw(st.sampled_from(choices))
        v = draw(st.integers(1, 9))
        if kind == "truncate":
            c = trunc(table)
        elif kind == "insert":
            k = draw(st.sampled_from(free))
            c = ins({"id": k, "v": v, "big": f"n{v}"}, table)
        elif kind == "delete":
            c = dele(draw(st.sampled_from(present)), table)
        else:
            k = draw(st.sampled_from(present))
            new = draw(st.sampled_from([k, *free]))
            if kind == "update":
                after: Row = {"id": new, "v": v, "big": f"u{v}"}
            else:
                after = {"id": new}
                if draw(st.booleans()):
                    after["v"] = v
                if draw(st.booleans()):
                    after["big"] = f"p{v}"
            c = upd(k, after, table)
        apply_one(source, c, full=True)
        changes.append(c)
    return start, changes


@settings(max_examples=400, deadline=None)
@given(histories(), st.data(), st.booleans())
def test_net_apply_equals_sequential_apply(
    history: tuple[State, list[Change]], data: st.DataObject, know_columns: bool
) -> None:
    start, changes = history
    # Replay state: the target already holds the effect of some prefix of the history.
    prefix = data.draw(st.integers(0, len(changes)), label="prefix")
    target = copy(start)
    for c in changes[:prefix]:
        apply_one(target, c, full=know_columns)
    # Group the changes into transactions of random sizes.
    txns, i = [], 0
    while i < len(changes):
        n = data.draw(st.integers(1, 3), label="tx size")
        txns.append(Transaction(tuple(changes[i : i + n]), SqliteSeq(i + n)))
        i += n

    expected = copy(target)
    for c in changes:
        apply_one(expected, c, full=know_columns)
    batch = net_changes(txns, KEYS, COLUMNS if know_columns else None)
    got = copy(target)
    apply_net(got, batch)
    assert norm(got) == norm(expected)

    source_final = copy(start)
    for c in changes:
        apply_one(source_final, c, full=True)
    if prefix == 0 or (
        know_columns and all(c.op is not Op.UPDATE or len(c.after or {}) == 3 for c in changes)
    ):
        # From the exact start state, or with full images only, the target converges to the source.
        assert norm(got) == norm(source_final)
    assert batch.position == (txns[-1].position if txns else None)
    assert batch.changes == len(changes)

"""find_conflicts (pipeline/conflicts.py) against histories a consistent source could write:
a target equal to the source's prior state has no conflict; every touched key on which they
differ is exactly one conflict. Writers' probes on real databases are in the conformance suite
(test_apply_reports_conflicts) and tests/pipeline/test_conflict_policies.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from replikit.changes import Change, Op, Transaction
from replikit.errors import SchemaError
from replikit.pipeline.apply_support import change_key
from replikit.pipeline.conflicts import PROBE_KEYS, find_conflicts
from replikit.positions import SqliteSeq
from replikit.schema.model import TableId

T = TableId(None, "t")
KEYS = {T: ("id",)}


def _key_of(table: TableId, change: Change) -> tuple[Any, ...]:
    return change_key(KEYS[table], change, lambda c: SchemaError(c))


@st.composite
def histories(draw: st.DrawFn) -> tuple[set[int], list[Transaction], set[int]]:
    """(the source's state before, its transactions, the keys touched before a truncate)."""
    keys = st.integers(0, 9)
    state = set(draw(st.sets(keys)))
    before = set(state)
    touched: set[int] = set()
    truncated = False
    txs = []
    for n in range(draw(st.integers(1, 4))):
        changes = []
        for _ in range(draw(st.integers(0, 8))):
            key = draw(keys)
            if draw(st.integers(0, 15)) == 0:
                changes.append(Change(Op.TRUNCATE, T))
                state.clear()
                truncated = True
                continue
            if not truncated:
                touched.add(key)
            if key not in state:
                changes.append(Change(Op.INSERT, T, key={"id": key}, after={"id": key, "v": n}))
                state.add(key)
            elif draw(st.booleans()):
                changes.append(Change(Op.DELETE, T, key={"id": key}))
                state.discard(key)
            else:
                free = sorted(set(range(10)) - state)
                new = draw(st.sampled_from([key, *free]))
                if not truncated:
                    touched.add(new)
                changes.append(Change(Op.UPDATE, T, key={"id": key}, after={"id": new, "v": n}))
                state.discard(key)
                state.add(new)
        txs.append(Transaction(tuple(changes), SqliteSeq(n + 1)))
    return before, txs, touched


def _probe(target: set[int]):
    def probe(table: TableId, keys: Sequence[tuple[Any, ...]]) -> set[int]:
        assert len(keys) <= PROBE_KEYS
        return {i for i, k in enumerate(keys) if k[0] in target}

    return probe


def _found(txs: list[Transaction], target: set[int]) -> list[int]:
    conflicts = find_conflicts(txs, KEYS, _key_of, _probe(target), lambda t, k: {"id": k[0]})
    return sorted(c.key["id"] for c in conflicts)


@given(histories())
def test_a_target_in_step_with_the_source_has_no_conflict(h) -> None:
    before, txs, _ = h
    assert _found(txs, before) == []


@given(histories(), st.sets(st.integers(0, 9)))
def test_each_touched_key_where_target_and_source_differ_is_one_conflict(h, target) -> None:
    before, txs, touched = h
    assert _found(txs, target) == sorted((before ^ target) & touched)


def test_conflicts_name_the_change_and_its_position() -> None:
    txs = [
        Transaction((Change(Op.INSERT, T, key={"id": 1}, after={"id": 1}),), SqliteSeq(1)),
        Transaction((Change(Op.DELETE, T, key={"id": 2}),), SqliteSeq(2)),
    ]
    conflicts = find_conflicts(txs, KEYS, _key_of, _probe({1}), lambda t, k: {"id": k[0]})
    assert [str(c) for c in conflicts] == [
        "apply conflict: insert of key id=1 that table t already holds (source position "
        f"{SqliteSeq(1)})",
        f"apply conflict: delete of key id=2 that table t does not hold (source position "
        f"{SqliteSeq(2)})",
    ]


def test_many_keys_are_asked_in_chunks() -> None:
    n = PROBE_KEYS * 2 + 7
    txs = [Transaction(tuple(Change(Op.DELETE, T, key={"id": i}) for i in range(n)), SqliteSeq(1))]
    assert _found(txs, set(range(0, n, 2))) == list(range(1, n, 2))

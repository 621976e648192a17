"""Full load then CDC == full load of the final state, for every rule kind (no database).

A random source history over a tiny key space is split at a random point: the target is the
full load of the state at that point (rows filtered and mapped), then the rest of the history
is applied as CDC changes through ``TableMapping.expand`` with the change writers' semantics
(an insert upserts, an update changes an existing row and does nothing to a missing one, a
delete removes the row if there). The result must equal the full load of the final state.
Before images are either complete (MySQL, SQLite, PostgreSQL REPLICA IDENTITY FULL) or absent
(PostgreSQL's default), so both of expand's paths are exercised.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replikit import Mappings, TableId
from replikit.changes import Change, Op
from replikit.mapping import bind_table
from replikit.schema.model import Column, TableSchema
from replikit.schema.types import Type

TID = TableId("s", "t")
KEYED = TableSchema(
    TID,
    (
        Column("id", Type.int_(), nullable=False),
        Column("grp", Type.int_()),
        Column("name", Type.string(20)),
        Column("n", Type.int_()),
        Column("junk", Type.text()),
    ),
    primary_key=("id",),
)
KEYLESS = TableSchema(TID, KEYED.columns)
RULES = {
    "filter": Mappings().filter("s.t", ("grp", ">=", 1)).filter("s.t", ("name", "=", "b")),
    "filter-null": Mappings().filter("s.t", ("grp", "is null")),
    "mask": Mappings().mask("s.t", "name", "hash").mask("s.t", "n", "digits-randomize"),
    "added": Mappings().add_column("s.t", "x", "int8", "coalesce($n, 0) * 2 + length($name)"),
    "removed": Mappings().remove_column("s.t", "junk"),
    "retyped": Mappings().change_type("s.t", "n", "string(30)"),
    "all": Mappings()
    .filter("s.t", ("grp", "between", 1, 2))
    .mask("s.t", "name", "fake-name")
    .add_column("s.t", "x", "string(40)", "$name || ':' || $grp")
    .remove_column("s.t", "junk")
    .change_type("s.t", "n", "decimal(20,0)"),
}
KEYS = [(i,) for i in range(5)]


def _values() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "grp": st.none() | st.integers(0, 3),
            "name": st.none() | st.sampled_from(["a", "b", "c"]),
            "n": st.none() | st.integers(-5, 99),
            "junk": st.none() | st.text(max_size=3),
        }
    )


def _history(data: st.DataObject) -> list[tuple[str, int | None, int | None, dict[str, Any]]]:
    rows: set[int] = set()
    steps = []
    for _ in range(data.draw(st.integers(0, 16))):
        free = [k for k in range(5) if k not in rows]
        used = sorted(rows)
        ops = ["insert"] * bool(free) + ["update", "delete"] * bool(used)
        ops += ["move"] * bool(used and free)
        op = data.draw(st.sampled_from(ops))
        values = data.draw(_values())
        if op == "insert":
            k = data.draw(st.sampled_from(free))
            rows.add(k)
            steps.append(("insert", None, k, values))
        elif op == "update":
            k = data.draw(st.sampled_from(used))
            steps.append(("update", k, k, values))
        elif op == "move":
            k, new = data.draw(st.sampled_from(used)), data.draw(st.sampled_from(free))
            rows.discard(k)
            rows.add(new)
            steps.append(("update", k, new, values))
        else:
            k = data.draw(st.sampled_from(used))
            rows.discard(k)
            steps.append(("delete", k, None, {}))
    return steps


def _replay(state: dict[int, dict[str, Any]], step: tuple[Any, ...], full_before: bool) -> Change:
    """Apply one step to the source ``state``; return the change a CDC reader reports."""
    op, old, new, values = step
    if op == "insert":
        row = {"id": new, **values}
        state[new] = row
        return Change(Op.INSERT, TID, {"id": new}, None, dict(row))
    before = dict(state[old])
    if op == "delete":
        del state[old]
        return Change(Op.DELETE, TID, {"id": old}, before if full_before else None, None)
    del state[old]
    row = {"id": new, **values}
    state[new] = row
    return Change(Op.UPDATE, TID, {"id": old}, before if full_before else None, dict(row))


def _apply(target: dict[Any, dict[str, Any]], change: Change, key: tuple[str, ...]) -> None:
    """A change writer: upsert inserts, update existing rows only, delete if there."""
    old = tuple(change.key[k] for k in key)
    if change.op is Op.INSERT:
        assert change.after is not None
        target[tuple(change.after[k] for k in key)] = dict(change.after)
    elif change.op is Op.DELETE:
        target.pop(old, None)
    elif change.op is Op.UPDATE and old in target:
        assert change.after is not None
        row = {**target.pop(old), **change.after}
        target[tuple(row[k] for k in key)] = row


def _full_load(bound: Any, state: dict[int, dict[str, Any]], key: tuple[str, ...]) -> dict:
    out = {}
    for row in state.values():
        if bound.keeps(row):
            mapped = bound.row(row)
            out[tuple(mapped[k] for k in key)] = mapped
    # the full load maps whole batches (expressions evaluated at once): the same rows
    assert bound.rows(list(state.values())) == list(out.values())
    return out


@pytest.mark.parametrize("rules", list(RULES), ids=list(RULES))
@given(data=st.data())
def test_full_load_then_cdc_equals_full_load_of_final_state(rules: str, data: st.DataObject):
    bound = bind_table(RULES[rules], KEYED, b"secret")
    full_before = data.draw(st.booleans(), label="full before images")
    steps = _history(data)
    cut = data.draw(st.integers(0, len(steps)), label="full load after step")
    state: dict[int, dict[str, Any]] = {}
    for step in steps[:cut]:
        _replay(state, step, full_before)
    target = _full_load(bound, state, ("id",))
    for step in steps[cut:]:
        for change in bound.expand(_replay(state, step, full_before)):
            _apply(target, change, ("id",))
    assert target == _full_load(bound, state, ("id",))


@given(data=st.data())
def test_defined_key_on_a_keyless_table(data: st.DataObject):
    rules = Mappings().define_primary_key("s.t", ["id"]).filter("s.t", ("grp", ">", 0))
    bound = bind_table(rules, KEYLESS, None)
    steps = _history(data)
    state: dict[int, dict[str, Any]] = {}
    target: dict[Any, dict[str, Any]] = {}
    for step in steps:
        change = _replay(state, step, True)
        keyless = Change(change.op, TID, {}, change.before, change.after)  # no key from source
        for out in bound.expand(keyless):
            _apply(target, out, ("id",))
    assert target == _full_load(bound, state, ("id",))

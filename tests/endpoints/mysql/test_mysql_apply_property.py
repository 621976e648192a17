"""MySQL CDC apply against a pure-Python model: random changes, transactions and batches.

A random, valid source history (inserts, full updates, key moves, partial updates, partial key
moves, deletes, truncates over a tiny key space, on a table with a composite key and one with a
single key) is split into random transactions, then into random apply calls, and applied to
three targets: batch apply with multi-row statements, batch apply cut into 2-row statements, and
transactional apply. Each must equal the model. Then the whole history is applied again, split
differently (a replay), and each must still equal the model.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from _my_schema import endpoint, query, run_sql
from hypothesis import given, settings
from hypothesis import strategies as st

from replikit.changes import Change, Op, Transaction
from replikit.pipeline.contracts import Checkpoint
from replikit.positions import SqliteSeq
from replikit.schema.convert import TablePlan, plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

SOURCES = (
    TableSchema(
        TableId("src", "t"),
        (
            Column("k", Type.int_(32), nullable=False),
            Column("k2", Type.string(5), nullable=False),
            Column("a", Type.text()),
            Column("b", Type.int_(32)),
            Column("c", Type.decimal(12, 2)),
        ),
        primary_key=("k", "k2"),
    ),
    TableSchema(
        TableId("src", "u"),
        (Column("id", Type.int_(32), nullable=False), Column("v", Type.text())),
        primary_key=("id",),
    ),
)
KEY_COLUMNS = {"t": ("k", "k2"), "u": ("id",)}
OTHER_COLUMNS = {"t": ("a", "b", "c"), "u": ("v",)}
KEY_SPACE = {"t": [(k, k2) for k in range(3) for k2 in ("x", "X")], "u": [(i,) for i in range(4)]}
TEXT = st.none() | st.text(alphabet="ab %'\"\\\t\né😀", max_size=4)
VALUES = {
    "a": TEXT,
    "b": st.none() | st.integers(-(2**31), 2**31 - 1),
    "c": st.none() | st.decimals(-1000, 1000, places=2, allow_nan=False),
    "v": TEXT,
}
# name -> (batch, chunk_rows)
TARGETS = {"batch": (True, 1000), "chunk2": (True, 2), "transactional": (False, 1000)}

Model = dict[str, dict[tuple[Any, ...], dict[str, Any]]]
Step = tuple[Op, str, tuple[Any, ...] | None, dict[str, Any] | None]

_PLANS: dict[str, dict[str, dict[TableId, TablePlan]]] = {}


def _name(target: str, table: str) -> str:
    return f"{target}_{table}"


def _plans(url: str) -> dict[str, dict[TableId, TablePlan]]:
    """One pair of target tables per apply mode (planned as from PostgreSQL, created once)."""
    if url not in _PLANS:
        ep = endpoint(url)
        out = {}
        for target in TARGETS:
            plans = [
                plan_table(t, source_dialect="postgresql", target=ep.dialect,
                           target_id=TableId(None, _name(target, t.id.name)))
                for t in SOURCES
            ]  # fmt: skip
            ep.writer().prepare(plans, "drop-and-create")
            out[target] = {p.target_id: p for p in plans}
        _PLANS[url] = out
    return _PLANS[url]


def _draw_history(data: st.DataObject) -> tuple[list[Step], Model]:
    """A valid source history and the state it leaves (every row is born in the history)."""
    model: Model = {"t": {}, "u": {}}
    steps: list[Step] = []
    for _ in range(data.draw(st.integers(0, 30), label="changes")):
        table = data.draw(st.sampled_from(["t", "u"]))
        rows = model[table]
        free = [k for k in KEY_SPACE[table] if k not in rows]
        used = sorted(rows)
        ops = ["truncate"] + ["insert"] * bool(free) + ["update", "partial", "delete"] * bool(used)
        ops += ["move", "partial-move"] * bool(used and free)
        op = data.draw(st.sampled_from(ops))
        kcols, others = KEY_COLUMNS[table], OTHER_COLUMNS[table]
        if op == "truncate":
            rows.clear()
            steps.append((Op.TRUNCATE, table, None, None))
            continue
        old = data.draw(st.sampled_from(used)) if op != "insert" else None
        new = data.draw(st.sampled_from(free)) if op in ("insert", "move", "partial-move") else old
        assert new is not None
        if op == "delete":
            del rows[new]
            steps.append((Op.DELETE, table, new, None))
            continue
        partial = op.startswith("partial")
        names = data.draw(st.sets(st.sampled_from(others))) if partial else set(others)
        after = {c: data.draw(VALUES[c], label=c) for c in others if c in names}
        if not partial or new != old or data.draw(st.booleans(), label="key in image"):
            after.update(zip(kcols, new, strict=True))
        if op == "insert":
            rows[new] = after
            steps.append((Op.INSERT, table, None, after))
            continue
        assert old is not None
        row = rows.pop(old)
        rows[new] = {**row, **after} if partial else after
        steps.append((Op.UPDATE, table, old, after))
    return steps, model


def _transactions(steps: list[Step], target: str, cuts: list[bool]) -> list[Transaction]:
    txs: list[Transaction] = []
    pending: list[Change] = []
    for i, (op, table, key, after) in enumerate(steps):
        keys = {} if key is None else dict(zip(KEY_COLUMNS[table], key, strict=True))
        pending.append(Change(op, TableId(None, _name(target, table)), key=keys, after=after))
        if cuts[i] or i == len(steps) - 1:
            txs.append(Transaction(tuple(pending), SqliteSeq(len(txs) + 1)))
            pending = []
    return txs


def _calls(txs: list[Transaction], cuts: list[bool]) -> list[list[Transaction]]:
    calls: list[list[Transaction]] = [[]]
    for tx, cut in zip(txs, cuts, strict=True):
        calls[-1].append(tx)
        if cut:
            calls.append([])
    return [c for c in calls if c]


def _contents(url: str, target: str) -> Model:
    out: Model = {}
    for table in ("t", "u"):
        cols = KEY_COLUMNS[table] + OTHER_COLUMNS[table]
        rows = query(url, f"SELECT {', '.join(cols)} FROM {_name(target, table)}")
        nk = len(KEY_COLUMNS[table])
        out[table] = {r[:nk]: dict(zip(cols, r, strict=True)) for r in rows}
    return out


def _expected(model: Model) -> Model:
    """The model as the target holds it: absent columns of inserted images are NULL."""
    out: Model = {}
    for table, rows in model.items():
        cols = KEY_COLUMNS[table] + OTHER_COLUMNS[table]
        out[table] = {k: {c: row.get(c) for c in cols} for k, row in rows.items()}
    return out


@settings(settings.get_profile("db"), max_examples=40)
@given(data=st.data())
def test_apply_matches_model_and_replays(mysql_url: str, data: st.DataObject) -> None:
    targets = _plans(mysql_url)
    run_sql(mysql_url, ";\n".join(f"DELETE FROM {_name(t, n)}" for t in TARGETS for n in "tu"))
    steps, model = _draw_history(data)
    expected = _expected(model)
    n = len(steps)
    tx_cuts = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="tx cuts")
    for target, (batch, chunk) in TARGETS.items():
        txs = _transactions(steps, target, tx_cuts)
        with endpoint(mysql_url).change_writer(chunk_rows=chunk) as writer:
            for attempt in ("first", "replay"):
                cuts = data.draw(
                    st.lists(st.booleans(), min_size=len(txs), max_size=len(txs)),
                    label=f"{target} {attempt} calls",
                )
                for call in _calls(txs, cuts):
                    cp = Checkpoint(f"prop-{target}", position=call[-1].position)
                    writer.apply(targets[target], call, checkpoint=cp, batch=batch)
                assert _contents(mysql_url, target) == expected, (target, attempt)
            if txs:
                stored = writer.read_checkpoint(f"prop-{target}")
                assert stored is not None and stored.position == txs[-1].position


def _change(target: str, op: Op, key: dict[str, Any] | None = None, **after: Any) -> Change:
    return Change(op, TableId(None, _name(target, "t")), key=key or {}, after=after or None)


@pytest.mark.parametrize("target", list(TARGETS))
def test_tricky_histories(mysql_url: str, target: str) -> None:
    """Histories the reduction must get right, in one call and change by change."""
    plans = _plans(mysql_url)[target]
    batch, chunk = TARGETS[target]
    k = lambda n: {"k": n, "k2": "x"}  # noqa: E731
    full = lambda n, a: {"k": n, "k2": "x", "a": a, "b": n, "c": Decimal(n)}  # noqa: E731
    histories = {
        # two rows swap keys through a third, with full images
        "swap": [
            _change(target, Op.INSERT, **full(1, "one")),
            _change(target, Op.INSERT, **full(2, "two")),
            _change(target, Op.UPDATE, k(1), **full(3, "one")),
            _change(target, Op.UPDATE, k(2), **full(1, "two")),
            _change(target, Op.UPDATE, k(3), **full(2, "one")),
        ],
        # a partial key move onto a key deleted just before; the unchanged b survives
        "partial-move": [
            _change(target, Op.INSERT, **full(1, "one")),
            _change(target, Op.INSERT, **full(2, "two")),
            _change(target, Op.DELETE, k(2)),
            _change(target, Op.UPDATE, k(1), k=2, k2="x", a="moved"),
            _change(target, Op.UPDATE, k(2), a="again"),
        ],
        # a partial key move, then the old key is used again: on replay the moved row is
        # already at the new key when the move comes
        "move-reinsert": [
            _change(target, Op.INSERT, **full(1, "one")),
            _change(target, Op.UPDATE, k(1), k=2, k2="x", a="moved"),
            _change(target, Op.INSERT, **full(1, "new")),
        ],
        # insert then delete, delete then insert
        "churn": [
            _change(target, Op.INSERT, **full(1, "one")),
            _change(target, Op.DELETE, k(1)),
            _change(target, Op.INSERT, **full(2, "two")),
            _change(target, Op.DELETE, k(2)),
            _change(target, Op.INSERT, **full(2, "deux")),
        ],
    }
    expected = {
        "swap": {(1, "x"): "two", (2, "x"): "one"},
        "partial-move": {(2, "x"): "again"},
        "move-reinsert": {(1, "x"): "new", (2, "x"): "moved"},
        "churn": {(2, "x"): "deux"},
    }
    with endpoint(mysql_url).change_writer(chunk_rows=chunk) as writer:
        for name, changes in histories.items():
            for split in (False, True):
                run_sql(mysql_url, f"DELETE FROM {_name(target, 't')}")
                txs = [Transaction((c,), SqliteSeq(i + 1)) for i, c in enumerate(changes)]
                for _ in range(2):  # and a replay
                    calls = [[tx] for tx in txs] if split else [txs]
                    for call in calls:
                        writer.apply(plans, call, checkpoint=None, batch=batch)
                    got = _contents(mysql_url, target)["t"]
                    assert {key: row["a"] for key, row in got.items()} == expected[name], name
                if name == "partial-move":
                    assert got[(2, "x")]["b"] == 1  # from the moved row, never nulled

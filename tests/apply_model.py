"""The change-writer model test, shared by every target family.

A random, valid source history (inserts, full updates, key moves, partial updates, partial key
moves, deletes, truncates over a tiny key space, on a table ``t`` with a composite key and a
table ``u`` with a single key) is drawn with its final state (the model); the family's test
splits it into random transactions and apply calls and compares the target with the model,
then replays it. :func:`check_tricky_histories` runs the histories a net-change reduction most
easily gets wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from replikit.changes import Change, Op, Transaction
from replikit.positions import Position
from replikit.schema.model import TableId

KEY_COLUMNS = {"t": ("k", "k2"), "u": ("id",)}
OTHER_COLUMNS = {"t": ("a", "b", "c"), "u": ("v",)}

Model = dict[str, dict[tuple[Any, ...], dict[str, Any]]]
Step = tuple[Op, str, tuple[Any, ...] | None, dict[str, Any] | None]


def key_space(k2: Sequence[str] = ("x", "y")) -> dict[str, list[tuple[Any, ...]]]:
    """The keys a history may use (``k2``: the text part of ``t``'s composite key)."""
    return {"t": [(k, s) for k in range(3) for s in k2], "u": [(i,) for i in range(4)]}


def values(alphabet: str = "ab%'\"\\\t\né😀") -> dict[str, st.SearchStrategy[Any]]:
    """Strategies for the non-key columns."""
    text = st.none() | st.text(alphabet=alphabet, max_size=4)
    return {
        "a": text,
        "b": st.none() | st.integers(-(2**31), 2**31 - 1),
        "c": st.none() | st.decimals(-1000, 1000, places=2, allow_nan=False),
        "v": text,
    }


def draw_history(
    data: st.DataObject,
    keys: dict[str, list[tuple[Any, ...]]],
    strategies: dict[str, st.SearchStrategy[Any]],
) -> tuple[list[Step], Model]:
    """A valid source history and the state it leaves (every row is born in the history)."""
    model: Model = {"t": {}, "u": {}}
    steps: list[Step] = []
    for _ in range(data.draw(st.integers(0, 30), label="changes")):
        table = data.draw(st.sampled_from(["t", "u"]))
        rows = model[table]
        free = [k for k in keys[table] if k not in rows]
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
        after = {c: data.draw(strategies[c], label=c) for c in others if c in names}
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


def expected(model: Model) -> Model:
    """The model as the target holds it: absent columns of inserted images are NULL."""
    out: Model = {}
    for table, rows in model.items():
        cols = KEY_COLUMNS[table] + OTHER_COLUMNS[table]
        out[table] = {k: {c: row.get(c) for c in cols} for k, row in rows.items()}
    return out


def transactions(
    steps: list[Step],
    table_id: Callable[[str], TableId],
    position: Callable[[int], Position],
    cuts: list[bool],
) -> list[Transaction]:
    """``steps`` as source transactions, cut after every step whose ``cuts`` entry is true."""
    txs: list[Transaction] = []
    pending: list[Change] = []
    for i, (op, table, key, after) in enumerate(steps):
        keys = {} if key is None else dict(zip(KEY_COLUMNS[table], key, strict=True))
        pending.append(Change(op, table_id(table), key=keys, after=after))
        if cuts[i] or i == len(steps) - 1:
            txs.append(Transaction(tuple(pending), position(len(txs) + 1)))
            pending = []
    return txs


def calls(txs: list[Transaction], cuts: list[bool]) -> list[list[Transaction]]:
    """``txs`` grouped into apply calls, cut after every transaction whose entry is true."""
    out: list[list[Transaction]] = [[]]
    for tx, cut in zip(txs, cuts, strict=True):
        out[-1].append(tx)
        if cut:
            out.append([])
    return [c for c in out if c]


def rows_to_model(table: str, rows: Sequence[Sequence[Any]]) -> dict[tuple[Any, ...], Any]:
    """Target rows (key columns first, then the others, in model order) as a model table."""
    cols = KEY_COLUMNS[table] + OTHER_COLUMNS[table]
    nk = len(KEY_COLUMNS[table])
    return {tuple(r[:nk]): dict(zip(cols, r, strict=True)) for r in rows}


def check_tricky_histories(
    apply: Callable[[list[Transaction]], None],
    clear: Callable[[], None],
    contents: Callable[[], dict[tuple[Any, ...], Any]],
    table: TableId,
    position: Callable[[int], Position],
) -> None:
    """Histories the reduction must get right, in one call and change by change, replayed.

    ``apply`` applies one call, ``clear`` empties ``table`` on the target, ``contents`` reads
    it as a model table.
    """

    def change(op: Op, key: dict[str, Any] | None = None, **after: Any) -> Change:
        return Change(op, table, key=key or {}, after=after or None)

    def k(n: int) -> dict[str, Any]:
        return {"k": n, "k2": "x"}

    def full(n: int, a: str) -> dict[str, Any]:
        return {"k": n, "k2": "x", "a": a, "b": n, "c": Decimal(n)}

    histories = {
        # two rows swap keys through a third, with full images
        "swap": [
            change(Op.INSERT, **full(1, "one")),
            change(Op.INSERT, **full(2, "two")),
            change(Op.UPDATE, k(1), **full(3, "one")),
            change(Op.UPDATE, k(2), **full(1, "two")),
            change(Op.UPDATE, k(3), **full(2, "one")),
        ],
        # a partial key move onto a key deleted just before; the unchanged b survives
        "partial-move": [
            change(Op.INSERT, **full(1, "one")),
            change(Op.INSERT, **full(2, "two")),
            change(Op.DELETE, k(2)),
            change(Op.UPDATE, k(1), k=2, k2="x", a="moved"),
            change(Op.UPDATE, k(2), a="again"),
        ],
        # a partial key move, then the old key is used again: on replay the moved row is
        # already at the new key when the move comes
        "move-reinsert": [
            change(Op.INSERT, **full(1, "one")),
            change(Op.UPDATE, k(1), k=2, k2="x", a="moved"),
            change(Op.INSERT, **full(1, "new")),
        ],
        # insert then delete, delete then insert
        "churn": [
            change(Op.INSERT, **full(1, "one")),
            change(Op.DELETE, k(1)),
            change(Op.INSERT, **full(2, "two")),
            change(Op.DELETE, k(2)),
            change(Op.INSERT, **full(2, "deux")),
        ],
    }
    want = {
        "swap": {(1, "x"): "two", (2, "x"): "one"},
        "partial-move": {(2, "x"): "again"},
        "move-reinsert": {(1, "x"): "new", (2, "x"): "moved"},
        "churn": {(2, "x"): "deux"},
    }
    for name, changes in histories.items():
        for split in (False, True):
            clear()
            txs = [Transaction((c,), position(i + 1)) for i, c in enumerate(changes)]
            for _ in range(2):  # and a replay
                for call in [[tx] for tx in txs] if split else [txs]:
                    apply(call)
                got = contents()
                assert {key: row["a"] for key, row in got.items()} == want[name], name
            if name == "partial-move":
                assert got[(2, "x")]["b"] == 1  # from the moved row, never nulled

"""MySQL CDC apply against a pure-Python model: random changes, transactions and batches.

A random, valid source history (inserts, full updates, key moves, partial updates, partial key
moves, deletes, truncates over a tiny key space, on a table with a composite key and one with a
single key) is split into random transactions, then into random apply calls, and applied to
three targets: batch apply with multi-row statements, batch apply cut into 2-row statements, and
transactional apply. Each must equal the model. Then the whole history is applied again, split
differently (a replay), and each must still equal the model.
"""

from __future__ import annotations

from typing import Any

import pytest
from _my_schema import endpoint, query, run_sql
from hypothesis import given, settings
from hypothesis import strategies as st

import apply_model as model
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
KEY_SPACE = model.key_space(k2=("x", "X"))  # case-distinct keys: the collation must keep them
VALUES = model.values("ab %'\"\\\t\né😀")
# name -> (batch, chunk_rows)
TARGETS = {"batch": (True, 1000), "chunk2": (True, 2), "transactional": (False, 1000)}

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


def _contents(url: str, target: str) -> model.Model:
    out: model.Model = {}
    for table in ("t", "u"):
        cols = model.KEY_COLUMNS[table] + model.OTHER_COLUMNS[table]
        rows = query(url, f"SELECT {', '.join(cols)} FROM {_name(target, table)}")
        out[table] = model.rows_to_model(table, rows)
    return out


def _table_id(target: str) -> Any:
    return lambda table: TableId(None, _name(target, table))


@settings(settings.get_profile("db"), max_examples=40)
@given(data=st.data())
def test_apply_matches_model_and_replays(mysql_url: str, data: st.DataObject) -> None:
    targets = _plans(mysql_url)
    run_sql(mysql_url, ";\n".join(f"DELETE FROM {_name(t, n)}" for t in TARGETS for n in "tu"))
    steps, final = model.draw_history(data, KEY_SPACE, VALUES)
    expected = model.expected(final)
    n = len(steps)
    tx_cuts = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="tx cuts")
    for target, (batch, chunk) in TARGETS.items():
        txs = model.transactions(steps, _table_id(target), SqliteSeq, tx_cuts)
        with endpoint(mysql_url).change_writer(chunk_rows=chunk) as writer:
            for attempt in ("first", "replay"):
                cuts = data.draw(
                    st.lists(st.booleans(), min_size=len(txs), max_size=len(txs)),
                    label=f"{target} {attempt} calls",
                )
                for call in model.calls(txs, cuts):
                    cp = Checkpoint(f"prop-{target}", position=call[-1].position)
                    writer.apply(targets[target], call, checkpoint=cp, batch=batch)
                assert _contents(mysql_url, target) == expected, (target, attempt)
            if txs:
                stored = writer.read_checkpoint(f"prop-{target}")
                assert stored is not None and stored.position == txs[-1].position


@pytest.mark.parametrize("target", list(TARGETS))
def test_tricky_histories(mysql_url: str, target: str) -> None:
    """Histories the reduction must get right, in one call and change by change."""
    plans = _plans(mysql_url)[target]
    batch, chunk = TARGETS[target]
    with endpoint(mysql_url).change_writer(chunk_rows=chunk) as writer:
        model.check_tricky_histories(
            lambda call: writer.apply(plans, call, checkpoint=None, batch=batch),
            lambda: run_sql(mysql_url, f"DELETE FROM {_name(target, 't')}"),
            lambda: _contents(mysql_url, target)["t"],
            TableId(None, _name(target, "t")),
            SqliteSeq,
        )

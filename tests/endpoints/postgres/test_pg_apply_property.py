"""CDC apply against a pure-Python model: random changes, transactions and batches.

A random, valid source history (inserts, full updates, key moves, partial updates, partial key
moves, deletes, truncates over a tiny key space, on a table with a composite key and one with a
single key) is split into random transactions, then into random apply calls, and applied to
three targets: batch apply staging every step with COPY, batch apply with parameterised
statements, and transactional apply. Each must equal the model. Then the whole history is
applied again, split differently (a replay), and each must still equal the model.
"""

from __future__ import annotations

import psycopg
import pytest
from _pg_schema import add_primary_keys
from hypothesis import given, settings
from hypothesis import strategies as st

import apply_model as model
import replikit as rk
from replikit.pipeline.contracts import Checkpoint
from replikit.positions import PgLsn
from replikit.schema.convert import TablePlan, plan_table
from replikit.schema.model import TableId

SOURCE_SQL = """
CREATE SCHEMA src;
CREATE TABLE src.t (k integer, k2 text, a text, b integer, c numeric, PRIMARY KEY (k, k2));
CREATE TABLE src.u (id integer PRIMARY KEY, v text);
"""
KEY_SPACE = model.key_space()
VALUES = model.values()
# name -> (batch, bulk_min_rows)
TARGETS = {"staged": (True, 1), "statements": (True, 10**9), "transactional": (False, 100)}

_PLANS: dict[str, dict[str, dict[TableId, TablePlan]]] = {}


def _plans(url: str) -> dict[str, dict[TableId, TablePlan]]:
    """Source tables, and one target schema per apply mode (created once per database)."""
    if url not in _PLANS:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SOURCE_SQL)
        ep = rk.endpoint(url)
        sources = [t for t in ep.reflect().tables if t.id.schema == "src"]
        out = {}
        for schema in TARGETS:
            plans = [
                plan_table(t, source_dialect="postgresql", target=ep.dialect,
                           target_id=TableId(schema, t.id.name))
                for t in sources
            ]  # fmt: skip
            ep.writer().prepare(plans, "drop-and-create")
            add_primary_keys(url, plans)
            out[schema] = {p.target_id: p for p in plans}
        _PLANS[url] = out
    return _PLANS[url]


def _contents(url: str, schema: str) -> model.Model:
    out: model.Model = {}
    with psycopg.connect(url) as conn:
        for table in ("t", "u"):
            cols = model.KEY_COLUMNS[table] + model.OTHER_COLUMNS[table]
            rows = conn.execute(f"SELECT {', '.join(cols)} FROM {schema}.{table}").fetchall()
            out[table] = model.rows_to_model(table, rows)
    return out


@settings(settings.get_profile("db"), max_examples=40)
@given(data=st.data())
def test_apply_matches_model_and_replays(pg_url: str, data: st.DataObject) -> None:
    targets = _plans(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(f'{s}.t, {s}.u' for s in TARGETS)}")
    steps, final = model.draw_history(data, KEY_SPACE, VALUES)
    expected = model.expected(final)
    n = len(steps)
    tx_cuts = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="tx cuts")
    ep = rk.endpoint(pg_url)
    for schema, (batch, bulk) in TARGETS.items():
        txs = model.transactions(steps, lambda t, s=schema: TableId(s, t), PgLsn, tx_cuts)
        with ep.change_writer(bulk_min_rows=bulk) as writer:
            for attempt in ("first", "replay"):
                cuts = data.draw(
                    st.lists(st.booleans(), min_size=len(txs), max_size=len(txs)),
                    label=f"{schema} {attempt} calls",
                )
                for call in model.calls(txs, cuts):
                    cp = Checkpoint(f"prop-{schema}", position=call[-1].position)
                    writer.apply(targets[schema], call, checkpoint=cp, batch=batch)
                assert _contents(pg_url, schema) == expected, (schema, attempt)
            if txs:
                stored = writer.read_checkpoint(f"prop-{schema}")
                assert stored is not None and stored.position == txs[-1].position


@pytest.mark.parametrize("target", list(TARGETS))
def test_tricky_histories(pg_url: str, target: str) -> None:
    """Histories the reduction must get right, in one call and change by change."""
    plans = _plans(pg_url)[target]
    batch, bulk = TARGETS[target]

    def clear() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {target}.t")

    with rk.endpoint(pg_url).change_writer(bulk_min_rows=bulk) as writer:
        model.check_tricky_histories(
            lambda call: writer.apply(plans, call, checkpoint=None, batch=batch),
            clear,
            lambda: _contents(pg_url, target)["t"],
            TableId(target, "t"),
            PgLsn,
        )

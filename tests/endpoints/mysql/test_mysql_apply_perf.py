"""Apply throughput of the MySQL change writer: 10k changes, batch and transactional, each driver.

A benchmark, so opt-in: ``REPLIKIT_BENCH=1 .venv/bin/pytest -s -p no:randomly -n 0
tests/endpoints/mysql/test_mysql_apply_perf.py`` (``REPLIKIT_BENCH_CHANGES`` changes the count,
``REPLIKIT_BENCH_CALL`` the changes per apply call, default 2,500).

The workload is OLTP-like, in transactions of 5 changes over a 1,000-row table with a secondary
index: 50% inserts of new keys, 30% full-image updates, 10% partial updates, 10% deletes. Each
apply call commits its transactions with a checkpoint, as the replicator does. The time counts
``apply`` only (changes built beforehand).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import pytest
from _my_schema import endpoint, numbers, query, run_sql

from replikit.changes import Change, Op, Transaction
from replikit.pipeline.contracts import Checkpoint
from replikit.positions import SqliteSeq
from replikit.schema.convert import plan_table
from replikit.schema.model import TableId

pytestmark = pytest.mark.skipif(
    not os.environ.get("REPLIKIT_BENCH"), reason="benchmark: set REPLIKIT_BENCH=1 to run"
)
T = TableId(None, "b")


def _workload(n: int, seed: int = 0) -> list[Transaction]:
    rng = random.Random(seed)
    live = list(range(1, 1001))
    next_id = 1001
    changes: list[Change] = []
    while len(changes) < n:
        roll = rng.random()
        if roll < 0.5 or len(live) < 10:
            image = {"id": next_id, "n": 0, "s": f"new {next_id}", "note": "x" * rng.randint(0, 80)}
            changes.append(Change(Op.INSERT, T, after=image))
            live.append(next_id)
            next_id += 1
        elif roll < 0.8:
            key = rng.choice(live)
            image = {"id": key, "n": rng.randint(0, 10**6), "s": f"upd {key}", "note": None}
            changes.append(Change(Op.UPDATE, T, key={"id": key}, after=image))
        elif roll < 0.9:
            key = rng.choice(live)
            changes.append(Change(Op.UPDATE, T, key={"id": key}, after={"n": rng.randint(0, 9)}))
        else:
            key = live.pop(rng.randrange(len(live)))
            changes.append(Change(Op.DELETE, T, key={"id": key}))
    return [
        Transaction(tuple(changes[i : i + 5]), SqliteSeq(i // 5 + 1))
        for i in range(0, len(changes), 5)
    ]


def _reset(url: str) -> None:
    run_sql(
        url,
        "DELETE FROM b;\n"
        f"INSERT INTO b SELECT seq, 0, CONCAT('row ', seq), NULL FROM {numbers(1000)}",
    )


@pytest.mark.parametrize("driver", ["mysqlclient", "pymysql"])
def test_apply_throughput(mysql_url: str, driver: str) -> None:
    pytest.importorskip("MySQLdb" if driver == "mysqlclient" else "pymysql")
    n = int(os.environ.get("REPLIKIT_BENCH_CHANGES", "10000"))
    per_call = int(os.environ.get("REPLIKIT_BENCH_CALL", "2500")) // 5
    run_sql(
        mysql_url,
        "CREATE TABLE b (id INT PRIMARY KEY, n INT NOT NULL, s VARCHAR(40), note TEXT, "
        "KEY k_n (n))",
    )
    ep = endpoint(f"{mysql_url}?driver={driver}")
    (table,) = ep.reflect().tables
    plan = plan_table(table, source_dialect="mysql", target=ep.dialect, target_id=T)
    txs = _workload(n)
    results: dict[str, Any] = {}
    for batch in (True, False):
        _reset(mysql_url)
        with ep.change_writer() as writer:
            t0 = time.perf_counter()
            for i in range(0, len(txs), per_call):
                call = txs[i : i + per_call]
                cp = Checkpoint("bench", position=call[-1].position)
                writer.apply({T: plan}, call, checkpoint=cp, batch=batch)
            elapsed = time.perf_counter() - t0
        results[batch] = query(mysql_url, "SELECT * FROM b ORDER BY id")
        mode = "batch" if batch else "transactional"
        changes = sum(len(tx.changes) for tx in txs)
        print(f"\n{driver} {mode}: {changes} changes in {elapsed:.2f} s = "
              f"{changes / elapsed:,.0f} changes/s ({per_call * 5} per apply call)")  # fmt: skip
    assert results[True] == results[False]

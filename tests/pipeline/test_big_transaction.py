"""One huge source transaction replicates in bounded memory, from real PostgreSQL and MariaDB.

A 100,000-row UPDATE in one source transaction would take ~125 MB as Python objects; with
``transaction_memory_bytes`` at 2 MiB the reader spills it to a temporary file and the writer
applies it in pieces inside one target transaction. The peak of memory allocated by Python
(``tracemalloc``, every thread) while the task replicates it must stay far below that, and the
target must equal the source afterwards. The benchmark (benchmarks/big_transaction.py) does
the same with 2,000,000 rows and measures the process's peak RSS.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import test_task_cdc
from test_task_cdc import Db, _create_source, _drain, _target_schema, make_db

import replikit as rk

__all__ = ["make_db"]  # the fixture, shared with test_task_cdc

ROWS = 100_000
SPILL = 2 << 20
PEAK = 40 << 20  # bytes; the transaction's rows alone take ~125 MB unbounded

SETUP = {
    "pg": (
        "CREATE TABLE big (id integer PRIMARY KEY, n integer NOT NULL, s text NOT NULL)",
        f"INSERT INTO big SELECT g, 0, 'row ' || g FROM generate_series(1, {ROWS}) g",
    ),
    "mysql": (
        "CREATE TABLE big (id integer PRIMARY KEY, n integer NOT NULL, s text NOT NULL)",
        f"INSERT INTO big SELECT seq, 0, CONCAT('row ', seq) FROM seq_1_to_{ROWS}",
    ),
}
UPDATE = {
    "pg": "UPDATE big SET n = n + mod(id, 7), s = s || ' updated'",
    "mysql": "UPDATE big SET n = n + mod(id, 7), s = CONCAT(s, ' updated')",
}


def _slow_wait(condition: Callable[[], bool], timeout: float = 600) -> None:
    """``test_task_cdc._wait_for`` with room for the rows to pass under tracemalloc."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _drain_slowly(source: Db, target: Db, **settings: Any) -> rk.Task:
    saved, test_task_cdc._wait_for = test_task_cdc._wait_for, _slow_wait  # type: ignore[assignment]
    try:
        return _drain(source, target, **settings)
    finally:
        test_task_cdc._wait_for = saved


@pytest.mark.timeout(360)  # 100k-row transaction: tens of seconds alone, minutes on a busy machine
@pytest.mark.parametrize("kind", ["pg", "mysql"])
def test_huge_transaction_replicates_in_bounded_memory(
    make_db: Callable[[str], Db], kind: str
) -> None:
    source, target = make_db(kind), make_db(kind)
    _create_source(source, items=10)
    source.execute([(s, ()) for s in SETUP[kind]])
    _drain(source, target, batch_apply=True)  # full load, then CDC is streaming
    source.execute([(UPDATE[kind], ())])  # one transaction, ROWS changes
    tracemalloc.start()
    try:
        task = _drain_slowly(source, target, batch_apply=True, transaction_memory_bytes=SPILL)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (big,) = [t for t in task.statistics() if t.table.endswith("big")]
    assert big.updates == ROWS
    schema = _target_schema(source, target)
    assert target.rows("big", "id", schema) == source.rows("big", "id")
    assert peak < PEAK, f"peak allocated {peak / 2**20:.0f} MiB while replicating {ROWS} rows"


@pytest.mark.parametrize("kind", ["pg", "mysql"])
def test_spilled_transaction_in_transactional_apply(
    make_db: Callable[[str], Db], kind: str
) -> None:
    """Transactional apply (every change in source order) of a transaction in three pieces,
    followed by a small transaction in the same batch: the target equals the source."""
    source, target = make_db(kind), make_db(kind)
    _create_source(source, items=10)
    source.execute([(s.replace(str(ROWS), "25000"), ()) for s in SETUP[kind]])
    _drain(source, target)
    source.execute([(UPDATE[kind], ())])
    source.execute([("UPDATE items SET qty = 42 WHERE id = 3", ())])
    task = _drain_slowly(source, target, transaction_memory_bytes=256 << 10)
    (big,) = [t for t in task.statistics() if t.table.endswith("big")]
    assert big.updates == 25_000
    schema = _target_schema(source, target)
    assert target.rows("big", "id", schema) == source.rows("big", "id")
    assert target.rows("items", "id", schema) == source.rows("items", "id")

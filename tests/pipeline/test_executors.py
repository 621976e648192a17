"""Full-load units on other executors: a process pool runs stages that pickle, and refuses,
before any DDL, the ones that cannot (endpoint readers and writers hold connections)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

import replikit as rk
from replikit import Batch, Column, TableId, TableSchema, Type, Unit

ITEMS = TableSchema(
    TableId(None, "items"),
    (Column("id", Type.int_(64), nullable=False), Column("name", Type.string(20))),
    primary_key=("id",),
    estimated_rows=3000,
)
ROWS = [(i, f"item {i}") for i in range(1, 3001)]


class RangeReader:
    """Rows made from numbers: nothing to connect to, so it pickles."""

    tables = (ITEMS,)

    def units(self, table: TableSchema, *, split_rows: int | None = None) -> list[Unit]:
        return [Unit(table.id, rk.KeyRange(("id",), (i * 1000 + 1,), ((i + 1) * 1000 + 1,)), i, 3)
                for i in range(3)]  # fmt: skip

    def read(self, unit: Unit) -> Iterator[Batch]:
        assert unit.range is not None and unit.range.lower and unit.range.upper
        lo, hi = unit.range.lower[0], unit.range.upper[0]
        for start in range(lo, hi, 250):
            yield Batch(unit.table, ("id", "name"), ROWS[start - 1 : min(start + 249, hi - 1)])


class SqliteFileWriter:
    """Writes to a SQLite file by path, and notes which process wrote each unit."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, plan: rk.TablePlan, batches) -> int:
        conn = sqlite3.connect(self.path, timeout=60)
        n = 0
        with conn:
            for batch in batches:
                conn.executemany("INSERT INTO items VALUES (?, ?)", batch.rows)
                n += len(batch)
            conn.execute("INSERT INTO writers VALUES (?)", (os.getpid(),))
        conn.close()
        return n


def _target(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE TABLE writers (pid INTEGER)")
    conn.close()
    return path


def test_a_process_pool_runs_units_whose_stages_pickle(tmp_path):
    path = _target(tmp_path / "out.db")
    with ProcessPoolExecutor(2) as pool:
        stats = rk.Pipeline(
            RangeReader(), SqliteFileWriter(path), executor=pool, progress=False
        ).run()
    assert stats["items"].state is rk.TableState.COMPLETED
    assert stats["items"].full_load_rows == 3000
    assert stats["items"].units_done == 3
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM items ORDER BY id").fetchall() == ROWS
        pids = {r[0] for r in conn.execute("SELECT pid FROM writers")}
    conn.close()
    assert pids and os.getpid() not in pids  # the rows were written by the pool's processes


def test_a_process_pool_is_refused_before_any_ddl_with_endpoint_stages(tmp_path):
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", ROWS)
    conn.close()
    out = tmp_path / "out.db"
    with ProcessPoolExecutor(2) as pool:
        task = rk.Task(f"sqlite:///{src}", f"sqlite:///{out}", executor=pool)
        with pytest.raises(rk.ConfigError) as info:
            task.run()
    message = str(info.value)
    assert message.startswith("ProcessPoolExecutor runs each unit in another process")
    assert "must pickle" in message and "ThreadPoolExecutor" in message
    with sqlite3.connect(out) as conn:  # nothing was created
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    conn.close()


def test_a_callers_thread_pool_runs_in_process(tmp_path):
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", ROWS)
    conn.close()
    with ThreadPoolExecutor(2) as pool:
        task = rk.Task(f"sqlite:///{src}", f"sqlite:///{tmp_path / 'out.db'}", executor=pool)
        assert task.run().total_rows == 3000


def test_only_an_executor_other_than_threads_or_a_process_pool_may_rerun_a_unit():
    """``may_rerun`` tells a process pool by its class without importing its module first."""
    from concurrent.futures import Executor

    from replikit.pipeline.units import may_rerun

    class Cluster(Executor):
        pass

    with ThreadPoolExecutor(1) as threads, ProcessPoolExecutor(1) as processes:
        assert not may_rerun(threads)
        assert not may_rerun(processes)
    assert may_rerun(Cluster())

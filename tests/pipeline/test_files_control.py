"""Files targets remember suspended and reloading tables across runs, as database targets do
in ``replikit_suspended_tables`` (#17): in the manifest, written before the checkpoint moves.

Without it, a table a policy suspended replicated again from the checkpoint on the next run,
its changes skipped while it was suspended silently lost; and a task that crashed during a
reload wrote the table's changes over a half-finished load, those held since the reload began
lost. Parquet targets, PostgreSQL and SQLite sources; a SQLite target for the database side of
"a reload that did not finish is done again".
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_reload_handoff import CHILD, STEP, TESTS, assert_each_change_once, replayed, task_for
from test_task_cdc import Db, Workload, _create_source, _task, _wait_for, make_db

import replikit as rk
from live_task import run_in_thread, running
from replikit import TableStats, cli
from replikit._failpoints import FAILPOINT_EXIT
from replikit.pipeline import control
from replikit.pipeline.control import SuspendedTable

__all__ = ["make_db"]  # the fixture, shared with test_task_cdc

pytestmark = [pytest.mark.timeout(300)]

#: a price each source keeps and Parquet's decimal(5, 2) refuses
BAD = {"sqlite": 123456789.5, "pg": "NaN"}
NUMERIC = {"sqlite": "DECIMAL(5,2)", "pg": "NUMERIC(5,2)"}


def _table(task: rk.Task, name: str) -> TableStats:
    return next(t for t in task.statistics() if t.table.split(".")[-1] == name)


def _items(source: Db) -> list[tuple[Any, ...]]:
    return [(i, None if p is None else Decimal(str(p))) for i, p in source.rows("items", "id")]


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
def test_a_crash_during_a_reload_then_restart_reloads_it_again(
    make_db: Callable[[str], Db], tmp_path: Path, kind: str
) -> None:
    """The process dies during the reload's load, the stream past changes of the reloaded
    table it held: the restart finds the table ``reloading`` in the manifest and loads it
    again (not replicating it from the checkpoint over the half-finished load), so the
    files replay to the source with each change once."""
    source = make_db(kind)
    _create_source(source)
    folder = tmp_path / "out"
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(CHILD), kind, source.url, str(folder), "load"],
        env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=240,
        check=False,
    )  # fmt: skip
    assert proc.returncode == FAILPOINT_EXIT, f"no crash in the reload:\n{proc.stderr[-3000:]}"
    url = f"file://{folder}"
    assert [(s.table.split(".")[-1], s.state) for s in control.read_suspended(url, "t1")] == [
        ("ledger", "reloading")
    ]
    work = Workload(source, writer=2)
    work.run(STEP)  # while the task is down
    task = task_for(source, folder)
    with running(task):  # no error: the table replicates again
        _wait_for(lambda: _table(task, "ledger").state is rk.TableState.REPLICATING)
        work.run(STEP)  # after the reload
        _wait_for(lambda: replayed(folder, "counters") == source.rows("counters", "id"))
    assert control.read_suspended(url, "t1") == []
    assert_each_change_once(source, folder)


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
def test_a_suspended_table_stays_suspended_after_a_restart(
    make_db: Callable[[str], Db], tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A change Parquet refuses suspends ``items``; its next change, committed with one of
    ``ledger`` (so the checkpoint moves past it), is skipped. The next run keeps ``items``
    suspended, naming why (also in ``replikit status``), and writes none of its changes (it
    used to resume it from the checkpoint, that change lost); a reload then brings the files
    back to the source."""
    source = make_db(kind)
    source.execute([
        (f"CREATE TABLE items (id INTEGER PRIMARY KEY, price {NUMERIC[kind]})", ()),
        ("CREATE TABLE ledger (id INTEGER PRIMARY KEY, note TEXT)", ()),
        *(("INSERT INTO items VALUES (?, ?)", (i, i)) for i in range(1, 6)),
        ("INSERT INTO ledger VALUES (?, ?)", (1, "a")),
    ])  # fmt: skip
    folder = tmp_path / "out"
    url = f"file://{folder}"
    task = task_for(source, folder)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    source.execute([("INSERT INTO items VALUES (?, ?)", (10, 3))])
    source.execute([("INSERT INTO items VALUES (?, ?)", (11, BAD[kind]))])
    _wait_for(lambda: _table(task, "items").state is rk.TableState.SUSPENDED or bool(errors))
    source.execute([("INSERT INTO items VALUES (?, ?)", (12, 4)),
                    ("INSERT INTO ledger VALUES (?, ?)", (2, "b"))])  # fmt: skip
    _wait_for(lambda: _table(task, "ledger").inserts >= 1 or bool(errors))
    task.stop()
    thread.join(60)
    (error,) = errors
    assert isinstance(error, rk.TaskError)
    (row,) = control.read_suspended(url, "t1")
    assert row.state == "suspended" and "Parquet" in row.reason
    # while the task is down: the cause fixed, more changes
    source.execute([("UPDATE items SET price = ? WHERE id = ?", (50, 11)),
                    ("INSERT INTO items VALUES (?, ?)", (13, 5)),
                    ("INSERT INTO ledger VALUES (?, ?)", (3, "c"))])  # fmt: skip
    again = task_for(source, folder, stop_when_idle=2.0)
    with pytest.raises(rk.TaskError, match="items"):
        again.run()
    items = _table(again, "items")
    assert items.state is rk.TableState.SUSPENDED and items.error == row.reason
    assert [r[0] for r in replayed(folder, "items")] == [1, 2, 3, 4, 5, 10], "items resumed"
    assert [r[0] for r in replayed(folder, "ledger")] == [1, 2, 3]
    assert control.read_suspended(url, "t1") == [row]
    assert cli.main(["status", "--task-id", "t1", "--target", url]) == 0  # no status tables
    assert f"{items.table} (suspended): {row.reason}" in capsys.readouterr().out
    # reloaded while the task is stopped, then run: the files give the source
    task_for(source, folder).reload("items")
    assert control.read_suspended(url, "t1") == []
    source.execute([("UPDATE items SET price = ? WHERE id = ?", (7, 13))])
    last = task_for(source, folder, stop_when_idle=2.0)
    last.run()
    assert _table(last, "items").state is rk.TableState.REPLICATING
    assert replayed(folder, "items") == _items(source)


def test_a_database_target_reloads_a_table_whose_reload_did_not_finish(
    make_db: Callable[[str], Db],
) -> None:
    """The same for a database target: a ``reloading`` row (a run that ended during the
    reload) makes the next run load the table again, here over a half-emptied table."""
    source, target = make_db("sqlite"), make_db("sqlite")
    _create_source(source)
    _task(source, target, stop_when_idle=1.0).run()
    store = control.control_store(rk.endpoint(target.url))
    assert store is not None
    store.suspend(SuspendedTable(task="t1", table="items", state="reloading", reason="reloading"))
    target.execute([("DELETE FROM items WHERE id > ?", (100,))])  # the load that did not end
    Workload(source).run(STEP)
    task = _task(source, target, stop_when_idle=2.0)
    task.run()
    assert _table(task, "items").state is rk.TableState.REPLICATING
    assert store.suspended("t1") == []
    for table, order in (("items", "id"), ("ledger", "writer, seq"), ("counters", "id")):
        assert target.rows(table, order) == source.rows(table, order), f"{table} differs"

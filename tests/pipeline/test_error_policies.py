"""Data-error policies on real databases: a value the target refuses (a CHECK constraint of
an existing target table) during CDC and during the full load, under each policy, lands where
the policy says, counted, while the other rows and tables arrive."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from test_task_cdc import (
    Db,
    _task,
    _wait_for,
    make_db,
    target_has,
)

import replikit as rk
from live_task import run_in_thread
from replikit import cli
from replikit._failpoints import inject
from replikit.pipeline import cdc, control, spill

__all__ = ["make_db"]  # the fixture, shared with test_task_cdc

SOURCE = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL)",
    "CREATE TABLE ledger (id INTEGER PRIMARY KEY, note TEXT)",
)
# the target refuses qty >= 100: each such row is a data error
TARGET = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty < 100))",
    "CREATE TABLE ledger (id INTEGER PRIMARY KEY, note TEXT)",
)
KINDS = [("sqlite", "sqlite"), ("pg", "pg")]


def _setup(make_db: Callable[[str], Db], kinds: tuple[str, str], bad_at_load: bool = False):
    source, target = make_db(kinds[0]), make_db(kinds[1])
    source.execute([(s, ()) for s in SOURCE])
    target.execute([(s, ()) for s in TARGET])
    rows = [("INSERT INTO items VALUES (?, ?)", (i, i)) for i in range(1, 6)]
    if bad_at_load:
        rows.append(("INSERT INTO items VALUES (?, ?)", (6, 600)))
    source.execute([*rows, ("INSERT INTO ledger VALUES (?, ?)", (1, "a"))])
    return source, target


def _start(source: Db, target: Db, **policy: Any):
    task = _task(source, target, target_table_prep_mode="do-nothing", error_policy=policy)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    return task, thread, errors


def _cdc_rows(source: Db) -> None:
    """Two bad rows among good ones, then a ledger row (another table) last."""
    for i, qty in ((10, 1), (11, 500), (12, 2), (13, 700), (14, 3)):
        source.execute([("INSERT INTO items VALUES (?, ?)", (i, qty))])
    source.execute([("INSERT INTO ledger VALUES (?, ?)", (2, "b"))])


def _stop(task: rk.Task, thread: Any) -> None:
    task.stop()
    thread.join(60)


def _ids(db: Db, table: str = "items") -> list[int]:
    return [r[0] for r in db.rows(table, "1")]


@pytest.mark.parametrize("kinds", KINDS, ids=["sqlite", "pg"])
def test_skip_row_sets_bad_changes_aside_and_applies_the_others(make_db, kinds) -> None:
    source, target = _setup(make_db, kinds)
    task, thread, errors = _start(source, target, data_errors="skip-row")
    _cdc_rows(source)
    _wait_for(lambda: target_has(target, "ledger", 2) or bool(errors))
    _stop(task, thread)
    assert not errors, errors
    assert sorted(_ids(target)) == [1, 2, 3, 4, 5, 10, 12, 14]
    stats = task.statistics()
    items = stats[next(t.table for t in stats if t.table.endswith("items"))]
    assert items.exceptions == 2 and items.state is rk.TableState.REPLICATING
    rows = control.read_exceptions(target.url, "t1")
    assert sorted(r.key["id"] for r in rows) == [11, 13]  # type: ignore[index]
    assert {r.kind for r in rows} == {"data-error"} and all(r.position for r in rows)
    assert all(r.table == items.table and r.op == "insert" for r in rows)


@pytest.mark.parametrize("kinds", KINDS, ids=["sqlite", "pg"])
def test_suspend_table_stops_that_table_and_the_others_go_on(make_db, kinds) -> None:
    source, target = _setup(make_db, kinds)
    task, thread, errors = _start(source, target)  # the default: suspend-table
    _cdc_rows(source)
    _wait_for(lambda: target_has(target, "ledger", 2) or bool(errors))
    _stop(task, thread)
    (error,) = errors  # a suspended table fails the run (exit 1), as a table error does
    assert isinstance(error, rk.TaskError)
    assert sorted(_ids(target)) == [1, 2, 3, 4, 5, 10]  # up to the bad row
    stats = task.statistics()
    (items,) = [t for t in stats if t.table.endswith("items")]
    assert items.state is rk.TableState.SUSPENDED and "reload" in (items.error or "")
    (row,) = control.read_suspended(target.url, "t1")
    assert row.table == items.table and row.state == "suspended" and "qty" in row.reason
    # a second run keeps it suspended: later changes of items are not applied
    source.execute([("INSERT INTO items VALUES (?, ?)", (20, 4))])
    source.execute([("INSERT INTO ledger VALUES (?, ?)", (3, "c"))])
    task2, thread2, errors2 = _start(source, target)
    _wait_for(lambda: target_has(target, "ledger", 3) or bool(errors2))
    _stop(task2, thread2)
    assert 20 not in _ids(target)
    assert task2.statistics()[items.table].state is rk.TableState.SUSPENDED


@pytest.mark.parametrize("kinds", KINDS[:1], ids=["sqlite"])
def test_skip_row_escalates_to_suspend_after_escalation_count(make_db, kinds) -> None:
    source, target = _setup(make_db, kinds)
    task, thread, errors = _start(source, target, data_errors="skip-row", escalation_count=1)
    _cdc_rows(source)
    _wait_for(lambda: target_has(target, "ledger", 2) or bool(errors))
    _stop(task, thread)
    assert sorted(_ids(target)) == [1, 2, 3, 4, 5, 10]
    (row,) = control.read_exceptions(target.url, "t1")
    assert row.key == {"id": 11}
    assert [s.state for s in control.read_suspended(target.url, "t1")] == ["suspended"]


@pytest.mark.parametrize("kinds", KINDS[:1], ids=["sqlite"])
def test_stop_task_stops_at_the_first_bad_change(make_db, kinds) -> None:
    source, target = _setup(make_db, kinds)
    _, thread, errors = _start(source, target, data_errors="stop-task")
    _cdc_rows(source)
    thread.join(60)
    (error,) = errors
    assert isinstance(error, rk.DataError) and error.key == {"id": 11}
    # nothing after the bad change (10 arrives or not, as its batch was or was not the same)
    assert {1, 2, 3, 4, 5} <= set(_ids(target)) <= {1, 2, 3, 4, 5, 10}
    assert control.read_exceptions(target.url, "t1") == []


@pytest.mark.parametrize("kinds", KINDS, ids=["sqlite", "pg"])
def test_a_bad_row_in_the_full_load_suspends_its_table_and_cdc_goes_on(make_db, kinds) -> None:
    source, target = _setup(make_db, kinds, bad_at_load=True)
    task, thread, errors = _start(source, target)
    source.execute([("INSERT INTO ledger VALUES (?, ?)", (2, "b"))])
    _wait_for(lambda: target_has(target, "ledger", 2) or bool(errors))
    _stop(task, thread)
    (error,) = errors
    assert isinstance(error, rk.TaskError)
    (row,) = control.read_suspended(target.url, "t1")
    assert row.table.endswith("items") and "full load" in row.reason


def _items_equal(source: Db, target: Db) -> bool:
    try:
        return source.rows("items", "id") == target.rows("items", "id")
    except Exception:
        return False


def _suspended_then_fixed(make_db, kinds):
    """A running task whose items table was suspended, its cause fixed at the source."""
    source, target = _setup(make_db, kinds)
    task, thread, errors = _start(source, target)
    _cdc_rows(source)
    _wait_for(lambda: bool(control.read_suspended(target.url, "t1")) or bool(errors))
    source.execute([("UPDATE items SET qty = 50 WHERE qty >= 100", ())])
    return source, target, task, thread, errors


@pytest.mark.parametrize("kinds", KINDS, ids=["sqlite", "pg"])
def test_reload_while_replicating_resumes_the_table_without_a_gap(make_db, kinds) -> None:
    source, target, task, thread, errors = _suspended_then_fixed(make_db, kinds)
    stop = threading.Event()

    def writes() -> None:  # changes to every table during the reload
        i = 100
        while not stop.is_set():
            i += 1
            source.execute([("INSERT INTO items VALUES (?, ?)", (i, i % 50)),
                            ("UPDATE items SET qty = qty + 1 WHERE id = ?", (1,)),
                            ("INSERT INTO ledger VALUES (?, ?)", (i, "x"))])
            time.sleep(0.01)

    writer = threading.Thread(target=writes, daemon=True)
    writer.start()
    task.reload("items", timeout=60)
    time.sleep(0.3)
    stop.set()
    writer.join()
    _wait_for(lambda: _items_equal(source, target) or bool(errors))
    _wait_for(lambda: source.rows("ledger", "id") == target.rows("ledger", "id"))
    _stop(task, thread)
    assert not errors, errors  # nothing suspended any more: the run ends cleanly
    assert control.read_suspended(target.url, "t1") == []
    name = next(t.table for t in task.statistics() if t.table.endswith("items"))
    assert task.statistics()[name].state is rk.TableState.REPLICATING


def test_cli_reload_of_a_stopped_task_then_the_next_run_converges(make_db) -> None:
    source, target, task, thread, _ = _suspended_then_fixed(make_db, ("sqlite", "sqlite"))
    _stop(task, thread)
    source.execute([("INSERT INTO items VALUES (?, ?)", (30, 3))])  # while nothing runs
    status = cli.main(["reload", source.url, target.url, "--table", "items",
                       "--task-id", "t1", "-q"])  # fmt: skip
    assert status == 0
    assert control.read_suspended(target.url, "t1") == []
    assert _items_equal(source, target)
    task2, thread2, errors2 = _start(source, target)
    source.execute([("UPDATE items SET qty = 7 WHERE id = ?", (30,)),
                    ("INSERT INTO ledger VALUES (?, ?)", (9, "z"))])  # fmt: skip
    _wait_for(lambda: target_has(target, "ledger", 3) or bool(errors2))
    _stop(task2, thread2)
    assert not errors2, errors2
    assert _items_equal(source, target)


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "disk"])
@pytest.mark.parametrize("kinds", KINDS, ids=["sqlite", "pg"])
def test_skip_row_sets_aside_one_cached_change_in_memory_or_on_disk(
    make_db, kinds, on_disk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes cached during the full load, their table's on disk (spill threshold 0) or in
    memory: under ``skip-row`` exactly the refused ones are set aside, the table goes on."""
    source, target = _setup(make_db, kinds)
    spilled: list[bool] = []

    class Buffer(spill.ChangeBuffer):  # records where each table's cached changes waited
        def finish(self, *args: Any) -> Any:
            out = super().finish(*args)
            spilled.append(isinstance(out, spill.StampedChanges))
            return out

    monkeypatch.setattr(cdc, "ChangeBuffer", Buffer)
    if on_disk:
        monkeypatch.setattr(cdc, "CACHED_SPILL_BYTES", 0)
    task = _task(source, target, target_table_prep_mode="do-nothing",
                 error_policy={"data_errors": "skip-row"}, stop_when_idle=2.0)  # fmt: skip

    def write_while_loading() -> None:
        _cdc_rows(source)
        _wait_for(lambda: task.statistics().cdc.cached_changes >= 6)

    with inject("full-load.batch", write_while_loading):
        stats = task.run()
    assert spilled and all(s is on_disk for s in spilled), spilled
    assert sorted(_ids(target)) == [1, 2, 3, 4, 5, 10, 12, 14]
    assert sorted(_ids(target, "ledger")) == [1, 2]
    items = stats[next(t.table for t in stats if t.table.endswith("items"))]
    assert items.exceptions == 2 and items.state is not rk.TableState.SUSPENDED
    assert control.read_suspended(target.url, "t1") == []
    rows = control.read_exceptions(target.url, "t1")
    assert sorted(r.key["id"] for r in rows) == [11, 13]  # type: ignore[index]
    assert all(r.table == items.table and r.op == "insert" for r in rows)


def test_skip_row_sets_aside_changes_of_a_transaction_on_disk(make_db) -> None:
    """A source transaction too large for memory (held on disk from its first row): under
    ``skip-row`` its refused changes are set aside, the rest of it applies."""
    source, target = _setup(make_db, ("pg", "pg"))
    task = _task(source, target, target_table_prep_mode="do-nothing",
                 error_policy={"data_errors": "skip-row"}, transaction_memory_bytes=0)  # fmt: skip
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    source.execute([("INSERT INTO items VALUES (?, ?)", (i, qty))
                    for i, qty in ((10, 1), (11, 500), (12, 2), (13, 700), (14, 3))]
                   + [("INSERT INTO ledger VALUES (?, ?)", (2, "b"))])  # fmt: skip
    _wait_for(lambda: target_has(target, "ledger", 2) or bool(errors))
    _stop(task, thread)
    assert not errors, errors
    assert sorted(_ids(target)) == [1, 2, 3, 4, 5, 10, 12, 14]
    rows = control.read_exceptions(target.url, "t1")
    assert sorted(r.key["id"] for r in rows) == [11, 13]  # type: ignore[index]
    assert control.read_suspended(target.url, "t1") == []

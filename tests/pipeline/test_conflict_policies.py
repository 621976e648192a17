"""apply_conflicts on real databases: a target that drifted from the source (a row deleted and
a row added behind the task's back) meets CDC changes that expect the source's state. ``log``
records each conflict and converges; ``stop`` records it and suspends the table while the
other tables go on; ``converge`` says nothing; a target that cannot tell conflicts refuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_error_policies import _ids, _setup, _start, _stop
from test_task_cdc import Db, _task, _wait_for, make_db, target_has

import replikit as rk
from replikit.pipeline import control

__all__ = ["make_db"]

KINDS = [("sqlite", "sqlite"), ("pg", "pg"), ("mysql", "mysql")]
IDS = ["sqlite", "pg", "mariadb"]


def _drift_then_change(source: Db, target: Db) -> None:
    """The target loses row 2 and gains row 10; then the source updates 2, inserts 10 (both
    conflicts) and changes 3 and 4 (in step), then a ledger row (another table) last."""
    target.execute([("DELETE FROM items WHERE id = ?", (2,)),
                    ("INSERT INTO items VALUES (?, ?)", (10, 7))])  # fmt: skip
    source.execute([("UPDATE items SET qty = 20 WHERE id = ?", (2,)),
                    ("INSERT INTO items VALUES (?, ?)", (10, 9)),
                    ("UPDATE items SET qty = 30 WHERE id = ?", (3,)),
                    ("DELETE FROM items WHERE id = ?", (4,))])  # fmt: skip
    source.execute([("INSERT INTO ledger VALUES (?, ?)", (2, "b"))])


def _run(make_db: Callable[[str], Db], kinds: tuple[str, str], **policy: Any):
    source, target = _setup(make_db, kinds)
    task, thread, errors = _start(source, target, **policy)
    _drift_then_change(source, target)
    _wait_for(lambda: target_has(target, "ledger", 2) or bool(errors))
    _stop(task, thread)
    stats = task.statistics()
    items = stats[next(t.table for t in stats if t.table.endswith("items"))]
    return source, target, errors, items


@pytest.mark.parametrize("kinds", KINDS, ids=IDS)
def test_log_records_each_conflict_and_converges(make_db, kinds) -> None:
    source, target, errors, items = _run(make_db, kinds, apply_conflicts="log")
    assert not errors, errors
    assert target.rows("items", "id") == source.rows("items", "id")  # converged
    rows = control.read_exceptions(target.url, "t1")
    got = sorted((r.op, r.key["id"]) for r in rows)  # type: ignore[index]
    assert got == [("insert", 10), ("update", 2)]
    assert {r.kind for r in rows} == {"conflict"} and all(r.position for r in rows)
    assert all(r.table == items.table for r in rows)
    assert items.conflicts == 2 and items.state is rk.TableState.REPLICATING


@pytest.mark.parametrize("kinds", KINDS, ids=IDS)
def test_stop_suspends_the_table_and_the_others_go_on(make_db, kinds) -> None:
    _, target, errors, items = _run(make_db, kinds, apply_conflicts="stop")
    (error,) = errors  # a suspended table fails the run (exit 1)
    assert isinstance(error, rk.TaskError)
    assert items.state is rk.TableState.SUSPENDED
    assert "apply_conflicts=stop" in (items.error or "")
    (row,) = control.read_suspended(target.url, "t1")
    assert row.table == items.table and "reload" in row.reason
    # nothing of the conflicting batch reached items: 3 and 4 as before, the drift kept
    assert sorted(_ids(target)) == [1, 3, 4, 5, 10]
    assert dict(target.rows("items", "id"))[3] == 3
    assert {r.kind for r in control.read_exceptions(target.url, "t1")} == {"conflict"}


def test_stop_task_stops_at_a_conflict(make_db) -> None:
    source, target = _setup(make_db, ("sqlite", "sqlite"))
    _, thread, errors = _start(source, target, apply_conflicts="stop", data_errors="stop-task")
    _drift_then_change(source, target)
    thread.join(60)
    (error,) = errors
    assert isinstance(error, rk.DataError) and "apply_conflicts=stop" in str(error)
    assert not target_has(target, "ledger", 2)


def test_converge_records_nothing(make_db) -> None:
    source, target, errors, items = _run(make_db, ("sqlite", "sqlite"))
    assert not errors, errors
    assert target.rows("items", "id") == source.rows("items", "id")
    assert control.read_exceptions(target.url, "t1") == []
    assert items.conflicts == 0


def test_a_target_that_cannot_tell_conflicts_refuses_before_any_data(
    make_db, tmp_path: Path
) -> None:
    source, _ = _setup(make_db, ("sqlite", "sqlite"))
    out = tmp_path / "files"
    target = Db(f"file://{out}?format=jsonl", "files")
    task = _task(source, target, error_policy={"apply_conflicts": "log"})
    with pytest.raises(rk.ConfigError, match="converge"):
        task.run()
    assert not out.exists() or not any(out.rglob("*.jsonl"))

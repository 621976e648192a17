"""Validation beside a live CDC task (#10 item 6): differing rows are re-checked once the task
has applied the source's changes up to the position the source was at, so changes in flight
are not failures while a real difference still is; the sources' current positions; the
timeout; continuous validation-only tasks."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import replikit as rk
from live_task import running, wait
from replikit._failpoints import inject
from replikit.cli import main
from replikit.endpoints.base import SupportsCurrentPosition
from replikit.validation import inflight
from validate_db import ENGINES, ITEM_COLUMNS, ITEMS, Db, connect, item

N = 40


def _source(engine: str, url: str) -> rk.Endpoint:
    with connect(engine, url) as db:
        db.run(ITEMS[engine])
        db.insert("items", ITEM_COLUMNS, [item(i) for i in range(1, N + 1)])
    return rk.endpoint(url, cdc_setup=True) if engine == "sqlite" else rk.endpoint(url)


def _in_flight(db: Db) -> None:
    """Three source changes the task has not applied yet."""
    db.run("UPDATE items SET name = %s WHERE id = 1", ["moved"])
    db.run("DELETE FROM items WHERE id = 2")
    db.insert("items", ITEM_COLUMNS, [item(1000)])


@contextmanager
def _apply_held() -> Iterator[threading.Event]:
    """The task's next batch waits at ``cdc.apply`` until the event is set."""
    gate = threading.Event()
    with inject("cdc.apply", lambda: gate.wait(60)):
        try:
            yield gate
        finally:
            gate.set()


@pytest.mark.parametrize("engine", ENGINES)
def test_current_position_moves_with_each_commit(make_db: Callable[[str], str], engine: str):
    url = make_db(engine)
    src = _source(engine, url)
    assert isinstance(src, SupportsCurrentPosition)
    if engine == "sqlite":  # the change table exists once CDC is set up
        src.cdc_setup(src.reflect().tables, task="pos")
    before = src.current_position()
    assert before == src.current_position()  # reading moves nothing
    with connect(engine, url) as db:
        db.run("UPDATE items SET name = %s WHERE id = 3", ["x"])
    after = src.current_position()
    assert before < after
    assert rk.Position.parse(str(after)) == after
    src.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_in_flight_changes_wait_for_the_applied_position(
    make_db: Callable[[str], str], engine: str, monkeypatch: pytest.MonkeyPatch
):
    """Changes read by the task but held before apply differ at first; validation waits
    until the task applied past the source's position and reports only the real difference
    (a target row changed behind the task's back)."""
    url, dst = make_db(engine), make_db(engine)
    src = _source(engine, url)
    settings = rk.TaskSettings(progress=False, task_id=f"val_{engine}")
    task = rk.Task(src, dst, migration_type="full-load-and-cdc", settings=settings)
    marks: list[rk.Position] = []
    with running(task):
        with connect(engine, dst) as target:
            target.run("UPDATE items SET name = %s WHERE id = 5", ["tampered"])
        with _apply_held() as gate, connect(engine, url) as db:
            _in_flight(db)
            mark = inflight.AppliedWait.mark

            def mark_then_release(self: inflight.AppliedWait) -> rk.Position:
                marks.append(mark(self))  # the source's position, with the changes held
                gate.set()
                return marks[-1]

            monkeypatch.setattr(inflight.AppliedWait, "mark", mark_then_release)
            # another Task object (as in another process): the checkpoint is read from the
            # target under the task's id
            (t,) = rk.validate(src, dst, recheck=True, task_id=settings.task_id)
    assert len(marks) == 1
    assert t.rechecked == 4, t  # 3 in flight + the real one
    assert (t.state.value, t.failures, t.pending) == ("mismatched", 1, 0), str(t)
    assert [(d.type.value, dict(d.key), d.columns) for d in t.rows] == [
        ("RECORD_DIFF", {"id": 5}, ("name",))
    ]


def test_a_stopped_task_times_out_with_a_clear_message(
    make_db: Callable[[str], str], capsys: pytest.CaptureFixture[str]
):
    url, dst = make_db("sqlite"), make_db("sqlite")
    src = _source("sqlite", url)
    settings = rk.TaskSettings(progress=False, task_id="stopped", stop_when_idle=0.5)
    rk.Task(src, dst, migration_type="full-load-and-cdc", settings=settings).run()
    with connect("sqlite", url) as db:
        _in_flight(db)
    (t,) = rk.validate(src, dst, recheck=True, recheck_timeout=1.0, task_id="stopped")
    assert (t.state.value, t.failures, t.pending, t.rechecked) == ("pending", 0, 3, 3), str(t)
    assert t.reason is not None
    assert "task stopped did not apply the source's changes up to sqlite:" in t.reason, t.reason
    assert "3 differing row(s) not re-checked" in t.reason
    args = ["validate", url, dst, "--recheck", "--recheck-timeout", "0.5", "--task-id", "stopped"]
    assert main([*args, "--json"]) == 1  # nothing failed, but the rows are not proven equal
    (table,) = json.loads(capsys.readouterr().out)["tables"]
    assert (table["state"], table["pending"], table["rechecked"]) == ("pending", 3, 3)
    assert "did not apply the source's changes" in table["reason"]


def test_validation_only_runs_continuously_until_stopped(make_db: Callable[[str], str]):
    url, dst = make_db("sqlite"), make_db("sqlite")
    src = _source("sqlite", url)
    rk.Task(src, dst, settings=rk.TaskSettings(progress=False)).run()  # a full load
    settings = rk.TaskSettings(progress=False, validation_interval=0.1)
    task = rk.Task(src, dst, migration_type="validation-only", settings=settings)
    with running(task, "validating"):
        wait(lambda: _runs(task, "items") >= 2)
        assert task.phase == "validating"
        assert _stats(task, "items").validation_state == "validated"
        with connect("sqlite", dst) as target:
            target.run("DELETE FROM items WHERE id = 9")
        wait(lambda: _stats(task, "items").validation_failed == 1)
        assert task.last_validation is not None
        assert [d.key for d in task.last_validation[0].missing_in_target] == [{"id": 9}]
    assert task.phase == "stopped"


def test_validation_only_beside_a_live_task_reports_no_in_flight_rows(live: Any):
    """A validation-only task with the CDC task's id, validating again and again while the
    source changes: rows in flight are re-checked by position, never failures."""
    settings = rk.TaskSettings(progress=False, task_id="shop", validation_interval=0.05)
    task = rk.Task(live.src, live.task.target, migration_type="validation-only",
                   settings=settings)  # fmt: skip
    seen: list[tuple[int, int]] = []
    with running(task, "validating"):
        for _ in range(6):
            live.write(5)
            runs = _runs(task, "orders")
            wait(lambda runs=runs: _runs(task, "orders") > runs)
            assert task.last_validation is not None
            seen += [(t.failures, t.rechecked) for t in task.last_validation]
    assert all(failures == 0 for failures, _ in seen), seen


def _stats(task: rk.Task, table: str) -> Any:
    return {t.table: t for t in task.statistics()}[table]


def _runs(task: rk.Task, table: str) -> int:
    """Validations of ``table`` recorded so far (0 before the first)."""
    found = {t.table: t for t in task.statistics()}.get(table)
    return 0 if found is None else int(found.validation_runs)

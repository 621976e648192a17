"""A CDC task whose internal threads fail: the error reaches ``run()``, nothing is lost.

Each test makes one thread raise at a failpoint (:func:`replikit._failpoints.inject`): the
change-reader thread, the thread that moves changes into the cache during a full load, and
the applying thread (streamed and cached changes). The task must stop with a
:class:`replikit.Error` naming what failed, and a second run must leave the target equal to
the source, every source transaction of the ledger there exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from test_task_cdc import (
    Db,
    Workload,
    _assert_equal,
    _assert_ledger,
    _create_source,
    _drain,
    _target_schema,
    _task,
    make_db,
)

import replikit as rk
from replikit._failpoints import FailpointError, failpoint, inject

__all__ = ["make_db"]  # the fixture, shared with test_task_cdc

PAIRS = [("sqlite", "sqlite"), ("pg", "pg"), ("mysql", "pg")]
WAIT = 120  # seconds; only reached when the thread under test never gets there


def _changes_during_load(
    source: Db, load: Workload, reached: threading.Event
) -> Callable[[], None]:
    """At the first full-load batch: commit source transactions, then hold the load until
    the CDC side reached its failpoint (so they are read while the load runs)."""

    def action() -> None:
        load.run(count=5)
        assert reached.wait(WAIT), "the change stream never delivered the source changes"

    return action


def _signal_then(reached: threading.Event, fail: bool) -> Callable[[], None]:
    def action() -> None:
        reached.set()
        if fail:
            raise FailpointError("failpoint reached")

    return action


def _run_fails(task: rk.Task, what: str) -> rk.Error:
    with pytest.raises(rk.Error) as info:
        task.run()
    assert what in str(info.value), str(info.value)
    assert isinstance(info.value.__cause__, FailpointError)
    return info.value


@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS)
def test_cache_feeder_failure_stops_the_task_and_a_rerun_loses_nothing(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str
) -> None:
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source, items=3000)
    load, reached = Workload(source, writer=7, seed=7), threading.Event()
    task = _task(source, target, parallel_tables=1, stop_when_idle=5)
    with (
        inject("full-load.batch", _changes_during_load(source, load, reached)),
        inject("cdc.cache", _signal_then(reached, fail=True)),
    ):
        _run_fails(task, "moving source changes into the cache during the full load")
    load.run(count=3)  # while the task is stopped
    _drain(source, target)
    _assert_equal(source, target)
    _assert_ledger(target, {7: load.seq}, _target_schema(source, target))


@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS)
def test_failure_applying_cached_changes_keeps_the_full_load_checkpoint(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str
) -> None:
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source, items=3000)
    load, reached = Workload(source, writer=8, seed=8), threading.Event()
    task = _task(source, target, parallel_tables=1, stop_when_idle=5)
    with (
        inject("full-load.batch", _changes_during_load(source, load, reached)),
        inject("cdc.cache", _signal_then(reached, fail=False)),
        inject("cdc.apply-cached"),
    ):
        _run_fails(task, "applying the changes cached during the full load")
    load.run(count=3)
    _drain(source, target)
    _assert_equal(source, target)
    _assert_ledger(target, {8: load.seq}, _target_schema(source, target))


@pytest.mark.parametrize("point", ["cdc.read", "cdc.apply"])
@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS)
def test_reader_or_apply_thread_failure_mid_stream(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str, point: str
) -> None:
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source, items=20)
    _drain(source, target)
    load = Workload(source, writer=9, seed=9)
    load.run(count=12)
    what = "reading the source's changes" if point == "cdc.read" else "applying source trans"
    with inject(point, nth=3):
        _run_fails(_task(source, target, batch_changes=2, stop_when_idle=30), what)
    load.run(count=4)
    _drain(source, target)
    _assert_equal(source, target)
    _assert_ledger(target, {9: load.seq}, _target_schema(source, target))


def test_raise_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLIKIT_FAILPOINT", "other:1, test.point:2:raise")
    failpoint("test.point")
    with pytest.raises(FailpointError, match=r"test\.point"):
        failpoint("test.point")
    failpoint("test.point")  # fires once
    monkeypatch.setenv("REPLIKIT_FAILPOINT", "test.point:1:raise")  # a new spec counts anew
    with pytest.raises(FailpointError):
        failpoint("test.point")

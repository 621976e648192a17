"""Reloading a table while the stream runs, into change files (Parquet): each change is written
once, whatever the stream's lag and even across a crash right after the handoff.

The reload reads the table from a snapshot at an exact source position; of the changes held
meanwhile only those after it are written, and the stream skips the table's changes it
delivers late (at or before that position), also after a restart. The ledger table, whose
rows are only ever inserted, is the one reloaded: a key in both its ``LOAD`` and ``CDC`` files
is a change written twice.

A test sets the order deterministically: the stream's reader is held up (failpoint
``cdc.read``) while transactions commit before the reload's snapshot, and the reload's load
commits more once it has its snapshot (``full-load.batch``); the reader goes on during the
load (``drained``: the held changes straddle the snapshot) or only after the handoff
(``behind``: the stream delivers the table's changes the load holds after it rejoined).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_task_cdc import Db, Workload, _create_source, _source_endpoint, _wait_for, make_db

import replikit as rk
from live_task import running
from replikit._failpoints import FAILPOINT_EXIT, inject
from replikit.pipeline import control
from replikit.pipeline.reload import reloading

__all__ = ["make_db"]  # the fixture, shared with test_task_cdc

pytestmark = [pytest.mark.timeout(300)]

CHILD = Path(__file__).with_name("_reload_child.py")
TESTS = Path(__file__).parents[1]  # the helpers the child imports (live_task)
STEP = 5  # source transactions per step of a test


def task_for(source: Db, folder: Path, **settings: Any) -> rk.Task:
    """The tests' full-load-and-cdc task from ``source`` into Parquet files in ``folder``."""
    base: dict[str, Any] = {"task_id": "t1", "progress": False, "batch_changes": 50}
    return rk.Task(
        _source_endpoint(source),
        f"file://{folder}",
        migration_type="full-load-and-cdc",
        settings=rk.TaskSettings(**{**base, **settings}),
    )


def counted(task: rk.Task) -> int:
    """Source transactions applied so far (each updates one ``counters`` row)."""
    return next(t.updates for t in task.statistics() if t.table.endswith("counters"))


def reload_across_the_snapshot(
    task: rk.Task, work: Workload, *, behind: bool, applied: int
) -> None:
    """Reload ``ledger`` with ``STEP`` transactions committed before its snapshot and read by
    the stream only after it, and ``STEP`` committed after it (see the module docstring);
    ``applied``: the transactions the task applied before."""
    reader_free = threading.Event()

    def after_snapshot() -> None:  # in the reload's load, which holds its snapshot
        work.run(STEP)
        if not behind:
            reader_free.set()
            _wait_for(lambda: counted(task) >= applied + 2 * STEP)

    with inject("cdc.read", reader_free.wait), inject("full-load.batch", after_snapshot):
        try:
            work.run(STEP)  # committed before the reload starts: in its snapshot
            task.reload("ledger", timeout=120)
        finally:
            reader_free.set()


def table_dir(folder: Path, table: str) -> Path:
    (found,) = [p.parent for p in folder.rglob("_schema.json") if p.parent.name == table]
    return found


def replayed(folder: Path, table: str) -> list[tuple[Any, ...]]:
    """``table`` as the files endpoint reads it: the change files over the load files."""
    return replayed_table(folder, table)[1]


def replayed_table(folder: Path, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """:func:`replayed`, and the names of its columns."""
    name = ".".join(table_dir(folder, table).relative_to(folder).parts)
    with rk.endpoint(f"file://{folder}") as files:
        reader = files.reader([name])
        [schema] = reader.tables
        batches = (b for u in reader.units(schema) for b in reader.read(u))
        return list(schema.column_names), sorted(tuple(r) for b in batches for r in b.rows)


def file_rows(folder: Path, table: str, prefix: str) -> list[dict[str, Any]]:
    files = sorted(table_dir(folder, table).rglob(f"{prefix}*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def assert_each_change_once(source: Db, folder: Path) -> None:
    """The files give the source, no change row is in the change files twice, and no
    ledger row is both loaded and inserted by a change."""
    for table, order in (("items", "id"), ("ledger", "writer, seq"), ("counters", "id")):
        assert replayed(folder, table) == sorted(source.rows(table, order)), f"{table} differs"
        changes = [repr(sorted(r.items())) for r in file_rows(folder, table, "CDC")]
        twice = [r for r, n in Counter(changes).items() if n > 1]
        assert not twice, f"{table}: changes written twice: {twice[:3]}"
    loaded = {(r["writer"], r["seq"]) for r in file_rows(folder, "ledger", "LOAD")}
    changes = file_rows(folder, "ledger", "CDC")
    inserted = [(r["writer"], r["seq"]) for r in changes if r["Op"] == "I"]
    assert inserted, "no ledger change after the reload"
    again = sorted(loaded.intersection(inserted))
    assert not again, f"ledger rows in the reload and written again as changes: {again[:5]}"


@pytest.mark.parametrize("lag", ["drained", "behind"])
@pytest.mark.parametrize("kind", ["sqlite", "pg", "mysql"])
def test_a_reload_writes_each_change_once(
    make_db: Callable[[str], Db], tmp_path: Path, kind: str, lag: str
) -> None:
    source = make_db(kind)
    _create_source(source)
    folder = tmp_path / "out"
    task = task_for(source, folder)
    work = Workload(source)
    with running(task):
        work.run(STEP)  # replicated before the reload (and ledger rows for it to load)
        _wait_for(lambda: counted(task) >= STEP)
        reload_across_the_snapshot(task, work, behind=lag == "behind", applied=STEP)
        work.run(STEP)  # after the handoff
        _wait_for(lambda: counted(task) >= 4 * STEP)
    assert_each_change_once(source, folder)


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
def test_a_crash_right_after_the_handoff_then_resume(
    make_db: Callable[[str], Db], tmp_path: Path, kind: str
) -> None:
    """The process dies right after the reload's handoff, its stream still behind the load's
    snapshot: the restarted task replays from its checkpoint, before that position, and
    skips the reloaded table's changes up to it again (the checkpoint keeps it)."""
    source = make_db(kind)
    _create_source(source)
    folder = tmp_path / "out"
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "REPLIKIT_FAILPOINT": "cdc.reloaded", "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, str(CHILD), kind, source.url, str(folder)],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == FAILPOINT_EXIT, f"no crash at the handoff:\n{proc.stderr[-3000:]}"
    Workload(source, writer=2).run(STEP)  # while the task is down
    task_for(source, folder, stop_when_idle=2.0).run()
    assert_each_change_once(source, folder)


@pytest.mark.parametrize("point", ["cdc.reload-applied", "cdc.reloaded"])
@pytest.mark.parametrize("kind", ["sqlite", "pg"])
def test_a_crash_in_the_handoff_with_the_stream_ahead_then_restart(
    make_db: Callable[[str], Db], tmp_path: Path, kind: str, point: str
) -> None:
    """The stream caught up during the load (past its snapshot, the checkpoint past the held
    changes) and the process dies once the handoff wrote the held changes after the
    snapshot: before the table is resumed (``cdc.reload-applied``: still ``reloading``, the
    restart loads it again, emptying its change files) or right after (``cdc.reloaded``: it
    replicates from the checkpoint, past them). Either way no held change is written twice."""
    source = make_db(kind)
    _create_source(source)
    folder = tmp_path / "out"
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "REPLIKIT_FAILPOINT": point, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, str(CHILD), kind, source.url, str(folder), "ahead"],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == FAILPOINT_EXIT, f"no crash at {point}:\n{proc.stderr[-3000:]}"
    url = f"file://{folder}"
    states = [(s.table.split(".")[-1], s.state) for s in control.read_suspended(url, "t1")]
    assert states == ([("ledger", "reloading")] if point == "cdc.reload-applied" else [])
    work = Workload(source, writer=2)
    work.run(STEP)  # while the task is down
    task = task_for(source, folder)
    with running(task):
        wait_until_ledger_replicates(task)
        work.run(STEP)  # after the restart (and its reload)
        _wait_for(lambda: replayed(folder, "counters") == source.rows("counters", "id"))
    assert control.read_suspended(url, "t1") == []
    assert_each_change_once(source, folder)


def wait_until_ledger_replicates(task: rk.Task) -> None:
    """Wait until the reloaded ledger replicates again; a reload that failed (the table
    suspended with its error) fails the test at once, naming the error."""

    def ledger() -> rk.TableStats:
        return next(t for t in task.statistics() if t.table.endswith("ledger"))

    def ended() -> bool:
        stats = ledger()
        failed = stats.state is rk.TableState.SUSPENDED and "reload failed" in (stats.error or "")
        return failed or stats.state is rk.TableState.REPLICATING

    _wait_for(ended)
    assert ledger().state is rk.TableState.REPLICATING, ledger().error


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
def test_a_reload_as_the_task_starts_beside_its_first_apply(
    make_db: Callable[[str], Db], tmp_path: Path, kind: str
) -> None:
    """A run that finds a table left ``reloading`` (its last run stopped during a reload)
    reloads it beside the stream, and the stream's first apply removes what a run that died
    left in the folder (uncommitted change files, temporary files): the reload's load file,
    open under its temporary name at that moment, is not such a leftover. The stream is held
    until the load's file is open, and the load until the stream applied the changes made
    while the task was down."""
    source = make_db(kind)
    _create_source(source)
    folder = tmp_path / "out"
    work = Workload(source)
    work.run(STEP)
    first = task_for(source, folder, stop_when_idle=1.0)
    first.run()
    (ledger,) = [t.table for t in first.statistics() if t.table.endswith("ledger")]
    files = control.control_store(rk.endpoint(f"file://{folder}"))
    assert files is not None
    files.suspend(reloading("t1", ledger))  # what a run that stopped in the reload left
    Workload(source, writer=2).run(STEP)  # while the task is down: the restart's first apply
    task = task_for(source, folder)
    load_open = threading.Event()

    def hold_the_load() -> None:  # in the reload's load, its LOAD file open
        load_open.set()
        _wait_for(lambda: counted(task) >= STEP)

    with (
        inject("cdc.read", lambda: load_open.wait(60)),
        inject("files.data-file", hold_the_load),
        running(task),
    ):
        wait_until_ledger_replicates(task)
        work.run(STEP)  # after the reload
        _wait_for(lambda: replayed(folder, "counters") == source.rows("counters", "id"))
    assert_each_change_once(source, folder)


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
def test_a_reload_while_the_task_is_stopped_then_run(
    make_db: Callable[[str], Db], tmp_path: Path, kind: str
) -> None:
    """A reload with no task running: the next run replays from the checkpoint, before the
    reload's snapshot, and leaves out the table's changes up to it (the reload recorded that
    position in the checkpoint)."""
    source = make_db(kind)
    _create_source(source)
    folder = tmp_path / "out"
    work = Workload(source)
    work.run(STEP)  # loaded
    task_for(source, folder, stop_when_idle=1.0).run()
    work.run(STEP)  # while stopped: in the reload's snapshot
    task_for(source, folder).reload("ledger")
    work.run(STEP)  # after it
    task_for(source, folder, stop_when_idle=2.0).run()
    assert_each_change_once(source, folder)


# -- MongoDB: a reload reads at one cluster time ----------------------------------------------
class MongoWorkload:
    """Each step writes a ``ledger`` document (only ever inserted) and bumps the ``counters``
    document (an update: what :func:`counted` counts), two single-document writes."""

    def __init__(self, db: Any, writer: int = 1) -> None:
        self.db = db
        self.writer = writer
        self.seq = 0

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.seq += 1
            self.db.ledger.insert_one(
                {"_id": f"{self.writer}-{self.seq:05d}", "writer": self.writer, "seq": self.seq}
            )
            self.db.counters.update_one({"_id": 1}, {"$inc": {"n": 1}})


def assert_mongo_source_replayed(db: Any, folder: Path) -> None:
    """The files give the collections' documents."""
    for table in ("ledger", "counters"):
        names, rows = replayed_table(folder, table)
        want = sorted(tuple(doc.get(n) for n in names) for doc in db[table].find())
        assert rows == want, f"{table} differs"


@pytest.mark.parametrize("lag", ["drained", "behind"])
def test_a_mongodb_reload_writes_each_change_once(
    mongo: Any, mongo_url: str, mongo_db: str, tmp_path: Path, lag: str, caplog: Any
) -> None:
    """:func:`test_a_reload_writes_each_change_once` from MongoDB: the reload reads at one
    cluster time, and of the changes held meanwhile only those of a later time are written.
    nx-27017 has no snapshot reads (deviation 'no-snapshot-reads'), so there the reload
    warns that change files may hold some changes twice and the files still give the source
    (and a new stream there replays the collection's history, 'origin-token', so changes are
    written twice there anyway)."""
    import logging

    client = mongo.client()
    try:
        db = client[mongo_db]
        db.counters.insert_one({"_id": 1, "n": 0})
        db.ledger.insert_one({"_id": "0-00000", "writer": 0, "seq": 0})
        folder = tmp_path / "out"
        task = rk.Task(
            mongo_url,
            f"file://{folder}",
            migration_type="full-load-and-cdc",
            settings=rk.TaskSettings(task_id="t1", progress=False, batch_changes=50),
        )
        work = MongoWorkload(db)
        with caplog.at_level(logging.WARNING, logger="replikit.mongodb"), running(task):
            work.run(STEP)  # replicated before the reload (and ledger rows for it to load)
            _wait_for(lambda: counted(task) >= STEP)
            reload_across_the_snapshot(task, work, behind=lag == "behind", applied=STEP)
            work.run(STEP)  # after the handoff
            _wait_for(lambda: counted(task) >= 4 * STEP)
        warned = [r.getMessage() for r in caplog.records if r.name == "replikit.mongodb"]
        assert_mongo_source_replayed(db, folder)
        if mongo.deviates("no-snapshot-reads"):
            assert any(f"{mongo_db}.ledger" in m and "twice" in m for m in warned), warned
            return
        assert not warned, warned
        for table in ("ledger", "counters"):
            changes = [repr(sorted(r.items())) for r in file_rows(folder, table, "CDC")]
            twice = [r for r, n in Counter(changes).items() if n > 1]
            assert not twice, f"{table}: changes written twice: {twice[:3]}"
        loaded = {r["_id"] for r in file_rows(folder, "ledger", "LOAD")}
        inserted = [r["_id"] for r in file_rows(folder, "ledger", "CDC") if r["Op"] == "I"]
        assert inserted, "no ledger change after the reload"
        again = sorted(loaded.intersection(inserted))
        assert not again, f"ledger documents in the reload and written again: {again[:5]}"
    finally:
        client.close()

"""Full load + CDC tasks end to end, on real databases: SQLite and PostgreSQL, both directions.

A writer changes the source while the task loads and replicates; the target must end equal to
the source. Crash tests kill the replicating process at failpoints (``os._exit``, no cleanup)
and restart it: a ledger table (per-writer sequence numbers) must arrive with no gap and no
duplicate, and every table must end equal.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

import replikit as rk
from live_task import run_in_thread
from replikit._failpoints import FAILPOINT_EXIT, inject

CHILD = Path(__file__).with_name("_cdc_child.py")

SCHEMA = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, note TEXT)",
    "CREATE TABLE ledger (writer INTEGER NOT NULL, seq INTEGER NOT NULL, "
    "PRIMARY KEY (writer, seq))",
    "CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
)


@dataclass
class Db:
    """One database of a test: its URL and a way to run SQL on it."""

    url: str
    kind: str  # "sqlite" | "pg" | "mysql"
    name: str = ""
    server: Any = None

    def connect(self) -> Any:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        if self.kind == "mysql":
            return _MyConn(self.server.connect(self.name, autocommit=False))
        conn = psycopg.connect(self.url.replace("postgresql+psycopg", "postgresql"))
        conn.execute("SET synchronous_commit = on")
        return conn

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.kind in ("pg", "mysql") else statement

    def execute(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Run statements in one transaction."""
        conn = self.connect()
        try:
            for statement, params in statements:
                conn.execute(self.sql(statement), params)
            conn.commit()
        finally:
            conn.close()

    def rows(self, table: str, order: str, schema: str | None = None) -> list[tuple[Any, ...]]:
        name = f'"{schema}".{table}' if schema else table
        conn = self.connect()
        try:
            return [tuple(r) for r in conn.execute(f"SELECT * FROM {name} ORDER BY {order}")]
        finally:
            conn.close()


class _MyConn:
    """A PyMySQL connection with the ``execute`` shortcut sqlite3 and psycopg have."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> Any:
        cur = self._conn.cursor()
        cur.execute(statement, params or None)
        return cur.fetchall() if cur.description else cur

    def commit(self) -> None:
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


def _sqlite_db(tmp_path: Path, name: str) -> Db:
    return Db(f"sqlite:///{tmp_path / name}", "sqlite")


@pytest.fixture
def make_db(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Db]]:
    made: list[str] = []
    my_made: list[str] = []

    def make(kind: str) -> Db:
        if kind == "sqlite":
            return _sqlite_db(tmp_path, f"{uuid.uuid4().hex[:8]}.db")
        if kind == "mysql":
            my = request.getfixturevalue("mysql_server")
            name = f"cdc_{uuid.uuid4().hex[:10]}"
            my_made.append(name)
            return Db(my.create_database(name), "mysql", name, my)
        server = request.getfixturevalue("pg_server")
        name = f"cdc_{uuid.uuid4().hex[:10]}"
        made.append(name)
        return Db(server.create_database(name), "pg")

    yield make
    for name in my_made:
        request.getfixturevalue("mysql_server").drop_database(name)
    if made:
        server = request.getfixturevalue("pg_server")
        for name in made:
            _drop_pg(server, name)


def _drop_pg(server: Any, name: str) -> None:
    with server.connect() as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = %s AND NOT active",
            (name,),
        )
    server.drop_database(name)


def _create_source(db: Db, items: int = 300) -> None:
    db.execute([(s, ()) for s in SCHEMA])
    db.execute(
        [
            ("INSERT INTO items VALUES (?, ?, ?, ?)", (i, f"item {i}", i % 7, None))
            for i in range(1, items + 1)
        ]
        + [("INSERT INTO counters VALUES (?, ?)", (i, 0)) for i in range(1, 4)]
    )


class Workload:
    """Random source transactions from a thread: items churn, ledger appends, counter bumps."""

    def __init__(self, db: Db, writer: int = 1, seed: int = 0) -> None:
        self.db = db
        self.writer = writer
        self.rng = random.Random(seed)
        self.seq = 0
        self.next_id = 100_000 * writer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.transactions = 0
        self._committed = threading.Condition()

    def step(self, conn: Any) -> None:
        rng = self.rng
        for _ in range(rng.randint(1, 4)):
            roll = rng.random()
            if roll < 0.5:
                self.next_id += 1
                conn.execute(
                    self.db.sql("INSERT INTO items VALUES (?, ?, ?, ?)"),
                    (
                        self.next_id,
                        f"new {self.next_id}",
                        rng.randint(0, 9),
                        "x" * rng.randint(0, 50),
                    ),
                )
            elif roll < 0.8:
                conn.execute(
                    self.db.sql("UPDATE items SET qty = qty + 1, note = ? WHERE id = ?"),
                    (f"upd {rng.random()}", rng.randint(1, 300)),
                )
            elif roll < 0.9:
                # a primary key change
                conn.execute(
                    self.db.sql("UPDATE items SET id = ? WHERE id = ?"),
                    (self.next_id + 50_000, rng.randint(1, 300)),
                )
                self.next_id += 1
            else:
                conn.execute(self.db.sql("DELETE FROM items WHERE id = ?"), (rng.randint(1, 300),))
        self.seq += 1
        conn.execute(self.db.sql("INSERT INTO ledger VALUES (?, ?)"), (self.writer, self.seq))
        conn.execute(self.db.sql("UPDATE counters SET n = n + 1 WHERE id = ?"), (self.writer,))
        conn.commit()
        with self._committed:
            self.transactions += 1
            self._committed.notify_all()

    def wait_for_more(self, n: int) -> None:
        """Wait until the running workload committed ``n`` more transactions."""
        with self._committed:
            target = self.transactions + n
            assert self._committed.wait_for(lambda: self.transactions >= target, timeout=60)

    def run(self, count: int | None = None, pause: float = 0.0) -> None:
        conn = self.db.connect()
        try:
            done = 0
            while not self._stop.is_set() and (count is None or done < count):
                self.step(conn)
                done += 1
                if pause:
                    time.sleep(pause)
        finally:
            conn.close()

    def start(self, pause: float = 0.002) -> None:
        self._thread = threading.Thread(target=self.run, kwargs={"pause": pause}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _target_schema(source: Db, target: Db) -> str | None:
    """MySQL tables land in a PostgreSQL schema named after their database."""
    return source.name if source.kind == "mysql" and target.kind == "pg" else None


def _assert_equal(source: Db, target: Db) -> None:
    schema = _target_schema(source, target)
    for table, order in (("items", "id"), ("ledger", "writer, seq"), ("counters", "id")):
        s, t = source.rows(table, order), target.rows(table, order, schema)
        assert len(t) == len(s), f"{table}: {len(s)} source rows, {len(t)} target rows"
        assert t == s, f"{table} differs"


def _assert_ledger(target: Db, writers: dict[int, int], schema: str | None = None) -> None:
    rows = target.rows("ledger", "writer, seq", schema)
    for writer, last in writers.items():
        seqs = [seq for w, seq in rows if w == writer]
        assert seqs == list(range(1, last + 1)), f"writer {writer}: gaps or duplicates"


def _source_endpoint(db: Db) -> Any:
    return rk.endpoint(db.url, cdc_setup=True) if db.kind == "sqlite" else db.url


def _task(source: Db, target: Db, **settings: Any) -> rk.Task:
    base: dict[str, Any] = {"task_id": "t1", "progress": False, "split_rows": 1000}
    base.update(settings)
    mode = base.pop("mode", "full-load-and-cdc")
    return rk.Task(
        _source_endpoint(source), target.url, migration_type=mode, settings=rk.TaskSettings(**base)
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


_MARKERS = iter(range(1_000_000, 2_000_000))


def _drain(source: Db, target: Db, task_id: str = "t1", **settings: Any) -> rk.Task:
    """Run the task until everything committed before this call reached the target; return it.

    Once the task streams changes, a marker row (a ``counters`` row) is committed on the
    source; the task stops when that row is in the target, never after an idle time.
    """
    task = _task(source, target, task_id=task_id, **settings)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    marker = next(_MARKERS)
    source.execute([("INSERT INTO counters VALUES (?, ?)", (marker, 0))])
    schema = _target_schema(source, target)
    _wait_for(lambda: bool(errors) or _has_key(target, "counters", marker, schema))
    task.stop()
    thread.join(60)
    assert not thread.is_alive() and not errors, errors
    return task


def _has_key(target: Db, table: str, key: int, schema: str | None = None) -> bool:
    try:
        return any(row[0] == key for row in target.rows(table, "1", schema))
    except Exception:  # the table is not there yet
        return False


PAIRS = [
    ("sqlite", "sqlite"),
    ("pg", "pg"),
    ("sqlite", "pg"),
    ("pg", "sqlite"),
    ("mysql", "pg"),
    ("mysql", "sqlite"),
    ("pg", "mysql"),
    ("sqlite", "mysql"),
    ("mysql", "mysql"),
]


@pytest.mark.parametrize("batch", [False, True], ids=["transactional", "batch"])
@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS)
def test_full_load_and_cdc_under_concurrent_writes(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str, batch: bool
) -> None:
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source)
    load = Workload(source, writer=1, seed=1)
    load.start()  # changes during the full load: cached, then applied
    load.wait_for_more(20)
    task = _task(source, target, batch_apply=batch)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase in ("cdc", "stopped"))
    load.wait_for_more(20)  # and changes while it streams
    load.stop()
    schema = _target_schema(source, target)
    _wait_for(lambda: target_has(target, "ledger", load.seq, schema) or bool(errors))
    task.stop()
    thread.join(30)
    assert not errors, errors
    _assert_equal(source, target)
    _assert_ledger(target, {1: load.seq}, _target_schema(source, target))
    stats = task.statistics()
    assert stats.cdc.transactions > 0
    assert sum(t.inserts for t in stats) > 0
    assert stats.cdc.latency_p99 is not None


def target_has(target: Db, table: str, count: int, schema: str | None = None) -> bool:
    try:
        return len(target.rows(table, "1", schema)) >= count
    except Exception:
        return False


@pytest.mark.parametrize(
    ("src_kind", "dst_kind"),
    [("sqlite", "sqlite"), ("pg", "pg"), ("mysql", "pg"), ("sqlite", "mysql"), ("pg", "mysql")],
)
def test_stop_and_resume_picks_up_changes_made_while_stopped(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str
) -> None:
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source)
    first = _drain(source, target)
    assert first.statistics().total_rows == 303
    load = Workload(source, writer=2, seed=2)
    load.run(count=40)
    second = _drain(source, target)
    assert second.statistics().total_rows == 0  # no second full load
    assert second.statistics().cdc.transactions >= 40  # SQLite: one per change row
    _assert_equal(source, target)
    _assert_ledger(target, {2: 40}, _target_schema(source, target))


@pytest.mark.parametrize(
    ("src_kind", "dst_kind"),
    [("sqlite", "sqlite"), ("pg", "pg"), ("mysql", "pg"), ("sqlite", "mysql"), ("pg", "mysql")],
)
def test_cdc_only_starts_now_and_creates_missing_tables(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str
) -> None:
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source, items=5)
    task = _task(source, target, mode="cdc")
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))  # its start position is taken
    source.execute([("INSERT INTO items VALUES (?, ?, ?, ?)", (77, "late", 1, None))])
    _wait_for(
        lambda: target_has(target, "items", 1, _target_schema(source, target)) or bool(errors)
    )
    task.stop()
    thread.join(30)
    assert not errors, errors
    assert target.rows("items", "id", _target_schema(source, target)) == [
        (77, "late", 1, None)
    ]  # nothing from before "now"


def _child(source: Db, target: Db, mode: str, failpoint: str | None, *extra: str) -> int:
    env = dict(os.environ)
    env.pop("REPLIKIT_FAILPOINT", None)
    if failpoint:
        env["REPLIKIT_FAILPOINT"] = failpoint
    proc = subprocess.run(
        [sys.executable, str(CHILD), source.url, target.url, mode, "t1", "2.0", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if proc.returncode not in (0, FAILPOINT_EXIT):
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode


CRASHES = [
    ("full-load.batch:2", ()),
    ("apply.before-commit:3", ()),
    ("apply.after-commit:3", ()),
    ("apply.before-commit:2", ("--batch-apply",)),
]


@pytest.mark.parametrize(
    ("failpoint", "extra"), CRASHES, ids=[c[0] + "".join(c[1]) for c in CRASHES]
)
@pytest.mark.parametrize(
    ("src_kind", "dst_kind"),
    [("sqlite", "sqlite"), ("pg", "pg"), ("mysql", "pg"), ("pg", "mysql"), ("mysql", "mysql")],
)
def test_killed_process_resumes_without_loss_or_duplicates(
    make_db: Callable[[str], Db],
    src_kind: str,
    dst_kind: str,
    failpoint: str,
    extra: tuple[str, ...],
) -> None:
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source, items=3000)  # several full-load batches (split_rows=1000)
    load = Workload(source, writer=3, seed=3)
    load.run(count=30)  # before the task: part of the snapshot
    load.start(pause=0.005)  # during: cached / streamed
    code = _child(source, target, "full-load-and-cdc", failpoint, *extra)
    load.stop()
    assert code == FAILPOINT_EXIT, "the failpoint was not reached"
    load.run(count=20)  # while the replicator is down
    assert _child(source, target, "full-load-and-cdc", None, *extra) == 0
    _assert_equal(source, target)
    _assert_ledger(target, {3: load.seq}, _target_schema(source, target))


@pytest.mark.parametrize(("src_kind", "dst_kind"), [("pg", "pg"), ("mysql", "pg")])
def test_a_crash_after_a_loaded_tables_keys_were_built_resumes_with_every_key(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str
) -> None:
    """The process dies right after the first loaded table's indexes and keys were built,
    while the other tables may still load (replikit.pipeline.finishing): the resumed run keeps
    that table (loaded, in the checkpoint), loads the others again, finishes every table
    (nothing built twice, nothing refused as existing) and replays the changes; every table
    ends equal to the source, with its primary key."""
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source, items=3000)  # items in 3 units; ledger and counters in one each
    load = Workload(source, writer=3, seed=3)
    load.run(count=30)
    load.start(pause=0.005)
    code = _child(source, target, "full-load-and-cdc", "full-load.table-indexed:1")
    load.stop()
    assert code == FAILPOINT_EXIT, "the failpoint was not reached"
    checkpoint = _checkpoint(target)
    assert checkpoint is not None and checkpoint.phase == "full-load"
    assert checkpoint.loaded  # the table whose keys were built at least
    load.run(count=20)  # while the replicator is down
    assert _child(source, target, "full-load-and-cdc", None) == 0
    _assert_equal(source, target)
    _assert_ledger(target, {3: load.seq}, _target_schema(source, target))
    schema = _target_schema(source, target) or "public"
    with psycopg.connect(target.url.replace("postgresql+psycopg", "postgresql")) as conn:
        keys = conn.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = %s::regnamespace AND contype = 'p' ORDER BY 1",
            (schema,),
        ).fetchall()
    assert sorted(d for _, d in keys) == [
        "PRIMARY KEY (id)", "PRIMARY KEY (id)", "PRIMARY KEY (writer, seq)",
    ]  # fmt: skip
    assert all(t.rsplit(".", 1)[-1] in ("items", "ledger", "counters") for t, _ in keys)


@pytest.mark.parametrize(
    ("src_kind", "dst_kind"), [("sqlite", "sqlite"), ("pg", "pg"), ("mysql", "pg"), ("pg", "mysql")]
)
def test_a_resumed_full_load_applies_no_change_its_new_snapshot_holds(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str
) -> None:
    """A full load stopped midway is resumed: the tables not loaded yet are read from a new
    snapshot while the stream replays from the first one's position. Nothing is written
    after the new snapshot, so its tables get no change applied (each reached the target
    once, in the load). (Tables the first run loaded get theirs: the crash tests above.)"""
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source, items=3000)  # several full-load batches (split_rows=1000)
    load = Workload(source, writer=3, seed=3)
    load.run(count=30)  # in the first snapshot
    load.start(pause=0.005)
    code = _child(source, target, "full-load-and-cdc", "full-load.batch:1")
    load.stop()
    assert code == FAILPOINT_EXIT, "the failpoint was not reached"
    load.run(count=20)  # after the first snapshot, before the second
    checkpoint = _checkpoint(target)
    assert checkpoint is not None and checkpoint.phase == "full-load"
    assert not checkpoint.loaded  # every table is loaded again
    task = _task(source, target, stop_when_idle=2.0, batch_changes=50, parallel_tables=2)
    stats = task.run()
    applied = {t.table: t.inserts + t.updates + t.deletes for t in stats}
    assert set(applied.values()) == {0}, f"changes applied again: {applied}"
    _assert_equal(source, target)
    _assert_ledger(target, {3: load.seq}, _target_schema(source, target))


@pytest.mark.parametrize(
    ("src_kind", "dst_kind"), [("sqlite", "sqlite"), ("pg", "pg"), ("mysql", "pg")]
)
def test_a_crash_after_a_resumed_load_still_skips_what_its_snapshot_holds(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str
) -> None:
    """The resumed run finishes its load, then crashes at its first CDC commit: the checkpoint
    keeps the reload snapshot's position (or is past it), so the third run, which replays
    from the first snapshot again (or from after the cached changes), still skips what the
    reloaded tables hold and applies only the ledger rows written after the second
    snapshot."""
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source, items=3000)
    load = Workload(source, writer=3, seed=3)
    load.run(count=30)  # in the first snapshot
    assert _child(source, target, "full-load-and-cdc", "full-load.batch:1") == FAILPOINT_EXIT
    load.run(count=20)  # after the first snapshot, before the second
    codes: list[int] = []
    second = threading.Thread(
        target=lambda: codes.append(_child(source, target, "full-load-and-cdc", "cdc.apply:1"))
    )
    second.start()
    _wait_for(lambda: not second.is_alive() or _phase(target) == "cdc", timeout=120)
    load.run(count=10)  # after the second snapshot: the rows the third run applies
    second.join(180)
    assert codes == [FAILPOINT_EXIT], "the second run did not crash at its first commit"
    checkpoint = _checkpoint(target)
    assert checkpoint is not None and checkpoint.phase == "cdc"
    # the reload snapshot's position is kept, unless the cached changes' commit moved the
    # position past it (a transaction after it was cached): a replay then starts after it
    assert checkpoint.snapshots or checkpoint.position is not None
    task = _task(source, target, stop_when_idle=2.0, batch_changes=50, parallel_tables=2)
    stats = task.run()
    [ledger] = [t for t in stats if t.table.endswith("ledger")]
    assert (ledger.inserts, ledger.updates, ledger.deletes) == (10, 0, 0)
    _assert_equal(source, target)
    _assert_ledger(target, {3: load.seq}, _target_schema(source, target))


@pytest.mark.parametrize(("src_kind", "dst_kind"), [("sqlite", "sqlite"), ("pg", "pg")])
def test_cached_changes_commit_their_checkpoint(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str
) -> None:
    """A first run's changes cached during its full load commit with a checkpoint at the
    last cached transaction: a failure before the first CDC batch resumes from there, so the
    next run applies only what came after them (ledger inserts == rows the target lacks),
    not every change since the snapshot again. Deterministic: the first load batch writes
    to the source and waits until the stream cached changes, the cache's apply writes once
    more (a transaction for the stream after it) and the first CDC batch raises."""
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source, items=3000)
    load = Workload(source, writer=3, seed=3)
    load.run(count=10)  # in the snapshot
    task = _task(source, target, stop_when_idle=2.0, batch_changes=50, parallel_tables=2)

    def write_while_loading() -> None:
        load.run(count=10)
        _wait_for(lambda: task.statistics().cdc.cached_changes > 0)

    with (
        inject("full-load.batch", write_while_loading),
        inject("cdc.apply-cached", lambda: load.run(count=1)),
        inject("cdc.apply"),
        pytest.raises(rk.Error, match="failpoint cdc.apply reached"),
    ):
        task.run()
    checkpoint = _checkpoint(target)
    assert checkpoint is not None and checkpoint.phase == "cdc"
    assert checkpoint.position is not None, "the cached changes moved no checkpoint"
    schema = _target_schema(source, target)
    held = len(target.rows("ledger", "writer, seq", schema))
    assert held > 10, "no cached ledger row was applied"
    load.run(count=10)  # while the task is down
    task = _task(source, target, stop_when_idle=2.0, batch_changes=50, parallel_tables=2)
    stats = task.run()
    [ledger] = [t for t in stats if t.table.endswith("ledger")]
    assert (ledger.inserts, ledger.updates, ledger.deletes) == (load.seq - held, 0, 0)
    _assert_equal(source, target)
    _assert_ledger(target, {3: load.seq}, schema)


def _checkpoint(target: Db) -> Any:
    with rk.endpoint(target.url) as ep:
        store = ep.checkpoint_store()
        try:
            return store.read_checkpoint("t1")
        finally:
            store.close()


def _phase(target: Db) -> str | None:
    try:
        checkpoint = _checkpoint(target)
    except rk.Error:  # the control table is being created
        return None
    return None if checkpoint is None else str(checkpoint.phase)


@pytest.mark.parametrize(
    ("src_kind", "dst_kind"),
    [("sqlite", "sqlite"), ("pg", "pg"), ("mysql", "pg"), ("pg", "mysql"), ("mysql", "mysql")],
)
def test_sigkill_mid_stream_then_resume(
    make_db: Callable[[str], Db], src_kind: str, dst_kind: str
) -> None:
    """``replikit replicate`` killed with SIGKILL while it streams, then run again."""
    source, target = make_db(src_kind), make_db(dst_kind)
    _create_source(source)
    env = {k: v for k, v in os.environ.items() if k != "REPLIKIT_FAILPOINT"}
    command = [sys.executable, "-m", "replikit.cli", "replicate", source.url, target.url]
    command += ["--task-id", "t1", "--cdc-setup", "--no-progress"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load = Workload(source, writer=4, seed=4)
    load.start(pause=0.001)
    schema = _target_schema(source, target)
    _wait_for(lambda: target_has(target, "ledger", 20, schema))  # it streams: kill it now
    proc.kill()
    proc.wait()
    load.stop()
    again = subprocess.run(
        [*command, "--stop-when-idle", "2"], env=env, capture_output=True, text=True, timeout=180
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "run the same command again to resume" in again.stdout
    _assert_equal(source, target)
    _assert_ledger(target, {4: load.seq}, _target_schema(source, target))


def test_drop_removes_source_objects_and_control_rows(make_db: Callable[[str], Db]) -> None:
    source, target = make_db("pg"), make_db("pg")
    _create_source(source, items=3)
    _drain(source, target)
    with psycopg.connect(source.url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'replikit_t1'"
        ).fetchone() == (1,)
    _task(source, target).drop()
    with psycopg.connect(source.url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'replikit_t1'"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_publication WHERE pubname = 'replikit_t1'"
        ).fetchone() == (0,)
    with psycopg.connect(target.url) as conn:
        assert conn.execute("SELECT to_regclass('replikit.replikit_checkpoints')").fetchone() == (
            None,
        )
    assert target.rows("items", "id")  # data stays


def _pg_exec(db: Db, statement: str) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(statement)


def test_pg_schema_change_adds_a_nullable_column_and_keeps_a_dropped_one(
    make_db: Callable[[str], Db],
) -> None:
    source, target = make_db("pg"), make_db("pg")
    _create_source(source, items=5)
    task = _task(source, target)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    _pg_exec(source, "ALTER TABLE items ADD COLUMN color text")
    source.execute([("UPDATE items SET color = ? WHERE id = ?", ("red", 1))])
    _wait_for(lambda: task.statistics()["public.items"].updates >= 1 or bool(errors))
    assert target.rows("items", "id")[0] == (1, "item 1", 1, None, "red")
    _pg_exec(source, "ALTER TABLE counters DROP COLUMN n")
    source.execute([("INSERT INTO counters VALUES (?)", (9,))])
    source.execute([("INSERT INTO ledger VALUES (?, ?)", (8, 1))])
    _wait_for(lambda: target_has(target, "ledger", 1) or bool(errors))
    task.stop()
    thread.join(30)
    assert not errors, errors  # both followed (docs/operations.md, "Schema changes")
    stats = task.statistics()
    assert stats["public.items"].ddls == 1 and stats["public.counters"].ddls == 1
    assert stats["public.counters"].state is rk.TableState.REPLICATING
    # the dropped column stays on the target, made nullable, empty in new rows
    assert (9, None) in target.rows("counters", "id")


def test_pg_walsender_terminated_mid_stream_task_continues(make_db: Callable[[str], Db]) -> None:
    source, target = make_db("pg"), make_db("pg")
    _create_source(source, items=5)
    task = _task(source, target)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    load = Workload(source, writer=5, seed=5)
    load.start(pause=0.003)
    for _ in range(3):
        applied = len(target.rows("ledger", "1"))
        _wait_for(lambda n=applied: target_has(target, "ledger", n + 10) or bool(errors))
        _pg_exec(
            source,
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE slot_name = 'replikit_t1' AND active_pid IS NOT NULL",
        )
    load.stop()
    _wait_for(lambda: target_has(target, "ledger", load.seq) or bool(errors))
    task.stop()
    thread.join(30)
    assert not errors, errors
    _assert_equal(source, target)
    _assert_ledger(target, {5: load.seq})


def test_pg_table_without_replica_identity_is_refused_by_name(
    make_db: Callable[[str], Db],
) -> None:
    source, target = make_db("pg"), make_db("pg")
    _create_source(source, items=1)
    _pg_exec(source, "CREATE TABLE no_key (a int, b text)")
    with pytest.raises(rk.ConfigError, match="no_key"):
        _task(source, target).run()
    with psycopg.connect(source.url) as conn:  # nothing was created on the source
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)


def test_stop_at_position(make_db: Callable[[str], Db]) -> None:
    source, target = make_db("sqlite"), make_db("sqlite")
    _create_source(source, items=3)
    _drain(source, target)
    load = Workload(source, writer=6, seed=6)
    load.run(count=5)
    with sqlite3.connect(source.url.removeprefix("sqlite:///")) as conn:
        (mid,) = conn.execute("SELECT max(seq) - 3 FROM _replikit_changes").fetchone()
    task = _task(source, target, cdc_stop_position=f"sqlite:{mid}")
    task.run()  # returns by itself at the stop position
    assert task.statistics().cdc.position == f"sqlite:{mid}"


def test_zero_dates_read_as_null_are_noted_in_the_tables_statistics(
    make_db: Callable[[str], Db], capsys: pytest.CaptureFixture[str]
) -> None:
    """MySQL zero dates read as NULL, in the full load and in the changes that follow, are
    counted in the table's statistics (a line each), not only in the log; ``replikit status``
    shows them too."""
    from replikit.cli import main

    source, target = make_db("mysql"), make_db("sqlite")
    zero = [("SET SESSION sql_mode = ''", ())]
    table = [("CREATE TABLE zd (id INTEGER PRIMARY KEY, d DATE NULL)", ())]
    rows = [("INSERT INTO zd VALUES (?, ?), (?, ?)", (1, "0000-00-00", 2, "2020-01-02"))]
    source.execute([(s, ()) for s in SCHEMA] + table + zero + rows)
    task = _task(source, target)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    source.execute([*zero, ("INSERT INTO zd VALUES (?, ?)", (3, "0000-00-00")),
                    ("UPDATE zd SET d = ? WHERE id = ?", ("2020-00-15", 2)),
                    ("INSERT INTO counters VALUES (?, ?)", (7, 0))])  # fmt: skip
    _wait_for(lambda: bool(errors) or _has_key(target, "counters", 7))
    task.stop()
    thread.join(60)
    assert not errors, errors
    assert target.rows("zd", "id") == [(1, None), (2, None), (3, None)]
    notes = [
        "column d: 1 zero or invalid date(s) read as NULL (zero_dates='null')",
        "column d: 2 zero or invalid date(s) read as NULL from the binlog (zero_dates='null')",
    ]
    assert task.statistics()[f"{source.name}.zd"].warnings == notes
    assert main(["status", "--task-id", "t1", "--target", target.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"]["tables"][f"{source.name}.zd"]["warnings"] == notes
    assert main(["status", "--task-id", "t1", "--target", target.url]) == 0
    assert f"    note: {notes[1]}" in capsys.readouterr().out.splitlines()

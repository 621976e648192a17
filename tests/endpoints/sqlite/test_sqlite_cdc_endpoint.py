"""SqliteEndpoint as a CDC source: opt-in set-up, handoff, reader threads, purge, teardown."""

from __future__ import annotations

import queue
import random
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.changes import Op, Transaction
from replikit.endpoints.sqlite import SqliteEndpoint, cdc
from replikit.errors import ConfigError, ConnectError
from replikit.pipeline.contracts import ChangeReader, Checkpoint, Unit
from replikit.positions import SqliteSeq
from replikit.schema.model import TableSchema

SCHEMA = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)",
    "CREATE TABLE other (k TEXT PRIMARY KEY, v REAL)",
)
# Waits end on events; HANG only turns a reader or writer that would block for ever into a
# failure, and NEVER is an interval that no passing test waits out.
HANG = 60.0
NEVER = 3600.0
OPT_IN_ERROR = (
    "SQLite CDC needs change triggers on the source tables (items, other); opt in with "
    "rk.endpoint(url, cdc_setup=True) or run `replikit cdc-setup URL`"
)


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10)


def _objects(path: Path) -> set[str]:
    with _open(path) as conn:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE '\\_replikit%' ESCAPE '\\'"
        )
        return {r[0] for r in rows}


def _tasks(path: Path) -> dict[str, int]:
    with _open(path) as conn:
        return dict(conn.execute("SELECT task, acked FROM _replikit_cdc_tasks").fetchall())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "src.db"
    with _open(p) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"n{i}", i) for i in range(50)])
    return p


@pytest.fixture
def ep(path: Path) -> Iterator[SqliteEndpoint]:
    endpoint = SqliteEndpoint(f"sqlite:///{path}", cdc_setup=True)
    yield endpoint
    endpoint.close()


@pytest.fixture
def tables(ep: SqliteEndpoint) -> list[TableSchema]:
    return list(ep.reflect().tables)


def _insert(path: Path, ids: range, table: str = "items") -> None:
    with _open(path) as conn:
        if table == "items":
            conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"n{i}", i) for i in ids])
        else:
            conn.executemany("INSERT INTO other VALUES (?, ?)", [(f"k{i}", i / 2) for i in ids])


def _drain(reader: cdc.SqliteChangeReader, start: SqliteSeq) -> list[Transaction]:
    return list(reader.transactions(start))


# -- options and set-up --------------------------------------------------------------------


def test_capability_and_the_cdc_setup_option_in_url_and_keyword(path: Path) -> None:
    assert SqliteEndpoint.capabilities.cdc
    url = f"sqlite:///{path}"
    assert rk.endpoint(url + "?cdc_setup=true").options == {"cdc_setup": True}
    assert rk.endpoint(url + "?cdc_setup=0&timeout=2.5").options == {
        "cdc_setup": False,
        "timeout": 2.5,
    }
    assert rk.endpoint(url + "?cdc_setup=yes", cdc_setup=False).options["cdc_setup"] is False
    assert rk.endpoint(url + "?cdc_setup=on").path == str(path)
    with pytest.raises(ConfigError, match="unknown SQLite URL parameter 'nope'"):
        rk.endpoint(url + "?nope=1")
    with pytest.raises(ConfigError, match="bad value 'maybe'"):
        rk.endpoint(url + "?cdc_setup=maybe")
    with pytest.raises(rk.ConfigError, match="nope"):
        rk.endpoint(url, nope=1)


def test_setup_without_opt_in_changes_nothing(path: Path) -> None:
    plain = SqliteEndpoint(f"sqlite:///{path}")
    with pytest.raises(ConfigError) as info:
        plain.cdc_setup(list(plain.reflect().tables), task="t1")
    assert str(info.value) == OPT_IN_ERROR
    assert _objects(path) == set()
    with _open(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    with pytest.raises(ConfigError, match="not set up"):
        plain.cdc_start(list(plain.reflect().tables), task="t1")


def test_setup_opt_in_then_verify_only(ep: SqliteEndpoint, path: Path) -> None:
    tables = list(ep.reflect().tables)
    ep.cdc_setup(tables, task="t1")
    assert cdc.installed_tables(ep) == ["items", "other"]
    with _open(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    plain = SqliteEndpoint(f"sqlite:///{path}")
    plain.cdc_setup(tables, task="t2")  # triggers in place: only verified
    assert _tasks(path) == {}  # a task registers when it fixes its start position
    assert plain.cdc_start(tables, task="t2") == SqliteSeq(0)
    assert _tasks(path) == {"t2": 0}
    with _open(path) as conn:
        conn.execute("ALTER TABLE other ADD COLUMN extra TEXT")
    with pytest.raises(ConfigError, match=r"\(other: columns changed since set-up\); opt in"):
        plain.cdc_setup(tables, task="t2")
    ep.cdc_setup(tables, task="t2")  # with the opt-in the stale triggers are remade
    plain.cdc_setup(list(plain.reflect().tables), task="t2")


def test_tables_without_a_primary_key_are_refused(ep: SqliteEndpoint, path: Path) -> None:
    with _open(path) as conn:
        conn.execute("CREATE TABLE bag (v TEXT)")
    with pytest.raises(ConfigError, match=r"primary key on tables \(bag\).*rowid.*VACUUM"):
        ep.cdc_setup(list(ep.reflect().tables), task="t1")
    assert _objects(path) == set()


def test_an_in_memory_database_cannot_be_a_cdc_source() -> None:
    with SqliteEndpoint("sqlite:///:memory:", cdc_setup=True) as mem:
        mem.writer()  # the database exists
        calls = [
            lambda: mem.cdc_setup([], task="t"),
            lambda: mem.cdc_start([], task="t"),
            lambda: mem.cdc_reader([], task="t"),
            lambda: mem.cdc_snapshot([], task="t").__enter__(),
            lambda: mem.cdc_teardown(task="t"),
        ]
        for call in calls:
            with pytest.raises(ConfigError, match="in-memory SQLite database .* cannot be a CDC"):
                call()


# -- handoff -------------------------------------------------------------------------------


def _writer_thread(path: Path, stop: threading.Event, started: threading.Event) -> None:
    rnd = random.Random(7)
    with _open(path) as conn:
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(rnd.randint(1, 4)):
                i = rnd.randint(0, 300)
                choice = rnd.random()
                if choice < 0.4:
                    conn.execute("INSERT OR IGNORE INTO items VALUES (?, 'w', ?)", (i, i))
                elif choice < 0.6:
                    conn.execute("UPDATE OR IGNORE items SET id = ? WHERE id = ?", (i + 300, i))
                elif choice < 0.8:
                    conn.execute("UPDATE items SET n = n + 1, name = 'u' WHERE id = ?", (i,))
                else:
                    conn.execute("DELETE FROM items WHERE id = ?", (i,))
                conn.execute(
                    "INSERT INTO other VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                    (f"k{i}", choice),
                )
            conn.execute("COMMIT")
            started.set()


def _read_all(reader: Any, table: TableSchema) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for unit in reader.units(table):
        for batch in reader.read(unit):
            rows.extend(dict(zip(batch.columns, r, strict=True)) for r in batch.rows)
    return rows


def test_full_load_and_cdc_handoff_is_exact_under_a_concurrent_writer(
    ep: SqliteEndpoint, path: Path, tables: list[TableSchema]
) -> None:
    ep.options["batch_size"] = 7
    ep.cdc_setup(tables, task="t1")
    stop, started = threading.Event(), threading.Event()
    writer = threading.Thread(target=_writer_thread, args=(path, stop, started))
    writer.start()
    try:
        assert started.wait(HANG)
        with ep.cdc_snapshot(tables, task="t1") as (reader, mark), ThreadPoolExecutor(2) as pool:
            loaded = dict(
                zip(tables, pool.map(lambda t: _read_all(reader, t), tables), strict=True)
            )
        for _ in range(20):  # the writer keeps going after the snapshot: 20 more commits
            started.clear()
            assert started.wait(HANG)
    finally:
        stop.set()
        writer.join()
    with pytest.raises(ConfigError, match="snapshot .* has ended"):
        next(reader.read(Unit(tables[0].id)))
    keys = {"items": "id", "other": "k"}
    model = {t.id.name: {r[keys[t.id.name]]: r for r in rows} for t, rows in loaded.items()}
    with ep.cdc_reader(tables, task="t1", stop_when_idle=0, poll_interval=0) as changes:
        txs = _drain(changes, mark)
    assert txs
    assert all(t.position > mark for t in txs)
    for tx in txs:  # strict replay: a change before the mark or a missing one breaks it
        (c,) = tx.changes
        rows, key = model[c.table.name], c.key[keys[c.table.name]]
        if c.op is Op.INSERT:
            assert key not in rows
        else:
            assert rows.pop(key) == c.before
        if c.op is not Op.DELETE:
            assert c.after is not None
            rows[c.after[keys[c.table.name]]] = dict(c.after)
    final = {
        t.id.name: {r[keys[t.id.name]]: r for r in _read_all(ep.reader([t]), t)} for t in tables
    }
    assert model == final


def test_cdc_start_is_the_high_water_mark_even_after_a_purge(
    ep: SqliteEndpoint, path: Path, tables: list[TableSchema]
) -> None:
    ep.cdc_setup(tables, task="t1")
    assert ep.cdc_start(tables, task="t1") == SqliteSeq(0)
    _insert(path, range(100, 105))
    with ep.cdc_reader(tables, task="t1", stop_when_idle=0, poll_interval=0) as reader:
        txs = _drain(reader, SqliteSeq(0))
        reader.ack(txs[-1].position)
        assert reader.purge() == 5
    start = ep.cdc_start(tables, task="t1")
    assert start == SqliteSeq(5)  # not 0: the change table is empty but seq goes on
    _insert(path, range(105, 106))
    with ep.cdc_reader(tables, task="t1", stop_when_idle=0, poll_interval=0) as reader:
        assert [t.position for t in _drain(reader, start)] == [SqliteSeq(6)]


# -- the reader in threads -----------------------------------------------------------------


def _consume(
    reader: ChangeReader, start: SqliteSeq, out: queue.Queue[Any], done: threading.Event
) -> None:
    try:
        for tx in reader.transactions(start):
            out.put(tx)
    except BaseException as exc:  # handed to the test thread
        out.put(exc)
    finally:
        done.set()


def _changes_left(path: Path) -> list[int]:
    with _open(path) as conn:
        return [r[0] for r in conn.execute("SELECT seq FROM _replikit_changes ORDER BY seq")]


def _wait(predicate: Any) -> None:
    """Poll the database file until ``predicate`` holds (False after HANG: a lost event)."""
    pause = threading.Event()
    for _ in range(int(HANG / 0.01)):
        if predicate():
            return
        pause.wait(0.01)
    raise AssertionError("timed out")


def _wait_an_hour_next(reader: Any) -> threading.Event:
    """Make the reader's next idle wait an hour long; the event is set as it starts it."""
    waiting = threading.Event()

    class HourLong(type(reader)):  # type: ignore[misc]
        @property
        def poll_interval(self) -> float:
            waiting.set()
            return NEVER

        @poll_interval.setter
        def poll_interval(self, value: float) -> None:
            pass

    reader.__class__ = HourLong
    return waiting


def test_reader_thread_with_ack_and_close_from_another_thread(
    ep: SqliteEndpoint, path: Path, tables: list[TableSchema]
) -> None:
    ep.cdc_setup(tables, task="t1")
    start = ep.cdc_start(tables, task="t1")
    reader = ep.cdc_reader(tables, task="t1", poll_interval=0.05, purge_interval=0)
    assert isinstance(reader, ChangeReader)
    out: queue.Queue[Any] = queue.Queue()
    done = threading.Event()
    thread = threading.Thread(target=_consume, args=(reader, start, out, done))
    thread.start()
    try:
        _insert(path, range(100, 110))
        got = [out.get(timeout=10) for _ in range(10)]
        assert [t.position for t in got] == [SqliteSeq(i) for i in range(1, 11)]
        reader.ack(got[6].position)  # from this thread; the polling thread purges
        _wait(lambda: _changes_left(path) == [8, 9, 10])
        _insert(path, range(110, 111))
        assert out.get(timeout=10).position == SqliteSeq(11)
        waiting = _wait_an_hour_next(reader)
        assert waiting.wait(HANG)  # the reader is about to wait an hour for its next poll
        reader.close()
        assert done.wait(HANG)  # close ends the wait (a sleep would run for the hour)
    finally:
        reader.close()
        thread.join(5)
    assert out.empty()
    with pytest.raises(ConfigError, match="closed"):
        next(reader.transactions(start))
    assert _tasks(path) == {"t1": 7}  # the task's acknowledged position is in the database


def test_purge_never_deletes_what_another_task_still_needs(
    ep: SqliteEndpoint, path: Path, tables: list[TableSchema]
) -> None:
    ep.cdc_setup(tables, task="a")
    ep.cdc_start(tables[:1], task="a")
    ep.cdc_start(tables, task="b")
    _insert(path, range(100, 106))
    opts: dict[str, Any] = {"stop_when_idle": 0, "poll_interval": 0}
    with (
        ep.cdc_reader(tables[:1], task="a", **opts) as a,
        ep.cdc_reader(tables, task="b", **opts) as b,
    ):
        txs = _drain(a, SqliteSeq(0))
        a.ack(txs[4].position)
        assert a.purge() == 0  # b acknowledged nothing yet
        assert len(_drain(b, SqliteSeq(0))) == 6
        b.ack(SqliteSeq(2))
        assert b.purge() == 2  # up to b's ack; a's is higher
        assert a.purge() == 0
        b.ack(SqliteSeq(6))
        assert b.purge() == 3  # up to a's ack (5)
    assert _changes_left(path) == [6]
    assert _tasks(path) == {"a": 5, "b": 6}
    ep.cdc_start(tables[:1], task="a")  # a starts over: its floor moves to now
    assert _tasks(path) == {"a": 6, "b": 6}
    with ep.cdc_reader(tables, task="c", **opts) as c:  # never started: registers on purge
        c.ack(SqliteSeq(6))
        assert c.purge() == 1
    assert _tasks(path) == {"a": 6, "b": 6, "c": 6}


def test_reader_skips_other_tables_and_moves_on_with_heartbeats(
    ep: SqliteEndpoint, path: Path, tables: list[TableSchema]
) -> None:
    ep.cdc_setup(tables, task="t1")
    _insert(path, range(100, 102))
    _insert(path, range(3), table="other")
    items = [t for t in tables if t.id.name == "items"]
    with ep.cdc_reader(items, task="t1", stop_when_idle=0, poll_interval=0, heartbeat=0) as r:
        txs = _drain(r, SqliteSeq(0))
    assert [(len(t), t.position) for t in txs] == [
        (1, SqliteSeq(1)),
        (1, SqliteSeq(2)),
        (0, SqliteSeq(5)),
    ]
    with ep.cdc_reader(items, task="t1", stop_when_idle=0, poll_interval=0, heartbeat=60) as r:
        assert [t.position for t in _drain(r, SqliteSeq(0))] == [SqliteSeq(1), SqliteSeq(2)]


def test_busy_database_delays_the_purge_but_not_the_reading(
    ep: SqliteEndpoint, path: Path, tables: list[TableSchema]
) -> None:
    ep.cdc_setup(tables, task="t1")
    ep.options["timeout"] = NEVER  # a purge that waited for the lock like a write: an hour
    _insert(path, range(100, 103))
    opts: dict[str, Any] = {"purge_interval": 0, "stop_when_idle": 0}
    with _open(path) as blocker, ep.cdc_reader(tables, task="t1", **opts) as reader:
        it = reader.transactions(SqliteSeq(0))
        first = next(it)
        reader.ack(first.position)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        # the rest is read, and the poll after it tries to purge, gives up and ends the read
        rest = _in_thread(lambda: [t.position for t in it])
        assert rest.get(timeout=HANG) == [SqliteSeq(2), SqliteSeq(3)]
        blocker.execute("COMMIT")
        assert _changes_left(path) == [1, 2, 3]
        _insert(path, range(103, 104))
        more = [t.position for t in reader.transactions(SqliteSeq(3))]
        assert more == [SqliteSeq(4)]  # this poll purged
        assert _changes_left(path) == [2, 3, 4]


def _in_thread(call: Any) -> queue.Queue[Any]:
    """Run ``call`` in a daemon thread; its result (or exception) arrives on the queue."""
    out: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            out.put(call())
        except BaseException as exc:
            out.put(exc)

    threading.Thread(target=run, daemon=True).start()
    return out


def test_a_purge_the_database_refuses_stops_the_reader(
    ep: SqliteEndpoint, path: Path, tables: list[TableSchema]
) -> None:
    ep.cdc_setup(tables, task="t1")
    _insert(path, range(100, 102))
    with _open(path) as conn:
        conn.execute(
            "CREATE TRIGGER keep BEFORE DELETE ON _replikit_changes "
            "BEGIN SELECT RAISE(ABORT, 'changes are kept'); END"
        )
    with ep.cdc_reader(tables, task="t1", purge_interval=0, stop_when_idle=0) as reader:
        it = reader.transactions(SqliteSeq(0))
        reader.ack(next(it).position)
        with pytest.raises(ConnectError, match="cannot read changes from .*changes are kept"):
            list(it)


# -- teardown ------------------------------------------------------------------------------


def test_teardown_keeps_what_other_tasks_use(
    ep: SqliteEndpoint, path: Path, tables: list[TableSchema]
) -> None:
    ep.cdc_teardown(task="nobody")  # nothing set up: no error
    ep.cdc_setup(tables, task="a")
    ep.cdc_start(tables[:1], task="a")
    ep.cdc_start(tables, task="b")
    _insert(path, range(3), table="other")
    ep.cdc_teardown(task="b")
    assert cdc.installed_tables(ep) == ["items"]
    assert not any("other" in name for name in _objects(path))
    assert _changes_left(path) == []  # other's pending changes went with its triggers
    ep.cdc_teardown(task="b")
    ep.cdc_teardown(task="a")
    assert _objects(path) == set()
    ep.cdc_teardown(task="a")


def test_full_task_cycle_into_a_sqlite_target(
    ep: SqliteEndpoint, path: Path, tables: list[TableSchema], tmp_path: Path
) -> None:
    from replikit.endpoints.sqlite._dialect import DIALECT
    from replikit.schema.convert import plan_table

    dst = rk.endpoint(f"sqlite:///{tmp_path / 'dst.db'}")
    plans = {
        t.id: plan_table(t, source_dialect="sqlite", target=DIALECT, target_id=t.id) for t in tables
    }
    ep.cdc_setup(tables, task="t1")
    loader, writer = dst.writer(), dst.change_writer()
    loader.prepare(list(plans.values()), "drop-and-create")
    with ep.cdc_snapshot(tables, task="t1") as (reader, mark):
        _insert(path, range(100, 120))  # during the load
        for t in tables:
            for unit in reader.units(t):
                loader.load(plans[t.id], reader.read(unit))
    writer.write_checkpoint(Checkpoint("t1", start=mark))
    _insert(path, range(3), table="other")
    with ep.cdc_reader(tables, task="t1", stop_when_idle=0, poll_interval=0) as changes:
        start = writer.read_checkpoint("t1")
        assert start is not None
        assert start.resume is not None
        txs = list(changes.transactions(start.resume))
        cp = Checkpoint("t1", start=mark, position=txs[-1].position)
        writer.apply(plans, txs, checkpoint=cp, batch=True)
        changes.ack(cp.position)  # type: ignore[arg-type]
    for t in tables:
        assert _read_all(dst.reader([t.id.name]), t) == _read_all(ep.reader([t]), t)
    ep.cdc_teardown(task="t1")
    dst.close()


# -- property: source -> trigger CDC -> change writer reproduces the source -------------------

_op = st.one_of(
    st.tuples(st.just("ins"), st.integers(0, 8), st.text(max_size=4), st.integers(-50, 50)),
    st.tuples(st.just("upd"), st.integers(0, 8), st.text(max_size=4), st.integers(0, 8)),
    st.tuples(st.just("del"), st.integers(0, 8)),
    st.tuples(st.just("wipe")),
)


def _source_op(conn: sqlite3.Connection, op: tuple[Any, ...]) -> None:
    if op[0] == "ins":
        conn.execute(
            "INSERT OR IGNORE INTO t VALUES (?, ?, ?, ?, ?)",
            (op[1], op[2], op[3], op[3] / 3, op[2].encode() or None),
        )
    elif op[0] == "upd":
        conn.execute("UPDATE OR IGNORE t SET id = ?, s = ? WHERE id = ?", (op[3], op[2], op[1]))
    elif op[0] == "del":
        conn.execute("DELETE FROM t WHERE id = ?", (op[1],))
    else:
        conn.execute("DELETE FROM t")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.tuples(st.lists(_op, min_size=1, max_size=4), st.booleans()), max_size=8),
    st.data(),
)
def test_cdc_into_a_sqlite_target_reproduces_the_source(
    txs: list[tuple[list[tuple[Any, ...]], bool]], data: st.DataObject
) -> None:
    from replikit.endpoints.sqlite._dialect import DIALECT
    from replikit.schema.convert import plan_table

    with tempfile.TemporaryDirectory() as tmp:
        src_path = Path(tmp) / "src.db"
        with _open(src_path) as conn:
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, n INT, r REAL, b BLOB)")
            conn.execute("INSERT INTO t VALUES (1, 'one', 1, 0.5, x'01'), (2, NULL, 2, 1.5, NULL)")
        src = SqliteEndpoint(f"sqlite:///{src_path}", cdc_setup=True)
        (table,) = src.reflect().tables
        plan = plan_table(table, source_dialect="sqlite", target=DIALECT, target_id=table.id)
        src.cdc_setup([table], task="p")
        targets = [SqliteEndpoint(f"sqlite:///{Path(tmp) / f'dst{i}.db'}") for i in (0, 1)]
        with src.cdc_snapshot([table], task="p") as (reader, mark):
            for dst in targets:
                loader = dst.writer()
                loader.prepare([plan], "drop-and-create")
                loader.load(plan, reader.read(Unit(table.id)))
        with _open(src_path) as conn:
            for ops, commit in txs:
                conn.execute("BEGIN")
                for op in ops:
                    _source_op(conn, op)
                conn.execute("COMMIT" if commit else "ROLLBACK")
        with src.cdc_reader([table], task="p", stop_when_idle=0, poll_interval=0) as changes:
            stream = _drain(changes, mark)
        expected = _read_all(src.reader([table]), table)
        for dst, batch in zip(targets, (False, True), strict=True):
            writer = dst.change_writer()
            rest = list(stream)
            while rest:
                n = data.draw(st.integers(1, len(rest)))
                writer.apply({table.id: plan}, rest[:n], checkpoint=None, batch=batch)
                rest = rest[n:]
            assert _read_all(dst.reader(["t"]), table) == expected
            dst.close()
        src.close()

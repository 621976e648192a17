"""The PostgreSQL change reader on a real server: values, row images, schema changes, both
modes, acknowledgement, reconnect after the walsender is killed, close from another thread."""

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from _pg_schema import SCHEMA_SQL
from sqlalchemy.engine import make_url

import replikit as rk
from replikit.changes import Op, Transaction
from replikit.endpoints.postgres import cdc
from replikit.positions import PgLsn
from replikit.schema.model import TableId, TableSchema
from replikit.schema.types import Kind

MODES = ["stream", "poll"]
TASK = "rd"
# Reads end at a marker row, never at an idle cut-off. HANG only turns a lost marker (a
# reader that would block for ever) into a failure; no read that works waits for it.
MARKER = TableId("public", "rk_marker")
HANG = 60.0
NEVER = 3600.0  # an interval that no passing test waits out


def _markers(tx: Transaction) -> list[int]:
    return [c.key["id"] for c in tx.changes if c.table == MARKER]


class Source:
    """A source database with the task's publication and slot, and a writer connection."""

    def __init__(self, url: str, ddl: str, tables: list[str]) -> None:
        self.url = url
        self.conn = psycopg.connect(url, autocommit=True)
        # decoding stops at the WAL flush point: make every test commit flush at once
        self.conn.execute("SET synchronous_commit = on")
        self.conn.execute(ddl)
        self.conn.execute("CREATE TABLE rk_marker (id serial PRIMARY KEY)")
        self.ep = rk.endpoint(url)
        catalog = self.ep.reflect()
        self.tables: list[TableSchema] = [catalog.table(t) for t in [*tables, str(MARKER)]]
        cdc.setup(self.ep.params, self.tables, task=TASK)
        self.start = cdc.start(self.ep.params, self.tables, task=TASK)

    def run(self, *statements: str) -> None:
        for s in statements:
            self.conn.execute(s)

    def reader(self, mode: str, **options: Any) -> cdc.PostgresChangeReader:
        options.setdefault("stop_when_idle", HANG)
        return cdc.PostgresChangeReader(
            self.ep.params, self.tables, task=TASK, mode=mode, **options
        )

    def mark(self) -> int:
        """Commit a marker row; its change follows every change committed before it."""
        row = self.conn.execute("INSERT INTO rk_marker DEFAULT VALUES RETURNING id").fetchone()
        assert row is not None
        return int(row[0])

    def until(self, transactions: Iterator[Transaction], marker: int) -> list[Transaction]:
        """The transactions before ``marker``'s, without any marker transaction."""
        out: list[Transaction] = []
        for tx in transactions:
            seen = _markers(tx)
            if marker in seen:
                return out
            if not seen:
                out.append(tx)
        raise AssertionError(f"the reader ended before marker {marker} arrived")

    def read(self, mode: str, start: PgLsn | None = None, **options: Any) -> list[Transaction]:
        """Every transaction from ``start`` that was committed before this call."""
        marker = self.mark()
        with self.reader(mode, **options) as reader:
            return self.until(reader.transactions(start or self.start), marker)

    def reported_since(self, mode: str, since: Any) -> bool:
        """Whether the reader told the server where it is after ``since`` (server time)."""
        query = (
            "SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE 'replikit%%'"
            " AND reply_time > %s"
            if mode == "stream"
            else "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'replikit%%'"
            " AND pid <> pg_backend_pid() AND query_start > %s"
        )
        row = self.conn.execute(query, (since,)).fetchone()
        return bool(row and row[0])

    def now(self) -> Any:
        row = self.conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        return row[0]

    def confirmed(self) -> PgLsn:
        row = self.conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (f"replikit_{TASK}",),
        ).fetchone()
        assert row is not None
        return PgLsn.from_pg(row[0])

    def close(self) -> None:
        cdc.teardown(self.ep.params, task=TASK)
        self.conn.close()


@pytest.fixture
def source(pg_url: str) -> Iterator[Any]:
    made: list[Source] = []

    def make(ddl: str, tables: list[str]) -> Source:
        made.append(Source(pg_url, ddl, tables))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _full_load(url: str, table: str) -> dict[Any, dict[str, Any]]:
    with rk.endpoint(url).reader([table]) as reader:
        (t,) = reader.tables
        rows = [
            dict(zip(t.column_names, r, strict=True))
            for u in reader.units(t)
            for b in reader.read(u)
            for r in b.rows
        ]
    return {r["id"]: r for r in rows}


def _same(a: Any, b: Any) -> bool:
    if a != a or (isinstance(a, Decimal) and a.is_nan()):  # NaN
        return str(a) == str(b)
    return bool(a == b)


T_DDL = "CREATE TABLE t (id int PRIMARY KEY, n int, s text)"


# -- values ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_every_type_matches_full_load(source: Any, mode: str) -> None:
    src = source(SCHEMA_SQL, ["shop.kitchen", "shop.parent"])
    src.run("UPDATE shop.kitchen SET code = code", "UPDATE shop.parent SET name = name")
    txs = src.read(mode)
    assert [tx.schema_changes for tx in txs] == [(), ()]  # every type matches its reflection
    full = _full_load(src.url, "shop.kitchen")
    changes = [c for tx in txs for c in tx.changes if c.table == TableId("shop", "kitchen")]
    assert len(changes) == 3
    for c in changes:
        assert c.op is Op.UPDATE and c.after is not None and c.before is None
        expect = full[c.key["id"]]
        assert list(c.after) == list(expect)
        for name, value in expect.items():
            assert _same(value, c.after[name]), (name, c.after[name], value)
    parents = [c for tx in txs for c in tx.changes if c.table == TableId("shop", "parent")]
    assert sorted(c.key["id"] for c in parents) == [1, 2]


# -- row images -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_insert_update_delete_key_change_truncate(source: Any, mode: str) -> None:
    src = source(T_DDL, ["public.t"])
    src.run(
        "INSERT INTO t VALUES (1, 10, 'a'), (2, 20, 'b')",
        "UPDATE t SET n = 11 WHERE id = 1",
        "UPDATE t SET id = 3 WHERE id = 2",
        "DELETE FROM t WHERE id = 1",
        "TRUNCATE t",
    )
    txs = src.read(mode)
    t = TableId("public", "t")
    got = [[(c.op, c.table, dict(c.key), c.before, c.after) for c in tx.changes] for tx in txs]
    assert got == [
        [
            (Op.INSERT, t, {"id": 1}, None, {"id": 1, "n": 10, "s": "a"}),
            (Op.INSERT, t, {"id": 2}, None, {"id": 2, "n": 20, "s": "b"}),
        ],
        [(Op.UPDATE, t, {"id": 1}, None, {"id": 1, "n": 11, "s": "a"})],
        [(Op.UPDATE, t, {"id": 2}, {"id": 2}, {"id": 3, "n": 20, "s": "b"})],
        [(Op.DELETE, t, {"id": 1}, {"id": 1}, None)],
        [(Op.TRUNCATE, t, {}, None, None)],
    ]
    positions = [tx.position for tx in txs]
    assert positions == sorted(set(positions)) and positions[0] > src.start
    for tx in txs:
        assert isinstance(tx.txid, int) and tx.commit_ts is not None
        assert all(c.position == tx.position and c.txid == tx.txid for c in tx.changes)


@pytest.mark.parametrize("mode", MODES)
def test_unchanged_toast_absent_and_full_identity_fills_it(source: Any, mode: str) -> None:
    big = os.urandom(6000).hex()  # incompressible, stored out of line
    src = source(
        "CREATE TABLE d (id int PRIMARY KEY, n int, big text);"
        "CREATE TABLE f (id int PRIMARY KEY, n int, big text);"
        "ALTER TABLE d ALTER big SET STORAGE EXTERNAL;"
        "ALTER TABLE f ALTER big SET STORAGE EXTERNAL;"
        "ALTER TABLE f REPLICA IDENTITY FULL",
        ["public.d", "public.f"],
    )
    for table in ("d", "f"):
        src.conn.execute(f"INSERT INTO {table} VALUES (1, 1, %s)", (big,))
        src.run(f"UPDATE {table} SET n = 2", f"UPDATE {table} SET id = 5", f"DELETE FROM {table}")
    changes = [c for tx in src.read(mode) for c in tx.changes]
    d_ins, d_upd, d_move, d_del, f_ins, f_upd, f_move, f_del = changes
    assert d_ins.after == {"id": 1, "n": 1, "big": big}
    assert d_upd.before is None and d_upd.after == {"id": 1, "n": 2}  # big: unchanged, absent
    assert d_move.key == {"id": 1} and d_move.after == {"id": 5, "n": 2}
    assert d_del.key == {"id": 5} and d_del.before == {"id": 5}
    # FULL: the real primary key, not every column; the old image fills the unchanged value
    assert f_upd.key == {"id": 1} and f_upd.before == {"id": 1, "n": 1, "big": big}
    assert f_upd.after == {"id": 1, "n": 2, "big": big} and list(f_upd.after) == ["id", "n", "big"]
    assert f_move.key == {"id": 1} and f_move.after == {"id": 5, "n": 2, "big": big}
    assert f_del.key == {"id": 5} and f_del.before == {"id": 5, "n": 2, "big": big}
    assert f_ins.key == {"id": 1}


# -- schema changes -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_schema_changes_are_attached_where_the_shape_changes(source: Any, mode: str) -> None:
    src = source(T_DDL, ["public.t"])  # reflected before the ALTER: the baseline
    src.run(
        "ALTER TABLE t ADD COLUMN extra numeric(5,1)",
        "INSERT INTO t VALUES (1, 1, 'a', 1.5)",
        "INSERT INTO t VALUES (2, 2, 'b', NULL)",
        "TRUNCATE t",  # Relation sent again after the invalidation: same shape, no change
        "INSERT INTO t VALUES (3, 3, 'c', 3)",
        "ALTER TABLE t ALTER n TYPE bigint",
        "UPDATE t SET n = 4",
        "ALTER TABLE t DROP COLUMN s, ADD COLUMN must int NOT NULL DEFAULT 7",
        "DELETE FROM t",
    )
    txs = src.read(mode)
    assert [len(tx.schema_changes) for tx in txs] == [1, 0, 0, 0, 1, 1]
    added = txs[0].schema_changes[0]
    assert added.table == TableId("public", "t") and added.additive
    (col,) = added.added
    assert col.name == "extra" and col.nullable and col.type.kind is Kind.DECIMAL
    assert (col.type.precision, col.type.scale) == (5, 1)
    assert txs[0].changes[0].after == {"id": 1, "n": 1, "s": "a", "extra": Decimal("1.5")}
    retyped = txs[4].schema_changes[0]
    assert retyped.changed == ("n",) and not retyped.added and not retyped.additive
    assert "n" in retyped.description and "bigint" in retyped.description
    reshaped = txs[5].schema_changes[0]
    assert reshaped.dropped == ("s",) and [c.name for c in reshaped.added] == ["must"]
    assert not reshaped.added[0].nullable and not reshaped.additive
    # a new session (reader) sees the same Relations again: the same changes, no more
    again = src.read(mode)
    assert [tx.schema_changes for tx in again] == [tx.schema_changes for tx in txs]


# -- acknowledgement ------------------------------------------------------------------------
def _wait_for(predicate: Callable[[], bool]) -> bool:
    """Poll a server-side condition until it holds (a lost event: False after HANG seconds)."""
    done = threading.Event()
    for _ in range(int(HANG / 0.05)):
        if predicate():
            return True
        done.wait(0.05)
    return False


def _iterate_until(src: Source, it: Iterator[Transaction], condition: Callable[[], bool]) -> None:
    """Keep the reader iterating (over marker transactions) until ``condition`` holds."""
    for _ in range(100_000):  # status updates go out while the iteration runs
        if condition():
            return
        marker = src.mark()
        assert _markers(next(it)) == [marker]
    raise AssertionError("the condition never held")


def _report_after(src: Source, mode: str, it: Iterator[Transaction]) -> None:
    """Keep the reader iterating until it reported to the server (a status update, a poll)."""
    since = src.now()
    _iterate_until(src, it, lambda: src.reported_since(mode, since))


@pytest.mark.parametrize("mode", MODES)
def test_slot_never_passes_the_acked_position(source: Any, mode: str) -> None:
    src = source(T_DDL, ["public.t"])
    for i in range(10):
        src.run(f"INSERT INTO t VALUES ({i}, {i}, 'x')")
    reader = src.reader(mode, stop_when_idle=None, status_interval=0.1, poll_interval=0.05)
    it = reader.transactions(src.start)
    txs = [next(it) for _ in range(10)]
    _report_after(src, mode, it)  # status updates / polls happened; nothing acked yet
    assert src.confirmed() == src.start
    reader.ack(txs[4].position)
    for _ in range(2):  # keep the reader busy so it reports to the server
        src.run("INSERT INTO t VALUES (100 + (random() * 1e6)::int, 0, 'y')")
        next(it)
    _iterate_until(src, it, lambda: src.confirmed() == txs[4].position)
    _report_after(src, mode, it)
    assert src.confirmed() == txs[4].position  # not a byte further
    reader.close()
    assert list(it) == []
    # a new reader from the acked position: exactly what followed it
    rest = src.read(mode, txs[4].position)
    assert [tx.changes[0].key["id"] for tx in rest][:5] == [5, 6, 7, 8, 9]
    assert len(rest) == 7
    with (
        src.reader(mode) as again,
        pytest.raises(rk.PositionLostError, match="behind the confirmed position"),
    ):
        again.transactions(txs[2].position)


def test_poll_reads_past_a_backlog_of_unacknowledged_transactions(source: Any) -> None:
    src = source(T_DDL, ["public.t"])
    for i in range(20):
        src.run(f"INSERT INTO t VALUES ({i}, 0, 'x')")
    txs = src.read("poll", max_changes=3, fetch_rows=2)  # a peek holds about one transaction
    assert [tx.changes[0].key["id"] for tx in txs] == list(range(20))


# -- reconnect ------------------------------------------------------------------------------
def test_killed_walsender_is_reconnected_without_loss_or_repeat(source: Any) -> None:
    src = source(T_DDL, ["public.t"])
    done = threading.Event()
    seen: list[int] = []
    chunk_read = threading.Semaphore(2)  # the writer stays at most two chunks ahead

    def write() -> None:
        with psycopg.connect(src.url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = on")
            for i in range(400):
                if i % 50 == 0:
                    assert chunk_read.acquire(timeout=HANG)
                conn.execute("INSERT INTO t VALUES (%s, 0, 'w')", (i,))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    killed = 0
    marker = None
    with src.reader("stream") as reader:
        for tx in reader.transactions(src.start):
            if marker is not None and marker in _markers(tx):
                break
            seen += [c.key["id"] for c in tx.changes if c.table != MARKER]
            if len(seen) % 50 == 0:
                chunk_read.release()
            if len(seen) in (50, 200):
                row = src.conn.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                    " WHERE slot_name = %s AND active_pid IS NOT NULL",
                    (f"replikit_{TASK}",),
                ).fetchone()
                killed += bool(row and row[0])
            if len(seen) == 400 and marker is None:  # read on to a marker: repeats show
                writer.join()
                marker = src.mark()
        assert reader.mode == "stream"
    writer.join()
    assert done.is_set() and killed == 2
    assert seen == list(range(400))


def test_reconnect_gives_up_after_reconnect_timeout(source: Any) -> None:
    src = source(T_DDL, ["public.t"])
    role = f"rk_cdc_{uuid.uuid4().hex[:8]}"
    src.run(f"CREATE ROLE {role} LOGIN REPLICATION")
    url = make_url(src.url).set(username=role).render_as_string(hide_password=False)
    params = rk.endpoint(url).params
    reader = cdc.PostgresChangeReader(
        params, src.tables, task=TASK, mode="stream", reconnect_timeout=1.0
    )
    try:
        it = reader.transactions(src.start)
        src.run("INSERT INTO t VALUES (1, 1, 'a')")
        assert next(it).changes[0].key == {"id": 1}
        src.run(
            f"ALTER ROLE {role} NOLOGIN",
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
        )
        with pytest.raises(rk.ConnectError, match="could not resume within 1 s"):
            next(it)  # gives up (a reader that retried for ever would hang: pytest-timeout)
    finally:
        reader.close()
        src.run(f"DROP ROLE {role}")


# -- threads --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_close_from_another_thread_ends_the_iteration(source: Any, mode: str) -> None:
    src = source(T_DDL, ["public.t"])
    src.run("INSERT INTO t VALUES (1, 1, 'a')")
    # only close() can end this iteration: no idle stop, status and polls an hour apart
    reader = src.reader(
        mode, stop_when_idle=None, status_interval=NEVER, poll_interval=NEVER,
        receiver_timeout=NEVER,
    )  # fmt: skip
    got: list[Transaction] = []
    ended = threading.Event()

    def consume() -> None:
        got.extend(reader.transactions(src.start))
        ended.set()

    thread = threading.Thread(target=consume)
    thread.start()
    assert _wait_for(lambda: len(got) == 1)  # then idle: waiting for more
    reader.close()
    assert ended.wait(HANG)  # not the hour until the next status update or poll
    thread.join()
    # the reader released its connections
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'replikit%'"
    assert _wait_for(lambda: src.conn.execute(query).fetchone() == (0,))
    with pytest.raises(rk.ConfigError, match="closed"):
        reader.transactions()


def test_close_while_the_consumer_holds_a_transaction(source: Any) -> None:
    src = source(T_DDL, ["public.t"])
    src.run("INSERT INTO t VALUES (1, 1, 'a')", "INSERT INTO t VALUES (2, 2, 'b')")
    reader = src.reader("stream", stop_when_idle=None)
    it = reader.transactions(src.start)
    assert next(it).changes[0].key == {"id": 1}
    closer = threading.Thread(target=reader.close)
    closer.start()
    closer.join(2.0)
    assert not closer.is_alive()
    assert list(it) == []


def test_transactions_arrive_as_their_commit_does(source: Any) -> None:
    src = source(T_DDL, ["public.t"])
    # the next status update is an hour away: a transaction arrives because it committed
    reader = src.reader(
        "auto", stop_when_idle=None, status_interval=NEVER, receiver_timeout=NEVER
    )
    it = reader.transactions(src.start)
    with ThreadPoolExecutor(1) as pool:
        for i in range(5):
            src.run(f"INSERT INTO t VALUES ({i}, 0, 'x')")
            tx = pool.submit(next, it).result(timeout=HANG)
            assert tx.changes[0].key == {"id": i}
    assert reader.mode == "stream"
    reader.close()


def test_reader_options_are_checked(source: Any) -> None:
    src = source(T_DDL, ["public.t"])
    with pytest.raises(rk.ConfigError, match="mode"):
        src.reader("fast")
    with pytest.raises(rk.ConfigError, match="cannot start at"):
        src.reader("poll", start=rk.SqliteSeq(1))
    with pytest.raises(rk.ConfigError, match="task name"):
        cdc.PostgresChangeReader(src.ep.params, src.tables, task="Bad-Name")
    with src.reader("poll") as reader, pytest.raises(rk.ConfigError, match="cannot start at"):
        reader.transactions(rk.SqliteSeq(1))


@pytest.mark.parametrize("mode", ["stream", "poll"])
def test_batches_hold_what_arrived_together_in_order(source: Any, mode: str) -> None:
    src = source(T_DDL, ["public.t"])
    src.run(*(f"INSERT INTO t VALUES ({i}, {i}, 'v')" for i in range(1, 31)))
    marker = src.mark()
    with src.reader(mode) as first:
        one_by_one = src.until(first.transactions(src.start), marker)
    reader = src.reader(mode, stop_when_idle=None)
    lists: list[list[Transaction]] = []
    for batch in reader.transaction_batches(src.start, most=8):
        assert 1 <= len(batch) <= 8
        lists.append(batch)
        if any(marker in _markers(tx) for tx in batch):
            break
    reader.close()
    got = [tx for batch in lists for tx in batch if not _markers(tx)]
    assert [tx.position for tx in got] == [tx.position for tx in one_by_one]
    assert [c.key["id"] for tx in got for c in tx.changes] == list(range(1, 31))
    assert max(len(b) for b in lists) > 1  # a backlog comes in lists
    assert reader.position == lists[-1][-1].position

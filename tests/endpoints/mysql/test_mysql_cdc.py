"""MySQL/MariaDB binlog CDC against a real MariaDB (tests/fix_mysql.py)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from replikit.changes import Op, Transaction
from replikit.endpoints.mysql import cdc
from replikit.endpoints.mysql._params import ConnParams
from replikit.endpoints.mysql._positions import BinlogPosition
from replikit.errors import ConfigError, DataError, PositionLostError
from replikit.positions import Position
from replikit.schema.model import TableId, TableSchema
from replikit.schema.types import Type

pytest_plugins = ["fix_mysql"]

# -- helpers -------------------------------------------------------------------------------


@dataclass
class Db:
    """One fresh test database: name, URL, connection parameters, an admin connection."""

    name: str
    url: str
    params: ConnParams
    conn: Any
    server: Any

    def run(self, *statements: str, args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        with self.conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, args)
                rows = list(cur.fetchall())
        return rows

    def tables(self, *names: str) -> list[TableSchema]:
        from replikit.endpoints.mysql._binlog_server import Server

        server = Server(self.params)
        found = [server.reflect(TableId(self.name, n)) for n in names]
        assert all(found), names
        return [t for t in found if t is not None]

    def position(self) -> BinlogPosition:
        return cdc.start(self.params, [], task="t")


@pytest.fixture
def db(mysql_server: Any, mysql_url: str) -> Iterator[Db]:
    name = mysql_url.rsplit("/", 1)[1]
    conn = mysql_server.connect(name)
    yield Db(name, mysql_url, ConnParams.from_url(mysql_url, mysql_url), conn, mysql_server)
    conn.close()


@pytest.fixture
def marker_table(db: Db) -> None:
    """The table a :class:`Follower` syncs on, made before the test takes a position."""
    db.run(f"CREATE TABLE {MARKER} (id INT AUTO_INCREMENT PRIMARY KEY)")


def drain(
    db: Db, tables: Sequence[TableSchema], start: Position, **options: Any
) -> list[Transaction]:
    """Every transaction after ``start`` up to the end of the binlog now (non-blocking)."""
    options.setdefault("blocking", False)
    with cdc.MysqlChangeReader(db.params, tables, task="t", **options) as reader:
        return [tx for tx in reader.transactions(start) if tx.changes or tx.schema_changes]


def flat(txs: Sequence[Transaction]) -> list[tuple[Op, str, Any, Any, Any]]:
    return [
        (
            c.op,
            c.table.name,
            dict(c.key),
            None if c.before is None else dict(c.before),
            None if c.after is None else dict(c.after),
        )
        for tx in txs
        for c in tx.changes
    ]


def full_load(
    db: Db, tables: Sequence[TableSchema]
) -> tuple[dict[str, list[dict[str, Any]]], BinlogPosition]:
    """Every row of ``tables`` (by table name) from a consistent snapshot, and its position."""
    out: dict[str, list[dict[str, Any]]] = {}
    with cdc.snapshot(db.params, tables, task="t") as (reader, position):
        for table in tables:
            rows = out.setdefault(table.id.name, [])
            for unit in reader.units(table):
                for batch in reader.read(unit):
                    rows.extend(dict(zip(batch.columns, r, strict=True)) for r in batch.rows)
    assert isinstance(position, BinlogPosition)
    return out, position


MARKER = "rk_marker"
# Followers read until a marker row arrives, never for a while. HANG only turns a reader that
# would block for ever into a failure (an hour-long heartbeat, the library's 60 s read timeout
# and a lost marker are all beyond it); no passing test waits for it.
HANG = 30.0
NEVER = 3600.0


def _is_marker(tx: Transaction) -> bool:
    return any(c.table.name == MARKER for c in tx.changes)


class Follower:
    """A blocking reader in a thread, collecting transactions until stopped.

    Its tables include the marker table: :meth:`sync` commits a marker row and returns once
    the reader handed it out, so every transaction committed before is in :attr:`txs`.
    """

    def __init__(self, db: Db, tables: Sequence[TableSchema], start: Position, **kw: Any):
        kw.setdefault("heartbeat", 0.2)
        kw.setdefault("reconnect_delay", 0.05)
        self.db = db
        tables = [*tables, *db.tables(MARKER)]
        self.reader = cdc.MysqlChangeReader(db.params, tables, task="t", **kw)
        self.all: list[Transaction] = []
        self.error: BaseException | None = None
        self.arrived = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self.thread.start()

    def _run(self, start: Position) -> None:
        try:
            for tx in self.reader.transactions(start):
                with self.arrived:
                    self.all.append(tx)
                    self.arrived.notify_all()
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc
        with self.arrived:
            self.arrived.notify_all()

    @property
    def txs(self) -> list[Transaction]:
        """The transactions handed out so far, without the marker transactions."""
        with self.arrived:
            return [tx for tx in self.all if not _is_marker(tx)]

    def changes(self) -> int:
        return sum(len(tx.changes) for tx in self.txs)

    def _wait(self, condition: Any, what: str) -> None:
        with self.arrived:
            done = self.arrived.wait_for(
                lambda: condition() or self.error is not None or not self.thread.is_alive(),
                timeout=HANG,
            )
        if self.error is not None:
            raise self.error
        assert done and condition(), f"the reader stopped or hung before {what}"

    def wait_for(self, changes: int) -> None:
        self._wait(lambda: self.changes() >= changes, f"{changes} changes")

    def sync(self) -> None:
        """Commit a marker row and wait until the reader has handed it out."""
        self.db.run(f"INSERT INTO {MARKER} VALUES ()")
        (last,) = self.db.run("SELECT LAST_INSERT_ID()")[0]
        marker = {"id": last}

        def arrived() -> bool:
            changes = [c for tx in self.all for c in tx.changes]
            return any(c.table.name == MARKER and dict(c.key) == marker for c in changes)

        self._wait(arrived, f"marker {last}")

    def stop(self) -> None:
        """Close from this thread; the reading thread must return (see HANG)."""
        self.reader.close()
        self.thread.join(HANG)
        assert not self.thread.is_alive(), "close() did not end the reading thread"
        if self.error is not None:
            raise self.error


def dump_threads(db: Db) -> list[int]:
    rows = db.run(
        "SELECT id FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%%'"
    )
    return [int(r[0]) for r in rows]


# -- types: every value equal to the full load ----------------------------------------------

TYPES = """CREATE TABLE ty (
  id INT UNSIGNED PRIMARY KEY, ti TINYINT, tiu TINYINT UNSIGNED, b1 TINYINT(1),
  si SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE, bt BIT(10), bt1 BIT(1), b64 BIT(64),
  dt DATE, dtt DATETIME(6), dt0 DATETIME, ts TIMESTAMP(6) NULL, ts0 TIMESTAMP NULL,
  tm TIME(6), tm0 TIME, tm3 TIME(3), yr YEAR,
  e ENUM('a','b','c'), st SET('x','y','z'), j JSON, c CHAR(5), vc VARCHAR(20), tx TEXT,
  l1 VARCHAR(10) CHARACTER SET latin1, bn BINARY(4), vb VARBINARY(10), bl BLOB,
  g GEOMETRY NULL, u UUID NULL, i6 INET6 NULL
) ENGINE=InnoDB"""

ROWS = [
    # extremes, emoji, latin1, trailing zero bytes, negative and > 24 h TIME
    "(1, -128, 255, 1, 65535, -8388608, 16777215, -9223372036854775808, 18446744073709551615,"
    " '-12345678901234567890123456789012345.123456789012345678901234567890', -1.50, 1.1, 3.3,"
    " b'1010101010', b'1', b'1111111111111111111111111111111111111111111111111111111111111111',"
    " '9999-12-31', '2020-02-29 10:11:12.123456', '1000-01-01 00:00:00',"
    " '2024-01-01 05:00:00.5', '2038-01-19 08:14:07', '-838:59:59.000000', '25:00:01',"
    " '00:00:00.001', 2155, 'b', 'x,z', '{\"a\": [1, 2.50], \"é\": null}', 'ab', 'héllo😀',"
    " 'text', 'café', x'00010200', x'ff00', x'deadbeef00', ST_GeomFromText('POINT(1 2)'),"
    " 'a1b2c3d4-0000-4111-8222-333344445555', '::ffff:1.2.3.4')",
    # every nullable column NULL
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    # zero and partial dates (read as NULL and counted), empty SET, empty strings, year 0
    "(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.0, 1e308, b'0', b'0', b'0', '0000-00-00',"
    " '2020-00-15 10:11:12', '0000-00-00 00:00:00', '0000-00-00 00:00:00', NULL, '00:00:00',"
    " '-00:00:01', '23:59:59.999', 0, '', '', '[]', '', '', '', '', '', '', '', NULL,"
    " '6ccd780c-baba-1026-9564-5b8c656024db', '2001:db8::1')",
]


def test_every_type_equals_the_full_load_whatever_the_session_time_zone(db: Db) -> None:
    db.run(TYPES)
    (table,) = db.tables("ty")
    start = db.position()
    db.run("SET SESSION sql_mode = ''", "SET SESSION time_zone = '+05:00'")
    for row in ROWS:
        db.run(f"INSERT INTO ty VALUES {row}")
    loaded, at = full_load(db, [table])
    db.run("SET SESSION time_zone = '-07:00'")
    db.run("UPDATE ty SET ti = 7, ts = '2030-06-01 12:00:00.25', tm0 = '-12:00:00' WHERE id = 1")
    db.run("UPDATE ty SET ti = 8 WHERE id IN (2, 3)")
    db.run("DELETE FROM ty WHERE id = 3")
    after_update, _ = full_load(db, [table])
    with cdc.MysqlChangeReader(db.params, [table], task="t", blocking=False) as reader:
        txs = [tx for tx in reader.transactions(start) if tx.changes]
        zero = dict(reader.zero_dates)
    changes = flat(txs)
    inserts = [after for op, _, _, _, after in changes if op is Op.INSERT]
    for got, want in zip(inserts, loaded["ty"], strict=True):
        assert {k: (v, got[k]) for k, v in want.items() if v != got[k]} == {}
    assert inserts == loaded["ty"]  # dict equality: same columns, same values, same types
    for got, want in zip(inserts, loaded["ty"], strict=True):
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
    updates = [(before, after) for op, _, _, before, after in changes if op is Op.UPDATE]
    assert [b for b, _ in updates] == loaded["ty"]
    assert [a for _, a in updates] == [
        *after_update["ty"],
        {**loaded["ty"][2], "ti": 8},
    ]
    deletes = [before for op, _, _, before, _ in changes if op is Op.DELETE]
    assert deletes == [{**loaded["ty"][2], "ti": 8}]
    assert inserts[0]["ts"] == datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    # row 3's zero dates, NULL in each of its 4 images (insert, update before/after, delete)
    assert zero == {(str(table.id), c): 4 for c in ("dt", "dtt", "dt0", "ts")}
    # the inserts (one transaction per row) precede the snapshot; everything after follows it
    positions = [tx.position for tx in txs]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [tx.position <= at for tx in txs] == [True] * len(ROWS) + [False] * 3
    assert [{c.op for c in tx.changes} for tx in txs] == [{Op.INSERT}] * len(ROWS) + [
        {Op.UPDATE},
        {Op.UPDATE},
        {Op.DELETE},
    ]


def test_zero_date_in_a_not_null_column_is_refused_naming_table_column_and_key(db: Db) -> None:
    db.run("CREATE TABLE z (id INT PRIMARY KEY, d DATE NOT NULL)")
    tables = db.tables("z")
    start = db.position()
    db.run("SET SESSION sql_mode = ''", "INSERT INTO z VALUES (5, '0000-00-00')")
    with pytest.raises(DataError, match=r"column d.*key id=5"):
        drain(db, tables, start)


# -- transactions ------------------------------------------------------------------------


def test_transactions_keep_source_boundaries_and_skip_other_tables(db: Db) -> None:
    db.run(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10))",
        "CREATE TABLE b (id INT PRIMARY KEY, n INT)",
        "CREATE TABLE other (id INT PRIMARY KEY)",
    )
    tables = db.tables("a", "b")
    start = db.position()
    db.run("INSERT INTO a VALUES (1, 'x'), (2, 'y'), (3, 'z')")  # one statement, three rows
    db.run("BEGIN")
    db.run("INSERT INTO b VALUES (10, 1)")
    db.run("UPDATE a SET v = 'w' WHERE id = 1")
    db.run("INSERT INTO other VALUES (1)")
    db.run("DELETE FROM a WHERE id = 2")
    db.run("COMMIT")
    db.run("INSERT INTO other VALUES (2)")  # a transaction with no selected table
    db.run("BEGIN", "INSERT INTO b VALUES (11, 2)", "ROLLBACK")  # never in the binlog
    db.run("BEGIN", "UPDATE b SET id = 12 WHERE id = 10", "SAVEPOINT s", "COMMIT")
    txs = drain(db, tables, start)
    assert [len(tx) for tx in txs] == [3, 3, 1]
    assert flat(txs[1:]) == [
        (Op.INSERT, "b", {"id": 10}, None, {"id": 10, "n": 1}),
        (Op.UPDATE, "a", {"id": 1}, {"id": 1, "v": "x"}, {"id": 1, "v": "w"}),
        (Op.DELETE, "a", {"id": 2}, {"id": 2, "v": "y"}, None),
        (Op.UPDATE, "b", {"id": 10}, {"id": 10, "n": 1}, {"id": 12, "n": 1}),
    ]
    positions = [tx.position for tx in txs]
    assert positions == sorted(positions) and len(set(positions)) == 3
    for tx in txs:
        assert isinstance(tx.position, BinlogPosition) and tx.position.gtid
        assert all(c.position == tx.position and c.txid == tx.txid for c in tx.changes)
        assert tx.commit_ts is not None and tx.commit_ts.tzinfo is UTC
        assert isinstance(tx.txid, str) and tx.txid.count("-") == 2  # MariaDB GTID
    assert txs[0].changes[0].table == TableId(db.name, "a")
    # resuming at a transaction's position delivers exactly the ones after it
    assert flat(drain(db, tables, txs[0].position)) == flat(txs[1:])
    assert drain(db, tables, txs[-1].position) == []


def test_gtid_mode_reads_the_same_transactions_as_file_and_offset(db: Db) -> None:
    db.run("CREATE TABLE g (id INT PRIMARY KEY, v LONGTEXT)")
    tables = db.tables("g")
    start = db.position()
    for i in range(200):  # enough data that a dump request error would reset the stream
        db.run(f"INSERT INTO g VALUES ({i}, REPEAT('x', 5000))")
    by_file = drain(db, tables, start)
    by_gtid = drain(db, tables, start, use_gtid=True)
    assert len(by_file) == 200
    assert flat(by_gtid) == flat(by_file)
    assert [tx.position for tx in by_gtid] == [tx.position for tx in by_file]


def test_truncate_is_a_truncate_change(db: Db) -> None:
    db.run("CREATE TABLE t (id INT PRIMARY KEY)", "CREATE TABLE u (id INT PRIMARY KEY)")
    tables = db.tables("t")
    start = db.position()
    db.run("INSERT INTO t VALUES (1)", "TRUNCATE TABLE t", "TRUNCATE u")
    db.run(f"TRUNCATE `{db.name}`.`t`")
    txs = drain(db, tables, start)
    assert [c[:3] for c in flat(txs)] == [
        (Op.INSERT, "t", {"id": 1}),
        (Op.TRUNCATE, "t", {}),
        (Op.TRUNCATE, "t", {}),
    ]


def test_alter_table_add_column_is_a_schema_change_then_rows_carry_it(
    db: Db, marker_table: None
) -> None:
    db.run("CREATE TABLE s (id INT PRIMARY KEY, a INT)", "CREATE TABLE o (id INT PRIMARY KEY)")
    follower = Follower(db, db.tables("s"), db.position(), progress_interval=3600)
    seen = 0

    def step(*statements: str, expect: int = 1) -> None:
        nonlocal seen
        db.run(*statements)
        seen += expect
        follower.sync()
        assert len(follower.txs) == seen

    try:
        step("INSERT INTO s VALUES (1, 1)")
        step("ALTER TABLE s ADD COLUMN b VARCHAR(20) NULL, ADD INDEX (a)")
        step("ALTER TABLE o ADD COLUMN z INT", expect=0)  # not a selected table
        step("INSERT INTO s VALUES (2, 2, 'two')")
        step("ALTER TABLE s ADD COLUMN c DECIMAL(5,2) NOT NULL DEFAULT 1.50")
        step("ALTER TABLE s MODIFY a BIGINT, DROP COLUMN b")
        step("UPDATE s SET c = 2.25 WHERE id = 2")
        step("ALTER TABLE s ADD INDEX (c)", expect=0)  # no column changed
        step("RENAME TABLE s TO s2")
    finally:
        follower.stop()
    txs = follower.txs
    schema = [sc for tx in txs for sc in tx.schema_changes]
    assert [
        (sc.table.name, [c.name for c in sc.added], sc.dropped, sc.changed) for sc in schema
    ] == [
        ("s", ["b"], (), ()),
        ("s", ["c"], (), ()),
        ("s", [], ("b",), ("a",)),
        ("s", [], ("id", "a", "c"), ()),
    ]
    assert schema[0].additive and schema[0].added[0].type == Type.string(20)
    assert not schema[1].additive  # NOT NULL
    assert not schema[2].additive and "DROP COLUMN b" in schema[2].description
    assert "renamed" in schema[3].description
    assert all(not tx.changes for tx in txs if tx.schema_changes)
    assert [after for _, _, _, _, after in flat(txs)] == [
        {"id": 1, "a": 1},
        {"id": 2, "a": 2, "b": "two"},
        {"id": 2, "a": 2, "c": Decimal("2.25")},
    ]


def test_a_column_added_then_dropped_before_the_reader_got_there_is_not_additive(db: Db) -> None:
    db.run("CREATE TABLE l (id INT PRIMARY KEY)")
    tables = db.tables("l")
    start = db.position()
    db.run("ALTER TABLE l ADD COLUMN x INT NULL", "INSERT INTO l VALUES (1, 5)")
    db.run("ALTER TABLE l DROP COLUMN x")
    txs = drain(db, tables, start)
    (added, dropped) = [sc for tx in txs for sc in tx.schema_changes]
    assert not added.additive and added.changed == ("x",) and "gone" in added.description
    assert dropped.dropped == ("x",)
    assert flat(txs)[0][4] == {"id": 1, "x": 5}


# -- handoff, restart, reconnect ---------------------------------------------------------


class Progress:
    """A count of writes another thread can wait on."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def tick(self) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_for_more(self, n: int) -> None:
        with self.changed:
            target = self.count + n
            assert self.changed.wait_for(lambda: self.count >= target, timeout=HANG)


def _writer(db_conn: Any, stop: threading.Event, seed: int, progress: Progress) -> None:
    rnd = random.Random(seed)
    with db_conn.cursor() as cur:
        while not stop.is_set():
            progress.tick()
            k = rnd.randrange(300)
            op = rnd.random()
            if op < 0.5:
                cur.execute(
                    "INSERT INTO h VALUES (%s, %s) ON DUPLICATE KEY UPDATE v = v + 1", (k, k)
                )
            elif op < 0.8:
                cur.execute("UPDATE h SET v = v + 7 WHERE id = %s", (k,))
            else:
                cur.execute("DELETE FROM h WHERE id = %s", (k,))
            if rnd.random() < 0.2:
                cur.execute("BEGIN")
                cur.execute(
                    "UPDATE h SET v = (v * 2) %% 1000003 WHERE id < %s", (rnd.randrange(300),)
                )
                cur.execute("INSERT IGNORE INTO h VALUES (%s, 0)", (rnd.randrange(300),))
                cur.execute("COMMIT")


def test_snapshot_handoff_is_exact_under_a_concurrent_writer(db: Db) -> None:
    db.run("CREATE TABLE h (id INT PRIMARY KEY, v BIGINT NOT NULL)")
    tables = db.tables("h")
    db.run("INSERT INTO h SELECT seq, seq FROM seq_0_to_149")
    stop = threading.Event()
    conn = db.server.connect(db.name)
    progress = Progress()
    writer = threading.Thread(target=_writer, args=(conn, stop, 7, progress), daemon=True)
    writer.start()
    try:
        progress.wait_for_more(100)  # the writer is busy before the snapshot ...
        loaded, position = full_load(db, tables)
        progress.wait_for_more(100)  # ... and after it
    finally:
        stop.set()
        writer.join(10)
        conn.close()
    state = {r["id"]: dict(r) for r in loaded["h"]}
    problems = []
    for op, _, key, before, after in flat(drain(db, tables, position)):
        k = key["id"]
        if op is Op.INSERT:
            problems += [("insert of existing", k)] if k in state else []
            state[k] = after
        elif op is Op.UPDATE:
            problems += [("update of missing", k)] if state.get(k) != before else []
            state.pop(k, None)
            state[after["id"]] = after
        else:
            problems += [("delete of missing", k)] if state.get(k) != before else []
            state.pop(k, None)
    assert problems == []
    final = {r[0]: {"id": r[0], "v": r[1]} for r in db.run("SELECT id, v FROM h")}
    assert state == final


def test_reconnects_after_the_dump_thread_is_killed_without_loss_or_duplicates(
    db: Db, marker_table: None
) -> None:
    db.run("CREATE TABLE k (id INT PRIMARY KEY)")
    tables = db.tables("k")
    follower = Follower(db, tables, db.position())
    try:
        for round_ in range(3):
            for i in range(50):
                db.run(f"INSERT INTO k VALUES ({round_ * 1000 + i})")
            follower.wait_for(50 * (round_ + 1))
            killed = dump_threads(db)
            assert killed
            for pid in killed:
                db.run(f"KILL {pid}")
        for i in range(20):
            db.run(f"INSERT INTO k VALUES ({5000 + i})")
        follower.wait_for(170)
        follower.sync()  # any duplicate arrives before the marker
    finally:
        follower.stop()  # close() works on the reconnected stream too
    keys = [c.key["id"] for tx in follower.txs for c in tx.changes]
    assert sorted(keys) == sorted({*keys}) and len(keys) == 170
    positions = [tx.position for tx in follower.txs]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_close_from_another_thread_stops_an_idle_reader(db: Db, marker_table: None) -> None:
    db.run("CREATE TABLE c (id INT PRIMARY KEY)")
    follower = Follower(db, db.tables("c"), db.position(), heartbeat=NEVER)
    follower.sync()  # the reader is up and idle, waiting for the next event
    follower.stop()  # ends it, not the heartbeat an hour away (see HANG)


def test_a_purged_binlog_position_is_lost_never_a_silent_restart(db: Db) -> None:
    db.run("CREATE TABLE p (id INT PRIMARY KEY)")
    tables = db.tables("p")
    old = db.position()
    db.run("INSERT INTO p VALUES (1)")
    db.run("FLUSH BINARY LOGS")
    (current,) = db.run("SHOW MASTER STATUS")[:1]
    for pid in dump_threads(db):  # a binlog being sent to a replica is not purged
        db.run(f"KILL {pid}")
    deadline = time.monotonic() + 10
    while old.file in [r[0] for r in db.run("SHOW BINARY LOGS")]:
        # nor one InnoDB may still need for crash recovery (flushed about once a second here)
        assert time.monotonic() < deadline, db.run("SHOW WARNINGS")
        db.run(f"PURGE BINARY LOGS TO '{current[0]}'")
        time.sleep(0.1)
    with pytest.raises(PositionLostError, match=rf"{old.file}.*purged.*full load"):
        drain(db, tables, old)
    with pytest.raises(PositionLostError, match="full load"):
        drain(db, tables, BinlogPosition(old.file, old.pos))  # without GTID state too


def test_a_position_ahead_of_the_server_is_lost(db: Db) -> None:
    db.run("CREATE TABLE q (id INT PRIMARY KEY)")
    tables = db.tables("q")
    now = db.position()
    with pytest.raises(PositionLostError, match="ahead"):
        drain(db, tables, BinlogPosition(now.file, now.pos + 10_000))
    with pytest.raises(PositionLostError, match="not on"):
        drain(db, tables, BinlogPosition(f"binlog.{now.sequence + 5:06d}", 4))


def test_resume_from_an_acknowledged_position(db: Db) -> None:
    db.run("CREATE TABLE r (id INT PRIMARY KEY)")
    tables = db.tables("r")
    start = db.position()
    db.run("INSERT INTO r VALUES (1)", "INSERT INTO r VALUES (2)")
    with cdc.MysqlChangeReader(db.params, tables, task="t", blocking=False) as reader:
        first = next(iter(reader.transactions(start)))
        reader.ack(first.position)
        assert reader.acknowledged == first.position
    with cdc.MysqlChangeReader(
        db.params, tables, task="t", blocking=False, start=first.position
    ) as reader:
        assert [c.key for tx in reader.transactions() for c in tx.changes] == [{"id": 2}]


# -- preflight ---------------------------------------------------------------------------


@pytest.fixture
def global_setting(db: Db) -> Iterator[Any]:
    saved: dict[str, str] = {}

    def set_(name: str, value: str) -> None:
        saved.setdefault(name, db.run(f"SELECT @@GLOBAL.{name}")[0][0])
        db.run(f"SET GLOBAL {name} = '{value}'")

    yield set_
    for name, value in saved.items():
        db.run(f"SET GLOBAL {name} = '{value}'")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("binlog_row_metadata", "MINIMAL"),
        ("binlog_format", "STATEMENT"),
        ("binlog_row_image", "MINIMAL"),
    ],
)
def test_setup_refuses_settings_that_lose_data(
    db: Db, global_setting: Any, name: str, value: str
) -> None:
    db.run("CREATE TABLE f (id INT PRIMARY KEY)")
    tables = db.tables("f")
    cdc.setup(db.params, tables, task="t")
    global_setting(name, value)
    with pytest.raises(ConfigError, match=rf"{name} is {value}.*SET GLOBAL {name}"):
        cdc.setup(db.params, tables, task="t")
    with pytest.raises(ConfigError, match=name):  # a running reader re-checks at (re)connect
        drain(db, tables, db.position())


def test_setup_refuses_tables_without_primary_key_by_name(db: Db) -> None:
    db.run("CREATE TABLE nokey (a INT)", "CREATE TABLE withkey (id INT PRIMARY KEY)")
    with pytest.raises(ConfigError, match=rf"{db.name}\.nokey") as info:
        cdc.setup(db.params, db.tables("nokey", "withkey"), task="t")
    assert "withkey" not in str(info.value)


def test_setup_names_missing_privileges(db: Db) -> None:
    db.run("CREATE TABLE priv (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)")
    tables = db.tables("priv")
    user = f"rk_{db.name[-8:]}"
    db.run(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-secret'")
    try:
        db.run(f"GRANT SELECT ON `{db.name}`.`other` TO '{user}'@'%'")
        url = f"mysql://{user}:pw-secret@{db.server.host}:{db.server.port}/{db.name}"
        params = ConnParams.from_url(url, url)
        with pytest.raises(ConfigError) as info:
            cdc.setup(params, tables, task="t")
        message = str(info.value)
        assert "REPLICATION SLAVE" in message and "BINLOG MONITOR" in message
        assert f"SELECT ON `{db.name}`.`priv`" in message and "pw-secret" not in message
        db.run(f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'%'")
        db.run(f"GRANT SELECT ON `{db.name}`.* TO '{user}'@'%'")
        cdc.setup(params, tables, task="t")
    finally:
        db.run(f"DROP USER '{user}'@'%'")


def test_snapshot_refuses_non_transactional_tables(db: Db) -> None:
    db.run("CREATE TABLE m (id INT PRIMARY KEY) ENGINE=Aria")
    tables = db.tables("m")
    with (
        pytest.raises(ConfigError, match=rf"{db.name}\.m \(Aria\).*InnoDB"),
        cdc.snapshot(db.params, tables, task="t"),
    ):
        pass


def test_start_and_teardown(db: Db) -> None:
    pos = cdc.start(db.params, [], task="t")
    assert pos.gtid and pos.pos >= 4
    assert Position.parse(str(pos)) == pos
    cdc.teardown(db.params, task="t")  # nothing to remove; must not fail


def test_binlog_errors_never_show_the_password(db: Db) -> None:
    url = f"mysql://root:wrong-secret@{db.server.host}:{db.server.port}/{db.name}"
    params = ConnParams.from_url(url, url)
    with pytest.raises(ConfigError, match="Access denied") as info:
        cdc.start(params, [], task="t")
    assert "wrong-secret" not in str(info.value)
    assert "wrong-secret" not in repr(info.value.__cause__)


def test_the_endpoint_delegates_to_the_binlog_reader(db: Db) -> None:
    from replikit.endpoints.mysql import MysqlEndpoint

    db.run("CREATE TABLE e (id INT PRIMARY KEY, v VARCHAR(5))", "INSERT INTO e VALUES (1, 'a')")
    with MysqlEndpoint(db.url) as ep:
        (table,) = ep.reflect().tables
        assert table.id == TableId(db.name, "e")
        ep.cdc_setup([table], task="t")
        with ep.cdc_snapshot([table], task="t") as (reader, position):
            (unit,) = reader.units(table)
            assert [list(b.rows) for b in reader.read(unit)] == [[(1, "a")]]
        db.run("INSERT INTO e VALUES (2, 'b')")
        assert position < ep.cdc_start([table], task="t")
        changes = ep.cdc_reader([table], task="t", blocking=False)
        try:
            (tx,) = [tx for tx in changes.transactions(position) if tx.changes]
        finally:
            changes.close()
        assert tx.changes[0].after == {"id": 2, "v": "b"}
        ep.cdc_teardown(task="t")

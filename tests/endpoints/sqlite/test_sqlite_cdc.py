"""SQLite CDC (triggers into a change table) against real database files."""

from __future__ import annotations

import math
import queue
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets import CHINOOK_SQLITE
from replikit.changes import Op, Transaction
from replikit.endpoints.sqlite import SqliteEndpoint, cdc
from replikit.errors import ConfigError, DataError, PositionLostError, SchemaError
from replikit.pipeline.contracts import Unit
from replikit.positions import Position, SqliteSeq
from replikit.schema.model import TableId

CHINOOK = CHINOOK_SQLITE

ITEMS = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price NUMERIC(10,2), "
    "at DATETIME, data BLOB, big INTEGER, score REAL)"
)


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "src.db"
    with _open(p) as conn:
        conn.execute(ITEMS)
    return p


@pytest.fixture
def ep(path: Path) -> Iterator[SqliteEndpoint]:
    endpoint = SqliteEndpoint(f"sqlite:///{path}")
    yield endpoint
    endpoint.close()


def _reader(ep: SqliteEndpoint, **kw: Any) -> cdc.SqliteChangeReader:
    kw.setdefault("stop_when_idle", 0)
    kw.setdefault("poll_interval", 0)
    return cdc.SqliteChangeReader(ep, **kw)


def _drain(ep: SqliteEndpoint, start: Position | None = None, **kw: Any) -> list[Transaction]:
    with _reader(ep, **kw) as reader:
        return list(reader.transactions(start))


def _full_load(ep: SqliteEndpoint, table: str) -> list[dict[str, Any]]:
    reader = ep.reader([table])
    rows: list[dict[str, Any]] = []
    for batch in reader.read(Unit(TableId(None, table))):
        rows.extend(dict(zip(batch.columns, r, strict=True)) for r in batch.rows)
    return rows


def _objects(path: Path) -> set[str]:
    with _open(path) as conn:
        return {
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '_replikit%'")
        }


# -- setup ---------------------------------------------------------------------------------


def test_install_and_uninstall_are_idempotent(ep: SqliteEndpoint, path: Path) -> None:
    cdc.uninstall(ep)  # nothing installed: no error
    cdc.install(ep, ["items"])
    cdc.install(ep, [TableId(None, "ITEMS")])  # names are case-insensitive; re-run regenerates
    assert cdc.installed_tables(ep) == ["items"]
    triggers = {"_replikit_items_ins", "_replikit_items_upd", "_replikit_items_del"}
    assert triggers <= _objects(path)
    with _open(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # replikit's own tables are not user tables
    assert [t.id.name for t in ep.reflect().tables] == ["items"]
    cdc.uninstall(ep)
    cdc.uninstall(ep)
    assert not _objects(path)
    assert cdc.installed_tables(ep) == []


def test_install_refuses_missing_tables_and_memory(ep: SqliteEndpoint) -> None:
    with pytest.raises(SchemaError, match="nope"):
        cdc.install(ep, ["nope"])
    with SqliteEndpoint("sqlite:///:memory:") as mem, pytest.raises(ConfigError, match="in-memory"):
        cdc.install(mem, ["x"])


def test_uninstall_one_table_keeps_the_others(ep: SqliteEndpoint, path: Path) -> None:
    with _open(path) as conn:
        conn.execute("CREATE TABLE other (k TEXT PRIMARY KEY)")
    cdc.install(ep, ["items", "other"])
    with _open(path) as conn:
        conn.execute("INSERT INTO other VALUES ('a')")
        conn.execute("INSERT INTO items (id) VALUES (1)")
    cdc.uninstall(ep, ["other"])
    assert cdc.installed_tables(ep) == ["items"]
    assert [t.changes[0].table.name for t in _drain(ep)] == ["items"]
    with _open(path) as conn:
        conn.execute("INSERT INTO other VALUES ('b')")  # no trigger any more
    assert len(_drain(ep)) == 1


# -- values and order ----------------------------------------------------------------------


def test_changes_by_another_connection_in_order_with_canonical_values(
    ep: SqliteEndpoint, path: Path
) -> None:
    cdc.install(ep, ["items"])
    before_write = datetime.now(UTC) - timedelta(seconds=5)
    with _open(path) as conn:
        conn.execute(
            "INSERT INTO items VALUES (1, 'Zoë 🚀', 12.5, '2024-02-29 13:45:01.123456', "
            "x'00ff10', 9223372036854775807, 0.30000000000000004)"
        )
        conn.execute(
            "INSERT INTO items VALUES (2, NULL, NULL, NULL, NULL, -9223372036854775808, NULL)"
        )
        full = {r["id"]: r for r in _full_load(ep, "items")}
        conn.execute("UPDATE items SET price = '7.10', name = '' WHERE id = 1")
        conn.execute("UPDATE items SET id = 20, data = x'' WHERE id = 2")  # key change
        conn.execute("DELETE FROM items WHERE id = 1")
    txs = _drain(ep)
    assert [t.position for t in txs] == [SqliteSeq(i) for i in range(1, 6)]
    changes = [t.changes[0] for t in txs]
    assert [c.op for c in changes] == [Op.INSERT, Op.INSERT, Op.UPDATE, Op.UPDATE, Op.DELETE]
    assert all(c.table == TableId(None, "items") for c in changes)
    assert all(len(t) == 1 and t.position == t.changes[0].position for t in txs)
    # inserts: exactly what a full load reads for the same rows
    assert changes[0].after == full[1]
    assert changes[1].after == full[2]
    assert changes[0].before is None
    assert changes[0].after == {
        "id": 1,
        "name": "Zoë 🚀",
        "price": Decimal("12.50"),
        "at": datetime(2024, 2, 29, 13, 45, 1, 123456),
        "data": b"\x00\xff\x10",
        "big": 2**63 - 1,
        "score": 0.30000000000000004,
    }
    assert changes[1].after == {
        "id": 2,
        "name": None,
        "price": None,
        "at": None,
        "data": None,
        "big": -(2**63),
        "score": None,
    }
    upd = changes[2]
    assert upd.key == {"id": 1}
    assert upd.before == full[1]
    assert upd.after is not None
    assert upd.after["price"] == Decimal("7.10")
    assert upd.after["name"] == ""
    moved = changes[3]
    assert moved.key == {"id": 2}  # the key before the change
    assert moved.before is not None
    assert moved.after is not None
    assert (moved.before["id"], moved.after["id"]) == (2, 20)
    assert (moved.before["data"], moved.after["data"]) == (None, b"")  # hex(NULL) = '' guarded
    dele = changes[4]
    assert dele.key == {"id": 1}
    assert dele.after is None
    assert dele.before == upd.after
    for t in txs:
        assert t.commit_ts is not None
        assert t.commit_ts.tzinfo is UTC
        assert before_write <= t.commit_ts <= datetime.now(UTC) + timedelta(seconds=5)
        assert t.changes[0].commit_ts == t.commit_ts


def test_rolled_back_writes_produce_no_changes(ep: SqliteEndpoint, path: Path) -> None:
    cdc.install(ep, ["items"])
    with _open(path) as conn:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'gone')")
        conn.execute("ROLLBACK")
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'kept')")
        conn.execute("BEGIN")
        conn.execute("UPDATE items SET name = 'x'")
        conn.execute("DELETE FROM items")
        conn.execute("ROLLBACK")
    txs = _drain(ep)
    assert [(t.changes[0].op, t.changes[0].key) for t in txs] == [(Op.INSERT, {"id": 2})]
    assert txs[0].position == SqliteSeq(1)  # AUTOINCREMENT rolled back too: no gap


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=20))
def test_reals_survive_bit_exactly(values: list[float]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "r.db"
        with _open(p) as conn:
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, r REAL, d DOUBLE)")
        with SqliteEndpoint(f"sqlite:///{p}") as ep:
            cdc.install(ep, ["t"])
            with _open(p) as conn:
                conn.executemany("INSERT INTO t (r, d) VALUES (?, ?)", [(v, -v) for v in values])
            got = [t.changes[0].after for t in _drain(ep)]
            full = _full_load(ep, "t")
    assert got == full
    for image, value in zip(got, values, strict=True):
        assert image is not None
        assert math.copysign(1, image["r"]) == math.copysign(1, value) or value == 0
        assert image["r"] == value
        assert image["d"] == -value


def test_wrongly_typed_stored_value_is_a_data_error_like_full_load(
    ep: SqliteEndpoint, path: Path
) -> None:
    cdc.install(ep, ["items"])
    with _open(path) as conn:
        conn.execute("INSERT INTO items (id, big) VALUES (7, 'abc')")
    with pytest.raises(DataError, match="big"):
        _full_load(ep, "items")
    with pytest.raises(DataError, match=r"big.*key id=7"):
        _drain(ep)


def test_keyless_and_wide_tables(ep: SqliteEndpoint, path: Path) -> None:
    cols = ", ".join(f"c{i} INTEGER" for i in range(100))
    with _open(path) as conn:
        conn.execute("CREATE TABLE bag (v TEXT)")
        conn.execute(f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {cols})")
    cdc.install(ep, ["bag", "wide"])
    with _open(path) as conn:
        conn.execute("INSERT INTO bag VALUES ('a'), ('a')")
        conn.execute("DELETE FROM bag WHERE rowid = 2")
        conn.execute(f"INSERT INTO wide VALUES (1, {', '.join(str(i * 10) for i in range(100))})")
    changes = [t.changes[0] for t in _drain(ep)]
    assert [(c.op, c.key) for c in changes[:3]] == [
        (Op.INSERT, {"rowid": 1}),
        (Op.INSERT, {"rowid": 2}),
        (Op.DELETE, {"rowid": 2}),
    ]
    assert changes[2].before == {"v": "a"}
    assert changes[3].after == _full_load(ep, "wide")[0]
    assert len(changes[3].after) == 101


# -- positions -----------------------------------------------------------------------------


def _insert(path: Path, ids: range) -> None:
    with _open(path) as conn:
        conn.executemany("INSERT INTO items (id, name) VALUES (?, ?)", [(i, f"n{i}") for i in ids])


def test_resume_from_a_stored_position_delivers_exactly_the_rest(
    ep: SqliteEndpoint, path: Path
) -> None:
    cdc.install(ep, ["items"])
    _insert(path, range(1, 11))
    with _reader(ep, batch_size=3) as reader:
        first: list[Transaction] = []
        for tx in reader.transactions():
            first.append(tx)
            if len(first) == 4:
                break
    stored = str(first[-1].position)
    _insert(path, range(11, 14))
    rest = _drain(ep, Position.parse(stored), batch_size=3)
    ids = [t.changes[0].key["id"] for t in first + rest]
    assert ids == list(range(1, 14))
    assert [t.position for t in rest] == [SqliteSeq(i) for i in range(5, 14)]
    assert _drain(ep, SqliteSeq(13)) == []
    # a reader's stored start, and ack as the default start
    assert [t.position for t in _drain(ep, start=SqliteSeq(11))] == [SqliteSeq(12), SqliteSeq(13)]
    with _reader(ep) as reader:
        reader.ack(SqliteSeq(12))
        assert [t.position for t in reader.transactions()] == [SqliteSeq(13)]


def test_position_ahead_of_the_table_is_lost(ep: SqliteEndpoint, path: Path) -> None:
    cdc.install(ep, ["items"])
    _insert(path, range(1, 3))
    with _reader(ep) as reader, pytest.raises(PositionLostError, match="ahead"):
        next(reader.transactions(SqliteSeq(99)))


def test_purge_only_deletes_acknowledged_changes(ep: SqliteEndpoint, path: Path) -> None:
    cdc.install(ep, ["items"])
    _insert(path, range(1, 7))
    with _reader(ep) as reader:
        txs = list(reader.transactions())
        assert reader.purge() == 0  # nothing acknowledged yet
        reader.ack(txs[3].position)
        reader.ack(txs[1].position)  # an older ack does not move it back
        assert reader.acknowledged == SqliteSeq(4)
        assert reader.purge(SqliteSeq(2)) == 2
        assert reader.purge(SqliteSeq(100)) == 2  # capped at the ack
        assert reader.purge() == 0
    with _open(path) as conn:
        assert [r[0] for r in conn.execute("SELECT seq FROM _replikit_changes")] == [5, 6]
    assert [t.position for t in _drain(ep, SqliteSeq(4))] == [SqliteSeq(5), SqliteSeq(6)]
    with _reader(ep) as reader, pytest.raises(PositionLostError, match="purged"):
        next(reader.transactions(SqliteSeq(1)))
    _insert(path, range(7, 8))  # AUTOINCREMENT: seq is never reused after a purge
    assert [t.position for t in _drain(ep, SqliteSeq(4))][-1] == SqliteSeq(7)


# -- schema changes ------------------------------------------------------------------------


def test_schema_change_raises_until_setup_is_rerun_and_a_rename_is_reported(
    ep: SqliteEndpoint, path: Path
) -> None:
    cdc.install(ep, ["items"])
    _insert(path, range(1, 3))
    with _reader(ep) as reader:
        it = reader.transactions()
        assert next(it).position == SqliteSeq(1)
        with _open(path) as conn:
            conn.execute("ALTER TABLE items ADD COLUMN extra TEXT")
            conn.execute("INSERT INTO items (id, extra) VALUES (3, 'e')")
        with pytest.raises(SchemaError, match=r"items.*changed columns.*re-run"):
            list(it)
    cdc.install(ep, ["items"])
    with _open(path) as conn:
        conn.execute("INSERT INTO items (id, extra) VALUES (4, 'f')")
    last = _drain(ep, SqliteSeq(3))[-1].changes[0]
    assert last.after is not None
    assert last.after["extra"] == "f"
    with _open(path) as conn:
        conn.execute("ALTER TABLE items RENAME TO things")
        conn.execute("INSERT INTO things (id) VALUES (5)")  # its triggers still say 'items'
    txs = _drain(ep, SqliteSeq(4))
    (sc,) = [c for tx in txs for c in tx.schema_changes]
    assert "was renamed" in sc.description and "id" in sc.dropped
    assert not [c for tx in txs for c in tx.changes]  # not passed off as changes of items


# -- handoff -------------------------------------------------------------------------------


def test_snapshot_handoff_is_exact(ep: SqliteEndpoint, path: Path) -> None:
    cdc.install(ep, ["items"])
    _insert(path, range(1, 4))
    with cdc.snapshot(ep) as (conn, mark):
        assert mark == SqliteSeq(3)
        _insert(path, range(4, 5))  # another connection, after the snapshot started
        with _open(path) as other:
            other.execute("UPDATE items SET name = 'late' WHERE id = 1")
        loaded = conn.execute("SELECT id, name FROM items ORDER BY id").fetchall()
    assert loaded == [(1, "n1"), (2, "n2"), (3, "n3")]
    changes = [t.changes[0] for t in _drain(ep, mark)]
    assert [(c.op, c.key["id"]) for c in changes] == [(Op.INSERT, 4), (Op.UPDATE, 1)]
    model = {r[0]: r[1] for r in loaded}
    for c in changes:
        assert c.after is not None
        model[c.after["id"]] = c.after["name"]
    with _open(path) as check:
        assert model == dict(check.execute("SELECT id, name FROM items").fetchall())
    assert cdc.snapshot_position(ep) == SqliteSeq(5)


def test_reader_polls_for_new_changes(ep: SqliteEndpoint, path: Path) -> None:
    cdc.install(ep, ["items"])
    reader = _reader(ep, poll_interval=0.02, stop_when_idle=None)  # runs until closed
    out: queue.Queue[Transaction] = queue.Queue()
    thread = threading.Thread(
        target=lambda: [out.put(tx) for tx in reader.transactions(None)], daemon=True
    )
    thread.start()
    got = []
    try:
        for i in (1, 2):  # each row commits while the reader is already running
            _insert(path, range(i, i + 1))
            got.append(out.get(timeout=60).position)  # 60 s: a reader that stopped polling
    finally:
        reader.close()
        thread.join(60)
    assert got == [SqliteSeq(1), SqliteSeq(2)]
    assert not thread.is_alive() and out.empty()


# -- a realistic database ------------------------------------------------------------------


def test_chinook_changes_match_full_load(tmp_path: Path) -> None:
    p = tmp_path / "chinook.db"
    shutil.copy(CHINOOK, p)
    with SqliteEndpoint(f"sqlite:///{p}") as ep:
        tables = [t.id.name for t in ep.reflect().tables]
        cdc.install(ep, tables)
        with _open(p) as conn:
            conn.execute("BEGIN")
            conn.execute("UPDATE Track SET UnitPrice = 1.29, Name = 'Ünïcode ♪' WHERE TrackId = 1")
            conn.execute(
                "INSERT INTO Invoice (InvoiceId, CustomerId, InvoiceDate, BillingCountry, Total) "
                "VALUES (9999, 1, '2026-01-02 03:04:05', 'Norway', 3.96)"
            )
            conn.execute("DELETE FROM InvoiceLine WHERE InvoiceId = 1")
            conn.execute(
                "UPDATE PlaylistTrack SET PlaylistId = 999 WHERE PlaylistId = 1 AND TrackId = 1"
            )
            conn.execute("COMMIT")
        txs = _drain(ep)
        tracks = {r["TrackId"]: r for r in _full_load(ep, "Track")}
        invoices = {r["InvoiceId"]: r for r in _full_load(ep, "Invoice")}
    changes = [t.changes[0] for t in txs]
    assert [(c.table.name, c.op) for c in changes] == [
        ("Track", Op.UPDATE),
        ("Invoice", Op.INSERT),
        ("InvoiceLine", Op.DELETE),
        ("InvoiceLine", Op.DELETE),
        ("PlaylistTrack", Op.UPDATE),
    ]
    assert changes[0].after == tracks[1]
    assert changes[0].before is not None
    assert changes[0].before["UnitPrice"] == Decimal("0.99")
    assert changes[0].after["UnitPrice"] == Decimal("1.29")
    assert changes[1].after == invoices[9999]
    assert changes[1].after["InvoiceDate"] == datetime(2026, 1, 2, 3, 4, 5)
    assert changes[1].after["Total"] == Decimal("3.96")
    assert changes[4].key == {"PlaylistId": 1, "TrackId": 1}


# -- property: replaying the changes reproduces the table ----------------------------------

_op = st.one_of(
    st.tuples(
        st.just("ins"), st.integers(0, 8), st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)
    ),
    st.tuples(st.just("upd"), st.integers(0, 8), st.text(max_size=5), st.integers(0, 8)),
    st.tuples(st.just("del"), st.integers(0, 8)),
)
_tx = st.tuples(st.lists(_op, min_size=1, max_size=5), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_tx, max_size=8), st.integers(1, 4))
def test_replaying_changes_reproduces_the_source(
    txs: list[tuple[list[tuple[Any, ...]], bool]], batch_size: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "h.db"
        with _open(p) as conn:
            conn.execute(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, n INTEGER, r REAL, "
                "b BLOB, m NUMERIC(10,2))"
            )
            conn.execute("INSERT INTO t VALUES (100, 'pre', 1, 0.5, x'01', 1.25)")
        with SqliteEndpoint(f"sqlite:///{p}") as ep:
            cdc.install(ep, ["t"])
            model = {r["id"]: r for r in _full_load(ep, "t")}
            start = cdc.snapshot_position(ep)
            with _open(p) as conn:
                for ops, commit in txs:
                    conn.execute("BEGIN")
                    for op in ops:
                        _apply(conn, op)
                    conn.execute("COMMIT" if commit else "ROLLBACK")
            changes = [t.changes[0] for t in _drain(ep, start, batch_size=batch_size)]
            expected = {r["id"]: r for r in _full_load(ep, "t")}
    for c in changes:
        if c.op is Op.INSERT:
            assert c.after is not None
            assert c.key["id"] not in model
            model[c.key["id"]] = dict(c.after)
        elif c.op is Op.UPDATE:
            assert c.after is not None
            assert model.pop(c.key["id"]) == c.before
            model[c.after["id"]] = dict(c.after)
        else:
            assert model.pop(c.key["id"]) == c.before
    assert model == expected


def _apply(conn: sqlite3.Connection, op: tuple[Any, ...]) -> None:
    kind, key = op[0], op[1]
    if kind == "ins":
        conn.execute(
            "INSERT OR IGNORE INTO t VALUES (?, ?, ?, ?, ?, ?)",
            (key, op[2], op[3] % 2**63, op[3] / 7, op[2].encode(), (op[3] % 10_000) / 100),
        )
    elif kind == "upd":
        conn.execute(
            "UPDATE OR IGNORE t SET id = ?, s = ?, b = NULL WHERE id = ?", (op[3], op[2], key)
        )
    else:
        conn.execute("DELETE FROM t WHERE id = ?", (key,))

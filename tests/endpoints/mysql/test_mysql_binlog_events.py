"""The change reader's fast paths against mysql-replication's, end to end, on a real MariaDB.

A random table of the handled column types gets a random history of transactions (inserts,
updates, key changes, deletes, NULLs, extreme and multibyte values, zero dates; full, minimal
and noblob row images; a table the reader does not follow in between). The reader reads the
binlog twice: as it does by default (its own event reading and row decoding, transactions in
lists) and with ``fast=False`` (mysql-replication throughout, one transaction at a time). Both
must give the same transactions, value for value and type for type, with the same positions,
GTID states, ids, commit times, schema changes and counted zero dates.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mysql_binlog_rows import COLUMNS, Db, _arg, position, typed

from replikit.endpoints.mysql import cdc
from replikit.endpoints.mysql._params import ConnParams
from replikit.endpoints.mysql._positions import BinlogPosition
from replikit.errors import DecodeError, Error
from replikit.schema.model import TableSchema

pytest_plugins = ["fix_mysql"]

_TABLES = itertools.count()
_OPS = ("insert", "insert", "update", "update", "rekey", "delete", "other")
statements = st.lists(
    st.tuples(
        st.sampled_from(_OPS),
        st.integers(0, 5),
        st.fixed_dictionaries({}, optional={k: st.none() | s for k, (_, s) in COLUMNS.items()}),
    ),
    min_size=1,
    max_size=4,
)


def _read(url: str, table: TableSchema, start: BinlogPosition, *, fast: bool, most: int) -> Any:
    """Every transaction after ``start`` (or the error), comparable, and the zero dates."""
    params = ConnParams.from_url(url, url)
    reader = cdc.MysqlChangeReader(
        params, [table], task="t", blocking=False, progress_interval=0, fast=fast
    )
    out: list[Any] = []
    try:
        batches = reader.transaction_batches(start, most=most)
        for batch in batches:
            assert 1 <= len(batch) <= most
            for tx in batch:
                changes = [
                    (c.op, str(c.table), c.key, c.before, c.after, c.commit_ts, c.txid)
                    for c in tx.changes
                    if str(c.position) == str(tx.position)
                ]
                assert len(changes) == len(tx.changes)
                out.append((str(tx.position), tx.commit_ts, tx.txid, tx.schema_changes, changes))
    except Error as exc:
        out.append((type(exc).__name__, str(exc)))
    finally:
        reader.close()
    return typed(out), dict(reader.zero_dates)


def _run(db: Db, table: str, columns: list[str], op: str, ident: int, row: dict[str, Any]) -> None:
    values = {k: _arg(v) for k, v in row.items() if k in columns}
    if op == "insert":
        cols = ["id", *values]
        marks = ", ".join(["%s"] * len(cols))
        db.run(
            f"REPLACE INTO {table} ({', '.join(cols)}) VALUES ({marks})",
            args=[ident, *values.values()],
        )
    elif op == "update" and values:
        sets = ", ".join(f"{k} = %s" for k in values)
        db.run(f"UPDATE {table} SET {sets} WHERE id >= %s", args=[*values.values(), ident])
    elif op == "rekey":
        db.run(f"UPDATE IGNORE {table} SET id = id + 1 WHERE id = %s", args=[ident])
    elif op == "delete":
        db.run(f"DELETE FROM {table} WHERE id = %s", args=[ident])
    elif op == "other":  # a table the reader does not follow, in the same transaction
        db.run("INSERT INTO unfollowed (n) VALUES (%s)", args=[ident])


@settings(settings.get_profile("db"), max_examples=25)
@given(
    columns=st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, max_size=8, unique=True),
    history=st.lists(statements, min_size=1, max_size=6),
    image=st.sampled_from(["FULL", "FULL", "MINIMAL", "NOBLOB"]),
    most=st.sampled_from([1, 2, 256]),
)
def test_fast_reader_yields_the_library_readers_transactions(
    mysql_server: Any,
    mysql_url: str,
    columns: list[str],
    history: list[list[tuple[str, int, dict[str, Any]]]],
    image: str,
    most: int,
) -> None:
    db = Db(mysql_server, mysql_url)
    name = f"h{next(_TABLES)}"
    try:
        db.run("SET SESSION sql_mode = ''", "SET SESSION time_zone = '+00:00'")
        db.run("CREATE TABLE IF NOT EXISTS unfollowed (n INT)")
        cols = ", ".join(f"{c} {COLUMNS[c][0]}" for c in columns)
        db.run(f"CREATE TABLE {name} (id INT PRIMARY KEY, {cols})")
        table = db.table(name)
        start = position(db.url)
        db.run(f"SET SESSION binlog_row_image = '{image}'")
        for statements_of_tx in history:
            db.run("BEGIN")
            for op, ident, row in statements_of_tx:
                _run(db, name, columns, op, ident, row)
            db.run("COMMIT")
        db.run("SET SESSION binlog_row_image = 'FULL'")
        db.run(f"INSERT INTO {name} (id) VALUES (100)")  # at least one change
        library = _read(db.url, table, start, fast=False, most=1)
        fast = _read(db.url, table, start, fast=True, most=most)
        assert fast == library
    finally:
        db.run(f"DROP TABLE IF EXISTS {name}")
        db.conn.close()


def test_a_backlog_comes_in_lists_and_a_live_transaction_at_once(
    mysql_server: Any, mysql_url: str
) -> None:
    db = Db(mysql_server, mysql_url)
    db.run("CREATE TABLE b (id INT PRIMARY KEY)")
    table = db.table("b")
    start = position(db.url)
    for i in range(60):
        db.run("BEGIN", f"INSERT INTO b VALUES ({i})", "COMMIT")
    # no heartbeat for an hour: a list held back until the next event would never arrive
    reader = cdc.MysqlChangeReader(db.params, [table], task="t", heartbeat=3600.0)
    batches: list[list[Any]] = []
    arrived = threading.Condition()

    def follow() -> None:
        for batch in reader.transaction_batches(start, most=16):
            with arrived:
                batches.append(batch)
                arrived.notify_all()

    def count() -> int:
        return sum(len(tx.changes) for batch in batches for tx in batch)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        with arrived:
            assert arrived.wait_for(lambda: count() >= 60, timeout=30)
        assert max(len(b) for b in batches) > 1 and all(len(b) <= 16 for b in batches)
        db.run("BEGIN", "INSERT INTO b VALUES (1000)", "COMMIT")
        with arrived:
            assert arrived.wait_for(lambda: count() >= 61, timeout=30)
        assert [c.key for c in batches[-1][-1].changes] == [{"id": 1000}]
    finally:
        reader.close()
        thread.join(30)
        db.conn.close()
    assert not thread.is_alive()


def test_compressed_events_of_a_followed_table_stop_the_reader(
    mysql_server: Any, mysql_url: str
) -> None:
    """mysql-replication skips MariaDB's compressed events without a word: replikit refuses
    them where they may hold followed rows, and reads past other tables' ones."""
    db = Db(mysql_server, mysql_url)
    try:
        db.run("CREATE TABLE f (id INT PRIMARY KEY, t TEXT)", "CREATE TABLE o (id INT PRIMARY KEY)")
        followed, other = db.table("f"), db.table("o")
        start = position(db.url)
        with db.conn.cursor() as cur:
            cur.execute("SELECT @@global.log_bin_compress, @@global.log_bin_compress_min_len")
            before = cur.fetchone()
        db.run("SET GLOBAL log_bin_compress_min_len = 10", "SET GLOBAL log_bin_compress = ON")
        try:
            fresh = Db(mysql_server, mysql_url)  # the setting applies to new sessions
            try:
                fresh.run("BEGIN", f"INSERT INTO f VALUES (1, '{'x' * 300}')", "COMMIT")
            finally:
                fresh.conn.close()
        finally:
            db.run(f"SET GLOBAL log_bin_compress = {int(before[0])}")
            db.run(f"SET GLOBAL log_bin_compress_min_len = {int(before[1])}")
        params = ConnParams.from_url(db.url, db.url)
        refused = pytest.raises(DecodeError, match=r"compressed .*log_bin_compress = OFF")
        with cdc.MysqlChangeReader(params, [followed], task="t", blocking=False) as reader, refused:
            list(reader.transactions(start))
        with cdc.MysqlChangeReader(params, [other], task="t", blocking=False) as reader:
            assert [len(tx.changes) for tx in reader.transactions(start)] in ([], [0])
    finally:
        db.conn.close()

"""SQLite CDC and source schema changes: followed exactly, reported, or refused -- never lost."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replikit.changes import Op, Transaction
from replikit.endpoints.sqlite import SqliteEndpoint, cdc
from replikit.errors import ConfigError, SchemaError
from replikit.positions import SqliteSeq
from replikit.schema.types import Kind


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10)


def _run(path: Path, *statements: str) -> None:
    with _open(path) as conn:
        for sql in statements:
            conn.execute(sql)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "src.db"
    _run(p, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    return p


def _endpoint(path: Path, *, opt_in: bool) -> SqliteEndpoint:
    ep = SqliteEndpoint(f"sqlite:///{path}", cdc_setup=opt_in)
    if opt_in:
        ep.cdc_setup(list(ep.reflect().tables), task="t")
    return ep


@pytest.fixture
def ep(path: Path) -> Iterator[SqliteEndpoint]:
    endpoint = _endpoint(path, opt_in=True)
    yield endpoint
    endpoint.close()


def _reader(ep: SqliteEndpoint, **options: Any) -> cdc.SqliteChangeReader:
    options.setdefault("poll_interval", 0.01)
    return cdc.SqliteChangeReader(ep, ["items"], task="t", **options)


def _drain(ep: SqliteEndpoint, start: SqliteSeq) -> list[Transaction]:
    with _reader(ep, stop_when_idle=0, poll_interval=0) as reader:
        return list(reader.transactions(start))


def test_an_added_column_is_followed_exactly_with_the_opt_in(
    ep: SqliteEndpoint, path: Path
) -> None:
    _run(path, "INSERT INTO items VALUES (1, 'a')")
    with _reader(ep) as reader:
        it = reader.transactions(SqliteSeq(0))
        assert next(it).changes[0].after == {"id": 1, "name": "a"}
        _run(path, "ALTER TABLE items ADD COLUMN extra TEXT DEFAULT 'd'")
        marker = next(it)  # the reader remade the triggers and reports the new column
        assert marker.changes == ()
        assert marker.position == SqliteSeq(1)
        (sc,) = marker.schema_changes
        assert sc.table.name == "items"
        assert [(c.name, c.type.kind, c.nullable) for c in sc.added] == [("extra", Kind.TEXT, True)]
        assert sc.additive
        assert "added extra" in sc.description
        _run(path, "INSERT INTO items VALUES (2, 'b', 'x')", "UPDATE items SET name = 'z'")
        assert next(it).changes[0].after == {"id": 2, "name": "b", "extra": "x"}
        upd = next(it).changes[0]
        assert upd.before == {"id": 1, "name": "a", "extra": "d"}
    ep.cdc_setup(list(ep.reflect().tables), task="t")  # the triggers are current


def test_a_write_between_the_alter_and_the_reader_means_a_reload(
    ep: SqliteEndpoint, path: Path
) -> None:
    _run(path, "INSERT INTO items VALUES (1, 'a')")
    with _reader(ep) as reader:
        it = reader.transactions(SqliteSeq(0))
        next(it)
        _run(
            path,
            "ALTER TABLE items ADD COLUMN extra TEXT",
            "INSERT INTO items VALUES (2, 'b', 'lost by the stale trigger')",
        )
        with pytest.raises(SchemaError, match=r"1 change\(s\) of it were recorded since.*reload"):
            next(it)
    plain = SqliteEndpoint(f"sqlite:///{path}")
    with pytest.raises(ConfigError, match="columns changed"):  # nothing was remade
        plain.cdc_setup(list(plain.reflect().tables), task="t")


def test_without_the_opt_in_a_changed_table_stops_the_reader(path: Path) -> None:
    ep = _endpoint(path, opt_in=True)
    plain = _endpoint(path, opt_in=False)
    with _reader(plain) as reader:
        it = reader.transactions(SqliteSeq(0))
        _run(path, "ALTER TABLE items ADD COLUMN extra TEXT")
        with pytest.raises(SchemaError, match="changed columns since SQLite CDC was set up"):
            next(it)
    ep.close()
    plain.close()


def test_a_remake_is_reported_to_a_reader_started_later(ep: SqliteEndpoint, path: Path) -> None:
    _run(path, "INSERT INTO items VALUES (1, 'a')")
    _run(path, "ALTER TABLE items ADD COLUMN extra INTEGER")
    cdc.install(ep, ["items"])  # e.g. `replikit cdc-setup`, with no write in between
    _run(path, "INSERT INTO items VALUES (2, 'b', 7)")
    txs = _drain(ep, SqliteSeq(1))
    assert [len(t) for t in txs] == [0, 1]
    assert [c.name for c in txs[0].schema_changes[0].added] == ["extra"]
    assert txs[1].changes[0].after == {"id": 2, "name": "b", "extra": 7}
    assert _drain(ep, SqliteSeq(2)) == []  # past the remake: nothing more to report
    # from before the change, an earlier row of the table may lack the column: reload
    with pytest.raises(SchemaError, match="had its change triggers remade.*reload"):
        _drain(ep, SqliteSeq(0))


def test_a_renamed_column_is_reported_as_a_rename(ep: SqliteEndpoint, path: Path) -> None:
    # in place, same declaration, and a column the triggers use cannot be dropped: a rename;
    # the row written before the triggers were remade carries the old name, decoded as the new
    with _reader(ep) as reader:
        it = reader.transactions(SqliteSeq(0))
        _run(path, "ALTER TABLE items RENAME COLUMN name TO title",
             "INSERT INTO items VALUES (7, 'g')")  # fmt: skip
        tx = next(it)
        (sc,) = tx.schema_changes
        assert sc.renamed == (("name", "title"),) and not sc.dropped and not sc.added
        (change,) = next(it).changes
        assert change.after == {"id": 7, "title": "g"}


def test_a_rename_and_an_added_column_together(ep: SqliteEndpoint, path: Path) -> None:
    _run(path, "ALTER TABLE items RENAME COLUMN name TO title",
         "ALTER TABLE items ADD COLUMN qty INTEGER")  # fmt: skip
    cdc.install(ep, ["items"])
    _run(path, "INSERT INTO items VALUES (8, 'h', 3)")
    txs = _drain(ep, SqliteSeq(0))
    (sc,) = [c for tx in txs for c in tx.schema_changes]
    assert sc.renamed == (("name", "title"),) and [c.name for c in sc.added] == ["qty"]
    assert [c.after for tx in txs for c in tx.changes] == [{"id": 8, "title": "h", "qty": 3}]


def test_a_rebuilt_table_has_lost_its_triggers(ep: SqliteEndpoint, path: Path) -> None:
    _run(
        path,
        "CREATE TABLE items_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '')",
        "INSERT INTO items_new SELECT id, coalesce(name, '') FROM items",
        "DROP TABLE items",
        "ALTER TABLE items_new RENAME TO items",
        "INSERT INTO items VALUES (5, 'unseen')",
    )
    txs = _drain(ep, SqliteSeq(0))
    (sc,) = [c for tx in txs for c in tx.schema_changes]
    assert "was dropped (or rebuilt)" in sc.description  # the table is suspended, not the task


def test_a_dropped_table_is_a_schema_change_of_that_table(ep: SqliteEndpoint, path: Path) -> None:
    _run(path, "INSERT INTO items VALUES (1, 'a')", "DROP TABLE items")
    txs = _drain(ep, SqliteSeq(0))
    (sc,) = [c for tx in txs for c in tx.schema_changes]
    assert sc.table.name == "items" and "was dropped" in sc.description
    assert not [c for tx in txs for c in tx.changes]  # its last changes: unknown order, left


def test_insert_or_replace_on_the_key_arrives_as_an_insert(ep: SqliteEndpoint, path: Path) -> None:
    _run(path, "INSERT INTO items VALUES (1, 'a')", "INSERT OR REPLACE INTO items VALUES (1, 'b')")
    changes = [t.changes[0] for t in _drain(ep, SqliteSeq(0))]
    assert [(c.op, c.after) for c in changes] == [
        (Op.INSERT, {"id": 1, "name": "a"}),
        (Op.INSERT, {"id": 1, "name": "b"}),  # no delete trigger fires: apply upserts
    ]

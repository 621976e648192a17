"""Reading (canonical values, bad stored values) and writing (prepare, load, finish)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _sqlite_util import (
    CHINOOK,
    CHINOOK_TABLES,
    chinook_copy,
    endpoint,
    one_column_table,
    plan_for,
    raw_rows,
    write_then_read,
)

import replikit as rk
from replikit.endpoints.sqlite import SqliteEndpoint
from replikit.errors import DataError, SchemaError
from replikit.pipeline.contracts import Batch, Reader, SupportsPrepare, Writer
from replikit.schema.convert import plan_table
from replikit.schema.model import Column, Identity, Index, TableId, TableSchema
from replikit.schema.types import Type


def read_all(ep: SqliteEndpoint, tables: Any = None) -> dict[str, list[Any]]:
    reader = ep.reader(tables)
    out: dict[str, list[Any]] = {}
    for table in reader.tables:
        rows = out.setdefault(table.id.name, [])
        for unit in reader.units(table):
            for batch in reader.read(unit):
                assert batch.columns == table.column_names
                rows.extend(tuple(r) for r in batch.rows)
    return out


def make(path: Path, *statements: str, rows: tuple[str, list[Any]] | None = None) -> None:
    with sqlite3.connect(path) as conn:
        for sql in statements:
            conn.execute(sql)
        if rows:
            conn.executemany(*rows)
    conn.close()


# -- reading --------------------------------------------------------------------------------


def test_reads_every_chinook_row_as_canonical_values() -> None:
    ep = endpoint(CHINOOK)
    reader = ep.reader()
    assert isinstance(reader, Reader)
    data = read_all(ep)
    assert set(data) == CHINOOK_TABLES
    assert sum(len(rows) for rows in data.values()) == 15607
    invoice = data["Invoice"][0]
    assert invoice[2] == datetime(2021, 1, 1)
    assert invoice[8] == Decimal("1.98")
    assert all(
        isinstance(r[8], Decimal) and r[8].as_tuple().exponent == -2 for r in data["Invoice"]
    )


def test_reader_accepts_names_ids_and_schemas() -> None:
    ep = endpoint(CHINOOK)
    genre = ep.reflect().table("Genre")
    for spec in (["Genre"], ["genre"], [TableId(None, "Genre")], [genre]):
        assert [t.id.name for t in ep.reader(spec).tables] == ["Genre"]
    with pytest.raises(SchemaError, match="no table"):
        ep.reader(["Nope"])


@pytest.mark.parametrize(
    ("declared", "stored", "message"),
    [
        ("INTEGER", "abc", "not a valid int64"),
        ("INTEGER", 1.5, "not a valid int64"),
        ("NVARCHAR(10)", b"\x00", "not a valid string"),
        ("DATETIME", "yesterday", "not a timestamp"),
        ("DATETIME", 2455000.5, "not timestamp text"),
        ("DATETIME", "2020-01-01 00:00:00.1234567", "sub-microsecond"),
        ("DATE", "2020-13-01", "not a date"),
        ("DATE", "2020-01-01 00:00:01", "not a date"),
        ("NUMERIC(10,2)", 1.005, "more than 2 decimal places"),
        ("NUMERIC(10,2)", "lots", "not a decimal"),
        ("BOOLEAN", 2, "not a boolean"),
        ("REAL", "fast", "not a floating point"),
        ("UUID", "nope", "not a UUID"),
        ("BLOB", "text", "not a valid bytes"),
    ],
)
def test_a_stored_value_that_does_not_fit_is_a_data_error(
    tmp_path: Path, declared: str, stored: Any, message: str
) -> None:
    path = tmp_path / "bad.db"
    make(
        path,
        f"CREATE TABLE t (id INTEGER PRIMARY KEY, v {declared})",
        rows=("INSERT INTO t VALUES (?, ?)", [(1, None), (7, stored)]),
    )
    with pytest.raises(DataError, match=message) as info:
        read_all(endpoint(path))
    assert info.value.table == "t"
    assert info.value.column == "v"
    assert info.value.key == {"id": 7}


def test_datetime_text_at_midnight_reads_as_a_date(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    make(
        path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, d DATE)",
        rows=("INSERT INTO t VALUES (?, ?)", [(1, "2009-01-01 00:00:00")]),
    )
    assert read_all(endpoint(path))["t"] == [(1, date(2009, 1, 1))]


def test_a_keyless_table_names_the_rowid(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    make(
        path,
        "CREATE TABLE t (v INTEGER, w DATE)",
        rows=("INSERT INTO t VALUES (?, ?)", [(1, "2020-01-01"), (2, "soon")]),
    )
    with pytest.raises(DataError) as info:
        read_all(endpoint(path))
    assert info.value.key == {"rowid": 2}
    make(path, "DELETE FROM t WHERE v = 2")
    assert read_all(endpoint(path))["t"] == [(1, date(2020, 1, 1))]


# -- writing --------------------------------------------------------------------------------


def copy_all(src: SqliteEndpoint, dst: SqliteEndpoint, mode: str = "drop-and-create") -> Any:
    reader = src.reader()
    plans = [plan_table(t, source_dialect="sqlite", target=dst.dialect) for t in reader.tables]
    writer = dst.writer()
    assert isinstance(writer, Writer)
    assert isinstance(writer, SupportsPrepare)
    writer.prepare(plans, mode)
    for plan, table in zip(plans, reader.tables, strict=True):
        for unit in reader.units(table):
            writer.load(plan, reader.read(unit))
    writer.finish(plans)
    return writer, plans


def test_sqlite_to_sqlite_copy_of_chinook_is_identical(tmp_path: Path) -> None:
    dst_path = tmp_path / "copy.db"
    with endpoint(CHINOOK) as src, endpoint(dst_path) as dst:
        writer, plans = copy_all(src, dst)
        assert writer.problems == []
        assert all(p.fidelity == "exact" for p in plans)
        src_cat, dst_cat = src.reflect(), dst.reflect()
    for table in CHINOOK_TABLES:
        assert raw_rows(dst_path, table) == raw_rows(CHINOOK, table), table
        a, b = src_cat.table(table), dst_cat.table(table)
        assert a.columns == b.columns
        assert (a.primary_key, a.foreign_keys, a.indexes) == (
            b.primary_key,
            b.foreign_keys,
            b.indexes,
        )


def test_truncate_and_do_nothing_check_the_target(tmp_path: Path) -> None:
    src = endpoint(chinook_copy(tmp_path))
    dst_path = tmp_path / "dst.db"
    dst = endpoint(dst_path)
    plans = [
        plan_table(t, source_dialect="sqlite", target=dst.dialect)
        for t in src.reflect(rk.mapping.Selection(include=("Genre",))).tables
    ]
    writer = dst.writer()
    make(dst_path, 'CREATE TABLE "Genre" ("GenreId" INTEGER PRIMARY KEY)')
    with pytest.raises(SchemaError, match="Genre: has no column Name .* Fix: "):
        writer.prepare(plans, "truncate")
    make(
        dst_path,
        'ALTER TABLE "Genre" ADD COLUMN "Name" TEXT',
        "INSERT INTO \"Genre\" VALUES (99, 'x')",
    )
    writer.prepare(plans, "truncate")
    assert raw_rows(dst_path, "Genre") == []
    writer.prepare(plans, "do-nothing")
    with pytest.raises(rk.ConfigError):
        writer.prepare(plans, "append-please")
    dst.close()


def test_not_null_violation_names_table_column_and_key(tmp_path: Path) -> None:
    table = replace(
        one_column_table("t", Type.text()),
        columns=(Column("id", Type.int_()), Column("v", Type.text(), nullable=False)),
    )
    plan = plan_for(table)
    with endpoint(tmp_path / "x.db") as db:
        with pytest.raises(DataError, match="NOT NULL") as info:
            write_then_read(db, plan, ["a", None, "c"])
        assert (info.value.table, info.value.column, info.value.key) == ("t", "v", {"id": 1})


def test_duplicate_key_is_a_data_error_and_rolls_back_its_chunk(tmp_path: Path) -> None:
    plan = plan_for(one_column_table("t", Type.text()))
    with endpoint(tmp_path / "x.db") as db:
        writer = db.writer(commit_rows=2)
        writer.prepare([plan], "drop-and-create")
        tid = TableId("public", "t")
        batches = [
            Batch(tid, ("id", "v"), [(1, "a"), (2, "b")]),
            Batch(tid, ("id", "v"), [(3, "c"), (3, "d")]),
        ]
        with pytest.raises(DataError, match="UNIQUE") as info:
            writer.load(plan, batches)
        assert info.value.key == {"id": 3}
    assert [r[0] for r in raw_rows(tmp_path / "x.db", "t")] == [1, 2]


def test_foreign_table_ddl_identity_enum_and_index_problems(tmp_path: Path) -> None:
    table = TableSchema(
        id=TableId("public", "orders"),
        columns=(
            Column(
                "id",
                Type.int_(32, native="int4"),
                nullable=False,
                identity=Identity("by-default", next_value=100),
            ),
            Column("status", Type.enum(("new", "done")), nullable=False, default="'new'::status"),
            Column("total", Type.decimal(12, 2)),
            Column("at", Type.timestamp(tz=True), default="now()"),
        ),
        primary_key=("id",),
        indexes=(
            Index("orders_total", ("total",)),
            Index("orders_lower", (), expressions=("lower(x)",)),
            Index("orders_partial", ("total",), where="total > 0"),
        ),
    )
    plan = plan_for(table)
    with endpoint(tmp_path / "o.db") as db:
        writer = db.writer()
        ddl = writer.ddl([plan])
        assert ddl[1] == (
            'CREATE TABLE "orders" (\n'
            '    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,\n'
            "    \"status\" TEXT NOT NULL DEFAULT ('new') CHECK (\"status\" IN ('new', 'done')),\n"
            '    "total" NUMERIC(12,2),\n'
            "    \"at\" TIMESTAMPTZ DEFAULT ((strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')))\n)"
        )
        assert ddl[2] == 'CREATE INDEX "orders_total" ON "orders" ("total")'
        writer.prepare([plan], "drop-and-create")
        writer.load(
            plan,
            [Batch(table.id, ("id", "status", "total", "at"), [(5, "new", Decimal("1.50"), None)])],
        )
        writer.finish([plan])
        assert len(writer.problems) == 2
        conn = sqlite3.connect(tmp_path / "o.db")
        assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'orders'").fetchone() == (
            99,
        )
        conn.execute("INSERT INTO orders (total) VALUES (2)")
        assert conn.execute("SELECT max(id), status FROM orders WHERE total = 2").fetchone() == (
            100,
            "new",
        )
        stamp = conn.execute("SELECT at FROM orders WHERE id = 100").fetchone()[0]
        assert datetime.fromisoformat(stamp).tzinfo is not None
        conn.close()


def test_concurrent_loads_from_threads(tmp_path: Path) -> None:
    plans = [plan_for(one_column_table(f"t{i}", Type.int_())) for i in range(4)]
    errors: list[BaseException] = []
    with endpoint(tmp_path / "c.db") as db:
        writer = db.writer(commit_rows=1000)
        writer.prepare(plans, "drop-and-create")

        def work(plan: Any) -> None:
            try:
                batches = [
                    Batch(plan.source.id, ("id", "v"), [(i, i) for i in range(s, s + 500)])
                    for s in range(0, 20_000, 500)
                ]
                assert writer.load(plan, batches) == 20_000
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(p,)) for p in plans]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert {k: len(v) for k, v in read_all(db).items()} == {f"t{i}": 20_000 for i in range(4)}


def test_memory_endpoint_shares_one_database() -> None:
    with rk.endpoint("sqlite:///:memory:") as db:
        assert isinstance(db, SqliteEndpoint)
        plan = plan_for(one_column_table("m", Type.text()))
        assert write_then_read(db, plan, ["x", "y"]) == ["x", "y"]
        assert [t.id.name for t in db.reflect().tables] == ["m"]

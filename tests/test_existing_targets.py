"""Existing target tables under ``truncate`` / ``do-nothing`` are compared with the plan.

For each family as target (PostgreSQL, MariaDB, SQLite files): a table that does not fit the
plan is listed in ``plan()`` (table, column, fix) and refused before anything is truncated or
written, by ``run()`` and by ``replikit copy``; a table that fits loads under both modes and
keeps its own indexes; a missing table is created.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

import replikit as rk
from replikit.cli import main
from replikit.schema.convert import Fidelity
from replikit.schema.existing import judge_existing
from replikit.schema.types import Type

SOURCE = """
CREATE TABLE items (
  id BIGINT PRIMARY KEY,
  name VARCHAR(120) NOT NULL,
  qty BIGINT,
  price NUMERIC(10,2),
  at TIMESTAMPTZ
);
CREATE INDEX items_name ON items (name);
INSERT INTO items VALUES (1, 'short', 5, 1.5, '2024-01-01 10:00:00+00:00');
INSERT INTO items VALUES (2, 'a name much longer than ten', 1099511627776, 12345678.99,
                          '2024-06-01 12:30:00+02:00');
INSERT INTO items VALUES (3, 'x', NULL, NULL, NULL);
"""
SOURCE_ROWS = [(1, "short"), (2, "a name much longer than ten"), (3, "x")]
U, L, E = Fidelity.UNSUPPORTED.value, Fidelity.LOSSY.value, Fidelity.EXACT.value

# per family: a table that misses qty, has narrower types, an extra NOT NULL column without
# default (note), an extra nullable one (extra), NOT NULL where the source allows NULL (at)
# and a unique key the source does not imply (name)
MISFIT = {
    "postgresql": """
        CREATE TABLE items (id integer PRIMARY KEY, name varchar(10) NOT NULL,
          price numeric(5,2), at timestamp NOT NULL, note text NOT NULL, extra text,
          UNIQUE (name))""",
    "mysql": """
        CREATE TABLE items (id int PRIMARY KEY, name varchar(10) NOT NULL,
          price decimal(5,2), at datetime(6) NOT NULL, note text NOT NULL, extra text,
          UNIQUE KEY (name))""",
    "sqlite": """
        CREATE TABLE items (id INTEGER PRIMARY KEY, name INTEGER NOT NULL,
          price NUMERIC(5,2), at TIMESTAMP NOT NULL, note TEXT NOT NULL, extra TEXT,
          UNIQUE (name))""",
}
COMMON = {("qty", U), ("note", U), ("extra", L), ("at", L), ("", U), ("name", U)}
EXPECTED = {
    "postgresql": COMMON | {("id", U), ("price", U), ("at", U)},
    "mysql": COMMON | {("id", U), ("price", U), ("at", U)},
    # SQLite enforces no length or width: only a different affinity (name) matters
    "sqlite": COMMON,
}
# only narrower types: the old code truncated, then failed at the first long value
NARROW = {
    "postgresql": "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(10) NOT NULL, "
    "qty bigint, price numeric(10,2), at timestamptz)",
    "mysql": "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(10) NOT NULL, "
    "qty bigint, price decimal(10,2), at timestamp(6) NULL)",
    "sqlite": "CREATE TABLE items (id BIGINT PRIMARY KEY, name INTEGER NOT NULL, "
    "qty BIGINT, price NUMERIC(10,2), at TIMESTAMPTZ)",
}
SENTINEL = "INSERT INTO items (id, name) VALUES (99, 'kept')"


@dataclass
class Target:
    """One target database and plain SQL access to it (no replikit involved)."""

    family: str
    url: str
    execute: Callable[[str], None]
    rows: Callable[[str], list[tuple[Any, ...]]]
    indexes: Callable[[], list[str]]


def _pg(url: str) -> Target:
    def execute(sql: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            return list(conn.execute(sql))

    def indexes() -> list[str]:
        return [r[0] for r in rows("SELECT indexname FROM pg_indexes WHERE tablename = 'items'")]

    return Target("postgresql", url, execute, rows, indexes)


def _mysql(url: str) -> Target:
    import pymysql

    u = make_url(url)

    def connect() -> Any:
        return pymysql.connect(
            host=u.host, port=u.port, user=u.username, password=u.password or "",
            database=u.database, autocommit=True, charset="utf8mb4",
        )  # fmt: skip

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with closing(connect()) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]

    def execute(sql: str) -> None:
        rows(sql)

    def indexes() -> list[str]:
        return sorted({r[2] for r in rows("SHOW INDEX FROM items")})

    return Target("mysql", url, execute, rows, indexes)


def _sqlite(path: Path) -> Target:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(path)) as conn, conn:
            return list(conn.execute(sql))

    def execute(sql: str) -> None:
        rows(sql)

    def indexes() -> list[str]:
        return [r[0] for r in rows("SELECT name FROM sqlite_master WHERE type = 'index'")]

    return Target("sqlite", f"sqlite:///{path}", execute, rows, indexes)


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "postgresql":
        yield _pg(request.getfixturevalue("pg_url"))
    elif request.param == "mysql":
        yield _mysql(request.getfixturevalue("mysql_url"))
    else:
        yield _sqlite(tmp_path / "target.db")


@pytest.fixture
def source(tmp_path: Path) -> str:
    path = tmp_path / "source.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(SOURCE)
    return f"sqlite:///{path}"


def _task(source: str, target: Target, prep: str, **settings: Any) -> rk.Task:
    return rk.Task(
        source,
        target.url,
        settings=rk.TaskSettings(target_table_prep_mode=prep, progress=False, **settings),
    )


@pytest.mark.parametrize("prep", ["truncate", "do-nothing"])
def test_each_mismatch_is_a_finding_with_table_column_and_fix(
    source: str, target: Target, prep: str
) -> None:
    target.execute(MISFIT[target.family])
    plan = _task(source, target, prep).plan()
    found = [f for f in plan.assessment.extra if f.kind == "target"]
    assert {(f.column, f.fidelity.value) for f in found} == EXPECTED[target.family]
    for f in found:
        assert f.table == "items" and "existing target table" in (f.reason or "")
        assert f.fix and ("drop-and-create" in f.fix or "ALTER" in f.fix)
    by_column = {(f.column, f.fidelity.value): f for f in found}
    assert "has no column qty" in str(by_column["qty", U])
    assert "NOT NULL without a default" in str(by_column["note", U])
    assert "unique key (name)" in str(by_column["", U])
    if target.family != "sqlite":
        narrow = str(by_column["name", U])
        assert "varchar(10)" in narrow.replace("character varying", "varchar")
        assert "type_overrides={'items.name'" in narrow
        assert "has no time zone" in str(by_column["at", U])
    assert plan.to_dict()["findings"]  # and in plan --json


def test_run_refuses_before_anything_is_truncated(source: str, target: Target) -> None:
    target.execute(NARROW[target.family])
    target.execute(SENTINEL)
    task = _task(source, target, "truncate")
    with pytest.raises(rk.ConversionError, match=r"items\.name.*existing target table"):
        task.run()
    assert target.rows("SELECT id, name FROM items") == [(99, "kept")]


def test_cli_copy_with_truncate_exits_2_naming_table_column_and_fix(
    source: str, target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    target.execute(NARROW[target.family])
    target.execute(SENTINEL)
    assert main(["copy", source, target.url, "--prep", "truncate"]) == 2
    err = capsys.readouterr().err
    assert "items.name" in err and "Fix:" in err and "drop-and-create" in err
    assert "Traceback" not in err
    assert target.rows("SELECT id, name FROM items") == [(99, "kept")]


def test_a_table_that_fits_loads_under_truncate_and_do_nothing(
    source: str, target: Target
) -> None:
    _task(source, target, "drop-and-create").run()  # the target now fits the plan exactly
    indexes = sorted(target.indexes())
    target.execute(SENTINEL.replace("99", "0"))
    assert _task(source, target, "truncate").plan().unsupported == []
    _task(source, target, "truncate").run()
    assert target.rows("SELECT id, name FROM items ORDER BY id") == SOURCE_ROWS
    assert sorted(target.indexes()) == indexes  # its own indexes, none added twice
    target.execute("DELETE FROM items WHERE id > 1")
    target.execute("UPDATE items SET id = 0, name = 'kept' WHERE id = 1")
    _task(source, target, "do-nothing").run()
    assert target.rows("SELECT id, name FROM items ORDER BY id") == [(0, "kept"), *SOURCE_ROWS]
    assert sorted(target.indexes()) == indexes


@pytest.mark.parametrize("prep", ["truncate", "do-nothing"])
def test_a_missing_table_is_created_with_its_indexes(
    source: str, target: Target, prep: str
) -> None:
    assert _task(source, target, prep).plan().unsupported == []
    _task(source, target, prep).run()
    assert target.rows("SELECT id, name FROM items ORDER BY id") == SOURCE_ROWS
    assert any("name" in i for i in target.indexes())


def test_replication_needs_the_key_on_an_existing_table(source: str, target: Target) -> None:
    keyless = NARROW[target.family].replace(" PRIMARY KEY", "").replace("varchar(10)", "text")
    target.execute(keyless.replace("name INTEGER", "name TEXT"))
    src, dst = rk.endpoint(source), rk.endpoint(target.url)
    try:
        plans = rk.Pipeline(src.reader(), dst.writer(), prep_mode="truncate").plans()
        writer = dst.writer()
        assert writer.check_existing(plans, "truncate") == []
        (finding,) = writer.check_existing(plans, "truncate", replicate=True)
    finally:
        src.close()
        dst.close()
    assert finding.fidelity is Fidelity.UNSUPPORTED and finding.table == "items"
    assert "no primary key or unique constraint on (id)" in (finding.reason or "")
    assert "PRIMARY KEY (id)" in (finding.fix or "")


# -- the type rule alone (no server) -------------------------------------------------------

@pytest.mark.parametrize(
    ("planned", "existing", "verdict"),
    [
        (Type.string(120), Type.string(10), U),
        (Type.string(10), Type.string(120), E),
        (Type.string(10), Type.text(), E),
        (Type.text(), Type.string(255), U),
        (Type.string(10), Type.string(10, fixed=True), L),  # padded with spaces
        (Type.int_(64), Type.int_(32), U),
        (Type.int_(32), Type.int_(64), E),
        (Type.int_(64), Type.text(), E),  # its text form
        (Type.decimal(10, 2), Type.decimal(5, 2), U),
        (Type.decimal(10, 2), Type.decimal(10, 1), U),
        (Type.decimal(10, 2), Type.decimal(12, 2), E),
        (Type.float_(64), Type.float_(32), L),
        (Type.timestamp(6, tz=True), Type.timestamp(6), U),
        (Type.timestamp(6), Type.timestamp(6, tz=True), U),
        (Type.timestamp(6), Type.timestamp(0), L),
        (Type.timestamp(None), Type.timestamp(6), E),
        (Type.timestamp(6), Type.date(), U),
        (Type.json(), Type.json(binary=True), L),
        (Type.enum(("a", "b")), Type.enum(("a", "b", "c")), E),
        (Type.enum(("a", "z")), Type.enum(("a", "b")), U),
        (Type.array(Type.int_(64)), Type.array(Type.int_(32)), U),
        (Type.other("point"), Type.other("point"), E),
        (Type.other("point"), Type.other("inet"), U),
        (Type.int_(64), Type.other("inet"), U),
        (Type.string(10), Type.int_(64), U),
    ],
)
def test_judge_existing(planned: Type, existing: Type, verdict: str) -> None:
    fidelity, why = judge_existing(planned, existing)
    assert fidelity.value == verdict
    assert why or fidelity is Fidelity.EXACT  # every verdict but exact says why

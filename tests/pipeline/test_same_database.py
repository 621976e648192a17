"""A task whose target tables are its source tables is refused before any DDL.

Same file or same server and database, however the URL is spelt; copying between two schemas
of one database stays allowed.
"""

from __future__ import annotations

import os
import sqlite3

import psycopg
import pytest

import replikit as rk
from replikit.cli import main


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "a.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(5)])
    conn.close()
    return path


def _rows(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM t").fetchone()[0]


def test_cli_refuses_to_copy_a_sqlite_file_onto_itself(db, capsys) -> None:
    status = main(["copy", f"sqlite:///{db}", f"sqlite:///{db}"])
    assert status == 2
    err = capsys.readouterr().err
    assert "same database" in err and "t" in err
    assert _rows(db) == 5


def test_refused_for_other_spellings_of_one_file(db, tmp_path, monkeypatch) -> None:
    link = tmp_path / "link.db"
    os.symlink(db, link)
    monkeypatch.chdir(tmp_path)
    for target in (f"sqlite:///{link}", "sqlite:///a.db", f"sqlite:///{tmp_path}/./a.db"):
        with pytest.raises(rk.ConfigError, match="same database"):
            rk.Task(f"sqlite:///{db}", target).run()
        assert _rows(db) == 5


def test_memory_endpoints_are_the_same_only_when_one_object() -> None:
    a, b = rk.endpoint("sqlite:///:memory:"), rk.endpoint("sqlite:///:memory:")
    assert a.identity() != b.identity()
    assert a.identity() == a.identity()


def test_postgres_same_database_by_another_host_name(pg_url) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 5) g")
    other = pg_url.replace("127.0.0.1", "localhost")
    assert other != pg_url
    with pytest.raises(rk.ConfigError, match=r"same database.*public\.t"):
        rk.Task(pg_url, other).run()
    # another schema of the same database is a different table: allowed
    rk.Task(pg_url, other, mappings=rk.Mappings().rename_schema("public", "copy")).run()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (5,)
        assert conn.execute("SELECT count(*) FROM copy.t").fetchone() == (5,)


def test_mysql_same_database_by_another_spelling(mysql_url) -> None:
    pymysql = pytest.importorskip("pymysql")
    from sqlalchemy.engine import make_url

    u = make_url(mysql_url)
    conn = pymysql.connect(
        host=u.host,
        port=u.port,
        user=u.username,
        password=u.password or "",
        database=u.database,
        autocommit=True,
    )
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        cur.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    other = mysql_url.replace("mysql://", "mariadb+pymysql://", 1)
    with pytest.raises(rk.ConfigError, match="same database"):
        rk.Task(mysql_url, other).run()
    conn = pymysql.connect(
        host=u.host,
        port=u.port,
        user=u.username,
        password=u.password or "",
        database=u.database,
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone() == (2,)


def test_plan_names_the_tables_that_are_their_own_target(db, capsys) -> None:
    plan = rk.Task(f"sqlite:///{db}", f"sqlite:///{db}").plan()
    found = [f for f in plan.assessment.unsupported if f.kind == "target"]
    assert [f.table for f in found] == ["t"], plan.assessment.unsupported
    assert "IS this source table" in str(found[0]) and "rename_schema" in str(found[0])
    assert main(["plan", f"sqlite:///{db}", f"sqlite:///{db}"]) == 0  # a plan is a report
    assert "IS this source table" in capsys.readouterr().out
    assert _rows(db) == 5

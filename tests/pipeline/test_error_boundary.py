"""Every driver error reaches the task as a replikit.Error naming the table, with its cause.

A source table dropped between planning and loading fails that table's reads (units and
rows) with the driver's "undefined table"; the task must report it per table as a
``replikit.Error``, never as a raw driver exception.
"""

from __future__ import annotations

import psycopg
import pytest

import replikit as rk


def _assert_table_errors(exc: rk.TaskError, table: str) -> None:
    assert exc.table_errors, exc
    for name, err in exc.table_errors.items():
        assert isinstance(err, rk.Error), f"{name}: {type(err).__module__}.{type(err).__name__}"
        assert table in str(err), str(err)
        assert err.__cause__ is not None or "said" in str(err)
    assert table in " ".join(exc.table_errors)


@pytest.mark.parametrize("split_rows", [None, 1000])
def test_pg_source_table_dropped_after_planning(pg_url, tmp_path, split_rows) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE keep (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE gone (id int PRIMARY KEY)")
        conn.execute("INSERT INTO keep SELECT generate_series(1, 3000)")
        conn.execute("INSERT INTO gone SELECT generate_series(1, 3000)")
        conn.execute("ANALYZE")
    task = rk.Task(
        pg_url, f"sqlite:///{tmp_path / 'out.db'}", settings=rk.TaskSettings(split_rows=split_rows)
    )
    task.plan()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE gone")
    with pytest.raises(rk.TaskError) as info:  # split or not, only that table fails
        task.run()
    _assert_table_errors(info.value, "gone")
    stats = task.statistics()
    assert stats["public.keep"].state is rk.TableState.COMPLETED
    assert stats["public.keep"].full_load_rows == 3000
    assert stats["public.gone"].state is rk.TableState.ERROR


def test_sqlite_source_table_dropped_after_planning(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "src.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE keep (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE gone (id INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO gone VALUES (?)", [(i,) for i in range(5)])
    conn.close()
    task = rk.Task(f"sqlite:///{path}", f"sqlite:///{tmp_path / 'out.db'}")
    task.plan()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE gone")
    conn.close()
    with pytest.raises(rk.TaskError) as info:
        task.run()
    _assert_table_errors(info.value, "gone")


@pytest.mark.parametrize("split_rows", [None, 1000])
def test_mysql_source_table_dropped_after_planning(mysql_url, tmp_path, split_rows) -> None:
    pymysql = pytest.importorskip("pymysql")
    from sqlalchemy.engine import make_url

    u = make_url(mysql_url)
    args = {"host": u.host, "port": u.port, "user": u.username, "password": u.password or ""}
    conn = pymysql.connect(**args, database=u.database, autocommit=True)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE keep (id int PRIMARY KEY)")
        cur.execute("CREATE TABLE gone (id int PRIMARY KEY)")
        for table in ("keep", "gone"):
            cur.execute(f"INSERT INTO {table} VALUES " + ", ".join(f"({i})" for i in range(3000)))
            cur.execute(f"ANALYZE TABLE {table}")
            cur.fetchall()
    task = rk.Task(
        mysql_url,
        f"sqlite:///{tmp_path / 'out.db'}",
        settings=rk.TaskSettings(split_rows=split_rows),
    )
    task.plan()
    conn = pymysql.connect(**args, database=u.database, autocommit=True)
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE gone")
    with pytest.raises(rk.TaskError) as info:
        task.run()
    _assert_table_errors(info.value, "gone")
    keep = next(t for t in task.statistics() if t.table.endswith(".keep"))
    assert keep.state is rk.TableState.COMPLETED and keep.full_load_rows == 3000

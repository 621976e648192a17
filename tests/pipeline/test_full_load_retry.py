"""Retries of a plain full-load task: the target's backend is killed in the middle of a unit
(pg_terminate_backend, MariaDB KILL); the unit is loaded again in a new transaction after a
backoff, counted as a retry, and the target holds every source row exactly once."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

import replikit as rk
from replikit._failpoints import inject
from replikit.errors import UnknownOutcomeError

ROWS = 12_000
RAW = 100_000


def _source(tmp_path: Path) -> str:
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, note TEXT)")
        db.executemany("INSERT INTO items VALUES (?, ?, ?)",
                       [(i, i % 97, f"n{i}") for i in range(1, ROWS + 1)])  # fmt: skip
    return f"sqlite:///{path}"


def _task(source: Any, target: str, **policy: Any) -> rk.Task:
    settings = rk.TaskSettings(
        task_id="load", progress=False, split_rows=4000, parallel_tables=1,
        error_policy=rk.ErrorPolicy(retry_delay=0.05, retry_max_delay=0.2, **policy),
    )  # fmt: skip
    return rk.Task(source, target, migration_type="full-load", settings=settings)


def _kill_pg(url: str, killed: list[int]) -> Callable[[], None]:
    database = url.rsplit("/", 1)[1].split("?")[0]

    def kill() -> None:
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            rows = c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                "AND query ILIKE 'COPY%%' AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        killed.append(len(rows))

    return kill


def _pg_ids(url: str) -> list[int]:
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as c:
        return [r[0] for r in c.execute("SELECT id FROM items ORDER BY id")]


def test_a_killed_postgres_backend_mid_unit_loads_the_unit_again(tmp_path, pg_url) -> None:
    killed: list[int] = []
    task = _task(rk.endpoint(_source(tmp_path), batch_size=500), pg_url)
    with inject("full-load.batch", _kill_pg(pg_url, killed), nth=3):  # inside the first unit
        task.run()
    assert killed == [1]
    assert _pg_ids(pg_url) == list(range(1, ROWS + 1))  # every row once
    stats = task.statistics()
    assert stats.retries >= 1
    assert stats["items"].full_load_rows == ROWS  # the failed attempt's rows not counted


def test_raw_copy_between_postgres_databases_is_loaded_again_too(pg_server, pg_url) -> None:
    source = pg_server.create_database("rk_retry_src")
    try:
        with psycopg.connect(source.replace("postgresql+psycopg", "postgresql")) as c:
            c.execute("CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL)")
            # enough rows for several raw blocks (the reader hands on ~256 KB at a time)
            c.execute(f"INSERT INTO items SELECT g, g % 97 FROM generate_series(1, {RAW}) g")
        killed: list[int] = []
        task = _task(source, pg_url)
        with inject("full-load.chunk", _kill_pg(pg_url, killed), nth=2):
            task.run()
        assert killed == [1]
        assert _pg_ids(pg_url) == list(range(1, RAW + 1))
        assert task.statistics().retries >= 1
    finally:
        pg_server.drop_database("rk_retry_src")


def test_without_retries_the_table_fails_and_nothing_is_duplicated(tmp_path, pg_url) -> None:
    killed: list[int] = []
    task = _task(rk.endpoint(_source(tmp_path), batch_size=500), pg_url, retry_timeout=0)
    with inject("full-load.batch", _kill_pg(pg_url, killed), nth=3), pytest.raises(rk.TaskError):
        task.run()
    assert killed == [1]
    ids = _pg_ids(pg_url)
    assert len(ids) == len(set(ids))


def test_a_killed_mariadb_connection_mid_unit_loads_the_unit_again(
    tmp_path, mysql_server, mysql_url
) -> None:
    database = mysql_url.rsplit("/", 1)[1].split("?")[0]
    killed: list[int] = []

    def kill() -> None:
        conn = mysql_server.connect(database, autocommit=True)
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s "
                "AND id <> CONNECTION_ID() AND command <> 'Daemon'",
                (database,),
            )
            ids = [r[0] for r in cur.fetchall()]
            for pid in ids:
                cur.execute(f"KILL {int(pid)}")
            killed.append(len(ids))
        finally:
            conn.close()

    task = _task(rk.endpoint(_source(tmp_path), batch_size=500), mysql_url)
    with inject("full-load.batch", kill, nth=3):
        task.run()
    assert killed and killed[0] >= 1
    conn = mysql_server.connect(database, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SELECT id FROM items ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == list(range(1, ROWS + 1))
    finally:
        conn.close()
    assert task.statistics().retries >= 1


def test_a_connection_lost_at_commit_is_not_retried(tmp_path, pg_url) -> None:
    # the unit's one batch is written, then its backend dies: COMMIT fails, and a unit whose
    # commit outcome is unknown is never loaded again by itself (it could be in already)
    killed: list[int] = []
    source = rk.endpoint(_source(tmp_path), batch_size=ROWS)
    settings = rk.TaskSettings(task_id="load", progress=False, parallel_tables=1,
                               error_policy=rk.ErrorPolicy(retry_delay=0.05))  # fmt: skip
    task = rk.Task(source, pg_url, migration_type="full-load", settings=settings)
    with _copy_done_then(pg_url, killed), pytest.raises(rk.TaskError) as caught:
        task.run()
    assert killed == [1]
    (error,) = caught.value.table_errors.values()
    assert isinstance(error, UnknownOutcomeError) and "may or may not" in str(error)
    assert task.statistics().retries == 0


def _copy_done_then(url: str, killed: list[int]) -> Any:
    """Kill the loading backend after its last batch, before its COMMIT."""
    database = url.rsplit("/", 1)[1].split("?")[0]

    def kill() -> None:
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            rows = c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                "AND application_name = 'replikit' AND state = 'idle in transaction' "
                "AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        killed.append(len(rows))

    return inject("full-load.batch", kill, nth=1)

"""Full loads on a Dask cluster: a ``LocalCluster`` of two worker *processes* runs the units
(tables and key ranges), each worker opening its own connections from the task's endpoints.

Real PostgreSQL, MariaDB and SQLite; a worker killed in the middle of a unit; a password that
must appear in no log of the scheduler or the workers.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import replikit as rk
from replikit.changes import Change
from replikit.endpoints.postgres.source import PostgresReader

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

# transforms defined here run on the workers, which cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROWS = 6_000
SPLIT = 1_000  # six key ranges


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=False,
        ) as cl,
        distributed.Client(cl, set_as_default=False) as client,
    ):
        yield client


def _fill_pg(url: str, rows: int = ROWS) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, note text, amount numeric(12,2), "
            "at timestamptz)"
        )
        conn.execute(
            "INSERT INTO orders SELECT g, 'order ' || g, g * 1.25, "
            "'2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 50) g")
        conn.execute("ANALYZE")


def _pg_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def _workers_used(client: Any, run: Any) -> tuple[Any, set[str]]:
    with distributed.get_task_stream(client) as stream:
        result = run()
    return result, {t["worker"] for t in stream.data}


def test_postgres_units_run_on_both_workers_from_one_snapshot(cluster, pg_server):
    src = pg_server.create_database("rk_dask_src")
    dst = pg_server.create_database("rk_dask_dst")
    try:
        _fill_pg(src)
        task = rk.Task(
            src, dst, executor=cluster, settings=rk.TaskSettings(split_rows=SPLIT, progress=False)
        )
        # the units are planned and the snapshot exported before these rows arrive: they are
        # after the snapshot, so no unit, on any worker, may read them
        task.pipeline().plans()
        reader = task.pipeline().reader
        assert isinstance(reader, PostgresReader)
        reader.__getstate__()  # exports the snapshot here, in the client
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute("INSERT INTO orders VALUES (%s, 'late', 1, now())", (ROWS + 1,))
            conn.execute("UPDATE orders SET note = 'changed' WHERE id = 1")

        stats, workers = _workers_used(cluster, task.run)

        assert len(workers) == 2, workers
        assert stats["public.orders"].full_load_rows == ROWS
        assert stats["public.orders"].units_done == stats["public.orders"].units_total >= 6
        got = _pg_rows(dst, "orders")
        assert len(got) == ROWS
        assert got[0][1] == "order 1"  # the snapshot's value, not the later update
        assert [r[0] for r in got] == list(range(1, ROWS + 1))
        assert _pg_rows(dst, "customers") == _pg_rows(src, "customers")
    finally:
        pg_server.drop_database("rk_dask_src")
        pg_server.drop_database("rk_dask_dst")


def test_mysql_and_sqlite_sources_run_on_workers(
    cluster, mysql_server, mysql_url, pg_url, tmp_path
):
    conn = mysql_server.connect(mysql_url.rsplit("/", 1)[1])
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), ok TINYINT(1))")
        cur.executemany(
            "INSERT INTO items VALUES (%s, %s, %s)",
            [(i, f"item {i}", i % 2) for i in range(1, 4001)],
        )
        cur.execute("ANALYZE TABLE items")
    conn.close()
    stats, workers = _workers_used(
        cluster,
        lambda: rk.copy(mysql_url, pg_url, executor=cluster, split_rows=1000, progress=False),
    )
    assert stats.total_rows == 4000
    assert len(workers) == 2
    got = _pg_rows(pg_url, f'"{mysql_url.rsplit("/", 1)[1]}".items')
    assert got == [(i, f"item {i}", bool(i % 2)) for i in range(1, 4001)]

    db = tmp_path / "src.db"
    with sqlite3.connect(db) as lite:
        lite.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
        lite.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v REAL)")
        lite.executemany("INSERT INTO a VALUES (?, ?)", [(i, str(i)) for i in range(1, 201)])
        lite.executemany("INSERT INTO b VALUES (?, ?)", [(i, i / 4) for i in range(1, 101)])
    lite.close()
    stats = rk.copy(f"sqlite:///{db}", pg_url, executor=cluster, progress=False)
    assert stats.total_rows == 300
    assert _pg_rows(pg_url, "a") == [(i, str(i)) for i in range(1, 201)]
    assert _pg_rows(pg_url, "b") == [(i, i / 4) for i in range(1, 101)]


def test_zero_dates_read_on_the_workers_are_noted_in_the_tasks_statistics(
    cluster, mysql_server, mysql_url, pg_url
):
    """The readers on the workers count the zero dates they read as NULL, which the task's own
    reader never sees: each unit's count comes back with its rows, and the table's statistics
    say the total, each unit once."""
    db = mysql_url.rsplit("/", 1)[1]
    conn = mysql_server.connect(db)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("CREATE TABLE z (id INT PRIMARY KEY, d DATE NULL)")
        cur.executemany(
            "INSERT INTO z VALUES (%s, %s)",
            [(i, "0000-00-00" if i % 7 == 0 else "2020-01-02") for i in range(1, 5001)],
        )
        cur.execute("ANALYZE TABLE z")
    conn.close()
    stats, workers = _workers_used(
        cluster,
        lambda: rk.copy(mysql_url, pg_url, executor=cluster, split_rows=1000, progress=False),
    )
    assert len(workers) == 2
    assert stats[f"{db}.z"].units_total >= 4
    assert stats[f"{db}.z"].warnings == [
        f"column d: {5000 // 7} zero or invalid date(s) read as NULL (zero_dates='null')"
    ]
    with psycopg.connect(pg_url) as pg:
        nulls = pg.execute(f'SELECT count(*) FROM "{db}".z WHERE d IS NULL').fetchone()
    assert nulls == (5000 // 7,)


class DieOnce:
    """A transform that kills its worker process the first time it sees ``key`` (in the
    middle of a unit: earlier batches of the unit are already in the target's open
    transaction); ``marker`` remembers across processes that it did."""

    def __init__(self, key: int, marker: Path) -> None:
        self.key = key
        self.marker = marker

    def __call__(self, change: Change) -> Change:
        after = change.after
        if after is not None and after.get("id") == self.key and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)  # the point: a worker dying mid-unit
        return change


@pytest.mark.parametrize("target", ["postgres", "mariadb"])
def test_a_worker_killed_mid_unit_is_retried_elsewhere_without_duplicates(
    cluster, pg_server, target, request, tmp_path
):
    src = pg_server.create_database("rk_dask_kill_src")
    dst = pg_server.create_database("rk_dask_kill_dst")
    if target == "mariadb":
        mysql_server = request.getfixturevalue("mysql_server")
        dst = request.getfixturevalue("mysql_url")
    try:
        _fill_pg(src)
        marker = tmp_path / "died"
        # row 2_900 is in the middle of the third key range, after several batches of it
        task = rk.Task(
            src,
            dst,
            executor=cluster,
            transforms=[DieOnce(2_900, marker)],
            settings=rk.TaskSettings(split_rows=SPLIT, progress=False),
        )
        stats = task.run()
        assert marker.exists(), "the worker never died: the test proves nothing"
        assert stats["public.orders"].full_load_rows == ROWS
        if target == "postgres":
            assert _pg_rows(dst, "orders") == _pg_rows(src, "orders")
        else:  # the MySQL writer's ledger: every row once
            got = _mysql_rows(mysql_server, dst, "orders")
            assert [r[0] for r in got] == list(range(1, ROWS + 1))
            assert got[0][1:] == ("order 1", Decimal("1.25"))
    finally:
        pg_server.drop_database("rk_dask_kill_src")
        pg_server.drop_database("rk_dask_kill_dst")


class Fail:
    """A transform that fails one table (its message holds nothing secret)."""

    def __call__(self, change: Change) -> Change:
        if change.table.name == "customers":
            raise ValueError("customers refused by the test transform")
        return change


def test_no_password_in_any_log_and_one_table_fails_alone(cluster, pg_server, pg_password_user):
    user, password = pg_password_user
    src = pg_server.create_database("rk_dask_pw_src")
    dst = pg_server.create_database("rk_dask_pw_dst")
    try:
        _fill_pg(src, rows=2_000)
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{user}"')
        secret_src = src.replace("postgres@", f"{user}:{password}@", 1)
        task = rk.Task(
            secret_src,
            dst,
            executor=cluster,
            transforms=[Fail()],
            settings=rk.TaskSettings(split_rows=1000, progress=False),
        )
        with pytest.raises(rk.TaskError) as info:
            task.run()
        stats = task.statistics()
        assert stats["public.orders"].state is rk.TableState.COMPLETED
        assert stats["public.customers"].state is rk.TableState.ERROR
        assert "customers refused" in (stats["public.customers"].error or "")
        logs = [
            *(m for _, m in cluster.get_scheduler_logs()),
            *(m for w in cluster.get_worker_logs().values() for _, m in w),
        ]
        assert any("customers refused" in m for m in logs), "the failure was not logged"
        assert not [m for m in logs if password in m]
        assert password not in str(info.value)
        assert password not in repr(task)
    finally:
        pg_server.drop_database("rk_dask_pw_src")
        pg_server.drop_database("rk_dask_pw_dst")


def test_targets_that_take_one_writer_are_refused_before_any_ddl(cluster, pg_url, tmp_path):
    _fill_pg(pg_url, rows=10)
    out = tmp_path / "out.db"
    with pytest.raises(rk.ConfigError) as info:
        rk.copy(pg_url, f"sqlite:///{out}", executor=cluster, progress=False)
    message = str(info.value)
    assert "SqliteWriter does not" in message
    assert "one local SQLite file" in message
    if out.exists():
        with sqlite3.connect(out) as conn:
            assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
        conn.close()
    with pytest.raises(pickle.PicklingError, match="in-memory SQLite database"):
        pickle.dumps(rk.endpoint("sqlite:///:memory:").reader([]))


def test_cli_copy_runs_on_a_scheduler_by_address(cluster, pg_server, tmp_path):
    src = pg_server.create_database("rk_dask_cli_src")
    dst = pg_server.create_database("rk_dask_cli_dst")
    try:
        _fill_pg(src, rows=3_000)
        address = cluster.scheduler.address
        cli = [sys.executable, "-m", "replikit", "copy", src, dst, "--split-rows", "1000"]
        done = subprocess.run(
            [*cli, "--dask", address, "--json"], capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rows"] == 3_050
        assert _pg_rows(dst, "orders") == _pg_rows(src, "orders")

        bad = subprocess.run(
            [*cli, "--dask", "tcp://127.0.0.1:9", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert bad.returncode == 2, bad.stderr
        assert "Traceback" not in bad.stderr
        assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in bad.stdout + bad.stderr
    finally:
        pg_server.drop_database("rk_dask_cli_src")
        pg_server.drop_database("rk_dask_cli_dst")


def test_a_unit_run_twice_on_a_cluster_is_loaded_once(pg_server):
    """What a cluster does when a worker dies after finishing a unit: the unit runs again.
    The PostgreSQL writer's ledger makes the second run a no-op (same count, no rows twice)."""
    src = pg_server.create_database("rk_dask_once_src")
    dst = pg_server.create_database("rk_dask_once_dst")
    try:
        _fill_pg(src, rows=2_000)
        pipe = rk.Task(src, dst, settings=rk.TaskSettings(progress=False)).pipeline()
        plans = {str(p.source.id): p for p in pipe.plans()}
        plan = plans["public.orders"]
        writer = pipe.writer
        writer.prepare([plan], "drop-and-create")
        writer.start_ledger("load1")
        loader = replace(pipe._loader(), ledger="load1")
        (unit,) = pipe.reader.units(plan.source)
        for raw in (False, True):
            assert loader(plan, unit, raw) == 2_000  # first run, or the run found in the ledger
        assert len(_pg_rows(dst, "orders")) == 2_000
        writer.end_ledger("load1")
        with psycopg.connect(dst) as conn:
            ledger = conn.execute("SELECT to_regclass('replikit.replikit_load_units')").fetchone()
            assert ledger == (None,)
        pipe.reader.close()
    finally:
        pg_server.drop_database("rk_dask_once_src")
        pg_server.drop_database("rk_dask_once_dst")


def _mysql_rows(server: Any, url: str, table: str) -> list[tuple[Any, ...]]:
    conn = server.connect(url.rsplit("/", 1)[1])
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, note, amount FROM {table} ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def test_a_unit_run_twice_is_loaded_once_into_mysql(pg_url, mysql_server, mysql_url):
    """The MySQL writer's ledger (``replikit_load_units``, a named lock per unit) makes a
    unit's second run a no-op, like the PostgreSQL one."""
    _fill_pg(pg_url, rows=2_000)
    pipe = rk.Task(pg_url, mysql_url, settings=rk.TaskSettings(progress=False)).pipeline()
    plan = {str(p.source.id): p for p in pipe.plans()}["public.orders"]
    writer = pipe.writer
    writer.prepare([plan], "drop-and-create")
    writer.start_ledger("load1")
    loader = replace(pipe._loader(), ledger="load1")
    (unit,) = pipe.reader.units(plan.source)
    assert loader(plan, unit, False) == 2_000
    assert loader(plan, unit, False) == 2_000  # found in the ledger: nothing written
    assert len(_mysql_rows(mysql_server, mysql_url, "orders")) == 2_000
    writer.end_ledger("load1")
    conn = mysql_server.connect(mysql_url.rsplit("/", 1)[1])
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES LIKE 'replikit_load_units'")
        assert cur.fetchall() == ()  # the last load dropped the ledger
    conn.close()
    pipe.reader.close()


class CountingWriter:
    """A writer that pickles but keeps no ledger of loaded units."""

    def load(self, plan, batches) -> int:
        return sum(len(b) for b in batches)


def test_a_writer_without_a_unit_ledger_is_refused_on_a_cluster(cluster, tmp_path):
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as lite:
        lite.execute("CREATE TABLE a (id INTEGER PRIMARY KEY)")
    lite.close()
    reader = rk.endpoint(f"sqlite:///{db}").reader(["a"])
    with pytest.raises(rk.ConfigError, match="may run a unit twice") as info:
        rk.Pipeline(reader, CountingWriter(), executor=cluster, progress=False).run()
    assert "CountingWriter keeps no ledger" in str(info.value)

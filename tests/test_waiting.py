"""Waiting is visible (#11 item 3): a PostgreSQL slot that cannot be created while a source
transaction runs, a MySQL/MariaDB read lock that waits for a statement: the task says who it
waits for (pid, age, query) every few seconds and gives up after ``wait_timeout``."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time

import psycopg
import pytest

import replikit as rk
from live_task import running
from replikit.pipeline.waiting import wait_limit


def test_pg_slot_creation_names_the_open_transaction_and_gives_up(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, qty int)")
    blocker = psycopg.connect(pg_url)  # a transaction holding an xid, left open
    blocker.execute("INSERT INTO orders VALUES (1, 1)")
    pid = blocker.info.backend_pid
    src = rk.endpoint(pg_url)
    try:
        tables = list(src.reflect().tables)
        src.cdc_setup(tables, task="waits")
        caplog.set_level(logging.WARNING, logger="replikit")
        started = time.monotonic()
        with wait_limit(3, every=0.5), pytest.raises(rk.ConfigError) as info:
            src.cdc_start(tables, task="waits")
        assert time.monotonic() - started < 20
        message = str(info.value)
        assert f"pid {pid}" in message and "INSERT INTO orders" in message
        assert "gave up after" in message and "wait_timeout" in message
        waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
        assert len(waits) >= 2 and all(f"pid {pid}" in w for w in waits)
        # once the transaction ends, the same call goes through
        blocker.commit()
        with wait_limit(30, every=0.5):
            assert src.cdc_start(tables, task="waits") is not None
    finally:
        blocker.close()
        src.cdc_teardown(task="waits")
        src.close()


def test_pg_task_waits_visibly_then_goes_on(
    pg_url: str, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, qty int)")
    blocker = psycopg.connect(pg_url)
    blocker.execute("INSERT INTO orders VALUES (1, 1)")
    pid = blocker.info.backend_pid
    caplog.set_level(logging.WARNING, logger="replikit")
    task = rk.Task(
        pg_url, f"sqlite:///{tmp_path / 'dst.db'}", migration_type="full-load-and-cdc",
        settings=rk.TaskSettings(task_id="waits2", stop_when_idle=1, wait_timeout=60),
    )  # fmt: skip
    ender = threading.Timer(7, blocker.commit)  # the transaction ends after 7 s
    ender.start()
    try:
        stats = task.run()  # says who it waits for every 5 s
    finally:
        ender.cancel()
        blocker.close()
        task.drop()
    assert stats["public.orders"].full_load_rows == 1  # committed before the snapshot
    waits = [r for r in caplog.records if "waiting" in r.getMessage()]
    assert waits and f"pid {pid}" in waits[0].getMessage()
    assert "INSERT INTO orders" in waits[0].getMessage()


def test_mysql_read_lock_names_the_running_statement_and_gives_up(
    mysql_server, mysql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """MySQL's snapshot takes FLUSH TABLES WITH READ LOCK (MariaDB's needs no lock): run that
    path on the test server, with a write statement running (the lock waits for it)."""
    from replikit.endpoints.mysql import _binlog_bridge as bridge
    from replikit.endpoints.mysql._binlog_server import Server
    from replikit.endpoints.mysql.cdc import _mysql_snapshot

    name = mysql_url.rsplit("/", 1)[1]
    with mysql_server.connect(name) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE orders (id int PRIMARY KEY, qty int)")
        cur.execute("INSERT INTO orders VALUES (1, 1)")
    busy = mysql_server.connect(name)
    with busy.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        pid = cur.fetchone()[0]
    running = threading.Thread(
        target=lambda: busy.cursor().execute("UPDATE orders SET qty = qty + SLEEP(8)"), daemon=True
    )
    running.start()
    time.sleep(0.5)
    params = rk.endpoint(mysql_url).params
    conn, _ = bridge.connect(params)
    caplog.set_level(logging.WARNING, logger="replikit")
    try:
        with wait_limit(3, every=0.5), pytest.raises(rk.ConfigError) as info:
            _mysql_snapshot(Server(params), conn)
    finally:
        conn.close()
        running.join(20)
        busy.close()
    message = str(info.value)
    assert f"pid {pid}" in message and "UPDATE orders SET qty = qty + SLEEP(8)" in message
    assert "gave up" in message
    waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert waits and all(f"pid {pid}" in w for w in waits)


@pytest.mark.parametrize("live", [True, False], ids=["beside-the-stream", "task-stopped"])
def test_pg_reload_names_the_open_transaction_and_gives_up(
    pg_url: str, tmp_path, live: bool
) -> None:
    """A reload reads the table from a new slot's snapshot, which waits for the source's
    open transactions like the first one: the task's ``wait_timeout`` bounds that wait too
    (in the reload's own thread beside the stream, and in ``Task.reload`` of a stopped
    task), the table stays suspended with an error naming the blocking session, and the
    reload goes through once that transaction ended."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, qty int)")
        conn.execute("INSERT INTO orders VALUES (1, 1)")
    settings = rk.TaskSettings(task_id="waits3", wait_timeout=1, progress=False)

    def make_task(settings: rk.TaskSettings) -> rk.Task:
        target = f"sqlite:///{tmp_path / 'dst.db'}"
        return rk.Task(pg_url, target, migration_type="full-load-and-cdc", settings=settings)

    task = make_task(settings)
    blocker = psycopg.connect(pg_url, application_name="held-open-by-test")
    try:
        with running(task) if live else contextlib.nullcontext():
            if not live:  # loaded and stopped
                make_task(dataclasses.replace(settings, stop_when_idle=0.5)).run()
            blocker.execute("INSERT INTO orders VALUES (2, 2)")  # holds an xid, left open
            pid = blocker.info.backend_pid
            with pytest.raises(rk.Error) as info:
                # the task's wait_timeout ends the wait; 60 s only ends a broken test
                reload_within(task, "public.orders", 60)
            message = str(info.value)
            assert f"pid {pid}" in message and "held-open-by-test" in message
            assert "idle in transaction" in message and "INSERT INTO orders" in message
            assert "gave up after" in message and "wait_timeout" in message
            blocker.commit()
            reload_within(task, "public.orders", 60)
    finally:
        blocker.close()
        task.drop()


def reload_within(task: rk.Task, table: str, seconds: float) -> None:
    """``task.reload(table)``, failing the test instead of hanging after ``seconds``."""
    outcome: list[BaseException | None] = []

    def reload() -> None:
        try:
            task.reload(table, timeout=seconds)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reload, daemon=True)
    thread.start()
    thread.join(seconds + 5)
    assert outcome, f"reload of {table} still waiting after {seconds} s"
    if outcome[0] is not None:
        raise outcome[0]

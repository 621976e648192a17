"""Faults with real servers: restarts, killed replication sessions, a stopped target, and
permanent faults.

Recoverable faults: the task must resume by itself within ``retry_timeout`` and the target
must end equal to the source (every ledger row exactly once), with the retries counted.
Permanent faults (login refused, replication privilege revoked, slot dropped, binlog purged)
must fail at once with the cause and the fix. Marked ``slow``: each restarts a server.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from test_task_cdc import (
    Db,
    Workload,
    _assert_equal,
    _assert_ledger,
    _create_source,
    _target_schema,
    _task,
    _wait_for,
    make_db,
    target_has,
)

import replikit as rk
from live_task import run_in_thread
from replikit._failpoints import inject

__all__ = ["make_db"]  # the fixture, shared with test_task_cdc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
RETRY = {"retry_timeout": 120, "retry_delay": 0.2, "retry_max_delay": 2.0}


class Run:
    """A task running in a thread, and the workload that writes to its source."""

    def __init__(self, source: Db, target: Db, items: int = 20, **settings: Any) -> None:
        self.source, self.target = source, target
        _create_source(source, items=items)
        self.task = _task(source, target, error_policy=RETRY, **settings)
        self.thread, self.errors = run_in_thread(self.task)
        self.load = Workload(source, writer=3, seed=3)
        self.schema = _target_schema(source, target)

    def streaming(self) -> None:
        _wait_for(lambda: self.task.phase == "cdc" or bool(self.errors), 120)
        assert not self.errors, self.errors

    def write(self, count: int) -> None:
        self.load.run(count=count)

    def arrived(self, count: int | None = None, timeout: float = 120) -> None:
        want = self.load.seq if count is None else count
        _wait_for(
            lambda: target_has(self.target, "ledger", want, self.schema) or bool(self.errors),
            timeout,
        )
        assert not self.errors, self.errors

    def finish(self) -> rk.Statistics:
        self.arrived()
        self.task.stop()
        self.thread.join(60)
        assert not self.errors, self.errors
        _assert_equal(self.source, self.target)
        _assert_ledger(self.target, {3: self.load.seq}, self.schema)
        return self.task.statistics()


def _bounce(server: Any) -> None:
    """Restart ``server``; whatever happens, it runs again afterwards (a server left stopped
    would fail every later test of the session)."""
    with contextlib.suppress(Exception):  # pg_ctl gave up waiting: the shutdown goes on
        server.stop()
    for _ in range(120):
        try:
            server.start()
            return
        except Exception:
            time.sleep(1)
    server.start()


def _bounce_in_background(server: Any) -> Callable[[], None]:
    """A failpoint action that restarts ``server`` from a thread of its own (the loader
    thread that reached the failpoint goes on and sees its connection break)."""
    return lambda: threading.Thread(target=_bounce, args=(server,), daemon=True).start()


# -- recoverable: the task resumes by itself --------------------------------------------------
def test_pg_server_restart_mid_cdc(make_db: Callable[[str], Db], pg_server: Any) -> None:
    run = Run(make_db("pg"), make_db("pg"))  # one server: source and target restart together
    run.streaming()
    run.write(20)
    run.arrived(20)
    _bounce(pg_server)
    run.write(20)
    assert run.finish().retries >= 1


def test_pg_server_restart_mid_full_load(make_db: Callable[[str], Db], pg_server: Any) -> None:
    source, target = make_db("pg"), make_db("pg")
    with inject("full-load.batch", _bounce_in_background(pg_server)):  # after the 1st batch
        run = Run(source, target, items=5000)
        run.streaming()
    run.write(10)
    stats = run.finish()
    assert stats.retries >= 1
    assert all(t.state is rk.TableState.REPLICATING for t in stats), stats


def test_pg_walsender_terminated_is_counted(make_db: Callable[[str], Db]) -> None:
    run = Run(make_db("pg"), make_db("pg"))
    run.streaming()
    run.write(10)
    run.arrived(10)
    _pg(run.source, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                    "WHERE slot_name = 'replikit_t1' AND active_pid IS NOT NULL")  # fmt: skip
    run.write(10)
    assert run.finish().retries >= 1


def test_mariadb_restart_mid_cdc(make_db: Callable[[str], Db], mysql_server: Any) -> None:
    run = Run(make_db("mysql"), make_db("pg"))
    run.streaming()
    run.write(20)
    run.arrived(20)
    _bounce(mysql_server)
    run.write(20)
    assert run.finish().retries >= 1


def test_mariadb_restart_mid_full_load(make_db: Callable[[str], Db], mysql_server: Any) -> None:
    source, target = make_db("mysql"), make_db("pg")
    with inject("full-load.batch", _bounce_in_background(mysql_server)):
        run = Run(source, target, items=5000)
        run.streaming()
    run.write(10)
    stats = run.finish()
    assert stats.retries >= 1


def test_binlog_dump_thread_killed(make_db: Callable[[str], Db], mysql_server: Any) -> None:
    run = Run(make_db("mysql"), make_db("pg"))
    run.streaming()
    run.write(10)
    run.arrived(10)
    conn = mysql_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST "
                        "WHERE COMMAND LIKE 'Binlog Dump%%'")  # fmt: skip
            for (pid,) in cur.fetchall():
                cur.execute(f"KILL {int(pid)}")
    finally:
        conn.close()
    run.write(10)
    assert run.finish().retries >= 1


def test_target_stopped_for_ten_seconds(make_db: Callable[[str], Db], pg_server: Any) -> None:
    run = Run(make_db("mysql"), make_db("pg"))
    run.streaming()
    run.write(10)
    run.arrived(10)
    pg_server.stop()
    try:
        writer = threading.Thread(target=run.write, args=(30,), daemon=True)
        writer.start()  # the source keeps changing while the target is away
        time.sleep(10)
    finally:
        pg_server.start()
    writer.join()
    assert run.finish().retries >= 1


# -- permanent: fail at once, with the cause and the fix ----------------------------------------
def _pg(db: Db, statement: str) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(statement)


def _fails_fast(task: rk.Task, error: type[BaseException], *needles: str) -> BaseException:
    started = time.monotonic()
    with pytest.raises(error) as info:
        task.run()
    assert time.monotonic() - started < 30, "retried a permanent error"
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    return info.value


def test_login_refused_fails_at_once(
    make_db: Callable[[str], Db], pg_password_user: tuple[str, str], pg_server: Any
) -> None:
    source = make_db("pg")
    _create_source(source, items=1)
    user, _ = pg_password_user
    url = pg_server.url(source.url.rsplit("/", 1)[1]).replace("postgres@", f"{user}:wrong@")
    task = rk.Task(url, make_db("pg").url, migration_type="full-load-and-cdc",
                   settings=rk.TaskSettings(task_id="t1", progress=False, error_policy=RETRY))
    err = _fails_fast(task, rk.AccessError, "login refused", "check the user name and password")
    assert "wrong" not in str(err)


def test_revoked_replication_privilege_fails_at_once(
    make_db: Callable[[str], Db], pg_server: Any
) -> None:
    source, target = make_db("pg"), make_db("pg")
    role = f"rk_repl_{uuid.uuid4().hex[:8]}"
    dbname = source.url.rsplit("/", 1)[1]
    _pg(source, f"CREATE ROLE {role} LOGIN REPLICATION")
    _pg(source, f"GRANT CREATE ON DATABASE {dbname} TO {role}")
    _pg(source, f"GRANT ALL ON SCHEMA public TO {role}")
    as_role = Db(source.url.replace("postgres@", f"{role}@"), "pg")
    run = Run(as_role, target)  # the tables are the role's: it may publish them
    run.streaming()
    run.write(5)
    run.arrived(5)
    _pg(source, f"ALTER ROLE {role} NOREPLICATION")
    _pg(source, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = 'replikit_t1' AND active_pid IS NOT NULL")  # fmt: skip
    run.thread.join(60)
    (error,) = run.errors
    assert isinstance(error, rk.AccessError), repr(error)
    assert f"ALTER ROLE {role} REPLICATION" in str(error)


def test_dropped_slot_fails_at_once(make_db: Callable[[str], Db]) -> None:
    run = Run(make_db("pg"), make_db("pg"))
    run.streaming()
    run.task.stop()
    run.thread.join(60)
    _pg(run.source, "SELECT pg_drop_replication_slot('replikit_t1')")
    task = _task(run.source, run.target, error_policy=RETRY)
    _fails_fast(task, rk.PositionLostError, "replikit_t1", "does not exist")


def test_purged_binlog_fails_at_once(make_db: Callable[[str], Db], mysql_server: Any) -> None:
    run = Run(make_db("mysql"), make_db("pg"))
    run.streaming()
    run.task.stop()
    run.thread.join(60)
    run.write(5)  # changes the stopped task has not read, then their binlog goes
    conn = mysql_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            old = [r[0] for r in cur.fetchall()]
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("SHOW MASTER STATUS")
            (current, *_) = cur.fetchone()
            deadline = time.monotonic() + 20
            while True:  # InnoDB may still need the old file for a moment
                cur.execute(f"PURGE BINARY LOGS TO '{current}'")
                cur.execute("SHOW BINARY LOGS")
                if not set(old) & {r[0] for r in cur.fetchall()}:
                    break
                assert time.monotonic() < deadline, "the old binlogs were not purged"
                time.sleep(0.2)
    finally:
        conn.close()
    task = _task(run.source, run.target, error_policy=RETRY)
    _fails_fast(task, rk.PositionLostError)

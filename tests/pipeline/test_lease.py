"""The replication lease (#19): one holder, standbys, takeover with a higher epoch, and fencing
that keeps a holder that paused past its lease from committing anything afterwards.

Real PostgreSQL, MariaDB and SQLite targets; the clock is injected so expiry is exact.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

import replikit as rk
from replikit.pipeline.lease import Lease, LeaseLostError, read_lease, read_members


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def target(request, tmp_path):
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    elif request.param == "mysql":
        url = request.getfixturevalue("mysql_url")
    else:
        url = f"sqlite:///{tmp_path / 'target.db'}"
    ep = rk.endpoint(url)
    yield ep
    ep.close()


def _fenced_query(ep):
    """A target transaction on a connection of the test's own: (run query, commit, close)."""
    family = ep.family
    if family == "postgres":
        import psycopg

        conn = psycopg.connect(ep._url)

        def run(sql, params):
            return conn.execute(sql, params).fetchall()

        return run, conn.commit, conn.close
    if family == "mysql":
        session = ep.control_session()
        conn = session.__enter__()
        cur = conn.cursor()

        def run(sql, params):
            cur.execute(sql, params)
            return list(cur.fetchall())

        return run, lambda: session.__exit__(None, None, None), lambda: None
    import sqlite3

    conn = sqlite3.connect(ep._conns.location.path, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")

    def run(sql, params):
        return conn.execute(sql, params).fetchall()

    return run, lambda: conn.execute("COMMIT"), conn.close


def test_one_holder_standbys_and_a_takeover_after_expiry(target):
    clock = Clock()
    a = Lease(target, "t1", duration=10, member="a", clock=clock)
    b = Lease(target, "t1", duration=10, member="b", clock=clock)
    assert a.acquire() and a.epoch == 1
    assert not b.acquire() and b.epoch is None
    clock.advance(5)
    assert a.renew()
    clock.advance(9)  # 14 s after the first take, 9 after the renewal: still held
    assert not b.acquire()
    clock.advance(2)
    assert b.acquire() and b.epoch == 2 and b.takeovers == 1
    assert not a.renew() and a.epoch is None
    with pytest.raises(LeaseLostError, match="no longer holds the replication lease"):
        a.fence(lambda sql, params: [])

    state = read_lease(target, "t1")
    assert state is not None and (state.holder, state.epoch) == ("b", 2)
    members, takeovers = read_members(target, "t1")
    assert {(m.member, m.role) for m in members} == {("a", "standby"), ("b", "holder")}
    assert [(t.epoch, t.holder, t.previous) for t in takeovers] == [(2, "b", "a"), (1, "a", None)]
    assert "expired" in takeovers[0].reason

    # a clean stop hands over at once
    b.release()
    assert a.acquire() and a.epoch == 3
    # another task's lease is its own
    assert Lease(target, "t2", member="b", clock=clock).acquire()


def test_a_takeover_waits_for_the_holders_transaction_and_fences_the_next(target):
    clock = Clock()
    old = Lease(target, "t", duration=10, member="old", clock=clock)
    new = Lease(target, "t", duration=10, member="new", clock=clock)
    assert old.acquire()
    run, commit, close = _fenced_query(target)
    try:
        old.fence(run)  # the holder's transaction has checked its epoch and holds the row
        clock.advance(30)  # ... and pauses far past its lease
        taken = threading.Event()
        errors: list[BaseException] = []

        def take() -> None:
            try:
                if new.acquire():
                    taken.set()
            except BaseException as exc:  # pragma: no cover - shown by the assertion
                errors.append(exc)

        thread = threading.Thread(target=take)
        thread.start()
        time.sleep(1.0)
        assert not taken.is_set(), "the takeover did not wait for the holder's transaction"
        commit()  # what the old holder committed before the takeover stands
        thread.join(30)
        assert not errors, errors
        assert taken.is_set() and new.epoch == 2
    finally:
        close()

    # the old holder wakes up: its next transaction is refused before it writes anything
    run, commit, close = _fenced_query(target)
    try:
        with pytest.raises(LeaseLostError):
            old.fence(run)
    finally:
        close()
    new.fence(lambda sql, params: [(2,)])  # the new holder's check passes on its row


def test_standby_waits_until_the_holder_stops(tmp_path):
    ep = rk.endpoint(f"sqlite:///{tmp_path / 't.db'}")
    holder = Lease(ep, "t", duration=0.6, member="h")
    standby = Lease(ep, "t", duration=0.6, member="s")
    assert holder.acquire()
    stop = threading.Event()
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(standby.wait(stop, poll=0.05)))
    thread.start()
    for _ in range(6):  # the holder renews: the standby keeps waiting
        time.sleep(0.15)
        assert holder.renew()
    assert not got
    thread.join(5)  # the holder stopped renewing: the lease expires and the standby takes it
    assert got == [True] and standby.epoch == 2
    stop.set()
    ep.close()


def test_targets_without_a_shared_row_lock_are_refused(tmp_path):
    pytest.importorskip("duckdb")
    ep = rk.endpoint(f"duckdb:///{tmp_path / 'x.duckdb'}")
    with pytest.raises(rk.CapabilityError, match="standby replicators need a PostgreSQL"):
        Lease(ep, "t")
    ep.close()


def test_replicators_starting_together_create_the_tables_once_and_one_holds(target):
    clock = Clock()
    leases = [Lease(target, "t", member=f"m{i}", clock=clock) for i in range(4)]
    start = threading.Barrier(len(leases))
    won: list[bool] = []
    errors: list[BaseException] = []

    def take(lease: Lease) -> None:
        start.wait()
        try:
            won.append(lease.acquire())
        except BaseException as exc:  # shown by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(won) == [False, False, False, True]


def test_a_takeover_ends_the_sessions_of_earlier_epochs(pg_url):
    """A holder frozen while it still sends a transaction (mid-pipeline, mid-COPY) is not idle
    to PostgreSQL, so no idle limit ends it, and its row locks would hold up the new holder's
    first transactions, which apply the same changes again. Its writer sessions carry the
    epoch; the takeover ends those of earlier epochs and leaves its own alone."""
    import psycopg

    ep = rk.endpoint(pg_url)
    clock = Clock()
    old = Lease(ep, "ended", duration=10, member="old", clock=clock)
    new = Lease(ep, "ended", duration=10, member="new", clock=clock)
    other = Lease(ep, "another task", duration=10, member="x", clock=clock)
    assert old.acquire() and other.acquire()

    def writer(lease: Lease) -> psycopg.Connection:
        conn = psycopg.connect(pg_url)
        for statement in lease.session_statements("postgres"):
            conn.execute(statement)
        return conn

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS ended_rows (k int PRIMARY KEY)")
    frozen, bystander = writer(old), writer(other)
    frozen.execute("INSERT INTO ended_rows VALUES (1)")  # its transaction holds key 1
    clock.advance(11)
    assert new.acquire() and new.epoch == 2
    mine = writer(new)
    mine.execute("SET lock_timeout = '5s'")
    mine.execute("INSERT INTO ended_rows VALUES (1)")  # not held up by the frozen one
    mine.commit()
    with pytest.raises(psycopg.OperationalError):
        frozen.execute("SELECT 1")
    assert bystander.execute("SELECT 1").fetchone() == (1,)  # another task's writer
    clock.advance(11)
    assert old.acquire() and old.epoch == 3  # taken back: now the epoch-2 session goes
    with pytest.raises(psycopg.OperationalError):
        mine.execute("SELECT 1")
    for conn in (frozen, bystander, mine):
        conn.close()
    ep.close()

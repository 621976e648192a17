"""Standby replicators (#19): real ``replikit replicate --standby`` processes against real
servers, under a live write load. The active one is killed (``kill -9``) or frozen past its
lease (``SIGSTOP``); the standby takes over; the target equals the source with nothing lost or
doubled, and a frozen replicator that wakes up commits nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
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
    _wait_for,
    make_db,
)

import replikit as rk
from replikit.pipeline.lease import read_lease, read_members

__all__ = ["make_db"]  # the fixture, imported for pytest

LEASE = 2.0  # seconds: short, so the tests wait little


def _command(source: Db, target_url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "replikit.cli", "replicate", source.url, target_url,
        "--task-id", "ha", "--standby", "--lease-seconds", str(LEASE), "--cdc-setup",
        "--no-progress", "--split-rows", "1000", *extra,
    ]  # fmt: skip


class Replicators:
    """The replicator processes of a test (killed at the end whatever happens)."""

    def __init__(self, source: Db, target: Db) -> None:
        self.source, self.target = source, target
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {k: v for k, v in os.environ.items() if k != "REPLIKIT_FAILPOINT"}
        self.env["PYTHONFAULTHANDLER"] = "1"

    def start(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        url = _with_app_name(self.target.url, name)
        proc = subprocess.Popen(
            _command(self.source, url, *extra), env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.procs[name] = proc
        return proc

    def wait(self, condition: Callable[[], bool], timeout: float) -> None:
        """``_wait_for``, with every replicator's stderr in the message when it times out."""
        try:
            _wait_for(condition, timeout=timeout)
        except AssertionError:
            sessions = self.target_sessions()  # before the replicators die with theirs
            lease = self.lease()
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack
            time.sleep(1)
            self.stop_all(close=False)
            errors = self.errors()
            self.stop_all()
            raise AssertionError(
                f"timed out waiting; lease: {lease}; target sessions: {sessions}; "
                f"replicators: {errors}"
            ) from None

    def target_sessions(self) -> list[tuple[Any, ...]]:
        """What every session on the target is doing, and who blocks it: the state a
        timed-out wait leaves behind (a frozen holder's open transaction, a waiting lock)."""
        try:
            with psycopg.connect(self.target.url, autocommit=True) as conn:
                return conn.execute(
                    "SELECT pid, application_name, state, wait_event_type, wait_event, "
                    "pg_blocking_pids(pid), now() - xact_start, left(query, 120) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() ORDER BY pid"
                ).fetchall()
        except psycopg.Error as e:
            return [("unavailable", str(e))]

    def errors(self) -> dict[str, str]:
        out = {}
        for name, proc in self.procs.items():
            if proc.stderr is not None and not proc.stderr.closed:
                out[name] = proc.stderr.read().decode(errors="replace")[-3000:]
        return out

    def lease(self) -> Any:
        ep = rk.endpoint(self.target.url)
        try:
            return read_lease(ep, "ha")
        except rk.Error:
            return None  # the tables are not there yet
        finally:
            ep.close()

    def holder_pid(self) -> int | None:
        state = self.lease()
        return None if state is None else int(state.holder.split(":")[1])

    def members(self) -> Any:
        ep = rk.endpoint(self.target.url)
        try:
            return read_members(ep, "ha")
        finally:
            ep.close()

    def stop_all(self, *, close: bool = True) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()
            if close and proc.stderr is not None:
                proc.stderr.close()


@pytest.fixture
def replicators(make_db: Callable[[str], Db], request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[Replicators] = []

    def make(src_kind: str) -> Replicators:
        source, target = make_db(src_kind), make_db("pg")
        _create_source(source, items=2000)
        _audit(target)
        made.append(Replicators(source, target))
        return made[-1]

    yield make
    for r in made:
        r.stop_all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_app_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def _audit(target: Db) -> None:
    """A log in the target of which replicator wrote each ledger row, and when."""
    with psycopg.connect(target.url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE audit (app text, at timestamptz DEFAULT clock_timestamp(), seq bigint)"
        )
        conn.execute(
            "CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO public.audit (app, seq) "
            "VALUES (current_setting('application_name'), NEW.seq); RETURN NEW; END $$"
        )


def _attach_audit(target: Db, schema: str | None) -> None:
    table = f'"{schema}".ledger' if schema else "public.ledger"
    with psycopg.connect(target.url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TRIGGER audit AFTER INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_row()"
        )
        # fire for the replicator's session too (it may run as session_replication_role=replica)
        conn.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER audit")


def _ledger_count(target: Db, schema: str | None) -> int:
    table = f'"{schema}".ledger' if schema else "ledger"
    try:
        with psycopg.connect(target.url) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(row[0]) if row else 0
    except psycopg.errors.UndefinedTable:
        return 0


def _converged(r: Replicators, load: Workload) -> None:
    schema = _target_schema(r.source, r.target)
    _wait_for(lambda: _ledger_count(r.target, schema) >= load.seq, timeout=90)
    time.sleep(0.5)  # the rest of the last transaction's tables
    _assert_equal(r.source, r.target)
    _assert_ledger(r.target, {5: load.seq}, schema)


def _streaming(r: Replicators, load: Workload, schema: str | None) -> None:
    _wait_for(lambda: _ledger_count(r.target, schema) >= 20, timeout=120)


@pytest.mark.parametrize("src_kind", ["pg", "mysql"])
def test_kill_9_the_active_replicator_and_the_standby_takes_over(replicators, src_kind):
    r = replicators(src_kind)
    schema = _target_schema(r.source, r.target)
    load = Workload(r.source, writer=5, seed=5)
    load.start(pause=0.01)
    first = r.start("rk_a")
    r.wait(lambda: r.holder_pid() == first.pid, timeout=60)
    _streaming(r, load, schema)
    port = _free_port()
    second = r.start("rk_b", "--metrics-port", str(port))
    _wait_for(
        lambda: {m.role for m in r.members()[0]} == {"holder", "standby"}, timeout=30
    )  # the second one stands by while the first holds the lease
    time.sleep(LEASE)
    assert r.holder_pid() == first.pid

    first.kill()
    killed = time.monotonic()
    _wait_for(lambda: r.holder_pid() == second.pid, timeout=LEASE + 15)
    took = time.monotonic() - killed
    assert took <= LEASE + 5, f"the takeover took {took:.1f} s"
    load.wait_for_more(30)  # changes keep flowing through the new holder
    load.stop()
    _converged(r, load)
    state = r.lease()
    assert state.epoch == 2
    takeovers = r.members()[1]
    assert [t.epoch for t in takeovers] == [2, 1]
    assert "expired" in takeovers[0].reason

    # what an operator sees: the holder, the replicators and the takeovers
    status = [sys.executable, "-m", "replikit.cli", "status", r.source.url, r.target.url,
              "--task-id", "ha"]  # fmt: skip
    shown = subprocess.run([*status, "--json"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lease = json.loads(shown.stdout)["lease"]
    assert lease["epoch"] == 2 and lease["holder"].split(":")[1] == str(second.pid)
    assert [t["epoch"] for t in lease["takeovers"]] == [2, 1]
    text = subprocess.run(status, capture_output=True, text=True, timeout=60).stdout
    assert f"lease: held by {lease['holder']}, epoch 2" in text
    assert "1 takeover(s)" in text
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
        html = page.read().decode()
    assert "Replicators (lease epoch 2, held by" in html
    assert "<tr><td>2</td>" in html and "<tr><td>1</td>" in html  # the takeover table


def test_a_replicator_frozen_past_its_lease_commits_nothing_when_it_wakes(replicators):
    r = replicators("pg")
    schema = _target_schema(r.source, r.target)
    load = Workload(r.source, writer=5, seed=6)
    load.start(pause=0.01)
    old = r.start("rk_a")
    _wait_for(lambda: r.holder_pid() == old.pid, timeout=60)
    _streaming(r, load, schema)
    _attach_audit(r.target, schema)
    new = r.start("rk_b")
    _wait_for(lambda: len(r.members()[0]) == 2, timeout=30)

    old.send_signal(signal.SIGSTOP)  # a GC stall, a frozen VM: it still holds its connections
    r.wait(lambda: r.holder_pid() == new.pid, timeout=LEASE + 20)
    load.wait_for_more(20)
    old.send_signal(signal.SIGCONT)  # it wakes up with a batch in hand
    _wait_for(
        lambda: any(m.member.split(":")[1] == str(old.pid) and m.role == "standby"
                    for m in r.members()[0]),
        timeout=LEASE * 3 + 20,
    )  # fmt: skip
    load.wait_for_more(20)
    load.stop()
    _converged(r, load)
    with psycopg.connect(r.target.url) as conn:
        (new_first,) = conn.execute("SELECT min(at) FROM audit WHERE app = 'rk_b'").fetchone()
        late = [at for (at,) in conn.execute(
            "SELECT at FROM audit WHERE app = 'rk_a' AND at >= %s ORDER BY at", (new_first,)
        )]  # fmt: skip
    assert new_first is not None, "the new holder wrote nothing"
    # on a loaded machine the new holder may itself stall past its 2 s lease and the old one,
    # awake by then, take the lease back in a new epoch: its rows from then on are legitimate
    takeovers = r.members()[1]
    retaken = [t.at for t in takeovers if t.holder.split(":")[1] == str(old.pid) and t.epoch > 1]
    fenced = [at for at in late if not any(t <= at for t in retaken)]
    assert not fenced, (
        f"the frozen replicator committed rows after the takeover at {new_first} without "
        f"holding the lease: {fenced[:5]}; takeovers: {takeovers}"
    )
    assert old.poll() is None, "the old replicator should stand by, not exit"


def _table_exists(db: Db, name: str) -> bool:
    with psycopg.connect(db.url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])


def test_a_standby_taking_over_during_the_full_load_finishes_it(replicators):
    r = replicators("pg")
    with psycopg.connect(r.source.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO items SELECT g, 'bulk ' || g, g % 7, repeat('x', 300) "
            "FROM generate_series(10000, 160000) g"
        )
        conn.execute("ANALYZE items")
    load = Workload(r.source, writer=5, seed=8)
    load.start(pause=0.02)
    first = r.start("rk_a")
    second = r.start("rk_b")
    r.wait(lambda: r.holder_pid() in (first.pid, second.pid), timeout=60)
    active = first if r.holder_pid() == first.pid else second
    standby = second if active is first else first
    r.wait(lambda: _table_exists(r.target, "public.items"), timeout=60)
    time.sleep(0.5)  # units are being written
    active.kill()  # mid full load: its open unit transactions die with it
    r.wait(lambda: r.holder_pid() == standby.pid, timeout=LEASE + 20)
    load.wait_for_more(20)
    load.stop()
    _converged(r, load)


@pytest.mark.slow
def test_three_replicators_under_random_kills(replicators):
    r = replicators("pg")
    load = Workload(r.source, writer=5, seed=7)
    load.start(pause=0.01)
    rng = random.Random(7)
    names = iter(f"rk_{i}" for i in range(1000))
    for _ in range(3):
        r.start(next(names))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(2, 6))
        alive = [p for p in r.procs.values() if p.poll() is None]
        victim = rng.choice(alive)
        victim.kill()
        victim.wait()
        r.start(next(names))
    load.stop()
    _converged(r, load)

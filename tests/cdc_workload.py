"""A source workload and the replication child process, shared by the CDC recovery tests of
the DuckDB and files targets (kill, resume, compare)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from replikit._failpoints import FAILPOINT_EXIT

CHILD = Path(__file__).parent / "pipeline" / "_cdc_child.py"


class Workload:
    """A thread that writes to the source: ledger rows, item updates, inserts and deletes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self, conn: psycopg.Connection) -> None:
        self.seq += 1
        n = self.seq
        with conn.transaction():
            conn.execute("INSERT INTO ledger VALUES (1, %s)", (n,))
            conn.execute(
                "UPDATE items SET qty = qty + 1, tags = tags || %s WHERE id = %s",
                ([f"t{n}"], n % 50 + 1),
            )
            conn.execute(
                "INSERT INTO items VALUES (%s, %s, 0, 1.5, '{}', now())"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                (1000 + n, f"new {n}"),
            )
            if n % 3 == 0:
                conn.execute("DELETE FROM items WHERE id = %s", (1000 + n - 1,))

    def run(self, count: int) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for _ in range(count):
                self.step(conn)

    def start(self) -> None:
        def loop() -> None:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self._stop.is_set():
                    self.step(conn)
                    time.sleep(0.005)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def _command(src: str, dst: str, idle: str) -> list[str]:
    return [sys.executable, str(CHILD), src, dst, "full-load-and-cdc", "t1", idle, "--batch-apply"]


def _env(failpoint: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REPLIKIT_FAILPOINT"}
    if failpoint:
        env["REPLIKIT_FAILPOINT"] = failpoint
    return env


def _slot_confirmed(src: str) -> int:
    with psycopg.connect(src) as conn:
        row = conn.execute(
            "SELECT coalesce(max(confirmed_flush_lsn - '0/0'), 0) FROM pg_replication_slots"
        ).fetchone()
    return int(row[0]) if row else 0


SCHEMA = (
    "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, qty integer, "
    "price numeric(10,2), tags text[], seen timestamptz)",
    "CREATE TABLE ledger (writer integer NOT NULL, seq integer NOT NULL, "
    "PRIMARY KEY (writer, seq))",
)


def create_source(pg_url: str) -> str:
    """The CDC tests' source tables in the (empty) PostgreSQL database ``pg_url``."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for sql in SCHEMA:
            conn.execute(sql)
        conn.execute(
            "INSERT INTO items SELECT i, 'item ' || i, i, i / 4.0, ARRAY['a', 'b'], now() "
            "FROM generate_series(1, 3000) i"
        )
    return pg_url


def run_child(src: str, dst: str, failpoint: str | None = None) -> int:
    """Run the replication child until idle (or its failpoint); its exit status."""
    proc = subprocess.run(
        _command(src, dst, "2.0"),
        env=_env(failpoint),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if proc.returncode not in (0, FAILPOINT_EXIT):
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode


def crash_then_resume(src: str, dst: str) -> int:
    """Writes before, during and after a replication that crashes at its second commit
    (failpoint) and is run again; the source's last ledger sequence number."""
    load = Workload(src)
    load.run(20)  # in the snapshot
    load.start()  # during the load and the stream
    code = run_child(src, dst, "apply.before-commit:2")
    load.stop()
    assert code == FAILPOINT_EXIT, "the failpoint was not reached"
    load.run(20)  # while the replicator is down
    assert run_child(src, dst) == 0
    return load.seq


def sigkill_then_resume(src: str, dst: str) -> int:
    """A replication killed with SIGKILL once it applied changes, then run again; the
    source's last ledger sequence number."""
    load = Workload(src)
    before = _slot_confirmed(src)
    proc = subprocess.Popen(
        _command(src, dst, "120"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        load.start()
        # the slot confirms only what the target committed: once it moves, the task streams
        deadline = time.monotonic() + 120
        while _slot_confirmed(src) <= before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _slot_confirmed(src) > before, "the task never applied a change"
        time.sleep(0.5)
    finally:
        proc.kill()  # SIGKILL: no cleanup, mid-stream
        proc.wait()
        load.stop()
    load.run(10)
    assert run_child(src, dst) == 0
    return load.seq

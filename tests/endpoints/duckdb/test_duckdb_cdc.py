"""CDC into DuckDB: PostgreSQL -> DuckDB full load + replication, killed (SIGKILL, and a crash
inside the apply transaction) and resumed; the DuckDB tables end equal to the source with no
change lost or applied twice (a ledger of per-writer sequence numbers)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import duckdb
import psycopg
import pytest

from cdc_workload import Workload, _command, _env, _slot_confirmed
from replikit._failpoints import FAILPOINT_EXIT

pytestmark = [pytest.mark.timeout(300)]

SCHEMA = (
    "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, qty integer, "
    "price numeric(10,2), tags text[], seen timestamptz)",
    "CREATE TABLE ledger (writer integer NOT NULL, seq integer NOT NULL, "
    "PRIMARY KEY (writer, seq))",
)


@pytest.fixture
def source(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for sql in SCHEMA:
            conn.execute(sql)
        conn.execute(
            "INSERT INTO items SELECT i, 'item ' || i, i, i / 4.0, ARRAY['a', 'b'], now() "
            "FROM generate_series(1, 3000) i"
        )
    return pg_url


def _run(src: str, dst: str, failpoint: str | None = None) -> int:
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


def _assert_equal(src: str, path: Path, seq: int) -> None:
    with psycopg.connect(src) as conn:
        items = conn.execute(
            "SELECT id, name, qty, price, tags, seen FROM items ORDER BY id"
        ).fetchall()
        ledger = conn.execute("SELECT * FROM ledger ORDER BY writer, seq").fetchall()
    conn = duckdb.connect(str(path), read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        got = conn.execute(
            "SELECT id, name, qty, price, tags, seen FROM public.items ORDER BY id"
        ).fetchall()
        got_ledger = conn.execute("SELECT * FROM public.ledger ORDER BY writer, seq").fetchall()
    finally:
        conn.close()
    assert got_ledger == [(1, n) for n in range(1, seq + 1)], "a change lost or applied twice"
    assert ledger == got_ledger
    assert len(got) == len(items)
    assert got == items


def test_crash_inside_the_apply_transaction_then_resume(source: str, tmp_path: Path) -> None:
    path = tmp_path / "target.duckdb"
    load = Workload(source)
    load.run(20)  # in the snapshot
    load.start()  # during the load and the stream
    code = _run(source, f"duckdb:///{path}", "apply.before-commit:2")
    load.stop()
    assert code == FAILPOINT_EXIT, "the failpoint was not reached"
    load.run(20)  # while the replicator is down
    assert _run(source, f"duckdb:///{path}") == 0
    _assert_equal(source, path, load.seq)


def test_sigkill_mid_stream_then_resume(source: str, tmp_path: Path) -> None:
    path = tmp_path / "target.duckdb"
    load = Workload(source)
    before = _slot_confirmed(source)
    proc = subprocess.Popen(
        _command(source, f"duckdb:///{path}", "120"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        load.start()
        deadline = time.monotonic() + 120
        # the slot confirms only what DuckDB committed: once it moves, the task streams
        while _slot_confirmed(source) <= before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _slot_confirmed(source) > before, "the task never applied a change"
        time.sleep(0.5)
    finally:
        proc.kill()  # SIGKILL: no cleanup, mid-stream
        proc.wait()
        load.stop()
    load.run(10)
    assert _run(source, f"duckdb:///{path}") == 0
    _assert_equal(source, path, load.seq)

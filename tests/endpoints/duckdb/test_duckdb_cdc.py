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

from cdc_workload import Workload, _command, _env, _slot_confirmed, create_source, run_child
from replikit._failpoints import FAILPOINT_EXIT

pytestmark = [pytest.mark.timeout(300)]

@pytest.fixture
def source(pg_url: str) -> str:
    return create_source(pg_url)


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
    code = run_child(source, f"duckdb:///{path}", "apply.before-commit:2")
    load.stop()
    assert code == FAILPOINT_EXIT, "the failpoint was not reached"
    load.run(20)  # while the replicator is down
    assert run_child(source, f"duckdb:///{path}") == 0
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
    assert run_child(source, f"duckdb:///{path}") == 0
    _assert_equal(source, path, load.seq)

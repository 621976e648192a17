"""CDC into DuckDB: PostgreSQL -> DuckDB full load + replication, killed (SIGKILL, and a crash
inside the apply transaction) and resumed; the DuckDB tables end equal to the source with no
change lost or applied twice (a ledger of per-writer sequence numbers)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg
import pytest

from cdc_workload import crash_then_resume, create_source, sigkill_then_resume

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
    seq = crash_then_resume(source, f"duckdb:///{path}")
    _assert_equal(source, path, seq)


def test_sigkill_mid_stream_then_resume(source: str, tmp_path: Path) -> None:
    path = tmp_path / "target.duckdb"
    seq = sigkill_then_resume(source, f"duckdb:///{path}")
    _assert_equal(source, path, seq)

"""CDC into Parquet change files: PostgreSQL -> files full load + replication, killed (SIGKILL,
and a crash between the change files and the manifest) and resumed. Replaying the committed
change files in order over the full-load files gives the source; no change file is left
half-written or duplicated (each ledger row is written exactly once)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

import replikit as rk
from cdc_workload import Workload, _command, _env, _slot_confirmed, create_source, run_child
from replikit._failpoints import FAILPOINT_EXIT

pytestmark = [pytest.mark.timeout(300)]

@pytest.fixture
def source(pg_url: str) -> str:
    return create_source(pg_url)


def _rows(ep, table: str) -> list[tuple]:
    reader = ep.reader([table])
    [schema] = reader.tables
    out = [tuple(r) for u in reader.units(schema) for b in reader.read(u) for r in b.rows]
    return sorted(out)


def _assert_equal(src: str, folder: Path, seq: int) -> None:
    with psycopg.connect(src) as conn:
        items = conn.execute(
            "SELECT id, name, qty, price, tags, seen FROM items ORDER BY id"
        ).fetchall()
        ledger = conn.execute("SELECT * FROM ledger ORDER BY writer, seq").fetchall()
    with rk.endpoint(f"file://{folder}") as files:
        got_ledger = _rows(files, "public.ledger")
        got = _rows(files, "public.items")
    assert got_ledger == [(1, n) for n in range(1, seq + 1)], "a change lost"
    assert ledger == got_ledger
    assert got == [tuple(r) for r in items]
    # nothing half-written is visible, and each ledger row was written exactly once
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]
    table = folder / "public" / "ledger"
    written = [
        (r["writer"], r["seq"])
        for f in sorted(table.glob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
        if r.get("Op", "I") == "I"
    ]
    assert sorted(written) == got_ledger, "a change written twice"
    assert any(f.name.startswith("CDC") for f in table.iterdir()), "no change file"


def test_crash_between_change_files_and_manifest_then_resume(source: str, tmp_path: Path):
    folder = tmp_path / "out"
    load = Workload(source)
    load.run(20)  # in the snapshot
    load.start()  # during the load and the stream
    code = run_child(source, f"file://{folder}", "apply.before-commit:2")
    load.stop()
    assert code == FAILPOINT_EXIT, "the failpoint was not reached"
    load.run(20)  # while the replicator is down
    assert run_child(source, f"file://{folder}") == 0
    _assert_equal(source, folder, load.seq)


def test_sigkill_mid_stream_then_resume(source: str, tmp_path: Path):
    folder = tmp_path / "out"
    load = Workload(source)
    before = _slot_confirmed(source)
    proc = subprocess.Popen(
        _command(source, f"file://{folder}", "120"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        load.start()
        deadline = time.monotonic() + 120
        while _slot_confirmed(source) <= before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _slot_confirmed(source) > before, "the task never applied a change"
        time.sleep(0.5)
    finally:
        proc.kill()  # SIGKILL: no cleanup, mid-stream
        proc.wait()
        load.stop()
    load.run(10)
    assert run_child(source, f"file://{folder}") == 0
    _assert_equal(source, folder, load.seq)

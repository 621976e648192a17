"""CDC into Parquet change files: PostgreSQL -> files full load + replication, killed (SIGKILL,
and a crash between the change files and the manifest) and resumed. Replaying the committed
change files in order over the full-load files gives the source; no change file is left
half-written or duplicated (each ledger row is written exactly once)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

import replikit as rk
from cdc_workload import (
    FAILPOINT_EXIT,
    Workload,
    crash_then_resume,
    create_source,
    run_child,
    sigkill_then_resume,
)

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


def test_crash_during_the_full_load_then_resume(source: str, tmp_path: Path):
    """Deterministic form of what the SIGKILL test saw about once in ten runs with a faster
    reader: the task stops at its first full-load batch, rows are written while it is down,
    and the rerun loads every table again from a snapshot of its own (a temporary slot's)
    while its stream replays from the first snapshot's position: the changes the new
    snapshot holds are skipped, those after it (written while the rerun streams) are in a
    change file, and each is written once."""
    folder = tmp_path / "out"
    load = Workload(source)
    load.run(20)  # in the first snapshot
    load.start()
    code = run_child(source, f"file://{folder}", "full-load.batch:1")
    load.stop()
    assert code == FAILPOINT_EXIT, "the failpoint was not reached"
    load.run(20)  # after the first snapshot, before the second
    during = Workload(source)
    during.seq = load.seq
    during.start()  # before, during and after the second snapshot
    watcher = threading.Thread(target=_stop_once_streaming, args=(source, during))
    watcher.start()
    try:
        assert run_child(source, f"file://{folder}") == 0
    finally:
        during.stop()
        watcher.join()
    assert _slots(source) == ["replikit_t1"], "the reload snapshot's slot outlived its load"
    _assert_equal(source, folder, during.seq)


def _stop_once_streaming(src: str, load: Workload) -> None:
    """Stop ``load`` a little after the task's stream (opened after its reload snapshot was
    taken) is active, so some of its writes come after that snapshot."""
    deadline = time.monotonic() + 120
    with psycopg.connect(src, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_replication_slots "
                "WHERE slot_name = 'replikit_t1' AND active_pid IS NOT NULL"
            ).fetchone()
            if row and row[0]:
                break
            time.sleep(0.05)
    time.sleep(1.0)
    load.stop()


def _slots(src: str) -> list[str]:
    with psycopg.connect(src) as conn:
        rows = conn.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def test_crash_between_change_files_and_manifest_then_resume(source: str, tmp_path: Path):
    folder = tmp_path / "out"
    seq = crash_then_resume(source, f"file://{folder}")
    _assert_equal(source, folder, seq)


def test_sigkill_mid_stream_then_resume(source: str, tmp_path: Path):
    folder = tmp_path / "out"
    seq = sigkill_then_resume(source, f"file://{folder}")
    _assert_equal(source, folder, seq)


def test_a_half_written_manifest_is_removed_on_resume(source: str, tmp_path: Path):
    """A process killed while writing the manifest leaves its temporary file (hidden, never
    read); the next apply removes it with the other leftovers."""
    folder = tmp_path / "out"
    load = Workload(source)
    load.start()
    code = run_child(source, f"file://{folder}", "apply.before-commit:2")
    load.stop()
    assert code == FAILPOINT_EXIT
    left = folder / "._replikit_manifest.json.0badf00d.tmp"
    left.write_text("{")  # what a SIGKILL mid-write leaves
    load.run(5)
    assert run_child(source, f"file://{folder}") == 0
    assert not left.exists()
    _assert_equal(source, folder, load.seq)


def _more_items(src: str, n: int) -> None:
    """``n`` more item rows: a full load long enough for the stream to cache changes."""
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO items SELECT i, 'item ' || i, i, i / 4.0, ARRAY['a'], now() "
            "FROM generate_series(3001, %s) i",
            (3000 + n,),
        )


def _change_rows(folder: Path, table: str) -> list[str]:
    """Every row of ``table``'s committed change files: Op, _position and values, as text."""
    out = []
    for f in sorted((folder / "public" / table).glob("CDC*.parquet")):
        for r in pq.read_table(f).to_pylist():
            meta = (r.pop("Op"), r.pop("_position"))
            r.pop("_change")
            r.pop("_commit_ts")
            r.pop("_unchanged", None)
            out.append(repr((*meta, sorted(r.items()))))
    return out


def _assert_written_once(folder: Path) -> None:
    for table in ("items", "ledger"):
        rows = _change_rows(folder, table)
        assert rows, f"{table}: no change file row"
        twice = sorted(r for r, n in Counter(rows).items() if n > 1)
        assert not twice, f"{table}: changes written twice: {twice[:3]}"


@pytest.mark.parametrize("crash", ["cdc.apply:1", "cdc.apply-cached:2"])
def test_a_crash_after_cached_changes_were_applied_writes_none_twice(
    source: str, tmp_path: Path, crash: str
):
    """A first run's changes cached during its full load are applied after it, each table's
    with a checkpoint in the same commit: a crash before the first CDC batch
    (``cdc.apply:1``) resumes after the last cached transaction, and one between two
    tables' cached changes (``cdc.apply-cached:2``) skips, in the replayed stream, the
    changes of the table already applied. No change file row is written twice."""
    folder = tmp_path / "out"
    _more_items(source, 60_000)  # a load of a few seconds: the stream caches meanwhile
    load = Workload(source)
    load.run(10)  # in the snapshot
    load.start()  # during the load (cached) and after
    try:
        code = run_child(source, f"file://{folder}", crash)
    finally:
        load.stop()
    assert code == FAILPOINT_EXIT, "the failpoint was not reached"
    committed = [f for t in ("items", "ledger") for f in (folder / "public" / t).glob("CDC*")]
    assert committed, "no cached change was applied before the crash"
    load.run(10)  # while the task is down
    assert run_child(source, f"file://{folder}") == 0
    _assert_written_once(folder)
    _assert_equal(source, folder, load.seq)

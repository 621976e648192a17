"""What ``data_errors="skip-row"`` costs a full load without bad rows, and with a few.

A SQLite source table of ``--rows`` rows (id, 4 columns) is loaded into PostgreSQL by a plain
``full-load`` task, ``--reps`` times per policy, interleaved: ``suspend-table`` (a unit in one
``COPY`` transaction), ``skip-row`` (a target transaction per source batch), and ``skip-row``
with ``--bad`` rows the target's CHECK refuses (each found by halving its batch). The target
table is created first with the CHECK (``target_table_prep_mode="truncate"``). Each run is
verified: the target holds every good row.

Run::

    .venv/bin/python benchmarks/skip_row_load.py            # throwaway server (pgserver.py)
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgserver

import replikit as rk


def source(path: Path, rows: int, bad: set[int]) -> str:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, "
                   "price REAL, note TEXT, at TEXT)")  # fmt: skip
        db.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
            ((i, 500 if i in bad else i % 100, i / 7, f"note {i}", "2024-01-02 03:04:05")
             for i in range(1, rows + 1)),
        )  # fmt: skip
    return f"sqlite:///{path}"


def run(src: str, dst: str, policy: str) -> float:
    with psycopg.connect(dst, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS replikit CASCADE")
    settings = rk.TaskSettings(
        task_id="bench", progress=False, target_table_prep_mode="truncate",
        error_policy=rk.ErrorPolicy(data_errors=policy, escalation_count=None),
    )  # fmt: skip
    task = rk.Task(src, dst, migration_type="full-load", settings=settings)
    start = time.perf_counter()
    task.run()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--bad", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    server = pgserver.start()
    work = Path(tempfile.mkdtemp(prefix="rk-skiprow-"))
    bad = set(range(args.rows // (args.bad + 1), args.rows, args.rows // (args.bad + 1)))
    bad = set(sorted(bad)[: args.bad])
    clean = source(work / "clean.db", args.rows, set())
    dirty = source(work / "dirty.db", args.rows, bad)
    dst = server.dst_url
    try:
        with psycopg.connect(dst, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS items")
            conn.execute(
                "CREATE TABLE items (id bigint PRIMARY KEY, qty bigint NOT NULL "
                "CHECK (qty < 100), price double precision, note text, at text)"
            )
        configs = [("suspend-table", clean, "suspend-table"), ("skip-row", clean, "skip-row"),
                   (f"skip-row, {len(bad)} bad", dirty, "skip-row")]  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name, _, _ in configs}
        for _ in range(args.reps):
            for name, src, policy in configs:
                times[name].append(run(src, dst, policy))
                with psycopg.connect(dst) as conn:
                    (n,) = conn.execute("SELECT count(*) FROM items").fetchone() or (0,)
                want = args.rows - (len(bad) if src == dirty else 0)
                assert n == want, f"{name}: {n} rows, wanted {want}"
        base = statistics.median(times["suspend-table"])
        print(f"{args.rows} rows SQLite -> PostgreSQL, plain full load, median of {args.reps}")
        for name, runs in times.items():
            med = statistics.median(runs)
            shown = " ".join(f"{r:.2f}" for r in runs)
            print(f"{name:<20} {med:6.2f} s  {med / base:5.2f}x  runs: {shown}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Mappings benchmark (#12): a full load with rules vs the same full load without.

The ``orders`` table of the full-load data set (``benchmarks/generate.py``;
``generate_mysql.py`` for MariaDB) is copied into PostgreSQL twice per repetition, in
alternating order: once without rules, once with 3 renames (the table and two columns), one
masked column (``sku``: keyed hash), one added expression column (``total = $quantity *
$amount``, numeric(14,2)) and one row filter keeping half the rows (``customer_id`` at most
half the customers, pushed down to the source). Both runs are timed in this process from
``Task.run()`` to its return; rows/s counts the **source** rows (the filter's half included),
so the ratio says what the rules cost per row scanned. The copy without rules of
PostgreSQL -> PostgreSQL moves rows in binary COPY form untouched; with these rules it stays
in that form, the source's SELECT computing the mask (HMAC-SHA256 with ``sha256()``), the
added column and the filter (:mod:`replikit.mapping.pushed`). Two more variants, each with a
no-op Python transform that forces rows through Python ("decoded"): no rules, and the rules
evaluated in Python, separate the cost of leaving the binary path from the cost of the rules.

Reported: median seconds per variant, rows/s, the ratio with/without (target: >= 0.8) and the
machine load (``os.getloadavg``) before each run. No timed assertions anywhere.

``--cdc`` also measures the CDC apply rate (PostgreSQL -> PostgreSQL, a server with
``wal_level=logical``, the ``orders`` table of ``_cdcload.py``): per variant, a
``full-load-and-cdc`` task loads ``--initial`` rows and stops; the source then commits
``--changes`` changes (60/30/10 insert/update/delete) with nothing consuming; the task runs
again and drains them up to a marker. Rate = source changes / drain seconds. The rules: the
table and two columns renamed, ``status`` masked, ``total = $qty * $price`` added, and a row
filter keeping half the customers (updates become upserts or deletes).

Run::

    .venv/bin/python benchmarks/mappings.py --rows 1000000            # PostgreSQL -> PostgreSQL
    .venv/bin/python benchmarks/mappings.py --rows 1000000 --mysql    # MariaDB -> PostgreSQL too
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import generate
import pgserver

import replikit as rk


def rules(customers: int) -> rk.Mappings:
    """The issue's rule set: 3 renames, 1 mask, 1 added expression column, 1 row filter."""
    return (
        rk.Mappings()
        .include("%", "orders")
        .rename_table("orders", "orders_mapped")
        .rename_column("orders", "quantity", "qty")
        .rename_column("orders", "note", "remark")
        .mask("orders", "sku", "hash")
        .add_column("orders", "total", "numeric(14,2)", "$quantity * $amount")
        .filter("orders", ("customer_id", "<=", customers // 2))
    )


def plain() -> rk.Mappings:
    return rk.Mappings().include("%", "orders")


def _same(change: Any) -> Any:
    return change


def run_once(source: str, target: str, mappings: rk.Mappings, decoded: bool = False) -> float:
    settings = rk.TaskSettings(progress=False, mask_secret="bench-secret", parallel_tables=2)
    transforms = [_same] if decoded else []  # a no-op transform: rows leave the raw path
    task = rk.Task(source, target, mappings=mappings, settings=settings, transforms=transforms)
    t0 = time.perf_counter()
    task.run()
    return time.perf_counter() - t0


def compare(label: str, source: str, server: pgserver.PgServer, rows: int, customers: int,
            reps: int) -> dict[str, Any]:  # fmt: skip
    variants = [
        ("without rules", plain(), False),
        ("no rules, decoded", plain(), True),
        ("with rules", rules(customers), False),
        ("rules, decoded", rules(customers), True),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    loads: list[float] = []
    for rep in range(reps):
        order = variants if rep % 2 == 0 else variants[::-1]
        for name, mappings, decoded in order:
            server.recreate_db(pgserver.DST_DB)
            loads.append(os.getloadavg()[0])
            times[name].append(run_once(source, server.dst_url, mappings, decoded))
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: rows / v for k, v in med.items()}
    ratio = rate["with rules"] / rate["without rules"]
    decoded_ratio = rate["with rules"] / rate["no rules, decoded"]
    print(f"\n{label}: {rows:,} source rows, {reps} reps, load average {min(loads):.1f}-"
          f"{max(loads):.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    for k in times:
        print(f"  {k:<18} {med[k]:7.2f} s  {rate[k]:>10,.0f} rows/s")
    python_ratio = rate["rules, decoded"] / rate["without rules"]
    print(f"  ratio with/without: {ratio:.2f}x (target >= 0.8x); with/decoded without: "
          f"{decoded_ratio:.2f}x; rules in Python/without: {python_ratio:.2f}x")  # fmt: skip
    return {"label": label, "rows": rows, "median_s": med, "rows_per_s": rate, "ratio": ratio,
            "decoded_ratio": decoded_ratio, "python_ratio": python_ratio, "load": loads,
            "times": times}  # fmt: skip


def cdc_rules() -> rk.Mappings:
    """The CDC variant of the rule set (``_cdcload.py``'s ``orders``)."""
    return (
        rk.Mappings()
        .include("public", "orders")
        .include("public", "bench_marker")
        .rename_table("orders", "orders_mapped")
        .rename_column("orders", "qty", "quantity")
        .rename_column("orders", "note", "remark")
        .mask("orders", "status", "hash")
        .add_column("orders", "total", "numeric(14,2)", "$qty * $price")
        .filter("orders", ("customer_id", "<=", 5000))
    )


def cdc_drain(server: Any, mappings: rk.Mappings, initial: int, changes: int) -> float:
    """Seconds a task takes to drain ``changes`` source changes (see the module docs)."""
    import _cdcload

    for db in ("map_cdc_src", "map_cdc_dst"):
        server.recreate_db(db)
    src, dst = server.url("map_cdc_src"), server.url("map_cdc_dst")
    _cdcload.create_source(src, initial)
    base = {"task_id": "mapbench", "progress": False, "mask_secret": "bench-secret",
            "batch_apply": True}  # fmt: skip
    first = rk.TaskSettings(stop_when_idle=1.0, **base)
    rk.Task(src, dst, migration_type="full-load-and-cdc", mappings=mappings, settings=first).run()
    _cdcload.backlog(src, changes)
    lsn = _cdcload.marker(src)
    stop = f"pg:{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
    settings = rk.TaskSettings(cdc_stop_position=stop, **base)
    task = rk.Task(src, dst, migration_type="full-load-and-cdc", mappings=mappings,
                   settings=settings)  # fmt: skip
    t0 = time.perf_counter()
    task.run()
    elapsed = time.perf_counter() - t0
    rk.Task(src, dst, settings=rk.TaskSettings(task_id="mapbench")).drop()
    return elapsed


def compare_cdc(initial: int, changes: int, reps: int, keep: bool) -> dict[str, Any]:
    import _cdcload

    server, owned = _cdcload.start_server(keep)
    variants = [
        ("without rules", rk.Mappings().include("public", "%")),
        ("with rules", cdc_rules()),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    loads: list[float] = []
    try:
        for rep in range(reps):
            for name, mappings in variants if rep % 2 == 0 else variants[::-1]:
                loads.append(os.getloadavg()[0])
                times[name].append(cdc_drain(server, mappings, initial, changes))
    finally:
        if owned and not keep:
            server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: changes / v for k, v in med.items()}
    ratio = rate["with rules"] / rate["without rules"]
    print(f"\nCDC apply, PostgreSQL -> PostgreSQL: {changes:,} changes, {reps} reps, load "
          f"average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    for k in times:
        print(f"  {k:<18} {med[k]:7.2f} s  {rate[k]:>10,.0f} changes/s")
    print(f"  ratio with/without: {ratio:.2f}x (target >= 0.8x)")
    return {"label": "CDC apply", "changes": changes, "median_s": med, "changes_per_s": rate,
            "ratio": ratio, "load": loads, "times": times}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--mysql", action="store_true", help="also MariaDB -> PostgreSQL")
    p.add_argument("--keep", action="store_true", help="keep the servers for the next run")
    p.add_argument("--cdc", action="store_true", help="also the CDC apply rate")
    p.add_argument("--changes", type=int, default=100_000, help="CDC: source changes")
    p.add_argument("--initial", type=int, default=20_000, help="CDC: rows before the changes")
    p.add_argument("--no-full-load", action="store_true", help="skip the full-load runs")
    args = p.parse_args(argv)
    customers = generate.default_customers(args.rows)
    results = []
    if args.cdc:
        results.append(compare_cdc(args.initial, args.changes, args.reps, args.keep))
    if args.no_full_load:
        return _write(results)
    server = pgserver.start(keep=args.keep)
    try:
        generate.generate(server.src_url, args.rows, customers)
        results.append(compare("PostgreSQL -> PostgreSQL", server.src_url, server, args.rows,
                               customers, args.reps))  # fmt: skip
        if args.mysql:
            import generate_mysql
            import mysqlserver

            my = mysqlserver.start(keep=args.keep)
            try:
                generate_mysql.generate(my.src_url, args.rows, customers)
                results.append(compare("MariaDB -> PostgreSQL", my.src_url, server, args.rows,
                                       customers, args.reps))  # fmt: skip
            finally:
                if not args.keep:
                    my.stop()
    finally:
        if not args.keep:
            server.stop()
    return _write(results)


def _write(results: list[dict[str, Any]]) -> int:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"mappings-{stamp}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

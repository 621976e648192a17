"""CDC apply micro-benchmark: PostgresChangeWriter throughput, batch vs transactional.

Workload: ``--changes`` single-row source transactions (default 100k), 60% inserts of new keys,
30% full-image updates and 10% deletes of random existing keys, on an ``orders``-like table
(bigint key, 8 columns: bigint, int, numeric(12,2), varchar, text, timestamp, timestamptz)
that starts with ``--initial`` rows (default 100k). Every apply call also writes the task's
checkpoint, in the same transaction, as a CDC task does.

Modes, each timed ``--reps`` times (median reported) after resetting the target:

* ``batch``: ``apply(batch=True)`` over ``--batch`` source transactions per call (net change,
  COPY into stage tables, set merges);
* ``transactional``: ``apply(batch=False)`` over the same calls (every change, in order, as
  parameterised statements in one pipeline);
* ``per-transaction``: ``apply(batch=False)`` with one source transaction per call (one target
  commit each), on the first ``--per-tx`` changes only (default 10k).

Each run is verified: the target equals a Python model of the expected rows. ``--conflicts``
looks for apply conflicts in every call, as ``apply_conflicts="log"`` does (the workload has
none, so this times the lookups alone). ``--sweep`` also
times one apply of N upserts staged (COPY + merge) against parameterised statements, to pick
``BULK_MIN_ROWS``.

Run::

    .venv/bin/python benchmarks/apply_micro.py            # throwaway server (pgserver.py)
    REPLIKIT_BENCH_PG_URL=postgresql://u@host/postgres .venv/bin/python benchmarks/apply_micro.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgserver

import replikit as rk
from replikit.changes import Change, Op, Transaction
from replikit.pipeline.contracts import Checkpoint
from replikit.positions import PgLsn
from replikit.schema.convert import TablePlan, plan_table
from replikit.schema.model import TableId

DB = "bench_apply"
TABLE = TableId("dst", "orders")
SOURCE_DDL = """
DROP SCHEMA IF EXISTS src CASCADE;
CREATE SCHEMA src;
CREATE TABLE src.orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    qty integer NOT NULL,
    price numeric(12,2),
    status varchar(16) NOT NULL,
    note text,
    created_at timestamp(6) NOT NULL,
    updated_at timestamptz
);
"""
COLUMNS = ("id", "customer_id", "qty", "price", "status", "note", "created_at", "updated_at")
STATUSES = ("new", "paid", "shipped", "cancelled")
EPOCH = dt.datetime(2024, 1, 1)


def make_row(rng: random.Random, key: int) -> dict[str, Any]:
    created = EPOCH + dt.timedelta(seconds=rng.randrange(10**7), microseconds=rng.randrange(10**6))
    return {
        "id": key,
        "customer_id": rng.randrange(1, 10_000),
        "qty": rng.randrange(1, 100),
        "price": Decimal(rng.randrange(100, 10**7)) / 100,
        "status": rng.choice(STATUSES),
        "note": None if rng.random() < 0.3 else f"note {key} " + "x" * rng.randrange(0, 80),
        "created_at": created,
        "updated_at": created.replace(tzinfo=dt.UTC) + dt.timedelta(hours=1),
    }


def workload(
    n: int, initial: int, seed: int
) -> tuple[list[Transaction], dict[int, dict[str, Any]]]:
    """``n`` single-change transactions and the final state they produce from ``initial``."""
    rng = random.Random(seed)
    state = {k: make_row(random.Random(k), k) for k in range(1, initial + 1)}
    keys = list(state)
    index = {k: i for i, k in enumerate(keys)}
    next_key = initial + 1
    txs = []
    for i in range(n):
        r = rng.random()
        if r < 0.6 or len(keys) < 2:
            row = make_row(rng, next_key)
            change = Change(Op.INSERT, TABLE, key={"id": next_key}, after=row)
            state[next_key] = row
            index[next_key] = len(keys)
            keys.append(next_key)
            next_key += 1
        else:
            key = keys[rng.randrange(len(keys))]
            if r < 0.9:
                row = make_row(rng, key)
                change = Change(Op.UPDATE, TABLE, key={"id": key}, after=row)
                state[key] = row
            else:
                change = Change(Op.DELETE, TABLE, key={"id": key})
                del state[key]
                last = keys.pop()
                if last != key:
                    keys[index[key]] = last
                    index[last] = index[key]
                del index[key]
        txs.append(Transaction((change,), PgLsn(i + 1)))
    return txs, state


def setup(url: str, initial: int) -> TablePlan:
    """Source table (for the plan), target table created by the full-load writer, and rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SOURCE_DDL)
        conn.execute("DROP SCHEMA IF EXISTS replikit CASCADE")
    ep = rk.endpoint(url)
    (table,) = ep.reflect(rk.mapping.Selection(include=("src.orders",))).tables
    plan = plan_table(table, source_dialect="postgresql", target=ep.dialect, target_id=TABLE)
    ep.writer().prepare([plan], "drop-and-create")
    reset(url, initial)
    return plan


def reset(url: str, initial: int) -> None:
    rows = [make_row(random.Random(k), k) for k in range(1, initial + 1)]
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE dst.orders")
        with conn.cursor().copy(f"COPY dst.orders ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in COLUMNS])
        conn.execute("DROP SCHEMA IF EXISTS replikit CASCADE")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE dst.orders")
        conn.execute("CHECKPOINT")


def verify(url: str, expected: dict[int, dict[str, Any]]) -> bool:
    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        got = {r[0]: r for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM dst.orders")}
    if got.keys() != expected.keys():
        return False
    return all(got[k] == tuple(row[c] for c in COLUMNS) for k, row in expected.items())


def run(
    url: str,
    plan: TablePlan,
    txs: list[Transaction],
    per_call: int,
    batch: bool,
    conflicts: bool = False,
) -> float:
    """Seconds to apply ``txs``; ``conflicts``: look for apply conflicts as
    ``apply_conflicts="log"`` does (the workload has none: the cost is the lookups)."""
    ep = rk.endpoint(url)
    plans = {plan.target_id: plan}
    found: list[Any] = []
    with ep.change_writer() as writer:
        start = time.perf_counter()
        for i in range(0, len(txs), per_call):
            chunk = txs[i : i + per_call]
            cp = Checkpoint("bench", start=PgLsn(0), position=chunk[-1].position)
            extra = {"on_conflicts": found.extend} if conflicts else {}
            writer.apply(plans, chunk, checkpoint=cp, batch=batch, **extra)
        elapsed = time.perf_counter() - start
    assert not found, f"{len(found)} conflicts in a workload without any"
    return elapsed


def sweep(url: str, plan: TablePlan, sizes: list[int], reps: int) -> None:
    """Per-call time of N upserts / N deletes: staged (COPY + merge) vs statements."""
    ep = rk.endpoint(url)
    plans = {plan.target_id: plan}
    rng = random.Random(7)
    print(f"\n{'rows':>6} {'upsert staged/statements ms':>28} {'delete staged/statements ms':>28}")
    base = 10**9
    for n in sizes:
        times: dict[str, float] = {}
        for label, threshold in (("staged", 1), ("statements", 10**9)):
            with ep.change_writer(bulk_min_rows=threshold) as writer:
                ins, dels = [], []
                for _ in range(reps + 2):
                    keys = range(base, base + n)
                    base += n
                    inserts = tuple(Change(Op.INSERT, TABLE, after=make_row(rng, k)) for k in keys)
                    deletes = tuple(Change(Op.DELETE, TABLE, key={"id": k}) for k in keys)
                    for changes, out in ((inserts, ins), (deletes, dels)):
                        t0 = time.perf_counter()
                        tx = Transaction(changes, PgLsn(1))
                        writer.apply(plans, [tx], checkpoint=None, batch=True)
                        out.append(time.perf_counter() - t0)
                times[f"upsert {label}"] = statistics.median(ins[2:]) * 1000
                times[f"delete {label}"] = statistics.median(dels[2:]) * 1000
        up = f"{times['upsert staged']:.2f} / {times['upsert statements']:.2f}"
        de = f"{times['delete staged']:.2f} / {times['delete statements']:.2f}"
        print(f"{n:>6} {up:>28} {de:>28}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="replikit CDC apply micro-benchmark")
    parser.add_argument("--url", help="admin URL of an existing server (else a throwaway one)")
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--initial", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000, help="source transactions per call")
    parser.add_argument("--per-tx", type=int, default=10_000, help="changes for per-transaction")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="batch,transactional,per-transaction")
    parser.add_argument("--sweep", action="store_true", help="also time staged vs statements")
    parser.add_argument(
        "--conflicts", action="store_true", help="look for apply conflicts in every call (log)"
    )
    args = parser.parse_args(argv)

    server = None
    if args.url:
        admin = args.url
    else:
        server = pgserver.start()
        admin = server.admin_url
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB}")
            version = conn.execute("SHOW server_version").fetchone()
        url = pgserver.with_dbname(admin, DB)
        print(f"PostgreSQL {version[0] if version else '?'}; psycopg {psycopg.__version__}")
        txs, expected = workload(args.changes, args.initial, args.seed)
        per_tx_txs, per_tx_expected = workload(args.per_tx, args.initial, args.seed)
        plan = setup(url, args.initial)
        print(
            f"{args.changes} changes (60/30/10 insert/update/delete, single-row transactions), "
            f"{args.initial} initial rows, {args.batch} transactions per apply call\n"
        )
        print(f"{'mode':<16} {'changes':>8} {'median s':>9} {'changes/s':>10}  runs (s)  verified")
        for mode in args.modes.split(","):
            if mode == "per-transaction":
                work, want, per_call, batch = per_tx_txs, per_tx_expected, 1, False
            else:
                work, want, per_call, batch = txs, expected, args.batch, mode == "batch"
            runs, ok = [], True
            for _ in range(args.reps):
                reset(url, args.initial)
                runs.append(run(url, plan, work, per_call, batch, args.conflicts))
                ok = ok and verify(url, want)
            med = statistics.median(runs)
            shown = " ".join(f"{r:.2f}" for r in runs)
            print(f"{mode:<16} {len(work):>8} {med:>9.2f} {len(work) / med:>10,.0f}  {shown}  {ok}")
        if args.sweep:
            reset(url, args.initial)
            sweep(url, plan, [1, 8, 16, 32, 48, 64, 96, 128, 256, 1024], args.reps * 5)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

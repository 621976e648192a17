"""Workload and child processes of the CDC benchmark (benchmarks/cdc.py).

The source has two tables: ``orders`` (bigint key, 8 columns: bigint, int, numeric(12,2),
varchar, text, timestamp(6), timestamptz) and ``bench_marker`` (one row, bumped to mark a sync
point). Every writer keeps the live keys of ``orders`` one contiguous range ``[lo, hi]``:
inserts take ``hi + 1``, deletes remove ``lo`` and updates pick a random key in the range, so
every statement changes exactly one row and the change count is exact. ``changed_at`` is set
to ``clock_timestamp()`` by every insert and update: the lag probe on the targets compares it
with the time the row arrived (same server, same clock).

Subcommands (run by cdc.py as child processes)::

    python benchmarks/_cdcload.py rate URL --rate 1000 --seconds 20
        single-row transactions (60/30/10 insert/update/delete) at a fixed rate; JSON summary
    python benchmarks/_cdcload.py replikit SRC DST --task-id T [--batch-apply]
            [--stop-at LSN | --stop-when-idle S] [--profile PREFIX]
        one replikit task (full-load-and-cdc: the first run loads and creates the slot, later
        runs resume CDC from the checkpoint); SIGTERM stops it gracefully; JSON statistics.
        ``--profile PREFIX`` writes one cProfile file per thread (PREFIX-<thread>.prof).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

TABLES = ("orders", "bench_marker")
STATUSES = ("new", "paid", "shipped", "cancelled")

SOURCE_DDL = """
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    qty integer NOT NULL,
    price numeric(12,2),
    status varchar(16) NOT NULL,
    note text,
    created_at timestamp(6) NOT NULL,
    changed_at timestamptz NOT NULL
);
CREATE TABLE bench_marker (id integer PRIMARY KEY, n bigint NOT NULL);
"""

INITIAL_ROWS = """
INSERT INTO orders
SELECT g, 1 + abs(hashint8(g)) % 10000, 1 + abs(hashint8(g + 1)) % 99,
       (abs(hashint8(g + 2)) % 10000000) / 100.0,
       (ARRAY['new','paid','shipped','cancelled'])[1 + abs(hashint8(g + 3)) % 4],
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || g || repeat('x', (g % 80)::int) END,
       timestamp '2024-01-01' + (abs(hashint8(g + 4)) % 10000000000) * interval '1 microsecond',
       timestamptz '2024-06-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, {n}) g;
INSERT INTO bench_marker VALUES (1, 0);
"""

# Backlog generator: n changes as single-row and 10-row transactions (every 11th
# transaction has 10 rows, so half of the changes are in each kind), 60/30/10 mix.
BACKLOG_PROC = """
CREATE OR REPLACE PROCEDURE bench_backlog(n bigint, seed float8)
LANGUAGE plpgsql AS $$
DECLARE
    lo bigint; hi bigint; done bigint := 0; t bigint := 0; size int; r float8; k bigint;
BEGIN
    PERFORM setseed(seed);
    SELECT min(id), max(id) INTO lo, hi FROM orders;
    WHILE done < n LOOP
        size := least(CASE WHEN t % 11 = 10 THEN 10 ELSE 1 END, n - done);
        FOR i IN 1..size LOOP
            r := random();
            IF r < 0.6 OR hi - lo < 1000 THEN
                hi := hi + 1;
                INSERT INTO orders VALUES (
                    hi, 1 + floor(random() * 10000)::bigint, 1 + floor(random() * 99)::int,
                    round((random() * 100000)::numeric, 2),
                    (ARRAY['new','paid','shipped','cancelled'])[1 + floor(random() * 4)::int],
                    CASE WHEN random() < 0.3 THEN NULL
                         ELSE 'note ' || hi || repeat('x', floor(random() * 80)::int) END,
                    timestamp '2024-01-01' + random() * interval '100 days', clock_timestamp());
            ELSIF r < 0.9 THEN
                k := lo + floor(random() * (hi - lo + 1))::bigint;
                UPDATE orders SET qty = qty + 1,
                    price = round((random() * 100000)::numeric, 2),
                    status = (ARRAY['new','paid','shipped','cancelled'])
                             [1 + floor(random() * 4)::int],
                    changed_at = clock_timestamp()
                WHERE id = k;
            ELSE
                DELETE FROM orders WHERE id = lo;
                lo := lo + 1;
            END IF;
        END LOOP;
        COMMIT;
        done := done + size;
        t := t + 1;
    END LOOP;
END $$;
"""

# On a target: every applied insert/update of ``orders`` logs (source time, arrival time).
LAG_PROBE = """
CREATE TABLE IF NOT EXISTS bench_lag (src_ts timestamptz NOT NULL, dst_ts timestamptz NOT NULL);
CREATE OR REPLACE FUNCTION bench_lag_probe() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_lag VALUES (NEW.changed_at, clock_timestamp());
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS bench_lag_probe ON orders;
CREATE TRIGGER bench_lag_probe AFTER INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bench_lag_probe();
ALTER TABLE orders ENABLE ALWAYS TRIGGER bench_lag_probe;
"""

MARKER = (
    "UPDATE bench_marker SET n = n + 1 WHERE id = 1 RETURNING pg_current_wal_insert_lsn()::text"
)


def lsn_int(text: str) -> int:
    """``X/Y`` (optionally ``pg:X/Y``) as an integer."""
    hi, _, lo = text.removeprefix("pg:").partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def create_source(url: str, initial: int) -> None:
    """Tables, ``initial`` deterministic rows and the backlog procedure."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SOURCE_DDL)
        conn.execute(INITIAL_ROWS.replace("{n}", str(int(initial))))
        conn.execute(BACKLOG_PROC)
        conn.execute("VACUUM ANALYZE orders")


def copy_tables(src_url: str, dst_url: str) -> None:
    """Create the source tables in ``dst_url`` and copy their rows (for the native peer)."""
    with psycopg.connect(dst_url, autocommit=True) as dst:
        dst.execute(SOURCE_DDL)
    with psycopg.connect(src_url) as src, psycopg.connect(dst_url) as dst:
        for table in TABLES:
            with (
                src.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as out,
                dst.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as into,
            ):
                for block in out:
                    into.write(block)
        dst.commit()


def backlog(url: str, changes: int, seed: float = 0.42) -> float:
    """Commit ``changes`` changes server-side as fast as the server can; return seconds."""
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute("CALL bench_backlog(%s, %s)", (changes, seed))
        return time.perf_counter() - t0


def marker(url: str) -> int:
    """Commit a marker transaction; return an LSN inside it (its commit ends after it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(MARKER).fetchone()
    assert row is not None
    return lsn_int(row[0])


# -- fixed-rate load ----------------------------------------------------------------------

_INSERT = "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s, %s, clock_timestamp())"
_UPDATE = (
    "UPDATE orders SET qty = qty + 1, price = %s, status = %s, changed_at = clock_timestamp() "
    "WHERE id = %s"
)
_DELETE = "DELETE FROM orders WHERE id = %s"


def run_rate(url: str, rate: float, seconds: float, seed: int) -> dict[str, Any]:
    """Single-row autocommit transactions at ``rate`` per second for ``seconds``."""
    rng = random.Random(seed)
    counts = {"insert": 0, "update": 0, "delete": 0}
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        row = conn.execute("SELECT min(id), max(id), clock_timestamp() FROM orders").fetchone()
        assert row is not None
        lo, hi, started_db = row
        total = int(rate * seconds)
        late = 0.0
        t0 = time.perf_counter()
        for i in range(total):
            due = t0 + i / rate
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            else:
                late = max(late, now - due)
            r = rng.random()
            price = round(rng.uniform(1, 100000), 2)
            status = rng.choice(STATUSES)
            if r < 0.6 or hi - lo < 1000:
                hi += 1
                note = None if rng.random() < 0.3 else f"note {hi}"
                created = f"2024-01-01 00:00:{rng.randrange(60):02d}"
                values = (hi, rng.randrange(1, 10000), rng.randrange(1, 100), price, status)
                conn.execute(_INSERT, (*values, note, created))
                counts["insert"] += 1
            elif r < 0.9:
                conn.execute(_UPDATE, (price, status, rng.randint(lo, hi)))
                counts["update"] += 1
            else:
                conn.execute(_DELETE, (lo,))
                lo += 1
                counts["delete"] += 1
        elapsed = time.perf_counter() - t0
    return {
        "changes": total,
        "seconds": elapsed,
        "achieved_rate": total / elapsed if elapsed else None,
        "max_late_s": late,
        "started_db": started_db.isoformat(),
        **counts,
    }


# -- the replikit child -------------------------------------------------------------------


def _profile_threads(prefix: str) -> Callable[[], None]:
    """Profile the main thread and every thread started later, one file per thread."""
    import cProfile

    profiles: list[tuple[str, cProfile.Profile]] = []
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile()
        profiles.append((self.name, prof))
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    main = cProfile.Profile()
    profiles.append(("main", main))
    main.enable()

    def dump() -> None:
        main.disable()
        for name, prof in profiles:
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
            prof.dump_stats(f"{prefix}-{safe}.prof")

    return dump


def run_replikit(args: argparse.Namespace) -> dict[str, Any]:
    """One replikit task run; returns its statistics and timings."""
    t_spawned = time.time()
    dump = _profile_threads(args.profile) if args.profile else None
    import replikit as rk

    settings = rk.TaskSettings(
        task_id=args.task_id,
        batch_apply=args.batch_apply,
        batch_changes=args.batch_changes,
        stop_when_idle=args.stop_when_idle,
        cdc_stop_position=f"pg:{args.stop_at}" if args.stop_at else None,
        progress=False,
    )
    mappings = rk.Mappings()
    for table in TABLES:
        mappings = mappings.include("public", table)
    task = rk.Task(
        args.source,
        args.target,
        migration_type="full-load-and-cdc",
        mappings=mappings,
        settings=settings,
    )
    signal.signal(signal.SIGTERM, lambda signum, frame: task.stop())
    t_run = time.time()
    error = None
    try:
        stats = task.run()
    except Exception as exc:  # reported in the JSON, the parent marks the run failed
        stats, error = task.statistics(), f"{type(exc).__name__}: {exc}"
    t_end = time.time()
    if dump is not None:
        dump()
    return {
        "ok": error is None,
        "error": error,
        "t_imported": t_spawned,
        "t_run": t_run,
        "t_end": t_end,
        "cdc": stats.cdc.as_dict(),
        "tables": {t.table: t.as_dict() for t in stats},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CDC benchmark workload and children")
    sub = parser.add_subparsers(dest="cmd", required=True)
    rate = sub.add_parser("rate")
    rate.add_argument("url")
    rate.add_argument("--rate", type=float, default=1000.0)
    rate.add_argument("--seconds", type=float, default=20.0)
    rate.add_argument("--seed", type=int, default=7)
    rk = sub.add_parser("replikit")
    rk.add_argument("source")
    rk.add_argument("target")
    rk.add_argument("--task-id", required=True)
    rk.add_argument("--batch-apply", action="store_true")
    rk.add_argument("--batch-changes", type=int, default=10_000)
    rk.add_argument("--stop-at", help="stop once a transaction at/after this LSN is applied")
    rk.add_argument("--stop-when-idle", type=float)
    rk.add_argument("--profile", help="cProfile output prefix (one file per thread)")
    args = parser.parse_args(argv)
    if args.cmd == "rate":
        out = run_rate(args.url, args.rate, args.seconds, args.seed)
    else:
        out = run_replikit(args)
    print(json.dumps(out, default=str))
    return 0 if out.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())

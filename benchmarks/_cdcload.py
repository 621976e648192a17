"""Workload, server setup, measuring helpers and child processes of benchmarks/cdc.py.

The child processes import only what they need (not pgserver/full_load), so the replikit
child's RSS is replikit's.

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
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    import pgserver

CDC_SETTINGS = {"wal_level": "logical", "max_replication_slots": "10", "max_wal_senders": "10"}
SRC_DB = "cdc_src"
NATIVE = "bench_native"  # publication, slot and subscription of the native peer
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
-- qualified: a subscription's apply worker runs with an empty search_path
CREATE OR REPLACE FUNCTION bench_lag_probe() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.bench_lag VALUES (NEW.changed_at, clock_timestamp());
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


# -- MariaDB source (MariaDB -> PostgreSQL drains) ------------------------------------------
# The same table shapes and workload in MariaDB types; ``changed_at`` is a DATETIME(6) there.

MYSQL_SOURCE_DDL = (
    """CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    qty integer NOT NULL,
    price decimal(12,2),
    status varchar(16) NOT NULL,
    note text,
    created_at datetime(6) NOT NULL,
    changed_at datetime(6) NOT NULL
)""",
    "CREATE TABLE bench_marker (id integer PRIMARY KEY, n bigint NOT NULL)",
)

MYSQL_INITIAL_ROWS = (
    """INSERT INTO orders
SELECT seq, 1 + crc32(seq) % 10000, 1 + crc32(seq + 1) % 99, (crc32(seq + 2) % 10000000) / 100,
       elt(1 + crc32(seq + 3) % 4, 'new', 'paid', 'shipped', 'cancelled'),
       IF(seq % 3 = 0, NULL, concat('note ', seq, repeat('x', seq % 80))),
       timestamp '2024-01-01 00:00:00' + INTERVAL (crc32(seq + 4) * 2) MICROSECOND,
       timestamp '2024-06-01 00:00:00' + INTERVAL seq SECOND
FROM seq_1_to_{n}""",
    "INSERT INTO bench_marker VALUES (1, 0)",
)

MYSQL_BACKLOG_PROC = """
CREATE PROCEDURE bench_backlog(n bigint)
BEGIN
    DECLARE lo, hi, k bigint;
    DECLARE done, t bigint DEFAULT 0;
    DECLARE size, i int;
    DECLARE r double;
    SELECT min(id), max(id) INTO lo, hi FROM orders;
    WHILE done < n DO
        SET size = least(IF(t % 11 = 10, 10, 1), n - done);
        START TRANSACTION;
        SET i = 0;
        WHILE i < size DO
            SET r = rand();
            IF r < 0.6 OR hi - lo < 1000 THEN
                SET hi = hi + 1;
                INSERT INTO orders VALUES (
                    hi, 1 + floor(rand() * 10000), 1 + floor(rand() * 99),
                    round(rand() * 100000, 2),
                    elt(1 + floor(rand() * 4), 'new', 'paid', 'shipped', 'cancelled'),
                    IF(rand() < 0.3, NULL, concat('note ', hi, repeat('x', floor(rand() * 80)))),
                    timestamp '2024-01-01 00:00:00' + INTERVAL floor(rand() * 8640000000000)
                        MICROSECOND,
                    now(6));
            ELSEIF r < 0.9 THEN
                SET k = lo + floor(rand() * (hi - lo + 1));
                UPDATE orders SET qty = qty + 1, price = round(rand() * 100000, 2),
                    status = elt(1 + floor(rand() * 4), 'new', 'paid', 'shipped', 'cancelled'),
                    changed_at = now(6)
                WHERE id = k;
            ELSE
                DELETE FROM orders WHERE id = lo;
                SET lo = lo + 1;
            END IF;
            SET i = i + 1;
        END WHILE;
        COMMIT;
        SET done = done + size;
        SET t = t + 1;
    END WHILE;
END
"""

#: the columns of each table with their verify_mysql canonical kind
MYSQL_COLUMNS = {
    "orders": [
        ("id", "int"), ("customer_id", "int"), ("qty", "int"), ("price", "decimal"),
        ("status", "text"), ("note", "text"), ("created_at", "datetime"),
        ("changed_at", "datetime"),
    ],
    "bench_marker": [("id", "int"), ("n", "int")],
}  # fmt: skip


def mysql_connect(url: str) -> Any:
    """A pymysql connection (autocommit) to the database of a ``mysql://`` URL."""
    from urllib.parse import unquote, urlsplit

    import pymysql

    p = urlsplit(url)
    return pymysql.connect(
        host=p.hostname or "127.0.0.1", port=p.port or 3306, user=unquote(p.username or "root"),
        password=unquote(p.password or ""), database=p.path.lstrip("/") or None,
        autocommit=True, charset="utf8mb4",
    )  # fmt: skip


def mysql_create_source(url: str, initial: int) -> None:
    """The MariaDB source: tables, ``initial`` deterministic rows, the backlog procedure."""
    with mysql_connect(url) as conn, conn.cursor() as cur:
        for statement in MYSQL_SOURCE_DDL:
            cur.execute(statement)
        for statement in MYSQL_INITIAL_ROWS:
            cur.execute(statement.replace("{n}", str(int(initial))))
        cur.execute(MYSQL_BACKLOG_PROC)


def mysql_backlog(url: str, changes: int) -> float:
    """Commit ``changes`` changes server-side on MariaDB (not seeded: ``rand()``); seconds."""
    with mysql_connect(url) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        cur.execute("CALL bench_backlog(%s)", (changes,))
        return time.perf_counter() - t0


def mysql_marker(url: str) -> tuple[str, int]:
    """Commit a marker transaction; the binlog ``(file, offset)`` after it."""
    with mysql_connect(url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE bench_marker SET n = n + 1 WHERE id = 1")
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    return str(row[0]), int(row[1])


def binlog_int(file: str, pos: int) -> int:
    """A binlog position as an integer that orders like it (file sequence, offset)."""
    return (int(file.rsplit(".", 1)[1]) << 32) | pos


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


# -- the server -----------------------------------------------------------------------------


def start_server(keep: bool) -> tuple[pgserver.PgServer, bool]:
    """A server with ``wal_level=logical``; ``owned``: started by this run (stop it after).

    Without ``--keep`` always a fresh cluster, never a server kept by another benchmark
    (this one may need to restart it). With ``--keep``, a kept server that lacks
    ``wal_level=logical`` gets it (``ALTER SYSTEM`` and a restart).
    """
    import pgserver

    pgserver.SERVER_SETTINGS.update(CDC_SETTINGS)  # read when a new cluster is initialised
    external = bool(os.environ.get(pgserver.ENV_URL))
    if not keep and not external:
        return pgserver._init_new(pgserver.DEFAULT_BINDIR), True
    reused = external or pgserver.STATE_FILE.exists()
    server = pgserver.start(keep=keep)
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW wal_level").fetchone()
        level = row[0] if row else "?"
        if level != "logical":
            if server.external:
                raise SystemExit(f"{pgserver.ENV_URL}: wal_level is {level}; CDC needs logical")
            conn.execute("ALTER SYSTEM SET wal_level = logical")
    if level != "logical":
        pg_ctl = str(Path(server.bindir) / "pg_ctl")
        log = str(Path(server.datadir).parent / "server.log")  # no log: pg_ctl keeps our pipes
        pgserver._run_as_postgres(
            [pg_ctl, "-D", str(server.datadir), "-l", log, "-m", "fast", "-w", "restart"]
        )
    return server, not reused


def cleanup(server: pgserver.PgServer, dbs: list[str]) -> None:
    """Drop the native subscription, every slot of ``dbs``, then ``dbs`` (leftovers too)."""
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        subs = conn.execute(
            "SELECT d.datname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid"
            " WHERE s.subname = %s",
            (NATIVE,),
        ).fetchall()
        for (db,) in subs:
            with psycopg.connect(server.url(db), autocommit=True) as sub:
                sub.execute(f"ALTER SUBSCRIPTION {NATIVE} DISABLE")
                sub.execute(f"ALTER SUBSCRIPTION {NATIVE} SET (slot_name = NONE)")
                sub.execute(f"DROP SUBSCRIPTION {NATIVE}")
        deadline = time.monotonic() + 30
        while True:
            slots = conn.execute(
                "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = ANY(%s)",
                (dbs,),
            ).fetchall()
            for name, pid in slots:
                if pid:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                else:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
            if not slots or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for db in dbs:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# -- RSS over time ------------------------------------------------------------------------


class RssTimeline(threading.Thread):
    """Samples the process-tree RSS of ``pid`` every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        from full_load import tree_rss_bytes

        while not self._done.is_set():
            rss = tree_rss_bytes(self.pid)
            if rss:
                self.samples.append((time.perf_counter(), rss))
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()

    @property
    def peak(self) -> int:
        return max((r for _, r in self.samples), default=0)

    def at(self, t0: float, t1: float, fractions: tuple[float, ...]) -> list[int | None]:
        """RSS at each fraction of the window [t0, t1] (the last sample at or before it)."""
        out: list[int | None] = []
        for f in fractions:
            when = t0 + f * (t1 - t0)
            before = [r for t, r in self.samples if t <= when + self.interval / 2]
            out.append(before[-1] if before else None)
        return out


def server_cpu(server: pgserver.PgServer) -> float | None:
    """CPU seconds used so far by an owned server: the postmaster, its live children and the
    children it has reaped (``cutime``), so backends that ended in between count too."""
    if server.external:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    try:
        pid = int((server.datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    from full_load import _ppid_map

    children = _ppid_map()
    total, stack, root = 0, [pid], True
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if root:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
            root = False
        stack.extend(children.get(p, ()))
    return total / tick


# -- fixed-rate load ----------------------------------------------------------------------

_INSERT = "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s, %s, clock_timestamp())"
_UPDATE = (
    "UPDATE orders SET qty = qty + 1, price = %s, status = %s, changed_at = clock_timestamp() "
    "WHERE id = %s"
)
_DELETE = "DELETE FROM orders WHERE id = %s"


def run_rate(
    url: str, rate: float, seconds: float, seed: int, sync_commit: bool = True
) -> dict[str, Any]:
    """Single-row autocommit transactions at ``rate`` per second for ``seconds``."""
    rng = random.Random(seed)
    counts = {"insert": 0, "update": 0, "delete": 0}
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        # An OLTP application's commits are flushed at once; with synchronous_commit=off a
        # walsender only sees them after the WAL writer's next flush (wal_writer_delay).
        conn.execute(f"SET synchronous_commit = {'on' if sync_commit else 'off'}")
        row = conn.execute("SELECT min(id), max(id), clock_timestamp() FROM orders").fetchone()
        assert row is not None
        lo, hi, started_db = row
        total = int(rate * seconds)
        late = 0.0
        t0 = time.perf_counter()
        done = 0
        for i in range(total):  # on schedule, or as fast as it can when behind, until time
            due = t0 + i / rate
            now = time.perf_counter()
            if now - t0 >= seconds:
                break
            if now < due:
                time.sleep(due - now)
            else:
                late = max(late, now - due)
            done += 1
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
        "changes": done,
        "seconds": elapsed,
        "achieved_rate": done / elapsed if elapsed else None,
        "max_late_s": late,
        "synchronous_commit": sync_commit,
        "started_db": started_db.isoformat(),
        **counts,
    }


def rate_child(url: str, rate: float, seconds: float, *, async_commit: bool) -> dict[str, Any]:
    """:func:`run_rate` in a child process (its pacing is not disturbed by our threads)."""
    cmd = [sys.executable, __file__, "rate", url, "--rate", str(rate), "--seconds", str(seconds)]
    if async_commit:
        cmd.append("--async-commit")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def lag_stats(url: str, since: str) -> dict[str, Any]:
    """Per-row lag (ms) logged by the probe for rows changed at or after ``since``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY d),"
            " max(d) FROM (SELECT extract(epoch FROM dst_ts - src_ts)::float8 * 1000 AS d"
            " FROM bench_lag WHERE src_ts >= %s) x",
            (since,),
        ).fetchone()
    assert row is not None
    p50, p99 = row[1] if row[1] else (None, None)
    return {"rows": row[0], "p50_ms": p50, "p99_ms": p99, "max_ms": row[2]}


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


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of every thread started from now on, filled in as each one ends."""
    times: dict[str, float] = {}
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        try:
            original(self)
        finally:
            times[self.name] = time.thread_time()

    threading.Thread.run = run  # type: ignore[method-assign]
    return times


def run_replikit(args: argparse.Namespace) -> dict[str, Any]:
    """One replikit task run; returns its statistics, timings and CPU use per thread."""
    t_spawned = time.time()
    switch = os.environ.get("REPLIKIT_BENCH_SWITCH_INTERVAL")
    if switch:  # an experiment: how often the threads hand the GIL over
        sys.setswitchinterval(float(switch))
    cpu = _thread_cpu()
    dump = _profile_threads(args.profile) if args.profile else None
    import replikit as rk

    settings = rk.TaskSettings(
        task_id=args.task_id,
        batch_apply=args.batch_apply,
        batch_changes=args.batch_changes,
        stop_when_idle=args.stop_when_idle,
        cdc_stop_position=args.stop_position or (f"pg:{args.stop_at}" if args.stop_at else None),
        progress=False,
    )
    mappings = rk.Mappings()
    for table in TABLES:
        mappings = mappings.include(args.schema, table)
    if args.schema != "public":
        mappings = mappings.rename_schema(args.schema, "public")
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
    cpu["main"] = time.thread_time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu["process"] = usage.ru_utime + usage.ru_stime
    if dump is not None:
        dump()
    return {
        "ok": error is None,
        "error": error,
        "t_imported": t_spawned,
        "t_run": t_run,
        "t_end": t_end,
        "cpu_s": cpu,
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
    rate.add_argument("--async-commit", action="store_true", help="synchronous_commit=off")
    rk = sub.add_parser("replikit")
    rk.add_argument("source")
    rk.add_argument("target")
    rk.add_argument("--task-id", required=True)
    rk.add_argument("--batch-apply", action="store_true")
    rk.add_argument("--batch-changes", type=int, default=10_000)
    rk.add_argument("--stop-at", help="stop once a transaction at/after this LSN is applied")
    rk.add_argument("--stop-position", help="stop at this position (any source, e.g. mysql:...)")
    rk.add_argument("--schema", default="public", help="the source schema (MariaDB: database)")
    rk.add_argument("--stop-when-idle", type=float)
    rk.add_argument("--profile", help="cProfile output prefix (one file per thread)")
    args = parser.parse_args(argv)
    if args.cmd == "rate":
        out = run_rate(args.url, args.rate, args.seconds, args.seed, not args.async_commit)
    else:
        out = run_replikit(args)
    print(json.dumps(out, default=str))
    return 0 if out.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Peak RSS while one huge source transaction replicates (#8 item 15).

    PYTHONPATH=src .venv/bin/python benchmarks/big_transaction.py --rows 2000000

For each engine (``--engines pg,mariadb``) one throwaway server holds a source and a target
database (PostgreSQL -> PostgreSQL, MariaDB -> MariaDB):

1. the source table ``big`` (``id integer`` primary key, ``n integer``, ``s text`` of ~20
   bytes) gets ``--rows`` rows, generated server-side;
2. a replikit task (``full-load-and-cdc``, a child process) loads it and stops once CDC is
   idle;
3. one ``UPDATE big SET n = n + mod(id, 7), s = s || ' updated'`` changes every row in ONE
   source transaction;
4. the task runs again in a child process (it resumes CDC from its checkpoint) until that
   transaction is applied (``cdc_stop_position="server_time:<its start>"``). The peak RSS of
   that process is measured twice: by polling ``/proc`` every 50 ms (as full_load.py does)
   and by the child's own ``getrusage`` ``ru_maxrss`` (exact);
5. source and target are compared: row count, ``sum(n)`` and a checksum of every row.

The child uses the default settings apart from ``batch_apply`` (``--batch-apply``, default on):
``transaction_memory_bytes`` and ``queue_memory_bytes`` 64 MiB. The target is < 200 MB peak
RSS. ``--spill-bytes`` overrides ``transaction_memory_bytes`` (e.g. a huge value shows what an
unbounded reader would take). Results go to stdout (a table) and
``benchmarks/results/big_transaction-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
RESULTS_DIR = BENCH_DIR / "results"
TASK = "big_tx"
SRC, DST = "big_src", "big_dst"
DDL = "CREATE TABLE big (id integer PRIMARY KEY, n integer NOT NULL, s text NOT NULL)"
FILL = {
    "pg": "INSERT INTO big SELECT g, 0, 'row ' || g FROM generate_series(1, {n}) g",
    "mariadb": "INSERT INTO big SELECT seq, 0, CONCAT('row ', seq) FROM seq_1_to_{n}",
}
UPDATE = {
    "pg": "UPDATE big SET n = n + mod(id, 7), s = s || ' updated'",
    "mariadb": "UPDATE big SET n = n + mod(id, 7), s = CONCAT(s, ' updated')",
}
CHECK = {
    "pg": "SELECT count(*), sum(n), sum(hashtext(id || ':' || n || ':' || s)::bigint) FROM big",
    "mariadb": "SELECT COUNT(*), SUM(n), SUM(CRC32(CONCAT(id, ':', n, ':', s))) FROM big",
}


# -- the replikit child ---------------------------------------------------------------------
def child(args: argparse.Namespace) -> int:
    """One task run (in its own process, so its RSS is replikit's); JSON on stdout."""
    import replikit as rk

    extra: dict[str, Any] = {}
    if args.spill_bytes is not None:
        extra["transaction_memory_bytes"] = args.spill_bytes
    if args.stop_time:
        extra["cdc_stop_position"] = f"server_time:{args.stop_time}"
    else:
        extra["stop_when_idle"] = 1.0
    settings = rk.TaskSettings(task_id=TASK, batch_apply=args.batch_apply, progress=False, **extra)
    task = rk.Task(args.source, args.target, migration_type="full-load-and-cdc", settings=settings)
    started = time.perf_counter()
    stats = task.run()
    elapsed = time.perf_counter() - started
    cdc = stats.cdc
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "full_load_rows": stats.total_rows,
                "cdc_changes": cdc.changes,
                "cdc_transactions": cdc.transactions,
            }
        )
    )
    return 0


def run_child(
    source: str, target: str, args: argparse.Namespace, stop_time: str | None
) -> dict[str, Any]:
    from full_load import RssSampler

    cmd = [sys.executable, __file__, "replikit", source, target]
    if args.batch_apply:
        cmd.append("--batch-apply")
    if args.spill_bytes is not None:
        cmd += ["--spill-bytes", str(args.spill_bytes)]
    if stop_time:
        cmd += ["--stop-time", stop_time]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = RssSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate(timeout=args.timeout)
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"replikit child failed ({proc.returncode}):\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["polled_peak_rss_bytes"] = sampler.peak
    return result


# -- engines ------------------------------------------------------------------------------
class Engine:
    """One server: connect, run SQL, URLs of the source and target databases."""

    name: str

    def __init__(self, admin: str) -> None:
        self.admin = admin

    def execute(self, db: str, *statements: str) -> list[Any]:
        raise NotImplementedError

    def url(self, db: str) -> str:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def stop_time(self) -> str:
        """A time at or before the commit time of the next source transaction."""
        raise NotImplementedError

    def version(self) -> str:
        return str(self.execute(SRC, "SELECT version()")[0][0])


class Pg(Engine):
    name = "pg"

    def __init__(self, server: Any) -> None:
        super().__init__(server.admin_url)
        self.server = server

    def execute(self, db: str, *statements: str) -> list[Any]:
        import psycopg

        rows: list[Any] = []
        with psycopg.connect(self.server.url(db)) as conn:
            for statement in statements:
                cur = conn.execute(statement)
                rows = cur.fetchall() if cur.description else []
        return rows

    def url(self, db: str) -> str:
        return self.server.url(db)

    def reset(self) -> None:
        import _cdcload

        _cdcload.cleanup(self.server, [SRC, DST])
        self.server.recreate_db(SRC)
        self.server.recreate_db(DST)

    def stop_time(self) -> str:
        return str(self.execute(SRC, "SELECT now()")[0][0].isoformat())


class Mariadb(Engine):
    name = "mariadb"

    def execute(self, db: str, *statements: str) -> list[Any]:
        import pymysql

        rows: list[Any] = []
        conn = pymysql.connect(**self._params(), database=db)
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                    rows = list(cur.fetchall()) if cur.description else []
            conn.commit()
        finally:
            conn.close()
        return rows

    def _params(self) -> dict[str, Any]:
        from urllib.parse import urlsplit

        parts = urlsplit(self.admin)
        return {"host": parts.hostname, "port": parts.port, "user": parts.username or "root"}

    def url(self, db: str) -> str:
        return self.admin.rsplit("/", 1)[0] + "/" + db

    def reset(self) -> None:
        for db in (SRC, DST):
            self.execute("mysql", f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}")

    def stop_time(self) -> str:
        time.sleep(1.1)  # binlog times are whole seconds: later than anything written so far
        seconds = int(self.execute(SRC, "SELECT UNIX_TIMESTAMP()")[0][0])
        return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


@contextmanager
def pg_engine(keep: bool) -> Iterator[Engine]:
    import _cdcload

    server, owned = _cdcload.start_server(keep)
    try:
        yield Pg(server)
    finally:
        if owned and not keep:
            server.stop()


@contextmanager
def mariadb_engine(keep: bool) -> Iterator[Engine]:
    import mysql_cdc_micro

    with mysql_cdc_micro.mariadb() as admin:
        yield Mariadb(admin)


ENGINES: dict[str, Callable[[bool], AbstractContextManager[Engine]]] = {
    "pg": pg_engine,
    "mariadb": mariadb_engine,
}


# -- one engine ---------------------------------------------------------------------------
def bench(engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    n = args.rows
    engine.reset()
    t0 = time.perf_counter()
    engine.execute(SRC, DDL, FILL[engine.name].format(n=n))
    generated = time.perf_counter() - t0
    print(f"[{engine.name}] {n:,} source rows in {generated:.1f} s; full load ...", flush=True)
    load = run_child(engine.url(SRC), engine.url(DST), args, None)
    stop = engine.stop_time()
    t0 = time.perf_counter()
    engine.execute(SRC, UPDATE[engine.name])
    updated = time.perf_counter() - t0
    print(f"[{engine.name}] one {n:,}-row UPDATE in {updated:.1f} s; replicating ...", flush=True)
    cdc = run_child(engine.url(SRC), engine.url(DST), args, stop)
    source = [str(v) for v in engine.execute(SRC, CHECK[engine.name])[0]]
    target = [str(v) for v in engine.execute(DST, CHECK[engine.name])[0]]
    return {
        "engine": engine.name,
        "version": engine.version(),
        "rows": n,
        "update_seconds": updated,
        "full_load": load,
        "cdc": cdc,
        "source_check": source,
        "target_check": target,
        "verified": source == target and cdc["cdc_changes"] == n,
    }


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--engines", default="pg,mariadb")
    parser.add_argument("--batch-apply", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--spill-bytes", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL server")
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "replikit":
        sub = argparse.ArgumentParser()
        sub.add_argument("source")
        sub.add_argument("target")
        sub.add_argument("--batch-apply", action="store_true")
        sub.add_argument("--spill-bytes", type=int, default=None)
        sub.add_argument("--stop-time", default=None)
        return child(sub.parse_args(argv[1:]))
    args = parser.parse_args(argv)
    results = []
    for name in args.engines.split(","):
        with ENGINES[name](args.keep) as engine:
            results.append(bench(engine, args))
    print()
    print(f"{'engine':8} {'rows':>10} {'CDC s':>7} {'changes/s':>10}"
          f" {'peak RSS MB (poll / maxrss)':>28} {'full load MB':>12}  verified")  # fmt: skip
    failed = False
    for r in results:
        cdc = r["cdc"]
        rate = cdc["cdc_changes"] / cdc["seconds"] if cdc["seconds"] else 0
        peaks = f"{_mb(cdc['polled_peak_rss_bytes'])} / {_mb(cdc['maxrss_bytes'])}"
        load = _mb(r["full_load"]["maxrss_bytes"])
        print(f"{r['engine']:8} {r['rows']:>10,} {cdc['seconds']:>7.1f} {rate:>10,.0f} {peaks:>28}"
              f" {load:>12}  {r['verified']}")  # fmt: skip
        failed = failed or not r["verified"]
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"big_transaction-{stamp}.json"
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    out.write_text(
        json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2)
    )
    print(f"\nwritten to {out}")
    if failed:
        print("VERIFICATION FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

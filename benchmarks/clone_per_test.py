"""Per-test fresh databases: replikit's clone copy vs loading a SQL dump through psql.

    python benchmarks/clone_per_test.py --reps 30

1. Starts a throwaway PostgreSQL (replikit.testing.servers; REPLIKIT_TEST_PG_URL names an
   existing server instead) and clones Chinook (the bundled SQLite sample, 15,607 rows) into a
   template database there, as the replikit_clone fixture does once per session.
2. Per "test", side by side in round-robin order:
   * replikit: ``CREATE DATABASE ... TEMPLATE`` from the template, then drop it (what a
     ``replikit_clone(to="postgresql")`` test pays);
   * psql: what pytest-postgresql does per test: create an empty database, load the same data
     as a SQL dump (``pg_dump`` of the template, COPY format) through ``psql``, drop it.
   Both are checked: the copy holds every Chinook row.
3. The Sakila subset (10 customers, their rentals and payments, every referenced parent) from
   PostgreSQL into SQLite, from the source (cache refreshed) and from the cache. With
   ``--mariadb`` also from a throwaway MariaDB.

Prints medians, the ratio (psql / replikit: >1 is faster) and the machine load (``uptime``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

import psycopg  # noqa: E402

from datasets import script  # noqa: E402
from replikit.demo import sample_database  # noqa: E402
from replikit.testing._copies import PgTarget, SqliteTarget  # noqa: E402
from replikit.testing.clone import Cloner, CloneRequest  # noqa: E402
from replikit.testing.servers import mysql_server, pg_bindir, postgresql_server  # noqa: E402
from replikit.testing.subset import Subset  # noqa: E402

CHINOOK_ROWS = 15607


def _pg_tool(name: str) -> str:
    """The client of the server's own version (pg_dump refuses a newer server)."""
    bindir = pg_bindir()
    if bindir is not None and (bindir / name).exists():
        return str(bindir / name)
    return shutil.which(name) or name


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname = 'public'"
        ).fetchall()
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for (t,) in tables)


def _timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def per_test(server: object, reps: int, work: Path) -> None:
    chinook = sample_database(work / "chinook.db")
    cloner = Cloner(work / "cache", work / "files", refresh=True)
    target = PgTarget(server)  # type: ignore[arg-type]
    template, _ = cloner.template(CloneRequest(f"sqlite:///{chinook}"), target)
    dump = work / "chinook.sql"
    subprocess.run(
        [_pg_tool("pg_dump"), "--no-owner", "-f", str(dump), template],
        check=True,
    )
    psql = _pg_tool("psql")

    def replikit_copy() -> None:
        url = target.copy(template)
        assert _rows(url) == CHINOOK_ROWS if checking else True
        target.drop(url)

    def psql_load() -> None:
        name = f"rkb_{uuid.uuid4().hex[:10]}"
        url = server.create_database(name)  # type: ignore[attr-defined]
        subprocess.run(
            [psql, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), "-d", url],
            check=True,
            capture_output=True,
        )
        assert _rows(url) == CHINOOK_ROWS if checking else True
        server.drop_database(name)  # type: ignore[attr-defined]

    request = CloneRequest(f"sqlite:///{chinook}")

    def fixture_copy() -> None:
        # what a test waits for in replikit_clone(to="postgresql"): the copy (a spare made
        # in the background while the previous test ran) and the teardown that drops it;
        # with an empty test body the spare only overlaps the previous drop
        made: list = []
        clone = cloner.clone(request, target, "test", made)
        assert _rows(clone.url) == CHINOOK_ROWS if checking else True
        clone.endpoint.close()
        target.drop(clone.url)

    checking = True
    replikit_copy()
    psql_load()  # each verified once, then timed without the check
    fixture_copy()
    checking = False
    order = [
        ("replikit TEMPLATE copy", replikit_copy),
        ("replikit_clone fixture", fixture_copy),
        ("psql SQL dump", psql_load),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in order}
    for i in range(reps):
        k = i % len(order)
        for name, fn in order[k:] + order[:k]:
            times[name].append(_timed(fn))
    # worst case: tests with empty bodies back to back (the spare has only the drop's time)
    times["replikit_clone back to back"] = [_timed(fixture_copy) for _ in range(reps)]
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nPer-test fresh copy of Chinook ({CHINOOK_ROWS} rows) into PostgreSQL, {reps} reps")
    for name, m in med.items():
        print(f"  {name:28s} median {m * 1000:8.1f} ms   (min {min(times[name]) * 1000:.1f})")
    for name in ("replikit TEMPLATE copy", "replikit_clone fixture", "replikit_clone back to back"):
        print(f"  ratio psql / {name}: {med['psql SQL dump'] / med[name]:.1f}x")
    cloner.close()


def _sakila_pg(server: object) -> str:
    name = "rkb_sakila"
    server.drop_database(name)  # type: ignore[attr-defined]
    url: str = server.create_database(name)  # type: ignore[attr-defined]
    for part in ("sakila-postgres-schema.sql", "sakila-postgres-data-copy.sql"):
        subprocess.run(
            [_pg_tool("psql"), "-q", "-d", url],
            input=script(f"sakila/{part}"),
            check=True,
            capture_output=True,
        )
    return url


def _sakila_mariadb(server: object) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(server.admin_url)  # type: ignore[attr-defined]
    client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    for part in ("sakila-mysql-schema.sql", "sakila-mysql-data.sql"):
        subprocess.run(
            [client, "-h", u.host or "127.0.0.1", "-P", str(u.port), "-u", u.username or "root"],
            input=script(f"sakila/{part}"),
            check=True,
            capture_output=True,
        )
    return str(server.url("sakila"))  # type: ignore[attr-defined]


def subset(source: str, label: str, work: Path) -> None:
    request = CloneRequest(
        source,
        subset=Subset({"customer": "customer_id <= 10"}, ("rental", "payment")),
    )
    for refresh in (True, False):
        d = work / uuid.uuid4().hex[:8]
        cloner = Cloner(work / "cache", d, refresh=refresh)
        seconds = _timed(lambda c=cloner, d=d: c.template(request, SqliteTarget(d)) and None)
        _, rows = cloner.template(request, SqliteTarget(d))
        what = "from the source" if refresh else "from the cache "
        print(
            f"  {label:10s} -> SQLite, {what}: {seconds:.2f} s "
            f"({sum(rows.values())} rows in {sum(1 for n in rows.values() if n)} tables)"
        )
        cloner.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--mariadb", action="store_true", help="also the Sakila subset from MariaDB")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rk-bench-clone-"))
    try:
        with postgresql_server("bench") as pg:
            print("load before:", _load())
            per_test(pg, args.reps, work)
            print("\nSakila subset: 10 customers, their rentals and payments, every parent")
            subset(_sakila_pg(pg), "PostgreSQL", work)
            if args.mariadb:
                with mysql_server("bench") as my:
                    subset(_sakila_mariadb(my), "MariaDB", work)
            print("\nload after:", _load())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

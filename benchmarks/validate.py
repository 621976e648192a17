"""Validation benchmark: ``replikit validate`` vs reladiff, side by side in one run (#10).

    .venv/bin/python benchmarks/validate.py --rows 1000000 --repeat 3

Scenarios, each for PostgreSQL -> PostgreSQL and MariaDB -> PostgreSQL on one table of
``--rows`` rows (bigint key, integers, numeric(12,2), varchar, text with NULLs and non-ASCII,
timestamp(6), boolean):

* ``equal``: identical tables. Both tools must report no difference.
* ``30 changed``: in the PostgreSQL target, 10 rows updated, 10 deleted and 10 inserted at
  random keys (seeded). Both tools must report exactly those 30 keys.

Each tool runs as a subprocess (round-robin, the order rotated per repetition); wall time and
the peak RSS of its process tree (polled every 50 ms) are recorded; the output is verified.
The baseline is a plain ``count(*)`` of both sides (run one after the other). reladiff runs
from its own virtual environment (``benchmarks/.data/peers-venv``, see requirements.txt), so
its dependencies never touch the project's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import mysqlserver  # noqa: E402
import pgserver  # noqa: E402
from full_load import RssSampler  # noqa: E402

ROOT = BENCH_DIR.parent
PEERS = BENCH_DIR / ".data" / "peers-venv"
TABLE = "vbench"
COLUMNS = ("id", "customer_id", "quantity", "amount", "status", "sku", "note", "created_at",
           "is_gift")  # fmt: skip


def _h(seed: int) -> str:
    return f"(hashint8extended(g, {seed}) & 9223372036854775807)"


DDL = f"""
drop table if exists {TABLE};
create table {TABLE} (
    id bigint primary key, customer_id bigint not null, quantity integer not null,
    amount numeric(12,2) not null, status varchar(16) not null, sku varchar(64) not null,
    note text, created_at timestamp(6) not null, is_gift boolean not null
)"""
FILL = f"""
insert into {TABLE}
select g, 1 + {_h(11)} % 100000, (1 + {_h(12)} % 100)::int,
    (({_h(13)} % 10000000000) / 100.0)::numeric(12,2),
    (array['pending','paid','shipped','delivered','cancelled','refunded'])[1 + {_h(15)} % 6],
    'SKU-' || lpad(({_h(16)} % 1000000)::text, 6, '0') || '-' || substr(md5(g::text), 1, 12),
    case when {_h(17)} % 4 = 0 then null
         else 'Commande n°' || g || ' — livrée à Zürich 🚚 ' || substr(md5((g * 7)::text), 1, 20)
    end,
    timestamp '2020-01-01' + ({_h(20)} % 157680000000000) * interval '1 microsecond',
    {_h(23)} % 10 = 0
from generate_series(1, %s::bigint) as g
"""


@dataclass
class Run:
    tool: str
    pair: str
    scenario: str
    seconds: float
    peak_rss: int
    ok: bool
    note: str = ""


def _pg_fill(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute(FILL.replace("%s", str(int(rows))))
        conn.execute(f"analyze {TABLE}")


def _mutate(url: str, rows: int, seed: int) -> set[int]:
    """10 updates, 10 deletes, 10 inserts at random keys; the changed keys."""
    rng = random.Random(seed)
    keys = rng.sample(range(1, rows + 1), 20)
    updated, deleted = keys[:10], keys[10:]
    inserted = [rows + 1000 + i for i in rng.sample(range(1_000_000), 10)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"update {TABLE} set status = 'tampered' where id = any(%s)", [updated])
        conn.execute(f"delete from {TABLE} where id = any(%s)", [deleted])
        for k in inserted:
            conn.execute(
                f"insert into {TABLE} values (%s, 1, 1, 1.00, 'new', 'SKU-new', null, "
                "'2024-01-01', false)",
                [k],
            )
    return {*updated, *deleted, *inserted}


def _restore(src_url: str, dst_url: str, keys: set[int]) -> None:
    """Put the changed keys of the PostgreSQL target back as the source has them."""
    with psycopg.connect(src_url) as s, psycopg.connect(dst_url, autocommit=True) as d:
        d.execute(f"delete from {TABLE} where id = any(%s)", [sorted(keys)])
        rows = s.execute(f"select * from {TABLE} where id = any(%s)", [sorted(keys)]).fetchall()
        with d.cursor() as cur:
            cur.executemany(
                f"insert into {TABLE} values ({', '.join(['%s'] * len(COLUMNS))})", rows
            )


def _measure(
    cmd: list[str], env: dict[str, str], timeout: float | None = None
) -> tuple[float, int, str, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    sampler = RssSampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        sampler.stop()
        return time.perf_counter() - t0, sampler.peak, "", -1
    seconds = time.perf_counter() - t0
    sampler.stop()
    if proc.returncode not in (0, 1):
        sys.stderr.write(err.decode()[-2000:])
    return seconds, sampler.peak, out.decode(), proc.returncode


def _replikit(src: str, dst: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "replikit", "validate", src, dst, "--json", "-q", *extra]


def _reladiff(src: str, src_table: str, dst: str) -> list[str]:
    exe = PEERS / "bin" / "reladiff"
    return [
        str(exe),
        src,
        src_table,
        dst,
        TABLE,
        "-k",
        "id",
        *(arg for c in COLUMNS[1:] for arg in ("-c", c)),
    ]


def _replikit_keys(out: str) -> set[int]:
    report = json.loads(out)
    (t,) = report["tables"]
    keys = {k["id"] for k in t["missing_in_target"]} | {k["id"] for k in t["missing_in_source"]}
    keys |= {d["key"]["id"] for d in t["different"]}
    return keys


def _reladiff_keys(out: str) -> set[int]:
    """Keys of reladiff's diff lines (``- 973, delivered, ...`` / ``+ 973, tampered, ...``)."""
    keys = set()
    for line in out.splitlines():
        if line[:2] in ("- ", "+ "):
            keys.add(int(line[2:].split(",", 1)[0].strip().strip("('\"")))
    return keys


def _counts(urls: list[tuple[str, str]]) -> float:
    t0 = time.perf_counter()
    for kind, url in urls:
        if kind == "pg":
            with psycopg.connect(url) as c:
                c.execute(f"select count(*) from {TABLE}").fetchone()
        else:
            import pymysql
            from mysqlserver import BENCH_USER

            conn = pymysql.connect(**url_kwargs(url, BENCH_USER))
            with conn.cursor() as cur:
                cur.execute(f"select count(*) from {TABLE}")
                cur.fetchone()
            conn.close()
    return time.perf_counter() - t0


def url_kwargs(url: str, user: tuple[str, str]) -> dict[str, Any]:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return {"host": u.hostname, "port": u.port or 3306, "user": u.username or user[0],
            "password": u.password or user[1], "database": u.path.lstrip("/")}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the servers running")
    parser.add_argument(
        "--pairs", choices=("all", "pg", "mariadb"), default="all", help="which source engines"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="stop a tool's run after this many seconds"
    )
    args = parser.parse_args(argv)
    if not (PEERS / "bin" / "reladiff").exists():
        hint = f"python3 -m venv {PEERS} && {PEERS}/bin/pip install -r {BENCH_DIR}/requirements.txt"
        print(f"reladiff is not installed in {PEERS}: {hint}", file=sys.stderr)
        return 2
    pg = pgserver.start(keep=args.keep)
    my = mysqlserver.start(keep=args.keep)
    src_pg, dst_pg = pg.url(pgserver.SRC_DB), pg.url(pgserver.DST_DB)
    src_my = my.url(mysqlserver.SRC_DB)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    print(f"generating {args.rows:,} rows ...", flush=True)
    _pg_fill(src_pg, args.rows)
    _pg_fill(dst_pg, args.rows)
    sys.path.insert(0, str(ROOT / "src"))
    import replikit as rk

    if args.pairs in ("all", "mariadb"):
        rk.copy(src_pg, src_my, include=[f"public.{TABLE}"], progress=False)
    pairs = {
        "PostgreSQL -> PostgreSQL": (src_pg, f"public.{TABLE}", [f"--include=public.{TABLE}"],
                                     [("pg", src_pg), ("pg", dst_pg)]),
        "MariaDB -> PostgreSQL": (src_my, TABLE, [f"--include={mysqlserver.SRC_DB}.{TABLE}",
                                  f"--rename-schema={mysqlserver.SRC_DB}=public"],
                                  [("my", src_my), ("pg", dst_pg)]),
    }  # fmt: skip
    if args.pairs != "all":
        wanted = "PostgreSQL ->" if args.pairs == "pg" else "MariaDB ->"
        pairs = {k: v for k, v in pairs.items() if k.startswith(wanted)}
    runs: list[Run] = []
    baselines: dict[str, float] = {}
    for scenario in ("equal", "30 changed"):
        expected: set[int] = set()
        if scenario != "equal":
            expected = _mutate(dst_pg, args.rows, seed=10)
        for pair, (src, src_table, extra, count_urls) in pairs.items():
            baselines[pair] = statistics.median(_counts(count_urls) for _ in range(3))
            tools = ["replikit", "reladiff"]
            for rep in range(args.repeat):
                for tool in tools[rep % 2 :] + tools[: rep % 2]:
                    cmd = (
                        _replikit(src, dst_pg, extra)
                        if tool == "replikit"
                        else _reladiff(src, src_table, dst_pg)
                    )
                    seconds, rss, out, status = _measure(cmd, env, args.timeout)
                    if status == -1:
                        ok, note = False, f"stopped after {args.timeout:.0f} s"
                    else:
                        keys = _replikit_keys(out) if tool == "replikit" else _reladiff_keys(out)
                        ok = keys == expected
                        note = "" if ok else f"got {len(keys)} keys, expected {len(expected)}"
                    runs.append(Run(tool, pair, scenario, seconds, rss, ok, note))
                    print(f"{scenario:>10} | {pair:<26} | {tool:<8} | {seconds:7.2f} s | "
                          f"{rss / 2**20:6.0f} MB | {'verified' if ok else 'WRONG ' + note}",
                          flush=True)  # fmt: skip
        if scenario != "equal":
            _restore(src_pg, dst_pg, expected)
    _summary(runs, baselines, args.rows)
    if not args.keep:
        pg.stop()
        my.stop()
    return 0 if all(r.ok for r in runs) else 1


def _summary(runs: list[Run], baselines: dict[str, float], rows: int) -> None:
    load = os.getloadavg()
    print(f"\n{rows:,} rows; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print("| scenario | pair | tool | median s | rows/s | vs count(*) | peak RSS MB | "
          "reladiff / replikit | verified |")  # fmt: skip
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    groups: dict[tuple[str, str], dict[str, list[Run]]] = {}
    for r in runs:
        groups.setdefault((r.scenario, r.pair), {}).setdefault(r.tool, []).append(r)
    for (scenario, pair), tools in groups.items():
        med = {t: statistics.median(x.seconds for x in rs) for t, rs in tools.items()}
        for tool, rs in tools.items():
            s = med[tool]
            ratio = med["reladiff"] / med["replikit"] if tool == "replikit" else None
            print(f"| {scenario} | {pair} | {tool} | {s:.2f} | {rows / s:,.0f} | "
                  f"{s / baselines[pair]:.1f}x | {max(x.peak_rss for x in rs) / 2**20:.0f} | "
                  f"{'' if ratio is None else f'{ratio:.2f}x'} | "
                  f"{'yes' if all(x.ok for x in rs) else 'NO'} |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

"""How long DuckDB alone takes to store MariaDB's ``orders`` from the CSV lines replikit reads.

    .venv/bin/python benchmarks/duckdb_store_floor.py --rows 1000000 [--keep]

The floor under the MariaDB -> DuckDB full load (benchmarks/README.md): the benchmark's
``orders`` (``generate_mysql.py`` on ``mysqlserver.py``'s server) are read once through
replikit's own CSV-line path into a file, then loaded into a new DuckDB file by the very
``INSERT ... SELECT CAST(...) FROM read_csv(...)`` replikit runs, with nothing else running:
from the file and from a FIFO fed by ``cat``, at several memory limits, and on two threads
over the file cut in two. Each variant runs in its own process (peak RSS per variant); the
times are the INSERT and its COMMIT.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import generate_mysql  # noqa: E402
import mysqlserver  # noqa: E402

#: (name, memory limit, threads, source): the variants, each in a fresh process
VARIANTS = [
    ("file, 32MB (the endpoint's default)", "32MB", 1, "file"),
    ("file, 48MB", "48MB", 1, "file"),
    ("file, 64MB", "64MB", 1, "file"),
    ("file, 1GB", "1GB", 1, "file"),
    ("FIFO fed by cat, 32MB", "32MB", 1, "fifo"),
    ("two halves, 2 threads, 64MB, insertion order free", "64MB", 2, "halves"),
]


def dump(url: str, work: Path) -> Path:
    """``orders`` as replikit's CSV lines in ``work/orders.csv``, with ``orders.json`` (the
    column types and the casting SELECT list DuckDB's writer uses)."""
    import replikit as rk
    from replikit.endpoints.duckdb import _casts
    from replikit.endpoints.duckdb import target as duck_target
    from replikit.endpoints.duckdb._dialect import DIALECT

    out = work / "orders.csv"

    def load_text(self, plan, columns, chunks, *, whole):  # type: ignore[no-untyped-def]
        by_name = {cp.name: cp for cp in plan.columns}
        ordered = [by_name[c] for c in columns]
        meta = {
            "types": [_casts.csv_type(cp.source.type) for cp in ordered],
            "select": _casts.csv_select(ordered, "r"),
            "names": [DIALECT.quote(c) for c in columns],
        }
        (work / "orders.json").write_text(json.dumps(meta))
        rows = 0
        with out.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                rows += chunk.count(b"\n")
        return rows

    duck_target.DuckdbWriter.load_text = load_text  # type: ignore[method-assign]
    rk.copy(f"{url}?arrow=csv", f"duckdb:///{work / 'unused.duckdb'}",
            include=[f"{mysqlserver.SRC_DB}.orders"], progress=False)  # fmt: skip
    return out


def measure(work: Path, limit: str, threads: int, source: str) -> dict[str, float]:
    """One variant in this process: DuckDB's INSERT + COMMIT of the dumped lines."""
    import duckdb

    from replikit.endpoints.duckdb import _csvpipe

    meta = json.loads((work / "orders.json").read_text())
    path = work / "floor.duckdb"
    for p in (path, Path(f"{path}.wal")):
        p.unlink(missing_ok=True)
    con = duckdb.connect(str(path), config={"threads": threads, "memory_limit": limit})
    columns = ", ".join(f"{n} {t}" for n, t in zip(meta["names"], meta["types"], strict=True))
    con.execute(f"CREATE TABLE orders ({columns})")
    csv = work / "orders.csv"
    feeder = None
    if source == "fifo":
        fifo = Path(tempfile.mkdtemp()) / "orders.csv"
        os.mkfifo(fifo)
        feeder = subprocess.Popen(["sh", "-c", f"cat '{csv}' > '{fifo}'"])
        reader = _csvpipe.read_csv(str(fifo), meta["types"])
    elif source == "halves":
        halves = _halves(csv)
        listed = "[" + ", ".join(f"'{h}'" for h in halves) + "]"
        reader = _csvpipe.read_csv(str(csv), meta["types"]).replace(f"'{csv}'", listed, 1)
        con.execute("SET preserve_insertion_order = false")
    else:
        reader = _csvpipe.read_csv(str(csv), meta["types"])
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    con.execute("BEGIN")
    con.execute(f"INSERT INTO orders SELECT {meta['select']} FROM {reader} AS r")
    con.execute("COMMIT")
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    con.close()
    if feeder is not None:
        feeder.wait()
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "rss_mb": after.ru_maxrss / 1024,
            "file_mb": path.stat().st_size / 2**20}  # fmt: skip


def _halves(csv: Path) -> list[Path]:
    """``csv`` cut in two at a line start near its middle (a line may hold newlines inside
    quotes: the cut is before an ``id`` that follows a newline, the lines' first field)."""
    data = csv.read_bytes()
    middle = data.index(b"\n", len(data) // 2)
    while not data[middle + 1 : middle + 2].isdigit():
        middle = data.index(b"\n", middle + 1)
    parts = [csv.with_name("half0.csv"), csv.with_name("half1.csv")]
    parts[0].write_bytes(data[: middle + 1])
    parts[1].write_bytes(data[middle + 1 :])
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="leave the MariaDB server running")
    parser.add_argument("--variant", type=int, help=argparse.SUPPRESS)  # a child's one run
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant is not None:
        _, limit, threads, source = VARIANTS[args.variant]
        print(json.dumps(measure(Path(args.work), limit, threads, source)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="replikit-floor-"))
    with mysqlserver.running(keep=args.keep) as server:
        generate_mysql.generate(server.src_url, args.rows)
        csv = dump(server.src_url, work)
    size = csv.stat().st_size / 2**20
    print(f"orders as CSV lines: {size:.0f} MB; load {os.getloadavg()[0]:.2f}")
    for i, (name, *_) in enumerate(VARIANTS):
        cmd = [sys.executable, __file__, "--variant", str(i), "--work", str(work)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"  {name:<52} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout)
        print(f"  {name:<52} {r['wall_s']:5.2f} s  cpu {r['cpu_s']:5.2f} s  "
              f"rss {r['rss_mb']:4.0f} MB  file {r['file_mb']:4.0f} MB")  # fmt: skip
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

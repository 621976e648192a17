"""PostgreSQL or MariaDB -> DuckDB full-load benchmark: replikit vs dlt, side by side in one run.

    .venv/bin/python benchmarks/full_load_duckdb.py --rows 1000000 [--setup-peers]
    .venv/bin/python benchmarks/full_load_duckdb.py --source mariadb --rows 1000000

The source is ``benchmarks/generate.py``'s data set (``customers`` + ``orders``) on the
throwaway server of ``benchmarks/pgserver.py``, as in ``full_load.py``; with ``--source
mariadb``, ``generate_mysql.py``'s twin data set on ``mysqlserver.py``'s server (verified with
``verify_mysql``'s canonical values, computed on the DuckDB rows in Python). Each repetition runs
every tool once, round-robin with the start rotating; before each run the DuckDB file is
deleted and the disk synced (``os.sync``: no run pays for the write-back of another's file).
Recorded per run: wall clock from spawn to exit and the peak RSS of the tool's process tree
(``full_load.RssSampler``, /proc every 50 ms); each target is verified against the source:
row counts plus per-column and per-row digests of canonical values
(``full_load.canonical_digests``), read from the DuckDB file. dlt runs in its own virtualenv
(``--setup-peers`` creates it from ``peers/requirements-duckdb.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import full_load  # noqa: E402
import generate  # noqa: E402
import generate_mysql  # noqa: E402
import mysqlserver  # noqa: E402
import pgserver  # noqa: E402
import verify_mysql  # noqa: E402

PEERS_VENV = BENCH_DIR / ".data" / "venv-duckdb-peers"
PEERS_REQS = BENCH_DIR / "peers" / "requirements-duckdb.txt"
TABLES = full_load.TABLES


@dataclass
class Tool:
    key: str
    label: str
    command: Callable[[Source, Path, Path], list[str]]
    missing: Callable[[], str | None] = lambda: None


@dataclass
class Source:
    """The source database of one run: its URL and the tables' ``--include`` schema."""

    kind: str  # "postgresql" | "mariadb"
    url: str
    schema: str


@dataclass
class Run:
    tool: str
    rep: int
    wall_s: float = 0.0
    peak_rss_bytes: int = 0
    verified: bool = False
    detail: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def _peer_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def _dlt_missing() -> str | None:
    if not _peer_python().exists():
        return f"no peers virtualenv at {PEERS_VENV} (run with --setup-peers)"
    proc = subprocess.run([str(_peer_python()), "-c", "import dlt, duckdb"], capture_output=True)
    return None if proc.returncode == 0 else f"dlt not importable in {PEERS_VENV}"


def _replikit(
    source: Source,
    target: Path,
    work: Path,
    options: str = "",
    src: str | None = None,
    source_options: str = "",
) -> list[str]:
    exe = full_load._replikit_exe() or "replikit"
    includes = [a for t in TABLES for a in ("--include", f"{source.schema}.{t}")]
    url = source.url
    if source_options:
        url += ("&" if "?" in url else "?") + source_options
    command = [exe, "copy", url, f"duckdb:///{target}{options}", *includes, "--no-progress"]
    # another checkout's code (--baseline): env execs replikit in the same process
    return ["env", f"PYTHONPATH={src}", *command] if src else command


def _baseline(src: str) -> Tool:
    """``replikit`` run on the code of another checkout's ``src`` folder (e.g. main's, from
    ``git archive main | tar -x -C DIR``), beside this one in the same rotation."""
    return Tool("replikit-baseline", f"replikit ({src})", partial(_replikit, src=src))


def _dlt(backend: str) -> Callable[[Source, Path, Path], list[str]]:
    def build(source: Source, target: Path, work: Path) -> list[str]:
        tables = [a for t in TABLES for a in ("-t", t)]
        script = str(BENCH_DIR / "peers" / "dlt_duckdb.py")
        pipelines = str(work / f"dlt-{backend}-{time.monotonic_ns()}")
        return [
            str(_peer_python()),
            script,
            source.url,
            str(target),
            *tables,
            "--backend",
            backend,
            "--pipelines-dir",
            pipelines,
        ]

    return build


TOOLS = {
    t.key: t
    for t in (
        Tool("replikit-duckdb", "replikit", _replikit),
        # the default builds the keys only; this one every index too (the source's 6)
        Tool(
            "replikit-duckdb-all-indexes",
            "replikit (indexes=all)",
            partial(_replikit, options="?indexes=all"),
        ),
        # MariaDB only: the server's CSV lines where connectorx (replikit[mysql-arrow]) would
        # be taken (?arrow=csv)
        Tool(
            "replikit-duckdb-csv",
            "replikit (arrow=csv)",
            partial(_replikit, source_options="arrow=csv"),
        ),
        Tool("dlt-pyarrow", "dlt (pyarrow)", _dlt("pyarrow"), _dlt_missing),
        Tool("dlt-connectorx", "dlt (connectorx)", _dlt("connectorx"), _dlt_missing),
    )
}


def verify(
    target: Path, expected: dict[str, dict[str, str]], columns: dict[str, Any]
) -> dict[str, str]:
    import duckdb

    out = {}
    conn = duckdb.connect(str(target), read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        for table in TABLES:
            cols = columns[table]
            names = ", ".join(full_load._qi(c.name) for c in cols)
            rows = conn.execute(
                f"SELECT {names} FROM public.{full_load._qi(table)} ORDER BY 1"
            ).fetchall()
            _, out[table] = full_load._compare(
                expected[table], full_load.canonical_digests(rows, cols)
            )
    finally:
        conn.close()
    return out


def verify_mariadb(target: Path, expected: dict[str, dict[str, str]]) -> dict[str, str]:
    """The DuckDB tables against ``verify_mysql``'s canonical digests of the source (the
    table found in whichever schema the tool wrote it: replikit's, dlt's dataset)."""
    import duckdb

    out = {}
    conn = duckdb.connect(str(target), read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        for table in TABLES:
            found = conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = ? "
                "ORDER BY table_schema",
                [table],
            ).fetchall()
            if not found:
                out[table] = "missing"
                continue
            cols = generate_mysql.COLUMNS[table]
            names = ", ".join(full_load._qi(c) for c, _ in cols)
            where = f"{full_load._qi(found[0][0])}.{full_load._qi(table)}"
            cursor = conn.execute(f"SELECT {names} FROM {where}")
            got = verify_mysql.digest_rows(iter(partial(cursor.fetchmany, 20_000), []), cols)
            ok, detail = verify_mysql.compare(expected[table], got)
            out[table] = "ok" if ok else detail
    finally:
        conn.close()
    return out


def run_once(
    tool: Tool,
    source: Source,
    check: Callable[[Path], dict[str, str]],
    work: Path,
    rep: int,
    before: Callable[[], None],
) -> Run:
    target = work / "bench.duckdb"
    for suffix in ("", ".wal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    # the previous run's file may still be being written back: no run pays for another's
    os.sync()
    before()
    run = Run(tool.key, rep)
    err = work / f"{tool.key}-{rep}.err"
    with err.open("wb") as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            tool.command(source, target, work),
            stdout=subprocess.DEVNULL,
            stderr=errf,
            stdin=subprocess.DEVNULL,
        )
        sampler = full_load.RssSampler(proc.pid)
        sampler.start()
        code = proc.wait()
        run.wall_s = time.perf_counter() - t0
        sampler.stop()
    run.peak_rss_bytes = sampler.peak
    if code != 0:
        run.error = f"exit {code}: {err.read_text(errors='replace')[-1500:]}"
        return run
    run.detail = check(target)
    run.verified = all(v == "ok" for v in run.detail.values())
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PostgreSQL/MariaDB -> DuckDB full-load benchmark")
    parser.add_argument("--source", choices=["postgresql", "mariadb"], default="postgresql")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--setup-peers", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also run replikit with PYTHONPATH=SRC (another checkout's src folder)",
    )
    args = parser.parse_args(argv)
    if args.setup_peers and not _peer_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run(
            [str(_peer_python()), "-m", "pip", "install", "-q", "-r", str(PEERS_REQS)], check=True
        )
    tools = [TOOLS[k.strip()] for k in args.tools.split(",") if k.strip()]
    if args.source != "mariadb":  # a MySQL URL option
        tools = [t for t in tools if t.key != "replikit-duckdb-csv"]
    if args.baseline:
        tools.append(_baseline(args.baseline))
    skipped = {t.key: why for t in tools if (why := t.missing())}
    for key, why in skipped.items():
        print(f"skipping {key}: {why}")
    tools = [t for t in tools if t.key not in skipped]

    if args.source == "mariadb":
        return _with_mariadb(args, tools)
    server = pgserver.start(keep=args.keep)
    work = Path(tempfile.mkdtemp(prefix="replikit-bench-duckdb-"))
    try:
        generate.generate(server.src_url, args.rows, None)
        verifier = full_load.Verifier(server)
        columns = verifier.columns
        expected = {t: verifier._canon_expected(t) for t in TABLES}
        total = sum(verifier.source_rows().values())
        source = Source("postgresql", server.src_url, "public")

        def check(target: Path) -> dict[str, str]:
            return verify(target, expected, columns)

        return _suite(args, tools, source, check, work, total, server.checkpoint)
    finally:
        if not args.keep:
            server.stop()


def _with_mariadb(args: argparse.Namespace, tools: list[Tool]) -> int:
    server = mysqlserver.start(keep=args.keep)
    work = Path(tempfile.mkdtemp(prefix="replikit-bench-duckdb-"))
    try:
        generate_mysql.generate(server.src_url, args.rows)
        marker = generate_mysql.marker(args.rows, generate_mysql.default_customers(args.rows))
        expected = {
            t: verify_mysql.cached_source_digest(
                server.src_url, marker, t, generate_mysql.COLUMNS[t]
            )
            for t in TABLES
        }
        total = sum(int(expected[t]["__rows__"]) for t in TABLES)
        source = Source("mariadb", server.src_url, mysqlserver.SRC_DB)

        def check(target: Path) -> dict[str, str]:
            return verify_mariadb(target, expected)

        return _suite(args, tools, source, check, work, total, lambda: None)
    finally:
        if not args.keep:
            server.stop()


def _suite(
    args: argparse.Namespace,
    tools: list[Tool],
    source: Source,
    check: Callable[[Path], dict[str, str]],
    work: Path,
    total: int,
    before: Callable[[], None],
) -> int:
    runs: list[Run] = []
    for rep in range(args.reps):
        shift = rep % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            r = run_once(tool, source, check, work, rep + 1, before)
            state = "ok" if r.verified else f"FAILED {r.error or r.detail}"
            print(
                f"  rep {r.rep} {tool.label:<30} {r.wall_s:7.2f}s "
                f"rss {r.peak_rss_bytes / 2**20:5.0f} MB  {state}",
                flush=True,
            )
            runs.append(r)
    name = "PostgreSQL" if source.kind == "postgresql" else "MariaDB"
    print(f"\n{name} -> DuckDB, {total:,} rows, {args.reps} reps (median wall, max RSS)")
    summary = []
    for tool in tools:
        mine = [r for r in runs if r.tool == tool.key and not r.error]
        med = statistics.median(r.wall_s for r in mine) if mine else None
        rss = max((r.peak_rss_bytes for r in mine), default=0) / 2**20
        ok = bool(mine) and all(r.verified for r in mine)
        summary.append({"tool": tool.key, "median_wall_s": med, "peak_rss_mb": rss, "verified": ok})
        wall = f"{med:.2f}" if med else "FAIL"
        rate = f"{total / med:,.0f}" if med else "-"
        print(
            f"{tool.label:<30} {wall:>8} s {rate:>10} rows/s {rss:6.0f} MB  "
            f"verified={'yes' if ok else 'NO'}"
        )
    full_load.RESULTS_DIR.mkdir(exist_ok=True)
    out = (
        full_load.RESULTS_DIR
        / f"full_load_duckdb-{source.kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    )
    out.write_text(
        json.dumps(
            {
                "source": source.kind,
                "rows": total,
                "summary": summary,
                "runs": [r.__dict__ for r in runs],
            },
            indent=2,
            default=str,
        )
    )
    print(f"results: {out}")
    return 0 if all(s["verified"] for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())

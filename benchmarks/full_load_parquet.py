"""PostgreSQL -> Parquet full-load benchmark: replikit vs dlt and sling, side by side in one run.

    .venv/bin/python benchmarks/full_load_parquet.py --rows 1000000 [--setup-peers]

The source is ``benchmarks/generate.py``'s data set (``customers`` + ``orders``) on the
throwaway server of ``benchmarks/pgserver.py``, as in ``full_load_duckdb.py``. Each repetition
runs every tool once, round-robin with the start rotating; before each run the target folder
is deleted. Recorded per run: wall clock from spawn to exit and the peak RSS of the tool's
process tree; each target is verified against the source: every Parquet file of a table read
back with pyarrow (the source's columns only: dlt adds its own), row counts plus per-column
digests of canonical values (``full_load.canonical_digests``). dlt and sling run in their own
virtualenv (``--setup-peers`` creates it from ``peers/requirements-parquet.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import full_load  # noqa: E402
import full_load_duckdb  # noqa: E402
import generate  # noqa: E402
import pgserver  # noqa: E402

PEERS_VENV = BENCH_DIR / ".data" / "venv-parquet-peers"
PEERS_REQS = BENCH_DIR / "peers" / "requirements-parquet.txt"
TABLES = full_load.TABLES
Tool = full_load_duckdb.Tool
Run = full_load_duckdb.Run


def _peer(name: str) -> Path:
    return PEERS_VENV / "bin" / name


def _missing(module: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if not _peer("python").exists():
            return f"no peers virtualenv at {PEERS_VENV} (run with --setup-peers)"
        proc = subprocess.run([str(_peer("python")), "-c", f"import {module}"], capture_output=True)
        return None if proc.returncode == 0 else f"{module} not importable in {PEERS_VENV}"

    return check


def _replikit(server: pgserver.PgServer, target: Path, work: Path) -> list[str]:
    exe = full_load._replikit_exe() or "replikit"
    includes = [a for t in TABLES for a in ("--include", f"public.{t}")]
    return [exe, "copy", server.src_url, f"file://{target}", *includes, "--no-progress"]


def _dlt(backend: str) -> Callable[[pgserver.PgServer, Path, Path], list[str]]:
    def build(server: pgserver.PgServer, target: Path, work: Path) -> list[str]:
        tables = [a for t in TABLES for a in ("-t", t)]
        pipelines = str(work / f"dlt-{backend}-{time.monotonic_ns()}")
        return [str(_peer("python")), str(BENCH_DIR / "peers" / "dlt_parquet.py"),
                server.src_url, str(target), *tables, "--backend", backend,
                "--pipelines-dir", pipelines]  # fmt: skip

    return build


def _sling_binary() -> Path | None:
    """sling's binary: ``SLING_BINARY``, or the one the sling-linux-amd64 wheel carries (the
    ``sling`` wheel downloads its binary at first use, which needs network access)."""
    given = os.environ.get("SLING_BINARY")
    if given:
        return Path(given)
    found = sorted(PEERS_VENV.glob("lib/python*/site-packages/sling_linux_*/bin/sling-linux-*"))
    return found[0] if found else None


def _sling_missing() -> str | None:
    binary = _sling_binary()
    if binary is None or not binary.exists():
        return "no sling binary (set SLING_BINARY, or run with --setup-peers)"
    binary.chmod(0o755)
    return None


SLING_HOME = BENCH_DIR / ".data" / "sling-home"


def _sling_env() -> None:
    """sling writes Parquet through the DuckDB CLI, which it downloads at first use; give it
    the CLI of the duckdb-cli wheel instead (in its home folder here, not the user's)."""
    cli = _peer("duckdb")
    cli.chmod(0o755)
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True)
    number = version.stdout.split()[0].lstrip("v")
    where = SLING_HOME / "bin" / "duckdb" / number
    where.mkdir(parents=True, exist_ok=True)
    link = where / "duckdb"
    if not link.exists():
        link.symlink_to(cli)
    cli.chmod(0o755)
    # its json and httpfs extensions from the duckdb-ext-* wheels, where DuckDB autoloads extensions
    # ($HOME/.duckdb/extensions; HOME is sling's home folder for its process)
    ext = sorted(PEERS_VENV.glob(f"lib/python*/site-packages/duckdb_ext/extensions/v{number}"))
    if ext:
        dest = SLING_HOME / ".duckdb" / "extensions" / f"v{number}"
        shutil.copytree(ext[0], dest, dirs_exist_ok=True)
    os.environ.update(SLING_HOME_DIR=str(SLING_HOME), DUCKDB_VERSION=number)


def _sling(server: pgserver.PgServer, target: Path, work: Path) -> list[str]:
    """sling's replication of both tables, a folder of Parquet files per table."""
    _sling_env()
    config = work / "sling.yaml"
    streams = "\n".join(
        f"  public.{t}:\n    object: 'file://{target}/{t}/{t}.parquet'" for t in TABLES
    )
    config.write_text(
        f"source: BENCH_PG\ntarget: LOCAL\ndefaults:\n  mode: full-refresh\nstreams:\n{streams}\n"
    )
    sep = "&" if "?" in server.src_url else "?"
    os.environ["BENCH_PG"] = f"{server.src_url}{sep}sslmode=disable"  # the server has no TLS
    # sling's own Parquet writer: through the DuckDB CLI, each batch of a stream overwrote
    # the file (measured: 100,624 of 1,000,000 rows left)
    env = [f"HOME={SLING_HOME}", "SLING_DUCKDB_COMPUTE=false"]
    return ["env", *env, str(_sling_binary()), "run", "-r", str(config)]


TOOLS = {
    t.key: t
    for t in (
        Tool("replikit-parquet", "replikit PG->Parquet", _replikit),
        Tool("dlt-pyarrow", "dlt (pyarrow) PG->Parquet", _dlt("pyarrow"), _missing("dlt")),
        Tool("dlt-connectorx", "dlt (connectorx) PG->Parquet", _dlt("connectorx"),
             _missing("connectorx")),
        Tool("sling", "sling PG->Parquet", _sling, _sling_missing),
    )
}  # fmt: skip


def _files_of(target: Path, table: str) -> list[Path]:
    """Every Parquet file in a ``table`` folder, at any depth (tools nest parts differently)."""
    files = (p for p in target.rglob("*.parquet") if p.is_file())
    return sorted(p for p in files if table in p.relative_to(target).parts[:-1])


def verify(
    target: Path, expected: dict[str, dict[str, str]], columns: dict[str, Any]
) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {}
    for table in TABLES:
        cols = columns[table]
        names = [c.name for c in cols]
        files = _files_of(target, table)
        if not files:
            out[table] = "no files"
            continue
        parts = [pq.read_table(f, columns=names) for f in files]
        data = pa.concat_tables(parts, promote_options="permissive").sort_by(names[0])
        rows = zip(*(data.column(n).to_pylist() for n in names), strict=True)
        _, out[table] = full_load._compare(expected[table], full_load.canonical_digests(rows, cols))
    return out


def run_once(tool: Tool, server: pgserver.PgServer, work: Path, rep: int,
             expected: dict[str, dict[str, str]], columns: dict[str, Any]) -> Run:  # fmt: skip
    target = work / "out"
    shutil.rmtree(target, ignore_errors=True)
    server.checkpoint()
    run = Run(tool.key, rep)
    err = work / f"{tool.key}-{rep}.err"
    with err.open("wb") as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(tool.command(server, target, work), stdout=subprocess.DEVNULL,
                                stderr=errf, stdin=subprocess.DEVNULL)  # fmt: skip
        sampler = full_load.RssSampler(proc.pid)
        sampler.start()
        code = proc.wait()
        run.wall_s = time.perf_counter() - t0
        sampler.stop()
    run.peak_rss_bytes = sampler.peak
    if code != 0:
        run.error = f"exit {code}: {err.read_text(errors='replace')[-1500:]}"
        return run
    try:
        run.detail = verify(target, expected, columns)
        run.detail["files"] = str(sum(len(_files_of(target, t)) for t in TABLES))
    except Exception as exc:  # a peer's files pyarrow cannot read as the source's columns
        run.detail = {"verify": f"{type(exc).__name__}: {exc}"[:300]}
    run.verified = all(v == "ok" for k, v in run.detail.items() if k != "files")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PostgreSQL -> Parquet full-load benchmark")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--setup-peers", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.setup_peers and not _peer("python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(_peer("python")), "-m", "pip", "install", "-q", "-r",
                        str(PEERS_REQS)], check=True)  # fmt: skip
    tools = [TOOLS[k.strip()] for k in args.tools.split(",") if k.strip()]
    skipped = {t.key: why for t in tools if (why := t.missing())}
    for key, why in skipped.items():
        print(f"skipping {key}: {why}")
    tools = [t for t in tools if t.key not in skipped]
    server = pgserver.start(keep=args.keep)
    work = Path(tempfile.mkdtemp(prefix="replikit-bench-parquet-"))
    try:
        generate.generate(server.src_url, args.rows, None)
        verifier = full_load.Verifier(server)
        columns = verifier.columns
        expected = {t: verifier._canon_expected(t) for t in TABLES}
        total = sum(verifier.source_rows().values())
        print(f"load before: {os.getloadavg()}")
        runs: list[Run] = []
        for rep in range(args.reps):
            shift = rep % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                r = run_once(tool, server, work, rep + 1, expected, columns)
                state = "ok" if r.verified else f"FAILED {r.error or r.detail}"
                print(f"  rep {r.rep} {tool.label:<30} {r.wall_s:7.2f}s "
                      f"rss {r.peak_rss_bytes / 2**20:5.0f} MB  {state}", flush=True)  # fmt: skip
                runs.append(r)
        print(f"load after: {os.getloadavg()}")
        print(f"\nPostgreSQL -> Parquet, {total:,} rows, {args.reps} reps (median wall, max RSS)")
        summary = []
        for tool in tools:
            mine = [r for r in runs if r.tool == tool.key and not r.error]
            med = statistics.median(r.wall_s for r in mine) if mine else None
            rss = max((r.peak_rss_bytes for r in mine), default=0) / 2**20
            ok = bool(mine) and all(r.verified for r in mine)
            summary.append({"tool": tool.key, "median_wall_s": med, "peak_rss_mb": rss,
                            "verified": ok})  # fmt: skip
            wall = f"{med:.2f}" if med else "FAIL"
            rate = f"{total / med:,.0f}" if med else "-"
            print(f"{tool.label:<30} {wall:>8} s {rate:>10} rows/s {rss:6.0f} MB  "
                  f"verified={'yes' if ok else 'NO'}")  # fmt: skip
        full_load.RESULTS_DIR.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = full_load.RESULTS_DIR / f"full_load_parquet-{stamp}.json"
        doc = {"rows": total, "load": os.getloadavg(), "summary": summary,
               "runs": [r.__dict__ for r in runs]}  # fmt: skip
        out.write_text(json.dumps(doc, indent=2, default=str))
        print(f"results: {out}")
        return 0
    finally:
        if not args.keep:
            server.stop()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

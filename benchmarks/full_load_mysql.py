"""MariaDB -> PostgreSQL full-load benchmark: replikit vs peers, side by side in one run.

    .venv/bin/python benchmarks/full_load_mysql.py --rows 1000000

Peers: pgloader (the baseline; Debian package), sling (PyPI ``sling-linux-amd64``), dlt with
the connectorx and pyarrow backends, and a minimal mysqlclient -> COPY pipe (typed values and
wire text); the Python peers run in a benchmark-only virtualenv (``--setup-peers``). For each
repetition (round-robin, the start rotating) the target database is recreated, the tool runs
as a subprocess, its wall clock and the peak RSS of its process tree are recorded, and every
target is verified against the source (``verify_mysql``: row counts, per-column and per-row
checksums of canonical values) and its schema fidelity recorded. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import full_load  # noqa: E402
import generate_mysql  # noqa: E402
import mysqlserver  # noqa: E402
import pgserver  # noqa: E402
import verify_mysql  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
PEERS_VENV = BENCH_DIR / ".data" / "venv-peers"
PEERS_REQS = BENCH_DIR / "peers" / "requirements-mysql.txt"
PG_STATE = BENCH_DIR / ".data" / "pgserver-mysql.json"
TABLES = generate_mysql.TABLES
BASELINE = "pgloader"


# -- servers --------------------------------------------------------------------------------


def start_pg(keep: bool) -> pgserver.PgServer:
    """A private PostgreSQL (never the one another benchmark kept) or REPLIKIT_BENCH_PG_URL."""
    if os.environ.get(pgserver.ENV_URL):
        return pgserver.start()
    server = None
    if PG_STATE.exists():
        kept = pgserver.PgServer(**json.loads(PG_STATE.read_text()))
        if kept.is_ready():
            server = kept
    if server is None:
        server = pgserver._init_new(pgserver.DEFAULT_BINDIR)
        if keep:
            PG_STATE.parent.mkdir(parents=True, exist_ok=True)
            PG_STATE.write_text(json.dumps(asdict(server), indent=2))
    server.ensure_db(pgserver.DST_DB)
    return server


def stop_pg(server: pgserver.PgServer) -> None:
    server.stop()
    if PG_STATE.exists() and json.loads(PG_STATE.read_text()).get("base_dir") == server.base_dir:
        PG_STATE.unlink()


def setup_peers() -> None:
    """Create the peers' virtualenv and install ``peers/requirements-mysql.txt`` into it."""
    base = getattr(sys, "_base_executable", sys.executable)
    if not (PEERS_VENV / "bin" / "python").exists():
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    pip = [str(PEERS_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(PEERS_REQS)], check=True)


# -- tools ----------------------------------------------------------------------------------


@dataclass
class Context:
    pg: pgserver.PgServer
    my: mysqlserver.MysqlServer
    workdir: Path
    replikit_args: list[str]

    @property
    def dst_url(self) -> str:
        return self.pg.dst_url

    def server_cpu(self) -> tuple[float | None, float | None]:
        """CPU seconds used so far by the MariaDB and the PostgreSQL server (owned ones)."""
        my = _proc_cpu(self.my.pid, with_children=False) if not self.my.external else None
        pg = None
        if not self.pg.external:
            pid_file = self.pg.datadir / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError):
                pg = _tree_cpu(int(pid_file.read_text().split()[0]))
        return my, pg

    def run_dir(self, name: str) -> Path:
        path = self.workdir / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read()
    return stat[stat.rfind(b")") + 2 :].split()


def _proc_cpu(pid: int | None, with_children: bool) -> float | None:
    """utime + stime (+ reaped children's) of ``pid``, in seconds."""
    if pid is None:
        return None
    try:
        f = _stat_fields(pid)
    except OSError:
        return None
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if with_children else 0)
    return ticks / _TICK


def _tree_cpu(root: int) -> float | None:
    """CPU of a postmaster: itself, its reaped backends and its live children."""
    total = _proc_cpu(root, with_children=True)
    if total is None:
        return None
    for pid in full_load._ppid_map().get(root, []):
        total += _proc_cpu(pid, with_children=False) or 0.0
    return total


@dataclass
class Tool:
    key: str
    label: str
    command: Callable[[Context], list[str]]
    availability: Callable[[Context], str | None] = lambda ctx: None
    env: Callable[[Context], dict[str, str]] = lambda ctx: {}


def _peer_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def _peers_missing(module: str) -> Callable[[Context], str | None]:
    def check(ctx: Context) -> str | None:
        if not _peer_python().exists():
            return f"no peers virtualenv at {PEERS_VENV} (run with --setup-peers)"
        proc = subprocess.run(
            [str(_peer_python()), "-c", f"import {module}"], capture_output=True, text=True
        )
        if proc.returncode != 0:
            return f"{module} not importable in {PEERS_VENV} (run with --setup-peers)"
        return None

    return check


def _pgloader_cmd(ctx: Context) -> list[str]:
    run = ctx.run_dir("pgloader")
    load = run / "bench.load"
    load.write_text(
        "LOAD DATABASE\n"
        f"  FROM {ctx.my.src_url}\n"
        f"  INTO {ctx.dst_url}\n"
        " WITH include drop, create tables, create indexes, reset sequences, foreign keys,\n"
        "      prefetch rows = 25000\n"
        f" ALTER SCHEMA '{mysqlserver.SRC_DB}' RENAME TO 'public'\n;\n"
    )
    return ["pgloader", "--root-dir", str(run), "--no-ssl-cert-verification", str(load)]


def _sling_bin() -> Path:
    site = next(PEERS_VENV.glob("lib/python3*/site-packages"), PEERS_VENV)
    return site / "sling_linux_amd64" / "bin" / "sling-linux-amd64"


def _sling_cmd(ctx: Context) -> list[str]:
    run = ctx.run_dir("sling")
    streams = "".join(f"  {mysqlserver.SRC_DB}.{t}:\n" for t in TABLES)
    (run / "replication.yaml").write_text(
        "source: BENCH_MYSQL\ntarget: BENCH_PG\n"
        "defaults:\n  mode: full-refresh\n  object: 'public.{stream_table}'\n"
        f"streams:\n{streams}"
    )
    return [str(_sling_bin()), "run", "-r", str(run / "replication.yaml")]


def _sling_env(ctx: Context) -> dict[str, str]:
    return {
        "BENCH_MYSQL": ctx.my.src_url,
        "BENCH_PG": ctx.dst_url + "?sslmode=disable",
        "SLING_HOME_DIR": str(ctx.workdir / "sling-home"),
        "SLING_DISABLE_TELEMETRY": "true",
    }


def _sling_missing(ctx: Context) -> str | None:
    if not _sling_bin().exists():
        return f"no sling binary in {PEERS_VENV} (run with --setup-peers)"
    return None


def _dlt_cmd(backend: str) -> Callable[[Context], list[str]]:
    def build(ctx: Context) -> list[str]:
        tables = [a for t in TABLES for a in ("-t", t)]
        return [
            str(_peer_python()),
            str(BENCH_DIR / "peers" / "dlt_mysql.py"),
            ctx.my.src_url,
            ctx.dst_url,
            "--backend",
            backend,
            *tables,
            "--pipelines-dir",
            str(ctx.run_dir(f"dlt-{backend}")),
        ]

    return build


def _pipe_cmd(values: str, driver: str = "mysqlclient") -> Callable[[Context], list[str]]:
    def build(ctx: Context) -> list[str]:
        return [
            str(_peer_python()),
            str(BENCH_DIR / "peers" / "mysql_copy_pipe.py"),
            ctx.my.src_url,
            ctx.dst_url,
            "--values",
            values,
            "--driver",
            driver,
        ]

    return build


def _replikit_exe() -> str:
    beside = Path(sys.executable).parent / "replikit"
    return str(beside) if beside.exists() else (shutil.which("replikit") or "replikit")


def replikit_argv(ctx: Context, driver: str) -> list[str]:
    """``replikit copy`` arguments (without the executable) for one driver."""
    includes = [a for t in TABLES for a in ("--include", f"{mysqlserver.SRC_DB}.{t}")]
    src = ctx.my.url(query=f"driver={driver}")
    return ["copy", src, ctx.dst_url, *includes, "--no-progress", *ctx.replikit_args]


def _replikit_cmd(driver: str) -> Callable[[Context], list[str]]:
    return lambda ctx: [_replikit_exe(), *replikit_argv(ctx, driver)]


def _replikit_missing(driver: str) -> Callable[[Context], str | None]:
    module = {"mysqlclient": "MySQLdb", "pymysql": "pymysql"}[driver]

    def check(ctx: Context) -> str | None:
        code = f"import replikit.cli, {module}"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode != 0:
            return f"replikit or {module} not importable in {sys.executable}"
        return None

    return check


TOOLS: dict[str, Tool] = {
    t.key: t
    for t in (
        Tool(
            "pgloader",
            "pgloader",
            _pgloader_cmd,
            lambda ctx: None if shutil.which("pgloader") else "apt-get install -y pgloader",
        ),
        Tool("sling", "sling", _sling_cmd, _sling_missing, _sling_env),
        Tool("dlt-connectorx", "dlt (connectorx)", _dlt_cmd("connectorx"), _peers_missing("dlt")),
        Tool("dlt-pyarrow", "dlt (pyarrow)", _dlt_cmd("pyarrow"), _peers_missing("dlt")),
        Tool(
            "pipe-typed",
            "mysqlclient->COPY typed",
            _pipe_cmd("typed"),
            _peers_missing("MySQLdb"),
        ),
        Tool(
            "pipe-text",
            "mysqlclient->COPY text",
            _pipe_cmd("text"),
            _peers_missing("MySQLdb"),
        ),
        Tool(
            "pipe-lines",
            "mysqlclient->COPY lines",
            _pipe_cmd("lines"),
            _peers_missing("MySQLdb"),
        ),
        Tool(
            "pipe-lines-pymysql",
            "PyMySQL->COPY lines",
            _pipe_cmd("lines", "pymysql"),
            _peers_missing("pymysql"),
        ),
        Tool(
            "replikit-mysqlclient",
            "replikit (mysqlclient)",
            _replikit_cmd("mysqlclient"),
            _replikit_missing("mysqlclient"),
        ),
        Tool(
            "replikit-pymysql",
            "replikit (PyMySQL)",
            _replikit_cmd("pymysql"),
            _replikit_missing("pymysql"),
        ),
    )
}


# -- verification -----------------------------------------------------------------------------


class Verifier:
    """Source checksums once per data set (cached on disk), then one query per target table."""

    def __init__(self, ctx: Context, marker: str) -> None:
        self.ctx = ctx
        self.marker = marker
        self._expected: dict[str, dict[str, str]] = {}

    def expected(self, table: str) -> dict[str, str]:
        if table not in self._expected:
            self._expected[table] = verify_mysql.cached_source_digest(
                self.ctx.my.src_url, self.marker, table, generate_mysql.COLUMNS[table]
            )
        return self._expected[table]

    def source_rows(self) -> dict[str, int]:
        return {t: int(self.expected(t)["__rows__"]) for t in TABLES}

    def verify(self, counts_only: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {"ok": True, "tables": {}}
        for table in TABLES:
            expected = self.expected(table)
            try:
                got = verify_mysql.target_digest(
                    self.ctx.dst_url, table, generate_mysql.COLUMNS[table]
                )
                if counts_only:
                    expected = {"__rows__": expected["__rows__"]}
                    got = {"__rows__": got["__rows__"]}
                ok, msg = verify_mysql.compare(expected, got)
            except Exception as exc:
                ok, msg = False, f"error: {type(exc).__name__}: {str(exc).strip()[:300]}"
            result["tables"][table] = msg
            result["ok"] = result["ok"] and ok
        try:
            result["fidelity"] = verify_mysql.fidelity(
                self.ctx.dst_url, TABLES, generate_mysql.SOURCE_OBJECTS
            )
        except Exception as exc:
            result["fidelity"] = {"error": str(exc).strip()[:300]}
        return result


# -- running --------------------------------------------------------------------------------


@dataclass
class RunResult:
    tool: str
    rep: int
    rows: int
    wall_s: float | None = None
    cpu_s: float | None = None  # user + sys of the tool's process tree
    src_cpu_s: float | None = None  # MariaDB server during the run
    dst_cpu_s: float | None = None  # PostgreSQL server during the run
    peak_rss_bytes: int | None = None
    rss_samples: int = 0
    returncode: int | None = None
    verified: bool = False
    verification: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run_once(
    tool: Tool,
    ctx: Context,
    verifier: Verifier,
    rep: int,
    rows: int,
    timeout: float,
    counts_only: bool = False,
) -> RunResult:
    res = RunResult(tool=tool.key, rep=rep, rows=rows)
    ctx.pg.recreate_db(pgserver.DST_DB)
    ctx.pg.checkpoint()
    cmd = tool.command(ctx)
    env = dict(os.environ, **tool.env(ctx))
    out_path = ctx.workdir / f"{tool.key}-{rep}.out"
    err_path = ctx.workdir / f"{tool.key}-{rep}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        cpu0 = _children_cpu()
        my0, pg0 = ctx.server_cpu()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        sampler = full_load.RssSampler(proc.pid)
        sampler.start()
        try:
            res.returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            res.returncode = proc.wait()
            res.error = f"timeout after {timeout}s"
        res.wall_s = time.perf_counter() - t0
        res.cpu_s = _children_cpu() - cpu0
        my1, pg1 = ctx.server_cpu()
        res.src_cpu_s = my1 - my0 if my0 is not None and my1 is not None else None
        res.dst_cpu_s = pg1 - pg0 if pg0 is not None and pg1 is not None else None
        sampler.stop()
    res.peak_rss_bytes = sampler.peak
    res.rss_samples = sampler.samples
    if res.returncode != 0 and res.error is None:
        tail = err_path.read_text(errors="replace") + out_path.read_text(errors="replace")
        res.error = f"exit {res.returncode}: {tail.strip()[-1500:]}"
    if res.error is None:
        res.verification = verifier.verify(counts_only)
        res.verified = bool(res.verification["ok"])
    return res


def _children_cpu() -> float:
    # Reaped children and their reaped descendants: only the tool runs as a child meanwhile.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report_run(r: RunResult, tool: Tool) -> None:
    state = "ok" if r.verified else ("FAILED" if r.error else "NOT VERIFIED")
    mb = f"{r.peak_rss_bytes / 2**20:.0f}" if r.peak_rss_bytes else "-"
    print(
        f"  rep {r.rep} {tool.label:<26} {r.wall_s or 0:8.2f}s  cpu {r.cpu_s or 0:5.1f}s "
        f"(servers: MariaDB {r.src_cpu_s or 0:5.1f}s, PG {r.dst_cpu_s or 0:5.1f}s)  "
        f"rss {mb:>5} MB  {state}",
        flush=True,
    )
    if r.error:
        print(f"    !!! {tool.label} failed: {r.error}", file=sys.stderr, flush=True)
    elif not r.verified:
        detail = json.dumps(r.verification.get("tables"), ensure_ascii=False)
        print(f"    !!! {tool.label} VERIFICATION FAILED: {detail}", file=sys.stderr, flush=True)


def run_suite(
    tools: list[Tool], ctx: Context, verifier: Verifier, rows: int, reps: int, timeout: float
) -> list[RunResult]:
    """Round-robin: every rep runs every tool once, the start rotating per rep."""
    results: list[RunResult] = []
    for rep in range(reps):
        shift = rep % len(tools) if tools else 0
        for tool in tools[shift:] + tools[:shift]:
            r = run_once(tool, ctx, verifier, rep + 1, rows, timeout)
            report_run(r, tool)
            results.append(r)
    return results


def summarize(
    results: list[RunResult], tools: list[Tool], total_rows: int, skipped: dict[str, str]
) -> list[dict[str, Any]]:
    by_tool: dict[str, list[RunResult]] = {}
    for r in results:
        by_tool.setdefault(r.tool, []).append(r)
    base_walls = [r.wall_s for r in by_tool.get(BASELINE, []) if r.wall_s and not r.error]
    base = statistics.median(base_walls) if base_walls else None
    summary: list[dict[str, Any]] = []
    for tool in tools:
        if tool.key in skipped:
            summary.append({"tool": tool.key, "label": tool.label, "skipped": skipped[tool.key]})
            continue
        runs = by_tool.get(tool.key, [])
        walls = [r.wall_s for r in runs if r.wall_s is not None and not r.error]
        med = statistics.median(walls) if walls else None
        cpus = [r.cpu_s for r in runs if r.cpu_s is not None and not r.error]
        src_cpus = [r.src_cpu_s for r in runs if r.src_cpu_s is not None and not r.error]
        dst_cpus = [r.dst_cpu_s for r in runs if r.dst_cpu_s is not None and not r.error]
        rss = [r.peak_rss_bytes for r in runs if r.peak_rss_bytes and not r.error]
        fid = next((r.verification.get("fidelity") for r in runs if r.verification), None)
        summary.append(
            {
                "tool": tool.key,
                "label": tool.label,
                "runs": len(runs),
                "failed_runs": sum(1 for r in runs if r.error),
                "wall_s": [r.wall_s for r in runs],
                "median_wall_s": med,
                "rows_per_s": total_rows / med if med else None,
                "median_cpu_s": statistics.median(cpus) if cpus else None,
                "median_src_cpu_s": statistics.median(src_cpus) if src_cpus else None,
                "median_dst_cpu_s": statistics.median(dst_cpus) if dst_cpus else None,
                "ratio_vs_pgloader": base / med if base and med else None,
                "peak_rss_mb_max": max(rss) / 2**20 if rss else None,
                "verified": bool(runs) and all(r.verified for r in runs),
                "first_error": next((r.error for r in runs if r.error), None),
                "fidelity": fid,
            }
        )
    return summary


def print_table(summary: list[dict[str, Any]], title: str) -> None:
    if not summary:
        return
    print(f"\n{title}")
    hdr = (
        f"{'tool':<26} {'median s':>9} {'rows/s':>9} {'vs pgloader':>12} {'cpu s':>6} "
        f"{'my/pg cpu':>10} "
        f"{'peak RSS MB':>12} "
        f"{'verified':>9}  {'full':>4}  schema on the target"
    )
    print(hdr)
    print("-" * (len(hdr) + 40))
    for s in summary:
        if "skipped" in s:
            print(f"{s['label']:<26} SKIPPED: {s['skipped']}")
            continue
        med = f"{s['median_wall_s']:.2f}" if s["median_wall_s"] else "FAIL"
        rps = f"{s['rows_per_s']:,.0f}" if s["rows_per_s"] else "-"
        ratio = f"{s['ratio_vs_pgloader']:.2f}x" if s["ratio_vs_pgloader"] else "n/a"
        rss = f"{s['peak_rss_mb_max']:.0f}" if s["peak_rss_mb_max"] else "-"
        cpu = f"{s['median_cpu_s']:.1f}" if s["median_cpu_s"] else "-"
        srv = s["median_src_cpu_s"], s["median_dst_cpu_s"]
        servers = f"{srv[0]:.0f}/{srv[1]:.0f}" if None not in srv else "-"
        fid = s.get("fidelity") or {}
        full = ("yes" if fid.get("full") else "no") if "objects" in fid else "-"
        text = verify_mysql.fidelity_text(fid) if "objects" in fid else fid.get("error", "-")
        ver = "yes" if s["verified"] else "NO"
        print(
            f"{s['label']:<26} {med:>9} {rps:>9} {ratio:>12} {cpu:>6} {servers:>10} {rss:>12} "
            f"{ver:>9}  "
            f"{full:>4}  {text}"
        )
    for s in summary:
        if s.get("first_error"):
            last = s["first_error"].strip().splitlines()[-1]
            print(f"  !!! {s['label']}: {s['failed_runs']}/{s['runs']} runs failed: {last[:200]}")


# -- scale check and profiling -------------------------------------------------------------------


def scale_check(
    args: argparse.Namespace, ctx: Context, small: list[dict[str, Any]]
) -> dict[str, Any]:
    """Regenerate at ``--scale-rows`` and run the replikit tools once: peak RSS must stay flat."""
    keys = [k.strip() for k in args.scale_tools.split(",") if k.strip()]
    tools = [TOOLS[k] for k in keys if k in TOOLS and not TOOLS[k].availability(ctx)]
    big = args.scale_rows or args.rows * 10
    print(f"\nscale check: {args.rows:,} -> {big:,} orders (peak RSS should stay flat)")
    generate_mysql.generate(ctx.my.src_url, big)
    marker = generate_mysql.marker(big, generate_mysql.default_customers(big))
    verifier = Verifier(ctx, marker)
    counts_only = args.scale_verify == "counts"
    out: dict[str, Any] = {"rows": big, "verify": args.scale_verify, "tools": {}}
    base = {s["tool"]: s.get("peak_rss_mb_max") for s in small}
    for tool in tools:
        r = run_once(tool, ctx, verifier, 1, big, args.timeout, counts_only)
        report_run(r, tool)
        big_mb = r.peak_rss_bytes / 2**20 if r.peak_rss_bytes and not r.error else None
        b1 = base.get(tool.key)
        total = sum(verifier.source_rows().values())
        out["tools"][tool.key] = {
            "peak_rss_mb_small": b1,
            "peak_rss_mb_big": big_mb,
            "wall_s_big": r.wall_s,
            "rows_per_s_big": total / r.wall_s if r.wall_s and not r.error else None,
            "verified_big": r.verified,
            "error": r.error,
        }
        growth = f"{big_mb / b1:.2f}x" if b1 and big_mb else "n/a"
        print(
            f"  {tool.label:<26} peak RSS {b1 or 0:.0f} MB @ {args.rows:,} -> {big_mb or 0:.0f} MB"
            f" @ {big:,} ({growth}); {total / (r.wall_s or 1):,.0f} rows/s; "
            f"verified ({args.scale_verify}): {'yes' if r.verified else 'NO'}"
        )
    return out


def profile_child(out: str, argv: list[str]) -> int:
    """Run ``replikit`` in-process with cProfile in every thread; dump merged stats to ``out``.

    The timer is each thread's own CPU time (``time.thread_time``), so waits on the servers,
    on the GIL and on other threads do not count: the numbers are where the client's CPU goes.
    """
    import cProfile
    import pstats
    import threading

    from replikit import cli

    profiles: list[cProfile.Profile] = []
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        profiles.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    main_prof = cProfile.Profile(time.thread_time)
    main_prof.enable()
    try:
        rc = cli.main(argv)
    finally:
        main_prof.disable()
    stats = pstats.Stats(main_prof)
    for prof in profiles:
        stats.add(prof)
    stats.dump_stats(out)
    return rc


def profile(tool_key: str, ctx: Context, verifier: Verifier, rows: int, timeout: float) -> Path:
    """One profiled run of a replikit tool; prints the top functions by own time."""
    import pstats

    driver = tool_key.removeprefix("replikit-")
    out = RESULTS_DIR / f"profile-{tool_key}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.prof"
    RESULTS_DIR.mkdir(exist_ok=True)
    argv = [sys.executable, str(Path(__file__)), "--profile-child", str(out), "--"]
    tool = Tool(
        f"profile-{tool_key}",
        f"{TOOLS[tool_key].label} profiled",
        lambda c: [*argv, *replikit_argv(c, driver)],
    )
    r = run_once(tool, ctx, verifier, 1, rows, timeout)
    report_run(r, tool)
    if out.exists():
        print(f"\ncProfile of {tool.label} (CPU time of all threads), top by own time: {out}")
        pstats.Stats(str(out)).sort_stats("tottime").print_stats(25)
        pstats.Stats(str(out)).sort_stats("cumulative").print_stats(30)
    return out


# -- main -----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="MariaDB -> PostgreSQL full-load benchmark")
    p.add_argument("--rows", type=int, default=1_000_000, help="orders rows (customers: rows/10)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tools", default=",".join(TOOLS), help=f"subset of {','.join(TOOLS)}")
    p.add_argument("--keep", action="store_true", help="keep both servers and the data")
    p.add_argument("--setup-peers", action="store_true", help=f"(re)create {PEERS_VENV}")
    p.add_argument("--stop-servers", action="store_true", help="stop kept servers and exit")
    p.add_argument("--scale-check", action="store_true", help="rerun replikit at --scale-rows")
    p.add_argument("--scale-rows", type=int, default=None, help="default: 10x --rows")
    p.add_argument("--scale-tools", default="replikit-mysqlclient,replikit-pymysql")
    p.add_argument("--scale-verify", choices=["full", "counts"], default="full")
    p.add_argument("--profile", default=None, help="after the runs, cProfile this replikit tool")
    p.add_argument("--replikit-arg", action="append", default=[], help="extra `replikit copy` arg")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=ARGS (repeatable): also run each replikit tool with ARGS appended",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--profile-child"]:
        return profile_child(argv[1], argv[3:])
    parser = _parser()
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.tools.split(",") if k.strip()]
    if unknown := [k for k in keys if k not in TOOLS]:
        parser.error(f"unknown tools {unknown}; choose from {list(TOOLS)}")
    keys = full_load.add_variants(TOOLS, keys, args.variant)
    if args.setup_peers or not PEERS_VENV.exists():
        print(f"installing the peers into {PEERS_VENV} ...", flush=True)
        setup_peers()
    if args.stop_servers:
        if PG_STATE.exists():
            stop_pg(pgserver.PgServer(**json.loads(PG_STATE.read_text())))
        mysqlserver.main(["stop"])
        return 0
    tools = [TOOLS[k] for k in keys]
    started = dt.datetime.now(dt.UTC)
    pg = start_pg(args.keep)
    my = mysqlserver.start(keep=args.keep)
    ctx = Context(
        pg, my, Path(tempfile.mkdtemp(prefix="replikit-bench-my-run-")), args.replikit_arg
    )
    print(f"PostgreSQL {pg.admin_url}; MariaDB {my.host}:{my.port}", flush=True)
    try:
        return _run(args, argv, ctx, tools, started)
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
        # A server some earlier --keep run left is reused and left running.
        if not args.keep and not _kept(PG_STATE, pg.base_dir):
            stop_pg(pg)
        if not args.keep and not _kept(mysqlserver.STATE_FILE, my.base_dir):
            my.stop()


def compile_replikit() -> None:
    """Write the bytecode of the replikit the tools import, as installing a wheel does: an
    editable install under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module
    again at each start (~0.5 s of CPU per run on the benchmark machine)."""
    where = subprocess.run(
        [sys.executable, "-c", "import os, replikit; print(os.path.dirname(replikit.__file__))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if where:
        subprocess.run([sys.executable, "-m", "compileall", "-q", where], check=False)


def _kept(state: Path, base_dir: str | None) -> bool:
    try:
        return base_dir is not None and json.loads(state.read_text())["base_dir"] == base_dir
    except (OSError, ValueError, KeyError):
        return False


def _run(
    args: argparse.Namespace,
    argv: list[str],
    ctx: Context,
    tools: list[Tool],
    started: dt.datetime,
) -> int:
    skipped = {t.key: reason for t in tools if (reason := t.availability(ctx))}
    for key, reason in skipped.items():
        print(f"skipping {TOOLS[key].label}: {reason}")
    runnable = [t for t in tools if t.key not in skipped]
    generate_mysql.generate(ctx.my.src_url, args.rows)
    customers = generate_mysql.default_customers(args.rows)
    verifier = Verifier(ctx, generate_mysql.marker(args.rows, customers))
    t0 = time.perf_counter()
    src_rows = verifier.source_rows()
    print(f"source checksums ready ({time.perf_counter() - t0:.1f}s)", flush=True)
    total = sum(src_rows.values())
    compile_replikit()
    results = run_suite(runnable, ctx, verifier, args.rows, args.reps, args.timeout)
    summary = summarize(results, tools, total, skipped) if args.reps else []
    print_table(
        summary,
        f"MariaDB -> PostgreSQL full load: {src_rows['orders']:,} orders + "
        f"{src_rows['customers']:,} customers = {total:,} rows, {args.reps} reps, median wall "
        "(ratio = pgloader time / tool time; >1 is faster)",
    )
    prof = profile(args.profile, ctx, verifier, args.rows, args.timeout) if args.profile else None
    scale = scale_check(args, ctx, summary) if args.scale_check else None
    doc = {
        "benchmark": "full_load_mysql",
        "started_utc": started.isoformat(),
        "argv": argv,
        "rows": src_rows,
        "reps": args.reps,
        "machine": full_load.machine_info(ctx.pg),
        "mariadb": ctx.my.version(),
        "mariadb_settings": None if ctx.my.external else mysqlserver.SERVER_SETTINGS,
        "summary": summary,
        "runs": [r.__dict__ for r in results],
        "scale_check": scale,
        "profile": str(prof) if prof else None,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"full_load_mysql-{started:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(doc, indent=2, default=str, ensure_ascii=False))
    print(f"\nresults: {out.relative_to(BENCH_DIR.parent)}")
    bad = [s["label"] for s in summary if "skipped" not in s and not s["verified"]]
    if bad:
        print(f"\n!!! NOT VERIFIED: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Full-load benchmark: replikit vs peers, side by side in one run, reported as ratios.

    .venv/bin/python benchmarks/full_load.py --rows 1000000

Tools read the PostgreSQL source, or (``source = "sqlite"``) a SQLite copy of it made once per
data set (benchmarks/sqlite_source.py); each tool's ratio is against its baseline peer
(``pg_dump | psql``, or ``sqlite3 .dump | psql`` for a SQLite source).

For each repetition (round-robin across tools, rotating the start so no tool always goes
first) the target is reset, the tool runs as a subprocess, wall clock and the peak RSS
of its whole process tree (polled from /proc every 50 ms) are recorded, and the target
is verified against the source (row counts + per-column and per-row checksums).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import generate  # noqa: E402
import pgserver  # noqa: E402
import sqlite_source  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
TABLES = ("customers", "orders")  # parent first
BASELINE = "pg_dump"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# -- peak RSS of a process tree ---------------------------------------------------------


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # comm may contain spaces/parens: fields after the last ')' are positional.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_rss_bytes(root: int) -> int:
    """Sum of resident set sizes of ``root`` and all its descendants."""
    children = _ppid_map()
    total = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            pass
        stack.extend(children.get(pid, ()))
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


# -- tools ------------------------------------------------------------------------------


@dataclass
class Context:
    server: pgserver.PgServer
    workdir: Path
    replikit_args: list[str]
    dask_address: str | None = None  # the LocalCluster of the replikit-dask tool

    @property
    def sqlite_path(self) -> Path:
        return self.workdir / "bench.db"

    @property
    def sqlite_source(self) -> Path:
        """The SQLite source of the tools with ``source == "sqlite"``."""
        return self.workdir / "source.db"


@dataclass
class Tool:
    key: str
    label: str
    target: str  # "pg" | "sqlite"
    command: Callable[[Context], list[str]]
    availability: Callable[[Context], str | None] = lambda ctx: None  # reason if not
    is_replikit: bool = False
    source: str = "pg"  # "pg" | "sqlite" (ctx.sqlite_source)
    baseline: str = "pg_dump"  # the tool whose median time the ratio divides


def _replikit_exe() -> str | None:
    beside = Path(sys.executable).parent / "replikit"
    if beside.exists():
        return str(beside)
    return shutil.which("replikit")


def _replikit_missing(ctx: Context) -> str | None:
    exe = _replikit_exe()
    if exe is None:
        return "no replikit executable"
    try:
        proc = subprocess.run([exe, "copy", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`replikit copy --help` failed: {exc}"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return f"`replikit copy` not available ({lines[-1] if lines else proc.returncode})"
    return None


def _pg_dump_cmd(ctx: Context) -> list[str]:
    s = ctx.server
    q = shlex.quote
    script = (
        f"set -o pipefail; {q(s.bin('pg_dump'))} -t orders -t customers -d {q(s.src_url)}"
        f" | {q(s.bin('psql'))} -X -q -v ON_ERROR_STOP=1 -o /dev/null -d {q(s.dst_url)}"
    )
    return ["bash", "-c", script]


def _sqlite_dump_cmd(ctx: Context) -> list[str]:
    """``sqlite3 .dump | psql``: --newlines keeps newlines in string literals (the default
    writes ``char(10)``, a function PostgreSQL lacks), --nosys leaves out sqlite_stat1; the
    PRAGMA line is SQLite's own."""
    q = shlex.quote
    script = (
        f"set -o pipefail; sqlite3 {q(str(ctx.sqlite_source))} '.dump --newlines --nosys'"
        " | grep -v '^PRAGMA foreign_keys=OFF;$'"
        f" | {q(ctx.server.bin('psql'))} -X -q -v ON_ERROR_STOP=1 -o /dev/null"
        f" -d {q(ctx.server.dst_url)}"
    )
    return ["bash", "-c", script]


def _sqlite3_missing(ctx: Context) -> str | None:
    return None if shutil.which("sqlite3") else "no sqlite3 command-line shell"


def _copy_pipe_cmd(ctx: Context) -> list[str]:
    return [
        sys.executable,
        str(BENCH_DIR / "peers" / "copy_pipe.py"),
        ctx.server.src_url,
        ctx.server.dst_url,
        "-t",
        "customers",
        "-t",
        "orders",
    ]


def _dask_missing(ctx: Context) -> str | None:
    if ctx.dask_address is None:
        return "distributed is not installed (pip install 'replikit[dask]')"
    return _replikit_missing(ctx)


def _replikit_cmd(
    dst: Callable[[Context], str],
    *extra: Callable[[Context], list[str]],
    src: Callable[[Context], str] | None = None,
) -> Callable[[Context], list[str]]:
    def build(ctx: Context) -> list[str]:
        exe = _replikit_exe() or "replikit"
        schema = "public." if src is None else ""
        return [
            exe,
            "copy",
            ctx.server.src_url if src is None else src(ctx),
            dst(ctx),
            "--include",
            f"{schema}orders",
            "--include",
            f"{schema}customers",
            *ctx.replikit_args,
            *(arg for more in extra for arg in more(ctx)),
        ]

    return build


TOOLS: dict[str, Tool] = {
    t.key: t
    for t in (
        Tool("pg_dump", "pg_dump | psql", "pg", _pg_dump_cmd),
        Tool("copy-pipe", "copy-pipe (psycopg COPY)", "pg", _copy_pipe_cmd),
        Tool(
            "replikit-pg",
            "replikit PG->PG",
            "pg",
            _replikit_cmd(lambda ctx: ctx.server.dst_url),
            _replikit_missing,
            True,
        ),
        Tool(
            "replikit-dask",
            "replikit PG->PG on Dask",
            "pg",
            _replikit_cmd(
                lambda ctx: ctx.server.dst_url,
                lambda ctx: ["--dask", ctx.dask_address or "", "--split-rows", "200000"],
            ),
            _dask_missing,
            True,
        ),
        Tool(
            "replikit-sqlite",
            "replikit PG->SQLite",
            "sqlite",
            _replikit_cmd(lambda ctx: f"sqlite:///{ctx.sqlite_path}"),
            _replikit_missing,
            True,
        ),
        Tool(
            "sqlite-dump",
            "sqlite3 .dump | psql",
            "pg",
            _sqlite_dump_cmd,
            _sqlite3_missing,
            source="sqlite",
            baseline="sqlite-dump",
        ),
        Tool(
            "replikit-from-sqlite",
            "replikit SQLite->PG",
            "pg",
            _replikit_cmd(
                lambda ctx: ctx.server.dst_url, src=lambda ctx: f"sqlite:///{ctx.sqlite_source}"
            ),
            _replikit_missing,
            True,
            source="sqlite",
            baseline="sqlite-dump",
        ),
    )
}


def add_variants(tools: dict[str, Any], keys: list[str], specs: list[str]) -> list[str]:
    """``--variant NAME=ARGS``: for each replikit tool in ``keys``, a copy that runs with the
    shell-split ``ARGS`` appended to its ``replikit copy`` command, keyed and labelled
    ``tool[NAME]``; registered in ``tools`` and returned with ``keys`` (each after its
    tool), so one run compares settings side by side, interleaved rep by rep. Leading
    ``VAR=VALUE`` words of ``ARGS`` are set in the tool's environment instead:
    ``--variant 'main=PYTHONPATH=/tmp/main/src'`` runs another checkout's replikit (compile
    its bytecode first, ``python -m compileall -q DIR``, as the benchmark does its own)."""
    out: list[str] = []
    for key in keys:
        out.append(key)
        if not key.startswith("replikit-"):
            continue
        for spec in specs:
            name, sep, args = spec.partition("=")
            if not sep or not name:
                raise SystemExit(f"--variant {spec!r}: expected NAME=ARGS")
            base = tools[key]
            extra = shlex.split(args)
            env: dict[str, str] = {}
            while extra and "=" in extra[0] and not extra[0].startswith("-"):
                var, _, value = extra.pop(0).partition("=")
                env[var] = value

            def command(ctx: Any, run: Callable[[Any], list[str]] = base.command,
                        more: list[str] = extra) -> list[str]:  # fmt: skip
                return [*run(ctx), *more]

            def environ(ctx: Any, inner: Callable[[Any], dict[str, str]] = base.env,
                        more_env: dict[str, str] = env) -> dict[str, str]:  # fmt: skip
                return {**inner(ctx), **more_env}

            variant = f"{key}[{name}]"
            changes: dict[str, Any] = {"command": command}
            if env and not hasattr(base, "env"):
                raise SystemExit(f"--variant {spec!r}: this benchmark's tools take no environment")
            if env:
                changes["env"] = environ
            tools[variant] = replace(base, key=variant, label=f"{base.label} [{name}]",
                                     **changes)  # fmt: skip
            out.append(variant)
    return out


# -- verification: PostgreSQL target (checksums computed in SQL) --------------------------


@dataclass
class Column:
    name: str
    data_type: str
    scale: int | None


def source_columns(url: str, table: str) -> list[Column]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select column_name, data_type, numeric_scale from information_schema.columns "
            "where table_schema = 'public' and table_name = %s order by ordinal_position",
            (table,),
        ).fetchall()
    return [Column(r[0], r[1], r[2]) for r in rows]


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pg_checksums(url: str, table: str, columns: list[Column]) -> dict[str, str]:
    """count(*), and per column count + sum of 64-bit hashes of the text form; plus a
    per-row hash over all columns in source order (catches values moved between rows)."""
    parts = ["count(*)"]
    names = ["__rows__"]
    row_expr = "row(" + ", ".join(_qi(c.name) for c in columns) + ")::text"
    parts.append(f"coalesce(sum(hashtextextended({row_expr}, 0)), 0)")
    names.append("__row_hash__")
    for c in columns:
        col = _qi(c.name)
        parts.append(f"count({col})")
        parts.append(f"coalesce(sum(hashtextextended({col}::text, 0)), 0)")
        names += [f"{c.name}:nonnull", f"{c.name}:hash"]
    sql = f"select {', '.join(parts)} from public.{_qi(table)}"
    with psycopg.connect(url) as conn:
        conn.execute("set jit = off")
        row = conn.execute(sql).fetchone()
    assert row is not None
    return {n: str(v) for n, v in zip(names, row, strict=True)}


def pg_schema_objects(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select (select count(*) from pg_indexes where schemaname = 'public' "
            "          and tablename = any(%(t)s)),"
            "       (select count(*) from pg_constraint c join pg_class r on r.oid = c.conrelid"
            "          where r.relname = any(%(t)s) and c.contype = 'f')",
            {"t": list(TABLES)},
        ).fetchone()
    assert row is not None
    return {"indexes": int(row[0]), "foreign_keys": int(row[1])}


# -- verification: SQLite target (canonical values compared in Python) --------------------


def _canon_json(v: Any) -> str:
    if isinstance(v, (bytes, str)):
        v = json.loads(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canon_ts(v: Any) -> str:
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v)
    if not isinstance(v, dt.datetime):
        raise TypeError(type(v).__name__)
    return v.isoformat(sep=" ", timespec="microseconds")


def _canon_date(v: Any) -> str:
    if isinstance(v, str):
        v = dt.date.fromisoformat(v)
    if isinstance(v, dt.datetime) or not isinstance(v, dt.date):
        raise TypeError(type(v).__name__)
    return v.isoformat()


def _canon_bool(v: Any) -> str:
    if isinstance(v, str):
        v = {"true": True, "false": False, "1": True, "0": False, "t": True, "f": False}[v.lower()]
    if isinstance(v, bool) or v in (0, 1):
        return "1" if v else "0"
    raise TypeError(type(v).__name__)


def _canon_decimal(scale: int | None) -> Callable[[Any], str]:
    def canon(v: Any) -> str:
        if isinstance(v, float):
            v = Decimal(repr(v))  # exact if the stored float round-trips the value
        elif isinstance(v, (int, str)):
            v = Decimal(v)
        if not isinstance(v, Decimal):
            raise TypeError(type(v).__name__)
        return str(v.quantize(Decimal(1).scaleb(-scale))) if scale is not None else str(v)

    return canon


def _canon_float(v: Any) -> str:
    if isinstance(v, str):
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(type(v).__name__)
    return repr(float(v))


def _canon_int(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(type(v).__name__)
    return str(v)


def _canon_text(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(type(v).__name__)
    return v


def canonicalizer(col: Column) -> Callable[[Any], str]:
    t = col.data_type
    if t in ("bigint", "integer", "smallint"):
        return _canon_int
    if t == "numeric":
        return _canon_decimal(col.scale)
    if t in ("double precision", "real"):
        return _canon_float
    if t in ("text", "character varying", "character"):
        return _canon_text
    if t == "timestamp without time zone":
        return _canon_ts
    if t == "date":
        return _canon_date
    if t == "boolean":
        return _canon_bool
    if t in ("json", "jsonb"):
        return _canon_json
    raise ValueError(f"no canonical form for {t}")


def canonical_digests(rows: Iterable[tuple[Any, ...]], columns: list[Column]) -> dict[str, str]:
    """Per-column digest of canonical values in primary-key order (+ row count)."""
    canons = [canonicalizer(c) for c in columns]
    hashes = [hashlib.blake2b(digest_size=16) for _ in columns]
    count = 0
    bad: dict[str, str] = {}
    for row in rows:
        count += 1
        for i, v in enumerate(row):
            if v is None:
                token = "\x00NULL"
            else:
                try:
                    token = canons[i](v)
                except (TypeError, ValueError, KeyError) as exc:
                    bad.setdefault(columns[i].name, f"{type(v).__name__} {v!r:.60}: {exc}")
                    token = f"\x00BAD{v!r}"
            hashes[i].update(token.encode("utf-8", "surrogatepass") + b"\x1f")
    out = {"__rows__": str(count)}
    for c, h in zip(columns, hashes, strict=True):
        out[c.name] = h.hexdigest()
    for name, msg in bad.items():
        out[f"{name}:uncanonical"] = msg
    return out


def _pg_rows(url: str, table: str, columns: list[Column]) -> Iterator[tuple[Any, ...]]:
    cols = ", ".join(_qi(c.name) for c in columns)
    with psycopg.connect(url) as conn, conn.cursor(name="bench_verify") as cur:
        cur.itersize = 10_000
        cur.execute(f"select {cols} from public.{_qi(table)} order by {_qi(columns[0].name)}")
        yield from cur


def _sqlite_table(conn: sqlite3.Connection, table: str) -> str | None:
    names = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    for candidate in (table, f"public_{table}", f"public.{table}"):
        if candidate in names:
            return candidate
    return None


def verify_sqlite(
    path: Path, table: str, columns: list[Column], expected: dict[str, str]
) -> tuple[bool, str]:
    if not path.exists():
        return False, f"{path} missing"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        name = _sqlite_table(conn, table)
        if name is None:
            return False, f"table {table} missing"
        cols = ", ".join(_qi(c.name) for c in columns)
        cur = conn.execute(f"select {cols} from {_qi(name)} order by {_qi(columns[0].name)}")
        got = canonical_digests(cur, columns)
    except sqlite3.Error as exc:
        return False, f"sqlite error: {exc}"
    finally:
        conn.close()
    return _compare(expected, got)


def _compare(expected: dict[str, str], got: dict[str, str]) -> tuple[bool, str]:
    diffs = [k for k in sorted(set(expected) | set(got)) if expected.get(k) != got.get(k)]
    if not diffs:
        return True, "ok"
    detail = "; ".join(f"{k}: src={expected.get(k)} dst={got.get(k)}" for k in diffs[:6])
    return False, f"MISMATCH in {len(diffs)} checks: {detail}"


class Verifier:
    """Source checksums are computed once per data set and cached."""

    def __init__(self, server: pgserver.PgServer) -> None:
        self.server = server
        self.columns = {t: source_columns(server.src_url, t) for t in TABLES}
        self._pg: dict[str, dict[str, str]] = {}
        self._canon: dict[str, dict[str, str]] = {}
        self._schema: dict[str, int] | None = None

    def source_rows(self) -> dict[str, int]:
        return {t: int(self._pg_expected(t)["__rows__"]) for t in TABLES}

    def _pg_expected(self, table: str) -> dict[str, str]:
        if table not in self._pg:
            self._pg[table] = pg_checksums(self.server.src_url, table, self.columns[table])
        return self._pg[table]

    def _canon_expected(self, table: str) -> dict[str, str]:
        if table not in self._canon:
            cols = self.columns[table]
            self._canon[table] = canonical_digests(_pg_rows(self.server.src_url, table, cols), cols)
        return self._canon[table]

    def verify(self, tool: Tool, ctx: Context) -> dict[str, Any]:
        result: dict[str, Any] = {"ok": True, "tables": {}}
        for table in TABLES:
            try:
                if tool.target == "pg":
                    got = pg_checksums(self.server.dst_url, table, self.columns[table])
                    ok, msg = _compare(self._pg_expected(table), got)
                else:
                    ok, msg = verify_sqlite(
                        ctx.sqlite_path, table, self.columns[table], self._canon_expected(table)
                    )
            except psycopg.Error as exc:
                ok, msg = False, f"error: {str(exc).strip()}"
            result["tables"][table] = msg
            result["ok"] = result["ok"] and ok
        if tool.target == "pg":
            if self._schema is None:
                self._schema = pg_schema_objects(self.server.src_url)
            got_schema = pg_schema_objects(self.server.dst_url)
            result["schema"] = {k: f"{got_schema[k]}/{v}" for k, v in self._schema.items()}
        return result


# -- running ----------------------------------------------------------------------------


@dataclass
class RunResult:
    tool: str
    rep: int
    rows: int
    wall_s: float | None = None
    peak_rss_bytes: int | None = None
    rss_samples: int = 0
    returncode: int | None = None
    verified: bool = False
    verification: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None


def reset_target(tool: Tool, ctx: Context) -> None:
    if tool.target == "pg":
        ctx.server.recreate_db(pgserver.DST_DB)
    else:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{ctx.sqlite_path}{suffix}").unlink(missing_ok=True)
    ctx.server.checkpoint()


def run_once(
    tool: Tool, ctx: Context, verifier: Verifier, rep: int, rows: int, timeout: float
) -> RunResult:
    res = RunResult(tool=tool.key, rep=rep, rows=rows)
    reset_target(tool, ctx)
    cmd = tool.command(ctx)
    out_path = ctx.workdir / f"{tool.key}-{rep}.out"
    err_path = ctx.workdir / f"{tool.key}-{rep}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        sampler = RssSampler(proc.pid)
        sampler.start()
        try:
            res.returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            res.returncode = proc.wait()
            res.error = f"timeout after {timeout}s"
        res.wall_s = time.perf_counter() - t0
        sampler.stop()
    res.peak_rss_bytes = sampler.peak
    res.rss_samples = sampler.samples
    if res.returncode != 0 and res.error is None:
        tail = err_path.read_text(errors="replace").strip()[-1500:]
        res.error = f"exit {res.returncode}: {tail}"
    if res.error is None:
        res.verification = verifier.verify(tool, ctx)
        res.verified = bool(res.verification["ok"])
    return res


def _mb(n: int | None) -> str:
    return f"{n / 2**20:.0f}" if n else "-"


def summarize(
    results: list[RunResult], tools: list[Tool], total_rows: int, skipped: dict[str, str]
) -> list[dict[str, Any]]:
    by_tool: dict[str, list[RunResult]] = {}
    for r in results:
        by_tool.setdefault(r.tool, []).append(r)
    def median_of(key: str) -> float | None:
        walls = [r.wall_s for r in by_tool.get(key, []) if r.wall_s and not r.error]
        return statistics.median(walls) if walls else None

    summary = []
    for tool in tools:
        base = median_of(tool.baseline)
        if tool.key in skipped:
            summary.append({"tool": tool.key, "label": tool.label, "skipped": skipped[tool.key]})
            continue
        runs = by_tool.get(tool.key, [])
        ok_walls = [r.wall_s for r in runs if r.wall_s is not None and not r.error]
        med = statistics.median(ok_walls) if ok_walls else None
        rss = [r.peak_rss_bytes for r in runs if r.peak_rss_bytes and not r.error]
        schema = next((r.verification.get("schema") for r in runs if r.verification), None)
        summary.append(
            {
                "tool": tool.key,
                "label": tool.label,
                "runs": len(runs),
                "failed_runs": sum(1 for r in runs if r.error),
                "wall_s": [r.wall_s for r in runs],
                "median_wall_s": med,
                "min_wall_s": min(ok_walls) if ok_walls else None,
                "rows_per_s": total_rows / med if med else None,
                "baseline": tool.baseline,
                "ratio_vs_baseline": base / med if base and med else None,
                "ratio_vs_pg_dump": (
                    pg_dump / med if (pg_dump := median_of(BASELINE)) and med else None
                ),
                "peak_rss_mb_max": max(rss) / 2**20 if rss else None,
                "peak_rss_mb_median": statistics.median(rss) / 2**20 if rss else None,
                "verified": bool(runs) and all(r.verified for r in runs),
                "first_error": next((r.error for r in runs if r.error), None),
                "schema_objects": schema,
            }
        )
    return summary


def print_table(summary: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    print("idx/fk = indexes / foreign keys on the target vs the source (PG targets)")
    print("vs peer = the baseline peer's median time / the tool's: pg_dump | psql, or")
    print("  sqlite3 .dump | psql for the tools reading the SQLite source")
    hdr = (
        f"{'tool':<26} {'median s':>9} {'rows/s':>10} {'vs peer':>16} "
        f"{'peak RSS MB':>12} {'verified':>9}  {'idx/fk':>9}"
    )
    print(hdr)
    print("-" * len(hdr))
    for s in summary:
        if "skipped" in s:
            print(f"{s['label']:<26} {'SKIPPED: ' + s['skipped']}")
            continue
        med = f"{s['median_wall_s']:.2f}" if s["median_wall_s"] else "FAIL"
        rps = f"{s['rows_per_s']:,.0f}" if s["rows_per_s"] else "-"
        ratio = f"{s['ratio_vs_baseline']:.2f}x" if s["ratio_vs_baseline"] else "n/a"
        rss = f"{s['peak_rss_mb_max']:.0f}" if s["peak_rss_mb_max"] else "-"
        ver = "yes" if s["verified"] else "NO"
        sch = s.get("schema_objects") or {}
        objs = f"{sch.get('indexes', '')} {sch.get('foreign_keys', '')}".strip() or "-"
        print(f"{s['label']:<26} {med:>9} {rps:>10} {ratio:>16} {rss:>12} {ver:>9}  {objs:>9}")
    for s in summary:
        if s.get("first_error"):
            last = s["first_error"].strip().splitlines()[-1]
            print(f"  !!! {s['label']}: {s['failed_runs']}/{s['runs']} runs failed: {last[:200]}")


def report_run(r: RunResult, tool: Tool) -> None:
    state = "ok" if r.verified else ("FAILED" if r.error else "NOT VERIFIED")
    print(
        f"  rep {r.rep} {tool.label:<26} {r.wall_s or 0:8.2f}s  "
        f"rss {_mb(r.peak_rss_bytes):>5} MB  {state}",
        flush=True,
    )
    if r.error:
        print(f"    !!! {tool.label} failed: {r.error}", file=sys.stderr, flush=True)
    elif not r.verified:
        print(
            f"    !!! {tool.label} VERIFICATION FAILED: "
            f"{json.dumps(r.verification, ensure_ascii=False)}",
            file=sys.stderr,
            flush=True,
        )


def machine_info(server: pgserver.PgServer) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "psycopg": psycopg.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "server": server.version(),
        "server_external": server.external,
        "server_settings": None if server.external else pgserver.SERVER_SETTINGS,
    }
    try:
        with open("/proc/meminfo") as fh:
            info["mem_total_kb"] = int(fh.readline().split()[1])
        with open("/proc/cpuinfo") as fh:
            info["cpu_model"] = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None
            )
    except OSError:
        pass
    try:
        info["git_rev"] = subprocess.run(
            ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["git_rev"] = None
    return info


def run_suite(
    tools: list[Tool], ctx: Context, rows: int, reps: int, timeout: float
) -> tuple[list[RunResult], Verifier]:
    """Round-robin: every rep runs every tool once, the start rotating per rep."""
    verifier = Verifier(ctx.server)
    results: list[RunResult] = []
    for rep in range(reps):
        shift = rep % len(tools) if tools else 0
        for tool in tools[shift:] + tools[:shift]:
            r = run_once(tool, ctx, verifier, rep + 1, rows, timeout)
            report_run(r, tool)
            results.append(r)
    return results, verifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="replikit full-load benchmark")
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders rows (1M)")
    parser.add_argument(
        "--customers", type=int, default=None, help="customers rows (default rows/10, min 1000)"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the PostgreSQL server (and generated data) for reruns",
    )
    parser.add_argument(
        "--scale-check",
        action="store_true",
        help="also run the replikit tools once at 10x rows, compare peak RSS",
    )
    parser.add_argument(
        "--scale-tools", default="replikit-pg,replikit-sqlite", help="tools for --scale-check"
    )
    parser.add_argument(
        "--replikit-arg",
        action="append",
        default=[],
        help="extra argument for `replikit copy` (repeatable), "
        "e.g. --replikit-arg=--parallel --replikit-arg=2",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=ARGS (repeatable): also run each replikit tool with ARGS appended, "
        "e.g. --variant 'one-unit=--split-rows 100000000'",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    args = parser.parse_args(argv)

    keys = [k.strip() for k in args.tools.split(",") if k.strip()]
    unknown = [k for k in keys if k not in TOOLS]
    if unknown:
        parser.error(f"unknown tools {unknown}; choose from {list(TOOLS)}")
    keys = add_variants(TOOLS, keys, args.variant)
    tools = [TOOLS[k] for k in keys]

    server = pgserver.start(keep=args.keep)
    workdir = Path(tempfile.mkdtemp(prefix="replikit-bench-run-"))
    ctx = Context(server=server, workdir=workdir, replikit_args=args.replikit_arg)
    cluster = _dask_cluster(ctx) if "replikit-dask" in keys else None
    started = dt.datetime.now(dt.UTC)
    print(f"server: {server.admin_url} ({'external' if server.external else server.base_dir})")
    try:
        skipped = {t.key: reason for t in tools if (reason := t.availability(ctx))}
        for key, reason in skipped.items():
            print(f"skipping {TOOLS[key].label}: {reason}")
        runnable = [t for t in tools if t.key not in skipped]

        generate.generate(server.src_url, args.rows, args.customers)
        if any(t.source == "sqlite" for t in runnable):
            took = sqlite_source.make(server.src_url, ctx.sqlite_source)
            print(f"SQLite source written in {took:.1f}s")
        results, verifier = run_suite(runnable, ctx, args.rows, args.reps, args.timeout)
        src_rows = verifier.source_rows()
        total_rows = sum(src_rows.values())
        summary = summarize(results, tools, total_rows, skipped)
        title = (
            f"full load: {src_rows['orders']:,} orders + {src_rows['customers']:,} "
            f"customers = {total_rows:,} rows, {args.reps} reps, median wall "
            f"(ratio = peer time / tool time; >1 is faster)"
        )
        print_table(summary, title)

        scale: dict[str, Any] | None = None
        if args.scale_check:
            scale = scale_check(args, ctx, summary)

        doc = {
            "benchmark": "full_load",
            "started_utc": started.isoformat(),
            "argv": sys.argv[1:] if argv is None else argv,
            "rows": src_rows,
            "reps": args.reps,
            "machine": machine_info(server),
            "summary": summary,
            "runs": [r.__dict__ for r in results],
            "scale_check": scale,
        }
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"full_load-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
        out.write_text(json.dumps(doc, indent=2, default=str, ensure_ascii=False))
        print(f"\nresults: {out.relative_to(BENCH_DIR.parent)}")
        bad = [s["label"] for s in summary if "skipped" not in s and not s["verified"]]
        if bad:
            print(f"\n!!! NOT VERIFIED: {', '.join(bad)}", file=sys.stderr)
            return 1
        return 0
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep:
            server.stop()


def _dask_cluster(ctx: Context) -> Any:
    """A LocalCluster of 2 worker processes (1 thread each) for the replikit-dask tool. Its
    workers are this script's children, not replikit's: the peak RSS reported for that tool
    is the client's alone."""
    try:
        import distributed
    except ImportError:
        return None
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    ctx.dask_address = cluster.scheduler_address
    return cluster


def scale_check(
    args: argparse.Namespace, ctx: Context, summary: list[dict[str, Any]]
) -> dict[str, Any]:
    keys = [k.strip() for k in args.scale_tools.split(",") if k.strip()]
    tools = [TOOLS[k] for k in keys if k in TOOLS]
    runnable = [t for t in tools if not t.availability(ctx)]
    print("\nscale check (peak RSS should stay flat as rows grow 10x)")
    if not runnable:
        print(f"  SKIPPED: none of {keys} available")
        return {"skipped": f"none of {keys} available"}
    big = args.rows * 10
    big_customers = args.customers * 10 if args.customers else None
    generate.generate(ctx.server.src_url, big, big_customers)
    if any(t.source == "sqlite" for t in runnable):
        sqlite_source.make(ctx.server.src_url, ctx.sqlite_source)
    verifier = Verifier(ctx.server)
    out: dict[str, Any] = {"rows": big, "tools": {}}
    small = {s["tool"]: s for s in summary}
    for tool in runnable:
        r = run_once(tool, ctx, verifier, 1, big, args.timeout)
        report_run(r, tool)
        base = small.get(tool.key, {}).get("peak_rss_mb_max")
        big_mb = r.peak_rss_bytes / 2**20 if r.peak_rss_bytes and not r.error else None
        out["tools"][tool.key] = {
            "peak_rss_mb_1x": base,
            "peak_rss_mb_10x": big_mb,
            "wall_s_10x": r.wall_s,
            "verified_10x": r.verified,
            "error": r.error,
        }
        growth = f"{big_mb / base:.2f}x" if base and big_mb else "n/a"
        b1 = f"{base:.0f}" if base else "n/a"
        b10 = f"{big_mb:.0f}" if big_mb else "n/a"
        print(
            f"  {tool.label:<26} peak RSS {b1} MB @ {args.rows:,} rows -> {b10} MB @ "
            f"{big:,} rows ({growth}); verified: {'yes' if r.verified else 'NO'}"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())

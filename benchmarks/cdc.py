"""CDC benchmark, PostgreSQL -> PostgreSQL: replikit vs PostgreSQL's own logical replication.

    .venv/bin/python benchmarks/cdc.py                      # quick: 200k-change backlog
    .venv/bin/python benchmarks/cdc.py --changes 1000000    # the full run

One run, one throwaway server (``pgserver.py`` with ``wal_level=logical``), the source and
every target a database of it:

1. **Backlog drain.** Every consumer gets its slot while the source holds ``--initial`` rows
   (replikit: a ``full-load-and-cdc`` run that loads the table and stops when idle; native: a
   copy of the rows, a slot, a disabled subscription). With nothing consuming, the source
   commits ``--changes`` changes (single-row and 10-row transactions, 60/30/10
   insert/update/delete). Then each consumer alone drains its slot: the time from starting it
   (spawning replikit; ``ALTER SUBSCRIPTION ... ENABLE``) until the target has applied the
   last source transaction (replikit's checkpoint; the subscription's replication origin).
   replikit runs as a child process whose process-tree RSS is sampled every 50 ms.
2. **Lag at a fixed rate.** Each consumer alone, caught up, while a load generator commits
   single-row transactions at ``--rate`` per second for ``--lag-seconds``; a trigger on the
   target logs, per applied row, the row's source ``clock_timestamp()`` and its arrival time.
3. **Verification** after every drain and lag run: per-table checksums of the target equal
   the source's, or the run is reported as failed.

See benchmarks/README.md ("CDC").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import _cdcload as load  # noqa: E402
import full_load  # noqa: E402
import pgserver  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
SRC_DB, NATIVE = load.SRC_DB, load.NATIVE
POLL = 0.02
MB = 2**20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- consumers ------------------------------------------------------------------------------


@dataclass
class Ctx:
    server: pgserver.PgServer
    workdir: Path
    profile: bool = False
    timeout: float = 1800.0
    stall: float = 120.0
    async_commit: bool = False
    child_prefix: str | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def src_url(self) -> str:
        return self.server.url(SRC_DB)


@dataclass
class Replikit:
    """replikit as a child process (``_cdcload.py replikit``)."""

    key: str
    mode: str
    db: str
    batch: bool
    tool: str = "replikit"
    proc: subprocess.Popen[bytes] | None = None
    rss: load.RssTimeline | None = None
    runs: int = 0

    @property
    def task_id(self) -> str:
        return self.key.replace("-", "_")

    def setup(self, ctx: Ctx) -> None:
        """Full load of the initial rows, which creates the slot; stops once idle."""
        self.start(ctx, idle=0.5)
        out = self.finish(ctx, wait=True)
        if not out.get("ok"):
            raise RuntimeError(f"{self.key} initial load failed: {out.get('error')}")

    def start(self, ctx: Ctx, *, stop_at: int | None = None, idle: float | None = None) -> None:
        self.runs += 1
        cmd = [sys.executable, str(BENCH_DIR / "_cdcload.py"), "replikit", ctx.src_url]
        cmd += [ctx.server.url(self.db), "--task-id", self.task_id]
        if self.batch:
            cmd.append("--batch-apply")
        if stop_at is not None:
            cmd += ["--stop-at", f"{stop_at >> 32:X}/{stop_at & 0xFFFFFFFF:X}"]
        if idle is not None:
            cmd += ["--stop-when-idle", str(idle)]
        if ctx.profile and stop_at is not None:
            cmd += ["--profile", str(RESULTS_DIR / f"cdc-profile-{self.key}")]
        if ctx.child_prefix and stop_at is not None:
            cmd = shlex.split(ctx.child_prefix.format(key=self.key)) + cmd
        self._out = ctx.workdir / f"{self.key}-{self.runs}.out"
        self._err = ctx.workdir / f"{self.key}-{self.runs}.err"
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        ctx.procs.append(self.proc)
        self.rss = load.RssTimeline(self.proc.pid)
        self.rss.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def gone(self) -> str:
        code = self.proc.returncode if self.proc else None
        return f"replikit exited early ({code}): {self._tail()}"

    def applied(self, conn: psycopg.Connection[Any]) -> int | None:
        try:
            row = conn.execute(
                "SELECT position FROM replikit.replikit_checkpoints WHERE task = %s",
                (self.task_id,),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return load.lsn_int(row[0]) if row and row[0] else None

    def finish(self, ctx: Ctx, *, wait: bool = False) -> dict[str, Any]:
        """Stop (SIGTERM unless ``wait``), collect the child's JSON."""
        assert self.proc is not None
        assert self.rss is not None
        if not wait and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=ctx.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.rss.stop()
        lines = [ln for ln in self._out.read_text().splitlines() if ln.startswith("{")]
        try:  # the last JSON line: a --child-prefix tool may print after it
            out: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        except ValueError:
            out = {}
        if code != 0 or not out:
            out = {**out, "ok": False, "error": out.get("error") or f"exit {code}: {self._tail()}"}
        return out

    def _tail(self) -> str:
        return self._err.read_text(errors="replace").strip()[-1500:]


@dataclass
class Native:
    """PostgreSQL's publication + subscription between two databases of the cluster."""

    key: str = "native"
    mode: str = "subscription"
    db: str = "cdc_native"
    tool: str = "PostgreSQL"
    rss: load.RssTimeline | None = None

    def setup(self, ctx: Ctx) -> None:
        load.copy_tables(ctx.src_url, ctx.server.url(self.db))
        tables = ", ".join(load.TABLES)
        with psycopg.connect(ctx.src_url, autocommit=True) as conn:
            conn.execute(f"CREATE PUBLICATION {NATIVE} FOR TABLE {tables}")
            # The slot first: CREATE SUBSCRIPTION creating it in the same cluster hangs.
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (NATIVE,))
        s = ctx.server
        info = f"host=127.0.0.1 port={s.port or 5432} dbname={SRC_DB} user=postgres"
        if s.external:
            info = psycopg.conninfo.make_conninfo(s.url(SRC_DB))
        with psycopg.connect(s.url(self.db), autocommit=True) as conn:
            conn.execute(
                f"CREATE SUBSCRIPTION {NATIVE} CONNECTION '{info}' PUBLICATION {NATIVE} WITH "
                f"(create_slot = false, slot_name = '{NATIVE}', copy_data = false, "
                "enabled = false)"
            )

    def start(self, ctx: Ctx, **_: Any) -> None:
        with psycopg.connect(ctx.server.url(self.db), autocommit=True) as conn:
            conn.execute(f"ALTER SUBSCRIPTION {NATIVE} ENABLE")

    def alive(self) -> bool:
        return True

    def gone(self) -> str:
        return ""

    def applied(self, conn: psycopg.Connection[Any]) -> int | None:
        row = conn.execute(
            "SELECT remote_lsn::text FROM pg_replication_origin_status o"
            " JOIN pg_subscription s ON o.external_id = 'pg_' || s.oid WHERE s.subname = %s",
            (NATIVE,),
        ).fetchone()
        return load.lsn_int(row[0]) if row and row[0] else None

    def finish(self, ctx: Ctx, **_: Any) -> dict[str, Any]:
        with psycopg.connect(ctx.server.url(self.db), autocommit=True) as conn:
            conn.execute(f"ALTER SUBSCRIPTION {NATIVE} DISABLE")
        with psycopg.connect(ctx.src_url, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the walsender must let go of the slot
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (NATIVE,)
                ).fetchone()
                if not row or not row[0]:
                    break
                time.sleep(0.05)
        return {"ok": True}


Consumer = Replikit | Native


def wait_applied(ctx: Ctx, consumer: Consumer, lsn: int) -> tuple[float, float]:
    """Poll until ``consumer`` applied a source transaction ending after ``lsn``.

    Returns the time of that and the time the applied position first moved. Fails when the
    position does not move for ``ctx.stall`` seconds.
    """
    first = last = None
    moved = time.monotonic()
    with psycopg.connect(ctx.server.url(consumer.db), autocommit=True) as conn:
        while True:
            alive = consumer.alive()  # before reading: a child may finish, then exit
            got = consumer.applied(conn)
            now = time.perf_counter()
            if first is None and last is not None and got != last:
                first = now
            if got is not None and got > lsn:
                return now, first or now
            if not alive:
                raise RuntimeError(consumer.gone())
            if got != last:
                last, moved = got, time.monotonic()
            elif time.monotonic() - moved > ctx.stall:
                raise TimeoutError(
                    f"{consumer.key}: applied position stuck at {got} for {ctx.stall:.0f} s "
                    f"(waiting for > {lsn}); see the server log"
                )
            time.sleep(POLL)


# -- verification ---------------------------------------------------------------------------


def verify(ctx: Ctx, db: str) -> tuple[bool, str]:
    """Per-table checksums (rows, per column, per row) of ``db`` equal the source's."""
    problems = []
    for table in load.TABLES:
        cols = full_load.source_columns(ctx.src_url, table)
        try:
            want = full_load.pg_checksums(ctx.src_url, table, cols)
            got = full_load.pg_checksums(ctx.server.url(db), table, cols)
        except psycopg.Error as exc:
            problems.append(f"{table}: {str(exc).strip()}")
            continue
        diffs = [k for k in want if want[k] != got.get(k)]
        if diffs:
            detail = ", ".join(f"{k} src={want[k]} dst={got.get(k)}" for k in diffs[:4])
            problems.append(f"{table}: {len(diffs)} checks differ ({detail})")
    return not problems, "; ".join(problems) or "ok"


# -- phases ---------------------------------------------------------------------------------

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def drain(ctx: Ctx, consumer: Consumer, end_lsn: int, changes: int) -> dict[str, Any]:
    """Start ``consumer`` on its backlog; time until it applied the transaction at ``end_lsn``."""
    res: dict[str, Any] = {"changes": changes}
    cpu0 = load.server_cpu(ctx.server)
    t0 = time.perf_counter()
    try:
        consumer.start(ctx, stop_at=end_lsn)
        t1, t_first = wait_applied(ctx, consumer, end_lsn)
    except (RuntimeError, TimeoutError) as exc:
        res["error"] = str(exc)
        if isinstance(consumer, Replikit) and consumer.proc and consumer.proc.poll() is None:
            consumer.proc.kill()
        consumer.finish(ctx, wait=True)
        return res
    out = consumer.finish(ctx, wait=True)
    time.sleep(0.3)  # let the backends of the finished run exit and be reaped
    cpu1 = load.server_cpu(ctx.server)
    res["server_cpu_s"] = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    res["seconds"] = t1 - t0
    res["changes_per_s"] = changes / res["seconds"]
    res["first_apply_s"] = t_first - t0  # until the first applied transaction was seen
    res["steady_changes_per_s"] = changes / (t1 - t_first) if t1 > t_first else None
    if isinstance(consumer, Replikit):
        assert consumer.rss is not None
        res["peak_rss_mb"] = consumer.rss.peak / MB
        at = consumer.rss.at(t_first, t1, FRACTIONS)
        res["rss_mb_at"] = {
            f"{int(f * 100)}%": r / MB if r else None for f, r in zip(FRACTIONS, at, strict=True)
        }
        res["stats"] = out.get("cdc")
        res["client_cpu_s"] = out.get("cpu_s")
        if not out.get("ok"):
            res["error"] = out.get("error")
    res["verified"], res["verification"] = verify(ctx, consumer.db)
    return res


def lag(ctx: Ctx, consumer: Consumer, rate: float, seconds: float) -> dict[str, Any]:
    """Caught-up consumer under ``rate`` single-row transactions/s: per-row arrival lag."""
    res: dict[str, Any] = {"rate": rate}
    try:  # catch up on what the other consumers' lag runs left in the slot, then restart
        consumer.start(ctx)  # so that replikit's own latency statistics start clean
        wait_applied(ctx, consumer, load.marker(ctx.src_url))
    except (RuntimeError, TimeoutError) as exc:
        res["error"] = str(exc)
    consumer.finish(ctx)
    if "error" in res:
        return res
    consumer.start(ctx)
    try:
        wait_applied(ctx, consumer, load.marker(ctx.src_url))
        with psycopg.connect(ctx.server.url(consumer.db), autocommit=True) as conn:
            conn.execute("TRUNCATE bench_lag")
        res["load"] = load.rate_child(ctx.src_url, rate, seconds, async_commit=ctx.async_commit)
        wait_applied(ctx, consumer, load.marker(ctx.src_url))
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        res["error"] = str(exc)
    out = consumer.finish(ctx)
    if "error" in res:
        return res
    if isinstance(consumer, Replikit):
        assert consumer.rss is not None
        res["peak_rss_mb"] = consumer.rss.peak / MB
        cdc = out.get("cdc") or {}
        res["self_p50_ms"], res["self_p99_ms"] = (
            cdc.get("latency_p50_ms"),
            cdc.get("latency_p99_ms"),
        )
        if not out.get("ok"):
            res["error"] = out.get("error")
    res.update(load.lag_stats(ctx.server.url(consumer.db), res["load"]["started_db"]))
    res["expected_rows"] = res["load"]["insert"] + res["load"]["update"]
    res["verified"], res["verification"] = verify(ctx, consumer.db)
    return res


# -- report ---------------------------------------------------------------------------------

TARGET_CHANGES_PER_S = 20_000
TARGET_P99_MS = 250.0
TARGET_RSS_MB = 150.0


def _flat(rss_at: dict[str, float | None]) -> bool | None:
    """The second half of the drain adds no memory: RSS at 75% and 100% of the drain is at
    most 10% + 5 MB above RSS at 50% (the first half includes the warm-up: imports,
    the queue and the batches filling up to their bounds)."""
    half, later = rss_at.get("50%"), [rss_at.get("75%"), rss_at.get("100%")]
    if not half or not all(later):
        return None
    return max(v or 0 for v in later) <= half * 1.10 + 5


def summarize(consumers: list[Consumer], results: dict[str, Any]) -> list[dict[str, Any]]:
    native_s = (results.get("native", {}).get("drain") or {}).get("seconds")
    rows = []
    for c in consumers:
        d = results[c.key].get("drain") or {}
        lg = results[c.key].get("lag") or {}
        errors = [x for x in (d.get("error"), lg.get("error")) if x]
        verified = bool(d.get("verified")) and (not lg or bool(lg.get("verified")))
        secs = d.get("seconds") if not d.get("error") and d.get("verified") else None
        rows.append(
            {
                "key": c.key,
                "tool": c.tool,
                "mode": c.mode,
                "changes": d.get("changes"),
                "seconds": secs,
                "changes_per_s": d.get("changes_per_s") if secs else None,
                "ratio_vs_native": native_s / secs if native_s and secs else None,
                "first_apply_s": d.get("first_apply_s") if secs else None,
                "steady_changes_per_s": d.get("steady_changes_per_s") if secs else None,
                "lag_p50_ms": lg.get("p50_ms") if lg.get("verified") else None,
                "lag_p99_ms": lg.get("p99_ms") if lg.get("verified") else None,
                "lag_rate": (lg.get("load") or {}).get("achieved_rate"),
                "self_p50_ms": lg.get("self_p50_ms") if lg.get("verified") else None,
                "self_p99_ms": lg.get("self_p99_ms") if lg.get("verified") else None,
                "peak_rss_mb": max(d.get("peak_rss_mb") or 0, lg.get("peak_rss_mb") or 0) or None,
                "drain_rss_mb_at": d.get("rss_mb_at"),
                "rss_flat": _flat(d.get("rss_mb_at") or {}),
                "verified": verified and not errors,
                "errors": errors,
                "verification": [d.get("verification"), lg.get("verification")],
            }
        )
    return rows


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_table(rows: list[dict[str, Any]], title: str, rate: float, out: Any) -> None:
    print(f"\n{title}", file=out)
    hdr = (
        f"{'tool':<11} {'mode':<14} {'changes':>9} {'seconds':>8} {'changes/s':>10} "
        f"{'vs native':>9} {'1st apply s':>11} {'lag p50/p99 ms':>15} {'self p50/p99':>13} "
        f"{'peak RSS MB':>11} "
        f"{'RSS 25/50/75/100% MB':>21} {'verified':>8}"
    )
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in rows:
        lag = f"{_f(r['lag_p50_ms'], '.1f')}/{_f(r['lag_p99_ms'], '.1f')}"
        if r["lag_p99_ms"] is not None and (r["lag_rate"] or 0) < 0.9 * rate:
            lag += "*"  # the load generator fell behind: the rate was not reached
        own = f"{_f(r['self_p50_ms'], '.1f')}/{_f(r['self_p99_ms'], '.1f')}"
        at = r["drain_rss_mb_at"] or {}
        rss_at = "/".join(_f(v, ".0f") for v in at.values()) or "-"
        if r["rss_flat"] is False:
            rss_at += " GROWS"
        print(
            f"{r['tool']:<11} {r['mode']:<14} {_f(r['changes'], ',d'):>9} "
            f"{_f(r['seconds'], '.2f') if r['seconds'] else 'FAIL':>8} "
            f"{_f(r['changes_per_s'], ',.0f'):>10} "
            f"{_f(r['ratio_vs_native'], '.2f') + ('x' if r['ratio_vs_native'] else ''):>9} "
            f"{_f(r['first_apply_s'], '.2f'):>11} {lag:>15} {own:>13} "
            f"{_f(r['peak_rss_mb'], '.0f'):>11} {rss_at:>21} "
            f"{'yes' if r['verified'] else 'NO':>8}",
            file=out,
        )
    for r in rows:
        for e in r["errors"]:
            print(f"  !!! {r['tool']} {r['mode']}: {str(e).strip()[-300:]}", file=out)
        for v in r["verification"]:
            if v and v != "ok":
                print(f"  !!! {r['tool']} {r['mode']} NOT VERIFIED: {v[:300]}", file=out)
    behind = [r for r in rows if r["lag_rate"] is not None and r["lag_rate"] < 0.9 * rate]
    for r in behind:
        print(
            f"  * {r['tool']} {r['mode']}: the load generator reached only "
            f"{r['lag_rate']:,.0f} of {rate:,.0f} changes/s (machine busy?)",
            file=out,
        )


def print_targets(rows: list[dict[str, Any]], out: Any) -> None:
    batch = next((r for r in rows if r["key"] == "rk-batch"), None)
    if batch is None:
        return
    checks = [  # label, value, limit, sign (+1: at least, -1: at most), format
        ("batch apply changes/s >=", batch["changes_per_s"], TARGET_CHANGES_PER_S, 1, ",.0f"),
        ("lag p99 ms at the fixed rate <=", batch["lag_p99_ms"], TARGET_P99_MS, -1, ".1f"),
        ("peak RSS MB <=", batch["peak_rss_mb"], TARGET_RSS_MB, -1, ".0f"),
    ]
    print("\ntargets (replikit batch apply):", file=out)
    for label, value, limit, sign, fmt in checks:
        state = "n/a" if value is None else ("met" if sign * (value - limit) >= 0 else "MISSED")
        print(f"  {label} {limit:{fmt}}: {_f(value, fmt)}  {state}", file=out)
    flat = {None: "n/a", True: "met", False: "MISSED"}[batch["rss_flat"]]
    print(f"  RSS flat (at 75% and 100% of the drain <= 1.1x at 50% + 5 MB): {flat}", file=out)


def print_profiles(out: Any) -> None:
    import pstats

    for path in sorted(RESULTS_DIR.glob("cdc-profile-*.prof")):
        print(f"\nprofile {path.name} (top 15 by own time)", file=out)
        stats = pstats.Stats(str(path), stream=out)
        stats.sort_stats("tottime").print_stats(15)


# -- main -----------------------------------------------------------------------------------


def build_consumers(keys: list[str]) -> list[Consumer]:
    known: dict[str, Consumer] = {
        "native": Native(),
        "rk-batch": Replikit("rk-batch", "batch apply", "cdc_rk_batch", batch=True),
        "rk-tx": Replikit("rk-tx", "transactional", "cdc_rk_tx", batch=False),
    }
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise SystemExit(f"unknown tools {unknown}; choose from {list(known)}")
    return [known[k] for k in keys]


def run(args: argparse.Namespace, ctx: Ctx, consumers: list[Consumer]) -> dict[str, Any]:
    src = ctx.src_url
    results: dict[str, Any] = {c.key: {} for c in consumers}
    load.create_source(src, args.initial)
    for c in consumers:
        log(f"setup {c.tool} {c.mode}")
        c.setup(ctx)
    log(f"backlog: {args.changes:,} changes, nothing consuming")
    gen_s = load.backlog(src, args.changes, args.seed)
    end_lsn = load.marker(src)
    log(f"  generated in {gen_s:.1f} s ({args.changes / gen_s:,.0f} changes/s)")
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE orders")
        conn.execute("CHECKPOINT")
    for c in consumers:
        log(f"drain: {c.tool} {c.mode}")
        d = results[c.key]["drain"] = drain(ctx, c, end_lsn, args.changes)
        log(
            f"  {_f(d.get('seconds'), '.2f')} s, {_f(d.get('changes_per_s'), ',.0f')} changes/s, "
            f"peak RSS {_f(d.get('peak_rss_mb'), '.0f')} MB, verified: {d.get('verified')}"
            + (f"  ERROR {d['error']}" if d.get("error") else "")
        )
    if args.lag_seconds > 0:
        for c in consumers:
            with psycopg.connect(ctx.server.url(c.db), autocommit=True) as conn:
                conn.execute(load.LAG_PROBE)
        for c in consumers:
            log(
                f"lag at {args.rate:,.0f} changes/s for {args.lag_seconds:.0f} s: {c.tool} {c.mode}"
            )
            g = results[c.key]["lag"] = lag(ctx, c, args.rate, args.lag_seconds)
            log(
                f"  p50 {_f(g.get('p50_ms'), '.1f')} ms, p99 {_f(g.get('p99_ms'), '.1f')} ms "
                f"(load {_f((g.get('load') or {}).get('achieved_rate'), ',.0f')}/s), "
                f"verified: {g.get('verified')}"
                + (f"  ERROR {g['error']}" if g.get("error") else "")
            )
    return {"backlog_seconds": gen_s, "backlog_changes_per_s": args.changes / gen_s, **results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="replikit CDC benchmark (PostgreSQL -> PostgreSQL)"
    )
    parser.add_argument("--changes", type=int, default=200_000, help="backlog size (200k)")
    parser.add_argument("--initial", type=int, default=100_000, help="initial source rows")
    parser.add_argument("--rate", type=float, default=1000.0, help="lag test rate (changes/s)")
    parser.add_argument("--lag-seconds", type=float, default=20.0, help="0 skips the lag test")
    parser.add_argument("--tools", default="native,rk-batch,rk-tx", help="subset, in run order")
    parser.add_argument("--seed", type=float, default=0.42)
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="lag load with synchronous_commit=off (consumers then wait for the WAL writer)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the replikit drains")
    parser.add_argument(
        "--child-prefix",
        help="command put before the replikit drain child ({key}: the tool), e.g. "
        "'py-spy record --threads -f raw -o /tmp/spy-{key}.txt --'",
    )
    parser.add_argument("--keep", action="store_true", help="keep the server (pgserver.py)")
    parser.add_argument("--json", action="store_true", help="print the JSON result on stdout")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per wait, seconds")
    args = parser.parse_args(argv)

    consumers = build_consumers([k.strip() for k in args.tools.split(",") if k.strip()])
    started = dt.datetime.now(dt.UTC)
    server, owned = load.start_server(args.keep)
    dbs = [SRC_DB] + [c.db for c in consumers]
    ctx = Ctx(
        server, Path(tempfile.mkdtemp(prefix="replikit-bench-cdc-")), args.profile, args.timeout
    )
    ctx.async_commit, ctx.child_prefix = args.async_commit, args.child_prefix
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # run the cleanup
    RESULTS_DIR.mkdir(exist_ok=True)
    for old in RESULTS_DIR.glob("cdc-profile-*.prof"):
        old.unlink()
    log(f"server: {server.admin_url} ({'external' if server.external else server.base_dir})")
    try:
        load.cleanup(server, dbs)
        for db in dbs:
            server.recreate_db(db)
        t0 = time.perf_counter()
        results = run(args, ctx, consumers)
        elapsed = time.perf_counter() - t0
        info = full_load.machine_info(server)
    finally:
        for proc in ctx.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        load.cleanup(server, dbs)
        shutil.rmtree(ctx.workdir, ignore_errors=True)
        if owned and not args.keep:
            server.stop()
    rows = summarize(consumers, results)
    out = sys.stderr if args.json else sys.stdout
    title = (
        f"CDC PostgreSQL -> PostgreSQL: backlog of {args.changes:,} changes (1- and 10-row "
        f"transactions, 60/30/10 insert/update/delete) on {args.initial:,} rows, generated at "
        f"{results['backlog_changes_per_s']:,.0f} changes/s; lag at {args.rate:,.0f} single-row "
        f"tx/s for {args.lag_seconds:.0f} s.\nvs native = native drain time / tool drain time "
        "(>1 is faster); lag = target arrival - source clock_timestamp(), per row; self = "
        "replikit's own statistics().cdc latency"
    )
    print_table(rows, title, args.rate, out)
    print_targets(rows, out)
    if args.profile:
        print_profiles(out)
    doc = {
        "benchmark": "cdc",
        "started_utc": started.isoformat(),
        "argv": sys.argv[1:] if argv is None else argv,
        "elapsed_s": elapsed,
        "machine": info,
        "settings": dict(pgserver.SERVER_SETTINGS),
        "summary": rows,
        "results": results,
    }
    path = RESULTS_DIR / f"cdc-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nresults: {path.relative_to(BENCH_DIR.parent)} ({elapsed:.0f} s)", file=out)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    bad = [f"{r['tool']} {r['mode']}" for r in rows if not r["verified"]]
    if bad:
        print(f"\n!!! FAILED / NOT VERIFIED: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""MariaDB binlog CDC micro-benchmark: replikit's reader vs a minimal mysql-replication loop.

Both read the same binlog range in the same run, so the ratio is what matters:

* ``single``: 100k single-row transactions (autocommit ``UPDATE`` of one row each);
* ``batch``: 100 transactions of 1000-row ``UPDATE`` s;
* ``lag`` (with ``--lag``): a writer commits single-row inserts at a fixed rate for a few
  seconds while a blocking reader follows; lag = the reader's receive time minus the writer's
  commit time (same clock), p50/p99.

The peer is the smallest useful python-mysql-replication consumer: ``BinLogStreamReader``
(file/offset, non-blocking, ``only_events`` = row events + XID) touching every row image. The
replikit side is :class:`replikit.endpoints.mysql.cdc.MysqlChangeReader` yielding
``Transaction`` s of ``Change`` s with canonical values.

Server: ``REPLIKIT_BENCH_MYSQL_URL`` (an account that may create databases and read the
binlog), else a private MariaDB started in a temp dir (``mariadb-install-db`` + ``mariadbd`` on
a free port; as root it runs as the ``mysql`` user) with ``binlog_format=ROW``,
``binlog_row_image=FULL``, ``binlog_row_metadata=FULL``, ``sync_binlog=0``,
``innodb_flush_log_at_trx_commit=0``.

Run::

    .venv/bin/python benchmarks/mysql_cdc_micro.py [--single 100000] [--batch 100] [--lag]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from replikit.endpoints.mysql import cdc
from replikit.endpoints.mysql._binlog_server import Server
from replikit.endpoints.mysql._params import ConnParams
from replikit.endpoints.mysql._positions import BinlogPosition
from replikit.schema.model import TableId

DB = "bench_cdc"
TABLE = (
    "CREATE TABLE t (id BIGINT PRIMARY KEY, a INT NOT NULL, b VARCHAR(32), c DECIMAL(12,2),"
    " d DATETIME(6), e DOUBLE)"
)


# -- server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def mariadb() -> Iterator[str]:
    """The admin URL of a server to benchmark on."""
    url = os.environ.get("REPLIKIT_BENCH_MYSQL_URL")
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="replikit-cdc-bench-"))
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if user:
        shutil.chown(root, "mysql", "mysql")
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={root}/data",
         "--auth-root-authentication-method=normal", "--skip-test-db", *user],
        check=True, capture_output=True,
    )  # fmt: skip
    port = _free_port()
    proc = subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={root}/data", f"--port={port}",
         f"--socket={root}/sock", "--bind-address=127.0.0.1", "--server-id=1",
         f"--log-bin={root}/binlog", "--binlog-format=ROW", "--binlog-row-image=FULL",
         "--binlog-row-metadata=FULL", "--sync-binlog=0", "--innodb-flush-log-at-trx-commit=0",
         "--innodb-buffer-pool-size=256M", "--performance-schema=OFF", "--skip-name-resolve",
         f"--log-error={root}/err.log", *user],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                conn = pymysql.connect(unix_socket=f"{root}/sock", user="root", autocommit=True)
                break
            except pymysql.Error:
                time.sleep(0.1)
        else:
            raise SystemExit(f"mariadbd did not start; see {root}/err.log")
        with conn, conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
            cur.execute("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        yield f"mysql://root@127.0.0.1:{port}/mysql"
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(root, ignore_errors=True)


# -- workloads -----------------------------------------------------------------------------


def _run(conn: Any, *statements: str) -> None:
    with conn.cursor() as cur:
        for s in statements:
            cur.execute(s)


def single_row_txs(conn: Any, n: int) -> None:
    """``n`` autocommit single-row UPDATEs (a stored procedure: one round trip)."""
    _run(
        conn,
        "DROP PROCEDURE IF EXISTS bench_single",
        "CREATE PROCEDURE bench_single(n INT) BEGIN DECLARE i INT DEFAULT 0; "
        "WHILE i < n DO UPDATE t SET a = a + 1, e = e * 1.5 WHERE id = i % 10000; "
        "SET i = i + 1; END WHILE; END",
        f"CALL bench_single({n})",
    )


def batch_txs(conn: Any, n: int, rows: int = 1000) -> None:
    """``n`` transactions, each one UPDATE of ``rows`` rows."""
    for i in range(n):
        lo = (i * rows) % 10000
        _run(
            conn,
            f"UPDATE t SET a = a + 1, b = CONCAT('v', a) WHERE id >= {lo} AND id < {lo + rows}",
        )


# -- readers -------------------------------------------------------------------------------


def peer(settings: dict[str, Any], start: BinlogPosition) -> int:
    """The minimal python-mysql-replication consumer; rows seen."""
    stream = BinLogStreamReader(
        connection_settings=dict(settings),
        server_id=4242,
        log_file=start.file,
        log_pos=start.pos,
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent],
        enable_logging=False,
    )
    rows = 0
    try:
        for event in stream:
            if isinstance(event, XidEvent):
                continue
            for row in event.rows:
                rows += 1 if row else 0
    finally:
        stream.close()
    return rows


def replikit(params: ConnParams, tables: Any, start: BinlogPosition) -> int:
    """replikit's change reader; changes seen."""
    count = 0
    with cdc.MysqlChangeReader(params, tables, task="bench", blocking=False) as reader:
        for tx in reader.transactions(start):
            count += len(tx.changes)
    return count


def measure(name: str, runs: int, read: Callable[[], int]) -> tuple[float, int]:
    rates = []
    count = 0
    for _ in range(runs):
        began = time.perf_counter()
        count = read()
        rates.append(count / (time.perf_counter() - began))
    best = max(rates)
    median = statistics.median(rates)
    print(f"  {name:<28} {count:>8} changes  best {best:>9,.0f}/s  median {median:>9,.0f}/s")
    return best, count


def lag(params: ConnParams, tables: Any, conn: Any, rate: int, seconds: float) -> None:
    start = cdc.start(params, tables, task="bench")
    lags: list[float] = []
    reader = cdc.MysqlChangeReader(params, tables, task="bench", heartbeat=0.5)
    total = int(rate * seconds)

    def follow() -> None:
        for tx in reader.transactions(start):
            now = time.time()
            lags.extend(
                now - c.after["e"] for c in tx.changes if c.after and c.after["id"] >= 10**6
            )
            if len(lags) >= total:
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    began = time.perf_counter()
    with conn.cursor() as cur:
        for i in range(total):
            due = began + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            cur.execute(
                "INSERT INTO t VALUES (%s, 0, 'lag', 0, NOW(6), %s)", (10**6 + i, time.time())
            )
    thread.join(30)
    reader.close()
    lags.sort()
    ms = [x * 1000 for x in lags]
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    print(
        f"  lag at {rate} changes/s for {seconds:.0f} s: {len(ms)} changes, "
        f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {ms[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--single", type=int, default=100_000, help="single-row transactions")
    parser.add_argument("--batch", type=int, default=100, help="1000-row transactions")
    parser.add_argument("--runs", type=int, default=3, help="reads per reader (best is kept)")
    parser.add_argument("--lag", action="store_true", help="also measure lag at 1000 changes/s")
    args = parser.parse_args()
    with mariadb() as admin:
        base = admin.rsplit("/", 1)[0]
        url = f"{base}/{DB}"
        params = ConnParams.from_url(url, url)
        conn = pymysql.connect(**params.pymysql_kwargs(database=None), autocommit=True)
        _run(conn, f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}", f"USE {DB}", TABLE)
        _run(conn, "INSERT INTO t SELECT seq, 0, 'x', 1.25, NOW(6), 1 FROM seq_0_to_9999")
        tables = [Server(params).reflect(TableId(DB, "t"))]
        settings = {k: v for k, v in params.pymysql_kwargs().items() if k != "database"}
        print(f"MariaDB {conn.get_server_info()}, Python {sys.version.split()[0]}")
        for name, generate, n in (
            ("single-row txs", single_row_txs, args.single),
            ("1000-row txs", batch_txs, args.batch),
        ):
            start = cdc.start(params, tables, task="bench")
            began = time.perf_counter()
            generate(conn, n)
            print(f"{name}: {n} transactions generated in {time.perf_counter() - began:.1f} s")
            peer_rate, peer_rows = measure(
                "mysql-replication loop", args.runs, lambda s=start: peer(settings, s)
            )
            rk_rate, rk_rows = measure(
                "replikit MysqlChangeReader", args.runs, lambda s=start: replikit(params, tables, s)
            )
            assert rk_rows == peer_rows, (rk_rows, peer_rows)
            print(f"  ratio replikit / peer: {rk_rate / peer_rate:.2f}x")
        if args.lag:
            lag(params, tables, conn, rate=1000, seconds=5)
        conn.close()


if __name__ == "__main__":
    main()

"""Decode throughput of the PostgreSQL change reader: 100k single-row transactions, each mode.

A benchmark, so opt-in: ``REPLIKIT_BENCH=1 .venv/bin/pytest -s -p no:randomly -n 0
tests/endpoints/postgres/test_pg_cdc_perf.py`` (``REPLIKIT_BENCH_TXS`` changes the count).
The time counts reading, decoding, typing and assembling into Transactions, acknowledging
each one, until the reader has been idle (the idle wait itself is subtracted).
"""

import os
import time

import psycopg
import pytest

import replikit as rk
from replikit.endpoints.postgres import cdc

pytestmark = pytest.mark.skipif(
    not os.environ.get("REPLIKIT_BENCH"), reason="benchmark: set REPLIKIT_BENCH=1 to run"
)
IDLE = 0.5


def test_decode_throughput(pg_url: str) -> None:
    n = int(os.environ.get("REPLIKIT_BENCH_TXS", "100000"))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE b (id int PRIMARY KEY, n int NOT NULL, s text)")
        conn.execute("INSERT INTO b SELECT g, 0, 'x' FROM generate_series(1, 1000) g")
        ep = rk.endpoint(pg_url)
        tables = list(ep.reflect().tables)
        starts = {}
        for mode in ("stream", "poll"):
            cdc.setup(ep.params, tables, task=f"bench_{mode}")
            starts[mode] = cdc.start(ep.params, tables, task=f"bench_{mode}")
        t0 = time.perf_counter()
        conn.execute(
            f"DO $$ BEGIN FOR i IN 1..{n} LOOP"
            " UPDATE b SET n = n + 1 WHERE id = 1 + i % 1000; COMMIT; END LOOP; END $$"
        )
        conn.execute("SET synchronous_commit = on; UPDATE b SET s = 'end' WHERE id = 1")
        print(f"\n{n} single-row update transactions written in {time.perf_counter() - t0:.1f} s")
    try:
        for mode in ("stream", "poll"):
            reader = cdc.PostgresChangeReader(
                ep.params, tables, task=f"bench_{mode}", mode=mode, stop_when_idle=IDLE
            )
            with reader:
                t0 = time.perf_counter()
                changes = 0
                for tx in reader.transactions(starts[mode]):
                    changes += len(tx.changes)
                    reader.ack(tx.position)
                elapsed = time.perf_counter() - t0 - IDLE
            print(f"{mode}: {changes} changes in {elapsed:.2f} s = {changes / elapsed:,.0f}/s")
            assert changes == n + 1
    finally:
        for mode in ("stream", "poll"):
            cdc.teardown(ep.params, task=f"bench_{mode}")

"""Full load + CDC handoff on a real server: the exported snapshot of the slot's creation, read
by parallel loaders while a writer keeps changing the table, then the changes replayed from the
slot's consistent point give exactly the source, with no overlap and no gap."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

import replikit as rk
from replikit.changes import Op
from replikit.endpoints.postgres import cdc
from replikit.endpoints.postgres.source import PostgresReader
from replikit.pipeline.contracts import ChangeReader

TASK = "handoff"
HANG = 60.0  # turns a writer or reader that would block for ever into a failure
MARKER = -1  # the key of the row whose change ends a read


class Progress:
    """A count of the writer's commits the test can wait on (instead of sleeping)."""

    def __init__(self) -> None:
        self.commits = 0
        self.changed = threading.Condition()

    def tick(self) -> None:
        with self.changed:
            self.commits += 1
            self.changed.notify_all()

    def wait_for_more(self, n: int) -> None:
        with self.changed:
            target = self.commits + n
            assert self.changed.wait_for(lambda: self.commits >= target, timeout=HANG)


def _writer(url: str, stop: threading.Event, counts: dict[str, int], progress: Progress) -> None:
    rng = random.Random(7)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        next_id = 10_000
        while not stop.is_set():
            progress.tick()
            roll = rng.random()
            with conn.transaction():
                if roll < 0.5:
                    conn.execute("INSERT INTO h VALUES (%s, 0)", (next_id,))
                    next_id += 1
                    counts["insert"] += 1
                elif roll < 0.8:
                    conn.execute(
                        "UPDATE h SET v = v + 1 WHERE id = %s", (rng.randrange(1, next_id),)
                    )
                    counts["update"] += 1
                else:
                    conn.execute("DELETE FROM h WHERE id = %s", (rng.randrange(1, next_id),))
                    counts["delete"] += 1


def _current(url: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT id, v FROM h").fetchall())  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["stream", "poll"])
def test_snapshot_handoff_is_exact_under_concurrent_writes(pg_url: str, mode: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE h (id int PRIMARY KEY, v int NOT NULL)")
        conn.execute("INSERT INTO h SELECT g, 0 FROM generate_series(1, 5000) g")
        conn.execute("ANALYZE h")
    ep = rk.endpoint(pg_url)
    tables = list(ep.reflect().tables)
    ep.cdc_setup(tables, task=TASK)  # through the endpoint, as a task does
    stop = threading.Event()
    counts = {"insert": 0, "update": 0, "delete": 0}
    progress = Progress()
    writer = threading.Thread(target=_writer, args=(pg_url, stop, counts, progress))
    writer.start()
    try:
        progress.wait_for_more(50)
        target: dict[int, int] = {}
        with ep.cdc_snapshot(tables, task=TASK) as (reader, start):
            assert isinstance(reader, PostgresReader)
            progress.wait_for_more(50)  # the writer moves on; the snapshot must not see it
            units = reader.units(tables[0], split_rows=1000)
            assert len(units) > 1

            def load(unit: Any) -> list[tuple[int, int]]:
                return [tuple(r) for b in reader.read(unit) for r in b.rows]  # type: ignore[misc]

            with ThreadPoolExecutor(4) as pool:
                for rows in pool.map(load, units):
                    for key, value in rows:
                        assert key not in target
                        target[key] = value
        progress.wait_for_more(50)
    finally:
        stop.set()
        writer.join()
    assert min(counts.values()) > 10, counts
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the last change to read
        conn.execute("SET synchronous_commit = on")
        conn.execute("INSERT INTO h VALUES (%s, 0)", (MARKER,))
    overlap = gaps = applied = 0
    with ep.cdc_reader(tables, task=TASK, mode=mode, stop_when_idle=HANG) as changes:
        assert isinstance(changes, ChangeReader)
        for tx in changes.transactions(start):
            if any(c.key["id"] == MARKER for c in tx.changes):
                break
            for c in tx.changes:
                key = c.key["id"]
                applied += 1
                if c.op is Op.INSERT:
                    overlap += key in target
                    assert c.after is not None
                    target[key] = c.after["v"]
                elif c.op is Op.UPDATE:
                    gaps += key not in target
                    assert c.after is not None
                    target[key] = c.after["v"]
                else:
                    gaps += key not in target
                    target.pop(key, None)
    assert (overlap, gaps) == (0, 0)
    assert applied > 50
    assert target == {k: v for k, v in _current(pg_url).items() if k != MARKER}
    ep.cdc_teardown(task=TASK)


def test_snapshot_replaces_a_leftover_slot_and_keeps_the_slot_after_a_failed_load(
    pg_url: str,
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE h (id int PRIMARY KEY, v int NOT NULL)")
        ep = rk.endpoint(pg_url)
        tables = list(ep.reflect().tables)
        cdc.setup(ep.params, tables, task=TASK)
        first = cdc.start(ep.params, tables, task=TASK)
        conn.execute("SET synchronous_commit = on; INSERT INTO h VALUES (1, 1)")
        seen: list[Any] = []

        def failed_load() -> None:
            with cdc.snapshot(ep.params, tables, task=TASK) as (reader, start):
                (unit,) = reader.units(tables[0])
                seen.append((start, [tuple(r) for b in reader.read(unit) for r in b.rows]))
                raise RuntimeError("load failed")

        with pytest.raises(RuntimeError, match="load failed"):
            failed_load()
        ((start, rows),) = seen
        assert start > first and rows == [(1, 1)]  # a new slot, made after the insert
        assert cdc.start(ep.params, tables, task=TASK) == start  # kept for a resumed load
        cdc.teardown(ep.params, task=TASK)


def test_a_dead_snapshot_is_a_lost_position(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE h (id int PRIMARY KEY, v int NOT NULL)")
    ep = rk.endpoint(pg_url)
    tables = list(ep.reflect().tables)
    reader = PostgresReader(ep.params, tables, snapshot="00000003-00000002-1")
    with reader, pytest.raises(rk.PositionLostError, match="cannot import snapshot"):
        list(reader.read(reader.units(tables[0])[0]))


def test_changes_stream_while_the_snapshot_is_being_loaded(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute("CREATE TABLE h (id int PRIMARY KEY, v int NOT NULL)")
        conn.execute("INSERT INTO h VALUES (1, 1)")
        ep = rk.endpoint(pg_url)
        tables = list(ep.reflect().tables)
        ep.cdc_setup(tables, task=TASK)
        with ep.cdc_snapshot(tables, task=TASK) as (reader, start):
            conn.execute("INSERT INTO h VALUES (2, 2)")
            conn.execute("INSERT INTO h VALUES (%s, 0)", (MARKER,))
            with ep.cdc_reader(tables, task=TASK, mode="stream", stop_when_idle=HANG) as changes:
                txs = []  # the slot is free during the load
                for tx in changes.transactions(start):
                    if any(c.key["id"] == MARKER for c in tx.changes):
                        break
                    txs.append(tx)
            (unit,) = reader.units(tables[0])
            rows = [tuple(r) for b in reader.read(unit) for r in b.rows]  # still importable
        assert rows == [(1, 1)]
        assert [[dict(c.key) for c in tx.changes] for tx in txs] == [[{"id": 2}]]
        ep.cdc_teardown(task=TASK)

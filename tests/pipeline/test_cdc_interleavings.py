"""Hypothesis: random change sequences on a live source while a full-load-and-cdc task runs.

Each example creates a source with random rows, starts the task, and applies a random sequence
of transactions (inserts, updates of random column subsets, primary-key changes, deletes, NULLs,
large incompressible TOASTed values, every mapped type) with random pauses, so that changes
land before the snapshot, during the full load (cached) and during streaming. A marker row
written last tells when the target has caught up; then source and target must be equal.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

import replikit as rk

PG_TABLE = """
CREATE TABLE t (
    id integer PRIMARY KEY,
    i8 bigint,
    n numeric(14,4),
    f8 double precision,
    b boolean,
    d date,
    ts timestamp(6),
    tz timestamptz,
    s text,
    big text,
    raw bytea,
    jb jsonb,
    u uuid,
    arr text[]
);
ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE marker (id integer PRIMARY KEY);
"""

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
PG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "i8": st.integers(-(2**63), 2**63 - 1),
    "n": st.decimals(-(10**10) + 1, 10**10 - 1, places=4, allow_nan=False),
    "f8": st.floats(allow_nan=True, allow_infinity=True),
    "b": st.booleans(),
    "d": st.dates(date(1, 1, 1), date(9999, 12, 31)),
    "ts": st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30)),
    "tz": st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC)),
    "s": texts,
    # incompressible and > 2 kB: stored out of line, so unchanged values are not re-sent
    "big": st.binary(min_size=1500, max_size=3000).map(bytes.hex),
    "raw": st.binary(max_size=40),
    "jb": st.dictionaries(texts, st.integers() | texts, max_size=3).map(Jsonb),
    "u": st.uuids(),
    "arr": st.lists(texts, max_size=3),
}
SQLITE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "i8": st.integers(-(2**63), 2**63 - 1),
    "f8": st.floats(allow_nan=False),
    "s": texts,
    "raw": st.binary(max_size=40),
}
SQLITE_TABLE = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY, i8 INTEGER, f8 REAL, s TEXT, raw BLOB)",
    "CREATE TABLE marker (id INTEGER PRIMARY KEY)",
)


@dataclass(frozen=True)
class Step:
    op: str  # insert | update | move | delete
    key: int
    values: dict[str, Any]
    new_key: int = 0
    pause: float = 0.0


def rows(values: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={c: st.none() | s for c, s in values.items()})


def steps(values: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[list[list[Step]]]:
    keys = st.integers(1, 12)
    step = st.one_of(
        st.builds(Step, op=st.just("insert"), key=keys, values=rows(values)),
        st.builds(Step, op=st.just("update"), key=keys, values=rows(values)),
        st.builds(Step, op=st.just("move"), key=keys, values=st.just({}), new_key=keys),
        st.builds(Step, op=st.just("delete"), key=keys, values=st.just({})),
    )
    pauses = st.sampled_from([0.0, 0.0, 0.005, 0.02])
    tx = st.tuples(st.lists(step, min_size=1, max_size=3), pauses).map(
        lambda p: [Step(s.op, s.key, s.values, s.new_key, p[1]) for s in p[0]]
    )
    return st.lists(tx, min_size=1, max_size=25)


def _statement(step: Step, param: str) -> tuple[str, tuple[Any, ...]] | None:
    """The SQL of one step (no-op steps are skipped: they only waste an example)."""
    cols = list(step.values)
    if step.op == "insert":
        names = ", ".join(["id", *cols])
        marks = ", ".join([param] * (len(cols) + 1))
        conflict = "ON CONFLICT (id) DO NOTHING"
        return (
            f"INSERT INTO t ({names}) VALUES ({marks}) {conflict}",
            (step.key, *step.values.values()),
        )
    if step.op == "update":
        if not cols:
            return None
        sets = ", ".join(f"{c} = {param}" for c in cols)
        return f"UPDATE t SET {sets} WHERE id = {param}", (*step.values.values(), step.key)
    if step.op == "move":
        if step.new_key == step.key:
            return None
        return (
            f"UPDATE t SET id = {param} WHERE id = {param} "
            f"AND NOT EXISTS (SELECT 1 FROM t WHERE id = {param})",
            (step.new_key, step.key, step.new_key),
        )
    return f"DELETE FROM t WHERE id = {param}", (step.key,)


def _play(connect: Any, param: str, txs: list[list[Step]], errors: list[BaseException]) -> None:
    try:
        conn = connect()
        try:
            for tx in txs:
                for s in tx:
                    statement = _statement(s, param)
                    if statement is not None:
                        conn.execute(*statement)
                conn.commit()
                if tx[0].pause:
                    time.sleep(tx[0].pause)
            conn.execute(f"INSERT INTO marker (id) VALUES ({param})", (1,))
            conn.commit()
        finally:
            conn.close()
    except BaseException as exc:
        errors.append(exc)


def _run(source: Any, target_url: str, connect: Any, param: str, txs: list[list[Step]]) -> rk.Task:
    task = rk.Task(
        source,
        target_url,
        migration_type="full-load-and-cdc",
        settings=rk.TaskSettings(task_id="hyp", progress=False, batch_apply=len(txs) % 2 == 0),
    )
    errors: list[BaseException] = []
    runner = threading.Thread(target=lambda: _guard(task, errors), daemon=True)
    runner.start()
    player = threading.Thread(target=_play, args=(connect, param, txs, errors), daemon=True)
    player.start()
    player.join(60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not errors and not _caught_up(task):
        time.sleep(0.05)
    task.stop()
    runner.join(60)
    assert not errors, errors
    return task


def _caught_up(task: rk.Task) -> bool:
    """The marker row (written after every step) reached the target, by load or by CDC."""
    if task.phase != "cdc":
        return False
    return any(
        s.table.rsplit(".", 1)[-1] == "marker" and s.full_load_rows + s.inserts >= 1
        for s in task.statistics()
    )


def _guard(task: rk.Task, errors: list[BaseException]) -> None:
    try:
        task.run()
    except BaseException as exc:
        errors.append(exc)


def _pg_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(_norm(v) for v in r) for r in conn.execute("SELECT * FROM t ORDER BY id")]


def _norm(v: Any) -> Any:
    return "nan" if isinstance(v, float) and v != v else v


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(initial=st.lists(rows(PG_VALUES), max_size=6), txs=steps(PG_VALUES))
def test_pg_to_pg_random_interleavings_converge(
    pg_server: Any, initial: list[dict[str, Any]], txs: list[list[Step]]
) -> None:
    src_name, dst_name = (f"hyp_{uuid.uuid4().hex[:10]}" for _ in range(2))
    src, dst = pg_server.create_database(src_name), pg_server.create_database(dst_name)
    try:
        with psycopg.connect(src) as conn:
            conn.execute(PG_TABLE)
            for i, row in enumerate(initial, 1):
                statement = _statement(Step("insert", i, row), "%s")
                assert statement is not None
                conn.execute(*statement)

        def connect() -> psycopg.Connection[Any]:
            conn = psycopg.connect(src)
            conn.execute("SET synchronous_commit = on")
            return conn

        _run(src, dst, connect, "%s", txs)
        assert _pg_rows(dst) == _pg_rows(src)
    finally:
        with pg_server.connect() as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = %s",
                (src_name,),
            )
        pg_server.drop_database(src_name)
        pg_server.drop_database(dst_name)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(initial=st.lists(rows(SQLITE_VALUES), max_size=6), txs=steps(SQLITE_VALUES))
def test_sqlite_to_sqlite_random_interleavings_converge(
    tmp_path_factory: pytest.TempPathFactory,
    initial: list[dict[str, Any]],
    txs: list[list[Step]],
) -> None:
    folder: Path = tmp_path_factory.mktemp("hyp")
    src, dst = folder / "src.db", folder / "dst.db"
    with sqlite3.connect(src) as conn:
        for statement in SQLITE_TABLE:
            conn.execute(statement)
        for i, row in enumerate(initial, 1):
            sql = _statement(Step("insert", i, row), "?")
            assert sql is not None
            conn.execute(*sql)

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(src, timeout=30)

    _run(rk.endpoint(f"sqlite:///{src}", cdc_setup=True), f"sqlite:///{dst}", connect, "?", txs)
    with sqlite3.connect(src) as s, sqlite3.connect(dst) as t:
        query = "SELECT * FROM t ORDER BY id"
        assert t.execute(query).fetchall() == s.execute(query).fetchall()


def test_step_sql_is_well_formed() -> None:
    """The generator's own SQL: a move onto an existing key is a no-op, as on the source."""
    step = Step("move", 1, {}, new_key=2)
    statement = _statement(step, "?")
    assert statement is not None and "NOT EXISTS" in statement[0]
    assert _statement(Step("update", 1, {}), "?") is None

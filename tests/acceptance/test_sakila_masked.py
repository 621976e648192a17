"""Sakila (PostgreSQL) to SQLite with customer and staff names and e-mails masked.

Masks are keyed by the task secret and depend on the value alone, so joins between masked
columns of different tables match as they did at the source (for a mask that keeps
distinct values distinct: a hash; fake names come from short lists and may collide), keys
and foreign keys are untouched, and the same run twice gives the same values.
"""

import sqlite3

import psycopg
import pytest
from test_datasets import sakila_pg  # noqa: F401 - a fixture

import replikit as rk

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TABLES = ("customer", "staff", "actor", "rental")
MASKS = (
    rk.Mappings()
    .mask("public.%", "first_name", "hash")
    .mask("public.%", "last_name", "fake-last-name")
    .mask("public.%", "email", "fake-email")
)
JOINS = {
    "actor and customer by first name": "SELECT count(*) FROM actor a JOIN customer c "
    "ON a.first_name = c.first_name",
    "rental and customer by key": "SELECT count(*) FROM rental r JOIN customer c "
    "ON r.customer_id = c.customer_id",
}


def _run(source: str, path: str) -> sqlite3.Connection:
    mappings = MASKS
    for name in TABLES:
        mappings = mappings.include("public", name)
    task = rk.Task(
        source,
        f"sqlite:///{path}",
        mappings=mappings,
        settings=rk.TaskSettings(mask_secret="sakila-secret", progress=False),
    )
    plan = str(task.plan())
    assert "mask: email fake-email" in plan and "mask: first_name hash" in plan
    task.run()
    return sqlite3.connect(path)


def test_sakila_masked_joins_hold_and_runs_repeat(tmp_path, sakila_pg):  # noqa: F811
    first = _run(sakila_pg, str(tmp_path / "one.db"))
    second = _run(sakila_pg, str(tmp_path / "two.db"))
    with psycopg.connect(sakila_pg) as pg:
        for what, query in JOINS.items():
            (expected,) = pg.execute(query).fetchone()
            (got,) = first.execute(query).fetchone()
            assert got == expected > 0, what
        source_emails = {r[0] for r in pg.execute("SELECT email FROM customer")}
        (n,) = pg.execute("SELECT count(*) FROM customer").fetchone()
    rows = first.execute(
        "SELECT customer_id, first_name, last_name, email FROM customer"
    ).fetchall()
    assert len(rows) == n
    assert all(len(r[1]) == 64 for r in rows)  # keyed hashes
    emails = {r[3] for r in rows}
    assert not emails & source_emails and all(e.endswith("@example.com") for e in emails)
    assert len(emails) == len(source_emails)  # distinct stays distinct
    for table in TABLES:
        query = f"SELECT * FROM {table} ORDER BY 1"
        assert first.execute(query).fetchall() == second.execute(query).fetchall(), table


def _same(change):
    return change


def test_sakila_masked_postgres_to_postgres_in_the_source_select(sakila_pg, pg_server):  # noqa: F811
    """PostgreSQL -> PostgreSQL, the same masks: the source's SELECT computes them (binary
    COPY throughout) and the target equals the same task forced through Python."""
    import uuid

    mappings = MASKS
    for name in TABLES:
        mappings = mappings.include("public", name)
    names = [f"sakila_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    urls = [pg_server.create_database(n) for n in names]
    settings = rk.TaskSettings(mask_secret="sakila-secret", progress=False)
    try:
        with rk.endpoint(sakila_pg) as ep, rk.endpoint(urls[0]) as dst:
            pipe = rk.Pipeline(ep.reader(list(TABLES)), dst.writer(), mappings=mappings,
                               mask_secret="sakila-secret")  # fmt: skip
            masked = [p for p in pipe.plans() if p.source.id.name in ("customer", "staff")]
            assert masked and all(pipe._projection(p) is not None for p in masked)
            pipe.reader.close()
        rk.Task(sakila_pg, urls[0], mappings=mappings, settings=settings).run()
        rk.Task(sakila_pg, urls[1], mappings=mappings, settings=settings,
                transforms=[_same]).run()  # fmt: skip
        for table in TABLES:
            query = f"SELECT * FROM {table} ORDER BY 1"
            with pg_server.connect(names[0]) as a, pg_server.connect(names[1]) as b:
                assert a.execute(query).fetchall() == b.execute(query).fetchall(), table
    finally:
        for n in names:
            pg_server.drop_database(n)

"""Real sample databases end to end: Chinook SQLite -> PostgreSQL -> SQLite, Sakila PG -> SQLite."""

import psycopg
import pytest

import replikit as rk
from datasets import load_sakila_postgres, rows_of
from replikit.demo import sample_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_chinook_sqlite_to_postgres_to_sqlite_is_exact(tmp_path, pg_url):
    original = rk.endpoint(f"sqlite:///{sample_database(tmp_path / 'chinook.db')}")
    pg = rk.endpoint(pg_url)
    final = rk.endpoint(f"sqlite:///{tmp_path / 'back.db'}")

    there = rk.Task(original, pg)
    plan = there.plan()
    assert plan.lossy == [] and plan.unsupported == []
    assert there.run().total_rows == 15607

    back = rk.Task(pg, final, mappings=rk.Mappings().include("public", "%"))
    plan_back = back.plan()
    assert plan_back.lossy == [] and plan_back.unsupported == []
    back.run()

    names = sorted(t.id.name for t in original.reflect().tables)
    assert names == sorted(t.id.name for t in final.reflect().tables)
    for name in names:
        assert rows_of(original, name) == rows_of(final, name), name
    # keys, foreign keys and indexes arrive too
    track = final.reflect().table("Track")
    assert track.primary_key == ("TrackId",)
    assert {fk.ref_table.name for fk in track.foreign_keys} == {"Album", "Genre", "MediaType"}


@pytest.fixture
def sakila_pg(pg_url, pg_server):
    return load_sakila_postgres(pg_url)


# Sakila columns without an exact SQLite form; the assessment must name exactly these.
SAKILA_LOSSY = {("public.film", "fulltext"), ("public.film", "special_features")}


def test_sakila_postgres_to_sqlite_declares_every_loss(tmp_path, sakila_pg):
    src = rk.endpoint(sakila_pg)
    dst = rk.endpoint(f"sqlite:///{tmp_path / 'sakila.db'}")
    task = rk.Task(src, dst, mappings=rk.Mappings().include("public", "%"))
    plan = task.plan()
    assert {(f.table, f.column) for f in plan.lossy if f.kind == "type"} == SAKILA_LOSSY
    # unbounded PostgreSQL values (up to 1 GB) can exceed SQLite's 1,000,000,000 bytes
    limits = {(f.table, f.column) for f in plan.lossy if f.kind == "limit"}
    assert all("SQLITE_MAX_LENGTH" in (f.reason or "") for f in plan.lossy if f.kind == "limit")
    assert ("public.film", "description") in limits and ("public.staff", "picture") in limits
    assert plan.unsupported == []
    assert len(plan.assessment.schema.of_kind("view")) == 7  # reported in the schema section
    task.run()

    with psycopg.connect(sakila_pg) as conn:
        counts = dict(
            conn.execute(
                "select c.relname, (xpath('/row/n/text()', query_to_xml("
                "format('select count(*) as n from only public.%I', c.relname), "
                "false, true, '')))[1]::text::int "
                "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = 'public' and c.relkind = 'r'"
            ).fetchall()
        )
    for stat in task.statistics():
        assert stat.full_load_rows == counts[stat.table.split(".")[1]], stat.table

    for tplan in plan.assessment.tables:
        exact = [c.source.name for c in tplan.columns if c.fidelity is rk.Fidelity.EXACT]
        assert rows_of(src, tplan.source.id, exact) == rows_of(dst, tplan.target_id.name, exact), (
            tplan.source.id
        )

"""Chinook and Sakila round trip PostgreSQL -> DuckDB -> PostgreSQL (#17 Done-when)."""

import shutil
import subprocess
from decimal import Decimal

import pytest

import replikit as rk
from datasets import script
from replikit.demo import sample_database

pytestmark = [pytest.mark.timeout(300)]


def _norm(v):
    if isinstance(v, Decimal):
        return v.normalize() if v.is_finite() else str(v)
    if isinstance(v, list):
        return tuple(_norm(x) for x in v)
    return v


def rows_of(ep, table, columns=None):
    reader = ep.reader([table])
    (schema,) = reader.tables
    idx = [schema.column_names.index(c) for c in columns] if columns else None
    out = []
    for unit in reader.units(schema):
        for batch in reader.read(unit):
            for row in batch.rows:
                vals = [row[i] for i in idx] if idx else row
                out.append(tuple(_norm(v) for v in vals))
    return sorted(out, key=repr)


def _round_trip(pg_url, duck_path):
    """public -> DuckDB -> schema ``back`` of the same PostgreSQL database; the plans."""
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"duckdb:///{duck_path}") as duck:
        there = rk.Task(pg, duck, mappings=rk.Mappings().include("public", "%"))
        plan_there = there.plan()
        there.run()
        back = rk.Task(
            duck, pg, mappings=rk.Mappings().include("public", "%").rename_schema("public", "back")
        )
        plan_back = back.plan()
        back.run()
    return plan_there, plan_back


def test_chinook_postgres_to_duckdb_to_postgres_is_exact(tmp_path, pg_url):
    chinook = sample_database(tmp_path / "chinook.db")
    with rk.endpoint(f"sqlite:///{chinook}") as lite, rk.endpoint(pg_url) as pg:
        rk.Task(lite, pg).run()
    there, back = _round_trip(pg_url, tmp_path / "chinook.duckdb")
    # every value is exact; only the foreign keys stay behind in DuckDB, and the plan says so
    assert all("foreign key" in str(f) for f in there.lossy) and len(there.lossy) == 11
    assert there.unsupported == []
    assert back.lossy == [] and back.unsupported == []
    with rk.endpoint(pg_url) as pg:
        names = sorted(t.id.name for t in pg.reflect(rk.Selection(include=("public.%",))).tables)
        assert len(names) == 11
        for name in names:
            assert rows_of(pg, f"public.{name}") == rows_of(pg, f"back.{name}"), name
        track = pg.reflect(rk.Selection(include=("back.Track",))).table("back.Track")
        assert track.primary_key == ("TrackId",)


@pytest.fixture
def sakila_pg(pg_url):
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is needed to load Sakila (apt-get install postgresql-client)")
    for name in ("sakila-postgres-schema.sql", "sakila-postgres-data-copy.sql"):
        subprocess.run(
            [psql, "-q", "-v", "ON_ERROR_STOP=0", "-d", pg_url],
            input=script(f"sakila/{name}"),
            check=True,
            capture_output=True,
        )
    return pg_url


def test_sakila_postgres_to_duckdb_to_postgres_equal_or_declared(tmp_path, sakila_pg):
    there, back = _round_trip(sakila_pg, tmp_path / "sakila.duckdb")
    declared = {(f.table, f.column) for f in there.lossy if f.kind == "type"}
    # tsvector has no DuckDB type: text, declared; everything else (text[] as VARCHAR[],
    # the mpaa_rating enum as ENUM, numeric(p,s), timestamps, bytea) is exact
    assert declared == {("public.film", "fulltext")}
    assert there.unsupported == [] and back.unsupported == []
    with rk.endpoint(sakila_pg) as pg:
        for tplan in there.assessment.tables:
            exact = [c.source.name for c in tplan.columns if c.fidelity is rk.Fidelity.EXACT]
            name = tplan.source.id.name
            assert rows_of(pg, f"public.{name}", exact) == rows_of(pg, f"back.{name}", exact), name

"""Chinook and Sakila round trip PostgreSQL -> DuckDB -> PostgreSQL (#17 Done-when)."""

import pytest

import replikit as rk
from datasets import load_sakila_postgres, round_trip_through, rows_of
from replikit.demo import sample_database

pytestmark = [pytest.mark.timeout(300)]


def _round_trip(pg_url, duck_path):
    return round_trip_through(pg_url, f"duckdb:///{duck_path}")


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
    return load_sakila_postgres(pg_url)


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

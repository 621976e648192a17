"""Chinook and Sakila round trip PostgreSQL -> Parquet -> PostgreSQL (#17 Done-when)."""

import pytest

import replikit as rk
from datasets import load_sakila_postgres, round_trip_through, rows_of
from replikit.demo import sample_database

pytestmark = [pytest.mark.timeout(300)]


def _round_trip(pg_url, folder):
    return round_trip_through(pg_url, f"file://{folder}?file_size=16KB")


def test_chinook_postgres_to_parquet_to_postgres_is_exact(tmp_path, pg_url):
    chinook = sample_database(tmp_path / "chinook.db")
    with rk.endpoint(f"sqlite:///{chinook}") as lite, rk.endpoint(pg_url) as pg:
        rk.Task(lite, pg).run()
    there, back = _round_trip(pg_url, tmp_path / "chinook")
    assert there.lossy == [] and there.unsupported == []
    assert back.lossy == [] and back.unsupported == []
    # Track (3,503 rows, ~150 KB) is rolled into several files at 16 KB
    assert len(list((tmp_path / "chinook" / "public" / "Track").glob("LOAD*.parquet"))) > 1
    with rk.endpoint(pg_url) as pg:
        names = sorted(t.id.name for t in pg.reflect(rk.Selection(include=("public.%",))).tables)
        assert len(names) == 11
        for name in names:
            assert rows_of(pg, f"public.{name}") == rows_of(pg, f"back.{name}"), name
        back_tables = pg.reflect(rk.Selection(include=("back.%",)))
        track = back_tables.table("back.Track")
        # keys and foreign keys come back from _schema.json
        assert track.primary_key == ("TrackId",)
        assert {fk.ref_table.name for fk in track.foreign_keys} == {"Album", "Genre", "MediaType"}
        public_track = pg.reflect(rk.Selection(include=("public.Track",))).table("public.Track")
        assert [c.type for c in track.columns] == [c.type for c in public_track.columns]


@pytest.fixture
def sakila_pg(pg_url):
    return load_sakila_postgres(pg_url)


def test_sakila_postgres_to_parquet_to_postgres_equal_or_declared(tmp_path, sakila_pg):
    there, back = _round_trip(sakila_pg, tmp_path / "sakila")
    declared = {(f.table, f.column) for f in there.lossy if f.kind == "type"}
    # tsvector has no Parquet type: text, declared; everything else (text[] as list<string>,
    # the mpaa_rating enum with its labels, numeric(p,s), timestamps, bytea) is exact
    assert declared == {("public.film", "fulltext")}
    assert there.unsupported == [] and back.unsupported == []
    with rk.endpoint(sakila_pg) as pg:
        for tplan in there.assessment.tables:
            exact = [c.source.name for c in tplan.columns if c.fidelity is rk.Fidelity.EXACT]
            name = tplan.source.id.name
            assert rows_of(pg, f"public.{name}", exact) == rows_of(pg, f"back.{name}", exact), name
    with rk.endpoint(f"file://{tmp_path / 'sakila'}") as files:
        film = files.reflect(rk.Selection(include=("public.film",))).table("public.film")
        assert film.column("rating").type.values == ("G", "PG", "PG-13", "R", "NC-17")
        assert film.column("special_features").type.kind.value == "array"

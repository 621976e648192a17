"""Chinook and Sakila round trip PostgreSQL -> Parquet -> PostgreSQL (#17 Done-when)."""

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


def _round_trip(pg_url, folder):
    """public -> Parquet files -> schema ``back`` of the same PostgreSQL database; the plans."""
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"file://{folder}?file_size=16KB") as files:
        there = rk.Task(pg, files, mappings=rk.Mappings().include("public", "%"))
        plan_there = there.plan()
        there.run()
        back = rk.Task(
            files, pg, mappings=rk.Mappings().include("public", "%").rename_schema("public", "back")
        )
        plan_back = back.plan()
        back.run()
    return plan_there, plan_back


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

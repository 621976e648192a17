"""Sakila and Chinook (MySQL scripts) on MariaDB: MySQL -> PostgreSQL -> MySQL, MySQL -> SQLite.

Every value arrives equal, or its column is declared lossy by the plan. Values are compared in
their canonical Python form (the readers' output) with one normalisation that is not a change
of value: decimals compare by number (``1.50 == 1.5``). Fixed-length CHAR values compare
exactly: a MySQL ``CHAR(n)`` becomes ``varchar(n)`` in PostgreSQL, so it reads back as MySQL
reads it (no trailing spaces), not padded.
"""

import shutil
import subprocess
from decimal import Decimal

import pytest
from sqlalchemy.engine import make_url

import replikit as rk
from datasets import script
from replikit.endpoints.mysql import MysqlEndpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SAKILA_TABLES = 16
SAKILA_ROWS = 47273
CHINOOK_ROWS = 15607


def _load_script(server, database: str, *scripts: str) -> str:
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        pytest.fail("the mariadb (or mysql) client is needed to load the datasets")
    u = make_url(server.admin_url)
    server.drop_database(database)
    for name in scripts:
        subprocess.run(
            [
                client,
                "-h",
                u.host,
                "-P",
                str(server.port),
                "-u",
                u.username or "root",
                f"--password={u.password or ''}",
                "--default-character-set=utf8mb4",
            ],
            input=script(name),
            check=True,
            capture_output=True,
        )
    return server.url(database)


@pytest.fixture(scope="module")
def sakila(mysql_server):
    url = _load_script(
        mysql_server, "sakila", "sakila/sakila-mysql-schema.sql", "sakila/sakila-mysql-data.sql"
    )
    yield url
    mysql_server.drop_database("sakila")


@pytest.fixture(scope="module")
def chinook(mysql_server):
    url = _load_script(mysql_server, "Chinook", "chinook/Chinook_MySql.sql")
    yield url
    mysql_server.drop_database("Chinook")


@pytest.fixture
def mysql_target(mysql_server):
    import uuid

    name = f"rk_back_{uuid.uuid4().hex[:10]}"
    url = mysql_server.create_database(name)
    yield url
    mysql_server.drop_database(name)


def _norm(value):
    if isinstance(value, Decimal):
        return value.normalize() if value.is_finite() else str(value)
    return value


def rows_of(ep: rk.Endpoint, table, columns) -> list[tuple]:
    reader = ep.reader([table])
    (schema,) = reader.tables
    idx = [schema.column_names.index(c) for c in columns]
    out = []
    for unit in reader.units(schema):
        for batch in reader.read(unit):
            out += [tuple(_norm(r[i]) for i in idx) for r in batch.rows]
    return sorted(out, key=repr)


def _compare(src, dst, plan, target_name=lambda p: p.target_id):
    """Every exact column equal; returns the lossy columns whose values differ."""
    differing = set()
    for tplan in plan.assessment.tables:
        names = [c.source.name for c in tplan.columns]
        exact = [c.source.name for c in tplan.columns if c.fidelity is rk.Fidelity.EXACT]
        a = rows_of(src, tplan.source.id, names)
        b = rows_of(dst, target_name(tplan), [c.name for c in tplan.columns])
        assert len(a) == len(b), tplan.source.id
        pos = [names.index(c) for c in exact]
        assert [tuple(r[i] for i in pos) for r in a] == [tuple(r[i] for i in pos) for r in b], (
            tplan.source.id
        )
        for i, name in enumerate(names):
            if name not in exact and sorted((r[i] for r in a), key=repr) != sorted(
                (r[i] for r in b), key=repr
            ):
                differing.add((str(tplan.source.id), name))
    return differing


def _there_and_back(source_url, pg_url, mysql_target, schema):
    src = MysqlEndpoint(source_url)
    pg = rk.endpoint(pg_url)
    there = rk.Task(src, pg)
    plan = there.plan()
    assert plan.unsupported == []
    rows = there.run().total_rows
    assert _compare(src, pg, plan) == set()

    back_ep = MysqlEndpoint(mysql_target)
    back = rk.Task(pg, back_ep, mappings=rk.Mappings().include(schema, "%"))
    plan_back = back.plan()
    assert plan_back.unsupported == []
    back.run()
    assert _compare(pg, back_ep, plan_back) == set()
    return src, back_ep, plan, plan_back, rows


def test_sakila_mysql_to_postgres_to_mysql(sakila, pg_url, mysql_target):
    src, final, plan, plan_back, rows = _there_and_back(sakila, pg_url, mysql_target, "sakila")
    assert rows == SAKILA_ROWS
    assert len(plan.assessment.tables) == SAKILA_TABLES
    # MariaDB skips Sakila's MySQL-5.7-only GEOMETRY column
    assert [f for f in plan.lossy if f.kind == "type"] == []
    # the FULLTEXT key of film_text becomes a btree index, whose entries hold 2,704 bytes
    assert [(f.table, f.kind) for f in plan.lossy] == [("sakila.film_text", "limit")]
    assert any("SET is carried" in p for p in plan.assessment.problems)
    # back from PostgreSQL: TIMESTAMP's 1970..2038 range, and the values PostgreSQL's dates
    # and numerics can hold but MySQL's cannot (infinity, BC, NaN: refused by row)
    assert {f.target_type.split("(")[0] for f in plan_back.lossy} == {
        "timestamp",
        "datetime",
        "decimal",
    }
    assert all("refused" in (f.reason or "") for f in plan_back.lossy)
    # the round trip: every original value is back
    db = make_url(mysql_target).database
    for tplan in plan.assessment.tables:
        names = [c.source.name for c in tplan.columns]
        assert rows_of(src, tplan.source.id, names) == rows_of(
            final, rk.TableId(db, tplan.source.id.name), names
        ), tplan.source.id
    rental = final.reflect().table(rk.TableId(db, "rental"))
    assert rental.primary_key == ("rental_id",)
    assert {fk.ref_table.name for fk in rental.foreign_keys} == {"staff", "inventory", "customer"}
    assert rental.column("rental_id").identity.next_value == 16050


def test_chinook_mysql_to_postgres_to_mysql(chinook, pg_url, mysql_target):
    _src, final, plan, plan_back, rows = _there_and_back(chinook, pg_url, mysql_target, "Chinook")
    assert rows == CHINOOK_ROWS
    assert plan.lossy == []
    # back from PostgreSQL: values PostgreSQL can hold and MySQL cannot are refused by row
    assert {f.target_type.split("(")[0] for f in plan_back.lossy} == {"datetime", "decimal"}
    assert all("refused" in (f.reason or "") for f in plan_back.lossy)
    db = make_url(mysql_target).database
    track = final.reflect().table(rk.TableId(db, "Track"))
    assert track.primary_key == ("TrackId",)
    assert {fk.ref_table.name for fk in track.foreign_keys} == {"Album", "Genre", "MediaType"}


@pytest.mark.parametrize("dataset", ["sakila", "chinook"])
def test_mysql_to_sqlite(dataset, request, tmp_path):
    url = request.getfixturevalue(dataset)
    src = MysqlEndpoint(url)
    dst = rk.endpoint(f"sqlite:///{tmp_path / 'out.db'}")
    task = rk.Task(src, dst)
    plan = task.plan()
    assert plan.unsupported == []
    lossy = {f.target_type.split("(")[0] for f in plan.lossy if f.kind == "type"}
    # and MySQL values (up to 1 GiB) that SQLite's 1,000,000,000 bytes cannot hold
    assert all("SQLITE_MAX_LENGTH" in (f.reason or "") for f in plan.lossy if f.kind != "type")
    assert lossy <= {"TIMESTAMPTZ"}  # instants keep the instant, not a zone name
    task.run()
    assert _compare(src, dst, plan, lambda p: p.target_id.name) == set()

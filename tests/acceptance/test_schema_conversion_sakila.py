"""Sakila's views and checks across engines (#15 Done when): MySQL -> PostgreSQL, PostgreSQL ->
MySQL, PostgreSQL -> SQLite. Every view the plan converts is created, and ``SELECT *`` of it
returns the same rows on both sides; every view it does not convert is named with the reason.

Rows compare canonically: numbers by value (rounded to 1e-6: SQLite sums money as floats), and
in views the report flags for string aggregation without ORDER BY the aggregated lists compare
as sets of items, since neither engine promises their order.
"""

import shutil
import sqlite3
import subprocess
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy.engine import make_url

import replikit as rk
from datasets import load_sakila_postgres, script
from replikit.schema.report import Verdict

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

_UNORDERED = "string aggregation without ORDER BY"


@pytest.fixture(scope="module")
def sakila_mysql(mysql_server):
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        pytest.fail("the mariadb (or mysql) client is needed to load Sakila")
    u = make_url(mysql_server.admin_url)
    mysql_server.drop_database("sakila")
    for name in ("sakila/sakila-mysql-schema.sql", "sakila/sakila-mysql-data.sql"):
        subprocess.run(
            [
                *(client, "-h", u.host, "-P", str(mysql_server.port), "-u", u.username or "root"),
                *(f"--password={u.password or ''}", "--default-character-set=utf8mb4"),
            ],
            input=script(name),
            check=True,
            capture_output=True,
        )
    yield mysql_server.url("sakila")
    mysql_server.drop_database("sakila")


@pytest.fixture
def sakila_pg(pg_url):
    return load_sakila_postgres(pg_url)


def _norm(value, unordered: bool):
    if isinstance(value, (Decimal, float)):
        return round(Decimal(str(value)), 6).normalize()
    if isinstance(value, bool):
        return int(value)
    if unordered and isinstance(value, str):
        return tuple(sorted(value.split(", ")))
    return value


def _rows(rows, unordered: bool) -> list[tuple]:
    return sorted((tuple(_norm(v, unordered) for v in r) for r in rows), key=repr)


def _pg(url: str, view: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT * FROM {view}").fetchall()


def _mysql(server, url: str, view: str) -> list[tuple]:
    conn = server.connect(make_url(url).database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {view}")
            return list(cur.fetchall())
    finally:
        conn.close()


def _sqlite(path, view: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT * FROM {view}").fetchall()
    finally:
        conn.close()


def _run(task: rk.Task):
    plan = task.plan()
    stats = task.run()
    views = plan.assessment.schema.of_kind("view")
    refused = {o.name: e for o, e in stats.objects if e is not None}
    assert refused == {}, refused
    return plan, views


def _same_rows(views, source_rows, target_rows):
    compared = 0
    for view in views:
        if not view.converted:
            assert view.reason, view.name
            continue
        unordered = _UNORDERED in (view.reason or "")
        name = view.name.split(".")[-1]
        a, b = _rows(source_rows(name), unordered), _rows(target_rows(view.target), unordered)
        assert a and a == b, view.name
        compared += 1
    return compared


@pytest.fixture
def mysql_back(mysql_server):
    import uuid

    name = f"rk_views_{uuid.uuid4().hex[:10]}"
    url = mysql_server.create_database(name)
    yield url
    mysql_server.drop_database(name)


def test_sakila_mysql_to_postgresql_and_back_views_return_the_same_rows(
    sakila_mysql, mysql_server, pg_url, mysql_back
):
    plan, views = _run(rk.Task(sakila_mysql, pg_url))
    verdicts = {v.name: v.verdict for v in views}
    assert verdicts["sakila.actor_info"] is Verdict.NOT_CONVERTED
    assert "DISTINCT aggregate" in (plan.assessment.schema.of_kind("view")[0].reason or "")
    assert sum(v.converted for v in views) == 6
    compared = _same_rows(
        views,
        lambda name: _mysql(mysql_server, sakila_mysql, f"`{name}`"),
        lambda tid: _pg(pg_url, f'"{tid.schema}"."{tid.name}"'),
    )
    assert compared == 6
    kinds = plan.assessment.schema.counts()
    assert kinds["trigger"]["not converted"] == 6
    assert kinds["procedure"]["not converted"] == 3

    # and back: the six views return the original rows in MySQL again
    _, back = _run(rk.Task(pg_url, mysql_back, mappings=rk.Mappings().include("sakila", "%")))
    assert sum(v.converted for v in back) == 6
    compared = _same_rows(
        back,
        lambda name: _mysql(mysql_server, sakila_mysql, f"`{name}`"),
        lambda tid: _mysql(mysql_server, mysql_back, f"`{tid.name}`"),
    )
    assert compared == 6


def test_sakila_postgresql_to_mysql_and_sqlite_views_and_checks(
    sakila_pg, mysql_server, mysql_url, tmp_path, pg_server
):
    include = rk.Mappings().include("public", "%")
    plan, views = _run(rk.Task(sakila_pg, mysql_url, mappings=include))
    checks = plan.assessment.schema.of_kind("check")
    assert len(checks) == 7 and all(c.verdict is Verdict.EXACT for c in checks)  # 1 a domain's
    not_converted = {v.name for v in views if not v.converted}
    assert not_converted == {
        "public.actor_info",
        "public.film_list",
        "public.nicer_but_slower_film_list",
    }  # they call Sakila's own group_concat aggregate
    compared = _same_rows(
        views,
        lambda name: _pg(sakila_pg, f'"public"."{name}"'),
        lambda tid: _mysql(mysql_server, mysql_url, f"`{tid.name}`"),
    )
    assert compared == 4
    # the checks hold in MySQL: a payment outside its partition's month is refused
    conn = mysql_server.connect(make_url(mysql_url).database)
    try:
        with (
            conn.cursor() as cur,
            pytest.raises(Exception, match="payment_p2007_01_payment_date_check"),
        ):
            cur.execute(
                "INSERT INTO payment_p2007_01 (payment_id, customer_id, staff_id, rental_id, "
                "amount, payment_date) VALUES (999999, 1, 1, 1, 1.00, '2009-01-01 00:00:00')"
            )
    finally:
        conn.close()

    # and back to PostgreSQL: the four views return the original rows, the checks hold
    import uuid

    back_db = f"rk_back_{uuid.uuid4().hex[:10]}"
    back_url = pg_server.create_database(back_db)
    try:
        _, back = _run(rk.Task(mysql_url, back_url))
        assert sum(v.converted for v in back) == 4
        db = make_url(mysql_url).database
        compared = _same_rows(
            back,
            lambda name: _pg(sakila_pg, f'"public"."{name}"'),
            lambda tid: _pg(back_url, f'"{tid.schema}"."{tid.name}"'),
        )
        assert compared == 4
        with psycopg.connect(back_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                f'INSERT INTO "{db}"."payment_p2007_01" (payment_id, customer_id, staff_id, '
                "rental_id, amount, payment_date) VALUES (999999, 1, 1, 1, 1, '2009-01-01')"
            )
    finally:
        pg_server.drop_database(back_db)

    target = tmp_path / "sakila.db"
    plan, views = _run(rk.Task(sakila_pg, f"sqlite:///{target}", mappings=include))
    compared = _same_rows(
        views,
        lambda name: _pg(sakila_pg, f'"public"."{name}"'),
        lambda tid: _sqlite(target, f'"{tid.name}"'),
    )
    assert compared == 4


def _hop(task: rk.Task):
    """Run ``task``; its plan, and the views the target refused (named, with the reason).
    Objects the plan declared left out (DuckDB's non-unique indexes) are not refusals."""
    plan = task.plan()
    stats = task.run()
    refused = {o.name.split(".")[-1]: e for o, e in stats.objects if e is not None and o.converted}
    assert {o.kind for o, e in stats.objects if e is not None and o.converted} <= {"view"}, refused
    return plan, refused


@pytest.mark.parametrize("via", ["sqlite", "duckdb"])
@pytest.mark.parametrize("source", ["postgresql", "mysql"], ids=["postgresql", "mysql"])
def test_sakila_round_trips_through_sqlite_and_duckdb(
    source, via, request, tmp_path, pg_server, mysql_server
):
    """Sakila A -> B -> A for B in SQLite and DuckDB: every view converted and created on
    both hops returns the original rows in the copy of the copy (the others are named with a
    reason); PostgreSQL's partition CHECKs are enforced again."""
    import uuid

    original = request.getfixturevalue("sakila_mysql" if source == "mysql" else "sakila_pg")
    # not sakila.duckdb: DuckDB names the catalog after the file, and a schema sakila clashes
    middle = f"{via}:///{tmp_path / ('middle.' + via)}"
    server = mysql_server if source == "mysql" else pg_server
    back_db = f"rk_back_{uuid.uuid4().hex[:10]}"
    back = server.create_database(back_db)
    try:
        include = rk.Mappings().include("sakila" if source == "mysql" else "public", "%")
        there, refused = _hop(rk.Task(original, middle, mappings=include))
        home, refused_back = _hop(rk.Task(middle, back, mappings=rk.Mappings().include("%", "%")))
        views = [*there.assessment.schema.of_kind("view"), *home.assessment.schema.of_kind("view")]
        assert all(v.reason for v in views if not v.converted)
        lost = {v.name.split(".")[-1] for v in views if not v.converted}
        lost |= set(refused) | set(refused_back)
        kept = [v for v in home.assessment.schema.of_kind("view") if v.target.name not in lost]
        if source == "mysql":
            compared = _same_rows(
                kept,
                lambda name: _mysql(mysql_server, original, f"`{name}`"),
                lambda tid: _mysql(mysql_server, back, f"`{tid.name}`"),
            )
        else:
            compared = _same_rows(
                kept,
                lambda name: _pg(original, f'"public"."{name}"'),
                lambda tid: _pg(back, f'"{tid.schema}"."{tid.name}"'),
            )
            payment = next(
                p.target_id
                for p in home.assessment.tables
                if p.target_id.name == "payment_p2007_01"
            )
            with psycopg.connect(back) as conn, pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    f'INSERT INTO "{payment.schema}"."payment_p2007_01" (payment_id, '
                    "customer_id, staff_id, rental_id, amount, payment_date) "
                    "VALUES (999999, 1, 1, 1, 1, '2009-01-01')"
                )
        assert compared >= 3, lost
    finally:
        server.drop_database(back_db)


def test_sakila_mysql_to_duckdb_through_connectorx_holds_what_the_csv_lines_hold(
    sakila_mysql, tmp_path, monkeypatch
):
    """Sakila from MariaDB into DuckDB twice: through connectorx's stream (``arrow=auto``,
    where installed) and through the CSV lines (``arrow=csv``): every table holds the same
    rows, and the tables whose columns the stream carries were streamed."""
    import duckdb

    from replikit.endpoints.mysql import _cxstream
    from replikit.endpoints.mysql.source import MysqlReader

    if _cxstream.connectorx() is None:
        pytest.skip("connectorx is not installed")
    streamed = []
    real = MysqlReader.arrow_stream

    def counted(self, unit):
        stream = real(self, unit)
        if stream is not None:
            streamed.append(unit.table.name)
        return stream

    monkeypatch.setattr(MysqlReader, "arrow_stream", counted)
    copies = {}
    for option in ("auto", "csv"):
        path = tmp_path / f"{option}.duckdb"
        stats = rk.copy(f"{sakila_mysql}?arrow={option}", f"duckdb:///{path}", progress=False)
        assert not [s for s in stats if s.error], stats
        with duckdb.connect(str(path), read_only=True) as duck:
            duck.execute("SET TimeZone = 'UTC'")
            tables = duck.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
            copies[option] = {
                t: duck.execute(f'SELECT * FROM "{s}"."{t}" ORDER BY ALL').fetchall()
                for s, t in tables
            }
    assert len(copies["auto"]) == 16
    assert copies["auto"] == copies["csv"]
    # film (YEAR, SET) and staff (BLOB) keep the CSV lines or record batches
    assert {"rental", "payment", "customer", "film_text"} <= set(streamed)
    assert "film" not in streamed and "staff" not in streamed

"""Values with no Python form (issue #8, item 9), PostgreSQL -> PostgreSQL, SQLite and MySQL.

Each value sits alone in its own table, so a refusal of one cannot hide another. Every value
either arrives exactly (the target reads back the text PostgreSQL prints for it) or its column is
declared lossy in the plan and the row is refused with a message naming table, column, key and
value. A type override to text always works: the source's text form arrives exactly.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

import psycopg
import pytest

import replikit as rk

# (PostgreSQL type, value literal) -- what psycopg cannot turn into a Python object
SPECIAL = [
    ("time", "24:00:00"),
    ("timetz", "24:00:00+00"),
    ("timetz", "24:00:00-05"),
    ("date", "infinity"),
    ("date", "-infinity"),
    ("date", "2000-01-01 BC"),
    ("date", "10000-01-01"),
    ("timestamp", "infinity"),
    ("timestamp", "-infinity"),
    ("timestamp", "0044-03-15 12:00:00 BC"),
    ("timestamp", "10000-01-01 00:00:00"),
    ("timestamptz", "infinity"),
    ("timestamptz", "-infinity"),
    ("timestamptz", "2000-01-01 00:00:00+00 BC"),
    ("numeric", "NaN"),
    ("numeric", "Infinity"),
    ("numeric", "-Infinity"),
    ("numeric(10,2)", "NaN"),
    ("double precision", "NaN"),
    ("double precision", "-Infinity"),
    ("interval", "1000000 years"),
    ("interval", "-178000000 years"),
]
TABLES = [f"v{i}" for i in range(len(SPECIAL))]
# what must arrive (not merely be refused) in MySQL: its TIME holds 24:00:00
MYSQL_HOLDS = {"v0"}
PG_SESSION = "SET TimeZone = 'UTC'; SET IntervalStyle = iso_8601; SET DateStyle = ISO"


@dataclass
class Outcome:
    plan: rk.Plan
    errors: dict[str, BaseException]
    read_back: dict[str, object]


def _same(expected: str, got: object) -> bool:
    """The read-back value is the source's value (SQLite keeps an infinite REAL as a REAL)."""
    if isinstance(got, float):
        return float(expected) == got or (got != got and expected == "NaN")
    if isinstance(got, str):  # MySQL prints TIME(6) with all six digits: 24:00:00.000000
        got = re.sub(r"^(\d+:\d\d:\d\d)\.0+$", r"\1", got)
    return got == expected


def _source(url: str) -> dict[str, str]:
    """Create one table per value; return PostgreSQL's own text of each value."""
    texts = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PG_SESSION)
        for name, (pgtype, literal) in zip(TABLES, SPECIAL, strict=True):
            conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v {pgtype})")
            conn.execute(f"INSERT INTO {name} VALUES (1, %s::{pgtype})", (literal,))
            row = conn.execute(f"SELECT v::text FROM {name}").fetchone()
            assert row is not None
            texts[name] = row[0]
    return texts


def _copy(
    src: str, dst: str, overrides: dict[str, str]
) -> tuple[rk.Plan, dict[str, BaseException]]:
    settings = rk.TaskSettings(type_overrides=overrides, parallel_tables=2)
    task = rk.Task(src, dst, settings=settings)
    plan = task.plan()
    try:
        task.run()
    except rk.TaskError as exc:
        return plan, exc.table_errors
    return plan, {}


def _read_pg(url: str) -> dict[str, str | None]:
    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PG_SESSION)
        for name in TABLES:
            row = conn.execute(f"SELECT v::text FROM public.{name}").fetchone()
            out[name] = None if row is None else row[0]
    return out


def _read_sqlite(path: str) -> dict[str, object]:
    out = {}
    with sqlite3.connect(path) as conn:
        for name in TABLES:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).fetchone()
            row = conn.execute(f"SELECT v FROM {name}").fetchone() if found else None
            out[name] = None if row is None else row[0]
    return out


def _read_mysql(server, database: str) -> dict[str, str | None]:
    out = {}
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            for name in TABLES:
                cur.execute(f"SELECT CAST(v AS CHAR) FROM `{name}`")
                row = cur.fetchone()
                out[name] = None if row is None else row[0]
    finally:
        conn.close()
    return out


def _run(target: str, src: str, dst: str, *, text: bool, mysql_server=None) -> Outcome:
    overrides = {f"public.{t}.v": "text" for t in TABLES} if text else {}
    plan, errors = _copy(src, dst, overrides)
    if target == "postgresql":
        back = _read_pg(dst)
    elif target == "sqlite":
        back = _read_sqlite(dst.removeprefix("sqlite:///"))
    else:
        back = _read_mysql(mysql_server, dst.rsplit("/", 1)[1])
    return Outcome(plan, errors, back)


def _column(plan: rk.Plan, table: str):
    [tplan] = [t for t in plan.assessment.tables if t.source.id.name == table]
    return tplan.columns[1]


def _check(outcome: Outcome, texts: dict[str, str], must_arrive: set[str]) -> None:
    for name in TABLES:
        expected = texts[name]
        if _same(expected, outcome.read_back[name]):
            continue
        assert name not in must_arrive, (name, expected, outcome.read_back[name])
        finding = _column(outcome.plan, name)
        assert finding.fidelity is not rk.Fidelity.EXACT, (name, expected, finding)
        error = outcome.errors.get(f"public.{name}")
        if error is None:  # stored changed, as the plan declared (timetz: UTC time of day)
            assert outcome.read_back[name] is not None, (name, expected)
            continue
        assert isinstance(error, rk.DataError), (name, expected, outcome.read_back[name], error)
        message = str(error)
        assert f"table {name}" in message and "column v" in message, message
        assert "id=1" in message and expected.lower()[:4] in message.lower(), message
        assert outcome.read_back[name] is None, (name, outcome.read_back[name])


@pytest.fixture
def source(pg_url):
    return pg_url, _source(pg_url)


@pytest.fixture
def pg_target(pg_server):
    import uuid

    name = f"rk_test_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.mark.parametrize("text", [False, True], ids=["native", "text-override"])
def test_postgres_to_postgres(source, pg_target, text):
    src, texts = source
    outcome = _run("postgresql", src, pg_target, text=text)
    assert outcome.errors == {}
    _check(outcome, texts, set(TABLES))


@pytest.mark.parametrize("text", [False, True], ids=["native", "text-override"])
def test_postgres_to_sqlite(source, tmp_path, text):
    src, texts = source
    outcome = _run("sqlite", src, f"sqlite:///{tmp_path / 'target.db'}", text=text)
    assert outcome.errors == {}
    _check(outcome, texts, set(TABLES))


@pytest.mark.parametrize("text", [False, True], ids=["native", "text-override"])
def test_postgres_to_mysql(source, mysql_url, mysql_server, text):
    src, texts = source
    outcome = _run("mysql", src, mysql_url, text=text, mysql_server=mysql_server)
    _check(outcome, texts, set(TABLES) if text else MYSQL_HOLDS)
    if not text:  # the rest is refused by row, each named; nothing is clipped or changed
        assert set(outcome.errors) >= {f"public.{t}" for t in TABLES[3:]} - {
            "public.v20",  # interval travels as its ISO 8601 text (declared lossy)
            "public.v21",
        }


def test_sqlite_round_trip_keeps_24_00(source, tmp_path, pg_target):
    """PostgreSQL -> SQLite -> PostgreSQL: the SQLite copy reads back as it was written."""
    src, texts = source
    lite = f"sqlite:///{tmp_path / 'mid.db'}"
    _copy(src, lite, {})
    _, errors = _copy(lite, pg_target, {})
    assert errors == {}
    back = _read_pg(pg_target)
    for name in ("v0", "v1", "v2", "v3", "v5", "v9", "v14"):
        assert back[name] == texts[name], name


# -- MySQL's own values with no Python form: TIME beyond a day, zero dates -------------------
MYSQL_SPECIAL = [
    ("time", "'838:59:59'"),
    ("time", "'-01:00:00'"),
    ("time", "'24:00:00'"),
    ("date", "'0000-00-00'"),
    ("datetime", "'0000-00-00 00:00:00'"),
]
MYSQL_TABLES = [f"m{i}" for i in range(len(MYSQL_SPECIAL))]


def _mysql_source(server, url: str) -> dict[str, str]:
    texts = {}
    conn = server.connect(url.rsplit("/", 1)[1], init_command="SET sql_mode = ''")
    try:
        with conn.cursor() as cur:
            for name, (mytype, literal) in zip(MYSQL_TABLES, MYSQL_SPECIAL, strict=True):
                cur.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v {mytype})")
                cur.execute(f"INSERT INTO {name} VALUES (1, {literal})")
                cur.execute(f"SELECT CAST(v AS CHAR) FROM {name}")
                texts[name] = cur.fetchone()[0]
    finally:
        conn.close()
    return texts


def test_mysql_time_beyond_a_day_and_zero_dates(mysql_server, mysql_url, pg_url, tmp_path):
    texts = _mysql_source(mysql_server, mysql_url)
    schema = mysql_url.rsplit("/", 1)[1]
    # into PostgreSQL: TIME is declared lossy, and what has no time-of-day form is refused by row
    plan, errors = _copy(mysql_url, pg_url, {})
    for name in MYSQL_TABLES[:2]:
        [tplan] = [t for t in plan.assessment.tables if t.source.id.name == name]
        assert tplan.columns[1].fidelity is rk.Fidelity.LOSSY
        message = str(errors[f"{schema}.{name}"])
        assert "column v" in message and "id=1" in message and texts[name] in message, message
    assert f"{schema}.m2" not in errors  # 24:00:00 is a PostgreSQL time
    # into SQLite, which keeps MySQL's text
    lite = tmp_path / "m.db"
    _, errors = _copy(mysql_url, f"sqlite:///{lite}", {})
    assert errors == {}
    with sqlite3.connect(lite) as conn:
        for name in MYSQL_TABLES[:3]:
            assert conn.execute(f"SELECT v FROM {name}").fetchone()[0] == texts[name], name
    # a text override: MySQL's own text arrives, zero dates included
    overrides = {f"{schema}.{t}.v": "text" for t in MYSQL_TABLES}
    again = f"sqlite:///{tmp_path / 'again.db'}"
    _, errors = _copy(mysql_url, again, overrides)
    assert errors == {}
    with sqlite3.connect(tmp_path / "again.db") as conn:
        for name in MYSQL_TABLES:
            assert conn.execute(f"SELECT v FROM {name}").fetchone()[0] == texts[name], name
    _, errors = _copy(mysql_url, pg_url, overrides)
    assert errors == {}
    with psycopg.connect(pg_url) as conn:
        for name in MYSQL_TABLES:
            row = conn.execute(f'SELECT v FROM "{schema}".{name}').fetchone()
            assert row == (texts[name],), name


def test_mysql_text_override_of_bit_and_geometry(mysql_server, mysql_url, pg_url):
    """Binary-stored types print as text too: BIT as its number, geometry as hex EWKB."""
    conn = mysql_server.connect(mysql_url.rsplit("/", 1)[1])
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE g (id int PRIMARY KEY, b bit(8), p point, y year)")
            cur.execute(
                "INSERT INTO g VALUES (1, b'10000001', ST_GeomFromText('POINT(1 2)'), 2001)"
            )
    finally:
        conn.close()
    schema = mysql_url.rsplit("/", 1)[1]
    overrides = {f"{schema}.g.{c}": "text" for c in ("b", "p", "y")}
    _, errors = _copy(mysql_url, pg_url, overrides)
    assert errors == {}
    with psycopg.connect(pg_url) as pg:
        row = pg.execute(f'SELECT b, p, y FROM "{schema}".g').fetchone()
    assert row == ("129", "0101000000000000000000F03F0000000000000040", "2001")

"""The columnar full load into SQLite (Arrow record batches, ``SqliteWriter.load_arrow``) stores
exactly what the row path stores: column by column against the value adapters (Hypothesis, no
server), and end to end from PostgreSQL, comparing ``typeof()`` and value of every cell of the
two SQLite files (Hypothesis, real server). PostgreSQL's reader gives column batches too, which
a plain copy takes (``test_sqlite_column_load.py``): the copies here turn them off."""

import datetime as dt
import json
import sqlite3
from decimal import Decimal
from unittest import mock

import psycopg
import pyarrow as pa
import pyarrow.compute  # the conversions take pa with its compute module
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints._arrow import canonical_type
from replikit.endpoints.sqlite import _arrow_load, _column_load
from replikit.endpoints.sqlite import _values as v
from replikit.endpoints.sqlite.target import SqliteWriter
from replikit.schema.types import Type

pytestmark = [pytest.mark.timeout(300)]


def _stored(values, text=False):
    """What SQLite is handed, compared exactly (type and repr: -0.0 is not 0.0); ``text``: a
    column bound into ``CAST(NULLIF(?, 0) AS TEXT)``, where UTF-8 bytes are the text they
    encode and 0 is NULL. A bool
    is the integer sqlite3 binds for it."""
    if text:
        values = [x.decode() if isinstance(x, bytes) else x for x in values]
        values = [None if x == _column_load.TEXT_NULL else x for x in values]
    values = [int(x) if isinstance(x, bool) else x for x in values]  # bound as INTEGER 0/1
    return [(type(x).__name__, repr(x)) for x in values]


def _got(col, array):
    return _stored(col.values(pa, pa.record_batch([array], names=["c"])), col.is_text)


_DECIMALS = st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False)
#: (portable type, adapter, canonical values)
KINDS = {
    "timestamp": (Type.timestamp(6), v.timestamp_out, st.datetimes()),
    "timestamptz": (
        Type.timestamp(6, tz=True),
        v.timestamp_out,
        st.datetimes(timezones=st.just(dt.UTC)),
    ),
    "date": (Type.date(), v.date_out, st.dates()),
    "numeric(12,2)": (Type.decimal(12, 2), v.decimal_to_numeric, _DECIMALS),
    "numeric(15,7)": (
        Type.decimal(15, 7),
        v.decimal_to_numeric,
        st.decimals(-(10**8) + 1, 10**8 - 1, places=7, allow_nan=False),
    ),
    "numeric(38,10)": (
        Type.decimal(38, 10),
        v.decimal_to_text,
        st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False),
    ),
    "float8": (Type.float_(64), v.float_out, st.floats()),
    "float4": (Type.float_(32), v.float_out, st.floats(width=32)),
    "int8": (Type.int_(64), None, st.integers(-(2**63), 2**63 - 1)),
    "bool": (Type.bool_(), None, st.booleans()),
    "text": (Type.text(), None, st.text()),
    "json": (Type.json(), None, st.text()),
    "varchar": (Type.string(12), None, st.text(max_size=12)),
    "bytes": (Type.bytes_(), None, st.binary()),
}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(KINDS)))
def test_a_typed_column_converts_as_its_adapter(data, kind):
    t, adapt, values = KINDS[kind]
    col = _arrow_load._column(pa, "c", t, adapt)
    assert col is not None
    column = data.draw(st.lists(st.none() | values, max_size=20))
    array = pa.array(column, type=canonical_type(pa, t))
    want = [x if x is None or adapt is None else adapt(x) for x in column]
    assert _got(col, array) == _stored(want)


def test_floats_with_nan_and_negative_zero_in_any_slot():
    col = _arrow_load._column(pa, "c", Type.float_(64), v.float_out)
    for column in ([1.5, None, -0.0], [None, float("nan")], [0.0, None], [float("-inf"), -0.0]):
        got = col.values(pa, pa.record_batch([pa.array(column, pa.float64())], names=["c"]))
        assert _stored(got) == _stored([None if x is None else v.float_out(x) for x in column])


#: a batch where one value has no Arrow form keeps the column as PostgreSQL's text: the row
#: path holds the value parsed by Python when Python can, else that text
_TEXTS = {
    "timestamp": (
        Type.timestamp(6),
        v.timestamp_out,
        ["2020-01-02 03:04:05.5", "infinity", "0044-03-15 00:00:00 BC", "12000-01-01 00:00:00"],
        [dt.datetime(2020, 1, 2, 3, 4, 5, 500000), "infinity", "0044-03-15 00:00:00 BC",
         "12000-01-01 00:00:00"],
    ),
    "timestamptz": (
        Type.timestamp(6, tz=True),
        v.timestamp_out,
        ["2020-01-02 03:04:05.25+00", "-infinity"],
        [dt.datetime(2020, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC), "-infinity"],
    ),
    "date": (
        Type.date(),
        v.date_out,
        ["2020-01-02", "infinity", "0044-03-15 BC", "12000-01-01"],
        [dt.date(2020, 1, 2), "infinity", "0044-03-15 BC", "12000-01-01"],
    ),
    "numeric": (
        Type.decimal(12, 2),
        v.decimal_to_numeric,
        ["1.50", "NaN", "-Infinity", "-0.01"],
        [Decimal("1.50"), Decimal("NaN"), Decimal("-Infinity"), Decimal("-0.01")],
    ),
    "numeric38": (
        Type.decimal(38, 10),
        v.decimal_to_text,
        ["0.0000001000", "NaN", "12.5000000000"],
        [Decimal("0.0000001000"), Decimal("NaN"), Decimal("12.5000000000")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(_TEXTS))
def test_a_column_kept_as_text_converts_as_the_row_path_values(kind):
    t, adapt, texts, row_values = _TEXTS[kind]
    col = _arrow_load._column(pa, "c", t, adapt)
    array = pa.array([*texts, None], pa.string())
    assert _got(col, array) == _stored([*map(adapt, row_values), None])


def test_columns_not_covered_load_row_by_row():
    assert _arrow_load._column(pa, "c", Type.int_(64, unsigned=True), v.int_to_text) is None
    assert _arrow_load._column(pa, "c", Type.time(6), v.time_out) is None
    assert _arrow_load._column(pa, "c", Type.decimal(20, 2), v.decimal_to_numeric) is None
    assert _arrow_load._column(pa, "c", Type.timestamp(6), v.date_out) is None
    col = _arrow_load._column(pa, "c", Type.int_(64), None)
    with pytest.raises(TypeError, match="int64"):
        col.values(pa, pa.record_batch([pa.array(["1"])], names=["c"]))


# -- end to end from PostgreSQL ---------------------------------------------------------------

FEW = settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
) | st.sampled_from(["", '"', "a,b", "line\nbreak", "\r\n", "NULL", "NaN", "\\N", "t", "12", "0"])
_ODD_DATES = st.sampled_from(["infinity", "-infinity", "0044-03-15 BC", "12000-01-01"])
COLUMNS = {
    "c_bool": ("boolean", st.booleans()),
    "c_int2": ("smallint", st.integers(-(2**15), 2**15 - 1)),
    "c_int4": ("integer", st.integers(-(2**31), 2**31 - 1)),
    "c_int8": ("bigint", st.integers(-(2**63), 2**63 - 1)),
    "c_num": ("numeric(12,2)", _DECIMALS | st.sampled_from([Decimal("NaN"), Decimal("0.00")])),
    "c_num15": (
        "numeric(15,15)",
        st.decimals(-1, 1, places=15, allow_nan=False).filter(lambda d: abs(d) < 1),
    ),
    "c_num38": (
        "numeric(38,10)",
        st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False),
    ),
    "c_real": ("real", st.floats(width=32) | st.just(-0.0)),
    "c_float": ("double precision", st.floats() | st.sampled_from([-0.0, float("nan")])),
    "c_varchar": ("varchar(12)", _TEXT),
    "c_char": (
        "char(3)",
        st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=3),
    ),
    "c_text": ("text", _TEXT),
    "c_bytea": ("bytea", st.binary(max_size=12)),
    "c_date": ("date", st.dates().map(str) | _ODD_DATES),
    "c_ts": ("timestamp", st.datetimes().map(str) | _ODD_DATES),
    "c_ts0": ("timestamp(0)", st.datetimes().map(str)),
    "c_tstz": ("timestamptz", st.datetimes(timezones=st.just(dt.UTC)).map(str) | _ODD_DATES),
    "c_json": ("json", st.dictionaries(_TEXT, st.integers(), max_size=3).map(json.dumps)),
    "c_jsonb": (
        "jsonb",
        st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2).map(json.dumps),
    ),
    "c_uuid": ("uuid", st.uuids()),
}


@pytest.fixture
def pg_table(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        cols = ", ".join(f"{n} {t}" for n, (t, _) in COLUMNS.items())
        conn.execute(f"CREATE TABLE vals (id int PRIMARY KEY, {cols})")
    return pg_url


def _insert(url, rows):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("TRUNCATE vals")
        marks = ", ".join(["%s"] * (len(COLUMNS) + 1))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO vals VALUES ({marks})", rows)


def _cells(path):
    names = ["id", *COLUMNS]
    select = ", ".join(f"typeof({n}), {n}" for n in names)
    with sqlite3.connect(path) as db:
        rows = db.execute(f"SELECT {select} FROM vals ORDER BY id").fetchall()
    db.close()
    return [[(r[2 * i], repr(r[2 * i + 1])) for i in range(len(names))] for r in rows]


def _copy(url, path, *, arrow):
    path.unlink(missing_ok=True)
    calls = []
    load_arrow = SqliteWriter.load_arrow

    def spy(self, plan, batches):
        calls.append(plan.target_id)
        return load_arrow(self, plan, batches)

    with (
        mock.patch.object(SqliteWriter, "column_writable", return_value=False),
        mock.patch.object(SqliteWriter, "arrow_writable", return_value=arrow),
        mock.patch.object(SqliteWriter, "load_arrow", spy),
    ):
        [stat] = rk.copy(url, f"sqlite:///{path}", include=["public.vals"])
    assert bool(calls) == arrow
    return stat.full_load_rows


@FEW
@given(data=st.data())
def test_postgres_to_sqlite_stores_the_same_through_arrow(pg_table, tmp_path, data):
    n = data.draw(st.integers(1, 12))
    rows = [[i, *(data.draw(st.none() | s) for _, s in COLUMNS.values())] for i in range(n)]
    _insert(pg_table, rows)
    assert _copy(pg_table, tmp_path / "rows.db", arrow=False) == n
    assert _copy(pg_table, tmp_path / "arrow.db", arrow=True) == n
    by_rows, by_arrow = _cells(tmp_path / "rows.db"), _cells(tmp_path / "arrow.db")
    names = ["id", *COLUMNS]
    wrong = [
        f"id {r[0]}: {name}: row path {a}, arrow {b}"
        for r, s in zip(by_rows, by_arrow, strict=True)
        for name, a, b in zip(names, r, s, strict=True)
        if a != b
    ]
    assert len(by_rows) == len(by_arrow) == n
    assert not wrong, "\n".join(wrong[:20])


def test_the_plain_copy_is_arrow_writable(pg_table, tmp_path):
    """Without patching: a table of these types can load into SQLite through Arrow (from a
    source without column batches: MySQL/MariaDB, DuckDB)."""
    _insert(pg_table, [[1, *([None] * len(COLUMNS))]])
    with rk.endpoint(pg_table) as pg, rk.endpoint(f"sqlite:///{tmp_path / 'x.db'}") as lite:
        task = rk.Task(pg, lite, mappings=rk.Mappings().include("public", "vals"))
        [plan] = task.plan().assessment.tables
        assert lite.writer().arrow_writable(plan)
        [stat] = task.run()
    assert stat.full_load_rows == 1


def test_a_row_sqlite_refuses_is_named_as_on_the_row_path(pg_url, tmp_path):
    """A CHECK of an existing table refuses a row: the error names the table and the key
    (text keys as text, though bound as UTF-8), and the refused batch is rolled back."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (k text PRIMARY KEY, s text)")
        conn.execute("INSERT INTO t VALUES ('a', 'ok'), ('ké', 'bad'), ('z', 'ok')")
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, s TEXT CHECK (s <> 'bad'))")
    db.close()
    errors = {}
    for arrow in (False, True):
        with (
            mock.patch.object(SqliteWriter, "column_writable", return_value=False),
            mock.patch.object(SqliteWriter, "arrow_writable", return_value=arrow),
            rk.endpoint(pg_url) as pg,
            rk.endpoint(f"sqlite:///{path}") as lite,
        ):
            task = rk.Task(
                pg,
                lite,
                mappings=rk.Mappings().include("public", "t"),
                settings=rk.TaskSettings(target_table_prep_mode="truncate"),
            )
            with pytest.raises(rk.TaskError):
                task.run()
            [stat] = task.statistics()
            errors[arrow] = str(stat.error)
    assert "k='ké'" in errors[True], errors[True]
    assert "CHECK constraint failed" in errors[True], errors[True]
    assert errors[True] == errors[False]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    db.close()


def test_a_utf16_database_loads_row_by_row(pg_url, tmp_path):
    """Text bound as UTF-8 bytes would be read as UTF-16 there: such a database takes the
    row path, and holds the text."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (k int PRIMARY KEY, s text)")
        conn.execute("INSERT INTO t VALUES (1, 'ké 日本'), (2, 'plain')")
    path = tmp_path / "u16.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA encoding = 'UTF-16le'")
        db.execute("CREATE TABLE other (x)")
    db.close()
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"sqlite:///{path}") as lite:
        task = rk.Task(pg, lite, mappings=rk.Mappings().include("public", "t"))
        [plan] = task.plan().assessment.tables
        assert not lite.writer().arrow_writable(plan)
        assert not lite.writer().column_writable(plan)
        task.run()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT k, s FROM t ORDER BY k").fetchall() == [
            (1, "ké 日本"),
            (2, "plain"),
        ]
    db.close()

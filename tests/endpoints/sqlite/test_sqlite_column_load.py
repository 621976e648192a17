"""The column batch load into SQLite (``SqliteWriter.load_columns``) stores exactly what the row
path stores: column by column against the value adapters (Hypothesis, no server), and end to
end from PostgreSQL, comparing ``typeof()`` and value of every cell of the two SQLite files
(Hypothesis, real server); and that load imports neither pyarrow nor ADBC."""

import datetime as dt
import json
import sqlite3
import subprocess
import sys
from decimal import Decimal
from unittest import mock

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints._columns import form_of, in_form
from replikit.endpoints.sqlite import _column_load
from replikit.endpoints.sqlite import _values as v
from replikit.endpoints.sqlite.target import SqliteWriter
from replikit.schema.types import Type

pytestmark = [pytest.mark.timeout(300)]


def _stored(values, text=False):
    """What SQLite is handed, compared exactly (type and repr: -0.0 is not 0.0); ``text``: a
    column bound into ``CAST(NULLIF(?, 0) AS TEXT)``, where UTF-8 bytes are the text they
    encode and 0 is NULL. A bool is the integer sqlite3 binds for it."""
    if text:
        values = [x.decode() if isinstance(x, bytes | bytearray) else x for x in values]
        values = [None if x == _column_load.TEXT_NULL else x for x in values]
    values = [int(x) if isinstance(x, bool) else x for x in values]  # bound as INTEGER 0/1
    return [(type(x).__name__, repr(x)) for x in values]


def _form(t, values):
    """A column batch's column of canonical ``values`` (:mod:`replikit.endpoints._columns`)."""
    return [in_form(form_of(t), x) for x in values]


_ODD_DATES = st.sampled_from(["infinity", "-infinity", "0044-03-15 BC", "12000-01-01"])
_ODD_TIMES = st.sampled_from(["infinity", "0044-03-15 00:00:00.5 BC", "12000-01-01 00:00:00"])
_SPECIAL = st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
#: (portable type, adapter, canonical values)
KINDS = {
    "timestamp": (Type.timestamp(6), v.timestamp_out, st.datetimes() | _ODD_TIMES),
    "timestamptz": (
        Type.timestamp(6, tz=True),
        v.timestamp_out,
        st.datetimes(timezones=st.just(dt.UTC)) | _ODD_TIMES,
    ),
    "date": (Type.date(), v.date_out, st.dates() | _ODD_DATES),
    "numeric(12,2)": (
        Type.decimal(12, 2),
        v.decimal_to_numeric,
        st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False) | _SPECIAL,
    ),
    "numeric(15,15)": (
        Type.decimal(15, 15),
        v.decimal_to_numeric,
        st.decimals(-1, 1, places=15, allow_nan=False).filter(lambda d: abs(d) < 1),
    ),
    "numeric(38,10)": (
        Type.decimal(38, 10),
        v.decimal_to_text,
        st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False) | _SPECIAL,
    ),
    "float8": (Type.float_(64), v.float_out, st.floats() | st.just(-0.0)),
    "float4": (Type.float_(32), v.float_out, st.floats(width=32)),
    "int8": (Type.int_(64), None, st.integers(-(2**63), 2**63 - 1)),
    "bool": (Type.bool_(), None, st.booleans()),
    "text": (Type.text(), None, st.text()),
    "json": (Type.json(), None, st.text()),
    "varchar": (Type.string(12), None, st.text(max_size=12)),
    "uuid": (Type.uuid(), v.uuid_out, st.uuids()),
    "bytes": (Type.bytes_(), None, st.binary()),
}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(KINDS)))
def test_a_column_converts_as_its_adapter(data, kind):
    t, adapt, values = KINDS[kind]
    found = _column_load._convert(t, adapt)
    assert found is not None
    convert, is_text = found
    column = data.draw(st.lists(st.none() | values, max_size=20))
    want = [x if x is None or adapt is None else adapt(x) for x in column]
    assert _stored(convert(_form(t, column)), is_text) == _stored(want)


def test_floats_with_nan_and_negative_zero_in_any_slot():
    convert, _ = _column_load._convert(Type.float_(64), v.float_out)
    for column in ([1.5, None, -0.0], [None, float("nan")], [0.0, None], [float("-inf"), -0.0]):
        want = [None if x is None else v.float_out(x) for x in column]
        assert _stored(convert(column)) == _stored(want)
    both = [float("inf"), float("-inf"), None]  # their sum is NaN: converted value by value
    assert _stored(convert(both)) == _stored(both)


def test_columns_not_covered_load_another_way():
    assert _column_load._convert(Type.int_(64, unsigned=True), v.int_to_text) is None
    assert _column_load._convert(Type.time(6), v.time_out) is None
    assert _column_load._convert(Type.decimal(20, 2), v.decimal_to_numeric) is None
    assert _column_load._convert(Type.decimal(None, None), v.decimal_to_numeric) is None
    assert _column_load._convert(Type.timestamp(6), v.date_out) is None


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
_DECIMALS = st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False)
_TINY = st.decimals(-1, 1, places=12, allow_nan=False).filter(lambda d: abs(d) < Decimal("1E-6"))
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
        st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False) | _TINY,
    ),
    "c_numeric": ("numeric", _TINY | _DECIMALS | st.just(Decimal("-Infinity"))),
    "c_money": ("money", st.decimals(-(10**9), 10**9, places=2, allow_nan=False)),
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


def _copy(url, path, *, columns):
    """Copy ``vals`` into ``path`` through column batches, or (``columns=False``) row by row."""
    path.unlink(missing_ok=True)
    calls = []
    load_columns = SqliteWriter.load_columns

    def spy(self, plan, batches):
        calls.append(plan.target_id)
        return load_columns(self, plan, batches)

    with (
        mock.patch.object(SqliteWriter, "column_writable", return_value=columns),
        mock.patch.object(SqliteWriter, "arrow_writable", return_value=False),
        mock.patch.object(SqliteWriter, "load_columns", spy),
    ):
        [stat] = rk.copy(url, f"sqlite:///{path}", include=["public.vals"])
    assert bool(calls) == columns
    return stat.full_load_rows


@FEW
@given(data=st.data())
def test_postgres_to_sqlite_stores_the_same_through_column_batches(pg_table, tmp_path, data):
    n = data.draw(st.integers(1, 12))
    rows = [[i, *(data.draw(st.none() | s) for _, s in COLUMNS.values())] for i in range(n)]
    _insert(pg_table, rows)
    assert _copy(pg_table, tmp_path / "rows.db", columns=False) == n
    assert _copy(pg_table, tmp_path / "columns.db", columns=True) == n
    by_rows, by_columns = _cells(tmp_path / "rows.db"), _cells(tmp_path / "columns.db")
    names = ["id", *COLUMNS]
    wrong = [
        f"id {r[0]}: {name}: row path {a}, column batches {b}"
        for r, s in zip(by_rows, by_columns, strict=True)
        for name, a, b in zip(names, r, s, strict=True)
        if a != b
    ]
    assert len(by_rows) == len(by_columns) == n
    assert not wrong, "\n".join(wrong[:20])


def test_the_plain_copy_takes_the_column_path_without_pyarrow(pg_table, tmp_path):
    """Without patching, in a fresh interpreter: a PostgreSQL table of these types loads into
    SQLite through column batches, and neither pyarrow nor ADBC's driver is imported (their
    ~70 MB of resident memory would take the full load over its 100 MB budget)."""
    _insert(pg_table, [[1, *([None] * len(COLUMNS))], [2, *([None] * len(COLUMNS))]])
    script = f"""
import sys
from unittest import mock
import replikit as rk
from replikit.endpoints.sqlite.target import SqliteWriter
with mock.patch.object(SqliteWriter, "load_arrow", side_effect=AssertionError("Arrow path")), \\
        mock.patch.object(SqliteWriter, "load", side_effect=AssertionError("row path")):
    [stat] = rk.copy({pg_table!r}, {f"sqlite:///{tmp_path / 'x.db'}"!r}, include=["public.vals"])
assert stat.full_load_rows == 2, stat
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pyarrow", "adbc_driver_manager"))
print(loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", done.stdout


def test_a_row_sqlite_refuses_is_named_as_on_the_row_path(pg_url, tmp_path):
    """A CHECK of an existing table refuses a row: the error names the table and the key
    (text keys as text, though bound as UTF-8 bytes), and the refused batch is rolled back."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (k text PRIMARY KEY, s text)")
        conn.execute("INSERT INTO t VALUES ('a', 'ok'), ('ké', 'bad'), ('z', 'ok')")
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, s TEXT CHECK (s <> 'bad'))")
    db.close()
    errors = {}
    for columns in (False, True):
        with (
            mock.patch.object(SqliteWriter, "column_writable", return_value=columns),
            mock.patch.object(SqliteWriter, "arrow_writable", return_value=False),
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
            errors[columns] = str(stat.error)
    assert "k='ké'" in errors[True], errors[True]
    assert "CHECK constraint failed" in errors[True], errors[True]
    assert errors[True] == errors[False]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    db.close()

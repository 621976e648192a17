"""The columnar full load into SQLite (Arrow record batches, ``SqliteWriter.load_arrow``) stores
exactly what the row path stores: column by column against the value adapters (Hypothesis, no
server), and end to end from PostgreSQL, comparing ``typeof()`` and value of every cell of the
two SQLite files (Hypothesis, real server). PostgreSQL's reader gives column batches too, which
a plain copy takes (``test_sqlite_column_load.py``): the copies here turn them off. The
strategies and the end-to-end steps are shared with that file (``strategies_columns``)."""

import datetime as dt
import sqlite3
from decimal import Decimal

import psycopg
import pyarrow as pa
import pyarrow.compute  # the conversions take pa with its compute module
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import replikit as rk
import strategies_columns as sc
from replikit.endpoints._arrow import canonical_type
from replikit.endpoints.sqlite import _arrow_load
from replikit.endpoints.sqlite import _values as v
from replikit.schema.types import Type

pytestmark = [pytest.mark.timeout(300)]


def _got(col, array):
    return sc.stored(col.values(pa, pa.record_batch([array], names=["c"])), col.is_text)


#: every kind with values Arrow's typed arrays hold (the odd ones: _TEXTS below)
KINDS = sc.kinds(odd=False)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(KINDS)))
def test_a_typed_column_converts_as_its_adapter(data, kind):
    t, adapt, values = KINDS[kind]
    col = _arrow_load._column(pa, "c", t, adapt)
    assert col is not None
    column = data.draw(st.lists(st.none() | values, max_size=20))
    array = pa.array(column, type=canonical_type(pa, t))
    want = [x if x is None or adapt is None else adapt(x) for x in column]
    assert _got(col, array) == sc.stored(want)


def test_floats_with_nan_and_negative_zero_in_any_slot():
    col = _arrow_load._column(pa, "c", Type.float_(64), v.float_out)
    for column in ([1.5, None, -0.0], [None, float("nan")], [0.0, None], [float("-inf"), -0.0]):
        got = col.values(pa, pa.record_batch([pa.array(column, pa.float64())], names=["c"]))
        assert sc.stored(got) == sc.stored([None if x is None else v.float_out(x) for x in column])


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
    assert _got(col, array) == sc.stored([*map(adapt, row_values), None])


def test_columns_not_covered_load_row_by_row():
    assert _arrow_load._column(pa, "c", Type.int_(64, unsigned=True), v.int_to_text) is None
    assert _arrow_load._column(pa, "c", Type.time(6), v.time_out) is None
    assert _arrow_load._column(pa, "c", Type.decimal(20, 2), v.decimal_to_numeric) is None
    assert _arrow_load._column(pa, "c", Type.timestamp(6), v.date_out) is None
    col = _arrow_load._column(pa, "c", Type.int_(64), None)
    with pytest.raises(TypeError, match="int64"):
        col.values(pa, pa.record_batch([pa.array(["1"])], names=["c"]))


# -- end to end from PostgreSQL ---------------------------------------------------------------


#: the table's columns (after ``id``), with their values
COLUMNS = sc.COLUMNS


@pytest.fixture
def pg_table(pg_url):
    return sc.create_vals(pg_url, COLUMNS)


@sc.FEW
@given(data=st.data())
def test_postgres_to_sqlite_stores_the_same_through_arrow(pg_table, tmp_path, data):
    sc.same_cells_through(pg_table, tmp_path, data, COLUMNS, through="arrow")


def test_the_plain_copy_is_arrow_writable(pg_table, tmp_path):
    """Without patching: a table of these types can load into SQLite through Arrow (from a
    source without column batches: MySQL/MariaDB, DuckDB)."""
    sc.insert_vals(pg_table, [[1, *([None] * len(COLUMNS))]])
    with rk.endpoint(pg_table) as pg, rk.endpoint(f"sqlite:///{tmp_path / 'x.db'}") as lite:
        task = rk.Task(pg, lite, mappings=rk.Mappings().include("public", "vals"))
        [plan] = task.plan().assessment.tables
        assert lite.writer().arrow_writable(plan)
        [stat] = task.run()
    assert stat.full_load_rows == 1


def test_a_row_sqlite_refuses_is_named_as_on_the_row_path(pg_url, tmp_path):
    """A CHECK of an existing table refuses a row: the error names the table and the key
    (text keys as text, though bound as UTF-8), and the refused batch is rolled back."""
    sc.refused_row_errors(pg_url, tmp_path, through="arrow")


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

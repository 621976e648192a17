"""The column batch load into SQLite (``SqliteWriter.load_columns``) stores exactly what the row
path stores: column by column against the value adapters (Hypothesis, no server), and end to
end from PostgreSQL, comparing ``typeof()`` and value of every cell of the two SQLite files
(Hypothesis, real server); and that load imports neither pyarrow nor ADBC. The strategies and
the end-to-end steps are shared with the Arrow path's tests (``strategies_columns``)."""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import strategies_columns as sc
from replikit.endpoints._columns import form_of, in_form
from replikit.endpoints.sqlite import _column_load
from replikit.endpoints.sqlite import _values as v
from replikit.schema.types import Type

pytestmark = [pytest.mark.timeout(300)]


def _form(t, values):
    """A column batch's column of canonical ``values`` (:mod:`replikit.endpoints._columns`)."""
    return [in_form(form_of(t), x) for x in values]


#: every kind, with the values only PostgreSQL's text holds (the column path takes those too)
KINDS = sc.kinds(odd=True, extra={"uuid": (Type.uuid(), v.uuid_out, st.uuids())})


@settings(max_examples=300, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(KINDS)))
def test_a_column_converts_as_its_adapter(data, kind):
    t, adapt, values = KINDS[kind]
    found = _column_load._convert(t, adapt)
    assert found is not None
    convert, is_text = found
    column = data.draw(st.lists(st.none() | values, max_size=20))
    want = [x if x is None or adapt is None else adapt(x) for x in column]
    assert sc.stored(convert(_form(t, column)), is_text) == sc.stored(want)


def test_floats_with_nan_and_negative_zero_in_any_slot():
    convert, _ = _column_load._convert(Type.float_(64), v.float_out)
    for column in ([1.5, None, -0.0], [None, float("nan")], [0.0, None], [float("-inf"), -0.0]):
        want = [None if x is None else v.float_out(x) for x in column]
        assert sc.stored(convert(column)) == sc.stored(want)
    both = [float("inf"), float("-inf"), None]  # their sum is NaN: converted value by value
    assert sc.stored(convert(both)) == sc.stored(both)


def test_columns_not_covered_load_another_way():
    assert _column_load._convert(Type.int_(64, unsigned=True), v.int_to_text) is None
    assert _column_load._convert(Type.time(6), v.time_out) is None
    assert _column_load._convert(Type.decimal(20, 2), v.decimal_to_numeric) is None
    assert _column_load._convert(Type.decimal(None, None), v.decimal_to_numeric) is None
    assert _column_load._convert(Type.timestamp(6), v.date_out) is None


# -- end to end from PostgreSQL ---------------------------------------------------------------


#: the table's columns (after ``id``), with their values
COLUMNS = {**sc.COLUMNS, **sc.UNBOUNDED}


@pytest.fixture
def pg_table(pg_url):
    return sc.create_vals(pg_url, COLUMNS)


@sc.FEW
@given(data=st.data())
def test_postgres_to_sqlite_stores_the_same_through_column_batches(pg_table, tmp_path, data):
    sc.same_cells_through(pg_table, tmp_path, data, COLUMNS, through="columns")


def test_the_plain_copy_takes_the_column_path_without_pyarrow(pg_table, tmp_path):
    """Without patching, in a fresh interpreter: a PostgreSQL table of these types loads into
    SQLite through column batches, and neither pyarrow nor ADBC's driver is imported (their
    ~70 MB of resident memory would take the full load over its 100 MB budget)."""
    sc.insert_vals(pg_table, [[1, *([None] * len(COLUMNS))], [2, *([None] * len(COLUMNS))]])
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
    sc.refused_row_errors(pg_url, tmp_path, through="columns")

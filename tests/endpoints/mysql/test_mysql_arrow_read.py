"""MySQL/MariaDB read in bulk into Arrow (``read_arrow``) holds the values the row path reads
(``read``), value for value, on a real server (Hypothesis for values); a zero date follows the
row path's policy; the table then loads into DuckDB from the Arrow batches."""

import datetime as dt
import json
from decimal import Decimal
from urllib.parse import urlsplit

import pymysql
import pytest
from hypothesis import given
from hypothesis import strategies as st

import replikit as rk
from replikit.pipeline.contracts import SupportsArrowRead
from strategies_columns import few

pytestmark = [pytest.mark.timeout(300)]

FEW = few(15)
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=12,
) | st.sampled_from(["", "NULL", "a,b", "line\nbreak", "\\N"])
_DATETIMES = st.datetimes(dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31))
COLUMNS = {
    "c_bool": ("tinyint(1)", st.sampled_from([0, 1])),
    "c_tiny": ("tinyint", st.integers(-128, 127)),
    "c_int": ("int", st.integers(-(2**31), 2**31 - 1)),
    "c_ubig": ("bigint unsigned", st.integers(0, 2**64 - 1)),
    "c_dec": ("decimal(12,2)", st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False)),
    "c_float": ("float", st.sampled_from([0.5, -1.25, 3.4e38, 1e-30])),
    "c_double": ("double", st.floats(allow_nan=False, allow_infinity=False)),
    "c_varchar": ("varchar(20)", _TEXT),
    "c_text": ("text", _TEXT),
    "c_blob": ("blob", st.binary(max_size=12)),
    "c_date": ("date", st.dates(dt.date(1000, 1, 1))),
    "c_dt": ("datetime(6)", _DATETIMES),
    "c_ts": ("timestamp(6) NULL", st.datetimes(dt.datetime(1971, 1, 1), dt.datetime(2037, 12, 31))),
    "c_json": ("json", st.dictionaries(_TEXT, st.integers(), max_size=3).map(json.dumps)),
    "c_enum": ("enum('a','b','c d')", st.sampled_from(["a", "b", "c d"])),
}


@pytest.fixture
def my_table(mysql_url):
    cols = ", ".join(f"{n} {t}" for n, (t, _) in COLUMNS.items())
    _execute(mysql_url, f"CREATE TABLE vals (id int PRIMARY KEY, {cols})")
    return mysql_url


def _execute(url, *statements, rows=None):
    p = urlsplit(url)  # the test server: root without a password
    conn = pymysql.connect(
        host=p.hostname, port=p.port, user=p.username, database=p.path.lstrip("/"),
        charset="utf8mb4", autocommit=True, init_command="SET time_zone = '+00:00'",
    )  # fmt: skip
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
            if rows:
                marks = ", ".join(["%s"] * len(rows[0]))
                cur.executemany(f"INSERT INTO vals VALUES ({marks})", rows)
    finally:
        conn.close()


def _same(a, b):
    if isinstance(a, float):
        return type(b) is float and repr(a) == repr(b)
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a == b and (a.tzinfo is None) == (b.tzinfo is None)
    return type(a) is type(b) and a == b


def _both(url):
    with rk.endpoint(url) as my:
        reader = my.reader(["vals"])
        assert isinstance(reader, SupportsArrowRead)
        (table,) = reader.tables
        assert reader.arrow_readable(table)
        (unit,) = reader.units(table)
        by_row = {r[0]: r for b in reader.read(unit) for r in b.rows}
        records = [r for b in reader.read_arrow(unit) for r in b.to_pylist()]
        reader.close()
    return table, by_row, records


@FEW
@given(data=st.data())
def test_arrow_read_holds_the_row_path_values(my_table, data):
    rows = [
        [i, *(data.draw(st.none() | s) if i else None for _, s in COLUMNS.values())]
        for i in range(5)
    ]
    _execute(my_table, "DELETE FROM vals", rows=rows)
    table, by_row, records = _both(my_table)
    assert len(records) == len(rows)
    wrong = [
        f"{name}: row path {by_row[rec['id']][j]!r}, arrow {rec[name]!r}"
        for rec in records
        for j, name in enumerate(table.column_names)
        if not _same(by_row[rec["id"]][j], rec[name])
    ]
    assert not wrong, "\n".join(wrong[:20])


def test_zero_dates_and_odd_booleans_follow_the_row_path(mysql_url, tmp_path):
    _execute(
        mysql_url,
        "SET SESSION sql_mode = ''",
        "CREATE TABLE vals (id int PRIMARY KEY, d date NULL, b tinyint(1), n decimal(6,2))",
        "INSERT INTO vals VALUES (1, '2024-02-29', 1, 1.5), (2, '0000-00-00', 0, NULL), "
        "(3, NULL, NULL, -2)",
    )
    _, _, records = _both(mysql_url)  # zero dates are NULL by default, counted
    assert [(r["id"], r["d"], r["b"], r["n"]) for r in records] == [
        (1, dt.date(2024, 2, 29), True, Decimal("1.50")),
        (2, None, False, None),
        (3, None, None, Decimal("-2.00")),
    ]
    path = tmp_path / "m.duckdb"
    with rk.endpoint(mysql_url) as my, rk.endpoint(f"duckdb:///{path}") as duck:
        [stat] = rk.Task(my, duck).run()
        assert stat.full_load_rows == 3
        [got] = duck.reader().tables
        assert got.column_names == ("id", "d", "b", "n")
    _execute(mysql_url, "UPDATE vals SET b = 2 WHERE id = 3")
    with rk.endpoint(mysql_url) as my:
        reader = my.reader(["vals"])
        (unit,) = reader.units(reader.tables[0])
        with pytest.raises(rk.DataError, match="id=3|'id': 3"):
            list(reader.read_arrow(unit))
        reader.close()

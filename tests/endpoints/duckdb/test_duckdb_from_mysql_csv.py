"""MySQL/MariaDB -> DuckDB through the server's CSV lines (``_csvlines``): ``read_arrow`` of a
table whose every column has a CSV field holds the values the row path reads (``read``),
value for value, on a real server (Hypothesis for values); zero dates, odd booleans, one-column
NULL rows and strings full of quotes, commas and line breaks; the table then loads into DuckDB
with the same values as the row path would write."""

import datetime as dt
import json
from decimal import Decimal
from urllib.parse import urlsplit

import pymysql
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints.mysql._csvlines import csv_lines

pytestmark = [pytest.mark.timeout(300)]

FEW = settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=12,
) | st.sampled_from(
    ["", '"', '""', '","', "a,b", "line\nbreak", "cr\r\nlf", "\r", "\\N", "NULL", " ", "\t", "😀"]
)
_DATETIMES = st.datetimes(dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31))
#: every kind the CSV lines carry (no FLOAT, binary, TIME or BIT: those tables keep the
#: column-by-column path, tests/endpoints/mysql/test_mysql_arrow_read.py)
COLUMNS = {
    "c_bool": ("tinyint(1)", st.sampled_from([0, 1])),
    "c_tiny": ("tinyint", st.integers(-128, 127)),
    "c_int": ("int", st.integers(-(2**31), 2**31 - 1)),
    "c_big": ("bigint", st.integers(-(2**63), 2**63 - 1)),
    "c_ubig": ("bigint unsigned", st.integers(0, 2**64 - 1)),
    "c_dec": ("decimal(12,2)", st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False)),
    "c_dec0": ("decimal(38,0)", st.decimals(-(10**37), 10**37, places=0, allow_nan=False)),
    "c_double": ("double", st.floats(allow_nan=False, allow_infinity=False)),
    "c_varchar": ("varchar(20)", _TEXT),
    "c_latin": ("varchar(20) CHARACTER SET latin1", st.sampled_from(["", "café", 'a"b', "x,\ny"])),
    "c_text": ("text", _TEXT),
    "c_date": ("date", st.dates(dt.date(1000, 1, 1))),
    "c_dt0": ("datetime", _DATETIMES.map(lambda d: d.replace(microsecond=0))),
    "c_dt": ("datetime(6)", _DATETIMES),
    "c_ts": ("timestamp(6) NULL", st.datetimes(dt.datetime(1971, 1, 1), dt.datetime(2037, 12, 31))),
    "c_json": ("json", st.dictionaries(_TEXT, st.integers(), max_size=3).map(json.dumps)),
    "c_enum": ("enum('a','b','c d','\"q\"')", st.sampled_from(["a", "b", "c d", '"q"'])),
}


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


@pytest.fixture
def my_table(mysql_url):
    cols = ", ".join(f"{n} {t}" for n, (t, _) in COLUMNS.items())
    _execute(mysql_url, f"CREATE TABLE vals (id int PRIMARY KEY, {cols})")
    return mysql_url


def _same(a, b):
    if isinstance(a, float):
        return type(b) is float and repr(a) == repr(b)
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a == b and (a.tzinfo is None) == (b.tzinfo is None)
    return type(a) is type(b) and a == b


def _both(url, **options):
    """The row path's rows by key, and ``read_arrow``'s records (through the CSV lines)."""
    with rk.endpoint(url) as my:
        reader = my.reader(["vals"], **options)
        (table,) = reader.tables
        assert reader.arrow_readable(table)
        import pyarrow as pa

        assert csv_lines(pa, table) is not None, "the table should read through CSV lines"
        (unit,) = reader.units(table)
        by_row = {r[0]: r for b in reader.read(unit) for r in b.rows}
        batches = reader.read_arrow(unit)
        try:
            records = [r for b in batches for r in b.to_pylist()]
        finally:
            batches.close()
        reader.close()
    return table, by_row, records


def _wrong(table, by_row, records):
    return [
        f"{name}: row path {by_row[rec['id']][j]!r}, csv {rec[name]!r}"
        for rec in records
        for j, name in enumerate(table.column_names)
        if not _same(by_row[rec["id"]][j], rec[name])
    ]


@FEW
@given(data=st.data())
def test_csv_lines_hold_the_row_path_values(my_table, data):
    rows = [
        [i, *(data.draw(st.none() | s) if i else None for _, s in COLUMNS.values())]
        for i in range(6)
    ]
    _execute(my_table, "DELETE FROM vals", rows=rows)
    table, by_row, records = _both(my_table)
    assert sorted(r["id"] for r in records) == list(range(6))
    wrong = _wrong(table, by_row, records)
    assert not wrong, "\n".join(wrong[:20])


def test_many_rows_in_several_chunks_and_one_column_nulls(mysql_url):
    """Rows spread over several fetches (chunks grow from 1,000 rows), and a one-column
    table whose NULL rows are empty lines: none is lost."""
    _execute(mysql_url, "CREATE TABLE vals (id int PRIMARY KEY, s text NULL)")
    rows = [[i, None if i % 3 == 0 else ('"' * (i % 5)) + f"\n{i}"] for i in range(25_000)]
    _execute(mysql_url, rows=rows)
    table, by_row, records = _both(mysql_url)
    assert len(records) == 25_000
    assert not _wrong(table, by_row, records)
    _execute(mysql_url, "DROP TABLE vals", "CREATE TABLE vals (s text NULL)")
    _execute(mysql_url, rows=[[None], [""], [None]])
    with rk.endpoint(mysql_url) as my:
        reader = my.reader(["vals"])
        (unit,) = reader.units(reader.tables[0])
        batches = reader.read_arrow(unit)
        got = sorted((r["s"] for b in batches for r in b.to_pylist()), key=str)
        reader.close()
    assert got == ["", None, None]


def test_zero_dates_follow_the_policy_and_refusals_name_the_row(mysql_url):
    _execute(
        mysql_url,
        "SET SESSION sql_mode = ''",
        "CREATE TABLE vals (id int PRIMARY KEY, d date NULL, t datetime(6) NOT NULL, "
        "b tinyint(1), n decimal(6,2))",
        "INSERT INTO vals VALUES (1, '2024-02-29', '2024-02-29 01:02:03.5', 1, 1.5), "
        "(2, '0000-00-00', '2001-01-01', 0, NULL), (3, '2020-02-31', '2001-01-01', NULL, -2)",
    )
    table, by_row, records = _both(mysql_url)
    assert [(r["id"], r["d"], r["b"], r["n"]) for r in records] == [
        (1, dt.date(2024, 2, 29), True, Decimal("1.50")),
        (2, None, False, None),
        (3, None, None, Decimal("-2.00")),
    ]
    assert not _wrong(table, by_row, records)
    with rk.endpoint(mysql_url) as my:
        reader = my.reader(["vals"])
        (unit,) = reader.units(reader.tables[0])
        list(reader.read_arrow(unit))
        assert sum(reader.zero_dates.values()) == 2
        reader.close()
        strict = my.reader(["vals"], zero_dates="error")
        with pytest.raises(rk.DataError, match="zero_dates='error'") as info:
            list(strict.read_arrow(unit))
        assert info.value.column == "d"
        strict.close()
    _execute(
        mysql_url,
        "UPDATE vals SET t = '0000-00-00' WHERE id = 1",
        "UPDATE vals SET b = 2 WHERE id = 3",
    )
    with rk.endpoint(mysql_url) as my:
        reader = my.reader(["vals"])
        (unit,) = reader.units(reader.tables[0])
        with pytest.raises(rk.DataError, match="NOT NULL|not a boolean") as info:
            list(reader.read_arrow(unit))
        assert info.value.column in ("t", "b")
        reader.close()


@FEW
@given(data=st.data())
def test_duckdb_holds_what_the_row_path_writes(my_table, tmp_path_factory, monkeypatch, data):
    """The same table copied to DuckDB through the CSV lines and through the row path
    (``arrow_readable`` off): equal tables."""
    import duckdb

    from replikit.endpoints.mysql.source import MysqlReader

    rows = [[i, *(data.draw(st.none() | s) for _, s in COLUMNS.values())] for i in range(4)]
    _execute(my_table, "DELETE FROM vals", rows=rows)
    folder = tmp_path_factory.mktemp("csvduck")
    got = {}
    for name in ("columnar", "rows"):
        if name == "rows":
            monkeypatch.setattr(MysqlReader, "arrow_readable", lambda self, table: False)
        path = folder / f"{name}.duckdb"
        rk.copy(my_table, f"duckdb:///{path}", include=["%.vals"], progress=False)
        conn = duckdb.connect(str(path), read_only=True)
        try:
            conn.execute("SET TimeZone = 'UTC'")
            (schema,) = conn.execute(
                "SELECT schema_name FROM duckdb_tables() WHERE table_name = 'vals'"
            ).fetchone()
            got[name] = conn.execute(f'SELECT * FROM "{schema}".vals ORDER BY id').fetchall()
        finally:
            conn.close()
    monkeypatch.undo()
    assert len(got["columnar"]) == 4
    assert got["columnar"] == got["rows"]

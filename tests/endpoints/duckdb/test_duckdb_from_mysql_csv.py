"""MySQL/MariaDB -> DuckDB through the server's CSV lines (``_csvlines``): ``read_arrow`` of a
table whose every column has a CSV field holds the values the row path reads (``read``),
value for value, on a real server (Hypothesis for values); zero dates, odd booleans, one-column
NULL rows and strings full of quotes, commas and line breaks; the table then loads into DuckDB
with the same values as the row path would write, by default through DuckDB's own CSV reader
(``copy_text`` / ``load_text`` over a FIFO, no pyarrow), falling back to the record batches
for a unit it refuses."""

import datetime as dt
import json
from decimal import Decimal
from urllib.parse import urlsplit

import pymysql
import pytest
from hypothesis import given
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints.mysql._csvlines import csv_lines
from strategies_columns import few

pytestmark = [pytest.mark.timeout(300)]

FEW = few(20)
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=12,
) | st.sampled_from(
    [
        *("", '"', '""', '","', "a,b", "line\nbreak", "cr\r\nlf", "\r", "\\N", "NULL", " ", "\t"),
        *("😀", "'", "''", "a'b", "\\", "\\'", "\\0", "\\Z", "\x1a", "a\x1a\\0\\Z'", "\\\\0"),
    ]
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


@pytest.fixture(autouse=True)
def _csv_lines(monkeypatch):
    """These tests are about the CSV lines: connectorx's Arrow stream, which a DuckDB target
    takes first where connectorx is installed (test_duckdb_from_mysql_connectorx.py), is
    off."""
    from replikit.endpoints.mysql.source import MysqlReader

    monkeypatch.setattr(MysqlReader, "arrow_driver", "none")


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


#: a table of a valid, a zero and an invalid date, booleans and decimals (rows 1-3)
_ZERO_DATES = (
    "SET SESSION sql_mode = ''",
    "CREATE TABLE vals (id int PRIMARY KEY, d date NULL, t datetime(6) NOT NULL, "
    "b tinyint(1), n decimal(6,2))",
    "INSERT INTO vals VALUES (1, '2024-02-29', '2024-02-29 01:02:03.5', 1, 1.5), "
    "(2, '0000-00-00', '2001-01-01', 0, NULL), (3, '2020-02-31', '2001-01-01', NULL, -2)",
)


def test_zero_dates_follow_the_policy_and_refusals_name_the_row(mysql_url):
    _execute(mysql_url, *_ZERO_DATES)
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


def _copy(url, path, table="vals"):
    """``rk.copy`` of ``table`` into DuckDB at ``path``; its rows ordered by the first column."""
    import duckdb

    rk.copy(url, f"duckdb:///{path}", include=[f"%.{table}"], progress=False)
    conn = duckdb.connect(str(path), read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        (schema,) = conn.execute(
            f"SELECT schema_name FROM duckdb_tables() WHERE table_name = '{table}'"
        ).fetchone()
        return conn.execute(f'SELECT * FROM "{schema}".{table} ORDER BY 1').fetchall()
    finally:
        conn.close()


def _refused(url, path):
    """The error of the one table of a task copying ``vals`` to DuckDB at ``path``, which
    must fail."""
    with rk.endpoint(url) as my, rk.endpoint(f"duckdb:///{path}") as duck:
        task = rk.Task(my, duck, mappings=rk.Mappings().include("%", "vals"))
        with pytest.raises(rk.TaskError):
            task.run()
        [stat] = task.statistics()
        return str(stat.error)


def _no_batches(monkeypatch):
    """Fail a load that leaves DuckDB's CSV reader for the Arrow record batches."""
    from replikit.endpoints.mysql.source import MysqlReader

    def refuse(self, unit):
        raise AssertionError(f"{unit} was loaded as record batches, not as CSV lines")

    monkeypatch.setattr(MysqlReader, "read_arrow", refuse)


@FEW
@given(data=st.data())
def test_duckdb_holds_what_the_row_path_writes(my_table, tmp_path_factory, monkeypatch, data):
    """The same table copied to DuckDB three ways: the server's CSV lines read by DuckDB's own
    CSV reader (the default: no record batch), the lines parsed into Arrow record batches, and
    the row path: equal tables."""
    from replikit.endpoints.mysql.source import MysqlReader

    rows = [[i, *(data.draw(st.none() | s) for _, s in COLUMNS.values())] for i in range(4)]
    _execute(my_table, "DELETE FROM vals", rows=rows)
    folder = tmp_path_factory.mktemp("csvduck")
    got = {}
    with monkeypatch.context() as m:
        _no_batches(m)
        got["text"] = _copy(my_table, folder / "text.duckdb")
    with monkeypatch.context() as m:
        m.setattr(MysqlReader, "copy_text", lambda self, plan, unit: None)
        got["columnar"] = _copy(my_table, folder / "columnar.duckdb")
        m.setattr(MysqlReader, "arrow_readable", lambda self, table: False)
        got["rows"] = _copy(my_table, folder / "rows.duckdb")
    assert len(got["text"]) == 4
    assert got["text"] == got["columnar"] == got["rows"]


#: quotes, backslashes, NUL and Ctrl-Z bytes, and text that looks like an escape or NULL
_ODD = ["", "'", "\\", "\x00", "\x1a", "a\x00\\0\x1a\\Z'\\\\0", "\\0", "\\Z", "NULL"]


def test_duckdb_reads_the_lines_itself_without_pyarrow(mysql_url, tmp_path):
    """A copy through DuckDB's CSV reader (several units, chunks of many fetches, strings
    full of quotes, escapes, NUL bytes and line breaks, one-column NULL rows) imports no
    pyarrow and loses no row."""
    import subprocess
    import sys
    import textwrap

    _execute(
        mysql_url,
        "CREATE TABLE big (id int PRIMARY KEY, s text NULL, d datetime(6), n decimal(9,3))",
    )
    rows = [
        [
            i,
            None if i % 3 == 0 else ('"' * (i % 5)) + f",\n{i}\r" + _ODD[i % len(_ODD)],
            f"2024-02-29 01:02:03.{i % 10}",
            i / 8,
        ]
        for i in range(30_000)
    ]
    _execute(mysql_url, "DROP TABLE IF EXISTS vals", "CREATE TABLE vals (a int, b text)")
    p = urlsplit(mysql_url)
    conn = pymysql.connect(host=p.hostname, port=p.port, user=p.username,
                           database=p.path.lstrip("/"), autocommit=True)  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO big VALUES (%s, %s, %s, %s)", rows)
        cur.executemany("INSERT INTO vals VALUES (%s, %s)", [(1, None), (None, ""), (None, None)])
    conn.close()
    target = tmp_path / "x.duckdb"
    code = textwrap.dedent(
        f"""
        import sys
        import replikit as rk
        from replikit.endpoints.mysql.source import MysqlReader
        def refuse(self, unit):
            raise AssertionError("loaded as record batches")
        MysqlReader.read_arrow = refuse
        MysqlReader.arrow_driver = "none"  # the CSV lines, not connectorx's stream
        stats = rk.copy({mysql_url!r}, "duckdb:///{target}", include=["%.big", "%.vals"],
                        progress=False, split_rows=7000)
        assert sorted(s.full_load_rows for s in stats) == [3, 30000], stats
        assert "pyarrow" not in sys.modules, sorted(m for m in sys.modules if "arrow" in m)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import duckdb

    with duckdb.connect(str(target), read_only=True) as duck:
        (schema,) = duck.execute(
            "SELECT schema_name FROM duckdb_tables() WHERE table_name = 'big'"
        ).fetchone()
        got = duck.execute(f'SELECT * FROM "{schema}".big ORDER BY id').fetchall()
        nulls = duck.execute(f'SELECT * FROM "{schema}".vals ORDER BY a, b').fetchall()
    want = [
        (i, s, dt.datetime.fromisoformat(d), Decimal(str(n)).quantize(Decimal("0.001")))
        for i, s, d, n in rows
    ]
    assert got == want
    assert nulls == [(1, None), (None, ""), (None, None)]


def test_duckdb_zero_dates_and_refusals_through_the_lines(mysql_url, tmp_path, monkeypatch):
    """Zero dates in a nullable column load as NULL through DuckDB's CSV reader; a zero date
    in a NOT NULL column, or a TINYINT(1) of 2, sends the unit to the record batches, whose
    error names the column, and leaves nothing in DuckDB."""
    _execute(mysql_url, *_ZERO_DATES)
    with monkeypatch.context() as m:
        _no_batches(m)
        got = _copy(mysql_url, tmp_path / "z.duckdb")
    assert [(r[0], r[1], r[3], r[4]) for r in got] == [
        (1, dt.date(2024, 2, 29), True, Decimal("1.50")),
        (2, None, False, None),
        (3, None, None, Decimal("-2.00")),
    ]
    for change, column in (
        ("UPDATE vals SET t = '0000-00-00' WHERE id = 1", "t"),
        ("UPDATE vals SET t = '2001-01-01', b = 2 WHERE id = 1", "b"),
    ):
        _execute(mysql_url, "SET SESSION sql_mode = ''", change)
        path = tmp_path / f"{column}.duckdb"
        error = _refused(mysql_url, path)
        assert f"column {column}; key id=1" in error, error
        import duckdb

        with duckdb.connect(str(path), read_only=True) as duck:
            (schema,) = duck.execute(
                "SELECT schema_name FROM duckdb_tables() WHERE table_name = 'vals'"
            ).fetchone()
            assert duck.execute(f'SELECT count(*) FROM "{schema}".vals').fetchone() == (0,)


def test_a_line_duckdb_refuses_is_rolled_back_and_loaded_as_batches(
    mysql_url, tmp_path, monkeypatch, caplog
):
    """A line longer than DuckDB's CSV buffer: the unit is rolled back and loaded again as
    record batches, with every value."""
    import logging

    from replikit.endpoints.duckdb import _csvpipe

    monkeypatch.setattr(_csvpipe, "BUFFER_BYTES", 1 << 20)
    _execute(mysql_url, "CREATE TABLE vals (id int PRIMARY KEY, s longtext)")
    long = "é" * (700 << 10)  # 1.4 MB of UTF-8
    _execute(mysql_url, rows=[[i, long if i == 2 else f"v{i}"] for i in range(1, 2001)])
    with caplog.at_level(logging.INFO, logger="replikit.pipeline.units"):
        got = _copy(mysql_url, tmp_path / "l.duckdb")
    assert any("redone through typed rows" in r.getMessage() for r in caplog.records)
    assert got == [(i, long if i == 2 else f"v{i}") for i in range(1, 2001)]


def test_a_zero_date_beside_a_field_over_the_csv_modules_limit(mysql_url, tmp_path):
    """A chunk holding both a zero date (resolved with Python's csv module) and a text over
    that module's 128 kB field limit: the unit goes to the record batches and loads whole,
    where it used to fail the table with the csv module's own error."""
    _execute(
        mysql_url,
        "SET SESSION sql_mode = ''",
        "CREATE TABLE vals (id int PRIMARY KEY, d date NULL, s longtext)",
    )
    big = 'x,"' * (60 << 10)  # 240 kB, with commas and quotes to escape
    rows = [[i, "0000-00-00" if i == 1 else "2024-01-02", big if i == 2 else f"v{i}"]
            for i in range(1, 11)]  # fmt: skip
    _execute(mysql_url, "SET SESSION sql_mode = ''", rows=rows)
    got = _copy(mysql_url, tmp_path / "b.duckdb")
    want = [(i, None if i == 1 else dt.date(2024, 1, 2), big if i == 2 else f"v{i}")
            for i in range(1, 11)]  # fmt: skip
    assert got == want


def test_the_pipe_never_waits_for_a_reader_that_failed(tmp_path):
    """DuckDB failing before it opens the FIFO, or after reading part of it, leaves no thread
    waiting; an error of the source is the feeder's."""
    import duckdb

    from replikit.endpoints.duckdb import _csvpipe

    conn = duckdb.connect()
    conn.execute("CREATE TABLE t (a int, b varchar)")

    def lines(n, fail=False):
        for i in range(n):
            yield b"".join(b'%d,"x"\n' % j for j in range(i * 1000, i * 1000 + 1000))
        if fail:
            raise ValueError("the source broke")

    for statement, chunks in (
        ("INSERT INTO missing SELECT * FROM {}", lines(50)),  # never opened
        ("INSERT INTO t SELECT c1, c0 FROM {}", lines(50)),  # refused after reading
    ):
        with _csvpipe.fifo() as path:
            feeder = _csvpipe.Feeder(path, chunks)
            feeder.start()
            with pytest.raises(duckdb.Error):
                conn.execute(statement.format(_csvpipe.read_csv(path, ["INTEGER", "INTEGER"])))
            feeder.finish()
            assert not feeder._thread.is_alive() and feeder.error is None
    with _csvpipe.fifo() as path:
        feeder = _csvpipe.Feeder(path, lines(3, fail=True))
        feeder.start()
        got = conn.execute(
            f"SELECT count(*) FROM {_csvpipe.read_csv(path, ['INTEGER', 'VARCHAR'])}"
        ).fetchone()
        feeder.finish()
    assert got == (3000,) and isinstance(feeder.error, ValueError)

"""MySQL/MariaDB -> DuckDB through connectorx's Arrow stream (``_cxstream``), which a DuckDB
target takes first where connectorx is installed: on a real server, the DuckDB table holds what
the row path writes (Hypothesis for values, every column kind the CSV lines carry, wide
decimals as text); pages along the key lose and repeat no row; a zero date or an odd boolean
sends the unit back to the CSV lines, which read it as NULL or refuse it naming the row; what
is not streamed (no connectorx, a wide table without an integer key, a shared snapshot) and
the session's UTC for TIMESTAMP whatever the server's time zone."""

import datetime as dt
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_duckdb_from_mysql_csv import COLUMNS, _copy, _execute, _refused

import replikit as rk
from replikit.endpoints.mysql import _cxstream
from replikit.endpoints.mysql._connect import connect
from replikit.endpoints.mysql.source import MysqlReader
from strategies_columns import few

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(_cxstream.connectorx() is None, reason="connectorx is not installed"),
]

FEW = few(15)


def _only_stream(monkeypatch):
    """Fail a load that leaves connectorx's stream for the CSV lines or record batches."""

    def refuse(*args, **kwargs):
        raise AssertionError("the unit left connectorx's stream")

    monkeypatch.setattr(MysqlReader, "copy_text", refuse)
    monkeypatch.setattr(MysqlReader, "read_arrow", refuse)


def _streams(monkeypatch):
    """Count the units read through connectorx."""
    opened = []
    real = MysqlReader.arrow_stream

    def counted(self, unit):
        stream = real(self, unit)
        opened.append(stream is not None)
        return stream

    monkeypatch.setattr(MysqlReader, "arrow_stream", counted)
    return opened


@pytest.fixture
def my_table(mysql_url):
    cols = ", ".join(f"{n} {t}" for n, (t, _) in COLUMNS.items())
    _execute(mysql_url, f"CREATE TABLE vals (id int PRIMARY KEY, {cols}, c_wide decimal(65,30))")
    return mysql_url


@FEW
@given(data=st.data())
def test_the_stream_holds_what_the_row_path_writes(my_table, tmp_path_factory, monkeypatch, data):
    """The same table copied to DuckDB through connectorx's stream (nothing else allowed) and
    through the row path: equal tables, wide decimals (read as text) included."""
    wide = st.decimals(-(10**35) + 1, 10**35 - 1, places=30, allow_nan=False)
    rows = [
        [i, *(data.draw(st.none() | s) for _, s in COLUMNS.values()), data.draw(st.none() | wide)]
        for i in range(4)
    ]
    _execute(my_table, "DELETE FROM vals", rows=rows)
    folder = tmp_path_factory.mktemp("cxduck")
    with monkeypatch.context() as m:
        _only_stream(m)
        streamed = _copy(my_table, folder / "stream.duckdb")
    with monkeypatch.context() as m:
        m.setattr(MysqlReader, "arrow_driver", "none")
        m.setattr(MysqlReader, "copy_text", lambda self, plan, unit: None)
        m.setattr(MysqlReader, "arrow_readable", lambda self, table: False)
        rows_path = _copy(my_table, folder / "rows.duckdb")
    assert len(streamed) == 4
    assert streamed == rows_path


def test_pages_along_the_key_lose_and_repeat_no_row(mysql_url, tmp_path, monkeypatch):
    """A table read in pages of 100 keys (sparse keys, several key-range units, a last page
    that is short): every row once."""
    monkeypatch.setattr(_cxstream, "PAGE_ROWS", 100)
    _execute(mysql_url, "CREATE TABLE vals (id bigint PRIMARY KEY, s varchar(20), d datetime(6))")
    keys = [i * 7 + (i % 3) for i in range(2_345)]
    _execute(mysql_url, rows=[[k, f"s{k}", f"2024-01-02 03:04:05.{k % 1000:06d}"] for k in keys])
    _only_stream(monkeypatch)
    opened = _streams(monkeypatch)
    pages = []
    real_open = _cxstream.CxStream._open

    def counted(self, after):
        pages.append(after)
        return real_open(self, after)

    monkeypatch.setattr(_cxstream.CxStream, "_open", counted)
    rk.copy(mysql_url, f"duckdb:///{tmp_path / 'p.duckdb'}", include=["%.vals"],
            progress=False, split_rows=1_000)  # fmt: skip
    got = _read(tmp_path / "p.duckdb")
    assert opened and all(opened)
    assert len(pages) >= len(keys) // 100  # about 24 pages over 3 units
    assert [r[0] for r in got] == keys
    assert got[5] == (keys[5], f"s{keys[5]}", dt.datetime(2024, 1, 2, 3, 4, 5, keys[5] % 1000))


def _read(path, table="vals"):
    import duckdb

    with duckdb.connect(str(path), read_only=True) as duck:
        duck.execute("SET TimeZone = 'UTC'")
        (schema,) = duck.execute(
            f"SELECT schema_name FROM duckdb_tables() WHERE table_name = '{table}'"
        ).fetchone()
        return duck.execute(f'SELECT * FROM "{schema}".{table} ORDER BY 1').fetchall()


def test_zero_dates_and_odd_booleans_go_back_to_the_csv_lines(mysql_url, tmp_path, caplog):
    """A zero date in a nullable column: the stream is refused, the unit rolled back and read
    as CSV lines, which load it as NULL; a TINYINT(1) of 2 is refused naming the row, with
    nothing left in DuckDB."""
    _execute(
        mysql_url,
        "SET SESSION sql_mode = ''",
        "CREATE TABLE vals (id int PRIMARY KEY, d date NULL, b tinyint(1))",
        "INSERT INTO vals VALUES (1, '2024-02-29', 1), (2, '0000-00-00', 0), (3, NULL, NULL)",
    )
    with caplog.at_level(logging.INFO, logger="replikit.pipeline"):
        got = _copy(mysql_url, tmp_path / "z.duckdb")
    assert got == [(1, dt.date(2024, 2, 29), True), (2, None, False), (3, None, None)]
    assert any("redone" in r.getMessage() for r in caplog.records), caplog.text
    _execute(mysql_url, "UPDATE vals SET d = '2024-01-01', b = 2 WHERE id = 1")
    path = tmp_path / "b.duckdb"
    error = _refused(mysql_url, path)
    assert "column b; key id=1" in error, error
    import duckdb

    with duckdb.connect(str(path), read_only=True) as duck:
        schemas = duck.execute(
            "SELECT schema_name FROM duckdb_tables() WHERE table_name = 'vals'"
        ).fetchall()
        counts = [duck.execute(f'SELECT count(*) FROM "{s}".vals').fetchone() for (s,) in schemas]
    assert counts in ([], [(0,)])


def test_timestamps_are_read_in_utc_whatever_the_servers_time_zone(mysql_url, tmp_path):
    """The server's global time zone is not UTC: TIMESTAMP values still arrive as the instants
    they are (the stream's session runs in UTC)."""
    _execute(
        mysql_url,
        "CREATE TABLE vals (id int PRIMARY KEY, t timestamp(6) NULL)",
        "INSERT INTO vals VALUES (1, '2024-06-01 12:00:00.25')",  # written in UTC (_execute)
    )
    _execute(mysql_url, "SET GLOBAL time_zone = '+05:30'")
    try:
        got = _copy(mysql_url, tmp_path / "t.duckdb")
    finally:
        _execute(mysql_url, "SET GLOBAL time_zone = SYSTEM")
    assert got == [(1, dt.datetime(2024, 6, 1, 12, 0, 0, 250000, tzinfo=dt.UTC))]


def test_what_is_not_streamed(mysql_url, monkeypatch, caplog):
    """No stream for: a table without an integer key past one page, a column without a
    stream form (BIT), a reader holding a snapshot, or connectorx not installed (said once,
    with what to install)."""
    _execute(
        mysql_url,
        "CREATE TABLE nokey (s varchar(10))",
        "CREATE TABLE small (s varchar(10) PRIMARY KEY)",
        "CREATE TABLE bits (id int PRIMARY KEY, b bit(3))",
        "INSERT INTO nokey VALUES ('a'), ('b'), ('c')",
        "INSERT INTO small VALUES ('a')",
        "ANALYZE TABLE nokey, small",
    )
    monkeypatch.setattr(_cxstream, "PAGE_ROWS", 2)
    with rk.endpoint(mysql_url) as my:
        tables = {t.id.name: t for t in my.reflect().tables}
        reader = MysqlReader(my.params, list(tables.values()))
        assert tables["nokey"].estimated_rows, tables["nokey"]
        assert reader.arrow_stream(reader.units(tables["nokey"])[0]) is None
        assert reader.arrow_stream(reader.units(tables["bits"])[0]) is None
        assert reader.arrow_stream(reader.units(tables["small"])[0]) is not None
        conn = connect(my.params)
        try:
            shared = MysqlReader(my.params, list(tables.values()), connection=conn)
            assert shared.arrow_stream(shared.units(tables["small"])[0]) is None
        finally:
            conn.close()
        monkeypatch.setitem(_cxstream._state, "module", None)
        monkeypatch.setattr("replikit.endpoints.base._SAID", set())
        with caplog.at_level(logging.INFO, logger="replikit.endpoints.mysql.source"):
            assert reader.arrow_stream(reader.units(tables["small"])[0]) is None
            assert reader.arrow_stream(reader.units(tables["small"])[0]) is None
    hints = [r.getMessage() for r in caplog.records if "mysql-arrow" in r.getMessage()]
    assert len(hints) == 1, caplog.text


def test_errors_while_streaming_name_the_table_and_hide_the_password():
    """connectorx's error text reaches the user as a DataError naming the table, with the
    password removed."""
    from replikit.endpoints.mysql._params import ConnParams
    from replikit.schema.model import TableId, TableSchema

    params = ConnParams.from_url(
        "mysql://u:s3cr%40t@127.0.0.1:1/db", "mysql://u:***@127.0.0.1:1/db"
    )
    assert _cxstream.url_for(params) == "mysql://u:s3cr%40t@127.0.0.1:1/db"
    table = TableSchema(TableId("db", "t"), ())
    stream = _cxstream.CxStream(
        _cxstream.connectorx(),
        "x",
        params,
        table,
        _cxstream.Selection("1", (), ()),
        None,
        (None, None),
        lambda _: None,
    )
    error = stream._error(RuntimeError("Access denied for u:s3cr@t at mysql://u:s3cr@t@host"))
    assert isinstance(error, rk.DataError)
    assert "s3cr@t" not in str(error)
    assert "db.t" in str(error)
    with_ssl = ConnParams.from_url("mysql://u@h/db?ssl_mode=REQUIRED", "x")
    assert _cxstream.url_for(with_ssl) is None


def test_decimal_widths_choose_value_or_text():
    """A DECIMAL connectorx reads exactly goes as it is, a wider one as its text."""
    from replikit.schema.model import Column
    from replikit.schema.types import Kind, Type

    def expr(p, s):
        c = Column("n", Type(Kind.DECIMAL, precision=p, scale=s, native=f"decimal({p},{s})"))
        return _cxstream._expression(c, True)[0]

    assert expr(28, 10) == "`n`"
    assert expr(12, 2) == "`n`"
    assert expr(29, 2) == "CAST(`n` AS CHAR)"
    assert expr(20, 11) == "CAST(`n` AS CHAR)"


def test_the_urls_arrow_option(mysql_url, monkeypatch):
    """``?arrow=csv`` keeps the CSV lines; ``?arrow=connectorx`` without connectorx is a
    ConfigError saying what to install; any other value is a ConfigError naming the choices."""
    _execute(mysql_url, "CREATE TABLE small (id int PRIMARY KEY)")
    with pytest.raises(rk.ConfigError, match="arrow must be one of auto, connectorx, csv"):
        rk.endpoint(mysql_url + "?arrow=fast")
    for option, streamed in (("csv", False), ("auto", True), ("connectorx", True)):
        with rk.endpoint(f"{mysql_url}?arrow={option}") as my:
            [table] = my.reflect().tables
            reader = MysqlReader(my.params, [table])
            assert (reader.arrow_stream(reader.units(table)[0]) is not None) is streamed
    monkeypatch.setitem(_cxstream._state, "module", None)
    with rk.endpoint(f"{mysql_url}?arrow=connectorx") as my:
        [table] = my.reflect().tables
        reader = MysqlReader(my.params, [table])
        with pytest.raises(rk.ConfigError, match=r"pip install 'replikit\[mysql-arrow\]'"):
            reader.arrow_stream(reader.units(table)[0])


def test_a_not_null_zero_date_goes_back_to_the_csv_lines_and_is_refused(
    mysql_url, tmp_path, caplog
):
    """A zero date in a NOT NULL column (no flag column: any NULL is one) leaves the stream;
    the CSV lines refuse it naming the row, and DuckDB keeps no row."""
    _execute(
        mysql_url,
        "SET SESSION sql_mode = ''",
        "CREATE TABLE vals (id int PRIMARY KEY, t datetime(3) NOT NULL, b tinyint(1) NOT NULL)",
        "INSERT INTO vals VALUES (1, '2024-02-29 01:02:03.5', 1), (2, '0000-00-00', 0)",
    )
    caplog.set_level(logging.INFO, logger="replikit.pipeline")
    assert "column t; key id=2" in _refused(mysql_url, tmp_path / "t.duckdb")
    assert "column t holds a zero or invalid date" in caplog.text
    _execute(mysql_url, "UPDATE vals SET t = '2001-01-01', b = -1 WHERE id = 2")
    assert "column b; key id=2" in _refused(mysql_url, tmp_path / "b.duckdb")
    assert "column b holds a TINYINT(1) other than 0/1" in caplog.text


def test_a_server_connectorx_cannot_log_in_to(mysql_url, caplog):
    """connectorx refused at login (here: a wrong password; in life, say, MySQL 8's
    caching_sha2_password without TLS): under ``arrow=auto`` the unit is not streamed, after
    one probe of at most a few seconds and one log line; under ``arrow=connectorx`` it is a
    ConnectError saying what to do. The password is in neither."""
    import time

    from replikit.endpoints.mysql._params import ConnParams

    _execute(mysql_url, "CREATE TABLE small (id int PRIMARY KEY)")
    bad = mysql_url.replace("root@", "root:Wr0ng-pw@")
    with rk.endpoint(mysql_url) as my:
        [table] = my.reflect().tables
    caplog.set_level(logging.INFO, logger="replikit.mysql")
    started = time.monotonic()
    reader = MysqlReader(ConnParams.from_url(bad, "x"), [table])
    assert reader.arrow_stream(reader.units(table)[0]) is None
    assert time.monotonic() - started < _cxstream._PROBE_SECONDS + 2
    assert "not read through connectorx" in caplog.text
    strict = MysqlReader(ConnParams.from_url(bad + "?arrow=connectorx", "x"), [table])
    with pytest.raises(rk.ConnectError, match="arrow=auto or arrow=csv") as info:
        strict.arrow_stream(strict.units(table)[0])
    assert "Wr0ng-pw" not in str(info.value) and "Wr0ng-pw" not in caplog.text

"""MariaDB -> PostgreSQL through COPY text lines the server builds (``MysqlReader.copy_text``).

Which columns pass as the server's text and which are converted (on the server) is decided
per column from the plan; the property test loads random real values through that path and
compares every one with what the typed reader reads.
"""

import json
import logging
import string
import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, time
from decimal import Decimal

import psycopg
import pymysql
import pytest
from _my_schema import DRIVERS, endpoint, query, read_all, run_sql
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

import replikit as rk
from replikit import DataError
from replikit.endpoints.mysql._copytext import MARK, Field, LineSelect, field_for, line_select
from replikit.endpoints.mysql._lines import CHUNK_BYTES, chunks, read_ahead
from replikit.endpoints.mysql.source import _utf8mb4_columns
from replikit.endpoints.postgres._dialect import DIALECT as PG
from replikit.schema.convert import plan_table
from replikit.schema.model import TableId
from replikit.schema.types import Type

TYPES = """
CREATE TABLE t (
  id BIGINT UNSIGNED PRIMARY KEY, i INT NULL, ubig BIGINT UNSIGNED NULL, yr YEAR NULL,
  bits BIT(12) NULL, flag TINYINT(1) NULL, bit1 BIT(1) NULL,
  dec_big DECIMAL(65,30) NULL, f FLOAT NULL, d DOUBLE NULL,
  vc VARCHAR(40) NULL, latin VARCHAR(20) CHARACTER SET latin1 NULL, txt MEDIUMTEXT NULL,
  e ENUM('a','b') NULL, s SET('x','y') NULL, j JSON NULL,
  bin VARBINARY(32) NULL, blb LONGBLOB NULL,
  dt DATE NULL, dtm DATETIME(6) NULL, ts TIMESTAMP(6) NULL, tm TIME(6) NULL,
  gen INT AS (i + 1) VIRTUAL
) DEFAULT CHARSET=utf8mb4
"""
HOW = {
    "id": "as-is", "i": "as-is", "ubig": "as-is", "yr": "as-is", "bits": "as-is",
    "flag": "bool", "bit1": "bool", "dec_big": "as-is", "f": "as-is", "d": "as-is",
    "vc": "escaped", "latin": "escaped", "txt": "escaped", "e": "escaped", "s": "escaped",
    "j": "escaped", "bin": "hex", "blb": "hex", "dt": "date", "dtm": "date", "ts": "date",
    "tm": "as-is",
}  # fmt: skip


def _db(url):
    return url.rsplit("/", 1)[1].split("?")[0]


def _plan(url, table="t"):
    schema = endpoint(url).reflect().table(TableId(_db(url), table))
    return plan_table(schema, source_dialect="mysql", target=PG)


def test_which_columns_pass_through_and_which_are_converted(mysql_url):
    run_sql(mysql_url, TYPES)
    plan = _plan(mysql_url)
    got = {cp.name: f.how for cp in plan.columns if (f := field_for(cp)) is not None}
    assert got == {**HOW, "gen": "as-is"}
    select = line_select(plan)
    assert select is not None
    # the target computes gen; booleans and dates may be marked for the client to look at
    assert "gen" not in select.columns and len(select.columns) == len(HOW)
    assert select.marks
    # a text override sends the server's text form, escaped; not into a non-text column
    tm = next(cp for cp in plan.columns if cp.name == "tm")
    assert field_for(tm, as_text=True) is None
    as_text = replace(tm, target=PG.target_type(Type.text(), "mysql"))
    assert field_for(as_text, as_text=True).how == "escaped"
    # TINYINT(1) read as an integer: that table takes the typed path
    assert line_select(plan, tinyint1_as_bool=False) is None
    # MariaDB JSON: its character set is the server's to say; utf8mb4 needs no CONVERT
    assert select.charset_unknown == ("j",)
    assert "CONVERT(`j` USING utf8mb4)" in select.expressions
    known = line_select(plan, utf8mb4=("j",))
    assert known is not None and known.charset_unknown == ()
    assert "CONVERT(`j`" not in known.expressions and known.columns == select.columns


def test_a_column_without_a_faithful_text_form_keeps_the_table_typed(mysql_url, pg_url):
    run_sql(
        mysql_url,
        "CREATE TABLE g (id INT PRIMARY KEY, p POINT NULL);\n"
        "INSERT INTO g VALUES (1, ST_GeomFromText('POINT(1 2)'))",
    )
    plan = _plan(mysql_url, "g")
    assert field_for(plan.columns[1]) is None and line_select(plan) is None
    reader = endpoint(mysql_url).reader(["g"])
    assert reader.copy_text(plan, reader.units(reader.tables[0])[0]) is None
    rk.Task(endpoint(mysql_url), rk.endpoint(pg_url)).run()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(f'SELECT p FROM "{_db(mysql_url)}".g').fetchone()[0].startswith("01")


# -- real values, random: the text path loads what the typed reader reads --------------------
_SPECIAL = ["\\", "\t", "\n", "\r", "\\N", "\\.", "😀", "é", "'", '"', ",", " ", "\x01", "ü"]
_TEXT = st.lists(
    st.sampled_from(_SPECIAL)
    | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=4),
    max_size=8,
).map("".join)
_LATIN = st.text(st.sampled_from(string.printable + "éüß\\"), max_size=20)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
).map(json.dumps)
_DATES = st.dates(min_value=date(1, 1, 1)).map(str) | st.sampled_from(
    ["0000-00-00", "2020-02-31", "2020-00-15", "0000-01-01"]
)
_ROW = st.fixed_dictionaries(
    {
        "i": st.none() | st.integers(-(2**31), 2**31 - 2),  # gen = i + 1 is an INT
        "ubig": st.none() | st.integers(0, 2**64 - 1),
        "yr": st.none() | st.integers(1901, 2155),
        "bits": st.none() | st.integers(0, 4095),
        "flag": st.none() | st.booleans(),
        "bit1": st.none() | st.integers(0, 1),
        "dec_big": st.none() | st.decimals(-(10**35) + 1, 10**35 - 1, places=30, allow_nan=False),
        "f": st.none() | st.floats(width=32, allow_nan=False, allow_infinity=False),
        "d": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "vc": st.none() | _TEXT.map(lambda s: s[:40]),
        "latin": st.none() | _LATIN,
        "txt": st.none() | _TEXT,
        "e": st.none() | st.sampled_from(["a", "b"]),
        "s": st.none() | st.sampled_from(["", "x", "x,y"]),
        "j": st.none() | _JSON,
        "bin": st.none() | st.binary(max_size=32),
        "blb": st.none() | st.binary(max_size=64),
        "dt": st.none() | _DATES,
        "dtm": st.none()
        | st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)).map(str)
        | st.just("0000-00-00 00:00:00"),
        "ts": st.none()
        | st.datetimes(datetime(1970, 1, 2), datetime(2038, 1, 18)).map(str)
        | st.just("0000-00-00 00:00:00"),
        "tm": st.none() | st.times().map(str) | st.just("24:00:00"),
    }
)


def _insert(url, rows):
    cols = list(HOW)
    marks = ", ".join(["%s"] * len(cols))
    m = make_url(url)
    conn = pymysql.connect(
        host=m.host, port=m.port, user=m.username, password=m.password or "",
        database=m.database, charset="utf8mb4", autocommit=True,
    )  # fmt: skip
    with conn, conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00', sql_mode = 'ALLOW_INVALID_DATES'")
        cur.execute("DELETE FROM t")
        cur.executemany(
            f"INSERT INTO t ({', '.join(cols)}) VALUES ({marks})",
            [(n, *[r[c] for c in cols[1:]]) for n, r in enumerate(rows, 1)],
        )


def _pg_rows(url, schema):
    # real as float8: its text form has only the digits that tell float4s apart
    cast = {"j": "::text", "tm": "::text", "f": "::float8"}
    cols = [c + cast.get(c, "") for c in HOW]
    with psycopg.connect(url) as conn:
        return conn.execute(f'SELECT {", ".join(cols)} FROM "{schema}".t ORDER BY id').fetchall()


def _canonical(value):
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if isinstance(value, time | str) and ":" in str(value) and len(str(value)) <= 17:
        text = value.isoformat() if isinstance(value, time) else value
        return text.rstrip("0").rstrip(".") if "." in text else text  # a time's text
    return value


@pytest.mark.parametrize("driver", DRIVERS)
def test_random_values_load_as_the_typed_reader_reads_them(mysql_url, pg_url, driver, caplog):
    run_sql(mysql_url, TYPES)
    src = endpoint(f"{mysql_url}?driver={driver}")

    @settings(settings.get_profile("db"), max_examples=15)
    @given(st.lists(_ROW, min_size=1, max_size=6))
    def check(rows):
        _insert(mysql_url, rows)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="replikit.pipeline.units"):
            rk.Task(src, rk.endpoint(pg_url)).run()
        assert "redone through typed rows" not in caplog.text
        names = [c.name for c in src.reflect().table(TableId(_db(mysql_url), "t")).columns]
        typed = [tuple(_canonical(r[names.index(c)]) for c in HOW) for r in read_all(src, "t")]
        loaded = [tuple(_canonical(v) for v in r) for r in _pg_rows(pg_url, _db(mysql_url))]
        assert len(loaded) == len(typed)
        for want, got in zip(typed, loaded, strict=True):
            for col, w, g in zip(HOW, want, got, strict=True):
                assert g == w, (col, w, g)

    check()


# -- values the typed path must explain: the unit is redone there ---------------------------
def _task_error(mysql_url, pg_url):
    with pytest.raises(rk.TaskError) as info:
        rk.Task(endpoint(mysql_url), rk.endpoint(pg_url)).run()
    (err,) = info.value.table_errors.values()
    assert isinstance(err, DataError)
    return err


def test_zero_dates_are_null_and_counted_in_nullable_columns_refused_in_not_null(
    mysql_url, pg_url, caplog
):
    run_sql(
        mysql_url,
        "CREATE TABLE z (id INT PRIMARY KEY, s VARCHAR(5), d DATE NULL, dt DATETIME NOT NULL,"
        " ts TIMESTAMP NULL);\n"
        "INSERT INTO z VALUES (1, 'é', '0000-00-00', '2020-01-01', '0000-00-00 00:00:00'),"
        " (2, 'ü', '2020-02-31', '2020-01-01', NULL), (3, 'a', '2020-05-05', '2020-01-01', NULL)",
        sql_mode="ALLOW_INVALID_DATES",
    )
    with caplog.at_level(logging.INFO):
        rk.Task(endpoint(mysql_url), rk.endpoint(pg_url)).run()
    assert "redone through typed rows" not in caplog.text
    assert "z.d: 2 zero or invalid date(s) read as NULL" in caplog.text
    assert "z.ts: 1 zero or invalid date(s) read as NULL" in caplog.text
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f'SELECT id, s, d, ts FROM "{_db(mysql_url)}".z ORDER BY id').fetchall()
    assert rows == [(1, "é", None, None), (2, "ü", None, None), (3, "a", date(2020, 5, 5), None)]

    run_sql(mysql_url, "UPDATE z SET dt = '0000-00-00 00:00:00' WHERE id = 3", sql_mode="")
    err = _task_error(mysql_url, pg_url)
    assert err.column == "dt" and err.key == {"id": 3}


def test_a_tinyint1_that_is_not_boolean_is_refused_naming_the_row(mysql_url, pg_url):
    run_sql(
        mysql_url,
        "CREATE TABLE b (id INT PRIMARY KEY, f TINYINT(1));\nINSERT INTO b VALUES (1, 1), (2, 7)",
    )
    err = _task_error(mysql_url, pg_url)
    assert err.column == "f" and err.key == {"id": 2}


def test_time_beyond_a_day_is_refused_naming_the_row(mysql_url, pg_url):
    run_sql(
        mysql_url,
        "CREATE TABLE tm (id INT PRIMARY KEY, t TIME NULL);\n"
        "INSERT INTO tm VALUES (1, '12:00:00'), (2, '24:00:00'), (3, '-00:00:01')",
    )
    err = _task_error(mysql_url, pg_url)
    assert err.column == "t" and err.key == {"id": 3}


def test_a_value_too_long_for_one_line_goes_the_typed_way_whole(mysql_url, pg_url, caplog):
    ((packet,),) = query(mysql_url, "SELECT @@max_allowed_packet")
    if packet > 64 << 20:
        pytest.skip(f"max_allowed_packet is {packet}: the test needs a hex over it")
    size = packet // 2 + 1024  # its hex is over max_allowed_packet
    run_sql(
        mysql_url,
        "CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB NULL, s TEXT NULL);\n"
        f"INSERT INTO big VALUES (1, REPEAT(X'AB', {size}), 'x'), (2, X'01', NULL)",
    )
    with caplog.at_level(logging.INFO, logger="replikit.pipeline.units"):
        rk.Task(endpoint(mysql_url), rk.endpoint(pg_url)).run()
    assert "redone through typed rows" in caplog.text
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            f'SELECT id, length(b), s FROM "{_db(mysql_url)}".big ORDER BY id'
        ).fetchall()
    assert rows == [(1, size, "x"), (2, 1, None)]


def test_latin1_and_escapes_arrive_as_typed(mysql_url, pg_url):
    run_sql(
        mysql_url,
        "CREATE TABLE l (id INT PRIMARY KEY, a VARCHAR(20) CHARACTER SET latin1,"
        " u TEXT, n DECIMAL(65,30));\n"
        "INSERT INTO l VALUES (1, 'café\\\\N', 'a\\tb\\nc\\rd\\\\e 😀', "
        "-99999999999999999999999999999999999.999999999999999999999999999999)",
    )
    rk.Task(endpoint(mysql_url), rk.endpoint(pg_url)).run()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(f'SELECT a, u, n FROM "{_db(mysql_url)}".l').fetchone()
    assert row == (
        "café\\N",
        "a\tb\nc\rd\\e 😀",
        Decimal("-99999999999999999999999999999999999.999999999999999999999999999999"),
    )


# -- the client side, sans-IO: chunk sizes, marks, read-ahead ---------------------------------
def _select(*hows):
    fields = tuple(Field(f"c{i}", f"c{i}", how, "") for i, how in enumerate(hows))
    return LineSelect(tuple(f.column for f in fields), "", fields, True)


def _fetcher(lines):
    it = iter(lines)
    asked = []

    def fetch(n):
        asked.append(n)
        return [(line,) for _, line in zip(range(n), it, strict=False)]

    return fetch, asked


def test_chunks_are_sized_by_bytes_and_keep_every_line():
    lines = [b"%d\t" % i + b"x" * (10 if i < 2000 else 2000) for i in range(6000)]
    fetch, asked = _fetcher(lines)
    out = list(chunks(fetch, _select("as-is", "escaped"), "t", lambda f: True, Counter()))
    assert b"".join(data for _, data in out) == b"\n".join(lines) + b"\n"
    assert sum(n for n, _ in out) == len(lines)
    # narrow rows: many per fetch; wide ones: few, so chunks come back near CHUNK_BYTES
    # after the one fetch that met the wider rows unawares
    wide = next(i for i, (_, data) in enumerate(out) if b"x" * 2000 in data)
    assert all(len(data) < 2 * CHUNK_BYTES for _, data in out[wide + 1 :])
    assert asked[wide] > 10 * asked[-1]


def test_marked_dates_load_as_null_where_allowed_and_stop_the_text_path_elsewhere():
    select = _select("as-is", "date", "bool")
    counts: Counter[str] = Counter()
    fetch, _ = _fetcher([b"1\t" + MARK + b"\tt", b"2\t2020-01-01\tf"])
    (data,) = [d for _, d in chunks(fetch, select, "t", lambda f: True, counts)]
    assert data == b"1\t\\N\tt\n2\t2020-01-01\tf\n" and counts == {"c1": 1}
    fetch, _ = _fetcher([b"1\t" + MARK + b"\tt"])
    with pytest.raises(DataError, match="zero or invalid date") as info:
        list(chunks(fetch, select, "t", lambda f: False, Counter()))
    assert info.value.column == "c1"
    fetch, _ = _fetcher([b"1\t\\N\t" + MARK])
    with pytest.raises(DataError, match="non-boolean") as info:
        list(chunks(fetch, select, "t", lambda f: True, Counter()))
    assert info.value.column == "c2"
    # CONCAT_WS left out a field it could not build, or the whole line was NULL
    fetch, _ = _fetcher([b"1\t" + MARK])
    with pytest.raises(DataError, match="max_allowed_packet"):
        list(chunks(fetch, select, "t", lambda f: True, Counter()))
    with pytest.raises(DataError, match="max_allowed_packet"):
        list(chunks(lambda n: [(None,)], select, "t", lambda f: True, Counter()))


def test_read_ahead_keeps_order_raises_the_producers_error_and_closes_it_early():
    assert list(read_ahead(iter(range(100)), depth=2)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(read_ahead(failing()))

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    ahead = read_ahead(endless(), depth=2)
    assert [next(ahead) for _ in range(5)] == list(range(5))
    ahead.close()
    assert closed.is_set()  # the producer's generator was closed before close() returned


def test_json_text_of_any_character_set_arrives_as_typed(mysql_url, pg_url):
    """MariaDB JSON is LONGTEXT with a json_valid CHECK, of any character set: a utf8mb4 one
    passes without CONVERT, a latin1 one is converted, both arrive as the typed path reads."""
    run_sql(
        mysql_url,
        "CREATE TABLE js (id INT PRIMARY KEY, u JSON NULL,"
        " l LONGTEXT CHARACTER SET latin1 NULL CHECK (json_valid(l))) DEFAULT CHARSET=utf8mb4;\n"
        """INSERT INTO js VALUES (1, '{"a": "café 😀"}', '{"b": "café"}'), (2, NULL, NULL)""",
    )
    select = line_select(_plan(mysql_url, "js"))
    assert select is not None and set(select.charset_unknown) == {"u", "l"}
    m = make_url(mysql_url)
    conn = pymysql.connect(
        host=m.host, port=m.port, user=m.username, password=m.password or "",
        database=m.database, charset="utf8mb4",
    )  # fmt: skip
    with conn:  # what the reader asks before reading: only u is utf8mb4
        assert _utf8mb4_columns(conn, TableId(m.database, "js"), ["u", "l"]) == ["u"]
    rk.Task(endpoint(mysql_url), rk.endpoint(pg_url)).run()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            f'SELECT id, u::text, l::text FROM "{_db(mysql_url)}".js ORDER BY id'
        ).fetchall()
    assert rows == [(1, '{"a": "café 😀"}', '{"b": "café"}'), (2, None, None)]
    assert [tuple(r) for r in query(mysql_url, "SELECT id, u, l FROM js ORDER BY id")] == rows


# -- COPY FREEZE: a table the load created and loads as one unit -------------------------
def _frozen_pages(conn, table):
    """(pages all-frozen in the visibility map, pages) of ``table``."""
    row = conn.execute(
        "SELECT all_frozen, pg_relation_size(%s::regclass) / current_setting('block_size')::int"
        " FROM pg_visibility_map_summary(%s::regclass)",
        (table, table),
    ).fetchone()
    return int(row[0]), int(row[1])


def _visibility(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        have = "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_visibility'"
        if conn.execute(have).fetchone() is None:
            pytest.skip("the server has no pg_visibility extension (postgresql-contrib)")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_visibility")


def test_a_table_created_for_the_load_is_loaded_frozen_an_existing_one_keeps_its_rows(
    mysql_url, pg_url
):
    _visibility(pg_url)
    values = ", ".join(f"({n}, 'row {n}')" for n in range(1, 3001))
    run_sql(
        mysql_url,
        "CREATE TABLE one (id INT PRIMARY KEY, s VARCHAR(20));\n"
        "INSERT INTO one VALUES (1, 'a'), (2, 'b\\tc'), (3, NULL);\n"
        "CREATE TABLE parts (id INT PRIMARY KEY, s VARCHAR(20));\n"
        f"INSERT INTO parts VALUES {values};\nANALYZE TABLE parts",
    )
    schema = _db(mysql_url)
    # split_rows: `parts` loads as key ranges, each its own transaction: none may empty it
    settings = rk.TaskSettings(split_rows=1000)
    rk.Task(endpoint(mysql_url), rk.endpoint(pg_url), settings=settings).run()
    with psycopg.connect(pg_url) as conn:
        one, parts = f'"{schema}".one', f'"{schema}".parts'
        assert conn.execute(f"SELECT id, s FROM {one} ORDER BY id").fetchall() == [
            (1, "a"), (2, "b\tc"), (3, None),
        ]  # fmt: skip
        assert conn.execute(f"SELECT count(*), sum(id) FROM {parts}").fetchone() == (
            3000, 3000 * 3001 // 2,
        )  # fmt: skip
        assert _frozen_pages(conn, one) == (1, 1)  # COPY ... FREEZE
        frozen, pages = _frozen_pages(conn, parts)
        assert pages > 1 and frozen == 0
        conn.execute(f"DELETE FROM {one} WHERE id < 3")
        conn.execute(f"UPDATE {one} SET id = 100")
        conn.commit()
    run_sql(mysql_url, "DELETE FROM one WHERE id = 3;\nDROP TABLE parts")
    # an existing table that do-nothing keeps: its own rows stay, the loaded ones are added
    settings = rk.TaskSettings(target_table_prep_mode="do-nothing")
    rk.Task(endpoint(mysql_url), rk.endpoint(pg_url), settings=settings).run()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f'SELECT id, s FROM "{schema}".one ORDER BY id').fetchall()
    assert rows == [(1, "a"), (2, "b\tc"), (100, None)]


def test_a_whole_unit_with_a_ledger_key_is_frozen_and_loaded_once(mysql_url, pg_url):
    # a unit that may run twice (a cluster) reads the ledger in its transaction first
    _visibility(pg_url)
    run_sql(mysql_url, "CREATE TABLE w (id INT PRIMARY KEY, s VARCHAR(20))")
    plan = _plan(mysql_url, "w")
    writer = rk.endpoint(pg_url).writer()
    writer.prepare([plan], "drop-and-create")
    writer.start_ledger("L")
    lines = [b"1\ta\n2\t\\N\n"]
    for _ in range(2):  # the second run finds the unit recorded and loads nothing
        assert writer.load_text(plan, ["id", "s"], lines, once="L/w/0", whole=True) == 2
    writer.end_ledger("L")
    table = f'"{_db(mysql_url)}".w'
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(f"SELECT id, s FROM {table} ORDER BY id").fetchall() == [
            (1, "a"), (2, None),
        ]  # fmt: skip
        assert _frozen_pages(conn, table) == (1, 1)

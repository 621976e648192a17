"""PostgreSQL read as column batches (``read_columns``) holds the values the row path reads
(``read``), each in its column batch form (:mod:`replikit.endpoints._columns`): the value
itself, ``str()`` of it, or its text's UTF-8 bytes; on a real server, Hypothesis for values."""

import gc
import json
from decimal import Decimal

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints._columns import form_of, in_form
from replikit.endpoints.postgres import _columns
from replikit.pipeline.contracts import SupportsColumnRead
from strategies_columns import few

pytestmark = [pytest.mark.timeout(300)]

FEW = few(20)
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
) | st.sampled_from(["", '"', "a,b", "line\nbreak", "\\N", "t", "ü 日本 🚚"])
_ODD_DATES = st.sampled_from(["infinity", "-infinity", "0044-03-15 BC", "12000-01-01"])
_ODD_TIMES = st.sampled_from(
    ["infinity", "-infinity", "0044-03-15 10:11:12.5 BC", "12000-01-01 00:00:00.25", "0001-01-01"]
)


def _trimmed(d, digits):
    """``d`` with only ``digits`` fraction digits (PostgreSQL trims the zeros after them)."""
    step = 10 ** (6 - digits)
    return d.replace(microsecond=d.microsecond // step * step)


#: a timestamp whose fraction has any number of digits, 0 to 6
_TIMES = st.builds(_trimmed, st.datetimes(), st.integers(0, 6))
_TINY = st.decimals(-1, 1, places=12, allow_nan=False).filter(lambda d: abs(d) < Decimal("1E-6"))
COLUMNS = {
    "c_bool": ("boolean", st.booleans()),
    "c_int2": ("smallint", st.integers(-(2**15), 2**15 - 1)),
    "c_int8": ("bigint", st.integers(-(2**63), 2**63 - 1)),
    "c_num": (
        "numeric(12,2)",
        st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False) | st.just(Decimal("NaN")),
    ),
    "c_num38": (
        "numeric(38,10)",
        st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False) | _TINY,
    ),
    "c_numeric": (
        "numeric",
        _TINY
        | st.decimals(allow_nan=False, allow_infinity=False, places=3)
        | st.sampled_from([Decimal("Infinity"), Decimal("-0.0000000"), Decimal("1E+20")]),
    ),
    "c_money": ("money", st.decimals(-(10**9), 10**9, places=2, allow_nan=False)),
    "c_real": ("real", st.sampled_from([0.5, -1.25, float("inf"), float("-inf"), -0.0])),
    "c_float": ("double precision", st.floats() | st.just(float("nan"))),
    "c_varchar": ("varchar(12)", _TEXT),
    "c_char": (
        "char(3)",
        st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=3),
    ),
    "c_pgchar": ('"char"', st.sampled_from(["a", "Z", " "])),
    "c_text": ("text", _TEXT),
    "c_bytea": ("bytea", st.binary(max_size=12)),
    "c_date": ("date", st.dates().map(str) | _ODD_DATES),
    "c_ts": ("timestamp", _TIMES.map(str) | _ODD_TIMES),
    "c_ts3": ("timestamp(3)", _TIMES.map(str)),
    "c_tstz": ("timestamptz", _TIMES.map(lambda d: f"{d}+00") | _ODD_TIMES),
    "c_json": ("json", st.dictionaries(_TEXT, st.integers(), max_size=3).map(json.dumps)),
    "c_jsonb": ("jsonb", st.lists(st.integers(), max_size=2).map(json.dumps)),
    "c_uuid": ("uuid", st.uuids()),
    "c_mood": ("mood", st.sampled_from(["sad", "ok", "happy"])),
}


@pytest.fixture
def pg_table(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        cols = ", ".join(f"{n} {t}" for n, (t, _) in COLUMNS.items())
        conn.execute(f"CREATE TABLE vals (id int PRIMARY KEY, {cols})")
    return pg_url


def _insert(url, rows, table="vals"):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"TRUNCATE {table}")
        marks = ", ".join(["%s"] * len(rows[0]))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def _read(url, table="vals"):
    """The table's rows by ``read`` and by ``read_columns``, as lists of rows."""
    with rk.endpoint(url) as pg:
        reader = pg.reader([f"public.{table}"])
        assert isinstance(reader, SupportsColumnRead)
        (schema,) = reader.tables
        assert reader.column_readable(schema)
        (unit,) = reader.units(schema)
        by_row = [list(r) for b in reader.read(unit) for r in b.rows]
        batches = list(reader.read_columns(unit))
        reader.close()
    for batch in batches:
        assert batch.columns == schema.column_names
        assert all(len(column) == batch.rows for column in batch.values)
    by_column = [list(r) for b in batches for r in zip(*b.values, strict=True)]
    return schema, by_row, by_column, batches


def _form(t, value):
    return in_form(form_of(t), value)


def _same(want, got):
    if isinstance(want, float):
        return type(got) is float and repr(want) == repr(got)
    return type(want) is type(got) and want == got


@FEW
@given(data=st.data())
def test_column_read_holds_the_row_path_values_in_their_forms(pg_table, data):
    rows = [
        [i, *(data.draw(st.none() | s) if i else None for _, s in COLUMNS.values())]
        for i in range(6)
    ]
    _insert(pg_table, rows)
    schema, by_row, by_column, _ = _read(pg_table)
    assert len(by_row) == len(by_column) == len(rows)
    types = [c.type for c in schema.columns]
    wrong = [
        f"id {r[0]}: {name}: row path {x!r} -> {_form(t, x)!r}, column batch {y!r}"
        for r, s in zip(by_row, by_column, strict=True)
        for name, t, x, y in zip(schema.column_names, types, r, s, strict=True)
        if not _same(_form(t, x), y)
    ]
    assert not wrong, "\n".join(wrong[:20])


def test_chunks_are_sized_in_bytes_and_by_the_collector(pg_url, monkeypatch):
    """Wide rows come in few rows a chunk, narrow ones in many: never more than the cyclic
    garbage collector's youngest threshold lets a chunk hold, nor past ``batch_rows``; a
    table without statistics in small chunks."""
    monkeypatch.setattr(_columns, "BATCH_BYTES", 100_000)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE wide (id int PRIMARY KEY, s text)")
        # not compressed: 20,000 bytes a row on disk too
        conn.execute("ALTER TABLE wide ALTER s SET STORAGE EXTERNAL")
        conn.execute("INSERT INTO wide SELECT g, repeat('x', 20000) FROM generate_series(1, 60) g")
        conn.execute("CREATE TABLE narrow (id int PRIMARY KEY, s text)")
        conn.execute("INSERT INTO narrow SELECT g, 'x' FROM generate_series(1, 30000) g")
        *_, unknown = _read(pg_url, "narrow")
        conn.execute("ANALYZE wide")
        conn.execute("ANALYZE narrow")
    assert {b.rows for b in unknown} == {_columns.UNKNOWN_ROWS}
    *_, wide = _read(pg_url, "wide")
    assert sum(b.rows for b in wide) == 60
    assert 2 <= max(b.rows for b in wide) <= 5  # 100,000 bytes / 20,000 a row
    threshold = gc.get_threshold()
    *_, narrow = _read(pg_url, "narrow")
    assert sum(b.rows for b in narrow) == 30000
    assert max(b.rows for b in narrow) == threshold[0] * 4 // 5
    monkeypatch.setattr(_columns, "BATCH_BYTES", 10**9)
    gc.set_threshold(10**6, *threshold[1:])
    try:
        *_, narrow = _read(pg_url, "narrow")
    finally:
        gc.set_threshold(*threshold)
    assert max(b.rows for b in narrow) == 10_000  # the reader's batch_rows

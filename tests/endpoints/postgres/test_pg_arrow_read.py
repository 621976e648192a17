"""PostgreSQL read straight into Arrow (``read_arrow``) holds the values the row path reads
(``read``), value for value, on a real server (Hypothesis for values), and both columnar
writers (DuckDB, Parquet) then hold what the row path writes; through ADBC's driver and
through ``COPY ... (FORMAT csv)`` alike, and the two give equal record batches."""

import datetime as dt
import json
import time
import uuid
from decimal import Decimal

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints._arrow import canonical_type
from replikit.endpoints.postgres import _arrow_adbc
from replikit.endpoints.postgres import source as pg_source
from replikit.pipeline.contracts import SupportsArrowRead

pytestmark = [pytest.mark.timeout(300)]

FEW = settings(
    max_examples=15,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
) | st.sampled_from(["", '"', "a,b", "line\nbreak", "\r\n", "NULL", "NaN", "\\N", "t"])
_ODD_DATES = st.sampled_from(["infinity", "-infinity", "0044-03-15 BC", "12000-01-01"])
COLUMNS = {
    "c_bool": ("boolean", st.booleans()),
    "c_int2": ("smallint", st.integers(-(2**15), 2**15 - 1)),
    "c_int4": ("integer", st.integers(-(2**31), 2**31 - 1)),
    "c_int8": ("bigint", st.integers(-(2**63), 2**63 - 1)),
    "c_num": (
        "numeric(12,2)",
        st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False) | st.just(Decimal("NaN")),
    ),
    "c_num38": (
        "numeric(38,10)",
        st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False),
    ),
    "c_real": ("real", st.sampled_from([0.5, -1.25, float("inf"), float("-inf"), -0.0])),
    "c_float": ("double precision", st.floats() | st.just(float("nan"))),
    "c_varchar": ("varchar(12)", _TEXT),
    "c_char": (
        "char(3)",
        st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=3),
    ),
    "c_text": ("text", _TEXT),
    "c_bytea": ("bytea", st.binary(max_size=12)),
    "c_date": ("date", st.dates().map(str) | _ODD_DATES),
    "c_ts": ("timestamp", st.datetimes().map(str) | _ODD_DATES),
    "c_tstz": ("timestamptz", st.datetimes(timezones=st.just(dt.UTC)).map(str) | _ODD_DATES),
    "c_json": ("json", st.dictionaries(_TEXT, st.integers(), max_size=3).map(json.dumps)),
    "c_jsonb": (
        "jsonb",
        st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2).map(json.dumps),
    ),
    "c_uuid": ("uuid", st.uuids()),
}


@pytest.fixture(params=["adbc", "csv"])
def arrow_driver(request, monkeypatch):
    """Every reader made in the test reads Arrow through this driver."""
    if request.param == "adbc" and _arrow_adbc.adbc_manager() is None:
        pytest.skip("adbc-driver-postgresql is not installed")
    monkeypatch.setattr(pg_source.PostgresReader, "arrow_driver", request.param)
    return request.param


@pytest.fixture
def pg_table(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        cols = ", ".join(f"{n} {t}" for n, (t, _) in COLUMNS.items())
        conn.execute(f"CREATE TABLE vals (id int PRIMARY KEY, {cols})")
    return pg_url


def _same(row_value, arrow_value):
    if isinstance(row_value, uuid.UUID):
        return str(row_value) == arrow_value
    if isinstance(row_value, float) and row_value != row_value:
        return isinstance(arrow_value, float) and arrow_value != arrow_value
    if isinstance(row_value, Decimal) and isinstance(arrow_value, str):
        # a batch holding NaN keeps the column as text: PostgreSQL's, exact
        return arrow_value == str(row_value) or (row_value.is_nan() and arrow_value == "NaN")
    if isinstance(row_value, float):
        return type(arrow_value) is float and repr(row_value) == repr(arrow_value)
    if isinstance(row_value, dt.date) and isinstance(arrow_value, str):
        # a batch holding a value Arrow cannot (infinity, BC) keeps the column as text
        parse = dt.datetime if isinstance(row_value, dt.datetime) else dt.date
        return parse.fromisoformat(arrow_value) == row_value
    return type(row_value) is type(arrow_value) and row_value == arrow_value


def _insert(url, rows):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("TRUNCATE vals")
        marks = ", ".join(["%s"] * (len(COLUMNS) + 1))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO vals VALUES ({marks})", rows)


@FEW
@given(data=st.data())
def test_arrow_read_holds_the_row_path_values(pg_table, arrow_driver, data):
    rows = [
        [i, *(data.draw(st.none() | s) if i else None for _, s in COLUMNS.values())]
        for i in range(5)
    ]
    _insert(pg_table, rows)
    with rk.endpoint(pg_table) as pg:
        reader = pg.reader(["public.vals"])
        assert isinstance(reader, SupportsArrowRead)
        (table,) = reader.tables
        assert reader.arrow_readable(table)
        (unit,) = reader.units(table)
        by_row = {r[0]: r for b in reader.read(unit) for r in b.rows}
        batches = list(reader.read_arrow(unit))
        reader.close()
    wrong = []
    seen = 0
    for batch in batches:
        for j, column in enumerate(table.columns):
            array = batch.column(j)
            canonical = canonical_type(pa, column.type)
            assert array.type in (canonical, pa.string()), (column.name, array.type)
        for record in batch.to_pylist():
            seen += 1
            for j, name in enumerate(table.column_names):
                a, b = by_row[record["id"]][j], record[name]
                if not _same(a, b):
                    wrong.append(f"{name}: row path {a!r}, arrow {b!r}")
    assert seen == len(rows)
    assert not wrong, "\n".join(wrong[:20])


def test_odd_values_through_the_columnar_writers(pg_url, tmp_path, arrow_driver):
    """The columnar path writes what the row path writes: DuckDB holds infinity and BC; a
    Parquet file refuses them by row (as the row path), naming table, column and key."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, d date, b bytea, s text, j json, u uuid)")
        conn.execute(
            "INSERT INTO t VALUES (1, '2020-01-02', '\\x00ff', '', '{\"a\": 1.50}', "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), (2, NULL, NULL, NULL, NULL, NULL)"
        )
    path = tmp_path / "t.duckdb"
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"duckdb:///{path}") as duck:
        [stat] = rk.Task(pg, duck, mappings=rk.Mappings().include("public", "t")).run()
        assert stat.full_load_rows == 2
    import duckdb

    with duckdb.connect(str(path), read_only=True) as conn:
        got = conn.execute("SELECT d, b, s, j::VARCHAR, u FROM public.t ORDER BY id").fetchall()
    assert got == [
        (dt.date(2020, 1, 2), b"\x00\xff", "", '{"a": 1.50}',
         uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        (None, None, None, None, None),
    ]  # fmt: skip
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE t DROP COLUMN u")  # Parquet UUIDs are written row by row
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"file://{tmp_path / 'out'}") as files:
        task = rk.Task(pg, files, mappings=rk.Mappings().include("public", "t"))
        [plan] = task.plan().assessment.tables
        assert files.writer().arrow_writable(plan)
        task.run()
    [parquet] = (tmp_path / "out" / "public" / "t").glob("LOAD*.parquet")
    assert pq.read_table(parquet).column("d").to_pylist() == [dt.date(2020, 1, 2), None]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO t (id, d) VALUES (3, 'infinity')")
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"file://{tmp_path / 'bad'}") as files:
        task = rk.Task(pg, files, mappings=rk.Mappings().include("public", "t"))
        with pytest.raises(rk.TaskError):
            task.run()
        [stat] = task.statistics()
        assert "public.t" in str(stat.error) and "infinity" in str(stat.error), stat.error
        assert "id=3" in str(stat.error), stat.error
    assert not list((tmp_path / "bad" / "public" / "t").glob("LOAD*.parquet"))


def test_rows_longer_than_a_csv_block_are_read_on_their_own(pg_url, arrow_driver):
    """pyarrow refuses a row straddling two CSV blocks: long rows get a block of their own,
    wherever they are (first, between ordinary rows, last, one after another)."""
    from replikit.endpoints.postgres import _arrow_copy

    big = _arrow_copy.BLOCK_BYTES + 10
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, s text, b bytea)")
        conn.execute(
            "INSERT INTO t SELECT g, CASE WHEN g IN (1, 500, 501, 3000) THEN repeat('x', %s) "
            "ELSE 'line' || g || E'\\n\"q\"' END, CASE WHEN g = 700 THEN "
            "decode(repeat('ab', %s), 'hex') END FROM generate_series(1, 3000) g",
            (big, big),
        )
    with rk.endpoint(pg_url) as pg:
        reader = pg.reader(["public.t"])
        (unit,) = reader.units(reader.tables[0])
        by_row = {r[0]: r for b in reader.read(unit) for r in b.rows}
        got = {r["id"]: r for b in reader.read_arrow(unit) for r in b.to_pylist()}
        reader.close()
    assert len(got) == 3000
    assert all((r["id"], r["s"], r["b"]) == by_row[k] for k, r in got.items())


# -- ADBC's driver against the CSV reading ---------------------------------------------------------
needs_adbc = pytest.mark.skipif(
    _arrow_adbc.adbc_manager() is None, reason="adbc-driver-postgresql is not installed"
)
#: the edges of what each reading parses (years 1 and 9999) and past them (BC, 5 and 6-digit
#: years, PostgreSQL's extremes, infinity, which ADBC's driver wraps)
_EDGE_TIMES = st.sampled_from(
    ["0001-01-01 00:00:00", "9999-12-31 23:59:59.999999", "1970-01-01 00:00:00",
     "1999-12-31 23:59:59.999999", "2000-01-01 00:00:00", "0001-12-31 23:59:59 BC",
     "4713-01-01 00:00:00 BC", "10000-01-01 00:00:00", "294276-12-31 23:59:59.999999",
     "infinity", "-infinity"]
)  # fmt: skip
_EDGE_DATES = st.sampled_from(
    ["0001-01-01", "9999-12-31", "1970-01-01", "2000-01-01", "0001-12-31 BC", "4713-01-01 BC",
     "10000-01-01", "5874897-12-31", "infinity", "-infinity"]
)  # fmt: skip
_EDGES = {
    "c_date": _EDGE_DATES,
    "c_ts": _EDGE_TIMES,
    "c_tstz": _EDGE_TIMES.map(lambda t: t if "inf" in t else t.replace(" BC", "+00 BC")),
    "c_num": st.just(Decimal("NaN")),  # infinity: not in a numeric with a precision
}


def _read_arrow(url, driver, monkeypatch):
    monkeypatch.setattr(pg_source.PostgresReader, "arrow_driver", driver)
    with rk.endpoint(url) as pg:
        reader = pg.reader(["public.vals"])
        (unit,) = reader.units(reader.tables[0])
        try:
            return list(reader.read_arrow(unit))
        finally:
            reader.close()


@needs_adbc
@FEW
@given(data=st.data())
def test_adbc_read_equals_the_csv_read(pg_table, monkeypatch, data):
    """Batch for batch (a few rows: one batch each way), the same Arrow types and values,
    with edge values in some draws (a batch holding one keeps that column as text)."""
    edgy = data.draw(st.booleans())
    n = data.draw(st.integers(1, 25))

    def value(name, strategy):
        if edgy and name in _EDGES:
            strategy = strategy | _EDGES[name]
        return data.draw(st.none() | strategy)

    rows = [[i, *(value(n, s) for n, (_, s) in COLUMNS.items())] for i in range(n)]
    _insert(pg_table, rows)
    got = {d: _read_arrow(pg_table, d, monkeypatch) for d in ("adbc", "csv")}
    assert [len(b) for b in got.values()] == [1, 1]
    (adbc,), (csv,) = got.values()
    assert adbc.schema == csv.schema
    for name in adbc.schema.names:
        a, c = adbc.column(name), csv.column(name)
        if pa.types.is_floating(a.type):  # NaN equals NaN here; -0.0 is not 0.0
            a, c = [repr(x) for x in a.to_pylist()], [repr(x) for x in c.to_pylist()]
            assert a == c, name
        else:
            assert a.equals(c), (name, a.to_pylist(), c.to_pylist())


def _no_csv(monkeypatch):
    """Fail the test if a read falls back to the CSV reading."""

    def refuse(*args, **kwargs):
        raise AssertionError("read through CSV, not ADBC")

    monkeypatch.setattr(pg_source.PostgresReader, "_read_csv", refuse)


def _adbc_backends(conn, *, gone=False):
    """The sessions of ADBC reads (waiting up to 10 s for them to end with ``gone``)."""
    for _ in range(100):
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT%%' "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
        if not (gone and pids):
            return pids
        time.sleep(0.1)
    return pids


@needs_adbc
def test_adbc_reads_the_readers_snapshot_and_closes_early(pg_url, monkeypatch):
    """Rows committed after the reader's snapshot are not read (the snapshot is imported in
    ADBC's transaction); a read abandoned after one batch ends its session."""
    _no_csv(monkeypatch)
    monkeypatch.setattr(_arrow_adbc, "BATCH_BYTES", 4096)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, s text)")
        conn.execute("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
        with rk.endpoint(pg_url) as pg:
            reader = pg.reader(["public.t"])
            (unit,) = reader.units(reader.tables[0])
            first = next(iter(reader.read(unit)))  # the snapshot is taken here
            assert first.rows
            conn.execute("INSERT INTO t VALUES (20001, 'later')")
            conn.execute("DELETE FROM t WHERE id = 1")
            batches = reader.read_arrow(unit)
            ids = next(batches).column("id").to_pylist()
            assert ids[0] == 1 and len(ids) < 20000
            assert _adbc_backends(conn)
            started = time.monotonic()
            batches.close()
            assert not _adbc_backends(conn, gone=True)
            assert time.monotonic() - started < 5
            got = [i for b in reader.read_arrow(unit) for i in b.column("id").to_pylist()]
            reader.close()
    assert got == list(range(1, 20001))


@needs_adbc
def test_adbc_failing_before_its_first_batch_reads_through_csv(pg_url, monkeypatch, caplog):
    from adbc_driver_manager import AdbcStatusCode

    manager = _arrow_adbc.adbc_manager()

    def failing(*args, **kwargs):
        said = "IO: [libpq] Failed to connect: password=sekrit"
        raise manager.OperationalError(said, status_code=AdbcStatusCode.IO)
        yield  # a generator, as the real one

    monkeypatch.setattr(pg_source, "record_batches", failing)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, n numeric(5,1))")
        conn.execute("INSERT INTO t VALUES (1, 2.5), (2, NULL)")
    with caplog.at_level("INFO"), rk.endpoint(pg_url) as pg:
        reader = pg.reader(["public.t"])
        (unit,) = reader.units(reader.tables[0])
        rows = [r for b in reader.read_arrow(unit) for r in b.to_pylist()]
        reader.close()
    assert rows == [{"id": 1, "n": Decimal("2.5")}, {"id": 2, "n": None}]
    assert "COPY (FORMAT csv)" in caplog.text and "sekrit" not in caplog.text


@needs_adbc
def test_adbc_losing_the_connection_mid_read_names_the_table(pg_url, monkeypatch):
    monkeypatch.setattr(_arrow_adbc, "BATCH_BYTES", 4096)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, s text)")
        conn.execute("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g")
        with rk.endpoint(pg_url) as pg:
            reader = pg.reader(["public.t"])
            (unit,) = reader.units(reader.tables[0])
            batches = reader.read_arrow(unit)
            next(batches)
            for (pid,) in _adbc_backends(conn):
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(rk.Error) as failed:
                for _ in batches:
                    pass
            reader.close()
    assert isinstance(failed.value, rk.ConnectError), failed.value
    assert "public.t" in str(failed.value), failed.value


def test_arrow_reads_a_replication_slots_snapshot(pg_url, monkeypatch):
    """The CDC handoff: units read as Arrow see the slot's exported snapshot, not rows
    committed after it (those come as changes). Through CSV for now: ADBC's driver reads only
    in a snapshot the reader exported itself (see ``PostgresReader.read_arrow``)."""
    calls = []
    monkeypatch.setattr(pg_source, "record_batches", lambda *a: calls.append(a) or iter(()))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE h (id int PRIMARY KEY, v int NOT NULL)")
        conn.execute("INSERT INTO h SELECT g, 0 FROM generate_series(1, 5000) g")
        conn.execute("ANALYZE h")
        ep = rk.endpoint(pg_url)
        tables = list(ep.reflect().tables)
        ep.cdc_setup(tables, task="adbc_handoff")
        try:
            with ep.cdc_snapshot(tables, task="adbc_handoff") as (reader, _):
                conn.execute("INSERT INTO h SELECT g, 1 FROM generate_series(5001, 6000) g")
                conn.execute("UPDATE h SET v = 2 WHERE id <= 10")
                units = reader.units(tables[0], split_rows=1000)
                assert len(units) > 1
                got = sorted(
                    (r["id"], r["v"])
                    for u in units
                    for b in reader.read_arrow(u)
                    for r in b.to_pylist()
                )
        finally:
            ep.cdc_teardown(task="adbc_handoff")
    assert got == [(i, 0) for i in range(1, 5001)]
    assert not calls

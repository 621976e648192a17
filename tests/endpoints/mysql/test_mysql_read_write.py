"""Full load from and into MariaDB: every type family, both load methods, both drivers."""

import threading
from datetime import UTC, datetime, time
from decimal import Decimal

import psycopg
import pytest
from _my_schema import DRIVERS, ZOO, ZOO_ROWS, endpoint, numbers, query, read_all, run_sql

import replikit as rk
from replikit import DataError
from replikit.schema.model import TableId


def _db(url):
    return url.rsplit("/", 1)[1].split("?")[0]


@pytest.fixture
def zoo(mysql_url):
    run_sql(mysql_url, ZOO)
    run_sql(mysql_url, ZOO_ROWS)
    return mysql_url


@pytest.fixture
def target_url(mysql_server):
    import uuid

    name = f"rk_dst_{uuid.uuid4().hex[:10]}"
    url = mysql_server.create_database(name)
    yield url
    mysql_server.drop_database(name)


def test_zoo_reads_canonical_values(zoo):
    rows = read_all(endpoint(zoo), "zoo")
    names = endpoint(zoo).reflect().table(TableId(_db(zoo), "zoo")).column_names
    first = dict(zip(names, rows[0], strict=True))
    assert first["ubig"] == 18446744073709551615 and first["big"] == -(2**63)
    assert first["dec_big"] == Decimal("99999999999999999999999999999999999." + "9" * 30)
    assert first["flag"] is True and first["bit1"] is True and first["bits"] == 0b101010101010
    assert first["yr"] == 2155
    assert first["f"] == pytest.approx(3.14159265, rel=1e-7) and first["d"] == 1e308
    assert first["vc"] == "a\tb\nc\\d" and first["txt"] == "emoji 😀 and ü"
    assert first["latin"] == "café"
    assert first["bin"] == b"\x00\x01\x02\x00" and first["blb"] == b"\x00\xff\x00"
    assert first["dtm"] == datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert first["ts"] == datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC)
    assert first["tm"] == "838:59:59.000000"
    assert first["e"] == "large" and first["s"] == "a,c"
    assert first["j"] == '{"k": [1, 2.50, "x"]}'
    assert first["geo"] == "0101000020E6100000000000000000F03F0000000000000040"
    assert first["gen_total"] == Decimal("1999.98")
    second = dict(zip(names, rows[1], strict=True))
    assert second["tm"] == "-00:00:01.500000" and second["s"] == "" and second["bin"] == bytes(4)
    assert dict(zip(names, rows[2], strict=True))["tm"] == time(12, 30)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("method", ["load-data", "insert"])
def test_mysql_to_mysql_keeps_every_value_and_the_schema(zoo, target_url, driver, method):
    src = endpoint(f"{zoo}?driver={driver}")
    dst = endpoint(f"{target_url}?driver={driver}", method=method)
    task = rk.Task(src, dst)
    lossy = task.plan().lossy
    # INSERTs carry each row in one packet: values over max_allowed_packet are declared
    assert all(f.kind == "limit" and "max_allowed_packet" in (f.reason or "") for f in lossy)
    assert (lossy == []) is (method == "load-data")
    assert task.run().total_rows == 5
    for table in ("parent", "zoo"):
        assert read_all(src, table) == read_all(dst, table), table
    back = dst.reflect().table(TableId(_db(target_url), "zoo"))
    orig = src.reflect().table(TableId(_db(zoo), "zoo"))
    assert [c.type.native for c in back.columns] == [c.type.native for c in orig.columns]
    assert {i.name for i in back.indexes} == {i.name for i in orig.indexes}
    assert back.foreign_keys[0].name == "fk_zoo_parent"
    assert [c.name for c in back.checks] == ["chk_small"]
    assert back.column("gen_total").generated == "`dec_small` * 2 STORED"
    assert back.column("id").identity.next_value == 1000
    assert back.column("ts").default == "CURRENT_TIMESTAMP(6)"


def test_mysql_time_beyond_a_day_stops_a_postgres_load_naming_the_row(zoo, pg_url):
    task = rk.Task(endpoint(zoo), rk.endpoint(pg_url))
    assert any("TIME values outside" in p for p in task.plan().assessment.problems)
    with pytest.raises(rk.TaskError) as info:
        task.run()
    err = info.value.table_errors[f"{_db(zoo)}.zoo"]
    assert isinstance(err, DataError)
    assert err.column == "tm" and err.key == {"id": 1}


def test_mysql_to_postgres_values(zoo, pg_url):
    run_sql(zoo, "UPDATE zoo SET tm = NULL, ts = ts WHERE id IN (1, 2)")
    task = rk.Task(endpoint(zoo), rk.endpoint(pg_url))
    plan = task.plan()
    # tm: MySQL TIME beyond a day has no PostgreSQL time form
    assert {(f.table.split(".")[1], f.column) for f in plan.lossy if f.kind == "type"} == {
        ("zoo", "geo"),
        ("zoo", "tm"),
    }
    # the FULLTEXT key on txt becomes a btree index: long values exceed its 2,704-byte entry
    (key,) = [f for f in plan.lossy if f.kind == "limit"]
    assert "index ft_txt" in (key.reason or "") and "2,704" in (key.reason or "")
    task.run()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            f"SELECT ubig, dec_big, flag, ts, j::text, geo, s, bits, yr, e, blb "
            f'FROM "{_db(zoo)}".zoo WHERE id = 1'
        ).fetchone()
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'zoo'"
            ).fetchall()
        )
    assert row[0] == Decimal(18446744073709551615)
    assert row[1] == Decimal("99999999999999999999999999999999999." + "9" * 30)
    assert row[2] is True and row[3] == datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC)
    assert row[4] == '{"k": [1, 2.50, "x"]}'
    assert row[5].startswith("0101000020E6100000")
    assert row[6:] == ("a,c", 0b101010101010, 2155, "large", b"\x00\xff\x00")
    assert types["ubig"] == "numeric" and types["flag"] == "boolean"


def test_timestamps_are_instants_whatever_the_session_time_zone(mysql_url, target_url, pg_url):
    run_sql(
        mysql_url,
        "CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(3) NULL, dt DATETIME(3) NULL);\n"
        "SET time_zone = '+05:00';\n"
        "INSERT INTO t VALUES (1, '2020-06-01 12:00:00.125', '2020-06-01 12:00:00.125')",
    )
    src = endpoint(mysql_url)
    ((ts, dt),) = [r[1:] for r in read_all(src, "t")]
    assert ts == datetime(2020, 6, 1, 7, 0, 0, 125000, tzinfo=UTC)
    assert dt == datetime(2020, 6, 1, 12, 0, 0, 125000)  # DATETIME is not an instant
    rk.Task(src, endpoint(target_url)).run()
    assert read_all(endpoint(target_url), "t") == read_all(src, "t")
    assert query(target_url, "SELECT UNIX_TIMESTAMP(ts) FROM t") == [(Decimal("1590994800.125"),)]
    rk.Task(src, rk.endpoint(pg_url)).run()
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET TIME ZONE 'America/New_York'")
        (value,) = conn.execute(f'SELECT ts FROM "{_db(mysql_url)}".t').fetchone()
    assert value == datetime(2020, 6, 1, 7, 0, 0, 125000, tzinfo=UTC)


def test_zero_dates_are_null_counted_or_refused(mysql_url, caplog):
    run_sql(
        mysql_url,
        "CREATE TABLE z (id INT PRIMARY KEY, d DATE NULL, dt DATETIME NOT NULL);\n"
        "INSERT INTO z VALUES (1, '0000-00-00', '2020-01-01'), (2, '2020-00-15', '2020-01-01'),"
        " (3, '2020-05-05', '2020-01-01')",
        sql_mode="ALLOW_INVALID_DATES",
    )
    reader = endpoint(mysql_url).reader(["z"])
    rows = [r for u in reader.units(reader.tables[0]) for b in reader.read(u) for r in b.rows]
    assert sorted((r[0], r[1]) for r in rows) == [(1, None), (2, None), (3, rows[2][1])]
    assert reader.zero_dates == {(f"{_db(mysql_url)}.z", "d"): 2}
    assert "2 zero or invalid date(s) read as NULL" in caplog.text

    run_sql(mysql_url, "UPDATE z SET dt = '0000-00-00 00:00:00' WHERE id = 3", sql_mode="")
    with pytest.raises(DataError) as info:
        read_all(endpoint(mysql_url), "z")
    assert info.value.column == "dt" and info.value.key == {"id": 3}
    with pytest.raises(DataError, match="zero_dates='error'"):
        read_all(endpoint(mysql_url, zero_dates="error"), "z", ["d"])


def test_tinyint1_that_is_not_boolean_is_refused_not_coerced(mysql_url):
    run_sql(
        mysql_url,
        "CREATE TABLE b (id INT PRIMARY KEY, f TINYINT(1));\nINSERT INTO b VALUES (1, 1), (2, 7)",
    )
    with pytest.raises(DataError) as info:
        read_all(endpoint(mysql_url), "b")
    assert info.value.column == "f" and info.value.key == {"id": 2}
    assert read_all(endpoint(mysql_url, tinyint1_as_bool=False), "b") == [(1, 1), (2, 7)]


def test_nul_in_text_bound_for_postgres_names_table_column_and_key(mysql_url, pg_url):
    run_sql(
        mysql_url,
        "CREATE TABLE n (id INT PRIMARY KEY, s VARCHAR(10));\n"
        "INSERT INTO n VALUES (1, 'ok'), (2, CONCAT('a', CHAR(0), 'b'))",
    )
    with pytest.raises(rk.TaskError) as info:
        rk.Task(endpoint(mysql_url), rk.endpoint(pg_url)).run()
    (err,) = info.value.table_errors.values()
    assert isinstance(err, DataError) and err.column == "s" and err.key == {"id": 2}


@pytest.fixture
def pg_source(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, n numeric, d double precision, "
            "at timestamptz, label text)"
        )
        conn.execute("INSERT INTO t VALUES (1, 1.5, 2.5, '2020-01-01 00:00:00+00', 'é😀')")
    return pg_url


@pytest.mark.parametrize("method", ["load-data", "insert"])
@pytest.mark.parametrize(
    ("column", "bad"),
    [
        ("n", "1e40"),
        ("n", "0.1234567890123456789012345678901"),
        ("d", "'NaN'"),
        ("at", "'2040-01-01 00:00:00+00'"),
    ],
)
def test_values_that_do_not_fit_mysql_stop_with_table_column_key(
    pg_source, target_url, method, column, bad
):
    with psycopg.connect(pg_source, autocommit=True) as conn:
        conn.execute(f"INSERT INTO t (id, {column}) VALUES (7, {bad})")
    task = rk.Task(
        rk.endpoint(pg_source),
        endpoint(target_url, method=method),
        mappings=rk.Mappings().include("public", "%"),
    )
    with pytest.raises(rk.TaskError) as info:
        task.run()
    (err,) = info.value.table_errors.values()
    assert isinstance(err, DataError)
    assert err.column == column and err.key == {"id": 7}


@pytest.mark.parametrize("method", ["load-data", "insert"])
def test_text_a_latin1_column_cannot_hold_is_refused(pg_source, target_url, method):
    run_sql(
        target_url,
        "CREATE TABLE t (id INT PRIMARY KEY, n DECIMAL(65,30), d DOUBLE, "
        "at TIMESTAMP(6) NULL, label VARCHAR(10) CHARACTER SET latin1);\n"
        "INSERT INTO t (id, label) VALUES (5, 'kept')",
    )
    task = rk.Task(
        rk.endpoint(pg_source),
        endpoint(target_url, method=method),
        mappings=rk.Mappings().include("public", "%"),
        settings=rk.TaskSettings(
            target_table_prep_mode="truncate", type_overrides={"public.t.label": "varchar(10)"}
        ),
    )
    # the plan sees it: refused before anything is truncated
    plan = task.plan()
    (finding,) = plan.unsupported
    assert (finding.column, finding.kind) == ("label", "target")
    assert "character set latin1" in finding.reason and "utf8mb4" in finding.reason
    with pytest.raises(rk.ConversionError, match="label"):
        task.run()
    assert query(target_url, "SELECT id, label FROM t") == [(5, "kept")]
    # a writer used without the plan's check still refuses the row, naming it
    (plan,) = plan.assessment.tables
    writer = endpoint(target_url, method=method).writer()
    reader = rk.endpoint(pg_source).reader([plan.source])
    (unit,) = reader.units(plan.source)
    with pytest.raises(DataError) as info:
        writer.load(plan, reader.read(unit))
    assert info.value.key == {"id": 1} and "label" in str(info.value)
    assert query(target_url, "SELECT id, label FROM t") == [(5, "kept")]


def test_postgres_to_mysql_values_and_keys(pg_source, target_url):
    task = rk.Task(
        rk.endpoint(pg_source), endpoint(target_url), mappings=rk.Mappings().include("public", "%")
    )
    # d (double precision): PostgreSQL's NaN and Infinity have no MySQL DOUBLE form
    assert {f.column for f in task.plan().lossy} == {"n", "d", "at"}
    task.run()
    ((n, d, at, label),) = query(target_url, "SELECT n, d, UNIX_TIMESTAMP(at), label FROM t")
    assert (n, d, at, label) == (Decimal("1.5"), 2.5, 1577836800, "é😀")
    keys = query(
        target_url,
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
        "WHERE TABLE_SCHEMA = DATABASE() AND CONSTRAINT_NAME = 'PRIMARY'",
    )
    assert keys == [("id",)]


def test_names_longer_than_64_characters_are_refused_before_any_ddl(tmp_path, target_url):
    import sqlite3

    path = tmp_path / "long.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {'c' * 70} TEXT)")
    task = rk.Task(rk.endpoint(f"sqlite:///{path}"), endpoint(target_url))
    (finding,) = task.plan().unsupported
    assert finding.column == "c" * 70 and "longer than 64 characters" in (finding.reason or "")
    assert f"rename_column('t', '{'c' * 70}', '{'c' * 64}')" in (finding.fix or "")
    with pytest.raises(rk.ConversionError, match="longer than 64 characters"):
        task.run()
    assert query(target_url, "SHOW TABLES") == []


def test_split_units_read_every_row_once(mysql_url):
    run_sql(
        mysql_url,
        "CREATE TABLE big (id INT PRIMARY KEY, v INT);\n"
        f"INSERT INTO big SELECT seq, seq * 2 FROM {numbers(5000)};\n"
        "ANALYZE TABLE big",
    )
    reader = endpoint(mysql_url).reader(["big"], batch_rows=700)
    (table,) = reader.tables
    units = reader.units(table, split_rows=1000)
    assert len(units) >= 4
    rows = [r for u in units for b in reader.read(u) for r in b.rows]
    assert sorted(r[0] for r in rows) == list(range(1, 5001))


def test_reader_on_one_caller_connection_sees_its_snapshot(mysql_url):
    from replikit.endpoints.mysql._connect import connect

    run_sql(
        mysql_url,
        "CREATE TABLE s (id INT PRIMARY KEY);\n"
        f"INSERT INTO s SELECT seq FROM {numbers(3000)};\nANALYZE TABLE s",
    )
    ep = endpoint(mysql_url)
    conn = connect(ep.params)
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    run_sql(mysql_url, "INSERT INTO s VALUES (5000);\nDELETE FROM s WHERE id = 1")
    reader = ep.reader(["s"], connection=conn, batch_rows=100)
    (table,) = reader.tables
    units = reader.units(table, split_rows=1000)
    seen: list[int] = []
    lock = threading.Lock()

    def work(unit):
        for batch in reader.read(unit):
            with lock:
                seen.extend(r[0] for r in batch.rows)

    threads = [threading.Thread(target=work, args=(u,)) for u in units]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 3001))  # the snapshot: no 5000, 1 still there
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM s")  # the connection is usable afterwards
        assert cur.fetchone() == (3000,)
    conn.rollback()
    conn.close()


def test_reader_refuses_nested_units_on_its_shared_connection(mysql_url):
    from replikit.endpoints.mysql._connect import connect

    run_sql(mysql_url, "CREATE TABLE s (id INT PRIMARY KEY);\nINSERT INTO s VALUES (1), (2)")
    ep = endpoint(mysql_url)
    conn = connect(ep.params)
    reader = ep.reader(["s"], connection=conn, batch_rows=1)
    (unit,) = reader.units(reader.tables[0])
    first = reader.read(unit)
    next(first)
    with pytest.raises(rk.ConfigError, match="still streaming"):
        next(reader.read(unit))
    first.close()
    assert sum(len(b) for b in reader.read(unit)) == 2
    conn.close()


def test_reserved_words_and_mixed_case_names_round_trip(mysql_url, pg_url, target_url):
    run_sql(
        mysql_url,
        "CREATE TABLE `Order` (`select` INT PRIMARY KEY, `Key` VARCHAR(5), `we``ird` INT,"
        " KEY `from` (`Key`));\n"
        "INSERT INTO `Order` VALUES (1, 'a', 2), (2, 'A', 3)",
    )
    rk.Task(endpoint(mysql_url), rk.endpoint(pg_url)).run()
    db = _db(mysql_url)
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f'SELECT "select", "Key", "we`ird" FROM "{db}"."Order"').fetchall()
    assert sorted(rows) == [(1, "a", 2), (2, "A", 3)]
    rk.Task(
        rk.endpoint(pg_url), endpoint(target_url), mappings=rk.Mappings().include(db, "%")
    ).run()
    assert read_all(endpoint(target_url), "Order") == [(1, "a", 2), (2, "A", 3)]
    assert query(target_url, "SHOW INDEX FROM `Order` WHERE Key_name = 'from'") != []


def test_load_data_falls_back_to_insert_when_local_infile_is_off(
    zoo, target_url, mysql_server, caplog
):
    if mysql_server.socket is None:
        pytest.skip("changes a global setting: private server only")
    run_sql(mysql_server.admin_url, "SET GLOBAL local_infile = OFF")
    try:
        src, dst = endpoint(zoo), endpoint(target_url, method="load-data")
        rk.Task(src, dst).run()
    finally:
        run_sql(mysql_server.admin_url, "SET GLOBAL local_infile = ON")
    assert "does not allow LOAD DATA LOCAL INFILE" in caplog.text
    assert read_all(src, "zoo") == read_all(dst, "zoo")

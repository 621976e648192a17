"""Target limits are the plan's business (issue 8 item 16).

A table the target cannot create (too many columns, a row or a key too large) is an
``unsupported`` finding of ``plan()`` that names the table, the limit and the fix; the task
refuses before any DDL, for every table. The plan's model of each target is held to the real
server: at the limit CREATE TABLE succeeds and the plan has no finding, one step over the
server refuses and the plan has the finding (Hypothesis walks the boundary for MariaDB).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replikit as rk
from idents_db import Db
from replikit.cli import main
from replikit.endpoints.mysql._ddl import Ddl
from replikit.endpoints.mysql._dialect import DIALECT as MYSQL
from replikit.endpoints.postgres._dialect import DIALECT as PG
from replikit.endpoints.sqlite._dialect import DIALECT as SQLITE
from replikit.schema import Column, Index, TableId, TableSchema, Type, plan_table
from replikit.schema.convert import Dialect, Fidelity, TablePlan
from replikit.schema.limits import Limits, limit_findings

WIDE = 1201  # the table: PostgreSQL takes it, InnoDB (1,017 columns) does not


def _table(
    columns: list[tuple[Type, bool]],
    *,
    pk: tuple[str, ...] = (),
    unique: tuple[tuple[str, ...], ...] = (),
    indexes: tuple[Index, ...] = (),
) -> TableSchema:
    cols = tuple(
        Column(f"c{i}", t, nullable=null and f"c{i}" not in pk)
        for i, (t, null) in enumerate(columns)
    )
    return TableSchema(TableId("public", "t"), cols, primary_key=pk, unique=unique, indexes=indexes)


def _plan(table: TableSchema, target: Dialect) -> TablePlan:
    return plan_table(table, source_dialect="postgresql", target=target)


def _refused(plan: TablePlan, limits: Limits) -> list[rk.Finding]:
    return [f for f in limit_findings([plan], limits) if f.fidelity is Fidelity.UNSUPPORTED]


# -- the case: PostgreSQL 1,201 columns -> MariaDB ----------------------------------
@pytest.fixture
def wide_pg(pg_server) -> Iterator[Db]:
    name = f"rk_lim_{uuid.uuid4().hex[:10]}"
    db = Db("postgresql", pg_server.create_database(name))
    cols = ", ".join(f"c{i} integer" for i in range(1, WIDE))
    db.execute(
        f"CREATE TABLE wide (id integer PRIMARY KEY, {cols})",
        f"INSERT INTO wide SELECT g, {', '.join(f'g + {i}' for i in range(1, WIDE))} "
        "FROM generate_series(1, 3) g",
        "CREATE TABLE narrow (id integer PRIMARY KEY, v text)",
        "INSERT INTO narrow VALUES (1, 'a'), (2, 'b')",
    )
    try:
        yield db
    finally:
        pg_server.drop_database(name)


def test_wide_table_is_refused_before_any_ddl_and_the_fix_works(wide_pg, mysql_url):
    target = Db("mysql", mysql_url)
    task = rk.Task(wide_pg.url, mysql_url, mappings=rk.Mappings().include("public"))
    plan = task.plan()
    (finding,) = plan.unsupported
    assert finding.kind == "limit" and finding.table == "public.wide"
    assert "1,201 columns" in finding.reason and "1,017" in finding.reason
    assert "drop_columns" in (finding.fix or "")
    assert "1 unsupported" in str(plan) and "1,017" in str(plan)
    # run() and replikit copy refuse before any DDL: no table at all, not even the narrow one
    with pytest.raises(rk.ConversionError, match="Nothing was created"):
        task.run()
    assert target.tables() == []
    assert main(["copy", wide_pg.url, mysql_url, "--include", "public.%"]) == 2
    assert target.tables() == []
    assert main(["plan", wide_pg.url, mysql_url, "--include", "public.%"]) in (0, 2)
    # the fix the finding names: leave columns out
    dropped = frozenset(f"c{i}" for i in range(1000, WIDE))
    fixed = rk.Task(
        wide_pg.url,
        mysql_url,
        mappings=rk.Mappings().include("public"),
        transforms=[rk.transforms.drop_columns(dropped, tables=frozenset({"public.wide"}))],
    )
    assert fixed.plan().unsupported == []
    assert fixed.run().total_rows == 5
    kept = ["id", *(f"c{i}" for i in range(1, 1000))]
    assert target.columns(None, "wide") == kept
    select = f"SELECT {', '.join(kept)} FROM wide ORDER BY id"
    assert target.rows(select) == wide_pg.rows(select)
    assert target.rows("SELECT id, v FROM narrow ORDER BY id") == [(1, "a"), (2, "b")]


def test_plan_cli_names_the_limit(wide_pg, mysql_url, capsys):
    main(["plan", wide_pg.url, mysql_url, "--include", "public.%"])
    out = capsys.readouterr().out
    assert "public.wide: [unsupported]" in out and "columns per table = 1,017" in out


# -- MariaDB: the plan's model agrees with the server --------------------------------------
@pytest.fixture(scope="module")
def mariadb(mysql_server) -> Iterator[tuple[Any, Limits]]:
    """A connection to a scratch database and the live limits the writer reads."""
    name = f"rk_lim_{uuid.uuid4().hex[:10]}"
    url = mysql_server.create_database(name)
    conn = mysql_server.connect(name)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,"
                "NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'"
            )
        yield conn, rk.endpoint(url).writer().limits()
    finally:
        conn.close()
        mysql_server.drop_database(name)


_LIMIT_ERRORS = {1005, 1070, 1071, 1117, 1118}  # too many columns/key parts, key/row too long


def _mariadb_accepts(conn: Any, plan: TablePlan) -> bool:
    """CREATE TABLE and the after-load ALTER as the writer runs them."""
    ddl = Ddl("mariadb")
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS t")
        try:
            cur.execute(ddl.create_table(plan))
            for _, statement in ddl.table_alters([plan]):
                cur.execute(statement)
        except Exception as exc:
            if exc.args and exc.args[0] in _LIMIT_ERRORS:
                return False
            if exc.args and exc.args[0] == 1064 and not plan.columns:
                return False  # MariaDB's "limit" for a table without columns: a syntax error
            raise
    return True


def _agrees(conn: Any, limits: Limits, table: TableSchema) -> bool:
    plan = _plan(table, MYSQL)
    refused = _refused(plan, limits)
    accepted = _mariadb_accepts(conn, plan)
    assert accepted == (not refused), (accepted, [str(f) for f in refused])
    return accepted


MYSQL_TYPES = [
    Type.int_(8),
    Type.int_(16),
    Type.int_(32),
    Type.int_(64),
    Type.float_(32),
    Type.float_(64),
    Type.decimal(65, 30),
    Type.decimal(10, 2),
    Type.bool_(),
    Type.date(),
    Type.time(3),
    Type.timestamp(6),
    Type.timestamp(0, tz=True),
    Type.uuid(),
    Type.string(10),
    Type.string(11),
    Type.string(60),
    Type.string(63),
    Type.string(64),
    Type.string(200),
    Type.string(16383),
    Type.text(),
    Type.json(),
    Type.bytes_(16, fixed=True),
    Type.bytes_(40),
    Type.bytes_(41),
    Type.bytes_(255),
    Type.bytes_(),
]


@pytest.mark.parametrize(
    ("columns", "ok"),
    [
        ([(Type.int_(32), True)] * 1017, True),
        ([(Type.int_(32), True)] * 1018, False),
        ([(Type.int_(64), False)] * 1012, True),  # 8,120 bytes in the record
        ([(Type.int_(64), False)] * 1013, False),
        ([(Type.int_(64), True)] * 997, True),  # plus 125 bytes of null bitmap
        ([(Type.int_(64), True)] * 998, False),
        ([(Type.string(16383), True)], True),  # 65,532 + 2 + 1 null byte = 65,535
        ([(Type.string(16383), True)] * 2, False),
        ([(Type.string(8191), False)] * 2, True),
        ([(Type.string(8191), False), (Type.string(8192), False)], False),
        ([(Type.text(), False)] * 385, True),
        ([(Type.text(), False)] * 386, False),
        ([], False),  # a table needs a column (Hypothesis found it near the boundary)
    ],
)
def test_mariadb_columns_and_row_size_at_the_limit(mariadb, columns, ok):
    conn, limits = mariadb
    assert _agrees(conn, limits, _table(columns)) is ok


@pytest.mark.parametrize(
    ("types", "kind", "ok"),
    [
        ([Type.string(768)], "pk", True),
        ([Type.string(769)], "pk", False),
        ([Type.string(384), Type.string(384)], "pk", True),
        ([Type.string(384), Type.string(385)], "pk", False),
        ([Type.int_(32), Type.string(767)], "pk", True),
        ([Type.text(), Type.int_(8)], "pk", False),  # longtext keys become varchar(768)
        ([Type.string(768), Type.string(768)], "unique", True),  # MariaDB: a hash key
        ([Type.string(769)], "index", True),  # one column: a prefix is indexed
        ([Type.int_(32), Type.string(768)], "index", False),
        ([Type.int_(32)] * 32, "index", True),
        ([Type.int_(32)] * 33, "index", False),
    ],
)
def test_mariadb_key_length_at_the_limit(mariadb, types, kind, ok):
    conn, limits = mariadb
    assert _agrees(conn, limits, _keyed(types, kind)) is ok


def _keyed(types: list[Type], kind: str) -> TableSchema:
    names = tuple(f"c{i}" for i in range(len(types)))
    columns = [(t, kind != "pk") for t in types]
    if kind == "pk":
        return _table(columns, pk=names)
    if kind == "unique":
        return _table(columns, unique=(names,))
    return _table(columns, indexes=(Index("ix", names),))


def _largest_ok(limits: Limits, build: Any, top: int) -> int:
    """The largest count the plan accepts (binary search over ``build(count)``)."""
    lo, hi = 0, top
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _refused(_plan(build(mid), MYSQL), limits):
            hi = mid - 1
        else:
            lo = mid
    return lo


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mix=st.lists(
        st.tuples(st.sampled_from(MYSQL_TYPES), st.booleans(), st.integers(0, 40)),
        min_size=0,
        max_size=5,
    ),
    filler=st.tuples(st.sampled_from(MYSQL_TYPES), st.booleans()),
    pk=st.booleans(),
    step=st.integers(-1, 2),
)
def test_mariadb_agrees_with_the_plan_near_the_boundary(mariadb, mix, filler, pk, step):
    """A random mix of columns plus as many filler columns as the plan accepts (+step):
    the server accepts exactly what the plan accepts."""
    conn, limits = mariadb
    head = [(Type.int_(64), False)] if pk else []
    fixed = head + [(t, null) for t, null, n in mix for _ in range(n)]

    def build(count: int) -> TableSchema:
        return _table(fixed + [filler] * count, pk=("c0",) if pk else ())

    count = _largest_ok(limits, build, 1100) + step
    if count >= 0:
        _agrees(conn, limits, build(count))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    types=st.lists(
        st.one_of(
            st.integers(1, 800).map(Type.string),
            st.integers(1, 255).map(Type.bytes_),
            st.sampled_from([Type.int_(64), Type.decimal(30, 4), Type.timestamp(6), Type.text()]),
        ),
        min_size=1,
        max_size=3,
    ),
    kind=st.sampled_from(["pk", "unique", "index"]),
)
def test_mariadb_agrees_with_the_plan_on_keys(mariadb, types, kind):
    conn, limits = mariadb
    _agrees(conn, limits, _keyed(types, kind))


# -- values: max_allowed_packet --------------------------------------------------------------
def test_value_size_finding_names_max_allowed_packet_where_inserts_carry_rows(mysql_url):
    table = _table([(Type.int_(32), False), (Type.text(), True), (Type.string(20), True)])
    plan = _plan(table, MYSQL)
    loader = rk.endpoint(mysql_url).writer()
    assert limit_findings([plan], loader.limits(), PG.limits) == []  # LOAD DATA streams values
    (finding,) = limit_findings([plan], loader.limits(replicate=True), PG.limits)
    assert finding.fidelity is Fidelity.LOSSY and "max_allowed_packet = 16 MiB" in finding.reason
    assert finding.column == "c1"  # c2 (20 characters) cannot be larger
    assert "SET GLOBAL max_allowed_packet" in (finding.fix or "")
    inserts = rk.endpoint(mysql_url, method="insert").writer()
    assert limit_findings([plan], inserts.limits(), PG.limits) != []


def test_a_value_over_max_allowed_packet_really_fails_an_insert(mysql_url):
    target = Db("mysql", mysql_url)
    target.execute("CREATE TABLE v (id int PRIMARY KEY, body longtext)")
    ((packet,),) = target.rows("SELECT @@max_allowed_packet")
    with pytest.raises(Exception, match="max_allowed_packet"):
        target.rows("INSERT INTO v VALUES (1, %s)", ("x" * (packet + 1),))


def test_cdc_plan_lists_value_sizes(pg_url, mysql_url):
    Db("postgresql", pg_url).execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    task = rk.Task(
        pg_url,
        mysql_url,
        migration_type="full-load-and-cdc",
        mappings=rk.Mappings().include("public"),
    )
    (finding,) = task.plan().lossy
    assert finding.kind == "limit" and "max_allowed_packet" in finding.reason
    copy = rk.Task(pg_url, mysql_url, mappings=rk.Mappings().include("public"))
    assert copy.plan().lossy == []


# -- PostgreSQL and SQLite -------------------------------------------------------------------
@pytest.mark.parametrize(("n", "ok"), [(1600, True), (1601, False)])
def test_postgres_columns_at_the_limit(pg_url, n, ok):
    plan = _plan(_table([(Type.int_(16), True)] * n), PG)
    assert (not _refused(plan, PG.limits)) is ok
    cols = ", ".join(f"c{i} smallint" for i in range(n))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        if ok:
            conn.execute(f"CREATE TABLE t ({cols})")
        else:
            with pytest.raises(psycopg.errors.TooManyColumns):
                conn.execute(f"CREATE TABLE t ({cols})")


@pytest.mark.parametrize(("n", "ok"), [(32, True), (33, False)])
def test_postgres_index_columns_at_the_limit(pg_url, n, ok):
    table = _keyed([Type.int_(32)] * n, "index")
    assert (not _refused(_plan(table, PG), PG.limits)) is ok
    cols = ", ".join(f"c{i}" for i in range(n))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE t ({', '.join(f'c{i} int' for i in range(n))})")
        if ok:
            conn.execute(f"CREATE INDEX ix ON t ({cols})")
        else:
            with pytest.raises(psycopg.errors.TooManyColumns):
                conn.execute(f"CREATE INDEX ix ON t ({cols})")


def test_postgres_btree_entry_is_lossy_where_values_decide(pg_url):
    # 673 characters of 4 bytes: 2,692 + 12 header bytes = 2,704; one more can exceed it
    fits = _plan(_keyed([Type.string(673)], "pk"), PG)
    assert limit_findings([fits], PG.limits) == []
    over = _plan(_keyed([Type.string(674)], "pk"), PG)
    (finding,) = limit_findings([over], PG.limits)
    assert finding.fidelity is Fidelity.LOSSY and "2,704" in finding.reason
    rng = __import__("random").Random(8)
    text = "".join(chr(rng.randrange(0x1F300, 0x1F5FF)) for _ in range(674))  # incompressible
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (k varchar(674) PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (%s)", (text[:673],))
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            conn.execute("INSERT INTO t VALUES (%s)", (text,))


@pytest.mark.parametrize(("n", "ok"), [(2000, True), (2001, False)])
def test_sqlite_columns_at_the_limit(n, ok):
    plan = _plan(_table([(Type.int_(32), True)] * n), SQLITE)
    assert (not _refused(plan, SQLITE.limits)) is ok
    with closing(sqlite3.connect(":memory:")) as conn:
        statement = f"CREATE TABLE t ({', '.join(f'c{i} INTEGER' for i in range(n))})"
        if ok:
            conn.execute(statement)
        else:
            with pytest.raises(sqlite3.OperationalError, match="too many columns"):
                conn.execute(statement)


def test_duckdb_declares_the_foreign_keys_it_does_not_create(tmp_path):
    import sqlite3

    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a (id))")
    conn.close()
    plan = rk.Task(f"sqlite:///{src}", f"duckdb:///{tmp_path / 'out.duckdb'}").plan()
    [finding] = [f for f in plan.lossy if f.kind == "limit"]
    assert "foreign key (a_id) to" in str(finding) and "not created" in str(finding)


def test_a_table_without_columns_is_refused_before_any_ddl(pg_url, tmp_path, mysql_url):
    """PostgreSQL keeps tables with no columns (and rows in them); MySQL, SQLite and DuckDB
    cannot create one: the plan names the table and the task creates nothing."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE nocols ()")
        conn.execute("INSERT INTO nocols DEFAULT VALUES")
        conn.execute("CREATE TABLE kept (id integer PRIMARY KEY)")
    targets = [f"sqlite:///{tmp_path / 'out.db'}", f"duckdb:///{tmp_path / 'out.duckdb'}"]
    for target in [*targets, mysql_url]:
        task = rk.Task(pg_url, target, mappings=rk.Mappings().include("public"))
        (finding,) = task.plan().unsupported
        assert finding.table == "public.nocols" and "needs at least 1" in finding.reason
        assert "exclude" in (finding.fix or "")
        with pytest.raises(rk.ConversionError, match="Nothing was created"):
            task.run()
    with closing(sqlite3.connect(tmp_path / "out.db")) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)

"""PostgreSQL CDC lifecycle on real servers: setup preflight and publication, slot creation,
teardown, and the start checks that refuse a lost position."""

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

import fix_pg
import replikit as rk
from replikit.endpoints.postgres import cdc
from replikit.endpoints.postgres._slots import SlotState, slot_state
from replikit.positions import PgLsn

TASK = "life"
NAME = f"replikit_{TASK}"


def _conn(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET synchronous_commit = on")
    return conn


def _tables(url: str, *names: str) -> list[Any]:
    catalog = rk.endpoint(url).reflect()
    return [catalog.table(n) for n in names]


def _published(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
        (NAME,),
    ).fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def src(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    conn = _conn(pg_url)
    yield conn
    cdc.teardown(rk.endpoint(pg_url).params, task=TASK)
    conn.close()


# -- setup ----------------------------------------------------------------------------------
def test_setup_creates_and_syncs_the_publication(pg_url: str, src: Any) -> None:
    src.execute(
        "CREATE SCHEMA s; CREATE TABLE a (id int PRIMARY KEY);"
        " CREATE TABLE s.b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY)"
    )
    params = rk.endpoint(pg_url).params
    cdc.setup(params, _tables(pg_url, "public.a", "s.b"), task=TASK)
    assert _published(src) == {"public.a", "s.b"}
    cdc.setup(params, _tables(pg_url, "public.a", "s.b"), task=TASK)  # idempotent
    cdc.setup(params, _tables(pg_url, "s.b", "public.c"), task=TASK)
    assert _published(src) == {"s.b", "public.c"}
    src.execute(f"ALTER PUBLICATION {NAME} SET (publish = 'insert')")
    cdc.setup(params, _tables(pg_url, "s.b", "public.c"), task=TASK)
    row = src.execute(
        "SELECT pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot FROM pg_publication"
        " WHERE pubname = %s",
        (NAME,),
    ).fetchone()
    assert row == (True, True, True, True, True)
    cdc.setup(params, [], task=TASK)
    assert _published(src) == set()


def test_setup_refuses_tables_without_identity_before_creating_anything(
    pg_url: str, src: Any
) -> None:
    src.execute(
        "CREATE TABLE ok (id int PRIMARY KEY); CREATE TABLE bare1 (x int);"
        ' CREATE TABLE "Bare 2" (x int NOT NULL); CREATE TABLE full_id (x int);'
        " ALTER TABLE full_id REPLICA IDENTITY FULL"
    )
    params = rk.endpoint(pg_url).params
    tables = _tables(pg_url, "public.ok", "public.bare1", "public.Bare 2", "public.full_id")
    with pytest.raises(rk.ConfigError) as err:
        cdc.setup(params, tables, task=TASK)
    text = str(err.value)
    assert '"public"."bare1"' in text and '"public"."Bare 2"' in text
    assert '"public"."ok"' not in text and "full_id" not in text
    assert "primary key" in text and "REPLICA IDENTITY FULL" in text
    assert src.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    src.execute("UPDATE bare1 SET x = 1")  # the source application is unharmed
    # the fixes the message names make it pass
    src.execute(
        'ALTER TABLE bare1 ADD PRIMARY KEY (x); CREATE UNIQUE INDEX b2 ON "Bare 2" (x);'
        ' ALTER TABLE "Bare 2" REPLICA IDENTITY USING INDEX b2'
    )
    cdc.setup(params, tables, task=TASK)
    assert _published(src) == {"public.ok", "public.bare1", "public.Bare 2", "public.full_id"}


def test_setup_names_a_missing_table(pg_url: str, src: Any) -> None:
    src.execute("CREATE TABLE gone (id int PRIMARY KEY)")
    tables = _tables(pg_url, "public.gone")
    src.execute("DROP TABLE gone")
    with pytest.raises(rk.ConfigError, match='not tables in this database: "public"."gone"'):
        cdc.setup(rk.endpoint(pg_url).params, tables, task=TASK)


def test_setup_refuses_a_role_without_replication(pg_server: Any, pg_url: str, src: Any) -> None:
    role = f"rk_norepl_{uuid.uuid4().hex[:8]}"
    src.execute(f"CREATE ROLE {role} LOGIN; CREATE TABLE t (id int PRIMARY KEY)")
    src.execute(f"ALTER TABLE t OWNER TO {role}")
    url = make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    try:
        with pytest.raises(rk.ConfigError) as err:
            cdc.setup(rk.endpoint(url).params, _tables(url, "public.t"), task=TASK)
        assert f"role {role} has no REPLICATION" in str(err.value)
        assert f'ALTER ROLE "{role}" REPLICATION' in str(err.value)
        assert src.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
        with pytest.raises(rk.ConfigError, match="REPLICATION"):
            cdc.start(rk.endpoint(url).params, [], task=TASK)
    finally:
        src.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


# -- a second server, with wal_level = replica ------------------------------------------------
@pytest.fixture(scope="module")
def replica_server() -> Iterator[fix_pg.PgServer]:
    bindir = fix_pg._bindir()
    if bindir is None:  # as for pg_server: a missing server fails, it is not skipped
        pytest.fail(f"a second, wal_level=replica server: {fix_pg.INSTALL_HINT}", pytrace=False)
    cluster = fix_pg._LocalCluster(bindir, "walreplica")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(fix_pg._SETTINGS, "wal_level", "replica")
        mp.setitem(fix_pg._SETTINGS, "max_replication_slots", "2")
        try:
            cluster.init()
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
    try:
        yield fix_pg.PgServer(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres")
    finally:
        cluster.stop()


def test_wal_level_replica_and_no_free_slot_are_refused(replica_server: Any) -> None:
    url = replica_server.admin_url
    with _conn(url) as conn:
        conn.execute("CREATE TABLE w (id int PRIMARY KEY)")
        conn.execute("SELECT pg_create_physical_replication_slot('p1')")
        conn.execute("SELECT pg_create_physical_replication_slot('p2')")
        try:
            params = rk.endpoint(url).params
            with pytest.raises(rk.ConfigError) as err:
                cdc.setup(params, _tables(url, "public.w"), task=TASK)
            text = str(err.value)
            assert "wal_level is 'replica'" in text
            assert "ALTER SYSTEM SET wal_level = logical" in text and "restart" in text
            assert "no free replication slot" in text and "p1, p2" in text
            assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
            conn.execute("SELECT pg_drop_replication_slot('p2')")
            with pytest.raises(rk.ConfigError, match="wal_level"):
                cdc.start(params, [], task=TASK)
            with pytest.raises(rk.ConfigError, match="wal_level"):  # noqa: SIM117
                with cdc.snapshot(params, [], task=TASK):
                    pass
        finally:
            conn.execute("DROP TABLE w")
            for name in ("p1", "p2"):
                conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = %s",
                    (name,),
                )


# -- slot, teardown, start checks -------------------------------------------------------------
def test_start_creates_the_slot_once_and_teardown_is_idempotent(pg_url: str, src: Any) -> None:
    params = rk.endpoint(pg_url).params
    cdc.teardown(params, task=TASK)  # nothing there: fine
    src.execute("CREATE TABLE t (id int PRIMARY KEY)")
    tables = _tables(pg_url, "public.t")
    cdc.setup(params, tables, task=TASK)
    first = cdc.start(params, tables, task=TASK)
    src.execute("INSERT INTO t VALUES (1)")
    assert cdc.start(params, tables, task=TASK) == first  # the slot's confirmed position
    state = slot_state(src, NAME)
    assert state is not None and state.plugin == "pgoutput" and state.confirmed_flush == first
    cdc.teardown(params, task=TASK)
    cdc.teardown(params, task=TASK)
    assert slot_state(src, NAME) is None
    assert src.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)


def test_teardown_ends_an_active_reader_which_then_reports_the_lost_slot(
    pg_url: str, src: Any
) -> None:
    params = rk.endpoint(pg_url).params
    src.execute("CREATE TABLE t (id int PRIMARY KEY)")
    tables = _tables(pg_url, "public.t")
    cdc.setup(params, tables, task=TASK)
    start = cdc.start(params, tables, task=TASK)
    reader = cdc.PostgresChangeReader(params, tables, task=TASK, mode="stream")
    errors: list[BaseException] = []
    got: list[Any] = []

    def consume() -> None:
        try:
            got.extend(reader.transactions(start))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    src.execute("INSERT INTO t VALUES (1)")
    for _ in range(100):
        if got:
            break
        threading.Event().wait(0.05)
    state = slot_state(src, NAME)
    assert state is not None and state.active_pid is not None
    cdc.teardown(params, task=TASK)
    thread.join(10)
    reader.close()
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], rk.PositionLostError)
    assert f"slot {NAME} does not exist" in str(errors[0])
    assert "replikit drop" in str(errors[0]) and "full-load-and-cdc" in str(errors[0])


def test_start_checks_refuse_lost_positions(pg_url: str, src: Any) -> None:
    params = rk.endpoint(pg_url).params
    src.execute("CREATE TABLE t (id int PRIMARY KEY)")
    tables = _tables(pg_url, "public.t")
    cdc.setup(params, tables, task=TASK)
    start = cdc.start(params, tables, task=TASK)
    with cdc.PostgresChangeReader(params, tables, task=TASK, mode="poll") as reader:
        with pytest.raises(rk.PositionLostError, match="ahead of the server's WAL"):
            reader.transactions(PgLsn(start.value + 2**32))
        with pytest.raises(rk.PositionLostError, match="behind the confirmed position"):
            reader.transactions(PgLsn(start.value - 1))
        src.execute(f"DROP PUBLICATION {NAME}")
        with pytest.raises(rk.ConfigError, match=f"publication {NAME} does not exist"):
            reader.transactions(start)
        cdc.teardown(params, task=TASK)
        with pytest.raises(rk.PositionLostError, match="does not exist"):
            reader.transactions(start)


def test_invalidated_and_foreign_slots_are_explained() -> None:
    lost = SlotState(NAME, PgLsn(1), "lost", "pgoutput", "db", None, "logical", "db")
    with pytest.raises(rk.PositionLostError, match="invalidated.*replikit drop"):
        lost.check("h:1/db")
    other = SlotState(NAME, PgLsn(1), "reserved", "wal2json", "db", None, "logical", "db")
    with pytest.raises(rk.ConfigError, match="not a pgoutput logical slot"):
        other.check("h:1/db")
    elsewhere = SlotState(NAME, PgLsn(1), "reserved", "pgoutput", "x", None, "logical", "db")
    with pytest.raises(rk.ConfigError, match="belongs to database 'x'"):
        elsewhere.check("h:1/db")
    with pytest.raises(rk.ConfigError, match="task name"):
        cdc.object_name("no-dashes")

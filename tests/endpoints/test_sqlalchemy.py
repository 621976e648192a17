"""SQLAlchemy interop: URLs and Engines as endpoints, SQLAlchemy's driver names, real servers."""

from __future__ import annotations

import logging
import sqlite3

import psycopg
import pytest
from sqlalchemy import URL, create_engine
from sqlalchemy.engine import make_url

import replikit as rk
from replikit.endpoints.mysql import MysqlEndpoint
from replikit.endpoints.postgres import PostgresEndpoint
from replikit.endpoints.sqlite import SqliteEndpoint

NOTE = "replikit connects with"


@pytest.mark.parametrize(
    ("scheme", "cls", "note"),
    [
        ("postgresql+psycopg", PostgresEndpoint, False),
        ("postgresql+psycopg2", PostgresEndpoint, True),
        ("postgresql+asyncpg", PostgresEndpoint, True),
        ("postgresql+pg8000", PostgresEndpoint, True),
        ("postgres+psycopg2", PostgresEndpoint, True),
        ("mysql+pymysql", MysqlEndpoint, False),
        ("mysql+mysqldb", MysqlEndpoint, False),
        ("mysql+mysqlconnector", MysqlEndpoint, True),
        ("mysql+asyncmy", MysqlEndpoint, True),
        ("mariadb+mariadbconnector", MysqlEndpoint, True),
        ("mariadb+mysqlconnector", MysqlEndpoint, True),
        ("sqlite+pysqlite", SqliteEndpoint, False),
        ("sqlite+aiosqlite", SqliteEndpoint, True),
    ],
)
def test_sqlalchemy_driver_names_resolve(scheme, cls, note, caplog):
    where = "/:memory:" if scheme.startswith("sqlite") else "app@db.example/shop"
    caplog.set_level(logging.INFO, logger="replikit")
    ep = rk.endpoint(f"{scheme}://{where}")
    assert type(ep) is cls
    notes = [r.getMessage() for r in caplog.records if NOTE in r.getMessage()]
    assert bool(notes) is note, notes
    if note:
        assert scheme.partition("+")[2] in notes[0]
        assert caplog.records[-1].levelno == logging.INFO


def test_an_unknown_driver_lists_the_known_ones():
    with pytest.raises(rk.ConfigError, match=r"unknown driver 'oursql'.*mysql\+mysqlconnector"):
        rk.endpoint("mysql+oursql://app@db/shop")


def test_a_sqlalchemy_url_is_an_endpoint_with_its_password_masked():
    url = URL.create("postgresql+psycopg2", "app", "s3cr/et@", "db.example", 5433, "shop")
    ep = rk.endpoint(url)
    assert isinstance(ep, PostgresEndpoint)
    assert (ep.params.user, ep.params.password, ep.params.port) == ("app", "s3cr/et@", 5433)
    assert "s3cr" not in repr(ep) and "s3cr" not in repr(rk.Task(url, "sqlite:///:memory:"))


def test_an_engine_gives_its_connect_args():
    engine = create_engine(
        "postgresql+psycopg://app:pw@db.example/shop",
        connect_args={"connect_timeout": 7, "sslmode": "require", "options": "-c work_mem=64MB"},
    )
    ep = rk.endpoint(engine)
    assert ep.params.connect_timeout == 7
    assert ep.params.extra["sslmode"] == "require"
    assert ep.params.extra["options"] == "-c work_mem=64MB"
    my = rk.endpoint(
        create_engine(
            "mysql+pymysql://app:pw@db.example/shop?charset=utf8mb4",
            connect_args={"ssl": {"ca": "/etc/ca.pem"}, "connect_timeout": 4},
        )
    )
    assert my.params.ssl == {"ssl_ca": "/etc/ca.pem"}
    assert (my.params.connect_timeout, my.params.driver) == (4, "pymysql")
    lite = rk.endpoint(
        create_engine("sqlite:///x.db", connect_args={"check_same_thread": False, "timeout": 3})
    )
    assert lite.options == {"timeout": 3.0}


def test_an_engine_argument_replikit_cannot_pass_is_refused_not_dropped():
    engine = create_engine(
        "postgresql+psycopg://app:pw@db.example/shop", connect_args={"row_factory": object()}
    )
    with pytest.raises(rk.ConfigError, match=r"connect argument 'row_factory'.*engine\.url"):
        rk.endpoint(engine)
    assert isinstance(rk.endpoint(engine.url), PostgresEndpoint)  # the way round it


def test_an_unknown_object_is_refused():
    with pytest.raises(rk.ConfigError, match="SQLAlchemy URL or Engine"):
        rk.Task(42, "sqlite:///:memory:")  # type: ignore[arg-type]


def _source(tmp_path) -> str:
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(100)])
    conn.close()
    return f"sqlite:///{path}"


def test_pg_engine_as_target_never_uses_its_pool(pg_url, tmp_path):
    url = make_url(pg_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url, connect_args={"options": "-c statement_timeout=60000"})
    task = rk.Task(_source(tmp_path), engine)
    stats = task.run()
    assert stats.total_rows == 100
    assert engine.pool.checkedin() == 0 and engine.pool.checkedout() == 0  # never connected
    with engine.connect() as conn:  # the engine still works for the user
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 100
    engine.dispose()


@pytest.mark.parametrize("driver", ["psycopg2", "asyncpg", "pg8000"])
def test_pg_urls_naming_other_drivers_connect_with_psycopg(pg_url, tmp_path, driver, caplog):
    caplog.set_level(logging.INFO, logger="replikit")
    url = make_url(pg_url).set(drivername=f"postgresql+{driver}")
    if driver == "asyncpg":
        url = url.update_query_dict({"ssl": "disable"})  # asyncpg's name for sslmode
    src = _source(tmp_path)
    assert rk.Task(src, url.render_as_string(hide_password=False)).run().total_rows == 100
    assert any(f"names the {driver} driver" in r.getMessage() for r in caplog.records)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)


@pytest.mark.parametrize(
    "scheme", ["mysql+pymysql", "mysql+mysqldb", "mysql+mysqlconnector", "mariadb+mariadbconnector"]
)
def test_mysql_engines_and_driver_names_on_a_real_server(mysql_url, tmp_path, scheme):
    url = make_url(mysql_url).set(drivername=scheme).update_query_dict({"charset": "utf8mb4"})
    if scheme in ("mysql+pymysql", "mysql+mysqldb"):
        target = create_engine(url, connect_args={"connect_timeout": 5})
    else:
        target = url.render_as_string(hide_password=False)  # that driver is not installed
    assert rk.Task(_source(tmp_path), target).run().total_rows == 100
    plan = rk.Task(target, "sqlite:///:memory:").plan()
    assert [p.source.id.name for p in plan.assessment.tables] == ["t"]

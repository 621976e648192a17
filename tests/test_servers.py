"""The throwaway test servers can be restarted (fault tests break connections this way)."""

import psycopg
import pymysql
import pytest
from sqlalchemy.engine import make_url


def test_pg_server_restart_breaks_open_connections_and_new_ones_succeed(pg_server, pg_url):
    dbname = make_url(pg_url).database
    before = pg_server.connect(dbname)
    before.execute("CREATE TABLE kept (id int PRIMARY KEY)")
    before.execute("INSERT INTO kept VALUES (1)")
    (started,) = before.execute("SELECT pg_postmaster_start_time()").fetchone()
    pg_server.restart()
    with pytest.raises(psycopg.OperationalError):
        before.execute("SELECT 1")
    before.close()
    with pg_server.connect(dbname) as after:
        assert after.execute("SELECT pg_postmaster_start_time()").fetchone()[0] > started
        assert after.execute("SELECT id FROM kept").fetchall() == [(1,)]
        assert make_url(pg_server.url(dbname)).port == make_url(pg_url).port  # same URL works


def test_pg_server_stop_refuses_connections_until_start(pg_server, pg_url):
    pg_server.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg_url, connect_timeout=5)
    finally:
        pg_server.start()
    psycopg.connect(pg_url).close()


def test_pg_password_user_is_refused_a_wrong_password(pg_server, pg_url, pg_password_user):
    user, password = pg_password_user
    login = make_url(pg_url).set(username=user)
    psycopg.connect(login.set(password=password).render_as_string(False)).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(login.set(password="wrong").render_as_string(False))


def test_mysql_server_restart_breaks_open_connections_and_new_ones_succeed(
    mysql_server, mysql_url
):
    dbname = make_url(mysql_url).database
    before = mysql_server.connect(dbname)
    with before.cursor() as cur:
        cur.execute("CREATE TABLE kept (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO kept VALUES (1)")
    mysql_server.restart()
    with pytest.raises(pymysql.err.OperationalError), before.cursor() as cur:
        cur.execute("SELECT 1")
    before.close()
    with mysql_server.connect(dbname) as after, after.cursor() as cur:
        cur.execute("SELECT id FROM kept")
        assert cur.fetchall() == ((1,),)


def test_mysql_server_stop_refuses_connections_until_start(mysql_server, mysql_url):
    mysql_server.stop()
    try:
        with pytest.raises(pymysql.err.OperationalError):
            mysql_server.connect(connect_timeout=5)
    finally:
        mysql_server.start()
    mysql_server.connect().close()

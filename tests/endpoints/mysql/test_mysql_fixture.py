"""The throwaway MariaDB server fixture itself: binlog settings, databases, logins."""

import pymysql
import pytest


def _var(server, name):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES LIKE %s", (name,))
        row = cur.fetchone()
    return row[1] if row else None


def test_server_has_the_binlog_settings_cdc_needs(mysql_server):
    assert _var(mysql_server, "log_bin") == "ON"
    assert _var(mysql_server, "binlog_format") == "ROW"
    assert _var(mysql_server, "binlog_row_image") == "FULL"
    assert _var(mysql_server, "binlog_row_metadata") == "FULL"
    assert int(_var(mysql_server, "server_id")) >= 1
    if mysql_server.binlog_dir is not None:
        with mysql_server.connect() as conn, conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            (file, *_rest) = cur.fetchone()
        assert file.startswith("binlog.")


def test_mysql_url_is_a_fresh_database_dropped_after(mysql_server, mysql_url):
    db = mysql_url.rsplit("/", 1)[1]
    with mysql_server.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert cur.fetchall() == ()
        cur.execute("SELECT DATABASE(), @@character_set_database")
        assert cur.fetchone() == (db, "utf8mb4")
    mysql_server.drop_database(db)
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (db,))
        assert cur.fetchall() == ()
    mysql_server.create_database(db)  # the fixture drops it again


def test_socket_and_password_user(mysql_server):
    if mysql_server.socket is None:
        pytest.skip("external server: no private socket")
    conn = pymysql.connect(unix_socket=mysql_server.socket, user="root")
    conn.close()
    ok = pymysql.connect(
        host="127.0.0.1", port=mysql_server.port, user="replikit_pw", password="secret-pw"
    )
    ok.close()
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(
            host="127.0.0.1", port=mysql_server.port, user="replikit_pw", password="wrong"
        )

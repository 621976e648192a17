"""URLs without a password log in the way the engine's own clients do, on real servers:
PGPASSWORD / ~/.pgpass (libpq), ~/.my.cnf [client] / MYSQL_PWD (MySQL); and the CLI takes
its URLs from REPLIKIT_SOURCE_URL / REPLIKIT_TARGET_URL."""

from __future__ import annotations

import json
import sqlite3

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import replikit as rk
from replikit.cli import main

MY_USER, MY_PASSWORD = "replikit_pw", "secret-pw"  # tests/fix_mysql.py creates it


@pytest.fixture
def no_login_env(monkeypatch, tmp_path):
    """No password from the machine running the tests: an empty HOME, no variables."""
    for var in ("PGPASSWORD", "PGPASSFILE", "MYSQL_PWD"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def pg_login(pg_server, pg_url, pg_password_user, no_login_env) -> tuple[str, str]:
    """``(url without password, password)`` of the password role, allowed to write."""
    user, password = pg_password_user
    database = make_url(pg_url).database
    with psycopg.connect(pg_url, autocommit=True) as conn:
        role = sql.Identifier(user)
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(role))
        conn.execute(
            sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(sql.Identifier(database), role)
        )
    url = make_url(pg_url).set(username=user, password=None)
    return url.render_as_string(hide_password=False), password


def test_pg_without_a_password_is_refused(pg_login):
    url, _ = pg_login
    with pytest.raises(rk.ConnectError):
        rk.endpoint(url).check()


def test_pg_password_from_pgpassword(pg_login, monkeypatch):
    url, password = pg_login
    monkeypatch.setenv("PGPASSWORD", password)
    rk.endpoint(url).check()


def test_pg_password_from_pgpass(pg_login, no_login_env):
    url, password = pg_login
    u = make_url(url)
    pgpass = no_login_env / ".pgpass"
    pgpass.write_text(f"{u.host}:{u.port}:*:{u.username}:{password}\n")
    pgpass.chmod(0o600)
    rk.endpoint(url).check()


def test_cli_urls_and_password_from_the_environment_pg(pg_login, tmp_path, monkeypatch, capsys):
    url, password = pg_login
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    conn.close()
    monkeypatch.setenv("PGPASSWORD", password)
    monkeypatch.setenv("REPLIKIT_SOURCE_URL", f"sqlite:///{src}")
    monkeypatch.setenv("REPLIKIT_TARGET_URL", url)
    assert main(["copy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 10


@pytest.fixture
def my_url(mysql_server, mysql_url, no_login_env) -> str:
    """``mysql_url`` as the password user, without the password."""
    return make_url(mysql_url).set(username=MY_USER, password=None).render_as_string(False)


@pytest.mark.parametrize("driver", ["pymysql", "mysqlclient"])
def test_mysql_password_from_mysql_pwd(my_url, monkeypatch, driver):
    url = f"{my_url}?driver={driver}"
    with pytest.raises(rk.ConnectError, match=r"using password: NO"):
        rk.endpoint(url).check()
    monkeypatch.setenv("MYSQL_PWD", MY_PASSWORD)
    rk.endpoint(url).check()


@pytest.mark.parametrize("driver", ["pymysql", "mysqlclient"])
def test_mysql_password_from_my_cnf_client_section(my_url, no_login_env, monkeypatch, driver):
    (no_login_env / ".my.cnf").write_text(
        f'!includedir /etc/mysql/conf.d/\n[mysqld]\nport=1\n[client]\npassword="{MY_PASSWORD}"\n'
    )
    monkeypatch.setenv("MYSQL_PWD", "wrong")  # an option file comes before MYSQL_PWD
    rk.endpoint(f"{my_url}?driver={driver}").check()


def test_mysql_user_and_password_from_my_cnf(my_url, no_login_env):
    (no_login_env / ".my.cnf").write_text(f"[client]\nuser={MY_USER}\npassword={MY_PASSWORD}\n")
    ep = rk.endpoint(make_url(my_url).set(username=None))
    assert ep.params.user == MY_USER  # type: ignore[attr-defined]
    ep.check()


def test_my_cnf_password_of_another_user_is_not_used(my_url, no_login_env):
    (no_login_env / ".my.cnf").write_text(f"[client]\nuser=someone\npassword={MY_PASSWORD}\n")
    with pytest.raises(rk.ConnectError, match=r"using password: NO"):
        rk.endpoint(my_url).check()


def test_cli_replicates_from_mysql_with_mysql_pwd(my_url, mysql_server, tmp_path, monkeypatch,
                                                  capsys):  # fmt: skip
    database = make_url(my_url).database
    with mysql_server.connect(database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
        cur.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    monkeypatch.setenv("MYSQL_PWD", MY_PASSWORD)
    monkeypatch.setenv("REPLIKIT_SOURCE_URL", my_url)
    dst = f"sqlite:///{tmp_path / 'copy.db'}"
    # the binlog stream logs in with the same password
    argv = ["replicate", "--task-id", "pwd", "--stop-when-idle", "0.5", "--json", "-q"]
    assert main([*argv[:1], dst, *argv[1:]]) == 2  # one URL on the line is SRC_URL
    assert "no target URL" in capsys.readouterr().err
    monkeypatch.setenv("REPLIKIT_TARGET_URL", dst)
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["tables"][0]["full_load_rows"] == 2

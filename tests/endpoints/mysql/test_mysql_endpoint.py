"""The MySQL endpoint: URLs, drivers, connection errors, options (no data moved)."""

import subprocess
import sys

import pytest
from _my_schema import DRIVERS, endpoint

import replikit as rk
from replikit import ConfigError, ConnectError
from replikit.endpoints.mysql import MysqlEndpoint
from replikit.endpoints.mysql._connect import connect
from replikit.endpoints.mysql._params import ConnParams


@pytest.mark.parametrize("scheme", ["mysql", "mariadb", "mysql+pymysql", "mariadb+mysqldb"])
def test_url_schemes_resolve_to_the_mysql_endpoint(scheme):
    ep = rk.endpoint(f"{scheme}://app:s3cret@db.example:3307/shop")
    assert isinstance(ep, MysqlEndpoint)
    assert "s3cret" not in repr(ep) and "s3cret" not in ep.url
    assert ep.capabilities.cdc and ep.dialect.name == "mysql"


def test_url_parsing_and_driver_selection():
    p = ConnParams.from_url(
        "mysql+pymysql://u:p@h:3307/db?ssl_mode=verify_identity&ssl_ca=/ca", "x"
    )
    assert (p.host, p.port, p.user, p.database, p.driver) == ("h", 3307, "u", "db", "pymysql")
    assert p.ssl == {"ssl_mode": "VERIFY_IDENTITY", "ssl_ca": "/ca"}
    kw = p.pymysql_kwargs()
    assert kw["ssl_ca"] == "/ca" and kw["ssl_verify_cert"] and kw["ssl_verify_identity"]
    mc = ConnParams.from_url("mysql://u@h/db?driver=mysqlclient&ssl_mode=REQUIRED", "x")
    assert mc.driver == "mysqlclient" and mc.mysqlclient_kwargs()["ssl_mode"] == "REQUIRED"
    assert ConnParams.from_url("mariadb://h", "x").database is None
    assert "secret" not in repr(ConnParams.from_url("mysql://u:secret@h/db", "x"))


@pytest.mark.parametrize(
    "url",
    [
        "mysql://h/db?sslmode=require",  # PostgreSQL's spelling: refused, never ignored
        "mysql://h/db?ssl_mode=sometimes",
        "mysql://h/db?driver=odbc",
        "mysql://h:notaport/db",
    ],
)
def test_bad_urls_are_config_errors(url):
    with pytest.raises(ConfigError):
        MysqlEndpoint(url)


def test_unknown_options_and_target_without_database():
    with pytest.raises(rk.ConfigError, match="bogus"):
        MysqlEndpoint("mysql://h/db", bogus=1)
    with pytest.raises(ConfigError, match="must name the database"):
        MysqlEndpoint("mysql://h").writer()
    with pytest.raises(ConfigError, match="zero_dates"):
        MysqlEndpoint("mysql://h/db").reader([], zero_dates="maybe")
    with pytest.raises(ConfigError, match="load method"):
        MysqlEndpoint("mysql://h/db").writer(method="copy")


def test_importing_the_family_imports_no_driver():
    code = (
        "import sys; from replikit.endpoints.mysql import MysqlEndpoint; "
        "MysqlEndpoint('mysql://u@h/db').dialect; "
        "assert not {'MySQLdb', 'pymysql'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


_NO_MYSQLCLIENT = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "MySQLdb" or name.startswith("MySQLdb."):
            raise ImportError(name)
sys.meta_path.insert(0, Block())
from replikit import MissingDependencyError
from replikit.endpoints.mysql._connect import load_driver
try:
    load_driver("mysqlclient")
except MissingDependencyError as exc:
    print(exc)
print(load_driver("auto").name)
"""


def test_missing_driver_says_what_to_install_and_pymysql_alone_works():
    out = subprocess.run(
        [sys.executable, "-c", _NO_MYSQLCLIENT], check=True, capture_output=True, text=True
    ).stdout
    assert 'pip install "replikit[mysqlclient]"' in out
    assert out.strip().endswith("pymysql")


@pytest.mark.parametrize("driver", DRIVERS)
def test_connect_errors_explain_and_hide_the_password(mysql_server, driver):
    host, port = mysql_server.host, mysql_server.port
    bad_pw = MysqlEndpoint(f"mysql://replikit_pw:wrong-pw-123@{host}:{port}/mysql?driver={driver}")
    with pytest.raises(ConnectError) as info:
        bad_pw.check()
    assert "login refused" in str(info.value) and "wrong-pw-123" not in str(info.value)
    assert info.value.__cause__ is None or "wrong-pw-123" not in str(info.value.__cause__)
    missing = MysqlEndpoint(f"mysql://root@{host}:{port}/no_such_db_here?driver={driver}")
    with pytest.raises(ConnectError, match="does not exist"):
        missing.check()
    refused = MysqlEndpoint(f"mysql://root@127.0.0.1:1/x?driver={driver}&connect_timeout=2")
    with pytest.raises(ConnectError, match="refused|could not connect"):
        refused.check()
    good = MysqlEndpoint(f"mysql://replikit_pw:secret-pw@{host}:{port}/mysql?driver={driver}")
    good.check()


def test_sessions_are_utc_strict_and_without_backslash_mode(mysql_url):
    conn = connect(endpoint(mysql_url).params)
    with conn.cursor() as cur:
        cur.execute("SELECT @@session.time_zone, @@session.sql_mode")
        tz, mode = cur.fetchone()
    conn.close()
    assert tz == "+00:00"
    assert "STRICT_ALL_TABLES" in mode and "NO_BACKSLASH_ESCAPES" not in mode
    assert "NO_AUTO_VALUE_ON_ZERO" in mode


def test_reader_accepts_names_ids_and_reports_unknown_tables(mysql_url):
    from _my_schema import run_sql

    run_sql(mysql_url, "CREATE TABLE a (id INT PRIMARY KEY)")
    db = mysql_url.rsplit("/", 1)[1]
    ep = endpoint(mysql_url)
    assert [t.id for t in ep.reader(["a"]).tables] == [rk.TableId(db, "a")]
    assert [t.id for t in ep.reader([f"{db}.a"]).tables] == [rk.TableId(db, "a")]
    with pytest.raises(rk.SchemaError, match="no table"):
        ep.reader(["nope"])


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("mysql://u@h/db", "auto"),
        ("mariadb://u@h/db", "auto"),
        ("mysql+pymysql://u@h/db", "pymysql"),
        ("mysql+mysqldb://u@h/db", "mysqlclient"),
        ("mysql://u@h/db?driver=pymysql", "pymysql"),
    ],
)
def test_only_an_explicit_driver_is_forced(url: str, driver: str) -> None:
    """A plain mysql:// URL works with a PyMySQL-only install (mysqlclient is optional)."""
    assert ConnParams.from_url(url, url).driver == driver

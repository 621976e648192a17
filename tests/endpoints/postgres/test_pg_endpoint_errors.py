"""URLs, connection failures and their messages (never the password)."""

import pytest

import replikit as rk
from replikit.endpoints.postgres import PostgresEndpoint

SECRET = "hunter2-Secret"


def test_endpoint_by_url_masks_password() -> None:
    ep = rk.endpoint(f"postgresql://app:{SECRET}@db.example:5433/shop?sslmode=require")
    assert isinstance(ep, PostgresEndpoint)
    assert SECRET not in repr(ep)
    assert SECRET not in str(ep)
    assert SECRET not in repr(ep.params)
    assert ep.params.kwargs()["sslmode"] == "require"
    assert ep.params.kwargs()["port"] == 5433


def test_connection_refused(pg_server) -> None:
    ep = rk.endpoint(f"postgresql://postgres:{SECRET}@127.0.0.1:1/postgres")
    with pytest.raises(rk.ConnectError, match="refused") as info:
        ep.check()
    assert SECRET not in str(info.value)


def test_missing_database(pg_server) -> None:
    url = pg_server.url("no_such_db_rk").replace("postgres@", f"postgres:{SECRET}@")
    with pytest.raises(rk.ConnectError, match="does not exist") as info:
        rk.endpoint(url).check()
    assert SECRET not in str(info.value)


def test_wrong_password(pg_url, pg_password_user) -> None:
    user, _ = pg_password_user  # must log in with its password (tests/fix_pg.py)
    url = pg_url.replace("postgres@", f"{user}:{SECRET}@")
    with pytest.raises(rk.ConnectError, match=f"login refused for user '{user}'") as info:
        rk.endpoint(url).check()
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None or SECRET not in str(info.value.__cause__)


def test_unknown_host() -> None:
    ep = rk.endpoint(f"postgresql://u:{SECRET}@no-such-host.invalid/db")
    with pytest.raises(rk.ConnectError) as info:
        ep.check()
    assert SECRET not in str(info.value)


def test_bad_port_is_config_error() -> None:
    with pytest.raises(rk.ConfigError):
        rk.endpoint(f"postgresql://u:{SECRET}@host:notaport/db")


def test_light_import_does_not_load_the_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys, replikit as rk; ep = rk.endpoint('postgresql://u@h/db'); "
        "ep.dialect.parse_type('int4'); assert 'psycopg' not in sys.modules, 'driver loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""replikit's URL reading (no SQLAlchemy import) equals SQLAlchemy's ``make_url``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from replikit.endpoints._url import is_local_host, parse_url

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_PIECE = st.one_of(
    _TEXT,
    st.sampled_from(["", "a", "%40", "%2F", "@", ":", "/", "?", "[::1]", "::1", "a%zz", "55"]),
)


def _same(url: str) -> None:
    try:
        expected = make_url(url)
    except (ArgumentError, ValueError):  # what SQLAlchemy refuses, parse_url refuses
        with pytest.raises(ValueError, match=r"\w"):
            parse_url(url)
        return
    got = parse_url(url)
    assert got.drivername == expected.drivername
    assert got.username == expected.username
    assert got.password == expected.password
    assert got.host == expected.host
    assert got.port == expected.port
    assert got.database == expected.database
    assert got.query == dict(expected.query)


@given(
    st.sampled_from(["mysql", "mariadb", "mysql+pymysql", "postgresql", "postgresql+asyncpg"]),
    st.lists(_PIECE, min_size=7, max_size=7),
    st.sampled_from(["://", "://", "//", ":/"]),
)
def test_parse_url_is_make_url(scheme: str, pieces: list[str], sep: str) -> None:
    user, password, host, port, db, key, value = pieces
    url = f"{scheme}{sep}{user}:{password}@{host}:{port}/{db}?{key}={value}&{key}={value}x"
    _same(url)
    _same(f"{scheme}{sep}{host}/{db}")
    _same(f"{scheme}{sep}{user}@{host}:{port}")


@pytest.mark.parametrize(
    "url",
    [
        "mysql://bench:bench@127.0.0.1:3306/bench_src?driver=mysqlclient",
        "postgresql://u:p%40ss@[::1]:5432/db?sslmode=require&application_name=x",
        "postgresql:///db?host=/tmp",
        "mysql+pymysql://u@h/db?charset=utf8mb4&ssl_ca=/ca.pem&ssl_ca=/b.pem",
        "mysql://u:p@h:/db",
        "mysql://u:p@h:x/db",
        "not a url",
        "sqlite://",
    ],
)
def test_parse_url_examples(url: str) -> None:
    _same(url)


def test_driver_is_the_explicit_one() -> None:
    assert parse_url("postgresql+asyncpg://h/db").driver == "asyncpg"
    assert parse_url("mysql://h/db").driver == ""


@given(st.ip_addresses())
def test_an_address_is_this_machine_when_it_is_a_loopback(address) -> None:
    assert is_local_host(str(address)) is address.is_loopback
    if address.version == 6:
        assert is_local_host(f"[{address}]") is address.is_loopback


@pytest.mark.parametrize(
    ("url", "here"),
    [
        ("postgresql://u@localhost/d", True),
        ("postgresql://u@127.0.0.7:5433/d", True),
        ("postgresql://u@[::1]/d", True),
        ("postgresql:///d", True),  # libpq's default: the Unix socket
        ("postgresql://u@db.example.com/d?host=/var/run/postgresql", True),
        ("postgresql://u@db.example.com/d", False),
        ("postgresql://u@localhost/d?hostaddr=10.0.0.5", False),  # libpq connects to hostaddr
        ("postgresql://u@10.1.2.3/d", False),
        ("mysql://u@localhost/d", True),
        ("mysql://u@127.0.0.1:3307/d", True),
        ("mysql:///d", True),  # the drivers' default: localhost
        ("mysql://u@db.example.com/d?unix_socket=/run/mysqld/mysqld.sock", True),
        ("mysql://u@db.example.com/d", False),
    ],
)
def test_a_server_is_on_this_machine_at_a_loopback_address_or_socket(
    url: str, here: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import replikit as rk

    monkeypatch.delenv("PGHOST", raising=False)
    ep = rk.endpoint(url.replace("mysql://u@", "mysql://u:pw@"))
    assert ep.params.on_this_machine is here  # type: ignore[attr-defined]
    assert ep.writer().on_this_machine is here  # type: ignore[attr-defined]


def test_pghost_says_where_a_url_without_a_host_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    import replikit as rk

    monkeypatch.setenv("PGHOST", "db.example.com")
    assert rk.endpoint("postgresql:///d").params.on_this_machine is False  # type: ignore[attr-defined]
    monkeypatch.setenv("PGHOST", "/tmp")
    assert rk.endpoint("postgresql:///d").params.on_this_machine is True  # type: ignore[attr-defined]

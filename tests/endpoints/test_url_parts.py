"""replikit's URL reading (no SQLAlchemy import) equals SQLAlchemy's ``make_url``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from replikit.endpoints._url import parse_url

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

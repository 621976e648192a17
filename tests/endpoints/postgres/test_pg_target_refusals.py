"""A read-only or under-privileged PostgreSQL target: a replikit error naming the table and
what to grant or change, never a raw psycopg traceback."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import replikit as rk
from replikit.cli import main


@pytest.fixture
def source(tmp_path) -> str:
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO items VALUES (1, 'a'), (2, 'b')")
    conn.close()
    return f"sqlite:///{path}"


def _causes(exc: BaseException) -> list[BaseException]:
    errors = getattr(exc, "table_errors", None)
    return list(errors.values()) if errors else [exc]


def test_read_only_target(source, pg_url, capsys) -> None:
    dbname = make_url(pg_url).database
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                sql.Identifier(dbname)
            )
        )
    with pytest.raises(rk.Error) as info:
        rk.Task(source, pg_url).run()
    for cause in _causes(info.value):
        assert isinstance(cause, rk.Error), repr(cause)
        assert "read-only" in str(cause) and "items" in str(cause)
    assert main(["copy", source, pg_url]) in (1, 2)
    err = capsys.readouterr().err
    assert "read-only" in err and "Traceback" not in err


def test_user_without_create_privilege(source, pg_url) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS replikit_low")
        conn.execute("CREATE ROLE replikit_low LOGIN")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    low = make_url(pg_url).set(username="replikit_low").render_as_string(hide_password=False)
    try:
        with pytest.raises(rk.Error) as info:
            rk.Task(source, low).run()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY replikit_low")
            conn.execute("DROP ROLE replikit_low")
    causes = _causes(info.value)
    assert causes
    for cause in causes:
        assert isinstance(cause, rk.Error), repr(cause)
        text = str(cause)
        assert "items" in text and "replikit_low" in text
        assert "GRANT CREATE ON SCHEMA public TO replikit_low" in text

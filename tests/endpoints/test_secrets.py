"""Passwords never show: in repr, str, messages, logs or CLI output, however they are spelt.

Driver messages are scrubbed of whole occurrences only, so a short password leaves the
driver's words (``connection``, ``(using password: NO)``) readable.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from sqlalchemy.engine import URL

import replikit as rk
from replikit.cli import main

PASSWORDS = st.text(
    alphabet=st.sampled_from("/@:%?#&=+ ~!$'\"\\")
    | st.characters(codec="utf-8", categories=("L", "N", "P", "S")),
    min_size=8,
    max_size=24,
).filter(lambda p: p.strip() == p)


def _spellings(scheme: str, password: str) -> list[str]:
    """The URL spelt escaped (as SQLAlchemy renders it) and raw, as a user might type it."""
    escaped = URL.create(
        scheme, username="app", password=password, host="127.0.0.1", port=1, database="shop"
    ).render_as_string(hide_password=False)
    return [escaped, f"{scheme}://app:{password}@127.0.0.1:1/shop"]


def _leaks(text: str, password: str) -> bool:
    forms = {password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password)}
    return any(f in text for f in forms)


@settings(max_examples=200)
@given(password=PASSWORDS, scheme=st.sampled_from(["postgresql", "mysql"]))
@example(password="@000000?", scheme="postgresql")  # a '?' after an '@': not a query
def test_repr_str_and_errors_hide_any_password(password, scheme) -> None:
    masked = rk.endpoint(f"{scheme}://app:***@127.0.0.1:1/shop")
    plain = repr(masked) + repr(rk.Task(masked, "sqlite:///:memory:"))
    assume(not _leaks(plain, password))  # e.g. ":memory:" is in the text anyway
    for url in _spellings(scheme, password):
        try:
            ep = rk.endpoint(url)
        except rk.Error as exc:  # a raw spelling may not parse; its message must not leak
            assert not _leaks(str(exc), password), str(exc)  # noqa: PT017
            continue
        for text in (repr(ep), str(ep), ep.url, repr(rk.Task(ep, "sqlite:///:memory:"))):
            assert not _leaks(text, password), text


@settings(max_examples=100)
@given(password=PASSWORDS, scheme=st.sampled_from(["postgresql+psycopg", "mysql+pymysql"]))
def test_sqlalchemy_urls_and_engines_hide_any_password(password, scheme) -> None:
    """A SQLAlchemy URL or Engine (with the password in the URL or in connect_args): repr,
    str, the task's repr, the failed login's message and the log records never hold it."""
    from sqlalchemy import create_engine

    url = URL.create(scheme, username="app", password=password, host="127.0.0.1", port=1,
                     database="shop", query={"connect_timeout": "2"})  # fmt: skip
    bare = url.set(password=None)
    assume(not _leaks(repr(rk.endpoint(bare)) + ":memory:", password))
    inputs = [url, create_engine(url), create_engine(bare, connect_args={"password": password})]
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    logger = logging.getLogger("replikit")
    keep, old_level = Keep(logging.DEBUG), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    try:
        for given in inputs:
            ep = rk.endpoint(given)
            assert ep.params.password == password  # type: ignore[attr-defined]
            texts = [repr(ep), str(ep), ep.url, repr(rk.Task(given, "sqlite:///:memory:"))]
            with pytest.raises(rk.ConnectError) as info:
                ep.check()
            texts += [str(info.value), repr(info.value), *records]
            for text in texts:
                assert not _leaks(text, password), text
    finally:
        logger.removeHandler(keep)
        logger.setLevel(old_level)


def test_cli_json_and_logs_hide_the_password(tmp_path, capsys, caplog) -> None:
    password = "p/w@x:y%2F?z"
    url = URL.create(
        "postgresql", username="app", password=password, host="127.0.0.1", port=1, database="d"
    ).render_as_string(hide_password=False)
    caplog.set_level(logging.DEBUG)
    status = main(["copy", f"sqlite:///{tmp_path / 'none.db'}", url, "--json"])
    captured = capsys.readouterr()
    assert status != 0
    for text in (captured.out, captured.err, caplog.text):
        assert not _leaks(text, password), text


@pytest.fixture
def pg_pw_url(pg_server, pg_url) -> Iterator[str]:
    """``pg_url`` as the password-checked role ``replikit_pw`` (password ``right-pw``); the
    role gets its session password back afterwards (``pg_password_user`` relies on it)."""
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS replikit_pw")
        conn.execute(
            sql.SQL("CREATE ROLE replikit_pw LOGIN PASSWORD {}").format(sql.Literal("right-pw"))
        )
    yield pg_url
    pg_server.password_user()


def test_pg_short_password_leaves_the_message_readable(pg_pw_url) -> None:
    url = pg_pw_url.replace("postgres@", "replikit_pw:e@")
    with pytest.raises(rk.ConnectError, match="login refused") as info:
        rk.endpoint(url).check()
    assert "password authentication failed for user" in str(info.value)


def test_mysql_short_password_leaves_the_message_readable(mysql_server) -> None:
    base = mysql_server.url("mysql").replace("://root@", "://replikit_pw:e@")
    assert "replikit_pw:e@" in base
    with pytest.raises(rk.ConnectError, match="login refused") as info:
        rk.endpoint(base).check()
    message = str(info.value)
    assert "Access denied for user" in message
    assert "(using password: YES)" in message


def test_mysql_no_password_keeps_using_password_no(mysql_server) -> None:
    url = mysql_server.url("mysql").replace("://root@", "://replikit_pw@")
    with pytest.raises(rk.ConnectError, match="login refused") as info:
        rk.endpoint(url).check()
    assert "(using password: NO)" in str(info.value)


@settings(settings.get_profile("db"), max_examples=10)
@given(password=PASSWORDS)
@example(password="pw/with:slash")
def test_pg_real_logins_never_show_the_password(pg_server, pg_pw_url, tmp_path_factory, password):
    """Right and wrong logins with a random password, on a real server: messages, log
    records, statistics, CLI --json output and the target's tables never hold it."""
    import contextlib
    import io
    import sqlite3

    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE replikit_pw PASSWORD {}").format(sql.Literal(password)))
        conn.execute(
            sql.SQL("GRANT ALL ON DATABASE {} TO replikit_pw").format(
                sql.Identifier(pg_pw_url.rsplit("/", 1)[1])
            )
        )
    with psycopg.connect(pg_pw_url, autocommit=True) as conn:
        conn.execute("GRANT ALL ON SCHEMA public TO replikit_pw")
    base = URL.create("postgresql", username="replikit_pw", host="127.0.0.1")
    from sqlalchemy.engine import make_url

    admin = make_url(pg_pw_url)
    good_url = base.set(password=password, port=admin.port, database=admin.database)
    bad = good_url.set(password=password + "x")
    # as a user would type it, when that spelling means this password; else escaped
    raw = f"postgresql://replikit_pw:{password}@127.0.0.1:{admin.port}/{admin.database}"
    try:
        same = make_url(raw).password == password and make_url(raw).port == admin.port
    except Exception:
        same = False
    good = raw if same else good_url.render_as_string(hide_password=False)
    src = tmp_path_factory.mktemp("src") / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT OR REPLACE INTO t VALUES (1, 'x')")
    conn.close()
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    keep = Keep(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(keep)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        with pytest.raises(rk.ConnectError) as info:
            rk.endpoint(bad.render_as_string(hide_password=False)).check()
        texts = [str(info.value), repr(info.value), repr(rk.endpoint(good))]
        texts.append(repr(rk.Task(f"sqlite:///{src}", good)))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["copy", f"sqlite:///{src}", good, "--json"])
        assert status == 0, err.getvalue()
        texts += [out.getvalue(), err.getvalue()]
    finally:
        root.removeHandler(keep)
        root.setLevel(old_level)
    texts += records
    with psycopg.connect(pg_pw_url) as conn:
        for schema, table in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall():
            query = sql.SQL("SELECT t::text FROM {}.{} t").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            texts += [r[0] for r in conn.execute(query)]
    for text in texts:
        assert not _leaks(text, password), text


IDLE = ("--stop-when-idle", "0.2", "--task-id", "secrets")


@settings(settings.get_profile("db"), max_examples=6)
@given(password=PASSWORDS)
@example(password="pw/with:slash@%2F")
def test_mysql_real_logins_never_show_the_password(
    mysql_server, mysql_url, tmp_path_factory, password
):
    """Right and wrong logins with a random password on a real MariaDB: messages, log
    records, CLI --json output of copy and replicate, and the target's tables (data and the
    CDC control tables) never hold it."""
    import contextlib
    import io
    import sqlite3

    from sqlalchemy.engine import make_url

    admin = make_url(mysql_url)
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'replikit_rnd'@'%'")
        cur.execute("ALTER USER 'replikit_rnd'@'%%' IDENTIFIED BY %s", (password,))
        cur.execute(f"GRANT ALL ON `{admin.database}`.* TO 'replikit_rnd'@'%'")
    good_url = admin.set(username="replikit_rnd", password=password, drivername="mysql")
    good = good_url.render_as_string(hide_password=False)
    bad = good_url.set(password=password + "x").render_as_string(hide_password=False)
    src = tmp_path_factory.mktemp("src") / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT OR REPLACE INTO t VALUES (1, 'x')")
    conn.close()
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    keep = Keep(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(keep)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        with pytest.raises(rk.ConnectError) as info:
            rk.endpoint(bad).check()
        texts = [str(info.value), repr(info.value), repr(rk.endpoint(good))]
        texts.append(repr(rk.Task(f"sqlite:///{src}", good)))
        for argv in (
            ["copy", f"sqlite:///{src}", good, "--json"],
            ["replicate", f"sqlite:///{src}", good, "--json", "--cdc-setup", *IDLE],
        ):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv)
            assert status == 0, err.getvalue()
            texts += [out.getvalue(), err.getvalue()]
    finally:
        root.removeHandler(keep)
        root.setLevel(old_level)
    texts += records
    tables = 0
    with mysql_server.connect(admin.database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('mysql', 'sys', 'information_schema', "
            "'performance_schema')"
        )
        for schema, table in cur.fetchall():
            cur.execute(f"SELECT * FROM `{schema}`.`{table}`")
            texts += [repr(row) for row in cur.fetchall()]
            tables += 1
    assert tables >= 2, "the copy and the replicate control tables were expected"
    for text in texts:
        assert not _leaks(text, password), text

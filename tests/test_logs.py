"""Logging (#11 item 9): every record under ``replikit.*`` names its task (and table where it
is about one), ``--log-format json`` prints one JSON object per line, and no record holds a
password, whatever the command and verbosity."""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.parse
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from replikit.cli import main
from replikit.logs import ContextFilter, JsonFormatter, log_context, scrub


def _records(err: str) -> list[dict[str, object]]:
    """Every line of stderr, each one JSON object (the command's own lines too)."""
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def _source(tmp: Path) -> str:
    path = tmp / "src.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i) for i in range(100)])
    return f"sqlite:///{path}"


def test_json_records_name_the_task_and_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = _source(tmp_path), f"sqlite:///{tmp_path / 'dst.db'}"
    args = ["replicate", src, dst, "--cdc-setup", "--stop-when-idle", "0.5", "--task-id", "logs"]
    assert main([*args, "-vv", "--log-format", "json", "--no-progress"]) == 0
    records = _records(capsys.readouterr().err)
    assert records, "no log record"
    assert all(
        r["logger"] == "replikit" or str(r["logger"]).startswith("replikit.") for r in records
    )
    assert all(r["task"] == "logs" for r in records), [r for r in records if r["task"] != "logs"]
    about = [r for r in records if "table orders" in str(r["message"])]
    assert about and all(r["table"] == "orders" for r in about)
    assert {"time", "level", "logger", "message"} <= set(records[0])


def test_no_password_in_any_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_server, pg_url: str, pg_password_user
) -> None:
    user, password = pg_password_user
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(name), sql.Identifier(user)))  # fmt: skip
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(user)))
    quoted = urllib.parse.quote(password, safe="")
    dst = pg_url.replace("://postgres@", f"://{user}:{quoted}@")
    assert quoted in dst
    src = _source(tmp_path)
    for fmt in ("json", "text"):
        assert main(["copy", src, dst, "-vv", "--log-format", fmt, "--no-progress"]) == 0
        out, err = capsys.readouterr()
        assert "orders" in err  # the records were there
        for text in (out, err):
            assert password not in text and quoted not in text
    assert main(["status", "--task-id", "x", "--target", dst, "-vv", "--log-format", "json"]) == 2
    out, err = capsys.readouterr()
    assert password not in out + err and quoted not in out + err
    (failure,) = [r for r in _records(err) if r["level"] == "ERROR"]  # the error, as JSON too
    assert failure["logger"] == "replikit.cli" and "never ran" in str(failure["message"])


@given(password=st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=6))
def test_the_filter_masks_url_passwords_in_any_message(password: str) -> None:
    password = f"S3cr{password}"  # never a piece of the rest of the message
    url = f"postgresql://app:{password}@db1:5432/shop"
    record = logging.LogRecord("replikit.x", logging.INFO, __file__, 1, "at %s: %s", (url, 1), None)
    with log_context(task="t1", table="public.orders"):
        assert ContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert password not in line["message"] and "app:***@db1" in line["message"]
    assert line["task"] == "t1" and line["table"] == "public.orders"
    assert password not in scrub(f"failed: {url}; again {url}")

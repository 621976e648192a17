"""Failure semantics: one table's failure spares the others, stops are prompt and resumable,
the task closes only what it opened, and every CLI failure is one line (plus JSON with --json).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import replikit as rk
from replikit.cli import main
from replikit.endpoints import base
from replikit.endpoints.sqlite import SqliteEndpoint


def _db(path: Path, *statements: str, rows: dict[str, list[tuple]] | None = None) -> str:
    with sqlite3.connect(path) as conn:
        for sql in statements:
            conn.execute(sql)
        for table, values in (rows or {}).items():
            marks = ", ".join("?" * len(values[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    conn.close()
    return f"sqlite:///{path}"


def _rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
    conn.close()
    return rows


SHOP = (
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, "
    "customer_id INTEGER CONSTRAINT fk_customer REFERENCES customers (id), placed DATE)",
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
    "CREATE INDEX notes_body ON notes (body)",
)


@pytest.fixture
def shop(tmp_path: Path) -> str:
    return _db(
        tmp_path / "shop.db",
        *SHOP,
        rows={
            "customers": [(i, f"c{i}") for i in range(1, 51)],
            "orders": [(i, i % 50 + 1, "2024-01-02") for i in range(1, 201)],
            "notes": [(i, f"note {i}") for i in range(1, 31)],
        },
    )


def _copy_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    status = main(["copy", *args, "--json"])
    out, err = capsys.readouterr()
    return status, json.loads(out), err


# -- item 2: one table's failure does not stop the others -------------------------------------
def test_a_table_that_cannot_be_created_spares_the_others(shop, tmp_path, capsys):
    # a view in the target where the table should go: SQLite refuses DROP TABLE on it
    dst = _db(tmp_path / "out.db", "CREATE VIEW customers AS SELECT 1 AS id")
    status, result, err = _copy_json(capsys, shop, dst)
    assert status == 1
    tables = {t["table"]: t for t in result["tables"]}
    assert tables["customers"]["state"] == "Table error"
    assert "DROP VIEW" in tables["customers"]["error"]
    assert tables["orders"]["state"] == tables["notes"]["state"] == "Table completed"
    assert tables["orders"]["warnings"] == [
        "foreign key (customer_id) refers to customers, which failed"
    ]
    assert result["ok"] is False and "customers" in result["error"]
    assert err.count("\n") == 1 and "Traceback" not in err
    assert len(_rows(tmp_path / "out.db", "orders")) == 200
    assert len(_rows(tmp_path / "out.db", "notes")) == 30


def test_a_row_refused_mid_load_spares_the_other_tables(tmp_path, capsys):
    dates = [(i, (i % 50) + 1, "2024-01-02") for i in range(1, 30_001)]
    dates[25_000] = (25_001, 1, "not a date")
    src = _db(
        tmp_path / "shop.db",
        *SHOP,
        rows={
            "customers": [(i, f"c{i}") for i in range(1, 51)],
            "orders": dates,
            "notes": [(i, f"note {i}") for i in range(1, 31)],
        },
    )
    status, result, err = _copy_json(capsys, src, f"sqlite:///{tmp_path / 'out.db'}")
    assert status == 1
    tables = {t["table"]: t for t in result["tables"]}
    assert tables["orders"]["state"] == "Table error"
    assert "'not a date'" in tables["orders"]["error"]
    assert "key id=25001" in tables["orders"]["error"]
    assert tables["customers"]["state"] == tables["notes"]["state"] == "Table completed"
    assert len(_rows(tmp_path / "out.db", "customers")) == 50
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_refused_value_names_the_fix_and_the_fix_works(tmp_path, capsys):
    # SQLite keeps 'twelve' in an INTEGER column; the message says how to load it anyway
    src = _db(
        tmp_path / "src.db",
        "CREATE TABLE bad (id INTEGER PRIMARY KEY, amount INTEGER)",
        "CREATE TABLE good (id INTEGER PRIMARY KEY, v TEXT)",
        rows={"bad": [(1, 12), (2, "twelve")], "good": [(i, "x") for i in range(100)]},
    )
    dst = f"sqlite:///{tmp_path / 'out.db'}"
    status, result, _ = _copy_json(capsys, src, dst)
    assert status == 1
    error = {t["table"]: t for t in result["tables"]}["bad"]["error"]
    assert "'twelve'" in error and "column amount" in error and "key id=2" in error
    assert "--type bad.amount=text" in error
    status, result, _ = _copy_json(capsys, src, dst, "--type", "bad.amount=text")
    assert status == 0, result
    assert _rows(tmp_path / "out.db", "bad") == [(1, "12"), (2, "twelve")]


def test_a_type_override_that_names_no_column_stops_the_task_before_any_ddl(shop, tmp_path, capsys):
    out = tmp_path / "out.db"
    status, result, err = _copy_json(
        capsys, shop, f"sqlite:///{out}", "--type", "main.note.body=text"
    )
    assert status == 2
    assert "'main.note.body' names no column" in result["error"]
    assert "'notes.body'" in result["error"]  # the spelling that would work
    assert "Traceback" not in err
    with sqlite3.connect(out) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    conn.close()
    plan = rk.Task(
        shop, f"sqlite:///{out}", settings=rk.TaskSettings(type_overrides={"notes.bodyy": "text"})
    ).plan()
    [finding] = [f for f in plan.unsupported if f.kind == "setting"]
    assert finding.fidelity.value == "unsupported" and "notes.bodyy" in str(finding)


def test_the_text_summary_names_the_failed_table_and_the_cause(shop, tmp_path, capsys):
    dst = _db(tmp_path / "out.db", "CREATE VIEW notes AS SELECT 1 AS id")
    assert main(["copy", shop, dst]) == 1
    out, err = capsys.readouterr()
    assert "Table error" in out and "error: target table not prepared" in out
    assert err.splitlines()[-1].startswith("replikit: 1 of 3 tables failed: notes.")
    assert "replikit: notes: failed: target table not prepared" in err  # the progress line


@pytest.mark.parametrize("server", ["pg_url", "mysql_url"])
def test_server_targets_isolate_ddl_failures_per_table(server, shop, request):
    url = request.getfixturevalue(server)
    # a type the target server does not have: only that table's CREATE fails
    task = rk.Task(
        shop,
        url,
        settings=rk.TaskSettings(type_overrides={"notes.body": "no_such_type"}, progress=False),
    )
    with pytest.raises(rk.TaskError) as info:
        task.run()
    assert set(info.value.table_errors) == {"notes"}
    stats = task.statistics()
    assert stats["notes"].state is rk.TableState.ERROR
    assert "no_such_type" in (stats["notes"].error or "")
    assert stats["customers"].state is stats["orders"].state is rk.TableState.COMPLETED
    assert stats.total_rows == 250
    assert _count(request, server, url, "customers") == 50
    assert _count(request, server, url, "orders") == 200


def _count(request: pytest.FixtureRequest, server: str, url: str, table: str) -> int:
    if server == "pg_url":
        conn = request.getfixturevalue("pg_server").connect(url.rsplit("/", 1)[1])
    else:
        conn = request.getfixturevalue("mysql_server").connect(url.rsplit("/", 1)[1])
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT count(*) FROM {table}")
        return int(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("server", ["pg_url", "mysql_url"])
def test_a_foreign_key_to_a_failed_table_is_skipped_and_reported(server, shop, request):
    url = request.getfixturevalue(server)
    task = rk.Task(
        shop,
        url,
        settings=rk.TaskSettings(type_overrides={"customers.name": "no_such_type"}, progress=False),
    )
    with pytest.raises(rk.TaskError):
        task.run()
    stats = task.statistics()
    assert stats["orders"].state is rk.TableState.COMPLETED
    (warning,) = stats["orders"].warnings
    assert warning.startswith("foreign key (customer_id) to ")
    assert warning.endswith("customers not created: that table failed")


# -- item 4: ownership ----------------------------------------------------------------------
def test_a_callers_in_memory_target_stays_open_and_statistics_do_not_add_up(shop):
    target = rk.endpoint("sqlite:///:memory:")
    source = rk.endpoint(shop)
    task = rk.Task(source, target, settings=rk.TaskSettings(progress=False))
    first = task.run().total_rows
    plans = task.plan().assessment.tables
    assert all(r.equal for r in rk.compare(source, target, plans))  # still there after run()
    second = task.run().total_rows
    assert first == second == 280
    assert {t.table: t.full_load_rows for t in task.statistics()} == {
        "customers": 50,
        "orders": 200,
        "notes": 30,
    }
    assert all(r.equal for r in rk.compare(source, target, plans))
    target.close()
    source.close()


def test_endpoints_the_task_made_from_urls_are_closed(shop, tmp_path):
    task = rk.Task(
        shop, f"sqlite:///{tmp_path / 'out.db'}", settings=rk.TaskSettings(progress=False)
    )
    task.run()
    assert isinstance(task.target, SqliteEndpoint)
    assert task.target._conns._shared is None  # closed: nothing holds the file open


# -- item 12: what a person sees -------------------------------------------------------------
def test_json_failure_prints_a_json_error_object(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["copy", "oracle://u:hunter2@h/db", "sqlite:///x.db", "--json"]) == 2
    out, err = capsys.readouterr()
    error = json.loads(out)
    assert error["ok"] is False and error["exit_status"] == 2
    assert error["error_type"] == "ConfigError"
    assert "unknown URL scheme 'oracle'" in error["error"]
    assert err.count("\n") == 1 and "hunter2" not in out + err


def test_a_usage_error_with_json_prints_a_json_error_object(capsys, monkeypatch):
    with pytest.raises(SystemExit) as info:
        main(["copy", "sqlite:///a.db", "sqlite:///b.db", "--parallel", "x", "--json"])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["exit_status"] == 2
    assert "argument --parallel: invalid int value: 'x'" in err
    monkeypatch.delenv("REPLIKIT_TARGET_URL", raising=False)
    assert main(["copy", "sqlite:///a.db", "--json"]) == 2  # DST_URL missing
    out, err = capsys.readouterr()
    assert json.loads(out)["exit_status"] == 2
    assert "no target URL: give DST_URL or set REPLIKIT_TARGET_URL" in err


class BuggyEndpoint(SqliteEndpoint):
    """A third-party plug-in with a bug: reflection raises something that is no rk.Error."""

    schemes = ("buggy",)

    def __init__(self, url, **options):
        super().__init__(url.replace("buggy:", "sqlite:", 1), **options)

    def reflect(self, selection=None):
        raise KeyError("column_map")


@pytest.mark.parametrize("verbose", [False, True])
def test_an_unexpected_error_is_one_line_with_the_traceback_only_with_v(
    verbose, shop, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(base._LOADED, "buggy", BuggyEndpoint)
    args = ["-v"] if verbose else []
    status = main([*args, "copy", "buggy:///" + shop.removeprefix("sqlite:///"), "x.db", "--json"])
    assert status == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["error_type"] == "KeyError"
    if verbose:
        assert "Traceback" in err
    else:
        assert err == (
            "replikit: error: unexpected KeyError: 'column_map' (run with -v for the traceback)\n"
        )


def test_a_closed_stdout_is_no_traceback(shop, tmp_path):
    read, write = os.pipe()
    os.close(read)  # like `| head -1` that has already gone: every write fails with EPIPE
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "replikit.cli",
            "copy",
            shop,
            f"sqlite:///{tmp_path / 'o.db'}",
            "--json",
        ],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    os.close(write)
    assert proc.returncode == 1
    assert proc.stderr == "replikit: output stopped: stdout was closed (broken pipe)\n"


# -- item 18: replicate exits 1 when a table ended in error -------------------------------------
def test_replicate_exits_1_when_a_schema_change_stopped_a_table(tmp_path, capsys):
    path = tmp_path / "src.db"
    src = _db(
        path,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)",
        "CREATE TABLE other (id INTEGER PRIMARY KEY, v TEXT)",
        rows={"items": [(1, "a")], "other": [(1, "a")]},
    )
    dst = f"sqlite:///{tmp_path / 'out.db'}"
    command = ["replicate", src, dst, "--cdc-setup", "--stop-when-idle", "0.2", "--json"]
    assert main(command) == 0
    capsys.readouterr()
    _db(path, "ALTER TABLE items RENAME COLUMN name TO title")
    assert main(["cdc-setup", src]) == 0  # triggers follow the new shape; the change is logged
    capsys.readouterr()
    _db(path, rows={"items": [(2, "b")], "other": [(2, "b")]})
    status = main(command)
    out = capsys.readouterr().out
    assert status == 1
    result = json.loads(out)
    tables = {t["table"]: t for t in result["tables"]}
    assert tables["items"]["state"] == "Table suspended"
    assert "schema changed" in tables["items"]["error"]
    assert tables["other"]["inserts"] == 1
    assert "1 of 2 tables ended in error: items" in result["error"]
    assert _rows(tmp_path / "out.db", "other") == [(1, "a"), (2, "b")]


# -- item 8: cancellation ---------------------------------------------------------------------
def test_sigint_stops_a_copy_within_a_batch_and_a_rerun_completes(tmp_path):
    big = [(i, f"row {i}") for i in range(1, 100_001)]
    src = _db(
        tmp_path / "src.db",
        "CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)",
        "CREATE TABLE small (id INTEGER PRIMARY KEY, v TEXT)",
        rows={"big": big, "small": [(1, "x")]},
    )
    dst = f"sqlite:///{tmp_path / 'out.db'}"
    command = [sys.executable, "-m", "replikit.cli", "copy", src, dst, "--json"]
    env = {**os.environ, "REPLIKIT_FAILPOINT": "full-load.batch:1:pause"}
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # blocks until the first batch is written and the load paused
        seen.append(line)
        if "failpoint full-load.batch reached" in line:
            break
    else:
        proc.wait(timeout=60)
        pytest.fail(f"no pause marker; stderr: {''.join(seen)}")
    proc.send_signal(__import__("signal").SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    result = json.loads(out)
    tables = {t["table"]: t for t in result["tables"]}
    assert tables["big"]["state"] == "Table cancelled"
    assert tables["big"]["full_load_rows"] == 10_000  # the batch in flight, nothing after it
    assert tables["small"]["state"] == "Table cancelled"
    assert "stopped before the full load finished" in result["error"]
    assert "stopping after the current batch" in err and "Traceback" not in err

    rerun = subprocess.run(command[:-1], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert _rows(tmp_path / "out.db", "big") == big
    assert _rows(tmp_path / "out.db", "small") == [(1, "x")]


def test_the_summary_keeps_long_table_names_apart():
    from replikit.pipeline.stats import Statistics

    stats = Statistics()
    long = "dwcheck.customer_addresses_for_the_northern_region_warehouse_2023_part_"
    stats.add(long + "a", long + "a", 2)
    stats.add(long + "b", long[:-4] + "_2", 1)
    lines = str(stats).splitlines()[2:]
    assert lines[0].split()[0] != lines[1].split()[0]
    assert lines[0].split()[0].endswith("part_a") and lines[1].split()[0].endswith("part_b")


def test_an_unreachable_server_is_one_line_that_says_what_to_do(tmp_path, capsys):
    # libpq's message has a second "Is the server running...?" line: joined into one
    status = main(["copy", "postgresql://u@127.0.0.1:1/db", f"sqlite:///{tmp_path / 'out.db'}"])
    _, err = capsys.readouterr()
    assert status == 2
    assert err.count("\n") == 1, err
    assert err.startswith("replikit: error: connection refused by 127.0.0.1:1/db")
    assert "is PostgreSQL running" in err

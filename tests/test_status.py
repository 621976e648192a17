"""replikit_status and replikit_history (#11 items 5, 6): written by a live task into its
target (SQLite, PostgreSQL, MySQL, DuckDB) or a separate control database, pruned by the
retention setting, and read back by ``replikit status`` with the task stopped."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import replikit as rk
from live_task import Live, wait
from replikit.cli import main
from replikit.pipeline.control import SuspendedTable, control_store
from replikit.pipeline.status import StatusStore, status_store


def _run(tmp: Path, target: str | None = None, **settings: Any) -> Live:
    """A live task that applied two rounds of changes, stopped."""
    live = Live(tmp, target, history_interval=1, **settings)
    live.start()
    try:
        live.write(3)
        wait(lambda: live.task.statistics()["orders"].inserts >= 3)
        time.sleep(1.1)  # the next batch closes a history interval
        live.write(4)
        wait(lambda: live.task.statistics()["orders"].inserts >= 7)
    finally:
        live.stop()
    assert not live.errors, live.errors
    return live


def _store(url: str) -> StatusStore:
    store = status_store(rk.endpoint(url))
    assert store is not None
    return store


def _check(live: Live, store: StatusStore) -> None:
    stats = live.task.statistics()
    status = store.status("shop")
    assert status is not None
    assert status.state == "stopped" and status.phase == "stopped"
    assert status.applied_position == stats.cdc.position
    assert status.tables["orders"]["inserts"] == 7 == stats["orders"].inserts
    assert status.tables["customers"]["full_load_rows"] == 50
    history = store.history("shop")
    assert len(history) >= 2  # one interval closed by a batch, the last one by the stop
    assert sum(h.inserts for h in history) == 7
    assert sum(h.deletes for h in history) == stats["orders"].deletes == 2
    assert sum(h.full_load_rows for h in history) == 250
    assert sum(h.transactions for h in history) == stats.cdc.transactions
    assert all(h.bytes > 0 for h in history if h.transactions)


def test_sqlite_target(tmp_path: Path) -> None:
    live = _run(tmp_path)
    _check(live, _store(f"sqlite:///{tmp_path / 'dst.db'}"))


def test_postgres_target(tmp_path: Path, pg_url: str) -> None:
    live = _run(tmp_path, pg_url)
    _check(live, _store(pg_url))


def test_mysql_target(tmp_path: Path, mysql_url: str) -> None:
    live = _run(tmp_path, mysql_url)
    _check(live, _store(mysql_url))


def test_duckdb_target(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'dst.duckdb'}"
    live = _run(tmp_path, url)
    _check(live, _store(url))


def test_separate_control_database(tmp_path: Path) -> None:
    control = f"sqlite:///{tmp_path / 'control.db'}"
    live = _run(tmp_path, control_url=control)
    _check(live, _store(control))
    assert _store(f"sqlite:///{tmp_path / 'dst.db'}").status("shop") is None


def test_history_is_pruned_by_the_retention_setting(tmp_path: Path) -> None:
    live = Live(tmp_path, history_interval=1, history_retention_days=2 / 86400)  # 2 s
    live.start()
    try:
        for _ in range(5):
            live.write(1)
            time.sleep(1.1)
    finally:
        live.stop()
    history = _store(f"sqlite:///{tmp_path / 'dst.db'}").history("shop")
    newest = max(h.interval_end for h in history)
    assert 1 <= len(history) <= 4
    assert all(h.interval_end >= newest - timedelta(seconds=3.5) for h in history)


def test_status_command_with_the_task_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = _run(tmp_path)
    src, dst = f"sqlite:///{live.source}", f"sqlite:///{tmp_path / 'dst.db'}"
    store = control_store(rk.endpoint(dst))
    assert store is not None
    store.suspend(SuspendedTable(task="shop", table="orders", reason="value refused: fix it"))
    assert main(["status", src, dst, "--task-id", "shop"]) == 0
    out = capsys.readouterr().out
    assert "task shop: stopped" in out
    assert "orders" in out and "Replicating" in out
    assert "suspended tables: 1" in out and "value refused: fix it" in out
    assert main(["status", "--task-id", "shop", "--target", dst, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"]["tables"]["orders"]["inserts"] == 7
    assert report["checkpoint"]["position"] == report["status"]["applied_position"]
    assert [s["table"] for s in report["suspended_tables"]] == ["orders"]
    assert report["exceptions"] == 0 and len(report["history"]) >= 2


def test_status_of_an_unknown_task_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = f"sqlite:///{tmp_path / 'nothing.db'}"
    assert main(["status", "--task-id", "nope", "--target", dst, "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and "nope" in out["error"] and "never ran" in out["error"]


def test_page_and_metrics_show_a_suspended_table(live: Live) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    store = control_store(live.task.target)
    assert store is not None
    store.suspend(SuspendedTable(task="shop", table="orders", reason="value refused: fix it"))
    with live.task.serve_metrics(0) as server:
        page = urllib.request.urlopen(server.url, timeout=10).read().decode()
        text = urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()
    assert "value refused: fix it" in page
    suspended = [
        s.labels["table"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "replikit_table_suspended" and s.value == 1
    ]
    assert suspended == ["orders"]


def test_an_idle_stream_keeps_its_status_fresh(live: Live) -> None:
    """Nothing to apply: the status row is still rewritten every few seconds, so a task that
    is alive is told from one that died (``updated`` stays old)."""
    store = status_store(live.task.target)
    assert store is not None
    wait(lambda: (s := store.status("shop")) is not None and s.phase == "cdc", 20)
    first = store.status("shop")
    assert first is not None
    time.sleep(6.5)
    later = store.status("shop")
    assert later is not None and later.state == "running"
    assert later.updated_at >= first.updated_at + timedelta(seconds=4)


def _rows(store: StatusStore) -> int | None:
    status = store.status("shop")
    return None if status is None else int(status.tables["orders"]["full_load_rows"])


def test_the_ticker_publishes_while_a_full_load_runs(tmp_path: Path) -> None:
    from replikit.pipeline.stats import Statistics
    from replikit.pipeline.status import StatusReporter

    store = _store(f"sqlite:///{tmp_path / 'control.db'}")
    stats = Statistics()
    stats.add("orders", "orders", 1000)
    stats.started("orders", 1)
    phase = ["full-load"]
    reporter = StatusReporter("shop", stats, lambda: phase[0], store=store)
    store.ensure()
    reporter.tick_while(lambda: phase[0] == "full-load", every=0.2)
    try:
        for rows in (100, 400):
            stats.rows("orders", rows)
            wait(lambda: _rows(store) == stats["orders"].full_load_rows, 10)
        phase[0] = "cdc"  # the stream's applies carry the status from here on
        time.sleep(0.5)
        stats.rows("orders", 1)
        time.sleep(0.5)
        assert _rows(store) == 500  # no publish after the full load
    finally:
        reporter.close()


def test_a_forced_failure_shows_in_status_page_and_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows the target refuses (a CHECK of an existing target table) under skip-row: two go
    to replikit_apply_exceptions, the second suspends the table (escalation_count=2); the
    status command, the page and /metrics show the suspended table, its error and the
    exceptions, with the task running and after it stopped."""
    import sqlite3
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    dst = tmp_path / "dst.db"
    with sqlite3.connect(dst) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, "
            "qty INT CHECK (qty < 100))"
        )
    policy = rk.ErrorPolicy(data_errors="skip-row", escalation_count=2)
    live = Live(tmp_path, target_table_prep_mode="do-nothing", error_policy=policy)
    live.start()
    try:
        with sqlite3.connect(live.source) as conn:
            for i, qty in ((900, 500), (901, 1), (902, 700), (903, 2)):
                conn.execute("INSERT INTO orders VALUES (?, 1, ?)", (i, qty))
                conn.commit()
        stats = live.task.statistics()
        wait(lambda: stats["orders"].state is rk.TableState.SUSPENDED, 30)
        with live.task.serve_metrics(0) as server:
            page = urllib.request.urlopen(server.url, timeout=10).read().decode()
            text = urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()
    finally:
        live.stop()
    assert "Suspended tables" in page and "CHECK constraint failed" in page
    assert "Latest apply exceptions (2 in all)" in page
    samples = {
        (s.name, s.labels.get("table")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("replikit_table_suspended", "orders")] == 1
    assert samples[("replikit_table_apply_exceptions", "orders")] == 2
    assert samples[("replikit_table_exceptions_total", "orders")] == 2
    # the task stopped: the status command reads it all from the target
    assert main(["status", "--task-id", "shop", "--target", f"sqlite:///{dst}"]) == 0
    out = capsys.readouterr().out
    assert "suspended tables: 1" in out and "orders (suspended)" in out
    assert "apply exceptions: 2 (orders 2)" in out and "CHECK constraint failed" in out
    assert main(["status", "--task-id", "shop", "--target", f"sqlite:///{dst}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"]["tables"]["orders"]["state"] == "Table suspended"
    assert report["status"]["tables"]["orders"]["exceptions"] == 2
    assert report["exceptions_by_table"] == {"orders": 2}

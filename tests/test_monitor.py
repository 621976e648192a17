"""Metrics and the status page of a live replication (SQLite -> SQLite, full load + CDC).

``/metrics`` is parsed with prometheus-client's own parser and its counters must equal the
task's statistics; the status page is loaded in headless Chromium while a writer changes the
source, and must show the tables, counts that rise and the lag chart. The browser test saves
the screenshot docs/operations.md shows (docs/img/status-page.png) when
``REPLIKIT_UPDATE_SCREENSHOTS=1`` is set (else into the test's temporary folder, so a test run
leaves the working tree as it found it).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import replikit as rk
from live_task import Live, wait

SCREENSHOT = Path(__file__).parent.parent / "docs" / "img" / "status-page.png"


def _get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode(), response.headers["Content-Type"]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _applied(task: rk.Task) -> int:
    return sum(t.inserts + t.updates + t.deletes for t in task.statistics())


def test_metrics_parse_and_equal_the_statistics(live: Live) -> None:
    live.write(20)
    wait(lambda: _applied(live.task) >= 22)
    with live.task.serve_metrics(0) as server:
        live.task.stop()  # counters frozen: the scrape must equal the statistics exactly
        live.thread.join(60)
        text, kind = _get(server.url + "metrics")
    assert kind.startswith("text/plain")
    samples = _samples(text)
    stats = live.task.statistics()
    assert {t.table for t in stats} == {"customers", "orders"}
    for t in stats:
        base = (("table", t.table), ("task", "shop"))
        assert samples[("replikit_table_full_load_rows_total", base)] == t.full_load_rows
        for op, n in (("insert", t.inserts), ("update", t.updates), ("delete", t.deletes)):
            key = tuple(sorted((*base, ("op", op))))
            assert samples[("replikit_table_changes_total", key)] == n
        assert samples[("replikit_table_errors_total", base)] == t.errors == 0
        state = tuple(sorted((*base, ("state", t.state.value))))
        assert samples[("replikit_table_state", state)] == 1
    assert (
        stats["orders"].inserts == 20
        and stats["orders"].deletes == 1
        and stats["orders"].full_load_rows == 200
    )
    task = (("task", "shop"),)
    cdc = stats.cdc
    assert samples[("replikit_cdc_changes_total", task)] == cdc.changes
    assert samples[("replikit_cdc_transactions_total", task)] == cdc.transactions
    assert samples[("replikit_cdc_lag_seconds_count", task)] == cdc.lag.count == cdc.transactions
    assert samples[("replikit_cdc_lag_seconds_sum", task)] == pytest.approx(cdc.lag.sum)
    assert samples[("replikit_task_phase", (("phase", "stopped"), *task))] == 1


def test_status_json_and_unknown_path(live: Live) -> None:
    with live.task.serve_metrics(0) as server:
        status = json.loads(_get(server.url + "status.json")[0])
        assert status["task_id"] == "shop" and status["phase"] == "cdc"
        assert [t["table"] for t in status["tables"]] == ["customers", "orders"]
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(server.url + "nothing")
        assert err.value.code == 404
        err.value.close()


def test_port_in_use_is_a_config_error(live: Live) -> None:
    with live.task.serve_metrics(0) as server, pytest.raises(rk.ConfigError, match="port"):
        live.task.serve_metrics(server.port)


def _counts(browser: Any, table: str) -> dict[str, int]:
    """The numbers of ``table``'s row in the page's statistics table, by column header, as
    the page shows them (read in one script; again when the page was reloading)."""
    from selenium.common.exceptions import WebDriverException

    script = (
        "const t = document.querySelector('#tables table'); if (!t) return null;"
        "return [[...t.tHead.rows[0].cells].map(c => c.innerText),"
        " ...[...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.innerText))];"
    )
    for _ in range(50):
        try:
            grid = browser.execute_script(script)
        except WebDriverException:  # the page is reloading
            grid = None
        if grid:
            headers, *rows = grid
            for cells in rows:
                if cells and cells[0] == table:
                    found = dict(zip(headers, cells, strict=False))
                    return {
                        h: int(found[h].replace(",", "")) for h in ("rows", "inserts", "deletes")
                    }
            raise AssertionError(f"no row for {table} in {rows}")
        time.sleep(0.1)
    raise AssertionError("the page kept reloading while it was read")


def test_status_page_in_a_browser(live: Live, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    live.write(5)
    wait(lambda: _applied(live.task) >= 7)
    with live.task.serve_metrics(0) as server:
        server.refresh = 600  # still while it is read; then every second while counts rise
        browser.get(server.url)
        assert "shop" in browser.title
        assert browser.find_element(By.ID, "phase").text == "cdc"
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "orders" in body and "customers" in body
        before = _counts(browser, "orders")
        assert before["rows"] == 200 and before["inserts"] >= 5
        server.refresh = 1
        browser.refresh()
        live.write(10)
        wait(lambda: _applied(live.task) >= 19)
        # the page reloads itself: the counts a person sees rise without touching it
        wait(lambda: _counts(browser, "orders")["inserts"] >= before["inserts"] + 10, 10)
        server.refresh = 600
        browser.refresh()
        chart = browser.find_element(By.ID, "lag-chart")
        assert chart.size["width"] > 300
        points = chart.find_element(By.TAG_NAME, "polyline").get_attribute("points")
        assert points and len(points.split()) >= 1
        assert browser.find_element(By.ID, "suspended").text == "none"
        shot = SCREENSHOT if os.environ.get("REPLIKIT_UPDATE_SCREENSHOTS") else tmp_path / "p.png"
        shot.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000  # a rendered page, not an empty image


def test_without_prometheus_client_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    import replikit.monitor

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails as if absent
    monkeypatch.delitem(sys.modules, "replikit.monitor.metrics", raising=False)
    monkeypatch.delattr(replikit.monitor, "metrics", raising=False)
    task = rk.Task("sqlite:///:memory:", "sqlite:///:memory:")
    with pytest.raises(rk.MissingDependencyError, match=r"replikit\[metrics\]"):
        task.serve_metrics(0)


def test_replicate_metrics_port_serves_while_the_command_runs(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    live = Live(tmp_path)  # only its source database
    live.src.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["replicate", f"sqlite:///{live.source}", f"sqlite:///{tmp_path / 'cli.db'}",
            "--cdc-setup", "--task-id", "cli", "--stop-when-idle", "4", "--metrics-port",
            str(port)]  # fmt: skip
    command = subprocess.Popen(
        [sys.executable, "-m", "replikit.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[str, float] = {}

    def scraped() -> bool:
        try:
            text, _ = _get(f"http://127.0.0.1:{port}/metrics")
        except OSError:
            return False
        seen.update({"|".join(k[0:1] + tuple(v for _, v in k[1])): v
                     for k, v in _samples(text).items()})  # fmt: skip
        return seen.get("replikit_table_full_load_rows_total|orders|cli") == 200

    try:
        wait(scraped, 60)
    finally:
        _, err = command.communicate(timeout=60)
    assert command.returncode == 0, err
    assert f"status page http://127.0.0.1:{port}/" in err
    assert seen["replikit_task_info|full-load-and-cdc|cli"] == 1
    with pytest.raises(urllib.error.URLError):  # the port closes with the command
        _get(f"http://127.0.0.1:{port}/metrics")

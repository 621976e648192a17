"""REPL and notebook display of the result objects (#13 item 1).

``repr`` is one short summary line without secrets; ``_repr_html_`` is rendered in headless
Chromium and checked as the text a person sees (collapsed ``<details>`` stay hidden).
"""

import sqlite3
from pathlib import Path

import pytest

import replikit as rk
from replikit.pipeline.stats import Statistics, TableState

NASTY = "a<b>"  # a table name that is also markup: it must show as text


def _source(directory: Path) -> str:
    directory.mkdir()
    path = directory / "src.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f'CREATE TABLE "{NASTY}" (id INTEGER PRIMARY KEY, v TEXT, f REAL, x BLOB)')
        conn.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO plain VALUES (?, ?)", [(i, f"n{i}") for i in range(50)])
    conn.close()
    return f"sqlite:///{path}"


@pytest.fixture
def lossy_plan(tmp_path):
    overrides = {f"{NASTY}.v": "INTEGER", f"{NASTY}.f": "INTEGER", f"{NASTY}.nope": "TEXT"}
    task = rk.Task(
        _source(tmp_path / "plan"),
        f"sqlite:///{tmp_path / 'plan' / 'dst.db'}",
        settings=rk.TaskSettings(type_overrides=overrides),
    )
    return task.plan()


@pytest.fixture
def ran(tmp_path):
    """A task that copied one table, with its comparison."""
    task = rk.Task(
        _source(tmp_path / "ran"),
        f"sqlite:///{tmp_path / 'ran' / 'dst.db'}",
        mappings=rk.Mappings().include("%", "plain"),
    )
    plan = task.plan()
    task.run()
    result = rk.compare(task.source, task.target, plan.assessment.tables)
    return task, result


def _failed_statistics():
    stats = Statistics()
    for name, rows in (("main.ok", 1200), ("main.bad", 7)):
        stats.add(name, name, estimated_rows=1200)
        stats.started(name, units=1)
        stats.rows(name, rows)
    stats.finish("main.ok", TableState.COMPLETED)
    stats.finish("main.bad", TableState.ERROR, "value too long for <column> v")
    stats.count_changes("main.ok", "insert", 3)
    stats.cdc.applied(2, 3, [0.004, 0.006], "sqlite:42")
    return stats


# -- repr ------------------------------------------------------------------------------------
def test_reprs_are_one_short_summary_line(lossy_plan, ran):
    task, result = ran
    stats = task.statistics()
    reprs = {
        "plan": repr(lossy_plan),
        "assessment": repr(lossy_plan.assessment),
        "table plan": repr(lossy_plan.assessment.tables[0]),
        "statistics": repr(stats),
        "table stats": repr(stats["plain"]),
        "cdc": repr(_failed_statistics().cdc),
        "comparison": repr(result),
        "task": repr(task),
        "endpoint": repr(task.source),
    }
    for what, text in reprs.items():
        short = text.replace(task.source.url, "URL").replace(task.target.url, "URL")
        assert "\n" not in text and len(short) < 150, (what, text)
    assert reprs["plan"] == "<Plan 2 tables, 6 columns: 2 lossy, 1 unsupported; 4 DDL statements>"
    assert reprs["statistics"] == "<Statistics 1 table: 1 Table completed; 50 rows>"
    assert reprs["table stats"].startswith("<TableStats plain -> plain: Table completed, 50 rows")
    assert reprs["comparison"] == "<Comparison 1 table compared: 1 identical>"
    assert "2 transactions, 3 changes in 1 target commit" in reprs["cdc"]
    failed = repr(_failed_statistics())
    assert (
        failed == "<Statistics 2 tables: 1 Table completed, 1 Table error; 1,207 rows; "
        "CDC 3 changes>"
    )


def test_reprs_never_show_a_password():
    task = rk.Task("postgresql://app:s3cret@db1/shop", "mysql://app:s3cret@db2/shop")
    texts = [repr(task), task._repr_html_(), repr(task.source), task.source._repr_html_()]
    assert all("s3cret" not in t for t in texts)
    assert "***" in task._repr_html_()


# -- HTML in a browser (the browser fixture: tests/fix_browser.py) -------------------------
@pytest.fixture
def show(browser, tmp_path):
    """Open ``obj._repr_html_()`` as a page; return the text a person sees."""

    def show(obj) -> str:
        page = tmp_path / "page.html"
        page.write_text(f"<!doctype html><meta charset='utf-8'><body>{obj._repr_html_()}</body>")
        browser.get(page.as_uri())
        return browser.find_element("tag name", "body").text

    return show


def _row(browser, text):
    """The table row whose text contains ``text``."""
    return browser.find_element("xpath", f"//tr[td[contains(., '{text}')]]")


def test_plan_html_shows_fidelity_highlights_lossy_and_hides_the_ddl(browser, show, lossy_plan):
    text = show(lossy_plan)
    assert "Plan: 2 tables, 6 columns: 2 lossy, 1 unsupported" in text
    assert "unsupported findings stop the task" in text
    assert f"{NASTY} f REAL INTEGER ⚠ lossy" in text  # the name is text, not markup
    assert "✗ unsupported" in text and f"{NASTY}.nope" in text
    lossy = _row(browser, "float64 converted to int64")
    assert lossy.value_of_css_property("background-color") == "rgba(255, 243, 205, 1)"
    exact = browser.find_element("xpath", "//tr[td[.='plain'] and td[.='name']]")
    assert exact.value_of_css_property("background-color") == "rgba(0, 0, 0, 0)"
    assert "Target DDL (4 statements)" in text and "CREATE TABLE" not in text
    browser.find_element("xpath", "//summary[contains(., 'Target DDL')]").click()
    assert "CREATE TABLE" in browser.find_element("tag name", "body").text


def test_assessment_html(show, lossy_plan):
    text = show(lossy_plan.assessment)
    assert "Assessment: 2 tables, 6 columns: 2 lossy, 1 unsupported" in text
    assert "text converted to int64" in text and "Target DDL" not in text


def test_statistics_html_shows_states_rates_and_errors(browser, show):
    text = show(_failed_statistics())
    assert "Statistics: 2 tables: 1 Table completed, 1 Table error; 1,207 rows" in text
    assert "main.ok main.ok Table completed 1,200 1,200 100%" in text
    assert "rows/s" in text
    assert "main.bad: value too long for <column> v" in text  # the failed tables list
    bad = _row(browser, "main.bad")
    assert bad.value_of_css_property("background-color") == "rgba(248, 215, 218, 1)"
    assert "CDC" in text and "latency p50 / p99" in text and "sqlite:42" in text


def test_table_stats_cdc_task_endpoint_and_comparison_html(show, ran):
    task, result = ran
    stats = task.statistics()
    assert "plain -> plain: Table completed, 50 rows" in show(stats["plain"])
    cdc = show(_failed_statistics().cdc)
    assert "CDC: 2 transactions, 3 changes in 1 target commit" in cdc
    assert "position sqlite:42" in cdc
    task_text = show(task)
    assert f"Task {task.task_id}: full-load" in task_text
    assert "Table completed" in task_text  # the statistics, once it ran
    assert "can source, target, cdc" in show(task.source)
    comparison = show(result)
    assert "Comparison: 1 table compared: 1 identical" in comparison
    assert "main.plain" in comparison or "plain plain 50 50 identical" in comparison

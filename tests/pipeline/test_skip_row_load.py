"""data_errors="skip-row" during the full load, on every target engine: rows the target refuses
(a CHECK of an existing target table) go to replikit_apply_exceptions with their key and error,
the other rows of their batch and unit arrive, and escalation_count suspends the table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_error_policies import SOURCE, TARGET, _ids, _start, _stop
from test_task_cdc import Db, _task, _wait_for, make_db, target_has

import replikit as rk
from replikit.pipeline import control

__all__ = ["make_db"]

KINDS = [("sqlite", "sqlite"), ("sqlite", "pg"), ("sqlite", "mysql")]
IDS = ["sqlite", "pg", "mariadb"]
BAD = (37, 150, 151)  # qty >= 100: refused by the target's CHECK
ROWS = 300


def _setup(make_db: Callable[[str], Db], kinds: tuple[str, str]) -> tuple[Db, Db]:
    source, target = make_db(kinds[0]), make_db(kinds[1])
    source.execute([(s, ()) for s in SOURCE])
    target.execute([(_wide(s), ()) for s in TARGET])
    rows = [("INSERT INTO items VALUES (?, ?)", (i, 500 + i if i in BAD else i % 100))
            for i in range(1, ROWS + 1)]  # fmt: skip
    source.execute([*rows, ("INSERT INTO ledger VALUES (?, ?)", (1, "a"))])
    return source, target


def _wide(statement: str) -> str:
    """A target statement with 64-bit integers (a SQLite source's INTEGER is 64 bits)."""
    return statement.replace("INTEGER", "BIGINT")


def _items(task: rk.Task) -> Any:
    stats = task.statistics()
    return stats[next(t.table for t in stats if t.table.endswith("items"))]


@pytest.mark.parametrize("kinds", KINDS, ids=IDS)
def test_refused_rows_are_set_aside_and_the_load_goes_on(make_db, kinds) -> None:
    source, target = _setup(make_db, kinds)
    task, thread, errors = _start(source, target, data_errors="skip-row")
    source.execute([("INSERT INTO ledger VALUES (?, ?)", (2, "b"))])
    _wait_for(lambda: target_has(target, "ledger", 2) or bool(errors))
    _stop(task, thread)
    assert not errors, errors
    assert sorted(_ids(target)) == [i for i in range(1, ROWS + 1) if i not in BAD]
    items = _items(task)
    assert items.exceptions == len(BAD) and items.state is rk.TableState.REPLICATING
    assert items.full_load_rows == ROWS - len(BAD)
    rows = control.read_exceptions(target.url, "t1")
    assert sorted(r.key["id"] for r in rows) == list(BAD)  # type: ignore[index]
    assert {(r.kind, r.op, r.table) for r in rows} == {("data-error", "load", items.table)}
    assert all("qty" in r.error or "check" in r.error.lower() for r in rows), rows


@pytest.mark.parametrize("kinds", KINDS[:2], ids=IDS[:2])
def test_escalation_count_suspends_the_table_and_cdc_goes_on(make_db, kinds) -> None:
    source, target = _setup(make_db, kinds)
    task, thread, errors = _start(source, target, data_errors="skip-row", escalation_count=2)
    source.execute([("INSERT INTO ledger VALUES (?, ?)", (2, "b"))])
    _wait_for(lambda: target_has(target, "ledger", 2) or bool(errors))
    _stop(task, thread)
    (error,) = errors
    assert isinstance(error, rk.TaskError)
    (row,) = control.read_suspended(target.url, "t1")
    assert row.table.endswith("items") and "escalation_count=2" in row.reason
    assert len(control.read_exceptions(target.url, "t1")) >= 2


def test_plain_full_load_on_duckdb_sets_refused_rows_aside(make_db, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    source, _ = _setup(make_db, ("sqlite", "sqlite"))
    path = tmp_path / "dst.duckdb"
    with duckdb.connect(str(path)) as conn:
        for statement in TARGET:
            conn.execute(_wide(statement))
    target = Db(f"duckdb:///{path}", "duckdb")
    task = _task(source, target, mode="full-load", target_table_prep_mode="do-nothing",
                 error_policy={"data_errors": "skip-row"})  # fmt: skip
    task.run()
    with duckdb.connect(str(path)) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM items ORDER BY id").fetchall()]
    assert ids == [i for i in range(1, ROWS + 1) if i not in BAD]
    rows = control.read_exceptions(target.url, "t1")
    assert sorted(r.key["id"] for r in rows) == list(BAD)  # type: ignore[index]
    assert _items(task).exceptions == len(BAD)


def test_plain_full_load_on_postgres_sets_refused_rows_aside(make_db) -> None:
    source, target = _setup(make_db, ("sqlite", "pg"))
    task = _task(source, target, mode="full-load", target_table_prep_mode="do-nothing",
                 error_policy={"data_errors": "skip-row"})  # fmt: skip
    task.run()
    assert sorted(_ids(target)) == [i for i in range(1, ROWS + 1) if i not in BAD]
    assert len(control.read_exceptions(target.url, "t1")) == len(BAD)

"""Schema changes during CDC under each ``schema_change_policy``, on real servers: renamed,
widened, dropped and added columns are followed on the target (``apply``), suspend the table
(``stop-table``) or are left out (``ignore``), each counted as a ddl."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from test_task_cdc import Db, _task, _wait_for, make_db, target_has

import replikit as rk
from live_task import run_in_thread
from replikit.pipeline import control

__all__ = ["make_db"]  # the fixture, shared with test_task_cdc


def _pg(db: Db, *statements: str) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _columns(db: Db, table: str) -> dict[str, str]:
    with psycopg.connect(db.url) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, character_maximum_length, is_nullable "
            "FROM information_schema.columns WHERE table_name = %s", (table,)
        ).fetchall()
    return {r[0]: f"{r[1]}{f'({r[2]})' if r[2] else ''}{' null' if r[3] == 'YES' else ''}"
            for r in rows}  # fmt: skip


def _start(make_db: Callable[[str], Db], **settings: Any):
    source, target = make_db("pg"), make_db("pg")
    _pg(source, "CREATE TABLE items (id int PRIMARY KEY, name varchar(10) NOT NULL, "
                "qty int NOT NULL, note text NOT NULL)",
        "CREATE TABLE ledger (id int PRIMARY KEY)",
        "INSERT INTO items VALUES (1, 'a', 1, 'n1'), (2, 'b', 2, 'n2')")  # fmt: skip
    task = _task(source, target, **settings)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    return source, target, task, thread, errors


def _finish(task: rk.Task, thread: Any, target: Db, n: int, errors: list) -> None:
    _wait_for(lambda: target_has(target, "ledger", n) or bool(errors))
    task.stop()
    thread.join(60)


def test_apply_follows_rename_widen_drop_and_add(make_db) -> None:
    source, target, task, thread, errors = _start(make_db)
    _pg(source,
        "ALTER TABLE items RENAME COLUMN name TO title",
        "ALTER TABLE items ALTER COLUMN title TYPE varchar(40)",
        "ALTER TABLE items ALTER COLUMN qty TYPE bigint",
        "ALTER TABLE items DROP COLUMN note",
        "ALTER TABLE items ADD COLUMN color text",
        "INSERT INTO items VALUES (3, 'a title longer than ten', 5000000000, 'red')",
        "UPDATE items SET title = 'renamed row' WHERE id = 1",
        "INSERT INTO ledger VALUES (1)")  # fmt: skip
    _finish(task, thread, target, 1, errors)
    assert not errors, errors
    cols = _columns(target, "items")
    assert cols["title"] == "character varying(40)" and cols["qty"] == "bigint", cols
    assert cols["note"] == "text null" and "name" not in cols and "color" in cols, cols
    assert target.rows("items", "id") == [
        (1, "renamed row", 1, "n1", None),  # the dropped column keeps its values
        (2, "b", 2, "n2", None),
        (3, "a title longer than ten", 5000000000, None, "red"),
    ]
    stats = task.statistics()["public.items"]
    assert stats.state is rk.TableState.REPLICATING and stats.ddls >= 1


def test_a_narrowing_change_suspends_the_table(make_db) -> None:
    source, target, task, thread, errors = _start(make_db)
    _pg(source, "ALTER TABLE items ALTER COLUMN name TYPE varchar(5)",
        "INSERT INTO items VALUES (3, 'c', 3, 'n3')", "INSERT INTO ledger VALUES (1)")  # fmt: skip
    _finish(task, thread, target, 1, errors)
    (error,) = errors
    assert isinstance(error, rk.TaskError) and set(error.table_errors) == {"public.items"}
    (row,) = control.read_suspended(target.url, "t1")
    assert "does not hold every value" in row.reason


def test_stop_table_suspends_at_any_change(make_db) -> None:
    source, target, task, thread, errors = _start(make_db, schema_change_policy="stop-table")
    _pg(source, "ALTER TABLE items ADD COLUMN color text",
        "INSERT INTO items VALUES (3, 'c', 3, 'n3', 'red')", "INSERT INTO ledger VALUES (1)")
    _finish(task, thread, target, 1, errors)
    assert [r[0] for r in target.rows("items", "id")] == [1, 2]
    assert task.statistics()["public.items"].state is rk.TableState.SUSPENDED


def test_ignore_keeps_the_target_shape(make_db) -> None:
    source, target, task, thread, errors = _start(make_db, schema_change_policy="ignore")
    _pg(source, "ALTER TABLE items ADD COLUMN color text",
        "INSERT INTO items VALUES (3, 'c', 3, 'n3', 'red')", "INSERT INTO ledger VALUES (1)")
    _finish(task, thread, target, 1, errors)
    assert not errors, errors
    assert "color" not in _columns(target, "items")
    assert target.rows("items", "id")[-1] == (3, "c", 3, "n3")
    assert task.statistics()["public.items"].ddls == 1


def test_mariadb_rename_and_widen_are_followed(make_db) -> None:
    source, target = make_db("mysql"), make_db("pg")
    source.execute([
        ("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(10) NOT NULL, qty INT)", ()),
        ("CREATE TABLE ledger (id INT PRIMARY KEY)", ()),
        ("INSERT INTO items VALUES (1, 'a', 1)", ()),
    ])  # fmt: skip
    task = _task(source, target)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    source.execute([("ALTER TABLE items RENAME COLUMN name TO title", ())])
    source.execute([("ALTER TABLE items MODIFY qty BIGINT", ())])
    source.execute([("INSERT INTO items VALUES (2, 'b', 5000000000)", ()),
                    ("INSERT INTO ledger VALUES (1)", ())])  # fmt: skip
    schema = source.name
    _wait_for(lambda: target_has(target, "ledger", 1, schema) or bool(errors))
    task.stop()
    thread.join(60)
    assert not errors, errors
    assert target.rows("items", "id", schema) == [(1, "a", 1), (2, "b", 5000000000)]
    with psycopg.connect(target.url) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'items' ORDER BY ordinal_position", (schema,))]  # fmt: skip
    assert names == ["id", "title", "qty"]


def test_a_renamed_postgres_table_is_suspended_not_silently_left_behind(make_db) -> None:
    # the publication keeps the table by oid, so its changes come under the new name: the task
    # must stop the table there, not drop them
    source, target, task, thread, errors = _start(make_db)
    _pg(source, "ALTER TABLE items RENAME TO goods",
        "INSERT INTO goods VALUES (3, 'c', 3, 'n3')", "INSERT INTO ledger VALUES (1)")
    _finish(task, thread, target, 1, errors)
    (error,) = errors
    assert isinstance(error, rk.TaskError) and set(error.table_errors) == {"public.items"}
    (row,) = control.read_suspended(target.url, "t1")
    assert "renamed to public.goods" in row.reason and "reload" in row.reason
    assert [r[0] for r in target.rows("items", "id")] == [1, 2]


def test_a_postgres_truncate_empties_the_target_table(make_db) -> None:
    source, target, task, thread, errors = _start(make_db)
    _pg(source, "TRUNCATE items", "INSERT INTO items VALUES (7, 'g', 7, 'n7')",
        "INSERT INTO ledger VALUES (1)")
    _finish(task, thread, target, 1, errors)
    assert not errors, errors
    assert target.rows("items", "id") == [(7, "g", 7, "n7")]
    assert task.statistics()["public.items"].truncates == 1


def _sqlite_columns(db: Db, table: str) -> list[str]:
    conn = db.connect()
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def test_a_sqlite_rename_is_followed_as_a_rename_with_its_values(make_db) -> None:
    # SQLite keeps a renamed column in place and refuses to drop one the change triggers use,
    # so the reader tells a rename exactly; rows written before the triggers were remade carry
    # the old name and still land in the renamed column
    source, target = make_db("sqlite"), make_db("sqlite")
    source.execute([("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)", ()),
                    ("CREATE TABLE ledger (id INTEGER PRIMARY KEY)", ()),
                    ("INSERT INTO items VALUES (1, 'a', 1)", ())])  # fmt: skip
    task = _task(source, target)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    source.execute([("ALTER TABLE items RENAME COLUMN name TO title", ()),
                    ("INSERT INTO items VALUES (2, 'b', 2)", ())])  # fmt: skip
    source.execute([("UPDATE items SET title = 'aa' WHERE id = 1", ()),
                    ("INSERT INTO ledger VALUES (1)", ())])  # fmt: skip
    _finish(task, thread, target, 1, errors)
    assert not errors, errors
    assert _sqlite_columns(target, "items") == ["id", "title", "qty"]
    assert target.rows("items", "id") == [(1, "aa", 1), (2, "b", 2)]
    assert task.statistics()["items"].ddls >= 1


def test_a_dropped_sqlite_table_is_suspended_and_the_others_go_on(make_db) -> None:
    source, target = make_db("sqlite"), make_db("sqlite")
    source.execute([("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)", ()),
                    ("CREATE TABLE ledger (id INTEGER PRIMARY KEY)", ()),
                    ("INSERT INTO items VALUES (1, 'a')", ())])  # fmt: skip
    task = _task(source, target)
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    source.execute([("DROP TABLE items", ())])
    source.execute([("INSERT INTO ledger VALUES (1)", ())])
    _finish(task, thread, target, 1, errors)
    (error,) = errors  # a suspended table fails the run (exit 1); the stream went on
    assert isinstance(error, rk.TaskError) and set(error.table_errors) == {"items"}
    (row,) = control.read_suspended(target.url, "t1")
    assert "was dropped" in row.reason
    assert target.rows("items", "id") == [(1, "a")]  # the target keeps the table and its rows

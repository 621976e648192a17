"""A live replication for tests (the ``live`` fixture, loaded by conftest): a SQLite source
with two tables, full load + CDC into a target, and a writer that changes the source."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import replikit as rk


def wait(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached within {seconds} s")


def run_in_thread(task: rk.Task) -> tuple[threading.Thread, list[BaseException]]:
    """``task.run()`` started in a daemon thread, and the list the errors it raises go to."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            task.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@contextmanager
def running(task: rk.Task, phase: str = "cdc") -> Iterator[list[BaseException]]:
    """``task`` runs in a thread for the block, which starts once the task is in ``phase``
    and is given the list of errors the run raises (for a wait to give up on); the task is
    stopped after it, and any error the run raised fails the test."""
    thread, errors = run_in_thread(task)
    try:
        wait(lambda: task.phase == phase or bool(errors))
        assert not errors, errors
        yield errors
    finally:
        task.stop()
        thread.join(60)
    assert not errors, errors


class Live:
    """A task replicating ``orders`` and ``customers`` while :meth:`write` changes the source."""

    def __init__(self, tmp: Path, target: str | None = None, **settings: Any) -> None:
        self.source = tmp / "src.db"
        with sqlite3.connect(self.source) as conn:
            conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, qty INT)")
            conn.executemany(
                "INSERT INTO customers VALUES (?, ?)", [(i, f"c{i}") for i in range(50)]
            )
            conn.executemany(
                "INSERT INTO orders VALUES (?, ?, ?)", [(i, i % 50, 1) for i in range(200)]
            )
        self.src = rk.endpoint(f"sqlite:///{self.source}", cdc_setup=True)
        self.task = rk.Task(
            self.src, target or f"sqlite:///{tmp / 'dst.db'}", migration_type="full-load-and-cdc",
            settings=rk.TaskSettings(task_id="shop", **settings),
        )  # fmt: skip
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.next_id = 1000

    def _run(self) -> None:
        try:
            self.task.run()
        except BaseException as exc:
            self.errors.append(exc)

    def start(self) -> None:
        self.thread.start()
        wait(lambda: self.task.phase == "cdc" or bool(self.errors))
        assert not self.errors, self.errors

    def write(self, n: int) -> None:
        """Insert ``n`` orders, update one customer and delete one order, one by one."""
        with sqlite3.connect(self.source) as conn:
            for _ in range(n):
                self.next_id += 1
                conn.execute("INSERT INTO orders VALUES (?, 1, 2)", (self.next_id,))
                conn.commit()
            conn.execute("UPDATE customers SET name = name || '!' WHERE id = 3")
            conn.execute("DELETE FROM orders WHERE id = ?", (self.next_id - n + 1,))
            conn.commit()

    def stop(self) -> None:
        self.task.stop()
        self.thread.join(60)
        self.src.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """A task replicating SQLite -> SQLite, in the CDC phase."""
    live = Live(tmp_path)
    live.start()
    yield live
    live.stop()

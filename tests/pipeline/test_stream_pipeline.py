"""The hand-built change stream of docs/pipeline.md (PostgreSQL -> mask -> DiskCache -> MySQL),
run as the docs show it, killed with SIGKILL, and run again: the MySQL table then equals the
masked PostgreSQL table, row for row, with nothing lost or doubled."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import replikit as rk
from replikit.demo import sample_database

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## A change stream by hand"


def _docs_script() -> str:
    """The first Python block under the heading, as the page shows it."""
    page = (ROOT / "docs" / "pipeline.md").read_text()
    section = page[page.index(HEADING) :]
    match = re.search(r"^```python\n(.*?)^```", section, re.M | re.S)
    assert match is not None
    return match.group(1)


def _pseudonym(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:12] + "@example.invalid"


@pytest.fixture
def databases(pg_server: Any, mysql_server: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    src_name, dst_name = (f"rk_stream_{uuid.uuid4().hex[:10]}" for _ in range(2))
    src = pg_server.create_database(src_name)
    dst = mysql_server.create_database(dst_name)
    chinook = sample_database(tmp_path / "chinook.db")
    rk.Task(
        f"sqlite:///{chinook}",
        src,
        mappings=rk.Mappings().include("%", "Customer"),
        settings=rk.TaskSettings(progress=False),
    ).run()
    try:
        yield src, dst
    finally:
        pg_server.drop_database(src_name)
        mysql_server.drop_database(dst_name)


class Workload:
    """Inserts, updates and deletes Customer rows on the source until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 1000
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stop.is_set():
                    n += 1
                    conn.execute(
                        'INSERT INTO "Customer" ("CustomerId", "FirstName", "LastName", "Email") '
                        "VALUES (%s, 'New', 'Customer', %s)",
                        (n, f"new{n}@example.com"),
                    )
                    conn.execute(
                        'UPDATE "Customer" SET "Email" = %s WHERE "CustomerId" = %s',
                        (f"moved{n}@example.com", n % 59 + 1),
                    )
                    if n % 3 == 0:
                        conn.execute('DELETE FROM "Customer" WHERE "CustomerId" = %s', (n - 1,))
                    time.sleep(0.005)
        except BaseException as exc:
            self.errors.append(exc)

    def __enter__(self) -> Workload:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.errors, self.errors


def _mysql_rows(url: str) -> list[tuple[Any, ...]]:
    with rk.endpoint(url) as ep:
        reader = ep.reader(["Customer"])
        (table,) = reader.tables
        columns = table.column_names
        rows = [r for unit in reader.units(table) for b in reader.read(unit) for r in b.rows]
        reader.close()  # type: ignore[attr-defined]
    at = [columns.index(c) for c in ("CustomerId", "FirstName", "Email")]
    return sorted(tuple(r[i] for i in at) for r in rows)


def _expected(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute('SELECT "CustomerId", "FirstName", "Email" FROM "Customer"').fetchall()
    return sorted((i, first, _pseudonym(email)) for i, first, email in rows)


def _has_rows(url: str, n: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return len(_mysql_rows(url)) >= n
        except rk.Error:  # not created yet
            return False

    return check


def _wait(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("when", ["streaming", "early"])
def test_the_docs_stream_resumes_after_sigkill(
    databases: tuple[str, str], tmp_path: Path, when: str
) -> None:
    src, dst = databases
    script = _docs_script()
    script = script.replace("postgresql://app@db1/shop", src).replace("mysql://app@db2/shop", dst)
    (tmp_path / "stream.py").write_text(script)
    command = [sys.executable, "stream.py"]
    # this checkout's replikit, whatever the working folder
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src")])}
    with Workload(src):
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if when == "streaming":
            _wait(_has_rows(dst, 60))  # loaded, and changes made after the snapshot arrive
        else:
            time.sleep(1.0)  # somewhere in setup or the load
        proc.kill()
        proc.wait()
        time.sleep(0.5)  # more changes while it is down
    again = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert _mysql_rows(dst) == _expected(src)

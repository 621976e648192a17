"""``replikit demo``: the embedded default, no server needed.

Copies the bundled Chinook sample database (SQLite) into a new SQLite database with a
full-load-and-cdc task, prints the per-table summary, then changes the source while the task
runs and shows the changes arriving in the target (live CDC through SQLite triggers), and
finally verifies the copy table by table.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.resources import as_file, files
from pathlib import Path
from typing import TextIO

from replikit.endpoints.base import endpoint
from replikit.pipeline.stats import Statistics
from replikit.task import Task, TaskSettings
from replikit.validate import compare

__all__ = ["run_demo", "sample_database"]

# What the demo does to the source while CDC runs: (description, SQL, changes it makes).
_EDITS = (
    ("insert an artist", "INSERT INTO Artist (Name) VALUES ('replikit demo artist')", 1),
    (
        "raise the price of every rock track",
        "UPDATE Track SET UnitPrice = 1.29 WHERE GenreId = 1",
        1297,
    ),
    ("delete the lines of invoice 1", "DELETE FROM InvoiceLine WHERE InvoiceId = 1", 2),
)


def sample_database(dest: Path) -> Path:
    """Copy the bundled Chinook SQLite database to ``dest`` and return its path."""
    with as_file(files("replikit") / "data" / "chinook.sqlite") as src:
        shutil.copyfile(src, dest)
    return dest


def run_demo(directory: str | None = None, *, cdc: bool = True, out: TextIO) -> int:
    """Run the demo, narrating on ``out`` (the command line passes stdout).

    Args:
        directory: where to keep the two databases; by default a temporary folder that is
            removed when the demo ends, so the demo leaves nothing behind.
        cdc: also run the live CDC part (change the source, watch the target follow).
        out: the stream the narration goes to.

    Returns:
        The exit status: 0 when every table of the copy is identical to the source.
    """
    say = _Say(out)
    if directory is not None:
        where = Path(directory)
        where.mkdir(parents=True, exist_ok=True)
        return _demo(where, cdc, say)
    with tempfile.TemporaryDirectory(prefix="replikit-demo-") as scratch:
        say(f"working in {scratch} (removed at the end; --dir DIR keeps the databases)")
        return _demo(Path(scratch), cdc, say)


def _demo(where: Path, cdc: bool, say: _Say) -> int:
    source = sample_database(where / "chinook-source.db")
    target = where / "chinook-target.db"
    target.unlink(missing_ok=True)
    say(f"source: {source}  (Chinook sample database, bundled)")
    say(f"target: {target}\n")

    src = endpoint(f"sqlite:///{source}", cdc_setup=cdc)
    mode = "full-load-and-cdc" if cdc else "full-load"
    task = Task(src, f"sqlite:///{target}", migration_type=mode, settings=TaskSettings())
    plan = task.plan()
    say(f"plan: {plan.assessment.to_dict()['summary']}")
    if cdc:
        ok = _live(task, source, say)
    else:
        stats = task.run()
        say(stats)
        say(f"\ncopied {len(stats)} tables, {stats.total_rows:,} rows\n")
        ok = True
    results = compare(task.source, task.target, plan.assessment.tables)
    for r in results:
        say(f"  verify {r}")
    ok = ok and all(r.equal for r in results)
    for ep in (src, task.target):  # the task closes only the endpoints it made itself
        ep.close()
    say("\nverification:", "every table identical" if ok else "DIFFERENCES FOUND")
    return 0 if ok else 1


class _Say:
    """Writes the demo's narration to its stream (library code never prints by itself)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, *parts: object) -> None:
        self.out.write(" ".join(str(p) for p in parts) + "\n")
        self.out.flush()


def _live(task: Task, source: Path, say: _Say) -> bool:
    """Run the task in a thread, edit the source, wait for the edits to arrive, stop."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            task.run()
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    runner = threading.Thread(target=run, name="replikit-demo-task")
    runner.start()
    stats = task.statistics()
    if not _wait(lambda: task.phase == "cdc" or bool(errors), 120):
        say("the full load did not finish within 120 s")
    if errors:
        runner.join()
        raise errors[0]
    say(stats)
    say(f"\nfull load: {len(stats)} tables, {stats.total_rows:,} rows; now replicating\n")

    expected = 0
    with sqlite3.connect(source) as conn:
        for what, statement, n in _EDITS:
            conn.execute(statement)
            conn.commit()
            expected += n
            say(f"  source: {what}")
    arrived = _wait(lambda: _applied(stats) >= expected or bool(errors), 30)
    task.stop()
    runner.join()
    if errors:
        raise errors[0]
    say("")
    for t in stats:
        if t.inserts or t.updates or t.deletes:
            say(
                f"  target: {t.table}: {t.inserts} inserted, {t.updates} updated, "
                f"{t.deletes} deleted"
            )
    say(f"\n{stats.cdc}\n")
    if not arrived:
        say(f"only {_applied(stats)} of {expected} changes arrived within 30 s")
    return arrived


def _applied(stats: Statistics) -> int:
    return sum(t.inserts + t.updates + t.deletes for t in stats)


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False

"""``replikit demo``: the embedded default, no server needed.

Copies the bundled Chinook sample database (SQLite) into a new SQLite database with a full-load
task, prints the per-table summary, and verifies the copy table by table.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.resources import as_file, files
from pathlib import Path

from replikit.task import Task, TaskSettings
from replikit.validate import compare

__all__ = ["run_demo", "sample_database"]


def sample_database(dest: Path) -> Path:
    """Copy the bundled Chinook SQLite database to ``dest`` and return its path."""
    with as_file(files("replikit") / "data" / "chinook.sqlite") as src:
        shutil.copyfile(src, dest)
    return dest


def run_demo(directory: str | None = None) -> int:
    """Run the demo in ``directory`` (a new temp dir by default); return an exit status."""
    where = Path(directory or tempfile.mkdtemp(prefix="replikit-demo-"))
    where.mkdir(parents=True, exist_ok=True)
    source = sample_database(where / "chinook-source.db")
    target = where / "chinook-target.db"
    target.unlink(missing_ok=True)
    print(f"source: {source}  (Chinook sample database, bundled)")
    print(f"target: {target}\n")

    task = Task(f"sqlite:///{source}", f"sqlite:///{target}", settings=TaskSettings())
    plan = task.plan()
    print(f"plan: {plan.assessment.to_dict()['summary']}")
    stats = task.run()
    print(stats)
    print(f"\ncopied {len(stats)} tables, {stats.total_rows:,} rows\n")

    results = compare(task.source, task.target, plan.assessment.tables)
    for r in results:
        print(f"  verify {r}")
    ok = all(r.equal for r in results)
    print("\nverification:", "every table identical" if ok else "DIFFERENCES FOUND")
    return 0 if ok else 1

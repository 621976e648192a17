"""Reloads a table while its task replicates into files, in a child process that a failpoint
ends; see ``test_reload_handoff.py`` and ``test_files_control.py``.

Usage: python _reload_child.py KIND SRC_URL FOLDER [WHERE] (KIND: ``sqlite`` or ``pg``)

WHERE ``handoff`` (the default): the stream is behind the reload's snapshot and
``REPLIKIT_FAILPOINT=cdc.reloaded`` ends the process right after the handoff. WHERE ``ahead``:
the same with the stream past the snapshot (it caught up during the load), the process ended
by the failpoint ``REPLIKIT_FAILPOINT`` names in the handoff. WHERE ``load``:
the process ends during the reload's load, once ``STEP`` more source transactions were
committed and the stream applied the other tables' changes past them (the reloaded table's
are held).

Exit status: 77 the failpoint ended the process; 1 it was not reached.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from test_reload_handoff import STEP, counted, reload_across_the_snapshot, task_for
from test_task_cdc import Db, Workload, _wait_for

import replikit as rk
from live_task import running
from replikit._failpoints import FAILPOINT_EXIT, inject


def crash_during_the_load(task: rk.Task, work: Workload) -> None:
    """Reload ``ledger`` and end the process after its load's first batch, with ``STEP``
    transactions committed meanwhile: their ledger changes held, the others applied (the
    checkpoint is past them)."""

    def crash() -> None:
        work.run(STEP)
        _wait_for(lambda: counted(task) >= 2 * STEP)
        sys.stderr.write("crashing during the reload's load\n")
        sys.stderr.flush()
        os._exit(FAILPOINT_EXIT)

    with inject("full-load.batch", crash):
        task.reload("ledger", timeout=120)


def main(kind: str, url: str, folder: str, where: str = "handoff") -> int:
    source = Db(url, kind)
    task = task_for(source, Path(folder))
    work = Workload(source)
    with running(task):
        work.run(STEP)
        _wait_for(lambda: counted(task) >= STEP)
        if where == "load":
            crash_during_the_load(task, work)
        else:
            reload_across_the_snapshot(task, work, behind=where != "ahead", applied=STEP)
    print("the failpoint was not reached", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))

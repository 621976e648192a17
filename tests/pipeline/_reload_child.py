"""Reloads a table while its task replicates into files, its stream behind the reload's
snapshot, in a child process that a failpoint ends (``REPLIKIT_FAILPOINT=cdc.reloaded``: right
after the handoff); see ``test_reload_handoff.py``.

Usage: python _reload_child.py KIND SRC_URL FOLDER (KIND: ``sqlite`` or ``pg``)
Exit status: 77 the failpoint ended the process; 1 it was not reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

from test_reload_handoff import STEP, counted, reload_across_the_snapshot, task_for
from test_task_cdc import Db, Workload, _wait_for

from live_task import running


def main(kind: str, url: str, folder: str) -> int:
    source = Db(url, kind)
    task = task_for(source, Path(folder))
    work = Workload(source)
    with running(task):
        work.run(STEP)
        _wait_for(lambda: counted(task) >= STEP)
        reload_across_the_snapshot(task, work, behind=True, applied=STEP)
    print("the failpoint cdc.reloaded was not reached", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

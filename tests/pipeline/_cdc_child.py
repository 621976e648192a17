"""Runs one replication task in a child process, so tests can kill it (failpoints, SIGKILL).

Usage: python _cdc_child.py SRC_URL DST_URL MODE TASK_ID [STOP_WHEN_IDLE] [--batch-apply]
Exit status: 0 stopped normally; 77 a failpoint (REPLIKIT_FAILPOINT) ended the process.
"""

from __future__ import annotations

import sys

import replikit as rk


def main(argv: list[str]) -> int:
    batch = "--batch-apply" in argv
    args = [a for a in argv if a != "--batch-apply"]
    src_url, dst_url, mode, task_id = args[:4]
    idle = float(args[4]) if len(args) > 4 else 2.0
    source = rk.endpoint(src_url, cdc_setup=True) if src_url.startswith("sqlite") else src_url
    task = rk.Task(
        source,
        dst_url,
        migration_type=mode,
        settings=rk.TaskSettings(
            task_id=task_id,
            stop_when_idle=idle,
            batch_apply=batch,
            batch_changes=50,
            split_rows=1000,
            parallel_tables=2,
            progress=False,
        ),
    )
    task.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

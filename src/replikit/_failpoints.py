"""Failpoints: crash the process at a named point, for recovery tests.

``REPLIKIT_FAILPOINT="name"`` (or ``"name:N"``, the N-th time the point is reached) makes
:func:`failpoint` end the process with ``os._exit(FAILPOINT_EXIT)``: no ``finally`` blocks, no
flush, no commit -- as close to ``kill -9`` as a process can do to itself, at a chosen spot.
The variable is read at each call, so a test sets it in the child process's environment only.
Points used by replikit: ``full-load.batch`` (after a full-load batch was written),
``apply.before-commit`` (inside a target transaction, before COMMIT), ``apply.after-commit``
(after the target committed, before the source is acknowledged).
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["FAILPOINT_EXIT", "failpoint"]

FAILPOINT_EXIT = 77
_ENV = "REPLIKIT_FAILPOINT"
_counts: dict[str, int] = {}
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """End the process here if ``REPLIKIT_FAILPOINT`` names this point (see module docs)."""
    spec = os.environ.get(_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    with _lock:
        _counts[name] = count = _counts.get(name, 0) + 1
    if count >= (int(nth) if nth else 1):
        sys.stderr.write(f"replikit: failpoint {name} reached (hit {count}); exiting\n")
        sys.stderr.flush()
        os._exit(FAILPOINT_EXIT)

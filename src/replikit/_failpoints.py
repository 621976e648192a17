"""Failpoints: crash the process at a named point, for recovery tests.

``REPLIKIT_FAILPOINT="name"`` (or ``"name:N"``, the N-th time the point is reached) makes
:func:`failpoint` end the process with ``os._exit(FAILPOINT_EXIT)``: no ``finally`` blocks, no
flush, no commit -- as close to ``kill -9`` as a process can do to itself, at a chosen spot.
The variable is read at each call, so a test sets it in the child process's environment only.
Points used by replikit: ``full-load.batch`` (after a full-load batch was written),
``apply.before-commit`` (inside a target transaction, before COMMIT), ``apply.after-commit``
(after the target committed, before the source is acknowledged).

``"name:N:pause"`` does not exit: from the N-th time on, it writes the same line to stderr
("... paused") and waits until the caller's ``wake`` event is set (the full load's stop
request), so a test can send a signal at a known point without sleeping.
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


def failpoint(name: str, *, wake: threading.Event | None = None) -> None:
    """End the process here if ``REPLIKIT_FAILPOINT`` names this point (see module docs)."""
    spec = os.environ.get(_ENV)
    if not spec:
        return
    point, _, rest = spec.partition(":")
    if point != name:
        return
    nth, _, action = rest.partition(":")
    with _lock:
        _counts[name] = count = _counts.get(name, 0) + 1
    if action == "pause":
        if wake is not None and count >= (int(nth) if nth else 1):
            sys.stderr.write(f"replikit: failpoint {name} reached (hit {count}); paused\n")
            sys.stderr.flush()
            wake.wait()
        return
    if count >= (int(nth) if nth else 1):
        sys.stderr.write(f"replikit: failpoint {name} reached (hit {count}); exiting\n")
        sys.stderr.flush()
        os._exit(FAILPOINT_EXIT)

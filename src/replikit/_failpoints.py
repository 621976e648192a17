"""Failpoints: crash the process, or make a thread raise, at a named point, for recovery tests.

``REPLIKIT_FAILPOINT="name"`` (or ``"name:N"``, the N-th time the point is reached) makes
:func:`failpoint` end the process with ``os._exit(FAILPOINT_EXIT)``: no ``finally`` blocks, no
flush, no commit -- as close to ``kill -9`` as a process can do to itself, at a chosen spot.
``"name:N:raise"`` instead raises :class:`FailpointError` (not a :class:`replikit.Error`: it
stands for an unexpected fault such as a bug) once, in whichever thread reaches the point the
N-th time. Several points may be given, separated by commas. The variable is read at each
call, so a test sets it in the child process's environment only (or, in-process, with
``monkeypatch.setenv``: the hit counts restart whenever the variable's value changes).

``"name:N:pause"`` does not exit: from the N-th time on, it writes the same line to stderr
("... paused") and waits until the caller's ``wake`` event is set (the full load's stop
request), so a test can send a signal at a known point without sleeping.

In-process tests can also use :func:`inject`, which runs any callable at the N-th hit (raise,
wait for an event, write to the source...).

Points used by replikit: ``full-load.batch`` (after a full-load batch was written),
``full-load.chunk`` (after a chunk of a raw full-load copy was written),
``full-load.table-indexed`` (after the indexes and keys of a table whose rows are all loaded
were built, or refused, while other tables may still load: :mod:`replikit.pipeline.finishing`),
``apply.before-commit`` (inside a target transaction, before COMMIT), ``apply.after-commit``
(after the target committed, before the source is acknowledged), and one per CDC thread:
``cdc.read`` (the change-reader thread, after it read a source transaction and before it
hands it on), ``cdc.cache`` (the thread that moves changes into the cache during a full load,
after it took a transaction off the queue), ``cdc.apply`` (the applying thread, before a batch
of transactions is written), ``cdc.apply-cached`` (the same, before each table's cached
changes are applied after a full load, and before each chunk of a reloaded table's held
changes), ``cdc.reload-applied`` (the same, once a table reloaded during CDC had its held
changes applied, before it replicates again) and ``cdc.reloaded`` (the same, right after it
replicates again); ``files.data-file`` (the files target, once a load or change file is open
under its temporary name, before anything is written to it).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["FAILPOINT_EXIT", "FailpointError", "armed", "failpoint", "inject"]

FAILPOINT_EXIT = 77
_ENV = "REPLIKIT_FAILPOINT"
_lock = threading.Lock()
_counts: dict[str, int] = {}  # hits per point since the variable last changed
_spec_seen: str | None = None
_injected: dict[str, list[_Injection]] = {}


class FailpointError(RuntimeError):
    """Raised by a failpoint in raise mode (``name:N:raise``, or :func:`inject`)."""


class _Injection:
    __slots__ = ("action", "fired", "hits", "nth")

    def __init__(self, action: Callable[[], None], nth: int) -> None:
        self.action = action
        self.nth = nth
        self.hits = 0
        self.fired = False


def _raise(name: str) -> Callable[[], None]:
    def action() -> None:
        raise FailpointError(f"failpoint {name} reached")

    return action


@contextmanager
def inject(name: str, action: Callable[[], None] | None = None, *, nth: int = 1) -> Iterator[None]:
    """Run ``action`` (default: raise :class:`FailpointError`) at the ``nth`` hit of ``name``.

    Only while the ``with`` block runs; the action runs once, in the thread that reached the
    point, and whatever it raises is raised there.
    """
    entry = _Injection(action or _raise(name), nth)
    with _lock:
        _injected.setdefault(name, []).append(entry)
    try:
        yield
    finally:
        with _lock:
            _injected[name].remove(entry)
            if not _injected[name]:
                del _injected[name]


def armed() -> bool:
    """Whether any failpoint may fire now (a caller with many points in a row asks once)."""
    return bool(_injected) or bool(os.environ.get(_ENV))


def failpoint(name: str, *, wake: threading.Event | None = None) -> None:
    """Crash, raise or pause here if ``REPLIKIT_FAILPOINT`` or :func:`inject` names this
    point (see the module docs; ``wake`` ends a pause)."""
    if _injected:
        _run_injected(name)
    spec = os.environ.get(_ENV)
    if not spec:
        return
    for part in spec.split(","):
        point, _, rest = part.strip().partition(":")
        if point == name:
            nth, _, mode = rest.partition(":")
            _env_hit(spec, name, int(nth) if nth else 1, mode, wake)


def _run_injected(name: str) -> None:
    due: list[_Injection] = []
    with _lock:
        for entry in _injected.get(name, ()):
            entry.hits += 1
            if entry.hits == entry.nth and not entry.fired:
                entry.fired = True
                due.append(entry)
    for entry in due:
        entry.action()


def _env_hit(spec: str, name: str, nth: int, mode: str, wake: threading.Event | None) -> None:
    global _spec_seen
    with _lock:
        if spec != _spec_seen:
            _spec_seen = spec
            _counts.clear()
        _counts[name] = count = _counts.get(name, 0) + 1
    if mode == "pause":
        if wake is not None and count >= nth:
            sys.stderr.write(f"replikit: failpoint {name} reached (hit {count}); paused\n")
            sys.stderr.flush()
            wake.wait()
        return
    if mode == "raise":
        if count == nth:
            raise FailpointError(f"failpoint {name} reached (hit {count})")
        return
    if count >= nth:
        sys.stderr.write(f"replikit: failpoint {name} reached (hit {count}); exiting\n")
        sys.stderr.flush()
        os._exit(FAILPOINT_EXIT)

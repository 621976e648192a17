"""Waiting made visible: a statement that waits on other sessions says for whom, and gives up.

Some source steps cannot finish while other sessions work: PostgreSQL creates a logical slot
only once every transaction running at that moment has ended, MySQL's ``FLUSH TABLES WITH READ
LOCK`` waits for the statements using tables. A task would be silent for as long as that lasts.
:func:`watch` runs such a statement under a watcher thread that, every ``every`` seconds,
asks the server who the statement waits for (``probe``: pid, age, query of each blocker) and
logs it as a warning; after the wait limit (``TaskSettings.wait_timeout``, set for a task's
run with :func:`wait_limit`) it cancels the statement, and :func:`watch` raises
:class:`~replikit.ConfigError` naming the blockers and what to do.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from replikit.errors import ConfigError
from replikit.logs import in_context

__all__ = ["Blocker", "Waiting", "wait_limit", "watch"]

log = logging.getLogger(__name__)

_LIMIT: contextvars.ContextVar[tuple[float | None, float]] = contextvars.ContextVar(
    "replikit_wait_timeout", default=(None, 5.0)
)


@dataclass(frozen=True, slots=True)
class Blocker:
    """A session a statement waits for: its id, how long its transaction or statement has
    run (seconds), its current or last query, and what the server says of the session
    (``session``: application, user, database, state, where it has them)."""

    pid: int
    age: float
    query: str
    session: str = ""

    def __str__(self) -> str:
        query = " ".join(self.query.split())
        query = query if len(query) <= 120 else query[:119] + "…"
        about = f"{self.session}, " if self.session else ""
        return f"pid {self.pid} ({about}{self.age:.0f} s): {query or '(no query)'}"


@contextlib.contextmanager
def wait_limit(seconds: float | None, *, every: float = 5.0) -> Iterator[None]:
    """Statements run under :func:`watch` inside the block give up after ``seconds``
    (``None``: wait as long as it takes, still saying for whom every ``every`` seconds)."""
    token = _LIMIT.set((seconds, every))
    try:
        yield
    finally:
        _LIMIT.reset(token)


class Waiting:
    """The state of one watched wait (``gave_up`` is set once it was cancelled)."""

    def __init__(self) -> None:
        self.gave_up = False
        self.blockers: Sequence[Blocker] = ()
        self.waited = 0.0


@contextlib.contextmanager
def watch(
    what: str,
    probe: Callable[[], Sequence[Blocker]],
    cancel: Callable[[], object],
    *,
    fix: str = "",
) -> Iterator[Waiting]:
    """Run the block's statement under a watcher (see the module docs).

    ``what`` names the wait in messages ("creating replication slot replikit_t1 on db1"),
    ``probe`` lists the blockers (on a connection of its own), ``cancel`` interrupts the
    statement (from the watcher thread), ``fix`` says what the user can do.

    Raises:
        ConfigError: the wait limit passed; the statement was cancelled.
    """
    limit, every = _LIMIT.get()
    state = Waiting()
    done = threading.Event()
    started = time.monotonic()

    def run() -> None:
        while not done.wait(min(every, _left(limit, started)) if limit is not None else every):
            state.waited = time.monotonic() - started
            try:
                state.blockers = probe()
            except Exception as exc:  # a failed probe must not stop the wait it reports on
                log.debug("asking who %s waits for failed: %s", what, exc)
            who = "; ".join(str(b) for b in state.blockers) or "sessions the server did not name"
            if limit is not None and state.waited >= limit:
                log.error("%s: giving up after %.0f s waiting for %s", what, state.waited, who)
                state.gave_up = True
                with contextlib.suppress(Exception):
                    cancel()
                return
            log.warning("%s: waiting %.0f s for %s", what, state.waited, who)

    watcher = threading.Thread(target=in_context(run), name="replikit-wait", daemon=True)
    watcher.start()
    try:
        yield state
    except Exception as exc:
        if state.gave_up:
            raise _gave_up(what, state, limit, fix) from exc
        raise
    finally:
        done.set()
        watcher.join()
    if state.gave_up:  # cancelled just as it finished: treat as done
        log.info("%s: finished as it was being cancelled", what)


def _left(limit: float, started: float) -> float:
    return max(0.05, limit - (time.monotonic() - started))


def _gave_up(what: str, state: Waiting, limit: float | None, fix: str) -> ConfigError:
    who = "; ".join(str(b) for b in state.blockers) or "sessions the server did not name"
    return ConfigError(
        f"{what}: gave up after {state.waited:.0f} s (wait_timeout={limit:g}) waiting for "
        f"{who}. {fix} Or raise TaskSettings.wait_timeout (None waits as long as it takes)",
        setting="wait_timeout",
    )

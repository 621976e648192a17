"""Logging: every record of replikit goes through :mod:`logging` under ``replikit.*``.

Records carry the task and table they are about as the attributes ``task`` and ``table``
(``None`` when not about one): :func:`log_context` sets them for the code it wraps (a task's
run, its reader threads), and a record logged with ``extra={"table": ...}`` names its table.
Attach :class:`ContextFilter` to a handler to get both filled in and every URL's password
masked in the message (a second line of defence: replikit's own messages mask them already),
and :class:`JsonFormatter` for one JSON object per line::

    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logging.getLogger("replikit").addHandler(handler)

The ``replikit`` command does this with ``--log-format json``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from replikit.endpoints._url import mask_url

__all__ = ["ContextFilter", "JsonFormatter", "in_context", "log_context", "scrub"]

_TASK: contextvars.ContextVar[str | None] = contextvars.ContextVar("replikit_task", default=None)
_TABLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("replikit_table", default=None)
_running: dict[str, int] = {}  # task id -> runs in progress (threads without a context)
_lock = threading.Lock()
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
T = TypeVar("T")


@contextlib.contextmanager
def log_context(*, task: str | None = None, table: str | None = None) -> Iterator[None]:
    """Records logged inside the block (in this thread, and in threads started with
    :func:`in_context`) name ``task`` / ``table``."""
    tokens = []
    if task is not None:
        tokens.append((_TASK, _TASK.set(task)))
        with _lock:
            _running[task] = _running.get(task, 0) + 1
    if table is not None:
        tokens.append((_TABLE, _TABLE.set(table)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
        if task is not None:
            with _lock:
                _running[task] -= 1
                if not _running[task]:
                    del _running[task]


def in_context(target: Callable[..., T]) -> Callable[..., T]:
    """``target`` run in a copy of the caller's context (for ``threading.Thread(target=)``)."""
    ctx = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> T:
        return ctx.run(target, *args, **kwargs)

    return run


def scrub(text: str) -> str:
    """``text`` with the password of every URL in it masked."""
    return _URL.sub(lambda m: mask_url(m.group(0)), text) if "://" in text else text


class ContextFilter(logging.Filter):
    """Adds ``task`` and ``table`` to every record and masks URL passwords in its message.

    A record from a thread outside any :func:`log_context` names the task when exactly one
    runs in the process (the command line's case).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill in the context; never drops a record."""
        if getattr(record, "task", None) is None:
            task = _TASK.get()
            if task is None:
                with _lock:
                    only = list(_running)
                task = only[0] if len(only) == 1 else None
            record.task = task
        if getattr(record, "table", None) is None:
            record.table = _TABLE.get()
        message = record.getMessage()
        clean = scrub(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, ``task``, ``table`` and, with an exception, ``exception`` (its traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "task": getattr(record, "task", None),
            "table": getattr(record, "table", None),
        }
        if record.exc_info:
            out["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, default=str)

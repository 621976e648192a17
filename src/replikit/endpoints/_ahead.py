"""Reading ahead in a thread: a source's next items are fetched while the target writes the
ones before (the drivers release the GIL while they wait on the socket or decode, DuckDB and
pyarrow while they work), so the source read and the target write overlap."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any

from replikit.logs import in_context

__all__ = ["read_ahead"]

_DONE = object()


def read_ahead(items: Iterator[Any], depth: int) -> Generator[Any, None, None]:
    """``items``, produced by a thread at most ``depth`` items ahead of the consumer.

    The producer runs ``items`` to its end (its ``finally`` blocks in that thread, in the
    caller's logging context); an exception there is raised here. Closing this generator early
    stops the producer at its next item and waits for it, so ``items`` is closed before this
    returns.
    """
    box: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    break
                box.put((item, None))
        except BaseException as exc:  # handed to the consumer
            box.put((_DONE, exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        box.put((_DONE, None))

    thread = threading.Thread(target=in_context(produce), name="replikit-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = box.get()
            if item is _DONE:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                box.get(timeout=0.05)  # unblock a producer waiting to put
        thread.join()

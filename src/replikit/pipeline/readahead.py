"""The reader thread of a change stream and the queue it fills, bounded by count and bytes.

The reader runs ahead of the apply by at most ``maxsize`` transactions and about
``queue_bytes`` of their estimated size (a transaction larger than that passes on its own),
so a slow target stops the reader and memory stays bounded. Its errors travel through the
queue to the applying thread, which raises them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from replikit._failpoints import failpoint
from replikit.changes import Transaction
from replikit.logs import in_context
from replikit.pipeline.contracts import ChangeReader
from replikit.pipeline.spill import spilled, transaction_bytes
from replikit.positions import Position

__all__ = ["DEFAULT_QUEUE_BYTES", "END", "Stream", "discard"]

log = logging.getLogger("replikit.pipeline.cdc")

END = object()  # the reader's iterator ended
#: default bound on the estimated size of the transactions queued between reader and applier
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024


class _Queue:
    """A FIFO bounded by item count and by estimated bytes.

    An item larger than the byte bound still passes, alone (the queue must be empty).
    """

    def __init__(self, maxsize: int, maxbytes: int) -> None:
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self.bytes = 0
        self._items: deque[tuple[Any, int]] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def _room(self, size: int) -> bool:
        n = len(self._items)
        return n == 0 or (n < self.maxsize and self.bytes + size <= self.maxbytes)

    def put(self, item: Any, size: int, timeout: float) -> bool:
        """Append ``item`` (``size`` estimated bytes); ``False`` if no room within ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._room(size), timeout):
                return False
            self._items.append((item, size))
            self.bytes += size
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Any:
        """The first item, or ``None`` when there is none within ``timeout`` (0: no wait)."""
        with self._cond:
            if not self._items and (
                timeout <= 0 or not self._cond.wait_for(lambda: bool(self._items), timeout)
            ):
                return None
            item, size = self._items.popleft()
            self.bytes -= size
            self._cond.notify_all()
            return item

    def drain(self) -> list[Any]:
        """Take every item."""
        with self._cond:
            items = [item for item, _ in self._items]
            self._items.clear()
            self.bytes = 0
            self._cond.notify_all()
            return items


class Stream:
    """The reader thread and its bounded queue."""

    def __init__(
        self, reader: ChangeReader, start: Position | None, maxsize: int, maxbytes: int
    ) -> None:
        self.reader = reader
        self.queue = _Queue(maxsize, maxbytes)
        #: the last transaction read and when (``time.time()``): the status's source side
        self.last_read: tuple[Transaction, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=in_context(self._run), args=(start,), name="replikit-cdc-reader", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any, size: int = 0) -> bool:
        while not self._stop.is_set():
            if self.queue.put(item, size, timeout=0.2):
                return True
        return False

    def _run(self, start: Position | None) -> None:
        try:
            for tx in self.reader.transactions(start):
                failpoint("cdc.read")
                self.last_read = (tx, time.time())
                if not self._put(tx, transaction_bytes(tx)):
                    discard(tx)
                    return
            self._put(END)
        except BaseException as exc:  # handed to the applying thread, which re-raises it
            self._put(exc)

    def get(self, timeout: float) -> Any:
        """The next transaction, ``END``, an exception, or ``None`` after ``timeout``."""
        return self.queue.get(timeout)

    def get_nowait(self) -> Any:
        return self.queue.get(0)

    def close(self) -> None:
        self._stop.set()
        self.reader.close()
        for item in self.queue.drain():  # let the thread's last put through, free spill files
            discard(item)
        self._thread.join(timeout=10)
        if self._thread.is_alive():  # pragma: no cover - a reader that ignores close()
            log.warning("the CDC reader thread did not stop within 10 s")
        for item in self.queue.drain():
            discard(item)


def discard(item: Any) -> None:
    """Delete the spill file of a queued transaction that will not be applied."""
    if isinstance(item, Transaction):
        changes = spilled(item)
        if changes is not None:
            changes.close()

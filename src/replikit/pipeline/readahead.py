"""The reader thread of a change stream and the queue it fills, bounded by count and bytes.

A reader that hands out its transactions in lists
(:class:`~replikit.pipeline.contracts.SupportsTransactionBatches`) has each list queued at
once, under one lock round; the queue still holds, counts and bounds single transactions.

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
from collections.abc import Iterator
from typing import Any

from replikit._failpoints import failpoint
from replikit.changes import Transaction
from replikit.logs import in_context
from replikit.pipeline.contracts import ChangeReader, SupportsTransactionBatches
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

    def put_many(self, items: list[Any], sizes: list[int], timeout: float) -> bool:
        """Append ``items`` at once, when there is room for all (or the queue is empty);
        ``False`` if there was none within ``timeout``."""
        total = sum(sizes)
        n = len(items)

        def room() -> bool:
            held = len(self._items)
            return held == 0 or (held + n <= self.maxsize and self.bytes + total <= self.maxbytes)

        with self._cond:
            if not self._cond.wait_for(room, timeout):
                return False
            self._items.extend(zip(items, sizes, strict=True))
            self.bytes += total
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

    def _put_many(self, items: list[Transaction]) -> bool:
        sizes = [transaction_bytes(tx) for tx in items]
        while not self._stop.is_set():
            if self.queue.put_many(items, sizes, timeout=0.2):
                return True
        return False

    def _batches(self, start: Position | None) -> Iterator[list[Transaction]]:
        reader = self.reader
        if isinstance(reader, SupportsTransactionBatches):
            return reader.transaction_batches(start)
        return ([tx] for tx in reader.transactions(start))

    def _run(self, start: Position | None) -> None:
        try:
            for batch in self._batches(start):
                for i in range(len(batch)):  # once per transaction, as read one by one
                    try:
                        failpoint("cdc.read")
                    except BaseException:  # what was read before still goes on
                        queued = i > 0 and self._put_many(batch[:i])
                        for tx in batch[i if queued else 0 :]:
                            discard(tx)
                        raise
                self.last_read = (batch[-1], time.time())
                if not self._put_many(batch):
                    for tx in batch:
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

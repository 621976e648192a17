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

from replikit._failpoints import armed, failpoint
from replikit.changes import Transaction
from replikit.logs import in_context
from replikit.pipeline.choices import DEFAULT_QUEUE_BYTES
from replikit.pipeline.contracts import ChangeReader, SupportsTransactionBatches
from replikit.pipeline.spill import spilled, transaction_bytes
from replikit.positions import Position

__all__ = ["DEFAULT_QUEUE_BYTES", "END", "Stream", "discard"]

log = logging.getLogger("replikit.pipeline.cdc")

END = object()  # the reader's iterator ended
#: the applying side takes at most this many queued items (of at most this many estimated
#: bytes, and an eighth of the queue's bound) off the queue at once, under one lock round,
#: and hands them out one by one
TAKE_ITEMS = 256
TAKE_BYTES = 4 * 1024 * 1024


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

    def get_many(self, timeout: float, most: int, most_bytes: int) -> list[Any]:
        """:meth:`get` of up to ``most`` items of at most ``most_bytes`` in all (always at
        least one) at once; empty when there is none within ``timeout``."""
        with self._cond:
            items = self._items
            if not items and (
                timeout <= 0 or not self._cond.wait_for(lambda: bool(self._items), timeout)
            ):
                return []
            item, taken = items.popleft()
            out = [item]
            while items and len(out) < most and taken + items[0][1] <= most_bytes:
                item, size = items.popleft()
                out.append(item)
                taken += size
            self.bytes -= taken
            self._cond.notify_all()
            return out

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
        # items taken off the queue in one go, handed out by get() (the applying side's)
        self._taken: deque[Any] = deque()
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
                for i in range(len(batch) if armed() else 0):  # per transaction, as read
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
        """The next transaction, ``END``, an exception, or ``None`` after ``timeout``.

        One thread at a time: items come off the queue up to :data:`TAKE_ITEMS` at once
        (one lock round instead of one per transaction) and wait here for the next calls.
        """
        taken = self._taken
        if taken:
            return taken.popleft()
        # held here, out of the queue's count: a small part of its byte bound at most
        queue = self.queue
        items = queue.get_many(timeout, TAKE_ITEMS, min(TAKE_BYTES, queue.maxbytes // 8))
        if not items:
            return None
        if len(items) > 1:
            taken.extend(items)
            return taken.popleft()
        return items[0]

    def get_nowait(self) -> Any:
        return self.get(0)

    def __len__(self) -> int:
        """Items read and not handed out yet."""
        return len(self.queue) + len(self._taken)

    def close(self) -> None:
        self._stop.set()
        self.reader.close()
        for item in [*self._taken, *self.queue.drain()]:  # let the thread's last put
            discard(item)  # through, free spill files
        self._taken.clear()
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

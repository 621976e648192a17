"""The reader thread's queue: lists of transactions handed over at once, bounds kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replikit._failpoints import FailpointError, inject
from replikit.changes import Change, Op, Transaction
from replikit.pipeline.contracts import SupportsTransactionBatches
from replikit.pipeline.readahead import END, Stream, _Queue
from replikit.positions import Position, SqliteSeq
from replikit.schema.model import TableId

T = TableId(None, "t")


def _tx(n: int) -> Transaction:
    change = Change(Op.INSERT, T, {"id": n}, None, {"id": n}, SqliteSeq(n))
    return Transaction((change,), SqliteSeq(n), None, n, size_hint=100)


class ListReader:
    """A change reader handing out fixed lists (a real plug-in of the batch protocol)."""

    def __init__(self, lists: list[list[Transaction]]) -> None:
        self.lists = lists
        self.acked: Position | None = None

    def transactions(self, start: Position | None = None) -> Iterator[Transaction]:
        return (tx for batch in self.lists for tx in batch)

    def transaction_batches(self, start: Position | None = None) -> Iterator[list[Transaction]]:
        return iter(self.lists)

    def ack(self, position: Position) -> None:
        self.acked = position

    def close(self) -> None:
        pass


def _drain(stream: Stream) -> list[object]:
    out: list[object] = []
    while True:
        item = stream.get(5.0)
        out.append(item)
        if item is END or isinstance(item, BaseException) or item is None:
            return out


def test_put_many_waits_for_room_for_all_and_counts_each_item() -> None:
    q = _Queue(maxsize=3, maxbytes=1000)
    assert q.put_many(["a", "b"], [400, 400], timeout=0)
    assert not q.put_many(["c", "d"], [1, 1], timeout=0.05)  # 4 items > maxsize
    assert not q.put_many(["c"], [300], timeout=0.05)  # 1100 bytes > maxbytes
    assert len(q) == 2 and q.bytes == 800
    assert q.get(0) == "a" and q.bytes == 400
    assert q.put_many(["c"], [300], timeout=0)
    assert [q.get(0), q.get(0), q.get(0)] == ["b", "c", None]
    assert q.put_many(["big", "bigger"], [5000, 5000], timeout=0)  # an empty queue takes any
    assert len(q) == 2


def test_a_batch_reader_fills_the_queue_transaction_by_transaction() -> None:
    lists = [[_tx(1), _tx(2), _tx(3)], [_tx(4)]]
    reader = ListReader(lists)
    assert isinstance(reader, SupportsTransactionBatches)
    stream = Stream(reader, None, maxsize=100, maxbytes=10**6)
    try:
        items = _drain(stream)
    finally:
        stream.close()
    assert items == [*lists[0], *lists[1], END]


@pytest.mark.parametrize("nth", [1, 3, 4])
def test_the_read_failpoint_fires_per_transaction_and_what_came_before_is_queued(nth: int) -> None:
    lists = [[_tx(1), _tx(2), _tx(3)], [_tx(4)]]
    with inject("cdc.read", nth=nth):
        stream = Stream(ListReader(lists), None, maxsize=100, maxbytes=10**6)
        try:
            items = _drain(stream)
        finally:
            stream.close()
    flat = [tx for batch in lists for tx in batch]
    assert items[:-1] == flat[: nth - 1]  # in order, up to the failing one, nothing after
    assert isinstance(items[-1], FailpointError)

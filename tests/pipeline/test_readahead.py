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


def test_get_many_takes_items_within_count_and_bytes() -> None:
    q = _Queue(maxsize=10, maxbytes=10_000)
    assert q.put_many(["a", "b", "c", "d"], [100, 100, 300, 100], timeout=0)
    assert q.get_many(0, 2, 10_000) == ["a", "b"] and q.bytes == 400
    assert q.get_many(0, 10, 200) == ["c"]  # always one, even past the bytes
    assert q.get_many(0, 10, 200) == ["d"] and q.bytes == 0 and len(q) == 0
    assert q.get_many(0, 10, 200) == []


def test_items_taken_at_once_come_out_in_order_and_closing_discards_them() -> None:
    lists = [[_tx(i) for i in range(1, 300)]]
    stream = Stream(ListReader(lists), None, maxsize=1000, maxbytes=10**6)
    try:
        first = stream.get(5.0)
        assert first == lists[0][0]
        assert len(stream) >= 1  # the rest: queued, or taken and held for the next calls
        rest = _drain(stream)
    finally:
        stream.close()
    assert [first, *rest] == [*lists[0], END]
    assert len(stream) == 0


def test_a_running_stream_freezes_the_heap_and_unfreezes_it_after() -> None:
    import gc

    from replikit.pipeline.cdc import _heap_frozen

    assert gc.get_freeze_count() == 0 and gc.isenabled()
    with _heap_frozen():
        frozen = gc.get_freeze_count()
        assert not gc.isenabled()  # collections on the stream's schedule, not by counts
        with _heap_frozen():  # nested / concurrent runs share it
            assert gc.get_freeze_count() >= frozen > 0
        assert gc.get_freeze_count() > 0 and not gc.isenabled()
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    gc.freeze()  # the program's own freeze is left alone
    try:
        before = gc.get_freeze_count()
        with _heap_frozen():
            assert gc.get_freeze_count() == before
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()


def test_a_running_stream_collects_cyclic_garbage_on_its_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc
    import weakref

    from replikit.pipeline import cdc

    class Node:
        pass

    def cycle() -> weakref.ref[Node]:
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        return weakref.ref(node)

    with cdc._heap_frozen():
        monkeypatch.setattr(cdc, "COLLECT_SECONDS", 3600.0)
        ref = cycle()
        cdc._collect_if_due()
        assert ref() is not None  # not due: the cycle waits (no count-triggered collection)
        monkeypatch.setattr(cdc, "COLLECT_SECONDS", 0.0)
        cdc._collect_if_due()
        assert ref() is None  # due: collected
    gc.disable()  # the program's own setting is left alone, and nothing is collected for it
    try:
        with cdc._heap_frozen():
            ref = cycle()
            cdc._collect_if_due()
            assert ref() is not None and not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.collect()

"""Large source transactions in bounded memory (#8 item 15), without a source server.

A scripted change reader (a real ``ChangeReader``: it yields transactions from a list, as a
log would) feeds a :class:`~replikit.pipeline.cdc.Replicator` that applies into a real SQLite
target. Transactions past the spill threshold go through
:class:`~replikit.pipeline.spill.TransactionBuffer` exactly as the PostgreSQL and binlog
readers build them. Checked: the target equals the model of the source whatever the
transaction sizes, the queue between reader and applier is bounded by bytes, the peak of
allocated memory stays bounded while a large transaction replicates, a failed apply in
the middle of a spilled transaction leaves the checkpoint before it, and every spill file is
deleted.
"""

from __future__ import annotations

import sqlite3
import threading
import tracemalloc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replikit.changes import Change, Op, Transaction
from replikit.endpoints.sqlite import SqliteEndpoint
from replikit.errors import DataError, Error
from replikit.pipeline import apply_support
from replikit.pipeline.cdc import Replicator
from replikit.pipeline.contracts import Batch, Checkpoint
from replikit.pipeline.policy import ErrorPolicy
from replikit.pipeline.spill import (
    RECORD_ROWS,
    ChangeBuffer,
    SpilledChanges,
    TransactionBuffer,
    spilled,
    transaction_bytes,
)
from replikit.positions import Position, SqliteSeq
from replikit.schema.convert import ColumnPlan, TablePlan, plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

SOURCE = TableSchema(
    id=TableId("main", "acct"),
    columns=(
        Column("id", Type.int_(64, native="bigint"), nullable=False),
        Column("name", Type.text(native="text"), nullable=False),
        Column("qty", Type.int_(64, native="bigint")),
    ),
    primary_key=("id",),
)
TID = SOURCE.id
TS = datetime(2024, 1, 1, tzinfo=UTC)
Row = tuple[Op, TableId, Mapping[str, Any], Mapping[str, Any] | None, Mapping[str, Any] | None]


# -- the scripted source ------------------------------------------------------------------------
class ScriptedReader:
    """A ``ChangeReader`` over transactions made on demand (``make(i)`` for i in range(n))."""

    def __init__(self, txs: Sequence[Transaction] | None = None) -> None:
        self.txs = list(txs or [])
        self.yielded: list[Transaction] = []
        self.acked: Position | None = None
        self._closed = threading.Event()

    def transactions(self, start: Position | None = None) -> Iterator[Transaction]:
        for tx in self.source():
            if start is not None and not start < tx.position:
                continue
            if self._closed.is_set():
                return
            self.yielded.append(tx)
            yield tx

    def source(self) -> Iterable[Transaction]:
        return self.txs

    def ack(self, position: Position) -> None:
        self.acked = position

    def close(self) -> None:
        self._closed.set()


def _tx(seq: int, rows: Sequence[Row], spill_bytes: int) -> Transaction:
    """A transaction built as the PostgreSQL and binlog readers build theirs."""
    buffer = TransactionBuffer(spill_bytes)
    for row in rows:
        buffer.rows.append(row)
        buffer.check()
    pos = SqliteSeq(seq)
    return Transaction(buffer.finish(pos, TS, seq), pos, TS, seq)


def _upsert(i: int, name: str, qty: int | None) -> Row:
    after = {"id": i, "name": name, "qty": qty}
    return (Op.INSERT, TID, {"id": i}, None, after)


def _update(i: int, name: str, qty: int | None) -> Row:
    after = {"id": i, "name": name, "qty": qty}
    return (Op.UPDATE, TID, {"id": i}, None, after)


def _delete(i: int) -> Row:
    return (Op.DELETE, TID, {"id": i}, {"id": i}, None)


# -- the real target ----------------------------------------------------------------------------
def _plan() -> TablePlan:
    target = SqliteEndpoint("sqlite://")
    return plan_table(
        SOURCE, source_dialect="postgresql", target=target.dialect, target_id=TableId(None, "acct")
    )


def _target(path: Path, plan: TablePlan, rows: Sequence[tuple[int, str, int | None]] = ()) -> str:
    url = f"sqlite:///{path}"
    ep = SqliteEndpoint(url)
    try:
        writer = ep.writer()
        writer.prepare([plan], "drop-and-create")
        writer.load(plan, [Batch(TID, ("id", "name", "qty"), list(rows))])
        writer.finish([plan])
    finally:
        ep.close()
    return url


def _contents(path: Path) -> dict[int, tuple[str, int | None]]:
    with sqlite3.connect(path) as conn:
        return {i: (n, q) for i, n, q in conn.execute("SELECT id, name, qty FROM acct")}


def _replicate(
    url: str,
    plan: TablePlan,
    reader: ScriptedReader,
    *,
    batch: bool = False,
    batch_changes: int = 10_000,
    queue_bytes: int = 64 << 20,
    policy: ErrorPolicy | None = None,
) -> Checkpoint:
    ep = SqliteEndpoint(url)
    writer = ep.change_writer()
    try:
        replicator = Replicator(
            reader,
            writer,
            [plan],
            task="t",
            batch_apply=batch,
            batch_changes=batch_changes,
            queue_bytes=queue_bytes,
            policy=policy,
        )
        try:
            return replicator.run(Checkpoint("t", start=SqliteSeq(0)))
        finally:
            replicator.close()
    finally:
        writer.close()
        ep.close()


def _stored_checkpoint(url: str) -> Checkpoint | None:
    ep = SqliteEndpoint(url)
    try:
        writer = ep.change_writer()
        try:
            return writer.read_checkpoint("t")
        finally:
            writer.close()
    finally:
        ep.close()


# -- TransactionBuffer ----------------------------------------------------------------------------
def test_a_small_transaction_stays_a_tuple_of_stamped_changes() -> None:
    tx = _tx(7, [_upsert(1, "a", 1), _delete(2)], spill_bytes=1 << 20)
    assert isinstance(tx.changes, tuple)
    assert spilled(tx) is None
    assert [c.op for c in tx.changes] == [Op.INSERT, Op.DELETE]
    assert all(c.position == SqliteSeq(7) and c.txid == 7 for c in tx.changes)


def test_a_large_transaction_spills_and_reads_back_as_often_as_asked() -> None:
    rows = [_upsert(i, "n" * (i % 50), i) for i in range(5 * RECORD_ROWS + 3)]
    tx = _tx(3, rows, spill_bytes=10_000)
    changes = spilled(tx)
    assert changes is not None
    assert len(tx) == len(rows) and changes.tables == {TID}
    assert changes.counts == {(TID, Op.INSERT): len(rows)}
    expected = [Change(*row, SqliteSeq(3), TS, 3) for row in rows]
    assert list(changes) == expected
    assert list(changes) == expected  # a second pass (a writer that retries)
    assert [len(b) for b in changes.batches(2000)] == [2000, 2000, 1123]
    assert transaction_bytes(tx) < 4096  # in the queue it weighs its handle, not its rows
    changes.close()
    assert changes.closed
    with pytest.raises(Error, match="closed"):
        list(changes)


def test_reset_forgets_a_spilled_transaction_read_halfway() -> None:
    buffer = TransactionBuffer(0)
    buffer.rows.append(_upsert(1, "a", 1))
    buffer.check()
    assert buffer.spilling and len(buffer) == 1
    buffer.reset()
    assert not buffer.spilling and len(buffer) == 0
    buffer.rows.append(_upsert(2, "b", 2))
    tx = buffer.finish(SqliteSeq(1), None, None)
    assert isinstance(tx, tuple) and [c.key for c in tx] == [{"id": 2}]


def test_spill_memory_stays_bounded_while_rows_arrive() -> None:
    """The buffer holds at most about ``spill_bytes`` of rows whatever the count."""
    buffer = TransactionBuffer(1 << 20)
    tracemalloc.start()
    try:
        for i in range(100_000):
            buffer.rows.append(_update(i, f"name {i} " + "x" * 40, i))
            buffer.check()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    changes = buffer.finish(SqliteSeq(1), TS, 1)
    assert isinstance(changes, SpilledChanges) and len(changes) == 100_000
    changes.close()
    assert peak < 12 << 20, f"peak {peak / 2**20:.1f} MiB for 100,000 rows"  # unbounded: ~90


def test_a_change_buffer_keeps_each_changes_own_position_in_memory_and_on_disk() -> None:
    """The cache's changes of many source transactions, applied as one: each keeps its own
    position, commit time and transaction id, also once spilled."""
    changes = [Change(*_upsert(i, "n" * (i % 50), i), SqliteSeq(i), TS, i) for i in range(3000)]
    small = ChangeBuffer(1 << 30)
    small.add(changes[:10])
    kept = small.finish(SqliteSeq(99), TS, 99)
    assert isinstance(kept, tuple) and list(kept) == changes[:10]
    buffer = ChangeBuffer(0)
    for i in range(0, len(changes), 700):
        buffer.add(changes[i : i + 700])
    assert len(buffer) == len(changes)
    out = buffer.finish(SqliteSeq(2999), TS, 2999)
    tx = Transaction(out, SqliteSeq(2999), TS, 2999)
    on_disk = spilled(tx)
    assert on_disk is not None and on_disk.tables == {TID}
    assert on_disk.counts == {(TID, Op.INSERT): len(changes)}
    assert list(on_disk) == changes
    assert [c for b in on_disk.batches(1000) for c in b] == changes  # a second pass
    on_disk.close()
    with pytest.raises(Error, match="closed"):
        list(on_disk)


# -- pieces ---------------------------------------------------------------------------------------
def test_pieces_cut_spilled_transactions_and_keep_the_others_whole() -> None:
    small = _tx(1, [_upsert(1, "a", 1)], 1 << 20)
    big = _tx(2, [_upsert(i, "b", i) for i in range(25)], 0)
    assert list(apply_support.pieces([small, small])) == [[small, small]]
    got = list(apply_support.pieces([small, big, small], size=10))
    assert [[len(tx) for tx in piece] for piece in got] == [[1], [10], [10], [5], [1]]
    assert all(tx.position == SqliteSeq(2) for piece in got[1:4] for tx in piece)
    spilled_big = spilled(big)
    assert spilled_big is not None
    spilled_big.close()


# -- target equals source -------------------------------------------------------------------------
_OPS = st.lists(
    st.tuples(st.sampled_from("iiud"), st.integers(0, 60), st.integers(0, 9)),
    min_size=0,
    max_size=120,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    txs=st.lists(_OPS, min_size=1, max_size=5),
    spill_rows=st.integers(0, 80),
    piece=st.integers(1, 40),
    batch=st.booleans(),
    batch_changes=st.integers(1, 200),
)
def test_random_transaction_sizes_around_the_threshold_target_equals_source(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    txs: list[list[tuple[str, int, int]]],
    spill_rows: int,
    piece: int,
    batch: bool,
    batch_changes: int,
) -> None:
    monkeypatch.setattr(apply_support, "PIECE_CHANGES", piece)
    plan = _plan()
    initial = [(i, f"r{i}", i) for i in range(0, 60, 3)]
    model: dict[int, tuple[str, int | None]] = {i: (n, q) for i, n, q in initial}
    row_bytes = 700  # about what an image of this table is estimated at
    script = []
    for seq, ops in enumerate(txs, 1):
        rows: list[Row] = []
        for op, key, qty in ops:
            name = f"t{seq}-{key}-{qty}"
            if op == "d":
                rows.append(_delete(key))
                model.pop(key, None)
            elif op == "u" and key in model:
                rows.append(_update(key, name, qty))
                model[key] = (name, qty)
            else:
                rows.append(_upsert(key, name, qty))
                model[key] = (name, qty)
        script.append(_tx(seq, rows, spill_rows * row_bytes))
    path = tmp_path_factory.mktemp("spill") / "t.db"
    url = _target(path, plan, initial)
    reader = ScriptedReader(script)
    checkpoint = _replicate(url, plan, reader, batch=batch, batch_changes=batch_changes)
    assert _contents(path) == model
    assert checkpoint.position == SqliteSeq(len(txs)) == _stored_checkpoint(url).position  # type: ignore[union-attr]
    assert all(c.closed for tx in script if (c := spilled(tx)) is not None)


def test_failed_apply_mid_spilled_transaction_keeps_the_checkpoint_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_support, "PIECE_CHANGES", 10)
    plan = _plan()
    url = _target(tmp_path / "t.db", plan, [(1, "one", 1)])
    first = _tx(1, [_update(1, "uno", 11)], 1 << 20)
    rows = [_upsert(i, f"n{i}", i) for i in range(100, 150)]
    rows.append((Op.INSERT, TID, {"id": 999}, None, {"id": 999, "name": None, "qty": 0}))
    big = _tx(2, rows, 0)  # the last piece breaks NOT NULL
    assert spilled(big) is not None
    reader = ScriptedReader([first, big])
    with pytest.raises(DataError, match="acct"):  # stop-task: the error ends the stream
        _replicate(url, plan, reader, batch_changes=1, policy=ErrorPolicy(data_errors="stop-task"))
    assert _contents(tmp_path / "t.db") == {1: ("uno", 11)}  # nothing of the spilled one
    stored = _stored_checkpoint(url)
    assert stored is not None and stored.position == SqliteSeq(1)
    assert spilled(big).closed  # type: ignore[union-attr]


# -- bounded memory between reader and applier ---------------------------------------------------
class _SlowWriter:
    """A ChangeWriter double that records what it applied; its first apply waits a little."""

    def __init__(self, reader: ScriptedReader, total: int) -> None:
        self.reader = reader
        self.total = total
        self.applied = 0
        self.read_ahead = 0
        self.all_read = threading.Event()

    def read_checkpoint(self, task: str) -> Checkpoint | None:
        return None

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        pass

    def apply(
        self,
        plans: Mapping[TableId, TablePlan],
        transactions: Sequence[Transaction],
        *,
        checkpoint: Checkpoint | None,
        batch: bool,
        on_conflicts: object = None,
    ) -> None:
        if self.applied == 0:  # give the reader time to run ahead as far as it may
            self.all_read.wait(1.0)
        self.read_ahead = max(self.read_ahead, len(self.reader.yielded) - self.applied)
        self.applied += len(transactions)

    def add_columns(self, plan: TablePlan, columns: Sequence[ColumnPlan]) -> None:
        pass

    def drop_control(self, task: str) -> None:
        pass

    def close(self) -> None:
        pass


def test_queue_is_bounded_by_bytes_not_only_by_count() -> None:
    """100 transactions of ~100 kB with a 1 MB queue: the reader runs at most ~10 ahead."""
    total = 100
    big = "x" * 100_000

    class Reader(ScriptedReader):
        def source(self) -> Iterable[Transaction]:
            for i in range(1, total + 1):
                row = _upsert(i, big, i)
                yield Transaction((Change(*row, SqliteSeq(i), TS, i),), SqliteSeq(i), TS, i)
            writer.all_read.set()

    reader = Reader()
    writer = _SlowWriter(reader, total)
    replicator = Replicator(
        reader, writer, [_plan()], task="t", batch_changes=1, queue_bytes=1_000_000
    )
    try:
        replicator.run(Checkpoint("t", start=SqliteSeq(0)))
    finally:
        replicator.close()
    assert writer.applied == total
    # 9 queued (1 MB / 100 kB), one waiting to be put, one being applied
    assert writer.read_ahead <= 12, f"the reader ran {writer.read_ahead} transactions ahead"


def test_a_transaction_larger_than_the_queue_bound_still_passes() -> None:
    big = "x" * 50_000
    txs = [
        Transaction((Change(*_upsert(i, big, i), SqliteSeq(i), TS, i),), SqliteSeq(i), TS, i)
        for i in (1, 2, 3)
    ]
    reader = ScriptedReader(txs)
    writer = _SlowWriter(reader, 3)
    writer.all_read.set()
    replicator = Replicator(reader, writer, [_plan()], task="t", queue_bytes=1)
    try:
        checkpoint = replicator.run(Checkpoint("t", start=SqliteSeq(0)))
    finally:
        replicator.close()
    assert writer.applied == 3 and checkpoint.position == SqliteSeq(3)


# -- bounded memory end to end --------------------------------------------------------------------
def test_large_transaction_replicates_in_bounded_memory(tmp_path: Path) -> None:
    """One 60,000-row transaction, made row by row as a reader makes it, applied into SQLite:
    the peak of allocated memory stays far below what the rows take (~70 MB)."""
    n = 60_000
    plan = _plan()
    url = _target(tmp_path / "t.db", plan)

    class Reader(ScriptedReader):
        def source(self) -> Iterable[Transaction]:
            buffer = TransactionBuffer(1 << 20)
            for i in range(n):
                buffer.rows.append(_upsert(i, f"row {i} " + "y" * 60, i))
                buffer.check()
            pos = SqliteSeq(1)
            yield Transaction(buffer.finish(pos, TS, 1), pos, TS, 1)

    reader = Reader()
    tracemalloc.start()
    try:
        checkpoint = _replicate(url, plan, reader, batch=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert checkpoint.position == SqliteSeq(1)
    with sqlite3.connect(tmp_path / "t.db") as conn:
        assert conn.execute("SELECT count(*), sum(qty) FROM acct").fetchone() == (
            n,
            n * (n - 1) // 2,
        )
    assert spilled(reader.yielded[0]).closed  # type: ignore[union-attr]
    assert peak < 32 << 20, f"peak {peak / 2**20:.0f} MiB"  # unbounded: ~70 MiB

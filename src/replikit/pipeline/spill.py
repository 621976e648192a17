"""Large source transactions on disk: memory stays bounded whatever a transaction's size.

A CDC reader collects the rows of the source transaction it is reading in a
:class:`TransactionBuffer`. While their estimated size stays under ``spill_bytes`` they stay in
memory and :meth:`~TransactionBuffer.finish` returns them as a tuple of
:class:`~replikit.changes.Change` (the common case, no copy). Past it, the buffer writes them,
in records of at most :data:`RECORD_ROWS` rows, to an anonymous temporary file (the change
cache's record encoding, :mod:`replikit.pipeline.segments`), and ``finish`` returns a
:class:`SpilledChanges`: a collection that knows its length and tables and reads its changes
back lazily, as often as it is iterated. A :class:`~replikit.changes.Transaction` holds either.

The file has no name (``tempfile.TemporaryFile``): it goes away when it is closed
(:meth:`SpilledChanges.close`, called by the replicator once the transaction is applied, or by
garbage collection when a transaction is dropped) and, on a crash, with the process, so no
resume path has files to clean up.

Estimates: sizes are rough, sampled estimates of the Python objects' memory
(:func:`estimate_size`), enough to bound memory, not to account for it exactly.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import IO, Any, TypeVar

from replikit.changes import Change, Op, TextImage, Transaction, slots_constructor
from replikit.errors import ConfigError, Error
from replikit.pipeline import segments
from replikit.pipeline.choices import DEFAULT_SPILL_BYTES
from replikit.positions import Position
from replikit.schema.model import TableId

__all__ = [
    "DEFAULT_SPILL_BYTES",
    "RECORD_ROWS",
    "ChangeBuffer",
    "Row",
    "SpilledChanges",
    "StampedChanges",
    "TransactionBuffer",
    "estimate_size",
    "spilled",
    "transaction_bytes",
]

#: most rows in one record of a spill file (also the longest run between size checks)
RECORD_ROWS = 1024
#: what a reader collects per row change: op, table, key, before image, after image
Row = tuple[Op, TableId, Mapping[str, Any], Mapping[str, Any] | None, Mapping[str, Any] | None]

_CHANGE_BYTES = 200  # a Change object and its fields, without the images
_SAMPLES = 8  # rows sampled per size estimate


_SIZED = (str, bytes, bytearray)


#: ``Change(op, table, key, before, after, position, commit_ts, txid)`` at half the cost
_new_change = slots_constructor(Change)


def _image_bytes(image: Mapping[str, Any] | None) -> int:
    if not image:
        return 0
    if image.__class__ is TextImage:
        return 64 + 72 * len(image) + image.text_bytes()
    size = 64 + 72 * len(image)
    for value in image.values():
        if isinstance(value, _SIZED):
            size += len(value)
    return size


def estimate_size(change: Change) -> int:
    """A rough estimate, in bytes, of the memory ``change`` holds (object overhead included)."""
    return (
        _CHANGE_BYTES
        + _image_bytes(change.key)
        + _image_bytes(change.before)
        + _image_bytes(change.after)
    )


def _row_bytes(row: Row) -> int:
    return _CHANGE_BYTES + _image_bytes(row[2]) + _image_bytes(row[3]) + _image_bytes(row[4])


def _sampled(items: Sequence[Any], size: Callable[[Any], int]) -> int:
    """Estimated total size of ``items`` from at most ``_SAMPLES`` evenly spread ones."""
    n = len(items)
    if n == 0:
        return 0
    step = max(1, n // _SAMPLES)
    picked = items[::step]
    return sum(size(i) for i in picked) * n // len(picked)


def transaction_bytes(tx: Transaction) -> int:
    """Estimated memory held by ``tx`` (a spilled transaction holds little: its file handle);
    the reader's own estimate (``tx.size_hint``) when it made one."""
    if tx.size_hint is not None:
        return tx.size_hint
    changes = tx.changes
    if changes.__class__ is not tuple and isinstance(changes, SpilledChanges):
        return 1024 + 64 * len(changes.tables)
    if changes.__class__ is tuple or isinstance(changes, Sequence):
        return _CHANGE_BYTES + _sampled(changes, estimate_size)
    return _CHANGE_BYTES + sum(estimate_size(c) for c in changes)


def spilled(tx: Transaction) -> SpilledChanges | None:
    """``tx``'s changes if they are on disk, else ``None``."""
    changes = tx.changes
    if changes.__class__ is tuple:  # the common case, without the ABC's isinstance
        return None
    return changes if isinstance(changes, SpilledChanges) else None


class SpilledChanges(Collection[Change]):
    """The changes of one source transaction, read back from a spill file on each iteration.

    Every change is stamped with the transaction's ``position``, ``commit_ts`` and ``txid``.
    Iterate it as often as needed (a writer that retries does); :meth:`close` frees the file,
    after which iterating raises :class:`~replikit.Error`. ``tables`` are the tables its
    changes touch, ``counts`` the number of changes per ``(table, op)``. Not thread-safe: one
    thread at a time.
    """

    def __init__(
        self,
        file: IO[bytes],
        count: int,
        tables: frozenset[TableId],
        *,
        counts: Mapping[tuple[TableId, Op], int] | None = None,
        position: Position | None,
        commit_ts: datetime | None,
        txid: int | str | None,
    ) -> None:
        self._file: IO[bytes] | None = file
        self._end = file.seek(0, os.SEEK_END)
        self._count = count
        self.tables = tables
        self.counts = dict(counts or {})
        self.position = position
        self.commit_ts = commit_ts
        self.txid = txid

    @property
    def closed(self) -> bool:
        """Whether the file was freed."""
        return self._file is None

    @property
    def file_bytes(self) -> int:
        """The size of the spill file."""
        return self._end

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        state = "closed" if self._file is None else f"{self._end} bytes on disk"
        return f"SpilledChanges({self._count} changes, {state})"

    def __contains__(self, item: object) -> bool:
        return any(change == item for change in self)

    def __iter__(self) -> Iterator[Change]:
        return self._changes()

    def batches(self, size: int) -> Iterator[tuple[Change, ...]]:
        """The changes in tuples of at most ``size`` (one record is read at a time)."""
        out: list[Change] = []
        for change in self:
            out.append(change)
            if len(out) >= size:
                yield tuple(out)
                out = []
        if out:
            yield tuple(out)

    def _changes(self) -> Iterator[Change]:
        pos, ts, txid = self.position, self.commit_ts, self.txid
        offset = 0
        while offset < self._end:
            file = self._file
            if file is None:
                raise Error(f"{self!r} was read after it was closed (its transaction was done)")
            rows, offset = segments.read_at(file.fileno(), offset)
            for op, table, key, before, after in rows:
                yield Change(op, table, key, before, after, pos, ts, txid)

    def close(self) -> None:
        """Delete the spill file (idempotent)."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def __reduce__(self) -> Any:
        raise TypeError("spilled changes live in a local temporary file and cannot be pickled")


_S = TypeVar("_S", bound="SpilledChanges")


def _row_kind(row: Row) -> tuple[TableId, Op]:
    return row[1], row[0]


def _change_kind(change: Change) -> tuple[TableId, Op]:
    return change.table, change.op


class _Spill:
    """What :class:`TransactionBuffer` and :class:`ChangeBuffer` share: the limit, the
    temporary file, and how many changes of each kind went into it."""

    def __init__(self, spill_bytes: int, directory: str | None) -> None:
        if spill_bytes < 0:
            raise ConfigError(f"spill_bytes must be >= 0, not {spill_bytes}")
        self.spill_bytes = spill_bytes
        self.directory = directory
        self._file: IO[bytes] | None = None
        self._count = 0  # changes in the file
        self._counts: Counter[tuple[TableId, Op]] | None = None  # the same, by kind

    def _open(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="replikit-tx-", dir=self.directory)  # noqa: SIM115 - owned by the spilled changes

    def _write(self) -> None:  # each buffer's own: what it holds in memory, to the file
        raise NotImplementedError

    def reset(self) -> None:  # each buffer's own: forget everything, delete the file
        raise NotImplementedError

    def _spilled(
        self,
        cls: type[_S],
        position: Position | None,
        commit_ts: datetime | None,
        txid: int | str | None,
    ) -> _S:
        """The file, with what is still in memory written to it, as ``cls``'s changes; the
        buffer is then empty (the file is theirs now)."""
        self._write()
        file, self._file = self._file, None
        assert file is not None
        file.flush()
        counts = self._counts or Counter()
        out = cls(
            file,
            self._count,
            frozenset(t for t, _ in counts),
            counts=counts,
            position=position,
            commit_ts=commit_ts,
            txid=txid,
        )
        self.reset()
        return out

    def _append(self, items: Sequence[Any], kind: Callable[[Any], tuple[TableId, Op]]) -> None:
        """Write ``items`` (rows or changes) to the file in records; ``kind``: (table, op)."""
        file = self._file
        assert file is not None
        if self._counts is None:
            self._counts = Counter()
        for i in range(0, len(items), RECORD_ROWS):
            part = items[i : i + RECORD_ROWS]
            self._counts.update(map(kind, part))
            file.write(segments.encode(part))
        self._count += len(items)


class TransactionBuffer(_Spill):
    """Collects the rows of the source transaction being read; spills past ``spill_bytes``.

    A reader appends :data:`Row` tuples to :attr:`rows` (a plain list, the hot path), calls
    :meth:`check` after each batch of rows (cheap: it estimates sizes only every so many rows;
    a reader may skip the call while ``len(rows) < check_at``), and :meth:`finish` at the
    commit. :meth:`reset` forgets the transaction (e.g. the stream
    broke off mid-transaction and will send it again).

    Args:
        spill_bytes: estimated size past which the rows go to a temporary file (``0``: from
            the first row).
        directory: where the temporary files go (``None``: the system's temporary directory).
    """

    def __init__(
        self, spill_bytes: int = DEFAULT_SPILL_BYTES, *, directory: str | None = None
    ) -> None:
        super().__init__(spill_bytes, directory)
        self.rows: list[Row] = []
        self._bytes = 0  # estimated size of ``rows[:_sized]``
        self._sized = 0
        #: ``len(rows)`` from which :meth:`check` looks at the size again
        self.check_at = 1
        #: the estimated size of the transaction :meth:`finish` returned last (what
        #: :func:`transaction_bytes` would say), for ``Transaction.size_hint``
        self.finished_bytes = 0

    @property
    def spilling(self) -> bool:
        """Whether the current transaction went to disk."""
        return self._file is not None

    def __len__(self) -> int:
        return self._count + len(self.rows)

    def check(self, last_bytes: int = 0) -> None:
        """Spill the rows collected so far when they are (or the transaction is) too large.
        ``last_bytes``: the caller's estimate of the last row's size (0: estimate it here)."""
        n = len(self.rows)
        if n < self.check_at:
            return
        if n == self._sized + 1:  # one new row (the first of most transactions)
            self._bytes += last_bytes or _row_bytes(self.rows[-1])
        else:
            self._bytes += _sampled(self.rows[self._sized :], _row_bytes)
        self._sized = n
        per_row = max(1, self._bytes // n)
        if self._file is None:
            if self._bytes <= self.spill_bytes:
                room = (self.spill_bytes - self._bytes) // per_row // 2
                self.check_at = n + max(1, min(RECORD_ROWS, room))
                return
            self._open()
        self._write()
        self.check_at = max(1, min(RECORD_ROWS, self.spill_bytes // 8 // per_row))

    def _write(self) -> None:
        self._append(self.rows, _row_kind)
        self.rows = []
        self._bytes = self._sized = 0

    def finish(
        self, position: Position | None, commit_ts: datetime | None, txid: int | str | None
    ) -> Collection[Change]:
        """The transaction's changes, stamped with its commit; the buffer is then empty."""
        if self._file is None:
            rows = self.rows
            n = len(rows)
            if self._sized == n:
                sized = self._bytes
            elif self._sized:
                sized = self._bytes * n // self._sized
            else:
                sized = _sampled(rows, _row_bytes)
            new = _new_change
            out: Collection[Change]
            if n == 1:  # most transactions
                op, t, k, b, a = rows[0]
                out = (new(op, t, k, b, a, position, commit_ts, txid),)
            else:
                out = tuple(
                    [new(op, t, k, b, a, position, commit_ts, txid) for op, t, k, b, a in rows]
                )
            # what reset() does, for a buffer with nothing on disk
            self.rows = []
            self._bytes = self._sized = 0
            self.check_at = 1
            self.finished_bytes = _CHANGE_BYTES + sized
            return out
        out = self._spilled(SpilledChanges, position, commit_ts, txid)
        self.finished_bytes = 1024 + 64 * len(out.tables)
        return out

    def reset(self) -> None:
        """Forget the transaction (its spill file, if any, is deleted)."""
        self.rows = []
        self._bytes = self._sized = self._count = 0
        self.check_at = 1
        self._counts = None
        file, self._file = self._file, None
        if file is not None:
            file.close()


class StampedChanges(SpilledChanges):
    """:class:`SpilledChanges` whose changes keep their own ``position``, ``commit_ts`` and
    ``txid`` (the changes of several source transactions applied as one: the cache's).
    ``position``, ``commit_ts`` and ``txid`` are those of the transaction they form."""

    def _changes(self) -> Iterator[Change]:
        offset = 0
        while offset < self._end:
            file = self._file
            if file is None:
                raise Error(f"{self!r} was read after it was closed (its transaction was done)")
            changes, offset = segments.read_at(file.fileno(), offset)
            yield from changes


class ChangeBuffer(_Spill):
    """Collects whole :class:`~replikit.changes.Change` objects (of any number of source
    transactions) into the changes of one transaction; past ``spill_bytes`` (estimated) they
    go to a temporary file (:class:`StampedChanges`). Unlike :class:`TransactionBuffer`, each
    change keeps its own position, commit time and transaction id.

    Args:
        spill_bytes: estimated size past which the changes go to disk.
        directory: where the temporary file goes (``None``: the system's temporary directory).
    """

    def __init__(
        self, spill_bytes: int = DEFAULT_SPILL_BYTES, *, directory: str | None = None
    ) -> None:
        super().__init__(spill_bytes, directory)
        self._mem: list[Change] = []
        self._bytes = 0

    def __len__(self) -> int:
        return self._count + len(self._mem)

    def add(self, changes: Collection[Change]) -> None:
        """Append ``changes`` (in order)."""
        if not changes:
            return
        if not isinstance(changes, Sequence):
            changes = list(changes)
        self._mem += changes
        self._bytes += _sampled(changes, estimate_size)
        if self._file is None and self._bytes <= self.spill_bytes:
            return
        if self._file is None:
            self._open()
        self._write()

    def _write(self) -> None:
        self._append(self._mem, _change_kind)
        self._mem = []
        self._bytes = 0

    def finish(
        self, position: Position | None, commit_ts: datetime | None, txid: int | str | None
    ) -> Collection[Change]:
        """The changes collected (a tuple, or :class:`StampedChanges` on disk); the buffer
        is then empty. ``position``, ``commit_ts`` and ``txid`` are the transaction's."""
        if self._file is None:
            out: Collection[Change] = tuple(self._mem)
            self.reset()
            return out
        return self._spilled(StampedChanges, position, commit_ts, txid)

    def reset(self) -> None:
        """Forget what was collected (its spill file, if any, is deleted)."""
        self._mem = []
        self._bytes = self._count = 0
        self._counts = None
        file, self._file = self._file, None
        if file is not None:
            file.close()

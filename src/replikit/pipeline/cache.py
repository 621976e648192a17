"""The change cache (DMS "cached changes").

While a table is in full load, the CDC reader keeps running; its changes for that table are
*held* here and applied after the table's load, in their original order. The cache is bounded:
up to ``memory_limit_bytes`` (a rough estimate of the changes' size) stays in memory, the rest goes
to one append-only segment file per table.

Two flavours:

* :class:`ChangeCache` (no path): spills to a private temporary directory only when memory is
  full; nothing survives the process. ``close()`` removes the directory.
* :class:`DiskCache` ``(path)``: durable. Every change is written to the table's segment file,
  flushed and ``fsync``-ed before :meth:`~ChangeCache.add` returns (memory then only saves
  reading it back). Reopening the same path after a crash lists the held tables and replays
  their changes.

Durability guarantee of :class:`DiskCache`: when ``hold(table)`` returns, the hold survives a
crash (the segment file and its directory entry are fsync-ed). When ``add(...)`` returns, every
change it held survives a crash. An ``add`` interrupted by a crash leaves, per table, either all
or none of that call's changes of the table (each call writes one length-prefixed, checksummed
record per table; a torn last record is cut off on reopen; a transaction too large for memory,
whose changes are in a spill file, is added in pieces of :data:`ADD_PIECE` changes, each
such an add); for a transaction spanning several
held tables, some tables may have it and others not. A release interrupted by a crash replays
the whole table again on reopen (the file is deleted only once the release is complete), so
consumers must apply idempotently, which replikit's writers do. Nothing is promised for
power loss on storage that ignores ``fsync``.

Thread safety: every method may be called from any thread; one lock guards the state (the file
writes, including ``fsync``, happen under it, so a slow disk slows ``add`` for everyone).

Segment files are pickles: only open caches written by replikit that you trust.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from replikit.changes import Change, Transaction
from replikit.errors import ConfigError
from replikit.pipeline import segments
from replikit.pipeline.spill import SpilledChanges, estimate_size
from replikit.schema.model import TableId

__all__ = ["ChangeCache", "DiskCache", "estimate_size"]

DEFAULT_MEMORY_LIMIT = 64 * 1024 * 1024
#: changes per add of a transaction too large for memory (see the module docs)
ADD_PIECE = 8192
_MAGIC = "replikit-cache/1"
_HEADER = segments.HEADER
_SUFFIX = ".seg"


class _Table:
    """One held table: an in-memory prefix, then the records of its file from ``disk_from``."""

    __slots__ = ("disk_from", "file", "mem", "mem_bytes", "path", "releasing", "spilled")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO | None = None
        self.mem: list[Change] = []
        self.mem_bytes = 0
        self.disk_from = 0  # file offset where the changes not in ``mem`` begin
        self.spilled = False  # once set, new changes go to disk only (order!)
        self.releasing = False


class ChangeCache:
    """Holds the changes of tables still in full load; see the module docs.

    Args:
        path: where to put the (private, temporary) spill directory; ``None``: the system's
            temporary directory. Not durable (no fsync, removed on close): use
            :class:`DiskCache` for that.
        memory_limit_bytes: bound on the estimated size of the changes kept in memory.
    """

    _durable = False

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, memory_limit_bytes: int | None = None
    ) -> None:
        limit = DEFAULT_MEMORY_LIMIT if memory_limit_bytes is None else memory_limit_bytes
        if limit < 0:
            raise ConfigError(f"memory_limit_bytes must be >= 0, not {limit}")
        self.memory_limit_bytes = limit
        self._lock = threading.RLock()
        self._tables: dict[TableId, _Table] = {}
        self._memory = 0
        self._peak = 0
        self._closed = False
        if self._durable:
            assert path is not None
            self._dir = Path(path)
            self._dir.mkdir(parents=True, exist_ok=True)
            self._recover()
        else:  # a private directory, removed on close
            if path is not None:
                Path(path).mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix="replikit-cache-", dir=path))

    # -- state ----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The directory holding the segment files."""
        return self._dir

    @property
    def memory_bytes(self) -> int:
        """Estimated size of the changes currently held in memory (never above the limit)."""
        return self._memory

    @property
    def peak_memory_bytes(self) -> int:
        """The highest :attr:`memory_bytes` seen."""
        return self._peak

    def held(self) -> list[TableId]:
        """The tables being held (including those reopened from disk)."""
        with self._lock:
            return list(self._tables)

    def is_held(self, table: TableId) -> bool:
        """Whether changes of ``table`` are being held."""
        with self._lock:
            return table in self._tables

    def __len__(self) -> int:
        """Number of held tables."""
        return len(self._tables)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self._dir)!r}, tables={len(self._tables)}, "
            f"memory={self._memory}/{self.memory_limit_bytes})"
        )

    # -- hold / add / release -------------------------------------------------------------

    def hold(self, table: TableId) -> None:
        """Start holding changes of ``table`` (no-op if already held)."""
        with self._lock:
            self._check_open()
            if table in self._tables:
                return
            entry = _Table(self._dir / (_file_id(table) + _SUFFIX))
            if self._durable:
                self._open_file(entry, table)
            self._tables[table] = entry

    def add(self, item: Change | Transaction | Iterable[Change]) -> bool:
        """Store the changes of held tables; return whether any change was held.

        A :class:`Transaction` (or any iterable of changes) is one add batch: for a
        :class:`DiskCache` it is written with one fsync per table involved (a spilled one, in
        pieces: see the module docs).
        """
        if isinstance(item, Transaction) and isinstance(item.changes, SpilledChanges):
            held = False
            for piece in item.changes.batches(ADD_PIECE):
                held = self.add(piece) or held
            return held
        changes: Iterable[Change]
        if isinstance(item, Change):
            changes = (item,)
        elif isinstance(item, Transaction):
            changes = item.changes
        else:
            changes = item
        with self._lock:
            self._check_open()
            per_table: dict[TableId, list[Change]] = {}
            for change in changes:
                if change.table in self._tables:
                    per_table.setdefault(change.table, []).append(change)
            for table, batch in per_table.items():
                self._add(table, self._tables[table], batch)
            return bool(per_table)

    def _add(self, table: TableId, entry: _Table, batch: list[Change]) -> None:
        sizes = [estimate_size(c) for c in batch]
        fits = not entry.spilled and self._memory + sum(sizes) <= self.memory_limit_bytes
        if self._durable or not fits:
            self._write(entry, table, batch)
        if fits:
            entry.mem.extend(batch)
            entry.mem_bytes += sum(sizes)
            self._memory += sum(sizes)
            self._peak = max(self._peak, self._memory)
            if self._durable and entry.file is not None:
                entry.disk_from = entry.file.tell()  # memory covers the file up to here
        else:
            entry.spilled = True

    def release(self, table: TableId) -> Iterator[Change]:
        """Yield the held changes of ``table`` in their original order, then stop holding it.

        Changes added while the release runs are yielded too. Holding stops (and the table's
        file is removed) when the consumer asks for the next change and there is none, i.e.
        after it has handled the last one; from then on :meth:`add` returns ``False`` for it.
        Releasing a table that is not held yields nothing. A release abandoned midway (the
        iterator closed early, or the consumer raised) keeps the table held with what was not
        yet handed out; changes read from disk in the same chunk (up to about a memory's
        worth) may be handed out again by the next release (at least once, in order).
        """
        with self._lock:
            entry = self._tables.get(table)
            if entry is None:
                return
            if entry.releasing:
                raise ConfigError(f"table {table} is already being released")
            entry.releasing = True
        chunk: list[Change] = []
        done = 0  # changes of ``chunk`` handed out
        rewind: int | None = None  # for a chunk read from disk: the file offset it began at
        try:
            while True:
                with self._lock:
                    self._check_open()
                    if entry.mem:  # the memory prefix; the file from disk_from follows it
                        chunk, rewind = entry.mem, None
                        entry.mem = []
                        self._memory -= entry.mem_bytes
                        entry.mem_bytes = 0
                    elif entry.file is not None and entry.disk_from < _end(entry.file):
                        rewind = entry.disk_from
                        chunk, entry.disk_from = self._read_some(entry, entry.disk_from)
                    else:
                        self._drop(table, entry)
                        return
                for done, change in enumerate(chunk, 1):  # noqa: B007 - read in finally
                    yield change
                chunk, done = [], 0
        finally:
            with self._lock:
                entry.releasing = False
                if chunk[done:] and table in self._tables and not self._closed:
                    # Abandoned midway: keep what was not handed out for the next release.
                    if rewind is not None:
                        entry.disk_from = rewind  # re-delivers this chunk's first ``done``
                    else:
                        rest = chunk[done:]
                        size = sum(estimate_size(c) for c in rest)
                        entry.mem[:0] = rest
                        entry.mem_bytes += size
                        self._memory += size

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close files. A :class:`DiskCache` keeps what is held (to resume); a temporary
        :class:`ChangeCache` deletes everything."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for entry in self._tables.values():
                if entry.file is not None:
                    entry.file.close()
                    entry.file = None
            self._tables.clear()
            self._memory = 0
            if not self._durable:
                shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ChangeCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- files ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError(f"{type(self).__name__} {str(self._dir)!r} is closed")

    def _open_file(self, entry: _Table, table: TableId) -> None:
        f = open(entry.path, "a+b")  # noqa: SIM115 - kept open for the table's life
        entry.file = f
        if f.tell() == 0:
            self._append(f, (_MAGIC, table.schema, table.name))
            if self._durable:
                _fsync_dir(self._dir)
        entry.disk_from = f.tell()

    def _write(self, entry: _Table, table: TableId, batch: list[Change]) -> None:
        if entry.file is None:
            self._open_file(entry, table)
        assert entry.file is not None
        self._append(entry.file, batch)

    def _append(self, f: BinaryIO, obj: object) -> None:
        record = segments.encode(obj)
        f.seek(0, os.SEEK_END)
        f.write(record)
        f.flush()
        if self._durable:
            os.fsync(f.fileno())

    def _read_some(self, entry: _Table, offset: int) -> tuple[list[Change], int]:
        """Records from ``offset`` until about a memory's worth; returns changes, new offset."""
        assert entry.file is not None
        f = entry.file
        end = _end(f)
        budget = max(self.memory_limit_bytes - self._memory, 1 << 20)
        out: list[Change] = []
        read = 0
        while offset < end and (not out or read < budget):
            records, next_offset = segments.read_at(f.fileno(), offset)
            out.extend(records)
            read += next_offset - offset
            offset = next_offset
        return out, offset

    def _drop(self, table: TableId, entry: _Table) -> None:
        del self._tables[table]
        self._memory -= entry.mem_bytes
        if entry.file is not None:
            entry.file.close()
            entry.file = None
        entry.path.unlink(missing_ok=True)
        if self._durable:
            _fsync_dir(self._dir)

    def _recover(self) -> None:
        for seg in sorted(self._dir.glob("*" + _SUFFIX)):
            records, good = _scan(seg)
            if not records:
                seg.unlink()  # torn header: the hold never completed
                continue
            magic, schema, name = records[0]
            if magic != _MAGIC:
                raise ConfigError(f"{seg} is not a replikit cache segment")
            if good < seg.stat().st_size:
                with open(seg, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            table = TableId(schema, name)
            entry = _Table(seg)
            self._open_file(entry, table)
            entry.disk_from = _HEADER.size + _record_len(seg)
            entry.spilled = True
            self._tables[table] = entry


class DiskCache(ChangeCache):
    """A durable :class:`ChangeCache` in directory ``path`` (created if missing).

    Reopening the same path (e.g. after a crash) resumes: :meth:`held` lists the tables and
    :meth:`release` replays their changes. ``rk.DiskCache("shop.cache")``.
    """

    _durable = True

    def __init__(
        self, path: str | os.PathLike[str], *, memory_limit_bytes: int | None = None
    ) -> None:
        super().__init__(path, memory_limit_bytes=memory_limit_bytes)


def _file_id(table: TableId) -> str:
    return hashlib.sha256(repr((table.schema, table.name)).encode()).hexdigest()[:32]


def _end(f: BinaryIO) -> int:
    return f.seek(0, os.SEEK_END)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan(seg: Path) -> tuple[list[Any], int]:
    """Decode the header record of ``seg``; return it and the end of the last intact record."""
    first: list[Any] = []
    good = 0
    with open(seg, "rb") as f:
        while True:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                break
            n, crc = _HEADER.unpack(head)
            payload = f.read(n)
            if len(payload) < n or zlib.crc32(payload) != crc:
                break
            if not first:
                first.append(segments.decode(payload))
            good += _HEADER.size + n
    return first, good


def _record_len(seg: Path) -> int:
    with open(seg, "rb") as f:
        n, _crc = _HEADER.unpack(f.read(_HEADER.size))
    return int(n)

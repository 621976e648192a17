"""Row-level comparison of two row streams in bounded memory.

Each side is a stream of entries ``(key, canonical row, raw row)``. The source side is held
in a dictionary by key while it is small; past ``memory_rows`` rows both sides are split
into partitions by the hash of the key (of the whole row for keyless tables) spilled to
temporary files, and compared one partition at a time. Partitioning by hash instead of
merging two key-ordered streams makes the result independent of how each engine orders its
keys (collations, PAD SPACE, case): a key only has to be *equal* on both sides, never
ordered alike.

Keyed tables compare by key; tables without a key compare as multisets (a count per
distinct row), so duplicate rows count.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

__all__ = ["Entry", "Sink", "compare_keyed", "compare_multiset"]

Entry = tuple[Any, tuple[Any, ...], tuple[Any, ...]]

#: what the comparison reports: sink(kind, key, source raw row, target raw row, columns, count)
Sink = Callable[[str, Any, Any, Any, tuple[int, ...], int], None]

_FLUSH = 512


class _Partitions:
    """Entries spread over ``parts`` temporary files by a hash."""

    def __init__(self, parts: int) -> None:
        self.parts = parts
        # closed by close(), after the comparison read them back
        self.files: list[IO[bytes]] = [tempfile.TemporaryFile() for _ in range(parts)]  # noqa: SIM115
        self.buffers: list[list[Any]] = [[] for _ in range(parts)]

    def add(self, h: int, entry: Any) -> None:
        i = h % self.parts
        buf = self.buffers[i]
        buf.append(entry)
        if len(buf) >= _FLUSH:
            pickle.dump(buf, self.files[i], protocol=pickle.HIGHEST_PROTOCOL)
            self.buffers[i] = []

    def read(self, i: int) -> Iterator[Any]:
        f = self.files[i]
        if self.buffers[i]:
            pickle.dump(self.buffers[i], f, protocol=pickle.HIGHEST_PROTOCOL)
            self.buffers[i] = []
        f.seek(0)
        while True:
            try:
                chunk = pickle.load(f)
            except EOFError:
                return
            yield from chunk

    def close(self) -> None:
        for f in self.files:
            f.close()


def _columns(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)


def _match_keyed(held: dict[Any, Any], target: Iterable[Entry], sink: Sink) -> int:
    """Compare ``target`` entries against the source entries ``held`` (consumed)."""
    n = 0
    for key, canon, raw in target:
        n += 1
        found = held.pop(key, None)
        if found is None:
            sink("missing_in_source", key, None, raw, (), 1)
        elif found[0] != canon:
            sink("different", key, found[1], raw, _columns(found[0], canon), 1)
    for key, (_, raw) in held.items():
        n += 1
        sink("missing_in_target", key, raw, None, (), 1)
    held.clear()
    return n


def compare_keyed(
    source: Iterable[Entry],
    target: Iterable[Entry],
    sink: Sink,
    *,
    memory_rows: int = 100_000,
    expected_rows: int = 0,
) -> int:
    """Compare two keyed streams; report each difference to ``sink``; return the number of
    distinct keys compared."""
    held: dict[Any, Any] = {}
    parts: _Partitions | None = None
    for key, canon, raw in source:
        if parts is None:
            held[key] = (canon, raw)
            if len(held) > memory_rows:
                parts = _Partitions(_count(memory_rows, max(expected_rows, len(held))))
                for k, v in held.items():
                    parts.add(hash(k), (k, *v))
                held.clear()
        else:
            parts.add(hash(key), (key, canon, raw))
    if parts is None:
        return _match_keyed(held, target, sink)
    spilled = _Partitions(parts.parts)
    try:
        for entry in target:
            spilled.add(hash(entry[0]), entry)
        n = 0
        for i in range(parts.parts):
            held = {k: (c, r) for k, c, r in parts.read(i)}
            n += _match_keyed(held, spilled.read(i), sink)
        return n
    finally:
        parts.close()
        spilled.close()


def _count(memory_rows: int, rows: int) -> int:
    """Partitions so that one holds about ``memory_rows / 2`` rows."""
    return max(8, min(4096, (2 * rows) // max(1, memory_rows) + 1))


def _match_multiset(held: dict[Any, list[Any]], target: Iterable[Entry], sink: Sink) -> int:
    n = 0
    for _, canon, raw in target:
        n += 1
        slot = held.get(canon)
        if slot is None:
            held[canon] = [-1, None, raw]
        else:
            slot[0] -= 1
            if slot[2] is None:
                slot[2] = raw
    for canon, (count, src, tgt) in held.items():
        if count > 0:
            sink("missing_in_target", canon, src, None, (), count)
        elif count < 0:
            sink("missing_in_source", canon, None, tgt, (), -count)
    held.clear()
    return n


def compare_multiset(
    source: Iterable[Entry],
    target: Iterable[Entry],
    sink: Sink,
    *,
    memory_rows: int = 100_000,
    expected_rows: int = 0,
) -> int:
    """Compare two streams of rows as multisets (tables without a key): a row present more
    often on one side is reported with the number of extra copies. Returns the rows read
    from the target (the source's are counted by the caller)."""
    held: dict[Any, list[Any]] = {}
    parts: _Partitions | None = None
    for rows, (_, canon, raw) in enumerate(source, 1):
        if parts is None:
            slot = held.get(canon)
            if slot is None:
                held[canon] = [1, raw, None]
            else:
                slot[0] += 1
            if len(held) > memory_rows:
                parts = _Partitions(_count(memory_rows, max(expected_rows, rows)))
                for c, (count, raw_row, _) in held.items():
                    for _ in range(count):
                        parts.add(hash(c), (None, c, raw_row))
                held.clear()
        else:
            parts.add(hash(canon), (None, canon, raw))
    if parts is None:
        return _match_multiset(held, target, sink)
    spilled = _Partitions(parts.parts)
    try:
        for entry in target:
            spilled.add(hash(entry[1]), entry)
        n = 0
        for i in range(parts.parts):
            held = {}
            for _, c, r in parts.read(i):
                slot = held.get(c)
                if slot is None:
                    held[c] = [1, r, None]
                else:
                    slot[0] += 1
            n += _match_multiset(held, spilled.read(i), sink)
        return n
    finally:
        parts.close()
        spilled.close()

"""Streaming the server-built COPY text lines (:mod:`._copytext`) in chunks sized by bytes,
read ahead in a thread.

Rows are fetched ``rows`` at a time, and ``rows`` is adapted after each fetch so a chunk
holds about :data:`CHUNK_BYTES` (at most 10,000 rows): memory stays flat whatever the row
width. A fetch cannot know the width of rows it has not read: when rows suddenly grow k times
wider, one chunk is k times too big before the next fetch adapts. The fetching runs
in a thread :func:`read_ahead` starts, at most :data:`AHEAD` chunks in front of the consumer
(the drivers release the GIL while they wait on the socket, psycopg while it sends), so the
source read and the target write overlap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Protocol, TypeVar

from replikit.endpoints._ahead import read_ahead as _read_ahead
from replikit.endpoints.mysql._copytext import MARK, Field, LineSelect
from replikit.errors import DataError

__all__ = ["AHEAD", "CHUNK_BYTES", "chunks", "line_chunks", "read_ahead", "resolve_marks"]

CHUNK_BYTES = 256 << 10
AHEAD = 2
_FIRST_ROWS = 500
_MIN_ROWS, _MAX_ROWS = 16, 10_000
_first = itemgetter(0)


def chunks(
    fetch: Callable[[int], Any],
    select: LineSelect,
    table: str,
    allowed: Callable[[Field], bool],
    counts: Counter[str],
) -> Iterator[tuple[int, bytes]]:
    """``(rows, bytes)`` chunks of COPY text from ``fetch(n)`` (a cursor's ``fetchmany``).

    ``allowed(field)``: whether a marked date of that field is loaded as NULL (it is then
    counted in ``counts`` under its source column); any other marked value raises
    :class:`DataError`.
    """
    for rows, data in line_chunks(fetch, table, first=_FIRST_ROWS, size=CHUNK_BYTES):
        if select.marks and MARK in data:
            data = _unmark(data, select, table, allowed, counts)
        yield rows, data


def line_chunks(
    fetch: Callable[[int], Any], table: str, *, first: int, size: int
) -> Iterator[tuple[int, bytes]]:
    """``(rows, bytes)``: the one-column rows of ``fetch(n)`` (a cursor's ``fetchmany``,
    each row a line the server built) joined into chunks of about ``size`` bytes, starting
    with ``first`` rows and adjusting to the lines' length."""
    want = first
    while rows := fetch(want):
        try:
            data = b"\n".join(map(_first, rows)) + b"\n"
        except TypeError:  # a NULL line: the server's CONCAT outgrew max_allowed_packet
            raise DataError(
                "a row is longer than max_allowed_packet as one line of text", table=table
            ) from None
        yield len(rows), data
        want = max(_MIN_ROWS, min(_MAX_ROWS, want * size // max(len(data), 1)))


def _unmark(
    data: bytes,
    select: LineSelect,
    table: str,
    allowed: Callable[[Field], bool],
    counts: Counter[str],
) -> bytes:
    """Count the marked dates that load as NULL and write them so; raise for the others."""
    for line in data.split(b"\n"):
        if MARK in line:
            texts = line.split(b"\t")
            resolve_marks(select.fields, texts, MARK, table, allowed, counts, _source)
    return data.replace(MARK, b"\\N")


def _source(field: Field) -> str:
    return field.source


class Marked(Protocol):
    """A field whose value the server may mark (:data:`._copytext.MARK`)."""

    @property
    def how(self) -> str: ...  # "date" and "bool" fields may be marked


F = TypeVar("F", bound=Marked)
T = TypeVar("T", str, bytes)


def resolve_marks(
    fields: Sequence[F],
    texts: Sequence[T],
    mark: T,
    table: str,
    allowed: Callable[[F], bool],
    counts: Counter[str],
    source: Callable[[F], str],
) -> None:
    """One line's ``texts`` (its fields, in ``fields``' order; COPY text or CSV): a marked
    date of a field ``allowed`` is counted in ``counts`` under its ``source(field)`` column;
    any other marked value raises :class:`DataError` (its unit then goes to the typed path,
    which names the row), as does a line short of fields (``CONCAT_WS`` left out a NULL it
    made)."""
    if len(texts) != len(fields):
        raise DataError("a value is longer than max_allowed_packet as text", table=table)
    for field, text in zip(fields, texts, strict=True):
        if text != mark:
            continue
        if field.how == "date" and allowed(field):
            counts[source(field)] += 1
            continue
        what = "zero or invalid date" if field.how == "date" else "non-boolean value"
        raise DataError(f"a {what} needs the typed path", table=table, column=source(field))


def read_ahead(items: Iterator[Any], depth: int = AHEAD) -> Iterator[Any]:
    """``items`` fetched in a thread at most ``depth`` chunks ahead
    (:func:`replikit.endpoints._ahead.read_ahead`)."""
    return _read_ahead(items, depth)

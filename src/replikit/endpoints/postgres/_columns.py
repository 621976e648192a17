"""PostgreSQL rows as column batches (:mod:`replikit.endpoints._columns`), with no Python
object per value beyond the one psycopg's C loaders make.

Each column is selected cast to its canonical load type (as the row path does), then a
printed column (``"str"``: decimal, uuid, date, timestamp) to ``text``, which psycopg decodes
(ASCII), and a free text column (``"utf8"``) to ``varchar`` (or kept ``bpchar``, whose cast
to text would drop its padding), whose binary value psycopg hands over as ``bytes``,
undecoded (the session's encoding is UTF-8). PostgreSQL prints most values exactly as
``str()`` prints their canonical value; the rest are mended per batch, and only where a batch
needs it:

* a timestamp's fraction has its trailing zeros trimmed (``…05.5``): Python prints six digits
  (``…05.500000``); a ``timestamptz`` ends in ``+00`` (``TimeZone=UTC``), Python's in
  ``+00:00``. A value Python cannot hold (``infinity``, BC, a year after 9999) stays
  PostgreSQL's text, as on the row path;
* a decimal under 1E-6 is plain text (``0.0000001``) where ``str(Decimal)`` gives ``1E-7``:
  only possible in a column of scale above 6 (or none), and redone through ``Decimal``.

Integers, floats, booleans and bytea come as psycopg's binary loaders make them.

The rows come in chunks (libpq's chunked rows mode) of about :data:`BATCH_BYTES` by the
table's statistics, and of fewer rows than the allocations that start the cyclic garbage
collector's youngest collection (``gc.get_threshold()[0]``, 700 by default): psycopg makes a
tuple per row, and fetches of 2,500 rows ran 1,700 collections over the benchmark's 1.1M
rows, each through every row still held (about 1 s of CPU, measured); rows freed before the
next chunk start almost none.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from replikit.endpoints._columns import form_of
from replikit.endpoints.postgres._values import load_type
from replikit.schema.model import TableSchema
from replikit.schema.types import Kind, Type

__all__ = ["BATCH_BYTES", "UNKNOWN_ROWS", "UTF8_TYPES", "ColumnReading", "column_reading"]

#: bytes of the table's rows per chunk, by its statistics (3,200 rows of the benchmark's orders
#: table: the garbage collector's threshold bounds it first, see the module docs)
BATCH_BYTES = 2**20
#: rows of a chunk of a table without statistics (``reltuples`` is -1 before its first
#: ``ANALYZE``): its rows could be of any width
UNKNOWN_ROWS = 100
#: the fewest rows a chunk holds, whatever the garbage collector's threshold
_MIN_ROWS = 100
#: the types free text is read as, whose binary value psycopg gives as the text's bytes
UTF8_TYPES = ("varchar", "bpchar")
#: the lengths of ``str(datetime)`` (naive, years 1-9999): without and with a fraction
_CANONICAL_LENGTHS = frozenset({19, 26})
#: the largest scale whose values PostgreSQL and ``str(Decimal)`` print alike (``0.000001``)
_PLAIN_SCALE = 6
_TINY = ("0.000000", "-0.000000")


class ColumnReading:
    """How the columns of one table are read as column batches."""

    def __init__(self, table: TableSchema) -> None:
        self.types: list[Type] = [c.type for c in table.columns]
        self.casts = [_cast(t) for t in self.types]

    def columns(self, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """The rows of one chunk as columns in their forms."""
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for i, t in enumerate(self.types):
            if t.kind is Kind.TIMESTAMP:
                columns[i] = _timestamps(columns[i], tz=t.tz)
            elif t.kind is Kind.DECIMAL and not (t.scale is not None and t.scale <= _PLAIN_SCALE):
                columns[i] = _decimals(columns[i])
        return columns

    def chunk_rows(self, table: TableSchema, limit: int) -> int:
        """The rows of a chunk: about :data:`BATCH_BYTES` of the table's rows by its
        statistics (:data:`UNKNOWN_ROWS` without them), and fewer than the garbage
        collector's threshold (the module docs); at most ``limit``."""
        rows, size = table.estimated_rows, table.estimated_bytes
        fits = max(1, BATCH_BYTES * rows // size) if rows and size else UNKNOWN_ROWS
        return max(1, min(limit, fits, _collector_rows()))


def _collector_rows() -> int:
    """The most rows a chunk holds without starting the youngest garbage collection (the
    module docs); any number when the collector is off."""
    threshold = gc.get_threshold()[0]
    if not gc.isenabled() or threshold <= 0:
        return sys.maxsize
    return max(_MIN_ROWS, threshold * 4 // 5)


def column_reading(table: TableSchema) -> ColumnReading | None:
    """The column batch reading of ``table``, or ``None`` when a column's kind has no form
    there (:func:`replikit.endpoints._columns.form_of`)."""
    if any(form_of(c.type) is None for c in table.columns):
        return None
    return ColumnReading(table)


def _cast(t: Type) -> str:
    """The SELECT's cast of a column: its load type, then ``text`` for a printed form,
    ``varchar`` for free text (not ``bpchar``: its cast drops the padding the canonical value
    keeps)."""
    load = load_type(t)
    form = form_of(t)
    if form == "value" or load in UTF8_TYPES:
        return load
    return f"{load}::{'text' if form == 'str' else 'varchar'}"


def _timestamps(column: Sequence[Any], *, tz: bool) -> Sequence[Any]:
    if tz:
        return [None if x is None else _timestamptz(x) for x in column]
    present = [x for x in column if x is not None] if None in column else column
    if set(map(len, present)) <= _CANONICAL_LENGTHS:  # no fraction, or six digits: as Python's
        return column
    fine = _CANONICAL_LENGTHS  # most values still (a tenth of fractions end in a zero)
    return [x if x is None or len(x) in fine else _timestamp(x) for x in column]


def _in_range(text: str) -> bool:
    """Whether a timestamp's text is one Python holds: a 4-digit year, not BC."""
    return text[4:5] == "-" and not text.endswith(" BC")


def _timestamp(text: str) -> str:
    if 19 < len(text) < 26 and text[19] == "." and _in_range(text):
        return text.ljust(26, "0")
    return text


def _timestamptz(text: str) -> str:
    if not (text.endswith("+00") and _in_range(text)):
        return text
    clock = text[:-3]
    return (clock.ljust(26, "0") if len(clock) > 19 else clock) + "+00:00"


def _decimals(column: Sequence[Any]) -> Sequence[Any]:
    if not any(x is not None and x.startswith(_TINY) for x in column):
        return column
    return [x if x is None or not x.startswith(_TINY) else str(Decimal(x)) for x in column]

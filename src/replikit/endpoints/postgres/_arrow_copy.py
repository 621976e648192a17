"""PostgreSQL rows straight into Arrow columns: ``COPY (SELECT ...) TO STDOUT (FORMAT csv)``
parsed by pyarrow's CSV reader (C++, in the background), with no Python object per value.

Each column is selected cast to its canonical load type (as the row path does, so the text is
PostgreSQL's own output of the same value: ``DateStyle=ISO``, ``TimeZone=UTC``,
``extra_float_digits=3``, ``bytea_output=hex``), and parsed into its canonical Arrow type
(:func:`replikit.endpoints._arrow.canonical_type`): integers, floats and booleans by the CSV
reader; decimals, dates and timestamps read as text and cast per batch, a column whose batch
holds a value Arrow cannot parse (``infinity``, a BC date, a NaN) staying text in that batch,
which is then the canonical text the row path delivers for it; bytea from its hex text.
CSV tells NULL (unquoted empty) from the empty string (quoted) and no value is taken for NULL
otherwise (``NaN`` stays a float).

Measured (benchmarks/README.md): the row path spent most of its time building a Python object
per value and then Arrow arrays from them.
"""

from __future__ import annotations

import binascii
import contextlib
from collections.abc import Iterator
from typing import Any

from replikit.endpoints._arrow import TYPE_NAMES, canonical_type
from replikit.endpoints.postgres._values import load_type
from replikit.schema.model import TableSchema
from replikit.schema.types import Kind, Type

__all__ = ["BLOCK_BYTES", "ArrowColumns", "arrow_columns", "arrow_readable", "record_batches"]

#: bytes of CSV per record batch (about 6,000 rows of 330 bytes): the CSV reader holds about
#: 20 blocks at once (measured: 1 MB blocks peaked at 165 MB, 8 MB at 273 MB)
BLOCK_BYTES = 2 * 2**20
#: a row longer than this is parsed in a block of its own
LONG_ROW = BLOCK_BYTES // 4
#: columns read as text and cast after (a batch that fails keeps its text)
_CAST_AFTER = frozenset({Kind.DECIMAL, Kind.DATE, Kind.TIMESTAMP})
#: load types whose text PostgreSQL prints as the canonical value (``text``: only for kinds
#: whose canonical value is that text; interval and ``other`` are converted on the row path)
_LOAD_TYPES = frozenset(
    {"int2", "int4", "int8", "float4", "float8", "bool", "numeric", "date", "timestamp",
     "timestamptz", "bytea", "uuid", "text", "bpchar"}
)  # fmt: skip
_TEXT_KINDS = frozenset({Kind.STRING, Kind.TEXT, Kind.JSON, Kind.ENUM})


def _pyarrow() -> Any | None:
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
    except ImportError:
        return None
    return pyarrow


class ArrowColumns:
    """How the columns of one table are read: load types, CSV types and canonical types."""

    def __init__(self, pa: Any, table: TableSchema) -> None:
        self.pa = pa
        self.names = table.column_names
        self.load_types = [load_type(c.type) for c in table.columns]
        self.types: list[Type] = [c.type for c in table.columns]
        self.canonical = [canonical_type(pa, c.type) for c in table.columns]

    def csv_type(self, i: int) -> Any:
        """The type the CSV reader parses column ``i`` as."""
        kind = self.types[i].kind
        if kind in _CAST_AFTER or kind is Kind.BYTES:
            return self.pa.string()
        return self.canonical[i]


def arrow_columns(table: TableSchema) -> ArrowColumns | None:
    """The Arrow reading of ``table``, or ``None`` when a column has no canonical Arrow form
    read this way (or pyarrow is not installed): the table is read row by row."""
    if not arrow_readable(table):
        return None
    pa = _pyarrow()
    return None if pa is None else ArrowColumns(pa, table)


def arrow_readable(table: TableSchema) -> bool:
    """True when every column of ``table`` has a canonical Arrow form read this way (decided
    without importing pyarrow)."""
    for c in table.columns:
        load = load_type(c.type)
        if canonical_type(TYPE_NAMES, c.type) is None or load not in _LOAD_TYPES:
            return False
        if load == "text" and c.type.kind not in _TEXT_KINDS:
            return False
    return True


class _Rows:
    """The rows of a ``COPY TO STDOUT``: PostgreSQL sends each row as one message, so each
    chunk is one whole row. A row too long for a CSV block (``LONG_ROW``) is set aside to
    be parsed on its own (pyarrow refuses a row that straddles two blocks)."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self.pending: Any = None  # a row (the driver's buffer: bytes-like)
        self.error: BaseException | None = None

    def next_row(self) -> Any:
        """The next row as the driver gives it (a ``memoryview``; not copied), or None."""
        try:
            return next(self._chunks, None)
        except BaseException as exc:  # pyarrow reports its own error: keep the driver's
            self.error = exc
            raise


class _Segment:
    """A read-only file (what pyarrow reads) over rows of a ``COPY``, up to the end or to
    the next long row; ``single``: just the one row it starts with."""

    closed = False

    def __init__(self, rows: _Rows, first: Any, *, single: bool = False) -> None:
        self._rows = rows
        self._rest: Any = first
        self._ended = single

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        parts = [self._rest]
        have = len(self._rest)
        while not self._ended and (size < 0 or have < size):
            row = self._rows.next_row()
            if row is None or len(row) > LONG_ROW:
                self._rows.pending = row
                self._ended = True
                break
            parts.append(row)
            have += len(row)
        data = b"".join(parts)
        if 0 <= size < len(data):
            data, self._rest = data[:size], data[size:]
        else:
            self._rest = b""
        return data

    def close(self) -> None:
        self.closed = True


def record_batches(cols: ArrowColumns, chunks: Iterator[Any]) -> Iterator[Any]:
    """The record batches of the CSV ``chunks`` of one ``COPY``, columns canonical: runs of
    ordinary rows in blocks of :data:`BLOCK_BYTES`, a row longer than :data:`LONG_ROW` in a
    block of its own."""
    rows = _Rows(chunks)
    first = rows.next_row()
    while first is not None:
        single = len(first) > LONG_ROW
        block = 2 * len(first) + 1024 if single else BLOCK_BYTES
        yield from _parse(cols, _Segment(rows, first, single=single), block, rows)
        if single:
            first = rows.next_row()
        else:  # the segment ended at the last row or before a long one
            first, rows.pending = rows.pending, None


def _parse(cols: ArrowColumns, source: _Segment, block: int, rows: _Rows) -> Iterator[Any]:
    pa = cols.pa
    reader = pa.csv.open_csv(
        source,
        read_options=pa.csv.ReadOptions(column_names=list(cols.names), block_size=block),
        parse_options=pa.csv.ParseOptions(newlines_in_values=True),
        convert_options=pa.csv.ConvertOptions(
            column_types={n: cols.csv_type(i) for i, n in enumerate(cols.names)},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    with contextlib.closing(reader):
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowException:
                if rows.error is not None:
                    raise rows.error from None
                raise
            yield _canonical(cols, batch)


def _canonical(cols: ArrowColumns, batch: Any) -> Any:
    pa = cols.pa
    arrays = list(batch.columns)
    for i, t in enumerate(cols.types):
        if t.kind is Kind.BYTES:
            arrays[i] = _unhex(pa, arrays[i])
        elif t.kind in _CAST_AFTER:
            with contextlib.suppress(pa.ArrowInvalid):  # kept as text: see the module docs
                arrays[i] = pa.compute.cast(arrays[i], cols.canonical[i])
    return pa.RecordBatch.from_arrays(arrays, names=list(cols.names))


def _unhex(pa: Any, text: Any) -> Any:
    r"""PostgreSQL's hex bytea text (``\x0aff``) as a binary array: every ``\x`` in the
    column's data starts a value (hex digits hold no backslash), so the whole buffer is
    decoded at once."""
    pc = pa.compute
    if text.offset:
        text = pa.concat_arrays([text])  # buffers from offset 0
    validity, offsets_buf, data_buf = text.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), len(text) + 1, [None, offsets_buf])
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    data = b"" if data_buf is None else data_buf[first:last].to_pybytes()
    try:
        raw = binascii.unhexlify(data.replace(b"\\x", b""))
    except (binascii.Error, ValueError):
        raise ValueError("bytea text is not hex: the session needs bytea_output=hex") from None
    prefixed = pc.fill_null(pc.binary_length(text), 2)
    lengths = pc.divide(pc.subtract(prefixed, 2), 2)
    ends = pc.cumulative_sum(lengths.cast(pa.int32()))
    new_offsets = pa.concat_arrays([pa.array([0], pa.int32()), ends])
    return pa.Array.from_buffers(
        pa.binary(),
        len(text),
        [validity, new_offsets.buffers()[1], pa.py_buffer(raw)],
        null_count=text.null_count,
    )

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
import itertools
from collections.abc import Iterator
from typing import Any

from replikit.endpoints._arrow import canonical_type
from replikit.endpoints.postgres._values import load_type
from replikit.schema.model import TableSchema
from replikit.schema.types import Kind, Type

__all__ = ["BLOCK_BYTES", "ArrowColumns", "arrow_columns", "record_batches"]

#: bytes of CSV per record batch (about 6,000 rows of 330 bytes): the CSV reader holds about
#: 20 blocks at once (measured: 1 MB blocks peaked at 165 MB, 8 MB at 273 MB)
BLOCK_BYTES = 2 * 2**20
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
    pa = _pyarrow()
    if pa is None:
        return None
    cols = ArrowColumns(pa, table)
    for t, load, canonical in zip(cols.types, cols.load_types, cols.canonical, strict=True):
        if canonical is None or load not in _LOAD_TYPES:
            return None
        if load == "text" and t.kind not in _TEXT_KINDS:
            return None
    return cols


class _CopyFile:
    """A read-only file over the chunks of a ``COPY TO STDOUT`` (what pyarrow reads)."""

    closed = False

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._rest = b""
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        parts = [self._rest]
        have = len(self._rest)
        try:
            for chunk in self._chunks:
                parts.append(chunk)
                have += len(chunk)
                if 0 <= size <= have:
                    break
        except BaseException as exc:  # pyarrow reports its own error: keep the driver's
            self.error = exc
            raise
        data = b"".join(parts)
        if 0 <= size < len(data):
            data, self._rest = data[:size], data[size:]
        else:
            self._rest = b""
        return data

    def close(self) -> None:
        self.closed = True


def record_batches(cols: ArrowColumns, chunks: Iterator[Any]) -> Iterator[Any]:
    """The record batches of the CSV ``chunks`` of one ``COPY``, columns canonical."""
    pa = cols.pa
    first = next(chunks, None)
    if first is None:  # no rows: pyarrow refuses an empty CSV
        return
    source = _CopyFile(itertools.chain([first], chunks))
    reader = pa.csv.open_csv(
        source,
        read_options=pa.csv.ReadOptions(column_names=list(cols.names), block_size=BLOCK_BYTES),
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
                if source.error is not None:
                    raise source.error from None
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

"""MySQL/MariaDB rows into Arrow through CSV lines the server builds (the columnar full load).

The driver's text protocol makes a Python object of every value; :mod:`._arrow_rows` then
gathers them into Arrow columns. Here the server selects each row as one CSV line
(``CONCAT_WS`` of its fields, strings quoted with ``"`` doubled), the client joins a chunk of
lines (one Python object per row, none per value) and pyarrow's CSV reader (C++) makes the
record batch. Measured on the benchmark's ``orders`` (1M rows, 13 columns): the reader's own
CPU 1.45 s against 3.0 s, the server's 2.2 s against 1.4 s.

Each column's field (:func:`field_for`), NULL always an unquoted empty field:

``as-is``
    integers, decimals and doubles: the server's text is the very text the row path parses
    (decimals with their scale's digits, doubles as the text protocol sends them).
``quoted``
    strings, ENUM and JSON in ``"``, a ``"`` inside doubled (``REPLACE``, case-sensitive),
    converted to utf8mb4 first unless the column already is; the reader checks UTF-8.
``bool``
    ``TINYINT(1)`` as ``0`` / ``1``; any other value is *marked*.
``date``
    DATE, DATETIME and TIMESTAMP as ``column + INTERVAL 0 DAY`` (its own text, the session's
    UTC for TIMESTAMP), then cast by Arrow as :mod:`._arrow_rows` casts ``CAST(c AS CHAR)``;
    a zero or invalid date (what date arithmetic refuses) is *marked*.

A *marked* value is the single byte ``0xFF``, which UTF-8 text and digits never hold: a chunk
holding one is looked at cell by cell (:meth:`CsvLines.batch`): zero dates in a nullable
column under ``zero_dates="null"`` are counted and read as NULL, anything else is refused
with the row path's reasons, naming table, column and key. Columns of other kinds (binary,
FLOAT, TIME, BIT, geometry...) keep the whole table on :mod:`._arrow_rows`.

No silent change: a field whose expression is NULL for a non-NULL value (a result longer than
``max_allowed_packet``) is left out by ``CONCAT_WS``, and a line that is NULL itself is
refused, so the CSV reader fails on the line or the row count; the reader then raises
:class:`~replikit.DataError`. Every chunk's row count is checked against the rows fetched.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from replikit.endpoints._arrow import TYPE_NAMES, canonical_type, pool
from replikit.endpoints.mysql._copytext import MARK
from replikit.endpoints.mysql._dialect import DIALECT
from replikit.endpoints.mysql._lines import line_chunks, resolve_marks
from replikit.errors import DataError
from replikit.schema.model import Column, TableSchema
from replikit.schema.types import Kind

__all__ = [
    "CHUNK_BYTES",
    "CSV_FORMAT",
    "TEXT_CHUNK_BYTES",
    "CsvLines",
    "CsvText",
    "csv_lines",
    "csv_text",
]

#: about this many bytes of lines per record batch (at most 10,000 rows, see
#: :func:`~replikit.endpoints.mysql._lines.line_chunks`)
CHUNK_BYTES = 2 << 20
#: about this many bytes of lines per chunk handed to a target that parses them itself
#: (:class:`CsvText`): nothing gathers them, and 256 kB chunks took 17-21 MB off the peak RSS
#: of 1.1M rows into DuckDB against 2 MB ones, at the same or less CPU (measured)
TEXT_CHUNK_BYTES = 256 << 10
_FIRST_ROWS = 1_000
#: the text format of :class:`CsvText` (a DuckDB writer's ``text_format``): RFC 4180 lines
#: (``,``, ``"`` doubled inside quotes, ``\n`` between rows), NULL an unquoted empty field,
#: each value the text its canonical Arrow type parses from (integers, decimals and doubles
#: as digits, booleans ``0`` / ``1``, ``YYYY-MM-DD`` dates, ``YYYY-MM-DD hh:mm:ss[.ffffff]``
#: timestamps, in UTC for a time-zone-aware type), in the table's column order
CSV_FORMAT = "csv"


def _lit(text: str) -> str:
    """A utf8mb4 string literal that no ``sql_mode`` reads differently."""
    return f"_utf8mb4 X'{text.encode().hex().upper()}'"


_EMPTY = _lit("")
_QUOTE = _lit('"')
_QUOTES = _lit('""')
_MARK_SQL = "CAST(X'FF' AS BINARY)"


@dataclass(frozen=True, slots=True)
class CsvField:
    """One column's CSV field: ``value`` is SQL yielding its text (see the module docstring);
    ``parsed`` the Arrow type the CSV reader converts it to, ``wanted`` the canonical one."""

    name: str
    how: str
    value: str
    parsed: Any
    wanted: Any
    nullable: bool


def field_for(pa: Any, column: Column) -> CsvField | None:
    """How ``column``'s values pass as CSV (``None``: the table reads through
    :mod:`._arrow_rows`)."""
    t = column.type
    wanted = canonical_type(pa, t)
    base = t.native.lower().split("(")[0].split()[0] if t.native else ""
    if wanted is None or base == "bit":
        return None
    q = DIALECT.quote(column.name)
    kind = t.kind
    if kind is Kind.INT or kind is Kind.DECIMAL or (kind is Kind.FLOAT and (t.bits or 64) > 32):
        how, value, parsed = "as-is", q, wanted
    elif kind in (Kind.STRING, Kind.TEXT, Kind.ENUM, Kind.JSON):
        text = (
            q if (column.collation or "").startswith("utf8mb4") else f"CONVERT({q} USING utf8mb4)"
        )
        value = f"CONCAT({_QUOTE}, REPLACE({text}, {_QUOTE}, {_QUOTES}), {_QUOTE})"
        how, parsed = "quoted", pa.string()
    elif kind is Kind.BOOL and base in ("tinyint", "bool", "boolean"):
        value = f"CASE {q} WHEN 0 THEN {_lit('0')} WHEN 1 THEN {_lit('1')} ELSE {_MARK_SQL} END"
        how, parsed = "bool", pa.bool_()
    elif kind in (Kind.DATE, Kind.TIMESTAMP):
        how, value, parsed = "date", f"IFNULL({q} + INTERVAL 0 DAY, {_MARK_SQL})", pa.string()
    else:
        return None
    if column.nullable:
        value = f"IF({q} IS NULL, {_EMPTY}, {value})"
    return CsvField(column.name, how, value, parsed, wanted, bool(column.nullable))


def _expression(fields: list[CsvField]) -> str:
    """The SELECT expression of a row's CSV line."""
    return f"CONVERT(CONCAT_WS({_lit(',')}, {', '.join(f.value for f in fields)}) USING binary)"


def _fields(pa: Any, table: TableSchema) -> list[CsvField] | None:
    fields = []
    for c in table.columns:
        f = field_for(pa, c)
        if f is None:
            return None
        fields.append(f)
    return fields or None


class CsvLines:
    """One table's CSV line SELECT, and chunks of lines -> record batches."""

    def __init__(self, pa: Any, table: TableSchema, fields: list[CsvField]) -> None:
        import pyarrow.csv as pcsv

        self.pa = pa
        self.table = str(table.id)
        self.fields = fields
        self.names = [f.name for f in fields]
        self.key = [n for n in table.key if n in self.names]
        self.marks = any(f.how in ("bool", "date") for f in fields)
        self.expression = _expression(fields)
        self._pcsv = pcsv
        self._read = pcsv.ReadOptions(
            column_names=self.names, use_threads=False, block_size=64 << 20
        )
        self._parse = pcsv.ParseOptions(
            delimiter=",",
            quote_char='"',
            double_quote=True,
            escape_char=False,
            newlines_in_values=True,
            ignore_empty_lines=False,  # a row of one NULL column is an empty line
        )
        self._convert = pcsv.ConvertOptions(
            column_types={f.name: f.parsed for f in fields},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["1"],
            false_values=["0"],
            check_utf8=True,
        )
        self._raw = pcsv.ConvertOptions(
            column_types={f.name: pa.binary() for f in fields},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )

    def chunks(self, fetch: Callable[[int], Any]) -> Iterator[tuple[int, bytes]]:
        """``(rows, bytes)`` chunks of lines from ``fetch(n)`` (a cursor's ``fetchmany``),
        about :data:`CHUNK_BYTES` each."""
        return line_chunks(fetch, self.table, first=_FIRST_ROWS, size=CHUNK_BYTES)

    def batch(
        self,
        rows: int,
        data: bytes,
        allowed: Callable[[CsvField], bool],
        counts: Counter[str],
    ) -> Any:
        """The record batch of a chunk of ``rows`` lines. ``allowed(field)``: whether a
        marked date of that field is read as NULL (counted in ``counts`` under the column);
        any other marked value raises :class:`DataError`."""
        pa = self.pa
        if self.marks and MARK in data:
            data = self._unmark(data, allowed, counts)
        try:
            table = self._csv(data, self._convert)
        except pa.ArrowInvalid as exc:
            raise self._unreadable(exc) from None
        if table.num_rows != rows:
            raise self._unreadable(f"{table.num_rows} rows parsed of {rows} read")
        arrays = []
        for f, array in zip(self.fields, table.columns, strict=True):
            if array.num_chunks != 1:
                array = array.combine_chunks(memory_pool=pool(pa))
            else:
                array = array.chunk(0)
            if f.how == "date":
                try:
                    array = _temporal(pa, array, f.wanted)
                except (pa.ArrowInvalid, ValueError) as exc:
                    raise self._unreadable(exc, f.name) from None
            arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, names=self.names)

    def _csv(self, data: bytes, convert: Any) -> Any:
        """A chunk parsed, in the C library's ``malloc`` (:func:`~replikit.endpoints._arrow.
        pool`): pyarrow's default pool kept about 30 MB of freed pages resident through the
        benchmark's 1.1M rows into DuckDB (peak RSS 248 MB against 219 MB, measured)."""
        return self._pcsv.read_csv(
            io.BytesIO(data),
            read_options=self._read,
            parse_options=self._parse,
            convert_options=convert,
            memory_pool=pool(self.pa),
        )

    def _unmark(
        self, data: bytes, allowed: Callable[[CsvField], bool], counts: Counter[str]
    ) -> bytes:
        """Count the marked dates read as NULL and make them NULL; raise for the others."""
        pa = self.pa
        try:
            raw = self._csv(data, self._raw)
        except pa.ArrowInvalid as exc:
            raise self._unreadable(exc) from None
        import pyarrow.compute as pc

        mark = pa.scalar(MARK, pa.binary())
        for f in self.fields:
            if f.how not in ("bool", "date"):
                continue
            hits = pc.equal(raw.column(f.name), mark).fill_null(False)
            count = pc.sum(hits).as_py() or 0
            if not count:
                continue
            if f.how == "date" and allowed(f):
                counts[f.name] += count
                continue
            index = pc.index(hits, True).as_py()
            key = {k: self._key_value(raw, k, index) for k in self.key}
            raise DataError(_refusal(f), table=self.table, column=f.name, key=key or None)
        return data.replace(MARK, b"")  # a mark is always a whole unquoted field

    def _key_value(self, raw: Any, name: str, index: int) -> Any:
        """Row ``index``'s value of key column ``name`` (a raw parse) as the row path has it."""
        pa = self.pa
        f = self.fields[self.names.index(name)]
        text = raw.column(name).slice(index, 1).combine_chunks().cast(pa.string())
        try:
            value = text.cast(f.wanted) if f.how != "date" else _temporal(pa, text, f.wanted)
        except (pa.ArrowInvalid, ValueError):
            value = text
        return value.to_pylist()[0]

    def _unreadable(self, exc: object, column: str | None = None) -> DataError:
        return DataError(
            f"the server's CSV lines did not read back ({exc}); read this table through the "
            "typed path (replikit reads it so when the lines fail: please report this)",
            table=self.table,
            column=column,
        )


def _temporal(pa: Any, text: Any, wanted: Any) -> Any:
    """MySQL's date/datetime text as ``wanted``: the cast of :mod:`._arrow_rows`."""
    if not pa.types.is_timestamp(wanted) or wanted.tz is None:
        return text.cast(wanted, memory_pool=pool(pa))
    naive = text.cast(pa.timestamp(wanted.unit), memory_pool=pool(pa))
    return naive.cast(wanted, memory_pool=pool(pa))  # the session is UTC


def _refusal(f: CsvField) -> str:
    if f.how == "bool":
        return (
            "a value other than 0 and 1 is not a boolean (TINYINT(1) is read as bool); read "
            "this table with tinyint1_as_bool=False to keep it an integer"
        )
    why = "the column is NOT NULL" if not f.nullable else "zero_dates='error'"
    return (
        f"zero or invalid date has no value in any other database and {why}; fix the row at "
        "the source, or read with zero_dates='null' to load it as NULL (nullable columns only)"
    )


def csv_lines(pa: Any, table: TableSchema) -> CsvLines | None:
    """The CSV line reading of ``table``, or ``None`` when a column needs :mod:`._arrow_rows`."""
    fields = _fields(pa, table)
    return CsvLines(pa, table, fields) if fields else None


# -- the lines as text, for a target that parses CSV itself (no pyarrow) ----------------------


@dataclass(frozen=True, slots=True)
class CsvText:
    """One table's CSV line SELECT for a target that reads the lines itself (DuckDB's CSV
    reader, :data:`CSV_FORMAT`): ``fields`` in the table's column order (their ``wanted``:
    canonical Arrow type names, :data:`~replikit.endpoints._arrow.TYPE_NAMES`), decided and
    read without pyarrow."""

    table: str
    fields: tuple[CsvField, ...]
    expression: str
    marks: bool

    def chunks(
        self,
        fetch: Callable[[int], Any],
        allowed: Callable[[CsvField], bool],
        counts: Counter[str],
    ) -> Iterator[tuple[int, bytes]]:
        """``(rows, bytes)`` chunks of lines from ``fetch(n)`` (a cursor's ``fetchmany``),
        about :data:`TEXT_CHUNK_BYTES` each, marks resolved: a marked date ``allowed(field)``
        reads as NULL (an empty field, counted in ``counts`` under the column); any other
        marked value raises :class:`DataError` (the unit is then read as record batches,
        whose error names the row)."""
        for rows, data in line_chunks(fetch, self.table, first=_FIRST_ROWS, size=TEXT_CHUNK_BYTES):
            if self.marks and MARK in data:
                data = self._unmark(data, allowed, counts)
            yield rows, data

    def _unmark(
        self, data: bytes, allowed: Callable[[CsvField], bool], counts: Counter[str]
    ) -> bytes:
        """Rare (a chunk holding a zero date): the chunk parsed by Python's CSV reader."""
        mark = MARK.decode("utf-8", "surrogateescape")
        found: Counter[str] = Counter()
        lines = io.StringIO(data.decode("utf-8", "surrogateescape"), newline="")
        try:
            parsed = list(csv.reader(lines, strict=True))
        except csv.Error as exc:  # e.g. a field over the csv module's 128 kB field limit
            raise DataError(
                f"a chunk with a zero date could not be split into fields ({exc}); "
                "the unit is read through the typed path",
                table=self.table,
            ) from None
        for line in parsed:
            resolve_marks(self.fields, line, mark, self.table, allowed, found, _name)
        counts.update(found)
        return data.replace(MARK, b"")  # a mark is always a whole unquoted field


def _name(field: CsvField) -> str:
    return field.name


def csv_text(table: TableSchema) -> CsvText | None:
    """The CSV lines of ``table`` for a target that parses them (:class:`CsvText`), or
    ``None`` when a column has no CSV field; decided without pyarrow."""
    fields = _fields(TYPE_NAMES, table)
    if fields is None:
        return None
    marks = any(f.how in ("bool", "date") for f in fields)
    return CsvText(str(table.id), tuple(fields), _expression(fields), marks)

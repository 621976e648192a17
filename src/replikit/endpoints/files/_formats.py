"""Parquet, CSV and JSONL files: rows in (rolled at a size, atomically), rows out.

:class:`Layout` is one table's columns as files hold them (names, portable types, Arrow types,
the plan's adapters); :class:`Files` writes a stream of row batches into files of one folder,
starting a new file when the current one passes ``file_size`` bytes; :func:`read_rows` reads
one file back as batches of canonical values.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from replikit._failpoints import failpoint
from replikit.endpoints import _arrow as shared
from replikit.endpoints.files._connect import Store
from replikit.endpoints.files._values import (
    arrow_type,
    from_arrow,
    from_json,
    from_text,
    pa,
    to_json,
    to_text,
)
from replikit.errors import DataError, SchemaError
from replikit.schema.types import Type

__all__ = ["Files", "Layout", "read_rows", "read_schema"]

Adapter = Callable[[Any], Any]
_ARROW_ERRORS = shared.arrow_errors(pa)
#: most rows written at once (one Parquet row group)
GROUP_ROWS = 50_000
#: a column chunk's dictionary grows to this before the chunk falls back to plain encoding
#: (pyarrow's default, 1 MB, had each row group hash about 10,000 distinct strings first:
#: measured on the benchmark's orders, 64 KB took 0.59 s of CPU instead of 0.94 s for 1M rows,
#: and the files were 9% smaller; columns of few values keep their dictionaries)
DICTIONARY_BYTES = 64 * 1024


def _parquet() -> Any:
    import pyarrow.parquet as pq

    return pq


def _csv() -> Any:
    import pyarrow.csv as pcsv

    return pcsv


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a file: name, portable (target) type, adapter, nullability."""

    name: str
    type: Type
    adapt: Adapter | None = None
    nullable: bool = True


class Layout:
    """The columns of one table's files, and rows -> Arrow/text conversion."""

    def __init__(self, table: str, fields: Sequence[Field], key: Sequence[str] = ()) -> None:
        self.table = table
        self.fields = tuple(fields)
        self.names = tuple(f.name for f in self.fields)
        self.arrow_types = tuple(arrow_type(f.type) for f in self.fields)
        self.key = tuple(self.names.index(k) for k in key if k in self.names)
        self.schema = pa.schema(
            [
                pa.field(f.name, t, f.nullable)
                for f, t in zip(self.fields, self.arrow_types, strict=True)
            ]
        )
        self.text_schema = pa.schema([pa.field(n, pa.string()) for n in self.names])

    def key_of(self, row: Sequence[Any]) -> dict[str, Any]:
        """The row's key, for messages."""
        return {self.names[i]: row[i] for i in self.key}

    def _columns(self, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """The values of ``rows`` column by column, adapted by the plan's adapters."""
        # not zip(*rows): a call with that many arguments upsets CPython 3.11's recursion
        # accounting (a later compile() raised "AST constructor recursion depth mismatch")
        columns = [[row[i] for row in rows] for i in range(len(self.names))]
        for i, f in enumerate(self.fields):
            if f.adapt is not None:
                columns[i] = shared.adapted(
                    columns[i], f.adapt, rows, table=self.table, column=f.name, key_of=self.key_of
                )
        return columns

    def arrow(self, rows: Sequence[Sequence[Any]]) -> Any:
        """``rows`` as an Arrow table in this layout's schema; a value the column's Parquet
        type cannot hold is a :class:`DataError` naming its row."""
        arrays = []
        for i, (t, values) in enumerate(zip(self.arrow_types, self._columns(rows), strict=True)):
            try:
                arrays.append(pa.array(values, type=t))
            except _ARROW_ERRORS:
                raise shared.refused(
                    pa,
                    values,
                    t,
                    rows,
                    f"cannot be stored in Parquet as {t}",
                    table=self.table,
                    column=self.names[i],
                    key_of=self.key_of,
                ) from None
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def conform(self, batch: Any, sources: Sequence[str]) -> Any:
        """The columns ``sources`` of a canonical Arrow record batch (see
        :func:`replikit.endpoints._arrow.canonical_type`) as a table in this layout's schema;
        a column a batch holds as text where the layout wants another type (``infinity``, a
        BC date, a NaN decimal) is a :class:`DataError` naming its first refused row, as
        :meth:`arrow` would raise for the same values."""
        arrays = []
        for i, (name, wanted) in enumerate(zip(sources, self.arrow_types, strict=True)):
            array = batch.column(name)
            if array.type == wanted:
                arrays.append(array)
            elif isinstance(wanted, pa.BaseExtensionType) and array.type == wanted.storage_type:
                arrays.append(pa.ExtensionArray.from_storage(wanted, array))
            else:
                arrays.append(self._cast(i, array, wanted, batch, sources))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _cast(self, i: int, array: Any, wanted: Any, batch: Any, sources: Sequence[str]) -> Any:
        try:
            return array.cast(wanted)
        except _ARROW_ERRORS:
            pass
        key_of = self._key_of_source(batch, sources)
        for k in range(len(array)):
            try:
                array.slice(k, 1).cast(wanted)
            except _ARROW_ERRORS as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise DataError(
                    f"value {shared.preview(array[k].as_py())} cannot be stored in Parquet "
                    f"as {wanted} ({reason})",
                    table=self.table,
                    column=self.names[i],
                    key=key_of(shared.ArrowRows(batch)[k]),
                ) from None
        raise AssertionError("unreachable: a column failed to cast, then each value cast")

    def _key_of_source(
        self, batch: Any, sources: Sequence[str]
    ) -> Callable[[Sequence[Any]], dict[str, Any]]:
        """:meth:`key_of` for rows of ``batch`` in its own column order (``sources``: the
        batch's name of each layout column)."""
        at = {i: batch.schema.get_field_index(sources[i]) for i in self.key}
        return lambda row: {self.names[i]: row[j] for i, j in at.items()}

    def text(self, rows: Sequence[Sequence[Any]]) -> Any:
        """``rows`` as an Arrow table of text columns (CSV)."""
        columns = [
            pa.array([None if v is None else to_text(v) for v in values], pa.string())
            for values in self._columns(rows)
        ]
        return pa.Table.from_arrays(columns, schema=self.text_schema)

    def json_lines(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """``rows`` as JSON lines."""
        columns = self._columns(rows)
        out = io.StringIO()
        for r in range(len(rows)):
            doc = {n: to_json(columns[i][r]) for i, n in enumerate(self.names)}
            out.write(json.dumps(doc, ensure_ascii=False, allow_nan=False))
            out.write("\n")
        return out.getvalue().encode("utf-8")


class _File:
    """One file being written under a temporary name (see :meth:`Store.writing`)."""

    def __init__(self, store: Store, path: str, fmt: str, layout: Layout, compression: str):
        self.path = path
        self._cm = store.writing(path)
        self._f: IO[bytes] = self._cm.__enter__()
        failpoint("files.data-file")
        self.fmt = fmt
        self.layout = layout
        self.rows = 0
        self._writer: Any = None
        if fmt == "parquet":
            self._writer = _parquet().ParquetWriter(
                self._f,
                layout.schema,
                compression=compression,
                dictionary_pagesize_limit=DICTIONARY_BYTES,
            )
        elif fmt == "csv":
            pcsv = _csv()
            options = pcsv.WriteOptions(quoting_style="all_valid")
            self._writer = pcsv.CSVWriter(self._f, layout.text_schema, write_options=options)

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        if self.fmt == "parquet":
            self._writer.write_table(self.layout.arrow(rows))
        elif self.fmt == "csv":
            self._writer.write_table(self.layout.text(rows))
        else:
            self._f.write(self.layout.json_lines(rows))
        self.rows += len(rows)

    def write_arrow(self, table: Any) -> None:
        """Write an Arrow table in the layout's schema (Parquet only)."""
        self._writer.write_table(table)
        self.rows += table.num_rows

    @property
    def size(self) -> int:
        return int(self._f.tell())

    def commit(self) -> None:
        """Finish the file and rename it into place."""
        if self._writer is not None:
            self._writer.close()
        self._cm.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        """Drop the temporary file (nothing becomes visible)."""
        # the file is dropped whatever happens here; the caller raises the first error
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(BaseException):
            self._cm.__exit__(type(exc), exc, exc.__traceback__)


class Files:
    """Rows into files of one folder, rolled at ``file_size`` bytes: ``name()`` gives each
    new file's path. Rows are gathered into groups of ``group_rows`` (a Parquet row group
    each). Use as a context manager: files are renamed into place on success; on an error the
    file being written is removed."""

    def __init__(
        self,
        store: Store,
        layout: Layout,
        fmt: str,
        name: Callable[[], str],
        *,
        file_size: int,
        compression: str = "snappy",
        group_rows: int = 1_000,
    ) -> None:
        self.store = store
        self.group_rows = group_rows
        self._pending: list[Sequence[Any]] = []
        self._tables: list[Any] = []  # Arrow tables gathered for the next row group
        self._table_rows = 0
        self.layout = layout
        self.fmt = fmt
        self.name = name
        self.file_size = file_size
        self.compression = compression
        self._open: _File | None = None
        self.written: list[str] = []
        self.rows = 0

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        """Write ``rows`` (after the rows before them)."""
        self._pending.extend(rows)
        while len(self._pending) >= self.group_rows:
            self._flush()

    def write_arrow(self, table: Any) -> None:
        """Write an Arrow table in the layout's schema (Parquet only) after the rows before
        it, gathered into row groups of ``group_rows`` as :meth:`write` does."""
        while self._pending:
            self._flush()
        self._tables.append(table)
        self._table_rows += table.num_rows
        while self._table_rows >= self.group_rows:
            self._flush_arrow()

    def _flush_arrow(self) -> None:
        """Write up to ``group_rows`` of the gathered Arrow tables as one row group."""
        gathered = pa.concat_tables(self._tables)
        piece, rest = gathered.slice(0, self.group_rows), gathered.slice(self.group_rows)
        self._tables = [rest] if rest.num_rows else []
        self._table_rows = rest.num_rows
        if self._open is None:
            self._open = _File(self.store, self.name(), self.fmt, self.layout, self.compression)
        self._open.write_arrow(piece)
        self.rows += piece.num_rows
        self._written()

    def _flush(self) -> None:
        rows = self._pending[: self.group_rows]
        del self._pending[: self.group_rows]
        if not rows:
            return
        if self._open is None:
            self._open = _File(self.store, self.name(), self.fmt, self.layout, self.compression)
        self._open.write(rows)
        self.rows += len(rows)
        self._written()

    def _written(self) -> None:
        """After a row group: the next group's size, and the file rolled at ``file_size``."""
        assert self._open is not None
        size = self._open.size
        # groups of about a quarter of a file, so files roll near file_size
        per_row = max(size / max(self._open.rows, 1), 1.0)
        self.group_rows = int(min(max(self.file_size / per_row / 4, 1_000), GROUP_ROWS))
        if size >= self.file_size:
            self._commit()

    def _commit(self) -> None:
        if self._open is not None:
            f, self._open = self._open, None
            f.commit()
            self.written.append(f.path)

    def __enter__(self) -> Files:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            try:
                while self._pending:
                    self._flush()
                while self._table_rows:
                    self._flush_arrow()
            except BaseException as failed:
                self.__exit__(type(failed), failed, failed.__traceback__)
                raise
            self._commit()
        elif self._open is not None:
            f, self._open = self._open, None
            f.abort(exc)
            if isinstance(exc, OSError):
                raise self.store.failed(exc, "write", f.path) from exc


# -- reading ------------------------------------------------------------------------------------
def read_schema(store: Store, path: str, fmt: str) -> Any:
    """The Arrow schema of a file (CSV and JSONL: inferred from its first block)."""
    with store.reading(path) as f:
        try:
            if fmt == "parquet":
                return _parquet().ParquetFile(f).schema_arrow
            if fmt == "csv":
                return _csv().open_csv(f).schema
            import pyarrow.json as pjson

            return pjson.read_json(f).schema
        except _ARROW_ERRORS as exc:
            raise SchemaError(f"cannot read {path}: {exc}") from None


def read_rows(
    store: Store,
    path: str,
    fmt: str,
    types: dict[str, Type],
    *,
    typed: bool,
    batch_size: int,
) -> Iterator[tuple[tuple[str, ...], list[list[Any]]]]:
    """Batches of ``(column names, rows)`` of canonical values from one file.

    ``types``: the portable type of each column; ``typed``: they come from ``_schema.json``
    (CSV and JSONL hold the text :mod:`._values` wrote); otherwise the file's own types
    (Parquet's, or inferred from CSV/JSONL) are read as they are.
    """
    with store.reading(path) as f:
        try:
            if fmt == "jsonl" and typed:
                yield from _jsonl_typed(f, types, batch_size)
                return
            for batch in _arrow_batches(f, fmt, types, typed=typed, batch_size=batch_size):
                yield _rows_of(batch, types, text=typed and fmt == "csv")
        except _ARROW_ERRORS as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise DataError(f"cannot read {path}: a value does not fit its column: {exc}") from None


def _arrow_batches(
    f: IO[bytes], fmt: str, types: dict[str, Type], *, typed: bool, batch_size: int
) -> Iterator[Any]:
    if fmt == "parquet":
        yield from _parquet().ParquetFile(f).iter_batches(batch_size=batch_size)
        return
    if fmt == "csv":
        pcsv = _csv()
        if typed:
            convert = pcsv.ConvertOptions(
                column_types={n: pa.string() for n in types},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            )
        else:
            convert = pcsv.ConvertOptions(column_types={n: arrow_type(t) for n, t in types.items()})
        yield from pcsv.open_csv(f, convert_options=convert)
        return
    import pyarrow.json as pjson

    yield from pjson.read_json(f).to_batches(batch_size)


def _rows_of(
    batch: Any, types: dict[str, Type], *, text: bool
) -> tuple[tuple[str, ...], list[list[Any]]]:
    names = tuple(batch.schema.names)
    columns = []
    for name, column in zip(names, batch.columns, strict=True):
        values = column.to_pylist()
        t = types.get(name)
        if t is not None:
            if text:
                values = [from_text(t, v) for v in values]
            else:
                convert = from_arrow(t, column.type)
                if convert is not None:
                    values = [None if v is None else convert(v) for v in values]
        columns.append(values)
    rows = [list(r) for r in zip(*columns, strict=True)] if columns else []
    return names, rows


def _jsonl_typed(
    f: IO[bytes], types: dict[str, Type], batch_size: int
) -> Iterator[tuple[tuple[str, ...], list[list[Any]]]]:
    names = tuple(types)
    rows: list[list[Any]] = []
    with io.TextIOWrapper(f, encoding="utf-8") as text:
        for line in text:
            if not line.strip():
                continue
            doc = json.loads(line)
            rows.append([from_json(types[n], doc.get(n)) for n in names])
            if len(rows) >= batch_size:
                yield names, rows
                rows = []
    if rows:
        yield names, rows

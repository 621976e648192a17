"""PostgreSQL rows into Arrow through ADBC's PostgreSQL driver (``adbc-driver-postgresql``):
binary ``COPY`` decoded into Arrow columns in C, streamed as record batches.

The same values as the CSV reading (:mod:`._arrow_copy`), batch for batch in their canonical
Arrow types (:func:`replikit.endpoints._arrow.canonical_type`):

* integers, floats, booleans, text, bytea: the driver's binary decoding is already canonical;
* ``numeric`` and ``uuid`` are selected as PostgreSQL's text (faster than the driver's numeric
  decoding, measured: 0.52 s against 0.69-0.83 s per 1M values) and, for decimals, cast as the
  CSV reading casts them: a batch holding ``NaN`` or ``Infinity`` keeps that column as text;
* dates and timestamps come binary; the driver shifts PostgreSQL's epoch (2000) to Unix's
  (1970) with a wrapping addition, so ``infinity`` and years after 294276 wrap. A batch whose
  column holds a value outside the years 1-9999 (the range the CSV reading parses) keeps that
  column as PostgreSQL's text of each value, as the CSV reading does, rebuilt from the exact
  binary value (:func:`._values.date_text`, :func:`._values.timestamp_text`).

:class:`AdbcStream` hands the driver's stream itself to a target engine that reads Arrow in its
own code (DuckDB): the same columns before :func:`canonical`, so decimals and UUIDs as text, and
dates and timestamps outside the years 1-9999 wrapped (the engine refuses those, and the unit
is read again as canonical batches); nothing of pyarrow is imported for it.

Only for servers whose encoding is UTF-8 (text arrives as the server holds it) and only for
tables :func:`._arrow_copy.arrow_columns` accepts; otherwise, and when the driver is not
installed or cannot connect, the CSV reading is used.

The driver is used through ADBC's low-level API (``adbc_driver_manager``'s database,
connection and statement), not its DB-API module: that one imports ``pyarrow.dataset`` (with
Parquet, Acero, Substrait and the cloud filesystems), 11 MB of resident memory for nothing
read here (measured; #18's full load budget is 100 MB).
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Generator, Sequence
from typing import Any

from replikit.endpoints._arrow import pool
from replikit.endpoints.postgres._arrow_copy import ArrowColumns
from replikit.endpoints.postgres._values import date_text, load_type, timestamp_text
from replikit.schema.types import Kind, Type

__all__ = [
    "BATCH_BYTES",
    "AdbcStream",
    "adbc_manager",
    "canonical",
    "error_text",
    "record_batches",
    "select_types",
    "sqlstate",
]

log = logging.getLogger(__name__)

#: the driver's batch size hint (``adbc.postgresql.batch_size_hint_bytes``), about 6,000 rows
#: of the benchmark's orders table (4 units at once, 1.1M rows: 1 MB peaked about 30 MB lower
#: than 4 MB, for 0.2 s more CPU)
BATCH_BYTES = 2 * 2**20
#: read as PostgreSQL's text, then cast like the CSV reading
_AS_TEXT = frozenset({Kind.DECIMAL, Kind.UUID})
_SESSION = (
    "SET TIME ZONE 'UTC'",
    "SET DateStyle = ISO",
    "SET IntervalStyle = iso_8601",
    "SET extra_float_digits = 3",
    "SET client_encoding = 'UTF8'",
)
_EPOCH_DAYS = 10_957  # 1970-01-01 -> 2000-01-01
_EPOCH_US = _EPOCH_DAYS * 86_400_000_000
#: date32 days / timestamp microseconds (Unix epoch) of 0001-01-01 and 9999-12-31 (end)
_MIN_DAYS, _MAX_DAYS = -719_162, 2_932_896
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999


def adbc_manager() -> Any | None:
    """``adbc_driver_manager`` (its ``Error`` classes are the driver's), or ``None`` when
    ADBC's PostgreSQL driver is not installed."""
    try:
        import adbc_driver_manager
        import adbc_driver_postgresql  # noqa: F401  (the driver itself, loaded on connect)
    except ImportError:
        return None
    return adbc_driver_manager


def select_types(types: Sequence[Type]) -> list[str]:
    """What each column of ``types`` is cast to in the SELECT (the CSV reading's load types,
    but text for numeric and uuid)."""
    return ["text" if t.kind in _AS_TEXT else load_type(t) for t in types]


class AdbcStream:
    """``query`` executed in ``snapshot`` (imported in a REPEATABLE READ, READ ONLY
    transaction, as every other read of the reader): entered, it gives the driver's Arrow C
    stream (``__arrow_c_stream__``); left, it closes statement, connection and database.
    Opening it raises the driver's errors (``manager.Error``); no pyarrow is imported."""

    def __init__(self, manager: Any, conninfo: str, query: str, snapshot: str) -> None:
        import adbc_driver_postgresql

        self._open: list[Any] = [adbc_driver_postgresql.connect(conninfo)]
        try:
            conn = manager.AdbcConnection(self._open[0])
            self._open.append(conn)
            conn.set_autocommit(False)
            stmt = manager.AdbcStatement(conn)
            self._open.append(stmt)
            for statement in (
                *_SESSION,
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                "SET TRANSACTION SNAPSHOT " + _literal(snapshot),
            ):
                stmt.set_sql_query(statement)
                stmt.execute_update()
            stmt.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)})
            stmt.set_sql_query(query)
            self.handle, _ = stmt.execute_query()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Any:
        return self.handle

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close what is open, the statement first."""
        while self._open:
            with contextlib.suppress(Exception):
                self._open.pop().close()


def record_batches(
    manager: Any,
    conninfo: str,
    cols: ArrowColumns,
    query: str,
    snapshot: str,
) -> Generator[Any, None, None]:
    """The canonical record batches of ``query`` read in ``snapshot`` (:class:`AdbcStream`).
    Errors are the driver's (``manager.Error``) or pyarrow's (while streaming): the caller
    maps them."""
    with AdbcStream(manager, conninfo, query, snapshot) as handle:
        reader = cols.pa.RecordBatchReader._import_from_c(handle.address)
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                if batch.num_rows:
                    yield canonical(cols, batch)
        finally:
            with contextlib.suppress(Exception):
                reader.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def canonical(cols: ArrowColumns, batch: Any) -> Any:
    """A batch as the driver gives it, in the CSV reading's types (see the module docs)."""
    pa = cols.pa
    arrays = []
    for i, t in enumerate(cols.types):
        array = batch.column(i)
        if isinstance(array, pa.ExtensionArray):
            array = array.storage
        want = cols.canonical[i]
        if t.kind is Kind.DECIMAL:
            with contextlib.suppress(pa.ArrowInvalid):  # kept as text: as the CSV reading
                array = pa.compute.cast(array, want, memory_pool=pool(pa))
        elif t.kind is Kind.DATE:
            array = _dated(pa, array, date=True)
        elif t.kind is Kind.TIMESTAMP:
            array = _dated(pa, array, date=False, tz=t.tz)
        if array.type != want and array.type != pa.string():
            # a zone's name (the values are UTC already)
            array = array.cast(want, memory_pool=pool(pa))
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=list(cols.names))


def _dated(pa: Any, array: Any, *, date: bool, tz: bool = False) -> Any:
    """``array`` as it is when every value lies in the years 1-9999, else PostgreSQL's text
    of each value (the driver's wrapped epoch shift undone)."""
    lo, hi = (_MIN_DAYS, _MAX_DAYS) if date else (_MIN_US, _MAX_US)
    raw = array.view(pa.int32() if date else pa.int64())
    bounds = pa.compute.min_max(raw, memory_pool=pool(pa))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is None or (lo <= low and high <= hi):
        return array
    return pa.array(
        [None if v is None else _pg_text(v, date=date, tz=tz) for v in raw.to_pylist()],
        pa.string(),
    )


def _pg_text(value: int, *, date: bool, tz: bool) -> str:
    if date:
        days = _wrap(value - _EPOCH_DAYS, 32)
        return date_text(struct.pack("!i", days))
    us = _wrap(value - _EPOCH_US, 64)
    return timestamp_text(struct.pack("!q", us), tz)


def _wrap(n: int, bits: int) -> int:
    """``n`` as a signed integer of ``bits`` bits (two's complement)."""
    n &= (1 << bits) - 1
    return n - (1 << bits) if n >> (bits - 1) else n


def error_text(exc: BaseException) -> str:
    """The first line of a driver or pyarrow error, without the driver's prefixes."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    for prefix in ("IO: ", "INVALID_STATE: ", "INVALID_ARGUMENT: ", "INTERNAL: "):
        first = first.removeprefix(prefix)
    return first


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE a driver error carries (``None`` for pyarrow's errors without one)."""
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and len(state) == 5:
        return state
    text = str(exc)
    at = text.rfind("SQLSTATE: ")
    if at >= 0:
        code = text[at + 10 : at + 15]
        return code if len(code) == 5 else None
    return None

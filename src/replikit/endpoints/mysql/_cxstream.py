"""A MySQL/MariaDB unit as one Arrow stream read by connectorx, for a target engine that reads
Arrow streams in its own code (DuckDB; see
:class:`~replikit.pipeline.contracts.SupportsArrowStreamRead`).

connectorx (Rust, an optional dependency: ``pip install 'replikit[mysql-arrow]'``) reads the
rows through the binary protocol straight into Arrow: the server sends its stored values (no
CSV lines built on the server, about a third of its CPU), and no Python object is made per row.
Measured on the benchmark's 1M ``orders`` rows into DuckDB (benchmarks/README.md).

Each column is selected as a value connectorx reads exactly for every value the column can
hold, or as its canonical text, which the target casts (the stream's contract):

* integers and doubles as they are; a DECIMAL of at most 28 digits and 10 decimals as it is
  (connectorx reads decimals into ``decimal128(38, 10)``), a wider one as its text;
* strings, ENUM and JSON as utf8mb4 text (``CONVERT`` where the column is in another
  character set);
* ``TINYINT(1)`` as it is where it is 0 or 1, else NULL;
* DATE, DATETIME and TIMESTAMP as ``column + INTERVAL 0 DAY`` (TIMESTAMP becomes a DATETIME in
  the session's UTC), which is NULL for a zero or invalid date (connectorx would panic on
  one).

Each batch of those last two is checked to hold no more NULLs than the source column (whose
NULLs a flag column selected beside it counts, then dropped).

A batch that fails a check raises :class:`~replikit.DataError`: the target rolls the unit back
and it goes as CSV lines (:mod:`._csvlines`), which read a zero date as NULL where
``zero_dates="null"`` allows (and count it), and otherwise refuse the row by name.

A table with any other column (BIT, binary, FLOAT, TIME, YEAR, geometry...) is not streamed
(:func:`select_list` returns ``None``), nor a column connectorx cannot read without a Rust
panic (it has no fallback for a value it cannot convert).

Memory. connectorx reads ahead of its consumer without bound, so a unit is read in *pages*
of :data:`PAGE_ROWS` rows along its single integer primary key (``WHERE key > last ORDER BY
key LIMIT n``, the next page opened when the last one is read): the read-ahead is at most a
page. A table without such a key is streamed only when its estimated rows fit in one page.
Each page is its own statement, so a unit is consistent page by page, as key ranges are
(the per-unit snapshot of :class:`~replikit.endpoints.mysql.source.MysqlReader` does not
reach connectorx's connections): a reader that holds a snapshot for CDC never streams.

connectorx is used only over TCP without TLS options (it takes no ``ssl_*`` or socket from
the URL here), and is tried once per process and URL (:func:`unusable`): replikit's own driver
logs in over TCP first (connectorx's pool holds the GIL while it retries a refused login for
30 s), then connectorx runs ``SELECT 1``. A server it cannot read from leaves every unit on the
CSV lines (:mod:`._csvlines`), with one log line saying why; under ``?arrow=connectorx`` that
is a :class:`~replikit.ConnectError` instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import quote

from replikit.endpoints.base import hide_secret
from replikit.endpoints.mysql._dialect import DIALECT
from replikit.endpoints.mysql._params import ConnParams
from replikit.errors import DataError
from replikit.schema.model import Column, TableSchema
from replikit.schema.types import Kind

__all__ = [
    "BATCH_ROWS",
    "PAGE_ROWS",
    "Check",
    "CxStream",
    "Selection",
    "check_batch",
    "connectorx",
    "select_list",
    "url_for",
]

log = logging.getLogger("replikit.mysql")

#: rows per page (one statement; at most two are read ahead of the target). Measured on the
#: benchmark's 1.1M rows: 0.2-0.3 s faster than 65,536 at 10-15 MB more peak RSS
PAGE_ROWS = 131_072
#: rows per record batch connectorx makes
BATCH_ROWS = 16_384
#: the largest DECIMAL connectorx reads exactly (``decimal128(38, 10)`` through a 28-digit
#: decimal type); a wider one is selected as its text
_DECIMAL_DIGITS, _DECIMAL_SCALE = 28, 10
#: the session every page runs in: UTC for TIMESTAMP's text, utf8mb4 results
_SESSION = ["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]
_PROBE_SECONDS = 3.0
#: the prefix of the extra columns a date check reads (a table with such a column name is not
#: streamed)
_FLAG = "__replikit_isnull_"

_state: dict[str, Any] = {}
_state_lock = threading.Lock()


def _lit(text: str) -> str:
    """A utf8mb4 string literal that no ``sql_mode`` reads differently."""
    return f"_utf8mb4 X'{text.encode().hex().upper()}'"


def _failure(exc: BaseException) -> bool:
    """Whether ``exc`` is connectorx failing (an ``Exception``, or a Rust panic, which pyo3
    raises as a ``BaseException``), not an interrupt."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def connectorx() -> ModuleType | None:
    """The connectorx module, or ``None`` where it (or pyarrow) is not installed. Imported
    once, with its Rust logger off (it would print every retried connection to stderr)."""
    with _state_lock:
        if "module" not in _state:
            _state["module"] = _import()
        module: ModuleType | None = _state["module"]
        return module


def _import() -> ModuleType | None:
    if (
        importlib.util.find_spec("connectorx") is None
        or importlib.util.find_spec("pyarrow") is None
    ):
        return None
    before = os.environ.get("RUST_LOG")
    os.environ["RUST_LOG"] = "off"  # read once, when the module starts its logger
    try:
        import connectorx as cx

        return cx
    except ImportError:  # a broken install: read as if absent
        return None
    finally:
        if before is None:
            os.environ.pop("RUST_LOG", None)
        else:
            os.environ["RUST_LOG"] = before


def url_for(params: ConnParams) -> str | None:
    """The ``mysql://`` URL connectorx connects with, or ``None`` where it cannot connect as
    replikit's drivers do (a Unix socket, TLS options)."""
    mode = params.ssl.get("ssl_mode", "")
    if params.unix_socket is not None or (params.ssl and mode != "DISABLED"):
        return None
    user = quote(params.user or "", safe="")
    password = f":{quote(params.password, safe='')}" if params.password else ""
    host = params.host or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"  # TCP, as the drivers connect to a host name
    if ":" in host:
        host = f"[{host}]"
    database = quote(params.database or "", safe="")
    return f"mysql://{user}{password}@{host}:{params.port or 3306}/{database}"


def unusable(cx: ModuleType, url: str, params: ConnParams) -> str | None:
    """Why connectorx cannot read from the server at ``url`` (``None``: it can): tried once
    per process and URL, first as a TCP login of replikit's own driver (:func:`_tcp_login`),
    then as connectorx's ``SELECT 1``, waited for at most :data:`_PROBE_SECONDS`."""
    key = f"probe:{url}"
    with _state_lock:
        if key in _state:
            known: str | None = _state[key]
            return known
        said = _tcp_login(params)
        if said is not None:
            _state[key] = said
            _log_unused(params, said)
            return said
        outcome: list[str | None] = []

        def probe() -> None:
            try:
                cx.read_sql(url, "SELECT 1", return_type="arrow_stream")
                outcome.append(None)
            except BaseException as exc:
                if not _failure(exc):
                    raise
                outcome.append(hide_secret(str(exc), params.password))

        thread = threading.Thread(target=probe, name="replikit-connectorx-probe", daemon=True)
        thread.start()
        thread.join(_PROBE_SECONDS)
        said = outcome[0] if outcome else f"no answer in {_PROBE_SECONDS:.0f} s"
        _state[key] = said
        if said is not None:
            _log_unused(params, said)
        return said


def _tcp_login(params: ConnParams) -> str | None:
    """Why replikit's own driver cannot log in over TCP as connectorx would (``None``: it
    can). Tried first: connectorx holds the GIL while its pool retries a refused login for
    30 s, which no timeout here could cut short."""
    from dataclasses import replace

    from replikit.endpoints.mysql._connect import connect
    from replikit.errors import Error

    host = params.host if params.host not in (None, "localhost") else "127.0.0.1"
    try:
        connect(replace(params, host=host, unix_socket=None)).close()
    except Error as exc:
        return str(exc)
    return None


def _log_unused(params: ConnParams, said: str) -> None:
    log.info(
        "MySQL %s: not read through connectorx (%s); reading CSV lines instead",
        params.where(),
        said,
    )


@dataclass(frozen=True, slots=True)
class Check:
    """A test each record batch passes before DuckDB reads it: ``column`` holds no more NULLs
    than the source column, counted by ``flag`` (``IF(column IS NULL, NULL, 1)`` selected
    beside it; ``None`` for a NOT NULL column). The column's expression is NULL for a value
    the stream cannot carry exactly: a zero or invalid date (``+ INTERVAL 0 DAY``), a
    ``TINYINT(1)`` other than 0/1. ``what`` says which, for the message."""

    column: str
    flag: str | None
    what: str


@dataclass(frozen=True, slots=True)
class Selection:
    """A table's stream SELECT list: ``sql``, the ``checks`` of each batch, and the ``flags``
    (extra columns the checks read, dropped before DuckDB sees the batch)."""

    sql: str
    checks: tuple[Check, ...]
    flags: tuple[str, ...]


def _expression(column: Column, tinyint1_as_bool: bool) -> tuple[str, str | None] | None:
    """How ``column`` is selected into the stream (see the module docstring), and what its
    batches are checked for (``None``: nothing; else the expression is NULL for such a
    value)."""
    t = column.type
    q = DIALECT.quote(column.name)
    base = t.native.lower().split("(")[0].split()[0] if t.native else ""
    kind = t.kind
    if kind is Kind.INT and base not in ("bit", "year"):
        return q, None
    if kind is Kind.FLOAT and (t.bits or 64) > 32 and base in ("double", "real"):
        return q, None
    if kind is Kind.DECIMAL:
        exact = (t.precision or 65) <= _DECIMAL_DIGITS and (t.scale or 0) <= _DECIMAL_SCALE
        return (q if exact else f"CAST({q} AS CHAR)"), None
    if kind in (Kind.STRING, Kind.TEXT, Kind.ENUM, Kind.JSON):
        utf8 = (column.collation or "").startswith("utf8mb4") and kind is not Kind.JSON
        return (q if utf8 else f"CONVERT({q} USING utf8mb4)"), None
    if kind is Kind.BOOL and tinyint1_as_bool and base in ("tinyint", "bool", "boolean"):
        return f"IF({q} IN (0, 1), {q}, NULL)", "a TINYINT(1) other than 0/1"
    if kind in (Kind.DATE, Kind.TIMESTAMP) and base in ("date", "datetime", "timestamp"):
        # its own value (TIMESTAMP as a DATETIME in the session's UTC); NULL where the date is
        # zero or invalid (connectorx would panic on one)
        return f"{q} + INTERVAL 0 DAY", "a zero or invalid date"
    return None


def select_list(table: TableSchema, tinyint1_as_bool: bool) -> Selection | None:
    """The SELECT list of ``table``'s stream, each column named as the source's, or ``None``
    when a column has no stream form here."""
    out, checks, flags = [], [], []
    for i, c in enumerate(table.columns):
        chosen = _expression(c, tinyint1_as_bool)
        if chosen is None:
            return None
        value, what = chosen
        q = DIALECT.quote(c.name)
        out.append(f"{value} AS {q}")
        if what is None:
            continue
        flag = None
        if c.nullable:
            flag = f"{_FLAG}{i}"
            out.append(f"IF({q} IS NULL, NULL, 1) AS {DIALECT.quote(flag)}")
            flags.append(flag)
        checks.append(Check(c.name, flag, what))
    if not out or set(flags) & set(table.column_names):
        return None
    return Selection(", ".join(out), tuple(checks), tuple(flags))


def check_batch(batch: Any, checks: Sequence[Check], table: str) -> None:
    """Raise :class:`DataError` when a checked column of ``batch`` holds more NULLs than its
    source column (:class:`Check`): the unit then goes as CSV lines, which apply the
    ``zero_dates`` policy or name the row. Null counts only: no compute kernel is loaded."""
    rows = batch.num_rows
    for check in checks:
        nulls = batch.column(check.flag).null_count if check.flag is not None else 0
        if batch.column(check.column).null_count > nulls:
            raise DataError(
                f"column {check.column} holds {check.what} in these {rows} rows: read as CSV "
                "lines instead",
                table=table,
            )


def page_key(table: TableSchema) -> str | None:
    """The single integer primary-key column pages are read along, or ``None``."""
    if len(table.key) != 1:
        return None
    column = table.column(table.key[0])
    return column.name if column.type.kind is Kind.INT else None


#: ``page_end(after)``: the key of the last row of the page after key ``after`` (``None``:
#: from the unit's start), or ``None`` when that page holds the rest of the unit
PageEnd = Callable[[int | None], int | None]


#: the target engine's memory this stream was measured fastest with, against its 32MB default
#: (DuckDB: 1.1M rows in 4.7 s against 5.1-5.3 s, 280 MB against 250 MB peak; 128MB gained
#: nothing more): a writer whose limit the user did not set raises it for the unit
ENGINE_MEMORY = "64MB"


class CxStream:
    """A unit's rows as pages of one ``SELECT`` read by connectorx: entered, it gives a
    pyarrow ``RecordBatchReader`` (``__arrow_c_stream__``) over every page in key order;
    left, it closes the pages open. Each page is a key range whose end ``page_end`` finds
    (a walk of :data:`PAGE_ROWS` keys on the source); the next page is opened in a thread as
    one starts being read, so the target never waits for a page to start, and at most two
    are read ahead. Errors while reading are :class:`DataError` s with the password removed (the
    target rolls the unit back and it goes as CSV lines)."""

    def __init__(
        self,
        cx: ModuleType,
        url: str,
        params: ConnParams,
        table: TableSchema,
        select: Selection,
        key: str | None,
        bounds: tuple[int | None, int | None],
        page_end: PageEnd,
    ) -> None:
        self._cx = cx
        self._url = url
        self._params = params
        self._table = str(table.id)
        name = DIALECT.qualified(table.id.schema, table.id.name)
        self._from = f"SELECT {select.sql} FROM {name}"  # noqa: S608
        self._selection = select
        self._key = key
        self._bounds = bounds
        self._page_end = page_end
        self._open_pages: list[Any] = []
        self._ahead: ThreadPoolExecutor | None = None
        #: see :data:`ENGINE_MEMORY`
        self.engine_memory = ENGINE_MEMORY

    def _query(self, after: int | None, last: int | None) -> str:
        """The page of keys ``> after`` and ``<= last`` (``None``: unbounded) within the
        unit's key range ``bounds`` (``>= lower``, ``< upper``)."""
        if self._key is None:
            return self._from
        k = DIALECT.quote(self._key)
        lower, upper = self._bounds
        parts = []
        if lower is not None:
            parts.append(f"{k} >= {int(lower)}")
        if upper is not None:
            parts.append(f"{k} < {int(upper)}")
        if after is not None:
            parts.append(f"{k} > {int(after)}")
        if last is not None:
            parts.append(f"{k} <= {int(last)}")
        return f"{self._from} WHERE {' AND '.join(parts)}" if parts else self._from

    def _open(self, after: int | None) -> tuple[Any, int | None]:
        """The page after key ``after``, open, and the key it ends at (``None``: the last)."""
        last = self._page_end(after) if self._key is not None else None
        with self._mapped():
            page = self._cx.read_sql(
                self._url,
                self._query(after, last),
                return_type="arrow_stream",
                batch_size=BATCH_ROWS,
                pre_execution_query=_SESSION,
            )
        self._open_pages.append(page)
        return page, last

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """connectorx's failures (a Rust panic included) as :meth:`_error` s."""
        try:
            yield
        except (DataError, StopIteration):
            raise
        except BaseException as exc:
            if not _failure(exc):
                raise
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> DataError:
        said = hide_secret(str(exc), self._params.password).strip() or type(exc).__name__
        return DataError(f"connectorx could not read the rows: {said}", table=self._table)

    def __enter__(self) -> Any:
        import pyarrow as pa

        self._ahead = ThreadPoolExecutor(1, thread_name_prefix="replikit-connectorx")
        first = self._open(None)
        schema = first[0].schema
        for flag in self._selection.flags:
            schema = schema.remove(schema.get_field_index(flag))
        return pa.RecordBatchReader.from_batches(schema, self._pages(first, schema))

    def __exit__(self, *exc: object) -> None:
        if self._ahead is not None:  # a page still being opened is closed below
            self._ahead.shutdown(wait=True, cancel_futures=True)
            self._ahead = None
        while self._open_pages:
            with contextlib.suppress(Exception):
                self._open_pages.pop().close()

    def _pages(self, first: tuple[Any, int | None], schema: Any) -> Iterator[Any]:
        page, last = first
        checks, names = self._selection.checks, schema.names
        while True:
            # the next page's end is found and its read started while this one is read
            assert self._ahead is not None
            ahead = self._ahead.submit(self._open, last) if last is not None else None
            for batch in self._batches(page):
                check_batch(batch, checks, self._table)
                if self._selection.flags:
                    batch = batch.select(names)
                if not batch.schema.equals(schema):
                    raise DataError(
                        f"connectorx read a page as {batch.schema}, not {schema}",
                        table=self._table,
                    )
                yield batch
            with contextlib.suppress(Exception):
                self._open_pages.remove(page)
                page.close()
            if ahead is None:
                return
            page, last = ahead.result()

    def _batches(self, page: Any) -> Iterator[Any]:
        while True:
            try:
                with self._mapped():
                    batch = page.read_next_batch()
            except StopIteration:
                return
            yield batch

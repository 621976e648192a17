"""Full-load reading from MySQL/MariaDB with a server-side streaming cursor.

Each unit streams through an unbuffered cursor (``SSCursor``: ``mysql_use_result``), so memory
stays bounded whatever the table size; columns are selected and converted as described in
:mod:`replikit.endpoints.mysql._values`. Big tables with a single integer primary key are split
into key ranges, as for PostgreSQL.

Consistency. By default each unit opens its own connection and reads inside its own
``START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY``: every unit is consistent in itself,
but units (and tables) are read at slightly different moments, as in any parallel full load
without CDC. MySQL cannot share one snapshot between connections, so a reader that must be
consistent with a binlog position (the full-load + CDC handoff) is given **one connection**
that already holds the snapshot: ``MysqlReader(params, tables, connection=conn)``. Every read
(units, bounds, rows) then goes through that connection, one unit at a time under a lock;
units run by a thread pool simply queue. The reader never begins, commits or closes a
caller's connection; it only sets ``time_zone='+00:00'`` and network timeouts on it.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from replikit.endpoints.base import say_once
from replikit.endpoints.mysql import _cxstream
from replikit.endpoints.mysql._arrow_rows import MysqlArrow, arrow_columns
from replikit.endpoints.mysql._connect import (
    Driver,
    connect,
    driver_of,
    error_text,
    load_driver,
    read_error,
    scrub,
    setup_session,
)
from replikit.endpoints.mysql._copytext import (
    TEXT_FORMAT,
    Field,
    LineSelect,
    line_select,
)
from replikit.endpoints.mysql._csvlines import (
    CSV_FORMAT,
    CsvField,
    CsvLines,
    CsvText,
    csv_lines,
    csv_text,
)
from replikit.endpoints.mysql._cxstream import (
    CxStream,
    connectorx,
    page_key,
    select_list,
    unusable,
    url_for,
)
from replikit.endpoints.mysql._dialect import DIALECT
from replikit.endpoints.mysql._lines import chunks, read_ahead
from replikit.endpoints.mysql._params import ConnParams
from replikit.endpoints.mysql._values import (
    ZERO_DATE_POLICIES,
    BadValue,
    ColumnReader,
    ZeroDates,
    column_reader,
    convert_columns,
    text_reader,
)
from replikit.errors import ConfigError, ConnectError, DataError
from replikit.mapping.filters import pushdown
from replikit.pipeline.contracts import Batch, KeyRange, TextUnit, Unit, ValueNotes
from replikit.pipeline.splitting import split_table
from replikit.schema.convert import TablePlan
from replikit.schema.model import TableId, TableSchema
from replikit.schema.types import Kind

__all__ = ["MysqlReader"]

log = logging.getLogger(__name__)

#: a cursor's ``fetchmany``
Fetch = Callable[[int], Any]
#: whether a zero date in this CSV field may be read as NULL
Allowed = Callable[[CsvField], bool]


class MysqlReader:
    """Reads full-load batches of a set of MySQL/MariaDB tables.

    Args:
        params: where to connect (ignored for reads when ``connection`` is given).
        tables: the reflected tables to read.
        connection: a caller-owned DB-API connection (mysqlclient or PyMySQL) that every read
            goes through, e.g. one inside ``START TRANSACTION WITH CONSISTENT SNAPSHOT``;
            units are then read one at a time. ``None``: a connection (and snapshot) per unit.
        batch_rows: rows per :class:`Batch`.
        zero_dates: ``"null"`` (zero/invalid dates become NULL in nullable columns, refused in
            NOT NULL ones) or ``"error"`` (always refused). Counted in :attr:`zero_dates`.
        tinyint1_as_bool: read ``TINYINT(1)`` as bool (a value other than 0/1 stops the read);
            ``False`` keeps such columns integers.
    """

    dialect = DIALECT
    #: :meth:`copy_text` writes PostgreSQL COPY text (a writer with this ``text_format``)
    text_format = TEXT_FORMAT
    #: ... or, for a DuckDB target, CSV lines its own reader parses (:mod:`._csvlines`)
    text_formats = (TEXT_FORMAT, CSV_FORMAT)
    #: what :meth:`arrow_stream` reads with: ``"connectorx"`` where it is installed and the
    #: URL's ``arrow`` allows, or ``"none"`` (units then go as CSV lines or record batches)
    arrow_driver = "connectorx"

    def __init__(
        self,
        params: ConnParams,
        tables: Sequence[TableSchema],
        *,
        connection: Any | None = None,
        batch_rows: int = 1_000,
        zero_dates: str = "null",
        tinyint1_as_bool: bool = True,
    ) -> None:
        if batch_rows < 1:
            raise ConfigError(f"batch_rows must be positive, got {batch_rows}")
        if zero_dates not in ZERO_DATE_POLICIES:
            raise ConfigError(f"zero_dates must be one of {ZERO_DATE_POLICIES}, got {zero_dates!r}")
        self._params = params
        self._tables = list(tables)
        self._by_id = {t.id: t for t in self._tables}
        self.batch_rows = batch_rows
        self.tinyint1_as_bool = tinyint1_as_bool
        self._shared = connection
        self._shared_ready = False
        self._busy: Unit | None = None
        self._lock = threading.RLock()
        self._zero = ZeroDates(zero_dates)
        #: each unit's zero dates read as NULL, by source column, from its last complete read
        self._unit_zero: dict[_UnitKey, Counter[str]] = {}
        self._zero_lock = threading.Lock()

    @property
    def tables(self) -> Sequence[TableSchema]:
        """The tables this reader was made for."""
        return self._tables

    @property
    def zero_dates(self) -> dict[tuple[str, str], int]:
        """How many zero/invalid dates were read as NULL, per ``(table, column)``: each unit
        counted once, by its last complete read (a unit read again, after its load was rolled
        back and retried or redone by another path, replaces its earlier count). Units read in
        another process (a process pool, Dask) are counted in that process's reader, which
        hands each unit's count back with its rows (:meth:`value_notes`): the task's
        statistics note every table's total."""
        total: Counter[tuple[str, str]] = Counter()
        with self._zero_lock:
            for (table, *_), counts in self._unit_zero.items():
                for column, n in counts.items():
                    total[(table, column)] += n
        return dict(total)

    def value_notes(self, unit: Unit | None = None) -> ValueNotes:
        """:attr:`zero_dates` as the task's statistics note them, per table and column
        (:class:`~replikit.pipeline.contracts.SupportsValueNotes`); ``unit``: that unit's."""
        if unit is None:
            counted = self.zero_dates
        else:
            with self._zero_lock:
                found = Counter(self._unit_zero.get(_unit_key(unit), Counter()))
            counted = {(str(unit.table), column): n for column, n in found.items()}
        return self._zero.notes(counted)

    def close(self) -> None:
        """Nothing to release: unit connections close with their unit; shared ones are yours."""

    def __enter__(self) -> MysqlReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- other processes --------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Pickled for another process (a process pool, Dask workers): each unit opens its
        own connection and snapshot there, as it does in a thread. A reader given a shared
        connection (the snapshot of a full load + CDC handoff) does not pickle."""
        if self._shared is not None:
            raise pickle.PicklingError(
                "it reads through one connection that holds the snapshot matching the binlog "
                "position (a full load followed by CDC), and MySQL cannot share a snapshot "
                "with another process"
            )
        return {
            "params": self._params,
            "tables": self._tables,
            "batch_rows": self.batch_rows,
            "zero_dates": self._zero.policy,
            "tinyint1_as_bool": self.tinyint1_as_bool,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["params"],
            state["tables"],
            batch_rows=state["batch_rows"],
            zero_dates=state["zero_dates"],
            tinyint1_as_bool=state["tinyint1_as_bool"],
        )

    # -- connections ------------------------------------------------------------------------
    @property
    def driver(self) -> Driver:
        """The driver of the shared connection, or the one ``params`` selects."""
        return (
            driver_of(self._shared)
            if self._shared is not None
            else load_driver(self._params.driver)
        )

    @contextmanager
    def _connection(self, unit: Unit | None) -> Iterator[Any]:
        if self._shared is None:
            conn = connect(self._params)
            try:
                with conn.cursor() as cur:
                    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                yield conn
            finally:
                conn.close()
            return
        with self._lock:
            if self._busy is not None:
                raise ConfigError(
                    f"the reader's shared connection is still streaming {self._busy}; read "
                    "one unit to its end before starting another in the same thread"
                )
            if not self._shared_ready:
                setup_session(self._shared, sql_mode=False)
                self._shared_ready = True
            self._busy = unit
            try:
                yield self._shared
            finally:
                self._busy = None

    # -- units ------------------------------------------------------------------------------
    @property
    def on_this_machine(self) -> bool:
        """Whether the server runs on this machine
        (:class:`~replikit.pipeline.contracts.SupportsPlacement`)."""
        return self._params.on_this_machine

    def units(self, table: TableSchema, *, split_rows: int | None = None) -> list[Unit]:
        """One unit, or integer primary-key ranges of about ``split_rows`` rows each
        (:func:`~replikit.pipeline.splitting.split_table`)."""
        return split_table(table, split_rows, self)

    def key_span(self, table: TableSchema, column: str) -> tuple[int, int] | None:
        """The minimum and maximum of ``column``."""
        q, name = _escaped(column, table.id)
        row = self._one_row(table, f"SELECT MIN({q}), MAX({q}) FROM {name}", ())  # noqa: S608
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def key_quantiles(self, table: TableSchema, column: str, pieces: int) -> list[int]:
        """Bounds a walk along the primary key finds every ``rows / pieces`` keys (one pass
        over the key index in all; MySQL has no ordered-set aggregate to sample with)."""
        q, name = _escaped(column, table.id)
        step = max(1, (table.estimated_rows or 0) // pieces)
        sql = f"SELECT {q} FROM {name} WHERE {q} >= %s ORDER BY {q} LIMIT 1 OFFSET %s"  # noqa: S608
        span = self.key_span(table, column)
        bounds: list[int] = []
        at = span[0] if span else 0
        for _ in range(pieces - 1):
            row = self._one_row(table, sql, (at, step))
            if row is None:
                break
            at = int(row[0])
            bounds.append(at)
        return bounds

    def _one_row(self, table: TableSchema, sql: str, params: Sequence[Any]) -> Any:
        """The first row of ``sql`` (``%`` in names escaped: parameters are always bound)."""
        with self._connection(None) as conn, conn.cursor() as cur:
            try:
                cur.execute(sql, params)
                return cur.fetchone()
            except driver_of(conn).Error as exc:
                raise read_error(exc, str(table.id), self._params) from exc

    # -- reading ----------------------------------------------------------------------------
    def _table(self, tid: TableId) -> TableSchema:
        try:
            return self._by_id[tid]
        except KeyError:
            raise ConfigError(f"table {tid} is not one of this reader's tables") from None

    def columns(
        self,
        table: TableSchema,
        as_text: frozenset[str] = frozenset(),
        zero: ZeroDates | None = None,
    ) -> list[ColumnReader]:
        """How each column of ``table`` is selected and converted (``as_text``: the columns
        read as MySQL's own text form, e.g. ``838:59:59`` or ``0000-00-00``); zero dates read
        as NULL are counted in ``zero`` (a unit's own counter; ``None``: a new one, uncounted)."""
        name = str(table.id)
        zero = ZeroDates(self._zero.policy) if zero is None else zero
        return [
            text_reader(c)
            if c.name in as_text
            else column_reader(name, c, zero=zero, tinyint1_as_bool=self.tinyint1_as_bool)
            for c in table.columns
        ]

    def arrow_readable(self, table: TableSchema) -> bool:
        """True when every column of ``table`` reads into Arrow in bulk
        (:mod:`._arrow_rows`); tinyint(1) kept as integers reads row by row."""
        table = self._table(table.id)
        if not self.tinyint1_as_bool and any(c.type.kind is Kind.BOOL for c in table.columns):
            return False
        return arrow_columns(table) is not None

    def read_arrow(self, unit: Unit) -> Iterator[Any]:
        """The unit's rows as Arrow record batches, read ahead in a thread (the drivers and
        pyarrow release the GIL, so reading overlaps the writer): CSV lines the server builds,
        parsed by pyarrow (:mod:`._csvlines`), or for a table with a column those lines do
        not carry, the row path's SELECT with each column of a batch converted at once
        (:mod:`._arrow_rows`)."""
        table = self._table(unit.table)
        cols = arrow_columns(table)
        if cols is None:
            raise ConfigError(f"table {table.id} has columns that cannot be read as Arrow")
        lines = csv_lines(cols.pa, table)
        if lines is not None:
            return read_ahead(self._csv_batches(unit, table, lines))
        return read_ahead(self._arrow_batches(unit, table, cols))

    def _arrow_batches(self, unit: Unit, table: TableSchema, cols: MysqlArrow) -> Iterator[Any]:
        zero = ZeroDates(self._zero.policy)
        readers = self.columns(table, zero=zero)
        converters = [(i, r) for i, r in enumerate(readers) if r.convert is not None]

        def slow(rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
            return self._convert(table, rows, converters)

        for batch in self._batches(unit, table, readers, None):
            yield cols.batch(batch.rows, slow)
        self._add_zero_dates(unit, table, _by_column(zero))

    def arrow_stream(self, unit: Unit) -> CxStream | None:
        """The unit as one Arrow stream read by connectorx, for a target engine that reads it
        in its own code (:class:`~replikit.pipeline.contracts.SupportsArrowStreamRead`,
        :mod:`._cxstream`), or ``None`` (then CSV lines or record batches): the URL's
        ``arrow=csv``; connectorx not installed (a :class:`~replikit.ConfigError` under
        ``arrow=connectorx``); a reader holding a snapshot (CDC); a Unix socket or TLS
        options; a column without a stream form; a unit that cannot be paged along a single
        integer key (a table without one, past one page of rows); or a server connectorx
        cannot log in to."""
        wanted = self._params.arrow
        if wanted == "csv" or self.arrow_driver != "connectorx":
            return None
        if self._shared is not None or unit.as_text:
            return None
        table = self._table(unit.table)
        select = select_list(table, self.tinyint1_as_bool)
        url = url_for(self._params)
        if select is None or url is None or unit.where is not None or unit.select is not None:
            return None
        key = page_key(table)
        if unit.range is not None and (key is None or unit.range.columns != (key,)):
            return None
        rows = table.estimated_rows
        if key is None and (rows is None or rows > _cxstream.PAGE_ROWS):
            return None
        cx = connectorx()
        if cx is None:
            if wanted == "connectorx":
                raise ConfigError(
                    "the MySQL URL asks for arrow=connectorx, which is not installed: "
                    "pip install 'replikit[mysql-arrow]', or leave out arrow=connectorx"
                )
            _hint_connectorx()
            return None
        why = unusable(cx, url, self._params)
        if why is not None:
            if wanted == "connectorx":
                raise ConnectError(
                    f"the MySQL URL asks for arrow=connectorx, and connectorx cannot read from "
                    f"{self._params.where()}: {why}; use arrow=auto or arrow=csv to read CSV lines"
                )
            return None
        span = unit.range or KeyRange(())
        bounds = (
            int(span.lower[0]) if span.lower is not None else None,
            int(span.upper[0]) if span.upper is not None else None,
        )
        ends = self._page_ends(table, key, bounds) if key is not None else lambda _: None
        return CxStream(cx, url, self._params, table, select, key, bounds, ends)

    def _page_ends(
        self, table: TableSchema, key: str, bounds: tuple[int | None, int | None]
    ) -> Callable[[int | None], int | None]:
        """``page_end`` of :class:`._cxstream.CxStream`: the key ``PAGE_ROWS`` keys
        after ``after`` within ``bounds`` (one walk along the primary key), or ``None``
        when fewer rows are left."""
        q, name = _escaped(key, table.id)
        lower, upper = bounds

        def end(after: int | None) -> int | None:
            parts, params = [], []
            for op, bound in ((">=", lower), ("<", upper), (">", after)):
                if bound is not None:
                    parts.append(f"{q} {op} %s")
                    params.append(bound)
            where = f" WHERE {' AND '.join(parts)}" if parts else ""
            sql = (
                f"SELECT {q} FROM {name}{where} ORDER BY {q} "  # noqa: S608
                f"LIMIT 1 OFFSET {_cxstream.PAGE_ROWS - 1}"
            )
            row = self._one_row(table, sql, params)
            return None if row is None else int(row[0])

        return end

    def _csv_batches(self, unit: Unit, table: TableSchema, lines: CsvLines) -> Iterator[Any]:
        def batches(fetch: Fetch, allowed: Allowed, counts: Counter[str]) -> Iterator[Any]:
            for rows, data in lines.chunks(fetch):
                yield lines.batch(rows, data, allowed, counts)

        return self._csv_read(unit, table, lines.expression, batches)

    def _csv_read(
        self,
        unit: Unit,
        table: TableSchema,
        expression: str,
        consume: Callable[[Fetch, Allowed, Counter[str]], Iterator[Any]],
    ) -> Iterator[Any]:
        """Run the unit's server-built CSV line ``expression`` and hand its cursor to ``consume``.

        ``consume`` gets the cursor's ``fetchmany``, which zero-date fields may become NULL
        (the ``zero_dates`` policy), and the counter of zero dates it met; they become
        the unit's counts (:meth:`_add_zero_dates`) once its lines are all read.
        """
        sql, params = _unit_select(expression, table.id, unit)
        counts: Counter[str] = Counter()
        policy = self._zero.policy

        def allowed(field: CsvField) -> bool:
            return policy == "null" and field.nullable

        with self._connection(unit) as conn:
            driver = driver_of(conn)
            cur = conn.cursor(driver.ss_cursor)
            try:
                with self._read_errors(driver, str(table.id)):
                    cur.execute(sql, params or None)
                    yield from consume(cur.fetchmany, allowed, counts)
            finally:
                cur.close()
        self._add_zero_dates(unit, table, counts)

    def read(self, unit: Unit) -> Iterator[Batch]:
        """Stream the unit's rows as canonical Python values, ``batch_rows`` per batch."""
        table = self._table(unit.table)
        zero = ZeroDates(self._zero.policy)
        readers = self.columns(table, unit.as_text, zero)
        converters = [(i, r) for i, r in enumerate(readers) if r.convert is not None]
        yield from self._batches(unit, table, readers, converters)
        self._add_zero_dates(unit, table, _by_column(zero))

    def _batches(
        self,
        unit: Unit,
        table: TableSchema,
        readers: list[ColumnReader],
        converters: list[tuple[int, ColumnReader]] | None,
    ) -> Iterator[Batch]:
        """The unit's batches, converted by ``converters`` (``None``: driver values)."""
        sql, params = _unit_select(", ".join(r.expression for r in readers), table.id, unit)
        with self._connection(unit) as conn:
            driver = driver_of(conn)
            cur = conn.cursor(driver.ss_cursor)
            try:
                yield from self._stream(cur, driver, sql, params, table, converters)
            finally:
                cur.close()  # an unbuffered cursor drains what is left, keeping conn usable

    def copy_text(self, plan: TablePlan, unit: Unit) -> TextUnit | None:
        """The unit's rows as PostgreSQL COPY text built by the server (see
        :mod:`~replikit.endpoints.mysql._copytext`), read ahead in a thread; ``None`` when a
        column of ``plan`` needs the typed path (:meth:`read`).

        A value the typed path would refuse or must explain (a zero date it cannot load as
        NULL, a TINYINT(1) that is not 0 or 1, a line over ``max_allowed_packet``) raises
        :class:`~replikit.DataError`: redo the unit with :meth:`read` for the full message.
        """
        table = self._table(unit.table)
        if plan.target_dialect == "duckdb":
            return self._csv_text(plan, table, unit)
        if plan.target_dialect != "postgresql":
            return None
        select = line_select(
            plan, as_text=tuple(unit.as_text), tinyint1_as_bool=self.tinyint1_as_bool
        )
        if select is None:
            return None

        def utf8mb4(columns: Sequence[str]) -> LineSelect:  # the same lines, fewer CONVERTs
            again = line_select(
                plan,
                as_text=tuple(unit.as_text),
                tinyint1_as_bool=self.tinyint1_as_bool,
                utf8mb4=columns,
            )
            assert again is not None
            return again

        return TextUnit(select.columns, read_ahead(self._lines(table, unit, select, utf8mb4)))

    def _csv_text(self, plan: TablePlan, table: TableSchema, unit: Unit) -> TextUnit | None:
        """The unit as :data:`~._csvlines.CSV_FORMAT` lines of every column of ``table`` in
        its order (the plan's target names), or ``None``: a column without a CSV field, a
        column read as text, a plan that leaves out, reorders or converts a column (the
        writer checks the types), or TINYINT(1) kept as integers."""
        text = csv_text(table)
        if text is None or unit.as_text:
            return None
        if not self.tinyint1_as_bool and any(c.type.kind is Kind.BOOL for c in table.columns):
            return None
        if [cp.source.name for cp in plan.columns] != list(table.column_names):
            return None
        columns = tuple(cp.name for cp in plan.columns)
        return TextUnit(columns, read_ahead(self._csv_chunks(table, unit, text)))

    def _csv_chunks(self, table: TableSchema, unit: Unit, text: CsvText) -> Iterator[Any]:
        return self._csv_read(unit, table, text.expression, text.chunks)

    def _lines(
        self,
        table: TableSchema,
        unit: Unit,
        select: LineSelect,
        utf8mb4: Callable[[Sequence[str]], LineSelect],
    ) -> Iterator[tuple[int, bytes]]:
        name = str(table.id)
        nullable = {c.name for c in table.columns if c.nullable}
        counts: Counter[str] = Counter()

        def allowed(field: Field) -> bool:
            return self._zero.policy == "null" and field.source in nullable

        with self._connection(unit) as conn:
            driver = driver_of(conn)
            if select.charset_unknown:
                known = _utf8mb4_columns(conn, table.id, select.charset_unknown)
                select = utf8mb4(known) if known else select
            sql, params = _unit_select(select.expressions, table.id, unit)
            cur = conn.cursor(driver.ss_cursor)
            try:
                with self._read_errors(driver, name):
                    cur.execute(sql, params or None)
                    yield from chunks(cur.fetchmany, select, name, allowed, counts)
            finally:
                cur.close()
        self._add_zero_dates(unit, table, counts)

    def _stream(
        self,
        cur: Any,
        driver: Driver,
        sql: str,
        params: list[Any],
        table: TableSchema,
        converters: list[tuple[int, ColumnReader]] | None,
    ) -> Iterator[Batch]:
        names = table.column_names
        last: Sequence[Any] | None = None
        try:
            with self._read_errors(driver, str(table.id)):
                cur.execute(sql, params or None)
                while True:
                    rows = cur.fetchmany(self.batch_rows)
                    if not rows:
                        return
                    last = rows[-1]
                    if converters is not None:
                        rows = self._convert(table, rows, converters)
                    yield Batch(table.id, names, rows)
        except UnicodeDecodeError as exc:
            after = f" after key {_key(table, last)}" if last is not None else ""
            raise DataError(
                f"a text value is not valid in its character set ({exc.reason}){after}; "
                "fix the value at the source or declare the column with its real charset",
                table=str(table.id),
            ) from None

    @contextmanager
    def _read_errors(self, driver: Driver, table: str) -> Iterator[None]:
        """The driver's errors while reading ``table`` as replikit errors: a lost or refused
        connection as :class:`ConnectError`, the rest by :func:`read_error`."""
        try:
            yield
        except driver.OperationalError as exc:
            raise ConnectError(
                f"reading {table} from {self._params.where()} failed: "
                f"{scrub(error_text(exc), self._params)}"
            ) from None
        except driver.Error as exc:
            raise read_error(exc, table, self._params) from exc

    def _convert(
        self,
        table: TableSchema,
        rows: Sequence[Sequence[Any]],
        converters: list[tuple[int, ColumnReader]],
    ) -> list[Sequence[Any]]:
        try:
            return convert_columns(rows, converters)
        except (BadValue, ValueError, TypeError) as exc:
            return self._convert_rows(table, rows, converters, exc)

    def _convert_rows(
        self,
        table: TableSchema,
        rows: Sequence[Sequence[Any]],
        converters: list[tuple[int, ColumnReader]],
        first: Exception,
    ) -> list[Sequence[Any]]:
        """Redo a failed batch row by row to name the row and column in the error."""
        for row in rows:
            for index, reader in converters:
                value = row[index]
                if value is None or reader.convert is None:
                    continue
                try:
                    reader.convert(value)
                except (BadValue, ValueError, TypeError) as exc:
                    raise DataError(
                        f"cannot read value {_preview(value)}: {exc}",
                        table=str(table.id),
                        column=table.columns[index].name,
                        key=_key_dict(table, row),
                    ) from None
        raise DataError(f"cannot read a batch: {first}", table=str(table.id)) from first

    def _add_zero_dates(self, unit: Unit, table: TableSchema, counts: Counter[str]) -> None:
        """Make ``counts`` (zero dates read as NULL by source column, in a complete read of
        ``unit``) the unit's: they replace what an earlier read of the same unit counted (its
        load was rolled back, then retried or redone by another path), so each value is
        counted once. Logs only what no earlier read of the unit had logged."""
        key = _unit_key(unit)
        with self._zero_lock:
            before = self._unit_zero.get(key, Counter())
            self._unit_zero[key] = +counts
        for column, count in counts.items():
            new = count - before[column]
            if new > 0:
                log.warning(
                    "%s.%s: %d zero or invalid date(s) read as NULL (zero_dates='null')",
                    table.id,
                    column,
                    new,
                )


#: a unit's identity: its table, place among the table's units and key range
_UnitKey = tuple[str, int, int, KeyRange | None]


def _hint_connectorx() -> None:
    """Say once that connectorx would read into DuckDB faster."""
    say_once(
        log,
        "connectorx",
        "reading MySQL for DuckDB as CSV lines the server builds; "
        "pip install 'replikit[mysql-arrow]' (connectorx) reads it faster",
    )


def _unit_key(unit: Unit) -> _UnitKey:
    return (str(unit.table), unit.index, unit.count, unit.range)


def _by_column(zero: ZeroDates) -> Counter[str]:
    """A unit's :class:`ZeroDates` counts (of one table) by column."""
    return Counter({column: n for (_, column), n in zero.counts.items()})


def _utf8mb4_columns(conn: Any, tid: TableId, columns: Sequence[str]) -> list[str]:
    """Those of ``columns`` the server stores as utf8mb4 (MariaDB JSON: LONGTEXT of any
    character set, usually utf8mb4), so their text needs no ``CONVERT``; none when it cannot
    say (the conversion stays: correct either way)."""
    cur = conn.cursor()
    try:
        cur.execute(
            "SELECT COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (tid.schema or "", tid.name),
        )
        rows = cur.fetchall()
    except Exception:  # a server that hides it: keep the conversion
        log.debug("no character sets of %s", tid, exc_info=True)
        return []
    finally:
        cur.close()
    utf8 = {_text(c) for c, charset in rows if _text(charset or "").lower() == "utf8mb4"}
    return [c for c in columns if c in utf8]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _name(tid: TableId) -> str:
    return DIALECT.qualified(tid.schema, tid.name)


# kinds whose values PyMySQL binds and MySQL compares as Python does (TIMESTAMP columns
# depend on the session time zone, UUIDs on their storage: tested after reading only)
_PUSHED = frozenset(
    {Kind.INT, Kind.DECIMAL, Kind.DATE, Kind.TIME, Kind.BOOL, Kind.STRING, Kind.TEXT, Kind.ENUM}
)


def _unit_select(expressions: str, tid: TableId, unit: Unit) -> tuple[str, list[Any]]:
    """``SELECT expressions FROM`` the unit's table, within its key range and pushed
    filter, and the query's parameters."""
    where, params = _where(unit.range, unit)
    sql = f"SELECT {expressions} FROM {_name(tid)}"  # noqa: S608
    if params:  # run with parameters: a % in a quoted name is doubled for the driver
        sql = sql.replace("%", "%%") + where
    return sql, params


def _where(key_range: KeyRange | None, unit: Unit | None = None) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    if key_range is not None:
        cols = ", ".join(DIALECT.quote(c) for c in key_range.columns).replace("%", "%%")
        for op, bound in ((">=", key_range.lower), ("<", key_range.upper)):
            if bound is not None:
                marks = ", ".join(["%s"] * len(bound))
                parts.append(f"({cols}) {op} ({marks})")
                params.extend(bound)
    pushed = pushdown(
        unit.where if unit is not None else None,
        quote=lambda c: DIALECT.quote(c).replace("%", "%%"),
        mark="%s",
        kinds=_PUSHED,
    )
    if pushed is not None:
        parts.append(pushed[0])
        params.extend(pushed[1])
    return (" WHERE " + " AND ".join(parts), params) if parts else ("", [])


def _key_dict(table: TableSchema, row: Sequence[Any]) -> dict[str, Any]:
    names = table.column_names
    key = table.key or names
    return {k: row[names.index(k)] for k in key}


def _key(table: TableSchema, row: Sequence[Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in _key_dict(table, row).items())


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _escaped(column: str, tid: TableId) -> tuple[str, str]:
    """The quoted column and table names with ``%`` doubled, for a statement with parameters."""
    return DIALECT.quote(column).replace("%", "%%"), _name(tid).replace("%", "%%")

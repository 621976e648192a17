"""Full-load reading from PostgreSQL with binary COPY.

All reads of one reader share one snapshot: the first use opens a REPEATABLE READ, READ ONLY
transaction that exports its snapshot (``pg_export_snapshot``), and every unit's connection
imports it. So units of one table, and different tables, are mutually consistent. Call
:meth:`PostgresReader.close` (or use it as a context manager) to end that transaction. Given
``snapshot=`` (a name exported elsewhere, e.g. by ``CREATE_REPLICATION_SLOT ... (SNAPSHOT
'export')`` for a CDC handoff), every connection imports that snapshot instead; it must stay
exported (its exporting transaction open) until the reader's units have started.

Values are loaded through a binary server-side cursor (``fetchmany`` decodes a batch in
psycopg's C code; binary COPY's ``copy.rows()`` took a third more CPU per row on the
benchmark's tables); raw passthrough reads binary COPY. Columns are cast so each comes out in
its canonical Python form (:mod:`replikit.schema.types`): json, interval, enum and ``other`` as
text, money as numeric. Column batches (:mod:`._columns`) stream in libpq's chunks, their free
text as undecoded bytes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from replikit.endpoints.base import require, say_once

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402
from psycopg.types.string import ByteaBinaryLoader  # noqa: E402

from replikit.endpoints.postgres._arrow_adbc import (  # noqa: E402
    AdbcStream,
    adbc_manager,
    error_text,
    record_batches,
    select_types,
    sqlstate,
)
from replikit.endpoints.postgres._arrow_copy import (  # noqa: E402
    ArrowColumns,
    arrow_columns,
    arrow_readable,
)
from replikit.endpoints.postgres._arrow_copy import (  # noqa: E402
    record_batches as csv_record_batches,
)
from replikit.endpoints.postgres._columns import UTF8_TYPES, column_reading  # noqa: E402
from replikit.endpoints.postgres._connect import Connection, connect  # noqa: E402
from replikit.endpoints.postgres._dialect import DIALECT  # noqa: E402
from replikit.endpoints.postgres._errors import read_error, scrub  # noqa: E402
from replikit.endpoints.postgres._params import ConnParams  # noqa: E402
from replikit.endpoints.postgres._pushdown import FLAVOR  # noqa: E402
from replikit.endpoints.postgres._values import load_type, register_loaders  # noqa: E402
from replikit.errors import ConfigError, PositionLostError  # noqa: E402
from replikit.mapping.bound import TableMapping  # noqa: E402
from replikit.mapping.filters import pushdown  # noqa: E402
from replikit.mapping.pushed import Projection, project  # noqa: E402
from replikit.pipeline.contracts import Batch, ColumnBatch, KeyRange, Unit  # noqa: E402
from replikit.pipeline.splitting import split_table  # noqa: E402
from replikit.schema.model import TableId, TableSchema  # noqa: E402
from replikit.schema.types import Type  # noqa: E402

log = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = ["PostgresReader"]

_SAMPLE_ROWS = 100_000  # rows sampled for the key quantiles of a table with sparse keys
#: bytes of binary COPY data :meth:`PostgresReader.read_raw` yields at a time
RAW_BLOCK_BYTES = 256 * 1024


class PostgresReader:
    """Reads full-load batches (or raw binary COPY, Arrow record batches or column batches)
    of a set of tables from one snapshot."""

    raw_format = "postgresql-binary"
    dialect = DIALECT
    #: how :meth:`read_arrow` reads: ``"adbc"`` (where the driver is installed, else CSV) or
    #: ``"csv"``
    arrow_driver = "adbc"

    def __init__(
        self,
        params: ConnParams,
        tables: Sequence[TableSchema],
        *,
        batch_rows: int = 10_000,
        snapshot: str | None = None,
    ) -> None:
        if batch_rows < 1:
            raise ConfigError(f"batch_rows must be positive, got {batch_rows}")
        self._params = params
        self._tables = list(tables)
        self._by_id = {t.id: t for t in self._tables}
        self.batch_rows = batch_rows
        self._lock = threading.Lock()
        self._snapshot_conn: Connection | None = None
        self._snapshot: str | None = None
        self._imported = snapshot
        self._utf8: bool | None = None

    @property
    def tables(self) -> Sequence[TableSchema]:
        """The tables this reader was made for."""
        return self._tables

    # -- snapshot -------------------------------------------------------------------------
    def _exporter(self) -> tuple[Connection, str]:
        with self._lock:
            if self._snapshot_conn is None or self._snapshot is None:
                if self._imported is not None:
                    conn = self._importer(self._imported)
                    self._snapshot_conn, self._snapshot = conn, self._imported
                else:
                    conn = connect(self._params)
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
                    assert row is not None
                    self._snapshot_conn, self._snapshot = conn, str(row[0])
            return self._snapshot_conn, self._snapshot

    def _importer(self, snapshot: str) -> Connection:
        conn = connect(self._params)
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        except psycopg.Error as exc:
            conn.close()
            raise PositionLostError(
                f"cannot import snapshot {snapshot!r} at {self._params.where()} "
                f"({str(exc).strip()}): the transaction that exported it has ended or ran "
                "another command; start the full load again"
            ) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> Connection:
        if self._imported is not None:  # the exporting transaction is held elsewhere
            return self._importer(self._imported)
        _, snapshot = self._exporter()
        return self._importer(snapshot)

    # -- other processes --------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Pickled for another process (a process pool, Dask workers): the snapshot is
        exported here, and held open here, so every unit, wherever it runs, imports the same
        snapshot. The password travels inside the pickle (never in a ``repr``)."""
        _, snapshot = self._exporter()
        return {
            "params": self._params,
            "tables": self._tables,
            "batch_rows": self.batch_rows,
            "snapshot": snapshot,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["params"],
            state["tables"],
            batch_rows=state["batch_rows"],
            snapshot=state["snapshot"],
        )

    def close(self) -> None:
        """End the shared snapshot transaction."""
        with self._lock:
            if self._snapshot_conn is not None:
                self._snapshot_conn.close()
            self._snapshot_conn = self._snapshot = None

    def __del__(self) -> None:
        # a pipeline may drop the reader without closing it; end the snapshot quietly
        conn = getattr(self, "_snapshot_conn", None)
        if conn is not None:
            conn.close()

    def __enter__(self) -> PostgresReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def on_this_machine(self) -> bool:
        """Whether the server runs on this machine
        (:class:`~replikit.pipeline.contracts.SupportsPlacement`)."""
        return self._params.on_this_machine

    # -- units ----------------------------------------------------------------------------
    def units(self, table: TableSchema, *, split_rows: int | None = None) -> list[Unit]:
        """One unit, or integer primary-key ranges of about ``split_rows`` rows each
        (:func:`~replikit.pipeline.splitting.split_table`)."""
        with self._reading(table.id):
            return split_table(table, split_rows, self)

    def key_span(self, table: TableSchema, column: str) -> tuple[int, int] | None:
        """The minimum and maximum of ``column`` in the snapshot."""
        query = sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(
            c=sql.Identifier(column), t=_table(table.id)
        )
        row = self._snapshot_query(query)
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def key_quantiles(self, table: TableSchema, column: str, pieces: int) -> list[int]:
        """Quantiles of ``column`` from a page sample of about 100,000 rows (the whole table
        when the sample comes back empty)."""
        fractions = [i / pieces for i in range(1, pieces)]
        percent = min(100.0, 100.0 * _SAMPLE_ROWS / max(1, table.estimated_rows or 1))
        for sample in (sql.SQL(" TABLESAMPLE SYSTEM ({})").format(percent), sql.SQL("")):
            query = sql.SQL(
                "SELECT percentile_disc({f}::float8[]) WITHIN GROUP (ORDER BY {c}) FROM {t}{s}"
            ).format(f=fractions, c=sql.Identifier(column), t=_table(table.id), s=sample)
            row = self._snapshot_query(query)
            if row is not None and row[0] is not None:
                return [int(v) for v in row[0] if v is not None]
        return []

    def _snapshot_query(self, query: sql.Composed) -> tuple[Any, ...] | None:
        conn, _ = self._exporter()
        # a savepoint: a failed query (table dropped since planning) must not abort the
        # snapshot transaction that every other table's readers import
        with self._lock, conn.transaction():
            row: tuple[Any, ...] | None = conn.execute(query).fetchone()
        return row

    # -- reading --------------------------------------------------------------------------
    def read(self, unit: Unit) -> Iterator[Batch]:
        """Stream the unit's rows as canonical Python values, ``batch_rows`` per batch.

        Read through a binary server-side cursor: ``fetchmany`` turns a whole batch into
        Python values in psycopg's C code, where binary COPY's ``rows()`` costs a Python
        generator step per row (a third more CPU for the same values, measured on the
        benchmark's orders table)."""
        table = self._table(unit.table)
        columns = table.column_names
        types = [_read_type(c.type, c.name in unit.as_text) for c in table.columns]
        select, params = _select(table, unit.range, types, unit)
        with self._reading(unit.table), self._connect() as conn:
            register_loaders(conn)
            # the plan for all rows, not the first ones (a cursor's default)
            conn.execute("SET LOCAL cursor_tuple_fraction = 1")
            cur = conn.cursor(name="replikit_read", binary=True)
            try:
                # no parameters: the query as it is (a '%' in a name is not a placeholder)
                cur.execute(select, params or None)
                while rows := cur.fetchmany(self.batch_rows):
                    yield Batch(table.id, columns, rows)
            except BaseException:
                # a failed or abandoned read: the session goes, and the server cursor with it
                # (closing the cursor alone can fail on a broken session, and a cursor never
                # closed warns when it is collected)
                conn.close()
                raise
            finally:
                cur.close()  # on a closed connection: no round trip, just marked closed

    def column_readable(self, table: TableSchema) -> bool:
        """True when every column of ``table`` has a column batch form (:mod:`._columns`),
        in a database whose encoding is UTF-8."""
        return column_reading(self._table(table.id)) is not None and self._server_utf8(table.id)

    def read_columns(self, unit: Unit) -> Iterator[ColumnBatch]:
        """The unit's rows as column batches (:mod:`._columns`), one per chunk of rows.

        The query streams in libpq's chunked rows mode, not through a server-side cursor:
        the server goes on sending while the target writes, where a cursor's server waits
        for each ``FETCH`` (reading the benchmark's orders, measured: 0.7-0.9 s CPU and
        1.9-2.1 s wall, against 0.7-1.1 s and 2.9-3.2 s by ``FETCH`` es of as many rows)."""
        table = self._table(unit.table)
        reading = column_reading(table)
        if reading is None:
            raise ConfigError(f"table {table.id} has columns that cannot be read as columns")
        select, params = _select(table, unit.range, reading.casts, unit)
        size = reading.chunk_rows(table, self.batch_rows)
        with self._reading(unit.table), self._connect() as conn:
            _utf8_as_bytes(conn)
            stream = conn.cursor(binary=True).stream(select, params or None, size=size)
            try:
                for rows in _chunked(stream, size):
                    columns, n = reading.columns(rows), len(rows)
                    del rows  # the rows' tuples go now (see ._columns); their values stay
                    yield ColumnBatch(table.id, table.column_names, columns, n)
            except BaseException:
                # a failed or abandoned read: the session goes, and the query with it
                conn.close()
                raise

    def read_raw(self, unit: Unit) -> Iterator[bytes]:
        """The unit's rows as PostgreSQL binary COPY data (header, tuples, trailer), in blocks
        of about :data:`RAW_BLOCK_BYTES` (the server sends a message per row: passing each on
        costs a Python call per row at every stage, a block one per hundreds of rows); with
        ``unit.select``, the mapped rows its SELECT computes (:meth:`projection`)."""
        table = self._table(unit.table)
        # the SELECT form: COPY of a table refuses generated columns
        select, params = _select(table, unit.range, None, unit, unit.select)
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(select)
        with (
            self._reading(unit.table),
            self._connect() as conn,
            conn.cursor() as cur,
        ):
            settings = unit.select.settings if unit.select is not None else ()
            for name, value in settings:  # bound, and gone with the transaction
                cur.execute("SELECT set_config(%s, %s, true)", (name, value))
            with cur.copy(statement, params) as copy:
                block = bytearray()
                for chunk in copy:
                    block += chunk
                    if len(block) >= RAW_BLOCK_BYTES:
                        yield bytes(block)
                        block.clear()
                if block:
                    yield bytes(block)

    def projection(self, mapping: TableMapping, target_sql: Mapping[str, str]) -> Projection | None:
        """The SELECT list computing ``mapping``'s rows here, when PostgreSQL gives exactly
        Python's values (:mod:`replikit.mapping.pushed`); ``None`` otherwise (and on a
        database whose encoding is not UTF-8, where text bytes could differ)."""
        if not self._server_utf8(mapping.source.id):
            return None
        return project(mapping, FLAVOR, "%s", target_sql)

    def _server_utf8(self, tid: TableId) -> bool:
        """Whether the database's encoding is UTF-8 (asked once)."""
        if self._utf8 is None:
            with self._reading(tid), connect(self._params) as conn:
                row = conn.execute("SHOW server_encoding").fetchone()
            self._utf8 = row is not None and str(row[0]).upper() in ("UTF8", "UTF-8")
        return self._utf8

    def arrow_readable(self, table: TableSchema) -> bool:
        """True when every column of ``table`` reads straight into Arrow
        (:mod:`._arrow_copy`)."""
        return arrow_columns(self._table(table.id)) is not None

    def read_arrow(self, unit: Unit) -> Iterator[Any]:
        """The unit's rows as Arrow record batches: through ADBC's PostgreSQL driver (binary
        ``COPY`` decoded in C, :mod:`._arrow_adbc`) where it is installed, else parsed from
        ``COPY ... (FORMAT csv)`` (:mod:`._arrow_copy`); the same values either way."""
        table = self._table(unit.table)
        cols = arrow_columns(table)
        if cols is None:
            raise ConfigError(f"table {table.id} has columns that cannot be read as Arrow")
        # not with a snapshot imported from elsewhere (the CDC handoff, a reader pickled for
        # another process) for now: docs/duckdb-and-files.md says why
        use = self.arrow_driver == "adbc" and self._imported is None
        manager = adbc_manager() if use else None
        if manager is None and use:
            _hint_adbc()
        if manager is not None and self._server_utf8(table.id):
            batches = self._read_adbc(manager, table, cols, unit)
            try:
                first = next(batches)
            except StopIteration:
                return
            except _NotStarted as exc:
                log.info("table %s: reading through COPY (FORMAT csv): %s", table.id, exc)
            else:
                with contextlib.closing(batches):
                    yield first
                    yield from batches
                return
        yield from self._read_csv(table, cols, unit)

    def _read_adbc(
        self, manager: Any, table: TableSchema, cols: ArrowColumns, unit: Unit
    ) -> Generator[Any, None, None]:
        """:func:`._arrow_adbc.record_batches` of ``unit``; a failure before its first batch
        is :class:`_NotStarted` (the caller reads through CSV instead, which reports a real
        problem in its own terms), after it the replikit error for it."""
        with self._reading(table.id):
            _, snapshot = self._exporter()  # this reader's own (see read_arrow)
        select, _ = _select(table, unit.range, select_types(cols.types), unit, literals=True)
        query = select.as_string()
        conninfo = make_conninfo(**self._params.kwargs(application_name="replikit"))
        batches = record_batches(manager, conninfo, cols, query, snapshot)
        started = False
        try:
            for batch in batches:
                started = True
                yield batch
        except (manager.Error, cols.pa.ArrowException, OSError) as exc:  # OSError: pyarrow's IO
            said = scrub(error_text(exc), self._params)
            if not started:
                raise _NotStarted(said) from None
            raise read_error(_as_psycopg(exc, said), str(table.id), self._params) from None
        finally:
            batches.close()

    def arrow_stream(self, unit: Unit) -> AdbcStream | None:
        """The unit as ADBC's Arrow stream of binary ``COPY``, for a target engine that reads
        it in its own code (:class:`~replikit.pipeline.contracts.SupportsArrowStreamRead`,
        :class:`._arrow_adbc.AdbcStream`): no pyarrow in this process. ``None`` (then
        :meth:`read_arrow`) where ADBC's driver is not installed or cannot start the read, the
        snapshot comes from elsewhere, the database's encoding is not UTF-8, or a column has
        no canonical Arrow form."""
        table = self._table(unit.table)
        use = self.arrow_driver == "adbc" and self._imported is None
        manager = adbc_manager() if use and arrow_readable(table) else None
        if manager is None or not self._server_utf8(table.id):
            return None
        with self._reading(table.id):
            _, snapshot = self._exporter()  # this reader's own (see read_arrow)
        casts = select_types([c.type for c in table.columns])
        select, _ = _select(table, unit.range, casts, unit, literals=True)
        conninfo = make_conninfo(**self._params.kwargs(application_name="replikit"))
        try:
            return AdbcStream(manager, conninfo, select.as_string(), snapshot)
        except manager.Error as exc:
            said = scrub(error_text(exc), self._params)
            log.info("table %s: not streamed through ADBC: %s", table.id, said)
            return None

    def _read_csv(self, table: TableSchema, cols: ArrowColumns, unit: Unit) -> Iterator[Any]:
        """The unit's rows parsed from ``COPY ... (FORMAT csv)`` (:mod:`._arrow_copy`)."""
        select, params = _select(table, unit.range, cols.load_types, unit)
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(select)
        with self._reading(unit.table), self._connect() as conn:
            conn.execute("SET bytea_output = hex")
            conn.execute("SET client_encoding = 'UTF8'")
            with conn.cursor() as cur, cur.copy(statement, params) as copy:
                yield from csv_record_batches(cols, iter(copy))

    @contextlib.contextmanager
    def _reading(self, tid: TableId) -> Iterator[None]:
        """Driver errors while reading ``tid`` as replikit errors naming it. A reader closed
        early (its consumer failed or stopped) ends quietly when closing its cursor fails
        too: the connection is gone already, and the consumer's error is the one to report."""
        try:
            yield
        except psycopg.Error as exc:
            if isinstance(exc.__context__, GeneratorExit):
                log.debug("closing the read of %s: %s", tid, exc)
                return
            raise read_error(exc, str(tid), self._params) from exc

    def _table(self, tid: TableId) -> TableSchema:
        try:
            return self._by_id[tid]
        except KeyError:
            raise ConfigError(f"table {tid} is not one of this reader's tables") from None


def _hint_adbc() -> None:
    """Say once that ADBC's driver would read faster."""
    say_once(
        log,
        "adbc",
        "reading PostgreSQL into Arrow through COPY (FORMAT csv); "
        "pip install adbc-driver-postgresql (in replikit's duckdb and files extras) "
        "reads it about 3x faster",
    )


def _chunked(rows: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """``rows`` in lists of ``size`` (the last one shorter), none kept once handed over."""
    chunk: list[_T] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            full, chunk = chunk, []
            yield full
    if chunk:
        yield chunk


def _utf8_as_bytes(conn: Connection) -> None:
    """Free text (``varchar``, ``bpchar``) as its UTF-8 bytes, not decoded (:mod:`._columns`)."""
    conn.execute("SET client_encoding = 'UTF8'")
    for name in UTF8_TYPES:
        conn.adapters.register_loader(name, ByteaBinaryLoader)


class _NotStarted(Exception):
    """An ADBC read that failed before its first batch (see ``_read_adbc``)."""


def _as_psycopg(exc: BaseException, said: str) -> psycopg.Error:
    """A driver error as the psycopg error of its SQLSTATE (what :func:`read_error` maps);
    without one, a lost connection when the driver says so, else a plain database error."""
    state = sqlstate(exc)
    kind: type[psycopg.Error] = psycopg.DatabaseError
    if state is not None:
        with contextlib.suppress(KeyError):
            kind = psycopg.errors.lookup(state)
    elif "connection" in said.lower() or isinstance(exc, OSError) or str(exc).startswith("IO"):
        kind = psycopg.OperationalError
    return kind(said)


def _table(tid: TableId) -> sql.Composable:
    return sql.SQL(DIALECT.qualified(tid.schema, tid.name))


def _read_type(t: Type, as_text: bool) -> str:
    """What a column is cast to for reading: its canonical load type, or ``text`` when the
    plan reads it as PostgreSQL's own text form (``24:00:00``, ``infinity``, ``2000-01-01 BC``
    arrive as PostgreSQL prints them)."""
    return "text" if as_text else load_type(t)


def _select(
    table: TableSchema,
    key_range: KeyRange | None,
    casts: Sequence[str] | None,
    unit: Unit | None = None,
    projection: Projection | None = None,
    *,
    literals: bool = False,
) -> tuple[sql.Composed, list[Any]]:
    """The SELECT of a unit and its bound values (none with ``literals``: the key range's
    bounds written into it; for a driver that binds no psycopg placeholders)."""
    exprs: list[sql.Composable] = []
    pre: list[Any] = []  # bound values of the SELECT list
    if projection is not None:
        for c in projection.columns:
            exprs.append(sql.Identifier(c.name) if c.sql is None else sql.SQL(c.sql))
            pre.extend(c.params)
    else:
        for i, col in enumerate(table.columns):
            ident = sql.Identifier(col.name)
            exprs.append(
                ident if casts is None else sql.SQL("{}::{}").format(ident, sql.SQL(casts[i]))
            )
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), _table(table.id))
    where, params = _where(key_range, literals=literals)
    pushed = pushdown(
        unit.where if unit is not None else None,
        quote=lambda c: DIALECT.quote(c).replace("%", "%%"),
        mark="%s",
    )
    if pushed is not None:
        glue = " AND " if isinstance(where, sql.Composed) else " WHERE "  # after key bounds
        where = sql.Composed([where, sql.SQL(glue + pushed[0])])
        params = [*params, *pushed[1]]
    return sql.Composed([query, where]), [*pre, *params]


def _where(
    key_range: KeyRange | None, *, literals: bool = False
) -> tuple[sql.Composable, list[Any]]:
    if key_range is None:
        return sql.SQL(""), []
    parts: list[sql.Composable] = []
    params: list[Any] = []
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in key_range.columns)
    for op, bound in ((">=", key_range.lower), ("<", key_range.upper)):
        if bound is not None:
            marks = sql.SQL(", ").join(
                sql.Literal(v) if literals else sql.Placeholder() for v in bound
            )
            parts.append(sql.SQL("ROW({}) {} ROW({})").format(columns, sql.SQL(op), marks))
            if not literals:
                params.extend(bound)
    if not parts:
        return sql.SQL(""), []
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params

"""Full-load writing into DuckDB through Arrow record batches (see :mod:`._arrow`), or one
Arrow stream DuckDB reads from the source's driver itself.

Each :meth:`DuckdbWriter.load` call (one unit; calls may run in several threads at once) has
its own connection; rows are gathered into Arrow tables of about 20,000 rows, each inserted
with ``INSERT INTO t SELECT CAST(...) FROM batch``, committed every ``commit_rows`` rows. A
row DuckDB refuses raises :class:`~replikit.DataError` naming table, column and key; its
transaction is rolled back, earlier ones stay (a restarted load truncates the unit first).

pyarrow is imported only for the Arrow batches (:mod:`._arrow`): a unit that arrives as a
stream (:meth:`DuckdbWriter.load_arrow_stream`) needs none of it (about 40 MB resident).
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from types import ModuleType
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from replikit.endpoints._ahead import read_ahead
from replikit.endpoints._arrow import ArrowRows
from replikit.endpoints.duckdb import _casts, _csvpipe, _ddl
from replikit.endpoints.duckdb._connect import Database, driver, rollback
from replikit.endpoints.duckdb._dialect import DIALECT
from replikit.endpoints.duckdb.reflect import reflect_table
from replikit.errors import ConfigError, ConnectError, DataError, SchemaError
from replikit.pipeline.contracts import (
    Batch,
    SupportsArrowStreamWrite,
    SupportsArrowWrite,
    SupportsPrepare,
    SupportsTextWrite,
    Writer,
    table_errors,
)
from replikit.schema.convert import TablePlan
from replikit.schema.existing import TargetRules, existing_findings, refuse_existing
from replikit.schema.findings import Finding
from replikit.schema.identifiers import ObjectNames, object_names
from replikit.schema.model import TableId, TableSchema
from replikit.schema.names import ascii_fold
from replikit.schema.report import ObjectPlan
from replikit.schema.types import Kind

if TYPE_CHECKING:
    from replikit.endpoints.duckdb._arrow import Columns

__all__ = ["MODES", "DuckdbWriter", "columns_for", "insert", "over_rows", "scan"]

MODES = ("drop-and-create", "create", "truncate", "do-nothing")
RULES = TargetRules(fold=ascii_fold)
#: rows per Arrow table inserted
ARROW_ROWS = 20_000
#: rows of Arrow record batches gathered per INSERT (measured, 1M rows from PostgreSQL: with
#: a view registered per INSERT, one per 6,000-row batch took 6.8-7.9 s, per 50,000 rows
#: 4.4 s; without, 12,000 rows cost about 5% more CPU than 50,000, and 20-25 MB less peak RSS)
ARROW_GROUP_ROWS = 12_000
#: record batches read ahead of the INSERTs, in a thread (so reading and writing overlap)
ARROW_AHEAD = 2
_BATCH_NAMES = itertools.count()
#: the batch of :func:`over_batch` in a statement: DuckDB looks ``replikit_batch`` up among
#: the caller's Python variables when the catalog has no such table, and no database is named
#: ``replikit_python``, so no table can stand in for it
_BATCH = '"replikit_python"."replikit_python"."replikit_batch"'


def _arrow() -> ModuleType:
    """:mod:`._arrow`, imported with pyarrow on first use."""
    from replikit.endpoints.duckdb import _arrow

    return _arrow


def columns_for(plan: TablePlan, columns: Sequence[str]) -> Columns:
    """The Arrow conversion of ``plan``'s table for rows in ``columns`` order (source names)."""
    planned = [plan.planned_column(c) for c in columns]
    columns_of: type[Columns] = _arrow().Columns
    return columns_of(str(plan.target_id), planned, plan.target_schema.key)


def insert(
    conn: Any, cols: Columns, rows: Sequence[Sequence[Any]], target: str, tail: str = ""
) -> None:
    """``INSERT INTO target (...) SELECT CAST(...) FROM <rows as Arrow> tail``; a refused row
    is a :class:`DataError` naming it (the caller rolls back)."""
    over_rows(conn, cols, rows, _insert_statement(cols, target, tail))


def _insert_statement(cols: Columns, target: str, tail: str = "") -> Callable[[Columns, str], str]:
    names = ", ".join(DIALECT.quote(n) for n in cols.names)

    def statement(cols: Columns, relation: str) -> str:
        return (
            f"INSERT INTO {target} ({names}) SELECT {cols.select(relation)} "  # noqa: S608
            f"FROM {scan(relation)} {tail}"
        )

    return statement


def over_rows(
    conn: Any,
    cols: Columns,
    rows: Sequence[Sequence[Any]],
    statement: Callable[[Columns, str], str],
) -> None:
    """Run ``statement(cols, relation)`` over ``rows`` as an Arrow batch the statement reads
    as :func:`scan` ``(relation)``; a refused row is a :class:`DataError` naming it (rolled
    back first)."""
    over_batch(conn, cols, cols.arrow(rows), rows, statement)


def over_batch(
    conn: Any,
    cols: Columns,
    batch: Any,
    rows: Sequence[Sequence[Any]],
    statement: Callable[[Columns, str], str],
) -> None:
    """:func:`over_rows` for an Arrow table ``batch`` (columns ``c0``, ``c1``...) whose rows
    ``rows`` are (for messages); the statement reads it as :func:`scan` ``(relation)``.

    DuckDB finds the batch among this function's local variables (a replacement scan), not
    through ``register``: a registered batch is a view, and a transaction keeps the views
    dropped in it, with their Arrow data, until it ends (measured: 1M rows from PostgreSQL,
    35 MB more peak RSS with ``register`` per batch and a commit every 200,000 rows).
    ``from_arrow(batch).query(...)`` keeps nothing either, but in a transaction it reports a
    refused value as "transaction is aborted", hiding which value it was."""
    duckdb = driver()
    replikit_batch = batch  # noqa: F841  (read by DuckDB by this name: _BATCH)
    try:
        conn.execute(statement(cols, f"rk_batch_{next(_BATCH_NAMES)}"))
    except (
        duckdb.ConversionException,
        duckdb.ConstraintException,
        duckdb.InvalidInputException,
    ) as exc:
        rollback(conn)  # the transaction is aborted: name the row outside it
        raise cols.bad_row(conn, batch, rows, exc) from None
    except duckdb.Error:
        rollback(conn)  # the caller reports it
        raise


def scan(relation: str) -> str:
    """The ``FROM`` item of :func:`over_batch`'s batch, named ``relation``."""
    return f"{_BATCH} AS {relation}"


class DuckdbWriter(
    Writer, SupportsPrepare, SupportsArrowWrite, SupportsArrowStreamWrite, SupportsTextWrite
):
    """Creates, truncates or checks tables, loads rows through Arrow, then builds keys and
    indexes: ``indexes`` says which (:data:`._ddl.INDEXES`; ``keys``, the default, leaves the
    non-unique indexes out and declares them, :meth:`skipped_objects`).

    ``problems`` collects what could not be done as planned (foreign keys, partial indexes).
    """

    dialect = DIALECT
    default_schema: str | None = "main"
    #: an engine inside this process (:class:`~replikit.pipeline.contracts.SupportsPlacement`)
    on_this_machine = True
    #: foreign keys are never created in DuckDB (see :mod:`._ddl`), so none is left behind
    foreign_keys_in_create = False
    #: :meth:`load_text` takes CSV lines a source built (a MySQL reader's ``copy_text``)
    text_format = _csvpipe.CSV_FORMAT
    #: a table loaded as one unit loads better, so ``split_rows="auto"`` splits tables only
    #: as far as their ranges can load at once (:mod:`replikit.pipeline.splitting`). Measured
    #: (1.1M rows, one load slot, in-process CPU): from PostgreSQL 3.6-3.7 s against 5.1-5.3 s
    #: in 250,000-row ranges, from MariaDB 4.9 s against 6.1 s, at the same peak RSS
    prefers_whole_tables = True

    def __init__(
        self, database: Database, *, commit_rows: int = 200_000, indexes: str = "keys"
    ) -> None:
        if indexes not in _ddl.INDEXES:
            raise ConfigError(
                f"unknown DuckDB indexes option {indexes!r}; use one of {', '.join(_ddl.INDEXES)}"
            )
        self._db = database
        self.commit_rows = commit_rows
        self.indexes = indexes
        self.problems: list[str] = []
        self._kept: set[TableId] = set()
        self._names: ObjectNames | None = None

    # -- DDL --------------------------------------------------------------------------------

    def __reduce__(self) -> Any:
        raise pickle.PicklingError(
            "it writes one local DuckDB file, which takes one writer at a time: "
            "load it from this process"
        )

    def ddl(self, plans: Sequence[TablePlan]) -> list[str]:
        """Every statement ``prepare("drop-and-create")`` and ``finish`` would run."""
        out: list[str] = []
        for schema in sorted({p.target_id.schema or "main" for p in plans}):
            out += _ddl.create_schema(schema)
        for plan in plans:
            out += [_ddl.drop_table(plan), _ddl.create_table(plan, key=False)]
        names = object_names(plans, DIALECT)
        for plan in plans:
            out += _ddl.add_primary_key(plan, self.indexes)
            out += _ddl.index_statements(plan, names, self.indexes)[0]
        return out

    def skipped_objects(self, plans: Sequence[TablePlan]) -> list[ObjectPlan]:
        """The keys and indexes of ``plans`` the ``indexes`` option leaves out (on tables
        ``prepare`` kept, nothing is built anyway)."""
        return [
            obj
            for p in plans
            if p.target_id not in self._kept
            for obj in _ddl.skipped_objects(p, self.indexes)
        ]

    def object_ddl(self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]) -> list[str]:
        """The view statements :meth:`create_objects` would run (CHECKs are in :meth:`ddl`)."""
        return [s for v in views if v.converted for s in _ddl.view_statements(v)]

    def create_objects(
        self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]
    ) -> list[tuple[ObjectPlan, str | None]]:
        """Create each converted view and query it; one DuckDB refuses is rolled back and
        reported. CHECKs were created with their tables (a violating row was refused)."""
        out: list[tuple[ObjectPlan, str | None]] = [
            (obj, None)
            for p in plans
            if p.target_id not in self._kept
            for obj in p.objects
            if obj.kind == "check" and obj.sql is not None
        ]
        duckdb = driver()
        with self._db.connected() as conn:
            for v in views:
                if not v.converted or v.target is None:
                    continue
                probe = f"SELECT * FROM {_ddl.table_name(v.target)} LIMIT 0"  # noqa: S608
                try:
                    self._run(conn, [*_ddl.view_statements(v), probe])
                except duckdb.Error as exc:
                    out.append((v, str(exc).strip().splitlines()[0]))
                else:
                    out.append((v, None))
        return out

    def check_existing(
        self, plans: Sequence[TablePlan], mode: str, *, replicate: bool = False
    ) -> list[Finding]:
        """What existing target tables of ``plans`` cannot hold as planned."""
        with self._db.connected() as conn:
            existing = self._existing(conn, plans)
        pairs = [(p, existing[p.target_id]) for p in plans if p.target_id in existing]
        return existing_findings(pairs, RULES, replicate=replicate)

    @staticmethod
    def _existing(conn: Any, plans: Sequence[TablePlan]) -> dict[TableId, TableSchema]:
        found = {p.target_id: reflect_table(conn, p.target_id) for p in plans}
        return {tid: t for tid, t in found.items() if t is not None}

    @override
    def prepare(self, plans: Sequence[TablePlan], mode: str) -> None:
        """``drop-and-create``, ``create`` (refused for an existing table), or ``truncate`` /
        ``do-nothing`` (existing tables checked against the plan, missing ones created)."""
        if mode not in MODES:
            raise ConfigError(f"unknown table preparation mode {mode!r}; use one of {MODES}")
        self._kept.difference_update(p.target_id for p in plans)
        self._names = object_names(plans, DIALECT)
        errors: dict[str, BaseException] = {}
        duckdb = driver()
        with self._db.connected() as conn:
            errors.update(_catalog_clashes(conn, plans))
            plans = [p for p in plans if str(p.target_id) not in errors]
            existing = self._existing(conn, plans)
            if mode in ("truncate", "do-nothing"):
                pairs = [(p, existing[p.target_id]) for p in plans if p.target_id in existing]
                refuse_existing(existing_findings(pairs, RULES))
                self._kept.update(existing)
            for plan in plans:
                try:
                    self._run(conn, self._prepare_sql(plan, mode, plan.target_id in existing))
                except SchemaError as exc:
                    errors[str(plan.target_id)] = exc
                except duckdb.Error as exc:
                    errors[str(plan.target_id)] = SchemaError(
                        f"DuckDB refused the DDL of {plan.target_id}: {exc}"
                    )
        if errors:
            raise table_errors(errors, f"DuckDB {mode}", len(plans))

    def _prepare_sql(self, plan: TablePlan, mode: str, exists: bool) -> list[str]:
        schema = _ddl.create_schema(plan.target_id.schema)
        if mode == "drop-and-create":
            return [*schema, _ddl.drop_table(plan), _ddl.create_table(plan, key=False)]
        if exists and mode == "create":
            raise SchemaError(f"table {plan.target_id} already exists")
        if not exists:
            return [*schema, _ddl.create_table(plan, key=False)]
        if mode == "truncate":
            return [f"DELETE FROM {_ddl.table_name(plan.target_id)}"]  # noqa: S608
        return []

    @staticmethod
    def _run(conn: Any, statements: list[str]) -> None:
        conn.execute("BEGIN")
        try:
            for sql in statements:
                conn.execute(sql)
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise

    # -- load -------------------------------------------------------------------------------
    @override
    def load(self, plan: TablePlan, batches: Iterable[Batch]) -> int:
        """Insert every batch as Arrow tables of about :data:`ARROW_ROWS` rows, committing
        every ``commit_rows`` rows (a commit per 20,000 rows cost 60% of the load's time;
        one per unit held more memory, measured)."""
        total = 0
        target = _ddl.table_name(plan.target_id)
        with self._db.connected() as conn, _transaction(conn, _write_failed(plan)):
            pending: list[Sequence[Any]] = []
            columns: tuple[str, ...] | None = None
            since = 0  # rows inserted since the last commit
            for batch in batches:
                if columns is not None and batch.columns != columns and pending:
                    total += _insert(conn, plan, columns, pending, target)
                    pending = []
                columns = batch.columns
                pending.extend(batch.rows)
                if len(pending) >= ARROW_ROWS:
                    since += _insert(conn, plan, columns, pending, target)
                    pending = []
                if since >= self.commit_rows:
                    conn.execute("COMMIT")
                    conn.execute("BEGIN")
                    total, since = total + since, 0
            total += since
            if pending and columns is not None:
                total += _insert(conn, plan, columns, pending, target)
        return total

    # -- load from Arrow --------------------------------------------------------------------
    def arrow_writable(self, plan: TablePlan) -> bool:
        """True when every column's canonical Arrow type is the one :class:`._arrow.Columns`
        sends (:func:`._casts.writable`; decided without importing pyarrow)."""
        return _casts.writable(plan)

    def load_arrow(self, plan: TablePlan, batches: Iterable[Any]) -> int:
        """Insert every Arrow record batch (see :meth:`arrow_writable`) with the casting
        ``INSERT`` of :meth:`load`, committing every ``commit_rows`` rows."""
        sources = [cp.source.name for cp in plan.columns]
        cols = columns_for(plan, sources)
        temporal = [cp.target.type.kind in (Kind.DATE, Kind.TIMESTAMP) for cp in plan.columns]
        statement = _insert_statement(cols, _ddl.table_name(plan.target_id))
        total = since = 0
        ahead = read_ahead(iter(batches), ARROW_AHEAD)
        with (
            self._db.connected() as conn,
            contextlib.closing(ahead),
            _transaction(conn, _write_failed(plan)),
        ):
            for group in _gathered(ahead, ARROW_GROUP_ROWS):
                table = _arrow().arrow_table(group, sources, temporal)
                over_batch(conn, cols, table, ArrowRows(table), statement)
                since += table.num_rows
                if since >= self.commit_rows:
                    conn.execute("COMMIT")
                    conn.execute("BEGIN")
                    total, since = total + since, 0
        return total + since

    # -- load from an Arrow stream ------------------------------------------------------------
    def load_arrow_stream(self, plan: TablePlan, stream: AbstractContextManager[Any]) -> int:
        """Insert a unit handed over as one Arrow C stream
        (:class:`~replikit.pipeline.contracts.SupportsArrowStreamRead`) with one casting
        ``INSERT ... SELECT`` in one transaction: DuckDB reads the stream in its own code, with
        no pyarrow and no Python per batch. A value the stream may carry inexactly (a date
        outside the years 1-9999), or one DuckDB refuses, is a :class:`DataError` after the
        rollback: the caller loads the unit as record batches, which name the row."""
        names = ", ".join(DIALECT.quote(cp.name) for cp in plan.columns)
        relation = f"rk_stream_{next(_BATCH_NAMES)}"
        statement = (
            f"INSERT INTO {_ddl.table_name(plan.target_id)} ({names}) "  # noqa: S608
            f"SELECT {_casts.stream_select(plan.columns, relation)} FROM {scan(relation)}"
        )
        refused = _refusal(plan, "a value", memory=False, whole=True)
        with (
            stream as replikit_batch,  # noqa: F841  (_BATCH)
            self._db.connected() as conn,
            self._db.widened(conn, getattr(stream, "engine_memory", None)),
            _transaction(conn, refused),
        ):
            row = conn.execute(statement).fetchone()
        return int(row[0]) if row else 0

    # -- load from CSV lines ------------------------------------------------------------------
    def text_writable(self, plan: TablePlan) -> bool:
        """True when a unit of ``plan`` can load from :data:`._csvpipe.CSV_FORMAT` lines:
        the Arrow batches' casts apply (:meth:`arrow_writable`), every column's canonical
        type has an exact CSV parse (:func:`._casts.csv_type`), and a FIFO can be made."""
        return (
            _csvpipe.supported()
            and _casts.writable(plan)
            and _casts.csv_select(plan.columns, "r") is not None
        )

    def load_text(
        self, plan: TablePlan, columns: Sequence[str], chunks: Iterable[bytes], *, whole: bool
    ) -> int:
        """Insert a unit handed over as CSV lines of ``columns`` (target names, every column
        of ``plan``) with one ``INSERT ... SELECT CAST(...) FROM read_csv(...)`` in one
        transaction: DuckDB's CSV reader parses the lines from a FIFO a thread writes them
        into (:mod:`._csvpipe`). A line or value DuckDB refuses is a :class:`DataError` after
        the rollback: the caller loads the unit as record batches, which name the row; an
        error of the source (``chunks``) is raised as it is, after the rollback."""
        duckdb = driver()
        by_name = {cp.name: cp for cp in plan.columns}
        ordered = [by_name[c] for c in columns]
        types = [_casts.csv_type(cp.source.type) for cp in ordered]
        relation = f"rk_csv_{next(_BATCH_NAMES)}"
        select = _casts.csv_select(ordered, relation)
        if select is None or None in types or len(ordered) != len(plan.columns):
            raise DataError("the lines hold a column DuckDB cannot parse from CSV exactly",
                            table=str(plan.target_id))  # fmt: skip
        names = ", ".join(DIALECT.quote(c) for c in columns)
        with _csvpipe.fifo() as path:
            statement = (
                f"INSERT INTO {_ddl.table_name(plan.target_id)} ({names}) "  # noqa: S608
                f"SELECT {select} FROM {_csvpipe.read_csv(path, [t or '' for t in types])} "
                f"AS {relation}"
            )
            feeder = _csvpipe.Feeder(path, chunks)
            try:
                with self._db.connected() as conn:
                    conn.execute("BEGIN")
                    feeder.start()
                    try:
                        row = conn.execute(statement).fetchone()
                        feeder.finish()
                        if feeder.error is not None:
                            raise feeder.error
                        conn.execute("COMMIT")
                    except duckdb.Error as exc:
                        rollback(conn)
                        feeder.finish()
                        if feeder.error is not None:  # the source failed: DuckDB read a part
                            raise feeder.error from None
                        raise _refusal(plan, "the CSV lines")(exc) from exc
                    except BaseException:
                        rollback(conn)
                        raise
            finally:
                feeder.finish()
        return int(row[0]) if row else 0

    # -- after the load ---------------------------------------------------------------------
    @override
    def finish(self, plans: Sequence[TablePlan]) -> None:
        """Add primary keys, create indexes and unique keys (on the tables ``prepare``
        created: not on those ``truncate`` / ``do-nothing`` kept)."""
        names = self._names
        if names is None or any(p.target_id not in names.indexes for p in plans):
            names = object_names(plans, DIALECT)
        errors: dict[str, BaseException] = {}
        duckdb = driver()
        with self._db.connected() as conn:
            for plan in [p for p in plans if p.target_id not in self._kept]:
                statements, problems = _ddl.index_statements(plan, names, self.indexes)
                if not _has_primary_key(conn, plan.target_id):
                    statements = _ddl.add_primary_key(plan, self.indexes) + statements
                self.problems.extend(problems)
                try:
                    for sql in statements:
                        self._db.build(conn, sql)
                except duckdb.Error as exc:
                    errors[str(plan.target_id)] = SchemaError(
                        f"DuckDB refused an index of {plan.target_id}: {exc}"
                    )
        if errors:
            raise table_errors(errors, "DuckDB indexes", len(plans))


def _catalog_clashes(conn: Any, plans: Sequence[TablePlan]) -> dict[str, SchemaError]:
    """The tables whose target schema has the name DuckDB gives the database (its file's
    name): DuckDB cannot tell the two apart in any name, so nothing of them is created."""
    row = conn.execute("SELECT current_database()").fetchone()
    catalog = str(row[0]) if row else ""
    return {
        str(p.target_id): SchemaError(
            f"DuckDB names this database {catalog!r} after its file, and the target schema "
            f"{p.target_id.schema!r} has the same name: every name in it would be ambiguous. "
            f"Name the file otherwise (e.g. {catalog}_copy.duckdb), or map the schema to "
            "another name (a rename rule, or the schema main)"
        )
        for p in plans
        if p.target_id.schema and p.target_id.schema.casefold() == catalog.casefold()
    }


@contextlib.contextmanager
def _transaction(conn: Any, error: Callable[[Exception], Exception]) -> Iterator[None]:
    """``BEGIN``, the body, ``COMMIT``: on any error the transaction is rolled back, and a
    DuckDB error is raised as ``error(exc)``. The body may commit and begin again."""
    duckdb = driver()
    conn.execute("BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except duckdb.Error as exc:
        rollback(conn)
        raise error(exc) from exc
    except BaseException:
        rollback(conn)
        raise


def _write_failed(plan: TablePlan) -> Callable[[Exception], Exception]:
    """A failed write of ``plan``'s rows as :class:`ConnectError`, DuckDB's message whole."""
    return lambda exc: ConnectError(f"DuckDB write to {plan.target_id} failed: {exc}")


def _refusal(
    plan: TablePlan, what: str, *, memory: bool = True, whole: bool = False
) -> Callable[[Exception], Exception]:
    """What a failed ``INSERT ... SELECT`` of a whole unit raises: ``what`` refused (a value,
    a line, or with ``memory`` one too long for the CSV reader's buffer) as
    :class:`DataError`, the unit then loaded again as record batches, which name the row;
    any other error as :class:`ConnectError` (DuckDB's first line, or its message ``whole``)."""
    duckdb = driver()
    refused = (
        duckdb.ConversionException,
        duckdb.ConstraintException,
        duckdb.InvalidInputException,
        duckdb.OutOfRangeException,
        *((duckdb.OutOfMemoryException,) if memory else ()),
    )

    def error(exc: Exception) -> Exception:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, refused):
            return DataError(f"DuckDB refused {what}: {first}", table=str(plan.target_id))
        return ConnectError(f"DuckDB write to {plan.target_id} failed: {exc if whole else first}")

    return error


def _insert(
    conn: Any, plan: TablePlan, columns: tuple[str, ...], rows: list[Sequence[Any]], target: str
) -> int:
    insert(conn, columns_for(plan, columns), rows, target)
    return len(rows)


def _gathered(batches: Iterable[Any], rows: int) -> Iterator[Any]:
    """Record batches gathered into Arrow tables of at least ``rows`` rows (no copy): one
    INSERT per table."""
    pending: list[Any] = []
    have = 0
    for batch in batches:
        pending.append(batch)
        have += batch.num_rows
        if have >= rows:
            yield _arrow().pa.Table.from_batches(pending)
            pending, have = [], 0
    if pending:
        yield _arrow().pa.Table.from_batches(pending)


def _has_primary_key(conn: Any, tid: TableId) -> bool:
    rows = conn.execute(
        "SELECT 1 FROM duckdb_constraints() WHERE database_name = current_database() AND "
        "schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [tid.schema or "main", tid.name],
    ).fetchall()
    return bool(rows)

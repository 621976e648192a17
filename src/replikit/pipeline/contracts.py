"""The small contracts that pipeline stages implement.

A full load moves :class:`Batch` es of rows. A :class:`Reader` is bound to a set of tables;
it splits each into work :class:`Unit` s (whole table or primary-key ranges) and reads one
unit as a stream of batches. A :class:`Writer` loads the stream of batches for one unit.
Abilities beyond that are separate protocols a stage may also implement:
:class:`SupportsPrepare` (create/truncate before, indexes and sequences after),
:class:`SupportsEarlyFinish` (a loaded table's indexes while other tables still load) and
:class:`SupportsRawRead` / :class:`SupportsRawWrite` (pass the source's bulk format
through untouched when types match), :class:`SupportsArrowRead` / :class:`SupportsArrowWrite`
(move a unit as Arrow record batches, with no Python object per value),
:class:`SupportsColumnRead` / :class:`SupportsColumnWrite` (move a unit as
:class:`ColumnBatch` es of plain values and UTF-8 text, without Arrow),
:class:`SupportsArrowStreamRead` / :class:`SupportsArrowStreamWrite` (hand a unit from the
source's driver to the target's engine as one Arrow C stream, with no Python in between).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from replikit.changes import Transaction
from replikit.errors import TableDdlError
from replikit.mapping.bound import TableMapping
from replikit.mapping.filters import Predicate
from replikit.mapping.pushed import Projection
from replikit.pipeline.conflicts import OnConflicts
from replikit.positions import Position
from replikit.schema.convert import PYTHON, ColumnPlan, Dialect, TablePlan
from replikit.schema.model import TableId, TableSchema
from replikit.schema.report import ObjectPlan

__all__ = [
    "Batch",
    "ChangeReader",
    "ChangeWriter",
    "Checkpoint",
    "CheckpointStore",
    "ColumnBatch",
    "Fence",
    "HasDefaultSchema",
    "HasDialect",
    "KeyRange",
    "Reader",
    "SupportsArrowRead",
    "SupportsArrowStreamRead",
    "SupportsArrowStreamWrite",
    "SupportsArrowWrite",
    "SupportsClose",
    "SupportsColumnRead",
    "SupportsColumnWrite",
    "SupportsDdl",
    "SupportsEarlyFinish",
    "SupportsPlacement",
    "SupportsPrepare",
    "SupportsPushedMappings",
    "SupportsRawRead",
    "SupportsRawWrite",
    "SupportsSchemaObjects",
    "SupportsSkippedObjects",
    "SupportsTextRead",
    "SupportsTextWrite",
    "SupportsTransactionBatches",
    "SupportsUnitLedger",
    "SupportsValueNotes",
    "TextUnit",
    "Unit",
    "ValueNotes",
    "Writer",
    "dialect_of",
    "table_errors",
]


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Rows whose key is ``>= lower`` and ``< upper`` (``None``: unbounded on that side)."""

    columns: tuple[str, ...]
    lower: tuple[Any, ...] | None = None
    upper: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class Unit:
    """One piece of full-load work: a table, or one key range of it.

    ``as_text`` names columns the reader delivers as the source database's own text form
    (``str``), not as canonical values: columns whose type the plan overrides to text, so that
    values with no Python form (``24:00:00``, ``infinity``, BC dates) arrive as the source
    prints them. A reader that cannot do so may ignore it (the plan's adapter renders the
    canonical value as text instead).
    """

    table: TableId
    range: KeyRange | None = None
    index: int = 0
    count: int = 1
    as_text: frozenset[str] = frozenset()
    where: Predicate | None = None
    #: the mapped SELECT list of a raw read (:meth:`SupportsPushedMappings.projection`);
    #: ``read`` ignores it
    select: Projection | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return (
            str(self.table) if self.count == 1 else f"{self.table}[{self.index + 1}/{self.count}]"
        )


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows of one table: ``rows[i][j]`` is the canonical value of column ``columns[j]``."""

    table: TableId
    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True, slots=True)
class ColumnBatch:
    """Rows of one table by column: ``values[j][i]`` is row ``i``'s value of column
    ``columns[j]``, in the form :mod:`replikit.endpoints._columns` gives its kind."""

    table: TableId
    columns: tuple[str, ...]
    values: Sequence[Sequence[Any]]
    rows: int

    def __len__(self) -> int:
        return self.rows


@runtime_checkable
class Reader(Protocol):
    """Reads full-load data from a source."""

    @property
    def tables(self) -> Sequence[TableSchema]:
        """The tables this reader was made for."""
        ...

    def units(self, table: TableSchema, *, split_rows: int | None = None) -> list[Unit]:
        """Split ``table`` into units of about ``split_rows`` rows (None: one unit)."""
        ...

    def read(self, unit: Unit) -> Iterator[Batch]:
        """Stream the rows of ``unit``; memory stays bounded whatever the table size."""
        ...


@runtime_checkable
class Writer(Protocol):
    """Writes full-load data to a target. May be called from several threads at once."""

    def load(self, plan: TablePlan, batches: Iterable[Batch]) -> int:
        """Write every batch for one unit of ``plan``; return the number of rows written."""
        ...


@runtime_checkable
class SupportsPrepare(Protocol):
    """A writer that manages target tables around the load."""

    def prepare(self, plans: Sequence[TablePlan], mode: str) -> None:
        """Before the load: create, drop-and-create, truncate or check each table.

        A table that cannot be prepared must not stop the others: prepare the rest, then
        raise :class:`~replikit.errors.TableDdlError` naming the failed ones
        (:func:`table_errors`); other errors stop the task.
        """
        ...

    def finish(self, plans: Sequence[TablePlan]) -> None:
        """After the load: indexes, foreign keys, sequence values (per table, as ``prepare``)."""
        ...


@runtime_checkable
class SupportsEarlyFinish(Protocol):
    """A writer that builds a table's indexes and keys as soon as its rows are loaded, while
    other tables still load (the full load calls it for each table whose last unit is
    written, then ``finish`` for every table as before)."""

    def finish_loaded(
        self, plans: Sequence[TablePlan], *, stop: threading.Event | None = None
    ) -> None:
        """The part of ``finish`` that needs only ``plans``' own rows (indexes and keys, each
        step committed), leaving foreign keys and the rest to ``finish``, which must not do
        this part twice. ``stop`` set: end soon, ``finish`` (or a resumed run) does what is
        left. A table that fails is named in a :class:`~replikit.errors.TableDdlError`
        (:func:`table_errors`) and keeps nothing of this part."""
        ...


def table_errors(errors: Mapping[str, BaseException], what: str, total: int) -> TableDdlError:
    """The :class:`TableDdlError` a writer raises when ``errors`` (target table name -> cause)
    failed and the other tables of ``total`` were done (one table: its own message)."""
    if total == 1 and len(errors) == 1:
        return TableDdlError(str(next(iter(errors.values()))), errors)
    names = ", ".join(sorted(errors))
    first = next(iter(errors.values()))
    return TableDdlError(
        f"{what}: {len(errors)} of {total} tables failed ({names}). First error: {first}", errors
    )


@runtime_checkable
class HasDialect(Protocol):
    """A stage bound to a SQL dialect: plans convert types and names by its rules."""

    @property
    def dialect(self) -> Dialect:
        """The dialect's type rules, quoting and identifier rules."""
        ...


def dialect_of(stage: object) -> Dialect:
    """``stage``'s dialect; stages without one take canonical Python values as they are."""
    return stage.dialect if isinstance(stage, HasDialect) else PYTHON


@runtime_checkable
class HasDefaultSchema(Protocol):
    """A writer (full load or change apply) of a target with or without schemas.

    ``default_schema`` is where a table id without a schema lands (``None``: the target has
    no schemas, and target table ids carry none). Full-load and change writers of one target
    say the same, so both plan the same target table ids.
    """

    default_schema: str | None


@runtime_checkable
class SupportsDdl(HasDefaultSchema, Protocol):
    """A writer that creates its tables with SQL DDL (``plan()`` shows the statements).

    ``foreign_keys_in_create`` is true when foreign keys can only be declared in
    ``CREATE TABLE`` (SQLite), so a key to a failed table cannot be left out later.
    """

    foreign_keys_in_create: bool

    def ddl(self, plans: Sequence[TablePlan]) -> list[str]:
        """The statements :meth:`SupportsPrepare.prepare` would run for ``plans``."""
        ...


@runtime_checkable
class SupportsSchemaObjects(Protocol):
    """A writer that creates converted CHECK constraints and views after the load.

    Each object is created and verified on its own (a CHECK against the loaded rows, a view
    by a query of it); one the target refuses is left out and the others go on.
    """

    def object_ddl(self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]) -> list[str]:
        """The statements :meth:`create_objects` would run."""
        ...

    def create_objects(
        self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]
    ) -> list[tuple[ObjectPlan, str | None]]:
        """Create the converted checks of ``plans`` and ``views`` (in order); per object
        attempted, ``None`` when created or the target's reason for refusing it."""
        ...


@runtime_checkable
class SupportsSkippedObjects(Protocol):
    """A writer configured to leave some of a table's keys or indexes out (DuckDB's
    ``indexes`` option): it declares them, so that the plan and the run's statistics list
    them instead of leaving them out silently."""

    def skipped_objects(self, plans: Sequence[TablePlan]) -> list[ObjectPlan]:
        """The keys and indexes of ``plans`` this writer will not build, ``not converted``
        with the reason."""
        ...


@runtime_checkable
class SupportsClose(Protocol):
    """A stage that holds connections or files until closed."""

    def close(self) -> None:
        """Release what the stage holds (idempotent)."""
        ...


@runtime_checkable
class SupportsPlacement(Protocol):
    """A reader or writer that knows where its database does the work."""

    #: True when the database works on this machine (a server reached at a loopback
    #: address or over a Unix socket, an engine inside this process), so each unit it
    #: serves keeps one of this machine's cores busy there
    #: (:func:`replikit.pipeline.splitting.load_slots`)
    on_this_machine: bool


#: what a reader read otherwise than the source stores it: ``(table, column, what)`` (the
#: source table's name, the source column, what became of the values) -> how many values
ValueNotes = dict[tuple[str, str, str], int]


@runtime_checkable
class SupportsValueNotes(Protocol):
    """A reader that, by a policy the user chose, reads some values otherwise than the source
    stores them (MySQL's zero dates read as NULL): it counts them per unit, so the task's
    statistics say, for each table, how many values of which column became what."""

    def value_notes(self, unit: Unit | None = None) -> ValueNotes:
        """The counts over every unit read so far, each unit by its last complete read (a
        unit read again replaces its earlier count); ``unit``: that unit's only. ``what``
        reads after the count, e.g. ``"zero or invalid date(s) read as NULL
        (zero_dates='null')"``."""
        ...


@runtime_checkable
class SupportsRawRead(Protocol):
    """A reader that can hand out a unit in its database's bulk wire format."""

    raw_format: str

    def read_raw(self, unit: Unit) -> Iterator[bytes]:
        """The unit's rows in the bulk wire format (e.g. PostgreSQL binary COPY)."""
        ...


@runtime_checkable
class SupportsPushedMappings(Protocol):
    """A raw reader whose SELECT can compute a table's mapping rules itself."""

    def projection(
        self, mapping: TableMapping, target_sql: Mapping[str, str]
    ) -> Projection | None:
        """The SELECT list giving ``mapping``'s rows with exactly the values Python would
        give, each cast to its native target type in ``target_sql``; ``None`` when some
        step must run in Python."""
        ...


@runtime_checkable
class SupportsRawWrite(Protocol):
    """A writer that loads a bulk wire format as it is (same dialect, identical types)."""

    raw_format: str

    def load_raw(self, plan: TablePlan, chunks: Iterable[bytes], *, whole: bool) -> int:
        """Load chunks in the bulk wire format; return the number of rows written.
        ``whole`` as for :meth:`SupportsTextWrite.load_text`."""
        ...


@dataclass(frozen=True, slots=True)
class TextUnit:
    """A unit's rows as text in a writer's bulk format, built by the source: ``columns`` the
    target columns of each line, in order; ``chunks`` ``(rows, bytes)`` pairs of whole lines."""

    columns: tuple[str, ...]
    chunks: Iterator[tuple[int, bytes]]


@runtime_checkable
class SupportsTextRead(Protocol):
    """A reader that can hand a unit over as the target's bulk text (e.g. PostgreSQL COPY
    text), converting on the source server what the plan needs converted."""

    text_format: str

    def copy_text(self, plan: TablePlan, unit: Unit) -> TextUnit | None:
        """The unit as text in :attr:`text_format`, or ``None`` when a column of ``plan``
        needs typed values. A value the typed path would refuse raises ``DataError``: the
        unit is then read again with ``read``, whose error names table, column and key."""
        ...


@runtime_checkable
class SupportsTextWrite(Protocol):
    """A writer that loads its bulk text format (lines a :class:`SupportsTextRead` built)."""

    text_format: str

    def load_text(
        self, plan: TablePlan, columns: Sequence[str], chunks: Iterable[bytes], *, whole: bool
    ) -> int:
        """Load whole lines of ``columns``; return the number of rows written. ``whole``: the
        lines are all of the table's rows (its only unit), so a writer may empty a table it
        created before loading them in the same transaction."""
        ...


@runtime_checkable
class SupportsArrowRead(Protocol):
    """A reader that can deliver a unit as Arrow record batches.

    Columns are named as the source's and typed as
    :func:`replikit.endpoints._arrow.canonical_type` says, or ``string`` of canonical text in
    a batch where a value has no such form (see there). Batches are sized in bytes, so memory
    stays bounded whatever the row width.
    """

    def arrow_readable(self, table: TableSchema) -> bool:
        """True when every column of ``table`` can be read as Arrow."""
        ...

    def read_arrow(self, unit: Unit) -> Iterator[Any]:
        """The unit's rows as ``pyarrow.RecordBatch`` es (every column of the table)."""
        ...


@runtime_checkable
class SupportsArrowWrite(Protocol):
    """A writer that loads Arrow record batches (see :class:`SupportsArrowRead`)."""

    def arrow_writable(self, plan: TablePlan) -> bool:
        """True when every column of ``plan`` can be written from its canonical Arrow form
        with the values the row path would write."""
        ...

    def load_arrow(self, plan: TablePlan, batches: Iterable[Any]) -> int:
        """Write every record batch for one unit of ``plan``; return the rows written."""
        ...


@runtime_checkable
class SupportsColumnRead(Protocol):
    """A reader that can deliver a unit as :class:`ColumnBatch` es (every column of the
    table, in the forms of :mod:`replikit.endpoints._columns`), sized in bytes so memory
    stays bounded whatever the row width."""

    def column_readable(self, table: TableSchema) -> bool:
        """True when every column of ``table`` can be read in its column batch form."""
        ...

    def read_columns(self, unit: Unit) -> Iterator[ColumnBatch]:
        """The unit's rows as column batches."""
        ...


@runtime_checkable
class SupportsColumnWrite(Protocol):
    """A writer that loads :class:`ColumnBatch` es (see :class:`SupportsColumnRead`)."""

    def column_writable(self, plan: TablePlan) -> bool:
        """True when every column of ``plan`` can be written from its column batch form with
        the values the row path would write."""
        ...

    def load_columns(self, plan: TablePlan, batches: Iterable[ColumnBatch]) -> int:
        """Write every column batch for one unit of ``plan``; return the rows written."""
        ...


@runtime_checkable
class SupportsArrowStreamRead(Protocol):
    """A reader that can hand a unit over as one Arrow C stream (an object with
    ``__arrow_c_stream__``) that the target's engine reads in its own code.

    Columns are named as the source's and typed as :class:`SupportsArrowRead` says, except
    that any column may hold each value's canonical text instead, and that a date or timestamp
    outside the years 1-9999 is not carried exactly: a writer checks those and refuses the
    unit (``DataError``), which is then read with ``read_arrow``. The stream is read once,
    inside the context manager (which holds the source's connection). A stream may carry
    ``engine_memory`` (e.g. ``"64MB"``): the target engine's working memory it loads fastest
    with, which a writer whose memory limit the user did not set may take for the unit.
    """

    def arrow_stream(self, unit: Unit) -> AbstractContextManager[Any] | None:
        """The unit as a stream, or ``None`` when it cannot be read so (then through
        ``read_arrow``)."""
        ...


@runtime_checkable
class SupportsArrowStreamWrite(Protocol):
    """A writer that loads a unit from an Arrow stream (see
    :class:`SupportsArrowStreamRead`), for plans ``arrow_writable`` accepts."""

    def arrow_writable(self, plan: TablePlan) -> bool:
        """As :meth:`SupportsArrowWrite.arrow_writable`."""
        ...

    def load_arrow_stream(self, plan: TablePlan, stream: AbstractContextManager[Any]) -> int:
        """Write the unit ``stream`` gives, in one transaction; return the rows written. A
        value refused (or not exact in a stream) is a ``DataError``, raised after the rollback:
        the caller loads the unit from ``read_arrow``, whose error names the row."""
        ...


@runtime_checkable
class ChangeReader(Protocol):
    """Reads changes from a source's log (CDC), one source transaction at a time.

    Delivery is at least once: the source forgets changes only up to the position passed to
    :meth:`ack`, which callers pass only after the changes are durable downstream.
    """

    def transactions(self, start: Position | None = None) -> Iterator[Transaction]:
        """Transactions committed after ``start`` (``None``: the reader's stored start)."""
        ...

    def ack(self, position: Position) -> None:
        """Everything up to ``position`` is durable downstream; the source may discard it."""
        ...

    def close(self) -> None:
        """Stop reading and release the connection."""
        ...


@runtime_checkable
class SupportsTransactionBatches(Protocol):
    """A change reader that can hand out its transactions in lists (the reader thread then
    queues each list at once: one hand-over per list instead of per transaction)."""

    def transaction_batches(self, start: Position | None = None) -> Iterator[list[Transaction]]:
        """The transactions of :meth:`ChangeReader.transactions`, in order, in lists; a
        list is handed out as soon as the reader would otherwise wait for the source."""
        ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A task's recovery state, kept in the target's ``replikit_checkpoints`` control table.

    ``position`` points after the last source transaction whose changes the target committed
    (``None`` until CDC applied something: resume from ``start``). ``start`` is where CDC
    begins: the position the full load's snapshot is consistent with, or "now" for a CDC-only
    task. ``phase`` is ``"full-load"`` until every selected table is loaded, then ``"cdc"``.
    ``loaded`` holds the source table names (``str(TableId)``) whose full load finished.
    ``commit_ts`` is the source commit time of the transaction at ``position``.
    ``snapshots`` maps the source table names a resumed full load loaded again to the source
    position of the snapshot it read them from: their changes at or before it are in the
    loaded rows, so the stream (which replays from ``resume``) skips them; it is emptied once
    ``position`` is past every one of them.
    ``report``, when set, is written with the checkpoint in the same target transaction
    (:meth:`replikit.pipeline.status.Report.write`: the task's status and history rows); it
    is never read back.
    """

    task: str
    start: Position | None = None
    position: Position | None = None
    phase: Literal["full-load", "cdc"] = "cdc"
    loaded: frozenset[str] = field(default_factory=frozenset)
    commit_ts: datetime | None = None
    snapshots: Mapping[str, Position] = field(default_factory=dict, hash=False)
    report: Any = field(default=None, compare=False, repr=False)

    @property
    def resume(self) -> Position | None:
        """Where CDC continues: after the last applied transaction, else at ``start``."""
        return self.position if self.position is not None else self.start


class Fence(Protocol):
    """Keeps a writer that lost its right to write from committing (a standby took over).

    A change writer with a ``fence`` calls :meth:`fence` in every target transaction just
    before COMMIT (:class:`~replikit.pipeline.lease.Lease` is the implementation).
    """

    def fence(self, execute: Callable[[str, tuple[Any, ...]], list[Any]]) -> None:
        """Raise (the caller rolls back) unless this writer may still commit; ``execute(sql,
        params)`` runs a query in the caller's transaction and returns its rows."""
        ...

    def session_statements(self, flavor: str) -> tuple[str, ...]:
        """Statements a writer runs on each new connection (``flavor``: ``postgres``,
        ``mariadb``, ``mysql``, ``sqlite``): a server-side limit on how long a transaction
        may stay idle, so a writer frozen mid-transaction cannot hold its locks, and thus a
        takeover, forever."""
        ...


@runtime_checkable
class SupportsUnitLedger(Protocol):
    """A writer that records each loaded unit in the target, in the unit's own transaction,
    so a unit run twice (a cluster recomputing work a dead worker had finished) is loaded once.

    ``load(plan, batches, once=key)`` / ``load_raw(..., once=key)`` return the recorded row
    count without writing when ``key`` is in the ledger already.
    """

    def start_ledger(self, load: str) -> None:
        """Make the ledger ready for the load ``load`` (before any unit runs)."""
        ...

    def end_ledger(self, load: str) -> None:
        """Forget the units of ``load`` (after every unit ended)."""
        ...


@runtime_checkable
class CheckpointStore(Protocol):
    """Keeps task checkpoints (the target's ``replikit_checkpoints`` control table).

    Apply commits a checkpoint together with the data (:meth:`ChangeWriter.apply`); the store
    reads and writes them outside of an apply (start, phase changes) and forgets a task.
    """

    def read_checkpoint(self, task: str) -> Checkpoint | None:
        """The stored checkpoint of ``task`` (``None``: never started, or dropped)."""
        ...

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` on its own (creates the control tables when missing)."""
        ...

    def drop_control(self, task: str) -> None:
        """Forget ``task``'s control rows; drop the control tables when no task is left."""
        ...


@runtime_checkable
class ChangeWriter(Protocol):
    """Applies CDC transactions to a target, committing the checkpoint with the data.

    Changes handed to :meth:`apply` are already transformed and mapped: ``change.table`` is the
    plan's ``target_id`` and column names (in ``key``, ``before``, ``after``) are the planned
    *source* column names (``ColumnPlan.source.name``), exactly as full-load batches carry
    them; values are canonical Python values, adapted by the plan's column adapters. Apply is
    idempotent (upsert by key, delete-if-exists, partial ``UPDATE ... WHERE key``), so a replay
    after a crash or the overlap of a full-load snapshot converges. Used from one thread.
    """

    def apply(
        self,
        plans: Mapping[TableId, TablePlan],
        transactions: Sequence[Transaction],
        *,
        checkpoint: Checkpoint | None,
        batch: bool,
        on_conflicts: OnConflicts | None = None,
    ) -> None:
        """Apply ``transactions`` in one target transaction, with ``checkpoint`` if given.

        ``plans`` is keyed by target table id. ``batch=True``: net change per key over all of
        ``transactions`` (``replikit.pipeline.netchange``) written with bulk statements;
        ``batch=False``: every change in source order. Either way everything, checkpoint
        included, commits together or not at all. Errors name table, key and column.
        ``on_conflicts`` (writers with ``reports_conflicts``): called before each piece is
        written with the apply conflicts it finds (:mod:`replikit.pipeline.conflicts`).
        """
        ...

    def add_columns(self, plan: TablePlan, columns: Sequence[ColumnPlan]) -> None:
        """Add new nullable columns to ``plan``'s target table (a source schema change)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

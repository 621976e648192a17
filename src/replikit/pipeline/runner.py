"""``Pipeline``: reader -> transforms -> writer, for a full load, on any executor.

The pipeline plans each table (portable types -> the writer's dialect), prepares the target,
splits tables into units, runs the units on a ``concurrent.futures.Executor`` (threads by
default), and finishes the target for the tables that completed: a table's indexes and keys
as soon as its rows are in, while the others load (:mod:`replikit.pipeline.finishing`), the
foreign keys and sequences after the load. When reader and writer speak the same bulk wire
format and a table's column types are identical, rows pass through undecoded.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from replikit._failpoints import failpoint
from replikit.errors import (
    ConfigError,
    DataError,
    Error,
    StoppedError,
    TableDdlError,
    TaskError,
)
from replikit.mapping import Mappings, MappingTransform
from replikit.mapping.binding import rule_collisions, unused_rules
from replikit.mapping.pushed import Projected, Projection
from replikit.pipeline.cache import ChangeCache
from replikit.pipeline.cdc import DEFAULT_QUEUE_BYTES, Replicator, StopCondition
from replikit.pipeline.checks import override_findings, plan_findings, refuse_unsupported
from replikit.pipeline.choices import PREP_MODES, check_stream_gc
from replikit.pipeline.contracts import (
    ChangeReader,
    ChangeWriter,
    CheckpointStore,
    HasDefaultSchema,
    Reader,
    SupportsArrowRead,
    SupportsArrowStreamRead,
    SupportsArrowStreamWrite,
    SupportsArrowWrite,
    SupportsClose,
    SupportsColumnRead,
    SupportsColumnWrite,
    SupportsDdl,
    SupportsEarlyFinish,
    SupportsPrepare,
    SupportsPushedMappings,
    SupportsRawRead,
    SupportsRawWrite,
    SupportsSchemaObjects,
    SupportsSkippedObjects,
    SupportsTextRead,
    SupportsTextWrite,
    SupportsUnitLedger,
    SupportsValueNotes,
    Unit,
    ValueNotes,
    Writer,
    dialect_of,
)
from replikit.pipeline.control import ControlStore
from replikit.pipeline.finishing import EarlyFinish
from replikit.pipeline.policy import Backoff, ErrorPolicy, recoverable
from replikit.pipeline.progress import Progress
from replikit.pipeline.reload import Loader
from replikit.pipeline.skiprows import RowSkipper
from replikit.pipeline.splitting import (
    AUTO_SPLIT_ROWS,
    SplitRows,
    auto_split_rows,
    load_slots,
    on_this_machine,
    usable_cores,
)
from replikit.pipeline.stats import Statistics, TableState, note_values
from replikit.pipeline.status import StatusReporter
from replikit.pipeline.stream import run_stream
from replikit.pipeline.units import (
    HasExecutor,
    UnitLoader,
    executor_of,
    in_process,
    may_rerun,
)
from replikit.positions import Position
from replikit.schema.convert import (
    PYTHON,
    TablePlan,
    link_foreign_keys,
    plan_table,
    without_generation,
)
from replikit.schema.findings import Finding
from replikit.schema.model import Routine, TableId, TableSchema, View
from replikit.schema.report import ObjectPlan
from replikit.transforms import SchemaTransform, Transform

__all__ = ["PREP_MODES", "Pipeline", "UnitLoader"]

log = logging.getLogger("replikit.pipeline")


def _with_filter(
    mapper: MappingTransform | None, table: TableSchema, units: list[Unit]
) -> list[Unit]:
    """Give the units the table's row filter, for the reader to push down to the source."""
    bound = mapper.bound(table.id) if mapper is not None else None
    if bound is None or bound.predicate is None:
        return units
    return [replace(u, where=bound.predicate) for u in units]


def _with_text_columns(plan: TablePlan, units: list[Unit]) -> list[Unit]:
    """Ask the reader for the source's text form of the columns the plan reads as text."""
    as_text = frozenset(c.source.name for c in plan.columns if c.target.as_text)
    return [replace(u, as_text=as_text) for u in units] if as_text else units


class Pipeline:
    """A pipeline assembled from stages: reader -> transforms -> cache -> writer.

    Given a :class:`Reader` and a :class:`Writer` it runs a full load; given a
    :class:`~replikit.pipeline.contracts.ChangeReader` and a
    :class:`~replikit.pipeline.contracts.ChangeWriter` it runs a change stream
    (:mod:`replikit.pipeline.stream`): optionally a full load first while changes wait in the
    cache, then every change, each batch committed with its checkpoint. ``Task`` builds its
    work from these same pipelines.

    Args:
        reader: where rows come from (``endpoint.reader(...)`` or your own :class:`Reader`),
            or a change reader (``endpoint.cdc_reader(tables, task=...)``).
        writer: where rows go (``endpoint.writer()`` or any object with ``load(plan, batches)``),
            or a change writer (``endpoint.change_writer()``) for a change reader.
        transforms: callables applied to every row and change (as :class:`~replikit.Change` s).
        cache: where changes wait while tables load (a stream with ``load=``): in memory by
            default, or a :class:`~replikit.pipeline.cache.DiskCache`; both spill to disk.
        checkpoints: where a stream keeps its position (``endpoint.checkpoint_store()``; the
            change writer when it is one).
        task_id: names the stream's checkpoint (and nothing else).
        tables: the source tables of a change reader (a full-load reader knows its own).
        batch_apply: a stream applies the net change per key of each batch with bulk
            statements, instead of every change in source order.
        batch_changes: most changes per target transaction of a stream.
        queue_bytes: bound on the changes read ahead of the apply.
        stop_when: when a stream stops on its own (idle time, position, commit time).
        mappings: the table mappings: target names (renames, case, prefixes), row filters
            (pushed down to the source's query where it can test them), masks, added,
            removed and retyped columns (:class:`~replikit.Mappings`).
        mask_secret: the key of the mappings' masks (``None``: ``REPLIKIT_MASK_SECRET``;
            masking without one is refused).
        type_overrides: ``{"schema.table.column": "native target type"}``.
        prep_mode: ``drop-and-create``, ``truncate`` or ``do-nothing``.
        executor: runs the units; by default a thread pool of ``parallel`` workers. A Dask
            ``distributed.Client`` runs them on its workers
            (:func:`~replikit.pipeline.units.executor_of`).
        parallel: workers of the default executor.
        split_rows: split tables above this many (estimated) rows into key ranges of about
            that size; ``"auto"``: into at most as many ranges as units can load at once
            (:mod:`replikit.pipeline.splitting`); ``None``: never split.
        statistics: where counters go (a new :class:`Statistics` by default).
        progress: show a progress line on stderr (``None``: only when it is a terminal).
        on_table_loaded: called (in the thread that called ``run``) with each table's plan
            as soon as its last unit is written, before indexes and keys are added.
        finish: add indexes, keys and sequence values (the writer's ``finish`` after the
            load; a writer with ``finish_loaded`` builds each table's indexes and keys as soon
            as its rows are in); ``False`` leaves that to the caller.
        replicate: the target tables will also receive changes (CDC); existing target
            tables are then also checked for the key changes are applied by.
        views: the source's views, created after the tables when the writer can
            (:meth:`view_plans`); one the target refuses is reported, not an error.
        routines: the source's functions (a view that calls one is not converted).
        generated_columns: ``"create"`` makes generated source columns generated in the
            target when their expression converts (never written by the load); ``"values"``
            copies their values into plain columns.
        source_sql: the dialect of the source's SQL expressions (generated columns) when
            the reader has none (a change reader), so a stream plans what the load created.
        verify_generated: called after the load (and the schema objects) with each completed
            table's plan that has generated columns; a message it returns fails that table
            (the target computes other values than the source holds).
        reporter: a stream writes the task's status and history with its checkpoints
            (:mod:`replikit.pipeline.status`).
        error_policy: what a bad row or a lost connection does (:class:`ErrorPolicy`).
        control: where a stream records suspended tables and set-aside changes.
        schema_policy: what a stream does with a source schema change (``apply``,
            ``stop-table``, ``ignore``).
        on_table_suspended: called with a table's plan and the :class:`DataError` that
            ended its load, instead of putting the table in error (a stream's load: the
            table is suspended and the others go on).
        reloader: loads one source table again, telling where its read stands (a stream
            reloads suspended tables with it while it runs: :mod:`replikit.pipeline.reload`).
        stream_gc: ``managed`` (default): while a stream applies changes, Python's
            count-triggered garbage collections are off and the stream collects every 5 s
            between batches; ``python``: the collector is left as it is (``TaskSettings``).
    """

    def __init__(
        self,
        reader: Reader | ChangeReader,
        writer: Writer | ChangeWriter,
        *,
        transforms: Sequence[Transform] = (),
        cache: ChangeCache | None = None,
        checkpoints: CheckpointStore | None = None,
        task_id: str = "pipeline",
        tables: Sequence[TableSchema] | None = None,
        batch_apply: bool = False,
        batch_changes: int = 10_000,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        stop_when: StopCondition | None = None,
        mappings: Mappings | None = None,
        mask_secret: str | bytes | None = None,
        type_overrides: Mapping[str, str] | None = None,
        prep_mode: str = "drop-and-create",
        executor: Executor | HasExecutor | None = None,
        parallel: int = 4,
        split_rows: SplitRows = None,
        statistics: Statistics | None = None,
        progress: bool | None = None,
        on_table_loaded: Callable[[TablePlan], None] | None = None,
        finish: bool = True,
        replicate: bool = False,
        views: Sequence[View] = (),
        routines: Sequence[Routine] = (),
        generated_columns: str = "create",
        source_sql: str | None = None,
        verify_generated: Callable[[TablePlan], str | None] | None = None,
        reporter: StatusReporter | None = None,
        error_policy: ErrorPolicy | None = None,
        control: ControlStore | None = None,
        schema_policy: str = "apply",
        on_table_suspended: Callable[[TablePlan, BaseException], None] | None = None,
        reloader: Loader | None = None,
        stream_gc: str = "managed",
    ) -> None:
        if prep_mode not in PREP_MODES:
            raise ConfigError(
                f"prep_mode must be one of {', '.join(PREP_MODES)}; got {prep_mode!r}"
            )
        check_stream_gc(stream_gc)
        self.reader = reader
        self.writer = writer
        self.mappings = mappings or Mappings()
        #: the mappings' row stage (``None`` when they only rename)
        self.mapper = (
            MappingTransform(self.mappings, mask_secret) if self.mappings.transforms_rows else None
        )
        self.transforms: tuple[Transform, ...] = (
            *((self.mapper,) if self.mapper is not None else ()),
            *transforms,
        )
        self.cache = cache
        self.checkpoints = checkpoints
        self.task_id = task_id
        self._tables = None if tables is None else list(tables)
        self.batch_apply = batch_apply
        self.batch_changes = batch_changes
        self.queue_bytes = queue_bytes
        self.stop_when = stop_when
        self.reporter = reporter
        #: ``"idle"``, ``"full-load"``, ``"cdc"`` (a stream applying changes) or ``"stopped"``
        self.phase = "idle"
        self.replicator: Replicator | None = None  # while a stream runs
        self.loading: Pipeline | None = None  # while a stream's full load runs
        self.type_overrides = dict(type_overrides or {})
        self.generated_columns = generated_columns
        self.source_sql = source_sql
        self.verify_generated = verify_generated
        self.prep_mode = prep_mode
        self.executor = executor_of(executor)
        self.parallel = max(1, parallel)
        self.split_rows = split_rows
        self.statistics = statistics if statistics is not None else Statistics()
        self.progress = progress
        self.on_table_loaded = on_table_loaded
        self.finish = finish
        self.replicate = replicate
        self.views = tuple(views)
        self.error_policy = error_policy or ErrorPolicy()
        self.control = control
        self.schema_policy = schema_policy
        self.on_table_suspended = on_table_suspended
        self.reloader = reloader
        self.stream_gc = stream_gc
        self.functions = tuple(r.id.name for r in routines if r.kind == "function")
        self._view_plans: list[ObjectPlan] | None = None
        self._stop = threading.Event()
        #: futures of units run in other processes: they return (rows, ValueNotes)
        self._remote: set[Future[Any]] = set()
        #: what the readers noted of this run's units, per unit (here or elsewhere)
        self._unit_notes: dict[tuple[str, int, int, str], ValueNotes] = {}
        self._early: EarlyFinish | None = None  # while a full load runs
        self._plans: list[TablePlan] | None = None
        self._findings: list[Finding] | None = None
        self._sources: dict[TableId, TableSchema] = {}
        self.__skipper: RowSkipper | None = None
        self._skipper_lock = threading.Lock()
        self._projections: dict[TableId, Projection | None] = {}

    # -- planning ---------------------------------------------------------------------------
    @property
    def tables(self) -> list[TableSchema]:
        """The source tables: the reader's, or those given for a change reader."""
        if self._tables is not None:
            return self._tables
        if isinstance(self.reader, Reader):
            return list(self.reader.tables)
        raise ConfigError("a pipeline with a change reader needs tables= (the source tables)")

    @property
    def streaming(self) -> bool:
        """Whether this pipeline applies a change stream (its reader is a change reader)."""
        return isinstance(self.reader, ChangeReader) and not isinstance(self.reader, Reader)

    def _shape(self, table: TableSchema) -> TableSchema:
        for t in self.transforms:
            if isinstance(t, SchemaTransform):
                table = t.transform_schema(table)
        return table

    def _target_id(self, table: TableId) -> TableId:
        target = dialect_of(self.writer)
        if target is PYTHON:
            return self.mappings.target_id(table, schemas=True, default_schema=table.schema)
        writer = self.writer
        default_schema = writer.default_schema if isinstance(writer, HasDefaultSchema) else None
        return self.mappings.target_id(
            table, schemas=default_schema is not None, default_schema=default_schema
        )

    def plans(self) -> list[TablePlan]:
        """One :class:`TablePlan` per table of the reader (computed once)."""
        if self._plans is None:
            plans = []
            for table in self.tables:
                plan = self.plan_for(table)
                self._sources[plan.target_id] = table
                plans.append(plan)
            self._plans = link_foreign_keys(plans)
        return self._plans

    def plan_for(self, table: TableSchema) -> TablePlan:
        """Plan one source table as this pipeline would (transforms, mappings, overrides)."""
        return plan_table(
            self._shape(table),
            source_dialect=dialect_of(self.reader).name,
            target=dialect_of(self.writer),
            target_id=self._target_id(table.id),
            column_names=self.mappings.columns_of(table.id, table.column_names),
            type_overrides=self.type_overrides,
            generated_columns=self.generated_columns,
            expression_dialect=self.source_sql,
        )

    def view_plans(self) -> list[ObjectPlan]:
        """The views converted to the writer's dialect, in dependency order (computed once)."""
        if self._view_plans is None and not self.views:
            self._view_plans = []  # sqlglot not imported (0.5 s of a full load's start)
        if self._view_plans is None:
            from replikit.schema.views import ViewSource, plan_views  # sqlglot: when asked

            sources = {
                p.source.id: ViewSource(
                    p.target_id,
                    {c.source.name: c.name for c in p.columns if c.name != c.source.name},
                )
                for p in self.plans()
            }
            self._view_plans = plan_views(
                self.views,
                tables=sources,
                source=dialect_of(self.reader).name,
                target=dialect_of(self.writer).name,
                target_id=self._target_id,
                functions=self.functions,
            )
        return self._view_plans

    def findings(self) -> list[Finding]:
        """Object-level findings of the plan (computed once): what the target cannot hold
        faithfully beyond single column types. Unsupported ones stop :meth:`run`."""
        if self._findings is None:
            plans = self.plans()
            self._findings = plan_findings(
                plans,
                self.writer,
                self.prep_mode,
                replicate=self.replicate,
                source=dialect_of(self.reader),
                reader=self.reader,
            ) + override_findings(self.type_overrides, plans)
            self._findings += rule_collisions(self.mappings, plans)
        return self._findings

    def mapping_notes(self) -> dict[str, list[str]]:
        """Per source table, what its mapping rules do to rows: the row filter, masks, added,
        removed and retyped columns (names are in the plans)."""
        self.plans()
        if self.mapper is None:
            return {}
        out = {}
        for table in self.tables:
            bound = self.mapper.bound(table.id)
            if bound is not None and bound.notes:
                out[str(table.id)] = list(bound.notes)
        return out

    def mapping_warnings(self) -> list[str]:
        """Rules that match no selected table or column (a likely typo)."""
        self.plans()
        used = self.mapper.used if self.mapper is not None else set()
        return [
            f"{r.label()} matches no selected table or column"
            for r in unused_rules(self.mappings, self.tables, used)
        ]

    # -- running ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask a running pipeline to stop (thread-safe; also before ``run``).

        A full load: each unit ends after its current batch, ``run`` raises
        :class:`StoppedError` and tables not loaded are ``Table cancelled``. A stream: the
        batch being applied commits with its checkpoint and ``run`` returns.
        """
        self._stop.set()
        for part in (self.loading, self.replicator):
            if part is not None:
                part.stop()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called and the run has not ended yet."""
        return self._stop.is_set()

    def refuse(self, plans: Sequence[TablePlan]) -> None:
        """:class:`ConversionError` for unsupported columns and findings, before any write."""
        refuse_unsupported(plans, self.findings())

    def run(
        self,
        *,
        load: Pipeline | None = None,
        start: Position | None = None,
        after_load: Callable[[], object] | None = None,
        snapshots: Mapping[TableId, Position] | None = None,
    ) -> Statistics:
        """Run the pipeline; return the statistics.

        A full load loads every table: a table that cannot be prepared, loaded or finished is
        ``Table error`` with its cause; the others go on. A stream (change reader) resumes
        from its checkpoint, or starts at ``start`` (``None``: the reader's stored position);
        on its first run with ``load`` (a full-load pipeline of the same tables, reading a
        snapshot consistent with ``start``) it loads first while changes wait in the cache,
        calling ``after_load`` when the load is done. A load resumed after a stop reads from a
        snapshot of its own: ``snapshots`` gives its source position per table, and the stream
        skips those tables' changes at or before it (they are in the loaded rows). It runs
        until :meth:`stop` or its ``stop_when`` condition.

        Raises:
            ConversionError: a column is unsupported (before anything is written).
            ConfigError: the executor cannot run this pipeline's work (before any write).
            TaskError: some tables failed; the others completed (see ``statistics``).
            StoppedError: :meth:`stop` was called before every table was loaded.
        """
        if self.streaming:
            try:
                return run_stream(
                    self, load=load, start=start, after_load=after_load, snapshots=snapshots
                )
            finally:
                self._stop.clear()
        if load is not None or start is not None or after_load is not None or snapshots:
            raise ConfigError("load=, start=, after_load= and snapshots= are for a change stream")
        return self._load_all()

    def _load_all(self) -> Statistics:
        plans = self.plans()
        self._unit_notes.clear()  # this run's units count anew
        self.refuse(plans)
        self._loader().check_executor(self.executor, plans)
        for p in plans:
            self.statistics.add(str(p.source.id), str(p.target_id), p.source.estimated_rows)
        try:
            failed = self._prepare(plans)
            self._early = self._early_finish(plans)
            with Progress(self.statistics, enabled=self.progress):
                work = self._work([p for p in plans if self._ok(p, failed)], failed)
                failed |= self._execute(work)
                failed |= self._end_early(plans)
            self._raise_if_stopped(plans, failed)
        finally:
            if self._early is not None:  # after an error: its builds end before the run
                self._early.close()
                self._early = None
            self._stop.clear()  # a stop request ends this run, not the next one
            if isinstance(self.reader, SupportsClose):
                self.reader.close()
        self._note_values(plans)
        done = [p for p in plans if self._ok(p, failed)]
        if self.finish and isinstance(self.writer, SupportsPrepare) and done:
            failed |= self._finish(done, [p for p in plans if not self._ok(p, failed)])
            self.create_objects([p for p in done if self._ok(p, failed)])
            failed |= self._verify([p for p in done if self._ok(p, failed)])
        for p in done:
            if self._ok(p, failed):
                self.statistics.finish(str(p.source.id), TableState.COMPLETED)
        if failed:
            names = ", ".join(sorted(failed))
            raise TaskError(
                f"{len(failed)} of {len(plans)} tables failed: {names}. "
                f"First error: {next(iter(failed.values()))}",
                failed,
            )
        return self.statistics

    def _note_values(self, plans: list[TablePlan]) -> None:
        """Say in each table's statistics how many values of which column the reader read
        otherwise than the source stores them (:class:`SupportsValueNotes`, e.g. MySQL zero
        dates read as NULL): the sum over this run's loaded units, whether this process's
        reader or another process's read them."""
        total: Counter[tuple[str, str, str]] = Counter()
        for notes in self._unit_notes.values():
            total.update(notes)
        names = {str(p.source.id) for p in plans}
        note_values(self.statistics, {k: n for k, n in total.items() if k[0] in names})

    def _early_finish(self, plans: list[TablePlan]) -> EarlyFinish | None:
        """Who builds a table's indexes and keys once its rows are loaded, while the others
        load (:mod:`replikit.pipeline.finishing`): when this run finishes the tables, the
        writer can, and there is another table to load meanwhile."""
        writer = self.writer
        if self.finish and isinstance(writer, SupportsEarlyFinish) and len(plans) > 1:
            return EarlyFinish(writer, self._stop)
        return None

    def _end_early(self, plans: list[TablePlan]) -> dict[str, BaseException]:
        """Wait for the indexes and keys being built during the load; the tables that
        failed there are in error."""
        early, self._early = self._early, None
        refused = early.close() if early is not None else None
        if refused is None:
            return {}
        return self._table_errors(plans, refused, "indexes and keys not completed")

    @staticmethod
    def _ok(plan: TablePlan, failed: Mapping[str, BaseException]) -> bool:
        return str(plan.source.id) not in failed

    def _prepare(self, plans: list[TablePlan]) -> dict[str, BaseException]:
        """Create/truncate/check the target tables; the ones the writer refused are in error."""
        if not isinstance(self.writer, SupportsPrepare):
            return {}
        try:
            self.writer.prepare(plans, self.prep_mode)
        except TableDdlError as exc:
            left = self._plain_generated(plans, exc)
            return (
                {} if left is None else self._table_errors(plans, left, "target table not prepared")
            )
        return {}

    def _plain_generated(self, plans: list[TablePlan], exc: TableDdlError) -> TableDdlError | None:
        """Refused tables with generated columns, prepared again with those as plain columns
        holding the source's values (``plans`` updated in place); the errors left, if any.

        Only for a full load alone: a change stream has planned the columns as generated, and
        would leave them out of the rows it writes."""
        if self.replicate:
            return exc
        errors = dict(exc.table_errors)
        retry: list[tuple[str, TablePlan, TablePlan]] = []
        for i, plan in enumerate(plans):
            key = next((k for k in (str(plan.target_id), str(plan.source.id)) if k in errors), "")
            if key and plan.computed:
                cause = str(errors.pop(key)).strip().splitlines()[0]
                why = (
                    f"{plan.target_dialect} refused the table with its generated columns ({cause})"
                )
                plans[i] = without_generation(plan, why)
                retry.append((why, plan, plans[i]))
        if not retry:
            return exc
        assert isinstance(self.writer, SupportsPrepare)
        try:
            self.writer.prepare([new for _, _, new in retry], self.prep_mode)
        except TableDdlError as again:
            errors.update(again.table_errors)
        for why, old, new in retry:
            if str(new.target_id) not in errors and str(new.source.id) not in errors:
                self.statistics.warn(str(new.source.id), f"{why}: copied as plain values")
                for obj in old.objects:
                    if obj.kind == "generated column" and obj.converted:
                        self.statistics.object_created(obj, why)
        return TableDdlError(str(exc), errors) if errors else None

    def _finish(self, done: list[TablePlan], skipped: list[TablePlan]) -> dict[str, BaseException]:
        """Indexes, keys and sequences for the loaded tables; report foreign keys left out."""
        assert isinstance(self.writer, SupportsPrepare)
        failed: dict[str, BaseException] = {}
        try:
            self.writer.finish(done)
        except TableDdlError as exc:
            failed = self._table_errors(done, exc, "indexes and keys not completed")
        bad = {p.target_id for p in skipped} | {
            p.target_id for p in done if not self._ok(p, failed)
        }
        inline = isinstance(self.writer, SupportsDdl) and self.writer.foreign_keys_in_create
        for plan in done:
            for fk in plan.target_schema.foreign_keys:
                if fk.ref_table in bad and self._ok(plan, failed):
                    label = fk.name or f"({', '.join(fk.columns)})"
                    self.statistics.warn(
                        str(plan.source.id),
                        f"foreign key {label} refers to {fk.ref_table}, which failed"
                        if inline
                        else f"foreign key {label} to {fk.ref_table} not created: that table "
                        "failed",
                    )
        return failed

    def create_objects(self, plans: Sequence[TablePlan]) -> None:
        """Converted CHECKs of ``plans`` and the views, when the writer creates them; each
        outcome is in ``statistics.objects`` and a refused CHECK is a note on its table. Keys
        and indexes the writer is configured to leave out are there too, with the reason."""
        if isinstance(self.writer, SupportsSkippedObjects):
            for obj in self.writer.skipped_objects(plans):
                self.statistics.object_created(obj, obj.reason)
        if not isinstance(self.writer, SupportsSchemaObjects):
            return
        by_target = {p.target_id: p for p in plans}
        views = [v for v in self.view_plans() if v.converted]
        for obj, error in self.writer.create_objects(plans, views):
            self.statistics.object_created(obj, error)
            table = by_target.get(obj.table) if obj.table is not None else None
            if error is not None and table is not None:
                self.statistics.warn(
                    str(table.source.id), f"{obj.kind} {obj.name} not created: {error}"
                )

    def _verify(self, plans: Sequence[TablePlan]) -> dict[str, BaseException]:
        """Tables whose generated columns the target computes otherwise than the source."""
        failed: dict[str, BaseException] = {}
        if self.verify_generated is None:
            return failed
        for plan in plans:
            if not plan.computed:
                continue
            name = str(plan.source.id)
            try:
                problem = self.verify_generated(plan)
            except Error as exc:
                self.statistics.warn(name, f"generated columns not verified: {exc}")
                continue
            if problem is not None:
                log.info("table %s: %s", name, problem)
                failed[name] = DataError(problem, table=name)
                self.statistics.finish(name, TableState.ERROR, problem)
        return failed

    def _table_errors(
        self, plans: list[TablePlan], exc: TableDdlError, what: str
    ) -> dict[str, BaseException]:
        """Mark the tables a writer named in ``exc.table_errors`` (target or source names)."""
        names = {str(p.target_id): str(p.source.id) for p in plans}
        names.update({str(p.source.id): str(p.source.id) for p in plans})
        failed: dict[str, BaseException] = {}
        for table, error in exc.table_errors.items():
            name = names.get(table)
            if name is None:
                raise exc
            log.info("table %s: %s: %s", name, what, error)
            failed[name] = error
            self.statistics.finish(name, TableState.ERROR, f"{what}: {error}")
        return failed

    def _raise_if_stopped(
        self, plans: list[TablePlan], failed: Mapping[str, BaseException]
    ) -> None:
        if not self._stop.is_set():
            return
        for st in self.statistics:
            if st.state in (TableState.BEFORE_LOAD, TableState.FULL_LOAD):
                self.statistics.finish(st.table, TableState.CANCELLED, "stopped before loaded")
        loaded = sum(
            1
            for p in plans
            if self._ok(p, failed)
            and self.statistics[str(p.source.id)].units_done
            >= self.statistics[str(p.source.id)].units_total
        )
        raise StoppedError(
            f"stopped before the full load finished: {loaded} of {len(plans)} tables loaded "
            "(indexes and keys not all added); run again with drop-and-create or truncate to "
            "load the rest",
            dict(failed),
        )

    def _work(
        self, plans: list[TablePlan], failed: dict[str, BaseException]
    ) -> list[tuple[TablePlan, Unit]]:
        """The units to load; a table the reader cannot split is in error (added to
        ``failed``), the others go on."""
        work: list[tuple[TablePlan, Unit]] = []
        slots = self._slots()
        for plan in plans:
            name = str(plan.source.id)
            try:
                table = self._sources[plan.target_id]
                units = self._stages()[0].units(table, split_rows=self._range_rows(table, slots))
            except Exception as exc:  # one table's failure is that table's failure
                log.info("table %s: not split into units: %s", name, exc)
                failed[name] = exc
                self.statistics.finish(name, TableState.ERROR, f"not read: {exc}")
                continue
            units = _with_text_columns(plan, _with_filter(self.mapper, table, units))
            select = self._projection(plan) if self._raw_ok(plan) else None
            if select is not None:  # the source's SELECT computes the mapped rows
                units = [replace(u, select=select) for u in units]
            self.statistics[name].units_total = len(units)
            work.extend((plan, u) for u in units)
        # biggest tables first: the longest unit bounds the wall time
        work.sort(key=lambda pu: -(pu[0].source.estimated_rows or 0) / max(pu[1].count, 1))
        return work

    def _slots(self) -> int | None:
        """For ``split_rows="auto"``: how many units of a table can usefully load at once
        (:func:`~replikit.pipeline.splitting.load_slots`); ``None`` (ranges of
        :data:`~replikit.pipeline.splitting.AUTO_SPLIT_ROWS`) when the writer gains nothing
        from a table loaded whole (only ``prefers_whole_tables`` ones do), or the units run
        in other processes (a cluster, whose size this process does not know)."""
        if (
            self.split_rows != "auto"
            or not getattr(self.writer, "prefers_whole_tables", False)
            or (self.executor is not None and not in_process(self.executor))
        ):
            return None
        stages = self._stages()
        slots = load_slots(self.parallel, stages)
        here = [n for n, s in zip(("source", "target"), stages, strict=True) if on_this_machine(s)]
        log.info(
            "split_rows=auto: %d load slot(s) (%d worker(s), %d core(s), %s on this machine): "
            "a table of more than %s rows is cut into at most that many key ranges", slots,
            self.parallel, usable_cores(), " and ".join(here) or "neither database",
            f"{AUTO_SPLIT_ROWS:,}",
        )  # fmt: skip
        return slots

    def _range_rows(self, table: TableSchema, slots: int | None) -> int | None:
        """The ``split_rows`` the reader cuts ``table`` by."""
        if self.split_rows != "auto":
            return self.split_rows
        if slots is None:
            return AUTO_SPLIT_ROWS
        return auto_split_rows(table.estimated_rows or 0, slots)

    def _execute(self, work: list[tuple[TablePlan, Unit]]) -> dict[str, BaseException]:
        failed: dict[str, BaseException] = {}
        own = self.executor is None
        executor = self.executor or ThreadPoolExecutor(self.parallel, "replikit-load")
        futures: dict[Future[Any], tuple[TablePlan, Unit]] = {}
        ledger = None
        if may_rerun(executor):  # a unit may run twice there: load each one once
            writer = self._stages()[1]
            assert isinstance(writer, SupportsUnitLedger)  # check_executor refused the others
            ledger = uuid.uuid4().hex
            writer.start_ledger(ledger)
        try:
            for plan, unit in work:
                futures[self._submit(executor, plan, unit, ledger)] = (plan, unit)
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    plan, unit = futures[fut]
                    self._collect(fut, plan, unit, failed)
        except BaseException:
            self._stop.set()  # running units end after their current batch
            for fut in futures:
                fut.cancel()
            for st in self.statistics:
                if st.state in (TableState.BEFORE_LOAD, TableState.FULL_LOAD):
                    self.statistics.finish(st.table, TableState.CANCELLED)
            raise
        finally:
            if own:
                executor.shutdown(wait=True, cancel_futures=True)
            if ledger is not None:
                writer = self._stages()[1]
                assert isinstance(writer, SupportsUnitLedger)
                writer.end_ledger(ledger)
        return failed

    def _submit(
        self, executor: Executor, plan: TablePlan, unit: Unit, ledger: str | None
    ) -> Future[Any]:
        """The unit's load: its future gives the rows written, or, in another process, the
        rows and what that process's reader noted of the values (:meth:`UnitLoader.noted`)."""
        if in_process(executor):
            return executor.submit(self._load_unit, plan, unit)
        # another process: the loader pickles; rows are counted when the unit returns
        self.statistics.started(
            str(plan.source.id), self.statistics[str(plan.source.id)].units_total
        )
        loader = replace(self._loader(), ledger=ledger)
        columns = self._columns_ok(plan, unit)  # taken before Arrow (pyarrow not imported)
        future = executor.submit(
            loader.noted,
            plan,
            unit,
            self._raw_ok(plan),
            not columns and self._arrow_ok(plan, unit),
            self._text_ok(plan, unit),
            columns=columns,
            stream=self._stream_ok(plan, unit),
        )
        self._remote.add(future)
        return future

    def _loader(self) -> UnitLoader:
        return UnitLoader(*self._stages(), self.transforms)

    def _stages(self) -> tuple[Reader, Writer]:
        """The reader and writer of a full load (a stream's are refused by name)."""
        reader, writer = self.reader, self.writer
        if not isinstance(reader, Reader):  # pragma: no cover - run() dispatches on it
            raise ConfigError(f"a full load needs a Reader, not {type(reader).__name__}")
        if not isinstance(writer, Writer):
            raise ConfigError(
                f"a full load writes rows: its writer must be a Writer (endpoint.writer()), "
                f"not {type(writer).__name__}"
            )
        return reader, writer

    def _collect(
        self, fut: Future[Any], plan: TablePlan, unit: Unit, failed: dict[str, BaseException]
    ) -> None:
        name = str(plan.source.id)
        exc = fut.exception()
        if exc is None:
            key = (str(unit.table), unit.index, unit.count, repr(unit.range))
            if fut in self._remote:
                rows, notes = fut.result()
                self.statistics.rows(name, rows)
                self._unit_notes[key] = notes
            elif isinstance(self.reader, SupportsValueNotes):
                self._unit_notes[key] = self.reader.value_notes(unit)
            last = self.statistics.unit_done(name)
            suspended = self.statistics[name].state is TableState.SUSPENDED
            if last and name not in failed and not suspended:
                if self.on_table_loaded is not None:
                    self.on_table_loaded(plan)
                if self._early is not None:
                    self._early.table_loaded(plan)
            return
        if isinstance(exc, StoppedError):
            self.statistics.finish(name, TableState.CANCELLED, "stopped before loaded")
            return
        if not isinstance(exc, Exception):
            raise exc
        log.info("table %s unit %s failed: %s", name, unit, exc)
        if isinstance(exc, DataError) and self.on_table_suspended is not None:
            if self.statistics[name].state is not TableState.SUSPENDED:
                self.on_table_suspended(plan, exc)  # the table stops; the others go on
            return
        failed.setdefault(name, exc)
        self.statistics.finish(name, TableState.ERROR, str(exc))

    def _load_unit(self, plan: TablePlan, unit: Unit) -> int:
        name = str(plan.source.id)
        if self.statistics[name].state in (TableState.ERROR, TableState.SUSPENDED):
            return 0
        self._check_stop()
        self.statistics.started(name, self.statistics[name].units_total)
        backoff = Backoff(self.error_policy, wait=self._stop.wait)
        while True:
            counted = [0]
            try:
                return self._load_unit_once(plan, unit, counted)
            except Error as exc:
                delay = self._retry_delay(exc, backoff)
                if delay is None:
                    raise
                self.statistics.rows(name, -counted[0])  # rolled back with the unit
                self.statistics.retried(exc)
                log.warning(
                    "table %s unit %s: %s; loading the unit again in a new transaction in "
                    "%.1f s (retrying for %.0f s more)", name, unit, exc, delay,
                    self.error_policy.retry_timeout - backoff.elapsed,
                )  # fmt: skip
                if backoff.wait(delay):
                    raise StoppedError("stopped") from exc

    def _retry_delay(self, exc: Error, backoff: Backoff) -> float | None:
        """The wait before loading a failed unit again, or ``None`` (do not): only a
        recoverable error, on a writer whose units are one transaction each (so the failed
        attempt left nothing), outside ``skip-row`` (which commits batch by batch), in a plain
        full load (a stream's load reads a snapshot tied to its CDC start, which a lost source
        connection ends: its task runs the load again from a new one)."""
        if (
            not recoverable(exc)
            or self.replicate
            or self._stop.is_set()
            or not getattr(self.writer, "atomic_units", False)
            or self.error_policy.data_errors == "skip-row"
        ):
            return None
        return backoff.next_delay()

    def _load_unit_once(self, plan: TablePlan, unit: Unit, counted: list[int]) -> int:
        name = str(plan.source.id)
        loader = self._loader()
        if self._raw_ok(plan):
            assert isinstance(self.reader, SupportsRawRead)
            assert isinstance(self.writer, SupportsRawWrite)
            try:
                chunks = self._checked(self.reader.read_raw(unit))
                n = self.writer.load_raw(plan, chunks, whole=unit.count == 1)
            except DataError as exc:
                if unit.select is None:
                    raise
                # a value the source's SELECT could not compute, or the target refused:
                # the unit (rolled back) goes through Python below, which decides each row
                log.info("table %s unit %s: loading through Python: %s", name, unit, exc)
            else:
                self.statistics.rows(name, n)
                failpoint("full-load.batch", wake=self._stop)
                return n
        if self._skipper is not None:  # skip-row: batch by batch, refused rows set aside
            n_kept = self._skipper.load(plan, loader.batches(plan, unit))
            failpoint("full-load.batch", wake=self._stop)
            return n_kept
        # the source's driver straight into the target's engine first, then text
        if self._stream_ok(plan, unit):
            n_stream = loader.load_stream(plan, unit)
            if n_stream is not None:
                self.statistics.rows(name, n_stream)
                failpoint("full-load.batch", wake=self._stop)
                return n_stream
        if self._text_ok(plan, unit):
            n_text = loader.load_text(plan, unit, self._checked)
            if n_text is not None:
                self.statistics.rows(name, n_text)
                failpoint("full-load.batch", wake=self._stop)
                return n_text
        if self._columns_ok(plan, unit):
            assert isinstance(self.reader, SupportsColumnRead)
            assert isinstance(self.writer, SupportsColumnWrite)
            columns = self._counted(name, self.reader.read_columns(unit), counted)
            return self.writer.load_columns(plan, columns)
        if self._arrow_ok(plan, unit):
            assert isinstance(self.reader, SupportsArrowRead)
            assert isinstance(self.writer, SupportsArrowWrite)
            arrow = self._counted(name, self.reader.read_arrow(unit), counted)
            return self.writer.load_arrow(plan, arrow)
        batches = self._counted(name, loader.batches(plan, unit), counted)
        return self._stages()[1].load(plan, batches)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StoppedError("stopped")

    def _checked(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._check_stop()
            yield chunk
            failpoint("full-load.chunk", wake=self._stop)

    @property
    def _skipper(self) -> RowSkipper | None:
        """The row skipper of a ``skip-row`` load (units in this process only: a unit run
        elsewhere suspends its table at a refused row, as ``suspend-table`` does)."""
        if self.error_policy.data_errors != "skip-row":
            return None
        with self._skipper_lock:
            if self.__skipper is None:
                self.__skipper = RowSkipper(
                    self._stages()[1], self.error_policy, self.control, self.statistics,
                    self.task_id, self._check_stop,
                )  # fmt: skip
            return self.__skipper

    def _raw_ok(self, plan: TablePlan) -> bool:
        """Whether rows of ``plan`` pass in the bulk wire format: no transform (or mappings
        the source's SELECT computes, :meth:`_projection`) and identical column types; not
        under ``skip-row`` (raw chunks cannot be split by row)."""
        if not (
            self.error_policy.data_errors != "skip-row"
            and isinstance(self.reader, SupportsRawRead)
            and isinstance(self.writer, SupportsRawWrite)
            and self.reader.raw_format == self.writer.raw_format
        ):
            return False
        if not self.transforms:
            same = plan.target_schema.column_names == self._sources[plan.target_id].column_names
            if plan.identical and same:
                return True
        return self._projection(plan) is not None

    def _projection(self, plan: TablePlan) -> Projection | None:
        """The SELECT list computing ``plan``'s mapped rows in the source (computed once),
        or ``None``: other transforms, a column the target stores in another form, or a
        rule the source cannot compute exactly (:mod:`replikit.mapping.pushed`)."""
        if plan.target_id in self._projections:
            return self._projections[plan.target_id]
        self._projections[plan.target_id] = found = self._find_projection(plan)
        return found

    def _find_projection(self, plan: TablePlan) -> Projection | None:
        reader, source = self.reader, self._sources[plan.target_id]
        if not isinstance(reader, SupportsPushedMappings):
            return None
        if self.transforms not in ((), (self.mapper,)):
            return None
        if any(c.target.adapt is not None or c.generated is not None for c in plan.columns):
            return None
        if plan.source_dialect != plan.target_dialect:
            return None
        bound = self.mapper.table(source) if self.mapper is not None else None
        if bound is None:  # names only: the columns as they are, in the plan's order
            names = [c.source.name for c in plan.columns]
            if any(c.target.sql != c.source.type.native for c in plan.columns):
                return None
            return Projection(tuple(Projected(n) for n in names))
        target_sql = {c.source.name: c.target.sql for c in plan.columns}
        found = reader.projection(bound, target_sql)
        if found is None or [c.name for c in found.columns] != list(target_sql):
            return None
        for c in plan.columns:  # columns passed as they are keep their type
            if found.column(c.source.name).sql is None and c.target.sql != c.source.type.native:
                return None
        return found

    def _text_ok(self, plan: TablePlan, unit: Unit) -> bool:
        """True when ``unit`` may go as text the source builds in the writer's bulk format
        (:class:`SupportsTextRead`; a reader offering several names them in ``text_formats``):
        no transform, row filter, pushed SELECT or skip-row, and a plan the writer's
        ``text_writable`` (where it has one) accepts; the reader still decides per plan
        (``copy_text`` returns ``None``)."""
        reader, writer = self.reader, self.writer
        return (
            not self.transforms
            and self._skipper is None
            and unit.where is None
            and unit.select is None
            and isinstance(reader, SupportsTextRead)
            and isinstance(writer, SupportsTextWrite)
            and writer.text_format in getattr(reader, "text_formats", (reader.text_format,))
            and getattr(writer, "text_writable", _any_plan)(plan)
        )

    def _columnar_ok(self, plan: TablePlan, unit: Unit) -> bool:
        """True when ``unit`` may move column by column (as column batches or Arrow record
        batches): no transform, no row filter or column read as text, no column the target
        computes."""
        return (
            not self.transforms
            and self._skipper is None
            and unit.where is None
            and unit.select is None
            and not unit.as_text
            and not plan.computed
        )

    def _columns_ok(self, plan: TablePlan, unit: Unit) -> bool:
        """True when ``unit`` can move as column batches: both stages take every column of
        the table in its column batch form (no Arrow: see :mod:`replikit.endpoints._columns`)."""
        reader, writer = self.reader, self.writer
        return (
            self._columnar_ok(plan, unit)
            and isinstance(reader, SupportsColumnRead)
            and isinstance(writer, SupportsColumnWrite)
            and reader.column_readable(plan.source)
            and writer.column_writable(plan)
        )

    def _arrow_ok(self, plan: TablePlan, unit: Unit) -> bool:
        """True when ``unit`` can move as Arrow record batches: both stages take every column
        of the table."""
        reader, writer = self.reader, self.writer
        return (
            self._columnar_ok(plan, unit)
            and isinstance(reader, SupportsArrowRead)
            and isinstance(writer, SupportsArrowWrite)
            and reader.arrow_readable(plan.source)
            and writer.arrow_writable(plan)
        )

    def _stream_ok(self, plan: TablePlan, unit: Unit) -> bool:
        """True when ``unit`` may go as one Arrow stream from the source's driver to the
        target's engine (:class:`SupportsArrowStreamRead`; the reader still decides per unit,
        and a unit it cannot stream goes as record batches). Checked before the reader's
        ``arrow_readable``, which imports pyarrow."""
        reader, writer = self.reader, self.writer
        return (
            self._columnar_ok(plan, unit)
            and isinstance(reader, SupportsArrowStreamRead)
            and isinstance(writer, SupportsArrowStreamWrite)
            and writer.arrow_writable(plan)
        )

    def _counted(self, name: str, batches: Iterable[Any], counted: list[int]) -> Iterator[Any]:
        """``batches`` (row batches or Arrow record batches), counted as they pass (also in
        ``counted``: what a failed attempt takes off the statistics)."""
        for batch in batches:
            self._check_stop()
            yield batch
            n = batch.num_rows if hasattr(batch, "num_rows") else len(batch)
            self.statistics.rows(name, n)
            counted[0] += n
            failpoint("full-load.batch", wake=self._stop)


def _any_plan(plan: TablePlan) -> bool:
    """A text writer without ``text_writable`` takes every plan its format carries."""
    return True

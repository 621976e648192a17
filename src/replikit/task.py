"""``Task``: a replication task wiring endpoints, mappings and settings into a pipeline.

>>> import replikit as rk
>>> task = rk.Task("sqlite:///:memory:", "sqlite:///:memory:")
>>> task.migration_type
'full-load'
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from replikit import display
from replikit._hints import selects_nothing
from replikit.endpoints.base import (
    CdcSource,
    Endpoint,
    SupportsApply,
    SupportsCdc,
    SupportsCdcTakeover,
    SupportsReloadSnapshot,
    apply_target,
    cdc_source,
    endpoint,
)
from replikit.errors import (
    CapabilityError,
    ConfigError,
    ConversionError,
    Error,
    StoppedError,
    TaskError,
)
from replikit.logs import log_context
from replikit.mapping import Mappings
from replikit.mapping.binding import keyed_for_cdc
from replikit.pipeline.contracts import (
    ChangeReader,
    Checkpoint,
    CheckpointStore,
    Reader,
    SupportsClose,
    SupportsDdl,
    SupportsPrepare,
    SupportsSchemaObjects,
    SupportsSkippedObjects,
    dialect_of,
)
from replikit.pipeline.control import SuspendedTable, control_store
from replikit.pipeline.generated import verify_generated
from replikit.pipeline.lease import Lease, LeaseLostError, drop_lease
from replikit.pipeline.policy import Backoff, recoverable
from replikit.pipeline.progress import Progress
from replikit.pipeline.reload import SnapshotAt, reloading
from replikit.pipeline.runner import Pipeline
from replikit.pipeline.stats import Statistics, TableState
from replikit.pipeline.status import StatusReporter, status_store
from replikit.pipeline.units import HasExecutor, executor_of
from replikit.pipeline.waiting import wait_limit
from replikit.positions import Position
from replikit.schema.assessment import Assessment
from replikit.schema.convert import TablePlan
from replikit.schema.findings import Finding
from replikit.schema.identifiers import object_names
from replikit.schema.model import Catalog, TableId, TableSchema
from replikit.schema.report import ConversionReport, routine_plans
from replikit.settings import TaskSettings, stop_condition
from replikit.transforms import Transform
from replikit.validation.report import ValidationReport

if TYPE_CHECKING:
    from replikit.monitor.server import MonitorServer

log = logging.getLogger(__name__)

__all__ = ["MIGRATION_TYPES", "Plan", "Task", "TaskSettings"]

MIGRATION_TYPES = ("full-load", "cdc", "full-load-and-cdc", "validation-only")
_CDC_TYPES = ("cdc", "full-load-and-cdc")
_ONTO_SOURCE_FIX = (
    "Use another target database, or map the tables to another schema or name "
    "(Mappings.rename_schema / rename_table)."
)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a task would do: the assessment and the target DDL. Nothing has run.

    ``mappings`` lists, per source table, what the mapping rules do to its rows (row filter,
    masks, added, removed and retyped columns); renames show in the assessment.
    """

    assessment: Assessment
    ddl: tuple[str, ...]
    mappings: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def lossy(self) -> list[Any]:
        """Shortcut for ``assessment.lossy``."""
        return self.assessment.lossy

    @property
    def unsupported(self) -> list[Any]:
        """Shortcut for ``assessment.unsupported``."""
        return self.assessment.unsupported

    def to_dict(self) -> dict[str, Any]:
        """JSON shape: the assessment's keys plus ``ddl``."""
        return {
            **self.assessment.to_dict(),
            "ddl": list(self.ddl),
            "mappings": {table: list(lines) for table, lines in self.mappings},
        }

    def __str__(self) -> str:
        text = str(self.assessment)
        if not self.mappings:
            return text
        lines = ["mappings:"]
        for table, notes in self.mappings:
            lines.append(f"  {table}")
            lines.extend(f"    {n}" for n in notes)
        return text + "\n" + "\n".join(lines)

    def __repr__(self) -> str:
        summary = display.assessment_summary(self.assessment)
        return f"<Plan {summary}; {len(self.ddl)} DDL statements>"

    def _repr_html_(self) -> str:
        return display.html_assessment(self.assessment, self.ddl, self.mappings)


def _log_plan(plans: Sequence[TablePlan]) -> None:
    columns = [c for p in plans for c in p.columns]
    lossy = sum(c.fidelity.value == "lossy" for c in columns)
    unsupported = sum(c.fidelity.value == "unsupported" for c in columns)
    log.info(
        "plan: %d table(s), %d column(s): %d lossy, %d unsupported",
        len(plans),
        len(columns),
        lossy,
        unsupported,
    )


def _raise_table_errors(stats: Statistics) -> None:
    """Raise :class:`TaskError` naming every table that ended in error (e.g. during CDC)."""
    failed = stats.by_state(TableState.ERROR) + stats.by_state(TableState.SUSPENDED)
    if failed:
        names = ", ".join(t.table for t in failed)
        raise TaskError(
            f"{len(failed)} of {len(stats)} tables ended in error: {names}. "
            f"First error: {failed[0].error}",
            {t.table: Error(t.error or "table error") for t in failed},
        )


def _as_endpoint(value: Endpoint | str | Any, role: str) -> Endpoint:
    if isinstance(value, Endpoint):
        return value
    if isinstance(value, str) or type(value).__module__.startswith("sqlalchemy."):
        return endpoint(value)
    raise ConfigError(
        f"{role} must be an Endpoint, a URL string or a SQLAlchemy URL or Engine, "
        f"got {type(value).__name__}"
    )


class Task:
    """A replication task: source, target, migration type, mappings and settings.

    ``source`` and ``target`` are endpoints, URL strings, or SQLAlchemy ``URL`` s or
    ``Engine`` s (see :func:`replikit.endpoint`). ``plan()`` reflects and converts without
    moving data; ``run()`` performs the migration and returns the statistics;
    ``statistics()`` reads them at any time (from another thread too).

    ``executor`` runs the full load's units (tables and key ranges): by default a thread pool
    of ``settings.parallel_tables``; a Dask ``distributed.Client`` runs them on its cluster's
    workers, each opening its own connections (docs/scale.md).
    """

    def __init__(
        self,
        source: Endpoint | str | Any,
        target: Endpoint | str | Any,
        *,
        migration_type: str = "full-load",
        mappings: Mappings | None = None,
        transforms: Sequence[Transform] = (),
        settings: TaskSettings | None = None,
        executor: Executor | HasExecutor | None = None,
    ) -> None:
        if migration_type not in MIGRATION_TYPES:
            raise ConfigError(
                f"migration_type must be one of {', '.join(MIGRATION_TYPES)}; "
                f"got {migration_type!r}"
            )
        self.source = _as_endpoint(source, "source")
        self.target = _as_endpoint(target, "target")
        # endpoints made here from URLs are the task's to close; the caller's stay open
        self._owned = [ep for ep, given in ((self.source, source), (self.target, target))
                       if not isinstance(given, Endpoint)]  # fmt: skip
        self.migration_type = migration_type
        self.mappings = mappings or Mappings()
        self.transforms = tuple(transforms)
        self.settings = settings or TaskSettings()
        self.executor = executor_of(executor)
        self._statistics = Statistics()
        self._pipeline: Pipeline | None = None
        self._catalog: Catalog | None = None
        self._stopping = threading.Event()
        self._loading: Pipeline | None = None  # a full load running
        self._stream: Pipeline | None = None  # a change stream running (its load included)
        self._lease: Lease | None = None  # held while replicating with standby=True
        self._phase = "idle"
        self._task_file: Any = None  # the task file this task was read from, if any
        #: the report of the last run of a ``validation-only`` task
        self.last_validation: ValidationReport | None = None
        self._reporter: StatusReporter | None = None  # while a run reports its status
        self._control: Endpoint | None = None  # the control database (control_url)
        self._error: BaseException | None = None  # what ended the last run
        self._reloading = threading.Lock()  # held while a table is loaded again

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> Task:
        """The task a task file (YAML, or TOML for a ``.toml`` name) describes: source and
        target URLs (``${ENV_VAR}`` replaced), migration type, mappings (rules, or a DMS
        table-mapping file) and settings (docs/task-files.md). It is checked before anything
        connects; a :class:`~replikit.ConfigError` gives the file, the line and the key.
        ``overrides`` are ``Task`` keywords that win over the file."""
        from replikit.taskfile import load_task_file

        return load_task_file(path).task(**overrides)

    def to_yaml(self) -> str:
        """This task as a task file (YAML), secrets left as ``${...}`` variables: a task read
        from a file as it was written; another with its passwords as
        ``${REPLIKIT_SOURCE_PASSWORD}`` / ``${REPLIKIT_TARGET_PASSWORD}`` and the mask secret
        as ``${REPLIKIT_MASK_SECRET}``."""
        from replikit.taskfile import task_yaml

        return task_yaml(self)

    def __repr__(self) -> str:
        return (
            f"Task({self.source.url!r} -> {self.target.url!r}, "
            f"migration_type={self.migration_type!r}, phase={self.phase!r})"
        )

    def _repr_html_(self) -> str:
        return display.html_task(self)

    @property
    def phase(self) -> str:
        """``"idle"``, ``"full-load"``, ``"cdc"`` (replicating), ``"validating"`` (a
        ``validation-only`` task), ``"done"`` (a full load or one validation completed),
        ``"standby"`` (waiting for the lease of a task run with ``standby=True``)
        or ``"stopped"`` (ended by a stop, an error, or a stream's stop condition)."""
        stream = self._stream
        return stream.phase if stream is not None else self._phase

    def _check_capabilities(self) -> None:
        if not self.source.capabilities.source:
            raise CapabilityError(f"{self.source.url} cannot be a source")
        if not self.target.capabilities.target:
            raise CapabilityError(f"{self.target.url} cannot be a target")
        if self.migration_type in _CDC_TYPES and not isinstance(self.source, CdcSource):
            raise CapabilityError(
                f"migration_type {self.migration_type!r} needs change data capture, which "
                f"{type(self.source).__name__} does not support in this version; "
                "use migration_type='full-load'"
            )

    @property
    def task_id(self) -> str:
        """The task's name in checkpoints and on the source (see ``TaskSettings.task_id``)."""
        if self.settings.task_id is not None:
            return self.settings.task_id
        digest = hashlib.sha256(f"{self.source.url}|{self.target.url}".encode()).hexdigest()
        return "t" + digest[:12]

    def catalog(self) -> Catalog:
        """The selected source tables (reflected once per task)."""
        if self._catalog is None:
            log.info("source %s: connecting", self.source.url)
            self.source.check()
            selection = self.mappings.selection
            catalog = self.source.reflect(selection)
            ids = [t.id for t in catalog.tables]
            missing = selection.unmatched_includes(ids)
            if missing or not ids:
                what = ", ".join(repr(p) for p in missing) if missing else "the selection"
                raise selects_nothing(self.source, what)
            log.info("source %s: %d table(s) selected", self.source.url, len(ids))
            self._catalog = catalog
        return self._catalog

    def pipeline(self) -> Pipeline:
        """The pipeline this task runs (built once, from the same public pieces)."""
        if self._pipeline is None:
            self._check_capabilities()
            catalog = self.catalog()
            log.info("target %s: connecting", self.target.url)
            self.target.check()
            s = self.settings
            self._pipeline = Pipeline(
                self.source.reader(list(catalog.tables)),
                self.target.writer(),
                transforms=self.transforms,
                mappings=self.mappings,
                mask_secret=s.mask_secret,
                type_overrides=s.type_overrides,
                prep_mode=self._prep_mode(),
                executor=self.executor,
                parallel=self._parallel(),
                split_rows=s.split_rows,
                statistics=self._statistics,
                progress=False,  # run() shows the whole task's progress
                replicate=self.migration_type in _CDC_TYPES,
                views=catalog.views,
                routines=catalog.routines,
                generated_columns=s.generated_columns,
                verify_generated=partial(verify_generated, self.source, self.target),
                task_id=self.task_id,
                error_policy=s.error_policy,
                control=control_store(self.target),
            )
        return self._pipeline

    def _prep_mode(self) -> str:
        # CDC alone never drops or truncates: it keeps existing tables (do-nothing)
        cdc_only = self.migration_type == "cdc"
        return "do-nothing" if cdc_only else self.settings.target_table_prep_mode

    def _parallel(self) -> int:
        # A target that serialises writes (SQLite) gains nothing from more loaders: they
        # only queue batches in memory (measured: 4 loaders were slower and used 2x the RSS).
        if not self.target.capabilities.concurrent_writes:
            return 1
        return self.settings.parallel_tables

    def plan(self) -> Plan:
        """Reflect, convert and assess; return the target DDL and the assessment."""
        pipe = self.pipeline()
        plans = pipe.plans()
        problems = list(self.catalog().problems)
        problems += [f"{p.source.id}: {msg}" for p in plans for msg in p.problems]
        selected = {p.source.id for p in plans}
        problems += pipe.mapping_warnings()
        problems += [
            f"{p.source.id}: foreign key to {fk.ref_table} is not created "
            "(that table is not selected)"
            for p in plans
            for fk in p.source.foreign_keys
            if fk.ref_table not in selected
        ]
        ddl: tuple[str, ...] = ()
        if isinstance(pipe.writer, SupportsDdl):
            ddl = tuple(pipe.writer.ddl(plans))
            # index names the target cannot keep
            problems += object_names(plans, dialect_of(pipe.writer)).renamed
        views = pipe.view_plans()
        if isinstance(pipe.writer, SupportsSchemaObjects):
            ddl += tuple(pipe.writer.object_ddl(plans, [v for v in views if v.converted]))
        target = dialect_of(pipe.writer).name
        from replikit.schema.functions import function_plan  # sqlglot, only for a plan

        convert = partial(function_plan, source=dialect_of(pipe.reader).name, target=target)
        routines = routine_plans(self.catalog().routines, target=target, convert=convert)
        skipped = (
            pipe.writer.skipped_objects(plans)
            if isinstance(pipe.writer, SupportsSkippedObjects)
            else []
        )
        objects = [*skipped, *(o for p in plans for o in p.objects), *views, *routines]
        report = ConversionReport.of(objects)
        findings = (*self._onto_source(plans), *pipe.findings())
        notes = tuple((t, tuple(n)) for t, n in pipe.mapping_notes().items())
        return Plan(Assessment(tuple(plans), tuple(problems), findings, report), ddl, notes)

    def run(self) -> Statistics:
        """Run the task; return the statistics (also on failure, via ``statistics()``).

        ``full-load`` returns when every table is loaded. ``cdc`` and ``full-load-and-cdc``
        replicate until :meth:`stop`, a stop condition of the settings, or an error; run
        again, they resume from the checkpoint stored in the target.

        Raises:
            ConfigError, ConnectError: before anything is written.
            ConversionError: unsupported columns, or lossy ones with ``allow_lossy=False``.
            TaskError: some tables failed (during CDC too); the statistics say which and why.
            StoppedError: :meth:`stop` ended the full load before every table was loaded.
        """
        with log_context(task=self.task_id), wait_limit(self.settings.wait_timeout):
            return self._run()

    def _run(self) -> Statistics:
        try:
            self._statistics.reset()
            pipe = self.pipeline()
            _log_plan(pipe.plans())
            if self.migration_type == "validation-only":
                return self._validate_only()
            self._refuse_copy_onto_source(pipe.plans())
            if not self.settings.allow_lossy:
                lossy = self.plan().lossy
                if lossy:
                    raise ConversionError(
                        "allow_lossy=False and these columns would not arrive exactly: "
                        + "; ".join(str(f) for f in lossy)
                    )
            self._reporter = self._start_reporting()
            with self._progress():
                if self.migration_type == "full-load":
                    return self._full_load(pipe)
                stats = self._run_cdc(pipe)
            _raise_table_errors(stats)
            return stats
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._stop_reporting()
            self._stopping.clear()
            self._close_owned()

    # -- replikit_status / replikit_history ---------------------------------------------------
    def _validate_only(self) -> Statistics:
        """Validate (no data moves), once or every ``validation_interval`` seconds until
        :meth:`stop`; ``last_validation`` holds the latest report. When the target holds a
        CDC checkpoint of this task id (a task replicating beside it), differing rows are
        re-checked once the task has applied past the source's position."""
        from replikit.validation.inflight import AppliedWait

        interval = self.settings.validation_interval
        beside = AppliedWait.of(self, 1.0)  # a CDC task of this id replicates (or did)
        if beside is not None:
            beside.close()
        self._phase = "validating"
        try:
            while True:
                self.last_validation = self.validate(recheck=beside is not None)
                if interval is None or self._stopping.wait(interval):
                    return self._statistics
        finally:
            self._phase = "done" if interval is None else "stopped"

    def _control_endpoint(self) -> Endpoint:
        url = self.settings.control_url
        if url is None:
            return self.target
        if self._control is None:
            self._control = endpoint(url)
            self._owned.append(self._control)
        return self._control

    def _start_reporting(self) -> StatusReporter | None:
        """Create the status tables and write the run's first status (``None``: a full load,
        which leaves no control tables in its target, or a target that holds none)."""
        self._error = None
        if self.migration_type == "full-load":
            return None
        store = status_store(self._control_endpoint())
        if store is None:
            return None
        s = self.settings
        reporter = StatusReporter(
            self.task_id, self._statistics, lambda: self.phase,
            history_interval=s.history_interval,
            history_retention=timedelta(days=s.history_retention_days),
            store=store, inline=s.control_url is None,
        )  # fmt: skip
        store.ensure()
        reporter.publish()
        reporter.tick_while(lambda: self.phase in ("idle", "full-load"))  # until CDC applies
        return reporter

    def _stop_reporting(self) -> None:
        """The run's last status and history row, in a transaction of its own."""
        reporter, self._reporter = self._reporter, None
        if reporter is None:
            return
        reporter.close()
        exc = self._error
        failed = exc is not None and not isinstance(exc, StoppedError | KeyboardInterrupt)
        error = str(exc) if failed else None
        reporter.publish(state="failed" if failed else "stopped", error=error, final=True)

    def _progress(self) -> Progress:
        s = self.settings
        return Progress(self._statistics, enabled=s.progress, interval=s.progress_interval)

    def _full_load(self, pipe: Pipeline) -> Statistics:
        self._phase = "full-load"
        try:
            stats = self._load(pipe)
            self._phase = "done"
            return stats
        finally:
            if self._phase != "done":
                self._phase = "stopped"

    def _load(self, pipe: Pipeline) -> Statistics:
        """Run a full-load pipeline that :meth:`stop` can reach."""
        self._loading = pipe
        try:
            if self._stopping.is_set():
                pipe.stop()
            return pipe.run()
        finally:
            self._loading = None

    def _close_owned(self) -> None:
        for ep in self._owned:
            ep.close()

    def _refuse_copy_onto_source(self, plans: Sequence[TablePlan]) -> None:
        """ConfigError when a planned target table is one of the source tables."""
        clash = self._onto_source(plans)
        if clash:
            raise ConfigError(
                f"source and target are the same database ({self.target.url}): the target "
                f"table(s) {', '.join(f.table for f in clash)} ARE the source tables, and "
                f"preparing them would empty them. {_ONTO_SOURCE_FIX}"
            )

    def _onto_source(self, plans: Sequence[TablePlan]) -> list[Finding]:
        """A finding per planned target table that is one of the source tables.

        Source and target are compared by identity (same file, same server and database),
        not by URL, so ``localhost`` vs ``127.0.0.1`` or a symlinked path are caught; the
        tables are compared by schema and name, so copying between two schemas of one
        database stays allowed.
        """
        same = self.source is self.target or (
            (ident := self.source.identity()) is not None and ident == self.target.identity()
        )
        if not same:
            return []
        home = self.target.home_schema()

        def key(tid: Any, default: str | None) -> tuple[str, str]:
            return (str(tid.schema or default or "").casefold(), str(tid.name).casefold())

        sources = {key(p.source.id, None) for p in plans}
        return [
            Finding.about(
                str(p.source.id),
                f"the target table {p.target_id} IS this source table (source and target "
                "are the same database): preparing it would empty it",
                kind="target",
                fix=_ONTO_SOURCE_FIX,
            )
            for p in plans
            if key(p.target_id, home) in sources
        ]

    def stop(self) -> None:
        """Stop a running task gracefully (thread-safe; also before ``run`` started).

        During CDC: finish the batch, commit its checkpoint; ``run`` returns the statistics.
        During a full load: every unit stops after its current batch; ``run`` raises
        :class:`~replikit.StoppedError` and the tables not loaded are ``Table cancelled``.
        Running the task again resumes (CDC) or reloads (full load, ``drop-and-create``).
        """
        self._stopping.set()
        for running in (self._loading, self._stream):
            if running is not None:
                running.stop()

    def drop(self) -> None:
        """Remove what this task created: the source's CDC objects (slot, publication,
        triggers) and the task's control rows in the target (checkpoint, suspended tables,
        apply exceptions, lease). The target's tables stay."""
        try:
            if isinstance(self.source, SupportsCdc):
                self.source.cdc_teardown(task=self.task_id)
            failures = control_store(self.target)
            if failures is not None:
                failures.drop(self.task_id)
            status = status_store(self._control_endpoint())
            if status is not None:
                status.drop(self.task_id)
            drop_lease(self.target, self.task_id)
            if isinstance(self.target, SupportsApply):
                store = self.target.checkpoint_store()
                try:
                    store.drop_control(self.task_id)
                finally:
                    if isinstance(store, SupportsClose):
                        store.close()
        finally:
            self._close_owned()

    # -- CDC: a stream pipeline, after a full-load pipeline on its first run ----------------
    def _run_cdc(self, pipe: Pipeline) -> Statistics:
        """Run the stream (under the task's lease with ``standby``: stand by until this
        process holds it, and again after losing it)."""
        if not self.settings.standby:
            return self._run_retrying(pipe)
        lease = Lease(self.target, self.task_id, duration=self.settings.lease_seconds)
        self._lease = lease
        try:
            while True:  # hold the lease and replicate; lose it and stand by again
                self._phase = "standby"
                if not lease.wait(self._stopping):
                    return self._statistics  # stopped while standing by
                if lease.takeovers and isinstance(self.source, SupportsCdcTakeover):
                    self.source.cdc_takeover(task=self.task_id)
                renewal = _Renewal(lease, self._lease_lost)
                try:
                    stats = self._run_retrying(pipe)
                    if not renewal.lost:
                        return stats
                except LeaseLostError as exc:
                    log.warning("%s", exc)
                finally:
                    renewal.stop()
                log.warning("task %s: %s steps down and stands by", self.task_id, lease.member)
        finally:
            self._lease = None
            with contextlib.suppress(Error):  # a clean stop hands over without waiting
                lease.release()

    def _lease_lost(self) -> None:
        """The renewal found the lease taken over: end the stream (its commit is fenced)."""
        stream = self._stream
        if stream is not None:
            stream.stop()

    def _fence(self, *parts: object) -> None:
        """Fence the writers of a run under a lease (:class:`~replikit.pipeline.lease.Lease`)."""
        if self._lease is None:
            return
        for part in parts:
            if hasattr(part, "fence"):
                part.fence = self._lease
            elif part is not None:
                raise ConfigError(
                    f"{type(part).__name__} cannot check a lease before it commits: run this "
                    "task without standby"
                )

    def _run_retrying(self, pipe: Pipeline) -> Statistics:
        """Run the stream; a recoverable error (lost connection, restart, deadlock) runs it
        again from its checkpoint after a backoff, for up to ``retry_timeout`` seconds from
        the first failure since the last progress."""
        backoff = Backoff(self.settings.error_policy, wait=self._stopping.wait)
        while True:
            applied = self._statistics.cdc.batches
            try:
                return self._run_cdc_once(pipe)
            except Exception as exc:
                if self._statistics.cdc.batches > applied:
                    backoff.reset()  # it made progress: a new failure gets the whole window
                if not self._retry(exc, backoff):
                    self._statistics.last_error = str(exc)
                    raise

    def _retry(self, exc: BaseException, backoff: Backoff) -> bool:
        """Whether to run again after ``exc`` (having waited); tables that failed for a
        recoverable cause are made ready to load again."""
        if self._stopping.is_set() or not recoverable(exc):
            return False
        delay = backoff.next_delay()
        if delay is None:
            log.error(
                "giving up after retrying for %.0f s (retry_timeout): %s", backoff.elapsed, exc
            )
            return False
        self._statistics.retried(exc)
        log.warning(
            "task %s: %s; retrying in %.1f s (retry %d, %.0f s of %.0f s retry_timeout)",
            self.task_id,
            exc,
            delay,
            self._statistics.retries,
            backoff.elapsed,
            backoff.policy.retry_timeout,
        )
        for t in self._statistics:
            if t.state in (TableState.ERROR, TableState.CANCELLED):
                self._statistics.reset_table(t.table)
        return not backoff.wait(delay)

    def _run_cdc_once(self, pipe: Pipeline) -> Statistics:
        plans = pipe.plans()
        pipe.refuse(plans)
        tables = list(self.catalog().tables)
        tid = self.task_id
        source = cdc_source(self.source)
        target = apply_target(self.target)
        store = target.checkpoint_store()
        stream: Pipeline | None = None
        try:
            checkpoint = store.read_checkpoint(tid)
            # a table keyed only by a define_primary_key rule: changes name rows by it
            keyed = [keyed_for_cdc(self.mappings, t) for t in tables]
            source.cdc_setup(keyed, task=tid)
            spill = self.settings.transaction_memory_bytes
            reader = source.cdc_reader(keyed, task=tid, spill_bytes=spill)
            stream = self._stream = self._stream_pipeline(reader, target, store)
            self._fence(store, stream.writer)
            if self._stopping.is_set():
                stream.stop()
            loading = checkpoint is None or checkpoint.phase == "full-load"
            if self.migration_type == "full-load-and-cdc" and loading:
                self._load_then_stream(stream, checkpoint, tables)
            else:
                start = None if checkpoint is not None else self._cdc_start(plans, tables)
                stream.run(start=start)
        finally:
            self._phase = "stopped"
            self._stream = None
            for part in (stream.writer if stream else None, store):
                if isinstance(part, SupportsClose):
                    part.close()
        return self._statistics

    def _stream_pipeline(
        self, reader: ChangeReader, target: SupportsApply, store: CheckpointStore
    ) -> Pipeline:
        s = self.settings
        return Pipeline(
            reader,
            target.change_writer(),
            transforms=self.transforms,
            mappings=self.mappings,
            mask_secret=self.settings.mask_secret,
            type_overrides=s.type_overrides,
            generated_columns=s.generated_columns,
            source_sql=dialect_of(self.pipeline().reader).name,
            checkpoints=store,
            task_id=self.task_id,
            tables=list(self.catalog().tables),
            batch_apply=s.batch_apply,
            batch_changes=s.batch_changes,
            queue_bytes=s.queue_memory_bytes,
            stop_when=stop_condition(s),
            statistics=self._statistics,
            progress=False,  # run() shows the whole task's progress
            replicate=True,
            reporter=self._reporter,
            error_policy=s.error_policy,
            control=control_store(self.target),
            schema_policy=s.schema_change_policy,
            reloader=self._load_table,
            stream_gc=s.stream_gc,
        )

    def _load_then_stream(
        self, stream: Pipeline, checkpoint: Checkpoint | None, tables: list[TableSchema]
    ) -> None:
        """The first run: a full load from a snapshot consistent with the stream's start; a
        run after one that stopped during its full load: the tables not loaded yet."""
        tid = self.task_id
        if checkpoint is None:
            with contextlib.ExitStack() as snapshot:
                reader, start = snapshot.enter_context(
                    cdc_source(self.source).cdc_snapshot(tables, task=tid)
                )
                # the snapshot ends with the load: held on, its transaction would keep the
                # source's tables locked against DDL (MySQL metadata locks) while CDC runs
                load = self._load_pipeline(reader, resumed=False)
                stream.run(load=load, start=start, after_load=snapshot.close)
            return
        todo = [t for t in tables if str(t.id) not in checkpoint.loaded]
        log.info(
            "resuming the full load of task %s: %d of %d tables to (re)load",
            tid,
            len(todo),
            len(tables),
        )
        with contextlib.ExitStack() as snapshot:
            reader, snapshots = self._reload_snapshot(todo, snapshot)
            load = self._load_pipeline(reader, resumed=True)

            def finish_all() -> None:  # indexes and keys of every table, loaded now or before
                snapshot.close()
                if isinstance(load.writer, SupportsPrepare):
                    load.writer.finish(self.pipeline().plans())

            stream.run(load=load, after_load=finish_all, snapshots=snapshots)

    def _reload_snapshot(
        self, todo: list[TableSchema], stack: contextlib.ExitStack
    ) -> tuple[Reader, dict[TableId, Position]]:
        """A reader of the tables a resumed full load loads again, and their snapshot's
        position per table: the stream replays from the first snapshot, and skips those
        tables' changes the new one holds (each table's as :meth:`Position.for_table` gives
        it). A source without an exact snapshot (or a MongoDB server without snapshot reads)
        gives a plain reader: its replayed changes are applied again (idempotently)."""
        source = self.source
        if not todo or not isinstance(source, SupportsReloadSnapshot):
            return source.reader(todo), {}
        reader, at = stack.enter_context(source.cdc_reload_snapshot(todo, task=self.task_id))
        if at is None:
            return reader, {}
        return reader, {t.id: at.for_table(t.id) for t in todo}

    def _load_pipeline(self, reader: Reader, *, resumed: bool) -> Pipeline:
        s = self.settings
        prep = s.target_table_prep_mode
        if resumed and prep == "do-nothing":
            prep = "truncate"  # a table loaded halfway must be emptied before loading again
        writer = self.target.writer()
        self._fence(writer)
        return Pipeline(
            reader,
            writer,
            transforms=self.transforms,
            mappings=self.mappings,
            mask_secret=self.settings.mask_secret,
            type_overrides=s.type_overrides,
            generated_columns=s.generated_columns,
            prep_mode=prep,
            executor=self.executor,
            parallel=self._parallel(),
            split_rows=s.split_rows,
            statistics=self._statistics,
            progress=False,  # run() shows the whole task's progress
            finish=not resumed,
            replicate=True,
            views=self.catalog().views,
            routines=self.catalog().routines,
        )

    def _cdc_start(self, plans: list[TablePlan], tables: list[TableSchema]) -> Position:
        """Where a CDC-only task starts the first time (its target tables made ready)."""
        text = self.settings.cdc_start_position
        slot_start = cdc_source(self.source).cdc_start(tables, task=self.task_id)
        start = slot_start if text in (None, "now") else Position.parse(text)
        self._ensure_target_tables(plans)
        return start

    def _ensure_target_tables(self, plans: list[TablePlan]) -> None:
        """CDC-only: create missing target tables, check existing ones (never drop data);
        then the converted CHECKs and views, as after a full load."""
        pipe = self.pipeline()
        full_writer = pipe.writer
        if not isinstance(full_writer, SupportsPrepare):
            return
        # do-nothing keeps (and checks) existing tables and creates missing ones; finish adds
        # keys, indexes and CHECKs to the created ones only
        full_writer.prepare(plans, "do-nothing")
        full_writer.finish(plans)
        pipe.create_objects(plans)

    def validate(
        self,
        *,
        sample: float | None = None,
        recheck: bool | None = None,
        recheck_delay: float | None = None,
        recheck_timeout: float = 120.0,
    ) -> ValidationReport:
        """Compare the source with the target through this task's plan (renames, transforms,
        conversions); return the :class:`~replikit.ValidationReport` (``report.fix()``
        repairs the differences). ``sample``: compare about that fraction of the keys.

        Beside a live CDC task (``recheck``; the default while this task replicates), a
        differing row is only a candidate: it is read again at the source, the source's
        current position is taken, and once the task's applied position (its checkpoint in
        the target, so the task may run in another process under the same ``task_id``) is at
        or past it -- at most ``recheck_timeout`` seconds -- the target row is read again.
        Only rows that still differ are failures; rows still changing at the source are
        ``pending``. ``recheck_delay``: wait that many seconds instead of by position.

        The counters land in :meth:`statistics` (``validation_state``, ``validation_failed``,
        ``validation_pending``); the differences in the target's
        ``replikit_validation_failures`` table. ``migration_type="validation-only"`` makes
        :meth:`run` do this and nothing else (the report: ``task.last_validation``).
        """
        from replikit.validate import Validator

        if recheck is None:
            recheck = self.phase == "cdc" or recheck_delay is not None
        return Validator(
            self,
            sample=sample,
            recheck=recheck,
            recheck_delay=recheck_delay,
            recheck_timeout=recheck_timeout,
        ).run()

    # -- reloading one table ------------------------------------------------------------------
    def reload(self, table: str, *, timeout: float | None = None) -> None:
        """Load ``table`` (a source table name, e.g. ``public.orders``) again and make it
        replicate again, e.g. after a policy suspended it.

        While this task replicates (``run`` in another thread), the reload runs beside the
        stream: the table's changes are held from now on, the table is loaded, the held
        changes applied, and CDC goes on for the other tables meanwhile (the same handoff as
        the first load). This call waits until the table replicates again (at most
        ``timeout`` seconds). When the task is not running, the table is loaded here and
        its suspension lifted; the next run applies its changes from the task's checkpoint
        on, but for those the load holds where the source reads the table at an exact
        position (PostgreSQL, MySQL/MariaDB, SQLite: the position joins the checkpoint),
        so a change-file target gets each change once.

        Raises:
            TableNotFoundError: ``table`` is not one of the task's source tables.
            TaskError: the table could not be loaded (it stays suspended).
        """
        tid = self._source_table(table)
        stream = self._stream
        replicator = stream.replicator if stream is not None else None
        if replicator is not None:
            replicator.reloads.request(tid).wait(timeout)
            state = self._statistics[str(tid)]
            if state.state is TableState.SUSPENDED:
                raise TaskError(f"reloading {tid} failed: {state.error}", {str(tid): Error(
                    state.error or "reload failed")})  # fmt: skip
            return
        try:
            # as in run(): the task's log fields, and its wait_timeout for the snapshot
            with log_context(task=self.task_id), wait_limit(self.settings.wait_timeout):
                self._reload_stopped(tid)
        finally:
            self._close_owned()

    def _reload_stopped(self, table: TableId) -> None:
        """Reload ``table`` of this stopped task. It is recorded ``reloading`` first, so a
        crash during the load leaves it to the next run to reload again (not to replicate
        over a half-finished load); a failed load leaves it suspended, naming the error."""
        name = str(table)
        control = control_store(self.target)
        if control is not None:
            control.suspend(reloading(self.task_id, name))
        try:
            at: list[Position | None] = []
            self._load_table(table, at.append)
            self._skip_in_next_run(table, at[0])
        except Exception as exc:
            if control is not None:
                control.suspend(SuspendedTable(task=self.task_id, table=name, reason=(
                    f"table {name} suspended: its reload failed: {exc}. Fix the cause and "
                    f"reload it again: replikit reload SRC DST --table {name}")))  # fmt: skip
            raise
        if control is not None:
            control.resume(self.task_id, name)

    def _skip_in_next_run(self, table: TableId, at: Position | None) -> None:
        """The stopped task's next run leaves out ``table``'s changes at or before ``at``
        (a reload holds them): the position joins its checkpoint's snapshots."""
        if at is None or not isinstance(self.target, SupportsApply):
            return
        store = self.target.checkpoint_store()
        try:
            checkpoint = store.read_checkpoint(self.task_id)
            if checkpoint is None or checkpoint.resume is None or at <= checkpoint.resume:
                return  # no stream yet, or it is past the snapshot already
            snapshots = {**checkpoint.snapshots, str(table): at}
            store.write_checkpoint(replace(checkpoint, snapshots=snapshots))
        finally:
            if isinstance(store, SupportsClose):
                store.close()

    def _source_table(self, table: str) -> TableId:
        from replikit.errors import TableNotFoundError

        tables = [t.id for t in self.catalog().tables]
        found = [t for t in tables if str(t) == table] or [t for t in tables if t.name == table]
        if len(found) != 1:
            raise TableNotFoundError(
                f"no table {table!r} among the task's source tables "
                f"({', '.join(str(t) for t in tables[:10])}{', ...' if len(tables) > 10 else ''})",
                table=table,
            )
        return found[0]

    def _load_table(self, table: TableId, at: SnapshotAt | None = None) -> TablePlan:
        """Load ``table`` into the target as it is now (its target table replaced or
        emptied, per ``target_table_prep_mode``); return its plan. Raises what failed.

        The table is read from a snapshot at an exact source position where the source has
        one (as a resumed full load is, see :meth:`_reload_snapshot`); ``at`` is told that
        position (``None``: a plain read) before the load begins."""
        s = self.settings
        prep = "truncate" if s.target_table_prep_mode == "do-nothing" else s.target_table_prep_mode
        self._statistics.reset_table(str(table))
        schema = self._reflect_table(table)  # as it is now: a reload follows schema changes
        # one at a time: a PostgreSQL reload snapshot is the task's one temporary slot
        with self._reloading, contextlib.ExitStack() as snapshot:
            reader, positions = self._reload_snapshot([schema], snapshot)
            if at is not None:
                at(positions.get(table))
            pipe = Pipeline(
                reader,
                self.target.writer(),
                transforms=self.transforms,
                mappings=self.mappings,
                type_overrides=s.type_overrides,
                prep_mode=prep,
                executor=self.executor,
                parallel=self._parallel(),
                split_rows=s.split_rows,
                statistics=self._statistics,
                progress=False,
                replicate=True,
            )
            log.info("table %s: loading it again (%s)", table, prep)
            pipe.run()
        (plan,) = pipe.plans()
        return plan

    def _reflect_table(self, table: TableId) -> TableSchema:
        """``table``'s schema as the source has it now."""
        from replikit.errors import TableNotFoundError

        found = [t for t in self.source.reflect().tables if t.id == table]
        if not found:
            raise TableNotFoundError(
                f"table {table} is no longer in {self.source.url}; exclude it from the task",
                table=str(table),
            )
        return found[0]

    def statistics(self) -> Statistics:
        """Per-table statistics (live while the task runs)."""
        return self._statistics

    def serve_metrics(self, port: int = 0, *, host: str = "127.0.0.1") -> MonitorServer:
        """Serve Prometheus metrics at ``/metrics`` and the status page at ``/`` on ``port``
        (0: a free one), in a background thread, until the returned server is closed.

        Works before, during and after :meth:`run` (from another thread); docs/operations.md
        lists the metrics. Needs the ``metrics`` extra (``prometheus-client``).

        Raises:
            MissingDependencyError: ``prometheus-client`` is not installed.
            ConfigError: the port cannot be opened.
        """
        from replikit.monitor.page import read_problems
        from replikit.monitor.server import MonitorServer

        return MonitorServer(
            self, port, host=host, problems=lambda: read_problems(self.target, self.task_id)
        )

    def ddl(self) -> list[str]:
        """The target DDL statements the task would run."""
        return list(self.plan().ddl)


class _Renewal:
    """Renews a lease every third of its duration in a thread; on loss, calls ``lost``."""

    def __init__(self, lease: Lease, lost: Callable[[], None]) -> None:
        self._lease = lease
        self._on_lost = lost
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replikit-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._lease.duration / 3):
            try:
                held = self._lease.renew()
            except Error as exc:  # the target is away: the fence still guards every commit
                log.warning("task %s: cannot renew the lease: %s", self._lease.task, exc)
                continue
            if not held:
                self.lost = True
                self._on_lost()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

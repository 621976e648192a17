"""The change-stream mode of a :class:`~replikit.pipeline.runner.Pipeline`.

A pipeline whose reader is a :class:`~replikit.pipeline.contracts.ChangeReader` runs here:

1. the task's checkpoint is read from the :class:`~replikit.pipeline.contracts.CheckpointStore`
   (a first run starts at ``start``, or at the reader's own stored position);
2. if a full load is still due (``load``, checkpoint phase ``full-load``), the load runs while
   the change stream fills the cache (changes of tables being loaded are held), then the cached
   changes are applied, each table's in one target transaction with a checkpoint: the table
   joins the checkpoint's snapshots at the last cached transaction, and the last table's
   commit leaves the full-load phase at that position (so no cached change is applied twice,
   whatever the crash); a load resumed after a
   stop reads the tables not loaded yet from a snapshot of its own (``snapshots``: its
   position per table), later than the stream's start, so the stream skips those tables'
   changes at or before it (:attr:`~replikit.pipeline.contracts.Checkpoint.snapshots`);
3. the stream is applied batch by batch, each batch committed in one target transaction with
   its checkpoint, and the source acknowledged after that commit
   (:class:`~replikit.pipeline.cdc.Replicator`).

A crash anywhere resumes from the checkpoint: replayed changes converge because apply is
idempotent, and a full load cut short loads the tables it had not finished again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from replikit.changes import SchemaChange
from replikit.errors import ConfigError
from replikit.pipeline.cache import ChangeCache
from replikit.pipeline.cdc import Replicator
from replikit.pipeline.conflict_policy import refuse_unreported
from replikit.pipeline.contracts import ChangeReader, ChangeWriter, Checkpoint, CheckpointStore
from replikit.pipeline.schema_changes import with_change
from replikit.pipeline.stats import Statistics
from replikit.positions import Position
from replikit.schema.convert import TablePlan
from replikit.schema.model import TableId, TableSchema

if TYPE_CHECKING:
    from replikit.pipeline.runner import Pipeline

__all__ = ["run_stream"]


def run_stream(
    pipe: Pipeline,
    *,
    load: Pipeline | None,
    start: Position | None,
    after_load: Callable[[], object] | None,
    snapshots: Mapping[TableId, Position] | None = None,
) -> Statistics:
    """Run ``pipe`` (whose reader is a change reader) as the module docstring says."""
    reader, writer, store = _stages(pipe)
    plans = pipe.plans()
    pipe.refuse(plans)
    checkpoint = store.read_checkpoint(pipe.task_id)
    if checkpoint is None:
        checkpoint = Checkpoint(
            pipe.task_id, start=start, phase="full-load" if load is not None else "cdc"
        )
        store.write_checkpoint(checkpoint)
    if snapshots:  # before the stream opens: it skips what they hold from its first change
        merged = {**checkpoint.snapshots, **{str(t): pos for t, pos in snapshots.items()}}
        checkpoint = replace(checkpoint, snapshots=merged)
        store.write_checkpoint(checkpoint)
    replicator = Replicator(
        reader,
        writer,
        plans,
        task=pipe.task_id,
        transforms=pipe.transforms,
        batch_apply=pipe.batch_apply,
        batch_changes=pipe.batch_changes,
        queue_bytes=pipe.queue_bytes,
        statistics=pipe.statistics,
        replan=_replanner(pipe),
        policy=pipe.error_policy,
        control=pipe.control,
        schema_policy=pipe.schema_policy,
        reloader=pipe.reloader,
        stream_gc=pipe.stream_gc,
    )
    pipe.replicator = replicator
    replicator.reporter = pipe.reporter
    _suspended_tables(pipe, replicator, checkpoint)
    try:
        if pipe.stopping:
            replicator.stop()
        if checkpoint.phase == "full-load":
            if load is None:
                raise ConfigError(
                    f"task {pipe.task_id!r} stopped during its full load: pass load= (a "
                    "full-load pipeline of the tables not loaded yet) to finish it"
                )
            pipe.phase = "full-load"
            checkpoint = _load_and_cache(pipe, replicator, store, checkpoint, load, after_load)
        pipe.phase = "cdc"
        replicator.run(checkpoint, pipe.stop_when)
    finally:
        pipe.phase = "stopped"
        pipe.replicator = None
        replicator.close()
    return pipe.statistics


def _suspended_tables(pipe: Pipeline, replicator: Replicator, checkpoint: Checkpoint) -> None:
    """Tables suspended by an earlier run stay suspended; a first run (a full load of every
    table ahead) starts with none."""
    control = pipe.control
    if control is None:
        return
    if checkpoint.phase == "cdc" or checkpoint.loaded:
        replicator.restore_suspended()
        return
    for row in control.suspended(pipe.task_id):
        control.resume(pipe.task_id, row.table)


def _stages(pipe: Pipeline) -> tuple[ChangeReader, ChangeWriter, CheckpointStore]:
    reader, writer, store = pipe.reader, pipe.writer, pipe.checkpoints
    if not isinstance(reader, ChangeReader):  # pragma: no cover - Pipeline.run dispatches
        raise ConfigError("a change stream needs a ChangeReader")
    if not isinstance(writer, ChangeWriter):
        raise ConfigError(
            f"a change stream applies changes: its writer must be a ChangeWriter "
            f"(endpoint.change_writer()), not {type(writer).__name__}"
        )
    refuse_unreported(pipe.error_policy, writer)
    if store is None and isinstance(writer, CheckpointStore):
        store = writer
    if store is None:
        raise ConfigError(
            "a change stream keeps its position in a checkpoint store: pass "
            "checkpoints=endpoint.checkpoint_store()"
        )
    return reader, writer, store


def _load_and_cache(
    pipe: Pipeline,
    replicator: Replicator,
    store: CheckpointStore,
    checkpoint: Checkpoint,
    load: Pipeline,
    after_load: Callable[[], object] | None,
) -> Checkpoint:
    """Run ``load`` while the stream fills the cache; then apply what was cached."""
    tables = [t.id for t in pipe.tables]
    loaded = set(checkpoint.loaded)

    def table_loaded(plan: TablePlan) -> None:
        loaded.add(str(plan.source.id))
        store.write_checkpoint(replace(checkpoint, loaded=frozenset(loaded)))

    def table_suspended(plan: TablePlan, error: BaseException) -> None:
        replicator.suspend(plan.source.id, _load_reason(plan, error, pipe), checkpoint.start)

    load.on_table_loaded = table_loaded
    load.error_policy, load.control, load.task_id = pipe.error_policy, pipe.control, pipe.task_id
    if pipe.error_policy.data_errors != "stop-task":
        load.on_table_suspended = table_suspended
    load.statistics = pipe.statistics  # the load is part of the stream's run
    pipe.loading = load
    cache = pipe.cache if pipe.cache is not None else ChangeCache()
    try:
        replicator.open(checkpoint)
        for table in cache.held():
            # held by a run that stopped during its load: the stream replays every change
            # since the snapshot again, and a new snapshot makes the old ones stale
            for _ in cache.release(table):
                pass
        for table in tables:
            cache.hold(table)
        feeder = replicator.start_caching(cache)
        try:
            if pipe.stopping:
                load.stop()
            load.run()
            if after_load is not None:
                after_load()
        except BaseException:
            with contextlib.suppress(BaseException):  # the load's error comes first
                feeder.finish()
            raise
        # A feeder that failed may have taken a transaction off the queue without caching
        # it: raise before the checkpoint leaves the full-load phase (a rerun replays).
        feeder.finish()
        # Each table's cached changes commit with a checkpoint (the last table's leaves the
        # full load at the last cached position): a crash in between applies none twice.
        during = replace(checkpoint, loaded=frozenset(loaded))
        checkpoint, committed = replicator.apply_cache(cache, tables, during)
        if not committed:
            store.write_checkpoint(checkpoint)
    finally:
        pipe.loading = None
        if pipe.cache is None:
            cache.close()
    return checkpoint


def _load_reason(plan: TablePlan, error: BaseException, pipe: Pipeline) -> str:
    name = plan.source.id
    return (
        f"table {name} suspended (its full load failed; data_errors="
        f"{pipe.error_policy.data_errors}): {error}. CDC goes on for the other tables; fix the "
        f"cause and reload it: replikit reload SRC DST --table {name} (or Task.reload)"
    )


def _replanner(pipe: Pipeline) -> Callable[[TablePlan, SchemaChange], TablePlan]:
    """Plans for source tables whose columns changed (added, renamed, retyped, dropped), as
    :mod:`replikit.pipeline.schema_changes` follows them."""
    originals: dict[TableId, TableSchema] = {t.id: t for t in pipe.tables}

    def replan(plan: TablePlan, change: SchemaChange) -> TablePlan:
        originals[change.table] = with_change(originals[change.table], change)
        return pipe.plan_for(originals[change.table])

    return replan

"""One unit of full-load work, as a picklable callable: reader -> transforms -> writer.

The runner submits a :class:`UnitLoader` per unit to its executor; a process pool (or Dask)
pickles it to the worker, which reads and writes there.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

from replikit.changes import Change, Op
from replikit.errors import ConfigError, DataError
from replikit.pipeline.contracts import (
    Batch,
    Reader,
    SupportsArrowRead,
    SupportsArrowStreamRead,
    SupportsArrowStreamWrite,
    SupportsArrowWrite,
    SupportsColumnRead,
    SupportsColumnWrite,
    SupportsRawRead,
    SupportsRawWrite,
    SupportsTextRead,
    SupportsTextWrite,
    SupportsUnitLedger,
    SupportsValueNotes,
    Unit,
    ValueNotes,
    Writer,
)
from replikit.schema.convert import TablePlan
from replikit.transforms import SupportsMapRows, Transform

__all__ = ["HasExecutor", "UnitLoader", "executor_of", "in_process", "may_rerun"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@runtime_checkable
class HasExecutor(Protocol):
    """Something that hands out an executor: a Dask ``distributed.Client``."""

    def get_executor(self, **kwargs: Any) -> Executor:
        """An executor whose work runs on the client's cluster."""
        ...


def executor_of(given: Executor | HasExecutor | None) -> Executor | None:
    """The executor to run full-load units on: ``None`` (the default thread pool), an
    :class:`~concurrent.futures.Executor`, or a Dask ``distributed.Client``, whose workers
    then run the units (its ``get_executor(pure=False)``: every unit runs, none is taken from
    a cache; a unit on a worker that dies is run again on another by the scheduler)."""
    if given is None or isinstance(given, Executor):
        return given
    if isinstance(given, HasExecutor):
        executor = given.get_executor(pure=False)
        if isinstance(executor, Executor):
            return executor
    raise ConfigError(
        f"executor must be a concurrent.futures.Executor or a Dask distributed.Client, "
        f"not {type(given).__name__}"
    )


def may_rerun(executor: Executor) -> bool:
    """True when ``executor`` may run a submitted unit twice: a cluster (Dask) reruns work
    that a dead worker had finished. Threads and a process pool never do (a dead pool process
    breaks the pool)."""
    if isinstance(executor, ThreadPoolExecutor):
        return False
    # a process pool exists only where its module was imported: not importing it here keeps
    # multiprocessing (5 MB resident) out of every other run
    pools = sys.modules.get("concurrent.futures.process")
    return pools is None or not isinstance(executor, pools.ProcessPoolExecutor)


def in_process(executor: Executor) -> bool:
    """True when ``executor`` runs work in this process (threads share the pipeline)."""
    return isinstance(executor, ThreadPoolExecutor)


def _close(it: object, *, quiet: bool) -> None:
    """Close generator ``it`` (its reader's cursor and connection with it); ``quiet``: an
    error of the closing is logged, not raised (another error is on its way already)."""
    close = getattr(it, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as exc:
        if not quiet:
            raise
        log.debug("closing a reader after a failed unit: %s", exc)


@contextlib.contextmanager
def _closed(it: _T) -> Iterator[_T]:
    """``it``, closed when the block ends: a unit that fails (a writer error, a retry) lets go
    of its reader's connection at once, not whenever the garbage collector finds it."""
    try:
        yield it
    except BaseException:
        _close(it, quiet=True)
        raise
    _close(it, quiet=False)


@dataclass(frozen=True, slots=True)
class UnitLoader:
    """Loads one unit: reader -> transforms -> writer; returns the rows written.

    Picklable when its stages are, so a process pool (or Dask) can run it: the stages are
    pickled to the worker, which reads and writes there.
    """

    reader: Reader
    writer: Writer
    transforms: tuple[Transform, ...]
    #: the load's id in the writer's ledger of units (:class:`SupportsUnitLedger`): set when
    #: units run elsewhere, where a unit may run twice; ``None`` in this process
    ledger: str | None = None

    def __call__(
        self,
        plan: TablePlan,
        unit: Unit,
        raw: bool,
        arrow: bool = False,
        text: bool = False,
        *,
        columns: bool = False,
        stream: bool = False,
    ) -> int:
        once = None if self.ledger is None else f"{self.ledger}/{plan.target_id}/{unit.index}"
        extra: dict[str, Any] = {} if once is None else {"once": once}
        if raw:
            assert isinstance(self.reader, SupportsRawRead)
            assert isinstance(self.writer, SupportsRawWrite)
            try:
                with _closed(self.reader.read_raw(unit)) as chunks:
                    # the table's only unit: the writer may empty it first
                    return self.writer.load_raw(plan, chunks, whole=unit.count == 1, **extra)
            except DataError:
                if unit.select is None:
                    raise
                # the source's SELECT could not compute a value (or the target refused it):
                # the unit (rolled back) goes through Python, which decides each row
        if stream:  # the source's driver straight into the target's engine: before text
            done = self.load_stream(plan, unit, **extra)
            if done is not None:
                return done
        if text:
            done = self.load_text(plan, unit, **extra)
            if done is not None:
                return done
        if columns:
            assert isinstance(self.reader, SupportsColumnRead)
            assert isinstance(self.writer, SupportsColumnWrite)
            with _closed(self.reader.read_columns(unit)) as column_batches:
                return self.writer.load_columns(plan, column_batches, **extra)
        if arrow:
            assert isinstance(self.reader, SupportsArrowRead)
            assert isinstance(self.writer, SupportsArrowWrite)
            with _closed(self.reader.read_arrow(unit)) as records:
                return self.writer.load_arrow(plan, records, **extra)
        with _closed(self.batches(plan, unit)) as batches:
            return self.writer.load(plan, batches, **extra)

    def noted(
        self, plan: TablePlan, unit: Unit, *paths: bool, **more: bool
    ) -> tuple[int, ValueNotes]:
        """The unit loaded as by calling the loader (``paths`` and ``more``: the call's
        ``raw``, ``arrow``... flags), in another process: the rows written, and what the
        reader there read of the unit's values otherwise than the source stores them
        (:class:`SupportsValueNotes`), which the task's own reader never sees."""
        rows = self(plan, unit, *paths, **more)
        reader = self.reader
        return rows, reader.value_notes(unit) if isinstance(reader, SupportsValueNotes) else {}

    def load_text(
        self,
        plan: TablePlan,
        unit: Unit,
        check: Callable[[Iterable[bytes]], Iterable[bytes]] = lambda chunks: chunks,
        **extra: Any,
    ) -> int | None:
        """Load the unit as text the source built (:class:`SupportsTextRead`; the caller
        checked the stages take it); ``None`` when the reader says a column needs typed
        values, or the load failed with a :class:`DataError` (the writer rolled it back): the
        caller loads it through typed rows, whose error names the row."""
        assert isinstance(self.reader, SupportsTextRead)
        assert isinstance(self.writer, SupportsTextWrite)
        text = self.reader.copy_text(plan, unit)
        if text is None:
            return None
        try:
            data = check(data for _, data in text.chunks)
            whole = unit.count == 1  # the table's only unit: the writer may empty it first
            return int(self.writer.load_text(plan, text.columns, data, whole=whole, **extra))
        except DataError as exc:
            log.info("%s unit %s: redone through typed rows (%s)", plan.target_id, unit, exc)
            return None
        finally:
            _close(text.chunks, quiet=False)

    def load_stream(self, plan: TablePlan, unit: Unit, **extra: Any) -> int | None:
        """Load the unit from the reader's Arrow stream (:class:`SupportsArrowStreamRead`;
        the caller checked the stages take it); ``None`` when the reader cannot stream it, or
        the load failed with a :class:`DataError` (the writer rolled it back): the caller
        loads it as record batches, whose error names the row."""
        assert isinstance(self.reader, SupportsArrowStreamRead)
        assert isinstance(self.writer, SupportsArrowStreamWrite)
        stream = self.reader.arrow_stream(unit)
        if stream is None:
            return None
        try:
            return int(self.writer.load_arrow_stream(plan, stream, **extra))
        except DataError as exc:
            log.info("%s unit %s: redone as Arrow record batches (%s)", plan.target_id, unit, exc)
            return None

    def check_executor(self, executor: Executor | None, plans: Sequence[TablePlan]) -> None:
        """Raise :class:`ConfigError` when ``executor`` runs work elsewhere and a stage
        cannot be pickled there, or may run a unit twice and the writer cannot load it once."""
        if executor is None or in_process(executor):
            return
        stages = [
            ("reader", self.reader),
            ("writer", self.writer),
            ("transforms", self.transforms),
            ("table plans", tuple(plans)),
        ]
        for what, stage in stages:
            try:
                pickle.dumps(stage)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                raise ConfigError(
                    f"{type(executor).__name__} runs each unit in another process, so the "
                    f"{what} must pickle, and {type(stage).__name__} does not: {exc}. Use the "
                    "default thread pool (executor=None) or a ThreadPoolExecutor for this task"
                ) from None
        if may_rerun(executor) and not isinstance(self.writer, SupportsUnitLedger):
            raise ConfigError(
                f"{type(executor).__name__} may run a unit twice (a worker that dies after "
                f"finishing one takes its result along), and {type(self.writer).__name__} keeps "
                "no ledger of loaded units to load it once: use the default thread pool "
                "(executor=None) for this target; PostgreSQL and MySQL/MariaDB targets take "
                "a cluster"
            )

    def batches(self, plan: TablePlan, unit: Unit) -> Iterator[Batch]:
        """The unit's batches, transformed (rows a transform drops are left out), without
        the columns the target computes (generated there: never written)."""
        batches = self.transformed(plan, unit)
        computed = plan.computed
        if not computed:
            yield from batches
            return
        for batch in batches:
            keep = [i for i, c in enumerate(batch.columns) if c not in computed]
            yield replace(
                batch,
                columns=tuple(batch.columns[i] for i in keep),
                rows=[tuple(row[i] for i in keep) for row in batch.rows],
            )

    def transformed(self, plan: TablePlan, unit: Unit) -> Iterator[Batch]:
        """The unit's batches, transformed, every column kept (generated ones too: a
        comparison with the target reads them)."""
        batches = self.reader.read(unit)
        if not self.transforms:
            yield from batches
            return
        out_cols = plan.source.column_names
        if isinstance(self.transforms[0], SupportsMapRows):  # mappings: a batch at once
            yield from self._mapped(self.transforms[0], out_cols, batches)
            return
        for batch in batches:
            rows = []
            for row in batch.rows:
                after = self._transform(
                    Change(Op.INSERT, batch.table, after=dict(zip(batch.columns, row, strict=True)))
                )
                if after is not None:
                    rows.append(tuple(after.get(c) for c in out_cols))
            yield replace(batch, columns=out_cols, rows=rows)

    def _mapped(
        self, first: SupportsMapRows, out_cols: tuple[str, ...], batches: Iterable[Batch]
    ) -> Iterator[Batch]:
        rest = self.transforms[1:]
        for batch in batches:
            rows = []
            for mapped in first.map_rows(batch.table, batch.columns, batch.rows):
                after: Mapping[str, Any] | None = mapped
                if rest:
                    after = self._transform(Change(Op.INSERT, batch.table, after=mapped), rest)
                if after is not None:
                    rows.append(tuple(after.get(c) for c in out_cols))
            yield replace(batch, columns=out_cols, rows=rows)

    def _transform(
        self, change: Change, transforms: tuple[Transform, ...] | None = None
    ) -> Mapping[str, Any] | None:
        current: Change | None = change
        for t in self.transforms if transforms is None else transforms:
            if current is None:
                return None
            current = t(current)
        return current.after if current is not None else None

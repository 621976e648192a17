"""Validation: prove the target equals the source, row by row, and repair it.

:func:`validate` (and :meth:`Task.validate <replikit.Task.validate>`) compares every selected
table through the task's plan: target table and column names after renames, source rows after
the task's transforms, lossy columns through the writer's declared conversion, values in a
canonical form (:mod:`replikit.validation.canonical`). It returns a
:class:`~replikit.validation.report.ValidationReport`: per table the rows compared, the rows
missing on each side and the rows that differ (with the columns), the state (``validated``,
``mismatched``, ``not comparable`` with the reason, ``error``) and the time taken.

How a table is compared:

* **Segment checksums** where both sides are PostgreSQL or MySQL/MariaDB and every column
  has a canonical text form both servers produce (:mod:`replikit.validation.checksum`):
  each side sums an md5 of every row per key segment, inside the database; only segments
  whose checksums differ are bisected, and only small dirty segments are read.
* Otherwise (SQLite, DuckDB, transforms, lossy columns, ...) **both sides are streamed** and
  compared by key in bounded memory (:mod:`replikit.validation.rows`); tables without a key
  compare as multisets (a count per distinct row).

Differences go to the ``replikit_validation_failures`` table in the target
(:mod:`replikit.validation.failures`); :meth:`ValidationReport.fix` re-copies exactly the
differing rows (:mod:`replikit.validation.repair`).

:func:`compare` is the earlier interface (a count and verdict per table) kept for its callers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from replikit import display
from replikit.endpoints.base import Endpoint
from replikit.errors import ConfigError, Error
from replikit.pipeline.contracts import KeyRange, SupportsClose, Unit, Writer
from replikit.pipeline.units import UnitLoader
from replikit.schema.convert import ColumnPlan, Fidelity, TablePlan
from replikit.schema.model import TableId, TableSchema
from replikit.validation import checksum
from replikit.validation.canonical import Canon, canonicalizer, comparable_kinds
from replikit.validation.inflight import AppliedWait, CaughtUpTimeout
from replikit.validation.reading import (
    RANGED,
    Counted,
    canon_row,
    prefetched,
    range_units,
    rows_of,
    sampler,
    within,
)
from replikit.validation.report import (
    FailureType,
    FixResult,
    RowDifference,
    TableValidation,
    ValidationReport,
    ValidationState,
)
from replikit.validation.rows import Entry, compare_keyed, compare_multiset

if TYPE_CHECKING:
    from replikit.task import Task

__all__ = [
    "Comparison",
    "TableComparison",
    "ValidationReport",
    "compare",
    "validate",
]

log = logging.getLogger("replikit.validate")

_KINDS = {
    "missing_in_target": FailureType.MISSING_TARGET,
    "missing_in_source": FailureType.MISSING_SOURCE,
    "different": FailureType.RECORD_DIFF,
}


@dataclass(frozen=True, slots=True)
class _Column:
    """One compared column: its names on each side and how values are compared."""

    source: str
    target: str
    canon: Canon
    adapt: Callable[[Any], Any] | None  # the writer's conversion of a lossy column


@dataclass(frozen=True, slots=True)
class _Setup:
    """Everything needed to compare one table (checked against both catalogs)."""

    plan: TablePlan
    source_table: TableSchema
    target_table: TableSchema
    columns: tuple[_Column, ...]
    key: tuple[int, ...]  # indexes into columns; () for a keyless table
    not_compared: tuple[str, ...] = ()

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(self.columns[i].source for i in self.key)


@dataclass
class Validator:
    """Validates the tables of one task (what :meth:`Task.validate` runs).

    ``sample`` (0 < sample <= 1) compares that fraction of the keys (chosen by a hash of the
    key, the same on both sides). ``memory_rows`` bounds the rows held in memory per table;
    ``max_rows`` the differences kept per kind and table (counts stay exact).

    ``recheck`` (beside a live CDC task): a differing row is only a candidate. Its source
    row is read again, then the source's current position (``current_position()``), then
    the validator waits until the task's applied checkpoint in the target is at or past that
    position (at most ``recheck_timeout`` seconds), then reads the target row: a row that
    still differs is a failure, unless its source values changed meanwhile (read once more):
    then it is re-checked again, up to ``rechecks`` times, and counted as *pending* (in
    flight, not failed: DMS's ValidationPendingRecords) if it never settles. Where the
    source cannot tell its position (MongoDB) or the target holds no CDC checkpoint of the
    task, or with ``recheck_delay`` (seconds, which implies ``recheck``), the wait is that
    fixed delay instead (5 s by default).
    """

    task: Task
    sample: float | None = None
    recheck: bool = False
    recheck_delay: float | None = None
    recheck_timeout: float = 120.0
    rechecks: int = 3
    memory_rows: int = 100_000
    max_rows: int = 1000
    record: bool = True
    checksums: bool = True
    _setups: dict[str, _Setup] = field(default_factory=dict, repr=False)
    _ranges: int = field(default=1, repr=False)  # key ranges of one table checksummed at once

    def __post_init__(self) -> None:
        if self.sample is not None and not 0 < self.sample <= 1:
            raise ConfigError(f"sample must be a fraction in (0, 1], got {self.sample!r}")
        if self.recheck_timeout <= 0 or (self.recheck_delay or 0) < 0:
            raise ConfigError("recheck_timeout must be > 0 and recheck_delay >= 0 seconds")
        if self.recheck_delay is not None:
            self.recheck = True

    # -- the whole run --------------------------------------------------------------------
    def run(self, only: Sequence[str] | None = None) -> ValidationReport:
        """Validate every planned table (or the target tables named in ``only``)."""
        pipe = self.task.pipeline()
        plans = pipe.plans()
        if only is not None:
            plans = [p for p in plans if str(p.target_id) in only]
        catalog = {t.id: t for t in self.task.target.reflect().tables}
        sources = {t.id: t for t in self.task.catalog().tables}
        results: list[TableValidation] = []
        workers = max(1, min(self.task.settings.parallel_tables, len(plans)))
        # what the tables leave of parallel_tables goes to key ranges within each table
        self._ranges = max(1, self.task.settings.parallel_tables // workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="replikit-validate") as pool:
            results = list(pool.map(lambda p: self._table(p, sources, catalog), plans))
        if self.recheck:
            self._recheck_all(results)
        report = ValidationReport(results, fixer=self._fix)
        self._record(report)
        return report

    def _recheck_all(self, results: list[TableValidation]) -> None:
        todo = [
            (setup, t)
            for t in results
            if (setup := self._setups.get(t.target)) is not None
            and setup.key
            and t.failures
            and not t.truncated
        ]
        if not todo:
            return
        wait = None
        if self.recheck_delay is None:
            wait = AppliedWait.of(self.task, self.recheck_timeout)
        try:
            for setup, t in todo:
                self._recheck(setup, t, wait)
        finally:
            if wait is not None:
                wait.close()

    def _recheck(self, setup: _Setup, result: TableValidation, wait: AppliedWait | None) -> None:
        """Read the differing rows again until they settle (see the class): the source's
        rows, then (``wait``) the source's position and the task applying up to it, or (no
        ``wait``) the delay, then the target's rows; a row that still differs is a failure
        unless its source values changed meanwhile (read a third time), then it is pending."""
        canon_key = [setup.columns[i].canon for i in setup.key]

        def key_of(d: RowDifference) -> tuple[Any, ...]:
            return tuple(f(v) for f, v in zip(canon_key, d.key.values(), strict=True))

        keys = {key_of(d) for d in result.rows}
        result.rechecked = result.failures
        settled: list[RowDifference] = []
        source = self._read_keys(setup, "source", keys)
        rounds = max(1, self.rechecks)
        for round_ in range(1, rounds + 1):
            if wait is not None:
                try:
                    mark = wait.mark()
                    applied = wait.wait(mark)
                except CaughtUpTimeout as exc:
                    result.reason = f"{len(keys)} differing row(s) not re-checked: {exc}"
                    break
                log.info("%s: task applied %s, past the source's %s: re-checking %d rows",
                         result.source, applied, mark, len(keys))  # fmt: skip
            else:
                time.sleep(_RECHECK_DELAY if self.recheck_delay is None else self.recheck_delay)
            target = self._read_keys(setup, "target", keys)
            fresh = TableValidation(result.source, result.target, max_rows=len(keys) + 1)
            compare_keyed(iter(source.values()), iter(target.values()), _sink(setup, fresh))
            differing = {key_of(d): d for d in fresh.rows}
            again = self._read_keys(setup, "source", set(differing))
            moved = {k for k in differing if canon_row(again.get(k)) != canon_row(source.get(k))}
            log.info("%s: %d of %d re-checked rows still differ, %d changed at the source",
                     result.source, len(differing), len(keys), len(moved))  # fmt: skip
            if wait is None and round_ < rounds:  # a delay proves nothing: look again
                moved = set(differing)
            else:
                settled += (d for k, d in differing.items() if k not in moved)
            keys, source = moved, {k: e for k, e in again.items() if k in moved}
            if not keys:
                break
        for kind in ("missing_in_target", "missing_in_source", "different"):
            setattr(result, kind, [])
            setattr(result, kind + "_count", 0)
        for d in settled:
            result.add(d)
        result.pending = len(keys)
        result.settle()

    def _read_keys(self, setup: _Setup, side: str, keys: set[Any]) -> dict[Any, Entry]:
        """One side's rows with canonical key in ``keys`` (read by key range when the key is
        one integer column, else filtered from a full read), by canonical key."""
        if not keys:
            return {}
        bounds = None
        ranged = all(ep.family in RANGED for ep in (self.task.source, self.task.target))
        if ranged and len(setup.key) == 1 and all(isinstance(k[0], int) for k in keys):
            column = setup.columns[setup.key[0]].source
            bounds = [KeyRange((column,), (k[0],), (k[0] + 1,)) for k in sorted(keys)]
        return {e[0]: e for e in self._entries(setup, side, bounds) if e[0] in keys}

    def _record(self, report: ValidationReport) -> None:
        from replikit.validation.failures import record_failures

        stats = self.task.statistics()
        for t in report:
            stats.validated(t.source, t.target, t.state.value, t.failures, t.pending)
        if not self.record:
            return
        try:
            record_failures(self.task.target, self.task.task_id, report)
        except Error as exc:  # the report stands; the table is a convenience
            log.warning("validation failures could not be written to the target: %s", exc)

    def _table(
        self, plan: TablePlan, sources: dict[TableId, TableSchema], catalog: dict[Any, TableSchema]
    ) -> TableValidation:
        result = TableValidation(str(plan.source.id), str(plan.target_id), max_rows=self.max_rows)
        t0 = time.perf_counter()
        try:
            setup = self._setup(plan, sources, catalog, result)
            if setup is not None:
                self._setups[result.target] = setup
                self._compare(setup, result)
                result.settle()
        except Error as exc:
            result.state, result.reason = ValidationState.ERROR, str(exc)
        except Exception as exc:  # one table's failure is that table's failure
            log.exception("validating %s failed", plan.source.id)
            result.state = ValidationState.ERROR
            result.reason = f"unexpected {type(exc).__name__}: {exc}"
        result.seconds = time.perf_counter() - t0
        log.info("validated %s: %s", result.source, display.table_validation_line(result))
        return result

    # -- checks before any row is read ------------------------------------------------------
    def _setup(
        self,
        plan: TablePlan,
        sources: dict[TableId, TableSchema],
        catalog: dict[Any, TableSchema],
        result: TableValidation,
    ) -> _Setup | None:
        def refuse(reason: str) -> None:
            result.state, result.reason = ValidationState.NOT_COMPARABLE, reason

        target = _find(catalog, plan.target_id)
        if target is None:
            refuse(
                f"table {plan.target_id} does not exist in the target {self.task.target.url}; "
                "copy it first (replikit copy) or leave it out (--exclude)"
            )
            return None
        source = sources.get(plan.source.id, plan.source)
        columns, skipped, problem = _columns(plan, target)
        if problem:
            refuse(problem)
            return None
        result.not_compared = skipped
        names = [c.source for c in columns]
        key_names = plan.source.key
        missing_key = [k for k in key_names if k not in names]
        if missing_key:
            refuse(f"key column(s) {', '.join(missing_key)} are not compared (unsupported type)")
            return None
        problem = _key_problem(plan, target, key_names)
        if problem:
            refuse(problem)
            return None
        key = tuple(names.index(k) for k in key_names)
        return _Setup(plan, source, target, tuple(columns), key, skipped)

    # -- comparing ----------------------------------------------------------------------------
    def _compare(self, setup: _Setup, result: TableValidation) -> None:
        sink = _sink(setup, result)
        plan = setup.plan
        if self.checksums and self.sample is None and not self.task.pipeline().transforms:
            outcome = checksum.compare(
                self.task.source,
                self.task.target,
                setup,
                executor=self.task.executor,
                parallel=self._ranges,
            )
            if outcome is not None:
                result.method = "checksum"
                result.rows_compared = outcome.equal_rows
                if outcome.dirty:
                    whole = any(b is None for b in outcome.dirty)
                    ranges = None if whole else [b for b in outcome.dirty if b is not None]
                    n = self._rows(setup, sink, ranges)
                    result.rows_compared += n
                    result.rows_read += n
                return
        result.method = "rows"
        result.rows_compared = result.rows_read = self._rows(setup, sink, None)
        log.debug("%s compared row by row", plan.source.id)

    def _rows(self, setup: _Setup, sink: Any, bounds: list[KeyRange] | None) -> int:
        """Stream both sides (of the key ranges ``bounds``; ``None``: every row) and compare."""
        src = self._entries(setup, "source", bounds)
        tgt = self._entries(setup, "target", bounds)
        expected = setup.source_table.estimated_rows or 0
        if setup.key:
            return compare_keyed(
                src, tgt, sink, memory_rows=self.memory_rows, expected_rows=expected
            )
        counted = Counted(src)
        compare_multiset(counted, tgt, sink, memory_rows=self.memory_rows, expected_rows=expected)
        return counted.n

    def _entries(self, setup: _Setup, side: str, bounds: list[KeyRange] | None) -> Iterator[Entry]:
        """``(canonical key, canonical row, raw row)`` for each row of one side."""
        plan = setup.plan
        if side == "source":
            endpoint, table = self.task.source, setup.source_table
            names = [c.source for c in setup.columns]
            adapters = [c.adapt for c in setup.columns]
            transforms = self.task.pipeline().transforms  # the mappings' rows stage first
        else:
            endpoint, table = self.task.target, setup.target_table
            names = [c.target for c in setup.columns]
            adapters = [None] * len(setup.columns)
            transforms = ()
        canons = [c.canon for c in setup.columns]
        key = setup.key
        keep = sampler(self.sample)
        reader = endpoint.reader([table])
        try:
            loader = UnitLoader(reader, cast(Writer, None), tuple(transforms))
            units: list[tuple[Unit, list[KeyRange]]] = [(Unit(table.id), [])]
            if bounds is not None:
                units = range_units(table.id, bounds, names[key[0]] if key else "", endpoint)
            if side == "source":
                as_text = frozenset(c.source.name for c in plan.columns if c.target.as_text)
                units = [(replace(u, as_text=as_text), r) for u, r in units]

            def batches(item: tuple[Unit, list[KeyRange]]) -> Iterable[Any]:
                unit = item[0]
                return loader.transformed(plan, unit) if side == "source" else reader.read(unit)

            for (_unit, ranges), chunk in zip(units, prefetched(units, batches), strict=True):
                rows = rows_of(chunk, names, canons, adapters, key, keep)
                # a reader may read more than the ranges (one that never splits its tables)
                yield from rows if not ranges else within(rows, ranges)
        finally:
            if isinstance(reader, SupportsClose):
                reader.close()

    # -- repair -------------------------------------------------------------------------------
    def _fix(self, report: ValidationReport) -> FixResult:
        from replikit.validation.repair import repair

        return repair(self, report)


_RECHECK_DELAY = 5.0  # seconds, where the task's applied position cannot be compared
def _sink(setup: _Setup, result: TableValidation) -> Any:
    names = [c.source for c in setup.columns]
    key = setup.key

    def sink(kind: str, _k: Any, src: Any, tgt: Any, cols: tuple[int, ...], count: int) -> None:
        raw = src if src is not None else tgt
        key_dict = {names[i]: raw[i] for i in key} if key else dict(zip(names, raw, strict=True))
        result.add(
            RowDifference(
                _KINDS[kind],
                key_dict,
                tuple(names[i] for i in cols),
                dict(zip(names, src, strict=True)) if src is not None else None,
                dict(zip(names, tgt, strict=True)) if tgt is not None else None,
                count,
            )
        )

    return sink


def _find(catalog: dict[Any, TableSchema], tid: TableId) -> TableSchema | None:
    found = catalog.get(tid)
    if found is not None:
        return found
    folded = [
        t
        for i, t in catalog.items()
        if str(i.name).casefold() == tid.name.casefold()
        and (tid.schema is None or str(i.schema or "").casefold() == tid.schema.casefold())
    ]
    return folded[0] if len(folded) == 1 else None


def _columns(
    plan: TablePlan, target: TableSchema
) -> tuple[list[_Column], tuple[str, ...], str | None]:
    """The compared columns, the columns left out (unsupported), or why the table's columns
    do not match the plan."""
    by_name = {c.name: c for c in target.columns}
    folded = {c.name.casefold(): c for c in target.columns}
    columns, skipped, missing = [], [], []
    used = set()
    for cp in plan.columns:
        col = by_name.get(cp.name) or folded.get(cp.name.casefold())
        if col is None:
            missing.append(_named(cp))
            continue
        used.add(col.name)
        if cp.fidelity is Fidelity.UNSUPPORTED:
            skipped.append(cp.source.name)
            continue
        lossy = cp.fidelity is Fidelity.LOSSY
        canon = canonicalizer(cp.source.type, col.type, lossy=cp.target.type if lossy else None)
        columns.append(_Column(cp.source.name, col.name, canon, cp.target.adapt if lossy else None))
    if missing:
        return (
            [],
            (),
            (
                f"column(s) {', '.join(missing)} of the plan are missing in the target table "
                f"{target.id}; copy the table again or fix the mapping"
            ),
        )
    extra = [c.name for c in target.columns if c.name not in used]
    if extra:
        return (
            [],
            (),
            (
                f"the target table {target.id} has column(s) {', '.join(extra)} that the plan does "
                "not produce from any source column; rows cannot be proven equal (map the columns "
                "the same way as the copy did, or drop the extra columns)"
            ),
        )
    return columns, tuple(skipped), None


def _named(cp: ColumnPlan) -> str:
    return cp.name if cp.name == cp.source.name else f"{cp.name} (source {cp.source.name})"


def _key_problem(plan: TablePlan, target: TableSchema, key: tuple[str, ...]) -> str | None:
    if not key:
        return None
    renamed = {c.source.name: c.name for c in plan.columns}
    folded = {c.name.casefold(): c for c in target.columns}
    for name in key:
        source_type = plan.source.column(name).type
        col = folded.get(renamed.get(name, name).casefold())
        if col is None:
            return f"key column {name} is missing in the target table {target.id}"
        if not comparable_kinds(source_type.kind, col.type.kind):
            return (
                f"key column {name} is {source_type.kind} in the source ({source_type.native}) "
                f"but {col.type.kind} in the target ({col.type.native}); keys of different "
                "types cannot be matched"
            )
    return None


# -- the public functions -----------------------------------------------------------------------
def validate(
    source: Endpoint | str,
    target: Endpoint | str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    mappings: Any = None,
    transforms: Sequence[Any] = (),
    sample: float | None = None,
    fix: bool = False,
    recheck: bool = False,
    recheck_timeout: float = 120.0,
    **settings: Any,
) -> ValidationReport:
    """Validate that ``target`` holds the same rows as ``source``, table by table.

    For databases moved by anything: the tables selected by ``include`` / ``exclude``
    (patterns as for :func:`replikit.copy`), or by ``mappings`` (renames followed), are
    compared as a copy with the same mappings and ``transforms`` would have written them.
    ``sample`` compares a fraction of the keys (``0.1``: about 10%). ``fix=True`` repairs the
    differences found (:meth:`ValidationReport.fix`). ``recheck=True`` beside a live CDC
    task (name it with ``task_id=`` unless its id is derived from the same URLs): differing
    rows are read again once the task has applied the source's changes up to the position the
    source was at (at most ``recheck_timeout`` seconds; see :meth:`Task.validate
    <replikit.Task.validate>`). Other keywords are
    :class:`~replikit.TaskSettings` fields (``parallel_tables``, ``type_overrides``...).

    >>> import replikit as rk
    >>> report = rk.validate("sqlite:///a.db", "sqlite:///b.db")  # doctest: +SKIP
    >>> report.ok  # doctest: +SKIP
    True
    """
    from dataclasses import fields

    from replikit.endpoints.base import refuse_unknown
    from replikit.mapping import Mappings, Selection
    from replikit.settings import TaskSettings
    from replikit.task import Task

    refuse_unknown(settings, (f.name for f in fields(TaskSettings)), "TaskSettings field")
    if mappings is None:
        mappings = Mappings(selection=Selection(tuple(include), tuple(exclude)))
    elif include or exclude:
        raise ConfigError("pass include/exclude patterns or mappings, not both")
    task = Task(
        source, target, mappings=mappings, transforms=transforms, settings=TaskSettings(**settings)
    )
    report = task.validate(sample=sample, recheck=recheck, recheck_timeout=recheck_timeout)
    if fix:
        report.fix()
    return report


# -- the earlier interface: a count and a verdict per table -----------------------------------
@dataclass(frozen=True, slots=True)
class TableComparison:
    """Counts and verdict of one table on both sides (see :func:`compare`)."""

    source: str
    target: str
    source_rows: int
    target_rows: int
    equal: bool
    skipped_columns: tuple[str, ...] = ()

    def __str__(self) -> str:
        verdict = "identical" if self.equal else "DIFFERENT"
        skipped = (
            f" (not compared: {', '.join(self.skipped_columns)})" if self.skipped_columns else ""
        )
        counts = f"{self.source_rows} / {self.target_rows} rows"
        return f"{self.source} -> {self.target}: {counts}, {verdict}{skipped}"


class Comparison(list[TableComparison]):
    """What :func:`compare` returns: a list of :class:`TableComparison`, one per table, that
    prints a summary line and shows a table in notebooks."""

    @property
    def equal(self) -> bool:
        """True when every table is identical on both sides."""
        return all(c.equal for c in self)

    def __repr__(self) -> str:
        return f"<Comparison {display.comparison_summary(self)}>"

    def __str__(self) -> str:
        return "\n".join([*(str(c) for c in self), display.comparison_summary(self)])

    def _repr_html_(self) -> str:
        return display.html_comparison(self)


def compare(source: Endpoint, target: Endpoint, plans: Iterable[TablePlan]) -> Comparison:
    """Compare each planned table between ``source`` and ``target``: the verdict of a full
    validation (:func:`validate`) per table, as counts (kept for earlier callers)."""
    from replikit.mapping import Mappings, Selection
    from replikit.task import Task

    plans = list(plans)
    if not plans:
        return Comparison()
    mappings = Mappings(selection=Selection(tuple(_pattern(p.source.id) for p in plans)))
    task = Task(source, target, mappings=mappings)
    report = Validator(task, record=False).run()
    out = Comparison()
    for t in report:
        missing = t.missing_in_target_count
        extra = t.missing_in_source_count
        out.append(
            TableComparison(
                t.source,
                t.target,
                t.rows_compared - extra,
                t.rows_compared - missing,
                t.state is ValidationState.VALIDATED,
                t.not_compared,
            )
        )
    return out


def _pattern(tid: TableId) -> str:
    return str(tid) if tid.schema is not None else tid.name

"""``Task``: a replication task wiring endpoints, mappings and settings into a pipeline.

>>> import replikit as rk
>>> task = rk.Task("sqlite:///:memory:", "sqlite:///:memory:")
>>> task.migration_type
'full-load'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from replikit.endpoints.base import Endpoint, endpoint
from replikit.errors import CapabilityError, ConfigError, ConversionError
from replikit.mapping import Mappings
from replikit.pipeline.runner import PREP_MODES, Pipeline
from replikit.pipeline.stats import Statistics
from replikit.schema.assessment import Assessment
from replikit.schema.model import Catalog
from replikit.transforms import Transform

__all__ = ["MIGRATION_TYPES", "Plan", "Task", "TaskSettings"]

MIGRATION_TYPES = ("full-load", "cdc", "full-load-and-cdc")
PrepMode = Literal["drop-and-create", "truncate", "do-nothing"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskSettings:
    """Task settings (DMS names where they exist). Unknown keywords raise ``TypeError``.

    Attributes:
        target_table_prep_mode: ``drop-and-create`` (default), ``truncate`` or ``do-nothing``.
        parallel_tables: how many units load at once (DMS ``MaxFullLoadSubTasks``).
        split_rows: tables with more (estimated) rows are split into key ranges of about this
            size; ``None`` never splits.
        allow_lossy: run even when the assessment lists lossy columns (they are always listed
            first); ``False`` makes ``run`` refuse.
        type_overrides: ``{"schema.table.column": "native target type"}``.
        progress: show a progress line (``None``: when stderr is a terminal).
    """

    target_table_prep_mode: PrepMode = "drop-and-create"
    parallel_tables: int = 4
    split_rows: int | None = 250_000
    allow_lossy: bool = True
    type_overrides: Mapping[str, str] = field(default_factory=dict)
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.target_table_prep_mode not in PREP_MODES:
            raise ConfigError(
                f"target_table_prep_mode must be one of {', '.join(PREP_MODES)}; "
                f"got {self.target_table_prep_mode!r}"
            )
        if self.parallel_tables < 1:
            raise ConfigError(f"parallel_tables must be >= 1; got {self.parallel_tables}")
        if self.split_rows is not None and self.split_rows < 1000:
            raise ConfigError(f"split_rows must be >= 1000 or None; got {self.split_rows}")

    @classmethod
    def from_env(cls, prefix: str = "REPLIKIT_") -> TaskSettings:
        """Settings from ``REPLIKIT_<FIELD>`` environment variables (only when asked)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(prefix + f.name.upper())
            if raw is None or f.name == "type_overrides":
                continue
            if f.name in ("parallel_tables", "split_rows"):
                values[f.name] = None if raw.lower() == "none" else int(raw)
            elif f.name in ("allow_lossy", "progress"):
                values[f.name] = raw.lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = raw
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a task would do: the assessment and the target DDL. Nothing has run."""

    assessment: Assessment
    ddl: tuple[str, ...]

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
        return {**self.assessment.to_dict(), "ddl": list(self.ddl)}

    def __str__(self) -> str:
        return str(self.assessment)

    def _repr_html_(self) -> str:
        return self.assessment._repr_html_()


def _as_endpoint(value: Endpoint | str, role: str) -> Endpoint:
    if isinstance(value, Endpoint):
        return value
    if isinstance(value, str):
        return endpoint(value)
    raise ConfigError(f"{role} must be an Endpoint or a URL string, got {type(value).__name__}")


class Task:
    """A replication task: source, target, migration type, mappings and settings.

    ``plan()`` reflects and converts without moving data; ``run()`` performs the migration and
    returns the statistics; ``statistics()`` reads them at any time (from another thread too).
    """

    def __init__(
        self,
        source: Endpoint | str,
        target: Endpoint | str,
        *,
        migration_type: str = "full-load",
        mappings: Mappings | None = None,
        transforms: Sequence[Transform] = (),
        settings: TaskSettings | None = None,
        executor: Executor | None = None,
    ) -> None:
        if migration_type not in MIGRATION_TYPES:
            raise ConfigError(
                f"migration_type must be one of {', '.join(MIGRATION_TYPES)}; "
                f"got {migration_type!r}"
            )
        self.source = _as_endpoint(source, "source")
        self.target = _as_endpoint(target, "target")
        self.migration_type = migration_type
        self.mappings = mappings or Mappings()
        self.transforms = tuple(transforms)
        self.settings = settings or TaskSettings()
        self.executor = executor
        self._statistics = Statistics()
        self._pipeline: Pipeline | None = None
        self._catalog: Catalog | None = None

    def __repr__(self) -> str:
        return (
            f"Task({self.source.url!r} -> {self.target.url!r}, "
            f"migration_type={self.migration_type!r})"
        )

    def _check_capabilities(self) -> None:
        if not self.source.capabilities.source:
            raise CapabilityError(f"{self.source.url} cannot be a source")
        if not self.target.capabilities.target:
            raise CapabilityError(f"{self.target.url} cannot be a target")
        if self.migration_type != "full-load":
            raise CapabilityError(
                f"migration_type {self.migration_type!r} needs change data capture, which "
                f"{type(self.source).__name__} does not support in this version; "
                "use migration_type='full-load'"
            )

    def catalog(self) -> Catalog:
        """The selected source tables (reflected once per task)."""
        if self._catalog is None:
            self.source.check()
            selection = self.mappings.selection
            catalog = self.source.reflect(selection)
            ids = [t.id for t in catalog.tables]
            missing = selection.unmatched_includes(ids)
            if missing or not ids:
                what = ", ".join(repr(p) for p in missing) if missing else "the selection"
                raise ConfigError(
                    f"{what} selects no table in {self.source.url}. Check the pattern "
                    "(schema.table, % as wildcard, e.g. public.% or %.orders)."
                )
            self._catalog = catalog
        return self._catalog

    def pipeline(self) -> Pipeline:
        """The pipeline this task runs (built once, from the same public pieces)."""
        if self._pipeline is None:
            self._check_capabilities()
            catalog = self.catalog()
            self.target.check()
            s = self.settings
            self._pipeline = Pipeline(
                self.source.reader(list(catalog.tables)),
                self.target.writer(),
                transforms=self.transforms,
                mappings=self.mappings,
                type_overrides=s.type_overrides,
                prep_mode=s.target_table_prep_mode,
                executor=self.executor,
                parallel=self._parallel(),
                split_rows=s.split_rows,
                statistics=self._statistics,
                progress=s.progress,
            )
        return self._pipeline

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
        problems += [f"view {v.id} is listed but not converted" for v in self.catalog().views]
        problems += [f"{p.source.id}: {msg}" for p in plans for msg in p.problems]
        selected = {p.source.id for p in plans}
        problems += [
            f"{p.source.id}: foreign key to {fk.ref_table} is not created "
            "(that table is not selected)"
            for p in plans
            for fk in p.source.foreign_keys
            if fk.ref_table not in selected
        ]
        ddl_fn = getattr(pipe.writer, "ddl", None)
        ddl = tuple(ddl_fn(plans)) if callable(ddl_fn) else ()
        return Plan(Assessment(tuple(plans), tuple(problems)), ddl)

    def run(self) -> Statistics:
        """Run the task; return the statistics (also on failure, via ``statistics()``).

        Raises:
            ConfigError, ConnectError: before anything is written.
            ConversionError: unsupported columns, or lossy ones with ``allow_lossy=False``.
            TaskError: some tables failed; the statistics say which completed.
        """
        pipe = self.pipeline()
        if not self.settings.allow_lossy:
            lossy = self.plan().lossy
            if lossy:
                raise ConversionError(
                    "allow_lossy=False and these columns would not arrive exactly: "
                    + "; ".join(str(f) for f in lossy)
                )
        try:
            return pipe.run()
        finally:
            for ep in (self.source, self.target):
                ep.close()

    def statistics(self) -> Statistics:
        """Per-table statistics (live while the task runs)."""
        return self._statistics

    def ddl(self) -> list[str]:
        """The target DDL statements the task would run."""
        return list(self.plan().ddl)

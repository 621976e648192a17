"""One-call helpers for notebooks and scripts, built on :class:`~replikit.Task`."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import fields
from typing import Any

from replikit.endpoints.base import Endpoint, refuse_unknown
from replikit.errors import ConfigError
from replikit.mapping import Mappings, Selection
from replikit.pipeline.stats import Statistics
from replikit.pipeline.units import HasExecutor
from replikit.settings import TaskSettings
from replikit.task import Task
from replikit.transforms import Transform

__all__ = ["copy"]


def copy(
    source: Endpoint | str,
    target: Endpoint | str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    mappings: Mappings | None = None,
    transforms: Sequence[Transform] = (),
    executor: Executor | HasExecutor | None = None,
    **settings: Any,
) -> Statistics:
    """Copy tables from ``source`` to ``target`` (a full load); return the statistics.

    ``include`` / ``exclude`` are table patterns (``schema.table``, ``%`` as a wildcard;
    default: every table); ``mappings`` replaces them when given. Other keywords are
    :class:`~replikit.TaskSettings` fields (``target_table_prep_mode="truncate"``,
    ``parallel_tables=2``...). Progress shows in a terminal or a notebook, where the returned
    statistics display as a table::

        stats = rk.copy("sqlite:///chinook.db", "duckdb:///analysis.duckdb")

    Raises what :meth:`Task.run <replikit.Task.run>` raises: a plan that cannot be carried
    out faithfully stops before anything is written; tables that fail raise
    :class:`~replikit.TaskError` after the others are loaded.
    """
    refuse_unknown(settings, (f.name for f in fields(TaskSettings)), "TaskSettings field")
    if mappings is None:
        mappings = Mappings(selection=Selection(tuple(include), tuple(exclude)))
    elif include or exclude:
        raise ConfigError("pass include/exclude patterns or mappings, not both")
    task = Task(
        source,
        target,
        mappings=mappings,
        transforms=transforms,
        settings=TaskSettings(**settings),
        executor=executor,
    )
    return task.run()

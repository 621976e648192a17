"""``TaskSettings``: how a task runs, in code or from ``REPLIKIT_*`` environment variables.

>>> from replikit import TaskSettings
>>> TaskSettings(parallel_tables=8).parallel_tables
8
>>> TaskSettings.from_env(environ={"REPLIKIT_PARALLEL_TABLES": "2"}).parallel_tables
2

Nothing is read from the environment unless :meth:`TaskSettings.from_env` is called (the
``replikit`` command does; its flags override the environment).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from replikit.errors import ConfigError
from replikit.pipeline.choices import (
    DEFAULT_QUEUE_BYTES,
    DEFAULT_SPILL_BYTES,
    GENERATED_COLUMNS,
    PREP_MODES,
    StreamGc,
    check_stream_gc,
)
from replikit.pipeline.policy import ErrorPolicy, SchemaChangePolicy
from replikit.positions import Position

if TYPE_CHECKING:  # the pipeline loads when a stop condition is made, not with the settings
    from replikit.pipeline.cdc import StopCondition

__all__ = ["ENV_PREFIX", "ErrorPolicy", "TaskSettings", "stop_condition"]

log = logging.getLogger(__name__)

ENV_PREFIX = "REPLIKIT_"
PrepMode = Literal["drop-and-create", "truncate", "do-nothing"]
_TASK_ID = re.compile(r"[a-z0-9_]{1,40}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def stop_condition(settings: TaskSettings) -> StopCondition:
    """The CDC stop condition ``settings`` describe (``cdc_stop_position``, idle time)."""
    from replikit.pipeline.cdc import StopCondition

    position, commit_time = _stop_at(settings.cdc_stop_position)
    return StopCondition(
        idle_seconds=settings.stop_when_idle, position=position, commit_time=commit_time
    )


def _stop_at(text: str | None) -> tuple[Position | None, datetime | None]:
    """``cdc_stop_position`` read: a position, or a commit time (``server_time:<ISO 8601>``)."""
    if text is None:
        return None, None
    if not text.startswith("server_time:"):
        return _position(text, "cdc_stop_position"), None
    try:
        commit_time = datetime.fromisoformat(text.removeprefix("server_time:"))
    except ValueError:
        raise ConfigError(
            f"cdc_stop_position {text!r}: expected server_time:<ISO 8601 time>, "
            "e.g. server_time:2025-01-31T12:00:00+00:00",
            setting="cdc_stop_position",
        ) from None
    if commit_time.tzinfo is None:
        commit_time = commit_time.replace(tzinfo=UTC)
    return None, commit_time


def _position(text: str, setting: str) -> Position:
    try:
        return Position.parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{setting}: {exc}", setting=setting) from None


def _at_least(name: str, value: float | None, low: float, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if value is None or value < low:
        shown = int(low) if float(low).is_integer() else low
        extra = " (or None)" if none_ok else ""
        raise ConfigError(f"{name} must be at least {shown}{extra}; got {value}", setting=name)


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskSettings:
    """Task settings (DMS names where they exist). Unknown keywords raise ``TypeError``.

    A bad value raises :class:`~replikit.ConfigError` whose ``setting`` names the field.

    Attributes:
        target_table_prep_mode: ``drop-and-create`` (default), ``truncate`` or ``do-nothing``.
            The last two keep existing tables as they are (creating missing ones) after
            comparing them with the plan: what does not fit is a finding of ``plan()``, and
            unsupported ones stop ``run`` before anything is truncated (docs/quickstart.md).
        parallel_tables: how many units load at once (DMS ``MaxFullLoadSubTasks``).
        split_rows: how tables are split into key ranges (units) that load at once.
            ``"auto"`` (default): a table with more than 250,000 (estimated) rows is split into
            about 250,000-row ranges; into PostgreSQL, into no more ranges than units can load
            at once: ``parallel_tables``, and where the source or the target database runs on
            this machine (or inside this process), this machine's cores divided by the number
            of such databases. A table left whole loads in one transaction, which into a table
            the load created is ``COPY ... FREEZE`` (docs/scale.md). A number: ranges of
            about that many rows, as many as it takes;
            ``None`` never splits.
        allow_lossy: run even when the assessment lists lossy columns (they are always listed
            first); ``False`` makes ``run`` refuse.
        type_overrides: ``{"schema.table.column": "native target type"}``.
        progress: live progress on stderr: ``None`` (default) in a terminal or a notebook
            only; ``True`` also as plain lines (one per table event, a summary every
            ``progress_interval`` seconds) when stderr is a file or a pipe; ``False`` never
            (docs/progress.md).
        progress_interval: seconds between the summary lines of plain progress.
        task_id: names the task's checkpoint in the target and its objects on the source
            (PostgreSQL slot and publication ``replikit_<task_id>``); lowercase letters,
            digits and ``_``, at most 40. ``None``: derived from the source and target URLs,
            so running the same task again resumes it.
        batch_apply: CDC applies the net change per key of each batch with bulk statements
            (DMS ``BatchApplyEnabled``); ``False`` applies every change in source order.
        batch_changes: most changes per target transaction during CDC.
        cdc_start_position: where a CDC-only task starts the first time: ``"now"``
            (default) or a position (``str(position)``, e.g. ``"pg:0/1A2B3C"``). Later runs
            resume from the checkpoint.
        cdc_stop_position: stop once a transaction at or after this position was applied, or
            committed at or after ``"server_time:<ISO 8601>"`` (DMS ``CdcStopPosition``).
        stop_when_idle: stop CDC after this many seconds without a source transaction.
        transaction_memory_bytes: a source transaction is held in memory up to this estimated
            size (default 64 MiB); past it, the CDC reader moves its changes to a temporary
            file as it reads them, and the writer applies them from there in pieces inside
            one target transaction. Memory stays bounded whatever a transaction's size
            (docs/cdc.md, "Memory").
        queue_memory_bytes: bound on the estimated size of the source transactions read
            ahead of the apply (default 64 MiB; a spilled transaction counts only its small
            in-memory part).
        mask_secret: the key of the mappings' masks (HMAC): the same value masks to the same
            output wherever it appears, in every run with the same secret. ``None``: the
            ``REPLIKIT_MASK_SECRET`` environment variable; masking without either is refused.
            Never shown in reprs, logs or control tables.
        generated_columns: ``"create"`` (default) creates generated source columns as
            generated columns of the target, their expression translated (the target
            computes them; a full load then compares them with the source's values);
            ``"values"`` copies their values into plain columns (docs/schema-conversion.md).
        history_interval: seconds each ``replikit_history`` row covers (default 60).
        history_retention_days: ``replikit_history`` rows older than this are deleted
            (default 7).
        wait_timeout: seconds a source step may wait for other sessions before the task
            gives up (default 3600; ``None``: no limit): creating a PostgreSQL slot waits
            for the transactions running at that moment, MySQL's snapshot for a read lock.
            Every 5 s the task logs who it waits for (pid, age, query); docs/operations.md.
        control_url: a database for ``replikit_status`` and ``replikit_history`` instead of
            the target (``None``: the target, where they commit with the data). Checkpoints
            stay in the target either way (docs/operations.md).
        error_policy: what a bad row, an apply conflict and a lost connection do
            (:class:`~replikit.ErrorPolicy`, or a dict of its fields; docs/operations.md).
        schema_change_policy: what CDC does with a source table's schema change (DMS
            ``ChangeProcessingDdlHandlingPolicy``): ``apply`` (default: follow it on the
            target; a change it cannot follow suspends the table), ``stop-table`` (suspend
            the table at any schema change) or ``ignore`` (keep the target's shape: new
            columns are left out, dropped ones keep their last values).
        standby: replicate under a lease in the target (docs/high-availability.md): any
            number of processes may run the task; one writes, the others stand by and take
            over when its lease expires. Needs a PostgreSQL, MySQL/MariaDB or SQLite target.
        lease_seconds: how long a lease lasts without renewal (with ``standby``): the time a
            standby waits before it takes over from a replicator that died.
        validation_interval: with ``migration_type="validation-only"``: validate again this
            many seconds after each run ends, until :meth:`~replikit.Task.stop` (statistics
            and ``task.last_validation`` updated each time); ``None`` (default): once.
        stream_gc: who runs Python's cyclic garbage collector while a CDC stream applies
            changes. ``"managed"`` (default): the stream turns the count-triggered
            collections off for the whole process and runs a full collection itself every
            5 s between batches, then restores the collector when it ends (a backlog drains
            faster: docs/cdc.md, "The garbage collector while a stream runs").
            ``"python"``: the stream leaves the collector as the program set it, for a
            program that runs other work in the same process and wants its usual
            collections (or tunes the collector itself).
    """

    target_table_prep_mode: PrepMode = "drop-and-create"
    parallel_tables: int = 4
    split_rows: int | Literal["auto"] | None = "auto"
    allow_lossy: bool = True
    type_overrides: Mapping[str, str] = field(default_factory=dict)
    progress: bool | None = None
    progress_interval: float = 10.0
    task_id: str | None = None
    batch_apply: bool = False
    batch_changes: int = 10_000
    cdc_start_position: str | None = None
    cdc_stop_position: str | None = None
    stop_when_idle: float | None = None
    transaction_memory_bytes: int = DEFAULT_SPILL_BYTES
    queue_memory_bytes: int = DEFAULT_QUEUE_BYTES
    mask_secret: str | None = field(default=None, repr=False)
    generated_columns: str = "create"
    history_interval: float = 60.0
    history_retention_days: float = 7.0
    wait_timeout: float | None = 3600.0
    control_url: str | None = field(default=None, repr=False)  # may hold a password
    error_policy: ErrorPolicy = field(default_factory=ErrorPolicy)
    schema_change_policy: SchemaChangePolicy = "apply"
    standby: bool = False
    lease_seconds: float = 10.0
    validation_interval: float | None = None
    stream_gc: StreamGc = "managed"

    def __post_init__(self) -> None:
        if isinstance(self.error_policy, Mapping):
            try:
                policy = ErrorPolicy(**self.error_policy)
            except TypeError as exc:
                raise ConfigError(f"error_policy: {exc}", setting="error_policy") from None
            object.__setattr__(self, "error_policy", policy)
        if not isinstance(self.error_policy, ErrorPolicy):
            raise ConfigError(
                "error_policy must be an ErrorPolicy or a dict of its fields; got "
                f"{type(self.error_policy).__name__}",
                setting="error_policy",
            )
        if self.schema_change_policy not in ("apply", "stop-table", "ignore"):
            raise ConfigError(
                "schema_change_policy must be one of apply, stop-table, ignore; got "
                f"{self.schema_change_policy!r}",
                setting="schema_change_policy",
            )
        check_stream_gc(self.stream_gc)
        if self.target_table_prep_mode not in PREP_MODES:
            raise ConfigError(
                f"target_table_prep_mode must be one of {', '.join(PREP_MODES)}; "
                f"got {self.target_table_prep_mode!r}",
                setting="target_table_prep_mode",
            )
        _at_least("parallel_tables", self.parallel_tables, 1)
        if isinstance(self.split_rows, str | bool) and self.split_rows != "auto":
            raise ConfigError(
                f'split_rows must be "auto", a number of rows or None; got {self.split_rows!r}',
                setting="split_rows",
            )
        if self.split_rows != "auto":
            _at_least("split_rows", self.split_rows, 1000, none_ok=True)
        if self.task_id is not None and not _TASK_ID.fullmatch(self.task_id):
            raise ConfigError(
                f"task_id must be 1-40 lowercase letters, digits or '_'; got {self.task_id!r}",
                setting="task_id",
            )
        _at_least("batch_changes", self.batch_changes, 1)
        if self.progress_interval <= 0:
            raise ConfigError(
                f"progress_interval must be more than 0; got {self.progress_interval}",
                setting="progress_interval",
            )
        _at_least("stop_when_idle", self.stop_when_idle, 0, none_ok=True)
        _at_least("transaction_memory_bytes", self.transaction_memory_bytes, 0)
        _at_least("queue_memory_bytes", self.queue_memory_bytes, 1)
        _at_least("history_interval", self.history_interval, 1)
        _at_least("wait_timeout", self.wait_timeout, 0, none_ok=True)
        if self.history_retention_days <= 0:
            raise ConfigError(
                f"history_retention_days must be more than 0; got {self.history_retention_days}",
                setting="history_retention_days",
            )
        _at_least("lease_seconds", self.lease_seconds, 0.5)
        _at_least("validation_interval", self.validation_interval, 0, none_ok=True)
        if self.cdc_start_position not in (None, "now"):
            _position(self.cdc_start_position, "cdc_start_position")
        _stop_at(self.cdc_stop_position)
        if self.generated_columns not in GENERATED_COLUMNS:
            raise ConfigError(
                f"generated_columns must be one of {', '.join(GENERATED_COLUMNS)}; "
                f"got {self.generated_columns!r}",
                setting="generated_columns",
            )

    @classmethod
    def from_dms_json(
        cls, source: str | os.PathLike[str] | Mapping[str, Any], **overrides: Any
    ) -> TaskSettings:
        """Settings from an AWS DMS task-settings document (a path, JSON text or a ``dict``):
        ``FullLoadSettings``, ``TargetMetadata``, ``ChangeProcessingTuning``,
        ``ErrorBehavior`` and ``ValidationSettings`` keys with a replikit meaning; groups
        that only tune DMS itself (``Logging``, buffers, control tables) are accepted.
        Anything replikit cannot honour is a :class:`~replikit.ConfigError` naming the group
        and key. Keyword ``overrides`` win over the document.
        """
        from replikit.mapping.dms import settings_from_dms

        return cls(**{**settings_from_dms(source), **overrides})

    @classmethod
    def from_env(
        cls, prefix: str = ENV_PREFIX, *, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> TaskSettings:
        """Settings from ``<prefix><FIELD>`` environment variables; unset ones keep defaults,
        and keyword ``overrides`` (e.g. command-line flags) win over the environment.

        Each field reads the variable named after it in capitals: ``REPLIKIT_PARALLEL_TABLES=8``,
        ``REPLIKIT_TARGET_TABLE_PREP_MODE=truncate``, ``REPLIKIT_ALLOW_LOSSY=false``
        (``1/true/yes/on``, ``0/false/no/off``), ``REPLIKIT_SPLIT_ROWS=none`` (or ``auto``),
        ``REPLIKIT_TYPE_OVERRIDES='{"main.t.c": "text"}'`` (a JSON object). A value that does
        not parse raises :class:`~replikit.ConfigError` naming the variable (and the field
        in ``setting``). ``environ`` replaces ``os.environ``.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        given: dict[str, str] = {}
        for f in fields(cls):
            var = prefix + f.name.upper()
            raw = env.get(var)
            if raw is not None and f.name not in overrides:
                given[f.name] = var
                values[f.name] = _env_value(f.name, var, raw.strip())
        if given:
            log.info("settings from the environment: %s", ", ".join(sorted(given.values())))
        try:
            return cls(**values, **overrides)
        except ConfigError as exc:
            bad = given.get(exc.setting or "")
            if bad is None:
                raise
            raise ConfigError(f"{bad}={env[bad]!r}: {exc}", setting=exc.setting) from None


def _typed(kind: str) -> frozenset[str]:
    """The settings whose annotation is ``kind``, alone or ``| None``: read from the dataclass,
    so a field added to :class:`TaskSettings` is parsed from the environment by its type."""
    return frozenset(f.name for f in fields(TaskSettings) if str(f.type).split(" | ")[0] == kind)


_INTS = _typed("int")
_FLOATS = _typed("float")
_BOOLS = _typed("bool")
_NONE_OK = frozenset(f.name for f in fields(TaskSettings) if "None" in str(f.type).split(" | "))
_AUTO_OK = frozenset(f.name for f in fields(TaskSettings) if "auto" in str(f.type))


def _env_value(name: str, var: str, raw: str) -> Any:
    """The typed value of environment variable ``var`` (for field ``name``)."""
    if name in _NONE_OK and raw.lower() == "none":
        return None
    if name in _AUTO_OK and raw.lower() == "auto":
        return "auto"
    try:
        if name in _INTS:
            return int(raw.replace("_", ""))
        if name in _FLOATS:
            return float(raw)
    except ValueError:
        kind = "a whole number" if name in _INTS else "a number"
        raise ConfigError(f"{var}={raw!r}: expected {kind}", setting=name) from None
    if name in _BOOLS:
        if raw.lower() not in _TRUE + _FALSE:
            raise ConfigError(
                f"{var}={raw!r}: expected one of {', '.join(_TRUE + _FALSE)}", setting=name
            )
        return raw.lower() in _TRUE
    if name == "type_overrides":
        return _json_object(var, raw)
    if name == "error_policy":
        return _json_policy(var, raw)
    return raw


def _json_policy(var: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(
            f'{var}: expected a JSON object of ErrorPolicy fields, e.g. {{"data_errors": '
            '"skip-row", "retry_timeout": 600}',
            setting="error_policy",
        )
    return value


def _json_object(var: str, raw: str) -> dict[str, str]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(
            f'{var}: expected a JSON object of column to type, e.g. {{"main.t.c": "text"}}',
            setting="type_overrides",
        )
    return value

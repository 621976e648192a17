"""The ``replikit`` command line (the parser and its help texts: :mod:`replikit._cli_parser`).

Exit codes: 0 success; 1 the task ran and some tables failed (or an unexpected error);
2 bad input or an unreachable endpoint (a :class:`replikit.Error` before any data moved);
130 stopped by Ctrl-C / SIGTERM. Every failure is one line on stderr without a traceback
(``-v`` adds it for unexpected errors) and, with ``--json``, a JSON object on stdout.

Settings come from ``REPLIKIT_*`` environment variables (:meth:`TaskSettings.from_env`),
overridden by the flags given; errors in a flag's value name the flag. The library logs under
``replikit.*``; ``-v`` shows INFO, ``-vv`` DEBUG, ``-q`` only errors, on stderr.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import contextvars
import dataclasses
import gc
import json
import logging
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from replikit._cli_parser import SETTING_FLAGS, parser
from replikit.errors import ConfigError, Error, StoppedError, TaskError
from replikit.logs import ContextFilter, JsonFormatter
from replikit.settings import TaskSettings

# The commands import the task, the mappings, the endpoints and the task files when they run:
# ``replikit --help`` (and a bad command line) needs only the parser.
if TYPE_CHECKING:
    from replikit.endpoints.base import Endpoint
    from replikit.mapping import Mappings
    from replikit.pipeline.policy import ErrorPolicy
    from replikit.task import Task
    from replikit.taskfile import TaskFile

__all__ = ["main"]


def _pair(text: str, flag: str, shape: str) -> tuple[str, str]:
    source, eq, target = text.partition("=")
    if not eq or not source or not target:
        raise ConfigError(f"{flag} {text!r}: expected {shape}")
    return source, target


def _mappings(args: argparse.Namespace, base: Mappings | None = None) -> Mappings:
    """Selection and renames from the command line (added to ``base``: a task file's)."""
    from replikit.mapping import Mappings, Selection

    if base is None:
        mappings = Mappings(selection=Selection(tuple(args.include), tuple(args.exclude)))
    else:
        mappings = base
        for pattern in args.include:
            mappings = mappings.include(*_pattern(pattern))
        for pattern in args.exclude:
            mappings = mappings.exclude(*_pattern(pattern))
    for text in args.rename_schema:
        mappings = mappings.rename_schema(*_pair(text, "--rename-schema", "SRC=DST"))
    for text in args.rename_table:
        mappings = mappings.rename_table(*_pair(text, "--rename-table", "SRC=DST"))
    for text in args.rename_column:
        shape = "SCHEMA.TABLE.COLUMN=NEW (or TABLE.COLUMN=NEW)"
        source, target = _pair(text, "--rename-column", shape)
        table, dot, column = source.rpartition(".")
        if not dot or not table or not column:
            raise ConfigError(f"--rename-column {text!r}: expected {shape}")
        mappings = mappings.rename_column(table, column, target)
    return mappings


def _pattern(text: str) -> tuple[str, str]:
    schema, dot, table = text.partition(".")
    return (schema, table) if dot else ("%", schema)


def _type_overrides(args: argparse.Namespace) -> dict[str, str]:
    """``--type SCHEMA.TABLE.COLUMN=TYPE`` options as ``TaskSettings.type_overrides``."""
    shape = "SCHEMA.TABLE.COLUMN=TYPE (or TABLE.COLUMN=TYPE)"
    overrides = {}
    for text in args.type:
        column, native = _pair(text, "--type", shape)
        if "." not in column.strip("."):
            raise ConfigError(f"--type {text!r}: expected {shape}")
        overrides[column] = native
    return overrides


def _task(args: argparse.Namespace, executor: Any = None, **flags: Any) -> Task:
    return _build(args, args.source, executor=executor, **flags)


def _build(
    args: argparse.Namespace,
    source: Any,
    *,
    migration_type: str | None = None,
    executor: Any = None,
    **flags: Any,
) -> Task:
    """The task the command line describes: a ``--task`` file's, with the URLs, selection,
    renames and setting flags given on the line winning over it."""
    from replikit.task import Task

    task_file = _task_file(args)
    if task_file is None:
        return Task(
            source,
            args.target,
            migration_type=migration_type or "full-load",
            mappings=_mappings(args),
            settings=_settings(args, **flags),
            executor=executor,
        )
    given = {k: v for k, v in flags.items() if v is not None}
    if getattr(args, "type", None):
        given["type_overrides"] = {**task_file.settings.type_overrides, **_type_overrides(args)}
    settings = dataclasses.replace(task_file.settings, **given)
    return task_file.task(
        source=source or task_file.source,
        target=args.target or task_file.target,
        migration_type=migration_type or task_file.migration_type,
        mappings=_mappings(args, task_file.mappings),
        settings=settings,
        executor=executor,
    )


def _task_file(args: argparse.Namespace) -> TaskFile | None:
    path = getattr(args, "task", None)
    if path is None:
        return None  # (the task-file module and its YAML parser load only for a file)
    from replikit.taskfile import load_task_file

    return load_task_file(path)


def _settings(args: argparse.Namespace, **flags: Any) -> TaskSettings:
    """``REPLIKIT_*`` settings overridden by the flags given (``None``: not given).

    A bad flag value raises :class:`ConfigError` naming the flag, not the setting.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    if getattr(args, "type", None):
        given["type_overrides"] = _type_overrides(args)
    try:
        return TaskSettings.from_env(**given)  # errors in the environment name the variable
    except ConfigError as exc:
        setting = exc.setting or ""
        if setting not in given or setting not in SETTING_FLAGS:
            raise
        message = str(exc).replace(setting, SETTING_FLAGS[setting], 1)
        raise ConfigError(message, setting=setting) from None


def _load_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the full-load flags (``copy``, ``replicate``) give."""
    return {
        "target_table_prep_mode": args.prep,
        "parallel_tables": args.parallel,
        "split_rows": args.split_rows,
        "allow_lossy": args.allow_lossy,
        "progress": _progress(args),
        "error_policy": _error_policy(args),
    }


def _error_policy(args: argparse.Namespace) -> ErrorPolicy | None:
    """``--data-errors``, ``--apply-conflicts`` and ``--retry-timeout`` over
    ``REPLIKIT_ERROR_POLICY``."""
    flags = {
        "data_errors": args.data_errors,
        "apply_conflicts": getattr(args, "apply_conflicts", None),
        "retry_timeout": args.retry_timeout,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return None
    base = TaskSettings.from_env().error_policy
    try:
        return dataclasses.replace(base, **given)
    except ConfigError as exc:
        raise ConfigError(f"--retry-timeout: {exc}", setting="error_policy") from None


def _progress(args: argparse.Namespace) -> bool | None:
    """Live progress on stderr in a terminal, plain lines in a pipe; with --json only in a
    terminal (stdout carries the JSON either way); none with --no-progress or -q. ``None``
    leaves it to ``REPLIKIT_PROGRESS`` when that is set."""
    if args.progress is False or args.quiet or args.quiet_sub or args.log_format == "json":
        return False  # (progress lines are not JSON records)
    return None if args.json or "REPLIKIT_PROGRESS" in os.environ else True


def _cmd_copy(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        executor = None
        if args.dask:
            from replikit import _dask

            executor = stack.enter_context(_dask.client(args.dask))
        task = _task(args, executor, **_load_flags(args))
        with _graceful(task):
            status, error = _run(task)
    stats = task.statistics()
    details = {"tables": stats.as_dicts(), "rows": stats.total_rows}
    summary = f"{len(stats)} tables, {stats.total_rows:,} rows"
    return _report(args, status, error, stats, details, summary)


def _run(task: Task) -> tuple[int, str | None]:
    """Run ``task``: exit status 1 and the message when tables failed, 130 when stopped."""
    try:
        task.run()
    except StoppedError as exc:
        return 130, str(exc)
    except KeyboardInterrupt:
        return 130, "interrupted; the statistics show what was done"
    except TaskError as exc:
        return 1, str(exc)
    return 0, None


@contextlib.contextmanager
def _graceful(task: Task) -> Iterator[None]:
    """While running ``task``: the first Ctrl-C (or SIGTERM) stops it after the current
    batch, a second one aborts."""
    interrupts = 0

    def graceful(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        _stderr("stopping after the current batch (Ctrl-C again to abort)", logging.WARNING)
        task.stop()

    old_int = signal.signal(signal.SIGINT, graceful)
    old_term = signal.signal(signal.SIGTERM, graceful)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _report(
    args: argparse.Namespace,
    status: int,
    error: str | None,
    stats: object,
    details: dict[str, Any],
    summary: str,
) -> int:
    """Print a run's outcome (JSON with ``details``, or ``stats`` and ``summary``)."""
    if args.json:
        print(json.dumps({"ok": status == 0, **details, "error": error}, indent=2))
    elif not (args.quiet or args.quiet_sub):
        print(stats)
        print(summary)
    if error:
        _stderr(_one_line(error), logging.ERROR)
    return status


def _cmd_plan(args: argparse.Namespace) -> int:
    plan = _task(args).plan()
    if args.html:
        page = (
            f"<!doctype html><meta charset='utf-8'><title>replikit plan</title>{plan._repr_html_()}"
        )
        Path(args.html).write_text(page, encoding="utf-8")
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    print(plan)
    if args.ddl:
        print()
        print(";\n".join(plan.ddl) + ";" if plan.ddl else "(no DDL)")
    return 0


def _source(url: str, cdc_setup: bool) -> Endpoint:
    from replikit.endpoints.base import endpoint

    if cdc_setup and url.startswith("sqlite"):
        return endpoint(url, cdc_setup=True)
    return endpoint(url)


def _replicate_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the ``replicate`` flags give (``None``: not given)."""
    return {
        **_load_flags(args),
        "task_id": args.task_id,
        "batch_apply": args.batch_apply,
        "stop_when_idle": args.stop_when_idle,
        "cdc_start_position": args.start_position,
        "cdc_stop_position": args.stop_position,
        "schema_change_policy": args.schema_changes,
        "standby": args.standby,
        "lease_seconds": args.lease_seconds,
        "stream_gc": args.stream_gc,
    }


def _given(args: argparse.Namespace, settings: TaskSettings) -> list[str]:
    """The settings the replicate flags gave (they win over a task file)."""
    return [k for k, v in _replicate_flags(args).items() if v is not None]


def _cmd_run(args: argparse.Namespace) -> int:
    """``replikit run TASKFILE``: a full-load task as ``copy``, the others as ``replicate``
    (with those commands' defaults for every flag)."""
    from replikit.taskfile import load_task_file

    task_file = load_task_file(args.taskfile)
    full_load = task_file.migration_type == "full-load"
    argv = ["copy" if full_load else "replicate", "--task", args.taskfile]
    if not full_load:
        argv += ["--mode", task_file.migration_type]
    if args.json:
        argv.append("--json")
    if args.progress is False:
        argv.append("--no-progress")
    command = parser().parse_args(argv)
    for name in ("verbose", "verbose_sub", "verbose_total", "quiet", "quiet_sub", "log_format"):
        setattr(command, name, getattr(args, name))
    return _cmd_copy(command) if full_load else _cmd_replicate(command)


def _cmd_replicate(args: argparse.Namespace) -> int:
    settings = _settings(args, **_replicate_flags(args))
    task_file = _task_file(args)
    url = args.source or (task_file.source if task_file is not None else None)
    if not url:
        raise ConfigError("no source URL: give SRC_URL or --task, or set REPLIKIT_SOURCE_URL")
    mode = args.mode or (task_file.migration_type if task_file is not None else None)
    if mode == "full-load":
        mode = "full-load-and-cdc"
    with _source(url, args.cdc_setup) as source:  # the task closes only its own
        flags = {k: getattr(settings, k) for k in _given(args, settings)}
        task = _build(args, source, migration_type=mode or "full-load-and-cdc", **flags)
        with _graceful(task), _monitor(task, args):
            status, error = _run(task)
    stats = task.statistics()
    details = {"task_id": task.task_id, "tables": stats.as_dicts(), "cdc": stats.cdc.as_dict()}
    summary = f"task {task.task_id}: run the same command again to resume"
    return _report(args, status, error, stats, details, summary)


@contextlib.contextmanager
def _monitor(task: Task, args: argparse.Namespace) -> Iterator[None]:
    """Serve metrics and the status page while the task runs (``--metrics-port``)."""
    if args.metrics_port is None:
        yield
        return
    with task.serve_metrics(args.metrics_port, host=args.metrics_host) as server:
        if not args.quiet:
            _stderr(f"status page {server.url}, metrics {server.url}metrics")
        yield


def _cmd_status(args: argparse.Namespace) -> int:
    from replikit.endpoints.base import endpoint
    from replikit.monitor.report import format_status, task_status
    from replikit.task import Task

    if args.target_url is not None and args.task_id is None:
        raise ConfigError("--target needs --task-id (or give SRC_URL and DST_URL)")
    settings = _settings(args, task_id=args.task_id, control_url=args.control_url)
    source = args.source if args.target_url is None else args.target_url
    target = args.target if args.target_url is None else args.target_url
    task = Task(source, target, settings=settings)
    control = endpoint(settings.control_url) if settings.control_url else None
    try:
        while True:
            report = task_status(task.target, task.task_id, control=control)
            if args.json:
                print(json.dumps(report, indent=None if args.watch else 2), flush=True)
            else:
                print(format_status(report), flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)
            if not args.json:
                print()
    except KeyboardInterrupt:
        return 0
    finally:
        task.target.close()
        task.source.close()
        if control is not None:
            control.close()


def _cmd_drop(args: argparse.Namespace) -> int:
    from replikit.task import Task

    task = Task(args.source, args.target, settings=_settings(args, task_id=args.task_id))
    task.drop()
    print(f"dropped task {task.task_id}: source CDC objects and target control rows")
    return 0


def _cmd_reload(args: argparse.Namespace) -> int:
    from replikit.task import Task

    settings = _settings(args, task_id=args.task_id, target_table_prep_mode=args.prep)
    with _source(args.source, False) as source:
        task = Task(source, args.target, mappings=_mappings(args), settings=settings)
        task.reload(args.table)
    stats = task.statistics()
    rows = sum(t.full_load_rows for t in stats)
    if args.json:
        print(json.dumps({"ok": True, "task_id": task.task_id, "table": args.table,
                          "rows": rows}, indent=2))  # fmt: skip
    else:
        print(f"reloaded {args.table} ({rows:,} rows) for task {task.task_id}; its changes "
              "apply again (a running task picks it up within seconds)")  # fmt: skip
    return 0


def _cmd_cdc_setup(args: argparse.Namespace) -> int:
    from replikit.endpoints.base import cdc_source
    from replikit.mapping import Selection

    selection = Selection(tuple(args.include), tuple(args.exclude))
    with _source(args.source, True) as source:
        tables = list(source.reflect(selection).tables)
        cdc_source(source).cdc_setup(tables, task=args.task_id)
    print(f"CDC is set up on {source.url} for {len(tables)} tables")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    """Exit 0: every table validated; 1: differences found (after --fix: still there);
    2: a table could not be compared (missing, key or columns do not match) or bad input."""
    sample = _sample(args.sample)
    task = _task(args, parallel_tables=args.parallel, task_id=args.task_id)
    report = task.validate(
        sample=sample, recheck=args.recheck or None, recheck_timeout=args.recheck_timeout
    )
    if args.fix:
        report.fix()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not args.quiet:
        print(report)
        if report.fixed is not None:
            print(f"fixed:\n{report.fixed}")
    states = {t.state.value for t in report}
    if states & {"not comparable", "error"}:
        bad = [t for t in report if t.state.value in ("not comparable", "error")]
        for t in bad:
            _stderr(f"{t.source}: {t.state.value}: {_one_line(t.reason or '')}", logging.ERROR)
        return 2
    # rows still in flight (or not re-checked in time) are not proven equal
    return 1 if "mismatched" in states or any(t.pending for t in report) else 0


def _sample(text: str | None) -> float | None:
    """``--sample 10%`` (or ``0.1``) as a fraction."""
    if text is None:
        return None
    value = text.strip()
    try:
        fraction = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise ConfigError(f"--sample {text!r}: expected a percentage such as 10%") from None
    if not 0 < fraction <= 1:
        raise ConfigError(f"--sample {text!r}: expected a percentage above 0% and up to 100%")
    return fraction


def _cmd_demo(args: argparse.Namespace) -> int:
    from replikit.demo import run_demo

    return run_demo(args.dir, cdc=not args.no_cdc, out=sys.stdout)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "copy": _cmd_copy,
    "plan": _cmd_plan,
    "replicate": _cmd_replicate,
    "validate": _cmd_validate,
    "run": _cmd_run,
    "status": _cmd_status,
    "reload": _cmd_reload,
    "drop": _cmd_drop,
    "cdc-setup": _cmd_cdc_setup,
    "demo": _cmd_demo,
}
_URL_ENV = {"source": "REPLIKIT_SOURCE_URL", "target": "REPLIKIT_TARGET_URL"}


def _parse(argv: list[str]) -> argparse.Namespace:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage and the error on stderr
        if exc.code == 2 and "--json" in argv:
            error = {"ok": False, "error": "invalid command line (see the usage on stderr)"}
            print(json.dumps({**error, "error_type": "UsageError", "exit_status": 2}, indent=2))
        raise
    args.verbose_total = args.verbose + args.verbose_sub
    args.log_format = args.log_format_sub or args.log_format or "text"
    args.quiet = args.quiet or args.quiet_sub
    if args.quiet and args.verbose_total:
        parser().error("-q and -v contradict each other; give one")
    return args


def _urls_from_env(args: argparse.Namespace) -> None:
    """Fill SRC_URL / DST_URL not given on the line from ``REPLIKIT_SOURCE_URL`` /
    ``REPLIKIT_TARGET_URL``."""
    if getattr(args, "task", None) or args.command == "run":
        return  # the task file names them
    for role, var in _URL_ENV.items():
        if role in vars(args) and getattr(args, role) is None:
            url = os.environ.get(var)
            if not url:
                flag = "SRC_URL" if role == "source" else "DST_URL"
                raise ConfigError(f"no {role} URL: give {flag} or set {var}")
            setattr(args, role, url)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    atexit.unregister(_no_collection_at_exit)  # (once, however often main runs in a process)
    atexit.register(_no_collection_at_exit)
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    with _logging(args.verbose_total, args.quiet, args.log_format):
        try:
            if getattr(args, "target_url", None) is None:
                _urls_from_env(args)
            return _COMMANDS[args.command](args)
        except BrokenPipeError:
            return _broken_pipe()
        except Error as exc:
            return _fail(args, 2, str(exc), exc)
        except KeyboardInterrupt:
            return _fail(args, 130, "interrupted", None)
        except Exception as exc:  # a person reads this: one line, the traceback with -v
            if args.verbose_total:
                traceback.print_exc()
            hint = "" if args.verbose_total else " (run with -v for the traceback)"
            return _fail(args, 1, f"unexpected {type(exc).__name__}: {exc}{hint}", exc)


def _no_collection_at_exit() -> None:
    """At interpreter exit, leave the objects alive then out of the collector's last pass.

    Python's finalization runs a full cyclic collection over every object the process still
    holds (after a full load: the imported modules, the catalog, plans and statistics), which
    took 30-40 ms of a command's wall time and frees nothing the ending process needs freed.
    ``gc.freeze()`` (run by ``atexit``, after the command's output is written and its threads
    and connections are closed) moves them to the permanent generation; reference counting
    still finalizes what the module teardown releases, and the OS reclaims the rest.
    """
    gc.freeze()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextlib.contextmanager
def _logging(verbose: int, quiet: bool, fmt: str = "text") -> Iterator[None]:
    """Show ``replikit.*`` log records on stderr for one command (as text, or JSON lines with
    ``fmt="json"``; passwords masked, task and table filled in), then restore the logger."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO)[min(verbose, 1)]
    if verbose >= 2:
        level = logging.DEBUG
    logger = logging.getLogger("replikit")
    handler = _StderrHandler()
    handler.addFilter(ContextFilter())
    json_token = _JSON_STDERR.set(fmt == "json")
    text = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        _JSON_STDERR.reset(json_token)


def _fail(args: argparse.Namespace, status: int, message: str, exc: BaseException | None) -> int:
    """Report a failure: one line on stderr, and a JSON error object on stdout with --json."""
    message = _one_line(message)
    _stderr(f"error: {message}", logging.ERROR)
    if getattr(args, "json", False):
        error = {"ok": False, "error": message, "error_type": type(exc).__name__ if exc else None}
        try:
            print(json.dumps({**error, "exit_status": status}, indent=2))
        except BrokenPipeError:
            return _broken_pipe()
    return status


_JSON_STDERR: contextvars.ContextVar[bool] = contextvars.ContextVar("json_stderr", default=False)


def _stderr(message: str, level: int = logging.INFO) -> None:
    """A line on stderr for the person running the command (``replikit: ...``), or a JSON
    log record of logger ``replikit.cli`` under ``--log-format json``."""
    if _JSON_STDERR.get():
        record = logging.LogRecord("replikit.cli", level, __file__, 0, message, None, None)
        ContextFilter().filter(record)
        print(JsonFormatter().format(record), file=sys.stderr, flush=True)
    else:
        print(f"replikit: {message}", file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    """``text`` on one line: a driver's multi-line message (libpq adds a hint line) joined."""
    return re.sub(r"\s*\n\s*", " ", text.strip())


def _broken_pipe() -> int:
    """Whoever read stdout stopped (``| head``): no traceback, no second error at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    _stderr("output stopped: stdout was closed (broken pipe)", logging.ERROR)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

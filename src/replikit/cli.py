"""The ``replikit`` command line.

Exit codes: 0 success; 1 the task ran and some tables failed (or an unexpected error);
2 bad input or an unreachable endpoint (a :class:`replikit.Error` before any data moved);
130 stopped by Ctrl-C / SIGTERM. Every failure is one line on stderr without a traceback
(``-v`` adds it for unexpected errors) and, with ``--json``, a JSON object on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import FrameType
from typing import Any

from replikit import __version__
from replikit.endpoints.base import Endpoint, endpoint
from replikit.errors import ConfigError, Error, StoppedError, TaskError
from replikit.mapping import Mappings, Selection
from replikit.pipeline.runner import PREP_MODES
from replikit.task import Task, TaskSettings

__all__ = ["main"]


def _add_endpoints(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SRC_URL", help="source URL, e.g. postgresql://user@host/db")
    p.add_argument("target", metavar="DST_URL", help="target URL, e.g. sqlite:///out.db")
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="schema.table to include, %% as wildcard (repeatable; default: all tables)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="schema.table to leave out (repeatable)",
    )
    p.add_argument(
        "--rename-schema",
        action="append",
        default=[],
        metavar="SRC=DST",
        help="put the tables of source schema SRC into target schema DST (repeatable)",
    )
    p.add_argument(
        "--rename-table",
        action="append",
        default=[],
        metavar="SRC=DST",
        help="create source table SRC (schema.table or table) as DST (repeatable)",
    )
    p.add_argument(
        "--rename-column",
        action="append",
        default=[],
        metavar="SCHEMA.TABLE.COLUMN=NEW",
        help="create a source column under the name NEW in its target table (repeatable)",
    )
    p.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="SCHEMA.TABLE.COLUMN=TYPE",
        help="create a column with this native target type, e.g. main.t.amount=text (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replikit",
        description="Move and replicate databases: full load, CDC, plan, demo.",
    )
    parser.add_argument("--version", action="version", version=f"replikit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    copy = sub.add_parser("copy", help="full load: copy tables from SRC_URL to DST_URL")
    _add_endpoints(copy)
    copy.add_argument(
        "--prep",
        choices=PREP_MODES,
        default="drop-and-create",
        help="what to do with existing target tables (default: drop-and-create)",
    )
    copy.add_argument(
        "--parallel", type=int, default=4, metavar="N", help="units loaded at once (default: 4)"
    )
    copy.add_argument(
        "--split-rows",
        type=int,
        default=250_000,
        metavar="N",
        help="split tables above N rows into key ranges (default: 250000)",
    )
    copy.add_argument(
        "--strict", action="store_true", help="refuse to run when any column converts lossily"
    )
    copy.add_argument("--no-progress", action="store_true", help="no live progress on stderr")

    plan = sub.add_parser("plan", help="show the target DDL and the conversion assessment")
    _add_endpoints(plan)
    plan.add_argument("--ddl", action="store_true", help="also print the target DDL")

    rep = sub.add_parser(
        "replicate",
        help="full load + change data capture (or CDC only) until Ctrl-C; run again to resume",
    )
    _add_endpoints(rep)
    rep.add_argument(
        "--mode",
        choices=("full-load-and-cdc", "cdc"),
        default="full-load-and-cdc",
        help="full-load-and-cdc (default) or cdc (changes from now on only)",
    )
    rep.add_argument(
        "--batch-apply",
        action="store_true",
        help="apply the net change per key of each batch in bulk (fast) instead of every "
        "change in source order",
    )
    rep.add_argument(
        "--stop-when-idle",
        type=float,
        metavar="SECONDS",
        help="stop after SECONDS without a source transaction (default: run until Ctrl-C)",
    )
    rep.add_argument(
        "--task-id", help="name of the task's checkpoint and source objects (default: derived)"
    )
    rep.add_argument(
        "--start-position",
        metavar="POS",
        help="CDC-only, first run: start at POS (e.g. pg:0/1A2B3C) instead of now",
    )
    rep.add_argument(
        "--stop-position",
        metavar="POS",
        help="stop once POS (a position, or server_time:<ISO 8601>) is applied",
    )
    rep.add_argument(
        "--prep",
        choices=PREP_MODES,
        default="drop-and-create",
        help="what the full load does with existing target tables (default: drop-and-create)",
    )
    rep.add_argument(
        "--cdc-setup",
        action="store_true",
        help="SQLite source: install the change triggers replikit needs (opt-in)",
    )
    rep.add_argument("--no-progress", action="store_true", help="no live progress on stderr")

    drop = sub.add_parser(
        "drop", help="remove a task's slot, publication, triggers and control rows"
    )
    drop.add_argument("source", metavar="SRC_URL", help="source URL")
    drop.add_argument("target", metavar="DST_URL", help="target URL")
    drop.add_argument("--task-id", help="the task's id (default: derived from the URLs)")

    setup = sub.add_parser(
        "cdc-setup", help="check a source for CDC and create what it needs (SQLite: triggers)"
    )
    setup.add_argument("source", metavar="SRC_URL", help="source URL")
    setup.add_argument("--include", action="append", default=[], metavar="PATTERN")
    setup.add_argument("--exclude", action="append", default=[], metavar="PATTERN")
    setup.add_argument("--task-id", default="default", help="names the source objects")

    demo = sub.add_parser("demo", help="copy a bundled sample database, SQLite to SQLite")
    demo.add_argument("--dir", help="where to put the demo databases (default: a temp dir)")
    demo.add_argument("--no-cdc", action="store_true", help="full load only, no live CDC part")
    return parser


def _pair(text: str, flag: str, shape: str) -> tuple[str, str]:
    source, eq, target = text.partition("=")
    if not eq or not source or not target:
        raise ConfigError(f"{flag} {text!r}: expected {shape}")
    return source, target


def _mappings(args: argparse.Namespace) -> Mappings:
    """Selection and renames from the command line."""
    mappings = Mappings(selection=Selection(tuple(args.include), tuple(args.exclude)))
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


def _task(args: argparse.Namespace, settings: TaskSettings | None = None) -> Task:
    settings = replace(settings or TaskSettings(), type_overrides=_type_overrides(args))
    return Task(args.source, args.target, mappings=_mappings(args), settings=settings)


def _progress(args: argparse.Namespace) -> bool | None:
    """Live progress on stderr in a terminal, plain lines in a pipe; with --json only in a
    terminal (stdout carries the JSON either way)."""
    if args.no_progress:
        return False
    return None if args.json else True


def _cmd_copy(args: argparse.Namespace) -> int:
    settings = TaskSettings(
        target_table_prep_mode=args.prep,
        parallel_tables=args.parallel,
        split_rows=args.split_rows,
        allow_lossy=not args.strict,
        progress=_progress(args),
    )
    task = _task(args, settings)
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
        print(
            "replikit: stopping after the current batch (Ctrl-C again to abort)",
            file=sys.stderr,
            flush=True,
        )
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
    else:
        print(stats)
        print(summary)
    if error:
        print(f"replikit: {error}", file=sys.stderr)
    return status


def _cmd_plan(args: argparse.Namespace) -> int:
    plan = _task(args).plan()
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    print(plan)
    if args.ddl:
        print()
        print(";\n".join(plan.ddl) + ";" if plan.ddl else "(no DDL)")
    return 0


def _source(url: str, cdc_setup: bool) -> Endpoint:
    if cdc_setup and url.startswith("sqlite"):
        return endpoint(url, cdc_setup=True)
    return endpoint(url)


def _cmd_replicate(args: argparse.Namespace) -> int:
    settings = TaskSettings(
        target_table_prep_mode=args.prep,
        task_id=args.task_id,
        batch_apply=args.batch_apply,
        stop_when_idle=args.stop_when_idle,
        cdc_start_position=args.start_position,
        cdc_stop_position=args.stop_position,
        progress=_progress(args),
        type_overrides=_type_overrides(args),
    )
    mappings = _mappings(args)
    with _source(args.source, args.cdc_setup) as source:  # the task closes only its own
        task = Task(
            source, args.target, migration_type=args.mode, mappings=mappings, settings=settings
        )
        with _graceful(task):
            status, error = _run(task)
    stats = task.statistics()
    details = {"task_id": task.task_id, "tables": stats.as_dicts(), "cdc": stats.cdc.as_dict()}
    summary = f"task {task.task_id}: run the same command again to resume"
    return _report(args, status, error, stats, details, summary)


def _cmd_drop(args: argparse.Namespace) -> int:
    task = Task(args.source, args.target, settings=TaskSettings(task_id=args.task_id))
    task.drop()
    print(f"dropped task {task.task_id}: source CDC objects and target control rows")
    return 0


def _cmd_cdc_setup(args: argparse.Namespace) -> int:
    selection = Selection(tuple(args.include), tuple(args.exclude))
    with _source(args.source, True) as source:
        tables = list(source.reflect(selection).tables)
        source.cdc_setup(tables, task=args.task_id)
    print(f"CDC is set up on {source.url} for {len(tables)} tables")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from replikit.demo import run_demo

    return run_demo(args.dir, cdc=not args.no_cdc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage and the error on stderr
        if exc.code == 2 and "--json" in argv:
            error = {"ok": False, "error": "invalid command line (see the usage on stderr)"}
            print(json.dumps({**error, "error_type": "UsageError", "exit_status": 2}, indent=2))
        raise
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    commands = {
        "copy": _cmd_copy,
        "plan": _cmd_plan,
        "replicate": _cmd_replicate,
        "drop": _cmd_drop,
        "cdc-setup": _cmd_cdc_setup,
        "demo": _cmd_demo,
    }
    try:
        return commands[args.command](args)
    except BrokenPipeError:
        return _broken_pipe()
    except Error as exc:
        return _fail(args, 2, str(exc), exc)
    except KeyboardInterrupt:
        return _fail(args, 130, "interrupted", None)
    except Exception as exc:  # a person reads this: one line, the traceback with -v
        if args.verbose:
            traceback.print_exc()
        hint = "" if args.verbose else " (run with -v for the traceback)"
        return _fail(args, 1, f"unexpected {type(exc).__name__}: {exc}{hint}", exc)


def _fail(args: argparse.Namespace, status: int, message: str, exc: BaseException | None) -> int:
    """Report a failure: one line on stderr, and a JSON error object on stdout with --json."""
    print(f"replikit: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        error = {"ok": False, "error": message, "error_type": type(exc).__name__ if exc else None}
        try:
            print(json.dumps({**error, "exit_status": status}, indent=2))
        except BrokenPipeError:
            return _broken_pipe()
    return status


def _broken_pipe() -> int:
    """Whoever read stdout stopped (``| head``): no traceback, no second error at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    print("replikit: output stopped: stdout was closed (broken pipe)", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

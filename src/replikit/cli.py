"""The ``replikit`` command line.

Exit codes: 0 success; 1 the task ran and some tables failed; 2 bad input or an unreachable
endpoint (a :class:`replikit.Error` before any data moved), printed without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from replikit import __version__
from replikit.errors import Error, TaskError
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
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replikit", description="Move and replicate databases: full load, plan, demo."
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
    copy.add_argument("--no-progress", action="store_true", help="never show a progress line")

    plan = sub.add_parser("plan", help="show the target DDL and the conversion assessment")
    _add_endpoints(plan)
    plan.add_argument("--ddl", action="store_true", help="also print the target DDL")

    demo = sub.add_parser("demo", help="copy a bundled sample database, SQLite to SQLite")
    demo.add_argument("--dir", help="where to put the demo databases (default: a temp dir)")
    return parser


def _task(args: argparse.Namespace, settings: TaskSettings | None = None) -> Task:
    mappings = Mappings(selection=Selection(tuple(args.include), tuple(args.exclude)))
    return Task(args.source, args.target, mappings=mappings, settings=settings)


def _cmd_copy(args: argparse.Namespace) -> int:
    settings = TaskSettings(
        target_table_prep_mode=args.prep,
        parallel_tables=args.parallel,
        split_rows=args.split_rows,
        allow_lossy=not args.strict,
        progress=False if (args.no_progress or args.json) else None,
    )
    task = _task(args, settings)
    status = 0
    error: str | None = None
    try:
        task.run()
    except TaskError as exc:
        status, error = 1, str(exc)
    stats = task.statistics()
    if args.json:
        out: dict[str, Any] = {
            "ok": status == 0,
            "tables": stats.as_dicts(),
            "rows": stats.total_rows,
            "error": error,
        }
        print(json.dumps(out, indent=2))
    else:
        print(stats)
        print(f"{len(stats)} tables, {stats.total_rows:,} rows")
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from replikit.demo import run_demo

    return run_demo(args.dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    commands = {"copy": _cmd_copy, "plan": _cmd_plan, "demo": _cmd_demo}
    try:
        return commands[args.command](args)
    except Error as exc:
        print(f"replikit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("replikit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

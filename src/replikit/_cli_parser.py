"""The ``replikit`` command's argument parser: every command, option and help text.

Options that set a :class:`~replikit.TaskSettings` field default to ``None`` (not given), so
the command line overrides ``REPLIKIT_*`` environment variables only where a flag is given.
``-v`` / ``-q`` are accepted before and after the command (two ``dest`` s, summed by the
caller, because a subparser's defaults would overwrite the main parser's values).
"""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import MISSING, fields
from typing import Any

from replikit import __version__
from replikit.pipeline.choices import PREP_MODES, STREAM_GC
from replikit.positions import FORMATS
from replikit.settings import ENV_PREFIX, TaskSettings

__all__ = ["SETTING_FLAGS", "parser"]

#: TaskSettings field -> the flag that sets it (errors name the flag).
SETTING_FLAGS = {
    "target_table_prep_mode": "--prep",
    "parallel_tables": "--parallel",
    "split_rows": "--split-rows",
    "allow_lossy": "--strict",
    "type_overrides": "--type",
    "progress": "--no-progress",
    "task_id": "--task-id",
    "batch_apply": "--batch-apply",
    "cdc_start_position": "--start-position",
    "cdc_stop_position": "--stop-position",
    "stop_when_idle": "--stop-when-idle",
    "schema_change_policy": "--schema-changes",
    "standby": "--standby",
    "lease_seconds": "--lease-seconds",
    "stream_gc": "--stream-gc",
}

URLS = """\
URLs:
  postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=require&connect_timeout=10]
      also postgres://, and SQLAlchemy's postgresql+psycopg2:// +psycopg +asyncpg +pg8000
  mysql://USER[:PASSWORD]@HOST[:PORT]/DB[?ssl_mode=REQUIRED]   (MySQL 8.0+, MariaDB 10.5+)
      also mariadb://, mysql+pymysql:// +mysqldb +mysqlconnector, mariadb+...
  sqlite:///relative.db  sqlite:////absolute/path.db  (or a path ending in .db/.sqlite)
      also sqlite+pysqlite://
  A URL without a password takes it from the engine's usual places: PGPASSWORD or
  ~/.pgpass (PostgreSQL); MYSQL_PWD or the [client] section of ~/.my.cnf (MySQL).
  SRC_URL and DST_URL default to $REPLIKIT_SOURCE_URL and $REPLIKIT_TARGET_URL."""

PATTERNS = """\
patterns (--include/--exclude): schema.table with % as a wildcard, or a table name alone
  PostgreSQL: public.% or %.orders   MySQL: shop.% (the schema is the database)
  SQLite: Album, A% or % (SQLite has no schemas; main.% means every table)"""

EXIT = """\
exit status:
  0    success
  1    the task ran and some tables failed or are suspended (the summary names each
       with its cause; the other tables completed), or an unexpected error
  2    nothing was done: bad input, an unreachable endpoint, a refused login or an
       unsupported plan; or the task stopped on an error that is not one table's (a lost
       position, a revoked privilege, retries run out, --data-errors stop-task): what was
       applied stays with its checkpoint; fix the cause and run again to resume
  130  stopped by Ctrl-C or SIGTERM (the statistics show what was done)"""

ENVIRONMENT = f"""\
environment:
  REPLIKIT_SOURCE_URL, REPLIKIT_TARGET_URL   SRC_URL and DST_URL when they are omitted
  {ENV_PREFIX}<SETTING>   any TaskSettings field, e.g. REPLIKIT_PARALLEL_TABLES=8,
      REPLIKIT_TARGET_TABLE_PREP_MODE=truncate; a flag given on the line wins"""

EXAMPLES = {
    "copy": """\
examples:
  replikit copy sqlite:///chinook.db postgresql://app@db/shop
  replikit copy mysql://app@db1/shop postgresql://app@db2/shop --include 'shop.%' \\
      --exclude 'shop.audit_%' --rename-schema shop=public --parallel 8
  REPLIKIT_SOURCE_URL=sqlite:///a.db REPLIKIT_TARGET_URL=sqlite:///b.db replikit copy --json""",
    "plan": """\
examples:
  replikit plan mysql://app@db1/shop postgresql://app@db2/shop
  replikit plan sqlite:///chinook.db postgresql://app@db/shop --ddl
  replikit plan sqlite:///chinook.db sqlite:///out.db --json | jq .summary""",
    "replicate": """\
examples:
  replikit replicate postgresql://app@db1/shop postgresql://app@db2/shop
  replikit replicate mysql://app@db1/shop sqlite:///shop.db --batch-apply --task-id shop
  replikit replicate sqlite:///app.db sqlite:///copy.db --cdc-setup --stop-when-idle 5
  replikit replicate postgresql://app@db1/shop sqlite:///s.db --mode cdc \\
      --stop-position server_time:2025-01-31T12:00:00+00:00
Ctrl-C stops gracefully (the batch finishes, its checkpoint commits); run the same command
again to resume.""",
    "validate": """\
examples:
  replikit validate sqlite:///chinook.db postgresql://app@db/shop
  replikit validate mysql://app@db1/shop postgresql://app@db2/shop --include 'shop.orders%' --json
  replikit validate mysql://app@db1/shop postgresql://app@db2/shop --rename-schema shop=public \\
      --fix
  replikit validate postgresql://app@db1/shop postgresql://app@db2/shop --sample 5%
  replikit validate mysql://app@db1/shop postgresql://app@db2/shop --recheck --task-id shop""",
    "reload": """\
examples:
  replikit reload postgresql://app@db1/shop postgresql://app@db2/shop --table public.orders
  replikit reload mysql://app@db1/shop sqlite:///shop.db --table orders --task-id shop""",
    "drop": """\
examples:
  replikit drop postgresql://app@db1/shop postgresql://app@db2/shop --task-id shop""",
    "cdc-setup": """\
examples:
  replikit cdc-setup sqlite:///app.db --include 'orders%'
  replikit cdc-setup postgresql://app@db1/shop --task-id shop""",
    "run": """\
examples:
  replikit run task.yaml
  PG_PASSWORD=... replikit run shop.toml --json
  replikit plan --task task.yaml --ddl       (plan, copy, replicate, validate take --task too)""",
    "status": """\
examples:
  replikit status postgresql://app@db1/shop postgresql://app@db2/shop
  replikit status --task-id shop --target postgresql://app@db2/shop --json
  replikit status --task-id shop --target sqlite:///shop.db --watch 5
Reads the task's control rows in the target (replikit_status, replikit_history,
replikit_checkpoints, replikit_suspended_tables, replikit_apply_exceptions): works with the
task running or stopped.""",
    "demo": """\
examples:
  replikit demo
  replikit demo --dir ./demo --no-cdc""",
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout (examples, tables); wraps the description."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=96)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:  # laid out by hand
            return super()._fill_text(text, width, indent)
        return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent)


def _default(setting: str) -> Any:
    f = next(f for f in fields(TaskSettings) if f.name == setting)
    return f.default if f.default is not MISSING else None


def _split_rows(text: str) -> int | str:
    """``--split-rows``: a number of rows, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of rows or auto, got {text!r}"
        ) from None


def _setting_help(text: str, setting: str, *, show_default: bool = True) -> str:
    """``text`` plus the default and the environment variable of ``setting``."""
    env = ENV_PREFIX + setting.upper()
    if not show_default:
        return f"{text} (environment: {env})"
    default = _default(setting)
    shown = f"{default:_}".replace("_", ",") if isinstance(default, int) else default
    return f"{text} (default: {shown}; environment: {env})"


def _verbosity(p: argparse.ArgumentParser, suffix: str) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest="verbose" + suffix,
        help="log what happens (-v: connections, planning, tables; -vv: also batches)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        dest="quiet" + suffix,
        help="print only errors (and the --json result)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        dest="log_format" + suffix,
        help="log records on stderr as text (default) or one JSON object per line, with "
        "the task and table they are about",
    )


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _verbosity(common, "_sub")
    return common


def _epilog(command: str, *parts: str) -> str:
    return "\n\n".join((EXAMPLES[command], *parts))


def _urls(p: argparse.ArgumentParser, *, target: bool = True) -> None:
    p.add_argument(
        "source",
        metavar="SRC_URL",
        nargs="?",
        help="source URL, e.g. postgresql://user@host/db (default: $REPLIKIT_SOURCE_URL)",
    )
    if target:
        p.add_argument(
            "target",
            metavar="DST_URL",
            nargs="?",
            help="target URL, e.g. sqlite:///out.db (default: $REPLIKIT_TARGET_URL)",
        )


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="tables to include, schema.table with %% as wildcard (repeatable; default: all)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="tables to leave out, same form (repeatable)",
    )


def _task_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        metavar="FILE",
        help="read the source and target URLs, migration type, mappings and settings from a "
        "task file (YAML, or TOML for a .toml name; docs/task-files.md); URLs and flags given "
        "here win over it",
    )


def _mapping_options(p: argparse.ArgumentParser) -> None:
    _task_option(p)
    _selection(p)
    for flag, metavar, text in (
        ("--rename-schema", "SRC=DST", "put the tables of source schema SRC into schema DST"),
        ("--rename-table", "SRC=DST", "create source table SRC (schema.table or table) as DST"),
        (
            "--rename-column",
            "SCHEMA.TABLE.COLUMN=NEW",
            "create a source column under the name NEW in its target table",
        ),
    ):
        help_text = text + " (repeatable)"
        p.add_argument(flag, action="append", default=[], metavar=metavar, help=help_text)
    p.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="SCHEMA.TABLE.COLUMN=TYPE",
        help="create a column with this native target type, e.g. main.t.amount=text "
        "(repeatable; environment: REPLIKIT_TYPE_OVERRIDES as a JSON object)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _load_options(p: argparse.ArgumentParser, *, what: str) -> None:
    p.add_argument(
        "--prep",
        choices=PREP_MODES,
        help=_setting_help(
            f"what {what} does with existing target tables", "target_table_prep_mode"
        ),
    )
    p.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help=_setting_help("table parts loaded at once", "parallel_tables"),
    )
    p.add_argument(
        "--split-rows",
        type=_split_rows,
        metavar="N|auto",
        help=_setting_help(
            "split tables above N rows into key ranges of about N rows; auto: above 250,000 "
            "rows, and into PostgreSQL into no more ranges than can load at once",
            "split_rows",
        ),
    )
    p.add_argument(
        "--strict",
        action="store_false",
        dest="allow_lossy",
        default=None,
        help=_setting_help(
            "refuse to run when any column converts lossily", "allow_lossy", show_default=False
        ),
    )
    p.add_argument(
        "--data-errors",
        choices=("suspend-table", "skip-row", "stop-task"),
        help="a value the target refuses: suspend its table (default), set the row aside in "
        "replikit_apply_exceptions, or stop the task (environment: REPLIKIT_ERROR_POLICY as "
        "a JSON object)",
    )
    p.add_argument(
        "--apply-conflicts",
        choices=("converge", "log", "stop"),
        help="a CDC change that finds the target row otherwise than the source had it: make "
        "the row match (default), also record it in replikit_apply_exceptions, or suspend "
        "the table",
    )
    p.add_argument(
        "--retry-timeout",
        type=float,
        metavar="SECONDS",
        help="keep retrying a lost connection, a restart or a deadlock for SECONDS "
        "(default: 300; 0 never retries)",
    )
    p.add_argument(
        "--no-progress",
        action="store_false",
        dest="progress",
        default=None,
        help="no live progress on stderr (default: live in a terminal, plain lines in a "
        "pipe; with --json only in a terminal; environment: REPLIKIT_PROGRESS)",
    )


def _add_copy(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "copy",
        parents=[common],
        formatter_class=_Formatter,
        help="full load: copy tables from SRC_URL to DST_URL",
        description="Full load: create the selected tables in the target (converting their "
        "types; see 'replikit plan') and copy every row.",
        epilog=_epilog("copy", URLS, PATTERNS, EXIT, ENVIRONMENT),
    )
    _urls(p)
    _mapping_options(p)
    _load_options(p, what="the copy")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the tables and key ranges on the workers of the Dask cluster whose "
        "scheduler is at ADDRESS (tcp://host:8786); needs replikit[dask]",
    )


def _add_plan(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "plan",
        parents=[common],
        formatter_class=_Formatter,
        help="show the target DDL and the conversion assessment (moves no data)",
        description="Dry run: reflect the source, convert every column and list what is "
        "exact, lossy (with the reason) or unsupported. Nothing is created.",
        epilog=_epilog("plan", URLS, PATTERNS, "exit status: 0 planned, 2 bad input"),
    )
    _urls(p)
    _mapping_options(p)
    p.add_argument("--ddl", action="store_true", help="also print the target DDL")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write the plan as an HTML report (assessment, schema objects, DDL) to FILE",
    )


def _add_replicate(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "replicate",
        parents=[common],
        formatter_class=_Formatter,
        help="full load + change data capture (or CDC only) until stopped; resumable",
        description="Copy the tables, then apply every change made on the source (change "
        "data capture) until Ctrl-C or a stop condition. The checkpoint lives in the target, "
        "so running the same command again resumes.",
        epilog=_epilog("replicate", URLS, PATTERNS, f"positions: {FORMATS}", EXIT, ENVIRONMENT),
    )
    _urls(p)
    _mapping_options(p)
    _load_options(p, what="the full load")
    p.add_argument(
        "--mode",
        choices=("full-load-and-cdc", "cdc"),
        default=None,
        help="full-load-and-cdc (default) or cdc (changes from now on only)",
    )
    p.add_argument(
        "--batch-apply",
        action="store_true",
        default=None,
        help=_setting_help(
            "apply the net change per key of each batch in bulk (fast) instead of every "
            "change in source order",
            "batch_apply",
        ),
    )
    p.add_argument(
        "--stop-when-idle",
        type=float,
        metavar="SECONDS",
        help=_setting_help(
            "stop after SECONDS without a source transaction", "stop_when_idle", show_default=False
        ),
    )
    p.add_argument(
        "--standby",
        action="store_true",
        default=None,
        help=_setting_help(
            "run under a lease in the target: start this command on several machines; one "
            "replicates, the others stand by and take over when it dies "
            "(docs/high-availability.md)",
            "standby",
            show_default=False,
        ),
    )
    p.add_argument(
        "--lease-seconds",
        type=float,
        metavar="SECONDS",
        help=_setting_help(
            "with --standby: how long the lease lasts unrenewed (the takeover time)",
            "lease_seconds",
        ),
    )
    p.add_argument(
        "--task-id",
        help=_setting_help(
            "names the task's checkpoint and source objects (default: derived from the URLs)",
            "task_id",
            show_default=False,
        ),
    )
    p.add_argument(
        "--start-position",
        metavar="POS",
        help=_setting_help(
            "--mode cdc, first run: start at POS (e.g. pg:0/1A2B3C) instead of now",
            "cdc_start_position",
            show_default=False,
        ),
    )
    p.add_argument(
        "--stop-position",
        metavar="POS",
        help=_setting_help(
            "stop once POS (a position, or server_time:<ISO 8601>) is applied",
            "cdc_stop_position",
            show_default=False,
        ),
    )
    p.add_argument(
        "--schema-changes",
        choices=("apply", "stop-table", "ignore"),
        help=_setting_help(
            "a source table's schema change: follow it, suspend the table, or ignore it",
            "schema_change_policy",
        ),
    )
    p.add_argument(
        "--stream-gc",
        choices=STREAM_GC,
        help=_setting_help(
            "Python's garbage collector while changes stream: managed (off, and replikit "
            "collects every 5 s between batches: faster on a backlog) or python (left as the "
            "program set it); docs/cdc.md",
            "stream_gc",
        ),
    )
    p.add_argument(
        "--cdc-setup",
        action="store_true",
        help="SQLite source: install the change triggers replikit needs (opt-in)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve Prometheus metrics at :N/metrics and a status page at :N/ while running "
        "(0: a free port, printed on stderr; needs replikit[metrics])",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address the metrics port listens on (default: 127.0.0.1; 0.0.0.0 for all)",
    )


VALIDATE_EXIT = """\
exit status:
  0    every table validated (after --fix: every difference repaired)
  1    differences were found (the report names the rows); after --fix, some remain;
       with --recheck, rows still in flight (pending) when validation ended
  2    a table could not be compared (missing on one side, a key or column that does not
       match the plan), or bad input or an unreachable endpoint"""


def _add_validate(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "validate",
        parents=[common],
        formatter_class=_Formatter,
        help="prove the target holds the source's rows, row by row; --fix repairs",
        description="Compare every selected table of SRC_URL with its copy in DST_URL, "
        "through the same mappings a copy uses (renames, type conversions): rows missing on "
        "either side and rows whose values differ, with the columns. Differences are kept in "
        "the target's replikit_validation_failures table; --fix re-copies exactly those rows.",
        epilog=_epilog("validate", URLS, PATTERNS, VALIDATE_EXIT, ENVIRONMENT),
    )
    _urls(p)
    _mapping_options(p)
    p.add_argument(
        "--fix",
        action="store_true",
        help="re-copy the differing rows from the source (insert, update, delete by key), "
        "then validate them again",
    )
    p.add_argument(
        "--sample",
        metavar="N%",
        help="compare about N%% of the keys (chosen by a hash of the key), e.g. 10%%",
    )
    p.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help=_setting_help("tables compared at once", "parallel_tables"),
    )
    p.add_argument(
        "--recheck",
        action="store_true",
        help="beside a live CDC task (--task-id): read differing rows again once the task "
        "has applied the source's changes up to where the source was; only rows that still "
        "differ are reported",
    )
    p.add_argument(
        "--recheck-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="with --recheck: how long to wait for the task to catch up (default: 120)",
    )
    p.add_argument(
        "--task-id",
        help="with --recheck: the id of the task that replicates SRC_URL into DST_URL "
        "(default: derived from the URLs)",
    )


def _add_run(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        formatter_class=_Formatter,
        help="run the task a task file describes (YAML or TOML)",
        description="Run a task file: source and target URLs (${ENV_VAR} replaced, for "
        "secrets), migration type, mappings (rules or a DMS table-mapping file) and settings. "
        "The file is checked before anything connects; an error gives the file, the line and "
        "the key. A full-load task runs as 'replikit copy', the others as 'replikit replicate'.",
        epilog=_epilog("run", EXIT, ENVIRONMENT),
    )
    p.add_argument("taskfile", metavar="TASKFILE", help="the task file (.yaml, .yml or .toml)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--no-progress",
        action="store_false",
        dest="progress",
        default=None,
        help="no live progress on stderr",
    )


def _add_drop(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "drop",
        parents=[common],
        formatter_class=_Formatter,
        help="remove a task's slot, publication, triggers and control rows",
        description="Remove what 'replikit replicate' created: the source's replication slot "
        "and publication (PostgreSQL) or change triggers (SQLite), and the task's control rows "
        "in the target. The target's tables and data stay.",
        epilog=_epilog("drop", URLS, EXIT),
    )
    _urls(p)
    p.add_argument("--task-id", help="the task's id (default: derived from the URLs)")


def _add_status(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "status",
        parents=[common],
        formatter_class=_Formatter,
        help="show a task's state, tables, lag, errors and exceptions (running or stopped)",
        description="Show what a replication task's control tables in the target say: its "
        "state and phase, positions and latency, each table's state and counts, suspended "
        "tables, apply exceptions, the last error and recent history.",
        epilog=_epilog("status", URLS, "exit status: 0 shown, 2 no such task or bad input"),
    )
    _urls(p)
    p.add_argument("--task-id", help="the task's id (default: derived from SRC_URL and DST_URL)")
    p.add_argument(
        "--target",
        dest="target_url",
        metavar="URL",
        help="the task's target, with --task-id (instead of SRC_URL DST_URL)",
    )
    p.add_argument(
        "--control-url",
        metavar="URL",
        help="where the task keeps replikit_status and replikit_history, when not in the "
        "target (TaskSettings.control_url; environment: REPLIKIT_CONTROL_URL)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="show it again every SECONDS (default 2) until Ctrl-C",
    )


def _add_reload(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "reload",
        parents=[common],
        formatter_class=_Formatter,
        help="load one table of a replication task again (e.g. a suspended one)",
        description="Load one source table into the target again and lift its suspension "
        "(see docs/operations.md). A 'replikit replicate' of the same task that is running "
        "notices within seconds and reloads the table beside its stream, without a gap; "
        "otherwise the next run applies the table's changes from the task's checkpoint on.",
        epilog=_epilog("reload", URLS, EXIT),
    )
    _urls(p)
    _mapping_options(p)
    p.add_argument("--table", required=True, help="the source table, e.g. public.orders")
    p.add_argument("--task-id", help="the task's id (default: derived from the URLs)")
    p.add_argument(
        "--prep",
        choices=PREP_MODES,
        help=_setting_help("what the reload does with the target table", "target_table_prep_mode"),
    )


def _add_cdc_setup(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "cdc-setup",
        parents=[common],
        formatter_class=_Formatter,
        help="check a source for CDC and create what it needs (SQLite: triggers)",
        description="Check that the source can feed change data capture (settings, "
        "privileges, keys) and create what it needs: the publication (PostgreSQL) or the "
        "change table and triggers (SQLite).",
        epilog=_epilog("cdc-setup", URLS, PATTERNS, EXIT),
    )
    _urls(p, target=False)
    _selection(p)
    p.add_argument("--task-id", default="default", help="names the source objects")


def _add_demo(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        formatter_class=_Formatter,
        help="copy a bundled sample database, SQLite to SQLite (no server needed)",
        description="Copy the bundled Chinook sample database to a new SQLite file, verify "
        "it, then change the source and watch CDC apply the changes.",
        epilog=EXAMPLES["demo"],
    )
    p.add_argument(
        "--dir",
        help="keep the demo databases in DIR (default: a temporary folder, removed at the end)",
    )
    p.add_argument("--no-cdc", action="store_true", help="full load only, no live CDC part")


def parser() -> argparse.ArgumentParser:
    """The ``replikit`` argument parser."""
    main = argparse.ArgumentParser(
        prog="replikit",
        formatter_class=_Formatter,
        description="Move and replicate databases: full load, change data capture, plan, "
        "validate, demo. 'replikit COMMAND -h' explains a command, with examples.",
        epilog="\n\n".join((URLS, EXIT, ENVIRONMENT)),
    )
    main.add_argument("--version", action="version", version=f"replikit {__version__}")
    _verbosity(main, "")
    sub = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    for add in (
        _add_copy,
        _add_plan,
        _add_replicate,
        _add_validate,
        _add_run,
        _add_status,
        _add_reload,
        _add_drop,
        _add_cdc_setup,
        _add_demo,
    ):
        add(sub, common)
    return main

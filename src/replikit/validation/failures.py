"""The ``replikit_validation_failures`` table in the target (DMS's
``awsdms_validation_failures_v1``): one row per differing row of the last validation of each
table, replaced on every run for that table, in one target transaction.

Columns: ``id`` (a hash of task, table, key and failure type), ``task_id``, ``table_name``
(the target table), ``source_table``, ``row_key`` (the key as a JSON object; every column for
a table without a key), ``failure_type`` (``RECORD_DIFF`` / ``MISSING_TARGET`` /
``MISSING_SOURCE``), ``failure_columns`` (JSON list), ``details`` (JSON: the source and target
values, and ``count`` for repeated rows of a keyless table) and ``detected_at`` (UTC).

It lives in the ``replikit`` schema where the target has schemas (PostgreSQL, DuckDB, as the
other control tables), beside the data elsewhere (MySQL: the database; SQLite: the file).
Like the other control tables, reflection does not list it as user data.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from replikit.endpoints.base import Endpoint
from replikit.pipeline.control import FLAVORS
from replikit.positions import Position
from replikit.validation._sql import Session, session
from replikit.validation.report import RowDifference, TableValidation, jsonable

__all__ = ["FAILURES_TABLE", "NO_POSITION", "read_failures", "record_failures"]

log = logging.getLogger("replikit.validate")

FAILURES_TABLE = "replikit_validation_failures"
_FAMILIES = ("postgres", "mysql", "sqlite", "duckdb")
_COLUMNS = (
    "id",
    "task_id",
    "table_name",
    "source_table",
    "row_key",
    "failure_type",
    "failure_columns",
    "details",
    "detected_at",
)
_TYPES = {
    "postgres": ("varchar(64)", "varchar(500)", "text", "timestamptz"),
    "duckdb": ("VARCHAR", "VARCHAR", "VARCHAR", "TIMESTAMPTZ"),
    "mysql": ("VARCHAR(64)", "VARCHAR(500)", "LONGTEXT", "DATETIME(6)"),
    "sqlite": ("TEXT", "TEXT", "TEXT", "TEXT"),
}


def _name(s: Session) -> str:
    table = s.quote(FAILURES_TABLE)
    return f"replikit.{table}" if s.family in ("postgres", "duckdb") else table


def _create(s: Session) -> list[str]:
    ident, name, text, ts = _TYPES[s.family]
    columns = (
        f"id {ident} NOT NULL PRIMARY KEY, task_id {name} NOT NULL, table_name {name} NOT NULL, "
        f"source_table {name} NOT NULL, row_key {text} NOT NULL, failure_type {ident} NOT NULL, "
        f"failure_columns {text}, details {text}, detected_at {ts} NOT NULL"
    )
    flavor = FLAVORS.get(s.family)
    preamble = flavor.preamble() if flavor is not None else []  # lock and schema
    return [*preamble, f"CREATE TABLE IF NOT EXISTS {_name(s)} ({columns})"]


def _row(task_id: str, table: TableValidation, diff: RowDifference, at: Any) -> tuple[Any, ...]:
    key = json.dumps(diff.key_json(), sort_keys=True, ensure_ascii=False)
    ident = hashlib.sha256(
        f"{task_id}\x1f{table.target}\x1f{key}\x1f{diff.type}".encode()
    ).hexdigest()
    details: dict[str, Any] = {}
    if diff.source is not None:
        details["source"] = {k: jsonable(v) for k, v in diff.source.items()}
    if diff.target is not None:
        details["target"] = {k: jsonable(v) for k, v in diff.target.items()}
    if diff.count != 1:
        details["count"] = diff.count
    columns = json.dumps(list(diff.columns)) if diff.columns else None
    details_text = json.dumps(details, ensure_ascii=False)
    return (ident, task_id, table.target, table.source, key, diff.type.value, columns,
            details_text, at)  # fmt: skip


def _begin(s: Session) -> None:
    if s.family in ("sqlite", "duckdb"):
        s.conn.execute("BEGIN")


def record_failures(target: Endpoint, task_id: str, tables: Sequence[TableValidation]) -> bool:
    """Replace the failure rows of ``tables`` (those compared) with their differences.

    Returns False when the target keeps no failures table (not a SQL target).
    """
    compared = [t for t in tables if t.state in ("validated", "mismatched", "pending")]
    if not compared or target.family not in _FAMILIES:
        return False
    with session(target) as s:
        cur = s.conn.cursor()
        for statement in _create(s):
            cur.execute(statement)
        if s.family in ("postgres", "mysql"):
            s.conn.commit()
        now = datetime.now(UTC)
        at: Any = now.replace(tzinfo=None) if s.family == "mysql" else now
        if s.family == "sqlite":
            at = now.isoformat()
        rows = {}
        for table in compared:
            for diff in table.rows:
                row = _row(task_id, table, diff, at)
                rows[row[0]] = row
        _begin(s)
        try:
            marks = ", ".join(["%s"] * len(compared))
            cur.execute(
                s.sql(f"DELETE FROM {_name(s)} WHERE task_id = %s AND table_name IN ({marks})"),  # noqa: S608
                [task_id, *(t.target for t in compared)],
            )
            if rows:
                insert = s.sql(
                    f"INSERT INTO {_name(s)} ({', '.join(_COLUMNS)}) "  # noqa: S608
                    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
                )
                cur.executemany(insert, list(rows.values()))
            if s.family in ("sqlite", "duckdb"):
                s.conn.execute("COMMIT")
            else:
                s.conn.commit()
        except BaseException:
            if s.family in ("sqlite", "duckdb"):
                s.conn.execute("ROLLBACK")
            else:
                s.conn.rollback()
            raise
    log.info("%s: %d failure rows for %d tables", FAILURES_TABLE, len(rows), len(compared))
    return True


def read_failures(target: Endpoint, task_id: str | None = None) -> list[dict[str, Any]]:
    """The rows of the failures table (of ``task_id`` only when given), as dicts."""
    with session(target) as s:
        cur = s.conn.cursor()
        sql = f"SELECT {', '.join(_COLUMNS)} FROM {_name(s)}"  # noqa: S608
        params: list[Any] = []
        if task_id is not None:
            sql += s.sql(" WHERE task_id = %s")
            params.append(task_id)
        cur.execute(sql + " ORDER BY table_name, failure_type, row_key", params)
        return [dict(zip(_COLUMNS, r, strict=True)) for r in cur.fetchall()]


class _NoPosition(Position):
    """The position of a transaction that comes from no source log (a repair); it is never
    stored (these transactions commit without a checkpoint)."""

    def _key(self) -> Any:
        return 0

    def _text(self) -> str:
        return "none"

    @classmethod
    def _from_text(cls, text: str) -> Position:
        return cls()

    def __str__(self) -> str:
        return "none"


NO_POSITION: Position = _NoPosition()

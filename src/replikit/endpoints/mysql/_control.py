"""The control table in a MySQL/MariaDB target: ``replikit_checkpoints`` (task checkpoints).

MySQL has no schemas inside a database, so the table lives in the target URL's database next to
the replicated tables, one row per task (the columns of the PostgreSQL control table).
Positions are stored as ``str(position)`` and read back with :meth:`Position.parse`; ``loaded``
is a JSON array of source table names; ``commit_ts`` and ``updated_at`` are UTC
``DATETIME(6)`` values (``TIMESTAMP`` ends in 2038).

MySQL commits implicitly before every DDL statement, so the table is never created or dropped
inside a transaction that holds data: :func:`ensure` runs before an apply writes anything, and
:func:`drop` commits the deletion of the task's row before it drops the empty table under
``LOCK TABLES ... WRITE`` (no other task can add a row between the check and the drop).
:func:`write` and :func:`read` run inside the caller's transaction and neither commit nor roll
back, so a checkpoint commits with the data it covers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from replikit.endpoints.mysql._connect import connect
from replikit.endpoints.mysql._params import ConnParams
from replikit.pipeline.apply_support import checkpoint_from_row, checkpoint_values
from replikit.pipeline.contracts import Checkpoint

__all__ = ["TABLE", "drop", "ensure", "exists", "read", "session", "write"]

TABLE = "replikit_checkpoints"
_LOCK = "replikit.control"  # GET_LOCK name shared by every replikit writer of a server
_CREATE = f"""CREATE TABLE IF NOT EXISTS `{TABLE}` (
  task VARCHAR(255) NOT NULL PRIMARY KEY,
  start_position TEXT NULL,
  position TEXT NULL,
  phase VARCHAR(16) NOT NULL,
  loaded LONGTEXT NOT NULL,
  commit_ts DATETIME(6) NULL,
  updated_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""
_UPSERT = (
    f"INSERT INTO `{TABLE}` "  # noqa: S608 - constant identifiers, bound values
    "(task, start_position, position, phase, loaded, commit_ts, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE "
    "start_position = VALUES(start_position), position = VALUES(position), "
    "phase = VALUES(phase), loaded = VALUES(loaded), commit_ts = VALUES(commit_ts), "
    "updated_at = VALUES(updated_at)"
)
_SELECT = (
    "SELECT start_position, position, phase, loaded, commit_ts "  # noqa: S608
    f"FROM `{TABLE}` WHERE task = %s"
)
_EXISTS = (
    "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
)


def exists(cur: Any) -> bool:
    """Whether the checkpoints table exists in the connection's database."""
    cur.execute(_EXISTS, (TABLE,))
    return bool(cur.fetchall())


def ensure(conn: Any) -> None:
    """Create the table when missing. Commits (DDL): call before writing any data."""
    with conn.cursor() as cur:
        if exists(cur):
            return
        cur.execute("SELECT GET_LOCK(%s, 60)", (_LOCK,))
        cur.fetchall()
        try:
            cur.execute(_CREATE)
        finally:
            cur.execute("SELECT RELEASE_LOCK(%s)", (_LOCK,))
            cur.fetchall()
    conn.commit()


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None or ts.tzinfo is None:
        return ts
    return ts.astimezone(UTC).replace(tzinfo=None)


def write(cur: Any, checkpoint: Checkpoint) -> None:
    """Upsert ``checkpoint`` (the table must exist: :func:`ensure` first)."""
    *values, commit_ts = checkpoint_values(checkpoint)
    cur.execute(_UPSERT, (*values, _utc(commit_ts)))
    if checkpoint.report is not None:  # the task's status, in the same transaction
        checkpoint.report.write(cur, "mysql")


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes | bytearray) else value


def read(cur: Any, task: str) -> Checkpoint | None:
    """The stored checkpoint of ``task``; ``None`` when the table or the row is missing."""
    if not exists(cur):
        return None
    cur.execute(_SELECT, (task,))
    rows = cur.fetchall()
    if not rows:
        return None
    *values, commit_ts = (_text(v) for v in rows[0])
    commit_ts = None if commit_ts is None else commit_ts.replace(tzinfo=UTC)
    return checkpoint_from_row(task, (*values, commit_ts), table=TABLE)


def drop(conn: Any, task: str) -> None:
    """Delete ``task``'s row; drop the table when no task is left (commits)."""
    with conn.cursor() as cur:
        if not exists(cur):
            conn.commit()
            return
        cur.execute(f"DELETE FROM `{TABLE}` WHERE task = %s", (task,))  # noqa: S608
        conn.commit()
        cur.execute(f"LOCK TABLES `{TABLE}` WRITE")
        try:
            cur.execute(f"SELECT 1 FROM `{TABLE}` LIMIT 1")  # noqa: S608
            if not cur.fetchall():
                cur.execute(f"DROP TABLE `{TABLE}`")
        finally:
            cur.execute("UNLOCK TABLES")
    conn.commit()


@contextmanager
def session(params: ConnParams) -> Iterator[Any]:
    """A connection in one transaction for :mod:`replikit.pipeline.control` (committed at the
    end of the block, rolled back when it raises, then closed)."""
    conn = connect(params)
    try:
        yield conn
        conn.commit()
    except BaseException:
        with suppress(Exception):
            conn.rollback()
        raise
    finally:
        conn.close()

"""The ``replikit`` control schema in a PostgreSQL target: task checkpoints.

``replikit.replikit_checkpoints`` holds one row per task. Positions are stored as
``str(position)`` and read back with :meth:`Position.parse`; ``loaded`` is a JSON array of
source table names. Every function runs inside the caller's transaction and neither commits nor
rolls back, so :meth:`PostgresChangeWriter.apply` can commit a checkpoint with the data it
covers. Creating and dropping the control objects takes a transaction-scoped advisory lock, so
two tasks sharing a target do not race on ``CREATE TABLE IF NOT EXISTS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from replikit.endpoints.base import require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402

from replikit.endpoints.postgres._connect import Connection, connect  # noqa: E402
from replikit.endpoints.postgres._params import ConnParams  # noqa: E402
from replikit.pipeline.apply_support import checkpoint_from_row, checkpoint_values  # noqa: E402
from replikit.pipeline.contracts import Checkpoint  # noqa: E402
from replikit.pipeline.control import PG_CONTROL_LOCK  # noqa: E402

__all__ = ["SCHEMA", "TABLE", "drop", "ensure", "exists", "read", "session", "write"]

SCHEMA = "replikit"
TABLE = "replikit.replikit_checkpoints"
_LOCK = PG_CONTROL_LOCK  # the same for every replikit writer and control object
_CREATE = (
    "CREATE SCHEMA IF NOT EXISTS replikit",
    """CREATE TABLE IF NOT EXISTS replikit.replikit_checkpoints (
    task text PRIMARY KEY,
    start_position text,
    position text,
    phase text NOT NULL,
    loaded text NOT NULL,
    commit_ts timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
)""",
)
_UPSERT = """
INSERT INTO replikit.replikit_checkpoints AS c
    (task, start_position, position, phase, loaded, commit_ts, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, now())
ON CONFLICT (task) DO UPDATE SET
    start_position = EXCLUDED.start_position, position = EXCLUDED.position,
    phase = EXCLUDED.phase, loaded = EXCLUDED.loaded, commit_ts = EXCLUDED.commit_ts,
    updated_at = EXCLUDED.updated_at
"""
_SELECT = """
SELECT start_position, position, phase, loaded, commit_ts
FROM replikit.replikit_checkpoints WHERE task = %s
"""


def exists(conn: Connection) -> bool:
    """Whether the checkpoints table exists."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    return bool(row and row[0])


def ensure(conn: Connection) -> None:
    """Create the control schema and table when missing."""
    if exists(conn):
        return
    conn.execute(_LOCK)
    for statement in _CREATE:
        conn.execute(statement)


def write(conn: Connection, checkpoint: Checkpoint) -> None:
    """Upsert ``checkpoint`` (the table must exist: call :func:`ensure` first)."""
    conn.execute(_UPSERT, checkpoint_values(checkpoint))
    if checkpoint.report is not None:  # the task's status, in the same transaction
        checkpoint.report.write(conn, "postgres")


def read(conn: Connection, task: str) -> Checkpoint | None:
    """The stored checkpoint of ``task``; ``None`` when the table or the row is missing."""
    if not exists(conn):
        return None
    row = conn.execute(_SELECT, (task,)).fetchone()
    return None if row is None else checkpoint_from_row(task, row, table=TABLE)


def drop(conn: Connection, task: str) -> None:
    """Delete ``task``'s row; drop the table, then the schema, when nothing is left in them."""
    if not exists(conn):
        return
    conn.execute(_LOCK)
    conn.execute("DELETE FROM replikit.replikit_checkpoints WHERE task = %s", (task,))
    left = conn.execute("SELECT EXISTS (SELECT 1 FROM replikit.replikit_checkpoints)").fetchone()
    if left and left[0]:
        return
    conn.execute("DROP TABLE replikit.replikit_checkpoints")
    try:
        with conn.transaction():  # a savepoint: other control tables may still live there
            conn.execute("DROP SCHEMA replikit")
    except psycopg.errors.DependentObjectsStillExist:
        pass


@contextmanager
def session(params: ConnParams) -> Iterator[Connection]:
    """A connection in one transaction for :mod:`replikit.pipeline.control` (committed at the
    end of the block, rolled back when it raises, then closed)."""
    with connect(params) as conn:
        yield conn

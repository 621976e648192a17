"""The ledger of loaded units in a MySQL/MariaDB target: ``replikit_load_units``.

A cluster (Dask) may run a unit twice: a worker that finished a unit and died before its result
reached the client takes the result with it, and the scheduler runs the unit again. Each unit
records ``(load, unit, rows)`` in the transaction that writes its rows, and a unit looks for its
record before writing anything, so its rows are in the target exactly once whatever the
cluster does.

MySQL has no transaction-scoped advisory lock: :func:`done` takes a named lock (``GET_LOCK``)
for the unit, which the server releases when the unit's connection closes, then reads the ledger
in a transaction begun after it holds the lock (so its snapshot holds any earlier run's commit).
A second run of a unit therefore waits for the first one to end, then finds its record. DDL commits
implicitly in MySQL, so :func:`ensure` and :func:`forget` run on their own connections, never in
a unit's transaction.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["TABLE", "done", "ensure", "forget", "record"]

TABLE = "replikit_load_units"
_CREATE = f"""CREATE TABLE IF NOT EXISTS `{TABLE}` (
  load_id VARCHAR(64) NOT NULL,
  unit VARCHAR(255) NOT NULL,
  `rows` BIGINT NOT NULL,
  PRIMARY KEY (load_id, unit)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""


def _key(once: str) -> tuple[str, str]:
    load, _, unit = once.partition("/")
    return load, unit


def _lock_name(once: str) -> str:
    # GET_LOCK names are at most 64 characters: a digest of the unit's key
    return "replikit.unit." + hashlib.sha256(once.encode()).hexdigest()[:48]


def _one(cur: Any, statement: str, params: tuple[Any, ...] = ()) -> Any:
    cur.execute(statement, params)
    rows = cur.fetchall()
    return rows[0] if rows else None


_EXISTS = (
    "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
)


def ensure(conn: Any) -> None:
    """Create the ledger when missing (DDL: commits; ``conn`` holds no data)."""
    with conn.cursor() as cur:
        cur.execute(_CREATE)
    conn.commit()


def done(conn: Any, once: str | None) -> int | None:
    """The rows unit ``once`` wrote, when a run of it committed already; else ``None`` (and
    this connection holds the unit's lock until it closes, so a concurrent run of it waits)."""
    if once is None:
        return None
    load, unit = _key(once)
    with conn.cursor() as cur:
        _one(cur, "SELECT GET_LOCK(%s, -1)", (_lock_name(once),))
        # a new transaction, so its snapshot starts after any earlier run's commit (which came
        # before that run released the unit's lock). Not a locking read: the shared gap locks
        # of two units reading missing records make their INSERTs deadlock
        conn.commit()
        row = _one(
            cur,
            f"SELECT `rows` FROM `{TABLE}` WHERE load_id = %s AND unit = %s",  # noqa: S608
            (load, unit),
        )
    return None if row is None else int(row[0])


def record(conn: Any, once: str | None, rows: int) -> None:
    """Record unit ``once`` as loaded with ``rows`` rows (commits with the unit's rows)."""
    if once is None:
        return
    load, unit = _key(once)
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO `{TABLE}` (load_id, unit, `rows`) VALUES (%s, %s, %s)",  # noqa: S608
            (load, unit, rows),
        )


def forget(conn: Any, load: str) -> None:
    """Delete the rows of ``load``; drop the ledger when no load is left in it (commits).

    The emptiness check and the drop run under ``LOCK TABLES ... WRITE``, so a unit of another
    load cannot record itself in between."""
    with conn.cursor() as cur:
        if _one(cur, _EXISTS, (TABLE,)) is None:
            conn.commit()
            return
        cur.execute(f"DELETE FROM `{TABLE}` WHERE load_id = %s", (load,))  # noqa: S608
        conn.commit()
        cur.execute(f"LOCK TABLES `{TABLE}` WRITE")
        try:
            if _one(cur, f"SELECT 1 FROM `{TABLE}` LIMIT 1") is None:  # noqa: S608
                cur.execute(f"DROP TABLE `{TABLE}`")
        finally:
            cur.execute("UNLOCK TABLES")
    conn.commit()

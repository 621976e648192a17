"""The ledger of loaded units in a PostgreSQL target: ``replikit.replikit_load_units``.

A cluster (Dask) may run a unit twice: a worker that finished a unit and died before its result
reached the client takes the result with it, and the scheduler runs the unit again. Each unit
records ``(load, unit, rows)`` in the transaction that writes its rows, and a unit finds its
record before writing anything, so its rows are in the target exactly once whatever the
cluster does. Every function runs in the caller's transaction.
"""

from __future__ import annotations

from psycopg import sql

from replikit.endpoints.postgres._connect import Connection
from replikit.pipeline.control import PG_CONTROL_LOCK

__all__ = ["TABLE", "done", "ensure", "forget", "record"]

TABLE = "replikit.replikit_load_units"
_LOCK = PG_CONTROL_LOCK  # creating and dropping the ledger: one writer at a time


def _key(once: str) -> tuple[str, str]:
    load, _, unit = once.partition("/")
    return load, unit


def ensure(conn: Connection) -> None:
    """Create the ledger when missing."""
    with conn.transaction():
        conn.execute(_LOCK)
        conn.execute("CREATE SCHEMA IF NOT EXISTS replikit")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (load_id text NOT NULL, unit text NOT NULL, "
            "rows bigint NOT NULL, PRIMARY KEY (load_id, unit))"
        )


def done(conn: Connection, once: str | None) -> int | None:
    """The rows unit ``once`` wrote, when a run of it committed already; else ``None`` (and
    the unit's ledger row is locked, so a concurrent run of it waits for this one)."""
    if once is None:
        return None
    load, unit = _key(once)
    conn.execute(sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(once))
    row = conn.execute(
        f"SELECT rows FROM {TABLE} WHERE load_id = %s AND unit = %s",  # noqa: S608
        (load, unit),
    ).fetchone()
    return None if row is None else int(row[0])


def record(conn: Connection, once: str | None, rows: int) -> None:
    """Record unit ``once`` as loaded with ``rows`` rows (commits with the rows)."""
    if once is None:
        return
    load, unit = _key(once)
    conn.execute(
        f"INSERT INTO {TABLE} (load_id, unit, rows) VALUES (%s, %s, %s)",  # noqa: S608
        (load, unit, rows),
    )


def forget(conn: Connection, load: str) -> None:
    """Delete the rows of ``load``; drop the ledger when it is empty."""
    if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone() in (None, (None,)):
        return
    conn.execute(_LOCK)
    conn.execute(f"DELETE FROM {TABLE} WHERE load_id = %s", (load,))  # noqa: S608
    if conn.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchone() is None:  # noqa: S608
        conn.execute(f"DROP TABLE {TABLE}")

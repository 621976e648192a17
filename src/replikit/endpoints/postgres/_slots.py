"""The task's replication slot and publication on the source: names, state, removal.

Both are named ``replikit_<task>``; ``task`` matches ``[a-z0-9_]{1,40}``, so the name needs no
quoting anywhere (replication commands take no parameters, see :mod:`._stream`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import psycopg
from psycopg import errors as pgerrors

from replikit.endpoints.postgres._connect import Connection
from replikit.errors import ConfigError, PositionLostError
from replikit.positions import PgLsn

__all__ = [
    "SlotState",
    "drop_slot",
    "object_name",
    "publication_exists",
    "slot_state",
    "terminate_reader",
    "wal_position",
]

_TASK = re.compile(r"[a-z0-9_]{1,40}")
_STATE = """
SELECT s.confirmed_flush_lsn::text, s.wal_status, s.plugin, s.database, s.active_pid,
       s.slot_type, current_database()
FROM pg_replication_slots s WHERE s.slot_name = %s
"""
_STATE_OLD = _STATE.replace("s.wal_status", "NULL::text")  # PostgreSQL < 13


def object_name(task: str) -> str:
    """``replikit_<task>``: the name of the task's slot and publication."""
    if not isinstance(task, str) or not _TASK.fullmatch(task):
        raise ConfigError(f"task name {task!r} must match [a-z0-9_]{{1,40}}")
    return f"replikit_{task}"


@dataclass(frozen=True, slots=True)
class SlotState:
    """One row of ``pg_replication_slots`` for the task's slot."""

    name: str
    confirmed_flush: PgLsn | None
    wal_status: str | None
    plugin: str | None
    database: str | None
    active_pid: int | None
    slot_type: str
    current_database: str

    def check(self, where: str) -> None:
        """Raise unless this is a usable pgoutput slot of this database."""
        if self.wal_status == "lost":
            raise PositionLostError(
                f"replication slot {self.name} at {where} was invalidated: the server removed "
                "WAL it still needed (max_slot_wal_keep_size exceeded?), so changes since its "
                "position are gone; run `replikit drop` and start again with full-load-and-cdc"
            )
        if self.slot_type != "logical" or self.plugin != "pgoutput":
            raise ConfigError(
                f"replication slot {self.name} at {where} is not a pgoutput logical slot "
                f"({self.slot_type}, plugin {self.plugin}); drop it or use another task name"
            )
        if self.database != self.current_database:
            raise ConfigError(
                f"replication slot {self.name} belongs to database {self.database!r}, not "
                f"{self.current_database!r}; drop it or use another task name"
            )


def slot_state(conn: Connection, name: str) -> SlotState | None:
    """The slot called ``name``, or ``None``."""
    query = _STATE if conn.info.server_version >= 130000 else _STATE_OLD
    row = conn.execute(query, (name,)).fetchone()
    if row is None:
        return None
    flush, status, plugin, database, pid, kind, current = row
    return SlotState(
        name,
        PgLsn.from_pg(flush) if flush else None,
        status,
        plugin,
        database,
        pid,
        kind,
        current,
    )


def publication_exists(conn: Connection, name: str) -> bool:
    """Whether the publication ``name`` exists in the connection's database."""
    return (
        conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
        is not None
    )


def wal_position(conn: Connection) -> PgLsn:
    """The server's current WAL insert position (replay position on a standby)."""
    row = conn.execute(
        "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
        " ELSE pg_current_wal_insert_lsn() END)::text"
    ).fetchone()
    assert row is not None
    assert row[0] is not None
    return PgLsn.from_pg(row[0])


def drop_slot(conn: Connection, name: str, *, timeout: float = 5.0) -> bool:
    """Drop slot ``name`` if it exists (True when it did), ending a walsender that holds it.

    ``conn`` must be in autocommit mode. A slot held by a running walsender cannot be dropped:
    that process is terminated and the drop retried until ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = slot_state(conn, name)
        if state is None:
            return False
        if state.active_pid is not None:
            terminate_reader(conn, name, state.active_pid)
        else:
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                return True
            except pgerrors.UndefinedObject:
                return False
            except pgerrors.ObjectInUse:
                pass
        if time.monotonic() > deadline:
            raise ConfigError(
                f"replication slot {name} is still in use by process {state.active_pid} after "
                f"{timeout:.0f} s; stop the program reading it and try again"
            )
        time.sleep(0.05)


def terminate_reader(conn: Connection, name: str, pid: int) -> None:
    try:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    except psycopg.errors.InsufficientPrivilege:
        raise ConfigError(
            f"replication slot {name} is in use by process {pid}, which this role may not "
            "terminate; stop that reader (or run this as its role or a superuser)"
        ) from None

"""Change data capture from PostgreSQL: logical decoding with the built-in ``pgoutput`` plugin.

A task named ``t`` owns publication ``replikit_t`` (its selected tables) and logical
replication slot ``replikit_t`` (where CDC stands). The lifecycle, as
:class:`~replikit.endpoints.postgres.PostgresEndpoint` delegates it:

* :func:`setup` checks the source first (``wal_level``, the role's REPLICATION attribute, a
  free slot, a primary key or replica identity on every table) and raises one
  :class:`~replikit.ConfigError` naming every problem and its fix before creating anything;
  then it creates the publication or brings its table list to the selection.
* :func:`snapshot` creates the slot on a replication connection with an exported snapshot and
  yields a full-load reader whose every unit imports it, with the slot's consistent point:
  the exact full-load/CDC handoff.
* :func:`reload_snapshot` does the same from a temporary slot, for a full load resumed after
  a stop (the task's slot stays where the checkpoint is; the stream skips what it holds).
* :func:`start` creates the slot without a snapshot (a CDC-only task) or returns where it is.
* :class:`PostgresChangeReader` reads the slot (:mod:`._cdc_reader`).
* :func:`teardown` drops the slot (ending a walsender that holds it) and the publication.

Server requirements: ``wal_level = logical`` (restart), ``max_replication_slots`` and
``max_wal_senders`` with room for one more (two while a resumed full load holds its
temporary slot), a role with REPLICATION (or superuser) that owns
the tables (``CREATE PUBLICATION ... FOR TABLE`` needs ownership), and ``pg_hba.conf`` letting
that role make ``replication=database`` connections (a normal *database* line) for streaming;
without them the reader polls. Setting ``max_slot_wal_keep_size`` keeps an abandoned slot from
filling the disk (the slot is then invalidated, and the reader says so).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

import psycopg
from psycopg import errors as pgerrors

from replikit.endpoints.postgres._cdc_reader import PostgresChangeReader
from replikit.endpoints.postgres._connect import Connection, connect
from replikit.endpoints.postgres._dialect import DIALECT
from replikit.endpoints.postgres._params import ConnParams
from replikit.endpoints.postgres._slots import (
    drop_slot,
    object_name,
    slot_state,
    terminate_reader,
)
from replikit.endpoints.postgres._stream import replication_connect
from replikit.endpoints.postgres.source import PostgresReader
from replikit.errors import ConfigError
from replikit.pipeline.waiting import Blocker, Waiting, watch
from replikit.positions import PgLsn
from replikit.schema.model import TableId, TableSchema

__all__ = [
    "PostgresChangeReader",
    "object_name",
    "preflight",
    "reload_snapshot",
    "setup",
    "snapshot",
    "start",
    "takeover",
    "teardown",
]

log = logging.getLogger(__name__)

_IDENTITY = """
SELECT t.schema, t.name, c.relkind::text, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
FROM unnest(%s::text[], %s::text[]) AS t(schema, name)
LEFT JOIN pg_namespace n ON n.nspname = t.schema
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
"""
_PUBLICATION = """
SELECT oid, puballtables, pubinsert AND pubupdate AND pubdelete AND pubtruncate AND pubviaroot
FROM pg_publication WHERE pubname = %s
"""
_PUBLICATION_OLD = _PUBLICATION.replace(" AND pubviaroot", "")  # PostgreSQL < 13
_ROLE = """
SELECT current_user, rolreplication OR EXISTS (
           SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication'
           AND pg_has_role(current_user, g.oid, 'member')),
       rolsuper
FROM pg_roles WHERE rolname = current_user
"""
_SLOTS = """
SELECT current_setting('max_replication_slots')::int, count(*),
       count(*) FILTER (WHERE slot_name = %s), string_agg(slot_name, ', ' ORDER BY slot_name)
FROM pg_replication_slots
"""


def preflight(conn: Connection, tables: Sequence[TableSchema], *, task: str) -> list[str]:
    """Every reason the source cannot feed CDC for ``tables``, each with its fix (empty: ok)."""
    name = object_name(task)
    problems: list[str] = []
    row = conn.execute("SELECT current_setting('wal_level')").fetchone()
    level = row[0] if row else "?"
    if level != "logical":
        problems.append(
            f"wal_level is {level!r}, logical decoding needs 'logical': run "
            "`ALTER SYSTEM SET wal_level = logical` as a superuser and restart PostgreSQL"
        )
    row = conn.execute(_ROLE).fetchone()
    if row is not None and not (row[1] or row[2]):
        problems.append(
            f"role {row[0]} has no REPLICATION attribute: run `ALTER ROLE {DIALECT.quote(row[0])} "
            "REPLICATION` as a superuser (on Amazon RDS: `GRANT rds_replication TO ...`)"
        )
    row = conn.execute(_SLOTS, (name,)).fetchone()
    if row is not None and not row[2] and row[1] >= row[0]:
        problems.append(
            f"no free replication slot: max_replication_slots = {row[0]} and all are used "
            f"({row[3] or 'none listed'}): drop unused slots or raise max_replication_slots "
            "(restart)"
        )
    problems += _identity_problems(conn, tables)
    return problems


def _identity_problems(conn: Connection, tables: Sequence[TableSchema]) -> list[str]:
    ids = [t.id for t in tables]
    rows = conn.execute(
        _IDENTITY, ([t.schema or "public" for t in ids], [t.name for t in ids])
    ).fetchall()
    missing, bare = [], []
    for schema, table, kind, ident, has_pk, has_index in rows:
        qualified = DIALECT.qualified(schema, table)
        if kind not in ("r", "p"):
            missing.append(qualified)
        elif not (ident == "f" or (ident == "d" and has_pk) or (ident == "i" and has_index)):
            bare.append(qualified)
    out = []
    if missing:
        out.append(f"not tables in this database: {', '.join(missing)}")
    if bare:
        out.append(
            f"tables without a primary key or replica identity: {', '.join(bare)}. Published, "
            "their UPDATEs and DELETEs would fail in the source application. Add a primary key, "
            f"or run `ALTER TABLE {bare[0]} REPLICA IDENTITY FULL` (each such table; every "
            "changed row is then logged whole), or leave them out of the task"
        )
    return out


def setup(params: ConnParams, tables: Sequence[TableSchema], *, task: str) -> None:
    """Check the source (:func:`preflight`), then create or update publication ``replikit_<task>``.

    Idempotent: an existing publication gets exactly the selected tables and publishes
    inserts, updates, deletes and truncates (partition changes as their root table).
    """
    name = object_name(task)
    with connect(params, autocommit=True) as conn:
        problems = preflight(conn, tables, task=task)
        if problems:
            raise ConfigError(
                f"{params.where()} cannot feed CDC for task {task!r}:\n- " + "\n- ".join(problems)
            )
        try:
            _sync_publication(conn, name, [t.id for t in tables])
        except pgerrors.InsufficientPrivilege as exc:
            raise ConfigError(
                f"cannot create or change publication {name} at {params.where()} "
                f"({str(exc).strip()}): CREATE PUBLICATION ... FOR TABLE needs ownership of "
                "every table; run the setup as the tables' owner, or have the owner run "
                f"`CREATE PUBLICATION {name} FOR TABLE ...` with the task's tables"
            ) from None


def _sync_publication(conn: Connection, name: str, tables: list[TableId]) -> None:
    wanted = {(t.schema or "public", t.name) for t in tables}
    listed = ", ".join(DIALECT.qualified(s, n) for s, n in sorted(wanted))
    via_root = conn.info.server_version >= 130000
    options = " WITH (publish_via_partition_root = true)" if via_root else ""
    row = conn.execute(_PUBLICATION if via_root else _PUBLICATION_OLD, (name,)).fetchone()
    with conn.transaction():
        if row is not None and row[1]:  # FOR ALL TABLES cannot be narrowed
            conn.execute(f"DROP PUBLICATION {name}")
            row = None
        if row is None:
            target = f" FOR TABLE {listed}" if wanted else ""
            conn.execute(f"CREATE PUBLICATION {name}{target}{options}")
            return
        current = set(
            conn.execute(
                "SELECT n.nspname::text, c.relname::text FROM pg_publication_rel r"
                " JOIN pg_class c ON c.oid = r.prrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE r.prpubid = %s",
                (row[0],),
            ).fetchall()
        )
        if current != wanted:
            if wanted:
                conn.execute(f"ALTER PUBLICATION {name} SET TABLE {listed}")
            else:
                dropped = ", ".join(DIALECT.qualified(s, n) for s, n in sorted(current))
                conn.execute(f"ALTER PUBLICATION {name} DROP TABLE {dropped}")
        if not row[2]:
            publish = "publish = 'insert, update, delete, truncate'"
            root = ", publish_via_partition_root = true" if via_root else ""
            conn.execute(f"ALTER PUBLICATION {name} SET ({publish}{root})")


@contextlib.contextmanager
def snapshot(
    params: ConnParams, tables: Sequence[TableSchema], *, task: str
) -> Iterator[tuple[PostgresReader, PgLsn]]:
    """``with snapshot(...) as (reader, start)``: a full load exactly consistent with ``start``.

    Drops a leftover slot ``replikit_<task>`` (the caller holds no checkpoint, so nothing
    depends on it), creates it with ``(SNAPSHOT 'export')`` on a replication connection and
    yields a :class:`~replikit.endpoints.postgres.source.PostgresReader` whose every unit (in
    any thread) imports that snapshot, with the slot's consistent point. Changes committed
    after the snapshot are exactly those a change reader started at ``start`` delivers. The
    replication connection stays open and idle until the block ends (any command on it would
    end the export). The slot is kept when the block fails, so a resumed load can use it.
    """
    name = object_name(task)
    with connect(params, autocommit=True) as conn:
        drop_slot(conn, name)
    with _exported(params, tables, name, temporary=False) as out:
        yield out


@contextlib.contextmanager
def reload_snapshot(
    params: ConnParams, tables: Sequence[TableSchema], *, task: str
) -> Iterator[tuple[PostgresReader, PgLsn]]:
    """``with reload_snapshot(...) as (reader, at)``: a full load of ``tables`` that sees
    exactly the transactions whose commit ends at or before ``at`` (a resumed load).

    As :func:`snapshot`, but from a TEMPORARY slot ``replikit_<task>_reload``: the task's
    own slot stays where its checkpoint is, and the temporary one is dropped by the server
    when the replication connection closes, at the end of the block (or if the process dies).
    """
    with _exported(params, tables, f"{object_name(task)}_reload", temporary=True) as out:
        yield out


@contextlib.contextmanager
def _exported(
    params: ConnParams, tables: Sequence[TableSchema], name: str, *, temporary: bool
) -> Iterator[tuple[PostgresReader, PgLsn]]:
    """Slot ``name`` created with an exported snapshot; a reader of that snapshot and the
    slot's consistent point (transactions ending at or before it are in the snapshot)."""
    rep = replication_connect(params)
    try:
        new_syntax = rep.info.server_version >= 150000
        export = "(SNAPSHOT 'export')" if new_syntax else "EXPORT_SNAPSHOT"
        kind = "TEMPORARY LOGICAL" if temporary else "LOGICAL"
        try:
            with _watched(params, rep.info.backend_pid, name):
                row = rep.execute(
                    f"CREATE_REPLICATION_SLOT {name} {kind} pgoutput {export}"
                ).fetchone()
        except psycopg.Error as exc:
            raise _slot_error(exc, name, params) from None
        assert row is not None
        reader = PostgresReader(params, tables, snapshot=row[2])
        try:
            yield reader, PgLsn.from_pg(row[1])
        finally:
            reader.close()
    finally:
        rep.close()


def start(params: ConnParams, tables: Sequence[TableSchema], *, task: str) -> PgLsn:
    """The slot's position: created now (its consistent point) or its confirmed position."""
    name = object_name(task)
    with connect(params, autocommit=True) as conn:
        state = slot_state(conn, name)
        if state is None:
            try:
                with _watched(params, conn.info.backend_pid, name):
                    row = conn.execute(
                        "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                        (name,),
                    ).fetchone()
            except pgerrors.DuplicateObject:
                state = slot_state(conn, name)
            except psycopg.Error as exc:
                raise _slot_error(exc, name, params) from None
            else:
                assert row is not None
                return PgLsn.from_pg(row[0])
        assert state is not None
        state.check(params.where())
        assert state.confirmed_flush is not None
        return state.confirmed_flush


def current(params: ConnParams) -> PgLsn:
    """The WAL insert location now (the replay location on a standby): every transaction
    committed before the call ends at or before it."""
    sql = (
        "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
        "ELSE pg_current_wal_insert_lsn() END)::text"
    )
    with connect(params, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return PgLsn.from_pg(str(row[0]))


def teardown(params: ConnParams, *, task: str) -> None:
    """Drop slot and publication ``replikit_<task>`` (terminating a walsender using the slot).

    Idempotent: nothing to drop is not an error.
    """
    name = object_name(task)
    with connect(params, autocommit=True) as conn:
        drop_slot(conn, name)
        try:
            conn.execute(f"DROP PUBLICATION IF EXISTS {name}")
        except pgerrors.InsufficientPrivilege as exc:
            raise ConfigError(
                f"cannot drop publication {name} at {params.where()} ({str(exc).strip()}): "
                "run the teardown as its owner"
            ) from None


# transactions holding an xid, in any database of the server: a new logical slot is
# consistent only once they have ended
_BLOCKERS = """
SELECT pid, extract(epoch FROM now() - xact_start)::float8, coalesce(query, ''),
       coalesce(application_name, ''), coalesce(usename::text, ''),
       coalesce(datname::text, ''), coalesce(state, '')
FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
  AND pid <> %s
ORDER BY xact_start LIMIT 5
"""


def _watched(params: ConnParams, pid: int, name: str) -> AbstractContextManager[Waiting]:
    """Slot ``name`` created by backend ``pid``, under :func:`~replikit.pipeline.waiting.watch`."""

    def probe() -> list[Blocker]:
        with connect(params, autocommit=True) as conn:
            rows = conn.execute(_BLOCKERS, (pid,)).fetchall()
        return [Blocker(int(r[0]), float(r[1] or 0), str(r[2]), _session(*r[3:])) for r in rows]

    def cancel() -> None:
        with connect(params, autocommit=True) as conn:
            conn.execute("SELECT pg_cancel_backend(%s)", (pid,))

    return watch(
        f"creating replication slot {name} on {params.where()}",
        probe,
        cancel,
        fix="The slot can only be created once the transactions running when it began have "
        "ended, in every database of the server: commit or end them (SELECT "
        "pg_terminate_backend(pid)) and run the task (or the reload) again.",
    )


def _session(application: str, user: str, database: str, state: str) -> str:
    """A blocking session as ``pg_stat_activity`` describes it ("application 'psql', user
    app, database shop, idle in transaction")."""
    parts = [f"application {application!r}" if application else "no application_name"]
    parts += [f"user {user}"] if user else []
    parts += [f"database {database}"] if database else []
    parts += [state] if state else []
    return ", ".join(parts)


def takeover(params: ConnParams, *, task: str, timeout: float = 10.0) -> None:
    """End the walsender that still streams slot ``replikit_<task>`` (a replicator this one
    took the task over from: its lease is gone, so it commits nothing more) and wait until
    the slot is free."""
    name = object_name(task)
    deadline = time.monotonic() + timeout
    with connect(params, autocommit=True) as conn:
        while (state := slot_state(conn, name)) is not None and state.active_pid is not None:
            log.warning("slot %s is still streamed by process %d; ending it", name,
                        state.active_pid)  # fmt: skip
            terminate_reader(conn, name, state.active_pid)
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"replication slot {name} is still in use by process {state.active_pid} "
                    f"after {timeout:.0f} s; stop the replicator reading it"
                )
            time.sleep(0.1)


def _slot_error(exc: psycopg.Error, name: str, params: ConnParams) -> ConfigError:
    text = str(exc).strip()
    where = params.where()
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        hint = "the role needs the REPLICATION attribute: ALTER ROLE ... REPLICATION"
    elif isinstance(exc, pgerrors.ConfigurationLimitExceeded):
        hint = "drop unused replication slots or raise max_replication_slots (restart)"
    elif "wal_level" in text:
        hint = "run `ALTER SYSTEM SET wal_level = logical` and restart PostgreSQL"
    else:
        hint = "see the server's message"
    return ConfigError(f"cannot create replication slot {name} at {where} ({text}): {hint}")

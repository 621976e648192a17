"""CDC apply into MySQL/MariaDB: :class:`MysqlChangeWriter`.

One connection (autocommit off, the full-load writer's session: ``time_zone = '+00:00'`` so
TIMESTAMP values land as the same instants, strict ``sql_mode`` so bad values are refused, not
clipped), reopened when it was lost. :meth:`~MysqlChangeWriter.apply` writes a run of source
transactions and the task's checkpoint (``replikit_checkpoints`` in the target database, see
:mod:`._control`) in **one** target transaction: all of it commits or none of it does, so a
crash anywhere replays from a checkpoint that matches the data. Nothing in an apply is DDL
(``TRUNCATE`` becomes ``DELETE FROM``), because MySQL commits implicitly before DDL.

Two modes, both idempotent, so replays after a crash and the overlap of a full-load snapshot
converge (upsert by key with ``INSERT ... ON DUPLICATE KEY UPDATE``, delete-if-exists,
``UPDATE ... SET <present columns> WHERE key`` for partial images):

* ``batch=False`` -- every change in source order, consecutive upserts or deletes of a table
  sent as one multi-row statement;
* ``batch=True`` -- the net change per key (:func:`~replikit.pipeline.netchange.net_changes`)
  written with multi-row statements: per group clears, deletes, upserts, partial updates.

Rows are found by the plan's key (``target_schema.key``: the primary key, else a NOT NULL
unique key); the target must have a unique index on exactly those columns, checked at every
apply. Where the target has *other* unique indexes, upserts carry a guard that
refuses (instead of silently merging into) a row colliding on one of them with a row of another
key; see :mod:`._apply_table`. Values go through the plan's adapters exactly as the full-load
writer's ``INSERT`` path, and are bound by the driver.

A transaction too large for memory (its changes in a spill file) is applied in pieces
(:func:`~replikit.pipeline.apply_support.pieces`), still inside the call's one target
transaction, so memory stays bounded whatever its size.

Errors: any statement error or warning makes the writer roll back and apply the call again
change by change (:func:`._apply_run.replay`); the first change that fails raises
:class:`~replikit.DataError` naming target table, key and column, with nothing of the call
committed. (A batch that fails only because its net rows conflict -- two rows swapping the
values of a secondary unique key -- goes through in source order and commits.) A connection
found dead before COMMIT is reopened and the call runs again (nothing was committed); one lost
during COMMIT, or that cannot be reopened, raises :class:`~replikit.ConnectError` (retryable:
applying the same transactions again is safe).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from replikit._failpoints import failpoint
from replikit.changes import Transaction
from replikit.endpoints.mysql import _control, _ddl
from replikit.endpoints.mysql._apply_run import (
    LOST,
    Runner,
    Warned,
    replay,
    run_changes,
    run_net,
)
from replikit.endpoints.mysql._apply_table import Key, TableApply
from replikit.endpoints.mysql._connect import (
    TRANSIENT,
    Driver,
    connect,
    error_code,
    error_text,
    load_driver,
    scrub,
)
from replikit.endpoints.mysql._dialect import DIALECT, NAME
from replikit.endpoints.mysql._params import ConnParams
from replikit.errors import ConfigError, ConnectError, Error, SchemaError, TransientError
from replikit.pipeline.apply_support import (
    CONNECTION_LOST,
    RUN_AGAIN,
    ChangeWriterBase,
    Plans,
    Txs,
    lost_connection,
    pieces,
    run_transaction,
    tables_for,
)
from replikit.pipeline.conflicts import probe_sql
from replikit.pipeline.contracts import Checkpoint
from replikit.pipeline.netchange import net_changes
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.model import TableId

__all__ = ["CHUNK_ROWS", "MysqlChangeWriter"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: rows per multi-row INSERT/DELETE (statements are also kept under a quarter of the server's
#: max_allowed_packet)
CHUNK_ROWS = 1000
_NO_TABLE = 1146
_TABLES = (
    "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
)
_UNIQUE = (
    "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({marks}) AND NON_UNIQUE = 0 "
    "ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
)


class _Session:
    """One open connection and what was learnt on it."""

    def __init__(self, conn: Any, driver: Driver) -> None:
        self.conn = conn
        self.driver = driver
        with conn.cursor() as cur:
            cur.execute("SELECT @@max_allowed_packet, VERSION()")
            packet, version = cur.fetchone()
        conn.commit()
        self.chunk_bytes = max(int(packet) // 4, 64 * 1024)
        text = version.decode() if isinstance(version, bytes) else str(version)
        self.flavor = "mariadb" if "mariadb" in text.lower() else "mysql"
        # MySQL 8.0.20 deprecates VALUES() in ON DUPLICATE KEY UPDATE (a warning per statement)
        self.alias = self.flavor == "mysql" and _version(text) >= (8, 0, 19)
        self.control = False  # control table known to exist
        self.committing = False  # COMMIT sent: a lost connection leaves the outcome unknown


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class MysqlChangeWriter(ChangeWriterBase):
    """Applies CDC transactions to MySQL/MariaDB; checkpoints in ``replikit_checkpoints``.

    Implements :class:`replikit.pipeline.contracts.ChangeWriter`. Used from one thread.

    Args:
        params: the target's connection parameters (tables land in its database).
        chunk_rows: rows per multi-row ``INSERT ... ON DUPLICATE KEY UPDATE`` / ``DELETE``.
    """

    dialect = DIALECT
    default_schema: str | None = None  # as the full-load writer's: the same target ids
    reports_conflicts = True

    def __init__(self, params: ConnParams, *, chunk_rows: int = CHUNK_ROWS) -> None:
        if not params.database:
            raise ConfigError(
                f"mysql://{params.where()}: a MySQL target URL must name the database"
            )
        if int(chunk_rows) < 1:
            raise ConfigError(f"chunk_rows must be positive, got {chunk_rows}")
        self._params = params
        self.chunk_rows = int(chunk_rows)
        self._session: _Session | None = None
        self._tables: dict[TableId, TableApply] = {}

    def __repr__(self) -> str:
        return f"MysqlChangeWriter({self._params.where()!r})"

    # -- connection ------------------------------------------------------------------------
    def _connect(self) -> _Session:
        if self._session is None:
            conn = connect(self._params)
            try:
                s = _Session(conn, load_driver(self._params.driver))
                if self.fence is not None:  # a standby task's lease: idle transactions end
                    with conn.cursor() as cur:
                        for statement in self.fence.session_statements(s.flavor):
                            cur.execute(statement)
                self._session = s
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.close()
                raise
        return self._session

    def _discard(self, s: _Session) -> None:
        with contextlib.suppress(Exception):
            s.conn.close()
        if self._session is s:
            self._session = None

    def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        if self._session is not None:
            self._discard(self._session)

    def _is_lost(self, exc: BaseException) -> bool:
        driver = load_driver(self._params.driver)
        return error_code(exc) in LOST or isinstance(exc, driver.module.InterfaceError)

    def _rollback(self, s: _Session) -> None:
        try:
            s.conn.rollback()
        except Exception:  # dead meanwhile: nothing is committed
            self._discard(s)

    def _commit(self, s: _Session) -> None:
        self._fenced(functools.partial(_rows, s.conn))
        failpoint("apply.before-commit")  # recovery tests crash here, mid-transaction
        s.committing = True
        s.conn.commit()

    def _run(self, work: Callable[[_Session], T], doing: str) -> T:
        """Run ``work`` (which commits with :meth:`_commit`) in one transaction.

        A connection found dead before COMMIT was sent is reopened and ``work`` runs again:
        nothing had been committed. Lost during COMMIT, the outcome is unknown, so the caller
        gets a :class:`ConnectError` (applying again is safe: apply is idempotent).
        """

        def settle(s: _Session, exc: BaseException, last: bool) -> str | Error | None:
            driver_error = isinstance(exc, s.driver.Error)
            lost = driver_error and self._is_lost(exc)
            if lost:
                self._discard(s)
            else:
                self._rollback(s)
            if not driver_error:
                return None
            if lost:
                return CONNECTION_LOST
            if error_code(exc) == _NO_TABLE and _control.TABLE in error_text(exc):
                s.control = False  # another task dropped it meanwhile
                if not last:
                    return RUN_AGAIN
            text = scrub(error_text(exc).strip(), self._params)
            if error_code(exc) in TRANSIENT:  # deadlock, lock wait timeout: run it again
                return TransientError(f"{doing} at {self._params.where()} gave up: {text}")
            return SchemaError(f"{doing} at {self._params.where()} failed: {text}")

        return run_transaction(
            self._connect,
            work,
            settle=settle,
            lost=lambda exc, committing: self._lost(exc, doing, committing),
            where=self._params.where(),
            doing=doing,
        )

    def _lost(self, exc: BaseException, doing: str, committing: bool) -> ConnectError:
        text = scrub(str(exc).strip(), self._params)
        return lost_connection(self._params.where(), doing, committing, text)

    # -- checkpoints -----------------------------------------------------------------------
    def read_checkpoint(self, task: str) -> Checkpoint | None:
        """The stored checkpoint of ``task`` (``None``: no control table, or no row)."""

        def work(s: _Session) -> Checkpoint | None:
            with s.conn.cursor() as cur:
                checkpoint = _control.read(cur, task)
            s.conn.commit()
            return checkpoint

        return self._run(work, f"reading the checkpoint of task {task!r}")

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` on its own, creating the control table if missing."""

        def work(s: _Session) -> None:
            self._ensure_control(s)
            with s.conn.cursor() as cur:
                _control.write(cur, checkpoint)
            self._commit(s)

        self._run(work, f"writing the checkpoint of task {checkpoint.task!r}")

    def drop_control(self, task: str) -> None:
        """Delete ``task``'s checkpoint; drop the table when no task is left."""

        def work(s: _Session) -> None:
            s.control = False
            _control.drop(s.conn, task)

        self._run(work, f"dropping the control rows of task {task!r}")

    def _ensure_control(self, s: _Session) -> None:
        if not s.control:
            _control.ensure(s.conn)  # DDL commits: only ever before any data is written
            s.control = True

    # -- schema changes --------------------------------------------------------------------
    def run_ddl(self, statements: Sequence[str]) -> None:
        """Run ``statements`` in order (MySQL commits each DDL statement)."""

        def work(s: _Session) -> None:
            with s.conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
            s.conn.commit()

        self._run(work, "following a schema change")
        self._tables.clear()

    def add_columns(self, plan: TablePlan, columns: Sequence[ColumnPlan]) -> None:
        """Add ``columns`` (nullable, planned target types) to ``plan``'s target table.

        Columns the table already has are skipped, so adding a column twice is harmless; a
        planned default is kept, so existing rows get it, as they did on the source.
        """

        def work(s: _Session) -> None:
            with s.conn.cursor() as cur:
                cur.execute(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                    (plan.target_id.name,),
                )
                have = {str(r[0]).lower() for r in cur.fetchall()}
                if not have:
                    raise SchemaError(f"target table {plan.target_id} does not exist")
                ddl = _ddl.Ddl(s.flavor)
                same = plan.source_dialect == NAME
                for col in columns:
                    if col.name.lower() in have:
                        continue
                    nullable = dataclasses.replace(col, nullable=True)
                    column = ddl._column(plan, nullable, same, False, False)
                    table = _ddl.table_name(plan.target_id)
                    cur.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            s.conn.commit()

        self._run(work, f"adding columns to {plan.target_id}")
        self._tables.pop(plan.target_id, None)

    # -- apply -----------------------------------------------------------------------------
    def _apply(
        self, plans: Plans, transactions: Txs, checkpoint: Checkpoint | None, batch: bool
    ) -> None:
        tables = self._tables_for(plans, transactions)

        def work(s: _Session) -> None:
            self._check(s, tables)
            if checkpoint is not None:
                self._ensure_control(s)
            with s.conn.cursor() as cur:
                runner = Runner(s.conn, cur, s.driver, chunk_rows=self.chunk_rows,
                                chunk_bytes=s.chunk_bytes)  # fmt: skip
                try:
                    keys = {t: a.key for t, a in tables.items()}
                    columns = {t: a.order for t, a in tables.items()}
                    for piece in pieces(transactions):  # one unless a transaction spilled
                        self._check_conflicts(
                            piece, keys, functools.partial(_probe, cur, tables),
                            lambda tid, key: tables[tid].key_dict(key),
                        )  # fmt: skip
                        if batch:
                            run_net(runner, net_changes(piece, keys, columns), tables)
                        else:
                            run_changes(runner, piece, tables)
                except (Warned, s.driver.Error) as exc:
                    if not isinstance(exc, Warned) and self._is_lost(exc):
                        raise
                    s.conn.rollback()
                    log.info("apply to %s failed (%s); applying change by change",
                             self._params.where(), exc)  # fmt: skip
                    replay(runner, transactions, tables, self._is_lost)
                if checkpoint is not None:
                    _control.write(cur, checkpoint)
            self._commit(s)

        self._run(work, "applying changes")

    def _tables_for(
        self, plans: Mapping[TableId, TablePlan], transactions: Sequence[Transaction]
    ) -> dict[TableId, TableApply]:
        """The appliers of every table the changes touch (before any SQL runs)."""
        return tables_for(plans, transactions, self._tables, TableApply)

    def _check(self, s: _Session, tables: Mapping[TableId, TableApply]) -> None:
        """Every target table exists with a unique index on exactly its apply key.

        Checked at every apply (one catalog query, about 0.1 ms): an upsert into a table that
        lost its key would insert duplicates instead of failing.
        """
        if not tables:
            return
        names = {t.id.name.lower(): t for t in tables.values()}
        marks = ", ".join(["%s"] * len(names))
        indexes: dict[str, dict[str, list[tuple[str, Any]]]] = {n: {} for n in names}
        with s.conn.cursor() as cur:
            cur.execute(_UNIQUE.format(marks=marks), tuple(t.id.name for t in names.values()))
            for table, index, column, prefix in cur.fetchall():
                by_index = indexes.setdefault(_text(table).lower(), {})
                by_index.setdefault(_text(index), []).append((_text(column).lower(), prefix))
            for name, table in names.items():
                if not indexes[name]:
                    cur.execute(_TABLES, (table.id.name,))
                    if not cur.fetchall():
                        raise SchemaError(
                            f"target table {table.id} does not exist; run the full load "
                            "(or prepare) first"
                        )
                table.configure(guard=_guard(table, indexes[name]), alias=s.alias)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _guard(table: TableApply, indexes: Mapping[str, list[tuple[str, Any]]]) -> bool:
    """Whether the target has unique indexes a row of another key could collide on."""
    key = {k.lower() for k in table.target_key}
    exact = [
        cols for cols in indexes.values()
        if {c for c, _ in cols} == key and all(p is None for _, p in cols)
    ]  # fmt: skip
    if not exact:
        raise ConfigError(
            f"target table {table.id} has no primary key or unique index on "
            f"({', '.join(table.target_key)}); CDC apply upserts by that key. Create the key "
            "(the full-load writer creates the primary key with the table)"
        )
    # an index holding every key column cannot match a row of another key
    return any(not key <= {c for c, _ in cols} for cols in indexes.values())


def _rows(conn: Any, sql: str, params: tuple[Any, ...]) -> list[Any]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def _probe(
    cur: Any, tables: Mapping[TableId, TableApply], tid: TableId, keys: Sequence[Key]
) -> set[int]:
    """Which of ``keys`` table ``tid`` holds (their indexes): see ``pipeline.conflicts``."""
    table = tables[tid]
    sql = probe_sql(table.name, table.key_match(), len(keys))
    cur.execute(sql, [v for k in keys for v in table.key_values(k)])
    return {int(r[0]) for r in cur.fetchall()}

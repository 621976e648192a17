"""CDC apply into PostgreSQL: :class:`PostgresChangeWriter`.

One connection (autocommit off, the full-load writer's session settings: UTC, ISO dates and
intervals), reopened when it was lost. :meth:`~PostgresChangeWriter.apply` writes a run of
source transactions and the task's checkpoint in **one** target transaction: all of it commits
or none of it does, so a crash anywhere replays from a checkpoint that matches the data.

Two modes, both idempotent, so replays after a crash and the overlap of a full-load snapshot
converge:

* ``batch=False`` -- every change in source order (:mod:`._apply_tx`);
* ``batch=True`` -- the net change per key (:func:`~replikit.pipeline.netchange.net_changes`),
  staged with ``COPY`` and merged with set statements (:mod:`._apply_batch`).

Rows are found by the plan's key (``target_schema.key``: the primary key, else a NOT NULL
unique key); the target must have a unique index on exactly those columns, which is checked
once per table and connection. Values are written as text that the server parses with each
column's input function, exactly as the full-load writer's ``COPY`` does.

A change's ``after`` image that lacks planned columns is *partial* (unchanged values the source
did not send, e.g. PostgreSQL unchanged TOAST): only the present columns are written, never a
full row that would null the others. Partial images are the one limit of idempotence: a
partial update or key move of a row that a replay finds missing (deleted later in the stream,
or never loaded) cannot be rebuilt, exactly as :mod:`replikit.pipeline.netchange` explains.

A transaction too large for memory (its changes in a spill file) is applied in pieces
(:func:`~replikit.pipeline.apply_support.pieces`), still inside the call's one target
transaction, so memory stays bounded whatever its size.

Errors: a value the server rejects becomes :class:`~replikit.DataError` naming target table,
key and column; nothing of the call is committed. When a pipeline or a set statement fails
without saying which row, the writer replays the call change by change (in a transaction it
rolls back) to find it. A connection found dead before COMMIT is reopened and the call runs
again (nothing was committed); one lost during COMMIT, or that cannot be reopened, raises
:class:`~replikit.ConnectError` (retryable: applying the same transactions again is safe).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from replikit.endpoints.base import require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402

from replikit._failpoints import failpoint  # noqa: E402
from replikit.changes import Transaction  # noqa: E402
from replikit.endpoints.postgres import _apply_tx, _control, _ddl  # noqa: E402
from replikit.endpoints.postgres._apply_batch import BatchApply, Stager  # noqa: E402
from replikit.endpoints.postgres._apply_errors import diagnose  # noqa: E402
from replikit.endpoints.postgres._apply_table import (  # noqa: E402
    Key,
    TableApply,
    TextParams,
    check_key,
)
from replikit.endpoints.postgres._connect import Connection, connect  # noqa: E402
from replikit.endpoints.postgres._dialect import DIALECT  # noqa: E402
from replikit.endpoints.postgres._errors import by_cause, data_error, scrub  # noqa: E402
from replikit.endpoints.postgres._params import ConnParams  # noqa: E402
from replikit.errors import ConnectError, Error, SchemaError  # noqa: E402
from replikit.pipeline.apply_support import (  # noqa: E402
    CONNECTION_LOST,
    ChangeWriterBase,
    Plans,
    Txs,
    lost_connection,
    pieces,
    run_transaction,
    tables_for,
)
from replikit.pipeline.conflicts import probe_sql  # noqa: E402
from replikit.pipeline.contracts import Checkpoint  # noqa: E402
from replikit.pipeline.netchange import net_changes  # noqa: E402
from replikit.schema.convert import ColumnPlan, TablePlan  # noqa: E402
from replikit.schema.model import TableId  # noqa: E402

__all__ = ["BULK_MIN_ROWS", "PostgresChangeWriter"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_TARGET_CHANGED = (psycopg.errors.InvalidColumnReference, psycopg.errors.UndefinedTable)
#: batch apply stages a step's rows with COPY from this many rows on. Measured on a 2-core
#: box (benchmarks/apply_micro.py --sweep): executemany is faster below ~32-64 rows for
#: upserts and ~64-96 for deletes, staging beyond (2x at 256 rows, 2.5x at 1024)
BULK_MIN_ROWS = 64


class _Session:
    """One open connection and what was set up on it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.text = TextParams(conn)
        self.stager = Stager(conn)
        self.checked: set[TableId] = set()
        self.control = False  # control tables known to exist
        self.committing = False  # COMMIT sent: a lost connection leaves the outcome unknown

    @property
    def alive(self) -> bool:
        return not (self.conn.closed or self.conn.broken)


class PostgresChangeWriter(ChangeWriterBase):
    """Applies CDC transactions to PostgreSQL; checkpoints in ``replikit.replikit_checkpoints``.

    Implements :class:`replikit.pipeline.contracts.ChangeWriter`. Used from one thread.

    Args:
        params: the target's connection parameters.
        bulk_min_rows: in batch apply, stage a table's deletes/upserts/updates with ``COPY``
            from this many rows on; smaller steps use parameterised statements.
    """

    dialect = DIALECT
    default_schema = "public"  # as the full-load writer's: the same target ids
    reports_conflicts = True

    def __init__(self, params: ConnParams, *, bulk_min_rows: int = BULK_MIN_ROWS) -> None:
        self._params = params
        self.bulk_min_rows = max(1, int(bulk_min_rows))
        self._session: _Session | None = None
        self._tables: dict[TableId, TableApply] = {}

    def __repr__(self) -> str:
        return f"PostgresChangeWriter({self._params.where()!r})"

    # -- connection ------------------------------------------------------------------------
    def _connect(self) -> _Session:
        s = self._session
        if s is not None and s.alive:
            return s
        if s is not None:
            s.conn.close()
            log.info("reconnecting to %s", self._params.where())
        self._session = None
        conn = connect(self._params)
        if self.fence is not None:  # a standby task's lease: idle transactions end with it
            for statement in self.fence.session_statements("postgres"):
                conn.execute(statement)
            conn.commit()
        self._session = _Session(conn)
        return self._session

    def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        if self._session is not None:
            self._session.conn.close()
            self._session = None

    def _rollback(self, s: _Session) -> None:
        if s.alive:
            with contextlib.suppress(psycopg.Error):  # died meanwhile: nothing is committed
                s.conn.rollback()
        s.stager.rolled_back()
        s.control = False

    def _commit(self, s: _Session, pipeline: psycopg.Pipeline | None = None) -> None:
        def rows(sql: str, params: tuple[Any, ...]) -> list[Any]:
            cur = s.conn.execute(sql, params)
            if pipeline is not None:
                # a Sync, not the Flush fetchall() sends in a pipeline: the server then waits
                # for COMMIT idle in transaction, where idle_in_transaction_session_timeout
                # ends the transaction of a writer frozen here; left mid-pipeline, no timeout
                # applies and its lock on the lease row held a standby's takeover forever
                pipeline.sync()
            return cur.fetchall()

        self._fenced(rows)
        failpoint("apply.before-commit")  # recovery tests crash here, mid-transaction
        s.committing = True
        s.conn.commit()

    def _run(
        self,
        work: Callable[[_Session], T],
        doing: str,
        translate: Callable[[_Session, psycopg.Error], Error],
    ) -> T:
        """Run ``work`` (which commits with :meth:`_commit`) in one transaction.

        A connection found dead before COMMIT was sent is reopened and ``work`` runs again:
        nothing had been committed. Lost during COMMIT, the outcome is unknown, so the caller
        gets a :class:`ConnectError` (applying again is safe: apply is idempotent).
        """

        def settle(s: _Session, exc: BaseException, last: bool) -> str | Error | None:
            self._rollback(s)
            if not isinstance(exc, psycopg.Error):
                return None
            cause = by_cause(exc, doing) if s.alive else None
            if not s.alive or isinstance(cause, ConnectError):
                s.conn.close()  # by cause: e.g. "consuming input failed" on a live-looking one
                return CONNECTION_LOST
            return cause if cause is not None else translate(s, exc)

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

    def _control_error(self, doing: str) -> Callable[[_Session, psycopg.Error], Error]:
        def translate(s: _Session, exc: psycopg.Error) -> Error:
            text = scrub(str(exc).strip(), self._params)
            return SchemaError(f"{doing} in {_control.TABLE} failed: {text}")

        return translate

    # -- checkpoints -----------------------------------------------------------------------
    def read_checkpoint(self, task: str) -> Checkpoint | None:
        """The stored checkpoint of ``task`` (``None``: no control table, or no row)."""

        def work(s: _Session) -> Checkpoint | None:
            checkpoint = _control.read(s.conn, task)
            self._commit(s)
            return checkpoint

        doing = f"reading the checkpoint of task {task!r}"
        return self._run(work, doing, self._control_error(doing))

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` on its own, creating the control schema and table if missing."""

        def work(s: _Session) -> None:
            self._checkpoint(s, checkpoint)
            self._commit(s)
            s.control = True

        doing = f"writing the checkpoint of task {checkpoint.task!r}"
        self._run(work, doing, self._control_error(doing))

    def drop_control(self, task: str) -> None:
        """Delete ``task``'s checkpoint; drop the table and schema when no task is left."""

        def work(s: _Session) -> None:
            _control.drop(s.conn, task)
            self._commit(s)
            s.control = False

        doing = f"dropping the control rows of task {task!r}"
        self._run(work, doing, self._control_error(doing))

    def _checkpoint(self, s: _Session, checkpoint: Checkpoint) -> None:
        if not s.control:
            _control.ensure(s.conn)
        _control.write(s.conn, checkpoint)

    # -- schema changes --------------------------------------------------------------------
    def add_columns(self, plan: TablePlan, columns: Sequence[ColumnPlan]) -> None:
        """Add ``columns`` (nullable, planned target types) to ``plan``'s target table.

        ``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``, so adding a column twice is harmless;
        PostgreSQL enum types the columns need are created when missing.
        """
        statements = _ddl.add_column_statements(plan, columns)

        def work(s: _Session) -> None:
            for statement in statements:
                if statement.startswith("CREATE TYPE"):
                    name = statement.split()[2]
                    found = s.conn.execute("SELECT to_regtype(%s)", (name,)).fetchone()
                    if found is not None and found[0] is not None:
                        continue
                s.conn.execute(statement)
            self._commit(s)

        def translate(s: _Session, exc: psycopg.Error) -> Error:
            return data_error(exc, str(plan.target_id), column=exc.diag.column_name, key=None)

        self._run(work, f"adding columns to {plan.target_id}", translate)
        self._tables.pop(plan.target_id, None)

    def run_ddl(self, statements: Sequence[str]) -> None:
        """Run ``statements`` in one transaction (a schema change followed on the target)."""

        def work(s: _Session) -> None:
            for statement in statements:
                s.conn.execute(statement)
            self._commit(s)

        def translate(s: _Session, exc: psycopg.Error) -> Error:
            text = scrub(str(exc).strip(), self._params)
            return SchemaError(f"the target refused {'; '.join(statements)}: {text}")

        self._run(work, "following a schema change", translate)
        self._tables.clear()

    # -- apply -----------------------------------------------------------------------------
    def _apply(
        self, plans: Plans, transactions: Txs, checkpoint: Checkpoint | None, batch: bool
    ) -> None:
        tables = self._tables_for(plans, transactions)
        step: list[BatchApply] = []

        def work(s: _Session) -> None:
            step.clear()
            for table in tables.values():
                if table.id not in s.checked:
                    check_key(s.conn, table)
                    s.checked.add(table.id)
            keys = {t: a.key for t, a in tables.items()}
            probe = functools.partial(_probe, s, tables)
            if batch:
                columns = {t: a.all for t, a in tables.items()}
                for piece in pieces(transactions):  # one piece unless a transaction spilled
                    self._check_conflicts(piece, keys, probe, _named(tables))
                    net = net_changes(piece, keys, columns)
                    step[:] = [BatchApply(s.conn, tables.__getitem__, s.stager, s.text,
                                          self.bulk_min_rows)]  # fmt: skip
                    step[0].apply(net)
                # the checkpoint and the commit in one round trip (the fence's Sync as below)
                with s.conn.pipeline() as pipeline:
                    self._finish(s, checkpoint, pipeline)
            else:
                with s.conn.pipeline() as pipeline:  # one round trip: changes, checkpoint, commit
                    for i, piece in enumerate(pieces(transactions)):
                        if i:
                            pipeline.sync()  # a spilled transaction: results piece by piece
                        self._check_conflicts(piece, keys, probe, _named(tables))
                        _apply_tx.run(s.conn, piece, tables.__getitem__, s.text)
                    self._finish(s, checkpoint, pipeline)
            s.stager.committed()
            s.control = s.control or checkpoint is not None

        def translate(s: _Session, exc: psycopg.Error) -> Error:
            rollback = functools.partial(self._rollback, s)
            if isinstance(exc, _TARGET_CHANGED):  # a table or key went since it was checked
                s.checked.clear()
                try:
                    for table in tables.values():
                        check_key(s.conn, table)
                except Error as err:
                    return err
                finally:
                    rollback()
            hint = step[0].current if step else None
            return diagnose(s.conn, exc, transactions, tables, s.text, hint, rollback)

        self._run(work, "applying changes", translate)

    def _finish(
        self, s: _Session, checkpoint: Checkpoint | None, pipeline: psycopg.Pipeline | None = None
    ) -> None:
        if checkpoint is not None:
            self._checkpoint(s, checkpoint)
        self._commit(s, pipeline)

    def _tables_for(
        self, plans: Mapping[TableId, TablePlan], transactions: Sequence[Transaction]
    ) -> dict[TableId, TableApply]:
        """The appliers of every table the changes touch (before any SQL runs)."""
        return tables_for(plans, transactions, self._tables, TableApply)


def _probe(
    s: _Session, tables: Mapping[TableId, TableApply], tid: TableId, keys: Sequence[Key]
) -> set[int]:
    """Which of ``keys`` table ``tid`` holds (their indexes): see ``pipeline.conflicts``."""
    table = tables[tid]
    sql = table.key_shape.sql.get(f"probe{len(keys)}")
    if sql is None:
        sql = probe_sql(table.table_sql, table.key_match(), len(keys))
        table.key_shape.sql[f"probe{len(keys)}"] = sql
    params = [v for k in keys for v in s.text(table.key_shape.values(k))]
    return {int(r[0]) for r in s.conn.execute(sql, params).fetchall()}


def _named(tables: Mapping[TableId, TableApply]) -> Callable[[TableId, Key], dict[str, object]]:
    return lambda tid, key: tables[tid].key_dict(key)

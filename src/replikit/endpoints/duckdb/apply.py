"""Applying CDC transactions to a DuckDB target: :class:`DuckdbChangeWriter`.

One :meth:`~DuckdbChangeWriter.apply` call is one DuckDB transaction holding the changes and
the task's row in ``replikit.replikit_checkpoints``: both commit or neither does. Every write
is a set operation over an Arrow batch (see :mod:`._arrow`), the same column casts as the full
load, so a row lands with the same values whether it came by full load or by CDC:

* upserts (inserts, full updates): ``INSERT INTO t ... SELECT ... ON CONFLICT (key) DO UPDATE
  SET`` every other column (DuckDB's ``INSERT OR REPLACE`` with the key named);
* deletes: ``DELETE FROM t USING batch WHERE key = batch.key``;
* partial updates: ``UPDATE t SET ... FROM batch WHERE key = batch.key``;
* truncate: ``DELETE FROM t``.

``batch=True`` reduces the transactions to their net effect per key
(:func:`replikit.pipeline.netchange.net_changes`), applied group by group, table by table, in
the order truncate, deletes, upserts, partial updates. ``batch=False`` applies each change in
source order. Either way replays converge (upserts, delete-if-exists). A transaction too large
for memory (its changes in a spill file) is reduced and written in pieces
(:func:`~replikit.pipeline.apply_support.pieces`) inside the same DuckDB transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from replikit._failpoints import failpoint
from replikit.changes import Change, Op
from replikit.endpoints.duckdb import _ddl
from replikit.endpoints.duckdb._arrow import Columns
from replikit.endpoints.duckdb._connect import Database, driver, rollback
from replikit.endpoints.duckdb._dialect import DIALECT
from replikit.endpoints.duckdb.reflect import CONTROL_SCHEMA
from replikit.endpoints.duckdb.target import insert, over_rows, scan
from replikit.errors import ConfigError, ConnectError, DataError, SchemaError
from replikit.pipeline import apply_support
from replikit.pipeline.apply_support import ChangeWriterBase, Image, Key, Plans, Txs
from replikit.pipeline.conflicts import probe_sql
from replikit.pipeline.contracts import Checkpoint
from replikit.pipeline.netchange import TableNet, net_changes
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.model import TableId

__all__ = ["CHECKPOINTS", "DuckdbChangeWriter"]

CHECKPOINTS = f"{CONTROL_SCHEMA}.replikit_checkpoints"
_CREATE = (
    f"CREATE SCHEMA IF NOT EXISTS {CONTROL_SCHEMA}",
    f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (task VARCHAR PRIMARY KEY, "
    "start_position VARCHAR, position VARCHAR, phase VARCHAR NOT NULL, loaded VARCHAR NOT NULL, "
    "commit_ts TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)",
)
q = DIALECT.quote


class _Table:
    """One target table: its key, and Arrow conversions per column set (source names)."""

    def __init__(self, plan: TablePlan) -> None:
        self.plan = plan
        self.label = str(plan.target_id)
        self.target = _ddl.table_name(plan.target_id)
        self.by_source: dict[str, ColumnPlan] = {}
        self.computed = plan.computed  # generated in the target: never written
        for cp in plan.columns:
            if cp.source.name not in self.computed:
                self.by_source.setdefault(cp.source.name, cp)
        self.order = tuple(self.by_source)
        by_target = {cp.name: cp for cp in self.by_source.values()}
        self.key_target, self.key = apply_support.apply_key(plan, by_target)
        self._columns: dict[tuple[str, ...], Columns] = {}

    def columns(self, names: tuple[str, ...]) -> Columns:
        cols = self._columns.get(names)
        if cols is None:
            plans = [self.by_source[n] for n in names]
            cols = self._columns[names] = Columns(self.label, plans, self.key_target)
        return cols

    def names(self, image: Image) -> tuple[str, ...]:
        return apply_support.image_columns(
            self.plan.target_id, image, self.order, frozenset(self.by_source), self.computed
        )

    def key_of(self, change: Change) -> Key:
        def missing(column: str) -> DataError:
            return DataError(f"change has no value for key column {column!r}", table=self.label)

        return apply_support.change_key(self.key, change, missing)


def _grouped(items: Sequence[tuple[tuple[str, ...], Any]]) -> dict[tuple[str, ...], list[Any]]:
    groups: dict[tuple[str, ...], list[Any]] = {}
    for names, item in items:
        groups.setdefault(names, []).append(item)
    return groups


def _key_match(t: _Table, cols: Columns, relation: str) -> str:
    return " AND ".join(
        f"{t.target}.{q(k)} = {cols.cast(cols.names.index(k), relation)}" for k in t.key_target
    )


def _upsert(conn: Any, t: _Table, images: Sequence[Image]) -> None:
    for names, group in _grouped([(t.names(i), i) for i in images]).items():
        cols = t.columns(names)
        rest = [n for n in cols.names if n not in t.key_target]
        action = (
            "DO UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in rest)
            if rest
            else "DO NOTHING"
        )
        keys = ", ".join(q(k) for k in t.key_target)
        rows = [[image[n] for n in names] for image in group]
        insert(conn, cols, rows, t.target, f"ON CONFLICT ({keys}) {action}")


def _delete(conn: Any, t: _Table, keys: Sequence[Key]) -> None:
    def statement(cols: Columns, relation: str) -> str:
        match = _key_match(t, cols, relation)
        return f"DELETE FROM {t.target} USING {scan(relation)} WHERE {match}"  # noqa: S608

    over_rows(conn, t.columns(t.key), [list(k) for k in keys], statement)


def _partial(conn: Any, t: _Table, items: Sequence[tuple[Key, Image]]) -> None:
    """``UPDATE ... SET`` the columns present, where the key is the (old) ``key``."""
    for names, group in _grouped([(t.names(v), (k, v)) for k, v in items if v]).items():
        width = len(names)
        plans = [t.by_source[n] for n in names + t.key]
        rows = [[v[n] for n in names] + list(k) for k, v in group]

        def statement(cols: Columns, relation: str, width: int = width) -> str:
            sets = ", ".join(f"{q(cols.names[i])} = {cols.cast(i, relation)}" for i in range(width))
            match = " AND ".join(
                f"{t.target}.{q(k)} = {cols.cast(width + j, relation)}"
                for j, k in enumerate(t.key_target)
            )
            return f"UPDATE {t.target} SET {sets} FROM {scan(relation)} WHERE {match}"  # noqa: S608

        over_rows(conn, Columns(t.label, plans, ()), rows, statement)


def _probe(conn: Any, t: _Table, keys: Sequence[Key]) -> set[int]:
    """Which of ``keys`` table ``t`` holds (their indexes): see ``pipeline.conflicts``."""
    plans = [t.by_source[k] for k in t.key]
    match = " AND ".join(f"{q(p.name)} = CAST(? AS {p.target.sql})" for p in plans)
    params = [
        v if v is None or p.target.adapt is None else p.target.adapt(v)
        for k in keys
        for p, v in zip(plans, k, strict=True)
    ]
    rows = conn.execute(probe_sql(t.target, match, len(keys)), params).fetchall()
    return {int(r[0]) for r in rows}


def _net(conn: Any, t: _Table, ops: TableNet) -> None:
    ops.run(
        lambda: conn.execute(f"DELETE FROM {t.target}"),  # noqa: S608
        lambda keys: _delete(conn, t, keys),
        lambda rows: _upsert(conn, t, rows),
        lambda updates: _partial(conn, t, updates),
    )


def _one(conn: Any, t: _Table, change: Change) -> None:
    if change.op is Op.TRUNCATE:
        conn.execute(f"DELETE FROM {t.target}")  # noqa: S608
        return
    if change.op is Op.INSERT:
        _upsert(conn, t, [change.after or {}])
        return
    old = t.key_of(change)
    if change.op is Op.DELETE:
        _delete(conn, t, [old])
        return
    after = change.after or {}
    if all(n in after for n in t.order):  # a full image: the row's final state
        new = tuple(after[k] for k in t.key)
        if new != old:
            _delete(conn, t, [old])
        _upsert(conn, t, [after])
    elif after:
        _partial(conn, t, [(old, after)])


class DuckdbChangeWriter(ChangeWriterBase):
    """Applies CDC transactions to DuckDB with the checkpoint in the same transaction (see
    the module docs). Used from one thread at a time."""

    dialect = DIALECT
    default_schema: str | None = "main"  # as the full-load writer's: the same target ids
    reports_conflicts = True

    def __init__(self, database: Database) -> None:
        self._db = database
        self._conn: Any = None
        self._tables: dict[TableId, _Table] = {}
        self._closed = False

    def _connection(self) -> Any:
        if self._closed:
            raise ConfigError("this DuckDB change writer is closed")
        if self._conn is None:
            self._conn = self._db.connection()
        return self._conn

    def _transaction(self, work: Callable[[Any], None]) -> None:
        duckdb = driver()
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            work(conn)
            conn.execute("COMMIT")
        except duckdb.IOException as exc:
            rollback(conn)
            raise ConnectError(f"cannot write to DuckDB {self._db.where}: {exc}") from exc
        except duckdb.Error as exc:
            rollback(conn)
            raise SchemaError(
                f"DuckDB refused the changes: {exc} (does the target table still match the "
                "plan, with its key as primary key?)"
            ) from exc
        except BaseException:
            rollback(conn)
            raise

    # -- checkpoints -----------------------------------------------------------------------
    def read_checkpoint(self, task: str) -> Checkpoint | None:
        """The stored checkpoint of ``task`` (``None``: none stored)."""
        conn = self._connection()
        if not _exists(conn):
            return None
        rows = conn.execute(
            f"SELECT start_position, position, phase, loaded, commit_ts FROM {CHECKPOINTS} "  # noqa: S608
            "WHERE task = ?",
            [task],
        ).fetchall()
        if not rows:
            return None
        return apply_support.checkpoint_from_row(task, rows[0], table=CHECKPOINTS)

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` on its own (creates the control table when missing)."""
        self._transaction(lambda conn: _store(conn, checkpoint))

    def drop_control(self, task: str) -> None:
        """Forget ``task``'s checkpoint; drop the control table and schema when empty."""

        def drop(conn: Any) -> None:
            if not _exists(conn):
                return
            conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE task = ?", [task])  # noqa: S608
            if not conn.execute(f"SELECT 1 FROM {CHECKPOINTS} LIMIT 1").fetchall():  # noqa: S608
                conn.execute(f"DROP TABLE {CHECKPOINTS}")
                conn.execute(f"DROP SCHEMA IF EXISTS {CONTROL_SCHEMA}")

        self._transaction(drop)

    # -- schema ----------------------------------------------------------------------------
    def run_ddl(self, statements: Sequence[str]) -> None:
        """Run ``statements`` in one transaction (a schema change followed on the target)."""

        def work(conn: Any) -> None:
            for statement in statements:
                conn.execute(statement)

        self._transaction(work)
        self._tables.clear()

    def add_columns(self, plan: TablePlan, columns: Sequence[ColumnPlan]) -> None:
        """Add ``columns`` to ``plan``'s target table (those it has already are skipped)."""

        def add(conn: Any) -> None:
            rows = conn.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = "
                "current_database() AND schema_name = ? AND table_name = ?",
                [plan.target_id.schema or "main", plan.target_id.name],
            ).fetchall()
            if not rows:
                raise SchemaError(f"target table {plan.target_id} does not exist")
            existing = {DIALECT.name_key(str(r[0]), "column") for r in rows}
            for cp in columns:
                if DIALECT.name_key(cp.name, "column") not in existing:
                    conn.execute(_ddl.add_column(plan, cp))

        self._transaction(add)
        self._tables.clear()

    # -- apply -----------------------------------------------------------------------------
    def _apply(
        self, plans: Plans, transactions: Txs, checkpoint: Checkpoint | None, batch: bool
    ) -> None:
        tables = apply_support.tables_for(plans, transactions, self._tables, _Table)

        keys = {tid: t.key for tid, t in tables.items()}

        def work(conn: Any) -> None:
            for piece in apply_support.pieces(transactions):  # one unless one spilled
                self._check_conflicts(
                    piece, keys, lambda tid, ks: _probe(conn, tables[tid], ks),
                    lambda tid, key: dict(zip(tables[tid].key_target, key, strict=True)),
                )  # fmt: skip
                if not batch:
                    for tx in piece:
                        for change in tx.changes:
                            _one(conn, tables[change.table], change)
                    continue
                net = net_changes(
                    piece, keys=keys, columns={tid: t.order for tid, t in tables.items()}
                )
                for group in net.groups:
                    for tid in apply_support.fk_order(group, lambda x: tables[x].plan):
                        _net(conn, tables[tid], group[tid])
            if checkpoint is not None:
                _store(conn, checkpoint)
            failpoint("apply.before-commit")  # recovery tests crash here, mid-transaction

        self._transaction(work)

    def close(self) -> None:
        """Close this writer's connection (the endpoint keeps the database open)."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._tables.clear()


def _exists(conn: Any) -> bool:
    row = conn.execute(
        "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = 'replikit_checkpoints'",
        [CONTROL_SCHEMA],
    ).fetchall()
    return bool(row)


def _store(conn: Any, checkpoint: Checkpoint) -> None:
    for sql in _CREATE:
        conn.execute(sql)
    values = apply_support.checkpoint_values(checkpoint)
    conn.execute(
        f"INSERT INTO {CHECKPOINTS} (task, start_position, position, phase, loaded, commit_ts, "  # noqa: S608
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, current_timestamp) ON CONFLICT (task) DO UPDATE "
        "SET start_position = excluded.start_position, position = excluded.position, "
        "phase = excluded.phase, loaded = excluded.loaded, commit_ts = excluded.commit_ts, "
        "updated_at = excluded.updated_at",
        list(values),
    )
    if checkpoint.report is not None:  # the task's status, in the same transaction
        checkpoint.report.write(conn, "duckdb")

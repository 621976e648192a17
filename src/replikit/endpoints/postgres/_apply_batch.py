"""Batch apply: a :class:`~replikit.pipeline.netchange.NetBatch` written with bulk statements.

Per group, in the order :mod:`replikit.pipeline.netchange` requires: one ``TRUNCATE`` of the
group's truncated tables, then deletes, then upserts, then partial updates. Tables are
independent for their keys, so the steps run across tables in foreign-key order (deletes from
children to parents, writes from parents to children), which keeps a target's foreign keys
satisfied whenever the source's were.

Each step of a table is either staged or sent as parameterised statements: groups of at least
``bulk_min_rows`` rows are copied (text ``COPY``, the full-load writer's format) into a
temporary stage table and merged with one statement (``INSERT ... SELECT ... ON CONFLICT``,
``DELETE ... USING``, ``UPDATE ... FROM``); smaller ones go through ``executemany`` (one
pipeline), which beats the stage's extra round trips for a handful of rows. Partial updates
are grouped by column set. A partial update that moves a key (its own netchange group) always
runs as statements, as in transactional apply.

Stage tables are created once per connection and shape (``ON COMMIT DELETE ROWS``) with the
target's column types, so ``COPY`` parses values exactly as a full load does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from replikit.endpoints.base import require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402

from replikit.endpoints.postgres._apply_table import (  # noqa: E402
    Key,
    Shape,
    TableApply,
    TextParams,
)
from replikit.endpoints.postgres._connect import Connection  # noqa: E402
from replikit.endpoints.postgres._dialect import DIALECT  # noqa: E402
from replikit.endpoints.postgres._errors import copy_position, data_error  # noqa: E402
from replikit.pipeline.apply_support import fk_order  # noqa: E402
from replikit.pipeline.netchange import NetBatch, TableNet  # noqa: E402
from replikit.schema.model import TableId  # noqa: E402

__all__ = ["BatchApply", "Stager"]

Tables = Callable[[TableId], TableApply]


class Stager:
    """Temporary stage tables of one connection, one per (table, column set).

    ``ON COMMIT DELETE ROWS`` empties them at commit; PostgreSQL does that only in transactions
    that touched a temporary table, i.e. batches that staged rows (measured: +2.5 ms per such
    commit with 300 stages), never in small batches or transactional apply.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._names: dict[tuple[str, tuple[str, ...]], str] = {}
        self._created: list[tuple[str, tuple[str, ...]]] = []
        self._used: set[str] = set()
        self._counter = itertools.count(1)

    def stage(self, table: TableApply, names: tuple[str, ...]) -> str:
        """An empty stage with the target types of ``names`` (target column names)."""
        k = (table.name, names)
        stage = self._names.get(k)
        if stage is None:
            stage = f"pg_temp.rk_stage_{next(self._counter)}"
            cols = ", ".join(DIALECT.quote(n) for n in names)
            select = f"SELECT {cols} FROM {table.name} WITH NO DATA"  # noqa: S608 - quoted
            self._conn.execute(f"CREATE TEMP TABLE {stage} ON COMMIT DELETE ROWS AS {select}")
            self._names[k] = stage
            self._created.append(k)
        elif stage in self._used:
            self._conn.execute(f"TRUNCATE {stage}")
        self._used.add(stage)
        return stage

    def committed(self) -> None:
        """The transaction committed: its stages persist (and are empty again)."""
        self._created.clear()
        self._used.clear()

    def rolled_back(self) -> None:
        """The transaction rolled back: forget the stages it created."""
        for k in self._created:
            del self._names[k]
        self.committed()


class BatchApply:
    """Writes one :class:`NetBatch` inside the caller's transaction."""

    def __init__(
        self,
        conn: Connection,
        tables: Tables,
        stager: Stager,
        text: TextParams,
        bulk_min_rows: int,
    ) -> None:
        self.conn = conn
        self.tables = tables
        self.stager = stager
        self.text = text
        self.bulk_min_rows = bulk_min_rows
        #: the table being written (names it when a set statement fails)
        self.current: TableApply | None = None
        self._probes = False

    def apply(self, net: NetBatch) -> None:
        """Every group, in order."""
        with self.conn.cursor() as cur:
            for group in net.groups:
                self._group(cur, group)

    def _group(self, cur: psycopg.Cursor[Any], group: Mapping[TableId, TableNet]) -> None:
        order = fk_order(group, lambda t: self.tables(t).plan)
        truncated = [self.tables(t).name for t in order if group[t].truncate]
        if truncated:
            self.current = self.tables(order[0])
            cur.execute(f"TRUNCATE {', '.join(truncated)}")
        for tid in reversed(order):
            if group[tid].deletes:
                self._deletes(cur, self.tables(tid), group[tid].deletes)
        for tid in order:
            if group[tid].upserts:
                self._upserts(cur, self.tables(tid), group[tid].upserts)
        for tid in order:
            if group[tid].updates:
                self._updates(cur, self.tables(tid), group[tid].updates)

    # -- the three steps -------------------------------------------------------------------
    def _deletes(self, cur: psycopg.Cursor[Any], table: TableApply, keys: set[Key]) -> None:
        self.current = table
        shape = table.key_shape
        if len(keys) < self.bulk_min_rows:
            cur.executemany(table.delete_sql(), [self.text(shape.values(k)) for k in keys])
            return
        stage = self._copy(cur, table, shape.names, keys, [shape.values(k) for k in keys])
        cur.execute(self._index_probes() + table.merge_delete(stage))

    def _upserts(
        self, cur: psycopg.Cursor[Any], table: TableApply, upserts: dict[Key, Mapping[str, Any]]
    ) -> None:
        self.current = table
        groups: dict[tuple[str, ...], list[tuple[Key, Mapping[str, Any]]]] = {}
        seen: Any = None  # images of one source relation share their keys view: one check
        group: list[tuple[Key, Mapping[str, Any]]] = []
        for key, image in upserts.items():
            names: Any = image.keys()
            if names is not seen:
                if not table.key_set <= names:
                    image = {**dict(zip(table.key, key, strict=True)), **image}
                    names = None
                group = groups.setdefault(table.columns(image), [])
                seen = names
            group.append((key, image))
        for columns, items in groups.items():
            shape = table.shape(columns)
            if len(items) < self.bulk_min_rows:
                params = [self.text(shape.row(image)) for _, image in items]
                cur.executemany(table.upsert_sql(shape), params)
                continue
            keys = [k for k, _ in items]
            stage = self._copy(cur, table, shape.names, keys, shape.rows(i for _, i in items))
            cur.execute(table.merge_upsert(shape, stage))

    def _updates(
        self, cur: psycopg.Cursor[Any], table: TableApply, updates: dict[Key, Mapping[str, Any]]
    ) -> None:
        self.current = table
        groups: dict[tuple[str, ...], list[tuple[Key, Mapping[str, Any]]]] = {}
        for key, values in updates.items():
            new = tuple(values.get(c, v) for c, v in zip(table.key, key, strict=True))
            if new != key:
                self._move(cur, table, key, new, values)
                continue
            columns = tuple(c for c in table.columns(values) if c not in table.key_set)
            if columns:
                groups.setdefault(columns, []).append((key, values))
        for columns, items in groups.items():
            if len(items) < self.bulk_min_rows:
                shape = table.shape(columns)
                key_shape = table.key_shape
                params = [self.text(shape.row(v) + key_shape.values(k)) for k, v in items]
                cur.executemany(table.update_sql(shape), params)
                continue
            shape = table.shape(table.key + columns)
            rows = (shape.row({**v, **dict(zip(table.key, k, strict=True))}) for k, v in items)
            stage = self._copy(cur, table, shape.names, [k for k, _ in items], rows)
            cur.execute(self._index_probes() + table.merge_update(shape, stage))

    def _index_probes(self) -> str:
        """Join stages to targets by probing the target's key index, row by staged row.

        A stage has no statistics, so the planner guesses thousands of rows and picks a merge
        or hash join that reads the whole target (measured: 25 ms for a 1-row delete from a
        150k-row table); index probes cost what the batch holds, whatever the table's size.
        ``SET LOCAL`` ends with the transaction, which runs no other joins. Returned as the
        first statements of the join's (which has no parameters): one round trip for both.
        """
        if self._probes:
            return ""
        self._probes = True
        return "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; "

    def _move(
        self,
        cur: psycopg.Cursor[Any],
        table: TableApply,
        old: Key,
        new: Key,
        values: Mapping[str, Any],
    ) -> None:
        shape: Shape = table.shape(table.columns(values))
        old_params = table.key_shape.values(old)
        cur.execute(table.evict_sql(), self.text(table.key_shape.values(new) + old_params))
        cur.execute(table.update_sql(shape), self.text(shape.row(values) + old_params))

    def _copy(
        self,
        cur: psycopg.Cursor[Any],
        table: TableApply,
        names: tuple[str, ...],
        keys: Iterable[Key],
        rows: Iterable[Sequence[Any]],
    ) -> str:
        """COPY ``rows`` into a fresh stage; a rejected value names table, key and column."""
        stage = self.stager.stage(table, names)
        cols = ", ".join(DIALECT.quote(n) for n in names)
        try:
            with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
        except psycopg.Error as exc:
            line, column = copy_position(exc)
            key = None if line is None else next(itertools.islice(keys, line - 1, None), None)
            if key is None or column is None:
                raise  # the writer finds the change by replaying the batch change by change
            raise data_error(exc, str(table.id), column=column, key=table.key_dict(key)) from exc
        return stage

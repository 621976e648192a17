"""Transactional apply: every change in source order, as idempotent parameterised statements.

========================  =====================================================================
change                    statements
========================  =====================================================================
insert                    upsert of the image's columns (``INSERT ... ON CONFLICT DO UPDATE``)
update, full image        upsert of the new key; ``DELETE`` of the old key first if it moved
update, partial image     ``UPDATE ... SET <present columns> WHERE key``; when the key moves,
                          first delete a row already at the new key if the old key exists
delete                    ``DELETE ... WHERE key`` (nothing when the row is missing)
truncate                  ``TRUNCATE``; consecutive truncates become one statement (foreign
                          keys between the truncated tables then do not block it)
========================  =====================================================================

:func:`run` sends them all (the writer runs it in one pipeline with the checkpoint and the
commit: no round trip per statement); :func:`find_failure` runs them one by one to name the
change a failed pipeline stopped at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from replikit.endpoints.base import require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402

from replikit.changes import Change, Op, Transaction  # noqa: E402
from replikit.endpoints.postgres._apply_table import (  # noqa: E402
    Key,
    TableApply,
    TextParams,
)
from replikit.endpoints.postgres._connect import Connection  # noqa: E402
from replikit.errors import ConfigError  # noqa: E402
from replikit.pipeline import apply_support  # noqa: E402
from replikit.pipeline.apply_support import Unit, units  # noqa: E402
from replikit.schema.model import TableId  # noqa: E402

__all__ = ["Unit", "change_key", "find_failure", "render", "run", "units"]

Statement = tuple[str, Sequence[Any] | None]
Tables = Callable[[TableId], TableApply]


def change_key(table: TableApply, change: Change) -> Key:
    """The key a change addresses (the old key for updates)."""
    return apply_support.change_key(table.key, change, _no_key)


def _no_key(column: str) -> ConfigError:
    return ConfigError(f"change has no value for key column {column!r}")


def render(unit: Unit, tables: Tables, text: TextParams) -> list[Statement]:
    """The statements of one unit (see the module docs)."""
    if isinstance(unit, list):
        names = list(dict.fromkeys(tables(c.table).name for c in unit))
        return [(f"TRUNCATE {', '.join(names)}", None)]
    table = tables(unit.table)
    if unit.op is Op.DELETE:
        key = change_key(table, unit)
        return [(table.delete_sql(), text(table.key_shape.values(key)))]
    if unit.op is Op.INSERT:
        key = change_key(table, unit)
        return [_upsert(table, key, unit.after or {}, text)]
    return _update(table, unit, text)


def _upsert(table: TableApply, key: Key, image: Any, text: TextParams) -> Statement:
    if not table.key_set <= image.keys():
        image = {**dict(zip(table.key, key, strict=True)), **image}
    shape = table.shape(table.columns(image))
    return table.upsert_sql(shape), text(shape.row(image))


def _update(table: TableApply, change: Change, text: TextParams) -> list[Statement]:
    old = change_key(table, change)
    after = change.after or {}
    new = tuple(after.get(c, v) for c, v in zip(table.key, old, strict=True))
    old_params = table.key_shape.values(old)
    if table.is_full(after):
        upsert = _upsert(table, new, after, text)
        if new == old:
            return [upsert]
        return [(table.delete_sql(), text(old_params)), upsert]
    columns = table.columns(after)
    if new == old:
        columns = tuple(c for c in columns if c not in table.key_set)
        if not columns:
            return []
        shape = table.shape(columns)
        return [(table.update_sql(shape), text(shape.row(after) + old_params))]
    shape = table.shape(columns)
    evict = (table.evict_sql(), text(table.key_shape.values(new) + old_params))
    return [evict, (table.update_sql(shape), text(shape.row(after) + old_params))]


def run(
    conn: Connection, transactions: Sequence[Transaction], tables: Tables, text: TextParams
) -> int:
    """Send every statement (run it inside ``conn.pipeline()``); return the changes applied."""
    n = 0
    run_sql: str | None = None
    run_params: list[Sequence[Any]] = []
    with conn.cursor() as cur:
        for unit in units(transactions):
            for statement, params in render(unit, tables, text):
                if statement != run_sql or params is None:
                    _flush(cur, run_sql, run_params)
                    run_sql, run_params = statement, []
                if params is None:
                    cur.execute(statement)
                    run_sql = None
                else:
                    run_params.append(params)
            n += len(unit) if isinstance(unit, list) else 1
        _flush(cur, run_sql, run_params)
    return n


def _flush(cur: psycopg.Cursor[Any], statement: str | None, params: list[Sequence[Any]]) -> None:
    """A run of one statement: ``executemany`` sends it without per-row overhead."""
    if statement is None or not params:
        return
    if len(params) == 1:
        cur.execute(statement, params[0])
    else:
        cur.executemany(statement, params)


def find_failure(
    conn: Connection, transactions: Sequence[Transaction], tables: Tables, text: TextParams
) -> tuple[Unit, psycopg.Error] | None:
    """Run the statements one at a time; the first unit that fails, with its error."""
    with conn.cursor() as cur:
        for unit in units(transactions):
            try:
                for statement, params in render(unit, tables, text):
                    cur.execute(statement, params)
            except psycopg.Error as exc:
                return unit, exc
    return None

"""Naming the change a failed apply stopped at.

A pipeline or a set statement (``INSERT ... SELECT``, ``DELETE ... USING``) that fails does not
say which row caused it. :func:`diagnose` replays the call change by change, in a transaction
the caller rolls back, until a statement fails: that change gives table and key. The column
comes from the server's error, else from copying the change's image into a scratch table with
the target's column types (``COPY`` errors name the column), else -- for values psycopg refuses
client-side -- from the first text holding a NUL character.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from replikit.endpoints.base import require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402

from replikit.changes import Change, Op, Transaction  # noqa: E402
from replikit.endpoints.postgres import _apply_tx  # noqa: E402
from replikit.endpoints.postgres._apply_table import TableApply, TextParams  # noqa: E402
from replikit.endpoints.postgres._connect import Connection  # noqa: E402
from replikit.endpoints.postgres._dialect import DIALECT  # noqa: E402
from replikit.endpoints.postgres._errors import copy_position, data_error  # noqa: E402
from replikit.errors import Error  # noqa: E402
from replikit.schema.model import TableId  # noqa: E402

__all__ = ["diagnose"]


def diagnose(
    conn: Connection,
    exc: psycopg.Error,
    transactions: Sequence[Transaction],
    tables: dict[TableId, TableApply],
    text: TextParams,
    hint: TableApply | None,
    rollback: Callable[[], None],
) -> Error:
    """The :class:`~replikit.DataError` for ``exc`` (``conn`` is rolled back, alive)."""
    try:
        failure = _apply_tx.find_failure(conn, transactions, tables.__getitem__, text)
    finally:
        rollback()
    if failure is None:  # not reproducible change by change (e.g. a set-level conflict)
        where = hint.id if hint is not None else ", ".join(sorted(map(str, tables)))
        return data_error(exc, str(where), column=exc.diag.column_name, key=None)
    unit, error = failure
    if isinstance(unit, list):
        return data_error(error, str(unit[0].table), column=None, key=None)
    table = tables[unit.table]
    key = table.key_dict(_apply_tx.change_key(table, unit))
    column = error.diag.column_name
    if column is None:
        try:
            column = _probe(conn, table, unit)
        finally:
            rollback()
    return data_error(error, str(table.id), column=column, key=key)


def _probe(conn: Connection, table: TableApply, change: Change) -> str | None:
    """The column whose value the target rejects: COPY the image into a scratch table."""
    image = change.after if change.op in (Op.INSERT, Op.UPDATE) else None
    if not image:
        return None
    shape = table.shape(table.columns(image))
    row = shape.row(image)
    names = ", ".join(DIALECT.quote(n) for n in shape.names)
    select = f"SELECT {names} FROM {table.name} WITH NO DATA"  # noqa: S608 - quoted
    try:
        conn.execute(f"CREATE TEMP TABLE pg_temp.rk_probe ON COMMIT DROP AS {select}")
        with conn.cursor() as cur, cur.copy(f"COPY pg_temp.rk_probe ({names}) FROM STDIN") as cp:
            cp.write_row(row)
    except psycopg.Error as exc:
        column = copy_position(exc)[1]
        if column is None:  # client-side: psycopg refuses NUL in text
            nul = (n for n, v in zip(shape.names, row, strict=True) if _has_nul(v))
            column = next(nul, None)
        return column
    return None


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False

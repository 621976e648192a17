"""Shared helpers for the SQLite endpoint tests (real database files, no mocks)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import CHINOOK_SQLITE
from replikit.endpoints.sqlite import SqliteEndpoint
from replikit.endpoints.sqlite._dialect import DIALECT
from replikit.pipeline.contracts import Batch
from replikit.schema.convert import TablePlan, plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

CHINOOK = CHINOOK_SQLITE  # the copy bundled with the package, in this repository
CHINOOK_TABLES = {
    "Album",
    "Artist",
    "Customer",
    "Employee",
    "Genre",
    "Invoice",
    "InvoiceLine",
    "MediaType",
    "Playlist",
    "PlaylistTrack",
    "Track",
}


def chinook_copy(folder: Path) -> Path:
    """A private copy of Chinook (tests must not touch the shared file)."""
    path = folder / "chinook.sqlite"
    shutil.copyfile(CHINOOK, path)
    return path


def endpoint(path: Path) -> SqliteEndpoint:
    return SqliteEndpoint(f"sqlite:///{path}")


def one_column_table(name: str, ptype: Type, *, native: str = "") -> TableSchema:
    """``id int64`` primary key plus ``v`` of ``ptype`` (as reflected from a foreign source)."""
    return TableSchema(
        id=TableId("public", name),
        columns=(
            Column("id", Type.int_(64, native="bigint"), nullable=False),
            Column("v", ptype if not native else ptype.with_native(native)),
        ),
        primary_key=("id",),
    )


def plan_for(table: TableSchema, source_dialect: str = "postgresql") -> TablePlan:
    return plan_table(
        table, source_dialect=source_dialect, target=DIALECT, target_id=TableId(None, table.id.name)
    )


def write_then_read(db: SqliteEndpoint, plan: TablePlan, values: Sequence[Any]) -> list[Any]:
    """Create the table, load ``values`` into column ``v``, read them back in key order."""
    writer = db.writer()
    writer.prepare([plan], "drop-and-create")
    rows = [(i, v) for i, v in enumerate(values)]
    source_cols = tuple(c.source.name for c in plan.columns)
    assert writer.load(plan, [Batch(plan.source.id, source_cols, rows)]) == len(rows)
    writer.finish([plan])
    reader = db.reader([plan.target_id.name])
    (table,) = reader.tables
    got: dict[int, Any] = {}
    for unit in reader.units(table):
        for batch in reader.read(unit):
            got.update({row[0]: row[1] for row in batch.rows})
    return [got[i] for i in range(len(values))]


def raw_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    """Every row with each value's storage class, in rowid/primary key order."""
    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))]
        exprs = ", ".join(f"{DIALECT.quote(c)}, typeof({DIALECT.quote(c)})" for c in cols)
        return conn.execute(f"SELECT {exprs} FROM {DIALECT.quote(table)} ORDER BY 1, 3").fetchall()

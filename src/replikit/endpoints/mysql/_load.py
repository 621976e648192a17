"""Bulk-load statements and data for a MySQL target (sans-IO: rows in, SQL and bytes out).

``LOAD DATA LOCAL INFILE`` reads tab-separated text: ``\\N`` is NULL, backslash, tab and
newline are escaped with a backslash. Values that have no safe text form go through user
variables and a ``SET`` clause: binary strings and geometries as hex (``UNHEX(@v)``), BIT
columns as numbers (``CAST(@v AS UNSIGNED)``; text would be taken as the bits of its
characters). TIMESTAMP values are written as UTC text (the session's time zone is UTC).

The multi-row INSERT path binds the same adapted values through the driver instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from replikit.endpoints.mysql._ddl import table_name
from replikit.endpoints.mysql._dialect import DIALECT, GEOMETRY_TYPES
from replikit.schema.convert import Adapter, ColumnPlan, TablePlan
from replikit.schema.types import Kind

__all__ = ["Load", "load_for"]

Formatter = Callable[[Sequence[Any]], list[str]]
_NULL = "\\N"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _one(value: Any) -> str:
    """The text of any adapted value (the general, slower path)."""
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return _escape(str(value))


def _any(col: Sequence[Any]) -> list[str]:
    return [_NULL if v is None else _one(v) for v in col]


def _mapped(convert: Callable[[Any], str]) -> Formatter:
    def fmt(col: Sequence[Any]) -> list[str]:
        if None not in col:
            return list(map(convert, col))
        return [_NULL if v is None else convert(v) for v in col]

    return fmt


def _strings(col: Sequence[Any]) -> list[str]:
    # inline replaces: a function call per value costs more than the three scans
    return [
        _NULL
        if v is None
        else (v if v.__class__ is str else _text_of(v))
        .replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        for v in col
    ]


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _timestamp(value: Any) -> str:
    return value if value.__class__ is str else value.isoformat(sep=" ")


def _iso(value: Any) -> str:
    return value if value.__class__ is str else value.isoformat()


def _bool(value: Any) -> str:
    return "1" if value else "0"


def _int(value: Any) -> str:
    return str(int(value))


def _hex(value: Any) -> str:
    return bytes(value).hex() if not isinstance(value, str) else value.encode().hex()


def _decimal(value: Any) -> str:
    return str(value) if value.__class__ is Decimal else _one(value)


def _float(value: Any) -> str:
    return repr(value) if value.__class__ is float else _one(value)


_BY_KIND: dict[Kind, Formatter] = {
    Kind.BOOL: _mapped(_bool),
    Kind.INT: _mapped(str),
    Kind.DECIMAL: _mapped(_decimal),
    Kind.FLOAT: _mapped(_float),
    Kind.STRING: _strings,
    Kind.TEXT: _strings,
    Kind.JSON: _strings,
    Kind.ENUM: _strings,
    Kind.DATE: _mapped(_iso),
    Kind.TIME: _mapped(_iso),
    Kind.TIMESTAMP: _mapped(_timestamp),
}


@dataclass(frozen=True, slots=True)
class Load:
    """How one batch column order of one table is written.

    ``columns`` are the target columns written (generated columns are left out: the target
    computes them); ``positions`` their indexes in the batch rows;
    ``adapters`` the plan's value adapters by written position; ``key`` the written positions
    of the table's key (for error messages).
    """

    table: str
    names: tuple[str, ...]
    positions: tuple[int, ...]
    adapters: tuple[tuple[int, Adapter], ...]
    formatters: tuple[Formatter, ...]
    key: tuple[int, ...]
    load_sql: str
    insert_head: str
    placeholders: str

    def key_of(self, row: Sequence[Any]) -> dict[str, Any]:
        """The key columns of a written row (all columns when the table has no key)."""
        positions = self.key or tuple(range(len(self.names)))
        return {self.names[i]: row[i] for i in positions}

    def tsv(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """Rows (already adapted, in written order) as LOAD DATA text."""
        if not rows:
            return b""
        columns = list(zip(*rows, strict=True))
        text = [fmt(col) for col, fmt in zip(columns, self.formatters, strict=True)]
        return ("\n".join(map("\t".join, zip(*text, strict=True))) + "\n").encode()


def _is_generated(plan: TablePlan, cp: ColumnPlan) -> bool:
    return cp.generated is not None


def _native_base(cp: ColumnPlan) -> str:
    return cp.target.sql.lower().split("(")[0].split()[0]


def load_for(plan: TablePlan, batch_columns: Sequence[str]) -> Load:
    """The :class:`Load` for batches of ``plan``'s table with ``batch_columns``."""
    from replikit.errors import SchemaError

    names: list[str] = []
    positions: list[int] = []
    plans: list[ColumnPlan] = []
    for i, column in enumerate(batch_columns):
        cp = plan.column_for(column)
        if cp is None:
            raise SchemaError(f"column {column!r} of the rows is not planned for {plan.target_id}")
        if _is_generated(plan, cp):
            continue
        names.append(cp.name)
        positions.append(i)
        plans.append(cp)
    targets, sets, formatters = [], [], []
    for n, cp in enumerate(plans):
        base = _native_base(cp)
        quoted = DIALECT.quote(cp.name)
        if cp.target.type.kind is Kind.BYTES or base in GEOMETRY_TYPES:
            targets.append(f"@v{n}")
            sets.append(f"{quoted} = UNHEX(@v{n})")
            formatters.append(_mapped(_hex))
        elif base == "bit":
            targets.append(f"@v{n}")
            sets.append(f"{quoted} = CAST(@v{n} AS UNSIGNED)")
            formatters.append(_mapped(_int))
        else:
            targets.append(quoted)
            adapted = cp.target.adapt is not None and cp.target.type.kind is Kind.STRING
            formatters.append(_any if adapted else _BY_KIND.get(cp.target.type.kind, _any))
    table = table_name(plan.target_id)
    # both run with parameters: a % in a quoted name is doubled for the driver's formatting
    load_sql = "LOAD DATA LOCAL INFILE %s " + (
        f"INTO TABLE {table} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
        f"({', '.join(targets)})" + (f" SET {', '.join(sets)}" if sets else "")
    ).replace("%", "%%")
    columns = ", ".join(DIALECT.quote(n) for n in names)
    insert_head = f"INSERT INTO {table} ({columns}) VALUES ".replace("%", "%%")  # noqa: S608
    key_cols = plan.target_schema.key
    return Load(
        table=str(plan.target_id),
        names=tuple(names),
        positions=tuple(positions),
        adapters=tuple((n, cp.target.adapt) for n, cp in enumerate(plans) if cp.target.adapt),
        formatters=tuple(formatters),
        key=tuple(names.index(k) for k in key_cols if k in names),
        load_sql=load_sql,
        insert_head=insert_head,
        placeholders="(" + ", ".join(["%s"] * len(names)) + ")",
    )

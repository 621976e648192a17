"""Expressions of added columns: SQLite expression syntax, evaluated by SQLite itself.

DMS writes ``add-column`` expressions in SQLite's syntax (``$first || ' ' || $last``,
``upper($email)``, ``CASE WHEN ... END``), where ``$name`` is a source column of the row. Here
every ``$name`` becomes a bound parameter and the expression runs as ``SELECT <expression>``
in an in-memory :mod:`sqlite3` database (one per thread), so it gives the same result in the
full load and in CDC, whatever the source engine.

Besides SQLite's functions: ``hash_sha256(x)`` (hex SHA-256 of the value's text),
``replaceChars(x, from, to)`` and ``operation_indicator(deleted, updated, inserted)`` (which
also keeps deleted rows in the target, flagged). Change metadata is available as
``$AR_H_OPERATION`` (``INSERT``/``UPDATE``/``DELETE``), ``$AR_H_COMMIT_TIMESTAMP`` and
``$AR_H_TIMESTAMP`` (the source commit time; the load's start time in the full load),
``$AR_H_STREAM_POSITION`` (the source position; ``''`` in the full load),
``$AR_M_SOURCE_SCHEMA`` and ``$AR_M_SOURCE_TABLE_NAME``.

>>> e = compile_expression("$first || ' ' || upper($last)", ["first", "last"], "rule 1")
>>> e.evaluate({"first": "Ada", "last": "Lovelace"}, Meta.full_load(None, "people"))
'Ada LOVELACE'
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sqlite3
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from replikit.errors import ConfigError

__all__ = ["HEADERS", "Expression", "Meta", "compile_expression", "to_sqlite"]

#: change metadata names usable in expressions (``$AR_H_OPERATION``...)
HEADERS = (
    "AR_H_OPERATION",
    "AR_H_COMMIT_TIMESTAMP",
    "AR_H_TIMESTAMP",
    "AR_H_STREAM_POSITION",
    "AR_M_SOURCE_SCHEMA",
    "AR_M_SOURCE_TABLE_NAME",
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPIND = re.compile(r"operation_indicator\s*\(", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Meta:
    """What an expression may know about the change beside the row."""

    operation: str
    commit_ts: str
    position: str
    schema: str
    table: str

    @classmethod
    def full_load(cls, schema: str | None, table: str, started: str = "") -> Meta:
        """A full-load row: ``INSERT``, committed at ``started``, no position."""
        return cls("INSERT", started, "", schema or "", table)


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression: SQL with named parameters for the columns it reads."""

    text: str
    sql: str
    columns: tuple[str, ...]
    headers: tuple[str, ...]
    flags_deletes: bool
    #: the expression over the columns ``c0``... of a ``VALUES`` list, headers as ``\0NAME\0``
    batch: str = ""

    def evaluate_many(self, rows: Sequence[Mapping[str, Any]], meta: Meta) -> list[Any]:
        """The expression's value for each of ``rows`` (one ``meta`` for all), in one SQLite
        statement per chunk of rows: the same values as :meth:`evaluate`, row by row."""
        out: list[Any] = []
        k = len(self.columns)
        per = max(1, min(_CHUNK_ROWS, _MAX_PARAMS // (k + 1)))
        conn = _connection()
        names = self.columns
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            params: list[Any] = []
            for n, row in enumerate(chunk):
                params.append(n)
                params.extend([to_sqlite(row.get(c)) for c in names])
            sql = _batch_sql(self.batch, k, len(chunk), _literals(self, meta))
            out.extend(v for (v,) in conn.execute(sql, params))
        return out

    def evaluate(self, row: Mapping[str, Any], meta: Meta) -> Any:
        """The expression's value for ``row`` (source column names) and ``meta``."""
        params: dict[str, Any] = {}
        for i, name in enumerate(self.columns):
            params[f"c{i}"] = to_sqlite(row.get(name))
        for name in self.headers:
            params[name] = _header(name, meta)
        if self.flags_deletes:
            params["_rk_op"] = meta.operation
        return _connection().execute(self.sql, params).fetchone()[0]


_CHUNK_ROWS = 500
_MAX_PARAMS = 30_000  # below SQLite's 32,766 bound parameters per statement


def _literals(expr: Expression, meta: Meta) -> tuple[tuple[str, str], ...]:
    """The header values of one batch, as SQL literals (they are the same for every row)."""
    values = [(h, _header(h, meta)) for h in expr.headers]
    if expr.flags_deletes:
        values.append(("_rk_op", meta.operation))
    return tuple((name, "'" + value.replace("'", "''") + "'") for name, value in values)


@functools.lru_cache(maxsize=64)
def _batch_sql(body: str, k: int, rows: int, literals: tuple[tuple[str, str], ...]) -> str:
    """The expression ``body`` (over ``c0``...) over ``rows`` rows of a ``VALUES`` list, in
    their order, with the batch's header values as literals."""
    for name, literal in literals:
        body = body.replace(f"\x00{name}\x00", literal)
    columns = ", ".join(["n", *(f"c{i}" for i in range(k))])
    marks = "(" + ", ".join(["?"] * (k + 1)) + ")"
    values = ", ".join([marks] * rows)
    return f"WITH r({columns}) AS (VALUES {values}) SELECT {body} FROM r ORDER BY n"  # noqa: S608


def _header(name: str, meta: Meta) -> str:
    return {
        "AR_H_OPERATION": meta.operation,
        "AR_H_COMMIT_TIMESTAMP": meta.commit_ts,
        "AR_H_TIMESTAMP": meta.commit_ts,
        "AR_H_STREAM_POSITION": meta.position,
        "AR_M_SOURCE_SCHEMA": meta.schema,
        "AR_M_SOURCE_TABLE_NAME": meta.table,
    }[name]


def to_sqlite(value: Any) -> Any:
    """A canonical Python value as SQLite sees it in DMS expressions (text for dates and
    times as ``YYYY-MM-DD HH:MM:SS``, numbers as numbers, booleans as 0/1)."""
    t = type(value)
    if value is None or t is str or t is int or t is float or t is bytes:
        return value
    if t is bool:
        return int(value)
    if isinstance(value, str | int | float | bytes):  # subclasses (IntEnum, ...)
        return value
    if isinstance(value, Decimal):
        return (
            int(value)
            if value == value.to_integral_value() and abs(value) < 2**63
            else float(value)
        )
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return json.dumps(value, default=str)


# -- functions DMS adds to SQLite's ---------------------------------------------------------------
def _hash_sha256(value: Any) -> str | None:
    if value is None:
        return None
    data = value if isinstance(value, bytes) else str(value).encode()
    return hashlib.sha256(data).hexdigest()


def _replace_chars(text: Any, source: Any, target: Any) -> Any:
    if text is None or source is None or target is None:
        return None
    text, source, target = str(text), str(source), str(target)
    out = []
    for ch in text:
        i = source.find(ch)
        if i < 0:
            out.append(ch)
        else:
            out.append(target[i] if i < len(target) else target[:1])
    return "".join(out)


def _operation_indicator(op: str, deleted: Any, updated: Any, inserted: Any) -> Any:
    return {"DELETE": deleted, "UPDATE": updated}.get(op, inserted)


_local = threading.local()


def _connection() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.create_function("hash_sha256", 1, _hash_sha256, deterministic=True)
        conn.create_function("replaceChars", 3, _replace_chars, deterministic=True)
        conn.create_function("_rk_opind", 4, _operation_indicator, deterministic=True)
        _local.conn = conn
    return conn


# -- compiling ------------------------------------------------------------------------------------
def compile_expression(text: str, columns: Sequence[str], where: str) -> Expression:
    """``text`` with each ``$name`` bound; ``ConfigError`` (naming ``where``) when it does
    not parse or names a column that ``columns`` (the source table's) does not have."""
    if not text.strip():
        raise ConfigError(f"{where}: the expression is empty")
    known = set(columns)
    used: list[str] = []
    headers: list[str] = []
    out: list[str | tuple[str, str]] = []  # SQL text, or ("c" | "h", parameter name)
    i, n = 0, len(text)
    flags = False
    while i < n:
        ch = text[i]
        if ch in "'\"":
            end = _string_end(text, i, where)
            out.append(text[i:end])
            i = end
            continue
        if ch == "$":
            m = _NAME.match(text, i + 1)
            if m is None:
                raise ConfigError(f"{where}: '$' at offset {i} of {text!r} names no column")
            name = m.group()
            if name in HEADERS and name not in known:
                if name not in headers:
                    headers.append(name)
                out.append(("h", name))
            elif name in known:
                if name not in used:
                    used.append(name)
                out.append(("c", f"c{used.index(name)}"))
            else:
                raise ConfigError(
                    f"{where}: expression {text!r} references ${name}, which is not a column "
                    f"of the source table (columns: {', '.join(columns)}; metadata: "
                    f"{', '.join('$' + h for h in HEADERS)})"
                )
            i = m.end()
            continue
        m = _OPIND.match(text, i)
        if m is not None and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            out.extend(("_rk_opind(", ("h", "_rk_op"), ", "))
            flags = True
            i = m.end()
            continue
        out.append(ch)
        i += 1
    sql = "SELECT " + "".join(p if isinstance(p, str) else f":{p[1]}" for p in out)
    batch = "".join(
        p if isinstance(p, str) else p[1] if p[0] == "c" else f"\x00{p[1]}\x00" for p in out
    )
    expr = Expression(text, sql, tuple(used), tuple(headers), flags, batch)
    _check(expr, where)
    return expr


def _string_end(text: str, start: int, where: str) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    raise ConfigError(f"{where}: expression {text!r} has an unterminated {quote} quote")


def _check(expr: Expression, where: str) -> None:
    params: dict[str, Any] = {f"c{i}": None for i in range(len(expr.columns))}
    params.update({h: "" for h in expr.headers})
    if expr.flags_deletes:
        params["_rk_op"] = "INSERT"
    try:
        cur = _connection().execute(expr.sql, params)
        if cur.description is None or len(cur.description) != 1:
            raise sqlite3.ProgrammingError("the expression must give exactly one value")
        cur.fetchall()
    except (sqlite3.Error, sqlite3.Warning) as exc:
        raise ConfigError(
            f"{where}: expression {expr.text!r} is not a valid SQLite expression ({exc})"
        ) from None

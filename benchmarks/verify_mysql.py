"""Verification of MariaDB -> PostgreSQL full loads: canonical checksums on both sides.

Source and target are different engines, so values are compared in a canonical text form that
both sides can produce exactly:

=========  =================================  =============================================
kind       canonical text                     PostgreSQL expression (by the target's type)
=========  =================================  =============================================
int        decimal digits                     ``trim_scale(c::numeric)::text``
decimal    digits, trailing zeros trimmed     ``trim_scale(c::numeric)::text``
double     hex of the IEEE 754 bits           ``encode(float8send(c::float8), 'hex')``
text       the string                         ``c::text``
datetime   ``YYYY-MM-DD HH:MM:SS.ffffff``     ``to_char(c, ...)`` (timestamptz: at UTC)
date       ``YYYY-MM-DD``                     ``to_char(c::date, 'YYYY-MM-DD')``
bool       ``0`` / ``1``                      ``case when c ...`` (boolean), else ``c::int``
json       jsonb's text form                  ``c::jsonb::text``
=========  =================================  =============================================

So a target passes when every value survives, whatever type the tool chose (dlt's smallint for
a boolean passes; a shifted timestamp, a rounded double, a changed text or a lost row does not).
Type fidelity is reported separately (:func:`fidelity`).

Per table: the row count; per column the non-NULL count and the sum of a 60-bit MD5 prefix of
each canonical value; and a per-row hash (MD5 of all canonical values in source order), which
catches values moved between rows. The target side is one SQL query; the source side is
computed once in Python from a streaming read and cached in ``benchmarks/.data``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg

CACHE_DIR = Path(__file__).resolve().parent / ".data"
SEP = "\x1f"
NULL = "\\N"
_PACK_D = struct.Struct(">d")


# -- canonical forms (Python side) ------------------------------------------------------


def _trim(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _json_str(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _JSON_ESC:
            out.append(_JSON_ESC[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_JSON_ESC = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def jsonb_text(value: Any) -> str:
    """PostgreSQL's ``jsonb::text`` of a parsed JSON value (keys by length, then bytes)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{_json_str(k)}: {jsonb_text(value[k])}" for k in keys) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _canon_json(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    return jsonb_text(json.loads(value, parse_float=Decimal))


def _canon_bool(value: Any) -> str:
    if value in (0, 1):
        return "1" if value else "0"
    raise ValueError(f"{value!r} is not 0/1")


CANON: dict[str, Callable[[Any], str]] = {
    "int": str,
    "decimal": _trim,
    "double": lambda v: _PACK_D.pack(v).hex(),
    "text": str,
    "datetime": lambda v: v.isoformat(sep=" ", timespec="microseconds"),
    "date": lambda v: v.isoformat(),
    "bool": _canon_bool,
    "json": _canon_json,
}


def _h60(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode("utf-8", "surrogatepass")).digest()[:8]) >> 4


# -- source side (MariaDB, in Python) ------------------------------------------------------


def _mysql_rows(url: str, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
    p = urlsplit(url)
    kwargs = {
        "host": p.hostname or "127.0.0.1",
        "port": p.port or 3306,
        "user": unquote(p.username or "root"),
        "password": unquote(p.password or ""),
        "database": p.path.lstrip("/"),
        "charset": "utf8mb4",
    }
    try:
        import MySQLdb
        import MySQLdb.cursors

        conn: Any = MySQLdb.connect(**kwargs)
        cursor_class: Any = MySQLdb.cursors.SSCursor
    except ImportError:
        import pymysql
        import pymysql.cursors

        conn = pymysql.connect(**kwargs)
        cursor_class = pymysql.cursors.SSCursor
    try:
        cur = conn.cursor(cursor_class)
        cols = ", ".join(f"`{c}`" for c in columns)
        cur.execute(f"SELECT {cols} FROM `{table}`")
        while rows := cur.fetchmany(20_000):
            yield from rows
        cur.close()
    finally:
        conn.close()


def source_digest(url: str, table: str, columns: list[tuple[str, str]]) -> dict[str, str]:
    """Row count, per-column and per-row checksums of the MariaDB table (canonical values)."""
    return digest_rows(_chunks(_mysql_rows(url, table, [c for c, _ in columns])), columns)


def _chunks(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    for row in rows:
        yield [row]


def digest_rows(
    chunks: Iterable[Sequence[Sequence[Any]]], columns: list[tuple[str, str]]
) -> dict[str, str]:
    """:func:`source_digest` of rows given in chunks (any database's Python values with the
    same canonical forms: a DuckDB target's rows too)."""
    names = [c for c, _ in columns]
    canons = [CANON[k] for _, k in columns]
    nonnull = [0] * len(columns)
    sums = [0] * len(columns)
    row_sum = 0
    count = 0
    for row in (r for chunk in chunks for r in chunk):
        count += 1
        tokens = []
        for i, value in enumerate(row):
            if value is None:
                tokens.append(NULL)
                continue
            token = canons[i](value)
            tokens.append(token)
            nonnull[i] += 1
            sums[i] += _h60(token)
        row_sum += _h60(SEP.join(tokens))
    out = {"__rows__": str(count), "__row_hash__": str(row_sum)}
    for name, n, s in zip(names, nonnull, sums, strict=True):
        out[f"{name}:nonnull"] = str(n)
        out[f"{name}:hash"] = str(s)
    return out


def cached_source_digest(
    url: str, marker: str, table: str, columns: list[tuple[str, str]]
) -> dict[str, str]:
    """:func:`source_digest`, cached per generated data set (its marker) in ``.data``."""
    key = hashlib.sha1(f"{marker}|{table}|{columns}".encode()).hexdigest()[:16]
    path = CACHE_DIR / f"mysql-digest-{table}-{key}.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    digest = source_digest(url, table, columns)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(digest, indent=1))
    return digest


# -- target side (PostgreSQL, one SQL query per table) -------------------------------------


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def canon_sql(kind: str, col: str, data_type: str) -> str:
    """The PostgreSQL expression giving the canonical text of ``col`` (see module doc)."""
    tz = data_type == "timestamp with time zone"
    if kind in ("int", "decimal"):
        return f"trim_scale(({col})::numeric)::text"
    if kind == "double":
        return f"encode(float8send(({col})::float8), 'hex')"
    if kind == "text":
        return f"({col})::text"
    if kind == "datetime":
        src = f"({col}) AT TIME ZONE 'UTC'" if tz else f"({col})::timestamp"
        return f"to_char({src}, 'YYYY-MM-DD HH24:MI:SS.US')"
    if kind == "date":
        src = f"({col}) AT TIME ZONE 'UTC'" if tz else f"({col})::date"
        return f"to_char({src}, 'YYYY-MM-DD')"
    if kind == "bool":
        if data_type == "boolean":
            return f"case when {col} then '1' else '0' end"
        return f"(({col})::int)::text"
    if kind == "json":
        return f"({col})::jsonb::text"
    raise ValueError(f"unknown kind {kind}")


def find_table(conn: psycopg.Connection[Any], table: str) -> str | None:
    """The schema holding ``table`` on the target (tools choose different schemas)."""
    row = conn.execute(
        "select table_schema from information_schema.tables where lower(table_name) = %s"
        " and table_schema not in ('pg_catalog', 'information_schema')"
        " order by table_schema = 'public' desc limit 1",
        (table.lower(),),
    ).fetchone()
    return None if row is None else str(row[0])


def target_types(
    conn: psycopg.Connection[Any], schema: str, table: str
) -> dict[str, tuple[str, str]]:
    """lower(column) -> (real column name, information_schema data_type)."""
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns"
        " where table_schema = %s and lower(table_name) = %s",
        (schema, table.lower()),
    ).fetchall()
    return {str(r[0]).lower(): (str(r[0]), str(r[1])) for r in rows}


def _h60_sql(expr: str) -> str:
    return f"('x' || substr(md5({expr}), 1, 15))::bit(60)::bigint"


def target_digest(url: str, table: str, columns: list[tuple[str, str]]) -> dict[str, str]:
    """The same checksums as :func:`source_digest`, computed by PostgreSQL on the target."""
    with psycopg.connect(url) as conn:
        conn.execute("set jit = off")
        conn.execute("set timezone = 'UTC'")
        schema = find_table(conn, table)
        if schema is None:
            return {"__rows__": "table missing"}
        types = target_types(conn, schema, table)
        missing = [c for c, _ in columns if c.lower() not in types]
        if missing:
            return {"__rows__": f"columns missing: {missing}"}
        exprs = []
        for name, kind in columns:
            real, data_type = types[name.lower()]
            exprs.append((real, canon_sql(kind, _qi(real), data_type)))
        row_text = (
            "concat_ws(chr(31), " + ", ".join(f"coalesce({e}, '{NULL}')" for _, e in exprs) + ")"
        )
        parts = ["count(*)", f"coalesce(sum({_h60_sql(row_text)}), 0)"]
        for real, e in exprs:
            parts += [f"count({_qi(real)})", f"coalesce(sum({_h60_sql(e)}), 0)"]
        sql = f"select {', '.join(parts)} from {_qi(schema)}.{_qi(table)}"
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    out = {"__rows__": str(row[0]), "__row_hash__": str(row[1])}
    for i, (name, _) in enumerate(columns):
        out[f"{name}:nonnull"] = str(row[2 + 2 * i])
        out[f"{name}:hash"] = str(row[3 + 2 * i])
    return out


def compare(expected: dict[str, str], got: dict[str, str]) -> tuple[bool, str]:
    """``(ok, message)``; the message names up to six differing checks."""
    diffs = [k for k in sorted(set(expected) | set(got)) if expected.get(k) != got.get(k)]
    if not diffs:
        return True, "ok"
    detail = "; ".join(f"{k}: src={expected.get(k)} dst={got.get(k)}" for k in diffs[:6])
    return False, f"MISMATCH in {len(diffs)} checks: {detail}"


# -- schema fidelity ------------------------------------------------------------------------

#: (table, column) whose target type the report shows, with the type full fidelity wants
FIDELITY_COLUMNS = {
    ("orders", "is_gift"): ("bool", {"boolean"}),
    ("orders", "metadata"): ("json", {"jsonb"}),
    ("orders", "created_at"): ("ts", {"timestamp(6) without time zone"}),
    ("orders", "amount"): ("num", {"numeric(12,2)"}),
}


def fidelity(url: str, tables: tuple[str, ...], source: dict[str, int]) -> dict[str, Any]:
    """Keys, indexes, foreign keys and the types of the fidelity columns on the target."""
    with psycopg.connect(url) as conn:
        schemas = {t: find_table(conn, t) for t in tables}
        names = [f"{_qi(s)}.{_qi(t)}" for t, s in schemas.items() if s]
        regs = "%(r)s::text[]::regclass[]"
        counts = conn.execute(
            "select"
            f" (select count(*) from pg_constraint where contype = 'p' and conrelid = any({regs})),"
            f" (select count(*) from pg_index where indrelid = any({regs})),"
            f" (select count(*) from pg_constraint where contype = 'f' and conrelid = any({regs}))",
            {"r": names},
        ).fetchone()
        assert counts is not None
        types: dict[str, str] = {}
        for (table, column), (label, _) in FIDELITY_COLUMNS.items():
            schema = schemas.get(table)
            row = None
            if schema:
                row = conn.execute(
                    "select format_type(a.atttypid, a.atttypmod) from pg_attribute a"
                    " where a.attrelid = %s::regclass and lower(a.attname) = %s",
                    (f"{_qi(schema)}.{_qi(table)}", column),
                ).fetchone()
            types[label] = str(row[0]) if row else "-"
    got = {
        "primary_keys": int(counts[0]),
        "indexes": int(counts[1]),
        "foreign_keys": int(counts[2]),
    }
    full = got == source and all(types[label] in want for label, want in FIDELITY_COLUMNS.values())
    return {
        "objects": {k: f"{got[k]}/{v}" for k, v in source.items()},
        "types": types,
        "schema": ",".join(sorted({s for s in schemas.values() if s})),
        "full": full,
    }


def fidelity_text(fid: dict[str, Any]) -> str:
    """``pk 2/2 idx 8/8 fk 1/1; bool=boolean json=jsonb ts=timestamp(6) num=numeric(12,2)``."""
    o = fid["objects"]
    short = {
        "timestamp(6) without time zone": "timestamp(6)",
        "timestamp with time zone": "timestamptz",
        "timestamp without time zone": "timestamp",
        "character varying": "varchar",
    }
    types = " ".join(f"{k}={short.get(v, v)}" for k, v in fid["types"].items())
    return f"pk {o['primary_keys']} idx {o['indexes']} fk {o['foreign_keys']}; {types}"

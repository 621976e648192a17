"""What the SQLite column-batch and Arrow load tests share (``test_sqlite_column_load.py``,
``test_sqlite_arrow_load.py``): each path must store exactly what the row path stores.

* :func:`kinds`: a portable type, its SQLite value adapter and a Hypothesis strategy of its
  canonical values, per column kind, for the column-by-column tests (no server);
* :data:`COLUMNS` (and :data:`UNBOUNDED`, which only the column path takes): the columns of
  a PostgreSQL table of every type the paths take, with value strategies, for the end-to-end
  tests (:func:`same_cells_through`, :func:`refused_row_errors`), which copy it into SQLite
  once by rows and once through the path (``through``: ``"columns"`` or ``"arrow"``) and
  compare ``typeof()`` and value of every cell.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints.sqlite import _column_load
from replikit.endpoints.sqlite import _values as v
from replikit.endpoints.sqlite.target import SqliteWriter
from replikit.schema.types import Type

__all__ = [
    "COLUMNS",
    "FEW",
    "ODD_DATES",
    "UNBOUNDED",
    "Columns",
    "Kind",
    "cells",
    "copy_vals",
    "create_vals",
    "insert_vals",
    "kinds",
    "refused_row_errors",
    "same_cells_through",
    "stored",
]

#: (portable type, value adapter or None, strategy of canonical values)
Kind = tuple[Type, Callable[[Any], Any] | None, st.SearchStrategy[Any]]
#: how the two paths are switched on (a writer method returning whether it takes a plan) and
#: the method that loads through them
_PATHS = {"columns": ("column_writable", "load_columns"), "arrow": ("arrow_writable", "load_arrow")}


def stored(values: list[Any], text: bool = False) -> list[tuple[str, str]]:
    """What SQLite is handed, compared exactly (type and repr: -0.0 is not 0.0); ``text``: a
    column bound into ``CAST(NULLIF(?, 0) AS TEXT)``, where UTF-8 bytes are the text they
    encode and 0 is NULL. A bool is the integer sqlite3 binds for it."""
    if text:
        values = [x.decode() if isinstance(x, bytes | bytearray) else x for x in values]
        values = [None if x == _column_load.TEXT_NULL else x for x in values]
    values = [int(x) if isinstance(x, bool) else x for x in values]  # bound as INTEGER 0/1
    return [(type(x).__name__, repr(x)) for x in values]


ODD_DATES = st.sampled_from(["infinity", "-infinity", "0044-03-15 BC", "12000-01-01"])
_ODD_TIMES = st.sampled_from(["infinity", "0044-03-15 00:00:00.5 BC", "12000-01-01 00:00:00"])
_SPECIAL = st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
_DECIMALS = st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False)


def kinds(*, odd: bool, extra: Mapping[str, Kind] | None = None) -> dict[str, Kind]:
    """Column kinds by name: every kind both paths take, and ``extra``. ``odd``: the values
    also include what only PostgreSQL's text holds (infinite and BC dates and times, years
    past 9999, decimal NaN and infinities) and -0.0, for a path that takes them from text."""

    def plus(values: st.SearchStrategy[Any], more: st.SearchStrategy[Any]) -> Any:
        return values | more if odd else values

    found: dict[str, Kind] = {
        "timestamp": (Type.timestamp(6), v.timestamp_out, plus(st.datetimes(), _ODD_TIMES)),
        "timestamptz": (
            Type.timestamp(6, tz=True),
            v.timestamp_out,
            plus(st.datetimes(timezones=st.just(dt.UTC)), _ODD_TIMES),
        ),
        "date": (Type.date(), v.date_out, plus(st.dates(), ODD_DATES)),
        "numeric(12,2)": (Type.decimal(12, 2), v.decimal_to_numeric, plus(_DECIMALS, _SPECIAL)),
        "numeric(15,7)": (
            Type.decimal(15, 7),
            v.decimal_to_numeric,
            st.decimals(-(10**8) + 1, 10**8 - 1, places=7, allow_nan=False),
        ),
        "numeric(15,15)": (
            Type.decimal(15, 15),
            v.decimal_to_numeric,
            st.decimals(-1, 1, places=15, allow_nan=False).filter(lambda d: abs(d) < 1),
        ),
        "numeric(38,10)": (
            Type.decimal(38, 10),
            v.decimal_to_text,
            plus(st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False), _SPECIAL),
        ),
        "float8": (Type.float_(64), v.float_out, plus(st.floats(), st.just(-0.0))),
        "float4": (Type.float_(32), v.float_out, st.floats(width=32)),
        "int8": (Type.int_(64), None, st.integers(-(2**63), 2**63 - 1)),
        "bool": (Type.bool_(), None, st.booleans()),
        "text": (Type.text(), None, st.text()),
        "json": (Type.json(), None, st.text()),
        "varchar": (Type.string(12), None, st.text(max_size=12)),
        "bytes": (Type.bytes_(), None, st.binary()),
    }
    return {**found, **(extra or {})}


# -- end to end from PostgreSQL ---------------------------------------------------------------


def few(examples: int = 12) -> settings:
    """Hypothesis settings for tests on real database servers: ``examples`` examples, no
    deadline, no shrinking, function-scoped fixtures shared by the examples."""
    return settings(
        max_examples=examples,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


FEW = few()
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
) | st.sampled_from(["", '"', "a,b", "line\nbreak", "\r\n", "NULL", "NaN", "\\N", "t", "12", "0"])
_TINY = st.decimals(-1, 1, places=12, allow_nan=False).filter(lambda d: abs(d) < Decimal("1E-6"))
#: the columns of table ``vals`` (after ``id int PRIMARY KEY``): PostgreSQL type, values
COLUMNS = {
    "c_bool": ("boolean", st.booleans()),
    "c_int2": ("smallint", st.integers(-(2**15), 2**15 - 1)),
    "c_int4": ("integer", st.integers(-(2**31), 2**31 - 1)),
    "c_int8": ("bigint", st.integers(-(2**63), 2**63 - 1)),
    "c_num": ("numeric(12,2)", _DECIMALS | st.sampled_from([Decimal("NaN"), Decimal("0.00")])),
    "c_num15": (
        "numeric(15,15)",
        st.decimals(-1, 1, places=15, allow_nan=False).filter(lambda d: abs(d) < 1),
    ),
    "c_num38": (
        "numeric(38,10)",
        st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False) | _TINY,
    ),
    "c_real": ("real", st.floats(width=32) | st.just(-0.0)),
    "c_float": ("double precision", st.floats() | st.sampled_from([-0.0, float("nan")])),
    "c_varchar": ("varchar(12)", _TEXT),
    "c_char": (
        "char(3)",
        st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=3),
    ),
    "c_text": ("text", _TEXT),
    "c_bytea": ("bytea", st.binary(max_size=12)),
    "c_date": ("date", st.dates().map(str) | ODD_DATES),
    "c_ts": ("timestamp", st.datetimes().map(str) | ODD_DATES),
    "c_ts0": ("timestamp(0)", st.datetimes().map(str)),
    "c_tstz": ("timestamptz", st.datetimes(timezones=st.just(dt.UTC)).map(str) | ODD_DATES),
    "c_json": ("json", st.dictionaries(_TEXT, st.integers(), max_size=3).map(json.dumps)),
    "c_jsonb": (
        "jsonb",
        st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2).map(json.dumps),
    ),
    "c_uuid": ("uuid", st.uuids()),
}
#: columns the column path takes and the Arrow path leaves to rows: unbounded numeric, money
UNBOUNDED = {
    "c_numeric": ("numeric", _TINY | _DECIMALS | st.just(Decimal("-Infinity"))),
    "c_money": ("money", st.decimals(-(10**9), 10**9, places=2, allow_nan=False)),
}


#: column name -> (PostgreSQL type, strategy of values)
Columns = Mapping[str, tuple[str, st.SearchStrategy[Any]]]


def create_vals(url: str, columns: Columns) -> str:
    """Create table ``vals`` of ``columns`` in the PostgreSQL database at ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        cols = ", ".join(f"{n} {t}" for n, (t, _) in columns.items())
        conn.execute(f"CREATE TABLE vals (id int PRIMARY KEY, {cols})")
    return url


def insert_vals(url: str, rows: list[list[Any]]) -> None:
    """Replace the rows of ``vals`` by ``rows`` (id first, then its other columns)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("TRUNCATE vals")
        marks = ", ".join(["%s"] * len(rows[0]))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO vals VALUES ({marks})", rows)


def cells(path: Path, columns: Columns) -> list[list[tuple[str, str]]]:
    """Every cell of ``vals`` (of ``columns``) in the SQLite file ``path``: its ``typeof()``
    and value."""
    names = ["id", *columns]
    select = ", ".join(f"typeof({n}), {n}" for n in names)
    with sqlite3.connect(path) as db:
        rows = db.execute(f"SELECT {select} FROM vals ORDER BY id").fetchall()
    db.close()
    return [[(r[2 * i], repr(r[2 * i + 1])) for i in range(len(names))] for r in rows]


def copy_vals(url: str, path: Path, *, through: str | None) -> int:
    """Copy ``vals`` into the SQLite file ``path`` through ``through`` (``"columns"`` or
    ``"arrow"``), or row by row (``None``); the rows loaded. Asserts that the path loaded it
    and, for rows, that neither did."""
    path.unlink(missing_ok=True)
    calls: list[str] = []
    patches = {check: mock.Mock(return_value=name == through) for name, (check, _) in
               _PATHS.items()}  # fmt: skip
    for name, (_, load) in _PATHS.items():
        patches[load] = _spy(getattr(SqliteWriter, load), name, calls)
    with mock.patch.multiple(SqliteWriter, **patches):
        [stat] = rk.copy(url, f"sqlite:///{path}", include=["public.vals"])
    assert calls == ([through] if through else []), calls
    return int(stat.full_load_rows)


def _spy(method: Callable[..., int], name: str, calls: list[str]) -> Callable[..., int]:
    def spy(self: SqliteWriter, plan: Any, batches: Any) -> int:
        calls.append(name)
        return method(self, plan, batches)

    return spy


def same_cells_through(
    url: str, tmp_path: Path, data: Any, columns: Columns, *, through: str
) -> None:
    """Rows of ``vals`` (made of ``columns``) drawn from their strategies (``data``:
    Hypothesis' ``st.data()``) copied by rows and through ``through`` give the same cells."""
    n = data.draw(st.integers(1, 12))
    rows = [[i, *(data.draw(st.none() | s) for _, s in columns.values())] for i in range(n)]
    insert_vals(url, rows)
    assert copy_vals(url, tmp_path / "rows.db", through=None) == n
    assert copy_vals(url, tmp_path / f"{through}.db", through=through) == n
    by_rows = cells(tmp_path / "rows.db", columns)
    by_path = cells(tmp_path / f"{through}.db", columns)
    names = ["id", *columns]
    wrong = [
        f"id {r[0]}: {name}: row path {a}, {through} {b}"
        for r, s in zip(by_rows, by_path, strict=True)
        for name, a, b in zip(names, r, s, strict=True)
        if a != b
    ]
    assert len(by_rows) == len(by_path) == n
    assert not wrong, "\n".join(wrong[:20])


def refused_row_errors(pg_url: str, tmp_path: Path, *, through: str) -> None:
    """A CHECK of an existing table refuses a row: through ``through`` the error names the
    table and the key (text keys as text, though bound as UTF-8 bytes) as the row path's
    does, and the refused batch is rolled back."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (k text PRIMARY KEY, s text)")
        conn.execute("INSERT INTO t VALUES ('a', 'ok'), ('ké', 'bad'), ('z', 'ok')")
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, s TEXT CHECK (s <> 'bad'))")
    db.close()
    errors = {}
    for taken in (None, through):
        patches = {check: mock.Mock(return_value=name == taken) for name, (check, _) in
                   _PATHS.items()}  # fmt: skip
        with (
            mock.patch.multiple(SqliteWriter, **patches),
            rk.endpoint(pg_url) as pg,
            rk.endpoint(f"sqlite:///{path}") as lite,
        ):
            task = rk.Task(
                pg,
                lite,
                mappings=rk.Mappings().include("public", "t"),
                settings=rk.TaskSettings(target_table_prep_mode="truncate"),
            )
            with pytest.raises(rk.TaskError):
                task.run()
            [stat] = task.statistics()
            errors[taken] = str(stat.error)
    assert "k='ké'" in errors[through], errors[through]
    assert "CHECK constraint failed" in errors[through], errors[through]
    assert errors[through] == errors[None]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    db.close()

"""Read-back forms across every engine pair (issue #8, item 10).

For each source dialect (SQLite, PostgreSQL, MariaDB) a table per column type is filled with
the source's own SQL, copied by replikit into each target dialect, then read back from both
sides with each database's own client (sqlite3, psycopg, PyMySQL). The read-back values must
be equal -- strings exactly, trailing spaces included (``CHAR(n)``: MySQL strips them on read,
PostgreSQL pads them, SQLite keeps what it was given) -- or the plan must have declared the
column lossy or unsupported. Values are compared by meaning only where the clients' Python types
differ for one value (``date`` objects against SQLite's ISO text, ``Decimal('1.50')`` against
SQLite's ``1.5``, a MySQL ``timedelta`` against a PostgreSQL ``time``).
"""

from __future__ import annotations

import json
import sqlite3
import struct
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import replikit as rk

# -- the value table: (comparison kind, native type, SQL literals), per source dialect ------
PG_COLUMNS = [
    ("int", "smallint", ["-32768", "32767"]),
    ("int", "integer", ["0", "-2147483648", "2147483647"]),
    ("int", "bigint", ["-9223372036854775808", "9223372036854775807"]),
    ("num", "numeric(10,2)", ["1.50", "-99999999.99", "0.00"]),
    ("num", "numeric(40,9)", ["1234567890123456789012345678901.123456789", "0.000000001"]),
    ("f64", "double precision", ["0.1", "1e308", "-2.5e-300", "'-0'"]),
    ("f32", "real", ["0.1", "3.4e38", "-1.5"]),
    ("bool", "boolean", ["true", "false"]),
    ("str", "character(20)", ["'ab'", "'ab   '", "''", "'  lead'", "'é😀'"]),
    ("str", "character varying(20)", ["'ab  '", "''", "'é😀'"]),
    ("str", "text", ["'x  '", "E'line\\nbreak'", "E'tab\\t'"]),
    ("bytes", "bytea", ["'\\x00ff20'::bytea", "''::bytea"]),
    ("date", "date", ["'2020-02-29'", "'1000-01-01'", "'9999-12-31'"]),
    ("ts", "timestamp(6)", ["'2020-01-01 12:34:56.789012'", "'1900-01-01 00:00:00'"]),
    (
        "tstz",
        "timestamp(6) with time zone",
        ["'2020-01-01 12:34:56.5+02'", "'2001-09-09 01:46:40+00'"],
    ),
    ("time", "time(6)", ["'00:00:00'", "'23:59:59.999999'", "'12:00:00.5'"]),
    ("time", "time(0) with time zone", ["'12:00:00+05:30'", "'23:59:59-08'"]),
    ("str", '"char"', ["'a'", "' '"]),
    ("uuid", "uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"]),
    ("json", "jsonb", ['\'{"a": 1.50, "b": [1, "x"]}\'']),
    ("json", "json", ['\'{"b": 1, "a": null}\'']),
]
MYSQL_COLUMNS = [
    ("int", "int", ["0", "-2147483648", "2147483647"]),
    ("int", "bigint unsigned", ["0", "18446744073709551615"]),
    ("bool", "tinyint(1)", ["1", "0"]),
    ("num", "decimal(10,2)", ["1.50", "-99999999.99", "0.00"]),
    ("f32", "float", ["0.1", "-1.5", "3.4e38"]),
    ("f64", "double", ["0.1", "1e308", "-2.5e-300"]),
    ("str", "char(20)", ["'ab'", "'ab   '", "''", "'  lead'", "'é😀'"]),
    ("str", "varchar(20)", ["'ab  '", "''", "'é😀'"]),
    ("str", "text", ["'x  '", "'line\\nbreak'"]),
    ("bytes", "varbinary(10)", ["X'00FF20'", "X''"]),
    ("bytes", "binary(4)", ["X'00FF'", "X'01020304'"]),
    ("date", "date", ["'2020-02-29'", "'1000-01-01'", "'9999-12-31'"]),
    ("ts", "datetime(6)", ["'2020-01-01 12:34:56.789012'", "'1900-01-01 00:00:00'"]),
    ("tstz", "timestamp(6)", ["'2020-01-01 12:34:56.5'", "'2001-09-09 01:46:40'"]),
    ("time", "time(6)", ["'00:00:00'", "'23:59:59.999999'", "'12:00:00.5'"]),
    ("str", "enum('a','b c')", ["'a'", "'b c'"]),
    ("str", "set('x','y')", ["'x,y'", "''"]),
    ("int", "year", ["1901", "2155"]),
    ("int", "mediumint unsigned", ["0", "16777215"]),
    ("int", "bit(8)", ["b'10000001'", "0"]),
    ("bool", "bit(1)", ["b'1'", "b'0'"]),
    (
        "num",
        "decimal(65,30)",
        ["12345678901234567890123456789012345.123456789012345678901234567890"],
    ),
    ("str", "tinytext", ["'t  '"]),
    ("json", "json", ['\'{"b": 1, "a": null}\'']),
]
SQLITE_COLUMNS = [
    ("int", "INTEGER", ["0", "-9223372036854775808", "9223372036854775807"]),
    ("f64", "REAL", ["0.1", "1e308", "-2.5e-300"]),
    ("int", "BIGINT UNSIGNED", ["0", "9223372036854775807"]),
    ("num", "NUMERIC(10,2)", ["1.5", "-99999999.99", "0"]),
    ("bool", "BOOLEAN", ["1", "0"]),
    ("str", "TEXT", ["'x  '", "'line' || char(10) || 'break'", "''"]),
    ("str", "CHAR(20)", ["'ab'", "'ab   '", "''", "'  lead'", "'é😀'"]),
    ("str", "VARCHAR(20)", ["'ab  '", "''", "'é😀'"]),
    ("bytes", "BLOB", ["X'00FF20'", "X''"]),
    ("date", "DATE", ["'2020-02-29'", "'1000-01-01'"]),
    ("ts", "DATETIME", ["'2020-01-01 12:34:56.789012'", "'1900-01-01 00:00:00'"]),
]
COLUMNS = {"sqlite": SQLITE_COLUMNS, "postgresql": PG_COLUMNS, "mysql": MYSQL_COLUMNS}
DIALECTS = ["sqlite", "postgresql", "mysql"]


# -- normalising what each client returns, by comparison kind -------------------------------
def _f32(value: Any) -> float:
    return struct.unpack("<f", struct.pack("<f", float(value)))[0]


def _clock(value: Any) -> str:
    if isinstance(value, timedelta):  # PyMySQL's TIME
        value = (datetime(2000, 1, 1) + value).time()
    if isinstance(value, str):
        value = time.fromisoformat(value)
    return value.isoformat()


def _float(value: Any) -> str:
    return repr(float(value))  # repr: -0.0 is not 0.0


def _moment(value: Any, tz: bool) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if tz and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ")


def _json(value: Any) -> Any:
    return json.loads(value, parse_float=Decimal) if isinstance(value, str | bytes) else value


def _number(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


NORMALISE: dict[str, Callable[[Any], Any]] = {
    "int": lambda v: int.from_bytes(v, "big") if isinstance(v, bytes) else int(v),  # BIT
    "bool": lambda v: int.from_bytes(v, "big") if isinstance(v, bytes) else int(v),
    "num": _number,
    "f64": _float,
    "f32": lambda v: repr(_f32(v)),
    "str": lambda v: v,  # exactly: trailing spaces count
    "bytes": bytes,
    "date": lambda v: v if isinstance(v, str) else v.isoformat(),
    "ts": lambda v: _moment(v, tz=False),
    "tstz": lambda v: _moment(v, tz=True),
    "time": _clock,
    "uuid": lambda v: str(v).lower(),
    "json": _json,
}


# -- databases --------------------------------------------------------------------------------
class Db:
    """One database of one dialect: URL, DDL/DML in its own SQL, reads with its own client."""

    def __init__(self, dialect: str, url: str, *, mysql_server: Any = None) -> None:
        self.dialect, self.url, self._mysql = dialect, url, mysql_server

    def execute(self, statements: list[str]) -> None:
        if self.dialect == "sqlite":
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as conn:
                for s in statements:
                    conn.execute(s)
        elif self.dialect == "postgresql":
            with psycopg.connect(self.url, autocommit=True) as conn:
                for s in statements:
                    conn.execute(s)
        else:
            conn = self._mysql.connect(self.url.rsplit("/", 1)[1])
            try:
                with conn.cursor() as cur:
                    for s in statements:
                        cur.execute(s)
            finally:
                conn.close()

    def rows(self, schema: str | None, table: str) -> list[tuple[Any, ...]] | None:
        """``(id, v)`` rows in key order, read with the database's own client; None: no table."""
        if self.dialect == "sqlite":
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as conn:
                try:
                    return conn.execute(f'SELECT id, v FROM "{table}" ORDER BY id').fetchall()
                except sqlite3.OperationalError:
                    return None
        if self.dialect == "postgresql":
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("SET TimeZone = 'UTC'")
                name = f'"{schema}"."{table}"' if schema else f'"{table}"'
                try:
                    return conn.execute(f"SELECT id, v FROM {name} ORDER BY id").fetchall()
                except psycopg.errors.UndefinedTable:
                    return None
        conn = self._mysql.connect(
            self.url.rsplit("/", 1)[1], init_command="SET time_zone = '+00:00'"
        )
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = %s",
                    (table,),
                )
                if cur.fetchone()[0] == 0:
                    return None
                cur.execute(f"SELECT id, v FROM `{table}` ORDER BY id")
                return list(cur.fetchall())
        finally:
            conn.close()


@pytest.fixture
def make_db(pg_server, mysql_server, tmp_path) -> Iterator[Callable[[str], Db]]:
    dropped: list[Callable[[], None]] = []

    def make(dialect: str) -> Db:
        name = f"rk_test_{uuid.uuid4().hex[:12]}"
        if dialect == "sqlite":
            return Db(dialect, f"sqlite:///{tmp_path / (name + '.db')}")
        if dialect == "postgresql":
            url = pg_server.create_database(name)
            dropped.append(lambda: pg_server.drop_database(name))
            return Db(dialect, url)
        url = mysql_server.create_database(name)
        dropped.append(lambda: mysql_server.drop_database(name))
        return Db(dialect, url, mysql_server=mysql_server)

    yield make
    for drop in dropped:
        drop()


def _fill(db: Db) -> dict[str, str]:
    """One table per column type, filled with the source's own SQL; ``{table: kind}``."""
    kinds, statements = {}, []
    for i, (kind, native, literals) in enumerate(COLUMNS[db.dialect]):
        table = f"c{i}"
        kinds[table] = kind
        statements.append(f"CREATE TABLE {table} (id int PRIMARY KEY, v {native})")
        statements += [
            f"INSERT INTO {table} (id, v) VALUES ({n}, {lit})" for n, lit in enumerate(literals)
        ]
    db.execute(statements)
    return kinds


def _copy(src: Db, dst: Db) -> tuple[list[Any], dict[str, BaseException]]:
    task = rk.Task(src.url, dst.url, settings=rk.TaskSettings(parallel_tables=2))
    plans = list(task.plan().assessment.tables)
    try:
        task.run()
    except rk.TaskError as exc:
        return plans, exc.table_errors
    return plans, {}


def _norm(norm: Callable[[Any], Any], value: Any) -> Any:
    if value is None:
        return None
    try:
        return norm(value)
    except (ValueError, TypeError, ArithmeticError):
        return ("not readable as its type", value)


@pytest.mark.parametrize("target", DIALECTS)
@pytest.mark.parametrize("source", DIALECTS)
def test_read_back_forms_match(make_db, source, target):
    src, dst = make_db(source), make_db(target)
    kinds = _fill(src)
    plans, errors = _copy(src, dst)
    undeclared = []
    for plan in plans:
        table = plan.source.id.name
        column = plan.columns[1]
        norm = NORMALISE[kinds[table]]
        before = [(k, _norm(norm, v)) for k, v in src.rows(None, table) or []]
        rows = dst.rows(plan.target_id.schema, plan.target_id.name)
        assert rows is not None or str(plan.source.id) in errors, plan.target_id
        after = [(k, _norm(norm, v)) for k, v in rows or []]
        if before == after:
            continue
        if column.fidelity is rk.Fidelity.EXACT:
            why = errors.get(str(plan.source.id), "no error")
            undeclared.append(
                f"{column.source.type.native} -> {column.target.sql}: "
                f"{before} read back as {after} ({why})"
            )
    assert undeclared == [], "\n".join(undeclared)


# -- the same check, driven by Hypothesis ---------------------------------------------------
# (kind, native type per source dialect, strategy); values are bound with each client
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)
GENERATED = [
    ("str", {"sqlite": "CHAR(20)", "postgresql": "character(20)", "mysql": "char(20)"}, TEXT),
    ("str", {"sqlite": "VARCHAR(20)", "postgresql": "varchar(20)", "mysql": "varchar(20)"}, TEXT),
    ("str", {"sqlite": "TEXT", "postgresql": "text", "mysql": "text"}, TEXT),
    (
        "int",
        {"sqlite": "INTEGER", "postgresql": "bigint", "mysql": "bigint"},
        st.integers(-(2**63), 2**63 - 1),
    ),
    (
        "num",
        {"sqlite": "NUMERIC(12,3)", "postgresql": "numeric(12,3)", "mysql": "decimal(12,3)"},
        st.decimals(-(10**9) + 1, 10**9 - 1, places=3, allow_nan=False),
    ),
    (
        "ts",
        {"sqlite": "DATETIME", "postgresql": "timestamp(6)", "mysql": "datetime(6)"},
        st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31)),
    ),
]


def _bind(dialect: str, value: Any) -> Any:
    if dialect == "sqlite" and isinstance(value, Decimal):
        return str(value)
    if dialect == "sqlite" and isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return value


def _insert(db: Db, table: str, native: str, values: list[Any]) -> None:
    mark = "?" if db.dialect == "sqlite" else "%s"
    rows = [(i, _bind(db.dialect, v)) for i, v in enumerate(values)]
    create = f"CREATE TABLE {table} (id int PRIMARY KEY, v {native})"
    insert = f"INSERT INTO {table} (id, v) VALUES ({mark}, {mark})"
    if db.dialect == "sqlite":
        with sqlite3.connect(db.url.removeprefix("sqlite:///")) as conn:
            conn.execute(create)
            conn.executemany(insert, rows)
    elif db.dialect == "postgresql":
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute(create)
            conn.cursor().executemany(insert, rows)
    else:
        conn = db._mysql.connect(db.url.rsplit("/", 1)[1])
        try:
            with conn.cursor() as cur:
                cur.execute(create)
                cur.executemany(insert, rows)
        finally:
            conn.close()


@pytest.mark.parametrize("target", DIALECTS)
@pytest.mark.parametrize("source", DIALECTS)
def test_generated_values_read_back_the_same(make_db, source, target):
    src, dst = make_db(source), make_db(target)
    counter = iter(range(10**6))

    # no shrinking: each example costs a copy between two servers; the report shows the values
    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        n = next(counter)
        tables = {}
        for i, (kind, natives, strategy) in enumerate(GENERATED):
            table = f"h{n}t{i}"
            values = data.draw(st.lists(strategy, min_size=1, max_size=5), label=table)
            _insert(src, table, natives[source], values)
            tables[table] = kind
        task = rk.Task(
            src.url,
            dst.url,
            mappings=rk.Mappings().include("%", f"h{n}t%"),
            settings=rk.TaskSettings(parallel_tables=2),
        )
        plans = list(task.plan().assessment.tables)
        errors: dict[str, BaseException] = {}
        try:
            task.run()
        except rk.TaskError as exc:
            errors = exc.table_errors
        for plan in plans:
            norm = NORMALISE[tables[plan.source.id.name]]
            before = [(k, _norm(norm, v)) for k, v in src.rows(None, plan.source.id.name) or []]
            rows = dst.rows(plan.target_id.schema, plan.target_id.name)
            after = [(k, _norm(norm, v)) for k, v in rows or []]
            if before != after:
                column = plan.columns[1]
                why = errors.get(str(plan.source.id), "no error")
                assert column.fidelity is not rk.Fidelity.EXACT, (
                    f"{column.source.type.native} -> {column.target.sql}: {before} read back "
                    f"as {after} ({why})"
                )

    check()

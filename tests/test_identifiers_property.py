"""Random identifiers through every dialect pair: each arrives under a name of its own, or the
plan refuses; two source objects are never merged into one target object.

Names mix Unicode, spaces, quotes, reserved words, names past 63 bytes and 64 characters, case
variants and near-duplicates (equal in their first 63 bytes, differing in case or a trailing
space). Two layers:

* plan only, many examples, every target dialect: when the plan has no unsupported finding,
  every target name (schema, table, column, index, key, sequence) is one the target can create
  and no two objects share a name in one of the target's namespaces;
* real databases: the tables are created in a SQLite, PostgreSQL or MariaDB source and copied
  into each target; a refused plan leaves the target without tables, an accepted one arrives
  with exactly as many tables as the source, each holding exactly one source table's rows.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import replikit as rk
from idents_db import Db, sqlite_db
from replikit.endpoints.mysql._dialect import DIALECT as MYSQL
from replikit.endpoints.postgres._dialect import DIALECT as POSTGRES
from replikit.endpoints.sqlite._dialect import DIALECT as SQLITE
from replikit.schema.convert import PYTHON, Dialect, link_foreign_keys, plan_table
from replikit.schema.identifiers import name_findings, object_names
from replikit.schema.model import Column, Index, TableId, TableSchema
from replikit.schema.types import Type

DIALECTS: dict[str, Dialect] = {
    "postgresql": POSTGRES,
    "mysql": MYSQL,
    "sqlite": SQLITE,
    "python": PYTHON,
}
RESERVED = ["select", "table", "order", "group", "user", "primary", "key", "index", "PRIMARY"]
# quotes, dots, wildcards; E-acute, dotted capital I, Kelvin sign, sharp s, sigmas, an emoji
ODD = ['"', "'", "`", " ", ".", "%", "_", "é", "\u0130", "i", "K", "\u212a", "ß", "\u03a3",
       "\u03c3", "\u03c2", "\U0001f600"]  # fmt: skip

PIECES = st.one_of(
    st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(RESERVED),
    st.sampled_from(ODD),
    st.text(st.sampled_from("aAbB_"), min_size=1, max_size=4),
)
BASE = st.lists(PIECES, min_size=1, max_size=3).map("".join)
VARIANTS: list[Callable[[str], str]] = [
    str.upper,
    str.lower,
    str.swapcase,
    lambda s: s + " ",
    lambda s: (s * 70)[:66] + "1",  # long: equal to the next in their first 66 characters
    lambda s: (s * 70)[:66] + "2",
    lambda s: "é" * 31 + "a" + s,  # equal to every such name in the first 63 bytes
    lambda s: "a" * 63 + s,  # 64+ characters, equal to every such name in the first 63
]


@st.composite
def names(draw: st.DrawFn, most: int) -> list[str]:
    """Up to ``most`` names, about half of them variants of the others."""
    bases = draw(st.lists(BASE, min_size=1, max_size=max(1, most // 2)))
    out = list(bases)
    for base in bases:
        out += [v(base) for v in draw(st.lists(st.sampled_from(VARIANTS), max_size=2))]
    return out[:most]


def _unique(candidates: list[str], dialect: Dialect, kind: Any) -> list[str]:
    """The names a source of ``dialect`` can hold together (as it stores them)."""
    seen: set[str] = set()
    out = []
    for name in candidates:
        stored = dialect.target_name(name, kind)
        key = dialect.name_key(stored, kind)
        if key not in seen and not dialect.name_problem(stored, kind) and stored == name:
            seen.add(key)
            out.append(name)
    return out


@st.composite
def catalogs(draw: st.DrawFn, source: str) -> list[TableSchema]:
    """Tables (with columns and an index) whose names ``source`` can hold."""
    dialect = DIALECTS[source]
    schemas = ["s"]
    if source == "postgresql":
        schemas = _unique(draw(names(2)), dialect, "schema")
        schemas = [s for s in schemas if not s.startswith("pg_") and s != "information_schema"]
        assume(schemas)
    tables = []
    for name in _unique(draw(names(5)), dialect, "table"):
        schema = draw(st.sampled_from(schemas))
        columns = _unique(draw(names(3)), dialect, "column")
        assume(columns)
        cols = tuple(Column(c, Type.text("text"), nullable=True) for c in columns)
        index = Index(f"i{len(tables)}", (columns[0],))
        tables.append(TableSchema(TableId(schema, name), cols, indexes=(index,)))
    assume(tables)
    return tables


# -- plan only --------------------------------------------------------------------------------
def _namespaces_are_unique(plans: list[Any], dialect: Dialect) -> None:
    tables = [(p.target_id.schema, dialect.name_key(p.target_id.name, "table")) for p in plans]
    assert len(set(tables)) == len(tables), tables
    for p in plans:
        for name, kind in [(p.target_id.name, "table"), *((c.name, "column") for c in p.columns)]:
            assert dialect.name_problem(name, kind) is None, (name, kind)
        keys = [dialect.name_key(c.name, "column") for c in p.columns]
        assert len(set(keys)) == len(keys), keys
    names = object_names(plans, dialect)
    spaces: dict[Any, list[str]] = defaultdict(list)
    schema_scope = dialect.identifiers.index_scope == "schema"
    for p in plans:
        space = p.target_id.schema if schema_scope else p.target_id
        if schema_scope:
            spaces[space].append(p.target_id.name)
        generated = [names.primary_key[p.target_id], *names.unique[p.target_id]]
        generated += [v for (t, _), v in names.sequences.items() if t == p.target_id]
        spaces[space] += [*names.indexes[p.target_id], *generated]
    for members in spaces.values():
        keys = [dialect.name_key(n, "index") for n in members]
        assert len(set(keys)) == len(keys), members
        for n in members:
            assert dialect.name_problem(n, "index") is None, n


@pytest.mark.parametrize("source", ["sqlite", "postgresql", "mysql"])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_plans_name_every_object_uniquely_or_refuse(source: str, data: st.DataObject) -> None:
    tables = data.draw(catalogs(source))
    for target_name, target in DIALECTS.items():
        keep_schemas = target_name in ("postgresql", "python")
        plans = link_foreign_keys(
            [
                plan_table(
                    t,
                    source_dialect=source,
                    target=target,
                    target_id=t.id if keep_schemas else TableId(None, t.id.name),
                )
                for t in tables
            ]
        )
        findings = name_findings(plans, target)
        event(f"{target_name}: {'refused' if findings else 'accepted'}")
        if not findings:
            _namespaces_are_unique(plans, target)
        else:
            # every finding's fix is a rename that the target can take
            assert all(f.fix and "Mappings()." in f.fix for f in findings)


# -- real databases ---------------------------------------------------------------------------
class _Servers:
    """Empty databases per family, reused across examples (emptied before each)."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request, self.tmp_path = request, tmp_path
        self.urls: dict[str, str] = {}

    def db(self, family: str, role: str) -> Db:
        if family == "sqlite":
            path = self.tmp_path / f"{role}-{uuid.uuid4().hex[:8]}.db"
            return sqlite_db(path)
        key = f"{family}-{role}"
        if key not in self.urls:
            server = self.request.getfixturevalue(
                "pg_server" if family == "postgresql" else "mysql_server"
            )
            name = f"rk_prop_{role}_{uuid.uuid4().hex[:10]}"
            self.urls[key] = server.create_database(name)
            self.request.addfinalizer(lambda: server.drop_database(name))
        db = Db(family, self.urls[key])
        _empty(db)
        return db


def _empty(db: Db) -> None:
    if db.family == "postgresql":
        for (schema,) in db.rows(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname <> 'information_schema'"
        ):
            db.execute(f"DROP SCHEMA {db.quote(str(schema))} CASCADE")
        db.execute("CREATE SCHEMA public")
    elif db.family == "mysql":
        for _, table in db.tables():
            db.execute(f"DROP TABLE {db.quote(table)}")


def _create(db: Db, tables: list[TableSchema]) -> list[tuple[str | None, str]]:
    """Create ``tables`` in ``db`` with one row each of values unique to the table."""
    created = []
    for n, t in enumerate(tables):
        schema = t.id.schema if db.family == "postgresql" else None
        if schema is not None:
            db.execute(f"CREATE SCHEMA IF NOT EXISTS {db.quote(schema)}")
        name = db.qualified(schema, t.id.name)
        cols = ", ".join(f"{db.quote(c.name)} text" for c in t.columns)
        db.execute(f"CREATE TABLE {name} ({cols})")
        first = db.quote(t.columns[0].name)
        index = db.quote(f"i{n}_{uuid.uuid4().hex[:6]}")
        db.execute(
            f"CREATE INDEX {index} ON {name} ({first}{'(20)' if db.family == 'mysql' else ''})"
        )
        values = ", ".join(f"'t{n}c{i}'" for i in range(len(t.columns)))
        db.execute(f"INSERT INTO {name} VALUES ({values})")
        created.append((schema, t.id.name))
    return created


PAIRS = [
    (s, t) for s in ("sqlite", "postgresql", "mysql") for t in ("sqlite", "postgresql", "mysql")
]


@pytest.fixture
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> _Servers:
    return _Servers(request, tmp_path)


@pytest.mark.parametrize(("source", "target"), PAIRS)
@settings(
    max_examples=int(os.environ.get("IDENT_EXAMPLES", "4")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_copies_arrive_under_unique_names_or_are_refused(
    source: str, target: str, servers: _Servers, data: st.DataObject
) -> None:
    tables = data.draw(catalogs(source))
    src, dst = servers.db(source, "src"), servers.db(target, "dst")
    created = _create(src, tables)
    task = rk.Task(src.url, dst.url)
    refused = bool(task.plan().unsupported)
    event("refused" if refused else "copied")
    if refused:
        with pytest.raises(rk.ConversionError):
            task.run()
        assert dst.tables() == []
        return
    task.run()
    arrived = dst.tables()
    assert len(arrived) == len(created), (arrived, created)
    expected = sorted(src.contents(s, n) for s, n in created)
    assert sorted(dst.contents(s, n) for s, n in arrived) == expected


# -- the rules against the servers ------------------------------------------------------------
CHARS = st.characters(max_codepoint=0xFFFF, categories=("Lu", "Ll", "Lt", "Lo", "Nd"))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    a=CHARS, other=st.one_of(CHARS, st.just("")), how=st.sampled_from(["upper", "lower", "other"])
)
def test_mysql_compares_column_names_as_its_rules_say(
    mysql_url: str, a: str, other: str, how: str
) -> None:
    """Whenever MariaDB calls two column names duplicates, their keys are equal (the rules may
    fold more than the server, which only refuses; in Latin-1 they agree exactly)."""
    b = {"upper": a.upper(), "lower": a.lower(), "other": other or a.swapcase()}[how]
    assume(a != b and len(b) == 1 and not MYSQL.name_problem(a + b, "column"))
    db = Db("mysql", mysql_url)
    error = None
    try:
        db.execute(f"CREATE TABLE t ({db.quote('x' + a)} int, {db.quote('x' + b)} int)")
    except Exception as exc:  # the server's verdict: 1060 duplicate column name
        error = exc.args[0]
    finally:
        db.execute("DROP TABLE IF EXISTS t")
    assert error in (None, 1060)
    duplicate = error == 1060
    same_key = MYSQL.name_key("x" + a, "column") == MYSQL.name_key("x" + b, "column")
    assert same_key or not duplicate, (a, b)
    if max(ord(a), ord(b)) < 0x100:
        assert same_key == duplicate, (a, b)


@pytest.mark.parametrize(
    "name",
    ["€" * 50, "€" * 51, "-" * 50, "-" * 51, "é" * 64, "ш" * 64, "中" * 50, "中" * 51, "a" * 64,
     "a" * 65, "t ", "😀", " t", ""],
)  # fmt: skip
def test_mysql_table_names_the_rules_accept_are_the_ones_the_server_creates(
    mysql_url: str, name: str
) -> None:
    db = Db("mysql", mysql_url)
    try:
        db.execute(f"CREATE TABLE {db.quote(name)} (x int)")
        created = True
    except Exception:
        created = False
    assert created == (MYSQL.name_problem(name, "table") is None)

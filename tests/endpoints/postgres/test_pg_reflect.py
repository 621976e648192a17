"""Reflection of a schema with every core type family, keys, indexes, checks and identities."""

import psycopg
import pytest
from _pg_schema import SCHEMA_SQL

import replikit as rk
from replikit.mapping import Selection
from replikit.schema.model import Catalog, Identity, TableId
from replikit.schema.types import Kind, Type


@pytest.fixture
def catalog(pg_url: str) -> Catalog:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
    return rk.endpoint(pg_url).reflect()


def test_tables_views_and_problems(catalog: Catalog) -> None:
    assert [str(t.id) for t in catalog.tables] == ["shop.kitchen", "shop.parent"]
    assert [str(v.id) for v in catalog.views] == ["shop.v"]
    assert any("shop.kitchen.p" in p and "posint" in p for p in catalog.problems)


def test_column_types(catalog: Catalog) -> None:
    t = catalog.table("shop.kitchen")
    types = {c.name: c.type for c in t.columns}
    assert types["n"] == Type.decimal(12, 2)
    assert types["ts"] == Type.timestamp(3)
    assert types["tstz"] == Type.timestamp(tz=True)
    assert types["jb"] == Type.json(binary=True)
    assert types["m"] == Type.enum(("sad", "ok", "happy"))
    assert types["ms"].kind is Kind.ARRAY
    assert types["ms"].item == types["m"]
    assert types["p"] == Type.int_(32)  # domain resolved to its base type
    assert types["r"].kind is Kind.OTHER
    assert types["ip"].kind is Kind.OTHER
    assert types["tarr"] == Type.array(Type.text(), 2)
    assert types["ch"] == Type.string(5, fixed=True)
    assert types["money"].kind is Kind.DECIMAL
    assert types["ttz"] == Type.time(tz=True)
    assert types["ts"].native == "timestamp(3) without time zone"


def test_keys_defaults_identity(catalog: Catalog) -> None:
    t = catalog.table("shop.kitchen")
    assert t.primary_key == ("id",)
    assert t.unique == (("code", "d"),)
    assert t.column("code").nullable is False
    assert t.column("code").default == "'x'::text"
    ident = t.column("id").identity
    assert ident is not None
    assert ident.kind == "serial"
    assert ident.next_value == 4
    parent = catalog.table("shop.parent")
    assert parent.column("id").identity == Identity("always", "shop.parent_id_seq", 3, 1)
    assert t.estimated_rows == 3


def test_indexes_fks_checks(catalog: Catalog) -> None:
    t = catalog.table("shop.kitchen")
    by_name = {i.name: i for i in t.indexes}
    assert by_name["kitchen_d"].columns == ("d",)
    lower = by_name["kitchen_lower"]
    assert lower.where == "(id > 0)"
    assert "lower" in lower.expressions[0]
    (fk,) = t.foreign_keys
    assert fk.ref_table == TableId("shop", "parent")
    assert fk.on_delete == "CASCADE"
    assert fk.columns == ("parent_id",)
    assert fk.ref_columns == ("id",)
    assert any("n > " in c.expression for c in t.checks)


def test_selection_filters(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
    cat = rk.endpoint(pg_url).reflect(Selection(include=("shop.par%",)))
    assert [str(t.id) for t in cat.tables] == ["shop.parent"]


def test_a_foreign_table_is_named_in_the_plan_not_left_out_silently(pg_url: str) -> None:
    """A foreign table's rows live in another database, which a copy does not read: the
    catalog's problems name it and its server."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
        except psycopg.errors.UndefinedFile:
            pytest.skip("postgres_fdw is not installed with this server")
        conn.execute("CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw "
                     "OPTIONS (dbname 'nowhere')")  # fmt: skip
        conn.execute("CREATE FOREIGN TABLE remote_orders (id int) SERVER elsewhere")
        conn.execute("CREATE TABLE local_orders (id int PRIMARY KEY)")
    catalog = rk.endpoint(pg_url).reflect()
    assert [str(t.id) for t in catalog.tables] == ["public.local_orders"]
    assert catalog.problems == (
        "public.remote_orders: a foreign table (server elsewhere) is not copied: its rows live "
        "in another database; copy from that one, or make a table of its rows here",
    )

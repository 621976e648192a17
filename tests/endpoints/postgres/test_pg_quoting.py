"""Any identifier (Unicode, quotes, reserved words; no NUL) survives CREATE TABLE + reflection."""

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints.postgres._dialect import DIALECT
from replikit.schema.model import TableId

NAMES = st.one_of(
    st.sampled_from(["select", "user", "order", "table", 'a"b', '""', "with space", "Ünïcödé"]),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1),
).filter(lambda s: len(s.encode()) <= 63)  # PostgreSQL truncates names past 63 bytes


SCHEMAS = NAMES.filter(lambda s: not s.startswith("pg_") and s != "public")


@settings(settings.get_profile("db"))
@given(table=NAMES, column=NAMES, schema=SCHEMAS)
def test_identifiers_round_trip(pg_url: str, table: str, column: str, schema: str) -> None:
    q = DIALECT.quote
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {q(schema)}")
        conn.execute(f"CREATE TABLE {q(schema)}.{q(table)} ({q(column)} int PRIMARY KEY)")
    try:
        ep = rk.endpoint(pg_url)
        catalog = ep.reflect()
        found = catalog.table(TableId(schema, table))
        assert found.column_names == (column,)
        assert found.primary_key == (column,)
        with ep.reader([found]) as reader:
            assert list(reader.read(reader.units(found)[0])) == []
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {q(schema)} CASCADE")

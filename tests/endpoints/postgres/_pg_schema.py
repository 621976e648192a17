"""A schema with every core PostgreSQL type family, shared by the reflection and read tests."""

from __future__ import annotations

import psycopg

from replikit.endpoints.postgres._ddl import primary_key_statement
from replikit.endpoints.postgres._dialect import DIALECT
from replikit.schema.convert import TablePlan
from replikit.schema.identifiers import object_names

SCHEMA_SQL = """
CREATE SCHEMA shop;
CREATE TYPE shop.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN shop.posint AS integer CHECK (VALUE > 0);
CREATE TABLE shop.parent (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name varchar(20) UNIQUE
);
CREATE TABLE shop.kitchen (
    id serial PRIMARY KEY,
    n numeric(12,2) CHECK (n > 0),
    nn numeric,
    d date,
    ts timestamp(3),
    tstz timestamptz,
    iv interval,
    j json,
    jb jsonb,
    u uuid,
    b bytea,
    m shop.mood,
    ms shop.mood[],
    p shop.posint,
    r int4range,
    ip inet,
    arr integer[],
    tarr text[][],
    ch char(5),
    money money,
    f4 real,
    f8 double precision DEFAULT 1.5,
    t time,
    ttz timetz,
    parent_id bigint REFERENCES shop.parent (id) ON DELETE CASCADE,
    code text NOT NULL DEFAULT 'x',
    UNIQUE (code, d)
);
CREATE INDEX kitchen_lower ON shop.kitchen (lower(ch)) WHERE id > 0;
CREATE INDEX kitchen_d ON shop.kitchen (d);
CREATE VIEW shop.v AS SELECT id FROM shop.kitchen;
INSERT INTO shop.parent (name) VALUES ('a'), ('b');
INSERT INTO shop.kitchen (n, nn, d, ts, tstz, iv, j, jb, u, b, m, ms, p, r, ip, arr, tarr, ch,
                          money, f4, f8, t, ttz, parent_id, code) VALUES
 (1.5, 'NaN', 'infinity', '-infinity', '0044-03-15 12:00:00.5 BC',
  '1 year 2 mons 3 days 04:05:06.5', '{"a": 1.000}', '{"b":2}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', 'ok', '{sad,happy}', 3, '[1,5)',
  '10.0.0.1/8', '{1,NULL,3}', '{{a,b},{c,d}}', 'ab', 12.34, 1.5, 'nan', '24:00:00',
  '24:00:00+05:30', 1, 'r1'),
 (NULL, 'Infinity', '0001-01-01 BC', '12345-01-01 01:02:03.123', '2024-01-01 00:00:00+02',
  '-1 day', 'null', '[]', NULL, '', NULL, '{}', NULL, 'empty', '::1', NULL, NULL, NULL, NULL,
  '-inf', 1e308, '12:34:56.789', '01:02:03-08', 2, 'r2'),
 (2, '-Infinity', '2024-02-29', '2024-01-01 00:00:00', '-infinity', '0', '1', '1', NULL, NULL,
  'happy', NULL, 7, NULL, NULL, '{}', NULL, 'x', NULL, NULL, NULL, NULL, NULL, NULL, 'r3');
ANALYZE;
"""


def add_primary_keys(url: str, plans: list[TablePlan]) -> None:
    """The primary keys of tables ``prepare`` created, which changes are applied by (``finish``
    adds them after a load, with the foreign keys that apply tests leave out)."""
    names = object_names(plans, DIALECT)
    with psycopg.connect(url, autocommit=True) as conn:
        for plan in plans:
            if (statement := primary_key_statement(plan, names)) is not None:
                conn.execute(statement)

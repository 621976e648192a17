"""Mapping rules computed by PostgreSQL's SELECT: byte for byte what Python computes.

The pushed path (:mod:`replikit.mapping.pushed`) keeps a PostgreSQL -> PostgreSQL full load in
binary COPY form with mappings. Each test compares it with Python's answer on a real server:
the HMAC of the ``hash`` mask (Hypothesis: keys of every length, text with non-ASCII), added
expressions (Hypothesis over values at the edges: NULL, NaN, overflow), and whole tasks
against the same task forced through Python. The key never appears in SQL text.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints.postgres._pushdown import FLAVOR
from replikit.mapping import Mappings, bind_table
from replikit.mapping.masking import Mask
from replikit.mapping.pushed import hmac_pads, project
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

pytestmark = pytest.mark.usefixtures("pg_server")

HYP = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# text PostgreSQL can hold (no NUL, no lone surrogates), ASCII and beyond
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@pytest.fixture
def db(pg_server: Any) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    name = f"push_{uuid.uuid4().hex[:10]}"
    url = pg_server.create_database(name)
    conn = pg_server.connect(name)
    try:
        yield url, conn
    finally:
        conn.close()
        pg_server.drop_database(name)


def _mask_sql(conn: psycopg.Connection[Any], mask: Mask, key: bytes, value: str | None) -> Any:
    """``mask`` of ``value`` as PostgreSQL computes it (the pushed SQL, key pads set with
    bound parameters as the reader sets them)."""
    table = _people(v=Type.text(native="text"))
    bound = bind_table(Mappings().mask("t", "v", mask.kind, mask.value), table, key)
    projection = project(bound, FLAVOR, "%s", {"id": "bigint", "v": "text"})
    assert projection is not None, mask
    column = projection.column("v")
    assert column.sql is not None
    with conn.transaction():
        for name, setting in projection.settings:
            conn.execute("SELECT set_config(%s, %s, true)", (name, setting))
        query = f"SELECT {column.sql} FROM (SELECT CAST(%s AS text) AS v) AS t"
        row = conn.execute(query, (*column.params, value)).fetchone()
    assert row is not None
    return row[0]


@HYP
@given(key=st.binary(min_size=1, max_size=150), value=st.none() | texts)
def test_hash_mask_in_sql_is_the_python_hmac(db, key: bytes, value: str | None) -> None:
    _, conn = db
    assert _mask_sql(conn, Mask("hash"), key, value) == Mask("hash").function(key)(value)


masks = st.sampled_from(["fake-first-name", "fake-last-name", "fake-name", "fake-email",
                         "dms-hash"]).map(Mask) | st.sampled_from("*#X%'").map(
    lambda c: Mask("digits-mask", c))  # fmt: skip
digit_texts = texts | st.lists(st.sampled_from("0123456789٣९߂²①a b-")).map("".join)


@HYP
@given(mask=masks, key=st.binary(min_size=1, max_size=80), value=st.none() | digit_texts)
def test_other_masks_in_sql_are_pythons(db, mask: Mask, key: bytes, value: str | None) -> None:
    """Fake names and e-mails (the same HMAC, the same word lists), digits-mask (Unicode
    digits as Python's ``str.isdigit`` sees them) and dms-hash, in SQL and in Python."""
    _, conn = db
    python = mask.function(key if mask.keyed else None)(value)
    assert _mask_sql(conn, mask, key, value) == python


def _people(**types: Type) -> TableSchema:
    cols = [Column("id", Type.int_(64), nullable=False)]
    cols += [Column(n, t) for n, t in types.items()]
    return TableSchema(TableId("public", "t"), tuple(cols), primary_key=("id",))


_PG_TYPES = {"a": "integer", "b": "bigint", "p": "numeric(12,2)", "s": "varchar(20)", "x": "text"}
_TYPES = {
    "a": Type.int_(32, native="integer"),
    "b": Type.int_(64, native="bigint"),
    "p": Type.decimal(12, 2, native="numeric(12,2)"),
    "s": Type.string(20, native="character varying(20)"),
    "x": Type.text(native="text"),
}
EXPRESSIONS = [  # (expression, target type): each pushable
    ("$a * $p", "numeric(14,2)"),
    ("$a + $b - 3", "int8"),
    ("$a * $a", "int8"),  # int4 overflow in PostgreSQL, not in SQLite: through Python
    ("$s || ' ' || upper($x)", "text"),
    ("lower($s) || $a", "string(60)"),
    ("coalesce($s, $x, 'none')", "string(30)"),  # too long for 30: through Python
    ("-$p * 2", "numeric(14,2)"),
    ("$b", "numeric(20,0)"),
]
ints32 = st.none() | st.integers(-(2**31), 2**31 - 1)
ints64 = st.none() | st.integers(-(2**62), 2**62)
prices = (
    st.none()
    | st.just(Decimal("NaN"))
    | st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"), places=2)
)
rows = st.tuples(ints32, ints64, prices, st.none() | texts.map(lambda t: t[:20]), st.none() | texts)


@HYP
@given(data=st.lists(rows, min_size=1, max_size=8), which=st.sampled_from(EXPRESSIONS))
def test_pushed_expressions_give_python_values(db, data, which) -> None:
    """Each expression, computed by PostgreSQL where it succeeds, equals Python's value; where
    PostgreSQL fails (overflow, too long), the pipeline falls back to Python."""
    _, conn = db
    text, target = which
    table = _people(**_TYPES)
    bound = bind_table(Mappings().add_column("t", "e", target, text), table, None)
    target_sql = {"e": _native(target)} | {c: _PG_TYPES[c] for c in _TYPES} | {"id": "bigint"}
    projection = project(bound, FLAVOR, "%s", target_sql)
    assert projection is not None, text
    pushed = projection.column("e")
    assert pushed.sql is not None
    conn.execute("DROP TABLE IF EXISTS t")
    conn.execute(
        f"CREATE TABLE t (id bigint, {', '.join(f'{c} {t}' for c, t in _PG_TYPES.items())})"
    )
    for i, row in enumerate(data):
        conn.execute("INSERT INTO t VALUES (%s, %s, %s, %s, %s, %s)", (i, *row))
    for i, row in enumerate(data):
        values = dict(zip(("id", *_TYPES), (i, *row), strict=True))
        try:
            expected = bound.row(values)["e"]
        except rk.DataError:
            expected = "error"
        try:
            got = conn.execute(f"SELECT {pushed.sql} FROM t WHERE id = %s",
                               (*pushed.params, i)).fetchone()[0]  # fmt: skip
            got = _fits(got, target)
        except psycopg.DataError:
            got = "fallback"
        if got == "fallback":
            continue  # the pipeline loads this unit through Python: Python's answer
        assert got == expected, (text, values)


def _native(target: str) -> str:
    return {"numeric(14,2)": "numeric(14,2)", "int8": "bigint", "text": "text",
            "string(60)": "varchar(60)", "string(30)": "varchar(30)",
            "numeric(20,0)": "numeric(20,0)"}[target]  # fmt: skip


def _fits(value: Any, target: str) -> Any:
    """What the target column does with the pushed value: a text too long is refused
    (the pipeline then falls back), never cut."""
    if target.startswith("string(") and value is not None and len(value) > int(target[7:-1]):
        raise psycopg.errors.StringDataRightTruncation("too long")
    return value


def test_unpushable_rules_stay_in_python() -> None:
    table = _people(**_TYPES, c=Type.string(3, fixed=True, native="character(3)"))
    target_sql = {c: "text" for c in ("id", "a", "b", "p", "s", "x", "c", "e")}
    for rules in (
        Mappings().filter("t", ("s", "=", "a")),  # text: collations differ
        Mappings().filter("t", ("p", ">", 1)),  # numeric NaN
        Mappings().mask("t", "c", "hash"),  # char(n) is trimmed by a cast to text
        Mappings().mask("t", "s", "digits-randomize"),
        Mappings().mask("t", "s", "fake-phone"),  # 64-bit arithmetic
        Mappings().mask("t", "s", "null").add_column("t", "e", "text", "$s"),
        Mappings().add_column("t", "e", "text", "$a / 2"),
        Mappings().add_column("t", "e", "text", "$p || 'x'"),  # decimals print differently
        Mappings().add_column("t", "e", "numeric(16,2)", "$a * $p"),  # doubles too coarse
        Mappings().add_column("t", "e", "numeric(14,1)", "$a * $p"),  # would round
        Mappings().add_column("t", "e", "text", "$AR_H_OPERATION"),
        Mappings().add_column("t", "e", "text", "substr($s, 2)"),
        Mappings().change_type("t", "a", "string(10)"),
    ):
        bound = bind_table(rules, table, b"k")
        assert project(bound, FLAVOR, "%s", target_sql) is None, rules.rules


SOURCE = """
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, quantity integer,
    amount numeric(12,2), sku varchar(64), note text, status varchar(16));
INSERT INTO orders SELECT g, g % 50, (g * 7) % 101, ((g * 7919) % 1000000) / 100.0,
    'SKU-' || g || CASE WHEN g % 3 = 0 THEN ' é 😀' ELSE '' END,
    CASE WHEN g % 4 = 0 THEN NULL ELSE 'note ' || g END,
    (ARRAY['paid','late','Ünpaid'])[1 + g % 3]
FROM generate_series(1, 3000) g;
INSERT INTO orders VALUES (5001, 1, 2147483647, 1.00, NULL, NULL, 'x');
"""
SECRET = "pushed-test-secret"


def _rules(kind: str) -> Mappings:
    rules = (
        Mappings()
        .rename_table("orders", "orders_mapped")
        .rename_column("orders", "quantity", "qty")
        .rename_column("orders", "note", "remark")
        .filter("orders", ("customer_id", "<=", 25))
    )
    if kind == "masks":
        return (
            rules.mask("orders", "note", "dms-hash")
            .mask("orders", "status", "redact")
            .mask("orders", "amount", "null")
        )
    rules = (
        rules.mask("orders", "sku", "hash")
        .add_column("orders", "total", "numeric(14,2)", "$quantity * $amount")
        .add_column("orders", "label", "string(40)", "upper($status) || '-' || $customer_id")
    )
    if kind == "overflow":  # 2147483647 * 2 overflows PostgreSQL's integer, not SQLite's
        rules = rules.add_column("orders", "twice", "int8", "$quantity * 2")
    return rules


def _same(change: Any) -> Any:
    return change


def test_units_in_other_processes_fall_back_to_python_too(pg_server) -> None:
    """A unit run in a process pool (UnitLoader) whose pushed SELECT fails is loaded through
    Python there: the target equals the same task forced through Python."""
    from concurrent.futures import ProcessPoolExecutor

    names = [f"push_{uuid.uuid4().hex[:10]}" for _ in range(3)]
    src, fast, slow = (pg_server.create_database(n) for n in names)
    try:
        with pg_server.connect(names[0]) as conn:
            conn.execute(SOURCE)
        s = rk.TaskSettings(progress=False, mask_secret=SECRET, split_rows=1000)
        with ProcessPoolExecutor(2) as pool:
            rk.Task(src, fast, mappings=_rules("overflow"), settings=s, executor=pool).run()
        rk.Task(src, slow, mappings=_rules("overflow"), settings=s, transforms=[_same]).run()
        with pg_server.connect(names[1]) as a, pg_server.connect(names[2]) as b:
            assert _dump(a) == _dump(b)
    finally:
        for n in names:
            pg_server.drop_database(n)


def _dump(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT * FROM orders_mapped ORDER BY id").fetchall()


@pytest.mark.parametrize("kind", ["rules", "overflow", "masks"])
def test_a_task_computes_the_rules_in_the_source_select(pg_server, kind, caplog) -> None:
    """PostgreSQL -> PostgreSQL with renames, a hash mask, two added columns and a filter:
    rows stay in binary COPY form (no Python decoding) and the target equals the same task
    forced through Python, byte for byte. With a value PostgreSQL cannot compute, the unit
    is loaded through Python instead, and still equals it."""
    names = [f"push_{uuid.uuid4().hex[:10]}" for _ in range(3)]
    src, fast, slow = (pg_server.create_database(n) for n in names)
    try:
        with pg_server.connect(names[0]) as conn:
            conn.execute(SOURCE)
        s = rk.TaskSettings(progress=False, mask_secret=SECRET)
        with rk.endpoint(src) as ep, rk.endpoint(fast) as dst:
            pipe = rk.Pipeline(ep.reader(["orders"]), dst.writer(), mappings=_rules(kind),
                               mask_secret=SECRET)  # fmt: skip
            [plan] = pipe.plans()
            assert pipe._raw_ok(plan) and pipe._projection(plan) is not None
            pipe.reader.close()  # type: ignore[attr-defined]
        task = rk.Task(src, fast, mappings=_rules(kind), settings=s)
        with caplog.at_level("INFO", logger="replikit.pipeline"):
            task.run()
        fell_back = "loading through Python" in caplog.text
        assert fell_back == (kind == "overflow")
        rk.Task(src, slow, mappings=_rules(kind), settings=s, transforms=[_same]).run()
        with pg_server.connect(names[1]) as a, pg_server.connect(names[2]) as b:
            pushed, python = _dump(a), _dump(b)
            types_a = a.execute(_TYPES_SQL).fetchall()
            types_b = b.execute(_TYPES_SQL).fetchall()
        assert pushed == python and len(pushed) > 100
        assert types_a == types_b
    finally:
        for n in names:
            pg_server.drop_database(n)


_TYPES_SQL = (
    "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale "
    "FROM information_schema.columns WHERE table_name = 'orders_mapped' ORDER BY ordinal_position"
)


def test_the_pushed_path_is_taken_and_keeps_the_key_out_of_sql(pg_server) -> None:
    from replikit.endpoints.postgres.source import _select

    name = f"push_{uuid.uuid4().hex[:10]}"
    url = pg_server.create_database(name)
    try:
        with pg_server.connect(name) as conn:
            conn.execute(SOURCE)
        target = pg_server.create_database(name + "_t")
        s = rk.TaskSettings(progress=False, mask_secret=SECRET)
        task = rk.Task(url, target, mappings=_rules("rules"), settings=s)
        plan = task.plan()
        assert plan is not None
        with rk.endpoint(url) as ep:
            pipe = rk.Pipeline(ep.reader(["orders"]), rk.endpoint(target).writer(),
                               mappings=_rules("rules"), mask_secret=SECRET)  # fmt: skip
            [p] = pipe.plans()
            assert pipe._raw_ok(p)
            pipe.statistics.add(str(p.source.id), str(p.target_id), None)
            [unit] = pipe._work([p], {})
            unit = unit[1]
            assert unit.select is not None and unit.where is not None
            table = pipe._sources[p.target_id]
            statement, params = _select(table, unit.range, None, unit, unit.select)
            inner, outer = hmac_pads(SECRET.encode(), "hash")
            with pg_server.connect(name) as conn:
                text = statement.as_string(conn)
            for secret in (SECRET, inner.hex(), outer.hex()):
                assert secret not in text and secret not in repr(unit)
                assert secret not in repr(params)
            pipe.reader.close()  # type: ignore[attr-defined]
        pg_server.drop_database(name + "_t")
    finally:
        pg_server.drop_database(name)

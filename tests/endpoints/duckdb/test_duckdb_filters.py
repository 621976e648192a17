"""Row filters of a DuckDB source: pushed down to the SELECT, never dropping a row Python keeps.

The reader narrows a unit by the part of its row filter DuckDB tests exactly (numbers, text
equality, booleans, NULL tests); Python still tests every row. Hypothesis draws rows and
filters (values at the edges of what DuckDB binds: 38-digit and longer decimals, 128-bit
integers) and checks that the reader sends every row Python keeps, and only those when the
whole filter was pushed.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.mapping.filters import AllOf, AnyOf, Predicate, condition
from replikit.pipeline.contracts import Unit

COLUMNS = ("id", "n", "d", "s", "b", "h")
DDL = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY, n BIGINT, d DECIMAL(12, 2), s VARCHAR, "
    "b BOOLEAN, h HUGEINT)"
)
_D = Decimal("0.01")
ints = st.none() | st.integers(-5, 5)
decimals = st.none() | st.integers(-500, 500).map(lambda i: Decimal(i) * _D)
texts = st.none() | st.sampled_from(["a", "A", "b", "é", ""])
bools = st.none() | st.booleans()
huge = st.none() | st.sampled_from([0, 1, -(2**126), 2**126, 2**127 - 1])
rows = st.lists(st.tuples(ints, decimals, texts, bools, huge), max_size=12)

# values a filter compares with: some beyond what DuckDB binds exactly
decimal_values = st.integers(-600, 600).map(lambda i: Decimal(i) * _D) | st.sampled_from([
    Decimal("1.0000000000000000000000000000000000000001"),  # 41 digits: DuckDB binds a DOUBLE
    Decimal("0.99999999999999999999999999999999999999999"),
    Decimal("1.00000000000000000000000000000000001"),
])  # fmt: skip
int_values = st.integers(-6, 6) | st.sampled_from([2**127, -(2**127) - 1, 2**126])


def _conditions() -> st.SearchStrategy[Predicate]:
    ordered = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    nulls = st.sampled_from(["is null", "is not null"])
    leaves = st.one_of(
        st.builds(lambda op, v: condition("n", op, v), ordered, int_values),
        st.builds(lambda op, v: condition("h", op, v), ordered, int_values),
        st.builds(lambda op, v: condition("d", op, v), ordered, decimal_values),
        st.builds(lambda a, b: condition("d", "between", a, b), decimal_values, decimal_values),
        st.builds(lambda v: condition("s", "in", *v), st.lists(texts.filter(bool), min_size=1)),
        st.builds(
            lambda op, v: condition("s", op, v), st.sampled_from(["=", "<"]), texts.filter(bool)
        ),
        st.builds(lambda v: condition("b", "=", v), st.booleans()),
        st.builds(lambda c, op: condition(c, op), st.sampled_from(COLUMNS[1:]), nulls),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda p: AllOf(tuple(p))),
            st.lists(inner, min_size=1, max_size=3).map(lambda p: AnyOf(tuple(p))),
        ),
        max_leaves=5,
    )


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("duckdb_filters") / "f.duckdb"
    duckdb.connect(str(path)).close()
    return path


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=rows, where=_conditions())
def test_the_reader_sends_every_row_the_filter_keeps(database: Path, data, where) -> None:
    conn = duckdb.connect(str(database))
    conn.execute("DROP TABLE IF EXISTS t")
    conn.execute(DDL)
    for i, row in enumerate(data):
        conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", [i, *row])
    conn.close()
    with rk.endpoint(f"duckdb:///{database}") as ep:
        reader = ep.reader(["t"])
        [table] = reader.tables
        bound = where.bind({c.name: c.type for c in table.columns}, "test")
        sent = [tuple(r) for b in reader.read(Unit(table.id, where=bound)) for r in b.rows]
    everything = [(i, *row) for i, row in enumerate(data)]
    kept = [r for r in everything if bound.holds(dict(zip(COLUMNS, r, strict=True)))]
    assert set(kept) <= set(sent)  # never a row the filter keeps left behind
    if _exact(bound):  # every condition pushed: the source sent exactly those rows
        assert sorted(sent) == sorted(kept)


def _exact(p: Predicate) -> bool:
    """Whether DuckDB can test all of ``p`` as Python does: no text order (collations
    differ), decimals of at most 38 digits, integers of at most 128 bits."""
    if isinstance(p, AllOf | AnyOf):
        return all(_exact(q) for q in p.parts)
    if p.column == "s" and p.op not in ("=", "in", "is null", "is not null"):
        return False
    if p.column == "h" and p.op not in ("is null", "is not null"):
        return False  # HUGEINT: compared in Python
    for v in p.values:
        if isinstance(v, Decimal) and len(v.as_tuple().digits) > 38:
            return False
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**127) <= v < 2**127:
            return False
    return True


def test_a_task_from_duckdb_filters_in_the_query(tmp_path: Path) -> None:
    path = tmp_path / "src.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute(DDL)
    conn.execute(
        "INSERT INTO t SELECT i, i % 10, i * 0.5, 's' || (i % 3), i % 2 = 0, i "
        "FROM range(1000) r(i)"
    )
    conn.close()
    target = f"sqlite:///{tmp_path / 'dst.db'}"
    rules = rk.Mappings().filter("t", ("n", "<", 3), ("s", "in", "s1", "s2"))
    rk.Task(f"duckdb:///{path}", target, mappings=rules).run()
    with rk.endpoint(target) as ep:
        [table] = ep.reflect().tables
    import sqlite3

    got = sqlite3.connect(tmp_path / "dst.db").execute("SELECT count(*) FROM t").fetchone()[0]
    expected = sum(1 for i in range(1000) if i % 10 < 3 and i % 3 in (1, 2))
    assert table.id.name == "t" and got == expected

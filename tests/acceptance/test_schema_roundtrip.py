"""Schema objects round trip A -> B -> A between every pair of engines (#15 item 5).

Hypothesis writes a table from a small grammar over two nullable integer columns: a CHECK,
a default, a generated column and a view filtered by another predicate. The table goes from
engine A to engine B and back into a fresh database of A; there the view returns the same
rows, the generated column holds the same values, the default gives the same value and the
CHECK accepts and refuses the same probe rows as in the original.
"""

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import replikit as rk
from engines import ENGINES, Engine, engine  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PAIRS = [(a, b) for a, b in itertools.permutations(ENGINES, 2)]
_COLUMNS = st.sampled_from(["a", "b"])
_LITERALS = st.integers(0, 9).map(str)


def _ints() -> st.SearchStrategy[str]:
    leaves = st.one_of(_COLUMNS, _LITERALS, _COLUMNS.map(lambda c: f"COALESCE({c}, 1)"))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            st.tuples(_bools(inner), inner, inner).map(
                lambda t: f"(CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END)"
            ),
        ),
        max_leaves=4,
    )


def _bools(ints: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    compare = st.tuples(ints, st.sampled_from(["<", "<=", "=", "<>", ">", ">="]), ints).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    )
    null = st.tuples(_COLUMNS, st.sampled_from(["IS NULL", "IS NOT NULL"])).map(
        lambda t: f"({t[0]} {t[1]})"
    )
    atoms = st.one_of(compare, null)
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            inner.map(lambda x: f"(NOT {x})"),
            st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
        ),
        max_leaves=3,
    )


_VALUES = st.one_of(st.none(), st.integers(-5, 9))
_CASES = st.fixed_dictionaries(
    {
        "check": _bools(_ints()),
        "where": _bools(_ints()),
        "generated": _ints(),
        "default": st.tuples(_LITERALS, st.sampled_from(["+", "*"]), _LITERALS).map(" ".join),
        "rows": st.lists(st.tuples(_VALUES, _VALUES), min_size=1, max_size=6),
    }
)
_GENERATED = {
    "postgresql": "STORED",
    "mysql": "STORED",
    "sqlite": "STORED",
    "duckdb": "VIRTUAL",
}
_PROBES = [(None, None), (0, 0), (1, 9), (9, 1), (-5, 3), (4, None)]


def _create(db: Engine, n: int, case: dict[str, Any]) -> None:
    t, v = f"t{n}", f"v{n}"
    default = f"({case['default']})" if db.dialect in ("mysql", "sqlite") else case["default"]
    db.execute(
        f"CREATE TABLE {t} (id int PRIMARY KEY, a int, b int, d int DEFAULT {default}, "
        f"g int GENERATED ALWAYS AS ({case['generated']}) {_GENERATED[db.dialect]}, "
        f"CONSTRAINT c{n} CHECK ({case['check']}))"
    )
    for i, (a, b) in enumerate(case["rows"]):
        _try(db, f"INSERT INTO {t} (id, a, b) VALUES ({i}, {_sql(a)}, {_sql(b)})")
    db.execute(f"CREATE VIEW {v} AS SELECT id, a, b, g FROM {t} WHERE {case['where']}")


def _sql(value: int | None) -> str:
    return "NULL" if value is None else str(value)


def _try(db: Engine, statement: str) -> bool:
    try:
        db.execute(statement)
    except Exception:
        return False
    return True


def _copy(src: Engine, dst: Engine, n: int) -> tuple[Any, rk.Task]:
    mappings = rk.Mappings().include("%", f"_{n}")  # t{n} and v{n}: views are selected alike
    task = rk.Task(src.url, dst.url, mappings=mappings, settings=rk.TaskSettings(progress=False))
    plan = task.plan()
    stats = task.run()
    refused = {o.name: e for o, e in stats.objects if e}
    assert refused == {}, refused
    return plan, task


def _state(db: Engine, table: Any, view: Any) -> dict[str, Any]:
    t, v = db.name(table), db.name(view)
    out = {
        "table": db.query(f"SELECT id, a, b, d, g FROM {t} ORDER BY id"),
        "view": db.query(f"SELECT id, a, b, g FROM {v} ORDER BY id"),
    }
    accepted = []
    for i, (a, b) in enumerate(_PROBES):
        key = 1000 + i
        ok = _try(db, f"INSERT INTO {t} (id, a, b) VALUES ({key}, {_sql(a)}, {_sql(b)})")
        accepted.append(db.query(f"SELECT d, g FROM {t} WHERE id = {key}") if ok else None)
    db.execute(f"DELETE FROM {t} WHERE id >= 1000")
    out["probes"] = accepted
    return out


def _own(plan: Any, n: int) -> list[Any]:
    """The schema objects of example ``n`` (views of earlier examples are in the report)."""
    mine = (f"t{n}", f"v{n}")
    return [
        o
        for o in plan.assessment.schema.objects
        if o.name.split(".")[-1] in mine or o.name.split(".")[-2:-1] == [f"t{n}"]
    ]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_checks_defaults_generated_columns_and_views_round_trip(engine, first, second):  # noqa: F811
    a, b, back = engine(first), engine(second), engine(first)
    counter = itertools.count()

    @settings(
        max_examples=4,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(case=_CASES)
    def check(case: dict[str, Any]) -> None:
        n = next(counter)
        _create(a, n, case)
        there, _ = _copy(a, b, n)
        objects = {o.kind: o for o in _own(there, n)}
        for kind in ("check", "default", "generated column", "view"):
            assert objects[kind].converted, str(objects[kind])
        home, _ = _copy(b, back, n)
        (table,) = home.assessment.tables
        (view,) = [o for o in _own(home, n) if o.kind == "view"]
        assert all(o.converted for o in _own(home, n)), [str(o) for o in _own(home, n)]
        (original,) = there.assessment.tables
        want = _state(a, original.source.id, f"v{n}")
        got = _state(back, table.target_id, view.target)
        assert got == want, case

    check()

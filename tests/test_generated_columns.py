"""Generated columns across engines (#15): created as generated columns of the target with the
expression translated, never written by the load or CDC, verified after the load; an
expression that does not convert falls back to a plain column holding the source's values,
and says so."""

import pytest

import replikit as rk
from engines import ENGINES, Engine, engine  # noqa: F401 - the fixture
from replikit.schema.report import Verdict

# one table per source engine: total = price * qty (stored), label = upper(name) (virtual
# where the engine has virtual columns)
_TABLES = {
    "postgresql": (
        "CREATE TABLE item (id int PRIMARY KEY, price int NOT NULL, qty int NOT NULL, "
        "name text, total int GENERATED ALWAYS AS (price * qty) STORED, "
        "label text GENERATED ALWAYS AS (upper(name)) STORED)"
    ),
    "mysql": (
        "CREATE TABLE item (id int PRIMARY KEY, price int NOT NULL, qty int NOT NULL, "
        "name varchar(20), total int GENERATED ALWAYS AS (price * qty) STORED, "
        "label varchar(20) GENERATED ALWAYS AS (upper(name)) VIRTUAL)"
    ),
    "sqlite": (
        "CREATE TABLE item (id INTEGER PRIMARY KEY, price INTEGER NOT NULL, qty INTEGER "
        "NOT NULL, name TEXT, total INTEGER GENERATED ALWAYS AS (price * qty) STORED, "
        "label TEXT AS (upper(name)) VIRTUAL)"
    ),
    "duckdb": (
        "CREATE TABLE item (id INTEGER PRIMARY KEY, price INTEGER NOT NULL, qty INTEGER "
        "NOT NULL, name VARCHAR, total INTEGER GENERATED ALWAYS AS (price * qty) VIRTUAL, "
        "label VARCHAR GENERATED ALWAYS AS (upper(name)) VIRTUAL)"
    ),
}
_ROWS = "INSERT INTO item (id, price, qty, name) VALUES (1, 5, 2, 'pen'), (2, 7, 3, NULL)"


def _source(engine, dialect: str) -> Engine:  # noqa: F811
    db = engine(dialect)
    db.execute(_TABLES[dialect], _ROWS)
    return db


@pytest.mark.parametrize("target", ENGINES)
@pytest.mark.parametrize("source", ENGINES)
def test_generated_columns_are_generated_in_the_target(engine, source, target):  # noqa: F811
    src, dst = _source(engine, source), engine(target)
    task = rk.Task(src.url, dst.url, settings=rk.TaskSettings(progress=False))
    report = task.plan().assessment.schema.of_kind("generated column")
    assert {o.name.rsplit(".", 1)[1]: o.verdict for o in report} == {
        "total": Verdict.EXACT,
        "label": Verdict.EXACT,
    }, [str(o) for o in report]
    (plan,) = task.plan().assessment.tables
    stats = task.run()
    assert stats.total_rows == 2
    item = dst.name(plan.target_id)
    assert dst.query(f"SELECT id, total, label FROM {item} ORDER BY id") == [
        (1, 10, "PEN"),
        (2, 21, None),
    ]
    # the validation engine compares them with the source's too
    if source != "mysql" and target != "mysql":  # one server pair is enough here
        assert rk.validate(src.url, dst.url, include=["%.item"] if source != "sqlite" else []).ok
    # the target computes them: a new row gets its values from the expression
    dst.execute(f"INSERT INTO {item} (id, price, qty, name) VALUES (3, 4, 4, 'cup')")
    assert dst.query(f"SELECT total, label FROM {item} WHERE id = 3") == [(16, "CUP")]


def test_stored_and_virtual_follow_what_the_target_has(engine):  # noqa: F811
    src = _source(engine, "mysql")
    report = {
        target: {
            o.name.rsplit(".", 1)[1]: o
            for o in rk.Task(src.url, engine(target).url)
            .plan()
            .assessment.schema.of_kind("generated column")
        }
        for target in ("postgresql", "duckdb", "sqlite")
    }
    assert report["postgresql"]["label"].sql.endswith("STORED")
    assert "VIRTUAL in the source, STORED in postgresql" in report["postgresql"]["label"].reason
    assert report["duckdb"]["total"].sql.endswith("VIRTUAL")
    assert report["sqlite"]["label"].sql == 'UPPER("name") VIRTUAL'


def test_expression_that_does_not_convert_is_a_plain_column_with_the_source_values(
    engine,  # noqa: F811
):
    src = engine("postgresql")
    src.execute(
        "CREATE TABLE t (id int PRIMARY KEY, a int[], n int GENERATED ALWAYS AS "
        "(cardinality(a)) STORED, w text GENERATED ALWAYS AS (md5(id::text)) STORED)",
        "INSERT INTO t (id, a) VALUES (1, '{1,2,3}'), (2, '{}')",
    )
    dst = engine("sqlite")
    task = rk.Task(src.url, dst.url, mappings=rk.Mappings().include("public", "t"))
    objects = {o.name: o for o in task.plan().assessment.schema.of_kind("generated column")}
    plain = [o for o in objects.values() if o.verdict is Verdict.NOT_CONVERTED]
    assert len(plain) == 2, [str(o) for o in objects.values()]
    for o in plain:
        assert "plain column holding the source's values" in (o.reason or "")
    assert "plain column holding the source's values" in str(task.plan())
    task.run()
    assert dst.query('SELECT id, n, w FROM "t" ORDER BY id') == src.query(
        "SELECT id, n, w FROM t ORDER BY id"
    )


def test_generated_columns_values_setting_copies_values(engine):  # noqa: F811
    src, dst = _source(engine, "sqlite"), engine("postgresql")
    settings = rk.TaskSettings(generated_columns="values", progress=False)
    task = rk.Task(src.url, dst.url, settings=settings)
    report = task.plan().assessment.schema.of_kind("generated column")
    assert {o.verdict for o in report} == {Verdict.NOT_CONVERTED}
    task.run()
    dst.execute("INSERT INTO public.item (id, price, qty, total) VALUES (3, 1, 1, 99)")
    assert dst.query("SELECT id, total FROM public.item ORDER BY id") == [(1, 10), (2, 21), (3, 99)]


def test_different_values_in_the_target_fail_the_table(engine):  # noqa: F811
    src = engine("postgresql")
    src.execute(
        "CREATE TABLE d (id int PRIMARY KEY, a int, b int, "
        "half int GENERATED ALWAYS AS (a / b) STORED)",
        "INSERT INTO d (id, a, b) VALUES (1, 7, 2), (2, 8, 2)",
    )
    dst = engine("mysql")
    task = rk.Task(src.url, dst.url, mappings=rk.Mappings().include("public", "d"))
    with pytest.raises(rk.TaskError, match="half") as caught:
        task.run()
    assert "generated_columns='values'" in str(caught.value)
    assert "compute other values" in task.statistics()["public.d"].error


@pytest.mark.parametrize(
    ("source", "target"),
    [("sqlite", t) for t in ENGINES] + [("postgresql", "sqlite"), ("mysql", "duckdb")],
)
def test_cdc_never_writes_generated_columns(engine, source, target):  # noqa: F811
    src = _source(engine, source)
    dst = engine(target)
    task = rk.Task(
        rk.endpoint(src.url, cdc_setup=True) if source == "sqlite" else src.url,
        dst.url,
        migration_type="full-load-and-cdc",
        settings=rk.TaskSettings(stop_when_idle=2, progress=False),
    )
    task.run()
    src.execute(
        "INSERT INTO item (id, price, qty, name) VALUES (3, 2, 2, 'ink')",
        "UPDATE item SET qty = 10 WHERE id = 1",
        "DELETE FROM item WHERE id = 2",
    )
    (plan,) = task.plan().assessment.tables
    task.run()
    assert dst.query(f"SELECT id, total, label FROM {dst.name(plan.target_id)} ORDER BY id") == [
        (1, 50, "PEN"),
        (3, 4, "INK"),
    ]


def test_a_generation_the_target_refuses_becomes_a_plain_column(engine):  # noqa: F811
    src = engine("sqlite")
    # SQLite takes any expression; PostgreSQL refuses text for an integer column
    src.execute(
        "CREATE TABLE code (id INTEGER PRIMARY KEY, name TEXT, n INTEGER AS (upper(name)))",
        "INSERT INTO code (id, name) VALUES (1, '12'), (2, '7')",
    )
    dst = engine("postgresql")
    task = rk.Task(src.url, dst.url, settings=rk.TaskSettings(progress=False))
    (planned,) = task.plan().assessment.schema.of_kind("generated column")
    assert planned.verdict is Verdict.EXACT
    stats = task.run()
    assert dst.query("SELECT id, n FROM public.code ORDER BY id") == [(1, 12), (2, 7)]
    (error,) = [e for o, e in stats.objects if o.kind == "generated column"]
    assert "postgresql refused the table with its generated columns" in error
    assert any("copied as plain values" in w for w in stats["code"].warnings)

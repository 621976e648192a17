"""SQL-language functions offered for review (#15 item 3): a PostgreSQL ``LANGUAGE sql``
function of one expression is translated for MySQL (CREATE FUNCTION) and DuckDB (CREATE
MACRO), never created by the task; the offered statement, run by a person, returns what
PostgreSQL returns. Other functions are not converted, with the reason."""

import pytest

import replikit as rk
from engines import engine  # noqa: F401 - the fixture
from replikit.schema.report import Verdict

_FUNCTIONS = [
    "CREATE TABLE t (id int PRIMARY KEY)",
    # Sakila's, unnamed parameters and OPERATOR(pg_catalog.||)
    """CREATE FUNCTION last_day(timestamp without time zone) RETURNS date AS $_$
      SELECT CASE
        WHEN EXTRACT(MONTH FROM $1) = 12 THEN
          (((EXTRACT(YEAR FROM $1) + 1) operator(pg_catalog.||) '-01-01')::date
           - INTERVAL '1 day')::date
        ELSE
          ((EXTRACT(YEAR FROM $1) operator(pg_catalog.||) '-' operator(pg_catalog.||)
            (EXTRACT(MONTH FROM $1) + 1) operator(pg_catalog.||) '-01')::date
           - INTERVAL '1 day')::date
        END
    $_$ LANGUAGE sql IMMUTABLE STRICT""",
    "CREATE FUNCTION net(price numeric(10,2), qty integer) RETURNS numeric(12,2) "
    "LANGUAGE sql IMMUTABLE RETURN price * qty",
    "CREATE FUNCTION ids() RETURNS SETOF integer LANGUAGE sql AS $$ SELECT id FROM t $$",
    "CREATE FUNCTION first_id() RETURNS integer LANGUAGE sql AS $$ SELECT min(id) FROM t $$",
    "CREATE FUNCTION plus(a int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN a + 1; END $$",
]
_CALLS = {
    "last_day": ["'2024-02-10 08:00:00'", "'2023-12-31 00:00:00'"],
    "net": ["2.50, 4", "19.99, 3"],
}


@pytest.mark.parametrize("target", ["mysql", "duckdb"])
def test_sql_functions_are_offered_for_review_and_work_when_run(engine, target):  # noqa: F811
    src = engine("postgresql")
    src.execute(*_FUNCTIONS)
    dst = engine(target)
    task = rk.Task(src.url, dst.url, mappings=rk.Mappings().include("public", "%"))
    report = {o.name: o for o in task.plan().assessment.schema.of_kind("function")}
    assert {n: o.verdict for n, o in report.items()} == {
        "public.last_day": Verdict.REVIEW,
        "public.net": Verdict.REVIEW,
        "public.ids": Verdict.NOT_CONVERTED,
        "public.first_id": Verdict.NOT_CONVERTED,
        "public.plus": Verdict.NOT_CONVERTED,
    }
    assert "returns a set" in report["public.ids"].reason
    assert "a query, not one expression" in report["public.first_id"].reason
    assert "not created" in report["public.net"].reason
    task.run()
    # not created by the task (MySQL has a LAST_DAY of its own)
    with pytest.raises(Exception):  # noqa: B017, PT011 - each driver has its own
        dst.query(f"SELECT net({_CALLS['net'][0]})")
    for name in ("last_day", "net"):
        dst.execute(report[f"public.{name}"].sql)
        for args in _CALLS[name]:
            (want,) = src.query(f"SELECT {name}({args})")
            if target == "duckdb" and name == "last_day":
                args = f"TIMESTAMP {args}"
            (got,) = dst.query(f"SELECT {name}({args})")
            assert got == want, (name, args)


def test_sqlite_has_no_sql_functions(engine):  # noqa: F811
    src = engine("postgresql")
    src.execute(*_FUNCTIONS)
    task = rk.Task(src.url, engine("sqlite").url, mappings=rk.Mappings().include("public", "%"))
    net = next(
        o for o in task.plan().assessment.schema.of_kind("function") if o.name.endswith("net")
    )
    assert net.verdict is Verdict.NOT_CONVERTED and "sqlite has no SQL functions" in net.reason

"""Values DuckDB cannot hold are declared in the plan or refused by row, naming table, column
and key; the sans-IO value conversions round-trip."""

from decimal import Decimal

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

import replikit as rk
from replikit.changes import Change, Op, Transaction
from replikit.endpoints.duckdb import _values as v
from replikit.endpoints.duckdb._dialect import DIALECT
from replikit.pipeline.contracts import Batch, Checkpoint
from replikit.positions import SqliteSeq
from replikit.schema.convert import Fidelity, plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Kind, Type


def test_nan_decimal_from_postgres_is_declared_then_refused_by_row(pg_url, tmp_path):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE prices (id int PRIMARY KEY, amount numeric(10,2))")
        conn.execute("INSERT INTO prices VALUES (1, 1.5), (2, 'NaN'), (3, 2)")
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"duckdb:///{tmp_path / 'p.duckdb'}") as duck:
        task = rk.Task(pg, duck, mappings=rk.Mappings().include("public", "prices"))
        [plan] = task.plan().assessment.tables
        [amount] = [c for c in plan.columns if c.name == "amount"]
        assert "NaN" in (amount.reason or "")  # declared before data moves
        with pytest.raises(rk.TaskError):
            task.run()
        [stat] = task.statistics()
        assert stat.state.value != "Table completed"
        assert "public.prices" in str(stat.error) and "amount" in str(stat.error)
        assert "key id=2" in str(stat.error), stat.error


def _plan(columns):
    table = TableSchema(
        TableId(None, "t"), (Column("id", Type.int_(64), nullable=False), *columns), ("id",)
    )
    return plan_table(table, source_dialect="python", target=DIALECT)


def test_a_refused_row_names_table_column_and_key(tmp_path):
    plan = _plan([Column("d", Type.decimal(4, 2)), Column("n", Type.text(), nullable=False)])
    with rk.endpoint(f"duckdb:///{tmp_path / 'x.duckdb'}") as duck:
        writer = duck.writer()
        writer.prepare([plan], "drop-and-create")
        rows = [[1, Decimal("1.5"), "a"], [2, Decimal("NaN"), "b"]]
        with pytest.raises(rk.DataError) as info:
            writer.load(plan, [Batch(plan.source.id, ("id", "d", "n"), rows)])
        assert (info.value.table, info.value.column, info.value.key) == ("t", "d", {"id": 2})
        with pytest.raises(rk.DataError) as info:
            writer.load(plan, [Batch(plan.source.id, ("id", "d", "n"), [[7, None, None]])])
        assert (info.value.column, info.value.key) == ("n", {"id": 7})
        writer.finish([plan])
        # the same through CDC apply: the whole transaction, checkpoint included, rolls back
        apply = duck.change_writer()
        bad = Change(
            Op.INSERT, plan.target_id, {"id": 9}, after={"id": 9, "d": Decimal("123.4"), "n": "x"}
        )
        cp = Checkpoint("t1", start=SqliteSeq(0), position=SqliteSeq(1))
        with pytest.raises(rk.DataError) as info:
            apply.apply(
                {plan.target_id: plan},
                [Transaction((bad,), SqliteSeq(1))],
                checkpoint=cp,
                batch=True,
            )
        assert (info.value.column, info.value.key) == ("d", {"id": 9})
        assert apply.read_checkpoint("t1") is None
        apply.close()


def test_unbounded_numeric_is_declared_and_kept_as_exact_text():
    plan = _plan([Column("big", Type.decimal())])
    [_, big] = plan.columns
    assert big.fidelity is Fidelity.LOSSY and "38 digits" in (big.reason or "")
    assert big.target.adapt is not None and big.target.adapt(Decimal("1e-400")) == "1E-400"


@given(st.integers(-(10**5), 10**5), st.integers(-(10**5), 10**5), st.integers(-(10**15), 10**15))
def test_intervals_round_trip_through_duckdb_text(months, days, micros):
    iso = v._iso(months, days, micros)
    text = v.duckdb_interval(iso)
    assert text == f"{months} months {days} days {micros} microseconds"
    assert v.iso_interval(_duck_print(months, days, micros)) == iso


def _duck_print(months, days, micros):
    """DuckDB's own interval text (as ``CAST(interval AS VARCHAR)`` prints it)."""
    years, rest = int(months / 12), months - int(months / 12) * 12
    parts = []
    if years:
        parts.append(f"{years} year{'s' if abs(years) != 1 else ''}")
    if rest:
        parts.append(f"{rest} month{'s' if abs(rest) != 1 else ''}")
    if days:
        parts.append(f"{days} day{'s' if abs(days) != 1 else ''}")
    if micros or not parts:
        sign = "-" if micros < 0 else ""
        whole, frac = divmod(abs(micros), 1_000_000)
        h, r = divmod(whole, 3600)
        clock = f"{sign}{h:02d}:{r // 60:02d}:{r % 60:02d}"
        if frac:
            clock += f".{frac:06d}".rstrip("0")
        parts.append(clock)
    return " ".join(parts)


def test_interval_text_matches_duckdb():
    import duckdb

    conn = duckdb.connect()
    for months, days, micros in [
        (14, -3, 123),
        (-14, 0, 0),
        (0, 0, -1_500_000),
        (0, 1, 3600 * 10**8),
    ]:
        (text,) = conn.execute(
            "SELECT CAST(CAST(? AS INTERVAL) AS VARCHAR)",
            [f"{months} months {days} days {micros} microseconds"],
        ).fetchone()
        assert text == _duck_print(months, days, micros)
        assert v.iso_interval(text) == v._iso(months, days, micros)


@pytest.mark.parametrize(
    ("native", "kind"),
    [
        ("HUGEINT", Kind.DECIMAL),
        ("INTEGER[]", Kind.ARRAY),
        ("DOUBLE[][]", Kind.ARRAY),
        ("STRUCT(a INTEGER)", Kind.OTHER),
        ("ENUM('a', 'b''c')", Kind.ENUM),
        ("TIMESTAMP WITH TIME ZONE", Kind.TIMESTAMP),
        ("DECIMAL(38,10)", Kind.DECIMAL),
        ("UUID", Kind.UUID),
        ("INTERVAL", Kind.INTERVAL),
    ],
)
def test_parse_type(native, kind):
    t = DIALECT.parse_type(native)
    assert t.kind is kind
    if kind is Kind.ENUM:
        assert t.values == ("a", "b'c")
    if native == "DOUBLE[][]":
        assert t.dims == 2 and t.item == Type.float_(64)


def test_a_file_named_after_the_target_schema_fails_that_table_before_any_ddl(pg_url, tmp_path):
    """DuckDB names a database after its file: ``shop.duckdb`` with the target schema ``shop``
    would make every name ambiguous. The table fails before any DDL, and the error says what
    to do; a table of another schema in the same task still loads."""
    import duckdb

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA shop; CREATE TABLE shop.items (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE public.other (id int PRIMARY KEY); INSERT INTO other VALUES (1)")
    path = tmp_path / "Shop.duckdb"
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"duckdb:///{path}") as duck:
        mappings = rk.Mappings().include("shop", "items").include("public", "other")
        task = rk.Task(pg, duck, mappings=mappings)
        with pytest.raises(rk.TaskError):
            task.run()
        stats = {str(s.table): s for s in task.statistics()}
    error = str(stats["shop.items"].error)
    assert "after its file" in error and "Name the file otherwise" in error, error
    assert stats["public.other"].error is None
    with duckdb.connect(str(path), read_only=True) as conn:
        schemas = {
            r[0] for r in conn.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()
        }
        assert "shop" not in schemas
        assert conn.execute("SELECT count(*) FROM public.other").fetchone() == (1,)

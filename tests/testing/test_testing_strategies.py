"""replikit.testing.strategies: values fit their portable types; rows load into a real
database and read back equal."""

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.pipeline.contracts import Batch
from replikit.schema.convert import plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Kind, Type
from replikit.testing import strategies as rks
from replikit.testing.conformance import PORTABLE_VALUES


@given(st.data())
def test_values_fit_their_types(data):
    for _name, t, _examples in PORTABLE_VALUES:
        v = data.draw(rks.values(t))
        if t.kind is Kind.INT:
            assert -(2 ** (t.bits - 1)) <= v < 2 ** (t.bits - 1)
        elif t.kind is Kind.DECIMAL:
            assert abs(v) < Decimal(10) ** (t.precision - t.scale) and -v.as_tuple().exponent <= 2
        elif t.kind is Kind.STRING:
            assert len(v) <= t.length and "\x00" not in v
        elif t.kind is Kind.TIMESTAMP and t.tz:
            assert v.tzinfo is not None


@given(rks.values(Type.enum(("a", "b"))), rks.values(Type.array(Type.int_(16), dims=2)))
def test_enums_and_arrays(e, a):
    assert e in ("a", "b")
    assert all(isinstance(x, list) and all(-(2**15) <= i < 2**15 for i in x) for x in a)


def test_nullable_columns_draw_none_and_special_floats_on_request():
    col = Column("x", Type.float_(64))
    seen = []

    @given(rks.column_values(col, special=True))
    @settings(max_examples=300)
    def collect(v):
        seen.append(v)

    collect()
    assert None in seen and any(v != v for v in seen if v is not None)


TABLE = TableSchema(
    TableId(None, "rk_strategies"),
    (
        Column("id", Type.string(12), nullable=False),
        *(Column(name, t) for name, t, _ in PORTABLE_VALUES),
    ),
    primary_key=("id",),
)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=rks.row_lists(TABLE, min_size=1, max_size=10))
def test_generated_rows_load_into_postgresql_and_read_back_equal(pg_url, rows):
    # one database for every example: each one drops and creates the table
    with rk.endpoint(pg_url) as ep:
        plan = plan_table(TABLE, source_dialect="python", target=ep.dialect)
        writer = ep.writer()
        writer.prepare([plan], "drop-and-create")
        cols = TABLE.column_names
        writer.load(plan, [Batch(TABLE.id, cols, [tuple(r[c] for c in cols) for r in rows])])
        writer.finish([plan])
        reader = ep.reader([f"public.{TABLE.id.name}"])
        (schema,) = reader.tables
        back = {
            r[0]: dict(zip(b.columns, r, strict=True))
            for u in reader.units(schema)
            for b in reader.read(u)
            for r in b.rows
        }
    assert len(back) == len(rows)
    for row in rows:
        assert back[row["id"]] == row

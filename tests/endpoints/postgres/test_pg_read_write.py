"""Reader canonical values, PG -> PG round trips (values and raw), units, write errors."""

import datetime as dt
import itertools
import math
import threading
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from _pg_schema import SCHEMA_SQL
from hypothesis import given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.schema.convert import TablePlan, link_foreign_keys, plan_table
from replikit.schema.model import TableId

UTC = dt.UTC


def _rows(ep: Any, table: str) -> list[tuple[Any, ...]]:
    with ep.reader([table]) as reader:
        (t,) = reader.tables
        return [tuple(r) for u in reader.units(t) for b in reader.read(u) for r in b.rows]


def _norm(value: Any) -> Any:
    """NaN-safe comparison form."""
    if isinstance(value, float) and math.isnan(value):
        return "float-nan"
    if isinstance(value, Decimal) and value.is_nan():
        return "decimal-nan"
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _plans(src: Any, dst: Any, schema: str = "copy") -> list[TablePlan]:
    return link_foreign_keys(
        [
            plan_table(
                t,
                source_dialect="postgresql",
                target=dst.dialect,
                target_id=TableId(schema, t.id.name),
            )
            for t in src.reflect().tables
        ]
    )


def test_reader_canonical_values(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
    rows = {r[-1]: r for r in _rows(rk.endpoint(pg_url), "shop.kitchen")}
    (_id, n, nn, d, ts, tstz, iv, j, jb, u, b, m, ms, p, r, ip, arr, tarr, ch, money, f4, f8,
     t, ttz, _parent, _code) = rows["r1"]  # fmt: skip
    assert (n, nn.is_nan(), d, ts, tstz) == (
        Decimal("1.50"),
        True,
        "infinity",
        "-infinity",
        "0044-03-15 12:00:00.5+00 BC",
    )
    assert (iv, j, jb) == ("P1Y2M3DT4H5M6.5S", '{"a": 1.000}', '{"b": 2}')
    assert (u, b, m, ms, p) == (uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), b"\0\xff",
                                "ok", ["sad", "happy"], 3)  # fmt: skip
    assert (r, ip, arr, tarr, ch) == ("[1,5)", "10.0.0.1/8", [1, None, 3],
                                      [["a", "b"], ["c", "d"]], "ab   ")  # fmt: skip
    assert (money, f4, math.isnan(f8), t, ttz) == (
        Decimal("12.34"),
        1.5,
        True,
        "24:00:00",
        "24:00:00+05:30",
    )
    r2 = rows["r2"]
    assert r2[2] == Decimal("Infinity")
    assert r2[3] == "0001-01-01 BC"
    assert r2[4] == "12345-01-01 01:02:03.123"
    assert r2[5] == dt.datetime(2023, 12, 31, 22, tzinfo=UTC)
    assert r2[6] == "P-1D"
    assert r2[22] == dt.time(12, 34, 56, 789000)
    assert r2[23].utcoffset() == dt.timedelta(hours=-8)
    r3 = rows["r3"]
    assert r3[2] == Decimal("-Infinity")
    assert r3[3] == dt.date(2024, 2, 29)


@pytest.mark.parametrize("raw", [False, True], ids=["values", "raw"])
def test_round_trip_kitchen_sink(pg_url: str, raw: bool) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
    ep = rk.endpoint(pg_url)
    plans = _plans(ep, ep)
    writer = ep.writer()
    writer.prepare(plans, "drop-and-create")
    with ep.reader([p.source for p in plans]) as reader:
        for plan in plans:
            assert plan.identical
            (unit,) = reader.units(plan.source)
            expected = {"parent": 2, "kitchen": 3}[plan.source.id.name]
            if raw:
                assert writer.load_raw(plan, reader.read_raw(unit)) == expected
            else:
                assert writer.load(plan, reader.read(unit)) == expected
    writer.finish(plans)
    for name in ("parent", "kitchen"):
        before = sorted(map(_norm, map(list, _rows(ep, f"shop.{name}"))), key=str)
        after = sorted(map(_norm, map(list, _rows(ep, f"copy.{name}"))), key=str)
        assert before == after
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # identity restarted past the loaded maximum; FK, unique and index exist
        assert (
            conn.execute("INSERT INTO copy.parent (name) VALUES ('c') RETURNING id").fetchone()[0]
            == 3
        )
        idx = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname='copy'")
        }
        assert {"kitchen_lower", "kitchen_d"} <= idx
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO copy.kitchen (parent_id, code) VALUES (99, 'zz')")


ROW = st.tuples(
    st.integers(-(2**63), 2**63 - 1) | st.none(),
    st.decimals(allow_nan=True, allow_infinity=True).map(
        lambda d: Decimal("NaN") if d.is_nan() else d  # PostgreSQL has one unsigned quiet NaN
    )
    | st.none(),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")),
    st.datetimes(timezones=st.just(UTC)) | st.sampled_from(["infinity", "-infinity"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=40),
    st.lists(st.integers(-(2**31), 2**31 - 1) | st.none(), max_size=5),
)
FAMILIES = "id2 bigint, n numeric, s text, ts timestamptz, f float8, b bytea, a integer[]"


@settings(settings.get_profile("db"))
@given(rows=st.lists(ROW, max_size=20))
def test_round_trip_property(pg_url: str, rows: list[tuple[Any, ...]]) -> None:
    ep = rk.endpoint(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            f"DROP TABLE IF EXISTS src; CREATE TABLE src (k serial PRIMARY KEY, {FAMILIES})"
        )
        with conn.cursor().copy("COPY src (id2, n, s, ts, f, b, a) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    src_rows = sorted(map(_norm, map(list, _rows(ep, "public.src"))), key=str)
    for raw in (False, True):
        plans = _plans(ep, ep, "dst")
        (plan,) = [p for p in plans if p.source.id == TableId("public", "src")]
        writer = ep.writer()
        writer.prepare([plan], "drop-and-create")
        with ep.reader([plan.source]) as reader:
            (unit,) = reader.units(plan.source)
            load = (
                writer.load_raw(plan, reader.read_raw(unit))
                if raw
                else writer.load(plan, reader.read(unit))
            )
        assert load == len(rows)
        assert sorted(map(_norm, map(list, _rows(ep, "dst.src"))), key=str) == src_rows


def test_units_split_integer_key_ranges(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO big SELECT g, g::text FROM generate_series(1, 5000) g")
        conn.execute("ANALYZE big")
    ep = rk.endpoint(pg_url)
    with ep.reader(["big"]) as reader:
        (table,) = reader.tables
        units = reader.units(table, split_rows=1000)
        assert len(units) == 5
        assert units[0].range.lower is None
        assert units[-1].range.upper is None
        for a, b in itertools.pairwise(units):
            assert a.range.upper == b.range.lower
        seen: list[int] = []
        lock = threading.Lock()

        def work(unit: Any) -> None:
            for batch in reader.read(unit):
                with lock:
                    seen.extend(r[0] for r in batch.rows)

        threads = [threading.Thread(target=work, args=(u,)) for u in units]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(seen) == list(range(1, 5001))
        assert len(reader.units(table)) == 1


def test_bad_value_is_data_error_with_key(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, s text, small smallint)")
    ep = rk.endpoint(pg_url)
    (table,) = ep.reflect().tables
    plan = plan_table(table, source_dialect="sqlite", target=ep.dialect)
    writer = ep.writer()
    writer.prepare([plan], "truncate")
    from replikit.pipeline.contracts import Batch

    batch = Batch(table.id, ("id", "s", "small"), [(1, "ok", 1), (2, "ok", 70000)])
    with pytest.raises(rk.DataError) as info:
        writer.load(plan, [batch])
    assert info.value.column == "small"
    assert info.value.key == {"id": 2}
    nul = Batch(table.id, ("id", "s", "small"), [(1, "ok", 1), (7, "a\x00b", 1)])
    with pytest.raises(rk.DataError) as info:
        writer.load(plan, [nul])
    assert info.value.key == {"id": 7}
    assert info.value.column == "s"
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_prepare_modes_check_target_shape(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, s text); INSERT INTO t VALUES (1, 'a')")
        conn.execute("CREATE SCHEMA other; CREATE TABLE other.t (id int)")
    ep = rk.endpoint(pg_url)
    (table,) = ep.reflect(rk.mapping.Selection(include=("public.t",))).tables
    writer = ep.writer()
    wrong = plan_table(table, source_dialect="postgresql", target=ep.dialect,
                       target_id=TableId("other", "t"))  # fmt: skip
    with pytest.raises(rk.SchemaError, match=r"other\.t: has no column s .* Fix: "):
        writer.prepare([wrong], "do-nothing")
    same = plan_table(table, source_dialect="postgresql", target=ep.dialect)
    writer.prepare([same], "do-nothing")
    assert _rows(ep, "public.t") == [(1, "a")]
    writer.prepare([same], "truncate")
    assert _rows(ep, "public.t") == []
    with pytest.raises(rk.ConfigError):
        writer.prepare([same], "sideways")

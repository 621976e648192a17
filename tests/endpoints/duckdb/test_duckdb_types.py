"""Type round trips PostgreSQL -> DuckDB and DuckDB -> PostgreSQL on real servers: every value
of an exact column reads back equal; every other column is declared (Hypothesis for values)."""

import datetime as dt
import json
import uuid
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.schema.convert import Fidelity

pytestmark = [pytest.mark.timeout(300)]

FEW = settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking a database test is slow
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# PostgreSQL column -> strategy of values psycopg writes (None included by `_row`)
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
PG_COLUMNS = {
    "c_bool": ("boolean", st.booleans()),
    "c_int2": ("smallint", st.integers(-(2**15), 2**15 - 1)),
    "c_int8": ("bigint", st.integers(-(2**63), 2**63 - 1)),
    "c_num": ("numeric(12,2)", st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False)),
    "c_num38": (
        "numeric(38,10)",
        st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False),
    ),
    "c_real": ("real", st.sampled_from([0.5, -1.25, float("inf"), float("-inf"), -0.0])),
    "c_float": ("double precision", st.floats(allow_nan=False) | st.just(float("nan"))),
    "c_varchar": ("varchar(12)", _TEXT),
    "c_text": ("text", _TEXT),
    "c_bytea": ("bytea", st.binary(max_size=12)),
    "c_date": ("date", st.dates()),
    "c_time": ("time", st.times()),
    "c_ts": ("timestamp", st.datetimes()),
    "c_tstz": ("timestamptz", st.datetimes(timezones=st.just(dt.UTC))),
    "c_interval": (
        "interval",
        st.tuples(
            st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(-(10**12), 10**12)
        ).map(lambda t: f"{t[0]} months {t[1]} days {t[2]} microseconds"),
    ),
    "c_json": (
        "jsonb",
        st.dictionaries(_TEXT, st.integers(), max_size=3).map(json.dumps),
    ),
    "c_uuid": ("uuid", st.uuids()),
    "c_enum": ("mood", st.sampled_from(["sad", "ok", "happy"])),
    "c_ints": ("integer[]", st.lists(st.none() | st.integers(-(2**31), 2**31 - 1), max_size=4)),
    "c_texts": ("text[]", st.lists(_TEXT, max_size=3)),
    "c_grid": (
        "bigint[][]",
        st.integers(1, 3).flatmap(
            lambda n: st.lists(
                st.lists(st.integers(-9, 9), min_size=n, max_size=n), min_size=1, max_size=3
            )
        ),
    ),
}


def _rows(ep, table):
    reader = ep.reader([table])
    (schema,) = reader.tables
    out = {}
    for unit in reader.units(schema):
        for batch in reader.read(unit):
            for row in batch.rows:
                out[row[0]] = dict(zip(batch.columns, row, strict=True))
    return out


def _same(a, b):
    if isinstance(a, int) and isinstance(b, Decimal):  # UBIGINT -> numeric(20,0)
        a = Decimal(a)
    if isinstance(a, float) and isinstance(b, float) and a != a:
        return b != b
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a == b and (a.tzinfo is None) == (b.tzinfo is None)
    return (type(a) is type(b) and a == b) or (a is None and b is None)


def _compare(plan, src_rows, dst_rows):
    wrong = []
    for cp in plan.columns:
        if cp.fidelity is not Fidelity.EXACT:
            assert cp.reason, f"{cp.source.name}: a {cp.fidelity.value} column says why"
            continue
        for key, row in src_rows.items():
            a, b = row[cp.source.name], dst_rows[key][cp.name]
            if not _same(a, b):
                wrong.append(f"{cp.source.name} {cp.target.sql}: {a!r} -> {b!r}")
    assert not wrong, "\n".join(wrong[:20])


@pytest.fixture
def pg_types(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        cols = ", ".join(f"{n} {t}" for n, (t, _) in PG_COLUMNS.items())
        conn.execute(f"CREATE TABLE types (id int PRIMARY KEY, {cols})")
    return pg_url


@FEW
@given(data=st.data())
def test_postgres_to_duckdb_values_equal_or_declared(pg_types, tmp_path_factory, data):
    rows = [
        [i, *(data.draw(st.none() | s) if i else None for _, s in PG_COLUMNS.values())]
        for i in range(4)
    ]
    with psycopg.connect(pg_types, autocommit=True) as conn:
        conn.execute("TRUNCATE types")
        marks = ", ".join(["%s"] * (len(PG_COLUMNS) + 1))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO types VALUES ({marks})", rows)
    path = tmp_path_factory.mktemp("duck") / "types.duckdb"
    with rk.endpoint(pg_types) as pg, rk.endpoint(f"duckdb:///{path}") as duck:
        task = rk.Task(pg, duck, mappings=rk.Mappings().include("public", "types"))
        [plan] = task.plan().assessment.tables
        [stat] = task.run()
        assert stat.full_load_rows == 4, stat.error
        _compare(plan, _rows(pg, "public.types"), _rows(duck, "public.types"))
        # PostgreSQL arrays are DuckDB lists, exactly; the enum is a DuckDB ENUM
        types = {c.name: c.target.sql for c in plan.columns}
        assert types["c_ints"] == "INTEGER[]" and types["c_grid"] == "BIGINT[][]"
        assert types["c_enum"] == "ENUM('sad', 'ok', 'happy')"
        assert all(c.fidelity is Fidelity.EXACT for c in plan.columns), [
            (c.name, c.reason) for c in plan.columns if c.fidelity is not Fidelity.EXACT
        ]


DUCK_COLUMNS = {
    "c_huge": ("HUGEINT", st.integers(-(2**127) + 1, 2**127 - 1)),
    "c_ubig": ("UBIGINT", st.integers(0, 2**64 - 1)),
    "c_dec": ("DECIMAL(38,10)", st.decimals(-(10**27) + 1, 10**27 - 1, places=10, allow_nan=False)),
    "c_list": ("VARCHAR[]", st.lists(st.none() | _TEXT, max_size=3)),
    "c_json": ("JSON", st.lists(st.integers(), max_size=3).map(json.dumps)),
    "c_tstz": ("TIMESTAMPTZ", st.datetimes(timezones=st.just(dt.UTC))),
    "c_interval": (
        "INTERVAL",
        st.tuples(
            st.integers(-500, 500), st.integers(-500, 500), st.integers(-(10**11), 10**11)
        ).map(lambda t: f"{t[0]} months {t[1]} days {t[2]} microseconds"),
    ),
    "c_uuid": ("UUID", st.uuids().map(str)),
    "c_enum": ("ENUM('a', 'b''c')", st.sampled_from(["a", "b'c"])),
    "c_blob": ("BLOB", st.binary(max_size=8)),
    "c_date": ("DATE", st.dates().map(str) | st.sampled_from(["infinity", "-infinity"])),
    "c_struct": (
        "STRUCT(a INTEGER, b VARCHAR)",
        st.integers(-9, 9).map(lambda n: {"a": n, "b": str(n)}),
    ),
}


@FEW
@given(data=st.data())
def test_duckdb_to_postgres_values_equal_or_declared(pg_url, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("duck") / "src.duckdb"
    import duckdb

    conn = duckdb.connect(str(path))
    cols = ", ".join(f"{n} {t}" for n, (t, _) in DUCK_COLUMNS.items())
    conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {cols})")
    rows = [
        [i, *(data.draw(st.none() | s) if i else None for _, s in DUCK_COLUMNS.values())]
        for i in range(4)
    ]
    casts = ", ".join(f"?::{t}" for t, _ in DUCK_COLUMNS.values())
    for row in rows:
        conn.execute(f"INSERT INTO t VALUES (?, {casts})", row)
    conn.close()
    with rk.endpoint(f"duckdb:///{path}") as duck, rk.endpoint(pg_url) as pg:
        task = rk.Task(duck, pg, settings=rk.TaskSettings(target_table_prep_mode="drop-and-create"))
        [plan] = task.plan().assessment.tables
        [stat] = task.run()
        assert stat.full_load_rows == 4, stat.error
        src = _rows(duck, "main.t")
        _compare(plan, src, _rows(pg, f"{plan.target_id}"))
        lossy = {c.name for c in plan.columns if c.fidelity is not Fidelity.EXACT}
        assert lossy == {"c_struct"}  # STRUCT has no PostgreSQL type: its JSON text, declared
        back = _rows(pg, f"{plan.target_id}")
        for key, row in src.items():
            if row["c_struct"] is not None:
                assert json.loads(back[key]["c_struct"]) == json.loads(row["c_struct"])
        # HUGEINT reads as an exact Decimal, the infinite dates as their text
        assert all(
            isinstance(r["c_huge"], Decimal | None) and isinstance(r["c_uuid"], uuid.UUID | None)
            for r in src.values()
        )


def test_dates_python_cannot_hold_round_trip_postgres_duckdb_postgres(pg_url, tmp_path):
    """infinity and BC dates and timestamps: PostgreSQL -> DuckDB -> PostgreSQL unchanged
    (DuckDB holds them; Python does not, so they travel as their text)."""
    values = [
        ("infinity", "infinity", "infinity"),
        ("-infinity", "-infinity", "-infinity"),
        ("0044-03-15 BC", "0044-03-15 12:00:00 BC", "0044-03-15 12:00:00+00 BC"),
        ("2024-02-29", "2024-02-29 23:59:59.999999", "2024-02-29 23:59:59.999999+00"),
    ]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("CREATE TABLE odd (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz)")
        for i, (d, ts, tz) in enumerate(values):
            conn.execute("INSERT INTO odd VALUES (%s, %s, %s, %s)", (i, d, ts, tz))
    path = tmp_path / "odd.duckdb"
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"duckdb:///{path}") as duck:
        rk.Task(pg, duck, mappings=rk.Mappings().include("public", "odd")).run()
        rk.Task(
            duck,
            pg,
            mappings=rk.Mappings().include("public", "odd").rename_schema("public", "back"),
        ).run()
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        query = "SELECT id, d::text, ts::text, tz::text FROM {} ORDER BY id"
        assert (
            conn.execute(query.format("public.odd")).fetchall()
            == conn.execute(query.format("back.odd")).fetchall()
        )

"""PostgreSQL -> DuckDB through one Arrow stream per unit (``arrow_stream`` /
``load_arrow_stream``): DuckDB reads ADBC's stream of binary COPY itself, with no pyarrow in
the process, and holds what the record-batch path holds, value for value (Hypothesis on a real
server); a unit the stream cannot carry exactly (infinity, BC, a NaN decimal) is loaded again
as batches, whose error names the row."""

import datetime as dt
import json
import logging
import subprocess
import sys
import textwrap
from decimal import Decimal

import duckdb
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints.duckdb.target import DuckdbWriter
from replikit.endpoints.postgres import _arrow_adbc
from replikit.endpoints.postgres import source as pg_source
from strategies_columns import few

pytestmark = [pytest.mark.timeout(300)]

FEW = few()
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
) | st.sampled_from(["", '"', "a,b", "line\nbreak", "NULL", "NaN", "\\N"])
_ODD = st.sampled_from(["infinity", "-infinity", "0044-03-15 BC", "12000-01-01"])
COLUMNS = {
    "c_bool": ("boolean", st.booleans()),
    "c_int2": ("smallint", st.integers(-(2**15), 2**15 - 1)),
    "c_int8": ("bigint", st.integers(-(2**63), 2**63 - 1)),
    "c_num": ("numeric(12,2)", st.decimals(-(10**10) + 1, 10**10 - 1, places=2, allow_nan=False)),
    "c_num38": ("numeric(38,10)", st.decimals(-(10**27) + 1, 10**27 - 1, places=10)),
    "c_float": ("double precision", st.floats()),
    "c_real": ("real", st.sampled_from([0.5, -1.25, float("inf"), -0.0])),
    "c_varchar": ("varchar(12)", _TEXT),
    "c_char": (
        "char(3)",
        st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=3),
    ),
    "c_bytea": ("bytea", st.binary(max_size=12)),
    "c_date": ("date", st.dates().map(str) | _ODD),
    "c_ts": ("timestamp", st.datetimes().map(str) | _ODD),
    "c_tstz": ("timestamptz", st.datetimes(timezones=st.just(dt.UTC)).map(str) | _ODD),
    "c_json": ("json", st.dictionaries(_TEXT, st.integers(), max_size=3).map(json.dumps)),
    "c_uuid": ("uuid", st.uuids()),
}


@pytest.fixture
def adbc():
    if _arrow_adbc.adbc_manager() is None:
        pytest.skip("adbc-driver-postgresql is not installed")


@pytest.fixture
def pg_table(pg_url, adbc):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        cols = ", ".join(f"{n} {t}" for n, (t, _) in COLUMNS.items())
        conn.execute(f"CREATE TABLE vals (id int PRIMARY KEY, {cols})")
    return pg_url


def _load(pg_url, path):
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"duckdb:///{path}") as duck:
        [stat] = rk.Task(pg, duck, mappings=rk.Mappings().include("public", "vals")).run()
        assert stat.error is None, stat.error
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        names = ", ".join(f"CAST({n} AS VARCHAR)" for n in ["id", *COLUMNS])
        return conn.execute(f"SELECT {names} FROM public.vals ORDER BY id").fetchall()


@FEW
@given(data=st.data())
def test_the_stream_holds_what_the_batches_hold(
    pg_table, tmp_path_factory, monkeypatch, caplog, data
):
    rows = [
        [i, *(data.draw(st.none() | s) if i else None for _, s in COLUMNS.values())]
        for i in range(5)
    ]
    with psycopg.connect(pg_table, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("TRUNCATE vals")
        marks = ", ".join(["%s"] * (len(COLUMNS) + 1))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO vals VALUES ({marks})", rows)
    odd = any(
        v in ("infinity", "-infinity", "0044-03-15 BC", "12000-01-01") for r in rows for v in r
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="replikit.pipeline.units"):
        streamed = _load(pg_table, tmp_path_factory.mktemp("s") / "s.duckdb")
    redone = [r for r in caplog.records if "redone as Arrow record batches" in r.getMessage()]
    assert bool(redone) == odd  # only a date the stream cannot carry sends it to the batches
    with monkeypatch.context() as m:
        m.setattr(pg_source.PostgresReader, "arrow_stream", lambda self, unit: None)
        batched = _load(pg_table, tmp_path_factory.mktemp("b") / "b.duckdb")
    assert streamed == batched


def test_a_copy_through_the_stream_imports_no_pyarrow(pg_url, adbc, tmp_path):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, n numeric(10,2), s text, d date)")
        conn.execute(
            "INSERT INTO t SELECT g, g / 4.0, 'row ' || g, '2020-01-01' "
            "FROM generate_series(1, 5000) g"
        )
    code = textwrap.dedent(
        f"""
        import sys
        import replikit as rk
        [stat] = rk.copy({pg_url!r}, "duckdb:///{tmp_path / "x.duckdb"}", include=["public.t"])
        assert stat.full_load_rows == 5000, stat
        assert "pyarrow" not in sys.modules, sorted(m for m in sys.modules if "arrow" in m)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with duckdb.connect(str(tmp_path / "x.duckdb"), read_only=True) as conn:
        got = conn.execute("SELECT count(*), sum(n), max(s) FROM public.t").fetchall()
    assert got == [(5000, Decimal("3125625.00"), "row 999")]


def test_a_unit_the_stream_loses_is_rolled_back_and_loaded_as_batches(
    pg_url, adbc, tmp_path, monkeypatch
):
    """A value DuckDB refuses mid-stream: nothing of the unit stays, and the batches then
    name the row (here a NaN numeric, which DuckDB's DECIMAL cannot hold)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE p (id int PRIMARY KEY, amount numeric(10,2))")
        conn.execute("INSERT INTO p SELECT g, g FROM generate_series(1, 3000) g")
        conn.execute("UPDATE p SET amount = 'NaN' WHERE id = 2500")
    calls = []
    load = DuckdbWriter.load_arrow_stream

    def spy(self, plan, stream):
        calls.append(plan.target_id)
        return load(self, plan, stream)

    monkeypatch.setattr(DuckdbWriter, "load_arrow_stream", spy)
    with rk.endpoint(pg_url) as pg, rk.endpoint(f"duckdb:///{tmp_path / 'p.duckdb'}") as duck:
        task = rk.Task(pg, duck, mappings=rk.Mappings().include("public", "p"))
        with pytest.raises(rk.TaskError):
            task.run()
        [stat] = task.statistics()
        assert len(calls) == 1 and "key id=2500" in str(stat.error), stat.error
    with duckdb.connect(str(tmp_path / "p.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM public.p").fetchone()[0] == 0

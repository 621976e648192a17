"""The columnar full load into DuckDB (``DuckdbWriter.load_arrow``): memory stays bounded by
the batches in flight, not by the rows of a transaction; the source is read ahead in a thread
and closed when the load fails."""

import pyarrow as pa
import pytest

import replikit as rk
from replikit.endpoints.duckdb._dialect import DIALECT
from replikit.schema.convert import plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

COLUMNS = 8
ROWS = 12_000  # one INSERT per batch (ARROW_GROUP_ROWS)


def _plan():
    cols = [Column(f"c{i}", Type.int_(64), nullable=False) for i in range(COLUMNS)]
    table = TableSchema(TableId(None, "t"), tuple(cols), ("c0",))
    return plan_table(table, source_dialect="python", target=DIALECT)


def _batch(n):
    return pa.RecordBatch.from_arrays(
        [pa.array(range(n * ROWS, (n + 1) * ROWS), pa.int64()) for _ in range(COLUMNS)],
        names=[f"c{i}" for i in range(COLUMNS)],
    )


def test_batches_are_let_go_once_inserted_not_at_commit(tmp_path):
    """40 batches of 0.77 MB in one transaction: Arrow never holds more than the few in
    flight (a batch registered as a view stayed alive until the commit: all 40)."""
    plan = _plan()
    seen = []

    def batches():
        for n in range(40):
            seen.append(pa.total_allocated_bytes())
            yield _batch(n)

    with rk.endpoint(f"duckdb:///{tmp_path / 'x.duckdb'}") as duck:
        writer = duck.writer(commit_rows=10**9)
        writer.prepare([plan], "drop-and-create")
        before = pa.total_allocated_bytes()
        assert writer.load_arrow(plan, batches()) == 40 * ROWS
        with duck._db.connected() as conn:
            assert conn.execute("SELECT count(*), sum(c7) FROM t").fetchall() == [
                (40 * ROWS, sum(range(40 * ROWS)))
            ]
    one = _batch(0).nbytes
    assert max(seen) - before < 8 * one, (max(seen) - before) / one


def test_a_failing_load_closes_its_source_and_a_source_error_is_raised(tmp_path):
    plan = _plan()
    closed = []

    def batches(bad):
        try:
            yield _batch(0)
            if bad == "source":
                raise rk.ConnectError("the source went away")
            yield pa.RecordBatch.from_arrays(
                [pa.array([None] * ROWS, pa.int64())] * COLUMNS,
                names=[f"c{i}" for i in range(COLUMNS)],
            )  # NULL in NOT NULL columns
            yield from (_batch(n) for n in range(1, 1000))
        finally:
            closed.append(bad)

    with rk.endpoint(f"duckdb:///{tmp_path / 'x.duckdb'}") as duck:
        writer = duck.writer()
        writer.prepare([plan], "drop-and-create")
        with pytest.raises(rk.DataError) as info:
            writer.load_arrow(plan, batches("value"))
        assert (info.value.column, info.value.key) == ("c0", {"c0": None})
        assert closed == ["value"]  # not read to the end: closed when the load failed
        with pytest.raises(rk.ConnectError, match="went away"):
            writer.load_arrow(plan, batches("source"))
        assert closed == ["value", "source"]

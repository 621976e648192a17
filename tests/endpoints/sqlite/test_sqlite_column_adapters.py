"""The SQLite writer's bulk path: the column-wise fast paths of its adapters give what the
per-value adapters give, value for value, and refuse what they refuse (sans-IO); ``finish``
leaves the loaded rows in the database file."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replikit.endpoints.sqlite import SqliteEndpoint
from replikit.endpoints.sqlite._values import (
    BadValue,
    date_out,
    decimal_to_numeric,
    map_columns,
    timestamp_out,
)
from replikit.pipeline.contracts import Batch
from replikit.schema.convert import plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Kind, Type


def _one_by_one(values: list[Any], fn: Callable[[Any], Any]) -> list[Any] | str:
    try:
        return [None if v is None else fn(v) for v in values]
    except BadValue as exc:
        return f"refused: {exc}"


def _column_wise(values: list[Any], fn: Callable[[Any], Any]) -> list[Any] | str:
    try:
        return [row[0] for row in map_columns([(v,) for v in values], [(0, fn)])]
    except BadValue as exc:
        return f"refused: {exc}"


def _same(a: list[Any] | str, b: list[Any] | str) -> bool:
    # by repr: -0.0 and 0.0, 'NaN' text and floats compare as written
    return repr(a) == repr(b)


DECIMALS = st.one_of(
    st.none(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-(10**13), max_value=10**13, places=2),
    st.builds(Decimal, st.sampled_from(["1E-400", "1E+400", "-0", "-0.00", "sNaN", "1e5"])),
)
TIMESTAMPS = st.one_of(
    st.none(),
    st.datetimes(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.sampled_from(["infinity", "-infinity", "2000-01-01 00:00:00 BC", "12000-01-01 00:00:00"]),
)
DATES = st.one_of(st.none(), st.dates(), st.sampled_from(["infinity", "0044-03-15 BC"]))


@given(values=st.lists(DECIMALS, min_size=1, max_size=30))
def test_decimals_column_wise_equal_one_by_one(values: list[Any]) -> None:
    assert _same(_column_wise(values, decimal_to_numeric), _one_by_one(values, decimal_to_numeric))


@given(values=st.lists(TIMESTAMPS, min_size=1, max_size=30))
def test_timestamps_column_wise_equal_one_by_one(values: list[Any]) -> None:
    assert _same(_column_wise(values, timestamp_out), _one_by_one(values, timestamp_out))


@given(values=st.lists(DATES, min_size=1, max_size=30))
def test_dates_column_wise_equal_one_by_one(values: list[Any]) -> None:
    assert _same(_column_wise(values, date_out), _one_by_one(values, date_out))


@pytest.mark.parametrize(
    ("fn", "value"),
    [
        (decimal_to_numeric, 1.5),  # a float where a Decimal belongs
        (decimal_to_numeric, "1.5"),
        (decimal_to_numeric, Decimal("1E-400")),  # a float would be 0.0
        (decimal_to_numeric, Decimal("12345678901234567")),  # 17 digits
        (timestamp_out, 1_700_000_000),  # an epoch int where a timestamp belongs
        (date_out, 20240101),
    ],
)
def test_what_an_adapter_refuses_is_refused_column_wise(fn: Any, value: Any) -> None:
    with pytest.raises((BadValue, AttributeError)):
        map_columns([(Decimal("1.25"),), (value,)] if fn is decimal_to_numeric else [(value,)],
                    [(0, fn)])  # fmt: skip


def test_finish_checkpoints_what_the_load_wrote(tmp_path: Path) -> None:
    """After ``finish`` the rows are in the database file, not only in the WAL (which
    ``synchronous=NORMAL`` does not sync at each commit): the WAL is emptied."""
    table = TableSchema(
        TableId(None, "t"),
        (Column("id", Type(Kind.INT, bits=64), nullable=False), Column("v", Type(Kind.TEXT))),
        primary_key=("id",),
    )
    path = tmp_path / "load.db"
    with SqliteEndpoint(f"sqlite:///{path}") as ep:
        plan = plan_table(table, source_dialect="python", target=ep.dialect)
        writer = ep.writer()
        writer.prepare([plan], "drop-and-create")
        rows = [(i, "x" * 100) for i in range(5000)]
        writer.load(plan, [Batch(table.id, ("id", "v"), rows)])
        wal = Path(f"{path}-wal")
        assert wal.stat().st_size > 0  # the load's pages wait in the WAL
        writer.finish([plan])
        assert wal.stat().st_size == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (5000,)
    conn.close()

"""Canonical values from a foreign dialect go through writer -> SQLite file -> reader intact."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _sqlite_util import endpoint, one_column_table, plan_for, raw_rows, write_then_read
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replikit.endpoints.sqlite import SqliteEndpoint
from replikit.errors import DataError
from replikit.schema.convert import Fidelity
from replikit.schema.types import Type

DB_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteEndpoint]:
    ep = endpoint(tmp_path_factory.mktemp("rt") / "rt.db")
    yield ep
    ep.close()


def roundtrip(db: SqliteEndpoint, ptype: Type, values: list[Any]) -> list[Any]:
    return write_then_read(db, plan_for(one_column_table("t", ptype)), values)


def same_decimal(a: Decimal, b: Decimal) -> bool:
    if a.is_nan() or b.is_nan():
        return a.is_nan() and b.is_nan()
    return a == b and str(a) == str(b)


def same_float(a: float, b: float) -> bool:
    if math.isnan(a):
        return math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
special_decimals = st.sampled_from(
    [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("0"), Decimal("-0.00")]
)


@DB_SETTINGS
@given(
    st.lists(
        st.one_of(
            st.decimals(allow_nan=False, allow_infinity=False, places=4).filter(
                lambda d: abs(d) < 10**30
            ),
            special_decimals,
            st.integers(-(10**20), 10**20).map(Decimal),
        ),
        max_size=20,
    )
)
def test_unbounded_decimals_keep_every_digit(db: SqliteEndpoint, values: list[Decimal]) -> None:
    got = roundtrip(db, Type.decimal(native="numeric"), [*values, Decimal("12345678901234567890")])
    assert all(
        same_decimal(a, b)
        for a, b in zip([*values, Decimal("12345678901234567890")], got, strict=True)
    )


@DB_SETTINGS
@given(
    st.lists(
        st.one_of(
            st.decimals(min_value=-(10**13), max_value=10**13, places=2, allow_nan=False),
            st.just(Decimal("NaN")),
        ),
        max_size=20,
    )
)
def test_numeric_15_2_reads_back_at_scale(db: SqliteEndpoint, values: list[Decimal]) -> None:
    values = [v if v.is_nan() else v.quantize(Decimal("0.01")) for v in values]
    got = roundtrip(db, Type.decimal(15, 2), values)
    for a, b in zip(values, got, strict=True):
        assert same_decimal(a, b) or (a == 0 and b == 0), (a, b)


def test_numeric_column_refuses_digits_real_cannot_hold(db: SqliteEndpoint) -> None:
    with pytest.raises(DataError, match="cannot be stored exactly") as info:
        roundtrip(db, Type.decimal(15, 2), [Decimal("1.00"), Decimal("1234567890123456.78")])
    assert info.value.key == {"id": 1}
    assert info.value.column == "v"


@DB_SETTINGS
@given(st.lists(st.floats(), max_size=20))
def test_floats_incl_nan_inf_and_negative_zero(db: SqliteEndpoint, values: list[float]) -> None:
    values = [*values, math.nan, math.inf, -math.inf, -0.0, 0.0]
    got = roundtrip(db, Type.float_(64, native="float8"), values)
    assert all(same_float(a, b) for a, b in zip(values, got, strict=True))


@DB_SETTINGS
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20))
def test_int64(db: SqliteEndpoint, values: list[int]) -> None:
    values = [*values, -(2**63), 2**63 - 1]
    assert roundtrip(db, Type.int_(64), values) == values


@DB_SETTINGS
@given(st.lists(st.integers(0, 2**64 - 1), max_size=20))
def test_uint64_is_exact_above_int64(db: SqliteEndpoint, values: list[int]) -> None:
    values = [*values, 2**64 - 1, 2**63, 0]
    plan = plan_for(one_column_table("t", Type.int_(64, unsigned=True)))
    assert plan.fidelity is Fidelity.EXACT
    assert write_then_read(db, plan, values) == values


@DB_SETTINGS
@given(st.lists(texts, max_size=20))
def test_text_incl_emoji_and_nul(db: SqliteEndpoint, values: list[str]) -> None:
    values = [*values, "😀 emoji", "nul\x00inside", ""]
    assert roundtrip(db, Type.text(), values) == values
    assert roundtrip(db, Type.string(5), values) == values


@DB_SETTINGS
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_bytes(db: SqliteEndpoint, values: list[bytes]) -> None:
    assert roundtrip(db, Type.bytes_(), [*values, b"", b"\x00"]) == [*values, b"", b"\x00"]


@DB_SETTINGS
@given(
    st.lists(
        st.one_of(st.dates(), st.sampled_from(["infinity", "-infinity", "0044-03-15 BC"])),
        max_size=20,
    )
)
def test_dates(db: SqliteEndpoint, values: list[date | str]) -> None:
    assert roundtrip(db, Type.date(), values) == values


@DB_SETTINGS
@given(st.lists(st.one_of(st.datetimes(), st.just("infinity")), max_size=20))
def test_timestamps(db: SqliteEndpoint, values: list[datetime | str]) -> None:
    assert roundtrip(db, Type.timestamp(6), values) == values


@DB_SETTINGS
@given(st.lists(st.datetimes(timezones=st.just(UTC)), max_size=20))
def test_timestamps_with_tz_keep_the_instant(db: SqliteEndpoint, values: list[datetime]) -> None:
    got = roundtrip(db, Type.timestamp(tz=True), values)
    assert got == values
    assert all(g.tzinfo is not None and g.utcoffset() == timedelta(0) for g in got)


def test_timestamp_with_other_offset_comes_back_as_utc(db: SqliteEndpoint) -> None:
    value = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    (got,) = roundtrip(db, Type.timestamp(tz=True), [value])
    assert got == value
    assert got.tzinfo == UTC


@DB_SETTINGS
@given(st.lists(st.times(), max_size=20))
def test_times(db: SqliteEndpoint, values: list[time]) -> None:
    assert roundtrip(db, Type.time(), values) == values


JSON_TEXTS = [
    "1.50",
    '{"a": 1e400}',
    '{"b":[1,2,{"c":null}]}',
    '"x"',
    "true",
    "123456789012345678901",
]


@DB_SETTINGS
@given(
    st.lists(
        st.one_of(st.sampled_from(JSON_TEXTS), st.decimals(allow_nan=False).map(str)), max_size=20
    )
)
def test_json_text_is_untouched(db: SqliteEndpoint, values: list[str]) -> None:
    values = [*values, *JSON_TEXTS]
    assert roundtrip(db, Type.json(binary=True), values) == values
    assert roundtrip(db, Type.json(), values) == values


@DB_SETTINGS
@given(st.lists(st.uuids(), max_size=20))
def test_uuids(db: SqliteEndpoint, values: list[Any]) -> None:
    assert roundtrip(db, Type.uuid(), values) == values


def test_bool(db: SqliteEndpoint) -> None:
    assert roundtrip(db, Type.bool_(), [True, False, None]) == [True, False, None]


def test_interval_as_iso_text(db: SqliteEndpoint) -> None:
    assert roundtrip(db, Type.interval(), ["P1Y2M3DT4H5M6S", "-P1D"]) == ["P1Y2M3DT4H5M6S", "-P1D"]


def test_arrays_become_json_text(db: SqliteEndpoint) -> None:
    values = [[1, 2, None], [[1, 2], [3, 4]], []]
    got = roundtrip(db, Type.array(Type.int_(32)), values)
    assert [json.loads(g) for g in got] == values
    got = roundtrip(db, Type.array(Type.decimal()), [[Decimal("1.50"), Decimal("1e-30")]])
    assert got == ["[1.50,1E-30]"]
    got = roundtrip(db, Type.array(Type.date()), [[date(2020, 1, 2)]])
    assert got == ['["2020-01-02"]']
    assert roundtrip(db, Type.array(Type.bytes_()), [[b"\x01\xff"]]) == ['["01ff"]']


def test_enum_check_refuses_other_labels(db: SqliteEndpoint) -> None:
    ptype = Type.enum(("happy", "it's ok"))
    assert roundtrip(db, ptype, ["happy", "it's ok", None]) == ["happy", "it's ok", None]
    with pytest.raises(DataError, match="CHECK constraint failed") as info:
        roundtrip(db, ptype, ["happy", "sad"])
    assert info.value.key == {"id": 1}


def test_storage_classes_are_what_the_rules_promise(db: SqliteEndpoint, tmp_path: Path) -> None:
    ep = endpoint(tmp_path / "s.db")
    roundtrip(ep, Type.decimal(10, 2), [Decimal("1.50"), Decimal("NaN")])
    assert [r[2:] for r in raw_rows(tmp_path / "s.db", "t")] == [(1.5, "real"), ("NaN", "text")]
    roundtrip(ep, Type.float_(), [math.nan, -0.0])
    assert [r[2:] for r in raw_rows(tmp_path / "s.db", "t")] == [
        ("NaN", "text"),
        ("-0.0 (negative zero)", "text"),
    ]
    roundtrip(ep, Type.json(), ["1.50"])
    assert [r[2:] for r in raw_rows(tmp_path / "s.db", "t")] == [("1.50", "text")]
    ep.close()

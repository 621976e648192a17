"""Read converters and LOAD DATA text (pure: no server)."""

import struct
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replikit.endpoints.mysql._dialect import DIALECT
from replikit.endpoints.mysql._load import load_for
from replikit.endpoints.mysql._values import (
    BadValue,
    ZeroDates,
    column_reader,
    convert_columns,
    ewkb_to_internal,
    internal_to_ewkb,
)
from replikit.schema.convert import plan_table
from replikit.schema.model import Column, TableId, TableSchema


def _reader(native, *, nullable=True, zero=None, **kw):
    col = Column("c", DIALECT.parse_type(native), nullable=nullable)
    return column_reader("db.t", col, zero=zero or ZeroDates(), **kw)


def _read(native, value, **kw):
    reader = _reader(native, **kw)
    return convert_columns([(value,)], [(0, reader)])[0][0] if reader.convert else value


def test_temporal_columns_are_selected_as_text_and_parsed():
    r = _reader("datetime(6)")
    assert r.expression == "CAST(`c` AS CHAR)"
    assert _read("datetime(6)", "2020-01-02 03:04:05.123456") == datetime(
        2020, 1, 2, 3, 4, 5, 123456
    )
    assert _read("date", "1000-01-01") == date(1000, 1, 1)
    assert _read("timestamp(3)", "2038-01-19 03:14:07.999") == datetime(
        2038, 1, 19, 3, 14, 7, 999000, tzinfo=UTC
    )
    assert _read("datetime", b"2020-01-02 03:04:05") == datetime(2020, 1, 2, 3, 4, 5)


def test_time_beyond_a_day_or_negative_keeps_mysql_text():
    assert _read("time(6)", "12:30:00.500000") == time(12, 30, 0, 500000)
    assert _read("time", "838:59:59") == "838:59:59"
    assert _read("time", "-00:00:01") == "-00:00:01"
    assert _read("time(6)", "24:00:00.000000") == "24:00:00.000000"


@pytest.mark.parametrize("text", ["0000-00-00", "2020-00-15", "2020-02-30", "0000-01-01"])
def test_zero_dates_are_null_in_nullable_columns_and_counted(text):
    zero = ZeroDates()
    assert _read("date", text, zero=zero) is None
    assert zero.counts == {("db.t", "c"): 1}


def test_zero_dates_are_refused_in_not_null_columns_or_by_policy():
    with pytest.raises(BadValue, match="NOT NULL"):
        _read("datetime", "0000-00-00 00:00:00", nullable=False)
    with pytest.raises(BadValue, match="zero_dates='error'"):
        _read("date", "0000-00-00", zero=ZeroDates("error"))


def test_booleans_bits_and_floats():
    assert _read("tinyint(1)", 1) is True
    assert _read("bit(1)", b"\x00") is False
    with pytest.raises(BadValue, match="tinyint1_as_bool"):
        _read("tinyint(1)", 2)
    assert _reader("tinyint(1)", tinyint1_as_bool=False).convert is None
    assert _read("bit(12)", b"\x0f\xff") == 4095
    assert _read("bit(64)", b"\xff" * 8) == 2**64 - 1
    r = _reader("float")
    assert r.expression == "CAST(`c` AS DOUBLE)"  # FLOAT's text form has only 6 digits
    assert _read("float", 3.1415927410125732) == struct.unpack("f", struct.pack("f", 3.14159265))[0]


def test_ready_values_pass_through_untouched():
    rows = [("a", Decimal("1.5")), (None, None)]
    readers = [(0, _reader("varchar(5)")), (1, _reader("decimal(5,2)"))]
    assert convert_columns(rows, readers) is rows
    assert convert_columns([(b"a", "1.5")], readers) == [("a", Decimal("1.5"))]


def test_geometry_round_trips_through_hex_ewkb_with_its_srid():
    wkb = bytes.fromhex("0101000000000000000000F03F0000000000000040")  # POINT(1 2)
    internal = struct.pack("<I", 4326) + wkb
    ewkb = internal_to_ewkb(internal)
    assert ewkb == "0101000020E6100000000000000000F03F0000000000000040"  # PostGIS's own form
    assert ewkb_to_internal(ewkb) == internal
    plain = struct.pack("<I", 0) + wkb
    assert internal_to_ewkb(plain) == wkb.hex().upper()
    assert ewkb_to_internal(wkb.hex()) == plain
    with pytest.raises(BadValue):
        ewkb_to_internal("zz")


def _load(natives, rows):
    table = TableSchema(
        TableId("db", "t"),
        tuple(Column(f"c{i}", DIALECT.parse_type(n)) for i, n in enumerate(natives)),
    )
    plan = plan_table(table, source_dialect="mysql", target=DIALECT)
    load = load_for(plan, table.column_names)
    return load, load.tsv(rows)


def test_load_data_text_escapes_and_marks_null():
    load, data = _load(
        ["varchar(20)", "int", "decimal(5,2)", "datetime(6)", "tinyint(1)", "blob", "bit(5)"],
        [
            (
                "a\tb\nc\\d",
                1,
                Decimal("1.50"),
                datetime(2020, 1, 2, 3, 4, 5, 6),
                True,
                b"\x00\xff",
                5,
            ),
            ("\\N", None, None, None, False, None, None),
        ],
    )
    assert data == (
        b"a\\tb\\nc\\\\d\t1\t1.50\t2020-01-02 03:04:05.000006\t1\t00ff\t5\n"
        b"\\\\N\t\\N\t\\N\t\\N\t0\t\\N\t\\N\n"
    )
    assert "SET `c5` = UNHEX(@v5), `c6` = CAST(@v6 AS UNSIGNED)" in load.load_sql
    assert "(`c0`, `c1`, `c2`, `c3`, `c4`, @v5, @v6)" in load.load_sql


def test_generated_columns_of_a_mysql_source_are_not_written():
    table = TableSchema(
        TableId("db", "t"),
        (
            Column("a", DIALECT.parse_type("int")),
            Column("g", DIALECT.parse_type("int"), generated="`a` * 2 STORED"),
        ),
    )
    plan = plan_table(table, source_dialect="mysql", target=DIALECT)
    load = load_for(plan, ("a", "g"))
    assert load.names == ("a",)
    assert load.positions == (0,)


@given(st.text())
def test_any_text_survives_the_escaping(text):
    _, data = _load(["longtext"], [(text,)])
    line = data.decode()[:-1]
    out, i = [], 0
    table = {"t": "\t", "n": "\n", "\\": "\\", "N": "\\N"}
    while i < len(line):
        if line[i] == "\\":
            out.append(table.get(line[i + 1], line[i + 1]))
            i += 2
        else:
            assert line[i] not in "\t\n"
            out.append(line[i])
            i += 1
    assert "".join(out) == text

"""The fast rows-event decoder without a server: plans, packed decimals, odd input."""

from __future__ import annotations

import struct
import uuid
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replikit.changes import Op
from replikit.endpoints.mysql import _binlog_rows as rows
from replikit.endpoints.mysql._binlog_values import converter
from replikit.endpoints.mysql._dialect import DIALECT
from replikit.schema.model import Column, TableId

TABLE = TableId("db", "t")
_COMPRESSED = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def meta(name: str | None, type_: int, **kw: Any) -> SimpleNamespace:
    """A column of a table map as mysql-replication parses it."""
    return SimpleNamespace(name=name, type=type_, **{"unsigned": False, **kw})


def make_plan(metas: list[SimpleNamespace], natives: dict[str, str], **kw: Any) -> Any:
    columns = {n: Column(n, DIALECT.parse_type(t), nullable=n != "id") for n, t in natives.items()}
    options: dict[str, Any] = {
        "key": ["id"], "table": TABLE, "tinyint1_as_bool": True, "zero_dates": "null",
        "errors": "strict", "on_zero": lambda name: None, **kw,
    }  # fmt: skip
    return rows.plan(SimpleNamespace(columns=metas), columns, **options)


def event(body: bytes, ncols: int, *, before: bytes | None = None) -> SimpleNamespace:
    """A rows event whose rows are unread: its packet is positioned at ``body``."""
    header = b"\x01\x02\x03"  # what precedes the rows in the packet; skipped
    packet = SimpleNamespace(_data=header + body + b"crc!", _position=len(header))
    bitmap = bytes([(1 << ncols) - 1])
    return SimpleNamespace(
        packet=SimpleNamespace(packet=packet, read_bytes=40),
        event_size=40 + len(body),
        number_of_columns=ncols,
        columns_present_bitmap=before or bitmap,
        columns_present_bitmap2=bitmap,
    )


def pack_decimal(value: Decimal, precision: int, scale: int) -> bytes:
    """MySQL's binary DECIMAL (decimal2bin), written from the manual, not from a decoder."""
    whole, _, fraction = f"{value.copy_abs():.{scale}f}".partition(".")  # abs() rounds
    integral = precision - scale
    whole = whole.zfill(integral)[-integral:] if integral else ""
    out = b""
    head = integral % 9
    if head:
        out += int(whole[:head]).to_bytes(_COMPRESSED[head], "big")
    out += b"".join(int(whole[k : k + 9]).to_bytes(4, "big") for k in range(head, integral, 9))
    tail = scale % 9
    out += b"".join(int(fraction[k : k + 9]).to_bytes(4, "big") for k in range(0, scale - tail, 9))
    if tail:
        out += int(fraction[scale - tail :]).to_bytes(_COMPRESSED[tail], "big")
    packed = bytearray(out)
    if value < 0:
        packed = bytearray(b ^ 0xFF for b in packed)
    packed[0] ^= 0x80
    return bytes(packed)


@st.composite
def decimals(draw: st.DrawFn) -> tuple[int, int, Decimal]:
    precision = draw(st.integers(1, 65))
    scale = draw(st.integers(0, min(precision, 30)))
    digits = draw(st.integers(0, 10**precision - 1) | st.sampled_from([0, 1, 10**precision - 1]))
    sign = "-" if digits and draw(st.booleans()) else ""
    return precision, scale, Decimal(f"{sign}{digits}E-{scale}")  # parsed exactly


@given(decimals())
def test_packed_decimals_decode_exactly_with_their_scale(case: tuple[int, int, Decimal]) -> None:
    precision, scale, value = case
    plan = make_plan(
        [meta("id", 3), meta("d", 246, precision=precision, decimals=scale)],
        {"id": "int", "d": f"decimal({precision},{scale})"},
    )
    body = b"\x00" + struct.pack("<i", 1) + pack_decimal(value, precision, scale)
    (row,) = plan.rows(event(body, 2), Op.INSERT)
    got = row[4]["d"]
    assert got == value and got.as_tuple() == value.as_tuple()
    assert row[:4] == (Op.INSERT, TABLE, {"id": 1}, None)


@pytest.mark.parametrize(
    ("precision", "scale", "size"),
    [(65, 30, 30), (12, 2, 6), (5, 5, 3), (1, 0, 1), (18, 9, 8), (10, 0, 5), (65, 0, 29)],
)
def test_decimal_sizes_are_mysqls(precision: int, scale: int, size: int) -> None:
    assert rows._decimal_size(precision, scale) == size


@pytest.mark.parametrize(
    ("type_", "native", "kw"),
    [
        (245, "json", {"length_size": 4}),  # MySQL 8 binary JSON
        (12, "datetime", {}),  # pre-5.6 temporal types
        (7, "timestamp", {}),
        (11, "time", {}),
        (0, "decimal(5,2)", {}),  # pre-5.0 DECIMAL
        (253, "varchar(5)", {"max_length": 5}),
        (247, "enum('a')", {"enum_values": None, "size": 1}),  # no ENUM labels in the map
        (248, "set('a')", {"set_values": ["a"], "size": 1, "character_set_name": "utf8"}),
    ],
)
def test_types_the_plan_does_not_handle_leave_the_table_to_the_library(
    type_: int, native: str, kw: dict[str, Any]
) -> None:
    natives = {"id": "int", "c": native if type_ != 248 else "varchar(5)"}  # SET: no set column
    assert make_plan([meta("id", 3), meta("c", type_, **kw)], natives) is None
    assert make_plan([meta("id", 3)], {"id": "int"}) is not None


def test_columns_the_schema_does_not_know_leave_the_table_to_the_library() -> None:
    assert make_plan([meta("id", 3), meta("gone", 3)], {"id": "int"}) is None
    assert make_plan([meta("id", 3), meta(None, 3)], {"id": "int", "x": "int"}) is None
    assert make_plan([meta("x", 3)], {"id": "int", "x": "int"}) is None  # no key column


def test_column_names_are_data_not_code() -> None:
    name = "x'}; raise SystemExit #\n\"\\"
    plan = make_plan([meta("id", 3), meta(name, 3)], {"id": "int", name: "int"})
    body = b"\x00" + struct.pack("<ii", 1, 2)
    (row,) = plan.rows(event(body, 2), Op.DELETE)
    assert row == (Op.DELETE, TABLE, {"id": 1}, {"id": 1, name: 2}, None)


def test_truncated_or_overlong_events_fall_back_instead_of_guessing() -> None:
    plan = make_plan(
        [meta("id", 3), meta("v", 15, max_length=20, character_set_name="utf8mb4")],
        {"id": "int", "v": "varchar(5)"},
    )
    good = b"\x00" + struct.pack("<i", 1) + b"\x03abc"
    assert plan.rows(event(good, 2), Op.INSERT) == [
        (Op.INSERT, TABLE, {"id": 1}, None, {"id": 1, "v": "abc"})
    ]
    assert plan.rows(event(good[:-1], 2), Op.INSERT) is None  # the string runs past the end
    assert plan.rows(event(good + b"\x00", 2), Op.INSERT) is None  # a row cut short
    bad_utf8 = b"\x00" + struct.pack("<i", 1) + b"\x02\xff\xfe"
    assert plan.rows(event(bad_utf8, 2), Op.INSERT) is None  # the library's DecodeError


def test_update_images_with_different_columns_present_and_nulls() -> None:
    plan = make_plan(
        [meta("id", 3), meta("a", 8, unsigned=True), meta("b", 2)],
        {"id": "int", "a": "bigint unsigned", "b": "smallint"},
    )
    # before: id and b present (b NULL); after: all three, none NULL
    before = b"\x02" + struct.pack("<i", 7)
    after = b"\x00" + struct.pack("<iQh", 8, 2**64 - 1, -2)
    (row,) = plan.rows(event(before + after, 3, before=b"\x05"), Op.UPDATE)
    assert row == (
        Op.UPDATE, TABLE, {"id": 7},
        {"id": 7, "a": None, "b": None}, {"id": 8, "a": 2**64 - 1, "b": -2},
    )  # fmt: skip


def test_zero_dates_are_counted_only_once_the_event_decoded() -> None:
    seen: list[str] = []
    plan = make_plan(
        [meta("id", 3), meta("d", 10), meta("bo", 1)],
        {"id": "int", "d": "date", "bo": "tinyint(1)"},
        on_zero=seen.append,
    )
    zero_then_bad_bool = (
        b"\x00" + struct.pack("<i", 1) + b"\x00\x00\x00\x01"
        + b"\x00" + struct.pack("<i", 2) + b"\x00\x00\x00\x07"
    )  # fmt: skip
    assert plan.rows(event(zero_then_bad_bool, 3), Op.INSERT) is None
    assert seen == []  # the library redoes the event and counts (or refuses) itself
    (row,) = plan.rows(event(zero_then_bad_bool[:9], 3), Op.INSERT)
    assert row[4] == {"id": 1, "d": None, "bo": True} and seen == ["d"]
    refusing = make_plan(
        [meta("id", 3), meta("d", 10), meta("bo", 1)],
        {"id": "int", "d": "date", "bo": "tinyint(1)"},
        zero_dates="error",
    )
    assert refusing.rows(event(zero_then_bad_bool[:9], 3), Op.INSERT) is None


def test_uuid_and_inet_values_get_their_stripped_zero_bytes_back() -> None:
    def conv(native: str) -> Any:
        col = Column("c", DIALECT.parse_type(native))
        found = converter(col)
        assert found is not None
        return found

    assert conv("uuid")(b"\xa1" + b"\x00" * 14) == uuid.UUID(bytes=b"\xa1" + b"\x00" * 15)
    assert conv("uuid")("") == uuid.UUID(int=0)
    assert conv("inet6")(b"\x00" * 10 + b"\xff\xff") == "::ffff:0.0.0.0"
    assert conv("inet6")("") == "::"
    assert conv("inet4")(b"\x0a") == "10.0.0.0"


def test_code_is_compiled_once_per_layout_and_shapes_are_bounded() -> None:
    metas = [meta("id", 3), *(meta(f"c{i}", 1) for i in range(7))]
    natives = {"id": "int", **{f"c{i}": "tinyint" for i in range(7)}}
    first, second = make_plan(metas, natives), make_plan(metas, natives)
    body = b"\x00" + struct.pack("<i", 1) + bytes(range(7))
    assert first.rows(event(body, 8), Op.INSERT) is not None
    compiled = dict(rows._CODE)
    (row,) = second.rows(event(body, 8), Op.INSERT)  # a new table map, the same layout
    assert compiled == rows._CODE and row[4] == {"id": 1, **{f"c{i}": i for i in range(7)}}
    # partial images: one shape per set of columns present, up to a bound, then the library
    decoded = [
        first.rows(
            event(
                b"\x00" + struct.pack("<i", 1) + bytes(mask.bit_count()),
                8,
                before=bytes([1 | mask << 1]),
            ),
            Op.DELETE,
        )
        for mask in range(128)
    ]
    assert all(decoded[: rows._SHAPES - 1])  # the INSERT above is the first shape
    assert decoded[rows._SHAPES - 1 :] == [None] * (128 - rows._SHAPES + 1)


def test_the_readers_mariadb_gtid_state_keeps_the_last_gtid_per_domain_in_domain_order() -> None:
    from replikit.endpoints.mysql._binlog_reader import _Gtids

    state = _Gtids("")
    state.add("0-101-7")
    assert str(state) == "0-101-7"
    state = _Gtids("0-101-7,10-3-1")
    for gtid in ("10-3-2", "2-5-9", "0-101-8"):
        state.add(gtid)
    assert str(state) == "0-101-8,2-5-9,10-3-2"


def test_negative_times_with_a_fraction_get_their_fraction_back() -> None:
    # the library reads -12:00:00.001 (stored as -(12:00:01) and -0.001) as -12:00:00.999
    time3 = converter(Column("t", DIALECT.parse_type("time(3)")))
    assert time3 is not None
    library = -timedelta(hours=12, milliseconds=999)
    assert time3(library) == "-12:00:00.001"
    assert time3(-timedelta(seconds=1, milliseconds=500)) == "-00:00:01.500"
    assert time3(-timedelta(hours=838, minutes=59, seconds=59)) == "-838:59:59.000"

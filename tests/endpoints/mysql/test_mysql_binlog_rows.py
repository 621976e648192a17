"""The fast rows-event decoder against mysql-replication's, on a real MariaDB (fix_mysql).

Every rows event is read as the change reader reads it (``FixedBinLogStreamReader.fetch``:
a ``FastRows``) and decoded twice: from its bytes by the table's generated plan
(``TableDecoder.fast_rows``) and by the library path (``TableDecoder(fast=False).collect``, on
the library's own event of the same packet). Both must give the same rows, value for value and type
for type, and count the same zero dates.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikit.changes import Op
from replikit.endpoints.mysql import cdc
from replikit.endpoints.mysql._binlog_decode import TableDecoder
from replikit.endpoints.mysql._binlog_reader import _ROWS
from replikit.endpoints.mysql._binlog_server import Server
from replikit.endpoints.mysql._binlog_stream import FastRows, open_stream
from replikit.endpoints.mysql._params import ConnParams
from replikit.endpoints.mysql._positions import BinlogPosition
from replikit.endpoints.mysql._values import ZeroDates
from replikit.errors import DataError, DecodeError
from replikit.schema.model import TableId, TableSchema

pytest_plugins = ["fix_mysql"]


# -- decoding both ways ----------------------------------------------------------------------


def typed(value: Any) -> Any:
    """``value`` with every leaf tagged by its type (1 == 1.0 == True, Decimal("1.0") == 1)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [typed(v) for v in value]
    return (type(value).__name__, repr(value))


class Decoded:
    """The rows of every rows event after ``start``, decoded fast and by the library."""

    def __init__(self) -> None:
        self.fast: list[Any] = []
        self.library: list[Any] = []
        self.events = 0
        self.fallbacks = 0
        self.zero_fast: dict[Any, int] = {}
        self.zero_library: dict[Any, int] = {}

    def check(self, *, fallbacks: int = 0) -> list[Any]:
        assert self.fallbacks == fallbacks, f"{self.fallbacks} of {self.events} events fell back"
        assert typed(self.fast) == typed(self.library)
        assert self.zero_fast == self.zero_library
        return self.fast


def position(url: str) -> BinlogPosition:
    params = ConnParams.from_url(url, url)
    return cdc.start(params, [], task="t")


def events(url: str, tables: Sequence[TableSchema], start: BinlogPosition) -> Iterator[Any]:
    """The events after ``start`` up to the end of the binlog now, as the change reader reads
    them (rows events as ``FastRows``: their ``library()`` is the library's own event)."""
    params = ConnParams.from_url(url, url)
    server = Server(params)
    server.prepare(start, gtid_mode=False)
    stream = open_stream(
        server.stream_settings(),
        server_id=0x20000000 + secrets.randbelow(0x1FFFFFFF),
        file=start.file,
        pos=start.pos,
        gtid=None,
        mariadb=server.mariadb,
        blocking=False,
        heartbeat=1.0,
        schemas=sorted({str(t.id.schema) for t in tables}),
        tables=sorted({t.id.name for t in tables}),
    )
    assert stream.reads_ahead  # the fast path is on (it is off when the library changed)
    try:
        yield from iter(stream.fetch, None)
    finally:
        stream.close()


def decode_both(
    url: str, table: TableSchema, start: BinlogPosition, *, zero_dates: str = "null"
) -> Decoded:
    out = Decoded()
    zf, zl = ZeroDates(zero_dates), ZeroDates(zero_dates)
    options: dict[str, Any] = {"tinyint1_as_bool": True, "refresh": lambda _: None}
    fast = TableDecoder(table, zero_dates=zf, **options)
    library = TableDecoder(table, zero_dates=zl, fast=False, **options)
    for event in events(url, [table], start):
        op = event.op if isinstance(event, FastRows) else _ROWS.get(type(event))
        if op is None:
            continue
        out.events += 1
        rows = fast.fast_rows(event, op)
        if rows is None:
            out.fallbacks += 1
        library.collect(event, op, out.library)
        out.fast += rows if rows is not None else out.library[len(out.fast) :]
    out.zero_fast, out.zero_library = dict(zf.counts), dict(zl.counts)
    return out


class Db:
    def __init__(self, server: Any, url: str) -> None:
        self.url = url
        self.name = url.rsplit("/", 1)[1]
        self.conn = server.connect(self.name)
        self.params = ConnParams.from_url(url, url)

    def run(self, *statements: str, args: Any = None) -> None:
        with self.conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, args)

    def table(self, name: str) -> TableSchema:
        found = Server(self.params).reflect(TableId(self.name, name))
        assert found is not None
        return found

    def decode(self, table: str, *statements: str, **kw: Any) -> Decoded:
        """Decode the rows events of ``statements`` (run now) both ways."""
        schema = self.table(table)
        start = position(self.url)
        self.run(*statements)
        return decode_both(self.url, schema, start, **kw)


@pytest.fixture
def db(mysql_server: Any, mysql_url: str) -> Iterator[Db]:
    d = Db(mysql_server, mysql_url)
    d.run("SET SESSION sql_mode = ''", "SET SESSION time_zone = '+00:00'")
    yield d
    d.conn.close()


def images(rows: list[Any]) -> list[dict[str, Any]]:
    """Every row image, in order (insert: after; update: before, after; delete: before)."""
    return [image for row in rows for image in row[3:] if image is not None]


# -- edge values -----------------------------------------------------------------------------

INTS = """CREATE TABLE i (id INT PRIMARY KEY,
  t TINYINT, tu TINYINT UNSIGNED, s SMALLINT, su SMALLINT UNSIGNED, m MEDIUMINT,
  mu MEDIUMINT UNSIGNED, n INT, nu INT UNSIGNED, b BIGINT, bu BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, y YEAR, bo TINYINT(1), bt BIT(10), b1 BIT(1), b64 BIT(64))"""


def test_integer_extremes_floats_years_bits_and_all_nulls(db: Db) -> None:
    db.run(INTS)
    rows = db.decode(
        "i",
        "INSERT INTO i VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648,"
        " 4294967295, -9223372036854775808, 18446744073709551615, -3.4e38, -1.7976931348623157e308,"
        " 2155, 1, b'1111111111', b'1', 18446744073709551615)",
        "INSERT INTO i VALUES (2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0,"
        " 9223372036854775807, 0, 1.5, 5e-324, 0, 0, 0, 0, 0)",
        "INSERT INTO i (id) VALUES (3)",
        "UPDATE i SET t = t - 1 WHERE id = 2",
        "DELETE FROM i",
    ).check()
    first, second, nulls = (row[4] for row in rows[:3])
    assert first == {
        "id": 1, "t": -128, "tu": 255, "s": -32768, "su": 65535, "m": -8388608, "mu": 16777215,
        "n": -2147483648, "nu": 4294967295, "b": -(2**63), "bu": 2**64 - 1,
        "f": first["f"], "d": -1.7976931348623157e308, "y": 2155, "bo": True, "bt": 1023,
        "b1": True, "b64": 2**64 - 1,
    }  # fmt: skip
    assert first["f"] == pytest.approx(-3.4e38, rel=1e-6)
    assert second["y"] == 0 and second["bo"] is False and second["d"] == 5e-324
    assert set(nulls.values()) == {3, None}
    assert [r[0] for r in rows] == [Op.INSERT] * 3 + [Op.UPDATE] + [Op.DELETE] * 3


DECIMALS = (
    *("DECIMAL(65,30)", "DECIMAL(65,0)", "DECIMAL(30,30)", "DECIMAL(12,2)", "DECIMAL(5,5)"),
    *("DECIMAL(1,0)", "DECIMAL(10,0)", "DECIMAL(19,9)", "DECIMAL(18,9)"),
)


def test_decimal_extremes_keep_value_and_scale(db: Db) -> None:
    columns = ", ".join(f"c{i} {t}" for i, t in enumerate(DECIMALS))
    db.run(f"CREATE TABLE d (id INT PRIMARY KEY, {columns})")
    values: list[list[str]] = [[] for _ in range(5)]
    for spec in DECIMALS:
        p, s = (int(x) for x in spec[8:-1].split(","))
        top = "9" * (p - s) + ("." + "9" * s if s else "")
        tiny = "0." + "0" * (s - 1) + "1" if s else "1"
        for row, text in zip(values, (top, "-" + top, tiny, "-" + tiny, "0"), strict=True):
            row.append(text)
    inserts = [f"INSERT INTO d VALUES ({n}, {', '.join(row)})" for n, row in enumerate(values, 1)]
    rows = db.decode("d", *inserts, "UPDATE d SET c3 = -c3").check()
    for image, row in zip(images(rows), values, strict=False):
        for i, spec in enumerate(DECIMALS):
            scale = int(spec[8:-1].split(",")[1])
            got = image[f"c{i}"]
            assert got == Decimal(row[i]) and got.as_tuple().exponent == -scale, (spec, got)


TIMES = """CREATE TABLE tm (id INT PRIMARY KEY, d DATE, dt DATETIME(6), dt0 DATETIME,
  dt3 DATETIME(3), ts TIMESTAMP(6) NULL, ts0 TIMESTAMP NULL, ts1 TIMESTAMP(1) NULL,
  t TIME(6), t0 TIME, t1 TIME(1), t3 TIME(3), dn DATE NOT NULL DEFAULT '2000-01-01')"""


def test_dates_times_zero_dates_and_times_beyond_a_day(db: Db) -> None:
    db.run(TIMES)
    decoded = db.decode(
        "tm",
        "INSERT INTO tm VALUES (1, '1000-01-01', '9999-12-31 23:59:59.999999',"
        " '1000-01-01 00:00:00', '2020-02-29 12:34:56.789', '2038-01-19 03:14:07.999999',"
        " '1970-01-01 00:00:01', '2000-01-01 00:00:00.5', '838:59:59.000000', '-838:59:59',"
        " '-00:00:00.5', '25:00:00.125', '2000-01-01')",
        "INSERT INTO tm VALUES (2, '0000-00-00', '0000-00-00 00:00:00', '2020-00-15 10:00:00',"
        " '2020-01-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', NULL,"
        " '-00:00:01.500000', '00:00:00', '23:59:59.9', '-12:00:00.001', '2000-01-01')",
        "INSERT INTO tm VALUES (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
        " NULL, '2000-01-01')",
        "UPDATE tm SET t0 = '-00:00:01' WHERE id < 3",
    )
    rows = decoded.check()
    one, two = rows[0][4], rows[1][4]
    assert one["d"] == date(1000, 1, 1)
    assert one["dt"] == datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert one["ts"] == datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=one["ts"].tzinfo)
    assert one["ts"].utcoffset() == timedelta(0)
    assert one["ts1"].microsecond == 500000
    assert (one["t"], one["t0"], one["t3"]) == ("838:59:59.000000", "-838:59:59", "25:00:00.125")
    assert two["t0"] == time(0, 0) and two["t1"] == time(23, 59, 59, 900000)
    assert (one["t1"], two["t"], two["t3"]) == ("-00:00:00.5", "-00:00:01.500000", "-12:00:00.001")
    assert {k for k, v in two.items() if v is None} == {"d", "dt", "dt0", "dt3", "ts", "ts0", "ts1"}
    # zero dates: 6 columns of row 2, in its insert and the before and after of its update
    zero = ("d", "dt", "dt0", "dt3", "ts", "ts0")
    assert decoded.zero_fast == {(f"{db.name}.tm", c): 3 for c in zero}


def refused(db: Db, table: str, statement: str, error: type[Exception], **kw: Any) -> None:
    """``statement``'s one rows event has no fast decoding, and the library path raises."""
    schema = db.table(table)
    start = position(db.url)
    db.run(statement)
    reader = TableDecoder(schema, tinyint1_as_bool=True, refresh=lambda _: None, **kw)
    (event,) = [e for e in events(db.url, [schema], start) if isinstance(e, FastRows)]
    assert reader.fast_rows(event, event.op) is None
    with pytest.raises(error) as caught:
        reader.collect(event, event.op, [])
    assert "key id=" in str(caught.value) or error is DecodeError


def test_zero_dates_the_policy_refuses_raise_the_librarys_error(db: Db) -> None:
    db.run("CREATE TABLE z (id INT PRIMARY KEY, d DATE NOT NULL, n DATETIME)")
    zeros = ZeroDates("null")
    refused(db, "z", "INSERT INTO z VALUES (8, '0000-00-00', NULL)", DataError, zero_dates=zeros)
    refused(
        db, "z", "INSERT INTO z VALUES (9, '2020-01-01', '2020-00-01 00:00:00')", DataError,
        zero_dates=ZeroDates("error"),
    )  # fmt: skip
    assert not zeros.counts
    decoded = db.decode("z", "INSERT INTO z VALUES (10, '2020-01-01', '0000-00-00 00:00:00')")
    assert decoded.check()[0][4]["n"] is None
    assert decoded.zero_fast == {(f"{db.name}.z", "n"): 1}


STRINGS = """CREATE TABLE s (id INT PRIMARY KEY, c CHAR(5), v VARCHAR(20), w VARCHAR(300),
  l1 VARCHAR(10) CHARACTER SET latin1, lc CHAR(3) CHARACTER SET latin1, tt TINYTEXT, tx TEXT,
  mt MEDIUMTEXT, lt LONGTEXT, bn BINARY(4), vb VARBINARY(10), tb TINYBLOB, bl BLOB,
  mb MEDIUMBLOB, lb LONGBLOB, e ENUM('a','b','c'), st SET('x','y','z'), j JSON,
  `we'ird "name"` VARCHAR(5))"""


def test_strings_binaries_enums_sets_json_and_odd_names(db: Db) -> None:
    db.run(STRINGS)
    rows = db.decode(
        "s",
        "INSERT INTO s VALUES (1, 'ab', 'héllo😀', REPEAT('é', 300), 'café', 'ñ', 'tiny',"
        " 'text', 'medium', 'long😀', x'00010200', x'ff00', x'00', x'deadbeef00', x'',"
        " x'0102', 'b', 'x,z', '{\"a\": [1, 2.50], \"é\": null}', 'q')",
        "INSERT INTO s VALUES (2, '', '', '', '', '', '', '', '', '', '', '', '', '', '', '',"
        " '', '', '[]', '')",
        "INSERT INTO s (id) VALUES (3)",
        "UPDATE s SET st = 'y', e = 'c' WHERE id = 1",
    ).check()
    one, two = rows[0][4], rows[1][4]
    assert one["v"] == "héllo😀" and one["w"] == "é" * 300 and one["l1"] == "café"
    assert one["bn"] == b"\x00\x01\x02\x00" and one["vb"] == b"\xff\x00" and one["mb"] == b""
    assert (one["e"], one["st"], one['we\'ird "name"']) == ("b", "x,z", "q")
    assert json.loads(one["j"]) == {"a": [1, 2.5], "é": None}
    assert two["bn"] == b"\x00" * 4 and two["vb"] == b"" and two["st"] == "" and two["e"] == ""
    assert rows[3][4]["st"] == "y"


def test_large_values_and_an_event_over_16_mb(db: Db) -> None:
    db.run("CREATE TABLE big (id INT PRIMARY KEY, n INT, mb MEDIUMBLOB, lt LONGTEXT)")
    try:
        rows = db.decode(
            "big",
            "INSERT INTO big VALUES (1, 0, REPEAT('x', 70000), REPEAT('é', 40000))",
            "INSERT INTO big VALUES (2, 0, NULL, REPEAT('ab', 4500000))",
            "UPDATE big SET n = 1 WHERE id = 2",  # before + after: an 18 MB event
        ).check()
    finally:  # BINLOG_GTID_POS() fails on a binlog file holding an event > max_allowed_packet
        db.run("FLUSH BINARY LOGS")
    assert rows[0][4]["mb"] == b"x" * 70000 and rows[0][4]["lt"] == "é" * 40000
    assert len(rows[2][3]["lt"]) == len(rows[2][4]["lt"]) == 9_000_000


@pytest.mark.parametrize("image", ["MINIMAL", "NOBLOB"])
def test_partial_row_images(db: Db, image: str) -> None:
    db.run("CREATE TABLE p (id INT PRIMARY KEY, a INT, b TEXT, c VARCHAR(5), d DATE)")
    rows = db.decode(
        "p",
        f"SET SESSION binlog_row_image = '{image}'",
        "INSERT INTO p VALUES (1, 1, 'x', 'c', '2020-01-01'), (2, NULL, NULL, NULL, NULL)",
        "UPDATE p SET a = 5 WHERE id = 1",
        "UPDATE p SET b = 'new', d = '0000-00-00' WHERE id = 2",
        "DELETE FROM p WHERE id = 1",
        "SET SESSION binlog_row_image = 'FULL'",
    ).check()
    update = rows[2]
    assert update[2] == {"id": 1}
    if image == "MINIMAL":  # the key before, the changed columns after; None: not logged
        assert update[3] == {"id": 1, "a": None, "b": None, "c": None, "d": None}
        assert update[4] == {"id": None, "a": 5, "b": None, "c": None, "d": None}
    else:  # every column but unchanged BLOB/TEXT ones
        assert update[4] == {"id": 1, "a": 5, "b": None, "c": "c", "d": date(2020, 1, 1)}


def test_geometry_uuid_inet6_and_their_stripped_zero_bytes(db: Db) -> None:
    db.run("CREATE TABLE g (id INT PRIMARY KEY, g GEOMETRY, u UUID, i6 INET6, i4 INET4)")
    rows = db.decode(
        "g",
        "INSERT INTO g VALUES (1, ST_GeomFromText('POINT(1 2)', 4326),"
        " 'a1b2c3d4-0000-4111-8222-333344445555', '::ffff:1.2.3.4', '10.0.0.1')",
        "INSERT INTO g VALUES (2, NULL, NULL, NULL, NULL)",
        # the binlog drops trailing zero bytes of these fixed-size binaries
        "INSERT INTO g VALUES (3, NULL, 'a1b2c3d4-0000-4111-8222-333344440000', '::ffff:0.0.0.0',"
        " '10.0.0.0')",
        "INSERT INTO g VALUES (4, NULL, '00000000-0000-0000-0000-000000000000', '::', '0.0.0.0')",
    ).check()
    got = [(str(r[4]["u"]), r[4]["i6"], r[4]["i4"]) for r in rows if r[4]["u"] is not None]
    assert got == [
        ("a1b2c3d4-0000-4111-8222-333344445555", "::ffff:1.2.3.4", "10.0.0.1"),
        ("a1b2c3d4-0000-4111-8222-333344440000", "::ffff:0.0.0.0", "10.0.0.0"),
        ("00000000-0000-0000-0000-000000000000", "::", "0.0.0.0"),
    ]
    assert isinstance(rows[0][4]["g"], str) and rows[1][4]["g"] is None


def test_values_only_the_library_can_refuse_fall_back_to_its_errors(db: Db) -> None:
    db.run("CREATE TABLE r (id INT PRIMARY KEY, bo TINYINT(1), l VARCHAR(5) CHARACTER SET latin1)")
    zeros = ZeroDates("null")
    refused(db, "r", "INSERT INTO r VALUES (1, 2, 'a')", DataError, zero_dates=zeros)
    bad = "INSERT INTO r VALUES (2, 1, CONVERT(0x81 USING latin1))"  # cp1252 has no 0x81
    refused(db, "r", bad, DecodeError, zero_dates=zeros)


# -- random rows of every handled type ---------------------------------------------------------


def _datetimes(low: datetime, high: datetime = datetime.max, *, digits: int) -> Any:
    step = 10 ** (6 - digits)
    return st.datetimes(low, high).map(
        lambda d: d.replace(microsecond=d.microsecond // step * step)
    )


def _times(hours: int, *, digits: int) -> Any:
    span = timedelta(hours=hours, minutes=59, seconds=59)
    step = timedelta(microseconds=10 ** (6 - digits))
    return st.timedeltas(-span, span).map(lambda t: t // step * step)


_EPOCH_RANGE = (datetime(1970, 1, 2), datetime(2038, 1, 18))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=5,
).map(json.dumps)
_UTF8 = st.characters(codec="utf-8")
COLUMNS: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "ti": ("TINYINT", st.integers(-128, 127)),
    "tu": ("TINYINT UNSIGNED", st.integers(0, 255)),
    "bo": ("TINYINT(1)", st.integers(0, 1)),
    "si": ("SMALLINT", st.integers(-(2**15), 2**15 - 1)),
    "mu": ("MEDIUMINT UNSIGNED", st.integers(0, 2**24 - 1)),
    "mi": ("MEDIUMINT", st.integers(-(2**23), 2**23 - 1)),
    "n": ("INT", st.integers(-(2**31), 2**31 - 1)),
    "bu": ("BIGINT UNSIGNED", st.integers(0, 2**64 - 1)),
    "bi": ("BIGINT", st.integers(-(2**63), 2**63 - 1)),
    "f": ("FLOAT", st.floats(-(2.0**100), 2.0**100, width=32)),
    "db": ("DOUBLE", st.floats(allow_nan=False, allow_infinity=False)),
    "d1": ("DECIMAL(65,30)", st.decimals(-(10**35) + 1, 10**35 - 1, places=30)),
    "d2": ("DECIMAL(12,2)", st.decimals(-(10**10) + 1, 10**10 - 1, places=2)),
    "d3": ("DECIMAL(7,7)", st.decimals(-1, 1, places=7).filter(lambda d: abs(d) < 1)),
    "d4": ("DECIMAL(18,0)", st.decimals(-(10**18) + 1, 10**18 - 1, places=0)),
    "dt": ("DATE", st.dates(date(1000, 1, 1)) | st.just("0000-00-00")),
    "dtt": ("DATETIME(6)", _datetimes(datetime(1000, 1, 1), digits=6)),
    "dt0": ("DATETIME", _datetimes(datetime(1000, 1, 1), digits=0)),
    "dt1": ("DATETIME(1)", _datetimes(datetime(1000, 1, 1), digits=1) | st.just("2020-00-10")),
    "ts": ("TIMESTAMP(6) NULL", _datetimes(*_EPOCH_RANGE, digits=6)),
    "ts3": ("TIMESTAMP(3) NULL", _datetimes(*_EPOCH_RANGE, digits=3)),
    "ts0": ("TIMESTAMP NULL", _datetimes(*_EPOCH_RANGE, digits=0) | st.just("0000-00-00")),
    "tm": ("TIME(6)", _times(838, digits=6)),
    "tm0": ("TIME", _times(838, digits=0)),
    "tm2": ("TIME(2)", _times(30, digits=2)),
    "tm5": ("TIME(5)", _times(30, digits=5)),
    "yr": ("YEAR", st.just(0) | st.integers(1901, 2155)),
    "bt": ("BIT(10)", st.integers(0, 1023)),
    "b1": ("BIT(1)", st.integers(0, 1)),
    "b64": ("BIT(64)", st.integers(0, 2**64 - 1)),
    "e": ("ENUM('a','b','c d')", st.sampled_from(["a", "b", "c d", ""])),
    "se": ("SET('x','y','z')", st.sets(st.sampled_from("xyz")).map(",".join)),
    "j": ("JSON", _JSON),
    "c": ("CHAR(5)", st.text(_UTF8, max_size=5)),
    "v": ("VARCHAR(300)", st.text(_UTF8, max_size=300)),
    "l1": ("VARCHAR(10) CHARACTER SET latin1", st.text("abc éü€ñ", max_size=10)),
    "tx": ("TEXT", st.text(_UTF8, max_size=50)),
    "bn": ("BINARY(4)", st.binary(max_size=4)),
    "vb": ("VARBINARY(10)", st.binary(max_size=10)),
    "bl": ("BLOB", st.binary(max_size=300)),
    "lb": ("LONGBLOB", st.binary(max_size=50)),
    "u": ("UUID", st.uuids(version=4).map(str)),  # MariaDB refuses some other versions
    "i6": ("INET6", st.ip_addresses(v=6).map(str)),
}
rows_of = st.fixed_dictionaries({}, optional={k: st.none() | s for k, (_, s) in COLUMNS.items()})
_CREATED: set[str] = set()


def _time_text(precision: int) -> Any:
    """MySQL's TIME as the full-load reader gives it: a time of day, else its text."""

    def text(t: timedelta) -> Any:
        if timedelta(0) <= t < timedelta(days=1):
            return (datetime.min + t).time()
        seconds, micros = divmod(abs(t) // timedelta(microseconds=1), 10**6)
        fraction = f".{micros:06d}"[: precision + 1] if precision else ""
        sign = "-" if t < timedelta(0) else ""
        return f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{fraction}"

    return text


_SAME = (
    *("ti", "tu", "si", "mu", "mi", "n", "bu", "bi", "d1", "d2", "d3", "d4", "dtt", "dt0"),
    *("yr", "bt", "b64", "e", "v", "tx", "l1", "vb", "bl", "lb"),
)
_EXPECTED: dict[str, Any] = {
    **dict.fromkeys(_SAME, lambda v: v),
    **dict.fromkeys(("bo", "b1"), bool),
    **{k: _time_text(p) for k, p in (("tm", 6), ("tm0", 0), ("tm2", 2), ("tm5", 5))},
    "bn": lambda v: v.ljust(4, b"\x00"),
    "u": uuid.UUID,
}


def _insert(db: Db, ident: int, row: dict[str, Any]) -> None:
    cols = ["id", *row]
    db.run(
        f"INSERT INTO h ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
        args=[ident, *row.values()],
    )


def _arg(value: Any) -> Any:
    if isinstance(value, timedelta):  # PyMySQL cannot send a negative timedelta
        sign, micros = (
            ("-" if value < timedelta(0) else ""),
            abs(value) // timedelta(microseconds=1),
        )
        seconds, micro = divmod(micros, 1_000_000)
        return f"{sign}{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micro:06d}"
    return value


@settings(settings.get_profile("db"), max_examples=25)
@given(
    inserted=st.lists(rows_of, min_size=1, max_size=6),
    updates=st.lists(st.tuples(st.integers(0, 5), rows_of), max_size=4),
    deleted=st.sets(st.integers(0, 5)),
    image=st.sampled_from(["FULL", "FULL", "MINIMAL", "NOBLOB"]),
)
def test_random_rows_decode_as_the_library_does(
    mysql_server: Any,
    mysql_url: str,
    inserted: list[dict[str, Any]],
    updates: list[tuple[int, dict[str, Any]]],
    deleted: set[int],
    image: str,
) -> None:
    db = Db(mysql_server, mysql_url)
    try:
        db.run("SET SESSION sql_mode = ''", "SET SESSION time_zone = '+00:00'")
        if mysql_url not in _CREATED:
            cols = ", ".join(f"{name} {sql}" for name, (sql, _) in COLUMNS.items())
            db.run(f"CREATE TABLE h (id INT PRIMARY KEY, {cols})")
            _CREATED.add(mysql_url)
        db.run("DELETE FROM h")
        table = db.table("h")
        start = position(db.url)
        db.run(f"SET SESSION binlog_row_image = '{image}'", "BEGIN")
        for n, row in enumerate(inserted):
            _insert(db, n, {k: _arg(v) for k, v in row.items()})
        for n, row in updates:
            if row:
                sets = ", ".join(f"{k} = %s" for k in row)
                db.run(f"UPDATE h SET {sets} WHERE id = %s", args=[*map(_arg, row.values()), n])
        db.run("UPDATE h SET n = -n WHERE id >= 0")  # one event, several rows
        if deleted:
            db.run(f"DELETE FROM h WHERE id IN ({', '.join(map(str, sorted(deleted)))})")
        db.run("COMMIT", "SET SESSION binlog_row_image = 'FULL'")
        rows = decode_both(db.url, table, start).check()
        if image == "FULL":  # and the inserted values came back as the full load reads them
            for row, (op, *_, after) in zip(inserted, rows, strict=False):
                assert op is Op.INSERT
                got = {k: after[k] for k in row if k in _EXPECTED}
                assert got == {k: None if row[k] is None else _EXPECTED[k](row[k]) for k in got}
    finally:
        db.conn.close()

"""MySQL dialect rules, both directions (pure: no server)."""

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replikit import ConfigError
from replikit.endpoints.mysql._dialect import DIALECT, BadValue, labels
from replikit.endpoints.postgres._dialect import DIALECT as PG
from replikit.endpoints.sqlite._dialect import DIALECT as SQLITE
from replikit.schema.convert import Fidelity, plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Kind, Type

PARSED = [
    ("tinyint(1)", Type.bool_()),
    ("boolean", Type.bool_()),
    ("bit(1)", Type.bool_()),
    ("tinyint(4)", Type.int_(8)),
    ("tinyint(3) unsigned", Type.int_(8, unsigned=True)),
    ("smallint(5) unsigned", Type.int_(16, unsigned=True)),
    ("mediumint(8) unsigned", Type.int_(32)),
    ("int(10) unsigned zerofill", Type.int_(32, unsigned=True)),
    ("bigint(20) unsigned", Type.int_(64, unsigned=True)),
    ("bigint", Type.int_(64)),
    ("bit(12)", Type.int_(16)),
    ("bit(64)", Type.int_(64, unsigned=True)),
    ("year(4)", Type.int_(16)),
    ("decimal(65,30)", Type.decimal(65, 30)),
    ("decimal(10)", Type.decimal(10, 0)),
    ("float", Type.float_(32)),
    ("float(30)", Type.float_(64)),
    ("double", Type.float_(64)),
    ("char(20)", Type.string(20, fixed=True)),
    ("varchar(45)", Type.string(45)),
    ("tinytext", Type.string(255)),
    ("mediumtext", Type.text()),
    ("binary(16)", Type.bytes_(16, fixed=True)),
    ("varbinary(8)", Type.bytes_(8)),
    ("blob", Type.bytes_()),
    ("date", Type.date()),
    ("datetime(6)", Type.timestamp(6)),
    ("datetime", Type.timestamp(0)),
    ("timestamp(3) on update current_timestamp(3)", Type.timestamp(3, tz=True)),
    ("time(6)", Type.time(6)),
    ("enum('G','PG-13','it''s')", Type.enum(("G", "PG-13", "it's"))),
    ("set('a','bc')", Type.string(4)),
    ("json", Type.json()),
    ("uuid", Type.uuid()),
    ("geometry", Type.other("geometry")),
    ("inet6", Type.other("inet6")),
]


@pytest.mark.parametrize(("native", "expected"), PARSED, ids=[p[0] for p in PARSED])
def test_parse_type(native, expected):
    parsed = DIALECT.parse_type(native)
    assert parsed == expected
    assert parsed.native == native


def test_labels_handle_quotes_commas_and_backslashes():
    assert labels("'a','b,c','it''s','x\\'y'") == ("a", "b,c", "it's", "x'y")


def test_quote_doubles_backquotes_and_refuses_nul():
    assert DIALECT.quote("we`ird name") == "`we``ird name`"
    assert DIALECT.quote("select") == "`select`"
    with pytest.raises(ConfigError):
        DIALECT.quote("a\x00b")


def test_literal_avoids_backslash_escape_modes():
    assert DIALECT.literal("it's") == "'it''s'"
    assert DIALECT.literal("C:\\x") == "X'" + b"C:\\x".hex() + "'"


# -- MySQL -> PostgreSQL / SQLite: the portable types the other dialects already handle -----

TO_PG = [
    ("bigint(20) unsigned", "numeric(20,0)", Fidelity.EXACT),
    ("int(10) unsigned", "bigint", Fidelity.EXACT),
    ("smallint(5) unsigned", "integer", Fidelity.EXACT),
    ("mediumint(8) unsigned", "integer", Fidelity.EXACT),
    ("decimal(65,30)", "numeric(65,30)", Fidelity.EXACT),
    ("float", "real", Fidelity.EXACT),
    ("double", "double precision", Fidelity.EXACT),
    ("bit(12)", "smallint", Fidelity.EXACT),
    ("bit(64)", "numeric(20,0)", Fidelity.EXACT),
    ("tinyint(1)", "boolean", Fidelity.EXACT),
    ("year", "smallint", Fidelity.EXACT),
    ("datetime(6)", "timestamp(6) without time zone", Fidelity.EXACT),
    ("timestamp(6)", "timestamp(6) with time zone", Fidelity.EXACT),
    ("enum('a','b')", "text", Fidelity.EXACT),
    ("set('a','b')", "character varying(3)", Fidelity.EXACT),
    ("json", "json", Fidelity.EXACT),
    ("longblob", "bytea", Fidelity.EXACT),
    ("char(2)", "character varying(2)", Fidelity.EXACT),  # MySQL reads CHAR trimmed
    ("geometry", "text", Fidelity.LOSSY),
]


@pytest.mark.parametrize(("native", "sql", "fidelity"), TO_PG, ids=[p[0] for p in TO_PG])
def test_mysql_to_postgres(native, sql, fidelity):
    rule = PG.target_type(DIALECT.parse_type(native), "mysql")
    assert (rule.sql, rule.fidelity) == (sql, fidelity)


def test_mysql_time_is_time_of_day_in_postgres():
    # values beyond a day are refused by row: the plan declares every TIME column lossy
    rule = PG.target_type(DIALECT.parse_type("time(6)"), "mysql")
    assert rule.sql == "time(6) without time zone"
    assert rule.fidelity is Fidelity.LOSSY and "refused" in (rule.reason or "")


def test_mysql_json_is_binary_json_in_postgres():
    # MySQL 8's JSON is stored normalised, like jsonb (reflection marks it binary)
    assert PG.target_type(Type.json(binary=True, native="json"), "mysql").sql == "jsonb"


TO_SQLITE = [
    ("bigint(20) unsigned", "UNSIGNED BIG TEXT", Fidelity.EXACT),
    ("decimal(65,30)", "DECIMAL TEXT(65,30)", Fidelity.EXACT),
    ("decimal(5,2)", "NUMERIC(5,2)", Fidelity.EXACT),
    ("tinyint(1)", "BOOLEAN", Fidelity.EXACT),
    ("timestamp", "TIMESTAMPTZ(0)", Fidelity.LOSSY),
    ("datetime(6)", "DATETIME(6)", Fidelity.EXACT),
    ("enum('a','b')", "TEXT", Fidelity.EXACT),
    ("blob", "BLOB", Fidelity.EXACT),
    ("geometry", "TEXT", Fidelity.LOSSY),
]


@pytest.mark.parametrize(("native", "sql", "fidelity"), TO_SQLITE, ids=[p[0] for p in TO_SQLITE])
def test_mysql_to_sqlite(native, sql, fidelity):
    rule = SQLITE.target_type(DIALECT.parse_type(native), "mysql")
    assert (rule.sql, rule.fidelity) == (sql, fidelity)


# -- PostgreSQL / SQLite -> MySQL ---------------------------------------------------------

FROM_PG = [
    ("boolean", "tinyint(1)", Fidelity.EXACT),
    ("smallint", "smallint", Fidelity.EXACT),
    ("bigint", "bigint", Fidelity.EXACT),
    # PostgreSQL numeric holds NaN (and Infinity), MySQL DECIMAL does not
    ("numeric(20,0)", "decimal(20,0)", Fidelity.LOSSY),
    ("numeric(65,30)", "decimal(65,30)", Fidelity.LOSSY),
    ("numeric", "decimal(65,30)", Fidelity.LOSSY),
    ("numeric(70,2)", "decimal(65,30)", Fidelity.LOSSY),
    ("real", "float", Fidelity.LOSSY),  # NaN and Infinity
    ("double precision", "double", Fidelity.LOSSY),
    ("character varying(45)", "varchar(45)", Fidelity.EXACT),
    ("character(20)", "varchar(20)", Fidelity.EXACT),  # PostgreSQL reads it padded
    ("text", "longtext", Fidelity.EXACT),
    ("bytea", "longblob", Fidelity.EXACT),
    ("date", "date", Fidelity.LOSSY),  # infinity, BC, year > 9999
    ("time(6) without time zone", "time(6)", Fidelity.EXACT),
    ("time with time zone", "time(6)", Fidelity.LOSSY),
    ("timestamp(6) without time zone", "datetime(6)", Fidelity.LOSSY),
    ("timestamp(6) with time zone", "timestamp(6)", Fidelity.LOSSY),
    ("interval", "varchar(64)", Fidelity.LOSSY),
    ("json", "json", Fidelity.EXACT),
    ("jsonb", "json", Fidelity.EXACT),
    ("uuid", "char(36)", Fidelity.EXACT),
    ("text[]", "json", Fidelity.LOSSY),
    ("tsvector", "longtext", Fidelity.LOSSY),
]


@pytest.mark.parametrize(("native", "sql", "fidelity"), FROM_PG, ids=[p[0] for p in FROM_PG])
def test_postgres_to_mysql(native, sql, fidelity):
    rule = DIALECT.target_type(PG.parse_type(native), "postgresql")
    assert (rule.sql, rule.fidelity) == (sql, fidelity)
    if fidelity is not Fidelity.EXACT:
        assert rule.reason


def test_sqlite_to_mysql_and_enum_labels():
    assert DIALECT.target_type(SQLITE.parse_type("NVARCHAR(40)"), "sqlite").sql == "varchar(40)"
    assert DIALECT.target_type(SQLITE.parse_type("INTEGER"), "sqlite").sql == "bigint"
    assert DIALECT.target_type(SQLITE.parse_type("NUMERIC(10,2)"), "sqlite").sql == (
        "decimal(10,2)"
    )
    enum = DIALECT.target_type(Type.enum(("a", "it's")), "postgresql")
    assert enum.sql == "enum('a', 'it''s')"


def test_same_dialect_keeps_the_native_type():
    t = DIALECT.parse_type("smallint(5) unsigned")
    assert DIALECT.target_type(t, "mysql").sql == "smallint(5) unsigned"


# -- adapters: values MySQL would round or clip are refused, never altered -----------------


def _adapt(pg_native, value):
    rule = DIALECT.target_type(PG.parse_type(pg_native), "postgresql")
    return rule.adapt(value) if rule.adapt else value


def test_decimal_adapter_refuses_rounding_overflow_and_nan():
    assert _adapt("numeric(5,2)", Decimal("123.45")) == Decimal("123.45")
    assert _adapt("numeric(5,2)", Decimal("1.5000")) == Decimal("1.5000")
    for bad in (Decimal("1.234"), Decimal("1000.00"), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(BadValue):
            _adapt("numeric(5,2)", bad)
    big = Decimal("9" * 35 + "." + "9" * 30)
    assert _adapt("numeric", big) == big
    with pytest.raises(BadValue):
        _adapt("numeric", Decimal("1" + "0" * 35))


def test_float_dates_and_instants_refused_when_mysql_has_no_form():
    with pytest.raises(BadValue):
        _adapt("double precision", float("nan"))
    with pytest.raises(BadValue):
        _adapt("date", "infinity")
    with pytest.raises(BadValue):
        _adapt("timestamp with time zone", datetime(2040, 1, 1, tzinfo=UTC))
    paris = timezone(timedelta(hours=2))
    assert _adapt("timestamp with time zone", datetime(2020, 5, 1, 12, tzinfo=paris)) == datetime(
        2020, 5, 1, 10
    )
    assert _adapt("time with time zone", time(1, 30, tzinfo=paris)) == time(23, 30)
    assert _adapt("uuid", UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert _adapt("text[]", ["a", None, "é"]) == '["a", null, "é"]'
    assert _adapt("date", date(1, 1, 1)) == date(1, 1, 1)


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, max_value=10**9, min_value=-(10**9)
    )
)
def test_decimal_adapter_accepts_every_value_that_fits(value):
    assert _adapt("numeric(12,2)", value) == value


# -- defaults -----------------------------------------------------------------------------


def _default(expr, t):
    return DIALECT.convert_default(Column("c", t, default=expr), "postgresql")


def test_defaults_from_other_dialects():
    ts = Type.timestamp(6)
    assert _default("CURRENT_TIMESTAMP", ts) == "CURRENT_TIMESTAMP"
    assert _default("now()", ts) == "CURRENT_TIMESTAMP"
    assert _default("'x'::character varying", Type.string(5)) == "'x'"
    assert _default("42", Type.int_(32)) == "42"
    assert _default("true", Type.bool_()) == "1"
    assert _default("'hello'::text", Type.text()) is None  # no literal TEXT defaults in MySQL
    assert _default("nextval('s'::regclass)", Type.int_(64)) is None


def test_plan_into_mysql_reports_lossy_columns():
    table = TableSchema(
        TableId("public", "t"),
        (
            Column("id", PG.parse_type("bigint"), nullable=False),
            Column("n", PG.parse_type("numeric")),
            Column("at", PG.parse_type("timestamp with time zone")),
        ),
        primary_key=("id",),
    )
    plan = plan_table(table, source_dialect="postgresql", target=DIALECT)
    verdicts = {c.source.name: c.fidelity for c in plan.columns}
    assert verdicts == {"id": Fidelity.EXACT, "n": Fidelity.LOSSY, "at": Fidelity.LOSSY}
    assert plan.target_schema.column("n").type.kind is Kind.DECIMAL

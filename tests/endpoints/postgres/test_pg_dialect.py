"""The PostgreSQL dialect without a server: quoting, type parsing, rules, defaults."""

import pytest

from replikit.endpoints.postgres._dialect import DIALECT
from replikit.errors import ConfigError
from replikit.schema.convert import Fidelity
from replikit.schema.model import Column
from replikit.schema.types import Kind, Type


def test_quote_doubles_quotes_and_rejects_nul() -> None:
    assert DIALECT.quote('a"b') == '"a""b"'
    assert DIALECT.quote("select") == '"select"'
    with pytest.raises(ConfigError):
        DIALECT.quote("a\x00b")


@pytest.mark.parametrize(
    ("native", "expected", "spelling"),
    [
        ("numeric(12,2)", Type.decimal(12, 2), "numeric(12,2)"),
        ("numeric", Type.decimal(), "numeric"),
        ("character varying(16)", Type.string(16), "character varying(16)"),
        ("varchar(16)", Type.string(16), "character varying(16)"),
        ("bpchar(3)", Type.string(3, fixed=True), "character(3)"),
        ("timestamp(6) with time zone", Type.timestamp(6, tz=True), "timestamp(6) with time zone"),
        ("timestamptz", Type.timestamp(tz=True), "timestamp with time zone"),
        ("time(3) without time zone", Type.time(3), "time(3) without time zone"),
        ("int4", Type.int_(32), "integer"),
        ("integer[]", Type.array(Type.int_(32)), "integer[]"),
        ("_int4", Type.array(Type.int_(32)), "integer[]"),
        ("text[][]", Type.array(Type.text(), 2), "text[][]"),
        ("jsonb", Type.json(binary=True), "jsonb"),
        ("interval day to second(3)", Type.interval(), "interval day to second(3)"),
        ("float8", Type.float_(64), "double precision"),
    ],
)
def test_parse_type(native: str, expected: Type, spelling: str) -> None:
    parsed = DIALECT.parse_type(native)
    assert parsed == expected
    assert parsed.native == spelling


def test_unknown_type_is_other() -> None:
    assert DIALECT.parse_type("int4range").kind is Kind.OTHER


@pytest.mark.parametrize(
    ("source", "sql"),
    [
        (Type.bool_(), "boolean"),
        (Type.int_(8), "smallint"),
        (Type.int_(16, unsigned=True), "integer"),
        (Type.int_(32, unsigned=True), "bigint"),
        (Type.int_(64, unsigned=True), "numeric(20,0)"),
        (Type.decimal(10, 3), "numeric(10,3)"),
        (Type.float_(32), "real"),
        (Type.string(5, fixed=True), "character varying(5)"),  # MySQL reads CHAR trimmed
        (Type.string(40), "character varying(40)"),
        (Type.timestamp(3, tz=True), "timestamp(3) with time zone"),
        (Type.time(), "time without time zone"),
        (Type.json(), "json"),
        (Type.json(binary=True), "jsonb"),
        (Type.array(Type.int_(64)), "bigint[]"),
        (Type.enum(("a", "b")), "text"),
    ],
)
def test_target_type_rules(source: Type, sql: str) -> None:
    target = DIALECT.target_type(source, "sqlite")
    assert target.sql == sql
    assert target.fidelity is Fidelity.EXACT


def test_other_is_lossy_text_and_same_dialect_keeps_native() -> None:
    other = DIALECT.target_type(Type.other("GEOMETRY"), "mysql")
    assert (other.sql, other.fidelity) == ("text", Fidelity.LOSSY)
    assert "text form" in (other.reason or "")
    same = DIALECT.target_type(Type.other("int4range"), "postgresql")
    assert (same.sql, same.fidelity, same.adapt) == ("int4range", Fidelity.EXACT, None)


@pytest.mark.parametrize(
    ("default", "type_", "expected"),
    [
        ("CURRENT_TIMESTAMP", Type.timestamp(), "CURRENT_TIMESTAMP"),
        ("(datetime('now'))", Type.timestamp(), None),
        ("'it''s'", Type.text(), "'it''s'"),
        ("(42)", Type.int_(), "42"),
        ("-1.5e3", Type.float_(), "-1.5e3"),
        ("1", Type.bool_(), "true"),
        ("FALSE", Type.bool_(), "false"),
        ("current_date", Type.date(), "CURRENT_DATE"),
        ("random()", Type.float_(), None),
    ],
)
def test_convert_default(default: str, type_: Type, expected: str | None) -> None:
    assert DIALECT.convert_default(Column("c", type_, default=default), "sqlite") == expected

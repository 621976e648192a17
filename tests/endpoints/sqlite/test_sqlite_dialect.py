"""The SQLite type rule table, parse_type, quoting and default translation."""

from __future__ import annotations

import pytest

from replikit.endpoints.sqlite._dialect import DIALECT, affinity
from replikit.errors import ConfigError
from replikit.schema.convert import Fidelity
from replikit.schema.model import Column
from replikit.schema.types import Kind, Type

ALL_TYPES = [
    Type.bool_(),
    Type.int_(8),
    Type.int_(16),
    Type.int_(32),
    Type.int_(64),
    Type.int_(8, unsigned=True),
    Type.int_(16, unsigned=True),
    Type.int_(32, unsigned=True),
    Type.int_(64, unsigned=True),
    Type.decimal(10, 2),
    Type.decimal(15, 0),
    Type.decimal(16, 4),
    Type.decimal(38, 10),
    Type.decimal(),
    Type.float_(32),
    Type.float_(64),
    Type.string(40),
    Type.string(3, fixed=True),
    Type.string(),
    Type.text(),
    Type.bytes_(),
    Type.date(),
    Type.time(),
    Type.time(3, tz=True),
    Type.timestamp(),
    Type.timestamp(3),
    Type.timestamp(tz=True),
    Type.timestamp(6, tz=True),
    Type.interval(),
    Type.json(),
    Type.json(binary=True),
    Type.uuid(),
]


@pytest.mark.parametrize("ptype", ALL_TYPES, ids=str)
def test_emitted_spellings_parse_back_to_the_same_type(ptype: Type) -> None:
    target = DIALECT.target_type(ptype, "postgresql")
    assert DIALECT.parse_type(target.sql) == ptype
    assert target.type == ptype
    assert target.type.native == target.sql


@pytest.mark.parametrize("ptype", ALL_TYPES, ids=str)
def test_no_emitted_spelling_has_numeric_affinity_for_text_values(ptype: Type) -> None:
    target = DIALECT.target_type(ptype, "postgresql")
    aff = affinity(target.sql)
    if ptype.kind in (Kind.JSON, Kind.UUID, Kind.TEXT, Kind.STRING):
        assert aff == "TEXT"
    if ptype.kind is Kind.DECIMAL and (ptype.precision is None or ptype.precision > 15):
        assert aff == "TEXT"
    if ptype == Type.int_(64, unsigned=True):
        assert aff == "TEXT"


def test_timestamp_with_tz_is_lossy_with_the_required_reason() -> None:
    target = DIALECT.target_type(Type.timestamp(tz=True), "postgresql")
    assert target.fidelity is Fidelity.LOSSY
    assert target.reason is not None
    assert "keeps the instant, not the zone name" in target.reason


@pytest.mark.parametrize(
    ("ptype", "fidelity", "reason_part"),
    [
        (Type.interval(), Fidelity.LOSSY, "interval arithmetic not available"),
        (Type.array(Type.int_(32)), Fidelity.LOSSY, "element types not enforced"),
        (Type.other("tsvector"), Fidelity.LOSSY, "stored as its text form"),
        (Type.enum(("a", "b")), Fidelity.EXACT, "CHECK"),
        (Type.date(), Fidelity.EXACT, "infinity"),
        (Type.decimal(), Fidelity.EXACT, "text"),
    ],
)
def test_rule_fidelity_and_reason(ptype: Type, fidelity: Fidelity, reason_part: str) -> None:
    target = DIALECT.target_type(ptype, "postgresql")
    assert target.fidelity is fidelity
    assert reason_part in (target.reason or "")


def test_enum_keeps_its_labels_for_the_check() -> None:
    target = DIALECT.target_type(Type.enum(("it's", "b")), "postgresql")
    assert target.sql == "TEXT"
    assert target.type.values == ("it's", "b")
    assert DIALECT.enum_check("mood", ("it's", "b")) == "CHECK (\"mood\" IN ('it''s', 'b'))"


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("INTEGER", Type.int_(64)),
        ("INT", Type.int_(64)),
        ("BIGINT", Type.int_(64)),
        ("TINYINT", Type.int_(8)),
        ("SMALLINT", Type.int_(16)),
        ("INT UNSIGNED", Type.int_(32, unsigned=True)),
        ("NVARCHAR(40)", Type.string(40)),
        ("CHAR(2)", Type.string(2, fixed=True)),
        ("VARCHAR", Type.string()),
        ("TEXT", Type.text()),
        ("CLOB", Type.text()),
        ("NUMERIC(10,2)", Type.decimal(10, 2)),
        ("numeric( 10 , 2 )", Type.decimal(10, 2)),
        ("DECIMAL(5)", Type.decimal(5, 0)),
        ("NUMERIC", Type.decimal()),
        ("DATETIME", Type.timestamp()),
        ("TIMESTAMP", Type.timestamp()),
        ("DATE", Type.date()),
        ("TIME", Type.time()),
        ("BOOLEAN", Type.bool_()),
        ("REAL", Type.float_(64)),
        ("DOUBLE", Type.float_(64)),
        ("DOUBLE PRECISION", Type.float_(64)),
        ("FLOAT", Type.float_(64)),
        ("BLOB", Type.bytes_()),
        ("JSON", Type.json()),
        ("UUID", Type.uuid()),
        ("", Type.other("")),
        ("GEOMETRY", Type.other("GEOMETRY")),
    ],
)
def test_parse_type(declared: str, expected: Type) -> None:
    parsed = DIALECT.parse_type(declared)
    assert parsed == expected
    assert parsed.native == declared


def test_same_dialect_keeps_the_declared_type() -> None:
    for declared in ("NVARCHAR(40)", "NUMERIC(10,2)", "DATETIME", "", "INTEGER", "JSON"):
        target = DIALECT.target_type(DIALECT.parse_type(declared), "sqlite")
        assert target.sql == declared
        assert target.fidelity is Fidelity.EXACT


def test_same_dialect_refuses_a_declared_type_that_is_not_a_type_name() -> None:
    with pytest.raises(ConfigError):
        DIALECT.target_type(Type.text(native='TEXT); DROP TABLE "x'), "sqlite")


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("a", '"a"'), ('we"ird', '"we""ird"'), ("select", '"select"'), ("", '""'), ("é 空", '"é 空"')],
)
def test_quote(name: str, quoted: str) -> None:
    assert DIALECT.quote(name) == quoted


def test_quote_refuses_nul() -> None:
    with pytest.raises(ConfigError):
        DIALECT.quote("a\x00b")


@pytest.mark.parametrize(
    ("default", "ptype", "expected"),
    [
        ("0", Type.int_(32), "0"),
        ("-1.5", Type.float_(), "-1.5"),
        ("'abc'::text", Type.text(), "'abc'"),
        ("'it''s'::character varying", Type.string(10), "'it''s'"),
        ("('x')", Type.text(), "'x'"),
        ("now()", Type.timestamp(), "CURRENT_TIMESTAMP"),
        ("CURRENT_TIMESTAMP", Type.timestamp(), "CURRENT_TIMESTAMP"),
        ("now()", Type.timestamp(tz=True), "(strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'))"),
        ("CURRENT_DATE", Type.date(), "CURRENT_DATE"),
        ("CURRENT_TIME", Type.time(), "CURRENT_TIME"),
        ("true", Type.bool_(), "1"),
        ("false", Type.bool_(), "0"),
        ("'t'::boolean", Type.bool_(), "1"),
        ("NULL", Type.text(), "NULL"),
        ("nextval('s'::regclass)", Type.int_(), None),
        ("gen_random_uuid()", Type.uuid(), None),
        ("'a' || 'b'", Type.text(), None),
    ],
)
def test_convert_default(default: str, ptype: Type, expected: str | None) -> None:
    col = Column("c", ptype, default=default)
    assert DIALECT.convert_default(col, "postgresql") == expected


def test_mysql_backslash_strings_are_not_translated() -> None:
    col = Column("c", Type.text(), default="'a\\'b'")
    assert DIALECT.convert_default(col, "mysql") is None

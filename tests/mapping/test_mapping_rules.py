"""Mapping rules bound to a table: names, filters, expressions, type changes, masks, errors."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import replikit as rk
from replikit import ConfigError, DataError, Mappings, TableId
from replikit.changes import Change, Op
from replikit.mapping import bind_table
from replikit.mapping.filters import AllOf, Condition, condition, pushdown
from replikit.mapping.masking import Mask
from replikit.schema.model import Column, TableSchema
from replikit.schema.types import Kind, Type

T = TableId("shop", "customers")
TABLE = TableSchema(
    T,
    (
        Column("id", Type.int_(32), nullable=False),
        Column("first", Type.string(40)),
        Column("last", Type.string(40)),
        Column("email", Type.string(50)),
        Column("phone", Type.text()),
        Column("spend", Type.decimal(10, 2)),
        Column("joined", Type.date()),
        Column("status", Type.string(10)),
        Column("legacy_a", Type.text()),
        Column("legacy_b", Type.text()),
    ),
    primary_key=("id",),
)
ROW = {
    "id": 7,
    "first": "Ada",
    "last": "Lovelace",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0018",
    "spend": Decimal("12000.50"),
    "joined": date(2020, 5, 17),
    "status": "paid",
    "legacy_a": "x",
    "legacy_b": "y",
}
SECRET = b"test-secret"


def bound(m: Mappings, table: TableSchema = TABLE):
    return bind_table(m, table, SECRET)


# -- names ---------------------------------------------------------------------------------------
def test_name_rules_compose_on_different_objects_and_first_rule_wins_on_one():
    m = (
        Mappings()
        .rename_schema("shop", "public")
        .add_prefix("table", "stg_", "shop.%")
        .add_prefix("table", "never_", "shop.%")  # shadowed by the rule before it
        .replace_suffix("column", "_a", "_alpha", "shop.customers.legacy%")
        .convert_case("column", "upper", "customers.first")
    )
    assert m.target_id(T, schemas=True, default_schema=None) == TableId("public", "stg_customers")
    names = m.columns_of(T, TABLE.column_names)
    assert names == {"legacy_a": "legacy_alpha", "first": "FIRST"}


@pytest.mark.parametrize(
    ("action", "args", "name", "expected"),
    [
        ("convert_case", ("lower",), "ORDERS", "orders"),
        ("add_suffix", ("_v2",), "orders", "orders_v2"),
        ("remove_prefix", ("tbl_",), "tbl_orders", "orders"),
        ("remove_prefix", ("tbl_",), "orders", "orders"),
        ("remove_suffix", ("_old",), "orders_old", "orders"),
        ("replace_prefix", ("tbl_", "t_"), "tbl_orders", "t_orders"),
        ("replace_prefix", ("tbl_", "t_"), "orders", "orders"),
    ],
)
def test_table_name_actions(action, args, name, expected):
    m = getattr(Mappings(), action)("table", *args, "%")
    assert m.target_id(TableId("s", name), schemas=False, default_schema=None).name == expected


@pytest.mark.parametrize(
    ("pattern", "name", "hit"),
    [
        ("log[_]%", "log_a", True),
        ("log[_]%", "logs", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("a_c", "abc", True),
        ("a%", "a", True),
    ],
)
def test_dms_wildcards(pattern, name, hit):
    assert rk.Selection(include=(f"s.{pattern}",)).matches(TableId("s", name)) is hit


@given(st.text(min_size=1, max_size=12).filter(lambda s: "." not in s))
def test_rename_names_are_exact(name):
    m = Mappings().rename_table(f"s.{name}", "renamed")
    assert m.target_id(TableId("s", name), schemas=False, default_schema=None).name == "renamed"
    other = name + "x"
    assert m.target_id(TableId("s", other), schemas=False, default_schema=None).name == other


# -- filters -------------------------------------------------------------------------------------
def test_filter_groups_and_within_or_across():
    m = (
        Mappings()
        .filter("shop.customers", ("status", "=", "paid"), ("spend", ">=", "1000"))
        .filter("shop.customers", ("joined", "<", "2000-01-01"))
    )
    b = bound(m)
    assert b.keeps(ROW)
    assert not b.keeps({**ROW, "spend": Decimal(5)})
    assert b.keeps({**ROW, "spend": Decimal(5), "joined": date(1999, 1, 1)})
    assert not b.keeps({**ROW, "status": None})  # NULL is not equal to anything
    assert "status = 'paid' and spend >= 1000" in b.notes[0]


@pytest.mark.parametrize(
    ("op", "values", "value", "kept"),
    [
        ("=", (3,), 3, True),
        ("!=", (3,), 3, False),
        ("!=", (3,), None, False),
        ("<", (3,), 2, True),
        ("<=", (3,), 3, True),
        (">", (3,), 3, False),
        (">=", (3,), 3, True),
        ("between", (1, 3), 3, True),
        ("between", (1, 3), 4, False),
        ("not between", (1, 3), 4, True),
        ("not between", (1, 3), None, False),
        ("in", (1, 5), 5, True),
        ("in", (1, 5), 2, False),
        ("is null", (), None, True),
        ("is not null", (), None, False),
    ],
)
def test_filter_operators(op, values, value, kept):
    c = condition("id", op, *values).bind({"id": Type.int_()}, "here")
    assert c.holds({"id": value}) is kept


def test_pushdown_keeps_text_equality_only_and_binds_values():
    f = AllOf(
        (
            Condition("qty", ">", (10,), Kind.INT),
            Condition("name", "<", ("m",), Kind.STRING),  # collation-dependent: not pushed
            Condition("name", "in", ("a", "b"), Kind.STRING),
        )
    )
    assert pushdown(f, quote=lambda c: f'"{c}"', mark="%s") == (
        '("qty" > %s AND "name" IN (%s, %s))',
        [10, "a", "b"],
    )


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ((("nope", "=", 1),), "filter column 'nope' does not exist"),
        ((("spend", ">", "lots"),), "value 'lots' is not a decimal"),
        ((("id", "like", "x"),), "unknown filter operator 'like'"),
        ((("id", "between", 1),), "takes 2 value"),
    ],
)
def test_bad_filters_name_the_rule(conditions, message):
    with pytest.raises(ConfigError, match=message):
        bound(Mappings().filter("shop.customers", *conditions))


# -- columns ---------------------------------------------------------------------------------------
def test_added_removed_and_retyped_columns():
    m = (
        Mappings()
        .add_column("customers", "full_name", "string(81)", "$first || ' ' || $last")
        .add_column(
            "customers",
            "tier",
            "string(4)",
            "CASE WHEN round($spend) >= 10000 THEN 'GOLD' ELSE 'STD' END",
        )
        .add_column("customers", "year", "int2", "strftime('%Y', $joined)")
        .add_column("customers", "empty", "text")
        .remove_column("customers", "legacy%")
        .change_type("customers", "id", "int8")
        .change_type("customers", "spend", "string(12)")
    )
    b = bound(m)
    out = b.row(ROW)
    assert out["full_name"] == "Ada Lovelace"
    assert out["tier"] == "GOLD"
    assert out["year"] == 2020
    assert out["empty"] is None
    assert out["spend"] == "12000.50"
    assert "legacy_a" not in out and "legacy_b" not in out
    shape = b.shape
    assert [c.name for c in shape.columns][-4:] == ["full_name", "tier", "year", "empty"]
    assert shape.column("id").type == Type.int_(64)
    assert shape.column("spend").type == Type.string(12)


def test_change_metadata_columns_in_full_load_and_cdc():
    m = (
        Mappings()
        .add_change_column("customers", "op", "operation")
        .add_change_column("customers", "at", "commit_timestamp")
        .add_change_column("customers", "src", "source_table")
    )
    b = bound(m)
    assert b.row(ROW)["op"] == "INSERT"
    assert b.row(ROW)["src"] == "shop.customers"
    from datetime import UTC, datetime

    ts = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    change = Change(Op.UPDATE, T, {"id": 7}, None, ROW, commit_ts=ts)
    (out,) = b.expand(change)
    assert out.after["op"] == "UPDATE"
    assert out.after["at"] == datetime(2024, 1, 2, 3, 4, 5)


@pytest.mark.parametrize(
    ("m", "message"),
    [
        (Mappings().add_column("customers", "x", "text", "$frist || 'a'"), r"rule 1 .*\$frist"),
        (Mappings().add_column("customers", "x", "text", "upper($first"), "not a valid SQLite"),
        (Mappings().add_column("customers", "x", "text", "1; DROP TABLE t"), "not a valid SQLite"),
        (Mappings().add_column("customers", "email", "text", "1"), "already exists"),
        (Mappings().change_type("customers", "joined", "int4"), r"rule 1 .*cannot become int32"),
        (Mappings().remove_column("customers", "id"), "cannot remove key column"),
        (Mappings().define_primary_key("shop.customers", ["nope"]), "no column"),
    ],
)
def test_bad_rules_are_refused_before_data_moves_naming_the_rule(m, message):
    with pytest.raises(ConfigError, match=message):
        bound(m)


def test_a_value_a_type_change_cannot_take_names_table_column_and_key():
    b = bound(Mappings().change_type("customers", "status", "int4"))
    with pytest.raises(DataError, match=r"'paid' cannot become int32.*column status; key id=7"):
        b.row(ROW)


def test_define_primary_key_keys_cdc_changes():
    keyless = TableSchema(
        TableId("s", "items"),
        (Column("vendor", Type.text()), Column("sku", Type.text()), Column("n", Type.int_())),
    )
    b = bound(Mappings().define_primary_key("s.items", ["vendor", "sku"]), keyless)
    assert b.shape.primary_key == ("vendor", "sku")
    before = {"vendor": "v", "sku": "1", "n": 1}
    (out,) = b.expand(Change(Op.DELETE, keyless.id, {}, before, None))
    assert out.key == {"vendor": "v", "sku": "1"}


# -- masks -----------------------------------------------------------------------------------------
def test_masks_are_deterministic_per_secret_and_keep_shape():
    m = (
        Mappings()
        .mask("customers", "email", "fake-email")
        .mask("customers", "phone", "digits-mask", "#")
        .mask("customers", "first", "fake-first-name")
        .mask("customers", "last", "hash")
        .mask("customers", "status", "redact")
        .mask("customers", "spend", "digits-randomize")
        .mask("customers", "legacy%", "null")
    )
    a, b = bound(m).row(ROW), bound(m).row(ROW)
    assert a == b
    assert a["phone"] == "+## ## #### ####"
    assert a["email"].endswith("@example.com") and a["email"] != ROW["email"]
    assert len(a["last"]) == 64
    assert a["status"] == "[redacted]"
    assert a["legacy_a"] is None
    assert len(str(a["spend"])) == len(str(ROW["spend"])) and a["spend"] != ROW["spend"]
    other = bind_table(m, TABLE, b"another secret").row(ROW)
    assert other["last"] != a["last"] and other["email"] != a["email"]
    shape = bound(m).shape
    assert shape.column("last").type == Type.string(64)  # widened for the hash
    assert shape.column("status").type.length == 10


def test_same_value_masks_the_same_in_every_table_and_column():
    orders = TableSchema(
        TableId("shop", "orders"),
        (Column("id", Type.int_()), Column("customer_email", Type.string(50))),
        primary_key=("id",),
    )
    m = Mappings().mask("%", "%email", "hash")
    one = bind_table(m, TABLE, SECRET).row(ROW)["email"]
    two = bind_table(m, orders, SECRET).row({"id": 1, "customer_email": ROW["email"]})
    assert two["customer_email"] == one


def test_dms_hash_is_unkeyed_upper_case_sha256():
    # the DMS user guide's example value and digest
    f = Mask("dms-hash").function(None)
    assert f("C6BGJ566669K").startswith("7CB06784")


def test_masking_without_a_secret_is_refused(monkeypatch):
    monkeypatch.delenv("REPLIKIT_MASK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="masking needs a task secret"):
        bind_table(Mappings().mask("customers", "email", "hash"), TABLE, None)
    monkeypatch.setenv("REPLIKIT_MASK_SECRET", "from-env")
    assert bind_table(Mappings().mask("customers", "email", "hash"), TABLE, None).masks


def test_the_secret_never_shows(caplog):
    caplog.set_level(logging.DEBUG)
    settings = rk.TaskSettings(mask_secret="hunter2-secret")
    assert "hunter2" not in repr(settings)
    env = rk.TaskSettings.from_env(environ={"REPLIKIT_MASK_SECRET": "hunter2-secret"})
    assert env.mask_secret == "hunter2-secret"
    assert "hunter2" not in repr(env) and "hunter2" not in caplog.text


def test_a_mask_that_does_not_fit_the_type_is_refused():
    with pytest.raises(ConfigError, match="mask hash does not apply to a date"):
        bound(Mappings().mask("customers", "joined", "hash"))
    with pytest.raises(ConfigError, match="digits-mask takes one printable"):
        Mappings().mask("customers", "phone", "digits-mask", "##")


def test_float_arithmetic_rounds_to_a_decimal_scale_but_exact_values_must_fit():
    m = Mappings().add_column("customers", "triple", "numeric(14,2)", "$spend * 3 + 0.01")
    assert bound(m).row(ROW)["triple"] == Decimal("36001.51")
    narrow = bound(Mappings().change_type("customers", "spend", "numeric(10,1)"))
    assert narrow.row({**ROW, "spend": Decimal("12000.50")})["spend"] == Decimal("12000.5")
    with pytest.raises(DataError, match="cannot become decimal"):
        narrow.row({**ROW, "spend": Decimal("12000.55")})


@pytest.mark.parametrize("kind", ["digits-randomize", "null", "fake-name", "redact"])
def test_a_key_column_takes_only_a_hash_mask(kind):
    keyed = TableSchema(TableId("shop", "codes"), (Column("code", Type.text(), nullable=False),),
                        primary_key=("code",))  # fmt: skip
    with pytest.raises(ConfigError, match="is a key column.*mask keys with hash"):
        bind_table(Mappings().mask("codes", "code", kind), keyed, SECRET)
    assert bind_table(Mappings().mask("codes", "code", "hash"), keyed, SECRET).masks

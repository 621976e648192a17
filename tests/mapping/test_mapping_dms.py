"""DMS JSON: the example documents (docs research note, from the DMS user guide) load with
their meaning, or are refused naming the rule id and the field."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from replikit import ConfigError, Mappings, TableId, TaskSettings
from replikit.mapping import bind_table
from replikit.schema.model import Column, TableSchema
from replikit.schema.types import Type

DOCS = Path(__file__).parents[1] / "data" / "dms"


def doc(name: str) -> dict:
    return json.loads((DOCS / f"{name}.json").read_text())


def table(schema: str, name: str, *cols: tuple[str, Type], key: tuple[str, ...] = ("id",)):
    columns = tuple(Column(n, t, nullable=n not in key) for n, t in cols)
    return TableSchema(TableId(schema, name), columns, primary_key=key)


CUSTOMERS = table(
    "shop",
    "customers",
    ("id", Type.int_(32)),
    ("first", Type.string(40)),
    ("last", Type.string(40)),
    ("spend", Type.decimal(12, 2)),
    ("ssn", Type.string(11)),
    ("phone", Type.string(20)),
    ("email", Type.string(60)),
)


def test_e1_include_all_but_a_prefix():
    m = Mappings.from_dms_json(DOCS / "E1.json")
    assert m.selection.matches(TableId("shop", "orders"))
    assert not m.selection.matches(TableId("shop", "tmp_orders"))
    assert not m.selection.matches(TableId("other", "orders"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("E2", "rule 1 'orders', field 'load-order'"),
        ("E3", "rule 1 'logs', field 'object-locator.table-type'"),
    ],
)
def test_unsupported_fields_are_refused_by_rule_and_field(name, message):
    with pytest.raises(ConfigError, match=message):
        Mappings.from_dms_json(doc(name))


def test_e4_e5_filters_and_across_filters_or_within():
    orders = table(
        "shop", "orders", ("id", Type.int_()), ("status", Type.text()), ("region", Type.text())
    )
    b = bind_table(Mappings.from_dms_json(doc("E4")), orders, None)
    assert b.keeps({"id": 1, "status": "paid", "region": "eu"})
    assert not b.keeps({"id": 1, "status": "paid", "region": None})
    assert not b.keeps({"id": 1, "status": "new", "region": "eu"})
    events = table(
        "shop", "events", ("id", Type.int_()), ("created_at", Type.date()), ("kind", Type.text())
    )
    b = bind_table(Mappings.from_dms_json(doc("E5")), events, None)
    row = {"id": 6000, "created_at": date(2024, 2, 1), "kind": "d"}
    assert b.keeps(row)
    assert not b.keeps({**row, "id": 3000})
    assert b.keeps({**row, "id": 10})
    assert not b.keeps({**row, "kind": "b"})
    assert not b.keeps({**row, "created_at": date(2023, 12, 31)})


def test_e6_e7_names():
    m = Mappings.from_dms_json(doc("E6"))
    assert m.target_id(TableId("shop", "ORDERS"), schemas=True, default_schema=None) == TableId(
        "public", "orders"
    )
    assert m.columns_of(CUSTOMERS.id, ["id", "first"]) == {"id": "ID", "first": "FIRST"}
    m = Mappings.from_dms_json(doc("E7"))
    assert m.target_id(TableId("shop", "a"), schemas=False, default_schema=None).name == "stg_a"
    assert m.columns_of(TableId("shop", "a"), ["made_ts", "id"]) == {"made_ts": "made_at"}


def test_e8_remove_and_keep_columns():
    m = Mappings.from_dms_json(doc("E8"))
    b = bind_table(m, CUSTOMERS, None)
    assert [c.name for c in b.shape.columns] == ["id", "email"]
    orders = table(
        "shop", "orders", ("id", Type.int_()), ("legacy_a", Type.text()), ("total", Type.int_())
    )
    assert bind_table(m, orders, None).shape.column_names == ("id", "total")


def test_e9_define_unique_index():
    items = table("shop", "items", ("vendor", Type.text()), ("sku", Type.text()), key=())
    b = bind_table(Mappings.from_dms_json(doc("E9")), items, None)
    assert b.shape.unique == (("vendor", "sku"),)


def test_e10_retype_by_existing_type():
    orders = table(
        "shop", "orders", ("id", Type.int_(32)), ("qty", Type.int_(16)), ("note", Type.text())
    )
    b = bind_table(Mappings.from_dms_json(doc("E10")), orders, None)
    assert b.shape.column("id").type == Type.int_(64)
    assert b.shape.column("qty").type == Type.int_(16)  # not an int4
    assert b.shape.column("note").type == Type.string(2000)


def test_e11_expressions():
    b = bind_table(Mappings.from_dms_json(doc("E11")), CUSTOMERS, None)
    row = b.row({"id": 1, "first": "Ada", "last": "L", "spend": Decimal("9999.50")})
    assert (row["full_name"], row["tier"]) == ("Ada L", "GOLD")


def test_e12_audit_columns_keep_deleted_rows_flagged():
    from replikit.changes import Change, Op

    b = bind_table(Mappings.from_dms_json(doc("E12")), CUSTOMERS, None)
    before = {c: None for c in CUSTOMERS.column_names} | {"id": 5}
    (out,) = b.expand(Change(Op.DELETE, CUSTOMERS.id, {"id": 5}, before, None))
    assert out.op.value == "insert"  # an upsert: the row stays
    assert (out.after["op"], out.after["is_deleted"]) == ("DELETE", "Y")


def test_e13_source_table_column():
    b = bind_table(Mappings.from_dms_json(doc("E13")), CUSTOMERS, None)
    assert b.row({"id": 1})["src_table"] == "shop.customers"


def test_e14_masks_keyed_by_default_dms_hash_on_request():
    row = {"id": 1, "ssn": "C6BGJ566669K", "phone": "555-0199"}
    keyed = bind_table(Mappings.from_dms_json(doc("E14")), CUSTOMERS, b"k").row(row)
    dms = bind_table(Mappings.from_dms_json(doc("E14"), hash="dms"), CUSTOMERS, None).row(row)
    assert dms["ssn"].startswith("7CB06784") and keyed["ssn"] != dms["ssn"]
    assert keyed["phone"] == "***-****"
    with pytest.raises(ConfigError, match="masking needs a task secret"):
        bind_table(Mappings.from_dms_json(doc("E14")), CUSTOMERS, None)


def test_e15_task_settings_refuse_policies_replikit_does_not_have():
    with pytest.raises(ConfigError, match=r"ErrorBehavior.DataErrorPolicy='SUSPEND_TABLE'"):
        TaskSettings.from_dms_json(DOCS / "E15.json")


def test_task_settings_with_a_replikit_meaning():
    s = TaskSettings.from_dms_json(
        {
            "FullLoadSettings": {
                "TargetTablePrepMode": "TRUNCATE_BEFORE_LOAD",
                "MaxFullLoadSubTasks": "6",
                "CommitRate": 20000,
            },
            "TargetMetadata": {"BatchApplyEnabled": True, "SupportLobs": True},
            "ChangeProcessingTuning": {"BatchSplitSize": 5000, "MemoryLimitTotal": 256},
            "ErrorBehavior": {"ApplyErrorInsertPolicy": "INSERT_RECORD"},
            "ValidationSettings": {"EnableValidation": False},
            "Logging": {"EnableLogging": True},
        },
        task_id="dms1",
    )
    assert (s.target_table_prep_mode, s.parallel_tables, s.batch_apply) == ("truncate", 6, True)
    assert (s.batch_changes, s.queue_memory_bytes, s.task_id) == (5000, 256 << 20, "dms1")
    with pytest.raises(ConfigError, match="group 'Bogus' is not supported"):
        TaskSettings.from_dms_json({"Bogus": {}})
    with pytest.raises(ConfigError, match=r"FullLoadSettings.Nope is not supported"):
        TaskSettings.from_dms_json({"FullLoadSettings": {"Nope": 1}})


AWS_RENAME_SCHEMA = {
    "rules": [
        {
            "rule-type": "selection",
            "rule-id": "1",
            "rule-name": "1",
            "object-locator": {"schema-name": "Test", "table-name": "%"},
            "rule-action": "include",
        },
        {
            "rule-type": "selection",
            "rule-id": "2",
            "rule-name": "2",
            "object-locator": {"schema-name": "Test", "table-name": "DMS%"},
            "rule-action": "exclude",
        },
        {
            "rule-type": "transformation",
            "rule-id": "3",
            "rule-name": "3",
            "rule-action": "rename",
            "rule-target": "schema",
            "object-locator": {"schema-name": "Test"},
            "value": "Test1",
        },
    ]
}


def test_aws_guide_include_exclude_rename_schema():
    m = Mappings.from_dms_json(json.dumps(AWS_RENAME_SCHEMA))
    assert m.selection.matches(TableId("Test", "orders"))
    assert not m.selection.matches(TableId("Test", "DMS_log"))
    assert not m.selection.matches(TableId("test", "orders"))  # locators are case-sensitive
    assert m.target_id(TableId("Test", "t"), schemas=True, default_schema=None).schema == "Test1"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"rule-type": "table-settings"}, "rule 9, field 'rule-type'"),
        (
            {
                "rule-type": "transformation",
                "rule-target": "column",
                "rule-action": "rename",
                "object-locator": {"schema-name": "s", "table-name": "t", "column-name": "c"},
                "value": "d",
                "expression": "1",
            },
            "rule 9, field 'expression'",
        ),
        (
            {
                "rule-type": "transformation",
                "rule-target": "table-tablespace",
                "rule-action": "rename",
                "object-locator": {"schema-name": "s"},
                "value": "x",
            },
            "rule 9, field 'rule-target'",
        ),
        (
            {
                "rule-type": "transformation",
                "rule-target": "column",
                "rule-action": "add-before-image-columns",
                "object-locator": {"schema-name": "s", "table-name": "t"},
                "before-image-def": {},
            },
            "rule 9, field 'rule-action'",
        ),
        (
            {
                "rule-type": "transformation",
                "rule-target": "column",
                "rule-action": "add-column",
                "object-locator": {"schema-name": "s", "table-name": "t"},
                "value": "x",
                "data-type": {"type": "tuple"},
            },
            "rule 9, field 'data-type.type'",
        ),
        (
            {
                "rule-type": "selection",
                "rule-action": "include",
                "object-locator": {"schema-name": "s", "table-name": "t"},
                "filters": [
                    {
                        "filter-type": "source",
                        "column-name": "c",
                        "filter-conditions": [{"filter-operator": "like", "value": "x"}],
                    }
                ],
            },
            r"rule 9, field 'filters\[0\].filter-conditions\[0\].filter-operator'",
        ),
        (
            {
                "rule-type": "selection",
                "rule-action": "include",
                "object-locator": {"schema-name": "s", "table-name": "t"},
                "colour": "red",
            },
            "rule 9, field 'colour'",
        ),
    ],
)
def test_anything_not_understood_names_rule_and_field(rule, message):
    base = {
        "rule-type": "selection",
        "rule-id": 1,
        "rule-action": "include",
        "object-locator": {"schema-name": "s", "table-name": "%"},
    }
    with pytest.raises(ConfigError, match=message):
        Mappings.from_dms_json({"rules": [base, {"rule-id": "9", **rule}]})


def test_a_filtered_table_also_selected_without_filters_is_ambiguous():
    filtered = {
        "rule-type": "selection", "rule-id": "2", "rule-name": "paid",
        "object-locator": {"schema-name": "shop", "table-name": "order_items"},
        "rule-action": "include",
        "filters": [{"filter-type": "source", "column-name": "status",
                     "filter-conditions": [{"filter-operator": "eq", "value": "paid"}]}],
    }  # fmt: skip
    everything = {"rule-type": "selection", "rule-id": "1", "rule-action": "include",
                  "object-locator": {"schema-name": "shop", "table-name": "%"}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"rule 2 'paid', field 'filters'.*rule 1"):
        Mappings.from_dms_json({"rules": [everything, filtered]})
    others = {**everything, "object-locator": {"schema-name": "shop", "table-name": "orders"}}
    m = Mappings.from_dms_json({"rules": [others, filtered]})  # '_' in the name is itself
    assert m.selection.matches(TableId("shop", "order_items"))
    assert not m.selection.matches(TableId("shop", "orderXitems"))
    wild = {**filtered, "object-locator": {"schema-name": "shop", "table-name": "o%"}}
    with pytest.raises(ConfigError, match="filters need an exact schema and table name"):
        Mappings.from_dms_json({"rules": [wild]})

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replikit import ConfigError, Mappings, Selection, TableId


@pytest.mark.parametrize(
    ("pattern", "table", "expected"),
    [
        ("public.%", TableId("public", "orders"), True),
        ("public.%", TableId("sales", "orders"), False),
        ("%.orders", TableId("sales", "orders"), True),
        ("orders", TableId("sales", "orders"), True),
        ("orders", TableId(None, "orders"), True),
        ("public.ord_rs", TableId("public", "orders"), True),
        ("public.ord_rs", TableId("public", "ordrs"), False),
        ("public.order", TableId("public", "orders"), False),
        ("public.a.b%", TableId("public", "a.bc"), None),
    ],
)
def test_selection_patterns(pattern, table, expected):
    if expected is None:
        with pytest.raises(ConfigError, match="not 'schema.table'"):
            Selection(include=(pattern,))
        return
    assert Selection(include=(pattern,)).matches(table) is expected


def test_exclude_wins_and_no_include_means_all():
    sel = Selection(include=("public.%",), exclude=("public.audit_%",))
    assert sel.matches(TableId("public", "orders"))
    assert not sel.matches(TableId("public", "audit_log"))
    assert Selection().matches(TableId("x", "y"))


def test_unmatched_includes_are_reported():
    sel = Selection(include=("public.orders", "public.nope%"))
    assert sel.unmatched_includes([TableId("public", "orders")]) == ["public.nope%"]


@given(st.text(min_size=1).filter(lambda s: not set(s) & set(".%_[")))
def test_literal_names_match_only_themselves(name):
    sel = Selection(include=(f"s.{name}",))
    assert sel.matches(TableId("s", name))
    assert not sel.matches(TableId("s", name + "x"))


def test_mappings_rename_schema_and_table():
    m = Mappings().include("shop", "%").rename_schema("shop", "public").rename_table("shop.a", "b")
    assert m.target_id(TableId("shop", "a"), schemas=True, default_schema=None) == TableId(
        "public", "b"
    )
    assert m.target_id(TableId("shop", "a"), schemas=False, default_schema=None) == TableId(
        None, "b"
    )
    assert m.target_id(TableId(None, "x"), schemas=True, default_schema="public") == TableId(
        "public", "x"
    )

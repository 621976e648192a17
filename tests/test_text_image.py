"""TextImage: a row image holding the source's text, typed on first access."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replikit.changes import Change, ImageLayout, Op, TextImage
from replikit.pipeline.spill import estimate_size
from replikit.schema.model import TableId


def _layout(calls: list[str]) -> ImageLayout:
    def typed(name: str, cast: Any) -> Any:
        def load(text: str) -> Any:
            calls.append(name)
            return cast(text)

        return load

    return ImageLayout(
        ("id", "price", "note"),
        (typed("id", int), typed("price", Decimal), typed("note", str)),
        "postgresql",
    )


def test_reads_like_a_dict_of_typed_values_and_types_each_value_once() -> None:
    calls: list[str] = []
    image = TextImage(_layout(calls), ("7", "1.50", None))
    assert calls == []  # nothing typed until read
    assert image["id"] == 7 and image["id"] == 7
    assert calls == ["id"]
    assert image == {"id": 7, "price": Decimal("1.50"), "note": None}
    assert calls == ["id", "price"]  # NULL needs no typing
    assert list(image) == ["id", "price", "note"] and len(image) == 3
    assert "price" in image and "other" not in image
    assert image.get("other", "x") == "x"
    with pytest.raises(KeyError):
        image["other"]
    assert image.keys() >= {"id", "note"} and image.keys() == {"id", "price", "note"}
    assert {**image, "note": "n"} == {"id": 7, "price": Decimal("1.50"), "note": "n"}


def test_pickles_as_a_plain_dict() -> None:
    image = TextImage(_layout([]), ("1", "2.5", "x"))
    back = pickle.loads(pickle.dumps(image))
    assert type(back) is dict and back == {"id": 1, "price": Decimal("2.5"), "note": "x"}


@given(st.lists(st.none() | st.text(max_size=30), min_size=3, max_size=3))
def test_size_estimate_counts_the_text_without_typing(texts: list[str | None]) -> None:
    calls: list[str] = []
    layout = ImageLayout(("a", "b", "c"), [lambda t: calls.append(t)] * 3, "postgresql")
    image = TextImage(layout, tuple(texts))
    as_dict = dict(zip(("a", "b", "c"), texts, strict=True))
    calls.clear()
    change = Change(Op.INSERT, TableId("s", "t"), {}, None, image)
    plain = Change(Op.INSERT, TableId("s", "t"), {}, None, as_dict)
    assert estimate_size(change) == estimate_size(plain)
    assert calls == []


def test_get_types_once_and_typed_values_given_are_not_typed_again() -> None:
    calls: list[str] = []
    image = TextImage(_layout(calls), ("7", "1.50", None))
    assert image.get("id") == 7 and image.get("id", "x") == 7 and calls == ["id"]
    assert image.get("note", "x") is None and image.get("other", "x") == "x"
    assert calls == ["id"]  # NULL needs no typing, an absent column none either
    typed = [TextImage.UNTYPED] * 3
    typed[0] = 70  # a reader typed the key as the row came
    given_ = TextImage(_layout(calls), ("7", "1.50", None), typed)
    assert given_["id"] == 70 and given_.get("id") == 70 and calls == ["id"]
    assert given_["price"] == Decimal("1.50") and calls == ["id", "price"]
    assert given_ == {"id": 70, "price": Decimal("1.50"), "note": None}


@given(st.tuples(st.sampled_from(list(Op)), st.text(max_size=5), st.integers()))
def test_slots_constructor_makes_what_the_dataclass_makes(args: tuple[Op, str, int]) -> None:
    from replikit.changes import Transaction, slots_constructor
    from replikit.positions import PgLsn

    op, name, n = args
    table = TableId("s", name)
    fields = (op, table, {"id": n}, None, {"id": n}, PgLsn(abs(n)), None, n)
    made = slots_constructor(Change)(*fields)
    assert made == Change(*fields) and repr(made) == repr(Change(*fields))
    with pytest.raises(AttributeError):
        made.op = Op.DELETE  # type: ignore[misc]
    tx = slots_constructor(Transaction)((made,), PgLsn(abs(n)), None, n, (), 10)
    assert tx == Transaction((made,), PgLsn(abs(n)), None, n, (), 10)
    assert tx.size_hint == 10 and len(tx) == 1

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

"""Column batches: a full load's rows a column at a time, as plain Python values that cost
least to make and to bind, without Arrow (so without pyarrow's ~70 MB of resident memory).

A reader that implements :class:`~replikit.pipeline.contracts.SupportsColumnRead` delivers
each column of a :class:`~replikit.pipeline.contracts.ColumnBatch` in the form its portable
type's kind has here (NULL is ``None`` in every form):

========================  ===========  =======================================================
kind                      form         each value
========================  ===========  =======================================================
int, float, bool, bytes   ``"value"``  the canonical value (:mod:`replikit.schema.types`)
decimal, uuid, date,      ``"str"``    ``str(v)`` of the canonical value ``v``: ``1E-7``,
timestamp                              ``2024-01-02 03:04:05.500000+00:00``; for a date or
                                       timestamp Python cannot hold, the source's own text
                                       (``infinity``, ``0044-03-15 BC``), which is the row
                                       path's ``str`` for it. ASCII, always
string, text, json, enum  ``"utf8"``   the UTF-8 bytes of the text
========================  ===========  =======================================================

So free text needs no Python string at all (nothing decoded into Python and encoded back for
the target), and the printed forms are the ones the row path's value adapters print
(``str(datetime)``, ``str(Decimal)``), as cheap ASCII strings. Any other kind is not read
this way: such a table moves as Arrow batches or rows.
"""

from __future__ import annotations

from typing import Any, Literal

from replikit.schema.types import Kind, Type

__all__ = ["Form", "form_of", "in_form"]

#: how a column's values travel (the module docs)
Form = Literal["value", "str", "utf8"]

_FORMS: dict[Kind, Form] = {
    Kind.INT: "value",
    Kind.FLOAT: "value",
    Kind.BOOL: "value",
    Kind.BYTES: "value",
    Kind.DECIMAL: "str",
    Kind.UUID: "str",
    Kind.DATE: "str",
    Kind.TIMESTAMP: "str",
    Kind.STRING: "utf8",
    Kind.TEXT: "utf8",
    Kind.JSON: "utf8",
    Kind.ENUM: "utf8",
}


def form_of(t: Type) -> Form | None:
    """The form of a column of portable type ``t`` in a column batch, or ``None`` when its
    kind has none (its table is not read as column batches)."""
    return _FORMS.get(t.kind)


def in_form(form: Form, value: Any) -> Any:
    """A canonical value in ``form`` (``None`` stays ``None``)."""
    if value is None or form == "value":
        return value
    text = str(value)
    return text if form == "str" else text.encode()

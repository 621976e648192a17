"""Rows into Arrow arrays, shared by the families that write through Arrow (DuckDB, files).

A column's values pass through the plan's adapter, then into an Arrow array of the column's
type. Converting a whole column at once is the fast path; when it fails, the values are tried
one by one so the error names the row (table, column and key) that Arrow or the adapter
refused. pyarrow is imported by the caller's family (each names its own extra).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from replikit.errors import DataError

__all__ = ["ADAPT_ERRORS", "adapted", "arrow_errors", "preview", "refused"]

Adapter = Callable[[Any], Any]
KeyOf = Callable[[Sequence[Any]], dict[str, Any]]
#: what an adapter raises for a value it cannot convert
ADAPT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    AttributeError,
    ArithmeticError,
)


def arrow_errors(pa: Any) -> tuple[type[BaseException], ...]:
    """What ``pyarrow.array`` raises for a value its type cannot hold."""
    return (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


def preview(value: Any, limit: int = 60) -> str:
    """A short repr of ``value`` for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def adapted(
    values: list[Any],
    adapt: Adapter,
    rows: Sequence[Sequence[Any]],
    *,
    table: str,
    column: str,
    key_of: KeyOf,
) -> list[Any]:
    """``adapt`` applied to every non-NULL value; the first value it refuses is a
    :class:`DataError` naming its row."""
    try:
        return [None if x is None else adapt(x) for x in values]
    except ADAPT_ERRORS:
        pass
    for value, row in zip(values, rows, strict=True):
        try:
            if value is not None:
                adapt(value)
        except ADAPT_ERRORS as exc:
            raise DataError.unwritable(
                value, exc, table=table, column=column, key=key_of(row)
            ) from None
    raise AssertionError("unreachable: a value failed to adapt, then adapted")


def refused(
    pa: Any,
    values: list[Any],
    arrow_type: Any,
    rows: Sequence[Sequence[Any]],
    why: str,
    *,
    table: str,
    column: str,
    key_of: KeyOf,
) -> DataError:
    """The :class:`DataError` for the first of ``values`` Arrow cannot hold as ``arrow_type``
    (``why``: e.g. "cannot be sent to DuckDB as INTEGER[]")."""
    errors = arrow_errors(pa)
    for value, row in zip(values, rows, strict=True):
        try:
            pa.array([value], type=arrow_type)
        except errors as exc:
            return DataError(
                f"value {preview(value)} {why} ({_first_line(exc)})",
                table=table,
                column=column,
                key=key_of(row),
            )
    return DataError(f"a value {why}", table=table, column=column)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

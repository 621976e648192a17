"""Rows into Arrow arrays, shared by the families that write through Arrow (DuckDB, files).

A column's values pass through the plan's adapter, then into an Arrow array of the column's
type. Converting a whole column at once is the fast path; when it fails, the values are tried
one by one so the error names the row (table, column and key) that Arrow or the adapter
refused. pyarrow is imported by the caller's family (each names its own extra).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, overload

from replikit.errors import DataError
from replikit.schema.types import Kind, Type

__all__ = [
    "ADAPT_ERRORS",
    "TYPE_NAMES",
    "ArrowRows",
    "adapted",
    "arrow_errors",
    "canonical_type",
    "pool",
    "preview",
    "refused",
]

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


def pool(pa: Any) -> Any:
    """The memory pool of the arrays a column-wise conversion makes and drops at once: the
    C library's ``malloc`` (pyarrow's system pool), not pyarrow's default (mimalloc in its
    wheels), which kept 23-25 MB of freed pages resident through a 1M-row PostgreSQL ->
    SQLite load whose live Arrow allocations never passed 2 MB (measured, #18). Passed per
    call: the process-wide default is the application's to choose."""
    return pa.system_memory_pool()


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


# -- columnar full load: the canonical Arrow form of a column ------------------------------------
#: A reader that implements ``SupportsArrowRead`` delivers each column of a batch as the Arrow
#: type :func:`canonical_type` names for its portable type, or, in a batch where some value has
#: no such form (``infinity``, a BC date, a NaN decimal), as ``string`` holding each value's
#: canonical text (the text the row path delivers as ``str`` for such values). Writers check
#: that type against the one they write (``SupportsArrowWrite``).
_CANONICAL_KINDS = frozenset(
    {
        Kind.BOOL,
        Kind.INT,
        Kind.DECIMAL,
        Kind.FLOAT,
        Kind.STRING,
        Kind.TEXT,
        Kind.BYTES,
        Kind.DATE,
        Kind.TIMESTAMP,
        Kind.JSON,
        Kind.UUID,
        Kind.ENUM,
    }
)
#: the largest precision of ``decimal128``
_DECIMAL128 = 38


def canonical_type(pa: Any, t: Type) -> Any | None:
    """The Arrow type a column of portable type ``t`` is read as in the columnar full load;
    ``None`` when it has none (those tables load row by row)."""
    kind = t.kind
    if kind not in _CANONICAL_KINDS:
        return None
    if kind is Kind.INT:
        bits = t.bits or 64
        if bits not in (8, 16, 32, 64):
            return None
        return getattr(pa, f"{'u' if t.unsigned else ''}int{bits}")()
    if kind is Kind.DECIMAL:
        if t.precision is None or not 0 < t.precision <= _DECIMAL128:
            return None
        return pa.decimal128(t.precision, t.scale or 0)
    if kind is Kind.TIMESTAMP:
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    simple = {
        Kind.BOOL: pa.bool_,
        Kind.FLOAT: pa.float32 if t.bits == 32 else pa.float64,
        Kind.BYTES: pa.binary,
        Kind.DATE: pa.date32,
    }
    return simple.get(kind, pa.string)()


class ArrowRows(Sequence[tuple[Any, ...]]):
    """The rows of an Arrow table as tuples of Python values, made one at a time: what
    :func:`refused` and the writers' row-naming messages read (only on an error)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def __len__(self) -> int:
        return int(self._table.num_rows)

    @overload
    def __getitem__(self, i: int) -> tuple[Any, ...]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[tuple[Any, ...]]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        row = self._table.slice(i % len(self), 1).to_pylist()[0]
        return tuple(row.values())


class _TypeNames:
    """Stands in for the ``pyarrow`` module where only the types are asked for
    (:func:`canonical_type`, a writer's type of a column): each type is its name, e.g.
    ``"int64"``, ``"decimal128(12, 2)"``, ``"timestamp[us, tz=UTC]"``, equal where pyarrow's
    types are equal. A stage decides with it whether a table moves as Arrow without importing
    pyarrow (about 40 MB resident with pyarrow.compute), which a stream handed from the
    source's driver to the target's engine never needs
    (:class:`~replikit.pipeline.contracts.SupportsArrowStreamRead`)."""

    _SIMPLE = frozenset({"bool_", "string", "binary", "date32", "float32", "float64"})

    def __getattr__(self, name: str) -> Callable[[], str]:
        bits = name.removeprefix("u").removeprefix("int")
        if name in self._SIMPLE or (name.lstrip("u").startswith("int") and bits.isdigit()):
            return lambda: name.rstrip("_")
        raise AttributeError(name)

    @staticmethod
    def decimal128(precision: int, scale: int = 0) -> str:
        return f"decimal128({precision}, {scale})"

    @staticmethod
    def timestamp(unit: str, tz: str | None = None) -> str:
        return f"timestamp[{unit}{f', tz={tz}' if tz else ''}]"

    @staticmethod
    def time64(unit: str) -> str:
        return f"time64[{unit}]"

    @staticmethod
    def list_(item: str) -> str:
        return f"list<{item}>"


#: Arrow types by name, without pyarrow (see :class:`_TypeNames`)
TYPE_NAMES: Any = _TypeNames()

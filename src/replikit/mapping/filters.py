"""Row filters: conditions on source columns, evaluated in Python and pushed down as SQL.

A filter is a tree: :class:`Condition` leaves (``column operator value``), :class:`AllOf`
(AND) and :class:`AnyOf` (OR) nodes. SQL's three-valued logic holds in both evaluations: a
comparison with NULL is not true, so a row whose filtered column is NULL is left out unless
the condition is ``is null``.

Python (:meth:`Condition.holds`) is the authority, in the full load and in CDC alike. The SQL
form (:func:`pushdown`) only narrows what the source sends: it keeps the conditions whose
SQL meaning is at least as permissive as Python's whatever the collation (every operator on
numbers, dates and times; equality, ``in`` and NULL tests on text), so the rows Python keeps
are always among the rows the source sends.

>>> qty = Condition("qty", ">", (10,), Kind.INT)
>>> status = Condition("status", "=", ("paid",), Kind.TEXT)
>>> f = AllOf((qty, status))
>>> f.holds({"qty": 12, "status": "paid"}), f.holds({"qty": None, "status": "paid"})
(True, False)
>>> pushdown(f, quote=lambda c: f'"{c}"', mark="?")
('("qty" > ? AND "status" = ?)', [10, 'paid'])
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from replikit.errors import ConfigError
from replikit.schema.types import Kind, Type

__all__ = [
    "OPERATORS",
    "AllOf",
    "AnyOf",
    "Condition",
    "Predicate",
    "coerce_value",
    "pushdown",
]

#: operator -> number of values it takes (``None``: one or more)
OPERATORS: dict[str, int | None] = {
    "=": 1,
    "!=": 1,
    "<": 1,
    "<=": 1,
    ">": 1,
    ">=": 1,
    "between": 2,
    "not between": 2,
    "in": None,
    "is null": 0,
    "is not null": 0,
}
_ALIASES = {"==": "=", "<>": "!=", "isnull": "is null", "notnull": "is not null"}
_SQL = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# kinds whose every comparison means the same in SQL and in Python
_ORDERED = frozenset({Kind.INT, Kind.DECIMAL, Kind.DATE, Kind.TIMESTAMP, Kind.TIME, Kind.BOOL})
# kinds where SQL equality is at least as permissive as Python's (collations may fold case)
_EQUALITY = frozenset({Kind.STRING, Kind.TEXT, Kind.ENUM, Kind.UUID})
_FILTERABLE = _ORDERED | _EQUALITY | {Kind.FLOAT}


def operator(text: str) -> str:
    """The canonical spelling of a filter operator; ``ConfigError`` for an unknown one."""
    op = " ".join(text.lower().split())
    op = _ALIASES.get(op, op)
    if op not in OPERATORS:
        raise ConfigError(f"unknown filter operator {text!r}; use one of {', '.join(OPERATORS)}")
    return op


@dataclass(frozen=True, slots=True)
class Condition:
    """``column op values``: one test on one source column.

    ``kind`` is the column's type family once the filter is bound to a table (values are
    then of the column's Python type); ``None`` while unbound.
    """

    column: str
    op: str
    values: tuple[Any, ...] = ()
    kind: Kind | None = None

    def holds(self, row: Mapping[str, Any]) -> bool:
        """Whether the condition is true for ``row`` (SQL NULL semantics)."""
        value = row.get(self.column)
        op = self.op
        if op == "is null":
            return value is None
        if op == "is not null":
            return value is not None
        if value is None:
            return False
        v = self.values
        if op == "=":
            return bool(value == v[0])
        if op == "!=":
            return bool(value != v[0])
        if op == "<":
            return bool(value < v[0])
        if op == "<=":
            return bool(value <= v[0])
        if op == ">":
            return bool(value > v[0])
        if op == ">=":
            return bool(value >= v[0])
        if op == "between":
            return bool(v[0] <= value <= v[1])
        if op == "not between":
            return bool(value < v[0] or value > v[1])
        return value in v  # "in"

    @property
    def columns(self) -> frozenset[str]:
        """The columns the condition reads."""
        return frozenset({self.column})

    def describe(self) -> str:
        """``qty > 10``, ``status in ('a', 'b')``, ``day between ... and ...``."""
        v = [repr(x) if isinstance(x, str) else str(x) for x in self.values]
        if self.op in ("is null", "is not null"):
            return f"{self.column} {self.op}"
        if "between" in self.op:
            return f"{self.column} {self.op} {v[0]} and {v[1]}"
        if self.op == "in":
            return f"{self.column} in ({', '.join(v)})"
        return f"{self.column} {self.op} {v[0]}"

    def bind(self, types: Mapping[str, Type], where: str) -> Condition:
        """This condition with values of ``types[column]``'s Python type; ``ConfigError``
        (prefixed with ``where``) for an unknown column or a value that does not fit."""
        t = types.get(self.column)
        if t is None:
            known = ", ".join(types) or "none"
            raise ConfigError(
                f"{where}: filter column {self.column!r} does not exist (columns: {known})"
            )
        if t.kind not in _FILTERABLE:
            raise ConfigError(
                f"{where}: cannot filter on column {self.column!r} of type {t.describe()}; "
                "filter on a number, text, date, time, boolean or UUID column"
            )
        values = tuple(
            coerce_value(x, t, f"{where}: filter on {self.column!r}") for x in self.values
        )
        return Condition(self.column, self.op, values, t.kind)


@dataclass(frozen=True, slots=True)
class AllOf:
    """True when every part holds (an empty one holds)."""

    parts: tuple[Predicate, ...]

    def holds(self, row: Mapping[str, Any]) -> bool:
        """Whether every part holds for ``row``."""
        return all(p.holds(row) for p in self.parts)

    @property
    def columns(self) -> frozenset[str]:
        """The columns the parts read."""
        return frozenset().union(*(p.columns for p in self.parts))

    def describe(self) -> str:
        """The parts joined by ``and``."""
        return " and ".join(_wrapped(p) for p in self.parts) or "true"

    def bind(self, types: Mapping[str, Type], where: str) -> AllOf:
        """Every part bound (see :meth:`Condition.bind`)."""
        return AllOf(tuple(p.bind(types, where) for p in self.parts))


@dataclass(frozen=True, slots=True)
class AnyOf:
    """True when some part holds (an empty one never holds)."""

    parts: tuple[Predicate, ...]

    def holds(self, row: Mapping[str, Any]) -> bool:
        """Whether some part holds for ``row``."""
        return any(p.holds(row) for p in self.parts)

    @property
    def columns(self) -> frozenset[str]:
        """The columns the parts read."""
        return frozenset().union(*(p.columns for p in self.parts))

    def describe(self) -> str:
        """The parts joined by ``or``."""
        return " or ".join(_wrapped(p) for p in self.parts) or "false"

    def bind(self, types: Mapping[str, Type], where: str) -> AnyOf:
        """Every part bound (see :meth:`Condition.bind`)."""
        return AnyOf(tuple(p.bind(types, where) for p in self.parts))


Predicate = Condition | AllOf | AnyOf


def _wrapped(p: Predicate) -> str:
    text = p.describe()
    return f"({text})" if isinstance(p, AllOf | AnyOf) and len(p.parts) > 1 else text


# -- values ----------------------------------------------------------------------------------
_TRUE = ("1", "true", "t", "yes", "y")
_FALSE = ("0", "false", "f", "no", "n")


def coerce_value(value: Any, t: Type, where: str) -> Any:
    """``value`` (a Python value or its text, as DMS JSON gives it) as ``t``'s canonical
    Python value; ``ConfigError`` naming ``where`` when it does not fit."""
    try:
        return _coerce(value, t)
    except (ValueError, TypeError, InvalidOperation):
        raise ConfigError(f"{where}: value {value!r} is not a {t.describe()}") from None


def _coerce(value: Any, t: Type) -> Any:
    k = t.kind
    if k is Kind.INT:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if k is Kind.DECIMAL:
        return value if isinstance(value, Decimal) else Decimal(str(value).strip())
    if k is Kind.FLOAT:
        return float(value)
    if k is Kind.BOOL:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE + _FALSE:
            return text in _TRUE
        raise ValueError(value)
    if k is Kind.DATE:
        if isinstance(value, datetime):
            raise ValueError(value)
        return value if isinstance(value, date) else date.fromisoformat(str(value).strip())
    if k is Kind.TIMESTAMP:
        stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if t.tz and stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        if not t.tz and stamp.tzinfo is not None:
            raise ValueError(value)
        return stamp
    if k is Kind.TIME:
        return value if isinstance(value, time) else time.fromisoformat(str(value).strip())
    if k is Kind.UUID:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    if k in (Kind.STRING, Kind.TEXT, Kind.ENUM):
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    raise TypeError(value)


# -- SQL ---------------------------------------------------------------------------------------
def _pushable(
    c: Condition, kinds: frozenset[Kind] | None, accept: Callable[[Condition], bool] | None
) -> bool:
    if kinds is not None and c.kind not in kinds:
        return False
    if accept is not None and not accept(c):
        return False
    if c.op in ("is null", "is not null"):
        return True
    if c.kind in _ORDERED:
        return True
    return c.kind in _EQUALITY and c.op in ("=", "in")


def pushdown(
    predicate: Predicate | None,
    *,
    quote: Callable[[str], str],
    mark: str,
    kinds: frozenset[Kind] | None = None,
    accept: Callable[[Condition], bool] | None = None,
) -> tuple[str, list[Any]] | None:
    """The SQL form of the part of ``predicate`` a source can test for us, with its bound
    parameters (``mark`` is the driver's placeholder); ``None`` when nothing can be pushed.
    ``kinds`` limits pushed conditions to columns of those type families (what the source's
    driver binds and compares faithfully); ``None``: every family that can be pushed.
    ``accept`` refuses single conditions the driver would bind inexactly (a value out of its
    range, a decimal with more digits than it binds exactly).

    Parts that cannot be pushed are left out of an AND (which widens it) and make an OR
    unpushable; so the SQL keeps at least every row the predicate keeps.
    """
    if predicate is None:
        return None
    if isinstance(predicate, Condition):
        if not _pushable(predicate, kinds, accept):
            return None
        return _condition_sql(predicate, quote, mark)
    parts = [
        pushdown(p, quote=quote, mark=mark, kinds=kinds, accept=accept) for p in predicate.parts
    ]
    if isinstance(predicate, AnyOf):
        if not parts or any(p is None for p in parts):
            return None
        joiner = " OR "
    else:
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        joiner = " AND "
    done = [p for p in parts if p is not None]
    if len(done) == 1:
        return done[0]
    params: list[Any] = []
    for _, p in done:
        params.extend(p)
    return "(" + joiner.join(s for s, _ in done) + ")", params


def _condition_sql(c: Condition, quote: Callable[[str], str], mark: str) -> tuple[str, list[Any]]:
    col = quote(c.column)
    op = c.op
    if op == "is null":
        return f"{col} IS NULL", []
    if op == "is not null":
        return f"{col} IS NOT NULL", []
    if op == "between":
        return f"{col} BETWEEN {mark} AND {mark}", list(c.values)
    if op == "not between":
        return f"({col} < {mark} OR {col} > {mark})", list(c.values)
    if op == "in":
        return f"{col} IN ({', '.join([mark] * len(c.values))})", list(c.values)
    return f"{col} {_SQL[op]} {mark}", [c.values[0]]


def condition(column: str, op: str, *values: Any) -> Condition:
    """A :class:`Condition` with its operator and value count checked.

    >>> condition("qty", "between", 1, 5).describe()
    'qty between 1 and 5'
    """
    canonical = operator(op)
    wanted = OPERATORS[canonical]
    if canonical == "in" and len(values) == 1 and isinstance(values[0], list | tuple | set):
        values = tuple(values[0])
    if wanted is None:
        if not values:
            raise ConfigError(f"filter {column} in (...): give at least one value")
    elif len(values) != wanted:
        raise ConfigError(
            f"filter {column} {canonical}: takes {wanted} value(s), got {len(values)}"
        )
    return Condition(column, canonical, tuple(values))


def conditions_of(items: Sequence[Any]) -> tuple[Condition, ...]:
    """Conditions from :class:`Condition` s or ``(column, op, *values)`` tuples."""
    out = []
    for item in items:
        if isinstance(item, Condition):
            out.append(condition(item.column, item.op, *item.values))
        elif isinstance(item, tuple | list) and len(item) >= 2:
            out.append(condition(item[0], item[1], *item[2:]))
        else:
            raise ConfigError(
                f"a filter condition is a (column, operator, *values) tuple, got {item!r}"
            )
    return tuple(out)

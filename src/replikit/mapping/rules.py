"""Selection and transformation rules, and the immutable ``Mappings`` that holds them.

Patterns use DMS's wildcards: ``%`` any run of characters, ``_`` one character, ``[_]`` a
literal underscore, ``[ab]`` / ``[a-d]`` one character of a set. A table pattern is
``schema.table`` or ``table`` (any schema); a column locator is ``schema.table.column``,
``table.column`` or ``column``. Names given to ``rename_*`` are exact (no wildcards).

Order: rules keep the order they were added in (DMS: their ``rule-id``). When several name
rules (rename, case, prefix, suffix) match one object, the first one applies, as in DMS;
rules on different objects compose (a schema rename, a table prefix and a column case
change all apply).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, TypeVar

from replikit.errors import ConfigError
from replikit.mapping.casts import parse_type
from replikit.mapping.filters import AllOf, AnyOf, Condition, Predicate, conditions_of
from replikit.mapping.masking import Mask
from replikit.schema.model import TableId
from replikit.schema.types import Type

__all__ = ["NAME_ACTIONS", "Mappings", "Rule", "Selection", "literal", "matches"]

#: actions that change a schema, table or column name
NAME_ACTIONS = frozenset(
    {"rename", "convert-lowercase", "convert-uppercase", "add-prefix", "add-suffix",
     "remove-prefix", "remove-suffix", "replace-prefix", "replace-suffix"}
)  # fmt: skip
#: what ``Mappings.add_change_column`` can record, as the DMS header it reads
CHANGE_FIELDS = {
    "operation": ("$AR_H_OPERATION", "string(10)"),
    "commit_timestamp": ("$AR_H_COMMIT_TIMESTAMP", "datetime(6)"),
    "position": ("$AR_H_STREAM_POSITION", "string(100)"),
    "source_table": ("$AR_M_SOURCE_SCHEMA || '.' || $AR_M_SOURCE_TABLE_NAME", "string(255)"),
}


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        elif ch == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            if len(body) == 3 and body[1] == "-":
                out.append(f"[{re.escape(body[0])}-{re.escape(body[2])}]")
            else:
                out.append("[" + "".join(re.escape(c) for c in body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches the DMS ``pattern`` (case-sensitive)."""
    return pattern == "%" or bool(_compile(pattern).fullmatch(name))


def literal(name: str) -> str:
    """A pattern matching exactly ``name``."""
    return "".join(f"[{c}]" if c in "%_[" else c for c in name)


def _split(pattern: str) -> tuple[str, str]:
    if not pattern or pattern.count(".") > 1:
        raise ConfigError(
            f"table pattern {pattern!r} is not 'schema.table' or 'table' "
            "(use % as a wildcard, e.g. public.% or %.orders)"
        )
    schema, dot, table = pattern.partition(".")
    if not dot:
        return "%", schema
    return schema, table


def _schema_of(table: TableId) -> str:
    return table.schema or "main"  # a table without a schema (SQLite): SQLite's name


@dataclass(frozen=True, slots=True)
class Selection:
    """Which tables to move: include and exclude patterns."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for p in (*self.include, *self.exclude):
            _split(p)

    @staticmethod
    def _match(pattern: str, table: TableId) -> bool:
        schema_p, table_p = _split(pattern)
        return matches(schema_p, _schema_of(table)) and matches(table_p, table.name)

    def matches(self, table: TableId) -> bool:
        """True when ``table`` is selected."""
        if any(self._match(p, table) for p in self.exclude):
            return False
        return not self.include or any(self._match(p, table) for p in self.include)

    def filter(self, tables: Iterable[TableId]) -> list[TableId]:
        """The selected tables, in the given order."""
        return [t for t in tables if self.matches(t)]

    def unmatched_includes(self, tables: Sequence[TableId]) -> list[str]:
        """Include patterns that select no table (a likely typo)."""
        return [p for p in self.include if not any(self._match(p, t) for t in tables)]


@dataclass(frozen=True, slots=True)
class Rule:
    """One transformation rule (or one row filter group).

    ``action`` is a DMS ``rule-action`` (``rename``, ``convert-lowercase``, ``add-prefix``,
    ``remove-column``, ``include-column``, ``add-column``, ``change-data-type``,
    ``define-primary-key``) or ``mask`` / ``filter``. ``target`` is ``schema``, ``table``
    or ``column``. ``schema``, ``table``, ``column`` are locator patterns on *source* names.
    """

    id: int
    action: str
    target: str
    schema: str = "%"
    table: str = "%"
    column: str = "%"
    value: str | None = None
    old_value: str | None = None
    expression: str | None = None
    type: Type | None = None
    of_type: str | None = None
    columns: tuple[str, ...] = ()
    unique: bool = False
    mask: Mask | None = None
    predicate: Predicate | None = None
    name: str = ""

    def label(self) -> str:
        """``rule 3 'fn' (add-column on shop.customers)``: how errors and the plan name it."""
        named = f" {self.name!r}" if self.name else ""
        where = {
            "schema": self.schema,
            "table": f"{self.schema}.{self.table}",
            "column": f"{self.schema}.{self.table}.{self.column}",
        }[self.target]
        if self.action in ("add-column", "define-primary-key", "filter"):
            where = f"{self.schema}.{self.table}"
        return f"rule {self.id}{named} ({self.action} on {where})"

    def on_table(self, table: TableId) -> bool:
        """Whether the rule's schema and table locators match ``table``."""
        return matches(self.schema, _schema_of(table)) and matches(self.table, table.name)

    def new_name(self, name: str) -> str:
        """``name`` after this name rule."""
        a, v = self.action, self.value or ""
        if a == "rename":
            return v
        if a == "convert-lowercase":
            return name.lower()
        if a == "convert-uppercase":
            return name.upper()
        if a == "add-prefix":
            return v + name
        if a == "add-suffix":
            return name + v
        if a == "remove-prefix":
            return name.removeprefix(v)
        if a == "remove-suffix":
            return name.removesuffix(v)
        old = self.old_value or ""
        if a == "replace-prefix":
            return v + name.removeprefix(old) if name.startswith(old) else name
        return name.removesuffix(old) + v if name.endswith(old) else name  # replace-suffix


_M = TypeVar("_M", bound="Mappings")


def _recorded(method: Callable[..., _M]) -> Callable[..., _M]:
    """Record the call on the returned ``Mappings`` (see ``Mappings.calls``)."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: _M, *args: Any, **kwargs: Any) -> _M:
        out = method(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        params = tuple((k, v) for k, v in bound.arguments.items() if k != "self")
        return replace(out, calls=(*self.calls, (method.__name__, params)))

    return wrapper


def _table_locator(text: str) -> tuple[str, str]:
    return _split(text)


def _column_locator(text: str) -> tuple[str, str, str]:
    parts = text.split(".")
    if len(parts) == 1:
        return "%", "%", parts[0]
    if len(parts) == 2:
        return "%", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ConfigError(f"column locator {text!r} is not [schema.][table.]column")


def _exact_table(text: str) -> tuple[str, str]:
    """``schema.table`` (split at the first dot) or ``table`` (in any schema), exactly."""
    schema, dot, table = text.partition(".")
    return (literal(schema), literal(table)) if dot else ("%", literal(schema))


@dataclass(frozen=True, slots=True)
class Mappings:
    """Selection and transformation rules. Immutable: each method returns a new
    ``Mappings`` with one more rule.

    >>> m = Mappings().include("public", "%").exclude("public", "audit_%")
    >>> m.selection.matches(TableId("public", "orders"))
    True
    >>> m = m.rename_table("public.users", "customers").mask("public.users", "email", "hash")
    >>> print(m.rules[1].label())
    rule 2 (mask on public.users.email)
    """

    selection: Selection = field(default_factory=Selection)
    rules: tuple[Rule, ...] = ()
    #: the builder calls that made the rules, ``(method, ((parameter, value), ...))``, in order
    #: (a task file writes them back: :meth:`replikit.Task.to_yaml`)
    calls: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = field(
        default=(), compare=False, repr=False
    )
    #: the DMS table-mapping document the rules were read from, if any (and its path)
    dms: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    dms_path: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dms_json(
        cls, source: str | os.PathLike[str] | Mapping[str, Any], *, hash: str = "keyed"
    ) -> Mappings:
        """Read an AWS DMS table-mapping document (a path, JSON text or a ``dict``).

        Selection rules (include, exclude, explicit; filters) and transformation rules
        (renames, case, prefixes and suffixes, remove/include/add column, change-data-type,
        define-primary-key, data masking) are read; anything else is a
        :class:`~replikit.ConfigError` naming the rule id and the field.
        ``data-masking-hash-mask`` is replikit's keyed hash (HMAC with the task secret)
        unless ``hash="dms"`` asks for DMS's unkeyed SHA-256.
        """
        from replikit.mapping.dms import mappings_from_dms

        return mappings_from_dms(source, hash=hash)

    # -- building -------------------------------------------------------------------------------
    def _add(self, action: str, target: str, **kw: Any) -> Mappings:
        next_id = max((r.id for r in self.rules), default=0) + 1
        return replace(self, rules=(*self.rules, Rule(next_id, action, target, **kw)))

    @_recorded
    def include(self, schema: str, table: str = "%") -> Mappings:
        """Select tables matching ``schema.table``."""
        sel = replace(self.selection, include=(*self.selection.include, f"{schema}.{table}"))
        return replace(self, selection=sel)

    @_recorded
    def exclude(self, schema: str, table: str = "%") -> Mappings:
        """Leave out tables matching ``schema.table``."""
        sel = replace(self.selection, exclude=(*self.selection.exclude, f"{schema}.{table}"))
        return replace(self, selection=sel)

    @_recorded
    def rename_schema(self, source: str, target: str) -> Mappings:
        """Put tables of schema ``source`` into schema ``target``."""
        return self._add("rename", "schema", schema=literal(source), value=target)

    @_recorded
    def rename_table(self, source: str, target: str) -> Mappings:
        """Rename table ``source`` (``schema.table`` or ``table``) to ``target``."""
        schema, table = _exact_table(source)
        return self._add("rename", "table", schema=schema, table=table, value=target)

    @_recorded
    def rename_column(self, table: str, column: str, target: str) -> Mappings:
        """Rename ``column`` of source table ``table`` (``schema.table`` or ``table``) to
        ``target`` in the target table (the source keeps its name).

        >>> m = Mappings().rename_column("public.users", "ID", "legacy_id")
        >>> m.columns_of(TableId("public", "users"), ["ID", "name"])
        {'ID': 'legacy_id'}
        """
        schema, tname = _exact_table(table)
        return self._add(
            "rename", "column", schema=schema, table=tname, column=literal(column), value=target
        )

    def _name_rule(self, action: str, target: str, locator: str, **kw: Any) -> Mappings:
        if target == "schema":
            return self._add(action, "schema", schema=locator, **kw)
        if target == "table":
            schema, table = _table_locator(locator)
            return self._add(action, "table", schema=schema, table=table, **kw)
        if target == "column":
            schema, table, column = _column_locator(locator)
            return self._add(action, "column", schema=schema, table=table, column=column, **kw)
        raise ConfigError(f"{action}: target must be 'schema', 'table' or 'column', not {target!r}")

    @_recorded
    def convert_case(self, target: str, case: str, locator: str = "%") -> Mappings:
        """Lower- or upper-case the names of ``target`` objects (``schema``, ``table`` or
        ``column``) matching ``locator``; ``case`` is ``lower`` or ``upper``."""
        if case not in ("lower", "upper"):
            raise ConfigError(f"convert_case: case must be 'lower' or 'upper', not {case!r}")
        return self._name_rule(f"convert-{case}case", target, locator)

    @_recorded
    def add_prefix(self, target: str, prefix: str, locator: str = "%") -> Mappings:
        """Prepend ``prefix`` to the names of ``target`` objects matching ``locator``."""
        return self._name_rule("add-prefix", target, locator, value=prefix)

    @_recorded
    def add_suffix(self, target: str, suffix: str, locator: str = "%") -> Mappings:
        """Append ``suffix`` to the names of ``target`` objects matching ``locator``."""
        return self._name_rule("add-suffix", target, locator, value=suffix)

    @_recorded
    def remove_prefix(self, target: str, prefix: str, locator: str = "%") -> Mappings:
        """Strip ``prefix`` from the names that start with it."""
        return self._name_rule("remove-prefix", target, locator, value=prefix)

    @_recorded
    def remove_suffix(self, target: str, suffix: str, locator: str = "%") -> Mappings:
        """Strip ``suffix`` from the names that end with it."""
        return self._name_rule("remove-suffix", target, locator, value=suffix)

    @_recorded
    def replace_prefix(self, target: str, old: str, new: str, locator: str = "%") -> Mappings:
        """Replace prefix ``old`` by ``new`` in the names that start with ``old``."""
        return self._name_rule("replace-prefix", target, locator, old_value=old, value=new)

    @_recorded
    def replace_suffix(self, target: str, old: str, new: str, locator: str = "%") -> Mappings:
        """Replace suffix ``old`` by ``new`` in the names that end with ``old``."""
        return self._name_rule("replace-suffix", target, locator, old_value=old, value=new)

    @_recorded
    def remove_column(self, table: str, *columns: str) -> Mappings:
        """Leave ``columns`` (patterns) of tables matching ``table`` out of the target."""
        schema, tname = _table_locator(table)
        out = self
        for column in columns:
            out = out._add("remove-column", "column", schema=schema, table=tname, column=column)
        return out

    @_recorded
    def keep_columns(self, table: str, *columns: str) -> Mappings:
        """Keep only ``columns`` of tables matching ``table`` (DMS ``include-column``)."""
        schema, tname = _table_locator(table)
        out = self
        for column in columns:
            out = out._add("include-column", "column", schema=schema, table=tname, column=column)
        return out

    @_recorded
    def add_column(
        self, table: str, name: str, type: Type | str, expression: str | None = None
    ) -> Mappings:
        """Add column ``name`` of ``type`` to tables matching ``table``, computed by a SQLite
        ``expression`` over the source row (``$column``; ``None``: always NULL).

        >>> m = Mappings().add_column("shop.customers", "full_name", "string(120)",
        ...                           "$first || ' ' || $last")
        """
        schema, tname = _table_locator(table)
        t = parse_type(type, f"add_column {name!r}")
        return self._add(
            "add-column", "column", schema=schema, table=tname, value=name, type=t,
            expression=expression,
        )  # fmt: skip

    @_recorded
    def add_change_column(self, table: str, name: str, field: str) -> Mappings:
        """Add column ``name`` recording the change's ``field``: ``operation`` (``INSERT``,
        ``UPDATE``, ``DELETE``), ``commit_timestamp`` (the source commit time; the load's
        start in the full load), ``position`` (the source position; ``''`` in the full
        load) or ``source_table``."""
        if field not in CHANGE_FIELDS:
            raise ConfigError(
                f"add_change_column: field must be one of {', '.join(CHANGE_FIELDS)}, not {field!r}"
            )
        expression, type_name = CHANGE_FIELDS[field]
        return self.add_column(table, name, type_name, expression)

    @_recorded
    def change_type(self, table: str, column: str, type: Type | str) -> Mappings:
        """Give ``column`` (a pattern) of tables matching ``table`` another target type;
        values are cast one by one (one that does not fit is a row error naming it)."""
        schema, tname = _table_locator(table)
        t = parse_type(type, f"change_type {column!r}")
        return self._add(
            "change-data-type", "column", schema=schema, table=tname, column=column, type=t
        )

    @_recorded
    def define_primary_key(
        self, table: str, columns: Sequence[str], *, unique: bool = False, name: str | None = None
    ) -> Mappings:
        """Give source table ``table`` (exact name) a key on the target: a primary key, or a
        unique index when ``unique``. CDC applies its changes by this key."""
        if not columns:
            raise ConfigError(f"define_primary_key {table!r}: give the key's columns")
        schema, tname = _exact_table(table)
        return self._add(
            "define-primary-key", "table", schema=schema, table=tname, columns=tuple(columns),
            unique=unique, value=name,
        )  # fmt: skip

    @_recorded
    def mask(self, table: str, column: str, kind: str, value: str | None = None) -> Mappings:
        """Mask ``column`` (a pattern) of tables matching ``table`` (see
        :mod:`replikit.mapping.masking` for the kinds; ``value``: the character of
        ``digits-mask`` or the text of ``redact``)."""
        schema, tname = _table_locator(table)
        return self._add(
            "mask", "column", schema=schema, table=tname, column=column, mask=Mask(kind, value)
        )

    @_recorded
    def filter(self, table: str, *conditions: Condition | tuple[Any, ...]) -> Mappings:
        """Keep only the rows of tables matching ``table`` where the ``conditions`` (each a
        ``(column, operator, *values)`` tuple) all hold. Each call adds one group: a row is
        kept when any group of its table holds (AND within a group, OR across groups).

        Operators: ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``between``, ``not between``,
        ``in``, ``is null``, ``is not null``.

        >>> m = Mappings().filter("shop.orders", ("status", "=", "paid"), ("qty", ">", 0))
        """
        schema, tname = _table_locator(table)
        group = AllOf(conditions_of(conditions))
        return self._filter(schema, tname, group)

    def _filter(self, schema: str, table: str, predicate: Predicate, name: str = "") -> Mappings:
        return self._add(
            "filter", "table", schema=schema, table=table, predicate=predicate, name=name
        )

    # -- reading ----------------------------------------------------------------------------------
    def _first(self, target: str, applies: Any) -> Rule | None:
        for rule in self.rules:
            if rule.target == target and rule.action in NAME_ACTIONS and applies(rule):
                return rule
        return None

    def name_rule(self, table: TableId, column: str | None = None) -> Rule | None:
        """The name rule that applies to ``table`` (or to its ``column``), if any."""
        if column is None:
            return self._first("table", lambda r: r.on_table(table))
        return self._first("column", lambda r: r.on_table(table) and matches(r.column, column))

    def schema_rule(self, schema: str) -> Rule | None:
        """The name rule that applies to source schema ``schema``, if any."""
        return self._first("schema", lambda r: matches(r.schema, schema))

    def columns_of(self, table: TableId, columns: Iterable[str] = ()) -> dict[str, str]:
        """The column renames for source table ``table`` (source name -> target name) among
        ``columns``; without ``columns``, the exact ``rename_column`` rules of the table."""
        names = list(columns)
        if not names:
            names = [
                r.column.replace("[_]", "_").replace("[%]", "%").replace("[[]", "[")
                for r in self.rules
                if r.target == "column" and r.action == "rename" and r.on_table(table)
            ]
        out = {}
        for name in names:
            rule = self.name_rule(table, name)
            if rule is not None:
                new = rule.new_name(name)
                if new != name:
                    out[name] = new
        return out

    def target_id(self, table: TableId, *, schemas: bool, default_schema: str | None) -> TableId:
        """Where ``table`` lands in a target (with or without schemas)."""
        rule = self.name_rule(table)
        name = rule.new_name(table.name) if rule is not None else table.name
        if not schemas:
            return TableId(None, name)
        schema = table.schema or default_schema or None  # "": keep none (files targets)
        if schema is not None:
            srule = self.schema_rule(schema)
            if srule is not None:
                schema = srule.new_name(schema)
        return TableId(schema, name)

    @property
    def transforms_rows(self) -> bool:
        """Whether any rule changes rows (not only names): filters, masks, column rules."""
        return any(r.action not in NAME_ACTIONS for r in self.rules)

    def filters_of(self, table: TableId) -> Predicate | None:
        """The row filter of source table ``table`` (groups ORed), unbound."""
        groups = [
            r.predicate
            for r in self.rules
            if r.action == "filter" and r.on_table(table) and r.predicate is not None
        ]
        if not groups:
            return None
        return groups[0] if len(groups) == 1 else AnyOf(tuple(groups))

"""Binding rules to a source table: checks, the target shape, and the pipeline stage.

:func:`bind_table` checks every rule that matches a table against its schema (a rule that
cannot apply is a :class:`~replikit.ConfigError` naming it) and returns the
:class:`~replikit.mapping.bound.TableMapping`; :class:`MappingTransform` is the pipeline stage
made of the bound tables; :func:`unused_rules` and :func:`rule_collisions` are what the plan
reports about the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from replikit.changes import Change, Op
from replikit.errors import ConfigError
from replikit.mapping.bound import AddedColumn, TableMapping
from replikit.mapping.casts import can_change, caster, parse_type
from replikit.mapping.expressions import compile_expression
from replikit.mapping.filters import AllOf, AnyOf, Predicate
from replikit.mapping.masking import Mask, mask_secret
from replikit.mapping.rules import Mappings, Rule, matches
from replikit.schema.convert import TablePlan
from replikit.schema.findings import Finding
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

__all__ = [
    "MappingTransform",
    "bind_table",
    "keyed_for_cdc",
    "rule_collisions",
    "unused_rules",
]


def _rules_for(mappings: Mappings, table: TableId, actions: Sequence[str]) -> list[Rule]:
    return [r for r in mappings.rules if r.action in actions and r.on_table(table)]


def bind_table(
    mappings: Mappings, table: TableSchema, secret: bytes | None, used: set[int] | None = None
) -> TableMapping:
    """Bind ``mappings`` to ``table``; ``ConfigError`` naming the rule for a rule that cannot
    apply (unknown column, bad expression, impossible type change, missing secret...).
    ``used`` collects the ids of the rules that matched something."""
    used = used if used is not None else set()
    tid = str(table.id)
    cols = {c.name: c for c in table.columns}
    types = {c.name: c.type for c in table.columns}
    notes: list[str] = []

    def columns_of(rule: Rule) -> list[str]:
        hit = [c for c in cols if matches(rule.column, c)]
        if hit:
            used.add(rule.id)
        return hit

    # filter
    predicate = mappings.filters_of(table.id)
    if predicate is not None:
        for r in _rules_for(mappings, table.id, ("filter",)):
            used.add(r.id)
            assert r.predicate is not None
            r.predicate.bind(types, f"{r.label()} on {tid}")
        labels = ", ".join(r.label() for r in _rules_for(mappings, table.id, ("filter",)))
        predicate = _simplest(predicate.bind(types, f"{labels} on {tid}"))
        notes.append(f"filter: {predicate.describe()}")
    # keep / remove columns
    removed: set[str] = set()
    keep_rules = _rules_for(mappings, table.id, ("include-column",))
    if keep_rules:
        kept = {c for r in keep_rules for c in columns_of(r)}
        removed |= set(cols) - kept
    for r in _rules_for(mappings, table.id, ("remove-column",)):
        removed |= set(columns_of(r))
    # type changes (first matching rule per column)
    casts: list[tuple[str, Callable[[Any], Any]]] = []
    new_types: dict[str, Type] = {}
    for r in _rules_for(mappings, table.id, ("change-data-type",)):
        assert r.type is not None
        for c in columns_of(r):
            if c in new_types or not _of_type(types[c], r.of_type):
                continue
            old = types[c]
            if not can_change(old, r.type):
                raise ConfigError(
                    f"{r.label()}: column {tid}.{c} is {old.describe()}, which cannot become "
                    f"{r.type.describe()}; choose a type its values can take (e.g. a string)"
                )
            new_types[c] = r.type
            casts.append((c, caster(old, r.type, f"{r.label()}: {tid}.{c}")))
            notes.append(f"type: {c} {old.describe()} -> {r.type.describe()} ({r.label()})")
    # masks
    masks: list[tuple[str, Callable[[Any], Any]]] = []
    mask_rules: list[tuple[str, Mask]] = []
    key_bytes: bytes | None = None
    masked: set[str] = set()
    nulled: set[str] = set()
    key = _defined_key(mappings, table, cols, used)
    for r in _rules_for(mappings, table.id, ("mask",)):
        assert r.mask is not None
        for c in columns_of(r):
            if c in masked:
                continue
            t = new_types.get(c, types[c])
            where = f"{r.label()}: {tid}.{c}"
            new_types[c] = r.mask.check(t, where)
            if c in (key or table.key) and r.mask.kind not in ("hash", "dms-hash"):
                raise ConfigError(
                    f"{where}: {c} is a key column, and mask {r.mask.kind} can give two keys "
                    "one value (rows would overwrite each other); mask keys with hash"
                )
            if r.mask.keyed:
                key_bytes = mask_secret(secret)
            fn = r.mask.function(key_bytes if r.mask.keyed else None)
            masks.append((c, fn))
            mask_rules.append((c, r.mask))
            masked.add(c)
            if r.mask.kind == "null":
                nulled.add(c)
            notes.append(f"mask: {c} {r.mask.describe()} ({r.label()})")
    # added columns
    added: list[AddedColumn] = []
    for r in _rules_for(mappings, table.id, ("add-column",)):
        used.add(r.id)
        assert r.value is not None
        assert r.type is not None
        if r.value in cols or any(a.name == r.value for a in added):
            raise ConfigError(
                f"{r.label()}: column {r.value!r} already exists in {tid}; choose another name"
            )
        expr = None
        if r.expression is not None:
            expr = compile_expression(r.expression, list(cols), f"{r.label()} on {tid}")
        added.append(
            AddedColumn(r.value, r.type, expr, r, caster(None, r.type, f"{r.label()}: {r.value}"))
        )
        shown = r.expression if r.expression is not None else "NULL"
        notes.append(f"added: {r.value} {r.type.describe()} = {shown} ({r.label()})")
    for c in sorted(removed):
        notes.append(f"removed: {c}")
    _mark_names(mappings, table, used)
    shape = _shape(table, new_types, nulled, removed, added, key, mappings)
    return TableMapping(
        source=table,
        shape=shape,
        predicate=predicate,
        casts=tuple(casts),
        masks=tuple(masks),
        added=tuple(added),
        removed=frozenset(removed),
        key=key or (),
        notes=tuple(notes),
        mask_rules=tuple(mask_rules),
        secret=key_bytes,
    )


def _simplest(p: Predicate) -> Predicate:
    """``p`` without AND / OR nodes of one part (the same test, fewer calls per row)."""
    if isinstance(p, AllOf | AnyOf):
        parts = tuple(_simplest(q) for q in p.parts)
        return parts[0] if len(parts) == 1 else type(p)(parts)
    return p


def _of_type(t: Type, wanted: str | None) -> bool:
    """Whether a column of type ``t`` matches a rule's ``data-type`` locator (DMS name,
    portable description or native spelling)."""
    if wanted is None:
        return True
    w = wanted.lower()
    if w in (t.describe().lower(), (t.native or "").lower()):
        return True
    try:
        return parse_type(wanted) == replace(t, native="")
    except ConfigError:
        return False


def _mark_names(mappings: Mappings, table: TableSchema, used: set[int]) -> None:
    """Count the name rules that apply to ``table`` and its columns as used."""
    rules = [mappings.name_rule(table.id)]
    rules += [mappings.name_rule(table.id, c) for c in table.column_names]
    schemas = [table.id.schema] if table.id.schema else ["main"]
    rules += [mappings.schema_rule(s) for s in schemas]
    if table.id.schema is None:  # a schema-less source lands in the target's default schema
        rules += [r for r in mappings.rules if r.target == "schema"]
    used.update(r.id for r in rules if r is not None)


def _defined_key(
    mappings: Mappings, table: TableSchema, cols: Mapping[str, Column], used: set[int]
) -> tuple[str, ...] | None:
    for r in _rules_for(mappings, table.id, ("define-primary-key",)):
        used.add(r.id)
        unknown = [c for c in r.columns if c not in cols]
        if unknown:
            raise ConfigError(
                f"{r.label()}: {table.id} has no column(s) {', '.join(unknown)} "
                f"(columns: {', '.join(cols)})"
            )
        return r.columns
    return None


def keyed_for_cdc(mappings: Mappings, table: TableSchema) -> TableSchema:
    """``table`` as a change reader must see it: a table without a key of its own gets the
    columns of its ``define_primary_key`` rule as its primary key, so changes name rows by
    them (unique columns; the target is keyed by them too). Other tables are returned as
    they are; ``ConfigError`` for a rule naming a column the table lacks."""
    if table.key:
        return table
    key = _defined_key(mappings, table, {c.name: c for c in table.columns}, set())
    return table if key is None else replace(table, primary_key=key)


def _shape(
    table: TableSchema,
    new_types: Mapping[str, Type],
    nulled: set[str],
    removed: set[str],
    added: Sequence[AddedColumn],
    key: tuple[str, ...] | None,
    mappings: Mappings,
) -> TableSchema:
    pk = table.primary_key
    unique = table.unique
    not_null: tuple[str, ...] = ()
    if key is not None:
        rule = _rules_for(mappings, table.id, ("define-primary-key",))[0]
        if rule.unique:
            unique = (*unique, key)
        else:
            pk = not_null = key
    lost = removed & set(pk or table.key)
    if lost:
        raise ConfigError(
            f"cannot remove key column(s) {', '.join(sorted(lost))} of {table.id}: changes are "
            "applied by the key; keep them, or define another key (define_primary_key)"
        )
    columns = []
    for c in table.columns:
        if c.name in removed:
            continue
        t = new_types.get(c.name)
        if t is not None and t != c.type:
            c = replace(c, type=t, default=None, generated=None)
        if c.name in nulled:
            c = replace(c, nullable=True)
        if c.name in not_null:
            c = replace(c, nullable=False)
        columns.append(c)
    columns += [Column(a.name, a.type) for a in added]
    return replace(
        table,
        columns=tuple(columns),
        primary_key=pk,
        unique=tuple(u for u in unique if not removed & set(u)),
        indexes=tuple(i for i in table.indexes if not removed & set(i.columns)),
        foreign_keys=tuple(f for f in table.foreign_keys if not removed & set(f.columns)),
        checks=() if new_types or removed else table.checks,
    )


class MappingTransform:
    """The pipeline stage of a ``Mappings``: rows and changes of every source table mapped
    (see the module docs). Bound to a table by :meth:`transform_schema` (planning does
    that); a table never planned passes through unchanged."""

    def __init__(self, mappings: Mappings, secret: str | bytes | None = None) -> None:
        self.mappings = mappings
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._tables: dict[TableId, TableMapping] = {}
        self.used: set[int] = set()

    def __repr__(self) -> str:
        return f"<MappingTransform {len(self.mappings.rules)} rules, {len(self._tables)} tables>"

    def __getstate__(self) -> dict[str, Any]:
        return {"mappings": self.mappings, "secret": self._secret,
                "tables": [t.source for t in self._tables.values()]}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["mappings"], state["secret"])  # type: ignore[misc]
        for table in state["tables"]:
            self.transform_schema(table)

    def table(self, table: TableSchema) -> TableMapping:
        """The rules bound to source table ``table`` (bound once per table shape)."""
        bound = self._tables.get(table.id)
        if bound is None or bound.source != table:
            bound = bind_table(self.mappings, table, self._secret, self.used)
            self._tables[table.id] = bound
        return bound

    def bound(self, table: TableId) -> TableMapping | None:
        """The rules of source table ``table`` if it was bound."""
        return self._tables.get(table)

    def transform_schema(self, table: TableSchema) -> TableSchema:
        """The table the target gets (before renames, which the plan applies)."""
        return self.table(table).shape

    def __call__(self, change: Change) -> Change | None:
        """A full-load row (or any change that maps to at most one change)."""
        bound = self._tables.get(change.table)
        if bound is None or (not bound.changes_rows and not bound.key):
            return change
        after = change.after
        if change.op is Op.INSERT and change.position is None and after is not None:
            # a full-load row: no key, images or metadata to map but the row's
            if bound.predicate is not None and not bound.predicate.holds(after):
                return None
            return Change(Op.INSERT, change.table, change.key, None, bound.row(after))
        out = bound.expand(change)
        if len(out) > 1:
            raise ConfigError("a change that maps to several changes needs expand()")
        return out[0] if out else None

    def map_rows(
        self, table: TableId, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> list[dict[str, Any]]:
        """Full-load rows of ``table`` (values in ``columns`` order) as the target gets them
        (filtered, mapped), by name."""
        dicts = [dict(zip(columns, row, strict=True)) for row in rows]
        bound = self._tables.get(table)
        if bound is None or (not bound.changes_rows and not bound.key):
            return dicts
        return bound.rows(dicts)

    def expand(self, change: Change) -> tuple[Change, ...]:
        """``change`` as the target applies it: none, one, or several changes."""
        bound = self._tables.get(change.table)
        if bound is None or (not bound.changes_rows and not bound.key):
            return (change,)
        return bound.expand(change)

    def unused(self) -> list[Rule]:
        """Rules that matched no selected table or column (likely typos)."""
        return [r for r in self.mappings.rules if r.id not in self.used]


def unused_rules(
    mappings: Mappings, tables: Sequence[TableSchema], used: set[int] | None = None
) -> list[Rule]:
    """The rules that match no table (or column) of ``tables``; ``used`` adds the ids of
    row rules a :class:`MappingTransform` bound."""
    seen = set(used or ())
    for table in tables:
        _mark_names(mappings, table, seen)
    return [r for r in mappings.rules if r.id not in seen]


def rule_collisions(mappings: Mappings, plans: Sequence[TablePlan]) -> list[Finding]:
    """Unsupported findings for rules that map two source tables, or two columns of one
    table, to one target name (each naming the rules involved)."""
    out: list[Finding] = []
    by_target: dict[TableId, list[TablePlan]] = {}
    for p in plans:
        by_target.setdefault(p.target_id, []).append(p)
    for target, group in by_target.items():
        if len(group) < 2:
            continue
        rules = [mappings.name_rule(p.source.id) for p in group]
        labels = [r.label() for r in rules if r is not None]
        if labels:
            names = " and ".join(str(p.source.id) for p in group)
            out.append(Finding.about(
                str(group[0].source.id),
                f"{names} would both become table {target} ({'; '.join(labels)})",
                kind="name",
                fix="change the rules so that each source table gets a name of its own",
            ))  # fmt: skip
    for p in plans:
        seen: dict[str, str] = {}
        for c in p.columns:
            other = seen.get(c.name)
            if other is not None:
                rules = [mappings.name_rule(p.source.id, n) for n in (other, c.source.name)]
                labels = [r.label() for r in rules if r is not None]
                if labels:
                    out.append(Finding.about(
                        str(p.source.id),
                        f"columns {other!r} and {c.source.name!r} would both become column "
                        f"{c.name!r} ({'; '.join(labels)})",
                        kind="name", column=c.source.name,
                        fix="change the rules so that each column gets a name of its own",
                    ))  # fmt: skip
            seen[c.name] = c.source.name
    return out

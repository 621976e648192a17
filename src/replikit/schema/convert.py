"""Schema conversion: source table -> portable types -> target dialect, with a verdict per column.

The rules themselves are data owned by each dialect (``endpoints/<family>/_types.py``): a
:class:`Dialect` answers ``target_type(portable)`` with a :class:`TargetType` that carries the
native DDL type, the fidelity, the reason and the value adapter together, so that what the
assessment says and what the writer does cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from replikit.errors import ConfigError, SchemaError
from replikit.pipeline.choices import GENERATED_COLUMNS
from replikit.schema.model import CheckConstraint, Column, Generation, TableId, TableSchema
from replikit.schema.names import IdentifierRules, NamedByRules, NameKind
from replikit.schema.report import ObjectPlan, Verdict
from replikit.schema.textform import text_form_for
from replikit.schema.types import Kind, Type

if TYPE_CHECKING:
    from replikit.schema import expressions
    from replikit.schema.limits import Limits

__all__ = [
    "GENERATED_COLUMNS",
    "ColumnPlan",
    "Dialect",
    "Fidelity",
    "TablePlan",
    "TargetType",
    "link_foreign_keys",
    "plan_table",
    "without_generation",
]

Adapter = Callable[[Any], Any]


def map_list(adapt: Adapter) -> Adapter:
    """``adapt`` applied to every item of a (nested) list value: the adapter of an array or
    list column whose items need one. NULL items stay NULL."""

    def mapped(value: Any) -> Any:
        if isinstance(value, list):
            return [mapped(x) for x in value]
        return None if value is None else adapt(value)

    return mapped


class Fidelity(enum.StrEnum):
    """How faithfully a column converts."""

    EXACT = "exact"
    LOSSY = "lossy"
    UNSUPPORTED = "unsupported"

    def worst(self, other: Fidelity) -> Fidelity:
        """The worse of two verdicts."""
        order = [Fidelity.EXACT, Fidelity.LOSSY, Fidelity.UNSUPPORTED]
        return max(self, other, key=order.index)


@dataclass(frozen=True, slots=True)
class TargetType:
    """A dialect's answer for one portable type.

    ``adapt`` turns a canonical Python value (see :mod:`replikit.schema.types`) into what the
    target driver binds; ``None`` means the value passes unchanged. ``reason`` explains any
    fidelity other than exact, and may annotate exact ones. ``as_text``: the column is read
    as the source's own text form (a type override to text).
    """

    sql: str
    type: Type
    fidelity: Fidelity = Fidelity.EXACT
    reason: str | None = None
    adapt: Adapter | None = None
    as_text: bool = False


class Dialect(Protocol):
    """What the conversion engine needs from a database family."""

    @property
    def name(self) -> str:
        """The dialect's name (``"postgresql"``, ``"sqlite"``...)."""
        ...

    def quote(self, identifier: str) -> str:
        """Quote one identifier (always; no "only when needed")."""
        ...

    def target_type(self, source: Type, source_dialect: str) -> TargetType:
        """How a column of portable type ``source`` is declared and written here.

        ``source_dialect`` is the name of the dialect ``source`` was reflected from; when it
        is this dialect, ``source.native`` can be kept as it is.
        """
        ...

    def parse_type(self, native: str) -> Type:
        """The portable meaning of a native type spelling (reflection, overrides)."""
        ...

    def convert_default(self, column: Column, source_dialect: str) -> str | None:
        """The default expression for ``column`` in this dialect, or ``None`` to drop it."""
        ...

    @property
    def identifiers(self) -> IdentifierRules:
        """How this dialect stores and compares names (:mod:`replikit.schema.names`)."""
        ...

    def target_name(self, name: str, kind: NameKind) -> str:
        """The name this dialect stores for ``name`` (e.g. cut to PostgreSQL's 63 bytes)."""
        ...

    def name_key(self, name: str, kind: NameKind) -> str:
        """Two names with equal keys are one object here (e.g. MySQL ignores case)."""
        ...

    def name_problem(self, name: str, kind: NameKind) -> str | None:
        """Why an object called ``name`` cannot be created here, or ``None``."""
        ...

    @property
    def limits(self) -> Limits:
        """What this dialect can create and hold (:mod:`replikit.schema.limits`)."""
        ...


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How one source column becomes one target column.

    ``generated``: the target computes the column (its expression in the target's dialect);
    loaders and change appliers never write it. ``None``: a plain column holding the source's
    values (also for a generated source column whose expression is not converted).
    """

    source: Column
    name: str
    target: TargetType
    nullable: bool
    default: str | None = None
    notes: tuple[str, ...] = ()
    generated: Generation | None = None

    @property
    def fidelity(self) -> Fidelity:
        """The verdict for this column."""
        return self.target.fidelity

    @property
    def reason(self) -> str | None:
        """Why the verdict is not exact (plus any notes)."""
        parts = [p for p in (self.target.reason, *self.notes) if p]
        return "; ".join(parts) or None


@dataclass(frozen=True, slots=True)
class TablePlan:
    """How one source table becomes one target table.

    ``target_schema`` is the portable description of the table to create; writers turn it
    into DDL. ``problems`` are table-level findings (index expressions that do not translate,
    ...); they do not stop the load but appear in the assessment. ``objects`` are the table's
    CHECK constraints, defaults and generated columns with their conversion verdicts (the
    converted ones are in ``target_schema``, in the target's dialect).
    ``target_id`` and the column names are the names the target stores (after its identifier
    rules, e.g. cut to PostgreSQL's 63 bytes); ``requested_id`` is the id the mappings asked
    for when those rules changed it (``None`` otherwise).
    """

    source: TableSchema
    target_id: TableId
    columns: tuple[ColumnPlan, ...]
    target_schema: TableSchema
    source_dialect: str = ""
    target_dialect: str = ""
    problems: tuple[str, ...] = ()
    requested_id: TableId | None = None
    objects: tuple[ObjectPlan, ...] = ()

    def column_for(self, name: str) -> ColumnPlan | None:
        """The plan of the column a batch calls ``name``: by source name, else by target name
        (``None``: not planned)."""
        for cp in self.columns:
            if cp.source.name == name:
                return cp
        for cp in self.columns:
            if cp.name == name:
                return cp
        return None

    def planned_column(self, name: str) -> ColumnPlan:
        """:meth:`column_for` ``name``, or :class:`~replikit.SchemaError` naming it."""
        cp = self.column_for(name)
        if cp is None:
            raise SchemaError(
                f"column {name!r} of the rows is not planned for table {self.target_id}"
            )
        return cp

    def __repr__(self) -> str:
        return (
            f"<TablePlan {self.source.id} -> {self.target_id}: {len(self.columns)} columns, "
            f"{self.fidelity.value}>"
        )

    @property
    def fidelity(self) -> Fidelity:
        """The worst column verdict."""
        result = Fidelity.EXACT
        for col in self.columns:
            result = result.worst(col.fidelity)
        return result

    @property
    def adapters(self) -> tuple[Adapter | None, ...]:
        """Per column value adapters, in column order."""
        return tuple(c.target.adapt for c in self.columns)

    @property
    def identical(self) -> bool:
        """True when every column keeps its exact native type and is written (raw copy can
        pass through)."""
        return self.source_dialect == self.target_dialect and all(
            c.target.sql == c.source.type.native and c.target.adapt is None and not c.generated
            for c in self.columns
        )

    @property
    def computed(self) -> frozenset[str]:
        """Source names of the columns the target computes (generated there): loaders and
        change appliers leave their values out."""
        return frozenset(c.source.name for c in self.columns if c.generated is not None)


@dataclass(frozen=True, slots=True)
class _Passthrough(NamedByRules):
    """A dialect stand-in for writers that take canonical Python values as they are.

    Names are kept exactly and compared exactly; any name is possible but a NUL character.
    """

    name: str = "python"
    identifiers: ClassVar[IdentifierRules] = IdentifierRules("python", allows_empty=True)

    def quote(self, identifier: str) -> str:
        return identifier

    def target_type(self, source: Type, source_dialect: str) -> TargetType:
        return TargetType(source.native or source.describe(), source)

    def parse_type(self, native: str) -> Type:
        return Type.other(native)

    def convert_default(self, column: Column, source_dialect: str) -> str | None:
        return None

    @property
    def limits(self) -> Limits:
        from replikit.schema.limits import Limits  # limits imports this module

        return Limits("python")


PYTHON: Dialect = _Passthrough()


@dataclass(frozen=True, slots=True)
class Overrides:
    """Per-column target type overrides: ``{"schema.table.column": "native type"}``."""

    types: Mapping[str, str] = field(default_factory=dict)

    def for_column(self, table: TableId, column: str) -> str | None:
        return self.types.get(f"{table}.{column}") or self.types.get(f"{table.name}.{column}")

    def unmatched(self, tables: Iterable[TableSchema]) -> list[str]:
        """The keys that name no column of ``tables`` (a typo would otherwise be ignored)."""
        known = set()
        for table in tables:
            for col in table.columns:
                known.add(f"{table.id}.{col.name}")
                known.add(f"{table.id.name}.{col.name}")
        return [key for key in self.types if key not in known]


def plan_table(
    table: TableSchema,
    *,
    source_dialect: str,
    target: Dialect,
    target_id: TableId | None = None,
    column_names: Mapping[str, str] | None = None,
    type_overrides: Mapping[str, str] | None = None,
    generated_columns: str = "create",
    expression_dialect: str | None = None,
) -> TablePlan:
    """Plan the conversion of ``table`` into ``target``'s dialect.

    ``column_names`` renames columns (source name -> target name). ``type_overrides`` maps
    ``"table.column"`` or ``"schema.table.column"`` to a native target type; the target's
    ``parse_type`` supplies its portable meaning, and fidelity is judged by :func:`judge`.
    Names pass through the target's identifier rules (``target.target_name``); a name they
    change is listed in ``problems``. Collisions are judged over all plans together
    (:func:`replikit.schema.identifiers.name_findings`).
    ``generated_columns``: ``"create"`` makes generated source columns generated in the
    target when their expression converts; ``"values"`` copies their values into plain columns.
    ``expression_dialect``: the dialect of the source's generation expressions when
    ``source_dialect`` is not a SQL one (a change reader hands out Python values).
    """
    if generated_columns not in GENERATED_COLUMNS:
        raise ConfigError(
            f"generated_columns must be one of {', '.join(GENERATED_COLUMNS)}; "
            f"got {generated_columns!r}"
        )
    names = dict(column_names or {})
    renamed: list[str] = []
    overrides = Overrides(type_overrides or {})
    plans = []
    objects: list[ObjectPlan] = []
    for col in table.columns:
        target_type = target.target_type(col.type, source_dialect)
        forced = overrides.for_column(table.id, col.name)
        if forced is not None:
            target_type = _override(col.type, forced, target, target_type, source_dialect)
        notes: list[str] = []
        default = _default(table, col, source_dialect, target, notes, objects)
        generation = None
        if col.generated is not None:
            sql = expression_dialect or source_dialect
            how = _Generated(table, sql, target.name, names, generated_columns)
            generation, report = how.plan(col)
            objects.append(report)
            notes.append(
                f"generated in {target.name} as {generation}"
                if generation is not None
                else f"generated column ({col.generated}) is copied as plain values"
            )
        plans.append(
            ColumnPlan(
                source=col,
                name=_stored(target, names.get(col.name, col.name), "column", renamed),
                target=target_type,
                nullable=col.nullable,
                default=default,
                notes=tuple(notes),
                generated=generation,
            )
        )
    requested = target_id or table.id
    tid = TableId(
        None if requested.schema is None else _stored(target, requested.schema, "schema", renamed),
        _stored(target, requested.name, "table", renamed),
    )
    target_schema = _target_schema(table, tid, plans)
    checks = [_check(table, c, source_dialect, target.name, plans, tid) for c in table.checks]
    target_schema = replace(
        target_schema,
        checks=tuple(
            CheckConstraint(c.name, o.sql)
            for c, o in zip(table.checks, checks, strict=True)
            if o.sql
        ),
    )
    return TablePlan(
        source=table,
        target_id=tid,
        columns=tuple(plans),
        target_schema=target_schema,
        source_dialect=source_dialect,
        target_dialect=target.name,
        problems=(*renamed, *_untranslated(table, source_dialect, target.name)),
        requested_id=None if tid == requested else requested,
        objects=(*checks, *objects),
    )


def _default(
    table: TableSchema,
    col: Column,
    source_dialect: str,
    target: Dialect,
    notes: list[str],
    objects: list[ObjectPlan],
) -> str | None:
    """The target default of ``col`` (``None``: none), its report entry into ``objects``."""
    if col.default is None or col.identity is not None:
        return None
    name = f"{table.id}.{col.name}"
    if source_dialect == target.name:
        objects.append(ObjectPlan("default", name, Verdict.EXACT, col.default, col.default))
        return col.default
    default = target.convert_default(col, source_dialect)
    if default is not None:
        objects.append(ObjectPlan("default", name, Verdict.EXACT, col.default, default))
        return default
    from replikit.schema import expressions  # sqlglot: imported when a default is met

    result = expressions.translate_default(col.default, source=source_dialect, target=target.name)
    objects.append(
        ObjectPlan("default", name, result.verdict, col.default, result.sql, result.reason)
    )
    if result.sql is None:
        notes.append(f"default {col.default} not converted")
    return result.sql


#: per target dialect, the generated columns it can create: stored ones, virtual ones
GENERATION_KINDS: dict[str, tuple[bool, ...]] = {
    "postgresql": (True,),  # VIRTUAL from PostgreSQL 18 on
    "mysql": (True, False),
    "sqlite": (True, False),
    "duckdb": (False,),  # DuckDB refuses STORED
}

_PLAIN = "the column is created as a plain column holding the source's values"


@dataclass(frozen=True, slots=True)
class _Generated:
    """How the generated columns of one table are planned for one target."""

    table: TableSchema
    source_dialect: str
    target: str
    names: Mapping[str, str]
    how: str

    def plan(self, col: Column) -> tuple[Generation | None, ObjectPlan]:
        """The target's generation of ``col`` (``None``: a plain column) and its report."""
        assert col.generated is not None
        source = Generation.parse(col.generated)
        translated = self._translate(source.expression)
        refused = self._refusal(col, source.expression, translated)
        if refused is not None:
            where = f" (in {self.target}: {translated.sql})" if translated.sql else ""
            return None, self._report(col, Verdict.NOT_CONVERTED, None, f"{refused}{where}")
        assert translated.sql is not None
        kinds = GENERATION_KINDS[self.target]
        stored = source.stored if source.stored in kinds else kinds[0]
        notes = [translated.reason] if translated.reason else []
        if stored != source.stored:
            was, now = ("VIRTUAL", "STORED") if stored else ("STORED", "VIRTUAL")
            notes.append(f"{was} in the source, {now} in {self.target} (it has no other kind)")
        target = Generation(translated.sql, stored)
        return target, self._report(col, translated.verdict, str(target), "; ".join(notes))

    def _translate(self, expression: str) -> expressions.Translation:
        from replikit.schema import expressions  # sqlglot: imported when one is met

        renames = {k: v for k, v in self.names.items() if k != v}
        if self.source_dialect == self.target and not renames:
            return expressions.Translation(expression, Verdict.EXACT)
        if self.target not in GENERATION_KINDS:
            return expressions.Translation(None, Verdict.NOT_CONVERTED)
        return expressions.translate(
            expression, source=self.source_dialect, target=self.target, columns=renames
        )

    def _refusal(
        self, col: Column, expression: str, translated: expressions.Translation
    ) -> str | None:
        """Why ``col`` is created plain (``None``: it is generated in the target)."""
        if self.how == "values":
            return f"generated_columns='values': {_PLAIN}"
        if self.target not in GENERATION_KINDS:
            return f"{self.target} has no generated columns: {_PLAIN}"
        if col.name in self.table.key:
            return f"a key column: {_PLAIN}"
        if translated.sql is None:
            return f"the expression is not converted ({translated.reason}): {_PLAIN}"
        if translated.verdict is not Verdict.EXACT:
            # the target would compute it with other semantics, or not at all (a function it
            # lacks refuses every row): the source's values are safer
            return f"the translation needs a review ({translated.reason}): {_PLAIN}"
        from replikit.schema import expressions

        refs = expressions.column_references(expression, self.source_dialect)
        known = {c.name.casefold(): c for c in self.table.columns}
        missing = sorted(r for r in refs if r.casefold() not in known)
        if missing:
            return f"it refers to {', '.join(missing)}, which the task does not copy: {_PLAIN}"
        if self.target == "postgresql" and any(known[r.casefold()].generated for r in refs):
            return f"it refers to another generated column, which PostgreSQL refuses: {_PLAIN}"
        return None

    def _report(self, col: Column, verdict: Verdict, sql: str | None, reason: str) -> ObjectPlan:
        name = f"{self.table.id}.{col.name}"
        return ObjectPlan("generated column", name, verdict, col.generated, sql, reason or None)


def without_generation(plan: TablePlan, why: str) -> TablePlan:
    """``plan`` with its generated columns as plain columns holding the source's values:
    the target refused their expressions (``why``), and the load then copies the values."""
    if not plan.computed:
        return plan
    columns = tuple(
        replace(c, generated=None, notes=(*c.notes, f"{why}: copied as plain values"))
        if c.generated is not None
        else c
        for c in plan.columns
    )
    schema = replace(
        plan.target_schema,
        columns=tuple(replace(c, generated=None) for c in plan.target_schema.columns),
    )
    objects = tuple(
        replace(
            o,
            verdict=Verdict.NOT_CONVERTED,
            sql=None,
            reason=f"{why}: {_PLAIN} (in {plan.target_dialect}: {o.sql})",
        )
        if o.kind == "generated column" and o.converted
        else o
        for o in plan.objects
    )
    return replace(plan, columns=columns, target_schema=schema, objects=objects)


def _check(
    table: TableSchema,
    check: CheckConstraint,
    source_dialect: str,
    target: str,
    plans: Sequence[ColumnPlan],
    tid: TableId,
) -> ObjectPlan:
    """One CHECK constraint in the target dialect, with column renames applied."""
    renames = {p.source.name: p.name for p in plans if p.name != p.source.name}
    name = f"{table.id}.{check.name or '(unnamed check)'}"
    if source_dialect == target and not renames:
        return ObjectPlan(
            "check", name, Verdict.EXACT, check.expression, check.expression, table=tid
        )
    if target == PYTHON.name:
        return ObjectPlan(
            "check",
            name,
            Verdict.NOT_CONVERTED,
            check.expression,
            None,
            "the target keeps no constraints",
            table=tid,
        )
    from replikit.schema import expressions  # sqlglot: imported when a check is met

    result = expressions.translate(
        check.expression, source=source_dialect, target=target, columns=renames
    )
    return ObjectPlan(
        "check", name, result.verdict, check.expression, result.sql, result.reason, table=tid
    )


def _stored(target: Dialect, name: str, kind: NameKind, renamed: list[str]) -> str:
    """``name`` as ``target`` stores it; a change is noted in ``renamed``."""
    stored = target.target_name(name, kind)
    if stored != name:
        rules = target.identifiers
        why = (
            f"is longer than {rules.dialect}'s {rules.max_length} {rules.length_unit}"
            if rules.max_length is not None and rules.length(name) > rules.max_length
            else f"is stored differently by {rules.dialect}"
        )
        renamed.append(f"{kind} name {name!r} {why}; it is created as {stored!r}")
    return stored


_TEXTS = (Kind.TEXT, Kind.STRING)


def _override(
    source: Type, forced: str, target: Dialect, rule: TargetType, source_dialect: str
) -> TargetType:
    """The target type of a column whose type is set by an override.

    An override to text (any text or character type) reads the column as the source's text
    form, so every value arrives as the source prints it, including values with no Python form.
    """
    forced_type = target.parse_type(forced)
    fidelity, why = judge(source, forced_type)
    reason = why or "type set by override"
    if forced_type.kind in _TEXTS and source.kind not in (*_TEXTS, Kind.BYTES):
        adapt = text_form_for(source, source_dialect)
        return TargetType(forced, forced_type, fidelity, reason, adapt, as_text=True)
    return TargetType(forced, forced_type, fidelity, reason, rule.adapt)


def _untranslated(table: TableSchema, source_dialect: str, target_dialect: str) -> tuple[str, ...]:
    """Native SQL pieces that do not cross dialects (writers leave them out)."""
    if source_dialect == target_dialect or target_dialect == PYTHON.name:
        return ()
    problems = [
        f"index {i.name} ({', '.join(i.expressions) or i.where}) is an expression or partial "
        f"index in {source_dialect} SQL; it is not created"
        for i in table.indexes
        if i.expressions or i.where
    ]
    return tuple(problems)


def _target_schema(table: TableSchema, tid: TableId, plans: list[ColumnPlan]) -> TableSchema:
    rename = {p.source.name: p.name for p in plans}

    def cols(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(rename.get(n, n) for n in names)

    columns = tuple(
        Column(
            name=p.name,
            type=p.target.type.with_native(p.target.sql),
            nullable=p.nullable,
            default=p.default,
            identity=p.source.identity,
            generated=str(p.generated) if p.generated else None,
            collation=None,
            comment=p.source.comment,
        )
        for p in plans
    )
    return replace(
        table,
        id=tid,
        columns=columns,
        primary_key=cols(table.primary_key),
        unique=tuple(cols(u) for u in table.unique),
        indexes=tuple(replace(i, columns=cols(i.columns)) for i in table.indexes),
        foreign_keys=tuple(replace(fk, columns=cols(fk.columns)) for fk in table.foreign_keys),
    )


def link_foreign_keys(plans: Sequence[TablePlan]) -> list[TablePlan]:
    """Point foreign keys at the referenced tables' target names and columns.

    Foreign keys to tables that are not being moved are dropped (the task reports them).
    An integer column narrower in the target than the key it references is widened to that
    key's type (lossless; MySQL/MariaDB refuse a foreign key between integer types of
    different widths, e.g. when a key became SQLite's 64-bit ``INTEGER PRIMARY KEY``).
    """
    by_source = {p.source.id: p for p in plans}
    out = []
    for p in plans:
        fks = []
        widened: dict[str, TargetType] = {}
        for fk in p.target_schema.foreign_keys:
            ref = by_source.get(fk.ref_table)
            if ref is None:
                continue
            names = {c.source.name: c.name for c in ref.columns}
            ref_columns = tuple(names.get(c, c) for c in fk.ref_columns)
            fks.append(replace(fk, ref_table=ref.target_id, ref_columns=ref_columns))
            by_name = {c.name: c for c in ref.columns}
            for own, theirs in zip(fk.columns, ref_columns, strict=False):
                key = by_name.get(theirs)
                if key is not None:
                    widened.update(_widen_to(p, own, key))
        p = replace(p, target_schema=replace(p.target_schema, foreign_keys=tuple(fks)))
        out.append(_with_widened(p, widened) if widened else p)
    return out


def _widen_to(plan: TablePlan, column: str, key: ColumnPlan) -> dict[str, TargetType]:
    """``{column: key's target type}`` when ``column`` is an integer narrower than ``key``."""
    mine = next((c for c in plan.columns if c.name == column), None)
    if mine is None or mine.target.adapt is not None or key.target.adapt is not None:
        return {}
    a, b = mine.target.type, key.target.type
    if a.kind is not Kind.INT or b.kind is not Kind.INT or a.unsigned != b.unsigned:
        return {}
    if (a.bits or 64) >= (b.bits or 64):
        return {}
    return {column: replace(mine.target, sql=key.target.sql, type=b)}


def _with_widened(plan: TablePlan, widened: dict[str, TargetType]) -> TablePlan:
    columns = tuple(
        replace(c, target=widened[c.name], notes=(*c.notes, "widened to the type of the key "
                "it references"))
        if c.name in widened else c
        for c in plan.columns
    )  # fmt: skip
    types = {c.name: c.target.type for c in columns}
    schema = plan.target_schema
    target_columns = tuple(
        replace(c, type=types[c.name]) if c.name in widened else c for c in schema.columns
    )
    return replace(plan, columns=columns, target_schema=replace(schema, columns=target_columns))


def judge(source: Type, target: Type) -> tuple[Fidelity, str | None]:
    """Judge a conversion between two portable types generically (used for overrides)."""
    if source == target:
        return Fidelity.EXACT, None
    s, t = source.kind, target.kind
    if t in (Kind.TEXT, Kind.OTHER) and s not in (Kind.BYTES,):
        return Fidelity.EXACT, f"{source} stored as its text form"
    if s is Kind.INT and t is Kind.INT:
        sb, tb = source.bits or 64, target.bits or 64
        ok = (tb > sb) if source.unsigned and not target.unsigned else tb >= sb
        if ok and not (target.unsigned and not source.unsigned):
            return Fidelity.EXACT, None
        return Fidelity.LOSSY, f"{source} values may not fit {target}"
    if s is Kind.INT and t is Kind.DECIMAL:
        digits = {8: 3, 16: 5, 32: 10, 64: 20}[source.bits or 64]
        if target.precision is None or target.precision - (target.scale or 0) >= digits:
            return Fidelity.EXACT, None
        return Fidelity.LOSSY, f"{source} values may not fit {target}"
    if s is Kind.DECIMAL and t is Kind.DECIMAL:
        if target.precision is None or (
            source.precision is not None
            and target.precision - (target.scale or 0) >= source.precision - (source.scale or 0)
            and (target.scale or 0) >= (source.scale or 0)
        ):
            return Fidelity.EXACT, None
        return Fidelity.LOSSY, f"{source} rounded or out of range in {target}"
    if s in (Kind.STRING, Kind.TEXT) and t in (Kind.STRING, Kind.TEXT):
        if t is Kind.TEXT or (source.length is not None and (target.length or 0) >= source.length):
            return Fidelity.EXACT, None
        return Fidelity.LOSSY, f"{source} values longer than {target.length} would not fit"
    if s is Kind.FLOAT and t is Kind.FLOAT:
        if (target.bits or 64) >= (source.bits or 64):
            return Fidelity.EXACT, None
        return Fidelity.LOSSY, "float64 rounded to float32"
    return Fidelity.LOSSY, f"{source} converted to {target}; values may change"

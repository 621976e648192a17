"""Existing target tables against the plan: what would not load, or not arrive as planned.

With ``target_table_prep_mode`` ``truncate`` or ``do-nothing`` a target table that already
exists is kept as it is, so the rows meet *its* columns, types and keys, not the planned ones.
Each family's writer reflects its existing tables with its own reflection code and hands them
to :func:`existing_findings`, which compares them with the plan in one place:

* a planned column the table lacks, and a table column the load does not fill (``unsupported``
  when it is NOT NULL without a default, ``lossy`` otherwise: the rows get its default);
* a column type that may not hold the planned values (``varchar(10)`` for ``varchar(120)``,
  ``integer`` for ``bigint``, ``numeric(5,2)`` for ``numeric(10,2)``, ``timestamp`` without
  zone for an instant...): ``unsupported``, strict by default; values that would only be
  rounded (fewer fractional digits, float32) are ``lossy``;
* a NOT NULL column where the source allows NULL (``lossy``: a NULL stops the table's load);
* a unique key of the table that the source's keys do not imply (``unsupported``: rows may
  collide) and, when the table also receives changes (CDC applies them by key), no primary
  key or unique constraint on the planned key (``unsupported``).

Every finding names the target table and column and says how to fix it: ``drop-and-create``,
a type override (when every value is known to fit), or an ``ALTER`` of the target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from replikit.errors import SchemaError
from replikit.mapping import Selection
from replikit.schema.convert import ColumnPlan, Fidelity, TablePlan, judge
from replikit.schema.findings import Finding
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Kind, Type

__all__ = [
    "TargetRules",
    "exactly",
    "existing_findings",
    "judge_existing",
    "refuse_existing",
]

Verdict = tuple[Fidelity, str | None]
ColumnJudge = Callable[[ColumnPlan, Column], Verdict]

_DEFAULT_FRACTION = 6  # digits a timestamp without a declared precision keeps (microseconds)
_ROUNDING_ONLY = (Kind.FLOAT, Kind.TIME, Kind.TIMESTAMP)


def judge_existing(planned: Type, existing: Type) -> Verdict:
    """Can a column of type ``existing`` hold every value planned as ``planned``?

    Built on :func:`~replikit.schema.convert.judge`, but strict: what may not fit is
    ``unsupported`` (the load would stop at the first such row), only rounding is ``lossy``.
    """
    special = _special(planned, existing)
    if special is not None:
        return special
    fidelity, why = judge(planned, existing)
    if fidelity is Fidelity.LOSSY and not (
        planned.kind is existing.kind and planned.kind in _ROUNDING_ONLY
    ):
        return Fidelity.UNSUPPORTED, why
    return fidelity, why


def _special(planned: Type, existing: Type) -> Verdict | None:
    """Verdicts :func:`judge` does not give (it compares portable types only)."""
    p, e = planned.kind, existing.kind
    if Kind.OTHER in (p, e) and e is not Kind.TEXT:
        if p is e and planned.native.lower() == existing.native.lower():
            return Fidelity.EXACT, None
        return (
            Fidelity.UNSUPPORTED,
            f"{existing.native or existing} is not {planned.native or planned}",
        )
    if p is not e:
        return None
    if p is Kind.ENUM:
        missing = [v for v in planned.values if v not in existing.values]
        if missing:
            return Fidelity.UNSUPPORTED, f"labels {', '.join(missing)} are not in {existing}"
        return Fidelity.EXACT, None
    if p is Kind.ARRAY:
        return _array(planned, existing)
    if p is Kind.JSON:
        if existing.binary and not planned.binary:
            return Fidelity.LOSSY, "JSON text is normalised (binary JSON column)"
        return Fidelity.EXACT, None
    if p in (Kind.TIME, Kind.TIMESTAMP):
        return _temporal(planned, existing)
    if p is Kind.STRING and existing.fixed and not planned.fixed:
        return Fidelity.LOSSY, f"{existing} pads shorter values with spaces"
    return None


def _array(planned: Type, existing: Type) -> Verdict:
    if planned.item is None or existing.item is None or planned.dims != existing.dims:
        return Fidelity.UNSUPPORTED, f"{planned} values do not fit {existing}"
    return judge_existing(planned.item, existing.item)


def _temporal(planned: Type, existing: Type) -> Verdict:
    if planned.tz and not existing.tz:
        return Fidelity.UNSUPPORTED, f"{existing} has no time zone: instants would lose it"
    if existing.tz and not planned.tz:
        return Fidelity.UNSUPPORTED, f"{existing} would read local times as instants"
    p = _DEFAULT_FRACTION if planned.precision is None else planned.precision
    e = _DEFAULT_FRACTION if existing.precision is None else existing.precision
    if e < p:
        return Fidelity.LOSSY, f"fractions of a second beyond {e} digits rounded ({existing})"
    return Fidelity.EXACT, None


@dataclass(frozen=True, slots=True)
class TargetRules:
    """What differs between families when an existing table is compared with the plan.

    Attributes:
        fold: how the target compares column names (``str.lower`` where names are
            case-insensitive).
        judge: whether an existing column holds the planned column's values (by default
            :func:`judge_existing` of the two types; a family whose declared types are not
            enforced, such as SQLite, answers by storage, MySQL adds character sets).
        alter: the statement that would give an existing column the planned type, or
            ``None`` when the target cannot alter a column's type.
    """

    fold: Callable[[str], str] = str
    judge: ColumnJudge = lambda col, found: judge_existing(col.target.type, found.type)
    alter: Callable[[TableId, ColumnPlan], str | None] = lambda tid, col: None


class _Exactly(Selection):
    """A selection of exactly these table ids (no patterns: names may hold ``%``, dots...).

    An id without a schema matches that table name in any schema."""

    __slots__ = ("_ids",)
    _ids: tuple[Callable[[str], str], set[tuple[str | None, str]]]

    def __init__(self, ids: Iterable[TableId], fold: Callable[[str], str]) -> None:
        super().__init__()
        keys = {(None if t.schema is None else fold(t.schema), fold(t.name)) for t in ids}
        object.__setattr__(self, "_ids", (fold, keys))

    def matches(self, table: TableId) -> bool:
        fold, keys = self._ids
        name = fold(table.name)
        schema = None if table.schema is None else fold(table.schema)
        return (schema, name) in keys or (None, name) in keys


def exactly(ids: Iterable[TableId], fold: Callable[[str], str] = str) -> Selection:
    """A :class:`~replikit.Selection` of exactly ``ids`` for reflection (names compared after
    ``fold``; an id without a schema matches the name in any schema)."""
    return _Exactly(ids, fold)


def existing_findings(
    pairs: Iterable[tuple[TablePlan, TableSchema]],
    rules: TargetRules,
    *,
    replicate: bool = False,
) -> list[Finding]:
    """Everything in each reflected target table that does not fit its plan.

    ``pairs``: (plan, existing target table) for the plans whose target table exists.
    ``replicate``: the tables will also receive changes (CDC), which are applied by key.
    """
    out: list[Finding] = []
    for plan, existing in pairs:
        check = _Check(plan, existing, rules)
        out += check.columns() + check.keys(replicate)
    return out


def refuse_existing(findings: Iterable[Finding]) -> None:
    """Raise :class:`~replikit.SchemaError` naming every unsupported finding (``prepare``
    calls it before it truncates or writes anything)."""
    refused = [str(f) for f in findings if f.fidelity is Fidelity.UNSUPPORTED]
    if refused:
        raise SchemaError("; ".join(refused) + ". Nothing was truncated or written.")


class _Check:
    def __init__(self, plan: TablePlan, existing: TableSchema, rules: TargetRules) -> None:
        self.plan = plan
        self.rules = rules
        self.table = str(plan.source.id)
        self.target = plan.target_id
        self.by_name = {rules.fold(c.name): c for c in existing.columns}
        self.existing = existing

    def finding(self, column: str, reason: str, fix: str, fidelity: Fidelity) -> Finding:
        return Finding.about(
            self.table,
            f"existing target table {self.target}: {reason}",
            kind="target",
            fix=fix,
            column=column,
            fidelity=fidelity,
        )

    # -- columns ----------------------------------------------------------------------------
    def columns(self) -> list[Finding]:
        out: list[Finding] = []
        planned = {self.rules.fold(c.name) for c in self.plan.columns}
        for col in self.plan.columns:
            found = self.by_name.get(self.rules.fold(col.name))
            out += self.missing(col) if found is None else self.column(col, found)
        for other in self.existing.columns:
            if self.rules.fold(other.name) not in planned:
                out.append(self.extra(other))
        return out

    def missing(self, col: ColumnPlan) -> list[Finding]:
        return [
            self.finding(
                col.source.name,
                f"has no column {col.name} (planned as {col.target.sql})",
                f"use target_table_prep_mode='drop-and-create', add the column "
                f"(ALTER TABLE ... ADD {col.name} {col.target.sql}), or leave the column "
                "out with a transform",
                Fidelity.UNSUPPORTED,
            )
        ]

    def column(self, col: ColumnPlan, found: Column) -> list[Finding]:
        out = []
        fidelity, why = self.rules.judge(col, found)
        if fidelity is not Fidelity.EXACT:
            out.append(self.type_finding(col, found, fidelity, why))
        if col.generated is not None and not found.generated:
            out.append(
                self.finding(
                    col.source.name,
                    f"column {found.name} is a plain column; the plan makes it generated "
                    f"({col.generated}) and does not write it, so loaded rows would get NULL",
                    "use target_table_prep_mode='drop-and-create', or generated_columns="
                    "'values' to copy the source's values into it",
                    Fidelity.UNSUPPORTED,
                )
            )
        elif col.generated is None and found.generated:
            out.append(
                self.finding(
                    col.source.name,
                    f"column {found.name} is generated in the target, which refuses the "
                    "source's values the load writes into it",
                    "use target_table_prep_mode='drop-and-create', or drop the generation "
                    "from the target column",
                    Fidelity.UNSUPPORTED,
                )
            )
        if col.nullable and not found.nullable:
            out.append(
                self.finding(
                    col.source.name,
                    f"column {found.name} is NOT NULL but the source column allows NULL; "
                    "a NULL stops the table's load",
                    "ALTER the target column to allow NULL, or use "
                    "target_table_prep_mode='drop-and-create'",
                    Fidelity.LOSSY,
                )
            )
        return out

    def type_finding(
        self, col: ColumnPlan, found: Column, fidelity: Fidelity, why: str | None
    ) -> Finding:
        native = found.type.native or found.type.describe()
        override = f"{self.plan.source.id}.{col.source.name}"
        fixes = ["use target_table_prep_mode='drop-and-create'"]
        if fidelity is Fidelity.UNSUPPORTED:
            fixes.append(f"set type_overrides={{{override!r}: {native!r}}} if every value fits")
        alter = self.rules.alter(self.target, col)
        fixes.append(f"run {alter}" if alter else f"change the column to {col.target.sql}")
        return self.finding(
            col.source.name,
            f"column {found.name} is {native}, the plan needs {col.target.sql}"
            + (f": {why}" if why else ""),
            ", ".join(fixes[:-1]) + ", or " + fixes[-1],
            fidelity,
        )

    def extra(self, col: Column) -> Finding:
        filled = col.default is not None or col.identity is not None or col.generated
        if col.nullable or filled:
            what = "its default" if filled else "NULL"
            return self.finding(
                col.name,
                f"column {col.name} is not in the source; loaded rows get {what} there",
                "map a source column to it, drop it, or use "
                "target_table_prep_mode='drop-and-create'",
                Fidelity.LOSSY,
            )
        return self.finding(
            col.name,
            f"column {col.name} is NOT NULL without a default and the load does not fill it: "
            "every row would be refused",
            "give it a default, allow NULL, drop it, or use "
            "target_table_prep_mode='drop-and-create'",
            Fidelity.UNSUPPORTED,
        )

    # -- keys -------------------------------------------------------------------------------
    def keys(self, replicate: bool) -> list[Finding]:
        fold = self.rules.fold
        names = {c.source.name: fold(c.name) for c in self.plan.columns}
        source_keys = [
            frozenset(names.get(c, fold(c)) for c in key)
            for key in (self.plan.source.primary_key, *self.plan.source.unique)
            if key
        ]
        target_keys = _unique_keys(self.existing, fold)
        out = [self.collide(key) for key in target_keys if not any(sk <= key for sk in source_keys)]
        planned = frozenset(fold(c) for c in self.plan.target_schema.key)
        if replicate and planned and planned not in target_keys:
            out.append(self.no_key(self.plan.target_schema.key))
        return out

    def collide(self, key: frozenset[str]) -> Finding:
        cols = ", ".join(sorted(key))
        return self.finding(
            "",
            f"unique key ({cols}) is not implied by the source's keys: source rows may collide",
            "drop or widen that key, or use target_table_prep_mode='drop-and-create'",
            Fidelity.UNSUPPORTED,
        )

    def no_key(self, key: tuple[str, ...]) -> Finding:
        cols = ", ".join(key)
        return self.finding(
            "",
            f"has no primary key or unique constraint on ({cols}); changes are applied by "
            "that key, so updates and deletes could not find their rows",
            f"add PRIMARY KEY ({cols}) to the target table, or use "
            "target_table_prep_mode='drop-and-create'",
            Fidelity.UNSUPPORTED,
        )


def _unique_keys(table: TableSchema, fold: Callable[[str], str]) -> list[frozenset[str]]:
    keys = [table.primary_key, *table.unique]
    keys += [i.columns for i in table.indexes if i.unique and not i.expressions and not i.where]
    return [frozenset(fold(c) for c in key) for key in keys if key]

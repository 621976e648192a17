"""The conversion report: schema objects beyond tables, each with a verdict.

Tables and columns are judged by :class:`~replikit.schema.convert.Fidelity`. Everything else
the plan converts or leaves behind (keys and indexes a target is told not to build, CHECK
constraints, defaults, generated columns, views, functions, procedures, triggers) is an
:class:`ObjectPlan` with a :class:`Verdict`, the target SQL when there is one, and the reason.
None of them stops a task: an object that is not converted is reported, and the data still
loads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from replikit.schema.model import Routine, TableId

__all__ = ["KINDS", "ConversionReport", "ObjectPlan", "Verdict", "plural", "routine_plans"]

#: object kinds in report order
KINDS = (
    "key",
    "index",
    "check",
    "default",
    "generated column",
    "view",
    "materialized view",
    "function",
    "procedure",
    "trigger",
)


def plural(kind: str) -> str:
    """``kind`` in the plural (``index`` -> ``indexes``)."""
    return kind + ("es" if kind.endswith("x") else "s")


class Verdict(enum.StrEnum):
    """How an object converts: as it was, with something a person should look at, or not."""

    EXACT = "exact"
    REVIEW = "review"
    NOT_CONVERTED = "not converted"


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    """One schema object and how it converts.

    Attributes:
        kind: one of :data:`KINDS`.
        name: the source object (``schema.table.check``, ``schema.view``, ...).
        verdict: exact, review or not converted.
        source_sql: the object's SQL in the source dialect (when known).
        sql: its SQL in the target dialect (``None`` when not converted).
        reason: why the verdict is not exact (review notes, or why it is not converted).
        table: the target table the object belongs to (checks, defaults), else ``None``.
        target: the target object's id (views), else ``None``.
    """

    kind: str
    name: str
    verdict: Verdict
    source_sql: str | None = None
    sql: str | None = None
    reason: str | None = None
    table: TableId | None = None
    target: TableId | None = None

    @property
    def converted(self) -> bool:
        """True when the plan creates the object (exact or review)."""
        return self.verdict is not Verdict.NOT_CONVERTED

    def __str__(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"{self.kind} {self.name} [{self.verdict.value}]{why}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by ``plan --json``."""
        return {
            "kind": self.kind,
            "name": self.name,
            "verdict": self.verdict.value,
            "source_sql": self.source_sql,
            "sql": self.sql,
            "reason": self.reason,
            "target": str(self.target) if self.target else None,
        }


@dataclass(frozen=True, slots=True)
class ConversionReport:
    """Every schema object of the plan beyond tables, with counts per kind and verdict."""

    objects: tuple[ObjectPlan, ...] = ()

    @classmethod
    def of(cls, objects: Iterable[ObjectPlan]) -> ConversionReport:
        """A report of ``objects``, ordered by kind then name."""
        order = {k: i for i, k in enumerate(KINDS)}
        return cls(tuple(sorted(objects, key=lambda o: (order.get(o.kind, 99), o.name))))

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind present: how many objects have each verdict (every verdict listed)."""
        out: dict[str, dict[str, int]] = {}
        for obj in self.objects:
            row = out.setdefault(obj.kind, {v.value: 0 for v in Verdict})
            row[obj.verdict.value] += 1
        return out

    def of_kind(self, kind: str) -> list[ObjectPlan]:
        """The objects of one kind."""
        return [o for o in self.objects if o.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the ``schema`` section of ``replikit plan --json``."""
        return {"counts": self.counts(), "objects": [o.to_dict() for o in self.objects]}

    def lines(self) -> list[str]:
        """The report as text lines: one count line per kind, then every object not exact."""
        if not self.objects:
            return []
        out = ["schema objects:"]
        for kind, row in self.counts().items():
            text = ", ".join(f"{n} {verdict}" for verdict, n in row.items())
            out.append(f"  {plural(kind):<20} {text}")
        for obj in self.objects:
            if obj.verdict is not Verdict.EXACT:
                out.append(f"  {'~' if obj.converted else 'x'} {obj}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __bool__(self) -> bool:
        return bool(self.objects)


def routine_plans(
    routines: Iterable[Routine],
    *,
    target: str,
    convert: Callable[[Routine], ObjectPlan | None] | None = None,
) -> list[ObjectPlan]:
    """Functions, procedures and triggers, each ``not converted`` with its language, but
    those ``convert`` answers for (SQL functions offered for review,
    :mod:`replikit.schema.functions`).

    replikit moves data and schema, not code: a routine's body is a program in its language,
    and a trigger fires one (or, in MySQL and SQLite, is one).
    """
    out = []
    for r in routines:
        offered = convert(r) if convert is not None else None
        if offered is not None:
            out.append(offered)
            continue
        on = f" on {r.table}" if r.table else ""
        reason = (
            f"{r.language} {r.kind}{on}: code is not converted; "
            f"recreate it in {target} from its definition"
        )
        # trigger names are per table in PostgreSQL and MySQL
        name = f"{r.table}.{r.id.name}" if r.table else str(r.id)
        out.append(ObjectPlan(r.kind, name, Verdict.NOT_CONVERTED, r.definition, None, reason))
    return out

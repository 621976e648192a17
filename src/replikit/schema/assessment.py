"""The assessment: every column's conversion verdict, before any data moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from replikit import display
from replikit.schema.convert import ColumnPlan, Fidelity, TablePlan
from replikit.schema.findings import Finding
from replikit.schema.report import ConversionReport

__all__ = ["Assessment", "Finding"]


def _source_type(col: ColumnPlan) -> str:
    return col.source.type.native or col.source.type.describe()


@dataclass(frozen=True, slots=True)
class Assessment:
    """How every selected table and column converts, plus problems found while planning.

    ``lossy`` and ``unsupported`` list the columns that will not (or cannot) arrive exactly;
    ``extra`` holds findings about objects rather than column types (name collisions, target
    limits, existing target tables); they count in ``lossy`` and ``unsupported`` too.
    ``problems`` holds everything else a user should know (index expressions left out,
    missing privileges, source settings). ``schema`` is the conversion report: CHECKs,
    defaults, generated columns and views, each exact, to review, or not converted (none of
    them stops a task).
    """

    tables: tuple[TablePlan, ...]
    problems: tuple[str, ...] = field(default=())
    extra: tuple[Finding, ...] = field(default=())
    schema: ConversionReport = field(default=ConversionReport())

    def findings(self, fidelity: Fidelity) -> list[Finding]:
        """Findings with the given verdict: column conversions first, then object findings."""
        columns = [
            Finding(
                str(t.source.id), c.source.name, _source_type(c), c.target.sql, c.fidelity, c.reason
            )
            for t in self.tables
            for c in t.columns
            if c.fidelity is fidelity
        ]
        return columns + [f for f in self.extra if f.fidelity is fidelity]

    @property
    def lossy(self) -> list[Finding]:
        """Columns whose values may change on the way (each with its reason)."""
        return self.findings(Fidelity.LOSSY)

    @property
    def unsupported(self) -> list[Finding]:
        """Columns that cannot be converted; a task refuses to run while any remain."""
        return self.findings(Fidelity.UNSUPPORTED)

    @property
    def exact(self) -> bool:
        """True when every column converts exactly."""
        return not self.lossy and not self.unsupported

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``replikit plan --json``."""
        return {
            "tables": [
                {
                    "source": str(t.source.id),
                    "target": str(t.target_id),
                    "fidelity": t.fidelity.value,
                    "columns": [
                        {
                            "name": c.source.name,
                            "target_name": c.name,
                            "source_type": _source_type(c),
                            "target_type": c.target.sql,
                            "fidelity": c.fidelity.value,
                            "reason": c.reason,
                        }
                        for c in t.columns
                    ],
                    "problems": list(t.problems),
                }
                for t in self.tables
            ],
            "findings": [f.to_dict() for f in self.extra],
            "problems": list(self.problems),
            "schema": self.schema.to_dict(),
            "summary": {
                "tables": len(self.tables),
                "columns": sum(len(t.columns) for t in self.tables),
                "lossy": len(self.lossy),
                "unsupported": len(self.unsupported),
            },
        }

    def __str__(self) -> str:
        lines = []
        for t in self.tables:
            lines.append(f"{t.source.id} -> {t.target_id}  [{t.fidelity.value}]")
            width = max((len(c.source.name) for c in t.columns), default=0)
            for c in t.columns:
                flag = "" if c.fidelity is Fidelity.EXACT else f"  [{c.fidelity.value}]"
                why = f"  {c.reason}" if c.reason and c.fidelity is not Fidelity.EXACT else ""
                named = f"  (as {c.name!r})" if c.name != c.source.name else ""
                lines.append(
                    f"  {c.source.name:<{width}}  {_source_type(c)} -> {c.target.sql}"
                    f"{named}{flag}{why}"
                )
        if self.extra:
            lines.append("findings:")
            lines.extend(f"  x {f}" for f in self.extra)
        if self.problems:
            lines.append("problems:")
            lines.extend(f"  ! {p}" for p in self.problems)
        lines += self.schema.lines()
        n_lossy, n_unsup = len(self.lossy), len(self.unsupported)
        lines.append(
            f"{len(self.tables)} tables, {sum(len(t.columns) for t in self.tables)} columns: "
            f"{n_lossy} lossy, {n_unsup} unsupported"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Assessment {display.assessment_summary(self)}>"

    def _repr_html_(self) -> str:
        return display.html_assessment(self)

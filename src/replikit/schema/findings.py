"""Findings: what planning noticed that would not arrive exactly, with the fix.

A finding is either about one column's type conversion (``kind="type"``, made from the
column plans) or about an object the plan cannot create faithfully (``kind`` ``"name"``:
two source objects land on one target name; ``"limit"``: a target limit is exceeded;
``"target"``: an existing target table does not fit the plan; ``"value"``: values the
target cannot hold; ``"setting"``: a task setting names something the plan does not have,
such as a type override for a column no selected table holds). ``unsupported`` findings stop
a task before any DDL; ``lossy`` ones are listed first and stop it only with ``allow_lossy=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replikit.schema.convert import Fidelity

__all__ = ["Finding"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One lossy or unsupported finding of the plan.

    Attributes:
        table: the source table (``schema.table``) the finding is about.
        column: the source column, or ``""`` for a table-level finding.
        source_type: the source column's type (``""`` when not about a type).
        target_type: the target column's type (``""`` when not about a type).
        fidelity: ``lossy`` or ``unsupported``.
        reason: what would happen to the data, naming every object involved.
        kind: ``"type"``, ``"name"``, ``"limit"``, ``"target"``, ``"value"`` or ``"setting"``.
        fix: what the user can do (a mapping, an override, a setting).
    """

    table: str
    column: str
    source_type: str
    target_type: str
    fidelity: Fidelity
    reason: str | None
    kind: str = "type"
    fix: str | None = None

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        if self.kind == "type":
            text = (
                f"{where}: {self.source_type} -> {self.target_type} "
                f"[{self.fidelity.value}] {self.reason or ''}".rstrip()
            )
        else:
            text = f"{where}: [{self.fidelity.value}] {self.reason or ''}".rstrip()
        return f"{text}. Fix: {self.fix}" if self.fix else text

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by ``plan --json``."""
        return {
            "table": self.table,
            "column": self.column or None,
            "kind": self.kind,
            "fidelity": self.fidelity.value,
            "source_type": self.source_type or None,
            "target_type": self.target_type or None,
            "reason": self.reason,
            "fix": self.fix,
        }

    @classmethod
    def about(
        cls,
        table: str,
        reason: str,
        *,
        kind: str,
        fix: str | None = None,
        column: str = "",
        fidelity: Fidelity = Fidelity.UNSUPPORTED,
    ) -> Finding:
        """A finding about an object rather than a column's type conversion."""
        return cls(table, column, "", "", fidelity, reason, kind, fix)

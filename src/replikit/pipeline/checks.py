"""Object-level checks of a plan, run before any DDL: names, limits, existing target tables.

Column type conversions are judged one column at a time (:mod:`replikit.schema.convert`).
What can only be seen across columns, tables or the target's current state is checked here
and reported as :class:`~replikit.schema.findings.Finding` s; unsupported ones stop the task
before anything is created (:func:`replikit.pipeline.runner.refuse_unsupported`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from replikit.schema.convert import PYTHON, Dialect, TablePlan
from replikit.schema.findings import Finding
from replikit.schema.identifiers import name_findings

__all__ = ["SupportsCheckExisting", "plan_findings"]


@runtime_checkable
class SupportsCheckExisting(Protocol):
    """A writer that can compare existing target tables with the plan."""

    def check_existing(
        self, plans: Sequence[TablePlan], mode: str, *, replicate: bool = False
    ) -> list[Finding]:
        """Findings for target tables that exist and do not fit ``plans`` under ``mode``
        (``replicate``: they will also receive changes, applied by key)."""
        ...


def plan_findings(
    plans: Sequence[TablePlan], writer: object, prep_mode: str, *, replicate: bool = False
) -> list[Finding]:
    """Every object-level finding for ``plans`` written by ``writer`` with ``prep_mode``
    (``replicate``: the target tables will also receive changes, CDC)."""
    dialect: Dialect = getattr(writer, "dialect", None) or PYTHON
    findings: list[Finding] = []
    # names the target cannot create, and source objects that land on one target name
    findings += name_findings(plans, dialect)
    findings += limit_findings(plans, dialect)
    if prep_mode != "drop-and-create" and isinstance(writer, SupportsCheckExisting):
        findings += writer.check_existing(plans, prep_mode, replicate=replicate)
    return findings


def limit_findings(plans: Sequence[TablePlan], dialect: Dialect) -> list[Finding]:
    """Target limits a plan exceeds (columns per table, row size, key length...)."""
    return []  # filled in by the target-limits work (issue 8 item 16)

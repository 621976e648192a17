"""Object-level checks of a plan, run before any DDL: names, limits, existing target tables.

Column type conversions are judged one column at a time (:mod:`replikit.schema.convert`).
What can only be seen across columns, tables or the target's current state is checked here
and reported as :class:`~replikit.schema.findings.Finding` s; unsupported ones stop the task
before anything is created (:func:`refuse_unsupported`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from replikit.errors import ConversionError
from replikit.pipeline.contracts import dialect_of
from replikit.schema.convert import Dialect, Fidelity, Overrides, TablePlan
from replikit.schema.findings import Finding
from replikit.schema.identifiers import name_findings
from replikit.schema.limits import Limits, limit_findings

__all__ = [
    "SupportsCheckExisting",
    "SupportsLimits",
    "SupportsSourceFindings",
    "plan_findings",
    "target_limits",
]


@runtime_checkable
class SupportsSourceFindings(Protocol):
    """A reader that knows what its own columns cannot carry exactly (MongoDB fields whose
    sampled values had several types): findings the plan lists before any data moves."""

    def source_findings(self) -> list[Finding]:
        """Lossy or unsupported findings about the reader's tables."""
        ...


@runtime_checkable
class SupportsCheckExisting(Protocol):
    """A writer that can compare existing target tables with the plan."""

    def check_existing(
        self, plans: Sequence[TablePlan], mode: str, *, replicate: bool = False
    ) -> list[Finding]:
        """Findings for target tables that exist and do not fit ``plans`` under ``mode``
        (``replicate``: they will also receive changes, applied by key)."""
        ...


@runtime_checkable
class SupportsLimits(Protocol):
    """A writer that knows its server's limits (settings read from the live server)."""

    def limits(self, *, replicate: bool = False) -> Limits:
        """The dialect's limits refined with the server's settings (``replicate``: changes
        will also be applied, which may take another write path)."""
        ...


def target_limits(writer: object, *, replicate: bool = False) -> Limits:
    """The limits ``writer``'s target has: the live server's, else its dialect's."""
    if isinstance(writer, SupportsLimits):
        return writer.limits(replicate=replicate)
    dialect = dialect_of(writer)
    return dialect.limits


def plan_findings(
    plans: Sequence[TablePlan],
    writer: object,
    prep_mode: str,
    *,
    replicate: bool = False,
    source: Dialect | None = None,
    reader: object = None,
) -> list[Finding]:
    """Every object-level finding for ``plans`` written by ``writer`` with ``prep_mode``
    (``replicate``: the target tables will also receive changes, CDC; ``source``: the
    dialect the rows come from, whose limits bound the values; ``reader``: what the rows
    are read by, for its own findings)."""
    dialect = dialect_of(writer)
    findings: list[Finding] = []
    # names the target cannot create, and source objects that land on one target name
    findings += name_findings(plans, dialect)
    # columns, row size, keys and values beyond the target's limits
    limits = target_limits(writer, replicate=replicate)
    findings += limit_findings(plans, limits, None if source is None else source.limits)
    if isinstance(reader, SupportsSourceFindings):
        selected = {str(p.source.id) for p in plans}
        findings += [f for f in reader.source_findings() if f.table in selected]
    if prep_mode != "drop-and-create" and isinstance(writer, SupportsCheckExisting):
        findings += writer.check_existing(plans, prep_mode, replicate=replicate)
    return findings


def refuse_unsupported(plans: Sequence[TablePlan], findings: Sequence[Finding] = ()) -> None:
    """Raise :class:`ConversionError` naming every unsupported finding (before any write).

    ``plans`` give the unsupported column conversions; ``findings`` the object-level ones
    (name collisions, target limits, existing target tables: :meth:`Pipeline.findings`).
    """
    unsupported = [
        f"{p.source.id}.{c.source.name} ({c.reason})"
        for p in plans
        for c in p.columns
        if c.fidelity.value == "unsupported"
    ]
    objects = [str(f) for f in findings if f.fidelity is Fidelity.UNSUPPORTED]
    if not unsupported and not objects:
        return
    parts = []
    if unsupported:
        parts.append(
            "these columns cannot be converted: "
            + "; ".join(unsupported)
            + ". Exclude the tables, drop the columns with a transform, or set a type override."
        )
    if objects:
        parts.append("the plan cannot be carried out faithfully: " + "; ".join(objects) + ".")
    raise ConversionError(" ".join(parts) + " Nothing was created in the target.")


def override_findings(overrides: Mapping[str, str], plans: Sequence[TablePlan]) -> list[Finding]:
    """An unsupported finding per type override that names no planned column: a typo in
    ``type_overrides`` must not let the run go on as if the override were applied."""
    unmatched = Overrides(overrides).unmatched(plan.source for plan in plans)
    if not unmatched:
        return []
    columns = [f"{p.source.id}.{c.source.name}" for p in plans for c in p.columns]

    def finding(key: str) -> Finding:
        name = key.rpartition(".")[2]
        like = [c for c in columns if c.rpartition(".")[2].casefold() == name.casefold()]
        example = like or columns[:1]
        hint = f" (e.g. {', '.join(map(repr, example[:3]))})" if example else ""
        return Finding.about(
            key.rpartition(".")[0],
            f"type override {key!r} names no column of the selected source tables",
            kind="setting",
            fix=f"spell the key as table.column or schema.table.column as the plan names the "
            f"source column{hint}",
        )

    return [finding(key) for key in unmatched]

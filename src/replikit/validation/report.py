"""The result of a validation: :class:`ValidationReport`, one :class:`TableValidation` per
table, with the rows that differ (:class:`RowDifference`).

A table is ``validated`` only when every row was compared and found equal; a table that
could not be compared (missing on one side, a key or column that does not match the plan) is
``not comparable`` with the reason, never ``validated``.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from replikit import display

__all__ = [
    "FailureType",
    "RowDifference",
    "TableValidation",
    "ValidationReport",
    "ValidationState",
    "jsonable",
]


class ValidationState(enum.StrEnum):
    """The verdict for one table."""

    VALIDATED = "validated"
    MISMATCHED = "mismatched"
    #: no row differs, but some were still changing at the source when re-checked beside a
    #: live CDC task (in flight: not failures, not proven equal either; validate again)
    PENDING = "pending"
    NOT_COMPARABLE = "not comparable"
    ERROR = "error"


class FailureType(enum.StrEnum):
    """Why a row is a failure (DMS's names, as in the failures table)."""

    RECORD_DIFF = "RECORD_DIFF"
    MISSING_TARGET = "MISSING_TARGET"
    MISSING_SOURCE = "MISSING_SOURCE"


@dataclass(frozen=True, slots=True)
class RowDifference:
    """One row that is not the same on both sides.

    ``key`` maps the source key columns to the row's key (a keyless table: every column, and
    ``count`` copies). ``source`` / ``target`` are the row's values on each side, by source
    column name (``None`` on the side where the row is missing). ``columns`` names the
    differing columns of a ``RECORD_DIFF``.
    """

    type: FailureType
    key: Mapping[str, Any]
    columns: tuple[str, ...] = ()
    source: Mapping[str, Any] | None = None
    target: Mapping[str, Any] | None = None
    count: int = 1

    def key_json(self) -> dict[str, Any]:
        """The key as a JSON-friendly dict."""
        return {k: jsonable(v) for k, v in self.key.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of one difference (``columns`` only for a ``RECORD_DIFF``)."""
        d: dict[str, Any] = {"key": self.key_json()}
        if self.type is FailureType.RECORD_DIFF:
            d["columns"] = list(self.columns)
        if self.count != 1:
            d["count"] = self.count
        return d


@dataclass(slots=True)
class TableValidation:
    """The validation of one table: state, counts, the differing rows, time taken.

    The lists of rows (``missing_in_target``, ``missing_in_source``, ``different``) hold at
    most ``max_rows`` entries each (``truncated`` is then true); the counts are exact.
    """

    source: str
    target: str
    state: ValidationState = ValidationState.VALIDATED
    rows_compared: int = 0
    #: rows read to the client (by keys; the rest were proven equal by checksums)
    rows_read: int = 0
    missing_in_target: list[RowDifference] = field(default_factory=list)
    missing_in_source: list[RowDifference] = field(default_factory=list)
    different: list[RowDifference] = field(default_factory=list)
    missing_in_target_count: int = 0
    missing_in_source_count: int = 0
    different_count: int = 0
    reason: str | None = None
    method: str = ""
    seconds: float = 0.0
    truncated: bool = False
    #: rows still changing at the source when re-checked beside a live CDC task (in flight,
    #: not failures), and the candidates that were re-checked
    pending: int = 0
    rechecked: int = 0
    not_compared: tuple[str, ...] = ()
    max_rows: int = 1000

    @property
    def failures(self) -> int:
        """Rows that differ, whatever the kind (exact count)."""
        return self.missing_in_target_count + self.missing_in_source_count + self.different_count

    @property
    def rows(self) -> list[RowDifference]:
        """Every kept difference: missing in the target, missing in the source, different."""
        return [*self.missing_in_target, *self.missing_in_source, *self.different]

    def add(self, diff: RowDifference) -> None:
        """Count ``diff`` and keep it while under ``max_rows`` of its kind."""
        kind = {
            FailureType.MISSING_TARGET: "missing_in_target",
            FailureType.MISSING_SOURCE: "missing_in_source",
            FailureType.RECORD_DIFF: "different",
        }[diff.type]
        setattr(self, kind + "_count", getattr(self, kind + "_count") + diff.count)
        kept: list[RowDifference] = getattr(self, kind)
        if len(kept) < self.max_rows:
            kept.append(diff)
        else:
            self.truncated = True

    def settle(self) -> None:
        """Set the state from the counts (a table not comparable or in error keeps it)."""
        compared = (ValidationState.VALIDATED, ValidationState.MISMATCHED, ValidationState.PENDING)
        if self.state in compared:
            self.state = (
                ValidationState.MISMATCHED
                if self.failures
                else ValidationState.PENDING
                if self.pending
                else ValidationState.VALIDATED
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``replikit validate --json`` for one table."""
        d: dict[str, Any] = {
            "source": self.source,
            "target": self.target,
            "state": self.state.value,
            "rows_compared": self.rows_compared,
            "missing_in_target": [r.to_dict()["key"] for r in self.missing_in_target],
            "missing_in_source": [r.to_dict()["key"] for r in self.missing_in_source],
            "different": [r.to_dict() for r in self.different],
            "counts": {
                "missing_in_target": self.missing_in_target_count,
                "missing_in_source": self.missing_in_source_count,
                "different": self.different_count,
            },
            "seconds": round(self.seconds, 3),
            "method": self.method,
            "rows_read": self.rows_read,
        }
        if self.truncated:
            d["truncated"] = True
        if self.rechecked:
            d["rechecked"] = self.rechecked
            d["pending"] = self.pending
        if self.reason:
            d["reason"] = self.reason
        if self.not_compared:
            d["not_compared"] = list(self.not_compared)
        return d

    def __str__(self) -> str:
        return display.table_validation_text(self)

    def __repr__(self) -> str:
        return f"<TableValidation {display.table_validation_line(self)}>"


class ValidationReport(list[TableValidation]):
    """What :func:`replikit.validate` and :meth:`Task.validate` return: one
    :class:`TableValidation` per table, printable, shown as tables in notebooks (the differing
    rows side by side), as JSON with :meth:`to_dict`. :meth:`fix` repairs the target."""

    def __init__(self, tables: Sequence[TableValidation] = (), *, fixer: Any = None) -> None:
        super().__init__(tables)
        self._fixer: Callable[[ValidationReport], FixResult] | None = fixer
        self.fixed: FixResult | None = None

    @property
    def ok(self) -> bool:
        """True when every table is ``validated``."""
        return all(t.state is ValidationState.VALIDATED for t in self)

    @property
    def equal(self) -> bool:
        """Same as :attr:`ok` (the name :func:`replikit.compare` results used)."""
        return self.ok

    def table(self, name: str) -> TableValidation:
        """The result of the table named ``name`` (source or target name, with or without
        its schema)."""
        for t in self:
            names = (t.source, t.target)
            if name in names or any(n.endswith("." + name) for n in names):
                return t
        raise KeyError(name)

    def by_state(self, state: ValidationState | str) -> list[TableValidation]:
        """The tables in ``state``."""
        return [t for t in self if t.state == state]

    def fix(self) -> FixResult:
        """Re-copy exactly the differing rows from the source (insert, update, delete by key,
        in target transactions), then validate those keys again; return what changed.

        The report itself is updated with the re-validation of the repaired rows.
        """
        if self._fixer is None:
            from replikit.errors import ConfigError

            raise ConfigError("this report was not made by a validation that can repair")
        self.fixed = self._fixer(self)
        return self.fixed

    def to_dict(self) -> dict[str, Any]:
        """JSON shape: ``{"ok": ..., "tables": [...], "fixed": {...}}``."""
        return {
            "ok": self.ok,
            "tables": [t.to_dict() for t in self],
            "fixed": self.fixed.to_dict() if self.fixed is not None else {},
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    def __repr__(self) -> str:
        return f"<ValidationReport {display.validation_summary(self)}>"

    def __str__(self) -> str:
        return display.validation_text(self)

    def _repr_html_(self) -> str:
        return display.html_validation(self)


@dataclass(slots=True)
class FixResult:
    """What :meth:`ValidationReport.fix` changed, per target table: rows inserted, updated,
    deleted, and the rows that still differ after the repair (``remaining``)."""

    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        """Rows still different after the repair (0: the repaired rows now match)."""
        return sum(t.get("remaining", 0) for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON shape: ``{"tables": {target: {"inserted": n, ...}}, "skipped": {...}}``."""
        return {"tables": self.tables, "skipped": self.skipped, "remaining": self.remaining}

    def __str__(self) -> str:
        parts = [
            f"{name}: {c.get('inserted', 0)} inserted, {c.get('updated', 0)} updated, "
            f"{c.get('deleted', 0)} deleted, {c.get('remaining', 0)} still different"
            for name, c in self.tables.items()
        ]
        parts += [f"{name}: not repaired ({why})" for name, why in self.skipped.items()]
        return "\n".join(parts) or "nothing to repair"


def jsonable(value: Any) -> Any:
    """``value`` as JSON can carry it: numbers stay numbers where exact, the rest as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID | timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)

"""``partition_by``: rows into folders by a column's value (no pyarrow import).

``col:year`` / ``col:month`` / ``col:day`` (a date or timestamp column: ``col_month=2024-01``)
or ``col`` / ``col:value`` (any column: ``col=value``, the value percent-encoded). A NULL
value, and a delete whose change carries only the key, go to ``..=__HIVE_DEFAULT_PARTITION__``
(Hive's name for it).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from replikit.errors import ConfigError
from replikit.schema.convert import TablePlan
from replikit.schema.types import Kind

__all__ = ["DEFAULT", "Partition", "parse_partition"]

DEFAULT = "__HIVE_DEFAULT_PARTITION__"
_GRAINS = ("year", "month", "day", "value")
_FORMATS = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d"}


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed ``partition_by``: the column (as named) and its grain."""

    column: str
    grain: str

    def __str__(self) -> str:
        return f"{self.column}:{self.grain}"


def parse_partition(text: str | None) -> Spec | None:
    """``"col:month"`` -> ``Spec("col", "month")``; ``None``/empty: no partitioning."""
    if not text:
        return None
    column, _, grain = text.rpartition(":") if ":" in text else (text, "", "value")
    grain = grain.lower() or "value"
    if grain not in _GRAINS or not column:
        raise ConfigError(
            f"bad partition_by {text!r}; use column, column:year, column:month or column:day"
        )
    return Spec(column, grain)


@dataclass(frozen=True, slots=True)
class Partition:
    """One table's partitioning: the column's index in its rows and the folder names."""

    spec: Spec
    name: str  # the target column name

    @classmethod
    def of(cls, spec: Spec | None, plan: TablePlan) -> Partition | None:
        """The partitioning of ``plan``'s table (``None``: no spec, or the table has no such
        column: it is written unpartitioned). A date grain on a non-date column is refused."""
        if spec is None:
            return None
        cp = plan.column_for(spec.column)
        if cp is None:
            return None
        if spec.grain != "value" and cp.source.type.kind not in (Kind.DATE, Kind.TIMESTAMP):
            raise ConfigError(
                f"partition_by {spec}: column {cp.name} of {plan.target_id} is "
                f"{cp.source.type}, not a date or timestamp; partition by its value instead "
                f"(partition_by={spec.column})"
            )
        return cls(spec, cp.name)

    def folder(self, value: Any) -> str:
        """The partition folder of a row whose partition column holds ``value``."""
        grain = self.spec.grain
        label = self.name if grain == "value" else f"{self.name}_{grain}"
        if value is None:
            return f"{label}={DEFAULT}"
        if grain == "value":
            text = value.isoformat() if isinstance(value, date | datetime) else str(value)
        elif isinstance(value, date | datetime):
            text = value.strftime(_FORMATS[grain])
        else:  # infinity, BC dates (text): their own folder
            text = str(value)
        return f"{label}={urllib.parse.quote(text, safe='-_.: ')}"

    def split(
        self, names: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> dict[str, list[Sequence[Any]]]:
        """``rows`` by partition folder (order kept within each)."""
        at = names.index(self.name) if self.name in names else None
        out: dict[str, list[Sequence[Any]]] = {}
        for row in rows:
            out.setdefault(self.folder(None if at is None else row[at]), []).append(row)
        return out

"""Portable schema model, type rules and conversion planning."""

from replikit.schema.convert import ColumnPlan, Dialect, Fidelity, TablePlan, TargetType, plan_table
from replikit.schema.model import (
    Catalog,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    TableId,
    TableSchema,
    View,
)
from replikit.schema.types import Kind, Type

__all__ = [
    "Catalog",
    "CheckConstraint",
    "Column",
    "ColumnPlan",
    "Dialect",
    "Fidelity",
    "ForeignKey",
    "Identity",
    "Index",
    "Kind",
    "TableId",
    "TablePlan",
    "TableSchema",
    "TargetType",
    "Type",
    "View",
    "plan_table",
]

"""The tables replikit keeps in a user's database where it has no schema of its own.

A SQLite or MySQL/MariaDB target holds replikit's control tables (checkpoints, status,
suspended tables...) beside the user's tables, and a SQLite CDC source its change log. Their
reflection leaves out exactly these names: a user's table that merely starts the same way
(``Replikit_Orders``, ``replikit_2024``) is read and copied like any other, never dropped
from the copy without a word. PostgreSQL and DuckDB keep them in a ``replikit`` schema of
their own.
"""

from __future__ import annotations

__all__ = ["CDC_TABLES", "CONTROL_TABLES", "reserved"]

#: a task's control tables in a target (each module that creates one names it; a test checks
#: every such name is here)
CONTROL_TABLES = frozenset(
    {
        "replikit_apply_exceptions",
        "replikit_checkpoints",
        "replikit_history",
        "replikit_lease_members",
        "replikit_leases",
        "replikit_load_units",
        "replikit_status",
        "replikit_suspended_tables",
        "replikit_takeovers",
        "replikit_validation_failures",
    }
)
#: a SQLite CDC source's change log and bookkeeping
CDC_TABLES = frozenset(
    {"_replikit_cdc_state", "_replikit_cdc_tables", "_replikit_cdc_tasks", "_replikit_changes"}
)
_RESERVED = CONTROL_TABLES | CDC_TABLES


def reserved(name: str, *, fold_case: bool) -> bool:
    """Whether table ``name`` is one of replikit's own; ``fold_case`` where the database's
    table names ignore case (SQLite: no user table can share the name in another case)."""
    return (name.lower() if fold_case else name) in _RESERVED

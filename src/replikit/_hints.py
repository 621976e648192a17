"""Messages that tell a person what to type instead (patterns that fit the engine)."""

from __future__ import annotations

from replikit.endpoints.base import Endpoint
from replikit.errors import ConfigError, Error

__all__ = ["selects_nothing"]

_PATTERN_HINTS = {
    "postgres": "schema.table, % as wildcard, e.g. public.% or %.orders",
    "mysql": "schema.table where the schema is the database, % as wildcard, e.g. shop.% "
    "or %.orders",
    "sqlite": "SQLite has no schemas: a table name or a pattern such as A% or %; "
    "main.% selects every table",
}


def selects_nothing(source: Endpoint, what: str) -> ConfigError:
    """The error for patterns that select nothing: the pattern form of this engine and
    some of the tables the source has."""
    hint = _PATTERN_HINTS.get(source.family, "schema.table, % as wildcard, e.g. %.orders")
    try:
        names = sorted(str(t.id) for t in source.reflect().tables)
    except Error:
        names = []
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    tables = f" Its tables: {shown}." if names else " It has no tables."
    return ConfigError(
        f"{what} selects no table in {source.url}. Check the pattern ({hint}).{tables}"
    )

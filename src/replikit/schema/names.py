"""Identifier rules of a target database, as data: how a name is stored and how names collide.

Every :class:`~replikit.schema.convert.Dialect` holds one :class:`IdentifierRules` and answers
``target_name`` / ``name_key`` / ``name_problem`` through it. The planner names every target
object through these rules (:mod:`replikit.schema.identifiers`), and the writers create what
the plan says, so the plan and the DDL cannot disagree about a name.

* ``target_name(name, kind)``: the name as the target stores it (PostgreSQL cuts names to 63
  bytes at a character boundary; the others keep them, or refuse them).
* ``name_key(name, kind)``: two names with equal keys are the same object in the target
  (MySQL and SQLite compare names without case; PostgreSQL, always quoted, compares exactly).
* ``name_problem(name, kind)``: why the target cannot create the name at all, or ``None``.

``kind`` is one of :data:`KINDS`. No database is asked: the rules are the documented and
tested behaviour of each server (docs/identifiers.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = ["KINDS", "IdentifierRules", "NameKind", "NamedByRules", "ascii_fold", "mysql_fold"]

NameKind = Literal["schema", "table", "column", "index", "constraint", "sequence", "type"]
#: every identifier kind the planner names
KINDS: tuple[NameKind, ...] = (
    "schema",
    "table",
    "column",
    "index",
    "constraint",
    "sequence",
    "type",
)

Problem = Callable[[str, str], "str | None"]


def _exact(name: str) -> str:
    return name


def ascii_fold(name: str) -> str:
    """SQLite's comparison: ASCII letters without case, every other character as it is."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def mysql_fold(name: str) -> str:
    """MySQL's and MariaDB's comparison of names: each character lowered on its own.

    Per character (not ``str.lower`` of the whole name, whose final-sigma rule depends on the
    neighbours), with U+0130 (capital I with dot) lowered to ``i`` as the server does. Probed
    on MariaDB 10.11: E-acute in both cases, K and the Kelvin sign, and i and U+0130 collide;
    e and e-acute, sharp s and ss, the two small sigmas, and A and fullwidth A do not. Python's
    newer case tables fold a few letters the server does not (capital sharp s), which only
    errs towards refusing.
    """
    return "".join("i" if c == "\u0130" else c.lower() for c in name)


@dataclass(frozen=True, slots=True)
class IdentifierRules:
    """How one target stores and compares identifiers.

    Attributes:
        dialect: the dialect's name, for messages.
        max_length: the longest name, in ``length_unit`` (``None``: no limit).
        length_unit: ``"bytes"`` (of UTF-8) or ``"characters"``.
        truncates: longer names are cut to ``max_length`` (PostgreSQL) rather than refused.
        fold: what two names are compared by (identity: case kept).
        index_scope: ``"schema"``: index (and key constraint) names share one namespace with
            the tables of their schema (PostgreSQL, SQLite); ``"table"``: per table (MySQL).
        reserved_index_names: folded names no index may take (MySQL's ``primary``).
        allows_empty: an empty (quoted) name is valid (SQLite).
        extra_problem: more reasons a ``(name, kind)`` is impossible (``None``: none).
    """

    dialect: str
    max_length: int | None = None
    length_unit: Literal["bytes", "characters"] = "characters"
    truncates: bool = False
    fold: Callable[[str], str] = _exact
    index_scope: Literal["schema", "table"] = "schema"
    reserved_index_names: frozenset[str] = frozenset()
    allows_empty: bool = False
    extra_problem: Problem | None = None

    def length(self, name: str) -> int:
        """``name``'s length in this target's unit."""
        if self.length_unit == "bytes":
            return len(name.encode("utf-8", "surrogatepass"))
        return len(name)

    def cut(self, name: str, limit: int | None = None) -> str:
        """``name`` cut to ``limit`` (default ``max_length``) at a character boundary."""
        limit = self.max_length if limit is None else limit
        if limit is None or self.length(name) <= limit:
            return name
        if self.length_unit == "characters":
            return name[:limit]
        return name.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")

    def target_name(self, name: str, kind: NameKind) -> str:
        """The name the target stores for ``name``."""
        return self.cut(name) if self.truncates else name

    def name_key(self, name: str, kind: NameKind) -> str:
        """Names with equal keys are one object in the target."""
        return self.fold(self.target_name(name, kind))

    def name_problem(self, name: str, kind: NameKind) -> str | None:
        """Why the target cannot create an object called ``name``, or ``None``."""
        if not name and not self.allows_empty:
            return f"{self.dialect} names cannot be empty"
        if "\x00" in name:
            return f"{self.dialect} names cannot contain a NUL character"
        if any("\ud800" <= c <= "\udfff" for c in name):
            return "the name is not valid Unicode (a lone surrogate)"
        too_long = self.max_length is not None and self.length(name) > self.max_length
        if too_long and not self.truncates:
            return (
                f"the name is {self.length(name)} {self.length_unit} long and {self.dialect} "
                f"refuses names longer than {self.max_length} {self.length_unit} "
                "(it does not shorten them)"
            )
        return self.extra_problem(name, kind) if self.extra_problem else None


class NamedByRules:
    """Mixin: a dialect's ``target_name`` / ``name_key`` / ``name_problem`` from its
    :attr:`identifiers` rules."""

    __slots__ = ()
    identifiers: ClassVar[IdentifierRules]

    def quote(self, identifier: str) -> str:
        """``identifier`` quoted for the dialect's SQL (each dialect says how)."""
        raise NotImplementedError

    def qualified(self, schema: str | None, name: str) -> str:
        """``name`` quoted and qualified by ``schema`` when there is one."""
        return f"{self.quote(schema)}.{self.quote(name)}" if schema else self.quote(name)

    def target_name(self, name: str, kind: NameKind) -> str:
        """The name the target stores for ``name`` (see :class:`IdentifierRules`)."""
        return self.identifiers.target_name(name, kind)

    def name_key(self, name: str, kind: NameKind) -> str:
        """Names with equal keys are one object in the target."""
        return self.identifiers.name_key(name, kind)

    def name_problem(self, name: str, kind: NameKind) -> str | None:
        """Why the target cannot create an object called ``name``, or ``None``."""
        return self.identifiers.name_problem(name, kind)

"""Source positions: where a source is, ordered and serialisable.

A position always points *after* the last change delivered, so resuming from a stored position
never repeats the change it was taken at. ``str(pos)`` round-trips through ``parse``.
"""

from __future__ import annotations

import abc
import functools
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from replikit.errors import ConfigError

if TYPE_CHECKING:
    from replikit.schema.model import TableId

__all__ = ["FORMATS", "PgLsn", "Position", "SqliteSeq"]

#: The position formats ``Position.parse`` reads, for messages and help texts.
FORMATS = (
    "pg:<LSN> (PostgreSQL, e.g. pg:0/1A2B3C), "
    "mysql:<binlog file>:<offset>[@<GTID state>][#<server>] (MySQL/MariaDB, e.g. "
    "mysql:binlog.000003:4), "
    "sqlite:<change sequence> (SQLite, e.g. sqlite:42), "
    'mongo:<Extended JSON> (MongoDB, e.g. mongo:{"shop.orders": {"token": {"_data": "82..."}}})'
)

# Position classes that live in an endpoint family (imported when first parsed).
_LAZY = {
    "mysql": "replikit.endpoints.mysql._positions",
    "mongo": "replikit.endpoints.mongodb._positions",
}


@functools.total_ordering
class Position(abc.ABC):
    """Base class of all source positions."""

    prefix: ClassVar[str]
    _types: ClassVar[dict[str, type[Position]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "prefix" in cls.__dict__:
            Position._types[cls.prefix] = cls

    @abc.abstractmethod
    def _key(self) -> Any: ...

    @abc.abstractmethod
    def _text(self) -> str: ...

    @classmethod
    @abc.abstractmethod
    def _from_text(cls, text: str) -> Position: ...

    def __str__(self) -> str:
        return f"{self.prefix}:{self._text()}"

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self._key() < other._key())

    def for_table(self, table: TableId) -> Position:
        """This position as ``table``'s changes are compared with it: the position itself
        where one change log orders every table; a source that keeps a point per table
        (MongoDB: one change stream per collection) gives that table's only."""
        return self

    @staticmethod
    def parse(text: str) -> Position:
        """Parse ``str(position)`` back into a position (the error lists :data:`FORMATS`)."""
        prefix, sep, rest = text.partition(":")
        if prefix not in Position._types and prefix in _LAZY:
            importlib.import_module(_LAZY[prefix])  # defines the class, which registers it
        cls = Position._types.get(prefix)
        if not sep or cls is None:
            raise ConfigError(f"not a replikit position: {text!r}; the formats are {FORMATS}")
        try:
            return cls._from_text(rest)
        except ConfigError as exc:
            raise ConfigError(f"{exc}; the formats are {FORMATS}") from None


@dataclass(frozen=True, slots=True, eq=True)
class PgLsn(Position):
    """A PostgreSQL WAL location (the ``end_lsn`` of the last applied transaction)."""

    value: int
    prefix: ClassVar[str] = "pg"

    def __lt__(self, other: object) -> bool:
        if other.__class__ is PgLsn:  # the common case, without the two _key() calls
            return self.value < other.value
        return Position.__lt__(self, other)

    def _key(self) -> int:
        return self.value

    def _text(self) -> str:
        return f"{self.value >> 32:X}/{self.value & 0xFFFFFFFF:X}"

    @classmethod
    def _from_text(cls, text: str) -> PgLsn:
        return cls.from_pg(text)

    @classmethod
    def from_pg(cls, text: str) -> PgLsn:
        """Parse PostgreSQL's ``X/Y`` notation."""
        hi, _, lo = text.partition("/")
        try:
            return cls((int(hi, 16) << 32) | int(lo, 16))
        except ValueError:
            raise ConfigError(f"not a PostgreSQL LSN: {text!r}") from None


@dataclass(frozen=True, slots=True, eq=True)
class SqliteSeq(Position):
    """The sequence number of the last applied row of replikit's SQLite change table."""

    value: int
    prefix: ClassVar[str] = "sqlite"

    def _key(self) -> int:
        return self.value

    def _text(self) -> str:
        return str(self.value)

    @classmethod
    def _from_text(cls, text: str) -> SqliteSeq:
        try:
            return cls(int(text))
        except ValueError:
            raise ConfigError(f"not a SQLite change sequence: {text!r}") from None

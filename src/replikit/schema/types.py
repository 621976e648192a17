"""Portable logical types.

A :class:`Type` describes what a column can hold, independent of any database. Reflection maps
a native type (``numeric(12,2)``, ``DATETIME``) to a portable one; a target dialect maps the
portable type back to a native one, saying whether the conversion is exact, lossy or
unsupported. Each portable kind has one canonical Python representation, the currency between
readers and writers:

=============  ==========================================================================
kind           Python value
=============  ==========================================================================
bool           ``bool``
int            ``int`` (``bits`` 8/16/32/64, ``unsigned``)
decimal        ``decimal.Decimal`` (NaN and +-Infinity included)
float          ``float`` (``bits`` 32/64; nan and inf included)
string, text   ``str``
bytes          ``bytes``
date           ``datetime.date``, or ``str`` for values Python cannot hold (infinity, BC,
               year > 9999): the source's own text
time           ``datetime.time`` (aware when ``tz``), or ``str`` for ``24:00:00`` (and MySQL
               TIME values outside one day)
timestamp      ``datetime.datetime`` (aware UTC when ``tz``), or ``str`` as for date
interval       ``str`` (ISO 8601 duration, e.g. ``P1Y2M3DT4H5M6S``)
json           ``str`` (the JSON text, untouched: number precision is kept)
uuid           ``uuid.UUID``
enum           ``str``
array          ``list`` of the item type's values (nested for several dimensions)
other          ``str`` (the source's text form of a type with no portable meaning)
=============  ==========================================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

__all__ = ["Kind", "Type"]


class Kind(enum.StrEnum):
    """The family of a portable type."""

    BOOL = "bool"
    INT = "int"
    DECIMAL = "decimal"
    FLOAT = "float"
    STRING = "string"
    TEXT = "text"
    BYTES = "bytes"
    DATE = "date"
    TIME = "time"
    TIMESTAMP = "timestamp"
    INTERVAL = "interval"
    JSON = "json"
    UUID = "uuid"
    ENUM = "enum"
    ARRAY = "array"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Type:
    """A portable column type. Build one with the class methods (``Type.int(64)``...).

    ``native`` keeps the source spelling (``"int4"``, ``"NVARCHAR(40)"``) for messages and for
    same-dialect moves; it does not take part in portable comparisons.
    """

    kind: Kind
    bits: int | None = None
    unsigned: bool = False
    precision: int | None = None
    scale: int | None = None
    length: int | None = None
    fixed: bool = False
    tz: bool = False
    values: tuple[str, ...] = ()
    item: Type | None = None
    dims: int = 0
    binary: bool = False
    native: str = field(default="", compare=False)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def bool_(cls, native: str = "") -> Type:
        """A boolean."""
        return cls(Kind.BOOL, native=native)

    @classmethod
    def int_(cls, bits: int = 64, *, unsigned: bool = False, native: str = "") -> Type:
        """An integer of ``bits`` bits."""
        return cls(Kind.INT, bits=bits, unsigned=unsigned, native=native)

    @classmethod
    def decimal(
        cls, precision: int | None = None, scale: int | None = None, native: str = ""
    ) -> Type:
        """An exact number; no precision means unbounded (PostgreSQL ``numeric``)."""
        return cls(Kind.DECIMAL, precision=precision, scale=scale, native=native)

    @classmethod
    def float_(cls, bits: int = 64, native: str = "") -> Type:
        """A binary floating point number."""
        return cls(Kind.FLOAT, bits=bits, native=native)

    @classmethod
    def string(cls, length: int | None = None, *, fixed: bool = False, native: str = "") -> Type:
        """A character string with an optional maximum (or fixed) length."""
        return cls(Kind.STRING, length=length, fixed=fixed, native=native)

    @classmethod
    def text(cls, native: str = "") -> Type:
        """Unbounded text."""
        return cls(Kind.TEXT, native=native)

    @classmethod
    def bytes_(cls, length: int | None = None, *, fixed: bool = False, native: str = "") -> Type:
        """A byte string."""
        return cls(Kind.BYTES, length=length, fixed=fixed, native=native)

    @classmethod
    def date(cls, native: str = "") -> Type:
        """A calendar date."""
        return cls(Kind.DATE, native=native)

    @classmethod
    def time(cls, precision: int | None = None, *, tz: bool = False, native: str = "") -> Type:
        """A time of day with ``precision`` fractional digits."""
        return cls(Kind.TIME, precision=precision, tz=tz, native=native)

    @classmethod
    def timestamp(cls, precision: int | None = None, *, tz: bool = False, native: str = "") -> Type:
        """A date and time; ``tz`` means an instant (PostgreSQL ``timestamptz``)."""
        return cls(Kind.TIMESTAMP, precision=precision, tz=tz, native=native)

    @classmethod
    def interval(cls, native: str = "") -> Type:
        """A duration with calendar parts (months, days, time)."""
        return cls(Kind.INTERVAL, native=native)

    @classmethod
    def json(cls, *, binary: bool = False, native: str = "") -> Type:
        """A JSON document; ``binary`` for normalised storage (``jsonb``)."""
        return cls(Kind.JSON, binary=binary, native=native)

    @classmethod
    def uuid(cls, native: str = "") -> Type:
        """A UUID."""
        return cls(Kind.UUID, native=native)

    @classmethod
    def enum(cls, values: tuple[str, ...], native: str = "") -> Type:
        """One of a fixed list of labels."""
        return cls(Kind.ENUM, values=tuple(values), native=native)

    @classmethod
    def array(cls, item: Type, dims: int = 1, native: str = "") -> Type:
        """An array of ``item`` with ``dims`` dimensions."""
        return cls(Kind.ARRAY, item=item, dims=dims, native=native)

    @classmethod
    def other(cls, native: str) -> Type:
        """A type with no portable meaning, carried as its text form."""
        return cls(Kind.OTHER, native=native)

    # -- helpers -------------------------------------------------------------------------
    def with_native(self, native: str) -> Type:
        """The same type with another native spelling."""
        return replace(self, native=native)

    def describe(self) -> str:
        """A short human description, e.g. ``decimal(12,2)`` or ``timestamp(6) with tz``."""
        k = self.kind
        if k is Kind.INT:
            return f"{'u' if self.unsigned else ''}int{self.bits}"
        if k is Kind.FLOAT:
            return f"float{self.bits}"
        if k is Kind.DECIMAL:
            if self.precision is None:
                return "decimal"
            return f"decimal({self.precision},{self.scale or 0})"
        if k in (Kind.STRING, Kind.BYTES):
            size = f"({self.length})" if self.length is not None else ""
            return f"{k.value}{size}{' fixed' if self.fixed else ''}"
        if k in (Kind.TIME, Kind.TIMESTAMP):
            p = f"({self.precision})" if self.precision is not None else ""
            return f"{k.value}{p}{' with tz' if self.tz else ''}"
        if k is Kind.JSON:
            return "json (binary)" if self.binary else "json"
        if k is Kind.ENUM:
            return f"enum({', '.join(self.values)})"
        if k is Kind.ARRAY:
            assert self.item is not None
            return f"array<{self.item.describe()}>" + ("[]" * (self.dims - 1))
        if k is Kind.OTHER:
            return f"other({self.native})"
        return k.value

    def __str__(self) -> str:
        return self.describe()

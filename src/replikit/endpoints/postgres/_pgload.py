"""The default value loader of the pgoutput decoder: psycopg's text loaders, canonical values.

:func:`psycopg_loader` builds a ``loader(type_oid, text) -> value`` whose results equal the
full-load reader's canonical values (:mod:`replikit.schema.types`); :func:`type_aliases` maps
user domains and enums to the built-in types they load as. psycopg is imported only when these
are called.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, cast

from replikit.endpoints.postgres._pgoutput import Loader

__all__ = ["ALIASES_SQL", "loader_for", "psycopg_loader", "type_aliases"]

# -- the default, psycopg-based value loader ------------------------------------------------
# psycopg loads these to replikit's canonical values; every other type comes out as its text
_CANONICAL = frozenset(
    [
        "bool",
        "bytea",
        "int2",
        "int4",
        "int8",
        "oid",
        "float4",
        "float8",
        "numeric",
        "date",
        "time",
        "timetz",
        "timestamp",
        "timestamptz",
        "uuid",
        "text",
        "varchar",
        "bpchar",
        "name",
        "char",
    ]
)
_DATETIME = ("date", "time", "timetz", "timestamp", "timestamptz")
_INT_OIDS = frozenset({20, 21, 23, 26})  # int8, int2, int4, oid: their text is int()'s
_FOR_TYPE = "for_type"  # psycopg_loader's per-type loaders (see loader_for)
_MONEY_OID = 790
_MONEY_JUNK = re.compile(r"[^0-9.\-]")

ALIASES_SQL = """\
SELECT t.oid::int8, t.typtype::text, t.typbasetype::int8, t.typelem::int8,
       e.typtype::text AS elem_typtype, e.typbasetype::int8 AS elem_base
FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE t.oid >= 16384 AND (t.typtype IN ('d', 'e') OR e.typtype IN ('d', 'e'))
"""
"""Rows for :func:`type_aliases`: the user domains and enums (and their arrays)."""


def type_aliases(rows: Iterable[Sequence[Any]]) -> dict[int, int]:
    """``{user type oid: built-in oid to load it as}`` from the rows of :data:`ALIASES_SQL`.

    A domain loads as its base type, an enum as ``text``; their arrays as arrays of those.
    (Domains over domains and over arrays resolve to ``text``.)
    """
    import psycopg

    types = psycopg.adapters.types
    out: dict[int, int] = {}
    for oid, typtype, base, _elem, elem_typtype, elem_base in rows:
        if typtype == "d":
            out[int(oid)] = int(base) if types.get(int(base)) is not None else 25
        elif typtype == "e":
            out[int(oid)] = 25
        else:  # array of a domain or an enum
            item = int(elem_base) if elem_typtype == "d" else 25
            info = types.get(item)
            out[int(oid)] = info.array_oid if info is not None and info.array_oid else 1009
    return out


def psycopg_loader(aliases: Mapping[int, int] | None = None) -> Loader:
    """The default ``loader(type_oid, text)``: psycopg's text loaders, canonical values.

    bool, integers, floats, numeric, bytea, uuid, date/time types and their arrays load as
    psycopg does; dates and timestamps Python cannot hold (infinity, BC, year > 9999,
    ``24:00:00``) stay the server's ISO text, as in the full-load reader; money loads as
    ``Decimal``; json, interval, ranges, network types and all other types stay text.
    ``aliases`` maps user type oids (domains, enums) to the built-in oid to load them as
    (see :func:`type_aliases`); unknown oids load as text.
    """
    import psycopg
    from psycopg.adapt import AdaptersMap, Transformer
    from psycopg.adapt import Loader as PgLoader
    from psycopg.pq import Format
    from psycopg.types.string import TextLoader

    adapters = AdaptersMap(psycopg.adapters)
    for info in psycopg.adapters.types:
        if info.name not in _CANONICAL and info.oid != _MONEY_OID:
            adapters.register_loader(info.oid, TextLoader)

    class _Fallback(PgLoader):
        fast: type[PgLoader]

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._fast = self.fast(oid, context)

        def load(self, data: Any) -> Any:
            try:
                return self._fast.load(data)
            except psycopg.DataError:
                return bytes(data).decode()

    class _MoneyLoader(PgLoader):
        def load(self, data: Any) -> Any:
            text = bytes(data).decode()
            neg = text.startswith("(") or "-" in text
            value = Decimal(_MONEY_JUNK.sub("", text).replace("-", ""))
            return -value if neg else value

    adapters.register_loader(_MONEY_OID, _MoneyLoader)

    class _InetLoader(PgLoader):
        # the full load reads ``inet::text``, which always shows the netmask
        def load(self, data: Any) -> Any:
            text = bytes(data).decode()
            if "/" in text:
                return text
            return text + ("/128" if ":" in text else "/32")

    adapters.register_loader("inet", _InetLoader)

    for name in _DATETIME:
        fast = psycopg.adapters.get_loader(psycopg.adapters.types[name].oid, Format.TEXT)
        assert fast is not None
        adapters.register_loader(name, type(f"{name}Fallback", (_Fallback,), {"fast": fast}))

    tx = Transformer(adapters)
    alias = dict(aliases or {})
    cache: dict[int, Callable[[bytes], Any]] = {}

    def load(type_oid: int, text: str) -> Any:
        fn = cache.get(type_oid)
        if fn is None:
            oid = alias.get(type_oid, type_oid)
            fn = (
                tx.get_loader(oid, Format.TEXT).load
                if adapters.get_loader(oid, Format.TEXT) is not None
                else _as_text
            )
            cache[type_oid] = fn
        return fn(text.encode())

    def for_type(type_oid: int) -> Callable[[str], Any]:
        if alias.get(type_oid, type_oid) in _INT_OIDS:
            return int  # what psycopg's integer loaders return, without the bytes round trip
        return functools.partial(load, type_oid)

    setattr(load, _FOR_TYPE, for_type)
    return load


def loader_for(loader: Loader, type_oid: int) -> Callable[[str], Any]:
    """``loader`` of one type, as ``text -> value`` (faster for :func:`psycopg_loader`'s)."""
    for_type = getattr(loader, _FOR_TYPE, None)
    if for_type is not None:
        return cast(Callable[[str], Any], for_type(type_oid))
    return functools.partial(loader, type_oid)


def _as_text(data: bytes) -> str:
    return data.decode()

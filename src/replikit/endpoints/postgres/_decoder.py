"""A sans-IO decoder of PostgreSQL's ``pgoutput`` logical replication messages (protocol 1).

Bytes in, replikit objects out; no sockets, no driver. Two layers:

* :class:`PgOutputDecoder` turns one pgoutput message (the payload of an ``XLogData`` frame,
  or the ``data`` column of ``pg_logical_slot_peek_binary_changes``) into an event object
  (:class:`Begin`, :class:`Relation`, :class:`Insert`, ...). It keeps the relation cache:
  ``Relation`` messages may arrive at any time and repeat, and each row change is resolved to
  the latest one for its relation oid.
* :class:`TransactionAssembler` turns the event stream into :class:`~replikit.changes.Transaction`
  objects, typing the text values with a pluggable ``loader(type_oid, text) -> value``.

Tuple values are ``None`` (SQL NULL), :data:`UNCHANGED` (an unchanged TOASTed value the server
did not send: it must never be written), ``str`` (text format) or ``bytes`` (binary format).

:func:`psycopg_loader` builds the default loader from psycopg's text loaders so decoded values
equal the full-load reader's canonical values (:mod:`replikit.schema.types`). It imports psycopg
only when called. The decoding session must use replikit's session settings (``TimeZone=UTC``,
``DateStyle=ISO``, ``IntervalStyle=iso_8601``, ``extra_float_digits=3``): pgoutput renders text
values with the GUCs of the backend that decodes them.

Malformed or truncated messages, unknown message types and changes of unknown relations raise
:class:`~replikit.errors.DecodeError` naming the message type, the byte offset and the relation.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from replikit.changes import Change, Op, Transaction
from replikit.errors import DecodeError
from replikit.positions import PgLsn
from replikit.schema.model import TableId

__all__ = [
    "ALIASES_SQL",
    "UNCHANGED",
    "Begin",
    "Column",
    "Commit",
    "Delete",
    "Event",
    "Insert",
    "LogicalMessage",
    "Origin",
    "PgOutputDecoder",
    "Relation",
    "TransactionAssembler",
    "Truncate",
    "TypeMessage",
    "Update",
    "Value",
    "assemble",
    "psycopg_loader",
    "type_aliases",
]

PG_EPOCH: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class _Unchanged:
    """The type of :data:`UNCHANGED`."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()
"""An unchanged TOASTed value ('u'): the server did not send it; never write it."""

Value = str | bytes | _Unchanged | None
Loader = Callable[[int, str], Any]
BinaryLoader = Callable[[int, bytes], Any]


# -- events ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Column:
    """A column of a :class:`Relation` message. ``key`` is pgoutput's replica-identity flag."""

    name: str
    type_oid: int
    typmod: int
    key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    """'R': a relation's shape. ``replica_identity`` is ``d``, ``n``, ``f`` or ``i``."""

    oid: int
    schema: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]

    @property
    def table(self) -> TableId:
        return TableId(self.schema, self.name)


@dataclass(frozen=True, slots=True)
class Begin:
    """'B': a transaction starts. ``final_lsn`` is the LSN of its commit record."""

    final_lsn: int
    commit_ts: dt.datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    """'C': a transaction ends; resume from ``end_lsn`` to get the next one."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: dt.datetime


@dataclass(frozen=True, slots=True)
class Insert:
    """'I': a new row (tuple values in the relation's column order)."""

    relation: Relation
    new: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Update:
    """'U': ``old`` is the key-only ('K') or full ('O') old row, or ``None`` when not sent."""

    relation: Relation
    old_kind: Literal["K", "O"] | None
    old: tuple[Value, ...] | None
    new: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    """'D': ``old`` is the key-only ('K') or full ('O') old row."""

    relation: Relation
    old_kind: Literal["K", "O"]
    old: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    """'T': the truncated relations, with the ``CASCADE`` / ``RESTART IDENTITY`` flags."""

    relations: tuple[Relation, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """'M': a ``pg_logical_emit_message`` (only sent with the ``messages`` option)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


@dataclass(frozen=True, slots=True)
class TypeMessage:
    """'Y': the name of a non-built-in type used by a following Relation."""

    oid: int
    schema: str
    name: str


@dataclass(frozen=True, slots=True)
class Origin:
    """'O': the transaction came from another node (replication origin)."""

    lsn: int
    name: str


Event = (
    Begin
    | Commit
    | Relation
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
    | TypeMessage
    | Origin
)

_NAMES = {
    ord("B"): "Begin",
    ord("C"): "Commit",
    ord("R"): "Relation",
    ord("I"): "Insert",
    ord("U"): "Update",
    ord("D"): "Delete",
    ord("T"): "Truncate",
    ord("M"): "Message",
    ord("Y"): "Type",
    ord("O"): "Origin",
}

_U8 = struct.Struct("!B")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_COLTYPE = struct.Struct("!Ii")
_TRUNC = struct.Struct("!IB")
_MSG = struct.Struct("!BQ")


def _timestamp(us: int) -> dt.datetime:
    try:
        return PG_EPOCH + dt.timedelta(microseconds=us)
    except OverflowError:
        raise ValueError(f"timestamp {us} µs since 2000-01-01 is out of range") from None


# -- the decoder ----------------------------------------------------------------------------
class _Reader:
    """A cursor over one message; every read raises ``_Short`` / ``ValueError`` on bad data."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 1

    def unpack(self, s: struct.Struct) -> tuple[Any, ...]:
        end = self.pos + s.size
        if end > len(self.buf):
            raise ValueError(f"truncated: needs {s.size} more bytes")
        out = s.unpack_from(self.buf, self.pos)
        self.pos = end
        return out

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise ValueError("truncated: needs 1 more byte")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def cstr(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise ValueError("unterminated string")
        text = self.buf[self.pos : end].decode()
        self.pos = end + 1
        return text

    def take(self, n: int) -> bytes:
        if n < 0:
            raise ValueError(f"negative length {n}")
        end = self.pos + n
        if end > len(self.buf):
            raise ValueError(f"truncated: value of {n} bytes")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def row(self, ncols: int) -> tuple[Value, ...]:
        start = self.pos
        (n,) = self.unpack(_I16)
        if n != ncols:
            self.pos = start
            raise ValueError(f"tuple has {n} columns, the relation {ncols}")
        out: list[Value] = []
        for _ in range(n):
            kind = self.byte()
            if kind == 0x74:  # 't'
                (ln,) = self.unpack(_I32)
                out.append(self.take(ln).decode())
            elif kind == 0x6E:  # 'n'
                out.append(None)
            elif kind == 0x75:  # 'u'
                out.append(UNCHANGED)
            elif kind == 0x62:  # 'b'
                (ln,) = self.unpack(_I32)
                out.append(self.take(ln))
            else:
                self.pos -= 1
                raise ValueError(f"unknown tuple value kind {kind!r}")
        return tuple(out)


class PgOutputDecoder:
    """Decodes pgoutput protocol-1 messages one at a time, keeping the relation cache."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self.types: dict[int, TypeMessage] = {}

    def decode(self, message: bytes | bytearray | memoryview) -> Event:
        """One message -> one event; :class:`DecodeError` when it is not valid pgoutput."""
        buf = bytes(message)
        if not buf:
            raise DecodeError("empty pgoutput message")
        kind = buf[0]
        name = _NAMES.get(kind)
        if name is None:
            raise DecodeError(f"unknown pgoutput message type {buf[:1]!r} at offset 0")
        r = _Reader(buf)
        oid: int | None = None
        try:
            event: Event
            if kind == 0x42:  # B
                lsn, ts, xid = r.unpack(_BEGIN)
                event = Begin(lsn, _timestamp(ts), xid)
            elif kind == 0x43:  # C
                flags, lsn, end, ts = r.unpack(_COMMIT)
                event = Commit(flags, lsn, end, _timestamp(ts))
            elif kind == 0x52:  # R
                (oid,) = r.unpack(_U32)
                event = self._relation(r, oid)
            elif kind in (0x49, 0x55, 0x44):  # I U D
                (oid,) = r.unpack(_U32)
                event = self._change(r, kind, self._rel(oid))
            elif kind == 0x54:  # T
                n, opts = r.unpack(_TRUNC)
                if n < 0 or n * 4 > len(buf) - r.pos:
                    raise ValueError(f"truncated: {n} relation oids")
                rels = []
                for _ in range(n):
                    (oid,) = r.unpack(_U32)
                    rels.append(self._rel(oid))
                oid = None
                event = Truncate(tuple(rels), bool(opts & 1), bool(opts & 2))
            elif kind == 0x4D:  # M
                flags, lsn = r.unpack(_MSG)
                prefix = r.cstr()
                (ln,) = r.unpack(_I32)
                event = LogicalMessage(bool(flags & 1), lsn, prefix, r.take(ln))
            elif kind == 0x59:  # Y
                (oid,) = r.unpack(_U32)
                event = TypeMessage(oid, r.cstr(), r.cstr())
                self.types[oid] = event
                oid = None
            else:  # O
                (lsn,) = r.unpack(_U64)
                event = Origin(lsn, r.cstr())
            if r.pos != len(buf):
                raise ValueError(f"{len(buf) - r.pos} trailing bytes")
        except DecodeError:
            raise
        except (ValueError, UnicodeDecodeError, struct.error) as exc:
            where = f" of relation oid {oid}" if oid is not None else ""
            raise DecodeError(
                f"malformed pgoutput {name} message{where} at offset {r.pos}: {exc}"
            ) from None
        return event

    def _rel(self, oid: int) -> Relation:
        try:
            return self.relations[oid]
        except KeyError:
            raise DecodeError(
                f"pgoutput change for unknown relation oid {oid}: no Relation message seen"
            ) from None

    def _relation(self, r: _Reader, oid: int) -> Relation:
        schema = r.cstr() or "pg_catalog"
        name = r.cstr()
        ident = chr(r.byte())
        if ident not in "dnfi":
            raise ValueError(f"unknown replica identity {ident!r}")
        (n,) = r.unpack(_I16)
        if n < 0:
            raise ValueError(f"negative column count {n}")
        cols = []
        for _ in range(n):
            flags = r.byte()
            cname = r.cstr()
            typ, typmod = r.unpack(_COLTYPE)
            cols.append(Column(cname, typ, typmod, bool(flags & 1)))
        rel = Relation(oid, schema, name, ident, tuple(cols))
        self.relations[oid] = rel
        return rel

    def _change(self, r: _Reader, kind: int, rel: Relation) -> Event:
        ncols = len(rel.columns)
        tag = r.byte()
        if kind == 0x49:
            if tag != 0x4E:
                raise ValueError(f"expected 'N' before the new tuple, got {tag!r}")
            return Insert(rel, r.row(ncols))
        old_kind: Literal["K", "O"] | None = None
        old = None
        if tag in (0x4B, 0x4F):
            old_kind = "K" if tag == 0x4B else "O"
            old = r.row(ncols)
            if kind == 0x44:
                return Delete(rel, old_kind, old)
            tag = r.byte()
        elif kind == 0x44:
            raise ValueError(f"expected 'K' or 'O' before the old tuple, got {tag!r}")
        if tag != 0x4E:
            raise ValueError(f"expected 'N' before the new tuple, got {tag!r}")
        return Update(rel, old_kind, old, r.row(ncols))

    def decode_all(self, messages: Iterable[bytes | bytearray | memoryview]) -> Iterator[Event]:
        """:meth:`decode` each message in turn."""
        for m in messages:
            yield self.decode(m)


# -- transactions ---------------------------------------------------------------------------
def _identity(_oid: int, text: str) -> Any:
    return text


def _raw(_oid: int, data: bytes) -> Any:
    return data


class TransactionAssembler:
    """Turns decoded events into :class:`Transaction` objects (Begin ... changes ... Commit).

    ``primary_keys`` maps tables to their real key columns; without an entry, the columns
    pgoutput flags as replica identity are the key (with ``REPLICA IDENTITY FULL`` that is
    every column, so pass the primary key for such tables). ``loader(type_oid, text)`` types
    text values (default: keep the text); ``binary_loader(type_oid, data)`` types binary ones.
    Logical messages, Type and Origin events are accepted and not reported.
    """

    def __init__(
        self,
        *,
        primary_keys: Mapping[TableId, Sequence[str]] | None = None,
        loader: Loader | None = None,
        binary_loader: BinaryLoader | None = None,
    ) -> None:
        self.primary_keys = dict(primary_keys or {})
        self.loader = loader or _identity
        self.binary_loader = binary_loader or _raw
        self._begin: Begin | None = None
        self._pending: list[Insert | Update | Delete | Truncate] = []

    @property
    def in_transaction(self) -> bool:
        return self._begin is not None

    def feed(self, event: Event) -> Transaction | None:
        """Take one event; return the finished transaction at its Commit, else ``None``."""
        if isinstance(event, Begin):
            if self._begin is not None:
                raise DecodeError(
                    f"pgoutput Begin of xid {event.xid} inside transaction {self._begin.xid}"
                )
            self._begin = event
            self._pending = []
            return None
        if isinstance(event, Insert | Update | Delete | Truncate):
            if self._begin is None:
                raise DecodeError(f"pgoutput {type(event).__name__} outside a transaction")
            self._pending.append(event)
            return None
        if isinstance(event, Commit):
            begin = self._begin
            if begin is None:
                raise DecodeError("pgoutput Commit without a Begin")
            if begin.final_lsn != event.commit_lsn:
                raise DecodeError(
                    f"pgoutput Commit at {PgLsn(event.commit_lsn)} does not match its Begin "
                    f"(final lsn {PgLsn(begin.final_lsn)})"
                )
            pos = PgLsn(event.end_lsn)
            changes: list[Change] = []
            for ev in self._pending:
                changes.extend(self._changes(ev, pos, event.commit_ts, begin.xid))
            self._begin = None
            self._pending = []
            return Transaction(tuple(changes), pos, event.commit_ts, begin.xid)
        return None

    def feed_all(self, events: Iterable[Event]) -> Iterator[Transaction]:
        """:meth:`feed` each event, yielding transactions as they complete."""
        for ev in events:
            tx = self.feed(ev)
            if tx is not None:
                yield tx

    def _value(self, col: Column, value: str | bytes | None) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            return self.loader(col.type_oid, value)
        return self.binary_loader(col.type_oid, value)

    def _row(self, rel: Relation, values: Sequence[Value], only: Iterable[int]) -> dict[str, Any]:
        cols = rel.columns
        out = {}
        for i in only:
            v = values[i]
            if not isinstance(v, _Unchanged):
                out[cols[i].name] = self._value(cols[i], v)
        return out

    def _key_indexes(self, rel: Relation) -> list[int]:
        pk = self.primary_keys.get(rel.table)
        if pk is None:
            return [i for i, c in enumerate(rel.columns) if c.key]
        where = {c.name: i for i, c in enumerate(rel.columns)}
        try:
            return [where[name] for name in pk]
        except KeyError as exc:
            raise DecodeError(
                f"key column {exc.args[0]!r} of {rel.table} is not in its pgoutput Relation "
                f"(oid {rel.oid})"
            ) from None

    def _changes(
        self,
        ev: Insert | Update | Delete | Truncate,
        pos: PgLsn,
        ts: dt.datetime,
        xid: int,
    ) -> Iterator[Change]:
        if isinstance(ev, Truncate):
            for rel in ev.relations:
                yield Change(Op.TRUNCATE, rel.table, position=pos, commit_ts=ts, txid=xid)
            return
        rel = ev.relation
        everything = range(len(rel.columns))
        keys = self._key_indexes(rel)
        old = ev.old if isinstance(ev, Update | Delete) else None
        old_kind = ev.old_kind if isinstance(ev, Update | Delete) else None
        new = ev.new if isinstance(ev, Insert | Update) else None
        before = after = None
        if old is not None:
            ident = [i for i, c in enumerate(rel.columns) if c.key]
            before = self._row(rel, old, everything if old_kind == "O" else ident)
        if new is not None:
            after = self._row(rel, new, everything)
            if before is not None and old_kind == "O":
                for name, v in before.items():
                    after.setdefault(name, v)
        key: dict[str, Any] = {}
        for i in keys:
            name = rel.columns[i].name
            if before is not None and name in before:
                key[name] = before[name]
            elif after is not None and name in after:
                key[name] = after[name]
        if after is not None:
            after = {c.name: after[c.name] for c in rel.columns if c.name in after}
        op = Op.INSERT if isinstance(ev, Insert) else Op.UPDATE if new is not None else Op.DELETE
        yield Change(op, rel.table, key, before, after, pos, ts, xid)


def assemble(
    messages: Iterable[bytes | bytearray | memoryview],
    *,
    decoder: PgOutputDecoder | None = None,
    assembler: TransactionAssembler | None = None,
) -> Iterator[Transaction]:
    """Decode and assemble a stream of pgoutput messages into transactions."""
    dec = decoder or PgOutputDecoder()
    asm = assembler or TransactionAssembler()
    return asm.feed_all(dec.decode_all(messages))


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

    return load


def _as_text(data: bytes) -> str:
    return data.decode()

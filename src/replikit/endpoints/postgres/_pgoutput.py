"""The pgoutput (protocol 1) message layer: bytes of one message in, one event object out.

:class:`PgOutputDecoder` turns one pgoutput message (the payload of an ``XLogData`` frame, or
the ``data`` column of ``pg_logical_slot_peek_binary_changes``) into an event object
(:class:`Begin`, :class:`Relation`, :class:`Insert`, ...). It keeps the relation cache:
``Relation`` messages may arrive at any time and repeat, and each row change is resolved to the
latest one for its relation oid. Sans-IO: no sockets, no driver.

Tuple values are ``None`` (SQL NULL), :data:`UNCHANGED` (an unchanged TOASTed value the server
did not send: it must never be written), ``str`` (text format) or ``bytes`` (binary format).

Malformed or truncated messages, unknown message types and changes of unknown relations raise
:class:`~replikit.errors.DecodeError` naming the message type, the byte offset and the relation.
"""

from __future__ import annotations

import datetime as dt
import functools
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from replikit.errors import DecodeError
from replikit.schema.model import TableId

__all__ = [
    "PG_EPOCH",
    "TIMESTAMP_RANGE",
    "UNCHANGED",
    "Begin",
    "BinaryLoader",
    "Column",
    "Commit",
    "Delete",
    "Event",
    "Insert",
    "Loader",
    "LogicalMessage",
    "Origin",
    "PgOutputDecoder",
    "Relation",
    "RowParser",
    "Truncate",
    "TypeMessage",
    "Update",
    "Value",
    "row_parser",
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
    """'I': a new row (tuple values in the relation's column order). ``plain``: every value
    of ``new`` is known to be text or NULL (``False``: not known)."""

    relation: Relation
    new: tuple[Value, ...]
    plain: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Update:
    """'U': ``old`` is the key-only ('K') or full ('O') old row, or ``None`` when not sent;
    ``plain`` as for :class:`Insert`."""

    relation: Relation
    old_kind: Literal["K", "O"] | None
    old: tuple[Value, ...] | None
    new: tuple[Value, ...]
    plain: bool = field(default=False, compare=False)


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


def _us_since_epoch(when: dt.datetime) -> int:
    return (when - PG_EPOCH) // dt.timedelta(microseconds=1)


#: the µs since 2000-01-01 that :func:`_timestamp` turns into a datetime (else it refuses)
TIMESTAMP_RANGE: Final = (
    _us_since_epoch(dt.datetime.min.replace(tzinfo=dt.UTC)),
    _us_since_epoch(dt.datetime.max.replace(tzinfo=dt.UTC)),
)


def _timestamp(us: int) -> dt.datetime:
    try:
        return PG_EPOCH + dt.timedelta(0, 0, us)  # positional: a third faster
    except OverflowError:
        raise ValueError(f"timestamp {us} µs since 2000-01-01 is out of range") from None


# -- the decoder ----------------------------------------------------------------------------
RowParser = Callable[[bytes, int], tuple[tuple[Value, ...], int, bool]]


def _other_value(buf: bytes, pos: int, kind: int) -> tuple[Value, int]:
    """A value of kind ``u`` or ``b`` at ``pos`` and the offset after it."""
    if kind == 0x75:  # 'u'
        return UNCHANGED, pos + 1
    if kind == 0x62:  # 'b'
        end = pos + 5 + _U32.unpack_from(buf, pos + 1)[0]
        if end > len(buf):
            raise ValueError
        return buf[pos + 5 : end], end
    raise ValueError


@functools.cache
def row_parser(ncols: int) -> RowParser:
    """``parse(buf, pos)``: the tuple of ``ncols`` values at ``pos``, the offset after it and
    whether all its values are text or NULL; any error means "use the careful path".

    Generated per column count, one block of code per column (no loop, no list): the value
    parsing is the reader's largest cost. Lengths are read unsigned, so a bad one runs past
    the end of the message, where the next read or the final check fails.
    """
    lines = [
        "def parse(buf, pos):",
        f"    if _I16(buf, pos)[0] != {ncols}:",
        "        raise ValueError",
        "    pos += 2",
        "    plain = True",
    ]
    for i in range(ncols):
        lines += [
            "    kind = buf[pos]",
            "    if kind == 0x74:",
            "        start = pos + 5",
            "        pos = start + _U32(buf, pos + 1)[0]",
            f"        v{i} = buf[start:pos].decode()",
            "    elif kind == 0x6E:",
            f"        v{i} = None",
            "        pos += 1",
            "    else:",
            f"        v{i}, pos = _other(buf, pos, kind)",
            "        plain = False",
        ]
    values = "".join(f"v{i}, " for i in range(ncols))
    lines += ["    if pos > len(buf):", "        raise ValueError"]
    lines.append(f"    return ({values}), pos, plain")
    scope: dict[str, Any] = {
        "_I16": _I16.unpack_from,
        "_U32": _U32.unpack_from,
        "_other": _other_value,
    }
    exec("\n".join(lines), scope)  # generated from ncols alone
    return cast(RowParser, scope["parse"])


def _fast_row(buf: bytes, pos: int, ncols: int) -> tuple[tuple[Value, ...], int, bool]:
    """:func:`row_parser` of ``ncols``, applied."""
    return row_parser(ncols)(buf, pos)


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
        self._ts = (0, PG_EPOCH)

    def decode(self, message: bytes | bytearray | memoryview) -> Event:
        """One message -> one event; :class:`DecodeError` when it is not valid pgoutput."""
        buf = message if message.__class__ is bytes else bytes(message)
        try:
            event = self._fast(buf)
        except (ValueError, IndexError, KeyError, UnicodeDecodeError, struct.error, OverflowError):
            event = None  # the careful path below says what is wrong
        if event is not None:
            return event
        return self._decode(buf)

    def timestamp(self, us: int) -> dt.datetime:
        """``us`` µs since 2000-01-01 as a UTC datetime (the last one is remembered)."""
        # Begin and Commit carry the same timestamp: convert it once
        last, value = self._ts
        if us != last:
            value = _timestamp(us)
            self._ts = (us, value)
        return value

    def _fast(self, buf: bytes) -> Event | None:
        """The common messages of well-formed streams, without the careful checks."""
        kind, size = buf[0], len(buf)
        if kind == 0x42 and size == 21:
            lsn, ts, xid = _BEGIN.unpack_from(buf, 1)
            return Begin(lsn, self.timestamp(ts), xid)
        if kind == 0x43 and size == 26:
            flags, lsn, end, ts = _COMMIT.unpack_from(buf, 1)
            return Commit(flags, lsn, end, self.timestamp(ts))
        if kind != 0x49 and kind != 0x55 and kind != 0x44:
            return None
        rel = self.relations[_U32.unpack_from(buf, 1)[0]]
        ncols = len(rel.columns)
        tag = buf[5]
        if kind == 0x49:
            if tag != 0x4E:
                return None
            new, pos, plain = _fast_row(buf, 6, ncols)
            return Insert(rel, new, plain) if pos == size else None
        old_kind: Literal["K", "O"] | None = None
        old = None
        pos = 6
        if tag == 0x4B or tag == 0x4F:
            old_kind = "K" if tag == 0x4B else "O"
            old, pos, _ = _fast_row(buf, 6, ncols)
            if kind == 0x44:
                return Delete(rel, old_kind, old) if pos == size else None
            tag = buf[pos]
            pos += 1
        if kind == 0x44 or tag != 0x4E:
            return None
        new, pos, plain = _fast_row(buf, pos, ncols)
        return Update(rel, old_kind, old, new, plain) if pos == size else None

    def _decode(self, buf: bytes) -> Event:
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

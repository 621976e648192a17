"""A sans-IO decoder of PostgreSQL's ``pgoutput`` logical replication messages (protocol 1).

Bytes in, replikit objects out; no sockets, no driver. Two layers:

* :class:`PgOutputDecoder` (:mod:`._pgoutput`) turns one pgoutput message (the payload of an
  ``XLogData`` frame, or the ``data`` column of ``pg_logical_slot_peek_binary_changes``) into
  an event object (:class:`Begin`, :class:`Relation`, :class:`Insert`, ...). It keeps the
  relation cache: ``Relation`` messages may arrive at any time and repeat, and each row change
  is resolved to the latest one for its relation oid.
* :class:`TransactionAssembler` turns the event stream into :class:`~replikit.changes.Transaction`
  objects, typing the text values with a pluggable ``loader(type_oid, text) -> value``.

Tuple values are ``None`` (SQL NULL), :data:`UNCHANGED` (an unchanged TOASTed value the server
did not send: it must never be written), ``str`` (text format) or ``bytes`` (binary format).

:func:`psycopg_loader` (:mod:`._pgload`) builds the default loader from psycopg's text loaders
so decoded values equal the full-load reader's canonical values (:mod:`replikit.schema.types`).
It imports psycopg only when called. The decoding session must use replikit's session settings
(``TimeZone=UTC``, ``DateStyle=ISO``, ``IntervalStyle=iso_8601``, ``extra_float_digits=3``):
pgoutput renders text values with the GUCs of the backend that decodes them.

Malformed or truncated messages, unknown message types and changes of unknown relations raise
:class:`~replikit.errors.DecodeError` naming the message type, the byte offset and the relation.

Memory: the assembler holds the rows of the one transaction in progress in a
:class:`~replikit.pipeline.spill.TransactionBuffer`, which moves them to a temporary file once
they pass ``spill_bytes`` (estimated): a transaction of any size is read in bounded memory.
"""

from __future__ import annotations

import struct
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from replikit.changes import (
    ImageLayout,
    Op,
    SchemaChange,
    TextImage,
    Transaction,
    slots_constructor,
)
from replikit.endpoints.postgres._pgload import (
    ALIASES_SQL,
    loader_for,
    psycopg_loader,
    type_aliases,
)
from replikit.endpoints.postgres._pgoutput import (
    _BEGIN,
    _COMMIT,
    _U32,
    TIMESTAMP_RANGE,
    UNCHANGED,
    Begin,
    BinaryLoader,
    Column,
    Commit,
    Delete,
    Event,
    Insert,
    Loader,
    LogicalMessage,
    Origin,
    PgOutputDecoder,
    Relation,
    Truncate,
    TypeMessage,
    Update,
    Value,
    _timestamp,
    row_parser,
)
from replikit.errors import DecodeError
from replikit.pipeline.spill import DEFAULT_SPILL_BYTES, Row, TransactionBuffer
from replikit.positions import PgLsn
from replikit.schema.model import TableId

__all__ = [
    "ALIASES_SQL",
    "MONEY_OIDS",
    "SLOW",
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


def _identity(_oid: int, text: str) -> Any:
    return text


def _raw(_oid: int, data: bytes) -> Any:
    return data


#: the text form of pgoutput values: PostgreSQL's output functions under replikit's session
#: settings (a PostgreSQL writer may pass them on to columns of the same type)
TEXT_FORMAT = "postgresql"
#: money and money[]: their text follows the server's lc_monetary, so it never passes on as is
MONEY_OIDS = frozenset({790, 791})
#: :meth:`TransactionAssembler.feed_message`: "not handled here, decode and feed this one"
SLOW: Final = object()
_ROW_BYTES = 200 + 64 + 72 + 64  # a Change, a one-column key image, an image's own size
_PARSE_ERRORS = (ValueError, IndexError, KeyError, UnicodeDecodeError, struct.error, OverflowError)
_INSERT, _UPDATE, _DELETE = Op.INSERT, Op.UPDATE, Op.DELETE
_new_transaction = slots_constructor(Transaction)  # Transaction(...) at half the cost
_TS_FIRST, _TS_LAST = TIMESTAMP_RANGE


class _Plan:
    """What the assembler needs about one Relation message, computed once per message."""

    __slots__ = (
        "everything",
        "ident",
        "image_bytes",
        "kept",
        "key_at",
        "key_load",
        "key_name",
        "key_names",
        "keys",
        "layout",
        "names",
        "oids",
        "parse",
        "rel",
        "table",
        "untyped",
    )

    def __init__(
        self, rel: Relation, keys: tuple[int, ...], loader: Loader, opaque: Container[int]
    ) -> None:
        self.rel = rel
        self.table = rel.table
        self.names = tuple(c.name for c in rel.columns)
        self.oids = tuple(c.type_oid for c in rel.columns)
        self.ident = tuple(i for i, c in enumerate(rel.columns) if c.key)
        self.everything = tuple(range(len(rel.columns)))
        self.keys = keys
        self.key_names = tuple(self.names[i] for i in keys)
        self.kept = True  # changes of this relation are kept (the assembler's tables)
        self.image_bytes = 72 * len(self.names)  # an image's entries (spill's estimate)
        self.parse = row_parser(len(self.names))
        loaders = [loader_for(loader, o) for o in self.oids]
        hidden = frozenset(i for i, o in enumerate(self.oids) if o in opaque)
        self.layout = ImageLayout(self.names, loaders, TEXT_FORMAT, hidden)
        # a key of one column (the common case) is typed as the row arrives, into its image
        self.key_at = keys[0] if len(keys) == 1 else -1
        self.key_name = self.names[keys[0]] if len(keys) == 1 else ""
        self.key_load = loaders[keys[0]] if len(keys) == 1 else None
        self.untyped = [TextImage.UNTYPED] * len(self.names)


class TransactionAssembler:
    """Turns decoded events into :class:`Transaction` objects (Begin ... changes ... Commit).

    ``primary_keys`` maps tables to their real key columns. The key of a change is that
    primary key when the relation's replica identity is ``FULL`` (pgoutput then flags every
    column as key) or when pgoutput flags every primary-key column; otherwise (no entry, or a
    ``USING INDEX`` identity on other columns, or a primary key that changed since) it is the
    columns pgoutput flags as replica identity. ``loader(type_oid, text)`` types text values
    (default: keep the text); ``binary_loader(type_oid, data)`` types binary ones. Logical
    messages, Type and Origin events are accepted and not reported. Schema changes added with
    :meth:`add_schema_change` while a transaction is open are attached to it.

    ``tables``: only changes of these tables are kept (``None``: all). Rows are typed as they
    arrive and held in a :class:`~replikit.pipeline.spill.TransactionBuffer` that spills to a
    temporary file past ``spill_bytes`` (estimated), so a huge transaction is read in bounded
    memory and comes out with :class:`~replikit.pipeline.spill.SpilledChanges`.

    An after-image whose values are all text or NULL (no unchanged TOAST value) is a
    :class:`~replikit.changes.TextImage`: its values are typed with ``loader`` only when read,
    and a PostgreSQL writer may pass the text on unchanged, except for the columns of the
    ``opaque_types`` oids (default: money, whose text follows ``lc_monetary``).
    """

    def __init__(
        self,
        *,
        primary_keys: Mapping[TableId, Sequence[str]] | None = None,
        loader: Loader | None = None,
        binary_loader: BinaryLoader | None = None,
        tables: Container[TableId] | None = None,
        spill_bytes: int = DEFAULT_SPILL_BYTES,
        opaque_types: Container[int] = MONEY_OIDS,
    ) -> None:
        self.opaque_types = opaque_types
        self.primary_keys = dict(primary_keys or {})
        self._loader = loader or _identity
        self.binary_loader = binary_loader or _raw
        self.tables = tables
        self._begin: tuple[int, int] | None = None  # the open transaction's (final lsn, xid)
        self._buffer = TransactionBuffer(spill_bytes)
        self._schema: list[SchemaChange] = []
        self._plans: dict[int, _Plan] = {}

    @property
    def loader(self) -> Loader:
        """Types text values: ``loader(type_oid, text) -> value``."""
        return self._loader

    @loader.setter
    def loader(self, loader: Loader) -> None:
        self._loader = loader
        self._plans.clear()  # their images' layouts hold the old one

    @property
    def in_transaction(self) -> bool:
        return self._begin is not None

    def set_primary_key(self, table: TableId, columns: Sequence[str] | None) -> None:
        """Use ``columns`` as ``table``'s key from now on (``None``: pgoutput's key flags)."""
        if columns is None:
            self.primary_keys.pop(table, None)
        else:
            self.primary_keys[table] = tuple(columns)
        self._plans.clear()

    def reset(self) -> None:
        """Forget a transaction in progress (its stream broke off; it will be sent again)."""
        self._begin = None
        self._buffer.reset()
        self._schema = []

    def add_schema_change(self, change: SchemaChange) -> None:
        """Attach ``change`` to the transaction in progress."""
        if self._begin is None:
            raise DecodeError(f"schema change of {change.table} outside a transaction")
        self._schema.append(change)

    def feed(self, event: Event) -> Transaction | None:
        """Take one event; return the finished transaction at its Commit, else ``None``."""
        cls = event.__class__
        if cls is Insert or cls is Update or cls is Delete or cls is Truncate:
            if self._begin is None:
                raise DecodeError(f"pgoutput {cls.__name__} outside a transaction")
            self._rows(event, self._buffer.rows)  # type: ignore[arg-type]
            self._buffer.check()
            return None
        if isinstance(event, Begin):
            if self._begin is not None:
                raise DecodeError(
                    f"pgoutput Begin of xid {event.xid} inside transaction {self._begin[1]}"
                )
            self._begin = (event.final_lsn, event.xid)
            self._buffer.reset()
            self._schema = []
            return None
        if isinstance(event, Commit):
            return self._commit(event)
        return None

    def _commit(self, event: Commit) -> Transaction:
        begin = self._begin
        if begin is None:
            raise DecodeError("pgoutput Commit without a Begin")
        if begin[0] != event.commit_lsn:
            raise DecodeError(
                f"pgoutput Commit at {PgLsn(event.commit_lsn)} does not match its Begin "
                f"(final lsn {PgLsn(begin[0])})"
            )
        return self._finish(event.end_lsn, event.commit_ts, begin[1])

    def _finish(self, end_lsn: int, commit_ts: Any, xid: int) -> Transaction:
        pos = PgLsn(end_lsn)
        changes = self._buffer.finish(pos, commit_ts, xid)
        schema = tuple(self._schema) if self._schema else ()
        size = self._buffer.finished_bytes
        self._begin = None
        if schema:
            self._schema = []
        return _new_transaction(changes, pos, commit_ts, xid, schema, size)

    def feed_message(self, message: bytes, decoder: PgOutputDecoder) -> Any:
        """:meth:`feed` of ``decoder.decode(message)`` for the common messages, straight from
        their bytes: Begin, Commit, and Insert / Update / Delete of a relation ``decoder``
        knows. Returns what :meth:`feed` would (a :class:`Transaction` or ``None``), or
        :data:`SLOW` for any other message, and for anything unexpected or malformed, having
        done nothing: the caller then decodes and feeds it (which also reports errors)."""
        size = len(message)
        begin = self._begin
        try:
            kind = message[0]
            if kind == 0x49 or kind == 0x55 or kind == 0x44:  # I U D
                if begin is None:
                    return SLOW
                rel = decoder.relations[_U32.unpack_from(message, 1)[0]]
                plan = self._plans.get(rel.oid)
                if plan is None or plan.rel is not rel:
                    return SLOW  # the first change since its Relation: plan it there
                if not plan.kept:
                    return None
                tag = message[5]
                old_kind: Any = None
                old = None
                if kind == 0x49:
                    if tag != 0x4E:
                        return SLOW
                    op = _INSERT
                    new, pos, plain = plan.parse(message, 6)
                elif kind == 0x55:
                    op = _UPDATE
                    pos = 6
                    if tag == 0x4B or tag == 0x4F:
                        old_kind = "K" if tag == 0x4B else "O"
                        old, pos, _ = plan.parse(message, 6)
                        tag = message[pos]
                        pos += 1
                    if tag != 0x4E:
                        return SLOW
                    new, pos, plain = plan.parse(message, pos)
                else:
                    if tag != 0x4B and tag != 0x4F:
                        return SLOW
                    op = _DELETE
                    old_kind = "K" if tag == 0x4B else "O"
                    old, pos, _ = plan.parse(message, 6)
                    new, plain = None, False
                if pos != size:
                    return SLOW
            elif kind == 0x42:  # B
                if size != 21 or begin is not None:
                    return SLOW
                final_lsn, ts, xid = _BEGIN.unpack_from(message, 1)
                if not _TS_FIRST <= ts <= _TS_LAST:
                    return SLOW  # a time the careful path refuses (the Commit has its own)
                # a transaction ended (its rows went with it) or the assembler was reset:
                # the buffer and the schema changes are empty
                self._begin = (final_lsn, xid)
                return None
            elif kind == 0x43:  # C
                if size != 26 or begin is None:
                    return SLOW
                _flags, lsn, end, ts = _COMMIT.unpack_from(message, 1)
                if lsn != begin[0]:
                    return SLOW
                commit_ts = _timestamp(ts)
            else:
                return SLOW
        except _PARSE_ERRORS:
            return SLOW
        if kind == 0x43:
            assert begin is not None
            return self._finish(end, commit_ts, begin[1])
        assert plan is not None
        buffer = self._buffer
        if old is None and plain and plan.key_at >= 0:
            # the common case: a row of text or NULL values and a key of one column (typed
            # now, into the image; the rest when a transform or a writer asks, and a
            # PostgreSQL writer may pass the text on)
            text: Any = new[plan.key_at]  # type: ignore[index]
            key = None if text is None else plan.key_load(text)  # type: ignore[misc]
            typed = plan.untyped.copy()
            typed[plan.key_at] = key
            after = TextImage(plan.layout, new, typed)  # type: ignore[arg-type]
            buffer.rows.append((op, plan.table, {plan.key_name: key}, None, after))
        else:
            self._change(plan, op, old_kind, old, new, plain)
        # the row's estimated size, as spill's estimate_size would put it, from the message's
        # (its values' text plus 5 bytes a value): a change, a key image and one or two images
        if len(buffer.rows) >= buffer.check_at:
            buffer.check(_ROW_BYTES + plan.image_bytes + size)
        return None

    def feed_all(self, events: Iterable[Event]) -> Iterator[Transaction]:
        """:meth:`feed` each event, yielding transactions as they complete."""
        for ev in events:
            tx = self.feed(ev)
            if tx is not None:
                yield tx

    # -- rows -----------------------------------------------------------------------------
    def _plan(self, rel: Relation) -> _Plan:
        plan = self._plans.get(rel.oid)
        if plan is None or plan.rel is not rel:
            plan = _Plan(rel, self._key_indexes(rel), self._loader, self.opaque_types)
            plan.kept = self.tables is None or rel.table in self.tables
            self._plans[rel.oid] = plan
        return plan

    def _key_indexes(self, rel: Relation) -> tuple[int, ...]:
        flagged = tuple(i for i, c in enumerate(rel.columns) if c.key)
        pk = self.primary_keys.get(rel.table)
        if pk is None:
            return flagged
        where = {c.name: i for i, c in enumerate(rel.columns)}
        try:
            keys = tuple(where[name] for name in pk)
        except KeyError as exc:
            raise DecodeError(
                f"key column {exc.args[0]!r} of {rel.table} is not in its pgoutput Relation "
                f"(oid {rel.oid})"
            ) from None
        if rel.replica_identity == "f" or not flagged or set(keys) <= set(flagged):
            return keys
        return flagged

    def _row(self, plan: _Plan, values: Sequence[Value], only: Iterable[int]) -> dict[str, Any]:
        names, oids, load = plan.names, plan.oids, self._loader
        out: dict[str, Any] = {}
        for i in only:
            v = values[i]
            if v is None:
                out[names[i]] = None
            elif v.__class__ is str:
                out[names[i]] = load(oids[i], v)
            elif isinstance(v, bytes):
                out[names[i]] = self.binary_loader(oids[i], v)
        return out

    def _rows(self, ev: Insert | Update | Delete | Truncate, out: list[Row]) -> None:
        tables = self.tables
        if isinstance(ev, Truncate):
            for rel in ev.relations:
                if tables is None or rel.table in tables:
                    out.append((Op.TRUNCATE, rel.table, {}, None, None))
            return
        if tables is not None and ev.relation.table not in tables:
            return
        plan = self._plan(ev.relation)
        if isinstance(ev, Insert):
            self._change(plan, Op.INSERT, None, None, ev.new, ev.plain)
        elif isinstance(ev, Update):
            self._change(plan, Op.UPDATE, ev.old_kind, ev.old, ev.new, ev.plain)
        else:
            self._change(plan, Op.DELETE, ev.old_kind, ev.old, None, False)

    def _change(
        self,
        plan: _Plan,
        op: Op,
        old_kind: str | None,
        old: Sequence[Value] | None,
        new: Sequence[Value] | None,
        plain: bool,
    ) -> None:
        """Append the row of one change (its old and new tuples as decoded) to the buffer."""
        if old is None and plain:
            # the common case: no old tuple, every new value text or NULL (typed only when
            # read: keys now, the rest when a transform or a writer asks; a PostgreSQL
            # writer may pass the text on)
            after = TextImage(plan.layout, new)  # type: ignore[arg-type]
            self._buffer.rows.append(
                (op, plan.table, {name: after[name] for name in plan.key_names}, None, after)
            )
            return
        before: dict[str, Any] | None = None
        after_: Mapping[str, Any] | None = None
        if old is not None:
            before = self._row(plan, old, plan.everything if old_kind == "O" else plan.ident)
        if new is not None:
            after_ = (
                TextImage(plan.layout, new)  # type: ignore[arg-type]
                if plain
                else self._row(plan, new, plan.everything)
            )
            if before is not None and old_kind == "O" and len(after_) < len(plan.names):
                filled = {**before, **after_}
                after_ = {n: filled[n] for n in plan.names if n in filled}
        key: dict[str, Any] = {}
        for name in plan.key_names:
            if before is not None and name in before:
                key[name] = before[name]
            elif after_ is not None and name in after_:
                key[name] = after_[name]
        self._buffer.rows.append((op, plan.table, key, before, after_))


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

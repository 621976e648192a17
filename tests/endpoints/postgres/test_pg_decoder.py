"""The sans-IO pgoutput decoder: hand-built messages, Hypothesis round trips and fuzzing, and
the real thing from a PostgreSQL slot compared with the full-load reader's values."""

import datetime as dt
import os
import struct
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from _pg_schema import SCHEMA_SQL
from hypothesis import given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.changes import Change, Op, TextImage, Transaction
from replikit.endpoints.postgres._decoder import (
    ALIASES_SQL,
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PgOutputDecoder,
    Relation,
    TransactionAssembler,
    Truncate,
    TypeMessage,
    Update,
    assemble,
    psycopg_loader,
    type_aliases,
)
from replikit.errors import DecodeError
from replikit.positions import PgLsn
from replikit.schema.model import TableId

UTC = dt.UTC
EPOCH = dt.datetime(2000, 1, 1, tzinfo=UTC)


# -- a small pgoutput encoder -----------------------------------------------------------------
def _us(ts: dt.datetime) -> int:
    return (ts - EPOCH) // dt.timedelta(microseconds=1)


def _cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def enc_begin(final_lsn: int, ts: dt.datetime, xid: int) -> bytes:
    return b"B" + struct.pack("!QqI", final_lsn, _us(ts), xid)


def enc_commit(commit_lsn: int, end_lsn: int, ts: dt.datetime, flags: int = 0) -> bytes:
    return b"C" + struct.pack("!BQQq", flags, commit_lsn, end_lsn, _us(ts))


def enc_relation(rel: Relation) -> bytes:
    out = b"R" + struct.pack("!I", rel.oid) + _cstr(rel.schema) + _cstr(rel.name)
    out += rel.replica_identity.encode() + struct.pack("!h", len(rel.columns))
    for c in rel.columns:
        out += bytes([int(c.key)]) + _cstr(c.name) + struct.pack("!Ii", c.type_oid, c.typmod)
    return out


def enc_tuple(values: tuple[Any, ...]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED:
            out += b"u"
        elif isinstance(v, bytes):
            out += b"b" + struct.pack("!i", len(v)) + v
        else:
            data = v.encode()
            out += b"t" + struct.pack("!i", len(data)) + data
    return out


def enc_insert(oid: int, new: tuple[Any, ...]) -> bytes:
    return b"I" + struct.pack("!I", oid) + b"N" + enc_tuple(new)


def enc_update(oid: int, new: tuple[Any, ...], old: tuple[Any, ...] | None = None, kind="K"):
    old_part = b"" if old is None else kind.encode() + enc_tuple(old)
    return b"U" + struct.pack("!I", oid) + old_part + b"N" + enc_tuple(new)


def enc_delete(oid: int, old: tuple[Any, ...], kind: str = "K") -> bytes:
    return b"D" + struct.pack("!I", oid) + kind.encode() + enc_tuple(old)


def enc_truncate(oids: list[int], cascade: bool = False, restart: bool = False) -> bytes:
    opts = int(cascade) | (2 if restart else 0)
    return b"T" + struct.pack(f"!IB{len(oids)}I", len(oids), opts, *oids)


def enc_message(prefix: str, content: bytes, lsn: int = 5, transactional: bool = True) -> bytes:
    return (
        b"M"
        + struct.pack("!BQ", int(transactional), lsn)
        + _cstr(prefix)
        + struct.pack("!i", len(content))
        + content
    )


T0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
REL = Relation(
    16400,
    "public",
    "t",
    "d",
    (Column("id", 23, -1, True), Column("n", 1700, -1, False), Column("big", 25, -1, False)),
)
FULL = Relation(
    16401, "s", "f", "f", tuple(Column(c.name, c.type_oid, -1, True) for c in REL.columns)
)


def _loader(oid: int, text: str) -> Any:
    return {23: int, 1700: Decimal}.get(oid, str)(text)


# -- unit tests: every message type -----------------------------------------------------------
def test_begin_commit_relation_roundtrip() -> None:
    dec = PgOutputDecoder()
    assert dec.decode(enc_begin(0x1_0000_0010, T0, 77)) == Begin(0x1_0000_0010, T0, 77)
    assert dec.decode(enc_commit(10, 20, T0, 0)) == Commit(0, 10, 20, T0)
    assert dec.decode(enc_relation(REL)) == REL
    assert dec.relations[REL.oid] == REL
    # the empty namespace means pg_catalog
    rel = Relation(5, "", "x", "n", ())
    assert dec.decode(enc_relation(rel)) == Relation(5, "pg_catalog", "x", "n", ())


def test_relation_messages_may_repeat_and_change() -> None:
    dec = PgOutputDecoder()
    dec.decode(enc_relation(REL))
    wider = Relation(REL.oid, "public", "t", "d", (*REL.columns, Column("x", 25, -1, False)))
    dec.decode(enc_relation(wider))
    ins = dec.decode(enc_insert(REL.oid, ("1", None, "a", "b")))
    assert isinstance(ins, Insert) and ins.relation == wider and ins.new == ("1", None, "a", "b")


def test_changes_type_origin_message_truncate() -> None:
    dec = PgOutputDecoder()
    dec.decode(enc_relation(REL))
    assert dec.decode(enc_insert(REL.oid, ("1", None, "x"))) == Insert(REL, ("1", None, "x"))
    u = dec.decode(enc_update(REL.oid, ("2", "1.5", UNCHANGED), ("1", None, None), "K"))
    assert u == Update(REL, "K", ("1", None, None), ("2", "1.5", UNCHANGED))
    assert dec.decode(enc_update(REL.oid, ("2", "1", "y"))) == Update(
        REL, None, None, ("2", "1", "y")
    )
    assert dec.decode(enc_delete(REL.oid, ("2", "1", "y"), "O")) == Delete(
        REL, "O", ("2", "1", "y")
    )
    assert dec.decode(enc_insert(REL.oid, ("1", b"\x00\x01", None))).new == ("1", b"\0\1", None)
    assert dec.decode(enc_truncate([REL.oid], cascade=True)) == Truncate((REL,), True, False)
    assert dec.decode(enc_truncate([REL.oid], restart=True)) == Truncate((REL,), False, True)
    assert dec.decode(enc_message("rk", b"hi", 9, False)) == LogicalMessage(False, 9, "rk", b"hi")
    y = b"Y" + struct.pack("!I", 17000) + _cstr("shop") + _cstr("mood")
    assert dec.decode(y) == TypeMessage(17000, "shop", "mood")
    assert dec.types[17000].name == "mood"
    assert dec.decode(b"O" + struct.pack("!Q", 42) + _cstr("node1")) == Origin(42, "node1")


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        (b"", "empty"),
        (b"Z\0\0", "unknown pgoutput message type b'Z' at offset 0"),
        (b"B\0\0", "malformed pgoutput Begin message at offset 1"),
        (enc_commit(1, 2, T0) + b"x", "Commit message at offset 26: 1 trailing bytes"),
        (enc_insert(999, ("1",)), "unknown relation oid 999"),
        (enc_truncate([REL.oid, 999]), "unknown relation oid 999"),
        (enc_insert(REL.oid, ("1",)), "Insert message of relation oid 16400 at offset 6"),
        (enc_insert(REL.oid, ("1", "2", "3"))[:-1], "Insert message of relation oid 16400"),
        (b"I" + struct.pack("!I", REL.oid) + b"X", "expected 'N'"),
        (b"D" + struct.pack("!I", REL.oid) + b"N" + enc_tuple(("1", None, None)), "'K' or 'O'"),
        (b"R" + struct.pack("!I", 1) + b"a\0b\0zZ", "replica identity"),
        (b"Y" + struct.pack("!I", 1) + b"a", "unterminated"),
        (b"I" + struct.pack("!I", REL.oid) + b"N" + struct.pack("!h", 3) + b"nnx", "kind"),
        (b"M" + struct.pack("!BQ", 1, 1) + b"p\0" + struct.pack("!i", -1), "negative length"),
        (b"B" + struct.pack("!QqI", 1, 2**63 - 1, 1), "out of range"),
    ],
)
def test_malformed_messages_raise_decode_error(message: bytes, needle: str) -> None:
    dec = PgOutputDecoder()
    dec.decode(enc_relation(REL))
    with pytest.raises(DecodeError) as exc:
        dec.decode(message)
    assert needle in str(exc.value)


# -- assembling transactions --------------------------------------------------------------------
def _tx(dec: PgOutputDecoder, asm: TransactionAssembler, *msgs: bytes) -> Transaction:
    out = list(
        asm.feed_all(dec.decode_all([enc_begin(100, T0, 7), *msgs, enc_commit(100, 150, T0)]))
    )
    assert len(out) == 1 and not asm.in_transaction
    return out[0]


def test_assembler_default_identity_toast_and_key_only_old() -> None:
    dec, asm = PgOutputDecoder(), TransactionAssembler(loader=_loader)
    tx = _tx(
        dec,
        asm,
        enc_relation(REL),
        enc_insert(REL.oid, ("1", "2.5", "big")),
        enc_update(REL.oid, ("1", "3", UNCHANGED)),
        enc_update(REL.oid, ("2", "3", UNCHANGED), ("1", None, None), "K"),
        enc_delete(REL.oid, ("2", None, None), "K"),
        enc_truncate([REL.oid]),
    )
    pos, t = PgLsn(150), TableId("public", "t")
    common: dict[str, Any] = {"position": pos, "commit_ts": T0, "txid": 7}
    assert tx == Transaction(
        (
            Change(
                Op.INSERT,
                t,
                {"id": 1},
                None,
                {"id": 1, "n": Decimal("2.5"), "big": "big"},
                **common,
            ),
            Change(Op.UPDATE, t, {"id": 1}, None, {"id": 1, "n": Decimal(3)}, **common),
            Change(Op.UPDATE, t, {"id": 1}, {"id": 1}, {"id": 2, "n": Decimal(3)}, **common),
            Change(Op.DELETE, t, {"id": 2}, {"id": 2}, None, **common),
            Change(Op.TRUNCATE, t, **common),
        ),
        pos,
        T0,
        7,
    )
    assert all(UNCHANGED not in (c.after or {}).values() for c in tx.changes)


def test_assembler_full_identity_fills_toast_from_old_row_and_uses_given_pk() -> None:
    dec = PgOutputDecoder()
    asm = TransactionAssembler(loader=_loader, primary_keys={TableId("s", "f"): ["id"]})
    tx = _tx(
        dec,
        asm,
        enc_relation(FULL),
        enc_update(FULL.oid, ("1", "4", UNCHANGED), ("1", "3", "big"), "O"),
        enc_delete(FULL.oid, ("1", "4", "big"), "O"),
    )
    upd, dele = tx.changes
    assert upd.key == {"id": 1}
    assert upd.before == {"id": 1, "n": Decimal(3), "big": "big"}
    assert upd.after == {"id": 1, "n": Decimal(4), "big": "big"}
    assert list(upd.after) == ["id", "n", "big"]
    assert dele.key == {"id": 1} and dele.before == {"id": 1, "n": Decimal(4), "big": "big"}
    # without the mapping, FULL's flags make every column key
    tx2 = _tx(
        PgOutputDecoder(),
        TransactionAssembler(),
        enc_relation(FULL),
        enc_delete(FULL.oid, ("1", "4", "b"), "O"),
    )
    assert tx2.changes[0].key == {"id": "1", "n": "4", "big": "b"}


def test_assembler_sequence_errors_and_ignored_events() -> None:
    dec, asm = PgOutputDecoder(), TransactionAssembler()
    dec.decode(enc_relation(REL))
    with pytest.raises(DecodeError, match="outside a transaction"):
        asm.feed(dec.decode(enc_insert(REL.oid, ("1", None, None))))
    with pytest.raises(DecodeError, match="Commit without a Begin"):
        asm.feed(dec.decode(enc_commit(1, 2, T0)))
    assert asm.feed(dec.decode(enc_message("p", b"", 1, False))) is None
    asm.feed(dec.decode(enc_begin(5, T0, 1)))
    with pytest.raises(DecodeError, match="inside transaction 1"):
        asm.feed(dec.decode(enc_begin(6, T0, 2)))
    with pytest.raises(DecodeError, match="does not match its Begin"):
        asm.feed(dec.decode(enc_commit(6, 7, T0)))
    asm2 = TransactionAssembler(primary_keys={TableId("public", "t"): ["nope"]})
    asm2.feed(dec.decode(enc_begin(5, T0, 1)))
    with pytest.raises(DecodeError, match="'nope'"):  # rows are typed as they arrive
        asm2.feed(dec.decode(enc_insert(REL.oid, ("1", None, None))))


# -- Hypothesis -------------------------------------------------------------------------------
_names = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=8)
_value = st.one_of(
    st.none(), st.just(UNCHANGED), st.text(st.characters(blacklist_categories=("Cs",))), st.binary()
)


@st.composite
def _relation_and_rows(draw: st.DrawFn) -> tuple[Relation, list[tuple[Any, ...]]]:
    n = draw(st.integers(0, 6))
    cols = tuple(
        Column(
            draw(_names),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.integers(-(2**31), 2**31 - 1)),
            draw(st.booleans()),
        )
        for _ in range(n)
    )
    rel = Relation(
        draw(st.integers(0, 2**32 - 1)),
        draw(_names.filter(bool)),
        draw(_names),
        draw(st.sampled_from("dnfi")),
        cols,
    )
    rows = draw(st.lists(st.tuples(*[_value] * n), min_size=1, max_size=4))
    return rel, rows


@given(_relation_and_rows(), st.integers(0, 2**64 - 1), st.integers(-(2**40), 2**40))
def test_encode_decode_roundtrip(
    data: tuple[Relation, list[tuple[Any, ...]]], lsn: int, us: int
) -> None:
    rel, rows = data
    ts = EPOCH + dt.timedelta(microseconds=us)
    dec = PgOutputDecoder()
    assert dec.decode(enc_relation(rel)) == rel
    assert dec.decode(enc_begin(lsn, ts, 3)) == Begin(lsn, ts, 3)
    for row in rows:
        assert dec.decode(enc_insert(rel.oid, row)) == Insert(rel, row)
        assert dec.decode(enc_update(rel.oid, row, row, "O")) == Update(rel, "O", row, row)
        assert dec.decode(enc_delete(rel.oid, row, "K")) == Delete(rel, "K", row)
    assert dec.decode(enc_truncate([rel.oid] * 3, True, True)) == Truncate((rel,) * 3, True, True)
    assert dec.decode(enc_commit(lsn, lsn, ts, 1)) == Commit(1, lsn, lsn, ts)


_KINDS = {
    b"B": Begin, b"C": Commit, b"R": Relation, b"I": Insert, b"U": Update, b"D": Delete,
    b"T": Truncate, b"M": LogicalMessage, b"Y": TypeMessage, b"O": Origin,
}  # fmt: skip


def _row_message(event: Insert | Update | Delete) -> bytes:
    oid = event.relation.oid
    if isinstance(event, Insert):
        return enc_insert(oid, event.new)
    if isinstance(event, Update):
        return enc_update(oid, event.new, event.old, event.old_kind or "K")
    return enc_delete(oid, event.old, event.old_kind)


def _decoded_or_refused(dec: PgOutputDecoder, msg: bytes) -> None:
    """``msg`` is refused with a DecodeError, or decodes to the event its first byte names.

    A row message that decodes is read exactly: its values, re-encoded, are the message's bytes
    (no misread length, column count or value kind), for the relation the decoder knows.
    """
    try:
        event = dec.decode(msg)
    except DecodeError:
        return
    assert type(event) is _KINDS[msg[:1]], (msg, event)
    if isinstance(event, Insert | Update | Delete):
        assert dec.relations[event.relation.oid] == event.relation
        rows = (getattr(event, "old", None), getattr(event, "new", None))
        assert all(len(r) == len(event.relation.columns) for r in rows if r is not None)
        assert _row_message(event) == msg
    elif isinstance(event, Truncate):
        assert all(dec.relations[r.oid] == r for r in event.relations)


@given(st.binary(max_size=64))
def test_fuzz_random_bytes_are_refused_or_decoded_as_what_they_say(data: bytes) -> None:
    dec = PgOutputDecoder()
    dec.decode(enc_relation(REL))
    for msg in (data, b"IURDTCBMYO"[len(data) % 10 : len(data) % 10 + 1] + data):
        _decoded_or_refused(dec, msg)


@given(_relation_and_rows(), st.data())
def test_fuzz_truncated_and_flipped_messages(
    data: tuple[Relation, list[tuple[Any, ...]]], d: st.DataObject
) -> None:
    rel, rows = data
    row = rows[0]
    msgs = [enc_relation(rel), enc_insert(rel.oid, row), enc_update(rel.oid, row, row, "K"),
            enc_delete(rel.oid, row, "O"), enc_begin(1, T0, 1), enc_commit(1, 2, T0),
            enc_truncate([rel.oid]), enc_message("p", b"x")]  # fmt: skip
    for msg in msgs:
        dec = PgOutputDecoder()
        dec.decode(enc_relation(rel))
        cut = d.draw(st.integers(0, len(msg) - 1))
        with pytest.raises(DecodeError):
            dec.decode(msg[:cut])
        i = d.draw(st.integers(0, len(msg) - 1))
        flipped = msg[:i] + bytes([msg[i] ^ d.draw(st.integers(1, 255))]) + msg[i + 1 :]
        _decoded_or_refused(dec, flipped)


# -- default loader ---------------------------------------------------------------------------
def test_psycopg_loader_canonical_values() -> None:
    load = psycopg_loader({17000: 23, 17001: 1009})
    assert load(23, "42") == 42
    assert load(1700, "NaN").is_nan()
    assert load(1082, "infinity") == "infinity"
    assert load(1082, "0044-03-15 BC") == "0044-03-15 BC"
    assert load(1082, "2024-02-29") == dt.date(2024, 2, 29)
    assert load(1184, "2024-01-01 00:00:00+00") == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert load(1083, "24:00:00") == "24:00:00"
    assert load(1182, "{infinity,2020-01-02}") == ["infinity", dt.date(2020, 1, 2)]
    assert load(3802, '{"b": 2}') == '{"b": 2}'
    assert load(199, '{"{\\"a\\": 1}"}') == ['{"a": 1}']
    assert load(1186, "P1Y2M") == "P1Y2M"
    assert load(3904, "[1,5)") == "[1,5)"
    assert load(869, "10.0.0.1") == "10.0.0.1/32"  # as inet::text in the full load
    assert load(869, "::1") == "::1/128" and load(869, "10.0.0.0/8") == "10.0.0.0/8"
    assert load(790, "-$1,234.50") == Decimal("-1234.50")
    assert load(17000, "7") == 7
    assert load(17001, "{a,b}") == ["a", "b"]
    assert load(99999, "whatever") == "whatever"
    assert load(17, "\\x00ff") == b"\x00\xff"


# -- a real server ----------------------------------------------------------------------------
PEEK = (
    "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL,"
    " 'proto_version', '1', 'publication_names', %s, 'messages', 'true')"
)
SESSION = (
    "SET TIME ZONE 'UTC'; SET IntervalStyle = iso_8601; SET DateStyle = ISO;"
    " SET extra_float_digits = 3;"
    # the test server runs with synchronous_commit=off, and decoding stops at the WAL flush
    # point: without this the last commits may not be decodable yet
    " SET synchronous_commit = on"
)


def _full_load(url: str, table: str) -> dict[Any, dict[str, Any]]:
    with rk.endpoint(url).reader([table]) as reader:
        (t,) = reader.tables
        cols = t.column_names
        rows = [
            dict(zip(cols, r, strict=True))
            for u in reader.units(t)
            for b in reader.read(u)
            for r in b.rows
        ]
    return {r["id"]: r for r in rows}


def _peek(
    conn: psycopg.Connection[Any], slot: str, pub: str
) -> tuple[list[Transaction], list[str]]:
    rows = conn.execute(PEEK, (slot, pub)).fetchall()
    commits = [lsn for lsn, data in rows if data[:1] == b"C"]
    loader = psycopg_loader(type_aliases(conn.execute(ALIASES_SQL).fetchall()))
    pks = {
        TableId(s, n): cols
        for s, n, cols in conn.execute(
            "SELECT n.nspname, c.relname,"
            " array_agg(a.attname ORDER BY array_position(i.indkey, a.attnum))"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indisprimary GROUP BY 1, 2"
        )
    }
    asm = TransactionAssembler(primary_keys=pks, loader=loader)
    return list(assemble((bytes(d) for _, d in rows), assembler=asm)), commits


@pytest.fixture
def slot_conn(pg_url: str):
    conn = psycopg.connect(pg_url, autocommit=True)
    conn.execute(SESSION)
    conn.execute("CREATE PUBLICATION rk_pub FOR ALL TABLES")
    conn.execute("SELECT pg_create_logical_replication_slot('rk_slot', 'pgoutput')")
    try:
        yield conn
    finally:
        conn.execute("SELECT pg_drop_replication_slot('rk_slot')")
        conn.close()


def test_real_server_changes_match_full_load(
    pg_url: str, slot_conn: psycopg.Connection[Any]
) -> None:
    conn = slot_conn
    big = os.urandom(6000).hex()  # ~12 kB incompressible: stored out of line
    conn.execute(
        "CREATE TABLE t (id int PRIMARY KEY, n numeric, s text, big text, ts timestamptz,"
        " j jsonb, b bytea, arr int[], d date, iv interval)"
    )
    conn.execute("ALTER TABLE t ALTER big SET STORAGE EXTERNAL")
    conn.execute(
        "INSERT INTO t VALUES (1, 1.50, 'one', %s, '2024-01-01 12:00:00+02', '{\"a\": [1, 2.0]}',"
        " '\\x00ff', '{1,NULL,3}', 'infinity', '1 year 2 mons 3 days'),"
        " (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '0044-03-15 BC', NULL)",
        (big,),
    )
    conn.execute("UPDATE t SET n = n + 1, s = 'uno' WHERE id = 1")  # big unchanged: 'u'
    conn.execute("UPDATE t SET id = 3 WHERE id = 2")  # key change: 'K' old tuple
    moved = _full_load(pg_url, "public.t")[3]
    with conn.transaction():
        conn.execute("SELECT pg_logical_emit_message(true, 'rk', 'mark')")
        conn.execute("DELETE FROM t WHERE id = 3")
        conn.execute("UPDATE t SET big = %s WHERE id = 1", (big[::-1],))
    full = _full_load(pg_url, "public.t")
    conn.execute("TRUNCATE t")

    txs, commits = _peek(conn, "rk_slot", "rk_pub")
    assert [str(tx.position) for tx in txs] == [f"pg:{c}" for c in commits]
    assert [tx.position for tx in txs] == sorted({tx.position for tx in txs})
    ops = [[(c.op, dict(c.key)) for c in tx.changes] for tx in txs]
    assert ops == [
        [(Op.INSERT, {"id": 1}), (Op.INSERT, {"id": 2})],
        [(Op.UPDATE, {"id": 1})],
        [(Op.UPDATE, {"id": 2})],
        [(Op.DELETE, {"id": 3}), (Op.UPDATE, {"id": 1})],
        [(Op.TRUNCATE, {})],
    ]
    for tx in txs:
        for c in tx.changes:
            assert c.table == TableId("public", "t") and c.position == tx.position
            assert c.txid == tx.txid and c.commit_ts == tx.commit_ts and tx.commit_ts is not None
    ins1, ins2 = txs[0].changes
    assert ins1.after is not None and ins1.after["big"] == big
    same = {k: v for k, v in full[1].items() if k not in ("n", "s", "big")}
    assert {k: v for k, v in ins1.after.items() if k in same} == same
    assert ins1.after["n"] == Decimal("1.50") and ins1.after["s"] == "one"
    assert ins1.after["d"] == "infinity" and ins1.after["iv"] == "P1Y2M3D"
    assert ins2.after == {"id": 2, "n": None, "s": None, "big": None, "ts": None, "j": None,
                          "b": None, "arr": None, "d": "0044-03-15 BC", "iv": None}  # fmt: skip
    (upd,) = txs[1].changes
    assert upd.before is None and upd.after is not None and "big" not in upd.after
    (move,) = txs[2].changes
    assert move.before == {"id": 2} and move.after == moved
    dele, upd2 = txs[3].changes
    assert dele.before == {"id": 3} and dele.after is None
    assert upd2.after == full[1]  # the final row, every column sent
    assert upd.after == {k: v for k, v in full[1].items() if k != "big"}


def test_real_server_replica_identity_full(pg_url: str, slot_conn: psycopg.Connection[Any]) -> None:
    conn = slot_conn
    big = os.urandom(6000).hex()
    conn.execute("CREATE TABLE f (id int PRIMARY KEY, n int, big text)")
    conn.execute("ALTER TABLE f REPLICA IDENTITY FULL")
    conn.execute("ALTER TABLE f ALTER big SET STORAGE EXTERNAL")
    conn.execute("INSERT INTO f VALUES (1, 1, %s)", (big,))
    conn.execute("UPDATE f SET n = 2")
    conn.execute("DELETE FROM f")
    txs, _ = _peek(conn, "rk_slot", "rk_pub")
    changes = [c for tx in txs for c in tx.changes]
    assert [(c.op, dict(c.key)) for c in changes] == [
        (Op.INSERT, {"id": 1}), (Op.UPDATE, {"id": 1}), (Op.DELETE, {"id": 1})
    ]  # fmt: skip
    _, upd, dele = changes
    assert upd.before == {"id": 1, "n": 1, "big": big}
    assert upd.after == {"id": 1, "n": 2, "big": big}  # filled from the old row
    assert dele.before == {"id": 1, "n": 2, "big": big}


def test_real_server_every_type_matches_full_load(
    pg_url: str, slot_conn: psycopg.Connection[Any]
) -> None:
    slot_conn.execute(SCHEMA_SQL)  # the shared all-types schema: its INSERTs are decoded
    txs, _ = _peek(slot_conn, "rk_slot", "rk_pub")
    inserted = [c for tx in txs for c in tx.changes if c.table == TableId("shop", "kitchen")]
    full = _full_load(pg_url, "shop.kitchen")
    assert len(inserted) == 3
    for c in inserted:
        assert c.op is Op.INSERT and c.after is not None
        expect = full[c.key["id"]]
        for name, value in expect.items():
            got = c.after[name]
            if value != value or (isinstance(value, Decimal) and value.is_nan()):
                assert str(got) == str(value), name
            else:
                assert got == value, (name, got, value)


# -- the fused path (TransactionAssembler.feed_message) equals decode + feed -------------------
_KEYED = Relation(
    16410,
    "public",
    "k",
    "d",
    (Column("id", 23, -1, True), Column("n", 1700, -1, False), Column("s", 25, -1, False),
     Column("a", 1009, -1, False), Column("j", 114, -1, False)),
)  # fmt: skip
_FULLID = Relation(16411, "public", "fid", "f", tuple(Column(c.name, c.type_oid, -1, True)
                                                      for c in _KEYED.columns))  # fmt: skip
_OTHER = Relation(16412, "public", "skipped", "d", _KEYED.columns)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6) | st.sampled_from(
    ["a\tb", "l\nb", "b\\s", "\\N", "cr\r", "é€𝄞", '{"k": [1, "x\\ty"]}', '{"a\\\\b",NULL}']
)
_cell = st.one_of(st.none(), _text, st.just(UNCHANGED), st.binary(max_size=3))


@st.composite
def _history(draw: st.DrawFn) -> list[bytes]:
    """Relations, then transactions of inserts, updates (with and without old tuples, moving
    keys), deletes and truncates, with NULLs, unchanged TOAST markers and binary values;
    a Relation message may come again (the same or changed) between and inside them."""
    rels = [_KEYED, _FULLID, _OTHER]
    msgs = [enc_relation(r) for r in rels]
    lsn = 100
    for _ in range(draw(st.integers(1, 4))):
        msgs.append(enc_begin(lsn, T0, lsn))
        for _ in range(draw(st.integers(0, 6))):
            rel = draw(st.sampled_from(rels))
            key = str(draw(st.integers(1, 4)))
            row = (key, *draw(st.tuples(*[_cell] * 4)))
            what = draw(st.sampled_from(["I", "U", "UK", "UO", "DK", "DO", "T", "R"]))
            if what == "I":
                msgs.append(enc_insert(rel.oid, row))
            elif what == "U":
                msgs.append(enc_update(rel.oid, row))
            elif what in ("UK", "UO"):
                old = (str(draw(st.integers(1, 4))), *draw(st.tuples(*[_cell] * 4)))
                msgs.append(enc_update(rel.oid, row, old, what[1]))
            elif what in ("DK", "DO"):
                msgs.append(enc_delete(rel.oid, row, what[1]))
            elif what == "T":
                msgs.append(enc_truncate([rel.oid]))
            else:
                msgs.append(enc_relation(rel))
        lsn += 10
        msgs.append(enc_commit(lsn - 10, lsn, T0 + dt.timedelta(seconds=lsn)))
    return msgs


def _typed(oid: int, text: str) -> Any:
    return int(text) if oid == 23 else (oid, text)  # typing shows, never fails


def _run(msgs: list[bytes], fused: bool) -> list[Any]:
    from replikit.endpoints.postgres._decoder import SLOW

    tables = {_KEYED.table, _FULLID.table}
    dec = PgOutputDecoder()
    asm = TransactionAssembler(loader=_typed, primary_keys={_FULLID.table: ["id"]}, tables=tables)
    out: list[Any] = []
    for m in msgs:
        try:
            tx = asm.feed_message(m, dec) if fused else SLOW
            if tx is SLOW:
                tx = asm.feed(dec.decode(m))
        except DecodeError as exc:
            out.append(("error", str(exc)))
            asm.reset()
            continue
        if tx is not None:
            out.append(tx)
    return out


@settings(max_examples=300)
@given(_history())
def test_fused_path_equals_decode_and_feed(msgs: list[bytes]) -> None:
    slow, fused = _run(msgs, fused=False), _run(msgs, fused=True)
    assert fused == slow
    for a, b in zip(slow, fused, strict=True):
        if isinstance(a, Transaction):
            assert [list(c.after or {}) for c in a.changes] == [
                list(c.after or {}) for c in b.changes
            ]


@settings(max_examples=300)
@given(_history(), st.data())
def test_fused_path_equals_decode_and_feed_on_damaged_messages(
    msgs: list[bytes], d: st.DataObject
) -> None:
    # one message cut short or with a byte changed: the fused path takes it as the careful
    # path does, or leaves it to it (which then decodes it or says what is wrong)
    i = d.draw(st.integers(0, len(msgs) - 1))
    msg = msgs[i]
    at = d.draw(st.integers(0, len(msg) - 1))
    if d.draw(st.booleans()):
        damaged = msg[:at]
    else:
        damaged = msg[:at] + bytes([msg[at] ^ d.draw(st.integers(1, 255))]) + msg[at + 1 :]
    msgs = [*msgs[:i], damaged, *msgs[i + 1 :]]
    assert _outcome(msgs, fused=True) == _outcome(msgs, fused=False)


def _outcome(msgs: list[bytes], fused: bool) -> Any:
    """:func:`_run`'s transactions with their images' text as it came (typing it here could
    fail: a damaged value's text may be one the loader refuses), or the error it raised (a
    damaged key: both paths must refuse it alike)."""
    try:
        out = _run(msgs, fused)
    except ValueError as exc:
        return ("raised", type(exc), str(exc))

    def image(values: Any) -> Any:
        return ("text", values.texts) if isinstance(values, TextImage) else values

    return [
        (
            [(c.op, c.table, c.key, image(c.before), image(c.after)) for c in x.changes],
            x.position, x.commit_ts, x.txid, x.schema_changes,
        )
        if isinstance(x, Transaction)
        else x
        for x in out
    ]  # fmt: skip


def test_fused_path_refuses_what_feed_refuses() -> None:
    from replikit.endpoints.postgres._decoder import SLOW

    dec, asm = PgOutputDecoder(), TransactionAssembler(loader=_loader)
    dec.decode(enc_relation(REL))
    ins = enc_insert(REL.oid, ("1", None, "x"))
    assert asm.feed_message(ins, dec) is SLOW  # outside a transaction: the careful path says
    assert asm.feed_message(enc_commit(1, 2, T0), dec) is SLOW
    assert asm.feed_message(enc_begin(5, T0, 1), dec) is None
    assert asm.feed_message(enc_begin(6, T0, 2), dec) is SLOW  # a Begin inside one
    assert asm.feed_message(ins, dec) is SLOW  # the relation's first change: planned there
    assert asm.feed(dec.decode(ins)) is None
    assert asm.feed_message(ins, dec) is None
    assert asm.feed_message(ins[:-1], dec) is SLOW  # truncated
    assert asm.feed_message(ins + b"x", dec) is SLOW  # trailing bytes
    assert asm.feed_message(enc_insert(99, ("1",)), dec) is SLOW  # unknown relation
    assert asm.feed_message(enc_commit(6, 9, T0), dec) is SLOW  # not its Begin
    tx = asm.feed_message(enc_commit(5, 9, T0), dec)
    assert isinstance(tx, Transaction) and len(tx) == 2 and tx.position == PgLsn(9)
    assert tx.commit_ts == T0 and tx.txid == 1

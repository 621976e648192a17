"""Change-stream events -> changes, on recorded events shaped like MongoDB's own.

No server here emits real MongoDB change events (nx-27017 deviates: see tests/fix_mongo.py),
so these are written the way MongoDB 6.0/7.0 sends them (``_id`` resume token with
``_data``, ``clusterTime`` Timestamp, ``wallTime``, ``ns``, ``documentKey``,
``updateDescription``, ``lsid``/``txnNumber`` in transactions, pre-images as
``fullDocumentBeforeChange``). The reader's polling loop runs against a hand-written fake
change source that serves them (:class:`FakeStream`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bson import Binary, Decimal128, Int64, ObjectId, Timestamp
from pymongo.errors import OperationFailure

import replikit as rk
from replikit.changes import Op, SchemaChange
from replikit.endpoints.mongodb import _documents as d
from replikit.endpoints.mongodb import cdc
from replikit.endpoints.mongodb._connect import Client, parse_url
from replikit.endpoints.mongodb._events import EventDecoder, commit_time, txn_of
from replikit.endpoints.mongodb._positions import MongoPosition, Resume
from replikit.endpoints.mongodb.reflect import Reflected
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

UTC = dt.UTC
PEOPLE = TableId("shop", "people")
ORDERS = TableId("shop", "orders")
OID = ObjectId("65a1b2c3d4e5f60718293a4b")
WALL = dt.datetime(2024, 1, 12, 21, 44, 35, 512000, tzinfo=UTC)
LSID = {"id": Binary(uuid.UUID("1b6e4a1c-65fb-4f43-8a8e-2a0fb8e1bb2d").bytes, 4),
        "uid": Binary(b"\x01" * 32, 0)}  # fmt: skip


def token(n: int) -> dict[str, str]:
    """A resume token shaped like MongoDB's (hex KeyString; ordered as the stream)."""
    return {"_data": f"8265A1B2C3{n:08X}2B022C0100296E5A1004"}


def event(n: int, op: str, coll: str = "people", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "_id": token(n),
        "operationType": op,
        "clusterTime": Timestamp(1705095875, n),
        "wallTime": WALL,
        "ns": {"db": "shop", "coll": coll},
    }
    return {**base, **fields}


def people_shape() -> d.TableShape:
    sample = d.Sample(2)
    for doc in ({"_id": OID, "name": "ann", "n": 10, "addr": {"city": "x"}},):
        sample.add(doc)
    columns, _ = sample.columns()
    return d.TableShape((*columns, d.overflow_column()))


def orders_shape() -> d.TableShape:
    """A table replikit wrote: composite key (shop_id, order_id) as a subdocument ``_id``."""
    columns = (
        Column("shop_id", Type.int_(32, native="int"), nullable=False),
        Column("order_id", Type.int_(64, native="long"), nullable=False),
        Column("total", Type.decimal(12, 2, native="decimal")),
    )
    return d.TableShape(columns, key=("shop_id", "order_id"), depth=0, overflow=False)


def decoder() -> EventDecoder:
    return EventDecoder(PEOPLE, people_shape())


# -- one event at a time ------------------------------------------------------------------------
def test_insert_is_an_insert_with_the_full_row():
    ev = event(1, "insert", documentKey={"_id": OID},
               fullDocument={"_id": OID, "name": "bo", "n": 20, "addr": {"city": "y"}})  # fmt: skip
    change = decoder().decode(ev)
    assert change is not None and not isinstance(change, SchemaChange)
    assert change.op is Op.INSERT and change.key == {"_id": str(OID)}
    assert change.after == {"_id": str(OID), "name": "bo", "n": 20, "addr.city": "y",
                            "_overflow": None}  # fmt: skip


def test_update_with_update_description_applies_the_looked_up_document():
    ev = event(
        2,
        "update",
        documentKey={"_id": OID},
        updateDescription={
            "updatedFields": {"n": 11, "addr.city": "z"},
            "removedFields": ["nick"],
            "truncatedArrays": [],
            "disambiguatedPaths": {},
        },
        fullDocument={"_id": OID, "name": "bo", "n": 11, "addr": {"city": "z"}},
    )
    change = decoder().decode(ev)
    assert change is not None and not isinstance(change, SchemaChange)
    assert change.op is Op.UPDATE
    assert change.after is not None and change.after["n"] == 11
    assert change.after["addr.city"] == "z"
    assert set(change.after) == set(people_shape().names)  # a full image: an upsert


def test_update_whose_document_is_gone_at_lookup_is_skipped_a_delete_follows():
    dec = decoder()
    ev = event(3, "update", documentKey={"_id": OID}, fullDocument=None,
               updateDescription={"updatedFields": {"n": 12}, "removedFields": []})  # fmt: skip
    assert dec.decode(ev) is None
    assert dec.skipped == 1


def test_replace_is_an_update_with_the_new_document():
    ev = event(4, "replace", documentKey={"_id": OID}, fullDocument={"_id": OID, "name": "cy"})
    change = decoder().decode(ev)
    assert change is not None and not isinstance(change, SchemaChange)
    assert change.op is Op.UPDATE and change.after is not None
    assert change.after["name"] == "cy" and change.after["n"] is None


def test_delete_by_document_key_with_a_non_string_id_and_a_pre_image():
    shape = orders_shape()
    dec = EventDecoder(ORDERS, shape)
    key = {"shop_id": 7, "order_id": Int64(2**40)}
    ev = event(5, "delete", "orders", documentKey={"_id": key},
               fullDocumentBeforeChange={"_id": key, "total": Decimal128("9.90")})  # fmt: skip
    change = dec.decode(ev)
    assert change is not None and not isinstance(change, SchemaChange)
    assert change.op is Op.DELETE
    assert change.key == {"shop_id": 7, "order_id": 2**40}
    assert change.before is not None and str(change.before["total"]) == "9.90"


def test_document_key_of_every_id_type_in_document_mode():
    shape = d.TableShape(d.document_columns(), mode="document")
    dec = EventDecoder(PEOPLE, shape)
    for ident in (OID, 10, Int64(10), "10", 1.5, {"a": 1}, uuid.UUID(int=5), b"k"):
        change = dec.decode(event(6, "delete", documentKey={"_id": ident}))
        assert change is not None and not isinstance(change, SchemaChange)
        assert d.from_canonical(change.key["_id"]) == ident
    ints = {dec.decode(event(6, "delete", documentKey={"_id": v})).key["_id"]  # type: ignore[union-attr]
            for v in (10, Int64(10), "10", 10.0)}  # fmt: skip
    assert len(ints) == 4, "int32, int64, string and double ids stay apart"


@pytest.mark.parametrize(
    ("ev", "why"),
    [
        (event(7, "drop"), "dropped"),
        (event(7, "rename", to={"db": "shop", "coll": "people_old"}), "shop.people_old"),
        (event(7, "dropDatabase", ns={"db": "shop"}), "database dropped"),
        ({"_id": token(7), "operationType": "invalidate", "clusterTime": Timestamp(1, 1)},
         "invalidated"),
    ],
)  # fmt: skip
def test_drop_rename_and_invalidate_stop_the_table(ev, why):
    change = decoder().decode(ev)
    assert isinstance(change, SchemaChange) and not change.additive
    assert change.table == PEOPLE and why in change.description


def test_other_events_change_no_rows():
    assert decoder().decode(event(8, "createIndexes", operationDescription={})) is None


def test_commit_time_and_transaction_id():
    assert commit_time(event(1, "insert")) == WALL
    no_wall = {"clusterTime": Timestamp(1705095875, 1)}
    assert commit_time(no_wall) == dt.datetime.fromtimestamp(1705095875, UTC)
    assert txn_of(event(1, "insert")) is None
    assert txn_of(event(1, "insert", lsid=LSID, txnNumber=Int64(3))).endswith(":3")


# -- the reader's loop over a fake change source --------------------------------------------------
class FakeStream:
    """Serves recorded events like pymongo's ChangeStream: ``try_next`` gives the next or
    ``None``; ``resume_token`` is the last event's token, or the post-batch token."""

    def __init__(self, events: list[Any], post_batch: dict[str, str] | None = None) -> None:
        self.events = list(events)
        self.resume_token: Any = post_batch
        self.closed = False

    def try_next(self) -> Any:
        if not self.events:
            return None
        item = self.events.pop(0)
        if isinstance(item, BaseException):
            raise item
        self.resume_token = item["_id"]
        return item

    def close(self) -> None:
        self.closed = True


def reader(monkeypatch, streams: dict[TableId, FakeStream], **options: Any) -> tuple[Any, list]:
    opened: list[tuple[TableId, Resume | None]] = []

    def watch(client: Any, table: TableId, point: Resume | None, await_ms: int) -> FakeStream:
        opened.append((table, point))
        return streams[table]

    monkeypatch.setattr(cdc, "_watch", watch)
    shapes = {PEOPLE: people_shape(), ORDERS: orders_shape()}
    tables = [TableSchema(t, shapes[t].columns) for t in streams]
    client = Client(parse_url("mongodb://u:pw@fake.invalid/shop"))
    options = {"heartbeat": 0.05, "poll_interval": 0.01, "stop_when_idle": 0.3, **options}
    return cdc.MongoChangeReader(client, tables, Reflected(shapes=shapes), **options), opened


def start() -> MongoPosition:
    return MongoPosition.of({"shop.people": Resume.after(token(0)),
                             "shop.orders": Resume(at=(1705095875, 0))})  # fmt: skip


def doc(i: int, **more: Any) -> dict[str, Any]:
    return {"_id": i, "name": f"p{i}", **more}


def crud() -> list[Any]:
    oid = ObjectId()
    return [
        event(1, "insert", documentKey={"_id": oid}, fullDocument={"_id": oid, "name": "a"}),
        event(2, "update", documentKey={"_id": oid},
              updateDescription={"updatedFields": {"n": 1}, "removedFields": []},
              fullDocument={"_id": oid, "name": "a", "n": 1}),
        event(3, "replace", documentKey={"_id": oid}, fullDocument={"_id": oid, "name": "b"}),
        event(4, "delete", documentKey={"_id": oid}),
    ]  # fmt: skip


def collect(it: Iterator[Any]) -> list[Any]:
    return list(it)


def test_each_write_is_a_transaction_with_the_position_after_it(monkeypatch):
    stream = FakeStream(crud())
    r, opened = reader(monkeypatch, {PEOPLE: stream})
    txs = [tx for tx in r.transactions(start()) if tx.changes]
    assert [tx.changes[0].op for tx in txs] == [Op.INSERT, Op.UPDATE, Op.UPDATE, Op.DELETE]
    tokens = [tx.position.points["shop.people"].token_doc for tx in txs]
    assert tokens == [token(1), token(2), token(3), token(4)]
    assert [tx.position for tx in txs] == sorted(tx.position for tx in txs)
    assert all(c.position == tx.position for tx in txs for c in tx.changes)
    assert opened == [(PEOPLE, Resume.after(token(0)))]  # resumed after the start token
    assert stream.closed


def test_a_multi_document_transaction_is_one_transaction(monkeypatch):
    events = [
        event(1, "insert", documentKey={"_id": 1}, fullDocument=doc(1), lsid=LSID,
              txnNumber=Int64(1)),
        event(2, "insert", documentKey={"_id": 2}, fullDocument=doc(2), lsid=LSID,
              txnNumber=Int64(1)),
        event(3, "delete", documentKey={"_id": 1}, lsid=LSID, txnNumber=Int64(2)),
        event(4, "insert", documentKey={"_id": 3}, fullDocument=doc(3)),
    ]  # fmt: skip
    columns = (Column("_id", Type.int_(64, native="int"), nullable=False),
               Column("name", Type.text(native="string")), d.overflow_column())  # fmt: skip
    shape = d.TableShape(columns)
    r, _ = reader(monkeypatch, {PEOPLE: FakeStream(events)})
    r._decoders["shop.people"] = EventDecoder(PEOPLE, shape)
    txs = [tx for tx in r.transactions(start()) if tx.changes]
    assert [[c.key["_id"] for c in tx.changes] for tx in txs] == [[1, 2], [1], [3]]
    assert txs[0].txid == txn_of(events[0]) and txs[2].txid is None
    assert txs[0].position.points["shop.people"].token_doc == token(2)


def test_a_drop_stops_its_table_and_the_other_streams_go_on(monkeypatch):
    people = FakeStream([event(1, "drop")])
    key = {"shop_id": 1, "order_id": 2}
    full = {"_id": key, "total": Decimal128("1.00")}
    orders = FakeStream([event(1, "insert", "orders", documentKey={"_id": key}, fullDocument=full)])
    r, _ = reader(monkeypatch, {PEOPLE: people, ORDERS: orders})
    txs = collect(r.transactions(start()))
    schema = [sc for tx in txs for sc in tx.schema_changes]
    assert [sc.table for sc in schema] == [PEOPLE] and people.closed
    [insert] = [c for tx in txs for c in tx.changes]
    assert insert.table == ORDERS and insert.key == {"shop_id": 1, "order_id": 2}


def test_an_idle_stream_moves_its_position_with_the_post_batch_token(monkeypatch):
    r, _ = reader(monkeypatch, {PEOPLE: FakeStream([], post_batch=token(40))})
    txs = collect(r.transactions(start()))
    assert txs and not txs[-1].changes
    assert txs[-1].position.points["shop.people"].token_doc == token(40)


def test_resuming_passes_each_collections_token_or_cluster_time(monkeypatch):
    r, opened = reader(monkeypatch, {PEOPLE: FakeStream([]), ORDERS: FakeStream([])})
    collect(r.transactions(start()))
    assert dict(opened) == {PEOPLE: Resume.after(token(0)), ORDERS: Resume(at=(1705095875, 0))}


def test_a_start_without_a_point_for_a_table_is_refused(monkeypatch):
    r, _ = reader(monkeypatch, {PEOPLE: FakeStream([]), ORDERS: FakeStream([])})
    only_people = MongoPosition.of({"shop.people": Resume.after(token(0))})
    with pytest.raises(rk.ConfigError, match="shop.orders"):
        collect(r.transactions(only_people))
    with pytest.raises(rk.ConfigError, match="cannot start at"):
        collect(r.transactions(rk.positions.SqliteSeq(1)))


def test_lost_history_is_a_position_lost_error(monkeypatch):
    lost = OperationFailure(
        "Resume of change stream was not possible, as the resume point may no longer be in "
        "the oplog.", code=286, details={"code": 286, "codeName": "ChangeStreamHistoryLost",
                                         "errmsg": "resume point may no longer be in the oplog"},
    )  # fmt: skip
    r, _ = reader(monkeypatch, {PEOPLE: FakeStream([lost])})
    with pytest.raises(rk.PositionLostError, match="oplog"):
        collect(r.transactions(start()))


def test_a_changed_document_that_fits_no_column_is_refused_not_dropped(monkeypatch):
    strict = d.TableShape((Column("_id", Type.int_(64, native="int"), nullable=False),),
                          overflow=False)  # fmt: skip
    dec = EventDecoder(PEOPLE, strict)
    with pytest.raises(rk.DataError, match="'surprise'"):
        dec.decode(event(1, "insert", documentKey={"_id": 1},
                         fullDocument={"_id": 1, "surprise": True}))  # fmt: skip


def test_a_server_without_change_streams_is_a_config_error_that_says_why(monkeypatch):
    refused = OperationFailure(
        "The $changeStream stage is only supported on replica sets", code=40573,
        details={"code": 40573, "codeName": "Location40573",
                 "errmsg": "The $changeStream stage is only supported on replica sets"},
    )  # fmt: skip

    def watch(*args: Any) -> Any:
        raise refused

    r, _ = reader(monkeypatch, {PEOPLE: FakeStream([])})
    monkeypatch.setattr(cdc, "_watch", watch)
    with pytest.raises(rk.ConfigError, match="replica set"):
        collect(r.transactions(start()))

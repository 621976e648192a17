"""MongoDB without a server: URLs, BSON types, documents <-> rows, Extended JSON, positions.

Documents here are what pymongo decodes with replikit's codec options (aware UTC dates,
standard UUIDs), built with bson's own types.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from decimal import Decimal

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from hypothesis import given
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints.mongodb import _documents as d
from replikit.endpoints.mongodb._connect import parse_url
from replikit.endpoints.mongodb._dialect import DIALECT
from replikit.endpoints.mongodb._positions import MongoPosition, Resume
from replikit.positions import Position
from replikit.schema.convert import Fidelity
from replikit.schema.types import Kind, Type

UTC = dt.UTC
OID = ObjectId("65a1b2c3d4e5f60718293a4b")
#: one value of every BSON type pymongo decodes
EVERY_TYPE = {
    "_id": OID,
    "double": 1.0,
    "nan": float("nan"),
    "string": "é😀",
    "object": {"a": {"b": 1}},
    "array": [1, "two", [3]],
    "binary": b"\x00\xff",
    "binary_old": Binary(b"\x01", 2),
    "uuid": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "oid": OID,
    "bool": False,
    "date": dt.datetime(2020, 2, 29, 12, 0, 0, 123000, tzinfo=UTC),
    "null": None,
    "regex": Regex("^a", "i"),
    "code": Code("function () {}"),
    "int32": 7,
    "timestamp": Timestamp(1700000000, 3),
    "int64": Int64(7),
    "decimal": Decimal128("1.50"),
    "minkey": MinKey(),
    "maxkey": MaxKey(),
}


def _decoded(doc: dict) -> dict:
    from replikit.endpoints.mongodb._connect import codec

    return bson.decode(bson.encode(doc, codec_options=codec()), codec_options=codec())


def _bytes(doc: dict) -> bytes:
    from replikit.endpoints.mongodb._connect import codec

    return bson.encode(doc, codec_options=codec())


# -- URLs ---------------------------------------------------------------------------------------
def test_urls_go_to_pymongo_as_written_less_replikits_options():
    url = parse_url(
        "mongodb://app:p%40ss@db1:27017,DB2:27018/shop?replicaSet=rs0&tls=true&mode=document"
        "&tlsCAFile=/etc/ca.pem&sample_size=50"
    )
    assert (
        url.uri
        == "mongodb://app:p%40ss@db1:27017,DB2:27018/shop?replicaSet=rs0&tls=true&tlsCAFile=/etc/ca.pem"
    )
    assert url.database == "shop"
    assert url.hosts == ("db1:27017", "db2:27018")
    assert url.password == "p@ss"
    assert url.options == {"mode": "document", "sample_size": "50"}
    srv = parse_url("mongodb+srv://u:pw@cluster0.example.net/?retryWrites=true")
    assert srv.database is None
    assert srv.uri == "mongodb+srv://u:pw@cluster0.example.net/?retryWrites=true"


def test_endpoints_mask_the_password_and_check_options():
    ep = rk.endpoint("mongodb://app:s3cret@db1,db2/shop?replicaSet=rs0&mode=document")
    assert "s3cret" not in repr(ep) and "s3cret" not in ep.url
    assert ep.mode == "document"
    assert ep.home_schema() == "shop"
    assert rk.endpoint("mongodb+srv://u:pw@c.example.net/x").identity() == (
        "mongodb",
        ("c.example.net",),
    )
    with pytest.raises(rk.ConfigError, match="'table' or 'document'"):
        rk.endpoint("mongodb://h/db?mode=rows")
    with pytest.raises(rk.ConfigError, match="sample_size"):
        rk.endpoint("mongodb://h/db?sample_size=many")
    with pytest.raises(rk.ConfigError, match="no_such"):
        rk.endpoint("mongodb://h/db", no_such=1)
    with pytest.raises(rk.ConfigError, match="no host"):
        rk.endpoint("mongodb:///db")


def test_an_option_pymongo_does_not_know_is_refused_not_warned_about():
    ep = rk.endpoint("mongodb://u:pw@h/db?replicaset=rs0&timeoutMs=5&sampel_size=3")
    with ep, pytest.raises(rk.ConfigError, match="sampel_size") as err:
        ep.check()
    assert "pw@" not in str(err.value)


def test_an_unreachable_server_is_a_connect_error_without_the_password():
    ep = rk.endpoint("mongodb://u:topsecret@127.0.0.1:1/db?timeout_ms=300")
    assert ep.options["timeout_ms"] == 300
    with ep, pytest.raises(rk.ConnectError) as err:
        ep.check()
    assert "127.0.0.1:1" in str(err.value) and "topsecret" not in str(err.value)
    assert "Topology" not in str(err.value)  # one readable line


# -- BSON types and Extended JSON -----------------------------------------------------------------
def test_every_bson_type_has_a_name():
    names = {k: d.type_name(v) for k, v in _decoded(EVERY_TYPE).items()}
    assert names["int32"] == "int" and names["int64"] == "long"
    assert names["binary"] == "binData" and names["binary_old"] == "binData.2"
    assert names["uuid"] == "uuid" and names["oid"] == "objectId" and names["date"] == "date"
    assert names["decimal"] == "decimal" and names["timestamp"] == "timestamp"
    assert names["null"] == "null" and names["object"] == "object" and names["array"] == "array"


def test_document_mode_is_exact_for_every_bson_type():
    doc = _decoded(EVERY_TYPE)
    shape = d.TableShape(d.document_columns(), mode="document")
    ident, text = shape.row(doc)
    back = d.from_canonical(text)
    assert _bytes(back) == _bytes(doc)  # the same bytes: types, order, values
    assert d.from_canonical(ident) == OID


@given(
    st.dictionaries(
        st.text(min_size=1).filter(lambda s: "\x00" not in s),
        st.one_of(
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=False),
            st.text().filter(lambda s: "\x00" not in s),
            st.binary(),
            st.booleans(),
            st.none(),
            st.datetimes(min_value=dt.datetime(1, 1, 1), timezones=st.just(UTC)).map(
                lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
            ),
            st.decimals(
                allow_nan=False,
                allow_infinity=False,
                places=4,
                min_value=-(10**20),
                max_value=10**20,
            ).map(Decimal128),
        ),
        max_size=8,
    )
)
def test_canonical_extended_json_round_trips_documents(doc):
    decoded = _decoded(doc)
    assert bson.encode(d.from_canonical(d.canonical(decoded))) == bson.encode(decoded)


# -- table mode ----------------------------------------------------------------------------------
def _shape(docs, depth=2, overflow=True):
    sample = d.Sample(depth)
    for doc in docs:
        sample.add(doc)
    columns, mixed = sample.columns()
    if overflow:
        columns.append(d.overflow_column())
    return d.TableShape(tuple(columns), depth=depth, overflow=overflow), mixed


def test_a_sample_flattens_nested_documents_to_a_depth():
    docs = [
        {"_id": OID, "name": "a", "addr": {"city": "x", "geo": {"lat": 1.5, "deep": {"z": 1}}}},
        {"_id": ObjectId(), "name": "b", "tags": ["t"], "n": Int64(5)},
        {"_id": ObjectId(), "name": None, "n": 3},
    ]
    shape, mixed = _shape(docs, depth=2)
    types = {c.name: c.type for c in shape.columns}
    # by the earliest place a field took in a document, then by name
    assert list(types) == ["_id", "name", "addr.city", "n", "tags", "addr.geo.lat",
                           "addr.geo.deep", "_overflow"]  # fmt: skip
    assert types["_id"] == Type.string(24) and types["_id"].native == "objectId"
    assert types["addr.geo.deep"].kind is Kind.JSON  # below the depth: JSON
    assert types["n"].kind is Kind.INT and types["n"].bits == 64  # int and long: int64
    assert not mixed
    row = dict(zip(shape.names, shape.row(docs[0]), strict=True))
    assert row["_id"] == str(OID) and row["addr.geo.deep"] == '{"z": 1}'
    assert row["_overflow"] is None and row["tags"] is None


def test_mixed_types_are_declared_with_the_mix_seen_and_kept_as_json():
    docs = [{"_id": i, "v": i} for i in range(3)] + [{"_id": 9, "v": "nine"}]
    shape, mixed = _shape(docs)
    v = shape.columns[1]
    assert v.type.kind is Kind.JSON and v.type.native == "mixed(int x3, string x1)"
    assert "int x3, string x1" in mixed["v"]
    assert [shape.row(doc)[1] for doc in docs] == ["0", "1", "2", '"nine"']


def test_what_fits_no_column_goes_to_overflow_never_dropped():
    shape, _ = _shape([{"_id": 1, "a": 1, "a.b": 2, "$weird": 3}])
    assert shape.names == ("_id", "a", "_overflow")  # odd names are never columns
    later = {"_id": 2, "a": "text now", "new": dt.datetime(2020, 1, 1, tzinfo=UTC), "a.b": 5}
    row = shape.row(later)
    assert row[1] is None
    extra = d.from_canonical(row[2])
    assert extra == {"a": "text now", "a.b": 5, "new": later["new"]}
    strict, _ = _shape([{"_id": 1, "a": 1}], overflow=False)
    with pytest.raises(ValueError, match="'new'"):
        strict.row({"_id": 1, "a": 1, "new": 1})


def test_a_dotted_name_and_a_nested_path_stay_apart_in_overflow():
    shape, _ = _shape([{"_id": 1, "z": 1}])
    row = shape.row({"_id": 2, "z": 1, "a": {"b": "nested"}, "a.b": "dotted", "$op": {"c.d": 1}})
    assert d.from_canonical(row[-1]) == {
        "a": {"b": "nested"}, "a.b": "dotted", "$op": {"c.d": 1}
    }  # fmt: skip


def test_an_id_that_does_not_fit_its_column_is_refused_by_name():
    shape, _ = _shape([{"_id": 1}])
    with pytest.raises(ValueError, match="document mode"):
        shape.row({"_id": "one"})
    mixed, _ = _shape([{"_id": 1}, {"_id": "one"}, {"_id": OID}])
    assert [mixed.key_of(x)["_id"] for x in (1, "one")] == ["1", '"one"']


def test_column_types_of_single_bson_types():
    assert d.column_type(Counter({"decimal": 2}))[0].kind is Kind.DECIMAL
    assert d.column_type(Counter({"date": 2, "null": 1}))[0] == Type.timestamp(3, tz=True)
    assert d.column_type(Counter({"regex": 1}))[0].native == "regex (canonical Extended JSON)"
    assert d.column_type(Counter({"null": 4}))[0].native == "null"


# -- the target side: portable -> BSON ------------------------------------------------------
@pytest.mark.parametrize(
    ("portable", "bson_type", "fidelity"),
    [
        (Type.int_(32), "int", Fidelity.EXACT),
        (Type.int_(64), "long", Fidelity.EXACT),
        (Type.int_(64, unsigned=True), "decimal", Fidelity.EXACT),
        (Type.decimal(12, 2), "decimal", Fidelity.EXACT),
        (Type.decimal(), "decimal", Fidelity.LOSSY),
        (Type.decimal(40, 2), "decimal", Fidelity.LOSSY),
        (Type.timestamp(3, tz=True), "date", Fidelity.EXACT),
        (Type.timestamp(6), "date", Fidelity.LOSSY),
        (Type.date(), "date", Fidelity.EXACT),
        (Type.time(6), "string", Fidelity.EXACT),
        (Type.bytes_(), "binData", Fidelity.EXACT),
        (Type.uuid(), "uuid", Fidelity.EXACT),
        (Type.json(), "object", Fidelity.EXACT),
        (Type.array(Type.int_(32)), "array", Fidelity.EXACT),
        (Type.other("tsvector"), "string", Fidelity.LOSSY),
    ],
)
def test_portable_types_map_to_bson_types(portable, bson_type, fidelity):
    target = DIALECT.target_type(portable, "postgresql")
    assert (target.sql, target.fidelity) == (bson_type, fidelity)
    assert fidelity is Fidelity.EXACT or target.reason


def test_adapters_make_bson_values():
    def adapt(t, v):
        a = DIALECT.target_type(t, "postgresql").adapt
        return v if a is None else a(v)

    assert adapt(Type.decimal(12, 2), Decimal("1.50")) == Decimal128("1.50")
    assert adapt(Type.timestamp(6, tz=True), dt.datetime(2020, 1, 1, 1, tzinfo=dt.timezone(
        dt.timedelta(hours=1)))) == dt.datetime(2020, 1, 1, tzinfo=UTC)  # fmt: skip
    assert adapt(Type.date(), dt.date(2020, 2, 29)) == dt.datetime(2020, 2, 29, tzinfo=UTC)
    assert adapt(Type.json(), '{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    assert adapt(Type.uuid(), EVERY_TYPE["uuid"]).subtype == 4
    with pytest.raises(ValueError, match="outside"):
        adapt(Type.date(), "infinity")


def test_names_mongodb_cannot_hold_are_problems():
    assert DIALECT.name_problem("a.b", "column")
    assert DIALECT.name_problem("$x", "column")
    assert DIALECT.name_problem("system.x", "table")
    assert DIALECT.name_problem("my db", "schema")
    assert DIALECT.name_problem("ok_name", "column") is None


def test_document_of_a_composite_key_is_a_subdocument_in_key_order():
    row = {"b": 2, "a": 1, "x": "v"}
    assert d.document_of(row, ("a", "b")) == {"_id": {"a": 1, "b": 2}, "x": "v"}
    assert list(d.document_of(row, ("b", "a"))["_id"]) == ["b", "a"]


# -- positions --------------------------------------------------------------------------------
def test_positions_round_trip_and_order_per_collection():
    p = MongoPosition.of({"shop.a": Resume.after({"_data": "8263A1"}), "shop.b": Resume(at=(5, 1))})
    assert Position.parse(str(p)) == p
    assert p.moved("shop.a", {"_data": "8263A2"}) > p
    nx = MongoPosition.of({"s.c": Resume.after({"_data": "nx:9"})})
    assert nx.moved("s.c", {"_data": "nx:10"}) > nx  # digits compare as numbers
    with pytest.raises(rk.ConfigError, match="MongoDB position"):
        Position.parse("mongo:not json")


def test_without_pymongo_the_error_says_which_extra_to_install(monkeypatch):
    import sys

    from replikit.endpoints.mongodb._connect import driver

    monkeypatch.setitem(sys.modules, "pymongo", None)
    with pytest.raises(rk.MissingDependencyError, match=r"replikit\[mongodb\]"):
        driver()
    ep = rk.endpoint("mongodb://h/db")  # naming the endpoint needs no driver
    with pytest.raises(rk.MissingDependencyError, match="pymongo"):
        ep.check()


# -- nothing dropped: every field of any document is in a column or in _overflow ----------------
_names = st.sampled_from(["a", "b", "c", "a.b", "$x", "_overflow", "d"])
_leaves = st.one_of(
    st.integers(-(2**40), 2**40), st.text(max_size=3), st.none(), st.booleans(),
    st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
)  # fmt: skip
_docs = st.recursive(
    _leaves, lambda inner: st.dictionaries(_names, inner, max_size=3), max_leaves=8
)


@given(
    st.lists(st.dictionaries(_names, _docs, max_size=4), min_size=1, max_size=6),
    st.integers(0, 3),
    st.integers(0, 2),
)
def test_table_mode_drops_nothing(docs, sampled, depth):
    docs = [{"_id": i, **doc} for i, doc in enumerate(docs)]
    shape, _ = _shape(docs[: max(1, sampled)], depth=depth)
    for doc in docs:
        row = dict(zip(shape.names, shape.row(doc), strict=True))
        extra = d.from_canonical(row["_overflow"]) if row["_overflow"] is not None else {}
        flat, odd = d.flatten({k: v for k, v in doc.items() if k != "_id"}, depth)
        leaves = {**{tuple(p.split(".")): v for p, v in flat.items()}, **odd}
        for path, value in leaves.items():
            kept = _at(extra, path)
            if kept is not _MISSING:
                assert d.canonical(kept) == d.canonical(value), path
            else:
                column = ".".join(path)
                assert path not in odd and column in row and column != "_overflow", path
                assert (row[column] is None) == (value is None), (path, value, row[column])


_MISSING = object()


def _at(doc, path):
    for name in path:
        if not isinstance(doc, dict) or name not in doc:
            return _MISSING
        doc = doc[name]
    return doc

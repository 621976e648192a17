"""MongoDB positions against a reload snapshot (sans-IO, Hypothesis): resume points order by
the cluster time a resume token begins with, a Timestamp ``(seconds, increment)`` compared as
that pair, and a change is in a snapshot read at cluster time ``S`` exactly when its time is
``S`` or before, whatever the other collections' points are.

The tokens here are built the way MongoDB 4.2+ writes ``_data`` (hex of a KeyString: the byte
130, the Timestamp as 8 big-endian bytes, then the rest of the event's key): the layout
MongoDB's own Kafka connector decodes (``ResumeTokenUtils``). No real MongoDB server was
available to take tokens from (docs/mongodb.md, "What was verified").
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from replikit.endpoints.mongodb._positions import MongoPosition, Resume, cluster_time_of
from replikit.positions import PgLsn, Position
from replikit.schema.model import TableId

UINT32 = 2**32
seconds = st.integers(0, UINT32 - 2)  # the last second (in 2106) has no next one
increments = st.integers(0, UINT32 - 1) | st.sampled_from([0, 1, UINT32 - 1])
times = st.tuples(seconds, increments)
suffixes = st.binary(max_size=40)


def token(
    time: tuple[int, int], rest: bytes = b"\x2b\x02", *, upper: bool = True
) -> dict[str, Any]:
    """A resume token of cluster time ``time`` as MongoDB 4.2+ writes it."""
    data = (bytes([130]) + ((time[0] << 32) | time[1]).to_bytes(8, "big") + rest).hex()
    return {"_data": data.upper() if upper else data}


def after(time: tuple[int, int], rest: bytes = b"\x2b\x02") -> Resume:
    return Resume.after(token(time, rest))


@given(times, suffixes, st.booleans())
def test_a_token_gives_the_cluster_time_it_begins_with(time, rest, upper):
    assert cluster_time_of(token(time, rest, upper=upper)) == time
    raw = bytes([130]) + ((time[0] << 32) | time[1]).to_bytes(8, "big") + rest
    assert cluster_time_of({"_data": raw}) == time  # MongoDB 3.6 and 4.0: binary _data
    assert after(time, rest).cluster_time == time


def test_tokens_of_other_forms_have_no_cluster_time():
    for doc in ({"_data": "nx:12"}, {"_data": "82ABC"}, {"_data": "01" * 9}, {}, {"_data": 5}):
        assert cluster_time_of(doc) is None
    assert Resume.after({"_data": "nx:3"}).cluster_time is None


@given(times, times, suffixes, suffixes)
def test_points_order_by_cluster_time_then_token(a, b, ra, rb):
    pa, pb = after(a, ra), after(b, rb)
    if a != b:
        assert (pa._key() < pb._key()) == (a < b)
    else:  # one time: the rest of the key, byte by byte (hex in either case)
        assert (pa._key() < pb._key()) == (ra < rb)
    assert (Resume(at=a)._key() < Resume(at=b)._key()) == (a < b)
    # a start time is before the changes of that time, after those before it
    assert Resume(at=a)._key() < after(a, ra)._key()
    assert (after(a, ra)._key() < Resume(at=b)._key()) == (a < b)


@given(times, times, suffixes)
def test_a_change_is_in_a_snapshot_exactly_when_its_time_is_at_or_before(change, snap, rest):
    ns = "shop.orders"
    at = MongoPosition.of({ns: after(change, rest)})  # the stream just after the change
    snapshot = MongoPosition.of({ns: Resume.after_time(snap)})
    assert (at <= snapshot) == (change <= snap)
    assert (at > snapshot) == (change > snap)
    assert (snapshot <= at) == (change > snap)  # the stream is past the snapshot


@given(times)
def test_the_point_after_a_snapshot_time_is_the_next_increment(snap):
    point = Resume.after_time(snap)
    assert point.at is not None and point.at > snap
    expected = (snap[0], snap[1] + 1) if snap[1] < UINT32 - 1 else (snap[0] + 1, 0)
    assert point.at == expected


@given(times, times, times, times)
def test_only_the_reloaded_collections_point_decides(table_time, other_time, start, snap):
    """A full position (two collections) against a reload snapshot of one of them: a change
    of the table is left out exactly when the table's point is at or before the snapshot;
    the stream is past it once the table's point is; the other collection's point (ahead
    or behind, a token or a start time) changes neither."""
    full = MongoPosition.of({"shop.other": after(other_time), "shop.table": after(table_time)})
    started = MongoPosition.of({"shop.other": after(other_time), "shop.table": Resume(at=start)})
    snapshot = MongoPosition.of(
        {"shop.other": Resume.after_time(snap), "shop.table": Resume.after_time(snap)}
    ).for_table(TableId("shop", "table"))
    assert snapshot.points == {"shop.table": Resume.after_time(snap)}
    assert (full <= snapshot) == (table_time <= snap)
    assert (full < snapshot) == (table_time <= snap)  # not past it: keep skipping
    assert (snapshot <= full) == (table_time > snap)
    assert (started <= snapshot) == (start <= Resume.after_time(snap).at)
    assert (started < snapshot) == (start < Resume.after_time(snap).at)
    assert Position.parse(str(snapshot)) == snapshot


def test_a_single_change_log_position_is_its_own_for_every_table():
    assert PgLsn(42).for_table(TableId("public", "t")) == PgLsn(42)


def test_nx_tokens_sort_after_timed_points_and_by_number():
    ns = "s.c"
    nx = MongoPosition.of({ns: Resume.after({"_data": "nx:9"})})
    assert nx.moved(ns, {"_data": "nx:10"}) > nx
    assert MongoPosition.of({ns: Resume(at=(2**31, 0))}) < nx

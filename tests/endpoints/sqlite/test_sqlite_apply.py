"""SqliteChangeWriter: CDC apply into real SQLite files, checked against a pure-Python model."""

from __future__ import annotations

import json
import math
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from _sqlite_util import endpoint, one_column_table, plan_for, raw_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replikit.changes import Change, Op, Transaction
from replikit.endpoints.sqlite import SqliteEndpoint
from replikit.endpoints.sqlite.apply import SqliteChangeWriter
from replikit.errors import ConfigError, DataError, SchemaError
from replikit.pipeline.contracts import Batch, ChangeWriter, Checkpoint
from replikit.positions import SqliteSeq
from replikit.schema.convert import TablePlan
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

SOURCE = TableSchema(
    id=TableId("public", "acct"),
    columns=(
        Column("id", Type.int_(64, native="bigint"), nullable=False),
        Column("name", Type.text(native="text")),
        Column("amount", Type.decimal(12, 2, native="numeric(12,2)")),
        Column("flag", Type.bool_(native="boolean")),
        Column("at", Type.timestamp(6, native="timestamp")),
        Column("u", Type.uuid(native="uuid")),
    ),
    primary_key=("id",),
)
PLAN = plan_for(SOURCE)
TID = PLAN.target_id
COLS = tuple(c.name for c in SOURCE.columns)
Row = dict[str, Any]


def _target(path: Path, rows: Sequence[Row] = (), plan: TablePlan = PLAN) -> SqliteEndpoint:
    """A target file whose table holds ``rows``, loaded by the full-load writer."""
    ep = endpoint(path)
    writer = ep.writer()
    writer.prepare([plan], "drop-and-create")
    names = tuple(c.source.name for c in plan.columns)
    writer.load(plan, [Batch(plan.source.id, names, [tuple(r[n] for n in names) for r in rows])])
    writer.finish([plan])
    return ep


def _contents(ep: SqliteEndpoint, table: str = "acct") -> dict[Any, Row]:
    reader = ep.reader([table])
    (schema,) = reader.tables
    out: dict[Any, Row] = {}
    for unit in reader.units(schema):
        for batch in reader.read(unit):
            for row in batch.rows:
                image = dict(zip(batch.columns, row, strict=True))
                out[image["id"]] = image
    return out


def _tx(seq: int, *changes: Change) -> Transaction:
    return Transaction(changes=changes, position=SqliteSeq(seq))


def _row(i: int, name: str = "x", amount: str = "1.50") -> Row:
    return {
        "id": i,
        "name": name,
        "amount": Decimal(amount),
        "flag": i % 2 == 0,
        "at": datetime(2024, 1, 2, 3, 4, 5, i),
        "u": UUID(int=i),
    }


def _ins(row: Row) -> Change:
    return Change(Op.INSERT, TID, key={"id": row["id"]}, after=row)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[SqliteEndpoint]:
    ep = _target(tmp_path / "t.db", [_row(1), _row(2)])
    yield ep
    ep.close()


# -- contract basics ----------------------------------------------------------------------


def test_endpoint_gives_a_change_writer(target: SqliteEndpoint) -> None:
    writer = target.change_writer()
    assert isinstance(writer, SqliteChangeWriter)
    assert isinstance(writer, ChangeWriter)
    with pytest.raises(ConfigError, match="nope"):
        target.change_writer(nope=1)


def test_checkpoints_round_trip_and_are_not_user_tables(target: SqliteEndpoint) -> None:
    writer = target.change_writer()
    assert writer.read_checkpoint("t1") is None  # no control table yet
    first = Checkpoint("t1", start=SqliteSeq(5), phase="full-load", loaded=frozenset({"a.b"}))
    writer.write_checkpoint(first)
    assert writer.read_checkpoint("t1") == first
    ts = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    second = Checkpoint("t1", start=SqliteSeq(5), position=SqliteSeq(9), commit_ts=ts)
    writer.write_checkpoint(second)
    writer.write_checkpoint(Checkpoint("t2"))
    assert writer.read_checkpoint("t1") == second
    assert writer.read_checkpoint("t2") == Checkpoint("t2")
    assert [t.id.name for t in target.reflect().tables] == ["acct"]
    writer.drop_control("t1")
    assert writer.read_checkpoint("t1") is None
    assert writer.read_checkpoint("t2") == Checkpoint("t2")
    writer.drop_control("t2")
    writer.drop_control("t2")  # idempotent
    assert target.path is not None
    with sqlite3.connect(target.path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "replikit_checkpoints" not in names


def test_apply_commits_changes_and_checkpoint_together(target: SqliteEndpoint) -> None:
    writer = target.change_writer()
    moved = {**_row(2, "moved"), "id": 20}
    txs = [
        _tx(1, _ins(_row(3, "new"))),
        _tx(2, Change(Op.UPDATE, TID, key={"id": 1}, after={"name": "renamed"})),  # partial
        _tx(3, Change(Op.UPDATE, TID, key={"id": 2}, before=_row(2), after=moved)),  # key move
        _tx(4, Change(Op.DELETE, TID, key={"id": 3}, before=_row(3, "new"))),
    ]
    for batch in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            ep = _target(Path(tmp) / "t.db", [_row(1), _row(2)])
            cp = Checkpoint("t", start=SqliteSeq(0), position=SqliteSeq(4))
            ep.change_writer().apply({TID: PLAN}, txs, checkpoint=cp, batch=batch)
            assert _contents(ep) == {1: {**_row(1), "name": "renamed"}, 20: moved}
            assert ep.change_writer().read_checkpoint("t") == cp
            ep.close()
    writer.close()


@pytest.mark.parametrize("batch", [False, True])
def test_empty_and_key_moving_partial_updates(target: SqliteEndpoint, batch: bool) -> None:
    txs = [
        _tx(1, Change(Op.UPDATE, TID, key={"id": 1}, after={})),  # nothing to set
        _tx(2, Change(Op.UPDATE, TID, key={"id": 2}, after={"id": 9, "name": "moved"})),
        _tx(3, Change(Op.UPDATE, TID, key={"id": 9}, after={"amount": Decimal("2.25")})),
        _tx(4, _ins(_row(2, "reused"))),
    ]
    target.change_writer().apply({TID: PLAN}, txs, checkpoint=None, batch=batch)
    moved = {**_row(2), "id": 9, "name": "moved", "amount": Decimal("2.25")}
    assert _contents(target) == {1: _row(1), 2: _row(2, "reused"), 9: moved}


def test_truncate_then_inserts_in_one_batch(target: SqliteEndpoint) -> None:
    txs = [_tx(1, Change(Op.TRUNCATE, TID)), _tx(2, _ins(_row(7)))]
    target.change_writer().apply({TID: PLAN}, txs, checkpoint=None, batch=True)
    assert list(_contents(target)) == [7]


# -- atomicity and errors -----------------------------------------------------------------


@pytest.mark.parametrize("batch", [False, True])
def test_bad_value_rolls_back_everything_and_names_the_row(
    target: SqliteEndpoint, batch: bool
) -> None:
    writer = target.change_writer()
    before_cp = Checkpoint("t", start=SqliteSeq(0), position=SqliteSeq(1))
    writer.write_checkpoint(before_cp)
    before = _contents(target)
    bad = _row(9, amount="1.50")
    bad["amount"] = Decimal("12345678901234567.25")  # more digits than NUMERIC (REAL) keeps
    txs = [
        _tx(2, _ins(_row(5)), Change(Op.DELETE, TID, key={"id": 1})),
        _tx(3, _ins(_row(6)), _ins(bad), _ins(_row(8))),
    ]
    cp = Checkpoint("t", start=SqliteSeq(0), position=SqliteSeq(3))
    with pytest.raises(DataError, match="cannot be stored exactly") as info:
        writer.apply({TID: PLAN}, txs, checkpoint=cp, batch=batch)
    assert (info.value.table, info.value.column, info.value.key) == ("acct", "amount", {"id": 9})
    assert _contents(target) == before
    assert writer.read_checkpoint("t") == before_cp
    # the writer is still usable after the failed transaction
    writer.apply({TID: PLAN}, txs[:1], checkpoint=cp, batch=batch)
    assert set(_contents(target)) == {2, 5}


@pytest.mark.parametrize("batch", [False, True])
def test_sqlite_refusal_names_table_key_and_column(tmp_path: Path, batch: bool) -> None:
    strict = TableSchema(
        id=TableId("public", "acct"),
        columns=(*SOURCE.columns[:1], Column("name", Type.text(), nullable=False)),
        primary_key=("id",),
    )
    plan = plan_for(strict)
    ep = _target(tmp_path / "s.db", plan=plan)
    rows = [{"id": i, "name": "ok"} for i in range(5)] + [{"id": 7, "name": None}]
    txs = [_tx(1, *(Change(Op.INSERT, TID, key={"id": r["id"]}, after=r) for r in rows))]
    with pytest.raises(DataError, match="NOT NULL") as info:
        ep.change_writer().apply({TID: plan}, txs, checkpoint=None, batch=batch)
    assert (info.value.table, info.value.column, info.value.key) == ("acct", "name", {"id": 7})
    assert _contents(ep) == {}
    ep.close()


def test_unplanned_columns_tables_and_keyless_targets_are_schema_errors(
    target: SqliteEndpoint, tmp_path: Path
) -> None:
    writer = target.change_writer()
    extra = Change(Op.INSERT, TID, key={"id": 5}, after={**_row(5), "surprise": 1})
    with pytest.raises(SchemaError, match="surprise"):
        writer.apply({TID: PLAN}, [_tx(1, extra)], checkpoint=None, batch=False)
    other = Change(Op.INSERT, TableId(None, "other"), key={"id": 1}, after={"id": 1})
    with pytest.raises(SchemaError, match="other"):
        writer.apply({TID: PLAN}, [_tx(1, other)], checkpoint=None, batch=True)
    keyless = plan_for(TableSchema(TableId("public", "bag"), (Column("v", Type.text()),)))
    bag = _target(tmp_path / "k.db", plan=keyless)
    change = Change(Op.DELETE, keyless.target_id, key={}, before={"v": "a"})
    for batch in (False, True):
        with pytest.raises(SchemaError, match="no primary key"):
            bag.change_writer().apply(
                {keyless.target_id: keyless}, [_tx(1, change)], checkpoint=None, batch=batch
            )
    bag.close()


def test_add_columns_is_idempotent_and_then_applies(target: SqliteEndpoint) -> None:
    wider = TableSchema(
        id=SOURCE.id,
        columns=(*SOURCE.columns, Column("note", Type.string(20), default="'n/a'")),
        primary_key=("id",),
    )
    plan = plan_for(wider)
    writer = target.change_writer()
    writer.add_columns(plan, plan.columns[-1:])
    writer.add_columns(plan, plan.columns[-1:])
    assert _contents(target)[1]["note"] == "n/a"  # existing rows get the default
    row = {**_row(4), "note": "hello"}
    writer.apply({TID: plan}, [_tx(1, _ins(row))], checkpoint=None, batch=True)
    assert _contents(target)[4] == row
    missing = plan_for(TableSchema(TableId("public", "nope"), SOURCE.columns, primary_key=("id",)))
    with pytest.raises(SchemaError, match="does not exist"):
        writer.add_columns(missing, missing.columns[-1:])


# -- values land exactly as the full load writes them --------------------------------------

TYPED_VALUES: list[tuple[Type, list[Any]]] = [
    (Type.decimal(native="numeric"), [Decimal("12345678901234567890.125"), Decimal("NaN")]),
    (Type.decimal(15, 2), [Decimal("1.50"), Decimal("-0.01"), Decimal("Infinity")]),
    (Type.float_(64, native="float8"), [0.1, math.nan, math.inf, -0.0, 1e308]),
    (Type.float_(32, native="real"), [1.5, -2.25]),
    (Type.int_(64), [-(2**63), 2**63 - 1, 0]),
    (Type.int_(16), [-32768, 7]),
    (Type.int_(64, unsigned=True), [2**64 - 1, 2**63, 0]),
    (Type.text(), ["Zoë 🚀", "nul\x00inside", ""]),
    (Type.string(5), ["abc", ""]),
    (Type.bytes_(), [b"\x00\xff", b""]),
    (Type.date(), [date(2024, 2, 29), "infinity", "0044-03-15 BC"]),
    (Type.timestamp(6), [datetime(2024, 2, 29, 13, 45, 1, 123456), "-infinity"]),
    (Type.timestamp(tz=True), [datetime(2024, 5, 1, 10, 0, tzinfo=UTC)]),
    (Type.time(), [time(23, 59, 59, 999999), time(0)]),
    (Type.json(binary=True), ['{"a": 1e400}', "1.50"]),
    (Type.uuid(), [UUID(int=1), UUID("12345678-1234-5678-1234-567812345678")]),
    (Type.bool_(), [True, False]),
    (Type.interval(), ["P1Y2M3DT4H5M6S"]),
    (Type.array(Type.decimal()), [[Decimal("1.50"), None], []]),
    (Type.enum(("happy", "it's ok")), ["happy", "it's ok"]),
]


@pytest.mark.parametrize(("ptype", "values"), TYPED_VALUES, ids=lambda v: str(v)[:30])
def test_every_type_lands_exactly_as_full_load_writes_it(
    tmp_path: Path, ptype: Type, values: list[Any]
) -> None:
    plan = plan_for(one_column_table("t", ptype))
    tid = plan.target_id
    rows = [{"id": i, "v": v} for i, v in enumerate([*values, None])]
    full = _target(tmp_path / "full.db", rows, plan=plan)
    inserted = _target(tmp_path / "ins.db", plan=plan)
    updated = _target(tmp_path / "upd.db", [{"id": r["id"], "v": None} for r in rows], plan=plan)
    inserts = [_tx(1, *(Change(Op.INSERT, tid, key={"id": r["id"]}, after=r) for r in rows))]
    inserted.change_writer().apply({tid: plan}, inserts, checkpoint=None, batch=True)
    updates = [
        _tx(i + 1, Change(Op.UPDATE, tid, key={"id": r["id"]}, after={"v": r["v"]}))
        for i, r in enumerate(rows)
    ]
    updated.change_writer().apply({tid: plan}, updates, checkpoint=None, batch=False)
    expected = raw_rows(tmp_path / "full.db", "t")
    assert raw_rows(tmp_path / "ins.db", "t") == expected
    assert raw_rows(tmp_path / "upd.db", "t") == expected
    for ep in (full, inserted, updated):
        ep.close()


def test_keys_of_adapted_types_are_matched(tmp_path: Path) -> None:
    table = TableSchema(
        id=TableId("public", "k"),
        columns=(
            Column("u", Type.uuid(), nullable=False),
            Column("d", Type.decimal(native="numeric"), nullable=False),
            Column("v", Type.text()),
        ),
        primary_key=("u", "d"),
    )
    plan = plan_for(table)
    key = {"u": UUID(int=7), "d": Decimal("1.10")}
    ep = _target(tmp_path / "k.db", [{**key, "v": "a"}], plan=plan)
    tid = plan.target_id
    for batch in (False, True):
        txs = [
            _tx(1, Change(Op.UPDATE, tid, key=key, after={"v": f"b{batch}"})),
            _tx(2, Change(Op.INSERT, tid, key=key, after={**key, "v": f"c{batch}"})),
        ]
        ep.change_writer().apply({tid: plan}, txs, checkpoint=None, batch=batch)
        assert raw_rows(tmp_path / "k.db", "k") == [
            (str(key["u"]), "text", "1.10", "text", f"c{batch}", "text")
        ]
        ep.change_writer().apply(
            {tid: plan}, [_tx(3, Change(Op.DELETE, tid, key=key))], checkpoint=None, batch=batch
        )
        assert raw_rows(tmp_path / "k.db", "k") == []
        ep.change_writer().apply({tid: plan}, txs[1:], checkpoint=None, batch=batch)
    ep.close()


# -- property: random change streams == a pure-Python model --------------------------------

names = st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
amounts = st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False)
stamps = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
values = {
    "name": st.one_of(st.none(), names),
    "amount": st.one_of(st.none(), amounts),
    "flag": st.one_of(st.none(), st.booleans()),
    "at": st.one_of(st.none(), stamps),
    "u": st.one_of(st.none(), st.uuids()),
}
KEYS = st.integers(0, 12)


def _draw_change(data: st.DataObject, model: dict[int, Row]) -> Change:
    kinds = ["insert", "truncate"] + (["update", "partial", "delete"] if model else [])
    kind = data.draw(st.sampled_from(kinds))
    if kind == "truncate":
        model.clear()
        return Change(Op.TRUNCATE, TID)
    if kind == "insert":
        key = data.draw(KEYS.filter(lambda k: k not in model))
        row = {"id": key, **{c: data.draw(s) for c, s in values.items()}}
        model[key] = row
        return _ins(dict(row))
    old = data.draw(st.sampled_from(sorted(model)))
    if kind == "delete":
        return Change(Op.DELETE, TID, key={"id": old}, before=dict(model.pop(old)))
    moves = data.draw(st.booleans())
    new = data.draw(KEYS.filter(lambda k: k not in model)) if moves else old
    cols = list(values) if kind == "update" else data.draw(st.sets(st.sampled_from(list(values))))
    after: Row = {c: data.draw(values[c]) for c in cols}
    if kind == "update" or moves:
        after["id"] = new
    before = dict(model.pop(old))
    model[new] = {**before, **after}
    return Change(Op.UPDATE, TID, key={"id": old}, before=before, after=after)


def _split(data: st.DataObject, items: list[Any]) -> list[list[Any]]:
    out: list[list[Any]] = []
    while items:
        n = data.draw(st.integers(1, max(1, len(items))))
        out.append(items[:n])
        items = items[n:]
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_change_streams_match_the_model_and_replay_converges(data: st.DataObject) -> None:
    initial = {i: _row(i, f"r{i}") for i in data.draw(st.sets(KEYS, max_size=4))}
    model = {k: dict(v) for k, v in initial.items()}
    changes = [_draw_change(data, model) for _ in range(data.draw(st.integers(0, 25)))]
    txs = [_tx(i + 1, *chunk) for i, chunk in enumerate(_split(data, changes))]
    batches = _split(data, txs)
    partial_moves = any(
        c.op is Op.UPDATE and c.after and "id" in c.after and len(c.after) < len(COLS)
        for c in changes
    )
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (False, True):
            ep = _target(Path(tmp) / f"{batch}.db", list(initial.values()))
            writer = ep.change_writer()
            for group in batches:
                cp = Checkpoint("t", start=SqliteSeq(0), position=group[-1].position)
                writer.apply({TID: PLAN}, group, checkpoint=cp, batch=batch)
                assert writer.read_checkpoint("t") == cp
            assert _contents(ep) == model
            if batches and not partial_moves:  # a crash replay from any checkpoint converges
                start = data.draw(st.integers(0, len(batches) - 1))
                for group in batches[start:]:
                    writer.apply(
                        {TID: PLAN}, group, checkpoint=None, batch=data.draw(st.booleans())
                    )
                assert _contents(ep) == model
            ep.close()


def test_replay_of_a_partial_update_after_the_row_was_deleted_is_harmless(
    target: SqliteEndpoint,
) -> None:
    txs = [
        _tx(1, Change(Op.UPDATE, TID, key={"id": 1}, after={"name": "p"})),
        _tx(2, Change(Op.DELETE, TID, key={"id": 1})),
        _tx(3, _ins(_row(1, "again"))),
    ]
    writer = target.change_writer()
    for batch in (True, False, True):
        writer.apply({TID: PLAN}, txs, checkpoint=None, batch=batch)
        assert _contents(target)[1] == _row(1, "again")


def test_json_of_checkpoint_loaded_set_is_sorted(target: SqliteEndpoint) -> None:
    writer = target.change_writer()
    writer.write_checkpoint(Checkpoint("t", phase="full-load", loaded=frozenset({"b", "a"})))
    assert target.path is not None
    with sqlite3.connect(target.path) as conn:
        (loaded,) = conn.execute("SELECT loaded FROM replikit_checkpoints").fetchone()
    assert json.loads(loaded) == ["a", "b"]

"""PostgresChangeWriter: values as in full load, checkpoints, atomicity, errors, schema changes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from _pg_schema import SCHEMA_SQL, add_primary_keys

import replikit as rk
from replikit._failpoints import inject
from replikit.changes import Change, Op, Transaction
from replikit.endpoints.postgres.apply import PostgresChangeWriter
from replikit.mapping import Selection
from replikit.pipeline.contracts import ChangeWriter, Checkpoint
from replikit.pipeline.lease import Lease
from replikit.positions import PgLsn, SqliteSeq
from replikit.schema.convert import TablePlan, link_foreign_keys, plan_table
from replikit.schema.model import Column, TableId
from replikit.schema.types import Type

# name -> (batch, bulk_min_rows): COPY-staged merges, statements, transactional
MODES = {"staged": (True, 1), "statements": (True, 10**9), "transactional": (False, 100)}


def _plans(url: str, sql: str, target: str = "dst", source: str = "src") -> list[TablePlan]:
    """Run ``sql``, plan the tables of schema ``source`` into ``target``, create them there."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)
    ep = rk.endpoint(url)
    tables = ep.reflect(Selection(include=(f"{source}.%",))).tables
    plans = link_foreign_keys(
        [
            plan_table(t, source_dialect="postgresql", target=ep.dialect,
                       target_id=TableId(target, t.id.name))
            for t in tables
        ]
    )  # fmt: skip
    ep.writer().prepare(plans, "drop-and-create")
    add_primary_keys(url, plans)
    return plans



def _by_id(plans: list[TablePlan]) -> dict[TableId, TablePlan]:
    return {p.target_id: p for p in plans}


def _rows(url: str, table: str | TableId) -> list[tuple[Any, ...]]:
    with rk.endpoint(url).reader([table]) as reader:
        (t,) = reader.tables
        rows = [tuple(r) for u in reader.units(t) for b in reader.read(u) for r in b.rows]
    return sorted(rows, key=lambda r: r[0])


def _norm(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "float-nan"
    if isinstance(value, Decimal) and value.is_nan():
        return "decimal-nan"
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    return value


def _writer(url: str, mode: str) -> PostgresChangeWriter:
    writer = rk.endpoint(url).change_writer(bulk_min_rows=MODES[mode][1])
    assert isinstance(writer, PostgresChangeWriter)
    return writer


def _apply(writer: Any, plans: list[TablePlan], mode: str, *changes: Change, **kw: Any) -> None:
    tx = Transaction(tuple(changes), kw.pop("position", PgLsn(1)))
    writer.apply(_by_id(plans), [tx], checkpoint=kw.pop("checkpoint", None), batch=MODES[mode][0])


def test_writer_implements_the_protocol_and_hides_the_password(pg_url: str) -> None:
    with rk.endpoint(pg_url).change_writer() as writer:
        assert isinstance(writer, ChangeWriter)
    writer = rk.endpoint("postgresql://u:s3cret@127.0.0.1:1/db").change_writer()
    assert "s3cret" not in repr(writer)
    with pytest.raises(rk.ConfigError):
        rk.endpoint(pg_url).change_writer(bulk_rows=5)  # unknown options are refused


# -- values land exactly as a full load writes them -------------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
def test_kitchen_sink_inserts_updates_deletes_match_full_load(pg_url: str, mode: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
    full = _plans(pg_url, "", target="full", source="shop")
    plans = _plans(pg_url, "", target="cdc", source="shop")
    ep = rk.endpoint(pg_url)
    source: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {}
    writer = ep.writer()
    with ep.reader([p.source for p in full]) as reader:
        for plan in full:
            (unit,) = reader.units(plan.source)
            batches = list(reader.read(unit))
            writer.load(plan, batches)
            source[plan.source.id.name] = (batches[0].columns, [r for b in batches for r in b.rows])
    inserts = [
        Change(Op.INSERT, TableId("cdc", name), after=dict(zip(cols, row, strict=True)))
        for name, (cols, rows) in sorted(source.items(), key=lambda kv: kv[0] != "parent")
        for row in rows
    ]
    with _writer(pg_url, mode) as cdc:
        _apply(cdc, plans, mode, *inserts)
        for name in ("parent", "kitchen"):
            want = [_norm(r) for r in _rows(pg_url, f"full.{name}")]
            assert [_norm(r) for r in _rows(pg_url, f"cdc.{name}")] == want, name

        # full images rotated between rows, then partial images, then a delete
        cols, rows = source["kitchen"]
        rows = sorted(rows, key=lambda r: r[0])
        tid = TableId("cdc", "kitchen")
        expected = {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
        changes = []
        for i, row in enumerate(rows):
            image = dict(zip(cols, rows[(i + 1) % len(rows)], strict=True)) | {"id": row[0]}
            changes.append(Change(Op.UPDATE, tid, key={"id": row[0]}, after=image))
            expected[row[0]] = image
        for i, row in enumerate(rows):
            other = dict(zip(cols, rows[(i + 2) % len(rows)], strict=True))
            part = {c: other[c] for c in cols[1::2]}
            changes.append(Change(Op.UPDATE, tid, key={"id": row[0]}, after=part))
            expected[row[0]] = expected[row[0]] | part
        changes.append(Change(Op.DELETE, tid, key={"id": rows[-1][0]}))
        del expected[rows[-1][0]]
        _apply(cdc, plans, mode, *changes)
    want = [_norm(tuple(image[c] for c in cols)) for _, image in sorted(expected.items())]
    assert [_norm(r) for r in _rows(pg_url, "cdc.kitchen")] == want


def test_values_go_through_the_planned_adapters(pg_url: str) -> None:
    (plan,) = _plans(pg_url, "CREATE SCHEMA src; CREATE TABLE src.t (k text PRIMARY KEY, v text)")
    upper = [
        dataclasses.replace(c, target=dataclasses.replace(c.target, adapt=str.upper))
        for c in plan.columns
    ]
    plan = dataclasses.replace(plan, columns=tuple(upper))
    tid = plan.target_id
    for mode in MODES:
        with _writer(pg_url, mode) as writer:
            _apply(writer, [plan], mode, Change(Op.INSERT, tid, after={"k": "a", "v": "x"}))
            _apply(writer, [plan], mode, Change(Op.UPDATE, tid, key={"k": "a"}, after={"v": "y"}))
            assert _rows(pg_url, "dst.t") == [("A", "Y")], mode
            _apply(writer, [plan], mode, Change(Op.DELETE, tid, key={"k": "a"}))
            assert _rows(pg_url, "dst.t") == [], mode


@pytest.mark.parametrize("mode", list(MODES))
def test_partial_images_never_null_or_create_rows(pg_url: str, mode: str) -> None:
    (plan,) = _plans(pg_url, "CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, a text, "
                             "b text NOT NULL, c int)")  # fmt: skip
    tid = plan.target_id
    with _writer(pg_url, mode) as writer:
        _apply(writer, [plan], mode, Change(Op.INSERT, tid, after={"id": 1, "a": "a", "b": "b"}))
        _apply(
            writer,
            [plan],
            mode,
            Change(Op.UPDATE, tid, key={"id": 1}, after={"id": 1, "a": "A"}),  # b, c unchanged
            Change(Op.UPDATE, tid, key={"id": 7}, after={"a": "ghost"}),  # row not in target
            Change(Op.UPDATE, tid, key={"id": 1}, after={"c": 3}),
        )
    # an insert whose image lacks c: c takes NULL (the target default), never a value
    assert _rows(pg_url, "dst.t") == [(1, "A", "b", 3)]


@pytest.mark.parametrize("mode", list(MODES))
def test_odd_identifiers_and_composite_keys(pg_url: str, mode: str) -> None:
    ddl = (
        'CREATE SCHEMA src; CREATE TABLE src."we%ird ""t""" ('
        '"k%s" int, "K""2" text, "v%%" text, PRIMARY KEY ("k%s", "K""2"))'
    )
    (plan,) = _plans(pg_url, ddl)
    tid = plan.target_id
    assert tid == TableId("dst", 'we%ird "t"')
    row = {"k%s": 1, 'K"2': "x", "v%%": "%s"}
    key = {"k%s": 1, 'K"2': "x"}
    with _writer(pg_url, mode) as writer:
        _apply(writer, [plan], mode, Change(Op.INSERT, tid, after=row))
        _apply(writer, [plan], mode, Change(Op.UPDATE, tid, key=key, after=row | {"k%s": 2}))
        assert _rows(pg_url, tid) == [(2, "x", "%s")]
        _apply(
            writer, [plan], mode, Change(Op.UPDATE, tid, key=key | {"k%s": 2}, after={"v%%": "y"})
        )
        assert _rows(pg_url, tid) == [(2, "x", "y")]
        _apply(writer, [plan], mode, Change(Op.DELETE, tid, key=key | {"k%s": 2}))
        assert _rows(pg_url, tid) == []


# -- foreign keys and truncates -------------------------------------------------------------
FK_SQL = """
CREATE SCHEMA src;
CREATE TABLE src.parent (id int PRIMARY KEY, name text);
CREATE TABLE src.child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES src.parent (id));
"""


@pytest.mark.parametrize("mode", list(MODES))
def test_batches_respect_foreign_keys_and_truncate_together(pg_url: str, mode: str) -> None:
    plans = _plans(pg_url, FK_SQL)
    rk.endpoint(pg_url).writer().finish(plans)  # the target now has the foreign key
    parent, child = TableId("dst", "parent"), TableId("dst", "child")
    with _writer(pg_url, mode) as writer:
        _apply(writer, plans, mode,
               Change(Op.INSERT, parent, after={"id": 1, "name": "p"}),
               Change(Op.INSERT, child, after={"id": 10, "parent_id": 1}))  # fmt: skip
        assert _rows(pg_url, "dst.child") == [(10, 1)]
        _apply(writer, plans, mode,
               Change(Op.DELETE, child, key={"id": 10}),
               Change(Op.DELETE, parent, key={"id": 1}),
               Change(Op.INSERT, parent, after={"id": 2, "name": "q"}),
               Change(Op.INSERT, child, after={"id": 11, "parent_id": 2}))  # fmt: skip
        assert (_rows(pg_url, "dst.parent"), _rows(pg_url, "dst.child")) == ([(2, "q")], [(11, 2)])
        # the source truncated both tables in one statement
        _apply(writer, plans, mode, Change(Op.TRUNCATE, child), Change(Op.TRUNCATE, parent),
               Change(Op.INSERT, parent, after={"id": 3, "name": "r"}))  # fmt: skip
    assert (_rows(pg_url, "dst.parent"), _rows(pg_url, "dst.child")) == ([(3, "r")], [])


# -- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_write_read_drop(pg_url: str) -> None:
    writer = rk.endpoint(pg_url).change_writer()
    other = rk.endpoint(pg_url).change_writer()
    with writer, other:
        assert writer.read_checkpoint("a") is None  # no control table yet
        first = Checkpoint("a", start=PgLsn(5), phase="full-load", loaded=frozenset({"s.t1"}))
        writer.write_checkpoint(first)
        assert other.read_checkpoint("a") == first
        assert other.read_checkpoint("b") is None  # table, but no row
        ts = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
        second = dataclasses.replace(first, position=PgLsn(2**32 + 9), phase="cdc",
                                     loaded=frozenset({"s.t1", "s.t2"}), commit_ts=ts)  # fmt: skip
        writer.write_checkpoint(second)
        assert other.read_checkpoint("a") == second
        other.write_checkpoint(Checkpoint("b", start=SqliteSeq(3)))
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(
                "SELECT start_position, position, phase, loaded, updated_at IS NOT NULL "
                "FROM replikit.replikit_checkpoints WHERE task = 'a'"
            ).fetchone()
        assert row == ("pg:0/5", "pg:1/9", "cdc", '["s.t1", "s.t2"]', True)
        writer.drop_control("a")
        assert writer.read_checkpoint("a") is None
        assert writer.read_checkpoint("b") == Checkpoint("b", start=SqliteSeq(3))
        writer.drop_control("b")
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT to_regnamespace('replikit')").fetchone() == (None,)
        writer.drop_control("b")  # nothing left: no error
        writer.write_checkpoint(first)  # recreated on demand
        assert other.read_checkpoint("a") == first


def test_control_schema_is_not_reflected(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    ep = rk.endpoint(pg_url)
    with ep.change_writer() as writer:
        writer.write_checkpoint(Checkpoint("task"))
    assert [str(t.id) for t in ep.reflect().tables] == ["public.t"]


@pytest.mark.parametrize("mode", list(MODES))
def test_checkpoint_commits_with_the_data(pg_url: str, mode: str) -> None:
    (plan,) = _plans(pg_url, "CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, v text)")
    tid = plan.target_id
    with _writer(pg_url, mode) as writer, _writer(pg_url, mode) as reader:
        cp = Checkpoint("t", start=PgLsn(1), position=PgLsn(2))
        _apply(writer, [plan], mode, Change(Op.INSERT, tid, after={"id": 1, "v": "a"}),
               checkpoint=cp)  # fmt: skip
        assert reader.read_checkpoint("t") == cp
        assert _rows(pg_url, "dst.t") == [(1, "a")]
        # an empty run of transactions still moves the checkpoint
        writer.apply({tid: plan}, [], checkpoint=dataclasses.replace(cp, position=PgLsn(3)),
                     batch=MODES[mode][0])  # fmt: skip
        assert reader.read_checkpoint("t") == dataclasses.replace(cp, position=PgLsn(3))


@pytest.mark.parametrize("mode", list(MODES))
def test_a_fenced_transaction_waits_for_its_commit_idle_in_transaction(
    pg_url: str, mode: str
) -> None:
    """Between the fence (a share lock on the lease row) and COMMIT the server must wait in a
    state idle_in_transaction_session_timeout reaches: a writer frozen right there (a GC
    stall, a frozen VM) then loses its transaction with its lease, and a standby's takeover
    is not held up. A pipeline left unsynced at that point ('active') waited forever."""
    (plan,) = _plans(pg_url, "CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, v text)")
    lease = Lease(rk.endpoint(pg_url), "fenced", duration=30, member="m")
    assert lease.acquire()
    states: list[tuple[Any, ...]] = []

    def look() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            states.extend(
                conn.execute(
                    "SELECT state FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND query ILIKE '%%replikit_leases%%FOR SHARE%%'"
                ).fetchall()
            )

    with _writer(pg_url, mode) as writer, inject("apply.before-commit", look):
        writer.fence = lease
        cp = Checkpoint("fenced", start=PgLsn(1), position=PgLsn(2))
        _apply(writer, [plan], mode, Change(Op.INSERT, plan.target_id, after={"id": 1, "v": "a"}),
               checkpoint=cp)  # fmt: skip
    assert states == [("idle in transaction",)]
    assert _rows(pg_url, "dst.t") == [(1, "a")]


# -- errors ----------------------------------------------------------------------------------
BAD_VALUES = {
    "out-of-range": ({"small": 70000}, "small"),
    "nul-character": ({"s": "a\x00b"}, "s"),
    "too-long": ({"s": "x" * 11}, "s"),
    "check-constraint": ({"small": -1}, None),  # a constraint, not a column, refuses it
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_bad_value_commits_nothing_and_names_key_and_column(
    pg_url: str, mode: str, bad: str
) -> None:
    ddl = ("CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, s varchar(10), "
           "small smallint CHECK (small >= 0))")  # fmt: skip
    (plan,) = _plans(pg_url, ddl)
    rk.endpoint(pg_url).writer().finish([plan])
    tid = plan.target_id
    values, column = BAD_VALUES[bad]
    with _writer(pg_url, mode) as writer:
        good = Checkpoint("t", position=PgLsn(1))
        ok = {"s": "ok", "small": 1}
        _apply(writer, [plan], mode, Change(Op.INSERT, tid, after={"id": 1} | ok),
               checkpoint=good)  # fmt: skip
        changes = [
            Change(Op.INSERT, tid, after={"id": 2} | ok),
            Change(Op.UPDATE, tid, key={"id": 1}, after={"s": "changed"}),
            Change(Op.INSERT, tid, after={"id": 3} | ok | values),
            Change(Op.DELETE, tid, key={"id": 1}),
            *(Change(Op.INSERT, tid, after={"id": 100 + i} | ok) for i in range(20)),
        ]
        with pytest.raises(rk.DataError) as info:
            _apply(writer, [plan], mode, *changes,
                   checkpoint=Checkpoint("t", position=PgLsn(2)))  # fmt: skip
        assert (info.value.table, info.value.key, info.value.column) == ("dst.t", {"id": 3}, column)
        assert _rows(pg_url, "dst.t") == [(1, "ok", 1)]
        assert writer.read_checkpoint("t") == good
        # the writer is still usable, and so is the same batch without the bad change
        del changes[2]
        _apply(writer, [plan], mode, *changes, checkpoint=Checkpoint("t", position=PgLsn(2)))
        assert len(_rows(pg_url, "dst.t")) == 21


def test_plans_and_keys_are_checked_before_writing(pg_url: str) -> None:
    ddl = """CREATE SCHEMA src;
        CREATE TABLE src.nokey (a int, b text);
        CREATE TABLE src.t (id int PRIMARY KEY, v text);"""
    plans = {p.target_id.name: p for p in _plans(pg_url, ddl)}
    nokey, t = plans["nokey"], plans["t"]
    with rk.endpoint(pg_url).change_writer() as writer:
        for batch in (True, False):
            insert = Change(Op.INSERT, nokey.target_id, after={"a": 1, "b": "x"})
            tx = Transaction((insert,), PgLsn(1))
            with pytest.raises(rk.ConfigError, match=r"dst\.nokey has no primary key"):
                writer.apply(_by_id([nokey]), [tx], checkpoint=None, batch=batch)
            tx = Transaction((Change(Op.INSERT, t.target_id, after={"id": 1, "zz": 1}),), PgLsn(1))
            with pytest.raises(rk.SchemaError, match=r"dst\.t carry columns zz"):
                writer.apply(_by_id([t]), [tx], checkpoint=None, batch=batch)
            with pytest.raises(rk.SchemaError, match="no plan"):
                writer.apply({}, [tx], checkpoint=None, batch=batch)
        tx = Transaction((Change(Op.INSERT, t.target_id, after={"id": 1, "v": "x"}),), PgLsn(1))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE dst.t DROP CONSTRAINT t_pkey")
        with pytest.raises(rk.ConfigError, match=r"dst\.t has no primary key or unique index"):
            writer.apply(_by_id([t]), [tx], checkpoint=None, batch=True)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP TABLE dst.t")
        with pytest.raises(rk.SchemaError, match=r"dst\.t does not exist"):
            writer.apply(_by_id([t]), [tx], checkpoint=None, batch=False)
    assert _rows(pg_url, "dst.nokey") == []


def test_reconnects_after_the_connection_is_lost(pg_url: str) -> None:
    (plan,) = _plans(pg_url, "CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, v text)")
    tid = plan.target_id
    with rk.endpoint(pg_url).change_writer() as writer:
        for i, batch in enumerate((True, False, True)):
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'replikit' AND datname = current_database()"
                )
            tx = Transaction((Change(Op.INSERT, tid, after={"id": i, "v": "x"}),), PgLsn(i + 1))
            writer.apply({tid: plan}, [tx], checkpoint=Checkpoint("t", position=tx.position),
                         batch=batch)  # fmt: skip
        assert writer.read_checkpoint("t") == Checkpoint("t", position=PgLsn(3))
    assert _rows(pg_url, "dst.t") == [(0, "x"), (1, "x"), (2, "x")]


def test_unreachable_target_is_connect_error() -> None:
    writer = rk.endpoint("postgresql://someone:s3cret@127.0.0.1:1/nowhere").change_writer()
    with pytest.raises(rk.ConnectError) as info:
        writer.read_checkpoint("t")
    assert "s3cret" not in str(info.value)


# -- schema changes --------------------------------------------------------------------------
def test_add_columns(pg_url: str) -> None:
    ddl = """CREATE SCHEMA src; CREATE TYPE src.color AS ENUM ('red', 'blue');
        CREATE TABLE src.t (id int PRIMARY KEY, v text)"""
    (plan,) = _plans(pg_url, ddl)
    tid = plan.target_id
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO dst.t VALUES (1, 'old')")
        conn.execute("ALTER TYPE src.color RENAME TO hue")  # the target must create src.color
    source = dataclasses.replace(
        plan.source,
        columns=(
            *plan.source.columns,
            Column("n", Type.decimal(10, 2, native="numeric(10,2)"), default="5"),
            Column("c", Type.enum(("red", "blue"), native="src.color")),
            Column("tags", Type.array(Type.text("text"), 1, native="text[]")),
        ),
    )
    new = plan_table(source, source_dialect="postgresql", target=rk.endpoint(pg_url).dialect,
                     target_id=tid)  # fmt: skip
    added = new.columns[2:]
    with rk.endpoint(pg_url).change_writer() as writer:
        writer.add_columns(new, added)
        writer.add_columns(new, added)  # idempotent
        change = {"id": 2, "v": "new", "n": Decimal("1.25"), "c": "blue", "tags": ["a", "b"]}
        _apply(writer, [new], "staged", Change(Op.INSERT, tid, after=change))
        _apply(writer, [new], "transactional",
               Change(Op.UPDATE, tid, key={"id": 1}, after={"c": "red"}))  # fmt: skip
    with psycopg.connect(pg_url) as conn:
        types = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
            "WHERE attrelid = 'dst.t'::regclass AND attnum > 2 ORDER BY attnum"
        ).fetchall()
    assert types == [("n", "numeric(10,2)", False), ("c", "src.color", False),
                     ("tags", "text[]", False)]  # fmt: skip
    assert _rows(pg_url, "dst.t") == [
        (1, "old", Decimal("5.00"), "red", None),  # existing rows got the default
        (2, "new", Decimal("1.25"), "blue", ["a", "b"]),
    ]

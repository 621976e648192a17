"""MysqlChangeWriter: values as in full load, checkpoints, atomicity, errors, schema changes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from _my_schema import DRIVERS, ZOO, ZOO_ROWS, endpoint, query, read_all, run_sql

import replikit as rk
from replikit.changes import Change, Op, Transaction
from replikit.endpoints.mysql.apply import MysqlChangeWriter
from replikit.pipeline.contracts import Batch, ChangeWriter, Checkpoint
from replikit.positions import PgLsn, SqliteSeq
from replikit.schema.convert import TablePlan, link_foreign_keys, plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

# name -> (batch, chunk_rows): multi-row net batches, 2-row chunks, transactional
MODES = {"batch": (True, 1000), "batch-chunk2": (True, 2), "transactional": (False, 1000)}


@pytest.fixture
def make_db(mysql_server: Any) -> Iterator[Callable[[], str]]:
    """Extra databases on the test server (source or second target), dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"rk_ap_{uuid.uuid4().hex[:10]}"
        made.append(name)
        return str(mysql_server.create_database(name))

    yield make
    for name in made:
        mysql_server.drop_database(name)


def _plans(source_url: str, target_url: str, sql: str | None = None) -> list[TablePlan]:
    """Run ``sql`` in the source, plan its tables into the target, create them there."""
    if sql:
        run_sql(source_url, sql)
    src, dst = endpoint(source_url), endpoint(target_url)
    plans = link_foreign_keys(
        [
            plan_table(t, source_dialect="mysql", target=dst.dialect,
                       target_id=TableId(None, t.id.name))
            for t in src.reflect().tables
        ]
    )  # fmt: skip
    dst.writer().prepare(plans, "drop-and-create")
    return plans


def _by_id(plans: list[TablePlan]) -> dict[TableId, TablePlan]:
    return {p.target_id: p for p in plans}


def _writer(url: str, mode: str, driver: str = "auto") -> MysqlChangeWriter:
    writer = endpoint(f"{url}?driver={driver}").change_writer(chunk_rows=MODES[mode][1])
    assert isinstance(writer, MysqlChangeWriter)
    return writer


def _apply(writer: Any, plans: list[TablePlan], mode: str, *changes: Change, **kw: Any) -> None:
    tx = Transaction(tuple(changes), kw.pop("position", SqliteSeq(1)))
    writer.apply(_by_id(plans), [tx], checkpoint=kw.pop("checkpoint", None), batch=MODES[mode][0])


def _rows(url: str, table: str) -> list[tuple[Any, ...]]:
    name = "`" + table.replace("`", "``").replace("%", "%%") + "`"
    return sorted(query(url, f"SELECT * FROM {name}"), key=repr)


T = TableId(None, "t")


def test_writer_implements_the_protocol_and_hides_the_password(mysql_url: str) -> None:
    with endpoint(mysql_url).change_writer() as writer:
        assert isinstance(writer, ChangeWriter)
        assert writer.read_checkpoint("nothing") is None
    writer = rk.endpoint("mysql://u:s3cret@127.0.0.1:1/db").change_writer()
    assert "s3cret" not in repr(writer)
    with pytest.raises(rk.ConfigError):
        endpoint(mysql_url).change_writer(bulk_rows=5)  # unknown options are refused
    with pytest.raises(rk.ConfigError, match="must name the database"):
        rk.endpoint("mysql://u@127.0.0.1:1").change_writer()


# -- values land exactly as a full load writes them -------------------------------------------
def _full_load(source_url: str, target_url: str, plans: list[TablePlan]) -> dict[str, Batch]:
    """Full-load every table into the target; return the source rows, one batch per table."""
    src, writer = endpoint(source_url), endpoint(target_url).writer()
    out = {}
    with src.reader([p.source for p in plans]) as reader:
        for plan in plans:
            batches = [b for u in reader.units(plan.source) for b in reader.read(u)]
            writer.load(plan, batches)
            rows = [r for b in batches for r in b.rows]
            out[plan.source.id.name] = Batch(plan.source.id, batches[0].columns, rows)
    return out


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("mode", list(MODES))
def test_every_mysql_type_lands_as_in_full_load(
    mysql_url: str, make_db: Callable[[], str], mode: str, driver: str
) -> None:
    run_sql(mysql_url, ZOO)
    run_sql(mysql_url, ZOO_ROWS)
    full_url, cdc_url = make_db(), make_db()
    source = _full_load(mysql_url, full_url, _plans(mysql_url, full_url))
    plans = _plans(mysql_url, cdc_url)
    inserts = [
        Change(Op.INSERT, TableId(None, name), after=dict(zip(b.columns, row, strict=True)))
        for name, b in sorted(source.items(), key=lambda kv: kv[0] != "parent")
        for row in b.rows
    ]
    with _writer(cdc_url, mode, driver) as cdc:
        _apply(cdc, plans, mode, *inserts)  # generated columns in the images are left out
        for name in ("parent", "zoo"):
            assert read_all(endpoint(cdc_url), name) == read_all(endpoint(full_url), name), name
        # full images rotated between rows, then partial images, then a delete
        cols, rows = source["zoo"].columns, sorted(source["zoo"].rows, key=lambda r: r[0])
        tid = TableId(None, "zoo")
        expected = {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
        changes = []
        for i, row in enumerate(rows):
            image = dict(zip(cols, rows[(i + 1) % len(rows)], strict=True)) | {"id": row[0]}
            changes.append(Change(Op.UPDATE, tid, key={"id": row[0]}, after=image))
            expected[row[0]] = image
        for i, row in enumerate(rows):
            other = dict(zip(cols, rows[(i + 2) % len(rows)], strict=True))
            part = {c: other[c] for c in cols[1::2] if not c.startswith("gen_")}
            changes.append(Change(Op.UPDATE, tid, key={"id": row[0]}, after=part))
            expected[row[0]] = expected[row[0]] | part
        changes.append(Change(Op.DELETE, tid, key={"id": rows[-1][0]}))
        del expected[rows[-1][0]]
        _apply(cdc, plans, mode, *changes)
    # the same images, full-loaded into a fresh table, read back identically
    again = make_db()
    (zoo,) = [p for p in _plans(mysql_url, again) if p.target_id.name == "zoo"]
    batch = Batch(zoo.source.id, cols, [tuple(i[c] for c in cols) for i in expected.values()])
    endpoint(again).writer().load(zoo, [batch])
    assert read_all(endpoint(cdc_url), "zoo") == read_all(endpoint(again), "zoo")


PORTABLE = TableSchema(
    TableId("public", "portable"),
    (
        Column("id", Type.int_(64), nullable=False),
        Column("flag", Type.bool_()),
        Column("i8", Type.int_(8)),
        Column("u64", Type.int_(64, unsigned=True)),
        Column("n", Type.decimal(12, 3)),
        Column("nn", Type.decimal(None, None)),
        Column("f4", Type.float_(32)),
        Column("f8", Type.float_(64)),
        Column("s", Type.string(10)),
        Column("ch", Type.string(4, fixed=True)),
        Column("txt", Type.text()),
        Column("b", Type.bytes_()),
        Column("d", Type.date()),
        Column("t", Type.time(6)),
        Column("ttz", Type.time(6, tz=True)),
        Column("ts", Type.timestamp(6)),
        Column("tstz", Type.timestamp(6, tz=True)),
        Column("iv", Type.interval()),
        Column("j", Type.json()),
        Column("u", Type.uuid()),
        Column("e", Type.enum(("sad", "ok"))),
        Column("arr", Type.array(Type.int_(32), 1)),
    ),
    primary_key=("id",),
)
_TZ = dt.timezone(dt.timedelta(hours=5, minutes=30))
PORTABLE_ROWS = [
    (1, True, -128, 2**64 - 1, Decimal("-123456789.125"), Decimal("1.5"), 3.1415927, 1e308,
     "é😀 %s '\\", "ab", "x" * 5000, b"\x00\xff'\\", dt.date(1, 1, 1), dt.time(23, 59, 59, 999999),
     dt.time(1, 2, 3, tzinfo=_TZ), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
     dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=dt.UTC), "P1Y2M3DT4H5M6.5S",
     '{"a": 1.000, "b": [true, null]}', uuid.UUID(int=7), "ok", [1, None, 3]),
    (2, False, 0, 0, Decimal("0.001"), Decimal("-0"), -0.0, 2.5e-300, "", "", "", b"",
     dt.date(2024, 2, 29), dt.time(0, 0), dt.time(0, 0, tzinfo=dt.UTC),
     dt.datetime(1970, 1, 1), dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC), "PT0S", "[]",
     uuid.UUID(int=0), "sad", []),
    (3, *([None] * 21)),
]  # fmt: skip


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("mode", list(MODES))
def test_portable_types_from_another_dialect_land_as_in_full_load(
    make_db: Callable[[], str], mode: str, driver: str
) -> None:
    full_url, cdc_url = make_db(), make_db()
    plans = {}
    for url in (full_url, cdc_url):
        ep = endpoint(url)
        plan = plan_table(PORTABLE, source_dialect="postgresql", target=ep.dialect,
                          target_id=TableId(None, "portable"))  # fmt: skip
        ep.writer().prepare([plan], "drop-and-create")
        plans[url] = plan
    cols = tuple(c.name for c in PORTABLE.columns)
    endpoint(full_url).writer().load(plans[full_url], [Batch(PORTABLE.id, cols, PORTABLE_ROWS)])
    tid = plans[cdc_url].target_id
    with _writer(cdc_url, mode, driver) as cdc:
        for row in PORTABLE_ROWS:
            image = dict(zip(cols, row, strict=True))
            # insert a placeholder first, so the values arrive through an update (upsert)
            _apply(cdc, [plans[cdc_url]], mode, Change(Op.INSERT, tid, after={"id": row[0]}),
                   Change(Op.UPDATE, tid, key={"id": row[0]}, after=image))  # fmt: skip
    assert read_all(endpoint(cdc_url), "portable") == read_all(endpoint(full_url), "portable")


def test_values_go_through_the_planned_adapters(mysql_url: str, make_db: Callable[[], str]) -> None:
    (plan,) = _plans(make_db(), mysql_url, "CREATE TABLE t (k VARCHAR(5) PRIMARY KEY, v TEXT)")
    upper = [
        dataclasses.replace(c, target=dataclasses.replace(c.target, adapt=str.upper))
        for c in plan.columns
    ]
    plan = dataclasses.replace(plan, columns=tuple(upper))
    for mode in MODES:
        with _writer(mysql_url, mode) as writer:
            _apply(writer, [plan], mode, Change(Op.INSERT, T, after={"k": "a", "v": "x"}))
            _apply(writer, [plan], mode, Change(Op.UPDATE, T, key={"k": "a"}, after={"v": "y"}))
            assert _rows(mysql_url, "t") == [("A", "Y")], mode
            _apply(writer, [plan], mode, Change(Op.DELETE, T, key={"k": "a"}))
            assert _rows(mysql_url, "t") == [], mode


@pytest.mark.parametrize("mode", list(MODES))
def test_partial_images_never_null_or_create_rows(
    mysql_url: str, make_db: Callable[[], str], mode: str
) -> None:
    ddl = "CREATE TABLE t (id INT PRIMARY KEY, a TEXT, b VARCHAR(5) NOT NULL, c INT)"
    (plan,) = _plans(make_db(), mysql_url, ddl)
    with _writer(mysql_url, mode) as writer:
        _apply(writer, [plan], mode, Change(Op.INSERT, T, after={"id": 1, "a": "a", "b": "b"}))
        _apply(
            writer,
            [plan],
            mode,
            Change(Op.UPDATE, T, key={"id": 1}, after={"id": 1, "a": "A"}),  # b, c unchanged
            Change(Op.UPDATE, T, key={"id": 7}, after={"a": "ghost"}),  # row not in target
            Change(Op.UPDATE, T, key={"id": 1}, after={"c": 3}),
        )
    assert _rows(mysql_url, "t") == [(1, "A", "b", 3)]


@pytest.mark.parametrize("mode", list(MODES))
def test_odd_identifiers_and_composite_keys(
    mysql_url: str, make_db: Callable[[], str], mode: str
) -> None:
    ddl = "CREATE TABLE `we%ird ``t``` (`k%s` INT, `K``2` VARCHAR(5), `v%%` TEXT, PRIMARY KEY (`k%s`, `K``2`))"  # noqa: E501
    (plan,) = _plans(make_db(), mysql_url, ddl)
    tid = plan.target_id
    assert tid == TableId(None, "we%ird `t`")
    row = {"k%s": 1, "K`2": "x", "v%%": "%s"}
    key = {"k%s": 1, "K`2": "x"}
    with _writer(mysql_url, mode) as writer:
        _apply(writer, [plan], mode, Change(Op.INSERT, tid, after=row))
        _apply(writer, [plan], mode, Change(Op.UPDATE, tid, key=key, after=row | {"k%s": 2}))
        assert _rows(mysql_url, "we%ird `t`") == [(2, "x", "%s")]
        key2 = key | {"k%s": 2}
        _apply(writer, [plan], mode, Change(Op.UPDATE, tid, key=key2, after={"v%%": "y"}))
        _apply(writer, [plan], mode, Change(Op.UPDATE, tid, key=key2, after={"k%s": 3}))
        assert _rows(mysql_url, "we%ird `t`") == [(3, "x", "y")]
        _apply(writer, [plan], mode, Change(Op.DELETE, tid, key=key | {"k%s": 3}))
        assert _rows(mysql_url, "we%ird `t`") == []


# -- foreign keys, truncates and secondary unique keys ----------------------------------------
FK_SQL = """CREATE TABLE parent (id INT PRIMARY KEY, name TEXT);
CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL,
                    FOREIGN KEY (parent_id) REFERENCES parent (id))"""


@pytest.mark.parametrize("mode", list(MODES))
def test_batches_respect_foreign_keys_and_truncate_together(
    mysql_url: str, make_db: Callable[[], str], mode: str
) -> None:
    plans = _plans(make_db(), mysql_url, FK_SQL)
    endpoint(mysql_url).writer().finish(plans)  # the target now has the foreign key
    parent, child = TableId(None, "parent"), TableId(None, "child")
    with _writer(mysql_url, mode) as writer:
        _apply(writer, plans, mode,
               Change(Op.INSERT, parent, after={"id": 1, "name": "p"}),
               Change(Op.INSERT, child, after={"id": 10, "parent_id": 1}))  # fmt: skip
        assert _rows(mysql_url, "child") == [(10, 1)]
        _apply(writer, plans, mode,
               Change(Op.DELETE, child, key={"id": 10}),
               Change(Op.DELETE, parent, key={"id": 1}),
               Change(Op.INSERT, parent, after={"id": 2, "name": "q"}),
               Change(Op.INSERT, child, after={"id": 11, "parent_id": 2}))  # fmt: skip
        assert (_rows(mysql_url, "parent"), _rows(mysql_url, "child")) == ([(2, "q")], [(11, 2)])
        # the source truncated both tables in one statement; no implicit commit: atomic
        _apply(writer, plans, mode, Change(Op.TRUNCATE, child), Change(Op.TRUNCATE, parent),
               Change(Op.INSERT, parent, after={"id": 3, "name": "r"}),
               checkpoint=Checkpoint("fk", position=SqliteSeq(5)))  # fmt: skip
    assert (_rows(mysql_url, "parent"), _rows(mysql_url, "child")) == ([(3, "r")], [])


UNIQUE_SQL = """CREATE TABLE t (id INT PRIMARY KEY, email VARCHAR(20) NOT NULL, v INT,
                UNIQUE KEY uq_email (email))"""


@pytest.mark.parametrize("mode", list(MODES))
def test_secondary_unique_collision_is_refused_never_merged_into_another_row(
    mysql_url: str, make_db: Callable[[], str], mode: str
) -> None:
    (plan,) = _plans(make_db(), mysql_url, UNIQUE_SQL)
    endpoint(mysql_url).writer().finish([plan])  # the UNIQUE KEY
    ins = lambda i, e: Change(Op.INSERT, T, after={"id": i, "email": e, "v": i})  # noqa: E731
    with _writer(mysql_url, mode) as writer:
        _apply(writer, [plan], mode, ins(1, "a"), ins(2, "b"))
        with pytest.raises(rk.DataError, match="unique key other than the apply key") as info:
            _apply(writer, [plan], mode, ins(3, "c"), ins(4, "a"))  # 4 collides with 1
        assert (info.value.table, info.value.key) == ("t", {"id": 4})
        assert _rows(mysql_url, "t") == [(1, "a", 1), (2, "b", 2)]  # row 1 untouched
        # two rows swap e-mails through a third value: the net rows conflict, the source
        # order does not; the batch goes through
        upd = lambda i, e: Change(Op.UPDATE, T, key={"id": i}, after={"id": i, "email": e, "v": i})  # noqa: E731
        _apply(writer, [plan], mode, upd(1, "tmp"), upd(2, "a"), upd(1, "b"),
               checkpoint=Checkpoint("u", position=SqliteSeq(9)))  # fmt: skip
        assert _rows(mysql_url, "t") == [(1, "b", 1), (2, "a", 2)]
        assert writer.read_checkpoint("u") == Checkpoint("u", position=SqliteSeq(9))
        _apply(writer, [plan], mode, upd(1, "b"))  # a replay of the last change: idempotent
    assert _rows(mysql_url, "t") == [(1, "b", 1), (2, "a", 2)]


# -- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_write_read_drop(mysql_url: str) -> None:
    writer = endpoint(mysql_url).change_writer()
    other = endpoint(mysql_url).change_writer()
    with writer, other:
        assert writer.read_checkpoint("a") is None  # no control table yet
        first = Checkpoint("a", start=PgLsn(5), phase="full-load", loaded=frozenset({"s.t1"}))
        writer.write_checkpoint(first)
        assert other.read_checkpoint("a") == first
        assert other.read_checkpoint("A") is None  # task ids are case-sensitive
        ts = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
        second = dataclasses.replace(first, position=PgLsn(2**32 + 9), phase="cdc",
                                     loaded=frozenset({"s.t1", "s.t2"}), commit_ts=ts)  # fmt: skip
        writer.write_checkpoint(second)
        assert other.read_checkpoint("a") == second
        other.write_checkpoint(Checkpoint("b", start=SqliteSeq(3), commit_ts=ts.astimezone(_TZ)))
        row = query(
            mysql_url,
            "SELECT start_position, position, phase, loaded, commit_ts, updated_at IS NOT NULL "
            "FROM replikit_checkpoints WHERE task = 'a'",
        )
        assert row == [("pg:0/5", "pg:1/9", "cdc", '["s.t1", "s.t2"]', ts.replace(tzinfo=None),
                        1)]  # fmt: skip
        writer.drop_control("a")
        assert writer.read_checkpoint("a") is None
        assert writer.read_checkpoint("b") == Checkpoint("b", start=SqliteSeq(3), commit_ts=ts)
        writer.drop_control("b")
        assert query(mysql_url, "SHOW TABLES") == []
        writer.drop_control("b")  # nothing left: no error
        # other wrote the table before; it was dropped meanwhile: recreated on demand
        other.write_checkpoint(first)
        assert writer.read_checkpoint("a") == first


@pytest.mark.parametrize("mode", list(MODES))
def test_checkpoint_commits_with_the_data(
    mysql_url: str, make_db: Callable[[], str], mode: str
) -> None:
    (plan,) = _plans(make_db(), mysql_url, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
    with _writer(mysql_url, mode) as writer, _writer(mysql_url, mode) as reader:
        cp = Checkpoint("t", start=PgLsn(1), position=PgLsn(2))
        _apply(writer, [plan], mode, Change(Op.INSERT, T, after={"id": 1, "v": "a"}),
               checkpoint=cp)  # fmt: skip
        assert reader.read_checkpoint("t") == cp
        assert _rows(mysql_url, "t") == [(1, "a")]
        # an empty run of transactions still moves the checkpoint
        writer.apply({T: plan}, [], checkpoint=dataclasses.replace(cp, position=PgLsn(3)),
                     batch=MODES[mode][0])  # fmt: skip
        assert reader.read_checkpoint("t") == dataclasses.replace(cp, position=PgLsn(3))


# -- errors ----------------------------------------------------------------------------------
BAD_VALUES = {
    "out-of-range": ({"small": 70000}, "small"),
    "too-long": ({"s": "x" * 11}, "s"),
    "trailing-spaces-cut": ({"s": "abcdefghij   "}, "s"),  # only a Note in strict mode
    "check-constraint": ({"small": -1}, None),  # a constraint, not a column, refuses it
    "adapter-refuses": ({"d": Decimal("1.005")}, "d"),  # DECIMAL(5,2) would round it
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_bad_value_commits_nothing_and_names_key_and_column(
    mysql_url: str, make_db: Callable[[], str], mode: str, bad: str
) -> None:
    ddl = ("CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(10), small SMALLINT, d DECIMAL(5,2), "
           "CONSTRAINT ck CHECK (small >= 0))")  # fmt: skip
    (plan,) = _plans(make_db(), mysql_url, ddl)
    endpoint(mysql_url).writer().finish([plan])
    # planned as from another dialect: the DECIMAL adapter refuses what MySQL would round
    plan = plan_table(plan.source, source_dialect="postgresql",
                      target=endpoint(mysql_url).dialect, target_id=T)  # fmt: skip
    values, column = BAD_VALUES[bad]
    with _writer(mysql_url, mode) as writer:
        good = Checkpoint("t", position=SqliteSeq(1))
        ok = {"s": "ok", "small": 1, "d": Decimal("1.5")}
        _apply(writer, [plan], mode, Change(Op.INSERT, T, after={"id": 1} | ok),
               checkpoint=good)  # fmt: skip
        changes = [
            Change(Op.INSERT, T, after={"id": 2} | ok),
            Change(Op.UPDATE, T, key={"id": 1}, after={"s": "changed"}),
            Change(Op.INSERT, T, after={"id": 3} | ok | values),
            Change(Op.DELETE, T, key={"id": 1}),
            *(Change(Op.INSERT, T, after={"id": 100 + i} | ok) for i in range(20)),
        ]
        with pytest.raises(rk.DataError) as info:
            _apply(writer, [plan], mode, *changes,
                   checkpoint=Checkpoint("t", position=SqliteSeq(2)))  # fmt: skip
        assert (info.value.table, info.value.key, info.value.column) == ("t", {"id": 3}, column)
        assert _rows(mysql_url, "t") == [(1, "ok", 1, Decimal("1.50"))]
        assert writer.read_checkpoint("t") == good
        # the writer is still usable, and so is the same batch without the bad change
        del changes[2]
        _apply(writer, [plan], mode, *changes, checkpoint=Checkpoint("t", position=SqliteSeq(2)))
        assert len(_rows(mysql_url, "t")) == 21


def test_plans_and_keys_are_checked_before_writing(
    mysql_url: str, make_db: Callable[[], str]
) -> None:
    ddl = "CREATE TABLE nokey (a INT, b TEXT);\nCREATE TABLE t (id INT PRIMARY KEY, v TEXT)"
    plans = {p.target_id.name: p for p in _plans(make_db(), mysql_url, ddl)}
    nokey, t = plans["nokey"], plans["t"]
    with endpoint(mysql_url).change_writer() as writer:
        for batch in (True, False):
            insert = Change(Op.INSERT, nokey.target_id, after={"a": 1, "b": "x"})
            tx = Transaction((insert,), SqliteSeq(1))
            with pytest.raises(rk.ConfigError, match="nokey has no primary key"):
                writer.apply(_by_id([nokey]), [tx], checkpoint=None, batch=batch)
            tx = Transaction((Change(Op.INSERT, T, after={"id": 1, "zz": 1}),), SqliteSeq(1))
            with pytest.raises(rk.SchemaError, match="t carry columns zz"):
                writer.apply(_by_id([t]), [tx], checkpoint=None, batch=batch)
            with pytest.raises(rk.SchemaError, match="no plan"):
                writer.apply({}, [tx], checkpoint=None, batch=batch)
        tx = Transaction((Change(Op.INSERT, T, after={"id": 1, "v": "x"}),), SqliteSeq(1))
        run_sql(mysql_url, "ALTER TABLE t DROP PRIMARY KEY")
        with pytest.raises(rk.ConfigError, match="t has no primary key or unique index"):
            writer.apply(_by_id([t]), [tx], checkpoint=None, batch=True)
        run_sql(mysql_url, "DROP TABLE t")
        writer.close()  # a new connection checks again
        with pytest.raises(rk.SchemaError, match="t does not exist"):
            writer.apply(_by_id([t]), [tx], checkpoint=None, batch=False)
    assert _rows(mysql_url, "nokey") == []


def _kill_writer_sessions(mysql_server: Any, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = mysql_server.connect()
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
            (name,),
        )
        for (pid,) in cur.fetchall():
            cur.execute(f"KILL {int(pid)}")


@pytest.mark.parametrize("driver", DRIVERS)
def test_reconnects_after_the_connection_is_lost(
    mysql_server: Any, mysql_url: str, make_db: Callable[[], str], driver: str
) -> None:
    (plan,) = _plans(make_db(), mysql_url, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
    with endpoint(f"{mysql_url}?driver={driver}").change_writer() as writer:
        for i, batch in enumerate((True, False, True)):
            writer.read_checkpoint("t")  # the connection is open
            _kill_writer_sessions(mysql_server, mysql_url)
            tx = Transaction((Change(Op.INSERT, T, after={"id": i, "v": "x"}),), SqliteSeq(i + 1))
            writer.apply({T: plan}, [tx], checkpoint=Checkpoint("t", position=tx.position),
                         batch=batch)  # fmt: skip
        assert writer.read_checkpoint("t") == Checkpoint("t", position=SqliteSeq(3))
    assert _rows(mysql_url, "t") == [(0, "x"), (1, "x"), (2, "x")]


def test_unreachable_target_is_connect_error() -> None:
    writer = rk.endpoint("mysql://someone:s3cret@127.0.0.1:1/nowhere").change_writer()
    with pytest.raises(rk.ConnectError) as info:
        writer.read_checkpoint("t")
    assert "s3cret" not in str(info.value)


# -- schema changes --------------------------------------------------------------------------
def test_add_columns(mysql_url: str, make_db: Callable[[], str]) -> None:
    (plan,) = _plans(make_db(), mysql_url, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
    run_sql(mysql_url, "INSERT INTO t VALUES (1, 'old')")
    source = dataclasses.replace(
        plan.source,
        columns=(
            *plan.source.columns,
            Column("n", Type.decimal(10, 2, native="decimal(10,2)"), default="5.00"),
            Column("c", Type.enum(("red", "blue"), native="enum('red','blue')")),
        ),
    )
    new = plan_table(source, source_dialect="mysql", target=endpoint(mysql_url).dialect,
                     target_id=T)  # fmt: skip
    added = new.columns[2:]
    with endpoint(mysql_url).change_writer() as writer:
        _apply(writer, [plan], "batch", Change(Op.INSERT, T, after={"id": 3, "v": "before"}))
        writer.add_columns(new, added)
        writer.add_columns(new, added)  # idempotent
        change = {"id": 2, "v": "new", "n": Decimal("1.25"), "c": "blue"}
        _apply(writer, [new], "batch", Change(Op.INSERT, T, after=change))
        _apply(writer, [new], "transactional",
               Change(Op.UPDATE, T, key={"id": 1}, after={"c": "red"}))  # fmt: skip
    types = query(
        mysql_url,
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't' ORDER BY ORDINAL_POSITION",
    )
    assert types[2:] == [("n", "decimal(10,2)", "YES"), ("c", "enum('red','blue')", "YES")]
    assert _rows(mysql_url, "t") == [
        (1, "old", Decimal("5.00"), "red"),  # existing rows got the default
        (2, "new", Decimal("1.25"), "blue"),
        (3, "before", Decimal("5.00"), None),
    ]


def test_statement_binlog_notes_are_not_failures(
    mysql_server: Any, mysql_url: str, make_db: Callable[[], str]
) -> None:
    """A server logging statements notes every upsert into a two-unique-key table (1592)."""
    (plan,) = _plans(make_db(), mysql_url, UNIQUE_SQL)
    endpoint(mysql_url).writer().finish([plan])
    admin = mysql_server.connect()
    with admin, admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.binlog_format")
        ((before,),) = cur.fetchall()
        cur.execute("SET GLOBAL binlog_format = 'STATEMENT'")  # new sessions log statements
        try:
            for mode in MODES:
                with _writer(mysql_url, mode) as writer:
                    change = Change(Op.INSERT, T, after={"id": 1, "email": mode, "v": 1})
                    _apply(writer, [plan], mode, change)
                    assert _rows(mysql_url, "t") == [(1, mode, 1)]
        finally:
            cur.execute(f"SET GLOBAL binlog_format = '{before}'")


def test_upsert_statements_for_mariadb_and_mysql_8() -> None:
    """MariaDB reads VALUES(col); MySQL 8.0.19+ gets a row alias (VALUES() warns from 8.0.20)."""
    from replikit.endpoints.mysql._apply_table import TableApply

    schema = TableSchema(
        TableId("s", "t%"),
        (Column("id", Type.int_(32), nullable=False), Column("v", Type.text())),
        primary_key=("id",),
    )
    plan = plan_table(schema, source_dialect="postgresql", target=endpoint("mysql://h/d").dialect,
                      target_id=TableId(None, "t%"))  # fmt: skip
    table = TableApply(plan)
    shape = table.shape(("id", "v"))
    table.configure(guard=False, alias=False)
    assert table.upsert_sql(shape, 2) == (
        "INSERT INTO `t%%` (`id`, `v`) VALUES (%s, %s), (%s, %s) "
        "ON DUPLICATE KEY UPDATE `v` = VALUES(`v`)"
    )
    table.configure(guard=True, alias=True)
    assert table.upsert_sql(shape, 1) == (
        "INSERT INTO `t%%` (`id`, `v`) VALUES (%s, %s) AS rk_new ON DUPLICATE KEY UPDATE "
        "`id` = IF(`id` <=> rk_new.`id`, `id`, NULL), `v` = rk_new.`v`"
    )
    assert table.upsert_sql(table.key_shape, 1).endswith(
        "UPDATE `id` = IF(`id` <=> rk_new.`id`, `id`, NULL)"
    )


def test_control_table_is_not_reflected(mysql_url: str) -> None:
    ep = rk.endpoint(mysql_url)
    writer = ep.change_writer()
    try:
        writer.write_checkpoint(Checkpoint("t", phase="cdc"))
    finally:
        writer.close()
    assert [t.id.name for t in ep.reflect().tables] == []

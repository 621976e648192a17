"""Pipeline behaviour with plain-Python stages (real plug-ins, no mocks)."""

import threading
from collections.abc import Iterator

import pytest

import replikit as rk
from replikit import Batch, Column, KeyRange, TableId, TableSchema, Type, Unit
from replikit.transforms import drop_columns, filter_rows, mask, rename_columns


class ListReader:
    """A reader over in-memory rows; splits tables by integer key into ranges."""

    def __init__(self, data: dict[TableSchema, list[tuple]], batch_size: int = 3):
        self.data = data
        self.batch_size = batch_size

    @property
    def tables(self):
        return list(self.data)

    def units(self, table, *, split_rows=None):
        rows = self.data[table]
        if not split_rows or len(rows) <= split_rows:
            return [Unit(table.id)]
        keys = sorted(r[0] for r in rows)
        bounds = keys[::split_rows][1:]
        edges = [None, *[(b,) for b in bounds], None]
        n = len(edges) - 1
        return [Unit(table.id, KeyRange(("id",), edges[i], edges[i + 1]), i, n) for i in range(n)]

    def read(self, unit: Unit) -> Iterator[Batch]:
        table = next(t for t in self.data if t.id == unit.table)
        rows = self.data[table]
        if unit.range is not None:
            lo, hi = unit.range.lower, unit.range.upper
            rows = [
                r for r in rows if (lo is None or (r[0],) >= lo) and (hi is None or (r[0],) < hi)
            ]
        for i in range(0, len(rows), self.batch_size):
            yield Batch(table.id, table.column_names, rows[i : i + self.batch_size])


class ListWriter:
    def __init__(self, fail_on: str | None = None):
        self.rows: dict[str, list[tuple]] = {}
        self.lock = threading.Lock()
        self.fail_on = fail_on

    def load(self, plan, batches):
        n = 0
        for batch in batches:
            if str(plan.target_id) == self.fail_on:
                raise rk.DataError("refused", table=str(plan.target_id))
            with self.lock:
                self.rows.setdefault(str(plan.target_id), []).extend(map(tuple, batch.rows))
            n += len(batch)
        return n


USERS = TableSchema(
    TableId("app", "users"),
    (
        Column("id", Type.int_(64), nullable=False),
        Column("email", Type.string(100)),
        Column("card", Type.string(19)),
    ),
    primary_key=("id",),
    estimated_rows=10,
)
ORDERS = TableSchema(
    TableId("app", "orders"),
    (Column("id", Type.int_(64), nullable=False), Column("total", Type.decimal(12, 2))),
    primary_key=("id",),
    estimated_rows=4,
)
DATA = {
    USERS: [(i, f"u{i}@x.org", f"4111-0000-0000-{i:04d}") for i in range(1, 11)],
    ORDERS: [(i, i * 10) for i in range(1, 5)],
}


def test_pipeline_moves_every_row_through_split_units():
    writer = ListWriter()
    stats = rk.Pipeline(ListReader(DATA), writer, split_rows=3, progress=False).run()
    assert sorted(writer.rows["app.users"]) == DATA[USERS]
    assert sorted(writer.rows["app.orders"]) == DATA[ORDERS]
    assert stats["app.users"].full_load_rows == 10
    assert stats["app.users"].units_total == 4
    assert stats["app.users"].state is rk.TableState.COMPLETED


def test_transforms_rename_mask_drop_and_filter():
    writer = ListWriter()
    pipe = rk.Pipeline(
        ListReader({USERS: DATA[USERS]}),
        writer,
        transforms=[
            rename_columns({"email": "mail"}),
            mask("card", lambda v: "****" + v[-4:]),
            filter_rows(lambda row: row["id"] % 2 == 0),
            drop_columns(frozenset({"mail"})),
        ],
        progress=False,
    )
    (plan,) = pipe.plans()
    assert plan.target_schema.column_names == ("id", "card")
    pipe.run()
    assert sorted(writer.rows["app.users"]) == [(i, f"****{i:04d}") for i in range(2, 11, 2)]


def test_a_failing_table_is_reported_and_others_complete():
    writer = ListWriter(fail_on="app.orders")
    pipe = rk.Pipeline(ListReader(DATA), writer, progress=False)
    with pytest.raises(rk.TaskError, match="1 of 2 tables failed: app.orders") as info:
        pipe.run()
    assert set(info.value.table_errors) == {"app.orders"}
    stats = pipe.statistics
    assert stats["app.users"].state is rk.TableState.COMPLETED
    assert stats["app.orders"].state is rk.TableState.ERROR
    assert "refused" in stats["app.orders"].error


def test_bad_prep_mode_is_a_config_error():
    with pytest.raises(rk.ConfigError, match="prep_mode"):
        rk.Pipeline(ListReader(DATA), ListWriter(), prep_mode="append")

"""The failure control tables (``replikit_suspended_tables``, ``replikit_apply_exceptions``)
in every target family that holds them, on real databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import replikit as rk
from replikit.pipeline import control
from replikit.pipeline.control import ApplyException, SuspendedTable


@pytest.fixture(params=["sqlite", "duckdb", "pg", "mysql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[rk.Endpoint]:
    kind = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 't.db'}"
    elif kind == "duckdb":
        pytest.importorskip("duckdb")
        url = f"duckdb:///{tmp_path / 't.duckdb'}"
    elif kind == "pg":
        url = request.getfixturevalue("pg_url")
    else:
        server = request.getfixturevalue("mysql_server")
        name = f"ctl_{uuid.uuid4().hex[:10]}"
        with rk.endpoint(server.create_database(name)) as ep:
            yield ep
        server.drop_database(name)
        return
    with rk.endpoint(url) as ep:
        yield ep


def test_suspend_record_read_and_drop(target: rk.Endpoint) -> None:
    store = control.control_store(target)
    assert store is not None
    assert store.suspended("t1") == [] and store.exceptions("t1") == []  # nothing created yet
    when = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    store.suspend(SuspendedTable(task="t1", table="public.orders", reason="bad value",
                                 position="pg:0/16B3748", suspended_at=when))
    store.suspend(SuspendedTable(task="t2", table="public.orders", reason="other task"))
    bad = ApplyException(task="t1", table="public.orders", kind="data-error", op="insert",
                         key={"id": 7, "region": "eu"}, column="qty",
                         error="value 'x' cannot be written", position="pg:0/16B3748")
    store.record([bad, bad])  # one row: the same record twice (a replay) is one row
    store.record([ApplyException(task="t1", table="public.items", kind="conflict",
                                 op="delete", key={"id": 1}, error="row not found")])
    (row,) = store.suspended("t1")
    assert (row.table, row.state, row.reason, row.position) == (
        "public.orders", "suspended", "bad value", "pg:0/16B3748")
    assert row.suspended_at == when
    assert control.read_suspended(target, "t1") == [row]
    assert store.count_exceptions("t1") == {"public.items": 1, "public.orders": 1}
    (got,) = control.read_exceptions(target, "t1", table="public.orders")
    assert (got.key, got.column, got.op, got.kind, got.error, got.position) == (
        {"id": 7, "region": "eu"}, "qty", "insert", "data-error", bad.error, bad.position)
    assert got.as_dict()["key"] == {"id": 7, "region": "eu"}
    # suspending again replaces the row (state moves to reloading)
    store.suspend(SuspendedTable(task="t1", table="public.orders", state="reloading",
                                 reason="bad value"))
    assert [s.state for s in store.suspended("t1")] == ["reloading"]
    store.resume("t1", "public.orders")
    assert store.suspended("t1") == []
    store.drop("t1")
    assert store.exceptions("t1") == [] and len(store.suspended("t2")) == 1
    store.drop("t2")
    assert store.suspended("t2") == []


def test_an_endpoint_without_control_tables_has_no_store() -> None:
    assert control.control_store(object()) is None

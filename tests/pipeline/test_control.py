"""The failure control tables (``replikit_suspended_tables``, ``replikit_apply_exceptions``)
in every target family that holds them, on real databases; and the same records in a files
target (its manifest) and a MongoDB one (collections)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import replikit as rk
from replikit.pipeline import control
from replikit.pipeline.control import ApplyException, SuspendedTable


@pytest.fixture(params=["sqlite", "duckdb", "pg", "mysql", "files", "mongodb"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[rk.Endpoint]:
    kind = request.param
    if kind == "mongodb":  # the nx-27017 stand-in (tests/fix_mongo.py)
        server = request.getfixturevalue("nx_server")
        name = f"ctl_{uuid.uuid4().hex[:10]}"
        with rk.endpoint(server.url(name)) as ep:
            yield ep
        server.drop_database(name)
        return
    if kind == "files":
        pytest.importorskip("pyarrow")
        url = f"file://{tmp_path / 'out'}"
    elif kind == "sqlite":
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


def test_files_control_records_refuse_a_foreign_folder_and_survive_checkpoints(
    tmp_path: Path,
) -> None:
    """Nothing is written into a folder replikit did not write; a suspension in the manifest
    stays when a checkpoint rewrites it."""
    from replikit.pipeline.contracts import Checkpoint
    from replikit.positions import SqliteSeq

    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("not ours")
    with rk.endpoint(f"file://{tmp_path / 'theirs'}") as ep:
        store = control.control_store(ep)
        assert store is not None
        with pytest.raises(rk.ConfigError, match="did not write"):
            store.suspend(SuspendedTable(task="t1", table="orders", reason="bad value"))
    with rk.endpoint(f"file://{tmp_path / 'ours'}") as ep:
        store = control.control_store(ep)
        assert store is not None
        row = SuspendedTable(task="t1", table="orders", reason="bad value")
        store.suspend(row)
        checkpoints = ep.checkpoint_store()
        checkpoint = Checkpoint("t1", start=SqliteSeq(0), position=SqliteSeq(7))
        checkpoints.write_checkpoint(checkpoint)
        assert store.suspended("t1") == [row]
        assert checkpoints.read_checkpoint("t1") == checkpoint
        checkpoints.drop_control("t1")
        assert store.suspended("t1") == [row]
        store.drop("t1")
        assert store.suspended("t1") == []
        assert not (tmp_path / "ours" / "_replikit_exceptions").exists()


def test_writers_creating_control_objects_at_once_do_not_collide(pg_server) -> None:
    """Replicators, loads and reports starting together each create control objects in the
    ``replikit`` schema of a PostgreSQL target: the schema, the failure, status and ledger
    tables, all at once. One advisory lock serializes the creations (without it PostgreSQL
    refuses a concurrent ``CREATE SCHEMA IF NOT EXISTS`` on the schema's unique name)."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from replikit.pipeline.status import StatusStore

    url = pg_server.create_database(f"ctl_race_{uuid.uuid4().hex[:8]}")
    try:
        with rk.endpoint(url) as ep:
            start = Barrier(6)

            def suspend() -> None:
                start.wait()
                store = control.control_store(ep)
                assert store is not None
                store.suspend(SuspendedTable(task="t", table="public.a", reason="test"))

            def status() -> None:
                start.wait()
                StatusStore(ep).ensure()

            def ledger() -> None:
                start.wait()
                ep.writer().start_ledger("load")

            with ThreadPoolExecutor(6) as pool:
                futures = [pool.submit(f) for f in (suspend, status, ledger) * 2]
                for fut in futures:
                    fut.result()  # none raised
            store = control.control_store(ep)
            assert store is not None
            assert [s.table for s in store.suspended("t")] == ["public.a"]
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])

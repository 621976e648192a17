"""A MariaDB task resumed against another server than the one its checkpoint came from.

Three private, throwaway MariaDB servers: ``a`` (``server_id`` 1), ``replica`` (``server_id`` 2,
a replica of ``a`` that writes what it replicates to its own binlog, as a failover candidate
does) and ``stranger`` (``server_id`` 1 too, unrelated). A binlog file and offset of one
server mean nothing on another: a resume there goes by GTID when the server has the
checkpoint's transactions (a failover to the replica), and otherwise stops with
``PositionLostError`` naming both servers and what to do, with nothing applied.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_task_cdc import SCHEMA, Db, Workload, _assert_equal, _assert_ledger, _drain, _task

import replikit as rk
from replikit.testing.servers import MysqlServer, mysql_server


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, MysqlServer]]:
    with (
        mysql_server("failover-a", private=True) as a,
        mysql_server(
            "failover-replica",
            private=True,
            settings={"server-id": "2", "log-slave-updates": None},
        ) as replica,
        mysql_server("failover-stranger", private=True) as stranger,
    ):
        with a.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@gtid_binlog_pos")
            (gtid,) = cur.fetchone()
        with replica.connect() as conn, conn.cursor() as cur:
            # a transaction of its own first: the same events sit at other offsets there
            cur.execute("CREATE DATABASE replica_only")
            cur.execute("CREATE TABLE replica_only.t (id INT PRIMARY KEY, v TEXT)")
            cur.execute("INSERT INTO replica_only.t VALUES (1, REPEAT('x', 3000))")
            cur.execute("SET GLOBAL gtid_slave_pos = %s", (gtid,))
            cur.execute(
                "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = %s, "
                "MASTER_USER = 'root', MASTER_USE_GTID = slave_pos",
                (a.port,),
            )
            cur.execute("START SLAVE")
        yield {"a": a, "replica": replica, "stranger": stranger}


def _database(server: MysqlServer, name: str) -> Db:
    """Database ``name`` on ``server`` (created), with the tables of test_task_cdc."""
    server.create_database(name)
    db = Db(server.url(name), "mysql", name, server)
    db.execute([(s, ()) for s in SCHEMA])
    return db


def _caught_up(replica: MysqlServer, source: MysqlServer) -> None:
    with source.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        (gtid,) = cur.fetchone()
    with replica.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT MASTER_GTID_WAIT(%s, 60)", (gtid,))
        assert cur.fetchone()[0] == 0, "the replica did not catch up"


def _target(tmp_path: Path) -> Db:
    return Db(f"sqlite:///{tmp_path / 'target.db'}", "sqlite")


def _snapshot(target: Db) -> dict[str, list[tuple[Any, ...]]]:
    return {t: target.rows(t, "1, 2") for t in ("items", "ledger", "counters")}


def _binlog_end(server: MysqlServer) -> tuple[str, int]:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    return str(row[0]), int(row[1])


def test_failover_to_a_replica_resumes_by_gtid_without_loss_or_duplicates(
    servers: dict[str, MysqlServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, replica = servers["a"], servers["replica"]
    name = f"fo_{uuid.uuid4().hex[:8]}"
    source = _database(a, name)
    load = Workload(source, writer=1, seed=1)
    load.run(count=5)
    target = _target(tmp_path)
    _drain(source, target)  # full load + CDC from a: the checkpoint is a's
    load.run(count=7)  # after the checkpoint, replicated
    _caught_up(replica, a)
    with replica.connect() as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE")  # a is gone: the replica is the source now
    promoted = Db(replica.url(name), "mysql", name, replica)
    load.db = promoted
    load.run(count=6)  # written on the new source
    with caplog.at_level(logging.WARNING, logger="replikit"):
        task = _drain(promoted, target)
    assert "server_id 1" in caplog.text and "resuming from its GTID state" in caplog.text
    _assert_equal(promoted, target)
    _assert_ledger(target, {1: load.seq})
    [ledger] = [t for t in task.statistics() if t.table.endswith("ledger")]
    assert ledger.inserts == 13  # from a's checkpoint on, none twice
    # the next run resumes on the replica from the replica's own positions
    load.run(count=2)
    _drain(promoted, target)
    _assert_ledger(target, {1: load.seq})


def test_resume_on_an_unrelated_server_with_the_same_server_id_stops_and_applies_nothing(
    servers: dict[str, MysqlServer], tmp_path: Path
) -> None:
    """Both servers have server_id 1 and a binlog.000001 long enough to hold the checkpoint's
    offset: only the GTID state there tells them apart."""
    a, stranger = servers["a"], servers["stranger"]
    name = f"fo_{uuid.uuid4().hex[:8]}"
    source = _database(a, name)
    Workload(source, writer=1, seed=1).run(count=5)
    target = _target(tmp_path)
    _drain(source, target)
    file, offset = _binlog_end(a)
    other = _database(stranger, name)
    load = Workload(other, writer=2, seed=2)
    while _binlog_end(stranger) < (file, offset + 10_000):  # the offset is in its binlog too
        load.run(count=20)
    before = _snapshot(target)
    task = _task(other, target, stop_when_idle=2.0)
    with pytest.raises(rk.PositionLostError) as info:
        task.run()
    message = str(info.value)
    assert "server_id 1" in message and "GTID state" in message, message
    assert "replikit drop" in message and "full load" in message, message
    assert _snapshot(target) == before


def test_resume_on_a_server_without_the_checkpoints_gtids_stops_and_applies_nothing(
    servers: dict[str, MysqlServer], tmp_path: Path
) -> None:
    """A checkpoint of the replica (server_id 2, its own transactions) resumed on the
    stranger (server_id 1), which never had them: no GTID resume, no file and offset."""
    replica, stranger = servers["replica"], servers["stranger"]
    name = f"fo_{uuid.uuid4().hex[:8]}"
    source = _database(replica, name)
    Workload(source, writer=1, seed=1).run(count=5)
    target = _target(tmp_path)
    _drain(source, target)
    other = _database(stranger, name)
    Workload(other, writer=2, seed=2).run(count=5)
    before = _snapshot(target)
    task = _task(other, target, stop_when_idle=2.0)
    with pytest.raises(rk.PositionLostError) as info:
        task.run()
    message = str(info.value)
    assert "server_id 2" in message and "server_id 1" in message, message
    assert "does not have GTID 0-2-" in message and "replikit drop" in message, message
    assert _snapshot(target) == before

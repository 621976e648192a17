"""A loaded table's indexes and keys are built while the other tables still load
(:mod:`replikit.pipeline.finishing`); foreign keys wait for the end of the load.

The loading table is held at one of its rows (a transform waits there) until the other
table's indexes and keys were built (the ``full-load.table-indexed`` failpoint): with the
indexes built only after the whole load, the wait would run out and the test fail. What
the target holds at that moment is read from its catalog; nothing is timed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

import replikit as rk
from replikit._failpoints import inject
from replikit.changes import Change

CUSTOMERS = 300
ORDERS = 4000
HOLD_AT = 1500  # an order row of the third batch (batches of 500)
GUARD = 60.0  # seconds: only against a hang; the test fails if the wait runs out


def _source(tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, "
            "name TEXT);"
            "CREATE INDEX customers_name ON customers (name);"
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, "
            "customer_id INTEGER NOT NULL REFERENCES customers (id), note TEXT);"
            "CREATE INDEX orders_customer ON orders (customer_id);"
        )
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?)",
            [(i, f"c{i}@x", f"name {i % 17}") for i in range(1, CUSTOMERS + 1)],
        )
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [(i, 1 + i % CUSTOMERS, f"order {i}") for i in range(1, ORDERS + 1)],
        )
    return f"sqlite:///{path}"


def _catalog(url: str) -> dict[str, set[str]]:
    """Per table of ``public``: its index names, and its constraints as ``type:name``."""
    out: dict[str, set[str]] = {"customers": set(), "orders": set()}
    with psycopg.connect(url) as conn:
        for table, index in conn.execute(
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public'"
        ):
            out.setdefault(table, set()).add(f"index:{index}")
        for table, kind, name in conn.execute(
            "SELECT conrelid::regclass::text, contype, conname FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u', 'f')"
        ):
            out.setdefault(table, set()).add(f"{kind}:{name}")
    return out


class Hold:
    """A transform that holds the ``orders`` load at one row until ``event`` is set, and
    reads the target's catalog then."""

    def __init__(self, url: str, event: threading.Event) -> None:
        self.url, self.event = url, event
        self.released: bool | None = None
        self.seen: dict[str, set[str]] = {}

    def __call__(self, change: Change) -> Change:
        if change.table.name == "orders" and (change.after or {}).get("id") == HOLD_AT:
            self.released = self.event.wait(GUARD)
            self.seen = _catalog(self.url)
        return change


def _pipeline(source: str, pg_url: str, *transforms: Callable[[Change], Change]) -> rk.Pipeline:
    """Both tables at once (2 workers, one unit each), through ``transforms``."""
    return rk.Pipeline(
        rk.endpoint(source, batch_size=500).reader(["customers", "orders"]),
        rk.endpoint(pg_url).writer(),
        transforms=transforms,
        parallel=2,
        progress=False,
    )


def test_a_loaded_tables_indexes_are_built_while_another_table_loads(
    tmp_path: Path, pg_url: str
) -> None:
    indexed = threading.Event()
    hold = Hold(pg_url, indexed)
    pipe = _pipeline(_source(tmp_path), pg_url, hold)
    with inject("full-load.table-indexed", indexed.set):
        pipe.run()
    assert hold.released, "customers' indexes were not built while orders was loading"
    assert hold.seen["customers"] == {
        "index:customers_pkey", "p:customers_pkey",
        "index:customers_email_key", "u:customers_email_key",
        "index:customers_name",
    }  # fmt: skip
    assert hold.seen["orders"] == set()  # still loading: no index, no foreign key yet
    after = _catalog(pg_url)
    assert after["customers"] == hold.seen["customers"]
    assert after["orders"] == {
        "index:orders_pkey", "p:orders_pkey", "index:orders_customer",
        "f:orders_customer_id_fkey",
    }  # fmt: skip
    stats = pipe.statistics
    assert [stats[t].state for t in ("customers", "orders")] == [rk.TableState.COMPLETED] * 2
    with psycopg.connect(pg_url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders)"
        ).fetchone()
    assert counts == (CUSTOMERS, ORDERS)


def test_a_key_refused_while_another_table_loads_fails_that_table_only(
    tmp_path: Path, pg_url: str
) -> None:
    """customers' unique key cannot be built (a transform gives every row one email): that
    table is in error and keeps none of its indexes, orders completes with its own, and its
    foreign key to customers is left out and reported."""
    tried = threading.Event()
    hold = Hold(pg_url, tried)

    def same_email(change: Change) -> Change:
        if change.table.name == "customers" and change.after is not None:
            return replace(change, after={**change.after, "email": "same@x"})
        return change

    pipe = _pipeline(_source(tmp_path), pg_url, same_email, hold)
    with inject("full-load.table-indexed", tried.set), pytest.raises(rk.TaskError) as info:
        pipe.run()
    assert hold.released, "customers' keys were not tried while orders was loading"
    assert hold.seen["customers"] == set()  # refused: what was built for it is dropped
    assert set(info.value.table_errors) == {"customers"}
    assert "customers_email_key" in str(info.value.table_errors["customers"])
    after = _catalog(pg_url)
    assert after["customers"] == set()
    assert after["orders"] == {"index:orders_pkey", "p:orders_pkey", "index:orders_customer"}
    stats: Any = pipe.statistics
    assert stats["customers"].state is rk.TableState.ERROR
    assert stats["orders"].state is rk.TableState.COMPLETED
    assert any("customers" in w and "not created" in w for w in stats["orders"].warnings)

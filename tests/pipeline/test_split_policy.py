"""How many units a table becomes: ``split_rows="auto"`` splits a table only into as many key
ranges as can load at once (replikit.pipeline.splitting), and a table left whole is written
frozen into a PostgreSQL table the load created (``COPY ... FREEZE``), on the binary path too."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

import replikit as rk
from replikit.pipeline.splitting import (
    AUTO_SPLIT_ROWS,
    auto_split_rows,
    load_slots,
    usable_cores,
)

ROWS = 260_000  # just above AUTO_SPLIT_ROWS: two ranges when two units can load at once


class _Stage:
    """A reader or writer that says where its database works."""

    def __init__(self, here: bool) -> None:
        self.on_this_machine = here


@given(st.integers(0, 10**10), st.integers(1, 64))
def test_auto_cuts_a_table_into_at_most_the_slots(rows: int, slots: int) -> None:
    split = auto_split_rows(rows, slots)
    wanted = min(math.ceil(rows / AUTO_SPLIT_ROWS), slots)
    if wanted <= 1:
        assert split is None  # one unit: the table loads in one transaction
        return
    assert split is not None and split < rows  # split_table splits only above split_rows
    pieces = math.ceil(rows / split)  # what split_table cuts it into
    assert pieces == wanted


@given(st.integers(1, 64), st.lists(st.booleans(), max_size=2), st.integers(1, 256))
def test_slots_are_the_workers_capped_by_the_cores_the_databases_here_share(
    workers: int, here: list[bool], cores: int
) -> None:
    slots = load_slots(workers, [_Stage(h) for h in here], cores)
    local = sum(here)
    assert 1 <= slots <= workers
    if local == 0:  # both databases elsewhere: this machine's cores are not what bounds it
        assert slots == workers
    else:
        assert slots == max(1, min(workers, cores // local))


def test_a_stage_that_does_not_say_counts_as_elsewhere() -> None:
    assert load_slots(8, [object(), object()], cores=1) == 8
    assert load_slots(8, [_Stage(True), object()], cores=1) == 1
    assert load_slots(3, [], cores=1) == 3  # the machine's cores by default:
    assert load_slots(64, [_Stage(True)]) == min(64, usable_cores())


# -- end to end: PostgreSQL -> PostgreSQL, both on this machine ------------------------------
@pytest.fixture
def databases(pg_server: Any) -> Iterator[tuple[str, str]]:
    names = [f"rk_split_{uuid.uuid4().hex[:8]}_{side}" for side in ("src", "dst")]
    src, dst = (pg_server.create_database(n) for n in names)
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, v int)")
        conn.execute("INSERT INTO big SELECT g, g %% 7 FROM generate_series(1, %s) g", (ROWS,))
        conn.execute("CREATE TABLE small (id int PRIMARY KEY)")
        conn.execute("INSERT INTO small SELECT generate_series(1, 10)")
        conn.execute("ANALYZE")
    try:
        yield src, dst
    finally:
        for n in names:
            pg_server.drop_database(n)


def _frozen(url: str, table: str) -> tuple[int, int]:
    """(pages all-frozen in the visibility map, pages) of ``table``."""
    with psycopg.connect(url, autocommit=True) as conn:
        have = "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_visibility'"
        if conn.execute(have).fetchone() is None:
            pytest.skip("the server has no pg_visibility extension (postgresql-contrib)")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_visibility")
        row = conn.execute(
            "SELECT all_frozen, pg_relation_size(%s::regclass)"
            " / current_setting('block_size')::int FROM pg_visibility_map_summary(%s::regclass)",
            (table, table),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _copy(src: str, dst: str, **settings: Any) -> Any:
    stats = rk.Task(src, dst, settings=rk.TaskSettings(progress=False, **settings)).run()
    with psycopg.connect(dst) as conn:
        got = conn.execute("SELECT count(*), sum(id), sum(v) FROM big").fetchone()
    with psycopg.connect(src) as conn:
        assert got == conn.execute("SELECT count(*), sum(id), sum(v) FROM big").fetchone()
    return stats


def test_auto_loads_a_big_table_whole_and_frozen_when_one_unit_loads_at_a_time(
    databases, caplog
):
    src, dst = databases
    assert rk.TaskSettings().split_rows == "auto"
    with caplog.at_level(logging.INFO, logger="replikit.pipeline"):
        stats = _copy(src, dst, parallel_tables=1)
    assert "split_rows=auto: 1 load slot(s) (1 worker(s)" in caplog.text
    assert "source and target on this machine" in caplog.text
    assert stats["public.big"].units_total == 1
    frozen, pages = _frozen(dst, "big")  # binary COPY ... FREEZE
    assert pages > 100 and frozen == pages


def test_a_number_of_rows_splits_as_it_says_and_split_units_are_not_frozen(databases):
    src, dst = databases
    stats = _copy(src, dst, parallel_tables=1, split_rows=AUTO_SPLIT_ROWS)
    assert stats["public.big"].units_total == 2
    frozen, pages = _frozen(dst, "big")
    assert pages > 100 and frozen == 0


def test_auto_splits_as_far_as_the_cores_run_both_local_databases(databases):
    src, dst = databases
    stats = _copy(src, dst, parallel_tables=2)
    # both servers are on this machine: each loading unit keeps two of its processes busy
    expected = min(2, max(1, usable_cores() // 2))
    assert stats["public.big"].units_total == expected
    assert stats["public.small"].units_total == 1


def test_auto_keeps_ranges_for_a_target_that_gains_nothing_from_a_whole_table(
    databases, tmp_path
):
    src, _ = databases  # SQLite takes one unit at a time and commits as it goes
    stats = rk.copy(src, f"sqlite:///{tmp_path / 'o.db'}", progress=False)
    assert stats["public.big"].units_total == 2  # ranges of about AUTO_SPLIT_ROWS, as before
    assert stats["public.big"].full_load_rows == ROWS

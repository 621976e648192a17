"""Key-range splitting (replikit.pipeline.splitting) on real PostgreSQL and MariaDB tables:
every row is read exactly once, and skewed keys still give units of about ``split_rows`` rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import pymysql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

import replikit as rk

SPLIT = 2_000
SMALL = 500  # split size of the property test


def _pg(url: str, keys: Iterable[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS big")
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, v int)")
        with conn.cursor().copy("COPY big (id, v) FROM STDIN") as copy:
            for k in keys:
                copy.write_row((k, k % 7))
        conn.execute("ANALYZE big")


def _mysql(url: str, keys: Iterable[int]) -> None:
    u = make_url(url)
    conn = pymysql.connect(
        host=u.host, port=u.port, user=u.username, password=u.password or "", database=u.database
    )
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS big")
        cur.execute("CREATE TABLE big (id bigint PRIMARY KEY, v int)")
        cur.executemany("INSERT INTO big VALUES (%s, %s)", [(k, k % 7) for k in keys])
        cur.execute("ANALYZE TABLE big")
        cur.fetchall()
    conn.commit()
    conn.close()


SERVERS: dict[str, tuple[str, Callable[[str, Iterable[int]], None]]] = {
    "postgres": ("pg_url", _pg),
    "mariadb": ("mysql_url", _mysql),
}


def _units(url: str, split: int = SPLIT) -> tuple[list[rk.Unit], list[list[int]]]:
    """The units of ``big`` and the keys each one reads."""
    with rk.endpoint(url) as ep:
        reader = ep.reader(["big"])
        (table,) = reader.tables
        units = reader.units(table, split_rows=split)
        keys = [[row[0] for b in reader.read(u) for row in b.rows] for u in units]
        reader.close()  # type: ignore[attr-defined]
    return units, keys


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> tuple[str, Callable[[str, Iterable[int]], None]]:
    fixture, fill = SERVERS[request.param]
    return request.getfixturevalue(fixture), fill


def test_skewed_keys_are_split_into_even_units(server: Any) -> None:
    url, fill = server
    dense = range(1, 20_001)
    outliers = [10**12 + i * 10**9 for i in range(10)]  # a span a million times the rows
    fill(url, [*dense, *outliers])
    units, keys = _units(url)
    assert sorted(k for ks in keys for k in ks) == [*dense, *outliers]
    sizes = [len(ks) for ks in keys]
    # even bounds over 1..1e12 would put all 20,000 dense rows into the first unit
    assert max(sizes) <= 2 * SPLIT, sizes
    assert len(units) >= 8


def test_dense_keys_split_by_min_and_max(server: Any) -> None:
    url, fill = server
    fill(url, range(1, 10_001))
    units, keys = _units(url)
    sizes = [len(ks) for ks in keys]  # row estimates are estimates (InnoDB's especially)
    assert sum(sizes) == 10_000
    assert max(sizes) - min(sizes) <= 2, sizes
    assert max(sizes) <= SPLIT * 1.25, sizes
    assert units[0].range is not None and units[0].range.lower is None
    assert units[-1].range is not None and units[-1].range.upper is None


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(st.integers(-(2**40), 2**40), st.integers(0, 3_000)),
        min_size=1,
        max_size=4_000,
        unique=True,
    )
)
def test_every_row_is_read_exactly_once(server: Any, keys: list[int]) -> None:
    url, fill = server
    fill(url, keys)
    _, read = _units(url, SMALL)
    flat = [k for ks in read for k in ks]
    assert sorted(flat) == sorted(keys)

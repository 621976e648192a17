"""Referentially closed subsets: for random seed predicates on Chinook and Sakila the subset
is closed under its foreign keys and is a subset of the source, row for row."""

import shutil
import sqlite3
import subprocess
import time

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replikit as rk
from datasets import script
from replikit.demo import sample_database
from replikit.testing.subset import Subset, closure, subset_batches

CHINOOK_SEEDS = {
    "Customer": "CustomerId",
    "Invoice": "InvoiceId",
    "Track": "TrackId",
    "Album": "AlbumId",
    "Employee": "EmployeeId",
    "Playlist": "PlaylistId",
}
CHINOOK_CHILDREN = ["Invoice", "InvoiceLine", "Track", "PlaylistTrack", "Album", "Customer"]
SAKILA_SEEDS = {
    "public.customer": "customer_id",
    "public.film": "film_id",
    "public.store": "store_id",
    "public.actor": "actor_id",
    "public.rental": "rental_id",
    "public.staff": "staff_id",
}
SAKILA_CHILDREN = [
    "public.rental", "public.payment", "public.inventory", "public.film_actor",
    "public.film_category", "public.customer", "public.payment_p2007_02",
]  # fmt: skip


@pytest.fixture(scope="module")
def chinook(tmp_path_factory):
    path = sample_database(tmp_path_factory.mktemp("chinook") / "chinook.db")
    with rk.endpoint(f"sqlite:///{path}") as ep:
        yield ep


@pytest.fixture(scope="module")
def sakila_url(pg_server):
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is needed to load Sakila (apt-get install postgresql-client)")
    name = "rk_subset_sakila"
    pg_server.drop_database(name)
    url = pg_server.create_database(name)
    for part in ("sakila-postgres-schema.sql", "sakila-postgres-data-copy.sql"):
        subprocess.run(
            [psql, "-q", "-v", "ON_ERROR_STOP=0", "-d", url],
            input=script(f"sakila/{part}"),
            check=True,
            capture_output=True,
        )
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def sakila(sakila_url):
    with rk.endpoint(sakila_url) as ep:
        yield ep


def _hashable(v):
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _rows(batches):
    out: dict = {}
    for b in batches:
        out.setdefault(b.table, {"columns": b.columns, "rows": []})["rows"] += [
            tuple(_hashable(v) for v in r) for r in b.rows
        ]
    return out


@pytest.fixture(scope="module")
def source_rows():
    cache: dict = {}

    def get(ep):
        if id(ep) not in cache:
            tables = list(ep.reflect().tables)
            cache[id(ep)] = (tables, _rows(subset_batches(ep, None, tables)))
        return cache[id(ep)]

    return get


def _check_closed_subset(ep, source_rows, subset):
    tables, source = source_rows(ep)
    selected = closure(ep, tables, subset)
    got = _rows(subset_batches(ep, selected, tables))
    by_id = {t.id: t for t in tables}
    # a subset of the source, row for row, every selected key delivered once
    for tid, part in got.items():
        assert set(part["rows"]) <= set(source[tid]["rows"]), tid
        assert len(part["rows"]) == len(set(part["rows"])) == len(selected.keys[tid]), tid
    assert sum(len(p["rows"]) for p in got.values()) == selected.rows()
    # closed under every foreign key between cloned tables
    for tid, part in got.items():
        cols = part["columns"]
        for fk in by_id[tid].foreign_keys:
            parent = got.get(fk.ref_table)
            refs = set()
            if parent is not None:
                idx = [parent["columns"].index(c) for c in fk.ref_columns]
                refs = {tuple(r[i] for i in idx) for r in parent["rows"]}
            idx = [cols.index(c) for c in fk.columns]
            for row in part["rows"]:
                value = tuple(row[i] for i in idx)
                if None not in value:
                    assert value in refs, f"{tid}.{fk.columns} = {value} has no {fk.ref_table} row"
    return selected, got


def _predicates(column):
    n = st.integers(1, 60)
    return st.one_of(
        n.map(lambda k: f"{column} <= {k}"),
        st.tuples(st.integers(2, 50), st.integers(0, 49)).map(
            lambda p: f"{column} % {p[0]} = {p[1] % p[0]}"
        ),
        st.lists(n, min_size=1, max_size=4).map(
            lambda ks: f"{column} IN ({', '.join(map(str, ks))})"
        ),
    )


@st.composite
def _subsets(draw, seeds, children):
    table = draw(st.sampled_from(sorted(seeds)))
    follow = draw(st.lists(st.sampled_from(children), unique=True, max_size=3))
    limits = {t: draw(st.integers(0, 200)) for t in follow if draw(st.booleans())}
    seed = draw(_predicates(seeds[table]))
    return Subset({table: seed}, tuple(follow), limits, row_cap=1_000_000)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(subset=_subsets(CHINOOK_SEEDS, CHINOOK_CHILDREN))
def test_chinook_subsets_are_closed_and_row_for_row(chinook, source_rows, subset):
    selected, _ = _check_closed_subset(chinook, source_rows, subset)
    ((table, predicate),) = subset.seeds.items()
    with sqlite3.connect(chinook.path) as conn:
        (seeded,) = conn.execute(f'SELECT count(*) FROM "{table}" WHERE {predicate}').fetchone()
    assert len(selected.keys[next(t for t in selected.tables if t.name == table)]) >= seeded


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(subset=_subsets(SAKILA_SEEDS, SAKILA_CHILDREN))
def test_sakila_subsets_are_closed_and_row_for_row(sakila, source_rows, subset):
    _check_closed_subset(sakila, source_rows, subset)


def test_sakila_cycle_and_self_reference_terminate(sakila, source_rows):
    # store -> staff (manager) -> store: a cycle; every path reaches both stores and staff
    selected, _ = _check_closed_subset(sakila, source_rows, Subset({"public.store": "1 = 1"}))
    names = {t.name: len(k) for t, k in selected.keys.items() if k}
    assert names["store"] == 2 and names["staff"] == 2 and names["address"] >= 4


def test_sakila_ten_customers_with_rentals_and_payments_into_sqlite(replikit_clone, sakila_url):
    t0 = time.perf_counter()
    clone = replikit_clone(
        sakila_url,
        subset={"public.customer": "customer_id <= 10"},
        follow_children=["public.rental", "public.payment"],
        tables=["public.%"],
    )
    seconds = time.perf_counter() - t0
    assert clone.rows["public.customer"] == 10
    with psycopg.connect(sakila_url) as conn:
        (rentals,) = conn.execute("SELECT count(*) FROM rental WHERE customer_id <= 10").fetchone()
        (payments,) = conn.execute(
            "SELECT count(*) FROM payment WHERE customer_id <= 10"
        ).fetchone()
    assert clone.rows["public.rental"] >= rentals > 0  # and the rentals payments point to
    assert clone.rows["public.payment"] >= payments > 0
    with sqlite3.connect(clone.endpoint.path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    print(f"Sakila subset (10 customers, rentals, payments) PG -> SQLite: {seconds:.2f} s")

"""The replikit_clone fixture: clones of Chinook (SQLite) into SQLite, PostgreSQL and MariaDB,
fresh per test, shared per session, cached between sessions; bad input errors the test."""

import sqlite3

import pytest

import replikit as rk
from replikit.demo import sample_database
from replikit.testing import assert_databases_equal
from replikit.testing._copies import SqliteTarget
from replikit.testing.clone import Cloner, CloneRequest
from replikit.testing.subset import Subset, SubsetTooLargeError

SEED = {"Customer": "CustomerId <= 3"}
CHILDREN = ["Invoice", "InvoiceLine"]


@pytest.fixture(scope="module")
def chinook(tmp_path_factory):
    return f"sqlite:///{sample_database(tmp_path_factory.mktemp('src') / 'chinook.db')}"


def _count(ep, table):
    reader = ep.reader([table])
    (schema,) = reader.tables
    return sum(len(b) for u in reader.units(schema) for b in reader.read(u))


def _fk_violations(clone) -> list:
    with sqlite3.connect(rk.endpoint(clone.url).path) as conn:
        return conn.execute("PRAGMA foreign_key_check").fetchall()


def test_subset_clone_holds_the_seed_its_children_and_every_parent(replikit_clone, chinook):
    clone = replikit_clone(chinook, subset=SEED, follow_children=CHILDREN)
    assert clone.rows["Customer"] == 3
    assert clone.rows["Invoice"] == _count(clone.endpoint, "Invoice") > 0
    assert clone.rows["Playlist"] == 0  # not reached: created empty
    assert _fk_violations(clone) == []  # every foreign key resolves
    # the support reps and the managers they report to (a self-reference) are there
    with sqlite3.connect(clone.endpoint.path) as conn:
        reps = conn.execute("SELECT DISTINCT SupportRepId FROM Customer").fetchall()
        managers = conn.execute("SELECT ReportsTo FROM Employee WHERE ReportsTo IS NOT NULL")
        ids = {r for (r,) in conn.execute("SELECT EmployeeId FROM Employee")}
        assert {r for (r,) in reps} <= ids and {m for (m,) in managers} <= ids


def test_each_test_gets_a_fresh_copy(replikit_clone, chinook):
    first = replikit_clone(chinook, subset=SEED)
    second = replikit_clone(chinook, subset=SEED)
    assert first.url != second.url
    with sqlite3.connect(first.endpoint.path) as conn:
        conn.execute("DELETE FROM Customer WHERE CustomerId = 1")
    assert _count(first.endpoint, "Customer") == 2
    assert _count(second.endpoint, "Customer") == 3


@pytest.mark.parametrize("attempt", [1, 2])
def test_changes_never_leak_into_the_next_test(replikit_clone, chinook, attempt):
    clone = replikit_clone(chinook, tables=["Genre"])
    assert _count(clone.endpoint, "Genre") == 25  # the other attempt deleted rows in its copy
    with sqlite3.connect(clone.endpoint.path) as conn:
        conn.execute("DELETE FROM Genre WHERE GenreId > 5")


def test_session_scope_shares_one_copy(replikit_clone, chinook):
    a = replikit_clone(chinook, tables=["MediaType"], scope="session")
    b = replikit_clone(chinook, tables=["MediaType"], scope="session")
    assert a is b


def test_unreached_tables_can_be_excluded(replikit_clone, chinook):
    clone = replikit_clone(chinook, subset={"Genre": {"GenreId": [1, 2]}}, unreached="exclude")
    assert sorted(t.id.name for t in clone.endpoint.reflect().tables) == ["Genre"]
    assert clone.rows == {"Genre": 2}


@pytest.mark.parametrize("to", ["postgresql", "mysql"])
def test_clone_into_a_throwaway_server_is_fresh_per_test(replikit_clone, chinook, to):
    clone = replikit_clone(chinook, to=to, subset=SEED, follow_children=CHILDREN)
    other = replikit_clone(chinook, to=to, subset=SEED, follow_children=CHILDREN)
    assert clone.endpoint.family == ("postgres" if to == "postgresql" else "mysql")
    assert_databases_equal(clone, other)
    names = {t.id.name: t for t in clone.endpoint.reflect().tables}
    assert {fk.ref_table.name for fk in names["Track"].foreign_keys} == {
        "Album", "Genre", "MediaType"
    }  # fmt: skip
    with rk.endpoint(clone.url) as ep:
        assert _count(ep, "Invoice") == clone.rows["Invoice"]
    _delete_customers(clone)
    assert _count(other.endpoint, "Customer") == 3


def _delete_customers(clone):
    from replikit.validation._sql import session

    with session(clone.endpoint) as s:
        cur = s.conn.cursor()
        for table in ("InvoiceLine", "Invoice", "Customer"):
            cur.execute(f"DELETE FROM {s.quote(table)}")
        s.conn.commit()
    assert _count(clone.endpoint, "Customer") == 0


def test_the_cache_spares_a_second_session_the_source_read(tmp_path, chinook):
    request = CloneRequest(chinook, (), Subset(SEED, tuple(CHILDREN)))
    made: list = []
    first = Cloner(tmp_path / "cache", tmp_path / "w1")
    a = first.clone(request, SqliteTarget(tmp_path / "w1"), "test", made)
    assert first.source_reads == 1
    second = Cloner(tmp_path / "cache", tmp_path / "w2")
    b = second.clone(request, SqliteTarget(tmp_path / "w2"), "test", made)
    assert second.source_reads == 0  # rows from the cache
    assert_databases_equal(a, b)
    # another subset is another entry; refresh reads the source again
    again = Cloner(tmp_path / "cache", tmp_path / "w3", refresh=True)
    again.clone(request, SqliteTarget(tmp_path / "w3"), "test", made)
    assert again.source_reads == 1
    for target, c in made:
        c.endpoint.close()
        target.drop(c.url)
    for cloner in (first, second, again):
        cloner.close()


def test_a_changed_source_schema_is_a_new_cache_entry(tmp_path):
    db = tmp_path / "s.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t VALUES (1, 'a')")
    request = CloneRequest(f"sqlite:///{db}")
    cloner = Cloner(tmp_path / "cache", tmp_path / "w")
    cloner.extract(request)
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE t ADD COLUMN w INTEGER")
    later = Cloner(tmp_path / "cache", tmp_path / "w")
    later.extract(request)
    assert later.source_reads == 1


# -- bad input: the test errors with the cause ----------------------------------------------
def test_a_predicate_that_does_not_parse_is_refused(replikit_clone, chinook):
    with pytest.raises(rk.ConfigError, match=r"subset predicate for Customer does not parse"):
        replikit_clone(chinook, subset={"Customer": "CustomerId <= (3"})
    with pytest.raises(rk.ConfigError, match="is not one SQL condition"):
        replikit_clone(chinook, subset={"Customer": "1 = 1; DROP TABLE Customer"})


def test_a_predicate_the_database_refuses_names_table_and_predicate(replikit_clone, chinook):
    with pytest.raises(rk.ConfigError, match=r"reading Customer WHERE no_such_column = 1 failed"):
        replikit_clone(chinook, subset={"Customer": "no_such_column = 1"})


def test_a_missing_table_is_named(replikit_clone, chinook):
    with pytest.raises(rk.TableNotFoundError, match=r"subset: no table 'Customers' among"):
        replikit_clone(chinook, subset={"Customers": "1 = 1"})
    with pytest.raises(rk.ConfigError, match="'Nope'"):
        replikit_clone(chinook, tables=["Nope"])
    with pytest.raises(rk.ConfigError, match="no column 'Id'"):
        replikit_clone(chinook, subset={"Customer": {"Id": 1}})


def test_an_unreachable_source_errors_with_the_cause(replikit_clone, pg_server):
    url = pg_server.url("no_such_database_here")
    with pytest.raises(rk.ConnectError, match="no_such_database_here"):
        replikit_clone(url)


def test_a_subset_over_the_row_cap_names_the_foreign_key_path(replikit_clone, chinook):
    with pytest.raises(SubsetTooLargeError) as err:
        replikit_clone(chinook, subset=SEED, follow_children=CHILDREN, row_cap=100)
    msg = str(err.value)
    assert "row_cap=100" in msg
    assert "Customer (seed) -> Invoice (children, Invoice.CustomerId)" in msg
    assert "limits=" in msg


def test_children_limits_bound_the_rows_taken(replikit_clone, chinook):
    clone = replikit_clone(chinook, subset=SEED, follow_children=CHILDREN, limits={"Invoice": 4})
    assert clone.rows["Invoice"] == 4
    assert _fk_violations(clone) == []


def test_bad_arguments_are_refused(replikit_clone, chinook):
    with pytest.raises(rk.ConfigError, match="scope must be"):
        replikit_clone(chinook, scope="module")
    with pytest.raises(rk.ConfigError, match="to='oracle'"):
        replikit_clone(chinook, to="oracle")
    with pytest.raises(rk.ConfigError, match="need subset"):
        replikit_clone(chinook, follow_children=["Invoice"])
    with pytest.raises(rk.ConfigError, match="unreached must be"):
        replikit_clone(chinook, subset=SEED, unreached="drop")


# -- masking ----------------------------------------------------------------------------------
@pytest.fixture
def shop(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            CREATE TABLE users (email TEXT PRIMARY KEY, name TEXT NOT NULL);
            CREATE TABLE orders (id INTEGER PRIMARY KEY,
                                 user_email TEXT NOT NULL REFERENCES users (email), total INT);
            INSERT INTO users VALUES ('ada@example.com', 'Ada'), ('alan@example.com', 'Alan');
            INSERT INTO orders VALUES (1, 'ada@example.com', 10), (2, 'ada@example.com', 20),
                                      (3, 'alan@example.com', 5);
            """
        )
    return f"sqlite:///{db}"


def test_masks_are_applied_and_masked_keys_still_join(replikit_clone, shop, monkeypatch):
    monkeypatch.delenv("REPLIKIT_MASK_SECRET", raising=False)
    mask = {"users.email": "hash", "orders.user_email": "hash", "users.name": "fake-first-name"}
    clone = replikit_clone(shop, mask=mask, mask_secret="s3cret")
    again = replikit_clone(shop, mask=mask, mask_secret="s3cret")
    with sqlite3.connect(clone.endpoint.path) as conn:
        emails = [e for (e,) in conn.execute("SELECT email FROM users ORDER BY email")]
        assert not any("@" in e for e in emails) and all(len(e) == 64 for e in emails)
        totals = conn.execute(
            "SELECT sum(total) FROM orders o JOIN users u ON u.email = o.user_email "
            "GROUP BY u.email ORDER BY 1"
        ).fetchall()
        assert totals == [(5,), (30,)]  # the masked key still joins
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        names = {n for (n,) in conn.execute("SELECT name FROM users")}
        assert names.isdisjoint({"Ada", "Alan"})
    assert_databases_equal(clone, again)  # deterministic under one secret
    other = replikit_clone(shop, mask=mask, mask_secret="another")
    with pytest.raises(AssertionError, match="users"):
        assert_databases_equal(clone, other)


def test_masks_need_a_secret_and_real_columns(replikit_clone, shop, monkeypatch):
    monkeypatch.delenv("REPLIKIT_MASK_SECRET", raising=False)
    with pytest.raises(rk.ConfigError, match="masking needs a task secret"):
        replikit_clone(shop, mask={"users.email": "hash"})
    with pytest.raises(rk.ConfigError, match="match no cloned column"):
        replikit_clone(shop, mask={"users.mail": "hash"}, mask_secret="k")
    with pytest.raises(rk.ConfigError, match="mask rules only"):
        replikit_clone(shop, mask=rk.Mappings().rename_table("users", "people"), mask_secret="k")
    with pytest.raises(rk.ConfigError, match="table.column"):
        replikit_clone(shop, mask={"email": "hash"}, mask_secret="k")


# -- copies on MariaDB keep views and generated columns; a URL names the server --------------
@pytest.fixture
def mariadb_shop(mysql_server):
    name = "rk_clone_src_shop"
    mysql_server.drop_database(name)
    url = mysql_server.create_database(name)
    with mysql_server.connect(name) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE item (id INT PRIMARY KEY, price DECIMAL(8,2) NOT NULL, qty INT NOT NULL,"
            " total DECIMAL(10,2) AS (price * qty) STORED)"
        )
        cur.execute("INSERT INTO item (id, price, qty) VALUES (1, 2.50, 4), (2, 1.00, 3)")
        cur.execute("CREATE VIEW big_items AS SELECT id, total FROM item WHERE total > 5")
    yield url
    mysql_server.drop_database(name)


def test_mariadb_copies_keep_views_over_their_own_tables(
    replikit_clone, mariadb_shop, mysql_server
):
    first = replikit_clone(mariadb_shop, to=mysql_server.admin_url)
    second = replikit_clone(mariadb_shop, to="mysql")
    for clone in (first, second):
        db = clone.url.rsplit("/", 1)[1]
        with mysql_server.connect(db) as conn, conn.cursor() as cur:
            cur.execute("SELECT id, total FROM big_items")
            assert [tuple(map(str, r)) for r in cur.fetchall()] == [("1", "10.00")]
            cur.execute("UPDATE item SET qty = 1 WHERE id = 1")  # the view follows its copy
            cur.execute("SELECT count(*) FROM big_items")
            assert cur.fetchone() == (0,)
            cur.execute("SELECT total FROM item WHERE id = 2")
            assert str(cur.fetchone()[0]) == "3.00"  # generated in the copy


def test_a_postgresql_url_names_the_server_for_the_clones(replikit_clone, chinook, pg_server):
    clone = replikit_clone(chinook, to=pg_server.admin_url, tables=["Genre"])
    assert clone.url.startswith("postgresql://") and clone.rows == {"Genre": 25}
    assert _count(clone.endpoint, "Genre") == 25


def test_entries_unused_for_weeks_are_pruned(tmp_path, chinook):
    import os
    import time

    request = CloneRequest(chinook, ("Genre",))
    Cloner(tmp_path / "cache", tmp_path / "w").extract(request)
    (pointer,) = (tmp_path / "cache").glob("*.entry")
    Cloner(tmp_path / "cache", tmp_path / "w")  # recent: kept
    assert pointer.exists()
    old = time.time() - 30 * 86400
    os.utime(pointer, (old, old))
    Cloner(tmp_path / "cache", tmp_path / "w")
    assert list((tmp_path / "cache").iterdir()) == []

"""DuckDB endpoint basics: URLs, a missing file, :memory:, key-range splitting."""

import duckdb
import pytest

import replikit as rk


def test_urls_and_options(tmp_path):
    with pytest.raises(rk.ConfigError, match="no host"):
        rk.endpoint("duckdb://host/x.duckdb")
    with pytest.raises(rk.ConfigError, match="memory_limit"):
        rk.endpoint("duckdb:///:memory:?memory_limit=1;DROP")
    with pytest.raises(rk.ConfigError, match="unknown DuckDB URL parameter"):
        rk.endpoint("duckdb:///:memory:?nope=1")
    ep = rk.endpoint(f"duckdb:///{tmp_path / 'a.duckdb'}?threads=1&commit_rows=5")
    assert ep.options == {"threads": 1, "commit_rows": 5}
    assert ep.writer().commit_rows == 5
    # little memory and one thread unless asked (a load needs no more: benchmarks/README.md)
    settings = "SELECT current_setting('threads'), current_setting('memory_limit')"
    for url, want in [("", (1, "30.5 MiB")), ("?threads=3&memory_limit=1GB", (3, "953.6 MiB"))]:
        ep = rk.endpoint(f"duckdb:///{tmp_path / 'b.duckdb'}{url}")
        with ep, ep._db.connected() as conn:
            assert conn.execute(settings).fetchone() == want


def test_a_missing_file_is_not_created_by_reading(tmp_path):
    path = tmp_path / "missing.duckdb"
    with rk.endpoint(f"duckdb:///{path}") as ep:
        with pytest.raises(rk.ConnectError, match="no such database file"):
            ep.reflect()
        ep.check()  # a target may create it
    assert not path.exists()


@pytest.mark.parametrize("scheme", ["duckdb", "sqlite"])
def test_an_absolute_path_written_with_three_slashes_gets_the_four_slash_hint(
    tmp_path, monkeypatch, scheme
):
    """``duckdb:///tmp/x/out.duckdb`` is relative: from a folder where ``tmp/x`` does not
    exist, the error says so and gives the URL that names the absolute path."""
    monkeypatch.chdir(tmp_path)
    absolute = tmp_path / "out.db"
    relative = str(absolute).lstrip("/")
    with pytest.raises(rk.ConnectError) as err, rk.endpoint(f"{scheme}:///{relative}") as ep:
        ep.check()
    assert str(err.value).endswith(f"write four slashes: {scheme}:////{relative}")
    with pytest.raises(rk.ConnectError) as err, rk.endpoint(f"{scheme}:///nofolder/x.db") as ep:
        ep.check()
    assert "four slashes" not in str(err.value)


def test_memory_database_is_shared_by_its_writer_and_reader():
    with rk.endpoint("sqlite:///:memory:") as src, rk.endpoint("duckdb:///:memory:") as dst:
        conn = src._conns.shared()
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        rk.Task(src, dst).run()
        assert [t.id.name for t in dst.reflect().tables] == ["t"]


def test_sparse_keys_split_into_even_units_read_once(tmp_path):
    path = tmp_path / "sparse.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v INTEGER)")
    # 9,000 dense keys and 1,000 spread to 10^10: even bounds would put 90% in one unit
    conn.execute(
        "INSERT INTO t SELECT CASE WHEN i < 9000 THEN i ELSE i * 1000000 END, i "
        "FROM range(10000) r(i)"
    )
    conn.close()
    with rk.endpoint(f"duckdb:///{path}") as ep:
        reader = ep.reader(["t"])
        [table] = reader.tables
        units = reader.units(table, split_rows=2000)
        counts = [sum(len(b) for b in reader.read(u)) for u in units]
        keys = sorted(r[0] for u in units for b in reader.read(u) for r in b.rows)
    assert len(units) == 5 and max(counts) <= 2100, counts
    assert keys == sorted({*range(9000), *(i * 1000000 for i in range(9000, 10000))})


def _indexed_source(conn):
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, code TEXT UNIQUE, v INTEGER)")
    conn.execute("CREATE INDEX t_v ON t (v)")
    conn.execute("CREATE UNIQUE INDEX t_v_code ON t (v, code)")
    conn.execute("INSERT INTO t VALUES (1, 'a', 10), (2, 'b', 10), (3, 'c', 20)")


def _built(path):
    conn = duckdb.connect(str(path), read_only=True)
    try:
        indexes = sorted(
            (r[0], r[1])
            for r in conn.execute("SELECT index_name, is_unique FROM duckdb_indexes()").fetchall()
        )
        keys = conn.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
        ).fetchone()[0]
    finally:
        conn.close()
    return indexes, keys


@pytest.mark.parametrize(
    ("option", "indexes", "keys", "skipped"),
    [
        ("", [True, True], 1, {"index": ["t.t_v"]}),
        ("?indexes=keys", [True, True], 1, {"index": ["t.t_v"]}),
        ("?indexes=all", [False, True, True], 1, {}),
        (
            "?indexes=none",
            [],
            0,
            {
                "index": ["t.t_v", "t.t_v_code"],
                "key": ["t.primary key (id)", "t.unique (code)"],
            },
        ),
    ],
)
def test_indexes_option_builds_keys_and_declares_what_it_leaves_out(
    tmp_path, option, indexes, keys, skipped
):
    path = tmp_path / "ix.duckdb"
    with rk.endpoint("sqlite:///:memory:") as src, rk.endpoint(f"duckdb:///{path}{option}") as dst:
        _indexed_source(src._conns.shared())
        task = rk.Task(src, dst)
        report = task.plan().assessment.schema
        stats = task.run()
    declared = {kind: sorted(o.name for o in report.of_kind(kind)) for kind in ("index", "key")}
    assert {k: v for k, v in declared.items() if v} == skipped
    assert all(o.reason and "indexes=" in o.reason for k in skipped for o in report.of_kind(k))
    in_stats = sorted(o.name for o, error in stats.objects if error and o.kind in ("index", "key"))
    assert in_stats == sorted(n for names in skipped.values() for n in names)
    built, pk = _built(path)
    # the unique constraint's index is named by the writer: compare the uniqueness only
    assert sorted(u for _, u in built) == indexes
    assert pk == keys
    conn = duckdb.connect(str(path), read_only=True)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    conn.close()


def test_indexes_option_is_checked():
    with pytest.raises(rk.ConfigError, match="indexes option 'some'"):
        rk.endpoint("duckdb:///:memory:?indexes=some").writer()


def test_indexes_build_under_the_endpoint_memory_limit_and_higher_when_needed(tmp_path):
    from replikit.endpoints.duckdb._connect import Database, Location

    db = Database(Location(str(tmp_path / "x.duckdb")), memory_limit="8MB")
    with db.connected() as conn:
        limit = conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        db.build(conn, "CREATE TABLE seen AS SELECT current_setting('memory_limit') AS m")
        assert conn.execute("SELECT m FROM seen").fetchone()[0] == limit  # not raised first
        conn.execute("CREATE TABLE t AS SELECT range AS i FROM range(2000000)")
        db.build(conn, "ALTER TABLE t ADD PRIMARY KEY (i)")  # more than 8MB: built higher
        keys = "SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
        assert conn.execute(keys).fetchone()[0] == 1
        assert conn.execute("SELECT current_setting('memory_limit')").fetchone()[0] == limit
    db.close()


def test_a_stream_widens_the_default_memory_limit_for_its_unit_only(tmp_path):
    """A stream's ``engine_memory`` is the limit while its unit loads, then the endpoint's
    again; a limit the user chose is kept as it is."""
    from replikit.endpoints.duckdb._connect import Database, Location

    setting = "SELECT current_setting('memory_limit')"
    for chosen, inside in ((False, "61.0 MiB"), (True, "30.5 MiB")):
        db = Database(Location(str(tmp_path / f"{chosen}.duckdb")), memory_limit="32MB",
                      limit_chosen=chosen)  # fmt: skip
        with db.connected() as conn:
            with db.widened(conn, "64MB"):
                assert conn.execute(setting).fetchone()[0] == inside
            assert conn.execute(setting).fetchone()[0] == "30.5 MiB"
            with db.widened(conn, None):
                assert conn.execute(setting).fetchone()[0] == "30.5 MiB"
        db.close()
    assert not rk.endpoint("duckdb:///:memory:")._db.limit_chosen
    assert rk.endpoint("duckdb:///:memory:?memory_limit=32MB")._db.limit_chosen

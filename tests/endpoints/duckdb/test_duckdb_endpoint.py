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


def test_a_missing_file_is_not_created_by_reading(tmp_path):
    path = tmp_path / "missing.duckdb"
    with rk.endpoint(f"duckdb:///{path}") as ep:
        with pytest.raises(rk.ConnectError, match="no such database file"):
            ep.reflect()
        ep.check()  # a target may create it
    assert not path.exists()


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

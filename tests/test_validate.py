"""Validation (#10): every failure type for every engine pair, repair, the failures table,
bad input (never a false "validated"), the CLI's exit codes and JSON, and a Hypothesis test
that mutates a target at random and checks validate finds exactly those keys and fix repairs
them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.cli import main
from replikit.validation.failures import read_failures
from validate_db import ENGINES, ITEM_COLUMNS, ITEMS, Db, connect, item

N = 60


def _items(engine: str, url: str, n: int = N) -> None:
    with connect(engine, url) as db:
        db.run(ITEMS[engine])
        db.insert("items", ITEM_COLUMNS, [item(i) for i in range(1, n + 1)])


def _mutate(db: Db, table: str) -> None:
    """Change 3 rows, delete 2, insert 1 in the target's items table."""
    db.run(f"UPDATE {table} SET name = %s WHERE id IN (3, 7)", ["changed"])
    db.run(f"UPDATE {table} SET price = price + 1, note = NULL WHERE id = 11")
    db.run(f"DELETE FROM {table} WHERE id IN (5, 20)")
    db.insert(table, ITEM_COLUMNS, [item(1000)])


PAIRS = [(s, t) for s in ENGINES for t in ENGINES]


@pytest.mark.parametrize(("src_engine", "dst_engine"), PAIRS, ids=[f"{s}-{t}" for s, t in PAIRS])
def test_every_failure_type_for_every_pair_and_fix(make_db, src_engine, dst_engine):
    src, dst = make_db(src_engine), make_db(dst_engine)
    _items(src_engine, src)
    rk.copy(src, dst, progress=False)

    report = rk.validate(src, dst)
    assert report.ok, str(report)
    (table,) = report
    assert table.rows_compared == N

    name = table.target if dst_engine == "postgres" else "items"  # MariaDB's db is the schema
    with connect(dst_engine, dst) as db:
        _mutate(db, ".".join(f'"{p}"' for p in name.split(".")) if "." in name else name)
    report = rk.validate(src, dst)
    (table,) = report
    assert table.state == "mismatched"
    assert sorted(r.key["id"] for r in table.missing_in_target) == [5, 20]
    assert [r.key["id"] for r in table.missing_in_source] == [1000]
    diffs = {r.key["id"]: set(r.columns) for r in table.different}
    assert diffs == {3: {"name"}, 7: {"name"}, 11: {"price", "note"}}
    stored = read_failures(rk.endpoint(dst))
    assert sorted(r["failure_type"] for r in stored) == sorted(
        ["MISSING_TARGET"] * 2 + ["MISSING_SOURCE"] + ["RECORD_DIFF"] * 3
    )

    fixed = report.fix()
    assert fixed.tables[table.target] == {"inserted": 2, "updated": 3, "deleted": 1, "remaining": 0}
    assert report.ok, str(report)
    assert rk.validate(src, dst).ok
    assert read_failures(rk.endpoint(dst)) == []  # replaced by the clean run


# -- bad input: a clear state per table, never "validated" --------------------------------------
def _sqlite(path: Path, *statements: str) -> str:
    import sqlite3

    with sqlite3.connect(path) as conn:
        for s in statements:
            conn.execute(s)
    conn.close()
    return f"sqlite:///{path}"


def test_missing_table_and_missing_column_are_not_comparable(tmp_path):
    src = _sqlite(
        tmp_path / "a.db",
        "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)",
        "CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO a VALUES (1, 'x')",
    )
    dst = _sqlite(tmp_path / "b.db", "CREATE TABLE a (id INTEGER PRIMARY KEY)")
    report = rk.validate(src, dst)
    assert {t.source: t.state for t in report} == {"a": "not comparable", "b": "not comparable"}
    assert "column(s) v" in report.table("a").reason
    assert "does not exist in the target" in report.table("b").reason
    assert not report.ok


def test_key_column_missing_or_of_another_type(tmp_path):
    src = _sqlite(
        tmp_path / "a.db",
        "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO k VALUES (1, 'x')",
    )
    other_type = _sqlite(tmp_path / "b.db", "CREATE TABLE k (id BLOB PRIMARY KEY, v TEXT)")
    (t,) = rk.validate(src, other_type)
    assert t.state == "not comparable"
    assert "key column id is int in the source" in t.reason
    renamed = _sqlite(tmp_path / "c.db", "CREATE TABLE k (ident INTEGER PRIMARY KEY, v TEXT)")
    (t,) = rk.validate(src, renamed)
    assert t.state == "not comparable" and "id" in t.reason


def test_unexpected_target_column_is_not_comparable(tmp_path):
    src = _sqlite(tmp_path / "a.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    dst = _sqlite(tmp_path / "b.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, extra INT)")
    (t,) = rk.validate(src, dst)
    assert t.state == "not comparable"
    assert "extra" in t.reason and "plan does not produce" in t.reason


def test_keyless_tables_compare_as_multisets(tmp_path):
    rows = "INSERT INTO t VALUES (1, 'a'), (1, 'a'), (2, 'b')"
    src = _sqlite(tmp_path / "a.db", "CREATE TABLE t (n INT, v TEXT)", rows)
    same = _sqlite(tmp_path / "b.db", "CREATE TABLE t (n INT, v TEXT)", rows)
    assert rk.validate(src, same).ok
    one_copy = _sqlite(
        tmp_path / "c.db", "CREATE TABLE t (n INT, v TEXT)", "INSERT INTO t VALUES (1,'a'),(2,'b')"
    )
    (t,) = rk.validate(src, one_copy)
    assert t.state == "mismatched"
    assert t.missing_in_target_count == 1
    assert t.missing_in_target[0].key == {"n": 1, "v": "a"}
    fixed = rk.validate(src, one_copy).fix()
    assert "no key" in fixed.skipped["t"]


def test_renames_and_lossy_columns_follow_the_plan(tmp_path, pg_url):
    src = _sqlite(
        tmp_path / "a.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, amount NUMERIC(6,2), label TEXT)",
        "INSERT INTO t VALUES (1, 12.5, 'x'), (2, 3.25, 'y')",
    )
    m = rk.Mappings().rename_table("t", "things").rename_column("t", "label", "title")
    overrides = {"t.amount": "numeric(6,1)"}  # lossy: 3.25 is written as 3.3 (rounded)
    rk.copy(src, pg_url, mappings=m, type_overrides=overrides, progress=False)
    report = rk.validate(src, pg_url, mappings=m, type_overrides=overrides)
    (t,) = report
    assert (t.target, t.state) == ("public.things", "validated"), str(report)
    # without the task's override, the rounded value is a real difference
    (t,) = rk.validate(src, pg_url, mappings=m)
    assert t.state == "mismatched" and [r.key for r in t.different] == [{"id": 2}]


def test_transforms_are_applied_before_comparing(tmp_path):
    src = _sqlite(
        tmp_path / "a.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t VALUES (1, 'x'), (2, 'y')",
    )
    dst = tmp_path / "b.db"

    def upper(change):
        from dataclasses import replace

        after = dict(change.after)
        after["v"] = after["v"].upper()
        return replace(change, after=after)

    rk.copy(src, f"sqlite:///{dst}", transforms=[upper], progress=False)
    assert not rk.validate(src, f"sqlite:///{dst}").ok
    assert rk.validate(src, f"sqlite:///{dst}", transforms=[upper]).ok


def test_report_text_html_json_and_statistics(tmp_path):
    src = _sqlite(
        tmp_path / "a.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t VALUES (1, 'x'), (2, '<b>')",
    )
    dst = _sqlite(
        tmp_path / "b.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t VALUES (1, 'x'), (2, 'other')",
    )
    task = rk.Task(src, dst)
    report = task.validate()
    text = str(report)
    assert "different id=2: v: '<b>' | 'other'" in text
    html = report._repr_html_()
    assert "&lt;b&gt;" in html and "<b>" not in html.replace("<b>'", "")
    assert repr(report) == "<ValidationReport 1 table: 1 mismatched (t: 1 row)>"
    (d,) = report.to_dict()["tables"]
    assert d["different"] == [{"key": {"id": 2}, "columns": ["v"]}]
    assert d["missing_in_target"] == [] and d["state"] == "mismatched"
    stats = task.statistics()["t"]
    assert (stats.validation_state, stats.validation_failed) == ("mismatched", 1)


def test_differences_are_capped_but_counted(tmp_path):
    src = _sqlite(tmp_path / "a.db", "CREATE TABLE t (id INTEGER PRIMARY KEY)")
    dst = _sqlite(tmp_path / "b.db", "CREATE TABLE t (id INTEGER PRIMARY KEY)")
    with connect("sqlite", src) as db:
        db.insert("t", ["id"], [(i,) for i in range(2500)])
    task = rk.Task(src, dst)
    from replikit.validate import Validator

    report = Validator(task, max_rows=100, memory_rows=300).run()  # spills to partitions
    (t,) = report
    assert (t.missing_in_target_count, len(t.missing_in_target), t.truncated) == (2500, 100, True)
    assert report.to_dict()["tables"][0]["truncated"] is True
    report.fix()  # in passes of 100 rows... until nothing is left
    assert report.ok


# -- the command line ------------------------------------------------------------------------
def test_cli_exit_codes_and_json(tmp_path, capsys):
    src = _sqlite(
        tmp_path / "a.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t VALUES (1, 'x'), (2, 'y')",
    )
    dst = _sqlite(
        tmp_path / "b.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t VALUES (1, 'x')",
    )
    assert main(["validate", src, dst, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["tables"][0]["missing_in_target"] == [{"id": 2}]
    assert out["fixed"] == {}
    assert main(["validate", src, dst, "--fix", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fixed"]["tables"]["t"]["inserted"] == 1
    assert main(["validate", src, dst]) == 0
    assert "1 table: 1 validated" in capsys.readouterr().out
    missing = _sqlite(tmp_path / "c.db", "CREATE TABLE other (id INTEGER PRIMARY KEY)")
    assert main(["validate", src, missing, "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["tables"][0]["state"] == "not comparable"
    assert "Traceback" not in captured.err
    assert main(["validate", src, dst, "--sample", "abc", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error_type"] == "ConfigError"


def test_sample_compares_a_fraction_of_the_keys(tmp_path):
    src = _sqlite(tmp_path / "a.db", "CREATE TABLE t (id INTEGER PRIMARY KEY)")
    dst = _sqlite(tmp_path / "b.db", "CREATE TABLE t (id INTEGER PRIMARY KEY)")
    with connect("sqlite", src) as db:
        db.insert("t", ["id"], [(i,) for i in range(2000)])
    with connect("sqlite", dst) as db:
        db.insert("t", ["id"], [(i,) for i in range(2000)])
    (t,) = rk.validate(src, dst, sample=0.1)
    assert t.state == "validated" and 100 < t.rows_compared < 320


# -- Hypothesis: random mutations are found exactly and repaired -------------------------------
KEYS = st.integers(min_value=1, max_value=N)


@settings(settings.get_profile("db"), max_examples=15)
@given(
    updates=st.sets(KEYS, max_size=6),
    deletes=st.sets(KEYS, max_size=6),
    inserts=st.sets(st.integers(min_value=N + 1, max_value=N + 50), max_size=4),
)
def test_random_mutations_are_found_exactly_and_fixed(tmp_path_factory, updates, deletes, inserts):
    updates = updates - deletes
    where = tmp_path_factory.mktemp("h")
    src, dst = f"sqlite:///{where / 'a.db'}", f"sqlite:///{where / 'b.db'}"
    _items("sqlite", src)
    rk.copy(src, dst, progress=False)
    with connect("sqlite", dst) as db:
        for k in updates:
            db.run("UPDATE items SET ratio = coalesce(ratio, 0) + 1 WHERE id = %s", [k])
        for k in deletes:
            db.run("DELETE FROM items WHERE id = %s", [k])
        if inserts:
            db.insert("items", ITEM_COLUMNS, [item(k) for k in inserts])
    report = rk.validate(src, dst)
    (t,) = report
    assert {r.key["id"] for r in t.different} == updates
    assert {r.key["id"] for r in t.missing_in_target} == deletes
    assert {r.key["id"] for r in t.missing_in_source} == inserts
    assert all(r.columns == ("ratio",) for r in t.different)
    report.fix()
    assert report.ok
    assert rk.validate(src, dst).ok


# -- segment checksums inside PostgreSQL and MariaDB ---------------------------------------------
SERVERS = [(s, t) for s in ("postgres", "mariadb") for t in ("postgres", "mariadb")]
ORDERS = {
    "postgres": """CREATE TABLE orders (id bigint PRIMARY KEY, customer varchar(40) NOT NULL,
        amount numeric(12,2), placed timestamp(6), day date, code char(4), paid boolean,
        bin bytea)""",
    "mariadb": """CREATE TABLE orders (id bigint PRIMARY KEY, customer varchar(40) NOT NULL,
        amount decimal(12,2), placed datetime(6), day date, code char(4), paid boolean,
        bin varbinary(10))""",
}
ORDER_COLUMNS = ("id", "customer", "amount", "placed", "day", "code", "paid", "bin")


def _order(i: int) -> tuple:
    from datetime import date, datetime
    from decimal import Decimal

    return (
        i * 3,  # sparse keys: segments cut the key range, not the rows
        f"customer {i % 97} ü",
        None if i % 11 == 0 else Decimal(i) / 4,
        datetime(2022, 1, 1 + i % 28, i % 24, i % 60, i % 60, i % 1000 * 1000),
        date(2023, 1 + i % 12, 1 + i % 28),
        "ab" if i % 3 else None,
        i % 2 == 1,
        bytes([i % 256, 7]),
    )


@pytest.mark.parametrize("ranges", ["one range", "key ranges at once"])
@pytest.mark.parametrize(
    ("src_engine", "dst_engine"), SERVERS, ids=[f"{s}-{t}" for s, t in SERVERS]
)
def test_segment_checksums_bisect_to_the_changed_rows(
    make_db, monkeypatch, caplog, src_engine, dst_engine, ranges
):
    from replikit.validation import checksum

    monkeypatch.setattr(checksum, "SEGMENT_ROWS", 200)
    monkeypatch.setattr(checksum, "LEAF_ROWS", 40)  # bisected twice
    monkeypatch.setattr(checksum, "FANOUT", 4)
    # 10 first-level segments: one range, or 4 ranges of 3 segments on 4 connection pairs
    monkeypatch.setattr(checksum, "CHUNK_SEGMENTS", 1000 if ranges == "one range" else 2)
    src, dst = make_db(src_engine), make_db(dst_engine)
    with connect(src_engine, src) as db:
        db.run(ORDERS[src_engine])
        db.insert("orders", ORDER_COLUMNS, [_order(i) for i in range(1, 2001)])
    rk.copy(src, dst, progress=False)
    (t,) = rk.validate(src, dst)
    assert (t.state, t.method, t.rows_compared) == ("validated", "checksum", 2000), str(t)

    (target,) = [x.target for x in rk.validate(src, dst)]
    name = ".".join(f'"{p}"' for p in target.split(".")) if dst_engine == "postgres" else "orders"
    with connect(dst_engine, dst) as db:
        db.run(f"UPDATE {name} SET customer = %s WHERE id IN (30, 3000)", ["zz"])
        db.run(f"UPDATE {name} SET amount = NULL WHERE id = 36")
        db.run(f"DELETE FROM {name} WHERE id IN (600, 5997)")
        db.insert(name, ORDER_COLUMNS, [_order(5000)])
    caplog.set_level("DEBUG", logger="replikit.validate")
    report = rk.validate(src, dst)
    (t,) = report
    assert t.method == "checksum"
    assert ("key ranges at once" in caplog.text) == (ranges != "one range")
    assert {r.key["id"]: r.columns for r in t.different} == {
        30: ("customer",),
        3000: ("customer",),
        36: ("amount",),
    }
    assert sorted(r.key["id"] for r in t.missing_in_target) == [600, 5997]
    assert [r.key["id"] for r in t.missing_in_source] == [15000]
    assert t.rows_compared == 2001 and t.rows_read < 500  # only dirty segments were read
    report.fix()
    assert report.ok


def test_key_ranges_run_on_the_tasks_process_pool(make_db, monkeypatch, caplog):
    """The key ranges of one table are units of the task's executor: a process pool runs
    them (the ranges and both sides pickle), and the differences are the same."""
    from concurrent.futures import ProcessPoolExecutor

    from replikit.validation import checksum

    monkeypatch.setattr(checksum, "SEGMENT_ROWS", 200)
    monkeypatch.setattr(checksum, "CHUNK_SEGMENTS", 2)
    src, dst = make_db("postgres"), make_db("postgres")
    with connect("postgres", src) as db:
        db.run(ORDERS["postgres"])
        db.insert("orders", ORDER_COLUMNS, [_order(i) for i in range(1, 2001)])
    rk.copy(src, dst, progress=False)
    with connect("postgres", dst) as db:
        db.run("UPDATE public.orders SET customer = %s WHERE id IN (30, 5970)", ["zz"])
    caplog.set_level("DEBUG", logger="replikit.validate")
    with ProcessPoolExecutor(2) as pool:
        (t,) = rk.Task(src, dst, executor=pool).validate()
    assert t.method == "checksum", str(t)
    assert "in 4 key ranges at once" in caplog.text
    assert sorted(r.key["id"] for r in t.different) == [30, 5970]


def test_postgres_record_hashes_catch_swaps_and_text_hashed_types(make_db):
    """PostgreSQL to PostgreSQL hashes each row as a record (hash_record_extended, mixed):
    values swapped between two rows of one segment, and changes in columns hashed as their
    text (float, interval, jsonb, unconstrained numeric), are still found."""
    src, dst = make_db("postgres"), make_db("postgres")
    for url in (src, dst):
        with connect("postgres", url) as db:
            db.run("CREATE TABLE h (id bigint PRIMARY KEY, a text, b varchar(10), "
                   "c char(4), f float8, iv interval, j jsonb, n numeric, at timestamptz, "
                   "u uuid)")  # fmt: skip
            db.run("INSERT INTO h SELECT g, 'a' || g, 'b' || g, 'c', g / 3.0, g * interval '1s', "
                   "jsonb_build_object('g', g), g / 7.0, now(), gen_random_uuid() "
                   "FROM generate_series(1, 500) g")  # fmt: skip
    with connect("postgres", src) as db:  # the same uuids and times on both sides
        rows = db.run("SELECT id, at, u FROM h")
    with connect("postgres", dst) as db:
        db.many("UPDATE h SET at = %s, u = %s WHERE id = %s", [(a, u, i) for i, a, u in rows])
    (t,) = rk.validate(src, dst)
    assert (t.state.value, t.method) == ("validated", "checksum"), str(t)
    with connect("postgres", dst) as db:  # alone: the segment's sum would not move unmixed
        db.run("UPDATE h SET a = CASE id WHEN 10 THEN 'a11' ELSE 'a10' END WHERE id IN (10, 11)")
    (t,) = rk.validate(src, dst)
    assert {r.key["id"]: r.columns for r in t.different} == {10: ("a",), 11: ("a",)}, str(t)
    with connect("postgres", dst) as db:
        db.run("UPDATE h SET f = f + 1e-12 WHERE id = 20")
        db.run("UPDATE h SET iv = iv + interval '1 microsecond' WHERE id = 30")
        db.run("""UPDATE h SET j = '{"g": 40, "x": null}' WHERE id = 40""")
        db.run("UPDATE h SET n = n + 0.000001 WHERE id = 50")
        db.run("UPDATE h SET c = 'd' WHERE id = 60")
    (t,) = rk.validate(src, dst)
    assert t.method == "checksum"
    assert {r.key["id"]: r.columns for r in t.different} == {
        10: ("a",), 11: ("a",), 20: ("f",), 30: ("iv",), 40: ("j",), 50: ("n",), 60: ("c",)
    }, str(t)


# -- beside CDC: in-flight rows are re-checked, not failed; validation-only tasks -------------
def test_in_flight_changes_are_rechecked_not_reported(tmp_path):
    import sqlite3
    import threading

    from replikit.validate import Validator

    path = tmp_path / "a.db"
    _sqlite(path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")  # fmt: skip
    src = rk.endpoint(f"sqlite:///{path}", cdc_setup=True)
    dst = f"sqlite:///{tmp_path / 'b.db'}"
    settings = rk.TaskSettings(progress=False, stop_when_idle=1.0, task_id="live")

    def replicate() -> None:
        rk.Task(src, dst, migration_type="full-load-and-cdc", settings=settings).run()

    replicate()  # load, replicate, stop when idle
    with sqlite3.connect(path) as conn:  # changes the stopped task has not applied yet
        conn.execute("UPDATE t SET v = 'z' WHERE id = 1")
        conn.execute("DELETE FROM t WHERE id = 2")
        conn.execute("INSERT INTO t VALUES (4, 'd')")
    conn.close()
    (first,) = rk.validate(src, dst)
    assert first.failures == 3  # without a re-check they are differences

    runner = threading.Timer(2.0, replicate)  # CDC resumes while validation waits
    runner.start()
    try:
        (t,) = Validator(rk.Task(src, dst), recheck_delay=1.0, rechecks=10).run()
    finally:
        runner.join()
    assert (t.state, t.rechecked, t.failures, t.pending) == ("validated", 3, 0, 0), str(t)


def test_validation_only_task_moves_no_data(tmp_path):
    src = _sqlite(tmp_path / "a.db", "CREATE TABLE t (id INTEGER PRIMARY KEY)",
                  "INSERT INTO t VALUES (1), (2)")  # fmt: skip
    dst = _sqlite(tmp_path / "b.db", "CREATE TABLE t (id INTEGER PRIMARY KEY)",
                  "INSERT INTO t VALUES (1)")  # fmt: skip
    task = rk.Task(src, dst, migration_type="validation-only")
    stats = task.run()
    assert task.last_validation is not None
    assert [d.key for d in task.last_validation[0].missing_in_target] == [{"id": 2}]
    assert (stats["t"].validation_state, stats["t"].validation_failed) == ("mismatched", 1)
    with connect("sqlite", dst) as db:
        assert db.run("SELECT id FROM t") == [(1,)]  # nothing was copied


def test_duckdb_target_failures_and_fix(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    src = f"sqlite:///{tmp_path / 'a.db'}"
    _items("sqlite", src)
    dst_path = tmp_path / "b.duckdb"
    rk.copy(src, f"duckdb:///{dst_path}", progress=False)
    conn = duckdb.connect(str(dst_path))
    conn.execute("UPDATE items SET name = 'changed' WHERE id = 3")
    conn.execute("DELETE FROM items WHERE id = 5")
    conn.close()
    report = rk.validate(src, f"duckdb:///{dst_path}")
    (t,) = report
    assert [r.key for r in t.different] == [{"id": 3}]
    assert [r.key for r in t.missing_in_target] == [{"id": 5}]
    assert len(read_failures(rk.endpoint(f"duckdb:///{dst_path}"))) == 2
    report.fix()
    assert report.ok


def test_compound_keys_are_segmented_by_their_first_column(make_db, monkeypatch):
    from replikit.validation import checksum

    monkeypatch.setattr(checksum, "SEGMENT_ROWS", 100)
    monkeypatch.setattr(checksum, "LEAF_ROWS", 30)
    src, dst = make_db("postgres"), make_db("mariadb")
    with connect("postgres", src) as db:
        db.run("CREATE TABLE pt (playlist int, track int, note varchar(10), "
               "PRIMARY KEY (playlist, track))")  # fmt: skip
        db.insert("pt", ["playlist", "track", "note"],
                  [(p, t, f"n{t}") for p in range(1, 41) for t in range(1, 26)])  # fmt: skip
    rk.copy(src, dst, progress=False)
    with connect("mariadb", dst) as db:
        db.run("UPDATE pt SET note = 'x' WHERE playlist = 7 AND track = 3")
        db.run("DELETE FROM pt WHERE playlist = 30 AND track = 25")
    (t,) = rk.validate(src, dst)
    assert t.method == "checksum" and t.rows_read < 300, str(t)
    assert [r.key for r in t.different] == [{"playlist": 7, "track": 3}]
    assert [r.key for r in t.missing_in_target] == [{"playlist": 30, "track": 25}]

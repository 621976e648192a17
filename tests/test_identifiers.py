"""Name collisions in the target are refused before any DDL, with a fix that works.

Two source objects that the target's identifier rules turn into one name (PostgreSQL keeps 63
bytes, MySQL and SQLite ignore case, schemas collapse into one database, mappings point two
tables at one name) are an ``unsupported`` finding of ``plan()`` naming both objects and a
mapping that fixes it. ``Task.run()`` and ``replikit copy`` refuse before any DDL (the target
stays empty, exit 2); with the suggested mapping added the copy completes and the target holds
exactly the source's tables and rows. Names the target cannot create at all are refused the
same way; index, key and sequence names the writers choose never clash.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

import replikit as rk
from idents_db import Db, add_fix, cli_fix, sqlite_db
from replikit.cli import main

LONG_X = "a" * 63 + "x"  # 64 characters: MySQL takes it, PostgreSQL keeps the first 63
LONG_Y = "a" * 63 + "y"
# 64 bytes each; PostgreSQL cuts at the character boundary before byte 63: both become é*31
WIDE_1, WIDE_2 = "é" * 31 + "ü", "é" * 31 + "ö"


@pytest.fixture
def pg_pair(pg_server) -> Iterator[tuple[Db, Db]]:
    """Two fresh PostgreSQL databases (source, target)."""
    tag = uuid.uuid4().hex[:10]
    names = [f"rk_id_{n}_{tag}" for n in ("src", "dst")]
    dbs = [Db("postgresql", pg_server.create_database(n)) for n in names]
    try:
        yield dbs[0], dbs[1]
    finally:
        for n in names:
            pg_server.drop_database(n)


def _unsupported_names(task: rk.Task) -> list[rk.Finding]:
    findings = task.plan().unsupported
    assert findings, "the plan has no unsupported finding"
    assert all(f.kind == "name" for f in findings), findings
    return findings


def _refused_everywhere(task: rk.Task, source: Db, target: Db, extra: list[str]) -> None:
    """run() and replikit copy refuse, and the target stays without tables."""
    with pytest.raises(rk.ConversionError, match="Nothing was created"):
        task.run()
    assert target.tables() == []
    assert main(["copy", source.url, target.url, *extra]) == 2
    assert target.tables() == []


def _same_tables(source: Db, target: Db, pairs: dict[tuple[str | None, str], tuple]) -> None:
    """Every source table (key) arrived as its target table (value) with the same rows."""
    assert target.tables() == sorted(pairs.values())
    for (s_schema, s_name), (t_schema, t_name) in pairs.items():
        assert target.contents(t_schema, t_name) == source.contents(s_schema, s_name)


# -- tables -----------------------------------------------------------------------------------
def test_mysql_names_equal_in_63_bytes_are_refused_into_postgresql_then_fixed(
    mysql_url, pg_url, capsys
):
    source, target = Db("mysql", mysql_url), Db("postgresql", pg_url)
    db = make_url(mysql_url).database
    source.execute(
        f"CREATE TABLE `{LONG_X}` (id INT PRIMARY KEY, v TEXT)",
        f"CREATE TABLE `{LONG_Y}` (id INT PRIMARY KEY, v TEXT)",
        f"INSERT INTO `{LONG_X}` VALUES (1, 'from x'), (2, 'also x')",
        f"INSERT INTO `{LONG_Y}` VALUES (1, 'from y')",
    )
    (finding,) = _unsupported_names(rk.Task(mysql_url, pg_url))
    reason = finding.reason or ""
    assert LONG_X in reason and LONG_Y in reason and f"{db}.{'a' * 63}" in reason
    assert "63 bytes" in reason
    assert f"Mappings().rename_table('{db}.{LONG_Y}', '{'a' * 61}_2')" in (finding.fix or "")
    _refused_everywhere(rk.Task(mysql_url, pg_url), source, target, [])
    capsys.readouterr()
    assert main(["copy", mysql_url, pg_url, "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["exit_status"] == 2
    assert LONG_Y in out["error"] and "rename_table" in out["error"]
    assert target.tables() == []

    # the suggested mapping, from Python and from the command line
    task = rk.Task(mysql_url, pg_url, mappings=add_fix(rk.Mappings(), finding.fix))
    task.run()
    expected = {(db, LONG_X): (db, "a" * 63), (db, LONG_Y): (db, "a" * 61 + "_2")}
    _same_tables(source, target, expected)
    assert main(["copy", mysql_url, pg_url, *cli_fix(finding.fix)]) == 0
    _same_tables(source, target, expected)


def test_names_cut_at_a_character_boundary_collide_sqlite_to_postgresql(tmp_path, pg_url):
    source, target = sqlite_db(tmp_path / "s.db"), Db("postgresql", pg_url)
    source.execute(
        f'CREATE TABLE "{WIDE_1}" (id INTEGER PRIMARY KEY, v TEXT)',
        f'CREATE TABLE "{WIDE_2}" (id INTEGER PRIMARY KEY, v TEXT)',
        f"INSERT INTO \"{WIDE_1}\" VALUES (1, 'one')",
        f"INSERT INTO \"{WIDE_2}\" VALUES (1, 'two')",
    )
    (finding,) = _unsupported_names(rk.Task(source.url, pg_url))
    assert WIDE_1 in (finding.reason or "") and WIDE_2 in (finding.reason or "")
    assert f"public.{'é' * 31}" in (finding.reason or "")
    _refused_everywhere(rk.Task(source.url, pg_url), source, target, [])
    rk.Task(source.url, pg_url, mappings=add_fix(rk.Mappings(), finding.fix)).run()
    moved, kept = (WIDE_1, WIDE_2) if f"rename_table({WIDE_1!r}" in (finding.fix or "") else (
        WIDE_2, WIDE_1)  # fmt: skip
    expected = {(None, kept): ("public", "é" * 31), (None, moved): ("public", "é" * 30 + "_2")}
    _same_tables(source, target, expected)


def test_postgresql_tables_mapped_onto_one_name_are_refused_then_fixed(pg_pair):
    source, target = pg_pair
    source.execute(
        "CREATE SCHEMA a",
        "CREATE SCHEMA b",
        "CREATE TABLE a.t (id int PRIMARY KEY, v text)",
        "CREATE TABLE b.t (id int PRIMARY KEY, v text)",
        "INSERT INTO a.t VALUES (1, 'a one'), (2, 'a two')",
        "INSERT INTO b.t VALUES (1, 'b one')",
    )
    merge = rk.Mappings().include("a").include("b").rename_schema("b", "a")
    (finding,) = _unsupported_names(rk.Task(source.url, target.url, mappings=merge))
    assert "'a.t' and 'b.t'" in (finding.reason or "")
    assert "Mappings().rename_table('b.t', 't_2')" in (finding.fix or "")
    args = ["--include", "a.%", "--include", "b.%", "--rename-schema", "b=a"]
    _refused_everywhere(rk.Task(source.url, target.url, mappings=merge), source, target, args)

    rk.Task(source.url, target.url, mappings=add_fix(merge, finding.fix)).run()
    expected = {("a", "t"): ("a", "t"), ("b", "t"): ("a", "t_2")}
    _same_tables(source, target, expected)
    assert main(["copy", source.url, target.url, *args, *cli_fix(finding.fix)]) == 0
    _same_tables(source, target, expected)


@pytest.mark.parametrize("family", ["mysql", "sqlite"])
def test_schemas_collapse_into_one_database(family, pg_url, tmp_path, request):
    """MySQL and SQLite targets have no schemas: a.t and b.t would be one table."""
    source = Db("postgresql", pg_url)
    target = _target(family, tmp_path, request)
    source.execute(
        "CREATE SCHEMA a",
        "CREATE SCHEMA b",
        "CREATE TABLE a.t (id int PRIMARY KEY)",
        'CREATE TABLE b."T" (id int PRIMARY KEY)',
        "INSERT INTO a.t VALUES (1)",
        'INSERT INTO b."T" VALUES (2)',
    )
    only = rk.Mappings().include("a").include("b")
    (finding,) = _unsupported_names(rk.Task(pg_url, target.url, mappings=only))
    assert "'a.t' and 'b.T'" in (finding.reason or "")
    _refused_everywhere(
        rk.Task(pg_url, target.url, mappings=only),
        source,
        target,
        ["--include", "b.%", "--include", "a.%"],
    )
    rk.Task(pg_url, target.url, mappings=add_fix(only, finding.fix)).run()
    _same_tables(source, target, {("a", "t"): (None, "t"), ("b", "T"): (None, "T_2")})


# -- columns ----------------------------------------------------------------------------------
def _target(family: str, tmp_path, request) -> Db:
    if family == "sqlite":
        return sqlite_db(tmp_path / "t.db")
    return Db("mysql", request.getfixturevalue("mysql_url"))


@pytest.mark.parametrize("family", ["mysql", "sqlite"])
def test_columns_differing_in_case_are_refused_then_renamed(family, pg_url, tmp_path, request):
    source = Db("postgresql", pg_url)
    target = _target(family, tmp_path, request)
    source.execute(
        'CREATE TABLE t ("ID" int PRIMARY KEY, id text, other text)',
        "INSERT INTO t VALUES (1, 'one', 'x'), (2, 'two', NULL)",
    )
    (finding,) = _unsupported_names(rk.Task(pg_url, target.url))
    assert finding.table == "public.t" and finding.column == "id"
    assert "'ID' and 'id'" in (finding.reason or "")
    assert "Mappings().rename_column('public.t', 'id', 'id_2')" in (finding.fix or "")
    _refused_everywhere(rk.Task(pg_url, target.url), source, target, [])

    rk.Task(pg_url, target.url, mappings=add_fix(rk.Mappings(), finding.fix)).run()
    assert target.tables() == [(None, "t")]
    assert target.columns(None, "t") == ["ID", "id_2", "other"]
    assert target.contents(None, "t") == source.contents("public", "t")
    assert main(["copy", pg_url, target.url, *cli_fix(finding.fix)]) == 0
    assert target.contents(None, "t") == source.contents("public", "t")


# -- names a target cannot create -------------------------------------------------------------
def test_names_mysql_cannot_create_are_refused_then_renamed(tmp_path, mysql_url):
    source, target = sqlite_db(tmp_path / "s.db"), Db("mysql", mysql_url)
    source.execute(
        'CREATE TABLE "trailing " (id INTEGER PRIMARY KEY, "😀" TEXT, "' + "c" * 65 + '" INT)',
        "INSERT INTO \"trailing \" VALUES (1, 'smile', 7)",
    )
    findings = _unsupported_names(rk.Task(source.url, mysql_url))
    reasons = " | ".join(f.reason or "" for f in findings)
    assert "cannot end with a space" in reasons
    assert "Basic Multilingual Plane" in reasons
    assert "longer than 64 characters" in reasons
    _refused_everywhere(rk.Task(source.url, mysql_url), source, target, [])
    mappings = rk.Mappings()
    for f in findings:
        mappings = add_fix(mappings, f.fix)
    rk.Task(source.url, mysql_url, mappings=mappings).run()
    assert target.tables() == [(None, "trailing")]
    assert target.columns(None, "trailing") == ["id", "_", "c" * 64]
    assert target.contents(None, "trailing") == source.contents(None, "trailing ")


def test_sqlite_reserved_prefix_is_refused(pg_url, tmp_path):
    source, target = Db("postgresql", pg_url), sqlite_db(tmp_path / "t.db")
    source.execute(
        "CREATE TABLE sqlite_stuff (id int PRIMARY KEY)", "INSERT INTO sqlite_stuff VALUES (1)"
    )
    (finding,) = _unsupported_names(rk.Task(pg_url, target.url))
    assert "sqlite_" in (finding.reason or "")
    rk.Task(pg_url, target.url, mappings=add_fix(rk.Mappings(), finding.fix)).run()
    assert target.tables() == [(None, "t_sqlite_stuff")]


def test_a_table_of_63_underscores_is_refused_for_postgresql_then_renamed(pg_url, tmp_path):
    """PostgreSQL cannot create a table called 63 underscores (its array type would need the
    row type's own name: a duplicate key in pg_type; Hypothesis found it): refused before any
    DDL, then copied under the suggested name."""
    name = "_" * 63
    source, target = sqlite_db(tmp_path / "s.db"), Db("postgresql", pg_url)
    source.execute(
        f'CREATE TABLE "{name}" (id INTEGER PRIMARY KEY)', f'INSERT INTO "{name}" VALUES (1)'
    )
    (finding,) = _unsupported_names(rk.Task(source.url, pg_url))
    assert "63 underscores" in (finding.reason or ""), finding
    assert target.tables() == []
    rk.Task(source.url, pg_url, mappings=add_fix(rk.Mappings(), finding.fix)).run()
    [(schema, arrived)] = target.tables()
    assert set(arrived) != {"_"} and target.contents(schema, arrived) == [("1",)]


# -- names the writers choose -----------------------------------------------------------------
def test_generated_key_and_sequence_names_never_take_a_table_name(tmp_path, pg_url):
    """PostgreSQL would name t's key t_pkey and its sequence t_id_seq: tables of those names
    must still be created (one relation namespace per schema)."""
    source, target = sqlite_db(tmp_path / "s.db"), Db("postgresql", pg_url)
    source.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT UNIQUE)",
        "CREATE TABLE t_pkey (id INTEGER PRIMARY KEY, w TEXT)",
        "CREATE TABLE t_id_seq (x INTEGER PRIMARY KEY)",
        "CREATE TABLE t_v_key (x INTEGER)",
        "CREATE INDEX t_pkey_w ON t_pkey (w)",
        "INSERT INTO t (v) VALUES ('a'), ('b')",
        "INSERT INTO t_pkey VALUES (1, 'w')",
        "INSERT INTO t_id_seq VALUES (5)",
        "INSERT INTO t_v_key VALUES (6)",
    )
    task = rk.Task(source.url, pg_url)
    assert task.plan().unsupported == []
    task.run()
    names = ["t", "t_id_seq", "t_pkey", "t_v_key"]
    _same_tables(source, target, {(None, n): ("public", n) for n in names})
    relations = {
        r[0]
        for r in target.rows(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        )
    }
    assert {"t_pkey_2", "t_id_seq_2", "t_v_key_2", "t_pkey_w"} <= relations
    assert target.rows("INSERT INTO t (v) VALUES ('c') RETURNING id") == [(3,)]


def test_index_names_mysql_refuses_are_renamed(pg_url, mysql_url):
    """PostgreSQL index names are per schema and keep case; MySQL's are per table, without
    case, and never PRIMARY: the writer renames rather than fails."""
    source, target = Db("postgresql", pg_url), Db("mysql", mysql_url)
    source.execute(
        "CREATE TABLE t (id int PRIMARY KEY, a int, b int, c int)",
        'CREATE INDEX "Ix" ON t (a)',
        'CREATE INDEX "ix" ON t (b)',
        'CREATE INDEX "primary" ON t (c)',
        "INSERT INTO t VALUES (1, 2, 3, 4)",
    )
    task = rk.Task(pg_url, mysql_url)
    plan = task.plan()
    assert plan.unsupported == []
    assert any("index 'ix' is created as 't_ix'" in p for p in plan.assessment.problems)
    task.run()
    indexes = {
        r[0]
        for r in target.rows(
            "SELECT DISTINCT index_name FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND table_name = 't'"
        )
    }
    assert indexes == {"PRIMARY", "Ix", "t_ix", "t_primary"}
    assert target.contents(None, "t") == source.contents("public", "t")


def test_plan_json_lists_the_collision(pg_url, tmp_path, capsys):
    Db("postgresql", pg_url).execute('CREATE TABLE t ("ID" int, "Id" int)')
    assert main(["plan", pg_url, f"sqlite:///{tmp_path / 't.db'}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (finding,) = out["findings"]
    assert finding["table"] == "public.t" and finding["column"] == "Id"
    assert finding["kind"] == "name" and finding["fidelity"] == "unsupported"
    assert "rename_column('public.t', 'Id', 'Id_2')" in finding["fix"]
    assert "--rename-column public.t.Id=Id_2" in finding["fix"]
    assert out["summary"]["unsupported"] == 1


@pytest.mark.parametrize("method", ["load-data", "insert"])
def test_percent_in_names_through_mysql(mysql_server, method):
    """MySQL drivers format statements that have parameters with %: a % in a quoted name must
    be doubled (found by the property test: a table named % could not be read)."""
    names = [f"rk_pct_{n}_{uuid.uuid4().hex[:8]}" for n in ("src", "dst")]
    source, target = (Db("mysql", mysql_server.create_database(n)) for n in names)
    try:
        source.execute(
            "CREATE TABLE `100%` (`id%s` INT PRIMARY KEY, `a%%b` TEXT)",
            "INSERT INTO `100%` SELECT seq, CONCAT('v', seq) FROM seq_1_to_3000",
            "ANALYZE TABLE `100%`",
        )
        settings = rk.TaskSettings(split_rows=1000)  # key ranges: a read with parameters
        with rk.endpoint(target.url, method=method) as dst:
            stats = rk.Task(source.url, dst, settings=settings).run()
        assert stats.total_rows == 3000
        assert target.tables() == [(None, "100%")]
        assert target.columns(None, "100%") == ["id%s", "a%%b"]
        assert target.contents(None, "100%") == source.contents(None, "100%")
    finally:
        for n in names:
            mysql_server.drop_database(n)


def test_renamed_column_receives_changes_during_cdc(pg_url, tmp_path):
    """rename_column holds for CDC too: changes to "id" land in id_2 (keys by "ID")."""
    source, target = Db("postgresql", pg_url), sqlite_db(tmp_path / "t.db")
    source.execute(
        'CREATE TABLE t ("ID" int PRIMARY KEY, id text)',
        "INSERT INTO t VALUES (1, 'one'), (2, 'two')",
    )
    mappings = rk.Mappings().rename_column("public.t", "id", "id_2")
    settings = rk.TaskSettings(task_id="idents", progress=False)
    task = rk.Task(pg_url, target.url, migration_type="full-load-and-cdc", mappings=mappings,
                   settings=settings)  # fmt: skip
    errors: list[BaseException] = []

    def run() -> None:
        try:
            task.run()
        except BaseException as exc:
            errors.append(exc)

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 60
        while not condition() and not errors:
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: task.phase == "cdc")
        source.execute(
            "INSERT INTO t VALUES (3, 'three')",
            "UPDATE t SET id = 'ONE' WHERE \"ID\" = 1",
            'DELETE FROM t WHERE "ID" = 2',
        )
        expected = [(1, "ONE"), (3, "three")]
        wait_for(lambda: target.rows('SELECT "ID", id_2 FROM t ORDER BY 1') == expected)
    finally:
        task.stop()
        thread.join(60)
        rk.Task(pg_url, target.url, settings=settings).drop()
    assert not errors, errors
    assert target.columns(None, "t") == ["ID", "id_2"]

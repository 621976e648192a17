"""The PostgreSQL full-load path: primary keys built after the load, raw COPY in blocks."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import replikit as rk
from replikit.endpoints.postgres.source import RAW_BLOCK_BYTES
from replikit.pipeline.contracts import Batch
from replikit.schema.convert import TablePlan, link_foreign_keys, plan_table
from replikit.schema.model import TableId


def _plan(ep: Any, table: str, target: str) -> TablePlan:
    (source,) = [t for t in ep.reflect().tables if t.id.name == table]
    return plan_table(
        source, source_dialect="postgresql", target=ep.dialect, target_id=TableId("public", target)
    )


def _constraints(url: str, table: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = to_regclass(%s) ORDER BY conname",
            (table,),
        ).fetchall()
    return [(str(name), str(definition)) for name, definition in rows]


def test_primary_key_is_built_after_the_load(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE src (id bigint PRIMARY KEY, v text NOT NULL)")
    ep = rk.endpoint(pg_url)
    plan = _plan(ep, "src", "dst")
    writer = ep.writer()
    writer.prepare([plan], "drop-and-create")
    assert _constraints(pg_url, "dst") == []  # the rows go in without an index to maintain
    rows = [(i, f"v{i}") for i in range(1, 2001)]
    assert writer.load(plan, [Batch(plan.source.id, ("id", "v"), rows)]) == len(rows)
    writer.finish([plan])
    assert _constraints(pg_url, "dst") == [("dst_pkey", "PRIMARY KEY (id)")]
    # a resumed run finishes every table again: one that has its key keeps it
    ep.writer().finish([plan])
    assert _constraints(pg_url, "dst") == [("dst_pkey", "PRIMARY KEY (id)")]
    with psycopg.connect(pg_url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM dst").fetchone() or (0,)
    assert count == len(rows)


def test_a_finish_stopped_between_its_builds_and_its_keys_completes_on_resume(pg_url: str):
    """Each index build commits on its own and the keys attach after them: a run stopped in
    between leaves built indexes without their constraints; the resumed run's finish attaches
    them instead of failing on "already exists", and a finished table is finished again."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA s")  # the index names stay free in public
        conn.execute(
            "CREATE TABLE s.src (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, v int)"
        )
        conn.execute("CREATE INDEX src_v ON s.src (v)")
    ep = rk.endpoint(pg_url)
    plan = _plan(ep, "src", "dst")
    writer = ep.writer()
    writer.prepare([plan], "drop-and-create")
    rows = [(i, f"e{i}", i % 7) for i in range(1, 501)]
    writer.load(plan, [Batch(plan.source.id, ("id", "email", "v"), rows)])
    with psycopg.connect(pg_url, autocommit=True) as conn:  # what the stopped run committed
        conn.execute("CREATE UNIQUE INDEX dst_pkey ON dst (id)")
        conn.execute("CREATE UNIQUE INDEX dst_email_key ON dst (email)")
    ep.writer().finish([plan])
    want = [("dst_email_key", "UNIQUE (email)"), ("dst_pkey", "PRIMARY KEY (id)")]
    assert _constraints(pg_url, "dst") == want

    def indexes() -> list[str]:
        with psycopg.connect(pg_url) as conn:
            got = conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'dst' ORDER BY 1"
            ).fetchall()
        return [str(r[0]) for r in got]

    built = indexes()
    assert len(built) == 3
    ep.writer().finish([plan])  # finished already: nothing built twice, nothing refused
    assert _constraints(pg_url, "dst") == want and indexes() == built


def test_duplicate_keys_in_the_loaded_rows_fail_the_table(pg_url: str) -> None:
    """Without the key during the load, rows with one key load; the key added after them is
    refused and the table is named in error, never left with duplicates unreported."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE src (id bigint PRIMARY KEY, v text)")
    ep = rk.endpoint(pg_url)
    plan = _plan(ep, "src", "twice")
    writer = ep.writer()
    writer.prepare([plan], "drop-and-create")
    writer.load(plan, [Batch(plan.source.id, ("id", "v"), [(1, "a"), (1, "b")])])
    with pytest.raises(rk.TableDdlError) as info:
        writer.finish([plan])
    assert "public.twice" in info.value.table_errors
    assert "duplicate" in str(info.value.table_errors["public.twice"]).lower()


def test_raw_copy_passes_blocks_of_many_rows(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE wide (id int PRIMARY KEY, pad text, n numeric(12,2))")
        conn.execute(
            "INSERT INTO wide SELECT g, repeat(md5(g::text), 8), g / 7.0 "
            "FROM generate_series(1, 6000) g"
        )
    ep = rk.endpoint(pg_url)
    plan = _plan(ep, "wide", "wide_copy")
    with ep.reader([plan.source]) as reader:
        (unit,) = reader.units(plan.source)
        blocks = list(reader.read_raw(unit))
        assert len(blocks) > 2  # 6,000 rows of ~270 bytes: several blocks
        assert all(len(b) >= RAW_BLOCK_BYTES for b in blocks[:-1])
        writer = ep.writer()
        writer.prepare([plan], "drop-and-create")
        assert writer.load_raw(plan, iter(blocks)) == 6000
        writer.finish([plan])
    with psycopg.connect(pg_url) as conn:
        differ = conn.execute(
            "SELECT count(*) FROM ((SELECT * FROM wide EXCEPT ALL SELECT * FROM wide_copy) "
            "UNION ALL (SELECT * FROM wide_copy EXCEPT ALL SELECT * FROM wide)) d"
        ).fetchone()
    assert differ == (0,)


def _indexes(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s "
            "ORDER BY indexname",
            (table,),
        ).fetchall()
    return [str(name) for (name,) in rows]


def test_indexes_build_at_once_and_a_failed_one_fails_its_table_only(pg_url: str) -> None:
    """The finish builds every index on several connections; one refused (duplicates under a
    unique key) is its table's error, naming the key, and that table keeps none of the
    indexes built for it meanwhile; the other table gets all of its own."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA src;"  # the copies' index names are the source's: not in public
            "CREATE TABLE src.a (id bigint PRIMARY KEY, u text UNIQUE, v int);"
            "CREATE INDEX a_v ON src.a (v); CREATE INDEX a_uv ON src.a (u, v);"
            "CREATE TABLE src.b (id bigint PRIMARY KEY, u text UNIQUE, v int);"
            "CREATE INDEX b_v ON src.b (v)"
        )
    ep = rk.endpoint(pg_url)
    plans = [_plan(ep, "a", "a_copy"), _plan(ep, "b", "b_copy")]
    writer = ep.writer()
    writer.prepare(plans, "drop-and-create")
    good = [(i, f"u{i}", i % 7) for i in range(1, 3001)]
    bad = [*good, (3001, "u1", 1)]  # u repeats: the unique key cannot be built
    writer.load(plans[0], [Batch(plans[0].source.id, ("id", "u", "v"), bad)])
    writer.load(plans[1], [Batch(plans[1].source.id, ("id", "u", "v"), good)])
    with pytest.raises(rk.TableDdlError) as info:
        writer.finish(plans)
    assert set(info.value.table_errors) == {"public.a_copy"}
    message = str(info.value.table_errors["public.a_copy"])
    assert "a_copy_u_key" in message and "duplicate" in message.lower()
    assert _indexes(pg_url, "a_copy") == []
    assert _constraints(pg_url, "b_copy") == [
        ("b_copy_pkey", "PRIMARY KEY (id)"),
        ("b_copy_u_key", "UNIQUE (u)"),
    ]
    assert len(_indexes(pg_url, "b_copy")) == 3


def test_keys_built_while_the_load_goes_on_are_finished_once(pg_url: str) -> None:
    """``finish_loaded`` builds one table's indexes and keys as soon as its rows are in (no
    foreign key yet: the referencing table may still be loading); ``finish`` then adds the
    foreign key and builds nothing twice, in the same writer and in a resumed run's."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA src;"
            "CREATE TABLE src.parent (id bigint PRIMARY KEY, code text UNIQUE, v int);"
            "CREATE INDEX parent_v ON src.parent (v);"
            "CREATE TABLE src.child (id bigint PRIMARY KEY, "
            "parent_id bigint REFERENCES src.parent (id));"
        )
    ep = rk.endpoint(pg_url)
    (parent, child) = (_plan(ep, "parent", "p_copy"), _plan(ep, "child", "c_copy"))
    plans = link_foreign_keys([parent, child])
    writer = ep.writer()
    writer.prepare(plans, "drop-and-create")
    rows = [(i, f"c{i}", i % 5) for i in range(1, 301)]
    writer.load(plans[0], [Batch(plans[0].source.id, ("id", "code", "v"), rows)])
    writer.finish_loaded([plans[0]])
    assert _constraints(pg_url, "p_copy") == [
        ("p_copy_code_key", "UNIQUE (code)"),
        ("p_copy_pkey", "PRIMARY KEY (id)"),
    ]
    assert len(_indexes(pg_url, "p_copy")) == 3
    assert _constraints(pg_url, "c_copy") == []
    kids = [(i, 1 + i % 300) for i in range(1, 1001)]
    writer.load(plans[1], [Batch(plans[1].source.id, ("id", "parent_id"), kids)])
    writer.finish(plans)
    want_child = [
        ("c_copy_pkey", "PRIMARY KEY (id)"),
        ("child_parent_id_fkey", "FOREIGN KEY (parent_id) REFERENCES p_copy(id)"),
    ]
    assert _constraints(pg_url, "c_copy") == want_child
    before = (_indexes(pg_url, "p_copy"), _indexes(pg_url, "c_copy"))
    ep.writer().finish([plans[0]])  # a resumed run: finds the keys, builds nothing
    assert (_indexes(pg_url, "p_copy"), _indexes(pg_url, "c_copy")) == before
    assert _constraints(pg_url, "c_copy") == want_child

"""Mappings on real databases: full load then CDC equals a full load of the final state.

Every rule kind at once (renames, case, row filter groups, masks, an added expression column, a
change-metadata column, a removed column, a type change) on PostgreSQL, MariaDB and SQLite
sources: a full-load-and-cdc task loads, then replicates random changes that move rows into
and out of the filter, change keys and delete; a second, full-load-only task of the final
source state into a fresh target must give the same rows (the operation column aside).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from test_task_cdc import (  # noqa: F401 - make_db is a fixture
    Db,
    _source_endpoint,
    _wait_for,
    make_db,
)

import replikit as rk
from live_task import run_in_thread
from replikit import Mappings
from replikit.mapping.filters import condition
from replikit.pipeline.contracts import Unit

SCHEMA = (
    "CREATE TABLE people (id INTEGER PRIMARY KEY, first VARCHAR(40), last VARCHAR(40), "
    "email VARCHAR(60), grp INTEGER, status VARCHAR(10), note VARCHAR(100), legacy VARCHAR(10))",
    "CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
)
FIRST = ["Ada", "Alan", "Grace", "Edsger", None]
SECRET = "db-test-secret"

RULES = (
    Mappings()
    .rename_table("people", "persons")
    .rename_column("people", "first", "given")
    .convert_case("column", "upper", "people.note")
    .filter("people", ("grp", ">=", 1), ("status", "in", "a", "b"))
    .filter("people", ("grp", "is null"))
    .mask("people", "email", "fake-email")
    .mask("people", "last", "hash")
    .add_column("people", "full_name", "string(200)", "$first || ' ' || coalesce($last, '?')")
    .remove_column("people", "legacy")
    .change_type("people", "grp", "string(10)")
    .add_change_column("people", "op", "operation")
)


def _row(rng: random.Random, i: int) -> tuple[Any, ...]:
    return (
        i,
        rng.choice(FIRST),
        rng.choice(["Lovelace", "Turing", "Hopper", None]),
        rng.choice([f"user{i}@example.org", None]),
        rng.choice([0, 1, 2, None]),
        rng.choice(["a", "b", "c", None]),
        rng.choice(["n", None]),
        "x",
    )


def _changes(source: Db, rng: random.Random) -> None:
    ids = list(range(1, 41))
    next_id = 100
    for _ in range(12):
        statements: list[tuple[str, tuple[Any, ...]]] = []
        for _ in range(rng.randint(1, 5)):
            roll = rng.random()
            if roll < 0.3:
                next_id += 1
                ids.append(next_id)
                statements.append(("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                   _row(rng, next_id)))  # fmt: skip
            elif roll < 0.75 and ids:  # moves rows into and out of the filter
                statements.append((
                    "UPDATE people SET grp = ?, status = ?, first = ? WHERE id = ?",
                    (rng.choice([0, 1, None]), rng.choice(["a", "c"]), rng.choice(FIRST),
                     rng.choice(ids)),
                ))  # fmt: skip
            elif roll < 0.85 and ids:
                old = rng.choice(ids)
                next_id += 1
                ids.remove(old)
                ids.append(next_id)
                statements.append(("UPDATE people SET id = ? WHERE id = ?", (next_id, old)))
            elif ids:
                gone = rng.choice(ids)
                ids.remove(gone)
                statements.append(("DELETE FROM people WHERE id = ?", (gone,)))
        source.execute(statements)


def _target_rows(db: Db, schema: str | None) -> list[tuple[Any, ...]]:
    return [tuple("" if v is None else str(v) for v in r) for r in db.rows("persons", "1", schema)]


def _settings(**kw: Any) -> rk.TaskSettings:
    return rk.TaskSettings(progress=False, mask_secret=SECRET, split_rows=None, **kw)


PAIRS = [("sqlite", "sqlite"), ("pg", "pg"), ("mysql", "mysql"), ("mysql", "pg")]


@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS)
def test_full_load_then_cdc_equals_full_load_of_final_state(
    make_db: Callable[[str], Db],  # noqa: F811 - the fixture
    src_kind: str,
    dst_kind: str,
) -> None:
    source, target, fresh = make_db(src_kind), make_db(dst_kind), make_db(dst_kind)
    source.execute([(s, ()) for s in SCHEMA])
    rng = random.Random(f"{src_kind}-{dst_kind}")
    source.execute([("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(rng, i))
                    for i in range(1, 41)])  # fmt: skip
    task = rk.Task(
        _source_endpoint(source), target.url, migration_type="full-load-and-cdc",
        mappings=RULES, settings=_settings(task_id="map1", batch_apply=src_kind == "pg"),
    )  # fmt: skip
    plan = task.plan()
    assert any("filter: (grp >= 1 and status in ('a', 'b')) or grp is null" in line
               for _, lines in plan.mappings for line in lines)  # fmt: skip
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    _changes(source, rng)
    source.execute([("INSERT INTO counters VALUES (?, ?)", (999, 0))])
    schema = source.name if src_kind == "mysql" and dst_kind == "pg" else None
    _wait_for(lambda: bool(errors) or any(r[0] == 999 for r in _safe_rows(target, schema)))
    task.stop()
    thread.join(60)
    assert not errors, errors
    again = rk.Task(source.url, fresh.url, mappings=RULES, settings=_settings())
    again.run()
    replicated, loaded = _target_rows(target, schema), _target_rows(fresh, schema)
    assert sorted(r[:-1] for r in replicated) == sorted(r[:-1] for r in loaded)
    assert {r[-1] for r in loaded} <= {"INSERT"}
    assert {r[-1] for r in replicated} <= {"INSERT", "UPDATE"}
    assert len(loaded) > 3  # the filter kept some rows, and dropped others
    assert len(loaded) < len(source.rows("people", "id"))


def _safe_rows(db: Db, schema: str | None, table: str = "counters") -> list[tuple[Any, ...]]:
    try:
        return db.rows(table, "id", schema)
    except Exception:  # not created yet
        return []


@pytest.mark.parametrize("kind", ["sqlite", "pg", "mysql"])
def test_row_filter_is_pushed_down_to_the_source_query(make_db: Callable[[str], Db], kind):  # noqa: F811 - the fixture
    source = make_db(kind)
    source.execute([(SCHEMA[0], ())])
    rng = random.Random(1)
    source.execute([("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(rng, i))
                    for i in range(1, 31)])  # fmt: skip
    ep = rk.endpoint(source.url)
    (table,) = [t for t in ep.reflect().tables if t.id.name == "people"]
    types = {c.name: c.type for c in table.columns}
    where = condition("grp", ">=", 1).bind(types, "test")
    reader = ep.reader([table])
    try:
        rows = [r for b in reader.read(Unit(table.id, where=where)) for r in b.rows]
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()
        ep.close()
    grp = table.column_names.index("grp")
    expected = [r for r in source.rows("people", "id") if r[grp] is not None and r[grp] >= 1]
    assert len(rows) == len(expected) > 0  # the reader alone filtered: the SQL had the WHERE


def test_rule_problems_are_in_the_plan(make_db: Callable[[str], Db]) -> None:  # noqa: F811 - the fixture
    source, target = make_db("sqlite"), make_db("sqlite")
    source.execute([(s, ()) for s in SCHEMA])
    unused = Mappings().rename_table("nope", "x").mask("people", "nothing%", "null")
    plan = rk.Task(source.url, target.url, mappings=unused).plan()
    assert any("rule 1 (rename on %.nope) matches no selected table" in p
               for p in plan.assessment.problems)  # fmt: skip
    assert any("rule 2 (mask on %.people.nothing%)" in p for p in plan.assessment.problems)
    clash = Mappings().rename_table("people", "t").rename_table("counters", "t")
    plan = rk.Task(source.url, target.url, mappings=clash).plan()
    reasons = " ".join(str(f) for f in plan.unsupported)
    assert "rule 1 (rename on %.people)" in reasons and "rule 2 (rename on %.counters)" in reasons
    with pytest.raises(rk.ConversionError):
        rk.Task(source.url, target.url, mappings=clash).run()
    masked = rk.Task(source.url, target.url, mappings=RULES, settings=_settings()).plan()
    html = masked._repr_html_()
    assert "Mappings (filters, masks, columns)" in html and "mask: last hash" in html
    assert masked.to_dict()["mappings"]["people"][0].startswith("filter: ")
    bad = Mappings().filter("people", ("colour", "=", "red"))
    with pytest.raises(rk.ConfigError, match=r"rule 1 \(filter on %.people\).*'colour'"):
        rk.Task(source.url, target.url, mappings=bad).plan()


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
def test_validation_compares_through_the_mappings(make_db: Callable[[str], Db], kind) -> None:  # noqa: F811 - the fixture
    source, target = make_db(kind), make_db("sqlite")
    source.execute([(s, ()) for s in SCHEMA])
    rng = random.Random(7)
    source.execute([("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(rng, i))
                    for i in range(1, 41)])  # fmt: skip
    rules = RULES.include("%", "people")
    rk.Task(source.url, target.url, mappings=rules, settings=_settings()).run()
    report = rk.Task(source.url, target.url, mappings=rules, settings=_settings()).validate()
    assert {t.state.value for t in report} == {"validated"}, str(report)
    target.execute([("UPDATE persons SET email = 'leaked@example.org'", ())])
    report = rk.Task(source.url, target.url, mappings=rules, settings=_settings()).validate()
    assert "mismatched" in {t.state.value for t in report}


EVENTS = "CREATE TABLE events (vendor VARCHAR(10) NOT NULL, sku VARCHAR(10) NOT NULL, n INTEGER)"
MORE_RULES = (
    Mappings()
    .add_prefix("table", "stg_")
    .replace_suffix("column", "st", "ST", "people.last")
    .keep_columns("people", "id", "first", "last", "email", "grp", "status")
    .mask("people", "email", "redact")
    .mask("people", "first", "fake-name")
    .mask("people", "grp", "digits-randomize")
    .mask("people", "status", "null")
    .define_primary_key("events", ["vendor", "sku"])
    .change_type("events", "n", "int8")
    .filter("events", ("n", ">", 3))
)


def _event_changes(source: Db, rng: random.Random) -> None:
    keys = [(f"v{i % 3}", f"s{i}") for i in range(20)]
    for _ in range(10):
        statements: list[tuple[str, tuple[Any, ...]]] = []
        for _ in range(rng.randint(1, 4)):
            vendor, sku = rng.choice(keys)
            roll = rng.random()
            if roll < 0.6:  # moves rows into and out of the filter
                statements.append((
                    "UPDATE events SET n = ? WHERE vendor = ? AND sku = ?",
                    (rng.randint(0, 9), vendor, sku),
                ))  # fmt: skip
            elif roll < 0.8:
                statements.append(
                    ("DELETE FROM events WHERE vendor = ? AND sku = ?", (vendor, sku))
                )
            else:
                sku = f"n{rng.randint(100, 999)}"
                statements.append(
                    ("INSERT INTO events VALUES (?, ?, ?)", (vendor, sku, rng.randint(0, 9)))
                )
        source.execute(statements)


@pytest.mark.parametrize("kind", ["sqlite", "pg", "mysql"])
def test_more_rule_kinds_full_load_then_cdc(make_db: Callable[[str], Db], kind: str) -> None:  # noqa: F811 - the fixture
    """Prefixes and suffixes, kept columns, every other mask kind, and a key-less table
    keyed by a define_primary_key rule: each change reader names its rows by the rule's
    columns and CDC applies by them; a type change and a filter on it."""
    source, target, fresh = make_db(kind), make_db(kind), make_db(kind)
    keyless = True
    source.execute([(s, ()) for s in SCHEMA])
    rng = random.Random(f"more-{kind}")
    source.execute(
        [("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(rng, i)) for i in range(1, 41)]
    )
    if keyless:
        source.execute([(EVENTS, ())])
        if kind == "pg":
            source.execute([("ALTER TABLE events REPLICA IDENTITY FULL", ())])
        events = [(f"v{i % 3}", f"s{i}", rng.randint(0, 9)) for i in range(20)]
        source.execute([("INSERT INTO events VALUES (?, ?, ?)", e) for e in events])
    task = rk.Task(
        _source_endpoint(source), target.url, migration_type="full-load-and-cdc",
        mappings=MORE_RULES, settings=_settings(task_id="map2"),
    )  # fmt: skip
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    _changes(source, rng)
    if keyless:
        _event_changes(source, rng)
    source.execute([("INSERT INTO counters VALUES (?, ?)", (999, 0))])
    _wait_for(
        lambda: bool(errors) or any(r[0] == 999 for r in _safe_rows(target, None, "stg_counters"))
    )
    task.stop()
    thread.join(60)
    assert not errors, errors
    rk.Task(source.url, fresh.url, mappings=MORE_RULES, settings=_settings()).run()
    for table in ("stg_people", "stg_events") if keyless else ("stg_people",):
        replicated = sorted(map(repr, target.rows(table, "1")))
        loaded = sorted(map(repr, fresh.rows(table, "1")))
        assert replicated == loaded, table
    if keyless:
        assert 0 < len(fresh.rows("stg_events", "1")) < len(source.rows("events", "1"))


PUSHED_RULES = (
    Mappings()
    .rename_table("people", "persons")
    .rename_column("people", "first", "given")
    .filter("people", ("grp", ">=", 1))
    .filter("people", ("grp", "is null"))
    .mask("people", "email", "fake-email")
    .mask("people", "last", "hash")
    .mask("people", "note", "digits-mask")
    .add_column("people", "full_name", "string(200)", "$first || ' ' || coalesce($last, '?')")
    .add_column("people", "grp_x", "int8", "$grp * 1000 + $id")
    .remove_column("people", "legacy")
)


def test_pushed_full_load_then_cdc_equals_full_load_of_final_state(
    make_db: Callable[[str], Db],  # noqa: F811 - the fixture
) -> None:
    """PostgreSQL -> PostgreSQL with rules the source's SELECT computes (the full load from
    the CDC snapshot stays in binary COPY form), then CDC through Python: the target equals
    a full load of the final state through Python."""
    source, target, fresh = make_db("pg"), make_db("pg"), make_db("pg")
    source.execute([(s, ()) for s in SCHEMA])
    rng = random.Random("pushed")
    source.execute([("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(rng, i))
                    for i in range(1, 41)])  # fmt: skip
    with rk.endpoint(source.url) as ep, rk.endpoint(target.url) as dst:
        pipe = rk.Pipeline(ep.reader(["people"]), dst.writer(), mappings=PUSHED_RULES,
                           mask_secret=SECRET)  # fmt: skip
        [plan] = pipe.plans()
        assert pipe._raw_ok(plan) and pipe._projection(plan) is not None
        pipe.reader.close()  # type: ignore[attr-defined]
    task = rk.Task(
        _source_endpoint(source), target.url, migration_type="full-load-and-cdc",
        mappings=PUSHED_RULES, settings=_settings(task_id="map3", batch_apply=True),
    )  # fmt: skip
    thread, errors = run_in_thread(task)
    _wait_for(lambda: task.phase == "cdc" or bool(errors))
    _changes(source, rng)
    source.execute([("INSERT INTO counters VALUES (?, ?)", (999, 0))])
    _wait_for(lambda: bool(errors) or any(r[0] == 999 for r in _safe_rows(target, None)))
    task.stop()
    thread.join(60)
    assert not errors, errors
    rk.Task(source.url, fresh.url, mappings=PUSHED_RULES, settings=_settings(),
            transforms=[lambda c: c]).run()  # fmt: skip
    replicated, loaded = _target_rows(target, None), _target_rows(fresh, None)
    assert sorted(replicated) == sorted(loaded)
    assert 3 < len(loaded) < len(source.rows("people", "id"))

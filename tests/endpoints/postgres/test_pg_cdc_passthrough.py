"""pgoutput text passed on to the target unchanged (TextImage): which columns, and exactness.

A PostgreSQL source's change images hold the server's output text; the PostgreSQL writer
hands that text to the target for columns of the source's own type (no Python value in
between) and types the others (money and domains over it: their text follows
``lc_monetary``). The end-to-end test drives a full-load-and-cdc task with batch apply through
both the staged COPY path (64 rows and more per step) and statements, with values whose text
needs COPY escaping (tabs, newlines, backslashes), and checks the target's text equals the
source's, column by column.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from unittest import mock

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replikit as rk
from live_task import running, wait
from replikit.changes import ImageLayout, TextImage
from replikit.endpoints.postgres._apply_table import Shape, TableApply
from replikit.endpoints.postgres._decoder import MONEY_OIDS
from replikit.mapping import Selection
from replikit.schema.convert import plan_table

DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN cash AS money;
CREATE TABLE p (
    id integer PRIMARY KEY,
    f4 real,
    f8 double precision,
    n numeric,
    s text,
    raw bytea,
    iv interval,
    m money,
    c cash,
    e mood,
    tt timetz,
    tz timestamptz,
    arr text[],
    j json
);
CREATE TABLE marker (id integer PRIMARY KEY);
"""
COLUMNS = ("f4", "f8", "n", "s", "raw", "iv", "m", "c", "e", "tt", "tz", "arr", "j")
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
tricky = st.sampled_from(["a\tb", "line\nbreak", "back\\slash", "\\N", "cr\r", "", " "]) | texts
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "f4": st.floats(width=32),
    "f8": st.floats(),
    "n": st.decimals(allow_nan=True, allow_infinity=False, places=None).filter(
        lambda d: (d.is_qnan() and not d.is_signed()) or (d.is_finite() and abs(d.adjusted()) < 60)
    ),
    "s": tricky,
    "raw": st.binary(max_size=12),
    "iv": st.timedeltas(-timedelta(days=10**6), timedelta(days=10**6)),
    "m": st.decimals(-(10**9), 10**9, places=2, allow_nan=False),
    "c": st.decimals(-(10**9), 10**9, places=2, allow_nan=False),
    "e": st.sampled_from(["sad", "ok", "happy"]),
    "tt": st.sampled_from(["00:00:00+00", "12:34:56.789+05:30", "23:59:59.999999-12"]),
    "tz": st.datetimes(timezones=st.timezones()),
    "arr": st.lists(tricky | st.none(), max_size=3),
    "j": st.sampled_from(['{"a": [1, 2.50, "x\\ty"]}', "[]", '"s"', "1e400", '{"k":1, "k":2}']),
}
CASTS = {"m": "::numeric::money", "c": "::numeric::cash", "e": "::mood", "tt": "::timetz",
         "j": "::json", "iv": "::interval"}  # fmt: skip


def test_which_columns_pass_their_text(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(DDL)
    ep = rk.endpoint(pg_url)
    (table,) = ep.reflect(Selection(include=("public.p",))).tables
    plan = plan_table(table, source_dialect="postgresql", target=ep.dialect)
    apply = TableApply(plan)
    shape = apply.shape(apply.order)
    passing = dict(zip(shape.source, shape.passes, strict=True))
    assert all(passing.values()), passing  # same types; money is left to the reader's flags
    names = shape.source
    money = frozenset(i for i, n in enumerate(names) if n in ("m", "c"))
    loaders = [(lambda t: ("typed", t)) for _ in names]
    texts = tuple(f"{i}" if n == "id" else "$1,234.50" if i in money else f"t{i}"
                  for i, n in enumerate(names))  # fmt: skip
    row = shape.row(TextImage(ImageLayout(names, loaders, "postgresql", money), texts))
    for i, value in enumerate(row):
        assert value == (("typed", texts[i]) if i in money else texts[i]), names[i]
    other = shape.row(TextImage(ImageLayout(names, loaders, "mysql"), texts))
    assert other == [("typed", t) for t in texts]  # another text form: typed, never passed
    assert {790, 791} <= MONEY_OIDS


def _literal(column: str, value: Any) -> tuple[str, Any]:
    if column in ("m", "c") and value is not None:
        return f"%s{CASTS[column]}", str(value)
    return ("%s" + CASTS.get(column, "")), value


def _insert_sql(rows: list[tuple[int, dict[str, Any]]]) -> list[tuple[str, tuple[Any, ...]]]:
    out = []
    for key, row in rows:
        marks, params = ["%s"], [key]
        for c in COLUMNS:
            mark, param = _literal(c, row.get(c))
            marks.append(mark)
            params.append(param)
        out.append((f"INSERT INTO p (id, {', '.join(COLUMNS)}) VALUES ({', '.join(marks)})",
                    tuple(params)))  # fmt: skip
    return out


def _text_rows(url: str) -> list[tuple[Any, ...]]:
    cols = ", ".join(f"{c}::text" for c in ("id", *COLUMNS))
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT {cols} FROM p ORDER BY id").fetchall()


row_values = st.fixed_dictionaries({}, optional={c: st.none() | s for c, s in VALUES.items()})


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(row_values, min_size=1, max_size=4), updates=st.lists(row_values, max_size=3))
def test_text_passes_through_exactly(
    pg_server: Any, rows: list[dict[str, Any]], updates: list[dict[str, Any]]
) -> None:
    src_name, dst_name = (f"pt_{uuid.uuid4().hex[:10]}" for _ in range(2))
    src, dst = pg_server.create_database(src_name), pg_server.create_database(dst_name)
    settings_ = rk.TaskSettings(task_id="pt", progress=False, batch_apply=True)
    task = rk.Task(src, dst, migration_type="full-load-and-cdc", settings=settings_)
    seen: set[type] = set()
    original = Shape.row

    def row(self: Shape, image: Any) -> list[Any]:
        seen.add(type(image))
        return original(self, image)

    patch = mock.patch.object(Shape, "row", row)
    patch.start()
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute(DDL)
        with running(task) as errors:
            # 70 copies of each row: batch apply stages them (COPY); single rows go as statements
            many = [(k * 100 + j, row) for k, row in enumerate(rows) for j in range(70)]
            with psycopg.connect(src) as conn:
                conn.execute("SET synchronous_commit = on")
                for sql, params in _insert_sql(many):
                    conn.execute(sql, params)
                conn.commit()
                for i, row in enumerate(updates):
                    sets = [(c, *_literal(c, v)) for c, v in row.items()]
                    if sets:
                        assignments = ", ".join(f"{c} = {mark}" for c, mark, _ in sets)
                        conn.execute(f"UPDATE p SET {assignments} WHERE id = %s",
                                     (*(p for _, _, p in sets), i * 100))  # fmt: skip
                        conn.commit()
                conn.execute("INSERT INTO marker VALUES (1)")
                conn.commit()
            wait(lambda: bool(errors) or _has_marker(dst))
        assert _text_rows(dst) == _text_rows(src)
        assert TextImage in seen  # the rows came as text and went out through the pass-through
    finally:
        patch.stop()
        with pg_server.connect() as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = %s",
                (src_name,),
            )
        pg_server.drop_database(src_name)
        pg_server.drop_database(dst_name)


def _has_marker(dst: str) -> bool:
    with psycopg.connect(dst) as conn:
        try:
            return conn.execute("SELECT count(*) FROM marker").fetchone() == (1,)
        except psycopg.errors.UndefinedTable:
            return False


@pytest.mark.parametrize("kind", ["plain", "toast"])
def test_unchanged_toast_values_keep_the_dict_path(kind: str) -> None:
    """A row with an unchanged TOASTed value is not a TextImage (its columns are partial)."""
    from replikit.endpoints.postgres._decoder import (
        UNCHANGED,
        Column,
        Relation,
        TransactionAssembler,
        Update,
    )
    from replikit.endpoints.postgres._pgoutput import PG_EPOCH, Begin, Commit

    rel = Relation(1, "public", "t", "d", (Column("id", 23, -1, True), Column("b", 25, -1, False)))
    asm = TransactionAssembler(primary_keys={rel.table: ("id",)})
    new = ("1", "x") if kind == "plain" else ("1", UNCHANGED)
    asm.feed(Begin(10, PG_EPOCH, 1))
    asm.feed(Update(rel, None, None, new, kind == "plain"))
    tx = asm.feed(Commit(0, 10, 20, PG_EPOCH))
    assert tx is not None
    (change,) = tx.changes
    assert isinstance(change.after, TextImage) == (kind == "plain")
    assert dict(change.after or {}) == ({"id": "1", "b": "x"} if kind == "plain" else {"id": "1"})
    assert tx.size_hint is not None and tx.size_hint > 0

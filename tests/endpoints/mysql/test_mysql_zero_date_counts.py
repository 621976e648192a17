"""Zero dates read as NULL are counted once per value, however often a unit is read: a unit read
again (its load rolled back and retried, or redone by another path: DuckDB's CSV reader -> record
batches, PostgreSQL COPY text -> typed rows) replaces its earlier count, in
:attr:`MysqlReader.zero_dates` and in the log."""

from __future__ import annotations

import logging
import re
import threading

import psycopg
import pytest
from _my_schema import endpoint, run_sql
from hypothesis import given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit._failpoints import inject
from replikit.endpoints.duckdb._dialect import DIALECT as DUCK
from replikit.endpoints.postgres._dialect import DIALECT as PG
from replikit.errors import ConnectError
from replikit.schema.convert import plan_table
from replikit.schema.model import TableId

_LOGGED = re.compile(r"\.(\w+): (\d+) zero or invalid date\(s\) read as NULL")


def _db(url):
    return url.rsplit("/", 1)[1].split("?")[0]


def _logged(caplog) -> dict[str, int]:
    """The zero dates the log says were read as NULL, summed by column."""
    out: dict[str, int] = {}
    for record in caplog.records:
        found = _LOGGED.search(record.getMessage())
        if found:
            out[found[1]] = out.get(found[1], 0) + int(found[2])
    return out


def _zero_table(url: str, zero_d: list[bool], zero_dt: list[bool], long: int = 0) -> None:
    """Table ``z``: row ``i`` has a zero DATE ``d`` / DATETIME ``dt`` where the flags say;
    with ``long``, a text column ``s``, 1.4 MB in row ``long``, NULL in the others."""
    extra = {i: (", REPEAT('é', 700 * 1024)" if i == long else ", NULL") if long else "" for i in
             range(1, len(zero_d) + 1)}  # fmt: skip
    values = ", ".join(
        f"({i}, '{'0000-00-00' if zd else '2020-01-02'}', "
        f"'{'2020-02-31 00:00:00' if zt else '2021-03-04 05:06:07'}'{extra[i]})"
        for i, (zd, zt) in enumerate(zip(zero_d, zero_dt, strict=True), 1)
    )
    cols = ", s LONGTEXT NULL" if long else ""
    run_sql(
        url,
        "DROP TABLE IF EXISTS z;\n"
        f"CREATE TABLE z (id INT PRIMARY KEY, d DATE NULL, dt DATETIME NULL{cols});\n"
        f"INSERT INTO z VALUES {values}",
        sql_mode="ALLOW_INVALID_DATES",
    )


def _want(url: str, zero_d: list[bool], zero_dt: list[bool]) -> dict[tuple[str, str], int]:
    want = {(f"{_db(url)}.z", "d"): sum(zero_d), (f"{_db(url)}.z", "dt"): sum(zero_dt)}
    return {k: n for k, n in want.items() if n}


def _notes(zero_d: list[bool], zero_dt: list[bool]) -> list[str]:
    """The table's statistics notes for these zero dates."""
    counts = (("d", sum(zero_d)), ("dt", sum(zero_dt)))
    return [f"column {c}: {n} zero or invalid date(s) read as NULL (zero_dates='null')"
            for c, n in counts if n]  # fmt: skip


def _drain(items) -> None:
    for _ in items:
        pass


PATHS = ("rows", "arrow", "pg-text", "duckdb-csv")


@settings(settings.get_profile("db"), max_examples=12, deadline=None)
@given(
    flags=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=12),
    split=st.sampled_from([None, 3]),
    reads=st.lists(st.sampled_from(PATHS), min_size=1, max_size=5),
    partial=st.booleans(),
)
def test_a_unit_read_again_by_any_path_is_counted_once(mysql_url, flags, split, reads, partial):
    """Each unit is read by every path in ``reads`` (some more than once), and maybe first
    abandoned after one batch: the counts are those of the table, once."""
    zero_d = [f[0] for f in flags]
    zero_dt = [f[1] for f in flags]
    _zero_table(mysql_url, zero_d, zero_dt)
    ep = endpoint(mysql_url, batch_rows=2)
    reader = ep.reader(["z"])
    (table,) = reader.tables
    schema = ep.reflect().table(TableId(_db(mysql_url), "z"))
    to_pg = plan_table(schema, source_dialect="mysql", target=PG)
    to_duck = plan_table(schema, source_dialect="mysql", target=DUCK)

    def read(unit, path):
        if path == "rows":
            return reader.read(unit)
        if path == "arrow":
            return reader.read_arrow(unit)
        text = reader.copy_text(to_pg if path == "pg-text" else to_duck, unit)
        assert text is not None, path
        return text.chunks

    units = reader.units(table, split_rows=split)
    if split is not None:
        units = units or reader.units(table)
    for unit in units:
        if partial:  # a read given up after its first batch counts nothing
            items = reader.read(unit)
            next(iter(items), None)
            items.close()
        for path in reads:
            _drain(read(unit, path))
    assert reader.zero_dates == _want(mysql_url, zero_d, zero_dt)


def test_a_unit_read_in_threads_counts_each_units_own_zero_dates(mysql_url, caplog):
    """Units of one table read at the same time by several threads: each unit's count (and
    log line) is its own, the totals the table's."""
    zero_d = [i % 3 == 0 for i in range(60)]
    zero_dt = [i % 7 == 0 for i in range(60)]
    _zero_table(mysql_url, zero_d, zero_dt)
    reader = endpoint(mysql_url, batch_rows=3).reader(["z"])
    (table,) = reader.tables
    units = reader.units(table, split_rows=10)
    assert len(units) > 1
    with caplog.at_level(logging.WARNING):
        threads = [
            threading.Thread(target=_drain, args=(reader.read(u),)) for u in units for _ in (1, 2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert reader.zero_dates == _want(mysql_url, zero_d, zero_dt)
    assert _logged(caplog) == {"d": sum(zero_d), "dt": sum(zero_dt)}


def test_duckdb_csv_refused_then_loaded_as_record_batches_counts_once(
    mysql_url, tmp_path, monkeypatch, caplog
):
    """A line too long for DuckDB's CSV buffer: the unit, whose lines were all read with their
    zero dates, is rolled back and read again as record batches; the log counts each zero
    date once."""
    from replikit.endpoints.duckdb import _csvpipe

    monkeypatch.setattr(_csvpipe, "BUFFER_BYTES", 1 << 20)
    # the zero dates in the first chunk of lines (1,000), the long line last and in another
    # (Python's CSV reader, which resolves a chunk's zero dates, takes no field over 128 kB)
    zero_d = [i < 1000 and i % 4 == 0 for i in range(1200)]
    zero_dt = [i < 1000 and i % 5 == 1 for i in range(1200)]
    _zero_table(mysql_url, zero_d, zero_dt, long=1200)
    with caplog.at_level(logging.INFO):
        out = f"duckdb:///{tmp_path / 'z.duckdb'}"
        stats = rk.copy(mysql_url, out, include=["%.z"], progress=False)
    assert any("redone through typed rows" in r.getMessage() for r in caplog.records)
    assert _logged(caplog) == {"d": sum(zero_d), "dt": sum(zero_dt)}
    assert stats[f"{_db(mysql_url)}.z"].warnings == _notes(zero_d, zero_dt)
    import duckdb

    with duckdb.connect(str(tmp_path / "z.duckdb"), read_only=True) as duck:
        (schema,) = duck.execute(
            "SELECT schema_name FROM duckdb_tables() WHERE table_name = 'z'"
        ).fetchone()
        nulls = duck.execute(
            f'SELECT count(*) - count(d), count(*) - count(dt) FROM "{schema}".z'
        ).fetchone()
    assert nulls == (sum(zero_d), sum(zero_dt))


def test_a_unit_retried_by_the_runner_counts_its_zero_dates_once(mysql_url, pg_url, caplog):
    """MariaDB -> PostgreSQL: the first load of the unit fails with a recoverable error after
    its rows were read, the runner loads it again; each zero date is counted once."""
    zero_d = [i % 3 == 0 for i in range(30)]
    zero_dt = [i % 4 == 2 for i in range(30)]
    _zero_table(mysql_url, zero_d, zero_dt)
    fails = []

    def fail() -> None:
        fails.append(1)
        raise ConnectError("the target connection was lost (failpoint)")

    settings_ = rk.TaskSettings(
        task_id="zero", progress=False, parallel_tables=1,
        error_policy=rk.ErrorPolicy(retry_delay=0.01, retry_max_delay=0.02),
    )  # fmt: skip
    task = rk.Task(
        endpoint(mysql_url), rk.endpoint(pg_url), migration_type="full-load", settings=settings_
    )
    with caplog.at_level(logging.INFO), inject("full-load.batch", fail, nth=1):
        task.run()
    assert fails == [1]
    assert task.statistics().retries >= 1
    assert _logged(caplog) == {"d": sum(zero_d), "dt": sum(zero_dt)}
    assert task.statistics()[f"{_db(mysql_url)}.z"].warnings == _notes(zero_d, zero_dt)
    with psycopg.connect(pg_url) as conn:
        got = conn.execute(
            f'SELECT count(*), count(*) - count(d), count(*) - count(dt) FROM "{_db(mysql_url)}".z'
        ).fetchone()
    assert got == (30, sum(zero_d), sum(zero_dt))


@pytest.mark.parametrize("path", ["rows", "duckdb-csv"])
def test_a_pickled_reader_starts_without_counts(mysql_url, path):
    """A reader sent to another process carries no counts back or forth: the copy counts its
    own units only, and the original keeps its own."""
    import pickle

    _zero_table(mysql_url, [True, False, True], [False, True, False])
    reader = endpoint(mysql_url).reader(["z"])
    (table,) = reader.tables
    (unit,) = reader.units(table)
    _drain(reader.read(unit))
    copy = pickle.loads(pickle.dumps(reader))
    assert copy.zero_dates == {}
    if path == "rows":
        _drain(copy.read(unit))
    else:
        plan = plan_table(table, source_dialect="mysql", target=DUCK)
        _drain(copy.copy_text(plan, unit).chunks)
    want = _want(mysql_url, [True, False, True], [False, True, False])
    assert copy.zero_dates == want and reader.zero_dates == want


@pytest.mark.parametrize("target", ["sqlite", "duckdb"])
def test_the_tables_statistics_and_json_say_how_many_zero_dates_became_null(
    mysql_url, tmp_path, capsys, target
):
    """The count is not only a log line: the table's statistics carry it, so the summary and
    ``--json`` (whose reader sees no log) say which column lost how many values."""
    import json

    from replikit.cli import main

    _zero_table(mysql_url, [True, False, True, True], [False, True, False, False])
    db = _db(mysql_url)
    out = f"{target}:///{tmp_path / 'out.db'}"
    want = [
        "column d: 3 zero or invalid date(s) read as NULL (zero_dates='null')",
        "column dt: 1 zero or invalid date(s) read as NULL (zero_dates='null')",
    ]
    stats = rk.copy(mysql_url, out, include=[f"{db}.z"], progress=False)
    assert stats[f"{db}.z"].warnings == want
    assert "note: column d: 3 zero or invalid date(s)" in str(stats)

    assert main(["copy", mysql_url, out, "--include", f"{db}.z", "--json"]) == 0
    (table,) = json.loads(capsys.readouterr().out)["tables"]
    assert table["warnings"] == want

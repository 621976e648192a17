"""Reflection: Chinook, identities, indexes, generated columns, quoting of arbitrary names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from _sqlite_util import CHINOOK, CHINOOK_TABLES, endpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replikit as rk
from replikit.endpoints.sqlite import SqliteEndpoint
from replikit.endpoints.sqlite._dialect import DIALECT
from replikit.endpoints.sqlite.reflect import parse_index_sql
from replikit.errors import ConfigError, ConnectError
from replikit.mapping import Selection
from replikit.schema.model import ForeignKey, Identity, Index, TableId
from replikit.schema.types import Type


@pytest.fixture(scope="module")
def chinook() -> SqliteEndpoint:
    return SqliteEndpoint(f"sqlite:///{CHINOOK}")


def make(path: Path, *statements: str) -> SqliteEndpoint:
    with sqlite3.connect(path) as conn:
        for sql in statements:
            conn.execute(sql)
    conn.close()
    return endpoint(path)


def test_registry_and_capabilities() -> None:
    ep = rk.endpoint("sqlite:///:memory:")
    assert isinstance(ep, SqliteEndpoint)
    assert ep.family == "sqlite"
    assert ep.path is None
    assert not ep.capabilities.schemas
    assert not ep.capabilities.concurrent_writes
    assert ep.capabilities.cdc
    assert rk.endpoint("sqlite:///rel/x.db").path == "rel/x.db"
    assert rk.endpoint("sqlite:////abs/x.db").path == "/abs/x.db"
    assert rk.endpoint("data.sqlite").path == "data.sqlite"


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///x.db?mode=ro"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        rk.endpoint(url)


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(rk.ConfigError, match="colour"):
        rk.endpoint("sqlite:///:memory:", colour="red")


def test_missing_source_file(tmp_path: Path) -> None:
    ep = endpoint(tmp_path / "nope.db")
    ep.check()  # could be created as a target
    with pytest.raises(ConnectError, match="no such database file"):
        ep.reflect()
    with pytest.raises(ConnectError, match="no such database file"):
        ep.reader()
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(ConnectError):
        endpoint(tmp_path / "no" / "folder.db").check()


def test_a_folder_named_as_the_database_says_so(tmp_path: Path) -> None:
    """SQLite's own word for a folder is "disk I/O error": the message names the folder and
    what to give instead, as source and as target."""
    folder = tmp_path / "data"
    folder.mkdir()
    source = tmp_path / "src.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.close()
    for act in (lambda: endpoint(folder).reflect(), lambda: rk.copy(
            f"sqlite:///{source}", f"sqlite:///{folder}", progress=False)):  # fmt: skip
        with pytest.raises(ConnectError, match="it is a folder, not a database file"):
            act()


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(ConnectError):
        endpoint(tmp_path / "junk.db").check()


def test_chinook_tables_keys_and_types(chinook: SqliteEndpoint) -> None:
    cat = chinook.reflect()
    assert {t.id.name for t in cat.tables} == CHINOOK_TABLES
    assert all(t.id.schema is None for t in cat.tables)
    invoice = cat.table("Invoice")
    assert invoice.primary_key == ("InvoiceId",)
    assert invoice.column("Total").type == Type.decimal(10, 2)
    assert invoice.column("Total").type.native == "NUMERIC(10,2)"
    assert invoice.column("InvoiceDate").type == Type.timestamp()
    assert not invoice.column("InvoiceDate").nullable
    assert invoice.column("BillingState").nullable
    assert invoice.column("BillingCity").type == Type.string(40)
    assert invoice.estimated_rows == 412
    ident = invoice.column("InvoiceId").identity
    assert ident == Identity(kind="by-default", next_value=413)
    assert cat.table("PlaylistTrack").primary_key == ("PlaylistId", "TrackId")
    assert cat.table("PlaylistTrack").column("TrackId").identity is None


def test_chinook_foreign_keys_and_indexes(chinook: SqliteEndpoint) -> None:
    cat = chinook.reflect()
    employee = cat.table("Employee")
    assert employee.foreign_keys == (
        ForeignKey(
            None,
            ("ReportsTo",),
            TableId(None, "Employee"),
            ("EmployeeId",),
            on_delete="NO ACTION",
            on_update="NO ACTION",
        ),
    )
    track = cat.table("Track")
    assert {fk.ref_table.name for fk in track.foreign_keys} == {"Album", "Genre", "MediaType"}
    assert Index("IFK_TrackAlbumId", ("AlbumId",)) in track.indexes
    assert sum(len(t.foreign_keys) for t in cat.tables) == 11


def test_selection(chinook: SqliteEndpoint) -> None:
    cat = chinook.reflect(Selection(include=("Invoice%",), exclude=("InvoiceLine",)))
    assert [t.id.name for t in cat.tables] == ["Invoice"]


def test_internal_tables_views_and_generated_columns(tmp_path: Path) -> None:
    ep = make(
        tmp_path / "x.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT UNIQUE, "
        "b INT, c INT GENERATED ALWAYS AS (b * 2) STORED, d INT AS (b + 1), e DEFAULT 'x')",
        "INSERT INTO t (id, a, b) VALUES (41, 'q', 1)",
        "DELETE FROM t",
        "CREATE TABLE _replikit_changes (x)",  # a SQLite CDC source's change log
        "CREATE VIEW v AS SELECT a FROM t",
        "CREATE INDEX t_expr ON t (lower(a), b DESC) WHERE b > 0",
        "CREATE UNIQUE INDEX t_b ON t (b)",
    )
    cat = ep.reflect()
    assert [t.id.name for t in cat.tables] == ["t"]
    assert [v.id.name for v in cat.views] == ["v"]
    t = cat.table("t")
    assert t.column("id").identity == Identity(
        kind="autoincrement", sequence="sqlite_sequence", next_value=42
    )
    assert t.column("c").generated == "b * 2 STORED"
    assert t.column("d").generated == "b + 1 VIRTUAL"
    assert t.column("e").default == "'x'"
    assert t.column("e").type == Type.other("")
    assert t.unique == (("a",),)
    by_name = {i.name: i for i in t.indexes}
    assert by_name["t_expr"].expressions == ("lower(a)", "b DESC")
    assert by_name["t_expr"].where == "b > 0"
    assert by_name["t_b"] == Index("t_b", ("b",), unique=True)


def test_parse_index_sql_with_quotes() -> None:
    sql = 'CREATE INDEX "i(" ON "t)" ("a,b", [c)], substr(x, 1, 2)) WHERE "a,b" = \'),\''
    assert parse_index_sql(sql) == (('"a,b"', "[c)]", "substr(x, 1, 2)"), "\"a,b\" = '),'")


names = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=20
).filter(lambda s: not s.lower().startswith(("sqlite_", "_replikit_")))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=names, columns=st.lists(names, min_size=1, max_size=4, unique_by=lambda s: s.lower()))
def test_arbitrary_identifiers_survive_create_and_reflection(
    tmp_path: Path, table: str, columns: list[str]
) -> None:
    path = tmp_path / "q.db"
    path.unlink(missing_ok=True)
    body = ", ".join(f"{DIALECT.quote(c)} TEXT" for c in columns)
    ep = make(
        path,
        f"CREATE TABLE {DIALECT.quote(table)} ({body}, PRIMARY KEY ({DIALECT.quote(columns[0])}))",
    )
    (got,) = ep.reflect().tables
    assert got.id.name == table
    assert got.column_names == tuple(columns)
    assert got.primary_key == (columns[0],)
    for word in ("select", "from", "order", "group", "table"):
        assert DIALECT.quote(word) == f'"{word}"'


def test_a_virtual_table_is_named_in_the_plan_not_left_out_silently(tmp_path: Path) -> None:
    """An FTS5 table keeps its rows in its module's storage, which a copy does not read: the
    plan names it with what to do; its shadow tables are not listed as tables."""
    ep = make(
        tmp_path / "v.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)",
        "CREATE VIRTUAL TABLE docs USING fts5(body)",
        "INSERT INTO docs VALUES ('hello world')",
    )
    catalog = ep.reflect()
    assert [t.id.name for t in catalog.tables] == ["t"]
    (problem,) = catalog.problems
    assert problem.startswith("docs: a virtual table (USING fts5) is not copied")
    assert "CREATE TABLE docs_rows AS SELECT * FROM docs" in problem

"""replikit's own tables in a user's database are left out of reflection by exact name, and
nothing else is: every table name the code creates is in the reserved list."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import replikit as rk
from replikit.endpoints._reserved import CDC_TABLES, CONTROL_TABLES, reserved

SRC = Path(rk.__file__).resolve().parent
_NAMED = re.compile(
    r"""^\s*[A-Z_]+\s*(?::\s*Final\s*)?=\s*f?["'](?:\{CONTROL_SCHEMA\}\.|replikit\.)?"""
    r"""(_?replikit_[a-z_]+)["']""",
    re.MULTILINE,
)


def test_every_table_name_the_code_defines_is_reserved():
    """Each module that creates a table of its own names it in a constant: every such name
    is in the reserved list (MongoDB's collections in that endpoint's own list; the files
    target's folder of apply exceptions is hidden as every ``_`` folder is)."""
    from replikit.endpoints.files._control import EXCEPTIONS as FILES_FOLDER
    from replikit.endpoints.mongodb.reflect import CONTROL as MONGODB

    named = {m[1] for p in SRC.rglob("*.py") for m in _NAMED.finditer(p.read_text())}
    assert len(named) >= 12, f"found only {sorted(named)}: the pattern is stale"
    assert named - (CONTROL_TABLES | CDC_TABLES | MONGODB | {FILES_FOLDER}) == set()


def test_reserved_names_are_exact():
    assert reserved("replikit_checkpoints", fold_case=False)
    assert reserved("REPLIKIT_CHECKPOINTS", fold_case=True)
    assert not reserved("REPLIKIT_CHECKPOINTS", fold_case=False)
    assert not reserved("replikit_checkpoints_old", fold_case=True)
    assert not reserved("Replikit_Orders", fold_case=True)


def test_a_sqlite_users_tables_named_like_replikits_are_copied(tmp_path):
    """``Replikit_Orders``, ``replikit_2024``, ``_replikit_notes`` and a user's trigger named
    ``_replikit_audit`` are the user's: reflected and copied. The CDC triggers and change
    tables of a SQLite source, and a target's control tables, are not."""
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        for name in ("Replikit_Orders", "replikit_2024", "_replikit_notes"):
            conn.execute(f'CREATE TABLE "{name}" (id INTEGER PRIMARY KEY, v TEXT)')
            conn.execute(f"INSERT INTO \"{name}\" VALUES (1, '{name}')")
        conn.execute("CREATE TABLE replikit_checkpoints (task_id TEXT PRIMARY KEY)")
        conn.execute("CREATE TABLE _replikit_changes (seq INTEGER PRIMARY KEY)")
        conn.execute('CREATE TRIGGER _replikit_audit AFTER INSERT ON "replikit_2024" '
                     "BEGIN SELECT 1; END")  # fmt: skip
        conn.execute('CREATE TRIGGER "_replikit_Replikit_Orders_ins" AFTER INSERT ON '
                     '"Replikit_Orders" BEGIN SELECT 1; END')  # fmt: skip
    conn.close()
    catalog = rk.endpoint(f"sqlite:///{src}").reflect()
    assert sorted(t.id.name for t in catalog.tables) == [
        "Replikit_Orders", "_replikit_notes", "replikit_2024"]  # fmt: skip
    assert [r.id.name for r in catalog.routines] == ["_replikit_audit"]
    stats = rk.copy(f"sqlite:///{src}", f"sqlite:///{tmp_path / 'out.db'}", progress=False)
    assert stats.total_rows == 3


def _user_and_control_tables(execute) -> None:
    execute("CREATE SCHEMA replikit")
    execute("CREATE TABLE replikit.replikit_checkpoints (task_id TEXT PRIMARY KEY)")
    execute("CREATE TABLE replikit.invoices (id INTEGER PRIMARY KEY)")
    execute('CREATE TABLE "Replikit_Orders" (id INTEGER PRIMARY KEY)')


def test_postgres_and_duckdb_leave_out_only_their_control_tables(pg_url, tmp_path):
    """Their control tables live in a ``replikit`` schema; a user's table in a schema of that
    name (a MySQL database called replikit, copied) is the user's and is reflected."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as pg:
        _user_and_control_tables(pg.execute)
    duck_url = f"duckdb:///{tmp_path / 'd.duckdb'}"
    with rk.endpoint(duck_url) as ep, ep._db.connected() as conn:
        _user_and_control_tables(conn.execute)
    for url in (pg_url, duck_url):
        with rk.endpoint(url) as ep:
            names = {str(t.id) for t in ep.reflect().tables}
        home = "public" if url == pg_url else "main"
        assert names == {"replikit.invoices", f"{home}.Replikit_Orders"}, url

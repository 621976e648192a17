"""``replikit validate`` reports every table of Chinook and Sakila validated after a copy
between every pair of engines (SQLite, PostgreSQL, MariaDB) (#10, "Done when").

Sources: Chinook from the bundled SQLite file and the MySQL script; Sakila from the PostgreSQL
and MySQL scripts; the third engine's source is a replikit copy of the first. Each source is
copied into a new database of each engine, then validated with the command line, which must
exit 0 with every table ``validated``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from test_mysql_datasets import _load_script

import replikit as rk
from datasets import load_sakila_postgres
from replikit.cli import main
from replikit.demo import sample_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ENGINES = ("sqlite", "postgres", "mariadb")


class _Dbs:
    """New databases on the session's servers, dropped at the end of the module."""

    def __init__(self, pg_server, mysql_server, tmp) -> None:
        self.pg, self.my, self.tmp = pg_server, mysql_server, tmp
        self.drops = []

    def new(self, engine: str) -> str:
        name = f"rk_vd_{uuid.uuid4().hex[:10]}"
        if engine == "sqlite":
            return f"sqlite:///{self.tmp / (name + '.db')}"
        server = self.pg if engine == "postgres" else self.my
        url = server.create_database(name)
        self.drops.append((server, name))
        return url

    def close(self) -> None:
        for server, name in self.drops:
            server.drop_database(name)


@pytest.fixture(scope="module")
def dbs(pg_server, mysql_server, tmp_path_factory) -> Iterator[_Dbs]:
    d = _Dbs(pg_server, mysql_server, tmp_path_factory.mktemp("validate-datasets"))
    yield d
    d.close()


@pytest.fixture(scope="module")
def sources(dbs, mysql_server, tmp_path_factory) -> dict[tuple[str, str], str]:
    """(dataset, engine) -> the URL of that dataset in that engine."""
    out = {}
    chinook = sample_database(tmp_path_factory.mktemp("chinook") / "chinook.db")
    out["chinook", "sqlite"] = f"sqlite:///{chinook}"
    out["chinook", "mariadb"] = _load_script(mysql_server, "Chinook", "chinook/Chinook_MySql.sql")
    out["chinook", "postgres"] = dbs.new("postgres")
    rk.copy(out["chinook", "sqlite"], out["chinook", "postgres"], progress=False)
    sakila_pg = dbs.new("postgres")
    load_sakila_postgres(sakila_pg)
    out["sakila", "postgres"] = sakila_pg
    out["sakila", "mariadb"] = _load_script(
        mysql_server, "sakila", "sakila/sakila-mysql-schema.sql", "sakila/sakila-mysql-data.sql"
    )
    out["sakila", "sqlite"] = dbs.new("sqlite")
    rk.copy(sakila_pg, out["sakila", "sqlite"], include=["public.%"], progress=False)
    yield out
    mysql_server.drop_database("Chinook")
    mysql_server.drop_database("sakila")


CASES = [(d, s, t) for d in ("chinook", "sakila") for s in ENGINES for t in ENGINES]


@pytest.mark.parametrize(("dataset", "src", "dst"), CASES, ids=["-".join(c) for c in CASES])
def test_every_table_validated_after_a_copy(dataset, src, dst, sources, dbs, capsys):
    source = sources[dataset, src]
    target = dbs.new(dst)
    include = ["public.%"] if src == "postgres" else []
    rk.copy(source, target, include=include, progress=False)
    args = ["validate", source, target, "--json", *(f"--include={p}" for p in include)]
    status = main(args)
    report = json.loads(capsys.readouterr().out)
    bad = {t["source"]: (t["state"], t.get("reason"), t["counts"]) for t in report["tables"]
           if t["state"] != "validated"}  # fmt: skip
    assert status == 0 and not bad, bad
    assert len(report["tables"]) >= (11 if dataset == "chinook" else 16)

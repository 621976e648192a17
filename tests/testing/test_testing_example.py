"""examples/pytest-clone runs with plain ``pytest`` (no conftest.py) against a PostgreSQL and
a MariaDB Sakila, its throwaway PostgreSQL being this session's server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from datasets import REPO, script

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EXAMPLE = REPO / "examples" / "pytest-clone"


@pytest.fixture(scope="module")
def sakila_postgres(pg_server):
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is needed to load Sakila (apt-get install postgresql-client)")
    name = "rk_example_sakila"
    pg_server.drop_database(name)
    url = pg_server.create_database(name)
    for part in ("sakila-postgres-schema.sql", "sakila-postgres-data-copy.sql"):
        subprocess.run(
            [psql, "-q", "-v", "ON_ERROR_STOP=0", "-d", url],
            input=script(f"sakila/{part}"),
            check=True,
            capture_output=True,
        )
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def sakila_mariadb(mysql_server):
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        pytest.fail("the mariadb (or mysql) client is needed to load Sakila")
    u = make_url(mysql_server.admin_url)
    mysql_server.drop_database("sakila")  # the script creates and uses database sakila
    for part in ("sakila-mysql-schema.sql", "sakila-mysql-data.sql"):
        subprocess.run(
            [
                *(client, "-h", u.host, "-P", str(mysql_server.port), "-u", u.username or "root"),
                *(f"--password={u.password or ''}", "--default-character-set=utf8mb4"),
            ],
            input=script(f"sakila/{part}"),
            check=True,
            capture_output=True,
        )
    yield mysql_server.url("sakila")
    mysql_server.drop_database("sakila")


def _run_example(
    source: str | None, pg_server, cache: Path, *args: str
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "REPLIKIT_TEST_PG_URL": pg_server.admin_url,  # the example's throwaway server
        "REPLIKIT_CACHE_DIR": str(cache),
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("REPLIKIT_MASK_SECRET", None)  # the example's ini option gives its default
    env.pop("SAKILA_URL", None)
    if source is not None:
        env["SAKILA_URL"] = source
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_the_example_project_passes(request, pg_server, tmp_path, engine):
    source = request.getfixturevalue(f"sakila_{engine}")
    run = _run_example(source, pg_server, tmp_path / "cache")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
    assert not (EXAMPLE / ".replikit_cache").exists()
    # a second session takes the rows from the cache; --replikit-refresh reads them again
    again = _run_example(source, pg_server, tmp_path / "cache", "-k", "returning")
    assert again.returncode == 0, again.stdout[-3000:]


def test_the_example_errors_when_the_source_is_unset(pg_server, tmp_path):
    # the test errors with the cause; it is not skipped
    run = _run_example(None, pg_server, tmp_path, "-k", "returning_rentals", "--tb=line")
    assert run.returncode == 1 and "1 error" in run.stdout
    assert "environment variable SAKILA_URL is not set" in run.stdout
    run = _run_example("", pg_server, tmp_path, "-k", "returning_rentals", "--tb=line")
    assert run.returncode == 1 and "no clone source ('${SAKILA_URL}' is empty)" in run.stdout

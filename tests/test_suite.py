"""The suite itself: it runs from a clone alone, a hang fails fast, CI runs what README says."""

import re
import tomllib
from pathlib import Path

import pytest

from datasets import CHINOOK_SQLITE, DATA, REPO, script

README_COMMAND = re.compile(r"^# 2\..*?\n(?:#.*\n)*(?P<cmd>[^#\n].*)$", re.M)
CI_BLOCK = re.compile(r"^# --- the README's test command.*\n(?P<cmd>.*)\n# ---$", re.M)


def test_ci_runs_the_readme_test_command():
    readme = README_COMMAND.search((REPO / "README.md").read_text())
    ci = CI_BLOCK.search((REPO / ".ci" / "run").read_text())
    assert readme and ci
    assert ci["cmd"] == readme["cmd"]


def test_a_hung_test_fails_after_the_configured_timeout(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout"), "pytest-timeout is not installed"
    assert 0 < float(pytestconfig.getini("timeout")) <= 300


def test_the_test_group_installs_what_the_suite_runs():
    groups = tomllib.loads((REPO / "pyproject.toml").read_text())["dependency-groups"]
    test = " ".join(str(d) for d in groups["test"])
    assert "pytest-timeout" in test and "mysqlclient" in test
    import MySQLdb  # noqa: F401 - the mysqlclient variants run, they are not skipped


@pytest.mark.parametrize(
    "name",
    [
        "chinook/Chinook_MySql.sql",
        "chinook/Chinook_PostgreSql.sql",
        "sakila/sakila-mysql-schema.sql",
        "sakila/sakila-mysql-data.sql",
        "sakila/sakila-postgres-schema.sql",
        "sakila/sakila-postgres-data-copy.sql",
    ],
)
def test_sample_data_sets_are_in_the_repository(name):
    assert DATA.is_relative_to(REPO)
    assert len(script(name)) > 5000
    assert CHINOOK_SQLITE.read_bytes().startswith(b"SQLite format 3\x00")


def test_no_test_reads_a_path_outside_the_repository():
    outside = re.compile(r"""["'](/work/|/home/|/tmp/)|parents\[[3-9]\]|["']shared["']""")
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for path in (REPO / "tests").rglob("*.py")
        if path.name != Path(__file__).name
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if outside.search(line)
    ]
    assert found == []

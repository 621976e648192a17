"""The plugin's options: --replikit-source over the ini option, ${VAR} expansion; xdist workers
clone side by side from one shared cache."""

import os
import subprocess
import sys

import pytest

import replikit as rk
from datasets import REPO
from replikit.demo import sample_database
from replikit.testing.plugin import expand_env

TEST = """
def test_clone_from_the_configured_source(replikit_clone, replikit_source):
    clone = replikit_clone(tables=["Genre"])
    assert clone.rows == {"Genre": 25}
    assert replikit_source.endswith("chinook.db")
"""


def test_expand_env():
    env = {"HOST": "db1", "EMPTY": ""}
    assert expand_env("postgresql://app@${HOST}/shop", env) == "postgresql://app@db1/shop"
    assert expand_env("${MISSING:-sqlite:///x.db}", env) == "sqlite:///x.db"
    assert expand_env("a${EMPTY}b $HOST", env) == "ab $HOST"  # only ${...} expands
    with pytest.raises(rk.ConfigError, match="environment variable MISSING is not set"):
        expand_env("postgresql://${MISSING}/shop", env)


def _pytest(tmp_path, *args, ini=None, **env):
    (tmp_path / "test_configured.py").write_text(TEST)
    if ini is not None:
        (tmp_path / "pytest.ini").write_text(ini)
    environ = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_flag_wins_over_the_ini_option(tmp_path):
    db = sample_database(tmp_path / "chinook.db")
    ini = "[pytest]\nreplikit_source = sqlite:///${NOT_SET_ANYWHERE}/x.db\n"
    run = _pytest(tmp_path, "--replikit-source", f"sqlite:///{db}", ini=ini)
    assert run.returncode == 0, run.stdout + run.stderr
    run = _pytest(tmp_path, ini=ini)  # the ini option alone: its variable is not set
    assert run.returncode == 1 and "environment variable NOT_SET_ANYWHERE" in run.stdout


def test_the_ini_option_expands_the_environment(tmp_path):
    sample_database(tmp_path / "chinook.db")
    ini = "[pytest]\nreplikit_source = sqlite:///${DATA_DIR}/chinook.db\n"
    run = _pytest(tmp_path, ini=ini, DATA_DIR=str(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr


def test_xdist_workers_each_get_their_own_copies(tmp_path):
    db = sample_database(tmp_path / "chinook.db")
    (tmp_path / "test_many.py").write_text(
        "import pytest, sqlite3\n"
        "@pytest.mark.parametrize('n', range(6))\n"
        "def test_copy(replikit_clone, n):\n"
        "    clone = replikit_clone(tables=['Genre'])\n"
        "    with sqlite3.connect(clone.endpoint.path) as conn:\n"
        "        assert conn.execute('SELECT count(*) FROM Genre').fetchone() == (25,)\n"
        "        conn.execute('DELETE FROM Genre')\n"
    )
    run = _pytest(tmp_path, "-n", "2", "--replikit-source", f"sqlite:///{db}", "test_many.py")
    assert run.returncode == 0 and "6 passed" in run.stdout, run.stdout + run.stderr
    assert len(list((tmp_path / ".replikit_cache").glob("*.entry"))) == 1  # one shared entry

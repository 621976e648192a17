"""Every example in README.md and the docs runs (#13 item 7).

Every ```python block runs, and so does every ```bash block of ``replikit`` commands (with
``export`` lines setting their environment): each command must exit 0, or the status its
comment names (``# refused, exit 2``). The other shell blocks are the install and test
commands, which must be the ones CI runs (.ci/run). Transcripts with output are ```console,
synopses ```text: shown, not run.

Each block runs in a fresh working folder that holds ``chinook.db`` (the bundled Chinook sample,
SQLite). A block that needs a server names it one of two ways:

- ``PG_URL`` / ``MYSQL_URL``: variables set to a fresh, empty database of the test servers
  (tests/fix_pg.py, tests/fix_mysql.py);
- one of the example URLs in ``EXAMPLE_URLS`` below, so the page shows the URL a reader would
  write: the test replaces it with a fresh database of the test server, empty or holding the
  Chinook sample (loaded with replikit) for an example that reads from it.

There are no show-only Python blocks: a block marked ``notest`` fails the suite. A block whose
first line is ``# test_<name>.py`` is a pytest test module (docs/testing-your-app.md): it is
saved under that name and run with ``pytest``, the replikit plugin's throwaway PostgreSQL being
the test server, and every test in it must pass.
"""

import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import replikit as rk
from replikit.demo import sample_database

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.M | re.S)
SHELL = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# example URL -> (server fixture, what the database holds)
EXAMPLE_URLS = {
    "postgresql://app@localhost/shop": ("pg_server", "empty"),
    "postgresql://app@db1/shop": ("pg_server", "chinook"),
    "postgresql://app@db2/shop": ("pg_server", "empty"),
    "mysql://app@db1/shop": ("mysql_server", "chinook"),
    "mysql://app@db2/shop": ("mysql_server", "empty"),
    "postgresql://app@db/shop": ("pg_server", "people"),  # identifiers.md: a name collision
    "mongodb://app@mongo1/shop": ("nx_server", "empty"),  # mongodb.md (tests/fix_mongo.py)
    "mongodb://app@mongo2/shop": ("nx_server", "empty"),
}
SEEDS = {
    "people": [
        'CREATE TABLE people ("ID" int PRIMARY KEY, id text)',
        "INSERT INTO people VALUES (1, 'legacy-1'), (2, 'legacy-2')",
    ],
}
# shell blocks that install and test replikit: their commands are what .ci/run runs
SETUP_BLOCKS = {"README.md-sh1", "docs/testing.md-sh1"}


def _blocks():
    for path in PAGES:
        for n, m in enumerate(FENCE.finditer(path.read_text()), 1):
            name = f"{path.relative_to(ROOT)}-{n}"
            yield pytest.param(m.group(1).strip(), m.group(2), id=name)


def _shell_blocks():
    for path in PAGES:
        for n, m in enumerate(SHELL.finditer(path.read_text()), 1):
            yield pytest.param(m.group(1), id=f"{path.relative_to(ROOT)}-sh{n}")


def _database(request, fixture: str, content: str, chinook: Path) -> str:
    """A fresh database on the test server ``fixture`` holding ``content`` (``empty``,
    ``chinook`` copied in with replikit, or a ``SEEDS`` entry); dropped after the test."""
    server = request.getfixturevalue(fixture)
    name = f"rk_doc_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name)
    request.addfinalizer(lambda: server.drop_database(name))
    if content == "chinook":
        rk.Task(f"sqlite:///{chinook}", url, settings=rk.TaskSettings(progress=False)).run()
    elif content in SEEDS:
        with server.connect(name) as conn:
            for statement in SEEDS[content]:
                conn.execute(statement)
    return url


def _with_servers(code: str, request, chinook: Path) -> str:
    """``code`` with each example URL replaced by a fresh test-server database."""
    for example, (fixture, content) in EXAMPLE_URLS.items():
        if example in code:
            code = code.replace(example, _database(request, fixture, content, chinook))
    return code


@pytest.mark.parametrize(("info", "code"), list(_blocks()))
def test_doc_example_runs(info, code, tmp_path, monkeypatch, request):
    assert "notest" not in info, "every Python example runs: give it a server (module docs)"
    chinook = sample_database(tmp_path / "chinook.db")
    code = _with_servers(code, request, chinook)  # first: servers start in the real temp dir
    pg_url = request.getfixturevalue("pg_url") if "PG_URL" in code else None
    mysql_url = request.getfixturevalue("mysql_url") if "MYSQL_URL" in code else None
    module = re.match(r"# (test_\w+\.py)\n", code)
    if module:
        _run_test_module(module[1], code, tmp_path, request)
        return
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the examples' mkdtemp() go too
    namespace = {"__name__": "__doc__", "PG_URL": pg_url, "MYSQL_URL": mysql_url}
    exec(compile(code, "<doc>", "exec"), namespace)


def _run_test_module(name: str, code: str, tmp_path: Path, request) -> None:
    """Run a page's pytest test module in a pytest of its own (the plugin's fixtures)."""
    (tmp_path / name).write_text(code)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if "postgresql" in code:  # the module's throwaway server: this session's
        env["REPLIKIT_TEST_PG_URL"] = request.getfixturevalue("pg_server").admin_url
    if '"mysql"' in code:
        env["REPLIKIT_TEST_MYSQL_URL"] = request.getfixturevalue("mysql_server").admin_url
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", name],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr


@pytest.mark.parametrize("block", list(_shell_blocks()))
def test_doc_commands_run(block, tmp_path, request):
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    if request.node.callspec.id in SETUP_BLOCKS:
        ci = (ROOT / ".ci" / "run").read_text()
        setup = [ln.split("  #")[0].strip() for ln in lines if "--group dev" in ln]
        assert setup and all(cmd in ci for cmd in setup), f"not what .ci/run runs: {setup}"
        return
    assert all(re.match(r"(replikit|export) ", ln) for ln in lines), (
        "a shell example runs replikit commands only; show other shell as ```text or ```console"
    )
    block = _with_servers(block, request, sample_database(tmp_path / "chinook.db"))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    for line in block.splitlines():
        args = shlex.split(line, comments=True)
        if not args:
            continue
        if args[0] == "export":
            env.update(arg.split("=", 1) for arg in args[1:])
            continue
        expected = re.search(r"#.*\bexit (\d+)", line)
        proc = subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == int(expected[1] if expected else 0), (
            f"{line}\nexit {proc.returncode}\n{proc.stderr[-2000:]}"
        )


def test_every_page_is_covered():
    """README and every page under docs/ (also those added later, in subfolders) are read."""
    pages = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/quickstart.md", "docs/api/index.md"} <= pages
    with_code = {p.name for p in PAGES if FENCE.search(p.read_text())}
    assert {"README.md", "index.md", "cdc.md", "mysql.md", "quickstart.md"} <= with_code

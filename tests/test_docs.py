"""Every ```python block in README.md and the docs runs (#13 item 7).

Each block runs in a fresh working folder that holds ``chinook.db`` (the bundled Chinook sample,
SQLite). A block that needs a server names it one of two ways:

- ``PG_URL`` / ``MYSQL_URL``: variables set to a fresh, empty database of the test servers
  (tests/fix_pg.py, tests/fix_mysql.py);
- one of the example URLs in ``EXAMPLE_URLS`` below, so the page shows the URL a reader would
  write: the test replaces it with a fresh database of the test server, empty or holding the
  Chinook sample (loaded with replikit) for an example that reads from it.

There are no show-only Python blocks: a block marked ``notest`` fails the suite.
"""

import re
import uuid
from pathlib import Path

import pytest

import replikit as rk
from replikit.demo import sample_database

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.M | re.S)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# example URL -> (server fixture, what the database holds)
EXAMPLE_URLS = {
    "postgresql://app@localhost/shop": ("pg_server", "empty"),
    "postgresql://app@db1/shop": ("pg_server", "chinook"),
    "postgresql://app@db2/shop": ("pg_server", "empty"),
    "mysql://app@db1/shop": ("mysql_server", "chinook"),
    "mysql://app@db2/shop": ("mysql_server", "empty"),
}


def _blocks():
    for path in PAGES:
        for n, m in enumerate(FENCE.finditer(path.read_text()), 1):
            name = f"{path.relative_to(ROOT)}-{n}"
            yield pytest.param(m.group(1).strip(), m.group(2), id=name)


def _database(request, fixture: str, chinook: Path | None) -> str:
    """A fresh database on the test server ``fixture`` (with ``chinook`` copied in, if given);
    dropped after the test."""
    server = request.getfixturevalue(fixture)
    name = f"rk_doc_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name)
    request.addfinalizer(lambda: server.drop_database(name))
    if chinook is not None:
        rk.Task(f"sqlite:///{chinook}", url, settings=rk.TaskSettings(progress=False)).run()
    return url


@pytest.mark.parametrize(("info", "code"), list(_blocks()))
def test_doc_example_runs(info, code, tmp_path, monkeypatch, request):
    assert "notest" not in info, "every Python example runs: give it a server (module docs)"
    chinook = sample_database(tmp_path / "chinook.db")
    # servers first: they start under the real temp folder
    for example, (fixture, content) in EXAMPLE_URLS.items():
        if example in code:
            url = _database(request, fixture, chinook if content == "chinook" else None)
            code = code.replace(example, url)
    pg_url = request.getfixturevalue("pg_url") if "PG_URL" in code else None
    mysql_url = request.getfixturevalue("mysql_url") if "MYSQL_URL" in code else None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the examples' mkdtemp() go too
    namespace = {"__name__": "__doc__", "PG_URL": pg_url, "MYSQL_URL": mysql_url}
    exec(compile(code, "<doc>", "exec"), namespace)


def test_every_page_is_covered():
    """README and every page under docs/ (also those added later, in subfolders) are read."""
    pages = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/quickstart.md", "docs/api/index.md"} <= pages
    with_code = {p.name for p in PAGES if FENCE.search(p.read_text())}
    assert {"README.md", "index.md", "cdc.md", "mysql.md", "quickstart.md"} <= with_code

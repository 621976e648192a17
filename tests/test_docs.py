"""Every ```python block in README.md and docs/ runs (blocks marked ``notest`` are shown only)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.M | re.S)


def _blocks():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, m in enumerate(FENCE.finditer(path.read_text()), 1):
            if "notest" not in m.group(1):
                yield pytest.param(m.group(2), id=f"{path.name}-{n}")


@pytest.mark.parametrize("code", list(_blocks()))
def test_doc_example_runs(code, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    pg_url = request.getfixturevalue("pg_url") if "PG_URL" in code else None
    mysql_url = request.getfixturevalue("mysql_url") if "MYSQL_URL" in code else None
    namespace = {"__name__": "__doc__", "PG_URL": pg_url, "MYSQL_URL": mysql_url}
    exec(compile(code, "<doc>", "exec"), namespace)

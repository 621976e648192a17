"""The docs site builds with ``mkdocs build --strict`` and reads right in a browser (#13 item 7).

``--strict`` turns every warning into a failure: a broken link or anchor, a page in docs/
missing from the ``nav`` of mkdocs.yml, a mkdocstrings object that does not resolve. The
failure message lists those warnings, each naming the page and the link.
"""

import functools
import os
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site into a temp folder; fail with mkdocs' warnings if it does not build."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "JUPYTER_PLATFORM_DIRS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # a warning, or a page it lists on the lines after it ("  - new-page.md")
    problems = [
        line
        for line in proc.stderr.splitlines()
        if re.match(r"\s*(WARNING|ERROR)\b", line) or re.match(r"\s+- \S", line)
    ]
    assert proc.returncode == 0 and not problems, (
        "mkdocs build --strict failed (fix the link or anchor, or add a new docs page to the "
        "nav of mkdocs.yml):\n" + "\n".join(problems or proc.stderr.splitlines()[-30:])
    )
    return out


def test_site_builds_strict_with_every_page(site):
    pages = {p.relative_to(ROOT / "docs").with_suffix("") for p in (ROOT / "docs").rglob("*.md")}
    built = {p.parent.relative_to(site) for p in site.rglob("index.html")}
    missing = {p for p in pages if (p if p.name != "index" else p.parent) not in built}
    assert not missing, f"docs pages with no page on the site: {sorted(map(str, missing))}"
    assert (site / "notebooks" / "quickstart" / "index.html").exists()
    assert (site / "objects.inv").exists()  # the API inventory mkdocstrings writes


@pytest.fixture(scope="module")
def served(site):
    """The built site over HTTP on a loopback port, as a person would browse it."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _loaded_from_elsewhere(browser, served):
    """Resources the page loaded from any host but the site's own (fonts, CDNs)."""
    names = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return [n for n in names if not n.startswith(served)]


def test_a_person_finds_the_nav_and_the_api_docs(browser, served):
    browser.get(f"{served}/")
    assert browser.find_element("tag name", "h1").text == "replikit"
    nav = browser.find_element("css selector", "nav.md-nav--primary")
    assert nav.is_displayed()
    for entry in ("Quickstart", "Change data capture", "API reference", "Task and results"):
        assert entry in nav.text, f"{entry!r} not in the navigation: {nav.text!r}"
    assert _loaded_from_elsewhere(browser, served) == []  # works offline, calls no one

    nav.find_element("link text", "Task and results").click()
    assert browser.current_url.endswith("/api/task/")
    assert browser.find_element("tag name", "h1").text == "Task and results"
    task = browser.find_element("id", "replikit.task.Task")
    assert task.is_displayed() and "Task" in task.text
    body = browser.find_element("css selector", "article").text
    # docstrings as a person reads them: summary, argument tables, no Sphinx role markup
    assert "A replication task: source, target, migration type, mappings and settings." in body
    assert "Raises:" in body or "RAISES" in body.upper()
    assert ":class:" not in body and ":meth:" not in body

    # a role in a docstring became a link to the object's own entry on another page
    link = browser.find_element("css selector", "article a[href*='#replikit.errors.StoppedError']")
    link.click()
    assert "/api/errors/" in browser.current_url
    assert browser.find_element("id", "replikit.errors.StoppedError").is_displayed()


def test_the_notebook_page_shows_its_outputs(browser, served):
    browser.get(f"{served}/notebooks/quickstart/")
    text = browser.find_element("tag name", "body").text
    assert "Plan: 1 table, 9 columns: 1 lossy, 0 unsupported" in text  # the plan's HTML
    assert "11 tables" in text and "15,607" in text  # the statistics
    assert "10 identical" in text  # the comparison after the target was changed
    assert _loaded_from_elsewhere(browser, served) == []

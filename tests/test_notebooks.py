"""The notebooks in docs/notebooks/ run, and are committed with their outputs (#13 item 7).

Each notebook is executed with nbclient in a fresh kernel (a scratch working folder), as
``docs_tools/execute_notebooks.py`` does to refresh the committed outputs. The committed file
must carry the outputs of one top-to-bottom run, so the docs site shows what the code prints.
"""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "docs" / "notebooks").glob("*.ipynb"))


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _texts(cell):
    """Every text the cell shows: streams, and the HTML and plain forms of its results."""
    for out in cell.outputs:
        yield out.get("text", "")
        yield from (v for k, v in out.get("data", {}).items() if k.startswith("text/"))


@pytest.fixture
def kernel_env(monkeypatch):
    # jupyter_core warns (DeprecationWarning, an error here) unless told to use platformdirs
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")


def test_there_is_a_notebook():
    assert [p.name for p in NOTEBOOKS] == ["duckdb.ipynb", "quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_the_outputs_of_one_run(path):
    cells = _code_cells(nbformat.read(path, as_version=4))
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name} is not committed as executed top to bottom (execution counts {counts}); "
        "run: python docs_tools/execute_notebooks.py"
    )
    assert all(out.get("output_type") != "error" for c in cells for out in c.outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on a failure
    committed = _code_cells(nbformat.read(path, as_version=4))
    for fresh, old in zip(_code_cells(nb), committed, strict=True):
        assert bool(fresh.outputs) == bool(old.outputs), (
            f"cell {fresh.execution_count} of {path.name} shows something different now; "
            "run: python docs_tools/execute_notebooks.py"
        )
    shown = "\n".join(t for c in _code_cells(nb) for t in _texts(c))
    if path.name == "quickstart.ipynb":  # the plan, the copy's progress, statistics, comparison
        assert "lossy" in shown and "Track" in shown
        assert "<Statistics 11 tables: 11 Table completed; 15,607 rows>" in shown
        assert "<Comparison 11 tables compared: 11 identical>" in shown
        assert "10 identical, 1 different (Artist)" in shown
        progress = _code_cells(nb)[3]
        assert progress.source.strip() == "stats = task.run()"
        assert progress.outputs, "task.run() showed no progress in the notebook"
    if path.name == "duckdb.ipynb":  # Chinook copied into DuckDB (progress), queried, compared
        assert "<Statistics 11 tables: 11 Table completed; 15,607 rows>" in shown
        assert _code_cells(nb)[2].outputs, "task.run() showed no progress in the notebook"
        assert "Rock" in shown and "1297" in shown
        assert "<Comparison 11 tables compared: 11 identical>" in shown
        assert "Steve Harris" in shown  # the Parquet copy, queried with DuckDB
    assert list(tmp_path.iterdir()) == []  # the notebook cleans up after itself

"""Execute the docs notebooks in place, so their committed outputs are today's.

Run from the repository root after changing a notebook or what it shows::

    python docs_tools/execute_notebooks.py            # every docs/notebooks/*.ipynb
    python docs_tools/execute_notebooks.py docs/notebooks/quickstart.ipynb

``tests/test_notebooks.py`` executes the same notebooks in CI and checks that the committed
files carry their outputs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def execute(path: Path, *, timeout: int = 120) -> nbformat.NotebookNode:
    """Run every cell of the notebook at ``path`` in a fresh kernel, in a scratch folder."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="replikit-nb-") as cwd:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}}
        ).execute()
    return nb


def main(argv: list[str]) -> int:
    """Execute the notebooks named in ``argv`` (default: all) and write them back."""
    paths = [Path(a) for a in argv] or sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
    for path in paths:
        nbformat.write(execute(path), path)
        print(f"executed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

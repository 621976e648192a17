"""The sample databases the tests load, kept in the repository (see tests/data/README.md).

Paths resolve from this file, so a clone of the repository alone runs every test.
"""

from __future__ import annotations

import gzip
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
# the Chinook SQLite file bundled with the package (what `replikit demo` copies)
CHINOOK_SQLITE = REPO / "src" / "replikit" / "data" / "chinook.sqlite"


def script(relative: str) -> bytes:
    """The SQL text of ``tests/data/<relative>`` (stored gzip-compressed as ``<relative>.gz``)."""
    path = DATA / f"{relative}.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the sample data set is missing from the checkout")
    return gzip.decompress(path.read_bytes())

"""The sample databases the tests load, kept in the repository (see tests/data/README.md).

Paths resolve from this file, so a clone of the repository alone runs every test.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

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


def load_sakila_postgres(url: str) -> str:
    """Load the PostgreSQL port of Sakila into the (empty) database ``url`` with psql; ``url``.

    ``ON_ERROR_STOP=0``: the port's few statements for extensions the test server may lack
    fail alone, as in a user's own ``psql -f``.
    """
    import shutil
    import subprocess

    import pytest

    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is needed to load Sakila (apt-get install postgresql-client)")
    for name in ("sakila-postgres-schema.sql", "sakila-postgres-data-copy.sql"):
        subprocess.run(
            [psql, "-q", "-v", "ON_ERROR_STOP=0", "-d", url],
            input=script(f"sakila/{name}"),
            check=True,
            capture_output=True,
        )
    return url


def canonical(value: Any) -> Any:
    """A value as round trips compare it: decimals normalized, lists as tuples."""
    if isinstance(value, Decimal):
        return value.normalize() if value.is_finite() else str(value)
    if isinstance(value, list):
        return tuple(canonical(x) for x in value)
    return value


def rows_of(ep: Any, table: Any, columns: Sequence[str] | None = None) -> list[tuple[Any, ...]]:
    """Every row of ``table`` read through ``ep``'s own reader (canonical values, sorted);
    only ``columns`` when given."""
    reader = ep.reader([table])
    (schema,) = reader.tables
    idx = [schema.column_names.index(c) for c in columns] if columns else None
    out = []
    for unit in reader.units(schema):
        for batch in reader.read(unit):
            for row in batch.rows:
                vals = [row[i] for i in idx] if idx else row
                out.append(tuple(canonical(v) for v in vals))
    return sorted(out, key=repr)


def round_trip_through(pg_url: str, middle_url: str) -> tuple[Any, Any]:
    """``public`` of ``pg_url`` -> ``middle_url`` -> schema ``back`` of the same PostgreSQL
    database; the two plans."""
    import replikit as rk

    with rk.endpoint(pg_url) as pg, rk.endpoint(middle_url) as middle:
        there = rk.Task(pg, middle, mappings=rk.Mappings().include("public", "%"))
        plan_there = there.plan()
        there.run()
        renamed = rk.Mappings().include("public", "%").rename_schema("public", "back")
        back = rk.Task(middle, pg, mappings=renamed)
        plan_back = back.plan()
        back.run()
    return plan_there, plan_back

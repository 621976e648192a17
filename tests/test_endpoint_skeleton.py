"""Every endpoint family has the same skeleton: the same module names for the same roles
(#9 item 3), so a reader who knows one family finds their way in the others."""

from __future__ import annotations

from pathlib import Path

import pytest

import replikit as rk
from replikit.endpoints.base import CdcSource, SupportsApply

PACKAGES = Path(rk.__file__).parent / "endpoints"
FAMILIES = sorted(p.name for p in PACKAGES.iterdir() if (p / "__init__.py").exists())
URLS = {
    "postgres": "postgresql://u@127.0.0.1:1/db",
    "mysql": "mysql://u@127.0.0.1:1/db",
    "sqlite": "sqlite:///:memory:",
    "duckdb": "duckdb:///:memory:",
    "files": "memory://rk-skeleton",
    "mongodb": "mongodb://127.0.0.1:1/db",
}
# role -> module: connection (and driver error translation), dialect (types, names, limits),
# reflection, full-load source and target, DDL
SKELETON = ("_connect", "_dialect", "_ddl", "reflect", "source", "target")


def test_every_family_is_listed() -> None:
    assert sorted(URLS) == FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_the_same_modules_for_the_same_roles(family: str) -> None:
    modules = {p.stem for p in (PACKAGES / family).glob("*.py")}
    missing = [m for m in SKELETON if m not in modules]
    assert not missing, f"{family} lacks {missing}"
    endpoint = rk.endpoint(URLS[family])
    if isinstance(endpoint, CdcSource):
        assert "cdc" in modules, f"{family} reads changes but has no cdc module"
    if isinstance(endpoint, SupportsApply):
        assert "apply" in modules, f"{family} applies changes but has no apply module"

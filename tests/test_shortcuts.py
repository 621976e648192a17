"""``replikit.copy``: the one-call full load for notebooks and scripts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import replikit as rk
from replikit.demo import sample_database


def test_copy_loads_every_table_and_returns_the_statistics(tmp_path: Path) -> None:
    src = sample_database(tmp_path / "chinook.db")
    stats = rk.copy(f"sqlite:///{src}", f"duckdb:///{tmp_path / 'out.duckdb'}", progress=False)
    assert len(stats) == 11
    assert all(t.state is rk.TableState.COMPLETED for t in stats)
    assert stats.total_rows == 15_607
    assert "<table" in stats._repr_html_()


def test_copy_takes_patterns_and_settings(tmp_path: Path) -> None:
    src = sample_database(tmp_path / "chinook.db")
    out = tmp_path / "out.db"
    stats = rk.copy(
        f"sqlite:///{src}",
        f"sqlite:///{out}",
        include=["Artist", "Album"],
        parallel_tables=1,
        progress=False,
    )
    assert sorted(t.table for t in stats) == ["Album", "Artist"]
    with sqlite3.connect(out) as conn:
        assert conn.execute('SELECT count(*) FROM "Album"').fetchone() == (347,)
    conn.close()


def test_copy_refuses_an_unknown_setting_by_name(tmp_path: Path) -> None:
    src = sample_database(tmp_path / "chinook.db")
    with pytest.raises(rk.ConfigError, match="'paralel_tables'.*parallel_tables"):
        rk.copy(f"sqlite:///{src}", f"sqlite:///{tmp_path / 'out.db'}", paralel_tables=2)
    with pytest.raises(rk.ConfigError, match="not both"):
        rk.copy(f"sqlite:///{src}", "sqlite://", include=["Artist"], mappings=rk.Mappings())

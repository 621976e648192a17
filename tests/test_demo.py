"""``replikit demo`` leaves no folder behind unless ``--dir`` is given (#13 item 7)."""

import tempfile

import pytest

from replikit.cli import main


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Point tempfile (and so the demo's default folder) at an empty folder; chdir to another."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return temp, cwd


@pytest.mark.parametrize("cdc", [False, True], ids=["full-load", "cdc"])
def test_demo_without_dir_leaves_nothing_behind(scratch, capsys, cdc):
    temp, cwd = scratch
    assert main(["demo", *([] if cdc else ["--no-cdc"])]) == 0
    out = capsys.readouterr().out
    assert "every table identical" in out
    assert "removed at the end" in out  # the narration says the databases will not stay
    assert list(temp.iterdir()) == []
    assert list(cwd.iterdir()) == []


def test_demo_with_dir_keeps_the_databases(scratch, tmp_path, capsys):
    temp, _ = scratch
    where = tmp_path / "kept"
    assert main(["demo", "--dir", str(where), "--no-cdc"]) == 0
    assert "removed at the end" not in capsys.readouterr().out
    assert {p.name for p in where.iterdir()} >= {"chinook-source.db", "chinook-target.db"}
    assert list(temp.iterdir()) == []

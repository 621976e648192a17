"""The replikit command: exit codes, JSON shapes, errors without tracebacks or passwords."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from replikit.cli import main
from replikit.demo import sample_database


@pytest.fixture
def chinook(tmp_path):
    return f"sqlite:///{sample_database(tmp_path / 'chinook.db')}"


def test_copy_json_summary(chinook, tmp_path, capsys):
    out_db = tmp_path / "out.db"
    status = main(
        [
            "copy",
            chinook,
            f"sqlite:///{out_db}",
            "--include",
            "Album",
            "--include",
            "Artist",
            "--json",
        ]
    )
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True
    assert {t["table"]: t["full_load_rows"] for t in result["tables"]} == {
        "Album": 347,
        "Artist": 275,
    }
    assert all(t["state"] == "Table completed" for t in result["tables"])
    with sqlite3.connect(out_db) as conn:
        assert conn.execute('select count(*) from "Album"').fetchone() == (347,)


def test_plan_json_shape(chinook, tmp_path, capsys):
    assert main(["plan", chinook, f"sqlite:///{tmp_path / 'x.db'}", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {"tables", "problems"} <= plan.keys()
    album = next(t for t in plan["tables"] if t["source"] == "Album")
    col = album["columns"][0]
    assert set(col) >= {"name", "source_type", "target_type", "fidelity", "reason"}
    assert col["fidelity"] in {"exact", "lossy", "unsupported"}
    assert not (tmp_path / "x.db").exists() or sqlite3.connect(tmp_path / "x.db").execute(
        "select count(*) from sqlite_master where type='table'"
    ).fetchone() == (0,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["copy", "oracle://u:hunter2@h/db", "sqlite:///x.db"], "unknown URL scheme 'oracle'"),
        (["copy", "sqlite:///does/not/exist.db", "sqlite:///x.db"], "exist"),
        (["copy", "postgresql://u:hunter2@127.0.0.1:1/db", "sqlite:///x.db"], "127.0.0.1"),
    ],
)
def test_bad_input_exits_2_without_traceback_or_password(
    args, message, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert "hunter2" not in err


def test_pattern_selecting_nothing_exits_2(chinook, tmp_path, capsys):
    assert main(["copy", chinook, f"sqlite:///{tmp_path / 'o.db'}", "--include", "nope%"]) == 2
    assert "'nope%' selects no table" in capsys.readouterr().err


def test_wrong_password_names_the_problem(pg_url, pg_password_user, capsys, tmp_path):
    # replikit_pw must log in with its password (tests/fix_pg.py); the database exists
    user, _ = pg_password_user
    url = pg_url.replace("postgres@", f"{user}:hunter2@")
    assert main(["plan", url, f"sqlite:///{tmp_path / 'o.db'}"]) == 2
    err = capsys.readouterr().err
    assert "login refused for user 'replikit_pw'" in err
    assert "check the user name and password" in err
    assert "hunter2" not in err


def test_demo_runs_and_verifies(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "every table identical" in out
    assert "15,607 rows" in out
    assert "Track: 0 inserted, 1297 updated, 0 deleted" in out  # live CDC part
    assert "Artist: 1 inserted" in out


def test_demo_without_cdc(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path), "--no-cdc"]) == 0
    out = capsys.readouterr().out
    assert "every table identical" in out
    assert "inserted" not in out


def _replicate(src: str, dst: str, *extra: str) -> int:
    return main(["replicate", src, dst, "--stop-when-idle", "0.5", "--json", *extra])


def test_replicate_resumes_and_drop_removes_everything(chinook, tmp_path, capsys):
    dst = f"sqlite:///{tmp_path / 'copy.db'}"
    # without the opt-in, a SQLite source refuses before anything is created
    assert _replicate(chinook, dst) == 2
    assert "cdc_setup=True" in capsys.readouterr().err
    assert _replicate(chinook, dst, "--cdc-setup", "--task-id", "cli") == 0
    first = json.loads(capsys.readouterr().out)
    assert first["ok"] and first["task_id"] == "cli"
    assert sum(t["full_load_rows"] for t in first["tables"]) == 15_607
    with sqlite3.connect(tmp_path / "chinook.db") as conn:
        conn.execute("UPDATE Genre SET Name = 'Rock & Roll' WHERE GenreId = 1")
        conn.execute("DELETE FROM PlaylistTrack WHERE PlaylistId = 1")
    assert _replicate(chinook, dst, "--cdc-setup", "--task-id", "cli") == 0
    second = json.loads(capsys.readouterr().out)
    assert sum(t["full_load_rows"] for t in second["tables"]) == 0  # resumed, no reload
    by_table = {t["table"]: t for t in second["tables"]}
    assert by_table["Genre"]["updates"] == 1
    assert by_table["PlaylistTrack"]["deletes"] == 3290
    assert second["cdc"]["changes"] == 3291
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        assert conn.execute("SELECT Name FROM Genre WHERE GenreId = 1").fetchone() == (
            "Rock & Roll",
        )
    assert main(["drop", chinook, dst, "--task-id", "cli"]) == 0
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "replikit_checkpoints" not in tables
    assert "Genre" in tables  # the data stays
    with sqlite3.connect(tmp_path / "chinook.db") as conn:
        triggers = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'")
        assert triggers.fetchone() == (0,)


def test_apply_conflicts_flag_reaches_the_task(chinook, tmp_path, capsys):
    files = tmp_path / "out"
    # a files target cannot tell conflicts: refused before anything is written (exit 2)
    assert _replicate(chinook, f"file://{files}", "--cdc-setup", "--apply-conflicts", "log") == 2
    assert "apply_conflicts='converge'" in capsys.readouterr().err
    assert not files.exists() or not any(files.rglob("*.*"))
    dst = f"sqlite:///{tmp_path / 'copy.db'}"
    assert _replicate(chinook, dst, "--cdc-setup", "--apply-conflicts", "stop") == 0


def test_cdc_setup_installs_triggers(chinook, tmp_path, capsys):
    assert main(["cdc-setup", chinook, "--include", "Artist"]) == 0
    assert "for 1 tables" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "chinook.db") as conn:
        names = {
            r[0] for r in conn.execute("SELECT tbl_name FROM sqlite_master WHERE type = 'trigger'")
        }
    assert names == {"Artist"}


def test_replicate_stops_gracefully_on_sigint(chinook, tmp_path):
    dst = f"sqlite:///{tmp_path / 'copy.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "replikit.cli", "replicate", chinook, dst, "--cdc-setup"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the full load to commit its checkpoint
        try:
            with sqlite3.connect(tmp_path / "copy.db") as conn:
                phase = conn.execute("SELECT phase FROM replikit_checkpoints").fetchone()
            if phase == ("cdc",):
                break
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping after the current batch" in err
    assert "run the same command again to resume" in out

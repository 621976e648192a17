"""``TaskSettings.stream_gc``: who runs Python's cyclic garbage collector while a stream applies
changes (docs/cdc.md, "The garbage collector while a stream runs").

The streams here are real: a SQLite source with replikit's change triggers replicated into a
SQLite target. A transform records the collector's state for every change the stream applies
(transforms run on the applying thread, inside ``Replicator.run``).
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import replikit as rk
from replikit._cli_parser import parser
from replikit.cli import main
from replikit.taskfile import load_task_file


def _replicate(
    src: Path, dst: Path, note: Callable[[rk.Change], rk.Change], **settings: Any
) -> rk.Task:
    task = rk.Task(
        rk.endpoint(f"sqlite:///{src}", cdc_setup=True),
        f"sqlite:///{dst}",
        migration_type="full-load-and-cdc",
        transforms=[note],
        settings=rk.TaskSettings(task_id="gc", stop_when_idle=0.5, progress=False, **settings),
    )
    task.run()
    return task


@pytest.mark.parametrize(
    ("settings", "collector_on"),
    [({}, False), ({"stream_gc": "managed"}, False), ({"stream_gc": "python"}, True)],
    ids=["default", "managed", "python"],
)
def test_the_collector_during_a_stream_and_after_it(
    tmp_path: Path, settings: dict[str, Any], collector_on: bool
) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"n{i}") for i in range(20)])
    assert gc.isenabled() and gc.get_freeze_count() == 0  # the program's own setting
    seen: list[tuple[bool, bool]] = []

    def note(change: rk.Change) -> rk.Change:
        seen.append((gc.isenabled(), gc.get_freeze_count() > 0))
        return change

    _replicate(src, dst, lambda change: change, **settings)  # full load; triggers installed
    with sqlite3.connect(src) as conn:  # changes for the second run's stream
        conn.executemany(
            "UPDATE items SET name = ? WHERE id = ?", [(f"m{i}", i) for i in range(20)]
        )
        conn.execute("DELETE FROM items WHERE id >= 15")
    task = _replicate(src, dst, note, **settings)  # no full load: only the stream
    stats = task.statistics()
    assert stats.total_rows == 0 and (stats["items"].updates, stats["items"].deletes) == (20, 5)
    assert len(seen) == 25
    # managed: count-triggered collections off and the heap frozen while the stream applies;
    # python: the collector exactly as the program left it
    assert set(seen) == {(collector_on, not collector_on)}
    assert gc.isenabled() and gc.get_freeze_count() == 0  # restored after the stream
    with sqlite3.connect(dst) as conn:
        rows = conn.execute("SELECT id, name FROM items ORDER BY id").fetchall()
    assert rows == [(i, f"m{i}") for i in range(15)]


def test_python_leaves_a_disabled_collector_disabled(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    _replicate(src, dst, lambda change: change, stream_gc="python")
    with sqlite3.connect(src) as conn:
        conn.execute("INSERT INTO items VALUES (1, 'a')")
    seen: list[bool] = []

    def note(change: rk.Change) -> rk.Change:
        seen.append(gc.isenabled())
        return change

    gc.disable()
    try:
        _replicate(src, dst, note, stream_gc="python")
        assert seen == [False] and not gc.isenabled()
    finally:
        gc.enable()


BAD = ("manual", "Python", "", True, None)
ALLOWED = "stream_gc must be one of managed, python; got "


@pytest.mark.parametrize("value", BAD)
def test_a_bad_value_names_the_setting_and_the_values(value: object) -> None:
    with pytest.raises(rk.ConfigError, match=f"^{ALLOWED}") as err:
        rk.TaskSettings(stream_gc=value)  # type: ignore[arg-type]
    assert err.value.setting == "stream_gc"
    assert str(err.value) == ALLOWED + repr(value)


def test_a_pipeline_refuses_a_bad_value_before_it_runs(tmp_path: Path) -> None:
    source = rk.endpoint(f"sqlite:///{tmp_path / 'a.db'}")
    target = rk.endpoint(f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(rk.ConfigError, match=f"^{ALLOWED}'off'$") as err:
        rk.Pipeline(source.reader([]), target.writer(), stream_gc="off")
    assert err.value.setting == "stream_gc"


def test_every_way_to_give_settings_accepts_it(tmp_path: Path) -> None:
    env = rk.TaskSettings.from_env(environ={"REPLIKIT_STREAM_GC": "python"})
    assert env.stream_gc == "python" and rk.TaskSettings().stream_gc == "managed"
    with pytest.raises(rk.ConfigError, match="REPLIKIT_STREAM_GC='nope'.*managed, python"):
        rk.TaskSettings.from_env(environ={"REPLIKIT_STREAM_GC": "nope"})
    file = tmp_path / "task.yaml"
    file.write_text("source: sqlite:///a.db\ntarget: sqlite:///b.db\nmigration_type: cdc\n"
                    "settings:\n  stream_gc: python\n")  # fmt: skip
    assert load_task_file(file).settings.stream_gc == "python"
    file.write_text(file.read_text().replace("python", "never"))
    with pytest.raises(rk.ConfigError, match="stream_gc.*managed, python; got 'never'"):
        load_task_file(file)
    args = parser().parse_args(["replicate", "a", "b", "--stream-gc", "python"])
    assert args.stream_gc == "python"
    assert parser().parse_args(["replicate", "a", "b"]).stream_gc is None  # not given


def test_the_command_line_refuses_a_bad_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["replicate", "sqlite:///a.db", "sqlite:///b.db", "--stream-gc", "off"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--stream-gc: invalid choice: 'off' (choose from" in err
    assert "managed" in err and "python" in err
    with pytest.raises(SystemExit):  # the replicate help names the setting's variable
        parser().parse_args(["replicate", "--help"])
    assert "REPLIKIT_STREAM_GC" in capsys.readouterr().out

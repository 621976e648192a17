"""The command line a person can use without the docs: help, flags, environment, logging."""

import argparse
import json
import sqlite3

import pytest

from replikit.cli import main
from replikit.demo import sample_database

COMMANDS = ["copy", "plan", "replicate", "drop", "cdc-setup", "demo"]


@pytest.fixture
def chinook(tmp_path):
    return f"sqlite:///{sample_database(tmp_path / 'chinook.db')}"


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_and_examples(command, capsys):
    text = _help(capsys, command)
    assert "examples:" in text
    assert f"replikit {command}" in text.split("examples:")[1]
    description = text.split("\n\n")[1]
    assert len(description) > 40, description


@pytest.mark.parametrize("command", ["copy", "replicate", "plan"])
def test_help_lists_url_schemes_patterns_and_exit_codes(command, capsys):
    text = _help(capsys, command)
    for scheme in ("postgresql://", "postgresql+psycopg2://", "mysql://", "mariadb://",
                   "mysql+pymysql://", "sqlite:///", "sqlite+pysqlite://"):  # fmt: skip
        assert scheme in text
    assert "PGPASSWORD" in text and "MYSQL_PWD" in text and "~/.my.cnf" in text
    assert "main.%" in text and "public.%" in text
    assert "exit status" in text


@pytest.mark.parametrize("command", ["copy", "replicate"])
def test_help_gives_every_exit_code_and_the_environment(command, capsys):
    text = _help(capsys, command)
    for code in ("0 ", "1 ", "2 ", "130"):
        assert f"\n  {code}" in text
    assert "REPLIKIT_SOURCE_URL" in text and "REPLIKIT_PARALLEL_TABLES" in text


def test_replicate_help_lists_position_formats(capsys):
    text = _help(capsys, "replicate")
    assert "pg:<LSN>" in text and "mysql:<binlog file>:<offset>" in text and "sqlite:" in text


def test_every_option_is_documented():
    from replikit._cli_parser import parser

    main_parser = parser()
    subs = next(a for a in main_parser._actions if isinstance(a, argparse._SubParsersAction))
    undocumented = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in {"": main_parser, **subs.choices}.items()
        for action in sub._actions
        if not action.help or action.help == argparse.SUPPRESS
        if not isinstance(action, argparse._SubParsersAction)
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("flags", "expected", "setting"),
    [
        (["--parallel", "0"], "--parallel must be at least 1; got 0", "parallel_tables"),
        (["--split-rows", "10"], "--split-rows must be at least 1000", "split_rows"),
    ],
)
def test_bad_flag_values_name_the_flag(chinook, tmp_path, capsys, flags, expected, setting):
    assert main(["copy", chinook, f"sqlite:///{tmp_path / 'o.db'}", *flags]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert setting not in err
    assert not (tmp_path / "o.db").exists()


def test_a_bad_start_position_lists_the_formats(chinook, tmp_path, capsys):
    argv = ["replicate", chinook, f"sqlite:///{tmp_path / 'o.db'}", "--mode", "cdc"]
    assert main([*argv, "--start-position", "0/1A2B"]) == 2
    err = capsys.readouterr().err
    assert "--start-position" in err and "cdc_start_position" not in err
    assert "pg:0/1A2B3C" in err and "mysql:binlog.000003:4" in err and "sqlite:42" in err


def test_a_bad_stop_time_names_the_flag(chinook, tmp_path, capsys):
    argv = ["replicate", chinook, f"sqlite:///{tmp_path / 'o.db'}", "--stop-position"]
    assert main([*argv, "server_time:yesterday"]) == 2
    err = capsys.readouterr().err
    assert "--stop-position" in err and "server_time:2025-01-31T12:00:00+00:00" in err


def test_sqlite_pattern_hint_fits_sqlite(chinook, tmp_path, capsys):
    assert main(["copy", chinook, f"sqlite:///{tmp_path / 'o.db'}", "--include", "public.%"]) == 2
    err = capsys.readouterr().err
    assert "'public.%' selects no table" in err
    assert "SQLite has no schemas" in err and "main.%" in err
    assert "Its tables: Album, Artist" in err


def test_main_pattern_selects_every_sqlite_table(chinook, tmp_path, capsys):
    out = tmp_path / "o.db"
    assert main(["copy", chinook, f"sqlite:///{out}", "--include", "main.%", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tables"]) == 11


def test_pg_pattern_hint_fits_postgres(pg_url, tmp_path, capsys):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    assert main(["copy", pg_url, f"sqlite:///{tmp_path / 'o.db'}", "--include", "main.%"]) == 2
    err = capsys.readouterr().err
    assert "e.g. public.% or %.orders" in err and "Its tables: public.orders" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "copy", "SRC", "DST"],
        ["copy", "-v", "SRC", "DST"],
        ["copy", "SRC", "DST", "-v"],
        ["copy", "SRC", "DST", "--verbose"],
    ],
)
def test_verbose_anywhere_logs_tables(chinook, tmp_path, capsys, argv):
    argv = [chinook if a == "SRC" else f"sqlite:///{tmp_path / 'o.db'}" if a == "DST" else a
            for a in argv]  # fmt: skip
    assert main([*argv, "--include", "Album"]) == 0
    err = capsys.readouterr().err
    assert "INFO replikit.task: source" in err
    assert "INFO replikit.task: plan: 1 table(s)" in err
    assert "INFO replikit.pipeline: table Album: full load started" in err
    assert "INFO replikit.pipeline: table Album: completed, 347 rows" in err
    assert "DEBUG" not in err


def test_twice_verbose_logs_debug_before_and_after_the_command(chinook, tmp_path, capsys):
    dst = f"sqlite:///{tmp_path / 'o.db'}"
    assert main(["-v", "copy", chinook, dst, "-v", "--include", "Album"]) == 0
    assert "DEBUG replikit.sqlite: opening" in capsys.readouterr().err


def test_quiet_prints_only_errors(chinook, tmp_path, capsys):
    dst = f"sqlite:///{tmp_path / 'o.db'}"
    assert main(["copy", chinook, dst, "-q", "--include", "Album"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert main(["-q", "copy", chinook, dst, "--include", "nope"]) == 2
    assert "'nope' selects no table" in capsys.readouterr().err


def test_quiet_and_verbose_contradict(capsys):
    with pytest.raises(SystemExit) as info:
        main(["copy", "a.db", "b.db", "-q", "-v"])
    assert info.value.code == 2
    assert "-q and -v" in capsys.readouterr().err


def test_urls_come_from_the_environment(chinook, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REPLIKIT_SOURCE_URL", chinook)
    monkeypatch.setenv("REPLIKIT_TARGET_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert main(["copy", "--include", "Genre", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 25
    with sqlite3.connect(tmp_path / "env.db") as conn:
        assert conn.execute("SELECT count(*) FROM Genre").fetchone() == (25,)
    # a URL on the line wins over the environment
    assert main(["copy", chinook, f"sqlite:///{tmp_path / 'line.db'}", "--include", "Genre"]) == 0
    assert (tmp_path / "line.db").exists()


def test_a_missing_url_names_the_variable(capsys, monkeypatch):
    monkeypatch.delenv("REPLIKIT_SOURCE_URL", raising=False)
    assert main(["plan"]) == 2
    assert "no source URL: give SRC_URL or set REPLIKIT_SOURCE_URL" in capsys.readouterr().err


def test_settings_from_the_environment_and_flags_override_them(
    chinook, tmp_path, capsys, monkeypatch
):
    dst = f"sqlite:///{tmp_path / 'o.db'}"
    argv = ["replicate", chinook, dst, "--cdc-setup", "--stop-when-idle", "0.2", "--json"]
    monkeypatch.setenv("REPLIKIT_TASK_ID", "from_env")
    assert main([*argv, "--include", "Genre"]) == 0
    assert json.loads(capsys.readouterr().out)["task_id"] == "from_env"
    assert main([*argv, "--include", "Genre", "--task-id", "from_flag"]) == 0
    assert json.loads(capsys.readouterr().out)["task_id"] == "from_flag"


def test_a_bad_environment_setting_names_the_variable(chinook, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REPLIKIT_PARALLEL_TABLES", "0")
    dst = f"sqlite:///{tmp_path / 'o.db'}"
    assert main(["copy", chinook, dst]) == 2
    assert "REPLIKIT_PARALLEL_TABLES='0': parallel_tables must be at least 1" in (
        capsys.readouterr().err
    )
    assert main(["copy", chinook, dst, "--parallel", "2", "--include", "Genre"]) == 0  # flag wins


def test_twice_verbose_logs_cdc_batches(chinook, tmp_path, capsys):
    dst = f"sqlite:///{tmp_path / 'o.db'}"
    argv = ["replicate", chinook, dst, "--cdc-setup", "--stop-when-idle", "0.3", "--json"]
    assert main([*argv, "--include", "Genre"]) == 0
    capsys.readouterr()
    with sqlite3.connect(tmp_path / "chinook.db") as conn:
        conn.execute("UPDATE Genre SET Name = 'Rock & Roll' WHERE GenreId = 1")
    conn.close()
    assert main([*argv, "--include", "Genre", "-vv"]) == 0
    err = capsys.readouterr().err
    assert "DEBUG replikit.pipeline: CDC batch applied: 1 transaction(s), 1 change(s)" in err


def test_verbose_logs_where_it_connects_never_the_password(pg_url, pg_password_user, capsys):
    from sqlalchemy.engine import make_url

    user, password = pg_password_user
    url = make_url(pg_url).set(username=user, password=password)
    src = url.render_as_string(hide_password=False)
    assert main(["-vv", "plan", src, "sqlite:///:memory:"]) == 2  # no table in it
    err = capsys.readouterr().err
    where = f"{url.host}:{url.port}/{url.database}"
    assert f"DEBUG replikit.postgres: connecting to {where} as {user}" in err
    assert password not in err


def test_the_command_line_starts_without_sqlglot():
    """sqlglot (a third of a second to import) loads only when an expression is met: a
    default, a CHECK, a generated column, a view or a routine."""
    import subprocess
    import sys

    code = "import sys, replikit.cli; assert 'sqlglot' not in sys.modules, 'sqlglot imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_scalar_setting_reads_from_the_environment():
    """Each int, float and bool field of TaskSettings parses from its variable (two
    definitions of the float fields once dropped history_interval and wait_timeout)."""
    import dataclasses

    import replikit as rk

    sample = {"int": ("2000", 2000), "float": ("2.5", 2.5), "bool": ("no", False)}
    seen = set()
    for f in dataclasses.fields(rk.TaskSettings):
        kind = str(f.type).split(" | ")[0]
        if kind not in sample:
            continue
        raw, value = sample[kind]
        got = rk.TaskSettings.from_env(environ={f"REPLIKIT_{f.name.upper()}": raw})
        assert getattr(got, f.name) == value, f.name
        seen.add(f.name)
    assert {"history_interval", "wait_timeout", "lease_seconds", "standby"} <= seen


def test_split_rows_is_auto_a_number_or_none_from_every_source(capsys):
    """``split_rows`` takes ``auto`` (the default), a number of rows or None, from keywords,
    the environment and ``--split-rows``; anything else names where it came from."""
    import replikit as rk
    from replikit._cli_parser import parser

    assert rk.TaskSettings().split_rows == "auto"
    env = {"auto": "auto", "AUTO": "auto", "none": None, "300_000": 300_000}
    for raw, value in env.items():
        got = rk.TaskSettings.from_env(environ={"REPLIKIT_SPLIT_ROWS": raw})
        assert got.split_rows == value, raw
    with pytest.raises(rk.ConfigError, match="REPLIKIT_SPLIT_ROWS='some'.*whole number"):
        rk.TaskSettings.from_env(environ={"REPLIKIT_SPLIT_ROWS": "some"})
    for bad in ("automatic", True):
        with pytest.raises(rk.ConfigError, match='split_rows must be "auto"') as err:
            rk.TaskSettings(split_rows=bad)  # type: ignore[arg-type]
        assert err.value.setting == "split_rows"
    for flag, value in (("auto", "auto"), ("2_000_000", 2_000_000)):
        assert parser().parse_args(["copy", "a", "b", "--split-rows", flag]).split_rows == value
    with pytest.raises(SystemExit):
        parser().parse_args(["copy", "a", "b", "--split-rows", "many"])
    assert "--split-rows: expected a number of rows or auto, got 'many'" in capsys.readouterr().err

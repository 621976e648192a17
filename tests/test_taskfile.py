"""Task files: YAML and TOML, ${ENV} interpolation, errors with file/line/key, Task.to_yaml,
``replikit run`` and ``--task``."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

import replikit as rk
from replikit.cli import main
from replikit.demo import sample_database
from replikit.taskfile import load_task_file

YAML = """\
source: sqlite:///${SRC_DB}
target: sqlite:///out.db
migration_type: full-load
mappings:
  include: [main.Customer, main.Invoice]
  rules:
    - rename_table: {source: Customer, target: clients}
    - mask: {table: Customer, column: Email, kind: hash}
    - filter: {table: Invoice, conditions: [[Total, ">=", "10"]]}
    - remove_column: {table: Customer, columns: [Fax, Company]}
settings:
  parallel_tables: 2
  mask_secret: ${SECRET}
"""
TOML = """\
source = "sqlite:///${SRC_DB}"
target = "sqlite:///out.db"
migration_type = "full-load"

[mappings]
include = ["main.Customer", "main.Invoice"]
rules = [
  {rename_table = {source = "Customer", target = "clients"}},
  {mask = {table = "Customer", column = "Email", kind = "hash"}},
  {filter = {table = "Invoice", conditions = [["Total", ">=", "10"]]}},
  {remove_column = {table = "Customer", columns = ["Fax", "Company"]}},
]

[settings]
parallel_tables = 2
mask_secret = "${SECRET}"
"""
ENV = {"SRC_DB": "chinook.db", "SECRET": "s3cret-value"}


@pytest.fixture
def work(tmp_path, monkeypatch):
    sample_database(tmp_path / "chinook.db")
    monkeypatch.chdir(tmp_path)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def test_yaml_and_toml_say_the_same(work):
    (work / "t.yaml").write_text(YAML)
    (work / "t.toml").write_text(TOML)
    a, b = load_task_file(work / "t.yaml"), load_task_file(work / "t.toml")
    assert a.source == b.source == "sqlite:///chinook.db"
    assert a.mappings == b.mappings and a.settings == b.settings
    assert a.settings.mask_secret == "s3cret-value"
    assert "s3cret" not in repr(a) and "s3cret" not in repr(a.task())


def test_run_from_a_file_and_write_it_back(work):
    (work / "t.yaml").write_text(YAML)
    task = rk.Task.from_file(work / "t.yaml")
    assert task.run().total_rows == 59 + 64
    rows = sqlite3.connect(work / "out.db").execute("SELECT Email FROM clients").fetchall()
    assert all(len(e) == 64 for (e,) in rows)
    text = task.to_yaml()
    assert "${SECRET}" in text and "${SRC_DB}" in text and "s3cret" not in text


def test_to_yaml_of_a_python_task_round_trips_with_secrets_as_variables(work, monkeypatch):
    m = (
        rk.Mappings()
        .include("main", "%")
        .exclude("main", "Playlist%")
        .rename_schema("main", "shop")
        .convert_case("column", "lower")
        .filter("Invoice", ("Total", "between", 1, 5), ("BillingCountry", "in", "USA", "Canada"))
        .add_column("Customer", "full", "string(81)", "$FirstName || ' ' || $LastName")
        .change_type("Invoice", "Total", rk.schema.types.Type.decimal(12, 2))
        .define_primary_key("PlaylistTrack", ["PlaylistId", "TrackId"], unique=True)
        .mask("Customer", "Phone", "digits-mask", "#")
    )
    settings = rk.TaskSettings(mask_secret="very secret", parallel_tables=3, batch_apply=True)
    task = rk.Task("sqlite:///chinook.db", "postgresql://app:pw@db2/shop", mappings=m,
                   settings=settings, migration_type="full-load-and-cdc")  # fmt: skip
    text = task.to_yaml()
    assert "very secret" not in text and ":pw@" not in text
    assert "${REPLIKIT_TARGET_PASSWORD}" in text and "${REPLIKIT_MASK_SECRET}" in text
    (work / "back.yaml").write_text(text)
    monkeypatch.setenv("REPLIKIT_TARGET_PASSWORD", "pw")
    monkeypatch.setenv("REPLIKIT_MASK_SECRET", "very secret")
    again = load_task_file(work / "back.yaml")
    assert again.mappings == m
    assert again.settings == settings
    assert again.migration_type == "full-load-and-cdc"
    assert again.target == "postgresql://app:pw@db2/shop"


def test_a_dms_mapping_file_next_to_the_task_file(work):
    shutil.copy(Path(__file__).parent / "data" / "dms" / "E1.json", work / "dms.json")
    (work / "t.yaml").write_text(
        "source: sqlite:///chinook.db\ntarget: sqlite:///o.db\nmappings: dms.json\n"
    )
    tf = load_task_file(work / "t.yaml")
    assert tf.mappings.selection.include == ("shop.%",)
    assert "mappings: dms.json" in tf.task().to_yaml()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("source: sqlite:///a.db\ntarget: sqlite:///b.db\ncolour: red\n",
         r"t.yaml:3: colour: unknown key"),
        ("source: sqlite:///a.db\ntarget: sqlite:///${NOPE_NOT_SET}\n",
         r"t.yaml:2: target: environment variable NOPE_NOT_SET is not set"),
        ("source: sqlite:///a.db\ntarget: sqlite:///b.db\nsettings:\n  parallel_tables: 0\n",
         r"t.yaml:4: settings.parallel_tables: parallel_tables must be at least 1"),
        ("source: sqlite:///a.db\ntarget: sqlite:///b.db\nsettings:\n  paralel: 2\n",
         r"t.yaml:4: settings.paralel: unknown setting"),
        ("source: sqlite:///a.db\ntarget: sqlite:///b.db\nmappings:\n  rules:\n"
         "    - mask: {table: t, column: c, kind: hash}\n    - mask: {table: t, column: c}\n",
         r"t.yaml:6: mappings.rules\[1\].mask: bad parameters"),
        ("source: sqlite:///a.db\ntarget: sqlite:///b.db\nmappings:\n  rules:\n"
         "    - filter: {table: t, conditions: [[a, like, x]]}\n",
         r"t.yaml:5: mappings.rules\[0\].filter: unknown filter operator 'like'"),
        ("source: sqlite:///a.db\nmigration_type: full-load\n", r"t.yaml: target: is required"),
        ("source: [unclosed\n", r"t.yaml: not valid YAML"),
    ],
)  # fmt: skip
def test_errors_give_file_line_and_key(work, text, message):
    (work / "t.yaml").write_text(text)
    with pytest.raises(rk.ConfigError, match=message):
        load_task_file(work / "t.yaml")


def test_toml_errors_give_the_line_too(work):
    (work / "t.toml").write_text(
        'source = "sqlite:///a.db"\ntarget = "sqlite:///b.db"\n\n[settings]\nsplit_rows = 5\n'
    )
    with pytest.raises(rk.ConfigError, match=r"t.toml:5: settings.split_rows"):
        load_task_file(work / "t.toml")


def test_cli_run_and_task_option(work, capsys):
    (work / "t.yaml").write_text(YAML)
    assert main(["run", "t.yaml", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["rows"] == 123
    assert main(["plan", "--task", "t.yaml", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["mappings"]["Invoice"] == ["filter: Total >= 10"]
    # URLs and flags on the line win over the file
    code = main(
        [
            "copy",
            "--task",
            "t.yaml",
            "sqlite:///chinook.db",
            "sqlite:///other.db",
            "--no-progress",
            "--include",
            "main.Album",
            "--parallel",
            "1",
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 59 + 64 + 347
    assert (work / "other.db").exists()
    (work / "bad.yaml").write_text("source: sqlite:///a.db\ntarget: x\nsettings: {nope: 1}\n")
    assert main(["run", "bad.yaml"]) == 2
    assert "bad.yaml:3: settings.nope: unknown setting" in capsys.readouterr().err

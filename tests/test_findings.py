"""The plan's object-level findings: listed, serialised, and refused before any DDL."""

import json
import sqlite3

import pytest

import replikit as rk
from replikit.pipeline import checks
from replikit.schema.convert import Fidelity


def _source(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO a VALUES (1, 'x')")


def test_finding_text_names_object_reason_and_fix():
    f = rk.Finding.about("main.a", "lands on target name x too", kind="name", fix="rename it")
    assert str(f) == "main.a: [unsupported] lands on target name x too. Fix: rename it"
    assert f.to_dict()["kind"] == "name"
    assert f.to_dict()["column"] is None


def test_unsupported_finding_stops_the_task_before_any_ddl(tmp_path, monkeypatch):
    _source(tmp_path / "s.db")
    finding = rk.Finding.about("main.a", "invented for the test", kind="limit", fix="none")
    monkeypatch.setattr(checks, "limit_findings", lambda plans, *_: [finding])
    task = rk.Task(f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}")
    plan = task.plan()
    assert plan.unsupported == [finding]
    assert "findings:" in str(plan) and "invented for the test" in str(plan)
    out = json.loads(json.dumps(plan.to_dict()))
    assert out["findings"][0]["reason"] == "invented for the test"
    with pytest.raises(rk.ConversionError, match="invented for the test"):
        task.run()
    with sqlite3.connect(tmp_path / "t.db") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_lossy_finding_refused_only_when_strict(tmp_path, monkeypatch):
    _source(tmp_path / "s.db")
    finding = rk.Finding.about(
        "main.a", "a lossy thing", kind="target", fidelity=Fidelity.LOSSY
    )
    monkeypatch.setattr(checks, "limit_findings", lambda plans, *_: [finding])
    strict = rk.Task(
        f"sqlite:///{tmp_path / 's.db'}",
        f"sqlite:///{tmp_path / 't.db'}",
        settings=rk.TaskSettings(allow_lossy=False),
    )
    with pytest.raises(rk.ConversionError, match="a lossy thing"):
        strict.run()
    lenient = rk.Task(f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}")
    assert lenient.run().total_rows == 1

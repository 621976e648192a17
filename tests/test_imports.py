"""``import replikit`` and ``replikit --help`` load no driver and no pipeline.

Each check runs in a fresh interpreter (``sys.modules`` of this one holds whatever other tests
imported). The public names load their modules on first use (``replikit.__getattr__``); a
module that starts importing a driver or the pipeline at the top level of ``import replikit``
or of the command's parser fails here, naming the modules.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import replikit

#: third-party packages that only an endpoint, a feature or the tests need
HEAVY = {
    "adbc_driver_manager",
    "adbc_driver_postgresql",
    "bson",
    "dask",
    "distributed",
    "duckdb",
    "fsspec",
    "hypothesis",
    "IPython",
    "MySQLdb",
    "numpy",
    "pandas",
    "prometheus_client",
    "psycopg",
    "psycopg2",
    "pyarrow",
    "pymongo",
    "pymysql",
    "pymysqlreplication",
    "rich",
    "sqlalchemy",
    "sqlglot",
    "yaml",
}
#: replikit's own modules ``import replikit`` loads: the errors (``except rk.Error``)
PACKAGE = ["replikit", "replikit.errors"]
#: the modules of the task itself, which the parser of ``replikit --help`` does without
PIPELINE = (
    "replikit.changes",
    "replikit.endpoints.base",
    "replikit.mapping",
    "replikit.pipeline.cdc",
    "replikit.pipeline.runner",
    "replikit.schema",
    "replikit.task",
    "replikit.taskfile",
    "replikit.transforms",
)


def _loaded(code: str) -> dict[str, list[str]]:
    """The heavy and the replikit modules loaded after ``code`` runs in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"heavy = {sorted(HEAVY)!r}\n"
        "print(json.dumps({"
        "'heavy': sorted(m for m in sys.modules if m.split('.')[0] in heavy), "
        "'replikit': sorted(m for m in sys.modules if m.split('.')[0] == 'replikit')}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result: dict[str, list[str]] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_import_replikit_loads_no_driver_and_no_pipeline() -> None:
    loaded = _loaded("import replikit")
    assert loaded["heavy"] == []
    assert loaded["replikit"] == PACKAGE


def test_the_help_of_the_command_loads_only_its_parser() -> None:
    code = (
        "import contextlib, io\nfrom replikit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, "
        "contextlib.suppress(SystemExit):\n"
        "    main(['replicate', '--help'])\n"
        "assert 'REPLIKIT_STREAM_GC' in out.getvalue()"
    )
    loaded = _loaded(code)
    assert loaded["heavy"] == []
    assert [m for m in loaded["replikit"] if m.startswith(PIPELINE)] == []


def test_a_public_name_loads_what_it_needs_and_nothing_else() -> None:
    loaded = _loaded("import replikit as rk\nrk.TaskSettings(stream_gc='python')")
    assert loaded["heavy"] == []
    assert [m for m in loaded["replikit"] if m.startswith(PIPELINE)] == []
    loaded = _loaded("import replikit as rk\nrk.Task")
    assert "replikit.task" in loaded["replikit"] and loaded["heavy"] == []


def test_every_public_name_resolves_to_its_module_s_object() -> None:
    code = (
        "import importlib, replikit\n"
        "for name in replikit.__all__:\n"
        "    value = getattr(replikit, name)\n"
        "    module = replikit._LAZY.get(name, 'replikit.errors')\n"
        "    expected = importlib.import_module(module)\n"
        "    if name != 'transforms':\n"
        "        expected = getattr(expected, name)\n"
        "    assert value is expected, name\n"
        "    assert name in dir(replikit), name\n"
        "ns = {}\n"
        "exec('from replikit import *', ns)\n"
        "assert set(replikit.__all__) <= set(ns), set(replikit.__all__) - set(ns)\n"
    )
    _loaded(code)
    assert set(replikit._LAZY) <= set(replikit.__all__)
    assert replikit.Task.__module__ == "replikit.task"
    with pytest.raises(AttributeError, match="module 'replikit' has no attribute 'Tsak'"):
        replikit.Tsak  # type: ignore[attr-defined]  # noqa: B018


def test_validate_stays_the_function_when_its_module_loads_first() -> None:
    """``replikit.validate`` names a module and the function it defines; ``rk.validate`` is
    the function whichever loads first (the task imports the module)."""
    code = (
        "import types, replikit, replikit.task, replikit.validate\n"
        "assert not isinstance(replikit.validate, types.ModuleType), replikit.validate\n"
        "assert replikit.validate.__module__ == 'replikit.validate'\n"
        "from replikit import validate\n"
        "assert validate is replikit.validate and callable(validate)\n"
    )
    _loaded(code)


def test_a_copy_loads_no_task_file_nor_dask_and_skips_the_exit_collection(tmp_path) -> None:
    """``replikit copy`` without ``--task`` or ``--dask`` imports neither the task-file module
    (and its YAML parser) nor the Dask glue: their import was wall time before the first
    row. At exit the objects still alive are frozen (``gc.freeze``) before Python's final
    collection pass, which cost 30-40 ms at the end of a full load; an ``atexit`` handler
    registered before ``main`` runs after the command's and sees the frozen objects."""
    src = tmp_path / "src.db"
    code = (
        "import atexit, contextlib, gc, io, sqlite3\n"
        f"with sqlite3.connect({str(src)!r}) as c:\n"
        "    c.execute('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)')\n"
        "    c.executemany('REPLACE INTO t VALUES (?, ?)', [(i, str(i)) for i in range(9)])\n"
        "c.close()\n"
        "from replikit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['copy', 'sqlite:///{src}', 'sqlite:///{tmp_path / 'dst.db'}', "
        "'--no-progress']) == 0\n"
        "assert gc.get_freeze_count() == 0  # (only at exit)\n"
    )
    loaded = _loaded(code)
    assert "yaml" not in loaded["heavy"] and "dask" not in loaded["heavy"]
    assert "replikit.task" in loaded["replikit"]
    assert [m for m in loaded["replikit"] if m in ("replikit.taskfile", "replikit._dask")] == []
    at_exit = "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))"
    probe = f"import atexit, gc\n{at_exit}\n{code}\nprint('main returned')"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == ["main returned", "frozen at exit: True"]

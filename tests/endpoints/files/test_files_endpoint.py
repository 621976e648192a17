"""The files endpoint: URLs, partitioning, foreign folders as sources, and bad input (a folder
holding other files, a schema changed between runs, a value Parquet cannot hold, a write that
fails midway: nothing half-written visible, the checkpoint not advanced)."""

from __future__ import annotations

import errno
import pickle
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

import replikit as rk
import replikit.endpoints.sqlite.target  # imported early: see below
from replikit.changes import Change, Op, Transaction
from replikit.demo import sample_database
from replikit.pipeline.contracts import Batch, Checkpoint
from replikit.positions import SqliteSeq
from replikit.schema.convert import plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Type

# The SQLite writer is imported here, not first inside a test: CPython 3.11.7 counts AST
# recursion in one global (gh-106905, fixed in 3.11.8), so a module compiled while a pipeline
# thread compiles another failed now and then with "AST constructor recursion depth mismatch".

ORDERS = TableSchema(
    TableId("shop", "orders"),
    (
        Column("id", Type.int_(64), nullable=False),
        Column("placed", Type.date()),
        Column("amount", Type.decimal(10, 2)),
    ),
    primary_key=("id",),
)
ROWS = [
    [1, date(2024, 1, 5), Decimal("1.50")],
    [2, date(2024, 1, 20), Decimal("2.00")],
    [3, date(2024, 2, 1), None],
    [4, None, Decimal("4.25")],
]


def _load(ep, table=ORDERS, rows=ROWS, mode="drop-and-create"):
    plan = plan_table(table, source_dialect="python", target=ep.dialect)
    writer = ep.writer()
    writer.prepare([plan], mode)
    writer.load(plan, [Batch(table.id, table.column_names, rows)])
    writer.finish([plan])
    return plan


def _read(ep, name="shop.orders"):
    reader = ep.reader([name])
    [t] = reader.tables
    return sorted(tuple(r) for u in reader.units(t) for b in reader.read(u) for r in b.rows)


def test_urls_and_options():
    ep = rk.endpoint("file:///data/out?format=csv&file_size=64MB&partition_by=placed:month")
    assert ep.root == "/data/out"
    assert ep.options["file_size"] == 64 * 2**20
    assert rk.endpoint("file://rel/out").root == "rel/out"
    assert rk.endpoint("memory://bucket/x").root == "/bucket/x"
    with pytest.raises(rk.ConfigError, match="format"):
        rk.endpoint("file:///x?format=xlsx")
    with pytest.raises(rk.ConfigError, match="partition_by"):
        rk.endpoint("file:///x?partition_by=a:week")
    with pytest.raises(rk.ConfigError, match="colour"):
        rk.endpoint("file:///x?colour=red")
    with pytest.raises(rk.ConfigError, match="file_size"):
        rk.endpoint("file:///x?file_size=lots")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_partitioned_by_month_full_load_and_changes(tmp_path, fmt):
    with rk.endpoint(f"file://{tmp_path}?format={fmt}&partition_by=placed:month") as ep:
        plan = _load(ep)
        table = tmp_path / "shop" / "orders"
        assert sorted(p.name for p in table.iterdir()) == [
            "_schema.json",
            "placed_month=2024-01",
            "placed_month=2024-02",
            "placed_month=__HIVE_DEFAULT_PARTITION__",
        ]
        assert _read(ep) == sorted(tuple(r) for r in ROWS)
        changes = ep.change_writer()
        tid = plan.target_id
        txs = [
            Transaction(
                (
                    Change(Op.INSERT, tid, {"id": 5},
                           after={"id": 5, "placed": date(2024, 3, 1), "amount": Decimal("5")}),
                    Change(Op.UPDATE, tid, {"id": 1}, after={"amount": Decimal("9.99")}),
                    Change(Op.DELETE, tid, {"id": 2}),
                ),
                SqliteSeq(1),
                commit_ts=datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
            )
        ]  # fmt: skip
        cp = Checkpoint("t", start=SqliteSeq(0), position=SqliteSeq(1), phase="cdc")
        changes.apply({tid: plan}, txs, checkpoint=cp, batch=True)
        assert (table / "placed_month=2024-03").is_dir()
        assert changes.read_checkpoint("t") == cp
        assert _read(ep) == [
            (1, date(2024, 1, 5), Decimal("9.99")),
            (3, date(2024, 2, 1), None),
            (4, None, Decimal("4.25")),
            (5, date(2024, 3, 1), Decimal("5.00") if fmt == "parquet" else Decimal("5")),
        ]


def test_a_target_folder_holding_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with rk.endpoint(f"file://{tmp_path}") as ep, pytest.raises(rk.ConfigError, match="notes.txt"):
        _load(ep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"], "nothing was written"


def test_a_table_folder_holding_other_files_is_refused(tmp_path):
    with rk.endpoint(f"file://{tmp_path}") as ep:
        _load(ep)
        (tmp_path / "shop" / "orders" / "report.xlsx").write_text("mine")
        with pytest.raises(rk.SchemaError, match="report.xlsx"):
            _load(ep)
        assert (tmp_path / "shop" / "orders" / "report.xlsx").exists()


def test_a_schema_changed_between_runs_is_refused(tmp_path):
    with rk.endpoint(f"file://{tmp_path}") as ep:
        _load(ep)
        wider = TableSchema(
            ORDERS.id, (*ORDERS.columns, Column("note", Type.text())), primary_key=("id",)
        )
        with pytest.raises(rk.SchemaError, match="columns added: note"):
            _load(ep, wider, [[*r, None] for r in ROWS], mode="do-nothing")
        _load(ep, ORDERS, [[9, None, None]], mode="do-nothing")  # same shape: appended
        assert len(_read(ep)) == 5


def test_a_value_parquet_cannot_hold_is_refused_by_row(tmp_path):
    with rk.endpoint(f"file://{tmp_path}") as ep:
        plan = plan_table(ORDERS, source_dialect="python", target=ep.dialect)
        assert "NaN" in plan.columns[2].reason  # declared in the plan
        with pytest.raises(rk.DataError, match=r"column amount; key id=7"):
            _load(ep, rows=[[6, None, Decimal("1")], [7, None, Decimal("NaN")]])
        assert not list((tmp_path / "shop" / "orders").glob("*.parquet")), "no partial file"


class _FullDisk(LocalFileSystem):
    """A local file system whose files fail with ENOSPC after ``limit`` bytes."""

    limit = 10_000

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode, **kwargs)
        if "w" not in mode or path.endswith(".json.tmp") or "_replikit" in path:
            return f
        original = f.write
        written = [0]

        def write(data):
            written[0] += len(data)
            if written[0] > self.limit:
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(data)

        f.write = write
        return f


def test_disk_full_mid_write_leaves_nothing_visible_and_the_checkpoint_where_it_was(tmp_path):
    with rk.endpoint(f"file://{tmp_path}") as ok:
        plan = _load(ok)
        cp = Checkpoint("t", start=SqliteSeq(0), position=SqliteSeq(1), phase="cdc")
        ok.checkpoint_store().write_checkpoint(cp)
    full = rk.endpoint(f"file://{tmp_path}", filesystem=_FullDisk(skip_instance_cache=True))
    rows = [[i, date(2024, 1, 1), Decimal(i)] for i in range(10, 20_000)]
    with pytest.raises(rk.ConnectError, match="No space left on device"):
        _load(full, rows=rows)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "a temp file left"
    tid = plan.target_id
    big = [
        Transaction(
            tuple(Change(Op.INSERT, tid, {"id": i}, after={"id": i, "placed": None,
                                                           "amount": Decimal(i)})
                  for i in range(10, 20_000)),
            SqliteSeq(2),
        )
    ]  # fmt: skip
    with rk.endpoint(f"file://{tmp_path}") as ok:
        _load(ok)
    later = Checkpoint("t", start=SqliteSeq(0), position=SqliteSeq(2), phase="cdc")
    with pytest.raises(rk.ConnectError, match="No space left"):
        full.change_writer().apply({tid: plan}, big, checkpoint=later, batch=False)
    with rk.endpoint(f"file://{tmp_path}") as ok:
        assert ok.checkpoint_store().read_checkpoint("t") == cp, "checkpoint advanced"
        assert not list((tmp_path / "shop" / "orders").glob("CDC*")), "a change file visible"
        assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
        assert len(_read(ok)) == len(ROWS)


def test_a_folder_of_parquet_files_reads_as_tables_and_schema_drift_is_refused(tmp_path):
    (tmp_path / "events").mkdir()
    pq.write_table(pa.table({"id": [1, 2], "kind": ["a", "b"]}), tmp_path / "events" / "1.parquet")
    pq.write_table(pa.table({"id": [3], "kind": ["c"]}), tmp_path / "events" / "2.parquet")
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "p.csv").write_text("sku,price,day\nA,1.5,2024-01-01\nB,2,2024-01-02\n")
    with rk.endpoint(f"file://{tmp_path}") as ep:
        catalog = ep.reflect()
        assert [str(t.id) for t in catalog.tables] == ["events", "prices"]
        assert any("inferred" in p for p in catalog.problems)  # declared in the plan
        assert _read(ep, "events") == [(1, "a"), (2, "b"), (3, "c")]
        assert _read(ep, "prices") == [("A", 1.5, date(2024, 1, 1)), ("B", 2.0, date(2024, 1, 2))]
        with rk.endpoint(f"sqlite:///{tmp_path / 'copy.db'}") as lite:
            plan = rk.Task(ep, lite).plan()
            assert any("inferred" in p for p in plan.assessment.problems)
    pq.write_table(pa.table({"id": ["x"], "kind": ["d"]}), tmp_path / "events" / "3.parquet")
    with rk.endpoint(f"file://{tmp_path}") as ep, pytest.raises(rk.SchemaError, match="3.parquet"):
        ep.reflect()


def test_memory_file_system(tmp_path):
    url = f"memory://rk-test/{uuid.uuid4().hex}"
    with rk.endpoint(url) as ep:
        _load(ep)
        assert _read(ep) == sorted(tuple(r) for r in ROWS)
    fs = fsspec.filesystem("memory")
    assert any(p.endswith("LOAD00000001.parquet") for p in fs.find(url))


def test_cli_copy_into_a_foreign_folder_is_one_line_and_exit_2(tmp_path):
    lite = sample_database(tmp_path / "chinook.db")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "replikit",
            "copy",
            f"sqlite:///{lite}",
            f"file://{tmp_path}/out",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "notes.txt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_reader_pickles_for_executors_in_other_processes(tmp_path):
    with rk.endpoint(f"file://{tmp_path}") as ep:
        _load(ep)
        again = pickle.loads(pickle.dumps(ep.reader(["shop.orders"])))
        [t] = again.tables
        assert sorted(tuple(r) for u in again.units(t) for b in again.read(u) for r in b.rows) == (
            sorted(tuple(r) for r in ROWS)
        )


def test_foreign_parquet_types_read_as_canonical_values(tmp_path):
    (tmp_path / "t").mkdir()
    table = pa.table(
        {
            "ns": pa.array([datetime(2020, 1, 1, 1, 2, 3, 456789)], pa.timestamp("ns")),
            "paris": pa.array(
                [datetime(2020, 1, 1, 1, 2, 3)], pa.timestamp("ms", tz="Europe/Paris")
            ),
            "cat": pa.array(["a"]).dictionary_encode(),
            "st": pa.array([{"a": 1, "b": "x"}]),
            "dur": pa.array([timedelta(seconds=5, microseconds=5)], pa.duration("us")),
        }
    )
    pq.write_table(table, tmp_path / "t" / "part-0.parquet")
    with rk.endpoint(f"file://{tmp_path}") as ep:
        [t] = ep.reflect().tables
        assert [str(c.type) for c in t.columns] == [
            "timestamp(9)", "timestamp(3) with tz", "text", "other(struct<a: int64, b: string>)",
            "interval",
        ]  # fmt: skip
        assert _read(ep, "t") == [
            (
                datetime(2020, 1, 1, 1, 2, 3, 456789),
                datetime(2020, 1, 1, 1, 2, 3, tzinfo=UTC),  # the instant, in UTC
                "a",
                '{"a": 1, "b": "x"}',
                "PT5.000005S",
            )
        ]
        with rk.endpoint(f"sqlite:///{tmp_path / 'copy.db'}") as lite:
            [stats] = rk.Task(ep, lite, settings=rk.TaskSettings(progress=False)).run()
            assert stats.full_load_rows == 1


def test_a_table_of_several_files_loads_one_unit_per_file_in_parallel(tmp_path):
    """Each full-load file is a unit (so files load in parallel), every row read once; a
    file gone since the split is an error naming it."""
    lite = sample_database(tmp_path / "chinook.db")
    with (
        rk.endpoint(f"sqlite:///{lite}") as src,
        rk.endpoint(f"file://{tmp_path}/out?file_size=16KB") as out,
    ):
        rk.Task(src, out, mappings=rk.Mappings().include("%", "Track")).run()
    files = sorted((tmp_path / "out" / "Track").glob("LOAD*.parquet"))
    assert len(files) > 2
    with rk.endpoint(f"file://{tmp_path}/out") as ep:
        reader = ep.reader()
        (table,) = [t for t in reader.tables if t.id.name == "Track"]
        units = reader.units(table)
        assert [(u.index, u.count) for u in units] == [(i, len(files)) for i in range(len(files))]
        per_unit = [sum(len(b) for b in reader.read(u)) for u in units]
        assert per_unit == [pq.read_metadata(f).num_rows for f in files]
        with rk.endpoint(f"sqlite:///{tmp_path / 'back.db'}") as back:
            [stat] = rk.Task(ep, back, settings=rk.TaskSettings(parallel_tables=4)).run()
            assert stat.full_load_rows == 3503
        files[-1].unlink()
        with pytest.raises(rk.Error, match=files[-1].name):
            list(reader.read(units[-1]))


def test_the_files_writer_refuses_a_process_pool_by_name(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    lite = sample_database(tmp_path / "chinook.db")
    with (
        rk.endpoint(f"sqlite:///{lite}") as src,
        rk.endpoint(f"file://{tmp_path}/out") as out,
        ProcessPoolExecutor(1) as pool,
    ):
        with pytest.raises(pickle.PicklingError, match="same file names"):
            pickle.dumps(out.writer())
        task = rk.Task(src, out, executor=pool, mappings=rk.Mappings().include("%", "Genre"))
        with pytest.raises(rk.ConfigError, match="FilesWriter.*threads"):
            task.run()
    assert not (tmp_path / "out" / "Genre").exists()


_HOLD_MANIFEST = """
import sys
from replikit.endpoints.files._connect import Store, parse_url
from replikit.endpoints.files._manifest import ManifestFile

manifest = ManifestFile(Store(parse_url(sys.argv[1])))
with manifest.lock:
    doc = manifest.read()
    print("locked", flush=True)
    sys.stdin.readline()
    doc.suspended.setdefault("t", {})["other.process"] = {"reason": "written by the child"}
    manifest.write(doc)
"""


def test_another_process_waits_for_the_manifest_and_loses_no_update(tmp_path):
    """A second process (``replikit reload`` beside a running task) rewrites the manifest
    under the same lock: while one process holds it, the other waits, then reads what the
    first wrote; neither write is lost."""
    import threading

    from replikit.endpoints.files._connect import Store, parse_url
    from replikit.endpoints.files._manifest import ManifestFile

    url = f"file://{tmp_path / 'out'}"
    manifest = ManifestFile(Store(parse_url(url)))
    (tmp_path / "out").mkdir()
    manifest.ensure()
    from datasets import REPO

    src = str(REPO / "src")
    with subprocess.Popen([sys.executable, "-c", _HOLD_MANIFEST, url], text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          env={"PYTHONPATH": src, "PATH": ""}) as child:  # fmt: skip
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "locked"

        def mine() -> None:
            with manifest.lock:
                doc = manifest.read()
                doc.suspended.setdefault("t", {})["this.process"] = {"reason": "mine"}
                manifest.write(doc)

        thread = threading.Thread(target=mine)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the manifest was rewritten while another process held it"
        child.stdin.write("\n")
        child.stdin.flush()
        thread.join(10)
        assert not thread.is_alive()
        assert child.wait(10) == 0
    assert sorted(manifest.read().suspended["t"]) == ["other.process", "this.process"]


def test_a_hidden_folder_with_a_tables_files_is_named_in_the_plan(tmp_path):
    """Folders whose name starts with ``_`` or ``.`` are not read (as Spark and pyarrow hide
    them): one that holds a table's files is named in the plan's problems, so leaving it out
    is never silent; replikit's own ``_replikit_*`` entries are not."""
    import shutil

    src = tmp_path / "src.db"
    with __import__("sqlite3").connect(src) as conn:
        conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO a VALUES (1)")
    conn.close()
    out = tmp_path / "out"
    rk.copy(f"sqlite:///{src}", f"file://{out}?format=parquet", progress=False)
    shutil.copytree(out / "a", out / "_staging")
    (out / "sales").mkdir()
    shutil.copytree(out / "a", out / "sales" / ".old")
    plan = rk.Task(f"file://{out}?format=parquet", f"sqlite:///{tmp_path / 'x.db'}").plan()
    hidden = [p for p in plan.assessment.problems if "is hidden" in p]
    assert [p.split(": not read")[0] for p in hidden] == [
        f"file://{out}/_staging", f"file://{out}/sales/.old"]  # fmt: skip
    assert [str(t.source.id) for t in plan.assessment.tables] == ["a"]

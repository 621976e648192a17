"""The endpoint conformance suite: what every endpoint family must do alike.

Subclass :class:`EndpointConformance` in a test module and hand it a fresh, empty database per
test through the ``conformance_endpoint`` fixture; pytest collects the inherited tests::

    import pytest
    import replikit as rk
    from replikit.testing.conformance import EndpointConformance

    class TestMyEngine(EndpointConformance):
        @pytest.fixture
        def conformance_endpoint(self, my_empty_database_url):
            with rk.endpoint(my_empty_database_url) as ep:
                yield ep

The suite uses the public contracts only (``Endpoint``, ``Reader``, ``Writer``,
``ChangeWriter``, ``ChangeReader``), so a third-party family registered through the
``replikit.endpoints`` entry point runs the same tests as PostgreSQL, MySQL and SQLite:

* unknown options are a :class:`~replikit.ConfigError` naming the known ones, everywhere;
* every portable type round-trips: a column the plan calls ``exact`` reads back equal, value
  for value, in the plan's target type (a UUID stored as text reads back as that text); a
  ``lossy`` one has a reason; reflection gives back the table, its key and kinds;
* a full load from the endpoint completes and moves every row;
* errors (an unknown table) are :class:`replikit.Error` s;
* a target keeps checkpoints and applies changes idempotently, checkpoint included;
* a change writer that ``reports_conflicts`` finds every apply conflict of a batch before
  writing it (one that does not refuses to be asked);
* a CDC source delivers the changes made after its start position, in order.

An endpoint that cannot be a target (or a CDC source) skips those tests, by its
``capabilities``. SQLite endpoints need ``cdc_setup=True`` for the CDC test.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from replikit.errors import MissingDependencyError

try:
    import pytest
except ImportError as exc:  # pragma: no cover - the hint for an install without pytest
    raise MissingDependencyError("pytest", "testing", "The conformance suite") from exc

import replikit as rk
from replikit.changes import Change, Op, Transaction
from replikit.endpoints.base import CdcSource, Endpoint, SupportsApply
from replikit.mapping import Selection
from replikit.pipeline.conflicts import Conflict, ConflictError
from replikit.pipeline.contracts import (
    Batch,
    Checkpoint,
    HasDefaultSchema,
    SupportsClose,
    SupportsPrepare,
    Writer,
    dialect_of,
)
from replikit.positions import Position, SqliteSeq
from replikit.schema.convert import Fidelity, TablePlan, plan_table
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Kind, Type

__all__ = ["PORTABLE_VALUES", "EndpointConformance"]

#: one column per portable type, with values that probe its edges (canonical Python values)
PORTABLE_VALUES: tuple[tuple[str, Type, tuple[Any, ...]], ...] = (
    ("c_bool", Type.bool_(), (True, False)),
    ("c_int16", Type.int_(16), (0, -32768, 32767)),
    ("c_int32", Type.int_(32), (-2147483648, 2147483647)),
    ("c_int64", Type.int_(64), (-(2**63), 2**63 - 1, 1)),
    ("c_decimal", Type.decimal(12, 2), (Decimal("1.50"), Decimal("-9999999999.99"))),
    ("c_float", Type.float_(64), (0.1, 1e308, -2.5e-300)),
    ("c_string", Type.string(20), ("ab", "é😀", "", "trail  ")),
    ("c_text", Type.text(), ("x", "line\nbreak\ttab", "quote ' \" \\")),
    ("c_bytes", Type.bytes_(), (b"\x00\xff ", b"")),
    ("c_date", Type.date(), (date(2020, 2, 29), date(1000, 1, 1), date(9999, 12, 31))),
    ("c_time", Type.time(6), (time(0, 0), time(23, 59, 59, 999999), time(12, 0, 0, 500000))),
    ("c_ts", Type.timestamp(6), (datetime(2020, 1, 1, 12, 34, 56, 789012),)),
    ("c_tstz", Type.timestamp(6, tz=True), (datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC),)),
    ("c_json", Type.json(), ('{"a": 1}', "[1, 2]")),
    ("c_uuid", Type.uuid(), (uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),)),
)
_ROWS = 5  # row i holds value i % len(values); the last row is all NULLs
_TABLE = "rk_conformance"
_TASK = "rkconformance"


def _source_table(
    schema: str | None, name: str, columns: Sequence[tuple[str, Type]]
) -> TableSchema:
    cols = (Column("id", Type.int_(64), nullable=False), *(Column(n, t) for n, t in columns))
    return TableSchema(TableId(schema, name), cols, primary_key=("id",))


def _plan(ep: Endpoint, table: TableSchema) -> TablePlan:
    return plan_table(table, source_dialect="python", target=ep.dialect)


def _create(ep: Endpoint, plan: TablePlan, rows: Sequence[Sequence[Any]] = ()) -> Writer:
    writer = ep.writer()
    assert isinstance(writer, SupportsPrepare), "a target writer prepares its tables"
    writer.prepare([plan], "drop-and-create")
    columns = tuple(c.source.name for c in plan.columns)
    writer.load(plan, [Batch(plan.source.id, columns, list(rows))] if rows else [])
    writer.finish([plan])
    return writer


def _read(ep: Endpoint, table: TableSchema) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Every row of ``table`` through the endpoint's full-load reader, by key."""
    reader = ep.reader([table])
    columns: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = []
    for unit in reader.units(table):
        for batch in reader.read(unit):
            columns = batch.columns
            rows += [tuple(r) for r in batch.rows]
    _close(reader)
    key = columns.index("id") if "id" in columns else 0
    return columns, sorted(rows, key=lambda r: r[key])


def _close(stage: object) -> None:
    if isinstance(stage, SupportsClose):
        stage.close()


def _reflected(ep: Endpoint, name: str) -> TableSchema:
    catalog = ep.reflect(Selection(include=(f"%.{name}",)))
    found = [t for t in catalog.tables if t.id.name == name]
    assert len(found) == 1, f"reflection finds the table {name} just created: {catalog.tables}"
    return found[0]


def _value_rows() -> list[list[Any]]:
    rows: list[list[Any]] = [
        [i, *(values[i % len(values)] for _, _, values in PORTABLE_VALUES)] for i in range(_ROWS)
    ]
    rows.append([_ROWS, *(None for _ in PORTABLE_VALUES)])
    return rows


def _expected(value: Any, target: Type) -> Any:
    """What an exact column reads back as: the value in the plan's target portable type
    (a UUID kept as 36-character text where the target has no UUID type reads back as text)."""
    if value is not None and target.kind in (Kind.STRING, Kind.TEXT) and not isinstance(value, str):
        return str(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a:
        return b != b
    return (type(a) is type(b) and bool(a == b)) or (a is None and b is None)


class EndpointConformance:
    """Tests every endpoint family passes. Provide ``conformance_endpoint`` (a fresh, empty
    database per test; see the module docstring)."""

    @pytest.fixture
    def conformance_endpoint(self) -> Iterator[Endpoint]:
        """Override: a fresh, empty database per test."""
        raise NotImplementedError("subclasses provide a fresh, empty database per test")

    # -- options and errors ---------------------------------------------------------------
    def test_unknown_options_are_config_errors(self, conformance_endpoint: Endpoint) -> None:
        ep = conformance_endpoint
        with pytest.raises(rk.ConfigError, match="no_such_option"):
            type(ep)(ep._url, no_such_option=1)
        with pytest.raises(rk.ConfigError, match="no_such_option"):
            ep.reader([], no_such_option=1)
        if ep.capabilities.target:
            with pytest.raises(rk.ConfigError, match="no_such_option"):
                ep.writer(no_such_option=1)
        if isinstance(ep, SupportsApply):
            with pytest.raises(rk.ConfigError, match="no_such_option"):
                ep.change_writer(no_such_option=1)
            with pytest.raises(rk.ConfigError, match="no_such_option"):
                ep.checkpoint_store(no_such_option=1)

    def test_an_unknown_table_is_a_replikit_error(self, conformance_endpoint: Endpoint) -> None:
        ep = conformance_endpoint
        if ep.capabilities.target:  # the database exists and holds another table
            _close(_create(ep, _plan(ep, _people(ep.home_schema()))))
        with pytest.raises(rk.TableNotFoundError, match="rk_no_such_table"):
            ep.reader(["rk_no_such_table"])

    def test_check_and_identity(self, conformance_endpoint: Endpoint) -> None:
        ep = conformance_endpoint
        ep.check()
        assert ep.capabilities.cdc == isinstance(ep, CdcSource), "capabilities tell the truth"
        ident = ep.identity()
        if ident is not None:
            with type(ep)(ep._url) as again:
                assert again.identity() == ident, "one database, one identity"

    # -- types, reflection, full load -----------------------------------------------------
    def _types_table(self, ep: Endpoint) -> tuple[TablePlan, dict[str, TablePlan]]:
        """The portable types table, created with every column the plan can hold."""
        columns = [(n, t) for n, t, _ in PORTABLE_VALUES]
        probe = _plan(ep, _source_table(ep.home_schema(), _TABLE, columns))
        held = [c for c in probe.columns if c.fidelity is not Fidelity.UNSUPPORTED]
        for c in probe.columns:
            if c.fidelity is not Fidelity.EXACT:
                assert c.target.reason, f"{c.source.name}: a {c.fidelity.value} column says why"
        names = {c.source.name for c in held}
        table = _source_table(ep.home_schema(), _TABLE, [(n, t) for n, t in columns if n in names])
        plan = _plan(ep, table)
        keep = [i for i, c in enumerate(("id", *(n for n, _ in columns))) if c in {"id", *names}]
        rows = [[row[i] for i in keep] for row in _value_rows()]
        _close(_create(ep, plan, rows))
        return plan, {c.source.name: plan for c in plan.columns}

    def test_portable_types_round_trip(self, conformance_endpoint: Endpoint) -> None:
        ep = conformance_endpoint
        if not ep.capabilities.target:
            pytest.skip("not a target")
        plan, _ = self._types_table(ep)
        columns, rows = _read(ep, _reflected(ep, _TABLE))
        assert len(rows) == _ROWS + 1
        written = {r[0]: r for r in _value_rows()}
        order = ["id", *(n for n, _, _ in PORTABLE_VALUES)]
        wrong = []
        for cp in plan.columns:
            if cp.fidelity is not Fidelity.EXACT:
                continue
            at = columns.index(cp.source.name)
            for row in rows:
                want = _expected(written[row[0]][order.index(cp.source.name)], cp.target.type)
                if not _same(row[at], want):
                    wrong.append(f"{cp.source.name} ({cp.target.sql}): {want!r} -> {row[at]!r}")
        assert not wrong, "exact columns must read back equal:\n" + "\n".join(wrong)

    def test_reflection_gives_back_the_table(self, conformance_endpoint: Endpoint) -> None:
        ep = conformance_endpoint
        if not ep.capabilities.target:
            pytest.skip("not a target")
        plan, _ = self._types_table(ep)
        table = _reflected(ep, _TABLE)
        assert table.primary_key == ("id",)
        assert [c.name for c in table.columns] == [c.name for c in plan.columns]
        for cp, col in zip(plan.columns, table.columns, strict=True):
            assert col.nullable == cp.nullable, col.name
            if cp.fidelity is Fidelity.EXACT:
                assert col.type.kind == cp.target.type.kind, f"{col.name}: {col.type}"

    def test_full_load_moves_every_row(self, conformance_endpoint: Endpoint) -> None:
        ep = conformance_endpoint
        if not (ep.capabilities.target and ep.capabilities.source):
            pytest.skip("needs a source that can also be written")
        self._types_table(ep)
        with rk.endpoint("sqlite:///:memory:") as sink:
            task = rk.Task(ep, sink, mappings=rk.Mappings().include("%", _TABLE))
            stats = task.run()
            [table] = stats
            assert table.state.value == "Table completed", table.error
            assert table.full_load_rows == _ROWS + 1
            _, rows = _read(sink, _reflected(sink, _TABLE))
            assert [r[0] for r in rows] == list(range(_ROWS + 1))

    # -- checkpoints and change apply -----------------------------------------------------
    def test_both_writers_plan_the_same_target_tables(self, conformance_endpoint: Endpoint) -> None:
        ep = conformance_endpoint
        if not isinstance(ep, SupportsApply):
            pytest.skip("cannot apply changes")
        full, changes = ep.writer(), ep.change_writer()
        try:
            assert dialect_of(full) == dialect_of(changes)
            schemas = [w.default_schema if isinstance(w, HasDefaultSchema) else None
                       for w in (full, changes)]  # fmt: skip
            assert schemas[0] == schemas[1], "a stream must address the tables the load created"
        finally:
            _close(full)
            changes.close()

    def test_checkpoints_round_trip(self, conformance_endpoint: Endpoint) -> None:
        ep = conformance_endpoint
        if not isinstance(ep, SupportsApply):
            pytest.skip("cannot apply changes")
        writer = ep.checkpoint_store()
        try:
            assert writer.read_checkpoint(_TASK) is None
            checkpoint = Checkpoint(
                _TASK, start=SqliteSeq(5), phase="full-load", loaded=frozenset({"a.b"})
            )
            writer.write_checkpoint(checkpoint)
            assert writer.read_checkpoint(_TASK) == checkpoint
            resumed = Checkpoint(  # a resumed full load's snapshot positions
                _TASK,
                start=SqliteSeq(5),
                phase="full-load",
                loaded=frozenset({"a.b"}),
                snapshots={"a.c": SqliteSeq(7), "a.d": SqliteSeq(8)},
            )
            writer.write_checkpoint(resumed)
            assert writer.read_checkpoint(_TASK) == resumed
            moved = Checkpoint(_TASK, start=SqliteSeq(5), position=SqliteSeq(9), phase="cdc")
            writer.write_checkpoint(moved)
            assert writer.read_checkpoint(_TASK) == moved
            writer.drop_control(_TASK)
            assert writer.read_checkpoint(_TASK) is None
        finally:
            _close(writer)

    @pytest.mark.parametrize("batch", [False, True], ids=["in-order", "net-change"])
    def test_changes_apply_idempotently_with_the_checkpoint(
        self, conformance_endpoint: Endpoint, batch: bool
    ) -> None:
        ep = conformance_endpoint
        writer = self._change_writer(ep)
        plan = _plan(ep, _people(ep.home_schema()))
        _close(_create(ep, plan, [[1, "ann", 10]]))
        txs = _history(plan.target_id, SqliteSeq)
        plans = {plan.target_id: plan}
        try:
            for _ in range(2):  # a replay after a crash converges to the same rows
                for tx in txs:
                    writer.apply(plans, [tx], checkpoint=_at(tx.position), batch=batch)
            _, rows = _read(ep, _reflected(ep, "rk_people"))
            assert rows == [(1, "ann", 11), (3, "cy", 30)]
            stored = writer.read_checkpoint(_TASK)
            assert stored is not None
            assert stored.position == txs[-1].position
        finally:
            writer.close()

    @pytest.mark.parametrize("batch", [False, True], ids=["in-order", "net-change"])
    @pytest.mark.parametrize("policy", ["log", "stop"])
    def test_apply_reports_conflicts(
        self, conformance_endpoint: Endpoint, batch: bool, policy: str
    ) -> None:
        """A writer that ``reports_conflicts`` hands every conflict of a batch to
        ``on_conflicts`` before writing it (``log``: then applies as converge; ``stop``: the
        callback raises and nothing commits); one that does not refuses ``on_conflicts``."""
        ep = conformance_endpoint
        writer = self._change_writer(ep)
        plan = _plan(ep, _people(ep.home_schema()))
        _close(_create(ep, plan, [[1, "ann", 10], [4, "dee", 40], [6, "fay", 60]]))
        seen: list[Conflict] = []

        def report(conflicts: Sequence[Conflict]) -> None:
            seen.extend(conflicts)
            if policy == "stop":
                raise ConflictError(conflicts)

        plans = {plan.target_id: plan}
        txs = _drifted(plan.target_id)
        try:
            if not getattr(writer, "reports_conflicts", False):
                with pytest.raises(rk.CapabilityError, match="converge"):
                    writer.apply(plans, txs, checkpoint=None, batch=batch, on_conflicts=report)
                return
            if policy == "stop":
                with pytest.raises(ConflictError):
                    writer.apply(plans, txs, checkpoint=_at(SqliteSeq(2)), batch=batch,
                                 on_conflicts=report)  # fmt: skip
            else:
                writer.apply(plans, txs, checkpoint=_at(SqliteSeq(2)), batch=batch,
                             on_conflicts=report)  # fmt: skip
            found = sorted((c.op.value, c.key["id"], c.exists, str(c.position)) for c in seen)
            assert found == [
                ("delete", 5, False, str(SqliteSeq(1))),
                ("insert", 1, True, str(SqliteSeq(1))),
                ("update", 3, False, str(SqliteSeq(1))),
                ("update", 6, True, str(SqliteSeq(2))),
            ]
            _, rows = _read(ep, _reflected(ep, "rk_people"))
            if policy == "stop":  # nothing of the batch, nor its checkpoint
                assert rows == [(1, "ann", 10), (4, "dee", 40), (6, "fay", 60)]
                assert writer.read_checkpoint(_TASK) is None
            else:  # converged to the source's final state
                assert rows == [(2, "bo", 21), (6, "dee", 44)]
            seen.clear()  # a source in step with the target: no conflict, no call
            clean = [Transaction((Change(Op.INSERT, plan.target_id, key={"id": 9},
                                         after={"id": 9, "name": "ida", "n": 90}),),
                                 SqliteSeq(3))]  # fmt: skip
            writer.apply(plans, clean, checkpoint=None, batch=batch, on_conflicts=report)
            assert seen == []
        finally:
            writer.close()

    def test_change_capture_delivers_changes_after_the_start(
        self, conformance_endpoint: Endpoint
    ) -> None:
        ep = conformance_endpoint
        if not isinstance(ep, CdcSource):
            pytest.skip("no change data capture")
        plan = _plan(ep, _people(ep.home_schema()))
        _close(_create(ep, plan, [[1, "ann", 10]]))
        table = _reflected(ep, "rk_people")
        ep.cdc_setup([table], task=_TASK)
        try:
            start = ep.cdc_start([table], task=_TASK)
            writer = self._change_writer(ep)
            try:
                for tx in _history(plan.target_id, SqliteSeq):
                    writer.apply({plan.target_id: plan}, [tx], checkpoint=None, batch=False)
            finally:
                writer.close()
            got = _capture(ep, table, start, want=4)
        finally:
            ep.cdc_teardown(task=_TASK)
        changes = [(c.op, dict(c.key)) for tx in got for c in tx.changes]
        assert changes == [
            (Op.INSERT, {"id": 2}),
            (Op.INSERT, {"id": 3}),
            (Op.UPDATE, {"id": 1}),
            (Op.DELETE, {"id": 2}),
        ]
        positions = [tx.position for tx in got]
        assert positions == sorted(positions), "transactions arrive in commit order"
        [update] = [c for tx in got for c in tx.changes if c.op is Op.UPDATE]
        assert update.after is not None
        assert update.after.get("n") == 11, update

    def _change_writer(self, ep: Endpoint) -> Any:
        if not isinstance(ep, SupportsApply):
            pytest.skip("cannot apply changes")
        return ep.change_writer()


def _people(schema: str | None) -> TableSchema:
    return _source_table(schema, "rk_people", [("name", Type.string(20)), ("n", Type.int_(32))])


def _at(position: Position) -> Checkpoint:
    return Checkpoint(_TASK, start=SqliteSeq(0), position=position, phase="cdc")


def _history(table: TableId, position: type[SqliteSeq]) -> list[Transaction]:
    """Three transactions on ``rk_people`` holding (1, ann, 10): inserts, an update, a delete."""

    def change(op: Op, key: int, after: Mapping[str, Any] | None = None) -> Change:
        return Change(op, table, key={"id": key}, after=after)

    return [
        Transaction(
            (
                change(Op.INSERT, 2, {"id": 2, "name": "bo", "n": 20}),
                change(Op.INSERT, 3, {"id": 3, "name": "cy", "n": 30}),
            ),
            position(1),
        ),
        Transaction((change(Op.UPDATE, 1, {"n": 11}),), position(2)),
        Transaction((change(Op.DELETE, 2),), position(3)),
    ]


def _drifted(table: TableId) -> list[Transaction]:
    """Changes from a source that disagrees with a target holding ids 1, 4 and 6: an insert
    of 1, an update of 3, a delete of 5 and a move of 4 onto 6 conflict; the rest do not."""

    def change(op: Op, key: int, after: Mapping[str, Any] | None = None) -> Change:
        return Change(op, table, key={"id": key}, after=after)

    return [
        Transaction(
            (
                change(Op.INSERT, 1, {"id": 1, "name": "al", "n": 1}),
                change(Op.INSERT, 2, {"id": 2, "name": "bo", "n": 20}),
                change(Op.UPDATE, 3, {"n": 31}),
                change(Op.DELETE, 5),
            ),
            SqliteSeq(1),
        ),
        Transaction(
            (
                change(Op.UPDATE, 4, {"id": 6, "name": "dee", "n": 44}),
                change(Op.UPDATE, 2, {"n": 21}),
                change(Op.DELETE, 1),
            ),
            SqliteSeq(2),
        ),
    ]


def _capture(
    ep: CdcSource, table: TableSchema, start: Position, *, want: int, timeout: float = 60
) -> list[Transaction]:
    """Transactions from ``start`` until ``want`` changes arrived (read in a thread, as the
    pipeline does; the reader is closed from this one)."""
    reader = ep.cdc_reader([table], task=_TASK)
    got: list[Transaction] = []
    failed: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            for tx in reader.transactions(start):
                if tx.changes:
                    got.append(tx)
                if sum(len(t.changes) for t in got) >= want:
                    break
        except BaseException as exc:  # handed to the test thread
            failed.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    done.wait(timeout)
    reader.close()
    thread.join(10)
    if failed:
        raise failed[0]
    assert done.is_set(), f"only {got} arrived within {timeout} s"
    return got

"""Family-independent pieces of the CDC apply writers (PostgreSQL, MySQL/MariaDB, SQLite).

Each writer keeps its own SQL, connection handling and error translation; what is the same
logic whatever the target lives here, as plain functions:

* the apply key of a plan and the column set of a change image (:func:`apply_key`,
  :func:`image_columns`), the key a change addresses (:func:`key_of`, :func:`change_key`);
* source order with runs of truncates grouped (:func:`units`) and foreign-key order
  (:func:`fk_order`);
* pieces that fit in memory, for transactions whose changes are in a spill file
  (:func:`pieces`): a writer applies piece after piece inside its one target transaction;
* the per-writer cache of table appliers (:func:`tables_for`);
* the checkpoint row shared by the control tables (:func:`checkpoint_values`,
  :func:`checkpoint_from_row`);
* the error of a connection lost while applying (:func:`lost_connection`).
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, cast

from replikit.changes import Change, Op, Transaction
from replikit.errors import CapabilityError, ConfigError, ConnectError, SchemaError
from replikit.pipeline.conflicts import OnConflicts, Probe, find_conflicts
from replikit.pipeline.contracts import Checkpoint, Fence
from replikit.pipeline.spill import spilled
from replikit.positions import Position
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.model import TableId

log = logging.getLogger("replikit.apply")

__all__ = [
    "CONNECTION_LOST",
    "PHASES",
    "PIECE_CHANGES",
    "RUN_AGAIN",
    "ChangeWriterBase",
    "Image",
    "Key",
    "Plans",
    "Session",
    "ShapeBase",
    "TableColumns",
    "Txs",
    "Unit",
    "apply_key",
    "change_key",
    "checkpoint_from_row",
    "checkpoint_values",
    "fk_order",
    "image_columns",
    "key_of",
    "loaded_from_text",
    "loaded_text",
    "lost_connection",
    "percent_safe",
    "pieces",
    "run_transaction",
    "tables_for",
    "units",
]

Key = tuple[Any, ...]
Image = Mapping[str, Any]
#: one change, or a run of consecutive truncates (applied as one statement or step)
Unit = Change | list[Change]
#: the phases a checkpoint row may hold
PHASES = ("full-load", "cdc")
#: most changes in one piece of a spilled transaction (see :func:`pieces`)
PIECE_CHANGES = 10_000


class _Planned(Protocol):
    @property
    def plan(self) -> TablePlan: ...


A = TypeVar("A", bound=_Planned)


# -- keys and column sets ---------------------------------------------------------------------
def apply_key(plan: TablePlan, by_target: Mapping[str, ColumnPlan]) -> tuple[Key, Key]:
    """The apply key of ``plan``: (target column names, source column names).

    ``by_target`` maps the target names of the columns the writer writes to their plans.

    Raises:
        ConfigError: the target has no key, or a key column is not written.
    """
    target_key = plan.target_schema.key
    if not target_key or any(k not in by_target for k in target_key):
        raise ConfigError(
            f"target table {plan.target_id} has no primary key (or NOT NULL unique key); "
            "CDC apply needs one to find rows: add a key to the source table or leave the "
            "table out of the CDC task"
        )
    return tuple(target_key), tuple(by_target[k].source.name for k in target_key)


def image_columns(
    table: TableId,
    image: Image,
    order: tuple[str, ...],
    planned: frozenset[str],
    ignored: frozenset[str] = frozenset(),
) -> tuple[str, ...]:
    """The columns of ``image`` that are in ``planned``, in table ``order``.

    Columns in ``ignored`` (e.g. generated columns the target computes) are left out silently.

    Raises:
        SchemaError: ``image`` carries a column that is neither planned nor ignored.
    """
    keys = image.keys()
    if keys == planned:
        return order
    unknown = [c for c in keys if c not in planned and c not in ignored]
    if unknown:
        raise SchemaError(
            f"changes for {table} carry columns {', '.join(sorted(unknown))} that are not "
            "in its plan; add them to the target (add_columns) and re-plan the table"
        )
    return tuple(c for c in order if c in keys)


def key_of(
    columns: Sequence[str], images: Iterable[Image | None], missing: Callable[[str], Exception]
) -> Key:
    """The values of ``columns``, each from the first image that has it.

    ``missing(column)`` makes the error raised when no image has a key column.
    """
    images = tuple(images)
    values = []
    for col in columns:
        for image in images:
            if image is not None and col in image:
                values.append(image[col])
                break
        else:
            raise missing(col)
    return tuple(values)


def change_key(columns: Sequence[str], change: Change, missing: Callable[[str], Exception]) -> Key:
    """The key a change addresses (the old key for updates); see :func:`key_of`."""
    if change.op is Op.INSERT:
        return key_of(columns, (change.after, change.key), missing)
    return key_of(columns, (change.key, change.before, change.after), missing)


# -- order ------------------------------------------------------------------------------------
def units(transactions: Sequence[Transaction]) -> Iterator[Unit]:
    """Changes in source order; runs of consecutive truncates come as one list."""
    pending: list[Change] = []
    for tx in transactions:
        for change in tx.changes:
            if change.op is Op.TRUNCATE:
                pending.append(change)
                continue
            if pending:
                yield pending
                pending = []
            yield change
    if pending:
        yield pending


def pieces(
    transactions: Sequence[Transaction], size: int | None = None
) -> Iterator[Sequence[Transaction]]:
    """``transactions`` in pieces that fit in memory, in source order.

    Without a spilled transaction (the common case) the one piece is ``transactions`` itself.
    A spilled transaction is cut into in-memory transactions of at most ``size`` changes
    (default :data:`PIECE_CHANGES`; its position, commit time and id), each a piece of its
    own; the transactions between spilled ones form pieces as they are. Net change per piece,
    applied piece after piece, has the effect of net change over all of them.
    """
    if not any(spilled(tx) is not None for tx in transactions):
        yield transactions
        return
    run: list[Transaction] = []
    for tx in transactions:
        changes = spilled(tx)
        if changes is None:
            run.append(tx)
            continue
        if run:
            yield run
            run = []
        for part in changes.batches(size or PIECE_CHANGES):
            yield [Transaction(part, tx.position, tx.commit_ts, tx.txid)]
    if run:
        yield run


def fk_order(tids: Iterable[TableId], plan_of: Callable[[TableId], TablePlan]) -> list[TableId]:
    """``tids`` with referenced tables before the tables that reference them (cycles: as is)."""
    todo = sorted(tids, key=str)
    present = set(todo)
    deps = {
        t: {
            fk.ref_table
            for fk in plan_of(t).target_schema.foreign_keys
            if fk.ref_table in present and fk.ref_table != t
        }
        for t in todo
    }
    out: list[TableId] = []
    done: set[TableId] = set()
    while todo:
        ready = [t for t in todo if deps[t] <= done] or todo
        out += ready
        done.update(ready)
        todo = [t for t in todo if t not in done]
    return out


# -- table appliers ---------------------------------------------------------------------------
def tables_for(
    plans: Mapping[TableId, TablePlan],
    transactions: Sequence[Transaction],
    cache: MutableMapping[TableId, A],
    make: Callable[[TablePlan], A],
) -> dict[TableId, A]:
    """The appliers of every table the changes touch (before any SQL runs).

    An applier is taken from ``cache`` while its plan is the same object, else made anew with
    ``make`` and cached.

    Raises:
        SchemaError: a change's table has no plan.
    """
    out: dict[TableId, A] = {}
    touched: set[TableId] = set()
    last: TableId | None = None  # runs of one table: hashed once
    for tx in transactions:
        on_disk = spilled(tx)
        if on_disk is not None:
            touched.update(on_disk.tables)
            continue
        for change in tx.changes:
            if change.table is not last:
                last = change.table
                touched.add(last)
    for tid in touched:
        plan = plans.get(tid)
        if plan is None:
            raise SchemaError(
                f"changes for table {tid} but no plan for it; plans are keyed by target "
                "table id and changes must carry the target id"
            )
        table = cache.get(tid)
        if table is None or table.plan is not plan:
            table = cache[tid] = make(plan)
        out[tid] = table
    return out


# -- checkpoint rows --------------------------------------------------------------------------
def checkpoint_values(
    checkpoint: Checkpoint,
) -> tuple[str, str | None, str | None, str, str, datetime | None]:
    """``(task, start_position, position, phase, loaded, commit_ts)`` of a control-table row.

    Positions as ``str(position)``, ``loaded`` as a JSON array of sorted table names, or with
    ``snapshots`` (a resumed full load's, see :class:`Checkpoint`) as a JSON object
    ``{"loaded": [names], "snapshots": {name: str(position)}}`` (the same column: no control
    table changes shape).

    Raises:
        SchemaError: the checkpoint's phase is unknown.
    """
    cp = checkpoint
    if cp.phase not in PHASES:
        raise SchemaError(f"checkpoint of task {cp.task!r}: unknown phase {cp.phase!r}")
    return (
        cp.task,
        None if cp.start is None else str(cp.start),
        None if cp.position is None else str(cp.position),
        cp.phase,
        loaded_text(cp),
        cp.commit_ts,
    )


def loaded_text(checkpoint: Checkpoint) -> str:
    """The ``loaded`` column of ``checkpoint``'s row (see :func:`checkpoint_values`)."""
    names = sorted(checkpoint.loaded)
    if not checkpoint.snapshots:
        return json.dumps(names)
    snapshots = {name: str(pos) for name, pos in sorted(checkpoint.snapshots.items())}
    return json.dumps({"loaded": names, "snapshots": snapshots})


def loaded_from_text(text: Any) -> tuple[frozenset[str], dict[str, Position]] | None:
    """``(loaded, snapshots)`` from :func:`loaded_text`'s text; ``None``: not that form.

    Raises:
        ConfigError: a snapshot position does not parse.
    """
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    snapshots: Any = {}
    if isinstance(value, dict):
        snapshots = value.get("snapshots", {})
        value = value.get("loaded")
    if not isinstance(value, list) or not isinstance(snapshots, dict):
        return None
    parsed = {str(name): Position.parse(str(pos)) for name, pos in snapshots.items()}
    return frozenset(str(n) for n in value), parsed


def checkpoint_from_row(task: str, row: Sequence[Any], *, table: str) -> Checkpoint:
    """The checkpoint of ``task`` from ``(start_position, position, phase, loaded, commit_ts)``.

    Values as :func:`checkpoint_values` wrote them (text already decoded; ``commit_ts`` as the
    caller wants it in the checkpoint).

    Raises:
        SchemaError: the row of ``table`` is damaged (unknown phase, ``loaded`` not a list).
    """
    start, position, phase, loaded, commit_ts = row
    names = loaded_from_text(loaded)
    if phase not in PHASES or names is None:
        raise SchemaError(
            f"{table} row of task {task!r} is damaged (phase {phase!r}, loaded {loaded!r}); "
            "fix it or drop the task's control rows and start the task again"
        )
    return Checkpoint(
        task=task,
        start=None if start is None else Position.parse(start),
        position=None if position is None else Position.parse(position),
        phase=cast(Any, phase),
        loaded=names[0],
        commit_ts=commit_ts,
        snapshots=names[1],
    )


# -- connection loss --------------------------------------------------------------------------
def lost_connection(where: str, doing: str, committing: bool, detail: str) -> ConnectError:
    """The error of a connection lost while ``doing`` (``detail``: the scrubbed driver text).

    ``committing``: the loss came during COMMIT, so the outcome is unknown; otherwise the
    connection was lost twice in a row and nothing was committed. Either way applying again is
    safe (apply is idempotent).
    """
    outcome = (
        "during COMMIT, so the transaction may or may not have committed"
        if committing
        else "twice in a row; nothing was committed"
    )
    return ConnectError(
        f"lost the connection to {where} while {doing} {outcome} ({detail}). "
        "Retry: applying the same changes again is safe, and the next call reconnects"
    )


class Session(Protocol):
    """A change writer's connection state, as :func:`run_transaction` uses it."""

    committing: bool  # COMMIT was sent: a loss now leaves the outcome unknown


S = TypeVar("S", bound=Session)
R = TypeVar("R")

#: what ``settle`` says about a failure (besides returning an error to raise, or ``None``)
CONNECTION_LOST = (
    "lost"  # the connection died: reopen and run the work again, once, unless committing
)
RUN_AGAIN = "again"  # run the work once more on the same connection (e.g. a control table dropped)


def run_transaction(
    connect: Callable[[], S],
    work: Callable[[S], R],
    *,
    settle: Callable[[S, BaseException, bool], str | BaseException | None],
    lost: Callable[[BaseException, bool], ConnectError],
    where: str,
    doing: str,
) -> R:
    """Run ``work`` (which commits) in one target transaction; the retry policy of every
    change writer, whatever its driver.

    ``settle(session, exc, last)`` rolls back (or discards a dead connection) and says what
    the failure was: :data:`CONNECTION_LOST`, :data:`RUN_AGAIN` (honoured when not ``last``),
    an error to raise in its place, or ``None`` to let ``exc`` through. A connection
    found dead before COMMIT was sent is reopened and ``work`` runs again: nothing had been
    committed. Lost during COMMIT (or twice), the outcome is unknown: ``lost(exc,
    committing)`` is raised, and applying again is safe because apply is idempotent.
    """
    for attempt in range(2):
        last = attempt == 1
        s = connect()
        s.committing = False
        try:
            return work(s)
        except BaseException as exc:
            verdict = settle(s, exc, last)
            if verdict is None:
                raise
            if verdict == CONNECTION_LOST and not last and not s.committing:
                log.warning("lost the connection to %s while %s; reconnecting", where, doing)
                continue
            if verdict == CONNECTION_LOST:
                raise lost(exc, s.committing) from exc
            if verdict == RUN_AGAIN and not last:
                continue
            if isinstance(verdict, BaseException):
                raise verdict from exc
            raise
    raise AssertionError("unreachable")  # pragma: no cover


# -- one table's columns, as every change writer addresses them ------------------------------
class ShapeBase:
    """One column set of a table (source names, in table order): target names, value
    adapters and the statements a family caches for it (``sql``)."""

    __slots__ = ("adapters", "names", "source", "sql")

    def __init__(self, source: tuple[str, ...], plans: Sequence[ColumnPlan]) -> None:
        self.source = source
        self.names = tuple(p.name for p in plans)
        self.adapters: list[tuple[int, Any]] = [
            (i, p.target.adapt) for i, p in enumerate(plans) if p.target.adapt is not None
        ]
        self.sql: dict[str, str] = {}


SH = TypeVar("SH", bound=ShapeBase)


def percent_safe(text: str) -> str:
    """``text`` made safe for a statement executed with ``%s`` parameters."""
    return text.replace("%", "%%")


class TableColumns(Generic[SH]):
    """The planned columns of one target table, its apply key, and its cached shapes.

    ``written`` are the column plans the writer writes (by default all); the columns the
    target computes (:attr:`TablePlan.computed`) and those named in ``generated`` are never
    written, and changes may carry them.
    """

    shape_class: type[SH]

    def __init__(
        self,
        plan: TablePlan,
        written: Sequence[ColumnPlan] | None = None,
        generated: frozenset[str] = frozenset(),
    ) -> None:
        self.plan = plan
        self.id: TableId = plan.target_id
        self.by_source: dict[str, ColumnPlan] = {}
        generated = generated | plan.computed
        for c in plan.columns if written is None else written:
            if c.source.name not in generated:
                self.by_source.setdefault(c.source.name, c)
        self.generated = generated
        self.order = tuple(self.by_source)
        self.all = frozenset(self.order)
        by_target = {c.name: c for c in self.by_source.values()}
        self.target_key, self.key = apply_key(plan, by_target)
        self.key_set = frozenset(self.key)
        self._shapes: dict[tuple[str, ...], SH] = {}
        self.key_shape = self.shape(self.key)

    def columns(self, image: Image) -> tuple[str, ...]:
        """The image's written columns in table order; ``SchemaError`` for unplanned ones."""
        return image_columns(self.id, image, self.order, self.all, self.generated)

    def is_full(self, image: Image) -> bool:
        """Whether ``image`` holds every written column (else it is a partial image)."""
        return image.keys() >= self.all

    def shape(self, columns: tuple[str, ...]) -> SH:
        """The (cached) shape of ``columns`` (source names in table order)."""
        shape = self._shapes.get(columns)
        if shape is None:
            shape = self.shape_class(columns, [self.by_source[c] for c in columns])
            self._shapes[columns] = shape
        return shape

    def key_dict(self, key: Key) -> dict[str, Any]:
        """``key`` by target column name (for error messages)."""
        return dict(zip(self.target_key, key, strict=True))

    # -- statements with ``%s`` parameters (PostgreSQL and MySQL drivers) ---------------------
    table_sql: str  # the quoted table name, made safe for parameters (set by the family)

    def quote(self, name: str) -> str:
        """``name`` quoted as the target's identifier (the family's dialect)."""
        raise NotImplementedError

    def key_match(self, prefix: str = "") -> str:
        """``key1 = %s AND key2 = %s ...`` (``prefix``: a table alias with its dot)."""
        return " AND ".join(f"{prefix}{percent_safe(self.quote(k))} = %s" for k in self.target_key)

    def update_sql(self, shape: SH) -> str:
        """``UPDATE ... SET <shape columns> = %s WHERE key = %s`` (key values last)."""
        text = shape.sql.get("update")
        if text is None:
            sets = ", ".join(f"{percent_safe(self.quote(n))} = %s" for n in shape.names)
            text = f"UPDATE {self.table_sql} SET {sets} WHERE {self.key_match()}"  # noqa: S608
            shape.sql["update"] = text
        return text


Plans = Mapping[TableId, TablePlan]  # by target table id
Txs = Sequence[Transaction]


# -- the apply contract, stated once -------------------------------------------------------------
class ChangeWriterBase(abc.ABC):
    """What every family's change writer shares: :meth:`apply` as the
    :class:`~replikit.pipeline.contracts.ChangeWriter` contract states it; a family implements
    :meth:`_apply` for its driver (with :func:`run_transaction`, :func:`pieces`, and
    :class:`TableColumns` for the tables).

    ``fence``: when set (a task run with standbys, docs/high-availability.md), every
    transaction the writer commits checks it just before COMMIT, so a replicator whose lease
    was taken over commits nothing (:meth:`_fenced`).

    ``reports_conflicts``: the family calls :meth:`_check_conflicts` before it writes each
    piece, so :meth:`apply` takes ``on_conflicts`` (:mod:`replikit.pipeline.conflicts`).
    """

    fence: Fence | None = None
    reports_conflicts: ClassVar[bool] = False
    _on_conflicts: OnConflicts | None = None

    def _fenced(self, execute: Callable[[str, tuple[Any, ...]], list[Any]]) -> None:
        """Check the fence (if any) in the transaction ``execute`` runs queries in."""
        if self.fence is not None:
            self.fence.fence(execute)

    def apply(
        self,
        plans: Mapping[TableId, TablePlan],
        transactions: Sequence[Transaction],
        *,
        checkpoint: Checkpoint | None,
        batch: bool,
        on_conflicts: OnConflicts | None = None,
    ) -> None:
        """Apply ``transactions`` and ``checkpoint`` in one target transaction.

        ``plans`` is keyed by target table id. ``batch=True``: the net change per key of all
        ``transactions`` with bulk statements; ``False``: every change in source order. A
        spilled transaction is applied in pieces inside the same target transaction. Either
        way everything, checkpoint included, commits together or not at all.

        ``on_conflicts``: called inside the transaction, before each piece is written, with
        the apply conflicts the piece finds (:mod:`replikit.pipeline.conflicts`); when it
        raises, nothing is committed. ``None`` (converge) looks for none.

        Raises:
            SchemaError: a change's table has no plan, a column is not planned, or the target
                table is missing.
            ConfigError: a table has no key, or its target lacks a unique index on the key.
            DataError: the target refused a value (table, key and column named).
            ConnectError: the connection was lost and could not be reopened, or was lost
                during COMMIT (retry: applying again is safe).
            CapabilityError: ``on_conflicts`` given to a writer that cannot find conflicts.
        """
        if on_conflicts is not None and not self.reports_conflicts:
            raise CapabilityError(
                f"{type(self).__name__} does not report apply conflicts; use "
                "apply_conflicts='converge'"
            )
        self._on_conflicts = on_conflicts
        try:
            self._apply(plans, transactions, checkpoint, batch)
        finally:
            self._on_conflicts = None

    def _check_conflicts(
        self,
        piece: Sequence[Transaction],
        keys: Mapping[TableId, tuple[str, ...]],
        probe: Probe,
        named: Callable[[TableId, Key], Mapping[str, Any]],
    ) -> None:
        """Hand the conflicts of ``piece`` to the caller's ``on_conflicts`` (if any): called by
        the family inside its transaction, before it writes ``piece``."""
        report = self._on_conflicts
        if report is None:
            return

        def key_of(table: TableId, change: Change) -> Key:
            def missing(column: str) -> SchemaError:
                return SchemaError(f"a change of {table} has no value for key column {column!r}")

            return change_key(keys[table], change, missing)

        found = find_conflicts(piece, keys, key_of, probe, named)
        if found:
            report(found)

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (a later call reconnects)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def _apply(
        self, plans: Plans, transactions: Txs, checkpoint: Checkpoint | None, batch: bool
    ) -> None:
        """The family's :meth:`apply`."""

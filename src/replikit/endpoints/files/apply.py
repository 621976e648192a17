"""CDC into files: change files per table in the DMS layout, committed by the manifest.

Each :meth:`~FilesChangeWriter.apply` call is one *apply* with the next sequence number ``n``:

1. every change of the transactions, in source order, becomes a row of its table's change
   file ``CDC<n>.<format>`` (one per partition folder; more than one, ``CDC<n>-2`` ..., when
   a file passes ``file_size``): ``Op`` (``I``/``U``/``D``/``T``), ``_commit_ts``,
   ``_position``, ``_change`` (the change's order in the apply), ``_unchanged`` (columns an
   update did not carry) and the row's values. An update that changes the key is a ``D`` of
   the old key and an ``I`` of the new row. Each file is written under a hidden temporary
   name and renamed when complete;
2. then the manifest is rewritten (atomically) with ``change_seq = n`` and the checkpoint.

A crash before step 2 leaves change files numbered above the manifest's ``change_seq``: they
are not read (:mod:`.source`) and the next apply removes them before writing, so the changes
the restarted task sends again are written once. Nothing half-written is ever visible. Every
change is kept, in order, whether ``batch`` is asked or not (a change log, not a table).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from replikit._failpoints import failpoint
from replikit.changes import Change, Op
from replikit.endpoints.files import _ddl
from replikit.endpoints.files._connect import Store
from replikit.endpoints.files._control import EXCEPTIONS
from replikit.endpoints.files._dialect import DIALECT
from replikit.endpoints.files._formats import Field, Files, Layout
from replikit.endpoints.files._manifest import ManifestFile
from replikit.endpoints.files._partition import Partition, Spec, parse_partition
from replikit.endpoints.files._replay import META, OPS
from replikit.endpoints.files.reflect import find_tables, table_folder
from replikit.errors import ConfigError, DataError, SchemaError
from replikit.pipeline import apply_support
from replikit.pipeline.apply_support import ChangeWriterBase, Plans, Txs
from replikit.pipeline.contracts import Checkpoint
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.model import TableId
from replikit.schema.types import Type

__all__ = ["FilesChangeWriter"]

log = logging.getLogger("replikit.files")

_META_FIELDS = (
    Field("Op", Type.text("string"), nullable=False),
    Field("_commit_ts", Type.timestamp(6, tz=True, native="timestamp[us, tz=UTC]")),
    Field("_position", Type.text("string")),
    Field("_change", Type.int_(64, native="int64"), nullable=False),
    Field("_unchanged", Type.array(Type.text("string"), 1, native="list<item: string>")),
)


class _Table:
    """One target table: its change-file layout, key, and partitioning."""

    def __init__(self, plan: TablePlan, partition: Spec | None) -> None:
        self.plan = plan
        self.label = str(plan.target_id)
        clash = [cp.name for cp in plan.columns if cp.name in META]
        if clash:
            raise ConfigError(
                f"table {self.label} has columns named {clash}, which change files use for "
                "the change's metadata; rename them with the mappings"
            )
        self.by_source: dict[str, ColumnPlan] = {}
        for cp in plan.columns:
            self.by_source.setdefault(cp.source.name, cp)
        self.order = tuple(self.by_source)
        self.key = tuple(
            cp.source.name for k in plan.target_schema.key for cp in plan.columns if cp.name == k
        )
        fields = [Field(cp.name, cp.target.type, cp.target.adapt) for cp in plan.columns]
        self.layout = Layout(self.label, [*_META_FIELDS, *fields], plan.target_schema.key)
        self.partition = Partition.of(partition, plan)

    def rows(self, change: Change, number: int) -> list[list[Any]]:
        """The change-file rows of ``change`` (two for an update that moves the key)."""
        head = [change.commit_ts, None if change.position is None else str(change.position)]
        if change.op is Op.TRUNCATE:
            return [[OPS["truncate"], *head, number, None, *(None for _ in self.order)]]
        if change.op is Op.INSERT:
            return [self._row("I", head, number, change.after or {})]
        old = self._old_key(change)
        if change.op is Op.DELETE:
            return [self._row("D", head, number, {**(change.before or {}), **old})]
        after = change.after or {}
        if all(c in after for c in self.order):
            new = {k: after[k] for k in self.key}
            if new != old:
                return [self._row("D", head, number, old), self._row("I", head, number, after)]
            return [self._row("U", head, number, after)]
        image = {**old, **after}
        unchanged = [self.by_source[c].name for c in self.order if c not in image]
        return [self._row("U", head, number, image, unchanged)]

    def _old_key(self, change: Change) -> dict[str, Any]:
        def missing(column: str) -> DataError:
            return DataError(f"change has no value for key column {column!r}", table=self.label)

        return dict(zip(self.key, apply_support.change_key(self.key, change, missing), strict=True))

    def _row(
        self,
        op: str,
        head: list[Any],
        number: int,
        image: Mapping[str, Any],
        unchanged: list[str] | None = None,
    ) -> list[Any]:
        unknown = [c for c in image if c not in self.by_source]
        if unknown:
            raise SchemaError(
                f"changes for {self.label} carry columns {', '.join(sorted(unknown))} that "
                "are not in its plan"
            )
        return [op, *head, number, unchanged or None, *(image.get(c) for c in self.order)]


class FilesChangeWriter(ChangeWriterBase):
    """Writes CDC transactions as change files, committed by the manifest (see the module
    docs); also the task's checkpoint store. Used from one thread at a time."""

    dialect = DIALECT
    #: a table keeps its schema (a folder level); one without stays without ("" adds none)
    default_schema: str | None = ""

    def __init__(
        self,
        store: Store,
        *,
        format: str = "parquet",
        partition_by: str | None = None,
        file_size: int = 128 * 2**20,
        compression: str = "snappy",
    ) -> None:
        self._store = store
        self.format = format
        self.partition = parse_partition(partition_by)
        self.file_size = file_size
        self.compression = compression
        self._manifest = ManifestFile(store)
        self._tables: dict[TableId, _Table] = {}
        self._clean = False  # leftovers of an uncommitted apply removed

    # -- checkpoints -----------------------------------------------------------------------
    def read_checkpoint(self, task: str) -> Checkpoint | None:
        """The stored checkpoint of ``task`` (``None``: none stored)."""
        return self._manifest.read().checkpoint(task, f"{self._store.where}/{_ddl.MANIFEST}")

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` in the manifest on its own."""
        with self._manifest.lock:
            manifest = self._manifest.read()
            manifest.store(checkpoint)
            self._manifest.write(manifest)

    def drop_control(self, task: str) -> None:
        """Forget ``task``'s checkpoint (the manifest stays: it commits the change files)."""
        with self._manifest.lock:
            if not self._manifest.exists():
                return
            manifest = self._manifest.read()
            if manifest.tasks.pop(task, None) is not None:
                self._manifest.write(manifest)

    # -- schema ----------------------------------------------------------------------------
    def add_columns(self, plan: TablePlan, columns: Sequence[ColumnPlan]) -> None:
        """Refused: the files of a table share one schema (reload the table instead)."""
        names = ", ".join(cp.name for cp in columns)
        raise SchemaError(
            f"source table of {plan.target_id} gained columns ({names}); the files of a table "
            "share one schema: reload the table (drop-and-create) to write the new shape"
        )

    # -- apply -----------------------------------------------------------------------------
    def _make(self, plan: TablePlan) -> _Table:
        self._check_folder(plan)
        return _Table(plan, self.partition)

    def _check_folder(self, plan: TablePlan) -> None:
        found = table_folder(self._store, plan.target_id, None)
        folder = _ddl.table_folder(self._store.root, plan.target_id)
        if found is None or not found.typed:
            raise SchemaError(
                f"no table {plan.target_id} in {self._store.where} ({folder}/"
                f"{_ddl.SCHEMA_FILE} missing); load it first (full-load-and-cdc)"
            )
        change = _ddl.shape_change(found.schema, plan.target_schema)
        if change is not None:
            raise SchemaError(
                f"table {plan.target_id} in {folder} has other columns than these changes "
                f"({change}); reload the table (drop-and-create)"
            )

    def _remove_uncommitted(self, committed: int) -> None:
        """Change files above ``committed`` and temporary files: an apply (or a load) that
        died. Not the temporary files this process is writing now: a reload that started
        with the run (a table the last run left ``reloading``) may be loading beside the
        stream's first apply, its load file still under its temporary name."""
        for tid in find_tables(self._store):
            folder = _ddl.table_folder(self._store.root, tid)
            for rel in self._store.files_under(folder):
                name = rel.rsplit("/", 1)[-1]
                m = _ddl.CHANGE_FILE.match(name)
                temp = name.endswith(".tmp") and not self._store.in_flight(f"{folder}/{rel}")
                stale = (m is not None and int(m.group(1)) > committed) or temp
                if stale:
                    log.warning(
                        "removing %s/%s: written by an apply that did not commit", folder, rel
                    )
                    self._store.remove(f"{folder}/{rel}")
        # the manifest's own temporary files and those of apply exceptions (a process
        # killed while writing one)
        for rel in self._store.files_under(self._store.root):
            folder, _, name = rel.rpartition("/")
            ours = folder == EXCEPTIONS or (not folder and name.startswith(f".{_ddl.MANIFEST}."))
            path = self._store.path(rel)
            leftover = name.endswith(".tmp") and not self._store.in_flight(path)
            if ours and name.startswith(".") and leftover:
                log.warning("removing %s: a control write that did not finish", rel)
                self._store.remove(path)
        self._clean = True

    def _apply(
        self, plans: Plans, transactions: Txs, checkpoint: Checkpoint | None, batch: bool
    ) -> None:
        with self._manifest.lock:
            tables = apply_support.tables_for(plans, transactions, self._tables, self._make)
            manifest = self._manifest.read()
            if not self._clean:
                self._remove_uncommitted(manifest.change_seq)
            seq = manifest.change_seq + 1
            try:
                wrote = self._write(tables, transactions, seq)
            except BaseException:
                self._clean = False  # rolled files of this apply may be left: remove them
                raise
            failpoint("apply.before-commit")  # recovery tests crash here: files, no manifest
            if wrote:
                manifest.change_seq = seq
            if checkpoint is not None:
                manifest.store(checkpoint)
            if wrote or checkpoint is not None:
                self._manifest.write(manifest)

    def _write(self, tables: dict[TableId, _Table], transactions: Txs, seq: int) -> bool:
        sinks: dict[tuple[TableId, str | None], Files] = {}
        number = 0
        with contextlib.ExitStack() as stack:
            for tx in transactions:
                for change in tx.changes:
                    t = tables[change.table]
                    rows = t.rows(change, number)
                    number += 1
                    for part, group in self._split(t, rows).items():
                        sink = sinks.get((t.plan.target_id, part))
                        if sink is None:
                            sink = stack.enter_context(self._sink(t, part, seq))
                            sinks[(t.plan.target_id, part)] = sink
                        sink.write(group)
        return bool(sinks)

    def _split(self, t: _Table, rows: list[list[Any]]) -> Mapping[str | None, Sequence[Any]]:
        if t.partition is None:
            return {None: rows}
        return {k: v for k, v in t.partition.split(t.layout.names, rows).items()}

    def _sink(self, t: _Table, part: str | None, seq: int) -> Files:
        folder = _ddl.table_folder(self._store.root, t.plan.target_id)
        if part is not None:
            folder = f"{folder}/{part}"
        names = _names(folder, seq, self.format)
        return Files(
            self._store,
            t.layout,
            self.format,
            names,
            file_size=self.file_size,
            compression=self.compression,
        )

    def close(self) -> None:
        """Nothing held between applies (each writes and closes its files)."""
        self._tables.clear()


def _names(folder: str, seq: int, fmt: str) -> Callable[[], str]:
    count = iter(range(1, 1 << 30))

    def name() -> str:
        n = next(count)
        base = _ddl.change_name(seq, fmt)
        if n > 1:
            stem, dot, ext = base.partition(".")
            base = f"{stem}-{n}{dot}{ext}"
        return f"{folder}/{base}"

    return name

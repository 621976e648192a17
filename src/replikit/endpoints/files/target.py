"""Full-load writing into files: one folder per table, files rolled at ``file_size`` bytes.

``prepare`` checks the root folder (empty, or one replikit wrote: it has the manifest), then
per table drops and recreates, creates, truncates (removes its data files) or keeps its
folder, and writes ``_schema.json``. An existing table whose columns differ from the plan is
refused by name, as is a table folder holding files replikit did not write. ``load`` writes
``LOAD00000001.parquet``, ``LOAD00000002.parquet``... (in partition folders with
``partition_by``), each under a hidden temporary name until complete.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from typing_extensions import override

from replikit.endpoints._arrow import canonical_type
from replikit.endpoints.files import _ddl
from replikit.endpoints.files._connect import Store
from replikit.endpoints.files._dialect import DIALECT, FORMATS
from replikit.endpoints.files._formats import Field, Files, Layout
from replikit.endpoints.files._manifest import ManifestFile, refuse_foreign_root
from replikit.endpoints.files._partition import Partition, parse_partition
from replikit.endpoints.files._values import pa
from replikit.endpoints.files.reflect import table_folder
from replikit.errors import ConfigError, SchemaError
from replikit.pipeline.contracts import (
    Batch,
    SupportsArrowWrite,
    SupportsPrepare,
    Writer,
    table_errors,
)
from replikit.schema.convert import TablePlan
from replikit.schema.model import TableId

__all__ = ["MODES", "FilesWriter", "layout_of", "refuse_foreign_root"]

MODES = ("drop-and-create", "create", "truncate", "do-nothing")


def layout_of(plan: TablePlan) -> Layout:
    """The files' columns of ``plan``'s table (target names and types, plan adapters)."""
    fields = [Field(cp.name, cp.target.type, cp.target.adapt, cp.nullable) for cp in plan.columns]
    return Layout(str(plan.target_id), fields, plan.target_schema.key)


class FilesWriter(Writer, SupportsPrepare, SupportsArrowWrite):
    """Creates table folders and writes full-load files (see the module docs)."""

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
        if format not in FORMATS:
            raise ConfigError(f"unknown files format {format!r}; use one of {FORMATS}")
        self._store = store
        self.format = format
        self.partition = parse_partition(partition_by)
        self.file_size = file_size
        self.compression = compression
        self._manifest = ManifestFile(store)
        self._lock = threading.Lock()
        self._counters: dict[TableId, Iterator[int]] = {}
        self.problems: list[str] = []

    def __reduce__(self) -> Any:
        raise pickle.PicklingError(
            "it numbers each table's files in this process (two processes would write the "
            "same file names), so it loads from threads only"
        )

    # -- prepare ----------------------------------------------------------------------------
    @override
    def prepare(self, plans: Sequence[TablePlan], mode: str) -> None:
        """``drop-and-create``, ``create`` (refused for an existing table), ``truncate`` or
        ``do-nothing`` (existing tables checked against the plan, missing ones created)."""
        if mode not in MODES:
            raise ConfigError(f"unknown table preparation mode {mode!r}; use one of {MODES}")
        refuse_foreign_root(self._store, self._manifest)
        for plan in plans:
            Partition.of(self.partition, plan)  # a bad partition_by stops the task here
        self._manifest.ensure()
        errors: dict[str, BaseException] = {}
        for plan in plans:
            try:
                self._prepare_one(plan, mode)
            except SchemaError as exc:
                errors[str(plan.target_id)] = exc
        if errors:
            raise table_errors(errors, f"files {mode}", len(plans))

    def _prepare_one(self, plan: TablePlan, mode: str) -> None:
        tid = plan.target_id
        existing = table_folder(self._store, tid, None)
        folder = _ddl.table_folder(self._store.root, tid)
        if existing is not None and existing.other_files:
            shown = ", ".join(existing.other_files[:5])
            raise SchemaError(
                f"folder {folder} of table {tid} holds files replikit did not write ({shown}); "
                "move them away or write the table elsewhere"
            )
        has_table = existing is not None and existing.typed
        if existing is not None and not existing.typed and existing.load_files:
            raise SchemaError(
                f"folder {folder} of table {tid} holds data files but no {_ddl.SCHEMA_FILE}: "
                "replikit did not write them; move them away or write the table elsewhere"
            )
        start = 1
        if mode == "drop-and-create" or not has_table:
            self._store.remove_tree(folder)
            self._write_schema(plan)
        elif mode == "create":
            raise SchemaError(f"table {tid} already exists ({folder})")
        else:
            assert existing is not None
            self._check_same(plan, existing.schema, existing.fmt, existing.partition, folder)
            if mode == "truncate":
                for rel in [*existing.load_files, *(p for _, p in existing.change_files)]:
                    self._store.remove(f"{folder}/{rel}")
            else:
                start = 1 + max((_load_number(p) for p in existing.load_files), default=0)
        with self._lock:
            self._counters[tid] = itertools.count(start)

    def _write_schema(self, plan: TablePlan) -> None:
        folder = _ddl.table_folder(self._store.root, plan.target_id)
        self._store.makedirs(folder)
        part = Partition.of(self.partition, plan)
        text = _ddl.schema_to_json(
            plan.target_schema, self.format, None if part is None else str(part.spec)
        )
        self._store.write_text(f"{folder}/{_ddl.SCHEMA_FILE}", text)

    def _check_same(
        self, plan: TablePlan, old: Any, fmt: str, partition: str | None, folder: str
    ) -> None:
        change = _ddl.shape_change(old, plan.target_schema)
        if change is not None:
            raise SchemaError(
                f"table {plan.target_id} in {folder} has other columns than this run writes "
                f"({change}); files of one table share one schema: use "
                "target_table_prep_mode='drop-and-create' or another folder"
            )
        part = Partition.of(self.partition, plan)
        now = None if part is None else str(part.spec)
        if fmt != self.format or partition != now:
            raise SchemaError(
                f"table {plan.target_id} in {folder} holds {fmt} files partitioned by "
                f"{partition or 'nothing'}; this run writes {self.format} partitioned by "
                f"{now or 'nothing'}: use drop-and-create or another folder"
            )

    @override
    def finish(self, plans: Sequence[TablePlan]) -> None:
        """Nothing to build: files have no indexes (``_schema.json`` names the keys)."""

    # -- load -------------------------------------------------------------------------------
    def _next_name(self, plan: TablePlan, part: str | None) -> str:
        with self._lock:
            counter = self._counters.setdefault(plan.target_id, itertools.count(1))
            n = next(counter)
        folder = _ddl.table_folder(self._store.root, plan.target_id)
        if part is not None:
            folder = f"{folder}/{part}"
        return f"{folder}/{_ddl.load_name(n, self.format)}"

    @override
    def load(self, plan: TablePlan, batches: Iterable[Batch]) -> int:
        """Write every batch into the table's files; return the number of rows."""
        layout = layout_of(plan)
        part = Partition.of(self.partition, plan)
        total = 0
        with contextlib.ExitStack() as stack:
            sinks: dict[str | None, Files] = {}
            for batch in batches:
                rows = _in_plan_order(plan, batch)
                groups = {None: rows} if part is None else part.split(layout.names, rows)
                for key, group in groups.items():
                    sink = sinks.get(key)
                    if sink is None:
                        sink = sinks[key] = stack.enter_context(self._files(plan, layout, key))
                    sink.write(group)
                    total += len(group)
        return total

    # -- load from Arrow --------------------------------------------------------------------
    def arrow_writable(self, plan: TablePlan) -> bool:
        """True for Parquet without partitions when every column's canonical Arrow type is
        the one the file holds (JSON: its storage, text) and no adapter changes the values."""
        if self.format != "parquet" or self.partition is not None:
            return False
        for cp, wanted in zip(plan.columns, layout_of(plan).arrow_types, strict=True):
            canonical = canonical_type(pa, cp.source.type)
            if cp.target.adapt is not None or cp.generated is not None or canonical is None:
                return False
            storage = wanted.storage_type if isinstance(wanted, pa.BaseExtensionType) else wanted
            if canonical != storage or pa.types.is_fixed_size_binary(storage):
                return False
        return True

    def load_arrow(self, plan: TablePlan, batches: Iterable[Any]) -> int:
        """Write every Arrow record batch (see :meth:`arrow_writable`) as a row group."""
        layout = layout_of(plan)
        sources = [cp.source.name for cp in plan.columns]
        with self._files(plan, layout, None) as sink:
            for batch in batches:
                sink.write_arrow(layout.conform(batch, sources))
        return sink.rows

    def _files(self, plan: TablePlan, layout: Layout, part: str | None) -> Files:
        return Files(
            self._store,
            layout,
            self.format,
            lambda: self._next_name(plan, part),
            file_size=self.file_size,
            compression=self.compression,
        )


def _in_plan_order(plan: TablePlan, batch: Batch) -> Sequence[Sequence[Any]]:
    """The batch's rows with their values in the plan's column order."""
    order = tuple(cp.source.name for cp in plan.columns)
    if batch.columns == order:
        return batch.rows
    missing = [c for c in order if c not in batch.columns]
    if missing:
        raise SchemaError(f"rows for {plan.target_id} lack the planned columns {missing}")
    at = [batch.columns.index(c) for c in order]
    return [[row[i] for i in at] for row in batch.rows]


def _load_number(rel: str) -> int:
    m = _ddl.LOAD_FILE.match(rel.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else 0
